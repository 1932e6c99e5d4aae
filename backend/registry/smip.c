/*
 * smip.c - building a manifest by walking a folder of the catalog.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "backend/store/chunker.h"
#include "common/modelfmt.h"
#include "backend/registry/smip.h"
#include "common/hex.h"

#define MAX_DEPTH 64
/* The longest header read to describe a file. */
#define INFO_HEADER_MAX (64u << 20)

static int parse_header(struct cas_store *st, uint64_t ino, struct mf_info *info);

/*
 * What a GGUF or safetensors header says, for the manifest: format,
 * architecture, parameters, dtypes, context length and the tensor index
 * ([name, dtype, shape, start, end] with absolute byte offsets).  NULL for
 * files that are not models (or whose header is malformed).
 */
static json_t *model_entry(struct cas_store *st, uint64_t ino)
{
	struct mf_info info;
	json_t *m = NULL, *dtypes, *index;
	size_t i, d;

	mf_info_init(&info);
	if (parse_header(st, ino, &info) < 0 || info.status < 0 ||
	    (info.format != MF_FORMAT_GGUF && info.format != MF_FORMAT_SAFETENSORS))
		goto out;
	dtypes = json_object();
	for (d = 0; dtypes && d < MF_DTYPE_COUNT; d++)
		if (info.dtypes[d].tensors)
			json_object_set_new(dtypes, mf_dtype_name((enum mf_dtype)d),
					    json_pack("{s:I, s:I}", "tensors",
						      (json_int_t)info.dtypes[d].tensors,
						      "bytes", (json_int_t)info.dtypes[d].bytes));
	index = json_array();
	for (i = 0; index && i < info.n_tensors; i++) {
		const struct mf_tensor *t = &info.tensors[i];
		json_t *shape = json_array();
		uint32_t k;

		for (k = 0; shape && k < t->n_dims; k++)
			json_array_append_new(shape, json_integer((json_int_t)t->shape[k]));
		json_array_append_new(index, json_pack("[s, s, o, I, I]", t->name,
						       mf_dtype_name(t->dtype), shape,
						       (json_int_t)t->offset,
						       (json_int_t)(t->offset + t->size)));
	}
	m = json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:o}",
		      "format", mf_format_name(info.format),
		      "architecture", info.architecture,
		      "parameters", (json_int_t)info.n_params,
		      "context_length", (json_int_t)info.context_length,
		      "data_offset", (json_int_t)info.data_offset,
		      "dtypes", dtypes ? dtypes : json_object(),
		      "tensors", index ? index : json_array());
out:
	mf_info_release(&info);
	return m;
}

static json_t *file_entry(struct cas_store *st, const char *path,
			  const struct cat_attr *a, uint64_t *total, int *err)
{
	struct cas_file *f = NULL;
	json_t *e, *chunks;
	char hex[65], mode[8];
	uint8_t sha[32];
	size_t i;
	int r;

	snprintf(mode, sizeof(mode), "%04o", a->mode & 07777);
	e = json_pack("{s:s, s:s, s:s}", "path", path, "type",
		      S_ISDIR(a->mode) ? "dir" : S_ISLNK(a->mode) ? "symlink" : "file",
		      "mode", mode);
	if (!e) {
		*err = -ENOMEM;
		return NULL;
	}
	if (S_ISLNK(a->mode)) {
		char *target = NULL;

		r = cas_readlink(st, a->ino, &target);
		if (r == 0)
			json_object_set_new(e, "target", json_string(target));
		free(target);
		if (r < 0)
			goto fail;
		return e;
	}
	if (!S_ISREG(a->mode))
		return e;
	r = cas_file_open(st, a->ino, &f);
	if (r < 0)
		goto fail;
	json_object_set_new(e, "size", json_integer((json_int_t)cas_file_size(f)));
	*total += cas_file_size(f);
	if (cas_file_sha256(f, sha) == 0) {
		hex_encode(sha, 32, hex);
		json_object_set_new(e, "sha256", json_string(hex));
	}
	chunks = json_array();
	for (i = 0; chunks && i < cas_file_nchunks(f); i++) {
		struct cas_id id;
		uint32_t len;

		cas_file_chunk(f, i, &id, &len);
		cas_id_hex(&id, hex);
		json_array_append_new(chunks, json_pack("[s,I]", hex, (json_int_t)len));
	}
	cas_file_free(f);
	if (!chunks) {
		r = -ENOMEM;
		goto fail;
	}
	json_object_set_new(e, "chunks", chunks);
	{
		json_t *m = model_entry(st, a->ino);

		if (m)
			json_object_set_new(e, "model", m);
	}
	return e;
fail:
	json_decref(e);
	*err = r;
	return NULL;
}

