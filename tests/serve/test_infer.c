/* tests/serve/test_infer.c - gpu/infer.h against the training engine's forward (gpu/gpt.h).
 *
 * A model is made by the training engine (random weights), saved as an llmfs checkpoint and
 * loaded by gpu_infer_load().  Then:
 *   - the logits of every position, fed one token at a time through the KV cache, equal those
 *     of gpu_model_forward() over the whole sequence (no cache) within 1e-4 relative;
 *   - feeding the prompt at once (in blocks, more than one) gives the same logits as feeding
 *     it token by token, and reset + feed (the benchmark's no-cache path) the same again;
 *   - a feed past the capacity is -E2BIG and leaves the cache as it was; a bad token -EINVAL;
 *   - sampling: the same seed gives the same tokens, temperature 0 and top_k 1 the argmax,
 *     top_p keeps the smallest set reaching the mass, and draws follow the distribution;
 *   - a checkpoint with a tensor missing or of the wrong shape is refused (-EINVAL). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/ckpt.h"
#include "gpu/gpt.h"
#include "gpu/infer.h"
#include "tests/check.h"

#define T_SEQ 100   /* more than infer.c's block of 64 rows */

static const struct gpu_config cfg = {
	.n_layer = 2, .n_head = 4, .n_embd = 64, .n_ctx = 128, .vocab_size = 300,
};

static float max_rel_diff(const float *a, const float *b, int n)
{
	float d = 0.0f, m = 1e-6f;

	for (int i = 0; i < n; i++) {
		d = fmaxf(d, fabsf(a[i] - b[i]));
		m = fmaxf(m, fabsf(b[i]));
	}
	return d / m;
}

static void test_logits(struct gpu_model *gm, struct gpu_infer *w, const int32_t *tok)
{
	int V = cfg.vocab_size;
	float *ref = malloc((size_t)T_SEQ * V * sizeof(float));
	float *got = malloc((size_t)V * sizeof(float)), *all = malloc((size_t)V * sizeof(float));
	struct gpu_infer_state *s = NULL;
	float worst = 0.0f;

	REQUIRE(ref && got && all);
	REQUIRE(gpu_model_forward(gm, tok, NULL, 1, T_SEQ, NULL) == 0);
	REQUIRE(gpu_model_logits(gm, -1, ref) == 0);
	REQUIRE(gpu_infer_state_new(&s, w, T_SEQ) == 0);
	for (int t = 0; t < T_SEQ; t++) {
		CHECK_RC(gpu_infer_feed(s, &tok[t], 1, got), 0);
		worst = fmaxf(worst, max_rel_diff(got, ref + (size_t)t * V, V));
	}
	CHECK_MSG(worst <= 1e-4f, "KV cache vs gpt.c forward: max relative diff %g", worst);
	CHECK_EQ(gpu_infer_state_len(s), T_SEQ);
	/* full: one more is refused and changes nothing */
	CHECK_RC(gpu_infer_feed(s, tok, 1, got), -E2BIG);
	CHECK_EQ(gpu_infer_state_len(s), T_SEQ);

	/* the whole prompt at once, in two blocks */
	gpu_infer_state_reset(s);
	CHECK_RC(gpu_infer_feed(s, tok, T_SEQ, all), 0);
	CHECK_MSG(max_rel_diff(all, ref + (size_t)(T_SEQ - 1) * V, V) <= 1e-4f,
		  "prefill vs gpt.c forward: %g", max_rel_diff(all, ref + (size_t)(T_SEQ - 1) * V, V));
	/* prefill then one token = token by token */
	gpu_infer_state_reset(s);
	CHECK_RC(gpu_infer_feed(s, tok, T_SEQ - 1, NULL), 0);
	CHECK_RC(gpu_infer_feed(s, &tok[T_SEQ - 1], 1, got), 0);
	CHECK(max_rel_diff(got, all, V) <= 1e-5f);
	/* bad input */
	int32_t bad = V;

	gpu_infer_state_reset(s);
	CHECK_RC(gpu_infer_feed(s, &bad, 1, got), -EINVAL);
	CHECK_RC(gpu_infer_feed(s, tok, 0, got), -EINVAL);
	CHECK_EQ(gpu_infer_state_len(s), 0);
	gpu_infer_state_free(s);
	s = NULL;
	CHECK_RC(gpu_infer_state_new(&s, w, cfg.n_ctx + 1), -EINVAL);
	free(ref);
	free(got);
	free(all);
}

