/*
 * catalog.c - the sqlite schema and the statements over it.
 *
 * Statements are prepared once, on first use, and kept in c->stmt[].
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backend/store/catalog.h"
#include "common/errmap.h"

enum {
	S_GET, S_LOOKUP, S_INSERT, S_DELETE, S_ORPHAN, S_MOVE, S_SETATTR,
	S_NCHILD, S_CHILDREN, S_ORPHANS, S_READLINK, S_GETCONTENT, S_SETCONTENT,
	S_CHUNK_GET, S_CHUNK_INS, S_CHUNK_REF, S_CHUNK_DEL,
	S_CHUNKS_DEAD, S_FETCHED_ADD, S_FETCHED_PRUNE, S_CHUNKS_PACK, S_PACK_UPD, S_PACK_DEL, S_PACKS, S_FILES,
	S_CHUNKS_ALL, S_PATH, S_BEGIN, S_COMMIT, S_ROLLBACK, S_SAVE, S_RELEASE, S_UNDO, S_SYNC_NORMAL, S_SYNC_FULL, S_TOUCH, S_DMG_MARK,
	S_DMG_HAS, S_DMG_CLEAR, S_CHUNK_RELOC, S_INL_PUT, S_INL_GET, S_INL_DEL, S_INL_LIST,
	S_INL_COUNT, S_VER_ADD, S_VER_HAS, S_VER_CLEAR, S_VER_COUNT, S_BIG_COUNT, S_MAX
};

static const char *const sql_text[S_MAX] = {
	[S_GET] = "SELECT ino, parent, mode, uid, gid, nlink, size, mtime, ctime"
		  " FROM inodes WHERE ino = ?1",
	[S_LOOKUP] = "SELECT ino, parent, mode, uid, gid, nlink, size, mtime, ctime"
		     " FROM inodes WHERE parent = ?1 AND name = ?2",
	[S_INSERT] = "INSERT INTO inodes(parent, name, mode, uid, gid, nlink, size,"
		     " mtime, ctime, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
	[S_DELETE] = "DELETE FROM inodes WHERE ino = ?1",
	[S_ORPHAN] = "UPDATE inodes SET nlink = 0, parent = 0, name = '#' || ino"
		     " WHERE ino = ?1",
	[S_MOVE] = "UPDATE inodes SET parent = ?2, name = ?3, ctime = ?4 WHERE ino = ?1",
	[S_SETATTR] = "UPDATE inodes SET mode = ?2, uid = ?3, gid = ?4, mtime = ?5,"
		      " ctime = ?6 WHERE ino = ?1",
	[S_NCHILD] = "SELECT count(*) FROM inodes WHERE parent = ?1",
	[S_CHILDREN] = "SELECT ino, parent, mode, uid, gid, nlink, size, mtime, ctime,"
		       " name FROM inodes WHERE parent = ?1 ORDER BY name",
	[S_ORPHANS] = "SELECT ino FROM inodes WHERE nlink = 0",
	[S_READLINK] = "SELECT target FROM inodes WHERE ino = ?1",
	[S_GETCONTENT] = "SELECT chunks, sha256 FROM inodes WHERE ino = ?1",
	[S_SETCONTENT] = "UPDATE inodes SET chunks = ?2, size = ?3, sha256 = ?4,"
			 " mtime = ?5, ctime = ?5 WHERE ino = ?1",
	[S_CHUNK_GET] = "SELECT id, pack, off, clen, ulen, scheme, refs FROM chunks"
			" WHERE id = ?1",
	[S_CHUNK_INS] = "INSERT INTO chunks(id, pack, off, clen, ulen, scheme, refs)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
	[S_CHUNK_REF] = "UPDATE chunks SET refs = refs + ?2 WHERE id = ?1",
	[S_CHUNK_DEL] = "DELETE FROM chunks WHERE id = ?1",
	[S_CHUNKS_DEAD] = "SELECT id, pack, off, clen, ulen, scheme FROM chunks"
			  " WHERE refs <= 0 AND id NOT IN"
			  " (SELECT id FROM fetched WHERE at >= ?1)",
	[S_FETCHED_ADD] = "INSERT OR REPLACE INTO fetched(id, at) VALUES (?1, ?2)",
	[S_FETCHED_PRUNE] = "DELETE FROM fetched WHERE at < ?1",
	[S_CHUNKS_PACK] = "SELECT id, pack, off, clen, ulen, scheme FROM chunks"
			  " WHERE pack = ?1",
	[S_PACK_UPD] = "INSERT INTO packs(id, size, live) VALUES (?1, ?2, ?3)"
		       " ON CONFLICT(id) DO UPDATE SET"
		       " size = max(size, excluded.size), live = live + excluded.live",
	[S_PACK_DEL] = "DELETE FROM packs WHERE id = ?1",
	[S_PACKS] = "SELECT id, size, live FROM packs ORDER BY id",
	[S_FILES] = "SELECT ino, chunks, size FROM inodes WHERE (mode & 61440) = 32768",
	[S_CHUNKS_ALL] = "SELECT id, pack, off, clen, ulen, scheme, refs FROM chunks",
	[S_PATH] = "SELECT parent, name FROM inodes WHERE ino = ?1",
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SAVE] = "SAVEPOINT member",
	[S_RELEASE] = "RELEASE member",
	[S_UNDO] = "ROLLBACK TO member",
	[S_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
	[S_SYNC_FULL] = "PRAGMA synchronous=FULL",
	[S_TOUCH] = "UPDATE meta SET value = value WHERE key = 'format'",
	[S_DMG_MARK] = "INSERT OR IGNORE INTO damaged(id) VALUES (?1)",
	[S_DMG_HAS] = "SELECT 1 FROM damaged WHERE id = ?1",
	[S_DMG_CLEAR] = "DELETE FROM damaged WHERE id = ?1",
	[S_CHUNK_RELOC] = "UPDATE chunks SET pack = ?2, off = ?3, clen = ?4, ulen = ?5,"
			  " scheme = ?6 WHERE id = ?1",
	[S_INL_PUT] = "INSERT OR REPLACE INTO inline_recs(id, data) VALUES (?1, ?2)",
	[S_INL_GET] = "SELECT data FROM inline_recs WHERE id = ?1",
	[S_INL_DEL] = "DELETE FROM inline_recs WHERE id = ?1",
	[S_INL_LIST] = "SELECT c.id, c.pack, c.off, c.clen, c.ulen, c.scheme, i.data"
		       " FROM inline_recs i JOIN chunks c ON c.id = i.id"
		       " WHERE c.pack = ?1 LIMIT ?2",
	[S_INL_COUNT] = "SELECT count(*) FROM inline_recs",
	[S_VER_ADD] = "INSERT OR IGNORE INTO verified_lists(digest) VALUES (?1)",
	[S_VER_HAS] = "SELECT 1 FROM verified_lists WHERE digest = ?1",
	[S_VER_CLEAR] = "DELETE FROM verified_lists",
	[S_VER_COUNT] = "SELECT count(*) FROM verified_lists",
	[S_BIG_COUNT] = "SELECT count(*) FROM inodes WHERE size >= ?1 AND chunks IS NOT NULL",
};

/* Chunks a read found damaged: the next write of the same bytes replaces them. */
static const char damaged_schema[] =
	"CREATE TABLE IF NOT EXISTS damaged(id BLOB PRIMARY KEY) WITHOUT ROWID;"
	/* Chunks fetched from a remote before any file refers to them. */
	"CREATE TABLE IF NOT EXISTS fetched(id BLOB PRIMARY KEY,"
	" at INTEGER NOT NULL) WITHOUT ROWID;"
	/* Encoded bytes of small chunks committed with their file (inline). */
	"CREATE TABLE IF NOT EXISTS inline_recs(id BLOB PRIMARY KEY,"
	" data BLOB NOT NULL);"
	/* Digests of (SHA-256, chunk list) pairs a whole read has confirmed. */
	"CREATE TABLE IF NOT EXISTS verified_lists(digest BLOB PRIMARY KEY) WITHOUT ROWID;";

