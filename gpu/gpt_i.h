/* gpu/gpt_i.h - the layer kernels a backend provides (private to gpu/ and its tests).
 *
 * gpt.c runs the model as a sequence of these calls on flat float arrays that live in the
 * backend's memory; a backend is this table plus its context.  The CPU table is the reference:
 * every CUDA kernel computes the same function, and tests compare the two.
 *
 * Conventions shared by all kernels
 *   - Shapes in the comments: B batch, T time, C channels, NH heads, N = B*T rows, V vocab.
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

struct gpu_ops {
	const char *name;
	int (*ctx_new)(void **ret_ctx, int bf16_matmul);
	void (*ctx_free)(void *ctx);
	int (*alloc)(void *ctx, void **ret, size_t bytes);
	void (*free)(void *ctx, void *p);
	int (*to_dev)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*to_host)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*zero)(void *ctx, void *p, size_t bytes);
	int (*sync)(void *ctx);

	/* out (B,T,C) = wte[inp] + wpe[t] */
	void (*encoder_forward)(void *ctx, float *out, const int32_t *inp, const float *wte,
				const float *wpe, int B, int T, int C);
	void (*encoder_backward)(void *ctx, float *dwte, float *dwpe, const float *dout,
				 const int32_t *inp, int B, int T, int C);
	/* out (N,C); mean, rstd (N) saved for backward; eps 1e-5 */
	void (*layernorm_forward)(void *ctx, float *out, float *mean, float *rstd, const float *inp,
				  const float *w, const float *b, int N, int C);
	void (*layernorm_backward)(void *ctx, float *dinp, float *dw, float *db, const float *dout,
				   const float *inp, const float *w, const float *mean,
				   const float *rstd, int N, int C);
	/* out (N,OC) = inp (N,C) . w (OC,C)^T + bias (OC), bias may be NULL */
	void (*matmul_forward)(void *ctx, float *out, const float *inp, const float *w,
			       const float *bias, int N, int C, int OC);
	void (*matmul_backward)(void *ctx, float *dinp, float *dw, float *dbias, const float *dout,
				const float *inp, const float *w, int N, int C, int OC);
	/* qkv (B,T,3C) -> out (B,T,C); att (B,NH,T,T) keeps the causal softmax for backward */
	void (*attention_forward)(void *ctx, float *out, float *att, const float *qkv, int B, int T,
				  int C, int NH);
	/* datt (B,NH,T,T) is scratch */
	void (*attention_backward)(void *ctx, float *dqkv, float *datt, const float *dout,
				   const float *qkv, const float *att, int B, int T, int C, int NH);
	/* GELU, tanh approximation, over n elements */
	void (*gelu_forward)(void *ctx, float *out, const float *inp, size_t n);
	void (*gelu_backward)(void *ctx, float *dinp, const float *inp, const float *dout, size_t n);
	/* out = a + b; out may alias a or b */
	void (*residual_forward)(void *ctx, float *out, const float *a, const float *b, size_t n);
	/* probs (N,V) = softmax(logits); losses (N) = -log probs[target] */
	void (*crossentropy_forward)(void *ctx, float *losses, float *probs, const float *logits,
				     const int32_t *targets, int N, int V);
	/* dlogits (N,V) = (probs - onehot(target)) * dloss; dlogits may alias the logits */
	void (*crossentropy_backward)(void *ctx, float *dlogits, const float *probs,
				      const int32_t *targets, int N, int V, float dloss);
	/* sum of squares over n elements, accumulated in double in a fixed order */
	int (*sumsq)(void *ctx, const float *x, size_t n, double *ret);
	/* One AdamW update of n elements; grads are multiplied by gscale (clipping) first. */
	void (*adamw)(void *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr,
		      float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		      float bc2);
};

const struct gpu_ops *gpu_cpu_ops(void);
/* NULL when the library was built without CUDA. */
const struct gpu_ops *gpu_cuda_ops(void);

#endif
