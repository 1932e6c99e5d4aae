/*
 * plan_check: judges an answer with a task's checker.
 *
 * plan_check_run() returns 1 when the answer passes, 0 when it fails (a
 * short reason in *ret_why when ret_why is not NULL; caller frees), and
 * -errno when the checker itself could not run (a command that cannot be
 * started or outlives timeout_s).  Schema checks accept an answer wrapped
 * in a Markdown code fence or in prose (the first fence, else the first
 * '{' to the last '}'), since chat models often add them; the same rule
 * is exported as plan_check_answer_json().
 *
 * The JSON Schema subset: type (one name or a list), properties,
 * required, additionalProperties (false only), items, enum, const,
 * minimum, maximum, minLength, maxLength, minItems, maxItems.  Other
 * keywords are refused when the task is parsed (plan_check_schema_valid),
 * so a checker never silently ignores part of what it was asked.
 *
 * Commands: plan_check_run_as() runs a command checker as another user
 * (plan_proc.h: that user's ids and groups, a clean environment), for the
 * checks of a task, which whoever wrote the task chose; plan_check_run()
 * runs it with the caller's own rights.
 *
 * Any thread; no shared state.
 */
#ifndef LLMFS_PLAN_CHECK_H
#define LLMFS_PLAN_CHECK_H

#include <jansson.h>
#include <stddef.h>

#include "plan_proc.h"
#include "plan_task.h"

int plan_check_run(const struct plan_check *check, const char *answer,
		   double timeout_s, char **ret_why);
/* as NULL: plan_check_run(). */
int plan_check_run_as(const struct plan_check *check, const char *answer,
		      double timeout_s, const struct plan_proc_user *as,
		      char **ret_why);

/* 0, or -EINVAL with the offending keyword in *ret_err. */
int plan_check_schema_valid(json_t *schema, char **ret_err);

/* The JSON value an answer holds, by the rule above; NULL if none. */
json_t *plan_check_answer_json(const char *answer);

/* Validates a JSON value; 1 valid, 0 not (reason in *ret_why). */
int plan_check_schema(json_t *schema, json_t *value, char **ret_why);

#endif
