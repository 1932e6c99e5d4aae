/*
 * pull.c - tags resolved into models, and reads and pulls of their files.
 *
 * SMIP files map an offset to chunks: chunks the store lacks are fetched
 * by smip_fetch() (checked, kept as fetched chunks) and then read like any
 * stored chunk; a pull appends the chunk ids to the writer, so the new
 * file is made of stored records.  Files of other layouts are HTTP ranges
 * of their layer blob; small whole layers are fetched once and checked
 * against their digest; a pull streams a whole layer into the writer, and
 * copies a tar member out of a local copy of its layer (an orphan inode,
 * fetched whole once per model and checked).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/registry/pull.h"
#include "backend/store/chunker.h"

#define SMALL_BLOB (16u << 20)    /* foreign files this small are fetched whole */
#define READ_AHEAD (64u << 20)    /* SMIP chunks fetched ahead of a sequential reader */
#define READ_AHEAD_MIN (4u << 20) /* ... once it has read this much in order */
#define CONFIG_MAX (512u << 20)   /* largest SMIP config blob read */

struct pull_reader {
	struct reg_model *m;
	long idx;
	char *path;
	uint8_t *chunk;       /* the last chunk decoded */
	long chunk_at;
	uint64_t next_off;    /* sequential reader detection: where the last */
	uint64_t streak;      /* read ended, and how long the run is */
	uint64_t have_from, have_to; /* the last span made sure of (SMIP) */
	void *blob;           /* a small whole layer, once read */
	size_t blob_len;
	struct xfer *x;       /* the running read or pull */
};

/* ---- resolving a tag ---------------------------------------------------- */

struct tarfetch {
	struct oci_client *c;
	const char *repo;
};

static int tar_fetch(void *arg, const char *digest, uint64_t off, size_t len,
		     void *buf)
{
	struct tarfetch *tf = arg;
	struct oci_range r = { .digest = digest, .off = off, .len = len, .buf = buf };

	return oci_fetch_ranges(tf->c, tf->repo, &r, 1, NULL, NULL, NULL, NULL, 0);
}

/* The index must name the manifest's own layers. */
static int smip_index_check(const struct reg_model *m, char *err, size_t errlen)
{
	size_t i, k;

	for (i = 0; i < m->m->npacks; i++) {
		for (k = 0; k < m->l->nlayers; k++)
			if (!strcmp(m->l->layers[k].digest, m->m->packs[i].digest) &&
			    m->l->layers[k].size == m->m->packs[i].size)
				break;
		if (k == m->l->nlayers) {
			if (err && !*err)
				snprintf(err, errlen, "the SMIP index names a blob the manifest lacks");
			return -EINVAL;
		}
	}
	return 0;
}

int reg_model_resolve(struct oci_client *c, const char *remote,
		      const char *repo, const char *tag, struct reg_model **ret,
		      char *err, size_t errlen)
{
	struct reg_model *m = calloc(1, sizeof(*m));
	struct tarfetch tf = { c, repo };
	char type[256];
	int r;

	if (!m)
		return -ENOMEM;
	m->c = c;
	pthread_mutex_init(&m->lock, NULL);
	m->remote = strdup(remote);
	m->repo = strdup(repo);
	m->tag = strdup(tag);
	r = -ENOMEM;
	if (!m->remote || !m->repo || !m->tag)
		goto out;
	r = oci_manifest_get(c, repo, tag, &m->manifest, &m->mlen, type, sizeof(type),
			     m->digest, err, errlen);
	if (r == 0)
		r = layout_parse(m->manifest, m->mlen, tar_fetch, &tf, &m->l, err, errlen);
	if (r < 0 || m->l->kind != LAYOUT_SMIP)
		goto out;
	{
		void *cfg = NULL;

		r = oci_blob_get(c, repo, m->l->config.digest, CONFIG_MAX, &cfg, &m->clen,
				 err, errlen);
		m->config = cfg;
	}
	if (r == 0)
		r = smip_model_parse(m->config, m->clen, &m->m, err, errlen);
	if (r == 0)
		r = smip_index_check(m, err, errlen);
out:
	if (r < 0) {
		reg_model_free(NULL, m);
		return r;
	}
	*ret = m;
	return 0;
}

