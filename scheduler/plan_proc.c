/* plan_proc: see plan_proc.h for the contract. */
#include "plan_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plan_util.h"
#include "common/clock.h"

extern char **environ;

/* 32-bit ids: the plain calls are the 16-bit ones on some 32-bit ABIs. */
#ifdef SYS_setresuid32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETRESGID SYS_setresgid32
#define SYS_SETRESUID SYS_setresuid32
#define SYS_GETRESGID SYS_getresgid32
#define SYS_GETRESUID SYS_getresuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETRESGID SYS_setresgid
#define SYS_SETRESUID SYS_setresuid
#define SYS_GETRESGID SYS_getresgid
#define SYS_GETRESUID SYS_getresuid
#endif

static int spawn(char *const argv[], int in_fd, int out_fd, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int rc;

	/* A process group of its own, so that a kill reaches what it
	 * started too (kill_group()). */
	rc = posix_spawnattr_init(&at);
	if (rc)
		return -rc;
	rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	if (!rc)
		rc = posix_spawnattr_setpgroup(&at, 0);
	if (rc || (rc = posix_spawn_file_actions_init(&fa))) {
		posix_spawnattr_destroy(&at);
		return -rc;
	}
	rc = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (!rc)
		rc = posix_spawn_file_actions_addopen(&fa, 2, "/dev/null",
						      O_WRONLY, 0);
	if (!rc)
		rc = posix_spawnp(ret_pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return -rc;
}

/*
 * Kills pid's process group (plan_proc_run's children lead their own)
 * while pid is not yet reaped, so that the group's id cannot have been
 * taken by another process; pid itself too, should it have no group.
 */
static void kill_group(pid_t pid)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
}

/* 1 when pid has ended (not reaped), 0 while it runs, -errno when it
 * cannot be waited for (reaped elsewhere: SIGCHLD ignored, say). */
static int ended(pid_t pid)
{
	siginfo_t si = { 0 };

	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return errno == EINTR ? 0 : -errno;
	return si.si_pid == pid;
}

/*
 * The caller's variables that decide how the CPU engine computes (which
 * BLAS kernels OpenBLAS takes, how OpenMP threads wait and how many run):
 * a training job or a replica the daemon starts computes as the daemon
 * and llmfs-train in its environment do, bit for bit, which replays need.
 * Set by whoever started the daemon; none is a secret.
 */
#define ENGINE_ENV_MAX 16
static const char *const engine_env[] = { "OPENBLAS_", "OMP_", "GOMP_" };

static bool is_engine_var(const char *kv)
{
	for (size_t i = 0; i < sizeof(engine_env) / sizeof(*engine_env); i++)
		if (!strncmp(kv, engine_env[i], strlen(engine_env[i])))
			return true;
	return false;
}

/*
 * What a child run as another user needs, made before fork: a child of a
 * threaded process may only make async-signal-safe calls until exec, so
 * no passwd or group lookup, no allocation happens there.
 */
struct as_user {
	uid_t uid;
	gid_t gid;
	bool switch_ids;   /* false: already that user, and not root */
	gid_t *groups;
	size_t n_groups;
	char *home;        /* working folder; "/" when none */
	/* PATH, HOME, USER, LOGNAME, for engine children the caller's
	 * ENGINE_ENV_MAX engine settings at most; NULL-terminated */
	char *envp[4 + ENGINE_ENV_MAX + 1];
	char *paths[3];    /* where argv[0] is looked for */
	long max_fd;       /* for closing descriptors without close_range */
};

static void as_user_release(struct as_user *a)
{
	free(a->groups);
	free(a->home);
	for (size_t i = 0; i < sizeof(a->envp) / sizeof(a->envp[0]); i++)
		free(a->envp[i]);
	for (size_t i = 0; i < 3; i++)
		free(a->paths[i]);
}

