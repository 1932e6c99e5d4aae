/*
 * pool.h - a fixed set of worker threads with a bounded job queue.
 *
 * Contract: pool_submit() may be called from any thread; it blocks while
 * the queue is full, which bounds the memory that jobs in flight hold.
 * Each worker owns a context made by init() and freed by fini(), handed to
 * every job it runs (the store gives each worker its own codec and buffers).
 * pool_free() runs the jobs already queued, then joins the workers.
 */
#ifndef LLMFS_POOL_H
#define LLMFS_POOL_H

#include <stddef.h>

struct pool;

typedef void (*pool_fn)(void *worker_ctx, void *arg);

int pool_new(int nthreads, size_t queue_max, void *(*init)(void *arg),
	     void (*fini)(void *ctx), void *arg, struct pool **ret);
int pool_submit(struct pool *p, pool_fn fn, void *arg);
/* Like pool_submit(), but returns -EAGAIN instead of waiting. */
int pool_try_submit(struct pool *p, pool_fn fn, void *arg);
/*
 * For a job running on one of p's own threads, just before it returns:
 * queues fn(arg) at the back, behind every job waiting, to go on with the
 * rest of its work later.  Each thread has a slot of its own for this, so
 * it never waits and never fails, however full the queue: a job that
 * always has more to do takes turns with the others instead of keeping
 * its thread.
 */
void pool_requeue(struct pool *p, pool_fn fn, void *arg);
void pool_free(struct pool *p);

#endif
