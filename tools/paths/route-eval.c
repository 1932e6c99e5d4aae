/*
 * llmfs-route-eval: replays an outcome table (docs/paths.md) to judge the
 * planner against every single model, the oracle, a random mix and a naive
 * agreement cascade.
 *
 * The planner replayed is the daemon's: its options per prompt are the
 * strategies of plan_cand.h — single models; cascades a -> b judged by the
 * check column, as the daemon plays a task's confidence checker (a's
 * answer stands when accepted, else b is called too and its answer
 * stands);
 * agreement cascades (a1, a2 -> b): two cheaper models in parallel, their
 * answer stands when the two agree (compared as the executor compares
 * them), else b is called; the same with three cheaper models whose
 * answer stands when n of them (2 or 3) give it, the third called only
 * when it can still decide (with two of the pool and a mid model from
 * outside it, need 2: the three-stage cascade, make_deep()); votes of
 * three, the majority answer, else the first member's.  Each option is scored per prompt with plan_route (the
 * prompt's hashed n-gram TF-IDF features, kNN, logistic and matrix
 * factorisation predictors)
 * over the per task type plan_stats posterior, which is their prior, and
 * chosen with plan_better(); "by-type" is the same planner without the
 * per-prompt signal.  Sweeping lambda traces each quality-cost curve.
 * Online mode: the test prompts arrive one by one, the planner draws each
 * option's quality (Thompson sampling), only the chosen option's outcome
 * is revealed and learned, and regret is measured against the best fixed
 * task type -> option policy in hindsight and the per-prompt oracle.
 *
 * Everything is computed from the table; no figure is built in.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "route-table.h"
#include "scheduler/plan_route.h"
#include "scheduler/plan_score.h"
#include "scheduler/plan_stats.h"
#include "scheduler/plan_util.h"

#define MAX_MODELS ROUTE_MAX_MODELS
#define TIE_EPS 1e-12
/* Caps on the composite options, so that a table with many models stays
 * quick: agreement pairs and triples, and votes, among a pool of
 * AGREE_POOL answered models (agree_pool()). */
#define AGREE_POOL 5
#define VOTE_POOL AGREE_POOL

/* A point of a quality-cost curve, with each model's share of calls. */
struct point {
	double cost, quality, latency;
	double share[MAX_MODELS];
};

enum opt_kind { O_SINGLE, O_CASCADE, O_AGREE, O_VOTE };

/* What the planner may choose for a prompt. */
struct route_opt {
	enum opt_kind kind;
	int m[4];           /* single: m[0]; cascade: m[0] -> m[1];
			     * agree: m[0 .. n - 1] -> m[n]; vote: m[0 .. 2] */
	int n;              /* agree: the cheap members (2 or 3) */
	int need;           /* agree: same answers that stand (2 or 3) */
	char *name;         /* as plan_stats and plan_route know it */
};

/*
 * The support of member i's answer among the first called of m, as
 * plan_exec's tally counts it: the members whose answer has the same key,
 * 1 for an answer without a key (it agrees with no other), 0 for none.
 */
static int support(const struct prompt *p, const int *m, int i, int called)
{
	int n = 0;

	if (!p->ans[m[i]])
		return (int)((p->said >> m[i]) & 1);
	for (int j = 0; j < called; j++)
		n += p->ans[m[j]] == p->ans[m[i]];
	return n;
}

/* The model whose answer an option gives on p; sets *calls to the models
 * called (a bit mask). */
static int opt_pick(const struct prompt *p, const struct route_opt *o,
		    uint64_t *calls)
{
	const int *m = o->m;

	switch (o->kind) {
	case O_SINGLE:
		*calls = 1ULL << m[0];
		return m[0];
	case O_CASCADE:
		*calls = 1ULL << m[0];
		if (p->chk[m[0]] == 1)
			return m[0];
		*calls |= 1ULL << m[1];
		return m[1];
	case O_AGREE: {
		int win = -1, best = 0, called = 2;
		bool same = p->ans[m[0]] && p->ans[m[0]] == p->ans[m[1]];

		/* A third member only when it can still decide (plan_exec). */
		if (o->n == 3 && (o->need == 2 ? !same : same))
			called = 3;
		*calls = 0;
		/* The answer most members give, the first of them on a tie
		 * (plan_exec's tally); it stands when need members give it. */
		for (int i = 0; i < called; i++) {
			int n = support(p, m, i, called);

			*calls |= 1ULL << m[i];
			if (n > best) {
				best = n;
				win = i;
			}
		}
		if (best >= o->need)
			return m[win];
		*calls |= 1ULL << m[o->n];
		return m[o->n];
	}
	case O_VOTE: {
		int win = -1, best = 0;

		*calls = (1ULL << m[0]) | (1ULL << m[1]) | (1ULL << m[2]);
		/* Majority, else the first member that answered (plan_exec). */
		for (int i = 0; i < 3; i++) {
			int n = support(p, m, i, 3);

			if (n > best) {
				best = n;
				win = i;
			}
		}
		return m[win < 0 ? 0 : win];
	}
	}
	return m[0];
}

static double opt_q(const struct prompt *p, const struct route_opt *o)
{
	uint64_t calls;

	return p->q[opt_pick(p, o, &calls)];
}

static double opt_c(const struct prompt *p, const struct route_opt *o)
{
	uint64_t calls;
	double c = 0;

	opt_pick(p, o, &calls);
	for (int m = 0; m < MAX_MODELS; m++)
		if (calls & (1ULL << m))
			c += p->c[m];
	return c;
}

/* Sequential stages add up, parallel members wait for the slowest. */
static double opt_l(const struct prompt *p, const struct route_opt *o)
{
	uint64_t calls;
	const int *m = o->m;
	double l;

	opt_pick(p, o, &calls);
	for (int k = 0; k < MAX_MODELS; k++)
		if ((calls & (1ULL << k)) && p->l[k] < 0)
			return -1;
	switch (o->kind) {
	case O_SINGLE:
		return p->l[m[0]];
	case O_CASCADE:
		return p->l[m[0]] + ((calls >> m[1]) & 1 ? p->l[m[1]] : 0);
	case O_AGREE:
		/* Two in parallel, then the third, then the dear model. */
		l = fmax(p->l[m[0]], p->l[m[1]]);
		if (o->n == 3 && ((calls >> m[2]) & 1))
			l += p->l[m[2]];
		return l + ((calls >> m[o->n]) & 1 ? p->l[m[o->n]] : 0);
	case O_VOTE:
		return fmax(p->l[m[0]], fmax(p->l[m[1]], p->l[m[2]]));
	}
	return -1;
}

static void opt_calls(const struct prompt *p, const struct route_opt *o,
		      double *share)
{
	uint64_t calls;

	opt_pick(p, o, &calls);
	for (int m = 0; m < MAX_MODELS; m++)
		if (calls & (1ULL << m))
			share[m] += 1;
}

struct eval {
	struct table *t;
	size_t *test;       /* indices of complete test prompts */
	size_t n_test;
	size_t n_models;
	double prior;       /* plan_stats prior strength */
	bool flat_cost;     /* price each option by its mean over all types */
	bool no_cascades;
	bool no_route;      /* the per-prompt signal off */
	int best, cheapest; /* single models on the test split */
	double single_q[MAX_MODELS], single_c[MAX_MODELS];
	uint64_t complete;  /* the have mask of a prompt every model answered */
	struct route_opt *opt; /* the single models first, then the others */
	size_t n_opt, n_cascade, n_agree, n_vote, n_deep;
	/* The naive agreement cascade (the two cheapest answered models
	 * agree, else the best single model), a baseline whether or not the
	 * planner may choose it; naive.name NULL when there is none. */
	struct route_opt naive;
	/* Learned from training: per option × type mean quality and cost. */
	double *est_q, *est_c; /* [type * n_opt + option] */
	/* Per test prompt × option, what each planner expects. */
	double *type_q, *type_c, *route_q, *route_c;
	/* Per test prompt × option, what it gets: replayed once, for the
	 * sweeps (quality, cost, latency, models called). */
	double *got_q, *got_c, *got_l;
	uint64_t *got_calls;
	struct plan_route *route;
	struct plan_route_config cfg; /* the router's, after cross-validation */
	bool cv;            /* choose k and knn_weight by cross-validation */
	uint64_t seed;
};

static int cmp_point(const void *a, const void *b)
{
	const struct point *x = a, *y = b;

	if (x->cost != y->cost)
		return x->cost < y->cost ? -1 : 1;
	return x->quality > y->quality ? -1 : x->quality < y->quality;
}

/*
 * Upper non-decreasing convex hull of the points (sorted by cost on
 * return); writes the hull's indices into h and returns their count.
 */
static size_t hull(struct point *pt, size_t n, size_t *h)
{
	size_t k = 0;

	/* Callers pass copies: the points are sorted in place. */
	qsort(pt, n, sizeof(*pt), cmp_point);
	for (size_t i = 0; i < n; i++) {
		/* Non-decreasing: a point no better than the last is dominated. */
		if (k && pt[i].quality <= pt[h[k - 1]].quality)
			continue;
		while (k >= 2) {
			struct point *a = &pt[h[k - 2]], *b = &pt[h[k - 1]];
			double cross = (b->cost - a->cost) *
				       (pt[i].quality - a->quality) -
				       (b->quality - a->quality) *
				       (pt[i].cost - a->cost);

			if (cross < 0)
				break;
			k--;
		}
		h[k++] = i;
	}
	return k;
}