static const char schema[] =
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE inodes("
	" ino INTEGER PRIMARY KEY,"
	" parent INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
	" nlink INTEGER NOT NULL,"
	" size INTEGER NOT NULL DEFAULT 0,"
	" mtime INTEGER NOT NULL, ctime INTEGER NOT NULL,"
	" sha256 BLOB, chunks BLOB, target TEXT);"
	"CREATE UNIQUE INDEX inodes_name ON inodes(parent, name);"
	"CREATE TABLE chunks("
	" id BLOB PRIMARY KEY, pack INTEGER NOT NULL, off INTEGER NOT NULL,"
	" clen INTEGER NOT NULL, ulen INTEGER NOT NULL, scheme INTEGER NOT NULL,"
	" refs INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX chunks_pack ON chunks(pack);"
	"CREATE TABLE packs(id INTEGER PRIMARY KEY, size INTEGER NOT NULL,"
	" live INTEGER NOT NULL);";

struct cat {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_MAX];
	int unsynced; /* a commit since the last synced one was not synced */
};

static sqlite3_stmt *stmt(struct cat *c, int which)
{
	sqlite3_stmt *s = c->stmt[which];

	if (!s) {
		if (sqlite3_prepare_v3(c->db, sql_text[which], -1,
				       SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
			return NULL;
		c->stmt[which] = s;
	}
	return s;
}

/* Runs a statement that returns no rows; resets it. */
static int step_done(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : errno_of_sqlite(rc);
}

static void finish(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Steps a statement expected to return one row: 0, -ENOENT or -errno. */
static int step_one(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : errno_of_sqlite(rc);
}

/* count(*) of a statement whose ?1 (if any) is already bound. */
static int count_of(sqlite3_stmt *s, int64_t *ret)
{
	int r;

	if (!s)
		return -EIO;
	r = step_one(s);
	if (r == 0)
		*ret = sqlite3_column_int64(s, 0);
	finish(s);
	return r;
}

static int exec(struct cat *c, const char *sql)
{
	return errno_of_sqlite(sqlite3_exec(c->db, sql, NULL, NULL, NULL));
}

static int meta_get_int(struct cat *c, const char *key, long long *ret)
{
	sqlite3_stmt *s;
	int rc;

	rc = sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key = ?1", -1,
				&s, NULL);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : errno_of_sqlite(rc);
}

static int create_schema(struct cat *c)
{
	char sql[512];
	long long now = (long long)time(NULL) * 1000000000;
	int r;

	r = exec(c, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	r = exec(c, schema);
	if (r < 0)
		goto fail;
	snprintf(sql, sizeof(sql),
		 "INSERT INTO meta VALUES ('format', '%d');"
		 "INSERT INTO inodes(ino, parent, name, mode, uid, gid, nlink, mtime,"
		 " ctime) VALUES (%d, 0, '', %d, 0, 0, 2, %lld, %lld);",
		 CAT_FORMAT, CAT_ROOT_INO, S_IFDIR | 0755, now, now);
	r = exec(c, sql);
	if (r < 0)
		goto fail;
	return exec(c, "COMMIT");
fail:
	exec(c, "ROLLBACK");
	return r;
}

int cat_open(const char *path, struct cat **ret, char *err, size_t errlen)
{
	struct cat *c;
	long long format = 0;
	int rc, r, exists;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "cannot open catalog %s: %s", path,
			 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		r = errno_of_sqlite(rc);
		goto fail;
	}
	sqlite3_busy_timeout(c->db, 5000);
	r = exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		    " PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864;");
	if (r < 0) {
		snprintf(err, errlen, "catalog %s: %s", path, sqlite3_errmsg(c->db));
		goto fail;
	}
	r = meta_get_int(c, "format", &format);
	exists = r == 0;
	if (!exists) {
		sqlite3_stmt *s;

		/* No meta row: a new catalog, unless other tables exist. */
		rc = sqlite3_prepare_v2(c->db, "SELECT count(*) FROM sqlite_master",
					-1, &s, NULL);
		if (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW ||
		    sqlite3_column_int(s, 0) != 0) {
			sqlite3_finalize(s);
			snprintf(err, errlen, "%s is not an llmfs catalog", path);
			r = -EINVAL;
			goto fail;
		}
		sqlite3_finalize(s);
		r = create_schema(c);
		if (r < 0) {
			snprintf(err, errlen, "cannot create catalog %s: %s", path,
				 strerror(-r));
			goto fail;
		}
	} else if (format > CAT_FORMAT) {
		snprintf(err, errlen,
			 "store format %lld is newer than this llmfs supports (%d);"
			 " upgrade llmfs to open it",
			 format, CAT_FORMAT);
		r = -EPROTONOSUPPORT;
		goto fail;
	}
	r = exec(c, damaged_schema);
	if (r < 0 && r != -EROFS) {
		snprintf(err, errlen, "catalog %s: %s", path, sqlite3_errmsg(c->db));
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	cat_close(c);
	return r;
}

void cat_close(struct cat *c)
{
	int i;

	if (!c)
		return;
	for (i = 0; i < S_MAX; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_close(c->db);
	free(c);
}

static int run_simple(struct cat *c, int which)
{
	sqlite3_stmt *s = stmt(c, which);

	return s ? step_done(s) : -EIO;
}

int cat_begin(struct cat *c)
{
	return run_simple(c, S_BEGIN);
}

int cat_commit(struct cat *c)
{
	int r = run_simple(c, S_COMMIT);

	if (r < 0)
		cat_rollback(c);
	else
		c->unsynced = 0;
	return r;
}

/*
 * In WAL mode a commit with synchronous=NORMAL writes its frames without
 * an fsync; the next synced commit's fsync of the WAL covers them too.
 * The setting changes outside the transaction only.
 */
int cat_begin_unsynced(struct cat *c)
{
	int r = run_simple(c, S_SYNC_NORMAL);

	if (r == 0)
		r = cat_begin(c);
	if (r < 0)
		run_simple(c, S_SYNC_FULL);
	return r;
}

int cat_end_unsynced(struct cat *c, int r)
{
	if (r == 0)
		r = run_simple(c, S_COMMIT);
	if (r < 0)
		cat_rollback(c);
	else
		c->unsynced = 1;
	/* Back to FULL whatever happened: no other commit may go unsynced. */
	if (run_simple(c, S_SYNC_FULL) < 0 && r == 0)
		r = -EIO;
	return r;
}

int cat_sync(struct cat *c)
{
	int r;

	if (!c->unsynced)
		return 0;
	r = cat_begin(c);
	if (r == 0)
		r = run_simple(c, S_TOUCH);
	if (r == 0)
		r = cat_commit(c);
	else
		cat_rollback(c);
	return r;
}

void cat_rollback(struct cat *c)
{
	if (!sqlite3_get_autocommit(c->db))
		run_simple(c, S_ROLLBACK);
}

int cat_savepoint(struct cat *c)
{
	return run_simple(c, S_SAVE);
}

int cat_savepoint_end(struct cat *c, int undo)
{
	int r = undo ? run_simple(c, S_UNDO) : 0;

	return r < 0 ? r : run_simple(c, S_RELEASE);
}

static void row_attr(sqlite3_stmt *s, struct cat_attr *a)
{
	a->ino = (uint64_t)sqlite3_column_int64(s, 0);
	a->parent = (uint64_t)sqlite3_column_int64(s, 1);
	a->mode = (uint32_t)sqlite3_column_int64(s, 2);
	a->uid = (uint32_t)sqlite3_column_int64(s, 3);
	a->gid = (uint32_t)sqlite3_column_int64(s, 4);
	a->nlink = (uint32_t)sqlite3_column_int64(s, 5);
	a->size = (uint64_t)sqlite3_column_int64(s, 6);
	a->mtime_ns = sqlite3_column_int64(s, 7);
	a->ctime_ns = sqlite3_column_int64(s, 8);
}

static int get_row(sqlite3_stmt *s, struct cat_attr *ret)
{
	int r = step_one(s);

	if (r == 0)
		row_attr(s, ret);
	finish(s);
	return r;
}

int cat_get(struct cat *c, uint64_t ino, struct cat_attr *ret)
{
	sqlite3_stmt *s = stmt(c, S_GET);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	return get_row(s, ret);
}

int cat_lookup(struct cat *c, uint64_t parent, const char *name,
	       struct cat_attr *ret)
{
	sqlite3_stmt *s = stmt(c, S_LOOKUP);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)parent);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	return get_row(s, ret);
}

int cat_insert(struct cat *c, uint64_t parent, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, int64_t now, const char *target,
	       struct cat_attr *ret)
{
	sqlite3_stmt *s = stmt(c, S_INSERT);
	int r;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)parent);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, mode);
	sqlite3_bind_int64(s, 4, uid);
	sqlite3_bind_int64(s, 5, gid);
	sqlite3_bind_int64(s, 6, S_ISDIR(mode) ? 2 : 1);
	sqlite3_bind_int64(s, 7, target ? (sqlite3_int64)strlen(target) : 0);
	sqlite3_bind_int64(s, 8, now);
	if (target)
		sqlite3_bind_text(s, 9, target, -1, SQLITE_STATIC);
	r = step_done(s);
	if (r < 0)
		return r;
	return cat_get(c, (uint64_t)sqlite3_last_insert_rowid(c->db), ret);
}

