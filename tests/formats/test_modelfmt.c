/* Unit tests for common/modelfmt: GGUF v2/v3 and safetensors files built
 * here, streamed prefixes, hostile headers, config.json, lookups and the
 * summary text. */
#include "common/modelfmt.h"
#include "mkmodel.h"

#include "tests/check.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* a modelfmt call's return code, with the error it gave */
#define CHECK_MF(rc, want, info)                                                  \
	do {                                                                      \
		int rc_ = (rc);                                                   \
		CHECK_MSG(rc_ == (want), "rc %d, want %d (%s)", rc_, (want),      \
			  (info)->error);                                         \
	} while (0)

static const struct mk_tensor tiny[] = {
	{ "token_embd.weight", GGML_F32, 2, { 8, 4 }, 128 },
	{ "blk.0.attn_q.weight", GGML_Q8_0, 2, { 64, 2 }, 136 },
	{ "output_norm.weight", GGML_BF16, 1, { 16 }, 32 },
	{ "blk.0.ffn_down.weight", GGML_Q4_K, 2, { 256, 1 }, 144 },
};

static void test_gguf(uint32_t version, uint32_t align)
{
	struct buf b = { 0 };
	struct mf_info info;
	uint64_t data = mk_gguf(&b, version, align, tiny, 4), *starts = NULL;
	uint32_t a = align ? align : 32;
	ssize_t n;
	size_t i;

	mf_info_init(&info);
	CHECK_MF(mf_parse(b.p, b.len, b.len, &info), 0, &info);
	CHECK(info.format == MF_FORMAT_GGUF);
	CHECK(info.version == version);
	CHECK(info.alignment == a);
	CHECK(info.data_offset == data && data % a == 0);
	CHECK(!strcmp(info.architecture, "llama"));
	CHECK(!strcmp(info.name, "tiny test model"));
	CHECK(!strcmp(info.quant, "Q8_0"));
	CHECK(info.context_length == 4096);
	CHECK(info.n_tensors == 4);
	CHECK(info.n_kv == (align ? 6u : 5u));
	CHECK(info.n_params == 32 + 128 + 16 + 256);
	CHECK(info.dtypes[MF_DTYPE_Q8_0].tensors == 1 && info.dtypes[MF_DTYPE_Q8_0].bytes == 136);
	CHECK(info.dtypes[MF_DTYPE_Q4_K].bytes == 144);
	CHECK(info.dtypes[MF_DTYPE_BF16].elements == 16);
	for (i = 0; i < 4; i++) {
		const struct mf_tensor *t = &info.tensors[i];

		CHECK(!strcmp(t->name, tiny[i].name));
		CHECK(t->size == tiny[i].bytes);
		CHECK(t->offset % a == 0 && t->offset >= data);
		/* The bytes at the offset are the ones the writer put there. */
		CHECK(b.p[t->offset] == (uint8_t)(i * 31) &&
		      b.p[t->offset + t->size - 1] == (uint8_t)(i * 31 + t->size - 1));
		CHECK(mf_tensor_at(&info, t->offset) == t);
		CHECK(mf_tensor_at(&info, t->offset + t->size - 1) == t);
		CHECK(mf_dtype_at(&info, t->offset, t->offset + t->size) == t->dtype);
	}
	CHECK(mf_tensor_at(&info, 0) == NULL);
	CHECK(mf_dtype_at(&info, 0, data) == MF_DTYPE_UNKNOWN);
	/* A range over the F32 tensor and a few header bytes is mostly F32. */
	CHECK(mf_dtype_at(&info, data - 8, data + 128) == MF_DTYPE_F32);
	n = mf_tensor_starts(&info, &starts);
	CHECK(n == 4);
	for (i = 1; n == 4 && i < 4; i++)
		CHECK(starts[i] > starts[i - 1]);
	CHECK(n == 4 && starts[0] == data);
	free(starts);
	/* Only tensors of 100 bytes or more start a chunk: not the 32-byte
	 * norm. */
	n = mf_tensor_cuts(&info, 100, &starts);
	CHECK(n == 3 && starts[0] == data && starts[1] == info.tensors[1].offset &&
	      starts[2] == info.tensors[3].offset);
	free(starts);
	n = mf_tensor_cuts(&info, 1u << 20, &starts);
	CHECK(n == 0 && starts == NULL);
	CHECK(mf_dtype_group_width(MF_DTYPE_BF16) == 2 && mf_dtype_group_width(MF_DTYPE_F32) == 4 &&
	      mf_dtype_group_width(MF_DTYPE_Q8_0) == 0 && mf_dtype_is_quant(MF_DTYPE_Q4_K));
	mf_info_release(&info);
	buf_free(&b);
}

