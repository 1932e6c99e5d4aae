/*
 * ledger.c - the journal in sqlite, its hash chain, balances and the verifier.
 *
 * An append is one transaction:
 *
 *   BEGIN IMMEDIATE ── key there? ──yes──> ROLLBACK, return 1
 *         │no
 *   read head (seq, hash) ─> hash the new line ─> INSERT entry ─> UPDATE head
 *         ─> UPSERT balance ─> COMMIT (WAL, synchronous=FULL)
 *
 * so the key's uniqueness, the chain and the balances move together or not at all.  The
 * verifier shares one checker (struct chk) between the database and an exported file: it sees
 * entries in order and keeps the expected seq and prev, the sums per account and, per
 * (job, round) with revenue, the revenue and its shares.
 */
#include "scheduler/ledger.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#include "common/errmap.h"
#include "common/hex.h"

struct ledger {
	sqlite3 *db;
};

static const char *const kind_names[LEDGER_NKINDS] = {
	"compute", "breakthrough", "share", "revenue", "units", "flag", "debit", "credit",
};

#define TRANSFER_PREFIX "transfer:"

/* prev of entry 1 */
static const char zero_hash[] =
	"sha256:0000000000000000000000000000000000000000000000000000000000000000";

static const char schema_sql[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=FULL;"
	"CREATE TABLE IF NOT EXISTS entries("
	" seq INTEGER PRIMARY KEY, prev TEXT NOT NULL, time INTEGER NOT NULL,"
	" job TEXT NOT NULL, round INTEGER NOT NULL, account TEXT NOT NULL,"
	" kind TEXT NOT NULL, amount INTEGER NOT NULL, evidence TEXT NOT NULL,"
	" hash TEXT NOT NULL, UNIQUE(job, round, account, kind));"
	"CREATE TABLE IF NOT EXISTS head("
	" id INTEGER PRIMARY KEY CHECK(id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS balances("
	" account TEXT PRIMARY KEY, money INTEGER NOT NULL, units INTEGER NOT NULL,"
	" flags INTEGER NOT NULL);";

const char *ledger_kind_name(enum ledger_kind k)
{
	return (unsigned)k < LEDGER_NKINDS ? kind_names[k] : "?";
}

int ledger_kind_parse(const char *s, enum ledger_kind *ret)
{
	int k;

	for (k = 0; k < LEDGER_NKINDS; k++)
		if (s && strcmp(s, kind_names[k]) == 0) {
			*ret = (enum ledger_kind)k;
			return 0;
		}
	return -EINVAL;
}

static int name_ok(const char *s)
{
	size_t n;

	if (!s || !*s)
		return 0;
	n = strlen(s);
	if (n > LEDGER_NAME_MAX)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '/')
			return 0;
	return 1;
}

/* An amount's rule for its kind: NULL when it holds, else why not. */
static const char *amount_fault(enum ledger_kind k, int64_t amount)
{
	if (amount > LEDGER_AMOUNT_MAX || amount < -LEDGER_AMOUNT_MAX)
		return "is out of range";
	if (k == LEDGER_FLAG)
		return amount == 0 ? NULL : "of a flag is not 0";
	if (k == LEDGER_DEBIT || k == LEDGER_CREDIT)
		return amount > 0 ? NULL : "is not positive";
	return amount >= 0 ? NULL : "is negative";
}

