/*
 * env: see env.h for the contract.
 *
 * One thread (env_main()) starts the shims, reads their lines with poll() and reaps them;
 * calls from FUSE threads only change the table and wake it through a pipe.  The thread
 * lives as long as the table, and a shim ends when its stdin (held by the table) closes:
 * nothing outlives the daemon.
 */
#include "env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hex.h"
#include "env_i.h"

extern char **environ;

#define NAME_MAX_LEN 64
#define LINE_MAX_LEN 1024
/* How long a daemon that stops waits for its containers before it kills them. */
#define CLOSE_WAIT_S (ENV_STOP_GRACE_S + 10)

enum env_state { S_CREATED, S_STARTING, S_RUNNING, S_STOPPED, S_FAILED };

static const char *const file_names[ENV_F_COUNT] = {
	[ENV_F_ENV] = "env.json", [ENV_F_CONTROL] = "control", [ENV_F_STATE] = "state",
	[ENV_F_ENDPOINT] = "endpoint", [ENV_F_LOG] = "log", [ENV_F_CONFIG] = "config.json",
};

struct env {
	struct env *next;
	char *name;
	char *dir;                /* state_dir/<name> */
	char *id;                 /* the container's */
	uid_t uid;
	gid_t gid;
	unsigned mode;
	enum env_state state;
	char *detail;             /* S_STOPPED: "exit 0", ...; S_FAILED: the reason */
	int has_spec;
	char model[256];
	int want;                 /* should run (kept in "want") */
	int start_asked, stop_asked;
	unsigned long long gen;
	/* While a shim runs. */
	pid_t shim;
	int shim_in, shim_out;    /* its stdin (ours to write), its stdout (ours to read) */
	char line[LINE_MAX_LEN];
	size_t line_len;
	int shim_eof;
	int shim_said_end;        /* its last line came: it only exits now */
	int cleanup;              /* a container of a past daemon may be left: delete it */
};

struct env_table {
	struct env_table_config cfg;
	char *state_dir, *cache_dir, *tree, *exe, *runc, *serve, *remotes;
	char **allow;
	size_t n_allow;
	char prefix[24];          /* of container ids: "llmfs-<8 hex>-" */
	pthread_mutex_t lock;
	struct env *envs;
	int wake[2];
	pthread_t thread;
	int have_thread;
	int closing;
	double close_deadline;
	/* The tree was unmounted: its containers hold the mount alive (their model binds), so
	 * they are stopped, to let the session end (they start again with the next daemon). */
	int unmounted;
	int seen_mounted;         /* it was mounted once (the table opens before the mount) */
	/* A shim started ahead (exec and loading off the start's path), or 0. */
	pid_t spare;
	int spare_in, spare_out;
};

/* ---- small helpers ------------------------------------------------------------------------- */

int env_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > NAME_MAX_LEN || name[0] == '.' || name[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

const char *env_file_name(enum env_file f)
{
	return f < ENV_F_COUNT ? file_names[f] : NULL;
}

int env_file_lookup(const char *file)
{
	for (int f = 0; f < ENV_F_COUNT; f++)
		if (!strcmp(file, file_names[f]))
			return f;
	return -ENOENT;
}

const char *env_find_runtime(void)
{
	static const char *const paths[] = { "/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc",
					     "/usr/local/sbin/runc", "/usr/local/bin/runc",
					     "/usr/bin/crun", "/usr/sbin/crun", NULL };

	for (const char *const *p = paths; *p; p++)
		if (access(*p, X_OK) == 0)
			return *p;
	return NULL;
}

int env_write_file(const char *path, const char *text, size_t len)
{
	return env_write_file_how(path, text, len, 1);
}

int env_write_file_how(const char *path, const char *text, size_t len, int durable)
{
	char *tmp = NULL;
	int fd, r = 0;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (size_t done = 0; r == 0 && done < len;) {
		ssize_t n = write(fd, text + done, len - done);

		if (n < 0)
			r = -errno;
		else
			done += (size_t)n;
	}
	if (r == 0 && durable && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
out:
	free(tmp);
	return r;
}

int env_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	char *buf;
	size_t len = 0;
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)sb.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (len < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)sb.st_size - len);

		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

static char *path_of(const struct env *e, const char *file)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s", e->dir, file) < 0 ? NULL : p;
}

static int put_len(const struct env *e, const char *file, const char *text, size_t len)
{
	char *p = path_of(e, file);
	int r = p ? env_write_file(p, text, len) : -ENOMEM;

	free(p);
	return r;
}

static int put(const struct env *e, const char *file, const char *text)
{
	return put_len(e, file, text, strlen(text));
}

static int in_table(const struct env_table *t, const struct env *e)
{
	for (const struct env *x = t->envs; x; x = x->next)
		if (x == e)
			return 1;
	return 0;
}

