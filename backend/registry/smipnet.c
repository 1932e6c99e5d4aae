/*
 * smipnet.c - SMIP artifacts on registries: the config blob's pack index,
 * fetching chunk records by range, and pushes of new chunks only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include "backend/store/chunker.h"
#include "backend/store/codec.h"
#include "backend/store/pack.h"
#include "backend/registry/smipnet.h"
#include "backend/store/store_i.h"
#include "common/clock.h"
#include "common/hex.h"

/* Ranges coalesce up to this much; a fetch window holds at most WINDOW. */
#define RANGE_MAX (16u << 20)
#define RANGE_GAP (64u << 10)
#define WINDOW (64u << 20)
#define SPARE_MAX 12          /* range buffers kept for the next window */
#define CONFIG_MAX (512u << 20)
#define CHUNKS_MAX (64u << 20)
#define REC_MAX (PACK_REC_LEN + 600u * 1024)

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* ---- an id -> index hash set ------------------------------------------ */

struct idmap {
	uint32_t *slot; /* index + 1, 0 = empty */
	size_t cap;
	const struct smip_rchunk *v;
};

static size_t id_hash(const struct cas_id *id, size_t cap)
{
	uint64_t h;

	memcpy(&h, id->b, sizeof(h));
	return (size_t)(h & (cap - 1));
}

static int idmap_init(struct idmap *m, size_t n)
{
	m->cap = 64;
	while (m->cap < 2 * n + 2)
		m->cap <<= 1;
	m->slot = calloc(m->cap, sizeof(*m->slot));
	return m->slot ? 0 : -ENOMEM;
}

/* Index of id in v, or -1; with add set, inserts index add - 1 if absent. */
static long idmap_get(struct idmap *m, const struct smip_rchunk *v,
		      const struct cas_id *id, uint32_t add)
{
	size_t i = id_hash(id, m->cap);

	for (; m->slot[i]; i = (i + 1) & (m->cap - 1))
		if (cas_id_eq(&v[m->slot[i] - 1].id, id))
			return (long)m->slot[i] - 1;
	if (add)
		m->slot[i] = add;
	return -1;
}

/* ---- parsing ------------------------------------------------------------ */

void smip_model_free(struct smip_model *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->nfiles; i++) {
		free(m->files[i].path);
		free(m->files[i].target);
		free(m->files[i].chunks);
		free(m->files[i].offs);
	}
	free(m->files);
	free(m->chunks);
	free(m->packs);
	free(m->name);
	free(m);
}

const struct smip_rfile *smip_model_file(const struct smip_model *m,
					 const char *path)
{
	size_t i;

	for (i = 0; i < m->nfiles; i++)
		if (strcmp(m->files[i].path, path) == 0)
			return &m->files[i];
	return NULL;
}

static int parse_index(struct smip_model *m, json_t *packs, json_t *index,
		       struct idmap *map, char *err, size_t errlen)
{
	size_t i;

	if (!json_is_array(packs) || !json_is_array(index))
		return fail(err, errlen, -EINVAL, "no packs or index");
	if (json_array_size(index) > CHUNKS_MAX ||
	    json_array_size(packs) > LAYOUT_MAX_FILES)
		return fail(err, errlen, -EFBIG, "index too large");
	m->npacks = json_array_size(packs);
	m->packs = calloc(m->npacks + 1, sizeof(*m->packs));
	m->chunks = calloc(json_array_size(index) + 1, sizeof(*m->chunks));
	if (!m->packs || !m->chunks || idmap_init(map, json_array_size(index)) < 0)
		return -ENOMEM;
	for (i = 0; i < m->npacks; i++) {
		const char *d = NULL;
		json_int_t size = -1;

		if (json_unpack(json_array_get(packs, i), "{s:s, s:I}", "digest", &d,
				"size", &size) < 0 || !digest_valid(d) ||
		    size < PACK_HEADER_LEN || size > (json_int_t)1 << 50)
			return fail(err, errlen, -EINVAL, "pack %zu: bad descriptor", i);
		snprintf(m->packs[i].digest, sizeof(m->packs[i].digest), "%s", d);
		snprintf(m->packs[i].media_type, sizeof(m->packs[i].media_type),
			 "%s", SMIP_MT_PACK);
		m->packs[i].size = (uint64_t)size;
	}
	for (i = 0; i < json_array_size(index); i++) {
		struct smip_rchunk *c = &m->chunks[m->nchunks];
		const char *hex = NULL;
		json_int_t pack = -1, off = -1, rlen = -1;

		if (json_unpack(json_array_get(index, i), "[s, I, I, I]", &hex, &pack,
				&off, &rlen) < 0 || cas_id_parse(hex, &c->id) < 0 ||
		    pack < 0 || (size_t)pack >= m->npacks || off < PACK_HEADER_LEN ||
		    rlen <= PACK_REC_LEN || rlen > (json_int_t)REC_MAX ||
		    (uint64_t)(off + rlen) > m->packs[pack].size)
			return fail(err, errlen, -EINVAL, "index entry %zu is malformed", i);
		c->pack = (uint32_t)pack;
		c->off = (uint64_t)off;
		c->rlen = (uint32_t)rlen;
		if (idmap_get(map, m->chunks, &c->id, (uint32_t)m->nchunks + 1) >= 0)
			return fail(err, errlen, -EINVAL, "chunk %s indexed twice", hex);
		m->nchunks++;
	}
	return 0;
}

