/* mkmodel: writes small GGUF and safetensors files in memory for the tests
 * and the fuzz seed corpus.  Header-only: every test program includes it.
 *
 * A `struct buf` grows with realloc and aborts on allocation failure (test
 * code only).  GGUF files are laid out as llama.cpp writes them: header,
 * key/values, tensor infos, padding to the alignment, tensor data.
 */
#ifndef LLMFS_TESTS_MKMODEL_H
#define LLMFS_TESTS_MKMODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static inline void buf_put(struct buf *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, src, n);
	b->len += n;
}

static inline void buf_u8(struct buf *b, uint8_t v)
{
	buf_put(b, &v, 1);
}

static inline void buf_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	buf_put(b, x, 4);
}

static inline void buf_u64(struct buf *b, uint64_t v)
{
	buf_u32(b, (uint32_t)v);
	buf_u32(b, (uint32_t)(v >> 32));
}

static inline void buf_zero(struct buf *b, size_t n)
{
	while (n--)
		buf_u8(b, 0);
}

static inline void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* GGUF value types and ggml tensor types used by the tests. */
enum { G_U32 = 4, G_F32 = 6, G_STRING = 8, G_ARRAY = 9, G_U64 = 10 };
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_BF16 = 30 };

static inline void gguf_str(struct buf *b, const char *s)
{
	buf_u64(b, strlen(s));
	buf_put(b, s, strlen(s));
}

static inline void gguf_kv_str(struct buf *b, const char *k, const char *v)
{
	gguf_str(b, k);
	buf_u32(b, G_STRING);
	gguf_str(b, v);
}

static inline void gguf_kv_u32(struct buf *b, const char *k, uint32_t v)
{
	gguf_str(b, k);
	buf_u32(b, G_U32);
	buf_u32(b, v);
}

struct mk_tensor {
	const char *name;
	uint32_t type;        /* ggml type */
	uint32_t n_dims;
	uint64_t dims[4];
	uint64_t bytes;       /* data bytes */
};

/* A GGUF v`version` file: architecture, name, context length, a
 * tokenizer-like string array, then the tensors with data bytes derived
 * from their index, each aligned to `align` (32 when 0: then no
 * general.alignment key is written).  Returns the offset of the data
 * region. */
static inline uint64_t mk_gguf(struct buf *b, uint32_t version, uint32_t align,
			       const struct mk_tensor *t, size_t n)
{
	uint64_t off = 0, offs[64], data;
	uint32_t a = align ? align : 32;
	size_t i, kv = align ? 6 : 5;

	buf_put(b, "GGUF", 4);
	buf_u32(b, version);
	buf_u64(b, n);
	buf_u64(b, kv);
	gguf_kv_str(b, "general.architecture", "llama");
	gguf_kv_str(b, "general.name", "tiny test model");
	gguf_kv_u32(b, "llama.context_length", 4096);
	gguf_kv_u32(b, "general.file_type", 7);
	if (align)
		gguf_kv_u32(b, "general.alignment", align);
	gguf_str(b, "tokenizer.ggml.tokens");
	buf_u32(b, G_ARRAY);
	buf_u32(b, G_STRING);
	buf_u64(b, 3);
	gguf_str(b, "<s>");
	gguf_str(b, "</s>");
	gguf_str(b, "hello");
	for (i = 0; i < n && i < 64; i++) {
		uint32_t d;

		gguf_str(b, t[i].name);
		buf_u32(b, t[i].n_dims);
		for (d = 0; d < t[i].n_dims; d++)
			buf_u64(b, t[i].dims[d]);
		buf_u32(b, t[i].type);
		buf_u64(b, off);
		offs[i] = off;
		off = (off + t[i].bytes + a - 1) / a * a;
	}
	data = (b->len + a - 1) / a * a;
	buf_zero(b, data - b->len);
	for (i = 0; i < n && i < 64; i++) {
		uint64_t j;

		buf_zero(b, data + offs[i] - b->len);
		for (j = 0; j < t[i].bytes; j++)
			buf_u8(b, (uint8_t)(i * 31 + j));
	}
	return data;
}

/* A safetensors file from a JSON header and `data_len` data bytes. */
static inline void mk_safetensors(struct buf *b, const char *json, size_t data_len)
{
	size_t i;

	buf_u64(b, strlen(json));
	buf_put(b, json, strlen(json));
	for (i = 0; i < data_len; i++)
		buf_u8(b, (uint8_t)(i * 7));
}

#endif
