/*
 * test_mining_ledger.c - rounds and revenue booked through mining_ledger.c: compute pay for
 * accepted replicas, nothing but a flag for a rejected one, a breakthrough only above eps
 * and only after the first round, split by Shapley values that add up to the reward, a round
 * booked twice paying once, and revenue shared so that balances grow by exactly the shares.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/mining_ledger.h"
#include "tests/check.h"

static char top[256];

/* v(S) = sqrt of the members' weights; the test's stand-in for the engine's loss (the engine's
 * value is tested in test_verify.c). */
static int value(void *arg, const uint8_t *mem, int n, double *ret)
{
	const double *w = arg;
	double s = 0;
	int i;

	for (i = 0; i < n; i++)
		if (mem[i])
			s += w[i];
	*ret = sqrt(s);
	return 0;
}

static int64_t money(struct ledger *l, const char *acc)
{
	struct ledger_balance b;

	REQUIRE(ledger_balance(l, acc, &b) == 0);
	return b.money;
}

static int64_t units(struct ledger *l, const char *acc)
{
	struct ledger_balance b;

	REQUIRE(ledger_balance(l, acc, &b) == 0);
	return b.units;
}

static void test_rounds_and_revenue(void)
{
	char *db, err[LEDGER_ERR_MAX];
	struct ledger *l = NULL;
	struct mining_ledger_cfg cfg;
	double w[4] = { 1, 1, 4, 9 };
	struct mining_ledger_contrib c[4] = {
		{ "p1", "cpu", 3600, 1000000, 1, NULL, "{\"slot\":0}" },
		{ "p1", "cpu", 1800, 1000000, 1, NULL, "{\"slot\":1}" },
		{ "p2", "gpu", 360, 2000000, 1, NULL, NULL },
		{ "p3", "cpu", 3600, 1000000, 1, NULL, NULL },
	};
	struct mining_ledger_round r = { "j", 1, "alice", 3.0, c, 4, value, w };
	struct mining_ledger_paid paid;
	int64_t p1, p2, p3, al, rr, u1, u2;
	double best;

	REQUIRE(asprintf(&db, "%s/ml/ledger.db", top) > 0);
	REQUIRE(ledger_open(db, 1, &l) == 0);
	mining_ledger_cfg_init(&cfg);
	/* round 1: compute only (no best yet) */
	CHECK_RC(mining_ledger_book_round(l, &cfg, &r, &paid), 0);
	CHECK_EQ(paid.breakthrough, 0);
	/* p1: 1.5 CPU-hours at 1 USD; p2: 0.1 GPU-hours x 8 at 2 USD; p3: 1 USD */
	CHECK_EQ(money(l, "p1"), 1500000);
	CHECK_EQ(money(l, "p2"), 1600000);
	CHECK_EQ(money(l, "p3"), 1000000);
	CHECK_EQ(paid.compute, 4100000);
	CHECK_RC(mining_ledger_best(l, "j", 2, &best), 0);
	CHECK(best == 3.0);
	/* round 2: p3 rejected by the verifier; 2.5 beats 3.0 by 16.7 % */
	c[3].flag = "{\"verdict\":\"noise\"}";
	r.round = 2;
	r.val_loss = 2.5;
	p1 = money(l, "p1");
	p2 = money(l, "p2");
	p3 = money(l, "p3");
	CHECK_RC(mining_ledger_book_round(l, &cfg, &r, &paid), 0);
	CHECK_EQ(paid.flags, 1);
	CHECK_EQ(paid.breakthrough, 16666666);
	CHECK_EQ(money(l, "p3"), p3);
	CHECK_EQ(money(l, "p1") - p1 + money(l, "p2") - p2, paid.compute + paid.breakthrough);
	/* Shapley over p1's two replicas (1, 1) and p2's (4): sqrt(6) shared 1:1:4 by symmetry
	 * and... p2 earns more than each of p1's replicas */
	CHECK(money(l, "p2") - p2 - 1600000 > (money(l, "p1") - p1 - 1500000) / 2);
	/* booked again: nothing changes */
	p1 = money(l, "p1");
	CHECK_RC(mining_ledger_book_round(l, &cfg, &r, &paid), 0);
	CHECK_EQ(paid.appended, 0);
	CHECK_EQ(money(l, "p1"), p1);
	/* round 3: 0.4 % better than 2.5: below eps */
	c[3].flag = NULL;
	r.round = 3;
	r.val_loss = 2.49;
	CHECK_RC(mining_ledger_book_round(l, &cfg, &r, &paid), 0);
	CHECK_EQ(paid.breakthrough, 0);
	CHECK_RC(mining_ledger_best(l, "j", 4, &best), 0);
	CHECK(best == 2.49);

	/* revenue of model j: 30 % to alice, 70 % by units */
	p1 = money(l, "p1");
	p2 = money(l, "p2");
	p3 = money(l, "p3");
	al = money(l, "alice");
	u1 = units(l, "p1");
	u2 = units(l, "p2");
	CHECK_RC(mining_ledger_revenue(l, &cfg, "j", 1000000, "{\"call\":1}", &rr), 0);
	CHECK_EQ(rr, 1);
	CHECK_EQ(money(l, "alice") - al, 300000);
	{
		int64_t d1 = money(l, "p1") - p1, d2 = money(l, "p2") - p2, d3 = money(l, "p3") - p3;
		int64_t U = u1 + u2 + units(l, "p3");

		CHECK_EQ(d1 + d2 + d3, 700000);
		CHECK_MSG(llabs(d1 - 700000 * u1 / U) <= 1, "%lld", (long long)d1);
		CHECK_MSG(llabs(d2 - 700000 * u2 / U) <= 1, "%lld", (long long)d2);
	}
	CHECK_EQ(money(l, "model:j"), 1000000);
	CHECK_RC(mining_ledger_revenue(l, &cfg, "j", 333, NULL, &rr), 0);
	CHECK_EQ(rr, 2);
	CHECK_RC(mining_ledger_revenue(l, &cfg, "nomodel", 1000, NULL, &rr), -ENOENT);
	CHECK_RC(mining_ledger_revenue(l, &cfg, "j", -1, NULL, &rr), -EINVAL);
	/* a designer who also provided compute: one share entry */
	{
		struct mining_ledger_contrib k[1] = { { "alice", "cpu", 3600, 1000000, 1, NULL,
							NULL } };
		struct mining_ledger_round rk = { "k", 1, "alice", 3.0, k, 1, value, w };

		al = money(l, "alice");
		CHECK_RC(mining_ledger_book_round(l, &cfg, &rk, &paid), 0);
		CHECK_RC(mining_ledger_revenue(l, &cfg, "k", 1000, NULL, &rr), 0);
		CHECK_EQ(money(l, "alice") - al, 1000000 + 1000);
	}
	/* bad rounds change nothing */
	{
		struct mining_ledger_contrib bad[1] = { { "p1", "tpu", 1, 1, 1, NULL, NULL } };
		struct mining_ledger_round rb = { "j", 9, "alice", 1.0, bad, 1, value, w };
		int64_t h1, h2;
		char hash[72];

		REQUIRE(ledger_head(l, &h1, hash) == 0);
		CHECK_RC(mining_ledger_book_round(l, &cfg, &rb, &paid), -EINVAL);
		bad[0].device_kind = "cpu";
		bad[0].evidence = "[1]";
		CHECK_RC(mining_ledger_book_round(l, &cfg, &rb, &paid), -EINVAL);
		rb.round = 0;
		CHECK_RC(mining_ledger_book_round(l, &cfg, &rb, &paid), -EINVAL);
		REQUIRE(ledger_head(l, &h2, hash) == 0);
		CHECK_EQ(h1, h2);
	}
	CHECK_RC(ledger_verify(l, err, NULL), 0);
	if (err[0])
		fprintf(stderr, "%s\n", err);
	ledger_close(l);
	free(db);
}

