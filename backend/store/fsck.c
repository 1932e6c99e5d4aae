/*
 * fsck.c - verifying a whole store, repairing what can be repaired, and
 * rebuilding a lost catalog from the packs.
 *
 * Checks, in order: sqlite's integrity_check (repair: REINDEX); every chunk
 * (record header, decode, XXH3 against its id); every file's chunk list
 * (each chunk present and sound, lengths adding up to the size, and the
 * bytes in list order hashing to the stored SHA-256: a file that fails is
 * reported by path as damaged); reference counts; every pack against the
 * pack table (headers, rows lower than their chunk records, missing,
 * truncated, unknown, uncommitted tails) and live byte counts.  Crash
 * residue (uncommitted tails, packs without a row, orphan inodes) is
 * reported with a note, not as a problem: the next start cleans it.
 * Repair (explicit) fixes counts, rows and headers, deletes orphans, cuts
 * tails, moves unknown packs to quarantine/, then collects garbage.
 * Damaged files are reported, never silently changed.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "backend/store/store_i.h"

struct idmap_ent {
	struct cas_id id;
	int64_t refs;   /* counted from file chunk lists */
	int64_t stored; /* the catalog's refs */
	int used;
	int state;      /* 0 not in the chunk table, 1 sound, 2 damaged */
	struct pack_loc loc;
};

struct fsck {
	struct cas_store *st;
	void (*cb)(void *arg, const char *line);
	void *arg;
	int repair;
	int problems;
	int residue;    /* crash residue: reported, cleaned by the next start */
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
	e->loc = *loc;
	r = store_load_chunk_locked(f->st, f->ctx, id, loc, f->ctx->out, &len);
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

/*
 * 1 if the file's chunks, decoded in list order, do not hash to its stored
 * SHA-256 (a reordered or substituted list entry); 0 if they do or no
 * SHA-256 is stored.  Its chunks are all known sound.
 */
static int file_sha_differs(struct fsck *f, uint64_t ino, const uint8_t *p,
			    size_t len)
{
	uint8_t sha[32], md[32];
	void *blob = NULL;
	size_t blen = 0, i;
	EVP_MD_CTX *c;
	int has = 0, bad = 0;

	if (cat_get_content(f->st->cat, ino, &blob, &blen, sha, &has) < 0 || !has) {
		free(blob);
		return 0;
	}
	free(blob);
	c = EVP_MD_CTX_new();
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(c);
		return 0;
	}
	for (i = 0; !bad && i + CHUNK_ENTRY_LEN <= len; i += CHUNK_ENTRY_LEN) {
		struct idmap_ent *e;
		struct cas_id id;
		uint32_t clen, got;

		entry_get(p + i, &id, &clen);
		e = idmap_get(f, &id, 0);
		if (!e || store_load_chunk_locked(f->st, f->ctx, &id, &e->loc, f->ctx->out, &got) < 0 ||
		    got != clen)
			bad = 1;
		else
			EVP_DigestUpdate(c, f->ctx->out, got);
	}
	if (!bad)
		bad = !EVP_DigestFinal_ex(c, md, NULL) || memcmp(md, sha, 32) != 0;
	EVP_MD_CTX_free(c);
	return bad;
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
	if (!bad && file_sha_differs(f, ino, p, len))
		bad = 3;
	if (bad) {
		if (cat_path(f->st->cat, ino, path, sizeof(path)) < 0)
			snprintf(path, sizeof(path), "#%" PRIu64, ino);
		if (bad == 1)
			report(f, "damaged file: models/%s (bad or missing chunk at offset %" PRIu64 ")",
			       path, off);
		else if (bad == 2)
			report(f, "damaged file: models/%s (chunks add up to %" PRIu64
				  " bytes, size says %" PRIu64 ")",
			       path, sum, size);
		else
			report(f, "damaged file: models/%s (its chunks, each sound, do not"
				  " add up to its SHA-256: the chunk list is damaged)",
			       path);
		f->problems++;
	}
	return 0;
}

