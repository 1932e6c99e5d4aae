/* gpu/train.h - one training run: its options, its loop and what it reports.
 *
 * Shared by llmfs-train (command-line options) and by the training jobs of the daemon (a job
 * file of key=value), so that the two never drift: one table of keys, one set of defaults, one
 * loop.  The key of an option is its long option name ("steps", "min-lr", ...); a job file holds
 * "key=value" words, any number per line, with "#" starting a comment.  The keys and defaults
 * are documented in docs/train.md and printed by gpu_train_usage().
 *
 * The loop (gpu_train_run()) reports through hooks and writes nothing itself: a row per step
 * (gpu_train_row_format() gives the metrics.tsv line both callers write), a sample at each
 * sample point, and a checkpoint request at each checkpoint step and at the end.  It stops
 * early, after a checkpoint, when the stop hook says so.  Batches are a function of (seed,
 * step), so a run resumed from a checkpoint computes exactly what the uninterrupted run does
 * on the CPU.
 *
 * Beside the loop: Hugging Face's trainer_state.json (gpu_train_state_json()), TensorBoard's
 * event file records (gpu_tfevents_*()), and the loss curves as SVG (gpu_train_svg()), all
 * built from rows.
 *
 * Errors: -errno; the parsers put a one-line reason into err (naming the key and the value).
 */
#ifndef GPU_TRAIN_H
#define GPU_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gpu/ckpt.h"
#include "gpu/gpt.h"

struct gpu_train_opts {
	char *data;             /* text file (byte-level tokens) or token file; owned */
	char *from;             /* weights to start from (a checkpoint or model folder): the
				 * optimizer starts fresh at step 0; NULL: random init; owned */
	struct gpu_config cfg;  /* n_ctx 0 until gpu_train_opts_finish(): = seq */
	struct gpu_opts opts;   /* backend, batch (max_batch), seq (max_seq), bf16, max-mem */
	struct gpu_adamw adamw;
	long steps, warmup, val_every, val_batches, ckpt_every, sample_every;
	int sample_len, top_k;
	float lr, min_lr, temperature;
	double val_fraction, max_seconds;
	uint64_t seed;
	int set_min_lr, set_warmup; /* given explicitly (else derived from lr, steps) */
};

/*
 * The table of keys (ends with a NULL name).  llmfs-train builds its getopt array from it (a
 * key of type GPU_TK_BOOL takes no argument there: "--bf16"; "bf16=1" in a job file).  Values:
 * numbers in C syntax, whole (strtol/strtoull, base 10) or real (strtof/strtod; no nan/inf),
 * within [min, max]; a string runs to the next blank, or is "quoted" (no escapes).
 */
enum gpu_train_key_type {
	GPU_TK_STR, GPU_TK_INT, GPU_TK_LONG, GPU_TK_U64, GPU_TK_FLOAT, GPU_TK_DOUBLE,
	GPU_TK_BOOL, GPU_TK_BACKEND, GPU_TK_MIB,
};
struct gpu_train_key {
	const char *name;       /* the key, and llmfs-train's long option */
	enum gpu_train_key_type type;
	size_t offset;          /* of the field in struct gpu_train_opts */
	double min, max;        /* numbers only; a U64 takes its whole range */
	const char *arg;        /* the value's name in usage ("N", "X", "FILE", ...) */
	const char *value;      /* the default as text, applied by gpu_train_opts_init(); NULL:
				 * none, or derived in gpu_train_opts_finish() */
	const char *def;        /* the default in words for usage when value is NULL */
	const char *help;
};
extern const struct gpu_train_key gpu_train_keys[];

/* The defaults (steps 1000, batch 8, seq 128, layers 4, heads 4, embd 128, vocab 256, ...),
 * from the table's values. */
void gpu_train_opts_init(struct gpu_train_opts *o);
void gpu_train_opts_release(struct gpu_train_opts *o);
/* Sets one key from its text; -EINVAL for an unknown key or a bad value (err says which). */
int gpu_train_opts_set(struct gpu_train_opts *o, const char *key, const char *value,
		       char *err, size_t errlen);
