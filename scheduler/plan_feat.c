/* plan_feat: hashed n-gram TF-IDF features of a prompt (plan_feat.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "plan_feat.h"

enum { SALT_WORD = 1, SALT_BIGRAM = 2, SALT_CHAR = 3, SALT_LEN = 4 };

static uint64_t mix(uint64_t h)
{
	/* splitmix64's finaliser: FNV alone leaves the low bits poorly mixed. */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	return h ^ (h >> 31);
}

static uint64_t fnv(const unsigned char *s, size_t n, uint64_t salt)
{
	uint64_t h = 1469598103934665603ULL ^ (salt * 0x9e3779b97f4a7c15ULL);

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ULL;
	return h;
}

static uint32_t bucket(uint64_t h)
{
	return (uint32_t)(mix(h) & (PLAN_FEAT_DIM - 1));
}

struct hashes {
	uint32_t *v;
	size_t n, cap;
};

static int push(struct hashes *h, uint32_t b)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 256;
		uint32_t *v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	h->v[h->n++] = b;
	return 0;
}

static bool is_word(unsigned char c)
{
	return isalnum(c) || c >= 0x80;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* One word: its unigram, its bigram with the previous word, its 4-grams. */
static int add_word(struct hashes *h, const unsigned char *w, size_t n,
		    uint64_t *prev)
{
	unsigned char pad[66];
	size_t m = n < 64 ? n : 64;
	uint64_t hw = fnv(w, n, SALT_WORD);

	if (push(h, bucket(hw)) < 0)
		return -ENOMEM;
	if (*prev && push(h, bucket(mix(*prev) ^ hw ^ SALT_BIGRAM)) < 0)
		return -ENOMEM;
	*prev = hw;
	/* Character 4-grams of " word " (long words: their first 64 bytes). */
	pad[0] = ' ';
	memcpy(pad + 1, w, m);
	pad[m + 1] = ' ';
	for (size_t i = 0; i + 4 <= m + 2; i++)
		if (push(h, bucket(fnv(pad + i, 4, SALT_CHAR))) < 0)
			return -ENOMEM;
	if (m + 2 < 4 && push(h, bucket(fnv(pad, m + 2, SALT_CHAR))) < 0)
		return -ENOMEM;
	return 0;
}

int plan_feat_terms(const char *text, struct plan_feat *ret)
{
	struct hashes h = { 0 };
	const unsigned char *s = (const unsigned char *)(text ? text : "");
	unsigned char word[256];
	uint64_t prev = 0;
	size_t len = strlen((const char *)s), wl = 0, k = 0;
	size_t scan = len < PLAN_FEAT_MAX_BYTES ? len : PLAN_FEAT_MAX_BYTES;
	int rc = 0;
	unsigned lc = 0;

	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i <= scan; i++) {
		unsigned char c = i < scan ? s[i] : 0;

		if (i < scan && is_word(c)) {
			if (wl < sizeof(word))
				word[wl++] = (unsigned char)tolower(c);
			continue;
		}
		if (wl && (rc = add_word(&h, word, wl, &prev)) < 0)
			goto out;
		wl = 0;
	}
	if (len) {
		for (size_t n = len; n > 1; n >>= 1)
			lc++;
		if ((rc = push(&h, bucket(fnv((unsigned char *)&lc, sizeof(lc),
					      SALT_LEN)))) < 0)
			goto out;
	}
	if (!h.n)
		goto out;
	qsort(h.v, h.n, sizeof(*h.v), cmp_u32);
	ret->idx = malloc(h.n * sizeof(*ret->idx));
	ret->val = malloc(h.n * sizeof(*ret->val));
	if (!ret->idx || !ret->val) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < h.n; i++) {
		if (k && ret->idx[k - 1] == h.v[i]) {
			ret->val[k - 1] += 1;
			continue;
		}
		ret->idx[k] = h.v[i];
		ret->val[k++] = 1;
	}
	ret->n = k;
out:
	free(h.v);
	if (rc < 0)
		plan_feat_release(ret);
	return rc;
}

void plan_feat_release(struct plan_feat *f)
{
	free(f->idx);
	free(f->val);
	memset(f, 0, sizeof(*f));
}

int plan_idf_init(struct plan_idf *d)
{
	d->n_docs = 0;
	d->df = calloc(PLAN_FEAT_DIM, sizeof(*d->df));
	return d->df ? 0 : -ENOMEM;
}

void plan_idf_release(struct plan_idf *d)
{
	free(d->df);
	d->df = NULL;
}

void plan_idf_add(struct plan_idf *d, const struct plan_feat *terms)
{
	for (size_t i = 0; i < terms->n; i++)
		if (d->df[terms->idx[i]] < UINT32_MAX)
			d->df[terms->idx[i]]++;
	d->n_docs++;
}

double plan_idf_weight(const struct plan_idf *d, uint32_t b)
{
	return log((1.0 + (double)d->n_docs) / (1.0 + d->df[b])) + 1.0;
}

int plan_feat_weigh(const struct plan_idf *d, const struct plan_feat *terms,
		    struct plan_feat *ret)
{
	double norm = 0;

	memset(ret, 0, sizeof(*ret));
	if (!terms->n)
		return 0;
	ret->idx = malloc(terms->n * sizeof(*ret->idx));
	ret->val = malloc(terms->n * sizeof(*ret->val));
	if (!ret->idx || !ret->val) {
		plan_feat_release(ret);
		return -ENOMEM;
	}
	for (size_t i = 0; i < terms->n; i++) {
		double w = (1.0 + log(terms->val[i])) *
			   plan_idf_weight(d, terms->idx[i]);

		ret->idx[i] = terms->idx[i];
		ret->val[i] = (float)w;
		norm += w * w;
	}
	ret->n = terms->n;
	norm = sqrt(norm);
	for (size_t i = 0; i < ret->n; i++)
		ret->val[i] = (float)(ret->val[i] / norm);
	return 0;
}

double plan_feat_dot(const struct plan_feat *a, const struct plan_feat *b)
{
	double s = 0;
	size_t i = 0, j = 0;

	while (i < a->n && j < b->n) {
		if (a->idx[i] < b->idx[j])
			i++;
		else if (a->idx[i] > b->idx[j])
			j++;
		else
			s += (double)a->val[i++] * b->val[j++];
	}
	return s;
}
