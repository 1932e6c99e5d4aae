/* gpu/window.h - one replica's window of a co-training round, as a pure function.
 *
 * A window is H inner AdamW steps from given flat weights on batches drawn from a shard of a
 * token stream; its result is the pseudo-gradient, start minus end weights (DiLoCo).  The
 * same call runs the window on a provider and replays it for verification
 * (scheduler/mining_verify.h), so the two agree bit for bit on the CPU at the same OpenMP
 * thread count (gpu/gpt.h, "Determinism").
 *
 * Everything a window depends on is in struct gpu_window: the model's state is reset (weights
 * written, AdamW moments zeroed, step counter 0) before the first step, so a model may be
 * reused across windows.  The inner optimizer starts fresh each window: the window is then
 * replayable from what the coordinator knows (start weights, shard, seed, H), at the cost of
 * the inner moments' warm start.
 *
 * Batches: sequence b of step s (from 0) starts at lo + x % (hi - lo - T), x the splitmix64
 * output of seed + (s x B + b + 1) x 0x9e3779b97f4a7c15; targets are the next tokens.  The
 * learning rate is constant over the window (the coordinator's schedule gives it per round).
 *
 * Errors: -EINVAL (a shard shorter than T + 1 tokens, a token out of the vocabulary, steps
 * < 1, B or T beyond the model's), the engine's -errno otherwise.  One thread per model.
 */
#ifndef GPU_WINDOW_H
#define GPU_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "gpu/gpt.h"

struct gpu_window {
	const float *start;      /* the round's global weights, n_params floats */
	const uint16_t *tokens;  /* the token stream */
	size_t lo, hi;           /* the replica's shard: tokens[lo, hi) */
	uint64_t seed;
	long steps;              /* H */
	int B, T;
	float lr;
	struct gpu_adamw adamw;
};

/* Called after each step k (1..steps) with start minus the current weights; a non-zero
 * return stops the window and is returned. */
typedef int (*gpu_window_step_fn)(void *arg, long k, const float *delta, size_t n);

/* Runs w on m; delta (n_params floats) gets start minus end weights.  step (may be NULL) sees
 * the delta after every step, which costs a read of the weights per step. */
int gpu_window_run(struct gpu_model *m, const struct gpu_window *w, float *delta,
		   gpu_window_step_fn step, void *arg);

/* The mean loss of weights on n_batches batches of B x T tokens from tokens[lo, hi), taken at
 * evenly spaced offsets (no randomness): a validation loss.  The model's weights are left as
 * weights. */
int gpu_window_loss(struct gpu_model *m, const float *weights, const uint16_t *tokens,
		    size_t lo, size_t hi, int B, int T, int n_batches, double *ret_loss);

#endif
