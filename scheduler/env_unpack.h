/*
 * env_unpack: one layer of an OCI image (a tar, plain, gzip or zstd; libarchive reads it)
 * unpacked into a root filesystem folder, safely against a hostile layer.
 *
 * Invariants, whatever the layer holds:
 *   - nothing is written outside root: every path is resolved beneath root's descriptor
 *     with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so neither ".." nor a symbolic
 *     link (one the layer made, or one an earlier layer made) leads out; a path with a ".."
 *     component, or one through a symbolic link, is refused;
 *   - no device node, fifo or socket is made (refused);
 *   - no file keeps a setuid or setgid bit (cleared; counted in stats);
 *   - hard links point at regular files beneath root only;
 *   - the bytes written, the entries and each path's length are bounded (limits).
 * Whiteouts (".wh.NAME" removes NAME from the layers below, ".wh..wh..opq" empties its
 * folder) are applied as the OCI image spec says.  Files are owned by the unpacking user
 * (root), with their modes less setuid and setgid.
 *
 * A layer that breaks a rule stops the unpacking: -EINVAL (malformed or refused entries),
 * -EFBIG (a limit), -errno from the file system, with the entry named in err.  What was
 * unpacked before stays; the caller throws the folder away (env_rootfs.c builds in a temp
 * folder and renames it when every layer went in).  Nothing here prints; any thread.
 */
#ifndef LLMFS_ENV_UNPACK_H
#define LLMFS_ENV_UNPACK_H

#include <stddef.h>
#include <stdint.h>

struct env_unpack_limits {
	uint64_t max_bytes;      /* file bytes written, all layers together */
	uint64_t max_entries;    /* entries, all layers together */
};

struct env_unpack_stats {
	uint64_t bytes, entries;
	uint64_t setid_cleared;  /* files whose setuid or setgid bit went */
	uint64_t whiteouts;
};

/* Unpacks the layer read from fd (or from buf, len) into the folder root_fd. */
int env_unpack_fd(int root_fd, int fd, const struct env_unpack_limits *lim,
		  struct env_unpack_stats *stats, char *err, size_t errlen);
int env_unpack_mem(int root_fd, const void *buf, size_t len,
		   const struct env_unpack_limits *lim, struct env_unpack_stats *stats,
		   char *err, size_t errlen);

#endif