static int parse_file(struct smip_model *m, json_t *e, struct idmap *map,
		      struct smip_rfile *f, char *err, size_t errlen)
{
	const char *path = NULL, *type = NULL, *mode = "0644", *sha = NULL;
	const char *target = NULL;
	json_t *chunks = NULL;
	json_int_t size = 0;
	uint64_t sum = 0;
	unsigned long mbits;
	size_t i;

	if (json_unpack(e, "{s:s, s:s, s?s, s?I, s?s, s?o, s?s}", "path", &path,
			"type", &type, "mode", &mode, "size", &size, "sha256", &sha,
			"chunks", &chunks, "target", &target) < 0)
		return fail(err, errlen, -EINVAL, "a file entry is malformed");
	if (!layout_path_valid(path))
		return fail(err, errlen, -EINVAL, "unsafe path in manifest");
	f->path = strdup(path);
	if (!f->path)
		return -ENOMEM;
	mbits = strtoul(mode, NULL, 8) & 0777;
	if (strcmp(type, "dir") == 0) {
		f->mode = S_IFDIR | (uint32_t)mbits;
		return 0;
	}
	if (strcmp(type, "symlink") == 0) {
		if (!target || strlen(target) >= 4096)
			return fail(err, errlen, -EINVAL, "%s: bad symlink", path);
		f->mode = S_IFLNK | 0777;
		f->target = strdup(target);
		return f->target ? 0 : -ENOMEM;
	}
	if (strcmp(type, "file") != 0 || !json_is_array(chunks) || size < 0)
		return fail(err, errlen, -EINVAL, "%s: bad file entry", path);
	f->mode = S_IFREG | (uint32_t)mbits;
	f->size = (uint64_t)size;
	f->has_sha = sha && hex_decode(sha, f->sha, 32, 1) == 0;
	f->nchunks = json_array_size(chunks);
	if (f->nchunks > CHUNKS_MAX)
		return fail(err, errlen, -EFBIG, "%s: too many chunks", path);
	f->chunks = calloc(f->nchunks + 1, sizeof(*f->chunks));
	f->offs = calloc(f->nchunks + 1, sizeof(*f->offs));
	if (!f->chunks || !f->offs)
		return -ENOMEM;
	for (i = 0; i < f->nchunks; i++) {
		const char *hex = NULL;
		json_int_t len = 0;
		struct cas_id id;
		long k;

		if (json_unpack(json_array_get(chunks, i), "[s, I]", &hex, &len) < 0 ||
		    cas_id_parse(hex, &id) < 0 || len <= 0 || len > CDC_MAX)
			return fail(err, errlen, -EINVAL, "%s: chunk %zu is malformed",
				    path, i);
		k = idmap_get(map, m->chunks, &id, 0);
		if (k < 0)
			return fail(err, errlen, -EINVAL, "%s: chunk %s is in no pack",
				    path, hex);
		if (m->chunks[k].ulen && m->chunks[k].ulen != (uint32_t)len)
			return fail(err, errlen, -EINVAL, "%s: chunk %s has two lengths",
				    path, hex);
		m->chunks[k].ulen = (uint32_t)len;
		f->chunks[i] = (uint32_t)k;
		f->offs[i] = sum;
		sum += (uint64_t)len;
	}
	f->offs[f->nchunks] = sum;
	if (sum != f->size)
		return fail(err, errlen, -EINVAL, "%s: chunks add up to %llu, not %llu",
			    path, (unsigned long long)sum, (unsigned long long)f->size);
	return 0;
}

int smip_model_parse(const char *json, size_t len, struct smip_model **ret,
		     char *err, size_t errlen)
{
	struct smip_model *m = calloc(1, sizeof(*m));
	struct idmap map = { 0 };
	json_error_t je;
	json_t *root, *files;
	json_int_t ver = 0;
	const char *name = "";
	size_t i, k;
	int r;

	if (!m)
		return -ENOMEM;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		r = fail(err, errlen, -EINVAL, "SMIP manifest: %s (line %d)", je.text,
			 je.line);
		goto out;
	}
	if (json_unpack(root, "{s:I, s?s, s:o}", "smip", &ver, "name", &name, "files",
			&files) < 0 || !json_is_array(files)) {
		r = fail(err, errlen, -EINVAL, "SMIP manifest: no smip version or files");
		goto out;
	}
	if (ver < 1 || ver > SMIP_VERSION) {
		r = fail(err, errlen, -ENOTSUP, "SMIP manifest version %lld is not known",
			 (long long)ver);
		goto out;
	}
	if (json_array_size(files) > LAYOUT_MAX_FILES) {
		r = fail(err, errlen, -EFBIG, "SMIP manifest: too many files");
		goto out;
	}
	m->name = strdup(name);
	if (!m->name) {
		r = -ENOMEM;
		goto out;
	}
	r = parse_index(m, json_object_get(root, "packs"),
			json_object_get(root, "index"), &map, err, errlen);
	if (r < 0)
		goto out;
	m->files = calloc(json_array_size(files) + 1, sizeof(*m->files));
	if (!m->files) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < json_array_size(files); i++) {
		r = parse_file(m, json_array_get(files, i), &map, &m->files[i], err,
			       errlen);
		m->nfiles = i + 1;
		if (r < 0)
			goto out;
		for (k = 0; k < i; k++)
			if (strcmp(m->files[k].path, m->files[i].path) == 0) {
				r = fail(err, errlen, -EINVAL, "%s: listed twice",
					 m->files[i].path);
				goto out;
			}
	}
