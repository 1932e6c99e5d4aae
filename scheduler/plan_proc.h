/*
 * plan_proc: runs a local program with a text on its stdin and collects its
 * stdout — the primitive behind command steps and command checkers.
 *
 * The program is started with posix_spawnp (argv[0] is looked up in PATH,
 * no shell is involved), stderr goes to /dev/null, and it is killed with
 * SIGKILL when it outlives the timeout or writes more than max_out bytes.
 * It leads a process group of its own, and the kill reaches the whole
 * group: what it started (a shell's children) ends with it.  When it has
 * exited, whatever it left in its group is killed too, so a background
 * child that holds stdout open neither keeps the answer waiting nor
 * outlives the call.  Being outside the caller's group, it does not get
 * the terminal's Ctrl-C: a caller that should stop it on SIGINT sets
 * cancel (llmfs-paths does not; its commands end at their timeout).
 * stdin is a socket so that a program which exits without reading it
 * cannot raise SIGPIPE in the daemon.  Blocking; any thread may call it;
 * no state is shared between calls.
 *
 * Run as another user (plan_proc_run_as(), for the commands of a task's
 * checks, which come from whoever wrote the task): the program is forked
 * and, before exec, takes that user's groups (getgrouplist of its passwd
 * name and gid, or the gid alone when the uid has no passwd entry), gid
 * and uid (real, effective and saved), which are then read back; it gets
 * a clean environment (PATH=/usr/bin:/bin, HOME, USER and LOGNAME from
 * the passwd entry, nothing of the caller's), the user's home folder as
 * working folder (else /), and no descriptor of the caller's but stdin,
 * stdout and stderr.  argv[0] without a slash is looked for in /usr/bin
 * and /bin.  A switch the process may not make (a daemon not run as root
 * asked for another user) is -EPERM and nothing runs.
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
#include <sys/types.h>

#define PLAN_PROC_MAX_OUT (4u << 20)

/* cancel may be NULL; when it becomes non-zero the program is killed
 * within 50 ms and -ECANCELED returned. */
int plan_proc_run(char *const argv[], const char *input, size_t input_len,
		  double timeout_s, size_t max_out, const atomic_int *cancel,
		  char **ret_out, size_t *ret_len, int *ret_status);

/* Whom a program runs as. */
struct plan_proc_user {
	uid_t uid;
	gid_t gid;
};

/* As plan_proc_run(), run as *as (see above); as NULL: plan_proc_run(). */
int plan_proc_run_as(const struct plan_proc_user *as, char *const argv[],
		     const char *input, size_t input_len, double timeout_s,
		     size_t max_out, const atomic_int *cancel, char **ret_out,
		     size_t *ret_len, int *ret_status);

/*
 * Starts argv as *as (NULL: the caller's own uid and gid), for the
 * engine's children (training jobs, replicas), and returns at once with
 * its pid; the caller reaps it.  The same clean environment, plus the
 * caller's OPENBLAS_*, OMP_* and GOMP_* variables (16 at most): they
 * decide the CPU engine's kernels and threads, so that the child computes
 * bit for bit as the caller and llmfs-train in the caller's environment
 * do.  in_fd, out_fd and err_fd become its stdin, stdout and stderr
 * (err_fd -1: /dev/null).  The child gets SIGKILL when the calling thread
 * ends (the parent-death signal follows the thread that forked): call it
 * from a thread that lives as long as the children should.  -errno when
 * it could not start (the switch of user or the exec failed).
 */
int plan_proc_spawn_as(const struct plan_proc_user *as, char *const argv[],
		       int in_fd, int out_fd, int err_fd, pid_t *ret_pid);

#endif
