/* gpu/ckpt.c - safetensors checkpoints (see ckpt.h).
 *
 * safetensors: u64 little-endian header length, a JSON header mapping each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the header),
 * then the raw little-endian data.  We pad the header with spaces to a multiple of 8 bytes, as
 * the reference implementation does, so the data stays aligned. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsync.h"
#include "common/modelfmt.h"
#include "gpu/ckpt.h"
#include "gpu/data.h"

/* One Hugging Face tensor: which of our parameters, which layer, its HF shape, and whether our
 * (out, in) layout is transposed to HF's Conv1D (in, out). */
struct hf_tensor {
	char name[64];
	int param, layer, ndim, transposed;
	int64_t shape[2];
	size_t offset;   /* element offset into the flat array */
};

static int hf_tensors(const struct gpu_config *cfg, struct hf_tensor **ret, int *ret_n)
{
	static const struct {
		int param;
		const char *fmt;
		int out_mul, in_mul, transposed; /* shape in units of C; 0 = 1-D */
	} per_layer[] = {
		{ GPU_P_LN1W, "ln_1.weight", 1, 0, 0 },
		{ GPU_P_LN1B, "ln_1.bias", 1, 0, 0 },
		{ GPU_P_QKVW, "attn.c_attn.weight", 3, 1, 1 },
		{ GPU_P_QKVB, "attn.c_attn.bias", 3, 0, 0 },
		{ GPU_P_ATTPROJW, "attn.c_proj.weight", 1, 1, 1 },
		{ GPU_P_ATTPROJB, "attn.c_proj.bias", 1, 0, 0 },
		{ GPU_P_LN2W, "ln_2.weight", 1, 0, 0 },
		{ GPU_P_LN2B, "ln_2.bias", 1, 0, 0 },
		{ GPU_P_FCW, "mlp.c_fc.weight", 4, 1, 1 },
		{ GPU_P_FCB, "mlp.c_fc.bias", 4, 0, 0 },
		{ GPU_P_FCPROJW, "mlp.c_proj.weight", 1, 4, 1 },
		{ GPU_P_FCPROJB, "mlp.c_proj.bias", 1, 0, 0 },
	};
	int L = cfg->n_layer, C = cfg->n_embd, np = sizeof(per_layer) / sizeof(per_layer[0]);
	int n = 4 + L * np, k = 0;
	size_t sizes[GPU_NPARAMS], off[GPU_NPARAMS + 1];
	struct hf_tensor *t = calloc((size_t)n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	gpu_param_sizes(cfg, sizes);
	off[0] = 0;
	for (int i = 0; i < GPU_NPARAMS; i++)
		off[i + 1] = off[i] + sizes[i];

	t[k] = (struct hf_tensor){ "wte.weight", GPU_P_WTE, 0, 2, 0, { cfg->vocab_size, C },
				   off[GPU_P_WTE] };
	k++;
	t[k] = (struct hf_tensor){ "wpe.weight", GPU_P_WPE, 0, 2, 0, { cfg->n_ctx, C },
				   off[GPU_P_WPE] };
	k++;
	for (int l = 0; l < L; l++)
		for (int j = 0; j < np; j++) {
			struct hf_tensor *x = &t[k++];
			int p = per_layer[j].param;

			snprintf(x->name, sizeof(x->name), "h.%d.%s", l, per_layer[j].fmt);
			x->param = p;
			x->layer = l;
			x->transposed = per_layer[j].transposed;
			if (per_layer[j].in_mul) {
				/* HF Conv1D weight: (in, out) */
				x->ndim = 2;
				x->shape[0] = (int64_t)per_layer[j].in_mul * C;
				x->shape[1] = (int64_t)per_layer[j].out_mul * C;
			} else {
				x->ndim = 1;
				x->shape[0] = (int64_t)per_layer[j].out_mul * C;
			}
			x->offset = off[p] + sizes[p] / L * l;
		}
	t[k] = (struct hf_tensor){ "ln_f.weight", GPU_P_LNFW, 0, 1, 0, { C, 0 },
				   off[GPU_P_LNFW] };
	k++;
	t[k] = (struct hf_tensor){ "ln_f.bias", GPU_P_LNFB, 0, 1, 0, { C, 0 }, off[GPU_P_LNFB] };
	k++;
	*ret = t;
	*ret_n = k;
	return 0;
}

static size_t numel(const int64_t *shape, int ndim)
{
	size_t n = 1;

	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	return n;
}

/* dst (c, r) = src (r, c) transposed */
static void transpose(float *dst, const float *src, size_t r, size_t c)
{
	for (size_t i = 0; i < r; i++)
		for (size_t j = 0; j < c; j++)
			dst[j * r + i] = src[i * c + j];
}

/* Copy between the flat (out, in) layout and the HF layout of one tensor: HF keeps
 * Conv1D weights as (in, out), shape[] holds the HF shape. */
static void to_hf(const struct hf_tensor *x, const float *flat, float *dst)
{
	const float *src = flat + x->offset;

	if (x->transposed)
		transpose(dst, src, (size_t)x->shape[1], (size_t)x->shape[0]);
	else
		memcpy(dst, src, numel(x->shape, x->ndim) * sizeof(float));
}

static void from_hf(const struct hf_tensor *x, const float *src, float *flat)
{
	float *dst = flat + x->offset;

	if (x->transposed)
		transpose(dst, src, (size_t)x->shape[0], (size_t)x->shape[1]);
	else
		memcpy(dst, src, numel(x->shape, x->ndim) * sizeof(float));
}

/* The whole file in memory: header then data.  tensors[k].data is used unless parts is set,
 * in which case tensor k's bytes are produced by fill(k, dst). */
struct st_out {
	int n;
	const char *const *names;
	const int *ndims;
	const int64_t (*shapes)[4];
	void (*fill)(void *arg, int k, float *dst);
	void *arg;
	json_t *meta;
};

static int st_emit(const char *path, const struct st_out *o)
{
	json_t *hdr = json_object();
	char *js = NULL;
	unsigned char *buf = NULL;
	size_t data_len = 0, hlen, padded, total;
	int r = -ENOMEM;

	if (!hdr)
		return -ENOMEM;
	for (int k = 0; k < o->n; k++) {
		size_t bytes = numel(o->shapes[k], o->ndims[k]) * sizeof(float);
		json_t *shape = json_array(), *offs = json_array(), *ent;

		for (int d = 0; d < o->ndims[k]; d++)
			json_array_append_new(shape, json_integer(o->shapes[k][d]));
		json_array_append_new(offs, json_integer((json_int_t)data_len));
		json_array_append_new(offs, json_integer((json_int_t)(data_len + bytes)));
		ent = json_pack("{s:s,s:o,s:o}", "dtype", "F32", "shape", shape, "data_offsets",
				offs);
		if (!ent || json_object_set_new(hdr, o->names[k], ent) < 0)
			goto out;
		data_len += bytes;
	}
	if (o->meta && json_object_set(hdr, "__metadata__", o->meta) < 0)
		goto out;
	js = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
	if (!js)
		goto out;
	hlen = strlen(js);
	padded = (hlen + 7) & ~(size_t)7;
	total = 8 + padded + data_len;
	buf = malloc(total);
	if (!buf)
		goto out;
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
	memcpy(buf + 8, js, hlen);
	memset(buf + 8 + hlen, ' ', padded - hlen);
	size_t pos = 8 + padded;

	for (int k = 0; k < o->n; k++) {
		o->fill(o->arg, k, (float *)(buf + pos));
		pos += numel(o->shapes[k], o->ndims[k]) * sizeof(float);
	}
	r = gpu_write_file_atomic(path, buf, total);
out:
	free(buf);
	free(js);
	json_decref(hdr);
	return r;
}

static void fill_plain(void *arg, int k, float *dst)
{
	const struct gpu_st_tensor *t = arg;

	memcpy(dst, t[k].data, numel(t[k].shape, t[k].ndim) * sizeof(float));
}

int gpu_st_write(const char *path, const struct gpu_st_tensor *t, int n)
{
	const char **names = calloc((size_t)n + 1, sizeof(*names));
	int *ndims = calloc((size_t)n + 1, sizeof(*ndims));
	int64_t (*shapes)[4] = calloc((size_t)n + 1, sizeof(*shapes));
	int r = -ENOMEM;

	if (!names || !ndims || !shapes)
		goto out;
	for (int k = 0; k < n; k++) {
		if (t[k].ndim < 0 || t[k].ndim > 4) {
			r = -EINVAL;
			goto out;
		}
		names[k] = t[k].name;
		ndims[k] = t[k].ndim;
		memcpy(shapes[k], t[k].shape, sizeof(shapes[k]));
	}
	struct st_out o = { n, names, ndims, (const int64_t (*)[4])shapes, fill_plain, (void *)t,
			    NULL };

	r = st_emit(path, &o);
out:
	free(names);
	free(ndims);
	free(shapes);
	return r;
}

/* Several model arrays under HF names, each with its own prefix. */
struct hf_fill {
	const struct hf_tensor *t;
	int nt;
	const float *const *flat;  /* one flat host array per part */
};

static void fill_hf(void *arg, int k, float *dst)
{
	const struct hf_fill *f = arg;

	to_hf(&f->t[k % f->nt], f->flat[k / f->nt], dst);
}

static int write_parts(struct gpu_model *m, const char *path, const enum gpu_buf *which,
		       const char *const *prefixes, int nparts, json_t *meta)
{
	const struct gpu_config *cfg = gpu_model_config(m);
	size_t np = gpu_model_num_params(m);
	struct hf_tensor *t = NULL;
	float *flat[2] = { NULL, NULL };
	char **names = NULL;
	int *ndims = NULL;
	int64_t (*shapes)[4] = NULL;
	int nt = 0, n, r;

	if (nparts < 1 || nparts > 2)
		return -EINVAL;
	r = hf_tensors(cfg, &t, &nt);
	if (r < 0)
		return r;
	n = nt * nparts;
	r = -ENOMEM;
	names = calloc((size_t)n, sizeof(*names));
	ndims = calloc((size_t)n, sizeof(*ndims));
	shapes = calloc((size_t)n, sizeof(*shapes));
	if (!names || !ndims || !shapes)
		goto out;
	for (int p = 0; p < nparts; p++) {
		flat[p] = malloc(np * sizeof(float));
		if (!flat[p])
			goto out;
		r = gpu_model_read(m, which[p], flat[p]);
		if (r < 0)
			goto out;
		r = -ENOMEM;
		for (int k = 0; k < nt; k++) {
			int j = p * nt + k;
			size_t len = strlen(prefixes[p]) + strlen(t[k].name) + 1;

			names[j] = malloc(len);
			if (!names[j])
				goto out;
			snprintf(names[j], len, "%s%s", prefixes[p], t[k].name);
			ndims[j] = t[k].ndim;
			shapes[j][0] = t[k].shape[0];
			shapes[j][1] = t[k].shape[1];
		}
	}
	struct hf_fill f = { t, nt, (const float *const *)flat };
	struct st_out o = { n, (const char *const *)names, ndims, (const int64_t (*)[4])shapes,
			    fill_hf, &f, meta };

	r = st_emit(path, &o);
out:
	if (names)
		for (int j = 0; j < n; j++)
			free(names[j]);
	free(names);
	free(ndims);
	free(shapes);
	free(flat[0]);
	free(flat[1]);
	free(t);
	return r;
}

int gpu_ckpt_write_buf(struct gpu_model *m, const char *path, enum gpu_buf which,
		       const char *prefix)
{
	return write_parts(m, path, &which, &prefix, 1, NULL);
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int write_config(const struct gpu_config *cfg, const char *path)
{
	json_t *j = json_pack(
		"{s:s,s:[s],s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:f,s:b,s:f,s:f,s:f,s:f,s:s}",
		"model_type", "gpt2", "architectures", "GPT2LMHeadModel",
		"vocab_size", cfg->vocab_size, "n_positions", cfg->n_ctx, "n_ctx", cfg->n_ctx,
		"n_embd", cfg->n_embd, "n_layer", cfg->n_layer, "n_head", cfg->n_head,
		"activation_function", "gelu_new", "layer_norm_epsilon", 1e-5,
		"tie_word_embeddings", 1, "initializer_range", 0.02, "resid_pdrop", 0.0,
		"embd_pdrop", 0.0, "attn_pdrop", 0.0,
		/* our own key: the tokeniser the vocabulary ids mean */
		"llmfs_tokenizer", cfg->vocab_size == 256 ? "bytes" : "external");
	char *s;
	int r;

	if (!j)
		return -ENOMEM;
	s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	r = gpu_write_file_atomic(path, s, strlen(s));
	free(s);
	return r;
}

int gpu_ckpt_save(struct gpu_model *m, const char *dir, const struct gpu_ckpt_meta *meta)
{
	char *tmp = NULL, *p = NULL, buf[32];
	json_t *jm = NULL;
	struct stat st;
	static const enum gpu_buf opt[2] = { GPU_BUF_ADAM_M, GPU_BUF_ADAM_V };
	static const char *const opt_prefix[2] = { "exp_avg.", "exp_avg_sq." };
	static const enum gpu_buf model_buf = GPU_BUF_PARAMS;
	static const char *const no_prefix = "";
	int r;

	if (stat(dir, &st) == 0)
		return -EEXIST;
	size_t tl = strlen(dir) + 5;

	tmp = malloc(tl);
	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, tl, "%s.tmp", dir);
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		goto out;
	}

	p = join(tmp, "config.json");
	if (!p) {
		r = -ENOMEM;
		goto out;
	}
	r = write_config(gpu_model_config(m), p);
	free(p);
	p = NULL;
	if (r < 0)
		goto out;

	p = join(tmp, "model.safetensors");
	if (!p) {
		r = -ENOMEM;
		goto out;
	}
	r = write_parts(m, p, &model_buf, &no_prefix, 1, NULL);
	free(p);
	p = NULL;
	if (r < 0)
		goto out;

	r = -ENOMEM;
	jm = json_object();
	if (!jm)
		goto out;
	snprintf(buf, sizeof(buf), "%ld", meta->step);
	json_object_set_new(jm, "step", json_string(buf));
	snprintf(buf, sizeof(buf), "%ld", gpu_model_adam_step(m));
	json_object_set_new(jm, "adam_step", json_string(buf));
	snprintf(buf, sizeof(buf), "%" PRIu64, meta->seed);
	json_object_set_new(jm, "seed", json_string(buf));
	p = join(tmp, "optimizer.safetensors");
	if (!p)
		goto out;
	r = write_parts(m, p, opt, opt_prefix, 2, jm);
	if (r < 0)
		goto out;

	if (rename(tmp, dir) < 0) {
		r = -errno;
		goto out;
	}
	r = fsync_parent(dir);
out:
	json_decref(jm);
	free(p);
	free(tmp);
	return r;
}

