/* llmfs-train - train a GPT on a text file with the gpu/ engine.
 *
 * Writes into --out DIR:
 *   tokens.bin      the tokenised data (unless --data is already a token file)
 *   loss.tsv        step, train loss, validation loss ("-" when not evaluated), learning rate,
 *                   tokens/s, ms/step, gradient norm, tokens seen (gpu_train_row_format(), the
 *                   metrics.tsv of training jobs); appended to on resume
 *   ckpt-NNNNNNNN/  checkpoints (see gpu/ckpt.h), every --ckpt-every steps and at the end
 *   samples.txt     generated text every --sample-every steps and at the end
 * A checkpoint directory is never overwritten: a run that reaches a step whose checkpoint
 * already exists in DIR stops with "File exists" (resume into a fresh DIR instead).
 * The options are gpu/train.h's keys (docs/train.md), so a job file and this command never
 * drift; the loop is gpu_train_run().
 * Exit status: 0 done, 1 error (printed on stderr), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gpu/ckpt.h"
#include "gpu/train.h"

/* Options of the command beside the keys of gpu_train_keys[]. */
enum { OPT_OUT = 1000, OPT_RESUME, OPT_HELP };

struct train_cli {
	struct gpu_train_opts o;
	const char *out, *resume;
	FILE *log, *samples;
	long start;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmfs-train --data FILE --out DIR [--resume CKPTDIR] [--KEY VALUE]...\n"
		"  --out DIR          where loss.tsv, samples.txt and ckpt-NNNNNNNN/ go\n"
		"  --resume CKPTDIR   go on from a checkpoint (its step, seed and optimizer)\n"
		"Keys (--KEY VALUE here, KEY=VALUE in a job file; --bf16 takes no value):\n");
	gpu_train_usage(f);
}

/* getopt's array from the table of keys, then our own options. */
static struct option *long_options(void)
{
	size_t n = 0;
	struct option *lo;

	while (gpu_train_keys[n].name)
		n++;
	lo = calloc(n + 4, sizeof(*lo));
	if (!lo)
		return NULL;
	for (size_t i = 0; i < n; i++)
		lo[i] = (struct option){ gpu_train_keys[i].name,
					 gpu_train_keys[i].type == GPU_TK_BOOL ? no_argument
									       : required_argument,
					 NULL, (int)i };
	lo[n] = (struct option){ "out", required_argument, NULL, OPT_OUT };
	lo[n + 1] = (struct option){ "resume", required_argument, NULL, OPT_RESUME };
	lo[n + 2] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	return lo;
}

/* 0, 1 for --help, -1 for a usage error (said on stderr). */
static int parse(int argc, char **argv, struct train_cli *a)
{
	struct option *lo = long_options();
	char err[256];
	int c, r = 0;

	if (!lo)
		return -1;
	while (r == 0 && (c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == OPT_OUT) {
			a->out = optarg;
		} else if (c == OPT_RESUME) {
			a->resume = optarg;
		} else if (c == OPT_HELP || c == 'h') {
			r = 1;
		} else if (c >= 0 && c < OPT_OUT) {
			const struct gpu_train_key *k = &gpu_train_keys[c];

			if (gpu_train_opts_set(&a->o, k->name,
					       k->type == GPU_TK_BOOL ? "1" : optarg, err,
					       sizeof(err)) < 0) {
				fprintf(stderr, "llmfs-train: --%s\n", err);
				r = -1;
			}
		} else {
			r = -1;
		}
	}
	free(lo);
	if (r == 0 && (!a->out || optind != argc)) {
		fprintf(stderr, "llmfs-train: %s\n", a->out ? "stray arguments" : "--out: missing");
		r = -1;
	}
	if (r == 0 && gpu_train_opts_finish(&a->o, err, sizeof(err)) < 0) {
		fprintf(stderr, "llmfs-train: --%s\n", err);
		r = -1;
	}
	return r;
}

