/*
 * mining_replica: one co-training replica, the daemon's own program run as
 *   llmfs --mining-replica URL JOB SLOT THREADS        (the job's token on stdin)
 * It reaches its coordinator over HTTP only (mining_wire.h), so that it runs the same on this
 * machine, under Slurm or behind another daemon: it fetches the job's options and its shard of
 * the training tokens, then, for each round the coordinator opens, the global weights; runs
 * the window of H inner steps (gpu_train_window(): fresh AdamW state, batches drawn from its
 * shard with mining_window_seed()); and posts its pseudo-gradient (start minus end weights,
 * fp32 or int8).  A post the coordinator refuses as stale (409: the round closed without it)
 * is dropped and the replica catches up from the latest weights.  It ends when the job does
 * (410), and after 10 minutes without reaching the coordinator.  Messages go to stderr.
 */
#include "mining_job.h"

#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/clock.h"
#include "gpu/data.h"
#include "gpu/train.h"
#include "mining_wire.h"

#define UNREACHABLE_S 600.0
#define RETRY_S 0.5

struct replica {
	const char *url, *job;
	unsigned slot;
	char token[128];
	struct gpu_train_opts o;
	long H;
	enum mining_enc enc;
	unsigned block;
	struct gpu_data shard;
	uint16_t *tokens;
	struct gpu_model *m;
	size_t n;
	float *w;                   /* the global weights W(w_round) it holds, or NULL */
	long w_round;
	long rounds;
	int overlap;                /* the job's overlap= key */
	float *wp;                  /* overlap: W(w_round - 1) when wp_round says so */
	long wp_round;
	float outer_lr, outer_mu;
	float *s;                   /* overlap: the start of its next window, of round s_round */
	long s_round;               /* 0: none (it asks the coordinator) */
	int s_own;                  /* s is W(s_round - 2) minus its own pseudo-gradient */
	double t_end;               /* when its last window ended */
};

static void say(const struct replica *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct replica *r, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "replica %u: ", r->slot);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * A request, retried every RETRY_S while the transport fails (connection refused or reset, no
 * route, a timeout: anything short of an HTTP answer) for up to UNREACHABLE_S; the same request
 * again, so a post that fails mid-way is posted whole once more (one that had got through is
 * answered 409, and the replica catches up as from any stale post).  Its first failure and
 * its recovery go to the log.
 */
static int call(struct replica *r, const char *path, const void *body, size_t len,
		struct mining_http_reply *rep)
{
	char url[1024], err[512];
	double t0 = clock_mono_s();
	int ret, tries = 0;

	snprintf(url, sizeof(url), "%s/v1/jobs/%s/%s", r->url, r->job, path);
	while ((ret = mining_http(url, r->token, body, len, 300, rep, err, sizeof(err))) ==
	       -EHOSTDOWN) {
		if (clock_mono_s() - t0 > UNREACHABLE_S) {
			say(r, "the coordinator does not answer: %s", err);
			return ret;
		}
		if (!tries++)
			say(r, "the coordinator does not answer (%s): retrying for up to %.0f s", err,
			    UNREACHABLE_S);
		usleep((useconds_t)(RETRY_S * 1e6));
	}
	if (tries)
		say(r, "the coordinator answers again after %.1f s (%d tries)", clock_mono_s() - t0,
		    tries + 1);
	return ret;
}