/* test_mining_ledger --book STORE JOB: three rounds of JOB (designer alice; providers p1, p2)
 * booked into STORE's ledger, for tests/ledger/revenue.sh. */
static int book(const char *store, const char *job)
{
	double w[3] = { 1, 2, 3 };
	struct mining_ledger_contrib c[3] = {
		{ "p1", "cpu", 3600, 1000000, 1, NULL, NULL },
		{ "p2", "cpu", 7200, 1000000, 1, NULL, NULL },
		{ "p2", "cpu", 1800, 1000000, 1, NULL, NULL },
	};
	static const double loss[3] = { 3.0, 2.5, 2.2 };
	struct mining_ledger_round r = { job, 1, "alice", 0, c, 3, value, w };
	struct mining_ledger_cfg cfg;
	struct mining_ledger_paid paid;
	struct ledger *l = NULL;
	char *path = ledger_path(store);
	int i, rc;

	mining_ledger_cfg_init(&cfg);
	rc = path ? ledger_open(path, 1, &l) : -ENOMEM;
	for (i = 0; rc == 0 && i < 3; i++) {
		r.round = i + 1;
		r.val_loss = loss[i];
		rc = mining_ledger_book_round(l, &cfg, &r, &paid);
	}
	ledger_close(l);
	free(path);
	if (rc < 0)
		fprintf(stderr, "booking: %s\n", strerror(-rc));
	return rc < 0;
}

int main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[300];

	if (argc == 4 && strcmp(argv[1], "--book") == 0)
		return book(argv[2], argv[3]);

	snprintf(top, sizeof(top), "%s/mining-ledger-XXXXXX", tmp ? tmp : "/tmp");
	REQUIRE(mkdtemp(top));
	RUN(test_rounds_and_revenue);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (check_status() == 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", top);
	return check_status();
}
