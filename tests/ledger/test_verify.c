/*
 * test_verify.c - replaying replicas' windows with the engine (scheduler/mining_verify.h,
 * gpu/window.h) and the coalition value the breakthrough reward is split by.
 *
 * honest: 1000 windows of a tiny GPT (4 replicas x 250 rounds of DiLoCo, the global weights
 *   moving every round), each computed by a "provider" model and replayed by a separate
 *   "verifier" model: no false flag.
 * cheats: each of the five cheats planted in a window and caught, with its verdict.
 * cuda tolerance: CUDA's comparison (MINING_VERIFY_CUDA_TOL) on the CPU: honest windows run
 *   with other thread counts and perturbed pass, the planted cheats are still caught.
 * pick: the check probability q is what it says, and unpredictable without the key.
 * shapley: on a real round, the shares add up to the improvement, a zero pseudo-gradient
 *   gets 0, a copy is flagged by its replay and earns nothing.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/window.h"
#include "scheduler/mining_verify.h"
#include "scheduler/reward.h"
#include "tests/check.h"

#define N_TOK 60000
#define REPL 4

static uint16_t tokens[N_TOK];

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Text-like bytes: words of a small vocabulary with spaces and full stops; the last
 * 10000 tokens are the designer's validation data. */
static void make_tokens(void)
{
	static const char *const words[] = { "the", "king", "shall", "not", "go", "to",
					     "war", "with", "a", "crown", "of", "gold",
					     "my", "lord", "and", "lady", "speak" };
	uint64_t s = 5;
	size_t i = 0;

	while (i < N_TOK) {
		const char *w = words[rng_next(&s) % 17];

		while (*w && i < N_TOK)
			tokens[i++] = (uint8_t)*w++;
		if (i < N_TOK)
			tokens[i++] = rng_next(&s) % 7 == 0 ? '.' : ' ';
	}
}

static struct gpu_model *tiny_model(void)
{
	struct gpu_config cfg = { 1, 2, 16, 16, 256 };
	struct gpu_opts o = { GPU_BACKEND_CPU, 4, 16, 0, 7, 0 };
	struct gpu_model *m = NULL;

	REQUIRE(gpu_model_new(&m, &cfg, &o) == 0);
	return m;
}

static struct gpu_window window_of(const float *start, int replica, long round, long H)
{
	struct gpu_window w = { 0 };

	w.start = start;
	w.tokens = tokens;
	w.lo = (size_t)replica * 12500;
	w.hi = w.lo + 12500;
	w.seed = 1000003ULL * (uint64_t)round + (uint64_t)replica;
	w.steps = H;
	w.B = 2;
	w.T = 8;
	w.lr = 3e-3f;
	w.adamw = (struct gpu_adamw){ 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f };
	return w;
}

static void outer_step(float *global, float *const *d, size_t n)
{
	size_t j;
	int i;

	for (j = 0; j < n; j++) {
		float g = 0;

		for (i = 0; i < REPL; i++)
			g += d[i][j];
		global[j] -= 0.7f * g / REPL;
	}
}

static void test_honest(void)
{
	struct gpu_model *prov = tiny_model(), *ver = tiny_model();
	size_t n = gpu_model_num_params(prov), j;
	float *global = malloc(n * sizeof(float)), *d[REPL];
	int round, i, flags = 0, checked = 0;

	REQUIRE(gpu_model_read(prov, GPU_BUF_PARAMS, global) == 0);
	for (i = 0; i < REPL; i++)
		REQUIRE((d[i] = malloc(n * sizeof(float))));
	for (round = 0; round < 250; round++) {
		for (i = 0; i < REPL; i++) {
			struct gpu_window w = window_of(global, i, round, 2);

			REQUIRE(gpu_window_run(prov, &w, d[i], NULL, NULL) == 0);
		}
		for (i = 0; i < REPL; i++) {
			struct gpu_window w = window_of(global, i, round, 2);
			struct mining_check c;

			CHECK_RC(mining_verify_window(ver, &w, d[i], n, 0, (const float *const *)d,
						      REPL, &c), 0);
			checked++;
			if (c.verdict != MINING_OK) {
				flags++;
				fprintf(stderr, "  round %d replica %d flagged %s rel_err %g\n", round,
					i, mining_verdict_name(c.verdict), c.rel_err);
			}
		}
		outer_step(global, d, n);
	}
	for (j = 0, i = 0; j < n; j++)
		i |= !isfinite(global[j]);
	CHECK(!i);
	fprintf(stderr, "  %d honest windows checked, %d flagged\n", checked, flags);
	CHECK_EQ(checked, 1000);
	CHECK_EQ(flags, 0);
	for (i = 0; i < REPL; i++)
		free(d[i]);
	free(global);
	gpu_model_free(prov);
	gpu_model_free(ver);
}