/* Feeding growing prefixes, as the store does while a file streams in:
 * every prefix shorter than the header asks for more, never for more than
 * the file, and the full header parses. */
static void test_gguf_stream(void)
{
	struct buf b = { 0 };
	struct mf_info info;
	size_t len, header, steps = 0;
	int rc;

	mk_gguf(&b, 3, 0, tiny, 4);
	mf_info_init(&info);
	CHECK_MF(mf_parse(b.p, b.len, b.len, &info), 0, &info);
	header = info.header_size;
	for (len = 0; len < b.len; len++) {
		rc = mf_parse(b.p, len, b.len, &info);
		if (len < header) {
			CHECK_MF(rc, -EAGAIN, &info);
			CHECK(info.need > len && info.need <= header);
		} else {
			CHECK_MF(rc, 0, &info);
		}
	}
	for (len = 16;; steps++) {
		rc = mf_parse(b.p, len, b.len, &info);
		if (rc != -EAGAIN)
			break;
		len = info.need > 2 * len ? info.need : 2 * len;
		if (len > b.len)
			len = b.len;
	}
	CHECK_MF(rc, 0, &info);
	CHECK(steps > 0 && steps < 8);

	/* While the file is still being written its size is unknown: the
	 * header parses, and the real size is checked at the end. */
	for (len = 0; len < header; len++) {
		CHECK_MF(mf_parse(b.p, len, MF_SIZE_UNKNOWN, &info), -EAGAIN, &info);
		CHECK(info.need > len && info.need <= header);
	}
	CHECK_MF(mf_parse(b.p, header, MF_SIZE_UNKNOWN, &info), 0, &info);
	CHECK(info.n_tensors == 4);
	{
		char *text = NULL;

		CHECK(mf_info_summary(&info, NULL, &text) > 0 && strstr(text, "not known yet") &&
		      !strstr(text, "% of the file"));
		free(text);
	}
	CHECK_MF(mf_parse(b.p, header, b.len, &info), 0, &info);
	CHECK_MF(mf_parse(b.p, header, b.len - 1, &info), -EOVERFLOW, &info);
	mf_info_release(&info);
	buf_free(&b);
}

/* One GGUF header with a hostile field; the parse must fail with `want`. */
static void gguf_hostile(const char *what, int want, void (*patch)(struct buf *))
{
	struct buf b = { 0 };
	struct mf_info info;
	int rc;

	patch(&b);
	mf_info_init(&info);
	rc = mf_parse(b.p, b.len, b.len, &info);
	if (rc != want) {
		fprintf(stderr, "hostile GGUF '%s': rc %d, want %d (%s)\n", what, rc, want,
			info.error);
		check_failures++;
	}
	CHECK(info.status == rc && (rc == 0 || info.error[0]));
	CHECK(info.n_tensors == 0 || rc == 0);
	mf_info_release(&info);
	buf_free(&b);
}

static void hdr(struct buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
	buf_put(b, "GGUF", 4);
	buf_u32(b, version);
	buf_u64(b, n_tensors);
	buf_u64(b, n_kv);
}

static void pad(struct buf *b)
{
	buf_zero(b, 4096);
}

