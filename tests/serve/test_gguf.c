/* tests/serve/test_gguf.c - gpu/gguf.h: export, our reader, and hostile files.
 *
 * usage: test_gguf DATA_DIR   (GPT-2's vocab.json and merges.txt)
 *
 *   - a model with GPT-2's vocabulary exported and read back: the hyperparameters, every token
 *     and merge string as the tokenizer has them, end-of-text as bos/eos, and the model it
 *     holds gives bit-identical logits; the store's reader (common/modelfmt.h) accepts the file
 *   - the byte vocabulary: 256 tokens, no merges, no eos
 *   - refused with a message, never a crash (on the byte model's file, whose header is small):
 *     truncation anywhere in the header, a bad magic and version, a tensor or key renamed, a
 *     shape changed, another architecture, a string length of 2^62, and 2000 random
 *     single-byte corruptions of the header (each refused or, where the byte was inert,
 *     accepted). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/modelfmt.h"
#include "gpu/gguf.h"
#include "gpu/infer.h"
#include "gpu/tokenizer.h"
#include "tests/check.h"

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	REQUIRE(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n);
	REQUIRE(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

static void spit(const char *path, const char *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	REQUIRE(f && fwrite(buf, 1, len, f) == len);
	fclose(f);
}

static struct gpu_infer *random_model(const struct gpu_config *cfg, uint64_t seed)
{
	size_t n = gpu_config_num_params(cfg);
	float *p = malloc(n * sizeof(float));
	struct gpu_infer *w = NULL;

	REQUIRE(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (gpu_rng_uniform(&seed) - 0.5f) * 0.4f;
	REQUIRE(gpu_infer_new(&w, cfg, p) == 0);
	free(p);
	return w;
}

static void same_logits(struct gpu_infer *a, struct gpu_infer *b)
{
	int V = gpu_infer_config(a)->vocab_size;
	float *la = malloc((size_t)V * sizeof(float)), *lb = malloc((size_t)V * sizeof(float));
	struct gpu_infer_state *sa = NULL, *sb = NULL;
	int32_t ids[5] = { 1, 7, 100 % V, 3, 0 };

	REQUIRE(la && lb);
	REQUIRE(gpu_infer_state_new(&sa, a, 5) == 0 && gpu_infer_state_new(&sb, b, 5) == 0);
	CHECK_RC(gpu_infer_feed(sa, ids, 5, la), 0);
	CHECK_RC(gpu_infer_feed(sb, ids, 5, lb), 0);
	CHECK_MSG(memcmp(la, lb, (size_t)V * sizeof(float)) == 0, "identical logits");
	gpu_infer_state_free(sa);
	gpu_infer_state_free(sb);
	free(la);
	free(lb);
}

static int check_quiet(const char *path)
{
	struct gpu_gguf_info info;
	struct gpu_infer *g = NULL;
	int r = gpu_gguf_check(path, &info, &g);

	if (r < 0)
		CHECK_MSG(r != -EINVAL || info.error[0], "a refusal says why");
	gpu_infer_free(g);
	gpu_gguf_info_release(&info);
	return r;
}

/* Replace the first occurrence of from (same length) in the file and check it is refused. */
static void refused_with(const char *good, size_t len, const char *path, const void *from,
			 const void *to, size_t n, const char *why)
{
	char *buf = malloc(len), *p;
	struct gpu_gguf_info info;

	REQUIRE(buf);
	memcpy(buf, good, len);
	p = memmem(buf, len, from, n);
	REQUIRE(p);
	memcpy(p, to, n);
	spit(path, buf, len);
	CHECK_RC(gpu_gguf_check(path, &info, NULL), -EINVAL);
	CHECK_MSG(strstr(info.error, why) != NULL, "error '%s' mentions '%s'", info.error, why);
	gpu_gguf_info_release(&info);
	free(buf);
}

static void test_hostile(const char *path, const char *bad)
{
	size_t len;
	char *good = slurp(path, &len);
	struct gpu_gguf_info info;
	uint64_t seed = 99, data_off;
	uint64_t huge = 1ull << 62;

	REQUIRE(gpu_gguf_check(path, &info, NULL) == 0);
	data_off = info.data_offset;
	gpu_gguf_info_release(&info);
	/* truncated anywhere in the header or the data */
	for (size_t cut = 0; cut < data_off; cut += cut < 64 ? 1 : 61) {
		spit(bad, good, cut);
		CHECK_MSG(check_quiet(bad) == -EINVAL, "truncated at %zu refused", cut);
	}
	spit(bad, good, len - 1);
	CHECK_RC(check_quiet(bad), -EINVAL);
	refused_with(good, len, bad, "GGUF", "GGUE", 4, "magic");
	refused_with(good, len, bad, "GGUF\x03\0\0\0", "GGUF\x09\0\0\0", 8, "version");
	refused_with(good, len, bad, "blk.0.ffn_up.weight", "blk.0.ffn_UP.weight", 19, "ffn_UP");
	refused_with(good, len, bad, "output_norm.bias", "output_norm.xxxx", 16, "output_norm");
	refused_with(good, len, bad, "gpt2.block_count", "gpt2.block_xxxxx", 16, "block_count");
	refused_with(good, len, bad, "tokenizer.ggml.merges", "tokenizer.ggml.mergex", 21,
		     "tokenizer");
	refused_with(good, len, bad, "blk.0.attn_qkv.weight\x02\0\0\0\x08",
		     "blk.0.attn_qkv.weight\x02\0\0\0\x07", 26, "wrong shape");
	/* the length of general.architecture's value: 4 ("gpt2") -> 2^62 */
	{
		char pat[8 + 4 + 8];
		uint64_t four = 4, one = 1;

		memcpy(pat, "ture", 4);
		memcpy(pat + 4, &(uint32_t){ 8 }, 4);
		memcpy(pat + 8, &four, 8);
		memcpy(pat + 16, "gpt2", 4);
		char rep[20];

		memcpy(rep, pat, 20);
		memcpy(rep + 8, &huge, 8);
		refused_with(good, len, bad, pat, rep, 20, "string");
		memcpy(rep, pat, 20);
		memcpy(rep + 16, "gptj", 4);
		refused_with(good, len, bad, pat, rep, 20, "gptj");
		(void)one;
	}
	/* random single-byte corruptions of the header: refused or harmless, never a crash */
	char *buf = malloc(len);
	int refused = 0;

	REQUIRE(buf);
	for (int i = 0; i < 2000; i++) {
		size_t at = gpu_rng_next(&seed) % data_off;

		memcpy(buf, good, len);
		buf[at] = (char)gpu_rng_next(&seed);
		spit(bad, buf, len);
		refused += check_quiet(bad) < 0;
	}
	CHECK(refused > 0);
	free(buf);
	free(good);
}

