/*
 * mining_slurm: the provider whose replicas are Slurm batch jobs.
 *
 * launch   sbatch, run as the replica's user, reading a short script from its
 *          stdin ("exec" of the argv, each word single-quoted, the secret
 *          as a here-document on its stdin); the job id it prints is the
 *          replica's id.
 * poll     squeue -t all -O JobID,State,exit_code,NumCPUs,TimeUsed; when
 *          slurmctld no longer keeps the job (MinJobAge), the provider's
 *          jobcomp/filetxt log (slurm.jobcomp-log), else the last state seen.
 * cancel   scancel: SIGTERM, then SIGKILL after the cluster's KillWait.
 * meter    device-seconds = allocated CPUs x time used, both as slurmctld
 *          accounts them (squeue's NumCPUs and TimeUsed, the jobcomp
 *          record's ProcCnt and EndTime - StartTime): what the cluster held
 *          for the job, which is what a provider bills.  Slurm without
 *          slurmdbd (22.05) has no other durable record: sacct needs
 *          slurmdbd, and sstat's sampled CPU use exists only while a step
 *          runs.
 *
 * The replica runs as its user and may change its own job (scontrol update
 * lets an owner rename it, and a name may hold " ExitCode=0:0 RunTime=99:00"):
 * so nothing is read from a listing that holds a field its owner sets.
 * squeue's fields above are all slurmctld's own; a jobcomp line is read only
 * when it names the job with the name given at launch.
 *
 * State: one file per replica in state_dir, slurm-<job id>, a JSON
 * object (the job's name, and once it has ended its final state), written
 * to a temporary file and renamed; a final state is fsync'd.  A daemon
 * restarted after kill -9 thus polls, meters and cancels the jobs it
 * launched before; forget() removes the file.
 *
 * Every command runs under a timeout (slurm.timeout-seconds): one that does not
 * end in time, or says it cannot reach slurmctld, is -EHOSTDOWN.  Commands
 * get a clean environment (plan_proc_run_as) with SLURM_CONF set to
 * slurm.conf when given, through env(1), and stderr joined to stdout by
 * sh(1) so that Slurm's own words reach *err.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fsync.h"
#include "mining_provider.h"
#include "plan_util.h"

#define SLURM_OUT_MAX (1u << 20)
#define SLURM_JOBID_MAX 20
#define SLURM_NAME_MAX 64
#define SLURM_EOF "LLMFS_REPLICA_SECRET_END"

struct mining_provider {
	char *state_dir;
	char *conf;        /* SLURM_CONF for the commands; NULL: Slurm's default */
	char *bin_dir;     /* where sbatch, squeue, scancel, sinfo and scontrol are */
	char *partition;   /* NULL: the cluster's default partition */
	char *account;     /* Slurm's account (--account), not llmfs's */
	char *qos;
	char *time_limit;  /* sbatch --time */
	char *jobcomp_log; /* JobCompLoc of jobcomp/filetxt, readable by the daemon */
	double timeout_s;
	unsigned cpus;     /* 0: ask sinfo */
};

/* What a replica's state file holds. */
struct slurm_rec {
	char name[SLURM_NAME_MAX + 1];
	int final;
	struct mining_replica_status st;
};

static void seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void seterr(char *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err, MINING_ERR_MAX, fmt, ap);
	va_end(ap);
}

/* ---- provider.json ---- */

static int name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SLURM_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s))
			return 0;
	return 1;
}

static int path_ok(const char *s)
{
	return s[0] == '/' && strlen(s) < PATH_MAX && !strpbrk(s, "\n\r");
}

static int time_ok(const char *s)
{
	if (!strcmp(s, "UNLIMITED") || !strcmp(s, "infinite"))
		return 1;
	if (!*s || strlen(s) > 32)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s) && *s != ':' && *s != '-')
			return 0;
	return 1;
}

