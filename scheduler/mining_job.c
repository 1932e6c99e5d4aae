/*
 * mining_job.c - the coordinator of joint mining (see mining_job.h): the tables of providers,
 * accounts and jobs, the replicas' HTTP endpoints, and each job's thread running DiLoCo rounds.
 *
 * The endpoints (every one needs "Authorization: Bearer <token>"):
 *   GET  /v1/jobs/<job>/spec                the options a replica trains with (JSON)
 *   GET  /v1/jobs/<job>/shard/<slot>        its shard of the training tokens (a token file)
 *   GET  /v1/jobs/<job>/weights?after=<r>[&have=<k>]
 *                                           the open round's start weights (fp32 frame, the
 *                                           round in X-Llmfs-Round) once a round > r is open;
 *                                           with int8, to a replica holding W(open - 2)
 *                                           (have=), the int8 update to W(open - 1) instead;
 *                                           204 while none is, 410 when the job ended
 *   POST /v1/jobs/<job>/delta/<slot>?round=<r>&steps=<n>&loss=<x>
 *                                           its pseudo-gradient: 200 accepted, 400 malformed
 *                                           (nothing changes), 409 not the open round
 *   GET  /v1/providers/<name>/work, POST .../report   a remote provider's daemon (its key)
 */
#include "mining_job.h"
#include "tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/fsync.h"
#include "common/nice.h"
#include "gpu/ckpt.h"
#include "gpu/data.h"
#include "gpu/train.h"
#include "mining_provider.h"
#include "mining_wire.h"

#define JOB_MAX (64u << 10)
#define FAIL_STREAK 3        /* rounds in a row with nothing accepted before the job fails */
#define LAUNCH_MAX 4         /* launches of a slot within one round */
/* How often a round polls its replicas' providers after its opening (at most): a replica that
 * ended is dropped and started again within about this, and the metering moves on.  No more
 * often: a slurm poll is an squeue process per slot, whose CPU a provider's replicas on the
 * same machine lose, and the job's thread in a sweep cannot close the round. */
#define WATCH_S 1.0
#define LOG_MAX (4u << 20)

static const char *const kind_dir[] = { "providers", "accounts", "jobs" };
const char *const mining_pfile_names[MINING_PF_COUNT] = { "provider.json", "status" };
static const char *const file_names[MINING_F_COUNT] = {
	"job", "status", "control", "rounds.tsv", "contributions.tsv", "metrics.tsv",
	"trainer_state.json", NULL, "loss.svg", "samples.txt", "log", "result",
};
static const char rounds_header[] =
	"round\tval_loss\ttrain_loss\tbytes_sent\tbytes_received\twall_s\taccepted\treplicas\n";
static const char contrib_header[] =
	"round\tslot\tprovider\treplica\tsteps\ttokens\tdevice_seconds\taccepted\treason\n";

enum jstate { J_EMPTY, J_QUEUED, J_RUNNING, J_DONE, J_FAILED, J_STOPPED };
static const char *const jstate_names[] = { "empty", "queued", "running", "done", "failed",
					    "stopped" };

struct prov {
	struct prov *next;
	char *name;
	uid_t uid;
	gid_t gid;
	unsigned mode;
	int embedded;               /* the default local provider (no folder) */
	char *text;                 /* provider.json, or NULL */
	const struct mining_provider_ops *ops;
	struct mining_provider *p;  /* open, or NULL (no file, a bad one, or a serving one) */
	struct mining_serve *serve; /* kind remote with a coordinator: this daemon serves it */
	char error[MINING_ERR_MAX]; /* the last error */
	char account[64];
	double device_seconds;      /* served to jobs */
	double price;               /* USD per device-hour, as its file says */
	unsigned jobs;              /* jobs it runs replicas for now */
	unsigned readers;           /* status reads asking it with m->lock released */
	unsigned long long gen;
};

struct account {
	struct account *next;
	char *name;
	uid_t uid;
	gid_t gid;
	unsigned mode;
};

struct slot {
	struct prov *prov;
	char id[MINING_ID_MAX];     /* its process, "" none */
	double ds_acc;              /* device-seconds of its ended processes */
	double ds_now;              /* and of the running one, as last metered */
	double ds_round0;           /* ds_now when the round opened */
	unsigned launches;          /* in this round */
	/* this round */
	int posted, dropped;
	long steps;
	double loss;
	char reason[160];
	char delta_path[512];
	float *delta;               /* its accepted pseudo-gradient */
	/* overlap=1: its window of the open round starts from its accepted pseudo-gradient of
	 * round open - 1 (mining_overlap_start(); set when that round closed) */
	int own;
};

/* A frame as it is (plain) and packed for the wire (mining_wire_pack()): replicas ask for
 * the packed one (pack=1), any other client gets the plain one. */
struct two_frames {
	void *plain, *packed;
	size_t plain_len, packed_len;
};

struct job {
	struct job *next;
	struct mining *m;
	char *name, *dir;
	uid_t uid;
	gid_t gid;
	unsigned mode;
	char *text;                 /* the job file */
	enum jstate state;
	char reason[512];
	int stop_asked;
	unsigned refs;              /* requests using the job with the lock released */
	int keep_error;             /* a pseudo-gradient could not be kept (-errno): the job fails */
	unsigned long long gen;
	/* the options */
	struct gpu_train_opts o;
	unsigned replicas, cpus, block;
	long H, rounds;
	float outer_lr, outer_mu;
	int nesterov;
	int overlap;                /* overlap=1: windows start before the round's weights */
	enum mining_enc enc;
	char **providers;           /* NULL: any */
	size_t n_providers;
	char account[64];
	char *val_data;
	double budget_hours, round_timeout;
	char token[65];
	double t_watch;             /* the job's thread: its last poll of the providers */
	/* the thread */
	pthread_t th;
	int has_thread;
	/* the round in flight (m->lock) */
	long round_open, round_done;
	long booked;                /* the ledger paid rounds up to it (the job's ledger thread) */
	size_t n;                   /* parameters */
	float *sum;                 /* the average of the accepted pseudo-gradients */
	unsigned accepted;
	struct two_frames wframe;   /* W(round_open - 1), fp32 */
	struct two_frames uframe;   /* the outer update W(uframe_round) - W(uframe_round - 1)
				     * as applied (its dequantised values), or NULL */
	long uframe_round;
	float *wprev, *wprev2;      /* overlap=1: W(round_open - 2) and W(round_open - 3) (or
				     * W(0)), the own starts' bases */
	struct slot *slots;
	unsigned n_slots;
	uint16_t *tokens;           /* the training split then the validation split */
	size_t n_tokens, n_train;
	int vocab;
	uint64_t bytes_sent, bytes_recv, tokens_seen;
	double device_seconds, started;
	/* state.json: snapshots are numbered under m->lock and written (fsync'd) outside it, one
	 * at a time under save_lock, a snapshot older than the one on disk not at all */
	pthread_mutex_t save_lock;
	unsigned long long state_seq, state_written;
};

struct mining {
	struct mining_config cfg;
	char *state_dir, *tree, *exe, *url;
	pthread_mutex_t lock;
	pthread_cond_t wake;        /* a pseudo-gradient arrived */
	struct prov *provs;
	struct account *accounts;
	struct job *jobs;
	struct mining_server *server;
	int closing;
};

/* ---- small helpers ----------------------------------------------------------------------- */

static char *path2(const char *a, const char *b)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	*ret = buf;
	if (ret_len)
		*ret_len = got;
	return 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
	return gpu_write_file_atomic(path, data, len);
}

/*
 * path written whole (a temporary file renamed over it) but not fsync'd: a pseudo-gradient as
 * it is posted, while replicas wait for the round to close.  The job's thread makes it
 * durable (fsync_path()) before the round is reported, once the next round is open.
 */
static int write_file_unsynced(const char *path, const void *data, size_t len)
{
	size_t n = strlen(path) + 16;
	char *tmp = malloc(n);
	const char *p = data;
	int fd, r = 0;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	while (len > 0 && r == 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			r = w < 0 ? -errno : -EIO;
		else
			p += w, len -= (size_t)w;
	}
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
out:
	free(tmp);
	return r;
}


static int append_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	size_t len = strlen(text);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		r = -EIO;
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

static void job_log(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_log(struct job *j, const char *fmt, ...)
{
	char line[1024], *p = path2(j->dir, "log");
	struct stat st;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n] = '\n';
	line[n + 1] = '\0';
	if (p && (stat(p, &st) < 0 || st.st_size < LOG_MAX))
		append_file(p, line);
	free(p);
}

int mining_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > 64 || name[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(name[i] == '-' || name[i] == '_' || name[i] == '.' ||
		      (name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= 'A' && name[i] <= 'Z')))
			return 0;
	return 1;
}

/* m->lock held: long polls (weights?wait=) and the job threads look again. */
static void changed(struct mining *m, enum mining_kind k, const char *name)
{
	pthread_cond_broadcast(&m->wake);
	if (m->cfg.on_change)
		m->cfg.on_change(m->cfg.on_change_arg, kind_dir[k], name);
}

uint64_t mining_window_seed(uint64_t job_seed, long round, unsigned slot)
{
	uint64_t s = job_seed ^ 0x6d696e696e67ULL ^ ((uint64_t)round << 20) ^ slot;

	gpu_rng_next(&s);
	return gpu_rng_next(&s);
}

