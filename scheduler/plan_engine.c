/* plan_engine: see plan_engine.h for the contract and the lifecycle. */
#include "plan_engine.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "plan_check.h"
#include "plan_exec.h"
#include "plan_route.h"
#include "plan_stats.h"
#include "plan_task.h"
#include "plan_util.h"
#include "common/clock.h"

#define NAME_MAX_LEN 128
#define PLANNER_TYPE "plan"

enum job_state { J_EMPTY, J_QUEUED, J_PLANNING, J_RUNNING, J_DONE, J_FAILED };

struct job {
	struct job *next;        /* engine->jobs list */
	struct job *qnext;       /* engine->queue */
	char *name;
	int refs;                /* list + queue + workers + waiters */
	enum job_state state;
	char *data;
	size_t len;
	size_t steps_done, steps_total;
	char *plan_json, *cands_json;
	struct plan_buf trace;
	char *result;
	size_t result_len;
	char *error;
	int efd;                 /* -1 until plan_engine_job_fd() asks */
	atomic_int cancel;
	/* Who wrote the task (plan_engine_submit_as): its checks run as that
	 * user and its prompts go only to cards it may use. */
	bool has_writer;
	struct plan_proc_user writer;
	/* For feedback: each step's task type and the model used. */
	char **fb_model, **fb_type;
	char **fb_prompt;  /* the step's prompt, for plan_route */
	/* The step's agreement cascade (plan_option_name()), learned as a
	 * whole; NULL for other strategies. */
	char **fb_option;
	size_t n_fb;
};

struct plan_engine {
	/* Lock order: lock, then the stats' own (leaf) lock. */
	pthread_mutex_t lock;    /* guards jobs, queue, stopping, rng, job fields */
	pthread_cond_t wake;     /* workers: queue or stopping changed */
	pthread_cond_t finished; /* waiters: some job finished */
	struct job *jobs;
	struct job *queue, *queue_tail;
	bool stopping;
	pthread_t *threads;
	unsigned n_threads;
	struct plan_stats *stats;
	struct plan_route *route;    /* per-prompt signal, in db_path too */
	struct plan_models models;   /* replaced only while no job runs */
	long planner;                /* index into models or -1 */
	char *models_dir;
	bool planner_told; /* the missing planner card was warned of */
	struct plan_model_trust trust; /* uids points at trusted */
	uid_t *trusted;
	char *planner_name;
	unsigned running;            /* workers inside run_job() */
	struct plan_rng rng;
	enum plan_explore explore;
	bool curl_init;
	/* Told of every end and removal: one path for all tasks. */
	void (*on_change)(void *arg, const char *name);
	void *on_change_arg;
	void (*on_revenue)(void *arg, const char *model, double cost_usd);
	void *on_revenue_arg;
};

int plan_engine_name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n > NAME_MAX_LEN || s[0] == '.')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-+@", *s))
			return 0;
	return 1;
}

static void job_unref_locked(struct job *j)
{
	if (--j->refs > 0)
		return;
	free(j->name);
	free(j->data);
	free(j->plan_json);
	free(j->cands_json);
	plan_buf_release(&j->trace);
	free(j->result);
	free(j->error);
	for (size_t i = 0; i < j->n_fb; i++) {
		free(j->fb_model[i]);
		free(j->fb_type[i]);
		free(j->fb_prompt[i]);
		free(j->fb_option[i]);
	}
	free(j->fb_model);
	free(j->fb_type);
	free(j->fb_prompt);
	free(j->fb_option);
	if (j->efd >= 0)
		close(j->efd);
	free(j);
}

static struct job *find_locked(struct plan_engine *e, const char *name)
{
	for (struct job *j = e->jobs; j; j = j->next)
		if (!strcmp(j->name, name))
			return j;
	return NULL;
}

static void unlink_locked(struct plan_engine *e, struct job *j)
{
	for (struct job **p = &e->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			job_unref_locked(j);
			return;
		}
}

/* Signals a job's fd, where one was asked for. */
static void signal_fd_locked(struct job *j)
{
	uint64_t one = 1;

	if (j->efd >= 0 && write(j->efd, &one, sizeof(one)) < 0) {
		/* A counter far from overflow cannot fail; nothing to do. */
	}
}

