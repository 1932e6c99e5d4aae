/*
 * plan_route: predicts, from what a prompt says, how well each arm (a
 * model, or in the replay tool a whole strategy such as a cascade) will
 * answer it, and what it will cost — the per-prompt signal beside the per
 * task type posterior of plan_stats, which stays the prior.
 *
 * Features: plan_feat (hashed word and character n-grams, TF-IDF).  Three
 * predictors, all shrunk to the prior the caller passes (the arm's per
 * task type posterior mean quality and mean cost):
 *   kNN       the cosine-weighted mean outcome of the k most similar
 *             prompts the arm answered, with the prior counted as
 *             knn_prior pseudo-similarity:
 *             q = (prior_w * prior + sum s_i y_i) / (prior_w + sum s_i);
 *             buckets in more than df_max of the examples (and more
 *             than 256) are skipped when looking for neighbours
 *             (stop-word-like, and slow);
 *   logistic  per arm, logit q = logit(prior) + w . x, trained by SGD with
 *             L2 (step lr, penalty l2): with w = 0 it is the prior;
 *   matrix factorisation (RouteLLM's strongest learned router, trained
 *             pointwise): logit q = logit(prior) + u_arm . (P x), an
 *             embedding u of PLAN_ROUTE_MF_DIM numbers per arm scored
 *             against the prompt's projection P x, P shared by every arm
 *             (so each arm's outcomes teach what a prompt is like for all
 *             of them), both learned by SGD from seeded small values.
 * The prediction is plan_route_blend(): prior + strength * (knn_weight *
 * kNN + (1 - knn_weight) * ((1 - mf_weight) * logistic + mf_weight * MF)
 * - prior); its cost is the kNN mean cost.
 * The defaults (plan_route_config_default(), strength 1) are fixed, never
 * fitted to a data set; the replay tool may choose k, knn_weight,
 * mf_weight and strength by cross-validation on its training split only
 * (docs/paths.md,
 * "Per-prompt routing"): strength 0, the prior alone, where the text
 * predicts nothing.
 *
 * Learning is online: plan_route_observe() adds one outcome (one SGD step
 * and one kNN label).  IDF counts grow with every prompt added; a stored
 * prompt keeps the weights it got when added until plan_route_fit()
 * reweighs everything and makes extra SGD passes (batch use: the replay
 * tool after loading its training split).
 *
 * Memory: the projection P is PLAN_ROUTE_MF_DIM x PLAN_FEAT_DIM floats
 * (8 MiB), each arm 512 KiB of logistic weights; a prompt costs about 12
 * bytes per distinct n-gram (at most
 * PLAN_FEAT_MAX_BYTES of text are read).  When max_prompts are held, the
 * next plan_route_add() forgets every stored prompt and outcome first (the
 * kNN starts again; the logistic weights and IDF counts stay), so a
 * long-running daemon stays bounded.
 *
 * Persistence: plan_route_open_db() journals every prompt's hashed n-gram
 * counts (never its text) and every outcome in sqlite (plan_route_db.h),
 * written before memory is updated, and loads them at open (the logistic
 * weights are trained again, plan_route_fit()); plan_route_open() keeps
 * everything in memory.
 * Threads: every function may be called from any thread; one internal
 * mutex serialises them.  Errors: -errno (-ENOMEM, -EINVAL).
 */
#ifndef LLMFS_PLAN_ROUTE_H
#define LLMFS_PLAN_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#define PLAN_ROUTE_MF_DIM 16

struct plan_route_config {
	int k;              /* neighbours (25) */
	double knn_prior;   /* pseudo-similarity of the prior (1.0) */
	double df_max;      /* share of examples above which a bucket is
			     * skipped in the neighbour search (0.05) */
	double lr;          /* SGD step (0.2) */
	double l2;          /* L2 penalty per step (1e-4) */
	int epochs;         /* passes of plan_route_fit() (5) */
	double knn_weight;  /* share of the kNN in the prediction (0.5) */
	double mf_weight;   /* share of the matrix factorisation in the
			     * rest, the logistic model having the other
			     * (0.5) */
	double strength;    /* how far the prediction moves from the prior,
			     * in [0, 1]: prior + strength (kNN/logistic
			     * blend - prior); 0 is the prior alone (1) */
	size_t max_prompts; /* prompts the kNN keeps; 0: no bound (5000) */
	uint64_t seed;      /* order of the fit's passes */
};

struct plan_route_pred {
	double quality;     /* the prediction, in [0, 1] */
	double cost;        /* USD */
	double q_knn, q_lr, q_mf;
	double support;     /* sum of the neighbours' similarities */
};

struct plan_route;

void plan_route_config_default(struct plan_route_config *cfg);
int plan_route_open(const struct plan_route_config *cfg,
		    struct plan_route **ret_route);
/* As plan_route_open(), journalled in the sqlite file db_path (NULL: in
 * memory only); what the file holds is loaded first. */
int plan_route_open_db(const struct plan_route_config *cfg,
		       const char *db_path, struct plan_route **ret_route);
void plan_route_free(struct plan_route *r);

/*
 * Adds a prompt (its IDF counts and its weighed features) and returns its
 * id (>= 0) for plan_route_observe(), or -errno.
 */
long plan_route_add(struct plan_route *r, const char *text);

/*
 * An outcome of arm on prompt id: quality in [0, 1], cost in USD (< 0
 * unknown); prior the arm's prior quality for this prompt (the per task
 * type posterior mean), the logistic model's offset.  -ESTALE when the
 * prompt was forgotten since (max_prompts), -EINVAL for an unknown id.
 */
int plan_route_observe(struct plan_route *r, long id, const char *arm,
		       double prior, double quality, double cost);

/* Reweighs every stored prompt with the current IDF and makes the
 * configured SGD passes over every outcome (in a seeded order). */
int plan_route_fit(struct plan_route *r);

/*
 * Predictions for n arms on a prompt, each from its prior quality and
 * cost (prior_c < 0: unknown; the cost is then the kNN mean, else 0).
 * ret[i] for arm i.  An arm never observed gets its prior.
 */
int plan_route_predict(struct plan_route *r, const char *text,
		       const char *const *arms, size_t n,
		       const double *prior_q, const double *prior_c,
		       struct plan_route_pred *ret);

/* The prediction from an arm's prior quality and its predictors' q_knn,
 * q_lr and q_mf under cfg's weights and strength (what
 * plan_route_predict() returns as quality). */
double plan_route_blend(const struct plan_route_config *cfg, double prior,
			const struct plan_route_pred *p);

/* Prompts and outcomes held. */
void plan_route_counts(struct plan_route *r, size_t *ret_prompts,
		       size_t *ret_outcomes);

#endif