out:
	json_decref(root);
	free(map.slot);
	if (r < 0)
		smip_model_free(m);
	else
		*ret = m;
	return r;
}

/* ---- fetching ----------------------------------------------------------- */

/*
 * A pull fetches coalesced ranges of pack blobs in windows: while the
 * store's workers check (decode and hash) the records of one window and
 * append them to the packs, the next window is on the wire.  What is
 * appended is committed every COMMIT bytes and at the end.
 */
#define COMMIT_NS 250000000LL /* a quarter of a second */
#define COMMIT_BYTES (32u << 20)

struct frange {
	uint32_t first, n;  /* chunks want[first .. first + n) */
	int bad;            /* -EBADMSG: a record failed its check */
	int whole;          /* the range is a whole pack blob */
	uint64_t base;      /* blob offset of buf[0] */
	uint8_t *buf;
	struct window *w;
};

/* 1 if buf holds the bytes of digest (sha256:<hex>). */
static int sha_matches(const uint8_t *buf, size_t len, const char *digest)
{
	char d[OCI_DIGEST_LEN];

	digest_sha256(buf, len, d);
	return strcmp(d, digest) == 0;
}

struct fetch {
	struct cas_store *st;
	const struct smip_model *m;
	uint32_t *want;     /* chunk indexes, sorted by pack and offset */
	struct cas_import *im;
	pthread_mutex_t lock;
	pthread_cond_t done;
	int err;            /* storing failed (a full disk): not worth a retry */
	int64_t committed;  /* when the last commit was made */
	uint8_t *spare[SPARE_MAX]; /* RANGE_BUF buffers of windows done: reused,
				      not faulted in and zeroed again */
	size_t nspare;
};

/* Range buffers hold RANGE_MAX and a pack header (a whole pack blob). */
#define RANGE_BUF (RANGE_MAX + PACK_HEADER_LEN)

static uint8_t *buf_get(struct fetch *f, size_t len)
{
	if (len <= RANGE_BUF && f->nspare)
		return f->spare[--f->nspare];
	return malloc(len <= RANGE_BUF ? RANGE_BUF : len);
}

static void buf_put(struct fetch *f, uint8_t *buf, size_t len)
{
	if (buf && len <= RANGE_BUF && f->nspare < SPARE_MAX)
		f->spare[f->nspare++] = buf;
	else
		free(buf);
}

struct window {
	struct fetch *f;
	struct oci_range *rg;
	struct frange *fr;
	size_t nr;
	unsigned pending;   /* check jobs not finished */
};

/*
 * Commits what was appended when the last commit is COMMIT_NS old or
 * COMMIT_BYTES wait, so that a pull killed midway loses little.
 */
static int commit_due(struct fetch *f)
{
	int64_t now = clock_mono_ns();
	uint64_t pending = cas_import_pending(f->im);
	int due;

	pthread_mutex_lock(&f->lock);
	due = pending && (now - f->committed >= COMMIT_NS || pending >= COMMIT_BYTES);
	if (due)
		f->committed = now;
	pthread_mutex_unlock(&f->lock);
	return due ? cas_import_commit(f->im) : 0;
}

/* Checks every record of a range that arrived and appends them. */
static void check_job(void *ctx, void *arg)
{
	struct frange *fr = arg;
	struct window *w = fr->w;
	struct fetch *f = w->f;
	const struct smip_model *m = f->m;
	const void **recs = calloc(fr->n + 1, sizeof(*recs));
	size_t *lens = calloc(fr->n + 1, sizeof(*lens));
	uint32_t i;
	int bad = !recs || !lens ? -ENOMEM : 0;

	(void)ctx;
	/*
	 * A whole pack blob is checked against its SHA-256 digest, as the
	 * distribution protocol intends (the registry checked it on upload);
	 * a record from a range is decoded and its XXH3 compared with its id.
	 */
	if (!bad && fr->whole) {
		const struct layout_desc *p = &m->packs[m->chunks[f->want[fr->first]].pack];

		if (!sha_matches(fr->buf, (size_t)p->size, p->digest))
			bad = -EBADMSG;
	}
	for (i = 0; i < fr->n && !bad; i++) {
		const struct smip_rchunk *c = &m->chunks[f->want[fr->first + i]];
		struct cas_id hid;
		enum codec_scheme scheme;
		uint32_t ulen, clen;

		recs[i] = fr->buf + (c->off - fr->base);
		lens[i] = c->rlen;
		if (fr->whole) {
			if (pack_rec_parse(recs[i], &hid, &scheme, &ulen, &clen) < 0 ||
			    !cas_id_eq(&hid, &c->id) || ulen != c->ulen ||
			    PACK_REC_LEN + (size_t)clen != c->rlen)
				bad = -EBADMSG;
		} else if (cas_record_check(f->st, recs[i], c->rlen, &c->id, NULL) < 0) {
			bad = -EBADMSG;
		}
	}
	if (!bad)
		bad = cas_import_add(f->im, recs, lens, fr->n);
	if (!bad)
		cas_import_writeback(f->im);
	if (!bad)
		bad = commit_due(f);
	free(recs);
	free(lens);
	pthread_mutex_lock(&f->lock);
	fr->bad = bad;
	if (bad && bad != -EBADMSG && !f->err)
		f->err = bad;
	if (--w->pending == 0)
		pthread_cond_broadcast(&f->done);
	pthread_mutex_unlock(&f->lock);
}

