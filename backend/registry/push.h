/*
 * push.h - a tag being written to push (struct reg_push): its files,
 * symlinks and folders, each file or symlink an orphan inode of the store
 * with a writer while open, and the push of the whole tag after a file is
 * committed.
 *
 *   fs/net.c ──► push_add() / push_open() / push_write() ... (local only)
 *            ──► push_commit(), then push_tag(): with no lock held,
 *                    smip_push() (or smip_push_modelpack()): blobs the
 *                    repository lacks, blobs of the sources mounted, the
 *                    manifest last
 *                        │
 *                        ▼
 *                   backend/store (never fs/)
 *
 * Contract: thread-safe.  The push's lock is a leaf held for local work
 * only (the file table, writers, commits), never across a network call:
 * a stat, read or write of the push answers while an upload runs.  Pushes
 * of one tag run one at a time (push_tag() waits for the running one,
 * then pushes what is committed by then); only pushes wait for a push.  An
 * index names a file for the push's lifetime.  Calls return 0 (or a
 * length) or -errno; push_tag() gives a reason in err.  Nothing prints.
 */
#ifndef LLMFS_BACKEND_REGISTRY_PUSH_H
#define LLMFS_BACKEND_REGISTRY_PUSH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/registry/oci.h"
#include "backend/registry/smipnet.h"
#include "backend/registry/transfers.h"
#include "backend/store/store.h"

struct reg_push;

/*
 * A push of repo:tag through c (not owned) on the remote named remote;
 * modelpack: push plain ModelPack artifacts instead of SMIP.  Its files
 * belong to uid and gid in the store.
 */
int push_new(struct cas_store *st, struct oci_client *c, const char *remote,
	     int modelpack, const char *repo, const char *tag, uint32_t uid,
	     uint32_t gid, struct reg_push **ret);
/* Frees writers and orphan inodes; no push may run (NULL: nothing). */
void push_free(struct reg_push *p);

/*
 * Adds the entry path (a file, symlink with target, or folder) and returns
 * its index; files and symlinks get an orphan inode of the store.  The
 * caller keeps names unique.
 */
int push_add(struct reg_push *p, const char *path, uint32_t mode,
	     const char *target, size_t *ret_idx);

/* An open of file idx: for writing (a writer, emptied with trunc) or not. */
int push_open(struct reg_push *p, size_t idx, int writable, int trunc);
/* The matching close: the writer goes with the last open. */
void push_close(struct reg_push *p, size_t idx);

int push_write(struct reg_push *p, size_t idx, const void *buf, size_t size,
	       uint64_t off);
int push_truncate(struct reg_push *p, size_t idx, uint64_t size);
/* copy_file_range() from a store file: chunks are shared, not copied. */
ssize_t push_share(struct reg_push *p, size_t idx, struct cas_file *src,
		   uint64_t off_in, size_t len, uint64_t off_out);
ssize_t push_read(struct reg_push *p, size_t idx, void *buf, size_t size,
		  uint64_t off);
/* The size a stat reports: the writer's, else the committed one. */
int push_size(struct reg_push *p, size_t idx, uint64_t *ret_size);
int push_readlink(struct reg_push *p, size_t idx, char **ret);

/* Commits file idx if it has uncommitted writes: 1 if it had, 0, or -errno. */
int push_commit(struct reg_push *p, size_t idx);
/*
 * Pushes every entry of the tag as committed now.  src[0..nsrc): models of
 * other repositories of the registry whose blobs may be mounted, all of
 * them.  Returns 0, or -EACCES, -ENOSPC or -EIO with a reason in err.
 */
int push_tag(struct reg_push *p, const struct smip_source *src, size_t nsrc,
	     struct xfer_list *xl, struct smip_push_stats *stats, char *err,
	     size_t errlen);

#endif