static int find_id(const uint32_t *v, int n, uint32_t id)
{
	int i;

	for (i = 0; i < n && v[i] != id; i++)
		;
	return i;
}

/* A pack's header: reported when damaged, rewritten by --repair. */
static int check_header(struct fsck *f, uint32_t id)
{
	if (pack_header_check(f->st->packs, id) != -EBADMSG)
		return 0;
	report(f, "pack %u has a damaged header (its records are intact)%s", id,
	       f->repair ? ": rewritten" : "");
	if (f->repair)
		return pack_header_repair(f->st->packs, id);
	f->problems++;
	return 0;
}

/* What quarantine/ holds: packs recovery set aside. */
static void note_quarantine(struct fsck *f)
{
	char path[4096];
	struct dirent *de;
	int k = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/quarantine", f->st->dir);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d)))
		k += de->d_name[0] != '.';
	closedir(d);
	if (k)
		report(f, "note: %s holds %d pack%s set aside (no catalog row knew them);"
			  " `llmfs-fsck --rebuild` re-indexes them, or delete them when"
			  " nothing is missing", path, k, k == 1 ? "" : "s");
}

/*
 * Each pack against its row: the committed size is the greater of the row
 * and the end of the last chunk record pointing into the pack (a row below
 * that is a problem, raised by --repair; bytes past it are an uncommitted
 * tail, crash residue).  Packs without any row are residue too (set aside
 * at the next start), unless chunk rows point into them.
 */