static int get_spec(struct replica *r)
{
	struct mining_http_reply rep;
	char err[256];
	json_t *o;
	const char *train;
	int ret = call(r, "spec", NULL, 0, &rep);

	if (ret < 0)
		return ret;
	if (rep.status != 200) {
		say(r, "spec: HTTP %ld: %s", rep.status, rep.body);
		mining_http_reply_free(&rep);
		return rep.status == 410 ? 1 : -EACCES;
	}
	o = json_loads(rep.body, 0, NULL);
	mining_http_reply_free(&rep);
	train = o ? json_string_value(json_object_get(o, "train")) : NULL;
	gpu_train_opts_init(&r->o);
	if (!train || gpu_train_opts_parse(&r->o, train, strlen(train), err, sizeof(err)) < 0 ||
	    gpu_train_opts_finish(&r->o, err, sizeof(err)) < 0 ||
	    mining_enc_parse(json_string_value(json_object_get(o, "compression")) ?: "?",
			     &r->enc) < 0) {
		say(r, "spec: malformed");
		json_decref(o);
		return -EINVAL;
	}
	r->H = (long)json_integer_value(json_object_get(o, "inner_steps"));
	r->block = (unsigned)json_integer_value(json_object_get(o, "block"));
	r->rounds = (long)json_integer_value(json_object_get(o, "rounds"));
	r->overlap = json_integer_value(json_object_get(o, "overlap")) == 1;
	/* printed with 9 digits: the coordinator's floats exactly */
	r->outer_lr = (float)json_number_value(json_object_get(o, "outer_lr"));
	r->outer_mu = (float)json_number_value(json_object_get(o, "outer_momentum"));
	json_decref(o);
	return r->H > 0 ? 0 : -EINVAL;
}

static int get_shard(struct replica *r)
{
	struct mining_http_reply rep;
	char path[64];
	int ret;

	snprintf(path, sizeof(path), "shard/%u", r->slot);
	ret = call(r, path, NULL, 0, &rep);
	if (ret < 0)
		return ret;
	if (rep.status != 200 || rep.len < 16 || memcmp(rep.body, "LLMFSTOK", 8) || (rep.len & 1)) {
		say(r, "shard: HTTP %ld, %zu bytes", rep.status, rep.len);
		mining_http_reply_free(&rep);
		return rep.status == 410 ? 1 : -EPROTO;
	}
	r->shard.n_tokens = r->shard.n_train = (rep.len - 16) / 2;
	r->tokens = malloc(r->shard.n_tokens * sizeof(uint16_t) + 1);
	if (!r->tokens) {
		mining_http_reply_free(&rep);
		return -ENOMEM;
	}
	for (size_t i = 0; i < r->shard.n_tokens; i++) {
		const unsigned char *b = (const unsigned char *)rep.body + 16 + 2 * i;

		r->tokens[i] = (uint16_t)(b[0] | b[1] << 8);
	}
	r->shard.vocab_size = (unsigned char)rep.body[12] | (unsigned char)rep.body[13] << 8;
	r->shard.tokens = r->tokens;
	mining_http_reply_free(&rep);
	return 0;
}

/*
 * The weights of the next round after `after` into r->w (W(round - 1)): 0 and *round (and
 * *own: overlap=1, the slot's window of that round starts from its own pseudo-gradient of
 * round - 1), 2 none yet or asked again, 1 the job ended, < 0 an error.
 */
static int get_weights(struct replica *r, long after, long *round, int *own)
{
	struct mining_http_reply rep;
	char path[256], err[256];
	float *w1 = NULL;
	enum mining_enc enc;
	long base;
	int ret;

	snprintf(path, sizeof(path), "weights?after=%ld&have=%ld&wait=20&pack=1&slot=%u", after,
		 r->w ? r->w_round : -1, r->slot);
	ret = call(r, path, NULL, 0, &rep);
	if (ret < 0)
		return ret;
	if (rep.status == 410) {
		mining_http_reply_free(&rep);
		return 1;
	}
	if (rep.status == 204) { /* the long poll ended without a new round: ask again */
		mining_http_reply_free(&rep);
		return 2;
	}
	if (rep.status != 200 || !rep.round[0]) {
		say(r, "weights: HTTP %ld: %.200s", rep.status, rep.body);
		mining_http_reply_free(&rep);
		return -EPROTO;
	}
	*round = strtol(rep.round, NULL, 10);
	*own = rep.own[0] && strtol(rep.own, NULL, 10) == *round - 1;
	/* X-Llmfs-Base: an update to the weights of that round, not the weights */
	base = rep.base[0] ? strtol(rep.base, NULL, 10) : -1;
	if (!r->w)
		r->w = malloc(r->n * sizeof(float));
	w1 = malloc(r->n * sizeof(float));
	ret = r->w && w1 ? mining_wire_decode(rep.body, rep.len, r->n, w1, &enc, err, sizeof(err))
			 : -ENOMEM;
	mining_http_reply_free(&rep);
	if (ret == 0 && base >= 0 && (base != *round - 2 || r->w_round != base)) {
		/* not an update of what it holds: ask again for the whole weights */
		say(r, "weights of round %ld: an update from round %ld, holding %ld", *round,
		    base, r->w_round);
		r->w_round = -1;
		ret = 2;
		goto out;
	}
	if (ret < 0) {
		say(r, "weights of round %ld: %s", *round, err);
		r->w_round = -1;
		goto out;
	}
	/* overlap=1: the weights before, for its next own start */
	if (r->overlap && base >= 0 && (r->wp || (r->wp = malloc(r->n * sizeof(float))))) {
		memcpy(r->wp, r->w, r->n * sizeof(float));
		r->wp_round = base;
	} else {
		r->wp_round = -1;
	}
	/* an update: added as the coordinator adds it (bit-identical weights) */
	for (size_t k = 0; k < r->n; k++)
		r->w[k] = base >= 0 ? r->w[k] + w1[k] : w1[k];
	r->w_round = *round - 1;
out:
	free(w1);
	return ret;
}