/* No fused multiply-add: the three callers must round alike (x86-64's baseline has none; other
 * targets may contract a * b + c). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void mining_overlap_start(float *out, const float *w1, const float *w0, const float *own,
			  size_t n, float lr, float mu)
{
	for (size_t k = 0; k < n; k++) {
		float step = w1[k] - w0[k], mom = mu * step, mine = lr * own[k];

		out[k] = (w1[k] + mom) - mine;
	}
}

void mining_outer_step(const struct mining_outer *o, float *v, float *u, const float *d,
		       size_t n)
{
	for (size_t k = 0; k < n; k++) {
		v[k] = o->mu * v[k] + d[k];
		u[k] = -o->lr * (o->nesterov ? d[k] + o->mu * v[k] : v[k]);
	}
}

/* Constant time: the token is a secret. */
static int token_ok(const char *want, const char *got)
{
	size_t n = strlen(want);
	unsigned char d = 0;

	if (!got || strlen(got) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(want[i] ^ got[i]);
	return d == 0 && n > 0;
}

static int new_token(char out[65])
{
	unsigned char b[32];

	if (getrandom(b, sizeof(b), 0) != sizeof(b))
		return -EIO;
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	return 0;
}

/* owner file: "uid gid mode". */
static int save_owner(const char *dir, uid_t uid, gid_t gid, unsigned mode)
{
	char buf[64], *p = path2(dir, "owner");
	int r;

	if (!p)
		return -ENOMEM;
	snprintf(buf, sizeof(buf), "%u %u %o\n", (unsigned)uid, (unsigned)gid, mode);
	r = write_file(p, buf, strlen(buf));
	free(p);
	return r;
}

static int load_owner(const char *dir, uid_t *uid, gid_t *gid, unsigned *mode)
{
	char *p = path2(dir, "owner"), *text = NULL;
	unsigned u, g, md;
	int r;

	if (!p)
		return -ENOMEM;
	r = read_file(p, &text, NULL);
	free(p);
	if (r < 0)
		return r;
	r = sscanf(text, "%u %u %o", &u, &g, &md) == 3 ? 0 : -EINVAL;
	free(text);
	if (r == 0)
		*uid = u, *gid = g, *mode = md & 07777;
	return r;
}

/* ---- lookups (m->lock held) ---------------------------------------------------------------- */

static struct prov *prov_find(struct mining *m, const char *name)
{
	struct prov *emb = NULL;

	for (struct prov *p = m->provs; p; p = p->next) {
		if (!strcmp(p->name, name) && !p->embedded)
			return p;
		if (!strcmp(p->name, name))
			emb = p;
	}
	return emb;
}

/* The embedded local provider shows while no folder takes its name. */
static int prov_visible(struct mining *m, struct prov *p)
{
	if (!p->embedded)
		return 1;
	for (struct prov *q = m->provs; q; q = q->next)
		if (!q->embedded && !strcmp(q->name, p->name))
			return 0;
	return 1;
}

static struct account *account_find(struct mining *m, const char *name)
{
	for (struct account *a = m->accounts; a; a = a->next)
		if (!strcmp(a->name, name))
			return a;
	return NULL;
}

static struct job *job_find(struct mining *m, const char *name)
{
	for (struct job *j = m->jobs; j; j = j->next)
		if (!strcmp(j->name, name))
			return j;
	return NULL;
}

/* ---- the job file -------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int num(const char *key, const char *v, double lo, double hi, double *ret, char *err,
	       size_t errlen)
{
	char *end;
	double d = strtod(v, &end);

	if (end == v || *end || !isfinite(d) || d < lo || d > hi)
		return fail(err, errlen, "%s: %s is not a number from %g to %g", key, v, lo, hi);
	*ret = d;
	return 0;
}

static int whole(const char *key, const char *v, long lo, long hi, long *ret, char *err,
		 size_t errlen)
{
	char *end;
	long d;

	errno = 0;
	d = strtol(v, &end, 10);
	if (end == v || *end || errno || d < lo || d > hi)
		return fail(err, errlen, "%s: %s is not a whole number from %ld to %ld", key, v, lo,
			    hi);
	*ret = d;
	return 0;
}

/* One co-training key; 1 when key is not one (a train/ key). */
static int set_mining_key(struct job *j, const char *key, const char *v, char *err, size_t errlen)
{
	long l;
	double d;
	int r;

	if (!strcmp(key, "replicas")) {
		if ((r = whole(key, v, 1, 64, &l, err, errlen)) == 0)
			j->replicas = (unsigned)l;
	} else if (!strcmp(key, "inner-steps")) {
		if ((r = whole(key, v, 1, 1000000, &l, err, errlen)) == 0)
			j->H = l;
	} else if (!strcmp(key, "cpus-per-replica")) {
		if ((r = whole(key, v, 1, 256, &l, err, errlen)) == 0)
			j->cpus = (unsigned)l;
	} else if (!strcmp(key, "block")) {
		if ((r = whole(key, v, 16, 1 << 20, &l, err, errlen)) == 0)
			j->block = (unsigned)l;
	} else if (!strcmp(key, "outer-lr")) {
		if ((r = num(key, v, 0, 10, &d, err, errlen)) == 0)
			j->outer_lr = (float)d;
	} else if (!strcmp(key, "outer-momentum")) {
		if ((r = num(key, v, 0, 0.999, &d, err, errlen)) == 0)
			j->outer_mu = (float)d;
	} else if (!strcmp(key, "overlap")) {
		if ((r = whole(key, v, 0, 1, &l, err, errlen)) == 0)
			j->overlap = (int)l;
	} else if (!strcmp(key, "nesterov")) {
		if ((r = whole(key, v, 0, 1, &l, err, errlen)) == 0)
			j->nesterov = (int)l;
	} else if (!strcmp(key, "budget")) {
		if ((r = num(key, v, 0, 1e9, &d, err, errlen)) == 0)
			j->budget_hours = d;
	} else if (!strcmp(key, "round-timeout")) {
		if ((r = num(key, v, 1, 1e7, &d, err, errlen)) == 0)
			j->round_timeout = d;
	} else if (!strcmp(key, "compression")) {
		r = mining_enc_parse(v, &j->enc) < 0
			    ? fail(err, errlen, "compression: %s is not none or int8", v) : 0;
	} else if (!strcmp(key, "account")) {
		r = mining_name_valid(v) ? 0 : fail(err, errlen, "account: %s is not a name", v);
		if (r == 0)
			snprintf(j->account, sizeof(j->account), "%s", v);
	} else if (!strcmp(key, "val-data")) {
		free(j->val_data);
		r = (j->val_data = strdup(v)) ? 0 : -ENOMEM;
	} else if (!strcmp(key, "providers")) {
		char *copy = strdup(v), *save = NULL, *tok;

		for (size_t i = 0; i < j->n_providers; i++)
			free(j->providers[i]);
		free(j->providers);
		j->providers = NULL;
		j->n_providers = 0;
		r = copy ? 0 : -ENOMEM;
		if (r == 0 && strcmp(v, "any"))
			for (tok = strtok_r(copy, ",", &save); tok && r == 0;
			     tok = strtok_r(NULL, ",", &save)) {
				char **np = realloc(j->providers, (j->n_providers + 1) * sizeof(*np));

				if (!mining_name_valid(tok))
					r = fail(err, errlen, "providers: %s is not a name", tok);
				else if (!np || !(np[j->n_providers] = strdup(tok)))
					r = -ENOMEM;
				if (np)
					j->providers = np;
				if (r == 0)
					j->n_providers++;
			}
		free(copy);
	} else {
		return 1;
	}
	return r;
}

/*
 * The job file: gpu/train.h's words and the co-training keys, in any order.  The train/ words
 * are handed on as they are, so that the engine's parser names their line.
 */
static int parse_job(struct job *j, const char *text, size_t len, char *err, size_t errlen)
{
	/* each line may gain a blank and a newline: 2 bytes a line at most, so 3 x len + 2 */
	char *train = calloc(1, 3 * len + 2), *tp = train, *line = NULL;
	const char *p = text, *end = text + len;
	int r = 0, lineno = 0;

	gpu_train_opts_init(&j->o);
	j->replicas = 2;
	j->H = 50;
	j->cpus = 1;
	j->block = MINING_WIRE_BLOCK;
	j->outer_lr = 0.7f;
	j->outer_mu = 0.9f;
	j->nesterov = 1;
	j->overlap = 0;
	j->enc = MINING_ENC_FP32;
	j->round_timeout = 600;
	if (!train)
		return -ENOMEM;
	if (memchr(text, '\0', len)) {
		free(train);
		return fail(err, errlen, "the job file holds a NUL byte");
	}
	while (p < end && r == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *save = NULL, *w, *hash;

		lineno++;
		free(line);
		if (!(line = strndup(p, n))) {
			r = -ENOMEM;
			break;
		}
		if ((hash = strchr(line, '#')))
			*hash = '\0';
		for (w = strtok_r(line, " \t\r", &save); w && r == 0; w = strtok_r(NULL, " \t\r", &save)) {
			char *eq = strchr(w, '=');
			int k;

			if (!eq) {
				tp += sprintf(tp, "%s ", w); /* the engine names it */
				continue;
			}
			*eq = '\0';
			k = set_mining_key(j, w, eq + 1, err + 0, errlen);
			if (k < 0) {
				char tmp[256];

				snprintf(tmp, sizeof(tmp), "%s", err);
				snprintf(err, errlen, "line %d: %s", lineno, tmp);
				r = k;
			} else if (k == 1) {
				tp += sprintf(tp, "%s=%s ", w, eq + 1);
			}
		}
		tp += sprintf(tp, "\n");
		p = nl ? nl + 1 : end;
	}
	free(line);
	if (r == 0)
		r = gpu_train_opts_parse(&j->o, train, (size_t)(tp - train), err, errlen);
	if (r == 0)
		r = gpu_train_opts_finish(&j->o, err, errlen);
	if (r == 0 && j->o.from)
		r = fail(err, errlen, "from: not supported by mining jobs (they start from a "
			 "random init)");
	if (r == 0 && j->o.opts.backend != GPU_BACKEND_CPU)
		r = fail(err, errlen, "backend: mining replicas train on the CPU");
	if (r == 0 && j->o.steps % j->H)
		r = fail(err, errlen, "steps: %ld is not a multiple of inner-steps=%ld", j->o.steps,
			 j->H);
	if (r == 0)
		j->rounds = j->o.steps / j->H;
	free(train);
	return r;
}

/* ---- providers ----------------------------------------------------------------------------- */

static void prov_close(struct prov *p)
{
	if (p->p)
		p->ops->close(p->p);
	p->p = NULL;
	if (p->serve)
		mining_remote_serve_stop(p->serve);
	p->serve = NULL;
}

/*
 * Every top-level key of provider.json is one its kind reads: a misspelt one ("cpu_list") is
 * refused rather than silently left at its default (no pinning).
 */
static int prov_keys(json_t *cfg, const char *kind, char *err, size_t errlen)
{
	/* device: "cpu" or "gpu", what the ledger's hook credits (scheduler/mining_book.c) */
	static const char *const common[] = { "kind", "account", "cpus", "gpus", "memory", "price",
					      "device", NULL };
	static const struct {
		const char *kind, *const keys[4];
	} own[] = {
		{ "local", { "cpu-list", NULL } },
		{ "slurm", { "slurm", NULL } },
		{ "remote", { "key", "coordinator", "provider", "cpu-list" } },
	};
	const char *key;
	json_t *v;

	json_object_foreach(cfg, key, v) {
		int ok = 0;

		for (int i = 0; common[i] && !ok; i++)
			ok = !strcmp(common[i], key);
		for (size_t i = 0; i < sizeof(own) / sizeof(own[0]) && !ok; i++)
			for (int k = 0; !strcmp(own[i].kind, kind) && k < 4 && own[i].keys[k] && !ok;
			     k++)
				ok = !strcmp(own[i].keys[k], key);
		if (!ok)
			return fail(err, errlen, "provider.json: %.64s is not a key of a %s provider "
				    "(docs/mining.md, \"provider.json\")", key, kind);
	}
	return 0;
}

/* Opens p from its text; a bad file leaves it closed with the reason in p->error. */
static int prov_apply(struct mining *m, struct prov *p)
{
	json_error_t je;
	json_t *cfg = NULL, *kind, *acc;
	char err[MINING_ERR_MAX] = "", *dir = NULL;
	int r = -EINVAL;

	prov_close(p);
	p->error[0] = '\0';
	p->account[0] = '\0';
	if (p->embedded) {
		r = mining_local_ops.open(NULL, NULL, &p->p, err);
		p->ops = &mining_local_ops;
		goto out;
	}
	if (!p->text)
		return 0;
	cfg = json_loads(p->text, JSON_REJECT_DUPLICATES, &je);
	if (!cfg || !json_is_object(cfg)) {
		snprintf(err, sizeof(err), "provider.json: not a JSON object (%s, line %d)",
			 cfg ? "not an object" : je.text, je.line);
		goto out;
	}
	kind = json_object_get(cfg, "kind");
	if (!json_is_string(kind)) {
		snprintf(err, sizeof(err), "kind: missing (local, slurm or remote)");
		goto out;
	}
	p->ops = mining_provider_kind(json_string_value(kind));
	if (!p->ops) {
		snprintf(err, sizeof(err), "kind: %s is not a provider this daemon has (local, "
			 "slurm, remote)", json_string_value(kind));
		goto out;
	}
	if ((r = prov_keys(cfg, p->ops->kind, err, sizeof(err))) < 0)
		goto out;
	r = -EINVAL;
	{
		json_t *price = json_object_get(cfg, "price"), *mem = json_object_get(cfg, "memory"),
		       *gpus = json_object_get(cfg, "gpus");

		if (price && (!json_is_number(price) || json_number_value(price) < 0)) {
			snprintf(err, sizeof(err), "price: not a non-negative number (USD per "
				 "device-hour)");
			goto out;
		}
		if (mem && !json_is_string(mem) && !(json_is_integer(mem) && json_integer_value(mem) >= 0)) {
			snprintf(err, sizeof(err), "memory: not a size (\"64G\" or bytes)");
			goto out;
		}
		if (gpus && !(json_is_integer(gpus) && json_integer_value(gpus) >= 0)) {
			snprintf(err, sizeof(err), "gpus: not a whole number");
			goto out;
		}
		p->price = price ? json_number_value(price) : 0;
	}
	acc = json_object_get(cfg, "account");
	if (acc) {
		struct account *a = json_is_string(acc) ? account_find(m, json_string_value(acc))
							: NULL;

		if (!a) {
			snprintf(err, sizeof(err), "account: %s is not an account under "
				 "mining/accounts/", json_is_string(acc) ? json_string_value(acc)
									  : "(not a string)");
			goto out;
		}
		if (p->uid != 0 && a->uid != p->uid) {
			snprintf(err, sizeof(err), "account: %s belongs to another user", a->name);
			goto out;
		}
		snprintf(p->account, sizeof(p->account), "%s", a->name);
	}
	/* The provider's own folder (beside its provider.json): a slurm provider keeps a
	 * file per replica there, named by job id, which two clusters may share. */
	if (asprintf(&dir, "%s/providers/%s", m->state_dir, p->name) < 0) {
		dir = NULL;
		r = -ENOMEM;
		goto out;
	}
	if (!strcmp(p->ops->kind, "remote") && json_object_get(cfg, "coordinator")) {
		struct plan_proc_user owner = { p->uid, p->gid };

		r = mining_remote_serve_start(cfg, &owner, m->exe, p->name, &p->serve, err);
	} else {
		r = p->ops->open(cfg, dir, &p->p, err);
	}
out:
	if (r < 0 && !err[0])
		snprintf(err, sizeof(err), "%s", strerror(-r));
	if (r < 0)
		snprintf(p->error, sizeof(p->error), "%s", err);
	free(dir);
	json_decref(cfg);
	p->gen++;
	return r;
}

int mining_provider_set(struct mining *m, const char *name, const char *text, size_t len)
{
	struct prov *p;
	char *copy = strndup(text, len), *path = NULL, *dir = NULL;
	int r;

	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	while ((p = prov_find(m, name)) && p->readers)
		pthread_cond_wait(&m->wake, &m->lock);
	if (!p || p->embedded) {
		r = -ENOENT;
		goto out;
	}
	if (p->jobs) {
		r = -EBUSY;
		goto out;
	}
	if (asprintf(&dir, "%s/providers/%s", m->state_dir, name) < 0 ||
	    !(path = path2(dir, "provider.json"))) {
		r = -ENOMEM;
		goto out;
	}
	r = write_file(path, copy, len);
	if (r < 0)
		goto out;
	free(p->text);
	p->text = copy;
	copy = NULL;
	r = prov_apply(m, p);
	changed(m, MINING_PROVIDERS, name);
out:
	pthread_mutex_unlock(&m->lock);
	free(copy);
	free(path);
	free(dir);
	return r;
}

/*
 * m->lock held; released while the provider is asked whether it is alive and how many CPUs
 * it has (a Slurm that does not answer takes its whole timeout): p->readers keeps p and p->p from being closed or
 * freed meanwhile (mining_provider_set and mining_remove wait for it to fall).
 */
static void prov_status(struct mining *m, struct prov *p, char **ret, size_t *ret_len)
{
	char *s = NULL, serve[512] = "";
	int alive = 0;
	unsigned cpus = 0;
	char err[MINING_ERR_MAX] = "";

	if (p->p) {
		p->readers++;
		pthread_mutex_unlock(&m->lock);
		alive = p->ops->alive(p->p, err) == 0;
		/* sinfo, for a slurm one: as slow; a provider that is down is not asked */
		cpus = alive ? p->ops->cpus(p->p) : 0;
		pthread_mutex_lock(&m->lock);
		p->readers--;
		pthread_cond_broadcast(&m->wake);
	}
	if (p->serve)
		mining_remote_serve_status(p->serve, serve, sizeof(serve));
	if (asprintf(&s, "%s\nkind %s\ncpus %u\njobs %u\ndevice-seconds %.3f\nprice %g USD per "
		     "device-hour\naccount %s\nlast error %s\n%s",
		     p->serve ? "serving" : alive ? "alive" : p->text || p->embedded ? "down" : "no provider.json",
		     p->ops ? p->ops->kind : "-", cpus, p->jobs,
		     p->device_seconds, p->price, p->account[0] ? p->account : "-",
		     p->error[0] ? p->error : err[0] ? err : "none", serve) < 0)
		s = NULL;
	*ret = s;
	*ret_len = s ? strlen(s) : 0;
}

int mining_provider_read(struct mining *m, const char *name, enum mining_pfile f, char **ret,
			 size_t *ret_len)
{
	struct prov *p;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	p = prov_find(m, name);
	if (!p || !prov_visible(m, p)) {
		r = -ENOENT;
	} else if (f == MINING_PF_CONFIG) {
		const char *t = p->embedded ? "{\"kind\": \"local\"}\n" : p->text ? p->text : "";

		*ret = strdup(t);
		*ret_len = strlen(t);
		r = *ret ? 0 : -ENOMEM;
	} else {
		prov_status(m, p, ret, ret_len);
		r = *ret ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* ---- the tables ---------------------------------------------------------------------------- */

static void two_frames_clear(struct two_frames *f)
{
	free(f->plain);
	free(f->packed);
	memset(f, 0, sizeof(*f));
}

/* f takes the malloc'd plain frame (freed on error) and packs it. */
static int two_frames_set(struct two_frames *f, void *plain, size_t len)
{
	void *packed;
	size_t plen;
	int r = mining_wire_pack(plain, len, &packed, &plen);

	if (r < 0) {
		free(plain);
		return r;
	}
	two_frames_clear(f);
	f->plain = plain;
	f->plain_len = len;
	f->packed = packed;
	f->packed_len = plen;
	return 0;
}

static struct job *job_new(void)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j)
		pthread_mutex_init(&j->save_lock, NULL);
	return j;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	pthread_mutex_destroy(&j->save_lock);
	gpu_train_opts_release(&j->o);
	for (size_t i = 0; i < j->n_providers; i++)
		free(j->providers[i]);
	free(j->providers);
	free(j->val_data);
	free(j->name);
	free(j->dir);
	free(j->text);
	free(j->sum);
	two_frames_clear(&j->wframe);
	two_frames_clear(&j->uframe);
	for (unsigned i = 0; j->slots && i < j->n_slots; i++)
		free(j->slots[i].delta);
	free(j->slots);
	free(j->tokens);
	free(j);
}

int mining_job_outer(const char *text, size_t len, struct mining_outer *ret, char *err,
		     size_t errlen)
{
	struct job *j = job_new();
	int r;

	if (!j)
		return -ENOMEM;
	r = parse_job(j, text, len, err, errlen);
	if (r == 0)
		*ret = (struct mining_outer){ j->outer_lr, j->outer_mu, j->nesterov };
	job_free(j);
	return r < 0 ? r : 0;
}

int mining_create(struct mining *m, enum mining_kind k, const char *name,
		  const struct plan_proc_user *owner, unsigned mode)
{
	char *dir = NULL;
	int r = 0;

	if (!mining_name_valid(name))
		return -EINVAL;
	if (asprintf(&dir, "%s/%s/%s", m->state_dir, kind_dir[k], name) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	if ((k == MINING_PROVIDERS && prov_find(m, name) && !prov_find(m, name)->embedded) ||
	    (k == MINING_ACCOUNTS && account_find(m, name)) ||
	    (k == MINING_JOBS && job_find(m, name))) {
		r = -EEXIST;
		goto out;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto out;
	}
	r = save_owner(dir, owner->uid, owner->gid, mode);
	if (r < 0)
		goto out;
	if (k == MINING_PROVIDERS) {
		struct prov *p = calloc(1, sizeof(*p));

		if (!p || !(p->name = strdup(name))) {
			free(p);
			r = -ENOMEM;
			goto out;
		}
		p->uid = owner->uid, p->gid = owner->gid, p->mode = mode;
		p->next = m->provs;
		m->provs = p;
	} else if (k == MINING_ACCOUNTS) {
		struct account *a = calloc(1, sizeof(*a));

		if (!a || !(a->name = strdup(name))) {
			free(a);
			r = -ENOMEM;
			goto out;
		}
		a->uid = owner->uid, a->gid = owner->gid, a->mode = mode;
		a->next = m->accounts;
		m->accounts = a;
	} else {
		struct job *j = job_new();

		if (!j || !(j->name = strdup(name)) || !(j->dir = strdup(dir))) {
			job_free(j);
			r = -ENOMEM;
			goto out;
		}
		j->m = m;
		j->uid = owner->uid, j->gid = owner->gid, j->mode = mode;
		gpu_train_opts_init(&j->o);
		j->next = m->jobs;
		m->jobs = j;
	}
	changed(m, k, name);
out:
	pthread_mutex_unlock(&m->lock);
	free(dir);
	return r;
}

static int rm_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	while ((de = readdir(d))) {
		char *p;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		p = path2(path, de->d_name);
		if (p)
			rm_tree(p);
		free(p);
	}
	closedir(d);
	return rmdir(path) < 0 ? -errno : 0;
}

static void job_stop_thread(struct mining *m, struct job *j);

int mining_remove(struct mining *m, enum mining_kind k, const char *name, uid_t by)
{
	char *dir = NULL;
	int r = 0;

	if (asprintf(&dir, "%s/%s/%s", m->state_dir, kind_dir[k], name) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	if (k == MINING_PROVIDERS) {
		struct prov **pp, *p = NULL;

		while ((p = prov_find(m, name)) && p->readers)
			pthread_cond_wait(&m->wake, &m->lock);
		p = NULL;
		for (pp = &m->provs; *pp; pp = &(*pp)->next)
			if (!strcmp((*pp)->name, name) && !(*pp)->embedded) {
				p = *pp;
				break;
			}
		if (!p)
			r = prov_find(m, name) ? -EPERM : -ENOENT;
		else if (by != 0 && by != p->uid)
			r = -EPERM;
		else if (p->jobs)
			r = -EBUSY;
		if (r == 0) {
			*pp = p->next;
			prov_close(p);
			free(p->name);
			free(p->text);
			free(p);
		}
	} else if (k == MINING_ACCOUNTS) {
		struct account **pp, *a = NULL;

		for (pp = &m->accounts; *pp; pp = &(*pp)->next)
			if (!strcmp((*pp)->name, name)) {
				a = *pp;
				break;
			}
		if (!a)
			r = -ENOENT;
		else if (by != 0 && by != a->uid)
			r = -EPERM;
		if (r == 0) {
			*pp = a->next;
			free(a->name);
			free(a);
		}
	} else {
		struct job **pp, *j = NULL;

		for (pp = &m->jobs; *pp; pp = &(*pp)->next)
			if (!strcmp((*pp)->name, name)) {
				j = *pp;
				break;
			}
		if (!j)
			r = -ENOENT;
		else if (by != 0 && by != j->uid)
			r = -EPERM;
		if (r == 0) {
			*pp = j->next;
			j->stop_asked = 2; /* removed: end without a checkpoint of state */
			pthread_cond_broadcast(&m->wake);
			pthread_mutex_unlock(&m->lock);
			job_stop_thread(m, j);
			pthread_mutex_lock(&m->lock);
			while (j->refs)
				pthread_cond_wait(&m->wake, &m->lock);
			job_free(j);
		}
	}
	if (r == 0) {
		rm_tree(dir);
		changed(m, k, name);
	}
	pthread_mutex_unlock(&m->lock);
	free(dir);
	return r;
}

int mining_info(struct mining *m, enum mining_kind k, const char *name, struct mining_info *ret)
{
	int r = 0;

	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&m->lock);
	if (k == MINING_PROVIDERS) {
		struct prov *p = prov_find(m, name);

		if (!p || !prov_visible(m, p))
			r = -ENOENT;
		else
			ret->uid = p->uid, ret->gid = p->gid, ret->mode = p->embedded ? 0755 : p->mode,
			ret->has_file = p->text != NULL, ret->gen = p->gen;
	} else if (k == MINING_ACCOUNTS) {
		struct account *a = account_find(m, name);

		if (!a)
			r = -ENOENT;
		else
			ret->uid = a->uid, ret->gid = a->gid, ret->mode = a->mode;
	} else {
		struct job *j = job_find(m, name);

		if (!j)
			r = -ENOENT;
		else
			ret->uid = j->uid, ret->gid = j->gid, ret->mode = j->mode,
			ret->has_file = j->text != NULL, ret->gen = j->gen,
			ret->ended = j->state == J_DONE || j->state == J_FAILED ||
				     j->state == J_STOPPED;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

int mining_names(struct mining *m, enum mining_kind k, char ***ret_names, size_t *ret_n)
{
	char **v = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	pthread_mutex_lock(&m->lock);
#define ADD(nm)                                                                                \
	do {                                                                                   \
		if (n == cap) {                                                                \
			char **nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*nv));      \
			if (!nv) {                                                             \
				r = -ENOMEM;                                                   \
				break;                                                         \
			}                                                                      \
			v = nv;                                                                \
		}                                                                              \
		if (!(v[n] = strdup(nm))) {                                                    \
			r = -ENOMEM;                                                           \
			break;                                                                 \
		}                                                                              \
		n++;                                                                           \
	} while (0)
	if (k == MINING_PROVIDERS) {
		for (struct prov *p = m->provs; p && r == 0; p = p->next)
			if (prov_visible(m, p))
				ADD(p->name);
	} else if (k == MINING_ACCOUNTS) {
		for (struct account *a = m->accounts; a && r == 0; a = a->next)
			ADD(a->name);
	} else {
		for (struct job *j = m->jobs; j && r == 0; j = j->next)
			ADD(j->name);
	}
#undef ADD
	pthread_mutex_unlock(&m->lock);
	if (r < 0) {
		mining_names_free(v, n);
		return r;
	}
	*ret_names = v;
	*ret_n = n;
	return 0;
}

void mining_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}


