/*
 * mining_job: the coordinator of joint mining.  Providers (where replicas run), accounts (who
 * designs a job or provides compute) and co-training jobs, each job training one model with
 * DiLoCo (arXiv 2311.08105) across replicas that run on providers.  No FUSE here: fs/mining.c
 * maps mining/ onto these calls; docs/mining.md has the algorithm, the keys and the wire.
 *
 * A job runs on one thread of its own.  Round r (1..rounds): every replica slot (0..replicas-1)
 * fetches the global weights W(r-1) over HTTP, runs H inner AdamW steps on its own shard of the
 * training data (gpu_train_window()) and posts its pseudo-gradient W(r-1) - W_end (fp32 or
 * int8 with a scale per block, mining_wire.h).  The round closes when every slot has posted
 * or dropped out (its process ended, or round-timeout passed): a slot that dropped out counts
 * as zero (no share of the average, accepted 0 in contributions.tsv) and is started again, to
 * catch up from the latest global weights.  Then the outer step (Nesterov momentum):
 *   D = mean of the accepted pseudo-gradients, v = mu v + D, W(r) = W(r-1) - lr (D + mu v)
 * and W(r) is evaluated on the validation data.  A round with no accepted pseudo-gradient is
 * run again (a job whose every slot fails three times running fails).  With overlap=1 a slot
 * whose pseudo-gradient of round r-1 was accepted starts its window of round r from
 * W(r-2) minus its own pseudo-gradient, at once after posting it, and fetches W(r-1) only
 * to post: the global weights reach the windows one round late, and a replica waits for
 * them only when it is a whole window ahead of the slowest.
 *
 * Durable state, per job, in state_dir/jobs/<job>/ (0700): the job file, its owner, the
 * secret token of its replicas, state.json (the last completed round, written last and
 * atomically), weights/<r>.pg (W(r), kept for every round: the ledger replays windows from
 * them), momentum.pg, deltas/<r>-<slot>.pg (each accepted pseudo-gradient as received) and the
 * reports (rounds.tsv, contributions.tsv, metrics.tsv, samples.txt, log).  A daemon killed at
 * any point resumes each running job at its last completed round: rows past it are cut, the
 * round in flight is run again, its replicas started again.
 *
 * Replicas reach the coordinator through an HTTP server (mining_wire.h) on cfg->listen; every
 * request carries the job's token (local replicas get it on stdin, never on a command line),
 * so other users of the machine can neither push pseudo-gradients nor read the weights.
 *
 * Locking: one mutex for everything, not held while state.json is written and fsync'd (a lock
 * of the job's own orders those writes; taken after the mutex where both are, never before);
 * on_change is called with it held (it must not call back and must not block).  on_round is called from a job's ledger thread with no lock held.  Every
 * call may be made from any thread; none blocks on a replica.
 *
 * Errors: -ENOENT, -EEXIST, -EINVAL (a bad name or file; the reason in the status), -EBUSY (a
 * job file written twice; a provider or account in use), -EPERM (not the owner), -errno.
 */
#ifndef LLMFS_MINING_JOB_H
#define LLMFS_MINING_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "plan_proc.h"

struct mining;

struct mining_contribution;
struct mining_round;
struct gpu_train_opts;
/*
 * The ledger's hook (issue 16): rounds up to r->round are durable in the job folder (their
 * rows, weights/<r>.pg, deltas/<r>-<slot>.pg, state.json); the hook pays those it has not paid.
 * Called from the job's ledger thread, behind the rounds (the job's thread never waits for
 * it), with r->round increasing by one, except its first call of a run (the last durable
 * round: those a killed daemon left unpaid) and a last call at the job's end (the same round
 * again); r and what it points to live for the call only.  r->c holds the job's slots as a
 * template (shard, H, threads, the provider now; steps 0, not accepted): what each slot did
 * in a round is in the job folder.
 */
typedef void (*mining_round_fn)(void *arg, const struct mining_round *r);

