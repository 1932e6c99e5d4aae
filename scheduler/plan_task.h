/*
 * plan_task: a task as the user wrote it, parsed and validated into a DAG
 * of steps.  The formats are documented in docs/paths.md ("Task files").
 *
 * - Text (anything whose first non-blank byte is not '{'): one step whose
 *   prompt is the text and whose task type is "general".
 * - JSON: {"prompt" | "steps", "task_type", "output", "budget_usd",
 *   "latency_s", "min_quality", "check", "confidence", "key",
 *   "strategies", "max_tokens"}.
 *
 * check judges every answer of its step: one it rejects is not the
 * step's, and the step fails when it rejects them all.  confidence (the
 * same forms) only decides a cascade's escalation: the cheap model's
 * answer stands when it passes, else the dearer model is called, whose
 * answer stands as it is (check aside); it never fails a step.  key (a
 * POSIX extended regex, plan_answer_key()) is what agreement cascades
 * and votes compare of the answers: a step's own, else the task's.
 *
 * Invariants of a parsed task: 1..PLAN_TASK_MAX_STEPS steps with unique
 * ids made of [A-Za-z0-9_-]; every dependency names an earlier-parsed or
 * later step and the graph is acyclic; steps[] is in a topological order
 * (dependencies first); output indexes the step whose answer is the
 * result; regexes compiled; numbers finite and non-negative.
 *
 * Errors: -EINVAL for malformed input with a one-line reason in *ret_err
 * (caller frees; meant for the status file), -E2BIG for oversized input,
 * -ENOMEM.  Pure: no I/O; any thread.
 */
#ifndef LLMFS_PLAN_TASK_H
#define LLMFS_PLAN_TASK_H

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#define PLAN_TASK_MAX_BYTES (256u * 1024)
#define PLAN_TASK_MAX_STEPS 32
#define PLAN_TASK_MAX_DEPS 16
#define PLAN_TASK_DEFAULT_TYPE "general"
#define PLAN_TASK_DEFAULT_MAX_TOKENS 512

enum plan_check_kind {
	PLAN_CHECK_NONE = 0,
	PLAN_CHECK_EXACT,    /* answer equals text, ignoring outer blanks */
	PLAN_CHECK_REGEX,    /* POSIX extended regex matches somewhere */
	PLAN_CHECK_SCHEMA,   /* answer is JSON valid under the schema subset */
	PLAN_CHECK_COMMAND,  /* program given the answer on stdin exits 0 */
};

struct plan_check {
	enum plan_check_kind kind;
	char *text;          /* EXACT: expected; REGEX: the pattern */
	regex_t re;          /* REGEX, compiled */
	json_t *schema;      /* SCHEMA */
	char **argv;         /* COMMAND, NULL-terminated */
};

/* Strategies a step may use; a bit set. */
enum {
	PLAN_STRAT_SINGLE = 1 << 0,
	PLAN_STRAT_CASCADE = 1 << 1,
	PLAN_STRAT_VOTE = 1 << 2,
	PLAN_STRAT_AGREE = 1 << 3,
	PLAN_STRAT_ALL = 15,
};

struct plan_step {
	char *id;
	char *prompt;        /* may reference dependencies as {{id}} */
	char *task_type;
	char *model;         /* pinned model name, or NULL */
	size_t deps[PLAN_TASK_MAX_DEPS];  /* indexes into steps[] */
	size_t n_deps;
	struct plan_check check;
	struct plan_check confidence;
	char *key;           /* the answer key's regex as written, or NULL */
	regex_t key_re;      /* compiled, when key */
	unsigned strategies;
	unsigned max_tokens;
};

struct plan_task {
	struct plan_step *steps;
	size_t n_steps;
	size_t output;       /* index of the result step */
	double budget_usd;   /* 0: none */
	double latency_s;    /* 0: none */
	double min_quality;  /* 0: none */
	bool from_text;      /* written as free text */
};

int plan_task_parse(const char *data, size_t len, struct plan_task **ret_task,
		    char **ret_err);
/* The structured JSON form only (used for planner-model replies too). */
int plan_task_from_json(json_t *root, struct plan_task **ret_task,
			char **ret_err);
/*
 * A planner model's reply: as plan_task_from_json(), but only "steps"
 * (each with "id", "prompt", "task_type", "deps") and "output" are
 * allowed; any other field (a check, a pinned model, limits) is refused
 * with -EINVAL, so a reply steered by the task text never runs a program.
 */
int plan_task_from_planner_json(json_t *root, struct plan_task **ret_task,
				char **ret_err);
void plan_task_free(struct plan_task *task);

/* The step's checker, or the task's for its output step, or NULL. */
const struct plan_check *plan_task_check(const struct plan_task *task,
					 size_t step);
/* The step's confidence checker (a cascade's escalation), likewise. */
const struct plan_check *plan_task_confidence(const struct plan_task *task,
					      size_t step);
/* The step's answer key, or NULL: answers are compared whole. */
const regex_t *plan_task_key(const struct plan_task *task, size_t step);

#endif