/* ---- a job's files ---------------------------------------------------------------------- */

static char *jpath(const struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *jpath(const struct job *j, const char *fmt, ...)
{
	char rel[256], *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	p = path2(j->dir, rel);
	return p;
}

/* Keeps the header line and the rows whose first column is at most limit. */
static int cut_rows(const char *path, double limit)
{
	char *text = NULL, *out, *p, *o;
	size_t len;
	int r = read_file(path, &text, &len), first = 1;

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	out = malloc(len + 1);
	if (!out) {
		free(text);
		return -ENOMEM;
	}
	for (p = text, o = out; *p;) {
		char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
		char *end;
		double v = strtod(p, &end);

		if (nl && (first || (end != p && v <= limit))) {
			memcpy(o, p, n);
			o += n;
		}
		first = 0;
		p += n;
	}
	r = write_file(path, out, (size_t)(o - out));
	free(out);
	free(text);
	return r;
}

/* samples.txt: sections "=== round R ..." up to limit. */
static int cut_samples(const char *path, long limit)
{
	char *text = NULL, *p;
	size_t len;
	int r = read_file(path, &text, &len);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (p = text; (p = strstr(p, "=== round ")); p++)
		if ((p == text || p[-1] == '\n') && strtol(p + 10, NULL, 10) > limit)
			break;
	r = write_file(path, text, p ? (size_t)(p - text) : len);
	free(text);
	return r;
}

static int save_frame(const char *path, const float *v, size_t n)
{
	void *f = NULL;
	size_t len = 0;
	int r = mining_wire_encode(MINING_ENC_FP32, 0, v, n, &f, &len);

	if (r == 0)
		r = write_file(path, f, len);
	free(f);
	return r;
}

static int load_frame(const char *path, float *v, size_t n)
{
	char *buf = NULL, err[128];
	size_t len = 0;
	int r = read_file(path, &buf, &len);

	if (r == 0)
		r = mining_wire_decode(buf, len, n, v, NULL, err, sizeof(err));
	free(buf);
	return r;
}

/*
 * state.json's text as the job stands now, numbered in *seq (NULL when out of memory); m->lock
 * held.  state_write() puts it on disk with the lock released: status and every other reader
 * of the job never wait for an fsync.
 */
static char *state_snapshot(struct job *j, unsigned long long *seq)
{
	json_t *o = json_object(), *ids = json_array();
	char *text = NULL;

	for (unsigned i = 0; i < j->n_slots && ids; i++)
		json_array_append_new(ids, json_string(j->slots[i].id));
	*seq = ++j->state_seq;
	if (o && ids) {
		json_object_set_new(o, "state", json_string(jstate_names[j->state]));
		json_object_set_new(o, "reason", json_string(j->reason));
		json_object_set_new(o, "round", json_integer(j->round_done));
		json_object_set_new(o, "tokens", json_integer((json_int_t)j->tokens_seen));
		json_object_set_new(o, "bytes_sent", json_integer((json_int_t)j->bytes_sent));
		json_object_set_new(o, "bytes_received", json_integer((json_int_t)j->bytes_recv));
		json_object_set_new(o, "device_seconds", json_real(j->device_seconds));
		json_object_set_new(o, "started", json_real(j->started));
		json_object_set_new(o, "replicas", ids);
		ids = NULL;
		text = json_dumps(o, JSON_INDENT(1));
	}
	json_decref(ids);
	json_decref(o);
	return text;
}

/*
 * Writes snapshot seq (text, freed) over state.json, atomically and fsync'd, unless a newer
 * one is on disk already: whichever thread writes last, state.json ends as the newest.  It
 * returns once that snapshot or a newer one is durable, so a caller's order of writes (rows,
 * then state.json, then the momentum file it replaces) holds as when the lock covered it.
 * m->lock not held.
 */
static int state_write(struct job *j, char *text, unsigned long long seq)
{
	char *p = jpath(j, "state.json");
	int r = text && p ? 0 : -ENOMEM;

	pthread_mutex_lock(&j->save_lock);
	if (r == 0 && seq > j->state_written) {
		r = write_file(p, text, strlen(text));
		if (r == 0)
			j->state_written = seq;
	}
	pthread_mutex_unlock(&j->save_lock);
	free(text);
	free(p);
	return r;
}

/* The two at once, m->lock held: for the calls a user's own write makes (a job submitted,
 * controlled), not for those a running job makes. */
static int save_state(struct job *j)
{
	unsigned long long seq;
	char *text = state_snapshot(j, &seq);

	return state_write(j, text, seq);
}

static void load_state(struct job *j, json_t **ret_ids)
{
	char *p = jpath(j, "state.json"), *text = NULL;
	json_t *o = NULL;
	const char *s;

	if (p && read_file(p, &text, NULL) == 0)
		o = json_loads(text, 0, NULL);
	free(text);
	free(p);
	if (!o)
		return;
	s = json_string_value(json_object_get(o, "state"));
	for (int i = 0; s && i <= J_STOPPED; i++)
		if (!strcmp(s, jstate_names[i]))
			j->state = (enum jstate)i;
	snprintf(j->reason, sizeof(j->reason), "%s",
		 json_string_value(json_object_get(o, "reason")) ?: "");
	j->round_done = (long)json_integer_value(json_object_get(o, "round"));
	j->tokens_seen = (uint64_t)json_integer_value(json_object_get(o, "tokens"));
	j->bytes_sent = (uint64_t)json_integer_value(json_object_get(o, "bytes_sent"));
	j->bytes_recv = (uint64_t)json_integer_value(json_object_get(o, "bytes_received"));
	j->device_seconds = json_real_value(json_object_get(o, "device_seconds"));
	j->started = json_real_value(json_object_get(o, "started"));
	if (ret_ids) {
		*ret_ids = json_incref(json_object_get(o, "replicas"));
	}
	json_decref(o);
}

/* ---- as the job's owner ------------------------------------------------------------------- */

/* Runs argv as the owner with in_fd / out_fd; its stderr's first line into err. */
static int run_as_owner(struct job *j, char *const argv[], int in_fd, int out_fd, char *err,
			size_t errlen)
{
	struct plan_proc_user owner = { j->uid, j->gid };
	int efd[2], status = 0, null_fd = -1, r;
	char buf[512];
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(efd, O_CLOEXEC) < 0)
		return -errno;
	if (in_fd < 0)
		in_fd = null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	r = plan_proc_spawn_as(&owner, argv, in_fd, out_fd, efd[1], &pid);
	close(efd[1]);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", argv[0], strerror(-r));
		goto out;
	}
	while ((n = read(efd[0], buf + got, sizeof(buf) - 1 - got)) > 0 && got < sizeof(buf) - 1)
		got += (size_t)n;
	while (read(efd[0], buf + sizeof(buf) - 1, 0) > 0)
		;
	buf[got] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(err, errlen, "%s", got ? buf : "failed");
		r = -EIO;
	}
out:
	close(efd[0]);
	if (null_fd >= 0)
		close(null_fd);
	return r;
}

/* Copies the tree's rel (read as the owner) into the job's folder as name. */
static int fetch_as_owner(struct job *j, const char *key, const char *rel, const char *name,
			  char *err, size_t errlen)
{
	char *src = NULL, *dst = jpath(j, "%s", name), e[300] = "";
	int fd, r = tree_path(j->m->tree, rel, &src);

	if (r == -EINVAL) {
		free(dst);
		return fail(err, errlen, "%s %s: not a path in the tree", key, rel);
	}
	if (r < 0 || !dst) {
		free(src);
		free(dst);
		return -ENOMEM;
	}
	fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
	} else {
		char *argv[] = { "/bin/cat", "--", src, NULL };

		r = run_as_owner(j, argv, -1, fd, e, sizeof(e));
		close(fd);
		if (r < 0) {
			const char *why = strrchr(e, ':');

			snprintf(err, errlen, "%s %s:%s", key, rel, why ? why + 1 : " unreadable");
			r = -EINVAL;
		}
	}
	free(src);
	free(dst);
	return r;
}

/* Writes the job folder's file name into models/<job>/ as the owner. */
static int put_as_owner(struct job *j, const char *name, const char *dest_name, char *err,
			size_t errlen)
{
	char *src = jpath(j, "%s", name), *dest = NULL;
	char *argv[] = { "/bin/sh", "-c", "cat >\"$1.tmp\" && mv -f \"$1.tmp\" \"$1\"", "sh",
			 NULL, NULL };
	int fd = -1, out = -1, r = -ENOMEM;

	if (!src || asprintf(&dest, "%s/models/%s/%s", j->m->tree, j->name, dest_name) < 0)
		goto out;
	argv[4] = dest;
	fd = open(src, O_RDONLY | O_CLOEXEC);
	out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	r = fd < 0 ? -errno : run_as_owner(j, argv, fd, out, err, errlen);
out:
	if (fd >= 0)
		close(fd);
	if (out >= 0)
		close(out);
	free(src);
	free(dest);
	return r;
}

/* ---- data --------------------------------------------------------------------------------- */

static int load_tokens(const char *path, double val_fraction, struct gpu_data *d, char *err,
		       size_t errlen, const char *key)
{
	int r = gpu_data_open(d, path, val_fraction);

	if (r < 0)
		return fail(err, errlen, "%s: %s", key, r == -EINVAL ? "not a token file or too "
			    "short" : strerror(-r));
	return 0;
}

/* The training tokens (then, for val-data=, the validation file's) in j->tokens. */
static int prepare_data(struct job *j, char *err, size_t errlen)
{
	struct gpu_data d = { 0 }, v = { 0 };
	char *tok = NULL, *vtok = NULL, *dir = jpath(j, "data"), *vdir = jpath(j, "val");
	char *ready = NULL;
	size_t shard;
	int r, have = 0;

	if (!dir || !vdir) {
		r = -ENOMEM;
		goto out;
	}
	mkdir(dir, 0700);
	mkdir(vdir, 0700);
	/* a resumed job trains on the tokens its first rounds had */
	ready = jpath(j, "data/ready");
	if (!ready) {
		r = -ENOMEM;
		goto out;
	}
	have = access(ready, F_OK) == 0;
	if (!have && tree_wait(j->m->tree) < 0) {
		r = fail(err, errlen, "the tree is not mounted");
		goto out;
	}
	r = have ? 0 : fetch_as_owner(j, "data", j->o.data, "data/raw", err, errlen);
	if (r == 0) {
		char *raw = path2(dir, "raw");

		r = raw ? gpu_train_data(raw, dir, &tok) : -ENOMEM;
		free(raw);
		if (r < 0)
			r = fail(err, errlen, "data %s: %s", j->o.data, strerror(-r));
	}
	if (r == 0)
		r = load_tokens(tok, j->val_data ? 1e-6 : j->o.val_fraction, &d, err, errlen, "data");
	if (r == 0 && j->val_data) {
		r = have ? 0 : fetch_as_owner(j, "val-data", j->val_data, "val/raw", err, errlen);
		if (r == 0) {
			char *raw = path2(vdir, "raw");

			r = raw ? gpu_train_data(raw, vdir, &vtok) : -ENOMEM;
			free(raw);
			if (r < 0)
				r = fail(err, errlen, "val-data %s: %s", j->val_data, strerror(-r));
		}
		if (r == 0)
			r = load_tokens(vtok, 0.99, &v, err, errlen, "val-data");
	}
	if (r < 0)
		goto out;
	if (d.n_tokens == 0) {
		r = fail(err, errlen, "data %s: empty", j->o.data);
		goto out;
	}
	if (d.vocab_size > j->o.cfg.vocab_size || (v.tokens && v.vocab_size > j->o.cfg.vocab_size)) {
		r = fail(err, errlen, "the data's vocabulary is larger than vocab=%d",
			 j->o.cfg.vocab_size);
		goto out;
	}
	{
		size_t n_train = j->val_data ? d.n_tokens : d.n_train;
		size_t n_val = j->val_data ? v.n_tokens : d.n_tokens - d.n_train;

		shard = n_train / j->replicas;
		if (shard < (size_t)j->o.opts.max_seq + 2 || n_val < (size_t)j->o.opts.max_seq + 2) {
			/* named by the file that is short: val-data's own, when it has one */
			int val_short = j->val_data && shard >= (size_t)j->o.opts.max_seq + 2;

			r = val_short ? fail(err, errlen, "val-data %s: too short (the validation "
					     "split needs more than seq=%d tokens)", j->val_data,
					     j->o.opts.max_seq)
				      : fail(err, errlen, "data %s: too short for %u replicas (each "
					     "shard and the validation split need more than seq=%d "
					     "tokens)", j->o.data, j->replicas, j->o.opts.max_seq);
			goto out;
		}
		j->tokens = malloc((n_train + n_val) * sizeof(uint16_t));
		if (!j->tokens) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(j->tokens, d.tokens, n_train * sizeof(uint16_t));
		memcpy(j->tokens + n_train, j->val_data ? v.tokens : d.tokens + d.n_train,
		       n_val * sizeof(uint16_t));
		j->n_train = n_train;
		j->n_tokens = n_train + n_val;
		j->vocab = d.vocab_size;
	}
	if (!have)
		r = write_file(ready, "", 0);
out:
	free(ready);
	gpu_data_release(&d);
	gpu_data_release(&v);
	free(tok);
	free(vtok);
	free(dir);
	free(vdir);
	return r;
}