static int walk(struct cas_store *st, uint64_t ino, const char *prefix,
		json_t *files, uint64_t *total, int depth)
{
	struct cas_child *v;
	size_t i, n;
	int r;

	if (depth > MAX_DEPTH)
		return -ELOOP;
	r = cas_children_get(st, ino, &v, &n);
	for (i = 0; r == 0 && i < n; i++) {
		char *path;
		json_t *e;

		if (asprintf(&path, "%s%s%s", prefix, prefix[0] ? "/" : "",
			     v[i].name) < 0) {
			r = -ENOMEM;
			break;
		}
		e = file_entry(st, path, &v[i].a, total, &r);
		if (e)
			json_array_append_new(files, e);
		if (r == 0 && S_ISDIR(v[i].a.mode))
			r = walk(st, v[i].a.ino, path, files, total, depth + 1);
		free(path);
	}
	cas_children_free(v, n);
	return r;
}

/* The manifest around files (taken), unless r, the walk's result, failed. */
static int manifest_root(const char *name, json_t *files, uint64_t total, int r,
			 json_t **ret)
{
	if (r < 0) {
		json_decref(files);
		return r;
	}
	*ret = json_pack("{s:i, s:s, s:{s:s, s:i, s:i, s:i}, s:s, s:s, s:I, s:o}",
			 "smip", SMIP_VERSION, "name", name, "chunking", "algorithm",
			 "gear-cdc", "min", CDC_MIN, "avg", CDC_AVG, "max", CDC_MAX,
			 "chunk_id", "xxh3-128", "file_hash", "sha256", "size",
			 (json_int_t)total, "files", files);
	return *ret ? 0 : -ENOMEM;
}

int smip_manifest_json(struct cas_store *st, const char *name,
		       const struct smip_entry *e, size_t n, json_t **ret)
{
	json_t *files = json_array();
	uint64_t total = 0;
	size_t i;
	int r = files ? 0 : -ENOMEM;

	for (i = 0; r == 0 && i < n; i++) {
		struct cat_attr a = { .mode = S_IFDIR | (e[i].mode & 07777) };
		json_t *fe;

		if (e[i].ino)
			r = cas_getattr(st, e[i].ino, &a);
		if (r < 0)
			break;
		fe = file_entry(st, e[i].path, &a, &total, &r);
		if (fe)
			json_array_append_new(files, fe);
	}
	return manifest_root(name, files, total, r, ret);
}

int smip_manifest(struct cas_store *st, uint64_t dir_ino, const char *name,
		  char **ret, size_t *ret_len)
{
	json_t *root, *files;
	uint64_t total = 0;
	char *text;
	int r;

	files = json_array();
	if (!files)
		return -ENOMEM;
	r = walk(st, dir_ino, "", files, &total, 0);
	r = manifest_root(name, files, total, r, &root);
	if (r < 0)
		return r;
	text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!text)
		return -ENOMEM;
	*ret_len = strlen(text);
	/* A trailing newline keeps `cat` output tidy in a terminal. */
	{
		char *t = realloc(text, *ret_len + 2);

		if (!t) {
			free(text);
			return -ENOMEM;
		}
		t[(*ret_len)++] = '\n';
		t[*ret_len] = '\0';
		*ret = t;
	}
	return 0;
}


