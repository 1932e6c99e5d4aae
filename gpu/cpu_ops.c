/* gpu/cpu_ops.c - the CPU reference kernels: OpenMP across cores, OpenBLAS for the matmuls.
 *
 * One thread pool: OpenBLAS is set to one thread and every GEMM is split across the OpenMP
 * threads here (par_sgemm), attention runs one (batch, head) per thread.  Letting OpenBLAS run
 * its own pthreads beside OpenMP's left both pools spinning against each other; on two cores a
 * quarter of the step went to libgomp's wait loop.
 *
 * Loops are scheduled dynamically (guided, or dynamic blocks) so that a thread preempted by
 * other work on the machine does not stall the rest.  That is safe for reproducibility because
 * every output element is computed whole by one iteration: loops that reduce across rows are
 * split by columns instead (or into a fixed number of chunks), so results do not depend on
 * scheduling: the CPU backend is bit-reproducible for a fixed thread count, which checkpoint
 * resume relies on.  Attention runs as BLAS products per
 * (batch, head) on the strided qkv array directly, with the causal softmax in between, in
 * blocks of query rows that skip most of the masked upper triangle.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/cpu_ops_i.h"
#include "gpu/gpt_i.h"

#define LN_EPS 1e-5f
#define SUMSQ_CHUNKS 64
/* PAR_MIN (cpu_ops_i.h): work (elements, or multiply-adds / 64 for GEMMs) below which a kernel
 * runs on one thread.  A parallel region costs microseconds on an idle machine, and a scheduler
 * tick when a worker must be woken on a core that other work holds; small layers cannot
 * amortise that. */
/* Column blocks for reductions across rows: wide enough to stream, narrow enough to spread. */
#define COLBLOCK 64

static int cpu_ctx_new(void **ret_ctx, int bf16)
{
	/* The reference computes in fp32 only. */
	if (bf16)
		return -EINVAL;
	/* process-wide, and idempotent: see the comment at the top */
	openblas_set_num_threads(1);
	*ret_ctx = NULL;
	return 0;
}

/* Row-major C (M,N) = alpha op(A) (M,K) . op(B) (K,N) + beta C, split across the OpenMP threads
 * by rows of C, or by columns when C is wide and short.  Each thread calls the single-threaded
 * BLAS on its block; every element is still one BLAS dot product, so the split does not change
 * the result for a given thread count. */
static void par_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
		      const float *B, int ldb, float beta, float *C, int ldc)
{
	enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE opb = tb ? CblasTrans : CblasNoTrans;
	int by_rows = M >= N, len = by_rows ? M : N;
	/* Blocks of whole 16-wide tiles, about four per thread and handed out dynamically: on a
	 * machine shared with other work, a preempted thread's blocks go to the others instead of
	 * holding the barrier.  Which thread computes a block does not change its result. */
	int nt = omp_get_max_threads();
	int chunk = ((len + 4 * nt - 1) / (4 * nt) + 15) / 16 * 16;
	int nchunks = (len + chunk - 1) / chunk;

#pragma omp parallel for schedule(dynamic, 1) if ((double)M * N * K >= PAR_MIN * 64.0)
	for (int k = 0; k < nchunks; k++) {
		int i0 = k * chunk, i1 = i0 + chunk < len ? i0 + chunk : len;

		if (by_rows)
			cblas_sgemm(CblasRowMajor, opa, opb, i1 - i0, N, K, alpha,
				    ta ? A + i0 : A + (size_t)i0 * lda, lda, B, ldb, beta,
				    C + (size_t)i0 * ldc, ldc);
		else
			cblas_sgemm(CblasRowMajor, opa, opb, M, i1 - i0, K, alpha, A, lda,
				    tb ? B + (size_t)i0 * ldb : B + i0, ldb, beta, C + i0, ldc);
	}
}

static void cpu_ctx_free(void *ctx)
{
}

static int cpu_alloc(void *ctx, void **ret, size_t bytes)
{
	/* 64-byte alignment keeps BLAS and vector loads on cache lines. */
	void *p = NULL;

	if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
		return -ENOMEM;
	*ret = p;
	return 0;
}

static void cpu_free(void *ctx, void *p)
{
	free(p);
}

static int cpu_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
	memcpy(dst, src, bytes);
	return 0;
}