/* The shard of slot i: a view of the training split. */
static void shard_range(const struct job *j, unsigned i, size_t *lo, size_t *n)
{
	size_t each = j->n_train / j->replicas;

	*lo = each * i;
	*n = each;
}

/* ---- the job's thread ---------------------------------------------------------------------- */

static const char *state_words(const struct mining_replica_status *st, char *buf, size_t len)
{
	if (st->state == MINING_REPLICA_EXITED)
		snprintf(buf, len, "exited with code %d", st->exit_code);
	else if (st->state == MINING_REPLICA_KILLED)
		snprintf(buf, len, "killed by signal %d", st->signal);
	else
		snprintf(buf, len, "lost by its provider");
	return buf;
}

/* Starts slot i's process (catch-up: it fetches the latest global weights itself). */
static void launch_slot(struct job *j, unsigned i)
{
	struct mining *m = j->m;
	struct slot *s = &j->slots[i];
	struct plan_proc_user owner = { j->uid, j->gid };
	char slot[16], threads[16], err[MINING_ERR_MAX] = "", id[MINING_ID_MAX] = "", *log = jpath(j, "log");
	char *argv[] = { (char *)m->exe, "--mining-replica", m->url, j->name, slot, threads, NULL };
	char name[160];
	struct mining_launch l = { argv, &owner, j->cpus, log, name, j->token };
	char *snap = NULL;
	unsigned long long seq = 0;
	int r;

	snprintf(slot, sizeof(slot), "%u", i);
	snprintf(threads, sizeof(threads), "%u", j->cpus);
	snprintf(name, sizeof(name), "%s/%u", j->name, i);
	s->launches++;
	r = s->prov->ops->launch(s->prov->p, &l, id, err);
	pthread_mutex_lock(&m->lock);
	if (r < 0) {
		if (!s->posted)
			s->dropped = 1;
		/* cut to the row's width */
		snprintf(s->reason, sizeof(s->reason), "launch on %.40s: %.100s", s->prov->name, err);
		snprintf(s->prov->error, sizeof(s->prov->error), "%s", err);
	} else {
		snprintf(s->id, sizeof(s->id), "%s", id);
		/* kept at once: a daemon killed now cancels this process when it resumes, not
		 * only the one it replaced (a slurm job outlives the daemon) */
		snap = state_snapshot(j, &seq);
	}
	pthread_mutex_unlock(&m->lock);
	if (snap)
		state_write(j, snap, seq);
	if (r < 0)
		job_log(j, "replica %u: %s", i, s->reason);
	else
		job_log(j, "replica %u: started on %s as %s", i, s->prov->name, id);
	free(log);
}

/* Polls slot i's process: an ended one is dropped from the round (unless it posted) and
 * started again. */
static void watch_slot(struct job *j, unsigned i, int relaunch)
{
	struct mining *m = j->m;
	struct slot *s = &j->slots[i];
	struct mining_replica_status st = { 0 };
	char words[64];
	int r;

	if (!s->id[0]) {
		if (relaunch && s->launches < LAUNCH_MAX)
			launch_slot(j, i);
		return;
	}
	r = s->prov->ops->poll(s->prov->p, s->id, &st);
	if (r == 0 && (st.state == MINING_REPLICA_RUNNING || st.state == MINING_REPLICA_PENDING)) {
		pthread_mutex_lock(&m->lock);
		s->ds_now = s->ds_acc + st.device_seconds;
		pthread_mutex_unlock(&m->lock);
		return;
	}
	if (r < 0)
		st.state = MINING_REPLICA_LOST;
	state_words(&st, words, sizeof(words));
	job_log(j, "replica %u (%s on %s): %s", i, s->id, s->prov->name, words);
	s->prov->ops->forget(s->prov->p, s->id);
	pthread_mutex_lock(&m->lock);
	s->ds_now = s->ds_acc + st.device_seconds;
	s->ds_acc = s->ds_now; /* the next process counts from here */
	s->id[0] = '\0';
	if (!s->posted) {
		s->dropped = 1;
		snprintf(s->reason, sizeof(s->reason), "%s", words);
	}
	pthread_mutex_unlock(&m->lock);
	if (relaunch && s->launches < LAUNCH_MAX)
		launch_slot(j, i);
}

static int settled_locked(struct job *j)
{
	for (unsigned i = 0; i < j->n_slots; i++)
		if (!j->slots[i].posted && !j->slots[i].dropped)
			return 0;
	return 1;
}

static void append_rows(struct job *j, long r, const struct slot *sl, unsigned acc,
			double train_loss, float val_loss, double norm, double wall, uint64_t sent,
			uint64_t recv)
{
	char line[1024], *p;
	struct gpu_train_row row = { 0 };
	uint64_t tok_round = 0;

	p = jpath(j, "contributions.tsv");
	if (p && access(p, F_OK) < 0)
		append_file(p, contrib_header);
	for (unsigned i = 0; i < j->n_slots && p; i++) {
		const struct slot *s = &sl[i];
		uint64_t tok = s->posted ? (uint64_t)s->steps * j->o.opts.max_batch * j->o.opts.max_seq : 0;

		tok_round += tok;
		snprintf(line, sizeof(line), "%ld\t%u\t%s\t%s\t%ld\t%llu\t%.3f\t%d\t%s\n", r, i,
			 s->prov->name, s->id[0] ? s->id : "-", s->posted ? s->steps : 0,
			 (unsigned long long)tok, s->ds_now - s->ds_round0, s->posted,
			 s->posted ? "-" : s->reason[0] ? s->reason : "no pseudo-gradient");
		append_file(p, line);
	}
	free(p);
	p = jpath(j, "rounds.tsv");
	if (p && access(p, F_OK) < 0)
		append_file(p, rounds_header);
	snprintf(line, sizeof(line), "%ld\t%.9g\t%.9g\t%llu\t%llu\t%.3f\t%u\t%u\n", r, val_loss,
		 train_loss, (unsigned long long)sent, (unsigned long long)recv, wall, acc,
		 j->n_slots);
	if (p)
		append_file(p, line);
	free(p);
	j->tokens_seen += tok_round;
	row.step = r * j->H;
	row.train_loss = (float)train_loss;
	row.val_loss = val_loss;
	row.lr = gpu_lr_schedule(row.step - 1, j->o.warmup, j->o.steps, j->o.lr, j->o.min_lr);
	row.grad_norm = (float)norm;
	row.tokens_per_s = wall > 0 ? (double)tok_round / wall : 0;
	row.ms_per_step = wall * 1e3 / (double)j->H;
	row.tokens_seen = j->tokens_seen;
	p = jpath(j, "metrics.tsv");
	if (p && access(p, F_OK) < 0)
		append_file(p, gpu_train_tsv_header);
	if (p && gpu_train_row_format(&row, line, sizeof(line)) > 0)
		append_file(p, line);
	free(p);
}

static void set_state(struct job *j, enum jstate st, const char *reason)
{
	struct mining *m = j->m;
	unsigned long long seq;
	char *snap;

	pthread_mutex_lock(&m->lock);
	pthread_cond_broadcast(&m->wake);
	j->state = st;
	snprintf(j->reason, sizeof(j->reason), "%s", reason ? reason : "");
	snap = state_snapshot(j, &seq);
	j->gen++;
	changed(m, MINING_JOBS, j->name);
	pthread_mutex_unlock(&m->lock);
	state_write(j, snap, seq);
}

/*
 * providers=any: the configured providers whose status says alive now, in use[] (at most 64).
 * m->lock held; released while they are asked (a slurm one runs sinfo), p->readers keeping
 * each from being closed meanwhile, as prov_status() does.
 */
static size_t alive_providers(struct mining *m, struct prov *use[64])
{
	struct prov *cand[64];
	int alive[64];
	size_t n = 0, k = 0;
	char err[MINING_ERR_MAX];

	for (struct prov *p = m->provs; p && n < 64; p = p->next)
		if (p->p && !p->embedded)
			cand[n++] = p, p->readers++;
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n; i++)
		alive[i] = cand[i]->ops->alive(cand[i]->p, err) == 0;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		cand[i]->readers--;
		if (alive[i] && cand[i]->p)
			use[k++] = cand[i];
	}
	if (n)
		pthread_cond_broadcast(&m->wake);
	return k;
}

/* The slots and their providers: the job's list, or every provider alive now, or the
 * embedded local one.  m->lock held (released a while for providers=any). */
static int choose_providers(struct job *j, char *err, size_t errlen)
{
	struct mining *m = j->m;
	struct prov *use[64];
	size_t n = 0;

	if (j->account[0]) {
		struct account *a = account_find(m, j->account);

		if (!a)
			return fail(err, errlen, "account: %s is not an account under "
				    "mining/accounts/", j->account);
		if (j->uid != 0 && a->uid != j->uid)
			return fail(err, errlen, "account: %s belongs to another user", j->account);
	}
	if (j->n_providers) {
		for (size_t i = 0; i < j->n_providers && n < 64; i++) {
			struct prov *p = prov_find(m, j->providers[i]);

			if (!p || !prov_visible(m, p))
				return fail(err, errlen, "providers: no provider named %s",
					    j->providers[i]);
			if (!p->p)
				return fail(err, errlen, "providers: %s is not usable: %s", p->name,
					    p->error[0] ? p->error : p->serve ? "it serves another "
					    "coordinator" : "no provider.json");
			use[n++] = p;
		}
	} else {
		n = alive_providers(m, use);
		for (struct prov *p = m->provs; p && !n; p = p->next)
			if (p->embedded && prov_visible(m, p) && p->p)
				use[n++] = p;
		if (!n)
			return fail(err, errlen, "providers: none is usable");
	}
	/* a job started again (resumed, or after a stop) may hold pseudo-gradients posted to a
	 * round that never closed: that round is run again from the start */
	for (unsigned i = 0; j->slots && i < j->n_slots; i++)
		free(j->slots[i].delta);
	free(j->slots);
	j->slots = calloc(j->replicas, sizeof(*j->slots));
	if (!j->slots)
		return -ENOMEM;
	j->n_slots = j->replicas;
	for (unsigned i = 0; i < j->replicas; i++)
		j->slots[i].prov = use[i % n];
	for (size_t i = 0; i < n; i++)
		use[i]->jobs++;
	return 0;
}

static void release_providers(struct job *j)
{
	struct mining *m = j->m;

	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < j->n_slots; i++) {
		int first = 1;

		for (unsigned k = 0; k < i; k++)
			first &= j->slots[k].prov != j->slots[i].prov;
		if (first && j->slots[i].prov->jobs)
			j->slots[i].prov->jobs--;
	}
	pthread_mutex_unlock(&m->lock);
}

static void stop_slots(struct job *j)
{
	for (unsigned i = 0; i < j->n_slots; i++) {
		struct slot *s = &j->slots[i];

		if (!s->id[0])
			continue;
		s->prov->ops->cancel(s->prov->p, s->id);
		s->prov->ops->forget(s->prov->p, s->id);
		pthread_mutex_lock(&j->m->lock);
		s->id[0] = '\0';
		pthread_mutex_unlock(&j->m->lock);
	}
}

static void sample_text(struct job *j, struct gpu_model *em, long r)
{
	int n = j->o.sample_len, bytes = j->o.cfg.vocab_size == 256;
	int32_t *tok = malloc(((size_t)n + 1) * sizeof(*tok));
	char *text = malloc(bytes ? (size_t)n + 64 : (size_t)n * 7 + 64), *p = jpath(j, "samples.txt");
	uint64_t rng = j->o.seed ^ (uint64_t)r;
	size_t len;

	if (!tok || !text || !p || n < 1)
		goto out;
	tok[0] = '\n' < j->o.cfg.vocab_size ? '\n' : 0;
	if (gpu_model_sample(em, tok, 1, n, j->o.temperature, j->o.top_k, &rng) < 0)
		goto out;
	len = (size_t)sprintf(text, "=== round %ld (step %ld)\n", r, r * j->H);
	for (int i = 1; i <= n; i++)
		if (bytes)
			text[len++] = (char)tok[i] ? (char)tok[i] : ' ';
		else
			len += (size_t)sprintf(text + len, "%s%d", i > 1 ? " " : "", tok[i]);
	text[len++] = '\n';
	text[len] = '\0';
	append_file(p, text);
out:
	free(tok);
	free(text);
	free(p);
}

/*
 * The ledger's hook for rounds up to r (mining_job.h, on_round): the job's context (options,
 * tokens) and its slots as they are now, a template (shard, H, threads, provider); what each
 * slot did in each round the hook reads from the job folder, where rounds up to r are durable.
 */
static void call_hook(struct job *j, long r)
{
	struct mining *m = j->m;
	struct mining_contribution *c;
	struct mining_round rd = { 0 };
	char *p0 = jpath(j, "weights/%ld.pg", r - 1), *p1 = jpath(j, "weights/%ld.pg", r);

	if (!m->cfg.on_round || !p0 || !p1 || !(c = calloc(j->n_slots, sizeof(*c)))) {
		free(p0);
		free(p1);
		return;
	}
	for (unsigned i = 0; i < j->n_slots; i++) {
		c[i].slot = i;
		c[i].n_shards = j->n_slots;
		c[i].provider = j->slots[i].prov->name;
		c[i].replica = "";
		c[i].reason = "";
		c[i].seed = mining_window_seed(j->o.seed, r, i);
		c[i].step0 = (r - 1) * j->H;
		c[i].H = j->H;
		c[i].threads = j->cpus;
	}
	rd.job = j->name;
	rd.account = j->account;
	rd.round = r;
	rd.rounds = j->rounds;
	rd.val_loss = rd.train_loss = NAN;
	rd.start_path = p0;
	rd.start_sha256 = "";
	rd.end_path = p1;
	rd.end_sha256 = "";
	rd.c = c;
	rd.n = j->n_slots;
	rd.opts = &j->o;
	rd.tokens = j->tokens;
	rd.n_train = j->n_train;
	rd.n_tokens = j->n_tokens;
	rd.vocab = j->vocab;
	rd.outer_lr = j->outer_lr;
	rd.overlap = j->overlap;
	rd.outer_mu = j->outer_mu;
	m->cfg.on_round(m->cfg.on_round_arg, &rd);
	free(c);
	free(p0);
	free(p1);
}