static int check_packs(struct fsck *f)
{
	struct cas_store *st = f->st;
	uint32_t *ids = NULL, *disk = NULL, *cp = NULL;
	uint64_t *sizes = NULL, *live = NULL, *count = NULL, *ends = NULL, *clive = NULL;
	char name[64];
	int n, nd, nc, i, j, r = 0;
	size_t k;

	n = cat_packs(st->cat, &ids, &sizes, &live);
	if (n < 0)
		return n;
	nc = cat_pack_ends(st->cat, &cp, &ends, &clive);
	nd = nc < 0 ? nc : pack_list(st->packs, &disk);
	if (nd < 0) {
		r = nd;
		goto out;
	}
	for (j = 0; j < nc; j++) {
		i = find_id(ids, n, cp[j]);
		if (i < n && sizes[i] >= ends[j])
			continue;
		if (i < n)
			report(f, "pack %u committed size %" PRIu64 " is below the end of its"
				  " chunk records (%" PRIu64 ")%s", cp[j], sizes[i], ends[j],
			       f->repair ? ": raised" : "");
		else
			report(f, "pack %u has chunk records but no pack row%s", cp[j],
			       f->repair ? ": row made" : "");
		if (!f->repair) {
			f->problems++;
			continue;
		}
		r = cat_pack_update(st->cat, cp[j], (int64_t)ends[j],
				    i < n ? 0 : (int64_t)clive[j]);
		if (r < 0)
			goto out;
	}
	for (i = 0; i < n; i++) {
		int64_t s = pack_size(st->packs, ids[i]);
		uint64_t keep = sizes[i];

		j = find_id(cp, nc, ids[i]);
		if (j < nc && ends[j] > keep)
			keep = ends[j];
		if (s < 0) {
			report(f, "pack %u is missing", ids[i]);
			f->problems++;
		} else if ((uint64_t)s > keep) {
			report(f, "pack %u has %" PRIu64 " uncommitted bytes (crash residue)%s",
			       ids[i], (uint64_t)s - keep,
			       f->repair ? ": cut off" : ": the next start cuts them");
			if (f->repair)
				r = pack_truncate(st->packs, ids[i], keep);
			else
				f->residue++;
		} else if ((uint64_t)s < keep) {
			report(f, "pack %u is truncated (%" PRId64 " of %" PRIu64 " bytes)",
			       ids[i], s, keep);
			f->problems++;
		}
		if (r < 0)
			goto out;
	}
	/* Headers of the packs the catalog knows (an unknown file is not rewritten). */
	for (i = 0; i < n; i++) {
		r = check_header(f, ids[i]);
		if (r < 0)
			goto out;
	}
	for (j = 0; j < nd; j++) {
		if (find_id(ids, n, disk[j]) < n || find_id(cp, nc, disk[j]) < nc ||
		    disk[j] == pack_current(st->packs))
			continue;
		if (f->repair) {
			name[0] = '\0';
			r = store_pack_set_aside(st, disk[j], name, sizeof(name));
			if (r == 0)
				report(f, "pack %u is not in the catalog: removed (it holds"
					  " nothing committed)", disk[j]);
			else
				report(f, "pack %u is not in the catalog: moved to quarantine/%s",
				       disk[j], r > 0 ? name : strerror(-r));
			if (r < 0)
				goto out;
			r = 0;
		} else {
			report(f, "pack %u is not in the catalog (crash residue, or data whose"
				  " rows are lost): the next start removes it if it provably"
				  " holds nothing committed, else sets it aside in quarantine/",
			       disk[j]);
			f->residue++;
		}
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
			if (ids[i] == e->loc.pack)
				count[i] += PACK_REC_LEN + e->loc.clen;
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
	store_pack_rows_free(ids, sizes, live, cp, ends, clive);
	free(disk);
	free(count);
	return r;
}

/*
 * sqlite's integrity check; with repair, a failure is answered with
 * REINDEX (damaged indexes are rebuilt from their tables) and a second
 * check.  0 when sound (or repaired), 1 when not.
 */
static int check_catalog(struct fsck *f)
{
	char err[512];

	if (cat_integrity(f->st->cat, err, sizeof(err)) == 0)
		return 0;
	if (!f->repair) {
		report(f, "catalog damaged: %s (--repair rebuilds damaged indexes)", err);
		f->problems++;
		return 1;
	}
	report(f, "catalog damaged: %s: rebuilding its indexes (REINDEX)", err);
	if (cat_reindex(f->st->cat) == 0 && cat_integrity(f->st->cat, err, sizeof(err)) == 0) {
		report(f, "catalog indexes rebuilt; the catalog is sound");
		return 0;
	}
	report(f, "catalog still damaged: %s (`llmfs-fsck --rebuild` rebuilds it from"
		  " the packs and the last file snapshot)", err);
	f->problems++;
	return 1;
}

int cas_fsck(struct cas_store *st, int repair,
	     void (*cb)(void *arg, const char *line), void *arg)
{
	struct fsck f = { .st = st, .cb = cb, .arg = arg, .repair = repair };
	uint64_t *orphans = NULL;
	int r, no, i;
	size_t k;

	f.ctx = worker_ctx_new(st->level);
	if (!f.ctx)
		return -ENOMEM;
	pthread_rwlock_rdlock(&st->gc_lock); /* then st->lock: store_i.h */
	pthread_mutex_lock(&st->lock);
	r = 0;
	if (check_catalog(&f))
		goto out;
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
		report(&f, "orphan inode %" PRIu64 " (unlinked while open: crash residue)%s",
		       orphans[i], repair ? ": deleted" : ": the next start deletes it");
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
			f.residue++;
		}
	}
	r = cat_commit(st->cat);
	pthread_mutex_unlock(&st->lock);
	pthread_rwlock_unlock(&st->gc_lock);
	if (r == 0 && repair) {
		int64_t freed = cas_gc(st);

		if (freed > 0)
			report(&f, "collected %" PRId64 " bytes of garbage", freed);
	}
	if (r == 0 && f.residue)
		report(&f, "note: %d item%s of crash residue above (normal after a crash"
			   " or kill -9, not damage): the next mount cleans %s, or --repair now",
			f.residue, f.residue == 1 ? "" : "s", f.residue == 1 ? "it" : "them");
	if (r == 0)
		note_quarantine(&f);
	free(orphans);
	free(f.map);
	worker_ctx_free(f.ctx);
	return r < 0 ? r : f.problems;
rollback:
	cat_rollback(st->cat);
