/* gpu/gpt.h - a GPT-2-style decoder that trains: forward, backward, AdamW, sampling.
 *
 * What it owns
 *   A struct gpu_model holds every buffer of one model on one backend: the fp32 parameters
 *   (the master copy), their gradients, the two AdamW moments, with opts->bf16 a bf16 copy of
 *   the parameters for the matmuls, the activations for at most max_batch x max_seq tokens
 *   (fp32, or bf16 with opts->bf16), and a few host scratch arrays.  Everything is allocated in
 *   gpu_model_new(), sampling's host scratch included; no call allocates afterwards, so the
 *   memory a model uses is gpu_model_bytes() on the backend plus O(vocab + max_batch x max_seq)
 *   on the host, and gpu_model_new() refuses with -ENOMEM when opts->max_bytes is set and would
 *   be exceeded.  (Checkpoint save and load make transient host copies of the model's size.)
 *
 * Architecture
 *   Token + position embeddings, n_layer pre-LayerNorm blocks (causal multi-head attention,
 *   then a 4x GELU-tanh MLP, each added to the residual stream), a final LayerNorm and an
 *   output head tied to the token embedding.  Cross-entropy loss, mean over all positions.
 *   Byte-level vocabulary (256) by default; any vocab_size up to 65536 works.
 *
 * Threads
 *   A model is used by one thread at a time.  Models share nothing, so several can live in one
 *   process (the CPU backend uses OpenMP inside each call).
 *
 * Errors (negative errno, nothing printed, never exit)
 *   -EINVAL  bad configuration, batch larger than allocated, token out of range, call out of order
 *   -ENOMEM  allocation failed or over the memory bound
 *   -ENODEV  backend not built into this library, or no device present
 *   -EIO     the device reported a failure
 *   -ERANGE  the loss or the gradient norm is not finite; gpu_model_step() then leaves the
 *            parameters and optimizer state untouched, so the caller can stop cleanly.
 *
 * Determinism
 *   On the CPU backend, the same inputs on the same machine and thread count give bit-identical
 *   results: reductions use fixed partitions, never atomics.  Resuming from a checkpoint therefore
 *   reproduces the loss sequence of an uninterrupted run.  The CUDA backend matches the CPU within
 *   the tolerance stated in tests/gpu/test_cuda_parity.c.
 */
#ifndef GPU_GPT_H
#define GPU_GPT_H

#include <stddef.h>
#include <stdint.h>

struct gpu_config {
	int n_layer;
	int n_head;
	int n_embd;     /* divisible by n_head */
	int n_ctx;      /* longest sequence; sizes the position embedding */
	int vocab_size;
};

enum gpu_backend {
	GPU_BACKEND_CPU = 0,
	GPU_BACKEND_CUDA = 1,
};

struct gpu_opts {
	enum gpu_backend backend;
	int max_batch;       /* B: sequences per forward */
	int max_seq;         /* T: tokens per sequence, <= n_ctx */
	size_t max_bytes;    /* bound on backend memory; 0 means no bound */
	uint64_t seed;       /* weight initialisation */
	int bf16;            /* CUDA only: activations and matmuls in bf16; parameters, gradients and
			      * optimizer state stay fp32 (the master weights) */
};

/* The parameter tensors, in their order inside the flat parameter array.  Per-layer tensors
 * hold n_layer slices back to back.  Matrices are (out, in), row-major. */
enum gpu_param {
	GPU_P_WTE,       /* (V, C) */
	GPU_P_WPE,       /* (n_ctx, C) */
	GPU_P_LN1W,      /* (L, C) */
	GPU_P_LN1B,      /* (L, C) */
	GPU_P_QKVW,      /* (L, 3C, C) */
	GPU_P_QKVB,      /* (L, 3C) */
	GPU_P_ATTPROJW,  /* (L, C, C) */
	GPU_P_ATTPROJB,  /* (L, C) */
	GPU_P_LN2W,      /* (L, C) */
	GPU_P_LN2B,      /* (L, C) */
	GPU_P_FCW,       /* (L, 4C, C) */
	GPU_P_FCB,       /* (L, 4C) */
	GPU_P_FCPROJW,   /* (L, C, 4C) */
	GPU_P_FCPROJB,   /* (L, C) */
	GPU_P_LNFW,      /* (C) */
	GPU_P_LNFB,      /* (C) */
	GPU_NPARAMS
};

