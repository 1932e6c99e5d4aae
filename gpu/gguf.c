/* gpu/gguf.c - GGUF export of a GPT-2 model and the checking reader (see gguf.h).
 *
 * GGUF v3: "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/values
 * (gguf string key, u32 type, value), the tensor infos (name, u32 n_dims, u64 ne[n_dims],
 * u32 ggml type, u64 offset from the data section), padding to the alignment, the data.
 * Strings are u64 length + bytes, no NUL; everything little-endian. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/gguf.h"

#define GGUF_MAGIC "GGUF"
#define ALIGN 32
#define MAX_STR (1u << 20)       /* bytes of one string */
#define MAX_COUNT (1ull << 24)   /* tensors, keys, array elements */

enum gguf_type {
	GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR,
	GT_U64, GT_I64, GT_F64, GT_COUNT
};

enum { GGML_F32 = 0 };

/* ---- the tensors of a gpt2 file, ours in gpt.h's flat layout ---- */

struct gg_tensor {
	char name[64];
	int param, layer, ndim;  /* param -1: output.weight, a copy of token_embd */
	uint64_t ne[2];
};

static int gg_tensors(const struct gpu_config *cfg, struct gg_tensor **ret, int *ret_n)
{
	static const struct {
		int param;
		const char *name;
		int ne0, ne1; /* in units of C; ne1 0: a vector */
	} per_layer[] = {
		{ GPU_P_LN1W, "attn_norm.weight", 1, 0 },
		{ GPU_P_LN1B, "attn_norm.bias", 1, 0 },
		{ GPU_P_QKVW, "attn_qkv.weight", 1, 3 },
		{ GPU_P_QKVB, "attn_qkv.bias", 3, 0 },
		{ GPU_P_ATTPROJW, "attn_output.weight", 1, 1 },
		{ GPU_P_ATTPROJB, "attn_output.bias", 1, 0 },
		{ GPU_P_LN2W, "ffn_norm.weight", 1, 0 },
		{ GPU_P_LN2B, "ffn_norm.bias", 1, 0 },
		{ GPU_P_FCW, "ffn_up.weight", 1, 4 },
		{ GPU_P_FCB, "ffn_up.bias", 4, 0 },
		{ GPU_P_FCPROJW, "ffn_down.weight", 4, 1 },
		{ GPU_P_FCPROJB, "ffn_down.bias", 1, 0 },
	};
	int np = sizeof(per_layer) / sizeof(per_layer[0]), L = cfg->n_layer, k = 0;
	uint64_t C = (uint64_t)cfg->n_embd;
	struct gg_tensor *t = calloc((size_t)(5 + L * np), sizeof(*t));

	if (!t)
		return -ENOMEM;
	t[k++] = (struct gg_tensor){ "token_embd.weight", GPU_P_WTE, 0, 2,
				     { C, (uint64_t)cfg->vocab_size } };
	t[k++] = (struct gg_tensor){ "position_embd.weight", GPU_P_WPE, 0, 2,
				     { C, (uint64_t)cfg->n_ctx } };
	for (int l = 0; l < L; l++)
		for (int j = 0; j < np; j++) {
			struct gg_tensor *x = &t[k++];

			snprintf(x->name, sizeof(x->name), "blk.%d.%s", l, per_layer[j].name);
			x->param = per_layer[j].param;
			x->layer = l;
			x->ndim = per_layer[j].ne1 ? 2 : 1;
			x->ne[0] = per_layer[j].ne0 * C;
			x->ne[1] = per_layer[j].ne1 * C;
		}
	t[k++] = (struct gg_tensor){ "output_norm.weight", GPU_P_LNFW, 0, 1, { C, 0 } };
	t[k++] = (struct gg_tensor){ "output_norm.bias", GPU_P_LNFB, 0, 1, { C, 0 } };
	t[k++] = (struct gg_tensor){ "output.weight", -1, 0, 2, { C, (uint64_t)cfg->vocab_size } };
	*ret = t;
	*ret_n = k;
	return 0;
}

static uint64_t gg_numel(const struct gg_tensor *x)
{
	return x->ndim == 2 ? x->ne[0] * x->ne[1] : x->ne[0];
}