/* The final model: into the job folder, then models/<job>/ as the owner. */
static int save_model(struct job *j, struct gpu_model *em, char *err, size_t errlen)
{
	struct gpu_ckpt_meta meta = { -1, j->o.seed };
	char *dir = jpath(j, "final");
	int r;

	if (!dir)
		return -ENOMEM;
	rm_tree(dir);
	r = gpu_ckpt_save(em, dir, &meta);
	if (r < 0)
		snprintf(err, errlen, "saving the model: %s", strerror(-r));
	if (r == 0)
		r = put_as_owner(j, "final/config.json", "config.json", err, errlen);
	if (r == 0)
		r = put_as_owner(j, "final/model.safetensors", "model.safetensors", err, errlen);
	if (r < 0 && !err[0])
		snprintf(err, errlen, "writing models/%s: %s", j->name, strerror(-r));
	free(dir);
	return r;
}

static void write_result(struct job *j, float val)
{
	json_t *o = json_object();
	char *text, *p = jpath(j, "result"), model[300];

	snprintf(model, sizeof(model), "models/%s", j->name);
	json_object_set_new(o, "state", json_string(jstate_names[j->state]));
	if (j->reason[0])
		json_object_set_new(o, "reason", json_string(j->reason));
	if (j->state == J_DONE)
		json_object_set_new(o, "model", json_string(model));
	json_object_set_new(o, "rounds", json_integer(j->round_done));
	json_object_set_new(o, "replicas", json_integer(j->replicas));
	json_object_set_new(o, "inner_steps", json_integer(j->H));
	json_object_set_new(o, "compression", json_string(mining_enc_name(j->enc)));
	json_object_set_new(o, "val_loss", isfinite(val) ? json_real(val) : json_null());
	json_object_set_new(o, "tokens", json_integer((json_int_t)j->tokens_seen));
	json_object_set_new(o, "device_seconds", json_real(j->device_seconds));
	json_object_set_new(o, "bytes_sent", json_integer((json_int_t)j->bytes_sent));
	json_object_set_new(o, "bytes_received", json_integer((json_int_t)j->bytes_recv));
	text = json_dumps(o, JSON_INDENT(2));
	if (text && p)
		write_file(p, text, strlen(text));
	free(text);
	free(p);
	json_decref(o);
}

/* The global weights W, momentum v: from the last completed round, or a fresh start. */
static int load_round(struct job *j, struct gpu_model *em, float *W, float *v, char *err,
		      size_t errlen)
{
	char *pw = jpath(j, "weights/%ld.pg", j->round_done), *pv = jpath(j, "momentum/%ld.pg",
									   j->round_done);
	int r = -ENOMEM;

	if (!pw || !pv)
		goto out;
	r = load_frame(pw, W, j->n);
	if (r == -ENOENT && j->round_done == 0) {
		r = gpu_model_read(em, GPU_BUF_PARAMS, W);
		if (r == 0)
			r = save_frame(pw, W, j->n);
	}
	if (r == 0 && j->round_done > 0)
		r = load_frame(pv, v, j->n);
	if (r < 0)
		snprintf(err, errlen, "the state of round %ld: %s", j->round_done, strerror(-r));
out:
	free(pw);
	free(pv);
	return r;
}

/*
 * overlap=1, a job (re)started after round_done (W: its weights): each slot's window of the
 * next round starts from its own pseudo-gradient of round_done when that one was accepted
 * (contributions.tsv, whose rows of a round are written before state.json names it), as in
 * an uninterrupted job.  wprev and wprev2 get W(round_done - 1) and W(round_done - 2), each
 * W(0) where there is none.
 */
static int load_own(struct job *j, const float *W, char *err, size_t errlen)
{
	char *p = NULL, *text = NULL, *line, *save = NULL;
	long rb = j->round_done - 1, rp = j->round_done > 1 ? j->round_done - 2 : 0;
	int r = 0;

	for (unsigned i = 0; i < j->n_slots; i++)
		j->slots[i].own = 0;
	if (!j->overlap)
		return 0;
	if (j->round_done < 1) {
		memcpy(j->wprev, W, j->n * sizeof(float));
		memcpy(j->wprev2, W, j->n * sizeof(float));
		return 0;
	}
	p = jpath(j, "weights/%ld.pg", rb);
	r = p ? load_frame(p, j->wprev, j->n) : -ENOMEM;
	free(p);
	p = jpath(j, "weights/%ld.pg", rp);
	if (r == 0)
		r = p ? load_frame(p, j->wprev2, j->n) : -ENOMEM;
	free(p);
	p = NULL;
	if (r == 0 && (p = jpath(j, "contributions.tsv")) && read_file(p, &text, NULL) == 0)
		for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			long rd;
			unsigned slot;
			int acc;

			/* round slot provider replica steps tokens device_seconds accepted */
			if (sscanf(line, "%ld\t%u\t%*s\t%*s\t%*s\t%*s\t%*s\t%d", &rd, &slot,
				   &acc) == 3 && rd == j->round_done && slot < j->n_slots)
				j->slots[slot].own = acc == 1;
		}
	free(text);
	free(p);
	if (r < 0)
		snprintf(err, errlen, "the weights of rounds %ld and %ld: %s", rp, rb,
			 strerror(-r));
	return r;
}

static void cut_reports(struct job *j)
{
	static const char *const files[] = { "rounds.tsv", "contributions.tsv" };
	char *p;

	for (int i = 0; i < 2; i++) {
		if ((p = jpath(j, "%s", files[i])))
			cut_rows(p, (double)j->round_done);
		free(p);
	}
	if ((p = jpath(j, "metrics.tsv")))
		cut_rows(p, (double)(j->round_done * j->H));
	free(p);
	if ((p = jpath(j, "samples.txt")))
		cut_samples(p, j->round_done);
	free(p);
	if ((p = jpath(j, "result")))
		unlink(p);
	free(p);
}

/*
 * The open round's slots polled (watch_slot()): all of them as the round opens (`all`: every
 * round meters each replica at least once, however short), then those without a process at
 * once and the others once WATCH_S has passed since the last poll.  It stops when the round
 * settles: the last post closes the round without waiting for the rest of a sweep (a slurm
 * poll is an squeue process); their metering goes on at the next round's opening.  m->lock
 * not held.
 */
static void watch_slots(struct job *j, int all)
{
	double now = clock_mono_s();
	int due = all || now - j->t_watch >= WATCH_S, settled;

	if (due)
		j->t_watch = now;
	for (unsigned i = 0; i < j->n_slots; i++) {
		pthread_mutex_lock(&j->m->lock);
		settled = settled_locked(j);
		pthread_mutex_unlock(&j->m->lock);
		if (settled)
			break;
		if (due || !j->slots[i].id[0])
			watch_slot(j, i, 1);
	}
}

/* Waits for round r's pseudo-gradients; 1 when the job was asked to stop. */
static int wait_round(struct job *j)
{
	struct mining *m = j->m;
	double t0 = clock_mono_s();
	int stop;

	watch_slots(j, 1);
	pthread_mutex_lock(&m->lock);
	while (!settled_locked(j) && !j->stop_asked && !m->closing && !j->keep_error &&
	       clock_mono_s() - t0 < j->round_timeout) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250000000;
		if (ts.tv_nsec >= 1000000000)
			ts.tv_sec++, ts.tv_nsec -= 1000000000;
		pthread_cond_timedwait(&m->wake, &m->lock, &ts);
		if (settled_locked(j))
			break;
		pthread_mutex_unlock(&m->lock);
		watch_slots(j, 0);
		pthread_mutex_lock(&m->lock);
	}
	for (unsigned i = 0; i < j->n_slots; i++) {
		struct slot *s = &j->slots[i];

		if (!s->posted && !s->dropped) {
			s->dropped = 1;
			snprintf(s->reason, sizeof(s->reason), "no pseudo-gradient within "
				 "round-timeout=%g s", j->round_timeout);
		}
	}
	j->round_open = 0; /* later posts get 409 */
	stop = j->stop_asked || m->closing;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

/*
 * Replicas that a daemon killed with -9 left behind: a provider that does not make them its
 * children (slurm) keeps running them, holding its CPUs and posting as the job's replicas.
 * They are cancelled by the ids state.json kept, before new ones start; choose_providers()
 * deals the slots to the same providers again, so each id goes back to the one that made it
 * (a provider that does not know an id, or a local one whose process is gone, does nothing).
 */
static void stop_previous(struct job *j)
{
	char *p = jpath(j, "state.json"), *text = NULL;
	json_t *o = NULL, *ids;

	if (p && read_file(p, &text, NULL) == 0)
		o = json_loads(text, 0, NULL);
	free(text);
	free(p);
	ids = json_object_get(o, "replicas");
	for (unsigned i = 0; i < j->n_slots && i < json_array_size(ids); i++) {
		const char *id = json_string_value(json_array_get(ids, i));
		struct prov *pv = j->slots[i].prov;

		if (id && *id && pv && pv->p) {
			pv->ops->cancel(pv->p, id);
			pv->ops->forget(pv->p, id);
		}
	}
	json_decref(o);
}

/*
 * W += u, and *ret the frame of u the replicas holding the previous W get instead of the new
 * one.  W moves by exactly the values that frame decodes to, the sum a
 * replica holding the previous W computes too, so that both hold bit-identical weights
 * without W crossing the wire again.  int8 (INTELLECT-1 quantises both directions): u as its
 * int8 frame decodes; fp32: u itself (the frame is exact), an update packing smaller than
 * the weights (its exponents are closer together).
 */
static int outer_update(struct job *j, float *W, float *u, struct two_frames *ret)
{
	char err[128];
	void *plain = NULL;
	size_t plen = 0;
	int r;

	r = mining_wire_encode(j->enc, j->block, u, j->n, &plain, &plen);
	if (r == 0)
		r = mining_wire_decode(plain, plen, j->n, u, NULL, err, sizeof(err));
	if (r < 0) {
		free(plain);
		return r;
	}
	r = two_frames_set(ret, plain, plen);
	if (r < 0)
		return r;
	for (size_t k = 0; k < j->n; k++)
		W[k] += u[k];
	return 0;
}

/* A round whose W(r) is computed and saved, not yet validated nor reported. */
struct closed {
	long rd;                    /* 0: none */
	unsigned acc;
	double train_loss, norm, wall;
	uint64_t sent, recv;
	int saved;                  /* W(rd) and its momentum are on disk */
	struct slot *slots;         /* the slots as the round closed (no deltas) */
};

/*
 * W(c->rd) and its momentum, fsync'd.  Called once the next round is open, so that the
 * replicas start it without waiting for the disk: a kill -9 before the save resumes at an
 * earlier round (state.json names the last reported one, and its files were saved before).
 * On error the round is dropped (not reported).
 */
static int save_closed(struct job *j, const float *W, const float *v, struct closed *c,
		       char *err, size_t errlen)
{
	char *pw, *pv;
	int r;

	if (!c->rd || c->saved)
		return 0;
	pw = jpath(j, "weights/%ld.pg", c->rd);
	pv = jpath(j, "momentum/%ld.pg", c->rd);
	r = pw && pv ? save_frame(pw, W, j->n) : -ENOMEM;
	if (r == 0)
		r = save_frame(pv, v, j->n);
	free(pw);
	free(pv);
	/* the pseudo-gradients as posted (kept unsynced then), before anything names the round */
	for (unsigned i = 0; i < j->n_slots && r == 0; i++)
		if (c->slots[i].posted && c->slots[i].delta_path[0])
			r = fsync_path(c->slots[i].delta_path);
	if (r == 0) {
		char *pd = jpath(j, "deltas");

		r = pd ? fsync_path(pd) : -ENOMEM;
		free(pd);
	}
	if (r < 0) {
		snprintf(err, errlen, "saving round %ld: %s", c->rd, strerror(-r));
		c->rd = 0;
		return r;
	}
	c->saved = 1;
	return 0;
}

/*
 * Round c->rd's report: W (= W(rd)) validated, its rows, samples, state.json (round_done =
 * rd, written last: a kill -9 before it resumes at rd - 1 and runs rd again, its rows cut);
 * the ledger's thread (struct booker) is woken to pay it.  It runs once the next round is
 * open, while the replicas compute (validation is off the rounds' critical path); rows stay in
 * round order, as one thread writes them.
 */
static int report_round(struct job *j, struct gpu_model *em, const float *W,
			const struct gpu_data *view, struct closed *c, float *val, char *err,
			size_t errlen)
{
	struct mining *m = j->m;
	long rd = c->rd;
	unsigned long long seq;
	char *snap;
	int r;

	if (!rd)
		return 0;
	c->rd = 0;
	if ((r = gpu_model_write(em, GPU_BUF_PARAMS, W)) < 0 ||
	    (r = gpu_train_eval(em, view, &j->o, j->o.seed, val)) < 0) {
		snprintf(err, errlen, "validating round %ld: %s", rd, strerror(-r));
		return r;
	}
	append_rows(j, rd, c->slots, c->acc, c->train_loss, *val, c->norm, c->wall, c->sent,
		    c->recv);
	if (j->o.sample_every && (rd * j->H) % j->o.sample_every == 0 && rd < j->rounds)
		sample_text(j, em, rd);
	pthread_mutex_lock(&m->lock);
	/* counted with round_done, in the same state.json */
	for (unsigned i = 0; i < j->n_slots; i++) {
		double ds = c->slots[i].ds_now - c->slots[i].ds_round0;

		j->device_seconds += ds;
		c->slots[i].prov->device_seconds += ds;
	}
	j->round_done = rd;
	snap = state_snapshot(j, &seq);
	j->gen++;
	changed(m, MINING_JOBS, j->name);
	pthread_mutex_unlock(&m->lock);
	/* durable before the momentum it replaces goes */
	if ((r = state_write(j, snap, seq)) < 0) {
		snprintf(err, errlen, "saving round %ld: %s", rd, strerror(-r));
		return r;
	}
	{
		char *old = jpath(j, "momentum/%ld.pg", rd - 1);

		if (old && rd > 1)
			unlink(old);
		free(old);
	}
	return 0;
}

/*
 * The closed round's save and report (save_closed(), report_round()) on a thread of their
 * own, beside the job's thread, which meanwhile waits for the next round and closes it: the
 * disk (fsyncs) and the validation then never delay a round's close, whatever they take, up
 * to a round.  One report at a time: the job's thread joins it before handing over the next,
 * so the rows stay in round order and at most one round is unreported.  It works on copies of
 * W and v (the job's thread moves them at the next close) and on the evaluation model, which
 * the job's thread leaves alone while the loop runs.
 * It runs at a lower priority (nice + REPORTER_NICE): on a machine that also runs replicas
 * (the local provider) its validation would otherwise take a core's share from some of them,
 * whose windows then end after the others', and every replica waits at the round's close for
 * the slowest.  A report that the job's thread has to wait for is given its priority back
 * (where the daemon may: root, or RLIMIT_NICE), so that other load on the machine does not
 * stretch it across rounds; its engine threads, started with it, keep theirs.
 */
#define REPORTER_NICE 10

struct reporter {
	struct job *j;
	struct gpu_model *em;
	const struct gpu_data *view;
	float *W, *v;               /* W(c.rd) and its momentum */
	struct closed c;            /* with a slots array of its own */
	pthread_t th;
	pid_t tid;                  /* the thread's, once it runs (atomic) */
	int running, r;
	float val;
	char err[600];
};

static void *reporter_main(void *arg)
{
	struct reporter *p = arg;

	thread_nice(REPORTER_NICE);
	__atomic_store_n(&p->tid, gettid(), __ATOMIC_RELEASE);
	p->r = save_closed(p->j, p->W, p->v, &p->c, p->err, sizeof(p->err));
	if (p->r == 0)
		p->r = report_round(p->j, p->em, p->W, p->view, &p->c, &p->val, p->err,
				    sizeof(p->err));
	return NULL;
}