static struct env *find(struct env_table *t, const char *name)
{
	for (struct env *e = t->envs; e; e = e->next)
		if (!strcmp(e->name, name))
			return e;
	return NULL;
}

static void wake(struct env_table *t)
{
	(void)!write(t->wake[1], "", 1);
}

/* The state as the state file shows it (malloc()ed, newline-terminated). */
static char *state_text(const struct env *e)
{
	static const char *const word[] = { [S_CREATED] = "created", [S_STARTING] = "starting",
					    [S_RUNNING] = "running", [S_STOPPED] = "stopped",
					    [S_FAILED] = "failed" };
	char *s = NULL;
	int r;

	if (e->state == S_FAILED)
		r = asprintf(&s, "failed: %s\n", e->detail ? e->detail : "unknown");
	else if (e->state == S_STOPPED && e->detail)
		r = asprintf(&s, "stopped (%s)\n", e->detail);
	else
		r = asprintf(&s, "%s\n", word[e->state]);
	return r < 0 ? NULL : s;
}

/*
 * A change: kept on disk, told to the caller (the lock held).  The state and want files are
 * renamed into place but not synced: after a crash the next daemon judges the env from its
 * containers, not from them, and a sync here would delay every start by the disk's flush.
 */
static void changed(struct env_table *t, struct env *e)
{
	char *s = state_text(e), *w = path_of(e, "want");

	e->gen++;
	if (s && e->dir) {
		char *p = path_of(e, "state");

		if (p)
			env_write_file_how(p, s, strlen(s), 0);
		free(p);
	}
	free(s);
	if (w && e->want && access(w, F_OK) < 0)
		env_write_file_how(w, "", 0, 0);
	else if (w && !e->want)
		unlink(w);
	free(w);
	if (t->cfg.on_change)
		t->cfg.on_change(t->cfg.on_change_arg, e->name);
}

static void set_state(struct env_table *t, struct env *e, enum env_state st, const char *detail)
{
	e->state = st;
	free(e->detail);
	e->detail = detail ? strdup(detail) : NULL;
	changed(t, e);
}

/* ---- the runtime spec ------------------------------------------------------------------------ */