/* Hull quality at cost c: 0 below the cheapest point, flat after the last. */
static double hull_at(const struct point *pt, const size_t *h, size_t k,
		      double c)
{
	if (!k || c < pt[h[0]].cost)
		return 0;
	for (size_t i = 0; i + 1 < k; i++) {
		const struct point *a = &pt[h[i]], *b = &pt[h[i + 1]];

		if (c <= b->cost) {
			double w = (b->cost > a->cost) ?
				   (c - a->cost) / (b->cost - a->cost) : 1;

			return a->quality + w * (b->quality - a->quality);
		}
	}
	return pt[h[k - 1]].quality;
}

/* Area under the hull over [lo, hi], divided by hi - lo (RouterBench AIQ). */
static double aiq(const struct point *pt, const size_t *h, size_t k,
		  double lo, double hi)
{
	const int steps = 20000;
	double sum = 0;

	if (!(hi > lo))
		return k ? hull_at(pt, h, k, hi) : 0;
	for (int i = 0; i < steps; i++) {
		double c = lo + (hi - lo) * (i + 0.5) / steps;

		sum += hull_at(pt, h, k, c);
	}
	return sum / steps;
}

/* Least cost on the hull reaching quality q, or -1. */
static double hull_cost_for(const struct point *pt, const size_t *h,
			    size_t k, double q)
{
	for (size_t i = 0; i < k; i++) {
		const struct point *b = &pt[h[i]];

		if (b->quality + 1e-12 >= q) {
			const struct point *a;

			if (i == 0)
				return b->cost;
			a = &pt[h[i - 1]];
			return a->cost + (q - a->quality) /
			       (b->quality - a->quality) * (b->cost - a->cost);
		}
	}
	return -1;
}

/* A curve and its hull, kept together. */
struct curve {
	struct point *pt;   /* hull order after curve_hull() */
	size_t n, *h, k;
};

static int curve_hull(struct curve *cv, const struct point *pts, size_t n)
{
	cv->pt = malloc(n * sizeof(*cv->pt));
	cv->h = malloc(n * sizeof(*cv->h));
	if (!cv->pt || !cv->h)
		return -ENOMEM;
	memcpy(cv->pt, pts, n * sizeof(*pts));
	cv->n = n;
	cv->k = hull(cv->pt, n, cv->h);
	return 0;
}

static void curve_release(struct curve *cv)
{
	free(cv->pt);
	free(cv->h);
}

/* Calls per prompt to models other than the cheapest: what "expensive
 * calls" means with any number of models. */
static double dear_calls(const struct eval *e, const struct point *p)
{
	double s = 0;

	for (size_t m = 0; m < e->n_models; m++)
		if ((int)m != e->cheapest)
			s += p->share[m];
	return s;
}

/* Those calls needed to reach quality q, mixing hull points; -1: never. */
static double calls_for(const struct eval *e, const struct point *pt,
			size_t n, double q)
{
	struct point *tmp = malloc(n * sizeof(*tmp));
	size_t *h = malloc(n * sizeof(*h)), k;
	double r = -1;

	if (!tmp || !h)
		goto out;
	/* Reuse the cost hull machinery with the calls as the cost. */
	for (size_t i = 0; i < n; i++) {
		tmp[i] = pt[i];
		tmp[i].cost = dear_calls(e, &pt[i]);
	}
	k = hull(tmp, n, h);
	r = hull_cost_for(tmp, h, k, q);
out:
	free(tmp);
	free(h);
	return r;
}

/* The option the planner takes for test prompt i at lambda, from its
 * per-prompt expectations Q and C ([test prompt * n_opt + option]). */
static size_t planner_pick(const struct eval *e, const double *Q,
			   const double *C, double lambda, size_t i)
{
	const size_t no = e->n_opt;
	const double *q = &Q[i * no], *c = &C[i * no];
	size_t best = 0;

	for (size_t k = 1; k < no; k++)
		if (plan_better(q[k], c[k], q[best], c[best], lambda, TIE_EPS))
			best = k;
	return best;
}

/* The planner's operating point for one lambda. */
static void planner_point(const struct eval *e, const double *Q,
			  const double *C, double lambda, struct point *pt)
{
	const size_t no = e->n_opt;

	memset(pt, 0, sizeof(*pt));
	for (size_t i = 0; i < e->n_test; i++) {
		size_t at = i * no + planner_pick(e, Q, C, lambda, i);

		pt->quality += e->got_q[at];
		pt->cost += e->got_c[at];
		pt->latency += fmax(0, e->got_l[at]);
		for (uint64_t m = e->got_calls[at]; m; m &= m - 1)
			pt->share[__builtin_ctzll(m)] += 1;
	}
	pt->quality /= (double)e->n_test;
	pt->cost /= (double)e->n_test;
	pt->latency /= (double)e->n_test;
	for (size_t m = 0; m < e->n_models; m++)
		pt->share[m] /= (double)e->n_test;
}

/*
 * The planner's quality at lambda less the best single model's, per test
 * prompt: the mean difference and its standard error (a paired
 * comparison, so that what the two share does not count as noise).
 */
static void paired_gap(const struct eval *e, const double *Q, const double *C,
		       double lambda, double *ret_mean, double *ret_se)
{
	const size_t no = e->n_opt, n = e->n_test;
	double s = 0, ss = 0, m;

	for (size_t i = 0; i < n; i++) {
		double d = e->got_q[i * no + planner_pick(e, Q, C, lambda, i)] -
			   e->t->p[e->test[i]].q[e->best];

		s += d;
		ss += d * d;
	}
	m = n ? s / (double)n : 0;
	*ret_mean = m;
	*ret_se = n > 1 ? sqrt(fmax(0, ss / (double)n - m * m) /
			       (double)(n - 1)) : 0;
}

/* One option used for every test prompt. */
static void option_point(const struct eval *e, const struct route_opt *o,
			 struct point *pt)
{
	memset(pt, 0, sizeof(*pt));
	for (size_t i = 0; i < e->n_test; i++) {
		const struct prompt *p = &e->t->p[e->test[i]];

		pt->quality += opt_q(p, o);
		pt->cost += opt_c(p, o);
		opt_calls(p, o, pt->share);
	}
	pt->quality /= (double)e->n_test;
	pt->cost /= (double)e->n_test;
	for (size_t m = 0; m < e->n_models; m++)
		pt->share[m] /= (double)e->n_test;
}

/* The oracle's operating point: per prompt the best utility in hindsight. */
static void oracle_point(const struct eval *e, double lambda,
			 struct point *pt)
{
	memset(pt, 0, sizeof(*pt));
	for (size_t i = 0; i < e->n_test; i++) {
		const struct prompt *p = &e->t->p[e->test[i]];
		size_t best = 0;

		for (size_t m = 1; m < e->n_models; m++)
			if (plan_better(p->q[m], p->c[m], p->q[best],
					p->c[best], lambda, TIE_EPS))
				best = m;
		pt->quality += p->q[best];
		pt->cost += p->c[best];
		pt->share[best] += 1;
	}
	pt->quality /= (double)e->n_test;
	pt->cost /= (double)e->n_test;
	for (size_t m = 0; m < e->n_models; m++)
		pt->share[m] /= (double)e->n_test;
}

#define N_LAMBDA 2000

/* Lambdas from 0 to "cheapest always", scaled by the dearest model's cost. */
static double lambda_at(const struct eval *e, int i)
{
	double cmax = 0;

	for (size_t m = 0; m < e->n_models; m++)
		cmax = fmax(cmax, e->single_c[m]);
	if (i == 0 || cmax <= 0)
		return 0;
	/* 1e-4 .. 1e4 units of quality per dearest call. */
	return pow(10.0, -4.0 + 8.0 * (i - 1) / (N_LAMBDA - 2)) / cmax;
}

/* On how many complete prompts model m has an answer (answers) or a
 * checker's verdict (!answers). */
static size_t known_on(const struct eval *e, int m, bool answers)
{
	size_t n = 0;

	for (size_t i = 0; i < e->t->n; i++) {
		const struct prompt *p = &e->t->p[i];

		if (p->have == e->complete &&
		    (answers ? (p->said >> m) & 1 : p->chk[m] >= 0))
			n++;
	}
	return n;
}

/* Fills o, its name as plan_stats and plan_route know it included. */
static int make_opt(const struct eval *e, struct route_opt *o,
		    enum opt_kind kind, int a, int b, int c)
{
	char *const *n = e->t->models.names;
	int rc = -1;