static void p_billions(struct buf *b) { hdr(b, 3, 3000000000ull, 0); pad(b); }
static void p_more_than_file(struct buf *b) { hdr(b, 3, 1000, 0); pad(b); }
static void p_kv_count(struct buf *b) { hdr(b, 3, 0, 1ull << 62); pad(b); }
static void p_v1(struct buf *b) { hdr(b, 1, 0, 0); pad(b); }
static void p_big_endian(struct buf *b) { hdr(b, 0x03000000, 0, 0); pad(b); }
static void p_v9(struct buf *b) { hdr(b, 9, 0, 0); pad(b); }
static void p_bad_magic(struct buf *b) { buf_put(b, "GGUG", 4); pad(b); }

static void p_huge_key(struct buf *b)
{
	hdr(b, 3, 0, 1);
	buf_u64(b, ~0ull);
	pad(b);
}

static void p_long_key(struct buf *b)
{
	hdr(b, 3, 0, 1);
	buf_u64(b, 8192);
	buf_zero(b, 16384);
}

static void p_huge_string(struct buf *b)
{
	hdr(b, 3, 0, 1);
	gguf_str(b, "general.name");
	buf_u32(b, G_STRING);
	buf_u64(b, 1ull << 40);
	pad(b);
}

static void p_array_overflow(struct buf *b)
{
	hdr(b, 3, 0, 1);
	gguf_str(b, "a");
	buf_u32(b, G_ARRAY);
	buf_u32(b, G_U64);
	buf_u64(b, 1ull << 62);
	pad(b);
}

static void p_array_of_strings(struct buf *b)
{
	hdr(b, 3, 0, 1);
	gguf_str(b, "a");
	buf_u32(b, G_ARRAY);
	buf_u32(b, G_STRING);
	buf_u64(b, 1ull << 40);
	pad(b);
}

static void p_array_deep(struct buf *b)
{
	int i;

	hdr(b, 3, 0, 1);
	gguf_str(b, "a");
	buf_u32(b, G_ARRAY);
	for (i = 0; i < 10; i++) {
		buf_u32(b, G_ARRAY);
		buf_u64(b, 1);
	}
	pad(b);
}

static void p_bad_value_type(struct buf *b)
{
	hdr(b, 3, 0, 1);
	gguf_str(b, "a");
	buf_u32(b, 13);
	pad(b);
}

static void p_bad_alignment(struct buf *b)
{
	hdr(b, 3, 0, 1);
	gguf_kv_u32(b, "general.alignment", 48);
	pad(b);
}

static void tensor_info(struct buf *b, const char *name, uint32_t n_dims, const uint64_t *dims,
			uint32_t type, uint64_t off)
{
	uint32_t i;

	gguf_str(b, name);
	buf_u32(b, n_dims);
	for (i = 0; i < n_dims; i++)
		buf_u64(b, dims[i]);
	buf_u32(b, type);
	buf_u64(b, off);
}

static void p_dims_overflow(struct buf *b)
{
	uint64_t d[3] = { 1ull << 32, 1ull << 32, 2 };

	hdr(b, 3, 1, 0);
	tensor_info(b, "t", 3, d, GGML_F32, 0);
	pad(b);
}

static void p_too_many_dims(struct buf *b)
{
	uint64_t d[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };

	hdr(b, 3, 1, 0);
	tensor_info(b, "t", 9, d, GGML_F32, 0);
	pad(b);
}

static void p_offset_past_end(struct buf *b)
{
	uint64_t d[1] = { 4 };

	hdr(b, 3, 1, 0);
	tensor_info(b, "t", 1, d, GGML_F32, 1ull << 40);
	pad(b);
}

static void p_offset_wraps(struct buf *b)
{
	uint64_t d[1] = { 4 };

	hdr(b, 3, 1, 0);
	tensor_info(b, "t", 1, d, GGML_F32, ~0ull - 31);
	pad(b);
}

