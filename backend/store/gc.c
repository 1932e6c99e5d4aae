/*
 * gc.c - collecting unreferenced chunks and compacting packs.
 *
 * Deleting a file only lowers reference counts; a chunk whose count reaches
 * zero stays in the catalog (a writer may still pick it up for dedup) until
 * cas_gc() runs with no writer open.  A run:
 *  1. cuts off bytes that writers appended and never committed, by the
 *     rules recovery follows at open (store_packs_trim(): never below a
 *     chunk record a row points at; a pack no row knows is deleted only
 *     when this process made it, else set aside in quarantine/);
 *  2. deletes the dead rows in one transaction, then gives back the disk
 *     blocks inside those records (pack_punch()): the space is free at
 *     once, without copying anything, however full the disk is;
 *  3. compacts: a pack under half live has its live records appended, byte
 *     for byte, to the current pack; the copies are synced, and one
 *     transaction moves the rows, records the committed size of every pack
 *     that received records (compaction can fill one and go on in the
 *     next) and deletes the old pack's row, before the old pack is
 *     unlinked.  A pack with nothing live is the same with nothing to move.
 *
 * Figures read before a compaction go stale when it runs, so: only packs
 * older than the pack appends go to when compaction starts are candidates
 * (every pack that receives records in a run is that one or newer, and is
 * left alone), each candidate's figures are read afresh from the catalog,
 * and a pack's row is deleted only in the transaction that leaves no chunk
 * row pointing into it.  A compaction is skipped when the disk has no room
 * for its copies (the holes of step 1 freed the space already).  A crash
 * at any point leaves either the old or the new location committed; the
 * other copy is cut off or removed at next open.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "backend/store/store_i.h"

/* Free space a compaction leaves beyond its copies, for the writers. */
#define GC_ROOM_SPARE (4u << 20)

struct dead_acc {
	struct cas_store *st;
	struct pack_delta *v;   /* live bytes each pack loses */
	size_t n;
	struct pack_loc *holes; /* the dead records, to punch */
	size_t nholes, cap;
};