struct mining_config {
	const char *state_dir;  /* made 0700 */
	const char *tree;       /* the mounted tree: data= paths and models/ are under it */
	const char *exe;        /* replicas are "exe --mining-replica ..." */
	const char *listen;     /* HOST:PORT of the replicas' server; NULL: 127.0.0.1:0 */
	const char *advertise;  /* the URL replicas are given; NULL: http://HOST:PORT */
	void (*on_change)(void *arg, const char *kind, const char *name);
	void *on_change_arg;
	mining_round_fn on_round;
	void *on_round_arg;
};

int mining_open(const struct mining_config *cfg, struct mining **ret, char **ret_warnings);
void mining_close(struct mining *m);
/* The URL replicas reach this coordinator at. */
const char *mining_url(const struct mining *m);

/* What a round leaves for the ledger (the hook's call has a template of them, on_round above;
 * the book fills them per round from the job folder). */
struct mining_contribution {
	unsigned slot;              /* also its shard: shard slot of n_shards */
	unsigned n_shards;
	const char *provider;       /* its provider's name */
	const char *replica;        /* the provider's id of the process */
	long steps;                 /* inner steps it reported (H when accepted) */
	uint64_t tokens;            /* steps x batch x seq */
	double device_seconds;      /* metered by the provider during this round */
	int accepted;
	const char *reason;         /* why not accepted ("" when accepted) */
	/* Its window: from weights start_path (digest start_sha256), inner steps step0+1 ..
	 * step0+H of the job's schedule, batches drawn with seed from shard slot, threads CPU
	 * threads.  delta_path: the pseudo-gradient as received (NULL when none). */
	uint64_t seed;
	long step0, H;
	unsigned threads;
	const char *delta_path;
	/* overlap=1 (docs/mining.md, "Overlapping rounds"): when own_path is set, the window
	 * started not from the round's start_path W(r-1) but from mining_overlap_start() of
	 * base_path W(r-2), prev_path W(r-3) (W(r-2) when r < 3) and own_path, the slot's own
	 * pseudo-gradient of round r-1 as received; all NULL otherwise. */
	const char *base_path, *prev_path, *own_path;
};

struct mining_round {
	const char *job;
	const char *account;        /* the designer's account, "" when none */
	long round, rounds;
	float val_loss, train_loss;             /* NAN in the hook's call: rounds.tsv has them */
	const char *start_path, *start_sha256;  /* W(r-1); the digests "" in the hook's call */
	const char *end_path, *end_sha256;      /* W(r) */
	const struct mining_contribution *c;
	size_t n;
	/* For the ledger's replays and coalition values, live during the call: the job's
	 * options, its tokens (training [0, n_train): slot i's shard is the i-th n_train /
	 * n_shards of it; validation [n_train, n_tokens)), and the outer step's lr. */
	const struct gpu_train_opts *opts;
	const uint16_t *tokens;
	size_t n_train, n_tokens;
	int vocab;
	float outer_lr, outer_mu;
	int overlap;                /* the job's overlap= key (the catch-up rebuilds own_path) */
};

/* The derived window seed of a slot in a round (what gpu_train_window() gets). */
uint64_t mining_window_seed(uint64_t job_seed, long round, unsigned slot);

/*
 * overlap=1: the start of a slot's window of round r when its pseudo-gradient of round r-1
 * was accepted, from w1 = W(r-2), w0 = W(r-3) (w1 again when r < 3) and own, that
 * pseudo-gradient as it decodes:
 *   start = w1 + mu (w1 - w0) - lr own
 * the outer step's prediction of W(r-1), with its own pseudo-gradient standing in for the
 * round's mean and the last update for the momentum (docs/mining.md, "Overlapping rounds").
 * One function for the replica, the coordinator and the ledger: the same bits in all three.
 */
void mining_overlap_start(float *out, const float *w1, const float *w0, const float *own,
			  size_t n, float lr, float mu);

/*
 * The outer optimizer of DiLoCo (arXiv 2311.08105): lr 0.7, momentum 0.9, Nesterov unless the
 * job file says otherwise (outer-lr=, outer-momentum=, nesterov=).
 */
struct mining_outer {
	float lr, mu;
	int nesterov;
};