	o->kind = kind;
	o->m[0] = a;
	o->m[1] = b;
	o->m[2] = c;
	o->n = 2;
	o->need = 2;
	switch (kind) {
	case O_SINGLE: rc = asprintf(&o->name, "%s", n[a]); break;
	case O_CASCADE: rc = asprintf(&o->name, "%s>%s", n[a], n[b]); break;
	case O_AGREE: rc = asprintf(&o->name, "agree(%s,%s)>%s", n[a], n[b],
				    n[c]); break;
	case O_VOTE: rc = asprintf(&o->name, "vote(%s,%s,%s)", n[a], n[b],
				   n[c]); break;
	}
	if (rc < 0) {
		o->name = NULL;
		return -ENOMEM;
	}
	return 0;
}

static int add_opt(struct eval *e, enum opt_kind kind, int a, int b, int c)
{
	int rc = make_opt(e, &e->opt[e->n_opt], kind, a, b, c);

	if (rc == 0)
		e->n_opt++;
	return rc;
}

/* agree(cheap[0 .. 2]; need) > dear: three cheap members. */
static int add_agree3(struct eval *e, const int *cheap, int need, int dear)
{
	char *const *n = e->t->models.names;
	struct route_opt *o = &e->opt[e->n_opt];

	o->kind = O_AGREE;
	memcpy(o->m, cheap, 3 * sizeof(int));
	o->m[3] = dear;
	o->n = 3;
	o->need = need;
	if (asprintf(&o->name, "agree%d(%s,%s,%s)>%s", need, n[cheap[0]],
		     n[cheap[1]], n[cheap[2]], n[dear]) < 0) {
		o->name = NULL;
		return -ENOMEM;
	}
	e->n_opt++;
	e->n_agree++;
	return 0;
}

/* Triples among the pool cheapest answered models, each with need 2 and
 * 3, escalating to each model dearer than all three. */
static int make_agree3(struct eval *e, const int *ans, size_t pool)
{
	for (size_t i = 0; i < pool; i++)
		for (size_t j = i + 1; j < pool; j++)
			for (size_t k = j + 1; k < pool; k++) {
				int v[3] = { ans[i], ans[j], ans[k] };

				for (size_t b = 0; b < e->n_models; b++) {
					/* ans is cheapest first: v[2] dearest. */
					if (e->single_c[b] <= e->single_c[v[2]] ||
					    (int)b == v[0] || (int)b == v[1] ||
					    (int)b == v[2])
						continue;
					for (int need = 2; need <= 3; need++)
						if (add_agree3(e, v, need,
							       (int)b) < 0)
							return -ENOMEM;
				}
			}
	return 0;
}

static double train_q(const struct eval *e, int m);
static int cmp_by_cost_ctx(const struct eval *ctx, int a, int b);

/*
 * The three-stage cascade: a pair of the pool, a mid model outside the
 * pool, a dear one.  The pair in parallel; the mid model only when the
 * two disagree, its answer standing when it agrees with either; else the
 * dear model (agree2(a, b, mid) > dear: the rule of a triple with need 2,
 * plan_exec runs it so).  Mid models: answered models dearer than the
 * pair's dearer member, outside the pool, that no cheaper answered model
 * other than the pair's two beats on the training split (a model so
 * beaten would be a dearer and worse mid; one that only the pair beats
 * is still the best tie-breaker at its price, since neither member can
 * break its own tie); dear: each model dearer than the mid one.  Which
 * (pair, mid, dear) a prompt takes is the planner's utility choice, as
 * for every option.  plan_cand.c offers the same.
 */
static bool deep_mid_ok(const struct eval *e, const int *all, size_t na,
			const int *v)
{
	double q = train_q(e, v[2]);

	for (size_t i = 0; i < na; i++) {
		int x = all[i];

		if (x == v[0] || x == v[1] || x == v[2] ||
		    cmp_by_cost_ctx(e, x, v[2]) > 0)
			continue;
		if (train_q(e, x) >= q)
			return false;
	}
	return true;
}

static int make_deep(struct eval *e, const int *all, size_t na,
		     const int *ans, size_t pool)
{
	bool in_pool[MAX_MODELS] = { false };

	for (size_t k = 0; k < pool; k++)
		in_pool[ans[k]] = true;
	for (size_t i = 0; i < pool; i++)
		for (size_t j = i + 1; j < pool; j++)
			for (size_t c = 0; c < na; c++) {
				int v[3] = { ans[i], ans[j], all[c] };

				if (in_pool[v[2]] ||
				    e->single_c[v[2]] <= e->single_c[v[1]] ||
				    !deep_mid_ok(e, all, na, v))
					continue;
				for (size_t b = 0; b < e->n_models; b++) {
					if (e->single_c[b] <= e->single_c[v[2]])
						continue;
					if (add_agree3(e, v, 2, (int)b) < 0)
						return -ENOMEM;
					e->n_deep++;
				}
			}
	return 0;
}

static int cmp_by_cost_ctx(const struct eval *ctx, int a, int b)
{
	double x = ctx->single_c[a], y = ctx->single_c[b];

	return x < y ? -1 : x > y ? 1 : a - b;
}

/* Models with answers, cheapest first; returns their count. */
static size_t answered_by_cost(const struct eval *e, int *v)
{
	size_t n = 0;

	for (size_t m = 0; m < e->n_models; m++)
		if (known_on(e, (int)m, true))
			v[n++] = (int)m;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && cmp_by_cost_ctx(e, v[j - 1],
							   v[j]) > 0; j--) {
			int x = v[j];

			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	return n;
}

/* A model's mean quality on the training split. */
static double train_q(const struct eval *e, int m)
{
	double s = 0, n = 0;

	for (size_t i = 0; i < e->t->n; i++)
		if (e->t->p[i].train) {
			s += e->t->p[i].q[m];
			n += 1;
		}
	return n > 0 ? s / n : 0;
}

/*
 * The members' pool of agreement cascades and votes, from the answered
 * models v[0 .. n-1] (cheapest first): the cheapest models that no
 * cheaper one beats on the training split, then, while places are left,
 * the others cheapest first; the pool is returned cheapest first.  With
 * many models of spread prices, the cheapest five are often models that
 * a cheaper one outdoes.  *second: v[1] when it is not in the pool, else
 * -1 (the pair of the two cheapest is offered all the same, so that the
 * naive cascade is always among the planner's options).  plan_cand.c
 * picks its pool alike.
 */
static size_t agree_pool(const struct eval *e, const int *v, size_t n,
			 int *pool, int *second)
{
	double top = -INFINITY;
	bool taken[MAX_MODELS] = { false };
	size_t k = 0;

	for (size_t i = 0; i < n && k < AGREE_POOL; i++) {
		double q = train_q(e, v[i]);

		if (q > top) {
			pool[k++] = v[i];
			taken[i] = true;
		}
		top = fmax(top, q);
	}
	for (size_t i = 0; i < n && k < AGREE_POOL; i++)
		if (!taken[i]) {
			pool[k++] = v[i];
			taken[i] = true;
		}
	*second = n >= 2 && !taken[1] ? v[1] : -1;
	for (size_t i = 1; i < k; i++)
		for (size_t j = i; j > 0 && cmp_by_cost_ctx(e, pool[j - 1],
							   pool[j]) > 0; j--) {
			int x = pool[j];

			pool[j] = pool[j - 1];
			pool[j - 1] = x;
		}
	return k;
}

/* The three answered models of best quality on the training split, best
 * first, in top; false when there are fewer than three. */
static bool best3(const struct eval *e, const int *v, size_t n, int *top)
{
	top[0] = top[1] = top[2] = -1;
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 3; k++)
			if (top[k] < 0 || train_q(e, v[i]) >
					  train_q(e, top[k])) {
				for (int j = 2; j > k; j--)
					top[j] = top[j - 1];
				top[k] = v[i];
				break;
			}
	return top[2] >= 0;
}

static bool in3(const int *top, int m)
{
	return m == top[0] || m == top[1] || m == top[2];
}

/*
 * Votes as the daemon offers them (plan_cand.c): of the three answered
 * models of best training quality, best first (the best breaks a
 * three-way tie), and of every other triple of the pool, cheapest first.
 */
static int make_votes(struct eval *e, const int *v, size_t n,
		      const int *pool, size_t n_pool)
{
	int top[3];
	bool have = best3(e, v, n, top);

	if (have) {
		if (add_opt(e, O_VOTE, top[0], top[1], top[2]) < 0)
			return -ENOMEM;
		e->n_vote++;
	}
	for (size_t i = 0; i < n_pool; i++)
		for (size_t j = i + 1; j < n_pool; j++)
			for (size_t k = j + 1; k < n_pool; k++) {
				if (have && in3(top, pool[i]) &&
				    in3(top, pool[j]) && in3(top, pool[k]))
					continue;
				if (add_opt(e, O_VOTE, pool[i], pool[j],
					    pool[k]) < 0)
					return -ENOMEM;
				e->n_vote++;
			}
	return 0;
}

/* agree(a, b) > d for each model d dearer than both (a cheaper than b). */
static int add_pair(struct eval *e, int a, int b)
{
	for (size_t d = 0; d < e->n_models; d++) {
		if (e->single_c[d] <= e->single_c[b] || (int)d == a ||
		    (int)d == b)
			continue;
		if (add_opt(e, O_AGREE, a, b, (int)d) < 0)
			return -ENOMEM;
		e->n_agree++;
	}
	return 0;
}