static int range_arrived(void *arg, struct oci_range *r)
{
	struct fetch *f = arg;
	struct frange *fr = r->user;

	pthread_mutex_lock(&f->lock);
	fr->w->pending++;
	pthread_mutex_unlock(&f->lock);
	return pool_submit(f->st->pool, check_job, fr);
}

static int by_location(const void *a, const void *b, void *arg)
{
	const struct smip_model *m = arg;
	const struct smip_rchunk *x = &m->chunks[*(const uint32_t *)a];
	const struct smip_rchunk *y = &m->chunks[*(const uint32_t *)b];

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static void window_free(struct window *w)
{
	size_t i;

	if (!w)
		return;
	for (i = 0; w->fr && i < w->nr; i++)
		buf_put(w->f, w->fr[i].buf, w->rg[i].len);
	free(w->fr);
	free(w->rg);
	free(w);
}

/* Coalesces chunks want[from, to) into ranges. */
static struct window *window_new(struct fetch *f, size_t from, size_t to)
{
	const struct smip_model *m = f->m;
	struct window *w = calloc(1, sizeof(*w));
	size_t i, k;

	if (!w)
		return NULL;
	w->f = f;
	w->rg = calloc(to - from + 1, sizeof(*w->rg));
	w->fr = calloc(to - from + 1, sizeof(*w->fr));
	if (!w->rg || !w->fr)
		goto fail;
	for (i = from; i < to;) {
		const struct smip_rchunk *s = &m->chunks[f->want[i]];
		uint64_t end = s->off + s->rlen;

		for (k = i + 1; k < to; k++) {
			const struct smip_rchunk *x = &m->chunks[f->want[k]];

			if (x->pack != s->pack || x->off < end ||
			    x->off - end > RANGE_GAP || x->off + x->rlen - s->off > RANGE_MAX)
				break;
			end = x->off + x->rlen;
		}
		{
			/* Every record of a pack: fetched whole, header included. */
			int whole = s->off == PACK_HEADER_LEN &&
				    end == m->packs[s->pack].size;
			uint64_t start = whole ? 0 : s->off;

			w->fr[w->nr] = (struct frange){ .first = (uint32_t)i,
							.n = (uint32_t)(k - i), .w = w,
							.whole = whole, .base = start,
							.buf = buf_get(f, end - start) };
			if (!w->fr[w->nr].buf)
				goto fail;
			w->rg[w->nr] = (struct oci_range){ .digest = m->packs[s->pack].digest,
							   .off = start, .len = end - start,
							   .buf = w->fr[w->nr].buf,
							   .user = &w->fr[w->nr],
							   .size = m->packs[s->pack].size };
		}
		w->nr++;
		i = k;
	}
	return w;
fail:
	window_free(w);
	return NULL;
}

static void window_wait(struct window *w)
{
	pthread_mutex_lock(&w->f->lock);
	while (w->pending)
		pthread_cond_wait(&w->f->done, &w->f->lock);
	pthread_mutex_unlock(&w->f->lock);
}

/*
 * Waits for a window's checks; fetches again the ranges that failed them
 * (twice more at most).  Returns 0 or -errno with err filled.
 */
static int window_finish(struct window *w, struct oci_client *c,
			 const char *repo, _Atomic uint64_t *progress, char *err,
			 size_t errlen)
{
	struct fetch *f = w->f;
	size_t i, nt;
	int attempt, r = 0;

	for (attempt = 0;; attempt++) {
		struct oci_range *todo;

		window_wait(w);
		if (f->err)
			return fail(err, errlen, f->err, "storing fetched chunks: %s",
				    strerror(-f->err));
		for (i = 0, nt = 0; i < w->nr; i++)
			nt += w->fr[i].bad != 0;
		if (nt == 0)
			return 0;
		if (attempt == 2) {
			char hex[33];

			for (i = 0; !w->fr[i].bad; i++)
				;
			cas_id_hex(&f->m->chunks[f->want[w->fr[i].first]].id, hex);
			return fail(err, errlen, -EIO,
				    "%s: the registry keeps sending wrong bytes for chunk %s",
				    repo, hex);
		}
		todo = calloc(nt, sizeof(*todo));
		if (!todo)
			return -ENOMEM;
		for (i = 0, nt = 0; i < w->nr; i++)
			if (w->fr[i].bad) {
				w->fr[i].bad = 0;
				todo[nt++] = w->rg[i];
			}
		r = oci_fetch_ranges(c, repo, todo, nt, range_arrived, f, progress,
				     err, errlen);
		free(todo);
		if (r < 0) {
			window_wait(w);
			return r;
		}
	}
}

int smip_fetch(struct cas_store *st, struct oci_client *c, const char *repo,
	       const struct smip_model *m, const uint32_t *idx, size_t n,
	       _Atomic uint64_t *progress, char *err, size_t errlen)
{
	struct fetch f = { .st = st, .m = m };
	struct window *prev = NULL, *cur = NULL;
	size_t i, k, nw = 0;
	int r = 0;

	f.want = malloc((n + 1) * sizeof(*f.want));
	if (!f.want)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (idx[i] >= m->nchunks) {
			free(f.want);
			return -EINVAL;
		}
		r = cas_chunk_has(st, &m->chunks[idx[i]].id);
		if (r < 0)
			goto out;
		if (r == 0)
			f.want[nw++] = idx[i];
	}
	r = 0;
	if (nw == 0)
		goto out;
	qsort_r(f.want, nw, sizeof(*f.want), by_location, (void *)m);
	/* The same chunk twice (two files share it) is fetched once. */
	for (i = 1, k = 1; i < nw; i++)
		if (f.want[i] != f.want[k - 1])
			f.want[k++] = f.want[i];
	nw = k;
	r = cas_import_begin(st, &f.im);
	if (r < 0)
		goto out;
	pthread_mutex_init(&f.lock, NULL);
	pthread_cond_init(&f.done, NULL);
	f.committed = clock_mono_ns();
	for (i = 0; r == 0 && i < nw; i = k) {
		uint64_t bytes = 0;

		for (k = i; k < nw && (k == i || bytes < WINDOW); k++)
			bytes += m->chunks[f.want[k]].rlen;
		cur = window_new(&f, i, k);
		if (!cur) {
			r = -ENOMEM;
			break;
		}
		r = oci_fetch_ranges(c, repo, cur->rg, cur->nr, range_arrived, &f,
				     progress, err, errlen);
		/* While cur was on the wire, prev was being checked. */
		if (prev) {
			int r2 = window_finish(prev, c, repo, progress, err, errlen);

			r = r ? r : r2;
			window_free(prev);
			prev = NULL;
		}
		prev = cur;
		cur = NULL;
	}
	if (prev) {
		int r2 = r ? (window_wait(prev), 0)
			   : window_finish(prev, c, repo, progress, err, errlen);

		r = r ? r : r2;
		window_free(prev);
	}
	/* What checked out is kept even when the rest failed. */
	{
		int r2 = cas_import_commit(f.im);

		if (r == 0 && r2 < 0)
			r = fail(err, errlen, r2, "storing fetched chunks: %s",
				 strerror(-r2));
	}
	cas_import_end(f.im);
	while (f.nspare)
		free(f.spare[--f.nspare]);
	pthread_mutex_destroy(&f.lock);
	pthread_cond_destroy(&f.done);
out:
	free(f.want);
	return r;
}

