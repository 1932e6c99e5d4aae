/*
 * http.h - the one retrying HTTP engine over the libcurl multi interface,
 * shared by the registry client (backend/oci.c) and the path executor
 * (scheduler/plan_exec.c).
 *
 * An engine is one curl multi handle and the loop around it; a job is one
 * request that may take several attempts.  The user embeds a struct
 * http_job in its own request, makes a fresh easy handle for each attempt
 * (its URL, headers, body, timeouts: they differ per user) and judges each
 * attempt's end; the engine runs the attempts in flight, hands each one
 * back as it ends, and keeps the retry rule: how many attempts a job gets
 * and how long it waits before the next (exponential backoff, optionally
 * jittered so that many clients do not come back at once).  Whether a
 * failure is worth another attempt is common/errmap.h's word
 * (errmap_curl_transient, errmap_http_transient) plus the user's own
 * checks of the bytes.
 *
 *   add ──> in flight ──(curl ends it)──> done(job, code) ──> user's verdict
 *                ^                                             │
 *                └── due (http_job_retry: backoff) <── retry ──┤
 *                                                 failed / ok ─┘
 *
 * Threads: an engine belongs to the thread that runs its loop; only
 * http_engine_wakeup() may be called from others.  Several engines may
 * run at once in different threads.  Errors are -errno.
 */
#ifndef LLMFS_COMMON_HTTP_H
#define LLMFS_COMMON_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

/* How many attempts a job gets and the waits between them. */
struct http_retry {
	int attempts;            /* at most this many attempts (>= 1) */
	int64_t first_ms;        /* the wait before the second attempt */
	int64_t max_ms;          /* waits double up to this */
	int jitter;              /* wait a random time in [wait/2, wait] */
};

struct http_job {
	const struct http_retry *retry;
	CURL *h;                 /* the attempt in flight, NULL between */
	int64_t due_ms;          /* the next attempt not before (clock_mono_ms) */
	int attempts;            /* failed attempts counted so far */
	int in_flight;           /* h is on the engine */
};

struct http_engine {
	CURLM *multi;
	size_t active;           /* attempts in flight */
	unsigned seed;           /* for the jitter */
};

int http_engine_init(struct http_engine *e);
void http_engine_release(struct http_engine *e);

/*
 * Puts the job's attempt (job->h, made by the caller) in flight; its
 * CURLOPT_PRIVATE is the job from now on.  0, or -ENOMEM when curl refuses
 * (the handle stays the caller's).
 */
int http_engine_add(struct http_engine *e, struct http_job *job);

/*
 * Moves the transfers on and hands every attempt that ended to done(),
 * removed from the multi handle but with job->h still valid (for
 * curl_easy_getinfo); done() owns the handle from then on.  Returns the
 * number of attempts handed back.
 */
size_t http_engine_collect(struct http_engine *e,
			   void (*done)(void *arg, struct http_job *job, CURLcode code),
			   void *arg);

/* Takes an attempt out of flight before its end (a job given up); does
 * nothing when it is not in flight.  The handle stays the caller's. */
void http_engine_remove(struct http_engine *e, struct http_job *job);

/* Waits up to ms for a transfer to move or http_engine_wakeup(). */
void http_engine_wait(struct http_engine *e, int ms);
/* Ends a wait at once (any thread). */
void http_engine_wakeup(struct http_engine *e);

/* 1 when a job whose attempt just failed has another attempt left. */
int http_job_left(const struct http_job *job);
/*
 * After a failed attempt worth another: counts it and, when the job has
 * an attempt left, sets job->due_ms after the backoff and returns 1;
 * returns 0 when the attempts ran out.
 */
int http_job_retry(struct http_engine *e, struct http_job *job);
/*
 * After a failed attempt of a job that made progress (a stream that moved
 * on): its count starts again at one failed attempt, due after the first
 * backoff.
 */
void http_job_retry_anew(struct http_engine *e, struct http_job *job);

/*
 * As http_job_retry(), but the next attempt waits at least min_ms (a
 * server's Retry-After) even when the backoff is shorter.
 */
int http_job_retry_after(struct http_engine *e, struct http_job *job,
			 int64_t min_ms);

/*
 * The wait the reply of a finished attempt asks for in its Retry-After
 * header (delay-seconds or an HTTP date, as libcurl parses it), in ms;
 * -1 when it names none.  Only meaningful for 429 and 503 replies.
 */
int64_t http_retry_after_ms(CURL *h);

/* The wait before attempt n + 1 after n failed ones (n >= 1). */
int64_t http_backoff_ms(const struct http_retry *r, int n, unsigned *seed);

#endif
