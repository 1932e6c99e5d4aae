/*
 * test_ledger.c - the mining ledger against a model, against hostile edits, and across
 * kill -9.
 *
 * model: seeded random appends (new keys, repeated keys, bad input), reopenings and
 *   batches, each balance and the whole export compared with an in-memory model.
 * hostile: entries edited, deleted, reordered, a bad amount, in the database and in an
 *   exported file: each detected with its message.
 * transfer: the rules of ledger_transfer() (retries, other terms under a key, overdrafts,
 *   bad input); a seeded random sequence of credits, transfers and retries against a model
 *   of the balances; hand-made exports whose transfers are unpaired, unequal, to the payer
 *   itself or overdrawn, each named by the verifier.
 * crash: a child appends a fixed list of credits (each key once, some in batches) and says
 *   on a pipe what it committed; the parent kills it with SIGKILL at random moments, at
 *   least 100 times, restarting it each time (it starts over from the first credit).  At the
 *   end the chain verifies, every credit is there once with its amount, every one the child
 *   reported is there, and the balances are the sums.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/hex.h"
#include "scheduler/ledger.h"
#include "tests/check.h"

static char top[256];

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static char *path_in(const char *name)
{
	char *p;

	REQUIRE(asprintf(&p, "%s/%s", top, name) > 0);
	return p;
}

static void sql(const char *db, const char *q)
{
	sqlite3 *h;

	REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
	CHECK_MSG(sqlite3_exec(h, q, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", q,
		  sqlite3_errmsg(h));
	sqlite3_close(h);
}

/* ---- model ---- */

#define N_ACC 5
#define N_JOB 3

struct model_key {
	int job, round, acc, kind;
	int64_t amount;
};

