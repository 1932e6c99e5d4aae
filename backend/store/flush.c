/*
 * flush.c - what a close() promises: committed at once, durable within a
 * bounded delay (cas_writer_commit_lazy()), and the check at open that a
 * power loss inside that delay lost no chunk the catalog names unnoticed.
 *
 * A lazy commit appends its records without syncing the packs and commits
 * its transaction without syncing the WAL.  The flusher thread makes them
 * durable (packs first, then the WAL) at most flush_ms after the first
 * one; cas_sync() (fsync(), fsyncdir, unmount) at once.  Until then a
 * power loss may keep the WAL frames of a commit and lose the pack bytes
 * they name: the kernel writes both out in its own order.  So the file
 * `synced` holds the durable mark (pack_durable()): no pack byte before
 * it can be missing after a power loss.  It only moves forward, and only
 * after a sync that covered it, so a write of it that a power loss undoes
 * leaves an older, lower mark: more to check, never less.  At open every
 * chunk row at or after the mark is read back and verified; one that does
 * not match is marked damaged (reads give EIO, never wrong bytes; the next
 * write of the same bytes repairs it, and no new file deduplicates against
 * it), and counted in cas_status().
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fsync.h"
#include "backend/store/store_i.h"

#define MARK_FILE "synced"
#define MARK_LEN 32 /* "%010u %020llu\n": within one sector, no torn write */

/* Writes the durable mark; synced only when the file is new (open). */
static int mark_write(struct cas_store *st, int sync)
{
	char buf[MARK_LEN + 1];
	uint32_t id;
	uint64_t off;

	if (st->markfd < 0)
		return 0;
	pack_durable(st->packs, &id, &off);
	snprintf(buf, sizeof(buf), "%010" PRIu32 " %020" PRIu64 "\n", id, off);
	if (pwrite(st->markfd, buf, MARK_LEN, 0) != MARK_LEN)
		return errno ? -errno : -EIO;
	if (sync && fdatasync(st->markfd) < 0)
		return -errno;
	return 0;
}

/* 1 and the mark, 0 when there is no mark file, or -errno (unreadable). */
static int mark_read(const char *path, uint32_t *ret_id, uint64_t *ret_off)
{
	char buf[MARK_LEN + 1];
	unsigned long long off;
	unsigned id;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = pread(fd, buf, MARK_LEN, 0);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	/* A mark that does not parse (a store copied mid-write) checks all. */
	if (sscanf(buf, "%u %llu", &id, &off) != 2) {
		id = 0;
		off = 0;
	}
	*ret_id = id;
	*ret_off = off;
	return 1;
}


struct tail {
	uint32_t id;
	uint64_t off;
	struct cas_id *ids;
	struct pack_loc *locs;
	size_t n, cap;
};

static int tail_add(void *arg, const struct cas_id *id, const struct pack_loc *loc)
{
	struct tail *t = arg;

	if (loc->pack == t->id && loc->off + PACK_REC_LEN + loc->clen <= t->off)
		return 0;
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		struct cas_id *ids = realloc(t->ids, cap * sizeof(*ids));
		struct pack_loc *locs;

		if (!ids)
			return -ENOMEM;
		t->ids = ids;
		locs = realloc(t->locs, cap * sizeof(*locs));
		if (!locs)
			return -ENOMEM;
		t->locs = locs;
		t->cap = cap;
	}
	t->ids[t->n] = *id;
	t->locs[t->n] = loc[0];
	t->n++;
	return 0;
}

/*
 * Recovery: verifies every chunk row at or after the durable mark, marks
 * the ones lost damaged, syncs what a previous process may have left in
 * the page cache only, and moves the mark to the end.  A store without a
 * mark (made before marks were kept: its closes all synced) gets one.
 */