/* ---- pushing ------------------------------------------------------------ */

/* A pack blob being pushed: the chunks whose records it holds, in order. */
struct newpack {
	struct cas_store *st;
	uint32_t *chunk;    /* indexes into the push's chunk table */
	uint64_t *off;      /* record offsets; off[n] = blob size */
	size_t n;
	const struct smip_rchunk *v;
	uint8_t *rec;       /* the record being copied out */
	long rec_at;        /* which one, or -1 */
};

static ssize_t newpack_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct newpack *p = arg;
	uint8_t *out = buf;
	size_t done = 0;

	while (done < len) {
		uint64_t at = off + done;
		size_t lo = 0, hi = p->n, i;
		uint64_t in;
		size_t take;

		if (at < PACK_HEADER_LEN) {
			uint8_t hdr[PACK_HEADER_LEN];

			pack_header(hdr);
			take = PACK_HEADER_LEN - (size_t)at;
			take = take < len - done ? take : len - done;
			memcpy(out + done, hdr + at, take);
			done += take;
			continue;
		}
		if (at >= p->off[p->n])
			return -EINVAL;
		while (hi - lo > 1) {
			size_t mid = (lo + hi) / 2;

			if (p->off[mid] <= at)
				lo = mid;
			else
				hi = mid;
		}
		i = lo;
		if (p->rec_at != (long)i) {
			ssize_t n = cas_chunk_record(p->st, &p->v[p->chunk[i]].id, p->rec,
						     REC_MAX);

			if (n < 0)
				return n;
			if ((uint64_t)n != p->off[i + 1] - p->off[i])
				return -EIO;
			p->rec_at = (long)i;
		}
		in = at - p->off[i];
		take = (size_t)(p->off[i + 1] - at);
		take = take < len - done ? take : len - done;
		memcpy(out + done, p->rec + in, take);
		done += take;
	}
	return (ssize_t)len;
}

static int newpack_digest(struct newpack *p, char out[OCI_DIGEST_LEN])
{
	static const size_t step = 1u << 20;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(step), sha[32];
	uint64_t off = 0, size = p->off[p->n];
	char hex[65];
	int r = 0;

	if (!md || !buf) {
		r = -ENOMEM;
		goto out;
	}
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	while (off < size) {
		size_t len = size - off < step ? (size_t)(size - off) : step;
		ssize_t n = newpack_read(p, buf, len, off);

		if (n < 0) {
			r = (int)n;
			goto out;
		}
		EVP_DigestUpdate(md, buf, len);
		off += len;
	}
	EVP_DigestFinal_ex(md, sha, NULL);
	hex_encode(sha, 32, hex);
	snprintf(out, OCI_DIGEST_LEN, "sha256:%s", hex);
out:
	EVP_MD_CTX_free(md);
	free(buf);
	return r;
}

struct memblob {
	const char *data;
	size_t len;
};

static ssize_t mem_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct memblob *b = arg;

	if (off > b->len || len > b->len - off)
		return -EINVAL;
	memcpy(buf, b->data + off, len);
	return (ssize_t)len;
}

/* The chunks every SMIP tag of repo already holds, and their packs. */
static int remote_known(struct oci_client *c, const char *repo,
			struct smip_model ***ret, size_t *ret_n)
{
	char **tags = NULL, type[256], digest[OCI_DIGEST_LEN];
	struct smip_model **v;
	size_t ntags = 0, i, n = 0;
	int r;