out:
	pthread_mutex_unlock(&st->lock);
	pthread_rwlock_unlock(&st->gc_lock);
	free(orphans);
	free(f.map);
	worker_ctx_free(f.ctx);
	return r < 0 ? r : f.problems;
}

/* ---- rebuilding a lost catalog ------------------------------------------ */

struct rebuild {
	struct fsck f;
	uint64_t chunks, dups, bad, collected, live;
	int damaged; /* restored files with a chunk the packs lack */
};

static int index_record(void *arg, const struct cas_id *id, const struct pack_loc *loc)
{
	struct rebuild *rb = arg;
	uint32_t len;
	int r;

	r = store_load_chunk_locked(rb->f.st, rb->f.ctx, id, loc, rb->f.ctx->out, &len);
	if (r == -EIO && pack_read(rb->f.st->packs, loc, id, rb->f.ctx->rec) == 0 &&
	    pack_rec_punched(loc, rb->f.ctx->rec)) {
		/*
		 * Collection punched it (its chunk was garbage): not damage,
		 * and a record all the same, so the walk steps over it by its
		 * length and the pack's committed size covers it.  A damaged
		 * record that reads as zeros there is skipped the same way;
		 * a restored file that needs it is named by ref_file().
		 */
		rb->collected++;
		return 0;
	}
	if (r == -EIO) {
		rb->bad++;
		return 1; /* not the bytes its header names */
	}
	if (r < 0)
		return r;
	r = cat_chunk_insert(rb->f.st->cat, id, loc);
	if (r == -EEXIST) {
		rb->dups++; /* a second copy: garbage, as after a compaction */
		return 0;
	}
	if (r < 0)
		return r;
	rb->chunks++;
	rb->live += PACK_REC_LEN + loc->clen;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Moves quarantined packs (their plain names) back where no pack has the id. */
static void unquarantine(struct rebuild *rb)
{
	char q[4096], from[4096 + 300], to[4096 + 300];
	struct dirent *de;
	unsigned int id;
	char tail;
	DIR *d;

	snprintf(q, sizeof(q), "%s/quarantine", rb->f.st->dir);
	d = opendir(q);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strlen(de->d_name) != 13 ||
		    sscanf(de->d_name, "%8x.pac%c", &id, &tail) != 2 || tail != 'k')
			continue;
		snprintf(from, sizeof(from), "%s/%s", q, de->d_name);
		snprintf(to, sizeof(to), "%s/packs/%s", rb->f.st->dir, de->d_name);
		if (access(to, F_OK) == 0)
			continue;
		if (rename(from, to) == 0)
			report(&rb->f, "pack %u moved back from quarantine/", id);
	}
	closedir(d);
}

static int index_packs(struct rebuild *rb)
{
	struct cas_store *st = rb->f.st;
	uint32_t *disk = NULL;
	int nd, j, r;

	nd = pack_list(st->packs, &disk);
	if (nd < 0)
		return nd;
	qsort(disk, (size_t)nd, sizeof(*disk), cmp_u32);
	r = cat_begin(st->cat);
	for (j = 0; r == 0 && j < nd; j++) {
		uint64_t before = rb->live, end = 0;

		r = pack_scan(st->packs, disk[j], index_record, rb, &end);
		if (r == 0)
			r = cat_pack_update(st->cat, disk[j], (int64_t)end,
					    (int64_t)(rb->live - before));
		if (r == 0 && pack_header_check(st->packs, disk[j]) == -EBADMSG)
			r = pack_header_repair(st->packs, disk[j]);
	}
	if (r == 0)
		r = cat_commit(st->cat);
	else
		cat_rollback(st->cat);
	free(disk);
	if (r == 0)
		report(&rb->f, "indexed %d pack%s: %" PRIu64 " chunks (%" PRIu64
			       " duplicate records, %" PRIu64 " records collected earlier)",
		       nd, nd == 1 ? "" : "s", rb->chunks, rb->dups, rb->collected);
	if (r == 0 && rb->bad)
		report(&rb->f, "%" PRIu64 " damaged record%s skipped (their bytes do not"
			       " match their ids)", rb->bad, rb->bad == 1 ? "" : "s");
	return r;
}

