/* gpu/train.c - one training run: its options, its loop and what it reports (see train.h). */
#include "gpu/train.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "gpu/data.h"

#define OFF(field) offsetof(struct gpu_train_opts, field)

/* One table: llmfs-train's long options, the job file's keys, the defaults and the limits. */
const struct gpu_train_key gpu_train_keys[] = {
	{ "data", GPU_TK_STR, OFF(data), 0, 0, "FILE", NULL, "required",
	  "training text (each byte a token) or token file" },
	{ "from", GPU_TK_STR, OFF(from), 0, 0, "DIR", NULL, "random init",
	  "weights of this checkpoint or model folder (fresh optimizer)" },
	{ "steps", GPU_TK_LONG, OFF(steps), 1, 1e9, "N", "1000", NULL, "optimizer steps" },
	{ "batch", GPU_TK_INT, OFF(opts.max_batch), 1, 65536, "B", "8", NULL,
	  "sequences per step" },
	{ "seq", GPU_TK_INT, OFF(opts.max_seq), 1, 1 << 20, "T", "128", NULL,
	  "tokens per sequence" },
	{ "layers", GPU_TK_INT, OFF(cfg.n_layer), 1, 1024, "L", "4", NULL, "transformer blocks" },
	{ "heads", GPU_TK_INT, OFF(cfg.n_head), 1, 1024, "H", "4", NULL, "attention heads" },
	{ "embd", GPU_TK_INT, OFF(cfg.n_embd), 1, 65536, "C", "128", NULL,
	  "embedding width (divisible by heads)" },
	{ "ctx", GPU_TK_INT, OFF(cfg.n_ctx), 0, 1 << 20, "N", NULL, "seq",
	  "positions of the model (0: seq)" },
	{ "vocab", GPU_TK_INT, OFF(cfg.vocab_size), 2, 65536, "V", "256", NULL,
	  "vocabulary size (at least the data's)" },
	{ "lr", GPU_TK_FLOAT, OFF(lr), 0, 10, "X", "1e-3", NULL, "peak learning rate" },
	{ "min-lr", GPU_TK_FLOAT, OFF(min_lr), 0, 10, "X", NULL, "lr/10",
	  "learning rate at the last step (cosine decay)" },
	{ "warmup", GPU_TK_LONG, OFF(warmup), 0, 1e9, "N", NULL, "steps/20",
	  "steps of linear warm-up" },
	{ "wd", GPU_TK_FLOAT, OFF(adamw.weight_decay), 0, 10, "X", "0.1", NULL,
	  "AdamW weight decay (matrices and embeddings)" },
	{ "clip", GPU_TK_FLOAT, OFF(adamw.grad_clip), 0, 1e6, "X", "1.0", NULL,
	  "gradient clip by global norm (0: none)" },
	{ "beta1", GPU_TK_FLOAT, OFF(adamw.beta1), 0, 0.99999, "X", "0.9", NULL, "AdamW beta1" },
	{ "beta2", GPU_TK_FLOAT, OFF(adamw.beta2), 0, 0.99999, "X", "0.95", NULL, "AdamW beta2" },
	{ "seed", GPU_TK_U64, OFF(seed), 0, 0, "N", "1", NULL,
	  "picks the batches and the samples" },
	{ "val-fraction", GPU_TK_DOUBLE, OFF(val_fraction), 1e-6, 0.99, "X", "0.1", NULL,
	  "last fraction of the data kept for validation" },
	{ "val-every", GPU_TK_LONG, OFF(val_every), 1, 1e9, "N", "100", NULL,
	  "validate every N steps and at the end" },
	{ "val-batches", GPU_TK_LONG, OFF(val_batches), 1, 1e6, "N", "8", NULL,
	  "batches per validation" },
	{ "ckpt-every", GPU_TK_LONG, OFF(ckpt_every), 0, 1e9, "N", "0", NULL,
	  "checkpoint every N steps (0: at the end only)" },
	{ "sample-every", GPU_TK_LONG, OFF(sample_every), 0, 1e9, "N", "0", NULL,
	  "generate a sample every N steps (0: at the end only)" },
	{ "sample-len", GPU_TK_INT, OFF(sample_len), 0, 1 << 20, "N", "200", NULL,
	  "tokens per sample" },
	{ "temperature", GPU_TK_FLOAT, OFF(temperature), 0, 100, "X", "0.8", NULL,
	  "sampling temperature (0: most likely token)" },
	{ "top-k", GPU_TK_INT, OFF(top_k), 0, 65536, "K", "40", NULL,
	  "sample among the K likeliest tokens (0: all)" },
	{ "backend", GPU_TK_BACKEND, OFF(opts.backend), 0, 0, "cpu|cuda", "cpu", NULL,
	  "where to train" },
	{ "bf16", GPU_TK_BOOL, OFF(opts.bf16), 0, 0, "0|1", "0", NULL,
	  "cuda only: bf16 activations and matmuls, fp32 master weights" },
	{ "max-mem", GPU_TK_MIB, OFF(opts.max_bytes), 0, 1 << 30, "MIB", "0", NULL,
	  "bound on the backend's memory (0: none)" },
	{ "max-seconds", GPU_TK_DOUBLE, OFF(max_seconds), 0, 1e9, "S", "0", NULL,
	  "end after the step that passes S seconds, as at the last step (0: none)" },
	{ NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL },
};