static void p_unaligned(struct buf *b)
{
	uint64_t d[1] = { 4 };

	hdr(b, 3, 1, 0);
	tensor_info(b, "t", 1, d, GGML_F32, 4);
	pad(b);
}

static void p_removed_type(struct buf *b)
{
	uint64_t d[1] = { 32 };

	hdr(b, 3, 1, 0);
	tensor_info(b, "t", 1, d, 4, 0);
	pad(b);
}

static void p_partial_block(struct buf *b)
{
	uint64_t d[1] = { 33 };

	hdr(b, 3, 1, 0);
	tensor_info(b, "t", 1, d, GGML_Q8_0, 0);
	pad(b);
}

static void p_overlap(struct buf *b)
{
	uint64_t d[1] = { 16 };

	hdr(b, 3, 2, 0);
	tensor_info(b, "a", 1, d, GGML_F32, 0);
	tensor_info(b, "b", 1, d, GGML_F32, 32);
	pad(b);
}

static void p_nul_name(struct buf *b)
{
	uint64_t d[1] = { 4 };

	hdr(b, 3, 1, 0);
	buf_u64(b, 3);
	buf_put(b, "a\0b", 3);
	buf_u32(b, 1);
	buf_u64(b, d[0]);
	buf_u32(b, GGML_F32);
	buf_u64(b, 0);
	pad(b);
}

static void p_truncated(struct buf *b)
{
	mk_gguf(b, 3, 0, tiny, 4);
	b->len = 60;   /* inside the key/values */
}

static void p_data_truncated(struct buf *b)
{
	mk_gguf(b, 3, 0, tiny, 4);
	b->len -= 10;  /* the last tensor's data is cut */
}

static void p_ok(struct buf *b)
{
	uint64_t d[1] = { 16 };

	hdr(b, 2, 2, 0);
	tensor_info(b, "a", 1, d, GGML_F32, 0);
	tensor_info(b, "empty", 1, (const uint64_t[]){ 0 }, GGML_F32, 64);
	pad(b);
}

/* Block sizes of the newest types, read back from a file. */
static void test_gguf_block_types(void)
{
	static const struct { uint32_t type; uint64_t n; uint64_t bytes; enum mf_dtype dt; } c[] = {
		{ 40, 128, 72, MF_DTYPE_NVFP4 }, { 41, 256, 36, MF_DTYPE_Q1_0 },
		{ 39, 64, 34, MF_DTYPE_MXFP4 }, { 34, 256, 54, MF_DTYPE_TQ1_0 },
		{ 23, 512, 272, MF_DTYPE_IQ4_XS }, { 14, 256, 210, MF_DTYPE_Q6_K },
		{ 9, 32, 36, MF_DTYPE_Q8_1 },
	};
	struct mf_info info;
	struct buf b = { 0 };
	uint64_t off = 0;
	size_t i;

	hdr(&b, 3, sizeof(c) / sizeof(c[0]), 0);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char name[16];

		snprintf(name, sizeof(name), "t%zu", i);
		tensor_info(&b, name, 1, &c[i].n, c[i].type, off);
		off += (c[i].bytes + 31) / 32 * 32;
	}
	buf_zero(&b, 4096);
	mf_info_init(&info);
	CHECK_MF(mf_parse(b.p, b.len, b.len, &info), 0, &info);
	for (i = 0; info.status == 0 && i < sizeof(c) / sizeof(c[0]); i++) {
		CHECK(info.tensors[i].dtype == c[i].dt);
		CHECK(info.tensors[i].size == c[i].bytes);
		CHECK(mf_dtype_is_quant(c[i].dt));
	}
	b.len = 0;
	hdr(&b, 3, 1, 0);
	tensor_info(&b, "next", 1, &c[0].n, 42, 0);
	buf_zero(&b, 4096);
	CHECK_MF(mf_parse(b.p, b.len, b.len, &info), -EINVAL, &info);
	mf_info_release(&info);
	buf_free(&b);
}

