/*
 * ops.c - the FUSE low-level operations: the root, and each request handed
 * to the subtree that owns its inode (subtree.h).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/registry/smip.h"
#include "fs/fs.h"
#include "fs/inval.h"
#include "fs/subtree.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * The subtrees, in the order the root lists them.  Ranges and tags are
 * subtree.h's inode space; a new subtree is one more row here.
 */
static const struct fs_subtree subtrees[] = {
	{ "models", FS_MODELS_INO, FS_MODELS_LAST, 0, &fs_models_ops },
	{ "paths", FS_PATHS_INO, FS_PATHS_LAST, FS_PATHS_TAG, &fs_paths_ops },
	{ "net", FS_NET_INO, FS_NET_LAST, FS_NET_TAG, &fs_net_ops },
	{ "train", FS_TRAIN_INO, FS_TRAIN_LAST, FS_TRAIN_TAG, &fs_train_ops },
	{ "mining", FS_MINING_INO, FS_MINING_LAST, FS_MINING_TAG, &fs_mining_ops },
	{ "envs", FS_ENVS_INO, FS_ENVS_LAST, FS_ENVS_TAG, &fs_envs_ops },
	{ ".llmfs", FS_CTL_INO, FS_CTL_LAST, 0, &fs_ctl_ops },
};

/* An open file: the row that opened it and that row's own handle. */
struct fs_handle {
	const struct fs_subtree *sub;
	void *h;
	LIST_ENTRY(fs_handle) link; /* fs->open_handles */
};

/* A listing: its entries as they were at opendir, or at the readdir at offset 0. */
struct dirent_snap {
	char *name;
	uint64_t ino;
	uint32_t mode;
	struct stat sb;  /* with timeout > 0: the attributes for readdirplus */
	double timeout;
};

struct fs_dir {
	struct dirent_snap *ents;
	size_t nents, capents;
	/* A listing the kernel may cache is made at the first readdir. */
	int filled;
	uint64_t ino;
	const struct fs_subtree *sub;
	LIST_ENTRY(fs_dir) link; /* fs->open_dirs */
	/*
	 * A listing without opendir (fs->no_opendir): the caller whose
	 * readdir at offset 0 made it, and its references (the list's while
	 * recent, and each readdir serving from it), under fs->lock.
	 */
	pid_t pid;
	int recent;
	unsigned refs;
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- the table ---------------------------------------------------------- */

/* Does the row's range or tag hold ino (whether the row is on or not)? */
static int holds(const struct fs_subtree *s, uint64_t ino)
{
	if (FS_TAG(ino))
		return s->tag && FS_TAG(ino) == s->tag;
	return ino >= s->lo && ino <= s->hi;
}

static int present(const struct fs *fs, const struct fs_subtree *s)
{
	return !s->ops->present || s->ops->present(fs);
}

/*
 * Rows whose ranges or tags overlap would each take the other's inodes:
 * refused at start, so that a new row cannot break an old one silently.
 */
static int table_check(const struct fs *fs)
{
	size_t i, j;

	for (i = 0; i < ARRAY_SIZE(subtrees); i++) {
		const struct fs_subtree *a = &subtrees[i];
		int bad = a->lo <= FS_INO_ROOT || a->hi < a->lo ||
			  a->hi >= FS_TAG_BASE(1) || a->tag > FS_TAG(UINT64_MAX);

		for (j = i + 1; !bad && j < ARRAY_SIZE(subtrees); j++) {
			const struct fs_subtree *b = &subtrees[j];

			bad = (a->tag && a->tag == b->tag) || (a->lo <= b->hi && b->lo <= a->hi);
		}
		if (bad) {
			fs_log(fs->log, LOG_ERR, "subtree %s: its inodes are not its own",
			       a->name);
			return -EINVAL;
		}
	}
	return 0;
}

const struct fs_subtree *fs_subtree_of(const struct fs *fs, uint64_t ino)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(subtrees); i++)
		if (holds(&subtrees[i], ino))
			return present(fs, &subtrees[i]) ? &subtrees[i] : NULL;
	return NULL;
}

static const struct fs_subtree *subtree_named(const struct fs *fs, const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(subtrees); i++)
		if (!strcmp(subtrees[i].name, name) && present(fs, &subtrees[i]))
			return &subtrees[i];
	return NULL;
}