/* The passwd entry of uid into *pw (buf holds its strings); 0 or -ENOENT. */
static int lookup_user(uid_t uid, struct passwd *pw, char **ret_buf)
{
	struct passwd *res = NULL;
	size_t size = 16384;
	char *buf = NULL;
	int r;

	for (;;) {
		char *nb = realloc(buf, size);

		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		buf = nb;
		r = getpwuid_r(uid, pw, buf, size, &res);
		if (r != ERANGE || size >= (1u << 20))
			break;
		size *= 2;
	}
	if (r == 0 && res) {
		*ret_buf = buf;
		return 0;
	}
	free(buf);
	return r == ENOMEM ? -ENOMEM : -ENOENT;
}

/* The user's groups as login would give them (initgroups' list). */
static int user_groups(const char *name, gid_t gid, struct as_user *a)
{
	int n = 16;

	for (;;) {
		gid_t *g = realloc(a->groups, (size_t)n * sizeof(gid_t));
		int want = n;

		if (!g)
			return -ENOMEM;
		a->groups = g;
		if (getgrouplist(name, gid, g, &want) >= 0) {
			a->n_groups = (size_t)want;
			return 0;
		}
		if (want <= n || want > 65536)
			return -EINVAL;
		n = want;
	}
}

/* a followed by b, or NULL. */
static char *str2(const char *a, const char *b)
{
	char *s = NULL;

	return asprintf(&s, "%s%s", a, b) < 0 ? NULL : s;
}

static int as_user_prepare(const struct plan_proc_user *u, const char *argv0,
			   bool engine, struct as_user *a)
{
	struct passwd pw;
	char *buf = NULL;
	const char *name = NULL;
	int r, i = 0;

	memset(a, 0, sizeof(*a));
	a->uid = u->uid;
	a->gid = u->gid;
	/* Only root may set groups; another process is already itself. */
	a->switch_ids = geteuid() == 0 || u->uid != geteuid() ||
			u->gid != getegid();
	r = lookup_user(u->uid, &pw, &buf);
	if (r == -ENOMEM)
		return r;
	if (r == 0) {
		name = pw.pw_name;
		r = user_groups(name, u->gid, a);
		a->home = strdup(pw.pw_dir && *pw.pw_dir ? pw.pw_dir : "/");
	} else {
		/* A uid without an account gets its gid and nothing more. */
		a->groups = malloc(sizeof(gid_t));
		if (a->groups)
			a->groups[a->n_groups++] = u->gid;
		r = a->groups ? 0 : -ENOMEM;
		a->home = strdup("/");
	}
	if (r == 0 && !a->home)
		r = -ENOMEM;
	if (r == 0) {
		a->envp[i++] = str2("PATH=", "/usr/bin:/bin");
		a->envp[i++] = str2("HOME=", a->home);
		if (name) {
			a->envp[i++] = str2("USER=", name);
			a->envp[i++] = str2("LOGNAME=", name);
		}
		for (char **e = environ; engine && *e; e++)
			if (is_engine_var(*e) && i < 4 + ENGINE_ENV_MAX)
				a->envp[i++] = str2("", *e);
		if (strchr(argv0, '/')) {
			a->paths[0] = str2("", argv0);
		} else {
			a->paths[0] = str2("/usr/bin/", argv0);
			a->paths[1] = str2("/bin/", argv0);
		}
		for (int k = 0; k < i; k++)
			if (!a->envp[k])
				r = -ENOMEM;
		if (!a->paths[0] || (!strchr(argv0, '/') && !a->paths[1]))
			r = -ENOMEM;
	}
	a->max_fd = sysconf(_SC_OPEN_MAX);
	if (a->max_fd <= 0 || a->max_fd > (1L << 20))
		a->max_fd = 1L << 20;
	free(buf);
	return r;
}

/* Reports errno to the parent and ends the child. */
static void __attribute__((noreturn)) child_fail(int err_fd, int err)
{
	if (write(err_fd, &err, sizeof(err)) < 0) {
		/* The parent sees EOF and an exit status of 127 instead. */
	}
	_exit(127);
}

/* Checks that the child now is uid/gid in all three slots. */
static bool child_is(const struct as_user *a)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (syscall(SYS_GETRESUID, &ru, &eu, &su) < 0 ||
	    syscall(SYS_GETRESGID, &rg, &eg, &sg) < 0)
		return false;
	return ru == a->uid && eu == a->uid && su == a->uid &&
	       rg == a->gid && eg == a->gid && sg == a->gid;
}

