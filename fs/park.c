/*
 * park.c - parked reads and polls (park.h has the protocol).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs/park.h"
#include "fs/subtree.h"

/* A read (req set) or a poll (ph set, key its open handle) not yet answered. */
struct parked {
	struct parked *next;
	char *name;
	fuse_req_t req;
	size_t size;
	off_t off;
	const void *key;
	struct fuse_pollhandle *ph;
	int armed;       /* the interrupt func is set: notices may answer */
	int interrupted; /* interrupted before armed */
};

/* A name that may be ready, for the watcher. */
struct notice {
	struct notice *next;
	char *name;
};

struct fs_park {
	fs_park_result_fn result;
	void *arg;
	pthread_mutex_t lock; /* parked, notices, lost, closing */
	pthread_cond_t wake;  /* the watcher: a notice, or closing */
	struct parked *parked;
	struct notice *notices, **notices_tail;
	int lost;             /* a notice was lost: look at every name */
	int closing;
	int watching;
	pthread_t watcher;
};

static void parked_free(struct parked *w)
{
	if (!w)
		return;
	if (w->ph)
		fuse_pollhandle_destroy(w->ph);
	free(w->name);
	free(w);
}

/* Takes w off the list if it is still there: 1 when the caller now owns it. */
static int take_locked(struct fs_park *pk, struct parked *w)
{
	for (struct parked **pp = &pk->parked; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			w->next = NULL;
			return 1;
		}
	return 0;
}

/* Answers a request taken off the list, and frees it. */
static void answer(struct parked *w, int r, const char *text, size_t len)
{
	if (w->req && r < 0)
		fs_reply_err(w->req, r);
	else if (w->req)
		fs_reply_text(w->req, text, len, w->size, w->off);
	else if (r != -EINTR)
		fuse_lowlevel_notify_poll(w->ph);
	parked_free(w);
}

/* libfuse's interrupt func, called with the request's own lock held. */
static void on_interrupt(fuse_req_t req, void *arg)
{
	struct fs_park *pk = arg;
	struct parked *w, *taken = NULL;

	pthread_mutex_lock(&pk->lock);
	for (w = pk->parked; w; w = w->next)
		if (w->req == req)
			break;
	if (w && w->armed && take_locked(pk, w))
		taken = w;
	else if (w)
		w->interrupted = 1;
	pthread_mutex_unlock(&pk->lock);
	if (taken)
		answer(taken, -EINTR, NULL, 0);
}

