/* gpu/cuda_ops.cu - the CUDA backend: the kernels of gpt_i.h on one device.
 *
 * Matmuls and the attention products go through cuBLAS (row-major operands passed as their
 * column-major transposes); everything else is a kernel here, each the same function as its
 * counterpart in cpu_ops.c, which is the reference.  fp32 storage throughout; with bf16_matmul
 * the GEMMs run on bf16 tensor cores (CUBLAS_COMPUTE_32F_FAST_16BF) with fp32 accumulation,
 * which is what the "bf16 with fp32 master weights" option means here.
 *
 * Errors: kernels are asynchronous on the context's stream; the first launch or cuBLAS failure
 * is kept in ctx->err and returned by the next sync() or copy, translated by cuda_errno().
 * Column reductions (bias, LayerNorm weight gradients) loop over rows in a fixed order and the
 * gradient-norm partials are summed on the host, so a run is reproducible; only the token
 * embedding gradient uses atomics (rows with the same token collide).
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

extern "C" {
#include "gpu/gpt_i.h"
}

#define LN_EPS 1e-5f
#define GELU_K 0.7978845608028654f
#define SUMSQ_BLOCKS 256
#define NT 256

struct cuda_ctx {
	cudaStream_t stream;
	cublasHandle_t blas;
	cublasComputeType_t compute;
	int err;                 /* first failure as -errno, 0 if none */
	double *d_partial;       /* SUMSQ_BLOCKS */
};

static int cuda_errno(cudaError_t e)
{
	switch (e) {
	case cudaSuccess:
		return 0;
	case cudaErrorMemoryAllocation:
		return -ENOMEM;
	case cudaErrorNoDevice:
	case cudaErrorInsufficientDriver:
	case cudaErrorInvalidDevice:
		return -ENODEV;
	case cudaErrorInvalidValue:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static int cublas_errno(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_SUCCESS:
		return 0;
	case CUBLAS_STATUS_ALLOC_FAILED:
		return -ENOMEM;
	case CUBLAS_STATUS_INVALID_VALUE:
		return -EINVAL;
	case CUBLAS_STATUS_NOT_INITIALIZED:
	case CUBLAS_STATUS_ARCH_MISMATCH:
		return -ENODEV;
	default:
		return -EIO;
	}
}

static void note(cuda_ctx *c, int r)
{
	if (r < 0 && c->err == 0)
		c->err = r;
}

static void check_launch(cuda_ctx *c)
{
	note(c, cuda_errno(cudaGetLastError()));
}

static unsigned blocks(size_t n, unsigned per)
{
	return (unsigned)((n + per - 1) / per);
}

/* Row-major C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C, as cblas_sgemm with
 * CblasRowMajor: cuBLAS sees the column-major transposes, so the operands swap. */
static void gemm(cuda_ctx *c, bool ta, bool tb, int M, int N, int K, float alpha,
		 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	note(c, cublas_errno(cublasGemmEx(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
					  ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
					  CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C,
					  CUDA_R_32F, ldc, c->compute, CUBLAS_GEMM_DEFAULT)));
}

/* The same, batched over count matrices at fixed strides. */
static void gemm_batched(cuda_ctx *c, bool ta, bool tb, int M, int N, int K, float alpha,
			 const float *A, int lda, long long sa, const float *B, int ldb,
			 long long sb, float beta, float *C, int ldc, long long sc, int count)
{
	note(c, cublas_errno(cublasGemmStridedBatchedEx(
			c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N,
			M, K, &alpha, B, CUDA_R_32F, ldb, sb, A, CUDA_R_32F, lda, sa, &beta, C,
			CUDA_R_32F, ldc, sc, count, c->compute, CUBLAS_GEMM_DEFAULT)));
}

static int cu_ctx_new(void **ret_ctx, int bf16_matmul)
{
	cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof(*c));
	int n = 0, r;

	if (!c)
		return -ENOMEM;
	r = cuda_errno(cudaGetDeviceCount(&n));
	if (r == 0 && n < 1)
		r = -ENODEV;
	if (r < 0)
		goto fail;
	if ((r = cuda_errno(cudaStreamCreate(&c->stream))) < 0)
		goto fail;
	if ((r = cublas_errno(cublasCreate(&c->blas))) < 0) {
		c->blas = NULL;
		goto fail;
	}
	if ((r = cublas_errno(cublasSetStream(c->blas, c->stream))) < 0)
		goto fail;
	/* Plain fp32 unless asked: the parity test compares against the CPU at fp32 tolerance,
	 * which TF32 would not meet. */
	c->compute = bf16_matmul ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
	if ((r = cuda_errno(cudaMalloc((void **)&c->d_partial, SUMSQ_BLOCKS * sizeof(double)))) <
	    0) {
		c->d_partial = NULL;
		goto fail;
	}
	*ret_ctx = c;
	return 0;
fail:
	if (c->d_partial)
		cudaFree(c->d_partial);
	if (c->blas)
		cublasDestroy(c->blas);
	if (c->stream)
		cudaStreamDestroy(c->stream);
	free(c);
	return r;
}

