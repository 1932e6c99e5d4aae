/*
 * mining_book.c - a completed round, priced, verified and valued, into the ledger (see
 * mining_book.h).  The arithmetic is reward.c's and the entries mining_ledger.c's; this file
 * gathers their inputs from the round and the coordinator.
 */
#include "scheduler/mining_book.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "gpu/data.h"
#include "gpu/train.h"
#include "scheduler/ledger.h"
#include "scheduler/mining_job.h"
#include "scheduler/mining_ledger.h"
#include "scheduler/mining_verify.h"
#include "scheduler/mining_wire.h"

#define CHECK_Q_DEFAULT 0.1

struct mining_book {
	pthread_mutex_t lock; /* everything below */
	struct ledger *l;
	struct mining *m;
	uint8_t key[32];
	double q;
	long drop;          /* fault injection: the hook of this round is lost (0: none) */
	char *hold;         /* fault injection: the hook waits while this file exists */
	char error[256];
};

/* The store's verification key: read, or made once (temp, fsync, rename). */
static int load_key(const char *store_dir, uint8_t key[32])
{
	char *path = NULL, *tmp = NULL;
	int fd, r = 0;

	if (asprintf(&path, "%s/mining/ledger.key", store_dir) < 0 ||
	    asprintf(&tmp, "%s/mining/ledger.key.tmp", store_dir) < 0) {
		r = -ENOMEM;
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		r = read(fd, key, 32) == 32 ? 0 : -EIO;
		close(fd);
		goto out;
	}
	if (getrandom(key, 32, 0) != 32) {
		r = -EIO;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if (write(fd, key, 32) != 32 || fsync(fd) < 0)
		r = -EIO;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
out:
	free(path);
	free(tmp);
	return r;
}

int mining_book_open(const char *store_dir, struct mining_book **ret)
{
	struct mining_book *b = calloc(1, sizeof(*b));
	const char *q = getenv("LLMFS_MINING_CHECK_Q");
	char *path = ledger_path(store_dir);
	int r;

	if (!b || !path) {
		free(b);
		free(path);
		return -ENOMEM;
	}
	pthread_mutex_init(&b->lock, NULL);
	b->q = CHECK_Q_DEFAULT;
	if (q && *q) {
		char *end;
		double v = strtod(q, &end);

		if (!*end && v >= 0 && v <= 1)
			b->q = v;
	}
	q = getenv("LLMFS_MINING_BOOK_DROP");
	b->drop = q ? atol(q) : 0;
	q = getenv("LLMFS_MINING_BOOK_HOLD");
	b->hold = q && *q ? strdup(q) : NULL;
	r = ledger_open(path, 1, &b->l);
	if (r == 0)
		r = load_key(store_dir, b->key);
	free(path);
	if (r < 0) {
		mining_book_close(b);
		return r;
	}
	*ret = b;
	return 0;
}

void mining_book_attach(struct mining_book *b, struct mining *m)
{
	pthread_mutex_lock(&b->lock);
	b->m = m;
	pthread_mutex_unlock(&b->lock);
}

void mining_book_close(struct mining_book *b)
{
	if (!b)
		return;
	ledger_close(b->l);
	pthread_mutex_destroy(&b->lock);
	free(b->hold);
	free(b);
}

void mining_book_status(struct mining_book *b, char *buf, size_t len)
{
	pthread_mutex_lock(&b->lock);
	snprintf(buf, len, "%s", b->error);
	pthread_mutex_unlock(&b->lock);
}

int mining_book_balance(struct mining_book *b, const char *account, char **ret, size_t *ret_len)
{
	int r;

	pthread_mutex_lock(&b->lock);
	r = ledger_balance_json(b->l, account, ret);
	pthread_mutex_unlock(&b->lock);
	if (r == 0)
		*ret_len = strlen(*ret);
	return r;
}

int mining_book_money(struct mining_book *b, const char *account, int64_t *ret)
{
	struct ledger_balance bal;
	int r;

	pthread_mutex_lock(&b->lock);
	r = ledger_balance(b->l, account, &bal);
	pthread_mutex_unlock(&b->lock);
	if (r == 0)
		*ret = bal.money;
	return r;
}

int mining_book_transfer(struct mining_book *b, const char *from, uid_t uid, const char *line,
			 const char **why)
{
	struct ledger_transfer t = { .from = from };
	struct mining_info info;
	const char *unused;
	char *copy = strdup(line), ev[64];
	int r;

	if (!why)
		why = &unused;
	*why = "";
	if (!copy)
		return -ENOMEM;
	r = mining_ledger_transfer_parse(copy, &t, why);
	if (r < 0)
		goto out;
	pthread_mutex_lock(&b->lock);
	r = b->m ? mining_info(b->m, MINING_ACCOUNTS, from, &info) : -ENOENT;
	if (r == 0 && info.uid != uid)
		r = -EPERM;
	if (r == 0 && !strcmp(t.to, from)) {
		*why = "a transfer to the account itself";
		r = -EINVAL;
	}
	if (r == 0)
		r = mining_info(b->m, MINING_ACCOUNTS, t.to, &info);
	if (r == 0) {
		snprintf(ev, sizeof(ev), "{\"uid\":%lu}", (unsigned long)uid);
		t.evidence = ev;
		r = ledger_transfer(b->l, &t, NULL);
		if (r == -EINVAL)
			*why = "a bad name or key (key: 1 to 48 of A-Z a-z 0-9 . _ -)";
	}
	pthread_mutex_unlock(&b->lock);
	if (r == 1)
		r = 0;
out:
	free(copy);
	return r;
}

int mining_book_export(struct mining_book *b, char **ret, size_t *ret_len)
{
	int r;

	pthread_mutex_lock(&b->lock);
	r = ledger_export(b->l, ret, ret_len);
	pthread_mutex_unlock(&b->lock);
	return r;
}

/* ---- one round ---- */

struct slot_info {
	char account[LEDGER_NAME_MAX + 1];
	char device[16];
	int64_t price;      /* micro-USD per device-hour */
	float *claim;       /* the pseudo-gradient as received, decoded */
	enum mining_enc enc;
	unsigned block;
	char *flag;         /* the verifier's evidence when rejected */
	char evidence[256];
};

/* Account, price and device of a provider from its provider.json. */
static void provider_terms(struct mining *m, const char *name, struct slot_info *s)
{
	char *text = NULL;
	size_t len = 0;
	json_t *cfg = NULL, *v;

	snprintf(s->account, sizeof(s->account), "provider:%.100s", name);
	snprintf(s->device, sizeof(s->device), "cpu");
	s->price = 0;
	if (!m || mining_provider_read(m, name, MINING_PF_CONFIG, &text, &len) < 0)
		goto out;
	cfg = json_loadb(text, len, 0, NULL);
	v = json_object_get(cfg, "account");
	if (json_is_string(v) && *json_string_value(v))
		snprintf(s->account, sizeof(s->account), "%s", json_string_value(v));
	v = json_object_get(cfg, "price");
	if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 1e6)
		s->price = llround(json_number_value(v) * LEDGER_MICRO);
	v = json_object_get(cfg, "device");
	if (json_is_string(v) && (!strcmp(json_string_value(v), "gpu") ||
				  !strcmp(json_string_value(v), "cpu")))
		snprintf(s->device, sizeof(s->device), "%s", json_string_value(v));
out:
	json_decref(cfg);
	free(text);
}