static void test_model(void)
{
	char *db = path_in("model/ledger.db");
	static struct model_key keys[4000];
	int64_t money[N_ACC] = { 0 }, units[N_ACC] = { 0 }, flags[N_ACC] = { 0 };
	int nkeys = 0, op;
	uint64_t seed = 20261206;
	struct ledger *l = NULL;
	char err[LEDGER_ERR_MAX];

	REQUIRE(ledger_open(db, 1, &l) == 0);
	for (op = 0; op < 3000; op++) {
		uint64_t x = rng_next(&seed);
		int what = (int)(x % 10);

		if (what == 0) { /* reopen: state is the database's */
			ledger_close(l);
			REQUIRE(ledger_open(db, 0, &l) == 0);
		} else if (what == 1 && nkeys > 0) { /* a key again, maybe another amount */
			struct model_key *k = &keys[rng_next(&seed) % (unsigned)nkeys];
			char job[16], acc[16];
			struct ledger_credit c = { job, k->round, acc, k->kind,
						   k->kind == LEDGER_FLAG ? 0 : k->amount + 7, NULL, 0 };
			int64_t seq;

			snprintf(job, sizeof(job), "job%d", k->job);
			snprintf(acc, sizeof(acc), "acc%d", k->acc);
			CHECK_RC(ledger_append(l, &c, &seq), 1);
		} else if (what == 2) { /* bad input changes nothing */
			struct ledger_credit bad[] = {
				{ "j/x", 1, "acc0", LEDGER_COMPUTE, 1, NULL, 0 },
				{ "j", 1, "", LEDGER_COMPUTE, 1, NULL, 0 },
				{ "j", 1, "acc0", LEDGER_COMPUTE, -5, NULL, 0 },
				{ "j", 1, "acc0", LEDGER_FLAG, 3, NULL, 0 },
				{ "j", 1, "acc0", LEDGER_COMPUTE, 1, "[1,2]", 0 },
				{ "j", 1, "acc0", LEDGER_COMPUTE, 1, "{bad", 0 },
				{ "j", -1, "acc0", LEDGER_COMPUTE, 1, NULL, 0 },
				{ "j", 1, "acc0", LEDGER_COMPUTE, LEDGER_AMOUNT_MAX + 1, NULL, 0 },
			};
			struct ledger_credit *c = &bad[rng_next(&seed) % 8];

			CHECK_RC(ledger_append(l, c, NULL), -EINVAL);
		} else if (nkeys < 4000) {
			struct model_key *k = &keys[nkeys];
			char job[16], acc[16], ev[64];
			struct ledger_credit c;
			int64_t seq;
			int i, dup = 0;

			k->job = (int)(rng_next(&seed) % N_JOB);
			k->round = (int)(rng_next(&seed) % 200);
			k->acc = (int)(rng_next(&seed) % N_ACC);
			k->kind = (int)(rng_next(&seed) % LEDGER_NKINDS);
			if (k->kind == LEDGER_REVENUE || k->kind == LEDGER_SHARE ||
			    k->kind == LEDGER_DEBIT || k->kind == LEDGER_CREDIT)
				k->kind = LEDGER_COMPUTE; /* tested with their pairs below */
			k->amount = k->kind == LEDGER_FLAG ? 0 :
				    (int64_t)(rng_next(&seed) % 5000000000ULL);
			for (i = 0; i < nkeys; i++)
				if (keys[i].job == k->job && keys[i].round == k->round &&
				    keys[i].acc == k->acc && keys[i].kind == k->kind)
					dup = 1;
			snprintf(job, sizeof(job), "job%d", k->job);
			snprintf(acc, sizeof(acc), "acc%d", k->acc);
			snprintf(ev, sizeof(ev), "{\"z\":1,\"a\":[%d,\"x\"],\"op\":%d}", op, op);
			c = (struct ledger_credit){ job, k->round, acc, k->kind, k->amount, ev,
						    1800000000 + op };
			CHECK_RC(ledger_append(l, &c, &seq), dup ? 1 : 0);
			if (dup)
				continue;
			CHECK_EQ(seq, nkeys + 1);
			if (k->kind == LEDGER_UNITS)
				units[k->acc] += k->amount;
			else if (k->kind == LEDGER_FLAG)
				flags[k->acc]++;
			else
				money[k->acc] += k->amount;
			nkeys++;
		}
	}
	{
		int64_t n = 0, hseq;
		char hash[72], *text = NULL;
		size_t len = 0;
		int a;

		for (a = 0; a < N_ACC; a++) {
			struct ledger_balance b;
			char acc[16];

			snprintf(acc, sizeof(acc), "acc%d", a);
			CHECK_RC(ledger_balance(l, acc, &b), 0);
			CHECK_EQ(b.money, money[a]);
			CHECK_EQ(b.units, units[a]);
			CHECK_EQ(b.flags, flags[a]);
		}
		CHECK_RC(ledger_verify(l, err, &n), 0);
		CHECK_EQ(n, nkeys);
		CHECK_RC(ledger_head(l, &hseq, hash), 0);
		CHECK_EQ(hseq, nkeys);
		CHECK_RC(ledger_export(l, &text, &len), 0);
		CHECK_RC(ledger_verify_jsonl(text, len, hash, err, &n), 0);
		CHECK_EQ(n, nkeys);
		free(text);
	}
	fprintf(stderr, "  %d entries appended in 3000 operations\n", nkeys);
	ledger_close(l);
	free(db);
}

/* ---- revenue and its shares ---- */

static void test_revenue(void)
{
	char *db = path_in("rev/ledger.db");
	struct ledger *l = NULL;
	char err[LEDGER_ERR_MAX];
	struct ledger_credit c[] = {
		{ "model:m", 1, "model:m", LEDGER_REVENUE, 1000, NULL, 1 },
		{ "model:m", 1, "designer", LEDGER_SHARE, 500, NULL, 1 },
		{ "model:m", 1, "p1", LEDGER_SHARE, 333, NULL, 1 },
		{ "model:m", 1, "p2", LEDGER_SHARE, 167, NULL, 1 },
	};
	struct ledger_balance b;
	int64_t added = -1;

	REQUIRE(ledger_open(db, 1, &l) == 0);
	CHECK_RC(ledger_append_batch(l, c, 4, &added), 0);
	CHECK_EQ(added, 4);
	CHECK_RC(ledger_append_batch(l, c, 4, &added), 0);
	CHECK_EQ(added, 0);
	CHECK_RC(ledger_balance(l, "p1", &b), 0);
	CHECK_EQ(b.money, 333);
	CHECK_RC(ledger_verify(l, err, NULL), 0);
	/* a share alone (its revenue never booked) is found */
	c[2].round = 2;
	CHECK_RC(ledger_append(l, &c[2], NULL), 0);
	CHECK_RC(ledger_verify(l, err, NULL), -EBADMSG);
	CHECK_MSG(strstr(err, "round 2: shares add up to 333 but the revenue booked is 0"), "%s",
		  err);
	ledger_close(l);
	free(db);
}


