/*
 * ccache.h - a small cache of decoded, verified chunks.
 *
 * FUSE reads arrive in pieces of at most 1 MiB that rarely line up with
 * chunk boundaries; the cache lets consecutive reads share one decode, and
 * lets read-ahead workers decode the next chunks of a sequential reader on
 * the other cores.  Only verified bytes enter it.
 *
 * Contract: thread-safe (one mutex, not held while a reader copies: the
 * slot is pinned meanwhile).  Keyed by chunk id, so it never needs
 * invalidating: a chunk's bytes never change.  Least recently used slots
 * that no reader is copying from are reused.
 */
#ifndef LLMFS_CCACHE_H
#define LLMFS_CCACHE_H

#include <stddef.h>

#include "backend/store/hash.h"

struct ccache;

struct ccache *ccache_new(size_t nslots, size_t slot_bytes);
void ccache_free(struct ccache *c);

/*
 * Copies bytes [off, off + len) of a cached chunk, waiting while a worker
 * is loading it; -ENOENT when it is neither cached nor loading.
 */
int ccache_read(struct ccache *c, const struct cas_id *id, size_t off,
		void *dst, size_t len);
/*
 * Claims a slot to decode chunk id into, so that the bytes are decoded
 * straight into the cache and concurrent readers wait for them instead of
 * decoding again.  Returns the slot's buffer (slot_bytes long), or NULL when
 * the chunk is cached or being loaded, or every slot is busy.
 */
uint8_t *ccache_begin(struct ccache *c, const struct cas_id *id);
/* Ends a claim: len > 0 makes the chunk readable, 0 drops the slot. */
void ccache_end(struct ccache *c, const struct cas_id *id, size_t len);

#endif
