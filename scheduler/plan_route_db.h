/*
 * plan_route_db: the journal that lets plan_route survive a restart — each
 * prompt's hashed n-gram counts (never its text) and each outcome, in
 * sqlite (WAL; the statistics file of plan_stats may hold it too: its own
 * tables, its own connection).
 *
 *   route_prompt(id INTEGER PRIMARY KEY, terms BLOB)   idx u32 + count f32
 *   route_outcome(prompt, arm, prior, quality, cost)
 *
 * Every write is its own transaction, done before plan_route updates its
 * memory.  Loading drops rows that do not decode (a bucket out of range,
 * buckets not increasing, a count below 1), so a damaged row costs that
 * row.
 * Not locked: plan_route calls it under its own mutex.  Errors: -errno,
 * sqlite's mapped by errno_of_sqlite() (common/errmap.h).
 */
#ifndef LLMFS_PLAN_ROUTE_DB_H
#define LLMFS_PLAN_ROUTE_DB_H

#include "plan_feat.h"

struct plan_route_db;

int plan_route_db_open(const char *path, struct plan_route_db **ret_db);
void plan_route_db_close(struct plan_route_db *db);

int plan_route_db_add(struct plan_route_db *db, long id,
		      const struct plan_feat *terms);
int plan_route_db_observe(struct plan_route_db *db, long id, const char *arm,
			  double prior, double quality, double cost);
/* Deletes every prompt and outcome. */
int plan_route_db_forget(struct plan_route_db *db);

/*
 * Every stored prompt in id order, then every outcome in insertion order;
 * a callback's error stops the load and is returned.  A prompt that does
 * not decode, or whose callback returns 1 (it cannot take it), is deleted
 * from the file with its outcomes.
 */
int plan_route_db_load(struct plan_route_db *db,
		       int (*prompt)(void *arg, long id,
				     const struct plan_feat *terms),
		       int (*outcome)(void *arg, long id, const char *arm,
				      double prior, double quality,
				      double cost),
		       void *arg);

#endif