static int read_all(const char *path, char **ret, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long len;
	int r = 0;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) < 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
		r = -EIO;
	else if (!(buf = malloc((size_t)len + 1)))
		r = -ENOMEM;
	else if (fread(buf, 1, (size_t)len, f) != (size_t)len)
		r = -EIO;
	fclose(f);
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret = buf;
	*ret_len = (size_t)len;
	return 0;
}

/* A frame file of n floats into a new array; its coding in enc and block. */
static int load_frame(const char *path, size_t n, float **ret, enum mining_enc *enc,
		      unsigned *block)
{
	char *buf = NULL, err[128];
	size_t len = 0;
	float *v = malloc(n * sizeof(float));
	int r = v ? read_all(path, &buf, &len) : -ENOMEM;

	if (r == 0)
		r = mining_wire_decode(buf, len, n, v, enc, err, sizeof(err));
	if (r == 0 && block)
		*block = len >= 16 ? (unsigned)((unsigned char)buf[12] | (unsigned char)buf[13] << 8 |
						(unsigned char)buf[14] << 16 |
						(unsigned)(unsigned char)buf[15] << 24) : 0;
	free(buf);
	if (r < 0) {
		free(v);
		return r;
	}
	*ret = v;
	return 0;
}

/* The replica's window again, into replay (start minus end, through the claim's coding). */
static int replay_window(const struct mining_round *rd, const struct mining_contribution *c,
			 const struct slot_info *s, const float *w0, float *replay, size_t n)
{
	const struct gpu_train_opts *o = rd->opts;
	size_t each = rd->n_train / (c->n_shards ? c->n_shards : 1);
	struct gpu_data shard = { 0 };
	struct gpu_model *m = NULL;
	void *frame = NULL;
	size_t flen = 0, k;
	int r, nt = omp_get_max_threads();

	shard.tokens = rd->tokens + each * c->slot;
	shard.n_tokens = shard.n_train = each;
	shard.vocab_size = rd->vocab;
	if (c->threads)
		omp_set_num_threads((int)c->threads);
	r = gpu_model_new(&m, &o->cfg, &o->opts);
	if (r == 0)
		r = gpu_model_write(m, GPU_BUF_PARAMS, w0);
	if (r == 0)
		r = gpu_train_window(m, &shard, o, c->seed, c->step0, c->H, NULL);
	if (r == 0)
		r = gpu_model_read(m, GPU_BUF_PARAMS, replay);
	gpu_model_free(m);
	/* the calling thread's count again: the job's validation on this thread splits its
	 * matrices by it, and a replay drawn at random must not change its bits */
	omp_set_num_threads(nt);
	if (r < 0)
		return r;
	for (k = 0; k < n; k++)
		replay[k] = w0[k] - replay[k];
	if (s->enc == MINING_ENC_INT8) {
		char err[128];

		r = mining_wire_encode(s->enc, s->block, replay, n, &frame, &flen);
		if (r == 0)
			r = mining_wire_decode(frame, flen, n, replay, NULL, err, sizeof(err));
		free(frame);
	}
	return r;
}

