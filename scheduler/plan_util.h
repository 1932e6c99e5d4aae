/*
 * plan_util: small helpers shared by the planning modules — a seeded random
 * generator, Beta/Gamma sampling for Thompson sampling, a growable byte
 * buffer, a monotonic clock and the form in which answers are compared
 * (whole, or by a key).
 *
 * Contract: no state outside the structs the caller passes in, so two
 * engines (or a test and an engine) never share a random stream.  A
 * struct plan_rng is not thread-safe; each thread or each lock owner keeps
 * its own.  Functions returning int give 0 or -errno (-ENOMEM; -EINVAL for
 * a key that does not compile).
 */
#ifndef LLMFS_PLAN_UTIL_H
#define LLMFS_PLAN_UTIL_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct plan_rng {
	uint64_t s[4];
};

void plan_rng_seed(struct plan_rng *rng, uint64_t seed);
uint64_t plan_rng_next(struct plan_rng *rng);
/* Uniform in [0, 1). */
double plan_rng_uniform(struct plan_rng *rng);
double plan_rng_normal(struct plan_rng *rng);
/* Gamma(shape, 1) for shape > 0 (Marsaglia–Tsang). */
double plan_rng_gamma(struct plan_rng *rng, double shape);
/* Beta(a, b) for a, b > 0. */
double plan_rng_beta(struct plan_rng *rng, double a, double b);

/* A growable, always NUL-terminated byte buffer. */
struct plan_buf {
	char *data;
	size_t len;
	size_t cap;
};

void plan_buf_init(struct plan_buf *b);
void plan_buf_release(struct plan_buf *b);
int plan_buf_append(struct plan_buf *b, const void *p, size_t n);
int plan_buf_puts(struct plan_buf *b, const char *s);
int plan_buf_printf(struct plan_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Hands the data to the caller (who frees it) and empties the buffer. */
char *plan_buf_steal(struct plan_buf *b);

/*
 * Sets *ret_msg to the formatted message unless it already holds one (the
 * first reason is the one reported); ret_msg may be NULL.  Returns rc, so
 * that `return plan_errf(ret_err, -EINVAL, "...")` reports and fails at once.
 */
int plan_errf(char **ret_msg, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Rewrites an answer, in place, into the form in which agreement cascades
 * and votes compare answers (the executor and llmfs-route-eval alike):
 * blanks at either end dropped, every run of blanks inside (spaces, tabs,
 * line ends) one space, ASCII letters in lower case.  Returns the new
 * length.  "B", " b\n" and "b" compare equal; "x = 1" and "x  =\t1" too.
 */
size_t plan_answer_normalise(char *s);

/*
 * An answer's key: what agreement cascades and votes compare when a task
 * names one (a step's "key", llmfs-route-eval's --key), so that "The
 * answer is (B)." and "Answer: B" can agree.  Of the matches of re in the
 * answer (each search starting where the last match ended), the key is
 * the last whose key part (the first parenthesised group when re has
 * one, else the whole match) holds more than blanks, in
 * plan_answer_normalise()'s form; re NULL: the whole answer in that form.
 * *ret_key is NULL when no match holds one: such an answer agrees with no
 * other.  One pass over the answer (each search costs what the regex
 * costs).  Returns 0 or -ENOMEM.
 */
int plan_answer_key(const regex_t *re, const char *answer, char **ret_key);
/*
 * Compiles a key's POSIX extended regex (byte-wise, as the caller's
 * locale has it: C in the daemon); -EINVAL with a reason in msg (n bytes)
 * when it does not compile or plan_regex_vet() refuses it.
 */
int plan_key_compile(regex_t *re, const char *src, char *msg, size_t n);
/*
 * Whether a task's extended regex may be compiled (any user may write
 * one, and glibc's regcomp and regexec are not made for hostile
 * patterns): 0, or -EINVAL with the reason in msg (n bytes) for
 * - a back-reference (\1 .. \9 outside a bracket expression): not POSIX
 *   ERE, matched in exponential time by glibc, which crashes on some;
 * - more than PLAN_REGEX_MAX_DEPTH nested groups;
 * - more than PLAN_REGEX_MAX_WEIGHT atoms once intervals and + are
 *   expanded, as glibc compiles them, by copies (((a{1,100}){1,100}){1,100}
 *   takes gigabytes, (((a)+)+)... doubles with every +);
 * - an interval on what is or holds a repetition (*, +, ?, an
 *   interval): ((a|b*)*|c?){40} takes regcomp minutes.
 * Syntax errors are left to regcomp().
 */
#define PLAN_REGEX_MAX_DEPTH 32
#define PLAN_REGEX_MAX_WEIGHT 1000
int plan_regex_vet(const char *src, char *msg, size_t n);

/* strdup that accepts NULL. */
char *plan_strdup0(const char *s);

#endif