/* Applies a job file's text (key=value words, # comments); stops at the first error, err
 * then starting "line N: ".  A key given twice keeps the later value. */
int gpu_train_opts_parse(struct gpu_train_opts *o, const char *text, size_t len,
			 char *err, size_t errlen);
/* Derived defaults (ctx = seq, min-lr = lr/10, warmup = steps/20) and the checks across keys
 * (steps >= 1, embd divisible by heads, ...); -EINVAL with err. */
int gpu_train_opts_finish(struct gpu_train_opts *o, char *err, size_t errlen);
/* The keys with their defaults, one per line ("  key=ARG   help [default]"), for usage
 * messages and docs. */
void gpu_train_usage(FILE *f);
/* Each key and its value after finish, "key=value" words on one line (no newline; strings
 * with blanks or "#" quoted, -EINVAL for one holding a quote): what a job ran with.  Parsing
 * it back gives the same options. */
int gpu_train_opts_format(const struct gpu_train_opts *o, char **ret);

/* One logged step. */
struct gpu_train_row {
	long step;
	float train_loss;
	float val_loss;        /* NAN when not evaluated at this step */
	float lr;
	float grad_norm;
	double tokens_per_s;
	double ms_per_step;
	uint64_t tokens_seen;  /* training tokens consumed up to and including this step */
};

/* The metrics.tsv header line and a row line, each ending in a newline.  Columns: step,
 * train_loss, val_loss ("-" when not evaluated), lr, tokens_per_s (%.1f), ms_per_step (%.2f),
 * grad_norm, tokens (tokens_seen); the losses, lr and grad_norm in %.9g, so they round-trip.
 * The first six columns are llmfs-train's loss.tsv of before.  gpu_train_row_format() returns
 * the line's length, or -ENOSPC when len is too small. */
extern const char gpu_train_tsv_header[];
int gpu_train_row_format(const struct gpu_train_row *r, char *buf, size_t len);
/* Parses a row line back (the inverse of gpu_train_row_format()); -EINVAL when malformed. */
int gpu_train_row_parse(const char *line, struct gpu_train_row *ret);

struct gpu_train_info {
	size_t n_params;
	size_t n_tokens, n_train;  /* tokens in the data, of which training */
	long start_step;           /* first step this run computes (1, or a checkpoint's + 1) */
	const char *backend;       /* "cpu" or "cuda" */
};

struct gpu_train_hooks {
	void *arg;
	/* Once the model and data are ready, before the first step.  May be NULL. */
	void (*started)(void *arg, const struct gpu_train_info *info);
	/* Each step's row; a negative return stops the run with that error. */
	int (*row)(void *arg, const struct gpu_train_row *r);
	/* Generated text at a sample point (bytes for a byte vocabulary, else token ids in
	 * decimal separated by spaces).  May be NULL. */
	int (*sample)(void *arg, long step, const char *text, size_t len);
	/* Save a checkpoint of m at step (meta for gpu_ckpt_save()); last is 1 for the final one.
	 * May be NULL. */
	int (*checkpoint)(void *arg, struct gpu_model *m, long step,
			  const struct gpu_ckpt_meta *meta, int last);
	/* Non-zero: checkpoint after this step and stop (asked after every step).  May be NULL. */
	int (*stop)(void *arg);
};

/* The token file for data: data itself when it is one, else dir/tokens.bin made from the
 * text (byte-level).  *ret is malloc'd. */
int gpu_train_data(const char *data, const char *dir, char **ret);

