/*
 * train_child: the process of one training job (train_job.h), run as the job's owner.
 *
 * It reads the job file on stdin, finds its data and its checkpoints under the mounted tree,
 * trains with gpu/train.h and reports on stdout (the records are listed in train_job.c).
 * Everything it reads and writes goes through the tree with its owner's rights:
 *   models/<job>/checkpoint-<step>/   config.json, model.safetensors, optimizer.safetensors,
 *                                     trainer_state.json (gpu_ckpt_save(): whole or absent)
 *   models/<job>/                     config.json, model.safetensors, trainer_state.json of
 *                                     the last step, copied from its checkpoint
 * SIGUSR1 asks it to checkpoint after the step in progress and stop.
 */
#include "train_job.h"
#include "tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/data.h"
#include "gpu/train.h"

static volatile sig_atomic_t stop_asked;

static void on_stop(int sig)
{
	(void)sig;
	stop_asked = 1;
}

struct child {
	const char *job;
	char *model_dir;          /* tree/models/<job> */
	const struct gpu_train_opts *o;
	struct gpu_train_info info; /* from the started hook */
	int have_info;
	struct gpu_train_row *rows; /* every row of the job: the checkpoint's, then this run's */
	size_t n_rows, cap_rows;
	long last_step;
	char what[256];           /* a failing checkpoint, for the error record */
	int ckpt_failed;
};