struct cheat_env {
	struct gpu_model *prov, *ver;
	size_t n;
	float *global, *d[REPL];
	double tol;       /* 0: the CPU's bit-for-bit check; MINING_VERIFY_CUDA_TOL: CUDA's */
};

static void expect_verdict(struct cheat_env *e, const char *what, int replica,
			   const float *claim, enum mining_verdict want)
{
	struct gpu_window w = window_of(e->global, replica, 7, 3);
	struct mining_check c;
	char *js;

	CHECK_RC(mining_verify_window(e->ver, &w, claim, e->n, e->tol,
				      (const float *const *)e->d, REPL, &c), 0);
	js = mining_check_json(&c);
	fprintf(stderr, "  %-22s tol %g -> %s\n", what, e->tol, js);
	CHECK_MSG(c.verdict == want, "%s: verdict %s, want %s", what,
		  mining_verdict_name(c.verdict), mining_verdict_name(want));
	free(js);
}

static void cheats_at(double tol)
{
	struct cheat_env e = { .tol = tol };
	float *claim;
	uint64_t s = 3;
	size_t j;
	int i;

	e.prov = tiny_model();
	e.ver = tiny_model();
	e.n = gpu_model_num_params(e.prov);
	e.global = malloc(e.n * sizeof(float));
	claim = malloc(e.n * sizeof(float));
	REQUIRE(e.global && claim);
	REQUIRE(gpu_model_read(e.prov, GPU_BUF_PARAMS, e.global) == 0);
	for (i = 0; i < REPL; i++) {
		struct gpu_window w = window_of(e.global, i, 7, 3);

		REQUIRE((e.d[i] = malloc(e.n * sizeof(float))));
		REQUIRE(gpu_window_run(e.prov, &w, e.d[i], NULL, NULL) == 0);
	}
	expect_verdict(&e, "honest", 1, e.d[1], MINING_OK);
	/* noise of the honest norm */
	{
		double norm = 0;

		for (j = 0; j < e.n; j++)
			norm += (double)e.d[1][j] * e.d[1][j];
		norm = sqrt(norm / (double)e.n);
		for (j = 0; j < e.n; j++)
			claim[j] = (float)(norm * ((double)(rng_next(&s) % 2001) / 1000.0 - 1.0) *
					   1.7);
		expect_verdict(&e, "noise", 1, claim, MINING_NOISE);
	}
	/* replica 1 sends replica 2's pseudo-gradient */
	expect_verdict(&e, "copy of replica 2", 1, e.d[2], MINING_COPY);
	/* 2 of the 3 inner steps */
	{
		struct gpu_window w = window_of(e.global, 1, 7, 2);

		REQUIRE(gpu_window_run(e.prov, &w, claim, NULL, NULL) == 0);
		expect_verdict(&e, "fewer steps (2 of 3)", 1, claim, MINING_FEWER_STEPS);
	}
	/* the right seed and steps on replica 3's shard, and on the validation data */
	{
		struct gpu_window w = window_of(e.global, 1, 7, 3);

		w.lo = 37500;
		w.hi = 50000;
		REQUIRE(gpu_window_run(e.prov, &w, claim, NULL, NULL) == 0);
		expect_verdict(&e, "other data (a shard)", 1, claim, MINING_OTHER_DATA);
		w.lo = 50000;
		w.hi = N_TOK;
		REQUIRE(gpu_window_run(e.prov, &w, claim, NULL, NULL) == 0);
		expect_verdict(&e, "other data (val)", 1, claim, MINING_OTHER_DATA);
	}
	{
		static const float scales[] = { 2.0f, 0.5f, 1.01f, -1.0f };

		for (i = 0; i < 4; i++) {
			char what[32];

			for (j = 0; j < e.n; j++)
				claim[j] = e.d[1][j] * scales[i];
			snprintf(what, sizeof(what), "scaled x%g", scales[i]);
			expect_verdict(&e, what, 1, claim,
				       MINING_SCALED);
		}
	}
	/* one flipped bit is not the replay either (on the CPU) */
	memcpy(claim, e.d[1], e.n * sizeof(float));
	{
		uint32_t u;

		memcpy(&u, &claim[e.n / 2], 4);
		u ^= 1;
		memcpy(&claim[e.n / 2], &u, 4);
	}
	{
		struct gpu_window w = window_of(e.global, 1, 7, 3);
		struct mining_check c;

		CHECK_RC(mining_verify_window(e.ver, &w, claim, e.n, 0, NULL, 0, &c), 0);
		CHECK(c.verdict != MINING_OK);
		/* within the CUDA tolerance it would pass: the bound is documented as such */
		CHECK_RC(mining_verify_window(e.ver, &w, claim, e.n, MINING_VERIFY_CUDA_TOL, NULL, 0,
					      &c), 0);
		CHECK(c.verdict == MINING_OK);
		CHECK_RC(mining_verify_window(e.ver, &w, claim, e.n - 1, 0, NULL, 0, &c), -EINVAL);
		w.hi = w.lo + 5;
		CHECK_RC(mining_verify_window(e.ver, &w, claim, e.n, 0, NULL, 0, &c), -EINVAL);
	}
	for (i = 0; i < REPL; i++)
		free(e.d[i]);
	free(claim);
	free(e.global);
	gpu_model_free(e.prov);
	gpu_model_free(e.ver);
}

