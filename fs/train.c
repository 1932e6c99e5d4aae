/*
 * train/: training jobs as folders (one row of the subtree table, fs/subtree.h).
 *
 *   train/                      1777: anyone makes a job (mkdir); only its owner removes it
 *   train/<job>/                the job's owner and mode, from the mkdir
 *     job                       write the job file (gpu/train.h keys); closing it starts the job
 *     control                   write "stop" or "resume"
 *     status metrics.tsv samples.txt log trainer_state.json loss.svg
 *     events.out.tfevents.<time>.llmfs                  read: what the job reports, as it grows
 *     result                    read: blocks until the job ends, then its JSON summary
 *
 * Every file maps onto one call of scheduler/train_job.h; the jobs run as their owner
 * (docs/train.md).  Files are read with direct I/O and their size is the current one, so
 * `tail -f` follows a growing metrics.tsv.  A read of result waits without holding a thread:
 * it is parked (fs/park.h) and answered when the job ends (or EINTR when interrupted).
 *
 * Inodes: the folder FS_TRAIN_INO; a job's folder and files are FS_TRAIN_TAG << 60 | id << 8
 * | file (file 0: the folder, 1 + enum train_file: its files), ids kept for the daemon's life.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/inval.h"
#include "fs/names.h"
#include "fs/park.h"
#include "fs/subtree.h"
#include "scheduler/train_job.h"

#define WRITE_MAX (64u << 10)

struct fs_train {
	struct fs *fs;
	struct train_jobs *jobs;
	struct fs_park *park;       /* reads of results not ready */
	struct fs_names names;      /* job ids */
};

struct train_handle {
	char *name;
	int file;                   /* enum train_file */
	char *wbuf;
	size_t wlen;
	int wrote, done;
};

static struct fs_train *T(struct fs *fs)
{
	return fs->train;
}

static uint64_t job_ino(size_t id, int file)
{
	return FS_TAG_BASE(FS_TRAIN_TAG) | (uint64_t)id << 8 | (uint64_t)file;
}

/* The id of name, made when new; 0 on failure. */
static size_t name_id(struct fs_train *t, const char *name)
{
	return fs_names_id(&t->names, name);
}

/* The job name of ino (caller frees), or NULL. */
static char *ino_name(struct fs_train *t, uint64_t ino)
{
	return fs_names_get(&t->names, (size_t)((ino & ~FS_TAG_BASE(0xf)) >> 8));
}

/* The id of name, made when new; 0 on failure. */
/* ---- result readers ------------------------------------------------------------------------ */

/* The table's notice, with its lock held: the park takes only its own. */
static void on_change(void *arg, const char *name)
{
	struct fs_train *t = arg;

	fs_park_notice(t->park, name);
}

/* The park's result: the job's JSON summary once it ended (-EAGAIN before). */
static int park_result(void *arg, const char *name, char **ret_text, size_t *ret_len)
{
	struct fs_train *t = arg;
	struct train_job_info info;

	if (train_jobs_info(t->jobs, name, &info) == 0 && !info.ended)
		return -EAGAIN;
	return train_jobs_read(t->jobs, name, TRAIN_F_RESULT, ret_text, ret_len);
}

/* ---- the row's operations -------------------------------------------------------------------- */

static int train_start(struct fs *fs, const struct fs_options *opt)
{
	struct fs_train *t;
	struct train_jobs_config cfg = { 0 };
	char *dir = NULL, *warnings = NULL, exe[4096];
	ssize_t n;
	int r;

	if (!opt->mountpoint)
		return 0;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = '\0';
	t = calloc(1, sizeof(*t));
	if (!t || asprintf(&dir, "%s/train", cas_store_dir(fs->st)) < 0) {
		free(t);
		return -ENOMEM;
	}
	t->fs = fs;
	fs_names_init(&t->names);
	cfg.state_dir = dir;
	cfg.tree = opt->mountpoint;
	cfg.exe = exe;
	cfg.max_running = opt->train_jobs;
	cfg.on_change = on_change;
	cfg.on_change_arg = t;
	/* The park first: the table tells of jobs it resumes while it opens. */
	r = fs_park_open(park_result, t, &t->park);
	if (r == 0) {
		r = train_jobs_open(&cfg, &t->jobs, &warnings);
		if (warnings)
			fs_log(fs->log, LOG_WARNING, "train: %s", warnings);
	}
	free(warnings);
	free(dir);
	if (r < 0) {
		fs_log(fs->log, LOG_ERR, "train/ disabled: %s", strerror(-r));
		fs_park_close(t->park);
		fs_names_free(&t->names);
		free(t);
		return 0;
	}
	fs->train = t;
	return 0;
}

