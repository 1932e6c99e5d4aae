/* gpu/gpt_i.h - the layer kernels a backend provides (private to gpu/ and its tests).
 *
 * gpt.c runs the model as a sequence of these calls on flat arrays that live in the backend's
 * memory; a backend is this table plus its context.  The CPU table is the reference: every
 * CUDA kernel computes the same function, and tests compare the two.
 *
 * Conventions shared by all kernels
 *   - Shapes in the comments: B batch, T time, C channels, NH heads, N = B*T rows, V vocab.
 *   - Two element types.  float: parameters, their gradients, the optimizer moments, LayerNorm
 *     statistics, the cross-entropy's log-sum-exps and losses, always fp32.  gpu_act: the
 *     activations, their gradients and the matmul weights, in the context's activation type:
 *     fp32 (4 bytes), or bf16 (2 bytes, round to nearest even) in a CUDA context made with
 *     bf16 set.  Kernels read a gpu_act into fp32, compute in fp32 and round once when they
 *     store.
 *   - Forward kernels overwrite their outputs.
 *   - Backward kernels overwrite the gradient of their input ("dinp") except layernorm_backward,
 *     which adds to it (the residual stream sums two paths), and add to parameter gradients
 *     (zeroed once per backward pass).
 *   - Kernels may run asynchronously; a failure is remembered in the context and returned by the
 *     next sync() or copy.  alloc/copy/sync return 0 or -errno.
 */
#ifndef GPU_GPT_I_H
#define GPU_GPT_I_H

#include <stddef.h>
#include <stdint.h>

/* An array of the context's activation type; only its backend reads the elements. */
typedef void gpu_act;

/* Attention's scratch, in (B, T, C) arrays: q, k, v, dy and dq, dk, dv in head-major order. */
#define GPU_ATT_SCRATCH 7

/* Bytes of one gpu_act element in a context made with this bf16 flag. */
static inline size_t gpu_act_bytes(int bf16)
{
	return bf16 ? 2 : 4;
}

struct gpu_ops {
	const char *name;
	/* bf16: activations in bf16 (-EINVAL where the backend has no such mode) */
	int (*ctx_new)(void **ret_ctx, int bf16);
	void (*ctx_free)(void *ctx);
	int (*alloc)(void *ctx, void **ret, size_t bytes);
	void (*free)(void *ctx, void *p);
	int (*to_dev)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*to_host)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*zero)(void *ctx, void *p, size_t bytes);
	int (*sync)(void *ctx);
	/* the first failure in words, "" if none (for messages; the errno is what sync returned) */
	const char *(*error_detail)(void *ctx);
	/* dst (n) = src (n) in the activation type; dst (host, n floats) = src (n) as floats */
	void (*act_from_f32)(void *ctx, gpu_act *dst, const float *src, size_t n);
	int (*act_to_host)(void *ctx, float *dst, const gpu_act *src, size_t n);

	/* out (B,T,C) = wte[inp] + wpe[t] */
	void (*encoder_forward)(void *ctx, gpu_act *out, const int32_t *inp, const float *wte,
				const float *wpe, int B, int T, int C);
	void (*encoder_backward)(void *ctx, float *dwte, float *dwpe, const gpu_act *dout,
				 const int32_t *inp, int B, int T, int C);
	/* out (N,C); mean, rstd (N) saved for backward; eps 1e-5 */
	void (*layernorm_forward)(void *ctx, gpu_act *out, float *mean, float *rstd,
				  const gpu_act *inp, const float *w, const float *b, int N, int C);
	void (*layernorm_backward)(void *ctx, gpu_act *dinp, float *dw, float *db,
				   const gpu_act *dout, const gpu_act *inp, const float *w,
				   const float *mean, const float *rstd, int N, int C);
	/* out (N,OC) = inp (N,C) . w (OC,C)^T + bias (OC), bias may be NULL; the rows of out (and
	 * of dout) are ldo >= OC elements apart */
	void (*matmul_forward)(void *ctx, gpu_act *out, const gpu_act *inp, const gpu_act *w,
			       const float *bias, int N, int C, int OC, int ldo);
	void (*matmul_backward)(void *ctx, gpu_act *dinp, float *dw, float *dbias,
				const gpu_act *dout, const gpu_act *inp, const gpu_act *w, int N,
				int C, int OC, int ldo);
	/* qkv (B,T,3C) -> out (B,T,C); att (B,NH,T,T) keeps the causal softmax for backward.
	 * scratch (GPU_ATT_SCRATCH x B*T*C elements) is the backend's to use during the call. */
	void (*attention_forward)(void *ctx, gpu_act *out, gpu_act *att, const gpu_act *qkv,
				  gpu_act *scratch, int B, int T, int C, int NH);
	/* datt (B,NH,T,T) is scratch too */
	void (*attention_backward)(void *ctx, gpu_act *dqkv, gpu_act *datt, const gpu_act *dout,
				   const gpu_act *qkv, const gpu_act *att, gpu_act *scratch, int B,
				   int T, int C, int NH);
	/* GELU, tanh approximation, over n elements */
	void (*gelu_forward)(void *ctx, gpu_act *out, const gpu_act *inp, size_t n);
	void (*gelu_backward)(void *ctx, gpu_act *dinp, const gpu_act *inp, const gpu_act *dout,
			      size_t n);
	/* out = a + b; out may alias a or b */
	void (*residual_forward)(void *ctx, gpu_act *out, const gpu_act *a, const gpu_act *b,
				 size_t n);
	/* lse (N) = log sum exp logits, losses (N) = lse - logits[target]: the probabilities are
	 * never stored.  The rows of logits and dlogits are ld >= V elements apart, and the
	 * columns past V are not touched. */
	void (*crossentropy_forward)(void *ctx, float *losses, float *lse, const gpu_act *logits,
				     const int32_t *targets, int N, int V, int ld);
	/* dlogits (N,V) = (exp(logits - lse) - onehot(target)) * dloss; dlogits may be logits */
	void (*crossentropy_backward)(void *ctx, gpu_act *dlogits, const gpu_act *logits,
				      const float *lse, const int32_t *targets, int N, int V, int ld,
				      float dloss);
	/* sum of squares over n elements, accumulated in double in a fixed order */
	int (*sumsq)(void *ctx, const float *x, size_t n, double *ret);
	/* One AdamW update of n elements; grads are multiplied by gscale (clipping) first.  cp,
	 * when not NULL, receives the updated weights in the activation type. */
	void (*adamw)(void *ctx, float *p, gpu_act *cp, const float *g, float *m, float *v,
		      size_t n, float lr, float beta1, float beta2, float eps, float wd,
		      float gscale, float bc1, float bc2);
};

const struct gpu_ops *gpu_cpu_ops(void);
/* NULL when the library was built without CUDA. */
const struct gpu_ops *gpu_cuda_ops(void);

#endif
