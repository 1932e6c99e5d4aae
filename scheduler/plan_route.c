/* plan_route: per-prompt quality and cost prediction (plan_route.h). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "plan_feat.h"
#include "plan_route.h"
#include "plan_route_db.h"
#include "plan_util.h"

/* Buckets in fewer prompts than this are always searched. */
#define DF_FLOOR 256
/* Matrix factorisation: the width of the shared prompt projection and of
 * each arm's embedding, and the scale of their seeded initial values. */
#define MF_DIM PLAN_ROUTE_MF_DIM
#define MF_INIT 0.1

struct obs {
	uint32_t ex, arm;
	float q, c, prior;
};

struct example {
	struct plan_feat terms, w;
	uint32_t *obs;        /* indexes into route->obs */
	uint32_t n_obs, cap_obs;
};

struct arm {
	char *name;
	float *w;             /* PLAN_FEAT_DIM logistic weights, lazily */
	float u[MF_DIM];      /* the arm's embedding (matrix factorisation) */
};

struct posting {
	uint32_t *ex;
	float *v;
	uint32_t n, cap;
};

struct hit {
	double s;
	uint32_t ex;
};

struct plan_route {
	pthread_mutex_t mu;
	struct plan_route_config cfg;
	struct plan_route_db *db;  /* the journal, NULL: memory only */
	struct plan_idf idf;
	struct posting *post;  /* PLAN_FEAT_DIM lists */
	struct example *ex;
	size_t n_ex, cap_ex;
	struct obs *obs;
	size_t n_obs, cap_obs;
	struct arm *arms;
	size_t n_arms, cap_arms;
	double *acc;           /* per example, the neighbour search */
	struct hit *hits;
	size_t cap_acc;
	size_t sorted;         /* hits sorted at the front */
	float *mf;             /* MF_DIM x PLAN_FEAT_DIM: the prompt projection
				* shared by every arm, column per bucket */
	long base;             /* the id of ex[0]: ids forgotten before it */
};

void plan_route_config_default(struct plan_route_config *cfg)
{
	*cfg = (struct plan_route_config){
		.k = 25, .knn_prior = 1.0, .df_max = 0.05,
		.lr = 0.2, .l2 = 1e-4, .epochs = 5, .seed = 1,
		.knn_weight = 0.5, .strength = 1, .max_prompts = 5000,
		.mf_weight = 0.5,
	};
}

static long add_locked(struct plan_route *r, struct plan_feat *terms);

/* A seeded value in [-MF_INIT, MF_INIT]: factors start apart (at zero
 * every gradient of the product would be zero). */
static float mf_draw(struct plan_rng *rng)
{
	return (float)(MF_INIT * (2 * plan_rng_uniform(rng) - 1));
}

/* The projection's initial values, from the configured seed. */
static void mf_init(struct plan_route *r)
{
	struct plan_rng rng;

	plan_rng_seed(&rng, r->cfg.seed ^ 0x6d66ULL);
	for (size_t i = 0; i < (size_t)MF_DIM * PLAN_FEAT_DIM; i++)
		r->mf[i] = mf_draw(&rng);
}