	*ret = NULL;
	*ret_n = 0;
	r = oci_tags(c, repo, &tags, &ntags, NULL, 0);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	v = calloc(ntags + 1, sizeof(*v));
	if (!v) {
		oci_strv_free(tags, ntags);
		return -ENOMEM;
	}
	for (i = 0; i < ntags && i < 64; i++) {
		struct layout *l = NULL;
		char *body = NULL;
		void *cfg = NULL;
		size_t len, clen;

		if (oci_manifest_get(c, repo, tags[i], &body, &len, type, sizeof(type),
				     digest, NULL, 0) == 0 &&
		    layout_parse(body, len, NULL, NULL, &l, NULL, 0) == 0 &&
		    l->kind == LAYOUT_SMIP &&
		    oci_blob_get(c, repo, l->config.digest, CONFIG_MAX, &cfg, &clen,
				 NULL, 0) == 0 &&
		    smip_model_parse(cfg, clen, &v[n], NULL, 0) == 0)
			n++;
		free(cfg);
		free(body);
		layout_free(l);
	}
	oci_strv_free(tags, ntags);
	*ret = v;
	*ret_n = n;
	return 0;
}

struct push {
	struct smip_rchunk *v;  /* the model's distinct chunks */
	size_t n, cap;
	struct idmap map;
	struct layout_desc *packs;
	size_t npacks;
};