/* A safetensors file read through the one reader of model headers (common/modelfmt.h, the
 * fuzzed one): its tensor table and metadata, and the file from byte 0 in buf, all of it
 * unless opened for the header only. */
struct st_file {
	unsigned char *buf;
	struct mf_info info;
};

static void st_release(struct st_file *f)
{
	mf_info_release(&f->info);
	free(f->buf);
	f->buf = NULL;
}

static int st_open(struct st_file *f, const char *path, bool header_only)
{
	FILE *fp = fopen(path, "rbe");
	unsigned char le[8];
	uint64_t hl = 0;
	size_t len, n;
	long sz;
	int r = 0;

	f->buf = NULL;
	mf_info_init(&f->info);
	if (!fp)
		return -errno;
	if (fseek(fp, 0, SEEK_END) < 0 || (sz = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) < 0) {
		r = -errno;
		goto out;
	}
	len = (size_t)sz;
	if (len < 8 || fread(le, 1, 8, fp) != 8) {
		r = len < 8 ? -EINVAL : -EIO;
		goto out;
	}
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)le[i] << (8 * i);
	if (hl > MF_ST_HEADER_MAX || hl > len - 8) {
		r = -EINVAL;
		goto out;
	}
	n = header_only ? 8 + (size_t)hl : len;
	f->buf = malloc(n);
	if (!f->buf) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(f->buf, le, 8);
	if (fread(f->buf + 8, 1, n - 8, fp) != n - 8) {
		r = -EIO;
		goto out;
	}
	/* every refusal of the reader is a malformed file to a checkpoint */
	r = mf_parse_safetensors(f->buf, n, len, &f->info);
	if (r < 0 && r != -ENOMEM)
		r = -EINVAL;
