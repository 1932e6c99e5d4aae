/* gpu/cuda_ops.cu - the CUDA backend: the kernels of gpt_i.h on one device.
 *
 * Matmuls and the attention products go through cuBLAS (row-major operands passed as their
 * column-major transposes); everything else is a kernel here, each the same function as its
 * counterpart in cpu_ops.c, which is the reference.
 *
 * Two activation types (gpt_i.h).  fp32: every array is fp32 and the GEMMs compute in plain
 * fp32 (CUBLAS_COMPUTE_32F, no TF32), so results match the CPU to fp32 rounding.  bf16: the
 * activations, their gradients and the weights' compute copy are bf16 and the GEMMs run on the
 * bf16 tensor cores with fp32 accumulation; weight gradients are accumulated into fp32 by the
 * GEMM itself, and parameters, their gradients, AdamW's moments, LayerNorm statistics and the
 * cross-entropy's log-sum-exps and losses stay fp32.  Every kernel is a template over the
 * activation type X: it loads X into fp32 (ld), computes in fp32 and rounds once when it
 * stores (st).
 *
 * One rounding is not once: a matmul with a bias starts from the bias broadcast into its output,
 * so in bf16 the bias is rounded before the product is added (as llm.c's bf16 weights are).
 *
 * Errors: kernels are asynchronous on the context's stream; the first launch or cuBLAS failure
 * is kept in ctx->err and returned by the next sync() or copy, translated by cuda_errno().
 * Column reductions (bias, LayerNorm weight gradients) add rows in a fixed order and the
 * gradient-norm partials are summed on the host, so a run is reproducible; only the token
 * embedding gradient uses atomics (rows with the same token collide).
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "gpu/gpt_i.h"
}

#define LN_EPS 1e-5f
#define GELU_K 0.7978845608028654f
#define SUMSQ_BLOCKS 256
#define NT 256
/* column reductions: blocks of COLS columns x COLS row lanes */
#define COLS 32

typedef __nv_bfloat16 bf16;

