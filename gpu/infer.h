/* gpu/infer.h - text generation on the CPU with a KV cache, over the weights of gpu/gpt.h.
 *
 * What it owns
 *   A struct gpu_infer is a model for inference only: the fp32 parameters in gpt.h's flat
 *   layout (enum gpu_param, matrices (out, in)) and nothing else: no gradients, no optimizer
 *   state, no training activations.  It is loaded from a checkpoint directory (config.json +
 *   model.safetensors with Hugging Face GPT-2 names, with or without the "transformer." prefix;
 *   F32, F16 or BF16; the Conv1D matrices (in, out) as Hugging Face stores them), which is the
 *   layout of both llmfs's own checkpoints (gpu/ckpt.h) and the GPT-2 family's files.  The file
 *   is read once and closed; a model never changes after loading.
 *
 *   A struct gpu_infer_state is one sequence being generated: the keys and values of every
 *   token seen so far, per layer ((L, cap, C) each), and the scratch of one step.  Feeding a
 *   token costs one pass of the weights plus attention over the cached keys: the prompt already
 *   processed is never recomputed.  gpu_infer_state_reset() followed by feeding the whole
 *   sequence is the forward without a cache (the benchmark's baseline); both paths run the same
 *   kernels.
 *
 * Kernels
 *   The CPU reference's own (gpu_cpu_ops(): LayerNorm, matmul, GELU, residual), so that the
 *   logits are those of gpt.c's forward up to rounding; attention over the cache is here, one
 *   head per OpenMP thread, single-threaded BLAS inside.
 *
 * Threads
 *   A struct gpu_infer is read-only after loading: any number of threads may use it, each with
 *   its own state.  A state belongs to one thread at a time.
 *
 * Errors (negative errno; nothing printed)
 *   -EINVAL  malformed configuration or weights file, a tensor missing or of the wrong shape or
 *            dtype, a token out of range
 *   -E2BIG   a feed past the state's capacity (at most n_ctx tokens)
 *   -ENOMEM, and -errno from the file system
 */
#ifndef GPU_INFER_H
#define GPU_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "gpu/gpt.h"

struct gpu_infer;
struct gpu_infer_state;

/* dir holds config.json and model.safetensors. */
int gpu_infer_load(struct gpu_infer **ret, const char *dir);
/* A model from weights already in gpt.h's flat layout (copied). */
int gpu_infer_new(struct gpu_infer **ret, const struct gpu_config *cfg, const float *params);
void gpu_infer_free(struct gpu_infer *w);

const struct gpu_config *gpu_infer_config(const struct gpu_infer *w);
/* The flat parameter array (gpu_config_num_params() floats) and one tensor of it. */
const float *gpu_infer_params(const struct gpu_infer *w);
const float *gpu_infer_param(const struct gpu_infer *w, enum gpu_param p);

/* A state for at most cap tokens (1 <= cap <= n_ctx). */
int gpu_infer_state_new(struct gpu_infer_state **ret, const struct gpu_infer *w, int cap);
void gpu_infer_state_free(struct gpu_infer_state *s);
void gpu_infer_state_reset(struct gpu_infer_state *s);
/* Tokens in the cache. */
int gpu_infer_state_len(const struct gpu_infer_state *s);

/* Append n >= 1 tokens to the sequence and, when logits is not NULL, write the logits (V) that
 * follow the last of them.  On failure the state is as before the call, except after -ENOMEM
 * or a kernel failure, when it must be reset. */
int gpu_infer_feed(struct gpu_infer_state *s, const int32_t *tokens, int n, float *logits);

/* How the next token is drawn from logits.  temperature <= 0: the most likely token (ties to
 * the smaller id); else softmax(logits / temperature), kept to the top_k likeliest (top_k <= 0:
 * all), then to the smallest set of likeliest whose mass reaches top_p (top_p >= 1: all), and
 * one draw from what remains with *rng (splitmix64, gpu_rng_uniform), which is advanced.  The
 * same logits, parameters and rng give the same token. */
struct gpu_sampling {
	float temperature;
	float top_p;
	int top_k;
};

struct gpu_sampler {
	int vocab_size;
	float *prob;      /* (V) */
	int32_t *idx;     /* (V) */
};

int gpu_sampler_init(struct gpu_sampler *sp, int vocab_size);
void gpu_sampler_release(struct gpu_sampler *sp);
/* logits (V) is overwritten. */
int32_t gpu_sampler_pick(struct gpu_sampler *sp, const struct gpu_sampling *p, float *logits,
			 uint64_t *rng);

#endif
