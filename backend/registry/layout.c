/*
 * layout.c - model layouts on registries: manifests to file lists and back.
 *
 * layout_parse() reads a manifest in four steps: the envelope (schema
 * version, media type, config and layer descriptors, all checked), the
 * layout (SMIP, ModelPack, Docker, Ollama: by artifactType, config media
 * type, then layer media types), the files (named as docs/layouts.md
 * tabulates; tar layers listed member by member through the fetch
 * callback), and a last pass over the whole list (config.json added where
 * free, duplicate paths and file/directory clashes refused).
 *
 * Nothing here trusts the manifest or the blobs: every size is checked
 * against 2^53 and against the blob it lies in, every path against
 * layout_path_valid(), every tar header by its checksum, and every loop is
 * bounded by LAYOUT_MAX_FILES.
 */
#include "backend/registry/layout.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/hex.h"
#include "common/utf8.h"

/* The largest integer a JSON number carries exactly (IEEE double). */
#define JSON_INT_MAX (1ull << 53)

#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OLLAMA "application/vnd.ollama.image."
#define MT_DOCKER_AI "application/vnd.docker.ai."
#define MT_DOCKER_CONFIG "application/vnd.docker.ai.model.config"
#define MT_CNCF "application/vnd.cncf.model."
#define MT_CNAI "application/vnd.cnai.model." /* the spec's first prefix */

#define ANN_FILEPATH "org.cncf.model.filepath"
#define ANN_FILEPATH_CNAI "org.cnai.model.filepath" /* before the CNCF move */
#define ANN_METADATA "org.cncf.model.file.metadata+json"
#define ANN_TITLE "org.opencontainers.image.title"

#define TAR_BLOCK 512u
#define TAR_PAX_MAX (64u << 10)
#define TAR_MAX_HEADERS (4u * LAYOUT_MAX_FILES)

/* One parse: the result being built and where its errors go. */
struct lp {
	struct layout *l;
	size_t fcap;
	layout_fetch_fn fetch;
	void *arg;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 4, 5)))
static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

#define FAIL(p, rc, ...) errf((p)->err, (p)->errlen, (rc), __VA_ARGS__)

/* A printable, bounded copy of hostile text for error messages. */
static const char *shown(char buf[96], const char *s, size_t n)
{
	size_t i, j = 0;

	for (i = 0; i < n && s[i] && j < 80; i++)
		buf[j++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	if (i < n && s[i] && j == 80) {
		memcpy(buf + j, "...", 3);
		j += 3;
	}
	buf[j] = '\0';
	return buf;
}

/* Does the media type mt, parameters (";...") aside, equal want? */
static int mt_is(const char *mt, const char *want)
{
	size_t n = strlen(want);

	if (strncmp(mt, want, n) != 0)
		return 0;
	mt += n;
	while (*mt == ' ')
		mt++;
	return *mt == '\0' || *mt == ';';
}

static int has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int layout_path_valid(const char *path)
{
	const char *c, *start;
	size_t len;

	if (!path || !*path || *path == '/')
		return 0;
	len = strnlen(path, PATH_MAX);
	if (len >= PATH_MAX)
		return 0;
	for (start = c = path;; c++) {
		if (*c == '/' || *c == '\0') {
			size_t n = (size_t)(c - start);

			if (n == 0 || n > NAME_MAX || (n == 1 && start[0] == '.') ||
			    (n == 2 && start[0] == '.' && start[1] == '.'))
				return 0;
			if (*c == '\0')
				return 1;
			start = c + 1;
		} else if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			return 0;
		}
	}
}

/* ---- the envelope ---- */

static int get_size(json_t *v, uint64_t *ret)
{
	json_int_t n;

	if (!json_is_integer(v))
		return -EINVAL;
	n = json_integer_value(v);
	if (n < 0 || (uint64_t)n > JSON_INT_MAX)
		return -EINVAL;
	*ret = (uint64_t)n;
	return 0;
}

static int parse_desc(struct lp *p, json_t *o, const char *what,
		      struct layout_desc *d)
{
	json_t *mt = json_object_get(o, "mediaType");
	json_t *dg = json_object_get(o, "digest");
	char b[96];

	if (!json_is_object(o))
		return FAIL(p, -EINVAL, "%s is not an object", what);
	if (!json_is_string(mt))
		return FAIL(p, -EINVAL, "%s has no mediaType", what);
	if (json_string_length(mt) >= sizeof(d->media_type) ||
	    strlen(json_string_value(mt)) != json_string_length(mt))
		return FAIL(p, -EINVAL, "%s: media type too long", what);
	if (!json_is_string(dg))
		return FAIL(p, -EINVAL, "%s has no digest", what);
	if (!digest_valid(json_string_value(dg)))
		return FAIL(p, -EINVAL, "%s: digest \"%s\" is not sha256:<64 hex>",
			    what, shown(b, json_string_value(dg), 200));
	if (!json_object_get(o, "size"))
		return FAIL(p, -EINVAL, "%s has no size", what);
	if (get_size(json_object_get(o, "size"), &d->size) < 0)
		return FAIL(p, -EINVAL, "%s: size is not an integer in [0, 2^53]",
			    what);
	memcpy(d->media_type, json_string_value(mt), json_string_length(mt) + 1);
	memcpy(d->digest, json_string_value(dg), json_string_length(dg) + 1);
	return 0;
}

/* The annotation key of layer i, NULL when absent. */
static int annot(struct lp *p, json_t *layer, size_t i, const char *key,
		 const char **ret)
{
	json_t *a = json_object_get(layer, "annotations"), *v;

	*ret = NULL;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_object(a))
		return FAIL(p, -EINVAL, "layer %zu: annotations is not an object", i);
	v = json_object_get(a, key);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return FAIL(p, -EINVAL, "layer %zu: annotation %s is not a string",
			    i, key);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return FAIL(p, -EINVAL, "layer %zu: annotation %s holds a NUL", i, key);
	*ret = json_string_value(v);
	return 0;
}

/* ---- the file list ---- */