static const struct gpu_train_key *key_find(const char *name)
{
	for (const struct gpu_train_key *k = gpu_train_keys; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Whole numbers: base 10, all of the text, no blanks, no overflow. */
static int parse_whole(const char *s, int is_unsigned, long *ret_l, uint64_t *ret_u)
{
	char *end;

	if (!(isdigit((unsigned char)s[0]) || (!is_unsigned && (s[0] == '-' || s[0] == '+') &&
					       isdigit((unsigned char)s[1]))))
		return -1;
	errno = 0;
	if (is_unsigned)
		*ret_u = strtoull(s, &end, 10);
	else
		*ret_l = strtol(s, &end, 10);
	return errno || *end ? -1 : 0;
}

/* Reals: all of the text, finite, no overflow; strtof for floats, as llmfs-train always did,
 * so a value rounds the same.  An underflow (ERANGE with a result below one: a subnormal or
 * zero) is the nearest value, as %.9g wrote it. */
static int parse_real(const char *s, int is_float, double *ret)
{
	char *end;

	if (!s[0] || isspace((unsigned char)s[0]))
		return -1;
	errno = 0;
	*ret = is_float ? (double)strtof(s, &end) : strtod(s, &end);
	if (errno == ERANGE && isfinite(*ret) && fabs(*ret) < 1)
		errno = 0;
	return errno || *end || !isfinite(*ret) ? -1 : 0;
}

static int set_number(struct gpu_train_opts *o, const struct gpu_train_key *k, const char *v,
		      char *err, size_t errlen)
{
	char *p = (char *)o + k->offset;
	int whole = k->type == GPU_TK_INT || k->type == GPU_TK_LONG || k->type == GPU_TK_MIB;
	double d = 0;
	long l = 0;
	uint64_t u;

	if (k->type == GPU_TK_U64) {
		if (parse_whole(v, 1, NULL, &u) < 0)
			return fail(err, errlen, "%s: \"%s\" is not a whole number", k->name, v);
		memcpy(p, &u, sizeof(u));
		return 0;
	}
	if (whole ? parse_whole(v, 0, &l, NULL) : parse_real(v, k->type == GPU_TK_FLOAT, &d))
		return fail(err, errlen, "%s: \"%s\" is not a%s number", k->name, v,
			    whole ? " whole" : "");
	if (whole)
		d = (double)l;
	if (d < k->min || d > k->max)
		return fail(err, errlen, "%s: \"%s\" is out of range (%g to %g)", k->name, v,
			    k->min, k->max);
	switch (k->type) {
	case GPU_TK_INT: *(int *)p = (int)l; break;
	case GPU_TK_LONG: *(long *)p = l; break;
	case GPU_TK_MIB: *(size_t *)p = (size_t)l << 20; break;
	case GPU_TK_FLOAT: *(float *)p = (float)d; break;
	default: *(double *)p = d; break;
	}
	return 0;
}

int gpu_train_opts_set(struct gpu_train_opts *o, const char *key, const char *value,
		       char *err, size_t errlen)
{
	const struct gpu_train_key *k = key_find(key);
	char *p, *dup;
	int r = 0;

	if (!k)
		return fail(err, errlen, "unknown key \"%s\"", key);
	if (!value || !value[0])
		return fail(err, errlen, "%s: missing value", key);
	p = (char *)o + k->offset;
	switch (k->type) {
	case GPU_TK_STR:
		if (!(dup = strdup(value)))
			return -ENOMEM;
		free(*(char **)p);
		*(char **)p = dup;
		break;
	case GPU_TK_BOOL:
		if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes"))
			*(int *)p = 1;
		else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no"))
			*(int *)p = 0;
		else
			return fail(err, errlen, "%s: \"%s\" is not 0 or 1", key, value);
		break;
	case GPU_TK_BACKEND:
		if (!strcmp(value, "cpu"))
			*(enum gpu_backend *)p = GPU_BACKEND_CPU;
		else if (!strcmp(value, "cuda"))
			*(enum gpu_backend *)p = GPU_BACKEND_CUDA;
		else
			return fail(err, errlen, "%s: \"%s\" is not cpu or cuda", key, value);
		break;
	default:
		r = set_number(o, k, value, err, errlen);
	}
	if (r == 0 && k->offset == OFF(min_lr))
		o->set_min_lr = 1;
	if (r == 0 && k->offset == OFF(warmup))
		o->set_warmup = 1;
	return r;
}

void gpu_train_opts_init(struct gpu_train_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->adamw.eps = 1e-8f;
	/* the table's defaults are valid values: this cannot fail */
	for (const struct gpu_train_key *k = gpu_train_keys; k->name; k++)
		if (k->value)
			gpu_train_opts_set(o, k->name, k->value, NULL, 0);
}

void gpu_train_opts_release(struct gpu_train_opts *o)
{
	free(o->data);
	free(o->from);
	o->data = o->from = NULL;
}

/* One word of a job file at *p: "key=value" or key="quoted value"; advances *p. */
static int parse_word(struct gpu_train_opts *o, const char **p, const char *end, char *err,
		      size_t errlen)
{
	const char *s = *p, *eq, *v, *ve;
	char *key = NULL, *val = NULL;
	int r;

	for (eq = s; eq < end && *eq != '=' && !isspace((unsigned char)*eq) && *eq != '#'; eq++)
		;
	if (eq == end || *eq != '=' || eq == s) {
		while (eq < end && !isspace((unsigned char)*eq) && *eq != '#')
			eq++;
		return fail(err, errlen, "\"%.*s\" is not key=value", (int)(eq - s), s);
	}
	v = eq + 1;
	if (v < end && *v == '"') {
		for (ve = ++v; ve < end && *ve != '"' && *ve != '\n'; ve++)
			;
		if (ve == end || *ve != '"')
			return fail(err, errlen, "%.*s: unterminated quote", (int)(eq - s), s);
		*p = ve + 1;
	} else {
		for (ve = v; ve < end && !isspace((unsigned char)*ve) && *ve != '#'; ve++)
			;
		*p = ve;
	}
	key = strndup(s, (size_t)(eq - s));
	val = strndup(v, (size_t)(ve - v));
	r = key && val ? gpu_train_opts_set(o, key, val, err, errlen) : -ENOMEM;
	free(key);
	free(val);
	return r;
}

int gpu_train_opts_parse(struct gpu_train_opts *o, const char *text, size_t len, char *err,
			 size_t errlen)
{
	const char *p = text, *end = text + len;
	char why[256];
	int line = 1, r;

	while (p < end) {
		if (*p == '\n') {
			line++;
			p++;
		} else if (isspace((unsigned char)*p)) {
			p++;
		} else if (*p == '#') {
			while (p < end && *p != '\n')
				p++;
		} else if (*p == '\0') {
			return fail(err, errlen, "line %d: a NUL byte", line);
		} else if ((r = parse_word(o, &p, end, why, sizeof(why))) < 0) {
			if (r == -EINVAL)
				fail(err, errlen, "line %d: %s", line, why);
			return r;
		}
	}
	return 0;
}

int gpu_train_opts_finish(struct gpu_train_opts *o, char *err, size_t errlen)
{
	if (!o->data)
		return fail(err, errlen, "data: missing (the text or token file to train on)");
	if (o->cfg.n_ctx == 0)
		o->cfg.n_ctx = o->opts.max_seq;
	if (o->opts.max_seq > o->cfg.n_ctx)
		return fail(err, errlen, "seq: %d is longer than ctx=%d", o->opts.max_seq,
			    o->cfg.n_ctx);
	if (o->cfg.n_embd % o->cfg.n_head)
		return fail(err, errlen, "embd: %d is not divisible by heads=%d", o->cfg.n_embd,
			    o->cfg.n_head);
	if (o->opts.bf16 && o->opts.backend != GPU_BACKEND_CUDA)
		return fail(err, errlen, "bf16: needs backend=cuda");
	if (gpu_config_check(&o->cfg) < 0)
		return fail(err, errlen, "layers=%d heads=%d embd=%d ctx=%d vocab=%d: not a model "
			    "the engine builds", o->cfg.n_layer, o->cfg.n_head, o->cfg.n_embd,
			    o->cfg.n_ctx, o->cfg.vocab_size);
	if (!o->set_min_lr)
		o->min_lr = o->lr / 10.0f;
	if (!o->set_warmup)
		o->warmup = o->steps / 20;
	return 0;
}

void gpu_train_usage(FILE *f)
{
	for (const struct gpu_train_key *k = gpu_train_keys; k->name; k++) {
		char left[64];

		snprintf(left, sizeof(left), "%s=%s", k->name, k->arg);
		fprintf(f, "  %-22s %s [%s]\n", left, k->help, k->value ? k->value : k->def);
	}
}

/* One key's value as text (the inverse of gpu_train_opts_set()); 0 when it has none. */
static int format_value(const struct gpu_train_opts *o, const struct gpu_train_key *k, char *buf,
			size_t len)
{
	const char *p = (const char *)o + k->offset;

	switch (k->type) {
	case GPU_TK_STR: {
		const char *s = *(char *const *)p;

		if (!s)
			return 0;
		if (strchr(s, '"') || strchr(s, '\n'))
			return -EINVAL;
		if (strpbrk(s, " \t\r\v\f#") || !s[0])
			return snprintf(buf, len, "\"%s\"", s);
		return snprintf(buf, len, "%s", s);
	}
	case GPU_TK_INT: return snprintf(buf, len, "%d", *(const int *)p);
	case GPU_TK_LONG: return snprintf(buf, len, "%ld", *(const long *)p);
	case GPU_TK_U64: return snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p);
	case GPU_TK_FLOAT: return snprintf(buf, len, "%.9g", *(const float *)p);
	case GPU_TK_DOUBLE: return snprintf(buf, len, "%.17g", *(const double *)p);
	case GPU_TK_BOOL: return snprintf(buf, len, "%d", *(const int *)p ? 1 : 0);
	case GPU_TK_MIB: return snprintf(buf, len, "%zu", *(const size_t *)p >> 20);
	case GPU_TK_BACKEND:
		return snprintf(buf, len, "%s",
				*(const enum gpu_backend *)p == GPU_BACKEND_CUDA ? "cuda" : "cpu");
	}
	return 0;
}

int gpu_train_opts_format(const struct gpu_train_opts *o, char **ret)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int r = 0, first = 1;

	if (!f)
		return -ENOMEM;
	for (const struct gpu_train_key *k = gpu_train_keys; k->name && r >= 0; k++) {
		char v[4096];

		r = format_value(o, k, v, sizeof(v));
		if (r >= (int)sizeof(v)) {
			r = -ENAMETOOLONG;
		} else if (r > 0) {
			fprintf(f, "%s%s=%s", first ? "" : " ", k->name, v);
			first = 0;
		}
	}
	if (fclose(f) != 0 && r >= 0)
		r = -ENOMEM;
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret = buf;
	return 0;
}

