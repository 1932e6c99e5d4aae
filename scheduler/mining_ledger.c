/*
 * mining_ledger.c - a round's credits and a model's revenue, as ledger entries (see
 * mining_ledger.h).  Every amount comes from reward.c; this file only gathers the inputs,
 * groups replicas by account and appends one batch.
 */
#include "scheduler/mining_ledger.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void mining_ledger_cfg_init(struct mining_ledger_cfg *c)
{
	memset(c, 0, sizeof(*c));
	reward_billing_parse("cpu=1,gpu=8", &c->billing, NULL, 0);
	c->eps = REWARD_EPSILON_DEFAULT;
	c->rate_micro = 100 * LEDGER_MICRO;
	c->designer_bp = REWARD_DESIGNER_BP_DEFAULT;
}

/* ---- reading the job's past from the ledger ---- */

struct best_arg {
	long before;
	double best;
};

static int is_designer_row(const struct ledger_entry *e, json_t **ret)
{
	json_t *ev;

	if (e->kind != LEDGER_UNITS || e->amount != 0)
		return 0;
	ev = json_loads(e->evidence, 0, NULL);
	if (!ev || strcmp(json_string_value(json_object_get(ev, "role")) ?: "", "designer")) {
		json_decref(ev);
		return 0;
	}
	*ret = ev;
	return 1;
}

static int best_row(void *arg, const struct ledger_entry *e)
{
	struct best_arg *b = arg;
	json_t *ev, *v;

	if (e->round >= b->before || !is_designer_row(e, &ev))
		return 0;
	v = json_object_get(ev, "val_loss");
	if (json_is_number(v) && (isnan(b->best) || json_number_value(v) < b->best))
		b->best = json_number_value(v);
	json_decref(ev);
	return 0;
}

int mining_ledger_best(struct ledger *l, const char *job, long round, double *ret)
{
	struct best_arg b = { round, NAN };
	int r = ledger_foreach(l, job, NULL, best_row, &b);

	if (r == 0)
		*ret = b.best;
	return r;
}

/* ---- a round ---- */

/* The value function over the paid replicas only: coalition k of them, mapped back. */
struct sub_value {
	const struct mining_ledger_round *r;
	const int *idx;
	uint8_t *mask;
};

static int sub_value_fn(void *arg, const uint8_t *members, int n, double *ret)
{
	struct sub_value *s = arg;
	int i;

	memset(s->mask, 0, s->r->n);
	for (i = 0; i < n; i++)
		if (members[i])
			s->mask[s->idx[i]] = 1;
	return s->r->value(s->r->value_arg, s->mask, (int)s->r->n, ret);
}

/* Per account of the round: sums and the entries' evidence. */
struct acct {
	const char *name;
	int64_t compute, breakthrough;
	int flagged;
	json_t *replicas, *flags, *shapley;
};

static struct acct *acct_of(struct acct *a, size_t *n, const char *name)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp(a[i].name, name) == 0)
			return &a[i];
	memset(&a[*n], 0, sizeof(a[*n]));
	a[*n].name = name;
	a[*n].replicas = json_array();
	a[*n].flags = json_array();
	a[*n].shapley = json_array();
	if (!a[*n].replicas || !a[*n].flags || !a[*n].shapley)
		return NULL;
	return &a[(*n)++];
}