/* evidence as compact JSON with sorted keys (malloc'd); NULL when it is not an object. */
static char *evidence_canon(const char *text)
{
	json_t *j;
	char *s;

	if (!text)
		return strdup("{}");
	j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

static char *json_str(const char *s)
{
	json_t *j = json_string(s);
	char *r;

	if (!j)
		return NULL;
	r = json_dumps(j, JSON_ENCODE_ANY);
	json_decref(j);
	return r;
}

char *ledger_entry_line(const struct ledger_entry *e, int with_hash)
{
	char *job = json_str(e->job), *acc = json_str(e->account), *line = NULL;
	int n;

	if (!job || !acc)
		goto out;
	if (with_hash)
		n = asprintf(&line, "{\"seq\":%" PRId64 ",\"prev\":\"%s\",\"time\":%" PRId64
			     ",\"job\":%s,\"round\":%" PRId64 ",\"account\":%s,\"kind\":\"%s\","
			     "\"amount\":%" PRId64 ",\"evidence\":%s,\"hash\":\"%s\"}",
			     e->seq, e->prev, e->time, job, e->round, acc,
			     ledger_kind_name(e->kind), e->amount, e->evidence, e->hash);
	else
		n = asprintf(&line, "{\"seq\":%" PRId64 ",\"prev\":\"%s\",\"time\":%" PRId64
			     ",\"job\":%s,\"round\":%" PRId64 ",\"account\":%s,\"kind\":\"%s\","
			     "\"amount\":%" PRId64 ",\"evidence\":%s}",
			     e->seq, e->prev, e->time, job, e->round, acc,
			     ledger_kind_name(e->kind), e->amount, e->evidence);
	if (n < 0)
		line = NULL;
out:
	free(job);
	free(acc);
	return line;
}

static int entry_hash(const struct ledger_entry *e, char out[72])
{
	char *line = ledger_entry_line(e, 0);

	if (!line)
		return -ENOMEM;
	digest_sha256(line, strlen(line), out);
	free(line);
	return 0;
}

char *ledger_path(const char *store_dir)
{
	char *p;

	if (asprintf(&p, "%s/mining/ledger.db", store_dir) < 0)
		return NULL;
	return p;
}

static int exec(struct ledger *l, const char *sql)
{
	return errno_of_sqlite(sqlite3_exec(l->db, sql, NULL, NULL, NULL));
}

/* The folder of path, made when missing (the store's mining/ folder). */
static int make_parent(const char *path)
{
	char *dir = strdup(path), *slash;
	int r = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			r = -errno;
	}
	free(dir);
	return r;
}

int ledger_open(const char *path, int create, struct ledger **ret)
{
	struct ledger *l;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX;
	int r;

	if (create) {
		r = make_parent(path);
		if (r < 0)
			return r;
		flags |= SQLITE_OPEN_CREATE;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	r = sqlite3_open_v2(path, &l->db, flags, NULL);
	if (r == SQLITE_OK)
		r = sqlite3_busy_timeout(l->db, 10000);
	r = errno_of_sqlite(r);
	if (r == 0)
		r = exec(l, schema_sql);
	if (r < 0) {
		ledger_close(l);
		return r;
	}
	*ret = l;
	return 0;
}

void ledger_close(struct ledger *l)
{
	if (!l)
		return;
	sqlite3_close(l->db);
	free(l);
}

static int stmt(struct ledger *l, const char *sql, sqlite3_stmt **ret)
{
	return errno_of_sqlite(sqlite3_prepare_v2(l->db, sql, -1, ret, NULL));
}

/* The seq of (job, round, account, kind), 0 when absent. */
static int find_key(struct ledger *l, const struct ledger_credit *c, int64_t *ret_seq)
{
	sqlite3_stmt *st = NULL;
	int r;

	r = stmt(l, "SELECT seq FROM entries WHERE job = ?1 AND round = ?2 AND account = ?3"
		 " AND kind = ?4;", &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, c->job, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, c->round);
	sqlite3_bind_text(st, 3, c->account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, ledger_kind_name(c->kind), -1, SQLITE_STATIC);
	r = sqlite3_step(st);
	*ret_seq = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	r = r == SQLITE_ROW ? 0 : errno_of_sqlite(r);
	sqlite3_finalize(st);
	return r;
}

int ledger_head(struct ledger *l, int64_t *ret_seq, char ret_hash[72])
{
	sqlite3_stmt *st = NULL;
	int r;

	r = stmt(l, "SELECT seq, hash FROM head WHERE id = 1;", &st);
	if (r < 0)
		return r;
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		const char *h = (const char *)sqlite3_column_text(st, 1);

		*ret_seq = sqlite3_column_int64(st, 0);
		snprintf(ret_hash, 72, "%s", h ? h : "");
		r = 0;
	} else if (r == SQLITE_DONE) {
		*ret_seq = 0;
		snprintf(ret_hash, 72, "%s", zero_hash);
		r = 0;
	} else {
		r = errno_of_sqlite(r);
	}
	sqlite3_finalize(st);
	return r;
}

static int insert_entry(struct ledger *l, const struct ledger_entry *e)
{
	sqlite3_stmt *st = NULL;
	int r;

	r = stmt(l, "INSERT INTO entries VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10);", &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, e->seq);
	sqlite3_bind_text(st, 2, e->prev, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, e->time);
	sqlite3_bind_text(st, 4, e->job, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, e->round);
	sqlite3_bind_text(st, 6, e->account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, ledger_kind_name(e->kind), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, e->amount);
	sqlite3_bind_text(st, 9, e->evidence, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, e->hash, -1, SQLITE_STATIC);
	r = errno_of_sqlite(sqlite3_step(st));
	sqlite3_finalize(st);
	if (r < 0)
		return r;
	r = stmt(l, "INSERT INTO head VALUES(1, ?1, ?2) ON CONFLICT(id) DO UPDATE SET"
		 " seq = ?1, hash = ?2;", &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, e->seq);
	sqlite3_bind_text(st, 2, e->hash, -1, SQLITE_STATIC);
	r = errno_of_sqlite(sqlite3_step(st));
	sqlite3_finalize(st);
	return r;
}

