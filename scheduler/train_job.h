/*
 * train_job: training jobs, queued and run as child processes, with what they report kept in
 * a folder per job.  No FUSE here: fs/train.c maps the files of train/<job>/ onto these calls,
 * and joint mining drives the same jobs.
 *
 * A job is made empty (train_jobs_create(), for a mkdir), gets its job file
 * (train_jobs_submit(): gpu/train.h's key=value text, checked at once) and is queued; at
 * most max_running run at a time, the others wait as "queued", in submission order.
 *
 * Each running job is one child process: the daemon's own program run again with
 * "--train-job" (train_child_main()), as the job's owner (plan_proc_spawn_as(): the owner's
 * uid, gid and groups, a clean environment), so that it reads its data= file and writes its
 * checkpoints through the mounted tree with the owner's rights and nothing more, and so that
 * a job never blocks, crashes or bloats the daemon.  The child trains with gpu/train.h,
 * writes checkpoints to models/<job>/checkpoint-<step>/ and the final model to
 * models/<job>/, and reports on its stdout in lines the daemon's one job thread reads
 * (protocol in train_job.c).  It dies with that thread (parent-death signal).
 *
 * Kept per job in state_dir/<job>/ (the daemon's, mode 0700): job (the text), owner, state,
 * metrics.tsv, samples.txt, log (the child's stderr and the daemon's notes), result (JSON, at
 * the end) and the TensorBoard event file; trainer_state.json and loss.svg are made from the
 * rows when read.  A daemon that stops, or dies, with jobs queued or running finds them in
 * state_dir when it opens again and runs them again from their last checkpoint (the child
 * resumes from the highest models/<job>/checkpoint-<step>/), cutting the rows, samples and
 * events past that step, so the outputs are those of an uninterrupted run.
 *
 * Locking: one mutex for the table; on_change is called with it held (it must not call back
 * and must not block).  Every call may be made from any thread and none blocks on a child.
 *
 * Errors: -ENOENT (no such job), -EEXIST, -EINVAL (a bad name or job file; the reason is
 * the job's "failed: ..." status), -EBUSY (a job file written to a job that already has
 * one; rmdir the job first), -errno from the file system.
 */
#ifndef LLMFS_TRAIN_JOB_H
#define LLMFS_TRAIN_JOB_H

#include <stddef.h>
#include <sys/types.h>

#include "plan_proc.h"

struct train_jobs;

struct train_jobs_config {
	const char *state_dir;    /* one folder per job; made 0700 */
	const char *tree;         /* the mounted tree: data= paths and models/ are under it */
	const char *exe;          /* the program started as "exe --train-job ..." */
	unsigned max_running;     /* jobs run at once; 0: 1 */
	/* Told the name of a job whose state or files changed (with the table lock held). */
	void (*on_change)(void *arg, const char *name);
	void *on_change_arg;
};

/* Opens the table, resuming the jobs that were queued or running; ret_warnings (may be NULL)
 * describes jobs it could not read, one per line. */
int train_jobs_open(const struct train_jobs_config *cfg, struct train_jobs **ret,
		    char **ret_warnings);
/* Stops the children (they resume at the next open) and frees everything. */
void train_jobs_close(struct train_jobs *j);

/* True for names usable as a job folder (and as a model folder). */
int train_job_name_valid(const char *name);

/* An empty job owned by owner (a mkdir); -EEXIST when taken. */
int train_jobs_create(struct train_jobs *j, const char *name, const struct plan_proc_user *owner,
		      unsigned mode);
/* The job file: checked, stored and queued.  A bad file makes the job "failed: <reason>". */
int train_jobs_submit(struct train_jobs *j, const char *name, const char *text, size_t len);
/* "stop" (checkpoint, then stop) or "resume" (queue a stopped or failed job again). */
int train_jobs_control(struct train_jobs *j, const char *name, const char *text, size_t len);
/* Stops the job if it runs and removes its folder (its models stay). */
int train_jobs_remove(struct train_jobs *j, const char *name);

struct train_job_info {
	uid_t uid;
	gid_t gid;
	unsigned mode;       /* of the job's folder */
	int has_job;         /* a job file was written */
	int ended;           /* done, failed or stopped: result is ready */
	unsigned long long gen; /* bumped at each change */
};
int train_jobs_info(struct train_jobs *j, const char *name, struct train_job_info *ret);
int train_jobs_names(struct train_jobs *j, char ***ret_names, size_t *ret_n);
void train_jobs_names_free(char **names, size_t n);

/* The files of a job folder, in listing order. */
enum train_file {
	TRAIN_F_JOB,
	TRAIN_F_STATUS,
	TRAIN_F_CONTROL,
	TRAIN_F_METRICS,
	TRAIN_F_SAMPLES,
	TRAIN_F_LOG,
	TRAIN_F_STATE,    /* trainer_state.json */
	TRAIN_F_EVENTS,   /* events.out.tfevents.<time>.llmfs */
	TRAIN_F_SVG,      /* loss.svg */
	TRAIN_F_RESULT,
	TRAIN_F_COUNT
};
/* The file's name in the job folder (the event file's depends on the job). */
int train_jobs_file_name(struct train_jobs *j, const char *name, enum train_file f,
			 char **ret);
/* Which file a name is in a job folder, or -ENOENT. */
int train_jobs_file_lookup(struct train_jobs *j, const char *name, const char *file);
/* The content now (result: -EAGAIN until the job ended). */
int train_jobs_read(struct train_jobs *j, const char *name, enum train_file f, char **ret,
		    size_t *ret_len);

/* The child: argv is { exe, "--train-job", tree, job }, the job file on stdin. */
int train_child_main(int argc, char **argv);

#endif