static int memsw(void)
{
	return access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0 ||
	       access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

/* config.json made again from env.json, unless root wrote its own. */
static int make_config(struct env_table *t, struct env *e, const struct env_spec *s)
{
	struct env_spec_ctx c = { e->name, e->id, e->dir, NULL, t->tree, t->serve, memsw() };
	char *rootfs = NULL, *text = NULL, *custom = path_of(e, "config.custom");
	int r;

	if (!custom)
		return -ENOMEM;
	r = access(custom, F_OK) == 0;
	free(custom);
	if (r)
		return 0;
	r = env_spec_rootfs_dir(s, e->dir, t->cache_dir, &rootfs);
	c.rootfs = rootfs;
	if (r == 0)
		r = env_spec_config(s, &c, &text);
	if (r == 0) {
		/* The same spec as the last start: left as it is (no write, no sync). */
		char *path = path_of(e, "config.json"), *old = NULL;
		size_t len;

		if (!path || env_read_file(path, ENV_TEXT_MAX, &old, &len) < 0 ||
		    strcmp(old, text))
			r = put(e, "config.json", text);
		free(old);
		free(path);
	}
	free(rootfs);
	free(text);
	return r;
}

/* ---- the shims ------------------------------------------------------------------------------- */

static int open_log(const struct env *e)
{
	char *p = path_of(e, "log");
	int fd;

	if (!p)
		return -ENOMEM;
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	free(p);
	return fd < 0 ? -errno : fd;
}

/* Starts argv with pipes for stdin and stdout and log (-1: /dev/null) as stderr. */
static int spawn_piped(struct env_table *t, char *const argv[], int log, pid_t *ret_pid,
		       int *ret_in, int *ret_out)
{
	posix_spawn_file_actions_t fa;
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, r;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	if (log >= 0)
		posix_spawn_file_actions_adddup2(&fa, log, 2);
	else
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	r = -posix_spawn(ret_pid, t->exe, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r < 0)
		goto fail;
	close(in[0]);
	close(out[1]);
	*ret_in = in[1];
	*ret_out = out[0];
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	return r;
}

/*
 * A shim for e: the spare when there is one (already loaded: told its env in one line),
 * else a new process.
 */
static int spawn_shim(struct env_table *t, struct env *e)
{
	char *const argv[] = { t->exe, "--env-shim", t->runc, e->id, e->dir, t->cache_dir,
			       t->remotes, NULL };
	int log, r;

	if (t->spare) {
		char *line = NULL;
		int n = asprintf(&line, "%s\t%s\t%s\t%s\t%s\n", t->runc, e->id, e->dir,
				 t->cache_dir, t->remotes);

		e->shim = t->spare;
		e->shim_in = t->spare_in;
		e->shim_out = t->spare_out;
		t->spare = 0;
		r = n > 0 && write(e->shim_in, line, (size_t)n) == n ? 0 : -EPIPE;
		free(line);
		if (r == 0)
			goto started;
		/* A spare that died: reaped, and a new shim made instead. */
		close(e->shim_in);
		close(e->shim_out);
		waitpid(e->shim, NULL, 0);
		e->shim = 0;
	}
	log = open_log(e);
	if (log < 0)
		return log;
	r = spawn_piped(t, argv, log, &e->shim, &e->shim_in, &e->shim_out);
	close(log);
	if (r < 0) {
		e->shim = 0;
		return r;
	}
started:
	fcntl(e->shim_out, F_SETFL, O_NONBLOCK);
	e->line_len = 0;
	e->shim_eof = 0;
	return 0;
}

/* A spare shim, loaded ahead of the next start, when none is there and no env is starting
 * (its loading would compete with that start for the CPU). */
static void refill_spare(struct env_table *t)
{
	char *const argv[] = { t->exe, "--env-shim", NULL };

	if (t->spare || t->closing || t->unmounted)
		return;
	for (struct env *e = t->envs; e; e = e->next)
		if (e->state == S_STARTING || e->start_asked)
			return;
	if (spawn_piped(t, argv, -1, &t->spare, &t->spare_in, &t->spare_out) < 0)
		t->spare = 0;
}

static void drop_spare(struct env_table *t)
{
	if (!t->spare)
		return;
	close(t->spare_in);
	close(t->spare_out);
	waitpid(t->spare, NULL, 0);
	t->spare = 0;
}

static void on_line(struct env_table *t, struct env *e, char *line)
{
	int code, sig;
	long oom;

	if (!strncmp(line, "running ", 8)) {
		set_state(t, e, S_RUNNING, NULL);
	} else if (sscanf(line, "exited %d %d %ld", &code, &sig, &oom) == 3) {
		char d[64];

		if (oom > 0)
			snprintf(d, sizeof(d), "OOM killed");
		else if (sig)
			snprintf(d, sizeof(d), "signal %d", sig);
		else
			snprintf(d, sizeof(d), "exit %d", code);
		/* An end of its own: it stays stopped when the daemon starts again. */
		if (!t->closing && !t->unmounted)
			e->want = 0;
		e->shim_said_end = 1;
		set_state(t, e, S_STOPPED, d);
	} else if (!strncmp(line, "failed ", 7)) {
		if (!t->closing && !t->unmounted)
			e->want = 0;
		e->shim_said_end = 1;
		set_state(t, e, S_FAILED, line + 7);
	}
}

/* Reads what a shim said; at its end, reaps it. */
static void read_shim(struct env_table *t, struct env *e)
{
	char buf[4096];
	ssize_t n;

	while ((n = read(e->shim_out, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' || e->line_len == LINE_MAX_LEN - 1) {
				e->line[e->line_len] = '\0';
				on_line(t, e, e->line);
				e->line_len = 0;
			} else {
				e->line[e->line_len++] = buf[i];
			}
		}
	}
	if (n == 0)
		e->shim_eof = 1;
}

/* wait: block (a shim that said its last line only exits). */
static void reap(struct env_table *t, struct env *e, int wait)
{
	int st;

	if (waitpid(e->shim, &st, wait ? 0 : WNOHANG) != e->shim)
		return;
	close(e->shim_out);
	if (e->shim_in >= 0)
		close(e->shim_in);
	e->shim = 0;
	e->shim_said_end = 0;
	e->shim_in = e->shim_out = -1;
	if (e->state == S_STARTING || e->state == S_RUNNING) {
		if (!t->closing && !t->unmounted)
			e->want = 0;
		set_state(t, e, S_FAILED, "the env's shim ended without a word (see log)");
	}
	if (e->start_asked)
		wake(t);
}

/* What the calls asked for, done here (the lock held): shims started, stops passed on. */
static void act(struct env_table *t, struct env *e)
{
	if (e->start_asked && !e->shim && !t->closing && !t->unmounted) {
		int r;

		e->start_asked = 0;
		r = spawn_shim(t, e);
		if (r < 0) {
			e->want = 0;
			set_state(t, e, S_FAILED, "cannot start the shim");
		} else if (e->state != S_STARTING) {
			set_state(t, e, S_STARTING, NULL);
		}
	}
	if ((e->stop_asked || t->closing || t->unmounted) && e->shim && e->shim_in >= 0) {
		close(e->shim_in);
		e->shim_in = -1;
	}
	e->stop_asked = 0;
}

/* Containers a past daemon may have left (its shims killed too): gone. */
static void cleanup_left(struct env_table *t)
{
	for (struct env *e = t->envs; e; e = e->next) {
		char *const argv[] = { t->runc, "delete", "--force", e->id, NULL };
		posix_spawn_file_actions_t fa;
		pid_t pid;
		int st;

		if (!e->cleanup)
			continue;
		e->cleanup = 0;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_addclosefrom_np(&fa, 3);
		if (posix_spawn(&pid, t->runc, &fa, NULL, argv, environ) == 0) {
			pthread_mutex_unlock(&t->lock);
			waitpid(pid, &st, 0);
			pthread_mutex_lock(&t->lock);
		}
		posix_spawn_file_actions_destroy(&fa);
	}
}

static int shims_left(struct env_table *t)
{
	for (struct env *e = t->envs; e; e = e->next)
		if (e->shim)
			return 1;
	return 0;
}

/* A daemon that stops and whose containers outlived the wait: killed, shims and all. */
static void kill_left(struct env_table *t)
{
	for (struct env *e = t->envs; e; e = e->next)
		if (e->shim) {
			kill(e->shim, SIGKILL);
			e->cleanup = 1;
		}
	cleanup_left(t);
}

/* "\040" and the other escapes of /proc/self/mountinfo, undone in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Is the tree still mounted where it was? */
static int tree_mounted(const struct env_table *t)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	int found = 0;

	if (!f)
		return 1;
	while (!found && fgets(line, sizeof(line), f)) {
		char *mp = NULL, *save = NULL, *tok = strtok_r(line, " ", &save);

		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		mp = tok;
		if (mp) {
			unescape(mp);
			found = !strcmp(mp, t->tree);
		}
	}
	fclose(f);
	return found;
}

