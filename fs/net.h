/*
 * net.h - /llm/net: models on OCI registries as files.
 *
 *   net/
 *   └── <remote>/                 one per configured remote (oci.h)
 *       └── <repo path>/          repositories: the catalog API, or the
 *           │                     configured list; '/' makes folders
 *           └── <tag>/            one model: its files, read lazily
 *               ├── model.gguf ...
 *               └── .smip/        hidden: manifest.json (the SMIP manifest
 *                                 or the OCI manifest), info
 *
 * Reading a file fetches only the chunks (SMIP) or byte ranges (other
 * layouts) it needs, with read-ahead for sequential readers; fetched SMIP
 * chunks are checked and kept in the store.  copy_file_range() from a net
 * file into models/ (what cp does) is a pull: every chunk the store lacks
 * is fetched, and the new file is made of the stored chunks without
 * recompressing them.  A folder made in a repository (or NAME:TAG made
 * anywhere under a remote: repository path/NAME, tag TAG) is a push: files
 * copied into it are uploaded when they are closed, chunks the repository
 * lacks only, and the tag is written after its blobs.
 *
 * Inodes: NET_INO for net/, NET_BIT | n for the n-th node looked up.
 *
 * The net/ row of fs_subtrees[] (fs_net_ops, subtree.h) maps the FUSE
 * requests onto the functions below, checking fs_net_may() for the
 * requests that name a remote's entries.
 *
 * Contract: thread-safe (FUSE workers); returns 0 (or a length) or -errno;
 * failures are logged with the remote's message, never with credentials.
 */
#ifndef LLMFS_FS_NET_H
#define LLMFS_FS_NET_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fs/fs.h"
#include "fs/subtree.h"

/* The folder and the tag of net/ in subtree.h. */
#define NET_INO FS_NET_INO
#define NET_BIT FS_TAG_BASE(FS_NET_TAG)

struct fs_net;
struct fs_net_handle;

/* config: the remotes file (oci_config_load()); absent: no remotes. */
int fs_net_open(struct fs *fs, const char *config, struct fs_net **ret,
		char *err, size_t errlen);
void fs_net_close(struct fs_net *n);

int fs_net_owns(uint64_t ino);
/*
 * May uid use what ino stands for?  0, or -EACCES when ino lies in a
 * remote whose "users" (docs/remotes.md) do not name uid; net/ itself is
 * open to all.  Root and the daemon's own user may use every remote.
 */
int fs_net_may(struct fs_net *n, uint64_t ino, uid_t uid);
/*
 * Does a remote admit some users but not all (its "users")?  Its folders
 * then list for some callers and not others, which their mode cannot say.
 */
int fs_net_per_caller(const struct fs_net *n);
int fs_net_lookup(struct fs_net *n, uint64_t parent, const char *name,
		  uint64_t *ret_ino);
int fs_net_stat(struct fs_net *n, uint64_t ino, struct stat *sb);
int fs_net_list(struct fs_net *n, uint64_t ino,
		int (*add)(void *arg, const char *name, uint64_t ino, uint32_t mode),
		void *arg);
int fs_net_readlink(struct fs_net *n, uint64_t ino, char **ret);
int fs_net_mkdir(struct fs_net *n, uint64_t parent, const char *name,
		 uint32_t mode, uint64_t *ret_ino);
int fs_net_create(struct fs_net *n, uint64_t parent, const char *name,
		  uint32_t mode, uint64_t *ret_ino, struct fs_net_handle **ret);
int fs_net_symlink(struct fs_net *n, uint64_t parent, const char *name,
		   const char *target, uint64_t *ret_ino);
int fs_net_fopen(struct fs_net *n, uint64_t ino, int flags,
		 struct fs_net_handle **ret);
ssize_t fs_net_read(struct fs_net *n, struct fs_net_handle *h, void *buf,
		    size_t size, uint64_t off);
int fs_net_write(struct fs_net *n, struct fs_net_handle *h, const void *buf,
		 size_t size, uint64_t off);
int fs_net_truncate(struct fs_net *n, struct fs_net_handle *h, uint64_t size);
/* A file written into a push: committed, then the tag is pushed. */
int fs_net_flush(struct fs_net *n, struct fs_net_handle *h);
void fs_net_release(struct fs_net *n, struct fs_net_handle *h);

/*
 * copy_file_range() out of a net file into a store writer (a pull) and out
 * of a store file into a push.  Return the bytes copied, 0 when the offsets
 * do not allow sharing chunks (the caller copies bytes), or -errno.
 */
ssize_t fs_net_copy_out(struct fs_net *n, struct fs_net_handle *h,
			uint64_t off_in, size_t len, struct cas_writer *w,
			uint64_t off_out);
ssize_t fs_net_copy_in(struct fs_net *n, struct fs_net_handle *h,
		       uint64_t off_out, struct cas_file *src, uint64_t off_in,
		       size_t len);

/* The text of /llm/.llmfs/transfers (malloc()ed). */
int fs_net_transfers(struct fs_net *n, char **ret, size_t *ret_len);

#endif
