/*
 * fs.h - the FUSE tree over the store.
 *
 *   /                       fixed
 *   ├── models/             the store's namespace (backend/store/store.h)
 *   │   └── <model>/
 *   │       └── .smip/      hidden: absent from readdir, found by lookup
 *   │           └── manifest.json
 *   ├── paths/              agent optimal paths (fs/paths.h)
 *   └── .llmfs/
 *       ├── status          store size, logical size, dedup, compression
 *       └── gc              write "gc": collect and compact now; read: result
 *
 * Inode numbers: catalog inodes as they are (models/ is CAT_ROOT_INO);
 * fixed small numbers for the root and .llmfs; a model's .smip folder and
 * manifest are its inode with bit 62 or 63 set.
 *
 * Contract: the ops run on libfuse's worker threads.  Lock order:
 * node->wlock (one file's writer) -> fs->lock (the open-node table) -> the
 * store's locks.  Every error path returns through fs_reply_err() with a
 * positive errno.
 */
#ifndef LLMFS_FS_H
#define LLMFS_FS_H

#define FUSE_USE_VERSION 312

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

#include "backend/store/store.h"
#include "fs/log.h"

struct fs_node;
struct fs_paths;
struct fs_net;

struct fs {
	struct cas_store *st;
	const struct fs_log *log;
	uid_t uid;
	gid_t gid;
	pthread_mutex_t lock; /* nodes and each node's open counts and snap */
	struct fs_node **nodes;
	size_t nodecap;
	/* Collections by the store's thread (cas_gc_thread_start()), for .llmfs/gc. */
	uint64_t gc_runs;    /* collections done, for .llmfs/gc */
	uint64_t gc_freed;   /* bytes they gave back */
	int64_t gc_request;  /* the last requested one's bytes freed, or -errno */
	struct fs_paths *paths;        /* /llm/paths, or NULL */
	/* Open models/ and paths/ files (guarded by lock): freed if the session ends first. */
	struct fs_handle *open_handles;
	struct fs_net *net;            /* /llm/net */
	/*
	 * The last .smip texts made (manifest, info, tensors): a stat and the
	 * open that follows it would otherwise each walk the model and parse
	 * its headers.  Valid while models_gen is unchanged.  Guarded by lock.
	 */
	struct fs_vtext {
		uint64_t ino, gen;
		char *text;
		size_t len;
	} vcache[8];
	unsigned vnext;
	_Atomic uint64_t models_gen;   /* bumped by every change under models/ */
	/* Owners besides the daemon's uid whose model cards may run commands
	 * or read keys (--trusted-uid; docs/security.md). */
	const uid_t *trusted_uids;
	size_t n_trusted_uids;
};

/*
 * planner: the model (a card under models/) that interprets free-text
 * tasks, or NULL; remotes: the remotes file of net/ (oci.h); trusted_uids:
 * n owners whose cards may run commands (kept by reference).
 */
int fs_init(struct fs *fs, struct cas_store *st, const struct fs_log *log,
	    const char *planner, const char *remotes,
	    const uid_t *trusted_uids, size_t n_trusted_uids);
void fs_release(struct fs *fs);
const struct fuse_lowlevel_ops *fs_ops(void);

#endif
