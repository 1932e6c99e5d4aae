/*
 * plan_cand: turns a parsed task into candidate execution paths over the
 * available models, scores them and picks the best.
 *
 * Per step the options are:
 *   single(m)      one call;
 *   cascade(a, b)  call the cheaper a, escalate to b when the step's
 *                  checker or confidence checker rejects a's answer
 *                  (FrugalGPT's pattern; only for steps with either,
 *                  which is the confidence signal);
 *   vote(a, b, c)  three calls in parallel, majority answer, else the
 *                  first member's (only for steps whose answers are
 *                  comparable: an exact or regex checker, or "vote" asked
 *                  for explicitly); the three models of best mean quality,
 *                  best first, and every other triple of the agreement
 *                  pool, cheapest first;
 *   agree(a, b -> c)  two cheap models in parallel; their answer
 *                  stands when they agree (compared as votes are:
 *                  plan_answer_normalise()), else c is called
 *                  (FrugalGPT's and AutoMix's idea: cheap models'
 *                  agreement as a cascade's confidence; for the same
 *                  steps as votes, or "agree" asked for);
 *   agree(a, b, c; n -> d)  three cheap models; the answer that n of
 *                  them (2 or 3) give stands, else d is called: more
 *                  cheap calls before escalating, n the confidence
 *                  threshold.  a and b run in parallel, c only when its
 *                  answer can still decide (n 2: a and b disagree; n 3:
 *                  they agree).  Members: every pair and triple of a
 *                  pool of five eligible models (the cheapest that no
 *                  cheaper one beats in mean quality, then the other
 *                  cheapest), and the pair of the two cheapest, so that
 *                  the naive cascade is always an option; the dear model
 *                  each one dearer than all of them.  Which variant (members, n) a
 *                  step takes is the planner's choice by utility, from
 *                  the learned qualities: no threshold is set by hand.
 *                  With n 2 and c outside the pool this is the
 *                  three-stage cascade (a cheap pair, a mid model called
 *                  when they disagree, d when it agrees with neither):
 *                  c is then any eligible model dearer than a and b that
 *                  no cheaper eligible model beats in mean quality.
 * A path is one option per step of the task's DAG (the decomposition
 * tree; independent steps run as parallel branches).
 *
 * Scores, with q, c, l each model's per task type estimates:
 *   q(single) = q_m
 *   q(cascade) = q_a + (1 - q_a) q_b        c = c_a + (1 - q_a) c_b
 *   q(vote) = P(at least two of three right), independent models
 *   q(agree) = q_a q_b + (1 - q_a q_b) q_c   c = c_a + c_b + (1 - q_a q_b) c_c
 *   (wrong answers taken never to agree; both right is the only
 *   agreement that stands); with three cheap models and threshold n,
 *   P = P(at least n of the three right), q = P + (1 - P) q_d,
 *   c = c_a + c_b + (n = 2 ? 1 - q_a q_b : q_a q_b) c_c + (1 - P) c_d,
 *   l = max(l_a, l_b) + l_c + l_d.  Members whose wrong answers agree
 *   make these figures too good, so an agreement cascade is also learned
 *   as a whole (plan_option_name(): a feedback on its step is recorded
 *   under that name): with N such outcomes of mean m and plan_stats'
 *   prior strength k, q becomes (k q + N m) / (k + N) (and its ranking value
 *   likewise) — the formula is the prior, the outcomes move it.  The
 *   price likewise: q_a q_b in c (the first two agree) and P (the
 *   members' answer stands) are moved by the rates that runs recorded
 *   under plan_agree_key(), since members whose right answers coincide
 *   agree, and escalate, otherwise than independent ones.
 *   q(path) = product over steps (every step must succeed)
 *   c(path) = sum over steps;  l(path) = critical path of the DAG, with a
 *   cascade's worst case (l_a + l_b) and a vote's slowest member.
 * With a plan_route (opts->route), q_m is first moved to the router's
 * prediction for the step's prompt (the posterior mean is its prior) and
 * the Beta posterior keeps its strength around that mean: the per-prompt
 * signal of plan_route.h.
 * q_m is the posterior mean for display and, for ranking, a Thompson draw
 * (PLAN_EXPLORE_THOMPSON), the mean plus c standard deviations
 * (PLAN_EXPLORE_UCB) or the mean (PLAN_EXPLORE_MEAN).  c_m comes from the
 * token estimate (prompt bytes / 4 plus the dependencies' expected
 * answers; max_tokens / 2 out) and the card's prices; l_m from learned
 * latency, else the card's latency_s + tokens / tokens_per_s.
 *
 * Eligible models: only those the task's writer may use
 * (plan_model_usable_by(): trusted cards and the writer's own), pinned or
 * not; the others are no candidates and no fallbacks, so the prompts of a
 * task never reach a card someone else published.
 *
 * Candidates: every model used for all steps it serves, plus for a sweep
 * of prices lambda the per-step argmax of plan_utility() — together they
 * trace the quality-cost frontier.  Duplicates are merged.
 *
 * Choice: feasible paths are those within budget_usd and latency_s.  With
 * min_quality, the cheapest feasible path whose expected quality reaches
 * it; otherwise the feasible path of highest ranking quality, a tie (within
 * tie_eps) going to the cheaper.  No feasible path: -ENOENT and a reason.
 *
 * Pure apart from reading plan_stats (thread-safe) and advancing the rng
 * the caller owns.
 */