static void train_end(struct fs *fs)
{
	struct fs_train *t = T(fs);

	if (t)
		fs_park_drain(t->park);
}

static void train_stop(struct fs *fs)
{
	struct fs_train *t = T(fs);

	if (!t)
		return;
	fs_park_drain(t->park);
	train_jobs_close(t->jobs);
	fs_park_close(t->park);
	fs_names_free(&t->names);
	free(t);
	fs->train = NULL;
}

static int train_present(const struct fs *fs)
{
	return fs->train != NULL;
}

static int train_lookup(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name,
			uint64_t *ret_ino)
{
	struct fs_train *t = T(fs);
	struct train_job_info info;
	char *job;
	int r, f;

	(void)req;
	if (parent == FS_TRAIN_INO) {
		size_t id;

		r = train_jobs_info(t->jobs, name, &info);
		if (r < 0)
			return r;
		id = name_id(t, name);
		if (!id)
			return -ENOMEM;
		*ret_ino = job_ino(id, 0);
		return 0;
	}
	if ((parent & 0xff) != 0)
		return -ENOTDIR;
	job = ino_name(t, parent);
	if (!job)
		return -ENOENT;
	f = train_jobs_file_lookup(t->jobs, job, name);
	free(job);
	if (f < 0)
		return f;
	*ret_ino = (parent & ~(uint64_t)0xff) | (uint64_t)(f + 1);
	return 0;
}

static const unsigned file_mode[TRAIN_F_COUNT] = {
	[TRAIN_F_JOB] = 0644, [TRAIN_F_CONTROL] = 0644,
	[TRAIN_F_STATUS] = 0444, [TRAIN_F_METRICS] = 0444, [TRAIN_F_SAMPLES] = 0444,
	[TRAIN_F_LOG] = 0444, [TRAIN_F_STATE] = 0444, [TRAIN_F_EVENTS] = 0444,
	[TRAIN_F_SVG] = 0444, [TRAIN_F_RESULT] = 0444,
};

static int train_getattr(struct fs *fs, uint64_t ino, struct stat *sb, double *ret_timeout)
{
	struct fs_train *t = T(fs);
	struct train_job_info info;
	char *job, *text = NULL;
	size_t len = 0;
	int f, r;

	if (ino == FS_TRAIN_INO) {
		fs_virt_stat(fs, ino, S_IFDIR | 01777, 0, sb);
		return 0;
	}
	job = ino_name(t, ino);
	if (!job)
		return -ENOENT;
	r = train_jobs_info(t->jobs, job, &info);
	f = (int)(ino & 0xff) - 1;
	if (r == 0 && f >= 0 && f < TRAIN_F_COUNT) {
		r = train_jobs_read(t->jobs, job, (enum train_file)f, &text, &len);
		if (r == -EAGAIN)
			r = 0, len = 0;
	} else if (r == 0 && f >= TRAIN_F_COUNT) {
		r = -ENOENT;
	}
	free(text);
	free(job);
	if (r < 0)
		return r;
	if (f < 0)
		fs_virt_stat(fs, ino, S_IFDIR | (info.mode & 07777), 0, sb);
	else
		fs_virt_stat(fs, ino, S_IFREG | file_mode[f], len, sb);
	sb->st_uid = info.uid;
	sb->st_gid = info.gid;
	*ret_timeout = 0; /* sizes grow while a job runs */
	return 0;
}

struct list_ctx {
	fs_add_fn add;
	void *arg;
};

