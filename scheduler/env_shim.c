/*
 * env_shim: the process that runs one env's container (env.h), so that the daemon never
 * waits on runc or on a root filesystem build.
 *
 * It tells the daemon what happens on its stdout, one line each:
 *   building                 the root filesystem is being made or found
 *   created                  runc create succeeded
 *   running <pid>            runc start succeeded: the container's init is pid
 *   exited <code> <sig> <oom kills>   the container ended (code -1 when killed by sig)
 *   failed <reason>          nothing runs (the reason in words); the shim ends
 * and takes "stop" on its stdin; end of file on stdin (the daemon stopped or died) is a stop
 * too.  A stop is SIGTERM to the container, then SIGKILL after ENV_STOP_GRACE_S.  Its stderr
 * is the env's log, where the container's output goes too (up to ENV_LOG_MAX).
 *
 * The shim is the container's subreaper: runc create leaves the container's init behind
 * as an orphan, which the kernel gives to the nearest subreaper, so its exit status reaches
 * us.  Before `runc delete` removes the container's cgroup, the shim reads its OOM kill
 * count (cgroup v1: memory.oom_control; v2: memory.events).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "env_i.h"

extern char **environ;

struct shim {
	const char *runc, *id, *env_dir, *cache_dir, *remotes;
	pid_t init;            /* the container's init */
	int out;               /* its output, read end */
	size_t logged;
	char last[256];        /* the last line of output, for failures */
	char cgroup[512];      /* the folder holding its memory counters, or "" */
	int v2;
};

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	if (n > 0)
		(void)!write(1, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* Runs runc with args; its output goes to out_fd (-1: the log).  Its exit status or -errno. */
static int runc(struct shim *s, int out_fd, const char *a1, const char *a2, const char *a3,
		const char *a4, const char *a5, const char *a6)
{
	const char *argv[] = { s->runc, a1, a2, a3, a4, a5, a6, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, r;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out_fd >= 0) {
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
		posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
	} else {
		posix_spawn_file_actions_adddup2(&fa, 2, 1);
	}
	r = posix_spawn(&pid, s->runc, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -r;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Copies what the container wrote into the log; 0 at its end. */
static ssize_t pump(struct shim *s)
{
	char buf[65536];
	ssize_t n = read(s->out, buf, sizeof(buf));

	if (n <= 0)
		return n < 0 && errno == EAGAIN ? 1 : 0;
	if (s->logged < ENV_LOG_MAX) {
		size_t k = (size_t)n < ENV_LOG_MAX - s->logged ? (size_t)n : ENV_LOG_MAX - s->logged;

		(void)!write(2, buf, k);
		s->logged += k;
		if (s->logged == ENV_LOG_MAX)
			dprintf(2, "\nllmfs: the log reached %u bytes; the rest is dropped\n",
				ENV_LOG_MAX);
	}
	/* The last complete line, for a failure's reason. */
	{
		ssize_t end = n, start;

		while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r'))
			end--;
		start = end;
		while (start > 0 && buf[start - 1] != '\n')
			start--;
		if (end > start)
			snprintf(s->last, sizeof(s->last), "%.*s", (int)(end - start), buf + start);
	}
	return n;
}

/*
 * Where the container's memory counters are, from its init's cgroups: the memory
 * controller's folder under cgroup v1, else its folder of the unified (v2) hierarchy when
 * that one is mounted at /sys/fs/cgroup.
 */
static void find_cgroup(struct shim *s)
{
	int unified = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
	char path[64], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)s->init);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		*c2++ = '\0';
		c2[strcspn(c2, "\n")] = '\0';
		if (!strcmp(c1 + 1, "memory") || strstr(c1 + 1, "memory,") ||
		    strstr(c1 + 1, ",memory")) {
			s->v2 = 0;
			snprintf(s->cgroup, sizeof(s->cgroup), "/sys/fs/cgroup/memory%s", c2);
			break;
		}
		if (unified && !strcmp(line, "0") && !c1[1]) {
			s->v2 = 1;
			snprintf(s->cgroup, sizeof(s->cgroup), "/sys/fs/cgroup%s", c2);
		}
	}
	fclose(f);
}