/* overlap=1: the start of its window of round `round` from the coordinator, W(round - 2)
 * minus its own pseudo-gradient of round - 1 (it was started again and does not hold
 * them): 0, 2 the round moved on, < 0 an error. */
static int get_start(struct replica *r, long round, float *s)
{
	struct mining_http_reply rep;
	char path[128], err[256];
	int ret;

	snprintf(path, sizeof(path), "start/%u?round=%ld&pack=1", r->slot, round);
	ret = call(r, path, NULL, 0, &rep);
	if (ret < 0)
		return ret;
	if (rep.status == 200 &&
	    (ret = mining_wire_decode(rep.body, rep.len, r->n, s, NULL, err, sizeof(err))) == 0)
		say(r, "round %ld: its own start from the coordinator", round);
	else if (rep.status != 200)
		snprintf(err, sizeof(err), "HTTP %ld: %.200s", rep.status, rep.body);
	if (rep.status != 200 || ret < 0) {
		say(r, "the start of round %ld: %s", round, err);
		ret = rep.status == 409 ? 2 : -EPROTO;
	}
	mining_http_reply_free(&rep);
	return ret;
}

/*
 * The window of `round` from start: its pseudo-gradient start - end as posted (*frame,
 * packed) and, in d, as that frame decodes (what the coordinator averages and an own start
 * subtracts).  tw: when it began to wait, for the log line.
 */
static int run_window(struct replica *r, const float *start, long round, int own, double tw,
		      void **frame, size_t *flen, float *d, double *loss)
{
	char err[128];
	void *plain = NULL;
	size_t plen = 0;
	double t0 = clock_mono_s();
	int ret;

	if ((ret = gpu_model_write(r->m, GPU_BUF_PARAMS, start)) < 0 ||
	    (ret = gpu_train_window(r->m, &r->shard, &r->o,
				    mining_window_seed(r->o.seed, round, r->slot),
				    (round - 1) * r->H, r->H, loss)) < 0 ||
	    (ret = gpu_model_read(r->m, GPU_BUF_PARAMS, d)) < 0) {
		say(r, "round %ld: training: %s", round, strerror(-ret));
		return ret;
	}
	/* Its compute time, and how long it waited before (non-overlapped: for the round's
	 * weights, i.e. the previous round's slowest replica, the outer step, the transfer;
	 * overlap=1: since its previous window ended), for the utilisation benchmark
	 * (tools/bench/mining-wire.sh). */
	r->t_end = clock_mono_s();
	say(r, "round %ld: %ld inner steps in %.3f s, after %.3f s waiting for its weights%s",
	    round, r->H, r->t_end - t0, t0 - tw, own ? ", from its own pseudo-gradient" : "");
	for (size_t k = 0; k < r->n; k++)
		d[k] = start[k] - d[k];
	ret = mining_wire_encode(r->enc, r->block, d, r->n, &plain, &plen);
	if (ret == 0)
		ret = mining_wire_decode(plain, plen, r->n, d, NULL, err, sizeof(err));
	if (ret == 0)
		ret = mining_wire_pack(plain, plen, frame, flen);
	free(plain);
	return ret;
}

