/*
 * test_mining_slurm: the slurm provider of mining jobs against the real
 * single-node Slurm that run-slurm.sh starts (SLURM_CONF, SLURM_JOBCOMP,
 * SLURM_PARTITION, SLURM_TMP, SLURM_CTL in the environment).
 *
 * Replicas are small shell programs run as nobody: one burns a CPU for 2 s
 * and must be metered at least 2 device-seconds per CPU it held; one exits
 * 3; one sleeps until cancelled; one renames its own Slurm job to a name
 * that spells a forged exit code and run time, and must be metered as Slurm
 * saw it.  Then the controller is paused (no answer), stopped, restarted
 * with its state wiped (the jobcomp log meters what it forgot), and bad
 * provider files are refused, each naming the key.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "scheduler/mining_provider.h"
#include "tests/check.h"

#define RUN_CTX(test)                                                        \
	do {                                                                 \
		int before_ = check_failures;                                \
		test(&c);                                                    \
		fprintf(stderr, "%s %s\n",                                   \
			check_failures == before_ ? "ok  " : "FAIL", #test); \
	} while (0)

struct ctx {
	const char *tmp;
	const char *ctl;
	char state_dir[512];
	char log_dir[512];
	struct plan_proc_user user;
	const struct plan_proc_user *as; /* nobody when root, else the test itself */
};

static json_t *good_cfg(double timeout_s, int with_cpus)
{
	json_t *c = json_pack("{s:s, s:{s:s, s:s, s:s, s:f}}", "kind", "slurm", "slurm", "conf",
			      getenv("SLURM_CONF"), "partition", getenv("SLURM_PARTITION"),
			      "jobcomp-log", getenv("SLURM_JOBCOMP"), "timeout-seconds", timeout_s);

	if (c && with_cpus)
		json_object_set_new(c, "cpus", json_integer(with_cpus));
	return c;
}

static struct mining_provider *open_good(struct ctx *c, double timeout_s)
{
	struct mining_provider *p = NULL;
	char err[MINING_ERR_MAX] = "";
	json_t *cfg = good_cfg(timeout_s, 0);
	int r;

	REQUIRE(cfg);
	r = mining_slurm_ops.open(cfg, c->state_dir, &p, err);
	CHECK_MSG(r == 0, "open: %d %s", r, err);
	json_decref(cfg);
	REQUIRE(p);
	return p;
}

/* slurm.sh WHAT DIR [ARG]: stops, starts, pauses or resumes slurmctld. */
static void ctl(struct ctx *c, const char *what, const char *arg)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "sh '%s' %s '%s' %s", c->ctl, what, c->tmp, arg ? arg : "");
	REQUIRE(system(cmd) == 0);
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

/* Polls until the replica has ended (or is lost), 120 s at most. */
static int wait_end(struct mining_provider *p, const char *id, struct mining_replica_status *st)
{
	for (int i = 0; i < 600; i++) {
		int r = mining_slurm_ops.poll(p, id, st);

		if (r < 0)
			return r;
		if (st->state != MINING_REPLICA_PENDING && st->state != MINING_REPLICA_RUNNING)
			return 0;
		sleep_s(0.2);
	}
	return -ETIMEDOUT;
}

static int wait_running(struct mining_provider *p, const char *id)
{
	struct mining_replica_status st;

	for (int i = 0; i < 600; i++) {
		int r = mining_slurm_ops.poll(p, id, &st);

		if (r < 0)
			return r;
		if (st.state == MINING_REPLICA_RUNNING)
			return 0;
		if (st.state != MINING_REPLICA_PENDING)
			return -ESRCH;
		sleep_s(0.2);
	}
	return -ETIMEDOUT;
}

static int launch_sh(struct ctx *c, struct mining_provider *p, const char *script, unsigned cpus,
		     const char *log, char id[MINING_ID_MAX], char err[MINING_ERR_MAX])
{
	char *const argv[] = { "/bin/sh", "-c", (char *)script, NULL };
	struct mining_launch l = { argv, c->as, cpus, log, "job1/replica-0",
				   "s3cret 'quoted' $HOME `x`" };

	return mining_slurm_ops.launch(p, &l, id, err);
}