static void put_record(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void put_record(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static char *join(const char *a, const char *b)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

static int copy_file(const char *from, const char *to)
{
	char buf[1 << 16], *tmp = NULL;
	ssize_t n = 0;
	int in, out, r = 0;

	if (asprintf(&tmp, "%s.tmp", to) < 0)
		return -ENOMEM;
	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		free(tmp);
		return -errno;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		r = -errno;
	while (r == 0 && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			r = -errno;
	if (r == 0 && n < 0)
		r = -errno;
	if (out >= 0) {
		if (r == 0 && fsync(out) < 0)
			r = -errno;
		if (close(out) < 0 && r == 0)
			r = -errno;
	}
	close(in);
	if (r == 0 && rename(tmp, to) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}

/* The highest checkpoint-<step> of the job with optimizer state, or 0. */
static long last_checkpoint(const char *model_dir)
{
	DIR *d = opendir(model_dir);
	struct dirent *de;
	long best = 0;

	while (d && (de = readdir(d))) {
		char *end, *p, *opt;
		long s;

		if (strncmp(de->d_name, "checkpoint-", 11))
			continue;
		s = strtol(de->d_name + 11, &end, 10);
		if (*end || s <= best)
			continue;
		p = join(model_dir, de->d_name);
		opt = p ? join(p, "optimizer.safetensors") : NULL;
		if (opt && access(opt, R_OK) == 0)
			best = s;
		free(opt);
		free(p);
	}
	if (d)
		closedir(d);
	return best;
}

static int push_row(struct child *c, const struct gpu_train_row *r)
{
	if (c->n_rows == c->cap_rows) {
		size_t cap = c->cap_rows ? 2 * c->cap_rows : 256;
		struct gpu_train_row *v = realloc(c->rows, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->rows = v;
		c->cap_rows = cap;
	}
	c->rows[c->n_rows++] = *r;
	return 0;
}

static void on_started(void *arg, const struct gpu_train_info *info)
{
	struct child *c = arg;

	c->info = *info;
	c->info.backend = NULL; /* not kept: only the counts are used */
	c->have_info = 1;
	put_record("started\t%zu parameters, %s backend, data %zu tokens (%zu to train), from "
		   "step %ld\n", info->n_params, info->backend, info->n_tokens, info->n_train,
		   info->start_step);
}

static int on_row(void *arg, const struct gpu_train_row *r)
{
	struct child *c = arg;
	char line[512];
	int n = gpu_train_row_format(r, line, sizeof(line));

	if (n < 0)
		return n;
	c->last_step = r->step;
	put_record("row\t%s", line);
	return push_row(c, r);
}

static int on_sample(void *arg, long step, const char *text, size_t len)
{
	(void)arg;
	printf("sample\t%ld\t%zu\n", step, len);
	fwrite(text, 1, len, stdout);
	put_record("\n");
	return 0;
}

static int write_state(struct child *c, const char *dir)
{
	char *prefix = NULL, *json, *p;
	int r;

	if (asprintf(&prefix, "models/%s/checkpoint-", c->job) < 0)
		return -ENOMEM;
	json = gpu_train_state_json(c->o, c->have_info ? &c->info : NULL, c->rows, c->n_rows,
				    prefix);
	free(prefix);
	p = join(dir, "trainer_state.json");
	r = json && p ? gpu_write_file_atomic(p, json, strlen(json)) : -ENOMEM;
	free(json);
	free(p);
	return r;
}

/* checkpoint-<step>/, then at the end the model itself in models/<job>/. */
static int on_checkpoint(void *arg, struct gpu_model *m, long step,
			 const struct gpu_ckpt_meta *meta, int last)
{
	static const char *const final_files[] = { "config.json", "model.safetensors",
						   "trainer_state.json" };
	struct child *c = arg;
	char name[48], *dir, *tmp = NULL;
	int r;

	snprintf(name, sizeof(name), "checkpoint-%ld", step);
	snprintf(c->what, sizeof(c->what), "writing models/%s/%s", c->job, name);
	dir = join(c->model_dir, name);
	if (!dir || asprintf(&tmp, "%s.tmp", dir) < 0) {
		free(dir);
		return -ENOMEM;
	}
	/* trainer_state.json first, in the folder gpu_ckpt_save() renames into place. */
	r = mkdir(tmp, 0755) < 0 && errno != EEXIST ? -errno : 0;
	if (r == 0)
		r = write_state(c, tmp);
	if (r == 0)
		r = gpu_ckpt_save(m, dir, meta);
	if (r < 0) {
		/* What a full disk left half written goes; earlier checkpoints stay. */
		DIR *d = opendir(tmp);
		struct dirent *de;

		while (d && (de = readdir(d))) {
			char *p = join(tmp, de->d_name);

			if (p && de->d_name[0] != '.')
				unlink(p);
			free(p);
		}
		if (d)
			closedir(d);
		rmdir(tmp);
		c->ckpt_failed = 1;
		goto out;
	}
	put_record("ckpt\t%ld\n", step);
	if (!last)
		goto out;
	snprintf(c->what, sizeof(c->what), "writing the model to models/%s", c->job);
	for (size_t i = 0; r == 0 && i < 3; i++) {
		char *from = join(dir, final_files[i]), *to = join(c->model_dir, final_files[i]);

		r = from && to ? copy_file(from, to) : -ENOMEM;
		free(from);
		free(to);
	}
	c->ckpt_failed = r < 0;
out:
	free(tmp);
	free(dir);
	return r;
}

static int on_stop_asked(void *arg)
{
	(void)arg;
	return stop_asked;
}

static int read_all(int fd, char **ret, size_t *ret_len)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap) {
			char *nb = cap < (1u << 20) ? realloc(buf, cap * 2) : NULL;

			if (!nb) {
				free(buf);
				return -EFBIG;
			}
			buf = nb;
			cap *= 2;
		}
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* Reads rows of the checkpoint the run goes on from, for the trainer_state.json it writes. */
static void load_rows(struct child *c, const char *ckpt)
{
	char *p = join(ckpt, "trainer_state.json"), *text = NULL;
	struct gpu_train_row *rows = NULL;
	size_t n = 0, len = 0;
	int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;

	free(p);
	if (fd < 0)
		return;
	if (read_all(fd, &text, &len) == 0 && gpu_train_state_rows(text, len, &rows, &n) == 0) {
		free(c->rows);
		c->rows = rows;
		c->n_rows = c->cap_rows = n;
	}
	free(text);
	close(fd);
}

int train_child_main(int argc, char **argv)
{
	struct gpu_train_opts o;
	struct child c = { 0 };
	struct gpu_train_hooks h = { &c, on_started, on_row, on_sample, on_checkpoint,
				     on_stop_asked };
	struct sigaction sa = { .sa_handler = on_stop };
	char err[256] = "", detail[256] = "", tmpdir[] = "/tmp/llmfs-train-XXXXXX";
	char *text = NULL, *data = NULL, *resume = NULL, *tokens = NULL, *from = NULL;
	const char *what = "setup";
	struct stat st;
	size_t len = 0;
	long ck;
	int r, made_tmp = 0;

	if (argc != 4)
		return 2;
	sigaction(SIGUSR1, &sa, NULL);
	gpu_train_opts_init(&o);
	c.job = argv[3];
	c.o = &o;
	r = read_all(0, &text, &len);
	if (r == 0)
		r = gpu_train_opts_parse(&o, text, len, err, sizeof(err));
	if (r == 0)
		r = gpu_train_opts_finish(&o, err, sizeof(err));
	if (r < 0) {
		put_record("error\t%s\n", err[0] ? err : strerror(-r));
		goto out;
	}
	/* A daemon resumes jobs as it starts, before its tree is mounted. */
	r = tree_wait(argv[2]);
	if (r < 0) {
		put_record("error\tthe tree at %s is not mounted\n", argv[2]);
		goto out;
	}
	r = tree_path(argv[2], o.data, &data);
	if (r < 0) {
		snprintf(err, sizeof(err), "data %s: not a path in the tree (like "
			 "models/<model>/<file>)", o.data ? o.data : "");
		put_record("error\t%s\n", err);
		goto out;
	}
	if (stat(data, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		r = stat(data, &st) < 0 ? -errno : -EINVAL;
		put_record("error\tdata %s: %s\n", o.data, r == -EINVAL ?
			   (S_ISREG(st.st_mode) ? "the file is empty" : "not a file") :
			   strerror(-r));
		goto out;
	}
	if (o.from) {
		r = tree_path(argv[2], o.from, &from);
		if (r < 0) {
			put_record("error\tfrom %s: not a path in the tree (like models/<model>)\n",
				   o.from);
			goto out;
		}
		free(o.from);
		o.from = from;
		from = NULL;
	}
	c.model_dir = join(argv[2], "models");
	if (c.model_dir) {
		char *m = join(c.model_dir, c.job);

		free(c.model_dir);
		c.model_dir = m;
	}
	if (!c.model_dir) {
		r = -ENOMEM;
		goto fail;
	}
	if (mkdir(c.model_dir, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		what = "making its model folder";
		goto fail;
	}
	ck = last_checkpoint(c.model_dir);
	if (ck > 0) {
		char name[48];

		snprintf(name, sizeof(name), "checkpoint-%ld", ck);
		resume = join(c.model_dir, name);
		if (!resume) {
			r = -ENOMEM;
			goto fail;
		}
		load_rows(&c, resume);
		while (c.n_rows && c.rows[c.n_rows - 1].step > ck)
			c.n_rows--;
	}
	/* What an earlier run of the job reported past this point is computed again. */
	put_record("resumed\t%ld\n", ck);
	/* A text file is tokenised into a private folder, gone at the end. */
	if (!mkdtemp(tmpdir)) {
		r = -errno;
		what = "making a folder for the tokens";
		goto fail;
	}
	made_tmp = 1;
	r = gpu_train_data(data, tmpdir, &tokens);
	if (r < 0) {
		what = "reading the data";
		goto fail;
	}
	r = gpu_train_run(&o, tokens, resume, &h, &what, detail, sizeof(detail));
	if (r == 0) {
		put_record("%s\t%ld\n", stop_asked && c.last_step < o.steps ? "stopped" : "done",
			   c.last_step);
		goto out;
	}
fail:
	put_record("error\t%s: %s%s%s%s\n", c.ckpt_failed ? c.what : what, strerror(-r),
		   detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
out:
	if (tokens && made_tmp && !strncmp(tokens, tmpdir, strlen(tmpdir)))
		unlink(tokens);
	if (made_tmp)
		rmdir(tmpdir);
	gpu_train_opts_release(&o);
	free(text);
	free(data);
	free(from);
	free(resume);
	free(tokens);
	free(c.model_dir);
	free(c.rows);
	return r < 0 ? 1 : 0;
}
