/*
 * llmfs-route-eval: replays an outcome table (docs/paths.md) to judge the
 * learned planner against the best single model, the cheapest model, a
 * random mix and the oracle.
 *
 * Offline mode: the planner learns plan_stats posteriors from the training
 * split, then for every test prompt picks the option with the best
 * plan_utility() of its posterior mean quality and mean cost for that task
 * type.  Options are the single models and, when the table has a `check`
 * column, cascades a -> b: a's answer stands when the check accepted it,
 * else b is called too.  Sweeping lambda traces its quality-cost curve.  Online mode: the
 * test prompts arrive one by one, the planner Thompson-samples each
 * model's quality, only the chosen model's outcome is revealed and
 * learned, and regret is measured against the best fixed task type ->
 * model policy in hindsight and against the per-prompt oracle.
 *
 * Everything is computed from the table; no figure is built in.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/plan_score.h"
#include "scheduler/plan_stats.h"
#include "scheduler/plan_util.h"

#define MAX_MODELS 64
#define TIE_EPS 1e-12

struct intern {
	char **names;
	size_t n, cap;
	size_t *slots;  /* open addressing, index + 1, 0 = empty */
	size_t n_slots;
};

struct prompt {
	char *id;
	int type;
	double q[MAX_MODELS];
	double c[MAX_MODELS];
	double l[MAX_MODELS];
	signed char chk[MAX_MODELS]; /* checker verdict: 1, 0, -1 unknown */
	uint64_t have;   /* bit per model */
	bool train;
};

struct table {
	struct intern models, types, ids;
	struct prompt *p;
	size_t n, cap;
	bool has_latency;
};

static uint64_t fnv(const char *s, uint64_t h)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int intern_grow(struct intern *t)
{
	size_t ns = t->n_slots ? t->n_slots * 2 : 1024;
	size_t *slots = calloc(ns, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t h = fnv(t->names[i], 1469598103934665603ULL) % ns;

		while (slots[h])
			h = (h + 1) % ns;
		slots[h] = i + 1;
	}
	free(t->slots);
	t->slots = slots;
	t->n_slots = ns;
	return 0;
}

/* Returns the index of s, adding it when add is set; -ENOENT otherwise. */
static long intern_get(struct intern *t, const char *s, bool add)
{
	size_t h;

	if ((t->n + 1) * 2 > t->n_slots && intern_grow(t) < 0)
		return -ENOMEM;
	h = fnv(s, 1469598103934665603ULL) % t->n_slots;
	while (t->slots[h]) {
		if (!strcmp(t->names[t->slots[h] - 1], s))
			return (long)t->slots[h] - 1;
		h = (h + 1) % t->n_slots;
	}
	if (!add)
		return -ENOENT;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **v = realloc(t->names, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->names = v;
		t->cap = cap;
	}
	t->names[t->n] = strdup(s);
	if (!t->names[t->n])
		return -ENOMEM;
	t->slots[h] = ++t->n;
	return (long)t->n - 1;
}

static void intern_release(struct intern *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->names[i]);
	free(t->names);
	free(t->slots);
}

static void table_release(struct table *t)
{
	intern_release(&t->models);
	intern_release(&t->types);
	intern_release(&t->ids);
	free(t->p);
}

static int split_tabs(char *line, char **f, int max)
{
	int n = 0;

	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == '\t') {
			*p = '\0';
			f[n++] = p + 1;
		}
	return n;
}

static bool parse_num(const char *s, double *ret, bool allow_unknown)
{
	char *end;

	if (allow_unknown && (!*s || !strcmp(s, "-"))) {
		*ret = -1;
		return true;
	}
	errno = 0;
	*ret = strtod(s, &end);
	return !errno && end != s && !*end && isfinite(*ret);
}

