/*
 * test_reward.c - the reward formulas (scheduler/reward.h) on synthetic inputs: compute pay
 * and billing weights, the breakthrough threshold, Shapley values (exact and sampled) with
 * their properties, and integer splits that add up exactly.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "scheduler/ledger.h"
#include "scheduler/reward.h"
#include "tests/check.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void test_compute_pay(void)
{
	struct reward_billing b;
	char err[128];
	int64_t pay = -1;

	CHECK_RC(reward_billing_parse("CPU=1.0,GRES/gpu=8,mem=0.25", &b, err, sizeof(err)), 0);
	CHECK_EQ(b.n, 3);
	CHECK_EQ(b.milli[1], 8000);
	CHECK_EQ(b.milli[2], 250);
	/* one GPU hour at 2 USD per billing hour, weight 8: 16 USD */
	CHECK_RC(reward_compute_pay(&b, "gpu", 3600.0, 2 * LEDGER_MICRO, &pay), 0);
	CHECK_EQ(pay, 16 * LEDGER_MICRO);
	/* 1.5 CPU-seconds at 0.036 USD/h: 15 micro-USD; 1.4994 s is 1499 ms, 14.99: 14 */
	CHECK_RC(reward_compute_pay(&b, "cpu", 1.5, 36000, &pay), 0);
	CHECK_EQ(pay, 15);
	CHECK_RC(reward_compute_pay(&b, "cpu", 1.4994, 36000, &pay), 0);
	CHECK_EQ(pay, 14);
	CHECK_RC(reward_compute_pay(&b, "tpu", 1, 1, &pay), -EINVAL);
	CHECK_RC(reward_compute_pay(&b, "cpu", -1, 1, &pay), -EINVAL);
	CHECK_RC(reward_compute_pay(&b, "cpu", NAN, 1, &pay), -EINVAL);
	CHECK_RC(reward_compute_pay(&b, "cpu", INFINITY, 1, &pay), -EINVAL);
	CHECK_RC(reward_compute_pay(&b, "cpu", 1, -1, &pay), -EINVAL);
	CHECK_RC(reward_billing_parse("cpu=1.0001", &b, err, sizeof(err)), -EINVAL);
	CHECK_RC(reward_billing_parse("cpu=-1", &b, err, sizeof(err)), -EINVAL);
	CHECK_RC(reward_billing_parse("cpu=1,", &b, err, sizeof(err)), -EINVAL);
	CHECK_RC(reward_billing_parse("=1", &b, err, sizeof(err)), -EINVAL);
	CHECK_RC(reward_billing_parse("c pu=1", &b, err, sizeof(err)), -EINVAL);
	CHECK_RC(reward_billing_parse("", &b, err, sizeof(err)), -EINVAL);
}

static void test_breakthrough(void)
{
	int64_t r = -1;

	/* 0.4% better: not above eps 0.5% */
	CHECK_RC(reward_breakthrough(2.0, 1.992, 0.005, 100 * LEDGER_MICRO, &r), 0);
	CHECK_EQ(r, 0);
	/* 10% better at 100 USD per unit of relative improvement: 10 USD */
	CHECK_RC(reward_breakthrough(2.0, 1.8, 0.005, 100 * LEDGER_MICRO, &r), 1);
	CHECK_MSG(llabs(r - 10 * LEDGER_MICRO) <= 1, "%lld", (long long)r);
	/* proportional: twice the improvement, twice the reward */
	{
		int64_t r2;

		CHECK_RC(reward_breakthrough(2.0, 1.6, 0.005, 100 * LEDGER_MICRO, &r2), 1);
		CHECK_MSG(llabs(r2 - 2 * r) <= 2, "%lld %lld", (long long)r, (long long)r2);
	}
	CHECK_RC(reward_breakthrough(2.0, 2.1, 0.005, 1, &r), 0);
	CHECK_RC(reward_breakthrough(2.0, NAN, 0.005, 1, &r), -EINVAL);
	CHECK_RC(reward_breakthrough(0, 1, 0.005, 1, &r), -EINVAL);
	CHECK_RC(reward_breakthrough(2, 1, -0.1, 1, &r), -EINVAL);
}

/* v(S) = sqrt(sum of a_i over S): concave, so players interact. */
struct synth {
	double a[32];
	int evals;
};

static int synth_value(void *arg, const uint8_t *mem, int n, double *ret)
{
	struct synth *s = arg;
	double sum = 0;
	int i;

	for (i = 0; i < n; i++)
		if (mem[i])
			sum += s->a[i];
	s->evals++;
	*ret = sqrt(sum);
	return 0;
}

static int failing_value(void *arg, const uint8_t *mem, int n, double *ret)
{
	(void)arg;
	(void)mem;
	(void)n;
	*ret = 0;
	return -EIO;
}