/*
 * Single models, then cascades a -> b (a cheaper) where a is always
 * judged, agreement cascades and votes where answers are recorded.
 */
static int make_options(struct eval *e)
{
	const size_t nm = e->n_models;
	int all[MAX_MODELS], ans[AGREE_POOL], second;
	size_t na = answered_by_cost(e, all), pool;

	if (na >= 2 && e->best != all[0] && e->best != all[1] &&
	    e->single_c[e->best] > e->single_c[all[1]] &&
	    make_opt(e, &e->naive, O_AGREE, all[0], all[1], e->best) < 0)
		return -ENOMEM;
	e->opt = calloc(nm + nm * nm + AGREE_POOL * AGREE_POOL * nm + 2 +
			2 * AGREE_POOL * AGREE_POOL * AGREE_POOL * nm +
			AGREE_POOL * AGREE_POOL * nm * nm +
			VOTE_POOL * VOTE_POOL * VOTE_POOL, sizeof(*e->opt));
	if (!e->opt)
		return -ENOMEM;
	for (size_t m = 0; m < nm; m++)
		if (add_opt(e, O_SINGLE, (int)m, -1, -1) < 0)
			return -ENOMEM;
	for (size_t a = 0; a < nm && !e->no_cascades; a++) {
		if (!known_on(e, (int)a, false))
			continue;
		for (size_t b = 0; b < nm; b++) {
			if (e->single_c[b] <= e->single_c[a])
				continue;
			if (add_opt(e, O_CASCADE, (int)a, (int)b, -1) < 0)
				return -ENOMEM;
			e->n_cascade++;
		}
	}
	pool = agree_pool(e, all, na, ans, &second);
	if (second >= 0 && !e->no_cascades &&
	    add_pair(e, all[0], second) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < pool && !e->no_cascades; i++)
		for (size_t j = i + 1; j < pool; j++)
			if (add_pair(e, ans[i], ans[j]) < 0)
				return -ENOMEM;
	if (!e->no_cascades && make_agree3(e, ans, pool) < 0)
		return -ENOMEM;
	if (!e->no_cascades && make_deep(e, all, na, ans, pool) < 0)
		return -ENOMEM;
	return e->no_cascades ? 0 : make_votes(e, all, na, ans, pool);
}

/* plan_stats posteriors per option × task type from the training rows. */
static int learn_types(struct eval *e)
{
	const size_t no = e->n_opt, nt = e->t->types.n;
	struct plan_stats *st = NULL;
	int rc;

	rc = plan_stats_open(NULL, e->prior, &st);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < e->t->n; i++) {
		const struct prompt *p = &e->t->p[i];

		if (!p->train)
			continue;
		for (size_t k = 0; k < no; k++) {
			rc = plan_stats_record(st, e->opt[k].name,
					       e->t->types.names[p->type],
					       opt_q(p, &e->opt[k]),
					       opt_c(p, &e->opt[k]),
					       opt_l(p, &e->opt[k]));
			if (rc < 0)
				goto out;
		}
	}
	e->est_q = calloc(nt * no, sizeof(double));
	e->est_c = calloc(nt * no, sizeof(double));
	if (!e->est_q || !e->est_c) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t ty = 0; ty < nt; ty++)
		for (size_t k = 0; k < no; k++) {
			struct plan_estimate est;

			plan_stats_estimate(st, e->opt[k].name,
					    e->t->types.names[ty], &est);
			e->est_q[ty * no + k] = est.quality;
			e->est_c[ty * no + k] = est.cost >= 0 ? est.cost : 0;
			if (e->flat_cost) {
				/* The option's pooled mean over all types. */
				plan_stats_estimate(st, e->opt[k].name, "*",
						    &est);
				if (est.cost >= 0)
					e->est_c[ty * no + k] = est.cost;
			}
		}
out:
	plan_stats_free(st);
	return rc;
}

#define CV_FOLDS 3

/* A training prompt's cross-validation fold. */
static int fold_of(const struct prompt *p, uint64_t seed)
{
	uint64_t h = route_fnv(p->id, 0xcbf29ce484222325ULL ^ (seed * 31 + 7));

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (int)(h % CV_FOLDS);
}

/* Feeds the training prompts (but those of fold skip, unless -1) and
 * every option's outcome to a router. */
static int route_train_but(const struct eval *e, struct plan_route *r,
			   int skip)
{
	const size_t no = e->n_opt;
	int rc;

	for (size_t i = 0; i < e->t->n; i++) {
		const struct prompt *p = &e->t->p[i];
		long id;

		if (!p->train || (skip >= 0 && fold_of(p, e->seed) == skip))
			continue;
		id = plan_route_add(r, p->text);
		if (id < 0)
			return (int)id;
		for (size_t k = 0; k < no; k++) {
			rc = plan_route_observe(r, id, e->opt[k].name,
						e->est_q[p->type * no + k],
						opt_q(p, &e->opt[k]),
						opt_c(p, &e->opt[k]));
			if (rc < 0)
				return rc;
		}
	}
	return plan_route_fit(r);
}

static int route_train(const struct eval *e, struct plan_route *r)
{
	return route_train_but(e, r, -1);
}

/*
 * k, knn_weight and strength of plan_route by CV_FOLDS-fold
 * cross-validation on the training split only: the triple whose predicted
 * option qualities have the least squared error on the held-out folds.
 * Strength 0 (the per task type prior alone) is in the grid, so prompts
 * whose text says nothing about the outcomes are not routed on noise.
 * The grid is fixed.
 */
static const int cv_k[] = { 10, 30, 100 };
static const double cv_w[] = { 0, 0.25, 0.5, 0.75, 1 };
static const double cv_s[] = { 0, 0.5, 1 };
static const double cv_m[] = { 0, 0.5, 1 };
#define N_CV_K (sizeof(cv_k) / sizeof(cv_k[0]))
#define N_CV_W (sizeof(cv_w) / sizeof(cv_w[0]))
#define N_CV_S (sizeof(cv_s) / sizeof(cv_s[0]))
#define N_CV_M (sizeof(cv_m) / sizeof(cv_m[0]))

/* Adds one held-out outcome y's squared error under every weight,
 * strength and matrix factorisation share of the grid. */
static void cv_score(double (*err)[N_CV_S][N_CV_M],
		     const struct plan_route_pred *p, double prior, double y)
{
	for (size_t wi = 0; wi < N_CV_W; wi++)
		for (size_t si = 0; si < N_CV_S; si++)
			for (size_t mi = 0; mi < N_CV_M; mi++) {
				struct plan_route_config c = {
					.knn_weight = cv_w[wi],
					.strength = cv_s[si],
					.mf_weight = cv_m[mi],
				};
				double q = plan_route_blend(&c, prior, p);

				err[wi][si][mi] += (q - y) * (q - y);
			}
}

static int cv_select(struct eval *e, struct plan_route_config *cfg)
{
	const size_t no = e->n_opt;
	const char **names = malloc(no * sizeof(*names));
	struct plan_route_pred *pr = malloc(no * sizeof(*pr));
	double err[N_CV_K][N_CV_W][N_CV_S][N_CV_M] = { { { { 0 } } } };
	double best = INFINITY;
	int rc = -ENOMEM;

	if (!names || !pr)
		goto out;
	for (size_t k = 0; k < no; k++)
		names[k] = e->opt[k].name;
	for (size_t ki = 0; ki < N_CV_K; ki++)
		for (int f = 0; f < CV_FOLDS; f++) {
			struct plan_route_config c = *cfg;
			struct plan_route *r = NULL;

			c.k = cv_k[ki];
			if ((rc = plan_route_open(&c, &r)) < 0 ||
			    (rc = route_train_but(e, r, f)) < 0) {
				plan_route_free(r);
				goto out;
			}
			for (size_t i = 0; i < e->t->n; i++) {
				const struct prompt *p = &e->t->p[i];

				if (!p->train || fold_of(p, e->seed) != f)
					continue;
				rc = plan_route_predict(r, p->text, names, no,
					&e->est_q[p->type * no],
					&e->est_c[p->type * no], pr);
				if (rc < 0)
					break;
				for (size_t k = 0; k < no; k++) {
					double y = opt_q(p, &e->opt[k]);
					double q0 = e->est_q[p->type * no + k];

					cv_score(err[ki], &pr[k], q0, y);
				}
			}
			plan_route_free(r);
			if (rc < 0)
				goto out;
		}
	for (size_t ki = 0; ki < N_CV_K; ki++)
		for (size_t wi = 0; wi < N_CV_W; wi++)
			for (size_t si = 0; si < N_CV_S; si++)
				for (size_t mi = 0; mi < N_CV_M; mi++) {
					if (err[ki][wi][si][mi] >= best)
						continue;
					best = err[ki][wi][si][mi];
					cfg->k = cv_k[ki];
					cfg->knn_weight = cv_w[wi];
					cfg->strength = cv_s[si];
					cfg->mf_weight = cv_m[mi];
				}
	rc = 0;
out:
	free(names);
	free(pr);
	return rc;
}

