/* Kernel-by-kernel comparison of a backend's gpu_ops table with the CPU reference, as llm.c's
 * dev/cuda checks every kernel: the same random inputs, outputs (and accumulated gradients)
 * started from the same values, each result within 1e-4 * (1 + max |reference|) (GEMM-free
 * kernels match to rounding; the attention and matmul products to fp32 summation order).
 * Used by test_cuda_parity.c; written against any table so that the harness itself can be
 * checked against the CPU table where no GPU exists. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpt.h"
#include "kernel_parity.h"

#define TOL 1e-4

struct kp {
	const struct gpu_ops *ref, *cand;
	void *ctx;
	uint64_t rng;
	int failures;
	void *dev[64];      /* candidate allocations, freed at the end */
	int n_dev;
	void *host[64];     /* host arrays, freed at the end */
	int n_host;
};

static float *hrand(struct kp *k, size_t n, float scale)
{
	float *p = malloc(n * sizeof(float));

	if (!p)
		abort();
	for (size_t i = 0; i < n; i++)
		p[i] = scale * (2.0f * gpu_rng_uniform(&k->rng) - 1.0f);
	k->host[k->n_host++] = p;
	return p;
}

static float *hcopy(struct kp *k, const float *src, size_t n)
{
	float *p = malloc(n * sizeof(float));

	if (!p)
		abort();
	memcpy(p, src, n * sizeof(float));
	k->host[k->n_host++] = p;
	return p;
}

/* a candidate-side copy of host data */
static void *dcopy(struct kp *k, const void *src, size_t bytes)
{
	void *d = NULL;

	if (k->cand->alloc(k->ctx, &d, bytes) < 0 || k->cand->to_dev(k->ctx, d, src, bytes) < 0)
		abort();
	k->dev[k->n_dev++] = d;
	return d;
}

/* fetch a candidate array and compare it with the reference's */
static void cmp(struct kp *k, const char *what, const float *ref, const float *dev, size_t n)
{
	float *got = malloc(n * sizeof(float));
	double mx = 0.0, diff = 0.0;
	int r;

	if (!got)
		abort();
	r = k->cand->to_host(k->ctx, got, dev, n * sizeof(float));
	for (size_t i = 0; i < n && r == 0; i++) {
		double d = fabs((double)ref[i] - got[i]);

		mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
		diff = d > diff || isnan(d) ? d : diff;
	}
	int ok = r == 0 && diff <= TOL * (1.0 + mx);

	printf("kernel %-30s max |diff| %.3e (tol %.1e) %s\n", what, diff, TOL * (1.0 + mx),
	       ok ? "ok" : "FAIL");
	if (!ok)
		k->failures++;
	free(got);
}

enum { B = 2, T = 24, C = 32, NH = 4, N = B * T, V = 50, OC = 40 };

