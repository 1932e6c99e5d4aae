/*
 * catalog.h - the sqlite catalog: namespace, file contents, chunks, packs.
 *
 * Contract: one struct cat wraps one sqlite connection in WAL mode with
 * synchronous=FULL, so a committed transaction survives a crash of the
 * daemon or the machine.  Not thread-safe: the store serialises every call
 * under its own mutex.  Every function returns 0 (or a count) on success and
 * -errno on failure; sqlite errors are translated in one place
 * (errno_of_sqlite(), common/errmap.h).  Changes are made inside cat_begin()/cat_commit(); a
 * function never commits on its own.
 *
 * Invariants kept by the store through this module:
 *  - chunks.refs is the number of times the chunk id occurs in the chunk
 *    lists of all inodes, linked or orphaned;
 *  - every chunk row points into a pack whose packs.size covers it, and
 *    packs.live is the sum of its chunk records (header + encoded bytes);
 *  - an inode with nlink = 0 is an orphan kept for open handles: parent 0,
 *    name "#<ino>"; it is deleted at last close or at the next start.
 */
#ifndef LLMFS_CATALOG_H
#define LLMFS_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "backend/store/hash.h"
#include "backend/store/pack.h"

/* The catalog format this code writes; newer catalogs are refused. */
#define CAT_FORMAT 1
/* The inode of the models/ folder, the root of the stored namespace. */
#define CAT_ROOT_INO 16

struct cat;

struct cat_attr {
	uint64_t ino;
	uint64_t parent;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
};

struct cat_stats {
	uint64_t files, dirs, symlinks;
	uint64_t logical_bytes; /* sum of file sizes */
	uint64_t chunks;        /* distinct live chunks */
	uint64_t unique_bytes;  /* their uncompressed size */
	uint64_t stored_bytes;  /* their records in packs */
	uint64_t dead_chunks;   /* refs = 0, awaiting collection */
	uint64_t packs;
	uint64_t pack_bytes;    /* sum of committed pack sizes */
};

/* Opens or creates the catalog file; explains refusals in err. */
int cat_open(const char *path, struct cat **ret, char *err, size_t errlen);
void cat_close(struct cat *c);

int cat_begin(struct cat *c);
int cat_commit(struct cat *c);
void cat_rollback(struct cat *c);
/*
 * One member of a grouped transaction: cat_savepoint() inside cat_begin(),
 * then cat_savepoint_end(c, 0) keeps the member's changes and
 * cat_savepoint_end(c, 1) undoes them, leaving the others' in the
 * transaction.  Not nested.
 */
/*
 * A transaction committed without a sync: cat_begin_unsynced(), changes,
 * then cat_end_unsynced(c, r) commits when r is 0 (else rolls back) and
 * returns the result.  A crash of the process keeps it, a power loss may
 * not, until the next synced commit or cat_sync(), which makes every
 * earlier commit durable.
 */
int cat_begin_unsynced(struct cat *c);
int cat_end_unsynced(struct cat *c, int r);
int cat_sync(struct cat *c);
int cat_savepoint(struct cat *c);
int cat_savepoint_end(struct cat *c, int undo);

int cat_get(struct cat *c, uint64_t ino, struct cat_attr *ret);
int cat_lookup(struct cat *c, uint64_t parent, const char *name,
	       struct cat_attr *ret);
int cat_insert(struct cat *c, uint64_t parent, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, int64_t now, const char *target,
	       struct cat_attr *ret);
int cat_delete(struct cat *c, uint64_t ino);
int cat_orphan(struct cat *c, uint64_t ino);
int cat_move(struct cat *c, uint64_t ino, uint64_t parent, const char *name,
	     int64_t now);
int cat_set_attr(struct cat *c, const struct cat_attr *a);
/* Returns the number of children of ino. */
int cat_count_children(struct cat *c, uint64_t ino);
/* Calls cb for each child in name order; a non-zero cb result stops. */
int cat_children(struct cat *c, uint64_t ino,
		 int (*cb)(void *arg, const char *name, const struct cat_attr *a),
		 void *arg);
/* Inodes with nlink = 0, for cleanup at start. */
int cat_orphans(struct cat *c, uint64_t **ret_inos);
int cat_readlink(struct cat *c, uint64_t ino, char **ret);