/* One string key of the "slurm" object, checked by ok. */
static int cfg_str(const json_t *slurm, const char *key, int (*ok)(const char *),
		   const char *what, char **ret, char *err)
{
	const json_t *v = json_object_get(slurm, key);

	if (!v)
		return 0;
	if (!json_is_string(v) || !ok(json_string_value(v))) {
		seterr(err, "provider.json: slurm.%s must be %s", key, what);
		return -EINVAL;
	}
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

static int cfg_keys(const json_t *slurm, char *err)
{
	static const char *const known[] = { "partition", "account", "qos", "conf",
		"bin-dir", "jobcomp-log", "time-limit", "timeout-seconds", NULL };
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)slurm, key, v) {
		int i;

		for (i = 0; known[i] && strcmp(known[i], key); i++)
			;
		if (!known[i]) {
			seterr(err, "provider.json: slurm.%s is not a key of the slurm provider",
			       key);
			return -EINVAL;
		}
	}
	return 0;
}

static int cfg_top(struct mining_provider *p, const json_t *cfg, char *err)
{
	const json_t *kind = json_object_get(cfg, "kind");
	const json_t *cpus = json_object_get(cfg, "cpus");

	if (kind && (!json_is_string(kind) || strcmp(json_string_value(kind), "slurm"))) {
		seterr(err, "provider.json: kind must be \"slurm\" for the slurm provider");
		return -EINVAL;
	}
	if (cpus) {
		if (!json_is_integer(cpus) || json_integer_value(cpus) < 1 ||
		    json_integer_value(cpus) > 1 << 20) {
			seterr(err, "provider.json: cpus must be an integer from 1 to 1048576");
			return -EINVAL;
		}
		p->cpus = (unsigned)json_integer_value(cpus);
	}
	return 0;
}

static int cfg_slurm(struct mining_provider *p, const json_t *slurm, char *err)
{
	const json_t *t;
	int r;

	if (!json_is_object(slurm)) {
		seterr(err, "provider.json: slurm must be an object");
		return -EINVAL;
	}
	r = cfg_keys(slurm, err);
	if (r == 0)
		r = cfg_str(slurm, "partition", name_ok, "a Slurm name ([A-Za-z0-9._-], 1-64)",
			    &p->partition, err);
	if (r == 0)
		r = cfg_str(slurm, "account", name_ok, "a Slurm name ([A-Za-z0-9._-], 1-64)",
			    &p->account, err);
	if (r == 0)
		r = cfg_str(slurm, "qos", name_ok, "a Slurm name ([A-Za-z0-9._-], 1-64)",
			    &p->qos, err);
	if (r == 0)
		r = cfg_str(slurm, "conf", path_ok, "an absolute path", &p->conf, err);
	if (r == 0)
		r = cfg_str(slurm, "bin-dir", path_ok, "an absolute path", &p->bin_dir, err);
	if (r == 0)
		r = cfg_str(slurm, "jobcomp-log", path_ok, "an absolute path",
			    &p->jobcomp_log, err);
	if (r == 0)
		r = cfg_str(slurm, "time-limit", time_ok,
			    "a Slurm time ([D-]HH:MM:SS, minutes, or UNLIMITED)", &p->time_limit,
			    err);
	if (r < 0)
		return r;
	t = json_object_get(slurm, "timeout-seconds");
	if (t) {
		if (!json_is_number(t) || json_number_value(t) < 0.1 ||
		    json_number_value(t) > 600) {
			seterr(err, "provider.json: slurm.timeout-seconds must be a number of seconds from 0.1 to 600");
			return -EINVAL;
		}
		p->timeout_s = json_number_value(t);
	}
	return 0;
}

static void slurm_close(struct mining_provider *p)
{
	if (!p)
		return;
	free(p->state_dir);
	free(p->conf);
	free(p->bin_dir);
	free(p->partition);
	free(p->account);
	free(p->qos);
	free(p->time_limit);
	free(p->jobcomp_log);
	free(p);
}

static int slurm_open(const json_t *cfg, const char *state_dir, struct mining_provider **ret,
		      char err[MINING_ERR_MAX])
{
	struct mining_provider *p;
	const json_t *slurm;
	int r;

	if (!json_is_object(cfg)) {
		seterr(err, "provider.json: not a JSON object");
		return -EINVAL;
	}
	if (!state_dir || state_dir[0] != '/')
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->timeout_s = 10;
	r = cfg_top(p, cfg, err);
	slurm = json_object_get(cfg, "slurm");
	if (r == 0 && slurm)
		r = cfg_slurm(p, slurm, err);
	if (r < 0)
		goto fail;
	r = -ENOMEM;
	p->state_dir = strdup(state_dir);
	if (!p->bin_dir)
		p->bin_dir = strdup("/usr/bin");
	if (!p->state_dir || !p->bin_dir)
		goto fail;
	if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		seterr(err, "%s: %s", state_dir, strerror(errno));
		goto fail;
	}
	*ret = p;
	return 0;
