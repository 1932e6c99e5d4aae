/*
 * subtree.h - the top-level folders of the tree, one table row each.
 *
 * The root holds one folder per subtree (models/, paths/, net/, .llmfs/).
 * The table subtrees[] in ops.c has one row per subtree (struct
 * fs_subtree): its folder's name, the inodes it owns (the ranges below)
 * and the operations it implements (struct fs_subtree_ops, one file each).  ops.c finds the row
 * that owns a request's inode (the parent's for lookup, mkdir, create,
 * unlink, rmdir, rename; the handle's row once a file is open) and hands
 * the request to it: no operation branches on the subtree.  Adding a
 * subtree is adding one file with its struct fs_subtree_ops, one row, and
 * its range and tag below.
 *
 * The inode space, every number of it given here:
 *
 *   inode                      owner     what
 *   1                          (root)    the root
 *   2                          train/    the folder
 *   3                          mining/   the folder
 *   12                         envs/     the folder
 *   13 .. 15                   -         free: the next subtrees' folders
 *   4 .. 6                     paths/    the folder, .stats, .models
 *   7                          net/      the folder
 *   8 .. 11                    .llmfs/   the folder, status, gc, transfers
 *   16 .. 2^56 - 1             models/   the catalog's inodes (16: models/)
 *   model | kind << 56         models/   kind 1..4 (bits 56-59): a model's
 *                                        .smip folder, manifest.json, info,
 *                                        tensors
 *   tag << 60 | n              the row   bits 60-63 name a subtree's own
 *                              with tag  numbering: 2 paths/, 3 train/, 4 net/,
 *                                        5 mining/
 *                                        6 envs/
 *
 * An inode with a tag belongs to the row with that tag; any other to the
 * row whose range [lo, hi] holds it.  A row whose subtree is off (no
 * remotes file, paths/ failed to start) owns nothing: the root does not
 * list it and its inodes are ENOENT.
 *
 * Contract of struct fs_subtree_ops: every operation runs on a libfuse
 * worker thread (start and stop: the daemon's main thread), may block
 * only as its subtree documents (net/ on the network), and returns 0 (or
 * a length) or -errno; ops.c answers the request.  The one exception is
 * read, which answers req itself (paths/ answers a result when its task
 * ends, from its watcher thread).  req is there for
 * the caller's credentials (fuse_req_ctx(), fuse_req_getgroups()).
 * An operation a row leaves NULL gets the answer a local filesystem gives
 * for an entry it does not allow: EPERM for namespace changes, EINVAL for
 * readlink, ENOTDIR for a listing.  Handles: open and create return the
 * subtree's own handle (void *), which ops.c hands back to read, write,
 * flush, fsync, setattr, poll, the copies and release.
 */
#ifndef LLMFS_FS_SUBTREE_H
#define LLMFS_FS_SUBTREE_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "backend/store/catalog.h"
#include "fs/fs.h"

/* ---- the inode space ----------------------------------------------------- */

#define FS_INO_ROOT 1

#define FS_PATHS_INO 4
#define FS_PATHS_LAST 6
#define FS_PATHS_TAG 2ULL

#define FS_TRAIN_INO 2
#define FS_TRAIN_LAST 2
#define FS_TRAIN_TAG 3ULL

#define FS_NET_INO 7
#define FS_NET_LAST 7
#define FS_NET_TAG 4ULL

#define FS_MINING_INO 3
#define FS_MINING_LAST 3
#define FS_MINING_TAG 5ULL
#define FS_ENVS_INO 12
#define FS_ENVS_LAST 12
#define FS_ENVS_TAG 6ULL

#define FS_CTL_INO 8
#define FS_CTL_LAST 11

#define FS_MODELS_INO CAT_ROOT_INO
#define FS_MODELS_LAST ((1ULL << FS_TAG_SHIFT) - 1)

#define FS_TAG_SHIFT 60
#define FS_TAG(ino) ((uint64_t)(ino) >> FS_TAG_SHIFT)
/* The first inode of a tagged numbering: tag << 60. */
#define FS_TAG_BASE(tag) ((uint64_t)(tag) << FS_TAG_SHIFT)

/* st_blksize: cp and cat size their buffers by it. */
#define FS_IO_BLOCK (1024 * 1024)
/*
 * How long the kernel may keep models/ names, attributes and listings: a
 * day, since every change it does not make itself is announced
 * (fs/inval.h: a commit's mtime, a folder made by train/ or mining/).
 * Other rows answer with 0: their files change on their own (job states,
 * metrics, status).
 */
#define FS_MODELS_TIMEOUT 86400.0

/* ---- the operations ------------------------------------------------------ */

struct fs_subtree;

