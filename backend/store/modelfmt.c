/* modelfmt: GGUF, safetensors and config.json parsing.  Contract in
 * modelfmt.h.
 *
 * Shape of every parser: a bounded reader walks the prefix; each read first
 * asks `rd_need()` for its bytes, which turns "past the prefix" into
 * -EAGAIN (with the exact byte count), "past the file" into -EINVAL and
 * "past the header limit" into -E2BIG.  Nothing is allocated from a count
 * the file claims: arrays grow as entries are actually parsed.  Offsets are
 * checked against the file size with overflow-safe arithmetic, then the
 * tensors are sorted by offset and checked for overlap.
 */
#include "modelfmt.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dtype_desc {
	const char *name;
	uint32_t block;      /* elements per block (1 for plain types) */
	uint32_t block_size; /* bytes per block */
	uint8_t group;       /* byte-group width, 0 when not a float */
	uint8_t quant;
};

static const struct dtype_desc dtypes[MF_DTYPE_COUNT] = {
	[MF_DTYPE_UNKNOWN] = { "unknown", 1, 0, 0, 0 },
	[MF_DTYPE_F64] = { "F64", 1, 8, 0, 0 },
	[MF_DTYPE_F32] = { "F32", 1, 4, 4, 0 },
	[MF_DTYPE_F16] = { "F16", 1, 2, 2, 0 },
	[MF_DTYPE_BF16] = { "BF16", 1, 2, 2, 0 },
	[MF_DTYPE_F8_E4M3] = { "F8_E4M3", 1, 1, 0, 0 },
	[MF_DTYPE_F8_E5M2] = { "F8_E5M2", 1, 1, 0, 0 },
	[MF_DTYPE_I64] = { "I64", 1, 8, 0, 0 },
	[MF_DTYPE_I32] = { "I32", 1, 4, 0, 0 },
	[MF_DTYPE_I16] = { "I16", 1, 2, 0, 0 },
	[MF_DTYPE_I8] = { "I8", 1, 1, 0, 0 },
	[MF_DTYPE_U64] = { "U64", 1, 8, 0, 0 },
	[MF_DTYPE_U32] = { "U32", 1, 4, 0, 0 },
	[MF_DTYPE_U16] = { "U16", 1, 2, 0, 0 },
	[MF_DTYPE_U8] = { "U8", 1, 1, 0, 0 },
	[MF_DTYPE_BOOL] = { "BOOL", 1, 1, 0, 0 },
	/* Block layouts from ggml-common.h: the byte sizes are the structs'. */
	[MF_DTYPE_Q4_0] = { "Q4_0", 32, 18, 0, 1 },
	[MF_DTYPE_Q4_1] = { "Q4_1", 32, 20, 0, 1 },
	[MF_DTYPE_Q5_0] = { "Q5_0", 32, 22, 0, 1 },
	[MF_DTYPE_Q5_1] = { "Q5_1", 32, 24, 0, 1 },
	[MF_DTYPE_Q8_0] = { "Q8_0", 32, 34, 0, 1 },
	[MF_DTYPE_Q8_1] = { "Q8_1", 32, 36, 0, 1 },
	[MF_DTYPE_Q2_K] = { "Q2_K", 256, 84, 0, 1 },
	[MF_DTYPE_Q3_K] = { "Q3_K", 256, 110, 0, 1 },
	[MF_DTYPE_Q4_K] = { "Q4_K", 256, 144, 0, 1 },
	[MF_DTYPE_Q5_K] = { "Q5_K", 256, 176, 0, 1 },
	[MF_DTYPE_Q6_K] = { "Q6_K", 256, 210, 0, 1 },
	[MF_DTYPE_Q8_K] = { "Q8_K", 256, 292, 0, 1 },
	[MF_DTYPE_IQ2_XXS] = { "IQ2_XXS", 256, 66, 0, 1 },
	[MF_DTYPE_IQ2_XS] = { "IQ2_XS", 256, 74, 0, 1 },
	[MF_DTYPE_IQ3_XXS] = { "IQ3_XXS", 256, 98, 0, 1 },
	[MF_DTYPE_IQ1_S] = { "IQ1_S", 256, 50, 0, 1 },
	[MF_DTYPE_IQ4_NL] = { "IQ4_NL", 32, 18, 0, 1 },
	[MF_DTYPE_IQ3_S] = { "IQ3_S", 256, 110, 0, 1 },
	[MF_DTYPE_IQ2_S] = { "IQ2_S", 256, 82, 0, 1 },
	[MF_DTYPE_IQ4_XS] = { "IQ4_XS", 256, 136, 0, 1 },
	[MF_DTYPE_IQ1_M] = { "IQ1_M", 256, 56, 0, 1 },
	[MF_DTYPE_TQ1_0] = { "TQ1_0", 256, 54, 0, 1 },
	[MF_DTYPE_TQ2_0] = { "TQ2_0", 256, 66, 0, 1 },
	[MF_DTYPE_MXFP4] = { "MXFP4", 32, 17, 0, 1 },
	[MF_DTYPE_NVFP4] = { "NVFP4", 64, 36, 0, 1 },
	[MF_DTYPE_Q1_0] = { "Q1_0", 128, 18, 0, 1 },
};

/* enum ggml_type, by value; removed types (4, 5, 31-33, 36-38) stay
 * MF_DTYPE_UNKNOWN so a file using them is rejected, not misread, and so do
 * types newer than 41 until their block layout is settled upstream.  Block
 * sizes were checked against @huggingface/gguf's table, except Q8_1, where
 * ggml's static_assert (36 bytes: two halves and 32 quants) is the truth. */