static void cu_ctx_free(void *ctx)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	if (!c)
		return;
	cudaStreamSynchronize(c->stream);
	cudaFree(c->d_partial);
	cublasDestroy(c->blas);
	cudaStreamDestroy(c->stream);
	free(c);
}

static int cu_alloc(void *ctx, void **ret, size_t bytes)
{
	void *p = NULL;
	int r = cuda_errno(cudaMalloc(&p, bytes ? bytes : 256));

	if (r < 0)
		return r;
	*ret = p;
	return 0;
}

static void cu_free(void *ctx, void *p)
{
	if (p)
		cudaFree(p);
}

static int cu_sync(void *ctx)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	note(c, cuda_errno(cudaStreamSynchronize(c->stream)));
	return c->err;
}

static int cu_to_dev(void *ctx, void *dst, const void *src, size_t bytes)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	note(c, cuda_errno(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream)));
	return cu_sync(ctx);
}

static int cu_to_host(void *ctx, void *dst, const void *src, size_t bytes)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	note(c, cuda_errno(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream)));
	return cu_sync(ctx);
}

static int cu_zero(void *ctx, void *p, size_t bytes)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	note(c, cuda_errno(cudaMemsetAsync(p, 0, bytes, c->stream)));
	return c->err;
}

/* ---- kernels ---- */

__device__ static float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ static float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

__global__ static void k_encoder_forward(float *out, const int32_t *inp, const float *wte,
					 const float *wpe, int B, int T, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)B * T * C)
		return;
	size_t bt = i / C, ch = i % C;

	out[i] = wte[(size_t)inp[bt] * C + ch] + wpe[(bt % T) * C + ch];
}

__global__ static void k_encoder_backward_wte(float *dwte, const float *dout, const int32_t *inp,
					      int N, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)N * C)
		return;
	size_t bt = i / C, ch = i % C;

	atomicAdd(&dwte[(size_t)inp[bt] * C + ch], dout[i]);
}

__global__ static void k_encoder_backward_wpe(float *dwpe, const float *dout, int B, int T, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)T * C)
		return;
	float s = 0.0f;

	for (int b = 0; b < B; b++)
		s += dout[(size_t)b * T * C + i];
	dwpe[i] += s;
}

/* one warp per row */
__global__ static void k_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
					   const float *w, const float *b, int N, int C)
{
	int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;

	if (row >= N)
		return;
	const float *x = inp + (size_t)row * C;
	float *o = out + (size_t)row * C;
	float s = 0.0f, v = 0.0f;

	for (int i = lane; i < C; i += 32)
		s += x[i];
	float m = warp_sum(s) / C;

	for (int i = lane; i < C; i += 32)
		v += (x[i] - m) * (x[i] - m);
	float r = rsqrtf(warp_sum(v) / C + LN_EPS);

	for (int i = lane; i < C; i += 32)
		o[i] = (x[i] - m) * r * w[i] + b[i];
	if (lane == 0) {
		mean[row] = m;
		rstd[row] = r;
	}
}

__global__ static void k_layernorm_backward_inp(float *dinp, const float *dout, const float *inp,
						const float *w, const float *mean,
						const float *rstd, int N, int C)
{
	int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;

	if (row >= N)
		return;
	const float *x = inp + (size_t)row * C, *d = dout + (size_t)row * C;
	float *di = dinp + (size_t)row * C;
	float m = mean[row], r = rstd[row], a = 0.0f, bsum = 0.0f;

	for (int i = lane; i < C; i += 32) {
		float dn = w[i] * d[i];

		a += dn;
		bsum += dn * (x[i] - m) * r;
	}
	a = warp_sum(a) / C;
	bsum = warp_sum(bsum) / C;
	for (int i = lane; i < C; i += 32)
		di[i] += (w[i] * d[i] - a - (x[i] - m) * r * bsum) * r;
}

/* one thread per column, rows in order */
__global__ static void k_layernorm_backward_w(float *dw, float *db, const float *dout,
					      const float *inp, const float *mean,
					      const float *rstd, int N, int C)
{
	int c = blockIdx.x * blockDim.x + threadIdx.x;

	if (c >= C)
		return;
	float sw = 0.0f, sb = 0.0f;

	for (int n = 0; n < N; n++) {
		float d = dout[(size_t)n * C + c];

		sw += d * (inp[(size_t)n * C + c] - mean[n]) * rstd[n];
		sb += d;
	}
	dw[c] += sw;
	db[c] += sb;
}