/* Reads the table; on a malformed line reports it and returns -EINVAL. */
static int table_load(struct table *t, FILE *in, const char *name)
{
	enum { C_ID, C_TYPE, C_MODEL, C_Q, C_COST, C_LAT, C_CHK, C_N };
	static const char *const cols[C_N] = {
		"prompt_id", "task_type", "model", "quality", "cost_usd",
		"latency_s", "check",
	};
	int col[C_N], nf, rc = 0;
	char *line = NULL, *f[64];
	size_t cap = 0, lineno = 1;
	ssize_t len;

	if ((len = getline(&line, &cap, in)) <= 0) {
		fprintf(stderr, "%s: empty table\n", name);
		rc = -EINVAL;
		goto out;
	}
	line[strcspn(line, "\r\n")] = '\0';
	nf = split_tabs(line, f, 64);
	for (int c = 0; c < C_N; c++) {
		col[c] = -1;
		for (int i = 0; i < nf; i++)
			if (!strcmp(f[i], cols[c]))
				col[c] = i;
		if (col[c] < 0 && c <= C_Q) {
			fprintf(stderr, "%s: header lacks column %s\n", name,
				cols[c]);
			rc = -EINVAL;
			goto out;
		}
	}
	while ((len = getline(&line, &cap, in)) > 0) {
		double q, cost = 0, lat = -1, chk = -1;
		long m, ty, id;
		struct prompt *p;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (!*line)
			continue;
		nf = split_tabs(line, f, 64);
		for (int c = 0; c < C_N; c++)
			if (col[c] >= nf) {
				fprintf(stderr, "%s:%zu: too few columns\n",
					name, lineno);
				rc = -EINVAL;
				goto out;
			}
		if (!parse_num(f[col[C_Q]], &q, false) || q < 0 || q > 1 ||
		    (col[C_COST] >= 0 &&
		     (!parse_num(f[col[C_COST]], &cost, false) || cost < 0)) ||
		    (col[C_LAT] >= 0 && !parse_num(f[col[C_LAT]], &lat, true)) ||
		    (col[C_CHK] >= 0 && (!parse_num(f[col[C_CHK]], &chk, true) ||
					 (chk != 0 && chk != 1 && chk != -1)))) {
			fprintf(stderr, "%s:%zu: quality must be in [0,1], "
				"cost >= 0, latency a number or -, check 0, 1 "
				"or -\n", name, lineno);
			rc = -EINVAL;
			goto out;
		}
		m = intern_get(&t->models, f[col[C_MODEL]], true);
		ty = intern_get(&t->types, f[col[C_TYPE]], true);
		id = intern_get(&t->ids, f[col[C_ID]], true);
		if (m < 0 || ty < 0 || id < 0) {
			rc = -ENOMEM;
			goto out;
		}
		if (m >= MAX_MODELS) {
			fprintf(stderr, "%s: more than %d models\n", name,
				MAX_MODELS);
			rc = -E2BIG;
			goto out;
		}
		if ((size_t)id == t->n) {
			if (t->n == t->cap) {
				size_t nc = t->cap ? t->cap * 2 : 4096;
				struct prompt *v = realloc(t->p,
							   nc * sizeof(*v));

				if (!v) {
					rc = -ENOMEM;
					goto out;
				}
				t->p = v;
				t->cap = nc;
			}
			memset(&t->p[t->n], 0, sizeof(t->p[t->n]));
			t->p[t->n].id = t->ids.names[id];
			t->p[t->n].type = (int)ty;
			t->n++;
		}
		p = &t->p[id];
		if (p->have & (1ULL << m)) {
			fprintf(stderr, "%s:%zu: duplicate row for %s × %s\n",
				name, lineno, f[col[C_ID]], f[col[C_MODEL]]);
			rc = -EINVAL;
			goto out;
		}
		if (p->type != ty) {
			fprintf(stderr, "%s:%zu: prompt %s has two task "
				"types\n", name, lineno, f[col[C_ID]]);
			rc = -EINVAL;
			goto out;
		}
		p->have |= 1ULL << m;
		p->q[m] = q;
		p->c[m] = cost;
		p->l[m] = lat;
		p->chk[m] = (signed char)chk;
		if (lat >= 0)
			t->has_latency = true;
	}
out:
	free(line);
	return rc;
}