/*
 * The child: async-signal-safe calls only.  Raw system calls change the
 * ids, because glibc's wrappers would try to tell the parent's other
 * threads, which the child does not have.
 */
static void __attribute__((noreturn)) child_exec(const struct as_user *a,
						 char *const argv[], int in_fd,
						 int out_fd, int stderr_fd,
						 int err_fd, pid_t parent,
						 bool group)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;
	int in, out, err, nul, e = ENOENT;

	if (group && setpgid(0, 0) < 0)
		child_fail(err_fd, errno);

	/* Above 2 first, so that no dup2 below closes one still needed. */
	in = fcntl(in_fd, F_DUPFD, 3);
	out = fcntl(out_fd, F_DUPFD, 3);
	err = fcntl(err_fd, F_DUPFD_CLOEXEC, 3);
	if (in < 0 || out < 0 || err < 0)
		child_fail(err_fd, errno);
	nul = stderr_fd >= 0 ? fcntl(stderr_fd, F_DUPFD, 3)
			     : open("/dev/null", O_WRONLY);
	if (nul < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(nul, 2) < 0 ||
	    dup2(err, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
		child_fail(err, errno);
	if (close_range(4, ~0U, 0) < 0)
		for (long fd = 4; fd < a->max_fd; fd++)
			close((int)fd);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	sigaction(SIGPIPE, &dfl, NULL);
	if (a->switch_ids &&
	    (syscall(SYS_SETGROUPS, a->n_groups, a->groups) < 0 ||
	     syscall(SYS_SETRESGID, a->gid, a->gid, a->gid) < 0 ||
	     syscall(SYS_SETRESUID, a->uid, a->uid, a->uid) < 0))
		child_fail(3, errno);
	if (!child_is(a))
		child_fail(3, EPERM);
	/* After the ids: changing them clears the parent-death signal. */
	if (parent > 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ||
			   getppid() != parent))
		child_fail(3, ESRCH);
	if (chdir(a->home) < 0 && chdir("/") < 0)
		child_fail(3, errno);
	for (int i = 0; a->paths[i]; i++) {
		execve(a->paths[i], argv, a->envp);
		/* A file that is there but cannot run says more than ENOENT. */
		if (errno != ENOENT)
			e = errno;
	}
	child_fail(3, e);
}

/* Starts the child as a->uid; -errno when it could not exec. */
/* tie: the parent-death signal (plan_proc_spawn_as()); otherwise the
 * child leads a process group of its own (plan_proc_run_as()). */
