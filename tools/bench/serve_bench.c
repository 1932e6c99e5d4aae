/* serve_bench - generation speed of gpu/infer.h with the KV cache and without it.
 *
 * usage: llmfs-serve-bench DIR PROMPT_LEN NEW_TOKENS
 * Greedy decoding of NEW_TOKENS after a prompt of PROMPT_LEN pseudo-random tokens, twice:
 *   cache     the prompt fed once, then one token per step (gpu_infer_feed of 1 token)
 *   no cache  every step resets the state and feeds the whole sequence again (what a forward
 *             without a cache costs: the training engine's gpu_model_sample() does this)
 * Both paths run the same kernels and must pick the same tokens (checked).  Prints one JSON
 * line: prefill seconds, decode tokens/s of each, and their ratio. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/infer.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int32_t argmax(const float *l, int V)
{
	int32_t b = 0;

	for (int i = 1; i < V; i++)
		if (l[i] > l[b])
			b = i;
	return b;
}

int main(int argc, char **argv)
{
	struct gpu_infer *w = NULL;
	struct gpu_infer_state *s = NULL;
	int P, N, V, r;
	int32_t *seq, *seq2;
	float *logits;
	double t0, t1, t2, t3;
	uint64_t rng = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: llmfs-serve-bench DIR PROMPT_LEN NEW_TOKENS\n");
		return 2;
	}
	P = atoi(argv[2]);
	N = atoi(argv[3]);
	r = gpu_infer_load(&w, argv[1]);
	if (r < 0 || P < 1 || N < 2) {
		fprintf(stderr, "llmfs-serve-bench: %s: %s\n", argv[1], strerror(r < 0 ? -r : EINVAL));
		return 1;
	}
	V = gpu_infer_config(w)->vocab_size;
	if (P + N > gpu_infer_config(w)->n_ctx) {
		fprintf(stderr, "llmfs-serve-bench: %d + %d tokens exceed the context %d\n", P, N,
			gpu_infer_config(w)->n_ctx);
		return 1;
	}
	seq = malloc((size_t)(P + N) * sizeof(int32_t));
	seq2 = malloc((size_t)(P + N) * sizeof(int32_t));
	logits = malloc((size_t)V * sizeof(float));
	if (!seq || !seq2 || !logits || gpu_infer_state_new(&s, w, P + N) < 0)
		return 1;
	for (int i = 0; i < P; i++)
		seq[i] = seq2[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)V);

	t0 = now();
	if (gpu_infer_feed(s, seq, P, logits) < 0)
		return 1;
	t1 = now();
	seq[P] = argmax(logits, V);
	for (int i = 1; i < N; i++) {
		if (gpu_infer_feed(s, &seq[P + i - 1], 1, logits) < 0)
			return 1;
		seq[P + i] = argmax(logits, V);
	}
	t2 = now();
	for (int i = 0; i < N; i++) {
		gpu_infer_state_reset(s);
		if (gpu_infer_feed(s, seq2, P + i, logits) < 0)
			return 1;
		seq2[P + i] = argmax(logits, V);
	}
	t3 = now();
	/* the no-cache loop includes the prefill as its first step; compare decode steps alike:
	 * its N - 1 later steps against the cache's N - 1 */
	double nocache_decode = (t3 - t2) * (double)(N - 1) / N;
	int same = memcmp(seq, seq2, (size_t)(P + N) * sizeof(int32_t)) == 0;

	printf("{\"prompt\": %d, \"new\": %d, \"prefill_s\": %.4f, \"cache_tokens_per_s\": %.1f, "
	       "\"nocache_tokens_per_s\": %.1f, \"ratio\": %.2f, \"same_tokens\": %s}\n", P, N,
	       t1 - t0, (N - 1) / (t2 - t1), (N - 1) / nocache_decode,
	       nocache_decode / (t2 - t1), same ? "true" : "false");
	gpu_infer_state_free(s);
	gpu_infer_free(w);
	free(seq);
	free(seq2);
	free(logits);
	return same ? 0 : 1;
}
