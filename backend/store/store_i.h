/*
 * store_i.h - the store's private state, shared by store.c, writer.c, gc.c
 * and fsck.c.  Not for use outside backend/.
 */
#ifndef LLMFS_STORE_I_H
#define LLMFS_STORE_I_H

#include <pthread.h>

#include "backend/store/catalog.h"
#include "backend/store/ccache.h"
#include "backend/store/chunker.h"
#include "backend/store/codec.h"
#include "backend/store/pack.h"
#include "backend/store/pool.h"
#include "backend/store/store.h"

/* The reserve of spare blocks for deletes: 1% of the disk, at most this. */
#define RESERVE_MAX (8u << 20)

/* One chunk-list entry, as stored in the inodes.chunks blob (20 bytes). */
#define CHUNK_ENTRY_LEN (CAS_ID_LEN + 4)

struct cas_store {
	char *dir;
	int lockfd;
	int tmpfd;                 /* tmp/, for staging files */
	pthread_rwlock_t gc_lock;  /* shared: pack reads; exclusive: pack removal */
	pthread_mutex_t lock;      /* the catalog and `writers` */
	struct cat *cat;
	struct pack_set *packs;
	struct pool *pool;
	struct pool *sha_pool;     /* one thread: whole-file SHA-256, in order */
	struct pool *feed_pool;    /* chunk large appends after their answer */
	struct ccache *cache;
	pthread_key_t tls;         /* struct worker_ctx of a FUSE thread */
	int level;
	uint64_t pack_max;
	unsigned writers;          /* open writers; GC waits for none */
	uint32_t made_from;        /* packs with this id or higher were made
				    * by this process (UINT32_MAX in recovery) */
	int gc_busy;               /* a collection runs (cas_gc()) */
	/*
	 * The collector thread (cas_gc_thread_start()); its mutex is a leaf,
	 * never held while a collection runs.
	 */
	struct gc_thread {
		pthread_t thread;
		pthread_mutex_t lock;
		pthread_cond_t cond;
		int running, wanted, stop;
		void (*done)(void *arg, int64_t freed);
		void *arg;
	} gct;
	int snap_on_close;         /* opened with recovery: snapshot at close */
	pthread_mutex_t reserve_lock; /* the reserve file; before `lock` */
	pthread_mutex_t snap_lock; /* a catalog snapshot being written; after
				    * reserve_lock, before `lock` */
	int reserve_gone;          /* atomic: given back, appends must make it again */
	/*
	 * Commits that arrive together (concurrent closes and fsyncs) run as
	 * one group: one pack sync and one catalog transaction, a savepoint
	 * per writer (writer.c).  Its mutex is a leaf, not held while a group
	 * runs; the group's leader takes `lock` for the transaction.
	 */
	struct commit_group {
		pthread_mutex_t lock;
		pthread_cond_t cond;
		int running;
		struct commit_req *queue, **tail;
	} cg;
	/*
	 * Lazy commits (a close) and the thread that makes them durable
	 * within delay_ms (flush.c).  Its mutex is a leaf.
	 */
	struct flusher {
		pthread_t thread;
		pthread_mutex_t lock;
		pthread_cond_t cond;
		int running, pending, stop, delay_ms;
		int move;                   /* inline chunks to move */
		int sync;                   /* lazy commits to sync */
		int64_t since;              /* the first unsynced lazy commit */
		int64_t last_inline;        /* the last commit with inline chunks */
		unsigned inline_commits;    /* such commits since the last move */
		uint64_t flushes, failures;
	} fl;
	int markfd;                /* the durable mark, `synced` (flush.c) */
	int close_sync;            /* cas_options.close_sync */
	uint64_t lost_at_open;     /* chunks past the mark found lost at open */
	uint64_t known_lists;      /* snapshots opened with a confirmed list (lock) */
	/* cas_file_read_mapped()'s counts (atomic), for status. */
	uint64_t mapped_chunks, mapped_reads, mapped_fallbacks;
};

/* Per-thread scratch: a codec and buffers for one chunk. */
struct worker_ctx {
	struct codec *codec;
	uint8_t *rec; /* a pack record: header + encoded bytes */
	uint8_t *out; /* decoded bytes, or encoded bytes when writing */
};

struct worker_ctx *worker_ctx_new(int level);
void worker_ctx_free(void *ctx);
struct worker_ctx *store_tls(struct cas_store *st);

/*
 * Reads chunk id (at loc, or where the catalog says when loc is NULL) into
 * out[0..CDC_MAX), verifying it against its id.  -EIO for damaged data.
 */
int store_load_chunk(struct cas_store *st, struct worker_ctx *ctx,
		     const struct cas_id *id, const struct pack_loc *loc,
		     uint8_t *out, uint32_t *ret_len);

/*
 * The same with gc_lock (shared) and then the catalog's lock held by the
 * caller (fsck), in that order, the store's order everywhere.
 */
int store_load_chunk_locked(struct cas_store *st, struct worker_ctx *ctx,
			    const struct cas_id *id, const struct pack_loc *loc,
			    uint8_t *out, uint32_t *ret_len);
/* Decodes and verifies a record's encoded bytes (payload) into out. */
int store_decode_payload(struct worker_ctx *ctx, const struct cas_id *id,
			 const struct pack_loc *loc, const uint8_t *payload,
			 uint8_t *out);

/*
 * Moves up to a batch of inline chunks (catalog.h) into the current pack:
 * appends their records, syncs the packs, then one transaction (unsynced:
 * a lost one leaves the chunks inline, their rows and bytes unchanged)
 * points each row at its record and deletes its inline bytes.  Counts as
 * a writer meanwhile, so no collection cuts the records before they are
 * named.  Returns the number moved (0: none left) or -errno.
 */