static void kind_sums(enum ledger_kind k, int64_t amount, struct ledger_balance *b)
{
	if (k == LEDGER_UNITS)
		b->units += amount;
	else if (k == LEDGER_FLAG)
		b->flags++;
	else if (k == LEDGER_DEBIT)
		b->money -= amount;
	else
		b->money += amount;
}

static int add_balance(struct ledger *l, const struct ledger_entry *e)
{
	struct ledger_balance d = { 0 };
	sqlite3_stmt *st = NULL;
	int r;

	kind_sums(e->kind, e->amount, &d);
	r = stmt(l, "INSERT INTO balances VALUES(?1, ?2, ?3, ?4) ON CONFLICT(account) DO UPDATE"
		 " SET money = money + ?2, units = units + ?3, flags = flags + ?4;", &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, e->account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, d.money);
	sqlite3_bind_int64(st, 3, d.units);
	sqlite3_bind_int64(st, 4, d.flags);
	r = errno_of_sqlite(sqlite3_step(st));
	sqlite3_finalize(st);
	return r;
}

static int check_credit(const struct ledger_credit *c)
{
	if (!name_ok(c->job) || !name_ok(c->account) || (unsigned)c->kind >= LEDGER_NKINDS ||
	    c->round < 0 || amount_fault(c->kind, c->amount))
		return -EINVAL;
	return 0;
}

/* Only ledger_transfer() writes transfers: they come in checked pairs. */
static int check_plain_credit(const struct ledger_credit *c)
{
	if (c->kind == LEDGER_DEBIT || c->kind == LEDGER_CREDIT)
		return -EINVAL;
	return check_credit(c);
}

/* Appends one credit inside an open transaction. */
static int append_one(struct ledger *l, const struct ledger_credit *c, int64_t *ret_seq)
{
	struct ledger_entry e = { 0 };
	int64_t seq;
	int r;

	r = find_key(l, c, &seq);
	if (r < 0)
		return r;
	if (seq > 0) {
		*ret_seq = seq;
		return 1;
	}
	e.evidence = evidence_canon(c->evidence);
	if (!e.evidence)
		return -EINVAL;
	r = ledger_head(l, &e.seq, e.prev);
	if (r < 0)
		goto out;
	e.seq++;
	e.time = c->time ? c->time : (int64_t)time(NULL);
	e.job = (char *)c->job;
	e.round = c->round;
	e.account = (char *)c->account;
	e.kind = c->kind;
	e.amount = c->amount;
	r = entry_hash(&e, e.hash);
	if (r == 0)
		r = insert_entry(l, &e);
	if (r == 0)
		r = add_balance(l, &e);
	if (r == 0)
		*ret_seq = e.seq;
out:
	free(e.evidence);
	return r;
}

int ledger_append_batch(struct ledger *l, const struct ledger_credit *c, size_t n,
			int64_t *ret_appended)
{
	int64_t seq, added = 0;
	size_t i;
	int r;

	for (i = 0; i < n; i++)
		if (check_plain_credit(&c[i]) < 0)
			return -EINVAL;
	r = exec(l, "BEGIN IMMEDIATE;");
	if (r < 0)
		return r;
	for (i = 0; i < n && r >= 0; i++) {
		r = append_one(l, &c[i], &seq);
		if (r == 0)
			added++;
	}
	if (r >= 0)
		r = exec(l, "COMMIT;");
	if (r < 0) {
		exec(l, "ROLLBACK;");
		return r;
	}
	if (ret_appended)
		*ret_appended = added;
	return 0;
}

int ledger_append(struct ledger *l, const struct ledger_credit *c, int64_t *ret_seq)
{
	int64_t seq = 0;
	int r;

	if (check_plain_credit(c) < 0)
		return -EINVAL;
	r = exec(l, "BEGIN IMMEDIATE;");
	if (r < 0)
		return r;
	r = append_one(l, c, &seq);
	if (r == 0)
		r = exec(l, "COMMIT;");
	else if (r == 1)
		exec(l, "ROLLBACK;");
	if (r < 0) {
		exec(l, "ROLLBACK;");
		return r;
	}
	if (ret_seq)
		*ret_seq = seq;
	return r;
}

/* ---- transfers ---- */

