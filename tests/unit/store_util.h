/*
 * store_util.h - helpers the store's unit tests share (test_store.c,
 * test_gc.c): a store opened or the test stops, fsck that prints what it
 * finds, and SQL run on a store's catalog behind the store's back (to
 * lower or drop rows the way a crash or damage would).
 */
#ifndef LLMFS_STORE_UTIL_H
#define LLMFS_STORE_UTIL_H

#include <stdint.h>

#include <sqlite3.h>

#include "backend/store/store.h"
#include "tests/check.h"

/* An fsck line: printed, and counted in *(int *)arg when arg is given. */
static inline void fsck_line(void *arg, const char *line)
{
	fprintf(stderr, "  fsck: %s\n", line);
	if (arg)
		(*(int *)arg)++;
}

/* The problems cas_fsck() finds (without repair), each line printed. */
static inline int fsck_problems(struct cas_store *st)
{
	return cas_fsck(st, 0, fsck_line, NULL);
}

/* Opens the store in dir; a failure fails the test and ends it. */
static inline struct cas_store *store_open_in(const char *dir, uint64_t pack_max)
{
	struct cas_options o = { .pack_max = pack_max, .threads = 2 };
	struct cas_store *st = NULL;
	char err[512];
	int r = cas_store_open(dir, &o, &st, err, sizeof(err));

	if (r < 0)
		fprintf(stderr, "open %s: %s\n", dir, err);
	CHECK_EQ(r, 0);
	if (r < 0)
		exit(1);
	return st;
}

/* Runs sql on dir's catalog through a second connection (the store may be open). */
static inline void catalog_sql(const char *dir, const char *sql)
{
	char path[512];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

#endif
