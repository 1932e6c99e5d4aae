/* Finite-difference gradient checks of the CPU reference, layer by layer and for the whole model.
 *
 * Each layer kernel is checked on its own: for a random linear read-out r, the scalar
 * f = sum(out * r) (accumulated in double) has gradient dout = r, so the kernel's backward gives
 * df/dinput, which is compared with central differences (f(x+h) - f(x-h)) / 2h.  Then the whole
 * model: d(mean loss)/d(parameter) for sampled entries of every parameter tensor.
 *
 * Tolerance: per checked tensor, ||analytic - numeric|| <= 1e-2 * ||numeric|| (relative L2 over
 * the sampled entries).  Float32 forward passes with h = 1e-2 leave numeric errors near 1e-3 of
 * the norm; a wrong backward (a missing term, a transposed product) is off by tens of percent.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpt.h"
#include "gpu/gpt_i.h"

#define TOL 1e-2
#define H 1e-2f
#define SAMPLES 24

static const struct gpu_ops *O;
static int failures;
static uint64_t rng = 12345;

/* Every test array is registered here and freed at the end, so LeakSanitizer stays quiet. */
static void *arena[256];
static int n_arena;

static void *keep(void *p)
{
	if (!p || n_arena == (int)(sizeof(arena) / sizeof(arena[0])))
		abort();
	arena[n_arena++] = p;
	return p;
}

static float *randv(size_t n, float scale)
{
	float *v = keep(malloc(n * sizeof(float)));

	for (size_t i = 0; i < n; i++)
		v[i] = scale * (2.0f * gpu_rng_uniform(&rng) - 1.0f);
	return v;
}

static float *zerov(size_t n)
{
	return keep(calloc(n, sizeof(float)));
}

static void report(const char *what, double num2, double diff2)
{
	double rel = sqrt(diff2) / (sqrt(num2) + 1e-12);
	int ok = rel <= TOL && num2 > 0.0;

	printf("%-28s rel err %.2e %s\n", what, rel, ok ? "ok" : "FAIL");
	if (!ok)
		failures++;
}

/* A layer under test: forward computes out from the inputs; the check perturbs one input. */
struct layer {
	void (*forward)(struct layer *L);
	float *out;
	size_t n_out;
	float *r;          /* read-out weights = dout */
};

static double readout(struct layer *L)
{
	double s = 0.0;

	L->forward(L);
	for (size_t i = 0; i < L->n_out; i++)
		s += (double)L->out[i] * L->r[i];
	return s;
}

/* Compare grad (analytic) with central differences of readout() w.r.t. x, at sampled indices. */
static void check_input(struct layer *L, const char *what, float *x, size_t n, const float *grad)
{
	double num2 = 0.0, diff2 = 0.0;
	int k = n < SAMPLES ? (int)n : SAMPLES;

	for (int s = 0; s < k; s++) {
		size_t i = n <= SAMPLES ? (size_t)s : gpu_rng_next(&rng) % n;
		float old = x[i];
		double fp, fm, num;

		x[i] = old + H;
		fp = readout(L);
		x[i] = old - H;
		fm = readout(L);
		x[i] = old;
		num = (fp - fm) / (2.0 * H);
		num2 += num * num;
		diff2 += (num - grad[i]) * (num - grad[i]);
	}
	report(what, num2, diff2);
}

enum { B = 2, T = 5, C = 8, NH = 2, N = B * T, V = 11 };

/* ---- layernorm ---- */
static float *ln_inp, *ln_w, *ln_b, *ln_mean, *ln_rstd;

static void ln_fwd(struct layer *L)
{
	O->layernorm_forward(NULL, L->out, ln_mean, ln_rstd, ln_inp, ln_w, ln_b, N, C);
}

static void test_layernorm(void)
{
	struct layer L = { ln_fwd, zerov(N * C), N * C, randv(N * C, 1.0f) };
	float *dinp = zerov(N * C), *dw = zerov(C), *db = zerov(C);

	ln_inp = randv(N * C, 2.0f);
	ln_w = randv(C, 1.0f);
	ln_b = randv(C, 1.0f);
	ln_mean = zerov(N);
	ln_rstd = zerov(N);
	ln_fwd(&L);
	O->layernorm_backward(NULL, dinp, dw, db, L.r, ln_inp, ln_w, ln_mean, ln_rstd, N, C);
	check_input(&L, "layernorm d/dinp", ln_inp, N * C, dinp);
	check_input(&L, "layernorm d/dweight", ln_w, C, dw);
	check_input(&L, "layernorm d/dbias", ln_b, C, db);
}

/* ---- matmul ---- */
enum { OC = 6 };
static float *mm_inp, *mm_w, *mm_b;

static void mm_fwd(struct layer *L)
{
	O->matmul_forward(NULL, L->out, mm_inp, mm_w, mm_b, N, C, OC, OC);
}