static int cpu_zero(void *ctx, void *p, size_t bytes)
{
	memset(p, 0, bytes);
	return 0;
}

static int cpu_sync(void *ctx)
{
	return 0;
}

static const char *cpu_error_detail(void *ctx)
{
	return "";
}

static void cpu_act_from_f32(void *ctx, gpu_act *dst, const float *src, size_t n)
{
	memcpy(dst, src, n * sizeof(float));
}

static int cpu_act_to_host(void *ctx, float *dst, const gpu_act *src, size_t n)
{
	memcpy(dst, src, n * sizeof(float));
	return 0;
}

static void cpu_encoder_forward(void *ctx, gpu_act *a_out, const int32_t *inp, const float *wte,
				const float *wpe, int B, int T, int C)
{
	float *out = a_out;

#pragma omp parallel for schedule(guided) if ((size_t)B * T * C >= PAR_MIN)
	for (int bt = 0; bt < B * T; bt++) {
		const float *te = wte + (size_t)inp[bt] * C;
		const float *pe = wpe + (size_t)(bt % T) * C;
		float *o = out + (size_t)bt * C;

		for (int c = 0; c < C; c++)
			o[c] = te[c] + pe[c];
	}
}

static void cpu_encoder_backward(void *ctx, float *dwte, float *dwpe, const gpu_act *a_dout,
				 const int32_t *inp, int B, int T, int C)
{
	const float *dout = a_dout;

	/* Rows with the same token hit the same dwte row: split by channel blocks, not rows. */
#pragma omp parallel for schedule(guided) if ((size_t)B * T * C >= PAR_MIN)
	for (int c0 = 0; c0 < C; c0 += COLBLOCK) {
		int c1 = c0 + COLBLOCK < C ? c0 + COLBLOCK : C;

		for (int bt = 0; bt < B * T; bt++) {
			const float *d = dout + (size_t)bt * C;
			float *te = dwte + (size_t)inp[bt] * C;
			float *pe = dwpe + (size_t)(bt % T) * C;

			for (int c = c0; c < c1; c++) {
				te[c] += d[c];
				pe[c] += d[c];
			}
		}
	}
}

static void cpu_layernorm_forward(void *ctx, gpu_act *a_out, float *mean, float *rstd,
				  const gpu_act *a_inp, const float *w, const float *b, int N, int C)
{
	float *out = a_out;
	const float *inp = a_inp;

#pragma omp parallel for schedule(guided) if ((size_t)N * C >= PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *x = inp + (size_t)n * C;
		float *o = out + (size_t)n * C;
		float m = 0.0f, v = 0.0f;

		for (int c = 0; c < C; c++)
			m += x[c];
		m /= C;
		for (int c = 0; c < C; c++)
			v += (x[c] - m) * (x[c] - m);
		v /= C;
		float s = 1.0f / sqrtf(v + LN_EPS);

		for (int c = 0; c < C; c++)
			o[c] = (x[c] - m) * s * w[c] + b[c];
		mean[n] = m;
		rstd[n] = s;
	}
}

static void cpu_layernorm_backward(void *ctx, gpu_act *a_dinp, float *dw, float *db,
				   const gpu_act *a_dout, const gpu_act *a_inp, const float *w,
				   const float *mean, const float *rstd, int N, int C)
{
	float *dinp = a_dinp;
	const float *dout = a_dout, *inp = a_inp;

#pragma omp parallel for schedule(guided) if ((size_t)N * C >= PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *x = inp + (size_t)n * C;
		const float *d = dout + (size_t)n * C;
		float *di = dinp + (size_t)n * C;
		float m = mean[n], s = rstd[n];
		float dmean = 0.0f, dnormmean = 0.0f;

		for (int c = 0; c < C; c++) {
			float dn = w[c] * d[c];

			dmean += dn;
			dnormmean += dn * (x[c] - m) * s;
		}
		dmean /= C;
		dnormmean /= C;
		for (int c = 0; c < C; c++) {
			float norm = (x[c] - m) * s;

			di[c] += (w[c] * d[c] - dmean - norm * dnormmean) * s;
		}
	}