static int add_file(struct lp *p, const char *path, size_t pathlen,
		    const struct layout_desc *blob, uint64_t off, uint64_t size,
		    uint32_t mode, int whole)
{
	struct layout *l = p->l;
	struct layout_file *f;
	char b[96];
	char *copy;

	if (pathlen >= PATH_MAX || memchr(path, '\0', pathlen))
		return FAIL(p, -EINVAL, "path \"%s\" is too long or holds a NUL",
			    shown(b, path, pathlen));
	copy = strndup(path, pathlen);
	if (!copy)
		return -ENOMEM;
	if (!layout_path_valid(copy)) {
		FAIL(p, -EINVAL, "unsafe path \"%s\" (absolute, empty, \".\" or "
		     "\"..\" component, control character or too long)",
		     shown(b, copy, pathlen));
		free(copy);
		return -EINVAL;
	}
	if (l->nfiles >= LAYOUT_MAX_FILES) {
		free(copy);
		return FAIL(p, -EFBIG, "more than %d files", LAYOUT_MAX_FILES);
	}
	if (l->nfiles == p->fcap) {
		size_t cap = p->fcap ? p->fcap * 2 : 16;

		f = realloc(l->files, cap * sizeof(*f));
		if (!f) {
			free(copy);
			return -ENOMEM;
		}
		l->files = f;
		p->fcap = cap;
	}
	f = &l->files[l->nfiles++];
	memset(f, 0, sizeof(*f));
	f->path = copy;
	memcpy(f->digest, blob->digest, sizeof(f->digest));
	memcpy(f->media_type, blob->media_type, sizeof(f->media_type));
	f->blob_size = blob->size;
	f->off = off;
	f->size = size;
	f->mode = mode;
	f->whole = whole;
	return 0;
}

static int add_whole(struct lp *p, const char *path, const struct layout_desc *d,
		     uint32_t mode)
{
	return add_file(p, path, strlen(path), d, 0, d->size, mode, 1);
}

/* base[-N].ext: the name of the i-th (from 1) of n layers of one kind. */
static void numbered(char *out, size_t outlen, const char *base,
		     const char *ext, size_t i, size_t n)
{
	if (n <= 1)
		snprintf(out, outlen, "%s%s", base, ext);
	else
		snprintf(out, outlen, "%s-%zu%s", base, i, ext);
}

/* ---- tar layers ---- */

/* A numeric tar field: octal (NUL or space terminated), or GNU base-256. */
static int tar_num(const unsigned char *f, size_t n, uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {
		if (f[0] != 0x80)
			return -EINVAL; /* negative, or past 64 bits */
		for (i = 1; i < n; i++) {
			if (v >> 56)
				return -EINVAL;
			v = v << 8 | f[i];
		}
		*ret = v;
		return 0;
	}
	while (i < n && f[i] == ' ')
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 61)
			return -EINVAL;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return -EINVAL;
	*ret = v;
	return 0;
}

static int tar_sum_ok(const unsigned char *h)
{
	uint64_t want;
	unsigned long u = 0;
	long s = 0;
	size_t i;

	if (tar_num(h + 148, 8, &want) < 0)
		return 0;
	for (i = 0; i < TAR_BLOCK; i++) {
		unsigned char c = i >= 148 && i < 156 ? ' ' : h[i];

		u += c;
		s += (signed char)c;
	}
	return want == u || (s >= 0 && want == (uint64_t)s);
}

/* The state of one tar walk: pending long names and pax records. */
struct tar_walk {
	const struct layout_desc *d;
	const char *dir;     /* where the members go, NULL: the root */
	char *longname;      /* from a GNU 'L' entry */
	char *paxpath;       /* from a pax 'x' entry */
	uint64_t paxsize;
	int has_paxsize;
	int sparse;
};

static void tar_walk_reset(struct tar_walk *w)
{
	free(w->longname);
	free(w->paxpath);
	w->longname = w->paxpath = NULL;
	w->has_paxsize = w->sparse = 0;
}

static int tar_fetch(struct lp *p, const struct layout_desc *d, uint64_t off,
		     size_t len, void *buf)
{
	int rc = p->fetch(p->arg, d->digest, off, len, buf);

	if (rc < 0)
		return FAIL(p, rc, "reading %zu bytes at %llu of %s: %s", len,
			    (unsigned long long)off, d->digest, strerror(-rc));
	return 0;
}

/* Bytes [off, off + size) into a NUL-terminated buffer of at most max. */
static int tar_read_data(struct lp *p, const struct layout_desc *d,
			 uint64_t off, uint64_t size, uint64_t max,
			 const char *what, char **ret)
{
	char *buf;
	int rc;

	if (size > max)
		return FAIL(p, -EINVAL, "tar in %s: %s entry of %llu bytes (at most %llu)",
			    d->digest, what, (unsigned long long)size,
			    (unsigned long long)max);
	buf = malloc(size + 1);
	if (!buf)
		return -ENOMEM;
	rc = tar_fetch(p, d, off, size, buf);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[size] = '\0';
	*ret = buf;
	return 0;
}

