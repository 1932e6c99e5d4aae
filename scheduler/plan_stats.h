/*
 * plan_stats: what the planner has learned — per model × task type, how
 * often answers were good, what a call cost and how long it took — and the
 * Bayesian posterior the scorer draws from.
 *
 * Model: the quality of one answer is a number in [0, 1] (a checker's 0/1
 * or a user's feedback).  Per model × task type the posterior of the mean
 * quality is Beta(a, b) with
 *     a = k * m + sum(q),   b = k * (1 - m) + sum(1 - q)
 * where m is the model's pooled mean over all its task types (itself under
 * a Beta(1, 1) prior) and k = prior_strength pseudo-observations.  A task
 * type never seen before therefore starts at what the model does elsewhere,
 * not at 0.5; a model never seen at all starts at 0.5.  Costs and latencies
 * are plain means; an observation may lack them (feedback has neither).
 *
 * Persistence: when opened on a file, every plan_stats_record() is written
 * through in its own sqlite transaction (WAL mode) before it returns, so a
 * restart keeps everything that was acknowledged.  With a NULL path the
 * table lives in memory only (the replay tool).
 *
 * Threads: every function may be called from any thread; one internal
 * mutex serialises them.  Errors: -errno; sqlite errors are mapped by
 * errno_of_sqlite() (common/errmap.h).
 */
#ifndef LLMFS_PLAN_STATS_H
#define LLMFS_PLAN_STATS_H

#include <stddef.h>

#include "plan_util.h"

struct plan_stats;

struct plan_estimate {
	double n;        /* observations of this model × task type */
	double alpha;    /* Beta posterior of the mean quality */
	double beta;
	double quality;  /* posterior mean, alpha / (alpha + beta) */
	double q_sum;    /* the n observations' sum of qualities */
	double cost;     /* mean USD per call, < 0 when never observed */
	double latency;  /* mean seconds per call, < 0 when never observed */
};

/* db_path NULL: memory only.  prior_strength <= 0 selects the default 2. */
int plan_stats_open(const char *db_path, double prior_strength,
		    struct plan_stats **ret_stats);
void plan_stats_free(struct plan_stats *stats);

/*
 * cost_usd or latency_s < 0: not observed.  quality NaN: not observed (a
 * call whose answer nobody judged); otherwise clamped to [0, 1].
 */
int plan_stats_record(struct plan_stats *stats, const char *model,
		      const char *task_type, double quality, double cost_usd,
		      double latency_s);

/* Always succeeds for known arguments: unseen pairs get the prior. */
int plan_stats_estimate(struct plan_stats *stats, const char *model,
			const char *task_type, struct plan_estimate *ret_est);

/* Thompson draw from the posterior. */
double plan_estimate_sample(const struct plan_estimate *est,
			    struct plan_rng *rng);
/* Upper confidence bound: mean + c * sd of the Beta posterior. */
double plan_estimate_ucb(const struct plan_estimate *est, double c);

/*
 * One line per model × task type, tab separated, with a header line:
 * model task_type n quality q05 q95 cost_usd latency_s
 * (q05/q95: a normal approximation of the 90 % credible interval).
 */
int plan_stats_format(struct plan_stats *stats, char **ret_text);

#endif