static json_t *evidence_obj(const char *text)
{
	json_t *j = text ? json_loads(text, 0, NULL) : json_object();

	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* The compute pay of each replica, and the accounts' rows with their flags. */
static int gather(const struct mining_ledger_cfg *cfg, const struct mining_ledger_round *r,
		  int64_t *pay, int *paid, struct acct *a, size_t *na)
{
	size_t i;
	int rc;

	for (i = 0; i < r->n; i++) {
		const struct mining_ledger_contrib *c = &r->c[i];
		struct acct *ac = acct_of(a, na, c->account);
		json_t *ev;

		if (!ac)
			return -ENOMEM;
		paid[i] = 0;
		pay[i] = 0;
		if (c->flag) {
			ev = evidence_obj(c->flag);
			if (!ev || json_array_append_new(ac->flags, ev) < 0)
				return -EINVAL;
			ac->flagged = 1;
			continue;
		}
		if (!c->accepted)
			continue;
		rc = reward_compute_pay(&cfg->billing, c->device_kind, c->device_seconds,
					c->price_micro_per_hour, &pay[i]);
		if (rc < 0)
			return rc;
		ev = evidence_obj(c->evidence);
		if (!ev)
			return -EINVAL;
		json_object_set_new(ev, "device_seconds", json_real(c->device_seconds));
		json_object_set_new(ev, "device_kind", json_string(c->device_kind));
		json_object_set_new(ev, "price_micro_per_hour",
				    json_integer(c->price_micro_per_hour));
		json_object_set_new(ev, "pay", json_integer(pay[i]));
		if (json_array_append_new(ac->replicas, ev) < 0)
			return -ENOMEM;
		ac->compute += pay[i];
		paid[i] = 1;
	}
	return 0;
}

/* The breakthrough reward split among the paid replicas; *ret_total what was paid. */
static int breakthrough(struct ledger *l, const struct mining_ledger_cfg *cfg,
			const struct mining_ledger_round *r, const int *paid, struct acct *a,
			size_t na, double *ret_best, int64_t *ret_total)
{
	int *idx = calloc(r->n, sizeof(int)), k = 0, rc;
	double *phi = calloc(r->n, sizeof(double)), best;
	int64_t *split = calloc(r->n, sizeof(int64_t)), reward = 0;
	uint8_t *mask = calloc(r->n, 1);
	struct sub_value sv = { r, idx, mask };
	size_t i, j;

	*ret_total = 0;
	if (!idx || !phi || !split || !mask) {
		rc = -ENOMEM;
		goto out;
	}
	rc = mining_ledger_best(l, r->job, r->round, &best);
	*ret_best = best;
	if (rc < 0 || !r->value || !isfinite(r->val_loss) || isnan(best))
		goto out;
	rc = reward_breakthrough(best, r->val_loss, cfg->eps, cfg->rate_micro, &reward);
	if (rc <= 0)
		goto out;
	for (i = 0; i < r->n; i++)
		if (paid[i])
			idx[k++] = (int)i;
	rc = 0;
	if (k == 0 || reward == 0)
		goto out;
	rc = reward_shapley(k, sub_value_fn, &sv, cfg->shapley_samples, cfg->seed ^ (uint64_t)r->round,
			    phi, NULL);
	if (rc < 0)
		goto out;
	*ret_total = reward_split_shapley(reward, k, phi, NULL, split);
	for (i = 0; i < (size_t)k; i++) {
		const char *acc = r->c[idx[i]].account;

		for (j = 0; j < na; j++)
			if (strcmp(a[j].name, acc) == 0) {
				a[j].breakthrough += split[i];
				json_array_append_new(a[j].shapley, json_real(phi[i]));
			}
	}
out:
	free(idx);
	free(phi);
	free(split);
	free(mask);
	return rc;
}

static char *dump(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(j);
	return s;
}

/* The batch: strings in texts (freed by the caller), credits in c. */
static int entries(const struct mining_ledger_cfg *cfg, const struct mining_ledger_round *r,
		   const char *job_acct, struct acct *a, size_t na, double best, int64_t total_bt,
		   struct ledger_credit *c, char **texts, size_t *ret_n)
{
	size_t n = 0, i;
	json_t *d;

	for (i = 0; i < na; i++) {
		struct ledger_credit base = { r->job, r->round, a[i].name, LEDGER_FLAG, 0, NULL, 0 };

		if (a[i].flagged) {
			c[n] = base;
			texts[n] = dump(json_pack("{s:O}", "flags", a[i].flags));
			c[n].evidence = texts[n];
			n++;
		}
		if (json_array_size(a[i].replicas)) {
			c[n] = base;
			c[n].kind = LEDGER_COMPUTE;
			c[n].amount = a[i].compute;
			texts[n] = dump(json_pack("{s:O}", "replicas", a[i].replicas));
			c[n].evidence = texts[n];
			n++;
		}
		if (a[i].breakthrough > 0) {
			c[n] = base;
			c[n].kind = LEDGER_BREAKTHROUGH;
			c[n].amount = a[i].breakthrough;
			texts[n] = dump(json_pack("{s:f, s:f, s:f, s:I, s:O}", "best", best,
						  "val_loss", r->val_loss, "eps", cfg->eps,
						  "reward", (json_int_t)total_bt, "shapley",
						  a[i].shapley));
			c[n].evidence = texts[n];
			n++;
		}
		if (a[i].compute + a[i].breakthrough > 0) {
			c[n] = base;
			c[n].kind = LEDGER_UNITS;
			c[n].amount = a[i].compute + a[i].breakthrough;
			texts[n] = strdup("{\"role\":\"provider\"}");
			c[n].evidence = texts[n];
			n++;
		}
	}
	d = json_pack("{s:s, s:s}", "role", "designer", "designer", r->designer);
	if (d && isfinite(r->val_loss))
		json_object_set_new(d, "val_loss", json_real(r->val_loss));
	if (d && isfinite(best))
		json_object_set_new(d, "best_before", json_real(best));
	c[n] = (struct ledger_credit){ r->job, r->round, job_acct, LEDGER_UNITS, 0, NULL, 0 };
	texts[n] = dump(d);
	c[n].evidence = texts[n];
	n++;
	for (i = 0; i < n; i++)
		if (!texts[i])
			return -ENOMEM;
	*ret_n = n;
	return 0;
}

int mining_ledger_book_round(struct ledger *l, const struct mining_ledger_cfg *cfg,
			     const struct mining_ledger_round *r, struct mining_ledger_paid *ret)
{
	size_t na = 0, nc = 0, i, cap = 4 * r->n + 1;
	int64_t *pay = calloc(r->n + 1, sizeof(int64_t)), total_bt = 0;
	int *paid = calloc(r->n + 1, sizeof(int));
	struct acct *a = calloc(r->n + 1, sizeof(*a));
	struct ledger_credit *c = calloc(cap, sizeof(*c));
	char **texts = calloc(cap, sizeof(char *));
	double best = NAN;
	char *job_acct = NULL;
	int rc;

	memset(ret, 0, sizeof(*ret));
	if (!r->job || !r->designer || r->round < 1 || (r->n && !r->c))
		rc = -EINVAL;
	else if (!pay || !paid || !a || !c || !texts)
		rc = -ENOMEM;
	else
		rc = gather(cfg, r, pay, paid, a, &na);
	if (rc == 0)
		rc = breakthrough(l, cfg, r, paid, a, na, &best, &total_bt);
	if (rc == 0)
		rc = asprintf(&job_acct, "job:%s", r->job) < 0 ? -ENOMEM : 0;
	if (rc == 0)
		rc = entries(cfg, r, job_acct, a, na, best, total_bt, c, texts, &nc);
	if (rc == 0)
		rc = ledger_append_batch(l, c, nc, &ret->appended);
	if (rc == 0) {
		for (i = 0; i < na; i++) {
			ret->compute += a[i].compute;
			ret->flags += a[i].flagged;
		}
		ret->breakthrough = total_bt;
	}
	for (i = 0; a && i < na; i++) {
		json_decref(a[i].replicas);
		json_decref(a[i].flags);
		json_decref(a[i].shapley);
	}
	for (i = 0; texts && i < cap; i++)
		free(texts[i]);
	free(texts);
	free(job_acct);
	free(c);
	free(a);
	free(paid);
	free(pay);
	return rc;
}

/* ---- revenue ---- */

struct holders {
	size_t n, cap;
	char **name;
	int64_t *units;
	char *designer;
	int64_t next_round;
};

static int holder_row(void *arg, const struct ledger_entry *e)
{
	struct holders *h = arg;
	json_t *ev;
	size_t i;

	if (e->kind != LEDGER_UNITS)
		return 0;
	if (is_designer_row(e, &ev)) {
		const char *d = json_string_value(json_object_get(ev, "designer"));

		if (!h->designer && d && *d)
			h->designer = strdup(d);
		json_decref(ev);
		return 0;
	}
	for (i = 0; i < h->n; i++)
		if (strcmp(h->name[i], e->account) == 0) {
			h->units[i] += e->amount;
			return 0;
		}
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 16;
		char **nm = realloc(h->name, cap * sizeof(*nm));
		int64_t *u;

		if (!nm)
			return -ENOMEM;
		h->name = nm;
		u = realloc(h->units, cap * sizeof(*u));
		if (!u)
			return -ENOMEM;
		h->units = u;
		h->cap = cap;
	}
	h->name[h->n] = strdup(e->account);
	if (!h->name[h->n])
		return -ENOMEM;
	h->units[h->n++] = e->amount;
	return 0;
}

