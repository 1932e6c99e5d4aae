/*
 * llmfs-paths: drives the planning engine from a shell, without the FUSE
 * tree — the same library calls /llm/paths makes.
 *
 *   llmfs-paths --models DIR [--db FILE] [--planner MODEL] run TASKFILE
 *       plans and runs one task; the answer goes to stdout, the status
 *       line to stderr; --plan FILE, --candidates FILE and --trace FILE
 *       keep those documents; --feedback Q records a quality afterwards.
 *   llmfs-paths --models DIR [--db FILE] stats
 *   llmfs-paths --models DIR models
 *
 * Exit status: 0 done, 1 the task failed, 2 usage or setup errors.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "scheduler/plan_engine.h"
#include "scheduler/plan_task.h"

static int save(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	size_t cap = PLAN_TASK_MAX_BYTES + 2, n;
	char *buf;

	if (!f) {
		perror(path);
		return NULL;
	}
	buf = malloc(cap);
	n = buf ? fread(buf, 1, cap, f) : 0;
	/* A folder opens, but reads as an error (EISDIR), not as empty. */
	if (buf && ferror(f)) {
		perror(path);
		free(buf);
		buf = NULL;
	}
	if (f != stdin)
		fclose(f);
	*ret_len = n;
	return buf;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: llmfs-paths --models DIR [--db FILE] [--planner "
		"MODEL] [--workers N]\n"
		"                   run TASKFILE [--plan F] [--candidates F] "
		"[--trace F] [--feedback Q]\n"
		"                 | stats | models\n");
}

/*
 * One run at a time per statistics file: each process numbers the prompts
 * it journals for the per-prompt router from its own memory, so two at
 * once would clash.  A second run waits for the first, and says so.
 * Returns the open descriptor that holds the lock, or -1 (reported).
 */
static int lock_db(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	/* A file only readable still serves stats and models. */
	if (fd < 0 && (errno == EACCES || errno == EROFS))
		fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "llmfs-paths: --db %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	if (errno == EWOULDBLOCK) {
		fprintf(stderr, "llmfs-paths: waiting for another run using "
			"%s\n", path);
		if (flock(fd, LOCK_EX) == 0)
			return fd;
	}
	fprintf(stderr, "llmfs-paths: --db %s: %s\n", path, strerror(errno));
	close(fd);
	return -1;
}

/* Whether s is a plain decimal number from lo to hi (integral when both
 * bounds are above 1). */
static bool number(const char *s, double lo, double hi, double *ret)
{
	char *end;

	if (!*s || isspace((unsigned char)*s) || strpbrk(s, "xX"))
		return false;
	errno = 0;
	*ret = strtod(s, &end);
	return !errno && !*end && *ret >= lo && *ret <= hi &&
	       (hi <= 1 || *ret == floor(*ret));
}

static int run(struct plan_engine *e, const char *file, const char *plan,
	       const char *cands, const char *trace, const char *feedback)
{
	char *data, *s = NULL;
	size_t len;
	int rc, status = 1;

	data = slurp(file, &len);
	if (!data)
		return 2;
	rc = plan_engine_submit(e, "task", data, len);
	free(data);
	if (rc < 0 && rc != -E2BIG) {
		fprintf(stderr, "submit: %s\n", strerror(-rc));
		return 2;
	}
	plan_engine_wait(e, "task", -1, NULL, NULL);
	if (plan_engine_status(e, "task", &s) == 0) {
		fputs(s, stderr);
		free(s);
	}
	if (plan_engine_result(e, "task", &s, &len) == 0) {
		fwrite(s, 1, len, stdout);
		free(s);
		status = 0;
	}
	if (plan && plan_engine_plan_json(e, "task", &s) == 0) {
		status |= save(plan, s) < 0 ? 2 : 0;
		free(s);
	}
	if (cands && plan_engine_candidates_json(e, "task", &s) == 0) {
		status |= save(cands, s) < 0 ? 2 : 0;
		free(s);
	}
	if (trace && plan_engine_trace(e, "task", &s) == 0) {
		status |= save(trace, s) < 0 ? 2 : 0;
		free(s);
	}
	if (feedback) {
		rc = plan_engine_feedback(e, "task", feedback,
					  strlen(feedback));
		if (rc == -ENODATA)
			fprintf(stderr, "feedback: not recorded: the task "
				"has no answer to judge\n");
		else if (rc < 0)
			fprintf(stderr, "feedback: %s\n", strerror(-rc));
		/* A failed task stays 1; a done one whose feedback could not
		 * be recorded is 2. */
		if (rc < 0 && status == 0)
			status = 2;
	}
	return status;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "models", required_argument, NULL, 'm' },
		{ "db", required_argument, NULL, 'd' },
		{ "planner", required_argument, NULL, 'p' },
		{ "workers", required_argument, NULL, 'w' },
		{ "plan", required_argument, NULL, 'P' },
		{ "candidates", required_argument, NULL, 'C' },
		{ "trace", required_argument, NULL, 'T' },
		{ "feedback", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct plan_engine_config cfg = { 0 };
	const char *plan = NULL, *cands = NULL, *trace = NULL, *fb = NULL;
	struct plan_engine *e = NULL;
	char *warn = NULL, *s = NULL;
	int opt, rc, status = 2, db_fd = -1;
	double workers, q;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'm': cfg.models_dir = optarg; break;
		case 'd': cfg.db_path = optarg; break;
		case 'p': cfg.planner_model = optarg; break;
		case 'w':
			if (!number(optarg, 1, PLAN_ENGINE_MAX_WORKERS,
				    &workers)) {
				fprintf(stderr, "llmfs-paths: --workers: \"%s\""
					" is not a whole number from 1 to %d\n",
					optarg, PLAN_ENGINE_MAX_WORKERS);
				return 2;
			}
			cfg.workers = (unsigned)workers;
			break;
		case 'P': plan = optarg; break;
		case 'C': cands = optarg; break;
		case 'T': trace = optarg; break;
		case 'F':
			/* Refused before the task runs and spends. */
			if (!number(optarg, 0, 1, &q)) {
				fprintf(stderr, "llmfs-paths: --feedback: "
					"\"%s\" is not a quality from 0 to 1\n",
					optarg);
				return 2;
			}
			fb = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!cfg.models_dir || optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (cfg.db_path && (db_fd = lock_db(cfg.db_path)) < 0)
		return 2;
	rc = plan_engine_open(&cfg, &e, &warn);
	if (warn) {
		fputs(warn, stderr);
		fputc('\n', stderr);
		free(warn);
	}
	if (rc < 0) {
		fprintf(stderr, "llmfs-paths: %s\n", strerror(-rc));
		return 2;
	}
	if (!strcmp(argv[optind], "run") && optind + 2 == argc)
		status = run(e, argv[optind + 1], plan, cands, trace, fb);
	else if (!strcmp(argv[optind], "stats") && optind + 1 == argc)
		status = plan_engine_stats(e, &s) < 0 ? 2 : 0;
	else if (!strcmp(argv[optind], "models") && optind + 1 == argc)
		status = plan_engine_models_json(e, &s) < 0 ? 2 : 0;
	else
		usage(stderr);
	if (s) {
		fputs(s, stdout);
		free(s);
	}
	plan_engine_close(e);
	if (db_fd >= 0)
		close(db_fd);
	return status;
}