struct cuda_ctx {
	cudaStream_t stream;
	cublasHandle_t blas;
	int bf16;                /* activation type: bf16, else fp32 */
	int err;                 /* first failure as -errno, 0 if none */
	const char *where;       /* the table function running now */
	char detail[192];        /* the first failure in words: the table function that saw it
				  * (asynchronous errors show at the next sync), the device's error */
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
	case cudaErrorInitializationError:
	case cudaErrorSystemDriverMismatch:
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

/* Every table function starts here, so that a failure can say where it happened. */
static cuda_ctx *enter(void *ctx, const char *where)
{
	cuda_ctx *c = (cuda_ctx *)ctx;

	c->where = where;
	return c;
}

static void note_cuda(cuda_ctx *c, cudaError_t e)
{
	if (e == cudaSuccess || c->err)
		return;
	c->err = cuda_errno(e);
	snprintf(c->detail, sizeof(c->detail), "%s: %s", c->where ? c->where : "?",
		 cudaGetErrorString(e));
}

static void note_blas(cuda_ctx *c, cublasStatus_t st)
{
	if (st == CUBLAS_STATUS_SUCCESS || c->err)
		return;
	c->err = cublas_errno(st);
	snprintf(c->detail, sizeof(c->detail), "%s: cuBLAS status %d", c->where ? c->where : "?",
		 (int)st);
}

static void check_launch(cuda_ctx *c)
{
	note_cuda(c, cudaGetLastError());
}

static unsigned blocks(size_t n, unsigned per)
{
	return (unsigned)((n + per - 1) / per);
}

/* Calls f with a value of the context's activation type, so that f instantiates the kernels
 * it launches for that type. */
template <class F> static void with_act(const cuda_ctx *c, F f)
{
	if (c->bf16)
		f(bf16());
	else
		f(0.0f);
}

static cudaDataType act_type(const cuda_ctx *c)
{
	return c->bf16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Row-major C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C, as cblas_sgemm with
 * CblasRowMajor: cuBLAS sees the column-major transposes, so the operands swap.  A and B are
 * of the activation type, C of type ct. */
static void gemm(cuda_ctx *c, bool ta, bool tb, int M, int N, int K, float alpha,
		 const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc,
		 cudaDataType ct)
{
	note_blas(c, cublasGemmEx(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
					  ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
					  act_type(c), ldb, A, act_type(c), lda, &beta, C, ct, ldc,
					  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* The same, all of the activation type, batched over count matrices at fixed strides
 * (in elements). */
static void gemm_batched(cuda_ctx *c, bool ta, bool tb, int M, int N, int K, float alpha,
			 const void *A, int lda, long long sa, const void *B, int ldb,
			 long long sb, float beta, void *C, int ldc, long long sc, int count)
{
	note_blas(c, cublasGemmStridedBatchedEx(
			c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N,
			M, K, &alpha, B, act_type(c), ldb, sb, A, act_type(c), lda, sa, &beta, C,
			act_type(c), ldc, sc, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* Element i of an activation array. */
static void *act_at(const cuda_ctx *c, void *base, size_t i)
{
	return (char *)base + i * gpu_act_bytes(c->bf16);
}

static int cu_ctx_new(void **ret_ctx, int bf16_acts)
{
	cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof(*c));
	int n = 0, r;

	if (!c)
		return -ENOMEM;
	c->bf16 = bf16_acts != 0;
	/* a failure of an earlier context's call on this thread must not count against this one */
	cudaGetLastError();
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

	if (r < 0) {
		/* reported here: keep it from the next launch check */
		cudaGetLastError();
		return r;
	}
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
	cuda_ctx *c = enter(ctx, __func__);

	note_cuda(c, cudaStreamSynchronize(c->stream));
	return c->err;
}

static int cu_to_dev(void *ctx, void *dst, const void *src, size_t bytes)
{
	cuda_ctx *c = enter(ctx, __func__);

	note_cuda(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
	return cu_sync(ctx);
}

static int cu_to_host(void *ctx, void *dst, const void *src, size_t bytes)
{
	cuda_ctx *c = enter(ctx, __func__);

	note_cuda(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
	return cu_sync(ctx);
}

static int cu_zero(void *ctx, void *p, size_t bytes)
{
	cuda_ctx *c = enter(ctx, __func__);

	note_cuda(c, cudaMemsetAsync(p, 0, bytes, c->stream));
	return c->err;
}

/* ---- kernels ---- */

__device__ static inline float ld(float x)
{
	return x;
}

__device__ static inline float ld(bf16 x)
{
	return __bfloat162float(x);
}

__device__ static inline void st(float *p, float v)
{
	*p = v;
}

__device__ static inline void st(bf16 *p, float v)
{
	*p = __float2bfloat16(v);
}

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

/* In a (COLS, COLS) block: the sum over threadIdx.y of v, added in order of y, valid in the
 * threads with threadIdx.y == 0. */
__device__ static float col_sum(float (*red)[COLS + 1], float v)
{
	float s = 0.0f;

	red[threadIdx.y][threadIdx.x] = v;
	__syncthreads();
	if (threadIdx.y == 0)
		for (int y = 0; y < COLS; y++)
			s += red[y][threadIdx.x];
	__syncthreads();
	return s;
}

template <class X> __global__ static void k_to_act(X *dst, const float *src, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		st(&dst[i], src[i]);
}

template <class X>
__global__ static void k_encoder_forward(X *out, const int32_t *inp, const float *wte,
					 const float *wpe, int B, int T, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)B * T * C)
		return;
	size_t bt = i / C, ch = i % C;

	st(&out[i], wte[(size_t)inp[bt] * C + ch] + wpe[(bt % T) * C + ch]);
}

template <class X>
__global__ static void k_encoder_backward_wte(float *dwte, const X *dout, const int32_t *inp,
					      int N, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)N * C)
		return;
	size_t bt = i / C, ch = i % C;

	atomicAdd(&dwte[(size_t)inp[bt] * C + ch], ld(dout[i]));
}

template <class X>
__global__ static void k_encoder_backward_wpe(float *dwpe, const X *dout, int B, int T, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)T * C)
		return;
	float s = 0.0f;

	for (int b = 0; b < B; b++)
		s += ld(dout[(size_t)b * T * C + i]);
	dwpe[i] += s;
}

/* one warp per row */
template <class X>
__global__ static void k_layernorm_forward(X *out, float *mean, float *rstd, const X *inp,
					   const float *w, const float *b, int N, int C)
{
	int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;

	if (row >= N)
		return;
	const X *x = inp + (size_t)row * C;
	X *o = out + (size_t)row * C;
	float s = 0.0f, v = 0.0f;

	for (int i = lane; i < C; i += 32)
		s += ld(x[i]);
	float m = warp_sum(s) / C;

	for (int i = lane; i < C; i += 32)
		v += (ld(x[i]) - m) * (ld(x[i]) - m);
	float r = rsqrtf(warp_sum(v) / C + LN_EPS);

	for (int i = lane; i < C; i += 32)
		st(&o[i], (ld(x[i]) - m) * r * w[i] + b[i]);
	if (lane == 0) {
		mean[row] = m;
		rstd[row] = r;
	}
}

template <class X>
__global__ static void k_layernorm_backward_inp(X *dinp, const X *dout, const X *inp,
						const float *w, const float *mean,
						const float *rstd, int N, int C)
{
	int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;

	if (row >= N)
		return;
	const X *x = inp + (size_t)row * C, *d = dout + (size_t)row * C;
	X *di = dinp + (size_t)row * C;
	float m = mean[row], r = rstd[row], a = 0.0f, bsum = 0.0f;

	for (int i = lane; i < C; i += 32) {
		float dn = w[i] * ld(d[i]);

		a += dn;
		bsum += dn * (ld(x[i]) - m) * r;
	}
	a = warp_sum(a) / C;
	bsum = warp_sum(bsum) / C;
	for (int i = lane; i < C; i += 32)
		st(&di[i], ld(di[i]) + (w[i] * ld(d[i]) - a - (ld(x[i]) - m) * r * bsum) * r);
}

/* COLS columns a block; row lane y sums rows y, y + COLS, ... */
template <class X>
__global__ static void k_layernorm_backward_w(float *dw, float *db, const X *dout, const X *inp,
					      const float *mean, const float *rstd, int N, int C)
{
	__shared__ float red[COLS][COLS + 1];
	int c = blockIdx.x * COLS + threadIdx.x;
	float sw = 0.0f, sb = 0.0f;

	if (c < C)
		for (int n = threadIdx.y; n < N; n += COLS) {
			float d = ld(dout[(size_t)n * C + c]);

			sw += d * (ld(inp[(size_t)n * C + c]) - mean[n]) * rstd[n];
			sb += d;
		}
	sw = col_sum(red, sw);
	sb = col_sum(red, sb);
	if (threadIdx.y == 0 && c < C) {
		dw[c] += sw;
		db[c] += sb;
	}
}

template <class X>
__global__ static void k_bias_broadcast(X *out, const float *bias, int N, int OC, int ldo)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < (size_t)N * OC)
		st(&out[i / OC * ldo + i % OC], bias[i % OC]);
}

template <class X>
__global__ static void k_bias_backward(float *dbias, const X *dout, int N, int OC, int ldo)
{
	__shared__ float red[COLS][COLS + 1];
	int o = blockIdx.x * COLS + threadIdx.x;
	float s = 0.0f;

	if (o < OC)
		for (int n = threadIdx.y; n < N; n += COLS)
			s += ld(dout[(size_t)n * ldo + o]);
	s = col_sum(red, s);
	if (threadIdx.y == 0 && o < OC)
		dbias[o] += s;
}

/* One warp per row of (B*NH*T, T) scores, causal.  Rows of up to 32 * SOFTMAX_REG columns
 * (T <= 1024) stay in registers, so the scores are read once and the probabilities written
 * once; longer rows are read again by each loop. */
#define SOFTMAX_REG 32

template <class X> __global__ static void k_softmax_causal_reg(X *att, long rows, int T)
{
	long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;

	if (row >= rows)
		return;
	X *a = att + row * T;
	int t = (int)(row % T);
	float v[SOFTMAX_REG], mx = -INFINITY, s = 0.0f;

#pragma unroll
	for (int k = 0; k < SOFTMAX_REG; k++) {
		int j = lane + 32 * k;

		v[k] = j <= t ? ld(a[j]) : -INFINITY;
		mx = fmaxf(mx, v[k]);
	}
	mx = warp_max(mx);
#pragma unroll
	for (int k = 0; k < SOFTMAX_REG; k++) {
		v[k] = lane + 32 * k <= t ? expf(v[k] - mx) : 0.0f;
		s += v[k];
	}
	float inv = 1.0f / warp_sum(s);

#pragma unroll
	for (int k = 0; k < SOFTMAX_REG; k++)
		if (lane + 32 * k < T)
			st(&a[lane + 32 * k], v[k] * inv);
}

template <class X> __global__ static void k_softmax_causal(X *att, long rows, int T)
{
	long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;

	if (row >= rows)
		return;
	X *a = att + row * T;
	int t = (int)(row % T);
	float mx = -INFINITY, s = 0.0f;

	for (int j = lane; j <= t; j += 32)
		mx = fmaxf(mx, ld(a[j]));
	mx = warp_max(mx);
	for (int j = lane; j <= t; j += 32)
		s += expf(ld(a[j]) - mx);
	float inv = 1.0f / warp_sum(s);

	for (int j = lane; j < T; j += 32)
		st(&a[j], j <= t ? expf(ld(a[j]) - mx) * inv : 0.0f);
}

template <class X>
__global__ static void k_softmax_causal_backward_reg(X *datt, const X *att, long rows, int T)
{
	long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;

	if (row >= rows)
		return;
	const X *a = att + row * T;
	X *da = datt + row * T;
	int t = (int)(row % T);
	float av[SOFTMAX_REG], dv[SOFTMAX_REG], dot = 0.0f;

#pragma unroll
	for (int k = 0; k < SOFTMAX_REG; k++) {
		int j = lane + 32 * k;

		av[k] = j <= t ? ld(a[j]) : 0.0f;
		dv[k] = j <= t ? ld(da[j]) : 0.0f;
		dot += av[k] * dv[k];
	}
	dot = warp_sum(dot);
#pragma unroll
	for (int k = 0; k < SOFTMAX_REG; k++)
		if (lane + 32 * k < T)
			st(&da[lane + 32 * k], av[k] * (dv[k] - dot));
}

template <class X>
__global__ static void k_softmax_causal_backward(X *datt, const X *att, long rows, int T)
{
	long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int lane = threadIdx.x % 32;

	if (row >= rows)
		return;
	const X *a = att + row * T;
	X *da = datt + row * T;
	int t = (int)(row % T);
	float dot = 0.0f;

	for (int j = lane; j <= t; j += 32)
		dot += ld(a[j]) * ld(da[j]);
	dot = warp_sum(dot);
	for (int j = lane; j < T; j += 32)
		st(&da[j], j <= t ? ld(a[j]) * (ld(da[j]) - dot) : 0.0f);
}

/* Between parts (B, T, C) arrays inside rows of ldr elements, part p at column p * C, and parts
 * head-major (B, NH, T, hs) arrays one after another: into the head-major ones when to_heads,
 * else back. */
template <class X>
__global__ static void k_heads(X *heads, X *rows, int ldr, int parts, int B, int T, int C,
			       int NH, int to_heads)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, nc = (size_t)B * T * C;

