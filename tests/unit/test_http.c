/*
 * test_http.c - the retrying HTTP engine of common/http.h: its backoff
 * rule, its attempt counting, and its loop over real transfers that need
 * no network (file:// URLs and a refused connection on 127.0.0.1).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errmap.h"
#include "common/http.h"
#include "tests/check.h"

static void test_backoff(void)
{
	struct http_retry exec = { .attempts = 3, .first_ms = 250, .max_ms = 4000 };
	struct http_retry reg = { .attempts = 5, .first_ms = 100, .max_ms = 2000, .jitter = 1 };
	unsigned seed = 1;
	int n, i;

	/* the path executor's waits: 0.25 s doubling to 4 s */
	CHECK_EQ(http_backoff_ms(&exec, 1, &seed), 250);
	CHECK_EQ(http_backoff_ms(&exec, 2, &seed), 500);
	CHECK_EQ(http_backoff_ms(&exec, 5, &seed), 4000);
	CHECK_EQ(http_backoff_ms(&exec, 6, &seed), 4000);
	CHECK_EQ(http_backoff_ms(&exec, 1000, &seed), 4000);
	/* the registry's: jittered within [d/2, d], d = 100 ms doubling to 2 s */
	for (n = 1; n <= 8; n++) {
		int64_t d = n >= 6 ? 2000 : 100 << (n - 1);

		for (i = 0; i < 200; i++) {
			int64_t w = http_backoff_ms(&reg, n, &seed);

			CHECK(w >= d / 2 && w <= d);
		}
	}
}

static void test_attempts(void)
{
	struct http_retry r = { .attempts = 3, .first_ms = 10, .max_ms = 40 };
	struct http_job j = { .retry = &r };
	struct http_engine e;
	int64_t t0;

	CHECK_EQ(http_engine_init(&e), 0);
	t0 = clock_mono_ms();
	CHECK(http_job_left(&j));
	CHECK_EQ(http_job_retry(&e, &j), 1);
	CHECK_EQ(j.attempts, 1);
	CHECK(j.due_ms >= t0 + 10);
	CHECK(http_job_left(&j));
	CHECK_EQ(http_job_retry(&e, &j), 1);
	CHECK(!http_job_left(&j));
	CHECK_EQ(http_job_retry(&e, &j), 0);       /* the third failure is the last */
	CHECK_EQ(j.attempts, 3);
	/* progress starts the count again */
	http_job_retry_anew(&e, &j);
	CHECK_EQ(j.attempts, 1);
	CHECK(http_job_left(&j));
	/* one attempt in all: no retry */
	r.attempts = 1;
	j.attempts = 0;
	CHECK(!http_job_left(&j));
	CHECK_EQ(http_job_retry(&e, &j), 0);
	http_engine_release(&e);
	http_engine_release(&e);                  /* twice is harmless */
}

struct job {
	struct http_job job;
	int done;
	CURLcode code;
	char body[64];
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct job *j = arg;
	size_t k = size * n;

	if (j->len + k >= sizeof(j->body))
		return 0;
	memcpy(j->body + j->len, p, k);
	j->len += k;
	return k;
}

static void on_done(void *arg, struct http_job *hj, CURLcode code)
{
	struct job *j = (struct job *)((char *)hj - offsetof(struct job, job));

	(*(int *)arg)++;
	j->done = 1;
	j->code = code;
}

static int start(struct http_engine *e, struct job *j, const char *url)
{
	j->job.h = curl_easy_init();
	curl_easy_setopt(j->job.h, CURLOPT_URL, url);
	curl_easy_setopt(j->job.h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(j->job.h, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(j->job.h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(j->job.h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	return http_engine_add(e, &j->job);
}

/* Runs the engine until done reaches want (bounded by turns, not time). */
static void run_until(struct http_engine *e, int *done, int want)
{
	int turns;

	for (turns = 0; *done < want && turns < 10000; turns++) {
		http_engine_collect(e, on_done, done);
		if (*done < want)
			http_engine_wait(e, 10);
	}
}

static void test_loop(void)
{
	char path[] = "/tmp/llmfs-test-http-XXXXXX", url[64];
	struct http_retry r = { .attempts = 2, .first_ms = 1, .max_ms = 1 };
	struct job a = { .job.retry = &r }, b = { .job.retry = &r }, c = { .job.retry = &r };
	struct http_engine e;
	int fd = mkstemp(path), done = 0;

	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "hello", 5), 5);
	close(fd);
	snprintf(url, sizeof(url), "file://%s", path);
	CHECK_EQ(http_engine_init(&e), 0);
	CHECK_EQ(start(&e, &a, url), 0);
	CHECK_EQ(start(&e, &b, url), 0);
	CHECK(a.job.in_flight && b.job.in_flight);
	CHECK_EQ(e.active, 2);
	run_until(&e, &done, 2);
	CHECK_EQ(done, 2);
	CHECK_EQ(e.active, 0);
	CHECK(a.done && b.done && !a.job.in_flight);
	CHECK_EQ(a.code, CURLE_OK);
	CHECK(a.len == 5 && memcmp(a.body, "hello", 5) == 0);
	curl_easy_cleanup(a.job.h);
	curl_easy_cleanup(b.job.h);

	/* a refused connection: transient by the one map, retried once, then given up */
	a = (struct job){ .job.retry = &r };
	done = 0;
	CHECK_EQ(start(&e, &a, "http://127.0.0.1:1/"), 0);
	run_until(&e, &done, 1);
	CHECK_EQ(a.code, CURLE_COULDNT_CONNECT);
	CHECK(errmap_curl_transient(a.code));
	CHECK_EQ(errno_of_curl(a.code), -ECONNREFUSED);
	CHECK_EQ(http_job_retry(&e, &a.job), 1);
	curl_easy_cleanup(a.job.h);
	a.done = 0;
	CHECK_EQ(start(&e, &a, "http://127.0.0.1:1/"), 0);
	run_until(&e, &done, 2);
	CHECK(a.done);
	CHECK_EQ(http_job_retry(&e, &a.job), 0);
	curl_easy_cleanup(a.job.h);

	/* a job given up while in flight leaves the engine */
	CHECK_EQ(start(&e, &c, url), 0);
	http_engine_remove(&e, &c.job);
	CHECK(!c.job.in_flight);
	CHECK_EQ(e.active, 0);
	http_engine_remove(&e, &c.job);
	CHECK_EQ(e.active, 0);
	curl_easy_cleanup(c.job.h);
	http_engine_release(&e);
	unlink(path);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	RUN(test_backoff);
	RUN(test_attempts);
	RUN(test_loop);
	curl_global_cleanup();
	return check_status();
}