static int spawn_as(const struct as_user *a, char *const argv[], int in_fd,
		    int out_fd, int stderr_fd, bool tie, pid_t *ret_pid)
{
	pid_t parent = tie ? getpid() : 0;
	int ep[2], err = 0, rc = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(ep, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(ep[0]);
		close(ep[1]);
		return rc;
	}
	if (pid == 0)
		child_exec(a, argv, in_fd, out_fd, stderr_fd, ep[1], parent,
			   !tie);
	close(ep[1]);
	/* EOF: exec succeeded and closed the pipe; else the child's errno. */
	do
		n = read(ep[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof(err)) {
		waitpid(pid, NULL, 0);
		return -(err ? err : EPERM);
	}
	*ret_pid = pid;
	return 0;
}

int plan_proc_run(char *const argv[], const char *input, size_t input_len,
		  double timeout_s, size_t max_out, const atomic_int *cancel,
		  char **ret_out, size_t *ret_len, int *ret_status)
{
	return plan_proc_run_as(NULL, argv, input, input_len, timeout_s,
				max_out, cancel, ret_out, ret_len, ret_status);
}

int plan_proc_run_as(const struct plan_proc_user *as, char *const argv[],
		     const char *input, size_t input_len, double timeout_s,
		     size_t max_out, const atomic_int *cancel, char **ret_out,
		     size_t *ret_len, int *ret_status)
{
	struct as_user au = { 0 };
	int sv[2] = { -1, -1 }, po[2] = { -1, -1 }, rc, status = 0;
	struct plan_buf out;
	double deadline = clock_mono_s() + timeout_s;
	size_t sent = 0;
	pid_t pid = -1;
	bool gone = false;

	plan_buf_init(&out);
	if (!argv || !argv[0])
		return -EINVAL;
	if (as) {
		rc = as_user_prepare(as, argv[0], false, &au);
		if (rc < 0) {
			as_user_release(&au);
			return rc;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(po, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	rc = as ? spawn_as(&au, argv, sv[1], po[1], -1, false, &pid)
		: spawn(argv, sv[1], po[1], &pid);
	if (rc < 0) {
		pid = -1;
		goto out;
	}
	close(sv[1]);
	close(po[1]);
	sv[1] = po[1] = -1;
	if (!input_len)
		shutdown(sv[0], SHUT_WR);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd pf[2] = {
			{ .fd = po[0], .events = POLLIN },
			{ .fd = sent < input_len ? sv[0] : -1,
			  .events = POLLOUT },
		};
		double left = deadline - clock_mono_s();
		char buf[16384];
		ssize_t n;

		if (left <= 0) {
			rc = -ETIMEDOUT;
			goto kill;
		}
		if (cancel && atomic_load(cancel)) {
			rc = -ECANCELED;
			goto kill;
		}
		if (left > 0.05)
			left = 0.05;
		/* The program ended but something it started holds its
		 * output open: that one goes too, and the output ends. */
		if (!gone && (rc = ended(pid)) != 0) {
			if (rc < 0)
				goto lost;
			kill(-pid, SIGKILL);
			gone = true;
		}
		if (poll(pf, 2, (int)(left * 1000) + 1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto kill;
		}
		if (pf[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = send(sv[0], input + sent, input_len - sent,
				 MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			/* A reader that went away simply gets no more input. */
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				sent = input_len;
			if (sent == input_len)
				shutdown(sv[0], SHUT_WR);
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(po[0], buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			if (out.len + (size_t)n > max_out) {
				rc = -EFBIG;
				goto kill;
			}
			rc = plan_buf_append(&out, buf, (size_t)n);
			if (rc < 0)
				goto kill;
		}
	}
	/* stdout closed: the program is exiting, but it may still hang. */
	while ((rc = ended(pid)) == 0) {
		if (clock_mono_s() >= deadline) {
			rc = -ETIMEDOUT;
			goto kill;
		}
		if (cancel && atomic_load(cancel)) {
			rc = -ECANCELED;
			goto kill;
		}
		usleep(2000);
	}
	if (rc < 0)
		goto lost;
	/* What it left running in its group ends with it. */
	kill(-pid, SIGKILL);
	rc = waitpid(pid, &status, 0) < 0 ? -errno : 0;
	pid = -1;
	goto out;
lost:
	/* Someone else reaped it: its pid may be another's now; no kill. */
	pid = -1;
	goto out;
kill:
	kill_group(pid);
	waitpid(pid, &status, 0);
	pid = -1;
out:
	as_user_release(&au);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (po[0] >= 0)
		close(po[0]);
	if (po[1] >= 0)
		close(po[1]);
	if (rc == 0 || rc == -ETIMEDOUT || rc == -EFBIG) {
		if (ret_len)
			*ret_len = out.len;
		*ret_out = plan_buf_steal(&out);
		if (!*ret_out)
			return -ENOMEM;
		if (ret_status)
			*ret_status = status;
		return rc;
	}
	plan_buf_release(&out);
	return rc;
}

int plan_proc_spawn_as(const struct plan_proc_user *as, char *const argv[],
		       int in_fd, int out_fd, int err_fd, pid_t *ret_pid)
{
	struct plan_proc_user self = { geteuid(), getegid() };
	struct as_user au = { 0 };
	int rc;

	if (!argv || !argv[0])
		return -EINVAL;
	rc = as_user_prepare(as ? as : &self, argv[0], true, &au);
	if (rc == 0)
		rc = spawn_as(&au, argv, in_fd, out_fd, err_fd, true, ret_pid);
	as_user_release(&au);
	return rc;
}
