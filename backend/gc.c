/*
 * gc.c - collecting unreferenced chunks and compacting packs.
 *
 * Deleting a file only lowers reference counts; a chunk whose count reaches
 * zero stays in the catalog (a writer may still pick it up for dedup) until
 * cas_gc() runs with no writer open.  Then dead rows go, packs left with
 * nothing live are deleted, and packs under half live are rewritten: their
 * live records are appended, byte for byte, to the current pack, synced,
 * and moved in the catalog in one transaction before the old pack is
 * unlinked.  A crash at any point leaves either the old or the new
 * location committed; the other copy is cut off or removed at next open.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store_i.h"

struct dead_acc {
	struct cas_store *st;
	struct pack_delta *v; /* live bytes each pack loses */
	size_t n;
	int64_t freed;
};

static int drop_dead(void *arg, const struct cas_id *id, const struct pack_loc *loc)
{
	struct dead_acc *a = arg;
	int r = cat_chunk_delete(a->st->cat, id);

	if (r < 0)
		return r;
	a->freed += PACK_REC_LEN + loc->clen;
	return store_delta_add(&a->v, &a->n, loc->pack,
			       -(PACK_REC_LEN + (int64_t)loc->clen));
}

struct mover {
	struct cas_store *st;
	uint8_t *rec;
	int64_t moved;
	uint32_t pack_to;
};

static int move_chunk(void *arg, const struct cas_id *id, const struct pack_loc *loc)
{
	struct mover *m = arg;
	struct pack_loc nl;
	int r;

	r = pack_read(m->st->packs, loc, id, m->rec);
	if (r < 0)
		return r;
	r = pack_append(m->st->packs, id, loc->scheme, loc->ulen,
			m->rec + PACK_REC_LEN, loc->clen, &nl);
	if (r < 0)
		return r;
	r = cat_chunk_relocate(m->st->cat, id, &nl);
	if (r < 0)
		return r;
	r = cat_pack_update(m->st->cat, nl.pack, 0, PACK_REC_LEN + (int64_t)loc->clen);
	if (r < 0)
		return r;
	m->moved += PACK_REC_LEN + loc->clen;
	m->pack_to = nl.pack;
	return 0;
}

/* Rewrites the live chunks of pack id into the current pack.  Lock held. */
static int compact_locked(struct cas_store *st, uint32_t id, uint8_t *rec)
{
	struct mover m = { .st = st, .rec = rec };
	int64_t ps;
	int r;

	r = cat_begin(st->cat);
	if (r < 0)
		return r;
	r = cat_chunks_in_pack(st->cat, id, move_chunk, &m);
	if (r == 0)
		r = pack_set_sync(st->packs);
	if (r == 0) {
		uint32_t cur = pack_current(st->packs);

		ps = pack_size(st->packs, cur);
		r = ps < 0 ? (int)ps : cat_pack_update(st->cat, cur, ps, 0);
	}
	if (r == 0)
		r = cat_pack_delete(st->cat, id);
	if (r == 0)
		r = cat_commit(st->cat);
	else
		cat_rollback(st->cat);
	return r;
}

/*
 * With no writer open, bytes past a pack's committed length belong to
 * writers that failed or were dropped (a full disk, a killed copy): cut
 * them off now rather than at the next start, and remove packs that such
 * writers started.  Lock held.
 */
static int trim_uncommitted(struct cas_store *st, const uint32_t *ids,
			    const uint64_t *sizes, size_t n, int64_t *freed)
{
	uint32_t cur = pack_current(st->packs), *disk = NULL;
	uint64_t committed = PACK_HEADER_LEN;
	int64_t len;
	size_t i;
	int nd, j, r = 0;

	for (i = 0; i < n; i++)
		if (ids[i] == cur)
			committed = sizes[i];
	len = pack_size(st->packs, cur);
	if (len > (int64_t)committed) {
		r = pack_truncate(st->packs, cur, committed);
		if (r < 0)
			return r;
		*freed += len - (int64_t)committed;
	}
	nd = pack_list(st->packs, &disk);
	if (nd < 0)
		return nd;
	for (j = 0; j < nd; j++) {
		for (i = 0; i < n && ids[i] != disk[j]; i++)
			;
		if (i == n && disk[j] != cur) {
			len = pack_size(st->packs, disk[j]);
			r = pack_remove(st->packs, disk[j]);
			if (r < 0)
				break;
			*freed += len > 0 ? len : 0;
		}
	}
	free(disk);
	return r;
}

