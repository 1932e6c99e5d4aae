/*
 * train_job: see train_job.h for the contract.
 *
 * The child reports on its stdout, one record a line, fields separated by tabs:
 *   started <parameters> <backend> <tokens> <train tokens> <first step>
 *   resumed <step>          it goes on from checkpoint-<step>: rows past it are cut
 *   row <metrics.tsv line>  one step (gpu_train_row_format())
 *   sample <step> <len>     followed by len bytes of text and a newline
 *   ckpt <step>             checkpoint-<step> is complete
 *   stopped <step>          a stop was asked: it checkpointed and ends
 *   done <step>             the last step and the final model are written
 *   error <reason>          what failed, in words; it ends
 * Its stderr goes to the job's log.  One thread (jobs_main()) starts the children, reads them
 * all with poll() and reaps them, so that the parent-death signal of every child follows the
 * one thread that lives as long as the table.
 */
#include "train_job.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpu/train.h"
#include "plan_util.h"
#include "common/clock.h"

#define NAME_MAX_LEN 128
#define JOB_TEXT_MAX (64u << 10)
#define RECORD_MAX (1u << 20) /* the longest record line, a sample included */
#define LOG_MAX (4u << 20)    /* a run's stderr kept in the job's log */

enum job_state { S_EMPTY, S_QUEUED, S_RUNNING, S_DONE, S_FAILED, S_STOPPED };

static const char *const state_word[] = {
	[S_EMPTY] = "empty", [S_QUEUED] = "queued", [S_RUNNING] = "running",
	[S_DONE] = "done", [S_FAILED] = "failed", [S_STOPPED] = "stopped",
};

static const char *const file_names[TRAIN_F_COUNT] = {
	[TRAIN_F_JOB] = "job", [TRAIN_F_STATUS] = "status", [TRAIN_F_CONTROL] = "control",
	[TRAIN_F_METRICS] = "metrics.tsv", [TRAIN_F_SAMPLES] = "samples.txt",
	[TRAIN_F_LOG] = "log", [TRAIN_F_STATE] = "trainer_state.json",
	[TRAIN_F_EVENTS] = NULL, [TRAIN_F_SVG] = "loss.svg", [TRAIN_F_RESULT] = "result",
};

struct job {
	struct job *next;
	char *name;
	char *dir;                /* state_dir/<name> */
	uid_t uid;
	gid_t gid;
	unsigned mode;
	enum job_state state;
	char *reason;             /* S_FAILED */
	char *text;               /* the job file */
	size_t text_len;
	long max_steps;
	struct gpu_train_opts opts; /* the job file's, once it parsed */
	int have_opts;
	unsigned long long gen;
	unsigned long long seq;   /* queue order */
	char *events;             /* the event file's name */
	struct gpu_train_row *rows;
	size_t n_rows, cap_rows;
	long *ckpts;              /* steps with a complete checkpoint */
	size_t n_ckpts;
	/* While a child runs. */
	pid_t pid;
	int out_fd, err_fd;
	char *in;                 /* unparsed stdout */
	size_t in_len, in_cap;
	int stop_asked, removing;
	long last_sample;         /* step of the last sample kept */
	size_t log_bytes;         /* stderr read in this run */
	int log_cut;
	int saw_done, saw_stopped;
	long run_first_step;
	double started;           /* monotonic, for the eta */
	double wall;              /* seconds trained, all runs */
};

struct train_jobs {
	struct train_jobs_config cfg;
	char *state_dir, *tree, *exe;
	pthread_mutex_t lock;
	struct job *jobs;
	unsigned running;
	unsigned long long next_seq;
	int wake[2];
	pthread_t thread;
	int have_thread;
	int closing;
};

/* ---- small helpers --------------------------------------------------------------------- */

int train_job_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > NAME_MAX_LEN || name[0] == '.' || name[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

static char *path_of(const struct job *jb, const char *file)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s", jb->dir, file) < 0 ? NULL : p;
}