static const float *gg_data(const struct gpu_infer *w, const struct gg_tensor *x)
{
	size_t sizes[GPU_NPARAMS];
	int p = x->param < 0 ? GPU_P_WTE : x->param;

	gpu_param_sizes(gpu_infer_config(w), sizes);
	return gpu_infer_param(w, p) + sizes[p] / gpu_infer_config(w)->n_layer * x->layer;
}

/* ---- writing ---- */

struct wbuf {
	unsigned char *p;
	size_t len, cap;
	bool oom;
};

static void put(struct wbuf *b, const void *src, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		unsigned char *q;

		while (cap < b->len + n)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

/* little-endian hosts only: x86-64 and arm64, where this runs */
static void put_u32(struct wbuf *b, uint32_t v)
{
	put(b, &v, 4);
}

static void put_u64(struct wbuf *b, uint64_t v)
{
	put(b, &v, 8);
}

static void put_str(struct wbuf *b, const char *s)
{
	put_u64(b, strlen(s));
	put(b, s, strlen(s));
}

static void kv_str(struct wbuf *b, const char *key, const char *v)
{
	put_str(b, key);
	put_u32(b, GT_STR);
	put_str(b, v);
}

static void kv_u32(struct wbuf *b, const char *key, uint32_t v)
{
	put_str(b, key);
	put_u32(b, GT_U32);
	put_u32(b, v);
}

static void kv_f32(struct wbuf *b, const char *key, float v)
{
	put_str(b, key);
	put_u32(b, GT_F32);
	put(b, &v, 4);
}

/* The key/values; returns their count. */
static uint64_t put_kvs(struct wbuf *b, const struct gpu_config *cfg, const struct gpu_tok *tok,
			const char *name)
{
	int V = cfg->vocab_size, eos = gpu_tok_eos(tok), nm = gpu_tok_n_merges(tok);
	uint64_t n = 0;
	char buf[16];

	kv_str(b, "general.architecture", "gpt2"), n++;
	kv_str(b, "general.name", name), n++;
	kv_u32(b, "general.file_type", 0), n++;
	kv_u32(b, "general.alignment", ALIGN), n++;
	kv_u32(b, "gpt2.context_length", (uint32_t)cfg->n_ctx), n++;
	kv_u32(b, "gpt2.embedding_length", (uint32_t)cfg->n_embd), n++;
	kv_u32(b, "gpt2.feed_forward_length", 4u * (uint32_t)cfg->n_embd), n++;
	kv_u32(b, "gpt2.block_count", (uint32_t)cfg->n_layer), n++;
	kv_u32(b, "gpt2.attention.head_count", (uint32_t)cfg->n_head), n++;
	kv_f32(b, "gpt2.attention.layer_norm_epsilon", 1e-5f), n++;
	kv_str(b, "tokenizer.ggml.model", "gpt2"), n++;
	kv_str(b, "tokenizer.ggml.pre", "gpt-2"), n++;
	/* GGUF wants a string per row: the rows of a padded vocabulary past the tokenizer's
	 * last token are named "[PAD<n>]" */
	put_str(b, "tokenizer.ggml.tokens"), n++;
	put_u32(b, GT_ARR);
	put_u32(b, GT_STR);
	put_u64(b, (uint64_t)V);
	for (int i = 0; i < V; i++) {
		const char *s = gpu_tok_token(tok, i);

		snprintf(buf, sizeof(buf), "[PAD%d]", i);
		put_str(b, s ? s : buf);
	}
	put_str(b, "tokenizer.ggml.token_type"), n++;
	put_u32(b, GT_ARR);
	put_u32(b, GT_I32);
	put_u64(b, (uint64_t)V);
	for (int i = 0; i < V; i++)
		put_u32(b, i == eos ? 3 : gpu_tok_token(tok, i) ? 1 : 5 /* unused */);
	put_str(b, "tokenizer.ggml.merges"), n++;
	put_u32(b, GT_ARR);
	put_u32(b, GT_STR);
	put_u64(b, (uint64_t)nm);
	for (int i = 0; i < nm; i++)
		put_str(b, gpu_tok_merge(tok, i));
	if (eos >= 0) {
		kv_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)eos), n++;
		kv_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)eos), n++;
	}
	return n;
}