static int push_pack_add(struct push *p, const struct layout_desc *d)
{
	size_t i;
	struct layout_desc *t;

	for (i = 0; i < p->npacks; i++)
		if (strcmp(p->packs[i].digest, d->digest) == 0)
			return (int)i;
	t = realloc(p->packs, (p->npacks + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	p->packs = t;
	t[p->npacks] = *d;
	return (int)p->npacks++;
}

static json_t *config_with_index(json_t *man, const struct push *p)
{
	json_t *packs = json_array(), *index = json_array();
	size_t i;
	char hex[33];

	for (i = 0; i < p->npacks; i++)
		json_array_append_new(packs, json_pack("{s:s, s:I}", "digest",
						       p->packs[i].digest, "size",
						       (json_int_t)p->packs[i].size));
	for (i = 0; i < p->n; i++) {
		cas_id_hex(&p->v[i].id, hex);
		json_array_append_new(index, json_pack("[s, I, I, I]", hex,
						       (json_int_t)p->v[i].pack,
						       (json_int_t)p->v[i].off,
						       (json_int_t)p->v[i].rlen));
	}
	json_object_set_new(man, "packs", packs);
	json_object_set_new(man, "index", index);
	return man;
}

static ssize_t no_bytes(void *arg, void *buf, size_t len, uint64_t off)
{
	(void)arg, (void)buf, (void)len, (void)off;
	return -ENOENT;
}

/* Places chunks of the model found in m, whose packs are in this repository
 * already (mount_from NULL) or are to be mounted from mount_from. */
static int place_known(struct push *p, const struct smip_model *m,
		       const char *mount_from, struct oci_upload **up, size_t *nup)
{
	size_t k;

	for (k = 0; k < m->nchunks; k++) {
		long at = idmap_get(&p->map, p->v, &m->chunks[k].id, 0);
		size_t before = p->npacks;
		int pi;

		if (at < 0 || p->v[at].pack != UINT32_MAX)
			continue;
		pi = push_pack_add(p, &m->packs[m->chunks[k].pack]);
		if (pi < 0)
			return pi;
		if (mount_from && p->npacks > before) {
			struct oci_upload *t = realloc(*up, (*nup + 1) * sizeof(*t));

			if (!t)
				return -ENOMEM;
			*up = t;
			memset(&t[*nup], 0, sizeof(t[*nup]));
			memcpy(t[*nup].digest, p->packs[pi].digest, OCI_DIGEST_LEN);
			t[*nup].size = p->packs[pi].size;
			t[*nup].mount_from = mount_from;
			t[*nup].read = no_bytes;
			(*nup)++;
		}
		p->v[at].pack = (uint32_t)pi;
		p->v[at].off = m->chunks[k].off;
		p->v[at].rlen = m->chunks[k].rlen;
	}
	return 0;
}

/* Forgets the packs a mount could not bring over, and the chunks in them. */
static void drop_packs(struct push *p, const struct oci_upload *up, size_t nup)
{
	size_t i, k, w = 0;
	uint32_t *map = calloc(p->npacks + 1, sizeof(*map));

	if (!map)
		return;
	for (i = 0; i < p->npacks; i++) {
		int gone = 0;

		for (k = 0; k < nup; k++)
			if (up[k].status < 0 && !strcmp(up[k].digest, p->packs[i].digest))
				gone = 1;
		map[i] = gone ? UINT32_MAX : (uint32_t)w;
		if (!gone)
			p->packs[w++] = p->packs[i];
	}
	for (i = 0; i < p->n; i++)
		if (p->v[i].pack != UINT32_MAX)
			p->v[i].pack = map[p->v[i].pack];
	p->npacks = w;
	free(map);
}

int smip_push(struct cas_store *st, struct oci_client *c, const char *repo,
	      const char *tag, const char *name, const struct smip_entry *e,
	      size_t n, const struct smip_source *src, size_t nsrc,
	      _Atomic uint64_t *progress, struct smip_push_stats *stats,
	      char *err, size_t errlen)
{
	struct oci_upload *mup = NULL;
	size_t nmup = 0;
	struct push p = { 0 };
	struct smip_model **known = NULL;
	struct newpack *np = NULL;
	struct oci_upload *up = NULL;
	struct memblob cfgblob = { 0 };
	size_t nknown = 0, nnp = 0, i, k, j;
	json_t *man = NULL, *files, *layers, *oci = NULL;
	char *cfg = NULL, *mtext = NULL;
	int r;

	memset(stats, 0, sizeof(*stats));
	r = smip_manifest_json(st, name, e, n, &man);
	if (r < 0) {
		fail(err, errlen, r, "reading the model: %s", strerror(-r));
		goto out;
	}
	/* The distinct chunks, in order of first use. */
	files = json_object_get(man, "files");
	for (i = 0; i < json_array_size(files); i++) {
		json_t *ch = json_object_get(json_array_get(files, i), "chunks");

		for (k = 0; k < json_array_size(ch); k++)
			p.cap++;
	}
	p.v = calloc(p.cap + 1, sizeof(*p.v));
	if (!p.v || idmap_init(&p.map, p.cap) < 0) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < json_array_size(files); i++) {
		json_t *ch = json_object_get(json_array_get(files, i), "chunks");

		for (k = 0; k < json_array_size(ch); k++) {
			json_t *pair = json_array_get(ch, k);
			struct smip_rchunk *x = &p.v[p.n];

			cas_id_parse(json_string_value(json_array_get(pair, 0)), &x->id);
			x->ulen = (uint32_t)json_integer_value(json_array_get(pair, 1));
			x->pack = UINT32_MAX;
			if (idmap_get(&p.map, p.v, &x->id, (uint32_t)p.n + 1) < 0)
				p.n++;
		}
	}
	stats->chunks = p.n;
	/* What the repository has already. */
	r = remote_known(c, repo, &known, &nknown);
	if (r < 0) {
		fail(err, errlen, r, "%s: listing tags: %s", repo, strerror(-r));
		goto out;
	}
	for (j = 0; r == 0 && j < nknown; j++)
		r = place_known(&p, known[j], NULL, &mup, &nmup);
	for (j = 0; r == 0 && j < nsrc; j++)
		if (strcmp(src[j].repo, repo) != 0)
			r = place_known(&p, src[j].m, src[j].repo, &mup, &nmup);
	if (r < 0)
		goto out;
	/* Mounts first: a pack the registry will not mount is sent anew. */
	if (nmup) {
		oci_upload_blobs(c, repo, mup, nmup, NULL, NULL, 0);
		for (j = 0; j < nmup; j++)
			stats->packs_mounted += mup[j].status == 0;
		drop_packs(&p, mup, nmup);
	}
	stats->packs_reused = p.npacks - stats->packs_mounted;
	/* New chunks go into new pack blobs of at most SMIP_PACK_BLOB_MAX. */
	np = calloc(p.n / 8 + 2, sizeof(*np));
	if (!np) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < p.n; i++) {
		struct newpack *cur;
		ssize_t rl;

		if (p.v[i].pack != UINT32_MAX)
			continue;
		rl = cas_chunk_record(st, &p.v[i].id, NULL, 0);
		if (rl < 0) {
			r = fail(err, errlen, (int)rl, "a chunk of the model is missing from the store");
			goto out;
		}
		cur = nnp ? &np[nnp - 1] : NULL;
		if (!cur || cur->off[cur->n] + (uint64_t)rl > SMIP_PACK_BLOB_MAX) {
			cur = &np[nnp++];
			cur->st = st;
			cur->v = p.v;
			cur->rec_at = -1;
			cur->rec = malloc(REC_MAX);
			cur->off = malloc(2 * sizeof(*cur->off));
			if (!cur->rec || !cur->off) {
				r = -ENOMEM;
				goto out;
			}
			cur->off[0] = PACK_HEADER_LEN;
		}
		if ((cur->n & (cur->n - 1)) == 0 || cur->n == 0) {
			size_t cap = cur->n ? 2 * cur->n : 1;
			uint32_t *ch = realloc(cur->chunk, cap * sizeof(*ch));
			uint64_t *of = ch ? realloc(cur->off, (cap + 1) * sizeof(*of)) : NULL;

			if (ch)
				cur->chunk = ch;
			if (!of) {
				r = -ENOMEM;
				goto out;
			}
			cur->off = of;
		}
		p.v[i].off = cur->off[cur->n];
		p.v[i].rlen = (uint32_t)rl;
		cur->chunk[cur->n] = (uint32_t)i;
		cur->off[cur->n + 1] = cur->off[cur->n] + (uint64_t)rl;
		cur->n++;
		stats->new_chunks++;
	}
	up = calloc(nnp + 2, sizeof(*up));
	if (!up) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < nnp; i++) {
		struct layout_desc d = { 0 };
		int pi;

		r = newpack_digest(&np[i], d.digest);
		if (r < 0) {
			fail(err, errlen, r, "reading chunks: %s", strerror(-r));
			goto out;
		}
		d.size = np[i].off[np[i].n];
		snprintf(d.media_type, sizeof(d.media_type), "%s", SMIP_MT_PACK);
		pi = push_pack_add(&p, &d);
		if (pi < 0) {
			r = pi;
			goto out;
		}
		for (k = 0; k < np[i].n; k++)
			p.v[np[i].chunk[k]].pack = (uint32_t)pi;
		memcpy(up[i].digest, d.digest, OCI_DIGEST_LEN);
		up[i].size = d.size;
		up[i].read = newpack_read;
		up[i].arg = &np[i];
	}
	stats->packs_new = nnp;
	/* The config: the manifest with its pack index. */
	config_with_index(man, &p);
	cfg = json_dumps(man, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!cfg) {
		r = -ENOMEM;
		goto out;
	}
	cfgblob.data = cfg;
	cfgblob.len = strlen(cfg);
	digest_sha256(cfg, cfgblob.len, up[nnp].digest);
	up[nnp].size = cfgblob.len;
	up[nnp].read = mem_read;
	up[nnp].arg = &cfgblob;
	r = oci_upload_blobs(c, repo, up, nnp + 1, progress, err, errlen);
	if (r < 0)
		goto out;
	for (i = 0; i < nnp; i++)
		if (up[i].how == OCI_UP_SENT)
			stats->bytes_sent += up[i].size;
	/* The manifest goes last: the tag appears when every blob is there. */
	layers = json_array();
	for (i = 0; i < p.npacks; i++)
		json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType",
							SMIP_MT_PACK, "digest",
							p.packs[i].digest, "size",
							(json_int_t)p.packs[i].size));
	oci = json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:I}, s:o, s:{s:s}}",
			"schemaVersion", 2, "mediaType", OCI_MT_MANIFEST,
			"artifactType", SMIP_ARTIFACT_TYPE, "config", "mediaType",
			SMIP_MT_CONFIG, "digest", up[nnp].digest, "size",
			(json_int_t)cfgblob.len, "layers", layers, "annotations",
			"org.opencontainers.image.title", name);
	mtext = oci ? json_dumps(oci, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (!mtext) {
		r = -ENOMEM;
		goto out;
	}
	r = oci_manifest_put(c, repo, tag, OCI_MT_MANIFEST, mtext, strlen(mtext),
			     err, errlen);
out:
	for (i = 0; i < nknown; i++)
		smip_model_free(known[i]);
	free(known);
	for (i = 0; np && i < nnp; i++) {
		free(np[i].chunk);
		free(np[i].off);
		free(np[i].rec);
	}
	free(np);
	free(up);
	free(mup);
	free(p.v);
	free(p.map.slot);
	free(p.packs);
	json_decref(man);
	json_decref(oci);
	free(cfg);
	free(mtext);
	return r;
}