static void test_gguf_hostile(void)
{
	gguf_hostile("valid control", 0, p_ok);
	gguf_hostile("billions of tensors", -E2BIG, p_billions);
	gguf_hostile("more tensors than the file holds", -EINVAL, p_more_than_file);
	gguf_hostile("2^62 key/values", -E2BIG, p_kv_count);
	gguf_hostile("version 1", -EINVAL, p_v1);
	gguf_hostile("big-endian", -EINVAL, p_big_endian);
	gguf_hostile("version 9", -EINVAL, p_v9);
	gguf_hostile("bad magic", -ENOMSG, p_bad_magic);
	gguf_hostile("2^64-1 byte key", -EINVAL, p_huge_key);
	gguf_hostile("8 KiB key", -E2BIG, p_long_key);
	gguf_hostile("1 TiB string", -EINVAL, p_huge_string);
	gguf_hostile("array byte size overflows", -EOVERFLOW, p_array_overflow);
	gguf_hostile("2^40 strings", -EINVAL, p_array_of_strings);
	gguf_hostile("arrays nested 10 deep", -E2BIG, p_array_deep);
	gguf_hostile("value type 13", -EINVAL, p_bad_value_type);
	gguf_hostile("alignment 48", -EINVAL, p_bad_alignment);
	gguf_hostile("element count overflows", -EOVERFLOW, p_dims_overflow);
	gguf_hostile("9 dimensions", -E2BIG, p_too_many_dims);
	gguf_hostile("offset past the end", -EOVERFLOW, p_offset_past_end);
	gguf_hostile("offset wraps around", -EOVERFLOW, p_offset_wraps);
	gguf_hostile("unaligned offset", -EINVAL, p_unaligned);
	gguf_hostile("removed ggml type 4", -EINVAL, p_removed_type);
	gguf_hostile("Q8_0 row of 33", -EINVAL, p_partial_block);
	gguf_hostile("overlapping tensors", -EINVAL, p_overlap);
	gguf_hostile("NUL in a name", -EINVAL, p_nul_name);
	gguf_hostile("file ends in the header", -EINVAL, p_truncated);
	gguf_hostile("file ends in the data", -EOVERFLOW, p_data_truncated);
}

static const char st_json[] =
	"{\"__metadata__\":{\"format\":\"pt\"},"
	"\"model.embed.weight\":{\"dtype\":\"BF16\",\"shape\":[4,8],\"data_offsets\":[0,64]},"
	"\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[64,96]},"
	"\"lm_head.weight\":{\"dtype\":\"F16\",\"shape\":[2,8],\"data_offsets\":[96,128]},"
	"\"scalar\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[128,136]}}";

