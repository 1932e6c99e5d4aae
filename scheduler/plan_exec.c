/* plan_exec: see plan_exec.h for the flow, retries, learning and secrets. */
#include "plan_exec.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plan_check.h"
#include "plan_proc.h"
#include "plan_route.h"
#include "plan_util.h"
#include "common/clock.h"
#include "common/errmap.h"
#include "common/http.h"

enum { ST_WAIT, ST_RUN, ST_DONE, ST_FAIL };

struct run;

struct call {
	struct run *r;
	size_t step;
	int model;
	int vote_slot;          /* -1 unless a vote member */
	/* attempts, backoff and, for HTTP, the handle (common/http.h); a
	 * command's attempts follow the same rule */
	struct http_job job;
	struct http_retry retry;
	double t0;
	bool in_flight;
	/* HTTP */
	struct curl_slist *hdrs;
	char *body;
	struct plan_buf resp;
	bool too_big;
	double ttft;            /* streamed: seconds to the first content */
	/* Command */
	pthread_t th;
	bool th_started;
	atomic_int th_done;
	atomic_int abort;
	char *out;
	size_t out_len;
	int proc_rc;
	int status;
};

struct step_rt {
	int state;
	char *prompt;
	char *answer;
	int seq[PLAN_EXEC_TRIES];
	int n_seq, next;
	bool vote;
	int vote_left;
	int vote_n;             /* members: 3 for a vote, 2 or 3 for agree */
	int vote_called;        /* members called so far (agree adds the
				 * third only when it can still decide) */
	int vote_need;          /* same answers needed: 1 vote, 2 or 3 agree */
	char *vote_ans[3];
	int vote_pass[3];
	int used_model;
	char *broken;           /* a vote's checker could not judge: why */
	char *why;
	long route_id;          /* the prompt in plan_route, -1 until added */
};

struct run {
	const struct plan_task *t;
	const struct plan_models *ms;
	const struct plan_path *p;
	const struct plan_exec_opts *o;
	struct http_engine e;
	struct step_rt *st;
	struct call **calls;
	size_t n_calls, cap_calls;
	double spent, t_start;
	size_t n_attempts, n_done;
};

/* Hands o (owned; NULL: nothing) to the trace as one line. */
static void trace_emit(struct run *r, json_t *o, size_t flags)
{
	char *line = o ? json_dumps(o, flags) : NULL;

	json_decref(o);
	if (line)
		r->o->trace(r->o->arg, line);
	free(line);
}

static void trace(struct run *r, const struct call *c, const char *outcome,
		  const char *detail, long http, double tin, double tout,
		  bool reported, double cost, double lat)
{
	json_t *o;

	if (!r->o->trace)
		return;
	o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:f, s:f, s:s, s:f, "
		      "s:f}",
		      "step", r->t->steps[c->step].id,
		      "model", r->ms->v[c->model].name,
		      "kind", r->ms->v[c->model].kind == PLAN_MODEL_HTTP ?
			      "http" : "command",
		      "attempt", c->job.attempts + 1,
		      "outcome", outcome, "detail", detail ? detail : "",
		      "tokens_in", tin, "tokens_out", tout,
		      "usage", reported ? "reported" : "estimated",
		      "cost_usd", cost, "latency_s", lat);
	if (!o)
		return;
	if (http)
		json_object_set_new(o, "http_status", json_integer(http));
	if (!strcmp(outcome, "ok") && r->ms->v[c->model].stream && c->ttft >= 0)
		json_object_set_new(o, "ttft_s", json_real(c->ttft));
	if (c->vote_slot >= 0)
		json_object_set_new(o, "vote_slot", json_integer(c->vote_slot));
	trace_emit(r, o, JSON_COMPACT | JSON_REAL_PRECISION(6));
}

/* A checker's verdict against an answer, or why it could not judge: a
 * line of its own after the call's, which said "ok". */
static void trace_verdict(struct run *r, const struct call *c,
			  const char *outcome, const char *why)
{
	if (r->o->trace)
		trace_emit(r, json_pack("{s:s, s:s, s:s, s:s, s:s}",
					"step", r->t->steps[c->step].id,
					"model", r->ms->v[c->model].name,
					"kind", "check", "outcome", outcome,
					"detail", why ? why : ""),
			   JSON_COMPACT);
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct call *c = arg;

	if (c->resp.len + size * n > PLAN_EXEC_MAX_REPLY) {
		c->too_big = true;
		return 0;
	}
	/* The first chunk that carries a token (a "content" delta, or any
	 * byte of a reply that is not streamed). */
	if (c->ttft < 0 && memmem(p, size * n, "\"content\"", 9))
		c->ttft = clock_mono_s() - c->t0;
	if (plan_buf_append(&c->resp, p, size * n) < 0)
		return 0;
	return size * n;
}

static void call_reset(struct call *c)
{
	if (c->job.h) {
		http_engine_remove(&c->r->e, &c->job);
		curl_easy_cleanup(c->job.h);
		c->job.h = NULL;
	}
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	free(c->body);
	c->body = NULL;
	plan_buf_release(&c->resp);
	c->too_big = false;
	if (c->th_started) {
		atomic_store(&c->abort, 1);
		pthread_join(c->th, NULL);
		c->th_started = false;
	}
	free(c->out);
	c->out = NULL;
	atomic_store(&c->th_done, 0);
	atomic_store(&c->abort, 0);
	c->in_flight = false;
}

