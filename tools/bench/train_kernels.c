/* llmfs-train-kernels - time each CPU layer kernel at one model's shapes, forward and backward.
 *
 * usage: llmfs-train-kernels [--layers L] [--heads H] [--embd C] [--vocab V] [--batch B] [--seq T]
 *
 * One line per kernel: milliseconds per call (best of 5) and the share of one layer's time, so
 * that a training step that falls behind the GEMM rate shows where.  The lm-head matmul and the
 * cross-entropy run once per step, the rest once per layer; "step estimate" weights them so.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gpu/gpt.h"
#include "gpu/gpt_i.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *buf(size_t n)
{
	float *p = malloc(n * sizeof(float));
	uint64_t r = n;

	if (!p) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = 0.1f * (gpu_rng_uniform(&r) - 0.5f);
	return p;
}

#define TIME(label, per_step, flops, call)                                               \
	do {                                                                              \
		double best = 1e30;                                                       \
		for (int rep = 0; rep < 5; rep++) {                                       \
			double t0 = now_s();                                              \
			call;                                                             \
			double dt = now_s() - t0;                                         \
			best = dt < best ? dt : best;                                     \
		}                                                                         \
		total += best * (per_step ? 1 : L);                                       \
		printf("%-26s %9.2f ms", label, best * 1e3);                             \
		if (flops > 0)                                                            \
			printf("  %7.1f GFLOP/s", (flops) / best / 1e9);                  \
		printf("%s\n", per_step ? "  (once per step)" : "");                      \
	} while (0)

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "layers", 1, 0, 'L' }, { "heads", 1, 0, 'H' }, { "embd", 1, 0, 'C' },
		{ "vocab", 1, 0, 'V' }, { "batch", 1, 0, 'B' }, { "seq", 1, 0, 'T' }, { 0, 0, 0, 0 } };
	int L = 6, NH = 6, C = 384, V = 256, B = 8, T = 256, c;
	const struct gpu_ops *o = gpu_cpu_ops();
	void *ctx = NULL;
	double total = 0.0;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'L': L = atoi(optarg); break;
		case 'H': NH = atoi(optarg); break;
		case 'C': C = atoi(optarg); break;
		case 'V': V = atoi(optarg); break;
		case 'B': B = atoi(optarg); break;
		case 'T': T = atoi(optarg); break;
		default: return 2;
		}
	}
	int N = B * T;
	size_t att = (size_t)B * NH * T * T;
	float *x = buf((size_t)N * 4 * C), *y = buf((size_t)N * 4 * C), *dx = buf((size_t)N * 4 * C);
	float *dy = buf((size_t)N * 4 * C), *w = buf((size_t)4 * C * C), *dw = buf((size_t)4 * C * C);
	float *bias = buf(4 * (size_t)C), *dbias = buf(4 * (size_t)C), *mean = buf(N),
	      *rstd = buf(N);
	float *a = buf(att), *da = buf(att), *lg = buf((size_t)N * V), *pr = buf((size_t)N * V);
	float *wte = buf((size_t)V * C), *losses = buf(N);
	int32_t *tg = malloc((size_t)N * sizeof(int32_t));

	if (!tg || o->ctx_new(&ctx, 0) < 0)
		return 1;
	for (int i = 0; i < N; i++)
		tg[i] = i % V;
	printf("shapes: L=%d H=%d C=%d V=%d B=%d T=%d\n", L, NH, C, V, B, T);
	double mm = 2.0 * N * C * C; /* one C x C matmul */

	TIME("layernorm fwd", 0, 0, o->layernorm_forward(ctx, y, mean, rstd, x, w, bias, N, C));
	TIME("matmul qkv fwd", 0, 3 * mm,
	     o->matmul_forward(ctx, y, x, w, bias, N, C, 3 * C, 3 * C));
	TIME("attention fwd", 0, 4.0 * N * T * C,
	     o->attention_forward(ctx, y, a, x, B, T, C, NH));
	TIME("matmul attproj fwd", 0, mm, o->matmul_forward(ctx, y, x, w, bias, N, C, C, C));
	TIME("residual fwd", 0, 0, o->residual_forward(ctx, y, x, dx, (size_t)N * C));
	TIME("matmul fc fwd", 0, 4 * mm,
	     o->matmul_forward(ctx, y, x, w, bias, N, C, 4 * C, 4 * C));
	TIME("gelu fwd", 0, 0, o->gelu_forward(ctx, y, x, (size_t)N * 4 * C));
	TIME("matmul fcproj fwd", 0, 4 * mm,
	     o->matmul_forward(ctx, y, x, w, bias, N, 4 * C, C, C));
	TIME("matmul fcproj bwd", 0, 8 * mm,
	     o->matmul_backward(ctx, dx, dw, dbias, dy, x, w, N, 4 * C, C, C));
	TIME("gelu bwd", 0, 0, o->gelu_backward(ctx, dx, x, dy, (size_t)N * 4 * C));
	TIME("matmul fc bwd", 0, 8 * mm,
	     o->matmul_backward(ctx, dx, dw, dbias, dy, x, w, N, C, 4 * C, 4 * C));
	TIME("layernorm bwd", 0, 0,
	     o->layernorm_backward(ctx, dx, dw, dbias, dy, x, w, mean, rstd, N, C));
	TIME("matmul attproj bwd", 0, 2 * mm,
	     o->matmul_backward(ctx, dx, dw, dbias, dy, x, w, N, C, C, C));
	TIME("attention bwd", 0, 8.0 * N * T * C,
	     o->attention_backward(ctx, dx, da, dy, x, a, B, T, C, NH));
	TIME("matmul qkv bwd", 0, 6 * mm,
	     o->matmul_backward(ctx, dx, dw, dbias, dy, x, w, N, C, 3 * C, 3 * C));
	TIME("layernorm bwd (2nd)", 0, 0,
	     o->layernorm_backward(ctx, dx, dw, dbias, dy, x, w, mean, rstd, N, C));
	TIME("lm head fwd", 1, 2.0 * N * C * V,
	     o->matmul_forward(ctx, lg, x, wte, NULL, N, C, V, V));
	TIME("crossentropy fwd", 1, 0,
	     o->crossentropy_forward(ctx, losses, pr, lg, tg, N, V, V));
	TIME("crossentropy bwd", 1, 0,
	     o->crossentropy_backward(ctx, lg, pr, tg, N, V, V, 1.0f / N));
	TIME("lm head bwd", 1, 4.0 * N * C * V,
	     o->matmul_backward(ctx, dx, wte, NULL, lg, x, wte, N, C, V, V));
	printf("step estimate (no AdamW): %.1f ms\n", total * 1e3);
	return 0;
}
