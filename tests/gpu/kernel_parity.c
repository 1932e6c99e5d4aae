/* Kernel-by-kernel comparison of a backend's gpu_ops table with the CPU reference, as llm.c's
 * dev/cuda checks every kernel: the same random inputs, outputs (and accumulated gradients)
 * started from the same values.  With fp32 activations each result is within 1e-4 * (1 + max
 * |reference|) (GEMM-free kernels match to rounding; the attention and matmul products to fp32
 * summation order).  With bf16 activations the inputs of both sides are rounded to bf16 first,
 * so the difference is the candidate's rounding of its outputs and intermediates: within
 * 1e-2 * max |reference| + 1e-6 (a bf16 rounding is at most 2^-9 = 2e-3 of the value).
 * Shapes are not multiples of the warp or block sizes: T 70, C 96, V 700 (more than a
 * 256-thread block), strided rows, and an attention of T 1100.  Used by test_cuda_parity.c;
 * written against any table so that the harness itself can be checked against the CPU table
 * where no GPU exists. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpt.h"
#include "kernel_parity.h"

struct kp {
	const struct gpu_ops *ref, *cand;
	void *ctx;
	int bf16;           /* the candidate's activations are bf16 */
	double rel, abs;    /* tolerance: rel * max |reference| + abs */
	uint64_t rng;
	int failures;
	void *dev[96];      /* candidate allocations, freed at the end */
	int n_dev;
	void *host[96];     /* host arrays, freed at the end */
	int n_host;
};

static float bf16_round(float x)
{
	uint32_t u;

	memcpy(&u, &x, 4);
	u += 0x7fffu + (u >> 16 & 1u);
	u &= 0xffff0000u;
	memcpy(&x, &u, 4);
	return x;
}

static float *hrand(struct kp *k, size_t n, float scale)
{
	float *p = malloc(n * sizeof(float));

	if (!p)
		abort();
	for (size_t i = 0; i < n; i++)
		p[i] = scale * (2.0f * gpu_rng_uniform(&k->rng) - 1.0f);
	if (k->n_host == (int)(sizeof(k->host) / sizeof(k->host[0])))
		abort();
	k->host[k->n_host++] = p;
	return p;
}

/* an activation array: representable in the candidate's activation type, so that the
 * reference starts from exactly the candidate's inputs */
static float *harand(struct kp *k, size_t n, float scale)
{
	float *p = hrand(k, n, scale);

	for (size_t i = 0; k->bf16 && i < n; i++)
		p[i] = bf16_round(p[i]);
	return p;
}

static float *hcopy(struct kp *k, const float *src, size_t n)
{
	float *p = malloc(n * sizeof(float));

	if (!p)
		abort();
	memcpy(p, src, n * sizeof(float));
	if (k->n_host == (int)(sizeof(k->host) / sizeof(k->host[0])))
		abort();
	k->host[k->n_host++] = p;
	return p;
}

/* a candidate-side copy of host data */
static void *dcopy(struct kp *k, const void *src, size_t bytes)
{
	void *d = NULL;

	if (k->n_dev == (int)(sizeof(k->dev) / sizeof(k->dev[0])) ||
	    k->cand->alloc(k->ctx, &d, bytes) < 0 || k->cand->to_dev(k->ctx, d, src, bytes) < 0)
		abort();
	k->dev[k->n_dev++] = d;
	return d;
}

/* a candidate-side activation array holding the n floats of src */
static gpu_act *dacopy(struct kp *k, const float *src, size_t n)
{
	void *d = NULL, *f = NULL;

	if (!k->bf16)
		return dcopy(k, src, n * sizeof(float));
	if (k->cand->alloc(k->ctx, &d, n * gpu_act_bytes(1)) < 0 ||
	    k->cand->alloc(k->ctx, &f, n * sizeof(float)) < 0 ||
	    k->cand->to_dev(k->ctx, f, src, n * sizeof(float)) < 0)
		abort();
	k->cand->act_from_f32(k->ctx, d, f, n);
	if (k->cand->sync(k->ctx) < 0)
		abort();
	k->cand->free(k->ctx, f);
	if (k->n_dev == (int)(sizeof(k->dev) / sizeof(k->dev[0])))
		abort();
	k->dev[k->n_dev++] = d;
	return d;
}

static void report(struct kp *k, const char *what, const float *ref, const float *got, size_t n,
		   int r)
{
	double mx = 0.0, diff = 0.0;

	for (size_t i = 0; i < n && r == 0; i++) {
		double d = fabs((double)ref[i] - got[i]);

		mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
		diff = d > diff || isnan(d) ? d : diff;
	}
	double tol = k->rel * mx + k->abs;
	int ok = r == 0 && diff <= tol;

	printf("kernel %-30s max |diff| %.3e (tol %.1e) %s\n", what, diff, tol, ok ? "ok" : "FAIL");
	if (!ok)
		k->failures++;
}

