/*
 * check.h - the assertions of the unit tests: print where and why, count
 * failures, and let main() return the count.
 */
#ifndef LLMFS_CHECK_H
#define LLMFS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			check_failures++;                                    \
		}                                                            \
	} while (0)

#define CHECK_EQ(a, b)                                                        \
	do {                                                                  \
		long long a_ = (long long)(a), b_ = (long long)(b);           \
		if (a_ != b_) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", \
				__FILE__, __LINE__, #a, #b, a_, b_);          \
			check_failures++;                                     \
		}                                                             \
	} while (0)

#define RUN(test)                                        \
	do {                                             \
		int before_ = check_failures;            \
		test();                                  \
		fprintf(stderr, "%s %s\n",               \
			check_failures == before_ ? "ok  " : "FAIL", #test); \
	} while (0)

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