/* -------------------------------------------------------------------- rows */

const char gpu_train_tsv_header[] =
	"step\ttrain_loss\tval_loss\tlr\ttokens_per_s\tms_per_step\tgrad_norm\ttokens\n";

int gpu_train_row_format(const struct gpu_train_row *r, char *buf, size_t len)
{
	char val[32] = "-";
	int n;

	if (!isnan(r->val_loss))
		snprintf(val, sizeof(val), "%.9g", r->val_loss);
	n = snprintf(buf, len, "%ld\t%.9g\t%s\t%.9g\t%.1f\t%.2f\t%.9g\t%" PRIu64 "\n", r->step,
		     r->train_loss, val, r->lr, r->tokens_per_s, r->ms_per_step, r->grad_norm,
		     r->tokens_seen);
	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

int gpu_train_row_parse(const char *line, struct gpu_train_row *ret)
{
	char buf[512], *f[8], *save = NULL, *tok;
	size_t n = strcspn(line, "\n");
	double d[7];
	long step;
	uint64_t tokens;
	int nf = 0;

	if (n >= sizeof(buf) || (line[n] == '\n' && line[n + 1] != '\0'))
		return -EINVAL;
	memcpy(buf, line, n);
	buf[n] = '\0';
	/* strtok_r would merge empty fields: split on each tab */
	for (tok = buf; nf < 8; nf++) {
		f[nf] = tok;
		save = strchr(tok, '\t');
		if (!save)
			break;
		*save = '\0';
		tok = save + 1;
	}
	if (nf != 7 || save)
		return -EINVAL;
	if (parse_whole(f[0], 0, &step, NULL) < 0 || parse_whole(f[7], 1, NULL, &tokens) < 0)
		return -EINVAL;
	for (int i = 1; i <= 6; i++) {
		if (i == 2 && strcmp(f[2], "-") == 0) {
			d[2] = NAN;
			continue;
		}
		/* strtof for the %.9g floats: they come back bit for bit */
		if (parse_real(f[i], i != 4 && i != 5, &d[i]) < 0)
			return -EINVAL;
	}
	ret->step = step;
	ret->train_loss = (float)d[1];
	ret->val_loss = (float)d[2];
	ret->lr = (float)d[3];
	ret->tokens_per_s = d[4];
	ret->ms_per_step = d[5];
	ret->grad_norm = (float)d[6];
	ret->tokens_seen = tokens;
	return 0;
}

/* -------------------------------------------------------------------- the loop */


static void put_detail(char *detail, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!len)
		return;
	va_start(ap, fmt);
	vsnprintf(detail, len, fmt, ap);
	va_end(ap);
}