static int revenue_row(void *arg, const struct ledger_entry *e)
{
	struct holders *h = arg;

	if (e->kind == LEDGER_REVENUE && e->round >= h->next_round)
		h->next_round = e->round + 1;
	return 0;
}

static int holds(const struct holders *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		if (strcmp(h->name[i], name) == 0)
			return 1;
	return 0;
}

static void holders_release(struct holders *h)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		free(h->name[i]);
	free(h->name);
	free(h->units);
	free(h->designer);
}

int mining_ledger_revenue(struct ledger *l, const struct mining_ledger_cfg *cfg,
			  const char *model, int64_t revenue_micro, const char *evidence,
			  int64_t *ret_round)
{
	struct holders h = { 0 };
	struct ledger_credit *c = NULL;
	int64_t designer = 0, *split = NULL, added = 0;
	char *job = NULL;
	size_t n, i;
	int rc, tries;

	if (!model || revenue_micro < 0 || revenue_micro > LEDGER_AMOUNT_MAX)
		return -EINVAL;
	if (asprintf(&job, "model:%s", model) < 0)
		return -ENOMEM;
	rc = ledger_foreach(l, model, NULL, holder_row, &h);
	if (rc < 0)
		goto out;
	if (!h.designer && h.n == 0) {
		rc = -ENOENT;
		goto out;
	}
	split = calloc(h.n + 1, sizeof(*split));
	c = calloc(h.n + 2, sizeof(*c));
	if (!split || !c) {
		rc = -ENOMEM;
		goto out;
	}
	rc = reward_revenue_split(revenue_micro, h.designer ? cfg->designer_bp : 0, (int)h.n,
				  h.units, &designer, split);
	if (rc < 0)
		goto out;
	if (!h.designer && designer > 0) { /* no units at all cannot happen here: holders > 0 */
		rc = -EINVAL;
		goto out;
	}
	for (i = 0; i < h.n; i++)
		if (h.designer && strcmp(h.name[i], h.designer) == 0)
			split[i] += designer; /* one share entry per account */
	/* another booking may take the same number first: then take the next */
	for (tries = 0; tries < 8 && added == 0; tries++) {
		h.next_round = 1;
		rc = ledger_foreach(l, job, NULL, revenue_row, &h);
		if (rc < 0)
			goto out;
		n = 0;
		c[n++] = (struct ledger_credit){ job, h.next_round, job, LEDGER_REVENUE,
						 revenue_micro, evidence, 0 };
		if (h.designer && designer > 0 && !holds(&h, h.designer))
			c[n++] = (struct ledger_credit){ job, h.next_round, h.designer, LEDGER_SHARE,
							 designer, "{\"role\":\"designer\"}", 0 };
		for (i = 0; i < h.n; i++)
			if (split[i] > 0)
				c[n++] = (struct ledger_credit){ job, h.next_round, h.name[i],
								 LEDGER_SHARE, split[i],
								 "{\"role\":\"provider\"}", 0 };
		rc = ledger_append_batch(l, c, n, &added);
		if (rc < 0)
			goto out;
	}
	if (added == 0) {
		rc = -EAGAIN;
		goto out;
	}
	if (ret_round)
		*ret_round = h.next_round;
out:
	holders_release(&h);
	free(split);
	free(c);
	free(job);
	return rc;
}