/* Replaces file in the job's folder with data (temporary name, rename). */
static int put_file(const struct job *jb, const char *file, const void *data, size_t len)
{
	char *p = path_of(jb, file), *tmp = NULL;
	int fd, r = 0;

	if (!p || asprintf(&tmp, "%s.tmp", p) < 0) {
		free(p);
		return -ENOMEM;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		r = -errno;
	else {
		if (len && write(fd, data, len) != (ssize_t)len)
			r = errno ? -errno : -EIO;
		if (close(fd) < 0 && r == 0)
			r = -errno;
		if (r == 0 && rename(tmp, p) < 0)
			r = -errno;
		if (r < 0)
			unlink(tmp);
	}
	free(tmp);
	free(p);
	return r;
}

static int append_file(const struct job *jb, const char *file, const void *data, size_t len)
{
	char *p = path_of(jb, file);
	int fd, r = 0;

	if (!p)
		return -ENOMEM;
	fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(p);
	if (fd < 0)
		return -errno;
	if (len && write(fd, data, len) != (ssize_t)len)
		r = errno ? -errno : -EIO;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

/* The whole of a job file, NUL-terminated; -ENOENT when it is not there. */
static int get_file(const struct job *jb, const char *file, char **ret, size_t *ret_len)
{
	char *p = path_of(jb, file);
	struct plan_buf b;
	char buf[65536];
	ssize_t n;
	int fd, r = 0;

	if (!p)
		return -ENOMEM;
	fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(p);
	if (fd < 0)
		return -errno;
	plan_buf_init(&b);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if ((r = plan_buf_append(&b, buf, (size_t)n)) < 0)
			break;
	if (n < 0 && r == 0)
		r = -errno;
	close(fd);
	if (r < 0) {
		plan_buf_release(&b);
		return r;
	}
	if (ret_len)
		*ret_len = b.len;
	*ret = plan_buf_steal(&b);
	return *ret ? 0 : -ENOMEM;
}

static int has_file(const struct job *jb, const char *file)
{
	char *p = path_of(jb, file);
	struct stat st;
	int r = p && stat(p, &st) == 0;

	free(p);
	return r;
}

/* A line for the log, with the time. */
static void note(struct job *jb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct job *jb, const char *fmt, ...)
{
	char msg[1024], line[1100], when[32];
	time_t t = time(NULL);
	struct tm tm;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(line, sizeof(line), "llmfs: %s %s\n", when, msg);
	append_file(jb, "log", line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void changed(struct train_jobs *j, struct job *jb)
{
	jb->gen++;
	if (j->cfg.on_change)
		j->cfg.on_change(j->cfg.on_change_arg, jb->name);
}

static void wake(struct train_jobs *j)
{
	char c = 1;

	if (write(j->wake[1], &c, 1) < 0) {
		/* Full: the thread is awake already. */
	}
}

/* The job called name; one being removed is no longer anyone's. */
static struct job *find(struct train_jobs *j, const char *name)
{
	for (struct job *jb = j->jobs; jb; jb = jb->next)
		if (!jb->removing && !strcmp(jb->name, name))
			return jb;
	return NULL;
}

/* Writes the state file: the word, and the reason of a failure. */
static void save_state(struct job *jb)
{
	char *s = NULL;
	int n;

	if (jb->state == S_FAILED)
		n = asprintf(&s, "failed: %s\n", jb->reason ? jb->reason : "unknown");
	else
		n = asprintf(&s, "%s\n", state_word[jb->state]);
	if (n >= 0)
		put_file(jb, "state", s, (size_t)n);
	free(s);
}

static void set_state(struct train_jobs *j, struct job *jb, enum job_state st,
		      const char *reason)
{
	jb->state = st;
	free(jb->reason);
	jb->reason = reason ? strdup(reason) : NULL;
	save_state(jb);
	changed(j, jb);
}

static void unlink_result(struct job *jb)
{
	char *p = path_of(jb, "result");

	if (p)
		unlink(p);
	free(p);
}

static void job_free(struct job *jb)
{
	if (!jb)
		return;
	if (jb->out_fd >= 0)
		close(jb->out_fd);
	if (jb->err_fd >= 0)
		close(jb->err_fd);
	free(jb->name);
	free(jb->dir);
	free(jb->reason);
	free(jb->text);
	free(jb->events);
	free(jb->rows);
	free(jb->ckpts);
	free(jb->in);
	if (jb->have_opts)
		gpu_train_opts_release(&jb->opts);
	free(jb);
}

static struct job *job_new(struct train_jobs *j, const char *name)
{
	struct job *jb = calloc(1, sizeof(*jb));

	if (!jb)
		return NULL;
	jb->out_fd = jb->err_fd = -1;
	jb->name = strdup(name);
	if (!jb->name || asprintf(&jb->dir, "%s/%s", j->state_dir, name) < 0) {
		jb->dir = NULL;
		job_free(jb);
		return NULL;
	}
	return jb;
}

/* ---- rows, samples and events ----------------------------------------------------------- */

static int rows_push(struct job *jb, const struct gpu_train_row *r)
{
	if (jb->n_rows == jb->cap_rows) {
		size_t cap = jb->cap_rows ? 2 * jb->cap_rows : 256;
		struct gpu_train_row *v = realloc(jb->rows, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		jb->rows = v;
		jb->cap_rows = cap;
	}
	jb->rows[jb->n_rows++] = *r;
	return 0;
}

/* Rows from metrics.tsv (header first). */
static int load_rows(struct job *jb)
{
	char *text = NULL, *line, *save = NULL;
	int r = get_file(jb, "metrics.tsv", &text, NULL);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct gpu_train_row row;

		if (gpu_train_row_parse(line, &row) == 0 &&
		    (!jb->n_rows || row.step > jb->rows[jb->n_rows - 1].step))
			if ((r = rows_push(jb, &row)) < 0)
				break;
	}
	free(text);
	return r < 0 ? r : 0;
}

static int write_metrics(struct job *jb)
{
	struct plan_buf b;
	char line[512];
	int r;

	plan_buf_init(&b);
	r = plan_buf_append(&b, gpu_train_tsv_header, strlen(gpu_train_tsv_header));
	for (size_t i = 0; r == 0 && i < jb->n_rows; i++) {
		int n = gpu_train_row_format(&jb->rows[i], line, sizeof(line));

		r = n < 0 ? n : plan_buf_append(&b, line, (size_t)n);
	}
	if (r == 0)
		r = put_file(jb, "metrics.tsv", b.data, b.len);
	plan_buf_release(&b);
	return r;
}

static int write_events(struct job *jb)
{
	char *buf = NULL;
	size_t len = 0;
	double t = (double)time(NULL);
	int r = gpu_tfevents_header(t, &buf, &len);

	for (size_t i = 0; r == 0 && i < jb->n_rows; i++)
		r = gpu_tfevents_row(&jb->rows[i], t, &buf, &len);
	if (r == 0)
		r = put_file(jb, jb->events, buf, len);
	free(buf);
	return r;
}

/* Keeps the sample blocks ("=== step N" and what follows) of steps up to step. */
static int cut_samples(struct job *jb, long step)
{
	char *text = NULL, *p, *keep_end;
	size_t len = 0;
	int r = get_file(jb, "samples.txt", &text, &len);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	keep_end = text;
	for (p = text; p && *p;) {
		long s;
		char *next = strstr(p + 1, "\n=== step ");

		if (sscanf(p, "=== step %ld", &s) == 1 && s > step)
			break;
		keep_end = next ? next + 1 : text + len;
		p = next ? next + 1 : NULL;
	}
	r = put_file(jb, "samples.txt", text, (size_t)(keep_end - text));
	free(text);
	return r;
}

/* The child goes on from checkpoint-<step>: what came after it is computed again. */
static void cut_after(struct job *jb, long step)
{
	size_t n = 0;

	while (n < jb->n_rows && jb->rows[n].step <= step)
		n++;
	if (n != jb->n_rows) {
		jb->n_rows = n;
		write_metrics(jb);
		write_events(jb);
	}
	cut_samples(jb, step);
	jb->last_sample = step;
	if (jb->n_ckpts && jb->ckpts[jb->n_ckpts - 1] > step) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);

		while (jb->n_ckpts && jb->ckpts[jb->n_ckpts - 1] > step)
			jb->n_ckpts--;
		for (size_t i = 0; f && i < jb->n_ckpts; i++)
			fprintf(f, "%ld\n", jb->ckpts[i]);
		if (f && fclose(f) == 0)
			put_file(jb, "checkpoints", text, len);
		free(text);
	}
}

static void add_ckpt(struct job *jb, long step)
{
	long *v = realloc(jb->ckpts, (jb->n_ckpts + 1) * sizeof(*v));
	char line[32];
	int n;

	if (!v)
		return;
	jb->ckpts = v;
	jb->ckpts[jb->n_ckpts++] = step;
	n = snprintf(line, sizeof(line), "%ld\n", step);
	append_file(jb, "checkpoints", line, (size_t)n);
}

static void load_ckpts(struct job *jb)
{
	char *text = NULL, *p;

	if (get_file(jb, "checkpoints", &text, NULL) < 0)
		return;
	for (p = text; *p;) {
		char *end;
		long s = strtol(p, &end, 10);

		if (end == p)
			break;
		if (!jb->n_ckpts || s > jb->ckpts[jb->n_ckpts - 1])
			add_ckpt(jb, s);
		p = end + (*end == '\n');
	}
	free(text);
}

/* The result: what a script reads once the job ended. */
static char *result_json(const struct job *jb)
{
	json_t *o = json_object(), *ck = json_array();
	const struct gpu_train_row *last = jb->n_rows ? &jb->rows[jb->n_rows - 1] : NULL;
	double best = NAN, tok_s = 0;
	char *s, model[NAME_MAX_LEN + 16];

	for (size_t i = 0; i < jb->n_rows; i++)
		if (!isnan(jb->rows[i].val_loss) && (isnan(best) || jb->rows[i].val_loss < best))
			best = jb->rows[i].val_loss;
	for (size_t i = 0; i < jb->n_rows; i++)
		tok_s += jb->rows[i].tokens_per_s;
	snprintf(model, sizeof(model), "models/%s", jb->name);
	for (size_t i = 0; i < jb->n_ckpts; i++) {
		char c[NAME_MAX_LEN + 48];

		snprintf(c, sizeof(c), "models/%s/checkpoint-%ld", jb->name, jb->ckpts[i]);
		json_array_append_new(ck, json_string(c));
	}
	json_object_set_new(o, "job", json_string(jb->name));
	json_object_set_new(o, "state", json_string(state_word[jb->state]));
	if (jb->state == S_FAILED)
		json_object_set_new(o, "error", json_string(jb->reason ? jb->reason : ""));
	json_object_set_new(o, "model", jb->state == S_DONE ? json_string(model) : json_null());
	json_object_set_new(o, "steps", json_integer(last ? last->step : 0));
	json_object_set_new(o, "max_steps", json_integer(jb->max_steps));
	json_object_set_new(o, "train_loss", last ? json_real(last->train_loss) : json_null());
	json_object_set_new(o, "val_loss", last && !isnan(last->val_loss) ?
						   json_real(last->val_loss) : json_null());
	json_object_set_new(o, "best_val_loss", isnan(best) ? json_null() : json_real(best));
	json_object_set_new(o, "tokens", json_integer(last ? (json_int_t)last->tokens_seen : 0));
	json_object_set_new(o, "tokens_per_s", json_real(jb->n_rows ? tok_s / jb->n_rows : 0));
	json_object_set_new(o, "checkpoints", ck);
	s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/* ---- the state folder -------------------------------------------------------------------- */

static int save_owner(struct job *jb)
{
	char s[64];
	int n = snprintf(s, sizeof(s), "%u %u %o\n", (unsigned)jb->uid, (unsigned)jb->gid,
			 jb->mode & 07777);

	return put_file(jb, "owner", s, (size_t)n);
}

static int events_name(struct job *jb)
{
	char host[] = "llmfs";

	return asprintf(&jb->events, "events.out.tfevents.%lld.%s", (long long)time(NULL),
			host) < 0 ? -ENOMEM : 0;
}

/* Reads a job folder left by an earlier run of the daemon. */
static int load_job(struct train_jobs *j, const char *name, struct job **ret)
{
	struct job *jb = job_new(j, name);
	char *s = NULL;
	unsigned uid, gid, mode;
	DIR *d;
	struct dirent *de;
	int r;

	if (!jb)
		return -ENOMEM;
	r = get_file(jb, "owner", &s, NULL);
	if (r < 0 || sscanf(s, "%u %u %o", &uid, &gid, &mode) != 3) {
		r = r < 0 ? r : -EINVAL;
		goto fail;
	}
	free(s);
	s = NULL;
	jb->uid = uid;
	jb->gid = gid;
	jb->mode = mode;
	r = get_file(jb, "job", &jb->text, &jb->text_len);
	if (r < 0 && r != -ENOENT)
		goto fail;
	r = get_file(jb, "state", &s, NULL);
	if (r < 0)
		goto fail;
	s[strcspn(s, "\n")] = '\0';
	jb->state = S_EMPTY;
	for (int i = 0; i <= S_STOPPED; i++)
		if (!strcmp(s, state_word[i]))
			jb->state = (enum job_state)i;
	if (!strncmp(s, "failed: ", 8)) {
		jb->state = S_FAILED;
		jb->reason = strdup(s + 8);
	}
	d = opendir(jb->dir);
	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, "events.out.tfevents.", 20) && !jb->events)
			jb->events = strdup(de->d_name);
	if (d)
		closedir(d);
	if (!jb->events && events_name(jb) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	r = load_rows(jb);
	if (r < 0)
		goto fail;
	load_ckpts(jb);
	if (jb->text) {
		char err[256];

		gpu_train_opts_init(&jb->opts);
		jb->have_opts = 1;
		if (gpu_train_opts_parse(&jb->opts, jb->text, jb->text_len, err,
					 sizeof(err)) == 0 &&
		    gpu_train_opts_finish(&jb->opts, err, sizeof(err)) == 0)
			jb->max_steps = jb->opts.steps;
	}
	free(s);
	*ret = jb;
	return 0;
fail:
	free(s);
	job_free(jb);
	return r;
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		char *p = NULL;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0)
			unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* ---- children ------------------------------------------------------------------------------ */

static void queue(struct train_jobs *j, struct job *jb)
{
	jb->seq = ++j->next_seq;
	set_state(j, jb, S_QUEUED, NULL);
	wake(j);
}

/* Starts jb's child; the table lock is held. */
static int start(struct train_jobs *j, struct job *jb)
{
	struct plan_proc_user as = { jb->uid, jb->gid };
	char *argv[] = { j->exe, "--train-job", j->tree, jb->name, NULL };
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	int r = 0;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(err, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	r = plan_proc_spawn_as(&as, argv, in[0], out[1], err[1], &jb->pid);
	if (r < 0)
		goto out;
	/* The job file fits the pipe's buffer (JOB_TEXT_MAX): no wait. */
	fcntl(in[1], F_SETPIPE_SZ, JOB_TEXT_MAX + 4096);
	if (write(in[1], jb->text, jb->text_len) != (ssize_t)jb->text_len)
		note(jb, "could not hand the job file to the training process");
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	jb->out_fd = out[0];
	jb->err_fd = err[0];
	out[0] = err[0] = -1;
	jb->in_len = 0;
	jb->stop_asked = jb->saw_done = jb->saw_stopped = 0;
	jb->log_bytes = 0;
	jb->log_cut = 0;
	jb->started = clock_mono_s();
	jb->run_first_step = 0;
	j->running++;
	set_state(j, jb, S_RUNNING, NULL);
	note(jb, "training process %d started", (int)jb->pid);
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	return r;
}

static void start_queued(struct train_jobs *j)
{
	unsigned max = j->cfg.max_running ? j->cfg.max_running : 1;

	while (j->running < max && !j->closing) {
		struct job *best = NULL;
		int r;

		for (struct job *jb = j->jobs; jb; jb = jb->next)
			if (jb->state == S_QUEUED && (!best || jb->seq < best->seq))
				best = jb;
		if (!best)
			return;
		r = start(j, best);
		if (r < 0) {
			char why[128];

			snprintf(why, sizeof(why), "cannot start the training process: %s",
				 strerror(-r));
			set_state(j, best, S_FAILED, why);
		}
	}
}

/* One record of the child (line without its newline; a sample's text follows). */
static void record(struct train_jobs *j, struct job *jb, char *line, const char *text,
		   size_t text_len)
{
	char *arg = strchr(line, '\t');
	struct gpu_train_row row;
	long step;

	if (arg)
		*arg++ = '\0';
	else
		arg = line + strlen(line);
	if (!strcmp(line, "row") && gpu_train_row_parse(arg, &row) == 0) {
		char buf[512], *ev = NULL;
		size_t evl = 0;
		int n;

		/* The child computes only steps past its checkpoint, up to the job's last: the
		 * report of a process its owner may trace is bounded by what the job asked. */
		if ((jb->n_rows && row.step <= jb->rows[jb->n_rows - 1].step) ||
		    row.step < 1 || row.step > jb->max_steps)
			return;
		if (!jb->run_first_step)
			jb->run_first_step = row.step;
		rows_push(jb, &row);
		/* The job's first row: both files begin (a cut to no rows left their headers). */
		if (jb->n_rows == 1 && !has_file(jb, "metrics.tsv"))
			append_file(jb, "metrics.tsv", gpu_train_tsv_header,
				    strlen(gpu_train_tsv_header));
		if (jb->n_rows == 1 && !has_file(jb, jb->events))
			gpu_tfevents_header((double)time(NULL), &ev, &evl);
		n = gpu_train_row_format(&row, buf, sizeof(buf));
		if (n > 0)
			append_file(jb, "metrics.tsv", buf, (size_t)n);
		if (gpu_tfevents_row(&row, (double)time(NULL), &ev, &evl) == 0)
			append_file(jb, jb->events, ev, evl);
		free(ev);
		changed(j, jb);
	} else if (!strcmp(line, "sample") && sscanf(arg, "%ld", &step) == 1 &&
		   step > jb->last_sample && step <= jb->max_steps) {
		char head[64];
		int n = snprintf(head, sizeof(head), "=== step %ld\n", step);

		jb->last_sample = step;
		append_file(jb, "samples.txt", head, (size_t)n);
		append_file(jb, "samples.txt", text, text_len);
		append_file(jb, "samples.txt", "\n\n", 2);
		changed(j, jb);
	} else if (!strcmp(line, "resumed") && sscanf(arg, "%ld", &step) == 1) {
		if (step > 0)
			note(jb, "resumed from models/%s/checkpoint-%ld", jb->name, step);
		cut_after(jb, step);
		changed(j, jb);
	} else if (!strcmp(line, "started")) {
		note(jb, "started: %s", arg);
	} else if (!strcmp(line, "ckpt") && sscanf(arg, "%ld", &step) == 1) {
		add_ckpt(jb, step);
		note(jb, "checkpoint models/%s/checkpoint-%ld", jb->name, step);
	} else if (!strcmp(line, "stopped")) {
		jb->saw_stopped = 1;
	} else if (!strcmp(line, "done")) {
		jb->saw_done = 1;
	} else if (!strcmp(line, "error")) {
		free(jb->reason);
		jb->reason = strdup(arg);
	}
}

/* Takes whole records off the front of jb->in. */
static void parse_records(struct train_jobs *j, struct job *jb)
{
	size_t off = 0;

	for (;;) {
		char *start = jb->in + off, *nl;
		size_t avail = jb->in_len - off, line_len, text_len = 0;
		long step;
		unsigned long len;

		nl = memchr(start, '\n', avail);
		if (!nl)
			break;
		line_len = (size_t)(nl - start);
		if (line_len > 7 && !memcmp(start, "sample\t", 7)) {
			if (sscanf(start + 7, "%ld\t%lu", &step, &len) != 2 || len > RECORD_MAX)
				len = 0;
			text_len = (size_t)len;
			if (avail < line_len + 1 + text_len + 1)
				break; /* the text is not all here yet */
		}
		*nl = '\0';
		record(j, jb, start, nl + 1, text_len);
		off += line_len + 1 + (text_len ? text_len + 1 : 0);
	}
	memmove(jb->in, jb->in + off, jb->in_len - off);
	jb->in_len -= off;
	if (jb->in_len >= RECORD_MAX + 256) {
		/* A record that long is no record: the child is not ours to trust. */
		kill(jb->pid, SIGKILL);
		free(jb->reason);
		jb->reason = strdup("the training process wrote a malformed report");
		jb->in_len = 0;
	}
}

static void read_out(struct train_jobs *j, struct job *jb)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(jb->out_fd, buf, sizeof(buf))) > 0) {
		if (jb->in_len + (size_t)n > jb->in_cap) {
			size_t cap = jb->in_cap ? jb->in_cap : 65536;
			char *v;

			while (cap < jb->in_len + (size_t)n)
				cap *= 2;
			v = realloc(jb->in, cap);
			if (!v)
				return;
			jb->in = v;
			jb->in_cap = cap;
		}
		memcpy(jb->in + jb->in_len, buf, (size_t)n);
		jb->in_len += (size_t)n;
		parse_records(j, jb);
	}
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close(jb->out_fd);
		jb->out_fd = -1;
	}
}