/* fetch a candidate fp32 array, or activation array, and compare it with the reference's */
static void cmp(struct kp *k, const char *what, const float *ref, const float *dev, size_t n)
{
	float *got = malloc(n * sizeof(float));

	if (!got)
		abort();
	report(k, what, ref, got, n, k->cand->to_host(k->ctx, got, dev, n * sizeof(float)));
	free(got);
}

static void cmpa(struct kp *k, const char *what, const float *ref, const gpu_act *dev, size_t n)
{
	float *got = malloc(n * sizeof(float));

	if (!got)
		abort();
	report(k, what, ref, got, n, k->cand->act_to_host(k->ctx, got, dev, n));
	free(got);
}

/* causal attention forward and backward at (b, t, c, nh) */
static void attention_case(struct kp *k, int b, int t, int c, int nh, const char *tag)
{
	const struct gpu_ops *R = k->ref, *cand = k->cand;
	void *ctx = k->ctx;
	size_t n = (size_t)b * t, na = (size_t)b * nh * t * t;
	float *qkv = harand(k, n * 3 * c, 1.5f), *out = hrand(k, n * c, 1);
	float *att = hrand(k, na, 1), *dout = harand(k, n * c, 1);
	float *dqkv = hrand(k, n * 3 * c, 1), *datt = hrand(k, na, 1);
	gpu_act *d_qkv = dacopy(k, qkv, n * 3 * c), *d_out = dacopy(k, out, n * c);
	gpu_act *d_att = dacopy(k, att, na), *d_dout = dacopy(k, dout, n * c);
	gpu_act *d_dqkv = dacopy(k, dqkv, n * 3 * c), *d_datt = dacopy(k, datt, na);
	gpu_act *d_scratch = NULL;
	char what[64];

	/* left as allocated: a backend must not read scratch it did not write */
	if (k->n_dev == (int)(sizeof(k->dev) / sizeof(k->dev[0])) ||
	    cand->alloc(ctx, &d_scratch, GPU_ATT_SCRATCH * n * c * gpu_act_bytes(k->bf16)) < 0)
		abort();
	k->dev[k->n_dev++] = d_scratch;

	R->attention_forward(NULL, out, att, qkv, NULL, b, t, c, nh);
	cand->attention_forward(ctx, d_out, d_att, d_qkv, d_scratch, b, t, c, nh);
	snprintf(what, sizeof(what), "attention_forward out%s", tag);
	cmpa(k, what, out, d_out, n * c);
	snprintf(what, sizeof(what), "attention_forward att%s", tag);
	cmpa(k, what, att, d_att, na);
	/* backward from the same saved softmax on both sides */
	for (size_t i = 0; k->bf16 && i < na; i++)
		att[i] = bf16_round(att[i]);
	if (k->bf16)
		d_att = dacopy(k, att, na);
	R->attention_backward(NULL, dqkv, datt, dout, qkv, att, NULL, b, t, c, nh);
	cand->attention_backward(ctx, d_dqkv, d_datt, d_dout, d_qkv, d_att, d_scratch, b, t, c,
				 nh);
	snprintf(what, sizeof(what), "attention_backward dqkv%s", tag);
	cmpa(k, what, dqkv, d_dqkv, n * 3 * c);
}

/* LDO, LDV: row strides past OC and V, as the padded logits have; the columns between must
 * come out as they went in */
enum { B = 2, T = 70, C = 96, NH = 4, N = B * T, V = 700, OC = 72, LDO = 80, LDV = 704 };

