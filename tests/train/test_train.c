/*
 * test_train.c - gpu/train.h: the keys and the job file parser (every kind of bad input), the
 * metrics.tsv row round trip, trainer_state.json, CRC-32C, loss.svg, and the loop's hooks on a
 * tiny model (a stop then a resume gives the uninterrupted rows; from= loads weights only, and
 * refuses other shapes).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/ckpt.h"
#include "gpu/train.h"
#include "tests/check.h"

static char tmp[64];

/* Parse text into fresh options; the return of parse, then finish when parse passed. */
static int job(struct gpu_train_opts *o, const char *text, char *err, size_t errlen)
{
	int r;

	gpu_train_opts_init(o);
	err[0] = '\0';
	r = gpu_train_opts_parse(o, text, strlen(text), err, errlen);
	return r < 0 ? r : gpu_train_opts_finish(o, err, errlen);
}

/* text must fail with -EINVAL, err naming each of the words in want (NULL-ended). */
static void bad(const char *text, const char *want1, const char *want2)
{
	struct gpu_train_opts o;
	char err[256];
	int r = job(&o, text, err, sizeof(err));

	if (r != -EINVAL || !strstr(err, want1) || (want2 && !strstr(err, want2)) ||
	    strchr(err, '\n')) {
		fprintf(stderr, "  job \"%s\": r=%d err \"%s\"\n", text, r, err);
		check_failures++;
	}
	gpu_train_opts_release(&o);
}

static void test_defaults(void)
{
	struct gpu_train_opts o;
	char err[256];

	CHECK_EQ(job(&o, "data=x", err, sizeof(err)), 0);
	CHECK_EQ(o.steps, 1000);
	CHECK_EQ(o.opts.max_batch, 8);
	CHECK_EQ(o.opts.max_seq, 128);
	CHECK_EQ(o.cfg.n_layer, 4);
	CHECK_EQ(o.cfg.n_head, 4);
	CHECK_EQ(o.cfg.n_embd, 128);
	CHECK_EQ(o.cfg.n_ctx, 128);
	CHECK_EQ(o.cfg.vocab_size, 256);
	CHECK(o.lr == 1e-3f);
	CHECK(o.min_lr == 1e-3f / 10.0f);
	CHECK_EQ(o.warmup, 50);
	CHECK(o.adamw.beta1 == 0.9f && o.adamw.beta2 == 0.95f && o.adamw.eps == 1e-8f);
	CHECK(o.adamw.weight_decay == 0.1f && o.adamw.grad_clip == 1.0f);
	CHECK_EQ(o.seed, 1);
	CHECK(o.val_fraction == 0.1);
	CHECK_EQ(o.val_every, 100);
	CHECK_EQ(o.val_batches, 8);
	CHECK_EQ(o.ckpt_every, 0);
	CHECK_EQ(o.sample_len, 200);
	CHECK(o.temperature == 0.8f);
	CHECK_EQ(o.top_k, 40);
	CHECK_EQ(o.opts.backend, GPU_BACKEND_CPU);
	CHECK_EQ(o.opts.bf16, 0);
	CHECK(o.from == NULL);
	gpu_train_opts_release(&o);
}

