/*
 * ccache.c - slots scanned linearly: the cache holds tens of chunks, and a
 * scan of tens of 16-byte ids costs less than the memcpy that follows a hit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store/ccache.h"

enum { SLOT_EMPTY, SLOT_LOADING, SLOT_READY };

struct slot {
	struct cas_id id;
	int state;
	size_t len;
	unsigned pins; /* readers copying out of data, without the lock */
	uint64_t used; /* tick of last use */
	uint8_t *data;
};

struct ccache {
	pthread_mutex_t lock; /* guards every slot and tick */
	pthread_cond_t loaded; /* a LOADING slot became READY or EMPTY */
	struct slot *slots;
	size_t n, slot_bytes;
	uint64_t tick;
};

struct ccache *ccache_new(size_t nslots, size_t slot_bytes)
{
	struct ccache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->slots = calloc(nslots, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	c->n = nslots;
	c->slot_bytes = slot_bytes;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->loaded, NULL);
	return c;
}

void ccache_free(struct ccache *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n; i++)
		free(c->slots[i].data);
	free(c->slots);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->loaded);
	free(c);
}

static struct slot *find(struct ccache *c, const struct cas_id *id)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		if (c->slots[i].state != SLOT_EMPTY && cas_id_eq(&c->slots[i].id, id))
			return &c->slots[i];
	return NULL;
}

static struct slot *victim(struct ccache *c)
{
	struct slot *best = NULL;
	size_t i;

	for (i = 0; i < c->n; i++) {
		struct slot *s = &c->slots[i];

		if (s->state == SLOT_EMPTY)
			return s;
		if (s->state == SLOT_READY && !s->pins && (!best || s->used < best->used))
			best = s;
	}
	return best;
}

int ccache_read(struct ccache *c, const struct cas_id *id, size_t off,
		void *dst, size_t len)
{
	struct slot *s;
	int r = -ENOENT;

	pthread_mutex_lock(&c->lock);
	while ((s = find(c, id)) && s->state == SLOT_LOADING)
		pthread_cond_wait(&c->loaded, &c->lock);
	if (s && off + len <= s->len) {
		/* The copy runs unlocked: a pinned slot is never reused, so
		 * readers of other chunks and read-ahead do not wait on it. */
		s->pins++;
		s->used = ++c->tick;
		pthread_mutex_unlock(&c->lock);
		memcpy(dst, s->data + off, len);
		pthread_mutex_lock(&c->lock);
		s->pins--;
		r = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

uint8_t *ccache_begin(struct ccache *c, const struct cas_id *id)
{
	struct slot *s;
	uint8_t *buf = NULL;

	pthread_mutex_lock(&c->lock);
	if (find(c, id))
		goto out;
	s = victim(c);
	if (!s)
		goto out;
	if (!s->data) {
		s->data = malloc(c->slot_bytes);
		if (!s->data) {
			s->state = SLOT_EMPTY;
			goto out;
		}
	}
	s->id = *id;
	s->state = SLOT_LOADING;
	s->len = 0;
	buf = s->data;
out:
	pthread_mutex_unlock(&c->lock);
	return buf;
}

void ccache_end(struct ccache *c, const struct cas_id *id, size_t len)
{
	struct slot *s;

	pthread_mutex_lock(&c->lock);
	s = find(c, id);
	if (s && s->state == SLOT_LOADING) {
		s->state = len ? SLOT_READY : SLOT_EMPTY;
		s->len = len;
		s->used = ++c->tick;
	}
	pthread_cond_broadcast(&c->loaded);
	pthread_mutex_unlock(&c->lock);
}
