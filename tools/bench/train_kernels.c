/* llmfs-train-kernels - time each layer kernel of a backend at one model's shapes, forward and
 * backward.
 *
 * usage: llmfs-train-kernels [--backend cpu|cuda] [--bf16] [--layers L] [--heads H] [--embd C]
 *                            [--vocab V] [--batch B] [--seq T]
 *
 * One line per kernel: milliseconds per call (best of 5, each call waited for with sync()) and
 * the achieved GFLOP/s of the products, so that a training step that falls behind the GEMM rate
 * shows where.  The lm-head matmul, the cross-entropy and AdamW run once per step, the rest once
 * per layer; "step estimate" weights them so.  The logits' rows are padded as gpt.c pads them.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/gpt.h"
#include "gpu/gpt_i.h"
#include "common/clock.h"

struct bench {
	const struct gpu_ops *o;
	void *ctx;
	int bf16;
};

/* n small random values in the backend's memory: fp32, or of the activation type when act */
static void *buf_of(struct bench *b, size_t n, int act)
{
	float *h = malloc(n * sizeof(float));
	void *d = NULL, *f = NULL;
	uint64_t r = n;

	if (!h) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		h[i] = 0.1f * (gpu_rng_uniform(&r) - 0.5f);
	if (b->o->alloc(b->ctx, &f, n * sizeof(float)) < 0 ||
	    b->o->to_dev(b->ctx, f, h, n * sizeof(float)) < 0) {
		fprintf(stderr, "llmfs-train-kernels: no memory for %zu floats\n", n);
		exit(1);
	}
	free(h);
	if (!act || !b->bf16)
		return f;
	if (b->o->alloc(b->ctx, &d, n * gpu_act_bytes(1)) < 0) {
		fprintf(stderr, "llmfs-train-kernels: no memory for %zu activations\n", n);
		exit(1);
	}
	b->o->act_from_f32(b->ctx, d, f, n);
	b->o->sync(b->ctx);
	b->o->free(b->ctx, f);
	return d;
}

