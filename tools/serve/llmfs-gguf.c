/* llmfs-gguf - export a GPT-2 checkpoint to GGUF (llama.cpp's format) and check GGUF files.
 *
 *   llmfs-gguf export DIR OUT.gguf [--name NAME]
 *   llmfs-gguf check FILE.gguf [--model DIR]
 *
 * export reads DIR as llmfs-serve does (config.json, model.safetensors, the tokenizer beside
 * them) and writes OUT.gguf (gpu/gguf.h says what is in it).  check reads a file with our own
 * reader (every key, tensor and offset checked against what llama.cpp's gpt2 architecture
 * needs) and with the store's model-header reader (common/modelfmt.h), prints a summary, then
 * runs the model it holds on a fixed sequence of tokens; with --model it runs DIR's model too
 * and compares the logits (they must be equal: export copies F32 weights exactly).
 * Exit status: 0 good, 1 a bad file or a difference, 2 a bad command line. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/modelfmt.h"
#include "gpu/gguf.h"
#include "gpu/infer.h"
#include "gpu/tokenizer.h"

#define PROBE 16

static int usage(void)
{
	fprintf(stderr, "usage: llmfs-gguf export DIR OUT.gguf [--name NAME]\n"
			"       llmfs-gguf check FILE.gguf [--model DIR]\n");
	return 2;
}

static const char *base(const char *dir, char *buf, size_t size)
{
	size_t l;
	const char *s;

	snprintf(buf, size, "%s", dir);
	l = strlen(buf);
	while (l > 1 && buf[l - 1] == '/')
		buf[--l] = '\0';
	s = strrchr(buf, '/');
	return s ? s + 1 : buf;
}

static int do_export(const char *dir, const char *out, const char *name)
{
	struct gpu_infer *w = NULL;
	struct gpu_tok *tok = NULL;
	char buf[256];
	int r;

	r = gpu_infer_load(&w, dir);
	if (r < 0) {
		fprintf(stderr, "llmfs-gguf: %s: cannot load the model: %s\n", dir, strerror(-r));
		return 1;
	}
	r = gpu_tok_load_dir(&tok, dir, gpu_infer_config(w)->vocab_size);
	if (r < 0) {
		fprintf(stderr, "llmfs-gguf: %s: no usable tokenizer: %s\n", dir, strerror(-r));
		gpu_infer_free(w);
		return 1;
	}
	r = gpu_gguf_export(w, tok, name ? name : base(dir, buf, sizeof(buf)), out);
	if (r < 0)
		fprintf(stderr, "llmfs-gguf: %s: %s\n", out, strerror(-r));
	else
		printf("wrote %s\n", out);
	gpu_tok_free(tok);
	gpu_infer_free(w);
	return r < 0;
}

/* The logits after each of PROBE tokens, fed through the KV cache. */
static int probe(const struct gpu_infer *w, float *out)
{
	struct gpu_infer_state *s = NULL;
	int V = gpu_infer_config(w)->vocab_size, n = gpu_infer_config(w)->n_ctx, r;

	n = n < PROBE ? n : PROBE;
	r = gpu_infer_state_new(&s, w, n);
	for (int t = 0; r == 0 && t < n; t++) {
		int32_t id = (int32_t)((t * 7919 + 13) % V);

		r = gpu_infer_feed(s, &id, 1, out + (size_t)t * V);
	}
	gpu_infer_state_free(s);
	return r < 0 ? r : n;
}

/* The store's reader (the one that summarises models in the tree) must agree. */
static int store_reader(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct mf_info mi;
	unsigned char *buf;
	size_t len;
	long sz;
	int r;

	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	rewind(f);
	len = (size_t)sz < MF_HEADER_MAX ? (size_t)sz : MF_HEADER_MAX;
	buf = malloc(len ? len : 1);
	if (!buf || fread(buf, 1, len, f) != len) {
		fclose(f);
		free(buf);
		return -EIO;
	}
	fclose(f);
	mf_info_init(&mi);
	r = mf_parse_gguf(buf, len, (uint64_t)sz, &mi);
	printf("store reader: %s%s%s, %zu tensors, %llu parameters\n", r == 0 ? "ok" : "refused",
	       r ? ": " : "", r ? mi.error : "", mi.n_tensors, (unsigned long long)mi.n_params);
	mf_info_release(&mi);
	free(buf);
	return r;
}

static int do_check(const char *path, const char *dir)
{
	struct gpu_gguf_info info;
	struct gpu_infer *g = NULL, *w = NULL;
	float *a = NULL, *b = NULL;
	int r, n, rc = 1;

	r = gpu_gguf_check(path, &info, &g);
	if (r < 0) {
		fprintf(stderr, "llmfs-gguf: %s: %s\n", path,
			info.error[0] ? info.error : strerror(-r));
		goto out;
	}
	printf("%s: GGUF v%u, gpt2 '%s': %d layers, %d heads, %d embedding, context %d, "
	       "%d tokens, %d merges, eos %d, %llu tensors, data at %llu\n", path, info.version,
	       info.name, info.cfg.n_layer, info.cfg.n_head, info.cfg.n_embd, info.cfg.n_ctx,
	       info.n_tokens, info.n_merges, info.eos, (unsigned long long)info.n_tensors,
	       (unsigned long long)info.data_offset);
	if (store_reader(path) < 0)
		goto out;
	a = malloc((size_t)PROBE * info.cfg.vocab_size * sizeof(float));
	b = malloc((size_t)PROBE * info.cfg.vocab_size * sizeof(float));
	if (!a || !b || (n = probe(g, a)) < 0)
		goto out;
	for (size_t i = 0; i < (size_t)n * info.cfg.vocab_size; i++)
		if (!isfinite(a[i])) {
			fprintf(stderr, "llmfs-gguf: %s: the model gives non-finite logits\n", path);
			goto out;
		}
	printf("runs: %d tokens through the KV cache, logits finite\n", n);
	if (dir) {
		const struct gpu_config *c;
		float diff = 0.0f;

		r = gpu_infer_load(&w, dir);
		if (r < 0) {
			fprintf(stderr, "llmfs-gguf: %s: %s\n", dir, strerror(-r));
			goto out;
		}
		c = gpu_infer_config(w);
		if (memcmp(c, &info.cfg, sizeof(*c))) {
			fprintf(stderr, "llmfs-gguf: %s and %s have different shapes\n", path, dir);
			goto out;
		}
		if (probe(w, b) < 0)
			goto out;
		for (size_t i = 0; i < (size_t)n * c->vocab_size; i++)
			diff = fmaxf(diff, fabsf(a[i] - b[i]));
		printf("against %s: max |logit difference| %g\n", dir, diff);
		if (diff != 0.0f)
			goto out;
	}
	rc = 0;
out:
	free(a);
	free(b);
	gpu_infer_free(g);
	gpu_infer_free(w);
	gpu_gguf_info_release(&info);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "export"))
		return do_export(argv[2], argv[3], NULL);
	if (argc == 6 && !strcmp(argv[1], "export") && !strcmp(argv[4], "--name"))
		return do_export(argv[2], argv[3], argv[5]);
	if (argc == 3 && !strcmp(argv[1], "check"))
		return do_check(argv[2], NULL);
	if (argc == 5 && !strcmp(argv[1], "check") && !strcmp(argv[3], "--model"))
		return do_check(argv[2], argv[4]);
	return usage();
}