	if (i >= (size_t)parts * nc)
		return;
	int hs = C / NH, p = (int)(i / nc);
	size_t j = i % nc, bt = j / C;
	int ch = (int)(j % C), h = ch / hs, d = ch % hs;
	size_t b = bt / T, t = bt % T;
	X *hd = &heads[p * nc + ((b * NH + h) * T + t) * hs + d];
	X *rw = &rows[bt * ldr + (size_t)p * C + ch];

	if (to_heads)
		*hd = *rw;
	else
		*rw = *hd;
}

template <class X> __global__ static void k_gelu_forward(X *out, const X *inp, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= n)
		return;
	float x = ld(inp[i]);

	st(&out[i], 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x))));
}

template <class X>
__global__ static void k_gelu_backward(X *dinp, const X *inp, const X *dout, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= n)
		return;
	float x = ld(inp[i]);
	float th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
	float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);

	st(&dinp[i], ld(dout[i]) * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du));
}

template <class X> __global__ static void k_residual(X *out, const X *a, const X *b, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		st(&out[i], ld(a[i]) + ld(b[i]));
}

/* one block per row */
template <class X>
__global__ static void k_crossentropy_forward(float *losses, float *lse, const X *logits,
					      const int32_t *targets, int V, int ldl)
{
	__shared__ float red[NT / 32];
	const X *l = logits + (size_t)blockIdx.x * ldl;
	int lane = threadIdx.x % 32, wid = threadIdx.x / 32;
	float mx = -INFINITY, s = 0.0f;

	for (int v = threadIdx.x; v < V; v += blockDim.x)
		mx = fmaxf(mx, ld(l[v]));
	mx = warp_max(mx);
	if (lane == 0)
		red[wid] = mx;
	__syncthreads();
	mx = -INFINITY;
	for (int i = 0; i < NT / 32; i++)
		mx = fmaxf(mx, red[i]);
	__syncthreads();
	for (int v = threadIdx.x; v < V; v += blockDim.x)
		s += expf(ld(l[v]) - mx);
	s = warp_sum(s);
	if (lane == 0)
		red[wid] = s;
	__syncthreads();
	s = 0.0f;
	for (int i = 0; i < NT / 32; i++)
		s += red[i];
	if (threadIdx.x == 0) {
		float e = logf(s) + mx;

		lse[blockIdx.x] = e;
		losses[blockIdx.x] = e - ld(l[targets[blockIdx.x]]);
	}
}