static int ino_stmt(struct cat *c, int which, uint64_t ino)
{
	sqlite3_stmt *s = stmt(c, which);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	return step_done(s);
}

int cat_delete(struct cat *c, uint64_t ino)
{
	return ino_stmt(c, S_DELETE, ino);
}

int cat_orphan(struct cat *c, uint64_t ino)
{
	return ino_stmt(c, S_ORPHAN, ino);
}

int cat_move(struct cat *c, uint64_t ino, uint64_t parent, const char *name,
	     int64_t now)
{
	sqlite3_stmt *s = stmt(c, S_MOVE);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)parent);
	sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, now);
	return step_done(s);
}

int cat_set_attr(struct cat *c, const struct cat_attr *a)
{
	sqlite3_stmt *s = stmt(c, S_SETATTR);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)a->ino);
	sqlite3_bind_int64(s, 2, a->mode);
	sqlite3_bind_int64(s, 3, a->uid);
	sqlite3_bind_int64(s, 4, a->gid);
	sqlite3_bind_int64(s, 5, a->mtime_ns);
	sqlite3_bind_int64(s, 6, a->ctime_ns);
	return step_done(s);
}

int cat_count_children(struct cat *c, uint64_t ino)
{
	sqlite3_stmt *s = stmt(c, S_NCHILD);
	int rc, r;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	rc = sqlite3_step(s);
	r = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : errno_of_sqlite(rc);
	finish(s);
	return r;
}