/* Terminal transition: wakes pollers and waiters exactly once. */
static void finish_locked(struct plan_engine *e, struct job *j, bool ok,
			  const char *why)
{
	if (j->state == J_DONE || j->state == J_FAILED)
		return;
	j->state = ok ? J_DONE : J_FAILED;
	if (!ok) {
		free(j->error);
		j->error = strdup(why ? why : "unknown error");
	}
	signal_fd_locked(j);
	pthread_cond_broadcast(&e->finished);
	if (e->on_change)
		e->on_change(e->on_change_arg, j->name);
}

struct job_ctx {
	struct plan_engine *e;
	struct job *j;
};

static void on_trace(void *arg, const char *line)
{
	struct job_ctx *c = arg;

	pthread_mutex_lock(&c->e->lock);
	plan_buf_puts(&c->j->trace, line);
	plan_buf_puts(&c->j->trace, "\n");
	pthread_mutex_unlock(&c->e->lock);
}

static void on_revenue(void *arg, const char *model, double cost_usd)
{
	struct job_ctx *c = arg;

	if (c->e->on_revenue)
		c->e->on_revenue(c->e->on_revenue_arg, model, cost_usd);
}

static void on_progress(void *arg, size_t done, size_t total)
{
	struct job_ctx *c = arg;

	pthread_mutex_lock(&c->e->lock);
	c->j->steps_done = done;
	c->j->steps_total = total;
	pthread_mutex_unlock(&c->e->lock);
}

/* The schema a planner model's reply must satisfy (also in docs/paths.md). */
static const char planner_schema[] =
	"{\"type\":\"object\",\"required\":[\"steps\"],"
	"\"properties\":{\"steps\":{\"type\":\"array\",\"minItems\":1,"
	"\"maxItems\":32,\"items\":{\"type\":\"object\","
	"\"required\":[\"id\",\"prompt\"],\"properties\":{"
	"\"id\":{\"type\":\"string\"},\"prompt\":{\"type\":\"string\"},"
	"\"task_type\":{\"type\":\"string\"},"
	"\"deps\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}}},"
	"\"output\":{\"type\":\"string\"}}}";

static const char planner_prompt[] =
	"Split the task below into steps for language models. Reply with "
	"JSON only, valid under this JSON schema:\n%s\n"
	"Each step has a short id, a self-contained prompt, a task_type "
	"(one word such as summarise, translate, code, math, extract, "
	"general) and deps listing the ids whose answers it needs; write "
	"{{id}} in a prompt where a dependency's answer belongs. Use one "
	"step when the task is simple.\n\nTask:\n%s";

static int run_exec(struct plan_engine *e, struct job_ctx *ctx,
		    const struct plan_task *t, struct plan_candidates *c,
		    struct plan_exec_result *res)
{
	struct plan_exec_opts o = {
		.stats = e->stats, .route = e->route,
		.cancel = &ctx->j->cancel,
		.trace = on_trace, .progress = on_progress, .revenue = on_revenue, .arg = ctx,
		.writer = ctx->j->has_writer ? &ctx->j->writer : NULL,
	};

	return plan_exec_run(t, &e->models, c, &c->v[c->best], &o, res);
}