template <class X>
__global__ static void k_crossentropy_backward(X *dlogits, const X *logits, const float *lse,
					       const int32_t *targets, int N, int V, int ldl,
					       float dloss)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= (size_t)N * V)
		return;
	size_t n = i / V, j = n * ldl + i % V;
	int v = (int)(i % V);

	st(&dlogits[j], (expf(ld(logits[j]) - lse[n]) - (v == targets[n] ? 1.0f : 0.0f)) * dloss);
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

template <class X>
__global__ static void k_adamw(float *p, X *cp, const float *g, float *m, float *v, size_t n,
			       float lr, float beta1, float beta2, float eps, float wd,
			       float gscale, float bc1, float bc2)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i >= n)
		return;
	float gi = g[i] * gscale;
	float mi = beta1 * m[i] + (1.0f - beta1) * gi;
	float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
	float pi = p[i] - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);

	m[i] = mi;
	v[i] = vi;
	p[i] = pi;
	if (cp)
		st(&cp[i], pi);
}

/* ---- the table ---- */

static void cu_act_from_f32(void *ctx, gpu_act *dst, const float *src, size_t n)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_to_act<X><<<blocks(n, NT), NT, 0, c->stream>>>((X *)dst, src, n);
	});
	check_launch(c);
}

static int cu_act_to_host(void *ctx, float *dst, const gpu_act *src, size_t n)
{
	cuda_ctx *c = enter(ctx, __func__);
	int r;

	if (!c->bf16)
		return cu_to_host(ctx, dst, src, n * sizeof(float));
	/* the bf16 values into the first half of dst, then widened in place from the end: float
	 * i overwrites bf16 values 2i and 2i+1, which are read by then (or, for i = 0, just) */
	r = cu_to_host(ctx, dst, src, n * sizeof(uint16_t));
	for (size_t i = n; r == 0 && i-- > 0;) {
		uint16_t h;
		uint32_t u;

		memcpy(&h, (const char *)dst + 2 * i, 2);
		u = (uint32_t)h << 16;
		memcpy(&dst[i], &u, 4);
	}
	return r;
}