static void read_err(struct job *jb)
{
	char buf[16384];
	ssize_t n;

	while ((n = read(jb->err_fd, buf, sizeof(buf))) > 0) {
		/* The daemon's disk is not the job's: its stderr is kept up to a bound. */
		if (jb->log_bytes < LOG_MAX)
			append_file(jb, "log", buf, (size_t)n);
		else if (!jb->log_cut)
			note(jb, "the rest of the training process's stderr (past %u bytes) "
			     "is not kept", LOG_MAX);
		jb->log_cut |= jb->log_bytes >= LOG_MAX;
		jb->log_bytes += (size_t)n;
	}
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close(jb->err_fd);
		jb->err_fd = -1;
	}
}

static void unlink_job(struct train_jobs *j, struct job *jb)
{
	struct job **pp;

	for (pp = &j->jobs; *pp; pp = &(*pp)->next)
		if (*pp == jb) {
			*pp = jb->next;
			break;
		}
}

/* The child has ended with status. */
static void finish(struct train_jobs *j, struct job *jb, int status)
{
	char why[160];
	char *res;

	j->running--;
	jb->pid = 0;
	jb->wall += clock_mono_s() - jb->started;
	if (jb->removing) {
		unlink_job(j, jb);
		rm_tree(jb->dir);
		changed(j, jb);
		job_free(jb);
		return;
	}
	if (j->closing) {
		note(jb, "the daemon stopped: the job goes on from its last checkpoint "
			 "when it starts again");
		return; /* the state file still says running */
	}
	if (jb->reason && WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		snprintf(why, sizeof(why), "%s", jb->reason);
		set_state(j, jb, S_FAILED, why);
	} else if (jb->saw_done && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		set_state(j, jb, S_DONE, NULL);
	} else if (jb->saw_stopped && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		set_state(j, jb, S_STOPPED, NULL);
	} else {
		if (jb->reason)
			snprintf(why, sizeof(why), "%s", jb->reason);
		else if (WIFSIGNALED(status))
			snprintf(why, sizeof(why), "the training process was killed by signal %d",
				 WTERMSIG(status));
		else
			snprintf(why, sizeof(why), "the training process exited with status %d",
				 WEXITSTATUS(status));
		set_state(j, jb, S_FAILED, why);
	}
	note(jb, "%s", jb->state == S_FAILED ? jb->reason : state_word[jb->state]);
	res = result_json(jb);
	if (res)
		put_file(jb, "result", res, strlen(res));
	free(res);
	changed(j, jb);
}