/* ---- transfer requests ---- */

/* MICRO: decimal digits only (no sign, no space, no exponent), 1 .. LEDGER_AMOUNT_MAX. */
static int parse_amount(const char *v, int64_t *ret)
{
	int64_t x = 0;
	const char *p;

	if (!*v || strlen(v) > 16)
		return -EINVAL;
	for (p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		x = x * 10 + (*p - '0');
	}
	if (x < 1 || x > LEDGER_AMOUNT_MAX)
		return -EINVAL;
	*ret = x;
	return 0;
}

int mining_ledger_transfer_parse(char *line, struct ledger_transfer *t, const char **why)
{
	char *save = NULL, *w;
	int have_amount = 0;

	t->to = t->key = NULL;
	t->amount = 0;
	for (w = strtok_r(line, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		char *v = strchr(w, '=');

		if (!v) {
			*why = "a word is not key=value";
			return -EINVAL;
		}
		*v++ = 0;
		if (!strcmp(w, "to") && !t->to) {
			t->to = v;
		} else if (!strcmp(w, "key") && !t->key) {
			t->key = v;
		} else if (!strcmp(w, "amount") && !have_amount) {
			if (parse_amount(v, &t->amount) < 0) {
				*why = "amount is not an integer number of micro-USD from 1 to 10^15";
				return -EINVAL;
			}
			have_amount = 1;
		} else {
			*why = "an unknown or repeated key (to=, amount=, key= once each)";
			return -EINVAL;
		}
	}
	if (!t->to || !t->key || !have_amount) {
		*why = "to=, amount= and key= are required";
		return -EINVAL;
	}
	return 0;
}