static void test_safetensors(void)
{
	struct buf b = { 0 };
	struct mf_info info;
	uint64_t data = 8 + strlen(st_json), *starts = NULL;
	char *text = NULL;
	ssize_t n;

	mk_safetensors(&b, st_json, 136);
	mf_info_init(&info);
	CHECK_MF(mf_parse(b.p, 8, b.len, &info), -EAGAIN, &info);
	CHECK(info.need == 9);
	CHECK_MF(mf_parse_safetensors(b.p, 8, b.len, &info), -EAGAIN, &info);
	CHECK(info.need == data);
	CHECK_MF(mf_parse(b.p, 9, MF_SIZE_UNKNOWN, &info), -EAGAIN, &info);
	CHECK(info.need == data);
	CHECK_MF(mf_parse(b.p, data, MF_SIZE_UNKNOWN, &info), 0, &info);
	CHECK(info.n_tensors == 4);
	CHECK_MF(mf_parse(b.p, 9, b.len, &info), -EAGAIN, &info);
	CHECK(info.need == data);
	CHECK_MF(mf_parse(b.p, b.len, b.len, &info), 0, &info);
	CHECK(info.format == MF_FORMAT_SAFETENSORS);
	CHECK(info.data_offset == data && info.header_size == data);
	CHECK(info.n_tensors == 4 && info.n_kv == 1);
	CHECK(mf_st_metadata(&info, "format") && !strcmp(mf_st_metadata(&info, "format"), "pt"));
	CHECK(mf_st_metadata(&info, "form") == NULL && mf_st_metadata(&info, "pt") == NULL);
	CHECK(mf_tensor_named(&info, "lm_head.weight") == &info.tensors[2]);
	CHECK(mf_tensor_named(&info, "lm_head") == NULL);
	CHECK(info.n_params == 32 + 8 + 16 + 1);
	CHECK(!strcmp(info.tensors[0].name, "model.embed.weight"));
	CHECK(info.tensors[0].offset == data && info.tensors[0].dtype == MF_DTYPE_BF16);
	CHECK(info.tensors[1].offset == data + 64 && info.tensors[1].size == 32);
	CHECK(info.tensors[3].n_dims == 0 && info.tensors[3].n_elements == 1);
	CHECK(mf_dtype_at(&info, data + 10, data + 70) == MF_DTYPE_BF16);
	CHECK(mf_dtype_at(&info, data + 60, data + 100) == MF_DTYPE_F32);
	n = mf_tensor_starts(&info, &starts);
	CHECK(n == 4 && starts[0] == data && starts[3] == data + 128);
	free(starts);
	n = mf_info_summary(&info, "model.safetensors", &text);
	CHECK(n > 0 && text && strstr(text, "format: safetensors") && strstr(text, "BF16") &&
	      strstr(text, "tensors: 4") && strstr(text, "file: model.safetensors"));
	free(text);
	n = mf_info_tensor_list(&info, &text);
	CHECK(n > 0 && text && strstr(text, "BF16 [4, 8] model.embed.weight\n"));
	free(text);
	mf_info_release(&info);
	buf_free(&b);
}