/* The coalition value: the validation loss of W0 moved by the members' pseudo-gradients. */
struct value_ctx {
	const struct mining_round *rd;
	struct slot_info *s;
	const float *w0;
	float *w;
	size_t n;
	struct gpu_model *m;
	struct gpu_data view;
	double base;
};

static int eval_at(struct value_ctx *v, const float *w, double *ret)
{
	float loss;
	int r = gpu_model_write(v->m, GPU_BUF_PARAMS, w);

	if (r == 0)
		r = gpu_train_eval(v->m, &v->view, v->rd->opts, v->rd->opts->seed, &loss);
	if (r == 0)
		*ret = loss;
	return r;
}

static int coalition_value(void *arg, const uint8_t *mem, int n, double *ret)
{
	struct value_ctx *v = arg;
	float k = v->rd->outer_lr / (float)n;
	double loss;
	size_t j;
	int i, r;

	memcpy(v->w, v->w0, v->n * sizeof(float));
	for (i = 0; i < n; i++)
		if (mem[i] && v->s[i].claim)
			for (j = 0; j < v->n; j++)
				v->w[j] -= k * v->s[i].claim[j];
	r = isnan(v->base) ? eval_at(v, v->w0, &v->base) : 0; /* only on a breakthrough */
	if (r == 0)
		r = eval_at(v, v->w, &loss);
	if (r == 0)
		*ret = v->base - loss;
	return r;
}

/*
 * A window's start weights into start: the round's W(r-1) (w0), or with overlap=1 what the
 * replica and the coordinator computed from W(r-2), W(r-3) and the slot's own
 * pseudo-gradient of round r-1 (mining_overlap_start()).
 */
static int window_start(const struct mining_round *rd, const struct mining_contribution *c,
			const float *w0, float *start, size_t n)
{
	float *base = NULL, *prev = NULL, *own = NULL;
	int r;

	if (!c->own_path) {
		memcpy(start, w0, n * sizeof(float));
		return 0;
	}
	r = c->base_path && c->prev_path ? load_frame(c->base_path, n, &base, NULL, NULL) :
					   -EINVAL;
	if (r == 0)
		r = load_frame(c->prev_path, n, &prev, NULL, NULL);
	if (r == 0)
		r = load_frame(c->own_path, n, &own, NULL, NULL);
	if (r == 0)
		mining_overlap_start(start, base, prev, own, n, rd->outer_lr, rd->outer_mu);
	free(base);
	free(prev);
	free(own);
	return r;
}

