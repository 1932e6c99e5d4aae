/* plan_route_db: plan_route's journal in sqlite (plan_route_db.h). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "plan_route_db.h"
#include "common/errmap.h"

struct plan_route_db {
	sqlite3 *db;
	sqlite3_stmt *add, *obs;
};

static const char schema_sql[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=FULL;"
	"CREATE TABLE IF NOT EXISTS route_prompt("
	" id INTEGER PRIMARY KEY, terms BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS route_outcome("
	" prompt INTEGER NOT NULL, arm TEXT NOT NULL, prior REAL NOT NULL,"
	" quality REAL NOT NULL, cost REAL NOT NULL);";

int plan_route_db_open(const char *path, struct plan_route_db **ret_db)
{
	struct plan_route_db *d = calloc(1, sizeof(*d));
	int rc;

	*ret_db = NULL;
	if (!d)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE |
			     SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(d->db, 5000);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(d->db, schema_sql, NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(d->db, "INSERT INTO route_prompt(id, "
					"terms) VALUES(?, ?)", -1, &d->add, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(d->db, "INSERT INTO route_outcome("
					"prompt, arm, prior, quality, cost) "
					"VALUES(?, ?, ?, ?, ?)", -1, &d->obs,
					NULL);
	if (rc != SQLITE_OK) {
		plan_route_db_close(d);
		return errno_of_sqlite(rc);
	}
	*ret_db = d;
	return 0;
}

void plan_route_db_close(struct plan_route_db *d)
{
	if (!d)
		return;
	sqlite3_finalize(d->add);
	sqlite3_finalize(d->obs);
	sqlite3_close(d->db);
	free(d);
}

static int step(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : errno_of_sqlite(rc);
}

int plan_route_db_add(struct plan_route_db *d, long id,
		      const struct plan_feat *terms)
{
	size_t n = terms->n;
	unsigned char *blob = malloc(n * 8 + 1);
	int rc;

	if (!blob)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		memcpy(blob + 8 * i, &terms->idx[i], 4);
		memcpy(blob + 8 * i + 4, &terms->val[i], 4);
	}
	sqlite3_bind_int64(d->add, 1, id);
	sqlite3_bind_blob(d->add, 2, blob, (int)(n * 8), SQLITE_TRANSIENT);
	rc = step(d->add);
	free(blob);
	return rc;
}

int plan_route_db_observe(struct plan_route_db *d, long id, const char *arm,
			  double prior, double quality, double cost)
{
	sqlite3_bind_int64(d->obs, 1, id);
	sqlite3_bind_text(d->obs, 2, arm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_double(d->obs, 3, prior);
	sqlite3_bind_double(d->obs, 4, quality);
	sqlite3_bind_double(d->obs, 5, cost);
	return step(d->obs);
}

int plan_route_db_forget(struct plan_route_db *d)
{
	int rc = sqlite3_exec(d->db, "BEGIN; DELETE FROM route_outcome;"
			      " DELETE FROM route_prompt; COMMIT;", NULL, NULL,
			      NULL);

	if (rc != SQLITE_OK) {
		sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
		return errno_of_sqlite(rc);
	}
	return 0;
}

/* The blob back into sparse counts; -EINVAL when it is not one. */
static int decode(const void *blob, int len, struct plan_feat *ret)
{
	const unsigned char *b = blob;
	size_t n = len > 0 ? (size_t)len / 8 : 0;

	memset(ret, 0, sizeof(*ret));
	if (len < 0 || len % 8)
		return -EINVAL;
	ret->idx = malloc((n + 1) * sizeof(*ret->idx));
	ret->val = malloc((n + 1) * sizeof(*ret->val));
	if (!ret->idx || !ret->val) {
		plan_feat_release(ret);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(&ret->idx[i], b + 8 * i, 4);
		memcpy(&ret->val[i], b + 8 * i + 4, 4);
		if (ret->idx[i] >= PLAN_FEAT_DIM ||
		    (i && ret->idx[i] <= ret->idx[i - 1]) ||
		    !isfinite(ret->val[i]) || ret->val[i] < 1) {
			plan_feat_release(ret);
			return -EINVAL;
		}
	}
	ret->n = n;
	return 0;
}

/* Deletes the prompts listed and their outcomes. */
static int drop(struct plan_route_db *d, const long *ids, size_t n)
{
	sqlite3_stmt *a = NULL, *b = NULL;
	int rc;

	rc = sqlite3_prepare_v2(d->db, "DELETE FROM route_prompt WHERE id = ?",
				-1, &a, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(d->db, "DELETE FROM route_outcome "
					"WHERE prompt = ?", -1, &b, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		sqlite3_bind_int64(a, 1, ids[i]);
		sqlite3_bind_int64(b, 1, ids[i]);
		rc = step(a) ? SQLITE_ERROR : SQLITE_OK;
		if (rc == SQLITE_OK)
			rc = step(b) ? SQLITE_ERROR : SQLITE_OK;
	}
	sqlite3_finalize(a);
	sqlite3_finalize(b);
	return rc == SQLITE_OK ? 0 : -EIO;
}

int plan_route_db_load(struct plan_route_db *d,
		       int (*prompt)(void *arg, long id,
				     const struct plan_feat *terms),
		       int (*outcome)(void *arg, long id, const char *arm,
				      double prior, double quality,
				      double cost),
		       void *arg)
{
	sqlite3_stmt *st = NULL;
	long *bad = NULL;
	size_t n_bad = 0, cap_bad = 0;
	int rc, r = 0;

	rc = sqlite3_prepare_v2(d->db, "SELECT id, terms FROM route_prompt "
				"ORDER BY id", -1, &st, NULL);
	while (rc == SQLITE_OK && r >= 0 && sqlite3_step(st) == SQLITE_ROW) {
		long id = (long)sqlite3_column_int64(st, 0);
		struct plan_feat f;

		r = decode(sqlite3_column_blob(st, 1),
			   sqlite3_column_bytes(st, 1), &f);
		if (r == 0) {
			r = prompt(arg, id, &f);
			plan_feat_release(&f);
		} else if (r == -EINVAL) {
			r = 1;
		}
		if (r != 1)
			continue;
		/* Not usable: dropped from the file, so ids stay dense. */
		if (n_bad == cap_bad) {
			long *v = realloc(bad, (cap_bad = cap_bad * 2 + 8) *
					  sizeof(*v));

			if (!v) {
				r = -ENOMEM;
				break;
			}
			bad = v;
		}
		bad[n_bad++] = id;
		r = 0;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_OK && r == 0 && n_bad)
		r = drop(d, bad, n_bad);
	free(bad);
	if (rc == SQLITE_OK && r == 0)
		rc = sqlite3_prepare_v2(d->db, "SELECT prompt, arm, prior, "
					"quality, cost FROM route_outcome "
					"ORDER BY rowid", -1, &st, NULL);
	while (rc == SQLITE_OK && r == 0 && sqlite3_step(st) == SQLITE_ROW) {
		const char *arm = (const char *)sqlite3_column_text(st, 1);

		if (arm)
			r = outcome(arg, (long)sqlite3_column_int64(st, 0),
				    arm, sqlite3_column_double(st, 2),
				    sqlite3_column_double(st, 3),
				    sqlite3_column_double(st, 4));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	return r;
}