/* ---- ModelPack ---------------------------------------------------------- */

struct filesrc {
	struct cas_store *st;
	struct cas_file *f;
};

static ssize_t file_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct filesrc *fs = arg;
	struct cas_fault fault;
	ssize_t r = cas_file_read(fs->st, fs->f, buf, len, off, &fault);

	return r < 0 ? r : (size_t)r == len ? r : -EIO;
}

int smip_push_modelpack(struct cas_store *st, struct oci_client *c,
			const char *repo, const char *tag, const char *name,
			const struct smip_entry *e, size_t n,
			_Atomic uint64_t *progress, struct smip_push_stats *stats,
			char *err, size_t errlen)
{
	struct layout_put_file *pf = calloc(n + 1, sizeof(*pf));
	struct oci_upload *up = calloc(n + 2, sizeof(*up));
	struct filesrc *src = calloc(n + 1, sizeof(*src));
	char *man = NULL, *cfg = NULL;
	struct memblob cb = { 0 };
	size_t mlen = 0, clen = 0, nf = 0, i;
	int r = 0;

	memset(stats, 0, sizeof(*stats));
	if (!pf || !up || !src) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct cat_attr a;
		uint8_t sha[32];
		char hex[65];

		if (!e[i].ino || cas_getattr(st, e[i].ino, &a) < 0 || !S_ISREG(a.mode))
			continue;
		src[nf].st = st;
		r = cas_file_open(st, e[i].ino, &src[nf].f);
		if (r == 0)
			r = cas_file_sha256(src[nf].f, sha);
		if (r < 0) {
			fail(err, errlen, r, "%s: %s", e[i].path, strerror(-r));
			goto out;
		}
		hex_encode(sha, 32, hex);
		pf[nf].path = e[i].path;
		snprintf(pf[nf].digest, sizeof(pf[nf].digest), "sha256:%s", hex);
		pf[nf].size = cas_file_size(src[nf].f);
		memcpy(up[nf].digest, pf[nf].digest, OCI_DIGEST_LEN);
		up[nf].size = pf[nf].size;
		up[nf].read = file_read;
		up[nf].arg = &src[nf];
		nf++;
	}
	r = layout_modelpack_build(name, pf, nf, &man, &mlen, &cfg, &clen, err,
				   errlen);
	if (r < 0)
		goto out;
	cb.data = cfg;
	cb.len = clen;
	digest_sha256(cfg, clen, up[nf].digest);
	up[nf].size = clen;
	up[nf].read = mem_read;
	up[nf].arg = &cb;
	r = oci_upload_blobs(c, repo, up, nf + 1, progress, err, errlen);
	if (r < 0)
		goto out;
	for (i = 0; i < nf; i++)
		if (up[i].how == OCI_UP_SENT)
			stats->bytes_sent += up[i].size;
	stats->chunks = nf;
	r = oci_manifest_put(c, repo, tag, OCI_MT_MANIFEST, man, mlen, err, errlen);
out:
	for (i = 0; src && i < n; i++)
		cas_file_free(src[i].f);
	free(src);
	free(pf);
	free(up);
	free(man);
	free(cfg);
	return r;
}