/* Its pseudo-gradient of round: 0 accepted, 2 stale (refused: it catches up), 1 the job
 * ended, < 0 an error. */
static int post(struct replica *r, long round, int own, const void *frame, size_t flen,
		double loss)
{
	struct mining_http_reply rep;
	char path[256];
	int ret;

	snprintf(path, sizeof(path), "delta/%u?round=%ld&steps=%ld&loss=%.9g%s", r->slot, round,
		 r->H, loss, own ? "&own=1" : "");
	ret = call(r, path, frame, flen, &rep);
	if (ret < 0)
		return ret;
	if (rep.status == 410)
		ret = 1;
	else if (rep.status == 409)
		say(r, "round %ld: %s", round, rep.body), ret = 2; /* stale: catch up */
	else if (rep.status != 200)
		say(r, "round %ld: HTTP %ld: %s", round, rep.status, rep.body), ret = -EPROTO;
	mining_http_reply_free(&rep);
	return ret;
}

/* One round: 0 done (or stale), 1 the job ended, < 0 an error. */
static int do_round(struct replica *r, long *last)
{
	float *d = malloc(r->n * sizeof(float));
	void *frame = NULL;
	size_t flen = 0;
	double loss = 0, tw = clock_mono_s();
	long round;
	int ret, own;

	ret = d ? get_weights(r, *last, &round, &own) : -ENOMEM;
	if (ret == 0)
		ret = run_window(r, r->w, round, 0, tw, &frame, &flen, d, &loss);
	if (ret == 0 && (ret = post(r, round, 0, frame, flen, loss)) >= 0)
		*last = round;
	free(frame);
	free(d);
	return ret == 2 ? 0 : ret;
}

/* overlap=1: the weights of the round its window is for, fetched while it computes. */
struct prefetch {
	struct replica *r;
	long after, round;
	int own, ret;
};

static void *prefetch_main(void *arg)
{
	struct prefetch *p = arg;

	p->ret = get_weights(p->r, p->after, &p->round, &p->own);
	return NULL;
}

/*
 * overlap=1: one window.  After a post that was accepted, the next window starts at once
 * from the weights it holds, W(r-1), minus its own pseudo-gradient of round r (as the
 * coordinator decodes it); the round's weights W(r) are fetched after that window, only to
 * post it (its round must be open) and to hold them for the next start.  Without an
 * accepted post (the first window, one refused, a process started again) it asks: the
 * weights, and its start when the coordinator says it starts from its own pseudo-gradient.
 * 0 done (or stale), 1 the job ended, < 0 an error.
 */
