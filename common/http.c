/*
 * http.c - the engine's loop and its retry rule (see http.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/clock.h"
#include "common/http.h"

int http_engine_init(struct http_engine *e)
{
	e->multi = curl_multi_init();
	e->active = 0;
	e->seed = (unsigned)clock_mono_ns() ^ (unsigned)(uintptr_t)e;
	return e->multi ? 0 : -ENOMEM;
}

void http_engine_release(struct http_engine *e)
{
	if (e->multi)
		curl_multi_cleanup(e->multi);
	e->multi = NULL;
}

int http_engine_add(struct http_engine *e, struct http_job *job)
{
	curl_easy_setopt(job->h, CURLOPT_PRIVATE, job);
	if (curl_multi_add_handle(e->multi, job->h) != CURLM_OK)
		return -ENOMEM;
	job->in_flight = 1;
	e->active++;
	return 0;
}

void http_engine_remove(struct http_engine *e, struct http_job *job)
{
	if (!job->in_flight)
		return;
	curl_multi_remove_handle(e->multi, job->h);
	job->in_flight = 0;
	e->active--;
}

size_t http_engine_collect(struct http_engine *e,
			   void (*done)(void *arg, struct http_job *job, CURLcode code),
			   void *arg)
{
	struct http_job *job;
	size_t n = 0;
	CURLMsg *msg;
	int q, running;

	curl_multi_perform(e->multi, &running);
	while ((msg = curl_multi_info_read(e->multi, &q))) {
		CURLcode code = msg->data.result;
		CURL *h = msg->easy_handle;

		if (msg->msg != CURLMSG_DONE)
			continue;
		job = NULL;
		curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&job);
		curl_multi_remove_handle(e->multi, h);
		e->active--;
		n++;
		if (job) {
			job->in_flight = 0;
			done(arg, job, code);
		}
	}
	return n;
}

void http_engine_wait(struct http_engine *e, int ms)
{
	/* unlike curl_multi_wait, this waits the time out with nothing in flight */
	curl_multi_poll(e->multi, NULL, 0, ms, NULL);
}

void http_engine_wakeup(struct http_engine *e)
{
	curl_multi_wakeup(e->multi);
}

int64_t http_backoff_ms(const struct http_retry *r, int n, unsigned *seed)
{
	int64_t d = r->first_ms;
	int i;

	for (i = 1; i < n && d < r->max_ms; i++)
		d *= 2;
	d = d < r->max_ms ? d : r->max_ms;
	if (r->jitter && d > 0)
		d = d / 2 + rand_r(seed) % (d / 2 + 1);
	return d;
}

int http_job_left(const struct http_job *job)
{
	return job->attempts + 1 < job->retry->attempts;
}

int http_job_retry(struct http_engine *e, struct http_job *job)
{
	if (++job->attempts >= job->retry->attempts)
		return 0;
	job->due_ms = clock_mono_ms() + http_backoff_ms(job->retry, job->attempts, &e->seed);
	return 1;
}

int http_job_retry_after(struct http_engine *e, struct http_job *job,
			 int64_t min_ms)
{
	int64_t now;

	if (!http_job_retry(e, job))
		return 0;
	now = clock_mono_ms();
	if (min_ms > 0 && job->due_ms < now + min_ms)
		job->due_ms = now + min_ms;
	return 1;
}

int64_t http_retry_after_ms(CURL *h)
{
	curl_off_t s = -1;

	/* 0 from libcurl means "no header" as well as "0 seconds": both
	 * leave the backoff alone. */
	if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &s) != CURLE_OK ||
	    s <= 0)
		return -1;
	if (s > INT64_MAX / 1000)
		return INT64_MAX;
	return (int64_t)s * 1000;
}

void http_job_retry_anew(struct http_engine *e, struct http_job *job)
{
	job->attempts = 1;
	job->due_ms = clock_mono_ms() + http_backoff_ms(job->retry, 1, &e->seed);
}