/* The job file of the issue, with its comments. */
static void test_job_file(void)
{
	static const char text[] =
		"data=models/corpora/tinyshakespeare.txt   # any file in the tree, or a token file\n"
		"layers=4 heads=4 embd=128 seq=128 batch=8 steps=2000 lr=1e-3 seed=1\n"
		"from=models/shakespeare-2l                # optional\n"
		"backend=cpu                               # or cuda\n"
		"\t min-lr=0 warmup=0 max-mem=64 bf16=0 # explicit zeros stay zeros\r\n"
		"# a whole line of comment, key=value in it is ignored: steps=1\n";
	struct gpu_train_opts o;
	char err[256];

	CHECK_EQ(job(&o, text, err, sizeof(err)), 0);
	CHECK(o.data && strcmp(o.data, "models/corpora/tinyshakespeare.txt") == 0);
	CHECK(o.from && strcmp(o.from, "models/shakespeare-2l") == 0);
	CHECK_EQ(o.steps, 2000);
	CHECK_EQ(o.cfg.n_layer, 4);
	CHECK(o.min_lr == 0.0f);
	CHECK_EQ(o.warmup, 0);
	CHECK_EQ(o.opts.max_bytes, (size_t)64 << 20);
	gpu_train_opts_release(&o);

	/* quoted values hold blanks and #; a later key wins */
	CHECK_EQ(job(&o, "data=\"my data #1.txt\" steps=5\nsteps=7", err, sizeof(err)), 0);
	CHECK(o.data && strcmp(o.data, "my data #1.txt") == 0);
	CHECK_EQ(o.steps, 7);
	CHECK_EQ(o.warmup, 0); /* 7 / 20 */
	gpu_train_opts_release(&o);
	CHECK_EQ(job(&o, "data=x ctx=256 seq=64 bf16=1 backend=cuda", err, sizeof(err)), 0);
	CHECK_EQ(o.cfg.n_ctx, 256);
	CHECK_EQ(o.opts.bf16, 1);
	CHECK_EQ(o.opts.backend, GPU_BACKEND_CUDA);
	gpu_train_opts_release(&o);
}