int store_tail_check(struct cas_store *st, char *err, size_t errlen)
{
	struct tail t = { 0 };
	struct worker_ctx *ctx;
	char path[4096];
	uint32_t *ids = NULL, len, i;
	uint64_t *sizes = NULL, *live = NULL;
	int n = 0, have, fresh = 0, r;

	snprintf(path, sizeof(path), "%s/" MARK_FILE, st->dir);
	have = mark_read(path, &t.id, &t.off);
	if (have < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(-have));
		return have;
	}
	if (have) {
		n = cat_packs(st->cat, &ids, &sizes, &live);
		r = n < 0 ? n : 0;
		for (i = 0; r == 0 && i < (uint32_t)n; i++)
			if (ids[i] >= t.id)
				r = cat_chunks_in_pack(st->cat, ids[i], tail_add, &t);
		ctx = r == 0 ? store_tls(st) : NULL;
		if (r == 0 && !ctx)
			r = -ENOMEM;
		for (i = 0; r == 0 && i < t.n; i++) {
			if (store_load_chunk(st, ctx, &t.ids[i], &t.locs[i], ctx->out, &len) == 0)
				continue;
			r = cat_damaged_mark(st->cat, &t.ids[i]);
			st->lost_at_open++;
		}
		if (r == 0)
			pack_set_dirty_from(st->packs, t.id);
		store_pack_rows_free(ids, sizes, live, NULL, NULL, NULL);
		free(t.ids);
		free(t.locs);
		if (r < 0) {
			snprintf(err, errlen, "cannot check the packs' unsynced tail: %s",
				 strerror(-r));
			return r;
		}
	}
	st->markfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->markfd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	fresh = !have;
	r = pack_set_sync(st->packs);
	if (r == 0)
		r = mark_write(st, 1);
	if (r == 0 && fresh)
		r = fsync_path(st->dir);
	if (r < 0)
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-r));
	return r;
}

/* Packs, then the catalog's WAL, then the mark: everything committed is durable. */
int cas_sync(struct cas_store *st)
{
	int r = pack_set_sync(st->packs);

	if (r == 0) {
		pthread_mutex_lock(&st->lock);
		r = cat_sync(st->cat);
		pthread_mutex_unlock(&st->lock);
	}
	if (r == 0)
		r = mark_write(st, 0);
	return r;
}

void store_synced(struct cas_store *st)
{
	mark_write(st, 0);
}

