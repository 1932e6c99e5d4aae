/* plan_util: see plan_util.h for the contract. */
#include "plan_util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void plan_rng_seed(struct plan_rng *rng, uint64_t seed)
{
	/* xoshiro256** must not start from all zeros; splitmix64 guarantees that. */
	for (int i = 0; i < 4; i++)
		rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t plan_rng_next(struct plan_rng *rng)
{
	uint64_t *s = rng->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double plan_rng_uniform(struct plan_rng *rng)
{
	return (double)(plan_rng_next(rng) >> 11) * 0x1.0p-53;
}

double plan_rng_normal(struct plan_rng *rng)
{
	double u1, u2;

	do
		u1 = plan_rng_uniform(rng);
	while (u1 <= 0.0);
	u2 = plan_rng_uniform(rng);
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double plan_rng_gamma(struct plan_rng *rng, double shape)
{
	double d, c, x, v, u;

	if (shape < 1.0) {
		/* Boost: Gamma(a) = Gamma(a + 1) * U^(1/a). */
		do
			u = plan_rng_uniform(rng);
		while (u <= 0.0);
		return plan_rng_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
	}
	d = shape - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		do {
			x = plan_rng_normal(rng);
			v = 1.0 + c * x;
		} while (v <= 0.0);
		v = v * v * v;
		u = plan_rng_uniform(rng);
		if (u < 1.0 - 0.0331 * x * x * x * x)
			return d * v;
		if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

double plan_rng_beta(struct plan_rng *rng, double a, double b)
{
	double x = plan_rng_gamma(rng, a);
	double y = plan_rng_gamma(rng, b);

	if (x + y <= 0.0)
		return a / (a + b);
	return x / (x + y);
}

void plan_buf_init(struct plan_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void plan_buf_release(struct plan_buf *b)
{
	free(b->data);
	plan_buf_init(b);
}

static int buf_reserve(struct plan_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	size_t cap;
	char *p;

	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int plan_buf_append(struct plan_buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n);

	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int plan_buf_puts(struct plan_buf *b, const char *s)
{
	return plan_buf_append(b, s, strlen(s));
}

int plan_buf_printf(struct plan_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *plan_buf_steal(struct plan_buf *b)
{
	char *p = b->data;

	if (!p)
		p = strdup("");
	plan_buf_init(b);
	return p;
}

size_t plan_answer_normalise(char *s)
{
	char *d = s;
	bool blank = false;

	for (const char *c = s; *c; c++) {
		if (isspace((unsigned char)*c)) {
			blank = d > s;
			continue;
		}
		if (blank)
			*d++ = ' ';
		blank = false;
		*d++ = (char)tolower((unsigned char)*c);
	}
	*d = '\0';
	return (size_t)(d - s);
}

/* Whether bytes [so, eo) of s hold more than blanks. */
static bool non_blank(const char *s, regoff_t so, regoff_t eo)
{
	for (regoff_t i = so; i < eo; i++)
		if (!isspace((unsigned char)s[i]))
			return true;
	return false;
}

int plan_answer_key(const regex_t *re, const char *answer, char **ret_key)
{
	const regoff_t len = (regoff_t)strlen(answer);
	regoff_t off = 0, kso = -1, keo = -1;
	regmatch_t m[2];

	*ret_key = NULL;
	if (!re) {
		if (!(*ret_key = strdup(answer)))
			return -ENOMEM;
		plan_answer_normalise(*ret_key);
		return 0;
	}
	/*
	 * Every match in turn, each after the last one's end, in the whole
	 * string (REG_STARTEND: no strlen per match, and ^ and word anchors
	 * see the bytes before): the last whose key holds more than blanks
	 * is the key (a final answer follows the reasoning).
	 */
	while (off <= len) {
		const regmatch_t *g = re->re_nsub > 0 ? &m[1] : &m[0];

		m[0].rm_so = off;
		m[0].rm_eo = len;
		if (regexec(re, answer, 2, m, REG_STARTEND) != 0)
			break;
		if (g->rm_so >= 0 && non_blank(answer, g->rm_so, g->rm_eo)) {
			kso = g->rm_so;
			keo = g->rm_eo;
		}
		/* An empty match moves on by one byte, not to loop. */
		off = m[0].rm_eo + (m[0].rm_eo == m[0].rm_so);
	}
	if (kso < 0)
		return 0;
	if (!(*ret_key = strndup(answer + kso, (size_t)(keo - kso))))
		return -ENOMEM;
	plan_answer_normalise(*ret_key);
	return 0;
}

/* The end of the bracket expression that starts at c ('['), or NULL. */
static const char *bracket_end(const char *c)
{
	/* ] first is a member; [: [. [= open a class, a collating element
	 * or an equivalence class, which end at :] .] =]. */
	c++;
	if (*c == '^')
		c++;
	if (*c == ']')
		c++;
	for (; *c && *c != ']'; c++)
		if (*c == '[' && (c[1] == ':' || c[1] == '.' || c[1] == '=')) {
			const char end[3] = { c[1], ']', 0 };
			const char *e = strstr(c + 2, end);

			if (!e)
				return NULL;
			c = e + 1;
		}
	return *c ? c : NULL;
}

/* An interval {m}, {m,}, {m,n} or glibc's {,n} at c: its largest count
 * (m for {m,}), and *end past it; -1 when c holds none. */
static long interval(const char *c, const char **end)
{
	char *e = (char *)c + 1;
	long m = 0, n;

	if (*c != '{' || !(isdigit((unsigned char)c[1]) ||
			   (c[1] == ',' && isdigit((unsigned char)c[2]))))
		return -1;
	if (isdigit((unsigned char)*e))
		m = strtol(e, &e, 10);
	n = m;
	if (*e == ',') {
		e++;
		if (isdigit((unsigned char)*e))
			n = strtol(e, &e, 10);
	}
	if (*e != '}')
		return -1;
	*end = e + 1;
	return n > m ? n : m;
}

int plan_regex_vet(const char *src, char *msg, size_t n)
{
	/*
	 * Per open group: the weight so far, that of its last atom, and
	 * whether it holds a repetition.  An interval multiplies the atom
	 * it follows and + doubles it (glibc copies what they repeat); an
	 * interval on what is or holds a repetition is refused, since
	 * glibc's regcomp takes exponential time on some of those:
	 * ((a|b*)*|c?){20} takes seconds, {40} minutes.
	 */
	double acc[PLAN_REGEX_MAX_DEPTH + 1] = { 0 };
	double last[PLAN_REGEX_MAX_DEPTH + 1] = { 0 };
	bool rep[PLAN_REGEX_MAX_DEPTH + 1] = { false };
	bool last_rep = false;  /* the last atom is or holds a repetition */
	int depth = 0;

	for (const char *c = src; *c; c++) {
		const char *e;
		long k = -1;
		double w = 1;
		bool group_rep = false;

		if (*c == '\\') {
			if (c[1] >= '1' && c[1] <= '9') {
				snprintf(msg, n, "back-references are not "
					 "allowed");
				return -EINVAL;
			}
			if (c[1])
				c++;
		} else if (*c == '[') {
			if (!(e = bracket_end(c)))
				return 0;       /* regcomp refuses it */
			c = e;
		} else if (*c == '(') {
			if (depth == PLAN_REGEX_MAX_DEPTH) {
				snprintf(msg, n, "more than %d nested groups",
					 PLAN_REGEX_MAX_DEPTH);
				return -EINVAL;
			}
			depth++;
			acc[depth] = last[depth] = 0;
			rep[depth] = false;
			continue;
		} else if (*c == ')' && depth > 0) {
			w = acc[depth] > 1 ? acc[depth] : 1;
			group_rep = rep[depth];
			depth--;
			rep[depth] |= group_rep;
		} else if (*c == '+' || (k = interval(c, &e)) >= 0) {
			if (k >= 0 && last_rep) {
				snprintf(msg, n, "an interval on what holds "
					 "a repetition");
				return -EINVAL;
			}
			if (k < 0)
				k = 2;
			else
				c = e - 1;
			acc[depth] += last[depth] * ((double)k - 1);
			last[depth] *= (double)k;
			rep[depth] = last_rep = true;
			if (acc[depth] > PLAN_REGEX_MAX_WEIGHT)
				break;
			continue;
		} else if (*c == '*' || *c == '?') {
			rep[depth] = last_rep = true;
			continue;
		} else if (*c == '|') {
			continue;
		}
		acc[depth] += w;
		last[depth] = w;
		last_rep = group_rep;
	}
	for (int d = depth; d > 0; d--)
		acc[0] += acc[d];
	if (acc[0] > PLAN_REGEX_MAX_WEIGHT) {
		snprintf(msg, n, "too large once its repetitions are expanded "
			 "(over %d atoms)", PLAN_REGEX_MAX_WEIGHT);
		return -EINVAL;
	}
	return 0;
}

int plan_key_compile(regex_t *re, const char *src, char *msg, size_t n)
{
	int r;

	if (plan_regex_vet(src, msg, n) < 0)
		return -EINVAL;
	r = regcomp(re, src, REG_EXTENDED);
	if (!r)
		return 0;
	regerror(r, re, msg, n);
	return -EINVAL;
}

char *plan_strdup0(const char *s)
{
	return s ? strdup(s) : NULL;
}

int plan_errf(char **ret_msg, int rc, const char *fmt, ...)
{
	va_list ap;

	if (ret_msg && !*ret_msg) {
		va_start(ap, fmt);
		if (vasprintf(ret_msg, fmt, ap) < 0)
			*ret_msg = NULL;
		va_end(ap);
	}
	return rc;
}
