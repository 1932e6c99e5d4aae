/* plan_stats: posterior arithmetic, exploration and persistence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check.h"
#include "scheduler/plan_stats.h"

static void test_posterior(void)
{
	struct plan_stats *s;
	struct plan_estimate e;

	CHECK_RC(plan_stats_open(NULL, 2, &s), 0);
	/* Nothing known: Beta(1, 1), unknown cost and latency. */
	CHECK_RC(plan_stats_estimate(s, "a", "math", &e), 0);
	CHECK(e.n == 0 && fabs(e.quality - 0.5) < 1e-12);
	CHECK(e.cost < 0 && e.latency < 0);
	for (int i = 0; i < 8; i++)
		CHECK_RC(plan_stats_record(s, "a", "math", i < 6 ? 1 : 0,
					   0.01 * (i + 1), 2.0), 0);
	CHECK_RC(plan_stats_estimate(s, "a", "math", &e), 0);
	/* Pooled mean m = (1 + 6) / (2 + 8) = 0.7; a = 2 * 0.7 + 6. */
	CHECK(e.n == 8);
	CHECK(fabs(e.alpha - 7.4) < 1e-9 && fabs(e.beta - 2.6) < 1e-9);
	CHECK(fabs(e.quality - 0.74) < 1e-9);
	CHECK(fabs(e.cost - 0.045) < 1e-12 && fabs(e.latency - 2.0) < 1e-12);
	/* An unseen type borrows the model's pooled mean, cost and latency. */
	CHECK_RC(plan_stats_estimate(s, "a", "poetry", &e), 0);
	CHECK(e.n == 0 && fabs(e.quality - 0.7) < 1e-9);
	CHECK(fabs(e.cost - 0.045) < 1e-12);
	/* NaN quality: cost and latency only. */
	CHECK_RC(plan_stats_record(s, "a", "math", NAN, 0.125, -1), 0);
	CHECK_RC(plan_stats_estimate(s, "a", "math", &e), 0);
	CHECK(e.n == 8 && fabs(e.cost - (0.36 + 0.125) / 9) < 1e-12);
	CHECK_RC(plan_stats_record(s, "", "math", 1, 0, 0), -EINVAL);
	CHECK_RC(plan_stats_record(s, "a", "", 1, 0, 0), -EINVAL);
	plan_stats_free(s);
}

static void test_explore(void)
{
	struct plan_estimate e = { .alpha = 30, .beta = 10 };
	struct plan_rng rng;
	double sum = 0, sq = 0, lo = 1, hi = 0;
	const int n = 20000;

	e.quality = 0.75;
	plan_rng_seed(&rng, 42);
	for (int i = 0; i < n; i++) {
		double x = plan_estimate_sample(&e, &rng);

		CHECK(x >= 0 && x <= 1);
		sum += x;
		sq += x * x;
		lo = fmin(lo, x);
		hi = fmax(hi, x);
	}
	/* Beta(30, 10): mean 0.75, sd 0.0677. */
	CHECK(fabs(sum / n - 0.75) < 0.003);
	CHECK(fabs(sqrt(sq / n - (sum / n) * (sum / n)) - 0.0677) < 0.003);
	CHECK(lo < 0.6 && hi > 0.9);
	CHECK(fabs(plan_estimate_ucb(&e, 1) - (0.75 + 0.0677)) < 0.001);
	CHECK(plan_estimate_ucb(&e, 100) == 1.0);
}

static void test_persist(void)
{
	char dir[] = "/tmp/plan-stats-XXXXXX", path[64];
	struct plan_stats *s;
	struct plan_estimate e;
	char *text;

	CHECK(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/stats.db", dir);
	CHECK_RC(plan_stats_open(path, 0, &s), 0);
	CHECK_RC(plan_stats_record(s, "m1", "sum", 1, 0.002, 1.5), 0);
	CHECK_RC(plan_stats_record(s, "m1", "sum", 0, 0.004, 2.5), 0);
	CHECK_RC(plan_stats_record(s, "m2", "sum", 0.5, -1, -1), 0);
	plan_stats_free(s);
	/* A restart sees everything acknowledged before it. */
	CHECK_RC(plan_stats_open(path, 0, &s), 0);
	CHECK_RC(plan_stats_estimate(s, "m1", "sum", &e), 0);
	CHECK(e.n == 2 && fabs(e.cost - 0.003) < 1e-12);
	CHECK(fabs(e.latency - 2.0) < 1e-12);
	CHECK_RC(plan_stats_estimate(s, "m2", "sum", &e), 0);
	CHECK(e.n == 1 && e.cost < 0);
	CHECK_RC(plan_stats_format(s, &text), 0);
	CHECK(!strncmp(text, "model\ttask_type\tn\tquality", 25));
	CHECK(strstr(text, "m1\tsum\t2\t"));
	CHECK(strstr(text, "m2\tsum\t1\t"));
	free(text);
	plan_stats_free(s);
	/* A file that is not a database is refused, not overwritten. */
	snprintf(path, sizeof(path), "%s/stats.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/stats.db-shm", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/stats.db", dir);
	{
		FILE *f = fopen(path, "w");

		REQUIRE(f);
		fputs("this is not sqlite, just text that is long enough to "
		      "fill a header page of one hundred bytes or so ......",
		      f);
		fclose(f);
	}
	CHECK(plan_stats_open(path, 0, &s) < 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s/stats.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/stats.db-shm", dir);
	unlink(path);
	rmdir(dir);
}

/*
 * Durability: a child records observations and reports each one acknowledged
 * on a pipe; it is killed with SIGKILL mid-stream.  Reopened, the table must
 * hold at least every acknowledged observation and never more than were
 * attempted, with consistent sums (no half-written row).
 */
static void test_kill(void)
{
	char dir[] = "/tmp/plan-kill-XXXXXX", path[64];
	struct plan_stats *s;
	struct plan_estimate e;
	int fds[2], acked = 0;
	pid_t pid;
	char c;

	CHECK(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/stats.db", dir);
	CHECK(pipe(fds) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if (plan_stats_open(path, 0, &s) < 0)
			_exit(2);
		for (int i = 0; i < 100000; i++) {
			if (plan_stats_record(s, "m", "t", 1, 0.5, 1.0) < 0)
				_exit(3);
			if (write(fds[1], "+", 1) != 1)
				_exit(4);
		}
		_exit(0);
	}
	close(fds[1]);
	while (acked < 40 && read(fds[0], &c, 1) == 1)
		acked++;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (read(fds[0], &c, 1) == 1)
		acked++;
	close(fds[0]);
	CHECK(acked >= 40);
	CHECK_RC(plan_stats_open(path, 0, &s), 0);
	CHECK_RC(plan_stats_estimate(s, "m", "t", &e), 0);
	/* At most one more: the write in flight when the kill came. */
	CHECK(e.n >= acked && e.n <= acked + 1);
	CHECK(fabs(e.cost - 0.5) < 1e-12 && fabs(e.latency - 1.0) < 1e-12);
	plan_stats_free(s);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

int main(void)
{
	test_posterior();
	test_explore();
	test_persist();
	test_kill();
	return check_status();
}