static char *path_in(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static void on_started(void *arg, const struct gpu_train_info *info)
{
	struct train_cli *a = arg;

	a->start = info->start_step;
	fprintf(stderr, "llmfs-train: %zu parameters, %s backend, data %zu tokens (%zu train)\n",
		info->n_params, info->backend, info->n_tokens, info->n_train);
}

static int on_row(void *arg, const struct gpu_train_row *r)
{
	struct train_cli *a = arg;
	char line[256], val[32] = "-";
	int n = gpu_train_row_format(r, line, sizeof(line));

	if (n < 0)
		return n;
	if (fputs(line, a->log) == EOF || fflush(a->log) != 0)
		return -errno;
	if (!isnan(r->val_loss))
		snprintf(val, sizeof(val), "%.9g", r->val_loss);
	/* validated steps are every val-every-th and the last */
	if (!isnan(r->val_loss) || r->step == a->start)
		printf("step %ld: train %.4f val %s lr %.3g norm %.3f %.0f tok/s\n", r->step,
		       r->train_loss, val, r->lr, r->grad_norm, r->tokens_per_s);
	return 0;
}

static int on_sample(void *arg, long step, const char *text, size_t len)
{
	struct train_cli *a = arg;

	fprintf(a->samples, "=== step %ld\n", step);
	fwrite(text, 1, len, a->samples);
	fputs("\n\n", a->samples);
	return fflush(a->samples) != 0 ? -errno : 0;
}

static int on_checkpoint(void *arg, struct gpu_model *m, long step,
			 const struct gpu_ckpt_meta *meta, int last)
{
	struct train_cli *a = arg;
	char name[32];
	char *dir;
	int r;

	(void)last;
	snprintf(name, sizeof(name), "ckpt-%08ld", step);
	dir = path_in(a->out, name);
	if (!dir)
		return -ENOMEM;
	r = gpu_ckpt_save(m, dir, meta);
	free(dir);
	return r;
}

static int open_outputs(struct train_cli *a)
{
	char *log_path = path_in(a->out, "loss.tsv"), *sample_path = path_in(a->out, "samples.txt");
	struct stat st;
	int r = 0, new_log;

	if (!log_path || !sample_path) {
		r = -ENOMEM;
		goto out;
	}
	new_log = stat(log_path, &st) < 0;
	a->log = fopen(log_path, "ae");
	a->samples = fopen(sample_path, "ae");
	if (!a->log || !a->samples)
		r = -errno;
	else if (new_log)
		fputs(gpu_train_tsv_header, a->log);
out:
	free(log_path);
	free(sample_path);
	return r;
}

static int run(struct train_cli *a)
{
	const struct gpu_train_hooks h = { a, on_started, on_row, on_sample, on_checkpoint, NULL };
	const char *what = a->out;
	char *tok_path = NULL, detail[256] = "";
	int r;

	if (mkdir(a->out, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		goto out;
	}
	what = "preparing the data";
	if ((r = gpu_train_data(a->o.data, a->out, &tok_path)) < 0)
		goto out;
	what = "opening the outputs";
	if ((r = open_outputs(a)) < 0)
		goto out;
	r = gpu_train_run(&a->o, tok_path, a->resume, &h, &what, detail, sizeof(detail));
out:
	if (r < 0)
		fprintf(stderr, "llmfs-train: %s: %s%s%s%s\n", what, strerror(-r),
			*detail ? " (" : "", detail, *detail ? ")" : "");
	if (a->log && fclose(a->log) != 0 && r == 0)
		r = -errno;
	if (a->samples)
		fclose(a->samples);
	free(tok_path);
	return r;
}

int main(int argc, char **argv)
{
	struct train_cli a = { .start = 1 };
	int r;

	gpu_train_opts_init(&a.o);
	r = parse(argc, argv, &a);
	if (r != 0) {
		usage(r > 0 ? stdout : stderr);
		gpu_train_opts_release(&a.o);
		return r > 0 ? 0 : 2;
	}
	r = run(&a);
	gpu_train_opts_release(&a.o);
	return r < 0 ? 1 : 0;
}
