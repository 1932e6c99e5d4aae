/*
 * ccache.h - a small cache of decoded, verified chunks.
 *
 * FUSE reads arrive in pieces of at most 1 MiB that rarely line up with
 * chunk boundaries; the cache lets consecutive reads share one decode, and
 * lets read-ahead workers decode the next chunks of a sequential reader on
 * the other cores.  Only verified bytes enter it.
 *
 * Contract: thread-safe (one mutex).  Keyed by chunk id, so it never needs
 * invalidating: a chunk's bytes never change.  Least recently used slots
 * are reused.
 */
#ifndef LLMFS_CCACHE_H
#define LLMFS_CCACHE_H

#include <stddef.h>

#include "backend/hash.h"

struct ccache;

struct ccache *ccache_new(size_t nslots, size_t slot_bytes);
void ccache_free(struct ccache *c);

/* Copies bytes [off, off + len) of a cached chunk; -ENOENT on a miss. */
int ccache_read(struct ccache *c, const struct cas_id *id, size_t off,
		void *dst, size_t len);
/* Inserts a verified chunk (no-op if present or too large). */
void ccache_put(struct ccache *c, const struct cas_id *id, const void *data,
		size_t len);
/*
 * Claims a chunk for loading by a read-ahead worker: 0 if the caller should
 * load it, -EEXIST if it is cached or being loaded.  ccache_put() or
 * ccache_unclaim() ends the claim.
 */
int ccache_claim(struct ccache *c, const struct cas_id *id);
void ccache_unclaim(struct ccache *c, const struct cas_id *id);

#endif