int gpu_train_data(const char *data, const char *dir, char **ret)
{
	size_t n = strlen(dir) + sizeof("/tokens.bin");
	char *p;
	int r = gpu_data_is_token_file(data);

	if (r < 0)
		return r;
	if (r == 1) {
		p = strdup(data);
		r = p ? 0 : -ENOMEM;
	} else if ((p = malloc(n))) {
		snprintf(p, n, "%s/tokens.bin", dir);
		r = gpu_data_tokenize(data, p);
	} else {
		r = -ENOMEM;
	}
	if (r < 0) {
		free(p);
		return r;
	}
	*ret = p;
	return 0;
}

/* The state every step shares. */
struct train_loop {
	const struct gpu_train_opts *o;
	struct gpu_model *m;
	struct gpu_data d;
	int32_t *inp, *tgt;
	int B, T;
	uint64_t seed;  /* the run's: the checkpoint's when resumed */
};

static int eval_val(struct train_loop *t, float *ret)
{
	double sum = 0.0;

	for (long i = 0; i < t->o->val_batches; i++) {
		float loss;
		int r = gpu_data_batch(&t->d, GPU_SPLIT_VAL, t->seed, (uint64_t)i, t->B, t->T,
				       t->inp, t->tgt);

		if (r < 0 || (r = gpu_model_forward(t->m, t->inp, t->tgt, t->B, t->T, &loss)) < 0)
			return r;
		sum += loss;
	}
	*ret = (float)(sum / t->o->val_batches);
	return 0;
}

/* Bytes for a byte vocabulary, else token ids in decimal separated by spaces. */
static int sample(struct train_loop *t, long step, const struct gpu_train_hooks *h)
{
	const struct gpu_config *cfg = gpu_model_config(t->m);
	int n = t->o->sample_len, bytes = cfg->vocab_size == 256;
	int32_t *tok = malloc(((size_t)n + 1) * sizeof(*tok));
	char *text = malloc(bytes ? (size_t)n + 1 : (size_t)n * 7 + 1);
	uint64_t rng = t->seed ^ (uint64_t)step;
	size_t len = 0;
	int r = -ENOMEM;

	if (!tok || !text)
		goto out;
	tok[0] = '\n' < cfg->vocab_size ? '\n' : 0;
	r = gpu_model_sample(t->m, tok, 1, n, t->o->temperature, t->o->top_k, &rng);
	if (r < 0)
		goto out;
	for (int i = 1; i <= n; i++)
		if (bytes)
			text[len++] = (char)tok[i];
		else
			len += (size_t)sprintf(text + len, "%s%d", i > 1 ? " " : "", tok[i]);
	text[len] = '\0';
	r = h->sample ? h->sample(h->arg, step, text, len) : 0;
out:
	free(text);
	free(tok);
	return r;
}

/* Loads o->from's weights into m: their shapes first, so a mismatch is named; the optimizer
 * state a checkpoint folder carries is reset (from= starts a fresh optimizer at step 0). */
static int load_from(struct gpu_model *m, const char *from, const char **what, char *detail,
		     size_t detail_len)
{
	const struct gpu_config *c = gpu_model_config(m);
	struct gpu_config fc;
	struct gpu_ckpt_meta meta;
	float *zero = NULL;
	char *path;
	int r;

	*what = "from: reading config.json";
	/* gpu_ckpt_read_config() says -EINVAL for a file that is not there: tell them apart */
	if (!(path = malloc(strlen(from) + sizeof("/config.json"))))
		return -ENOMEM;
	sprintf(path, "%s/config.json", from);
	r = access(path, R_OK) < 0 ? -errno : 0;
	free(path);
	if (r < 0 || (r = gpu_ckpt_read_config(from, &fc)) < 0)
		return r;
	if (fc.n_layer != c->n_layer || fc.n_head != c->n_head || fc.n_embd != c->n_embd ||
	    fc.n_ctx != c->n_ctx || fc.vocab_size != c->vocab_size) {
		*what = "from: shapes do not match";
		put_detail(detail, detail_len,
			   "the model has layers=%d heads=%d embd=%d ctx=%d vocab=%d, the job "
			   "layers=%d heads=%d embd=%d ctx=%d vocab=%d", fc.n_layer, fc.n_head,
			   fc.n_embd, fc.n_ctx, fc.vocab_size, c->n_layer, c->n_head, c->n_embd,
			   c->n_ctx, c->vocab_size);
		return -EINVAL;
	}
	*what = "from: loading the weights";
	if ((r = gpu_ckpt_load(m, from, &meta)) < 0)
		return r;
	if (meta.step < 0)
		return 0;
	zero = calloc(gpu_model_num_params(m), sizeof(*zero));
	if (!zero)
		return -ENOMEM;
	if ((r = gpu_model_write(m, GPU_BUF_ADAM_M, zero)) == 0 &&
	    (r = gpu_model_write(m, GPU_BUF_ADAM_V, zero)) == 0)
		gpu_model_set_adam_step(m, 0);
	free(zero);
	return r;
}

static const char *new_model_what(int r, const struct gpu_opts *opts)
{
	if (r == -ENOMEM)
		return "allocating the model (over max-mem, or out of memory)";
	if (r == -ENODEV)
		return "creating the model (no CUDA device, or a build without CUDA)";
	if (r == -EINVAL && opts->bf16 && opts->backend == GPU_BACKEND_CPU)
		return "creating the model (bf16 needs backend=cuda)";
	return "creating the model";
}

/* Data, buffers and the model, from resume, from= or a random init, in llmfs-train's order
 * of before; *start is the first step to compute. */