/* Waits for the report in flight: its validation loss into *val, or its error into err. */
static int reporter_join(struct reporter *p, float *val, char *err, size_t errlen)
{
	if (!p->running)
		return 0;
	if (pthread_tryjoin_np(p->th, NULL) == EBUSY) {
		/* it holds up the job's thread now: the priority of the thread that waits */
		pid_t tid = __atomic_load_n(&p->tid, __ATOMIC_ACQUIRE);
		int prio;

		errno = 0;
		prio = getpriority(PRIO_PROCESS, (id_t)gettid());
		if (tid > 0 && errno == 0)
			setpriority(PRIO_PROCESS, (id_t)tid, prio);
		pthread_join(p->th, NULL);
	}
	p->running = 0;
	if (p->r < 0) {
		snprintf(err, errlen, "%s", p->err);
		return p->r;
	}
	*val = p->val;
	return 0;
}

/* Hands the closed round *c (rd != 0) to the idle reporter; c is then empty. */
static int reporter_start(struct reporter *p, const float *W, const float *v, struct closed *c,
			  char *err, size_t errlen)
{
	struct slot *slots = p->c.slots;
	int r;

	memcpy(p->W, W, p->j->n * sizeof(float));
	memcpy(p->v, v, p->j->n * sizeof(float));
	memcpy(slots, c->slots, p->j->n_slots * sizeof(*slots));
	p->c = *c;
	p->c.slots = slots;
	c->rd = 0;
	p->r = 0;
	p->err[0] = '\0';
	__atomic_store_n(&p->tid, 0, __ATOMIC_RELEASE);
	r = -pthread_create(&p->th, NULL, reporter_main, p);
	if (r < 0)
		snprintf(err, errlen, "reporting round %ld: %s", p->c.rd, strerror(-r));
	else
		p->running = 1;
	return r;
}

/*
 * The ledger's thread of a job: pays the durable rounds (round_done) behind the job, one
 * round a call of the hook, in round order, from what the job folder keeps, so that neither
 * the job's thread nor the reporter ever waits for the ledger (its Shapley values take 2^n
 * validations a breakthrough round).  It holds nothing per round: a backlog is only the gap
 * between round_done and booked, whatever its length.  Its first call pays every round up to
 * round_done that the ledger lacks (a daemon killed before paying them); the hook pays a
 * round once whatever it is asked (mining_book.h), so a kill -9 anywhere loses and doubles
 * nothing.  It runs at a lower priority (nice + BOOKER_NICE): the replicas' windows and the
 * rounds first, the book after.  The job waits for it only at its end (booker_finish()):
 * done, stopped or failed once every round is paid; a daemon that closes does not wait (the
 * next start pays the rest).
 */
#define BOOKER_NICE 10

struct booker {
	struct job *j;
	pthread_t th;
	int running;
	int finish;                 /* m->lock: pay up to round_done, then end */
};

static void *booker_main(void *arg)
{
	struct booker *b = arg;
	struct job *j = b->j;
	struct mining *m = j->m;
	int first = 1;

	thread_nice(BOOKER_NICE);
	pthread_mutex_lock(&m->lock);
	for (;;) {
		long next;

		while (!m->closing && !b->finish && j->round_done <= j->booked && !first)
			pthread_cond_wait(&m->wake, &m->lock);
		if (m->closing || (b->finish && j->round_done <= j->booked && !first))
			break;
		if (j->round_done <= 0) {
			first = 0;
			continue;
		}
		next = first ? j->round_done : j->booked + 1;
		first = 0;
		pthread_mutex_unlock(&m->lock);
		call_hook(j, next);
		pthread_mutex_lock(&m->lock);
		j->booked = next;
		j->gen++;
		changed(m, MINING_JOBS, j->name);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static int booker_start(struct booker *b, struct job *j)
{
	int r;

	b->j = j;
	b->finish = 0;
	pthread_mutex_lock(&j->m->lock);
	j->booked = 0;
	pthread_mutex_unlock(&j->m->lock);
	r = -pthread_create(&b->th, NULL, booker_main, b);
	b->running = r == 0;
	return r;
}

/*
 * The end of the job: every durable round paid, then once more up to round_done (a sweep:
 * a round whose payment a crash lost, or LLMFS_MINING_BOOK_DROP, is paid now), unless the
 * daemon closes.
 */
static void booker_finish(struct booker *b)
{
	struct mining *m;
	long last;
	int closing;

	if (!b->running)
		return;
	m = b->j->m;
	pthread_mutex_lock(&m->lock);
	b->finish = 1;
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
	pthread_join(b->th, NULL);
	b->running = 0;
	pthread_mutex_lock(&m->lock);
	last = b->j->round_done;
	closing = m->closing;
	pthread_mutex_unlock(&m->lock);
	if (!closing && last > 0)
		call_hook(b->j, last);
}

/*
 * A job's end shows: its state and reason, result and state.json.  Its providers are freed
 * first (when *have_slots), so that whoever saw the job end may edit them.
 */
static void show_end(struct job *j, enum jstate state, const char *reason, float val,
		     int *have_slots)
{
	struct mining *m = j->m;
	unsigned long long seq;
	char *snap;

	if (*have_slots)
		release_providers(j);
	*have_slots = 0;
	pthread_mutex_lock(&m->lock);
	j->state = state;
	snprintf(j->reason, sizeof(j->reason), "%.*s", (int)sizeof(j->reason) - 1, reason);
	write_result(j, val);
	snap = state_snapshot(j, &seq);
	j->gen++;
	changed(m, MINING_JOBS, j->name);
	pthread_mutex_unlock(&m->lock);
	state_write(j, snap, seq);
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct mining *m = j->m;
	struct gpu_model *em = NULL;
	struct gpu_data view = { 0 };
	float *W = NULL, *v = NULL, *u = NULL, val = NAN;
	struct two_frames uframe = { 0 }, wframe = { 0 };
	char err[600] = "";
	struct closed closed = { 0 };
	struct reporter rep = { .j = j };
	struct booker bk = { 0 };
	enum jstate end = J_DONE;
	int r, streak = 0, have_slots = 0;
	long rd;

	free(j->tokens);
	j->tokens = NULL;
	free(j->sum);
	j->sum = NULL;
	pthread_mutex_lock(&m->lock);
	two_frames_clear(&j->uframe); /* a resumed job's replicas are new: they get W first */
	j->uframe_round = 0;
	pthread_mutex_unlock(&m->lock);
	r = prepare_data(j, err, sizeof(err));
	if (r == 0) {
		pthread_mutex_lock(&m->lock);
		r = choose_providers(j, err, sizeof(err));
		have_slots = r == 0;
		pthread_mutex_unlock(&m->lock);
	}
	if (have_slots)
		stop_previous(j);
	if (r == 0 && (r = gpu_model_new(&em, &j->o.cfg, &j->o.opts)) < 0)
		snprintf(err, sizeof(err), "creating the model: %s", strerror(-r));
	if (r == 0) {
		pthread_mutex_lock(&m->lock);
		j->n = gpu_model_num_params(em);
		j->sum = calloc(j->n, sizeof(float));
		pthread_mutex_unlock(&m->lock);
		W = malloc(j->n * sizeof(float));
		v = calloc(j->n, sizeof(float));
		u = malloc(j->n * sizeof(float));
		closed.slots = calloc(j->n_slots, sizeof(*closed.slots));
		rep.c.slots = calloc(j->n_slots, sizeof(*rep.c.slots));
		rep.W = malloc(j->n * sizeof(float));
		rep.v = malloc(j->n * sizeof(float));
		rep.em = em;
		rep.view = &view;
		pthread_mutex_lock(&m->lock);
		free(j->wprev);
		free(j->wprev2);
		j->wprev = j->overlap ? malloc(j->n * sizeof(float)) : NULL;
		j->wprev2 = j->overlap ? malloc(j->n * sizeof(float)) : NULL;
		pthread_mutex_unlock(&m->lock);
		r = W && v && u && j->sum && closed.slots && rep.c.slots && rep.W && rep.v &&
		    ((j->wprev && j->wprev2) || !j->overlap) ? 0 : -ENOMEM;
		mining_server_max_body(m->server, mining_wire_size(MINING_ENC_FP32, 0, j->n) + 4096);
	}
	if (r == 0) {
		char *d1 = jpath(j, "weights"), *d2 = jpath(j, "momentum"), *d3 = jpath(j, "deltas");

		if (d1 && d2 && d3)
			mkdir(d1, 0700), mkdir(d2, 0700), mkdir(d3, 0700);
		free(d1);
		free(d2);
		free(d3);
		r = load_round(j, em, W, v, err, sizeof(err));
		if (r == 0) {
			pthread_mutex_lock(&m->lock);
			r = load_own(j, W, err, sizeof(err));
			pthread_mutex_unlock(&m->lock);
		}
	}
	if (r < 0) {
		end = J_FAILED;
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-r));
		goto out;
	}
	cut_reports(j);
	view.tokens = j->tokens;
	view.n_tokens = j->n_tokens;
	view.n_train = j->n_train;
	view.vocab_size = j->vocab;
	if (j->started == 0)
		j->started = (double)time(NULL);
	set_state(j, J_RUNNING, NULL);
	job_log(j, "running from round %ld of %ld, %u replicas, %zu parameters", j->round_done + 1,
		j->rounds, j->n_slots, j->n);
	if ((r = booker_start(&bk, j)) < 0) {
		end = J_FAILED;
		snprintf(err, sizeof(err), "starting the ledger's thread: %s", strerror(-r));
		goto out;
	}
	for (rd = j->round_done + 1; rd <= j->rounds;) {
		void *frame = NULL;
		size_t flen = 0;
		double t0 = clock_mono_s(), norm = 0, train_loss = 0, wall, spent;
		uint64_t sent0, recv0;
		unsigned acc, posted = 0;

		pthread_mutex_lock(&m->lock); /* the reporter counts them */
		spent = j->device_seconds;
		pthread_mutex_unlock(&m->lock);
		if (j->budget_hours > 0 && spent >= j->budget_hours * 3600) {
			end = J_STOPPED;
			snprintf(err, sizeof(err), "budget of %g device-hours spent", j->budget_hours);
			break;
		}
		if ((r = mining_wire_encode(MINING_ENC_FP32, 0, W, j->n, &frame, &flen)) == 0)
			r = two_frames_set(&wframe, frame, flen); /* takes frame */
		if (r < 0) {
			end = J_FAILED;
			snprintf(err, sizeof(err), "encoding the weights: %s", strerror(-r));
			break;
		}
		pthread_mutex_lock(&m->lock);
		two_frames_clear(&j->wframe);
		j->wframe = wframe;
		memset(&wframe, 0, sizeof(wframe));
		if (uframe.plain) {
			two_frames_clear(&j->uframe);
			j->uframe = uframe;
			j->uframe_round = rd - 1;
			memset(&uframe, 0, sizeof(uframe));
		}
		j->accepted = 0;
		for (unsigned i = 0; i < j->n_slots; i++) {
			struct slot *s = &j->slots[i];

			free(s->delta);
			s->delta = NULL;
			s->posted = s->dropped = 0;
			s->steps = 0;
			s->loss = 0;
			s->reason[0] = '\0';
			s->delta_path[0] = '\0';
			s->launches = 0;
			s->ds_round0 = s->ds_now;
		}
		sent0 = j->bytes_sent;
		recv0 = j->bytes_recv;
		j->round_open = rd;
		j->gen++;
		pthread_cond_broadcast(&m->wake);
		changed(m, MINING_JOBS, j->name);
		pthread_mutex_unlock(&m->lock);
		/* the replicas have W(rd - 1): saved, validated and reported beside them, once the
		 * report of the round before is done */
		if (reporter_join(&rep, &val, err, sizeof(err)) < 0 ||
		    (closed.rd && reporter_start(&rep, W, v, &closed, err, sizeof(err)) < 0)) {
			closed.rd = 0; /* not reported after a round that failed to be */
			end = J_FAILED;
			break;
		}
		if (wait_round(j))
			break;
		if (j->keep_error) {
			end = J_FAILED;
			snprintf(err, sizeof(err), "round %ld: keeping a pseudo-gradient: %s", rd,
				 strerror(-j->keep_error));
			j->keep_error = 0;
			break;
		}
		pthread_mutex_lock(&m->lock);
		acc = j->accepted;
		/* summed in slot order, whatever order they came in: the outer step is then a
		 * function of the pseudo-gradients alone, and a resumed job ends bit for bit as
		 * an uninterrupted one */
		memset(j->sum, 0, j->n * sizeof(float));
		for (unsigned i = 0; i < j->n_slots; i++) {
			struct slot *s = &j->slots[i];

			for (size_t k = 0; s->posted && s->delta && k < j->n; k++)
				j->sum[k] += s->delta[k];
			free(s->delta);
			s->delta = NULL;
		}
		for (size_t k = 0; k < j->n && acc; k++) {
			float d = j->sum[k] / (float)acc;

			j->sum[k] = d;
			norm += (double)d * d;
		}
		for (unsigned i = 0; i < j->n_slots; i++)
			if (j->slots[i].posted)
				train_loss += j->slots[i].loss, posted++;
		pthread_mutex_unlock(&m->lock);
		if (acc == 0) {
			struct slot *s0 = &j->slots[0];

			job_log(j, "round %ld: no pseudo-gradient accepted (replica 0: %s)", rd,
				s0->reason);
			if (++streak >= FAIL_STREAK) {
				end = J_FAILED;
				snprintf(err, sizeof(err), "round %ld: no replica delivered a "
					 "pseudo-gradient in %d attempts (replica 0: %s)", rd,
					 FAIL_STREAK, s0->reason);
				break;
			}
			continue;
		}
		streak = 0;
		/* the base of the next round's own starts (the round is closed: no request
		 * reads it) */
		if (j->overlap) {
			pthread_mutex_lock(&m->lock);
			memcpy(j->wprev2, j->wprev, j->n * sizeof(float));
			memcpy(j->wprev, W, j->n * sizeof(float));
			pthread_mutex_unlock(&m->lock);
		}
		/* the outer step: Nesterov momentum on the averaged pseudo-gradient */
		mining_outer_step(&(struct mining_outer){ j->outer_lr, j->outer_mu, j->nesterov },
				  v, u, j->sum, j->n);
		if ((r = outer_update(j, W, u, &uframe)) < 0) {
			end = J_FAILED;
			snprintf(err, sizeof(err), "encoding the update of round %ld: %s", rd,
				 strerror(-r));
			break;
		}
		wall = clock_mono_s() - t0;
		pthread_mutex_lock(&m->lock);
		closed.rd = rd;
		closed.acc = acc;
		closed.train_loss = posted ? train_loss / posted : NAN;
		closed.norm = sqrt(norm);
		closed.wall = wall;
		closed.sent = j->bytes_sent - sent0;
		closed.recv = j->bytes_recv - recv0;
		closed.saved = 0;
		for (unsigned i = 0; i < j->n_slots; i++) {
			closed.slots[i] = j->slots[i];
			closed.slots[i].delta = NULL;
			/* overlap: who starts the next round from its own pseudo-gradient */
			j->slots[i].own = j->overlap && j->slots[i].posted;
		}
		pthread_mutex_unlock(&m->lock);
		rd++;
	}
	/* the report in flight, then the last round closed (or the one before a stop): saved and
	 * reported before the job ends */
	if (reporter_join(&rep, &val, err, sizeof(err)) < 0)
		closed.rd = 0, end = J_FAILED;
	else if (save_closed(j, W, v, &closed, err, sizeof(err)) < 0 ||
	    (closed.rd && report_round(j, em, W, &view, &closed, &val, err, sizeof(err)) < 0))
		end = J_FAILED;
	if (end == J_DONE && j->round_done < j->rounds) {
		/* asked to stop, or the daemon closes: state.json keeps "running" for a close */
		stop_slots(j);
		booker_finish(&bk);
		if (j->stop_asked == 1)
			show_end(j, J_STOPPED, "stopped", val, &have_slots);
		goto out_slots;
	}
	stop_slots(j);
	if (end == J_DONE) {
		sample_text(j, em, j->round_done);
		r = save_model(j, em, err, sizeof(err));
		if (r < 0)
			end = J_FAILED;
	}
	/* the model is in models/<job>/; done (and result) once the ledger paid every round */
	booker_finish(&bk);
	if (end != J_DONE)
		job_log(j, "%s: %s", jstate_names[end], err);
	show_end(j, end, end == J_DONE ? "" : err, val, &have_slots);
	goto out_slots;
out:
	booker_finish(&bk);
	job_log(j, "failed: %s", err);
	show_end(j, end, err, val, &have_slots);
out_slots:
	if (have_slots)
		release_providers(j);
	gpu_model_free(em);
	free(closed.slots);
	free(rep.c.slots);
	free(rep.W);
	free(rep.v);
	two_frames_clear(&uframe);
	two_frames_clear(&wframe);
	pthread_mutex_lock(&m->lock);
	free(j->wprev);
	free(j->wprev2);
	j->wprev = j->wprev2 = NULL;
	pthread_mutex_unlock(&m->lock);
	free(W);
	free(v);
	free(u);
	return NULL;
}