/*
 * One outer step on d, the mean of a round's accepted pseudo-gradients (W(r-1) - W_end):
 *   v = mu v + d;  u = -lr (d + mu v) (Nesterov) or u = -lr v (heavy ball)
 * v is updated in place; u is the update the coordinator adds to W(r-1) (after its trip
 * through the wire's encoding, which is exact for fp32).
 */
void mining_outer_step(const struct mining_outer *o, float *v, float *u, const float *d,
		       size_t n);

/* The outer optimizer a job file asks for (its defaults when it names none); -EINVAL with
 * the reason in err for a malformed file. */
int mining_job_outer(const char *text, size_t len, struct mining_outer *ret, char *err,
		     size_t errlen);

/* ---- owners ------------------------------------------------------------------------------- */

struct mining_info {
	uid_t uid;
	gid_t gid;
	unsigned mode;
	int has_file;            /* job: a job file; provider: a provider.json */
	int ended;               /* job: done, failed or stopped */
	unsigned long long gen;
};

enum mining_kind { MINING_PROVIDERS, MINING_ACCOUNTS, MINING_JOBS };

/* mkdir, rmdir (the owner or root), info and listing, for each of the three folders. */
int mining_create(struct mining *m, enum mining_kind k, const char *name,
		  const struct plan_proc_user *owner, unsigned mode);
int mining_remove(struct mining *m, enum mining_kind k, const char *name, uid_t by);
int mining_info(struct mining *m, enum mining_kind k, const char *name, struct mining_info *ret);
int mining_names(struct mining *m, enum mining_kind k, char ***ret_names, size_t *ret_n);
void mining_names_free(char **names, size_t n);
int mining_name_valid(const char *name);

/* ---- providers ---------------------------------------------------------------------------- */

enum mining_pfile { MINING_PF_CONFIG, MINING_PF_STATUS, MINING_PF_COUNT };
extern const char *const mining_pfile_names[MINING_PF_COUNT];
/* provider.json written: checked (a bad one: the status says why, -EINVAL). */
int mining_provider_set(struct mining *m, const char *name, const char *text, size_t len);
int mining_provider_read(struct mining *m, const char *name, enum mining_pfile f, char **ret,
			 size_t *ret_len);

/* ---- jobs --------------------------------------------------------------------------------- */

enum mining_file {
	MINING_F_JOB,
	MINING_F_STATUS,
	MINING_F_CONTROL,
	MINING_F_ROUNDS,         /* rounds.tsv */
	MINING_F_CONTRIB,        /* contributions.tsv */
	MINING_F_METRICS,        /* metrics.tsv (gpu/train.h's rows, one per round) */
	MINING_F_STATE,          /* trainer_state.json */
	MINING_F_EVENTS,         /* events.out.tfevents.<time>.llmfs */
	MINING_F_SVG,            /* loss.svg */
	MINING_F_SAMPLES,
	MINING_F_LOG,
	MINING_F_RESULT,
	MINING_F_COUNT
};

/* The job file: checked, stored and started; a bad one makes the job "failed: <reason>". */
int mining_job_submit(struct mining *m, const char *name, const char *text, size_t len);
/* "stop" or "resume". */
int mining_job_control(struct mining *m, const char *name, const char *text, size_t len);
int mining_job_file_name(struct mining *m, const char *name, enum mining_file f, char **ret);
int mining_job_file_lookup(struct mining *m, const char *name, const char *file);
/* The content now (result: -EAGAIN until the job ended). */
int mining_job_read(struct mining *m, const char *name, enum mining_file f, char **ret,
		    size_t *ret_len);
/* "listen URL" and the counts, for mining/status. */
int mining_status(struct mining *m, char **ret, size_t *ret_len);

/* ---- processes ---------------------------------------------------------------------------- */

/* A replica: argv { exe, "--mining-replica", URL, JOB, SLOT, THREADS }, the token on stdin. */
int mining_replica_main(int argc, char **argv);
/* The serving side of a remote provider (mining_remote.c): polls its coordinator for
 * replicas to run. */
struct mining_remote;

#endif