static int write_all(int fd, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n) {
		ssize_t k = write(fd, c, n);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

int gpu_gguf_export(const struct gpu_infer *w, const struct gpu_tok *tok, const char *name,
		    const char *path)
{
	const struct gpu_config *cfg = gpu_infer_config(w);
	struct wbuf hb = { 0 }, kv = { 0 };
	struct gg_tensor *t = NULL;
	char *tmp = NULL;
	uint64_t off = 0, nkv;
	static const unsigned char zeros[ALIGN];
	int nt = 0, fd = -1, r;

	if (gpu_tok_vocab_size(tok) > cfg->vocab_size)
		return -EINVAL;
	r = gg_tensors(cfg, &t, &nt);
	if (r < 0)
		return r;
	nkv = put_kvs(&kv, cfg, tok, name);
	put(&hb, GGUF_MAGIC, 4);
	put_u32(&hb, 3);
	put_u64(&hb, (uint64_t)nt);
	put_u64(&hb, nkv);
	put(&hb, kv.p, kv.len);
	for (int k = 0; k < nt; k++) {
		put_str(&hb, t[k].name);
		put_u32(&hb, (uint32_t)t[k].ndim);
		for (int d = 0; d < t[k].ndim; d++)
			put_u64(&hb, t[k].ne[d]);
		put_u32(&hb, GGML_F32);
		put_u64(&hb, off);
		off += (gg_numel(&t[k]) * 4 + ALIGN - 1) / ALIGN * ALIGN;
	}
	put(&hb, zeros, (ALIGN - hb.len % ALIGN) % ALIGN);
	if (hb.oom || kv.oom || asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		r = -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = write_all(fd, hb.p, hb.len);
	for (int k = 0; k < nt && r == 0; k++) {
		size_t bytes = gg_numel(&t[k]) * 4;

		r = write_all(fd, gg_data(w, &t[k]), bytes);
		if (r == 0)
			r = write_all(fd, zeros, (ALIGN - bytes % ALIGN) % ALIGN);
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	fd = -1;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
out:
	if (r < 0 && tmp)
		unlink(tmp);
	free(tmp);
	free(hb.p);
	free(kv.p);
	free(t);
	return r;
}

/* ---- reading ---- */

struct rd {
	const unsigned char *p;
	uint64_t len, off;
	struct gpu_gguf_info *info;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct rd *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->info->error, sizeof(r->info->error), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int get(struct rd *r, void *dst, uint64_t n)
{
	if (n > r->len - r->off)
		return fail(r, "truncated at byte %llu", (unsigned long long)r->off);
	memcpy(dst, r->p + r->off, n);
	r->off += n;
	return 0;
}

static int get_u32(struct rd *r, uint32_t *v)
{
	return get(r, v, 4);
}

static int get_u64(struct rd *r, uint64_t *v)
{
	return get(r, v, 8);
}

/* A string as a malloc'd C string; NUL bytes inside are refused. */
static int get_str(struct rd *r, char **ret)
{
	uint64_t n = 0;
	char *s;
	int e = get_u64(r, &n);

	if (e < 0)
		return e;
	if (n > MAX_STR || n > r->len - r->off)
		return fail(r, "a string of %llu bytes at byte %llu", (unsigned long long)n,
			    (unsigned long long)r->off);
	if (memchr(r->p + r->off, 0, n))
		return fail(r, "a string with a NUL byte at byte %llu", (unsigned long long)r->off);
	s = malloc(n + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, r->p + r->off, n);
	s[n] = '\0';
	r->off += n;
	*ret = s;
	return 0;
}

static int scalar_size(uint32_t type)
{
	static const int sz[GT_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

	return type < GT_COUNT ? sz[type] : -1;
}

/* An integer value of any integer type, into *v. */
static int get_int(struct rd *r, uint32_t type, int64_t *v)
{
	unsigned char b[8] = { 0 };
	int n = scalar_size(type), e;

	if (type == GT_F32 || type == GT_F64 || type == GT_BOOL || n <= 0)
		return fail(r, "an integer expected, type %u found", type);
	e = get(r, b, (uint64_t)n);
	if (e < 0)
		return e;
	switch (type) {
	case GT_I8: *v = (int8_t)b[0]; break;
	case GT_I16: *v = (int16_t)(b[0] | b[1] << 8); break;
	case GT_I32: { int32_t x; memcpy(&x, b, 4); *v = x; break; }
	case GT_I64: memcpy(v, b, 8); break;
	case GT_U64: { uint64_t x; memcpy(&x, b, 8); *v = (int64_t)(x > INT64_MAX ? -1 : (int64_t)x); break; }
	default: { uint64_t x = 0; memcpy(&x, b, (size_t)n); *v = (int64_t)x; break; }
	}
	return 0;
}

static int skip_value(struct rd *r, uint32_t type, int depth);

static int skip_array(struct rd *r, int depth)
{
	uint32_t et = 0;
	uint64_t n = 0;
	int e;

	if (depth > 4)
		return fail(r, "arrays nested too deep");
	if ((e = get_u32(r, &et)) < 0 || (e = get_u64(r, &n)) < 0)
		return e;
	if (n > MAX_COUNT || n > r->len - r->off)
		return fail(r, "an array of %llu elements", (unsigned long long)n);
	for (uint64_t i = 0; i < n; i++)
		if ((e = skip_value(r, et, depth + 1)) < 0)
			return e;
	return 0;
}

static int skip_value(struct rd *r, uint32_t type, int depth)
{
	int n = scalar_size(type);
	char *s = NULL;
	int e;

	if (type == GT_STR) {
		e = get_str(r, &s);
		free(s);
		return e;
	}
	if (type == GT_ARR)
		return skip_array(r, depth);
	if (n <= 0)
		return fail(r, "unknown value type %u", type);
	if ((uint64_t)n > r->len - r->off)
		return fail(r, "truncated value");
	r->off += (uint64_t)n;
	return 0;
}

/* A string array into *ret (count in *ret_n). */
static int get_str_array(struct rd *r, uint32_t type, char ***ret, int *ret_n)
{
	uint32_t et = 0;
	uint64_t n = 0;
	char **a;
	int e;

	if (type != GT_ARR)
		return fail(r, "an array expected");
	if ((e = get_u32(r, &et)) < 0 || (e = get_u64(r, &n)) < 0)
		return e;
	if (et != GT_STR || n > MAX_COUNT || n > (r->len - r->off) / 8)
		return fail(r, "an array of strings expected (%llu elements of type %u)",
			    (unsigned long long)n, et);
	a = calloc(n ? n : 1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*ret = a;
	for (uint64_t i = 0; i < n; i++) {
		e = get_str(r, &a[i]);
		if (e < 0)
			return e;
		*ret_n = (int)i + 1;
	}
	*ret_n = (int)n;
	return 0;
}

struct hp {
	const char *key;
	int64_t v;
	bool seen;
};

enum { HP_CTX, HP_EMBD, HP_FF, HP_BLOCKS, HP_HEADS, HP_ALIGN, HP_BOS, HP_EOS, HP_N };

static int read_kvs(struct rd *r, struct hp *hp, char *arch, char *tok_model)
{
	struct gpu_gguf_info *info = r->info;
	int e;

	for (uint64_t i = 0; i < info->n_kv; i++) {
		char *key = NULL, *s = NULL;
		uint32_t type = 0;
		bool done = false;

		if ((e = get_str(r, &key)) < 0)
			return e;
		if ((e = get_u32(r, &type)) < 0)
			goto next;
		for (int k = 0; k < HP_N && !done; k++)
			if (strcmp(key, hp[k].key) == 0) {
				if (hp[k].seen) {
					e = fail(r, "key %s twice", key);
					goto next;
				}
				e = get_int(r, type, &hp[k].v);
				hp[k].seen = true;
				done = true;
			}
		if (done) {
		} else if (!strcmp(key, "general.architecture") || !strcmp(key, "general.name") ||
			   !strcmp(key, "tokenizer.ggml.model")) {
			if (type != GT_STR) {
				e = fail(r, "%s is not a string", key);
				goto next;
			}
			e = get_str(r, &s);
			if (e == 0)
				snprintf(!strcmp(key, "general.name") ? info->name
					 : !strcmp(key, "general.architecture") ? arch : tok_model,
					 !strcmp(key, "general.name") ? sizeof(info->name) : 32, "%s", s);
		} else if (!strcmp(key, "gpt2.attention.layer_norm_epsilon")) {
			e = type == GT_F32 ? get(r, &info->layer_norm_eps, 4)
					   : fail(r, "%s is not a float32", key);
		} else if (!strcmp(key, "tokenizer.ggml.tokens") && !info->tokens) {
			e = get_str_array(r, type, &info->tokens, &info->n_tokens);
		} else if (!strcmp(key, "tokenizer.ggml.merges") && !info->merges) {
			e = get_str_array(r, type, &info->merges, &info->n_merges);
		} else {
			e = skip_value(r, type, 0);
		}
next:
		free(s);
		if (e < 0 && !info->error[0])
			snprintf(info->error, sizeof(info->error), "key %s: malformed", key);
		free(key);
		if (e < 0)
			return e;
	}
	return 0;
}

struct tinfo {
	char *name;
	uint32_t ndim, type;
	uint64_t ne[4], off, bytes;
};

static int read_tensor_infos(struct rd *r, struct tinfo *ti)
{
	int e;

	for (uint64_t i = 0; i < r->info->n_tensors; i++) {
		struct tinfo *x = &ti[i];
		uint64_t n = 1;

		if ((e = get_str(r, &x->name)) < 0 || (e = get_u32(r, &x->ndim)) < 0)
			return e;
		if (x->ndim < 1 || x->ndim > 4)
			return fail(r, "tensor %s has %u dimensions", x->name, x->ndim);
		for (uint32_t d = 0; d < x->ndim; d++) {
			if ((e = get_u64(r, &x->ne[d])) < 0)
				return e;
			if (x->ne[d] == 0 || x->ne[d] > (1ull << 40) / n)
				return fail(r, "tensor %s: dimension %u is %llu", x->name, d,
					    (unsigned long long)x->ne[d]);
			n *= x->ne[d];
		}
		if ((e = get_u32(r, &x->type)) < 0 || (e = get_u64(r, &x->off)) < 0)
			return e;
		if (x->type != GGML_F32)
			return fail(r, "tensor %s is of ggml type %u, only F32 (0) is read", x->name,
				    x->type);
		x->bytes = n * 4;
	}
	return 0;
}

static int by_off(const void *a, const void *b)
{
	const struct tinfo *x = *(const struct tinfo *const *)a, *y = *(const struct tinfo *const *)b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Every tensor of a gpt2 model present once with its shape, and inside the data, apart. */
static int check_tensors(struct rd *r, struct tinfo *ti, const struct gg_tensor *want, int nw,
			 const struct tinfo **found)
{
	struct gpu_gguf_info *info = r->info;
	uint64_t data_len = info->file_size - info->data_offset;
	const struct tinfo **sorted;

	for (uint64_t i = 0; i < info->n_tensors; i++) {
		int k = 0;

		while (k < nw && strcmp(want[k].name, ti[i].name))
			k++;
		if (k == nw)
			return fail(r, "tensor %s is not part of a gpt2 model", ti[i].name);
		if (found[k])
			return fail(r, "tensor %s twice", ti[i].name);
		if ((int)ti[i].ndim != want[k].ndim || ti[i].ne[0] != want[k].ne[0] ||
		    (want[k].ndim == 2 && ti[i].ne[1] != want[k].ne[1]))
			return fail(r, "tensor %s has the wrong shape", ti[i].name);
		if (ti[i].off % info->alignment || ti[i].off > data_len ||
		    ti[i].bytes > data_len - ti[i].off)
			return fail(r, "tensor %s lies outside the data or off the alignment",
				    ti[i].name);
		found[k] = &ti[i];
	}
	for (int k = 0; k < nw; k++)
		if (!found[k] && want[k].param >= 0)
			return fail(r, "tensor %s is missing", want[k].name);
	sorted = malloc(info->n_tensors * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (uint64_t i = 0; i < info->n_tensors; i++)
		sorted[i] = &ti[i];
	qsort(sorted, info->n_tensors, sizeof(*sorted), by_off);
	for (uint64_t i = 1; i < info->n_tensors; i++)
		if (sorted[i - 1]->off + sorted[i - 1]->bytes > sorted[i]->off) {
			int e = fail(r, "tensors %s and %s overlap", sorted[i - 1]->name,
				     sorted[i]->name);

			free(sorted);
			return e;
		}
	free(sorted);
	return 0;
}

static int check_hparams(struct rd *r, struct hp *hp, const char *arch, const char *tok_model)
{
	struct gpu_gguf_info *info = r->info;
	struct gpu_config *c = &info->cfg;

	if (strcmp(arch, "gpt2"))
		return fail(r, "general.architecture is '%s', not gpt2", arch);
	for (int k = 0; k < HP_ALIGN; k++)
		if (!hp[k].seen || hp[k].v < 1 || hp[k].v > 1 << 20)
			return fail(r, "%s is missing or out of range", hp[k].key);
	if (!info->tokens || !info->merges || strcmp(tok_model, "gpt2"))
		return fail(r, "the tokenizer (tokenizer.ggml.model gpt2, tokens, merges) is "
			    "missing");
	c->n_ctx = (int)hp[HP_CTX].v;
	c->n_embd = (int)hp[HP_EMBD].v;
	c->n_layer = (int)hp[HP_BLOCKS].v;
	c->n_head = (int)hp[HP_HEADS].v;
	c->vocab_size = info->n_tokens;
	if (hp[HP_FF].v != 4 * hp[HP_EMBD].v)
		return fail(r, "gpt2.feed_forward_length is not 4 x embedding_length");
	if (gpu_config_check(c) < 0)
		return fail(r, "the hyperparameters are not a valid model (%d layers, %d heads, "
			    "%d embedding, %d context, %d tokens)", c->n_layer, c->n_head,
			    c->n_embd, c->n_ctx, c->vocab_size);
	if (!(info->layer_norm_eps > 0.0f && info->layer_norm_eps < 1e-3f))
		return fail(r, "gpt2.attention.layer_norm_epsilon is missing or out of range");
	info->bos = hp[HP_BOS].seen ? (int32_t)hp[HP_BOS].v : -1;
	info->eos = hp[HP_EOS].seen ? (int32_t)hp[HP_EOS].v : -1;
	if (info->bos >= info->n_tokens || info->eos >= info->n_tokens)
		return fail(r, "bos or eos token id past the vocabulary");
	return 0;
}

static int load_model(struct rd *r, const struct gg_tensor *want, int nw,
		      const struct tinfo **found, struct gpu_infer **ret)
{
	const struct gpu_config *c = &r->info->cfg;
	size_t sizes[GPU_NPARAMS], off[GPU_NPARAMS + 1];
	float *flat = malloc(gpu_config_num_params(c) * sizeof(float));
	int e;

	if (!flat)
		return -ENOMEM;
	gpu_param_sizes(c, sizes);
	off[0] = 0;
	for (int i = 0; i < GPU_NPARAMS; i++)
		off[i + 1] = off[i] + sizes[i];
	for (int k = 0; k < nw; k++) {
		size_t at;

		if (want[k].param < 0)
			continue;
		at = off[want[k].param] + sizes[want[k].param] / c->n_layer * want[k].layer;
		memcpy(flat + at, r->p + r->info->data_offset + found[k]->off, found[k]->bytes);
	}
	e = gpu_infer_new(ret, c, flat);
	free(flat);
	return e;
}

static int parse(struct rd *r, struct gpu_infer **ret_model)
{
	struct gpu_gguf_info *info = r->info;
	struct hp hp[HP_N] = {
		{ "gpt2.context_length", 0, 0 }, { "gpt2.embedding_length", 0, 0 },
		{ "gpt2.feed_forward_length", 0, 0 }, { "gpt2.block_count", 0, 0 },
		{ "gpt2.attention.head_count", 0, 0 }, { "general.alignment", 0, 0 },
		{ "tokenizer.ggml.bos_token_id", 0, 0 }, { "tokenizer.ggml.eos_token_id", 0, 0 },
	};
	char magic[4], arch[32] = "", tok_model[32] = "";
	struct tinfo *ti = NULL;
	struct gg_tensor *want = NULL;
	const struct tinfo **found = NULL;
	int nw = 0, e;

	if ((e = get(r, magic, 4)) < 0 || memcmp(magic, GGUF_MAGIC, 4))
		return fail(r, "not a GGUF file (no magic)");
	if ((e = get_u32(r, &info->version)) < 0 || (e = get_u64(r, &info->n_tensors)) < 0 ||
	    (e = get_u64(r, &info->n_kv)) < 0)
		return e;
	if (info->version < 2 || info->version > 3)
		return fail(r, "GGUF version %u (2 and 3 are read)", info->version);
	if (info->n_tensors > MAX_COUNT || info->n_kv > MAX_COUNT)
		return fail(r, "%llu tensors, %llu keys", (unsigned long long)info->n_tensors,
			    (unsigned long long)info->n_kv);
	if ((e = read_kvs(r, hp, arch, tok_model)) < 0)
		return e;
	info->alignment = hp[HP_ALIGN].seen ? (uint32_t)hp[HP_ALIGN].v : ALIGN;
	if (info->alignment == 0 || info->alignment > 1 << 16 ||
	    (info->alignment & (info->alignment - 1)))
		return fail(r, "general.alignment %u is not a power of two", info->alignment);
	if ((e = check_hparams(r, hp, arch, tok_model)) < 0)
		return e;
	ti = calloc(info->n_tensors ? info->n_tensors : 1, sizeof(*ti));
	if (!ti)
		return -ENOMEM;
	e = read_tensor_infos(r, ti);
	if (e < 0)
		goto out;
	info->data_offset = (r->off + info->alignment - 1) / info->alignment * info->alignment;
	if (info->data_offset > info->file_size) {
		e = fail(r, "the data section starts past the end of the file");
		goto out;
	}
	if ((e = gg_tensors(&info->cfg, &want, &nw)) < 0)
		goto out;
	found = calloc((size_t)nw, sizeof(*found));
	if (!found) {
		e = -ENOMEM;
		goto out;
	}
	e = check_tensors(r, ti, want, nw, found);
	if (e == 0 && ret_model)
		e = load_model(r, want, nw, found, ret_model);
out:
	free(found);
	free(want);
	for (uint64_t i = 0; ti && i < info->n_tensors; i++)
		free(ti[i].name);
	free(ti);
	return e;
}

void gpu_gguf_info_release(struct gpu_gguf_info *info)
{
	for (int i = 0; info->tokens && i < info->n_tokens; i++)
		free(info->tokens[i]);
	for (int i = 0; info->merges && i < info->n_merges; i++)
		free(info->merges[i]);
	free(info->tokens);
	free(info->merges);
	info->tokens = info->merges = NULL;
	info->n_tokens = info->n_merges = 0;
}

int gpu_gguf_check_buf(const void *buf, size_t len, struct gpu_gguf_info *info,
		       struct gpu_infer **ret_model)
{
	struct rd r = { buf ? buf : "", len, 0, info };
	int e;

	memset(info, 0, sizeof(*info));
	info->bos = info->eos = -1;
	info->file_size = len;
	e = parse(&r, ret_model);
	if (e == -ENOMEM && !info->error[0])
		snprintf(info->error, sizeof(info->error), "out of memory");
	return e;
}

int gpu_gguf_check(const char *path, struct gpu_gguf_info *info, struct gpu_infer **ret_model)
{
	struct stat st;
	void *map = MAP_FAILED;
	int fd, e;

	memset(info, 0, sizeof(*info));
	info->bos = info->eos = -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		e = -errno;
		goto out;
	}
	if (st.st_size > 0)
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (st.st_size > 0 && map == MAP_FAILED) {
		e = -errno;
		goto out;
	}
	e = gpu_gguf_check_buf(map == MAP_FAILED ? NULL : map, (size_t)st.st_size, info,
			       ret_model);
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return e;
}