/* Chunk list (a blob the store defines) and SHA-256 of a file. */
int cat_get_content(struct cat *c, uint64_t ino, void **ret_blob,
		    size_t *ret_len, uint8_t ret_sha[32], int *ret_has_sha);
int cat_set_content(struct cat *c, uint64_t ino, const void *blob, size_t len,
		    uint64_t size, const uint8_t sha[32], int64_t mtime);

int cat_chunk_get(struct cat *c, const struct cas_id *id,
		  struct pack_loc *ret_loc, int64_t *ret_refs);
int cat_chunk_insert(struct cat *c, const struct cas_id *id,
		     const struct pack_loc *loc);
/* Adds delta to the chunk's refs; -ENOENT if the chunk is unknown. */
int cat_chunk_addref(struct cat *c, const struct cas_id *id, int delta);
int cat_chunk_delete(struct cat *c, const struct cas_id *id);
/*
 * Calls cb for chunks with refs = 0 (dead), but for those fetched at or
 * after keep_since (cat_fetched_add()).
 */
int cat_chunks_dead(struct cat *c, int64_t keep_since,
		    int (*cb)(void *arg, const struct cas_id *id,
			      const struct pack_loc *loc),
		    void *arg);
/*
 * Fetched chunks: stored from a remote before any file refers to them, and
 * kept for a while (a pull killed midway resumes without fetching them again).
 */
int cat_fetched_add(struct cat *c, const struct cas_id *id, int64_t at);
int cat_fetched_prune(struct cat *c, int64_t before);
int cat_chunks_in_pack(struct cat *c, uint32_t pack,
		       int (*cb)(void *arg, const struct cas_id *id,
				 const struct pack_loc *loc),
		       void *arg);

/*
 * Damaged chunks: marked when a read (or fsck) finds a chunk's bytes do not
 * match its id, so that the next writer of those bytes stores a good copy
 * and relocates the chunk to it instead of deduplicating against it.
 * Clearing a mark (the chunk was healed) forgets every confirmed list.
 */
int cat_damaged_mark(struct cat *c, const struct cas_id *id);
int cat_damaged_clear(struct cat *c, const struct cas_id *id);
/* 1 if marked, 0 if not, or -errno. */
int cat_damaged_has(struct cat *c, const struct cas_id *id);
/*
 * Digests of a file's SHA-256 and chunk list that a read of the whole file
 * confirmed (docs/architecture.md, Whole-file check on reads).  has: 1 if
 * known, 0 if not, or -errno.
 */
int cat_verified_add(struct cat *c, const uint8_t digest[32]);
int cat_verified_has(struct cat *c, const uint8_t digest[32]);
/*
 * verified_lists is a cache (a list not in it is hashed at its first
 * whole read, nothing more), and the lists of versions since overwritten
 * or deleted stay in it.  Emptied when it holds more than twice as many
 * lists as there are files of min_size bytes or more (the only ones that
 * record one) plus CAT_VERIFIED_SLACK: its size stays bounded by the
 * store's files, at the cost of one whole-file hash per large file read
 * after it is emptied.  Counts the table (and, past the slack, the
 * inodes): called by the collector, not per request.
 */
#define CAT_VERIFIED_SLACK 64
int cat_verified_prune(struct cat *c, int64_t min_size);
/* Points a chunk at another record of the same bytes (compaction, repair). */
int cat_chunk_relocate(struct cat *c, const struct cas_id *id,
		       const struct pack_loc *loc);

/*
 * Inline chunks: a small file's chunk committed with its file, its encoded
 * bytes in the catalog (table inline_recs) and its chunk row naming the
 * pack CAS_PACK_INLINE (offset 0, clen the length of those bytes), so that
 * a close that must be durable pays one sync, the WAL's, and no pack
 * sync.  The store moves them into a pack soon after (cat_chunk_relocate()
 * and cat_inline_delete() in one transaction).  No pack row is ever made
 * for CAS_PACK_INLINE, and cat_pack_ends() leaves it out.
 */
#define CAS_PACK_INLINE UINT32_MAX
int cat_inline_put(struct cat *c, const struct cas_id *id, const void *data,
		   uint32_t len);
