/*
 * mining_local: the provider whose replicas are processes on this machine (mining_provider.h).
 *
 * provider.json: {"kind": "local", "cpus": N, "cpu-list": "0-3,6", "account": ...}; cpus
 * defaults to the CPUs of cpu-list, itself defaulting to the CPUs the daemon may use.  Each
 * replica is pinned (sched_setaffinity, right after it starts and before it makes its
 * threads) to its share of cpu-list, taken in turn, so that several local providers on a
 * small machine, each given its own cpu-list, do not fight over the same cores.
 *
 * Device-seconds are the kernel's CPU time of the process and the children it waited for
 * (utime + stime + cutime + cstime of /proc/<pid>/stat while it runs, wait4()'s rusage once it
 * ended), never what the replica says.  An id is "<pid>:<start time in ticks>", so that a pid
 * reused by another process is not taken for the replica.
 */
#include "mining_provider.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct local_replica {
	struct local_replica *next;
	char id[MINING_ID_MAX];
	pid_t pid;
	int ended;
	struct mining_replica_status st;
};

struct mining_provider {
	pthread_mutex_t lock;
	int cpu_list[CPU_SETSIZE];
	unsigned n_cpus;           /* in cpu_list */
	unsigned offered;          /* "cpus" */
	unsigned next;             /* the next CPU handed out */
	struct local_replica *reps;
};

static int parse_cpu_list(const char *s, int *out, unsigned *n)
{
	*n = 0;
	while (*s) {
		char *end;
		long a = strtol(s, &end, 10), b = a;

		if (end == s || a < 0 || a >= CPU_SETSIZE)
			return -EINVAL;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < a || b >= CPU_SETSIZE)
				return -EINVAL;
			s = end;
		}
		for (long c = a; c <= b && *n < CPU_SETSIZE; c++)
			out[(*n)++] = (int)c;
		if (*s == ',')
			s++;
		else if (*s)
			return -EINVAL;
	}
	return *n ? 0 : -EINVAL;
}

static int local_open(const json_t *cfg, const char *state_dir, struct mining_provider **ret,
		      char err[MINING_ERR_MAX])
{
	struct mining_provider *p = calloc(1, sizeof(*p));
	json_t *v;
	cpu_set_t set;

	(void)state_dir;
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	v = cfg ? json_object_get(cfg, "cpu-list") : NULL;
	if (v) {
		if (!json_is_string(v) || parse_cpu_list(json_string_value(v), p->cpu_list,
							   &p->n_cpus) < 0) {
			snprintf(err, MINING_ERR_MAX, "cpu-list: not a list of CPUs like \"0-3,6\"");
			goto bad;
		}
	} else if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				p->cpu_list[p->n_cpus++] = c;
	}
	if (!p->n_cpus)
		p->cpu_list[p->n_cpus++] = 0;
	p->offered = p->n_cpus;
	v = cfg ? json_object_get(cfg, "cpus") : NULL;
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 4096) {
			snprintf(err, MINING_ERR_MAX, "cpus: not a whole number from 1 to 4096");
			goto bad;
		}
		p->offered = (unsigned)json_integer_value(v);
	}
	*ret = p;
	return 0;
bad:
	pthread_mutex_destroy(&p->lock);
	free(p);
	return -EINVAL;
}