static long oom_kills(const struct shim *s)
{
	char path[600], line[128];
	long n = 0;
	FILE *f;

	if (!s->cgroup[0])
		return 0;
	snprintf(path, sizeof(path), "%s/%s", s->cgroup, s->v2 ? "memory.events" : "memory.oom_control");
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "oom_kill %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

static pid_t read_pid(const char *env_dir)
{
	char *p = NULL, *text = NULL;
	size_t n;
	long pid = 0;

	if (asprintf(&p, "%s/pid", env_dir) < 0)
		return 0;
	if (env_read_file(p, 64, &text, &n) == 0)
		pid = strtol(text, NULL, 10);
	unlink(p);
	free(p);
	free(text);
	return pid > 1 ? (pid_t)pid : 0;
}

/* Has the daemon asked for a stop (a "stop" line, or the end of stdin)? */
static int stop_asked(void)
{
	char buf[64];
	ssize_t n = read(0, buf, sizeof(buf));

	return n == 0 || (n > 0 && memmem(buf, (size_t)n, "stop", 4)) ||
	       (n < 0 && errno != EAGAIN && errno != EINTR);
}

static int left_behind(const char *id)
{
	static const char *const roots[] = { "/run/runc", "/run/crun" };
	char p[512];

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", roots[i], id);
		if (access(p, F_OK) == 0)
			return 1;
	}
	return 0;
}

static int create(struct shim *s)
{
	char *pidfile = NULL;
	int p[2], r;

	if (asprintf(&pidfile, "%s/pid", s->env_dir) < 0)
		return -ENOMEM;
	if (pipe2(p, O_CLOEXEC) < 0) {
		free(pidfile);
		return -errno;
	}
	/* A container left by a shim that was killed: gone before ours is made (runc's and
	 * crun's state folders say whether there is one, without running a runtime). */
	if (left_behind(s->id))
		runc(s, -1, "delete", "--force", s->id, NULL, NULL, NULL);
	r = runc(s, p[1], "create", "--bundle", s->env_dir, "--pid-file", pidfile, s->id);
	close(p[1]);
	free(pidfile);
	s->out = p[0];
	fcntl(s->out, F_SETFL, O_NONBLOCK);
	while (pump(s) > 0 && r != 0)
		;
	if (r != 0)
		return r < 0 ? r : -EIO;
	s->init = read_pid(s->env_dir);
	if (!s->init)
		return -EIO;
	find_cgroup(s);
	return 0;
}

