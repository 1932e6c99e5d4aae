/*
 * plan_exec: runs a chosen path — HTTP calls over the libcurl multi
 * interface and local command steps — and judges the answers.
 *
 * Flow: a step starts when all its dependencies are done; its prompt is
 * the step's prompt with each {{id}} replaced by that dependency's answer
 * (dependencies the prompt does not mention are appended after a blank
 * line).  Independent steps run at the same time.  Within a step:
 *   single / cascade: the path's models in order, then the step's
 *     fallback models (best mean quality first, at most PLAN_EXEC_TRIES
 *     models in all); the next model is tried when a call fails for good
 *     or the checker rejects the answer, and after a cascade's cheap
 *     model when the confidence checker rejects its answer (the dearer
 *     model's answer is not put to it);
 *   vote: the three models in parallel, the majority answer (blank- and
 *     case-insensitive), else the first model's; then the checker, and
 *     when it rejects that answer, the best-supported member answer it
 *     accepted, else the fallbacks.
 *   A checker that cannot be started stops the
 *     step with the reason, recording no quality.
 * An attempt that fails with HTTP 408, 429 or 5xx, a timeout or a
 * connection error (the transient ones of common/errmap.h) is retried
 * (card "retries", backoff 0.25 s doubling to 4 s, the HTTP engine of
 * common/http.h) before the step moves on; a command that times out too.
 * Garbage replies, other 4xx and other curl errors move on at once.
 * Costs come from the usage the endpoint reports, else from bytes / 4.
 * Once spent cost reaches budget_usd no further call is started; a task
 * still running after latency_s is stopped (-ETIMEDOUT).
 *
 * Learning: every answered call is recorded in plan_stats (quality 1/0
 * when the step has a checker, cost and latency always); a call that
 * failed for good is recorded with quality 0, since an endpoint that does
 * not answer is no use to a plan.
 *
 * Secrets: the API key is read at call time and only placed in the
 * Authorization header.  Trace lines hold model names, counts, costs,
 * times, HTTP status and libcurl's generic error text — never prompts,
 * answers, URLs or keys.
 *
 * Threads: plan_exec_run() blocks its calling thread; callbacks run on it.
 * Several runs may go on at once in different threads (each has its own
 * HTTP engine).  Returns 0 when the output step has an answer,
 * -ECANCELED when *cancel became non-zero, otherwise a negative errno with
 * a reason in result->error.
 */
#ifndef LLMFS_PLAN_EXEC_H
#define LLMFS_PLAN_EXEC_H

#include <stdatomic.h>
#include <stddef.h>

#include "plan_cand.h"
#include "plan_model.h"
#include "plan_proc.h"
#include "plan_stats.h"
#include "plan_task.h"

#define PLAN_EXEC_TRIES 4
#define PLAN_EXEC_MAX_REPLY (8u << 20)
/* A 429 or 503 whose Retry-After asks for longer moves on to the next
 * model at once instead of waiting. */
#define PLAN_EXEC_MAX_RETRY_AFTER_MS 30000

struct plan_route;

struct plan_exec_opts {
	struct plan_stats *stats;   /* NULL: learn nothing */
	/* Per-prompt learning (plan_route.h): every judged answer is one
	 * outcome of its model on the step's prompt; NULL: none. */
	struct plan_route *route;
	const atomic_int *cancel;   /* NULL: never cancelled */
	double check_timeout_s;     /* command checkers; default 30 */
	/*
	 * The task's writer; NULL: the caller itself.  Command checkers run
	 * as it (plan_proc.h), and connections to cards that are not
	 * trusted (the writer's own, plan_model.h "Routing") are opened with
	 * its fsuid and fsgid, so that the host's firewall rules by owner
	 * (iptables -m owner, nft meta skuid) see the writer, not the caller.
	 */
	const struct plan_proc_user *writer;
	/* One JSON line per attempt, without the newline. */
	void (*trace)(void *arg, const char *line);
	/* Steps finished so far. */
	void (*progress)(void *arg, size_t done, size_t total);
	/* Each answered call's price (its card's prices x the usage it reported, else the
	 * estimate): what the model earned (the mining ledger's revenue).  May be NULL. */
	void (*revenue)(void *arg, const char *model, double cost_usd);
	void *arg;
};

struct plan_exec_result {
	char *answer;        /* the output step's answer */
	char *error;         /* why it failed, one line */
	double cost_usd;
	double latency_s;
	size_t calls;
	int *step_model;     /* per step: the model whose answer was used, -1 */
	size_t n_steps;
};

int plan_exec_run(const struct plan_task *task,
		  const struct plan_models *models,
		  const struct plan_candidates *cands,
		  const struct plan_path *path,
		  const struct plan_exec_opts *opts,
		  struct plan_exec_result *ret_result);
void plan_exec_result_release(struct plan_exec_result *r);

#endif