fail:
	slurm_close(p);
	return r;
}

/* ---- running Slurm's commands ---- */

/* Is this what a client says when it cannot reach or talk to slurmctld? */
static int says_down(const char *out)
{
	static const char *const down[] = { "Unable to contact slurm controller",
		"Socket timed out", "Zero Bytes were transmitted", "authentication error",
		"Munge encode failed", "Connection refused", "Communication connection failure",
		NULL };

	for (int i = 0; down[i]; i++)
		if (strstr(out, down[i]))
			return 1;
	return 0;
}

/* The last non-empty line of out, for *err. */
static void last_line(const char *out, char *line, size_t n)
{
	const char *end = out + strlen(out), *start;

	while (end > out && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	start = end;
	while (start > out && start[-1] != '\n')
		start--;
	snprintf(line, n, "%.*s", (int)(end - start), start);
}

/*
 * Runs bin_dir/tool with args as *as (NULL: the daemon itself, in the same
 * clean environment).  0 with its output (stdout and stderr) in *ret_out
 * when it exited 0; -EHOSTDOWN (with *err) when it timed out or could not
 * reach slurmctld; -EIO with its last line in *err when it failed
 * otherwise, the output then in *ret_out too when ret_out is set.
 */
static int slurm_run(struct mining_provider *p, const struct plan_proc_user *as,
		     const char *tool, const char *const *args, const char *input,
		     char **ret_out, char *err)
{
	const char *argv[40];
	struct plan_proc_user self = { geteuid(), getegid() };
	char *conf_env = NULL, *path = NULL, *out = NULL, line[160];
	int n = 0, status = 0, r;

	if (asprintf(&path, "%s/%s", p->bin_dir, tool) < 0)
		return -ENOMEM;
	if (p->conf && asprintf(&conf_env, "SLURM_CONF=%s", p->conf) < 0) {
		free(path);
		return -ENOMEM;
	}
	argv[n++] = "/bin/sh";
	argv[n++] = "-c";
	argv[n++] = "exec \"$@\" 2>&1";
	argv[n++] = "sh";
	argv[n++] = "/usr/bin/env";
	if (conf_env)
		argv[n++] = conf_env;
	argv[n++] = path;
	for (int i = 0; args[i]; i++) {
		if (n >= (int)(sizeof(argv) / sizeof(argv[0])) - 1) {
			free(conf_env);
			free(path);
			return -E2BIG;
		}
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	r = plan_proc_run_as(as ? as : &self, (char *const *)argv, input,
			     input ? strlen(input) : 0, p->timeout_s, SLURM_OUT_MAX, NULL, &out,
			     NULL, &status);
	if (r == -ETIMEDOUT) {
		seterr(err, "%s: no answer from Slurm within %g s", tool, p->timeout_s);
		r = -EHOSTDOWN;
	} else if (r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		seterr(err, "%s: cannot run it (not installed?)", path);
		r = -EHOSTDOWN;
	} else if (r == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		last_line(out, line, sizeof(line));
		seterr(err, "%s: %s", tool, *line ? line : "failed");
		r = says_down(out) ? -EHOSTDOWN : -EIO;
	} else if (r < 0) {
		seterr(err, "%s: %s", tool, strerror(-r));
	}
	if ((r == 0 || r == -EIO) && ret_out) {
		*ret_out = out;
		out = NULL;
	}
	free(out);
	free(conf_env);
	free(path);
	return r;
}

/* ---- the state files ---- */

static int id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > SLURM_JOBID_MAX)
		return 0;
	for (; *id; id++)
		if (!isdigit((unsigned char)*id))
			return 0;
	return 1;
}

static char *rec_path(struct mining_provider *p, const char *id, const char *suffix)
{
	char *s = NULL;

	return asprintf(&s, "%s/slurm-%s%s", p->state_dir, id, suffix) < 0 ? NULL : s;
}