static void test_matmul(void)
{
	struct layer L = { mm_fwd, zerov(N * OC), N * OC, randv(N * OC, 1.0f) };
	float *dinp = zerov(N * C), *dw = zerov(OC * C), *db = zerov(OC);

	mm_inp = randv(N * C, 1.0f);
	mm_w = randv(OC * C, 1.0f);
	mm_b = randv(OC, 1.0f);
	O->matmul_backward(NULL, dinp, dw, db, L.r, mm_inp, mm_w, N, C, OC, OC);
	check_input(&L, "matmul d/dinp", mm_inp, N * C, dinp);
	check_input(&L, "matmul d/dweight", mm_w, OC * C, dw);
	check_input(&L, "matmul d/dbias", mm_b, OC, db);
}

/* ---- attention, at the shared small shape and at a long one that crosses the CPU's blocks
 * of query rows (T not a multiple of the block) ---- */
static float *at_qkv, *at_att;
static int at_B, at_T, at_C, at_NH;

static void at_fwd(struct layer *L)
{
	O->attention_forward(NULL, L->out, at_att, at_qkv, NULL, at_B, at_T, at_C, at_NH);
}

static void test_attention(int b, int t, int c, int nh, const char *what)
{
	size_t n = (size_t)b * t;
	struct layer L = { at_fwd, zerov(n * c), n * c, randv(n * c, 1.0f) };
	float *dqkv = zerov(n * 3 * c), *datt = zerov((size_t)b * nh * t * t);

	at_B = b;
	at_T = t;
	at_C = c;
	at_NH = nh;
	at_qkv = randv(n * 3 * c, 1.5f);
	at_att = zerov((size_t)b * nh * t * t);
	at_fwd(&L);
	O->attention_backward(NULL, dqkv, datt, L.r, at_qkv, at_att, NULL, b, t, c, nh);
	check_input(&L, what, at_qkv, n * 3 * c, dqkv);
}

/* ---- gelu, residual ---- */
static float *ge_inp, *res_a, *res_b;

static void ge_fwd(struct layer *L)
{
	O->gelu_forward(NULL, L->out, ge_inp, N * C);
}

static void res_fwd(struct layer *L)
{
	O->residual_forward(NULL, L->out, res_a, res_b, N * C);
}

static void test_gelu_residual(void)
{
	struct layer G = { ge_fwd, zerov(N * C), N * C, randv(N * C, 1.0f) };
	struct layer R = { res_fwd, zerov(N * C), N * C, randv(N * C, 1.0f) };
	float *dinp = zerov(N * C);

	ge_inp = randv(N * C, 3.0f);
	O->gelu_backward(NULL, dinp, ge_inp, G.r, N * C);
	check_input(&G, "gelu d/dinp", ge_inp, N * C, dinp);
	/* the residual's backward is the identity on both inputs: d/da = d/db = dout */
	res_a = randv(N * C, 1.0f);
	res_b = randv(N * C, 1.0f);
	check_input(&R, "residual d/da", res_a, N * C, R.r);
	check_input(&R, "residual d/db", res_b, N * C, R.r);
}

/*
 * GELU of a pre-activation far below zero: exp(-2u) overflows float there (x < -10.1), and
 * the fast-math kernel gave NaN for it, which a co-training job's outer step reached in a few
 * rounds (a whole model then failed as "Numerical result out of range").  Both directions
 * stay finite, the forward near -0 and the gradient near 0, as 0.5 x (1 + tanh u) is.
 */
static void test_gelu_far_negative(void)
{
	enum { K = 64 };
	float x[K], y[K], dout[K], dinp[K];

	for (int i = 0; i < K; i++) {
		x[i] = -40.0f + 80.0f * (float)i / (K - 1);
		dout[i] = 1.0f;
	}
	x[0] = -1e6f;
	x[K - 1] = 1e6f;
	O->gelu_forward(NULL, y, x, K);
	O->gelu_backward(NULL, dinp, x, dout, K);
	for (int i = 0; i < K; i++) {
		double want = 0.5 * x[i] * (1.0 + tanh(0.7978845608028654 *
						       (x[i] + 0.044715 * (double)x[i] * x[i] * x[i])));

		if (!isfinite(y[i]) || fabs(y[i] - want) > 1e-5 * (1.0 + fabs(want)) ||
		    !isfinite(dinp[i]) || dinp[i] < -0.2f || dinp[i] > 1.2f) {
			printf("gelu at x = %g: forward %g (want %g), d/dx %g\n", x[i], y[i], want,
			       dinp[i]);
			failures++;
		}
	}
}

/* ---- cross-entropy: read-out is the mean loss ---- */
static float *ce_logits, *ce_lse;
static int32_t ce_tgt[N];

static void ce_fwd(struct layer *L)
{
	O->crossentropy_forward(NULL, L->out, ce_lse, ce_logits, ce_tgt, N, V, V);
}