__global__ static void k_bias_broadcast(float *out, const float *bias, int N, int OC)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < (size_t)N * OC)
		out[i] = bias[i % OC];
}

__global__ static void k_bias_backward(float *dbias, const float *dout, int N, int OC)
{
	int o = blockIdx.x * blockDim.x + threadIdx.x;

	if (o >= OC)
		return;
	float s = 0.0f;

	for (int n = 0; n < N; n++)
		s += dout[(size_t)n * OC + o];
	dbias[o] += s;
}

/* one warp per row of (B*NH*T, T) scores, causal */
__global__ static void k_softmax_causal(float *att, long rows, int T)
{
	long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;

	if (row >= rows)
		return;
	float *a = att + row * T;
	int t = (int)(row % T);
	float mx = -INFINITY, s = 0.0f;

	for (int j = lane; j <= t; j += 32)
		mx = fmaxf(mx, a[j]);
	mx = warp_max(mx);
	for (int j = lane; j <= t; j += 32) {
		float e = expf(a[j] - mx);

		a[j] = e;
		s += e;
	}
	float inv = 1.0f / warp_sum(s);

	for (int j = lane; j < T; j += 32)
		a[j] = j <= t ? a[j] * inv : 0.0f;
}

__global__ static void k_softmax_causal_backward(float *datt, const float *att, long rows, int T)
{
	long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;

	if (row >= rows)
		return;
	const float *a = att + row * T;
	float *da = datt + row * T;
	int t = (int)(row % T);
	float dot = 0.0f;

	for (int j = lane; j <= t; j += 32)
		dot += a[j] * da[j];
	dot = warp_sum(dot);
	for (int j = lane; j < T; j += 32)
		da[j] = j <= t ? a[j] * (da[j] - dot) : 0.0f;
}

__global__ static void k_gelu_forward(float *out, const float *inp, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= n)
		return;
	float x = inp[i];

	out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
}

__global__ static void k_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= n)
		return;
	float x = inp[i];
	float th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
	float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);

	dinp[i] = dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
}

__global__ static void k_residual(float *out, const float *a, const float *b, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		out[i] = a[i] + b[i];
}

/* one block per row */
__global__ static void k_crossentropy_forward(float *losses, float *probs, const float *logits,
					      const int32_t *targets, int V)
{
	__shared__ float red[NT / 32];
	const float *l = logits + (size_t)blockIdx.x * V;
	float *p = probs + (size_t)blockIdx.x * V;
	int lane = threadIdx.x % 32, wid = threadIdx.x / 32;
	float mx = -INFINITY, s = 0.0f;

	for (int v = threadIdx.x; v < V; v += blockDim.x)
		mx = fmaxf(mx, l[v]);
	mx = warp_max(mx);
	if (lane == 0)
		red[wid] = mx;
	__syncthreads();
	mx = -INFINITY;
	for (int i = 0; i < NT / 32; i++)
		mx = fmaxf(mx, red[i]);
	__syncthreads();
	for (int v = threadIdx.x; v < V; v += blockDim.x)
		s += expf(l[v] - mx);
	s = warp_sum(s);
	if (lane == 0)
		red[wid] = s;
	__syncthreads();
	s = 0.0f;
	for (int i = 0; i < NT / 32; i++)
		s += red[i];
	for (int v = threadIdx.x; v < V; v += blockDim.x)
		p[v] = expf(l[v] - mx) / s;
	if (threadIdx.x == 0)
		losses[blockIdx.x] = logf(s) + mx - l[targets[blockIdx.x]];
}

__global__ static void k_crossentropy_backward(float *dlogits, const float *probs,
					       const int32_t *targets, int N, int V, float dloss)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)N * V)
		return;
	size_t n = i / V;
	int v = (int)(i % V);

	dlogits[i] = (probs[i] - (v == targets[n] ? 1.0f : 0.0f)) * dloss;
}

__global__ static void k_sumsq(double *partial, const float *x, size_t n)
{
	__shared__ double red[NT];
	double s = 0.0;

	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		s += (double)x[i] * x[i];
	red[threadIdx.x] = s;
	__syncthreads();
	for (int o = blockDim.x / 2; o > 0; o >>= 1) {
		if ((int)threadIdx.x < o)
			red[threadIdx.x] += red[threadIdx.x + o];
		__syncthreads();
	}
	if (threadIdx.x == 0)
		partial[blockIdx.x] = red[0];
}