static int rec_write(struct mining_provider *p, const char *id, const struct slurm_rec *rec)
{
	json_t *o;
	char *path = rec_path(p, id, ""), *tmp = rec_path(p, id, ".tmp");
	int fd = -1, r = -ENOMEM;

	o = json_pack("{s:s, s:b, s:i, s:i, s:i, s:f}", "name", rec->name, "final", rec->final,
		      "state", (int)rec->st.state, "exit_code", rec->st.exit_code, "signal",
		      rec->st.signal, "device_seconds", rec->st.device_seconds);
	if (!o || !path || !tmp)
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = json_dumpfd(o, fd, JSON_COMPACT) < 0 ? -EIO : 0;
	/* A final state is the one record that must outlive a crash. */
	if (r == 0 && rec->final && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r == 0 && rec->final)
		r = fsync_path(p->state_dir);
	if (r < 0)
		unlink(tmp);
out:
	json_decref(o);
	free(tmp);
	free(path);
	return r;
}

static int rec_read(struct mining_provider *p, const char *id, struct slurm_rec *rec)
{
	char *path = rec_path(p, id, "");
	json_error_t je;
	json_t *o;
	FILE *f;
	const char *name = NULL;
	int fin = 0, state = 0, code = 0, sig = 0;
	double ds = 0;

	if (!path)
		return -ENOMEM;
	f = fopen(path, "re");
	free(path);
	if (!f)
		return -errno;
	o = json_loadf(f, 0, &je);
	fclose(f);
	if (!o)
		return -EIO;
	if (json_unpack(o, "{s:s, s:b, s:i, s:i, s:i, s:F}", "name", &name, "final", &fin,
			"state", &state, "exit_code", &code, "signal", &sig, "device_seconds",
			&ds) < 0 ||
	    strlen(name) > SLURM_NAME_MAX) {
		json_decref(o);
		return -EIO;
	}
	memset(rec, 0, sizeof(*rec));
	strcpy(rec->name, name);
	rec->final = fin;
	rec->st.state = (enum mining_replica_state)state;
	rec->st.exit_code = code;
	rec->st.signal = sig;
	rec->st.device_seconds = ds;
	json_decref(o);
	return 0;
}

/* ---- launch ---- */

/* s single-quoted for sh: 'it'\''s'. */
static int sh_quote(struct plan_buf *b, const char *s)
{
	int r = plan_buf_puts(b, "'");

	for (; r == 0 && *s; s++)
		r = *s == '\'' ? plan_buf_puts(b, "'\\''") : plan_buf_append(b, s, 1);
	return r ? r : plan_buf_puts(b, "'");
}

/*
 * "exec" of argv, with the secret as a here-document on its stdin: the script
 * is readable by the job's owner and root only (slurmctld's state, slurmd's
 * spool, scontrol write batch_script), never by other users as a command
 * line or environment would be.
 */
static int make_script(char *const *argv, const char *secret, char **ret)
{
	struct plan_buf b;
	int r;

	plan_buf_init(&b);
	r = plan_buf_puts(&b, "#!/bin/sh\n# an llmfs mining replica\nexec");
	for (int i = 0; r == 0 && argv[i]; i++) {
		r = plan_buf_puts(&b, " ");
		if (r == 0)
			r = sh_quote(&b, argv[i]);
	}
	if (r == 0 && secret)
		r = plan_buf_printf(&b, " <<'%s'\n%s\n%s", SLURM_EOF, secret, SLURM_EOF);
	if (r == 0)
		r = plan_buf_puts(&b, "\n");
	if (r < 0) {
		plan_buf_release(&b);
		return r;
	}
	*ret = plan_buf_steal(&b);
	return *ret ? 0 : -ENOMEM;
}

/*
 * Can the replica's user append to the log?  slurmd opens it as that user,
 * and a job whose --error it cannot open fails before it starts: a log in a
 * folder of the daemon's own is then left out rather than the replica lost.
 */