static void *env_main(void *arg)
{
	struct env_table *t = arg;
	/* The mount table, which poll() reports changed with POLLPRI. */
	int mounts = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC);

	struct pollfd *pf = NULL;
	struct env **who = NULL;
	size_t cap = 0;

	pthread_mutex_lock(&t->lock);
	cleanup_left(t);
	for (;;) {
		nfds_t n = 2;
		size_t want = 2;
		char buf[64];

		/* Room for every env's shim: the wake pipe and the mount table come first. */
		for (struct env *e = t->envs; e; e = e->next)
			want++;
		if (want > cap) {
			struct pollfd *npf = realloc(pf, want * sizeof(*pf));
			struct env **nwho = npf ? realloc(who, want * sizeof(*who)) : NULL;

			if (npf)
				pf = npf;
			if (nwho) {
				who = nwho;
				cap = want;
			}
		}
		for (struct env *e = t->envs; e; e = e->next) {
			act(t, e);
			if (e->shim && e->shim_eof)
				reap(t, e, 0);
			if (e->shim && !e->shim_eof && n < cap) {
				pf[n].fd = e->shim_out;
				pf[n].events = POLLIN;
				who[n++] = e;
			}
		}
		if (t->closing || t->unmounted)
			drop_spare(t);
		else
			refill_spare(t);
		if (t->closing && !shims_left(t))
			break;
		if (t->closing && mounts >= 0) {
			close(mounts);
			mounts = -1;
		}
		if (t->closing && clock_mono_s() > t->close_deadline) {
			kill_left(t);
			continue;
		}
		if (cap < 2) {
			/* Out of memory for even the first two: wait a little and try again. */
			pthread_mutex_unlock(&t->lock);
			usleep(100000);
			pthread_mutex_lock(&t->lock);
			continue;
		}
		pf[0].fd = t->wake[0];
		pf[0].events = POLLIN;
		pf[1].fd = t->unmounted ? -1 : mounts;
		pf[1].events = POLLPRI;
		pthread_mutex_unlock(&t->lock);
		/* A shim at its end is reaped on the next round: soon. */
		poll(pf, n, 200);
		if (pf[0].revents & POLLIN)
			while (read(t->wake[0], buf, sizeof(buf)) > 0)
				;
		pthread_mutex_lock(&t->lock);
		if (pf[1].revents & (POLLPRI | POLLERR)) {
			if (tree_mounted(t))
				t->seen_mounted = 1;
			else if (t->seen_mounted)
				t->unmounted = 1;
		}
		/* An env removed meanwhile is no longer in the table: compared by address only. */
		for (nfds_t i = 2; i < n; i++)
			if (pf[i].revents && in_table(t, who[i]) && who[i]->shim &&
			    who[i]->shim_out == pf[i].fd)
				read_shim(t, who[i]);
	}
	pthread_mutex_unlock(&t->lock);
	if (mounts >= 0)
		close(mounts);
	free(pf);
	free(who);
	return NULL;
}

