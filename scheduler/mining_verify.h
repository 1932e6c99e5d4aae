/*
 * mining_verify: is a replica's pseudo-gradient what its window computes?
 *
 * A provider may lie about the window it was given (start weights, shard, seed, H inner
 * steps; gpu/window.h).  The coordinator picks windows to check with probability q,
 * unpredictably for the provider (mining_verify_pick(): HMAC-SHA-256 under the
 * coordinator's secret key of job, round and replica), and replays each picked window
 * with the same engine and OpenMP thread count.  Then:
 *
 *   CPU   the replay is bit-identical to an honest run (gpu/gpt.h, "Determinism"): the claim
 *         must equal it exactly (tolerance 0).
 *   CUDA  the claim must be within a relative L2 distance tol of the replay
 *         (MINING_VERIFY_CUDA_TOL, 1e-3: the fp32 weight bound of tests/gpu/
 *         test_cuda_parity.c, 1e-3 of the largest weight after a few steps; not yet measured
 *         on pseudo-gradients over H steps, which a GPU run must confirm).
 *
 * A claim that fails is classified, for the flag entry's evidence:
 *   copy         it equals another replica's claim of the round (and does not replay: the
 *                replica whose window it is passes)
 *   fewer-steps  it equals the replay after k < H steps
 *   scaled       |cosine| with the replay > 0.999, its norm ratio not 1
 *   noise        |cosine| < 0.2: unrelated to the window's training
 *   other-data   anything else (correlated with, but not, the shard's training)
 *
 * Cost: a checked window costs one more window of compute; checking with probability q
 * adds q to the job's compute.  A provider who fakes m windows escapes with probability
 * (1 - q)^m (reward_escape_probability()); q = 0.1 catches one of 29 faked windows with
 * probability >= 0.95, for 10% more compute.
 *
 * The coalition value (mining_coalition_value()) is the validation-loss improvement of the
 * round's global weights moved by a subset of the pseudo-gradients: the outer step the round
 * really took, with the others' contributions left out (each contribution weighs 1/n, n the
 * round's replicas, so a zero pseudo-gradient changes nothing and its Shapley value is 0).
 *
 * Errors: -EINVAL for sizes that do not match, the engine's -errno.  One thread per model.
 */
#ifndef LLMFS_MINING_VERIFY_H
#define LLMFS_MINING_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "gpu/window.h"

#define MINING_VERIFY_CUDA_TOL 1e-3

enum mining_verdict {
	MINING_OK,
	MINING_COPY,
	MINING_FEWER_STEPS,
	MINING_SCALED,
	MINING_NOISE,
	MINING_OTHER_DATA,
};

struct mining_check {
	enum mining_verdict verdict;
	double rel_err;   /* ||claim - replay|| / ||replay|| */
	double cosine;    /* of claim and replay */
	double scale;     /* <claim, replay> / ||replay||^2 */
	long steps;       /* fewer-steps: the k it matched */
	int copy_of;      /* copy: the index in others it equals */
};

const char *mining_verdict_name(enum mining_verdict v);

/*
 * Replays w on m and checks claim (n floats) against it with tolerance tol (0: bit for bit);
 * others[0..n_others) are the round's claims (this one may be among them; n_others may
 * be 0).  0 and
 * ret->verdict; MINING_OK only for a claim that replays.
 */
int mining_verify_window(struct gpu_model *m, const struct gpu_window *w, const float *claim,
			 size_t n, double tol, const float *const *others, int n_others,
			 struct mining_check *ret);

/* The comparison alone, of a claim with a replay made elsewhere (the coordinator's own
 * window function): every verdict but fewer-steps. */
void mining_verify_compare(const float *claim, const float *replay, size_t n, double tol,
			   const float *const *others, int n_others, struct mining_check *ret);

/* Whether window (job, round, replica) is checked: HMAC-SHA-256 under key[32], its first 8
 * bytes as a fraction of 2^64, below q. */
int mining_verify_pick(const uint8_t key[32], const char *job, long round, int replica,
		       double q);

/* Evidence for a flag entry: {"verdict":..,"rel_err":..,"cosine":..,"scale":..,...}
 * (malloc'd). */
char *mining_check_json(const struct mining_check *c);

struct mining_coalition {
	struct gpu_model *m;
	const float *global;          /* the round's start weights */
	const float *const *deltas;   /* each replica's pseudo-gradient */
	int n_replicas;
	size_t n;                     /* floats per vector */
	float outer_lr;               /* DiLoCo's outer SGD step (Nesterov momentum not applied:
				       * the value is of this round's contributions alone) */
	const uint16_t *val;          /* the designer's validation tokens [lo, hi) */
	size_t val_lo, val_hi;
	int B, T, n_batches;
	float *scratch;               /* n floats, the caller's */
	double base_loss;             /* set by mining_coalition_init() */
};

/* The loss of the global weights (base_loss). */
int mining_coalition_init(struct mining_coalition *c);
/* A reward_value_fn: base_loss minus the loss of global - outer_lr / n_replicas x the sum of
 * the members' deltas. */
int mining_coalition_value(void *arg, const uint8_t *members, int n, double *ret_value);

#endif