static int setup(struct train_loop *t, const char *token_path, const char *resume, long *start,
		 const char **what, char *detail, size_t detail_len)
{
	const struct gpu_train_opts *o = t->o;
	struct gpu_config cfg = o->cfg;
	struct gpu_ckpt_meta meta = { 0, o->seed };
	int r;

	*what = "setup";
	t->inp = malloc((size_t)t->B * t->T * sizeof(*t->inp));
	t->tgt = malloc((size_t)t->B * t->T * sizeof(*t->tgt));
	if (!t->inp || !t->tgt)
		return -ENOMEM;
	if ((r = gpu_data_open(&t->d, token_path, o->val_fraction)) < 0) {
		*what = r == -EINVAL ? "opening the token file (malformed)" : "opening the token file";
		return r;
	}
	/* gpu_data_batch() needs seq + 1 tokens in a split: say so before the first step */
	if (t->d.n_train < (size_t)t->T + 1 || t->d.n_tokens - t->d.n_train < (size_t)t->T + 1) {
		*what = t->d.n_tokens ? "the data is too short (each split needs more tokens than "
					"seq)"
				      : "the data is empty";
		put_detail(detail, detail_len, "%zu tokens, %zu of them training", t->d.n_tokens,
			   t->d.n_train);
		return -EINVAL;
	}
	if (t->d.vocab_size > cfg.vocab_size) {
		*what = "the data's vocabulary is larger than vocab";
		return -EINVAL;
	}
	if (resume && (r = gpu_ckpt_read_config(resume, &cfg)) < 0) {
		*what = "reading the checkpoint's config.json";
		return r;
	}
	if ((r = gpu_model_new(&t->m, &cfg, &o->opts)) < 0) {
		*what = new_model_what(r, &o->opts);
		return r;
	}
	if (!resume)
		return o->from ? load_from(t->m, o->from, what, detail, detail_len) : 0;
	if ((r = gpu_ckpt_load(t->m, resume, &meta)) < 0) {
		*what = "loading the checkpoint";
		return r;
	}
	if (meta.step < 0) {
		meta.step = 0;
		meta.seed = o->seed;
	}
	/* the run's seed picks every batch: a resumed run keeps the checkpoint's */
	t->seed = meta.seed;
	*start = meta.step + 1;
	return 0;
}

/* One optimizer step: the batch is a function of (seed, step), so a resumed run sees the same
 * data. */
static int train_step(struct train_loop *t, long step, float lr, float *loss, float *norm)
{
	int r;

	if ((r = gpu_data_batch(&t->d, GPU_SPLIT_TRAIN, t->seed, (uint64_t)step - 1, t->B, t->T,
				t->inp, t->tgt)) < 0 ||
	    (r = gpu_model_forward(t->m, t->inp, t->tgt, t->B, t->T, loss)) < 0 ||
	    (r = gpu_model_backward(t->m)) < 0)
		return r;
	return gpu_model_step(t->m, &t->o->adamw, lr, norm);
}

/* The steps from start on; *what names the stage a failure happened in. */
static int loop(struct train_loop *t, long start, const struct gpu_train_hooks *h,
		const char **what, char *detail, size_t detail_len)
{
	const struct gpu_train_opts *o = t->o;
	double t_start = clock_mono_s();
	int r;

	for (long step = start; step <= o->steps; step++) {
		struct gpu_train_row row = { step, 0, NAN, 0, 0, 0, 0, 0 };
		float lr = gpu_lr_schedule(step - 1, o->warmup, o->steps, o->lr, o->min_lr);
		double t0 = clock_mono_s(), dt;
		int end, stop;

		*what = "training";
		if ((r = train_step(t, step, lr, &row.train_loss, &row.grad_norm)) < 0) {
			if (r == -ERANGE)
				put_detail(detail, detail_len,
					   "loss or gradient not finite at step %ld", step);
			return r;
		}
		dt = clock_mono_s() - t0;
		end = step == o->steps || (o->max_seconds > 0 && clock_mono_s() - t_start >= o->max_seconds);
		stop = !end && h->stop && h->stop(h->arg);
		if (step % o->val_every == 0 || end) {
			*what = "validating";
			if ((r = eval_val(t, &row.val_loss)) < 0)
				return r;
		}
		row.lr = lr;
		row.tokens_per_s = t->B * t->T / dt;
		row.ms_per_step = dt * 1e3;
		row.tokens_seen = (uint64_t)step * (uint64_t)t->B * (uint64_t)t->T;
		*what = "reporting a step";
		if (h->row && (r = h->row(h->arg, &row)) < 0)
			return r;
		if ((o->sample_every && step % o->sample_every == 0) || end) {
			*what = "sampling";
			if ((r = sample(t, step, h)) < 0)
				return r;
		}
		if ((o->ckpt_every && step % o->ckpt_every == 0) || end || stop) {
			struct gpu_ckpt_meta meta = { step, t->seed };

			*what = "writing a checkpoint";
			if (h->checkpoint && (r = h->checkpoint(h->arg, t->m, step, &meta, end)) < 0)
				return r;
		}
		if (end || stop)
			break;
	}
	return 0;
}

int gpu_train_run(const struct gpu_train_opts *o, const char *token_path, const char *resume,
		  const struct gpu_train_hooks *h, const char **ret_what, char *detail,
		  size_t detail_len)
{
	struct train_loop t = { .o = o, .B = o->opts.max_batch, .T = o->opts.max_seq,
				.seed = o->seed };
	const char *what = "setup";
	long start = 1;
	int r;

	if (detail_len)
		detail[0] = '\0';
	r = setup(&t, token_path, resume, &start, &what, detail, detail_len);
	if (r == 0 && h->started) {
		struct gpu_train_info info = {
			gpu_model_num_params(t.m), t.d.n_tokens, t.d.n_train, start,
			o->opts.backend == GPU_BACKEND_CUDA ? "cuda" : "cpu" };

		h->started(h->arg, &info);
	}
	if (r == 0)
		r = loop(&t, start, h, &what, detail, detail_len);
	if (r < 0 && t.m && detail_len && !detail[0])
		put_detail(detail, detail_len, "%s", gpu_model_error_detail(t.m));
	if (ret_what)
		*ret_what = r < 0 ? what : NULL;
	gpu_model_free(t.m);
	gpu_data_release(&t.d);
	free(t.inp);
	free(t.tgt);
	return r;
}