/* Records "LEN key=value\n" of a pax extended header. */
static int tar_pax(struct lp *p, struct tar_walk *w, const char *rec, size_t n)
{
	size_t at = 0;

	while (at < n) {
		const char *r = rec + at, *key, *eq, *val;
		size_t len = 0, i = 0, vlen;

		while (i < n - at && r[i] >= '0' && r[i] <= '9' && i < 8)
			len = len * 10 + (size_t)(r[i++] - '0');
		if (i == 0 || i >= n - at || r[i] != ' ' || len <= i + 1 ||
		    len > n - at || r[len - 1] != '\n')
			return FAIL(p, -EINVAL, "tar in %s: malformed pax record",
				    w->d->digest);
		key = r + i + 1;
		eq = memchr(key, '=', (size_t)(r + len - 1 - key));
		if (!eq)
			return FAIL(p, -EINVAL, "tar in %s: pax record without '='",
				    w->d->digest);
		val = eq + 1;
		vlen = (size_t)(r + len - 1 - val);
		if ((size_t)(eq - key) == 4 && memcmp(key, "path", 4) == 0) {
			free(w->paxpath);
			w->paxpath = strndup(val, vlen);
			if (!w->paxpath)
				return -ENOMEM;
			if (strlen(w->paxpath) != vlen)
				return FAIL(p, -EINVAL, "tar in %s: pax path holds a NUL",
					    w->d->digest);
		} else if ((size_t)(eq - key) == 4 && memcmp(key, "size", 4) == 0) {
			uint64_t v = 0;
			size_t k;

			if (vlen == 0 || vlen > 19)
				return FAIL(p, -EINVAL, "tar in %s: bad pax size",
					    w->d->digest);
			for (k = 0; k < vlen; k++) {
				if (val[k] < '0' || val[k] > '9')
					return FAIL(p, -EINVAL, "tar in %s: bad pax size",
						    w->d->digest);
				v = v * 10 + (uint64_t)(val[k] - '0');
			}
			w->paxsize = v;
			w->has_paxsize = 1;
		} else if ((size_t)(eq - key) > 10 && memcmp(key, "GNU.sparse", 10) == 0) {
			w->sparse = 1;
		}
		at += len;
	}
	return 0;
}

/* The member's path: long name, pax path, or ustar prefix/name. */
static int tar_name(struct tar_walk *w, const unsigned char *h, char *buf,
		    size_t buflen, const char **ret, size_t *ret_len)
{
	size_t nl = strnlen((const char *)h, 100);

	if (w->paxpath) {
		*ret = w->paxpath;
		*ret_len = strlen(w->paxpath);
	} else if (w->longname) {
		*ret = w->longname;
		*ret_len = strlen(w->longname);
	} else if (memcmp(h + 257, "ustar\0", 6) == 0 && h[345]) {
		size_t pl = strnlen((const char *)h + 345, 155);

		if (pl + 1 + nl >= buflen)
			return -EINVAL;
		memcpy(buf, h + 345, pl);
		buf[pl] = '/';
		memcpy(buf + pl + 1, h, nl);
		buf[pl + 1 + nl] = '\0';
		*ret = buf;
		*ret_len = pl + 1 + nl;
	} else {
		memcpy(buf, h, nl);
		buf[nl] = '\0';
		*ret = buf;
		*ret_len = nl;
	}
	/* "./a" (tar -C dir .) is "a"; directories end in '/'. */
	while (*ret_len >= 2 && (*ret)[0] == '.' && (*ret)[1] == '/') {
		*ret += 2;
		*ret_len -= 2;
	}
	return 0;
}

static int tar_member(struct lp *p, struct tar_walk *w, const unsigned char *h,
		      uint64_t data_off, uint64_t size)
{
	char buf[100 + 1 + 155 + 1], b[96];
	const char *name;
	size_t n;
	uint64_t mode;
	char type = (char)h[156];
	int dir = type == '5';

	if (tar_name(w, h, buf, sizeof(buf), &name, &n) < 0)
		return FAIL(p, -EINVAL, "tar in %s: bad member name", w->d->digest);
	if ((type == '0' || type == '\0' || type == '7') && n && name[n - 1] == '/')
		dir = 1;
	if (dir) {
		while (n && name[n - 1] == '/')
			n--;
		if (n == 0 || (n == 1 && name[0] == '.'))
			return 0;
		if (n >= PATH_MAX)
			return FAIL(p, -EINVAL, "tar in %s: directory name too long",
				    w->d->digest);
		{
			char *d = strndup(name, n);
			int ok;

			if (!d)
				return -ENOMEM;
			ok = layout_path_valid(d);
			free(d);
			if (!ok)
				return FAIL(p, -EINVAL, "tar in %s: unsafe directory \"%s\"",
					    w->d->digest, shown(b, name, n));
		}
		return 0;
	}
	if (!(type == '0' || type == '\0' || type == '7') || w->sparse)
		return 0; /* links, devices, fifos, sparse files: not listed */
	if (tar_num(h + 100, 8, &mode) < 0)
		return FAIL(p, -EINVAL, "tar in %s: bad mode of \"%s\"", w->d->digest,
			    shown(b, name, n));
	if (w->dir) {
		size_t dl = strlen(w->dir);
		char *full;
		int rc;

		if (n >= PATH_MAX || dl >= PATH_MAX)
			return FAIL(p, -EINVAL, "tar in %s: path too long", w->d->digest);
		full = malloc(dl + 1 + n + 1);
		if (!full)
			return -ENOMEM;
		memcpy(full, w->dir, dl);
		full[dl] = '/';
		memcpy(full + dl + 1, name, n);
		full[dl + 1 + n] = '\0';
		rc = add_file(p, full, dl + 1 + n, w->d, data_off, size,
			      (uint32_t)(mode & 0777), 0);
		free(full);
		return rc;
	}
	return add_file(p, name, n, w->d, data_off, size, (uint32_t)(mode & 0777), 0);
}