/* What each planner expects of each option on each test prompt. */
static int expect(struct eval *e)
{
	const size_t no = e->n_opt, nt = e->n_test;
	const char **names = malloc(no * sizeof(*names));
	struct plan_route_pred *pr = malloc(no * sizeof(*pr));
	int rc = -ENOMEM;

	e->got_q = malloc(nt * no * sizeof(double));
	e->got_c = malloc(nt * no * sizeof(double));
	e->got_l = malloc(nt * no * sizeof(double));
	e->got_calls = malloc(nt * no * sizeof(uint64_t));
	if (!e->got_q || !e->got_c || !e->got_l || !e->got_calls)
		goto out;
	for (size_t i = 0; i < nt; i++)
		for (size_t k = 0; k < no; k++) {
			const struct prompt *p = &e->t->p[e->test[i]];

			e->got_q[i * no + k] = opt_q(p, &e->opt[k]);
			e->got_c[i * no + k] = opt_c(p, &e->opt[k]);
			e->got_l[i * no + k] = opt_l(p, &e->opt[k]);
			opt_pick(p, &e->opt[k], &e->got_calls[i * no + k]);
		}
	e->type_q = malloc(nt * no * sizeof(double));
	e->type_c = malloc(nt * no * sizeof(double));
	e->route_q = malloc(nt * no * sizeof(double));
	e->route_c = malloc(nt * no * sizeof(double));
	if (!names || !pr || !e->type_q || !e->type_c || !e->route_q ||
	    !e->route_c)
		goto out;
	for (size_t k = 0; k < no; k++)
		names[k] = e->opt[k].name;
	if (!e->no_route) {
		struct plan_route_config cfg;

		plan_route_config_default(&cfg);
		cfg.max_prompts = 0;   /* a replay keeps its whole table */
		if (e->cv && (rc = cv_select(e, &cfg)) < 0)
			goto out;
		e->cfg = cfg;
		if ((rc = plan_route_open(&cfg, &e->route)) < 0 ||
		    (rc = route_train(e, e->route)) < 0)
			goto out;
	}
	for (size_t i = 0; i < nt; i++) {
		const struct prompt *p = &e->t->p[e->test[i]];
		const double *q = &e->est_q[p->type * no];
		const double *c = &e->est_c[p->type * no];

		memcpy(&e->type_q[i * no], q, no * sizeof(double));
		memcpy(&e->type_c[i * no], c, no * sizeof(double));
		if (e->no_route) {
			memcpy(&e->route_q[i * no], q, no * sizeof(double));
			memcpy(&e->route_c[i * no], c, no * sizeof(double));
			continue;
		}
		rc = plan_route_predict(e->route, p->text, names, no, q, c, pr);
		if (rc < 0)
			goto out;
		for (size_t k = 0; k < no; k++) {
			e->route_q[i * no + k] = pr[k].quality;
			/* Flat cost: the option's mean, not this prompt's. */
			e->route_c[i * no + k] = e->flat_cost ? c[k] :
						 pr[k].cost;
		}
	}
	rc = 0;
out:
	free(names);
	free(pr);
	return rc;
}

struct online_result {
	double quality, cost;
	double regret_policy, regret_oracle;
	double share[MAX_MODELS];
};

/*
 * Online: the test prompts in a seeded shuffled order; Thompson sampling
 * over the posterior (with the router: a Beta draw around the router's
 * prediction, as concentrated as the task type's posterior — what
 * plan_cand does); only the chosen outcome is learned.  warm: start from
 * the training split; cold: from nothing.
 */
static int online(const struct eval *e, double lambda, bool warm,
		  bool use_route, uint64_t seed, struct online_result *r)
{
	const size_t no = e->n_opt, nt = e->t->types.n;
	struct plan_stats *st = NULL;
	struct plan_route *rt = NULL;
	struct plan_rng rng;
	size_t *order = NULL;
	double *type_util = NULL, oracle_u = 0, got_u = 0, policy_u = 0;
	double *opt_cost = NULL, *opt_n = NULL, *sq = NULL, *sc = NULL;
	double *pq = NULL, *pc = NULL;
	struct plan_estimate *est = NULL;
	struct plan_route_pred *pr = NULL;
	const char **names = NULL;
	bool *type_seen = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	plan_rng_seed(&rng, seed ^ 0x6f6e6c696e65ULL);
	rc = plan_stats_open(NULL, e->prior, &st);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	order = malloc(e->n_test * sizeof(*order));
	type_util = calloc(nt * no, sizeof(*type_util));
	type_seen = calloc(nt, sizeof(*type_seen));
	opt_cost = calloc(no, sizeof(*opt_cost));
	opt_n = calloc(no, sizeof(*opt_n));
	sq = calloc(no, sizeof(*sq));
	sc = calloc(no, sizeof(*sc));
	pq = calloc(no, sizeof(*pq));
	pc = calloc(no, sizeof(*pc));
	est = calloc(no, sizeof(*est));
	pr = calloc(no, sizeof(*pr));
	names = calloc(no, sizeof(*names));
	if (!order || !type_util || !type_seen || !opt_cost || !opt_n ||
	    !sq || !sc || !pq || !pc || !est || !pr || !names)
		goto out;
	for (size_t k = 0; k < no; k++)
		names[k] = e->opt[k].name;
	/* Prices are public, so mean costs per option are known up front. */
	for (size_t i = 0; i < e->t->n; i++) {
		const struct prompt *p = &e->t->p[i];

		if (!p->train)
			continue;
		for (size_t k = 0; k < no; k++) {
			opt_cost[k] += opt_c(p, &e->opt[k]);
			opt_n[k] += 1;
			if (!warm)
				continue;
			rc = plan_stats_record(st, e->opt[k].name,
					       e->t->types.names[p->type],
					       opt_q(p, &e->opt[k]),
					       opt_c(p, &e->opt[k]), -1);
			if (rc < 0)
				goto out;
		}
	}
	for (size_t k = 0; k < no; k++)
		opt_cost[k] = opt_n[k] > 0 ? opt_cost[k] / opt_n[k] : 0;
	if (use_route) {
		if ((rc = plan_route_open(&e->cfg, &rt)) < 0)
			goto out;
		if (warm && (rc = route_train(e, rt)) < 0)
			goto out;
	}
	for (size_t i = 0; i < e->n_test; i++)
		order[i] = e->test[i];
	for (size_t i = e->n_test; i > 1; i--) {
		size_t j = plan_rng_next(&rng) % i, x = order[i - 1];

		order[i - 1] = order[j];
		order[j] = x;
	}
	for (size_t i = 0; i < e->n_test; i++) {
		const struct prompt *p = &e->t->p[order[i]];
		const char *type = e->t->types.names[p->type];
		const struct route_opt *o;
		double best_u = -INFINITY;
		size_t pick = 0;
		long id;

		/* The per-prompt oracle picks among the single models. */
		for (size_t m = 0; m < e->n_models; m++)
			best_u = fmax(best_u, plan_utility(p->q[m], p->c[m],
							   lambda));
		for (size_t k = 0; k < no; k++) {
			plan_stats_estimate(st, e->opt[k].name, type, &est[k]);
			pq[k] = est[k].quality;
			pc[k] = est[k].cost >= 0 ? est[k].cost : opt_cost[k];
		}
		if (rt && (rc = plan_route_predict(rt, p->text, names, no, pq,
						   pc, pr)) < 0)
			goto out;
		for (size_t k = 0; k < no; k++) {
			struct plan_estimate x = est[k];

			if (rt) {
				double kappa = x.alpha + x.beta;

				x.alpha = fmax(1e-3, pr[k].quality * kappa);
				x.beta = fmax(1e-3, (1 - pr[k].quality) * kappa);
				if (!e->flat_cost)
					pc[k] = pr[k].cost;
			}
			sq[k] = plan_estimate_sample(&x, &rng);
			sc[k] = pc[k];
			if (k && plan_better(sq[k], sc[k], sq[pick], sc[pick],
					     lambda, TIE_EPS))
				pick = k;
			type_util[p->type * no + k] +=
				plan_utility(opt_q(p, &e->opt[k]),
					     opt_c(p, &e->opt[k]), lambda);
		}
		type_seen[p->type] = true;
		o = &e->opt[pick];
		/* Only the chosen option's outcome is revealed and learned. */
		rc = plan_stats_record(st, o->name, type, opt_q(p, o),
				       opt_c(p, o), -1);
		if (rc < 0)
			goto out;
		if (rt) {
			if ((id = plan_route_add(rt, p->text)) < 0) {
				rc = (int)id;
				goto out;
			}
			rc = plan_route_observe(rt, id, o->name,
						est[pick].quality, opt_q(p, o),
						opt_c(p, o));
			if (rc < 0)
				goto out;
		}
		r->quality += opt_q(p, o);
		r->cost += opt_c(p, o);
		opt_calls(p, o, r->share);
		got_u += plan_utility(opt_q(p, o), opt_c(p, o), lambda);
		oracle_u += best_u;
	}
	for (size_t ty = 0; ty < nt; ty++) {
		double b = -INFINITY;

		if (!type_seen[ty])
			continue;
		for (size_t k = 0; k < no; k++)
			b = fmax(b, type_util[ty * no + k]);
		policy_u += b;
	}
	r->quality /= (double)e->n_test;
	r->cost /= (double)e->n_test;
	for (size_t m = 0; m < e->n_models; m++)
		r->share[m] /= (double)e->n_test;
	r->regret_policy = policy_u - got_u;
	r->regret_oracle = oracle_u - got_u;
	rc = 0;
out:
	plan_stats_free(st);
	plan_route_free(rt);
	free(order);
	free(type_util);
	free(type_seen);
	free(opt_cost);
	free(opt_n);
	free(sq);
	free(sc);
	free(pq);
	free(pc);
	free(est);
	free(pr);
	free(names);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmfs-route-eval [options] TABLE.tsv\n"
		"  --train FRACTION   share of prompts used for learning, in "
		"(0, 1) (default 0.5;\n"
		"                     a split column, when the table has one, "
		"decides instead)\n"
		"  --seed N           split and sampling seed, an integer >= 0 "
		"(default 1)\n"
		"  --target FRACTION  quality target as a share of the best "
		"single model's, in (0, 1] (default 0.95)\n"
		"  --lambda L         utility price for the online mode, >= 0 "
		"(default: the offline planner's lambda at the target)\n"
		"  --prior K          prior strength in pseudo-observations, "
		"> 0 (default 2, see plan_stats.h)\n"
		"  --flat-cost        price each option by its mean cost over "
		"all task types and\n"
		"                     prompts (cost then counts calls; with one "
		"task type and no\n"
		"                     prompt column it changes nothing)\n"
		"  --no-cascades      single models only (no cascades, "
		"agreement cascades or votes)\n"
		"  --no-route         no per-prompt signal: the per task type "
		"posterior alone\n"
		"  --no-cv            the router's default k and kNN weight, "
		"not chosen by\n"
		"                     cross-validation on the training split\n"
		"  --curve FILE       write the planners' and the oracle's "
		"curves as TSV\n"
		"  --key REGEX        compare answers by their key, as a task's "
		"\"key\": of the\n"
		"                     matches of this POSIX extended regex, the "
		"last whose first\n"
		"                     group (else whole match) holds more than "
		"blanks\n"
		"                     (default: whole answers)\n");
}