/* The row of a request's inode; absent (the root, a row off): NULL. */
static const struct fs_subtree *row(fuse_req_t req, uint64_t ino)
{
	return fs_subtree_of(fs_of(req), ino);
}

/* ---- what the rows share ------------------------------------------------ */

void fs_reply_err(fuse_req_t req, int r)
{
	fuse_reply_err(req, r < 0 ? -r : r);
}

void fs_reply_text(fuse_req_t req, const char *text, size_t len, size_t size,
		   off_t off)
{
	char *copy;

	/*
	 * From a copy: once the kernel has the data the reader may close, and
	 * the release free the handle's text, before this thread is back from
	 * writev().
	 */
	if ((size_t)off >= len)
		return (void)fuse_reply_buf(req, NULL, 0);
	if (size > len - (size_t)off)
		size = len - (size_t)off;
	copy = malloc(size ? size : 1);
	if (!copy)
		return fs_reply_err(req, -ENOMEM);
	memcpy(copy, text + off, size);
	fuse_reply_buf(req, copy, size);
	free(copy);
}

void fs_virt_stat(const struct fs *fs, uint64_t ino, uint32_t mode,
		  uint64_t size, struct stat *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->st_ino = ino;
	sb->st_mode = mode;
	sb->st_nlink = S_ISDIR(mode) ? 2 : 1;
	sb->st_uid = fs->uid;
	sb->st_gid = fs->gid;
	sb->st_size = (off_t)size;
	sb->st_blocks = (blkcnt_t)((size + 511) / 512);
	sb->st_blksize = FS_IO_BLOCK;
	sb->st_mtim.tv_sec = time(NULL);
	sb->st_atim = sb->st_mtim;
	sb->st_ctim = sb->st_mtim;
}

void fs_gc_want(struct fs *fs)
{
	cas_gc_want(fs->st);
}

void fs_gc_record(struct fs *fs, int64_t freed, int requested)
{
	pthread_mutex_lock(&fs->lock);
	fs->gc_runs++;
	if (freed > 0)
		fs->gc_freed += (uint64_t)freed;
	if (requested)
		fs->gc_request = freed;
	pthread_mutex_unlock(&fs->lock);
}

/* ---- names and attributes ----------------------------------------------- */

/*
 * Without opendir the kernel keeps every folder's listing (FOPEN_CACHE_DIR
 * is what it assumes) and, at each listing from the start, asks the
 * folder's attributes once they have expired (auto_inval_data) and lists
 * it again if its mtime changed.  A folder whose row does not let the
 * kernel keep its listing (cache_listing) answers with timeout 0 and an
 * mtime newer than any it gave before: each listing is made afresh, as it
 * was at each opendir.  (Virtual folders already give the current time.)
 */
static void dir_stamp(struct fs *fs, const struct fs_subtree *s, uint64_t ino,
		      struct stat *sb, double *timeout)
{
	struct timespec ts;
	uint64_t now, prev, next;

	if (!fs->no_opendir || !S_ISDIR(sb->st_mode))
		return;
	if (s && s->ops->cache_listing && s->ops->cache_listing(fs, ino))
		return;
	*timeout = 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	prev = atomic_load(&fs->dir_stamp);
	do
		next = now > prev ? now : prev + 1;
	while (!atomic_compare_exchange_weak(&fs->dir_stamp, &prev, next));
	sb->st_mtim.tv_sec = (time_t)(next / 1000000000u);
	sb->st_mtim.tv_nsec = (long)(next % 1000000000u);
}

/*
 * The root: its rows are started before the mount and stopped after it,
 * so its listing, mode and owner never change while the kernel can ask.
 * Its attributes are kept as long as models/'s (its mtime is the mount's
 * start): a path walk's permission check (default_permissions) then asks
 * nothing, where timeout 0 cost one GETATTR per path walked (a small
 * file's copy: one request of seven).
 */
static void root_stat(const struct fs *fs, struct stat *sb, double *timeout)
{
	fs_virt_stat(fs, FS_INO_ROOT, S_IFDIR | 0755, 0, sb);
	sb->st_mtim = fs->started;
	sb->st_atim = fs->started;
	sb->st_ctim = fs->started;
	*timeout = FS_MODELS_TIMEOUT;
}

