/* plan_stats: see plan_stats.h for the model and the contract. */
#include "plan_stats.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmap.h"

/* The pooled row of a model uses this task type; real types are never empty. */
#define POOLED ""

struct stat_row {
	struct stat_row *next;
	char *model;
	char *task_type;
	double n, q_sum;
	double cost_sum, cost_n;
	double lat_sum, lat_n;
};

struct plan_stats {
	pthread_mutex_t lock;   /* guards everything below */
	struct stat_row **buckets;
	size_t n_buckets;
	size_t n_rows;
	double prior_strength;
	sqlite3 *db;            /* NULL: memory only */
	sqlite3_stmt *upsert;
};

static size_t row_hash(const char *model, const char *type)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = model; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *p = type; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return (size_t)h;
}

static struct stat_row *row_find(struct plan_stats *s, const char *model,
				 const char *type)
{
	struct stat_row *r = s->buckets[row_hash(model, type) % s->n_buckets];

	for (; r; r = r->next)
		if (!strcmp(r->model, model) && !strcmp(r->task_type, type))
			return r;
	return NULL;
}

static int grow(struct plan_stats *s)
{
	size_t nb = s->n_buckets * 2;
	struct stat_row **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_buckets; i++) {
		struct stat_row *r = s->buckets[i], *next;

		for (; r; r = next) {
			size_t h = row_hash(r->model, r->task_type) % nb;

			next = r->next;
			r->next = b[h];
			b[h] = r;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->n_buckets = nb;
	return 0;
}

static int row_get(struct plan_stats *s, const char *model, const char *type,
		   struct stat_row **ret)
{
	struct stat_row *r = row_find(s, model, type);
	size_t h;

	if (r) {
		*ret = r;
		return 0;
	}
	if (s->n_rows + 1 > s->n_buckets * 2 && grow(s) < 0)
		return -ENOMEM;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->model = strdup(model);
	r->task_type = strdup(type);
	if (!r->model || !r->task_type) {
		free(r->model);
		free(r->task_type);
		free(r);
		return -ENOMEM;
	}
	h = row_hash(model, type) % s->n_buckets;
	r->next = s->buckets[h];
	s->buckets[h] = r;
	s->n_rows++;
	*ret = r;
	return 0;
}

static void row_add(struct stat_row *r, double n, double q_sum,
		    double cost_sum, double cost_n, double lat_sum,
		    double lat_n)
{
	r->n += n;
	r->q_sum += q_sum;
	r->cost_sum += cost_sum;
	r->cost_n += cost_n;
	r->lat_sum += lat_sum;
	r->lat_n += lat_n;
}

/* Adds to the row and to its model's pooled row. */
static int add_both(struct plan_stats *s, const char *model, const char *type,
		    double n, double q_sum, double cost_sum, double cost_n,
		    double lat_sum, double lat_n)
{
	struct stat_row *r, *p;
	int rc;

	rc = row_get(s, model, type, &r);
	if (rc < 0)
		return rc;
	rc = row_get(s, model, POOLED, &p);
	if (rc < 0)
		return rc;
	row_add(r, n, q_sum, cost_sum, cost_n, lat_sum, lat_n);
	row_add(p, n, q_sum, cost_sum, cost_n, lat_sum, lat_n);
	return 0;
}

static const char schema_sql[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=FULL;"
	"CREATE TABLE IF NOT EXISTS plan_stats("
	" model TEXT NOT NULL, task_type TEXT NOT NULL,"
	" n REAL NOT NULL, q_sum REAL NOT NULL,"
	" cost_sum REAL NOT NULL, cost_n REAL NOT NULL,"
	" lat_sum REAL NOT NULL, lat_n REAL NOT NULL,"
	" PRIMARY KEY(model, task_type));";

static const char upsert_sql[] =
	"INSERT INTO plan_stats VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
	" ON CONFLICT(model, task_type) DO UPDATE SET"
	" n = n + ?3, q_sum = q_sum + ?4, cost_sum = cost_sum + ?5,"
	" cost_n = cost_n + ?6, lat_sum = lat_sum + ?7, lat_n = lat_n + ?8;";

static int db_load(struct plan_stats *s)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(s->db,
		"SELECT model, task_type, n, q_sum, cost_sum, cost_n, lat_sum,"
		" lat_n FROM plan_stats;", -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *model = (const char *)sqlite3_column_text(st, 0);
		const char *type = (const char *)sqlite3_column_text(st, 1);
		int r;

		if (!model || !type || !*type)
			continue;
		r = add_both(s, model, type, sqlite3_column_double(st, 2),
			     sqlite3_column_double(st, 3),
			     sqlite3_column_double(st, 4),
			     sqlite3_column_double(st, 5),
			     sqlite3_column_double(st, 6),
			     sqlite3_column_double(st, 7));
		if (r < 0) {
			sqlite3_finalize(st);
			return r;
		}
	}
out:
	sqlite3_finalize(st);
	return errno_of_sqlite(rc);
}

int plan_stats_open(const char *db_path, double prior_strength,
		    struct plan_stats **ret_stats)
{
	struct plan_stats *s;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->prior_strength = prior_strength > 0 ? prior_strength : 2.0;
	s->n_buckets = 64;
	s->buckets = calloc(s->n_buckets, sizeof(*s->buckets));
	if (!s->buckets) {
		rc = -ENOMEM;
		goto fail;
	}
	if (db_path) {
		rc = sqlite3_open_v2(db_path, &s->db,
				     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_FULLMUTEX, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_busy_timeout(s->db, 5000);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_prepare_v2(s->db, upsert_sql, -1,
						&s->upsert, NULL);
		if (rc != SQLITE_OK) {
			rc = errno_of_sqlite(rc);
			goto fail;
		}
		rc = db_load(s);
		if (rc < 0)
			goto fail;
	}
	*ret_stats = s;
	return 0;
fail:
	plan_stats_free(s);
	return rc;
}

void plan_stats_free(struct plan_stats *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->upsert);
	sqlite3_close(s->db);
	for (size_t i = 0; s->buckets && i < s->n_buckets; i++) {
		struct stat_row *r = s->buckets[i], *next;

		for (; r; r = next) {
			next = r->next;
			free(r->model);
			free(r->task_type);
			free(r);
		}
	}
	free(s->buckets);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int db_write(struct plan_stats *s, const char *model, const char *type,
		    double n, double q, double cost_sum, double cost_n, double lat_sum,
		    double lat_n)
{
	sqlite3_stmt *st = s->upsert;
	int rc;

	rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE;", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 3, n);
	sqlite3_bind_double(st, 4, q);
	sqlite3_bind_double(st, 5, cost_sum);
	sqlite3_bind_double(st, 6, cost_n);
	sqlite3_bind_double(st, 7, lat_sum);
	sqlite3_bind_double(st, 8, lat_n);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		sqlite3_exec(s->db, "ROLLBACK;", NULL, NULL, NULL);
		return errno_of_sqlite(rc);
	}
	rc = sqlite3_exec(s->db, "COMMIT;", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_exec(s->db, "ROLLBACK;", NULL, NULL, NULL);
		return errno_of_sqlite(rc);
	}
	return 0;
}

int plan_stats_record(struct plan_stats *s, const char *model,
		      const char *task_type, double quality, double cost_usd,
		      double latency_s)
{
	double cost_sum = 0, cost_n = 0, lat_sum = 0, lat_n = 0, n = 1;
	int rc;

	if (!model || !*model || !task_type || !*task_type)
		return -EINVAL;
	if (isnan(quality)) {
		n = 0;
		quality = 0;
	}
	quality = quality < 0 ? 0 : quality > 1 ? 1 : quality;
	if (cost_usd >= 0) {
		cost_sum = cost_usd;
		cost_n = 1;
	}
	if (latency_s >= 0) {
		lat_sum = latency_s;
		lat_n = 1;
	}
	pthread_mutex_lock(&s->lock);
	/* Durable first: memory must never hold what a restart would lose. */
	if (s->db) {
		rc = db_write(s, model, task_type, n, quality, cost_sum,
			      cost_n, lat_sum, lat_n);
		if (rc < 0)
			goto out;
	}
	rc = add_both(s, model, task_type, n, quality, cost_sum, cost_n,
		      lat_sum, lat_n);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void estimate_locked(struct plan_stats *s, const char *model,
			    const char *type, struct plan_estimate *e)
{
	struct stat_row *p = row_find(s, model, POOLED);
	struct stat_row *r = row_find(s, model, type);
	double m = 0.5, k = s->prior_strength;

	if (p)
		m = (1.0 + p->q_sum) / (2.0 + p->n);
	e->n = r ? r->n : 0;
	e->q_sum = r ? r->q_sum : 0;
	e->alpha = k * m + (r ? r->q_sum : 0);
	e->beta = k * (1.0 - m) + (r ? r->n - r->q_sum : 0);
	e->quality = e->alpha / (e->alpha + e->beta);
	/* An unseen type borrows the model's pooled cost and latency. */
	if (r && r->cost_n > 0)
		e->cost = r->cost_sum / r->cost_n;
	else if (p && p->cost_n > 0)
		e->cost = p->cost_sum / p->cost_n;
	else
		e->cost = -1;
	if (r && r->lat_n > 0)
		e->latency = r->lat_sum / r->lat_n;
	else if (p && p->lat_n > 0)
		e->latency = p->lat_sum / p->lat_n;
	else
		e->latency = -1;
}

int plan_stats_estimate(struct plan_stats *s, const char *model,
			const char *task_type, struct plan_estimate *ret_est)
{
	if (!model || !task_type)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	estimate_locked(s, model, task_type, ret_est);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

double plan_estimate_sample(const struct plan_estimate *e,
			    struct plan_rng *rng)
{
	return plan_rng_beta(rng, e->alpha, e->beta);
}

static double beta_sd(const struct plan_estimate *e)
{
	double s = e->alpha + e->beta;

	return sqrt(e->alpha * e->beta / (s * s * (s + 1.0)));
}

double plan_estimate_ucb(const struct plan_estimate *e, double c)
{
	double u = e->quality + c * beta_sd(e);

	return u > 1.0 ? 1.0 : u;
}

static int cmp_rows(const void *a, const void *b)
{
	const struct stat_row *x = *(struct stat_row *const *)a;
	const struct stat_row *y = *(struct stat_row *const *)b;
	int c = strcmp(x->model, y->model);

	return c ? c : strcmp(x->task_type, y->task_type);
}

int plan_stats_format(struct plan_stats *s, char **ret_text)
{
	struct stat_row **v = NULL;
	struct plan_buf b;
	size_t n = 0;
	int rc = 0;

	plan_buf_init(&b);
	pthread_mutex_lock(&s->lock);
	v = calloc(s->n_rows + 1, sizeof(*v));
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < s->n_buckets; i++)
		for (struct stat_row *r = s->buckets[i]; r; r = r->next)
			if (*r->task_type)
				v[n++] = r;
	qsort(v, n, sizeof(*v), cmp_rows);
	rc = plan_buf_puts(&b, "model\ttask_type\tn\tquality\tq05\tq95\t"
			   "cost_usd\tlatency_s\n");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct plan_estimate e;
		double sd, lo, hi;

		estimate_locked(s, v[i]->model, v[i]->task_type, &e);
		sd = beta_sd(&e);
		lo = fmax(0.0, e.quality - 1.645 * sd);
		hi = fmin(1.0, e.quality + 1.645 * sd);
		rc = plan_buf_printf(&b, "%s\t%s\t%.0f\t%.4f\t%.4f\t%.4f\t",
				     v[i]->model, v[i]->task_type, e.n,
				     e.quality, lo, hi);
		if (rc == 0 && e.cost >= 0)
			rc = plan_buf_printf(&b, "%.6f\t", e.cost);
		else if (rc == 0)
			rc = plan_buf_puts(&b, "-\t");
		if (rc == 0 && e.latency >= 0)
			rc = plan_buf_printf(&b, "%.3f\n", e.latency);
		else if (rc == 0)
			rc = plan_buf_puts(&b, "-\n");
	}
out:
	pthread_mutex_unlock(&s->lock);
	free(v);
	if (rc < 0) {
		plan_buf_release(&b);
		return rc;
	}
	*ret_text = plan_buf_steal(&b);
	return *ret_text ? 0 : -ENOMEM;
}
