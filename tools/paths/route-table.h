/*
 * route-table: reads an outcome table (docs/paths.md, "Outcome table")
 * for llmfs-route-eval.
 *
 * Tab-separated UTF-8, one header line (a UTF-8 byte order mark before it
 * is skipped), any number of columns found by name in any order; a known
 * column named twice is refused.  Rows end at LF (a CR before it is
 * dropped, so CRLF files read alike); a raw CR inside a field is kept.
 * `answer` and `prompt` are unescaped (\t \n \r \\; another backslash is
 * kept as it is); with a key (plan_answer_key()) an answer is known by
 * its key alone, and one without a key is as missing.  Every refused row
 * is reported as "file:line: column:
 * reason" on stderr.  At most ROUTE_MAX_MODELS models (a bit mask per
 * prompt says which answered).
 *
 * Errors: -EINVAL (reported), -ENOMEM.
 */
#ifndef LLMFS_ROUTE_TABLE_H
#define LLMFS_ROUTE_TABLE_H

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define ROUTE_MAX_MODELS 64

struct intern {
	char **names;
	size_t n, cap;
	size_t *slots;  /* open addressing, index + 1, 0 = empty */
	size_t n_slots;
};

enum { SPLIT_HASH = -1, SPLIT_TRAIN = 0, SPLIT_TEST = 1 };

struct prompt {
	char *id;
	int type;
	int split;          /* SPLIT_*, from the split column */
	char *text;         /* the prompt column, NULL when absent */
	double q[ROUTE_MAX_MODELS];
	double c[ROUTE_MAX_MODELS];
	double l[ROUTE_MAX_MODELS];
	signed char chk[ROUTE_MAX_MODELS]; /* 1, 0, -1 unknown */
	uint64_t ans[ROUTE_MAX_MODELS];    /* the answer's key's hash, 0 none */
	uint64_t have;      /* bit per model */
	uint64_t said;      /* bit per model with an answer (keyed or not) */
	bool train;
};

struct table {
	struct intern models, types, ids;
	struct prompt *p;
	size_t n, cap;
	bool has_latency, has_prompt, has_split, has_answer;
	const regex_t *key; /* set before table_load(); NULL: whole answers */
};

int table_load(struct table *t, FILE *in, const char *name);
void table_release(struct table *t);

/* Into *ret, the hash of what the executor compares of an answer (its
 * key under key, plan_answer_key(); key NULL: the whole answer), which is
 * never 0; 0 when the answer holds no key.  Returns 0 or -ENOMEM. */
int answer_key(const regex_t *key, const char *s, uint64_t *ret);

uint64_t route_fnv(const char *s, uint64_t h);

#endif