int64_t cas_gc(struct cas_store *st)
{
	struct dead_acc a = { .st = st };
	uint32_t *ids = NULL, *gone = NULL, cur;
	uint64_t *sizes = NULL, *live = NULL;
	uint8_t *rec = NULL;
	size_t ngone = 0, i;
	int n = 0, r;
	int64_t keep;

	pthread_mutex_lock(&st->lock);
	if (st->writers) {
		pthread_mutex_unlock(&st->lock);
		return 0;
	}
	r = cat_begin(st->cat);
	if (r < 0)
		goto out;
	keep = store_now_ns() - (int64_t)CAS_FETCHED_KEEP_S * 1000000000;
	r = cat_fetched_prune(st->cat, keep);
	if (r == 0)
		r = cat_chunks_dead(st->cat, keep, drop_dead, &a);
	for (i = 0; r == 0 && i < a.n; i++)
		r = cat_pack_update(st->cat, a.v[i].pack, 0, a.v[i].live);
	if (r == 0)
		r = cat_commit(st->cat);
	else
		cat_rollback(st->cat);
	if (r < 0)
		goto out;

	n = cat_packs(st->cat, &ids, &sizes, &live);
	if (n < 0) {
		r = n;
		goto out;
	}
	r = trim_uncommitted(st, ids, sizes, (size_t)n, &a.freed);
	if (r < 0)
		goto out;
	gone = calloc((size_t)n + 1, sizeof(*gone));
	rec = malloc(PACK_REC_LEN + codec_bound(CDC_MAX));
	if (!gone || !rec) {
		r = -ENOMEM;
		goto out;
	}
	cur = pack_current(st->packs);
	for (i = 0; i < (size_t)n; i++) {
		/*
		 * The pack being appended to is collected too once half of it is
		 * garbage: appends move to a new pack first, so that deleting a
		 * model frees its space now, not when the pack fills.
		 */
		if (ids[i] == cur && live[i] * 2 < sizes[i] &&
		    sizes[i] - live[i] > PACK_HEADER_LEN) {
			r = pack_set_start(st->packs, cur + 1);
			if (r < 0)
				goto out;
			cur = cur + 1;
		}
		if (ids[i] == cur)
			continue;
		if (live[i] == 0) {
			r = cat_begin(st->cat);
			if (r == 0)
				r = cat_pack_delete(st->cat, ids[i]);
			if (r == 0)
				r = cat_commit(st->cat);
			else
				cat_rollback(st->cat);
		} else if (live[i] * 2 < sizes[i]) {
			r = compact_locked(st, ids[i], rec);
			cur = pack_current(st->packs);
		} else {
			continue;
		}
		if (r < 0)
			goto out;
		gone[ngone++] = ids[i];
		a.freed += (int64_t)(sizes[i] - live[i]);
	}
out:
	pthread_mutex_unlock(&st->lock);
	if (ngone) {
		/* No reader can hold a location in these packs after this. */
		pthread_rwlock_wrlock(&st->gc_lock);
		for (i = 0; i < ngone; i++)
			pack_remove(st->packs, gone[i]);
		pthread_rwlock_unlock(&st->gc_lock);
		pack_set_sync(st->packs);
	}
	if (r >= 0 && a.freed > 0)
		store_reserve_make(st);
	free(a.v);
	free(ids);
	free(sizes);
	free(live);
	free(gone);
	free(rec);
	return r < 0 ? r : a.freed;
}