/* What fs_init() was given for the subtrees (kept by reference). */
struct fs_options {
	const char *planner; /* paths/: the model for free-text tasks, or NULL */
	const char *remotes; /* net/: the remotes file */
	const char *mountpoint; /* train/: where its jobs find the tree (absolute) */
	unsigned train_jobs;    /* train/: jobs run at once; 0: one */
	const char *mining_listen; /* mining/: the replicas' server, HOST:PORT (NULL: 127.0.0.1:0) */
	const char *mining_url;    /* mining/: the URL replicas are given (NULL: from the listen) */
	int has_env_group;      /* envs/: env_group may make envs too (else root alone) */
	gid_t env_group;
	const char *const *env_binds; /* envs/: folders env.json may bind from */
	size_t n_env_binds;
	const char *env_serve;  /* envs/: the llmfs-serve program; NULL: looked for */
};

typedef int (*fs_add_fn)(void *arg, const char *name, uint64_t ino, uint32_t mode);
/* An entry with its attributes, valid for timeout seconds (readdirplus). */
typedef int (*fs_add_plus_fn)(void *arg, const char *name, const struct stat *sb,
			      double timeout);

struct fs_subtree_ops {
	/*
	 * fs_init() starts the rows in table order after the store's own
	 * state, fs_release() stops them in the same order (NULL: nothing to
	 * do).  start may leave its subtree off (present() false) and return
	 * 0; an error stops the daemon.
	 */
	int (*start)(struct fs *fs, const struct fs_options *opt);
	void (*stop)(struct fs *fs);
	/* Is the subtree on (NULL: always)? */
	int (*present)(const struct fs *fs);

	/* Names and attributes. */
	int (*lookup)(struct fs *fs, fuse_req_t req, uint64_t parent,
		      const char *name, uint64_t *ret_ino);
	/* *ret_timeout (0 on entry): how long the kernel may keep sb. */
	int (*getattr)(struct fs *fs, uint64_t ino, struct stat *sb,
		       double *ret_timeout);
	/* The kernel holds one more lookup of ino / n fewer (NULL: not counted). */
	void (*remember)(struct fs *fs, uint64_t ino);
	void (*forget)(struct fs *fs, uint64_t ino, uint64_t n);
	/* h: the handle the change came through, or NULL (truncate(2)). */
	int (*setattr)(struct fs *fs, fuse_req_t req, uint64_t ino,
		       const struct stat *attr, int to_set, void *h,
		       struct stat *ret, double *ret_timeout);
	int (*readlink)(struct fs *fs, fuse_req_t req, uint64_t ino, char **ret);
	int (*list)(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add,
		    void *arg);
	/*
	 * Optional: list() with each entry's attributes, from the one query
	 * that lists the folder, for readdirplus; an entry added with timeout
	 * 0 is listed without (the kernel looks it up).
	 */
	int (*list_plus)(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_plus_fn add,
			 void *arg);
	/*
	 * Optional: may the kernel keep ino's listing (FOPEN_CACHE_DIR) until
	 * told otherwise?  Only a row that announces every change of the
	 * folder the kernel does not make itself (fs/inval.h) says yes; the
	 * listing is then made at the first readdir, not at opendir, so that
	 * an opendir the kernel answers from its cache costs no query.
	 */
	int (*cache_listing)(struct fs *fs, uint64_t ino);
	/*
	 * Optional: does some folder of the row list for some callers and
	 * not others, beyond what its mode lets the kernel check (net/: a
	 * remote's "users")?  Asked once, at the session's start.  If no row
	 * says yes, the kernel opens folders alone (FUSE_NO_OPENDIR_SUPPORT):
	 * it keeps every listing, checks it against the folder's mtime at
	 * each listing's start, and folders without cache_listing get a new
	 * mtime at each getattr (fs/ops.c).  If one does, every opendir
	 * asks the daemon, which checks the caller.
	 */
	int (*per_caller)(const struct fs *fs);

	/* Namespace changes, in the parent's row. */
	int (*mknod)(struct fs *fs, fuse_req_t req, uint64_t parent,
		     const char *name, uint32_t mode, uint64_t *ret_ino);
	int (*mkdir)(struct fs *fs, fuse_req_t req, uint64_t parent,
		     const char *name, uint32_t mode, uint64_t *ret_ino);
	int (*symlink)(struct fs *fs, fuse_req_t req, uint64_t parent,
		       const char *name, const char *target, uint64_t *ret_ino);
	int (*unlink)(struct fs *fs, fuse_req_t req, uint64_t parent,
		      const char *name);
	int (*rmdir)(struct fs *fs, fuse_req_t req, uint64_t parent,
		     const char *name);
	/* Both parents lie in this row (ops.c refuses others with EPERM). */
	int (*rename)(struct fs *fs, fuse_req_t req, uint64_t parent,
		      const char *name, uint64_t newparent, const char *newname,
		      unsigned flags);

