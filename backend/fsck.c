/*
 * fsck.c - verifying a whole store, and repairing what can be repaired.
 *
 * Checks, in order: sqlite's integrity_check; every pack file against the
 * pack table (missing, unknown, or longer than committed); every chunk
 * (record header, decode, XXH3 against its id); every file's chunk list
 * (each chunk present and sound: a file that is not is reported by path
 * as damaged); reference counts and live byte counts against a recount.
 * Repair (explicit) fixes counts, deletes orphan inodes, unknown packs and
 * uncommitted tails, then collects garbage.  Damaged files are reported,
 * never silently changed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store_i.h"

struct idmap_ent {
	struct cas_id id;
	int64_t refs;   /* counted from file chunk lists */
	int64_t stored; /* the catalog's refs */
	int used;
	int state;      /* 0 not in the chunk table, 1 sound, 2 damaged */
	uint32_t pack;
	uint32_t clen;
};

struct fsck {
	struct cas_store *st;
	void (*cb)(void *arg, const char *line);
	void *arg;
	int repair;
	int problems;
	struct idmap_ent *map;
	size_t cap, n;
	struct worker_ctx *ctx;
};

static void report(struct fsck *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report(struct fsck *f, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f->cb(f->arg, line);
}

static struct idmap_ent *idmap_get(struct fsck *f, const struct cas_id *id, int add)
{
	size_t i;
	uint64_t h;

	if (add && 2 * (f->n + 1) > f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 4096, k;
		struct idmap_ent *m = calloc(cap, sizeof(*m));

		if (!m)
			return NULL;
		for (k = 0; k < f->cap; k++) {
			if (!f->map[k].used)
				continue;
			memcpy(&h, f->map[k].id.b, 8);
			for (i = h & (cap - 1); m[i].used; i = (i + 1) & (cap - 1))
				;
			m[i] = f->map[k];
		}
		free(f->map);
		f->map = m;
		f->cap = cap;
	}
	if (!f->cap)
		return NULL;
	memcpy(&h, id->b, 8);
	for (i = h & (f->cap - 1);; i = (i + 1) & (f->cap - 1)) {
		struct idmap_ent *e = &f->map[i];
		if (e->used && cas_id_eq(&e->id, id))
			return e;
		if (!e->used) {
			if (!add)
				return NULL;
			e->used = 1;
			e->id = *id;
			f->n++;
			return e;
		}
	}
}

static int check_chunk(void *arg, const struct cas_id *id,
		       const struct pack_loc *loc, int64_t refs)
{
	struct fsck *f = arg;
	struct idmap_ent *e = idmap_get(f, id, 1);
	uint32_t len;
	char hex[CAS_ID_HEX];
	int r;

	if (!e)
		return -ENOMEM;
	e->stored = refs;
	e->pack = loc->pack;
	e->clen = loc->clen;
	r = store_load_chunk(f->st, f->ctx, id, loc, f->ctx->out, &len);
	e->state = r == 0 ? 1 : 2;
	if (r < 0) {
		cas_id_hex(id, hex);
		report(f, "damaged chunk %s in pack %u at offset %" PRIu64 ": %s%s",
		       hex, loc->pack, loc->off,
		       r == -EIO ? "contents do not match the id" : strerror(-r),
		       f->repair ? "; marked: writing its bytes again replaces it" : "");
		/* Not repaired: its files stay damaged until their bytes are rewritten. */
		f->problems++;
		if (f->repair && cat_damaged_mark(f->st->cat, id) < 0)
			return -EIO;
	}
	return 0;
}

static int count_file(void *arg, uint64_t ino, const void *blob, size_t len,
		      uint64_t size)
{
	struct fsck *f = arg;
	const uint8_t *p = blob;
	uint64_t off = 0, sum = 0;
	char path[4096];
	size_t i;
	int bad = 0;

	for (i = 0; i + CHUNK_ENTRY_LEN <= len; i += CHUNK_ENTRY_LEN) {
		struct cas_id id;
		struct idmap_ent *e;
		uint32_t clen;

		entry_get(p + i, &id, &clen);
		e = idmap_get(f, &id, 1);
		if (!e)
			return -ENOMEM;
		e->refs++;
		if (e->state == 0 || e->state == 2) {
			if (!bad)
				off = sum;
			bad = 1;
		}
		sum += clen;
	}
	if (sum != size && !bad)
		bad = 2;
	if (bad) {
		if (cat_path(f->st->cat, ino, path, sizeof(path)) < 0)
			snprintf(path, sizeof(path), "#%" PRIu64, ino);
		if (bad == 1)
			report(f, "damaged file: models/%s (bad or missing chunk at offset %" PRIu64 ")",
			       path, off);
		else
			report(f, "damaged file: models/%s (chunks add up to %" PRIu64
				  " bytes, size says %" PRIu64 ")",
			       path, sum, size);
		f->problems++;
	}
	return 0;
}

static int check_packs(struct fsck *f)
{
	struct cas_store *st = f->st;
	uint32_t *ids = NULL, *disk = NULL;
	uint64_t *sizes = NULL, *live = NULL, *count = NULL;
	int n, nd, i, j, r = 0;
	size_t k;

	n = cat_packs(st->cat, &ids, &sizes, &live);
	if (n < 0)
		return n;
	nd = pack_list(st->packs, &disk);
	if (nd < 0) {
		r = nd;
		goto out;
	}
	for (i = 0; i < n; i++) {
		int64_t s = pack_size(st->packs, ids[i]);

		if (s < 0) {
			report(f, "pack %u is missing", ids[i]);
			f->problems++;
		} else if ((uint64_t)s > sizes[i]) {
			report(f, "pack %u has %" PRIu64 " uncommitted bytes%s", ids[i],
			       (uint64_t)s - sizes[i], f->repair ? ": cut off" : "");
			if (f->repair)
				r = pack_truncate(st->packs, ids[i], sizes[i]);
			else
				f->problems++;
		} else if ((uint64_t)s < sizes[i]) {
			report(f, "pack %u is truncated (%" PRId64 " of %" PRIu64 " bytes)",
			       ids[i], s, sizes[i]);
			f->problems++;
		}
	}
	for (j = 0; j < nd; j++) {
		for (i = 0; i < n && ids[i] != disk[j]; i++)
			;
		if (i < n || disk[j] == pack_current(st->packs))
			continue;
		report(f, "pack %u is not in the catalog (orphan)%s", disk[j],
		       f->repair ? ": removed" : "");
		if (f->repair)
			pack_remove(st->packs, disk[j]);
		else
			f->problems++;
	}
	/* Live bytes per pack, recounted from the chunk rows. */
	count = calloc((size_t)n + 1, sizeof(*count));
	if (!count) {
		r = -ENOMEM;
		goto out;
	}
	for (k = 0; k < f->cap; k++) {
		struct idmap_ent *e = &f->map[k];

		if (!e->used || !e->state)
			continue;
		for (i = 0; i < n; i++)
			if (ids[i] == e->pack)
				count[i] += PACK_REC_LEN + e->clen;
	}
	for (i = 0; i < n; i++) {
		if (count[i] == live[i])
			continue;
		report(f, "pack %u live bytes %" PRIu64 ", recounted %" PRIu64 "%s",
		       ids[i], live[i], count[i], f->repair ? ": fixed" : "");
		if (f->repair)
			r = cat_pack_update(st->cat, ids[i], 0,
					    (int64_t)count[i] - (int64_t)live[i]);
		else
			f->problems++;
		if (r < 0)
			break;
	}
out:
	free(ids);
	free(sizes);
	free(live);
	free(disk);
	free(count);
	return r;
}

int cas_fsck(struct cas_store *st, int repair,
	     void (*cb)(void *arg, const char *line), void *arg)
{
	struct fsck f = { .st = st, .cb = cb, .arg = arg, .repair = repair };
	char err[512];
	uint64_t *orphans = NULL;
	int r, no, i;
	size_t k;

	f.ctx = worker_ctx_new(st->level);
	if (!f.ctx)
		return -ENOMEM;
	pthread_mutex_lock(&st->lock);
	r = cat_integrity(st->cat, err, sizeof(err));
	if (r < 0) {
		report(&f, "catalog damaged: %s", err);
		f.problems++;
		goto out;
	}
	r = cat_begin(st->cat);
	if (r < 0)
		goto out;
	r = cat_chunks_all(st->cat, check_chunk, &f);
	if (r < 0)
		goto rollback;
	r = cat_files(st->cat, count_file, &f);
	if (r < 0)
		goto rollback;
	for (k = 0; k < f.cap; k++) {
		struct idmap_ent *e = &f.map[k];
		char hex[CAS_ID_HEX];

		if (!e->used)
			continue;
		if (e->state == 0) {
			cas_id_hex(&e->id, hex);
			report(&f, "chunk %s is referenced %" PRId64 " times but missing",
			       hex, e->refs);
			f.problems++;
			continue;
		}
		if (e->refs == e->stored)
			continue;
		cas_id_hex(&e->id, hex);
		report(&f, "chunk %s has refs %" PRId64 ", recounted %" PRId64 "%s", hex,
		       e->stored, e->refs, repair ? ": fixed" : "");
		if (repair)
			r = cat_chunk_addref(st->cat, &e->id, (int)(e->refs - e->stored));
		else
			f.problems++;
		if (r < 0)
			goto rollback;
	}
	r = check_packs(&f);
	if (r < 0)
		goto rollback;
	no = cat_orphans(st->cat, &orphans);
	for (i = 0; i < no; i++) {
		report(&f, "orphan inode %" PRIu64 " (unlinked while open)%s", orphans[i],
		       repair ? ": deleted" : "");
		if (repair) {
			void *blob = NULL;
			size_t len = 0;
			uint8_t sha[32];
			int has;

			r = cat_get_content(st->cat, orphans[i], &blob, &len, sha, &has);
			if (r == 0)
				r = store_deref_blob(st, blob, len);
			free(blob);
			if (r == 0)
				r = cat_delete(st->cat, orphans[i]);
			if (r < 0)
				goto rollback;
		} else {
			f.problems++;
		}
	}
	r = cat_commit(st->cat);
	pthread_mutex_unlock(&st->lock);
	if (r == 0 && repair) {
		int64_t freed = cas_gc(st);

		if (freed > 0)
			report(&f, "collected %" PRId64 " bytes of garbage", freed);
	}
	free(orphans);
	free(f.map);
	worker_ctx_free(f.ctx);
	return r < 0 ? r : f.problems;
rollback:
	cat_rollback(st->cat);
out:
	pthread_mutex_unlock(&st->lock);
	free(orphans);
	free(f.map);
	worker_ctx_free(f.ctx);
	return r < 0 ? r : f.problems;
}