static void test_cheats(void)
{
	cheats_at(0);
}

/*
 * CUDA's comparison, tried on the CPU: every planted cheat still caught with the tolerance;
 * and honest windows whose floating-point sums were reordered pass.  The reordering is real:
 * the provider runs each window with another OpenMP thread count than the verifier (the
 * engine's reductions split differently, gpu/gpt.h "Determinism"), and, to stand for a
 * GPU's other kernels, each of its values also moved by up to 2^-16 of itself, far more than
 * one reordered fp32 sum (a few ulp, 2^-23 each).
 */
static void test_cuda_tolerance(void)
{
	struct gpu_model *prov = tiny_model(), *ver = tiny_model();
	size_t n = gpu_model_num_params(prov), j;
	float *global = malloc(n * sizeof(float)), *d[REPL];
	int round, i, flags = 0, checked = 0, differ = 0, nt = omp_get_max_threads();
	double worst = 0;
	uint64_t s = 11;

	cheats_at(MINING_VERIFY_CUDA_TOL);
	REQUIRE(global && gpu_model_read(prov, GPU_BUF_PARAMS, global) == 0);
	for (i = 0; i < REPL; i++)
		REQUIRE((d[i] = malloc(n * sizeof(float))));
	for (round = 0; round < 40; round++) {
		for (i = 0; i < REPL; i++) {
			struct gpu_window w = window_of(global, i, round, 3);

			omp_set_num_threads(3 + (round + i) % 2);
			REQUIRE(gpu_window_run(prov, &w, d[i], NULL, NULL) == 0);
		}
		omp_set_num_threads(1);
		for (i = 0; i < REPL; i++) {
			struct gpu_window w = window_of(global, i, round, 3);
			struct mining_check c;

			CHECK_RC(mining_verify_window(ver, &w, d[i], n, 0, NULL, 0, &c), 0);
			differ += c.verdict != MINING_OK;
			for (j = 0; j < n; j++)
				d[i][j] *= 1.0f + (float)((double)(rng_next(&s) % 2001) / 1000.0 - 1.0) *
						  0x1p-16f;
			CHECK_RC(mining_verify_window(ver, &w, d[i], n, MINING_VERIFY_CUDA_TOL,
						      (const float *const *)d, REPL, &c), 0);
			checked++;
			worst = c.rel_err > worst ? c.rel_err : worst;
			if (c.verdict != MINING_OK) {
				flags++;
				fprintf(stderr, "  round %d replica %d flagged %s rel_err %g\n", round,
					i, mining_verdict_name(c.verdict), c.rel_err);
			}
		}
		outer_step(global, d, n);
	}
	omp_set_num_threads(nt);
	fprintf(stderr, "  %d reordered windows (%d not bit-identical before the 2^-16 noise),"
		" %d flagged, largest relative L2 distance %.3g (tolerance %g)\n", checked, differ,
		flags, worst, MINING_VERIFY_CUDA_TOL);
	CHECK_EQ(flags, 0);
	CHECK(worst > 0);
	for (i = 0; i < REPL; i++)
		free(d[i]);
	free(global);
	gpu_model_free(prov);
	gpu_model_free(ver);
}

