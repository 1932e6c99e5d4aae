/*
 * plan_score: the one utility every planner in llmfs uses to compare two
 * options, so the daemon and the replay tool can never disagree.
 *
 * utility = quality - lambda * cost_usd
 * lambda is the price of quality: how many units of expected quality (in
 * [0, 1]) one US dollar is worth giving up.  lambda = 0 maximises quality;
 * a large lambda picks the cheapest.  Two options whose utilities differ
 * by no more than tie_eps are a tie, and a tie goes to the cheaper one
 * (then to the lower index, so choices are reproducible).
 *
 * Pure functions, callable from any thread.
 */
#ifndef LLMFS_PLAN_SCORE_H
#define LLMFS_PLAN_SCORE_H

#include <stdbool.h>

static inline double plan_utility(double quality, double cost, double lambda)
{
	return quality - lambda * cost;
}

/* True when option a (quality qa, cost ca) beats option b. */
static inline bool plan_better(double qa, double ca, double qb, double cb,
			       double lambda, double tie_eps)
{
	double ua = plan_utility(qa, ca, lambda);
	double ub = plan_utility(qb, cb, lambda);

	if (ua > ub + tie_eps)
		return true;
	if (ub > ua + tie_eps)
		return false;
	return ca < cb;
}

#endif