static int build(struct plan_engine *e, const struct job *j,
		 const struct plan_task *t, struct plan_candidates *c,
		 char **ret_err)
{
	struct plan_score_opts so = { .explore = e->explore, .ucb_c = 1,
				      .tie_eps = 0.005,
				      .writer = j->has_writer ? &j->writer.uid
							      : NULL,
				      .route = e->route };
	int rc;

	pthread_mutex_lock(&e->lock);
	rc = plan_candidates_build(t, &e->models, e->stats, &so, &e->rng, c,
				   ret_err);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/*
 * Asks the planner model to structure free text; on any failure the text
 * stays a single step and the reason goes into the trace.
 */
static void interpret(struct plan_engine *e, struct job_ctx *ctx,
		      struct plan_task **task)
{
	struct plan_candidates c = { .best = -1 };
	struct plan_exec_result res = { 0 };
	struct plan_task *pt = NULL, *nt = NULL;
	char *prompt = NULL, *err = NULL, *line = NULL;
	json_t *req = NULL, *reply = NULL;
	const char *text = (*task)->steps[0].prompt;
	int rc;

	if (asprintf(&prompt, planner_prompt, planner_schema, text) < 0)
		return;
	req = json_pack("{s:s, s:s, s:s, s:{s:o}, s:i}", "prompt", prompt,
			"task_type", PLANNER_TYPE, "model",
			e->models.v[e->planner].name, "check", "schema",
			json_loads(planner_schema, 0, NULL), "max_tokens",
			2048);
	rc = req ? plan_task_from_json(req, &pt, &err) : -ENOMEM;
	if (rc == 0)
		rc = build(e, ctx->j, pt, &c, &err);
	if (rc == 0)
		rc = run_exec(e, ctx, pt, &c, &res);
	if (rc == 0) {
		/* The same extraction the schema checker accepted. */
		reply = plan_check_answer_json(res.answer);
		rc = reply ? plan_task_from_planner_json(reply, &nt, &err)
			   : -EINVAL;
	}
	if (rc == 0) {
		plan_task_free(*task);
		*task = nt;
	}
	line = NULL;
	{
		json_t *o = json_pack("{s:s, s:s, s:s}", "planner",
				      e->models.v[e->planner].name, "outcome",
				      rc == 0 ? "structured" : "kept as one step",
				      "detail", rc == 0 ? "" :
				      err ? err : res.error ? res.error :
				      strerror(-rc));

		line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
	}
	if (line)
		on_trace(ctx, line);
	free(line);
	free(prompt);
	free(err);
	json_decref(req);
	json_decref(reply);
	plan_task_free(pt);
	plan_candidates_release(&c);
	plan_exec_result_release(&res);
}

static void set_state(struct plan_engine *e, struct job *j, enum job_state s)
{
	pthread_mutex_lock(&e->lock);
	j->state = s;
	pthread_mutex_unlock(&e->lock);
}

static int keep_feedback(struct job *j, const struct plan_task *t,
			 const struct plan_models *ms,
			 const struct plan_path *path,
			 const struct plan_exec_result *res)
{
	j->fb_model = calloc(t->n_steps, sizeof(char *));
	j->fb_type = calloc(t->n_steps, sizeof(char *));
	j->fb_prompt = calloc(t->n_steps, sizeof(char *));
	j->fb_option = calloc(t->n_steps, sizeof(char *));
	if (!j->fb_model || !j->fb_type || !j->fb_prompt || !j->fb_option)
		return -ENOMEM;
	for (size_t s = 0; s < t->n_steps && s < res->n_steps; s++) {
		char name[512];

		if (res->step_model[s] < 0)
			continue;
		if (path && plan_option_name(ms, &path->steps[s], name,
					     sizeof(name)) == 0 &&
		    !(j->fb_option[j->n_fb] = strdup(name)))
			return -ENOMEM;
		j->fb_model[j->n_fb] = strdup(ms->v[res->step_model[s]].name);
		j->fb_type[j->n_fb] = strdup(t->steps[s].task_type);
		j->fb_prompt[j->n_fb] = strdup(t->steps[s].prompt);
		if (!j->fb_model[j->n_fb] || !j->fb_type[j->n_fb] ||
		    !j->fb_prompt[j->n_fb])
			return -ENOMEM;
		j->n_fb++;
	}
	return 0;
}

static void run_job(struct plan_engine *e, struct job *j)
{
	struct job_ctx ctx = { .e = e, .j = j };
	struct plan_candidates c = { .best = -1 };
	struct plan_exec_result res = { 0 };
	struct plan_task *t = NULL;
	char *err = NULL, *reason = NULL;
	json_t *cj = NULL, *pj = NULL;
	int rc;

	set_state(e, j, J_PLANNING);
	rc = plan_task_parse(j->data, j->len, &t, &err);
	if (rc < 0)
		goto out;
	if (t->from_text && e->planner >= 0)
		interpret(e, &ctx, &t);
	rc = build(e, j, t, &c, &err);
	if (rc < 0 && rc != -ENOENT)
		goto out;
	cj = plan_candidates_to_json(t, &e->models, &c);
	if (c.best >= 0)
		pj = plan_path_to_json(t, &e->models, &c.v[c.best]);
	pthread_mutex_lock(&e->lock);
	j->cands_json = cj ? json_dumps(cj, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
	j->plan_json = pj ? json_dumps(pj, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
	j->steps_total = t->n_steps;
	if (rc == 0)
		j->state = J_RUNNING;
	pthread_mutex_unlock(&e->lock);
	if (rc < 0)
		goto out;
	rc = run_exec(e, &ctx, t, &c, &res);
	pthread_mutex_lock(&e->lock);
	if (keep_feedback(j, t, &e->models, c.best >= 0 ? &c.v[c.best] : NULL,
			  &res) < 0 && rc == 0)
		rc = -ENOMEM;
	if (rc == 0) {
		j->result = res.answer;
		j->result_len = strlen(res.answer);
		res.answer = NULL;
	}
	pthread_mutex_unlock(&e->lock);
	if (rc < 0 && res.error) {
		err = res.error;
		res.error = NULL;
	}
out:
	if (rc < 0 && !err && asprintf(&reason, "%s", strerror(-rc)) < 0)
		reason = NULL;
	pthread_mutex_lock(&e->lock);
	finish_locked(e, j, rc == 0, err ? err : reason);
	pthread_mutex_unlock(&e->lock);
	free(reason);
	free(err);
	json_decref(cj);
	json_decref(pj);
	plan_candidates_release(&c);
	plan_exec_result_release(&res);
	plan_task_free(t);
}

static void *worker(void *arg)
{
	struct plan_engine *e = arg;

	pthread_mutex_lock(&e->lock);
	for (;;) {
		struct job *j;

		while (!e->stopping && !e->queue)
			pthread_cond_wait(&e->wake, &e->lock);
		if (e->stopping)
			break;
		j = e->queue;
		e->queue = j->qnext;
		if (!e->queue)
			e->queue_tail = NULL;
		/* The queue's reference becomes this worker's. */
		if (atomic_load(&j->cancel)) {
			finish_locked(e, j, false, "cancelled");
		} else {
			e->running++;
			pthread_mutex_unlock(&e->lock);
			run_job(e, j);
			pthread_mutex_lock(&e->lock);
			e->running--;
		}
		job_unref_locked(j);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

int plan_engine_open(const struct plan_engine_config *cfg,
		     struct plan_engine **ret, char **ret_warnings)
{
	struct plan_engine *e;
	int rc;

	if (ret_warnings)
		*ret_warnings = NULL;
	if (!cfg)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->wake, NULL);
	pthread_cond_init(&e->finished, NULL);
	/* Reference-counted and thread-safe in libcurl >= 7.84. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = -ENOMEM;
		goto fail;
	}
	e->curl_init = true;
	e->planner = -1;
	e->explore = cfg->explore;
	e->on_change = cfg->on_change;
	e->on_change_arg = cfg->on_change_arg;
	e->on_revenue = cfg->on_revenue;
	e->on_revenue_arg = cfg->on_revenue_arg;
	plan_rng_seed(&e->rng, cfg->seed ? cfg->seed :
			       (uint64_t)time(NULL) ^ (uint64_t)getpid());
	rc = plan_stats_open(cfg->db_path, cfg->prior_strength, &e->stats);
	if (rc < 0)
		goto fail;
	/* Beside the statistics, in the same file: what the router learned
	 * survives a restart as they do. */
	rc = plan_route_open_db(NULL, cfg->db_path, &e->route);
	if (rc < 0)
		goto fail;
	e->trust.n_uids = cfg->n_trusted_uids;
	if (cfg->n_trusted_uids) {
		e->trusted = calloc(cfg->n_trusted_uids, sizeof(uid_t));
		if (!e->trusted) {
			rc = -ENOMEM;
			goto fail;
		}
		memcpy(e->trusted, cfg->trusted_uids,
		       cfg->n_trusted_uids * sizeof(uid_t));
	}
	e->trust.uids = e->trusted;
	rc = cfg->models_dir ? plan_models_load(cfg->models_dir, &e->trust,
						&e->models, ret_warnings) : 0;
	if (rc == -ENOENT) {
		/* A daemon without models still serves its tree and statistics. */
		if (ret_warnings && !*ret_warnings &&
		    asprintf(ret_warnings, "models directory %s does not exist",
			     cfg->models_dir) < 0)
			*ret_warnings = NULL;
		rc = 0;
	}
	if (rc < 0)
		goto fail;
	if (cfg->planner_model && cfg->models_dir) {
		/* A planner whose card comes later is found by a reload. */
		e->planner = plan_models_find(&e->models, cfg->planner_model);
		if (e->planner < 0 && ret_warnings) {
			char *w = *ret_warnings;

			if (asprintf(ret_warnings, "%s%splanner model %s has no card yet;"
				     " free text runs as one step", w ? w : "",
				     w ? "\n" : "", cfg->planner_model) < 0)
				*ret_warnings = NULL;
			free(w);
		}
	}
	e->models_dir = cfg->models_dir ? strdup(cfg->models_dir) : NULL;
	e->planner_name = cfg->planner_model ? strdup(cfg->planner_model) : NULL;
	if ((cfg->models_dir && !e->models_dir) ||
	    (cfg->planner_model && !e->planner_name)) {
		rc = -ENOMEM;
		goto fail;
	}
	if (cfg->workers > PLAN_ENGINE_MAX_WORKERS) {
		rc = -EINVAL;
		goto fail;
	}
	e->threads = calloc(cfg->workers ? cfg->workers : 2,
			    sizeof(*e->threads));
	if (!e->threads) {
		rc = -ENOMEM;
		goto fail;
	}
	e->n_threads = cfg->workers ? cfg->workers : 2;
	for (unsigned i = 0; i < e->n_threads; i++) {
		rc = -pthread_create(&e->threads[i], NULL, worker, e);
		if (rc < 0) {
			e->n_threads = i;
			goto fail;
		}
	}
	*ret = e;
	return 0;
fail:
	plan_engine_close(e);
	return rc;
}

void plan_engine_close(struct plan_engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	for (struct job *j = e->jobs; j; j = j->next)
		atomic_store(&j->cancel, 1);
	pthread_cond_broadcast(&e->wake);
	pthread_mutex_unlock(&e->lock);
	for (unsigned i = 0; i < e->n_threads; i++)
		pthread_join(e->threads[i], NULL);
	free(e->threads);
	while (e->queue) {
		struct job *j = e->queue;

		e->queue = j->qnext;
		job_unref_locked(j);
	}
	while (e->jobs)
		unlink_locked(e, e->jobs);
	plan_models_release(&e->models);
	free(e->models_dir);
	free(e->trusted);
	free(e->planner_name);
	plan_stats_free(e->stats);
	plan_route_free(e->route);
	if (e->curl_init)
		curl_global_cleanup();
	pthread_cond_destroy(&e->finished);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

static struct job *job_new(const char *name)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	/* No descriptor per idle task: thousands of tasks must not use up fds. */
	j->efd = -1;
	j->name = strdup(name);
	j->data = strdup("");
	plan_buf_init(&j->trace);
	j->refs = 1;
	if (!j->name || !j->data) {
		/* Never published: dropping the only reference is safe unlocked. */
		job_unref_locked(j);
		return NULL;
	}
	return j;
}

int plan_engine_create(struct plan_engine *e, const char *name)
{
	struct job *j;
	int rc = 0;

	if (!plan_engine_name_valid(name))
		return -EINVAL;
	j = job_new(name);
	if (!j)
		return -ENOMEM;
	pthread_mutex_lock(&e->lock);
	if (find_locked(e, name)) {
		rc = -EEXIST;
	} else {
		j->next = e->jobs;
		e->jobs = j;
		j = NULL;
	}
	pthread_mutex_unlock(&e->lock);
	if (j)
		job_unref_locked(j);
	return rc;
}

int plan_engine_submit(struct plan_engine *e, const char *name,
		       const char *data, size_t len)
{
	return plan_engine_submit_as(e, name, data, len, NULL);
}

int plan_engine_submit_as(struct plan_engine *e, const char *name,
			  const char *data, size_t len,
			  const struct plan_proc_user *writer)
{
	bool too_big = len > PLAN_TASK_MAX_BYTES;
	struct job *j = NULL, *old;
	char *copy = NULL;
	int rc = 0;

	if (!plan_engine_name_valid(name) || (!data && len))
		return -EINVAL;
	/* Oversized input is not kept: the status explains instead. */
	copy = too_big ? strdup("") : malloc(len + 1);
	j = job_new(name);
	if (!copy || !j) {
		free(copy);
		if (j)
			job_unref_locked(j);
		return -ENOMEM;
	}
	if (!too_big) {
		memcpy(copy, data, len);
		copy[len] = '\0';
	}
	pthread_mutex_lock(&e->lock);
	old = find_locked(e, name);
	if (old && old->state != J_EMPTY && old->state != J_DONE &&
	    old->state != J_FAILED) {
		rc = -EBUSY;
		goto out;
	}
	if (old && old->state == J_EMPTY) {
		/* Filled in place: waiters and pollers of mkdir's job stay valid. */
		struct job *fresh = j;

		j = old;
		old = fresh;
	} else {
		if (old)
			unlink_locked(e, old);
		j->next = e->jobs;
		e->jobs = j;
		old = NULL;
	}
	free(j->data);
	j->data = copy;
	j->len = too_big ? 0 : len;
	copy = NULL;
	j->has_writer = writer != NULL;
	if (writer)
		j->writer = *writer;
	if (too_big) {
		char msg[96];

		snprintf(msg, sizeof(msg), "task: larger than %u bytes",
			 PLAN_TASK_MAX_BYTES);
		finish_locked(e, j, false, msg);
		rc = -E2BIG;
	} else {
		j->state = J_QUEUED;
		j->refs++;
		if (e->queue_tail)
			e->queue_tail->qnext = j;
		else
			e->queue = j;
		e->queue_tail = j;
		pthread_cond_signal(&e->wake);
	}
	j = old;
out:
	pthread_mutex_unlock(&e->lock);
	free(copy);
	/* The job not used: never published, so unlocked is safe. */
	if (j)
		job_unref_locked(j);
	return rc;
}

int plan_engine_task(struct plan_engine *e, const char *name, char **ret,
		     size_t *ret_len)
{
	struct job *j;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (!j) {
		rc = -ENOENT;
	} else {
		*ret = malloc(j->len + 1);
		if (!*ret) {
			rc = -ENOMEM;
		} else {
			memcpy(*ret, j->data, j->len + 1);
			if (ret_len)
				*ret_len = j->len;
		}
	}
	pthread_mutex_unlock(&e->lock);
	return rc;
}

static int copy_out(const char *s, char **ret)
{
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

int plan_engine_status(struct plan_engine *e, const char *name, char **ret)
{
	struct job *j;
	char *s = NULL;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (!j) {
		rc = -ENOENT;
		goto out;
	}
	switch (j->state) {
	case J_EMPTY:
		rc = asprintf(&s, "empty\n");
		break;
	case J_QUEUED:
		rc = asprintf(&s, "queued\n");
		break;
	case J_PLANNING:
		rc = asprintf(&s, "planning\n");
		break;
	case J_RUNNING:
		rc = asprintf(&s, "running %zu/%zu\n", j->steps_done,
			      j->steps_total);
		break;
	case J_DONE:
		rc = asprintf(&s, "done\n");
		break;
	case J_FAILED:
		rc = asprintf(&s, "failed: %s\n", j->error);
		break;
	}
	rc = rc < 0 ? -ENOMEM : 0;
	*ret = s;
out:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

static int get_json(struct plan_engine *e, const char *name, bool plan,
		    char **ret)
{
	struct job *j;
	const char *s;
	int rc;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (!j) {
		rc = -ENOENT;
		goto out;
	}
	s = plan ? j->plan_json : j->cands_json;
	if (s)
		rc = copy_out(s, ret);
	else if (j->state == J_EMPTY || j->state == J_QUEUED ||
		 j->state == J_PLANNING)
		rc = -EAGAIN;
	else
		rc = -ENODATA;
out:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

int plan_engine_plan_json(struct plan_engine *e, const char *name, char **ret)
{
	return get_json(e, name, true, ret);
}

int plan_engine_candidates_json(struct plan_engine *e, const char *name,
				char **ret)
{
	return get_json(e, name, false, ret);
}

int plan_engine_trace(struct plan_engine *e, const char *name, char **ret)
{
	struct job *j;
	int rc;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	rc = j ? copy_out(j->trace.data ? j->trace.data : "", ret) : -ENOENT;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

int plan_engine_result(struct plan_engine *e, const char *name, char **ret,
		       size_t *ret_len)
{
	struct job *j;
	int rc;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (!j)
		rc = -ENOENT;
	else if (j->state == J_FAILED)
		rc = -EIO;
	else if (j->state != J_DONE)
		rc = -EAGAIN;
	else if ((rc = copy_out(j->result, ret)) == 0 && ret_len)
		*ret_len = j->result_len;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

int plan_engine_wait(struct plan_engine *e, const char *name, int timeout_ms,
		     int (*interrupted)(void *), void *arg)
{
	double deadline = clock_mono_s() + timeout_ms / 1000.0;
	struct job *j;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (!j) {
		pthread_mutex_unlock(&e->lock);
		return -ENOENT;
	}
	j->refs++;
	while (j->state != J_DONE && j->state != J_FAILED) {
		struct timespec ts;
		double until = clock_mono_s() + 0.05;

		if (interrupted) {
			int stop;

			/* Unlocked: the callback may take locks of its own. */
			pthread_mutex_unlock(&e->lock);
			stop = interrupted(arg);
			pthread_mutex_lock(&e->lock);
			if (stop) {
				rc = -EINTR;
				break;
			}
		}
		if (timeout_ms >= 0 && clock_mono_s() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		if (timeout_ms >= 0 && until > deadline)
			until = deadline;
		/* The condvar uses CLOCK_REALTIME; a slice is short anyway. */
		clock_gettime(CLOCK_REALTIME, &ts);
		until -= clock_mono_s();
		if (until < 0)
			until = 0;
		ts.tv_nsec += (long)(until * 1e9);
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&e->finished, &e->lock, &ts);
	}
	job_unref_locked(j);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

int plan_engine_job_fd(struct plan_engine *e, const char *name)
{
	struct job *j;
	int fd;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (!j) {
		fd = -ENOENT;
		goto out;
	}
	if (j->efd < 0) {
		j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (j->efd < 0) {
			fd = -errno;
			goto out;
		}
		if (j->state == J_DONE || j->state == J_FAILED)
			signal_fd_locked(j);
	}
	fd = fcntl(j->efd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		fd = -errno;
out:
	pthread_mutex_unlock(&e->lock);
	return fd;
}

/* Feedback is one more outcome of the model on the step's prompt. */
static int feedback_route(struct plan_engine *e, const char *prompt,
			  const char *model, const char *type, double q)
{
	struct plan_estimate pe;
	long id;

	plan_stats_estimate(e->stats, model, type, &pe);
	id = plan_route_add(e->route, prompt);
	if (id < 0)
		return (int)id;
	return plan_route_observe(e->route, id, model, pe.quality, q, -1);
}

int plan_engine_feedback(struct plan_engine *e, const char *name,
			 const char *text, size_t len)
{
	char buf[64], *end, **models = NULL, **types = NULL, **prompts = NULL;
	char **options = NULL;
	size_t n = 0;
	struct job *j;
	double q;
	int rc = 0;

	if (!text || !len || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	errno = 0;
	q = strtod(buf, &end);
	while (isspace((unsigned char)*end))
		end++;
	if (errno || end == buf || *end || !(q >= 0 && q <= 1))
		return -EINVAL;
	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (!j)
		rc = -ENOENT;
	else if (j->state != J_DONE && j->state != J_FAILED)
		rc = -EAGAIN;
	else if (!j->n_fb)
		rc = -ENODATA;
	if (rc == 0) {
		/* Copies, so no sqlite write happens under the engine lock. */
		models = calloc(j->n_fb, sizeof(*models));
		types = calloc(j->n_fb, sizeof(*types));
		prompts = calloc(j->n_fb, sizeof(*prompts));
		options = calloc(j->n_fb, sizeof(*options));
		for (; models && types && prompts && options && n < j->n_fb;
		     n++) {
			models[n] = strdup(j->fb_model[n]);
			types[n] = strdup(j->fb_type[n]);
			prompts[n] = strdup(j->fb_prompt[n]);
			options[n] = j->fb_option[n] ?
				     strdup(j->fb_option[n]) : NULL;
		}
		if (!models || !types || !prompts || !options)
			rc = -ENOMEM;
	}
	pthread_mutex_unlock(&e->lock);
	for (size_t i = 0; i < n; i++) {
		int r = models[i] && types[i] ?
			plan_stats_record(e->stats, models[i], types[i], q, -1,
					  -1) : -ENOMEM;

		/* The per-prompt signal learns on a best effort, as from
		 * the executor's verdicts: an error there must not make a
		 * caller give again feedback the statistics already hold. */
		if (r == 0 && prompts[i])
			feedback_route(e, prompts[i], models[i], types[i], q);
		/* The agreement cascade as a whole (plan_cand.h). */
		if (r == 0 && options[i] && types[i])
			r = plan_stats_record(e->stats, options[i], types[i], q,
					      -1, -1);
		if (r < 0 && rc == 0)
			rc = r;
		free(models[i]);
		free(types[i]);
		free(prompts[i]);
		if (options)
			free(options[i]);
	}
	free(options);
	free(prompts);
	free(models);
	free(types);
	return rc;
}

int plan_engine_remove(struct plan_engine *e, const char *name)
{
	struct job *j;

	pthread_mutex_lock(&e->lock);
	j = find_locked(e, name);
	if (j) {
		atomic_store(&j->cancel, 1);
		/* Waiters of a removed task learn it from the same notice. */
		if (e->on_change)
			e->on_change(e->on_change_arg, name);
		unlink_locked(e, j);
	}
	pthread_mutex_unlock(&e->lock);
	return j ? 0 : -ENOENT;
}

void plan_engine_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

int plan_engine_names(struct plan_engine *e, char ***ret, size_t *ret_n)
{
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	for (struct job *j = e->jobs; j; j = j->next)
		cap++;
	v = calloc(cap + 1, sizeof(*v));
	for (struct job *j = e->jobs; v && j; j = j->next) {
		v[n] = strdup(j->name);
		if (!v[n]) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	pthread_mutex_unlock(&e->lock);
	if (!v || rc < 0) {
		plan_engine_names_free(v, n);
		return -ENOMEM;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int plan_engine_stats(struct plan_engine *e, char **ret)
{
	return plan_stats_format(e->stats, ret);
}

int plan_engine_models_json(struct plan_engine *e, char **ret)
{
	json_t *a = json_array();

	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; a && i < e->models.n; i++)
		json_array_append_new(a, plan_model_to_json(&e->models.v[i]));
	pthread_mutex_unlock(&e->lock);
	*ret = a ? json_dumps(a, JSON_INDENT(2)) : NULL;
	json_decref(a);
	return *ret ? 0 : -ENOMEM;
}

/* Puts fresh cards in place of the loaded ones; -EBUSY while tasks run. */
static int swap_models(struct plan_engine *e, struct plan_models *fresh)
{
	long planner = -1;

	if (e->planner_name)
		planner = plan_models_find(fresh, e->planner_name);
	pthread_mutex_lock(&e->lock);
	/* Running and queued jobs index into the cards they were planned on. */
	if (e->running || e->queue) {
		pthread_mutex_unlock(&e->lock);
		plan_models_release(fresh);
		return -EBUSY;
	}
	plan_models_release(&e->models);
	e->models = *fresh;
	e->planner = planner;
	pthread_mutex_unlock(&e->lock);
	return 0;
}

int plan_engine_reload_models(struct plan_engine *e, char **ret_warnings)
{
	struct plan_models fresh = { 0 };
	int rc;

	if (ret_warnings)
		*ret_warnings = NULL;
	if (!e->models_dir)
		return -EINVAL;
	rc = plan_models_load(e->models_dir, &e->trust, &fresh, ret_warnings);
	if (rc == -ENOENT)
		rc = 0;
	if (rc < 0)
		return rc;
	return swap_models(e, &fresh);
}

int plan_engine_set_models(struct plan_engine *e, const struct plan_card *cards,
			   size_t n, char **ret_warnings)
{
	struct plan_models fresh = { 0 };
	int rc;

	if (ret_warnings)
		*ret_warnings = NULL;
	rc = plan_models_from_cards(cards, n, &e->trust, &fresh, ret_warnings);
	if (rc < 0)
		return rc;
	if (e->planner_name && !e->planner_told &&
	    plan_models_find(&fresh, e->planner_name) < 0 && ret_warnings) {
		char *w = *ret_warnings;

		/* Told once: a planner whose card comes later is found then. */
		e->planner_told = true;
		if (asprintf(ret_warnings, "%s%splanner model %s has no card yet;"
			     " free text runs as one step", w ? w : "",
			     w ? "\n" : "", e->planner_name) < 0)
			*ret_warnings = NULL;
		free(w);
	}
	return swap_models(e, &fresh);
}