static void cu_encoder_forward(void *ctx, gpu_act *out, const int32_t *inp, const float *wte,
			       const float *wpe, int B, int T, int C)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_encoder_forward<X><<<blocks((size_t)B * T * C, NT), NT, 0, c->stream>>>(
			(X *)out, inp, wte, wpe, B, T, C);
	});
	check_launch(c);
}

static void cu_encoder_backward(void *ctx, float *dwte, float *dwpe, const gpu_act *dout,
				const int32_t *inp, int B, int T, int C)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_encoder_backward_wte<X><<<blocks((size_t)B * T * C, NT), NT, 0, c->stream>>>(
			dwte, (const X *)dout, inp, B * T, C);
		check_launch(c);
		k_encoder_backward_wpe<X><<<blocks((size_t)T * C, NT), NT, 0, c->stream>>>(
			dwpe, (const X *)dout, B, T, C);
	});
	check_launch(c);
}

static void cu_layernorm_forward(void *ctx, gpu_act *out, float *mean, float *rstd,
				 const gpu_act *inp, const float *w, const float *b, int N, int C)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_layernorm_forward<X><<<blocks(N, NT / 32), NT, 0, c->stream>>>(
			(X *)out, mean, rstd, (const X *)inp, w, b, N, C);
	});
	check_launch(c);
}