int cat_children(struct cat *c, uint64_t ino,
		 int (*cb)(void *arg, const char *name, const struct cat_attr *a),
		 void *arg)
{
	sqlite3_stmt *s = stmt(c, S_CHILDREN);
	struct cat_attr a;
	int rc, r = 0;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		row_attr(s, &a);
		r = cb(arg, (const char *)sqlite3_column_text(s, 9), &a);
		if (r)
			break;
	}
	if (!r && rc != SQLITE_DONE)
		r = errno_of_sqlite(rc);
	finish(s);
	return r;
}

int cat_orphans(struct cat *c, uint64_t **ret_inos)
{
	sqlite3_stmt *s = stmt(c, S_ORPHANS);
	uint64_t *v = NULL, *t;
	size_t n = 0, cap = 0;
	int rc;

	if (!s)
		return -EIO;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			t = realloc(v, cap * sizeof(*v));
			if (!t) {
				free(v);
				finish(s);
				return -ENOMEM;
			}
			v = t;
		}
		v[n++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	finish(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return errno_of_sqlite(rc);
	}
	*ret_inos = v;
	return (int)n;
}

int cat_readlink(struct cat *c, uint64_t ino, char **ret)
{
	sqlite3_stmt *s = stmt(c, S_READLINK);
	const char *t;
	int r = 0;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	r = step_one(s);
	if (r < 0)
		goto out;
	t = (const char *)sqlite3_column_text(s, 0);
	if (!t) {
		r = -EINVAL;
		goto out;
	}
	*ret = strdup(t);
	if (!*ret)
		r = -ENOMEM;
out:
	finish(s);
	return r;
}

int cat_get_content(struct cat *c, uint64_t ino, void **ret_blob,
		    size_t *ret_len, uint8_t ret_sha[32], int *ret_has_sha)
{
	sqlite3_stmt *s = stmt(c, S_GETCONTENT);
	const void *b;
	size_t n;
	int r = 0;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	r = step_one(s);
	if (r < 0)
		goto out;
	b = sqlite3_column_blob(s, 0);
	n = (size_t)sqlite3_column_bytes(s, 0);
	*ret_blob = NULL;
	if (n) {
		*ret_blob = malloc(n);
		if (!*ret_blob) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(*ret_blob, b, n);
	}
	*ret_len = n;
	*ret_has_sha = sqlite3_column_bytes(s, 1) == 32;
	if (*ret_has_sha)
		memcpy(ret_sha, sqlite3_column_blob(s, 1), 32);
out:
	finish(s);
	return r;
}

int cat_set_content(struct cat *c, uint64_t ino, const void *blob, size_t len,
		    uint64_t size, const uint8_t sha[32], int64_t mtime)
{
	sqlite3_stmt *s = stmt(c, S_SETCONTENT);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
	if (len)
		sqlite3_bind_blob(s, 2, blob, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)size);
	if (sha)
		sqlite3_bind_blob(s, 4, sha, 32, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, mtime);
	return step_done(s);
}