static void *jobs_main(void *arg)
{
	struct train_jobs *j = arg;

	pthread_mutex_lock(&j->lock);
	for (;;) {
		struct pollfd pf[1 + 2 * 64];
		struct job *who[1 + 2 * 64];
		nfds_t n = 1;
		int waiting = 0;
		char c[64];

		start_queued(j);
		pf[0] = (struct pollfd){ .fd = j->wake[0], .events = POLLIN };
		for (struct job *jb = j->jobs; jb; jb = jb->next) {
			if (!jb->pid)
				continue;
			if (jb->out_fd >= 0 && n < 129) {
				who[n] = jb;
				pf[n++] = (struct pollfd){ .fd = jb->out_fd, .events = POLLIN };
			}
			if (jb->err_fd >= 0 && n < 129) {
				who[n] = jb;
				pf[n++] = (struct pollfd){ .fd = jb->err_fd, .events = POLLIN };
			}
			if (jb->out_fd < 0 && jb->err_fd < 0)
				waiting = 1;
		}
		if (j->closing && !j->running)
			break;
		pthread_mutex_unlock(&j->lock);
		poll(pf, n, waiting ? 20 : -1);
		pthread_mutex_lock(&j->lock);
		if (pf[0].revents & POLLIN)
			while (read(j->wake[0], c, sizeof(c)) > 0)
				;
		for (nfds_t i = 1; i < n; i++) {
			if (!pf[i].revents || !who[i]->pid)
				continue;
			if (pf[i].fd == who[i]->out_fd)
				read_out(j, who[i]);
			else if (pf[i].fd == who[i]->err_fd)
				read_err(who[i]);
		}
		for (struct job *jb = j->jobs, *next; jb; jb = next) {
			int status;

			next = jb->next;
			if (!jb->pid || jb->out_fd >= 0 || jb->err_fd >= 0)
				continue;
			if (waitpid(jb->pid, &status, WNOHANG) == jb->pid)
				finish(j, jb, status);
		}
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* ---- the calls ----------------------------------------------------------------------------- */

int train_jobs_open(const struct train_jobs_config *cfg, struct train_jobs **ret,
		    char **ret_warnings)
{
	struct train_jobs *j;
	DIR *d;
	struct dirent *de;
	int r;

	if (ret_warnings)
		*ret_warnings = NULL;
	if (!cfg || !cfg->state_dir || !cfg->tree || !cfg->exe)
		return -EINVAL;
	if (mkdir(cfg->state_dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->cfg = *cfg;
	j->wake[0] = j->wake[1] = -1;
	pthread_mutex_init(&j->lock, NULL);
	j->state_dir = strdup(cfg->state_dir);
	j->tree = strdup(cfg->tree);
	j->exe = strdup(cfg->exe);
	if (!j->state_dir || !j->tree || !j->exe) {
		r = -ENOMEM;
		goto fail;
	}
	if (pipe2(j->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	d = opendir(j->state_dir);
	while (d && (de = readdir(d))) {
		struct job *jb = NULL;

		if (!train_job_name_valid(de->d_name))
			continue;
		r = load_job(j, de->d_name, &jb);
		if (r < 0) {
			if (ret_warnings) {
				char *w = *ret_warnings, *s = NULL;

				if (asprintf(&s, "%s%strain/%s: cannot read its state: %s",
					     w ? w : "", w ? "\n" : "", de->d_name,
					     strerror(-r)) >= 0) {
					free(w);
					*ret_warnings = s;
				}
			}
			continue;
		}
		jb->next = j->jobs;
		j->jobs = jb;
		if (jb->state == S_QUEUED || jb->state == S_RUNNING) {
			note(jb, "the daemon started: queued again, to go on from the last "
				 "checkpoint");
			jb->seq = ++j->next_seq;
			jb->state = S_QUEUED;
			save_state(jb);
		}
	}
	if (d)
		closedir(d);
	r = -pthread_create(&j->thread, NULL, jobs_main, j);
	if (r < 0)
		goto fail;
	j->have_thread = 1;
	*ret = j;
	return 0;
fail:
	train_jobs_close(j);
	return r;
}

void train_jobs_close(struct train_jobs *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&j->lock);
	j->closing = 1;
	for (struct job *jb = j->jobs; jb; jb = jb->next)
		if (jb->pid)
			kill(jb->pid, SIGKILL);
	pthread_mutex_unlock(&j->lock);
	if (j->have_thread) {
		wake(j);
		pthread_join(j->thread, NULL);
	}
	while (j->jobs) {
		struct job *jb = j->jobs;

		j->jobs = jb->next;
		job_free(jb);
	}
	if (j->wake[0] >= 0)
		close(j->wake[0]);
	if (j->wake[1] >= 0)
		close(j->wake[1]);
	pthread_mutex_destroy(&j->lock);
	free(j->state_dir);
	free(j->tree);
	free(j->exe);
	free(j);
}

int train_jobs_create(struct train_jobs *j, const char *name, const struct plan_proc_user *owner,
		      unsigned mode)
{
	struct job *jb;
	int r;

	if (!train_job_name_valid(name))
		return -EINVAL;
	pthread_mutex_lock(&j->lock);
	if (find(j, name)) {
		r = -EEXIST;
		goto out;
	}
	jb = job_new(j, name);
	if (!jb) {
		r = -ENOMEM;
		goto out;
	}
	jb->uid = owner->uid;
	jb->gid = owner->gid;
	jb->mode = mode & 07777;
	r = events_name(jb);
	if (r == 0 && mkdir(jb->dir, 0700) < 0)
		r = -errno;
	if (r == 0)
		r = save_owner(jb);
	if (r < 0) {
		rm_tree(jb->dir);
		job_free(jb);
		goto out;
	}
	save_state(jb);
	jb->next = j->jobs;
	j->jobs = jb;
	changed(j, jb);
out:
	pthread_mutex_unlock(&j->lock);
	return r;
}

int train_jobs_submit(struct train_jobs *j, const char *name, const char *text, size_t len)
{
	struct gpu_train_opts o;
	struct job *jb;
	char err[256] = "";
	int r, bad;

	gpu_train_opts_init(&o);
	bad = len > JOB_TEXT_MAX ? -EFBIG : gpu_train_opts_parse(&o, text, len, err, sizeof(err));
	if (bad == -EFBIG)
		snprintf(err, sizeof(err), "the job file is larger than %u bytes", JOB_TEXT_MAX);
	if (bad == 0)
		bad = gpu_train_opts_finish(&o, err, sizeof(err));
	if (bad == 0 && !o.data) {
		bad = -EINVAL;
		snprintf(err, sizeof(err), "no data= file: the text to train on");
	}
	pthread_mutex_lock(&j->lock);
	jb = find(j, name);
	if (!jb) {
		r = -ENOENT;
		goto out;
	}
	if (jb->text) {
		r = -EBUSY;
		goto out;
	}
	jb->text = malloc(len + 1);
	if (!jb->text) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(jb->text, text, len);
	jb->text[len] = '\0';
	jb->text_len = len;
	r = put_file(jb, "job", text, len);
	if (r < 0) {
		free(jb->text);
		jb->text = NULL;
		goto out;
	}
	jb->max_steps = o.steps;
	jb->opts = o;
	jb->have_opts = 1;
	gpu_train_opts_init(&o); /* moved into the job */
	if (bad < 0) {
		char *res;

		note(jb, "bad job file: %s", err);
		set_state(j, jb, S_FAILED, err);
		res = result_json(jb);
		if (res)
			put_file(jb, "result", res, strlen(res));
		free(res);
	} else {
		queue(j, jb);
	}
out:
	pthread_mutex_unlock(&j->lock);
	gpu_train_opts_release(&o);
	return r;
}

int train_jobs_control(struct train_jobs *j, const char *name, const char *text, size_t len)
{
	struct job *jb;
	char word[16] = "";
	size_t n = 0;
	int r = 0;

	while (n < len && n + 1 < sizeof(word) && text[n] != '\n' && text[n] != ' ')
		n++;
	memcpy(word, text, n);
	pthread_mutex_lock(&j->lock);
	jb = find(j, name);
	if (!jb) {
		r = -ENOENT;
	} else if (!strcmp(word, "stop")) {
		if (jb->state == S_RUNNING && !jb->stop_asked) {
			jb->stop_asked = 1;
			kill(jb->pid, SIGUSR1);
			note(jb, "stop asked: a checkpoint, then the job stops");
		} else if (jb->state == S_QUEUED) {
			set_state(j, jb, S_STOPPED, NULL);
		}
	} else if (!strcmp(word, "resume")) {
		if (jb->state == S_STOPPED || jb->state == S_FAILED) {
			if (!jb->text)
				r = -EINVAL;
			else {
				note(jb, "resume asked");
				unlink_result(jb);
				queue(j, jb);
			}
		}
	} else {
		r = -EINVAL;
	}
	pthread_mutex_unlock(&j->lock);
	return r;
}

int train_jobs_remove(struct train_jobs *j, const char *name)
{
	struct job *jb;
	int r = 0;

	pthread_mutex_lock(&j->lock);
	jb = find(j, name);
	if (!jb) {
		r = -ENOENT;
	} else if (jb->pid) {
		/* Gone for every call now; the job thread frees it once the child is reaped. */
		jb->removing = 1;
		kill(jb->pid, SIGKILL);
		rm_tree(jb->dir);
		changed(j, jb);
	} else {
		unlink_job(j, jb);
		rm_tree(jb->dir);
		changed(j, jb);
		job_free(jb);
	}
	pthread_mutex_unlock(&j->lock);
	return r;
}

int train_jobs_info(struct train_jobs *j, const char *name, struct train_job_info *ret)
{
	struct job *jb;
	int r = 0;

	pthread_mutex_lock(&j->lock);
	jb = find(j, name);
	if (!jb) {
		r = -ENOENT;
	} else {
		ret->uid = jb->uid;
		ret->gid = jb->gid;
		ret->mode = jb->mode;
		ret->has_job = jb->text != NULL;
		ret->ended = jb->state == S_DONE || jb->state == S_FAILED ||
			     jb->state == S_STOPPED;
		ret->gen = jb->gen;
	}
	pthread_mutex_unlock(&j->lock);
	return r;
}

int train_jobs_names(struct train_jobs *j, char ***ret_names, size_t *ret_n)
{
	char **v = NULL;
	size_t n = 0;
	int r = 0;

	pthread_mutex_lock(&j->lock);
	for (struct job *jb = j->jobs; jb && r == 0; jb = jb->next) {
		char **nv;

		if (jb->removing)
			continue;
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv || !(nv[n] = strdup(jb->name))) {
			v = nv ? nv : v;
			r = -ENOMEM;
			break;
		}
		v = nv;
		n++;
	}
	pthread_mutex_unlock(&j->lock);
	if (r < 0) {
		train_jobs_names_free(v, n);
		return r;
	}
	*ret_names = v;
	*ret_n = n;
	return 0;
}

void train_jobs_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int train_jobs_file_name(struct train_jobs *j, const char *name, enum train_file f, char **ret)
{
	struct job *jb;
	int r = 0;

	if ((unsigned)f >= TRAIN_F_COUNT)
		return -EINVAL;
	pthread_mutex_lock(&j->lock);
	jb = find(j, name);
	if (!jb)
		r = -ENOENT;
	else
		*ret = strdup(f == TRAIN_F_EVENTS ? jb->events : file_names[f]);
	pthread_mutex_unlock(&j->lock);
	return r < 0 ? r : *ret ? 0 : -ENOMEM;
}

int train_jobs_file_lookup(struct train_jobs *j, const char *name, const char *file)
{
	struct job *jb;
	int r = -ENOENT;

	pthread_mutex_lock(&j->lock);
	jb = find(j, name);
	for (int f = 0; jb && f < TRAIN_F_COUNT; f++)
		if (!strcmp(file, f == TRAIN_F_EVENTS ? jb->events : file_names[f]))
			r = f;
	pthread_mutex_unlock(&j->lock);
	return r;
}

/* "4m", "35s", "2h10m". */
static void format_eta(double s, char *buf, size_t len)
{
	long t = (long)(s + 0.5);

	if (t < 60)
		snprintf(buf, len, "%lds", t);
	else if (t < 3600)
		snprintf(buf, len, "%ldm", (t + 30) / 60);
	else
		snprintf(buf, len, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
}

static char *status_text(const struct job *jb)
{
	long step = jb->n_rows ? jb->rows[jb->n_rows - 1].step : 0;
	char *s = NULL;
	int n;

	switch (jb->state) {
	case S_EMPTY:
		n = asprintf(&s, "empty: write a job file\n");
		break;
	case S_QUEUED:
		n = asprintf(&s, "queued\n");
		break;
	case S_RUNNING: {
		double ms = 0;
		size_t k = 0;
		char eta[32] = "";

		for (size_t i = jb->n_rows; i > 0 && k < 50; i--) {
			if (jb->rows[i - 1].step < jb->run_first_step || !jb->run_first_step)
				break;
			ms += jb->rows[i - 1].ms_per_step;
			k++;
		}
		if (k)
			format_eta(ms / k * (double)(jb->max_steps - step) / 1e3, eta, sizeof(eta));
		n = asprintf(&s, "running %ld/%ld%s%s%s\n", step, jb->max_steps,
			     k ? ", eta " : "", eta, jb->stop_asked ? ", stopping" : "");
		break;
	}
	case S_DONE:
		n = asprintf(&s, "done\n");
		break;
	case S_STOPPED:
		n = asprintf(&s, "stopped at %ld/%ld\n", step, jb->max_steps);
		break;
	default:
		n = asprintf(&s, "failed: %s\n", jb->reason ? jb->reason : "unknown");
		break;
	}
	return n < 0 ? NULL : s;
}

int train_jobs_read(struct train_jobs *j, const char *name, enum train_file f, char **ret,
		    size_t *ret_len)
{
	struct job *jb;
	char *s = NULL, prefix[NAME_MAX_LEN + 32];
	int r = 0;

	if ((unsigned)f >= TRAIN_F_COUNT)
		return -EINVAL;
	pthread_mutex_lock(&j->lock);
	jb = find(j, name);
	if (!jb) {
		r = -ENOENT;
		goto out;
	}
	switch (f) {
	case TRAIN_F_STATUS:
		s = status_text(jb);
		break;
	case TRAIN_F_CONTROL:
		s = strdup("");
		break;
	case TRAIN_F_STATE:
		snprintf(prefix, sizeof(prefix), "models/%s/checkpoint-", jb->name);
		s = jb->have_opts ? gpu_train_state_json(&jb->opts, NULL, jb->rows, jb->n_rows, prefix)
				  : strdup("{}");
		break;
	case TRAIN_F_SVG:
		s = gpu_train_svg(jb->rows, jb->n_rows, jb->name);
		break;
	case TRAIN_F_JOB:
		s = jb->text ? strdup(jb->text) : strdup("");
		break;
	case TRAIN_F_RESULT:
		if (jb->state != S_DONE && jb->state != S_FAILED && jb->state != S_STOPPED) {
			r = -EAGAIN;
			goto out;
		}
		/* fall through */
	default:
		r = get_file(jb, f == TRAIN_F_EVENTS ? jb->events : file_names[f], &s, ret_len);
		if (r == -ENOENT)
			s = strdup(""), r = 0;
		if (r < 0)
			goto out;
		if (f != TRAIN_F_EVENTS)
			*ret_len = strlen(s);
		goto done;
	}
	if (s)
		*ret_len = strlen(s);
done:
	if (!s)
		r = -ENOMEM;
	*ret = s;
out:
	pthread_mutex_unlock(&j->lock);
	return r;
}