static void test_crossentropy(void)
{
	float *r = keep(malloc(N * sizeof(float)));
	struct layer L = { ce_fwd, zerov(N), N, r };
	float *dlogits = zerov(N * V);

	for (int i = 0; i < N; i++) {
		r[i] = 1.0f / N;
		ce_tgt[i] = (int32_t)(gpu_rng_next(&rng) % V);
	}
	ce_logits = randv(N * V, 3.0f);
	ce_lse = zerov(N);
	ce_fwd(&L);
	O->crossentropy_backward(NULL, dlogits, ce_logits, ce_lse, ce_tgt, N, V, V, 1.0f / N);
	check_input(&L, "crossentropy d/dlogits", ce_logits, N * V, dlogits);
}

/* ---- encoder ---- */
static float *en_wte, *en_wpe;
static int32_t en_inp[N];

static void en_fwd(struct layer *L)
{
	O->encoder_forward(NULL, L->out, en_inp, en_wte, en_wpe, B, T, C);
}

static void test_encoder(void)
{
	struct layer L = { en_fwd, zerov(N * C), N * C, randv(N * C, 1.0f) };
	float *dwte = zerov(V * C), *dwpe = zerov(T * C);

	for (int i = 0; i < N; i++)
		en_inp[i] = (int32_t)(gpu_rng_next(&rng) % 4); /* repeats: rows must accumulate */
	en_wte = randv(V * C, 1.0f);
	en_wpe = randv(T * C, 1.0f);
	O->encoder_backward(NULL, dwte, dwpe, L.r, en_inp, B, T, C);
	/* only the first rows of wte are used; check those */
	check_input(&L, "encoder d/dwte", en_wte, 4 * C, dwte);
	check_input(&L, "encoder d/dwpe", en_wpe, T * C, dwpe);
}

/* ---- whole model ---- */
static void test_model(void)
{
	static const char *names[GPU_NPARAMS] = {
		"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w",
		"ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb" };
	struct gpu_config cfg = { 2, 2, 8, 6, 13 };
	struct gpu_opts opts = { GPU_BACKEND_CPU, 2, 6, 0, 7, 0 };
	struct gpu_model *m = NULL;
	size_t sizes[GPU_NPARAMS], np, off = 0;
	int32_t inp[12], tgt[12];
	float *p, *g, loss;

	if (gpu_model_new(&m, &cfg, &opts) < 0) {
		printf("model: cannot create\n");
		failures++;
		return;
	}
	np = gpu_model_num_params(m);
	p = malloc(np * sizeof(float));
	g = malloc(np * sizeof(float));
	gpu_model_read(m, GPU_BUF_PARAMS, p);
	/* The initial biases are 0 and LN gains 1: perturb everything so that every path carries
	 * gradient and no check passes by symmetry. */
	for (size_t i = 0; i < np; i++)
		p[i] += 0.3f * (2.0f * gpu_rng_uniform(&rng) - 1.0f);
	gpu_model_write(m, GPU_BUF_PARAMS, p);
	for (int i = 0; i < 12; i++) {
		inp[i] = (int32_t)(gpu_rng_next(&rng) % 13);
		tgt[i] = (int32_t)(gpu_rng_next(&rng) % 13);
	}
	if (gpu_model_forward(m, inp, tgt, 2, 6, &loss) < 0 || gpu_model_backward(m) < 0) {
		printf("model: forward/backward failed\n");
		failures++;
		goto out;
	}
	gpu_model_read(m, GPU_BUF_GRADS, g);
	gpu_param_sizes(&cfg, sizes);
	for (int t = 0; t < GPU_NPARAMS; t++) {
		double num2 = 0.0, diff2 = 0.0;
		char what[64];

		for (int s = 0; s < SAMPLES; s++) {
			size_t i = off + gpu_rng_next(&rng) % sizes[t];
			float old = p[i], lp, lm;
			double num;

			p[i] = old + H;
			gpu_model_write(m, GPU_BUF_PARAMS, p);
			gpu_model_forward(m, inp, tgt, 2, 6, &lp);
			p[i] = old - H;
			gpu_model_write(m, GPU_BUF_PARAMS, p);
			gpu_model_forward(m, inp, tgt, 2, 6, &lm);
			p[i] = old;
			num = ((double)lp - lm) / (2.0 * H);
			num2 += num * num;
			diff2 += (num - g[i]) * (num - g[i]);
		}
		snprintf(what, sizeof(what), "model d loss/d %s", names[t]);
		report(what, num2, diff2);
		off += sizes[t];
	}
out:
	free(p);
	free(g);
	gpu_model_free(m);
}

int main(void)
{
	O = gpu_cpu_ops();
	test_layernorm();
	test_matmul();
	test_attention(B, T, C, NH, "attention d/dqkv");
	test_attention(1, 75, 8, 2, "attention d/dqkv (T 75)");
	test_gelu_residual();
	test_gelu_far_negative();
	test_crossentropy();
	test_encoder();
	test_model();
	for (int i = 0; i < n_arena; i++)
		free(arena[i]);
	printf("%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