static void verify_slots(struct mining_book *b, const struct mining_round *rd,
			 struct slot_info *s, const float *w0, size_t n)
{
	const float **others = calloc(rd->n, sizeof(*others));
	float *replay = malloc(n * sizeof(float)), *start = malloc(n * sizeof(float));
	double tol = rd->opts->opts.backend == GPU_BACKEND_CPU ? 0 : MINING_VERIFY_CUDA_TOL;
	size_t i;

	if (!others || !replay || !start)
		goto out;
	for (i = 0; i < rd->n; i++)
		others[i] = s[i].claim;
	for (i = 0; i < rd->n; i++) {
		const struct mining_contribution *c = &rd->c[i];
		struct mining_check chk;
		int r;

		if (!s[i].claim || !mining_verify_pick(b->key, rd->job, rd->round, (int)c->slot,
						       b->q))
			continue;
		others[i] = NULL; /* not a copy of itself */
		r = window_start(rd, c, w0, start, n);
		if (r == 0)
			r = replay_window(rd, c, &s[i], start, replay, n);
		if (r == 0)
			mining_verify_compare(s[i].claim, replay, n, tol, others, (int)rd->n, &chk);
		others[i] = s[i].claim;
		if (r < 0) {
			snprintf(b->error, sizeof(b->error), "job %s round %ld: replaying replica %u:"
				 " %s", rd->job, rd->round, c->slot, strerror(-r));
			continue;
		}
		snprintf(s[i].evidence, sizeof(s[i].evidence), "{\"slot\":%u,\"steps\":%ld,"
			 "\"tokens\":%llu,\"verified\":%s}", c->slot, c->steps,
			 (unsigned long long)c->tokens, chk.verdict == MINING_OK ? "true" : "false");
		if (chk.verdict != MINING_OK) {
			char *js = mining_check_json(&chk);

			if (js && asprintf(&s[i].flag, "{\"slot\":%u,\"check\":%s}", c->slot, js) < 0)
				s[i].flag = NULL;
			free(js);
		}
	}
out:
	free(others);
	free(replay);
	free(start);
}

/* Books rd (the lock held). */
static void book_round(struct mining_book *b, const struct mining_round *rd)
{
	struct mining_ledger_contrib *mc = NULL;
	struct slot_info *s = NULL;
	struct mining_ledger_cfg cfg;
	struct mining_ledger_paid paid;
	struct value_ctx v = { 0 };
	float *w0 = NULL;
	size_t n = 0, i;
	int r = -ENOMEM;

	mining_ledger_cfg_init(&cfg);
	cfg.seed = (uint64_t)rd->round;
	if (!rd->opts || !rd->tokens) {
		r = -EINVAL;
		goto out;
	}
	n = gpu_config_num_params(&rd->opts->cfg);
	s = calloc(rd->n + 1, sizeof(*s));
	mc = calloc(rd->n + 1, sizeof(*mc));
	if (!s || !mc)
		goto out;
	r = load_frame(rd->start_path, n, &w0, NULL, NULL);
	if (r < 0)
		goto out;
	for (i = 0; i < rd->n; i++) {
		const struct mining_contribution *c = &rd->c[i];

		provider_terms(b->m, c->provider, &s[i]);
		snprintf(s[i].evidence, sizeof(s[i].evidence), "{\"slot\":%u,\"steps\":%ld,"
			 "\"tokens\":%llu}", c->slot, c->steps, (unsigned long long)c->tokens);
		if (c->accepted && c->delta_path &&
		    load_frame(c->delta_path, n, &s[i].claim, &s[i].enc, &s[i].block) < 0)
			s[i].claim = NULL; /* accepted but gone: paid, never verified */
	}
	verify_slots(b, rd, s, w0, n);
	for (i = 0; i < rd->n; i++) {
		const struct mining_contribution *c = &rd->c[i];

		mc[i] = (struct mining_ledger_contrib){ s[i].account, s[i].device,
							c->device_seconds, s[i].price, c->accepted,
							s[i].flag, s[i].evidence };
	}
	v.rd = rd;
	v.s = s;
	v.w0 = w0;
	v.n = n;
	v.w = malloc(n * sizeof(float));
	v.view.tokens = rd->tokens;
	v.view.n_tokens = rd->n_tokens;
	v.view.n_train = rd->n_train;
	v.view.vocab_size = rd->vocab;
	v.base = NAN;
	r = v.w ? gpu_model_new(&v.m, &rd->opts->cfg, &rd->opts->opts) : -ENOMEM;
	if (r == 0) {
		struct mining_ledger_round lr = { rd->job, rd->round, rd->account ? rd->account : "",
						  rd->val_loss, mc, rd->n, coalition_value, &v };

		r = mining_ledger_book_round(b->l, &cfg, &lr, &paid);
	}
out:
	if (r < 0)
		snprintf(b->error, sizeof(b->error), "job %s round %ld: booking: %s", rd->job,
			 rd->round, strerror(-r));
	for (i = 0; s && i < rd->n; i++) {
		free(s[i].claim);
		free(s[i].flag);
	}
	gpu_model_free(v.m);
	free(v.w);
	free(w0);
	free(s);
	free(mc);
}