static bool arg_double(const char *opt, const char *s, double lo, bool lo_open,
		       double hi, bool hi_open, double *ret)
{
	char *end;
	double v;

	/* decimal only: strtod would also take hex ("0x10" is 16) */
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || strpbrk(s, "xX") ||
	    (lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi)) {
		fprintf(stderr, "llmfs-route-eval: --%s: \"%s\" is not a "
			"number in %c%g, %g%c\n", opt, s, lo_open ? '(' : '[',
			lo, hi, hi_open ? ')' : ']');
		return false;
	}
	*ret = v;
	return true;
}

static bool arg_seed(const char *s, unsigned long long *ret)
{
	char *end;

	errno = 0;
	/* strtoull takes leading blanks and a sign (" -1" is 2^64 - 1). */
	if (!isdigit((unsigned char)*s))
		goto bad;
	*ret = strtoull(s, &end, 10);
	if (!errno && end != s && !*end)
		return true;
bad:
	fprintf(stderr, "llmfs-route-eval: --seed: \"%s\" is not an integer "
		">= 0\n", s);
	return false;
}

/* --key: a POSIX extended regex, compiled as a task's "key" is. */
static bool arg_key(const char *s, regex_t *re)
{
	char msg[128];

	if (*s && plan_key_compile(re, s, msg, sizeof(msg)) == 0)
		return true;
	fprintf(stderr, "llmfs-route-eval: --key: %s\n", *s ? msg :
		"an empty regex");
	return false;
}

/* A cost, short: never 300 digits. */
static const char *fmt_cost(char *buf, size_t n, double c)
{
	snprintf(buf, n, "$%.4g", c);
	return buf;
}

/* A share, or why there is none: never "-100%" nor "-nan%". */
static const char *fmt_pct(char *buf, size_t n, double part, double whole)
{
	if (part < 0)
		snprintf(buf, n, "not reached");
	else if (!(whole > 0))
		snprintf(buf, n, "n/a (zero cost)");
	else
		snprintf(buf, n, "%.1f%%", 100 * part / whole);
	return buf;
}

/* The prompts every model answered: those the methods are compared on. */
static size_t complete_prompts(const struct eval *e)
{
	size_t n = 0;

	for (size_t i = 0; i < e->t->n; i++)
		n += e->t->p[i].have == e->complete;
	return n;
}

/* How many answers of each model hold the --key, which is all that
 * agreement cascades and votes compare of them. */
static void key_note(const struct eval *e, const char *key)
{
	size_t n = complete_prompts(e);

	printf("answers compared by the key %s (the last match; a missing "
	       "answer or one without a key agrees with no other): with a "
	       "key", key);
	for (size_t m = 0; m < e->n_models; m++) {
		size_t k = 0;

		for (size_t i = 0; i < e->t->n; i++)
			k += e->t->p[i].have == e->complete &&
			     e->t->p[i].ans[m];
		printf("%s %s %zu of %zu", m ? "," : "",
		       e->t->models.names[m], k, n);
	}
	printf("\n");
}

/*
 * Two right answers (quality 1) of comparable form are the same answer.
 * Where most pairs of right answers differ as text, they are sentences,
 * spellings or programs: agreement and votes say little of them, and
 * --key may be what the table needs.  Says so.
 */
static void whole_note(const struct eval *e)
{
	size_t pairs = 0, same = 0;

	for (size_t i = 0; i < e->t->n; i++) {
		const struct prompt *p = &e->t->p[i];

		if (p->have != e->complete)
			continue;
		for (size_t a = 0; a < e->n_models; a++)
			for (size_t b = a + 1; b < e->n_models; b++) {
				if (p->q[a] != 1 || p->q[b] != 1 ||
				    !p->ans[a] || !p->ans[b])
					continue;
				pairs++;
				same += p->ans[a] == p->ans[b];
			}
	}
	if (pairs && same * 2 < pairs)
		printf("note: answers compared whole: two right answers are the "
		       "same on %.1f%% of the pairs only; if the answers are "
		       "sentences, --key REGEX compares what they choose\n",
		       100.0 * (double)same / (double)pairs);
}

/*
 * Names the models whose answers (or checker's verdicts) some complete
 * prompts lack, and what that means: a missing answer agrees with no
 * other, as a call that failed; a missing verdict is no acceptance.
 */
static void missing_note(const struct eval *e, bool answers)
{
	size_t n = complete_prompts(e), k = 0;

	for (size_t m = 0; m < e->n_models; m++) {
		size_t have = known_on(e, (int)m, answers);

		if (!have || have == n)
			continue;
		printf("%s %s %zu of %zu prompts", k++ ? "," :
		       answers ? "answers missing (a missing answer agrees "
				 "with no other, as a failed call):" :
				 "checks missing (no verdict is no "
				 "acceptance):", e->t->models.names[m],
		       n - have, n);
	}
	if (k)
		printf("\n");
}

static void print_point(const char *what, const struct eval *e,
			const struct point *p)
{
	char b[64];

	printf("%s  quality %.4f  cost/prompt %s  calls:", what, p->quality,
	       fmt_cost(b, sizeof(b), p->cost));
	for (size_t m = 0; m < e->n_models; m++)
		if (p->share[m] > 0)
			printf(" %s %.1f%%", e->t->models.names[m],
			       100 * p->share[m]);
	printf("\n");
}

/* Why a split is empty: the models that answered fewest prompts. */
static void explain_drop(const struct table *t, size_t n_models)
{
	for (size_t m = 0; m < n_models; m++) {
		size_t k = 0;

		for (size_t i = 0; i < t->n; i++)
			k += (t->p[i].have >> m) & 1;
		if (k < t->n)
			fprintf(stderr, "  model %s answered %zu of %zu "
				"prompts\n", t->models.names[m], k, t->n);
	}
	fprintf(stderr, "  (only prompts that every model answered are "
		"compared: remove the rows of a model that answered few)\n");
}

static void split_prompts(struct eval *e, double train, uint64_t seed,
			  size_t *n_train, size_t *dropped)
{
	struct table *t = e->t;

	for (size_t i = 0; i < t->n; i++) {
		struct prompt *p = &t->p[i];
		uint64_t h = route_fnv(p->id, 1469598103934665603ULL) ^
			     (seed * 0x9e3779b97f4a7c15ULL);

		/* FNV alone is poorly mixed: ids differing in a digit would
		 * land on the same side.  The splitmix64 finaliser fixes it. */
		h ^= h >> 30;
		h *= 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 27;
		h *= 0x94d049bb133111ebULL;
		h ^= h >> 31;
		if (p->split != SPLIT_HASH)
			p->train = p->split == SPLIT_TRAIN;
		else
			p->train = (double)(h >> 11) * 0x1.0p-53 < train;
		if (p->have != e->complete) {
			/* Only complete prompts can be compared fairly. */
			(*dropped)++;
			p->train = false;
			continue;
		}
		if (p->train)
			(*n_train)++;
		else
			e->test[e->n_test++] = i;
	}
}

