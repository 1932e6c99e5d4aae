/*
 * plan_engine: the agent-optimal-path service behind /llm/paths — named
 * tasks are submitted, interpreted, planned, run and learned from.  No
 * FUSE here; fs/ maps each file of /llm/paths/<task>/ onto one call:
 *
 *   mkdir           ->       plan_engine_create()     status "empty"
 *   task            write -> plan_engine_submit()
 *                   read  -> plan_engine_task()
 *   status          read  -> plan_engine_status()        never blocks
 *   plan.json       read  -> plan_engine_plan_json()     -EAGAIN until planned
 *   candidates.json read  -> plan_engine_candidates_json()
 *   result          read  -> plan_engine_result(), again on on_change()
 *                   poll  -> the same notice (plan_engine_job_fd() for
 *                            callers without one)
 *   trace.jsonl     read  -> plan_engine_trace()         grows while running
 *   feedback        write -> plan_engine_feedback()
 *   rmdir           ->       plan_engine_remove()
 *   readdir         ->       plan_engine_names()
 *   .stats          read  -> plan_engine_stats()
 *
 * Lifecycle of a task (status text in quotes, each ending in a newline):
 *
 *   create -> "empty"
 *                |
 *   submit -> "queued" -> "planning" -> "running k/n" -> "done"
 *                 \            \               \
 *                  +------------+---------------+--> "failed: <reason>"
 *
 * Submitting to an empty task fills it in place (waiters and poll fds
 * taken after mkdir stay valid); submitting to a finished task replaces
 * it; submitting while it is queued, planning or running gives -EBUSY.  Every failure
 * (malformed or oversized task, unknown model, no path within budget,
 * endpoints that hang or answer garbage) ends in "failed: <reason>" and
 * never stops the engine.
 *
 * Threads: every function may be called from any thread at any time
 * (FUSE worker threads); none blocks except plan_engine_wait() and
 * plan_engine_close().  Work runs on `workers` threads of the engine's
 * own.  Lock order: engine lock, then the plan_stats lock (a leaf); the
 * engine lock is never held across a model call.
 *
 * Returned strings are NUL-terminated copies the caller frees.  Errors:
 * -ENOENT no such task, -EINVAL bad name or argument, -EBUSY task still
 * running, -E2BIG task larger than PLAN_TASK_MAX_BYTES, -EAGAIN not there
 * yet, -ENODATA never will be (the task failed first), -ENOMEM.
 *
 * Secrets: model cards name where keys live; keys are read per call and
 * never appear in anything this API returns.
 */
#ifndef LLMFS_PLAN_ENGINE_H
#define LLMFS_PLAN_ENGINE_H

#define PLAN_ENGINE_MAX_WORKERS 256

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "plan_cand.h"
#include "plan_proc.h"

struct plan_engine;

struct plan_engine_config {
	const char *db_path;       /* sqlite statistics and the per-prompt
				    * router's journal; NULL: memory only */
	const char *models_dir;    /* holds <model>/card.json; NULL: the cards
				    * come from plan_engine_set_models() */
	const char *planner_model; /* interprets free text; NULL: none */
	unsigned workers;          /* tasks run at once; 0: 2; more than
				    * PLAN_ENGINE_MAX_WORKERS: -EINVAL */
	uint64_t seed;             /* 0: from the clock */
	enum plan_explore explore; /* default Thompson sampling */
	double prior_strength;     /* plan_stats; 0: default */
	/*
	 * Told the name of every task that ends (done or failed) or is
	 * removed: one notification path for all tasks, so that nothing is
	 * held per idle task.  Called with the engine lock held, on whatever
	 * thread made the change: it must not call the engine nor block (it
	 * queues the name for a thread of the caller's).  NULL: none.
	 */
	void (*on_change)(void *arg, const char *name);
	void *on_change_arg;
	/* Each answered model call's price in USD (plan_exec_opts.revenue), on a worker
	 * thread with no engine lock held.  NULL: none. */
	void (*on_revenue)(void *arg, const char *model, double cost_usd);
	void *on_revenue_arg;
	/* Besides the effective uid, owners whose cards may run commands or
	 * read keys (plan_model.h, "Trust"); may be empty. */
	const uid_t *trusted_uids;
	size_t n_trusted_uids;
};