static int do_overlapped(struct replica *r, long *last)
{
	float *d = malloc(r->n * sizeof(float));
	void *frame = NULL;
	size_t flen = 0;
	double loss = 0, tw = r->t_end > 0 ? r->t_end : clock_mono_s();
	long round = 0;
	int ret = d ? 0 : -ENOMEM, own = 0;

	if (ret == 0 && !r->s_round) {
		ret = get_weights(r, *last, &round, &own);
		if (ret == 0 && !r->s && !(r->s = malloc(r->n * sizeof(float))))
			ret = -ENOMEM;
		if (ret == 0 && own)
			ret = get_start(r, round, r->s);
		else if (ret == 0)
			memcpy(r->s, r->w, r->n * sizeof(float));
		if (ret == 0)
			r->s_round = round, r->s_own = own;
		tw = clock_mono_s(); /* the wait is the start's, not the gap since a window */
	}
	if (ret == 0 && r->s_round > r->rounds) {
		/* every round posted: it waits for the job's end */
		r->s_round = 0;
		ret = get_weights(r, *last, &round, &own);
		goto out;
	}
	if (ret == 0) {
		/* The round's weights come down while it computes (a long poll: answered when the
		 * round opens): its window starts from r->s, and only this thread writes r->w. */
		struct prefetch pf = { r, r->s_round - 1, 0, 0, 0 };
		pthread_t th;
		int threaded = r->w_round != r->s_round - 1 &&
			       pthread_create(&th, NULL, prefetch_main, &pf) == 0;

		ret = run_window(r, r->s, r->s_round, r->s_own, tw, &frame, &flen, d, &loss);
		if (threaded) {
			pthread_join(th, NULL);
			if (ret == 0 && pf.ret < 0)
				ret = pf.ret;
			else if (ret == 0 && pf.ret == 1)
				ret = 1;
			else if (ret == 0 && pf.ret == 0 && pf.round != r->s_round)
				ret = 2; /* the round closed without it */
		}
	}
	/* the round's weights: it posts to an open round only */
	while (ret == 0 && r->w_round != r->s_round - 1) {
		ret = get_weights(r, r->s_round - 1, &round, &own);
		if (ret == 2)
			ret = 0;
		else if (ret == 0 && round != r->s_round)
			ret = 2; /* the round closed without it */
	}
	if (ret == 0)
		ret = post(r, r->s_round, r->s_own, frame, flen, loss);
	if (ret == 0) {
		*last = r->s_round;
		/* its next start, from W(s_round - 1), W(s_round - 2) (W(0) in round 1) and its
		 * pseudo-gradient; without the weights before (a full download after a restart)
		 * it asks the coordinator, once the next round opens */
		if (r->w_round == 0 || r->wp_round == r->w_round - 1) {
			mining_overlap_start(r->s, r->w, r->w_round == 0 ? r->w : r->wp, d, r->n,
					     r->outer_lr, r->outer_mu);
			r->s_round++;
			r->s_own = 1;
		} else {
			r->s_round = 0;
		}
	} else if (ret == 2) {
		/* it asks again for the open round's weights and its start: of a round after
		 * the weights it holds, never one it posted already (a long poll that ended
		 * without a round is a 2 too) */
		r->s_round = 0;
		if (r->w_round > *last)
			*last = r->w_round;
	}
out:
	free(frame);
	free(d);
	return ret == 2 ? 0 : ret;
}

int mining_replica_main(int argc, char **argv)
{
	struct replica r = { .w_round = -1, .wp_round = -1 };
	long last = 0;
	int threads, ret;
	char *end;

	if (argc != 6) {
		fprintf(stderr, "usage: %s --mining-replica URL JOB SLOT THREADS (token on stdin)\n",
			argv[0]);
		return 2;
	}
	r.url = argv[2];
	r.job = argv[3];
	r.slot = (unsigned)strtoul(argv[4], &end, 10);
	threads = atoi(argv[5]);
	if (*end || threads < 1) {
		fprintf(stderr, "mining replica: bad SLOT or THREADS\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* a fixed thread count: the CPU engine is then bit-reproducible, as replays need */
	omp_set_num_threads(threads);
	if (!fgets(r.token, sizeof(r.token), stdin)) {
		say(&r, "no token on stdin");
		return 2;
	}
	r.token[strcspn(r.token, "\r\n")] = '\0';
	ret = get_spec(&r);
	if (ret == 0)
		ret = get_shard(&r);
	if (ret == 0 && (ret = gpu_model_new(&r.m, &r.o.cfg, &r.o.opts)) < 0)
		say(&r, "creating the model: %s", strerror(-ret));
	if (ret == 0) {
		r.n = gpu_model_num_params(r.m);
		say(&r, "job %s: %zu parameters, shard of %zu tokens, %ld inner steps, %s", r.job,
		    r.n, r.shard.n_tokens, r.H, mining_enc_name(r.enc));
	}
	while (ret == 0)
		ret = r.overlap ? do_overlapped(&r, &last) : do_round(&r, &last);
	gpu_model_free(r.m);
	free(r.w);
	free(r.wp);
	free(r.s);
	free(r.tokens);
	gpu_train_opts_release(&r.o);
	if (ret == 1)
		say(&r, "the job ended");
	return ret < 0 ? 1 : 0;
}
