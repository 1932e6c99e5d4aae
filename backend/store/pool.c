/*
 * pool.c - workers waiting on one condition variable over a ring of jobs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "backend/store/pool.h"

struct job {
	pool_fn fn;
	void *arg;
};

struct pool {
	pthread_mutex_t lock; /* guards the ring and stop */
	pthread_cond_t nonempty;
	pthread_cond_t nonfull;
	struct job *ring;
	size_t cap, head, len;
	size_t max;           /* len allowed to submitters; cap - max: requeues */
	int stop;
	int nthreads;
	pthread_t *threads;
	void *(*init)(void *arg);
	void (*fini)(void *ctx);
	void *init_arg;
};

static void *worker(void *arg)
{
	struct pool *p = arg;
	void *ctx = p->init ? p->init(p->init_arg) : NULL;
	struct job j;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->len && !p->stop)
			pthread_cond_wait(&p->nonempty, &p->lock);
		if (!p->len) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		j = p->ring[p->head];
		p->head = (p->head + 1) % p->cap;
		p->len--;
		pthread_cond_signal(&p->nonfull);
		pthread_mutex_unlock(&p->lock);
		j.fn(ctx, j.arg);
	}
	if (p->fini)
		p->fini(ctx);
	return NULL;
}

int pool_new(int nthreads, size_t queue_max, void *(*init)(void *arg),
	     void (*fini)(void *ctx), void *arg, struct pool **ret)
{
	struct pool *p;
	int i, r;

	if (nthreads < 1 || queue_max < 1)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->ring = calloc(queue_max + (size_t)nthreads, sizeof(*p->ring));
	p->threads = calloc((size_t)nthreads, sizeof(*p->threads));
	if (!p->ring || !p->threads) {
		free(p->ring);
		free(p->threads);
		free(p);
		return -ENOMEM;
	}
	/*
	 * A requeue adds one job that its thread's next pop takes one off,
	 * and submitters add none past max: len <= max + nthreads always.
	 */
	p->cap = queue_max + (size_t)nthreads;
	p->max = queue_max;
	p->init = init;
	p->fini = fini;
	p->init_arg = arg;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->nonempty, NULL);
	pthread_cond_init(&p->nonfull, NULL);
	for (i = 0; i < nthreads; i++) {
		r = pthread_create(&p->threads[i], NULL, worker, p);
		if (r) {
			p->nthreads = i;
			pool_free(p);
			return -r;
		}
	}
	p->nthreads = nthreads;
	*ret = p;
	return 0;
}

static void push(struct pool *p, pool_fn fn, void *arg)
{
	p->ring[(p->head + p->len) % p->cap] = (struct job){ fn, arg };
	p->len++;
	pthread_cond_signal(&p->nonempty);
}

static int submit(struct pool *p, pool_fn fn, void *arg, int wait)
{
	pthread_mutex_lock(&p->lock);
	while (p->len >= p->max) {
		if (!wait) {
			pthread_mutex_unlock(&p->lock);
			return -EAGAIN;
		}
		pthread_cond_wait(&p->nonfull, &p->lock);
	}
	push(p, fn, arg);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void pool_requeue(struct pool *p, pool_fn fn, void *arg)
{
	pthread_mutex_lock(&p->lock);
	push(p, fn, arg);
	pthread_mutex_unlock(&p->lock);
}

int pool_submit(struct pool *p, pool_fn fn, void *arg)
{
	return submit(p, fn, arg, 1);
}

int pool_try_submit(struct pool *p, pool_fn fn, void *arg)
{
	return submit(p, fn, arg, 0);
}

void pool_free(struct pool *p)
{
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->nonempty);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->nonempty);
	pthread_cond_destroy(&p->nonfull);
	free(p->ring);
	free(p->threads);
	free(p);
}
