/*
 * mining_provider: where the replicas of a co-training job run.  One interface, one
 * file per kind of provider (mining_local.c, mining_slurm.c); the coordinator
 * (mining_job.c) launches replicas through it and never knows which kind it holds.
 *
 * A replica is one OS process given as a command line (the daemon's own program run
 * with "--mining-replica ...", which reaches the coordinator over the network only).
 * A provider starts it, says whether it still runs, stops it, and meters what it used
 * in device-seconds as the provider itself accounts them (the kernel's CPU time of
 * the process tree for local, Slurm's accounting for slurm), never from the
 * replica's own word.
 *
 * A launched replica is named by an id (a string the provider makes: a pid and start
 * time, a Slurm job id) that the coordinator keeps in its state, so that a daemon
 * restarted after kill -9 can poll, meter or cancel replicas launched before it died.
 *
 * Threads: open/close from the coordinator's thread; the other calls from any one
 * thread at a time per provider.  Calls may block for a bounded time (a Slurm command
 * is run with a timeout) and never on a replica's progress.
 *
 * Errors: -EINVAL (a bad provider.json: *err says which key and why), -ENOENT (no
 * such replica id), -EHOSTDOWN (the provider does not answer: *err says how),
 * -errno otherwise.
 */
#ifndef LLMFS_MINING_PROVIDER_H
#define LLMFS_MINING_PROVIDER_H

#include <stddef.h>
#include <jansson.h>

#include "plan_proc.h"

#define MINING_ID_MAX 64
#define MINING_ERR_MAX 256

struct mining_provider;

/* One replica to start. */
struct mining_launch {
	char *const *argv;                 /* argv[0]: an absolute path */
	const struct plan_proc_user *user; /* whom it runs as (the job's owner) */
	unsigned cpus;                     /* CPUs it may use (its share of the provider) */
	const char *log_path;              /* its stderr, appended; NULL: discarded */
	const char *name;                  /* job and replica, for the provider's listings */
	/* Written to its stdin, then stdin is closed (the job's secret token: never on a
	 * command line, which other users can read in /proc).  The remote provider hands
	 * it to the serving daemon over its authenticated channel instead. */
	const char *secret;
};

enum mining_replica_state {
	MINING_REPLICA_PENDING,  /* queued by the provider, not started */
	MINING_REPLICA_RUNNING,
	MINING_REPLICA_EXITED,   /* exit_code set */
	MINING_REPLICA_KILLED,   /* by a signal, a cancel or the provider (signal set) */
	MINING_REPLICA_LOST,     /* the provider no longer knows it */
};

struct mining_replica_status {
	enum mining_replica_state state;
	int exit_code;
	int signal;
	double device_seconds; /* metered by the provider so far (final once ended) */
};

struct mining_provider_ops {
	const char *kind; /* "local", "slurm", "remote" */
	/* Checks cfg (the provider.json object) and opens the provider. */
	int (*open)(const json_t *cfg, const char *state_dir, struct mining_provider **ret,
		    char err[MINING_ERR_MAX]);
	void (*close)(struct mining_provider *p);
	/* Is it reachable now?  0, or -EHOSTDOWN with *err saying why. */
	int (*alive)(struct mining_provider *p, char err[MINING_ERR_MAX]);
	/* Starts a replica; its id in id. */
	int (*launch)(struct mining_provider *p, const struct mining_launch *l,
		      char id[MINING_ID_MAX], char err[MINING_ERR_MAX]);
	int (*poll)(struct mining_provider *p, const char *id, struct mining_replica_status *st);
	/* Stops it (SIGTERM, then SIGKILL after a grace period); 0 when already gone. */
	int (*cancel)(struct mining_provider *p, const char *id);
	/* Frees what the provider keeps for an ended replica (poll says ENOENT after). */
	void (*forget)(struct mining_provider *p, const char *id);
	/* CPUs and GPUs it offers (from its file or what it finds). */
	unsigned (*cpus)(struct mining_provider *p);
};

extern const struct mining_provider_ops mining_local_ops;
extern const struct mining_provider_ops mining_slurm_ops;  /* mining_slurm.c */
extern const struct mining_provider_ops mining_remote_ops; /* mining_remote.c */

/*
 * remote, the serving side (mining_remote.c): a provider.json of kind remote with a
 * "coordinator" URL makes this daemon run replicas for that coordinator, under the
 * provider's owner, on its own local provider.  status: a few lines for the provider's
 * status file.
 */
struct mining_serve;
int mining_remote_serve_start(const json_t *cfg, const struct plan_proc_user *owner,
			      const char *exe, const char *name, struct mining_serve **ret,
			      char err[MINING_ERR_MAX]);
void mining_remote_serve_stop(struct mining_serve *s);
void mining_remote_serve_status(struct mining_serve *s, char *buf, size_t len);
/* remote, the coordinator's side: a serving daemon's request (op "work" or "report", key its
 * bearer token); returns the HTTP status, *ret_body malloc'd. */
unsigned mining_remote_handle(struct mining_provider *p, const char *key, const char *op,
			      const void *body, size_t len, char **ret_body, size_t *ret_len);

/* The ops for a kind ("local", "slurm", "remote"), or NULL (a kind this build lacks). */
const struct mining_provider_ops *mining_provider_kind(const char *kind);

#endif