static const enum mf_dtype ggml_types[] = {
	[0] = MF_DTYPE_F32, [1] = MF_DTYPE_F16, [2] = MF_DTYPE_Q4_0,
	[3] = MF_DTYPE_Q4_1, [6] = MF_DTYPE_Q5_0, [7] = MF_DTYPE_Q5_1,
	[8] = MF_DTYPE_Q8_0, [9] = MF_DTYPE_Q8_1, [10] = MF_DTYPE_Q2_K,
	[11] = MF_DTYPE_Q3_K, [12] = MF_DTYPE_Q4_K, [13] = MF_DTYPE_Q5_K,
	[14] = MF_DTYPE_Q6_K, [15] = MF_DTYPE_Q8_K, [16] = MF_DTYPE_IQ2_XXS,
	[17] = MF_DTYPE_IQ2_XS, [18] = MF_DTYPE_IQ3_XXS, [19] = MF_DTYPE_IQ1_S,
	[20] = MF_DTYPE_IQ4_NL, [21] = MF_DTYPE_IQ3_S, [22] = MF_DTYPE_IQ2_S,
	[23] = MF_DTYPE_IQ4_XS, [24] = MF_DTYPE_I8, [25] = MF_DTYPE_I16,
	[26] = MF_DTYPE_I32, [27] = MF_DTYPE_I64, [28] = MF_DTYPE_F64,
	[29] = MF_DTYPE_IQ1_M, [30] = MF_DTYPE_BF16, [34] = MF_DTYPE_TQ1_0,
	[35] = MF_DTYPE_TQ2_0, [39] = MF_DTYPE_MXFP4, [40] = MF_DTYPE_NVFP4,
	[41] = MF_DTYPE_Q1_0,
};