int store_inline_move(struct cas_store *st);
/* Moves every inline chunk (open, close); best effort. */
void store_inline_move_all(struct cas_store *st);
/* Inline chunks were committed: the flusher moves them within flush_ms. */
void store_inline_note(struct cas_store *st);

/* Drops one reference to each chunk of a chunk-list blob.  Lock held. */
int store_deref_blob(struct cas_store *st, const void *blob, size_t len);

/*
 * Files this large or larger have their confirmed lists recorded: below,
 * hashing the file again costs less than the catalog's commit (a WAL sync)
 * and lookup that would spare it, so small files' reads stay as they were.
 */
#define KNOWN_LIST_MIN (16u << 20)

/*
 * The digest that names a confirmed chunk list in the catalog
 * (verified_lists): SHA-256 of the file's SHA-256 and its list as the
 * catalog stores it.  A list is confirmed by a whole read that matched the
 * file's SHA-256 (store.c), or at a writer's commit when the writer itself
 * stored every chunk of the list in that commit (writer.c): the bytes under
 * each id are then the very bytes its SHA-256 was computed over.  A list
 * with a chunk another file stored first is not: ids are XXH3, which
 * resists no crafted collision, so its first whole read is hashed.
 */
int store_list_digest(const uint8_t sha[32], const void *blob, size_t len,
		      uint8_t out[32]);

int64_t store_now_ns(void);

/* A change of a pack's live bytes, summed per pack over a transaction. */
struct pack_delta {
	uint32_t pack;
	int64_t live;
};
/* Adds d to pack's entry in *v (made if absent); 0 or -ENOMEM. */
int store_delta_add(struct pack_delta **v, size_t *n, uint32_t pack, int64_t d);
/*
 * Records each pack's present size as committed, with its live change.
 * Lock held, inside the transaction that made the changes.
 */
int store_deltas_apply(struct cas_store *st, const struct pack_delta *v,
		       size_t n);
/*
 * After that transaction committed: clears the mark of each pack
 * (pack_mark_committed(); store_deltas_apply() set it to committing).  A
 * crash between the two leaves a named pack marked, which recovery clears;
 * a crash before the commit leaves a pack no row names, still marked, which
 * recovery may delete: it holds nothing committed.
 */
void store_deltas_committed(struct cas_store *st, const struct pack_delta *v, size_t n);
/*
 * Ends a transaction whose changes are r's (0: all made): records the
 * packs' sizes and commits, then clears their marks; or rolls back.
 */
int store_txn_end(struct cas_store *st, int r, const struct pack_delta *v, size_t n);

/*
 * Frees the arrays cat_packs() (ids, sizes, live) and cat_pack_ends() (cp,
 * ends, clive) returned; any may be NULL.
 */
void store_pack_rows_free(uint32_t *ids, uint64_t *sizes, uint64_t *live,
			  uint32_t *cp, uint64_t *ends, uint64_t *clive);

/*
 * flush.c: at open, after recovery, verifies the chunks past the durable
 * mark (marking the lost ones damaged) and moves the mark to the end.
 */
int store_tail_check(struct cas_store *st, char *err, size_t errlen);
/* A lazy commit went unsynced: the flusher makes it durable in time. */
void store_lazy_note(struct cas_store *st);
/* After a sync of the packs and the WAL: moves the durable mark. */
void store_synced(struct cas_store *st);
int store_flusher_start(struct cas_store *st, int delay_ms);
void store_flusher_stop(struct cas_store *st);

/*
 * Brings the packs on disk in line with the catalog, by the rules that
 * recovery at open and collection with no writer open share: a pack's
 * committed size is the greater of its row and the end of the last chunk
 * record pointing into it (rows below that are raised, best effort), and
 * bytes past it are cut off; a pack file no row knows is removed when it
 * holds nothing committed, else set aside in quarantine/.  Never cuts or
 * deletes what a chunk row points at.  Lock held; err explains a failure.
 */
int store_packs_trim(struct cas_store *st, char *err, size_t errlen);

/*
 * A pack file no catalog row knows: removed when it provably holds nothing
 * committed (no more than a header, marked dead by a collection, or made
 * by this process or the one before it), else moved into quarantine/
 * (its name there in ret_name if set).  Returns 0 if removed, 1 if set
 * aside, or -errno.  Lock held.
 */
int store_pack_set_aside(struct cas_store *st, uint32_t id, char *ret_name,
			 size_t namelen);

/*
 * Makes the reserve of spare blocks again if it was given back: 0 when it
 * is there, -ENOSPC when the disk has no room for it.
 */
int store_reserve_make(struct cas_store *st);

/*
 * Called before a catalog write that takes room (an inline chunk): 0, or
 * -ENOSPC when the reserve was given back and cannot be made again (the
 * room left is for deletes).
 */
int store_append_room(struct cas_store *st);
/*
 * pack_append() behind the reserve: the same check, then the append, both
 * under reserve_lock, so that the room a delete frees by giving the
 * reserve back (IN_TXN_MAKING_ROOM) is not taken by an append that checked
 * before it.  Every append of new chunks goes through here.
 */
int store_append(struct cas_store *st, const struct cas_id *id, enum codec_scheme scheme,
		 uint32_t ulen, const void *data, uint32_t clen, struct pack_loc *loc);

static inline void entry_get(const uint8_t *p, struct cas_id *id, uint32_t *len)
{
	memcpy(id->b, p, CAS_ID_LEN);
	p += CAS_ID_LEN;
	*len = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void entry_put(uint8_t *p, const struct cas_id *id, uint32_t len)
{
	memcpy(p, id->b, CAS_ID_LEN);
	p += CAS_ID_LEN;
	p[0] = len;
	p[1] = len >> 8;
	p[2] = len >> 16;
	p[3] = len >> 24;
}

#endif
