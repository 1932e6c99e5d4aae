/* gpu/window.c - a co-training window and a fixed validation loss (see window.h). */
#include "gpu/window.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int window_batch(const struct gpu_window *w, long s, int vocab, int32_t *inp,
			int32_t *tgt)
{
	size_t span = w->hi - w->lo - (size_t)w->T;
	int b, t;

	for (b = 0; b < w->B; b++) {
		uint64_t x = mix(w->seed + ((uint64_t)s * (uint64_t)w->B + (uint64_t)b + 1) *
				 0x9e3779b97f4a7c15ULL);
		const uint16_t *p = w->tokens + w->lo + x % span;

		for (t = 0; t < w->T; t++) {
			if (p[t] >= vocab || p[t + 1] >= vocab)
				return -EINVAL;
			inp[b * w->T + t] = p[t];
			tgt[b * w->T + t] = p[t + 1];
		}
	}
	return 0;
}

static int reset(struct gpu_model *m, const float *start, size_t n)
{
	float *zero = calloc(n, sizeof(*zero));
	int r;

	if (!zero)
		return -ENOMEM;
	r = gpu_model_write(m, GPU_BUF_PARAMS, start);
	if (r == 0)
		r = gpu_model_write(m, GPU_BUF_ADAM_M, zero);
	if (r == 0)
		r = gpu_model_write(m, GPU_BUF_ADAM_V, zero);
	if (r == 0)
		gpu_model_set_adam_step(m, 0);
	free(zero);
	return r;
}

static void diff(const float *a, const float *b, float *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = a[i] - b[i];
}

int gpu_window_run(struct gpu_model *m, const struct gpu_window *w, float *delta,
		   gpu_window_step_fn step, void *arg)
{
	const struct gpu_config *cfg = gpu_model_config(m);
	size_t n = gpu_model_num_params(m), bt = (size_t)w->B * (size_t)w->T;
	int32_t *inp = NULL, *tgt = NULL;
	float loss;
	long s;
	int r;

	if (w->steps < 1 || w->B < 1 || w->T < 1 || w->hi <= w->lo ||
	    w->hi - w->lo < (size_t)w->T + 1)
		return -EINVAL;
	inp = malloc(bt * sizeof(*inp));
	tgt = malloc(bt * sizeof(*tgt));
	if (!inp || !tgt) {
		r = -ENOMEM;
		goto out;
	}
	r = reset(m, w->start, n);
	for (s = 0; s < w->steps && r == 0; s++) {
		r = window_batch(w, s, cfg->vocab_size, inp, tgt);
		if (r == 0)
			r = gpu_model_forward(m, inp, tgt, w->B, w->T, &loss);
		if (r == 0)
			r = gpu_model_backward(m);
		if (r == 0)
			r = gpu_model_step(m, &w->adamw, w->lr, NULL);
		if (r == 0 && step) {
			r = gpu_model_read(m, GPU_BUF_PARAMS, delta);
			if (r == 0) {
				diff(w->start, delta, delta, n);
				r = step(arg, s + 1, delta, n);
			}
		}
	}
	if (r == 0)
		r = gpu_model_read(m, GPU_BUF_PARAMS, delta);
	if (r == 0)
		diff(w->start, delta, delta, n);
out:
	free(inp);
	free(tgt);
	return r;
}

int gpu_window_loss(struct gpu_model *m, const float *weights, const uint16_t *tokens,
		    size_t lo, size_t hi, int B, int T, int n_batches, double *ret_loss)
{
	const struct gpu_config *cfg = gpu_model_config(m);
	size_t bt = (size_t)B * (size_t)T, span, k = 0, nseq;
	int32_t *inp = NULL, *tgt = NULL;
	double sum = 0;
	float loss;
	int r, i, b, t;

	if (n_batches < 1 || B < 1 || T < 1 || hi <= lo || hi - lo < (size_t)T + 1)
		return -EINVAL;
	span = hi - lo - (size_t)T;
	nseq = (size_t)n_batches * (size_t)B;
	inp = malloc(bt * sizeof(*inp));
	tgt = malloc(bt * sizeof(*tgt));
	if (!inp || !tgt) {
		r = -ENOMEM;
		goto out;
	}
	r = gpu_model_write(m, GPU_BUF_PARAMS, weights);
	for (i = 0; i < n_batches && r == 0; i++) {
		for (b = 0; b < B; b++, k++) {
			const uint16_t *p = tokens + lo + (nseq > 1 ? k * (span - 1) / (nseq - 1) : 0);

			for (t = 0; t < T; t++) {
				if (p[t] >= cfg->vocab_size || p[t + 1] >= cfg->vocab_size) {
					r = -EINVAL;
					goto out;
				}
				inp[b * T + t] = p[t];
				tgt[b * T + t] = p[t + 1];
			}
		}
		r = gpu_model_forward(m, inp, tgt, B, T, &loss);
		sum += loss;
	}
	if (r == 0)
		*ret_loss = sum / n_batches;
out:
	free(inp);
	free(tgt);
	return r;
}