#pragma omp parallel for schedule(guided) if ((size_t)N * C >= PAR_MIN)
	for (int c0 = 0; c0 < C; c0 += COLBLOCK) {
		int c1 = c0 + COLBLOCK < C ? c0 + COLBLOCK : C;

		for (int n = 0; n < N; n++) {
			const float *x = inp + (size_t)n * C;
			const float *d = dout + (size_t)n * C;
			float m = mean[n], s = rstd[n];

			for (int c = c0; c < c1; c++) {
				dw[c] += d[c] * (x[c] - m) * s;
				db[c] += d[c];
			}
		}
	}
}

static void cpu_matmul_forward(void *ctx, gpu_act *a_out, const gpu_act *a_inp,
			       const gpu_act *a_w, const float *bias, int N, int C, int OC,
			       int ldo)
{
	float *out = a_out, beta = 0.0f;
	const float *inp = a_inp, *w = a_w;

	if (bias) {
		/* Start from the broadcast bias and let the GEMM add into it. */
#pragma omp parallel for schedule(guided) if ((size_t)N * OC >= PAR_MIN)
		for (int n = 0; n < N; n++)
			memcpy(out + (size_t)n * ldo, bias, (size_t)OC * sizeof(float));
		beta = 1.0f;
	}
	par_sgemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, beta, out, ldo);
}

static void cpu_matmul_backward(void *ctx, gpu_act *a_dinp, float *dw, float *dbias,
				const gpu_act *a_dout, const gpu_act *a_inp, const gpu_act *a_w, int N,
				int C, int OC, int ldo)
{
	float *dinp = a_dinp;
	const float *dout = a_dout, *inp = a_inp, *w = a_w;

	/* dinp (N,C) = dout (N,OC) . w (OC,C) */
	par_sgemm(0, 0, N, C, OC, 1.0f, dout, ldo, w, C, 0.0f, dinp, C);
	/* dw (OC,C) += dout^T (OC,N) . inp (N,C) */
	par_sgemm(1, 0, OC, C, N, 1.0f, dout, ldo, inp, C, 1.0f, dw, C);
	if (!dbias)
		return;
#pragma omp parallel for schedule(guided) if ((size_t)N * OC >= PAR_MIN)
	for (int o0 = 0; o0 < OC; o0 += COLBLOCK) {
		int o1 = o0 + COLBLOCK < OC ? o0 + COLBLOCK : OC;

		for (int n = 0; n < N; n++) {
			const float *d = dout + (size_t)n * ldo;

			for (int o = o0; o < o1; o++)
				dbias[o] += d[o];
		}
	}
}

/* Causal softmax of the (T,T) scores s, in place; row t keeps columns 0..t. */
static void softmax_causal(float *s, int T)
{
	for (int t = 0; t < T; t++) {
		float *row = s + (size_t)t * T;
		float mx = -INFINITY, sum = 0.0f;

		for (int j = 0; j <= t; j++)
			mx = row[j] > mx ? row[j] : mx;
		for (int j = 0; j <= t; j++) {
			row[j] = expf(row[j] - mx);
			sum += row[j];
		}
		float inv = 1.0f / sum;

		for (int j = 0; j <= t; j++)
			row[j] *= inv;
		for (int j = t + 1; j < T; j++)
			row[j] = 0.0f;
	}
}

/* Causal attention skips the masked upper triangle in blocks of ATT_BLOCK query rows: rows
 * [r0, r1) attend to keys [0, r1) only, so the products cover about half of the (T, T) square
 * (plus the diagonal blocks).  Entries right of a block are never computed; the softmax and its
 * backward write zeros there, so att and datt are still whole, defined (T, T) arrays. */
#define ATT_BLOCK 32

/* One (batch, head) per thread; the BLAS calls inside are single-threaded, on the strided qkv
 * array directly (no scratch). */