static void cu_layernorm_backward(void *ctx, gpu_act *dinp, float *dw, float *db,
				  const gpu_act *dout, const gpu_act *inp, const float *w,
				  const float *mean, const float *rstd, int N, int C)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_layernorm_backward_inp<X><<<blocks(N, NT / 32), NT, 0, c->stream>>>(
			(X *)dinp, (const X *)dout, (const X *)inp, w, mean, rstd, N, C);
		check_launch(c);
		k_layernorm_backward_w<X><<<blocks(C, COLS), dim3(COLS, COLS), 0, c->stream>>>(
			dw, db, (const X *)dout, (const X *)inp, mean, rstd, N, C);
	});
	check_launch(c);
}

static void cu_matmul_forward(void *ctx, gpu_act *out, const gpu_act *inp, const gpu_act *w,
			      const float *bias, int N, int C, int OC, int ldo)
{
	cuda_ctx *c = enter(ctx, __func__);
	float beta = 0.0f;

	if (bias) {
		with_act(c, [&](auto x) {
			typedef decltype(x) X;
			k_bias_broadcast<X><<<blocks((size_t)N * OC, NT), NT, 0, c->stream>>>(
				(X *)out, bias, N, OC, ldo);
		});
		check_launch(c);
		beta = 1.0f;
	}
	gemm(c, false, true, N, OC, C, 1.0f, inp, C, w, C, beta, out, ldo, act_type(c));
}

static void cu_matmul_backward(void *ctx, gpu_act *dinp, float *dw, float *dbias,
			       const gpu_act *dout, const gpu_act *inp, const gpu_act *w, int N,
			       int C, int OC, int ldo)
{
	cuda_ctx *c = enter(ctx, __func__);

	gemm(c, false, false, N, C, OC, 1.0f, dout, ldo, w, C, 0.0f, dinp, C, act_type(c));
	/* the weight gradient accumulates in fp32 whatever the activation type */
	gemm(c, true, false, OC, C, N, 1.0f, dout, ldo, inp, C, 1.0f, dw, C, CUDA_R_32F);
	if (dbias) {
		with_act(c, [&](auto x) {
			typedef decltype(x) X;
			k_bias_backward<X><<<blocks(OC, COLS), dim3(COLS, COLS), 0, c->stream>>>(
				dbias, (const X *)dout, N, OC, ldo);
		});
		check_launch(c);
	}
}