void reg_model_free(struct cas_store *st, struct reg_model *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->nlc; i++)
		cas_release_orphan(st, m->lc[i].ino);
	free(m->lc);
	free(m->manifest);
	free(m->config);
	layout_free(m->l);
	smip_model_free(m->m);
	free(m->remote);
	free(m->repo);
	free(m->tag);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void reg_model_adopt_layers(struct reg_model *to, struct reg_model *from)
{
	if (strcmp(to->digest, from->digest))
		return;
	pthread_mutex_lock(&from->lock);
	pthread_mutex_lock(&to->lock);
	if (!to->nlc) {
		to->lc = from->lc;
		to->nlc = from->nlc;
		from->lc = NULL;
		from->nlc = 0;
	}
	pthread_mutex_unlock(&to->lock);
	pthread_mutex_unlock(&from->lock);
}

/* ---- readers ------------------------------------------------------------ */

int pull_reader_new(struct reg_model *m, long idx, const char *path,
		    struct pull_reader **ret)
{
	struct pull_reader *rd = calloc(1, sizeof(*rd));

	if (!rd || !(rd->path = strdup(path))) {
		free(rd);
		return -ENOMEM;
	}
	rd->m = m;
	rd->idx = idx;
	rd->chunk_at = -1;
	*ret = rd;
	return 0;
}

void pull_reader_free(struct xfer_list *xl, struct pull_reader *rd)
{
	if (!rd)
		return;
	xfer_end(xl, rd->x, 0, NULL);
	free(rd->chunk);
	free(rd->blob);
	free(rd->path);
	free(rd);
}

/* The reader's transfer of kind what, started if absent. */
static struct xfer *reader_xfer(struct xfer_list *xl, struct pull_reader *rd,
				const char *what, uint64_t total)
{
	if (rd->x && strcmp(rd->x->what, what)) {
		xfer_end(xl, rd->x, 0, NULL);
		rd->x = NULL;
	}
	if (!rd->x)
		rd->x = xfer_start(xl, what, rd->m->remote, rd->m->repo, rd->m->tag,
				   rd->path, total);
	return rd->x;
}

static void reader_failed(struct xfer_list *xl, struct pull_reader *rd, int r,
			  char *err, size_t errlen)
{
	if (!*err)
		snprintf(err, errlen, "%s", strerror(-r));
	xfer_end(xl, rd->x, r, err);
	rd->x = NULL;
}

/* ---- SMIP --------------------------------------------------------------- */

/*
 * Fetches SMIP chunks [i, j) of the file unless the store has them; the
 * transfer (what: read or pull) counts the bytes of the records fetched.
 */
static int smip_need(struct cas_store *st, struct xfer_list *xl,
		     struct pull_reader *rd, size_t i, size_t j, const char *what,
		     char *err, size_t errlen)
{
	const struct smip_model *m = rd->m->m;
	const struct smip_rfile *f = &m->files[rd->idx];
	uint64_t miss = 0;
	struct xfer *x;
	size_t k;
	int r;

	for (k = i; k < j; k++) {
		r = cas_chunk_has(st, &m->chunks[f->chunks[k]].id);
		if (r < 0)
			return r;
		if (r == 0)
			miss += m->chunks[f->chunks[k]].rlen;
	}
	if (!miss)
		return 0;
	x = reader_xfer(xl, rd, what, 0);
	if (x)
		atomic_fetch_add(&x->total, miss);
	r = smip_fetch(st, rd->m->c, rd->m->repo, m, f->chunks + i, j - i,
		       x ? &x->done : NULL, err, errlen);
	if (r < 0) {
		reader_failed(xl, rd, r, err, errlen);
		return -EIO;
	}
	return 0;
}