int kernel_parity(const struct gpu_ops *cand, void *ctx)
{
	struct kp k = { gpu_cpu_ops(), cand, ctx, 99, 0, { 0 }, 0, { 0 }, 0 };
	const struct gpu_ops *R = k.ref;
	int32_t inp[N], tgt[N];

	for (int i = 0; i < N; i++) {
		inp[i] = (int32_t)(gpu_rng_next(&k.rng) % 7); /* repeats: embedding rows collide */
		tgt[i] = (int32_t)(gpu_rng_next(&k.rng) % V);
	}
	int32_t *d_inp = dcopy(&k, inp, sizeof(inp)), *d_tgt = dcopy(&k, tgt, sizeof(tgt));

	/* encoder */
	{
		float *wte = hrand(&k, V * C, 1), *wpe = hrand(&k, T * C, 1), *out = hrand(&k, N * C, 1);
		float *dwte = hrand(&k, V * C, 1), *dwpe = hrand(&k, T * C, 1);
		float *dout = hrand(&k, N * C, 1);
		float *d_wte = dcopy(&k, wte, V * C * 4), *d_wpe = dcopy(&k, wpe, T * C * 4);
		float *d_out = dcopy(&k, out, N * C * 4), *d_dwte = dcopy(&k, dwte, V * C * 4);
		float *d_dwpe = dcopy(&k, dwpe, T * C * 4), *d_dout = dcopy(&k, dout, N * C * 4);

		R->encoder_forward(NULL, out, inp, wte, wpe, B, T, C);
		cand->encoder_forward(ctx, d_out, d_inp, d_wte, d_wpe, B, T, C);
		cmp(&k, "encoder_forward", out, d_out, N * C);
		R->encoder_backward(NULL, dwte, dwpe, dout, inp, B, T, C);
		cand->encoder_backward(ctx, d_dwte, d_dwpe, d_dout, d_inp, B, T, C);
		cmp(&k, "encoder_backward dwte", dwte, d_dwte, V * C);
		cmp(&k, "encoder_backward dwpe", dwpe, d_dwpe, T * C);
	}
	/* layernorm */
	{
		float *x = hrand(&k, N * C, 2), *w = hrand(&k, C, 1), *b = hrand(&k, C, 1);
		float *out = hrand(&k, N * C, 1), *mean = hrand(&k, N, 1), *rstd = hrand(&k, N, 1);
		float *dout = hrand(&k, N * C, 1), *dinp = hrand(&k, N * C, 1);
		float *dw = hrand(&k, C, 1), *db = hrand(&k, C, 1);
		float *d_x = dcopy(&k, x, N * C * 4), *d_w = dcopy(&k, w, C * 4);
		float *d_b = dcopy(&k, b, C * 4), *d_out = dcopy(&k, out, N * C * 4);
		float *d_mean = dcopy(&k, mean, N * 4), *d_rstd = dcopy(&k, rstd, N * 4);
		float *d_dout = dcopy(&k, dout, N * C * 4), *d_dinp = dcopy(&k, dinp, N * C * 4);
		float *d_dw = dcopy(&k, dw, C * 4), *d_db = dcopy(&k, db, C * 4);

		R->layernorm_forward(NULL, out, mean, rstd, x, w, b, N, C);
		cand->layernorm_forward(ctx, d_out, d_mean, d_rstd, d_x, d_w, d_b, N, C);
		cmp(&k, "layernorm_forward out", out, d_out, N * C);
		cmp(&k, "layernorm_forward rstd", rstd, d_rstd, N);
		R->layernorm_backward(NULL, dinp, dw, db, dout, x, w, mean, rstd, N, C);
		cand->layernorm_backward(ctx, d_dinp, d_dw, d_db, d_dout, d_x, d_w, d_mean, d_rstd, N,
					 C);
		cmp(&k, "layernorm_backward dinp", dinp, d_dinp, N * C);
		cmp(&k, "layernorm_backward dw", dw, d_dw, C);
		cmp(&k, "layernorm_backward db", db, d_db, C);
	}
	/* matmul */
	{
		float *x = hrand(&k, N * C, 1), *w = hrand(&k, OC * C, 1), *b = hrand(&k, OC, 1);
		float *out = hrand(&k, N * OC, 1), *dout = hrand(&k, N * OC, 1);
		float *dinp = hrand(&k, N * C, 1), *dw = hrand(&k, OC * C, 1), *db = hrand(&k, OC, 1);
		float *d_x = dcopy(&k, x, N * C * 4), *d_w = dcopy(&k, w, OC * C * 4);
		float *d_b = dcopy(&k, b, OC * 4), *d_out = dcopy(&k, out, N * OC * 4);
		float *d_dout = dcopy(&k, dout, N * OC * 4), *d_dinp = dcopy(&k, dinp, N * C * 4);
		float *d_dw = dcopy(&k, dw, OC * C * 4), *d_db = dcopy(&k, db, OC * 4);

		R->matmul_forward(NULL, out, x, w, b, N, C, OC);
		cand->matmul_forward(ctx, d_out, d_x, d_w, d_b, N, C, OC);
		cmp(&k, "matmul_forward", out, d_out, N * OC);
		R->matmul_backward(NULL, dinp, dw, db, dout, x, w, N, C, OC);
		cand->matmul_backward(ctx, d_dinp, d_dw, d_db, d_dout, d_x, d_w, N, C, OC);
		cmp(&k, "matmul_backward dinp", dinp, d_dinp, N * C);
		cmp(&k, "matmul_backward dw", dw, d_dw, OC * C);
		cmp(&k, "matmul_backward dbias", db, d_db, OC);
	}
	/* attention */
	{
		size_t na = (size_t)B * NH * T * T;
		float *qkv = hrand(&k, N * 3 * C, 1.5f), *out = hrand(&k, N * C, 1);
		float *att = hrand(&k, na, 1), *dout = hrand(&k, N * C, 1);
		float *dqkv = hrand(&k, N * 3 * C, 1), *datt = hrand(&k, na, 1);
		float *d_qkv = dcopy(&k, qkv, N * 3 * C * 4), *d_out = dcopy(&k, out, N * C * 4);
		float *d_att = dcopy(&k, att, na * 4), *d_dout = dcopy(&k, dout, N * C * 4);
		float *d_dqkv = dcopy(&k, dqkv, N * 3 * C * 4), *d_datt = dcopy(&k, datt, na * 4);

		R->attention_forward(NULL, out, att, qkv, B, T, C, NH);
		cand->attention_forward(ctx, d_out, d_att, d_qkv, B, T, C, NH);
		cmp(&k, "attention_forward out", out, d_out, N * C);
		cmp(&k, "attention_forward att", att, d_att, na);
		R->attention_backward(NULL, dqkv, datt, dout, qkv, att, B, T, C, NH);
		cand->attention_backward(ctx, d_dqkv, d_datt, d_dout, d_qkv, d_att, B, T, C, NH);
		cmp(&k, "attention_backward dqkv", dqkv, d_dqkv, N * 3 * C);
	}
	/* gelu, residual */
	{
		float *x = hrand(&k, N * C, 3), *y = hrand(&k, N * C, 1), *out = hrand(&k, N * C, 1);
		float *dout = hrand(&k, N * C, 1), *dinp = hrand(&k, N * C, 1);
		float *d_x = dcopy(&k, x, N * C * 4), *d_y = dcopy(&k, y, N * C * 4);
		float *d_out = dcopy(&k, out, N * C * 4), *d_dout = dcopy(&k, dout, N * C * 4);
		float *d_dinp = dcopy(&k, dinp, N * C * 4);

		R->gelu_forward(NULL, out, x, N * C);
		cand->gelu_forward(ctx, d_out, d_x, N * C);
		cmp(&k, "gelu_forward", out, d_out, N * C);
		R->gelu_backward(NULL, dinp, x, dout, N * C);
		cand->gelu_backward(ctx, d_dinp, d_x, d_dout, N * C);
		cmp(&k, "gelu_backward", dinp, d_dinp, N * C);
		R->residual_forward(NULL, out, x, y, N * C);
		cand->residual_forward(ctx, d_out, d_x, d_y, N * C);
		cmp(&k, "residual_forward", out, d_out, N * C);
	}
	/* cross-entropy */
	{
		float *logits = hrand(&k, N * V, 4), *probs = hrand(&k, N * V, 1);
		float *losses = hrand(&k, N, 1), *dl = hcopy(&k, logits, N * V);
		float *d_logits = dcopy(&k, logits, N * V * 4), *d_probs = dcopy(&k, probs, N * V * 4);
		float *d_losses = dcopy(&k, losses, N * 4), *d_dl = dcopy(&k, dl, N * V * 4);

		R->crossentropy_forward(NULL, losses, probs, logits, tgt, N, V);
		cand->crossentropy_forward(ctx, d_losses, d_probs, d_logits, d_tgt, N, V);
		cmp(&k, "crossentropy_forward losses", losses, d_losses, N);
		cmp(&k, "crossentropy_forward probs", probs, d_probs, N * V);
		R->crossentropy_backward(NULL, dl, probs, tgt, N, V, 1.0f / N);
		cand->crossentropy_backward(ctx, d_dl, d_probs, d_tgt, N, V, 1.0f / N);
		cmp(&k, "crossentropy_backward", dl, d_dl, N * V);
	}
	/* gradient norm, AdamW */
	{
		size_t n = 10007;
		float *p = hrand(&k, n, 1), *g = hrand(&k, n, 1), *m = hrand(&k, n, 0.1f);
		float *v = hrand(&k, n, 0.1f);
		float *d_p = dcopy(&k, p, n * 4), *d_g = dcopy(&k, g, n * 4);
		float *d_m = dcopy(&k, m, n * 4), *d_v = dcopy(&k, v, n * 4);
		double sr = 0.0, sc = -1.0;

		for (size_t i = 0; i < n; i++)
			v[i] = fabsf(v[i]);
		if (cand->to_dev(ctx, d_v, v, n * 4) < 0)
			abort();
		R->sumsq(NULL, g, n, &sr);
		cand->sumsq(ctx, d_g, n, &sc);
		printf("kernel %-30s rel diff %.3e %s\n", "sumsq", fabs(sr - sc) / sr,
		       fabs(sr - sc) <= 1e-9 * sr ? "ok" : "FAIL");
		k.failures += !(fabs(sr - sc) <= 1e-9 * sr);
		R->adamw(NULL, p, g, m, v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.19f, 0.0975f);
		cand->adamw(ctx, d_p, d_g, d_m, d_v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.19f,
			    0.0975f);
		cmp(&k, "adamw params", p, d_p, n);
		cmp(&k, "adamw m", m, d_m, n);
		cmp(&k, "adamw v", v, d_v, n);
	}
	if (cand->sync(ctx) < 0) {
		printf("kernel sync failed\n");
		k.failures++;
	}
	for (int i = 0; i < k.n_dev; i++)
		cand->free(ctx, k.dev[i]);
	for (int i = 0; i < k.n_host; i++)
		free(k.host[i]);
	return k.failures;
}
