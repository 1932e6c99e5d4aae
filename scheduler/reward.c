/*
 * reward.c - compute pay, breakthrough rewards, Shapley splits and profit shares, all in
 * integer micro-USD at the end (see reward.h for the formulas and the rounding rule).
 */
#include "scheduler/reward.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_err(char *err, size_t errlen, const char *msg, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %.*s", msg, 40, what);
	return -EINVAL;
}

/* "1.25" to 1250; -EINVAL beyond 3 decimals or 10^6. */
static int parse_milli(const char *s, size_t n, int64_t *ret)
{
	int64_t whole = 0, frac = 0;
	size_t i = 0;
	int digits = 0, fd = 0;

	for (; i < n && isdigit((unsigned char)s[i]); i++, digits++) {
		whole = whole * 10 + (s[i] - '0');
		if (whole > 1000000)
			return -EINVAL;
	}
	if (i < n && s[i] == '.') {
		for (i++; i < n && isdigit((unsigned char)s[i]); i++, fd++) {
			if (fd >= 3)
				return -EINVAL;
			frac = frac * 10 + (s[i] - '0');
		}
	}
	if (i != n || (digits == 0 && fd == 0))
		return -EINVAL;
	while (fd++ < 3)
		frac *= 10;
	*ret = whole * 1000 + frac;
	return 0;
}

int reward_billing_parse(const char *s, struct reward_billing *ret, char *err, size_t errlen)
{
	struct reward_billing b = { 0 };
	const char *p = s;

	if (!s || !*s)
		return set_err(err, errlen, "billing weights: empty", "");
	while (*p) {
		const char *end = strchr(p, ','), *eq, *stop;
		size_t len = end ? (size_t)(end - p) : strlen(p), k;

		stop = p + len;
		eq = memchr(p, '=', len);
		if (!eq || eq == p)
			return set_err(err, errlen, "billing weights: not kind=weight", p);
		if (!strncasecmp(p, "gres/", 5) && eq - p > 5)
			p += 5;
		if ((size_t)(eq - p) >= REWARD_KIND_LEN || b.n == REWARD_KINDS_MAX)
			return set_err(err, errlen, "billing weights: too long or too many", p);
		for (k = 0; p + k < eq; k++) {
			if (!isalnum((unsigned char)p[k]) && p[k] != '_' && p[k] != '-')
				return set_err(err, errlen, "billing weights: bad kind", p);
			b.kind[b.n][k] = (char)tolower((unsigned char)p[k]);
		}
		if (parse_milli(eq + 1, (size_t)(stop - (eq + 1)), &b.milli[b.n]) < 0)
			return set_err(err, errlen, "billing weights: bad weight (0 to 10^6, at most"
				       " 3 decimals)", eq + 1);
		b.n++;
		p = end ? end + 1 : stop;
		if (end && !*p)
			return set_err(err, errlen, "billing weights: trailing comma", s);
	}
	*ret = b;
	return 0;
}

int reward_compute_pay(const struct reward_billing *b, const char *kind, double device_seconds,
		       int64_t price_micro_per_hour, int64_t *ret_micro)
{
	__int128 v;
	int64_t ms;
	int i;

	if (!isfinite(device_seconds) || device_seconds < 0 || device_seconds > 1e12 ||
	    price_micro_per_hour < 0)
		return -EINVAL;
	for (i = 0; i < b->n; i++)
		if (strcasecmp(b->kind[i], kind) == 0)
			break;
	if (i == b->n)
		return -EINVAL;
	ms = llround(device_seconds * 1000.0);
	v = (__int128)b->milli[i] * ms * price_micro_per_hour / (1000 * (__int128)3600000);
	if (v > INT64_MAX)
		return -EINVAL;
	*ret_micro = (int64_t)v;
	return 0;
}

int reward_breakthrough(double best, double loss, double eps, int64_t rate_micro,
			int64_t *ret_micro)
{
	double rel;

	*ret_micro = 0;
	if (!isfinite(best) || !isfinite(loss) || best <= 0 || loss <= 0 || !isfinite(eps) ||
	    eps < 0 || rate_micro < 0)
		return -EINVAL;
	rel = (best - loss) / best;
	if (!(rel > eps))
		return 0;
	*ret_micro = (int64_t)floor((double)rate_micro * rel);
	return 1;
}

/* ---- Shapley ---- */

