/* llmfs-train - train a GPT on a text file with the gpu/ engine.
 *
 * Writes into --out DIR:
 *   tokens.bin      the tokenised data (unless --data is already a token file)
 *   loss.tsv        step, train loss, validation loss ("-" when not evaluated), learning rate,
 *                   tokens/s, ms/step; appended to on resume
 *   ckpt-NNNNNNNN/  checkpoints (see gpu/ckpt.h), every --ckpt-every steps and at the end
 *   samples.txt     generated text every --sample-every steps and at the end
 * A checkpoint directory is never overwritten: a run that reaches a step whose checkpoint
 * already exists in DIR stops with "File exists" (resume into a fresh DIR instead).
 * Exit status: 0 done, 1 error (printed on stderr), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gpu/ckpt.h"
#include "gpu/data.h"
#include "gpu/gpt.h"
#include "common/clock.h"

struct train_args {
	const char *data, *out, *resume;
	struct gpu_config cfg;
	struct gpu_opts opts;
	struct gpu_adamw adamw;
	long steps, warmup, val_every, val_batches, ckpt_every, sample_every;
	int sample_len, top_k;
	float lr, min_lr, temperature;
	double val_fraction, max_seconds;
	uint64_t seed;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmfs-train --data FILE --out DIR [options]\n"
		"  --steps N (1000)        --batch B (8)        --seq T (128)\n"
		"  --layers L (4)          --heads H (4)        --embd C (128)\n"
		"  --ctx N (= seq)         --vocab V (256)\n"
		"  --lr X (1e-3)           --min-lr X (lr/10)   --warmup N (steps/20)\n"
		"  --wd X (0.1)            --clip X (1.0)       --beta1 X (0.9) --beta2 X (0.95)\n"
		"  --seed N (1)            --val-fraction X (0.1)\n"
		"  --val-every N (100)     --val-batches N (8)\n"
		"  --ckpt-every N (0: end only)   --resume CKPTDIR\n"
		"  --sample-every N (0: end only) --sample-len N (200)\n"
		"  --temperature X (0.8)   --top-k K (40)\n"
		"  --backend cpu|cuda (cpu) --max-mem MIB (0: no bound)\n"
		"  --bf16 (cuda only): bf16 activations and matmuls, fp32 master weights\n"
		"  --max-seconds S (0: none): stop after the step that passes S seconds,\n"
		"                  with the final validation, sample and checkpoint\n");
}

static int parse(int argc, char **argv, struct train_args *a)
{
	static const struct option lo[] = {
		{ "data", 1, 0, 'd' }, { "out", 1, 0, 'o' }, { "steps", 1, 0, 's' },
		{ "batch", 1, 0, 'B' }, { "seq", 1, 0, 'T' }, { "layers", 1, 0, 'L' },
		{ "heads", 1, 0, 'H' }, { "embd", 1, 0, 'C' }, { "ctx", 1, 0, 'x' },
		{ "vocab", 1, 0, 'V' }, { "lr", 1, 0, 'l' }, { "min-lr", 1, 0, 'm' },
		{ "warmup", 1, 0, 'w' }, { "wd", 1, 0, 'W' }, { "clip", 1, 0, 'c' },
		{ "beta1", 1, 0, '1' }, { "beta2", 1, 0, '2' }, { "seed", 1, 0, 'S' },
		{ "val-fraction", 1, 0, 'f' }, { "val-every", 1, 0, 'e' },
		{ "val-batches", 1, 0, 'b' }, { "ckpt-every", 1, 0, 'k' }, { "resume", 1, 0, 'r' },
		{ "sample-every", 1, 0, 'p' }, { "sample-len", 1, 0, 'n' },
		{ "temperature", 1, 0, 't' }, { "top-k", 1, 0, 'K' }, { "backend", 1, 0, 'g' },
		{ "bf16", 0, 0, 'F' }, { "max-mem", 1, 0, 'M' }, { "help", 0, 0, 'h' },
		{ "max-seconds", 1, 0, 'X' },
		{ 0, 0, 0, 0 } };
	int c, ctx = 0;
	float min_lr = -1.0f;
	long warmup = -1;

	memset(a, 0, sizeof(*a));
	a->steps = 1000;
	a->opts.max_batch = 8;
	a->opts.max_seq = 128;
	a->cfg = (struct gpu_config){ 4, 4, 128, 0, 256 };
	a->lr = 1e-3f;
	a->adamw = (struct gpu_adamw){ 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f };
	a->seed = 1;
	a->val_fraction = 0.1;
	a->val_every = 100;
	a->val_batches = 8;
	a->sample_len = 200;
	a->temperature = 0.8f;
	a->top_k = 40;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': a->data = optarg; break;
		case 'o': a->out = optarg; break;
		case 's': a->steps = atol(optarg); break;
		case 'B': a->opts.max_batch = atoi(optarg); break;
		case 'T': a->opts.max_seq = atoi(optarg); break;
		case 'L': a->cfg.n_layer = atoi(optarg); break;
		case 'H': a->cfg.n_head = atoi(optarg); break;
		case 'C': a->cfg.n_embd = atoi(optarg); break;
		case 'x': ctx = atoi(optarg); break;
		case 'V': a->cfg.vocab_size = atoi(optarg); break;
		case 'l': a->lr = strtof(optarg, NULL); break;
		case 'm': min_lr = strtof(optarg, NULL); break;
		case 'w': warmup = atol(optarg); break;
		case 'W': a->adamw.weight_decay = strtof(optarg, NULL); break;
		case 'c': a->adamw.grad_clip = strtof(optarg, NULL); break;
		case '1': a->adamw.beta1 = strtof(optarg, NULL); break;
		case '2': a->adamw.beta2 = strtof(optarg, NULL); break;
		case 'S': a->seed = strtoull(optarg, NULL, 10); break;
		case 'f': a->val_fraction = strtod(optarg, NULL); break;
		case 'e': a->val_every = atol(optarg); break;
		case 'b': a->val_batches = atol(optarg); break;
		case 'k': a->ckpt_every = atol(optarg); break;
		case 'r': a->resume = optarg; break;
		case 'p': a->sample_every = atol(optarg); break;
		case 'n': a->sample_len = atoi(optarg); break;
		case 't': a->temperature = strtof(optarg, NULL); break;
		case 'K': a->top_k = atoi(optarg); break;
		case 'g':
			if (strcmp(optarg, "cpu") == 0)
				a->opts.backend = GPU_BACKEND_CPU;
			else if (strcmp(optarg, "cuda") == 0)
				a->opts.backend = GPU_BACKEND_CUDA;
			else
				return -1;
			break;
		case 'F': a->opts.bf16 = 1; break;
		case 'M': a->opts.max_bytes = (size_t)atol(optarg) << 20; break;
		case 'X': a->max_seconds = strtod(optarg, NULL); break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (!a->data || !a->out || optind != argc || a->steps < 1 || a->val_batches < 1 ||
	    a->val_every < 1 || a->sample_len < 0)
		return -1;
	a->cfg.n_ctx = ctx > 0 ? ctx : a->opts.max_seq;
	a->min_lr = min_lr >= 0.0f ? min_lr : a->lr / 10.0f;
	a->warmup = warmup >= 0 ? warmup : a->steps / 20;
	return 0;
}

static char *path_in(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int eval_val(struct gpu_model *m, const struct gpu_data *d, const struct train_args *a,
		    int32_t *inp, int32_t *tgt, float *ret)
{
	int B = a->opts.max_batch, T = a->opts.max_seq;
	double sum = 0.0;

	for (long i = 0; i < a->val_batches; i++) {
		float loss;
		int r = gpu_data_batch(d, GPU_SPLIT_VAL, a->seed, (uint64_t)i, B, T, inp, tgt);

		if (r < 0 || (r = gpu_model_forward(m, inp, tgt, B, T, &loss)) < 0)
			return r;
		sum += loss;
	}
	*ret = (float)(sum / a->val_batches);
	return 0;
}

static int write_sample(struct gpu_model *m, const struct train_args *a, long step, FILE *f)
{
	int n = a->sample_len;
	int32_t *tok = malloc(((size_t)n + 1) * sizeof(*tok));
	uint64_t rng = a->seed ^ (uint64_t)step;
	int r;

	if (!tok)
		return -ENOMEM;
	tok[0] = '\n' < a->cfg.vocab_size ? '\n' : 0;
	r = gpu_model_sample(m, tok, 1, n, a->temperature, a->top_k, &rng);
	if (r == 0) {
		fprintf(f, "=== step %ld\n", step);
		for (int i = 1; i <= n; i++)
			if (a->cfg.vocab_size == 256)
				fputc(tok[i], f);
			else
				fprintf(f, "%s%d", i > 1 ? " " : "", tok[i]);
		fputs("\n\n", f);
		fflush(f);
	}
	free(tok);
	return r;
}

static int save_ckpt(struct gpu_model *m, const struct train_args *a, long step)
{
	char name[32];
	char *dir;
	struct gpu_ckpt_meta meta = { step, a->seed };
	int r;

	snprintf(name, sizeof(name), "ckpt-%08ld", step);
	dir = path_in(a->out, name);
	if (!dir)
		return -ENOMEM;
	r = gpu_ckpt_save(m, dir, &meta);
	free(dir);
	return r;
}

static int run(struct train_args *a)
{
	struct gpu_data d = { 0 };
	struct gpu_model *m = NULL;
	struct gpu_config cfg = a->cfg;
	struct gpu_ckpt_meta meta = { 0, a->seed };
	char *tok_path = NULL, *log_path = NULL, *sample_path = NULL;
	FILE *log = NULL, *samples = NULL;
	int32_t *inp = NULL, *tgt = NULL;
	int B = a->opts.max_batch, T = a->opts.max_seq;
	const char *what = "setup";
	long start = 1;
	int r;

	if (mkdir(a->out, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		what = a->out;
		goto out;
	}
	r = gpu_data_is_token_file(a->data);
	if (r < 0) {
		what = a->data;
		goto out;
	}
	if (r == 1) {
		tok_path = strdup(a->data);
	} else {
		tok_path = path_in(a->out, "tokens.bin");
		if (tok_path && (r = gpu_data_tokenize(a->data, tok_path)) < 0) {
			what = "tokenising the data";
			goto out;
		}
	}
	log_path = path_in(a->out, "loss.tsv");
	sample_path = path_in(a->out, "samples.txt");
	inp = malloc((size_t)B * T * sizeof(*inp));
	tgt = malloc((size_t)B * T * sizeof(*tgt));
	if (!tok_path || !log_path || !sample_path || !inp || !tgt) {
		r = -ENOMEM;
		goto out;
	}
	r = gpu_data_open(&d, tok_path, a->val_fraction);
	if (r < 0) {
		what = "opening the token file";
		goto out;
	}
	if (d.vocab_size > cfg.vocab_size) {
		r = -EINVAL;
		what = "the data's vocabulary is larger than --vocab";
		goto out;
	}
	if (a->resume) {
		r = gpu_ckpt_read_config(a->resume, &cfg);
		if (r < 0) {
			what = "reading the checkpoint's config.json";
			goto out;
		}
	}
	r = gpu_model_new(&m, &cfg, &a->opts);
	if (r < 0) {
		if (r == -ENOMEM)
			what = "allocating the model (over --max-mem, or out of memory)";
		else if (r == -ENODEV)
			what = "creating the model (no CUDA device, or a build without CUDA)";
		else if (r == -EINVAL && a->opts.bf16 && a->opts.backend == GPU_BACKEND_CPU)
			what = "creating the model (--bf16 needs --backend cuda)";
		else
			what = "creating the model";
		goto out;
	}
	if (a->resume) {
		r = gpu_ckpt_load(m, a->resume, &meta);
		if (r < 0) {
			what = "loading the checkpoint";
			goto out;
		}
		if (meta.step < 0) {
			meta.step = 0;
			meta.seed = a->seed;
		}
		/* the run's seed picks every batch: a resumed run keeps the checkpoint's */
		a->seed = meta.seed;
		start = meta.step + 1;
	}
	fprintf(stderr, "llmfs-train: %zu parameters, %s backend, data %zu tokens (%zu train)\n",
		gpu_model_num_params(m), a->opts.backend == GPU_BACKEND_CUDA ? "cuda" : "cpu",
		d.n_tokens, d.n_train);

	struct stat st;
	int new_log = stat(log_path, &st) < 0;

	log = fopen(log_path, "ae");
	samples = fopen(sample_path, "ae");
	if (!log || !samples) {
		r = -errno;
		what = "opening the outputs";
		goto out;
	}
	if (new_log)
		fputs("step\ttrain_loss\tval_loss\tlr\ttokens_per_s\tms_per_step\n", log);

	double t_start = clock_mono_s();

	for (long step = start; step <= a->steps; step++) {
		float lr = gpu_lr_schedule(step - 1, a->warmup, a->steps, a->lr, a->min_lr);
		float loss, norm, val = NAN;
		double t0 = clock_mono_s(), dt;
		char valbuf[32] = "-";

		/* The batch is a function of (seed, step): a resumed run sees the same data. */
		what = "training";
		if ((r = gpu_data_batch(&d, GPU_SPLIT_TRAIN, meta.seed, (uint64_t)step - 1, B, T,
					inp, tgt)) < 0 ||
		    (r = gpu_model_forward(m, inp, tgt, B, T, &loss)) < 0 ||
		    (r = gpu_model_backward(m)) < 0 ||
		    (r = gpu_model_step(m, &a->adamw, lr, &norm)) < 0) {
			if (r == -ERANGE)
				fprintf(stderr, "llmfs-train: loss or gradient not finite at step %ld\n",
					step);
			goto out;
		}
		dt = clock_mono_s() - t0;
		int last = step == a->steps ||
			   (a->max_seconds > 0 && clock_mono_s() - t_start >= a->max_seconds);

		if (step % a->val_every == 0 || last) {
			what = "validating";
			r = eval_val(m, &d, a, inp, tgt, &val);
			if (r < 0)
				goto out;
			snprintf(valbuf, sizeof(valbuf), "%.9g", val);
		}
		/* %.9g round-trips a float: resumed and uninterrupted logs compare exactly */
		fprintf(log, "%ld\t%.9g\t%s\t%.9g\t%.1f\t%.2f\n", step, loss, valbuf, lr,
			B * T / dt, dt * 1e3);
		fflush(log);
		if (step % a->val_every == 0 || last || step == start)
			printf("step %ld: train %.4f val %s lr %.3g norm %.3f %.0f tok/s\n", step,
			       loss, valbuf, lr, norm, B * T / dt);
		if ((a->sample_every && step % a->sample_every == 0) || last) {
			what = "sampling";
			if ((r = write_sample(m, a, step, samples)) < 0)
				goto out;
		}
		if ((a->ckpt_every && step % a->ckpt_every == 0) || last) {
			what = "writing a checkpoint";
			if ((r = save_ckpt(m, a, step)) < 0)
				goto out;
		}
		if (last)
			break;
	}
	r = 0;
out:
	if (r < 0) {
		const char *detail = m ? gpu_model_error_detail(m) : "";

		fprintf(stderr, "llmfs-train: %s: %s%s%s%s\n", what, strerror(-r),
			*detail ? " (" : "", detail, *detail ? ")" : "");
	}
	if (log && fclose(log) != 0 && r == 0)
		r = -errno;
	if (samples)
		fclose(samples);
	gpu_model_free(m);
	gpu_data_release(&d);
	free(inp);
	free(tgt);
	free(tok_path);
	free(log_path);
	free(sample_path);
	return r;
}

int main(int argc, char **argv)
{
	struct train_args a;

	if (parse(argc, argv, &a) < 0) {
		usage(stderr);
		return 2;
	}
	return run(&a) < 0 ? 1 : 0;
}