/* Which whole-model array gpu_model_read()/gpu_model_write() move. */
enum gpu_buf {
	GPU_BUF_PARAMS,
	GPU_BUF_GRADS,
	GPU_BUF_ADAM_M,
	GPU_BUF_ADAM_V,
};

struct gpu_adamw {
	float beta1, beta2, eps;
	float weight_decay;  /* decoupled, applied to matrices and embeddings, not to biases or norms */
	float grad_clip;     /* global-norm clip; 0 disables */
};

struct gpu_model;

/* Element counts of each parameter tensor (whole tensor, all layers). */
void gpu_param_sizes(const struct gpu_config *cfg, size_t ret_sizes[GPU_NPARAMS]);
size_t gpu_config_num_params(const struct gpu_config *cfg);
int gpu_config_check(const struct gpu_config *cfg);
/* Backend bytes a model of this shape needs with these options (max_batch, max_seq, bf16); 0
 * when the shape overflows size_t. */
size_t gpu_model_bytes(const struct gpu_config *cfg, const struct gpu_opts *opts);
/* Model FLOPs of one training step per token (forward + backward), for throughput figures:
 * 6 per parameter plus the attention score and value products. */
double gpu_flops_per_token(const struct gpu_config *cfg, int seq);

int gpu_model_new(struct gpu_model **ret, const struct gpu_config *cfg,
		  const struct gpu_opts *opts);
void gpu_model_free(struct gpu_model *m);

const struct gpu_config *gpu_model_config(const struct gpu_model *m);
size_t gpu_model_num_params(const struct gpu_model *m);

/* inputs, targets: (B, T) token ids on the host.  targets may be NULL (inference only; then
 * ret_loss may be NULL and backward is refused).  ret_loss is the mean cross-entropy. */
int gpu_model_forward(struct gpu_model *m, const int32_t *inputs, const int32_t *targets,
		      int B, int T, float *ret_loss);
/* Gradients of the last forward's mean loss, overwriting the previous gradients.  Consumes the
 * logits: call gpu_model_logits() before it. */
int gpu_model_backward(struct gpu_model *m);
/* Clip, then one AdamW update at learning rate lr.  ret_grad_norm (may be NULL) gets the norm
 * before clipping. */
int gpu_model_step(struct gpu_model *m, const struct gpu_adamw *hp, float lr,
		   float *ret_grad_norm);

/* The backend's first failure in words (which of its calls saw it, the device's own error), or
 * "" when it has none: for a caller's message beside the -errno.  Valid until the next call. */
const char *gpu_model_error_detail(const struct gpu_model *m);

/* Copy logits (B, T, V) of the last forward, or only of position t of sequence b when
 * row >= 0 (row = b * T + t), into dst on the host. */
int gpu_model_logits(struct gpu_model *m, long row, float *dst);
/* Whole-model arrays in the flat layout of enum gpu_param, host <-> backend. */
int gpu_model_read(struct gpu_model *m, enum gpu_buf which, float *dst);
int gpu_model_write(struct gpu_model *m, enum gpu_buf which, const float *src);
/* AdamW step counter (bias correction).  Part of the resumable state. */
long gpu_model_adam_step(const struct gpu_model *m);
void gpu_model_set_adam_step(struct gpu_model *m, long step);

/* Autoregressive sampling.  tokens holds n_prompt tokens on entry (n_prompt >= 1) and room for
 * n_new more; the context is the last min(n_ctx, max_seq) tokens.  temperature <= 0 picks the
 * most likely token; top_k <= 0 keeps the whole vocabulary.  *rng is advanced. */
int gpu_model_sample(struct gpu_model *m, int32_t *tokens, int n_prompt, int n_new,
		     float temperature, int top_k, uint64_t *rng);

/* Linear warm-up over warmup steps to max_lr, then cosine decay to min_lr at step total.
 * step counts from 0. */
float gpu_lr_schedule(long step, long warmup, long total, float max_lr, float min_lr);

/* The library's random numbers: splitmix64, so every stream is a pure function of its seed. */
uint64_t gpu_rng_next(uint64_t *state);
float gpu_rng_uniform(uint64_t *state);

#endif