static void test_sampling(void)
{
	enum { V = 50 };
	struct gpu_sampler sp;
	float base[V], l[V];
	uint64_t r1 = 42, r2 = 42;
	int counts[V] = { 0 };
	struct gpu_sampling warm = { 1.0f, 1.0f, 0 }, greedy = { 0.0f, 1.0f, 0 };
	struct gpu_sampling k1 = { 1.0f, 1.0f, 1 }, p_small = { 1.0f, 0.05f, 0 };
	int same = 1, diff = 0;

	REQUIRE(gpu_sampler_init(&sp, V) == 0);
	for (int i = 0; i < V; i++)
		base[i] = sinf((float)i * 1.7f) * 2.0f;
	base[17] = 5.0f; /* the argmax */
	for (int n = 0; n < 200; n++) {
		int32_t a, b;

		memcpy(l, base, sizeof(l));
		a = gpu_sampler_pick(&sp, &warm, l, &r1);
		memcpy(l, base, sizeof(l));
		b = gpu_sampler_pick(&sp, &warm, l, &r2);
		same &= a == b;
		diff |= a != 17;
		counts[a]++;
	}
	CHECK_MSG(same, "the same seed gives the same draws");
	CHECK_MSG(diff, "temperature 1 draws more than the argmax");
	/* the argmax has p = e^5 / sum; 200 draws put it well above the rest */
	for (int i = 0; i < V; i++)
		if (i != 17)
			CHECK(counts[i] < counts[17]);
	memcpy(l, base, sizeof(l));
	CHECK_EQ(gpu_sampler_pick(&sp, &greedy, l, &r1), 17);
	for (int n = 0; n < 20; n++) {
		memcpy(l, base, sizeof(l));
		CHECK_EQ(gpu_sampler_pick(&sp, &k1, l, &r1), 17);
		memcpy(l, base, sizeof(l));
		CHECK_EQ(gpu_sampler_pick(&sp, &p_small, l, &r1), 17);
	}
	/* another seed, another sequence */
	uint64_t r3 = 43, r4 = 42;
	int differs = 0;

	for (int n = 0; n < 50; n++) {
		memcpy(l, base, sizeof(l));
		int32_t a = gpu_sampler_pick(&sp, &warm, l, &r3);

		memcpy(l, base, sizeof(l));
		differs |= a != gpu_sampler_pick(&sp, &warm, l, &r4);
	}
	CHECK(differs);
	gpu_sampler_release(&sp);
}

static int rewrite_tensor_name(const char *path, const char *from, const char *to)
{
	FILE *f = fopen(path, "r+b");
	char *buf;
	long n;
	char *p;

	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(buf);
		return -EIO;
	}
	p = memmem(buf, (size_t)n, from, strlen(from));
	if (p) {
		memcpy(p, to, strlen(to));
		rewind(f);
		fwrite(buf, 1, (size_t)n, f);
	}
	fclose(f);
	free(buf);
	return p ? 0 : -ENOENT;
}

int main(void)
{
	struct gpu_opts opts = { .backend = GPU_BACKEND_CPU, .max_batch = 1, .max_seq = T_SEQ,
				 .seed = 7 };
	struct gpu_ckpt_meta meta = { .step = 0, .seed = 7 };
	struct gpu_model *gm = NULL;
	struct gpu_infer *w = NULL;
	char dir[] = "/tmp/llmfs-infer-XXXXXX", ck[4096], st[4200], cmd[4400];
	int32_t tok[T_SEQ];
	uint64_t rng = 3;

	REQUIRE(mkdtemp(dir));
	snprintf(ck, sizeof(ck), "%s/model", dir);
	REQUIRE(gpu_model_new(&gm, &cfg, &opts) == 0);
	REQUIRE(gpu_ckpt_save(gm, ck, &meta) == 0);
	REQUIRE(gpu_infer_load(&w, ck) == 0);
	CHECK_EQ(gpu_infer_config(w)->n_layer, cfg.n_layer);
	CHECK_EQ(gpu_infer_config(w)->vocab_size, cfg.vocab_size);
	for (int i = 0; i < T_SEQ; i++)
		tok[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)cfg.vocab_size);
	test_logits(gm, w, tok);
	test_sampling();
	gpu_infer_free(w);
	w = NULL;

	/* a tensor renamed away: missing */
	snprintf(st, sizeof(st), "%s/model.safetensors", ck);
	REQUIRE(rewrite_tensor_name(st, "h.1.ln_2.bias", "h.1.ln_2.xias") == 0);
	CHECK_RC(gpu_infer_load(&w, ck), -EINVAL);
	/* another shape: the config says one more layer than the file holds */
	REQUIRE(rewrite_tensor_name(st, "h.1.ln_2.xias", "h.1.ln_2.bias") == 0);
	REQUIRE(gpu_infer_load(&w, ck) == 0);
	gpu_infer_free(w);
	w = NULL;
	snprintf(cmd, sizeof(cmd), "%s/config.json", ck);
	REQUIRE(rewrite_tensor_name(cmd, "\"n_embd\": 64", "\"n_embd\": 32") == 0);
	CHECK_RC(gpu_infer_load(&w, ck), -EINVAL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	gpu_model_free(gm);
	return check_status();
}