static int shapley_exact(int n, reward_value_fn fn, void *arg, double *phi, double *ret_vn)
{
	size_t m = (size_t)1 << n, s;
	double *v = malloc(m * sizeof(*v)), w[REWARD_SHAPLEY_EXACT_MAX + 1], fact[9] = { 1 };
	uint8_t mem[REWARD_SHAPLEY_EXACT_MAX];
	int i, r = 0;

	if (!v)
		return -ENOMEM;
	for (i = 1; i <= n; i++)
		fact[i] = fact[i - 1] * i;
	/* weight of a coalition of size k not holding i: k! (n - k - 1)! / n! */
	for (i = 0; i < n; i++)
		w[i] = fact[i] * fact[n - i - 1] / fact[n];
	for (s = 0; s < m && r == 0; s++) {
		for (i = 0; i < n; i++)
			mem[i] = (s >> i) & 1;
		r = fn(arg, mem, n, &v[s]);
	}
	if (r < 0)
		goto out;
	for (i = 0; i < n; i++) {
		phi[i] = 0;
		for (s = 0; s < m; s++)
			if (!(s & ((size_t)1 << i)))
				phi[i] += w[__builtin_popcountll(s)] *
					  (v[s | ((size_t)1 << i)] - v[s]);
	}
	if (ret_vn)
		*ret_vn = v[m - 1] - v[0];
out:
	free(v);
	return r;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int shapley_sampled(int n, reward_value_fn fn, void *arg, long samples, uint64_t seed,
			   double *phi, double *ret_vn)
{
	uint8_t *mem = calloc((size_t)n, 1);
	int *perm = malloc((size_t)n * sizeof(*perm)), i, r;
	double v0, prev, cur, vn = 0;
	long t;

	if (!mem || !perm) {
		r = -ENOMEM;
		goto out;
	}
	r = fn(arg, mem, n, &v0);
	if (r < 0)
		goto out;
	for (i = 0; i < n; i++) {
		phi[i] = 0;
		perm[i] = i;
	}
	for (t = 0; t < samples; t++) {
		for (i = n - 1; i > 0; i--) { /* Fisher-Yates */
			int j = (int)(splitmix(&seed) % (uint64_t)(i + 1)), x = perm[i];

			perm[i] = perm[j];
			perm[j] = x;
		}
		memset(mem, 0, (size_t)n);
		prev = v0;
		for (i = 0; i < n; i++) {
			mem[perm[i]] = 1;
			r = fn(arg, mem, n, &cur);
			if (r < 0)
				goto out;
			phi[perm[i]] += cur - prev;
			prev = cur;
		}
		vn = prev - v0;
	}
	for (i = 0; i < n; i++)
		phi[i] /= (double)samples;
	if (ret_vn)
		*ret_vn = vn;
out:
	free(mem);
	free(perm);
	return r;
}

int reward_shapley(int n, reward_value_fn fn, void *arg, long samples, uint64_t seed,
		   double *phi, double *ret_vn)
{
	if (n < 1 || n > REWARD_PLAYERS_MAX || !fn || samples < 0)
		return -EINVAL;
	if (n <= REWARD_SHAPLEY_EXACT_MAX)
		return shapley_exact(n, fn, arg, phi, ret_vn);
	return shapley_sampled(n, fn, arg, samples ? samples : 100L * n, seed, phi, ret_vn);
}

/* ---- splits ---- */

int reward_split_units(int64_t total, int n, const int64_t *w, int64_t *ret)
{
	__int128 W = 0, *rem;
	int64_t given = 0;
	int i;

	if (total < 0 || n < 1)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (w[i] < 0)
			return -EINVAL;
		W += w[i];
	}
	if (W == 0)
		return -EINVAL;
	rem = malloc((size_t)n * sizeof(*rem));
	if (!rem)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		__int128 p = (__int128)total * w[i];

		ret[i] = (int64_t)(p / W);
		rem[i] = p % W;
		given += ret[i];
	}
	/* total - given < n: one unit each to the largest remainders, ties to the lower index */
	while (given < total) {
		int best = -1;

		for (i = 0; i < n; i++)
			if (rem[i] >= 0 && (best < 0 || rem[i] > rem[best]))
				best = i;
		ret[best]++;
		rem[best] = -1;
		given++;
	}
	free(rem);
	return 0;
}

int64_t reward_split_shapley(int64_t total, int n, const double *phi, const uint8_t *excluded,
			     int64_t *ret)
{
	int64_t *w = calloc((size_t)(n > 0 ? n : 1), sizeof(*w));
	double max = 0;
	int i, any = 0;

	for (i = 0; i < n; i++) {
		ret[i] = 0;
		if ((!excluded || !excluded[i]) && isfinite(phi[i]) && phi[i] > max)
			max = phi[i];
	}
	if (!w || total <= 0 || !(max > 0)) {
		free(w);
		return 0;
	}
	for (i = 0; i < n; i++)
		if ((!excluded || !excluded[i]) && isfinite(phi[i]) && phi[i] > 0) {
			w[i] = (int64_t)llround(phi[i] / max * 1099511627776.0); /* 2^40 */
			any |= w[i] > 0;
		}
	if (!any || reward_split_units(total, n, w, ret) < 0) {
		memset(ret, 0, (size_t)n * sizeof(*ret));
		free(w);
		return 0;
	}
	free(w);
	return total;
}

int reward_revenue_split(int64_t revenue, int designer_bp, int n, const int64_t *units,
			 int64_t *ret_designer, int64_t *ret)
{
	int64_t designer, rest, sum = 0;
	int i;

	if (revenue < 0 || designer_bp < 0 || designer_bp > 10000 || n < 0)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (units[i] < 0)
			return -EINVAL;
		sum += units[i];
		ret[i] = 0;
	}
	designer = (int64_t)((__int128)revenue * designer_bp / 10000);
	rest = revenue - designer;
	if (sum == 0) {
		*ret_designer = revenue;
		return 0;
	}
	*ret_designer = designer;
	return reward_split_units(rest, n, units, ret);
}

double reward_escape_probability(double q, long m)
{
	return pow(1.0 - q, (double)m);
}

long reward_windows_caught(double q, double p)
{
	if (!(q > 0 && q <= 1 && p >= 0 && p < 1))
		return -EINVAL;
	if (q == 1)
		return 1;
	return (long)ceil(log(1.0 - p) / log(1.0 - q) - 1e-12);
}
