/*
 * reward: the formulas that turn a mining round into amounts (docs/mining.md).
 *
 * Pure functions over integers and a value callback; nothing here touches the ledger, the
 * network or the engine, so the coordinator and the economics simulator
 * (tools/mining/llmfs-mining-sim) run the same code.
 *
 * Units: money in micro-USD (LEDGER_MICRO per dollar), prices in micro-USD per billing
 * hour, billing weights in thousandths (Slurm's TRESBillingWeights "cpu=1.0,gpu=8" is
 * cpu 1000, gpu 8000), device-seconds rounded to milliseconds at the boundary.
 *
 *   compute      pay = floor(weight(kind) x ms x price / (1000 x 3 600 000)), floor so that
 *                a provider is never paid for time it was not metered.
 *   breakthrough the round's validation loss L beats the job's best B when (B - L) / B > eps
 *                (eps 0.005, Bittensor subnet 9); the reward is floor(rate x (B - L) / B),
 *                rate being the job's micro-USD per unit of relative improvement, split among
 *                the round's replicas by their Shapley values.
 *   profit share a model's revenue R: the designer floor(R x bp / 10000), the rest split
 *                among the providers in proportion to their share units.
 *
 * Splits use the largest remainder method in integers: each part floor(T x w_i / W), then
 * the units left one each to the largest remainders (ties to the lower index), so the
 * parts add up to T exactly.
 *
 * Shapley values: v(S) is the value of coalition S (members[i] != 0), v(empty) its zero.
 * Exact for n <= REWARD_SHAPLEY_EXACT_MAX (2^n evaluations, each cached), by random
 * permutations above (Castro, Gomez and Tejada 2009: each permutation's marginal
 * contributions telescope to v(N) - v(empty), so the estimate keeps efficiency exactly;
 * n evaluations per permutation).  The value function may fail: its -errno is returned.
 *
 * Errors: -EINVAL for a bad argument (err, where given, says which), -ENOMEM, or the value
 * function's error.  Thread-safe: no state.
 */
#ifndef LLMFS_REWARD_H
#define LLMFS_REWARD_H

#include <stddef.h>
#include <stdint.h>

#define REWARD_KINDS_MAX 16
#define REWARD_KIND_LEN 32
#define REWARD_SHAPLEY_EXACT_MAX 8
#define REWARD_PLAYERS_MAX 256
#define REWARD_EPSILON_DEFAULT 0.005
#define REWARD_DESIGNER_BP_DEFAULT 3000 /* 30 % of revenue to the designer */

/* Billing weights per device kind, as Slurm's TRESBillingWeights. */
struct reward_billing {
	int n;
	char kind[REWARD_KINDS_MAX][REWARD_KIND_LEN];
	int64_t milli[REWARD_KINDS_MAX];
};

/* "cpu=1.0,gpu=8,GRES/gpu=8": kinds are case-folded and lose a "gres/" prefix; weights in
 * [0, 10^6] with at most 3 decimals. */
int reward_billing_parse(const char *s, struct reward_billing *ret, char *err, size_t errlen);

/* The pay of device_seconds of kind at price (micro-USD per billing hour). -EINVAL for an
 * unknown kind, a negative or non-finite time, a negative price. */
int reward_compute_pay(const struct reward_billing *b, const char *kind, double device_seconds,
		       int64_t price_micro_per_hour, int64_t *ret_micro);

/* 1 and the reward when loss beats best by more than eps (relative), 0 and 0 when it does
 * not; -EINVAL for a loss or best that is not finite and positive, eps < 0, rate < 0. */
int reward_breakthrough(double best, double loss, double eps, int64_t rate_micro,
			int64_t *ret_micro);

/* The value of the coalition members[0..n). */
typedef int (*reward_value_fn)(void *arg, const uint8_t *members, int n, double *ret_value);

/* Shapley values phi[0..n); samples: permutations when n > REWARD_SHAPLEY_EXACT_MAX (0: 100
 * x n), seed for their order.  ret_vn (may be NULL) gets v(N) - v(empty). */
int reward_shapley(int n, reward_value_fn fn, void *arg, long samples, uint64_t seed,
		   double *phi, double *ret_vn);

/* total split in proportion to w[0..n) (w_i >= 0; W = sum > 0) by largest remainder; the
 * parts add up to total.  -EINVAL when W is 0 or a weight negative. */
int reward_split_units(int64_t total, int n, const int64_t *w, int64_t *ret);

/*
 * A breakthrough reward split by Shapley values phi: replicas excluded (flagged by
 * verification: a copy, a failed replay) and those with phi <= 0 get 0, the others share
 * total in proportion to phi (made integers as phi / max phi x 2^40).  Returns what was
 * paid: total, or 0 when no replica has a positive value.
 */
int64_t reward_split_shapley(int64_t total, int n, const double *phi, const uint8_t *excluded,
			     int64_t *ret);

/*
 * A revenue split: *ret_designer = floor(revenue x designer_bp / 10000), the rest to the
 * providers by units[0..n) (all to the designer when no units).  designer_bp in [0, 10000].
 */
int reward_revenue_split(int64_t revenue, int designer_bp, int n, const int64_t *units,
			 int64_t *ret_designer, int64_t *ret);

/* The chance that m faked windows all escape a check of probability q: (1 - q)^m; and the
 * fewest faked windows caught with probability >= p. */
double reward_escape_probability(double q, long m);
long reward_windows_caught(double q, double p);

#endif