static void cpu_attention_forward(void *ctx, gpu_act *a_out, gpu_act *a_att,
				  const gpu_act *a_qkv, gpu_act *scratch, int B, int T, int C,
				  int NH)
{
	float *out = a_out, *att = a_att;
	const float *qkv = a_qkv;
	int hs = C / NH;
	float scale = 1.0f / sqrtf((float)hs);

#pragma omp parallel for schedule(dynamic, 1) if ((size_t)B * NH * T * T >= PAR_MIN)
	for (int bh = 0; bh < B * NH; bh++) {
		int b = bh / NH, h = bh % NH;
		const float *q = qkv + (size_t)b * T * 3 * C + (size_t)h * hs;
		float *a = att + (size_t)bh * T * T;
		float *y = out + (size_t)b * T * C + (size_t)h * hs;

		for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
			int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;

			/* scores (r1-r0, r1) = scale * q[r0:r1] . k[0:r1]^T */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, scale,
				    q + (size_t)r0 * 3 * C, 3 * C, q + C, 3 * C, 0.0f,
				    a + (size_t)r0 * T, T);
		}
		softmax_causal(a, T);
		for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
			int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;

			/* y[r0:r1] (r1-r0, hs) = att[r0:r1, 0:r1] . v[0:r1] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, 1.0f,
				    a + (size_t)r0 * T, T, q + 2 * C, 3 * C, 0.0f,
				    y + (size_t)r0 * C, C);
		}
	}
}

static void cpu_attention_backward(void *ctx, gpu_act *a_dqkv, gpu_act *a_datt,
				   const gpu_act *a_dout, const gpu_act *a_qkv, const gpu_act *a_att,
				   gpu_act *scratch, int B, int T, int C, int NH)
{
	float *dqkv = a_dqkv, *datt = a_datt;
	const float *dout = a_dout, *qkv = a_qkv, *att = a_att;
	int hs = C / NH;
	float scale = 1.0f / sqrtf((float)hs);

#pragma omp parallel for schedule(dynamic, 1) if ((size_t)B * NH * T * T >= PAR_MIN)
	for (int bh = 0; bh < B * NH; bh++) {
		int b = bh / NH, h = bh % NH;
		size_t qo = (size_t)b * T * 3 * C + (size_t)h * hs;
		const float *q = qkv + qo, *k = qkv + qo + C, *v = qkv + qo + 2 * C;
		float *dq = dqkv + qo, *dk = dqkv + qo + C, *dv = dqkv + qo + 2 * C;
		const float *a = att + (size_t)bh * T * T;
		float *ds = datt + (size_t)bh * T * T;
		const float *dy = dout + (size_t)b * T * C + (size_t)h * hs;

		for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
			int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;

			/* datt[r0:r1, 0:r1] = dy[r0:r1] . v[0:r1]^T */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, 1.0f,
				    dy + (size_t)r0 * C, C, v, 3 * C, 0.0f, ds + (size_t)r0 * T, T);
			/* dv[r0:r1] = att[r0:T, r0:r1]^T . dy[r0:T]: only later queries see these keys */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, hs, T - r0, 1.0f,
				    a + (size_t)r0 * T + r0, T, dy + (size_t)r0 * C, C, 0.0f,
				    dv + (size_t)r0 * 3 * C, 3 * C);
		}
		/* softmax backward, row-local: dscore = att * (datt - sum(att * datt)); only the
		 * causal part of each row is read, the rest is set to 0 */
		for (int t = 0; t < T; t++) {
			const float *ar = a + (size_t)t * T;
			float *dr = ds + (size_t)t * T, dot = 0.0f;

			for (int j = 0; j <= t; j++)
				dot += ar[j] * dr[j];
			for (int j = 0; j <= t; j++)
				dr[j] = ar[j] * (dr[j] - dot);
			for (int j = t + 1; j < T; j++)
				dr[j] = 0.0f;
		}
		for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
			int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;

			/* dq[r0:r1] = scale * ds[r0:r1, 0:r1] . k[0:r1] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, scale,
				    ds + (size_t)r0 * T, T, k, 3 * C, 0.0f, dq + (size_t)r0 * 3 * C,
				    3 * C);
			/* dk[r0:r1] = scale * ds[r0:T, r0:r1]^T . q[r0:T] */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, hs, T - r0, scale,
				    ds + (size_t)r0 * T + r0, T, q + (size_t)r0 * 3 * C, 3 * C, 0.0f,
				    dk + (size_t)r0 * 3 * C, 3 * C);
		}
	}
}