static void singles(struct eval *e, struct point *single)
{
	memset(single, 0, MAX_MODELS * sizeof(*single));
	for (size_t m = 0; m < e->n_models; m++) {
		for (size_t i = 0; i < e->n_test; i++) {
			single[m].quality += e->t->p[e->test[i]].q[m];
			single[m].cost += e->t->p[e->test[i]].c[m];
		}
		single[m].quality /= (double)e->n_test;
		single[m].cost /= (double)e->n_test;
		single[m].share[m] = 1;
		e->single_q[m] = single[m].quality;
		e->single_c[m] = single[m].cost;
	}
	e->best = e->cheapest = 0;
	for (size_t m = 1; m < e->n_models; m++) {
		if (plan_better(single[m].quality, single[m].cost,
				single[e->best].quality, single[e->best].cost,
				0, TIE_EPS))
			e->best = (int)m;
		if (single[m].cost < single[e->cheapest].cost ||
		    (single[m].cost == single[e->cheapest].cost &&
		     single[m].quality > single[e->cheapest].quality))
			e->cheapest = (int)m;
	}
}

static size_t max_quality(const struct point *pts, size_t n)
{
	size_t b = 0;

	for (size_t i = 1; i < n; i++)
		if (pts[i].quality > pts[b].quality + 1e-12 ||
		    (fabs(pts[i].quality - pts[b].quality) <= 1e-12 &&
		     pts[i].cost < pts[b].cost))
			b = i;
	return b;
}

/*
 * Whether the curves could be written to path, asked before the run so
 * that a path that cannot be is refused at once; nothing is created or
 * emptied until the curves are written, after the report.
 */
static bool curve_writable(const char *path)
{
	struct stat st;
	char *dir = strdup(path), *slash;
	const char *why = NULL;

	if (!dir)
		return false;
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	if (stat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode))
			why = "not a regular file";
		else if (access(path, W_OK) < 0)
			why = strerror(errno);
	} else if (errno != ENOENT ||
		   access(slash ? dir : ".", W_OK | X_OK) < 0) {
		why = strerror(errno);
	}
	if (why)
		fprintf(stderr, "llmfs-route-eval: --curve %s: %s\n", path,
			why);
	free(dir);
	return !why;
}

static int write_curves(const char *path, const struct eval *e,
			const struct point *pl, const struct point *ty,
			const struct point *orc)
{
	const struct point *c[3] = { pl, ty, orc };
	const char *nm[3] = { "planner", "by-type", "oracle" };
	FILE *cf = fopen(path, "w");

	if (!cf) {
		perror(path);
		return -1;
	}
	fprintf(cf, "curve\tlambda\tcost_usd\tquality\tbest_share\t"
		"dear_calls\n");
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < N_LAMBDA; i++)
			fprintf(cf, "%s\t%g\t%.8g\t%.6f\t%.6f\t%.6f\n", nm[k],
				lambda_at(e, i), c[k][i].cost, c[k][i].quality,
				c[k][i].share[e->best], dear_calls(e, &c[k][i]));
	if (fclose(cf) == 0)
		return 0;
	perror(path);
	return -1;
}