static void local_close(struct mining_provider *p)
{
	struct local_replica *r;

	if (!p)
		return;
	while ((r = p->reps)) {
		p->reps = r->next;
		if (!r->ended && r->pid > 0) {
			kill(r->pid, SIGKILL);
			waitpid(r->pid, NULL, 0);
		}
		free(r);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static int local_alive(struct mining_provider *p, char err[MINING_ERR_MAX])
{
	(void)p;
	(void)err;
	return 0;
}

/* Fields 14-17 (CPU ticks) and 22 (start time) of /proc/<pid>/stat. */
static int proc_stat(pid_t pid, double *ret_cpu, unsigned long long *ret_start)
{
	char path[64], buf[1024], *p;
	unsigned long long v[22] = { 0 };
	ssize_t n;
	int fd, i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the name may hold blanks and parentheses */
	if (!p)
		return -EIO;
	p += 2;
	/* p is at field 3 (state) */
	for (i = 3; i <= 22 && *p; i++) {
		char *end;

		if (i == 3) {
			p += 2;
			continue;
		}
		v[i - 1] = strtoull(p, &end, 10);
		p = end + (*end == ' ');
	}
	if (ret_cpu)
		*ret_cpu = (double)(v[13] + v[14] + v[15] + v[16]) / (double)sysconf(_SC_CLK_TCK);
	if (ret_start)
		*ret_start = v[21];
	return 0;
}

static void pin(struct mining_provider *p, pid_t pid, unsigned cpus)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	if (!cpus)
		cpus = 1;
	for (unsigned i = 0; i < cpus && i < p->n_cpus; i++)
		CPU_SET(p->cpu_list[(p->next + i) % p->n_cpus], &set);
	p->next = (p->next + cpus) % p->n_cpus;
	sched_setaffinity(pid, sizeof(set), &set);
}

static int local_launch(struct mining_provider *p, const struct mining_launch *l,
			char id[MINING_ID_MAX], char err[MINING_ERR_MAX])
{
	struct local_replica *rep = calloc(1, sizeof(*rep));
	int in[2] = { -1, -1 }, log_fd = -1, null_fd = -1, r;
	unsigned long long start = 0;
	pid_t pid;

	if (!rep)
		return -ENOMEM;
	if (pipe2(in, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	if (l->log_path)
		log_fd = open(l->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	pthread_mutex_lock(&p->lock);
	r = plan_proc_spawn_as(l->user, l->argv, in[0], null_fd, log_fd, &pid);
	if (r == 0)
		pin(p, pid, l->cpus);
	pthread_mutex_unlock(&p->lock);
	if (r < 0) {
		snprintf(err, MINING_ERR_MAX, "starting %s: %s", l->argv[0], strerror(-r));
		goto out;
	}
	close(in[0]);
	in[0] = -1;
	if (l->secret) {
		size_t len = strlen(l->secret);
		/* a pipe holds far more than a token: this does not block */
		if (write(in[1], l->secret, len) != (ssize_t)len || write(in[1], "\n", 1) != 1)
			(void)0; /* the replica then fails to authenticate and exits */
	}
	proc_stat(pid, NULL, &start);
	rep->pid = pid;
	snprintf(rep->id, sizeof(rep->id), "%d:%llu", (int)pid, start);
	rep->st.state = MINING_REPLICA_RUNNING;
	snprintf(id, MINING_ID_MAX, "%s", rep->id);
	pthread_mutex_lock(&p->lock);
	rep->next = p->reps;
	p->reps = rep;
	pthread_mutex_unlock(&p->lock);
	rep = NULL;
out:
	if (in[0] >= 0)
		close(in[0]);
	if (in[1] >= 0)
		close(in[1]);
	if (log_fd >= 0)
		close(log_fd);
	if (null_fd >= 0)
		close(null_fd);
	free(rep);
	return r;
}

static struct local_replica *find(struct mining_provider *p, const char *id)
{
	for (struct local_replica *r = p->reps; r; r = r->next)
		if (!strcmp(r->id, id))
			return r;
	return NULL;
}

static void reap(struct local_replica *r)
{
	struct rusage ru;
	int status;
	double cpu;

	if (r->ended)
		return;
	if (proc_stat(r->pid, &cpu, NULL) == 0)
		r->st.device_seconds = cpu;
	if (wait4(r->pid, &status, WNOHANG, &ru) != r->pid)
		return;
	r->ended = 1;
	r->st.device_seconds = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
			       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	if (WIFSIGNALED(status)) {
		r->st.state = MINING_REPLICA_KILLED;
		r->st.signal = WTERMSIG(status);
	} else {
		r->st.state = MINING_REPLICA_EXITED;
		r->st.exit_code = WEXITSTATUS(status);
	}
}

static int local_poll(struct mining_provider *p, const char *id, struct mining_replica_status *st)
{
	struct local_replica *r;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	r = find(p, id);
	if (r) {
		reap(r);
		*st = r->st;
	} else {
		/* launched by an earlier daemon: watch it through /proc while its start time
		 * matches */
		int pid = 0;
		unsigned long long start = 0, now = 0;
		double cpu = 0;

		memset(st, 0, sizeof(*st));
		if (sscanf(id, "%d:%llu", &pid, &start) != 2 || pid <= 0)
			ret = -ENOENT;
		else if (proc_stat(pid, &cpu, &now) == 0 && now == start)
			st->state = MINING_REPLICA_RUNNING, st->device_seconds = cpu;
		else
			st->state = MINING_REPLICA_LOST;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static int local_cancel(struct mining_provider *p, const char *id)
{
	struct local_replica *r;
	pid_t pid = 0;

	pthread_mutex_lock(&p->lock);
	r = find(p, id);
	if (r) {
		reap(r);
		pid = r->ended ? 0 : r->pid;
	}
	pthread_mutex_unlock(&p->lock);
	if (!r) {
		int ipid = 0;
		unsigned long long start = 0, now = 0;

		if (sscanf(id, "%d:%llu", &ipid, &start) == 2 && ipid > 0 &&
		    proc_stat(ipid, NULL, &now) == 0 && now == start)
			kill(ipid, SIGKILL);
		return 0;
	}
	if (!pid)
		return 0;
	kill(pid, SIGTERM);
	for (int i = 0; i < 50; i++) {
		int done;

		usleep(20000);
		pthread_mutex_lock(&p->lock);
		reap(r);
		done = r->ended;
		pthread_mutex_unlock(&p->lock);
		if (done)
			return 0;
	}
	kill(pid, SIGKILL);
	pthread_mutex_lock(&p->lock);
	while (!r->ended) {
		pthread_mutex_unlock(&p->lock);
		usleep(10000);
		pthread_mutex_lock(&p->lock);
		reap(r);
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void local_forget(struct mining_provider *p, const char *id)
{
	pthread_mutex_lock(&p->lock);
	for (struct local_replica **pp = &p->reps; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->id, id)) {
			struct local_replica *r = *pp;

			reap(r);
			if (r->ended) {
				*pp = r->next;
				free(r);
			}
			break;
		}
	pthread_mutex_unlock(&p->lock);
}

static unsigned local_cpus(struct mining_provider *p)
{
	return p->offered;
}

const struct mining_provider_ops mining_local_ops = {
	.kind = "local",
	.open = local_open,
	.close = local_close,
	.alive = local_alive,
	.launch = local_launch,
	.poll = local_poll,
	.cancel = local_cancel,
	.forget = local_forget,
	.cpus = local_cpus,
};

/* The slurm and remote kinds live in files of their own (meson defines MINING_HAVE_<KIND> for
 * each one the build has). */
const struct mining_provider_ops *mining_provider_kind(const char *kind)
{
	if (!strcmp(kind, "local"))
		return &mining_local_ops;
#ifdef MINING_HAVE_SLURM
	if (!strcmp(kind, "slurm"))
		return &mining_slurm_ops;
#endif
	if (!strcmp(kind, "remote"))
		return &mining_remote_ops;
	return NULL;
}