/* Attention runs on head-major copies (B, NH, T, hs) in the scratch, so that every product is
 * one GEMM batched over all B * NH heads at uniform strides: one launch where a (B, T, 3C)
 * layout needs one per sequence. */
/* rows is written only when !to_heads, and then is one of the call's outputs */
static void attention_heads(cuda_ctx *c, void *heads, const void *rows, int ldr, int parts,
			    int B, int T, int C, int NH, int to_heads)
{
	size_t n = (size_t)parts * B * T * C;

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_heads<X><<<blocks(n, NT), NT, 0, c->stream>>>((X *)heads, (X *)rows, ldr, parts, B,
							      T, C, NH, to_heads);
	});
	check_launch(c);
}

static void cu_attention_forward(void *ctx, gpu_act *out, gpu_act *att, const gpu_act *qkv,
				 gpu_act *scratch, int B, int T, int C, int NH)
{
	cuda_ctx *c = enter(ctx, __func__);
	int hs = C / NH, heads = B * NH;
	float scale = 1.0f / sqrtf((float)hs);
	long long tt = (long long)T * T, th = (long long)T * hs;
	long rows = (long)B * NH * T;
	size_t nc = (size_t)B * T * C;
	void *q = scratch, *k = act_at(c, scratch, nc), *v = act_at(c, scratch, 2 * nc);
	void *y = act_at(c, scratch, 3 * nc);

	attention_heads(c, q, qkv, 3 * C, 3, B, T, C, NH, 1);
	/* att = scale * q . k^T, then the causal softmax, then y = att . v */
	gemm_batched(c, false, true, T, T, hs, scale, q, hs, th, k, hs, th, 0.0f, att, T, tt,
		     heads);
	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		if (T <= 32 * SOFTMAX_REG)
			k_softmax_causal_reg<X><<<blocks(rows, NT / 32), NT, 0, c->stream>>>(
				(X *)att, rows, T);
		else
			k_softmax_causal<X><<<blocks(rows, NT / 32), NT, 0, c->stream>>>((X *)att,
										 rows, T);
	});
	check_launch(c);
	gemm_batched(c, false, false, T, hs, T, 1.0f, att, T, tt, v, hs, th, 0.0f, y, hs, th,
		     heads);
	attention_heads(c, y, out, C, 1, B, T, C, NH, 0);
}

