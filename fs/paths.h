/*
 * paths.h - /llm/paths: the agent optimal path engine as files.
 *
 *   paths/
 *   ├── .stats              what has been learned (model x task type)
 *   ├── .models             the model cards the planner sees (JSON)
 *   └── <task>/             mkdir makes a task, rmdir removes (cancels) it
 *       ├── task            write the task (text or JSON); read it back
 *       ├── status          queued / planning / running k/n / done / failed: why
 *       ├── plan.json       the chosen path
 *       ├── candidates.json every candidate and its scores
 *       ├── result          the answer: a read blocks until the task ends
 *       ├── trace.jsonl     one line per model call
 *       └── feedback        write a quality in [0, 1]
 *
 * Each file maps onto one call of scheduler/plan_engine.h.  Model cards
 * are the stored models/<model>/card.json (and README.md front matter):
 * the daemon copies them out of the store for the engine, again whenever
 * models/ has changed since, before a task is submitted.
 *
 * Who sees what: paths/ is 1777 (anyone makes a task, only its owner or
 * root removes it); a task folder belongs to the uid and gid of its mkdir,
 * mode 0700 until its owner chmods it.  The kernel checks these
 * (default_permissions); docs/security.md, "Who can see what".
 *
 * The paths/ row of fs_subtrees[] (fs_paths_ops, subtree.h) maps the FUSE
 * requests onto the functions below.
 *
 * Contract: every function is thread-safe (FUSE worker threads) and none
 * blocks: fs_paths_read() of an unfinished result keeps the request and
 * answers it from the paths watcher thread when the task ends, or with
 * EINTR when the kernel interrupts it.  Functions return 0 (or a length)
 * or -errno.
 */
#ifndef LLMFS_FS_PATHS_H
#define LLMFS_FS_PATHS_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fs/fs.h"
#include "fs/subtree.h"

/* Within the range and tag of paths/ in subtree.h. */
#define PATHS_INO FS_PATHS_INO
#define PATHS_STATS_INO (FS_PATHS_INO + 1)
#define PATHS_MODELS_INO (FS_PATHS_INO + 2)
#define PATHS_BIT FS_TAG_BASE(FS_PATHS_TAG)

struct fs_paths;
struct fs_paths_handle;

/*
 * planner names the model that interprets free-text tasks (NULL: none;
 * free text is then one step).  A planner whose card is not there yet is
 * reported in the warnings and used once its card appears.
 */
int fs_paths_open(struct fs *fs, const char *state_dir, const char *planner,
		  struct fs_paths **ret, char **ret_warnings);
void fs_paths_close(struct fs_paths *p);

int fs_paths_lookup(struct fs_paths *p, uint64_t parent, const char *name,
		    uint64_t *ret_ino);
int fs_paths_stat(struct fs_paths *p, uint64_t ino, struct stat *sb);
int fs_paths_list(struct fs_paths *p, uint64_t ino,
		  int (*add)(void *arg, const char *name, uint64_t ino, uint32_t mode),
		  void *arg);
/* A task owned by uid:gid, mode & 0700 (group and others: by chmod). */
int fs_paths_mkdir(struct fs_paths *p, uint64_t parent, const char *name,
		   uid_t uid, gid_t gid, uint32_t mode, uint64_t *ret_ino);
/* The permission bits of a task folder (the kernel checked ownership). */
int fs_paths_chmod(struct fs_paths *p, uint64_t ino, uint32_t mode);
int fs_paths_rmdir(struct fs_paths *p, uint64_t parent, const char *name);

int fs_paths_fopen(struct fs_paths *p, uint64_t ino, int flags,
		   struct fs_paths_handle **ret);
/*
 * Answers req with [off, off + size) of the file: now, or for a result
 * whose task runs, when it ends (EIO if it failed, ENOENT if removed).
 */
void fs_paths_read(struct fs_paths *p, struct fs_paths_handle *h, fuse_req_t req,
		   size_t size, off_t off);
int fs_paths_write(struct fs_paths *p, struct fs_paths_handle *h,
		   const char *buf, size_t len, off_t off);
int fs_paths_flush(struct fs_paths *p, struct fs_paths_handle *h);
void fs_paths_release(struct fs_paths *p, struct fs_paths_handle *h);
/* Poll on a result: POLLIN once the task has ended; ph is notified then. */
int fs_paths_poll(struct fs_paths *p, struct fs_paths_handle *h,
		  struct fuse_pollhandle *ph, unsigned *ret_events);
/*
 * Answers every kept request (EINTR) and stops the watcher: the session's
 * destroy calls it, before libfuse frees what requests point to.
 */
void fs_paths_drain(struct fs_paths *p);

#endif
