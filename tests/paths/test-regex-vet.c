/*
 * plan_regex_vet(), with seeded random patterns: every pattern of the
 * parts that make glibc's regex engine slow or large (groups, alternation,
 * *, +, ?, intervals, classes) that the vetting lets through must compile
 * and match a 2,000-byte answer within 2 s and, outside the sanitizers
 * (whose shadow memory needs the address space), 256 MiB; each runs in a
 * child of its own, so that a failure is a report, not a hung test.
 * Usage: test-regex-vet [SEED [COUNT]] (default 1, 3000).
 */
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check.h"
#include "scheduler/plan_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

static const char *const parts[] = {
	"a", "b", "(", ")", "(", ")", "|", "*", "+", "?", "{2}", "{1,9}",
	"{,9}", "{20}", "{1,50}", "[ab]", ".", "$",
};

/* Compiles and matches re in a child under limits; its wait status. */
static int try_pattern(const char *re)
{
	pid_t pid = fork();
	int st = -1;

	if (pid == 0) {
		static char answer[2000];
		regmatch_t m[2];
		regex_t r;

#ifndef SANITIZED
		struct rlimit rl = { 256u << 20, 256u << 20 };

		setrlimit(RLIMIT_AS, &rl);
#endif
		alarm(2);
		for (size_t i = 0; i + 1 < sizeof(answer); i++)
			answer[i] = "ab"[i % 3 == 0];
		if (regcomp(&r, re, REG_EXTENDED) == 0) {
			regexec(&r, answer, 2, m, 0);
			regfree(&r);
		}
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

int main(int argc, char **argv)
{
	const size_t np = sizeof(parts) / sizeof(*parts);
	unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
	long count = argc > 2 ? atol(argv[2]) : 3000, passed = 0;
	struct plan_rng rng;

	plan_rng_seed(&rng, seed);
	for (long it = 0; it < count; it++) {
		char re[256] = "", msg[128];
		size_t len = 1 + plan_rng_next(&rng) % 16;
		int st;

		for (size_t i = 0; i < len; i++)
			strcat(re, parts[plan_rng_next(&rng) % np]);
		if (plan_regex_vet(re, msg, sizeof(msg)) < 0)
			continue;
		passed++;
		st = try_pattern(re);
		CHECK_MSG(st == 0, "seed %u: %s: wait status %d", seed, re, st);
	}
	/* The vetting lets most such patterns through, not none. */
	CHECK_MSG(passed > count / 5, "%ld of %ld passed", passed, count);
	return check_status();
}