/* ---- hostile edits ---- */

static void fill(const char *db, int n)
{
	struct ledger *l = NULL;
	int i;

	REQUIRE(ledger_open(db, 1, &l) == 0);
	for (i = 1; i <= n; i++) {
		char acc[16];
		struct ledger_credit c = { "job", i, acc, LEDGER_COMPUTE, 1000 * i,
					   "{\"device_seconds\":1.5}", 1800000000 };

		snprintf(acc, sizeof(acc), "p%d", i % 3);
		REQUIRE(ledger_append(l, &c, NULL) == 0);
	}
	ledger_close(l);
}

/* Verifies db after the SQL q (run behind the ledger's back) and wants msg in the error. */
static void expect_db(const char *name, const char *q, const char *msg)
{
	char *db = path_in(name);
	struct ledger *l = NULL;
	char err[LEDGER_ERR_MAX];

	fill(db, 10);
	sql(db, q);
	REQUIRE(ledger_open(db, 0, &l) == 0);
	CHECK_RC(ledger_verify(l, err, NULL), -EBADMSG);
	CHECK_MSG(strstr(err, msg), "%s: \"%s\" wanted in \"%s\"", q, msg, err);
	fprintf(stderr, "  %-70.70s -> %s\n", q, err);
	ledger_close(l);
	free(db);
}

static void test_hostile_db(void)
{
	expect_db("h1/l.db", "UPDATE entries SET amount = 999999 WHERE seq = 4;",
		  "entry 4: hash does not match its contents (edited?)");
	expect_db("h2/l.db", "DELETE FROM entries WHERE seq = 6;",
		  "entry 7: expected seq 6");
	expect_db("h3/l.db", "UPDATE entries SET seq = 100 WHERE seq = 3;"
		  "UPDATE entries SET seq = 3 WHERE seq = 5;"
		  "UPDATE entries SET seq = 5 WHERE seq = 100;",
		  "entry 3: prev does not name entry 2's hash");
	expect_db("h4/l.db", "UPDATE entries SET amount = -5 WHERE seq = 2;",
		  "entry 2: amount -5 is negative for kind compute");
	expect_db("h5/l.db", "DELETE FROM entries WHERE seq = 10;",
		  "head names entry 10 but the journal ends at entry 9");
	expect_db("h6/l.db", "UPDATE balances SET money = money + 1 WHERE account = 'p1';",
		  "account p1: balance row says");
	expect_db("h7/l.db", "UPDATE entries SET evidence = '{\"device_seconds\":150}'"
		  " WHERE seq = 8;", "entry 8: hash does not match");
	expect_db("h8/l.db", "UPDATE entries SET kind = 'gift' WHERE seq = 1;",
		  "entry 1: unknown kind");
	expect_db("h9/l.db", "UPDATE entries SET amount = 1.5 WHERE seq = 2;",
		  "entry 2: hash does not match");
}

/* A copy of text with the first occurrence of from replaced by to. */
static char *replace(const char *text, const char *from, const char *to)
{
	const char *p = strstr(text, from);
	char *r;

	REQUIRE(p);
	REQUIRE(asprintf(&r, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from)) > 0);
	return r;
}

/* Lines a and b (1-based) of text swapped. */
static char *swap_lines(const char *text, int a, int b)
{
	char *lines[64], *copy = strdup(text), *save = NULL, *t, *r;
	size_t n = 0, i, len = strlen(text) + 1;

	for (t = strtok_r(copy, "\n", &save); t && n < 64; t = strtok_r(NULL, "\n", &save))
		lines[n++] = t;
	t = lines[a - 1];
	lines[a - 1] = lines[b - 1];
	lines[b - 1] = t;
	r = calloc(1, len);
	for (i = 0; i < n; i++) {
		strcat(r, lines[i]);
		strcat(r, "\n");
	}
	free(copy);
	return r;
}