#define TIME(label, per_step, flops, call)                                               \
	do {                                                                              \
		double best = 1e30;                                                       \
		for (int rep = 0; rep < 5; rep++) {                                       \
			double t0 = clock_mono_s();                                              \
			call;                                                             \
			if (o->sync(ctx) < 0) {                                           \
				fprintf(stderr, "%s: %s\n", label, o->error_detail(ctx)); \
				return 1;                                                 \
			}                                                                 \
			double dt = clock_mono_s() - t0;                                         \
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
		{ "vocab", 1, 0, 'V' }, { "batch", 1, 0, 'B' }, { "seq", 1, 0, 'T' },
		{ "backend", 1, 0, 'g' }, { "bf16", 0, 0, 'F' }, { 0, 0, 0, 0 } };
	int L = 6, NH = 6, C = 384, V = 256, B = 8, T = 256, c, r;
	struct bench bb = { gpu_cpu_ops(), NULL, 0 };
	double total = 0.0;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'L': L = atoi(optarg); break;
		case 'H': NH = atoi(optarg); break;
		case 'C': C = atoi(optarg); break;
		case 'V': V = atoi(optarg); break;
		case 'B': B = atoi(optarg); break;
		case 'T': T = atoi(optarg); break;
		case 'g': bb.o = strcmp(optarg, "cuda") == 0 ? gpu_cuda_ops() : gpu_cpu_ops(); break;
		case 'F': bb.bf16 = 1; break;
		default: return 2;
		}
	}
	if (!bb.o) {
		fprintf(stderr, "llmfs-train-kernels: this build has no CUDA backend\n");
		return 77;
	}
	if ((r = bb.o->ctx_new(&bb.ctx, bb.bf16)) < 0) {
		fprintf(stderr, "llmfs-train-kernels: %s context: %s\n", bb.o->name, strerror(-r));
		return r == -ENODEV ? 77 : 1;
	}
	const struct gpu_ops *o = bb.o;
	void *ctx = bb.ctx;
	struct gpu_config cfg = { L, NH, C, T, V };
	size_t np = gpu_config_num_params(&cfg);
	int N = B * T, Vp = (V + 63) / 64 * 64;
	size_t att = (size_t)B * NH * T * T, n4 = (size_t)N * 4 * C;
	void *x = buf_of(&bb, n4, 1), *y = buf_of(&bb, n4, 1), *dx = buf_of(&bb, n4, 1);
	void *dy = buf_of(&bb, n4, 1), *w = buf_of(&bb, (size_t)4 * C * C, 1);
	float *dw = buf_of(&bb, (size_t)4 * C * C, 0), *lnw = buf_of(&bb, 4 * (size_t)C, 0);
	float *bias = buf_of(&bb, 4 * (size_t)C, 0), *dbias = buf_of(&bb, 4 * (size_t)C, 0);
	float *mean = buf_of(&bb, N, 0), *rstd = buf_of(&bb, N, 0);
	void *a = buf_of(&bb, att, 1), *da = buf_of(&bb, att, 1);
	void *sc = buf_of(&bb, (size_t)GPU_ATT_SCRATCH * N * C, 1);
	void *lg = buf_of(&bb, (size_t)N * Vp, 1), *wte = buf_of(&bb, (size_t)V * C, 1);
	float *lse = buf_of(&bb, N, 0), *dwte = buf_of(&bb, (size_t)V * C, 0);
	float *losses = buf_of(&bb, N, 0);
	float *p = buf_of(&bb, np, 0), *g = buf_of(&bb, np, 0), *m1 = buf_of(&bb, np, 0);
	float *m2 = buf_of(&bb, np, 0);
	void *cp = bb.bf16 ? buf_of(&bb, np, 1) : NULL;
	int32_t *htg = malloc((size_t)N * sizeof(int32_t)), *tg = NULL;

	if (!htg || o->alloc(ctx, (void **)&tg, (size_t)N * sizeof(int32_t)) < 0)
		return 1;
	for (int i = 0; i < N; i++)
		htg[i] = i % V;
	if (o->to_dev(ctx, tg, htg, (size_t)N * sizeof(int32_t)) < 0)
		return 1;
	printf("shapes: backend=%s activations=%s L=%d H=%d C=%d V=%d B=%d T=%d\n", o->name,
	       bb.bf16 ? "bf16" : "fp32", L, NH, C, V, B, T);
	double mm = 2.0 * N * C * C; /* one C x C matmul */

	TIME("layernorm fwd", 0, 0, o->layernorm_forward(ctx, y, mean, rstd, x, lnw, bias, N, C));
	TIME("matmul qkv fwd", 0, 3 * mm,
	     o->matmul_forward(ctx, y, x, w, bias, N, C, 3 * C, 3 * C));
	TIME("attention fwd", 0, 4.0 * N * T * C,
	     o->attention_forward(ctx, y, a, x, sc, B, T, C, NH));
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
	     o->layernorm_backward(ctx, dx, dw, dbias, dy, x, lnw, mean, rstd, N, C));
	TIME("matmul attproj bwd", 0, 2 * mm,
	     o->matmul_backward(ctx, dx, dw, dbias, dy, x, w, N, C, C, C));
	TIME("attention bwd", 0, 8.0 * N * T * C,
	     o->attention_backward(ctx, dx, da, dy, x, a, sc, B, T, C, NH));
	TIME("matmul qkv bwd", 0, 6 * mm,
	     o->matmul_backward(ctx, dx, dw, dbias, dy, x, w, N, C, 3 * C, 3 * C));
	TIME("layernorm bwd (2nd)", 0, 0,
	     o->layernorm_backward(ctx, dx, dw, dbias, dy, x, lnw, mean, rstd, N, C));
	TIME("lm head fwd", 1, 2.0 * N * C * V,
	     o->matmul_forward(ctx, lg, x, wte, NULL, N, C, V, Vp));
	TIME("crossentropy fwd", 1, 0,
	     o->crossentropy_forward(ctx, losses, lse, lg, tg, N, V, Vp));
	TIME("crossentropy bwd", 1, 0,
	     o->crossentropy_backward(ctx, lg, lg, lse, tg, N, V, Vp, 1.0f / N));
	TIME("lm head bwd", 1, 4.0 * N * C * V,
	     o->matmul_backward(ctx, dx, dwte, NULL, lg, x, wte, N, C, V, Vp));
	TIME("adamw (all parameters)", 1, 0,
	     o->adamw(ctx, p, cp, g, m1, m2, np, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 0.5f,
		      0.5f));
	printf("step estimate: %.1f ms\n", total * 1e3);
	return 0;
}