static void cu_attention_backward(void *ctx, gpu_act *dqkv, gpu_act *datt, const gpu_act *dout,
				  const gpu_act *qkv, const gpu_act *att, gpu_act *scratch, int B,
				  int T, int C, int NH)
{
	cuda_ctx *c = enter(ctx, __func__);
	int hs = C / NH, heads = B * NH;
	float scale = 1.0f / sqrtf((float)hs);
	long long tt = (long long)T * T, th = (long long)T * hs;
	long rows = (long)B * NH * T;
	size_t nc = (size_t)B * T * C;
	void *q = scratch, *k = act_at(c, scratch, nc), *v = act_at(c, scratch, 2 * nc);
	void *dy = act_at(c, scratch, 3 * nc), *dq = act_at(c, scratch, 4 * nc);
	void *dk = act_at(c, scratch, 5 * nc), *dv = act_at(c, scratch, 6 * nc);

	attention_heads(c, q, qkv, 3 * C, 3, B, T, C, NH, 1);
	attention_heads(c, dy, dout, C, 1, B, T, C, NH, 1);
	/* datt = dy . v^T, dv = att^T . dy */
	gemm_batched(c, false, true, T, T, hs, 1.0f, dy, hs, th, v, hs, th, 0.0f, datt, T, tt,
		     heads);
	gemm_batched(c, true, false, T, hs, T, 1.0f, att, T, tt, dy, hs, th, 0.0f, dv, hs, th,
		     heads);
	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		if (T <= 32 * SOFTMAX_REG)
			k_softmax_causal_backward_reg<X><<<blocks(rows, NT / 32), NT, 0,
							      c->stream>>>((X *)datt, (const X *)att,
									   rows, T);
		else
			k_softmax_causal_backward<X><<<blocks(rows, NT / 32), NT, 0, c->stream>>>(
				(X *)datt, (const X *)att, rows, T);
	});
	check_launch(c);
	/* dq = scale * ds . k, dk = scale * ds^T . q */
	gemm_batched(c, false, false, T, hs, T, scale, datt, T, tt, k, hs, th, 0.0f, dq, hs, th,
		     heads);
	gemm_batched(c, true, false, T, hs, T, scale, datt, T, tt, q, hs, th, 0.0f, dk, hs, th,
		     heads);
	attention_heads(c, dq, dqkv, 3 * C, 3, B, T, C, NH, 0);
}

static void cu_gelu_forward(void *ctx, gpu_act *out, const gpu_act *inp, size_t n)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_gelu_forward<X><<<blocks(n, NT), NT, 0, c->stream>>>((X *)out, (const X *)inp, n);
	});
	check_launch(c);
}

static void cu_gelu_backward(void *ctx, gpu_act *dinp, const gpu_act *inp, const gpu_act *dout,
			     size_t n)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_gelu_backward<X><<<blocks(n, NT), NT, 0, c->stream>>>(
			(X *)dinp, (const X *)inp, (const X *)dout, n);
	});
	check_launch(c);
}

static void cu_residual_forward(void *ctx, gpu_act *out, const gpu_act *a, const gpu_act *b,
				size_t n)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_residual<X><<<blocks(n, NT), NT, 0, c->stream>>>((X *)out, (const X *)a,
								 (const X *)b, n);
	});
	check_launch(c);
}

static void cu_crossentropy_forward(void *ctx, float *losses, float *lse,
				    const gpu_act *logits, const int32_t *targets, int N, int V,
				    int ldl)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_crossentropy_forward<X><<<N, NT, 0, c->stream>>>(losses, lse, (const X *)logits,
								 targets, V, ldl);
	});
	check_launch(c);
}

static void cu_crossentropy_backward(void *ctx, gpu_act *dlogits, const gpu_act *logits,
				     const float *lse, const int32_t *targets, int N, int V,
				     int ldl, float dloss)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_crossentropy_backward<X><<<blocks((size_t)N * V, NT), NT, 0, c->stream>>>(
			(X *)dlogits, (const X *)logits, lse, targets, N, V, ldl, dloss);
	});
	check_launch(c);
}

static int cu_sumsq(void *ctx, const float *x, size_t n, double *ret)
{
	cuda_ctx *c = enter(ctx, __func__);
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

static void cu_adamw(void *ctx, float *p, gpu_act *cp, const float *g, float *m, float *v,
		     size_t n, float lr, float beta1, float beta2, float eps, float wd,
		     float gscale, float bc1, float bc2)
{
	cuda_ctx *c = enter(ctx, __func__);

	with_act(c, [&](auto x) {
		typedef decltype(x) X;
		k_adamw<X><<<blocks(n, NT), NT, 0, c->stream>>>(p, (X *)cp, g, m, v, n, lr, beta1,
							      beta2, eps, wd, gscale, bc1, bc2);
	});
	check_launch(c);
}

static const char *cu_error_detail(void *ctx)
{
	return ((cuda_ctx *)ctx)->detail;
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
	cu_error_detail,
	cu_act_from_f32,
	cu_act_to_host,
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