static void expect_file(const char *what, const char *text, const char *head, const char *msg)
{
	char err[LEDGER_ERR_MAX];

	CHECK_RC(ledger_verify_jsonl(text, strlen(text), head, err, NULL), -EBADMSG);
	CHECK_MSG(strstr(err, msg), "%s: \"%s\" wanted in \"%s\"", what, msg, err);
	fprintf(stderr, "  file: %-30s -> %s\n", what, err);
}

static void test_hostile_file(void)
{
	char *db = path_in("f/l.db"), *text = NULL, *t, err[LEDGER_ERR_MAX], hash[72];
	struct ledger *l = NULL;
	int64_t seq;
	size_t len;

	fill(db, 10);
	REQUIRE(ledger_open(db, 0, &l) == 0);
	REQUIRE(ledger_export(l, &text, &len) == 0);
	REQUIRE(ledger_head(l, &seq, hash) == 0);
	ledger_close(l);
	CHECK_RC(ledger_verify_jsonl(text, len, hash, err, NULL), 0);

	t = replace(text, "\"amount\":3000,", "\"amount\":3001,");
	expect_file("edited amount", t, hash, "entry 3: hash does not match");
	free(t);
	t = replace(text, "\"amount\":3000,", "\"amount\":3000.0,");
	expect_file("fractional amount", t, hash,
		    "line 3: field amount is not an integer number of micro-USD");
	free(t);
	t = replace(text, "\"amount\":3000,", "\"amount\":-3000,");
	expect_file("negative amount", t, hash, "entry 3: amount -3000 is negative");
	free(t);
	t = swap_lines(text, 4, 5);
	expect_file("reordered", t, hash, "entry 5: expected seq 4");
	free(t);
	{
		const char *l5 = strstr(text, "{\"seq\":5,"), *l6 = strstr(text, "{\"seq\":6,");

		REQUIRE(asprintf(&t, "%.*s%s", (int)(l5 - text), text, l6) > 0);
		expect_file("deleted line 5", t, hash, "entry 6: expected seq 5");
		free(t);
		REQUIRE(asprintf(&t, "%.*s", (int)(strstr(text, "{\"seq\":10,") - text), text) > 0);
		expect_file("last line cut", t, hash, "the last entry (9) is not the head given");
		CHECK_RC(ledger_verify_jsonl(t, strlen(t), NULL, err, NULL), 0);
		free(t);
	}
	t = replace(text, "\"kind\":\"compute\",", "\"kind\":\"compute\",\"bonus\":1,");
	expect_file("extra field", t, hash, "line 1: unknown field \"bonus\"");
	free(t);
	t = replace(text, "{\"seq\":2,", "[\"seq\",2,");
	expect_file("not an object", t, hash, "line 2: not a JSON object");
	free(t);
	expect_file("truncated", "{\"seq\":1", NULL, "line 1: no newline at the end");
	free(text);
	free(db);
}


/* ---- transfers ---- */

static int64_t money_of(struct ledger *l, const char *acc)
{
	struct ledger_balance b;

	REQUIRE(ledger_balance(l, acc, &b) == 0);
	return b.money;
}