static int getattr(struct fs *fs, uint64_t ino, struct stat *sb, double *timeout)
{
	const struct fs_subtree *s;
	int r;

	*timeout = 0;
	if (ino == FS_INO_ROOT) {
		root_stat(fs, sb, timeout);
		return 0;
	}
	s = fs_subtree_of(fs, ino);
	r = s ? s->ops->getattr(fs, ino, sb, timeout) : -ENOENT;
	if (r == 0)
		dir_stamp(fs, s, ino, sb, timeout);
	return r;
}

static void reply_entry(fuse_req_t req, struct fs *fs, uint64_t ino)
{
	const struct fs_subtree *s = fs_subtree_of(fs, ino);
	struct fuse_entry_param e;
	double timeout;
	int r;

	memset(&e, 0, sizeof(e));
	r = getattr(fs, ino, &e.attr, &timeout);
	if (r < 0)
		return fs_reply_err(req, r);
	e.ino = ino;
	e.attr_timeout = e.entry_timeout = timeout;
	if (s && s->ops->remember)
		s->ops->remember(fs, ino);
	fuse_reply_entry(req, &e);
}

/* An operation's answer: an error, or the entry it made or found. */
static void reply_made(fuse_req_t req, int r, uint64_t ino)
{
	if (r < 0)
		return fs_reply_err(req, r);
	reply_entry(req, fs_of(req), ino);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	const struct fs_subtree *s;
	uint64_t ino = 0;
	int r;

	if (parent == FS_INO_ROOT) {
		s = subtree_named(fs, name);
		return s ? reply_entry(req, fs, s->lo) : fs_reply_err(req, -ENOENT);
	}
	s = row(req, parent);
	r = s ? s->ops->lookup(fs, req, parent, name, &ino) : -ENOENT;
	reply_made(req, r, ino);
}

