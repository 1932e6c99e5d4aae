/*
 * tfevents_write.c - writes what a training job's folder shows, from a short run on a tiny
 * model, for test_tfevents.py to read with independent readers: DIR/metrics.tsv (the rows),
 * DIR/events.out.tfevents.0.llmfs (TensorBoard's records of the same rows), DIR/loss.svg and
 * DIR/trainer_state.json.
 * usage: tfevents_write DIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/data.h"
#include "gpu/train.h"

struct out {
	struct gpu_train_row rows[64];
	size_t n;
	FILE *tsv;
	char *ev;
	size_t ev_len;
};

static int on_row(void *arg, const struct gpu_train_row *r)
{
	struct out *o = arg;
	char line[256];
	int n = gpu_train_row_format(r, line, sizeof(line));

	if (n < 0 || o->n == 64)
		return -ENOSPC;
	o->rows[o->n++] = *r;
	fputs(line, o->tsv);
	return gpu_tfevents_row(r, 1.7e9 + (double)r->step / 8, &o->ev, &o->ev_len);
}

static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return gpu_write_file_atomic(path, data, len);
}

int main(int argc, char **argv)
{
	static const char job[] = "data=text steps=12 batch=2 seq=16 layers=1 heads=2 embd=16 "
				  "val-every=4 val-batches=2 sample-len=4 seed=9 lr=3e-3\n";
	struct gpu_train_hooks h = { NULL, NULL, on_row, NULL, NULL, NULL };
	struct gpu_train_info info = { 0, 0, 0, 1, "cpu" };
	struct gpu_train_opts o;
	struct out *out = calloc(1, sizeof(*out));
	char path[512], err[256], detail[256], *tok = NULL, *svg, *state;
	const char *what = NULL;
	FILE *f;
	int r;

	if (argc != 2 || !out)
		return 2;
	snprintf(path, sizeof(path), "%s/text", argv[1]);
	f = fopen(path, "w");
	if (!f)
		return 1;
	for (int i = 0; i < 4000; i++)
		fputc("to be, or not to be: that is the question\n"[i % 43], f);
	fclose(f);
	gpu_train_opts_init(&o);
	if (gpu_train_opts_parse(&o, job, strlen(job), err, sizeof(err)) < 0 ||
	    gpu_train_opts_finish(&o, err, sizeof(err)) < 0) {
		fprintf(stderr, "tfevents_write: %s\n", err);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/metrics.tsv", argv[1]);
	out->tsv = fopen(path, "w");
	if (!out->tsv)
		return 1;
	snprintf(path, sizeof(path), "%s/text", argv[1]);
	if ((r = gpu_train_data(path, argv[1], &tok)) < 0)
		return 1;
	fputs(gpu_train_tsv_header, out->tsv);
	h.arg = out;
	if ((r = gpu_tfevents_header(1.7e9, &out->ev, &out->ev_len)) < 0 ||
	    (r = gpu_train_run(&o, tok, NULL, &h, &what, detail, sizeof(detail))) < 0) {
		fprintf(stderr, "tfevents_write: %s: %s %s\n", what ? what : "events",
			strerror(-r), detail);
		return 1;
	}
	fclose(out->tsv);
	svg = gpu_train_svg(out->rows, out->n, "tiny <run> & co");
	state = gpu_train_state_json(&o, &info, out->rows, out->n, "checkpoint-");
	if (!svg || !state || write_file(argv[1], "events.out.tfevents.0.llmfs", out->ev,
					  out->ev_len) < 0 ||
	    write_file(argv[1], "loss.svg", svg, strlen(svg)) < 0 ||
	    write_file(argv[1], "trainer_state.json", state, strlen(state)) < 0)
		return 1;
	free(svg);
	free(state);
	free(out->ev);
	free(out);
	free(tok);
	gpu_train_opts_release(&o);
	return 0;
}