static void test_bad_input(void)
{
	bad("data=x stepz=5", "unknown key", "stepz");
	bad("data=x out=/tmp", "unknown key", "out");
	bad("data=x steps=12x", "steps", "12x");
	bad("data=x steps=", "steps", "missing");
	bad("data=x steps=0x10", "steps", "0x10");
	bad("data=x steps=1.5", "steps", "1.5");
	bad("data=x steps=0", "steps", "out of range");
	bad("data=x steps=-3", "steps", "-3");
	bad("data=x steps=99999999999999999999999", "steps", "99999999999999999999999");
	bad("data=x batch=3000000000", "batch", "out of range");
	bad("data=x seed=-1", "seed", "-1");
	bad("data=x seed=18446744073709551616", "seed", "18446744073709551616");
	bad("data=x lr=abc", "lr", "abc");
	bad("data=x lr=nan", "lr", "nan");
	bad("data=x lr=inf", "lr", "inf");
	bad("data=x lr=1e-3.", "lr", "1e-3.");
	bad("data=x lr=-1e-3", "lr", "out of range");
	bad("data=x lr=1e99", "lr", "1e99");
	bad("data=x beta2=1", "beta2", "out of range");
	bad("data=x val-fraction=0", "val-fraction", "out of range");
	bad("data=x top-k=2.5", "top-k", "2.5");
	bad("data=x bf16=2", "bf16", "\"2\"");
	bad("data=x backend=tpu", "backend", "tpu");
	bad("data=x max-mem=-1", "max-mem", "-1");
	/* the shape of the file */
	bad("data=x\nsteps 5", "line 2", "steps");
	bad("data=x =5", "line 1", "=5");
	bad("data=x\n\ndata=\"open", "line 3", "unterminated");
	/* across keys */
	bad("steps=5", "data", "missing");
	bad("data=x embd=130 heads=4", "embd", "heads=4");
	bad("data=x seq=256 ctx=128", "seq", "ctx=128");
	bad("data=x bf16=1", "bf16", "cuda");

	/* a NUL inside the text */
	struct gpu_train_opts o;
	char err[256];

	gpu_train_opts_init(&o);
	CHECK_EQ(gpu_train_opts_parse(&o, "data=x\n\0steps=5", 15, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 2") != NULL);
	/* set() itself, as llmfs-train calls it */
	CHECK_EQ(gpu_train_opts_set(&o, "nope", "1", err, sizeof(err)), -EINVAL);
	CHECK_EQ(gpu_train_opts_set(&o, "steps", NULL, err, sizeof(err)), -EINVAL);
	CHECK_EQ(gpu_train_opts_set(&o, "steps", " 5", err, sizeof(err)), -EINVAL);
	CHECK_EQ(gpu_train_opts_set(&o, "steps", "5", err, sizeof(err)), 0);
	CHECK_EQ(o.steps, 5);
	gpu_train_opts_release(&o);
}

/* format -> parse gives the same options, and format again the same text. */
static void test_format_round_trip(void)
{
	struct gpu_train_opts a, b;
	char err[256], *fa = NULL, *fb = NULL;

	CHECK_EQ(job(&a, "data=\"a b\" from=m lr=3e-4 seed=18446744073709551615 val-fraction=0.3 "
		     "max-mem=5 max-seconds=1.25 steps=77", err, sizeof(err)), 0);
	CHECK_EQ(gpu_train_opts_format(&a, &fa), 0);
	CHECK(fa && !strchr(fa, '\n'));
	CHECK_EQ(job(&b, fa, err, sizeof(err)), 0);
	CHECK_EQ(gpu_train_opts_format(&b, &fb), 0);
	CHECK(fa && fb && strcmp(fa, fb) == 0);
	CHECK(b.lr == a.lr && b.min_lr == a.min_lr && b.warmup == a.warmup);
	CHECK(b.seed == UINT64_MAX && b.val_fraction == 0.3 && b.max_seconds == 1.25);
	CHECK(b.data && strcmp(b.data, "a b") == 0 && b.from && strcmp(b.from, "m") == 0);
	CHECK_EQ(b.opts.max_bytes, (size_t)5 << 20);
	free(fa);
	free(fb);
	gpu_train_opts_release(&a);
	gpu_train_opts_release(&b);

	/* a quote in a string cannot be written back */
	gpu_train_opts_init(&a);
	CHECK_EQ(gpu_train_opts_set(&a, "data", "a\"b", err, sizeof(err)), 0);
	fa = NULL;
	CHECK_EQ(gpu_train_opts_format(&a, &fa), -EINVAL);
	CHECK(fa == NULL);
	gpu_train_opts_release(&a);
}

static void test_usage(void)
{
	char *buf = NULL;
	size_t len = 0, nkeys = 0, nlines = 0;
	FILE *f = open_memstream(&buf, &len);

	gpu_train_usage(f);
	fclose(f);
	for (const struct gpu_train_key *k = gpu_train_keys; k->name; k++) {
		char want[64];

		snprintf(want, sizeof(want), "  %s=", k->name);
		CHECK(strstr(buf, want) != NULL);
		nkeys++;
	}
	for (char *p = buf; *p; p++)
		nlines += *p == '\n';
	CHECK_EQ(nlines, nkeys);
	free(buf);
}

static int rows_equal(const struct gpu_train_row *a, const struct gpu_train_row *b)
{
	return a->step == b->step && memcmp(&a->train_loss, &b->train_loss, 4) == 0 &&
	       (isnan(a->val_loss) ? isnan(b->val_loss)
				   : memcmp(&a->val_loss, &b->val_loss, 4) == 0) &&
	       memcmp(&a->lr, &b->lr, 4) == 0 && memcmp(&a->grad_norm, &b->grad_norm, 4) == 0 &&
	       a->tokens_seen == b->tokens_seen;
}

static void test_rows(void)
{
	struct gpu_train_row rows[] = {
		{ 1, 5.56376934f, NAN, 1.00000005e-3f, 2.41785669f, 2088.04, 61.3049, 128 },
		{ 100, 1.0f / 3.0f, 0.1f + 0.2f, 3e-4f, 1e-30f, 0.05, 0.001, 12800 },
		{ 123456789, 1e-38f, 7.0f, 0.0f, 65504.0f, 1e9, 1e5, UINT64_MAX },
	};
	char line[256], line2[256];
	struct gpu_train_row back;

	CHECK(strncmp(gpu_train_tsv_header, "step\ttrain_loss\tval_loss\tlr\ttokens_per_s\t"
		      "ms_per_step\t", 41) == 0);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int n = gpu_train_row_format(&rows[i], line, sizeof(line));

		CHECK(n > 0 && line[n - 1] == '\n' && (size_t)n == strlen(line));
		CHECK_EQ(gpu_train_row_parse(line, &back), 0);
		CHECK(rows_equal(&rows[i], &back));
		CHECK(fabs(back.tokens_per_s - rows[i].tokens_per_s) <= 0.05 + 1e-9);
		CHECK(fabs(back.ms_per_step - rows[i].ms_per_step) <= 0.005 + 1e-9);
		CHECK(gpu_train_row_format(&back, line2, sizeof(line2)) == n);
		CHECK(strcmp(line, line2) == 0);
	}
	CHECK(strncmp(line, "123456789\t", 10) == 0);
	gpu_train_row_format(&rows[0], line, sizeof(line));
	CHECK(strstr(line, "\t-\t") != NULL);
	CHECK_EQ(gpu_train_row_format(&rows[0], line, 10), -ENOSPC);

	static const char *const malformed[] = {
		"",
		"1\t2\t-\t3\t4\t5\t6",                  /* a column short */
		"1\t2\t-\t3\t4\t5\t6\t7\t8",            /* one too many */
		"1\t2\t\t3\t4\t5\t6\t7",                /* an empty column */
		"x\t2\t-\t3\t4\t5\t6\t7",
		"1\t2\t-\t3\t4\t5\t6\t-7",
		"1\t2x\t-\t3\t4\t5\t6\t7",
		"1\tnan\t-\t3\t4\t5\t6\t7",
		"1\t2\t-\t3\t4\t5\t6\t7\nmore",
		"1 2 - 3 4 5 6 7",
	};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		if (gpu_train_row_parse(malformed[i], &back) != -EINVAL) {
			fprintf(stderr, "  row \"%s\" parsed\n", malformed[i]);
			check_failures++;
		}
	CHECK_EQ(gpu_train_row_parse("1\t2\t-\t3\t4\t5\t6\t7\n", &back), 0);
}

static double jnum(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

static void test_state_json(void)
{
	struct gpu_train_opts o;
	struct gpu_train_info info = { 1000, 10000, 9000, 1, "cpu" };
	/* the lowest eval_loss (step 3) is not a checkpoint; the best checkpoint is step 4 */
	struct gpu_train_row rows[6];
	struct gpu_train_row *back = NULL;
	char err[256], *s;
	size_t nback = 0;
	json_t *root, *hist;

	CHECK_EQ(job(&o, "data=x steps=10 batch=2 seq=8 layers=1 heads=1 embd=8 ckpt-every=2",
		     err, sizeof(err)), 0);
	for (int i = 0; i < 6; i++)
		rows[i] = (struct gpu_train_row){ i + 1, 5.0f - 0.3f * i, NAN, 1e-3f * (i + 1),
						  1.5f / (i + 1), 1000.0 + i, 16.0, (i + 1) * 16 };
	rows[2].val_loss = 2.0f;
	rows[3].val_loss = 2.5f;
	rows[5].val_loss = 3.0f;
	s = gpu_train_state_json(&o, &info, rows, 6, "checkpoint-");
	CHECK(s != NULL);
	root = json_loads(s ? s : "", 0, NULL);
	CHECK(root != NULL);
	CHECK_EQ(jnum(root, "global_step"), 6);
	CHECK_EQ(jnum(root, "max_steps"), 10);
	CHECK_EQ(jnum(root, "num_input_tokens_seen"), 96);
	CHECK_EQ(jnum(root, "train_batch_size"), 2);
	CHECK_EQ(jnum(root, "eval_steps"), 100);
	CHECK_EQ(jnum(root, "save_steps"), 2);
	CHECK(jnum(root, "total_flos") == gpu_flops_per_token(&o.cfg, 8) * 96);
	CHECK(jnum(root, "epoch") == 96.0 / 9000);
	CHECK(jnum(root, "best_metric") == 2.5f);
	CHECK(json_is_string(json_object_get(root, "best_model_checkpoint")) &&
	      strcmp(json_string_value(json_object_get(root, "best_model_checkpoint")),
		     "checkpoint-4") == 0);
	hist = json_object_get(root, "log_history");
	CHECK_EQ(json_array_size(hist), 6 + 3);
	CHECK(jnum(json_array_get(hist, 0), "loss") == 5.0f);
	CHECK(jnum(json_array_get(hist, 0), "learning_rate") == 1e-3f);
	CHECK(jnum(json_array_get(hist, 0), "grad_norm") == 1.5f);
	CHECK_EQ(jnum(json_array_get(hist, 0), "step"), 1);
	CHECK(json_is_number(json_object_get(json_array_get(hist, 0), "epoch")));
	CHECK(jnum(json_array_get(hist, 3), "eval_loss") == 2.0f);  /* after step 3's entry */
	CHECK(jnum(json_array_get(hist, 5), "eval_loss") == 2.5f);
	CHECK_EQ(jnum(json_array_get(hist, 5), "step"), 4);
	json_decref(root);

	CHECK_EQ(gpu_train_state_rows(s, strlen(s), &back, &nback), 0);
	CHECK_EQ(nback, 6);
	for (size_t i = 0; i < nback && i < 6; i++) {
		CHECK(rows_equal(&rows[i], &back[i]));
		CHECK(back[i].tokens_per_s == rows[i].tokens_per_s);
	}
	free(back);
	free(s);

	/* without a prefix: the lowest eval_loss of all; without info: no epoch */
	s = gpu_train_state_json(&o, NULL, rows, 6, NULL);
	root = json_loads(s ? s : "", 0, NULL);
	CHECK(jnum(root, "best_metric") == 2.0f);
	CHECK(json_is_null(json_object_get(root, "best_model_checkpoint")));
	CHECK(json_object_get(root, "epoch") == NULL);
	json_decref(root);
	free(s);
	/* no rows yet */
	s = gpu_train_state_json(&o, &info, rows, 0, "checkpoint-");
	root = json_loads(s ? s : "", 0, NULL);
	CHECK_EQ(jnum(root, "global_step"), 0);
	CHECK(json_is_null(json_object_get(root, "best_metric")));
	json_decref(root);
	free(s);

	static const char *const malformed[] = {
		"", "[]", "{\"log_history\": 3}", "{\"log_history\": [{\"loss\": 1}]}",
		"{\"log_history\": [{\"step\": 2, \"eval_loss\": 1}]}",
		"{\"log_history\": [{\"step\": 1, \"loss\": 1}, {\"step\": 2, \"eval_loss\": 1}]}",
	};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		CHECK_EQ(gpu_train_state_rows(malformed[i], strlen(malformed[i]), &back, &nback),
			 -EINVAL);
	gpu_train_opts_release(&o);
}

static void test_crc32c(void)
{
	unsigned char buf[32];

	CHECK_EQ(gpu_crc32c("123456789", 9), 0xE3069283u);
	CHECK_EQ(gpu_crc32c("", 0), 0);
	/* RFC 3720, B.4 */
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(gpu_crc32c(buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	CHECK_EQ(gpu_crc32c(buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	CHECK_EQ(gpu_crc32c(buf, 32), 0x46DD794Eu);
}

static void test_tfevents_framing(void)
{
	struct gpu_train_row r = { 7, 2.5f, NAN, 1e-3f, 1.0f, 100.0, 1.0, 7 };
	char *buf = NULL;
	size_t len = 0, off = 0;
	int records = 0;

	CHECK_EQ(gpu_tfevents_header(1.5e9, &buf, &len), 0);
	CHECK_EQ(gpu_tfevents_row(&r, 1.5e9 + 1, &buf, &len), 0);
	r.val_loss = 2.75f;
	CHECK_EQ(gpu_tfevents_row(&r, 1.5e9 + 2, &buf, &len), 0);
	/* walk the records: each length and CRC as TensorBoard's reader checks them */
	while (off + 12 <= len) {
		uint64_t n = 0;
		uint32_t c, want;

		for (int i = 0; i < 8; i++)
			n |= (uint64_t)(unsigned char)buf[off + i] << (8 * i);
		c = gpu_crc32c(buf + off, 8);
		want = ((c >> 15) | (c << 17)) + 0xa282ead8u;
		CHECK(memcmp(buf + off + 8, &want, 4) == 0);
		CHECK(off + 12 + n + 4 <= len);
		c = gpu_crc32c(buf + off + 12, n);
		want = ((c >> 15) | (c << 17)) + 0xa282ead8u;
		CHECK(memcmp(buf + off + 12 + n, &want, 4) == 0);
		off += 12 + n + 4;
		records++;
	}
	CHECK_EQ(off, len);
	CHECK_EQ(records, 3);
	CHECK(memmem(buf, len, "brain.Event:2", 13) != NULL);
	CHECK(memmem(buf, len, "eval/loss", 9) != NULL);
	free(buf);
}

static void test_svg(void)
{
	struct gpu_train_row rows[50];
	char *s;

	for (int i = 0; i < 50; i++)
		rows[i] = (struct gpu_train_row){ i + 1, 5.0f / (i + 1), i % 10 == 9 ? 2.0f : NAN,
						  1e-3f, 1, 1, 1, 1 };
	s = gpu_train_svg(rows, 50, "a <job> & \"more\"");
	CHECK(s && strstr(s, "<svg") && strstr(s, "</svg>"));
	CHECK(s && strstr(s, "a &lt;job&gt; &amp; &quot;more&quot;"));
	CHECK(s && strstr(s, "<polyline") && strstr(strstr(s, "<polyline") + 1, "<polyline"));
	free(s);
	s = gpu_train_svg(rows, 0, NULL);
	CHECK(s && strstr(s, "</svg>"));
	free(s);
}

/* ------------------------------------------------------------- the loop on a tiny model */

struct rec {
	struct gpu_train_row rows[64];
	int n, stop_at, samples, ckpts, last_ckpt_last;
	long ckpt_steps[64];
	const char *ckpt_dir;  /* save checkpoints as ckpt_dir/STEP when set */
};

static int rec_row(void *arg, const struct gpu_train_row *r)
{
	struct rec *c = arg;

	if (c->n < 64)
		c->rows[c->n++] = *r;
	return 0;
}

static int rec_sample(void *arg, long step, const char *text, size_t len)
{
	struct rec *c = arg;

	(void)step;
	(void)text;
	c->samples += len > 0;
	return 0;
}

static int rec_ckpt(void *arg, struct gpu_model *m, long step, const struct gpu_ckpt_meta *meta,
		    int last)
{
	struct rec *c = arg;
	char dir[128];

	c->ckpt_steps[c->ckpts++] = step;
	c->last_ckpt_last = last;
	if (!c->ckpt_dir)
		return 0;
	snprintf(dir, sizeof(dir), "%s/%ld", c->ckpt_dir, step);
	return gpu_ckpt_save(m, dir, meta);
}

static int rec_stop(void *arg)
{
	struct rec *c = arg;

	/* asked after each step, before its row */
	return c->stop_at && c->n + 1 == c->stop_at;
}

static int tiny_run(const char *extra, const char *tokens, const char *resume, struct rec *c,
		    const char **what, char *detail)
{
	static const char base[] = "data=x steps=8 batch=2 seq=16 layers=1 heads=2 embd=16 "
				   "val-every=3 val-batches=2 sample-len=8 warmup=2 seed=3 ";
	struct gpu_train_hooks h = { c, NULL, rec_row, rec_sample, rec_ckpt, rec_stop };
	struct gpu_train_opts o;
	char text[512], err[256];
	int r;

	snprintf(text, sizeof(text), "%s%s", base, extra);
	r = job(&o, text, err, sizeof(err));
	if (r == 0)
		r = gpu_train_run(&o, tokens, resume, &h, what, detail, 256);
	gpu_train_opts_release(&o);
	return r;
}

static void test_loop(void)
{
	char text_path[128], tok_path[128], dir[128], path[256], detail[256];
	struct rec *full = calloc(1, sizeof(*full)), *part = calloc(1, sizeof(*part));
	struct rec *rest = calloc(1, sizeof(*rest)), *other = calloc(1, sizeof(*other));
	const char *what = NULL;
	unsigned char text[6000];
	FILE *f;
	int r;

	/* a text with some structure to learn */
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = "the quick brown fox jumps over the lazy dog\n"[i % 44];
	snprintf(text_path, sizeof(text_path), "%s/text", tmp);
	f = fopen(text_path, "w");
	fwrite(text, 1, sizeof(text), f);
	fclose(f);
	snprintf(tok_path, sizeof(tok_path), "%s/tokens.bin", tmp);
	char *tp = NULL;

	CHECK_EQ(gpu_train_data(text_path, tmp, &tp), 0);
	CHECK(tp && strcmp(tp, tok_path) == 0);
	free(tp);
	tp = NULL;
	CHECK_EQ(gpu_train_data(tok_path, "/nonexistent", &tp), 0); /* a token file as is */
	CHECK(tp && strcmp(tp, tok_path) == 0);
	free(tp);

	/* uninterrupted */
	snprintf(dir, sizeof(dir), "%s/full", tmp);
	mkdir(dir, 0755);
	full->ckpt_dir = dir;
	CHECK_EQ(tiny_run("", tok_path, NULL, full, &what, detail), 0);
	CHECK_EQ(full->n, 8);
	CHECK(isnan(full->rows[0].val_loss) && !isnan(full->rows[2].val_loss) &&
	      !isnan(full->rows[7].val_loss) && isnan(full->rows[6].val_loss));
	CHECK_EQ(full->rows[7].tokens_seen, 8 * 2 * 16);
	CHECK(full->rows[7].train_loss < full->rows[0].train_loss);
	CHECK_EQ(full->samples, 1);
	CHECK_EQ(full->ckpts, 1);
	CHECK_EQ(full->ckpt_steps[0], 8);
	CHECK_EQ(full->last_ckpt_last, 1);

	/* stopped after step 4: a checkpoint (not the last), no validation there, no sample */
	snprintf(dir, sizeof(dir), "%s/part", tmp);
	mkdir(dir, 0755);
	part->ckpt_dir = dir;
	part->stop_at = 4;
	CHECK_EQ(tiny_run("", tok_path, NULL, part, &what, detail), 0);
	CHECK_EQ(part->n, 4);
	CHECK(isnan(part->rows[3].val_loss));
	CHECK_EQ(part->ckpts, 1);
	CHECK_EQ(part->ckpt_steps[0], 4);
	CHECK_EQ(part->last_ckpt_last, 0);
	CHECK_EQ(part->samples, 0);
	for (int i = 0; i < 4; i++)
		CHECK(rows_equal(&part->rows[i], &full->rows[i]));

	/* resumed: steps 5..8 as the uninterrupted run computed them */
	snprintf(path, sizeof(path), "%s/part/4", tmp);
	CHECK_EQ(tiny_run("", tok_path, path, rest, &what, detail), 0);
	CHECK_EQ(rest->n, 4);
	for (int i = 0; i < 4; i++)
		CHECK(rows_equal(&rest->rows[i], &full->rows[4 + i]));

	/* from= a checkpoint with optimizer state, and from= a folder of weights alone: the same
	 * run (the optimizer starts fresh), and not the random init's */
	snprintf(dir, sizeof(dir), "%s/weights", tmp);
	mkdir(dir, 0755);
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "model.safetensors" : "config.json";
		char src[256], dst[256];

		snprintf(src, sizeof(src), "%s/part/4/%s", tmp, name);
		snprintf(dst, sizeof(dst), "%s/%s", dir, name);
		CHECK_EQ(link(src, dst), 0);
	}
	struct rec *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	char extra[256];

	snprintf(extra, sizeof(extra), "from=%s/part/4", tmp);
	CHECK_EQ(tiny_run(extra, tok_path, NULL, a, &what, detail), 0);
	snprintf(extra, sizeof(extra), "from=%s", dir);
	CHECK_EQ(tiny_run(extra, tok_path, NULL, b, &what, detail), 0);
	CHECK_EQ(a->n, 8);
	CHECK_EQ(b->n, 8);
	for (int i = 0; i < 8; i++)
		CHECK(rows_equal(&a->rows[i], &b->rows[i]));
	CHECK(a->rows[0].train_loss != full->rows[0].train_loss);
	CHECK(a->rows[0].train_loss < full->rows[0].train_loss);

	/* from= a model of other shapes */
	snprintf(extra, sizeof(extra), "from=%s embd=32", dir);
	r = tiny_run(extra, tok_path, NULL, other, &what, detail);
	CHECK_EQ(r, -EINVAL);
	CHECK(what && strcmp(what, "from: shapes do not match") == 0);
	CHECK(strstr(detail, "embd=16") && strstr(detail, "embd=32"));
	CHECK_EQ(other->n, 0);
	/* from= nothing */
	r = tiny_run("from=/nonexistent/model", tok_path, NULL, other, &what, detail);
	CHECK_EQ(r, -ENOENT);
	CHECK(what && strncmp(what, "from:", 5) == 0);
	/* resume from nothing */
	r = tiny_run("", tok_path, "/nonexistent/ckpt", other, &what, detail);
	CHECK(r < 0);
	CHECK_EQ(other->n, 0);

	/* data with a larger vocabulary than the model's */
	r = tiny_run("vocab=100", tok_path, NULL, other, &what, detail);
	CHECK_EQ(r, -EINVAL);
	CHECK(what && strstr(what, "vocabulary"));
	/* backend=cuda: -ENODEV and a reason without a device or a CUDA build; runs with one */
	r = tiny_run("backend=cuda steps=2", tok_path, NULL, other, &what, detail);
	CHECK(r == 0 || (r == -ENODEV && what && strstr(what, "no CUDA device")));
	other->n = 0;
	/* empty data */
	snprintf(path, sizeof(path), "%s/empty", tmp);
	fclose(fopen(path, "w"));
	snprintf(dir, sizeof(dir), "%s/emptydir", tmp);
	mkdir(dir, 0755);
	CHECK_EQ(gpu_train_data(path, dir, &tp), 0);
	r = tiny_run("", tp, NULL, other, &what, detail);
	CHECK_EQ(r, -EINVAL);
	CHECK(what && strcmp(what, "the data is empty") == 0);
	/* too short for one sequence in a split */
	snprintf(path, sizeof(path), "%s/short", tmp);
	f = fopen(path, "w");
	fputs("twenty bytes of text", f);
	fclose(f);
	free(tp);
	CHECK_EQ(gpu_train_data(path, dir, &tp), 0);
	r = tiny_run("", tp, NULL, other, &what, detail);
	CHECK_EQ(r, -EINVAL);
	CHECK(what && strstr(what, "too short"));
	CHECK(strstr(detail, "20 tokens"));
	free(tp);
	/* data that does not exist */
	CHECK_EQ(gpu_train_data("/nonexistent/text", dir, &tp), -ENOENT);

	free(a);
	free(b);
	free(full);
	free(part);
	free(rest);
	free(other);
}

int main(void)
{
	char cmd[128];

	snprintf(tmp, sizeof(tmp), "%s/llmfs-train-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmp))
		return 1;
	RUN(test_defaults);
	RUN(test_job_file);
	RUN(test_bad_input);
	RUN(test_format_round_trip);
	RUN(test_usage);
	RUN(test_rows);
	RUN(test_state_json);
	RUN(test_crc32c);
	RUN(test_tfevents_framing);
	RUN(test_svg);
	RUN(test_loop);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		check_failures++;
	return check_status();
}
