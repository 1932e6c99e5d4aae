/*
 * plan_feat: what a prompt says, as numbers a router can learn from,
 * computed in C with no model download.
 *
 * A prompt becomes a sparse vector over PLAN_FEAT_DIM hashed buckets
 * (the hashing trick): lower-cased word unigrams and bigrams (a word is a
 * run of letters, digits and bytes >= 0x80, so UTF-8 text stays whole),
 * character 4-grams of each word padded with one blank on each side (so
 * prefixes and suffixes count, as sklearn's char_wb), and one bucket for
 * the prompt's length class, floor(log2(bytes)).  Only the first
 * PLAN_FEAT_MAX_BYTES bytes are read for n-grams (the length class counts
 * them all), which bounds a vector's size.  Each kind of term is
 * hashed with its own salt.  Collisions are accepted: 2^17 buckets.
 *
 * plan_feat_terms() gives raw term counts; plan_feat_weigh() turns them
 * into TF-IDF weights against a struct plan_idf (sublinear tf, 1 + ln tf,
 * times the smoothed idf ln((1 + N) / (1 + df)) + 1, N documents seen) and
 * normalises the vector to unit length, so a dot product is a cosine.
 *
 * Pure functions apart from the structs the caller passes; a plan_idf is
 * not locked (its owner, e.g. plan_route, serialises access).  Errors:
 * -ENOMEM.
 */
#ifndef LLMFS_PLAN_FEAT_H
#define LLMFS_PLAN_FEAT_H

#include <stddef.h>
#include <stdint.h>

#define PLAN_FEAT_BITS 17
#define PLAN_FEAT_DIM (1u << PLAN_FEAT_BITS)
#define PLAN_FEAT_MAX_BYTES 8192

/* A sparse vector: idx strictly increasing, val the weight of each. */
struct plan_feat {
	uint32_t *idx;
	float *val;
	size_t n;
};

/* Document frequencies of the buckets over the documents added. */
struct plan_idf {
	uint32_t *df;     /* PLAN_FEAT_DIM counters */
	uint64_t n_docs;
};

/* Raw counts of the text's terms (val = count).  NULL text: no terms. */
int plan_feat_terms(const char *text, struct plan_feat *ret);
void plan_feat_release(struct plan_feat *f);

int plan_idf_init(struct plan_idf *d);
void plan_idf_release(struct plan_idf *d);
/* Counts one document (its raw terms). */
void plan_idf_add(struct plan_idf *d, const struct plan_feat *terms);
/* ln((1 + N) / (1 + df)) + 1 */
double plan_idf_weight(const struct plan_idf *d, uint32_t bucket);

/* TF-IDF weights of raw terms, L2-normalised (all zero stays empty). */
int plan_feat_weigh(const struct plan_idf *d, const struct plan_feat *terms,
		    struct plan_feat *ret);

/* Dot product of two sparse vectors. */
double plan_feat_dot(const struct plan_feat *a, const struct plan_feat *b);

#endif