/* -------------------------------------------------------------------- co-training windows */

int gpu_train_window(struct gpu_model *m, const struct gpu_data *d, const struct gpu_train_opts *o,
		     uint64_t seed, long step0, long steps, double *ret_loss)
{
	const int B = o->opts.max_batch, T = o->opts.max_seq;
	size_t n = gpu_model_num_params(m);
	int32_t *inp = malloc((size_t)B * T * sizeof(*inp)), *tgt = malloc((size_t)B * T * sizeof(*tgt));
	float *zero = calloc(n, sizeof(*zero));
	double sum = 0.0;
	int r = -ENOMEM;

	if (!inp || !tgt || !zero)
		goto out;
	/* a fresh AdamW state: the window depends on its start weights alone */
	if ((r = gpu_model_write(m, GPU_BUF_ADAM_M, zero)) < 0 ||
	    (r = gpu_model_write(m, GPU_BUF_ADAM_V, zero)) < 0)
		goto out;
	gpu_model_set_adam_step(m, 0);
	for (long s = step0 + 1; s <= step0 + steps; s++) {
		float lr = gpu_lr_schedule(s - 1, o->warmup, o->steps, o->lr, o->min_lr), loss;

		if ((r = gpu_data_batch(d, GPU_SPLIT_TRAIN, seed, (uint64_t)s - 1, B, T, inp, tgt)) < 0 ||
		    (r = gpu_model_forward(m, inp, tgt, B, T, &loss)) < 0 ||
		    (r = gpu_model_backward(m)) < 0 ||
		    (r = gpu_model_step(m, &o->adamw, lr, NULL)) < 0)
			goto out;
		sum += loss;
	}
	if (ret_loss)
		*ret_loss = steps > 0 ? sum / (double)steps : NAN;
out:
	free(zero);
	free(inp);
	free(tgt);
	return r;
}

int gpu_train_eval(struct gpu_model *m, const struct gpu_data *d, const struct gpu_train_opts *o,
		   uint64_t seed, float *ret)
{
	struct train_loop t = { .o = o, .m = m, .d = *d, .B = o->opts.max_batch,
				.T = o->opts.max_seq, .seed = seed };
	int r = -ENOMEM;

	t.inp = malloc((size_t)t.B * t.T * sizeof(*t.inp));
	t.tgt = malloc((size_t)t.B * t.T * sizeof(*t.tgt));
	if (t.inp && t.tgt)
		r = eval_val(&t, ret);
	free(t.inp);
	free(t.tgt);
	return r;
}

/* -------------------------------------------------------------------- trainer_state.json */

/* jansson refuses non-finite reals: they become null. */
static json_t *real_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static int is_ckpt_step(const struct gpu_train_opts *o, const struct gpu_train_row *rows,
			size_t n, long step)
{
	return (o->ckpt_every && step % o->ckpt_every == 0) || step == rows[n - 1].step;
}