static char *slurp(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* A 2-second CPU burn, on 1 CPU then 2: metered as what Slurm allocated. */
static void test_burn_metered(struct ctx *c)
{
	struct mining_provider *p = open_good(c, 20);
	struct mining_replica_status st;
	char id[MINING_ID_MAX], id2[MINING_ID_MAX], err[MINING_ERR_MAX] = "", log[600];
	const char *burn = "read -r tok; echo \"uid $(id -u) token '$tok'\" >&2; "
			   "timeout 2 sh -c 'while :; do :; done'; echo 'it'\\''s done' >&2";
	char *text;
	int r;

	snprintf(log, sizeof(log), "%s/burn.log", c->log_dir);
	CHECK_EQ(mining_slurm_ops.alive(p, err), 0);
	CHECK_MSG(mining_slurm_ops.cpus(p) == (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
		  "cpus from sinfo: %u", mining_slurm_ops.cpus(p));
	r = launch_sh(c, p, burn, 1, log, id, err);
	REQUIRE(r == 0 || !fprintf(stderr, "launch: %d %s\n", r, err));
	CHECK_EQ(wait_end(p, id, &st), 0);
	CHECK_EQ(st.state, MINING_REPLICA_EXITED);
	CHECK_EQ(st.exit_code, 0);
	/* Slurm counts whole seconds of the job's allocation: 2 at least, and
	 * bounded by the time the test waits. */
	CHECK_MSG(st.device_seconds >= 2 && st.device_seconds < 120, "1 CPU: %g device-s",
		  st.device_seconds);
	text = slurp(log);
	CHECK_MSG(text && strstr(text, "it's done"), "the replica's stderr: %s", text ? text : "(none)");
	CHECK_MSG(text && strstr(text, "token 's3cret 'quoted' $HOME `x`'\n"), "the secret: %s",
		  text ? text : "(none)");
	if (c->as && text) {
		char want[32];

		snprintf(want, sizeof(want), "uid %u token", (unsigned)c->as->uid);
		CHECK_MSG(strstr(text, want) != NULL, "ran as %u: %s", (unsigned)c->as->uid, text);
	}
	/* A log its user may not write (the daemon's own folder) is left out. */
	if (c->as) {
		char priv[600];

		snprintf(priv, sizeof(priv), "%s/private", c->tmp);
		REQUIRE(mkdir(priv, 0700) == 0);
		snprintf(log, sizeof(log), "%s/private/replica.log", c->tmp);
		r = launch_sh(c, p, "read -r tok; echo hidden >&2; exit 6", 1, log, id2, err);
		CHECK_MSG(r == 0, "launch with a private log: %d %s", r, err);
		if (r == 0) {
			CHECK_EQ(wait_end(p, id2, &st), 0);
			CHECK_EQ(st.state, MINING_REPLICA_EXITED);
			CHECK_EQ(st.exit_code, 6);
			CHECK(access(log, F_OK) != 0);
			mining_slurm_ops.forget(p, id2);
		}
	}
	r = launch_sh(c, p, "timeout 2 sh -c 'while :; do :; done'; exit 0", 2, NULL, id2, err);
	CHECK_MSG(r == 0, "launch on 2 CPUs: %d %s", r, err);
	if (r == 0) {
		CHECK_EQ(wait_end(p, id2, &st), 0);
		CHECK_MSG(st.device_seconds >= 4 && st.device_seconds < 240, "2 CPUs: %g device-s",
			  st.device_seconds);
		mining_slurm_ops.forget(p, id2);
	}
	mining_slurm_ops.close(p);

	/* Another provider on the same state (a daemon restarted) knows it. */
	p = open_good(c, 20);
	{
		struct mining_replica_status again;

		CHECK_EQ(mining_slurm_ops.poll(p, id, &again), 0);
		CHECK_EQ(again.state, MINING_REPLICA_EXITED);
		CHECK(again.device_seconds == st.device_seconds || again.device_seconds >= 2);
		CHECK_EQ(mining_slurm_ops.cancel(p, id), 0);
	}
	mining_slurm_ops.forget(p, id);
	CHECK_EQ(mining_slurm_ops.poll(p, id, &st), -ENOENT);
	CHECK_EQ(mining_slurm_ops.poll(p, "12;rm", &st), -ENOENT);
	CHECK_EQ(mining_slurm_ops.poll(p, "../x", &st), -ENOENT);
	CHECK_EQ(mining_slurm_ops.cancel(p, "999999"), -ENOENT);
	mining_slurm_ops.close(p);
}

static void test_exit_code_and_cancel(struct ctx *c)
{
	struct mining_provider *p = open_good(c, 20);
	struct mining_replica_status st;
	char id[MINING_ID_MAX], err[MINING_ERR_MAX] = "";
	int r;

	r = launch_sh(c, p, "exit 3", 1, NULL, id, err);
	REQUIRE(r == 0 || !fprintf(stderr, "launch: %d %s\n", r, err));
	CHECK_EQ(wait_end(p, id, &st), 0);
	CHECK_EQ(st.state, MINING_REPLICA_EXITED);
	CHECK_EQ(st.exit_code, 3);
	mining_slurm_ops.forget(p, id);

	r = launch_sh(c, p, "exec sleep 300", 1, NULL, id, err);
	REQUIRE(r == 0 || !fprintf(stderr, "launch: %d %s\n", r, err));
	CHECK_EQ(wait_running(p, id), 0);
	CHECK_EQ(mining_slurm_ops.cancel(p, id), 0);
	CHECK_EQ(wait_end(p, id, &st), 0);
	CHECK_EQ(st.state, MINING_REPLICA_KILLED);
	CHECK_MSG(st.signal == SIGTERM || st.signal == SIGKILL, "signal %d", st.signal);
	CHECK_EQ(mining_slurm_ops.cancel(p, id), 0);
	mining_slurm_ops.forget(p, id);

	/* A bad launch: argv[0] not absolute, a log path sbatch would expand. */
	{
		char *const rel[] = { "sh", "-c", "true", NULL };
		struct mining_launch l = { rel, c->as, 1, NULL, "x", NULL };

		CHECK_EQ(mining_slurm_ops.launch(p, &l, id, err), -EINVAL);
		l.argv = (char *const[]){ "/bin/true", NULL };
		l.log_path = "/tmp/log-%j";
		CHECK_EQ(mining_slurm_ops.launch(p, &l, id, err), -EINVAL);
	}
	mining_slurm_ops.close(p);
}

/*
 * A replica renames its own job (as its owner may) to a name that spells a
 * forged exit code, run time and CPU count.  forged[0] is polled to its end
 * through squeue; forged[1] (whose name starts with the one it was given,
 * then forged fields) and honest are left to end unpolled, for the
 * jobcomp log to meter once slurmctld has forgotten them.
 */
static void test_forged_name(struct ctx *c, char forged[2][MINING_ID_MAX],
			     char honest[MINING_ID_MAX])
{
	static const char *const names[2] = {
		"x ExitCode=0:0 RunTime=99:00:00 TimeUsed=99:00:00 NumCPUs=64",
		"job1_replica-0 JobState=COMPLETED StartTime=2000-01-01T00:00:00 ProcCnt=64 "
		"ExitCode=0:0",
	};
	struct mining_provider *p = open_good(c, 20);
	struct mining_replica_status st;
	char err[MINING_ERR_MAX] = "", script[1024];
	int r;

	for (int i = 0; i < 2; i++) {
		snprintf(script, sizeof(script),
			 "SLURM_CONF='%s' scontrol update JobId=$SLURM_JOB_ID JobName='%s' "
			 "|| exit 9; sleep 1; exit 5",
			 getenv("SLURM_CONF"), names[i]);
		r = launch_sh(c, p, script, 1, NULL, forged[i], err);
		REQUIRE(r == 0 || !fprintf(stderr, "launch: %d %s\n", r, err));
	}
	CHECK_EQ(wait_end(p, forged[0], &st), 0);
	CHECK_EQ(st.state, MINING_REPLICA_EXITED);
	CHECK_EQ(st.exit_code, 5);
	CHECK_MSG(st.device_seconds >= 1 && st.device_seconds < 120, "forged: %g device-s",
		  st.device_seconds);
	r = launch_sh(c, p, "sleep 1; exit 4", 1, NULL, honest, err);
	REQUIRE(r == 0 || !fprintf(stderr, "launch: %d %s\n", r, err));
	mining_slurm_ops.close(p);
}

static int in_jobcomp(const char *id)
{
	char pat[64], *text = slurp(getenv("SLURM_JOBCOMP"));

	snprintf(pat, sizeof(pat), "JobId=%s ", id);
	return text && strstr(text, pat);
}

/* slurmctld restarted with its state wiped: the jobcomp log meters the
 * honest job, and the renamed one's line is not trusted. */
static void test_jobcomp_after_wipe(struct ctx *c, char forged[2][MINING_ID_MAX],
				    const char *honest)
{
	struct mining_provider *p;
	struct mining_replica_status st;

	for (int i = 0; i < 600 && !(in_jobcomp(honest) && in_jobcomp(forged[1])); i++)
		sleep_s(0.2);
	CHECK(in_jobcomp(honest) && in_jobcomp(forged[1]));
	ctl(c, "ctld-stop", NULL);
	ctl(c, "ctld-start", "clean");
	p = open_good(c, 20);
	CHECK_EQ(mining_slurm_ops.poll(p, honest, &st), 0);
	CHECK_EQ(st.state, MINING_REPLICA_EXITED);
	CHECK_EQ(st.exit_code, 4);
	CHECK_MSG(st.device_seconds >= 1 && st.device_seconds < 120, "from jobcomp: %g",
		  st.device_seconds);
	CHECK_EQ(mining_slurm_ops.poll(p, forged[1], &st), 0);
	CHECK_EQ(st.state, MINING_REPLICA_LOST);
	CHECK_MSG(st.device_seconds < 120, "forged in jobcomp: %g", st.device_seconds);
	/* Its final state was recorded by the first poll already. */
	CHECK_EQ(mining_slurm_ops.poll(p, forged[0], &st), 0);
	CHECK_EQ(st.exit_code, 5);
	for (int i = 0; i < 2; i++)
		mining_slurm_ops.forget(p, forged[i]);
	mining_slurm_ops.forget(p, honest);
	mining_slurm_ops.close(p);
}

/* A controller that does not answer (stopped by SIGSTOP), then one that is
 * gone: -EHOSTDOWN, with a reason, within the provider's timeout. */
static void test_dead_controller(struct ctx *c)
{
	struct mining_provider *p = open_good(c, 2);
	struct mining_replica_status st;
	char id[MINING_ID_MAX], err[MINING_ERR_MAX] = "";
	int r;

	r = launch_sh(c, p, "exec sleep 300", 1, NULL, id, err);
	REQUIRE(r == 0 || !fprintf(stderr, "launch: %d %s\n", r, err));
	ctl(c, "ctld-pause", NULL);
	err[0] = '\0';
	CHECK_EQ(mining_slurm_ops.alive(p, err), -EHOSTDOWN);
	CHECK_MSG(strstr(err, "no answer") != NULL, "paused: %s", err);
	CHECK_EQ(mining_slurm_ops.poll(p, id, &st), -EHOSTDOWN);
	CHECK_EQ(mining_slurm_ops.cancel(p, id), -EHOSTDOWN);
	err[0] = '\0';
	CHECK_EQ(launch_sh(c, p, "true", 1, NULL, id + 0, err), -EHOSTDOWN);
	CHECK_MSG(strstr(err, "sbatch") != NULL, "launch: %s", err);
	ctl(c, "ctld-resume", NULL);
	ctl(c, "ctld-stop", NULL);
	err[0] = '\0';
	CHECK_EQ(mining_slurm_ops.alive(p, err), -EHOSTDOWN);
	CHECK_MSG(*err, "stopped: no reason given");
	fprintf(stderr, "  a stopped slurmctld: %s\n", err);
	ctl(c, "ctld-start", NULL);
	CHECK_EQ(mining_slurm_ops.alive(p, err), 0);
	mining_slurm_ops.close(p);
}

static void test_not_installed(struct ctx *c)
{
	json_t *cfg = good_cfg(5, 0);
	struct mining_provider *p = NULL;
	char err[MINING_ERR_MAX] = "";

	json_object_set_new(json_object_get(cfg, "slurm"), "bin-dir", json_string("/nonexistent"));
	CHECK_EQ(mining_slurm_ops.open(cfg, c->state_dir, &p, err), 0);
	if (p) {
		CHECK_EQ(mining_slurm_ops.alive(p, err), -EHOSTDOWN);
		CHECK_MSG(strstr(err, "/nonexistent/scontrol") != NULL, "%s", err);
		mining_slurm_ops.close(p);
	}
	json_decref(cfg);
	/* A partition the cluster has not. */
	cfg = good_cfg(5, 0);
	json_object_set_new(json_object_get(cfg, "slurm"), "partition", json_string("nosuch"));
	p = NULL;
	CHECK_EQ(mining_slurm_ops.open(cfg, c->state_dir, &p, err), 0);
	if (p) {
		CHECK_EQ(mining_slurm_ops.alive(p, err), -EHOSTDOWN);
		CHECK_MSG(strstr(err, "nosuch") != NULL, "%s", err);
		mining_slurm_ops.close(p);
	}
	json_decref(cfg);
}

/* Bad provider files: -EINVAL, *err naming the key. */
static void test_bad_provider_json(struct ctx *c)
{
	static const struct {
		const char *json, *key;
	} bad[] = {
		{ "[1, 2]", "object" },
		{ "{\"kind\": \"local\"}", "kind" },
		{ "{\"kind\": 7}", "kind" },
		{ "{\"cpus\": 0}", "cpus" },
		{ "{\"cpus\": \"two\"}", "cpus" },
		{ "{\"slurm\": []}", "slurm" },
		{ "{\"slurm\": {\"partiton\": \"test\"}}", "slurm.partiton" },
		{ "{\"slurm\": {\"partition\": \"a b\"}}", "slurm.partition" },
		{ "{\"slurm\": {\"partition\": \"\"}}", "slurm.partition" },
		{ "{\"slurm\": {\"account\": \"x;rm -rf /\"}}", "slurm.account" },
		{ "{\"slurm\": {\"conf\": \"relative/slurm.conf\"}}", "slurm.conf" },
		{ "{\"slurm\": {\"bin-dir\": 3}}", "slurm.bin-dir" },
		{ "{\"slurm\": {\"timeout-seconds\": \"10\"}}", "slurm.timeout-seconds" },
		{ "{\"slurm\": {\"timeout-seconds\": 0}}", "slurm.timeout-seconds" },
		{ "{\"slurm\": {\"time-limit\": \"1:00; rm\"}}", "slurm.time-limit" },
		{ "{\"slurm\": {\"jobcomp-log\": \"log.txt\"}}", "slurm.jobcomp-log" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *cfg = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
		struct mining_provider *p = NULL;
		char err[MINING_ERR_MAX] = "";

		REQUIRE(cfg);
		CHECK_MSG(mining_slurm_ops.open(cfg, c->state_dir, &p, err) == -EINVAL,
			  "%s accepted", bad[i].json);
		CHECK_MSG(strstr(err, bad[i].key) != NULL, "%s: \"%s\" does not name %s",
			  bad[i].json, err, bad[i].key);
		CHECK(p == NULL);
		json_decref(cfg);
	}
	/* What the slurm object leaves out has defaults; cpus from the file. */
	{
		json_t *cfg = good_cfg(5, 3);
		struct mining_provider *p = NULL;
		char err[MINING_ERR_MAX] = "";

		CHECK_EQ(mining_slurm_ops.open(cfg, c->state_dir, &p, err), 0);
		if (p)
			CHECK_EQ(mining_slurm_ops.cpus(p), 3);
		mining_slurm_ops.close(p);
		json_decref(cfg);
	}
}

int main(void)
{
	struct ctx c = { 0 };
	char forged[2][MINING_ID_MAX], honest[MINING_ID_MAX];

	c.tmp = getenv("SLURM_TMP");
	c.ctl = getenv("SLURM_CTL");
	if (!c.tmp || !c.ctl || !getenv("SLURM_CONF"))
		SKIP("run through run-slurm.sh, which starts the cluster");
	snprintf(c.state_dir, sizeof(c.state_dir), "%s/provider", c.tmp);
	snprintf(c.log_dir, sizeof(c.log_dir), "%s/replicas", c.tmp);
	REQUIRE(mkdir(c.log_dir, 0777) == 0 && chmod(c.log_dir, 01777) == 0);
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("nobody");

		REQUIRE(pw);
		c.user.uid = pw->pw_uid;
		c.user.gid = pw->pw_gid;
		c.as = &c.user;
	}
	RUN_CTX(test_bad_provider_json);
	RUN_CTX(test_burn_metered);
	RUN_CTX(test_exit_code_and_cancel);
	{
		int before = check_failures;

		test_forged_name(&c, forged, honest);
		test_jobcomp_after_wipe(&c, forged, honest);
		fprintf(stderr, "%s test_forged_name, test_jobcomp_after_wipe\n",
			check_failures == before ? "ok  " : "FAIL");
	}
	RUN_CTX(test_not_installed);
	RUN_CTX(test_dead_controller);
	return check_status();
}
