/* plan_cand: see plan_cand.h for the options, the scores and the choice. */
#include "plan_cand.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plan_route.h"
#include "plan_score.h"

#define MAX_FALLBACK 64
/* Members of agreement cascades come from this many cheapest eligible
 * models (llmfs-route-eval replays the same pool). */
#define AGREE_POOL 5
#define N_SWEEP 29

#define fail plan_errf

const char *plan_strategy_name(enum plan_strategy s)
{
	switch (s) {
	case PLAN_SINGLE: return "single";
	case PLAN_CASCADE: return "cascade";
	case PLAN_VOTE: return "vote";
	case PLAN_AGREE: return "agree";
	}
	return "?";
}

int plan_option_name(const struct plan_models *ms,
		     const struct plan_option *o, char *buf, size_t n)
{
	const int *m = o->models;
	int len;

	if (o->kind != PLAN_AGREE || (o->n_models != 3 && o->n_models != 4))
		return -EINVAL;
	if (o->n_models == 3)
		len = snprintf(buf, n, "agree(%s,%s)>%s", ms->v[m[0]].name,
			       ms->v[m[1]].name, ms->v[m[2]].name);
	else
		len = snprintf(buf, n, "agree%d(%s,%s,%s)>%s", o->need,
			       ms->v[m[0]].name, ms->v[m[1]].name,
			       ms->v[m[2]].name, ms->v[m[3]].name);
	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

int plan_agree_key(const struct plan_models *ms, const struct plan_option *o,
		   const char *what, char *buf, size_t n)
{
	const int *m = o->models;
	int len;

	if (o->kind != PLAN_AGREE || (o->n_models != 3 && o->n_models != 4))
		return -EINVAL;
	/* Whether the first two agree is theirs alone. */
	if (o->n_models == 3 || !strcmp(what, "pair"))
		len = snprintf(buf, n, "agree(%s,%s)#%s", ms->v[m[0]].name,
			       ms->v[m[1]].name, what);
	else
		len = snprintf(buf, n, "agree%d(%s,%s,%s)#%s", o->need,
			       ms->v[m[0]].name, ms->v[m[1]].name,
			       ms->v[m[2]].name, what);
	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

void plan_step_tokens(const struct plan_task *t, size_t step, double *ret_in,
		      double *ret_out)
{
	const struct plan_step *s = &t->steps[step];
	double in = ceil((double)strlen(s->prompt) / 4.0);

	/* A dependency's answer is spliced into the prompt. */
	for (size_t k = 0; k < s->n_deps; k++)
		in += t->steps[s->deps[k]].max_tokens / 2.0;
	*ret_in = in;
	*ret_out = s->max_tokens / 2.0;
}

/* What one model is expected to do on one step. */
struct est {
	int ok;
	double q, score, cost, latency;
	struct plan_estimate pe;
};

struct work {
	const struct plan_task *t;
	const struct plan_models *ms;
	struct plan_stats *stats;
	uid_t writer;            /* only models usable by it */
	struct est *e;           /* [step * n_models + model] */
	struct plan_option **opt; /* per step */
	size_t *n_opt;
};

/*
 * The posterior moved to the router's prediction for this prompt, with the
 * same strength (alpha + beta): Thompson draws and UCB then rank the
 * per-prompt mean (plan_route.h).  Without a router, or when it fails
 * (out of memory), the posterior stays as it is.
 */
static void route_step(struct work *w, size_t s, struct plan_route *route)
{
	const size_t nm = w->ms->n;
	const char **names = calloc(nm, sizeof(*names));
	double *prior = calloc(nm, sizeof(*prior));
	struct plan_route_pred *pr = calloc(nm, sizeof(*pr));
	size_t n = 0, *at = calloc(nm, sizeof(*at));

	if (!names || !prior || !pr || !at)
		goto out;
	for (size_t m = 0; m < nm; m++) {
		const struct est *e = &w->e[s * nm + m];

		if (!e->ok)
			continue;
		names[n] = w->ms->v[m].name;
		prior[n] = e->pe.quality;
		at[n++] = m;
	}
	if (plan_route_predict(route, w->t->steps[s].prompt, names, n, prior,
			       NULL, pr) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct plan_estimate *pe = &w->e[s * nm + at[i]].pe;
		double k = pe->alpha + pe->beta;

		pe->quality = pr[i].quality;
		pe->alpha = fmax(1e-3, pr[i].quality * k);
		pe->beta = fmax(1e-3, (1 - pr[i].quality) * k);
	}
out:
	free(names);
	free(prior);
	free(pr);
	free(at);
}

/* Mean and ranking quality of each eligible model on step s. */
static void score_step(struct work *w, size_t s,
		       const struct plan_score_opts *o, struct plan_rng *rng)
{
	if (o->route)
		route_step(w, s, o->route);
	for (size_t m = 0; m < w->ms->n; m++) {
		struct est *e = &w->e[s * w->ms->n + m];

		if (!e->ok)
			continue;
		e->q = e->pe.quality;
		switch (o->explore) {
		case PLAN_EXPLORE_THOMPSON:
			e->score = plan_estimate_sample(&e->pe, rng);
			break;
		case PLAN_EXPLORE_UCB:
			e->score = plan_estimate_ucb(&e->pe, o->ucb_c);
			break;
		case PLAN_EXPLORE_MEAN:
			e->score = e->pe.quality;
			break;
		}
	}
}

static int estimate_step(struct work *w, size_t s, struct plan_stats *stats,
			 const struct plan_score_opts *o, struct plan_rng *rng,
			 char **ret_err)
{
	const struct plan_step *st = &w->t->steps[s];
	double tin, tout;
	long pinned = -1;
	int n_ok = 0, n_foreign = 0;

	plan_step_tokens(w->t, s, &tin, &tout);
	if (st->model) {
		pinned = plan_models_find(w->ms, st->model);
		if (pinned < 0)
			return fail(ret_err, -ENOENT, "step %s: unknown model "
				    "%s", st->id, st->model);
		if (!plan_model_usable_by(&w->ms->v[pinned], w->writer))
			return fail(ret_err, -ENOENT, "step %s: model %s is "
				    "neither trusted nor uid %u's own",
				    st->id, st->model, (unsigned)w->writer);
	}
	for (size_t m = 0; m < w->ms->n; m++) {
		const struct plan_model *md = &w->ms->v[m];
		struct est *e = &w->e[s * w->ms->n + m];
		struct plan_estimate pe;

		if (pinned >= 0 ? (long)m != pinned :
		    !plan_model_serves(md, st->task_type))
			continue;
		/* Another user's card would receive this task's prompts. */
		if (!plan_model_usable_by(md, w->writer)) {
			n_foreign++;
			continue;
		}
		if (md->context > 0 && tin + tout > (double)md->context)
			continue;
		plan_stats_estimate(stats, md->name, st->task_type, &pe);
		e->ok = 1;
		e->pe = pe;
		e->cost = plan_model_cost(md, tin, tout);
		e->latency = pe.latency >= 0 ? pe.latency :
			     md->latency_s + tout / md->tokens_per_s;
		n_ok++;
	}
	if (n_ok)
		score_step(w, s, o, rng);
	if (!n_ok && n_foreign)
		return fail(ret_err, -ENOENT, "step %s: no model serves task "
			    "type %s (%d that do are neither trusted nor uid "
			    "%u's own)", st->id, st->task_type, n_foreign,
			    (unsigned)w->writer);
	if (!n_ok)
		return fail(ret_err, -ENOENT, "step %s: no model serves task "
			    "type %s%s", st->id, st->task_type,
			    st->model ? " within its context" : "");
	return 0;
}

static int add_option(struct work *w, size_t s, const struct plan_option *o)
{
	struct plan_option *v = realloc(w->opt[s],
					(w->n_opt[s] + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	w->opt[s] = v;
	v[w->n_opt[s]++] = *o;
	return 0;
}

/*
 * The pool of agreement members (AGREE_POOL, cheapest first, unfilled
 * places -1): the cheapest eligible models that no cheaper one beats in
 * mean quality, then, while places are left, the other cheapest.  With
 * many models of spread prices the plain cheapest are often models a
 * cheaper one outdoes, and the good cheap ones would never be asked.
 * *second: the second cheapest eligible model when it is not in the
 * pool, else -1; the pair of the two cheapest (the naive cascade's) is
 * offered all the same, since a worse model can still be the best one to
 * agree with (its right answers those of the cheapest, say).
 * llmfs-route-eval's agree_pool() is the same rule.
 */
static int agree_pool(const struct work *w, size_t s, int *pool,
		      int *second)
{
	const struct est *e = &w->e[s * w->ms->n];
	int *by_cost = malloc((w->ms->n + 1) * sizeof(*by_cost));
	bool *in = calloc(w->ms->n + 1, sizeof(*in));
	double top = -INFINITY;
	size_t n = 0;
	int k = 0;

	if (!by_cost || !in) {
		free(by_cost);
		free(in);
		return -ENOMEM;
	}
	/* Eligible models, cheapest first (lowest index on ties). */
	for (size_t m = 0; m < w->ms->n; m++) {
		size_t at = n++;

		if (!e[m].ok) {
			n--;
			continue;
		}
		for (; at > 0 && e[m].cost < e[by_cost[at - 1]].cost; at--)
			by_cost[at] = by_cost[at - 1];
		by_cost[at] = (int)m;
	}
	for (size_t i = 0; i < n && k < AGREE_POOL; i++) {
		if (e[by_cost[i]].q > top) {
			in[by_cost[i]] = true;
			k++;
		}
		top = fmax(top, e[by_cost[i]].q);
	}
	for (size_t i = 0; i < n && k < AGREE_POOL; i++)
		if (!in[by_cost[i]]) {
			in[by_cost[i]] = true;
			k++;
		}
	*second = n >= 2 && !in[by_cost[1]] ? by_cost[1] : -1;
	for (int j = 0; j < AGREE_POOL; j++)
		pool[j] = -1;
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (in[by_cost[i]])
			pool[k++] = by_cost[i];
	free(by_cost);
	free(in);
	return 0;
}

/* P(at least need of the n independent members right), p their
 * probabilities (n 2 or 3). */
static double at_least(const double *p, int n, int need)
{
	double all = 1, two = 0;

	for (int k = 0; k < n; k++)
		all *= p[k];
	if (need >= n)
		return all;
	/* n 3, need 2: exactly two right, plus all three. */
	for (int k = 0; k < 3; k++)
		two += (1 - p[k]) * p[(k + 1) % 3] * p[(k + 2) % 3];
	return two + all;
}

/* The outcomes recorded under key for step s's task type; false if none. */
static bool recorded(struct work *w, size_t s, const char *key,
		     struct plan_estimate *pe)
{
	return w->stats && plan_stats_estimate(w->stats, key,
					       w->t->steps[s].task_type,
					       pe) == 0 && pe->n > 0;
}

/* p, a formula's figure, as the prior of the N outcomes in pe (strength k
 * of plan_stats' prior): (k p + their sum) / (k + N). */
static double moved(double p, const struct plan_estimate *pe)
{
	double k = fmax(pe->alpha + pe->beta - pe->n, 0);

	return (k * p + pe->q_sum) / (k + pe->n);
}

/*
 * What feedback on the whole agreement cascade says (plan_cand.h): the
 * formula's quality and ranking value are the prior, N judged outcomes
 * of the option move them.
 */
static void agree_learned(struct work *w, size_t s, struct plan_option *o)
{
	struct plan_estimate pe;
	char name[512];

	if (plan_option_name(w->ms, o, name, sizeof(name)) == 0 &&
	    recorded(w, s, name, &pe)) {
		o->quality = moved(o->quality, &pe);
		o->score = moved(o->score, &pe);
	}
}

/*
 * The rate of an event of the members' runs (plan_agree_key()): p, the
 * independent members' formula, moved by the runs recorded.
 */
static double agree_rate(struct work *w, size_t s, const struct plan_option *o,
			 const char *what, double p)
{
	struct plan_estimate pe;
	char key[512];

	return plan_agree_key(w->ms, o, what, key, sizeof(key)) == 0 &&
	       recorded(w, s, key, &pe) ? moved(p, &pe) : p;
}

/* agree(v[0 .. n-1]; need -> d) for each d dearer than every member. */
static int agree_with(struct work *w, size_t s, const int *v, int n,
		      int need)
{
	const struct est *e = &w->e[s * w->ms->n];
	struct plan_option members = { .kind = PLAN_AGREE, .n_models = n + 1,
				       .need = need };
	double pq[3], ps[3], cost, lat, stand, sstand, p12, stood;
	int rc;

	for (int k = 0; k < n; k++) {
		pq[k] = e[v[k]].q;
		ps[k] = e[v[k]].score;
		members.models[k] = v[k];
	}
	/* The first two in parallel; a third only when it can still decide
	 * (need 2: the two disagree, need 3: they agree).  How often the
	 * first two agree and the members' answer stands is what runs have
	 * shown, the formula the prior: members whose right answers
	 * coincide escalate less than independent ones would. */
	cost = e[v[0]].cost + e[v[1]].cost;
	lat = fmax(e[v[0]].latency, e[v[1]].latency);
	p12 = pq[0] * pq[1];
	if (n == 3) {
		double a = agree_rate(w, s, &members, "pair", p12);

		cost += (need == 2 ? 1 - a : a) * e[v[2]].cost;
		lat += e[v[2]].latency;
	}
	stand = at_least(pq, n, need);
	sstand = at_least(ps, n, need);
	stood = agree_rate(w, s, &members, "stood", stand);
	for (size_t c = 0; c < w->ms->n; c++) {
		struct plan_option o = { .kind = PLAN_AGREE,
					 .n_models = n + 1, .need = need };
		bool member = false;

		for (int k = 0; k < n; k++)
			member |= (int)c == v[k];
		if (!e[c].ok || member || e[c].cost <= e[v[n - 1]].cost)
			continue;
		memcpy(o.models, v, sizeof(int) * (size_t)n);
		o.models[n] = (int)c;
		o.quality = stand + (1 - stand) * e[c].q;
		o.score = sstand + (1 - sstand) * e[c].score;
		o.cost = cost + (1 - stood) * e[c].cost;
		o.latency = lat + e[c].latency;
		agree_learned(w, s, &o);
		if ((rc = add_option(w, s, &o)) < 0)
			return rc;
	}
	return 0;
}

/*
 * Whether model m may be the mid model of a three-stage cascade after the
 * pair a, b: eligible, outside the pool, and no cheaper eligible model
 * other than a and b beats its mean quality (a model so beaten would be a
 * dearer and worse mid model; one that only the pair beats is still the
 * best tie-breaker at its price, since neither member can break its own
 * tie).
 */
static bool deep_mid(const struct work *w, size_t s, const int *pool,
		     int a, int b, size_t m)
{
	const struct est *e = &w->e[s * w->ms->n];

	if (!e[m].ok)
		return false;
	for (int k = 0; k < AGREE_POOL; k++)
		if (pool[k] == (int)m)
			return false;
	for (size_t c = 0; c < w->ms->n; c++)
		if (e[c].ok && c != m && (int)c != a && (int)c != b &&
		    e[c].q >= e[m].q &&
		    (e[c].cost < e[m].cost || (e[c].cost == e[m].cost &&
					       c < m)))
			return false;
	return true;
}

/*
 * The three-stage cascade agree(a, b, mid; 2 -> d): a pair of the pool in
 * parallel; the mid model only when the two disagree, its answer standing
 * when it agrees with either; else d, each model dearer than mid.  It is
 * a triple with need 2 whose third member lies outside the pool (the
 * executor runs it as such); mid models are those deep_mid() allows for
 * the pair, dearer than both members.  The choice among them is by
 * utility.
 */
static int deep_options(struct work *w, size_t s, const int *lo)
{
	const struct est *e = &w->e[s * w->ms->n];
	int rc;

	for (size_t m = 0; m < w->ms->n; m++)
		for (int i = 0; i < AGREE_POOL && lo[i] >= 0; i++)
			for (int j = i + 1; j < AGREE_POOL && lo[j] >= 0; j++) {
				int tri[3] = { lo[i], lo[j], (int)m };

				if (!deep_mid(w, s, lo, lo[i], lo[j], m) ||
				    e[m].cost <= e[lo[j]].cost)
					continue;
				if ((rc = agree_with(w, s, tri, 3, 2)) < 0)
					return rc;
			}
	return 0;
}

/*
 * agree(cheap... ; need -> d): every pair of the pool lo with need 2,
 * and the two cheapest (lo[0] and second, when second >= 0), every
 * triple of the pool with need 2 and 3 (members cheapest first); d each
 * model dearer than every member.
 */
static int agree_options(struct work *w, size_t s, const int *lo,
			 int second)
{
	int rc;

	if (second >= 0) {
		int pair[2] = { lo[0], second };

		if ((rc = agree_with(w, s, pair, 2, 2)) < 0)
			return rc;
	}
	for (int i = 0; i < AGREE_POOL && lo[i] >= 0; i++)
		for (int j = i + 1; j < AGREE_POOL && lo[j] >= 0; j++) {
			int pair[2] = { lo[i], lo[j] };

			if ((rc = agree_with(w, s, pair, 2, 2)) < 0)
				return rc;
			for (int k = j + 1; k < AGREE_POOL && lo[k] >= 0; k++) {
				int tri[3] = { lo[i], lo[j], lo[k] };

				for (int need = 2; need <= 3; need++)
					if ((rc = agree_with(w, s, tri, 3,
							     need)) < 0)
						return rc;
			}
		}
	return deep_options(w, s, lo);
}

/* vote(v[0], v[1], v[2]): the majority answer, else the first member's;
 * right when at least two of the three are. */
static int vote_with(struct work *w, size_t s, const int *v)
{
	const struct est *e = &w->e[s * w->ms->n];
	struct plan_option o = { .kind = PLAN_VOTE, .n_models = 3 };
	double pq[3], ps[3];

	memcpy(o.models, v, 3 * sizeof(*v));
	for (int k = 0; k < 3; k++) {
		pq[k] = e[v[k]].q;
		ps[k] = e[v[k]].score;
		o.cost += e[v[k]].cost;
		o.latency = fmax(o.latency, e[v[k]].latency);
	}
	o.quality = at_least(pq, 3, 2);
	o.score = at_least(ps, 3, 2);
	return add_option(w, s, &o);
}

/* Whether the sets {a[0], a[1], a[2]} and {b[0], b[1], b[2]} are equal. */
static bool same_three(const int *a, const int *b)
{
	for (int i = 0; i < 3; i++)
		if (a[i] != b[0] && a[i] != b[1] && a[i] != b[2])
			return false;
	return true;
}

/*
 * Votes: of the three models of best mean quality (best first, so that
 * the best breaks a three-way tie), and of every other triple of the pool
 * lo (cheapest first).
 */
static int vote_options(struct work *w, size_t s, const int *lo,
			const int *top)
{
	int rc;

	if (top[2] >= 0 && (rc = vote_with(w, s, top)) < 0)
		return rc;
	for (int i = 0; i < AGREE_POOL && lo[i] >= 0; i++)
		for (int j = i + 1; j < AGREE_POOL && lo[j] >= 0; j++)
			for (int k = j + 1; k < AGREE_POOL && lo[k] >= 0; k++) {
				int tri[3] = { lo[i], lo[j], lo[k] };

				if (top[2] >= 0 && same_three(tri, top))
					continue;
				if ((rc = vote_with(w, s, tri)) < 0)
					return rc;
			}
	return 0;
}

static int options_step(struct work *w, size_t s)
{
	const struct plan_step *st = &w->t->steps[s];
	const struct plan_check *chk = plan_task_check(w->t, s);
	const bool judged = chk || plan_task_confidence(w->t, s);
	const size_t nm = w->ms->n;
	const struct est *e = &w->e[s * nm];
	int top[3] = { -1, -1, -1 }, rc;
	bool comparable;

	for (size_t a = 0; a < nm; a++) {
		struct plan_option o = { .kind = PLAN_SINGLE, .n_models = 1 };

		if (!e[a].ok)
			continue;
		o.models[0] = (int)a;
		o.quality = e[a].q;
		o.score = e[a].score;
		o.cost = e[a].cost;
		o.latency = e[a].latency;
		if ((st->strategies & PLAN_STRAT_SINGLE) &&
		    (rc = add_option(w, s, &o)) < 0)
			return rc;
		/* Keep the three best means for a vote (the cheaper first on
		 * a tie, as llmfs-route-eval orders them). */
		for (int k = 0; k < 3; k++)
			if (top[k] < 0 || e[a].q > e[top[k]].q ||
			    (e[a].q == e[top[k]].q &&
			     e[a].cost < e[top[k]].cost)) {
				for (int j = 2; j > k; j--)
					top[j] = top[j - 1];
				top[k] = (int)a;
				break;
			}
		if (!judged || !(st->strategies & PLAN_STRAT_CASCADE))
			continue;
		for (size_t b = 0; b < nm; b++) {
			struct plan_option c = { .kind = PLAN_CASCADE,
						 .n_models = 2 };

			if (!e[b].ok || b == a || e[b].cost < e[a].cost ||
			    (e[b].cost == e[a].cost && b < a))
				continue;
			c.models[0] = (int)a;
			c.models[1] = (int)b;
			c.quality = e[a].q + (1 - e[a].q) * e[b].q;
			c.score = e[a].score + (1 - e[a].score) * e[b].score;
			c.cost = e[a].cost + (1 - e[a].q) * e[b].cost;
			c.latency = e[a].latency + e[b].latency;
			if ((rc = add_option(w, s, &c)) < 0)
				return rc;
		}
	}
	comparable = (chk && (chk->kind == PLAN_CHECK_EXACT ||
			      chk->kind == PLAN_CHECK_REGEX)) || st->key ||
		     (st->strategies != PLAN_STRAT_ALL &&
		      (st->strategies & (PLAN_STRAT_VOTE | PLAN_STRAT_AGREE)));
	if (comparable &&
	    (st->strategies & (PLAN_STRAT_AGREE | PLAN_STRAT_VOTE))) {
		int lo[AGREE_POOL], second;

		if ((rc = agree_pool(w, s, lo, &second)) < 0)
			return rc;
		if ((st->strategies & PLAN_STRAT_AGREE) &&
		    (rc = agree_options(w, s, lo, second)) < 0)
			return rc;
		if ((st->strategies & PLAN_STRAT_VOTE) &&
		    (rc = vote_options(w, s, lo, top)) < 0)
			return rc;
	}
	if (!w->n_opt[s])
		return -ENOENT;
	return 0;
}

static void path_totals(const struct plan_task *t, struct plan_path *p)
{
	double finish[PLAN_TASK_MAX_STEPS];

	p->quality = p->score = 1;
	p->cost = p->latency = 0;
	for (size_t s = 0; s < t->n_steps; s++) {
		double start = 0;

		for (size_t k = 0; k < t->steps[s].n_deps; k++)
			start = fmax(start, finish[t->steps[s].deps[k]]);
		finish[s] = start + p->steps[s].latency;
		p->latency = fmax(p->latency, finish[s]);
		p->quality *= p->steps[s].quality;
		p->score *= p->steps[s].score;
		p->cost += p->steps[s].cost;
	}
}

static bool same_path(const struct plan_task *t, const struct plan_path *a,
		      const struct plan_path *b)
{
	for (size_t s = 0; s < t->n_steps; s++)
		if (a->steps[s].kind != b->steps[s].kind ||
		    a->steps[s].need != b->steps[s].need ||
		    memcmp(a->steps[s].models, b->steps[s].models,
			   sizeof(a->steps[s].models)))
			return false;
	return true;
}

static int add_path(struct plan_candidates *c, const struct plan_task *t,
		    struct plan_option *steps, const char *label)
{
	struct plan_path p = { .steps = steps }, *v;

	path_totals(t, &p);
	snprintf(p.label, sizeof(p.label), "%s", label);
	for (size_t i = 0; i < c->n; i++)
		if (same_path(t, &c->v[i], &p)) {
			free(steps);
			return 0;
		}
	v = realloc(c->v, (c->n + 1) * sizeof(*v));
	if (!v) {
		free(steps);
		return -ENOMEM;
	}
	c->v = v;
	c->v[c->n++] = p;
	return 0;
}

static int gen_paths(struct work *w, struct plan_candidates *c)
{
	const size_t ns = w->t->n_steps, nm = w->ms->n;
	double cmax = 0;
	int rc;

	for (size_t s = 0; s < ns; s++)
		for (size_t i = 0; i < w->n_opt[s]; i++)
			cmax = fmax(cmax, w->opt[s][i].cost);
	/* One model everywhere it can serve. */
	for (size_t m = 0; m < nm; m++) {
		struct plan_option *steps = calloc(ns, sizeof(*steps));
		bool used = false;
		char label[96];

		if (!steps)
			return -ENOMEM;
		for (size_t s = 0; s < ns; s++) {
			const struct plan_option *pick = NULL, *best = NULL;

			for (size_t i = 0; i < w->n_opt[s]; i++) {
				const struct plan_option *x = &w->opt[s][i];

				if (x->kind == PLAN_SINGLE &&
				    x->models[0] == (int)m) {
					pick = x;
					used = true;
				}
			}
			/* Steps m cannot serve: their best mean option. */
			for (size_t i = 0; !pick && i < w->n_opt[s]; i++)
				if (!best || w->opt[s][i].quality >
					     best->quality)
					best = &w->opt[s][i];
			if (!pick)
				pick = best;
			steps[s] = *pick;
		}
		if (!used) {
			free(steps);
			continue;
		}
		snprintf(label, sizeof(label), "single %.80s", w->ms->v[m].name);
		rc = add_path(c, w->t, steps, label);
		if (rc < 0)
			return rc;
	}
	/* The frontier: per step the best utility for a sweep of prices. */
	for (int k = 0; k < N_SWEEP; k++) {
		double lambda = k == 0 || cmax <= 0 ? 0 :
				pow(10.0, -3.0 + 7.0 * (k - 1) /
				    (N_SWEEP - 2)) / cmax;
		struct plan_option *steps = calloc(ns, sizeof(*steps));
		char label[96];

		if (!steps)
			return -ENOMEM;
		for (size_t s = 0; s < ns; s++) {
			size_t b = 0;

			for (size_t i = 1; i < w->n_opt[s]; i++)
				if (plan_better(w->opt[s][i].score,
						w->opt[s][i].cost,
						w->opt[s][b].score,
						w->opt[s][b].cost, lambda, 0))
					b = i;
			steps[s] = w->opt[s][b];
		}
		snprintf(label, sizeof(label), "frontier lambda %.4g", lambda);
		rc = add_path(c, w->t, steps, label);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void choose(const struct plan_task *t, struct plan_candidates *c,
		   double tie_eps)
{
	c->best = -1;
	for (size_t i = 0; i < c->n; i++) {
		struct plan_path *p = &c->v[i], *b;

		p->feasible = (t->budget_usd <= 0 || p->cost <= t->budget_usd) &&
			      (t->latency_s <= 0 || p->latency <= t->latency_s) &&
			      (t->min_quality <= 0 ||
			       p->quality >= t->min_quality);
		if (!p->feasible)
			continue;
		if (c->best < 0) {
			c->best = (long)i;
			continue;
		}
		b = &c->v[c->best];
		if (t->min_quality > 0) {
			if (p->cost < b->cost ||
			    (p->cost == b->cost && p->score > b->score))
				c->best = (long)i;
		} else if (plan_better(p->score, p->cost, b->score, b->cost, 0,
				       tie_eps)) {
			c->best = (long)i;
		}
	}
}

static int no_fit(const struct plan_task *t, const struct plan_candidates *c,
		  char **ret_err)
{
	double cheapest = INFINITY, fastest = INFINITY, best_q = 0;

	for (size_t i = 0; i < c->n; i++) {
		cheapest = fmin(cheapest, c->v[i].cost);
		fastest = fmin(fastest, c->v[i].latency);
		best_q = fmax(best_q, c->v[i].quality);
	}
	if (t->budget_usd > 0 && cheapest > t->budget_usd)
		return fail(ret_err, -ENOENT, "no path fits the budget of $%g "
			    "(cheapest $%.6f)", t->budget_usd, cheapest);
	if (t->latency_s > 0 && fastest > t->latency_s)
		return fail(ret_err, -ENOENT, "no path fits the latency bound "
			    "of %gs (fastest %.1fs)", t->latency_s, fastest);
	if (t->min_quality > 0 && best_q < t->min_quality)
		return fail(ret_err, -ENOENT, "no path reaches quality %g "
			    "(best expected %.3f)", t->min_quality, best_q);
	return fail(ret_err, -ENOENT, "no path meets budget, latency and "
		    "quality together");
}

static int fallbacks(struct work *w, struct plan_candidates *c)
{
	const size_t ns = w->t->n_steps, nm = w->ms->n;

	c->fallback = calloc(ns, sizeof(*c->fallback));
	c->n_fallback = calloc(ns, sizeof(*c->n_fallback));
	if (!c->fallback || !c->n_fallback)
		return -ENOMEM;
	c->n_steps = ns;
	for (size_t s = 0; s < ns; s++) {
		const struct est *e = &w->e[s * nm];
		size_t n = 0;

		for (size_t m = 0; m < nm && n < MAX_FALLBACK; m++) {
			size_t j = n++;

			if (!e[m].ok) {
				n--;
				continue;
			}
			/* Insertion by descending mean quality. */
			while (j && e[c->fallback[s][j - 1]].q < e[m].q) {
				c->fallback[s][j] = c->fallback[s][j - 1];
				j--;
			}
			c->fallback[s][j] = (int)m;
		}
		c->n_fallback[s] = n;
	}
	return 0;
}

/* What the strategies a step asked for lack (single is never among
 * them: any model would do). */
static const char *unusable(const struct plan_task *t, size_t s)
{
	unsigned k = t->steps[s].strategies;

	if ((k & PLAN_STRAT_CASCADE) && !plan_task_check(t, s) &&
	    !plan_task_confidence(t, s))
		return k == PLAN_STRAT_CASCADE ?
		       "cascade needs a check or a confidence checker" :
		       "cascade needs a check or a confidence checker; vote "
		       "needs three models, agree two and a dearer one";
	if (k & PLAN_STRAT_CASCADE)
		return "cascade needs two models; vote "
		       "three models, agree two and a dearer one";
	return "vote needs three models, agree two and a dearer one";
}

int plan_candidates_build(const struct plan_task *t,
			  const struct plan_models *ms,
			  struct plan_stats *stats,
			  const struct plan_score_opts *opts,
			  struct plan_rng *rng,
			  struct plan_candidates *ret, char **ret_err)
{
	struct plan_score_opts o = { .explore = PLAN_EXPLORE_MEAN,
				     .ucb_c = 1, .tie_eps = 0.005 };
	struct plan_candidates c = { .best = -1 };
	struct work w = { .t = t, .ms = ms, .stats = stats,
			  .writer = opts && opts->writer ? *opts->writer
							  : geteuid() };
	int rc;

	if (opts) {
		o = *opts;
		if (o.ucb_c <= 0)
			o.ucb_c = 1;
		if (o.tie_eps < 0)
			o.tie_eps = 0.005;
	}
	if (!ms->n)
		return fail(ret_err, -ENOENT, "no models configured");
	if (ms->n > MAX_FALLBACK)
		return fail(ret_err, -E2BIG, "more than %d models",
			    MAX_FALLBACK);
	w.e = calloc(t->n_steps * ms->n, sizeof(*w.e));
	w.opt = calloc(t->n_steps, sizeof(*w.opt));
	w.n_opt = calloc(t->n_steps, sizeof(*w.n_opt));
	if (!w.e || !w.opt || !w.n_opt) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t s = 0; s < t->n_steps; s++) {
		rc = estimate_step(&w, s, stats, &o, rng, ret_err);
		if (rc < 0)
			goto out;
		rc = options_step(&w, s);
		if (rc < 0) {
			rc = fail(ret_err, rc, "step %s: no usable strategy "
				  "among those asked (%s)", t->steps[s].id,
				  unusable(t, s));
			goto out;
		}
	}
	rc = gen_paths(&w, &c);
	if (rc == 0)
		rc = fallbacks(&w, &c);
	if (rc < 0)
		goto out;
	choose(t, &c, o.tie_eps);
	if (c.best < 0)
		rc = no_fit(t, &c, ret_err);
out:
	for (size_t s = 0; w.opt && s < t->n_steps; s++)
		free(w.opt[s]);
	free(w.opt);
	free(w.n_opt);
	free(w.e);
	if (rc < 0 && rc != -ENOENT) {
		plan_candidates_release(&c);
		return rc;
	}
	/* With no fitting path the candidates are still worth showing. */
	*ret = c;
	return rc;
}

void plan_candidates_release(struct plan_candidates *c)
{
	for (size_t i = 0; c && i < c->n; i++)
		free(c->v[i].steps);
	if (c) {
		free(c->v);
		free(c->fallback);
		free(c->n_fallback);
		memset(c, 0, sizeof(*c));
		c->best = -1;
	}
}

json_t *plan_path_to_json(const struct plan_task *t,
			  const struct plan_models *ms,
			  const struct plan_path *p)
{
	json_t *steps = json_array(), *o;

	if (!steps)
		return NULL;
	for (size_t s = 0; s < t->n_steps; s++) {
		const struct plan_option *x = &p->steps[s];
		json_t *models = json_array(), *deps = json_array(), *js;

		for (int k = 0; k < x->n_models; k++)
			json_array_append_new(models,
				json_string(ms->v[x->models[k]].name));
		for (size_t k = 0; k < t->steps[s].n_deps; k++)
			json_array_append_new(deps,
				json_string(t->steps[t->steps[s].deps[k]].id));
		js = json_pack(
			"{s:s, s:s, s:s, s:o, s:o, s:f, s:f, s:f, s:f}",
			"id", t->steps[s].id,
			"task_type", t->steps[s].task_type,
			"strategy", plan_strategy_name(x->kind),
			"models", models, "deps", deps,
			"quality", x->quality, "score", x->score,
			"cost_usd", x->cost, "latency_s", x->latency);

		/* agree: how many of the cheap members must give one answer. */
		if (js && x->kind == PLAN_AGREE)
			json_object_set_new(js, "need", json_integer(x->need));
		json_array_append_new(steps, js);
	}
	o = json_pack("{s:s, s:f, s:f, s:f, s:f, s:b, s:s, s:o}",
		      "label", p->label, "quality", p->quality,
		      "score", p->score, "cost_usd", p->cost,
		      "latency_s", p->latency, "feasible", p->feasible,
		      "output", t->steps[t->output].id, "steps", steps);
	return o;
}

json_t *plan_candidates_to_json(const struct plan_task *t,
				const struct plan_models *ms,
				const struct plan_candidates *c)
{
	json_t *a = json_array();

	if (!a)
		return NULL;
	for (size_t i = 0; i < c->n; i++)
		json_array_append_new(a, plan_path_to_json(t, ms, &c->v[i]));
	return json_pack("{s:I, s:o}", "best", (json_int_t)c->best,
			 "candidates", a);
}