__global__ static void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr,
			       float beta1, float beta2, float eps, float wd, float gscale,
			       float bc1, float bc2)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= n)
		return;
	float gi = g[i] * gscale;
	float mi = beta1 * m[i] + (1.0f - beta1) * gi;
	float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;

	m[i] = mi;
	v[i] = vi;
	p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
}

/* ---- the table ---- */

static void cu_encoder_forward(void *ctx, float *out, const int32_t *inp, const float *wte,
			       const float *wpe, int B, int T, int C)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_encoder_forward<<<blocks((size_t)B * T * C, NT), NT, 0, c->stream>>>(out, inp, wte, wpe,
									       B, T, C);
	check_launch(c);
}

static void cu_encoder_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
				const int32_t *inp, int B, int T, int C)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_encoder_backward_wte<<<blocks((size_t)B * T * C, NT), NT, 0, c->stream>>>(dwte, dout,
										    inp, B * T, C);
	check_launch(c);
	k_encoder_backward_wpe<<<blocks((size_t)T * C, NT), NT, 0, c->stream>>>(dwpe, dout, B, T,
										C);
	check_launch(c);
}

static void cu_layernorm_forward(void *ctx, float *out, float *mean, float *rstd,
				 const float *inp, const float *w, const float *b, int N, int C)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_layernorm_forward<<<blocks(N, NT / 32), NT, 0, c->stream>>>(out, mean, rstd, inp, w, b,
								      N, C);
	check_launch(c);
}

static void cu_layernorm_backward(void *ctx, float *dinp, float *dw, float *db,
				  const float *dout, const float *inp, const float *w,
				  const float *mean, const float *rstd, int N, int C)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_layernorm_backward_inp<<<blocks(N, NT / 32), NT, 0, c->stream>>>(dinp, dout, inp, w,
									   mean, rstd, N, C);
	check_launch(c);
	k_layernorm_backward_w<<<blocks(C, NT), NT, 0, c->stream>>>(dw, db, dout, inp, mean, rstd,
								    N, C);
	check_launch(c);
}

static void cu_matmul_forward(void *ctx, float *out, const float *inp, const float *w,
			      const float *bias, int N, int C, int OC)
{
	cuda_ctx *c = (cuda_ctx *)ctx;
	float beta = 0.0f;

	if (bias) {
		k_bias_broadcast<<<blocks((size_t)N * OC, NT), NT, 0, c->stream>>>(out, bias, N,
										   OC);
		check_launch(c);
		beta = 1.0f;
	}
	gemm(c, false, true, N, OC, C, 1.0f, inp, C, w, C, beta, out, OC);
}

static void cu_matmul_backward(void *ctx, float *dinp, float *dw, float *dbias,
			       const float *dout, const float *inp, const float *w, int N, int C,
			       int OC)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	gemm(c, false, false, N, C, OC, 1.0f, dout, OC, w, C, 0.0f, dinp, C);
	gemm(c, true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
	if (dbias) {
		k_bias_backward<<<blocks(OC, NT), NT, 0, c->stream>>>(dbias, dout, N, OC);
		check_launch(c);
	}
}

static void cu_attention_forward(void *ctx, float *out, float *att, const float *qkv, int B,
				 int T, int C, int NH)
{
	cuda_ctx *c = (cuda_ctx *)ctx;
	int hs = C / NH;
	float scale = 1.0f / sqrtf((float)hs);
	long long tt = (long long)T * T;

	/* batched over heads (stride hs inside a row of qkv), one call per sequence */
	for (int b = 0; b < B; b++) {
		const float *q = qkv + (size_t)b * T * 3 * C;

		gemm_batched(c, false, true, T, T, hs, scale, q, 3 * C, hs, q + C, 3 * C, hs, 0.0f,
			     att + (size_t)b * NH * tt, T, tt, NH);
	}
	long rows = (long)B * NH * T;

	k_softmax_causal<<<blocks(rows, NT / 32), NT, 0, c->stream>>>(att, rows, T);
	check_launch(c);
	for (int b = 0; b < B; b++)
		gemm_batched(c, false, false, T, hs, T, 1.0f, att + (size_t)b * NH * tt, T, tt,
			     qkv + (size_t)b * T * 3 * C + 2 * C, 3 * C, hs, 0.0f,
			     out + (size_t)b * T * C, C, hs, NH);
}