static int user_can_write(const struct plan_proc_user *as, const char *path)
{
	char *const argv[] = { "/bin/sh", "-c",
		"test -w \"$1\" || { test ! -e \"$1\" && test -w \"${1%/*}/\"; }", "sh",
		(char *)path, NULL };
	struct plan_proc_user self = { geteuid(), getegid() };
	char *out = NULL;
	int status = -1, r;

	r = plan_proc_run_as(as ? as : &self, argv, NULL, 0, 5, 4096, NULL, &out, NULL,
			     &status);
	free(out);
	return r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The job's name: the caller's, with what Slurm's listings could misread made '_'. */
static void job_name(const char *want, char name[SLURM_NAME_MAX + 1])
{
	size_t i;

	if (!want || !*want)
		want = "llmfs-replica";
	for (i = 0; want[i] && i < SLURM_NAME_MAX; i++)
		name[i] = isalnum((unsigned char)want[i]) || strchr("._-", want[i]) ?
				  want[i] : '_';
	name[i] = '\0';
}

/* sbatch --parsable prints "id" or "id;cluster" on a line of its own. */
static int parse_jobid(const char *out, char id[MINING_ID_MAX])
{
	const char *l = out;

	while (*l) {
		size_t n = strspn(l, "0123456789");

		if (n > 0 && n <= SLURM_JOBID_MAX && (l[n] == '\n' || l[n] == ';' || !l[n])) {
			memcpy(id, l, n);
			id[n] = '\0';
			return 0;
		}
		l = strchr(l, '\n');
		if (!l)
			break;
		l++;
	}
	return -EIO;
}

static int slurm_launch(struct mining_provider *p, const struct mining_launch *l,
			char id[MINING_ID_MAX], char err[MINING_ERR_MAX])
{
	char *script = NULL, *out = NULL, *opt[8] = { NULL };
	const char *args[16];
	struct slurm_rec rec = { .st.state = MINING_REPLICA_PENDING };
	int n = 0, k = 0, r;

	if (!l || !l->argv || !l->argv[0] || l->argv[0][0] != '/') {
		seterr(err, "launch: argv[0] must be an absolute path");
		return -EINVAL;
	}
	/* sbatch reads '%' and a backslash in a file name as patterns. */
	if (l->log_path && (l->log_path[0] != '/' || strpbrk(l->log_path, "%\\\n"))) {
		seterr(err, "launch: the log must be an absolute path without %%, \\ or newline");
		return -EINVAL;
	}
	if (l->secret && (strchr(l->secret, '\n') || strstr(l->secret, SLURM_EOF))) {
		seterr(err, "launch: the secret must be one line");
		return -EINVAL;
	}
	job_name(l->name, rec.name);
	r = make_script(l->argv, l->secret, &script);
	if (r < 0)
		return r;
	r = -ENOMEM;
	if (asprintf(&opt[k++], "--job-name=%s", rec.name) < 0 ||
	    asprintf(&opt[k++], "--cpus-per-task=%u", l->cpus ? l->cpus : 1) < 0 ||
	    asprintf(&opt[k++], "--error=%s",
		     l->log_path && user_can_write(l->user, l->log_path) ? l->log_path :
									      "/dev/null") < 0)
		goto out;
	args[n++] = "--parsable";
	args[n++] = "--ntasks=1";
	args[n++] = "--nodes=1";
	/* The id names one run: a requeued job would be a second replica under it. */
	args[n++] = "--no-requeue";
	args[n++] = "--chdir=/";
	args[n++] = "--output=/dev/null";
	args[n++] = "--open-mode=append";
	for (int i = 0; i < k; i++)
		args[n++] = opt[i];
	if (p->partition && asprintf(&opt[k++], "--partition=%s", p->partition) >= 0)
		args[n++] = opt[k - 1];
	if (p->account && asprintf(&opt[k++], "--account=%s", p->account) >= 0)
		args[n++] = opt[k - 1];
	if (p->qos && asprintf(&opt[k++], "--qos=%s", p->qos) >= 0)
		args[n++] = opt[k - 1];
	if (p->time_limit && asprintf(&opt[k++], "--time=%s", p->time_limit) >= 0)
		args[n++] = opt[k - 1];
	args[n] = NULL;
	r = slurm_run(p, l->user, "sbatch", args, script, &out, err);
	if (r < 0)
		goto out;
	r = parse_jobid(out, id);
	if (r < 0) {
		seterr(err, "sbatch: no job id in its answer");
		goto out;
	}
	r = rec_write(p, id, &rec);
	if (r < 0) {
		/* A job we could not record would run unmetered: take it back. */
		const char *cargs[] = { id, NULL };

		seterr(err, "%s: cannot record job %s: %s", p->state_dir, id, strerror(-r));
		slurm_run(p, NULL, "scancel", cargs, NULL, NULL, NULL);
	}
out:
	for (int i = 0; i < k; i++)
		free(opt[i]);
	free(out);
	free(script);
	return r;
}

/* ---- poll ---- */

/* [D-][HH:]MM:SS, as squeue prints TimeUsed; -1 when it is not that. */
static long parse_duration(const char *s)
{
	long d = 0, f[3] = { 0 }, n = 0;
	char *end;

	if (strchr(s, '-')) {
		d = strtol(s, &end, 10);
		if (*end != '-')
			return -1;
		s = end + 1;
	}
	while (n < 3) {
		if (!isdigit((unsigned char)*s))
			return -1;
		f[n++] = strtol(s, &end, 10);
		if (*end != ':')
			break;
		s = end + 1;
	}
	if (*end && *end != '\n' && *end != '|')
		return -1;
	if (n == 1)
		return -1;
	if (n == 2)
		return d * 86400 + f[0] * 60 + f[1];
	return d * 86400 + f[0] * 3600 + f[1] * 60 + f[2];
}

/* From a Slurm job state and wait status to the provider's. */
static void map_state(const char *state, long wstatus, struct mining_replica_status *st)
{
	static const char *const pending[] = { "PENDING", "CONFIGURING", "REQUEUED",
		"REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT", NULL };
	static const char *const running[] = { "RUNNING", "COMPLETING", "SUSPENDED",
		"STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING", NULL };

	st->exit_code = 0;
	st->signal = 0;
	for (int i = 0; pending[i]; i++)
		if (!strcmp(state, pending[i])) {
			st->state = MINING_REPLICA_PENDING;
			return;
		}
	for (int i = 0; running[i]; i++)
		if (!strcmp(state, running[i])) {
			st->state = MINING_REPLICA_RUNNING;
			return;
		}
	if (!strcmp(state, "COMPLETED") || !strcmp(state, "FAILED")) {
		if (WIFSIGNALED(wstatus)) {
			st->state = MINING_REPLICA_KILLED;
			st->signal = WTERMSIG(wstatus);
		} else {
			st->state = MINING_REPLICA_EXITED;
			st->exit_code = WEXITSTATUS(wstatus);
		}
		return;
	}
	/* CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY, DEADLINE, BOOT_FAIL. */
	st->state = MINING_REPLICA_KILLED;
	st->signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) :
		     !strcmp(state, "CANCELLED") ? SIGTERM : SIGKILL;
}