/* Waits for the container's end, copying its output and passing on a stop. */
static int wait_end(struct shim *s, int *ret_status)
{
	double kill_at = 0, ended_at = 0;
	int out_open = 1, in_open = 1, ended = 0, st = 0;

	fcntl(0, F_SETFL, O_NONBLOCK);
	while (!ended || (out_open && clock_mono_s() < ended_at + 1)) {
		struct pollfd pf[2] = { { 0, in_open ? POLLIN : 0, 0 },
					{ s->out, out_open ? POLLIN : 0, 0 } };
		pid_t pid;
		int w;

		poll(pf, 2, 100);
		if (in_open && (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) && stop_asked()) {
			in_open = 0;
			if (!ended) {
				runc(s, -1, "kill", s->id, "TERM", NULL, NULL, NULL);
				kill_at = clock_mono_s() + ENV_STOP_GRACE_S;
			}
		}
		if (out_open && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
			out_open = pump(s) > 0;
		if (kill_at && !ended && clock_mono_s() > kill_at) {
			runc(s, -1, "kill", "--all", s->id, "KILL", NULL, NULL);
			kill(s->init, SIGKILL);
			kill_at = 0;
		}
		while ((pid = waitpid(-1, &w, WNOHANG)) > 0)
			if (pid == s->init) {
				st = w;
				ended = 1;
				ended_at = clock_mono_s();
			}
		if (pid < 0 && errno == ECHILD && !ended) {
			/* Not ours after all (no subreaper?): judged by runc. */
			ended = 1;
			ended_at = clock_mono_s();
			st = -1;
		}
	}
	*ret_status = st;
	return 0;
}

/*
 * A spare's arguments: one line "RUNC ID ENVDIR CACHE REMOTES" (tab-separated) on stdin, read a
 * byte at a time so that what follows ("stop") stays for wait_end().  Its stderr becomes the
 * env's log.  -ENODATA: the daemon closed stdin first (it stops, with this spare unused).
 */
static int read_args(char *buf, size_t len, char ***argv)
{
	static char *v[8];
	size_t n = 0;
	char *p;
	int log;

	while (n + 1 < len) {
		ssize_t k = read(0, buf + n, 1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -ENODATA;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	v[0] = "llmfs-env-shim";
	v[1] = "--env-shim";
	p = buf;
	for (int i = 2; i < 7; i++) {
		v[i] = p;
		p = strchr(p, '\t');
		if (!p && i < 6)
			return -EINVAL;
		if (p)
			*p++ = '\0';
	}
	v[7] = NULL;
	{
		char lp[4200];

		snprintf(lp, sizeof(lp), "%s/log", v[4]);
		log = open(lp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	}
	if (log < 0 || dup2(log, 2) < 0)
		return -EIO;
	close(log);
	*argv = v;
	return 0;
}

int env_shim_main(int argc, char **argv)
{
	struct shim s = { 0 };
	struct env_spec spec = { 0 };
	char err[512] = "", *path = NULL, *text = NULL, *rootfs = NULL, args[8192];
	size_t len;
	int r, st = 0;

	if (argc == 2) {
		/* A spare: started ahead, told its env when one starts. */
		r = read_args(args, sizeof(args), &argv);
		if (r < 0)
			return r == -ENODATA ? 0 : 2;
		argc = 7;
	}
	if (argc != 7)
		return 2;
	s.runc = argv[2];
	s.id = argv[3];
	s.env_dir = argv[4];
	s.cache_dir = argv[5];
	s.remotes = argv[6];
	s.out = -1;
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	say("building\n");
	r = asprintf(&path, "%s/env.json", s.env_dir) < 0 ? -ENOMEM : 0;
	if (r == 0)
		r = env_read_file(path, ENV_TEXT_MAX, &text, &len);
	if (r == 0)
		r = env_spec_parse(text, len, NULL, 0, &spec, err, sizeof(err));
	if (r == 0)
		r = env_spec_rootfs_dir(&spec, s.env_dir, s.cache_dir, &rootfs);
	if (r == 0)
		r = env_rootfs_build(&spec, rootfs, s.remotes, 2, err, sizeof(err));
	if (r < 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-r));
		goto failed;
	}
	r = create(&s);
	if (r != 0) {
		snprintf(err, sizeof(err), "runc create failed: %s", s.last[0] ? s.last : strerror(-r));
		goto failed_delete;
	}
	say("created\n");
	r = runc(&s, -1, "start", s.id, NULL, NULL, NULL, NULL);
	if (r != 0) {
		snprintf(err, sizeof(err), "runc start failed (status %d)", r);
		goto failed_delete;
	}
	{
		char pid[32];

		snprintf(pid, sizeof(pid), "%d", (int)s.init);
		say("running %s\n", pid);
	}
	wait_end(&s, &st);
	{
		char line[128];
		long oom = oom_kills(&s);

		runc(&s, -1, "delete", "--force", s.id, NULL, NULL, NULL);
		snprintf(line, sizeof(line), "%d %d %ld", st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			 st >= 0 && WIFSIGNALED(st) ? WTERMSIG(st) : 0, oom);
		say("exited %s\n", line);
	}
	r = 0;
	goto out;
failed_delete:
	runc(&s, -1, "delete", "--force", s.id, NULL, NULL, NULL);
failed:
	dprintf(2, "llmfs: %s\n", err);
	for (char *c = err; *c; c++)
		if (*c == '\n')
			*c = ' ';
	say("failed %s\n", err);
	r = 1;
out:
	if (s.out >= 0)
		close(s.out);
	env_spec_release(&spec);
	free(path);
	free(text);
	free(rootfs);
	return r;
}
