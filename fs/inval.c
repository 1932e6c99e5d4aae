/*
 * inval.c - the thread that sends the kernel's cache invalidations
 * (inval.h).  A FIFO of items; the thread pops one, sends it with no lock
 * held and counts it sent, which wakes the waiters of its ticket.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"
#include "fs/inval.h"

struct inval_item {
	uint64_t ino;
	int pages;
	uint64_t ticket;
	struct inval_item *next;
};

/* Lock order: lock is a leaf, never held while a notification is sent. */
struct fs_inval {
	pthread_mutex_t lock;
	pthread_cond_t work; /* an item queued, or stop */
	pthread_cond_t sent; /* an item sent, or the sender idle */
	struct fuse_session *se;
	struct inval_item *head, *tail;
	uint64_t queued, done; /* tickets handed out, tickets sent */
	int sending;           /* the thread is inside a notification */
	int stop;
	pthread_t thread;
};

static void send_one(struct fs *fs, struct fuse_session *se, const struct inval_item *it)
{
	int r;

	/* off -1: attributes only; 0, 0: attributes and every cached page. */
	r = fuse_lowlevel_notify_inval_inode(se, it->ino, it->pages ? 0 : -1, 0);
	/* ENOENT: the kernel holds nothing of this inode, nothing to drop. */
	if (r < 0 && r != -ENOENT)
		fs_log(fs->log, LOG_DEBUG, "cache invalidation of inode %llu: %s",
		       (unsigned long long)it->ino, strerror(-r));
}

static void *inval_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_inval *v = fs->inval;
	struct inval_item *it;
	struct fuse_session *se;

	pthread_mutex_lock(&v->lock);
	for (;;) {
		while (!v->head && !v->stop)
			pthread_cond_wait(&v->work, &v->lock);
		if (!v->head)
			break;
		it = v->head;
		v->head = it->next;
		if (!v->head)
			v->tail = NULL;
		se = v->se;
		v->sending = 1;
		pthread_mutex_unlock(&v->lock);
		if (se)
			send_one(fs, se, it);
		pthread_mutex_lock(&v->lock);
		v->sending = 0;
		v->done = it->ticket;
		pthread_cond_broadcast(&v->sent);
		free(it);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

int fs_inval_start(struct fs *fs)
{
	struct fs_inval *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->work, NULL);
	pthread_cond_init(&v->sent, NULL);
	fs->inval = v;
	r = -pthread_create(&v->thread, NULL, inval_main, fs);
	if (r < 0) {
		fs->inval = NULL;
		pthread_cond_destroy(&v->sent);
		pthread_cond_destroy(&v->work);
		pthread_mutex_destroy(&v->lock);
		free(v);
	}
	return r;
}

void fs_inval_stop(struct fs *fs)
{
	struct fs_inval *v = fs->inval;

	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	v->se = NULL; /* what is still queued is dropped, not sent */
	v->stop = 1;
	pthread_cond_signal(&v->work);
	pthread_mutex_unlock(&v->lock);
	pthread_join(v->thread, NULL);
	fs->inval = NULL;
	pthread_cond_destroy(&v->sent);
	pthread_cond_destroy(&v->work);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

void fs_inval_session(struct fs *fs, struct fuse_session *se)
{
	struct fs_inval *v = fs->inval;

	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	while (v->sending)
		pthread_cond_wait(&v->sent, &v->lock);
	v->se = se;
	pthread_mutex_unlock(&v->lock);
}

uint64_t fs_inval_inode(struct fs *fs, uint64_t ino, int pages)
{
	struct fs_inval *v = fs->inval;
	struct inval_item *it;
	uint64_t ticket;

	if (!v || !(it = calloc(1, sizeof(*it))))
		return 0;
	it->ino = ino;
	it->pages = pages;
	pthread_mutex_lock(&v->lock);
	ticket = it->ticket = ++v->queued;
	if (v->tail)
		v->tail->next = it;
	else
		v->head = it;
	v->tail = it;
	pthread_cond_signal(&v->work);
	pthread_mutex_unlock(&v->lock);
	return ticket;
}

void fs_inval_wait(struct fs *fs, uint64_t ticket)
{
	struct fs_inval *v = fs->inval;

	if (!v || !ticket)
		return;
	pthread_mutex_lock(&v->lock);
	while (v->done < ticket && !v->stop)
		pthread_cond_wait(&v->sent, &v->lock);
	pthread_mutex_unlock(&v->lock);
}