/* A point of a quality-cost curve, with each model's share of calls. */
struct point {
	double cost, quality, latency;
	double share[MAX_MODELS];
};

/* What the planner may choose for a prompt: model a, or cascade a -> b. */
struct route_opt {
	int a, b;           /* b < 0: a single model */
	char *name;         /* as plan_stats knows it: "a" or "a>b" */
};

static bool escalates(const struct prompt *p, const struct route_opt *o)
{
	return o->b >= 0 && p->chk[o->a] != 1;
}

static double opt_q(const struct prompt *p, const struct route_opt *o)
{
	return escalates(p, o) ? p->q[o->b] : p->q[o->a];
}

static double opt_c(const struct prompt *p, const struct route_opt *o)
{
	return p->c[o->a] + (escalates(p, o) ? p->c[o->b] : 0);
}

static double opt_l(const struct prompt *p, const struct route_opt *o)
{
	if (p->l[o->a] < 0 || (escalates(p, o) && p->l[o->b] < 0))
		return -1;
	return p->l[o->a] + (escalates(p, o) ? p->l[o->b] : 0);
}

static void opt_calls(const struct prompt *p, const struct route_opt *o,
		      double *share)
{
	share[o->a] += 1;
	if (escalates(p, o))
		share[o->b] += 1;
}

struct eval {
	struct table *t;
	size_t *test;       /* indices of complete test prompts */
	size_t n_test;
	size_t n_models;
	double prior;       /* plan_stats prior strength */
	bool flat_cost;     /* price each model by its mean over all types */
	int best, cheapest; /* single models on the test split */
	double single_q[MAX_MODELS], single_c[MAX_MODELS];
	bool no_cascades;
	uint64_t complete;  /* the have mask of a prompt every model answered */
	struct route_opt *opt; /* the single models first, then cascades */
	size_t n_opt;
	/* Learned from training: per option × type mean quality and cost. */
	double *est_q, *est_c; /* [type * n_opt + option] */
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

	if (hi <= lo)
		return k ? pt[h[k - 1]].quality : 0;
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

/* The share of calls to model m needed to reach quality q, mixing hull points. */
static double share_for(struct point *pt, size_t n, int m, double q)
{
	struct point *tmp = malloc(n * sizeof(*tmp));
	size_t *h = malloc(n * sizeof(*h)), k;
	double r = -1;

	if (!tmp || !h)
		goto out;
	/* Reuse the cost hull machinery with the share of m as the cost. */
	for (size_t i = 0; i < n; i++) {
		tmp[i] = pt[i];
		tmp[i].cost = pt[i].share[m];
	}
	k = hull(tmp, n, h);
	r = hull_cost_for(tmp, h, k, q);
out:
	free(tmp);
	free(h);
	return r;
}

/* The planner's operating point for one lambda. */
static void planner_point(const struct eval *e, double lambda,
			  struct point *pt)
{
	const size_t no = e->n_opt;