/* enum llama_ftype (general.file_type), for the summary only. */
static const char *const gguf_file_types[] = {
	[0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0",
	[8] = "Q5_0", [9] = "Q5_1", [10] = "Q2_K", [11] = "Q3_K_S",
	[12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
	[16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [19] = "IQ2_XXS",
	[20] = "IQ2_XS", [21] = "Q2_K_S", [22] = "IQ3_XS", [23] = "IQ3_XXS",
	[24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M",
	[28] = "IQ2_S", [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M",
	[32] = "BF16", [36] = "TQ1_0", [37] = "TQ2_0", [38] = "MXFP4_MOE",
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

const char *mf_dtype_name(enum mf_dtype dtype)
{
	if ((unsigned)dtype >= MF_DTYPE_COUNT)
		return "unknown";
	return dtypes[dtype].name;
}

const char *mf_format_name(enum mf_format format)
{
	switch (format) {
	case MF_FORMAT_GGUF:
		return "GGUF";
	case MF_FORMAT_SAFETENSORS:
		return "safetensors";
	case MF_FORMAT_HF_CONFIG:
		return "Hugging Face config.json";
	default:
		return "unknown";
	}
}

unsigned mf_dtype_group_width(enum mf_dtype dtype)
{
	if ((unsigned)dtype >= MF_DTYPE_COUNT)
		return 0;
	return dtypes[dtype].group;
}

int mf_dtype_is_quant(enum mf_dtype dtype)
{
	if ((unsigned)dtype >= MF_DTYPE_COUNT)
		return 0;
	return dtypes[dtype].quant;
}

void mf_info_init(struct mf_info *info)
{
	memset(info, 0, sizeof(*info));
}

void mf_info_release(struct mf_info *info)
{
	if (!info)
		return;
	free(info->tensors);
	free(info->by_offset);
	free(info->names);
	mf_info_init(info);
}

__attribute__((format(printf, 3, 4)))
static int fail(struct mf_info *info, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(info->error, sizeof(info->error), fmt, ap);
	va_end(ap);
	info->status = rc;
	return rc;
}

static void copy_str(char *dst, size_t cap, const void *src, size_t len)
{
	size_t i, n = len < cap - 1 ? len : cap - 1;

	memcpy(dst, src, n);
	/* Shown to people: control bytes from a hostile file become '?'. */
	for (i = 0; i < n; i++)
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = '?';
	dst[n] = '\0';
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool mul_ovf(uint64_t a, uint64_t b, uint64_t *ret)
{
	return __builtin_mul_overflow(a, b, ret);
}

static bool add_ovf(uint64_t a, uint64_t b, uint64_t *ret)
{
	return __builtin_add_overflow(a, b, ret);
}

/* ---- tensor table ---- */

static int names_add(struct mf_info *info, const void *s, size_t len, size_t *ret_off)
{
	if (info->names_len + len + 1 > info->names_cap) {
		size_t cap = info->names_cap ? info->names_cap : 4096;
		char *p;

		while (cap < info->names_len + len + 1)
			cap *= 2;
		p = realloc(info->names, cap);
		if (!p)
			return -ENOMEM;
		info->names = p;
		info->names_cap = cap;
	}
	/* Names are shown in listings: control bytes become '?'. */
	copy_str(info->names + info->names_len, len + 1, s, len);
	*ret_off = info->names_len;
	info->names_len += len + 1;
	return 0;
}

static struct mf_tensor *tensor_add(struct mf_info *info)
{
	if (info->n_tensors == info->tensors_cap) {
		size_t cap = info->tensors_cap ? info->tensors_cap * 2 : 64;
		struct mf_tensor *t = realloc(info->tensors, cap * sizeof(*t));

		if (!t)
			return NULL;
		info->tensors = t;
		info->tensors_cap = cap;
	}
	memset(&info->tensors[info->n_tensors], 0, sizeof(struct mf_tensor));
	return &info->tensors[info->n_tensors++];
}

/* Element count and byte size of a tensor, with overflow and block checks. */
static int tensor_size(struct mf_info *info, struct mf_tensor *t, const char *name)
{
	const struct dtype_desc *d = &dtypes[t->dtype];
	uint64_t n = 1, blocks, bytes;
	uint32_t i;

	for (i = 0; i < t->n_dims; i++)
		if (mul_ovf(n, t->shape[i], &n))
			return fail(info, -EOVERFLOW, "tensor '%.64s': element count overflows",
				    name);
	if (d->block > 1 && (t->n_dims == 0 || t->shape[0] % d->block != 0))
		return fail(info, -EINVAL, "tensor '%.64s': %s rows must be a multiple of %u",
			    name, d->name, d->block);
	blocks = n / d->block;
	if (mul_ovf(blocks, d->block_size, &bytes))
		return fail(info, -EOVERFLOW, "tensor '%.64s': byte size overflows", name);
	t->n_elements = n;
	t->size = bytes;
	return 0;
}

static int cmp_offset(const void *a, const void *b, void *arg)
{
	const struct mf_tensor *t = arg;
	uint64_t x = t[*(const uint32_t *)a].offset, y = t[*(const uint32_t *)b].offset;

	return x < y ? -1 : x > y;
}

/* Resolves names, sorts by offset, rejects overlap and bytes past the end,
 * and totals the per-dtype statistics. */
static int finish_tensors(struct mf_info *info)
{
	uint64_t prev_end = 0;
	const char *prev = NULL;
	size_t i;

	if (!info->n_tensors)
		return 0;
	info->by_offset = malloc(info->n_tensors * sizeof(uint32_t));
	if (!info->by_offset)
		return fail(info, -ENOMEM, "out of memory");
	for (i = 0; i < info->n_tensors; i++) {
		struct mf_tensor *t = &info->tensors[i];
		uint64_t end;

		/* During parsing `name` holds the arena offset: the arena moves
		 * as it grows. */
		t->name = info->names + (uintptr_t)t->name;
		if (add_ovf(t->offset, t->size, &end) || end > info->file_size)
			return fail(info, -EOVERFLOW,
				    "tensor '%.64s' ends past the end of the file (%llu bytes)",
				    t->name, (unsigned long long)info->file_size);
		info->by_offset[i] = (uint32_t)i;
		info->dtypes[t->dtype].tensors++;
		info->dtypes[t->dtype].bytes += t->size;
		info->dtypes[t->dtype].elements += t->n_elements;
		info->n_params += t->n_elements;
	}
	qsort_r(info->by_offset, info->n_tensors, sizeof(uint32_t), cmp_offset, info->tensors);
	for (i = 0; i < info->n_tensors; i++) {
		const struct mf_tensor *t = &info->tensors[info->by_offset[i]];

		/* An empty tensor holds no bytes: it may sit anywhere. */
		if (!t->size)
			continue;
		if (prev && t->offset < prev_end)
			return fail(info, -EINVAL, "tensors '%.64s' and '%.64s' overlap", prev,
				    t->name);
		prev_end = t->offset + t->size;
		prev = t->name;
	}
	return 0;
}

/* A failed parse keeps its verdict but no half-built tensor table, whose
 * names may still be arena offsets. */
static void drop_tensors(struct mf_info *info)
{
	free(info->tensors);
	free(info->by_offset);
	free(info->names);
	info->tensors = NULL;
	info->by_offset = NULL;
	info->names = NULL;
	info->n_tensors = info->tensors_cap = 0;
	info->names_len = info->names_cap = 0;
	info->n_params = 0;
	memset(info->dtypes, 0, sizeof(info->dtypes));
}

/* ---- bounded reader ---- */

struct rd {
	const uint8_t *p;
	size_t len;          /* bytes available */
	size_t pos;
	uint64_t file_size;
	uint64_t limit;      /* header limit */
	struct mf_info *info;
};

/* Whether `n` more bytes may be read; the error that explains why not. */
static int rd_need(struct rd *r, uint64_t n, const char *what)
{
	uint64_t end;

	if (n <= r->len - r->pos)
		return 0;
	if (add_ovf(r->pos, n, &end) || end > r->file_size)
		return fail(r->info, -EINVAL, "truncated or malformed: %s at byte %zu runs past the end of the file",
			    what, r->pos);
	if (end > r->limit)
		return fail(r->info, -E2BIG, "header larger than %llu bytes (%s at byte %zu)",
			    (unsigned long long)r->limit, what, r->pos);
	r->info->need = (size_t)end;
	return fail(r->info, -EAGAIN, "need %llu bytes of header", (unsigned long long)end);
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
	int rc = rd_need(r, 4, what);

	if (rc < 0)
		return rc;
	*v = le32(r->p + r->pos);
	r->pos += 4;
	return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
	int rc = rd_need(r, 8, what);

	if (rc < 0)
		return rc;
	*v = le64(r->p + r->pos);
	r->pos += 8;
	return 0;
}

/* A GGUF string: u64 length then bytes (not NUL-terminated). */
static int rd_str(struct rd *r, const uint8_t **s, uint64_t *slen, uint64_t max, const char *what)
{
	int rc = rd_u64(r, slen, what);

	if (rc < 0)
		return rc;
	if (*slen > r->file_size - r->pos)
		return fail(r->info, -EINVAL,
			    "truncated or malformed: %s at byte %zu is longer than the rest of the file",
			    what, r->pos - 8);
	if (*slen > max)
		return fail(r->info, -E2BIG, "%s at byte %zu is %llu bytes long (limit %llu)",
			    what, r->pos - 8, (unsigned long long)*slen,
			    (unsigned long long)max);
	rc = rd_need(r, *slen, what);
	if (rc < 0)
		return rc;
	*s = r->p + r->pos;
	r->pos += *slen;
	return 0;
}

/* ---- GGUF ---- */

enum {
	GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32,
	GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64,
	GGUF_TYPE_COUNT
};

static const uint8_t gguf_type_size[GGUF_TYPE_COUNT] = {
	[GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2,
	[GGUF_U32] = 4, [GGUF_I32] = 4, [GGUF_F32] = 4, [GGUF_BOOL] = 1,
	[GGUF_U64] = 8, [GGUF_I64] = 8, [GGUF_F64] = 8,
};

struct gguf_val {
	uint32_t type;
	uint64_t u;             /* integer types, zero- or sign-extended */
	bool is_int;
	const uint8_t *s;       /* GGUF_STRING */
	uint64_t slen;
};

static int gguf_skip_array(struct rd *r, unsigned depth);

static int gguf_value(struct rd *r, uint32_t type, struct gguf_val *v, unsigned depth)
{
	const uint8_t *p;
	int rc;

	memset(v, 0, sizeof(*v));
	v->type = type;
	if (type >= GGUF_TYPE_COUNT)
		return fail(r->info, -EINVAL, "unknown GGUF value type %u at byte %zu", type,
			    r->pos);
	if (type == GGUF_STRING)
		return rd_str(r, &v->s, &v->slen, MF_HEADER_MAX, "string value");
	if (type == GGUF_ARRAY)
		return gguf_skip_array(r, depth + 1);
	rc = rd_need(r, gguf_type_size[type], "value");
	if (rc < 0)
		return rc;
	p = r->p + r->pos;
	r->pos += gguf_type_size[type];
	v->is_int = true;
	switch (type) {
	case GGUF_U8: case GGUF_BOOL: v->u = p[0]; break;
	case GGUF_I8: v->u = (uint64_t)(int64_t)(int8_t)p[0]; break;
	case GGUF_U16: v->u = (uint64_t)p[0] | (uint64_t)p[1] << 8; break;
	case GGUF_I16: v->u = (uint64_t)(int64_t)(int16_t)(p[0] | p[1] << 8); break;
	case GGUF_U32: v->u = le32(p); break;
	case GGUF_I32: v->u = (uint64_t)(int64_t)(int32_t)le32(p); break;
	case GGUF_U64: case GGUF_I64: v->u = le64(p); break;
	default: v->is_int = false; break;
	}
	return 0;
}

/* Arrays are only skipped (tokenizer vocabularies): fixed-size elements in
 * one bound-checked step, strings one by one. */
static int gguf_skip_array(struct rd *r, unsigned depth)
{
	uint32_t type;
	uint64_t n, i, bytes;
	int rc;

	if (depth > MF_GGUF_ARRAY_DEPTH_MAX)
		return fail(r->info, -E2BIG, "GGUF arrays nested deeper than %d",
			    MF_GGUF_ARRAY_DEPTH_MAX);
	rc = rd_u32(r, &type, "array type");
	if (rc < 0)
		return rc;
	rc = rd_u64(r, &n, "array length");
	if (rc < 0)
		return rc;
	if (type >= GGUF_TYPE_COUNT)
		return fail(r->info, -EINVAL, "unknown GGUF array element type %u", type);
	if (type != GGUF_STRING && type != GGUF_ARRAY) {
		if (mul_ovf(n, gguf_type_size[type], &bytes))
			return fail(r->info, -EOVERFLOW, "GGUF array of %llu elements overflows",
				    (unsigned long long)n);
		rc = rd_need(r, bytes, "array");
		if (rc < 0)
			return rc;
		r->pos += bytes;
		return 0;
	}
	/* Each string or array element takes at least 8 bytes: a count that
	 * cannot fit in the file is rejected before looping over it. */
	if (n > (r->file_size - r->pos) / 8)
		return fail(r->info, -EINVAL, "GGUF array of %llu elements cannot fit in the file",
			    (unsigned long long)n);
	for (i = 0; i < n; i++) {
		struct gguf_val v;

		rc = gguf_value(r, type, &v, depth);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static bool key_is(const uint8_t *k, uint64_t klen, const char *s)
{
	size_t n = strlen(s);

	return klen == n && memcmp(k, s, n) == 0;
}

static bool key_ends(const uint8_t *k, uint64_t klen, const char *s)
{
	size_t n = strlen(s);

	return klen > n && memcmp(k + klen - n, s, n) == 0;
}

static int gguf_kv(struct rd *r, struct mf_info *info, uint64_t *ctx_by_other)
{
	const uint8_t *key;
	uint64_t klen;
	uint32_t type;
	struct gguf_val v;
	int rc;

	rc = rd_str(r, &key, &klen, MF_NAME_MAX, "metadata key");
	if (rc < 0)
		return rc;
	rc = rd_u32(r, &type, "metadata type");
	if (rc < 0)
		return rc;
	rc = gguf_value(r, type, &v, 0);
	if (rc < 0)
		return rc;

	if (key_is(key, klen, "general.architecture") && type == GGUF_STRING) {
		copy_str(info->architecture, sizeof(info->architecture), v.s, v.slen);
	} else if (key_is(key, klen, "general.name") && type == GGUF_STRING) {
		copy_str(info->name, sizeof(info->name), v.s, v.slen);
	} else if (key_is(key, klen, "general.alignment")) {
		if (type != GGUF_U32 || v.u == 0 || (v.u & (v.u - 1)) || v.u > (1u << 30))
			return fail(info, -EINVAL, "general.alignment must be a power of two u32");
		info->alignment = (uint32_t)v.u;
	} else if (key_is(key, klen, "general.file_type") && v.is_int) {
		if (v.u < ARRAY_SIZE(gguf_file_types) && gguf_file_types[v.u])
			snprintf(info->quant, sizeof(info->quant), "%s", gguf_file_types[v.u]);
		else
			snprintf(info->quant, sizeof(info->quant), "file_type %llu",
				 (unsigned long long)v.u);
	} else if (key_ends(key, klen, ".context_length") && v.is_int) {
		size_t alen = strlen(info->architecture);

		/* "<arch>.context_length" is the model's; another prefix (an
		 * adapter, a vision tower) is used only when that is missing. */
		if (alen && klen == alen + 15 && memcmp(key, info->architecture, alen) == 0)
			info->context_length = v.u;
		else if (!*ctx_by_other)
			*ctx_by_other = v.u;
	}
	return 0;
}

static int gguf_tensor(struct rd *r, struct mf_info *info)
{
	const uint8_t *name;
	uint64_t nlen, off;
	uint32_t n_dims, type, i;
	struct mf_tensor *t;
	size_t name_off;
	int rc;

	rc = rd_str(r, &name, &nlen, MF_NAME_MAX, "tensor name");
	if (rc < 0)
		return rc;
	if (memchr(name, 0, nlen))
		return fail(info, -EINVAL, "tensor name at byte %zu contains a NUL byte",
			    r->pos - (size_t)nlen);
	rc = rd_u32(r, &n_dims, "tensor dimensions");
	if (rc < 0)
		return rc;
	if (n_dims > MF_DIMS_MAX)
		return fail(info, -E2BIG, "tensor '%.*s' has %u dimensions (limit %d)",
			    (int)(nlen > 64 ? 64 : nlen), name, n_dims, MF_DIMS_MAX);
	rc = rd_need(r, (uint64_t)n_dims * 8 + 12, "tensor info");
	if (rc < 0)
		return rc;
	if (info->n_tensors >= MF_TENSORS_MAX)
		return fail(info, -E2BIG, "more than %u tensors", MF_TENSORS_MAX);
	rc = names_add(info, name, nlen, &name_off);
	if (rc < 0)
		return fail(info, rc, "out of memory");
	t = tensor_add(info);
	if (!t)
		return fail(info, -ENOMEM, "out of memory");
	t->name = (const char *)(uintptr_t)name_off;
	t->n_dims = n_dims;
	/* Cannot fail: rd_need() above covered these bytes. */
	for (i = 0; i < n_dims; i++)
		t->shape[i] = le64(r->p + r->pos + 8 * i);
	r->pos += 8 * (size_t)n_dims;
	type = le32(r->p + r->pos);
	off = le64(r->p + r->pos + 4);
	r->pos += 12;
	if (type >= ARRAY_SIZE(ggml_types) || ggml_types[type] == MF_DTYPE_UNKNOWN)
		return fail(info, -EINVAL, "tensor '%s' has unknown ggml type %u",
			    info->names + name_off, type);
	t->dtype = ggml_types[type];
	t->offset = off;  /* relative to the data start until it is known */
	if (off % info->alignment)
		return fail(info, -EINVAL, "tensor '%.64s' offset %llu is not aligned to %u",
			    info->names + name_off, (unsigned long long)off, info->alignment);
	return tensor_size(info, t, info->names + name_off);
}

static int gguf_parse(const void *buf, size_t len, uint64_t file_size, struct mf_info *info)
{
	struct rd r = { .p = buf, .len = len, .file_size = file_size,
			.limit = MF_HEADER_MAX, .info = info };
	uint64_t n_tensors, n_kv, i, ctx_other = 0, min_bytes, data;
	uint32_t magic, version;
	int rc;

	mf_info_release(info);
	info->format = MF_FORMAT_GGUF;
	info->file_size = file_size;
	info->alignment = 32;
	if (len > file_size)
		return fail(info, -EINVAL, "prefix of %zu bytes is longer than the file", len);

	if ((rc = rd_u32(&r, &magic, "magic")) < 0)
		return rc;
	if (magic != 0x46554747u) /* "GGUF" */
		return fail(info, -ENOMSG, "no GGUF magic");
	if ((rc = rd_u32(&r, &version, "version")) < 0)
		return rc;
	info->version = version;
	if (version == 0x02000000u || version == 0x03000000u)
		return fail(info, -EINVAL, "big-endian GGUF is not supported");
	if (version == 1)
		return fail(info, -EINVAL, "GGUF v1 (32-bit counts) is not supported");
	if (version != 2 && version != 3)
		return fail(info, -EINVAL, "unknown GGUF version %u", version);
	if ((rc = rd_u64(&r, &n_tensors, "tensor count")) < 0 ||
	    (rc = rd_u64(&r, &n_kv, "metadata count")) < 0)
		return rc;
	info->n_kv = n_kv;
	if (n_tensors > MF_TENSORS_MAX)
		return fail(info, -E2BIG, "header claims %llu tensors (limit %u)",
			    (unsigned long long)n_tensors, MF_TENSORS_MAX);
	if (n_kv > MF_TENSORS_MAX)
		return fail(info, -E2BIG, "header claims %llu metadata pairs (limit %u)",
			    (unsigned long long)n_kv, MF_TENSORS_MAX);
	/* A key/value takes at least 13 bytes, a tensor info 24. */
	min_bytes = 24 + n_kv * 13 + n_tensors * 24;
	if (min_bytes > file_size)
		return fail(info, -EINVAL,
			    "header claims %llu tensors and %llu metadata pairs: more than the file holds",
			    (unsigned long long)n_tensors, (unsigned long long)n_kv);

	for (i = 0; i < n_kv; i++)
		if ((rc = gguf_kv(&r, info, &ctx_other)) < 0)
			return rc;
	if (!info->context_length)
		info->context_length = ctx_other;
	for (i = 0; i < n_tensors; i++)
		if ((rc = gguf_tensor(&r, info)) < 0)
			return rc;

	data = ((uint64_t)r.pos + info->alignment - 1) / info->alignment * info->alignment;
	if (data > file_size)
		return fail(info, -EINVAL, "truncated: tensor data would start at %llu, past the end",
			    (unsigned long long)data);
	info->header_size = r.pos;
	info->data_offset = data;
	for (i = 0; i < info->n_tensors; i++) {
		struct mf_tensor *t = &info->tensors[i];

		if (add_ovf(t->offset, data, &t->offset))
			return fail(info, -EOVERFLOW, "tensor offset overflows");
	}
	if ((rc = finish_tensors(info)) < 0)
		return rc;
	info->status = 0;
	return 0;
}

/* ---- JSON (safetensors header, config.json) ---- */

/* Depth and size are bounded before jansson sees the text, so a hostile
 * header costs a linear scan, not a deep recursion or a huge tree. */
static int json_prescan(struct mf_info *info, const uint8_t *p, size_t n)
{
	size_t i, tokens = 0;
	unsigned depth = 0;
	bool in_str = false, esc = false;

	for (i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			tokens++;
			break;
		case '{': case '[':
			if (++depth > MF_JSON_DEPTH_MAX)
				return fail(info, -E2BIG, "JSON nested deeper than %d",
					    MF_JSON_DEPTH_MAX);
			tokens++;
			break;
		case '}': case ']':
			if (depth)
				depth--;
			break;
		case ',': case ':':
			tokens++;
			break;
		}
		if (tokens > MF_JSON_TOKENS_MAX)
			return fail(info, -E2BIG, "JSON has more than %u tokens", MF_JSON_TOKENS_MAX);
	}
	return 0;
}

static int json_load(struct mf_info *info, const uint8_t *p, size_t n, json_t **ret)
{
	json_error_t err;
	json_t *root;
	int rc;

	rc = json_prescan(info, p, n);
	if (rc < 0)
		return rc;
	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return fail(info, -EINVAL, "invalid JSON at byte %d: %s", err.position, err.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return fail(info, -EINVAL, "JSON header is not an object");
	}
	*ret = root;
	return 0;
}

static enum mf_dtype st_dtype(const char *s)
{
	static const enum mf_dtype plain[] = {
		MF_DTYPE_F64, MF_DTYPE_F32, MF_DTYPE_F16, MF_DTYPE_BF16,
		MF_DTYPE_F8_E4M3, MF_DTYPE_F8_E5M2, MF_DTYPE_I64, MF_DTYPE_I32,
		MF_DTYPE_I16, MF_DTYPE_I8, MF_DTYPE_U64, MF_DTYPE_U32,
		MF_DTYPE_U16, MF_DTYPE_U8, MF_DTYPE_BOOL,
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(plain); i++)
		if (strcmp(s, dtypes[plain[i]].name) == 0)
			return plain[i];
	return MF_DTYPE_UNKNOWN;
}

static int json_u64(json_t *v, uint64_t *ret)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EINVAL;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

static int st_tensor(struct mf_info *info, const char *name, json_t *v, uint64_t data,
		     uint64_t data_len)
{
	json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape");
	json_t *jo = json_object_get(v, "data_offsets");
	uint64_t begin, end, abs;
	struct mf_tensor *t;
	size_t i, name_off;
	int rc;

	if (!json_is_object(v) || !json_is_string(jd) || !json_is_array(js) ||
	    !json_is_array(jo) || json_array_size(jo) != 2)
		return fail(info, -EINVAL,
			    "tensor '%.64s' needs dtype, shape and two data_offsets", name);
	if (strlen(name) > MF_NAME_MAX)
		return fail(info, -E2BIG, "tensor name longer than %d bytes", MF_NAME_MAX);
	if (json_array_size(js) > MF_DIMS_MAX)
		return fail(info, -E2BIG, "tensor '%.64s' has %zu dimensions (limit %d)", name,
			    json_array_size(js), MF_DIMS_MAX);
	if (info->n_tensors >= MF_TENSORS_MAX)
		return fail(info, -E2BIG, "more than %u tensors", MF_TENSORS_MAX);
	rc = names_add(info, name, strlen(name), &name_off);
	if (rc < 0)
		return fail(info, rc, "out of memory");
	t = tensor_add(info);
	if (!t)
		return fail(info, -ENOMEM, "out of memory");
	t->name = (const char *)(uintptr_t)name_off;
	t->dtype = st_dtype(json_string_value(jd));
	if (t->dtype == MF_DTYPE_UNKNOWN)
		return fail(info, -EINVAL, "tensor '%.64s' has unknown dtype '%.16s'", name,
			    json_string_value(jd));
	t->n_dims = (uint32_t)json_array_size(js);
	for (i = 0; i < t->n_dims; i++)
		if (json_u64(json_array_get(js, i), &t->shape[i]) < 0)
			return fail(info, -EINVAL, "tensor '%.64s' has a bad shape", name);
	if (json_u64(json_array_get(jo, 0), &begin) < 0 ||
	    json_u64(json_array_get(jo, 1), &end) < 0 || end < begin)
		return fail(info, -EINVAL, "tensor '%.64s' has bad data_offsets", name);
	if (end > data_len)
		return fail(info, -EOVERFLOW, "tensor '%.64s' ends at %llu, past the %llu data bytes",
			    name, (unsigned long long)end, (unsigned long long)data_len);
	rc = tensor_size(info, t, name);
	if (rc < 0)
		return rc;
	if (t->size != end - begin)
		return fail(info, -EINVAL, "tensor '%.64s' is %llu bytes but its shape needs %llu",
			    name, (unsigned long long)(end - begin), (unsigned long long)t->size);
	abs = data + begin;
	t->offset = abs;
	return 0;
}

static int st_parse(const void *buf, size_t len, uint64_t file_size, struct mf_info *info)
{
	const uint8_t *p = buf;
	uint64_t n, data;
	json_t *root = NULL, *v;
	const char *key;
	int rc;

	mf_info_release(info);
	info->format = MF_FORMAT_SAFETENSORS;
	info->file_size = file_size;
	if (len > file_size)
		return fail(info, -EINVAL, "prefix of %zu bytes is longer than the file", len);
	if (file_size < 8)
		return fail(info, -EINVAL, "truncated: %llu bytes is shorter than the length field",
			    (unsigned long long)file_size);
	if (len < 8) {
		info->need = 8;
		return fail(info, -EAGAIN, "need 8 bytes of header");
	}
	n = le64(p);
	if (n > file_size - 8)
		return fail(info, -EINVAL, "header length %llu runs past the end of the file",
			    (unsigned long long)n);
	if (n > MF_ST_HEADER_MAX)
		return fail(info, -E2BIG, "header of %llu bytes (limit %u)", (unsigned long long)n,
			    MF_ST_HEADER_MAX);
	if (n < 2)
		return fail(info, -EINVAL, "header of %llu bytes cannot hold a JSON object",
			    (unsigned long long)n);
	data = 8 + n;
	if (len < data) {
		info->need = (size_t)data;
		return fail(info, -EAGAIN, "need %llu bytes of header", (unsigned long long)data);
	}
	info->header_size = data;
	info->data_offset = data;
	rc = json_load(info, p + 8, (size_t)n, &root);
	if (rc < 0)
		return rc;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			if (!json_is_object(v)) {
				rc = fail(info, -EINVAL, "__metadata__ is not an object");
				goto out;
			}
			info->n_kv = json_object_size(v);
			continue;
		}
		rc = st_tensor(info, key, v, data, file_size - data);
		if (rc < 0)
			goto out;
	}
	rc = finish_tensors(info);
	if (rc < 0)
		goto out;
	info->status = 0;
out:
	json_decref(root);
	return rc;
}

static json_t *config_get(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key), *sub;

	if (v)
		return v;
	/* Multimodal configs keep the language model's facts in a
	 * sub-object. */
	sub = json_object_get(root, "text_config");
	return json_is_object(sub) ? json_object_get(sub, key) : NULL;
}

static enum mf_dtype config_dtype(const char *s)
{
	if (!strcmp(s, "bfloat16"))
		return MF_DTYPE_BF16;
	if (!strcmp(s, "float16") || !strcmp(s, "half"))
		return MF_DTYPE_F16;
	if (!strcmp(s, "float32") || !strcmp(s, "float"))
		return MF_DTYPE_F32;
	if (!strcmp(s, "float64"))
		return MF_DTYPE_F64;
	return MF_DTYPE_UNKNOWN;
}

int mf_parse_config(const void *buf, size_t len, uint64_t file_size, struct mf_info *info)
{
	static const char *const ctx_keys[] = {
		"max_position_embeddings", "n_positions", "max_sequence_length",
		"seq_length", "n_ctx",
	};
	json_t *root = NULL, *v, *q;
	size_t i;
	int rc;

	mf_info_release(info);
	info->format = MF_FORMAT_HF_CONFIG;
	info->file_size = file_size;
	if (len > file_size)
		return fail(info, -EINVAL, "prefix of %zu bytes is longer than the file", len);
	if (file_size > MF_CONFIG_MAX)
		return fail(info, -E2BIG, "config of %llu bytes (limit %u)",
			    (unsigned long long)file_size, MF_CONFIG_MAX);
	if (len < file_size) {
		info->need = (size_t)file_size;
		return fail(info, -EAGAIN, "need the whole config (%llu bytes)",
			    (unsigned long long)file_size);
	}
	rc = json_load(info, buf, len, &root);
	if (rc < 0)
		return rc;
	info->header_size = file_size;

	v = json_object_get(root, "architectures");
	if (json_is_array(v) && json_is_string(json_array_get(v, 0)))
		snprintf(info->arch_class, sizeof(info->arch_class), "%s",
			 json_string_value(json_array_get(v, 0)));
	v = config_get(root, "model_type");
	if (json_is_string(v))
		snprintf(info->architecture, sizeof(info->architecture), "%s",
			 json_string_value(v));
	if (!info->architecture[0] && !info->arch_class[0]) {
		rc = fail(info, -ENOMSG, "JSON without model_type or architectures: not a model config");
		goto out;
	}
	v = json_object_get(root, "_name_or_path");
	if (json_is_string(v))
		snprintf(info->name, sizeof(info->name), "%s", json_string_value(v));
	for (i = 0; i < ARRAY_SIZE(ctx_keys) && !info->context_length; i++) {
		v = config_get(root, ctx_keys[i]);
		if (json_is_integer(v) && json_integer_value(v) > 0)
			info->context_length = (uint64_t)json_integer_value(v);
	}
	v = config_get(root, "torch_dtype");
	if (!v)
		v = config_get(root, "dtype");
	if (json_is_string(v))
		info->config_dtype = config_dtype(json_string_value(v));
	q = json_object_get(root, "quantization_config");
	if (json_is_object(q)) {
		json_t *m = json_object_get(q, "quant_method"), *b = json_object_get(q, "bits");

		if (json_is_integer(b))
			snprintf(info->quant, sizeof(info->quant), "%.16s %lld-bit",
				 json_is_string(m) ? json_string_value(m) : "quantized",
				 (long long)json_integer_value(b));
		else
			snprintf(info->quant, sizeof(info->quant), "%.24s",
				 json_is_string(m) ? json_string_value(m) : "quantized");
	}
	/* Names came from the file: keep them printable. */
	copy_str(info->architecture, sizeof(info->architecture), info->architecture,
		 strlen(info->architecture));
	copy_str(info->arch_class, sizeof(info->arch_class), info->arch_class,
		 strlen(info->arch_class));
	copy_str(info->name, sizeof(info->name), info->name, strlen(info->name));
	copy_str(info->quant, sizeof(info->quant), info->quant, strlen(info->quant));
	info->status = 0;
out:
	json_decref(root);
	return rc;
}

int mf_parse(const void *buf, size_t len, uint64_t file_size, struct mf_info *info)
{
	const uint8_t *p = buf;
	size_t i;

	if (len >= 4 && memcmp(p, "GGUF", 4) == 0)
		return mf_parse_gguf(buf, len, file_size, info);
	/* safetensors: a length that fits the file, then '{'. */
	if (len >= 9 && file_size >= 9 && le64(p) >= 2 && le64(p) <= file_size - 8 &&
	    p[8] == '{')
		return mf_parse_safetensors(buf, len, file_size, info);
	for (i = 0; i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'); i++)
		;
	if (i < len && p[i] == '{' && file_size <= MF_CONFIG_MAX)
		return mf_parse_config(buf, len, file_size, info);

	mf_info_release(info);
	info->file_size = file_size;
	if (len < 9 && len < file_size) {
		info->need = file_size < 9 ? (size_t)file_size : 9;
		return fail(info, -EAGAIN, "need %zu bytes to recognise the format", info->need);
	}
	if (i == len && len < file_size && len < 4096) {
		/* Only whitespace so far: it may still become a config. */
		info->need = file_size < 4096 ? (size_t)file_size : 4096;
		return fail(info, -EAGAIN, "need %zu bytes to recognise the format", info->need);
	}
	return fail(info, -ENOMSG, "not a GGUF, safetensors or config.json file");
}

void mf_info_merge_config(struct mf_info *model, const struct mf_info *config)
{
	if (config->status != 0 || config->format != MF_FORMAT_HF_CONFIG)
		return;
	if (!model->architecture[0])
		memcpy(model->architecture, config->architecture, sizeof(model->architecture));
	if (!model->arch_class[0])
		memcpy(model->arch_class, config->arch_class, sizeof(model->arch_class));
	if (!model->name[0])
		memcpy(model->name, config->name, sizeof(model->name));
	if (!model->quant[0])
		memcpy(model->quant, config->quant, sizeof(model->quant));
	if (!model->context_length)
		model->context_length = config->context_length;
	if (!model->config_dtype)
		model->config_dtype = config->config_dtype;
}

/* ---- lookups ---- */

/* Index into by_offset of the last tensor starting at or before `off`, or
 * -1 when every tensor starts after it. */
static ssize_t last_at_or_before(const struct mf_info *info, uint64_t off)
{
	size_t lo = 0, hi = info->n_tensors;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (info->tensors[info->by_offset[mid]].offset <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (ssize_t)lo - 1;
}

ssize_t mf_tensor_starts(const struct mf_info *info, uint64_t **ret_starts)
{
	return mf_tensor_cuts(info, 0, ret_starts);
}

ssize_t mf_tensor_cuts(const struct mf_info *info, uint64_t min_bytes, uint64_t **ret_cuts)
{
	uint64_t *s;
	size_t i, n = 0;

	*ret_cuts = NULL;
	if (info->status != 0 || !info->n_tensors)
		return 0;
	s = malloc(info->n_tensors * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (i = 0; i < info->n_tensors; i++) {
		const struct mf_tensor *t = &info->tensors[info->by_offset[i]];

		if (t->size >= min_bytes && (!n || s[n - 1] != t->offset))
			s[n++] = t->offset;
	}
	if (!n) {
		free(s);
		s = NULL;
	}
	*ret_cuts = s;
	return (ssize_t)n;
}

const struct mf_tensor *mf_tensor_at(const struct mf_info *info, uint64_t off)
{
	ssize_t i;
	const struct mf_tensor *t;

	if (info->status != 0 || !info->n_tensors)
		return NULL;
	i = last_at_or_before(info, off);
	if (i < 0)
		return NULL;
	/* Zero-sized tensors share a start with the next one: walk back to a
	 * tensor that actually holds the byte. */
	for (; i >= 0; i--) {
		t = &info->tensors[info->by_offset[i]];
		if (off < t->offset + t->size)
			return t;
		if (t->size)
			break;
	}
	return NULL;
}

enum mf_dtype mf_dtype_at(const struct mf_info *info, uint64_t start, uint64_t end)
{
	uint64_t cover[MF_DTYPE_COUNT] = { 0 }, best = 0;
	enum mf_dtype ret = MF_DTYPE_UNKNOWN;
	ssize_t i;
	size_t j;

	if (info->status != 0 || !info->n_tensors || end <= start)
		return MF_DTYPE_UNKNOWN;
	i = last_at_or_before(info, start);
	for (j = i < 0 ? 0 : (size_t)i; j < info->n_tensors; j++) {
		const struct mf_tensor *t = &info->tensors[info->by_offset[j]];
		uint64_t a = t->offset > start ? t->offset : start;
		uint64_t b = t->offset + t->size < end ? t->offset + t->size : end;

		if (t->offset >= end)
			break;
		if (b > a)
			cover[t->dtype] += b - a;
	}
	for (j = 1; j < MF_DTYPE_COUNT; j++)
		if (cover[j] > best) {
			best = cover[j];
			ret = (enum mf_dtype)j;
		}
	return ret;
}

/* ---- text ---- */

static void fmt_bytes(char *buf, size_t cap, uint64_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, cap, "%.1f %s", v, units[u]);
}

static void fmt_count(char *buf, size_t cap, uint64_t n)
{
	if (n >= 1000000000ull)
		snprintf(buf, cap, "%.2f B (%llu)", n / 1e9, (unsigned long long)n);
	else if (n >= 1000000ull)
		snprintf(buf, cap, "%.2f M (%llu)", n / 1e6, (unsigned long long)n);
	else
		snprintf(buf, cap, "%llu", (unsigned long long)n);
}

static const char *failure_kind(int status)
{
	switch (status) {
	case -ENOMSG:
		return "not a model file";
	case -EAGAIN:
		return "header incomplete";
	case -E2BIG:
		return "header exceeds the parser's limits";
	case -ENOMEM:
		return "out of memory while parsing";
	default:
		return "truncated or malformed model file";
	}
}

static ssize_t stream_done(FILE *f, char **text, size_t *size, char **ret_text)
{
	if (fclose(f) != 0 || !*text) {
		free(*text);
		return -ENOMEM;
	}
	*ret_text = *text;
	return (ssize_t)*size;
}

ssize_t mf_info_summary(const struct mf_info *info, const char *filename, char **ret_text)
{
	char *text = NULL, a[64], b[64];
	size_t size = 0, i;
	FILE *f = open_memstream(&text, &size);

	if (!f)
		return -ENOMEM;
	if (filename)
		fprintf(f, "file: %s\n", filename);
	fmt_bytes(a, sizeof(a), info->file_size);
	if (info->file_size == MF_SIZE_UNKNOWN)
		fprintf(f, "size: not known yet (still being written)\n");
	else
		fprintf(f, "size: %s (%llu bytes)\n", a, (unsigned long long)info->file_size);
	if (info->status != 0) {
		/* -ENOMSG: the format guess (a JSON object) was wrong. */
		fprintf(f, "format: %s\n", info->format && info->status != -ENOMSG ?
			mf_format_name(info->format) : "unrecognised");
		fprintf(f, "note: %s; stored as plain bytes\n", failure_kind(info->status));
		fprintf(f, "reason: %s\n", info->error);
		return stream_done(f, &text, &size, ret_text);
	}
	if (info->format == MF_FORMAT_GGUF)
		fprintf(f, "format: GGUF v%u\n", info->version);
	else
		fprintf(f, "format: %s\n", mf_format_name(info->format));
	if (info->architecture[0])
		fprintf(f, "architecture: %s\n", info->architecture);
	if (info->arch_class[0])
		fprintf(f, "class: %s\n", info->arch_class);
	if (info->name[0])
		fprintf(f, "name: %s\n", info->name);
	if (info->format != MF_FORMAT_HF_CONFIG) {
		fmt_count(a, sizeof(a), info->n_params);
		fprintf(f, "parameters: %s\n", a);
	}
	if (info->context_length)
		fprintf(f, "context length: %llu\n", (unsigned long long)info->context_length);
	if (info->quant[0])
		fprintf(f, "quantisation: %s\n", info->quant);
	if (info->config_dtype)
		fprintf(f, "config dtype: %s\n", mf_dtype_name(info->config_dtype));
	if (info->format == MF_FORMAT_HF_CONFIG)
		return stream_done(f, &text, &size, ret_text);
	fprintf(f, "tensors: %zu\n", info->n_tensors);
	fprintf(f, "metadata keys: %llu\n", (unsigned long long)info->n_kv);
	fmt_bytes(a, sizeof(a), info->header_size);
	fprintf(f, "header: %s (tensor data from byte %llu", a,
		(unsigned long long)info->data_offset);
	if (info->format == MF_FORMAT_GGUF)
		fprintf(f, ", alignment %u", info->alignment);
	fprintf(f, ")\n");
	fprintf(f, "dtypes:\n");
	for (i = 1; i < MF_DTYPE_COUNT; i++) {
		const struct mf_dtype_stat *s = &info->dtypes[i];
		bool known = info->file_size && info->file_size != MF_SIZE_UNKNOWN;
		double share = known ? 100.0 * (double)s->bytes / (double)info->file_size : 0;

		if (!s->tensors)
			continue;
		fmt_bytes(b, sizeof(b), s->bytes);
		fprintf(f, "  %-8s %7llu tensors %12s", dtypes[i].name,
			(unsigned long long)s->tensors, b);
		if (known)
			fprintf(f, " %5.1f%% of the file", share);
		fprintf(f, "\n");
	}
	return stream_done(f, &text, &size, ret_text);
}

ssize_t mf_info_tensor_list(const struct mf_info *info, char **ret_text)
{
	char *text = NULL;
	size_t size = 0, i;
	uint32_t d;
	FILE *f = open_memstream(&text, &size);

	if (!f)
		return -ENOMEM;
	for (i = 0; info->status == 0 && i < info->n_tensors; i++) {
		const struct mf_tensor *t = &info->tensors[i];

		fprintf(f, "%llu %llu %s [", (unsigned long long)t->offset,
			(unsigned long long)t->size, dtypes[t->dtype].name);
		for (d = 0; d < t->n_dims; d++)
			fprintf(f, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
		fprintf(f, "] %s\n", t->name);
	}
	return stream_done(f, &text, &size, ret_text);
}

int mf_parse_gguf(const void *buf, size_t len, uint64_t file_size, struct mf_info *info)
{
	int rc = gguf_parse(buf, len, file_size, info);

	if (rc < 0)
		drop_tensors(info);
	return rc;
}

int mf_parse_safetensors(const void *buf, size_t len, uint64_t file_size, struct mf_info *info)
{
	int rc = st_parse(buf, len, file_size, info);

	if (rc < 0)
		drop_tensors(info);
	return rc;
}