/* ---- the table ------------------------------------------------------------------------------- */

static void env_free(struct env *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->dir);
	free(e->id);
	free(e->detail);
	free(e);
}

static struct env *env_new(struct env_table *t, const char *name)
{
	struct env *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->shim_in = e->shim_out = -1;
	e->name = strdup(name);
	if (!e->name || asprintf(&e->dir, "%s/%s", t->state_dir, name) < 0 ||
	    asprintf(&e->id, "%s%s", t->prefix, name) < 0) {
		env_free(e);
		return NULL;
	}
	return e;
}

/* Reads env.json for its model (and to know there is a good one). */
static int load_spec(struct env_table *t, struct env *e, const char *text, size_t len,
		     struct env_spec *ret, char *err, size_t errlen)
{
	int r = env_spec_parse(text, len, (const char *const *)t->allow, t->n_allow, ret, err,
			       errlen);

	if (r == 0)
		snprintf(e->model, sizeof(e->model), "%s", ret->model);
	return r;
}

/* One env of a past run, from its folder. */
static int load_env(struct env_table *t, const char *name, FILE *warn)
{
	struct env *e = env_new(t, name);
	char *text = NULL, *p = NULL;
	size_t len;
	unsigned uid, gid, mode;
	int r;

	if (!e)
		return -ENOMEM;
	p = path_of(e, "owner");
	r = p ? env_read_file(p, 256, &text, &len) : -ENOMEM;
	free(p);
	if (r < 0 || sscanf(text, "%u %u %o", &uid, &gid, &mode) != 3) {
		fprintf(warn, "env %s: no owner file\n", name);
		free(text);
		env_free(e);
		return 0;
	}
	free(text);
	e->uid = uid;
	e->gid = gid;
	e->mode = mode & 07777;
	p = path_of(e, "env.json");
	if (p && env_read_file(p, ENV_TEXT_MAX, &text, &len) == 0) {
		struct env_spec s;
		char err[256];

		if (load_spec(t, e, text, len, &s, err, sizeof(err)) == 0) {
			e->has_spec = 1;
			env_spec_release(&s);
		} else {
			e->state = S_FAILED;
			e->detail = strdup(err);
		}
		free(text);
	}
	free(p);
	p = path_of(e, "want");
	e->want = p && access(p, F_OK) == 0 && e->has_spec;
	free(p);
	p = path_of(e, "state");
	if (e->state != S_FAILED && p && env_read_file(p, 4096, &text, &len) == 0) {
		text[strcspn(text, "\n")] = '\0';
		if (!strncmp(text, "running", 7) || !strncmp(text, "starting", 8)) {
			e->cleanup = 1;
			e->state = S_STOPPED;
			e->detail = strdup("the daemon stopped");
		} else if (!strncmp(text, "stopped (", 9) && len > 10) {
			e->state = S_STOPPED;
			text[strlen(text) - 1] = '\0';
			e->detail = strdup(text + 9);
		} else if (!strncmp(text, "failed: ", 8)) {
			e->state = S_FAILED;
			e->detail = strdup(text + 8);
		}
		free(text);
	}
	free(p);
	if (e->want) {
		e->start_asked = 1;
		e->state = S_STARTING;
	}
	e->next = t->envs;
	t->envs = e;
	return 0;
}

static int load_all(struct env_table *t, char **ret_warnings)
{
	char *w = NULL;
	size_t wlen = 0;
	FILE *warn = open_memstream(&w, &wlen);
	DIR *d = opendir(t->state_dir);
	struct dirent *de;
	int r = 0;

	if (!warn || !d) {
		r = d ? -ENOMEM : -errno;
		goto out;
	}
	while (r == 0 && (de = readdir(d)))
		if (env_name_valid(de->d_name))
			r = load_env(t, de->d_name, warn);
out:
	if (d)
		closedir(d);
	if (warn)
		fclose(warn);
	if (ret_warnings && w && *w)
		*ret_warnings = w;
	else
		free(w);
	return r;
}

static void table_free(struct env_table *t)
{
	struct env *e;

	while ((e = t->envs)) {
		t->envs = e->next;
		env_free(e);
	}
	for (size_t i = 0; i < t->n_allow; i++)
		free(t->allow[i]);
	free(t->allow);
	free(t->state_dir);
	free(t->cache_dir);
	free(t->tree);
	free(t->exe);
	free(t->runc);
	free(t->serve);
	free(t->remotes);
	if (t->wake[0] >= 0)
		close(t->wake[0]);
	if (t->wake[1] >= 0)
		close(t->wake[1]);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static char *dup_or_null(const char *s, int *bad)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		*bad = 1;
	return d;
}