static int drop_dead(void *arg, const struct cas_id *id, const struct pack_loc *loc)
{
	struct dead_acc *a = arg;
	int r = cat_chunk_delete(a->st->cat, id);

	if (r < 0)
		return r;
	/* An inline chunk's bytes go with its row: nothing to punch. */
	if (loc->pack == CAS_PACK_INLINE)
		return cat_inline_delete(a->st->cat, id);
	if (a->nholes == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 256;
		struct pack_loc *t = realloc(a->holes, cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		a->holes = t;
		a->cap = cap;
	}
	a->holes[a->nholes++] = *loc;
	return store_delta_add(&a->v, &a->n, loc->pack,
			       -(PACK_REC_LEN + (int64_t)loc->clen));
}

/* Deletes the rows of chunks no file holds, in one transaction.  Lock held. */
static int drop_dead_rows(struct cas_store *st, struct dead_acc *a)
{
	int64_t keep = store_now_ns() - (int64_t)CAS_FETCHED_KEEP_S * 1000000000;
	size_t i;
	int r;

	r = cat_begin(st->cat);
	if (r < 0)
		return r;
	r = cat_fetched_prune(st->cat, keep);
	if (r == 0)
		r = cat_verified_prune(st->cat, KNOWN_LIST_MIN);
	if (r == 0)
		r = cat_chunks_dead(st->cat, keep, drop_dead, a);
	for (i = 0; r == 0 && i < a->n; i++)
		r = cat_pack_update(st->cat, a->v[i].pack, 0, a->v[i].live);
	if (r == 0)
		return cat_commit(st->cat);
	cat_rollback(st->cat);
	a->nholes = 0; /* nothing was deleted: nothing may be punched */
	return r;
}

/* The chunk rows of one pack, read before any of them moves. */
struct rows {
	struct cas_id *ids;
	struct pack_loc *locs;
	size_t n, cap;
};

static int add_row(void *arg, const struct cas_id *id, const struct pack_loc *loc)
{
	struct rows *w = arg;

	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		struct cas_id *a = realloc(w->ids, cap * sizeof(*a));
		struct pack_loc *b;

		if (!a)
			return -ENOMEM;
		w->ids = a;
		b = realloc(w->locs, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		w->locs = b;
		w->cap = cap;
	}
	w->ids[w->n] = *id;
	w->locs[w->n++] = *loc;
	return 0;
}

static int count_row(void *arg, const struct cas_id *id, const struct pack_loc *loc)
{
	(void)id;
	(void)loc;
	++*(size_t *)arg;
	return 0;
}

/* Copies one record to the pack appends go to and points its row there. */
static int move_chunk(struct cas_store *st, const struct cas_id *id,
		      const struct pack_loc *loc, uint8_t *rec,
		      struct pack_delta **v, size_t *nv)
{
	struct pack_loc nl;
	int r;

	r = pack_read(st->packs, loc, id, rec);
	if (r < 0)
		return r;
	r = pack_append(st->packs, id, loc->scheme, loc->ulen,
			rec + PACK_REC_LEN, loc->clen, &nl);
	if (r < 0)
		return r;
	r = cat_chunk_relocate(st->cat, id, &nl);
	if (r < 0)
		return r;
	return store_delta_add(v, nv, nl.pack, PACK_REC_LEN + (int64_t)loc->clen);
}

/*
 * After a failed compaction: cuts the packs that received copies back to
 * their committed size (the rolled-back transaction's catalog), so that
 * the copies do not become committed with the next writer's bytes.
 */
static void cut_back(struct cas_store *st, const struct pack_delta *v, size_t nv)
{
	uint32_t *ids = NULL, *cp = NULL;
	uint64_t *sizes = NULL, *live = NULL, *ends = NULL, *clive = NULL;
	int n = cat_packs(st->cat, &ids, &sizes, &live), nc = -1, i;
	size_t j;

	if (n >= 0)
		nc = cat_pack_ends(st->cat, &cp, &ends, &clive);
	for (j = 0; nc >= 0 && j < nv; j++) {
		uint64_t committed = PACK_HEADER_LEN;

		/* Never below a chunk record the catalog points at. */
		for (i = 0; i < n; i++)
			if (ids[i] == v[j].pack)
				committed = sizes[i];
		for (i = 0; i < nc; i++)
			if (cp[i] == v[j].pack && ends[i] > committed)
				committed = ends[i];
		pack_truncate(st->packs, v[j].pack, committed);
	}
	store_pack_rows_free(ids, sizes, live, cp, ends, clive);
}

/*
 * Moves every chunk row of pack id to the pack appends go to, and deletes
 * id's row, in one transaction.  Lock held.
 */
static int compact_locked(struct cas_store *st, uint32_t id, uint8_t *rec)
{
	struct rows w = { 0 };
	struct pack_delta *v = NULL; /* live bytes each receiving pack gains */
	size_t nv = 0, i, left = 0;
	int r;

	r = cat_begin(st->cat);
	if (r < 0)
		return r;
	r = cat_chunks_in_pack(st->cat, id, add_row, &w);
	for (i = 0; r == 0 && i < w.n; i++)
		r = move_chunk(st, &w.ids[i], &w.locs[i], rec, &v, &nv);
	if (r == 0 && nv)
		r = pack_set_sync(st->packs);
	if (r == 0)
		r = store_deltas_apply(st, v, nv);
	/* The guard: a pack is deleted only with no row pointing into it. */
	if (r == 0)
		r = cat_chunks_in_pack(st->cat, id, count_row, &left);
	if (r == 0 && left)
		r = -EIO;
	if (r == 0)
		r = cat_pack_delete(st->cat, id);
	if (r == 0)
		r = cat_commit(st->cat);
	if (r == 0)
		store_deltas_committed(st, v, nv);
	if (r < 0) {
		cat_rollback(st->cat);
		cut_back(st, v, nv);
	}
	free(w.ids);
	free(w.locs);
	free(v);
	return r;
}

/* 1 if copying bytes more leaves the disk its spare room. */
static int have_room(struct cas_store *st, uint64_t bytes)
{
	struct statvfs sv;

	if (statvfs(st->dir, &sv) < 0)
		return 1; /* let the append say */
	/* A given-back reserve's room is for deletes (store_append_room()). */
	if (__atomic_load_n(&st->reserve_gone, __ATOMIC_ACQUIRE))
		bytes += RESERVE_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize >= bytes + GC_ROOM_SPARE;
}

/* A pack worth compacting: under half live (or nothing live). */
static int sparse(uint64_t size, uint64_t live)
{
	return live * 2 < size && size - live > PACK_HEADER_LEN;
}

/*
 * The next pack to compact: the lowest id above after and below limit that
 * is under half live, with its figures read now.  0 if none, 1 if found,
 * or -errno.
 */
static int next_sparse(struct cas_store *st, uint32_t after, uint32_t limit,
		       uint32_t *ret_id, uint64_t *ret_size, uint64_t *ret_live)
{
	uint32_t *ids = NULL;
	uint64_t *sizes = NULL, *live = NULL;
	int n = cat_packs(st->cat, &ids, &sizes, &live), i, found = 0;

	for (i = 0; i < n && !found; i++) {
		if (ids[i] <= after || ids[i] >= limit || !sparse(sizes[i], live[i]))
			continue;
		*ret_id = ids[i];
		*ret_size = sizes[i];
		*ret_live = live[i];
		found = 1;
	}
	free(ids);
	free(sizes);
	free(live);
	return n < 0 ? n : found;
}

/*
 * Compacts the sparse packs, appending to packs no older than the current
 * one.  The current pack is collected too once half of it is garbage:
 * appends move to a new pack first, so that deleting a model frees its
 * space now, not when the pack fills.  Adds compacted packs to gone.
 * Lock held.
 */
static int compact_all(struct cas_store *st, uint32_t *gone, size_t *ngone)
{
	uint32_t cur = pack_current(st->packs), id = 0, after = 0;
	uint64_t size, live;
	uint8_t *rec;
	int r;

	r = next_sparse(st, cur - 1, cur + 1, &id, &size, &live);
	if (r > 0 && have_room(st, live)) {
		r = pack_set_start(st->packs, cur + 1);
		cur = pack_current(st->packs);
	}
	if (r < 0)
		return r;
	rec = malloc(PACK_REC_LEN + codec_bound(CDC_MAX));
	if (!rec)
		return -ENOMEM;
	/* Every pack from cur on receives copies in this run: never a candidate. */
	while ((r = next_sparse(st, after, cur, &id, &size, &live)) > 0) {
		after = id;
		if (live && !have_room(st, live))
			continue;
		r = compact_locked(st, id, rec);
		if (r == -ENOSPC) {
			r = 0; /* the space left goes to writers; try next time */
			break;
		}
		if (r < 0)
			break;
		gone[(*ngone)++] = id;
	}
	free(rec);
	return r;
}

/* Punches the dead records and removes the compacted packs.  Lock not held. */
static void give_back(struct cas_store *st, const struct dead_acc *a,
		      const uint32_t *gone, size_t ngone)
{
	size_t i;

	if (!a->nholes && !ngone)
		return;
	/* No reader can hold a location in these records or packs after this. */
	pthread_rwlock_wrlock(&st->gc_lock);
	for (i = 0; i < a->nholes; i++)
		pack_punch(st->packs, &a->holes[i]);
	for (i = 0; i < ngone; i++)
		pack_remove(st->packs, gone[i]);
	pthread_rwlock_unlock(&st->gc_lock);
	if (!ngone || pack_set_sync(st->packs) < 0)
		return;
	/* The files are gone for good: their marks (cat_pack_delete()) go too. */
	pthread_mutex_lock(&st->lock);
	for (i = 0; i < ngone; i++)
		cat_pack_dead_clear(st->cat, gone[i]);
	pthread_mutex_unlock(&st->lock);
}

int64_t cas_gc(struct cas_store *st)
{
	struct dead_acc a = { .st = st };
	uint32_t *ids = NULL, *gone = NULL;
	uint64_t *sizes = NULL, *live = NULL, before, after;
	size_t ngone = 0;
	char err[256];
	int n, r;

	pthread_mutex_lock(&st->lock);
	if (st->writers || st->gc_busy) {
		pthread_mutex_unlock(&st->lock);
		return -EBUSY;
	}
	st->gc_busy = 1;
	before = pack_disk_usage(st->packs);
	/*
	 * With no writer open, bytes past a pack's committed size belong to
	 * writers that failed or were dropped (a full disk, a killed copy):
	 * cut them off now rather than at the next start, by recovery's rules.
	 * Before the dead rows go: their records count in each pack's floor,
	 * and a pack row lost or lowered is raised from all its chunk rows
	 * before the dead ones' bytes are taken off its live count.
	 */
	r = store_packs_trim(st, err, sizeof(err));
	if (r == 0)
		r = drop_dead_rows(st, &a);
	if (r < 0)
		goto out;
	/* Read after the trim, which may give rows to packs that had none. */
	n = cat_packs(st->cat, &ids, &sizes, &live);
	if (n < 0) {
		r = n;
		goto out;
	}
	gone = calloc((size_t)n + 1, sizeof(*gone));
	if (!gone) {
		r = -ENOMEM;
		goto out;
	}
	r = compact_all(st, gone, &ngone);
out:
	pthread_mutex_unlock(&st->lock);
	give_back(st, &a, gone, ngone);
	after = pack_disk_usage(st->packs);
	if (r >= 0 && after < before)
		store_reserve_make(st);
	pthread_mutex_lock(&st->lock);
	st->gc_busy = 0;
	pthread_mutex_unlock(&st->lock);
	free(a.v);
	free(a.holes);
	free(ids);
	free(sizes);
	free(live);
	free(gone);
	/* What the disk got back: blocks of packs, removed, cut or punched. */
	return r < 0 ? r : after < before ? (int64_t)(before - after) : 0;
}

/* ---- the collector thread ----------------------------------------------- */

static void *gc_main(void *arg)
{
	struct cas_store *st = arg;
	struct gc_thread *g = &st->gct;
	struct timespec ts;
	int64_t freed;

	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		if (!g->wanted) {
			pthread_cond_wait(&g->cond, &g->lock);
			continue;
		}
		/* Let a burst of deletes (rm -r) finish before collecting. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&g->cond, &g->lock, &ts);
		if (g->stop)
			break;
		g->wanted = 0;
		pthread_mutex_unlock(&g->lock);
		freed = cas_gc(st);
		/* The files as they are now, for --rebuild: after a collection
		 * that ran, not at each retry while a writer holds it off. */
		if (freed != -EBUSY) {
			cas_snapshot(st);
			if (g->done)
				g->done(g->arg, freed);
		}
		pthread_mutex_lock(&g->lock);
		/* A file open for writing (or a requested run) holds it off: again later. */
		if (freed == -EBUSY)
			g->wanted = 1;
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int cas_gc_thread_start(struct cas_store *st,
			void (*done)(void *arg, int64_t freed), void *arg)
{
	struct gc_thread *g = &st->gct;
	struct cat_stats cs;
	int r;

	if (g->running)
		return -EBUSY;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->done = done;
	g->arg = arg;
	g->wanted = g->stop = 0;
	/* Deletes that a crash kept from their collection: collected now, not at the next delete. */
	pthread_mutex_lock(&st->lock);
	if (cat_stats(st->cat, &cs) == 0 && cs.dead_chunks > 0)
		g->wanted = 1;
	pthread_mutex_unlock(&st->lock);
	r = pthread_create(&g->thread, NULL, gc_main, st);
	if (r) {
		pthread_cond_destroy(&g->cond);
		pthread_mutex_destroy(&g->lock);
		return -r;
	}
	g->running = 1;
	return 0;
}

void cas_gc_want(struct cas_store *st)
{
	struct gc_thread *g = &st->gct;

	if (!g->running)
		return;
	pthread_mutex_lock(&g->lock);
	g->wanted = 1;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

void cas_gc_thread_stop(struct cas_store *st)
{
	struct gc_thread *g = &st->gct;

	if (!g->running)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = 1;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	g->running = 0;
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}