#ifndef LLMFS_PLAN_CAND_H
#define LLMFS_PLAN_CAND_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "plan_model.h"
#include "plan_stats.h"
#include "plan_task.h"
#include "plan_util.h"

struct plan_route;

enum plan_explore {
	PLAN_EXPLORE_THOMPSON = 0,
	PLAN_EXPLORE_UCB,
	PLAN_EXPLORE_MEAN,
};

enum plan_strategy {
	PLAN_SINGLE,
	PLAN_CASCADE,
	PLAN_VOTE,
	PLAN_AGREE,
};

struct plan_option {
	enum plan_strategy kind;
	int models[4];        /* indexes into plan_models; agree: the
			       * cheap members, then the dear model */
	int n_models;
	int need;             /* agree: same answers that stand (2 or 3);
			       * 0 for the other strategies */
	double quality;       /* posterior mean */
	double score;         /* ranking quality (explored) */
	double cost;          /* expected USD */
	double latency;       /* worst case seconds */
};

struct plan_path {
	struct plan_option *steps;   /* one per task step */
	double quality, score, cost, latency;
	int feasible;
	char label[96];
};

struct plan_candidates {
	struct plan_path *v;
	size_t n;
	long best;           /* index into v, -1 when none fits */
	/* Per step, the eligible models by descending mean quality: the
	 * fallback order of the executor. */
	int (*fallback)[64];
	size_t *n_fallback;
	size_t n_steps;
};

struct plan_score_opts {
	enum plan_explore explore;
	double ucb_c;         /* default 1 */
	double tie_eps;       /* default 0.005 */
	/* The task's writer; NULL: the process's effective uid. */
	const uid_t *writer;
	/* Per-prompt signal (plan_route.h); NULL: the per task type
	 * posterior alone. */
	struct plan_route *route;
};

int plan_candidates_build(const struct plan_task *task,
			  const struct plan_models *models,
			  struct plan_stats *stats,
			  const struct plan_score_opts *opts,
			  struct plan_rng *rng,
			  struct plan_candidates *ret_cands, char **ret_err);
void plan_candidates_release(struct plan_candidates *c);

/* Expected input and output tokens of a step, as the scorer uses them. */
void plan_step_tokens(const struct plan_task *task, size_t step,
		      double *ret_in, double *ret_out);

json_t *plan_path_to_json(const struct plan_task *task,
			  const struct plan_models *models,
			  const struct plan_path *p);
/* candidates.json: {"best": i, "candidates": [...]} */
json_t *plan_candidates_to_json(const struct plan_task *task,
				const struct plan_models *models,
				const struct plan_candidates *c);

const char *plan_strategy_name(enum plan_strategy s);

/*
 * The name under which plan_stats learns an agreement cascade as a whole
 * (the name llmfs-route-eval gives it too): "agree(a,b)>c" for a pair,
 * "agree2(a,b,c)>d" / "agree3(a,b,c)>d" for a triple and its threshold.
 * -ENAMETOOLONG when it does not fit in n bytes, -EINVAL for another
 * strategy.
 */
int plan_option_name(const struct plan_models *ms,
		     const struct plan_option *o, char *buf, size_t n);

/*
 * The name under which plan_stats learns how an agreement cascade's
 * members behave, whatever model it escalates to: "agree(a,b)#WHAT" for
 * a pair, "agree2(a,b,c)#WHAT" / "agree3(a,b,c)#WHAT" for a triple, and
 * "agree(a,b)#pair" for the first two members of either.  The executor
 * records, per run, "stood" (1: the members' answer stood, the dear model
 * was not called; not recorded when the budget kept a third member from
 * being called) and "pair" (1: the first two agreed); plan_cand prices
 * the option from these rates, the independent members' formula being
 * their prior.  Errors as plan_option_name().
 */
int plan_agree_key(const struct plan_models *ms, const struct plan_option *o,
		   const char *what, char *buf, size_t n);

#endif