static void row_loc(sqlite3_stmt *s, struct cas_id *id, struct pack_loc *loc)
{
	if (id)
		memcpy(id->b, sqlite3_column_blob(s, 0), CAS_ID_LEN);
	loc->pack = (uint32_t)sqlite3_column_int64(s, 1);
	loc->off = (uint64_t)sqlite3_column_int64(s, 2);
	loc->clen = (uint32_t)sqlite3_column_int64(s, 3);
	loc->ulen = (uint32_t)sqlite3_column_int64(s, 4);
	loc->scheme = (enum codec_scheme)sqlite3_column_int64(s, 5);
}

int cat_chunk_get(struct cat *c, const struct cas_id *id,
		  struct pack_loc *ret_loc, int64_t *ret_refs)
{
	sqlite3_stmt *s = stmt(c, S_CHUNK_GET);
	int r;

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	r = step_one(s);
	if (r == 0) {
		row_loc(s, NULL, ret_loc);
		if (ret_refs)
			*ret_refs = sqlite3_column_int64(s, 6);
	}
	finish(s);
	return r;
}

/* Runs a statement whose ?1..?6 are id, pack, off, clen, ulen, scheme. */
static int chunk_loc_stmt(struct cat *c, int which, const struct cas_id *id,
			  const struct pack_loc *loc)
{
	sqlite3_stmt *s = stmt(c, which);

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, loc->pack);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)loc->off);
	sqlite3_bind_int64(s, 4, loc->clen);
	sqlite3_bind_int64(s, 5, loc->ulen);
	sqlite3_bind_int64(s, 6, loc->scheme);
	return step_done(s);
}

int cat_chunk_insert(struct cat *c, const struct cas_id *id,
		     const struct pack_loc *loc)
{
	return chunk_loc_stmt(c, S_CHUNK_INS, id, loc);
}

int cat_chunk_addref(struct cat *c, const struct cas_id *id, int delta)
{
	sqlite3_stmt *s = stmt(c, S_CHUNK_REF);
	int r;

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, delta);
	r = step_done(s);
	if (r == 0 && sqlite3_changes(c->db) == 0)
		r = -ENOENT;
	return r;
}

int cat_chunk_delete(struct cat *c, const struct cas_id *id)
{
	sqlite3_stmt *s = stmt(c, S_CHUNK_DEL);

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	return step_done(s);
}

/*
 * Iterates a chunk query.  Rows are copied out first so the callback may
 * change the chunks table.
 */
static int chunk_rows(struct cat *c, sqlite3_stmt *s,
		      int (*cb)(void *arg, const struct cas_id *id,
				const struct pack_loc *loc),
		      void *arg)
{
	struct row {
		struct cas_id id;
		struct pack_loc loc;
	} *rows = NULL, *t;
	size_t n = 0, cap = 0, i;
	int rc, r = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			t = realloc(rows, cap * sizeof(*rows));
			if (!t) {
				r = -ENOMEM;
				break;
			}
			rows = t;
		}
		row_loc(s, &rows[n].id, &rows[n].loc);
		n++;
	}
	if (!r && rc != SQLITE_DONE)
		r = errno_of_sqlite(rc);
	finish(s);
	for (i = 0; !r && i < n; i++)
		r = cb(arg, &rows[i].id, &rows[i].loc);
	free(rows);
	(void)c;
	return r;
}

int cat_chunks_dead(struct cat *c, int64_t keep_since,
		    int (*cb)(void *arg, const struct cas_id *id,
			      const struct pack_loc *loc),
		    void *arg)
{
	sqlite3_stmt *s = stmt(c, S_CHUNKS_DEAD);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, keep_since);
	return chunk_rows(c, s, cb, arg);
}

int cat_fetched_add(struct cat *c, const struct cas_id *id, int64_t at)
{
	sqlite3_stmt *s = stmt(c, S_FETCHED_ADD);

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, at);
	return step_done(s);
}

int cat_fetched_prune(struct cat *c, int64_t before)
{
	sqlite3_stmt *s = stmt(c, S_FETCHED_PRUNE);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, before);
	return step_done(s);
}

int cat_chunks_in_pack(struct cat *c, uint32_t pack,
		       int (*cb)(void *arg, const struct cas_id *id,
				 const struct pack_loc *loc),
		       void *arg)
{
	sqlite3_stmt *s = stmt(c, S_CHUNKS_PACK);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, pack);
	return chunk_rows(c, s, cb, arg);
}

int cat_inline_put(struct cat *c, const struct cas_id *id, const void *data,
		   uint32_t len)
{
	sqlite3_stmt *s = stmt(c, S_INL_PUT);

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, len ? data : "", (int)len, SQLITE_STATIC);
	return step_done(s);
}

int cat_inline_get(struct cat *c, const struct cas_id *id, void *buf, size_t cap)
{
	sqlite3_stmt *s = stmt(c, S_INL_GET);
	int r, n;

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	r = step_one(s);
	if (r == 0) {
		n = sqlite3_column_bytes(s, 0);
		if ((size_t)n > cap) {
			r = -EIO;
		} else {
			if (n)
				memcpy(buf, sqlite3_column_blob(s, 0), (size_t)n);
			r = n;
		}
	}
	finish(s);
	return r;
}