static int is_final(enum mining_replica_state s)
{
	return s == MINING_REPLICA_EXITED || s == MINING_REPLICA_KILLED;
}

/*
 * squeue's line "ID|STATE|WSTATUS|CPUS|USED|": fields slurmctld sets, none
 * the job's owner can.  1 when read, 0 when squeue does not know the job.
 */
static int poll_squeue(struct mining_provider *p, const char *id,
		       struct mining_replica_status *st)
{
	const char *args[] = { "-h", "-t", "all", "-j", id, "-O",
		"JobID:|,State:|,exit_code:|,NumCPUs:|,TimeUsed:|", NULL };
	char *out = NULL, *f[5], *save = NULL, *line;
	long cpus, used, ws;
	int r, n = 0;

	r = slurm_run(p, NULL, "squeue", args, NULL, &out, NULL);
	if (r == -EIO) {
		r = strstr(out, "Invalid job id") ? 0 : -EIO;
		goto out;
	}
	if (r < 0)
		goto out;
	r = 0;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *s2 = NULL, *t;

		n = 0;
		for (t = strtok_r(line, "|", &s2); t && n < 5; t = strtok_r(NULL, "|", &s2))
			f[n++] = t;
		if (n == 5 && !strcmp(f[0], id))
			break;
		n = 0;
	}
	if (n != 5)
		goto out;
	cpus = strtol(f[3], NULL, 10);
	used = parse_duration(f[4]);
	ws = strtol(f[2], NULL, 10);
	r = -EIO;
	if (cpus < 0 || used < 0)
		goto out;
	map_state(f[1], ws, st);
	st->device_seconds = (double)cpus * (double)used;
	r = 1;
