/*
 * pack.h - append-only pack files holding encoded chunks.
 *
 * A store keeps its chunks in packs/NNNNNNNN.pack rather than one file per
 * chunk.  A pack starts with a 16-byte header (magic "LLMFSPAK", format
 * version); each chunk is a 32-byte record header (magic "LCK1", scheme,
 * uncompressed and encoded lengths, chunk id) followed by its encoded bytes,
 * so a pack can be verified or re-indexed without the catalog.
 *
 * Contract: every function is thread-safe (one internal mutex guards the
 * append point and the descriptor table; reads are plain pread()s).  Bytes
 * are appended only at the end of the current pack; nothing is rewritten in
 * place.  A pack is durable once pack_set_sync() has returned.  Removing a
 * pack while a read of it is in flight is the caller's business (the store
 * holds a rwlock for that).  Functions return 0 or -errno.
 */
#ifndef LLMFS_PACK_H
#define LLMFS_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "backend/store/codec.h"
#include "backend/store/hash.h"

#define PACK_HEADER_LEN 16
#define PACK_REC_LEN 32
/*
 * Header byte 12: 1 while no commit has named the pack (set when the pack
 * is made, cleared, durably, by the first commit that records its size),
 * so that recovery can tell a pack a crashed writer started, which holds
 * nothing committed, from one whose catalog rows were lost.
 */
#define PACK_FRESH_OFF 12
/* The mark's values: made, and not yet named by a commit; about to be (durably, before the
 * transaction); 0, named by a committed transaction. */
#define PACK_MARK_FRESH 1
#define PACK_MARK_COMMITTING 2

struct pack_set;

struct pack_loc {
	uint32_t pack;
	uint64_t off;  /* of the record header */
	uint32_t clen; /* encoded length, without the record header */
	uint32_t ulen;
	enum codec_scheme scheme;
};

/*
 * Parses a record header; 0, or -EBADMSG when it is not one (bad magic,
 * unknown scheme, lengths over the chunk limits).
 */
int pack_rec_parse(const void *hdr, struct cas_id *ret_id,
		   enum codec_scheme *ret_scheme, uint32_t *ret_ulen,
		   uint32_t *ret_clen);
/* Writes the header of a record (what pack_append() writes before data). */
void pack_rec_header(uint8_t hdr[PACK_REC_LEN], const struct cas_id *id,
		     enum codec_scheme scheme, uint32_t ulen, uint32_t clen);
/* The 16-byte header every pack (and SMIP pack blob) starts with. */
void pack_header(uint8_t out[PACK_HEADER_LEN]);

/* Opens the pack folder dir (created if missing). */
/*
 * keep_cached: bytes of the newest packs written that stay in the page
 * cache; as a new pack starts, the pack that falls past them is dropped
 * from it (0: all stay).
 */
int pack_set_open(const char *dir, uint64_t pack_max, uint64_t keep_cached,
		  struct pack_set **ret);
void pack_set_free(struct pack_set *ps);

/* Appends go to pack id (created if absent, else appended to). */
int pack_set_start(struct pack_set *ps, uint32_t id);

/* Appends one record; fills loc (pack, offset, lengths, scheme). */
int pack_append(struct pack_set *ps, const struct cas_id *id,
		enum codec_scheme scheme, uint32_t ulen, const void *data,
		uint32_t clen, struct pack_loc *ret_loc);

/*
 * Reads the record at loc into buf[0..PACK_REC_LEN + loc->clen) and checks
 * that its header matches loc and id.  Returns 0, -EIO for a damaged record.
 */
int pack_read(struct pack_set *ps, const struct pack_loc *loc,
	      const struct cas_id *id, void *buf);

/* The same, with the encoded bytes alone read into payload[0..loc->clen). */
int pack_read_payload(struct pack_set *ps, const struct pack_loc *loc,
		      const struct cas_id *id, void *payload);

/*
 * A read-only mapping of pack bytes (pack_map()).  pack_unmap() accepts a
 * mapping never made (base NULL).
 */
struct pack_map {
	void *base;          /* as mmap() returned it */
	size_t len;
	const uint8_t *data; /* the bytes asked for */
};

/*
 * Pins the encoded bytes of the record at loc in the page cache, after
 * checking its header as pack_read() does: splice() moves them from the
 * pack into the pipes pins[0..npins) (write ends, non-blocking; the next
 * one when one is full), so the pipes hold references to the pack's
 * page-cache pages.  Reclaim then cannot drop them and no other page can
 * take their place: read through a mapping (pack_map()), those bytes stay
 * what was checked, and touching them cannot fault on I/O (the splice read
 * them in, or failed).  The caller empties the pipes when done.  Returns
 * 0; -EIO for a record that is not what loc says; -ENOSPC when the pipes
 * are full; -errno of splice() (the pipes may then hold part of the
 * bytes).  Pack removal and hole punching are the caller's business, as
 * for pack_read(): hold them off until the pages are done with.
 */