int cat_inline_delete(struct cat *c, const struct cas_id *id)
{
	sqlite3_stmt *s = stmt(c, S_INL_DEL);

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	return step_done(s);
}

int cat_inline_list(struct cat *c, int max,
		    int (*cb)(void *arg, const struct cas_id *id,
			      const struct pack_loc *loc, const void *data,
			      uint32_t len),
		    void *arg)
{
	sqlite3_stmt *s = stmt(c, S_INL_LIST);
	struct pack_loc loc;
	struct cas_id id;
	int rc, r = 0, n = 0;

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, CAS_PACK_INLINE);
	sqlite3_bind_int64(s, 2, max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		row_loc(s, &id, &loc);
		r = cb(arg, &id, &loc, sqlite3_column_blob(s, 6),
		       (uint32_t)sqlite3_column_bytes(s, 6));
		if (r < 0)
			break;
		n++;
	}
	if (r == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = errno_of_sqlite(rc);
	finish(s);
	return r < 0 ? r : n;
}

int cat_inline_count(struct cat *c, uint64_t *ret)
{
	int64_t n = 0;
	int r = count_of(stmt(c, S_INL_COUNT), &n);

	*ret = (uint64_t)n;
	return r;
}

int cat_pack_update(struct cat *c, uint32_t pack, int64_t size,
		    int64_t live_delta)
{
	sqlite3_stmt *s = stmt(c, S_PACK_UPD);

	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, pack);
	sqlite3_bind_int64(s, 2, size);
	sqlite3_bind_int64(s, 3, live_delta);
	return step_done(s);
}

static void dead_key(uint32_t pack, char *buf, size_t len)
{
	snprintf(buf, len, "dead_pack.%u", pack);
}

int cat_pack_delete(struct cat *c, uint32_t pack)
{
	char key[32];
	int r = ino_stmt(c, S_PACK_DEL, pack);

	if (r < 0)
		return r;
	dead_key(pack, key, sizeof(key));
	return cat_meta_set_u64(c, key, 1);
}

int cat_pack_dead(struct cat *c, uint32_t pack)
{
	char key[32];
	uint64_t v;
	int r;

	dead_key(pack, key, sizeof(key));
	r = cat_meta_get_u64(c, key, &v);
	return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

int cat_pack_dead_clear(struct cat *c, uint32_t pack)
{
	sqlite3_stmt *s;
	char key[32];
	int rc;

	dead_key(pack, key, sizeof(key));
	rc = sqlite3_prepare_v2(c->db, "DELETE FROM meta WHERE key = ?1", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : errno_of_sqlite(rc);
}

/*
 * Reads the (u32, u64, u64) rows of a prepared statement into three
 * arrays the caller frees; the statement is left for the caller to reset
 * or finalize.  live_double: the third column is a double (total()).
 * Returns the row count or -errno (then nothing is allocated).
 */
static int read_pack_rows(sqlite3_stmt *s, bool live_double,
			  uint32_t **ret_ids, uint64_t **ret_a,
			  uint64_t **ret_live)
{
	uint32_t *ids = NULL;
	uint64_t *a = NULL, *live = NULL;
	size_t n = 0, cap = 0;
	int rc, r = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			void *x, *y, *z;

			cap = cap ? 2 * cap : 16;
			x = realloc(ids, cap * sizeof(*ids));
			if (x)
				ids = x;
			y = realloc(a, cap * sizeof(*a));
			if (y)
				a = y;
			z = realloc(live, cap * sizeof(*live));
			if (z)
				live = z;
			if (!x || !y || !z) {
				r = -ENOMEM;
				break;
			}
		}
		ids[n] = (uint32_t)sqlite3_column_int64(s, 0);
		a[n] = (uint64_t)sqlite3_column_int64(s, 1);
		live[n] = live_double ? (uint64_t)sqlite3_column_double(s, 2)
				      : (uint64_t)sqlite3_column_int64(s, 2);
		n++;
	}
	if (!r && rc != SQLITE_DONE)
		r = errno_of_sqlite(rc);
	if (r < 0) {
		free(ids);
		free(a);
		free(live);
		return r;
	}
	*ret_ids = ids;
	*ret_a = a;
	*ret_live = live;
	return (int)n;
}

int cat_packs(struct cat *c, uint32_t **ret_ids, uint64_t **ret_sizes,
	      uint64_t **ret_live)
{
	sqlite3_stmt *s = stmt(c, S_PACKS);
	int r;

	if (!s)
		return -EIO;
	r = read_pack_rows(s, false, ret_ids, ret_sizes, ret_live);
	finish(s);
	return r;
}

static int query_u64s(struct cat *c, const char *sql, uint64_t *out, int n)
{
	sqlite3_stmt *s;
	int rc, i;

	rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		for (i = 0; i < n; i++)
			out[i] = (uint64_t)sqlite3_column_int64(s, i);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : errno_of_sqlite(rc);
}