static void call_free(struct call *c)
{
	if (!c)
		return;
	call_reset(c);
	free(c);
}

static void drop_call(struct run *r, struct call *c)
{
	for (size_t i = 0; i < r->n_calls; i++)
		if (r->calls[i] == c) {
			r->calls[i] = r->calls[--r->n_calls];
			break;
		}
	call_free(c);
}

static int new_call(struct run *r, size_t step, int model, int slot)
{
	struct call *c;

	if (r->n_calls == r->cap_calls) {
		size_t cap = r->cap_calls ? r->cap_calls * 2 : 16;
		struct call **v = realloc(r->calls, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->calls = v;
		r->cap_calls = cap;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->r = r;
	c->step = step;
	c->model = model;
	c->vote_slot = slot;
	/* card "retries" after the first attempt, 0.25 s doubling to 4 s */
	c->retry = (struct http_retry){ .attempts = r->ms->v[model].retries + 1,
					.first_ms = 250, .max_ms = 4000 };
	c->job.retry = &c->retry;
	c->job.due_ms = clock_mono_ms();
	plan_buf_init(&c->resp);
	r->calls[r->n_calls++] = c;
	return 0;
}

static void *cmd_thread(void *arg)
{
	struct call *c = arg;
	const struct plan_model *m = &c->r->ms->v[c->model];
	const char *prompt = c->r->st[c->step].prompt;

	c->proc_rc = plan_proc_run(m->argv, prompt, strlen(prompt),
				   m->timeout_s, PLAN_PROC_MAX_OUT, &c->abort,
				   &c->out, &c->out_len, &c->status);
	atomic_store(&c->th_done, 1);
	http_engine_wakeup(&c->r->e);
	return NULL;
}

/*
 * Opens a connection to a card that is not trusted with the task writer's
 * fsuid and fsgid (see plan_exec_opts.writer): the socket's file keeps
 * the credentials it was made with, which is what owner rules match.
 * Linux credentials belong to the thread, so raw system calls change them
 * for this thread alone, and they are put back at once.
 */
#ifdef SYS_setfsuid32
#define SYS_SETFSUID SYS_setfsuid32
#define SYS_SETFSGID SYS_setfsgid32
#else
#define SYS_SETFSUID SYS_setfsuid
#define SYS_SETFSGID SYS_setfsgid
#endif

static curl_socket_t open_as_writer(void *arg, curlsocktype purpose,
				    struct curl_sockaddr *a)
{
	const struct plan_proc_user *w = arg;
	long ouid, ogid;
	int fd, e;

	(void)purpose;
	ogid = syscall(SYS_SETFSGID, w->gid);
	ouid = syscall(SYS_SETFSUID, w->uid);
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	e = errno;
	syscall(SYS_SETFSUID, ouid);
	syscall(SYS_SETFSGID, ogid);
	/* A thread left with the writer's rights must not go on. */
	if (syscall(SYS_SETFSUID, -1) != ouid ||
	    syscall(SYS_SETFSGID, -1) != ogid)
		abort();
	errno = e;
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static int start_http(struct run *r, struct call *c, char **ret_why)
{
	const struct plan_model *m = &r->ms->v[c->model];
	const struct plan_step *s = &r->t->steps[c->step];
	char *key = NULL, *url = NULL, *auth = NULL;
	size_t blen = strlen(m->base_url);
	json_t *body;
	int rc;

	rc = plan_model_api_key(m, &key);
	if (rc < 0) {
		/* The variable's or file's name is no secret; the key is. */
		if (asprintf(ret_why, "no API key in %s %s",
			     m->api_key_env ? "variable" : "file",
			     m->api_key_env ? m->api_key_env :
					      m->api_key_file) < 0)
			*ret_why = NULL;
		return rc;
	}
	body = json_pack("{s:s, s:[{s:s, s:s}], s:i}", "model",
			 m->remote_model, "messages", "role", "user",
			 "content", r->st[c->step].prompt, "max_tokens",
			 (int)s->max_tokens);
	/* Streamed: tokens arrive as they are made, so the trace can show
	 * the time to the first one; usage comes in the last chunk. */
	if (body && m->stream &&
	    (json_object_set_new(body, "stream", json_true()) < 0 ||
	     json_object_set_new(body, "stream_options",
				 json_pack("{s:b}", "include_usage", 1)) < 0)) {
		json_decref(body);
		body = NULL;
	}
	c->ttft = -1;
	c->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	while (blen && m->base_url[blen - 1] == '/')
		blen--;
	if (asprintf(&url, "%.*s/chat/completions", (int)blen,
		     m->base_url) < 0)
		url = NULL;
	c->job.h = curl_easy_init();
	c->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	if (key && asprintf(&auth, "Authorization: Bearer %s", key) < 0)
		auth = NULL;
	if (key && auth)
		c->hdrs = curl_slist_append(c->hdrs, auth);
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	if (auth) {
		/* libcurl copied it; no second copy of the key lingers. */
		rc = !c->hdrs;
		explicit_bzero(auth, strlen(auth));
		free(auth);
		if (rc)
			c->hdrs = NULL;
	}
	if (!c->body || !url || !c->job.h || !c->hdrs) {
		free(url);
		return -ENOMEM;
	}
	curl_easy_setopt(c->job.h, CURLOPT_URL, url);
	curl_easy_setopt(c->job.h, CURLOPT_HTTPHEADER, c->hdrs);
	curl_easy_setopt(c->job.h, CURLOPT_POSTFIELDS, c->body);
	curl_easy_setopt(c->job.h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->job.h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->job.h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->job.h, CURLOPT_TIMEOUT_MS,
			 (long)(m->timeout_s * 1000));
	curl_easy_setopt(c->job.h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(fmin(m->timeout_s, 10) * 1000));
	curl_easy_setopt(c->job.h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->job.h, CURLOPT_FOLLOWLOCATION, 0L);
	if (m->unix_socket)
		curl_easy_setopt(c->job.h, CURLOPT_UNIX_SOCKET_PATH, m->unix_socket);
	if (r->o->writer && !m->trusted) {
		curl_easy_setopt(c->job.h, CURLOPT_OPENSOCKETFUNCTION,
				 open_as_writer);
		curl_easy_setopt(c->job.h, CURLOPT_OPENSOCKETDATA,
				 (void *)r->o->writer);
	}
	free(url);
	return http_engine_add(&r->e, &c->job);
}

static void step_fail(struct run *r, size_t s, const char *why);
static void step_next(struct run *r, size_t s, const char *why);

static double est_tokens(const char *s)
{
	return ceil((double)strlen(s) / 4.0);
}

/*
 * One judged answer is one outcome of its model on the step's prompt (as
 * written, before dependencies are filled in: what the planner scores).
 * The prior is the model's per task type posterior mean.  Best effort: a
 * failure to learn does not fail the step.
 */
static void route_learn(struct run *r, const struct call *c, double q,
			double cost)
{
	struct step_rt *st = &r->st[c->step];
	const struct plan_step *s = &r->t->steps[c->step];
	struct plan_estimate pe = { .quality = 0.5 };

	if (st->route_id < 0)
		st->route_id = plan_route_add(r->o->route, s->prompt);
	if (st->route_id < 0)
		return;
	if (r->o->stats)
		plan_stats_estimate(r->o->stats, r->ms->v[c->model].name,
				    s->task_type, &pe);
	plan_route_observe(r->o->route, st->route_id, r->ms->v[c->model].name,
			   pe.quality, q, cost);
}

/*
 * Runs one checker on an answer: 1 pass, 0 fail, -1 when the checker
 * could not judge (it could not be started), with the reason in *ret_why:
 * that says nothing of the answer.  A checker that outlives its time or
 * writes too much on this answer rejects it: that may be the answer's
 * doing.
 */
static int run_check(struct run *r, const struct plan_check *chk,
		     const char *what, const char *answer, char **ret_why)
{
	double limit = r->o->check_timeout_s > 0 ? r->o->check_timeout_s : 30;
	int pass = plan_check_run_as(chk, answer, limit, r->o->writer,
				     ret_why);

	if (pass >= 0)
		return pass;
	free(*ret_why);
	if ((pass == -ETIMEDOUT ?
	     asprintf(ret_why, "%s did not finish within %g s", what, limit) :
	     pass == -EFBIG ?
	     asprintf(ret_why, "%s wrote too much", what) :
	     asprintf(ret_why, "%s could not run: %s", what,
		      strerror(-pass))) < 0)
		*ret_why = NULL;
	return pass == -ETIMEDOUT || pass == -EFBIG ? 0 : -1;
}

/*
 * Judges one answer and records it; returns 1 pass, 0 fail.  The step's
 * check judges every answer; its confidence checker only the cheap first
 * model of a cascade, whose answer it lets stand or sends on to the
 * dearer one (plan_task.h).  The verdict recorded as the answer's quality
 * is the check's, else the confidence checker's.  Returns -1, recording no
 * quality, when a checker could not judge (run_check()).
 */
static int judge(struct run *r, struct call *c, const char *answer,
		 double cost, double lat, char **ret_why)
{
	const struct plan_check *chk = plan_task_check(r->t, c->step);
	const struct plan_check *conf = plan_task_confidence(r->t, c->step);
	const struct plan_option *o = &r->p->steps[c->step];
	const struct plan_step *s = &r->t->steps[c->step];
	double q = NAN;
	int pass = 1;

	if (chk)
		pass = run_check(r, chk, "the checker", answer, ret_why);
	if (pass >= 0 && chk)
		q = pass;
	if (pass > 0 && conf && o->kind == PLAN_CASCADE &&
	    c->model == o->models[0]) {
		pass = run_check(r, conf, "the confidence checker", answer,
				 ret_why);
		if (pass < 0) {
			/* the reason says it all */
		} else if (!pass && *ret_why) {
			char *why = *ret_why;

			if (asprintf(ret_why, "not confident: %s", why) < 0)
				*ret_why = NULL;
			free(why);
		} else if (!pass && asprintf(ret_why, "not confident") < 0) {
			*ret_why = NULL;
		}
		if (!chk && pass >= 0)
			q = pass;
	}
	if (r->o->stats)
		plan_stats_record(r->o->stats, r->ms->v[c->model].name,
				  s->task_type, q, cost, lat);
	if (r->o->route && !isnan(q))
		route_learn(r, c, q, cost);
	return pass;
}

/* What a vote compares of an answer (plan_answer_key()); NULL: no key,
 * or no memory, and either way it agrees with no other. */
static char *answer_key(struct run *r, size_t s, const char *answer)
{
	char *k = NULL;

	if (answer)
		plan_answer_key(plan_task_key(r->t, s), answer, &k);
	return k;
}

/* An event of an agreement cascade's run, for its price (plan_agree_key()). */
static void agree_learn(struct run *r, size_t s, const char *what, bool yes)
{
	const struct plan_option *o = &r->p->steps[s];
	char key[512];

	if (r->o->stats && o->kind == PLAN_AGREE &&
	    plan_agree_key(r->ms, o, what, key, sizeof(key)) == 0)
		plan_stats_record(r->o->stats, key, r->t->steps[s].task_type,
				  yes ? 1 : 0, -1, -1);
}

/*
 * A line of kind "tally" for each count of a vote's or an agreement
 * cascade's answers: how many give the most common answer, of how many
 * called and answered, and how many answered without a key; never an
 * answer or a key (the trace holds none).
 */
static void trace_tally(struct run *r, size_t s, char *const key[3], int best)
{
	const struct step_rt *st = &r->st[s];
	int answered = 0, keyless = 0;
	char detail[160];

	if (!r->o->trace)
		return;
	for (int i = 0; i < st->vote_called; i++) {
		answered += st->vote_ans[i] != NULL;
		keyless += st->vote_ans[i] && !key[i];
	}
	if (plan_task_key(r->t, s))
		snprintf(detail, sizeof(detail), "%d of %d called give one "
			 "answer by the key (%d answered, %d without a key)",
			 best, st->vote_called, answered, keyless);
	else
		snprintf(detail, sizeof(detail), "%d of %d called give one "
			 "answer (%d answered)", best, st->vote_called,
			 answered);
	trace_emit(r, json_pack("{s:s, s:s, s:s, s:s}",
				"step", r->t->steps[s].id, "kind", "tally",
				"outcome", st->vote_need > 1 ?
				(best >= st->vote_need ? "agreed" :
				 "disagreed") :
				(best >= 2 ? "majority" : "no majority"),
				"detail", detail),
		   JSON_COMPACT);
}

static void vote_tally(struct run *r, size_t s)
{
	struct step_rt *st = &r->st[s];
	int win = -1, best = 0, pwin = -1, pbest = 0;
	char *key[3] = { NULL };
	bool third;

	if (st->broken) {
		st->vote = false;
		step_fail(r, s, st->broken);
		goto out;
	}
	for (int i = 0; i < st->vote_called; i++)
		key[i] = answer_key(r, s, st->vote_ans[i]);
	for (int i = 0; i < st->vote_called; i++) {
		/* An answer without a key is its own support alone: a vote
		 * of three such is the first member's, as with no majority. */
		int n = !key[i] && st->vote_ans[i];

		for (int j = 0; key[i] && j < st->vote_called; j++)
			n += key[j] && !strcmp(key[i], key[j]);
		/* Majority, else the first (best-ranked) member that answered. */
		if (n > best) {
			best = n;
			win = i;
		}
		/* The same among the answers the checker accepted. */
		if (st->vote_pass[i] && n > pbest) {
			pbest = n;
			pwin = i;
		}
	}
	trace_tally(r, s, key, best);
	/* The first tally of an agreement cascade: the first two's. */
	if (st->vote_called == 2)
		agree_learn(r, s, "pair", best >= 2);
	/*
	 * agree of three: the third cheap member is called only when it can
	 * still decide (need 2: the first two disagree; need 3: they agree),
	 * so the answers are those of three parallel calls at less cost.
	 */
	third = best < st->vote_need && st->vote_called < st->vote_n &&
		best + (st->vote_n - st->vote_called) >= st->vote_need;
	if (third && !(r->t->budget_usd > 0 && r->spent >= r->t->budget_usd)) {
		int k = st->vote_called++;

		st->vote_left = 1;
		if (new_call(r, s, r->p->steps[s].models[k], k) == 0) {
			/* The answers so far wait for the third's. */
			for (int i = 0; i < 3; i++)
				free(key[i]);
			return;
		}
		st->vote = false;
		step_fail(r, s, "out of memory");
		goto out;
	}
	/* Not when the budget, not the answers, kept the third away. */
	if (!third)
		agree_learn(r, s, "stood", best >= st->vote_need && win >= 0 &&
					   st->vote_pass[win]);
	/* agree: need of the cheap members must give the same answer, else
	 * the step moves on to the dearer model (the first of its sequence). */
	if (best < st->vote_need) {
		st->vote = false;
		step_next(r, s, win >= 0 ? "the cheap models disagree"
					 : "no vote member answered");
	} else if (win >= 0 && (st->vote_pass[win] ||
				(st->vote_need == 1 && pwin >= 0))) {
		/* vote: the majority's answer, else, when the checker rejects
		 * it, the best-supported one it accepted (already paid for). */
		if (!st->vote_pass[win])
			win = pwin;
		st->answer = strdup(st->vote_ans[win]);
		st->used_model = r->p->steps[s].models[win];
		st->state = ST_DONE;
		r->n_done++;
		if (r->o->progress)
			r->o->progress(r->o->arg, r->n_done, r->t->n_steps);
	} else {
		st->vote = false;
		step_next(r, s, win >= 0 ? "vote answer rejected by the checker"
					 : "no vote member answered");
	}
out:
	for (int i = 0; i < 3; i++) {
		free(key[i]);
		free(st->vote_ans[i]);
		st->vote_ans[i] = NULL;
	}
}

static void on_answer(struct run *r, struct call *c, char *answer,
		      double cost, double lat)
{
	struct step_rt *st = &r->st[c->step];
	char *why = NULL;
	int pass = judge(r, c, answer, cost, lat, &why);
	char *msg = NULL;

	if (pass <= 0)
		trace_verdict(r, c, pass < 0 ? "error" : "rejected", why);
	/* A checker that cannot judge would judge no other answer either:
	 * the step stops with the reason, no model is blamed. */
	if (pass < 0 && asprintf(&msg, "step %s: %s", r->t->steps[c->step].id,
				 why ? why : "the checker could not run") < 0)
		msg = NULL;
	if (c->vote_slot >= 0) {
		if (pass < 0 && !st->broken) {
			st->broken = msg;
			msg = NULL;
		}
		st->vote_ans[c->vote_slot] = answer;
		st->vote_pass[c->vote_slot] = pass > 0;
		free(why);
		free(msg);
		if (--st->vote_left == 0)
			vote_tally(r, c->step);
		return;
	}
	if (pass < 0) {
		free(answer);
		step_fail(r, c->step, msg ? msg : "the checker could not run");
	} else if (pass) {
		st->answer = answer;
		st->used_model = c->model;
		st->state = ST_DONE;
		r->n_done++;
		if (r->o->progress)
			r->o->progress(r->o->arg, r->n_done, r->t->n_steps);
	} else {
		free(answer);
		if (asprintf(&msg, "%s: %s", r->ms->v[c->model].name,
			     why ? why : "rejected") < 0)
			msg = NULL;
		step_next(r, c->step, msg ? msg : "answer rejected");
	}
	free(msg);
	free(why);
}

static void on_failure(struct run *r, struct call *c, const char *why,
		       bool learn, double lat)
{
	struct step_rt *st = &r->st[c->step];
	char *msg = NULL;

	if (learn && r->o->stats)
		plan_stats_record(r->o->stats, r->ms->v[c->model].name,
				  r->t->steps[c->step].task_type, 0, -1, lat);
	if (c->vote_slot >= 0) {
		if (--st->vote_left == 0)
			vote_tally(r, c->step);
		return;
	}
	if (asprintf(&msg, "%s: %s", r->ms->v[c->model].name, why) < 0)
		msg = NULL;
	step_next(r, c->step, msg ? msg : why);
	free(msg);
}

/* Parses an OpenAI chat completion; the answer, or NULL for garbage. */
static char *parse_reply(const char *body, double *tin, double *tout,
			 bool *reported)
{
	json_t *root = json_loads(body, 0, NULL), *u;
	const char *content = NULL;
	char *ans = NULL;

	if (!root)
		return NULL;
	content = json_string_value(json_object_get(json_object_get(
		json_array_get(json_object_get(root, "choices"), 0),
		"message"), "content"));
	if (content)
		ans = strdup(content);
	u = json_object_get(root, "usage");
	if (ans && json_is_integer(json_object_get(u, "prompt_tokens")) &&
	    json_is_integer(json_object_get(u, "completion_tokens"))) {
		*tin = (double)json_integer_value(json_object_get(u,
						  "prompt_tokens"));
		*tout = (double)json_integer_value(json_object_get(u,
						   "completion_tokens"));
		*reported = true;
	}
	json_decref(root);
	return ans;
}

/* min_ms: the wait the server asked for (Retry-After), else 0. */
static bool is_stream(const char *body)
{
	while (*body == ' ' || *body == '\n' || *body == '\r')
		body++;
	return !strncmp(body, "data:", 5) || *body == ':';
}

/*
 * A server-sent event stream of chat completion chunks: the answer is the
 * concatenation of choices[0].delta.content; usage, when a chunk reports
 * it, sets the tokens.  Lines other than "data:" (comments, event names)
 * are skipped; "[DONE]" ends it.  NULL when no chunk parses.
 */
static char *parse_stream(char *body, double *tin, double *tout,
			  bool *reported)
{
	struct plan_buf ans;
	bool any = false;
	char *save = NULL;

	plan_buf_init(&ans);
	for (char *line = strtok_r(body, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *o, *u, *ch;
		const char *piece;

		line[strcspn(line, "\r")] = '\0';
		if (strncmp(line, "data:", 5))
			continue;
		line += 5;
		while (*line == ' ')
			line++;
		if (!strcmp(line, "[DONE]"))
			break;
		o = json_loads(line, 0, NULL);
		if (!o)
			continue;
		any = true;
		ch = json_array_get(json_object_get(o, "choices"), 0);
		piece = json_string_value(json_object_get(
			json_object_get(ch, "delta"), "content"));
		if (piece && plan_buf_puts(&ans, piece) < 0)
			any = false;
		u = json_object_get(o, "usage");
		if (json_is_object(u)) {
			*tin = (double)json_integer_value(json_object_get(u,
							  "prompt_tokens"));
			*tout = (double)json_integer_value(json_object_get(u,
							   "completion_tokens"));
			*reported = true;
		}
		json_decref(o);
	}
	if (!any) {
		plan_buf_release(&ans);
		return NULL;
	}
	return plan_buf_steal(&ans);
}

static void retry_or_fail(struct run *r, struct call *c, const char *why,
			  long http, double lat, int64_t min_ms)
{
	if (http_job_left(&c->job) && !(r->o->cancel &&
					  atomic_load(r->o->cancel))) {
		trace(r, c, "retry", why, http, 0, 0, false, 0, lat);
		call_reset(c);
		http_job_retry_after(&r->e, &c->job, min_ms);
		return;
	}
	trace(r, c, "failed", why, http, 0, 0, false, 0, lat);
	call_reset(c);
	on_failure(r, c, why, true, lat);
	drop_call(r, c);
}

static void finish_http(struct run *r, struct call *c, CURLcode code)
{
	const struct plan_model *m = &r->ms->v[c->model];
	double lat = clock_mono_s() - c->t0, tin, tout, cost;
	bool reported = false;
	long http = 0;
	char detail[96], *ans;

	if (code != CURLE_OK) {
		bool transient = errmap_curl_transient(code);

		snprintf(detail, sizeof(detail), "%s",
			 c->too_big ? "reply too large" :
			 curl_easy_strerror(code));
		if (transient)
			retry_or_fail(r, c, detail, 0, lat, 0);
		else {
			trace(r, c, "failed", detail, 0, 0, 0, false, 0, lat);
			call_reset(c);
			on_failure(r, c, detail, true, lat);
			drop_call(r, c);
		}
		return;
	}
	curl_easy_getinfo(c->job.h, CURLINFO_RESPONSE_CODE, &http);
	if (errmap_http_transient(http)) {
		int64_t wait = http == 429 || http == 503 ?
			       http_retry_after_ms(c->job.h) : -1;

		if (wait > PLAN_EXEC_MAX_RETRY_AFTER_MS) {
			/* Waiting that long would stall the task: the next
			 * model answers instead. */
			snprintf(detail, sizeof(detail), "http %ld, Retry-After "
				 "%llds: over %ds, next model", http,
				 (long long)(wait / 1000),
				 PLAN_EXEC_MAX_RETRY_AFTER_MS / 1000);
			trace(r, c, "failed", detail, http, 0, 0, false, 0, lat);
			call_reset(c);
			on_failure(r, c, detail, false, lat);
			drop_call(r, c);
			return;
		}
		if (wait > 0)
			snprintf(detail, sizeof(detail), "http %ld, Retry-After "
				 "%.3gs", http, (double)wait / 1000);
		else
			snprintf(detail, sizeof(detail), "http %ld", http);
		retry_or_fail(r, c, detail, http, lat, wait);
		return;
	}
	tin = est_tokens(r->st[c->step].prompt);
	tout = 0;
	ans = errno_of_http(http) == 0 && c->resp.data ?
	      (m->stream && is_stream(c->resp.data) ?
	       parse_stream(c->resp.data, &tin, &tout, &reported) :
	       parse_reply(c->resp.data, &tin, &tout, &reported)) : NULL;
	if (!ans) {
		snprintf(detail, sizeof(detail), http / 100 == 2 ?
			 "invalid reply (not a chat completion)" :
			 "http %ld", http);
		trace(r, c, "failed", detail, http, 0, 0, false, 0, lat);
		call_reset(c);
		on_failure(r, c, detail, true, lat);
		drop_call(r, c);
		return;
	}
	if (!reported)
		tout = est_tokens(ans);
	cost = plan_model_cost(m, tin, tout);
	r->spent += cost;
	if (r->o->revenue)
		r->o->revenue(r->o->arg, m->name, cost);
	trace(r, c, "ok", NULL, http, tin, tout, reported, cost, lat);
	call_reset(c);
	on_answer(r, c, ans, cost, lat);
	drop_call(r, c);
}

static void finish_cmd(struct run *r, struct call *c)
{
	const struct plan_model *m = &r->ms->v[c->model];
	double lat = clock_mono_s() - c->t0, tin, tout, cost;
	char detail[96], *ans;

	pthread_join(c->th, NULL);
	c->th_started = false;
	if (c->proc_rc == -ETIMEDOUT) {
		retry_or_fail(r, c, "command timed out", 0, lat, 0);
		return;
	}
	if (c->proc_rc < 0 || !WIFEXITED(c->status) ||
	    WEXITSTATUS(c->status) != 0 ||
	    (c->out && memchr(c->out, '\0', c->out_len))) {
		if (c->proc_rc < 0)
			snprintf(detail, sizeof(detail), "command: %s",
				 strerror(-c->proc_rc));
		else if (WIFEXITED(c->status) && WEXITSTATUS(c->status))
			snprintf(detail, sizeof(detail), "exit status %d",
				 WEXITSTATUS(c->status));
		else if (WIFEXITED(c->status))
			/* Text ends at a NUL: what follows would be lost. */
			snprintf(detail, sizeof(detail), "a NUL byte in the "
				 "answer");
		else
			snprintf(detail, sizeof(detail), "killed by signal %d",
				 WTERMSIG(c->status));
		trace(r, c, "failed", detail, 0, 0, 0, false, 0, lat);
		call_reset(c);
		on_failure(r, c, detail, true, lat);
		drop_call(r, c);
		return;
	}
	ans = c->out;
	c->out = NULL;
	tin = est_tokens(r->st[c->step].prompt);
	tout = est_tokens(ans);
	cost = plan_model_cost(m, tin, tout);
	r->spent += cost;
	if (r->o->revenue)
		r->o->revenue(r->o->arg, m->name, cost);
	trace(r, c, "ok", NULL, 0, tin, tout, false, cost, lat);
	call_reset(c);
	on_answer(r, c, ans, cost, lat);
	drop_call(r, c);
}

static void start_call(struct run *r, struct call *c)
{
	char *why = NULL;
	int rc;

	c->t0 = clock_mono_s();
	c->in_flight = true;
	r->n_attempts++;
	if (r->ms->v[c->model].kind == PLAN_MODEL_COMMAND) {
		rc = -pthread_create(&c->th, NULL, cmd_thread, c);
		c->th_started = rc == 0;
	} else {
		rc = start_http(r, c, &why);
	}
	if (rc < 0) {
		const char *msg = why ? why : strerror(-rc);

		trace(r, c, "failed", msg, 0, 0, 0, false, 0, 0);
		call_reset(c);
		/* A missing key says nothing about the model's answers. */
		on_failure(r, c, msg, false, 0);
		drop_call(r, c);
	}
	free(why);
}

static void step_fail(struct run *r, size_t s, const char *why)
{
	struct step_rt *st = &r->st[s];

	st->state = ST_FAIL;
	free(st->why);
	st->why = strdup(why);
}

static void step_next(struct run *r, size_t s, const char *why)
{
	struct step_rt *st = &r->st[s];
	const struct plan_task *t = r->t;

	if (st->next >= st->n_seq) {
		char *msg = NULL;

		if (asprintf(&msg, "step %s: %s", t->steps[s].id, why) < 0)
			msg = NULL;
		step_fail(r, s, msg ? msg : why);
		free(msg);
		return;
	}
	if (t->budget_usd > 0 && r->spent >= t->budget_usd) {
		char msg[160];

		snprintf(msg, sizeof(msg), "step %s: budget of $%g spent "
			 "after: %.80s", t->steps[s].id, t->budget_usd, why);
		step_fail(r, s, msg);
		return;
	}
	if (new_call(r, s, st->seq[st->next++], -1) < 0)
		step_fail(r, s, "out of memory");
}

/* The prompt with {{dep}} replaced; unmentioned deps appended. */
static char *render(struct run *r, size_t s)
{
	const struct plan_step *st = &r->t->steps[s];
	bool used[PLAN_TASK_MAX_DEPS] = { false };
	struct plan_buf b;
	const char *p = st->prompt;

	plan_buf_init(&b);
	while (*p) {
		const char *open = strstr(p, "{{"), *close;
		bool done = false;

		if (!open) {
			plan_buf_puts(&b, p);
			break;
		}
		plan_buf_append(&b, p, (size_t)(open - p));
		close = strstr(open + 2, "}}");
		for (size_t k = 0; close && k < st->n_deps; k++) {
			size_t d = st->deps[k];
			const char *id = r->t->steps[d].id;

			if (strlen(id) == (size_t)(close - open - 2) &&
			    !strncmp(open + 2, id, strlen(id))) {
				plan_buf_puts(&b, r->st[d].answer);
				used[k] = done = true;
			}
		}
		if (!done) {
			plan_buf_append(&b, open, 2);
			p = open + 2;
		} else {
			p = close + 2;
		}
	}
	for (size_t k = 0; k < st->n_deps; k++)
		if (!used[k]) {
			plan_buf_puts(&b, "\n\n");
			plan_buf_puts(&b, r->st[st->deps[k]].answer);
		}
	return plan_buf_steal(&b);
}

static void step_start(struct run *r, size_t s,
		       const struct plan_candidates *cands)
{
	const struct plan_option *o = &r->p->steps[s];
	struct step_rt *st = &r->st[s];

	st->prompt = render(r, s);
	st->state = ST_RUN;
	if (!st->prompt) {
		step_fail(r, s, "out of memory");
		return;
	}
	if (o->kind == PLAN_AGREE)
		st->seq[st->n_seq++] = o->models[o->n_models - 1];
	else if (o->kind != PLAN_VOTE)
		for (int k = 0; k < o->n_models; k++)
			st->seq[st->n_seq++] = o->models[k];
	for (size_t f = 0; f < cands->n_fallback[s] &&
	     st->n_seq < PLAN_EXEC_TRIES; f++) {
		int m = cands->fallback[s][f];
		bool seen = false;

		for (int k = 0; k < o->n_models; k++)
			seen |= o->models[k] == m;
		if (!seen)
			st->seq[st->n_seq++] = m;
	}
	if (o->kind == PLAN_VOTE || o->kind == PLAN_AGREE) {
		st->vote = true;
		/* agree: the cheap members, all but the last model; the
		 * first two start, a third waits for their answers. */
		st->vote_n = o->kind == PLAN_VOTE ? 3 : o->n_models - 1;
		st->vote_need = o->kind == PLAN_VOTE ? 1 : o->need;
		st->vote_called = st->vote_left =
			o->kind == PLAN_VOTE ? 3 : 2;
		for (int k = 0; k < st->vote_called; k++)
			if (new_call(r, s, o->models[k], k) < 0) {
				step_fail(r, s, "out of memory");
				return;
			}
		return;
	}
	step_next(r, s, "no model");
}

static void schedule(struct run *r, const struct plan_candidates *cands)
{
	for (size_t s = 0; s < r->t->n_steps; s++) {
		struct step_rt *st = &r->st[s];
		bool ready = true;

		if (st->state != ST_WAIT)
			continue;
		for (size_t k = 0; k < r->t->steps[s].n_deps; k++) {
			int ds = r->st[r->t->steps[s].deps[k]].state;

			if (ds == ST_FAIL) {
				char msg[160];

				snprintf(msg, sizeof(msg), "step %s: dependency "
					 "%s failed", r->t->steps[s].id,
					 r->t->steps[r->t->steps[s].deps[k]].id);
				step_fail(r, s, msg);
				ready = false;
				break;
			}
			ready &= ds == ST_DONE;
		}
		if (ready && st->state == ST_WAIT)
			step_start(r, s, cands);
	}
}

static bool all_terminal(const struct run *r)
{
	for (size_t s = 0; s < r->t->n_steps; s++)
		if (r->st[s].state != ST_DONE && r->st[s].state != ST_FAIL)
			return false;
	return true;
}

/* Starts due calls; returns ms until the next one is due (max 100). */
static int launch_due(struct run *r)
{
	int64_t now = clock_mono_ms(), next = now + 100;

	for (size_t i = 0; i < r->n_calls; i++) {
		struct call *c = r->calls[i];

		if (c->in_flight)
			continue;
		if (c->job.due_ms <= now) {
			size_t before = r->n_calls;

			start_call(r, c);
			/* start_call may drop c and refill slot i. */
			if (r->n_calls < before)
				i--;
		} else if (c->job.due_ms < next) {
			next = c->job.due_ms;
		}
	}
	return (int)(next - now);
}

static void http_done(void *arg, struct http_job *job, CURLcode code)
{
	struct call *c = (struct call *)((char *)job - offsetof(struct call, job));

	finish_http(arg, c, code);
}

static void collect(struct run *r)
{
	http_engine_collect(&r->e, http_done, r);
	for (size_t i = 0; i < r->n_calls; i++) {
		struct call *c = r->calls[i];

		if (c->th_started && atomic_load(&c->th_done)) {
			size_t before = r->n_calls;

			finish_cmd(r, c);
			if (r->n_calls < before)
				i--;
		}
	}
}

int plan_exec_run(const struct plan_task *t, const struct plan_models *ms,
		  const struct plan_candidates *cands,
		  const struct plan_path *p, const struct plan_exec_opts *o,
		  struct plan_exec_result *res)
{
	struct run r = { .t = t, .ms = ms, .p = p, .o = o };
	int rc = 0;

	memset(res, 0, sizeof(*res));
	r.t_start = clock_mono_s();
	r.st = calloc(t->n_steps, sizeof(*r.st));
	res->step_model = calloc(t->n_steps, sizeof(*res->step_model));
	if (!r.st || !res->step_model || http_engine_init(&r.e) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	res->n_steps = t->n_steps;
	for (size_t s = 0; s < t->n_steps; s++) {
		r.st[s].used_model = -1;
		r.st[s].route_id = -1;
	}
	for (;;) {
		int wait_ms;

		if (o->cancel && atomic_load(o->cancel)) {
			rc = -ECANCELED;
			res->error = strdup("cancelled");
			goto out;
		}
		/* The bound the plan was chosen under also holds at run time. */
		if (t->latency_s > 0 && clock_mono_s() - r.t_start > t->latency_s) {
			rc = -ETIMEDOUT;
			if (asprintf(&res->error, "latency bound of %gs exceeded",
				     t->latency_s) < 0)
				res->error = NULL;
			goto out;
		}
		schedule(&r, cands);
		if (all_terminal(&r))
			break;
		wait_ms = launch_due(&r);
		collect(&r);
		if (all_terminal(&r))
			break;
		http_engine_wait(&r.e, wait_ms ? wait_ms : 1);
		collect(&r);
	}
	for (size_t s = 0; s < t->n_steps; s++)
		res->step_model[s] = r.st[s].used_model;
	if (r.st[t->output].state == ST_DONE) {
		res->answer = strdup(r.st[t->output].answer);
		if (!res->answer)
			rc = -ENOMEM;
	} else {
		rc = -EIO;
		for (size_t s = 0; s < t->n_steps && !res->error; s++)
			if (r.st[s].state == ST_FAIL && r.st[s].why)
				res->error = strdup(r.st[s].why);
	}
out:
	res->cost_usd = r.spent;
	res->latency_s = clock_mono_s() - r.t_start;
	res->calls = r.n_attempts;
	/* Attempts a stop cut short have their line too. */
	for (size_t i = 0; (rc == -ETIMEDOUT || rc == -ECANCELED) &&
	     i < r.n_calls; i++)
		if (r.calls[i]->in_flight)
			trace(&r, r.calls[i], "stopped", res->error, 0, 0, 0,
			      false, 0, clock_mono_s() - r.calls[i]->t0);
	while (r.n_calls)
		drop_call(&r, r.calls[0]);
	free(r.calls);
	for (size_t s = 0; r.st && s < t->n_steps; s++) {
		free(r.st[s].prompt);
		free(r.st[s].answer);
		free(r.st[s].why);
		free(r.st[s].broken);
		for (int k = 0; k < 3; k++)
			free(r.st[s].vote_ans[k]);
	}
	free(r.st);
	http_engine_release(&r.e);
	return rc;
}

void plan_exec_result_release(struct plan_exec_result *r)
{
	if (!r)
		return;
	free(r->answer);
	free(r->error);
	free(r->step_model);
	memset(r, 0, sizeof(*r));
}