out:
	fclose(fp);
	if (r < 0)
		st_release(f);
	return r;
}

/* Find name (or "transformer." + name), check F32 and the shape, and return its bytes when the
 * data is in memory (ret may be NULL to check only).  The reader has checked that the bytes
 * lie inside the file and that their count is the shape's. */
static int st_get(const struct st_file *f, const char *prefix, const char *name, int ndim,
		  const int64_t *shape, const float **ret)
{
	const struct mf_tensor *e;
	char full[160];

	snprintf(full, sizeof(full), "%s%s", prefix, name);
	e = mf_tensor_named(&f->info, full);
	if (!e) {
		snprintf(full, sizeof(full), "%stransformer.%s", prefix, name);
		e = mf_tensor_named(&f->info, full);
	}
	if (!e || e->dtype != MF_DTYPE_F32 || (int)e->n_dims != ndim)
		return -EINVAL;
	for (int d = 0; d < ndim; d++)
		if (e->shape[d] != (uint64_t)shape[d])
			return -EINVAL;
	if (e->size != numel(shape, ndim) * sizeof(float))
		return -EINVAL;
	/* The file sits at the start of a malloc'd buffer: float alignment holds when the file
	 * offset is a multiple of 4, which F32 files keep. */
	if (e->offset % sizeof(float) != 0)
		return -EINVAL;
	if (ret)
		*ret = (const float *)(f->buf + e->offset);
	return 0;
}