/* Copies the bytes into buf: their length, -ENOENT, or -EIO (over cap). */
int cat_inline_get(struct cat *c, const struct cas_id *id, void *buf, size_t cap);
int cat_inline_delete(struct cat *c, const struct cas_id *id);
/* Calls cb for at most max inline chunks; returns how many, or -errno. */
int cat_inline_list(struct cat *c, int max,
		    int (*cb)(void *arg, const struct cas_id *id,
			      const struct pack_loc *loc, const void *data,
			      uint32_t len),
		    void *arg);
int cat_inline_count(struct cat *c, uint64_t *ret);

/* Sets a pack's committed size (and adds live_delta), creating its row. */
int cat_pack_update(struct cat *c, uint32_t pack, int64_t size,
		    int64_t live_delta);
/*
 * Deletes a pack's row and, in the same transaction, marks the pack dead
 * (a meta row "dead_pack.ID"): its file is unlinked after the commit, and
 * a crash in between leaves a file that recovery may remove, not one it
 * must set aside as of unknown worth.
 */
int cat_pack_delete(struct cat *c, uint32_t pack);
/* 1 if pack was marked dead by cat_pack_delete(), 0 if not, or -errno. */
int cat_pack_dead(struct cat *c, uint32_t pack);
/* Drops the mark once the file is gone. */
int cat_pack_dead_clear(struct cat *c, uint32_t pack);
/* Fills the arrays (malloc()ed) with every pack row; returns the count. */
int cat_packs(struct cat *c, uint32_t **ret_ids, uint64_t **ret_sizes,
	      uint64_t **ret_live);

int cat_stats(struct cat *c, struct cat_stats *ret);
/* Rows of inodes, orphans included (an index count: no scan of the rows). */
int cat_inode_count(struct cat *c, uint64_t *ret);

/* For fsck: runs sqlite's integrity_check; 0 if the database is sound. */
int cat_integrity(struct cat *c, char *err, size_t errlen);
/* For fsck: calls cb for every regular file with its chunk blob. */
int cat_files(struct cat *c,
	      int (*cb)(void *arg, uint64_t ino, const void *blob, size_t len,
			uint64_t size),
	      void *arg);
/* For fsck: every chunk row. */
int cat_chunks_all(struct cat *c,
		   int (*cb)(void *arg, const struct cas_id *id,
			     const struct pack_loc *loc, int64_t refs),
		   void *arg);
/* For fsck: sets refs of every chunk to zero. */
int cat_chunks_zero_refs(struct cat *c);
/* For fsck: the slash-separated path of ino below models/. */
int cat_path(struct cat *c, uint64_t ino, char *buf, size_t len);

/*
 * For recovery: per pack with chunk rows, the end of its last chunk record
 * (the least committed size) and the sum of its records, from a table scan
 * that no damaged index can shorten.  Arrays malloc()ed; returns the count.
 */
int cat_pack_ends(struct cat *c, uint32_t **ret_packs, uint64_t **ret_ends,
		  uint64_t **ret_live);
/* Rebuilds every index from its table (a damaged index). */
int cat_reindex(struct cat *c);
/* 1 if the catalog has no chunk and no pack row, 0 if it has, or -errno. */
int cat_is_empty(struct cat *c);
/* A number kept in the meta table: 0, -ENOENT if it is not there, or -errno. */
int cat_meta_get_u64(struct cat *c, const char *key, uint64_t *ret);
/* Sets it, in a transaction of its own. */
int cat_meta_set_u64(struct cat *c, const char *key, uint64_t v);

/*
 * File snapshots: the inodes table (names, modes, owners, sizes, SHA-256s
 * and chunk lists) copied into the sqlite file snap through a connection
 * of its own (catalog is the catalog's path), made durable and then
 * renamed over the last one, which is kept as snap.old.
 */
int cat_snapshot(const char *catalog, const char *snap);
/*
 * Replaces the inodes of c with those of snapshot snap (a catalog being
 * rebuilt); *ret_taken gets when the snapshot was taken (ns, 0 unknown).
 */
int cat_restore_snapshot(struct cat *c, const char *snap, int64_t *ret_taken);

#endif
