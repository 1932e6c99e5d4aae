/*
 * transfers.c - the transfer list: a singly linked list, newest first,
 * under one leaf mutex; finished transfers beyond XFER_KEEP are dropped as
 * each one ends.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/registry/transfers.h"
#include "common/clock.h"

struct xfer_list {
	pthread_mutex_t lock;
	struct xfer *head;
};

int xfer_list_new(struct xfer_list **ret)
{
	struct xfer_list *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	*ret = l;
	return 0;
}

void xfer_list_free(struct xfer_list *l)
{
	struct xfer *x, *next;

	if (!l)
		return;
	for (x = l->head; x; x = next) {
		next = x->next;
		free(x->name);
		free(x);
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
}

struct xfer *xfer_start(struct xfer_list *l, const char *what,
			const char *remote, const char *repo, const char *tag,
			const char *path, uint64_t total)
{
	struct xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	snprintf(x->what, sizeof(x->what), "%s", what);
	if (asprintf(&x->name, "%s/%s:%s%s%s", remote, repo, tag, path ? "/" : "",
		     path ? path : "") < 0) {
		free(x);
		return NULL;
	}
	atomic_store(&x->total, total);
	x->start = clock_mono_ns();
	pthread_mutex_lock(&l->lock);
	x->next = l->head;
	l->head = x;
	pthread_mutex_unlock(&l->lock);
	return x;
}

void xfer_end(struct xfer_list *l, struct xfer *x, int r, const char *err)
{
	struct xfer **p;
	int kept = 0;

	if (!x)
		return;
	pthread_mutex_lock(&l->lock);
	x->end = clock_mono_ns();
	x->state = r < 0 ? 2 : 1;
	if (r < 0)
		snprintf(x->err, sizeof(x->err), "%s", err && *err ? err : strerror(-r));
	/* Keep the newest finished ones. */
	for (p = &l->head; *p;) {
		struct xfer *y = *p;

		if (y->state && ++kept > XFER_KEEP) {
			*p = y->next;
			free(y->name);
			free(y);
			continue;
		}
		p = &y->next;
	}
	pthread_mutex_unlock(&l->lock);
}

static void human(uint64_t b, char *out, size_t len)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void xfer_line(FILE *f, const struct xfer *x, int64_t now)
{
	uint64_t done = atomic_load(&x->done), total = atomic_load(&x->total);
	double s = (double)((x->state ? x->end : now) - x->start) / 1e9;
	double rate = s > 0 ? (double)done / s : 0;
	char d[32], t[32], rt[32], eta[32] = "-";

	human(done, d, sizeof(d));
	human(total, t, sizeof(t));
	human((uint64_t)rate, rt, sizeof(rt));
	if (!x->state && rate > 0 && total > done)
		snprintf(eta, sizeof(eta), "%.0fs", (double)(total - done) / rate);
	fprintf(f, "%s %s %llu/%llu (%s/%s) %s/s %s %s%s%s\n", x->what, x->name,
		(unsigned long long)done, (unsigned long long)total, d, t, rt, eta,
		x->state == 0 ? "running" : x->state == 1 ? "done" : "failed",
		x->state == 2 ? ": " : "", x->state == 2 ? x->err : "");
}

int xfer_list_text(struct xfer_list *l, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int64_t now = clock_mono_ns();
	struct xfer *x;

	if (!f)
		return -ENOMEM;
	fprintf(f, "# kind name done/total-bytes (human) rate eta state\n");
	pthread_mutex_lock(&l->lock);
	for (x = l->head; x; x = x->next)
		xfer_line(f, x, now);
	pthread_mutex_unlock(&l->lock);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}