static void test_transfer_rules(void)
{
	char *db = path_in("tr/ledger.db"), err[LEDGER_ERR_MAX];
	struct ledger *l = NULL;
	struct ledger_credit seedc = { "j", 1, "alice", LEDGER_COMPUTE, 1000, NULL, 0 };
	struct ledger_transfer t = { "alice", "bob", 400, "k1", "{\"uid\":1000}", 0 };
	int64_t n = 0, seq = 0;
	char long_key[LEDGER_KEY_MAX + 2];

	REQUIRE(ledger_open(db, 1, &l) == 0);
	CHECK_RC(ledger_append(l, &seedc, NULL), 0);
	CHECK_RC(ledger_transfer(l, &t, &seq), 0);
	CHECK_EQ(seq, 2);
	CHECK_EQ(money_of(l, "alice"), 600);
	CHECK_EQ(money_of(l, "bob"), 400);
	/* a retry pays nothing twice; the key with other terms is refused */
	CHECK_RC(ledger_transfer(l, &t, NULL), 1);
	t.amount = 401;
	CHECK_RC(ledger_transfer(l, &t, NULL), -EEXIST);
	t.amount = 400;
	t.to = "carol";
	CHECK_RC(ledger_transfer(l, &t, NULL), -EEXIST);
	CHECK_EQ(money_of(l, "alice"), 600);
	CHECK_EQ(money_of(l, "carol"), 0);
	/* no overdraft: 601 refused, 600 (all of it) done */
	t = (struct ledger_transfer){ "alice", "bob", 601, "k2", NULL, 0 };
	CHECK_RC(ledger_transfer(l, &t, NULL), -EDQUOT);
	t.amount = 600;
	CHECK_RC(ledger_transfer(l, &t, NULL), 0);
	CHECK_EQ(money_of(l, "alice"), 0);
	t = (struct ledger_transfer){ "carol", "bob", 1, "k3", NULL, 0 }; /* never had any */
	CHECK_RC(ledger_transfer(l, &t, NULL), -EDQUOT);
	/* bad input */
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = 0;
	{
		struct ledger_transfer bad[] = {
			{ "bob", "alice", 0, "b1", NULL, 0 },
			{ "bob", "alice", -1, "b1", NULL, 0 },
			{ "bob", "alice", LEDGER_AMOUNT_MAX + 1, "b1", NULL, 0 },
			{ "bob", "alice", INT64_MIN, "b1", NULL, 0 },
			{ "bob", "bob", 1, "b1", NULL, 0 },
			{ "bob", "alice", 1, "", NULL, 0 },
			{ "bob", "alice", 1, "a/b", NULL, 0 },
			{ "bob", "alice", 1, "a b", NULL, 0 },
			{ "bob", "alice", 1, long_key, NULL, 0 },
			{ "bob", "model:m", 1, "b1", NULL, 0 },
			{ "model:m", "alice", 1, "b1", NULL, 0 },
			{ "bob", "job:j", 1, "b1", NULL, 0 },
			{ "bob", "", 1, "b1", NULL, 0 },
			{ "bob", "a/b", 1, "b1", NULL, 0 },
			{ "bob", "alice", 1, "b1", "[1]", 0 },
			{ "bob", "alice", 1, "b1", "{bad", 0 },
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			CHECK_MSG(ledger_transfer(l, &bad[i], NULL) == -EINVAL, "bad transfer %zu", i);
	}
	/* debits and credits come only in ledger_transfer()'s pairs */
	{
		struct ledger_credit d = { "transfer:bob:x", 0, "bob", LEDGER_DEBIT, 1, NULL, 0 };
		struct ledger_credit k = { "transfer:bob:x", 0, "alice", LEDGER_CREDIT, 1, NULL, 0 };

		CHECK_RC(ledger_append(l, &d, NULL), -EINVAL);
		CHECK_RC(ledger_append(l, &k, NULL), -EINVAL);
		CHECK_RC(ledger_append_batch(l, &k, 1, NULL), -EINVAL);
	}
	CHECK_EQ(money_of(l, "bob"), 1000);
	CHECK_RC(ledger_verify(l, err, &n), 0);
	CHECK_EQ(n, 5);
	/* the amount is the balance's: an edit of a debit breaks its hash */
	ledger_close(l);
	sql(db, "UPDATE entries SET amount = 1 WHERE kind = 'debit' AND seq = 2;");
	REQUIRE(ledger_open(db, 0, &l) == 0);
	CHECK_RC(ledger_verify(l, err, NULL), -EBADMSG);
	CHECK_MSG(strstr(err, "entry 2: hash does not match"), "%s", err);
	ledger_close(l);
	free(db);
}

#define T_ACC 5

/* A seeded random sequence of credits, transfers (some over the balance) and retries,
 * against a model of the balances; then the chain and every balance recomputed. */
static void test_transfer_model(void)
{
	char *db = path_in("trm/ledger.db"), err[LEDGER_ERR_MAX], *text = NULL, hash[72];
	static struct ledger_transfer done[2000];
	static char keys[2000][16];
	int64_t model[T_ACC] = { 0 }, n = 0, entries = 0, hseq;
	int ndone = 0, op, moved = 0, refused = 0;
	uint64_t seed = 77;
	struct ledger *l = NULL;
	size_t len;
	static const char *const acc[T_ACC] = { "a0", "a1", "a2", "a3", "a4" };

	REQUIRE(ledger_open(db, 1, &l) == 0);
	for (op = 0; op < 2000; op++) {
		uint64_t x = rng_next(&seed) % 10;
		int from = (int)(rng_next(&seed) % T_ACC), to = (int)(rng_next(&seed) % T_ACC);

		if (x < 2) { /* a credit from a round */
			struct ledger_credit c = { "job", op, acc[from], LEDGER_COMPUTE,
						   (int64_t)(rng_next(&seed) % 5000000), NULL, 0 };

			CHECK_RC(ledger_append(l, &c, NULL), 0);
			model[from] += c.amount;
			entries++;
		} else if (x < 4 && ndone > 0) { /* a retry: changes nothing */
			CHECK_RC(ledger_transfer(l, &done[rng_next(&seed) % (unsigned)ndone], NULL), 1);
		} else if (from != to) {
			struct ledger_transfer *t = &done[ndone];
			int64_t amount = (int64_t)(rng_next(&seed) % 3000000) + 1;
			int r;

			snprintf(keys[ndone], sizeof(keys[ndone]), "op%d", op);
			*t = (struct ledger_transfer){ acc[from], acc[to], amount, keys[ndone], NULL,
						       0 };
			r = ledger_transfer(l, t, NULL);
			if (model[from] < amount) {
				CHECK_RC(r, -EDQUOT);
				refused++;
				continue;
			}
			CHECK_RC(r, 0);
			model[from] -= amount;
			model[to] += amount;
			entries += 2;
			ndone++;
			moved++;
		}
	}
	for (int a = 0; a < T_ACC; a++)
		CHECK_EQ(money_of(l, acc[a]), model[a]);
	CHECK_RC(ledger_verify(l, err, &n), 0);
	CHECK_EQ(n, entries);
	CHECK_RC(ledger_head(l, &hseq, hash), 0);
	CHECK_RC(ledger_export(l, &text, &len), 0);
	CHECK_RC(ledger_verify_jsonl(text, len, hash, err, &n), 0);
	CHECK_EQ(n, entries);
	fprintf(stderr, "  %d transfers made, %d refused for want of money, %" PRId64 " entries\n",
		moved, refused, entries);
	free(text);
	ledger_close(l);
	free(db);
}

/* An export of entries es[0..n) chained and hashed as the ledger does (malloc'd). */
static char *chain_text(struct ledger_entry *es, int n)
{
	char prev[72] = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	char *text = strdup(""), *line, *t;
	int i;

	for (i = 0; i < n; i++) {
		es[i].seq = i + 1;
		memcpy(es[i].prev, prev, sizeof(prev));
		es[i].time = 1800000000;
		line = ledger_entry_line(&es[i], 0);
		REQUIRE(line);
		digest_sha256(line, strlen(line), es[i].hash);
		free(line);
		memcpy(prev, es[i].hash, sizeof(prev));
		line = ledger_entry_line(&es[i], 1);
		REQUIRE(asprintf(&t, "%s%s\n", text, line) > 0);
		free(line);
		free(text);
		text = t;
	}
	return text;
}

#define E(job, acc, kind, amount) \
	{ 0, "", 0, (char *)(job), 0, (char *)(acc), (kind), (amount), (char *)"{}", "" }

static void test_transfer_hostile(void)
{
	struct {
		const char *what, *msg;
		struct ledger_entry es[4];
		int n;
	} cases[] = {
		{ "a debit alone", "job transfer:a:k: a debit without its credit",
		  { E("j", "a", LEDGER_COMPUTE, 10), E("transfer:a:k", "a", LEDGER_DEBIT, 5) }, 2 },
		{ "a credit alone (money made)", "job transfer:a:k: a credit without its debit",
		  { E("transfer:a:k", "b", LEDGER_CREDIT, 5) }, 1 },
		{ "unequal", "the debit is 5 but the credit 7",
		  { E("j", "a", LEDGER_COMPUTE, 10), E("transfer:a:k", "a", LEDGER_DEBIT, 5),
		    E("transfer:a:k", "b", LEDGER_CREDIT, 7) }, 3 },
		{ "to itself", "a transfer from an account to itself",
		  { E("j", "a", LEDGER_COMPUTE, 10), E("transfer:a:k", "a", LEDGER_DEBIT, 5),
		    E("transfer:a:k", "a", LEDGER_CREDIT, 5) }, 3 },
		{ "an overdraft", "entry 2: the debit of 11 takes account a to -1 micro-USD",
		  { E("j", "a", LEDGER_COMPUTE, 10), E("transfer:a:k", "a", LEDGER_DEBIT, 11),
		    E("transfer:a:k", "b", LEDGER_CREDIT, 11) }, 3 },
		{ "a debit twice", "entry 3: a second debit of transfer:a:k",
		  { E("j", "a", LEDGER_COMPUTE, 10), E("transfer:a:k", "a", LEDGER_DEBIT, 1),
		    E("transfer:a:k", "a", LEDGER_DEBIT, 1) }, 3 },
		{ "a debit of a round's job", "entry 2: kind debit in job j",
		  { E("j", "a", LEDGER_COMPUTE, 10), E("j", "a", LEDGER_DEBIT, 1) }, 2 },
		{ "a compute credit in a transfer", "entry 1: kind compute in job transfer:a:k",
		  { E("transfer:a:k", "a", LEDGER_COMPUTE, 10) }, 1 },
		{ "a negative credit", "entry 1: amount -3 is not positive for kind credit",
		  { E("transfer:a:k", "b", LEDGER_CREDIT, -3) }, 1 },
		{ "a record account spends", "on account model:m",
		  { E("transfer:a:k", "model:m", LEDGER_DEBIT, 3) }, 1 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = chain_text(cases[i].es, cases[i].n);

		expect_file(cases[i].what, text, NULL, cases[i].msg);
		free(text);
	}
}

/* ---- crash ---- */

#define CR_ROUNDS 40
#define CR_ACC 4

static int64_t cr_amount(int round, int acc)
{
	return 1000003LL * round + 17 * acc + 1;
}

/* The child: every credit in order, a round's accounts in one batch every third round;
 * writes "round acc\n" to fd after each commit.  Never returns. */
static void crash_child(const char *db, int fd)
{
	struct ledger *l = NULL;
	int round, a;

	if (ledger_open(db, 1, &l) < 0)
		_exit(2);
	for (round = 0; round < CR_ROUNDS; round++) {
		char acc[CR_ACC][16], msg[64];
		struct ledger_credit c[CR_ACC];

		for (a = 0; a < CR_ACC; a++) {
			snprintf(acc[a], sizeof(acc[a]), "p%d", a);
			c[a] = (struct ledger_credit){ "job", round, acc[a], LEDGER_COMPUTE,
						       cr_amount(round, a), "{\"w\":1}", 0 };
		}
		if (round % 3 == 0) {
			if (ledger_append_batch(l, c, CR_ACC, NULL) < 0)
				_exit(3);
			for (a = 0; a < CR_ACC; a++) {
				int n = snprintf(msg, sizeof(msg), "%d %d\n", round, a);

				if (write(fd, msg, (size_t)n) != n)
					_exit(4);
			}
			continue;
		}
		for (a = 0; a < CR_ACC; a++) {
			int n;

			if (ledger_append(l, &c[a], NULL) < 0)
				_exit(3);
			n = snprintf(msg, sizeof(msg), "%d %d\n", round, a);
			if (write(fd, msg, (size_t)n) != n)
				_exit(4);
		}
	}
	ledger_close(l);
	_exit(0);
}

static int seen_count(void *arg, const struct ledger_entry *e)
{
	int *count = arg;
	int a = atoi(e->account + 1);

	if (e->round >= 0 && e->round < CR_ROUNDS && a >= 0 && a < CR_ACC) {
		count[e->round * CR_ACC + a]++;
		CHECK_EQ(e->amount, cr_amount((int)e->round, a));
	}
	return 0;
}

static void test_crash(void)
{
	char *db = path_in("crash/ledger.db"), err[LEDGER_ERR_MAX];
	static int reported[CR_ROUNDS * CR_ACC], count[CR_ROUNDS * CR_ACC];
	uint64_t seed = 777;
	int kills = 0, runs = 0, done = 0, i;
	struct ledger *l = NULL;

	while (!done && runs < 2000) {
		int fds[2], status;
		pid_t pid;
		FILE *f;
		char line[64];

		REQUIRE(pipe(fds) == 0);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(db, fds[1]);
		}
		close(fds[1]);
		runs++;
		if (kills < 120) {
			/* a moment between 0 and 30 ms: open, the middle of a transaction, a commit */
			struct timespec ts = { 0, (long)(rng_next(&seed) % 30000000) };

			nanosleep(&ts, NULL);
			if (kill(pid, SIGKILL) == 0)
				kills++;
		}
		REQUIRE(waitpid(pid, &status, 0) == pid);
		f = fdopen(fds[0], "r");
		while (fgets(line, sizeof(line), f)) {
			int r, a;

			if (sscanf(line, "%d %d", &r, &a) == 2 && r >= 0 && r < CR_ROUNDS &&
			    a >= 0 && a < CR_ACC)
				reported[r * CR_ACC + a] = 1;
		}
		fclose(f);
		if (WIFEXITED(status)) {
			CHECK_EQ(WEXITSTATUS(status), 0);
			done = kills >= 120;
		}
	}
	fprintf(stderr, "  %d runs, %d killed with SIGKILL\n", runs, kills);
	CHECK(kills >= 100);
	REQUIRE(ledger_open(db, 0, &l) == 0);
	CHECK_RC(ledger_verify(l, err, NULL), 0);
	if (err[0])
		fprintf(stderr, "  verify: %s\n", err);
	CHECK_RC(ledger_foreach(l, NULL, NULL, seen_count, count), 0);
	for (i = 0; i < CR_ROUNDS * CR_ACC; i++) {
		CHECK_MSG(count[i] == 1, "round %d p%d credited %d times", i / CR_ACC, i % CR_ACC,
			  count[i]);
		CHECK_MSG(reported[i], "round %d p%d never reported", i / CR_ACC, i % CR_ACC);
	}
	for (i = 0; i < CR_ACC; i++) {
		struct ledger_balance b;
		char acc[16];
		int64_t want = 0;
		int r;

		for (r = 0; r < CR_ROUNDS; r++)
			want += cr_amount(r, i);
		snprintf(acc, sizeof(acc), "p%d", i);
		CHECK_RC(ledger_balance(l, acc, &b), 0);
		CHECK_EQ(b.money, want);
	}
	ledger_close(l);
	free(db);
}

static void test_balance_json(void)
{
	char *db = path_in("bj/l.db"), *s = NULL;
	struct ledger *l = NULL;

	fill(db, 4);
	REQUIRE(ledger_open(db, 0, &l) == 0);
	CHECK_RC(ledger_balance_json(l, "p1", &s), 0);
	CHECK_MSG(s && strcmp(s, "{\"account\":\"p1\",\"balance\":5000,\"units\":0,\"flags\":0,"
			      "\"unit\":\"micro-USD\"}\n") == 0, "%s", s);
	free(s);
	CHECK_RC(ledger_balance_json(l, "nobody", &s), 0);
	CHECK_MSG(s && strstr(s, "\"balance\":0,"), "%s", s);
	free(s);
	ledger_close(l);
	free(db);
}

/* test_ledger --make-store DIR: DIR/mining/ledger.db with 10 compute credits, a revenue and
 * its shares, for tests/ledger/tool.sh. */
static int make_store(const char *dir)
{
	char *db;
	struct ledger *l = NULL;
	struct ledger_credit rev[] = {
		{ "model:m", 1, "model:m", LEDGER_REVENUE, 1000, "{\"call\":\"t1\"}", 1800000000 },
		{ "model:m", 1, "designer", LEDGER_SHARE, 300, NULL, 1800000000 },
		{ "model:m", 1, "p1", LEDGER_SHARE, 700, NULL, 1800000000 },
	};
	int r;

	REQUIRE(asprintf(&db, "%s/mining/ledger.db", dir) > 0);
	fill(db, 10);
	r = ledger_open(db, 0, &l);
	if (r == 0)
		r = ledger_append_batch(l, rev, 3, NULL);
	ledger_close(l);
	free(db);
	return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[300];

	if (argc == 3 && strcmp(argv[1], "--make-store") == 0)
		return make_store(argv[2]);

	snprintf(top, sizeof(top), "%s/ledger-test-XXXXXX", tmp ? tmp : "/tmp");
	REQUIRE(mkdtemp(top));
	RUN(test_model);
	RUN(test_revenue);
	RUN(test_hostile_db);
	RUN(test_hostile_file);
	RUN(test_transfer_rules);
	RUN(test_transfer_model);
	RUN(test_transfer_hostile);
	RUN(test_balance_json);
	RUN(test_crash);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (check_status() == 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", top);
	return check_status();
}