/* Check every tensor of t (under prefix) in f; with flat and m, also copy them into the
 * model's buffer which. */
static int load_flat(struct gpu_model *m, const struct st_file *f, const char *prefix,
		     const struct hf_tensor *t, int nt, enum gpu_buf which, float *flat)
{
	for (int k = 0; k < nt; k++) {
		const float *src;
		int r = st_get(f, prefix, t[k].name, t[k].ndim, t[k].shape, flat ? &src : NULL);

		if (r < 0)
			return r;
		if (flat)
			from_hf(&t[k], src, flat);
	}
	return flat ? gpu_model_write(m, which, flat) : 0;
}

static int meta_long(const struct st_file *f, const char *key, long long *ret)
{
	const char *v = mf_st_metadata(&f->info, key);
	char *end;

	if (!v)
		return -EINVAL;
	errno = 0;
	*ret = strtoll(v, &end, 10);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

/* One file of a checkpoint, checked (flat NULL) or loaded: the weights, or with opt the
 * optimizer's two moments and its metadata (step, adam_step, seed). */
static int load_file(struct gpu_model *m, const char *path, const struct hf_tensor *t, int nt,
		     bool opt, float *flat, long long meta[3])
{
	struct st_file f;
	int r;

	r = st_open(&f, path, !flat);
	if (r < 0)
		return r;
	if (!opt)
		r = load_flat(m, &f, "", t, nt, GPU_BUF_PARAMS, flat);
	else if ((r = load_flat(m, &f, "exp_avg.", t, nt, GPU_BUF_ADAM_M, flat)) == 0 &&
		 (r = load_flat(m, &f, "exp_avg_sq.", t, nt, GPU_BUF_ADAM_V, flat)) == 0 &&
		 (r = meta_long(&f, "step", &meta[0])) == 0 &&
		 (r = meta_long(&f, "adam_step", &meta[1])) == 0)
		r = meta_long(&f, "seed", &meta[2]);
	st_release(&f);
	return r;
}

int gpu_ckpt_load(struct gpu_model *m, const char *dir, struct gpu_ckpt_meta *ret_meta)
{
	struct hf_tensor *t = NULL;
	float *flat = NULL;
	char *pm = NULL, *po = NULL;
	long long meta[3] = { -1, 0, 0 }; /* step, adam_step, seed */
	bool opt;
	int nt = 0, r;

	r = hf_tensors(gpu_model_config(m), &t, &nt);
	if (r < 0)
		return r;
	flat = malloc(gpu_model_num_params(m) * sizeof(float));
	pm = join(dir, "model.safetensors");
	po = join(dir, "optimizer.safetensors");
	if (!flat || !pm || !po) {
		r = -ENOMEM;
		goto out;
	}
	/* Check both files' headers against the model before anything is written, so that a
	 * checkpoint that fails leaves the model as it was. */
	if ((r = load_file(m, pm, t, nt, false, NULL, meta)) < 0)
		goto out;
	r = load_file(m, po, t, nt, true, NULL, meta);
	opt = r == 0;
	if (r < 0 && r != -ENOENT) /* no optimizer file: weights only, a fresh optimizer */
		goto out;
	if ((r = load_file(m, pm, t, nt, false, flat, meta)) < 0)
		goto out;
	if (opt) {
		r = load_file(m, po, t, nt, true, flat, meta);
	} else {
		memset(flat, 0, gpu_model_num_params(m) * sizeof(float));
		if ((r = gpu_model_write(m, GPU_BUF_ADAM_M, flat)) == 0)
			r = gpu_model_write(m, GPU_BUF_ADAM_V, flat);
		meta[0] = -1;
		meta[1] = 0;
	}
	if (r < 0)
		goto out;
	gpu_model_set_adam_step(m, (long)meta[1]);
	if (ret_meta) {
		ret_meta->step = (long)meta[0];
		ret_meta->seed = (uint64_t)meta[2];
	}
out:
	free(po);
	free(pm);
	free(flat);
	free(t);
	return r;
}

int gpu_ckpt_read_config(const char *dir, struct gpu_config *ret)
{
	char *p = join(dir, "config.json");
	json_t *j;
	struct gpu_config c;
	int r;

	if (!p)
		return -ENOMEM;
	j = json_load_file(p, 0, NULL);
	free(p);
	if (!j)
		return -EINVAL;
	/* n_positions is the HF name for the context; older files also carry n_ctx */
	r = json_unpack(j, "{s:i,s:i,s:i,s:i,s:i}", "n_layer", &c.n_layer, "n_head", &c.n_head,
			"n_embd", &c.n_embd, "n_positions", &c.n_ctx, "vocab_size",
			&c.vocab_size);
	json_decref(j);
	if (r < 0 || gpu_config_check(&c) < 0)
		return -EINVAL;
	*ret = c;
	return 0;
}
