/*
 * Minimal assertions for the paths tests: a failed CHECK reports where and
 * ends the test with status 1; SKIP ends it with 77 (meson's skip).
 */
#ifndef LLMFS_TEST_PATHS_CHECK_H
#define LLMFS_TEST_PATHS_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                     \
	do {                                                            \
		if (!(cond)) {                                          \
			fprintf(stderr, "%s:%d: check failed: %s\n",    \
				__FILE__, __LINE__, #cond);             \
			exit(1);                                        \
		}                                                       \
	} while (0)

#define CHECK_RC(expr, want)                                            \
	do {                                                            \
		long rc_ = (long)(expr);                                \
		if (rc_ != (long)(want)) {                              \
			fprintf(stderr, "%s:%d: %s returned %ld, want %ld\n", \
				__FILE__, __LINE__, #expr, rc_,         \
				(long)(want));                          \
			exit(1);                                        \
		}                                                       \
	} while (0)

#define SKIP(why)                                                       \
	do {                                                            \
		fprintf(stderr, "skipped: %s\n", why);                  \
		exit(77);                                               \
	} while (0)

#endif