int main(int argc, char **argv)
{
	char vj[4096], mt[4096], dir[] = "/tmp/llmfs-gguf-XXXXXX", path[4200], bad[4200];
	struct gpu_config cfg = { .n_layer = 2, .n_head = 2, .n_embd = 16, .n_ctx = 32,
				  .vocab_size = 50257 };
	struct gpu_config bcfg = { .n_layer = 1, .n_head = 1, .n_embd = 8, .n_ctx = 16,
				   .vocab_size = 256 };
	struct gpu_tok *tok = NULL, *bytes = NULL;
	struct gpu_infer *w, *g = NULL;
	struct gpu_gguf_info info;

	if (argc != 2) {
		fprintf(stderr, "usage: test_gguf DATA_DIR\n");
		return 2;
	}
	REQUIRE(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.gguf", dir);
	snprintf(bad, sizeof(bad), "%s/bad.gguf", dir);
	snprintf(vj, sizeof(vj), "%s/vocab.json", argv[1]);
	snprintf(mt, sizeof(mt), "%s/merges.txt", argv[1]);
	REQUIRE(gpu_tok_load_bpe(&tok, vj, mt) == 0);

	w = random_model(&cfg, 1);
	CHECK_RC(gpu_gguf_export(w, tok, "test-gpt2", path), 0);
	CHECK(access(path, F_OK) == 0);
	CHECK_RC(gpu_gguf_check(path, &info, &g), 0);
	CHECK_EQ(info.version, 3);
	CHECK(strcmp(info.name, "test-gpt2") == 0);
	CHECK(memcmp(&info.cfg, &cfg, sizeof(cfg)) == 0);
	CHECK_EQ(info.n_tokens, 50257);
	CHECK_EQ(info.n_merges, 50000);
	CHECK_EQ(info.eos, 50256);
	CHECK_EQ(info.bos, 50256);
	CHECK_EQ(info.n_tensors, 2 + 12 * 2 + 3);
	CHECK_EQ(info.data_offset % 32, 0);
	for (int i = 0; i < info.n_tokens && info.tokens; i++)
		if (strcmp(info.tokens[i], gpu_tok_token(tok, i))) {
			CHECK_MSG(0, "token %d", i);
			break;
		}
	for (int i = 0; i < info.n_merges && info.merges; i++)
		if (strcmp(info.merges[i], gpu_tok_merge(tok, i))) {
			CHECK_MSG(0, "merge %d", i);
			break;
		}
	if (g)
		same_logits(w, g);
	gpu_infer_free(g);
	g = NULL;
	gpu_gguf_info_release(&info);
	{
		size_t len;
		char *buf = slurp(path, &len);
		struct mf_info mi;

		mf_info_init(&mi);
		CHECK_RC(mf_parse_gguf(buf, len, len, &mi), 0);
		CHECK(strcmp(mi.architecture, "gpt2") == 0);
		CHECK_EQ(mi.context_length, 32);
		CHECK_EQ(mi.n_tensors, 29);
		mf_info_release(&mi);
		free(buf);
	}

	/* the byte vocabulary */
	REQUIRE(gpu_tok_new_bytes(&bytes) == 0);
	gpu_infer_free(w);
	w = random_model(&bcfg, 2);
	CHECK_RC(gpu_gguf_export(w, bytes, "bytes", path), 0);
	CHECK_RC(gpu_gguf_check(path, &info, &g), 0);
	CHECK_EQ(info.n_tokens, 256);
	CHECK_EQ(info.n_merges, 0);
	CHECK_EQ(info.eos, -1);
	CHECK(info.tokens && strcmp(info.tokens['A'], "A") == 0 &&
	      strcmp(info.tokens[' '], "\xc4\xa0") == 0);
	if (g)
		same_logits(w, g);
	gpu_infer_free(g);
	gpu_gguf_info_release(&info);
	/* hostile variants of the small file: the header is a few kilobytes */
	test_hostile(path, bad);
	/* a tokenizer larger than the model is refused; a missing file is -ENOENT */
	CHECK_RC(gpu_gguf_export(w, tok, "x", path), -EINVAL);
	CHECK_RC(gpu_gguf_check("/nonexistent.gguf", &info, NULL), -ENOENT);
	gpu_gguf_info_release(&info);

	gpu_infer_free(w);
	gpu_tok_free(tok);
	gpu_tok_free(bytes);
	unlink(path);
	unlink(bad);
	rmdir(dir);
	return check_status();
}