static int key_ok(const char *k)
{
	size_t n = k ? strlen(k) : 0;

	if (n == 0 || n > LEDGER_KEY_MAX)
		return 0;
	for (; *k; k++)
		if (!(*k == '-' || *k == '_' || *k == '.' || (*k >= '0' && *k <= '9') ||
		      (*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z')))
			return 0;
	return 1;
}

/* A name the payer or payee may have: a ledger name that is no record account (job:...). */
static int spendable_name(const char *s)
{
	return name_ok(s) && !strchr(s, ':');
}

/* Both entries' evidence: the caller's object with from, to and key set (malloc'd). */
static char *transfer_evidence(const struct ledger_transfer *t)
{
	json_t *j = t->evidence ? json_loads(t->evidence, JSON_REJECT_DUPLICATES, NULL)
				: json_object();
	char *s = NULL;

	if (!j || !json_is_object(j))
		goto out;
	if (json_object_set_new(j, "from", json_string(t->from)) < 0 ||
	    json_object_set_new(j, "to", json_string(t->to)) < 0 ||
	    json_object_set_new(j, "key", json_string(t->key)) < 0)
		goto out;
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
out:
	json_decref(j);
	return s;
}

/* A transfer of job there already: 1 when it has these terms, -EEXIST when others. */
static int transfer_there(struct ledger *l, const char *job, const struct ledger_transfer *t)
{
	sqlite3_stmt *st = NULL;
	int r, same = 1, n = 0;

	r = stmt(l, "SELECT account, kind, amount FROM entries WHERE job = ?1 AND round = 0;",
		 &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *acc = (const char *)sqlite3_column_text(st, 0);
		const char *kind = (const char *)sqlite3_column_text(st, 1);

		n++;
		if (sqlite3_column_int64(st, 2) != t->amount || !acc || !kind ||
		    strcmp(acc, strcmp(kind, "debit") == 0 ? t->from : t->to) != 0)
			same = 0;
	}
	r = errno_of_sqlite(r);
	sqlite3_finalize(st);
	if (r < 0)
		return r;
	return same && n == 2 ? 1 : -EEXIST;
}

int ledger_transfer(struct ledger *l, const struct ledger_transfer *t, int64_t *ret_seq)
{
	struct ledger_credit c[2];
	struct ledger_balance b;
	char *job = NULL, *ev = NULL;
	int64_t seq = 0, there = 0;
	int r;

	if (!spendable_name(t->from) || !spendable_name(t->to) || !strcmp(t->from, t->to) ||
	    !key_ok(t->key) || t->amount <= 0 || t->amount > LEDGER_AMOUNT_MAX)
		return -EINVAL;
	if (asprintf(&job, TRANSFER_PREFIX "%s:%s", t->from, t->key) < 0)
		return -ENOMEM;
	ev = transfer_evidence(t);
	r = !ev ? -EINVAL : name_ok(job) ? 0 : -EINVAL;
	if (r < 0)
		goto out;
	c[0] = (struct ledger_credit){ job, 0, t->from, LEDGER_DEBIT, t->amount, ev, t->time };
	c[1] = (struct ledger_credit){ job, 0, t->to, LEDGER_CREDIT, t->amount, ev, t->time };
	r = exec(l, "BEGIN IMMEDIATE;");
	if (r < 0)
		goto out;
	/* the key, then the funds, read in the transaction that appends */
	r = find_key(l, &c[0], &there);
	if (r == 0 && there)
		r = transfer_there(l, job, t); /* 1: a retry of the same transfer */
	if (r == 0)
		r = ledger_balance(l, t->from, &b);
	if (r == 0 && b.money < t->amount)
		r = -EDQUOT;
	if (r == 0)
		r = append_one(l, &c[0], &seq);
	if (r == 0)
		r = append_one(l, &c[1], &there);
	if (r == 0)
		r = exec(l, "COMMIT;");
	else if (r == 1 && !seq)
		r = 1; /* the retry found by transfer_there() */
	else if (r == 1)
		r = -EEXIST; /* the credit's key without its debit: only an edit does that */
	if (r != 0)
		exec(l, "ROLLBACK;");
	if (r == 0 && ret_seq)
		*ret_seq = seq;
out:
	free(job);
	free(ev);
	return r;
}

int ledger_balance(struct ledger *l, const char *account, struct ledger_balance *ret)
{
	sqlite3_stmt *st = NULL;
	int r;

	r = stmt(l, "SELECT money, units, flags FROM balances WHERE account = ?1;", &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	r = sqlite3_step(st);
	memset(ret, 0, sizeof(*ret));
	if (r == SQLITE_ROW) {
		ret->money = sqlite3_column_int64(st, 0);
		ret->units = sqlite3_column_int64(st, 1);
		ret->flags = sqlite3_column_int64(st, 2);
		r = 0;
	} else {
		r = errno_of_sqlite(r);
	}
	sqlite3_finalize(st);
	return r;
}

int ledger_balance_json(struct ledger *l, const char *account, char **ret)
{
	struct ledger_balance b;
	char *acc, *s;
	int r;

	r = ledger_balance(l, account, &b);
	if (r < 0)
		return r;
	acc = json_str(account);
	if (!acc)
		return -ENOMEM;
	r = asprintf(&s, "{\"account\":%s,\"balance\":%" PRId64 ",\"units\":%" PRId64
		     ",\"flags\":%" PRId64 ",\"unit\":\"micro-USD\"}\n", acc, b.money, b.units,
		     b.flags);
	free(acc);
	if (r < 0)
		return -ENOMEM;
	*ret = s;
	return 0;
}

static void entry_free_strings(struct ledger_entry *e)
{
	free(e->job);
	free(e->account);
	free(e->evidence);
	e->job = e->account = e->evidence = NULL;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);

	return strdup(s ? s : "");
}

/* Row to entry; an unknown kind is kept as LEDGER_NKINDS for the verifier to name. */
static int row_entry(sqlite3_stmt *st, struct ledger_entry *e)
{
	const char *prev = (const char *)sqlite3_column_text(st, 1);
	const char *kind = (const char *)sqlite3_column_text(st, 6);
	const char *hash = (const char *)sqlite3_column_text(st, 9);

	memset(e, 0, sizeof(*e));
	e->seq = sqlite3_column_int64(st, 0);
	snprintf(e->prev, sizeof(e->prev), "%s", prev ? prev : "");
	e->time = sqlite3_column_int64(st, 2);
	e->job = col_dup(st, 3);
	e->round = sqlite3_column_int64(st, 4);
	e->account = col_dup(st, 5);
	if (ledger_kind_parse(kind, &e->kind) < 0)
		e->kind = LEDGER_NKINDS;
	e->amount = sqlite3_column_int64(st, 7);
	e->evidence = col_dup(st, 8);
	snprintf(e->hash, sizeof(e->hash), "%s", hash ? hash : "");
	if (!e->job || !e->account || !e->evidence) {
		entry_free_strings(e);
		return -ENOMEM;
	}
	return 0;
}

int ledger_foreach(struct ledger *l, const char *job, const char *account,
		   int (*fn)(void *arg, const struct ledger_entry *e), void *arg)
{
	sqlite3_stmt *st = NULL;
	struct ledger_entry e;
	int r;

	r = stmt(l, "SELECT * FROM entries WHERE (?1 IS NULL OR job = ?1) AND"
		 " (?2 IS NULL OR account = ?2) ORDER BY seq;", &st);
	if (r < 0)
		return r;
	if (job)
		sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
	if (account)
		sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		r = row_entry(st, &e);
		if (r == 0)
			r = fn(arg, &e);
		entry_free_strings(&e);
		if (r != 0)
			goto out;
	}
	r = errno_of_sqlite(r);
out:
	sqlite3_finalize(st);
	return r;
}

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
		char *p = realloc(b->p, cap);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

static int export_one(void *arg, const struct ledger_entry *e)
{
	char *line = ledger_entry_line(e, 1);
	int r;

	if (!line)
		return -ENOMEM;
	r = buf_add(arg, line, strlen(line));
	if (r == 0)
		r = buf_add(arg, "\n", 1);
	free(line);
	return r;
}

int ledger_export(struct ledger *l, char **ret, size_t *ret_len)
{
	struct buf b = { 0 };
	int r;

	r = buf_add(&b, "", 0);
	if (r == 0)
		r = ledger_foreach(l, NULL, NULL, export_one, &b);
	if (r < 0) {
		free(b.p);
		return r;
	}
	*ret = b.p;
	*ret_len = b.len;
	return 0;
}

/* ---- the verifier ---- */

struct chk {
	int64_t n;           /* entries seen */
	char prev[72];       /* hash of the last one */
	json_t *balances;    /* account -> [money, units, flags] */
	json_t *revenue;     /* "job\nround" -> [revenue, shares] */
	json_t *transfers;   /* job -> {"debit": [amount, account], "credit": [...]} */
	char *err;
};

static int chk_fail(struct chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int chk_fail(struct chk *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, LEDGER_ERR_MAX, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static int chk_init(struct chk *c, char *err)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->prev, sizeof(c->prev), "%s", zero_hash);
	c->err = err;
	err[0] = 0;
	c->balances = json_object();
	c->revenue = json_object();
	c->transfers = json_object();
	return c->balances && c->revenue && c->transfers ? 0 : -ENOMEM;
}

static void chk_release(struct chk *c)
{
	json_decref(c->balances);
	json_decref(c->revenue);
	json_decref(c->transfers);
}

/* arr[i] += d in the array of integers under key of obj, made when missing. */
static int tally(json_t *obj, const char *key, int i, int64_t d)
{
	json_t *a = json_object_get(obj, key);

	if (!a) {
		a = json_pack("[III]", (json_int_t)0, (json_int_t)0, (json_int_t)0);
		if (!a || json_object_set_new(obj, key, a) < 0)
			return -ENOMEM;
	}
	return json_integer_set(json_array_get(a, i),
				json_integer_value(json_array_get(a, i)) + d);
}

static int chk_revenue(struct chk *c, const struct ledger_entry *e)
{
	char *key;
	int r;

	if (e->kind != LEDGER_REVENUE && e->kind != LEDGER_SHARE)
		return 0;
	if (asprintf(&key, "%s\n%" PRId64, e->job, e->round) < 0)
		return -ENOMEM;
	r = tally(c->revenue, key, e->kind == LEDGER_REVENUE ? 0 : 1, e->amount);
	if (r == 0 && e->kind == LEDGER_REVENUE)
		r = tally(c->revenue, key, 2, 1);
	free(key);
	return r;
}

/*
 * A transfer's entry: of a "transfer:" job, round 0, one debit and one credit per job (their
 * amounts and accounts compared at the end), and a debit never leaves its account below 0.
 */
static int chk_transfer(struct chk *c, const struct ledger_entry *e)
{
	int is_transfer = e->kind == LEDGER_DEBIT || e->kind == LEDGER_CREDIT;
	const char *kind = ledger_kind_name(e->kind);
	json_t *t, *acc;

	if (is_transfer != !strncmp(e->job, TRANSFER_PREFIX, strlen(TRANSFER_PREFIX)))
		return chk_fail(c, "entry %" PRId64 ": kind %s in job %s (transfers are debit and"
				" credit entries of transfer: jobs)", e->seq, kind, e->job);
	if (!is_transfer)
		return 0;
	if (e->round != 0 || strchr(e->account, ':'))
		return chk_fail(c, "entry %" PRId64 ": a %s of round %" PRId64 " on account %s"
				" (transfers are round 0 between spendable accounts)", e->seq,
				kind, e->round, e->account);
	t = json_object_get(c->transfers, e->job);
	if (!t) {
		t = json_object();
		if (!t || json_object_set_new(c->transfers, e->job, t) < 0)
			return -ENOMEM;
	}
	if (json_object_get(t, kind))
		return chk_fail(c, "entry %" PRId64 ": a second %s of %s", e->seq, kind, e->job);
	if (json_object_set_new(t, kind, json_pack("[Is]", (json_int_t)e->amount,
						    e->account)) < 0)
		return -ENOMEM;
	acc = json_object_get(c->balances, e->account);
	if (e->kind == LEDGER_DEBIT && json_integer_value(json_array_get(acc, 0)) < 0)
		return chk_fail(c, "entry %" PRId64 ": the debit of %" PRId64 " takes account %s"
				" to %" PRId64 " micro-USD (an overdraft)", e->seq, e->amount,
				e->account, (int64_t)json_integer_value(json_array_get(acc, 0)));
	return 0;
}

/* Every transfer a debit and a credit of one amount between two accounts. */
static int chk_transfers_paired(struct chk *c)
{
	const char *job;
	json_t *t;

	json_object_foreach(c->transfers, job, t) {
		json_t *d = json_object_get(t, "debit"), *k = json_object_get(t, "credit");

		if (!d || !k)
			return chk_fail(c, "job %s: a %s without its %s", job, d ? "debit" : "credit",
					d ? "credit" : "debit");
		if (json_integer_value(json_array_get(d, 0)) !=
		    json_integer_value(json_array_get(k, 0)))
			return chk_fail(c, "job %s: the debit is %" PRId64 " but the credit %" PRId64,
					job, (int64_t)json_integer_value(json_array_get(d, 0)),
					(int64_t)json_integer_value(json_array_get(k, 0)));
		if (!strcmp(json_string_value(json_array_get(d, 1)),
			    json_string_value(json_array_get(k, 1))))
			return chk_fail(c, "job %s: a transfer from an account to itself", job);
	}
	return 0;
}

static int chk_entry(struct chk *c, const struct ledger_entry *e)
{
	char want[72];
	const char *why;
	char *canon;
	int r;

	if (e->seq != c->n + 1)
		return chk_fail(c, "entry %" PRId64 ": expected seq %" PRId64
				" (an entry deleted, inserted or reordered)", e->seq, c->n + 1);
	if (strcmp(e->prev, c->prev) != 0)
		return chk_fail(c, "entry %" PRId64 ": prev does not name entry %" PRId64
				"'s hash (the chain is broken: reordered or edited)", e->seq, c->n);
	if ((unsigned)e->kind >= LEDGER_NKINDS)
		return chk_fail(c, "entry %" PRId64 ": unknown kind", e->seq);
	if (!name_ok(e->job) || !name_ok(e->account) || e->round < 0)
		return chk_fail(c, "entry %" PRId64 ": bad job, account or round", e->seq);
	why = amount_fault(e->kind, e->amount);
	if (why)
		return chk_fail(c, "entry %" PRId64 ": amount %" PRId64 " %s for kind %s", e->seq,
				e->amount, why, ledger_kind_name(e->kind));
	canon = evidence_canon(e->evidence);
	if (!canon)
		return chk_fail(c, "entry %" PRId64 ": evidence is not a JSON object", e->seq);
	{
		struct ledger_entry h = *e;

		h.evidence = canon;
		r = entry_hash(&h, want);
	}
	free(canon);
	if (r < 0)
		return r;
	if (strcmp(want, e->hash) != 0)
		return chk_fail(c, "entry %" PRId64 ": hash does not match its contents (edited?)",
				e->seq);
	{
		struct ledger_balance d = { 0 };

		kind_sums(e->kind, e->amount, &d);
		r = tally(c->balances, e->account, 0, d.money);
		if (r == 0)
			r = tally(c->balances, e->account, 1, d.units);
		if (r == 0)
			r = tally(c->balances, e->account, 2, d.flags);
	}
	if (r == 0)
		r = chk_revenue(c, e);
	if (r == 0)
		r = chk_transfer(c, e);
	if (r < 0)
		return r;
	c->n++;
	memcpy(c->prev, e->hash, sizeof(c->prev));
	return 0;
}

/* Every revenue fully shared, and no share without its revenue; transfers paired. */
static int chk_finish(struct chk *c)
{
	const char *key;
	json_t *a;

	json_object_foreach(c->revenue, key, a) {
		int64_t rev = json_integer_value(json_array_get(a, 0));
		int64_t shares = json_integer_value(json_array_get(a, 1));
		int64_t n_rev = json_integer_value(json_array_get(a, 2));
		const char *nl = strchr(key, '\n');

		if (n_rev == 0 || shares != rev)
			return chk_fail(c, "job %.*s round %s: shares add up to %" PRId64
					" but the revenue booked is %" PRId64, (int)(nl - key), key,
					nl + 1, shares, rev);
	}
	return chk_transfers_paired(c);
}

static int verify_row(void *arg, const struct ledger_entry *e)
{
	return chk_entry(arg, e);
}

/* Each balance row against the recomputed sums, both ways. */
static int chk_balances(struct ledger *l, struct chk *c)
{
	sqlite3_stmt *st = NULL;
	int64_t rows = 0;
	int r;

	r = stmt(l, "SELECT account, money, units, flags FROM balances;", &st);
	if (r < 0)
		return r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *acc = (const char *)sqlite3_column_text(st, 0);
		json_t *a = json_object_get(c->balances, acc ? acc : "");
		int i;

		rows++;
		for (i = 0; i < 3; i++) {
			int64_t got = sqlite3_column_int64(st, i + 1);
			int64_t want = a ? json_integer_value(json_array_get(a, i)) : 0;

			if (got != want) {
				r = chk_fail(c, "account %s: balance row says %" PRId64 " %s but the"
					     " entries add up to %" PRId64, acc ? acc : "?", got,
					     i == 0 ? "micro-USD" : i == 1 ? "units" : "flags",
					     want);
				goto out;
			}
		}
	}
	r = errno_of_sqlite(r);
	if (r == 0 && rows != (int64_t)json_object_size(c->balances))
		r = chk_fail(c, "balances: %" PRId64 " rows for %zu accounts with entries", rows,
			     json_object_size(c->balances));
out:
	sqlite3_finalize(st);
	return r;
}

int ledger_verify(struct ledger *l, char err[LEDGER_ERR_MAX], int64_t *ret_n)
{
	char head_hash[72];
	int64_t head_seq;
	struct chk c;
	int r;

	r = chk_init(&c, err);
	if (r < 0)
		goto out;
	r = exec(l, "BEGIN;"); /* one snapshot for entries, head and balances */
	if (r < 0)
		goto out;
	r = ledger_foreach(l, NULL, NULL, verify_row, &c);
	if (r == 0)
		r = ledger_head(l, &head_seq, head_hash);
	if (r == 0 && (head_seq != c.n || strcmp(head_hash, c.prev) != 0))
		r = chk_fail(&c, "head names entry %" PRId64 " but the journal ends at entry %"
			     PRId64 " (entries deleted at the end?)", head_seq, c.n);
	if (r == 0)
		r = chk_finish(&c);
	if (r == 0)
		r = chk_balances(l, &c);
	exec(l, "COMMIT;");
	if (r == 0 && ret_n)
		*ret_n = c.n;
out:
	chk_release(&c);
	return r;
}

/* One exported line to an entry; the strings are the entry's. */
static int parse_line(struct chk *c, int64_t lineno, const char *s, size_t len,
		      struct ledger_entry *e)
{
	static const char *const keys[] = { "seq", "prev", "time", "job", "round", "account",
					    "kind", "amount", "evidence", "hash", NULL };
	json_error_t jerr;
	json_t *j, *v;
	const char *key;
	int i, r = 0;

	memset(e, 0, sizeof(*e));
	j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j || !json_is_object(j)) {
		r = chk_fail(c, "line %" PRId64 ": not a JSON object (%s)", lineno,
			     j ? "another type" : jerr.text);
		goto out;
	}
	json_object_foreach(j, key, v) {
		for (i = 0; keys[i] && strcmp(keys[i], key) != 0; i++)
			;
		if (!keys[i]) {
			r = chk_fail(c, "line %" PRId64 ": unknown field \"%.40s\"", lineno, key);
			goto out;
		}
	}
	for (i = 0; keys[i]; i++) {
		int want_int = i == 0 || i == 2 || i == 4 || i == 7;

		v = json_object_get(j, keys[i]);
		if (!v || (want_int && !json_is_integer(v)) ||
		    (i == 8 && !json_is_object(v)) ||
		    (!want_int && i != 8 && !json_is_string(v))) {
			r = chk_fail(c, "line %" PRId64 ": field %s is %s", lineno, keys[i],
				     !v ? "missing" : i == 7 ?
				     "not an integer number of micro-USD" : "of the wrong type");
			goto out;
		}
	}
	e->seq = json_integer_value(json_object_get(j, "seq"));
	e->time = json_integer_value(json_object_get(j, "time"));
	e->round = json_integer_value(json_object_get(j, "round"));
	e->amount = json_integer_value(json_object_get(j, "amount"));
	snprintf(e->prev, sizeof(e->prev), "%s", json_string_value(json_object_get(j, "prev")));
	snprintf(e->hash, sizeof(e->hash), "%s", json_string_value(json_object_get(j, "hash")));
	if (ledger_kind_parse(json_string_value(json_object_get(j, "kind")), &e->kind) < 0)
		e->kind = LEDGER_NKINDS;
	e->job = strdup(json_string_value(json_object_get(j, "job")));
	e->account = strdup(json_string_value(json_object_get(j, "account")));
	e->evidence = json_dumps(json_object_get(j, "evidence"), JSON_COMPACT | JSON_SORT_KEYS);
	if (!e->job || !e->account || !e->evidence) {
		entry_free_strings(e);
		r = -ENOMEM;
	}
out:
	json_decref(j);
	return r;
}

int ledger_verify_jsonl(const char *text, size_t len, const char *head,
			char err[LEDGER_ERR_MAX], int64_t *ret_n)
{
	const char *p = text, *end = text + len;
	int64_t lineno = 0;
	struct chk c;
	int r;

	r = chk_init(&c, err);
	while (r == 0 && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct ledger_entry e;

		lineno++;
		if (!nl) {
			r = chk_fail(&c, "line %" PRId64 ": no newline at the end (truncated?)",
				     lineno);
			break;
		}
		r = parse_line(&c, lineno, p, n, &e);
		if (r == 0)
			r = chk_entry(&c, &e);
		entry_free_strings(&e);
		p = nl + 1;
	}
	if (r == 0 && head && strcmp(head, c.prev) != 0)
		r = chk_fail(&c, "the last entry (%" PRId64 ") is not the head given (entries"
			     " deleted at the end?)", c.n);
	if (r == 0)
		r = chk_finish(&c);
	if (r == 0 && ret_n)
		*ret_n = c.n;
	chk_release(&c);
	return r;
}
