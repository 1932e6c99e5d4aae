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
void pool_free(struct pool *p);

#endif