	memset(pt, 0, sizeof(*pt));
	for (size_t i = 0; i < e->n_test; i++) {
		const struct prompt *p = &e->t->p[e->test[i]];
		const double *q = &e->est_q[p->type * no];
		const double *c = &e->est_c[p->type * no];
		const struct route_opt *o;
		size_t best = 0;

		for (size_t k = 1; k < no; k++)
			if (plan_better(q[k], c[k], q[best], c[best], lambda,
					TIE_EPS))
				best = k;
		o = &e->opt[best];
		pt->quality += opt_q(p, o);
		pt->cost += opt_c(p, o);
		pt->latency += fmax(0, opt_l(p, o));
		opt_calls(p, o, pt->share);
	}
	pt->quality /= (double)e->n_test;
	pt->cost /= (double)e->n_test;
	pt->latency /= (double)e->n_test;
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

static void sweep(const struct eval *e, bool oracle, struct point *pts)
{
	for (int i = 0; i < N_LAMBDA; i++) {
		if (oracle)
			oracle_point(e, lambda_at(e, i), &pts[i]);
		else
			planner_point(e, lambda_at(e, i), &pts[i]);
	}
}

struct online_result {
	double quality, cost;
	double regret_policy, regret_oracle;
	double share[MAX_MODELS];
};

/*
 * Online: the test prompts in a seeded shuffled order; Thompson sampling
 * over the posterior; only the chosen outcome is learned.  warm: start
 * from the training statistics; cold: start from nothing.
 */
static int online(const struct eval *e, double lambda, bool warm,
		  uint64_t seed, struct online_result *r)
{
	const size_t no = e->n_opt, nt = e->t->types.n;
	struct plan_stats *st = NULL;
	struct plan_rng rng;
	size_t *order = NULL;
	double *type_util = NULL, oracle_u = 0, got_u = 0, policy_u = 0;
	double *opt_cost = NULL, *opt_n = NULL, *sq = NULL, *sc = NULL;
	bool *type_seen = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	plan_rng_seed(&rng, seed ^ 0x6f6e6c696e65ULL);
	rc = plan_stats_open(NULL, e->prior, &st);
	if (rc < 0)
		goto out;
	order = malloc(e->n_test * sizeof(*order));
	type_util = calloc(nt * no, sizeof(*type_util));
	type_seen = calloc(nt, sizeof(*type_seen));
	opt_cost = calloc(no, sizeof(*opt_cost));
	opt_n = calloc(no, sizeof(*opt_n));
	sq = calloc(no, sizeof(*sq));
	sc = calloc(no, sizeof(*sc));
	if (!order || !type_util || !type_seen || !opt_cost || !opt_n ||
	    !sq || !sc) {
		rc = -ENOMEM;
		goto out;
	}
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

		/* The per-prompt oracle picks among the single models. */
		for (size_t m = 0; m < e->n_models; m++)
			best_u = fmax(best_u, plan_utility(p->q[m], p->c[m],
							   lambda));
		for (size_t k = 0; k < no; k++) {
			struct plan_estimate est;

			plan_stats_estimate(st, e->opt[k].name, type, &est);
			sq[k] = plan_estimate_sample(&est, &rng);
			sc[k] = est.cost >= 0 ? est.cost : opt_cost[k];
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
out:
	plan_stats_free(st);
	free(order);
	free(type_util);
	free(type_seen);
	free(opt_cost);
	free(opt_n);
	free(sq);
	free(sc);
	return rc;
}

/* Single models, then cascades a -> b (a cheaper) where a is always judged. */
static int make_options(struct eval *e)
{
	const size_t nm = e->n_models;
	size_t cap = nm + nm * nm;

	e->opt = calloc(cap, sizeof(*e->opt));
	if (!e->opt)
		return -ENOMEM;
	for (size_t m = 0; m < nm; m++) {
		e->opt[e->n_opt].a = (int)m;
		e->opt[e->n_opt].b = -1;
		e->opt[e->n_opt].name = strdup(e->t->models.names[m]);
		if (!e->opt[e->n_opt++].name)
			return -ENOMEM;
	}
	for (size_t a = 0; a < nm && !e->no_cascades; a++) {
		bool judged = true;

		for (size_t i = 0; i < e->t->n && judged; i++)
			if (e->t->p[i].have == e->complete)
				judged = e->t->p[i].chk[a] >= 0;
		for (size_t b = 0; judged && b < nm; b++) {
			struct route_opt *o = &e->opt[e->n_opt];

			if (e->single_c[b] <= e->single_c[a])
				continue;
			o->a = (int)a;
			o->b = (int)b;
			if (asprintf(&o->name, "%s>%s", e->t->models.names[a],
				     e->t->models.names[b]) < 0)
				return -ENOMEM;
			e->n_opt++;
		}
	}
	return 0;
}

static int learn(struct eval *e)
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
				/* An unseen type: the option's pooled mean. */
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

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmfs-route-eval [options] TABLE.tsv\n"
		"  --train FRACTION   share of prompts used for learning "
		"(default 0.5)\n"
		"  --seed N           split and sampling seed (default 1)\n"
		"  --target FRACTION  quality target as a share of the best "
		"single model's (default 0.95)\n"
		"  --lambda L         utility price for the online mode "
		"(default: the offline planner's lambda at the target)\n"
		"  --prior K          prior strength in pseudo-observations "
		"(default 2, see plan_stats.h)\n"
		"  --flat-cost        price each option by its mean cost over "
		"all task types\n"
		"  --no-cascades      single models only, even with a check "
		"column\n"
		"  --curve FILE       write the planner's and the oracle's "
		"curves as TSV\n");
}

static void print_point(const char *what, const struct eval *e,
			const struct point *p)
{
	printf("%-34s quality %.4f  cost/prompt $%.6f  calls:", what,
	       p->quality, p->cost);
	for (size_t m = 0; m < e->n_models; m++)
		if (p->share[m] > 0)
			printf(" %s %.1f%%", e->t->models.names[m],
			       100 * p->share[m]);
	printf("\n");
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
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double train = 0.5, target = 0.95, lambda = -1;
	unsigned long long seed = 1;
	const char *curve = NULL;
	struct table t = { 0 };
	struct eval e = { .t = &t };
	struct point *pl = NULL, *orc = NULL, single[MAX_MODELS];
	struct point *plh = NULL, *orh = NULL, sgh[MAX_MODELS];
	struct point rnd[2], orc_pt;
	size_t *hp = NULL, *ho = NULL, kp, ko, hr[2], kr, dropped = 0;
	size_t hs[MAX_MODELS], ks, n_train = 0;
	struct online_result on_w, on_c;
	double lo, hi, qb, cb, qt, c_planner, c_oracle;
	double s_planner, s_random, s_oracle;
	int opt, rc = 1, lambda_i = -1;
	FILE *in;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 't': train = atof(optarg); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'q': target = atof(optarg); break;
		case 'l': lambda = atof(optarg); break;
		case 'c': curve = optarg; break;
		case 'p': e.prior = atof(optarg); break;
		case 'f': e.flat_cost = true; break;
		case 'n': e.no_cascades = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc || train <= 0 || train >= 1 || target <= 0) {
		usage(stderr);
		return 2;
	}
	in = strcmp(argv[optind], "-") ? fopen(argv[optind], "r") : stdin;
	if (!in) {
		perror(argv[optind]);
		return 1;
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
		fprintf(stderr, "%s: needs at least two models\n",
			argv[optind]);
		goto out;
	}
	e.complete = e.n_models == 64 ? ~0ULL : (1ULL << e.n_models) - 1;
	e.test = malloc(t.n * sizeof(*e.test));
	if (!e.test)
		goto out;
	for (size_t i = 0; i < t.n; i++) {
		struct prompt *p = &t.p[i];
		uint64_t h = fnv(p->id, 1469598103934665603ULL) ^
			     (seed * 0x9e3779b97f4a7c15ULL);

		/* FNV alone is poorly mixed: ids differing in a digit would
		 * land on the same side.  The splitmix64 finaliser fixes it. */
		h ^= h >> 30;
		h *= 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 27;
		h *= 0x94d049bb133111ebULL;
		h ^= h >> 31;
		p->train = (double)(h >> 11) * 0x1.0p-53 < train;
		if (p->have != e.complete) {
			/* Only complete prompts can be compared fairly. */
			dropped++;
			p->train = false;
			continue;
		}
		if (p->train)
			n_train++;
		else
			e.test[e.n_test++] = i;
	}
	if (!e.n_test || !n_train) {
		fprintf(stderr, "%s: an empty split (%zu train, %zu test)\n",
			argv[optind], n_train, e.n_test);
		goto out;
	}
	memset(single, 0, sizeof(single));
	for (size_t m = 0; m < e.n_models; m++) {
		for (size_t i = 0; i < e.n_test; i++) {
			single[m].quality += t.p[e.test[i]].q[m];
			single[m].cost += t.p[e.test[i]].c[m];
		}
		single[m].quality /= (double)e.n_test;
		single[m].cost /= (double)e.n_test;
		single[m].share[m] = 1;
		e.single_q[m] = single[m].quality;
		e.single_c[m] = single[m].cost;
	}
	e.best = e.cheapest = 0;
	for (size_t m = 1; m < e.n_models; m++) {
		if (plan_better(single[m].quality, single[m].cost,
				single[e.best].quality, single[e.best].cost, 0,
				TIE_EPS))
			e.best = (int)m;
		if (single[m].cost < single[e.cheapest].cost ||
		    (single[m].cost == single[e.cheapest].cost &&
		     single[m].quality > single[e.cheapest].quality))
			e.cheapest = (int)m;
	}
	if (make_options(&e) < 0 || learn(&e) < 0)
		goto out;
	pl = malloc(N_LAMBDA * sizeof(*pl));
	orc = malloc(N_LAMBDA * sizeof(*orc));
	plh = malloc(N_LAMBDA * sizeof(*plh));
	orh = malloc(N_LAMBDA * sizeof(*orh));
	hp = malloc(N_LAMBDA * sizeof(*hp));
	ho = malloc(N_LAMBDA * sizeof(*ho));
	if (!pl || !orc || !plh || !orh || !hp || !ho)
		goto out;
	sweep(&e, false, pl);
	sweep(&e, true, orc);
	oracle_point(&e, 0, &orc_pt);
	qb = single[e.best].quality;
	cb = single[e.best].cost;
	qt = target * qb;
	/* The online mode runs where the offline planner first meets the target. */
	for (int i = N_LAMBDA - 1; i >= 0 && lambda_i < 0; i--)
		if (pl[i].quality + 1e-12 >= qt)
			lambda_i = i;
	if (lambda < 0)
		lambda = lambda_i >= 0 ? lambda_at(&e, lambda_i) : 0;