/* __metadata__ keeps its string values (what checkpoints read), skips others. */
static void test_safetensors_metadata(void)
{
	static const char json[] =
		"{\"__metadata__\":{\"step\":\"12\",\"seed\":\"\",\"n\":3,\"\u00e9\":\"x\\u00e9\"},"
		"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
	struct buf b = { 0 };
	struct mf_info info;

	mk_safetensors(&b, json, 8);
	mf_info_init(&info);
	CHECK_MF(mf_parse_safetensors(b.p, b.len, b.len, &info), 0, &info);
	CHECK(info.n_kv == 4);
	CHECK(mf_st_metadata(&info, "step") && !strcmp(mf_st_metadata(&info, "step"), "12"));
	CHECK(mf_st_metadata(&info, "seed") && !strcmp(mf_st_metadata(&info, "seed"), ""));
	CHECK(mf_st_metadata(&info, "n") == NULL);
	CHECK(mf_st_metadata(&info, "\xc3\xa9") &&
	      !strcmp(mf_st_metadata(&info, "\xc3\xa9"), "x\xc3\xa9"));
	/* a parse of a file without metadata forgets the last one's */
	buf_free(&b);
	mk_safetensors(&b, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
	CHECK_MF(mf_parse_safetensors(b.p, b.len, b.len, &info), 0, &info);
	CHECK(mf_st_metadata(&info, "step") == NULL);
	mf_info_release(&info);
	buf_free(&b);
}

static void st_hostile(const char *what, int want, const char *json, size_t data_len)
{
	struct buf b = { 0 };
	struct mf_info info;
	int rc;

	mk_safetensors(&b, json, data_len);
	mf_info_init(&info);
	rc = mf_parse_safetensors(b.p, b.len, b.len, &info);
	if (rc != want) {
		fprintf(stderr, "hostile safetensors '%s': rc %d, want %d (%s)\n", what, rc, want,
			info.error);
		check_failures++;
	}
	CHECK(rc == 0 || (info.error[0] && info.n_tensors == 0));
	mf_info_release(&info);
	buf_free(&b);
}

static void test_safetensors_hostile(void)
{
	struct mf_info info;
	struct buf b = { 0 };
	char *deep, *many;
	size_t i;

	st_hostile("control", 0, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
	st_hostile("past the end", -EOVERFLOW,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 2);
	st_hostile("size mismatch", -EINVAL,
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8);
	st_hostile("empty tensors share offsets", 0,
		   "{\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
		   "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
		   "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
		   "\"y\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[2,2]}}", 4);
	st_hostile("overlap", -EINVAL,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 8);
	st_hostile("shape overflows", -EOVERFLOW,
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
		   "\"data_offsets\":[0,4]}}", 8);
	st_hostile("negative offset", -EINVAL,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 8);
	st_hostile("reversed offsets", -EINVAL,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,3]}}", 8);
	st_hostile("unknown dtype", -EINVAL,
		   "{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16);
	st_hostile("float in shape", -EINVAL,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 8);
	st_hostile("missing field", -EINVAL, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 8);
	st_hostile("duplicate key", -EINVAL,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		   "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 8);
	st_hostile("not an object", -EINVAL, "[1,2,3]", 8);
	st_hostile("bad JSON", -EINVAL, "{\"a\":", 8);
	st_hostile("huge integer", -EINVAL,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999999],"
		   "\"data_offsets\":[0,1]}}", 8);
	st_hostile("metadata not an object", -EINVAL, "{\"__metadata__\":3}", 8);

	deep = malloc(2 * 10000 + 16);
	for (i = 0; i < 10000; i++)
		deep[i] = '[';
	for (i = 0; i < 10000; i++)
		deep[10000 + i] = ']';
	deep[20000] = '\0';
	deep[0] = '{';
	memcpy(deep + 1, "\"a\":", 4);
	deep[19999] = '}';
	st_hostile("10000 levels deep", -E2BIG, deep, 0);
	free(deep);

	/* 3 M tokens in a 6 MB header: over the token limit, under the size
	 * limit. */
	many = malloc(6u << 20);
	strcpy(many, "{\"a\":[");
	for (i = 6; i < (6u << 20) - 4; i += 2)
		memcpy(many + i, "0,", 2);
	strcpy(many + i, "0]}");
	st_hostile("3 M tokens", -E2BIG, many, 0);
	free(many);

	/* Lengths that lie: longer than the file, longer than the limit. */
	mf_info_init(&info);
	buf_u64(&b, 1000);
	buf_put(&b, "{}", 2);
	CHECK_MF(mf_parse_safetensors(b.p, b.len, b.len, &info), -EINVAL, &info);
	CHECK_MF(mf_parse_safetensors(b.p, b.len, 1ull << 40, &info), -EAGAIN, &info);
	CHECK(info.need == 1008);
	b.len = 0;
	buf_u64(&b, 1ull << 35);
	buf_put(&b, "{", 1);
	CHECK_MF(mf_parse_safetensors(b.p, b.len, 1ull << 40, &info), -E2BIG, &info);
	CHECK_MF(mf_parse_safetensors(b.p, 4, 4, &info), -EINVAL, &info);
	mf_info_release(&info);
	buf_free(&b);
}

static const char qwen_config[] =
	"{\n  \"architectures\": [\"Qwen2ForCausalLM\"],\n  \"model_type\": \"qwen2\",\n"
	"  \"_name_or_path\": \"Qwen/Qwen2.5-0.5B\",\n  \"max_position_embeddings\": 32768,\n"
	"  \"hidden_size\": 896,\n  \"torch_dtype\": \"bfloat16\",\n"
	"  \"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}\n}\n";

static void test_config(void)
{
	struct mf_info info, st;
	struct buf b = { 0 };
	char *text = NULL;
	const char *mm = "{\"architectures\":[\"LlavaForConditionalGeneration\"],"
			 "\"text_config\":{\"model_type\":\"llama\",\"max_position_embeddings\":4096},"
			 "\"dtype\":\"float16\"}";

	mf_info_init(&info);
	mf_info_init(&st);
	CHECK_MF(mf_parse(qwen_config, 10, sizeof(qwen_config) - 1, &info), -EAGAIN, &info);
	CHECK(info.need == sizeof(qwen_config) - 1);
	CHECK_MF(mf_parse(qwen_config, sizeof(qwen_config) - 1, sizeof(qwen_config) - 1, &info), 0,
		 &info);
	CHECK(info.format == MF_FORMAT_HF_CONFIG);
	CHECK(!strcmp(info.architecture, "qwen2") && !strcmp(info.arch_class, "Qwen2ForCausalLM"));
	CHECK(info.context_length == 32768);
	CHECK(info.config_dtype == MF_DTYPE_BF16);
	CHECK(!strcmp(info.quant, "gptq 4-bit"));
	CHECK(!strcmp(info.name, "Qwen/Qwen2.5-0.5B"));
	CHECK(mf_info_summary(&info, NULL, &text) > 0 && strstr(text, "context length: 32768"));
	free(text);

	/* The weights file learns what only the config says. */
	mk_safetensors(&b, st_json, 136);
	CHECK_MF(mf_parse(b.p, b.len, b.len, &st), 0, &st);
	mf_info_merge_config(&st, &info);
	CHECK(!strcmp(st.architecture, "qwen2") && st.context_length == 32768);
	CHECK(st.n_tensors == 4);

	CHECK_MF(mf_parse_config(mm, strlen(mm), strlen(mm), &info), 0, &info);
	CHECK(!strcmp(info.architecture, "llama") && info.context_length == 4096);
	CHECK(info.config_dtype == MF_DTYPE_F16);

	CHECK_MF(mf_parse("{\"a\": 1}", 8, 8, &info), -ENOMSG, &info);
	CHECK(mf_info_summary(&info, NULL, &text) > 0 && strstr(text, "format: unrecognised") &&
	      strstr(text, "not a model file"));
	free(text);
	CHECK_MF(mf_parse_config("{\"a\": ", 6, 6, &info), -EINVAL, &info);
	CHECK_MF(mf_parse_config("{}", 2, 64u << 20, &info), -E2BIG, &info);
	mf_info_release(&info);
	mf_info_release(&st);
	buf_free(&b);
}

static void test_not_models(void)
{
	struct mf_info info;
	uint8_t junk[256];
	char *text = NULL;
	size_t i;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 151 + 7);
	mf_info_init(&info);
	CHECK_MF(mf_parse(junk, sizeof(junk), 1 << 20, &info), -ENOMSG, &info);
	CHECK(mf_info_summary(&info, "junk.bin", &text) > 0 && strstr(text, "not a model file") &&
	      strstr(text, "stored as plain bytes"));
	free(text);
	CHECK_MF(mf_parse(junk, 3, 1 << 20, &info), -EAGAIN, &info);
	CHECK(info.need == 9);
	CHECK_MF(mf_parse(junk, 3, 3, &info), -ENOMSG, &info);
	CHECK_MF(mf_parse(junk, 0, 0, &info), -ENOMSG, &info);
	/* A truncated GGUF says why in its summary. */
	CHECK_MF(mf_parse("GGUF\3\0\0\0", 8, 8, &info), -EINVAL, &info);
	CHECK(mf_info_summary(&info, NULL, &text) > 0 &&
	      strstr(text, "truncated or malformed") && strstr(text, "reason: "));
	free(text);
	mf_info_release(&info);
}

int main(void)
{
	test_gguf(3, 0);
	test_gguf(2, 0);
	test_gguf(3, 64);
	test_gguf(2, 8);
	test_gguf_stream();
	test_gguf_block_types();
	test_gguf_hostile();
	test_safetensors();
	test_safetensors_metadata();
	test_safetensors_hostile();
	test_config();
	test_not_models();
	return check_status();
}