static void cpu_residual_forward(void *ctx, gpu_act *a_out, const gpu_act *a_a,
				 const gpu_act *a_b, size_t n)
{
	float *out = a_out;
	const float *a = a_a, *b = a_b;

#pragma omp parallel for schedule(guided) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

static void cpu_crossentropy_forward(void *ctx, float *losses, float *lse,
				     const gpu_act *a_logits, const int32_t *targets, int N, int V,
				     int ld)
{
	const float *logits = a_logits;

#pragma omp parallel for schedule(guided) if ((size_t)N * V >= PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *l = logits + (size_t)n * ld;
		float mx = -INFINITY, sum = 0.0f;

		for (int v = 0; v < V; v++)
			mx = l[v] > mx ? l[v] : mx;
		for (int v = 0; v < V; v++)
			sum += expf(l[v] - mx);
		/* log-sum-exp form keeps the loss finite when a probability underflows */
		lse[n] = logf(sum) + mx;
		losses[n] = lse[n] - l[targets[n]];
	}
}

static void cpu_crossentropy_backward(void *ctx, gpu_act *a_dlogits, const gpu_act *a_logits,
				      const float *lse, const int32_t *targets, int N, int V,
				      int ld, float dloss)
{
	float *dlogits = a_dlogits;
	const float *logits = a_logits;

#pragma omp parallel for schedule(guided) if ((size_t)N * V >= PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *l = logits + (size_t)n * ld;
		float *d = dlogits + (size_t)n * ld;

		for (int v = 0; v < V; v++)
			d[v] = expf(l[v] - lse[n]) * dloss;
		d[targets[n]] -= dloss;
	}
}

static int cpu_sumsq(void *ctx, const float *x, size_t n, double *ret)
{
	double part[SUMSQ_CHUNKS];
	size_t chunk = (n + SUMSQ_CHUNKS - 1) / SUMSQ_CHUNKS;
	double total = 0.0;

#pragma omp parallel for schedule(guided) if (n >= PAR_MIN)
	for (int k = 0; k < SUMSQ_CHUNKS; k++) {
		size_t i0 = (size_t)k * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
		double s = 0.0;

		for (size_t i = i0; i < i1; i++)
			s += (double)x[i] * x[i];
		part[k] = s;
	}
	for (int k = 0; k < SUMSQ_CHUNKS; k++)
		total += part[k];
	*ret = total;
	return 0;
}

/* Activations are fp32 here, so the weights are their own compute copy: cp is NULL. */
static void cpu_adamw(void *ctx, float *p, gpu_act *cp, const float *g, float *m, float *v,
		      size_t n, float lr, float beta1, float beta2, float eps, float wd,
		      float gscale, float bc1, float bc2)
{
#pragma omp parallel for schedule(guided) if (n >= PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float gi = g[i] * gscale;
		float mi = beta1 * m[i] + (1.0f - beta1) * gi;
		float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
		float mhat = mi / bc1, vhat = vi / bc2;

		m[i] = mi;
		v[i] = vi;
		p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
	}
}

static const struct gpu_ops cpu_ops = {
	.name = "cpu",
	.ctx_new = cpu_ctx_new,
	.ctx_free = cpu_ctx_free,
	.alloc = cpu_alloc,
	.free = cpu_free,
	.to_dev = cpu_copy,
	.to_host = cpu_copy,
	.zero = cpu_zero,
	.sync = cpu_sync,
	.error_detail = cpu_error_detail,
	.act_from_f32 = cpu_act_from_f32,
	.act_to_host = cpu_act_to_host,
	.encoder_forward = cpu_encoder_forward,
	.encoder_backward = cpu_encoder_backward,
	.layernorm_forward = cpu_layernorm_forward,
	.layernorm_backward = cpu_layernorm_backward,
	.matmul_forward = cpu_matmul_forward,
	.matmul_backward = cpu_matmul_backward,
	.attention_forward = cpu_attention_forward,
	.attention_backward = cpu_attention_backward,
	.gelu_forward = gpu_cpu_gelu_forward,
	.gelu_backward = gpu_cpu_gelu_backward,
	.residual_forward = cpu_residual_forward,
	.crossentropy_forward = cpu_crossentropy_forward,
	.crossentropy_backward = cpu_crossentropy_backward,
	.sumsq = cpu_sumsq,
	.adamw = cpu_adamw,
};

const struct gpu_ops *gpu_cpu_ops(void)
{
	return &cpu_ops;
}