/* An arm's initial embedding, from its name: the same in every run. */
static void mf_init_arm(const struct plan_route *r, struct arm *a)
{
	struct plan_rng rng;
	uint64_t h = 1469598103934665603ULL ^ r->cfg.seed;

	for (const char *c = a->name; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ULL;
	plan_rng_seed(&rng, h);
	for (int k = 0; k < MF_DIM; k++)
		a->u[k] = mf_draw(&rng);
}
static int observe_locked(struct plan_route *r, long id, const char *arm,
			  double prior, double quality, double cost);

/* Loading: prompts keep their ids when they follow on without a gap. */
static int load_prompt(void *arg, long id, const struct plan_feat *terms)
{
	struct plan_route *r = arg;
	struct plan_feat copy = { 0 };
	long got;

	if (!r->n_ex)
		r->base = id;
	if (id != r->base + (long)r->n_ex)
		return 1;      /* after a gap: dropped, so ids stay dense */
	copy.idx = malloc((terms->n + 1) * sizeof(*copy.idx));
	copy.val = malloc((terms->n + 1) * sizeof(*copy.val));
	if (!copy.idx || !copy.val) {
		plan_feat_release(&copy);
		return -ENOMEM;
	}
	memcpy(copy.idx, terms->idx, terms->n * sizeof(*copy.idx));
	memcpy(copy.val, terms->val, terms->n * sizeof(*copy.val));
	copy.n = terms->n;
	got = add_locked(r, &copy);
	return got < 0 ? (int)got : 0;
}

static int load_outcome(void *arg, long id, const char *arm, double prior,
			double quality, double cost)
{
	int rc = observe_locked(arg, id, arm, prior, quality, cost);

	/* An outcome of a prompt not loaded is dropped with it. */
	return rc == -ENOMEM ? rc : 0;
}

int plan_route_open_db(const struct plan_route_config *cfg,
		       const char *db_path, struct plan_route **ret_route)
{
	struct plan_route *r = NULL;
	int rc;

	*ret_route = NULL;
	if ((rc = plan_route_open(cfg, &r)) < 0)
		return rc;
	if (db_path) {
		rc = plan_route_db_open(db_path, &r->db);
		if (rc == 0)
			rc = plan_route_db_load(r->db, load_prompt,
						load_outcome, r);
		/* The logistic weights are not stored: trained again. */
		if (rc == 0)
			rc = plan_route_fit(r);
		if (rc < 0) {
			plan_route_free(r);
			return rc;
		}
	}
	*ret_route = r;
	return 0;
}

int plan_route_open(const struct plan_route_config *cfg,
		    struct plan_route **ret_route)
{
	struct plan_route *r = calloc(1, sizeof(*r));

	*ret_route = NULL;
	if (!r)
		return -ENOMEM;
	if (cfg)
		r->cfg = *cfg;
	else
		plan_route_config_default(&r->cfg);
	if (r->cfg.k < 1 || r->cfg.knn_prior <= 0 || r->cfg.df_max <= 0 ||
	    r->cfg.lr < 0 || r->cfg.l2 < 0 || r->cfg.epochs < 0 ||
	    !(r->cfg.knn_weight >= 0 && r->cfg.knn_weight <= 1) ||
	    !(r->cfg.mf_weight >= 0 && r->cfg.mf_weight <= 1) ||
	    !(r->cfg.strength >= 0 && r->cfg.strength <= 1)) {
		free(r);
		return -EINVAL;
	}
	r->post = calloc(PLAN_FEAT_DIM, sizeof(*r->post));
	r->mf = malloc((size_t)MF_DIM * PLAN_FEAT_DIM * sizeof(*r->mf));
	if (!r->post || !r->mf || plan_idf_init(&r->idf) < 0) {
		free(r->post);
		free(r->mf);
		free(r);
		return -ENOMEM;
	}
	mf_init(r);
	pthread_mutex_init(&r->mu, NULL);
	*ret_route = r;
	return 0;
}

void plan_route_free(struct plan_route *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < PLAN_FEAT_DIM; i++) {
		free(r->post[i].ex);
		free(r->post[i].v);
	}
	for (size_t i = 0; i < r->n_ex; i++) {
		plan_feat_release(&r->ex[i].terms);
		plan_feat_release(&r->ex[i].w);
		free(r->ex[i].obs);
	}
	for (size_t i = 0; i < r->n_arms; i++) {
		free(r->arms[i].name);
		free(r->arms[i].w);
	}
	plan_route_db_close(r->db);
	free(r->post);
	free(r->mf);
	free(r->ex);
	free(r->obs);
	free(r->arms);
	free(r->acc);
	free(r->hits);
	plan_idf_release(&r->idf);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
	size_t nc;
	void *p;

	if (need <= *cap)
		return 0;
	nc = *cap ? *cap * 2 : 64;
	while (nc < need)
		nc *= 2;
	p = realloc(*v, nc * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = nc;
	return 0;
}

static int post_add(struct posting *p, uint32_t ex, float v)
{
	if (p->n == p->cap) {
		uint32_t nc = p->cap ? p->cap * 2 : 4;
		uint32_t *e = realloc(p->ex, nc * sizeof(*e));
		float *w;

		if (!e)
			return -ENOMEM;
		p->ex = e;
		w = realloc(p->v, nc * sizeof(*w));
		if (!w)
			return -ENOMEM;
		p->v = w;
		p->cap = nc;
	}
	p->ex[p->n] = ex;
	p->v[p->n++] = v;
	return 0;
}

static int index_example(struct plan_route *r, uint32_t id)
{
	const struct plan_feat *w = &r->ex[id].w;

	for (size_t i = 0; i < w->n; i++)
		if (post_add(&r->post[w->idx[i]], id, w->val[i]) < 0)
			return -ENOMEM;
	return 0;
}

/* Drops every stored prompt and outcome; weights and IDF stay. */
static void forget(struct plan_route *r)
{
	for (size_t b = 0; b < PLAN_FEAT_DIM; b++)
		r->post[b].n = 0;
	for (size_t i = 0; i < r->n_ex; i++) {
		plan_feat_release(&r->ex[i].terms);
		plan_feat_release(&r->ex[i].w);
		free(r->ex[i].obs);
	}
	r->base += r->n_ex;
	r->n_ex = 0;
	r->n_obs = 0;
}

/* Stores a prompt's raw terms (taken over) and indexes them; its id. */
static long add_locked(struct plan_route *r, struct plan_feat *terms)
{
	struct example *e;
	long id;

	if (grow((void **)&r->ex, &r->cap_ex, r->n_ex + 1, sizeof(*r->ex)) < 0 ||
	    r->n_ex >= UINT32_MAX) {
		plan_feat_release(terms);
		return -ENOMEM;
	}
	e = &r->ex[r->n_ex];
	memset(e, 0, sizeof(*e));
	e->terms = *terms;
	memset(terms, 0, sizeof(*terms));
	plan_idf_add(&r->idf, &e->terms);
	if (plan_feat_weigh(&r->idf, &e->terms, &e->w) < 0) {
		plan_feat_release(&e->terms);
		return -ENOMEM;
	}
	id = (long)r->n_ex++;
	/* Indexed at once, so the neighbour search sees it from now on. */
	if (index_example(r, (uint32_t)id) < 0)
		return -ENOMEM;
	return id + r->base;
}

long plan_route_add(struct plan_route *r, const char *text)
{
	struct plan_feat terms;
	long rc;

	if ((rc = plan_feat_terms(text, &terms)) < 0)
		return rc;
	pthread_mutex_lock(&r->mu);
	if (r->cfg.max_prompts && r->n_ex >= r->cfg.max_prompts) {
		if (r->db && (rc = plan_route_db_forget(r->db)) < 0)
			goto out;
		forget(r);
	}
	/* Written before memory is updated, as plan_stats does. */
	if (r->db && (rc = plan_route_db_add(r->db, r->base + (long)r->n_ex,
					     &terms)) < 0)
		goto out;
	rc = add_locked(r, &terms);
out:
	pthread_mutex_unlock(&r->mu);
	plan_feat_release(&terms);
	return rc;
}

static long arm_find(const struct plan_route *r, const char *name)
{
	for (size_t i = 0; i < r->n_arms; i++)
		if (!strcmp(r->arms[i].name, name))
			return (long)i;
	return -1;
}

static long arm_get(struct plan_route *r, const char *name)
{
	long a = arm_find(r, name);

	if (a >= 0)
		return a;
	if (grow((void **)&r->arms, &r->cap_arms, r->n_arms + 1,
		 sizeof(*r->arms)) < 0)
		return -ENOMEM;
	r->arms[r->n_arms].name = strdup(name);
	r->arms[r->n_arms].w = calloc(PLAN_FEAT_DIM, sizeof(float));
	if (!r->arms[r->n_arms].name || !r->arms[r->n_arms].w) {
		free(r->arms[r->n_arms].name);
		free(r->arms[r->n_arms].w);
		return -ENOMEM;
	}
	mf_init_arm(r, &r->arms[r->n_arms]);
	return (long)r->n_arms++;
}

static double clamp_p(double p)
{
	return p < 0.01 ? 0.01 : p > 0.99 ? 0.99 : p;
}

static double logit(double p)
{
	p = clamp_p(p);
	return log(p / (1 - p));
}

static double lr_score(const float *w, const struct plan_feat *x,
		       double prior)
{
	double z = logit(prior);

	for (size_t i = 0; i < x->n; i++)
		z += (double)w[x->idx[i]] * x->val[i];
	return 1.0 / (1.0 + exp(-z));
}

/* The prompt's projection h = P x. */
static void mf_project(const struct plan_route *r, const struct plan_feat *x,
		       double *h)
{
	for (int k = 0; k < MF_DIM; k++)
		h[k] = 0;
	for (size_t i = 0; i < x->n; i++) {
		const float *col = &r->mf[(size_t)x->idx[i] * MF_DIM];

		for (int k = 0; k < MF_DIM; k++)
			h[k] += (double)col[k] * x->val[i];
	}
}

static double mf_score(const struct arm *a, const double *h, double prior)
{
	double z = logit(prior);

	for (int k = 0; k < MF_DIM; k++)
		z += (double)a->u[k] * h[k];
	return 1.0 / (1.0 + exp(-z));
}

/*
 * One SGD step of the matrix factorisation on the n outcomes obs[] of one
 * prompt (every arm's, in a batch fit): each arm's embedding moves along
 * the logistic loss's gradient, and the shared projection's columns of
 * the prompt's buckets along the mean of theirs, so that what one arm's
 * outcomes teach about a prompt serves every arm.
 */
static void mf_step(struct plan_route *r, const uint32_t *obs, size_t n)
{
	const struct plan_feat *x;
	double h[MF_DIM], dh[MF_DIM] = { 0 }, lr = r->cfg.lr, l2 = r->cfg.l2;

	if (!n)
		return;
	x = &r->ex[r->obs[obs[0]].ex].w;
	mf_project(r, x, h);
	for (size_t i = 0; i < n; i++) {
		const struct obs *o = &r->obs[obs[i]];
		struct arm *a = &r->arms[o->arm];
		double g = mf_score(a, h, o->prior) - o->q;

		for (int k = 0; k < MF_DIM; k++) {
			dh[k] += g * a->u[k] / (double)n;
			a->u[k] -= (float)(lr * (g * h[k] + l2 * a->u[k]));
		}
	}
	for (size_t i = 0; i < x->n; i++) {
		float *col = &r->mf[(size_t)x->idx[i] * MF_DIM];

		for (int k = 0; k < MF_DIM; k++)
			col[k] -= (float)(lr * (dh[k] * x->val[i] +
						l2 * col[k]));
	}
}

static void sgd_step(struct plan_route *r, const struct obs *o)
{
	float *w = r->arms[o->arm].w;
	const struct plan_feat *x = &r->ex[o->ex].w;
	double g = lr_score(w, x, o->prior) - o->q;

	for (size_t i = 0; i < x->n; i++) {
		float *wi = &w[x->idx[i]];

		*wi -= (float)(r->cfg.lr * (g * x->val[i] + r->cfg.l2 * *wi));
	}
}

static int observe_locked(struct plan_route *r, long id, const char *arm,
			  double prior, double quality, double cost)
{
	struct example *e;
	struct obs *o;
	long a;

	if (id >= 0 && id < r->base)
		return -ESTALE;      /* forgotten since (max_prompts) */
	id -= r->base;
	if (id < 0 || (size_t)id >= r->n_ex)
		return -EINVAL;
	e = &r->ex[id];
	if ((a = arm_get(r, arm)) < 0 ||
	    grow((void **)&r->obs, &r->cap_obs, r->n_obs + 1,
		 sizeof(*r->obs)) < 0 || r->n_obs >= UINT32_MAX)
		return -ENOMEM;
	if (e->n_obs == e->cap_obs) {
		uint32_t nc = e->cap_obs ? e->cap_obs * 2 : 4;
		uint32_t *v = realloc(e->obs, nc * sizeof(*v));

		if (!v)
			return -ENOMEM;
		e->obs = v;
		e->cap_obs = nc;
	}
	o = &r->obs[r->n_obs];
	o->ex = (uint32_t)id;
	o->arm = (uint32_t)a;
	o->q = (float)fmin(1, fmax(0, quality));
	o->c = (float)cost;
	o->prior = (float)clamp_p(prior);
	e->obs[e->n_obs++] = (uint32_t)r->n_obs;
	sgd_step(r, o);
	mf_step(r, &(uint32_t){ (uint32_t)r->n_obs }, 1);
	r->n_obs++;
	return 0;
}

int plan_route_observe(struct plan_route *r, long id, const char *arm,
		       double prior, double quality, double cost)
{
	int rc;

	if (!isfinite(quality) || !isfinite(prior))
		return -EINVAL;
	pthread_mutex_lock(&r->mu);
	if (id < r->base || id - r->base >= (long)r->n_ex)
		rc = id >= 0 && id < r->base ? -ESTALE : -EINVAL;
	else if (r->db && (rc = plan_route_db_observe(r->db, id, arm, prior,
						      quality, cost)) < 0)
		;
	else
		rc = observe_locked(r, id, arm, prior, quality, cost);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

int plan_route_fit(struct plan_route *r)
{
	struct plan_rng rng;
	uint32_t *order = NULL;
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	for (size_t b = 0; b < PLAN_FEAT_DIM; b++)
		r->post[b].n = 0;
	for (size_t i = 0; i < r->n_ex; i++) {
		plan_feat_release(&r->ex[i].w);
		if ((rc = plan_feat_weigh(&r->idf, &r->ex[i].terms,
					  &r->ex[i].w)) < 0 ||
		    (rc = index_example(r, (uint32_t)i)) < 0)
			goto out;
	}
	mf_init(r);
	for (size_t a = 0; a < r->n_arms; a++) {
		memset(r->arms[a].w, 0, PLAN_FEAT_DIM * sizeof(float));
		mf_init_arm(r, &r->arms[a]);
	}
	order = malloc((r->n_obs + r->n_ex + 1) * sizeof(*order));
	if (!order) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < r->n_obs; i++)
		order[i] = (uint32_t)i;
	plan_rng_seed(&rng, r->cfg.seed);
	for (int ep = 0; ep < r->cfg.epochs; ep++) {
		for (size_t i = r->n_obs; i > 1; i--) {
			size_t j = plan_rng_next(&rng) % i;
			uint32_t t = order[i - 1];

			order[i - 1] = order[j];
			order[j] = t;
		}
		for (size_t i = 0; i < r->n_obs; i++)
			sgd_step(r, &r->obs[order[i]]);
	}
	/* The factorisation: every prompt's outcomes together, prompts in a
	 * seeded order. */
	for (int ep = 0; ep < r->cfg.epochs; ep++) {
		uint32_t *ord = order + r->n_obs;

		for (size_t i = 0; i < r->n_ex; i++)
			ord[i] = (uint32_t)i;
		for (size_t i = r->n_ex; i > 1; i--) {
			size_t j = plan_rng_next(&rng) % i;
			uint32_t t = ord[i - 1];

			ord[i - 1] = ord[j];
			ord[j] = t;
		}
		for (size_t i = 0; i < r->n_ex; i++)
			mf_step(r, r->ex[ord[i]].obs, r->ex[ord[i]].n_obs);
	}
out:
	free(order);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

static int cmp_hit(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	if (x->s != y->s)
		return x->s > y->s ? -1 : 1;
	return x->ex < y->ex ? -1 : x->ex > y->ex;
}

static void swap_hit(struct hit *a, struct hit *b)
{
	struct hit t = *a;

	*a = *b;
	*b = t;
}

/* Moves the m best hits to the front (in no order): quickselect. */
static void select_top(struct hit *h, size_t n, size_t m)
{
	size_t lo = 0, hi = n;  /* the m-th best lies in [lo, hi) */

	while (hi - lo > 1) {
		size_t st = lo;

		swap_hit(&h[lo + (hi - lo) / 2], &h[hi - 1]);
		for (size_t i = lo; i + 1 < hi; i++)
			if (cmp_hit(&h[i], &h[hi - 1]) < 0)
				swap_hit(&h[i], &h[st++]);
		swap_hit(&h[st], &h[hi - 1]);
		/* h[st] is in its sorted place: the st before it are better. */
		if (st == m)
			return;
		if (st < m)
			lo = st + 1;
		else
			hi = st;
	}
}

/*
 * The stored prompts most similar to x, best first; returns their count.
 * Only the first want are sorted (the rest follow in no order) unless
 * want is 0: sorting every hit of every query is what would be slow.
 */
static long neighbours(struct plan_route *r, const struct plan_feat *x,
		       size_t want)
{
	double cut = r->cfg.df_max * (double)r->idf.n_docs;
	size_t n = 0;

	if (grow((void **)&r->acc, &r->cap_acc, r->n_ex + 1,
		 sizeof(*r->acc)) < 0)
		return -ENOMEM;
	free(r->hits);
	r->hits = malloc((r->n_ex + 1) * sizeof(*r->hits));
	if (!r->hits)
		return -ENOMEM;
	memset(r->acc, 0, r->n_ex * sizeof(*r->acc));
	for (size_t i = 0; i < x->n; i++) {
		const struct posting *p = &r->post[x->idx[i]];

		/* Stop-word-like buckets say little and cost the most; with
		 * few prompts nothing is slow, so none is skipped. */
		if ((double)r->idf.df[x->idx[i]] > cut &&
		    r->idf.df[x->idx[i]] > DF_FLOOR)
			continue;
		for (uint32_t k = 0; k < p->n; k++)
			r->acc[p->ex[k]] += (double)x->val[i] * p->v[k];
	}
	for (size_t e = 0; e < r->n_ex; e++)
		if (r->acc[e] > 0)
			r->hits[n++] = (struct hit){ r->acc[e], (uint32_t)e };
	if (want && want < n) {
		select_top(r->hits, n, want);
		qsort(r->hits, want, sizeof(*r->hits), cmp_hit);
		r->sorted = want;
	} else {
		qsort(r->hits, n, sizeof(*r->hits), cmp_hit);
		r->sorted = n;
	}
	return (long)n;
}

/* Returns false when the sorted hits ran out before k neighbours of arm a
 * were found while unsorted ones remain: the caller sorts them all. */
static bool predict_arm(struct plan_route *r, long a, long n_hits,
			const struct plan_feat *x, const double *proj,
			double pq, double pc, struct plan_route_pred *ret)
{
	double kp = r->cfg.knn_prior, sq = 0, ss = 0, sc = 0, scs = 0;
	int found = 0;

	ret->quality = ret->q_knn = ret->q_lr = ret->q_mf = pq;
	ret->cost = pc >= 0 ? pc : 0;
	ret->support = 0;
	if (a < 0)
		return true;
	for (long h = 0; h < n_hits && found < r->cfg.k; h++) {
		if ((size_t)h >= r->sorted)
			return false;
		const struct example *e = &r->ex[r->hits[h].ex];

		for (uint32_t i = 0; i < e->n_obs; i++) {
			const struct obs *o = &r->obs[e->obs[i]];

			if ((long)o->arm != a)
				continue;
			ss += r->hits[h].s;
			sq += r->hits[h].s * o->q;
			if (o->c >= 0) {
				sc += r->hits[h].s * o->c;
				scs += r->hits[h].s;
			}
			found++;
			break;
		}
	}
	ret->support = ss;
	ret->q_knn = (kp * pq + sq) / (kp + ss);
	ret->q_lr = lr_score(r->arms[a].w, x, pq);
	ret->q_mf = mf_score(&r->arms[a], proj, pq);
	ret->quality = plan_route_blend(&r->cfg, pq, ret);
	if (pc >= 0)
		ret->cost = (kp * pc + sc) / (kp + scs);
	else if (scs > 0)
		ret->cost = sc / scs;
	return true;
}

int plan_route_predict(struct plan_route *r, const char *text,
		       const char *const *arms, size_t n,
		       const double *prior_q, const double *prior_c,
		       struct plan_route_pred *ret)
{
	struct plan_feat terms, x = { 0 };
	double h[MF_DIM];
	long n_hits;
	int rc;

	if ((rc = plan_feat_terms(text, &terms)) < 0)
		return rc;
	pthread_mutex_lock(&r->mu);
	if ((rc = plan_feat_weigh(&r->idf, &terms, &x)) < 0)
		goto out;
	/* Enough sorted hits for k neighbours of every arm when each stored
	 * prompt has every arm, as in a replay; more only when needed. */
	n_hits = neighbours(r, &x, 4 * (size_t)r->cfg.k);
	mf_project(r, &x, h);
	for (size_t i = 0; n_hits >= 0 && i < n; i++)
		if (!predict_arm(r, arm_find(r, arms[i]), n_hits, &x, h,
				 prior_q[i], prior_c ? prior_c[i] : -1,
				 &ret[i])) {
			n_hits = neighbours(r, &x, 0);
			i = (size_t)-1;
		}
	if (n_hits < 0) {
		rc = (int)n_hits;
		goto out;
	}
out:
	pthread_mutex_unlock(&r->mu);
	plan_feat_release(&terms);
	plan_feat_release(&x);
	return rc;
}

double plan_route_blend(const struct plan_route_config *cfg, double prior,
			const struct plan_route_pred *p)
{
	double learned = (1 - cfg->mf_weight) * p->q_lr +
			 cfg->mf_weight * p->q_mf;

	return prior + cfg->strength * (cfg->knn_weight * p->q_knn +
					(1 - cfg->knn_weight) * learned -
					prior);
}

void plan_route_counts(struct plan_route *r, size_t *ret_prompts,
		       size_t *ret_outcomes)
{
	pthread_mutex_lock(&r->mu);
	*ret_prompts = r->n_ex;
	*ret_outcomes = r->n_obs;
	pthread_mutex_unlock(&r->mu);
}