static int train_list(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add, void *arg)
{
	struct fs_train *t = T(fs);
	char **names = NULL, *job;
	size_t n = 0;
	int r = 0;

	(void)req;
	if (ino == FS_TRAIN_INO) {
		r = train_jobs_names(t->jobs, &names, &n);
		for (size_t i = 0; r == 0 && i < n; i++) {
			size_t id = name_id(t, names[i]);

			r = id ? add(arg, names[i], job_ino(id, 0), S_IFDIR) : -ENOMEM;
		}
		train_jobs_names_free(names, n);
		return r < 0 ? r : 0;
	}
	if ((ino & 0xff) != 0)
		return -ENOTDIR;
	job = ino_name(t, ino);
	if (!job)
		return -ENOENT;
	for (int f = 0; r == 0 && f < TRAIN_F_COUNT; f++) {
		char *name = NULL;

		r = train_jobs_file_name(t->jobs, job, (enum train_file)f, &name);
		if (r == 0)
			r = add(arg, name, (ino & ~(uint64_t)0xff) | (uint64_t)(f + 1), S_IFREG);
		free(name);
	}
	free(job);
	return r < 0 ? r : 0;
}

static int train_mkdir(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name,
		       uint32_t mode, uint64_t *ret_ino)
{
	struct fs_train *t = T(fs);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct plan_proc_user owner = { ctx->uid, ctx->gid };
	struct cat_attr a;
	size_t id;
	int r;

	if (parent != FS_TRAIN_INO)
		return -EPERM;
	if (!train_job_name_valid(name))
		return -EINVAL;
	/* Its model lands in models/<job>: a folder someone else has is not this job's. */
	r = cas_lookup(fs->st, CAT_ROOT_INO, name, &a);
	if (r == 0 && (!S_ISDIR(a.mode) || (ctx->uid != 0 && a.uid != ctx->uid)))
		return -EEXIST;
	r = train_jobs_create(t->jobs, name, &owner, (mode & ~ctx->umask) & 0777);
	if (r < 0)
		return r;
	id = name_id(t, name);
	if (!id)
		return -ENOMEM;
	*ret_ino = job_ino(id, 0);
	return 0;
}

static int train_rmdir(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name)
{
	(void)req;
	if (parent != FS_TRAIN_INO)
		return -EPERM;
	return train_jobs_remove(T(fs)->jobs, name);
}

static int train_open(struct fs *fs, fuse_req_t req, uint64_t ino, struct fuse_file_info *fi,
		      void **ret_h)
{
	struct fs_train *t = T(fs);
	struct train_handle *h;
	int f = (int)(ino & 0xff) - 1, acc = fi->flags & O_ACCMODE;

	(void)req;
	if (ino == FS_TRAIN_INO || f < 0)
		return -EISDIR;
	if (f >= TRAIN_F_COUNT)
		return -ENOENT;
	if (acc != O_RDONLY && f != TRAIN_F_JOB && f != TRAIN_F_CONTROL)
		return -EACCES;
	h = calloc(1, sizeof(*h));
	if (!h || !(h->name = ino_name(t, ino))) {
		free(h);
		return h ? -ENOENT : -ENOMEM;
	}
	h->file = f;
	fi->direct_io = 1;
	*ret_h = h;
	return 0;
}

static void train_read(struct fs *fs, fuse_req_t req, void *vh, uint64_t ino, size_t size,
		       off_t off)
{
	struct fs_train *t = T(fs);
	struct train_handle *h = vh;
	char *text = NULL;
	size_t len = 0;
	int r;

	(void)ino;
	r = train_jobs_read(t->jobs, h->name, (enum train_file)h->file, &text, &len);
	if (r == -EAGAIN && h->file == TRAIN_F_RESULT)
		return fs_park_read(t->park, h->name, req, size, off);
	if (r < 0)
		fs_reply_err(req, r);
	else
		fs_reply_text(req, text, len, size, off);
	free(text);
}