	/*
	 * Files.  open and create set fi's cache flags (direct_io,
	 * keep_cache) and return the subtree's handle; create returns the new
	 * inode too, whose attributes ops.c then asks getattr for.
	 */
	int (*open)(struct fs *fs, fuse_req_t req, uint64_t ino,
		    struct fuse_file_info *fi, void **ret_h);
	int (*create)(struct fs *fs, fuse_req_t req, uint64_t parent,
		      const char *name, uint32_t mode, struct fuse_file_info *fi,
		      uint64_t *ret_ino, void **ret_h);
	/* Answers req: the bytes, or an error. */
	void (*read)(struct fs *fs, fuse_req_t req, void *h, uint64_t ino,
		     size_t size, off_t off);
	int (*write)(struct fs *fs, fuse_req_t req, void *h, uint64_t ino,
		     const char *buf, size_t size, off_t off);
	int (*flush)(struct fs *fs, void *h);
	int (*fsync)(struct fs *fs, void *h);
	void (*release)(struct fs *fs, void *h);
	/* The session ended with h open: free h alone, nothing it refers to. */
	void (*abandon)(struct fs *fs, void *h);
	/* The session ends: answer requests kept waiting (EINTR). */
	void (*end)(struct fs *fs);
	/* *ret_events holds every event on entry (NULL op: always ready). */
	int (*poll)(struct fs *fs, void *h, struct fuse_pollhandle *ph,
		    unsigned *ret_events);

	/*
	 * copy_file_range().  copy_range runs a copy with either end in this
	 * row (ops.c asks the output's row first, then the input's); it may
	 * use the other end's copy_out (bytes into a store writer, sharing
	 * chunks where it can) or copy_in (bytes out of a store file).  All
	 * three return the bytes copied (a slice through memory where offsets
	 * do not allow sharing chunks; 0 at the end of the input) or -errno.
	 */
	ssize_t (*copy_range)(struct fs *fs, const struct fs_subtree *in_sub,
			      void *in, uint64_t ino_in, off_t off_in,
			      const struct fs_subtree *out_sub, void *out,
			      uint64_t ino_out, off_t off_out, size_t len);
	ssize_t (*copy_out)(struct fs *fs, void *h, uint64_t off_in, size_t len,
			    struct cas_writer *w, uint64_t off_out);
	ssize_t (*copy_in)(struct fs *fs, void *h, uint64_t off_out,
			   struct cas_file *src, uint64_t off_in, size_t len);
};

struct fs_subtree {
	const char *name;  /* its folder in the root */
	uint64_t lo, hi;   /* the inodes it owns: [lo, hi] (lo: its folder) */
	uint64_t tag;      /* and every inode with these bits 60-63 (0: none) */
	const struct fs_subtree_ops *ops;
};

/* The rows' operations, one file each. */
extern const struct fs_subtree_ops fs_models_ops; /* fs/models.c */
extern const struct fs_subtree_ops fs_paths_ops;  /* fs/paths.c */
extern const struct fs_subtree_ops fs_net_ops;    /* fs/net.c */
extern const struct fs_subtree_ops fs_ctl_ops;    /* fs/ctl.c */
extern const struct fs_subtree_ops fs_train_ops;  /* fs/train.c */
extern const struct fs_subtree_ops fs_mining_ops; /* fs/mining.c */
extern const struct fs_subtree_ops fs_envs_ops;   /* fs/envs.c */

/* The row that owns ino, or NULL (the root, a free number, a row off). */
const struct fs_subtree *fs_subtree_of(const struct fs *fs, uint64_t ino);

/* ---- what the rows share (ops.c) ----------------------------------------- */

/* Answers req with errno -r (r <= 0; 0 is success). */
void fs_reply_err(fuse_req_t req, int r);
/* Answers a read of [off, off + size) of a text from a copy of it. */
void fs_reply_text(fuse_req_t req, const char *text, size_t len, size_t size,
		   off_t off);
/* The attributes of a generated file or folder, owned by the daemon. */
void fs_virt_stat(const struct fs *fs, uint64_t ino, uint32_t mode,
		  uint64_t size, struct stat *sb);
/* Ask the GC thread for a collection soon; note one's result. */
void fs_gc_want(struct fs *fs);
void fs_gc_record(struct fs *fs, int64_t freed, int requested);

/*
 * models/ (fs/models.c): the open-node table, made before the rows start
 * and freed after the GC thread has stopped; a change under models/ makes
 * the cached .smip texts stale (paths/ copies cards again).
 */
int fs_models_init(struct fs *fs);
void fs_models_release(struct fs *fs);
void fs_models_changed(struct fs *fs);

/*
 * envs/ (fs/envs.c): a model card for each running env with an endpoint
 * (scheduler/env.h, struct env_card; env_cards_free() frees them), for
 * paths/; none while envs/ is off.
 */
struct env_card;
int fs_envs_cards(struct fs *fs, struct env_card **ret, size_t *ret_n);

#endif
