/*
 * libFuzzer harness: task files (plan_task_parse) on hostile bytes.  A
 * task reaches the engine from any writer of /llm/paths/<task>/task.
 */
#include <stdint.h>
#include <stdlib.h>

#include "scheduler/plan_task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plan_task *t = NULL;
	char *err = NULL;
	size_t i;

	if (plan_task_parse((const char *)data, size, &t, &err) == 0) {
		/* A parsed task keeps its invariants: the checks index in range. */
		if (!t || !t->n_steps || t->output >= t->n_steps)
			abort();
		for (i = 0; i < t->n_steps; i++)
			plan_task_check(t, i);
	}
	plan_task_free(t);
	free(err);
	return 0;
}