static int job_start_thread(struct job *j)
{
	int r;

	if (j->has_thread)
		return 0;
	j->stop_asked = 0;
	r = -pthread_create(&j->th, NULL, job_main, j);
	if (r == 0)
		j->has_thread = 1;
	return r;
}

/* m->lock not held. */
static void job_stop_thread(struct mining *m, struct job *j)
{
	if (!j->has_thread)
		return;
	pthread_join(j->th, NULL);
	pthread_mutex_lock(&m->lock);
	j->has_thread = 0;
	pthread_mutex_unlock(&m->lock);
}

/* ---- jobs: the calls ------------------------------------------------------------------------ */

int mining_job_submit(struct mining *m, const char *name, const char *text, size_t len)
{
	struct job *j;
	char err[512] = "", *p = NULL;
	int r;

	if (len > JOB_MAX)
		return -EFBIG;
	pthread_mutex_lock(&m->lock);
	j = job_find(m, name);
	if (!j) {
		r = -ENOENT;
		goto out;
	}
	if (j->text) {
		r = -EBUSY;
		goto out;
	}
	if (!(j->text = strndup(text, len)) || !(p = jpath(j, "job"))) {
		r = -ENOMEM;
		goto out;
	}
	r = write_file(p, text, len);
	if (r < 0)
		goto out;
	r = parse_job(j, text, len, err, sizeof(err));
	if (r == 0 && (r = new_token(j->token)) == 0) {
		char *tp = jpath(j, "token");

		r = tp ? write_file(tp, j->token, strlen(j->token)) : -ENOMEM;
		free(tp);
	}
	if (r < 0) {
		j->state = J_FAILED;
		snprintf(j->reason, sizeof(j->reason), "%s", err[0] ? err : strerror(-r));
		save_state(j);
		write_result(j, NAN);
		r = -EINVAL;
	} else {
		j->state = J_QUEUED;
		save_state(j);
		r = job_start_thread(j);
	}
	j->gen++;
	changed(m, MINING_JOBS, name);
out:
	pthread_mutex_unlock(&m->lock);
	free(p);
	return r;
}

int mining_job_control(struct mining *m, const char *name, const char *text, size_t len)
{
	struct job *j;
	char word[16] = "";
	int r = 0, join = 0;

	snprintf(word, sizeof(word), "%.*s", (int)(len < 15 ? len : 15), text);
	word[strcspn(word, " \t\r\n")] = '\0';
	pthread_mutex_lock(&m->lock);
	j = job_find(m, name);
	if (!j) {
		r = -ENOENT;
	} else if (!strcmp(word, "stop")) {
		if (j->state == J_RUNNING || j->state == J_QUEUED) {
			j->stop_asked = 1;
			pthread_cond_broadcast(&m->wake);
		}
	} else if (!strcmp(word, "resume")) {
		if (j->state == J_STOPPED || (j->state == J_FAILED && j->rounds > 0)) {
			join = 1;
		} else if (j->state != J_RUNNING && j->state != J_QUEUED) {
			r = -EINVAL;
		}
	} else {
		r = -EINVAL;
	}
	pthread_mutex_unlock(&m->lock);
	if (join) {
		job_stop_thread(m, j);
		pthread_mutex_lock(&m->lock);
		j->state = J_QUEUED;
		j->reason[0] = '\0';
		save_state(j);
		r = job_start_thread(j);
		j->gen++;
		changed(m, MINING_JOBS, name);
		pthread_mutex_unlock(&m->lock);
	}
	return r;
}

int mining_job_file_name(struct mining *m, const char *name, enum mining_file f, char **ret)
{
	struct job *j;
	int r = 0;

	if (f < 0 || f >= MINING_F_COUNT)
		return -ENOENT;
	pthread_mutex_lock(&m->lock);
	j = job_find(m, name);
	if (!j)
		r = -ENOENT;
	else if (f == MINING_F_EVENTS)
		r = asprintf(ret, "events.out.tfevents.%lld.llmfs", (long long)j->started) < 0
			    ? -ENOMEM : 0;
	else
		r = (*ret = strdup(file_names[f])) ? 0 : -ENOMEM;
	pthread_mutex_unlock(&m->lock);
	return r;
}

int mining_job_file_lookup(struct mining *m, const char *name, const char *file)
{
	for (int f = 0; f < MINING_F_COUNT; f++) {
		char *n = NULL;
		int hit;

		if (mining_job_file_name(m, name, (enum mining_file)f, &n) < 0)
			return -ENOENT;
		hit = !strcmp(n, file);
		free(n);
		if (hit)
			return f;
	}
	return -ENOENT;
}

/* The rows of metrics.tsv. */
static int read_rows(struct job *j, struct gpu_train_row **ret, size_t *ret_n)
{
	char *text = NULL, *p = jpath(j, "metrics.tsv"), *line, *save = NULL;
	struct gpu_train_row *rows = NULL;
	size_t n = 0;
	int r = p ? read_file(p, &text, NULL) : -ENOMEM;

	free(p);
	if (r == -ENOENT)
		r = 0, text = strdup("");
	if (r < 0 || !text)
		return r < 0 ? r : -ENOMEM;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct gpu_train_row row;
		struct gpu_train_row *nv;

		if (gpu_train_row_parse(line, &row) < 0)
			continue;
		nv = realloc(rows, (n + 1) * sizeof(*nv));
		if (!nv)
			break;
		rows = nv;
		rows[n++] = row;
	}
	free(text);
	*ret = rows;
	*ret_n = n;
	return 0;
}

static int job_status(struct job *j, char **ret)
{
	char *s = NULL, line[512];
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (!f)
		return -ENOMEM;
	if (j->state == J_RUNNING)
		fprintf(f, "running: round %ld/%ld\n", j->round_open ? j->round_open : j->round_done,
			j->rounds);
	else if (j->state == J_FAILED || (j->state == J_STOPPED && strcmp(j->reason, "stopped")))
		fprintf(f, "%s: %s\n", jstate_names[j->state], j->reason);
	else
		fprintf(f, "%s\n", jstate_names[j->state]);
	if (j->text && j->rounds) {
		fprintf(f, "rounds done %ld of %ld, %u replicas, inner steps %ld, compression %s\n",
			j->round_done, j->rounds, j->replicas, j->H, mining_enc_name(j->enc));
		for (unsigned i = 0; i < j->n_slots; i++) {
			struct slot *sl = &j->slots[i];

			snprintf(line, sizeof(line), "replica %u: %s %s, %s%s%s\n", i, sl->prov->name,
				 sl->id[0] ? sl->id : "-",
				 sl->posted ? "posted" : sl->dropped ? "dropped" :
				 sl->id[0] ? "running" : "not running",
				 sl->reason[0] ? ": " : "", sl->reason);
			fputs(line, f);
		}
		fprintf(f, "bytes sent %llu, received %llu\ndevice-seconds %.3f\ntokens %llu\n",
			(unsigned long long)j->bytes_sent, (unsigned long long)j->bytes_recv,
			j->device_seconds, (unsigned long long)j->tokens_seen);
		if (j->m->cfg.on_round && j->state == J_RUNNING)
			fprintf(f, "ledger: rounds paid %ld of %ld done\n", j->booked,
				j->round_done);
	}
	fclose(f);
	*ret = s;
	return 0;
}