int env_table_open(const struct env_table_config *cfg, struct env_table **ret,
		   char **ret_warnings)
{
	struct env_table *t = calloc(1, sizeof(*t));
	char digest[DIGEST_LEN];
	int bad = 0, r;

	if (!t)
		return -ENOMEM;
	t->wake[0] = t->wake[1] = -1;
	pthread_mutex_init(&t->lock, NULL);
	t->cfg = *cfg;
	t->state_dir = dup_or_null(cfg->state_dir, &bad);
	t->cache_dir = dup_or_null(cfg->cache_dir, &bad);
	t->tree = dup_or_null(cfg->tree, &bad);
	t->exe = dup_or_null(cfg->exe, &bad);
	t->runc = dup_or_null(cfg->runc, &bad);
	t->serve = dup_or_null(cfg->serve, &bad);
	t->remotes = dup_or_null(cfg->remotes ? cfg->remotes : "/dev/null", &bad);
	t->allow = calloc(cfg->n_bind_allow + 1, sizeof(*t->allow));
	for (size_t i = 0; t->allow && i < cfg->n_bind_allow; i++) {
		t->allow[i] = realpath(cfg->bind_allow[i], NULL);
		if (t->allow[i])
			t->n_allow++;
	}
	if (bad || !t->allow || !t->state_dir || !t->cache_dir || !t->tree || !t->exe || !t->runc) {
		r = -ENOMEM;
		goto fail;
	}
	t->cfg.state_dir = t->cfg.cache_dir = t->cfg.tree = t->cfg.exe = NULL;
	digest_sha256(t->state_dir, strlen(t->state_dir), digest);
	snprintf(t->prefix, sizeof(t->prefix), "llmfs-%.8s-", digest + 7);
	if ((mkdir(t->state_dir, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(t->cache_dir, 0700) < 0 && errno != EEXIST) ||
	    pipe2(t->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	r = load_all(t, ret_warnings);
	if (r == 0)
		r = -pthread_create(&t->thread, NULL, env_main, t);
	if (r < 0)
		goto fail;
	t->have_thread = 1;
	*ret = t;
	return 0;
fail:
	table_free(t);
	return r;
}

void env_table_close(struct env_table *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->closing = 1;
	t->close_deadline = clock_mono_s() + CLOSE_WAIT_S;
	pthread_mutex_unlock(&t->lock);
	wake(t);
	if (t->have_thread)
		pthread_join(t->thread, NULL);
	table_free(t);
}

int env_table_create(struct env_table *t, const char *name, const struct env_owner *owner,
		     unsigned mode)
{
	struct env *e;
	char owner_text[64];
	int r;

	if (!env_name_valid(name))
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	if (find(t, name)) {
		r = -EEXIST;
		goto out;
	}
	e = env_new(t, name);
	if (!e) {
		r = -ENOMEM;
		goto out;
	}
	e->uid = owner->uid;
	e->gid = owner->gid;
	e->mode = mode & 0777;
	snprintf(owner_text, sizeof(owner_text), "%u %u %o\n", (unsigned)e->uid,
		 (unsigned)e->gid, e->mode);
	/* run/: the endpoint's folder, bound into the container, where nobody makes the socket. */
	if (mkdir(e->dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		env_free(e);
		goto out;
	}
	{
		char *run = path_of(e, "run");

		r = run ? 0 : -ENOMEM;
		if (r == 0 && mkdir(run, 0700) < 0 && errno != EEXIST)
			r = -errno;
		if (r == 0 && chown(run, ENV_UID, ENV_GID) < 0)
			r = -errno;
		free(run);
	}
	if (r == 0)
		r = put(e, "owner", owner_text);
	if (r < 0) {
		env_free(e);
		goto out;
	}
	e->next = t->envs;
	t->envs = e;
	changed(t, e);
out:
	pthread_mutex_unlock(&t->lock);
	return r;
}

int env_table_submit(struct env_table *t, const char *name, const char *text, size_t len)
{
	struct env_spec s = { 0 };
	char err[512] = "";
	struct env *e;
	int r;

	pthread_mutex_lock(&t->lock);
	e = find(t, name);
	if (!e) {
		r = -ENOENT;
		goto out;
	}
	if (e->shim) {
		r = -EBUSY;
		goto out;
	}
	r = load_spec(t, e, text, len, &s, err, sizeof(err));
	if (r < 0) {
		e->has_spec = 0;
		set_state(t, e, S_FAILED, err[0] ? err : strerror(-r));
		goto out;
	}
	/* text is the writer's bytes, not a string: len says where they end. */
	r = put_len(e, "env.json", text, len);
	if (r == 0)
		r = make_config(t, e, &s);
	if (r == 0) {
		e->has_spec = 1;
		set_state(t, e, S_CREATED, NULL);
	}
out:
	env_spec_release(&s);
	pthread_mutex_unlock(&t->lock);
	return r;
}

int env_table_set_config(struct env_table *t, const char *name, const char *text, size_t len)
{
	json_t *o = json_loadb(text, len, 0, NULL);
	struct env *e;
	int r;

	if (!json_is_object(o) || len > ENV_TEXT_MAX) {
		json_decref(o);
		return -EINVAL;
	}
	json_decref(o);
	pthread_mutex_lock(&t->lock);
	e = find(t, name);
	r = e ? 0 : -ENOENT;
	if (r == 0 && e->shim)
		r = -EBUSY;
	if (r == 0)
		r = put_len(e, "config.json", text, len);
	if (r == 0)
		r = put(e, "config.custom", "");
	if (r == 0)
		changed(t, e);
	pthread_mutex_unlock(&t->lock);
	return r;
}

static int start_locked(struct env_table *t, struct env *e)
{
	char *text = NULL, err[512] = "";
	struct env_spec s = { 0 };
	size_t len;
	char *p;
	int r;

	/* Running and not stopping, or already asked: nothing to do. */
	if ((e->shim && e->shim_in >= 0 && !e->stop_asked) || e->start_asked)
		return 0;
	if (!e->has_spec)
		return -EINVAL;
	p = path_of(e, "env.json");
	r = p ? env_read_file(p, ENV_TEXT_MAX, &text, &len) : -ENOMEM;
	free(p);
	if (r == 0)
		r = load_spec(t, e, text, len, &s, err, sizeof(err));
	if (r == 0)
		r = make_config(t, e, &s);
	free(text);
	env_spec_release(&s);
	if (r < 0) {
		set_state(t, e, S_FAILED, err[0] ? err : r == -ENOENT ? "no llmfs-serve program for "
			  "the llmfs-serve runtime" : strerror(-r));
		return r == -ENOENT ? -EINVAL : r;
	}
	/* A container still stopping: the new one starts once it is gone (act()). */
	e->start_asked = 1;
	e->want = 1;
	if (!e->shim)
		set_state(t, e, S_STARTING, NULL);
	else
		changed(t, e);
	wake(t);
	return 0;
}

int env_table_control(struct env_table *t, const char *name, const char *text, size_t len)
{
	struct env *e;
	size_t n = len;
	int r = 0;

	while (n && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\r'))
		n--;
	pthread_mutex_lock(&t->lock);
	e = find(t, name);
	if (!e) {
		r = -ENOENT;
	} else if (n == 5 && !memcmp(text, "start", 5)) {
		r = start_locked(t, e);
	} else if (n == 4 && !memcmp(text, "stop", 4)) {
		e->start_asked = 0;
		e->want = 0;
		if (e->shim)
			e->stop_asked = 1;
		else if (e->state == S_STARTING)
			set_state(t, e, S_STOPPED, "stopped before it ran");
		changed(t, e);
		wake(t);
	} else {
		r = -EINVAL;
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -errno : 0;
}

int env_table_remove(struct env_table *t, const char *name)
{
	struct env **pp, *e = NULL;
	int r = 0;

	pthread_mutex_lock(&t->lock);
	for (pp = &t->envs; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->name, name)) {
			e = *pp;
			break;
		}
	if (!e)
		r = -ENOENT;
	else if ((e->shim && !e->shim_said_end) || e->start_asked)
		r = -EBUSY;
	else if (e->shim)
		reap(t, e, 1);
	if (r == 0) {
		/* FTW_MOUNT: never into a mount (a rootfs a past container left bound). */
		r = nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		if (r == 0 || access(e->dir, F_OK) < 0) {
			*pp = e->next;
			e->gen++;
			if (t->cfg.on_change)
				t->cfg.on_change(t->cfg.on_change_arg, e->name);
			env_free(e);
			r = 0;
		} else {
			r = r < 0 ? r : -EIO;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

int env_table_info(struct env_table *t, const char *name, struct env_info *ret)
{
	struct env *e;
	int r = 0;

	pthread_mutex_lock(&t->lock);
	e = find(t, name);
	if (e) {
		ret->uid = e->uid;
		ret->gid = e->gid;
		ret->mode = e->mode;
		ret->running = e->state == S_RUNNING;
		snprintf(ret->model, sizeof(ret->model), "%s", e->has_spec ? e->model : "");
		ret->gen = e->gen;
	} else {
		r = -ENOENT;
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

int env_table_names(struct env_table *t, char ***ret_names, size_t *ret_n)
{
	size_t n = 0, i = 0;
	char **v;
	int r = 0;

	pthread_mutex_lock(&t->lock);
	for (struct env *e = t->envs; e; e = e->next)
		n++;
	v = calloc(n + 1, sizeof(*v));
	for (struct env *e = t->envs; v && e; e = e->next)
		if (!(v[i++] = strdup(e->name)))
			r = -ENOMEM;
	pthread_mutex_unlock(&t->lock);
	if (!v || r < 0) {
		env_table_names_free(v, i);
		return -ENOMEM;
	}
	*ret_names = v;
	*ret_n = n;
	return 0;
}

void env_table_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

/* The endpoint's socket on the host, when the container made it. */
static char *socket_path(const struct env *e)
{
	char *p = path_of(e, "run/" ENV_SOCKET);
	struct stat sb;

	if (p && (lstat(p, &sb) < 0 || !S_ISSOCK(sb.st_mode))) {
		free(p);
		p = NULL;
	}
	return p;
}

int env_table_read(struct env_table *t, const char *name, enum env_file f, char **ret,
		   size_t *ret_len)
{
	struct env *e;
	char *text = NULL, *p = NULL;
	size_t len = 0;
	int r = 0;

	pthread_mutex_lock(&t->lock);
	e = find(t, name);
	if (!e) {
		r = -ENOENT;
		goto out;
	}
	switch (f) {
	case ENV_F_STATE:
		text = state_text(e);
		r = text ? 0 : -ENOMEM;
		break;
	case ENV_F_ENDPOINT:
		p = e->state == S_RUNNING ? socket_path(e) : NULL;
		r = p && asprintf(&text, "unix:%s\n", p) < 0 ? -ENOMEM : 0;
		break;
	case ENV_F_ENV:
	case ENV_F_LOG:
	case ENV_F_CONFIG:
		p = path_of(e, file_names[f]);
		r = p ? env_read_file(p, ENV_LOG_MAX + 4096, &text, &len) : -ENOMEM;
		if (r == -ENOENT)
			r = 0;
		break;
	default:
		break;
	}
	if (r == 0 && !text)
		text = strdup("");
	if (r == 0 && !text)
		r = -ENOMEM;
	if (r == 0 && f != ENV_F_ENV && f != ENV_F_LOG && f != ENV_F_CONFIG)
		len = strlen(text);
out:
	pthread_mutex_unlock(&t->lock);
	free(p);
	if (r < 0) {
		free(text);
		return r;
	}
	*ret = text;
	*ret_len = len;
	return 0;
}

int env_table_size(struct env_table *t, const char *name, enum env_file f, uint64_t *ret)
{
	struct env *e;
	struct stat sb;
	char *p = NULL, *text = NULL;
	size_t len = 0;
	int r = 0;

	if (f != ENV_F_ENV && f != ENV_F_LOG && f != ENV_F_CONFIG) {
		r = env_table_read(t, name, f, &text, &len);
		free(text);
		if (r == 0)
			*ret = len;
		return r;
	}
	pthread_mutex_lock(&t->lock);
	e = find(t, name);
	if (!e)
		r = -ENOENT;
	else if (!(p = path_of(e, file_names[f])))
		r = -ENOMEM;
	else if (stat(p, &sb) < 0)
		r = -errno;
	pthread_mutex_unlock(&t->lock);
	if (r == -ENOENT && e) {
		r = 0; /* not written yet: empty */
		sb.st_size = 0;
	}
	free(p);
	if (r == 0)
		*ret = (uint64_t)sb.st_size;
	return r;
}

int env_table_cards(struct env_table *t, struct env_card **ret, size_t *ret_n)
{
	struct env_card *v;
	size_t n = 0, i = 0;
	int r = 0;

	pthread_mutex_lock(&t->lock);
	for (struct env *e = t->envs; e; e = e->next)
		n++;
	v = calloc(n + 1, sizeof(*v));
	for (struct env *e = t->envs; v && r == 0 && e; e = e->next) {
		char *sock = e->state == S_RUNNING ? socket_path(e) : NULL;
		json_t *card;

		if (!sock)
			continue;
		card = json_pack("{s:s, s:s, s:s}", "endpoint", "http://localhost/v1",
				 "unix_socket", sock, "model", e->model);
		v[i].card_json = card ? json_dumps(card, JSON_COMPACT) : NULL;
		v[i].name = strdup(e->name);
		v[i].uid = e->uid;
		json_decref(card);
		free(sock);
		if (!v[i].card_json || !v[i].name)
			r = -ENOMEM;
		i++;
	}
	pthread_mutex_unlock(&t->lock);
	if (!v || r < 0) {
		env_cards_free(v, i);
		return -ENOMEM;
	}
	*ret = v;
	*ret_n = i;
	return 0;
}

void env_cards_free(struct env_card *c, size_t n)
{
	for (size_t i = 0; c && i < n; i++) {
		free(c[i].name);
		free(c[i].card_json);
	}
	free(c);
}