/* ---- the rounds up to the hook's, from the job folder ----
 *
 * The coordinator makes rounds durable and calls the hook behind them, from its ledger thread
 * (mining_job.h): a daemon killed between the two never calls it for those rounds.  So each
 * call books every round of the job up to its own that has no entry, in order, from what the
 * job folder keeps (contributions.tsv, rounds.tsv, weights/<r>.pg, deltas/<r>-<slot>.pg): the
 * same entries and the same verification whether the round is booked at once or after a crash.
 */

struct booked {
	char *acct;
	uint8_t *seen; /* seen[r] for r < cap */
	long cap;
};

static int booked_row(void *arg, const struct ledger_entry *e)
{
	struct booked *bk = arg;

	if (e->kind == LEDGER_UNITS && !strcmp(e->account, bk->acct) && e->round < bk->cap)
		bk->seen[e->round] = 1;
	return 0;
}

/* Line r (1-based data row) of a TSV split on tabs into f[0..max); 0 or -ENOENT. */
static int tsv_rows(const char *path, long round, char ***ret_rows, size_t *ret_n)
{
	char *text = NULL, *line, *save = NULL, **rows = NULL;
	size_t len = 0, n = 0;
	int r = read_all(path, &text, &len);

	if (r < 0)
		return r;
	text[len] = 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char **nr;

		if (atol(line) != round || !strchr(line, '\t'))
			continue;
		nr = realloc(rows, (n + 1) * sizeof(*rows));
		if (!nr || !(nr[n] = strdup(line))) {
			free(nr ? nr : rows);
			r = -ENOMEM;
			break;
		}
		rows = nr;
		n++;
	}
	free(text);
	*ret_rows = rows;
	*ret_n = n;
	return r;
}

static void free_rows(char **rows, size_t n)
{
	while (n)
		free(rows[--n]);
	free(rows);
}

/* Field i (0-based) of a tab-separated row, copied into buf. */
static const char *field(const char *row, int i, char *buf, size_t len)
{
	const char *p = row, *e;

	while (i-- > 0 && p)
		p = (p = strchr(p, '\t')) ? p + 1 : NULL;
	if (!p)
		p = "";
	e = strchr(p, '\t');
	snprintf(buf, len, "%.*s", (int)(e ? (size_t)(e - p) : strlen(p)), p);
	return buf;
}