/* Answers every armed request of name if its answer is ready. */
static void answer_name(struct fs_park *pk, const char *name)
{
	struct parked *w, **pp, *mine = NULL;
	char *text = NULL;
	size_t len = 0;
	int r;

	/* Most notices concern names nobody waits for: no answer is made for them. */
	pthread_mutex_lock(&pk->lock);
	for (w = pk->parked; w; w = w->next)
		if (w->armed && !strcmp(w->name, name))
			break;
	pthread_mutex_unlock(&pk->lock);
	if (!w)
		return;
	r = pk->result(pk->arg, name, &text, &len);
	if (r == -EAGAIN)
		return;
	pthread_mutex_lock(&pk->lock);
	for (pp = &pk->parked; (w = *pp);) {
		if (w->armed && !strcmp(w->name, name)) {
			*pp = w->next;
			w->next = mine;
			mine = w;
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&pk->lock);
	while ((w = mine)) {
		mine = w->next;
		answer(w, r, text, len);
	}
	free(text);
}

/* After a lost notice: every parked name is looked at again. */
static void answer_all(struct fs_park *pk)
{
	char **names;
	size_t n = 0, i;
	struct parked *w;

	pthread_mutex_lock(&pk->lock);
	for (w = pk->parked; w; w = w->next)
		n++;
	names = calloc(n ? n : 1, sizeof(*names));
	for (n = 0, w = pk->parked; names && w; w = w->next)
		names[n++] = strdup(w->name);
	if (!names)
		pk->lost = 1;
	pthread_mutex_unlock(&pk->lock);
	for (i = 0; names && i < n; i++) {
		if (names[i])
			answer_name(pk, names[i]);
		free(names[i]);
	}
	free(names);
}

static void *watch_main(void *arg)
{
	struct fs_park *pk = arg;
	struct notice *n;
	int lost;

	pthread_mutex_lock(&pk->lock);
	while (!pk->closing) {
		if (!pk->notices && !pk->lost) {
			pthread_cond_wait(&pk->wake, &pk->lock);
			continue;
		}
		n = pk->notices;
		if (n) {
			pk->notices = n->next;
			if (!pk->notices)
				pk->notices_tail = &pk->notices;
		}
		lost = pk->lost;
		pk->lost = 0;
		pthread_mutex_unlock(&pk->lock);
		if (n)
			n->name ? answer_name(pk, n->name) : answer_all(pk);
		if (lost)
			answer_all(pk);
		if (n)
			free(n->name);
		free(n);
		pthread_mutex_lock(&pk->lock);
	}
	pthread_mutex_unlock(&pk->lock);
	return NULL;
}

int fs_park_open(fs_park_result_fn result, void *arg, struct fs_park **ret)
{
	struct fs_park *pk = calloc(1, sizeof(*pk));
	int r;

	if (!pk)
		return -ENOMEM;
	pk->result = result;
	pk->arg = arg;
	pk->notices_tail = &pk->notices;
	pthread_mutex_init(&pk->lock, NULL);
	pthread_cond_init(&pk->wake, NULL);
	r = -pthread_create(&pk->watcher, NULL, watch_main, pk);
	if (r < 0) {
		pthread_mutex_destroy(&pk->lock);
		pthread_cond_destroy(&pk->wake);
		free(pk);
		return r;
	}
	pk->watching = 1;
	*ret = pk;
	return 0;
}

void fs_park_drain(struct fs_park *pk)
{
	struct parked *w;

	if (!pk)
		return;
	pthread_mutex_lock(&pk->lock);
	pk->closing = 1;
	pthread_cond_broadcast(&pk->wake);
	pthread_mutex_unlock(&pk->lock);
	if (pk->watching) {
		pthread_join(pk->watcher, NULL);
		pk->watching = 0;
	}
	pthread_mutex_lock(&pk->lock);
	while ((w = pk->parked)) {
		pk->parked = w->next;
		pthread_mutex_unlock(&pk->lock);
		answer(w, -EINTR, NULL, 0);
		pthread_mutex_lock(&pk->lock);
	}
	pthread_mutex_unlock(&pk->lock);
}

void fs_park_close(struct fs_park *pk)
{
	struct notice *n;

	if (!pk)
		return;
	fs_park_drain(pk);
	while ((n = pk->notices)) {
		pk->notices = n->next;
		free(n->name);
		free(n);
	}
	pthread_mutex_destroy(&pk->lock);
	pthread_cond_destroy(&pk->wake);
	free(pk);
}

void fs_park_notice(struct fs_park *pk, const char *name)
{
	struct notice *n;

	pthread_mutex_lock(&pk->lock);
	if (pk->closing) {
		pthread_mutex_unlock(&pk->lock);
		return;
	}
	n = malloc(sizeof(*n));
	if (n && (!name || (n->name = strdup(name)))) {
		if (!name)
			n->name = NULL;
		n->next = NULL;
		*pk->notices_tail = n;
		pk->notices_tail = &n->next;
	} else {
		free(n);
		pk->lost = 1;
	}
	pthread_cond_signal(&pk->wake);
	pthread_mutex_unlock(&pk->lock);
}

/*
 * The request is listed before the interrupt func is set (a func that finds nothing
 * would lose the interrupt) and answered by nobody until armed (setting the func on an
 * answered request would touch freed memory); the answer is looked at once armed, so
 * that an end in between is not missed.
 */
void fs_park_read(struct fs_park *pk, const char *name, fuse_req_t req, size_t size,
		  off_t off)
{
	struct parked *w = calloc(1, sizeof(*w));
	int mine;

	if (!w || !(w->name = strdup(name))) {
		free(w);
		return fs_reply_err(req, -ENOMEM);
	}
	w->req = req;
	w->size = size;
	w->off = off;
	pthread_mutex_lock(&pk->lock);
	if (pk->closing) {
		pthread_mutex_unlock(&pk->lock);
		parked_free(w);
		return fs_reply_err(req, -EINTR);
	}
	w->next = pk->parked;
	pk->parked = w;
	pthread_mutex_unlock(&pk->lock);
	fuse_req_interrupt_func(req, on_interrupt, pk);
	pthread_mutex_lock(&pk->lock);
	w->armed = 1;
	mine = w->interrupted && take_locked(pk, w);
	pthread_mutex_unlock(&pk->lock);
	if (mine)
		answer(w, -EINTR, NULL, 0);
	else
		answer_name(pk, name);
}

/* The kernel sends a new poll handle with every poll(): it replaces key's last one. */
int fs_park_poll(struct fs_park *pk, const char *name, const void *key,
		 struct fuse_pollhandle *ph, unsigned *ret_events)
{
	struct fuse_pollhandle *old = NULL;
	struct parked *w, *fresh;
	char *text = NULL;
	size_t len = 0;
	int r;

	*ret_events = POLLIN | POLLRDNORM;
	if (!ph) {
		r = pk->result(pk->arg, name, &text, &len);
		free(text);
		if (r == -EAGAIN)
			*ret_events = 0;
		return 0;
	}
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh || !(fresh->name = strdup(name))) {
		free(fresh);
		fuse_pollhandle_destroy(ph);
		return -ENOMEM;
	}
	fresh->key = key;
	fresh->ph = ph;
	fresh->armed = 1;
	pthread_mutex_lock(&pk->lock);
	for (w = pk->parked; w; w = w->next)
		if (!w->req && w->key == key)
			break;
	if (w) {
		old = w->ph;
		w->ph = ph;
		fresh->ph = NULL;
	} else if (!pk->closing) {
		fresh->next = pk->parked;
		pk->parked = fresh;
		fresh = NULL;
	}
	pthread_mutex_unlock(&pk->lock);
	parked_free(fresh);
	if (old)
		fuse_pollhandle_destroy(old);
	/* Listed first, looked at second: an end in between is not missed. */
	r = pk->result(pk->arg, name, &text, &len);
	free(text);
	if (r == -EAGAIN)
		*ret_events = 0;
	else
		answer_name(pk, name);
	return 0;
}

void fs_park_forget(struct fs_park *pk, const void *key)
{
	struct parked *w = NULL, **pp;

	pthread_mutex_lock(&pk->lock);
	for (pp = &pk->parked; *pp; pp = &(*pp)->next)
		if (!(*pp)->req && (*pp)->key == key) {
			w = *pp;
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&pk->lock);
	parked_free(w);
}