int cat_stats(struct cat *c, struct cat_stats *ret)
{
	uint64_t v[4];
	int r;

	memset(ret, 0, sizeof(*ret));
	r = query_u64s(c,
		       "SELECT total((mode & 61440) = 32768), total((mode & 61440) = 16384),"
		       " total((mode & 61440) = 40960),"
		       " total(CASE WHEN (mode & 61440) = 32768 THEN size END)"
		       " FROM inodes WHERE nlink > 0",
		       v, 4);
	if (r < 0)
		return r;
	ret->files = v[0];
	ret->dirs = v[1];
	ret->symlinks = v[2];
	ret->logical_bytes = v[3];
	r = query_u64s(c,
		       "SELECT total(refs > 0), total(CASE WHEN refs > 0 THEN ulen END),"
		       " total(CASE WHEN refs > 0 THEN clen + 32 END), total(refs <= 0)"
		       " FROM chunks",
		       v, 4);
	if (r < 0)
		return r;
	ret->chunks = v[0];
	ret->unique_bytes = v[1];
	ret->stored_bytes = v[2];
	ret->dead_chunks = v[3];
	r = query_u64s(c, "SELECT count(*), total(size) FROM packs", v, 2);
	if (r < 0)
		return r;
	ret->packs = v[0];
	ret->pack_bytes = v[1];
	return 0;
}

int cat_inode_count(struct cat *c, uint64_t *ret)
{
	return query_u64s(c, "SELECT count(*) FROM inodes", ret, 1);
}

int cat_integrity(struct cat *c, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	const char *t;
	int rc, r = 0;

	rc = sqlite3_prepare_v2(c->db, "PRAGMA integrity_check", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		t = (const char *)sqlite3_column_text(s, 0);
		if (t && strcmp(t, "ok") != 0) {
			snprintf(err, errlen, "%s", t);
			r = -EIO;
			break;
		}
	}
	sqlite3_finalize(s);
	return r;
}

int cat_files(struct cat *c,
	      int (*cb)(void *arg, uint64_t ino, const void *blob, size_t len,
			uint64_t size),
	      void *arg)
{
	sqlite3_stmt *s = stmt(c, S_FILES);
	int rc, r = 0;

	if (!s)
		return -EIO;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = cb(arg, (uint64_t)sqlite3_column_int64(s, 0),
		       sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
		       (uint64_t)sqlite3_column_int64(s, 2));
		if (r)
			break;
	}
	if (!r && rc != SQLITE_DONE)
		r = errno_of_sqlite(rc);
	finish(s);
	return r;
}

int cat_chunks_all(struct cat *c,
		   int (*cb)(void *arg, const struct cas_id *id,
			     const struct pack_loc *loc, int64_t refs),
		   void *arg)
{
	sqlite3_stmt *s = stmt(c, S_CHUNKS_ALL);
	struct cas_id id;
	struct pack_loc loc;
	int rc, r = 0;

	if (!s)
		return -EIO;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		row_loc(s, &id, &loc);
		r = cb(arg, &id, &loc, sqlite3_column_int64(s, 6));
		if (r)
			break;
	}
	if (!r && rc != SQLITE_DONE)
		r = errno_of_sqlite(rc);
	finish(s);
	return r;
}

int cat_chunks_zero_refs(struct cat *c)
{
	return exec(c, "UPDATE chunks SET refs = 0");
}

int cat_path(struct cat *c, uint64_t ino, char *buf, size_t len)
{
	char tmp[4096];
	sqlite3_stmt *s = stmt(c, S_PATH);
	int depth = 0, rc;

	if (!s || len == 0)
		return -EIO;
	buf[0] = '\0';
	while (ino != CAT_ROOT_INO && ino != 0 && depth++ < 256) {
		sqlite3_bind_int64(s, 1, (sqlite3_int64)ino);
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW) {
			finish(s);
			return rc == SQLITE_DONE ? -ENOENT : errno_of_sqlite(rc);
		}
		snprintf(tmp, sizeof(tmp), "%s%s%s",
			 (const char *)sqlite3_column_text(s, 1), buf[0] ? "/" : "", buf);
		ino = (uint64_t)sqlite3_column_int64(s, 0);
		finish(s);
		snprintf(buf, len, "%s", tmp);
	}
	return 0;
}

static int id_stmt(struct cat *c, int which, const struct cas_id *id)
{
	sqlite3_stmt *s = stmt(c, which);

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	return step_done(s);
}

int cat_damaged_mark(struct cat *c, const struct cas_id *id)
{
	return id_stmt(c, S_DMG_MARK, id);
}

int cat_damaged_clear(struct cat *c, const struct cas_id *id)
{
	sqlite3_stmt *s = stmt(c, S_VER_CLEAR);
	int r = id_stmt(c, S_DMG_CLEAR, id);

	/*
	 * A damaged chunk now holds a writer's (or a remote's) bytes of the
	 * same id: a list confirmed with the old bytes proves nothing about
	 * the new ones (ids are XXH3, not made to resist crafted collisions).
	 */
	if (r == 0)
		r = s ? step_done(s) : -EIO;
	return r;
}

int cat_verified_add(struct cat *c, const uint8_t digest[32])
{
	sqlite3_stmt *s = stmt(c, S_VER_ADD);

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, digest, 32, SQLITE_STATIC);
	return step_done(s);
}

int cat_verified_prune(struct cat *c, int64_t min_size)
{
	sqlite3_stmt *big = stmt(c, S_BIG_COUNT), *clear = stmt(c, S_VER_CLEAR);
	int64_t n = 0, files = 0;
	int r;

	r = count_of(stmt(c, S_VER_COUNT), &n);
	if (r < 0 || n <= CAT_VERIFIED_SLACK)
		return r;
	if (!big || !clear)
		return -EIO;
	sqlite3_bind_int64(big, 1, min_size);
	r = count_of(big, &files);
	if (r < 0 || n <= 2 * files + CAT_VERIFIED_SLACK)
		return r;
	return step_done(clear);
}