static void cu_attention_backward(void *ctx, float *dqkv, float *datt, const float *dout,
				  const float *qkv, const float *att, int B, int T, int C, int NH)
{
	cuda_ctx *c = (cuda_ctx *)ctx;
	int hs = C / NH;
	float scale = 1.0f / sqrtf((float)hs);
	long long tt = (long long)T * T;
	long rows = (long)B * NH * T;

	for (int b = 0; b < B; b++) {
		const float *q = qkv + (size_t)b * T * 3 * C;
		const float *a = att + (size_t)b * NH * tt;
		const float *dy = dout + (size_t)b * T * C;
		float *da = datt + (size_t)b * NH * tt, *dq = dqkv + (size_t)b * T * 3 * C;

		gemm_batched(c, false, true, T, T, hs, 1.0f, dy, C, hs, q + 2 * C, 3 * C, hs, 0.0f,
			     da, T, tt, NH);
		gemm_batched(c, true, false, T, hs, T, 1.0f, a, T, tt, dy, C, hs, 0.0f, dq + 2 * C,
			     3 * C, hs, NH);
	}
	k_softmax_causal_backward<<<blocks(rows, NT / 32), NT, 0, c->stream>>>(datt, att, rows, T);
	check_launch(c);
	for (int b = 0; b < B; b++) {
		const float *q = qkv + (size_t)b * T * 3 * C;
		const float *ds = datt + (size_t)b * NH * tt;
		float *dq = dqkv + (size_t)b * T * 3 * C;

		gemm_batched(c, false, false, T, hs, T, scale, ds, T, tt, q + C, 3 * C, hs, 0.0f,
			     dq, 3 * C, hs, NH);
		gemm_batched(c, true, false, T, hs, T, scale, ds, T, tt, q, 3 * C, hs, 0.0f,
			     dq + C, 3 * C, hs, NH);
	}
}

static void cu_gelu_forward(void *ctx, float *out, const float *inp, size_t n)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_gelu_forward<<<blocks(n, NT), NT, 0, c->stream>>>(out, inp, n);
	check_launch(c);
}

static void cu_gelu_backward(void *ctx, float *dinp, const float *inp, const float *dout,
			     size_t n)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_gelu_backward<<<blocks(n, NT), NT, 0, c->stream>>>(dinp, inp, dout, n);
	check_launch(c);
}

static void cu_residual_forward(void *ctx, float *out, const float *a, const float *b, size_t n)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_residual<<<blocks(n, NT), NT, 0, c->stream>>>(out, a, b, n);
	check_launch(c);
}

static void cu_crossentropy_forward(void *ctx, float *losses, float *probs, const float *logits,
				    const int32_t *targets, int N, int V)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_crossentropy_forward<<<N, NT, 0, c->stream>>>(losses, probs, logits, targets, V);
	check_launch(c);
}

static void cu_crossentropy_backward(void *ctx, float *dlogits, const float *probs,
				     const int32_t *targets, int N, int V, float dloss)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_crossentropy_backward<<<blocks((size_t)N * V, NT), NT, 0, c->stream>>>(
		dlogits, probs, targets, N, V, dloss);
	check_launch(c);
}

static int cu_sumsq(void *ctx, const float *x, size_t n, double *ret)
{
	cuda_ctx *c = (cuda_ctx *)ctx;
	double part[SUMSQ_BLOCKS], s = 0.0;
	int r;

	k_sumsq<<<SUMSQ_BLOCKS, NT, 0, c->stream>>>(c->d_partial, x, n);
	check_launch(c);
	r = cu_to_host(ctx, part, c->d_partial, sizeof(part));
	if (r < 0)
		return r;
	for (int i = 0; i < SUMSQ_BLOCKS; i++)
		s += part[i];
	*ret = s;
	return 0;
}

static void cu_adamw(void *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr,
		     float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		     float bc2)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	k_adamw<<<blocks(n, NT), NT, 0, c->stream>>>(p, g, m, v, n, lr, beta1, beta2, eps, wd,
						     gscale, bc1, bc2);
	check_launch(c);
}

static const struct gpu_ops cuda_ops = {
	"cuda",
	cu_ctx_new,
	cu_ctx_free,
	cu_alloc,
	cu_free,
	cu_to_dev,
	cu_to_host,
	cu_zero,
	cu_sync,
	cu_encoder_forward,
	cu_encoder_backward,
	cu_layernorm_forward,
	cu_layernorm_backward,
	cu_matmul_forward,
	cu_matmul_backward,
	cu_attention_forward,
	cu_attention_backward,
	cu_gelu_forward,
	cu_gelu_backward,
	cu_residual_forward,
	cu_crossentropy_forward,
	cu_crossentropy_backward,
	cu_sumsq,
	cu_adamw,
};

extern "C" const struct gpu_ops *gpu_cuda_ops(void)
{
	return &cuda_ops;
}