int kernel_parity(const struct gpu_ops *cand, void *ctx, int bf16, int long_heads)
{
	struct kp k = { gpu_cpu_ops(), cand, ctx, bf16, bf16 ? 1e-2 : 1e-4, bf16 ? 1e-6 : 1e-4, 99,
			0, { 0 }, 0, { 0 }, 0 };
	const struct gpu_ops *R = k.ref;
	int32_t inp[N], tgt[N];

	printf("kernels with %s activations\n", bf16 ? "bf16" : "fp32");
	for (int i = 0; i < N; i++) {
		inp[i] = (int32_t)(gpu_rng_next(&k.rng) % 7); /* repeats: embedding rows collide */
		tgt[i] = (int32_t)(gpu_rng_next(&k.rng) % V);
	}
	int32_t *d_inp = dcopy(&k, inp, sizeof(inp)), *d_tgt = dcopy(&k, tgt, sizeof(tgt));

	/* encoder */
	{
		float *wte = hrand(&k, V * C, 1), *wpe = hrand(&k, T * C, 1), *out = hrand(&k, N * C, 1);
		float *dwte = hrand(&k, V * C, 1), *dwpe = hrand(&k, T * C, 1);
		float *dout = harand(&k, N * C, 1);
		float *d_wte = dcopy(&k, wte, V * C * 4), *d_wpe = dcopy(&k, wpe, T * C * 4);
		gpu_act *d_out = dacopy(&k, out, N * C);
		float *d_dwte = dcopy(&k, dwte, V * C * 4), *d_dwpe = dcopy(&k, dwpe, T * C * 4);
		gpu_act *d_dout = dacopy(&k, dout, N * C);

		R->encoder_forward(NULL, out, inp, wte, wpe, B, T, C);
		cand->encoder_forward(ctx, d_out, d_inp, d_wte, d_wpe, B, T, C);
		cmpa(&k, "encoder_forward", out, d_out, N * C);
		R->encoder_backward(NULL, dwte, dwpe, dout, inp, B, T, C);
		cand->encoder_backward(ctx, d_dwte, d_dwpe, d_dout, d_inp, B, T, C);
		cmp(&k, "encoder_backward dwte", dwte, d_dwte, V * C);
		cmp(&k, "encoder_backward dwpe", dwpe, d_dwpe, T * C);
	}
	/* layernorm */
	{
		float *x = harand(&k, N * C, 2), *w = hrand(&k, C, 1), *b = hrand(&k, C, 1);
		float *out = hrand(&k, N * C, 1), *mean = hrand(&k, N, 1), *rstd = hrand(&k, N, 1);
		float *dout = harand(&k, N * C, 1), *dinp = harand(&k, N * C, 1);
		float *dw = hrand(&k, C, 1), *db = hrand(&k, C, 1);
		gpu_act *d_x = dacopy(&k, x, N * C), *d_out = dacopy(&k, out, N * C);
		float *d_w = dcopy(&k, w, C * 4), *d_b = dcopy(&k, b, C * 4);
		float *d_mean = dcopy(&k, mean, N * 4), *d_rstd = dcopy(&k, rstd, N * 4);
		gpu_act *d_dout = dacopy(&k, dout, N * C), *d_dinp = dacopy(&k, dinp, N * C);
		float *d_dw = dcopy(&k, dw, C * 4), *d_db = dcopy(&k, db, C * 4);

		R->layernorm_forward(NULL, out, mean, rstd, x, w, b, N, C);
		cand->layernorm_forward(ctx, d_out, d_mean, d_rstd, d_x, d_w, d_b, N, C);
		cmpa(&k, "layernorm_forward out", out, d_out, N * C);
		cmp(&k, "layernorm_forward mean", mean, d_mean, N);
		cmp(&k, "layernorm_forward rstd", rstd, d_rstd, N);
		R->layernorm_backward(NULL, dinp, dw, db, dout, x, w, mean, rstd, N, C);
		cand->layernorm_backward(ctx, d_dinp, d_dw, d_db, d_dout, d_x, d_w, d_mean, d_rstd, N,
					 C);
		cmpa(&k, "layernorm_backward dinp", dinp, d_dinp, N * C);
		cmp(&k, "layernorm_backward dw", dw, d_dw, C);
		cmp(&k, "layernorm_backward db", db, d_db, C);
	}
	/* matmul */
	{
		float *x = harand(&k, N * C, 1), *w = harand(&k, OC * C, 1), *b = hrand(&k, OC, 1);
		float *out = harand(&k, N * LDO, 1), *dout = harand(&k, N * LDO, 1);
		float *dinp = hrand(&k, N * C, 1), *dw = hrand(&k, OC * C, 1), *db = hrand(&k, OC, 1);
		gpu_act *d_x = dacopy(&k, x, N * C), *d_w = dacopy(&k, w, OC * C);
		float *d_b = dcopy(&k, b, OC * 4);
		gpu_act *d_out = dacopy(&k, out, N * LDO), *d_dout = dacopy(&k, dout, N * LDO);
		gpu_act *d_dinp = dacopy(&k, dinp, N * C);
		float *d_dw = dcopy(&k, dw, OC * C * 4), *d_db = dcopy(&k, db, OC * 4);

		R->matmul_forward(NULL, out, x, w, b, N, C, OC, LDO);
		cand->matmul_forward(ctx, d_out, d_x, d_w, d_b, N, C, OC, LDO);
		cmpa(&k, "matmul_forward", out, d_out, N * LDO);
		R->matmul_backward(NULL, dinp, dw, db, dout, x, w, N, C, OC, LDO);
		cand->matmul_backward(ctx, d_dinp, d_dw, d_db, d_dout, d_x, d_w, N, C, OC, LDO);
		cmpa(&k, "matmul_backward dinp", dinp, d_dinp, N * C);
		cmp(&k, "matmul_backward dw", dw, d_dw, OC * C);
		cmp(&k, "matmul_backward dbias", db, d_db, OC);
	}
	/* attention: these shapes, and rows longer than a warp keeps in registers */
	attention_case(&k, B, T, C, NH, "");
	if (long_heads > 0)
		attention_case(&k, 1, 1100, 8 * long_heads, long_heads,
			       long_heads == 1 ? " T=1100 one head" : " T=1100");
	/* gelu, residual */
	{
		float *x = harand(&k, N * C, 3), *y = harand(&k, N * C, 1), *out = hrand(&k, N * C, 1);
		float *dout = harand(&k, N * C, 1), *dinp = hrand(&k, N * C, 1);
		gpu_act *d_x = dacopy(&k, x, N * C), *d_y = dacopy(&k, y, N * C);
		gpu_act *d_out = dacopy(&k, out, N * C), *d_dout = dacopy(&k, dout, N * C);
		gpu_act *d_dinp = dacopy(&k, dinp, N * C);

		R->gelu_forward(NULL, out, x, N * C);
		cand->gelu_forward(ctx, d_out, d_x, N * C);
		cmpa(&k, "gelu_forward", out, d_out, N * C);
		R->gelu_backward(NULL, dinp, x, dout, N * C);
		cand->gelu_backward(ctx, d_dinp, d_x, d_dout, N * C);
		cmpa(&k, "gelu_backward", dinp, d_dinp, N * C);
		R->residual_forward(NULL, out, x, y, N * C);
		cand->residual_forward(ctx, d_out, d_x, d_y, N * C);
		cmpa(&k, "residual_forward", out, d_out, N * C);
	}
	/* cross-entropy */
	{
		float *logits = harand(&k, N * LDV, 4), *lse = hrand(&k, N, 1);
		float *losses = hrand(&k, N, 1), *dl = hcopy(&k, logits, N * LDV);
		gpu_act *d_logits = dacopy(&k, logits, N * LDV), *d_dl = dacopy(&k, dl, N * LDV);
		float *d_lse = dcopy(&k, lse, N * 4), *d_losses = dcopy(&k, losses, N * 4);

		R->crossentropy_forward(NULL, losses, lse, logits, tgt, N, V, LDV);
		cand->crossentropy_forward(ctx, d_losses, d_lse, d_logits, d_tgt, N, V, LDV);
		cmp(&k, "crossentropy_forward losses", losses, d_losses, N);
		cmp(&k, "crossentropy_forward lse", lse, d_lse, N);
		/* in place, as gpt.c calls it */
		R->crossentropy_backward(NULL, dl, dl, lse, tgt, N, V, LDV, 1.0f / N);
		cand->crossentropy_backward(ctx, d_dl, d_dl, d_lse, d_tgt, N, V, LDV, 1.0f / N);
		cmpa(&k, "crossentropy_backward", dl, d_dl, N * LDV);
	}
	/* gradient norm, AdamW (with the weights' bf16 copy when the activations are bf16) */
	{
		size_t n = 10007;
		float *p = hrand(&k, n, 1), *g = hrand(&k, n, 1), *m = hrand(&k, n, 0.1f);
		float *v = hrand(&k, n, 0.1f);
		float *d_p = dcopy(&k, p, n * 4), *d_g = dcopy(&k, g, n * 4);
		float *d_m = dcopy(&k, m, n * 4), *d_v = dcopy(&k, v, n * 4);
		gpu_act *d_cp = bf16 ? dacopy(&k, p, n) : NULL;
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
		R->adamw(NULL, p, NULL, g, m, v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.19f,
			 0.0975f);
		cand->adamw(ctx, d_p, d_cp, d_g, d_m, d_v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f,
			    0.19f, 0.0975f);
		/* the optimizer is fp32 in both modes */
		k.rel = k.abs = 1e-4;
		cmp(&k, "adamw params", p, d_p, n);
		cmp(&k, "adamw m", m, d_m, n);
		cmp(&k, "adamw v", v, d_v, n);
		if (d_cp) {
			k.rel = 1e-2;
			k.abs = 1e-6;
			cmpa(&k, "adamw bf16 copy of params", p, d_cp, n);
		}
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