static void catch_up_round(struct mining_book *b, const struct mining_round *rd,
			   const char *dir, long m)
{
	struct mining_contribution *c = NULL;
	struct mining_round old = *rd;
	char **rows = NULL, **vrows = NULL, *p = NULL, *w0 = NULL, *w1 = NULL, f[256];
	char (*prov)[128] = NULL, (*dpath)[600] = NULL, (*opath)[600] = NULL, *wb = NULL, *wp = NULL;
	char **prow = NULL;
	size_t n = 0, nv = 0, np = 0, i;

	if (asprintf(&p, "%s/contributions.tsv", dir) < 0 || tsv_rows(p, m, &rows, &n) < 0 ||
	    n == 0)
		goto out;
	free(p);
	p = NULL;
	if (asprintf(&p, "%s/rounds.tsv", dir) < 0 || tsv_rows(p, m, &vrows, &nv) < 0 || nv != 1)
		goto out;
	c = calloc(n, sizeof(*c));
	prov = calloc(n, sizeof(*prov));
	dpath = calloc(n, sizeof(*dpath));
	opath = calloc(n, sizeof(*opath));
	if (!c || !prov || !dpath || !opath ||
	    asprintf(&w0, "%s/weights/%ld.pg", dir, m - 1) < 0 ||
	    asprintf(&w1, "%s/weights/%ld.pg", dir, m) < 0 ||
	    asprintf(&wb, "%s/weights/%ld.pg", dir, m - 2) < 0 ||
	    asprintf(&wp, "%s/weights/%ld.pg", dir, m < 3 ? m - 2 : m - 3) < 0)
		goto out;
	free(p);
	p = NULL;
	/* overlap=1: who started from its own pseudo-gradient of round m - 1 (accepted then) */
	if (rd->overlap && m > 1 && (asprintf(&p, "%s/contributions.tsv", dir) < 0 ||
				     tsv_rows(p, m - 1, &prow, &np) < 0))
		goto out;
	for (i = 0; i < n; i++) {
		c[i] = rd->c[0];
		c[i].slot = (unsigned)atoi(field(rows[i], 1, f, sizeof(f)));
		snprintf(prov[i], sizeof(prov[i]), "%.127s", field(rows[i], 2, f, sizeof(f)));
		c[i].provider = prov[i];
		c[i].replica = "";
		c[i].steps = atol(field(rows[i], 4, f, sizeof(f)));
		c[i].tokens = strtoull(field(rows[i], 5, f, sizeof(f)), NULL, 10);
		c[i].device_seconds = strtod(field(rows[i], 6, f, sizeof(f)), NULL);
		c[i].accepted = atoi(field(rows[i], 7, f, sizeof(f)));
		c[i].reason = "";
		c[i].seed = mining_window_seed(rd->opts->seed, m, c[i].slot);
		c[i].step0 = (m - 1) * c[i].H;
		snprintf(dpath[i], sizeof(dpath[i]), "%s/deltas/%ld-%u.pg", dir, m, c[i].slot);
		c[i].delta_path = c[i].accepted && access(dpath[i], R_OK) == 0 ? dpath[i] : NULL;
		c[i].base_path = c[i].prev_path = c[i].own_path = NULL;
		for (size_t k = 0; k < np; k++)
			if ((unsigned)atoi(field(prow[k], 1, f, sizeof(f))) == c[i].slot &&
			    atoi(field(prow[k], 7, f, sizeof(f))) == 1) {
				snprintf(opath[i], sizeof(opath[i]), "%s/deltas/%ld-%u.pg", dir, m - 1,
					 c[i].slot);
				c[i].base_path = wb;
				c[i].prev_path = wp;
				c[i].own_path = opath[i];
			}
	}
	old.round = m;
	old.val_loss = strtof(field(vrows[0], 1, f, sizeof(f)), NULL);
	old.train_loss = strtof(field(vrows[0], 2, f, sizeof(f)), NULL);
	old.start_path = w0;
	old.end_path = w1;
	old.start_sha256 = old.end_sha256 = "";
	old.c = c;
	old.n = n;
	book_round(b, &old);
out:
	free_rows(rows, n);
	free_rows(vrows, nv);
	free_rows(prow, np);
	free(c);
	free(prov);
	free(dpath);
	free(opath);
	free(wb);
	free(wp);
	free(w0);
	free(w1);
	free(p);
}

static void catch_up(struct mining_book *b, const struct mining_round *rd)
{
	struct booked bk = { NULL, NULL, rd->round + 1 };
	char *dir = strdup(rd->start_path ? rd->start_path : ""), *slash;
	long m;

	/* the job folder: <dir>/weights/<r-1>.pg */
	for (int k = 0; k < 2 && dir; k++) {
		slash = strrchr(dir, '/');
		if (!slash) {
			free(dir);
			dir = NULL;
			break;
		}
		*slash = 0;
	}
	if (!dir || rd->n == 0 || asprintf(&bk.acct, "job:%s", rd->job) < 0)
		goto out;
	bk.seen = calloc((size_t)bk.cap, 1);
	if (!bk.seen || ledger_foreach(b->l, rd->job, NULL, booked_row, &bk) < 0)
		goto out;
	for (m = 1; m <= rd->round; m++)
		if (!bk.seen[m])
			catch_up_round(b, rd, dir, m);
out:
	free(bk.acct);
	free(bk.seen);
	free(dir);
}

void mining_book_on_round(void *arg, const struct mining_round *rd)
{
	struct mining_book *b = arg;

	while (b->hold && access(b->hold, F_OK) == 0)
		usleep(50000); /* a ledger slower than the rounds, as long as the test says */
	pthread_mutex_lock(&b->lock);
	if (rd->round == b->drop)
		b->drop = 0; /* lost once, as a crash before the call would lose it */
	else if (rd->opts && rd->tokens)
		catch_up(b, rd);
	pthread_mutex_unlock(&b->lock);
}
