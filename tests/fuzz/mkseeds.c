/* Writes the seed corpus of the fuzz harnesses: small valid files of each
 * format, so the fuzzers start from inputs that reach deep into the
 * parsers.  Usage: mkseeds DIR (creates DIR/gguf, DIR/safetensors,
 * DIR/config, DIR/bytegroup).  It wrote the named seeds in
 * tests/fuzz/corpus; the SHA-1-named files beside them are inputs the fuzz
 * runs found (docs/security.md). */
#include "backend/store/bytegroup.h"
#include "tests/formats/mkmodel.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int put(const char *dir, const char *sub, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "wb");
	if (!f)
		return -errno;
	if (fwrite(p, 1, n, f) != n) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) == 0 ? 0 : -errno;
}

static const struct mk_tensor tensors[] = {
	{ "token_embd.weight", GGML_F32, 2, { 8, 4 }, 128 },
	{ "blk.0.attn_q.weight", GGML_Q8_0, 2, { 64, 2 }, 136 },
	{ "output_norm.weight", GGML_BF16, 1, { 16 }, 32 },
	{ "blk.0.ffn_down.weight", GGML_Q4_K, 2, { 256, 1 }, 144 },
	{ "blk.0.ffn_up.weight", GGML_F16, 2, { 4, 4 }, 32 },
};

static const char *const st[] = {
	"{\"__metadata__\":{\"format\":\"pt\"},"
	"\"model.embed.weight\":{\"dtype\":\"BF16\",\"shape\":[4,8],\"data_offsets\":[0,64]},"
	"\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[64,96]}}",
	"{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
	"\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]},"
	"\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[16,16]}}    ",
	"{}",
};
static const size_t st_data[] = { 96, 16, 0 };

static const char *const configs[] = {
	"{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\","
	"\"max_position_embeddings\":32768,\"torch_dtype\":\"bfloat16\","
	"\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4}}",
	"{\"architectures\":[\"LlavaForConditionalGeneration\"],"
	"\"text_config\":{\"model_type\":\"llama\",\"max_position_embeddings\":4096},"
	"\"dtype\":\"float16\",\"_name_or_path\":\"x/y\"}",
	"{\"model_type\":\"gpt2\",\"n_positions\":1024,\"n_ctx\":1024,\"vocab_size\":50257}",
};

int main(int argc, char **argv)
{
	struct bg_ctx ctx;
	struct buf b = { 0 };
	uint8_t plain[4099], seed[8192];
	char name[64];
	size_t i;
	int s, rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds DIR\n");
		return 2;
	}
	for (i = 0; i < 4; i++) {
		b.len = 0;
		mk_gguf(&b, i & 1 ? 2 : 3, i & 2 ? 64 : 0, tensors, 5 - i);
		snprintf(name, sizeof(name), "v%d-align%d-%zu.gguf", i & 1 ? 2 : 3,
			 i & 2 ? 64 : 32, 5 - i);
		rc |= put(argv[1], "gguf", name, b.p, b.len);
	}
	for (i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
		b.len = 0;
		mk_safetensors(&b, st[i], st_data[i]);
		snprintf(name, sizeof(name), "seed%zu.safetensors", i);
		rc |= put(argv[1], "safetensors", name, b.p, b.len);
	}
	for (i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
		snprintf(name, sizeof(name), "config%zu.json", i);
		rc |= put(argv[1], "config", name, configs[i], strlen(configs[i]));
	}
	/* Chunks of weight-like bf16 values, encoded by every scheme and
	 * variant, behind the harness's 4-byte prefix. */
	for (i = 0; i < sizeof(plain); i++) {
		float f = 0.02f * (float)sin((double)i * 0.37) * (float)cos((double)i * 0.011);
		uint32_t x;

		memcpy(&x, &f, 4);
		plain[i] = (uint8_t)(x >> (i % 2 ? 24 : 16));
	}
	if (bg_ctx_init(&ctx, 1) < 0)
		return 1;
	for (s = 0; s < 16; s++) {
		ssize_t r;

		ctx.opts.joined = s >> 2 & 1;
		ctx.opts.no_rotate = s >> 3 & 1;
		if ((s >> 2) && (s & 3) < 2)
			continue;   /* options only matter to grouped schemes */
		r = bg_encode(&ctx, (enum bg_scheme)(s & 3), plain, sizeof(plain), seed + 4,
			      sizeof(seed) - 4);
		if (r < 0)
			return 1;
		seed[0] = (uint8_t)s;
		seed[1] = (uint8_t)sizeof(plain);
		seed[2] = (uint8_t)(sizeof(plain) >> 8);
		seed[3] = 0;
		snprintf(name, sizeof(name), "scheme%d-opts%d", s & 3, s >> 2);
		rc |= put(argv[1], "bytegroup", name, seed, (size_t)r + 4);
	}
	bg_ctx_release(&ctx);
	buf_free(&b);
	return rc ? 1 : 0;
}