static void test_shapley(void)
{
	struct synth s = { { 4, 4, 4, 4, 0, 9 }, 0 };
	double phi[32], vn;
	int i;

	/* exact, 6 players: sum is v(N); the null player 4 gets 0; the symmetric 0..3 equal */
	CHECK_RC(reward_shapley(6, synth_value, &s, 0, 1, phi, &vn), 0);
	CHECK_EQ(s.evals, 64);
	CHECK_MSG(fabs(vn - 5.0) < 1e-12, "%g", vn);
	{
		double sum = 0;

		for (i = 0; i < 6; i++)
			sum += phi[i];
		CHECK_MSG(fabs(sum - vn) < 1e-12, "sum %g vn %g", sum, vn);
	}
	CHECK_MSG(fabs(phi[4]) < 1e-12, "null player %g", phi[4]);
	for (i = 1; i < 4; i++)
		CHECK_MSG(fabs(phi[i] - phi[0]) < 1e-12, "%g %g", phi[i], phi[0]);
	CHECK(phi[5] > phi[0]);

	/* sampled, 16 players (12 symmetric, a null one, 3 stronger): sum exact, symmetric
	 * within 5%, the null player 0 */
	for (i = 0; i < 16; i++)
		s.a[i] = i < 12 ? 1 : i == 12 ? 0 : 5;
	CHECK_RC(reward_shapley(16, synth_value, &s, 2000, 42, phi, &vn), 0);
	{
		double sum = 0, mean = 0;

		for (i = 0; i < 16; i++)
			sum += phi[i];
		CHECK_MSG(fabs(sum - vn) < 1e-9, "sum %g vn %g", sum, vn);
		for (i = 0; i < 12; i++)
			mean += phi[i] / 12;
		for (i = 0; i < 12; i++)
			CHECK_MSG(fabs(phi[i] - mean) <= 0.05 * mean, "player %d: %g, mean %g", i,
				  phi[i], mean);
		CHECK_MSG(phi[12] == 0, "null %g", phi[12]);
	}
	CHECK_RC(reward_shapley(3, failing_value, NULL, 0, 1, phi, NULL), -EIO);
	CHECK_RC(reward_shapley(12, failing_value, NULL, 0, 1, phi, NULL), -EIO);
	CHECK_RC(reward_shapley(0, synth_value, &s, 0, 1, phi, NULL), -EINVAL);
}

static void test_splits(void)
{
	uint64_t seed = 99;
	int t;

	for (t = 0; t < 2000; t++) {
		int n = 1 + (int)(rng_next(&seed) % 20), i;
		int64_t total = (int64_t)(rng_next(&seed) % 1000000000000ULL), w[20], out[20],
			sum = 0, des;
		double phi[20];
		uint8_t ex[20];

		for (i = 0; i < n; i++) {
			w[i] = (int64_t)(rng_next(&seed) % 1000000);
			phi[i] = (double)(rng_next(&seed) % 1000) / 7.0 - 30;
			ex[i] = rng_next(&seed) % 5 == 0;
		}
		w[0] += 1;
		CHECK_RC(reward_split_units(total, n, w, out), 0);
		{
			long double W = 0;

			for (i = 0; i < n; i++)
				W += w[i];
			for (i = 0; i < n; i++) {
				long double q = (long double)total * w[i] / W;

				sum += out[i];
				/* each part is its quota rounded down or up */
				CHECK_MSG(out[i] >= floorl(q) - 1 && out[i] <= ceill(q) + 1,
					  "part %lld quota %Lg", (long long)out[i], q);
			}
		}
		CHECK_EQ(sum, total);
		sum = 0;
		{
			int64_t paid = reward_split_shapley(total, n, phi, ex, out);

			for (i = 0; i < n; i++) {
				sum += out[i];
				if (ex[i] || phi[i] <= 0)
					CHECK_EQ(out[i], 0);
			}
			CHECK_EQ(sum, paid);
			CHECK(paid == 0 || paid == total);
		}
		sum = 0;
		CHECK_RC(reward_revenue_split(total, (int)(rng_next(&seed) % 10001), n, w, &des,
					      out), 0);
		for (i = 0; i < n; i++)
			sum += out[i];
		CHECK_EQ(sum + des, total);
	}
	{
		int64_t w[3] = { 1, 1, 1 }, out[3], des;

		/* 100 among three: 34, 33, 33 (the extra unit to the lowest index) */
		CHECK_RC(reward_split_units(100, 3, w, out), 0);
		CHECK_EQ(out[0], 34);
		CHECK_EQ(out[1], 33);
		CHECK_RC(reward_revenue_split(1000, 3000, 3, w, &des, out), 0);
		CHECK_EQ(des, 300);
		CHECK_EQ(out[0] + out[1] + out[2], 700);
		w[0] = w[1] = w[2] = 0;
		CHECK_RC(reward_revenue_split(1000, 3000, 3, w, &des, out), 0);
		CHECK_EQ(des, 1000);
		CHECK_RC(reward_split_units(5, 3, w, out), -EINVAL);
		CHECK_RC(reward_revenue_split(5, 10001, 3, w, &des, out), -EINVAL);
	}
}

static void test_escape(void)
{
	CHECK_EQ(reward_windows_caught(0.1, 0.95), 29);
	CHECK(reward_escape_probability(0.1, 29) <= 0.05);
	CHECK(reward_escape_probability(0.1, 28) > 0.05);
	CHECK_EQ(reward_windows_caught(0.05, 0.95), 59);
	CHECK_EQ(reward_windows_caught(1.0, 0.95), 1);
}

int main(void)
{
	RUN(test_compute_pay);
	RUN(test_breakthrough);
	RUN(test_shapley);
	RUN(test_splits);
	RUN(test_escape);
	return check_status();
}