	/* Shares of the best single model, before the hulls reorder points. */
	s_planner = share_for(pl, N_LAMBDA, e.best, qt);
	s_oracle = share_for(orc, N_LAMBDA, e.best, qt);
	rnd[0] = single[e.cheapest];
	rnd[1] = single[e.best];
	s_random = share_for(rnd, 2, e.best, qt);
	if (curve) {
		FILE *cf = fopen(curve, "w");

		if (!cf) {
			perror(curve);
			goto out;
		}
		fprintf(cf, "curve\tlambda\tcost_usd\tquality\tbest_share\n");
		for (int i = 0; i < N_LAMBDA; i++)
			fprintf(cf, "planner\t%g\t%.8f\t%.6f\t%.6f\n",
				lambda_at(&e, i), pl[i].cost, pl[i].quality,
				pl[i].share[e.best]);
		for (int i = 0; i < N_LAMBDA; i++)
			fprintf(cf, "oracle\t%g\t%.8f\t%.6f\t%.6f\n",
				lambda_at(&e, i), orc[i].cost, orc[i].quality,
				orc[i].share[e.best]);
		fclose(cf);
	}
	if (online(&e, lambda, true, seed, &on_w) < 0 ||
	    online(&e, lambda, false, seed, &on_c) < 0)
		goto out;

