/*
 * tests/check.h - the assertions of every C test.
 *
 * A failed check prints "file:line: check failed: ..." on stderr, counts,
 * and the test goes on, so that one run shows every failure; main() ends
 * with `return check_status();`, non-zero when any check failed.  REQUIRE
 * is for what the rest of a test cannot do without (a handle, an
 * allocation): it reports the same way and ends the test with status 1.
 * SKIP ends it with 77, meson's skip, and says why.
 *
 * The count is one for the whole program: a weak definition merges the
 * copies of every file that includes this header (a test and its helpers,
 * as tests/paths/standin.c), and it is atomic because helpers check from
 * their own threads.
 */
#ifndef LLMFS_TESTS_CHECK_H
#define LLMFS_TESTS_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((weak)) _Atomic int check_failures;

/* A failed check: where, and why (printf-style). */
#define CHECK_MSG(cond, ...)                                                 \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: ", __FILE__,   \
				__LINE__);                                   \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			check_failures++;                                    \
		}                                                            \
	} while (0)

#define CHECK(cond) CHECK_MSG(cond, "%s", #cond)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		long long a_ = (long long)(a), b_ = (long long)(b);          \
		CHECK_MSG(a_ == b_, "%s == %s (%lld != %lld)", #a, #b, a_, b_); \
	} while (0)

/* A call's return code against the one wanted. */
#define CHECK_RC(expr, want)                                                 \
	do {                                                                 \
		long rc_ = (long)(expr), want_ = (long)(want);               \
		CHECK_MSG(rc_ == want_, "%s returned %ld, want %ld", #expr,  \
			  rc_, want_);                                       \
	} while (0)

#define REQUIRE(cond)                                                        \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: required: %s\n", __FILE__,   \
				__LINE__, #cond);                            \
			exit(1);                                             \
		}                                                            \
	} while (0)

#define SKIP(why)                                                            \
	do {                                                                 \
		fprintf(stderr, "skipped: %s\n", why);                       \
		exit(77);                                                    \
	} while (0)

/* Runs one test function and says whether its checks held. */
#define RUN(test)                                                            \
	do {                                                                 \
		int before_ = check_failures;                                \
		test();                                                      \
		fprintf(stderr, "%s %s\n",                                   \
			check_failures == before_ ? "ok  " : "FAIL", #test); \
	} while (0)

/* main()'s exit status: 0, or 1 after saying how many checks failed. */
static inline int check_status(void)
{
	int n = check_failures;

	if (n)
		fprintf(stderr, "%d check(s) failed\n", n);
	return n ? 1 : 0;
}

/* A reproducible byte stream (xorshift64*), for test data. */
static inline void fill_random(unsigned char *buf, size_t len, unsigned long long seed)
{
	unsigned long long x = seed * 2654435761ULL + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		buf[i] = (unsigned char)((x * 2685821657736338717ULL) >> 56);
	}
}

#endif