int cat_verified_has(struct cat *c, const uint8_t digest[32])
{
	sqlite3_stmt *s = stmt(c, S_VER_HAS);
	int r;

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, digest, 32, SQLITE_STATIC);
	r = step_one(s);
	finish(s);
	return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

int cat_damaged_has(struct cat *c, const struct cas_id *id)
{
	sqlite3_stmt *s = stmt(c, S_DMG_HAS);
	int rc;

	if (!s)
		return -EIO;
	sqlite3_bind_blob(s, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	rc = sqlite3_step(s);
	finish(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : errno_of_sqlite(rc);
}

int cat_chunk_relocate(struct cat *c, const struct cas_id *id,
		       const struct pack_loc *loc)
{
	return chunk_loc_stmt(c, S_CHUNK_RELOC, id, loc);
}

int cat_pack_ends(struct cat *c, uint32_t **ret_packs, uint64_t **ret_ends,
		  uint64_t **ret_live)
{
	sqlite3_stmt *s;
	int rc, r;

	/*
	 * NOT INDEXED: a table scan, so that a damaged chunks_pack index
	 * cannot hide rows from recovery (which would then cut their bytes).
	 */
	rc = sqlite3_prepare_v2(c->db,
				"SELECT pack, max(off + 32 + clen), total(32 + clen)"
				" FROM chunks NOT INDEXED WHERE pack != 4294967295"
				" GROUP BY pack ORDER BY pack",
				-1, &s, NULL);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	r = read_pack_rows(s, true, ret_packs, ret_ends, ret_live);
	sqlite3_finalize(s);
	return r;
}

int cat_reindex(struct cat *c)
{
	return exec(c, "REINDEX");
}

/* The columns a snapshot keeps: all of inodes. */
#define INODE_COLS "ino, parent, name, mode, uid, gid, nlink, size, mtime, ctime," \
		   " sha256, chunks, target"

int cat_snapshot(const char *catalog, const char *snap)
{
	char tmp[4096], sql[4096 + 256];
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc, r, fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	unlink(tmp);
	rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		r = errno_of_sqlite(rc);
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	rc = sqlite3_prepare_v2(db, "ATTACH ?1 AS c", -1, &s, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(s, 1, catalog, -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_OK) {
		r = errno_of_sqlite(rc);
		goto out;
	}
	snprintf(sql, sizeof(sql),
		 "BEGIN;"
		 "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
		 "INSERT INTO meta SELECT key, value FROM c.meta;"
		 "INSERT INTO meta VALUES ('snapshot_ns', '%lld');"
		 "CREATE TABLE inodes(ino INTEGER PRIMARY KEY, parent INTEGER, name TEXT,"
		 " mode INTEGER, uid INTEGER, gid INTEGER, nlink INTEGER, size INTEGER,"
		 " mtime INTEGER, ctime INTEGER, sha256 BLOB, chunks BLOB, target TEXT);"
		 "INSERT INTO inodes SELECT " INODE_COLS " FROM c.inodes;"
		 "COMMIT;",
		 (long long)time(NULL) * 1000000000);
	r = errno_of_sqlite(sqlite3_exec(db, sql, NULL, NULL, NULL));
	sqlite3_close(db);
	db = NULL;
	if (r < 0)
		goto out;
	/* Durable before it replaces the last one, which is kept as .old. */
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	snprintf(sql, sizeof(sql), "%s.old", snap);
	if (rename(snap, sql) < 0 && errno != ENOENT) {
		r = -errno;
		goto out;
	}
	if (rename(tmp, snap) < 0) {
		r = -errno;
		goto out;
	}
	return 0;
out:
	sqlite3_close(db);
	unlink(tmp);
	return r;
}

int cat_restore_snapshot(struct cat *c, const char *snap, int64_t *ret_taken)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	rc = sqlite3_prepare_v2(c->db, "ATTACH ?1 AS snap", -1, &s, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(s, 1, snap, -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	*ret_taken = 0;
	rc = sqlite3_prepare_v2(c->db,
				"SELECT value FROM snap.meta WHERE key = 'snapshot_ns'",
				-1, &s, NULL);
	if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		*ret_taken = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (rc != SQLITE_OK) {
		r = errno_of_sqlite(rc);
		goto out;
	}
	r = exec(c, "BEGIN IMMEDIATE;"
		    " DELETE FROM inodes;"
		    " INSERT INTO inodes(" INODE_COLS ") SELECT " INODE_COLS
		    " FROM snap.inodes;"
		    " COMMIT;");
	if (r < 0)
		exec(c, "ROLLBACK");
out:
	exec(c, "DETACH snap");
	return r;
}

int cat_is_empty(struct cat *c)
{
	uint64_t v[2];
	int r = query_u64s(c, "SELECT (SELECT count(*) FROM chunks),"
			      " (SELECT count(*) FROM packs)", v, 2);

	return r < 0 ? r : v[0] == 0 && v[1] == 0;
}

int cat_meta_get_u64(struct cat *c, const char *key, uint64_t *ret)
{
	long long v;
	int r = meta_get_int(c, key, &v);

	if (r == 0)
		*ret = (uint64_t)v;
	return r;
}

int cat_meta_set_u64(struct cat *c, const char *key, uint64_t v)
{
	sqlite3_stmt *s;
	int rc;

	rc = sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO meta VALUES (?1, ?2)",
				-1, &s, NULL);
	if (rc != SQLITE_OK)
		return errno_of_sqlite(rc);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)v);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : errno_of_sqlite(rc);
}