/* Lists the regular files of tar layer d, under dir (NULL: the root). */
static int tar_list(struct lp *p, const struct layout_desc *d, const char *dir)
{
	struct tar_walk w = { .d = d, .dir = dir };
	unsigned char h[TAR_BLOCK];
	uint64_t off = 0, size, headers = 0;
	int rc = 0;

	if (!p->fetch)
		return FAIL(p, -EAGAIN, "layer %s is a tar: its headers need a fetch",
			    d->digest);
	while (off < d->size) {
		uint64_t data_off, skip;
		char type;
		size_t i;

		if (d->size - off < TAR_BLOCK) {
			rc = FAIL(p, -EINVAL, "tar in %s: truncated header at %llu",
				  d->digest, (unsigned long long)off);
			goto out;
		}
		if (++headers > TAR_MAX_HEADERS) {
			rc = FAIL(p, -EFBIG, "tar in %s: more than %u headers",
				  d->digest, TAR_MAX_HEADERS);
			goto out;
		}
		rc = tar_fetch(p, d, off, TAR_BLOCK, h);
		if (rc < 0)
			goto out;
		if (off == 0 && ((h[0] == 0x1f && h[1] == 0x8b) ||
				 (h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f &&
				  h[3] == 0xfd))) {
			rc = FAIL(p, -EINVAL, "layer %s is compressed though its "
				  "media type says tar", d->digest);
			goto out;
		}
		for (i = 0; i < TAR_BLOCK && !h[i]; i++)
			;
		if (i == TAR_BLOCK) {
			/*
			 * The end-of-archive blocks.  The members were all
			 * checked against the declared size; the blob must
			 * also be that long, or that size is a lie (reads of
			 * the padding would fail, a pull would not match).
			 * One more block read, from the declared end.
			 */
			if (d->size - off > TAR_BLOCK) {
				uint64_t last = d->size - TAR_BLOCK;

				rc = p->fetch(p->arg, d->digest, last, TAR_BLOCK, h);
				if (rc < 0) {
					rc = FAIL(p, rc == -ERANGE ? -EINVAL : rc,
						  "tar in %s: no block at %llu, though "
						  "the manifest says %llu bytes (%s)",
						  d->digest, (unsigned long long)last,
						  (unsigned long long)d->size,
						  strerror(-rc));
					goto out;
				}
			}
			break;
		}
		if (!tar_sum_ok(h)) {
			rc = FAIL(p, -EINVAL, "tar in %s: bad header checksum at %llu",
				  d->digest, (unsigned long long)off);
			goto out;
		}
		if (tar_num(h + 124, 12, &size) < 0) {
			rc = FAIL(p, -EINVAL, "tar in %s: bad size field at %llu",
				  d->digest, (unsigned long long)off);
			goto out;
		}
		type = (char)h[156];
		if (w.has_paxsize && type != 'x' && type != 'L' && type != 'g')
			size = w.paxsize;
		/* Header-only types carry no data, whatever their size says. */
		if (type == '1' || type == '2' || type == '3' || type == '4' ||
		    type == '5' || type == '6')
			size = 0;
		data_off = off + TAR_BLOCK;
		if (size > d->size - data_off) {
			rc = FAIL(p, -EINVAL, "tar in %s: member at %llu (%llu bytes) "
				  "runs past the blob (%llu bytes)", d->digest,
				  (unsigned long long)off, (unsigned long long)size,
				  (unsigned long long)d->size);
			goto out;
		}
		if (type == 'L') {
			char *name;

			rc = tar_read_data(p, d, data_off, size, PATH_MAX, "long name", &name);
			if (rc < 0)
				goto out;
			free(w.longname);
			w.longname = name;
		} else if (type == 'x') {
			char *rec;

			rc = tar_read_data(p, d, data_off, size, TAR_PAX_MAX, "pax", &rec);
			if (rc < 0)
				goto out;
			rc = tar_pax(p, &w, rec, (size_t)size);
			free(rec);
			if (rc < 0)
				goto out;
		} else if (type == 'K' || type == 'g') {
			/* link names and global pax records change no file name */
		} else {
			rc = tar_member(p, &w, h, data_off, size);
			tar_walk_reset(&w);
			if (rc < 0)
				goto out;
		}
		skip = (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
		if (skip > d->size - data_off) {
			rc = FAIL(p, -EINVAL, "tar in %s: member at %llu runs past the "
				  "blob (%llu bytes) with its padding", d->digest,
				  (unsigned long long)off, (unsigned long long)d->size);
			goto out;
		}
		off = data_off + skip;
	}
out:
	tar_walk_reset(&w);
	return rc;
}

/* ---- the layouts ---- */

/* Ollama: server/images.go names its layers by media type only. */
static const struct {
	const char *mt, *base, *ext;
} ollama_names[] = {
	{ MT_OLLAMA "model", "model", ".gguf" },
	{ MT_OLLAMA "adapter", "adapter", ".gguf" },
	{ MT_OLLAMA "projector", "projector", ".gguf" },
	{ MT_OLLAMA "template", "template", "" },
	{ MT_OLLAMA "system", "system", "" },
	{ MT_OLLAMA "params", "params", "" },
	{ MT_OLLAMA "license", "LICENSE", "" },
	{ MT_OLLAMA "messages", "messages", ".json" },
};
#define N_OLLAMA (sizeof(ollama_names) / sizeof(ollama_names[0]))

static int files_ollama(struct lp *p)
{
	struct layout *l = p->l;
	size_t count[N_OLLAMA] = { 0 }, seen[N_OLLAMA] = { 0 }, i, k;
	char name[64];
	int rc;

	for (i = 0; i < l->nlayers; i++)
		for (k = 0; k < N_OLLAMA; k++)
			if (mt_is(l->layers[i].media_type, ollama_names[k].mt))
				count[k]++;
	for (i = 0; i < l->nlayers; i++) {
		for (k = 0; k < N_OLLAMA; k++)
			if (mt_is(l->layers[i].media_type, ollama_names[k].mt))
				break;
		if (k == N_OLLAMA)
			continue; /* tensors, embeddings, ...: not files */
		numbered(name, sizeof(name), ollama_names[k].base, ollama_names[k].ext,
			 ++seen[k], count[k]);
		rc = add_whole(p, name, &l->layers[i], 0644);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Docker Model Runner: pkg/distribution/types/config.go for the media
 * types, pkg/distribution/internal/bundle/unpack.go for the names it
 * unpacks to when a layer carries no org.cncf.model.filepath (v0.2).
 */
static const struct {
	const char *mt, *base, *ext;
	int sharded; /* model-00001-of-00002.gguf rather than model-1.gguf */
} docker_names[] = {
	{ MT_DOCKER_AI "gguf.v3", "model", ".gguf", 1 },
	{ MT_DOCKER_AI "safetensors", "model", ".safetensors", 1 },
	{ MT_DOCKER_AI "dduf", "model", ".dduf", 0 },
	{ MT_DOCKER_AI "mmproj", "model", ".mmproj", 0 },
	{ MT_DOCKER_AI "chat.template.jinja", "template", ".jinja", 0 },
	{ MT_DOCKER_AI "license", "LICENSE", "", 0 },
};
#define N_DOCKER (sizeof(docker_names) / sizeof(docker_names[0]))

static int docker_is_tar(const char *mt)
{
	return mt_is(mt, MT_DOCKER_AI "dir.tar") ||
	       mt_is(mt, MT_DOCKER_AI "vllm.config.tar");
}

static int layer_name(struct lp *p, json_t *layer, size_t i, const char **ret)
{
	int rc = annot(p, layer, i, ANN_FILEPATH, ret);

	if (rc < 0 || *ret)
		return rc;
	rc = annot(p, layer, i, ANN_FILEPATH_CNAI, ret);
	if (rc < 0 || *ret)
		return rc;
	return annot(p, layer, i, ANN_TITLE, ret);
}

static int files_docker(struct lp *p, json_t *layers)
{
	struct layout *l = p->l;
	size_t count[N_DOCKER] = { 0 }, seen[N_DOCKER] = { 0 }, i, k;
	const char *named;
	char name[64];
	int rc;

	for (i = 0; i < l->nlayers; i++) {
		rc = layer_name(p, json_array_get(layers, i), i, &named);
		if (rc < 0)
			return rc;
		for (k = 0; !named && k < N_DOCKER; k++)
			if (mt_is(l->layers[i].media_type, docker_names[k].mt))
				count[k]++;
	}
	for (i = 0; i < l->nlayers; i++) {
		const struct layout_desc *d = &l->layers[i];

		if (docker_is_tar(d->media_type)) {
			/* bundle/unpack.go extracts these into the model's root */
			rc = tar_list(p, d, NULL);
			if (rc < 0)
				return rc;
			continue;
		}
		if (!has_prefix(d->media_type, MT_DOCKER_AI))
			continue;
		rc = layer_name(p, json_array_get(layers, i), i, &named);
		if (rc < 0)
			return rc;
		if (named) {
			rc = add_whole(p, named, d, 0644);
			if (rc < 0)
				return rc;
			continue;
		}
		for (k = 0; k < N_DOCKER; k++)
			if (mt_is(d->media_type, docker_names[k].mt))
				break;
		if (k == N_DOCKER)
			continue;
		seen[k]++;
		if (docker_names[k].sharded && count[k] > 1)
			snprintf(name, sizeof(name), "%s-%05zu-of-%05zu%s",
				 docker_names[k].base, seen[k], count[k],
				 docker_names[k].ext);
		else
			numbered(name, sizeof(name), docker_names[k].base,
				 docker_names[k].ext, seen[k], count[k]);
		rc = add_whole(p, name, d, 0644);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * ModelPack (specs-go/v1/mediatype.go): <prefix><kind>.v1.<format>, kinds
 * weight, weight.config, doc, code, dataset; formats raw, tar, tar+gzip,
 * tar+zstd.  Returns the format's index (0 raw, 1 tar, 2 gzip, 3 zstd) or
 * -1 when mt is not a ModelPack layer.
 */
static int modelpack_format(const char *mt)
{
	static const char *const kinds[] = { "weight", "weight.config", "doc",
					     "code", "dataset" };
	static const char *const formats[] = { "raw", "tar", "tar+gzip", "tar+zstd" };
	const char *rest;
	size_t k, f, n;

	if (has_prefix(mt, MT_CNCF))
		rest = mt + strlen(MT_CNCF);
	else if (has_prefix(mt, MT_CNAI))
		rest = mt + strlen(MT_CNAI);
	else
		return -1;
	for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		n = strlen(kinds[k]);
		if (strncmp(rest, kinds[k], n) != 0 || strncmp(rest + n, ".v1.", 4) != 0)
			continue;
		for (f = 0; f < sizeof(formats) / sizeof(formats[0]); f++)
			if (mt_is(rest + n + 4, formats[f]))
				return (int)f;
	}
	return -1;
}

/* The mode in org.cncf.model.file.metadata+json, if it parses. */
static uint32_t modelpack_mode(const char *meta)
{
	json_t *j, *m;
	uint32_t mode = 0644;

	if (!meta)
		return mode;
	j = json_loads(meta, JSON_REJECT_DUPLICATES, NULL);
	m = json_object_get(j, "mode");
	if (json_is_integer(m) && json_integer_value(m) >= 0)
		mode = (uint32_t)(json_integer_value(m) & 0777);
	json_decref(j);
	return mode;
}

/*
 * modctl writes a file's tar with the file's base name and extracts it into
 * the directory of its org.cncf.model.filepath (pkg/backend extract): the
 * members go under that directory.
 */
static int modelpack_tar(struct lp *p, const struct layout_desc *d,
			 json_t *layer, size_t i)
{
	const char *fp, *slash;
	char *dir;
	int rc;

	rc = annot(p, layer, i, ANN_FILEPATH, &fp);
	if (rc == 0 && !fp)
		rc = annot(p, layer, i, ANN_FILEPATH_CNAI, &fp);
	if (rc < 0)
		return rc;
	slash = fp ? strrchr(fp, '/') : NULL;
	if (!slash)
		return tar_list(p, d, NULL);
	dir = strndup(fp, (size_t)(slash - fp));
	if (!dir)
		return -ENOMEM;
	rc = tar_list(p, d, dir);
	free(dir);
	return rc;
}

static int files_modelpack(struct lp *p, json_t *layers)
{
	static const char *const exts[] = { "", "", ".tar.gz", ".tar.zst" };
	struct layout *l = p->l;
	const char *named, *meta;
	char name[PATH_MAX + 16], b[96];
	size_t i, n;
	int rc, fmt;

	for (i = 0; i < l->nlayers; i++) {
		const struct layout_desc *d = &l->layers[i];
		json_t *layer = json_array_get(layers, i);

		fmt = modelpack_format(d->media_type);
		if (fmt < 0)
			continue;
		rc = layer_name(p, layer, i, &named);
		if (rc < 0)
			return rc;
		if (fmt == 1) {
			rc = modelpack_tar(p, d, layer, i);
			if (rc < 0)
				return rc;
			continue;
		}
		if (rc == 0)
			rc = annot(p, layer, i, ANN_METADATA, &meta);
		if (rc < 0)
			return rc;
		if (!named)
			return FAIL(p, -EINVAL, "layer %zu (%s) has no %s or %s annotation",
				    i, shown(b, d->media_type, sizeof(d->media_type)),
				    ANN_FILEPATH, ANN_TITLE);
		if (fmt == 0) {
			rc = add_whole(p, named, d, modelpack_mode(meta));
		} else {
			n = strlen(named);
			if (n >= PATH_MAX)
				return FAIL(p, -EINVAL, "layer %zu: path too long", i);
			if (n >= strlen(exts[fmt]) &&
			    strcmp(named + n - strlen(exts[fmt]), exts[fmt]) == 0)
				snprintf(name, sizeof(name), "%s", named);
			else
				snprintf(name, sizeof(name), "%s%s", named, exts[fmt]);
			rc = add_whole(p, name, d, 0644);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- the last pass ---- */

static int cmp_path(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int config_json_taken(const struct layout *l)
{
	size_t i;

	for (i = 0; i < l->nfiles; i++)
		if (strcmp(l->files[i].path, "config.json") == 0 ||
		    strncmp(l->files[i].path, "config.json/", 12) == 0)
			return 1;
	return 0;
}

/* No path twice, and no path that is also another's directory. */
static int check_paths(struct lp *p)
{
	struct layout *l = p->l;
	char **v, b[96], dir[PATH_MAX];
	size_t i;
	int rc = 0;

	if (l->nfiles < 2)
		return 0;
	v = malloc(l->nfiles * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (i = 0; i < l->nfiles; i++)
		v[i] = l->files[i].path;
	qsort(v, l->nfiles, sizeof(*v), cmp_path);
	for (i = 1; i < l->nfiles; i++)
		if (strcmp(v[i - 1], v[i]) == 0) {
			rc = FAIL(p, -EINVAL, "duplicate path \"%s\"",
				  shown(b, v[i], PATH_MAX));
			goto out;
		}
	for (i = 0; i < l->nfiles; i++) {
		const char *s;

		for (s = strchr(v[i], '/'); s; s = strchr(s + 1, '/')) {
			char *key = dir;

			/* paths are under PATH_MAX (layout_path_valid) */
			memcpy(dir, v[i], (size_t)(s - v[i]));
			dir[s - v[i]] = '\0';
			if (bsearch(&key, v, l->nfiles, sizeof(*v), cmp_path)) {
				rc = FAIL(p, -EINVAL, "\"%s\" is both a file and a directory",
					  shown(b, dir, PATH_MAX));
				goto out;
			}
		}
	}
out:
	free(v);
	return rc;
}

/* ---- layout_parse ---- */

static int is_index(json_t *root, const char *mt)
{
	if (mt)
		return strcmp(mt, OCI_MT_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0;
	return json_object_get(root, "manifests") && !json_object_get(root, "layers");
}

static enum layout_kind detect(const struct layout *l, const char *artifact)
{
	size_t i;

	if ((artifact && strcmp(artifact, SMIP_ARTIFACT_TYPE) == 0) ||
	    mt_is(l->config.media_type, SMIP_MT_CONFIG))
		return LAYOUT_SMIP;
	if ((artifact && strcmp(artifact, MODELPACK_ARTIFACT_TYPE) == 0) ||
	    mt_is(l->config.media_type, MODELPACK_MT_CONFIG))
		return LAYOUT_MODELPACK;
	if (has_prefix(l->config.media_type, MT_DOCKER_CONFIG))
		return LAYOUT_DOCKER;
	for (i = 0; i < l->nlayers; i++) {
		const char *mt = l->layers[i].media_type;

		if (has_prefix(mt, MT_OLLAMA))
			return LAYOUT_OLLAMA;
		if (has_prefix(mt, MT_DOCKER_AI))
			return LAYOUT_DOCKER;
		if (modelpack_format(mt) >= 0)
			return LAYOUT_MODELPACK;
	}
	return 0;
}

static int parse_envelope(struct lp *p, json_t *root, json_t **ret_layers,
			  const char **ret_artifact)
{
	struct layout *l = p->l;
	json_t *sv, *mt, *layers, *at;
	const char *mts = NULL;
	char b[96];
	size_t i;
	int rc;

	if (!json_is_object(root))
		return FAIL(p, -EINVAL, "manifest is not a JSON object");
	mt = json_object_get(root, "mediaType");
	if (mt && !json_is_string(mt))
		return FAIL(p, -EINVAL, "mediaType is not a string");
	if (mt)
		mts = json_string_value(mt);
	sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2)
		return FAIL(p, -EINVAL, "schemaVersion is not 2");
	if (is_index(root, mts))
		return FAIL(p, -ENOTSUP, "an index: pick a platform manifest");
	if (mts && strcmp(mts, OCI_MT_MANIFEST) != 0 &&
	    strcmp(mts, OCI_MT_DOCKER_MANIFEST) != 0)
		return FAIL(p, -ENOTSUP, "manifest media type \"%s\" is not an image "
			    "manifest", shown(b, mts, 200));
	at = json_object_get(root, "artifactType");
	if (at && !json_is_string(at))
		return FAIL(p, -EINVAL, "artifactType is not a string");
	*ret_artifact = at ? json_string_value(at) : NULL;
	if (!json_object_get(root, "config"))
		return FAIL(p, -EINVAL, "manifest has no config");
	rc = parse_desc(p, json_object_get(root, "config"), "config", &l->config);
	if (rc < 0)
		return rc;
	layers = json_object_get(root, "layers");
	if (!json_is_array(layers))
		return FAIL(p, -EINVAL, "manifest has no layers array");
	if (json_array_size(layers) > LAYOUT_MAX_FILES)
		return FAIL(p, -EFBIG, "more than %d layers", LAYOUT_MAX_FILES);
	if (json_array_size(layers)) {
		l->layers = calloc(json_array_size(layers), sizeof(*l->layers));
		if (!l->layers)
			return -ENOMEM;
	}
	for (i = 0; i < json_array_size(layers); i++) {
		char what[32];

		snprintf(what, sizeof(what), "layer %zu", i);
		rc = parse_desc(p, json_array_get(layers, i), what, &l->layers[i]);
		if (rc < 0)
			return rc;
		l->nlayers++;
	}
	*ret_layers = layers;
	return 0;
}

int layout_parse(const char *manifest, size_t len, layout_fetch_fn fetch,
		 void *arg, struct layout **ret, char *err, size_t errlen)
{
	struct lp p = { .fetch = fetch, .arg = arg, .err = err, .errlen = errlen };
	json_t *root = NULL, *layers = NULL;
	const char *artifact = NULL;
	json_error_t jerr;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!manifest || !ret)
		return errf(err, errlen, -EINVAL, "no manifest");
	if (len > OCI_MANIFEST_MAX)
		return errf(err, errlen, -EFBIG, "manifest of %zu bytes (at most %u)",
			    len, OCI_MANIFEST_MAX);
	p.l = calloc(1, sizeof(*p.l));
	if (!p.l)
		return -ENOMEM;
	root = json_loadb(manifest, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char b[96];

		/* jansson quotes the input near the error: keep it one line */
		rc = FAIL(&p, -EINVAL, "manifest is not JSON: %s (line %d)",
			  shown(b, jerr.text, sizeof(jerr.text)), jerr.line);
		goto out;
	}
	rc = parse_envelope(&p, root, &layers, &artifact);
	if (rc < 0)
		goto out;
	p.l->kind = detect(p.l, artifact);
	switch (p.l->kind) {
	case LAYOUT_SMIP:
		goto out;
	case LAYOUT_OLLAMA:
		rc = files_ollama(&p);
		break;
	case LAYOUT_DOCKER:
		rc = files_docker(&p, layers);
		break;
	case LAYOUT_MODELPACK:
		rc = files_modelpack(&p, layers);
		break;
	default:
		rc = FAIL(&p, -ENOTSUP, "no model layers (a container image?)");
		goto out;
	}
	if (rc < 0)
		goto out;
	if (strcmp(p.l->config.media_type, OCI_MT_EMPTY) != 0 &&
	    !config_json_taken(p.l)) {
		rc = add_whole(&p, "config.json", &p.l->config, 0644);
		if (rc < 0)
			goto out;
	}
	rc = check_paths(&p);
out:
	json_decref(root);
	if (rc < 0) {
		layout_free(p.l);
		return rc;
	}
	*ret = p.l;
	return 0;
}

void layout_free(struct layout *l)
{
	size_t i;

	if (!l)
		return;
	for (i = 0; i < l->nfiles; i++)
		free(l->files[i].path);
	free(l->files);
	free(l->layers);
	free(l);
}

/* ---- layout_modelpack_build ---- */

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* The ModelPack media type of a file, by its name (docs/layouts.md). */
static const char *modelpack_media_type(const char *path)
{
	static const char *const weights[] = { ".gguf", ".safetensors", ".bin",
		".pt", ".pth", ".onnx", ".ckpt", ".h5", ".msgpack", ".dduf" };
	static const char *const docs[] = { ".md", ".rst" };
	static const char *const code[] = { ".py", ".sh", ".ipynb" };
	const char *b = base_name(path);
	size_t i;

	for (i = 0; i < sizeof(weights) / sizeof(weights[0]); i++)
		if (ends_with(b, weights[i]))
			return MT_CNCF "weight.v1.raw";
	if (strncasecmp(b, "README", 6) == 0 || strncasecmp(b, "LICENSE", 7) == 0 ||
	    strncasecmp(b, "NOTICE", 6) == 0)
		return MT_CNCF "doc.v1.raw";
	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		if (ends_with(b, docs[i]))
			return MT_CNCF "doc.v1.raw";
	for (i = 0; i < sizeof(code) / sizeof(code[0]); i++)
		if (ends_with(b, code[i]))
			return MT_CNCF "code.v1.raw";
	/* config.json, tokenizer*, *.model, templates, params: all that
	 * configures the weights, and what is unknown. */
	return MT_CNCF "weight.config.v1.raw";
}

static const char *modelpack_guess_format(const struct layout_put_file *f,
					  size_t n)
{
	static const struct {
		const char *ext, *format;
	} by_ext[] = {
		{ ".gguf", "gguf" }, { ".safetensors", "safetensors" },
		{ ".onnx", "onnx" }, { ".pt", "pytorch" }, { ".pth", "pytorch" },
		{ ".bin", "pytorch" },
	};
	size_t e, i;

	for (e = 0; e < sizeof(by_ext) / sizeof(by_ext[0]); e++)
		for (i = 0; i < n; i++)
			if (ends_with(f[i].path, by_ext[e].ext))
				return by_ext[e].format;
	return NULL;
}

static int set_new(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

static int desc_json(json_t **ret, const char *mt, const char *digest,
		     uint64_t size)
{
	json_t *d = json_object();
	int rc = d ? 0 : -ENOMEM;

	if (rc == 0)
		rc = set_new(d, "mediaType", json_string(mt));
	if (rc == 0)
		rc = set_new(d, "digest", json_string(digest));
	if (rc == 0)
		rc = set_new(d, "size", json_integer((json_int_t)size));
	if (rc < 0) {
		json_decref(d);
		return rc;
	}
	*ret = d;
	return 0;
}

static int build_check(const struct layout_put_file *f, size_t n, char *err,
		       size_t errlen)
{
	struct layout tmp = { 0 };
	struct lp p = { .l = &tmp, .err = err, .errlen = errlen };
	char b[96];
	size_t i;
	int rc;

	if (n > LAYOUT_MAX_FILES)
		return errf(err, errlen, -EFBIG, "more than %d files", LAYOUT_MAX_FILES);
	tmp.files = calloc(n ? n : 1, sizeof(*tmp.files));
	if (!tmp.files)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (!f[i].path || !layout_path_valid(f[i].path)) {
			rc = errf(err, errlen, -EINVAL, "unsafe path \"%s\"",
				  f[i].path ? shown(b, f[i].path, PATH_MAX) : "(null)");
			goto out;
		}
		if (!utf8_valid(f[i].path)) {
			rc = errf(err, errlen, -EINVAL, "path \"%s\" is not UTF-8",
				  shown(b, f[i].path, PATH_MAX));
			goto out;
		}
		if (!digest_valid(f[i].digest)) {
			rc = errf(err, errlen, -EINVAL, "%s: digest is not sha256:<64 hex>",
				  shown(b, f[i].path, PATH_MAX));
			goto out;
		}
		if (f[i].size > JSON_INT_MAX) {
			rc = errf(err, errlen, -EINVAL, "%s: size past 2^53",
				  shown(b, f[i].path, PATH_MAX));
			goto out;
		}
		tmp.files[i].path = (char *)f[i].path;
		tmp.nfiles++;
	}
	rc = check_paths(&p);
out:
	free(tmp.files);
	return rc;
}

static int build_config(const char *name, const struct layout_put_file *f,
			size_t n, json_t **ret)
{
	json_t *c = json_object(), *desc = json_object(), *fs = json_object(),
	       *cfg = json_object(), *ids = json_array();
	const char *format = modelpack_guess_format(f, n);
	size_t i;
	int rc = c && desc && fs && cfg && ids ? 0 : -ENOMEM;

	if (rc == 0)
		rc = set_new(desc, "name", json_string(name));
	for (i = 0; rc == 0 && i < n; i++)
		rc = json_array_append_new(ids, json_string(f[i].digest)) == 0 ? 0 : -ENOMEM;
	if (rc == 0)
		rc = set_new(fs, "type", json_string("layers"));
	if (rc == 0) {
		rc = set_new(fs, "diffIds", ids);
		ids = NULL;
	}
	if (rc == 0 && format)
		rc = set_new(cfg, "format", json_string(format));
	if (rc == 0) {
		rc = set_new(c, "descriptor", desc);
		desc = NULL;
	}
	if (rc == 0) {
		rc = set_new(c, "modelfs", fs);
		fs = NULL;
	}
	if (rc == 0) {
		rc = set_new(c, "config", cfg);
		cfg = NULL;
	}
	json_decref(desc);
	json_decref(fs);
	json_decref(cfg);
	json_decref(ids);
	if (rc < 0) {
		json_decref(c);
		return rc;
	}
	*ret = c;
	return 0;
}

static int build_layer(const struct layout_put_file *f, json_t **ret)
{
	json_t *d = NULL, *a = json_object();
	int rc = a ? 0 : -ENOMEM;

	if (rc == 0)
		rc = desc_json(&d, modelpack_media_type(f->path), f->digest, f->size);
	if (rc == 0)
		rc = set_new(a, ANN_FILEPATH, json_string(f->path));
	if (rc == 0)
		rc = set_new(a, ANN_TITLE, json_string(base_name(f->path)));
	if (rc == 0) {
		rc = set_new(d, "annotations", a);
		a = NULL;
	}
	json_decref(a);
	if (rc < 0) {
		json_decref(d);
		return rc;
	}
	*ret = d;
	return 0;
}

int layout_modelpack_build(const char *name, const struct layout_put_file *f,
			   size_t n, char **ret_manifest, size_t *ret_mlen,
			   char **ret_config, size_t *ret_clen,
			   char *err, size_t errlen)
{
	const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	json_t *config = NULL, *m = NULL, *layers = NULL, *d;
	char *cj = NULL, *mj = NULL, digest[OCI_DIGEST_LEN];
	size_t i, clen;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!name || !*name || (n && !f) || !ret_manifest || !ret_config)
		return errf(err, errlen, -EINVAL, "no name or no files");
	if (!utf8_valid(name))
		return errf(err, errlen, -EINVAL, "the model's name is not UTF-8");
	rc = build_check(f, n, err, errlen);
	if (rc < 0)
		return rc;
	rc = build_config(name, f, n, &config);
	if (rc < 0)
		goto nomem;
	cj = json_dumps(config, flags);
	if (!cj) {
		rc = -ENOMEM;
		goto nomem;
	}
	clen = strlen(cj);
	digest_sha256(cj, clen, digest);

	m = json_object();
	layers = json_array();
	rc = m && layers ? 0 : -ENOMEM;
	if (rc == 0)
		rc = set_new(m, "schemaVersion", json_integer(2));
	if (rc == 0)
		rc = set_new(m, "mediaType", json_string(OCI_MT_MANIFEST));
	if (rc == 0)
		rc = set_new(m, "artifactType", json_string(MODELPACK_ARTIFACT_TYPE));
	if (rc == 0)
		rc = desc_json(&d, MODELPACK_MT_CONFIG, digest, clen);
	if (rc == 0)
		rc = set_new(m, "config", d);
	for (i = 0; rc == 0 && i < n; i++) {
		rc = build_layer(&f[i], &d);
		if (rc == 0 && json_array_append_new(layers, d) != 0)
			rc = -ENOMEM;
	}
	if (rc == 0) {
		rc = set_new(m, "layers", layers);
		layers = NULL;
	}
	if (rc < 0)
		goto nomem;
	mj = json_dumps(m, flags);
	if (!mj) {
		rc = -ENOMEM;
		goto nomem;
	}
	if (strlen(mj) > OCI_MANIFEST_MAX) {
		rc = errf(err, errlen, -EFBIG, "manifest of %zu bytes (at most %u)",
			  strlen(mj), OCI_MANIFEST_MAX);
		goto out;
	}
	*ret_manifest = mj;
	if (ret_mlen)
		*ret_mlen = strlen(mj);
	*ret_config = cj;
	if (ret_clen)
		*ret_clen = clen;
	mj = cj = NULL;
	goto out;
nomem:
	rc = errf(err, errlen, rc, "out of memory building the JSON");
out:
	free(mj);
	free(cj);
	json_decref(layers);
	json_decref(m);
	json_decref(config);
	return rc;
}