static void print_online(const char *what, const struct eval *e,
			 const struct online_result *r)
{
	char b[64];

	struct point p = { .cost = r->cost };

	/* With more than two models the calls to the best single model say
	 * little: every call to a model other than the cheapest counts. */
	memcpy(p.share, r->share, sizeof(p.share));
	printf("  %s: quality %.4f  cost/prompt %s  calls per prompt to models "
	       "other than the cheapest %.1f%% (best single %.1f%%)"
	       "  regret vs best fixed type->option policy %.2f "
	       "(%.5f/prompt)  vs per-prompt oracle %.2f\n", what, r->quality,
	       fmt_cost(b, sizeof(b), r->cost), 100 * dear_calls(e, &p),
	       100 * r->share[e->best],
	       r->regret_policy, r->regret_policy / (double)e->n_test,
	       r->regret_oracle);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "train", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 's' },
		{ "target", required_argument, NULL, 'q' },
		{ "lambda", required_argument, NULL, 'l' },
		{ "curve", required_argument, NULL, 'c' },
		{ "prior", required_argument, NULL, 'p' },
		{ "flat-cost", no_argument, NULL, 'f' },
		{ "no-cascades", no_argument, NULL, 'n' },
		{ "no-route", no_argument, NULL, 'r' },
		{ "no-cv", no_argument, NULL, 'v' },
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const double levels[] = { 0.95, 0.99, 1.0 };
	enum { M_PLAN, M_TYPE, M_RANDOM, M_NAIVE, M_ORACLE, M_N };
	static const char *const mname[M_N] = {
		"planner", "by-type", "random", "naive-agree", "oracle",
	};
	double train = 0.5, target = 0.95, lambda = -1, prior = 2;
	unsigned long long seed = 1;
	const char *curve = NULL, *key = NULL;
	regex_t key_re;
	bool lambda_given;
	struct table t = { 0 };
	struct eval e = { .t = &t, .cv = true };
	struct point *pl = NULL, *ty = NULL, *orc = NULL;
	struct point single[MAX_MODELS], rnd[2], orc_pt, naive_pts[4];
	struct curve cv[M_N] = { { 0 } }, sg = { 0 };
	size_t dropped = 0, n_train = 0, n_naive = 0, text_n = 0, top;
	struct online_result on[4];
	double lo, hi, qb, cb, qt, dq, dq_se;
	int opt, rc = 1, lambda_i = -1;
	char b1[64], b2[64], b3[64];
	FILE *in;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		bool ok = true;

		switch (opt) {
		case 't': ok = arg_double("train", optarg, 0, true, 1, true,
					  &train); break;
		case 's': ok = arg_seed(optarg, &seed); break;
		case 'q': ok = arg_double("target", optarg, 0, true, 1, false,
					  &target); break;
		case 'l': ok = arg_double("lambda", optarg, 0, false,
					  INFINITY, true, &lambda); break;
		case 'c': curve = optarg; break;
		case 'p': ok = arg_double("prior", optarg, 0, true, INFINITY,
					  true, &prior); break;
		case 'f': e.flat_cost = true; break;
		case 'n': e.no_cascades = true; break;
		case 'r': e.no_route = true; break;
		case 'v': e.cv = false; break;
		case 'k': key = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (!ok)
			return 2;
	}
	e.prior = prior;
	e.seed = seed;
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	if (key && !arg_key(key, &key_re))
		return 2;
	if (curve && !curve_writable(curve)) {
		rc = 1;
		goto out;
	}
	t.key = key ? &key_re : NULL;
	in = strcmp(argv[optind], "-") ? fopen(argv[optind], "r") : stdin;
	if (!in) {
		perror(argv[optind]);
		rc = 1;
		goto out;
	}
	rc = table_load(&t, in, argv[optind]);
	if (in != stdin)
		fclose(in);
	if (rc < 0) {
		if (rc != -EINVAL)
			fprintf(stderr, "%s: %s\n", argv[optind],
				strerror(-rc));
		rc = 1;
		goto out;
	}
	rc = 1;
	e.n_models = t.models.n;
	if (e.n_models < 2) {
		fprintf(stderr, "%s: needs at least two models (found %zu)\n",
			argv[optind], e.n_models);
		goto out;
	}
	e.complete = e.n_models == 64 ? ~0ULL : (1ULL << e.n_models) - 1;
	e.test = malloc(t.n * sizeof(*e.test));
	if (!e.test)
		goto out;
	split_prompts(&e, train, seed, &n_train, &dropped);
	if (!e.n_test || !n_train) {
		fprintf(stderr, "%s: an empty split (%zu train, %zu test, "
			"%zu prompts dropped as incomplete)\n", argv[optind],
			n_train, e.n_test, dropped);
		if (dropped)
			explain_drop(&t, e.n_models);
		goto out;
	}
	for (size_t i = 0; i < t.n; i++)
		text_n += t.p[i].have == e.complete && t.p[i].text;
	if (!text_n)
		e.no_route = true;
	singles(&e, single);
	if (make_options(&e) < 0 || learn_types(&e) < 0 || expect(&e) < 0)
		goto out;
	pl = malloc(N_LAMBDA * sizeof(*pl));
	ty = malloc(N_LAMBDA * sizeof(*ty));
	orc = malloc(N_LAMBDA * sizeof(*orc));
	if (!pl || !ty || !orc)
		goto out;
	for (int i = 0; i < N_LAMBDA; i++) {
		planner_point(&e, e.route_q, e.route_c, lambda_at(&e, i),
			      &pl[i]);
		planner_point(&e, e.type_q, e.type_c, lambda_at(&e, i),
			      &ty[i]);
		oracle_point(&e, lambda_at(&e, i), &orc[i]);
	}
	oracle_point(&e, 0, &orc_pt);
	qb = single[e.best].quality;
	cb = single[e.best].cost;
	qt = target * qb;
	/* The online mode runs where the offline planner first meets the target. */
	for (int i = N_LAMBDA - 1; i >= 0 && lambda_i < 0; i--)
		if (pl[i].quality + 1e-12 >= qt)
			lambda_i = i;
	lambda_given = lambda >= 0;
	if (lambda < 0)
		lambda = lambda_i >= 0 ? lambda_at(&e, lambda_i) : 0;
	rnd[0] = single[e.cheapest];
	rnd[1] = single[e.best];
	if (e.naive.name) {
		/* The naive cascade, mixed at will with its own models. */
		option_point(&e, &e.naive, &naive_pts[0]);
		for (int k = 0; k < 3; k++)
			naive_pts[k + 1] = single[e.naive.m[k]];
		n_naive = 4;
	}
	if (curve_hull(&cv[M_PLAN], pl, N_LAMBDA) < 0 ||
	    curve_hull(&cv[M_TYPE], ty, N_LAMBDA) < 0 ||
	    curve_hull(&cv[M_RANDOM], rnd, 2) < 0 ||
	    curve_hull(&cv[M_NAIVE], naive_pts, n_naive ? n_naive : 1) < 0 ||
	    curve_hull(&cv[M_ORACLE], orc, N_LAMBDA) < 0 ||
	    curve_hull(&sg, single, e.n_models) < 0)
		goto out;
	if (online(&e, lambda, true, !e.no_route, seed, &on[0]) < 0 ||
	    online(&e, lambda, false, !e.no_route, seed, &on[1]) < 0)
		goto out;
	lo = INFINITY;
	hi = 0;
	for (size_t m = 0; m < e.n_models; m++) {
		lo = fmin(lo, e.single_c[m]);
		hi = fmax(hi, e.single_c[m]);
	}

	printf("table %s: %zu prompts (%zu incomplete dropped), %zu models, "
	       "%zu task types\n", argv[optind], t.n - dropped, dropped,
	       e.n_models, t.types.n);
	if (t.has_split)
		printf("split: %zu train / %zu test (the split column); costs "
		       "are USD per prompt on the test split\n", n_train,
		       e.n_test);
	else
		printf("split: %zu train / %zu test (seed %llu, a hash of the "
		       "prompt id); costs are USD per prompt on the test "
		       "split\n", n_train, e.n_test, seed);
	if (e.no_route)
		printf("per-prompt signal: off (%s)\n", text_n ?
		       "--no-route" : "no prompt text");
	else
		printf("per-prompt signal: plan_route over the prompt text of "
		       "%zu prompts (hashed n-gram TF-IDF; kNN k=%d weight %.2f"
		       " + logistic and matrix factorisation, MF share %.2f, "
		       "strength %.2f; %s)\n", text_n, e.cfg.k,
		       e.cfg.knn_weight, e.cfg.mf_weight, e.cfg.strength,
		       e.cv ? "k, weights and strength by 3-fold "
			      "cross-validation on the training split" :
			      "defaults");
	if (e.flat_cost && t.types.n == 1 && e.no_route)
		printf("note: --flat-cost changes nothing here: one task type "
		       "and no per-prompt costs\n");
	if (key)
		key_note(&e, key);
	missing_note(&e, true);
	if (t.has_answer && !key)
		whole_note(&e);
	missing_note(&e, false);
	printf("planner options: %zu single models, %zu cascades judged by "
	       "the check column, %zu agreement cascades, %zu votes; "
	       "%zu of the agreement cascades three-stage with a mid model "
	       "from outside the pool\n\n",
	       e.n_models, e.n_cascade, e.n_agree, e.n_vote, e.n_deep);
	for (size_t m = 0; m < e.n_models; m++) {
		printf("single %s%s", t.models.names[m],
		       (int)m == e.best && (int)m == e.cheapest ?
		       " (best and cheapest)" : (int)m == e.best ? " (best)" :
		       (int)m == e.cheapest ? " (cheapest)" : "");
		print_point("", &e, &single[m]);
	}
	print_point("oracle (per prompt the best answer, the cheapest of "
		    "equals)", &e, &orc_pt);
	if (n_naive) {
		printf("naive agreement cascade %s", e.naive.name);
		print_point("", &e, &naive_pts[0]);
	} else {
		printf("naive agreement cascade: n/a (needs recorded answers "
		       "of two models cheaper than the best)\n");
	}
	print_point("planner, lambda 0 (highest expected quality)", &e, &pl[0]);
	top = max_quality(pl, N_LAMBDA);
	print_point("planner, highest quality on its curve", &e, &pl[top]);
	paired_gap(&e, e.route_q, e.route_c, lambda_at(&e, (int)top), &dq,
		   &dq_se);
	printf("  less the best single model's, per test prompt: %+.4f, "
	       "standard error ", dq);
	if (e.n_test > 1)
		printf("%.4f (paired)\n", dq_se);
	else
		printf("n/a (one test prompt)\n");
	print_point("by-type, highest quality on its curve", &e,
		    &ty[max_quality(ty, N_LAMBDA)]);
	if (lambda_i >= 0)
		print_point("planner at target (one lambda)", &e, &pl[lambda_i]);

	printf("\ntarget: %.0f%% of best single quality = %.4f\n",
	       100 * target, qt);
	printf("calls needed for target (calls per prompt to models other "
	       "than the cheapest): by-type %s  planner %s  random %s  "
	       "oracle %s\n",
	       fmt_pct(b1, sizeof(b1), calls_for(&e, ty, N_LAMBDA, qt), 1),
	       fmt_pct(b2, sizeof(b2), calls_for(&e, pl, N_LAMBDA, qt), 1),
	       fmt_pct(b3, sizeof(b3), calls_for(&e, rnd, 2, qt), 1),
	       fmt_pct((char[64]){ 0 }, 64, calls_for(&e, orc, N_LAMBDA, qt),
		       1));
	printf("cost to reach a share of the best single model's quality "
	       "(%.4f at %s), as a share of its cost:\n", qb,
	       fmt_cost(b1, sizeof(b1), cb));
	for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
		printf("  %3.0f%%:", 100 * levels[l]);
		for (int k = 0; k < M_N; k++) {
			double c;

			if (k == M_NAIVE && !n_naive)
				continue;
			c = hull_cost_for(cv[k].pt, cv[k].h, cv[k].k,
					  levels[l] * qb);
			printf("  %s %s", mname[k],
			       fmt_pct(b2, sizeof(b2), c, cb));
		}
		printf("\n");
	}
	printf("AIQ over cost [%s, %s]:", fmt_cost(b1, sizeof(b1), lo),
	       fmt_cost(b2, sizeof(b2), hi));
	for (int k = 0; k < M_N; k++) {
		if (k == M_ORACLE)
			printf("  singles %.4f", aiq(sg.pt, sg.h, sg.k, lo, hi));
		if (k != M_NAIVE || n_naive)
			printf("  %s %.4f", mname[k],
			       aiq(cv[k].pt, cv[k].h, cv[k].k, lo, hi));
	}
	printf("\n");
	{
		double qp = hull_at(cv[M_PLAN].pt, cv[M_PLAN].h, cv[M_PLAN].k,
				    cb);
		double gap = orc_pt.quality - qb;

		if (gap > 0 && qp < qb)
			/* Not "-x %": the planner is below the best model. */
			printf("best-single -> oracle gap closed at best-single "
			       "cost: none (planner %.4f, below the best single "
			       "model's %.4f; oracle %.4f)\n", qp, qb,
			       orc_pt.quality);
		else if (gap > 0)
			printf("best-single -> oracle gap closed at best-single "
			       "cost: %.1f%% (planner %.4f, oracle %.4f)\n",
			       100 * (qp - qb) / gap, qp, orc_pt.quality);
		else
			printf("best-single -> oracle gap: none (the oracle "
			       "is no better than the best single model)\n");
	}
	printf("\nonline (lambda %.6g%s, Thompson sampling, only the chosen "
	       "outcome revealed%s):\n", lambda, lambda_given ? "" :
	       lambda_i >= 0 ? ", the planner's at the target" :
	       ", since the planner never meets the target: highest quality",
	       e.no_route ? "" : ", per-prompt signal learned online");
	print_online("warm start", &e, &on[0]);
	print_online("cold start", &e, &on[1]);
	if (curve && write_curves(curve, &e, pl, ty, orc) < 0)
		goto out;
	rc = 0;
out:
	free(pl);
	free(ty);
	free(orc);
	for (int k = 0; k < M_N; k++)
		curve_release(&cv[k]);
	curve_release(&sg);
	free(e.test);
	for (size_t k = 0; k < e.n_opt; k++)
		free(e.opt[k].name);
	free(e.opt);
	free(e.naive.name);
	free(e.est_q);
	free(e.est_c);
	free(e.type_q);
	free(e.type_c);
	free(e.route_q);
	free(e.route_c);
	free(e.got_q);
	free(e.got_c);
	free(e.got_l);
	free(e.got_calls);
	plan_route_free(e.route);
	table_release(&t);
	if (key)
		regfree(&key_re);
	return rc;
}