static size_t chunk_at(const struct smip_rfile *f, uint64_t off)
{
	size_t lo = 0, hi = f->nchunks;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (f->offs[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * A reader that has gone READ_AHEAD_MIN in order gets chunks fetched
 * ahead, as much as it has read in order, up to READ_AHEAD; random readers
 * (and the kernel's splitting of one large read) get none.  Chunks below
 * have_to are known to be in the store already.
 */
static int smip_ahead(struct cas_store *st, struct xfer_list *xl,
		      struct pull_reader *rd, size_t size, uint64_t off,
		      char *err, size_t errlen)
{
	const struct smip_rfile *f = &rd->m->m->files[rd->idx];
	uint64_t end = off + size;
	size_t i = chunk_at(f, off), j;
	int r;

	rd->streak = off == rd->next_off ? rd->streak + size : 0;
	if (end > rd->have_to || off < rd->have_from) {
		if (rd->streak >= READ_AHEAD_MIN)
			end += rd->streak < READ_AHEAD ? rd->streak : READ_AHEAD;
		for (j = i; j < f->nchunks && f->offs[j] < end; j++)
			;
		r = smip_need(st, xl, rd, i, j, "read", err, errlen);
		if (r < 0)
			return r;
		rd->have_from = f->offs[i];
		rd->have_to = f->offs[j];
	}
	rd->next_off = off + size;
	return 0;
}

static ssize_t read_smip(struct cas_store *st, struct xfer_list *xl,
			 struct pull_reader *rd, uint8_t *buf, size_t size,
			 uint64_t off, char *err, size_t errlen)
{
	const struct smip_rfile *f = &rd->m->m->files[rd->idx];
	size_t done = 0;
	int r;

	if (off >= f->size || !size)
		return 0;
	if (size > f->size - off)
		size = (size_t)(f->size - off);
	r = smip_ahead(st, xl, rd, size, off, err, errlen);
	if (r < 0)
		return r;
	while (done < size) {
		uint64_t at = off + done;
		size_t k = chunk_at(f, at), take;
		uint64_t in = at - f->offs[k];

		if (rd->chunk_at != (long)k) {
			ssize_t got;

			if (!rd->chunk && !(rd->chunk = malloc(CDC_MAX)))
				return -ENOMEM;
			got = cas_chunk_read(st, &rd->m->m->chunks[f->chunks[k]].id,
					     rd->chunk);
			if (got < 0 && got != -EIO)
				return got;
			if (got == -EIO || (uint64_t)got != f->offs[k + 1] - f->offs[k]) {
				snprintf(err, errlen, "a fetched chunk is damaged in the store");
				return -EIO;
			}
			rd->chunk_at = (long)k;
		}
		take = (size_t)(f->offs[k + 1] - at);
		take = take < size - done ? take : size - done;
		memcpy(buf + done, rd->chunk + in, take);
		done += take;
	}
	return (ssize_t)done;
}

/* ---- other layouts ------------------------------------------------------ */

/* Small whole-blob files are fetched once and checked against the digest. */
static int small_blob(struct pull_reader *rd, const struct layout_file *f,
		      char *err, size_t errlen)
{
	void *data = NULL;
	size_t len = 0;
	int r;

	if (rd->blob)
		return 0;
	r = oci_blob_get(rd->m->c, rd->m->repo, f->digest, SMALL_BLOB, &data, &len,
			 err, errlen);
	if (r < 0)
		return -EIO;
	if (len != f->size) {
		snprintf(err, errlen, "the blob has %zu bytes, the manifest says %llu",
			 len, (unsigned long long)f->size);
		free(data);
		return -EIO;
	}
	rd->blob = data;
	rd->blob_len = len;
	return 0;
}

/* The inode of the local copy of a tar layer, or 0. */
static uint64_t layer_cached(struct reg_model *m, const char *digest)
{
	uint64_t ino = 0;
	size_t i;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < m->nlc && !ino; i++)
		if (!strcmp(m->lc[i].digest, digest))
			ino = m->lc[i].ino;
	pthread_mutex_unlock(&m->lock);
	return ino;
}

static ssize_t read_layer(struct cas_store *st, struct xfer_list *xl,
			  struct pull_reader *rd, uint8_t *buf, size_t size,
			  uint64_t off, char *err, size_t errlen)
{
	const struct layout_file *f = &rd->m->l->files[rd->idx];
	struct xfer *x;
	int r;

	if (off >= f->size || !size)
		return 0;
	if (size > f->size - off)
		size = (size_t)(f->size - off);
	if (f->whole && f->size <= SMALL_BLOB) {
		r = small_blob(rd, f, err, errlen);
		if (r < 0)
			return r;
		if (off >= rd->blob_len)
			return 0;
		size = size < rd->blob_len - off ? size : (size_t)(rd->blob_len - off);
		memcpy(buf, (uint8_t *)rd->blob + off, size);
		return (ssize_t)size;
	}
	if (!f->whole) {
		/* A tar layer pulled before is read from its checked local copy. */
		uint64_t ino = layer_cached(rd->m, f->digest);

		if (ino) {
			struct cas_file *cf = NULL;
			struct cas_fault fault;
			ssize_t got = cas_file_open(st, ino, &cf);

			if (got == 0)
				got = cas_file_read(st, cf, buf, size, f->off + off, &fault);
			cas_file_free(cf);
			return got < 0 ? -EIO : got;
		}
	}
	{
		struct oci_range rg = { .digest = f->digest, .off = f->off + off,
					.len = size, .buf = buf, .size = f->blob_size };

		x = rd->x ? rd->x : reader_xfer(xl, rd, "read", f->size);
		r = oci_fetch_ranges(rd->m->c, rd->m->repo, &rg, 1, NULL, NULL,
				     x ? &x->done : NULL, err, errlen);
	}
	if (r < 0) {
		if (!*err)
			snprintf(err, errlen, "%s", strerror(-r));
		return -EIO;
	}
	return (ssize_t)size;
}

ssize_t pull_read(struct cas_store *st, struct xfer_list *xl,
		  struct pull_reader *rd, void *buf, size_t size, uint64_t off,
		  char *err, size_t errlen)
{
	return rd->m->m ? read_smip(st, xl, rd, buf, size, off, err, errlen)
			: read_layer(st, xl, rd, buf, size, off, err, errlen);
}

/* ---- pulls: copy_file_range into a store writer ------------------------- */

struct sink {
	struct cas_writer *w;
	uint64_t skip, left, pos, seen;
};

static int sink_write(void *arg, const void *buf, size_t len)
{
	struct sink *s = arg;
	const uint8_t *p = buf;
	int r;

	s->seen += len;
	if (s->skip) {
		size_t k = len < s->skip ? len : (size_t)s->skip;

		s->skip -= k;
		p += k;
		len -= k;
	}
	if (len > s->left)
		len = (size_t)s->left;
	if (!len)
		return 0;
	r = cas_writer_write(s->w, p, len, s->pos);
	s->pos += len;
	s->left -= len;
	return r;
}

/* Streams blob f into s's writer, counted on a new pull transfer of rd. */
static int stream_blob(struct xfer_list *xl, struct pull_reader *rd,
		       const struct layout_file *f, struct sink *s, uint64_t total,
		       char *err, size_t errlen)
{
	struct xfer *x;
	int r;

	x = xfer_start(xl, "pull", rd->m->remote, rd->m->repo, rd->m->tag, rd->path,
		       total);
	r = oci_blob_stream(rd->m->c, rd->m->repo, f->digest, 0, UINT64_MAX,
			    sink_write, s, x ? &x->done : NULL, err, errlen);
	if (r == 0 && s->seen != f->blob_size) {
		snprintf(err, errlen, "the blob has %llu bytes, the manifest says %llu",
			 (unsigned long long)s->seen, (unsigned long long)f->blob_size);
		r = -EIO;
	}
	xfer_end(xl, x, r, err);
	return r;
}

/*
 * The local copy of a tar layer (an orphan inode of the store): fetched
 * whole the first time a member is pulled, committed only if its size is
 * the manifest's and its SHA-256 checks, kept for the model's lifetime.
 * No lock is held while it downloads; two readers that race fetch it
 * twice and the second copy is dropped.
 */
static int layer_local(struct cas_store *st, struct xfer_list *xl,
		       struct pull_reader *rd, const struct layout_file *f,
		       uint64_t *ret_ino, char *err, size_t errlen)
{
	struct reg_model *m = rd->m;
	struct cas_writer *w = NULL;
	struct pull_layer *v;
	uint64_t ino = layer_cached(m, f->digest), have;
	int r;

	if (ino) {
		*ret_ino = ino;
		return 0;
	}
	r = cas_store_orphan_create(st, S_IFREG | 0600, getuid(), getgid(), NULL, &ino);
	if (r == 0)
		r = cas_writer_open(st, ino, 1, &w);
	if (r == 0) {
		struct sink sk = { w, 0, f->blob_size, 0, 0 };

		r = stream_blob(xl, rd, f, &sk, f->blob_size, err, errlen);
		if (r == 0)
			r = cas_writer_commit(w);
	}
	if (w)
		cas_writer_free(w);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&m->lock);
	for (have = 0, v = m->lc; v < m->lc + m->nlc && !have; v++)
		if (!strcmp(v->digest, f->digest))
			have = v->ino;
	v = have ? NULL : realloc(m->lc, (m->nlc + 1) * sizeof(*v));
	if (v) {
		m->lc = v;
		snprintf(v[m->nlc].digest, sizeof(v[m->nlc].digest), "%s", f->digest);
		v[m->nlc++].ino = ino;
	}
	pthread_mutex_unlock(&m->lock);
	if (!v) {
		cas_release_orphan(st, ino);
		if (!have)
			return -ENOMEM;
		ino = have;
	}
	*ret_ino = ino;
	return 0;
fail:
	if (ino)
		cas_release_orphan(st, ino);
	if (!*err)
		snprintf(err, errlen, "%s", strerror(-r));
	return -EIO;
}

/* A member of a tar layer: copied out of the layer's local copy. */
static ssize_t copy_member(struct cas_store *st, struct xfer_list *xl,
			   struct pull_reader *rd, const struct layout_file *f,
			   struct cas_writer *w, char *err, size_t errlen)
{
	const size_t step = 4u << 20;
	struct cas_file *cf = NULL;
	struct cas_fault fault;
	uint64_t ino, done = 0;
	uint8_t *buf = NULL;
	int r = layer_local(st, xl, rd, f, &ino, err, errlen);

	if (r == 0)
		r = cas_file_open(st, ino, &cf);
	if (r == 0 && !(buf = malloc(step)))
		r = -ENOMEM;
	while (r == 0 && done < f->size) {
		size_t want = f->size - done < step ? (size_t)(f->size - done) : step;
		ssize_t got = cas_file_read(st, cf, buf, want, f->off + done, &fault);

		r = got == (ssize_t)want ? cas_writer_write(w, buf, want, done)
					 : (got < 0 ? (int)got : -EIO);
		done += want;
	}
	free(buf);
	cas_file_free(cf);
	if (r < 0) {
		cas_writer_abort(w, -EIO);
		return r == -ENOMEM ? r : -EIO;
	}
	return (ssize_t)f->size;
}

/* A whole layer: streamed, and committed only if its digest matches. */
static ssize_t copy_layer(struct cas_store *st, struct xfer_list *xl,
			  struct pull_reader *rd, uint64_t off_in, size_t len,
			  struct cas_writer *w, uint64_t off_out, char *err,
			  size_t errlen)
{
	const struct layout_file *f = &rd->m->l->files[rd->idx];
	struct sink s = { w, f->off, f->size, off_out, 0 };
	int r;

	if (off_in || off_out || len < f->size || cas_writer_size(w))
		return 0;
	if (!f->whole)
		return copy_member(st, xl, rd, f, w, err, errlen);
	r = stream_blob(xl, rd, f, &s, f->size, err, errlen);
	if (r < 0) {
		if (!*err)
			snprintf(err, errlen, "%s", strerror(-r));
		cas_writer_abort(w, -EIO);
		return -EIO;
	}
	return (ssize_t)f->size;
}

/* Chunks [i, j) of f, by id, onto the writer. */
static int append_chunks(struct cas_writer *w, const struct smip_model *m,
			 const struct smip_rfile *f, size_t i, size_t j)
{
	struct cas_id *ids = malloc((j - i) * sizeof(*ids));
	uint32_t *lens = malloc((j - i) * sizeof(*lens));
	size_t k;
	int r = -ENOMEM;

	if (ids && lens) {
		for (k = i; k < j; k++) {
			ids[k - i] = m->chunks[f->chunks[k]].id;
			lens[k - i] = (uint32_t)(f->offs[k + 1] - f->offs[k]);
		}
		r = cas_writer_append(w, ids, lens, j - i,
				      i == 0 && j == f->nchunks && f->has_sha ? f->sha : NULL);
	}
	free(ids);
	free(lens);
	return r;
}

ssize_t pull_copy(struct cas_store *st, struct xfer_list *xl,
		  struct pull_reader *rd, uint64_t off_in, size_t len,
		  struct cas_writer *w, uint64_t off_out, char *err,
		  size_t errlen)
{
	const struct smip_rfile *f;
	size_t i, j;
	int r;

	if (!rd->m->m)
		return copy_layer(st, xl, rd, off_in, len, w, off_out, err, errlen);
	f = &rd->m->m->files[rd->idx];
	if (off_in > f->size)
		return 0;
	i = chunk_at(f, off_in);
	if (f->offs[i] != off_in || i >= f->nchunks)
		return 0;
	for (j = i; j < f->nchunks && f->offs[j + 1] - off_in <= len; j++)
		;
	if (j == i)
		return 0;
	r = smip_need(st, xl, rd, i, j, "pull", err, errlen);
	if (r < 0)
		return r;
	r = append_chunks(w, rd->m->m, f, i, j);
	if (rd->x) {
		xfer_end(xl, rd->x, r == -EAGAIN ? 0 : r, NULL);
		rd->x = NULL;
	}
	if (r == -EAGAIN)
		return 0;
	return r < 0 ? r : (ssize_t)(f->offs[j] - off_in);
}