int mining_job_read(struct mining *m, const char *name, enum mining_file f, char **ret,
		    size_t *ret_len)
{
	struct job *j;
	struct gpu_train_row *rows = NULL;
	size_t n = 0;
	char *p = NULL;
	int r = 0;

	*ret = NULL;
	*ret_len = 0;
	pthread_mutex_lock(&m->lock);
	j = job_find(m, name);
	if (!j) {
		r = -ENOENT;
		goto out;
	}
	switch (f) {
	case MINING_F_JOB:
		*ret = strdup(j->text ? j->text : "");
		break;
	case MINING_F_CONTROL:
		*ret = strdup("");
		break;
	case MINING_F_STATUS:
		r = job_status(j, ret);
		break;
	case MINING_F_RESULT:
		if (j->state != J_DONE && j->state != J_FAILED && j->state != J_STOPPED) {
			r = -EAGAIN;
			goto out;
		}
		/* fall through */
	case MINING_F_ROUNDS:
	case MINING_F_CONTRIB:
	case MINING_F_METRICS:
	case MINING_F_SAMPLES:
	case MINING_F_LOG:
		p = jpath(j, "%s", file_names[f]);
		r = p ? read_file(p, ret, ret_len) : -ENOMEM;
		if (r == -ENOENT) {
			r = 0;
			*ret = strdup(f == MINING_F_ROUNDS ? rounds_header :
				      f == MINING_F_CONTRIB ? contrib_header :
				      f == MINING_F_METRICS ? gpu_train_tsv_header : "");
		}
		free(p);
		if (r < 0)
			goto out;
		if (*ret && !*ret_len)
			*ret_len = strlen(*ret);
		goto out;
	case MINING_F_STATE:
	case MINING_F_EVENTS:
	case MINING_F_SVG:
		r = read_rows(j, &rows, &n);
		if (r < 0)
			goto out;
		if (f == MINING_F_STATE) {
			*ret = gpu_train_state_json(&j->o, NULL, rows, n, NULL);
		} else if (f == MINING_F_SVG) {
			*ret = gpu_train_svg(rows, n, j->name);
		} else {
			char *buf = NULL;
			size_t len = 0;

			r = gpu_tfevents_header(j->started, &buf, &len);
			for (size_t i = 0; i < n && r == 0; i++)
				r = gpu_tfevents_row(&rows[i], j->started + (double)i, &buf, &len);
			free(rows);
			if (r < 0) {
				free(buf);
				goto out;
			}
			*ret = buf;
			*ret_len = len;
			goto out;
		}
		free(rows);
		break;
	default:
		r = -ENOENT;
		goto out;
	}
	if (r == 0 && !*ret)
		r = -ENOMEM;
	if (r == 0)
		*ret_len = strlen(*ret);
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int mining_status(struct mining *m, char **ret, size_t *ret_len)
{
	size_t nj = 0, np = 0, na = 0;

	pthread_mutex_lock(&m->lock);
	for (struct job *j = m->jobs; j; j = j->next)
		nj++;
	for (struct prov *p = m->provs; p; p = p->next)
		np += prov_visible(m, p);
	for (struct account *a = m->accounts; a; a = a->next)
		na++;
	pthread_mutex_unlock(&m->lock);
	if (asprintf(ret, "listen %s\njobs %zu\nproviders %zu\naccounts %zu\n", m->url, nj, np,
		     na) < 0)
		return -ENOMEM;
	*ret_len = strlen(*ret);
	return 0;
}

const char *mining_url(const struct mining *m)
{
	return m->url;
}

/* ---- the replicas' endpoints ------------------------------------------------------------- */

static void reply(struct mining_response *rs, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply(struct mining_response *rs, unsigned status, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	rs->status = status;
	rs->body = s;
	rs->len = s ? strlen(s) : 0;
}

/* The path's parts after the prefix: "<a>/<b>[/<c>]". */
static int split_path(const char *path, const char *prefix, char a[128], char b[32], char c[32])
{
	size_t n = strlen(prefix);

	if (strncmp(path, prefix, n))
		return -1;
	a[0] = b[0] = c[0] = '\0';
	if (sscanf(path + n, "%127[^/]/%31[^/]/%31[^/]", a, b, c) < 2)
		return -1;
	return 0;
}

/*
 * GET start/<slot>?round=R (overlap=1): the start of the slot's window of open round R when it
 * starts from its own pseudo-gradient (mining_overlap_start() of W(R-2), W(R-3) and its
 * pseudo-gradient of round R-1 as that decodes), in fp32: for a
 * replica that does not hold them (one started again, a resumed job's), so that its window is
 * the one an uninterrupted replica runs and the ledger replays.  409 when the round is not
 * open or the slot starts from W(R-1) (the weights it got).
 */
static void job_start(struct mining *m, struct job *j, unsigned slot,
		      const struct mining_request *rq, struct mining_response *rs)
{
	const char *ra = rq->arg(rq, "round"), *pk = rq->arg(rq, "pack");
	long round = ra ? strtol(ra, NULL, 10) : -1;
	char *path = jpath(j, "deltas/%ld-%u.pg", round - 1, slot), *buf = NULL, err[128];
	float *d = NULL;
	void *frame = NULL, *packed = NULL;
	size_t len = 0, n;
	int r;

	pthread_mutex_lock(&m->lock);
	n = j->n;
	r = j->overlap && n && round == j->round_open && j->slots[slot].own && j->wprev;
	pthread_mutex_unlock(&m->lock);
	if (!r) {
		reply(rs, 409, "round %ld: replica %u starts from the round's weights\n", round,
		      slot);
		goto out;
	}
	d = malloc(n * sizeof(float));
	r = d && path ? read_file(path, &buf, &len) : -ENOMEM;
	if (r == 0)
		r = mining_wire_decode(buf, len, n, d, NULL, err, sizeof(err));
	pthread_mutex_lock(&m->lock);
	if (r == 0 && !(round == j->round_open && j->slots[slot].own && j->wprev))
		r = -ESTALE;
	if (r == 0)
		mining_overlap_start(d, j->wprev, j->wprev2, d, n, j->outer_lr, j->outer_mu);
	pthread_mutex_unlock(&m->lock);
	if (r == 0)
		r = mining_wire_encode(MINING_ENC_FP32, 0, d, n, &frame, &len);
	if (r == 0 && pk && !strcmp(pk, "1") && mining_wire_pack(frame, len, &packed, &len) == 0) {
		free(frame);
		frame = packed;
	}
	if (r == -ESTALE) {
		reply(rs, 409, "round %ld closed meanwhile\n", round);
	} else if (r < 0) {
		job_log(j, "replica %u, round %ld: its start: %s", slot, round, strerror(-r));
		reply(rs, 500, "its start: %s\n", strerror(-r));
	} else {
		rs->body = frame;
		rs->len = len;
		rs->status = 200;
		rs->type = "application/octet-stream";
		snprintf(rs->headers, sizeof(rs->headers), "X-Llmfs-Round: %ld\n", round);
		frame = NULL;
		pthread_mutex_lock(&m->lock);
		j->bytes_sent += len;
		pthread_mutex_unlock(&m->lock);
	}
out:
	free(frame);
	free(buf);
	free(d);
	free(path);
}

static void job_delta(struct mining *m, struct job *j, unsigned slot,
		      const struct mining_request *rq, struct mining_response *rs)
{
	const char *rs_round = rq->arg(rq, "round"), *rs_steps = rq->arg(rq, "steps"),
		   *rs_loss = rq->arg(rq, "loss"), *rs_own = rq->arg(rq, "own");
	long round = rs_round ? strtol(rs_round, NULL, 10) : -1;
	long steps = rs_steps ? strtol(rs_steps, NULL, 10) : 0;
	double loss = rs_loss ? strtod(rs_loss, NULL) : NAN;
	char err[200] = "", *path = NULL;
	float *tmp = NULL;
	void *plain = NULL;
	size_t plen = 0;
	enum mining_enc enc;
	size_t n;
	int r, own;

	/* the frame is checked first: a malformed one is refused whatever the round */
	pthread_mutex_lock(&m->lock);
	n = j->n;
	pthread_mutex_unlock(&m->lock);
	if (!n)
		return reply(rs, 409, "the job has not started\n");
	tmp = malloc(n * sizeof(float));
	if (!tmp) {
		reply(rs, 503, "out of memory\n");
		return;
	}
	/* kept plain, as the verifier reads it; counted as it came (bytes_recv) */
	r = mining_wire_unpack(rq->body, rq->body_len, n, &plain, &plen, err, sizeof(err));
	if (r == 0)
		r = mining_wire_decode(plain, plen, n, tmp, &enc, err, sizeof(err));
	if (r == 0 && enc != j->enc)
		r = -EBADMSG, snprintf(err, sizeof(err), "encoding %s, the job uses %s",
				       mining_enc_name(enc), mining_enc_name(j->enc));
	if (r == 0 && (steps != j->H || !isfinite(loss)))
		r = -EBADMSG, snprintf(err, sizeof(err), "steps=%ld loss=%g: the window is %ld "
				       "steps with a finite loss", steps, loss, j->H);
	if (r < 0) {
		job_log(j, "replica %u, round %ld: pseudo-gradient refused: %s", slot, round,
			r == -ENOMEM ? "out of memory" : err);
		reply(rs, r == -ENOMEM ? 503 : 400, "pseudo-gradient refused: %s\n",
		      r == -ENOMEM ? "out of memory" : err);
		free(plain);
		free(tmp);
		return;
	}
	pthread_mutex_lock(&m->lock);
	r = round == j->round_open && round && !j->slots[slot].posted;
	if (!r)
		reply(rs, 409, "round %ld is not open for replica %u (open: %ld, done: %ld)\n",
		      round, slot, j->round_open, j->round_done);
	else if ((own = rs_own && !strcmp(rs_own, "1")) != (j->overlap && j->slots[slot].own))
		/* overlap=1: a window from another start than the one the ledger replays (a
		 * replica that did not hear its own pseudo-gradient was refused, or a new one) */
		r = 0, reply(rs, 409, "round %ld: replica %u's window starts from %s\n", round,
			     slot, own ? "W(r-1): it has no accepted pseudo-gradient of round r-1"
				       : "its own pseudo-gradient of round r-1 (own=1)");
	pthread_mutex_unlock(&m->lock);
	if (!r) {
		free(plain);
		free(tmp);
		return;
	}
	path = jpath(j, "deltas/%ld-%u.pg", round, slot);
	r = path ? write_file_unsynced(path, plain, plen) : -ENOMEM;
	free(plain);
	pthread_mutex_lock(&m->lock);
	if (r < 0) {
		reply(rs, 507, "cannot keep the pseudo-gradient: %s\n", strerror(-r));
		j->keep_error = r;
		pthread_cond_broadcast(&m->wake);
	} else if (round != j->round_open || j->slots[slot].posted) {
		reply(rs, 409, "round %ld closed meanwhile\n", round);
	} else {
		struct slot *s = &j->slots[slot];

		free(s->delta);
		s->delta = tmp;
		tmp = NULL;
		s->posted = 1;
		s->dropped = 0;
		s->reason[0] = '\0';
		s->steps = steps;
		s->loss = loss;
		snprintf(s->delta_path, sizeof(s->delta_path), "%s", path);
		j->accepted++;
		j->bytes_recv += rq->body_len;
		j->gen++;
		pthread_cond_broadcast(&m->wake);
		reply(rs, 200, "accepted\n");
	}
	pthread_mutex_unlock(&m->lock);
	free(path);
	free(tmp);
}

static void job_request(struct mining *m, const struct mining_request *rq,
			struct mining_response *rs)
{
	char name[128], op[32], arg[32];
	struct job *j;
	char *end;
	unsigned long slot;

	if (split_path(rq->path, "/v1/jobs/", name, op, arg) < 0)
		return reply(rs, 404, "no such endpoint\n");
	pthread_mutex_lock(&m->lock);
	j = job_find(m, name);
	if (!j || !j->text || !j->token[0] || !token_ok(j->token, rq->token)) {
		pthread_mutex_unlock(&m->lock);
		return reply(rs, 403, "no job %s for this token\n", name);
	}
	if (j->state != J_RUNNING && j->state != J_QUEUED) {
		pthread_mutex_unlock(&m->lock);
		return reply(rs, 410, "%s\n", jstate_names[j->state]);
	}
	slot = strtoul(arg, &end, 10);
	if (!strcmp(op, "spec") && !strcmp(rq->method, "GET")) {
		char *train = NULL;

		if (gpu_train_opts_format(&j->o, &train) < 0) {
			pthread_mutex_unlock(&m->lock);
			return reply(rs, 500, "formatting the options\n");
		}
		reply(rs, 200, "{\"train\": \"%s\", \"replicas\": %u, \"inner_steps\": %ld, "
		      "\"rounds\": %ld, \"compression\": \"%s\", \"block\": %u, \"params\": %zu, "
		      "\"overlap\": %d, \"outer_lr\": %.9g, \"outer_momentum\": %.9g}\n", train,
		      j->replicas, j->H, j->rounds, mining_enc_name(j->enc), j->block, j->n,
		      j->overlap, (double)j->outer_lr, (double)j->outer_mu);
		rs->type = "application/json";
		free(train);
	} else if (!strcmp(op, "shard") && !*end && arg[0] && slot < j->n_slots &&
		   j->tokens) {
		size_t lo, n;
		unsigned char *b;

		shard_range(j, (unsigned)slot, &lo, &n);
		b = malloc(16 + 2 * n);
		if (b) {
			memcpy(b, "LLMFSTOK", 8);
			b[8] = 1, b[9] = b[10] = b[11] = 0;
			b[12] = (unsigned char)j->vocab, b[13] = (unsigned char)(j->vocab >> 8);
			b[14] = b[15] = 0;
			for (size_t i = 0; i < n; i++)
				b[16 + 2 * i] = (unsigned char)j->tokens[lo + i],
				b[17 + 2 * i] = (unsigned char)(j->tokens[lo + i] >> 8);
			rs->status = 200;
			rs->body = (char *)b;
			rs->len = 16 + 2 * n;
			j->bytes_sent += rs->len;
		} else {
			reply(rs, 503, "out of memory\n");
		}
	} else if (!strcmp(op, "weights") && !strcmp(rq->method, "GET")) {
		const char *after = rq->arg(rq, "after"), *wait = rq->arg(rq, "wait"),
			   *have = rq->arg(rq, "have"), *pk = rq->arg(rq, "pack"),
			   *sl = rq->arg(rq, "slot");
		int packed = pk && !strcmp(pk, "1");
		const struct two_frames *f;
		long a = after ? strtol(after, NULL, 10) : 0, h = have ? strtol(have, NULL, 10) : -1;
		double w = wait ? strtod(wait, NULL) : 0, t0 = clock_mono_s();

		/* a long poll: the replica hears of the next round at once, without polling */
		if (!(w <= 30))
			w = 30;
		j->refs++;
		while ((!j->round_open || j->round_open <= a || !j->wframe.plain) && !m->closing &&
		       !j->stop_asked &&
		       (j->state == J_RUNNING || j->state == J_QUEUED) && clock_mono_s() - t0 < w) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100000000;
			if (ts.tv_nsec >= 1000000000)
				ts.tv_sec++, ts.tv_nsec -= 1000000000;
			pthread_cond_timedwait(&m->wake, &m->lock, &ts);
		}
		j->refs--;
		pthread_cond_broadcast(&m->wake);
		if (j->state != J_RUNNING && j->state != J_QUEUED) {
			reply(rs, 410, "%s\n", jstate_names[j->state]);
		} else if (!j->round_open || j->round_open <= a || !j->wframe.plain) {
			reply(rs, 204, "%s", "");
		} else {
			/* it holds W(open - 2): the update to W(open - 1) is enough */
			int upd = j->uframe.plain && j->uframe_round == j->round_open - 1 &&
				  h == j->round_open - 2;
			/* overlap=1: this slot's window starts from its own pseudo-gradient */
			unsigned long si = sl ? strtoul(sl, NULL, 10) : ULONG_MAX;
			int own = j->overlap && si < j->n_slots && j->slots[si].own;
			size_t len, hl;

			f = upd ? &j->uframe : &j->wframe;
			len = packed ? f->packed_len : f->plain_len;
			if ((rs->body = malloc(len))) {
				memcpy(rs->body, packed ? f->packed : f->plain, len);
				rs->len = len;
				rs->status = 200;
				rs->type = "application/octet-stream";
				if (upd)
					hl = (size_t)snprintf(rs->headers, sizeof(rs->headers),
							      "X-Llmfs-Round: %ld\nX-Llmfs-Base: %ld\n",
							      j->round_open, j->round_open - 2);
				else
					hl = (size_t)snprintf(rs->headers, sizeof(rs->headers),
							      "X-Llmfs-Round: %ld\n", j->round_open);
				if (own && hl < sizeof(rs->headers))
					snprintf(rs->headers + hl, sizeof(rs->headers) - hl,
						 "X-Llmfs-Own: %ld\n", j->round_open - 1);
				j->bytes_sent += rs->len;
			} else {
				reply(rs, 503, "out of memory\n");
			}
		}
	} else if (!strcmp(op, "start") && !strcmp(rq->method, "GET") && !*end && arg[0] &&
		   slot < j->n_slots) {
		j->refs++;
		pthread_mutex_unlock(&m->lock);
		job_start(m, j, (unsigned)slot, rq, rs);
		pthread_mutex_lock(&m->lock);
		j->refs--;
		pthread_cond_broadcast(&m->wake);
		pthread_mutex_unlock(&m->lock);
		return;
	} else if (!strcmp(op, "delta") && !strcmp(rq->method, "POST") && !*end && arg[0] &&
		   slot < j->n_slots) {
		/* the job stays while the request uses it: a remove waits for refs to fall */
		j->refs++;
		pthread_mutex_unlock(&m->lock);
		job_delta(m, j, (unsigned)slot, rq, rs);
		pthread_mutex_lock(&m->lock);
		j->refs--;
		pthread_cond_broadcast(&m->wake);
		pthread_mutex_unlock(&m->lock);
		return;
	} else {
		reply(rs, 404, "no such endpoint\n");
	}
	pthread_mutex_unlock(&m->lock);
}

static void on_request(void *arg, const struct mining_request *rq, struct mining_response *rs)
{
	struct mining *m = arg;
	char name[128], op[32], extra[32];

	if (!strncmp(rq->path, "/v1/jobs/", 9))
		return job_request(m, rq, rs);
	if (split_path(rq->path, "/v1/providers/", name, op, extra) == 0) {
		struct prov *p;

		pthread_mutex_lock(&m->lock);
		p = prov_find(m, name);
		if (!p || !p->p || p->ops != &mining_remote_ops) {
			reply(rs, 403, "no remote provider %s for this key\n", name);
		} else {
			rs->status = mining_remote_handle(p->p, rq->token, op, rq->body, rq->body_len,
							  &rs->body, &rs->len);
			rs->type = "application/json";
		}
		pthread_mutex_unlock(&m->lock);
		return;
	}
	reply(rs, 404, "no such endpoint\n");
}

/* ---- opening ---------------------------------------------------------------------------------- */

static void load_all(struct mining *m, enum mining_kind k, FILE *warn)
{
	char *dir = path2(m->state_dir, kind_dir[k]);
	DIR *d;
	struct dirent *de;

	if (!dir)
		return;
	mkdir(dir, 0700);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		struct plan_proc_user owner;
		unsigned mode;
		char *sub;

		if (de->d_name[0] == '.' || !mining_name_valid(de->d_name))
			continue;
		sub = path2(dir, de->d_name);
		if (!sub || load_owner(sub, &owner.uid, &owner.gid, &mode) < 0) {
			fprintf(warn, "mining: %s/%s: no owner file, left alone\n", kind_dir[k],
				de->d_name);
			free(sub);
			continue;
		}
		/* mining_create() takes the lock and makes the folder (there already) */
		if (mining_create(m, k, de->d_name, &owner, mode) == 0) {
			pthread_mutex_lock(&m->lock);
			if (k == MINING_PROVIDERS) {
				struct prov *p = prov_find(m, de->d_name);
				char *cfg = path2(sub, "provider.json"), *text = NULL;

				if (cfg && read_file(cfg, &text, NULL) == 0) {
					p->text = text;
					if (prov_apply(m, p) < 0)
						fprintf(warn, "mining: provider %s: %s\n", p->name,
							p->error);
				}
				free(cfg);
			} else if (k == MINING_JOBS) {
				struct job *j = job_find(m, de->d_name);
				char *jf = path2(sub, "job"), *text = NULL, *tk = path2(sub, "token");
				char err[512] = "", *tok = NULL;
				size_t len = 0;

				load_state(j, NULL);
				if (jf && read_file(jf, &text, &len) == 0) {
					j->text = text;
					if (parse_job(j, text, len, err, sizeof(err)) < 0 &&
					    j->state != J_FAILED) {
						j->state = J_FAILED;
						snprintf(j->reason, sizeof(j->reason), "%s", err);
					}
				}
				if (tk && read_file(tk, &tok, NULL) == 0)
					snprintf(j->token, sizeof(j->token), "%s", tok);
				free(tok);
				free(tk);
				free(jf);
				if (j->state == J_RUNNING || j->state == J_QUEUED) {
					fprintf(warn, "mining: job %s resumes after round %ld\n",
						j->name, j->round_done);
					j->state = J_QUEUED;
					job_start_thread(j);
				}
			}
			pthread_mutex_unlock(&m->lock);
		}
		free(sub);
	}
	if (d)
		closedir(d);
	free(dir);
}

int mining_open(const struct mining_config *cfg, struct mining **ret, char **ret_warnings)
{
	struct mining *m = calloc(1, sizeof(*m));
	char err[256] = "", *warn = NULL;
	size_t wlen = 0;
	unsigned port = 0;
	FILE *wf = NULL;
	struct prov *emb;
	int r;

	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	m->state_dir = strdup(cfg->state_dir);
	m->tree = strdup(cfg->tree);
	m->exe = strdup(cfg->exe);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->wake, NULL);
	emb = calloc(1, sizeof(*emb));
	if (!m->state_dir || !m->tree || !m->exe || !emb || !(emb->name = strdup("local"))) {
		free(emb);
		r = -ENOMEM;
		goto fail;
	}
	emb->embedded = 1;
	m->provs = emb;
	if (mkdir(m->state_dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	prov_apply(m, emb);
	r = mining_server_start(cfg->listen ? cfg->listen : "127.0.0.1:0", 1 << 20, on_request, m,
				&m->server, &port, err, sizeof(err));
	if (r < 0)
		goto fail;
	if (cfg->advertise) {
		m->url = strdup(cfg->advertise);
	} else {
		char host[64] = "127.0.0.1";
		const char *l = cfg->listen ? cfg->listen : "127.0.0.1:0", *c = strrchr(l, ':');

		if (c && (size_t)(c - l) < sizeof(host))
			snprintf(host, sizeof(host), "%.*s", (int)(c - l), l);
		if (!strcmp(host, "0.0.0.0"))
			snprintf(host, sizeof(host), "127.0.0.1");
		if (asprintf(&m->url, "http://%s:%u", host, port) < 0)
			m->url = NULL;
	}
	if (!m->url) {
		r = -ENOMEM;
		goto fail;
	}
	wf = open_memstream(&warn, &wlen);
	if (wf) {
		load_all(m, MINING_ACCOUNTS, wf);
		load_all(m, MINING_PROVIDERS, wf);
		load_all(m, MINING_JOBS, wf);
		fclose(wf);
	}
	if (ret_warnings && warn && *warn)
		*ret_warnings = warn;
	else
		free(warn);
	*ret = m;
	return 0;
fail:
	if (ret_warnings && err[0])
		*ret_warnings = strdup(err);
	mining_close(m);
	return r;
}

void mining_close(struct mining *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->closing = 1;
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
	for (struct job *j = m->jobs; j; j = j->next)
		job_stop_thread(m, j);
	mining_server_stop(m->server);
	while (m->jobs) {
		struct job *j = m->jobs;

		m->jobs = j->next;
		job_free(j);
	}
	while (m->provs) {
		struct prov *p = m->provs;

		m->provs = p->next;
		prov_close(p);
		free(p->name);
		free(p->text);
		free(p);
	}
	while (m->accounts) {
		struct account *a = m->accounts;

		m->accounts = a->next;
		free(a->name);
		free(a);
	}
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->wake);
	free(m->state_dir);
	free(m->tree);
	free(m->exe);
	free(m->url);
	free(m);
}