static void test_pick(void)
{
	uint8_t key[32] = { 1, 2, 3 }, key2[32] = { 9 };
	int picked = 0, same = 0, t;

	for (t = 0; t < 20000; t++) {
		int a = mining_verify_pick(key, "job", t / 8, t % 8, 0.1);
		int b = mining_verify_pick(key2, "job", t / 8, t % 8, 0.1);

		picked += a;
		same += a && b;
		CHECK_EQ(a, mining_verify_pick(key, "job", t / 8, t % 8, 0.1));
	}
	fprintf(stderr, "  q = 0.1: %d of 20000 picked, %d by both keys\n", picked, same);
	CHECK(picked > 1800 && picked < 2200);
	/* another key picks other windows: independent, about q^2 in common */
	CHECK(same < 320);
	CHECK_EQ(mining_verify_pick(key, "job", 1, 1, 0), 0);
	CHECK_EQ(mining_verify_pick(key, "job", 1, 1, 1.0), 1);
}

static void test_shapley_round(void)
{
	struct gpu_model *prov = tiny_model(), *ver = tiny_model(), *val = tiny_model();
	size_t n = gpu_model_num_params(prov);
	float *global = malloc(n * sizeof(float)), *d[6], *scratch = malloc(n * sizeof(float));
	uint8_t excluded[6] = { 0 };
	double phi[6], vn, sum = 0;
	int64_t pay[6], paid;
	int i;

	REQUIRE(global && scratch);
	REQUIRE(gpu_model_read(prov, GPU_BUF_PARAMS, global) == 0);
	/* replicas 0..3 honest (20 steps), 4 sends zeros, 5 copies replica 0 */
	for (i = 0; i < 6; i++) {
		REQUIRE((d[i] = calloc(n, sizeof(float))));
		if (i < 4) {
			struct gpu_window w = window_of(global, i, 1, 20);

			REQUIRE(gpu_window_run(prov, &w, d[i], NULL, NULL) == 0);
		}
	}
	memcpy(d[5], d[0], n * sizeof(float));
	for (i = 0; i < 6; i++) {
		struct gpu_window w = window_of(global, i < 4 ? i : i - 4, 1, 20);
		struct mining_check c;

		CHECK_RC(mining_verify_window(ver, &w, d[i], n, 0, (const float *const *)d, 6, &c),
			 0);
		excluded[i] = c.verdict != MINING_OK;
	}
	CHECK(!excluded[0] && !excluded[1] && !excluded[2] && !excluded[3]);
	CHECK(excluded[4] && excluded[5]);
	{
		struct mining_coalition co = { val, global, (const float *const *)d, 6, n, 0.7f,
					       tokens, 50000, N_TOK, 4, 16, 8, scratch, 0 };

		CHECK_RC(mining_coalition_init(&co), 0);
		CHECK_RC(reward_shapley(6, mining_coalition_value, &co, 0, 1, phi, &vn), 0);
		fprintf(stderr, "  base loss %.5f, v(N) %.6f, phi %.6f %.6f %.6f %.6f %.6f %.6f\n",
			co.base_loss, vn, phi[0], phi[1], phi[2], phi[3], phi[4], phi[5]);
	}
	for (i = 0; i < 6; i++)
		sum += phi[i];
	CHECK_MSG(fabs(sum - vn) <= 1e-9 * fabs(vn) + 1e-12, "sum %g v(N) %g", sum, vn);
	CHECK(vn > 0);
	CHECK_MSG(fabs(phi[4]) <= 1e-9 * fabs(vn), "zero pseudo-gradient: %g", phi[4]);
	/* the copy, were it not flagged, would take half of replica 0's value */
	CHECK_MSG(fabs(phi[5] - phi[0]) <= 1e-6 * fabs(vn), "%g %g", phi[5], phi[0]);
	paid = reward_split_shapley(10 * 1000000, 6, phi, excluded, pay);
	CHECK_EQ(paid, 10 * 1000000);
	CHECK_EQ(pay[4], 0);
	CHECK_EQ(pay[5], 0);
	CHECK_EQ(pay[0] + pay[1] + pay[2] + pay[3], 10 * 1000000);
	fprintf(stderr, "  pay %lld %lld %lld %lld %lld %lld micro-USD\n", (long long)pay[0],
		(long long)pay[1], (long long)pay[2], (long long)pay[3], (long long)pay[4],
		(long long)pay[5]);
	for (i = 0; i < 6; i++)
		free(d[i]);
	free(global);
	free(scratch);
	gpu_model_free(prov);
	gpu_model_free(ver);
	gpu_model_free(val);
}

int main(void)
{
	/* replays are bit-exact at a fixed thread count: fix it */
	omp_set_num_threads(2);
	make_tokens();
	RUN(test_cheats);
	RUN(test_cuda_tolerance);
	RUN(test_pick);
	RUN(test_shapley_round);
	RUN(test_honest);
	return check_status();
}
