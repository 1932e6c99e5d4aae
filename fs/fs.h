/*
 * fs.h - the FUSE tree over the store.
 *
 *   /                       the root (inode 1), fixed
 *   ├── models/             the store's namespace (fs/models.c, backend/store/store.h)
 *   │   └── <model>/
 *   │       └── .smip/      hidden: absent from readdir, found by lookup
 *   │           ├── manifest.json
 *   │           ├── info
 *   │           └── tensors
 *   ├── paths/              agent optimal paths (fs/paths.h)
 *   ├── net/                models on OCI registries (fs/net.h)
 *   ├── train/              training jobs as folders (fs/train.c)
 *   ├── envs/               models run in containers (fs/envs.c)
 *   └── .llmfs/             control files (fs/ctl.c)
 *       ├── status          store size, logical size, dedup, compression
 *       ├── gc              write "gc": collect and compact now; read: result
 *       └── transfers       pulls and pushes of net/
 *
 * Subtrees: each top-level folder is one row of a table (fs/subtree.h):
 * its name, the inodes it owns and its operations.  fs_ops() finds the row
 * that owns a request's inode and hands the request to it; the root
 * itself, statfs and the open-handle list are all ops.c does on its own.
 * A new top-level folder is one file with its struct fs_subtree_ops, one
 * row in ops.c and its inode range in subtree.h.
 *
 * Inode numbers (every range in fs/subtree.h): 1 the root; small fixed
 * numbers for the folders and files of train/ (2), paths/ (4-6), net/ (7)
 * and .llmfs/ (8-11); catalog inodes as they are (models/ is CAT_ROOT_INO,
 * 16); a model's .smip folder and files are its inode with a kind 1-4 in
 * bits 56-59; paths/, train/ and net/ number their own nodes under a tag
 * in bits 60-63 (2, 3 and 4).
 *
 * Contract: the ops run on libfuse's worker threads.  Every error answer
 * goes through fs_reply_err() (subtree.h) with -errno.  Lock order, outer
 * first; a lock is only ever taken while holding locks to its left:
 *
 *   fs_node.wlock (one models/ file's writer; held across a pull's
 *     fs_net_copy_out())
 *   -> fs_net_handle.lock (one open net/ file's reader; the one lock held
 *     across a fetch, and only other reads of that file wait on it)
 *   -> the registry wing's leaves (backend/registry: a model's layer
 *     copies, a push's file table, the transfer list; never held across a
 *     network call)
 *   -> fs.lock (the open-node table, open handles, the GC record, .smip
 *     cache; never held together with a net/ lock)
 *   -> the store's locks (backend/store/store_i.h: gc_lock, reserve_lock,
 *     lock, then the pack set's and chunk cache's own).
 * fs_net.lock (net/ nodes, listings, tags and their entries) is taken
 * alone, never across a call into the registry wing or the store.
 *
 * paths/ keeps its own order (fs/paths.c: mkdir_lock -> the engine's lock
 * -> fs_paths.lock) and takes no lock of models/ or net/; below its locks
 * come only the store's.  train/ takes fs_train.lock and the job table's
 * lock (scheduler/train_job.c) one at a time, never one inside the other.
 * The invalidation queue's lock (fs/inval.c) is a leaf, never held while
 * a notification is sent.  A park's lock (fs/park.c: parked reads of
 * paths/ and train/ results) is a leaf: the engine's and the job table's on_change take it under their
 * own lock, and the park calls back (result) with it released.
 */
#ifndef LLMFS_FS_H
#define LLMFS_FS_H

#define FUSE_USE_VERSION 312

#include <pthread.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <time.h>

#include <fuse_lowlevel.h>

#include "backend/store/store.h"
#include "fs/log.h"

struct fs_models;
struct fs_paths;
struct fs_net;
struct fs_train;
struct fs_mining;
struct fs_envs;
struct fs_options;
struct fs_inval;

struct fs {
	struct cas_store *st;
	const struct fs_log *log;
	uid_t uid;
	gid_t gid;
	struct timespec started; /* the root's times (fs/ops.c, root_stat) */
	/*
	 * The models/ row's nodes and .smip cache (fs/models.c), the open
	 * handles, each node's open counts and snapshot, and the GC record.
	 */
	pthread_mutex_t lock;
	/* What the store's GC thread (cas_gc_thread_start()) reported: */
	uint64_t gc_runs;    /* collections done, for .llmfs/gc */
	uint64_t gc_freed;   /* bytes they gave back */
	int64_t gc_request;  /* the last requested one's bytes freed, or -errno */
	/* Open files and folders of every row (guarded by lock): freed if the session ends first. */
	LIST_HEAD(, fs_handle) open_handles;
	LIST_HEAD(, fs_dir) open_dirs;
	/*
	 * Folders are opened by the kernel alone (FUSE_NO_OPENDIR_SUPPORT,
	 * set at init): open_dirs then holds the recent listings readdir
	 * continues, and dir_stamp is the last mtime given to a folder the
	 * kernel must list afresh (fs/ops.c, "Listings without opendir").
	 */
	int no_opendir;
	_Atomic uint64_t dir_stamp;
	/* Each subtree's own state (NULL while it is off). */
	struct fs_models *models;      /* /llm/models (fs/models.c) */
	struct fs_paths *paths;        /* /llm/paths */
	struct fs_net *net;            /* /llm/net */
	struct fs_train *train;        /* /llm/train, or NULL */
	struct fs_mining *mining;      /* /llm/mining, or NULL */
	struct fs_envs *envs;          /* /llm/envs, or NULL (fs/envs.c) */
	_Atomic uint64_t models_gen;   /* bumped by every change under models/ */
	/* The thread that tells the kernel of changes it did not see (fs/inval.h). */
	struct fs_inval *inval;
	/* Owners besides the daemon's uid whose model cards may run commands
	 * or read keys (--trusted-uid; docs/security.md). */
	const uid_t *trusted_uids;
	size_t n_trusted_uids;
};

/*
 * opt: what the subtrees are given (fs/subtree.h, struct fs_options: the
 * planner of paths/, the remotes file of net/, the mount point and job
 * count of train/; kept by reference); trusted_uids: n owners whose cards
 * may run commands (kept by reference).
 */
int fs_init(struct fs *fs, struct cas_store *st, const struct fs_log *log,
	    const struct fs_options *opt, const uid_t *trusted_uids,
	    size_t n_trusted_uids);
void fs_release(struct fs *fs);
const struct fuse_lowlevel_ops *fs_ops(void);

#endif