out:
	free(out);
	return r;
}

static time_t parse_time(const char *s)
{
	struct tm tm = { 0 };
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);

	if (!end || (*end && *end != ' '))
		return (time_t)-1;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

/* The value of " key=" in a line, up to the next space; NULL when absent. */
static const char *field(const char *line, const char *key, char *val, size_t n)
{
	char pat[40];
	const char *v;
	size_t len;

	snprintf(pat, sizeof(pat), " %s=", key);
	v = strstr(line, pat);
	if (!v)
		return NULL;
	v += strlen(pat);
	len = strcspn(v, " \n");
	if (len >= n)
		return NULL;
	memcpy(val, v, len);
	val[len] = '\0';
	return val;
}

/* How many times " key=" occurs in line. */
static int count_key(const char *line, const char *key)
{
	char pat[40];
	int n = 0;

	snprintf(pat, sizeof(pat), " %s=", key);
	for (const char *s = strstr(line, pat); s; s = strstr(s + 1, pat))
		n++;
	return n;
}

/*
 * One jobcomp/filetxt line about our job, in st.  Its owner may have renamed
 * the job to a name that holds fields of its own making: every key read must
 * occur once only (Slurm writes each once), and the name be the one given.
 */
static int jobcomp_line(const char *line, const struct slurm_rec *rec,
			struct mining_replica_status *st)
{
	static const char *const keys[] = { "Name", "JobState", "StartTime", "EndTime",
		"ProcCnt", "ExitCode", NULL };
	char name[SLURM_NAME_MAX + 24], state[32], start[32], end[32], procs[16], code[24];
	long e = 0, sig = 0;
	time_t t0, t1;

	for (int i = 0; keys[i]; i++)
		if (count_key(line, keys[i]) != 1)
			return -EIO;
	snprintf(name, sizeof(name), " Name=%s JobState=", rec->name);
	if (!strstr(line, name) ||
	    !field(line, "JobState", state, sizeof(state)) ||
	    !field(line, "StartTime", start, sizeof(start)) ||
	    !field(line, "EndTime", end, sizeof(end)) ||
	    !field(line, "ProcCnt", procs, sizeof(procs)) ||
	    !field(line, "ExitCode", code, sizeof(code)) ||
	    sscanf(code, "%ld:%ld", &e, &sig) != 2)
		return -EIO;
	t0 = parse_time(start);
	t1 = parse_time(end);
	map_state(state, sig ? sig : (e & 0xff) << 8, st);
	st->device_seconds = t0 != (time_t)-1 && t1 >= t0 ?
				     strtod(procs, NULL) * (double)(t1 - t0) : 0;
	return 0;
}

/* The job's record in the jobcomp log: 1 when found, 0 when not. */
static int poll_jobcomp(struct mining_provider *p, const char *id, const struct slurm_rec *rec,
			struct mining_replica_status *st)
{
	char *line = NULL, prefix[SLURM_JOBID_MAX + 16];
	size_t cap = 0;
	FILE *f;
	int found = 0;