int pack_pin(struct pack_set *ps, const struct pack_loc *loc, const struct cas_id *id,
	     const int *pins, int npins);
/*
 * Maps bytes [off, off + len) of pack id read-only (MAP_SHARED) into
 * *ret_map.  Mapping touches nothing: only bytes pinned by pack_pin() may
 * be read through it without risk of a fault.
 */
int pack_map(struct pack_set *ps, uint32_t id, uint64_t off, size_t len,
	     struct pack_map *ret_map);
void pack_unmap(struct pack_map *m);

/* Makes every appended byte durable (fdatasync, and the folder for new packs).
 * Appends go on meanwhile; callers run one at a time, so a caller that finds
 * nothing left to sync returns only after a sync another caller began. */
int pack_set_sync(struct pack_set *ps);
/*
 * The durable mark: every pack byte before offset off of pack id (ids
 * before it whole) was on disk when the last pack_set_sync() that
 * succeeded returned.  (0, 0) until one has since pack_set_start().
 */
void pack_durable(struct pack_set *ps, uint32_t *ret_id, uint64_t *ret_off);
/* Marks the open packs from id on as appended to, for the next sync to
 * cover what a previous process may have left in the page cache only. */
void pack_set_dirty_from(struct pack_set *ps, uint32_t id);
/* Starts writing appended bytes out without waiting (sync_file_range), so
 * that the next pack_set_sync() has less to wait for. */
void pack_set_writeback(struct pack_set *ps);

/* How many pack_set_sync() calls had something to sync (for status). */
uint64_t pack_sync_count(struct pack_set *ps);

/* Current length of pack id, or -errno. */
int64_t pack_size(struct pack_set *ps, uint32_t id);

/* The pack appends go to now. */
uint32_t pack_current(struct pack_set *ps);

/* Cuts pack id back to size bytes (recovery after a crash). */
int pack_truncate(struct pack_set *ps, uint32_t id, uint64_t size);

/*
 * Gives back the disk blocks inside the encoded bytes of the record at loc
 * (whole blocks only; fallocate's PUNCH_HOLE), for a record no chunk row
 * points to any more.  The record header and the pack's length stay, so
 * the pack is still walked record by record; the record's bytes no longer
 * match its id.  Returns the bytes given back, 0 where the filesystem
 * cannot punch holes, or -errno.
 */
int64_t pack_punch(struct pack_set *ps, const struct pack_loc *loc);
/*
 * 1 if rec, the record at loc as pack_read() returns it, is what
 * pack_punch() leaves: at least one whole block inside its encoded bytes,
 * and every such block zero.  A re-index tells a collected record from a
 * damaged one by it.
 */
int pack_rec_punched(const struct pack_loc *loc, const void *rec);

/*
 * 0 if pack id starts with the header pack_header() writes, -EBADMSG if
 * not (the pack is still read: its records check themselves), or -errno.
 */
int pack_header_check(struct pack_set *ps, uint32_t id);
/* Writes pack id's header again (made durable). */
int pack_header_repair(struct pack_set *ps, uint32_t id);

/*
 * Moves pack id into the folder qdir (created if missing) instead of
 * deleting it, under a name no other file there has (returned in
 * ret_name if set).
 */
int pack_quarantine(struct pack_set *ps, uint32_t id, const char *qdir,
		    char *ret_name, size_t namelen);

/*
 * The fresh mark (PACK_FRESH_OFF) through a commit that names the pack:
 * pack_mark_committing() before the catalog transaction (fresh to
 * committing, durable), pack_mark_committed() after it (to 0; not synced:
 * recovery clears the mark of every pack a row names).  A pack no row
 * names whose mark is still set was never named by a committed transaction.
 */
int pack_mark_committing(struct pack_set *ps, uint32_t id);
int pack_mark_committed(struct pack_set *ps, uint32_t id);
/* The mark of pack id (PACK_MARK_FRESH, PACK_MARK_COMMITTING, 0), or -errno. */
int pack_is_fresh(struct pack_set *ps, uint32_t id);

/* Deletes pack id from disk. */
int pack_remove(struct pack_set *ps, uint32_t id);

/*
 * Lists the ids of the pack files on disk into a malloc()ed array.
 * Returns the count or -errno.
 */
int pack_list(struct pack_set *ps, uint32_t **ret_ids);

/*
 * Walks the records of pack id in file order, without the catalog: cb gets
 * each well-formed record header's id and location and returns 0 to accept
 * it (the walk goes on after it), 1 to reject it (its bytes do not check
 * out: the walk looks for the next record magic after its first byte), or
 * -errno to stop.  *ret_end gets the end of the last accepted record.
 */
int pack_scan(struct pack_set *ps, uint32_t id,
	      int (*cb)(void *arg, const struct cas_id *id,
			const struct pack_loc *loc),
	      void *arg, uint64_t *ret_end);

/* Bytes the packs take on disk (st_blocks). */
uint64_t pack_disk_usage(struct pack_set *ps);

#endif