/*
 * Bad model cards do not stop the engine: they are described, one per
 * line, in *ret_warnings (may be NULL; caller frees).
 */
int plan_engine_open(const struct plan_engine_config *cfg,
		     struct plan_engine **ret_engine, char **ret_warnings);
/*
 * Cancels running tasks, joins the workers, frees everything.  The caller
 * must have stopped its own threads first (the FUSE session has ended):
 * no other call may run during or after it.
 */
void plan_engine_close(struct plan_engine *e);

/* An empty task (mkdir); -EEXIST when the name is taken. */
int plan_engine_create(struct plan_engine *e, const char *name);
int plan_engine_submit(struct plan_engine *e, const char *name,
		       const char *data, size_t len);
/*
 * As plan_engine_submit(), for a task written by writer (the daemon: the
 * owner of the task's folder).  The commands of its checks run as that
 * user, never with the engine's rights (plan_proc.h: its uid, gid and
 * groups, a clean environment), and its steps may use only the models
 * that user may use: trusted cards and the user's own (plan_model.h,
 * "Routing"), the planner model included.  plan_engine_submit() is the
 * engine's own user: checks run with the process's rights and
 * environment, and the cards are those its effective uid may use.
 */
int plan_engine_submit_as(struct plan_engine *e, const char *name,
			  const char *data, size_t len,
			  const struct plan_proc_user *writer);
/* The text last submitted ("" for an empty or oversized task). */
int plan_engine_task(struct plan_engine *e, const char *name,
		     char **ret_text, size_t *ret_len);
int plan_engine_status(struct plan_engine *e, const char *name,
		       char **ret_text);
int plan_engine_plan_json(struct plan_engine *e, const char *name,
			  char **ret_json);
int plan_engine_candidates_json(struct plan_engine *e, const char *name,
				char **ret_json);
int plan_engine_trace(struct plan_engine *e, const char *name,
		      char **ret_text);
/* 0 and the answer when done; -EAGAIN while pending; -EIO when failed. */
int plan_engine_result(struct plan_engine *e, const char *name,
		       char **ret_text, size_t *ret_len);
/*
 * Blocks until the task has finished (0), timeout_ms passed (-ETIMEDOUT;
 * < 0 waits forever) or interrupted(arg) returned non-zero (-EINTR; it is
 * asked every 50 ms, without the engine lock held — FUSE passes
 * fuse_req_interrupted).
 */
int plan_engine_wait(struct plan_engine *e, const char *name, int timeout_ms,
		     int (*interrupted)(void *arg), void *arg);
/*
 * A new fd (caller closes) that polls readable once the task finished.
 * The task keeps one descriptor from the first call until it is removed.
 */
int plan_engine_job_fd(struct plan_engine *e, const char *name);
/*
 * text: a quality in [0, 1], e.g. "0.2\n"; teaches every model used (and
 * the per-prompt signal, on a best effort: an error there is not
 * returned, so that no caller gives again what the statistics hold).
 * -ENODATA when the task has no answer to judge.
 */
int plan_engine_feedback(struct plan_engine *e, const char *name,
			 const char *text, size_t len);
int plan_engine_remove(struct plan_engine *e, const char *name);
int plan_engine_names(struct plan_engine *e, char ***ret_names,
		      size_t *ret_n);
void plan_engine_names_free(char **names, size_t n);
int plan_engine_stats(struct plan_engine *e, char **ret_text);
/* The loaded model cards as a JSON list (no key locations). */
int plan_engine_models_json(struct plan_engine *e, char **ret_json);

/*
 * Reads the model cards again (new, changed or removed cards); -EBUSY
 * while a task is queued or running, whose plan indexes the old cards.
 */
int plan_engine_reload_models(struct plan_engine *e, char **ret_warnings);

/*
 * Puts the given cards (plan_model.h, struct plan_card: text and owners, as
 * a daemon reads them from its store) in place of the loaded ones, with the
 * same trust rules and the same -EBUSY; bad cards are warnings.
 */
int plan_engine_set_models(struct plan_engine *e, const struct plan_card *cards,
			   size_t n, char **ret_warnings);

/* True for names usable as a task directory. */
int plan_engine_name_valid(const char *name);

#endif