	if (!p->jobcomp_log)
		return 0;
	f = fopen(p->jobcomp_log, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	snprintf(prefix, sizeof(prefix), "JobId=%s ", id);
	/* The last record of the id: Slurm reuses ids after a state wipe. */
	while (getline(&line, &cap, f) > 0)
		if (!strncmp(line, prefix, strlen(prefix)) && jobcomp_line(line, rec, st) == 0)
			found = 1;
	free(line);
	fclose(f);
	return found;
}

static int slurm_poll(struct mining_provider *p, const char *id, struct mining_replica_status *st)
{
	struct slurm_rec rec;
	struct mining_replica_status now = { 0 };
	int r;

	if (!id_ok(id))
		return -ENOENT;
	r = rec_read(p, id, &rec);
	if (r < 0)
		return r;
	if (rec.final) {
		*st = rec.st;
		return 0;
	}
	r = poll_squeue(p, id, &now);
	if (r == 0)
		r = poll_jobcomp(p, id, &rec, &now);
	if (r < 0)
		return r;
	if (r == 0) {
		/* Slurm forgot it before we saw it end: what we metered last stands. */
		now = rec.st;
		now.state = MINING_REPLICA_LOST;
	}
	if (now.device_seconds < rec.st.device_seconds)
		now.device_seconds = rec.st.device_seconds;
	rec.final = is_final(now.state) || now.state == MINING_REPLICA_LOST;
	if (rec.final || now.state != rec.st.state ||
	    now.device_seconds != rec.st.device_seconds) {
		rec.st = now;
		r = rec_write(p, id, &rec);
		if (r < 0)
			return r;
	}
	*st = now;
	return 0;
}

/* ---- cancel, forget, alive, cpus ---- */

static int slurm_cancel(struct mining_provider *p, const char *id)
{
	struct slurm_rec rec;
	const char *args[] = { id, NULL };
	char *out = NULL;
	int r;

	if (!id_ok(id))
		return -ENOENT;
	r = rec_read(p, id, &rec);
	if (r < 0)
		return r;
	if (rec.final)
		return 0;
	r = slurm_run(p, NULL, "scancel", args, NULL, &out, NULL);
	/* A job that has ended, or that slurmctld has forgotten, is gone. */
	if (r == -EIO && (strstr(out, "Invalid job id") || strstr(out, "already completing")))
		r = 0;
	free(out);
	return r;
}

static void slurm_forget(struct mining_provider *p, const char *id)
{
	char *path;

	if (!id_ok(id))
		return;
	path = rec_path(p, id, "");
	if (path)
		unlink(path);
	free(path);
}

static int slurm_alive(struct mining_provider *p, char err[MINING_ERR_MAX])
{
	const char *ping[] = { "ping", NULL };
	char *out = NULL, state[32], line[160];
	int r;

	r = slurm_run(p, NULL, "scontrol", ping, NULL, &out, err);
	if (r == -EIO) {
		/* scontrol ping exits 1, its first line saying DOWN, when slurmctld
		 * does not answer. */
		snprintf(line, sizeof(line), "%.*s", (int)strcspn(out, "\n"), out);
		seterr(err, "slurmctld does not answer: %s", line);
		r = -EHOSTDOWN;
	}
	free(out);
	out = NULL;
	if (r < 0 || !p->partition)
		return r;
	{
		const char *part[] = { "-o", "show", "partition", p->partition, NULL };

		r = slurm_run(p, NULL, "scontrol", part, NULL, &out, err);
	}
	if (r == -EIO) {
		seterr(err, "partition %s: not found", p->partition);
		r = -EHOSTDOWN;
	} else if (r == 0 && (!field(out, "State", state, sizeof(state)) ||
			      strcmp(state, "UP"))) {
		seterr(err, "partition %s is %s", p->partition,
		       field(out, "State", state, sizeof(state)) ? state : "not UP");
		r = -EHOSTDOWN;
	}
	free(out);
	return r;
}

/* sinfo's "A/I/O/T" CPU counts of the partition (the default one: marked '*'). */
static unsigned sinfo_cpus(struct mining_provider *p)
{
	char popt[SLURM_NAME_MAX + 16], *out = NULL, *save = NULL, *line;
	const char *args[6] = { "-h", "-o", "%P %C", NULL };
	unsigned a, i, o, t, got = 0;

	if (p->partition) {
		snprintf(popt, sizeof(popt), "--partition=%s", p->partition);
		args[3] = popt;
		args[4] = NULL;
	}
	if (slurm_run(p, NULL, "sinfo", args, NULL, &out, NULL) < 0)
		goto out;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char part[SLURM_NAME_MAX + 2];

		if (sscanf(line, "%65s %u/%u/%u/%u", part, &a, &i, &o, &t) != 5)
			continue;
		if (p->partition || part[strlen(part) - 1] == '*') {
			got = t;
			break;
		}
	}
out:
	free(out);
	return got;
}

static unsigned slurm_cpus(struct mining_provider *p)
{
	if (!p->cpus)
		p->cpus = sinfo_cpus(p);
	return p->cpus;
}

const struct mining_provider_ops mining_slurm_ops = {
	.kind = "slurm",
	.open = slurm_open,
	.close = slurm_close,
	.alive = slurm_alive,
	.launch = slurm_launch,
	.poll = slurm_poll,
	.cancel = slurm_cancel,
	.forget = slurm_forget,
	.cpus = slurm_cpus,
};