/*
 * Trains on the token file token_path (see gpu_data_tokenize()), from resume (a checkpoint
 * folder with optimizer state: its step, seed and moments) when not NULL, else from o->from's
 * weights or a random init.  0 when the last step or a stop was reached; else -errno with
 * *ret_what naming what failed ("loading the checkpoint", "training", ...) and detail (may be
 * NULL) the backend's own words, or the reason (the step whose loss was not finite; the
 * shapes of a from= model that does not match: *ret_what is then "from: shapes do not
 * match", -EINVAL).  from= loads the weights of a checkpoint or model folder (config.json and
 * model.safetensors; optimizer state there is ignored).  resume wins over from=.
 *
 * A stop (the stop hook) checkpoints the step with last 0, without the final validation and
 * sample: the run resumed from that checkpoint logs what the uninterrupted run logs.
 */
int gpu_train_run(const struct gpu_train_opts *o, const char *token_path, const char *resume,
		  const struct gpu_train_hooks *h, const char **ret_what, char *detail,
		  size_t detail_len);

/*
 * Co-training (scheduler/mining_*.c).  gpu_train_window() runs the optimizer steps
 * [step0 + 1, step0 + steps] of o's schedule (lr by gpu_lr_schedule() over o->steps) from m's
 * current weights with a fresh AdamW state, on d's training split, batch of step s being
 * gpu_data_batch(d, GPU_SPLIT_TRAIN, seed, s - 1): on the CPU a pure function of (weights, d,
 * o, seed, step0, steps) for a fixed thread count, so that a window can be replayed.
 * *ret_loss (may be NULL): the mean training loss of its steps.  gpu_train_eval(): the mean
 * loss of o->val_batches validation batches of d drawn with seed.  d may be a view built in
 * memory (map NULL).
 */
struct gpu_data;
int gpu_train_window(struct gpu_model *m, const struct gpu_data *d, const struct gpu_train_opts *o,
		     uint64_t seed, long step0, long steps, double *ret_loss);
int gpu_train_eval(struct gpu_model *m, const struct gpu_data *d, const struct gpu_train_opts *o,
		   uint64_t seed, float *ret);

/*
 * Hugging Face's trainer_state.json for rows[0..n) of a run with options o (info may be NULL:
 * then no epoch, no num_train_epochs): global_step,
 * max_steps, log_history (loss, learning_rate, grad_norm per step; eval_loss where
 * evaluated), best_metric and best_model_checkpoint (the lowest eval_loss, among checkpoints
 * named ckpt_prefix + step when ckpt_prefix is not NULL), num_input_tokens_seen, total_flos
 * (gpu_flops_per_token() x tokens), train_batch_size, eval_steps, save_steps.  Training
 * entries of log_history also hold num_input_tokens_seen, tokens_per_s and ms_per_step, so
 * that gpu_train_state_rows() gives the rows back exactly.  NULL when out of memory.
 */
char *gpu_train_state_json(const struct gpu_train_opts *o, const struct gpu_train_info *info,
			   const struct gpu_train_row *rows, size_t n, const char *ckpt_prefix);
/* Reads rows back from a trainer_state.json (for a run resumed from a checkpoint); *ret is
 * malloc'd; -EINVAL when malformed. */
int gpu_train_state_rows(const char *json, size_t len, struct gpu_train_row **ret, size_t *ret_n);

/*
 * TensorBoard event files: records of (u64 length, masked CRC-32C of the length, data, masked
 * CRC-32C of the data), each data an Event protobuf.  The first record holds file_version
 * "brain.Event:2"; each row gives scalars train/loss, train/learning_rate, tokens_per_s and,
 * where evaluated, eval/loss, at its step.  Bytes are appended to *buf (realloc'd).
 */
int gpu_tfevents_header(double wall_time, char **buf, size_t *len);
int gpu_tfevents_row(const struct gpu_train_row *r, double wall_time, char **buf, size_t *len);
uint32_t gpu_crc32c(const void *data, size_t len);

/* The loss curves (train, and validation where evaluated) against step, as an SVG picture
 * (title may be NULL); malloc'd, NULL when out of memory. */
char *gpu_train_svg(const struct gpu_train_row *rows, size_t n, const char *title);

#endif