static void forget_one(struct fs *fs, uint64_t ino, uint64_t n)
{
	const struct fs_subtree *s = fs_subtree_of(fs, ino);

	if (s && s->ops->forget)
		s->ops->forget(fs, ino, n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		forget_one(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat sb;
	double timeout;
	int r = getattr(fs_of(req), ino, &sb, &timeout);

	if (r < 0)
		return fs_reply_err(req, r);
	fuse_reply_attr(req, &sb, timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	const struct fs_subtree *s = row(req, ino);
	struct fs_handle *h = fi ? (struct fs_handle *)(uintptr_t)fi->fh : NULL;
	double timeout = 0;
	struct stat sb;
	int r;

	if (!s || !s->ops->setattr)
		return fs_reply_err(req, -EPERM);
	r = s->ops->setattr(fs_of(req), req, ino, attr, to_set,
			    h && h->sub == s ? h->h : NULL, &sb, &timeout);
	if (r < 0)
		return fs_reply_err(req, r);
	fuse_reply_attr(req, &sb, timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	const struct fs_subtree *s = row(req, ino);
	char *target = NULL;
	int r = s && s->ops->readlink ? s->ops->readlink(fs_of(req), req, ino, &target)
				      : -EINVAL;

	if (r < 0)
		return fs_reply_err(req, r);
	fuse_reply_readlink(req, target);
	free(target);
}

/* ---- namespace changes: the parent's row -------------------------------- */

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	const struct fs_subtree *s = row(req, parent);
	uint64_t ino = 0;
	int r = s && s->ops->mknod ? s->ops->mknod(fs_of(req), req, parent, name, mode, &ino)
				   : -EPERM;

	reply_made(req, r, ino);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	const struct fs_subtree *s = row(req, parent);
	uint64_t ino = 0;
	int r = s && s->ops->mkdir ? s->ops->mkdir(fs_of(req), req, parent, name, mode, &ino)
				   : -EPERM;

	reply_made(req, r, ino);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	const struct fs_subtree *s = row(req, parent);
	uint64_t ino = 0;
	int r = s && s->ops->symlink ? s->ops->symlink(fs_of(req), req, parent, name, link,
						       &ino)
				     : -EPERM;

	reply_made(req, r, ino);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	const struct fs_subtree *s = row(req, parent);

	fs_reply_err(req, s && s->ops->unlink ? s->ops->unlink(fs_of(req), req, parent, name)
					      : -EPERM);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	const struct fs_subtree *s = row(req, parent);

	fs_reply_err(req, s && s->ops->rmdir ? s->ops->rmdir(fs_of(req), req, parent, name)
					     : -EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	const struct fs_subtree *s = row(req, parent);

	/* Across subtrees: the names mean different things (a pull is a copy). */
	if (!s || !s->ops->rename || row(req, newparent) != s)
		return fs_reply_err(req, -EPERM);
	fs_reply_err(req, s->ops->rename(fs_of(req), req, parent, name, newparent,
					 newname, flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	/* Hard links: chunk sharing makes copies free, so none are kept. */
	fs_reply_err(req, -EPERM);
}

/* ---- files: the row that opened them ------------------------------------ */

/* Files the kernel may never release (a stop) are listed to be freed. */
static struct fs_handle *handle_new(struct fs *fs, const struct fs_subtree *s, void *sh)
{
	struct fs_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->sub = s;
	h->h = sh;
	pthread_mutex_lock(&fs->lock);
	LIST_INSERT_HEAD(&fs->open_handles, h, link);
	pthread_mutex_unlock(&fs->lock);
	return h;
}

static void handle_unlink(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->lock);
	LIST_REMOVE(h, link);
	pthread_mutex_unlock(&fs->lock);
}

static struct fs_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	const struct fs_subtree *s = row(req, ino);
	struct fs_handle *h;
	void *sh = NULL;
	int r;

	if (!s)
		return fs_reply_err(req, ino == FS_INO_ROOT ? -EISDIR : -ENOENT);
	r = s->ops->open(fs, req, ino, fi, &sh);
	if (r < 0)
		return fs_reply_err(req, r);
	h = handle_new(fs, s, sh);
	if (!h) {
		s->ops->release(fs, sh);
		return fs_reply_err(req, -ENOMEM);
	}
	fi->fh = (uintptr_t)h;
	fuse_reply_open(req, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	const struct fs_subtree *s = row(req, parent);
	struct fuse_entry_param e;
	struct fs_handle *h = NULL;
	uint64_t ino = 0;
	double timeout;
	void *sh = NULL;
	int r;

	if (!s || !s->ops->create)
		return fs_reply_err(req, -EPERM);
	r = s->ops->create(fs, req, parent, name, mode, fi, &ino, &sh);
	if (r < 0)
		return fs_reply_err(req, r);
	memset(&e, 0, sizeof(e));
	timeout = 0;
	r = s->ops->getattr(fs, ino, &e.attr, &timeout);
	if (r == 0 && !(h = handle_new(fs, s, sh)))
		r = -ENOMEM;
	if (r < 0) {
		s->ops->release(fs, sh);
		return fs_reply_err(req, r);
	}
	e.ino = ino;
	e.attr_timeout = e.entry_timeout = timeout;
	if (s->ops->remember)
		s->ops->remember(fs, ino);
	fi->fh = (uintptr_t)h;
	fuse_reply_create(req, &e, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_of(fi);

	h->sub->ops->read(fs_of(req), req, h->h, ino, size, off);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_of(fi);
	int r = h->sub->ops->write ? h->sub->ops->write(fs_of(req), req, h->h, ino, buf,
							size, off)
				   : -EBADF;

	if (r < 0)
		return fs_reply_err(req, r);
	fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_of(fi);

	fs_reply_err(req, h->sub->ops->flush ? h->sub->ops->flush(fs_of(req), h->h) : 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_of(fi);

	fs_reply_err(req, h->sub->ops->fsync ? h->sub->ops->fsync(fs_of(req), h->h) : 0);
}

/* A folder's fsync makes every namespace change durable, creations that
 * were not synced on their own included (cas_create()). */
static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	fs_reply_err(req, cas_sync(fs_of(req)->st));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_of(fi);

	handle_unlink(fs_of(req), h);
	h->sub->ops->release(fs_of(req), h->h);
	free(h);
	fs_reply_err(req, 0);
}

/*
 * copy_file_range(): the output's row runs it when it can, else the
 * input's (a pull into models/ and a push out of it both run in models/).
 */
static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out,
			       size_t len, int flags)
{
	struct fs_handle *hi = handle_of(fi_in), *ho = handle_of(fi_out);
	const struct fs_subtree *s = ho->sub->ops->copy_range ? ho->sub : hi->sub;
	ssize_t n;

	if (s->ops->copy_range)
		n = s->ops->copy_range(fs_of(req), hi->sub, hi->h, ino_in, off_in,
				       ho->sub, ho->h, ino_out, off_out, len);
	else if (hi->sub->ops->copy_out || ho->sub->ops->copy_in)
		n = -EXDEV;
	else
		n = -EBADF;
	if (n < 0)
		return fs_reply_err(req, (int)n);
	fuse_reply_write(req, (size_t)n);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	struct fs_handle *h = handle_of(fi);
	unsigned events = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
	int r;

	if (h->sub->ops->poll) {
		r = h->sub->ops->poll(fs_of(req), h->h, ph, &events);
		if (r < 0)
			return fs_reply_err(req, r);
	} else if (ph) {
		fuse_pollhandle_destroy(ph);
	}
	fuse_reply_poll(req, events);
}

/* ---- folders ------------------------------------------------------------ */

static void dir_free(struct fs_dir *d)
{
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->nents; i++)
		free(d->ents[i].name);
	free(d->ents);
	free(d);
}

/* Folders, like files, may never be released (a stop): listed to be freed. */
static void dir_link(struct fs *fs, struct fs_dir *d)
{
	pthread_mutex_lock(&fs->lock);
	LIST_INSERT_HEAD(&fs->open_dirs, d, link);
	pthread_mutex_unlock(&fs->lock);
}

static void dir_unlink(struct fs *fs, struct fs_dir *d)
{
	pthread_mutex_lock(&fs->lock);
	LIST_REMOVE(d, link);
	pthread_mutex_unlock(&fs->lock);
}

static int add_ent(void *arg, const char *name, uint64_t ino, uint32_t mode)
{
	struct fs_dir *d = arg;

	if (d->nents == d->capents) {
		size_t cap = d->capents ? 2 * d->capents : 16;
		struct dirent_snap *v = realloc(d->ents, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		d->ents = v;
		d->capents = cap;
	}
	d->ents[d->nents].name = strdup(name);
	if (!d->ents[d->nents].name)
		return -ENOMEM;
	d->ents[d->nents].ino = ino;
	d->ents[d->nents].mode = mode;
	d->ents[d->nents].timeout = 0;
	d->nents++;
	return 0;
}

static int add_ent_plus(void *arg, const char *name, const struct stat *sb, double timeout)
{
	struct fs_dir *d = arg;
	int r = add_ent(d, name, sb->st_ino, sb->st_mode & S_IFMT);

	if (r == 0 && timeout > 0) {
		d->ents[d->nents - 1].sb = *sb;
		d->ents[d->nents - 1].timeout = timeout;
	}
	return r;
}

static int list_root(struct fs *fs, struct fs_dir *d)
{
	size_t i;
	int r = 0;

	for (i = 0; r == 0 && i < ARRAY_SIZE(subtrees); i++)
		if (present(fs, &subtrees[i]))
			r = add_ent(d, subtrees[i].name, subtrees[i].lo, S_IFDIR);
	return r;
}

/* The entries of folder d->ino, with "." and "..". */
static int dir_fill(struct fs *fs, fuse_req_t req, struct fs_dir *d)
{
	const struct fs_subtree *s = d->sub;
	int r;

	d->filled = 1;
	r = add_ent(d, ".", d->ino, S_IFDIR);
	if (r == 0)
		r = add_ent(d, "..", FS_INO_ROOT, S_IFDIR);
	if (r == 0 && d->ino == FS_INO_ROOT)
		r = list_root(fs, d);
	else if (r == 0 && s && s->ops->list_plus)
		r = s->ops->list_plus(fs, req, d->ino, add_ent_plus, d);
	else if (r == 0)
		r = s && s->ops->list ? s->ops->list(fs, req, d->ino, add_ent, d) : -ENOTDIR;
	return r;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	const struct fs_subtree *s = row(req, ino);
	struct fs_dir *d;
	int r = 0;

	/* The kernel opens folders itself from now on (no releasedir either). */
	if (fs->no_opendir)
		return fs_reply_err(req, -ENOSYS);
	d = calloc(1, sizeof(*d));
	if (!d)
		return fs_reply_err(req, -ENOMEM);
	d->ino = ino;
	d->sub = s;
	if (s && s->ops->cache_listing && s->ops->cache_listing(fs, ino)) {
		/* The kernel's copy stays valid until the row says otherwise. */
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	} else {
		r = dir_fill(fs, req, d);
	}
	if (r < 0) {
		dir_free(d);
		return fs_reply_err(req, r);
	}
	dir_link(fs, d);
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* The opener was interrupted: no releasedir will come. */
		dir_unlink(fs, d);
		dir_free(d);
	}
}

/* The folder's entries, listed now if opendir left it for later. */
static int dir_ready(fuse_req_t req, struct fs_dir *d)
{
	size_t i;
	int r;

	if (d->filled)
		return 0;
	r = dir_fill(fs_of(req), req, d);
	if (r < 0) {
		/* Listed again by the next readdir, from nothing. */
		for (i = 0; i < d->nents; i++)
			free(d->ents[i].name);
		d->nents = 0;
		d->filled = 0;
	}
	return r;
}

/* ---- listings without opendir ---- */

/*
 * With FUSE_NO_OPENDIR_SUPPORT a readdir carries no handle.  The listing
 * a readdir at offset 0 makes is kept, per folder and caller (the pid),
 * for the readdirs that continue it, so that offsets stay those of one
 * listing, as with a handle (an `rm -r` unlinking as it lists skips
 * nothing).  It goes at the reply that ends it, or when DIR_RECENT newer
 * ones push it out (a lister that stopped halfway); a continuation that
 * finds none lists the folder again.
 */
#define DIR_RECENT 64

/* Under fs->lock: d leaves the recent listings; true when it is unused. */
static int recent_drop_locked(struct fs_dir *d)
{
	LIST_REMOVE(d, link);
	d->recent = 0;
	return --d->refs == 0;
}

/* Under fs->lock: the recent listing of ino by pid, or NULL. */
static struct fs_dir *recent_find_locked(struct fs *fs, uint64_t ino, pid_t pid)
{
	struct fs_dir *d;

	LIST_FOREACH(d, &fs->open_dirs, link)
		if (d->recent && d->ino == ino && d->pid == pid)
			return d;
	return NULL;
}

/* d, just listed, becomes ino's recent listing for pid, replacing any. */
static void recent_add(struct fs *fs, struct fs_dir *d)
{
	struct fs_dir *old, *tail = NULL, *p, *gone[2] = { NULL, NULL };
	size_t n = 0;

	pthread_mutex_lock(&fs->lock);
	old = recent_find_locked(fs, d->ino, d->pid);
	if (old && recent_drop_locked(old))
		gone[0] = old;
	d->recent = 1;
	d->refs = 2; /* the list's and the caller's */
	LIST_INSERT_HEAD(&fs->open_dirs, d, link);
	LIST_FOREACH(p, &fs->open_dirs, link)
		if (p->recent && ++n > DIR_RECENT)
			tail = p;
	if (tail && recent_drop_locked(tail))
		gone[1] = tail;
	pthread_mutex_unlock(&fs->lock);
	dir_free(gone[0]);
	dir_free(gone[1]);
}

/* The listing a readdir at off continues, with a reference (dir_done()). */
static int dir_recent(fuse_req_t req, uint64_t ino, off_t off, struct fs_dir **ret)
{
	struct fs *fs = fs_of(req);
	pid_t pid = fuse_req_ctx(req)->pid;
	struct fs_dir *d = NULL;
	int r;

	if (off > 0) {
		pthread_mutex_lock(&fs->lock);
		d = recent_find_locked(fs, ino, pid);
		if (d)
			d->refs++;
		pthread_mutex_unlock(&fs->lock);
		if (d) {
			*ret = d;
			return 0;
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->ino = ino;
	d->sub = row(req, ino);
	d->pid = pid;
	r = dir_fill(fs, req, d);
	if (r < 0) {
		dir_free(d);
		return r;
	}
	recent_add(fs, d);
	*ret = d;
	return 0;
}

/* The listing a readdir serves: its handle's, or a recent one. */
static int dir_get(fuse_req_t req, uint64_t ino, off_t off, struct fuse_file_info *fi,
		   struct fs_dir **ret)
{
	if (fi->fh) {
		*ret = (struct fs_dir *)(uintptr_t)fi->fh;
		return dir_ready(req, *ret);
	}
	return dir_recent(req, ino, off, ret);
}

/* A readdir served from d is answered; ended: it had nothing left. */
static void dir_done(fuse_req_t req, struct fs_dir *d, int ended)
{
	struct fs *fs = fs_of(req);
	int unused;

	if (!d->refs)
		return; /* a handle's (no references): releasedir frees it */
	pthread_mutex_lock(&fs->lock);
	if (ended && d->recent)
		recent_drop_locked(d);
	unused = --d->refs == 0;
	pthread_mutex_unlock(&fs->lock);
	if (unused)
		dir_free(d);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs_dir *h;
	size_t pos = 0, i;
	int r = dir_get(req, ino, off, fi, &h);
	char *buf;

	if (r < 0)
		return fs_reply_err(req, r);
	buf = malloc(size);
	if (!buf) {
		dir_done(req, h, 0);
		return fs_reply_err(req, -ENOMEM);
	}
	for (i = (size_t)off; i < h->nents; i++) {
		struct stat sb = { .st_ino = h->ents[i].ino, .st_mode = h->ents[i].mode };
		size_t n = fuse_add_direntry(req, buf + pos, size - pos, h->ents[i].name,
					     &sb, (off_t)(i + 1));

		if (n > size - pos)
			break;
		pos += n;
	}
	dir_done(req, h, (size_t)off >= h->nents);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

/*
 * An entry's attributes for readdirplus: those its row listed with a
 * timeout (one query per folder, at opendir); others get none (ino 0:
 * the kernel looks them up as after a readdir).
 */
static int plus_attr(const struct dirent_snap *d, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	if (d->timeout <= 0) {
		e->attr.st_ino = d->ino;
		e->attr.st_mode = d->mode;
		return 0;
	}
	e->ino = d->ino;
	e->attr = d->sb;
	e->attr_timeout = e->entry_timeout = d->timeout;
	return 1;
}

/*
 * readdirplus: the entries with their attributes, so that `ls -l`, `du`
 * and `find -size` right after a mount need no lookup per name.  Each
 * entry returned with an inode counts as a lookup (remember()).
 */
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_dir *h;
	size_t pos = 0, i;
	int r = dir_get(req, ino, off, fi, &h);
	char *buf;

	if (r < 0)
		return fs_reply_err(req, r);
	buf = malloc(size);
	if (!buf) {
		dir_done(req, h, 0);
		return fs_reply_err(req, -ENOMEM);
	}
	for (i = (size_t)off; i < h->nents; i++) {
		struct fuse_entry_param e;
		const struct fs_subtree *s;
		int plus = plus_attr(&h->ents[i], &e);
		size_t n = fuse_add_direntry_plus(req, buf + pos, size - pos, h->ents[i].name,
						  &e, (off_t)(i + 1));

		if (n > size - pos)
			break;
		if (plus && (s = fs_subtree_of(fs, e.ino)) && s->ops->remember)
			s->ops->remember(fs, e.ino);
		pos += n;
	}
	dir_done(req, h, (size_t)off >= h->nents);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;

	dir_unlink(fs_of(req), d);
	dir_free(d);
	fs_reply_err(req, 0);
}

/* ---- the whole tree ----------------------------------------------------- */

/*
 * Used is what the store takes on disk, free what its disk has left; the
 * inodes are the catalog's.  find and du ask this once each, so it reads
 * no more than an index count (cas_space()).
 */
static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv, disk;
	const unsigned long bs = 4096;
	uint64_t avail, inodes, packs;
	int r = cas_space(fs->st, &inodes, &packs, &disk);

	if (r < 0)
		return fs_reply_err(req, r);
	avail = (uint64_t)disk.f_bavail * disk.f_frsize;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = bs;
	sv.f_frsize = bs;
	sv.f_blocks = (fsblkcnt_t)((packs + avail) / bs);
	sv.f_bfree = (fsblkcnt_t)(avail / bs);
	sv.f_bavail = sv.f_bfree;
	sv.f_files = (fsfilcnt_t)(inodes + disk.f_favail);
	sv.f_ffree = disk.f_favail;
	sv.f_favail = disk.f_favail;
	sv.f_namemax = NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* Does a row list some folder for some callers only (subtree.h, per_caller)? */
static int listed_per_caller(const struct fs *fs)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(subtrees); i++)
		if (present(fs, &subtrees[i]) && subtrees[i].ops->per_caller &&
		    subtrees[i].ops->per_caller(fs))
			return 1;
	return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Writes go straight to the writer: close() is the commit point. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/*
	 * Folders opened by the kernel alone: a warm find or du asks nothing
	 * ("Listings without opendir").  The kernel then checks a kept
	 * listing against the folder's mtime, asked at each listing's start
	 * when the attributes have expired: auto_inval_data is needed.
	 */
	if ((conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) &&
	    (conn->want & FUSE_CAP_AUTO_INVAL_DATA) && !listed_per_caller(fs))
		fs->no_opendir = 1;
}

/* The session ends: requests kept waiting are answered while they can be. */
static void op_destroy(void *userdata)
{
	struct fs *fs = userdata;
	struct fs_handle *h;
	struct fs_dir *d;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(subtrees); i++)
		if (present(fs, &subtrees[i]) && subtrees[i].ops->end)
			subtrees[i].ops->end(fs);
	/*
	 * Files still open now are never released: each row frees its handles'
	 * own memory (abandon), fs_release() what they refer to.
	 */
	pthread_mutex_lock(&fs->lock);
	while ((h = LIST_FIRST(&fs->open_handles))) {
		LIST_REMOVE(h, link);
		if (h->sub->ops->abandon)
			h->sub->ops->abandon(fs, h->h);
		free(h);
	}
	while ((d = LIST_FIRST(&fs->open_dirs))) {
		LIST_REMOVE(d, link);
		dir_free(d);
	}
	pthread_mutex_unlock(&fs->lock);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.fsyncdir = op_fsyncdir,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.create = op_create,
	.copy_file_range = op_copy_file_range,
	.poll = op_poll,
};

const struct fuse_lowlevel_ops *fs_ops(void)
{
	return &ops;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The store's collector thread ran one: noted for .llmfs/gc, failures logged. */
static void gc_done(void *arg, int64_t freed)
{
	struct fs *fs = arg;

	fs_gc_record(fs, freed, 0);
	if (freed < 0)
		fs_log(fs->log, LOG_ERR, "garbage collection failed: %s",
		       strerror((int)-freed));
}

int fs_init(struct fs *fs, struct cas_store *st, const struct fs_log *log,
	    const struct fs_options *opt_in, const uid_t *trusted_uids,
	    size_t n_trusted_uids)
{
	const struct fs_options opt = *opt_in;
	size_t i;
	int r;

	memset(fs, 0, sizeof(*fs));
	fs->st = st;
	fs->log = log;
	fs->trusted_uids = trusted_uids;
	fs->n_trusted_uids = n_trusted_uids;
	fs->uid = getuid();
	fs->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &fs->started);
	r = table_check(fs);
	if (r < 0)
		return r;
	r = fs_models_init(fs);
	if (r < 0)
		return r;
	pthread_mutex_init(&fs->lock, NULL);
	r = fs_inval_start(fs);
	if (r < 0) {
		fs_models_release(fs);
		return r;
	}
	r = cas_gc_thread_start(st, gc_done, fs);
	if (r < 0) {
		fs_inval_stop(fs);
		fs_models_release(fs);
		return r;
	}
	for (i = 0; i < ARRAY_SIZE(subtrees); i++) {
		r = subtrees[i].ops->start ? subtrees[i].ops->start(fs, &opt) : 0;
		if (r < 0) {
			fs_release(fs);
			return r;
		}
	}
	return 0;
}

void fs_release(struct fs *fs)
{
	size_t i;

	/* A row that never started has nothing to stop: stop() checks. */
	for (i = 0; i < ARRAY_SIZE(subtrees); i++)
		if (subtrees[i].ops->stop)
			subtrees[i].ops->stop(fs);
	cas_gc_thread_stop(fs->st);
	fs_inval_stop(fs);
	fs_models_release(fs);
	pthread_mutex_destroy(&fs->lock);
}
