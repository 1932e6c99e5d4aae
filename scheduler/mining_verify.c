/*
 * mining_verify.c - replaying a window, classifying a claim that does not replay, picking
 * windows to check, and the coalition value of a round's pseudo-gradients.
 */
#include "scheduler/mining_verify.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char *const verdict_names[] = {
	"ok", "copy", "fewer-steps", "scaled", "noise", "other-data",
};

const char *mining_verdict_name(enum mining_verdict v)
{
	return (unsigned)v <= MINING_OTHER_DATA ? verdict_names[v] : "?";
}

/* ||a - b|| / ||b|| (a == b bit for bit: 0). */
static double rel_err(const float *a, const float *b, size_t n)
{
	double d = 0, nb = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		double x = (double)a[i] - b[i];

		d += x * x;
		nb += (double)b[i] * b[i];
	}
	if (nb == 0)
		return d == 0 ? 0 : INFINITY;
	return sqrt(d / nb);
}

static int same(const float *a, const float *b, size_t n, double tol)
{
	if (tol == 0)
		return memcmp(a, b, n * sizeof(*a)) == 0;
	return rel_err(a, b, n) <= tol;
}

struct steps_arg {
	const float *claim;
	double tol;
	long H, matched;
};

static int on_step(void *arg, long k, const float *delta, size_t n)
{
	struct steps_arg *s = arg;

	if (k < s->H && !s->matched && same(s->claim, delta, n, s->tol))
		s->matched = k;
	return 0;
}

static void classify(const float *claim, const float *replay, size_t n,
		     struct mining_check *c)
{
	double dot = 0, nc = 0, nr = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		dot += (double)claim[i] * replay[i];
		nc += (double)claim[i] * claim[i];
		nr += (double)replay[i] * replay[i];
	}
	c->cosine = nc > 0 && nr > 0 ? dot / sqrt(nc * nr) : 0;
	c->scale = nr > 0 ? dot / nr : 0;
	if (fabs(c->cosine) > 0.999)
		c->verdict = MINING_SCALED;
	else if (fabs(c->cosine) < 0.2)
		c->verdict = MINING_NOISE;
	else
		c->verdict = MINING_OTHER_DATA;
}

void mining_verify_compare(const float *claim, const float *replay, size_t n, double tol,
			   const float *const *others, int n_others, struct mining_check *ret)
{
	struct mining_check c = { 0 };
	int i;

	c.copy_of = -1;
	c.rel_err = rel_err(claim, replay, n);
	if (same(claim, replay, n, tol)) {
		c.verdict = MINING_OK;
		c.cosine = c.scale = 1;
		*ret = c;
		return;
	}
	classify(claim, replay, n, &c);
	for (i = 0; i < n_others; i++)
		if (others[i] && same(claim, others[i], n, tol)) {
			c.verdict = MINING_COPY;
			c.copy_of = i;
			break;
		}
	*ret = c;
}

int mining_verify_window(struct gpu_model *m, const struct gpu_window *w, const float *claim,
			 size_t n, double tol, const float *const *others, int n_others,
			 struct mining_check *ret)
{
	struct steps_arg sa = { claim, tol, w->steps, 0 };
	struct mining_check c = { 0 };
	float *replay;
	int r;

	if (n != gpu_model_num_params(m) || tol < 0)
		return -EINVAL;
	replay = malloc(n * sizeof(*replay));
	if (!replay)
		return -ENOMEM;
	r = gpu_window_run(m, w, replay, on_step, &sa);
	if (r < 0)
		goto out;
	mining_verify_compare(claim, replay, n, tol, others, n_others, &c);
	if (c.verdict != MINING_OK && c.verdict != MINING_COPY && sa.matched) {
		c.verdict = MINING_FEWER_STEPS;
		c.steps = sa.matched;
	}
	*ret = c;
out:
	free(replay);
	return r;
}

int mining_verify_pick(const uint8_t key[32], const char *job, long round, int replica,
		       double q)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char msg[512];
	uint64_t x = 0;
	int len, i;

	len = snprintf(msg, sizeof(msg), "%s\n%ld\n%d", job, round, replica);
	if (len < 0 || (size_t)len >= sizeof(msg))
		return 0;
	if (!HMAC(EVP_sha256(), key, 32, (const unsigned char *)msg, (size_t)len, md, &mdlen))
		return 0;
	for (i = 0; i < 8; i++)
		x = x << 8 | md[i];
	return (double)x / 18446744073709551616.0 < q;
}

char *mining_check_json(const struct mining_check *c)
{
	char *s;

	if (asprintf(&s, "{\"verdict\":\"%s\",\"rel_err\":%.9g,\"cosine\":%.9g,\"scale\":%.9g,"
		     "\"steps_matched\":%ld,\"copy_of\":%d}", mining_verdict_name(c->verdict),
		     isfinite(c->rel_err) ? c->rel_err : -1.0, c->cosine, c->scale, c->steps,
		     c->copy_of) < 0)
		return NULL;
	return s;
}

int mining_coalition_init(struct mining_coalition *c)
{
	return gpu_window_loss(c->m, c->global, c->val, c->val_lo, c->val_hi, c->B, c->T,
			       c->n_batches, &c->base_loss);
}

int mining_coalition_value(void *arg, const uint8_t *members, int n, double *ret_value)
{
	struct mining_coalition *c = arg;
	float k = c->outer_lr / (float)c->n_replicas;
	double loss;
	size_t j;
	int i, r;

	if (n != c->n_replicas)
		return -EINVAL;
	memcpy(c->scratch, c->global, c->n * sizeof(float));
	for (i = 0; i < n; i++)
		if (members[i])
			for (j = 0; j < c->n; j++)
				c->scratch[j] -= k * c->deltas[i][j];
	r = gpu_window_loss(c->m, c->scratch, c->val, c->val_lo, c->val_hi, c->B, c->T,
			    c->n_batches, &loss);
	if (r < 0)
		return r;
	*ret_value = c->base_loss - loss;
	return 0;
}
