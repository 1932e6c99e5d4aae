/*
 * The outer step of DiLoCo (scheduler/mining_job.h, mining_outer_step()): Nesterov momentum
 * with the paper's outer lr 0.7 and momentum 0.9, applied to known pseudo-gradients for three
 * rounds, against weights and momenta worked out by hand (in the comments); the heavy-ball
 * variant (nesterov=0) too.  And the job file's outer keys: the defaults are 0.7 / 0.9 /
 * Nesterov, outer-lr=, outer-momentum= and nesterov= change them, values out of range are
 * refused naming the key.
 */
#include <math.h>
#include <string.h>

#include "scheduler/mining_job.h"
#include "tests/check.h"

#define NEAR(a, b) CHECK_MSG(fabsf((a) - (b)) < 1e-5f, "%s = %.7g, want %.7g", #a, (double)(a), \
			     (double)(b))

/* The mean pseudo-gradients of rounds 1..3, two coordinates. */
static const float D[3][2] = { { 0.5f, -1.0f }, { 0.25f, 0.0f }, { -0.5f, 2.0f } };

static void test_nesterov(void)
{
	struct mining_outer o = { 0.7f, 0.9f, 1 };
	float W[2] = { 1.0f, -2.0f }, v[2] = { 0, 0 }, u[2];
	/*
	 * v = 0.9 v + d;  u = -0.7 (d + 0.9 v);  W += u
	 * coordinate 0: r1 v 0.5,  u -0.7 (0.5 + 0.45) = -0.665,    W 0.335
	 *               r2 v 0.7,  u -0.7 (0.25 + 0.63) = -0.616,   W -0.281
	 *               r3 v 0.13, u -0.7 (-0.5 + 0.117) = 0.2681,  W -0.0129
	 * coordinate 1: r1 v -1,   u -0.7 (-1 - 0.9) = 1.33,        W -0.67
	 *               r2 v -0.9, u -0.7 (0 - 0.81) = 0.567,       W -0.103
	 *               r3 v 1.19, u -0.7 (2 + 1.071) = -2.1497,    W -2.2527
	 */
	static const float want_v[3][2] = { { 0.5f, -1.0f }, { 0.7f, -0.9f }, { 0.13f, 1.19f } };
	static const float want_u[3][2] = { { -0.665f, 1.33f }, { -0.616f, 0.567f },
					    { 0.2681f, -2.1497f } };
	static const float want_W[3][2] = { { 0.335f, -0.67f }, { -0.281f, -0.103f },
					    { -0.0129f, -2.2527f } };

	for (int r = 0; r < 3; r++) {
		mining_outer_step(&o, v, u, D[r], 2);
		for (int k = 0; k < 2; k++) {
			W[k] += u[k];
			NEAR(v[k], want_v[r][k]);
			NEAR(u[k], want_u[r][k]);
			NEAR(W[k], want_W[r][k]);
		}
	}
}

static void test_heavy_ball(void)
{
	struct mining_outer o = { 0.7f, 0.9f, 0 };
	float v[1] = { 0 }, u[1];
	/* u = -0.7 v: r1 v 0.5, u -0.35;  r2 v 0.7, u -0.49;  r3 v 0.13, u -0.091 */
	static const float want_u[3] = { -0.35f, -0.49f, -0.091f };

	for (int r = 0; r < 3; r++) {
		mining_outer_step(&o, v, u, &D[r][0], 1);
		NEAR(u[0], want_u[r]);
	}
}

static void test_keys(void)
{
	static const char base[] = "data=models/corpora/tiny.txt layers=1 heads=1 embd=16 seq=16\n"
				   "steps=100 inner-steps=50\n";
	struct mining_outer o = { 0 };
	char text[512], err[256] = "";

	CHECK_RC(mining_job_outer(base, strlen(base), &o, err, sizeof(err)), 0);
	CHECK_MSG(o.lr == 0.7f && o.mu == 0.9f && o.nesterov == 1, "defaults %g %g %d (%s)",
		  (double)o.lr, (double)o.mu, o.nesterov, err);
	snprintf(text, sizeof(text), "%souter-lr=0.3 outer-momentum=0.5 nesterov=0\n", base);
	CHECK_RC(mining_job_outer(text, strlen(text), &o, err, sizeof(err)), 0);
	CHECK(o.lr == 0.3f && o.mu == 0.5f && o.nesterov == 0);
	snprintf(text, sizeof(text), "%souter-momentum=1\n", base);
	CHECK_RC(mining_job_outer(text, strlen(text), &o, err, sizeof(err)), -EINVAL);
	CHECK_MSG(strstr(err, "outer-momentum"), "%s", err);
	snprintf(text, sizeof(text), "%souter-momentum=-0.1\n", base);
	CHECK_RC(mining_job_outer(text, strlen(text), &o, err, sizeof(err)), -EINVAL);
	snprintf(text, sizeof(text), "%souter-lr=x\n", base);
	CHECK_RC(mining_job_outer(text, strlen(text), &o, err, sizeof(err)), -EINVAL);
	CHECK_MSG(strstr(err, "outer-lr"), "%s", err);
}

int main(void)
{
	RUN(test_nesterov);
	RUN(test_heavy_ball);
	RUN(test_keys);
	return check_status();
}
