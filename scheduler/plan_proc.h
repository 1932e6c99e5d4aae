/*
 * plan_proc: runs a local program with a text on its stdin and collects its
 * stdout — the primitive behind command steps and command checkers.
 *
 * The program is started with posix_spawnp (argv[0] is looked up in PATH,
 * no shell is involved), stderr goes to /dev/null, and it is killed with
 * SIGKILL when it outlives the timeout or writes more than max_out bytes.
 * stdin is a socket so that a program which exits without reading it
 * cannot raise SIGPIPE in the daemon.  Blocking; any thread may call it;
 * no state is shared between calls.
 *
 * Returns 0 when the program ran to an exit (its status in ret_status, as
 * from waitpid), -ETIMEDOUT when it was killed for time, -EFBIG when for
 * output size, -ENOENT when it could not be started, other -errno on
 * system failures.  *ret_out (NUL-terminated, caller frees) is set in the
 * first two cases too, with what was read.
 */
#ifndef LLMFS_PLAN_PROC_H
#define LLMFS_PLAN_PROC_H

#include <stdatomic.h>
#include <stddef.h>

#define PLAN_PROC_MAX_OUT (4u << 20)

/* cancel may be NULL; when it becomes non-zero the program is killed
 * within 50 ms and -ECANCELED returned. */
int plan_proc_run(char *const argv[], const char *input, size_t input_len,
		  double timeout_s, size_t max_out, const atomic_int *cancel,
		  char **ret_out, size_t *ret_len, int *ret_status);

#endif