static int train_write(struct fs *fs, fuse_req_t req, void *vh, uint64_t ino, const char *buf,
		       size_t size, off_t off)
{
	struct train_handle *h = vh;
	char *nb;

	(void)fs;
	(void)req;
	(void)ino;
	if (h->file != TRAIN_F_JOB && h->file != TRAIN_F_CONTROL)
		return -EACCES;
	if (off < 0 || (size_t)off + size > WRITE_MAX)
		return -EFBIG;
	if ((size_t)off + size > h->wlen) {
		nb = realloc(h->wbuf, (size_t)off + size);
		if (!nb)
			return -ENOMEM;
		memset(nb + h->wlen, 0, (size_t)off - (off > (off_t)h->wlen ? h->wlen : (size_t)off));
		h->wbuf = nb;
		h->wlen = (size_t)off + size;
	}
	memcpy(h->wbuf + off, buf, size);
	h->wrote = 1;
	return 0;
}

/*
 * models/<job>, owned by the job's owner: the job's process writes its checkpoints there with
 * the owner's rights, and models/ itself is the daemon's.
 */
static int make_model_dir(struct fs *fs, const char *name)
{
	struct train_job_info info;
	struct cat_attr a, made;
	int r = train_jobs_info(T(fs)->jobs, name, &info);

	if (r < 0)
		return r;
	r = cas_lookup(fs->st, CAT_ROOT_INO, name, &a);
	if (r == 0)
		return S_ISDIR(a.mode) && (a.uid == info.uid || info.uid == 0) ? 0 : -EEXIST;
	if (r != -ENOENT)
		return r;
	r = cas_mknode(fs->st, CAT_ROOT_INO, name, S_IFDIR | 0755, info.uid, info.gid, NULL,
		       &made);
	if (r == 0) {
		fs_models_changed(fs);
		/*
		 * Made outside a request on models/: the kernel's copy of its
		 * listing and attributes goes before this flush returns (a
		 * flush here holds no lock that the invalidation may need).
		 */
		fs_inval_wait(fs, fs_inval_inode(fs, FS_MODELS_INO, 1));
	}
	return r == -EEXIST ? 0 : r;
}

static int train_flush(struct fs *fs, void *vh)
{
	struct train_handle *h = vh;
	int r;

	if (!h->wrote || h->done)
		return 0;
	h->done = 1;
	if (h->file == TRAIN_F_JOB) {
		r = make_model_dir(fs, h->name);
		if (r < 0)
			return r;
		r = train_jobs_submit(T(fs)->jobs, h->name, h->wbuf ? h->wbuf : "", h->wlen);
	} else {
		r = train_jobs_control(T(fs)->jobs, h->name, h->wbuf ? h->wbuf : "", h->wlen);
	}
	return r;
}

static void train_release(struct fs *fs, void *vh)
{
	struct train_handle *h = vh;

	train_flush(fs, h);
	free(h->name);
	free(h->wbuf);
	free(h);
}

static void train_abandon(struct fs *fs, void *vh)
{
	struct train_handle *h = vh;

	(void)fs;
	free(h->name);
	free(h->wbuf);
	free(h);
}

static int train_setattr(struct fs *fs, fuse_req_t req, uint64_t ino, const struct stat *attr,
			 int to_set, void *h, struct stat *ret, double *ret_timeout)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			  FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;

	(void)req;
	(void)h;
	/* `echo x > job` truncates first: the write replaces the text anyway. */
	if (!(to_set & ~(FUSE_SET_ATTR_SIZE | times)) &&
	    (!(to_set & FUSE_SET_ATTR_SIZE) || attr->st_size == 0))
		return train_getattr(fs, ino, ret, ret_timeout);
	return -EPERM;
}

const struct fs_subtree_ops fs_train_ops = {
	.start = train_start,
	.stop = train_stop,
	.present = train_present,
	.lookup = train_lookup,
	.getattr = train_getattr,
	.setattr = train_setattr,
	.list = train_list,
	.mkdir = train_mkdir,
	.rmdir = train_rmdir,
	.open = train_open,
	.read = train_read,
	.write = train_write,
	.flush = train_flush,
	.release = train_release,
	.abandon = train_abandon,
	.end = train_end,
};