struct info_walk {
	struct cas_store *st;
	FILE *out;
	int depth;
	int tensors;
};

/* Parses the start of a stored file, reading more while the parser asks. */
static int parse_header(struct cas_store *st, uint64_t ino, struct mf_info *info)
{
	struct cas_file *f = NULL;
	size_t want = 1u << 20, have = 0;
	uint8_t *buf = NULL, *t;
	ssize_t n;
	int r;

	r = cas_file_open(st, ino, &f);
	if (r < 0)
		return r;
	for (;;) {
		if (want > cas_file_size(f))
			want = (size_t)cas_file_size(f);
		t = realloc(buf, want ? want : 1);
		if (!t) {
			r = -ENOMEM;
			break;
		}
		buf = t;
		n = cas_file_read(st, f, buf + have, want - have, have, NULL);
		if (n < 0) {
			r = (int)n;
			break;
		}
		have += (size_t)n;
		r = mf_parse(buf, have, cas_file_size(f), info);
		if (r != -EAGAIN || info->need <= have || info->need > INFO_HEADER_MAX ||
		    info->need > cas_file_size(f)) {
			r = 0;
			break;
		}
		want = info->need;
	}
	free(buf);
	cas_file_free(f);
	return r;
}

static int describe_file(struct cas_store *st, uint64_t ino, const char *path,
			 int tensors, FILE *out)
{
	struct mf_info info;
	char *text = NULL;
	ssize_t n;
	int r;

	mf_info_init(&info);
	r = parse_header(st, ino, &info);
	if (r < 0)
		goto out;
	if (tensors) {
		char *line, *save = NULL;

		r = 0;
		if (info.status < 0 || !info.n_tensors)
			goto out;
		n = mf_info_tensor_list(&info, &text);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		for (line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save))
			fprintf(out, "%s %s\n", path, line);
		goto out;
	}
	n = mf_info_summary(&info, path, &text);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	fputs(text, out);
	if (n == 0 || text[n - 1] != '\n')
		fputc('\n', out);
	fputc('\n', out);
	r = 0;
out:
	free(text);
	mf_info_release(&info);
	return r;
}

static int info_walk(struct info_walk *w, uint64_t ino, const char *prefix)
{
	struct cas_child *v;
	size_t i, n;
	int r;

	if (w->depth > MAX_DEPTH)
		return -ELOOP;
	r = cas_children_get(w->st, ino, &v, &n);
	for (i = 0; r == 0 && i < n; i++) {
		char *path;

		if (asprintf(&path, "%s%s%s", prefix, prefix[0] ? "/" : "",
			     v[i].name) < 0) {
			r = -ENOMEM;
			break;
		}
		if (S_ISREG(v[i].a.mode)) {
			r = describe_file(w->st, v[i].a.ino, path, w->tensors, w->out);
		} else if (S_ISDIR(v[i].a.mode)) {
			w->depth++;
			r = info_walk(w, v[i].a.ino, path);
			w->depth--;
		}
		free(path);
	}
	cas_children_free(v, n);
	return r;
}

int smip_info(struct cas_store *st, uint64_t dir_ino, const char *name,
	      int tensors, char **ret, size_t *ret_len)
{
	struct info_walk w = { .st = st, .tensors = tensors };
	char *text = NULL;
	size_t len = 0;
	int r;

	w.out = open_memstream(&text, &len);
	if (!w.out)
		return -ENOMEM;
	if (!tensors)
		fprintf(w.out, "model: %s\n\n", name);
	r = info_walk(&w, dir_ino, "");
	if (fclose(w.out) != 0 && r == 0)
		r = -ENOMEM;
	if (r < 0) {
		free(text);
		return r;
	}
	*ret = text;
	*ret_len = len;
	return 0;
}