/* Counts references from a restored file; names files that miss chunks. */
static int ref_file(void *arg, uint64_t ino, const void *blob, size_t len,
		    uint64_t size)
{
	struct rebuild *rb = arg;
	const uint8_t *p = blob;
	char path[4096];
	size_t i;
	int missing = 0, r;

	(void)size;
	for (i = 0; i + CHUNK_ENTRY_LEN <= len; i += CHUNK_ENTRY_LEN) {
		struct cas_id id;
		uint32_t clen;

		entry_get(p + i, &id, &clen);
		r = cat_chunk_addref(rb->f.st->cat, &id, 1);
		if (r == -ENOENT)
			missing++;
		else if (r < 0)
			return r;
	}
	if (missing) {
		if (cat_path(rb->f.st->cat, ino, path, sizeof(path)) < 0)
			snprintf(path, sizeof(path), "#%" PRIu64, ino);
		report(&rb->f, "damaged file: models/%s (%d of its chunks are in no pack)",
		       path, missing);
		rb->damaged++;
	}
	return 0;
}

static int restore_files(struct rebuild *rb)
{
	static const char *const names[] = { "files.snap", "files.snap.old" };
	struct cas_store *st = rb->f.st;
	struct cat_stats cs;
	char snap[4096];
	int64_t taken = 0;
	char when[64];
	struct tm tm;
	time_t t;
	size_t i;
	int r = -ENOENT;

	for (i = 0; r < 0 && i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(snap, sizeof(snap), "%s/%s", st->dir, names[i]);
		if (access(snap, R_OK) == 0)
			r = cat_restore_snapshot(st->cat, snap, &taken);
		if (r < 0 && r != -ENOENT)
			report(&rb->f, "%s cannot be read: %s", snap, strerror(-r));
	}
	if (r < 0) {
		report(&rb->f, "no file snapshot could be read: the chunks are indexed,"
			       " but no file could be restored");
		return 0;
	}
	t = (time_t)(taken / 1000000000);
	if (!taken || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", localtime_r(&t, &tm)))
		snprintf(when, sizeof(when), "at an unknown time");
	report(&rb->f, "files restored from %s, taken %s", snap, when);
	r = cat_begin(st->cat);
	if (r == 0)
		r = cat_files(st->cat, ref_file, rb);
	if (r == 0)
		r = cat_commit(st->cat);
	else
		cat_rollback(st->cat);
	if (r == 0 && cat_stats(st->cat, &cs) == 0) {
		report(&rb->f, "%" PRIu64 " files, %" PRIu64 " folders restored", cs.files,
		       cs.dirs ? cs.dirs - 1 : 0);
		if (cs.dead_chunks)
			report(&rb->f, "note: %" PRIu64 " chunks are in no restored file (written"
				       " after the snapshot, or garbage): the next collection"
				       " drops them", cs.dead_chunks);
	}
	return r;
}

int cas_rebuild(struct cas_store *st, void (*cb)(void *arg, const char *line),
		void *arg)
{
	struct rebuild rb = { .f = { .st = st, .cb = cb, .arg = arg, .repair = 1 } };
	int r;

	rb.f.ctx = worker_ctx_new(st->level);
	if (!rb.f.ctx)
		return -ENOMEM;
	pthread_rwlock_rdlock(&st->gc_lock); /* then st->lock: store_i.h */
	pthread_mutex_lock(&st->lock);
	r = cat_is_empty(st->cat);
	if (r == 0)
		r = -ENOTEMPTY; /* only a catalog cas_store_open() just began */
	if (r > 0) {
		unquarantine(&rb);
		r = index_packs(&rb);
	}
	if (r == 0)
		r = restore_files(&rb);
	pthread_mutex_unlock(&st->lock);
	pthread_rwlock_unlock(&st->gc_lock);
	worker_ctx_free(rb.f.ctx);
	return r < 0 ? r : rb.damaged;
}