void store_lazy_note(struct cas_store *st)
{
	struct flusher *f = &st->fl;

	pthread_mutex_lock(&f->lock);
	f->sync = 1;
	if (!f->pending) {
		f->pending = 1;
		f->since = store_now_ns();
		pthread_cond_signal(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
}

/* Inline chunks moved per transaction: bounded memory and lock time. */
#define MOVE_BATCH 2048

struct move {
	struct cas_id *ids;
	struct pack_loc *locs; /* inline row, then where it was appended */
	uint8_t **data;
	size_t n;
};

static int move_add(void *arg, const struct cas_id *id, const struct pack_loc *loc,
		    const void *data, uint32_t len)
{
	struct move *m = arg;
	uint8_t *p = malloc(len ? len : 1);

	if (!p)
		return -ENOMEM;
	memcpy(p, data, len);
	m->ids[m->n] = *id;
	m->locs[m->n] = *loc;
	m->data[m->n] = p;
	m->n++;
	return 0;
}

/* Points the rows still inline at their appended records.  Lock held. */
static int move_commit(struct cas_store *st, struct move *m, size_t appended)
{
	struct pack_delta *d = NULL;
	struct pack_loc cur;
	size_t nd = 0, i;
	int r;

	r = cat_begin_unsynced(st->cat);
	if (r < 0)
		return r;
	for (i = 0; r == 0 && i < appended; i++) {
		/* Collected, or healed elsewhere, meanwhile: the record is
		 * garbage past the pack's live bytes. */
		if (cat_chunk_get(st->cat, &m->ids[i], &cur, NULL) < 0 ||
		    cur.pack != CAS_PACK_INLINE)
			continue;
		r = cat_chunk_relocate(st->cat, &m->ids[i], &m->locs[i]);
		if (r == 0)
			r = cat_inline_delete(st->cat, &m->ids[i]);
		if (r == 0)
			r = store_delta_add(&d, &nd, m->locs[i].pack,
					    PACK_REC_LEN + m->locs[i].clen);
	}
	if (r == 0)
		r = store_deltas_apply(st, d, nd);
	r = cat_end_unsynced(st->cat, r);
	if (r == 0)
		store_deltas_committed(st, d, nd);
	free(d);
	return r;
}

int store_inline_move(struct cas_store *st)
{
	struct move m = { 0 };
	size_t i, appended = 0;
	int r, n, err;

	m.ids = malloc(MOVE_BATCH * sizeof(*m.ids));
	m.locs = malloc(MOVE_BATCH * sizeof(*m.locs));
	m.data = calloc(MOVE_BATCH, sizeof(*m.data));
	if (!m.ids || !m.locs || !m.data) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&st->lock);
	n = cat_inline_list(st->cat, MOVE_BATCH, move_add, &m);
	if (n > 0)
		st->writers++;
	pthread_mutex_unlock(&st->lock);
	r = n;
	if (n <= 0)
		goto out;
	for (i = 0, r = 0; r == 0 && i < m.n; i++) {
		r = store_append(st, &m.ids[i], m.locs[i].scheme, m.locs[i].ulen,
				 m.data[i], m.locs[i].clen, &m.locs[i]);
		appended += r == 0;
	}
	/* A full disk stops the appends: what was appended still moves, the
	 * rest stays inline (durable in the catalog) for a later try. */
	err = r;
	r = appended ? pack_set_sync(st->packs) : 0;
	if (r == 0 && appended)
		store_synced(st);
	pthread_mutex_lock(&st->lock);
	if (r == 0 && appended)
		r = move_commit(st, &m, appended);
	st->writers--;
	pthread_mutex_unlock(&st->lock);
	if (r == 0)
		r = err < 0 ? err : (int)appended;
out:
	for (i = 0; m.data && i < m.n; i++)
		free(m.data[i]);
	free(m.ids);
	free(m.locs);
	free(m.data);
	return r;
}

void store_inline_move_all(struct cas_store *st)
{
	while (store_inline_move(st) > 0)
		;
}

void store_inline_note(struct cas_store *st)
{
	struct flusher *f = &st->fl;

	pthread_mutex_lock(&f->lock);
	f->move = 1;
	f->last_inline = store_now_ns();
	f->inline_commits++;
	if (!f->pending) {
		f->pending = 1;
		f->since = store_now_ns();
		pthread_cond_signal(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
}

/*
 * Whether the inline chunks move now (flusher lock held).  Not while small
 * files keep being committed: a move appends, syncs a pack, rewrites each
 * row and syncs the WAL, and during a copy of many small files those
 * syncs and the move's large transactions (which grow the WAL past its
 * usual size, so its syncs become appends) slowed every close.  Inline
 * chunks are durable in the catalog, so waiting costs nothing but room
 * there: they move once commits pause for the flush delay, or once
 * MOVE_BATCH commits have put chunks inline since the last move.
 */
static int move_due(const struct flusher *f, int64_t now)
{
	return f->move && (f->inline_commits >= MOVE_BATCH ||
			   now - f->last_inline >= (int64_t)f->delay_ms * 1000000);
}

static void *flusher_main(void *arg)
{
	struct cas_store *st = arg;
	struct flusher *f = &st->fl;
	struct timespec ts;
	int64_t due;
	int move, sync;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		while (!f->pending && !f->stop)
			pthread_cond_wait(&f->cond, &f->lock);
		if (!f->pending)
			break;
		due = f->since + (int64_t)f->delay_ms * 1000000;
		ts.tv_sec = (time_t)(due / 1000000000);
		ts.tv_nsec = (long)(due % 1000000000);
		/* store_now_ns() is CLOCK_REALTIME's, as the cond's clock. */
		while (!f->stop && store_now_ns() < due &&
		       pthread_cond_timedwait(&f->cond, &f->lock, &ts) != ETIMEDOUT)
			;
		f->pending = 0;
		move = f->move && (f->stop || move_due(f, store_now_ns()));
		sync = f->sync || move;
		f->sync = 0;
		if (move) {
			f->move = 0;
			f->inline_commits = 0;
		} else if (f->move) {
			/* Wake again once the commits may have paused. */
			f->pending = 1;
			f->since = f->last_inline;
		}
		pthread_mutex_unlock(&f->lock);
		/* The move's transaction is unsynced: the sync below covers it. */
		if (move)
			store_inline_move_all(st);
		if (!sync) {
			pthread_mutex_lock(&f->lock);
			continue;
		}
		/* A failure (a full disk) leaves the commits unsynced: a later
		 * lazy commit, fsync() or the unmount tries again. */
		if (cas_sync(st) < 0) {
			pthread_mutex_lock(&f->lock);
			f->failures++;
			pthread_mutex_unlock(&f->lock);
		} else {
			pthread_mutex_lock(&f->lock);
			f->flushes++;
			pthread_mutex_unlock(&f->lock);
		}
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int store_flusher_start(struct cas_store *st, int delay_ms)
{
	struct flusher *f = &st->fl;
	int r;

	f->delay_ms = delay_ms;
	r = -pthread_create(&f->thread, NULL, flusher_main, st);
	if (r == 0)
		f->running = 1;
	return r;
}

void store_flusher_stop(struct cas_store *st)
{
	struct flusher *f = &st->fl;

	if (!f->running)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = 1;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	f->running = 0;
}