	memcpy(plh, pl, N_LAMBDA * sizeof(*pl));
	memcpy(orh, orc, N_LAMBDA * sizeof(*orc));
	memcpy(sgh, single, sizeof(single));
	kp = hull(plh, N_LAMBDA, hp);
	ko = hull(orh, N_LAMBDA, ho);
	kr = hull(rnd, 2, hr);
	ks = hull(sgh, e.n_models, hs);
	lo = INFINITY;
	hi = 0;
	for (size_t m = 0; m < e.n_models; m++) {
		lo = fmin(lo, e.single_c[m]);
		hi = fmax(hi, e.single_c[m]);
	}
	c_planner = hull_cost_for(plh, hp, kp, qb);
	c_oracle = hull_cost_for(orh, ho, ko, qb);

	printf("table %s: %zu prompts (%zu incomplete dropped), %zu models, "
	       "%zu task types\n", argv[optind], t.n - dropped, dropped,
	       e.n_models, t.types.n);
	printf("split: %zu train / %zu test (seed %llu); costs are USD per "
	       "prompt on the test split\n", n_train, e.n_test, seed);
	printf("planner options: %zu single models, %zu cascades judged by "
	       "the check column\n\n", e.n_models, e.n_opt - e.n_models);
	for (size_t m = 0; m < e.n_models; m++) {
		char what[128];

		snprintf(what, sizeof(what), "single %.24s%s",
			 t.models.names[m],
			 (int)m == e.best ? " (best)" :
			 (int)m == e.cheapest ? " (cheapest)" : "");
		print_point(what, &e, &single[m]);
	}
	print_point("oracle (cheapest correct)", &e, &orc_pt);
	print_point("planner, lambda 0 (max quality)", &e, &pl[0]);
	if (lambda_i >= 0) {
		struct point p;

		planner_point(&e, lambda_at(&e, lambda_i), &p);
		print_point("planner at target (one lambda)", &e, &p);
	}
	printf("\ntarget: %.0f%% of best single quality = %.4f\n",
	       100 * target, qt);
	printf("best-single calls needed for target: planner %.1f%%  "
	       "random %.1f%%  oracle %.1f%%\n", 100 * s_planner,
	       100 * s_random, 100 * s_oracle);
	printf("cost saving at best-single quality %.4f: planner ", qb);
	if (c_planner >= 0)
		printf("%.1f%%", 100 * (1 - c_planner / cb));
	else
		printf("not reached (max %.4f)", plh[hp[kp - 1]].quality);
	printf("  random 0.0%%  oracle %.1f%%\n",
	       c_oracle >= 0 ? 100 * (1 - c_oracle / cb) : 0.0);
	printf("AIQ over cost [$%.6f, $%.6f]: planner %.4f  random %.4f  "
	       "singles %.4f  oracle %.4f\n", lo, hi,
	       aiq(plh, hp, kp, lo, hi), aiq(rnd, hr, kr, lo, hi),
	       aiq(sgh, hs, ks, lo, hi), aiq(orh, ho, ko, lo, hi));
	{
		double qp = hull_at(plh, hp, kp, cb);
		double gap = orc_pt.quality - qb;

		printf("best-single -> oracle gap closed at best-single cost: "
		       "%.1f%% (planner %.4f, oracle %.4f)\n",
		       gap > 0 ? 100 * (qp - qb) / gap : 0.0, qp,
		       orc_pt.quality);
	}
	printf("\nonline (lambda %.6g, Thompson sampling, only the chosen "
	       "outcome revealed):\n", lambda);
	printf("  warm start: quality %.4f  cost/prompt $%.6f  best-single "
	       "calls %.1f%%  regret vs best fixed type->model policy %.2f "
	       "(%.5f/prompt)  vs per-prompt oracle %.2f\n", on_w.quality,
	       on_w.cost, 100 * on_w.share[e.best], on_w.regret_policy,
	       on_w.regret_policy / (double)e.n_test, on_w.regret_oracle);
	printf("  cold start: quality %.4f  cost/prompt $%.6f  best-single "
	       "calls %.1f%%  regret vs best fixed type->model policy %.2f "
	       "(%.5f/prompt)  vs per-prompt oracle %.2f\n", on_c.quality,
	       on_c.cost, 100 * on_c.share[e.best], on_c.regret_policy,
	       on_c.regret_policy / (double)e.n_test, on_c.regret_oracle);
	rc = 0;
out:
	free(pl);
	free(orc);
	free(plh);
	free(orh);
	free(hp);
	free(ho);
	free(e.test);
	for (size_t k = 0; k < e.n_opt; k++)
		free(e.opt[k].name);
	free(e.opt);
	free(e.est_q);
	free(e.est_c);
	table_release(&t);
	return rc;
}