static json_t *log_entries(const struct gpu_train_info *info, const struct gpu_train_row *rows,
			   size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++) {
		const struct gpu_train_row *r = &rows[i];
		json_t *e = json_pack("{s:I, s:o, s:o, s:o, s:I, s:o, s:o}", "step",
				      (json_int_t)r->step, "loss", real_or_null(r->train_loss),
				      "learning_rate", real_or_null(r->lr), "grad_norm",
				      real_or_null(r->grad_norm), "num_input_tokens_seen",
				      (json_int_t)r->tokens_seen, "tokens_per_s",
				      real_or_null(r->tokens_per_s), "ms_per_step",
				      real_or_null(r->ms_per_step));
		json_t *v = NULL;

		if (e && !isnan(r->val_loss))
			v = json_pack("{s:I, s:o}", "step", (json_int_t)r->step, "eval_loss",
				      real_or_null(r->val_loss));
		if (e && info && info->n_train) {
			double epoch = (double)r->tokens_seen / (double)info->n_train;

			json_object_set_new(e, "epoch", json_real(epoch));
			if (v)
				json_object_set_new(v, "epoch", json_real(epoch));
		}
		if (!e || json_array_append_new(a, e) < 0 ||
		    (!isnan(r->val_loss) && (!v || json_array_append_new(a, v) < 0))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

char *gpu_train_state_json(const struct gpu_train_opts *o, const struct gpu_train_info *info,
			   const struct gpu_train_row *rows, size_t n, const char *ckpt_prefix)
{
	const struct gpu_train_row *last = n ? &rows[n - 1] : NULL;
	const struct gpu_train_row *best = NULL;
	uint64_t tokens = last ? last->tokens_seen : 0;
	uint64_t per_step = (uint64_t)o->opts.max_batch * (uint64_t)o->opts.max_seq;
	json_t *root, *hist = log_entries(info, rows, n);
	char *s = NULL, *bestck = NULL;

	for (size_t i = 0; i < n; i++)
		if (!isnan(rows[i].val_loss) && (!best || rows[i].val_loss < best->val_loss) &&
		    (!ckpt_prefix || is_ckpt_step(o, rows, n, rows[i].step)))
			best = &rows[i];
	if (best && ckpt_prefix &&
	    asprintf(&bestck, "%s%ld", ckpt_prefix, best->step) < 0)
		bestck = NULL;
	root = json_pack("{s:o, s:o, s:I, s:I, s:b, s:b, s:b, s:I, s:I, s:I, s:I, s:o, s:I, "
			 "s:n, s:n, s:o}",
			 "log_history", hist ? hist : json_null(),
			 "best_metric", best ? real_or_null(best->val_loss) : json_null(),
			 "global_step", (json_int_t)(last ? last->step : 0),
			 "max_steps", (json_int_t)o->steps,
			 "is_hyper_param_search", 0, "is_local_process_zero", 1,
			 "is_world_process_zero", 1,
			 "logging_steps", (json_int_t)1,
			 "eval_steps", (json_int_t)o->val_every,
			 "save_steps", (json_int_t)o->ckpt_every,
			 "num_input_tokens_seen", (json_int_t)tokens,
			 "total_flos", json_real(gpu_flops_per_token(&o->cfg, o->opts.max_seq) *
						 (double)tokens),
			 "train_batch_size", (json_int_t)o->opts.max_batch,
			 "trial_name", "trial_params",
			 "best_model_checkpoint", bestck ? json_string(bestck) : json_null());
	if (root && info && info->n_train) {
		double epochs = ceil((double)o->steps * (double)per_step / (double)info->n_train);

		json_object_set_new(root, "epoch", json_real((double)tokens / (double)info->n_train));
		json_object_set_new(root, "num_train_epochs", json_integer((json_int_t)epochs));
	}
	if (root && hist)
		s = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	free(bestck);
	return s;
}

static double num_or(json_t *o, const char *key, double missing)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : missing;
}

int gpu_train_state_rows(const char *json, size_t len, struct gpu_train_row **ret, size_t *ret_n)
{
	json_t *root = json_loadb(json, len, 0, NULL), *hist = json_object_get(root, "log_history");
	struct gpu_train_row *rows = NULL;
	size_t n = 0, i;
	json_t *e;
	int r = -EINVAL;

	if (!json_is_array(hist))
		goto out;
	rows = calloc(json_array_size(hist) + 1, sizeof(*rows));
	if (!rows) {
		r = -ENOMEM;
		goto out;
	}
	json_array_foreach(hist, i, e) {
		json_t *step = json_object_get(e, "step");

		if (!json_is_integer(step))
			goto out;
		if (json_is_number(json_object_get(e, "loss"))) {
			struct gpu_train_row *w = &rows[n++];

			w->step = (long)json_integer_value(step);
			w->train_loss = (float)num_or(e, "loss", NAN);
			w->val_loss = NAN;
			w->lr = (float)num_or(e, "learning_rate", NAN);
			w->grad_norm = (float)num_or(e, "grad_norm", NAN);
			w->tokens_per_s = num_or(e, "tokens_per_s", 0);
			w->ms_per_step = num_or(e, "ms_per_step", 0);
			w->tokens_seen = (uint64_t)num_or(e, "num_input_tokens_seen", 0);
		} else if (json_is_number(json_object_get(e, "eval_loss"))) {
			/* an evaluation follows the training entry of its step */
			if (!n || rows[n - 1].step != (long)json_integer_value(step))
				goto out;
			rows[n - 1].val_loss = (float)num_or(e, "eval_loss", NAN);
		}
	}
	*ret = rows;
	*ret_n = n;
	rows = NULL;
	r = 0;
out:
	free(rows);
	json_decref(root);
	return r;
}

/* -------------------------------------------------------------------- TensorBoard */

/* CRC-32C (Castagnoli, reflected 0x82F63B78), four bits at a time. */
uint32_t gpu_crc32c(const void *data, size_t len)
{
	static const uint32_t t[16] = {
		0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3,
		0x61c69362, 0x7198540d, 0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
		0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75 };
	const unsigned char *p = data;
	uint32_t c = 0xffffffff;

	while (len--) {
		c ^= *p++;
		c = t[c & 15] ^ (c >> 4);
		c = t[c & 15] ^ (c >> 4);
	}
	return ~c;
}

/* TensorBoard's record_writer masks the CRCs it stores. */
static uint32_t masked_crc(const void *data, size_t len)
{
	uint32_t c = gpu_crc32c(data, len);

	return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* A growing byte string for protobuf encoding. */
struct pb {
	unsigned char b[1024];
	size_t n;
	int overflow;
};

static void pb_bytes(struct pb *p, const void *src, size_t len)
{
	if (p->n + len > sizeof(p->b)) {
		p->overflow = 1;
		return;
	}
	memcpy(p->b + p->n, src, len);
	p->n += len;
}

static void pb_varint(struct pb *p, uint64_t v)
{
	unsigned char c[10];
	size_t n = 0;

	do {
		c[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	pb_bytes(p, c, n);
}

static void pb_le(struct pb *p, uint64_t v, int n)
{
	unsigned char c[8];

	for (int i = 0; i < n; i++)
		c[i] = (unsigned char)(v >> (8 * i));
	pb_bytes(p, c, (size_t)n);
}

/* Field number f, wire type 2 (length-delimited). */
static void pb_len(struct pb *p, int f, const void *data, size_t len)
{
	pb_varint(p, (uint64_t)f << 3 | 2);
	pb_varint(p, len);
	pb_bytes(p, data, len);
}

/* Summary.Value { tag = 1; simple_value = 2 (float) }, as field 1 of a Summary. */
static void pb_scalar(struct pb *summary, const char *tag, float v)
{
	struct pb val = { .n = 0 };
	uint32_t bits;

	memcpy(&bits, &v, sizeof(bits));
	pb_len(&val, 1, tag, strlen(tag));
	pb_varint(&val, 2 << 3 | 5);
	pb_le(&val, bits, 4);
	pb_len(summary, 1, val.b, val.n);
	summary->overflow |= val.overflow;
}

/* Event { wall_time = 1 (double); step = 2 (int64); file_version = 3; summary = 5 }. */
static void pb_event(struct pb *ev, double wall_time, long step)
{
	uint64_t bits;

	memcpy(&bits, &wall_time, sizeof(bits));
	pb_varint(ev, 1 << 3 | 1);
	pb_le(ev, bits, 8);
	if (step) {
		pb_varint(ev, 2 << 3 | 0);
		pb_varint(ev, (uint64_t)step);
	}
}

/* One record: u64 length, masked CRC of the length, data, masked CRC of the data. */
static int append_record(const struct pb *data, char **buf, size_t *len)
{
	struct pb head = { .n = 0 }, tail = { .n = 0 };
	char *nb;

	if (data->overflow)
		return -E2BIG;
	pb_le(&head, data->n, 8);
	pb_le(&head, masked_crc(head.b, 8), 4);
	pb_le(&tail, masked_crc(data->b, data->n), 4);
	nb = realloc(*buf, *len + head.n + data->n + tail.n);
	if (!nb)
		return -ENOMEM;
	memcpy(nb + *len, head.b, head.n);
	memcpy(nb + *len + head.n, data->b, data->n);
	memcpy(nb + *len + head.n + data->n, tail.b, tail.n);
	*buf = nb;
	*len += head.n + data->n + tail.n;
	return 0;
}

int gpu_tfevents_header(double wall_time, char **buf, size_t *len)
{
	static const char version[] = "brain.Event:2";
	struct pb ev = { .n = 0 };

	pb_event(&ev, wall_time, 0);
	pb_len(&ev, 3, version, strlen(version));
	return append_record(&ev, buf, len);
}

int gpu_tfevents_row(const struct gpu_train_row *r, double wall_time, char **buf, size_t *len)
{
	struct pb ev = { .n = 0 }, sum = { .n = 0 };

	pb_scalar(&sum, "train/loss", r->train_loss);
	pb_scalar(&sum, "train/learning_rate", r->lr);
	pb_scalar(&sum, "tokens_per_s", (float)r->tokens_per_s);
	if (!isnan(r->val_loss))
		pb_scalar(&sum, "eval/loss", r->val_loss);
	pb_event(&ev, wall_time, r->step);
	pb_len(&ev, 5, sum.b, sum.n);
	ev.overflow |= sum.overflow;
	return append_record(&ev, buf, len);
}

/* -------------------------------------------------------------------- loss.svg */

enum { SVG_W = 640, SVG_H = 400, SVG_L = 64, SVG_R = 20, SVG_T = 40, SVG_B = 48 };

struct svg_axes {
	double x0, x1, y0, y1;
};

static double svg_x(const struct svg_axes *a, double x)
{
	return SVG_L + (x - a->x0) / (a->x1 - a->x0) * (SVG_W - SVG_L - SVG_R);
}

static double svg_y(const struct svg_axes *a, double y)
{
	return SVG_H - SVG_B - (y - a->y0) / (a->y1 - a->y0) * (SVG_H - SVG_T - SVG_B);
}

/* A tick spacing of 1, 2 or 5 times a power of ten, giving about five ticks. */
static double nice_step(double range)
{
	double raw = range / 5, p = pow(10, floor(log10(raw))), f = raw / p;

	return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void svg_ticks(FILE *f, const struct svg_axes *a)
{
	double sx = nice_step(a->x1 - a->x0), sy = nice_step(a->y1 - a->y0);

	for (double x = ceil(a->x0 / sx) * sx; x <= a->x1 + sx * 1e-9; x += sx)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#000\"/>"
			"<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.10g</text>\n",
			svg_x(a, x), SVG_H - SVG_B, svg_x(a, x), SVG_H - SVG_B + 5, svg_x(a, x),
			SVG_H - SVG_B + 18, x);
	for (double y = ceil(a->y0 / sy) * sy; y <= a->y1 + sy * 1e-9; y += sy)
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#000\"/>"
			"<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
			SVG_L - 5, svg_y(a, y), SVG_L, svg_y(a, y), SVG_L - 8, svg_y(a, y) + 4,
			fabs(y) < sy * 1e-9 ? 0.0 : y);
}

/* Many thousand steps draw as about 2000 points: every k-th row, and the last. */
static void svg_line(FILE *f, const struct svg_axes *a, const struct gpu_train_row *rows,
		     size_t n, int val, const char *colour)
{
	size_t k = n > 2000 ? n / 2000 + 1 : 1;

	fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour);
	for (size_t i = 0; i < n; i++) {
		float v = val ? rows[i].val_loss : rows[i].train_loss;

		if ((val || i % k == 0 || i == n - 1) && isfinite(v))
			fprintf(f, "%.1f,%.1f ", svg_x(a, (double)rows[i].step), svg_y(a, v));
	}
	fputs("\"/>\n", f);
}

static void svg_text(FILE *f, const char *s)
{
	for (; *s; s++)
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		default:
			/* control characters are not XML */
			fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
		}
}

static struct svg_axes svg_range(const struct gpu_train_row *rows, size_t n)
{
	struct svg_axes a = { 0, 1, INFINITY, -INFINITY };

	if (n) {
		a.x0 = (double)rows[0].step;
		a.x1 = (double)rows[n - 1].step;
	}
	for (size_t i = 0; i < n; i++)
		for (int j = 0; j < 2; j++) {
			float v = j ? rows[i].val_loss : rows[i].train_loss;

			if (isfinite(v)) {
				a.y0 = fmin(a.y0, v);
				a.y1 = fmax(a.y1, v);
			}
		}
	if (!(a.y0 <= a.y1))
		a.y0 = 0, a.y1 = 1;
	if (a.x1 <= a.x0)
		a.x1 = a.x0 + 1;
	if (a.y1 - a.y0 < 1e-6)
		a.y0 -= 0.5, a.y1 += 0.5;
	double pad = (a.y1 - a.y0) * 0.05;

	a.y0 -= pad;
	a.y1 += pad;
	return a;
}

char *gpu_train_svg(const struct gpu_train_row *rows, size_t n, const char *title)
{
	struct svg_axes a = svg_range(rows, n);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n"
		"<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">",
		SVG_W, SVG_H, SVG_W, SVG_H, SVG_W / 2);
	svg_text(f, title ? title : "loss");
	fprintf(f, "</text>\n<path d=\"M%d %d V%d H%d\" fill=\"none\" stroke=\"#000\"/>\n",
		SVG_L, SVG_T, SVG_H - SVG_B, SVG_W - SVG_R);
	svg_ticks(f, &a);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>\n"
		"<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">"
		"loss</text>\n", (SVG_W + SVG_L) / 2, SVG_H - 8, SVG_H / 2, SVG_H / 2);
	svg_line(f, &a, rows, n, 0, "#1f77b4");
	svg_line(f, &a, rows, n, 1, "#ff7f0e");
	fprintf(f, "<g transform=\"translate(%d %d)\">"
		"<line x1=\"0\" y1=\"0\" x2=\"20\" y2=\"0\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
		"<text x=\"26\" y=\"4\">train</text>"
		"<line x1=\"0\" y1=\"16\" x2=\"20\" y2=\"16\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>"
		"<text x=\"26\" y=\"20\">validation</text></g>\n</svg>\n", SVG_W - SVG_R - 110,
		SVG_T + 10);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
