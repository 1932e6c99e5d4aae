/*
 * store.h - the content-addressed model store: namespace, readers, writers.
 *
 * A store is a folder:
 *   catalog.db   sqlite catalog (catalog.h): inodes, chunk lists, chunks, packs
 *   packs/       append-only pack files (pack.h)
 *   tmp/         staging files of writers that write out of order
 *   lock         flock()ed by the one process that has the store open
 *   files.snap   the last snapshot of the catalog's files (cas_snapshot())
 *   quarantine/  packs recovery found no catalog row for, set aside
 *
 * Files are cut into content-defined chunks (chunker.h), each named by its
 * XXH3-128 (hash.h), encoded (codec.h) and appended to a pack once, however
 * many files hold it.  A file is an ordered chunk list in the catalog.
 *
 * Contract: every function is thread-safe.  Lock order: gc_lock (shared by
 * pack readers, exclusive to pack removal) -> lock (the catalog) -> the
 * pack set's and cache's own locks.  Functions return 0 (or a length) on
 * success and -errno on failure; nothing here prints.
 *
 * Durability: a writer's data becomes the file's content in
 * cas_writer_commit(): packs are fdatasync()ed, then one catalog transaction
 * swaps the chunk list and adjusts reference counts.  Until then the old
 * content stays visible to readers and survives any crash; bytes appended to
 * packs by uncommitted writers are cut off at the next open.
 * cas_writer_commit_lazy() (a close) commits the same transaction without
 * either sync: it survives a kill of the process at once, and a power loss
 * once the flusher has synced it (within cas_options.flush_ms) or
 * cas_sync() has; a power loss before may lose it, and chunks it named
 * that did not reach the disk are found at the next open (flush.c) and
 * read as EIO, never as wrong bytes.  A durable commit of a file that is
 * one chunk of 16 KiB or less puts the chunk's bytes in its transaction
 * (inline, catalog.h): no pack sync, the WAL's alone; the flusher moves
 * them into a pack within flush_ms, cas_store_close() moves the rest.
 * Appends of 64 KiB or more are queued and chunked by the writer's feeder
 * thread (at most 8 MiB queued): an error one of them hits is returned by
 * the next cas_writer_write() or the commit.
 */
#ifndef LLMFS_STORE_H
#define LLMFS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "backend/store/catalog.h"
#include "backend/store/hash.h"

struct cas_store;
struct cas_file;
struct cas_writer;

/* The default bound on how long a closed file may wait for its sync. */
#define CAS_FLUSH_MS 1000

struct cas_options {
	int level;          /* zstd level, default 3 */
	int threads;        /* compression / read-ahead workers, and feeders of large
			     * appends: this many each, default nproc */
	uint64_t pack_max;  /* bytes before a new pack is started */
	uint64_t pack_cache; /* bytes of the newest packs written kept in the
			      * page cache, older ones dropped as a new one
			      * starts; default an eighth of memory, UINT64_MAX
			      * all */
	int no_recovery;    /* open as is: for fsck's look before repair */
	int flush_ms;       /* lazy commits are durable within this, default
			     * CAS_FLUSH_MS */
	int close_sync;     /* cas_writer_commit_lazy() syncs as
			     * cas_writer_commit() does */
	int rebuild;        /* for llmfs-fsck --rebuild: the catalog is moved
			     * aside (catalog.db.lost-TIME) and a new one begun,
			     * to be filled by cas_rebuild(); implies no_recovery */
};

/*
 * Where a read found damage: the file offset and chunk of the bad bytes;
 * or, with whole set, that every chunk was sound but the file's bytes,
 * read in order to the end, do not match its SHA-256 (a damaged list).
 */
struct cas_fault {
	uint64_t off;
	struct cas_id id;
	int whole;
};

/*
 * Opens (creating if needed) the store in dir; explains refusals in err.
 * A catalog that is missing or empty while packs hold data is refused
 * (-EUCLEAN), as is one sqlite cannot read: llmfs-fsck --rebuild rebuilds
 * it.  Recovery (unless no_recovery) cuts uncommitted pack tails, never
 * below a chunk the catalog points at, sets packs without a catalog row
 * aside in quarantine/, deletes orphans, and takes a file snapshot.
 */
int cas_store_open(const char *dir, const struct cas_options *opt,
		   struct cas_store **ret, char *err, size_t errlen);
void cas_store_close(struct cas_store *st);
const char *cas_store_dir(const struct cas_store *st);

/* Namespace (inode numbers are the catalog's; the root is CAT_ROOT_INO). */
int cas_getattr(struct cas_store *st, uint64_t ino, struct cat_attr *ret);
int cas_lookup(struct cas_store *st, uint64_t parent, const char *name,
	       struct cat_attr *ret);
/*
 * May name be stored as an entry's name?  0, or -ENAMETOOLONG (over
 * NAME_MAX bytes), -EINVAL (empty, ".", "..", or holding '/') or -EILSEQ
 * (not strict UTF-8 by common/utf8.h: overlong forms, surrogates and code
 * points past U+10FFFF included).  Every name the store holds must go into
 * a JSON manifest and a push as it is, so cas_mknode() and cas_rename()
 * refuse such names themselves; fs/ calls this to answer in its own order.
 */
int cas_name_check(const char *name);
int cas_mknode(struct cas_store *st, uint64_t parent, const char *name,
	       uint32_t mode, uint32_t uid, uint32_t gid, const char *target,
	       struct cat_attr *ret);
/*
 * cas_mknode() for a regular file about to be written through a writer
 * opened on it at once (open(O_CREAT) for writing): its transaction is not
 * synced on its own.  A kill of the process keeps it; against a power loss
 * the writer's first commit (the file's close or fsync) makes it durable,
 * as does any later synced transaction or cas_sync().  Saves one sync of
 * the three a small file's copy would pay.
 */
int cas_create(struct cas_store *st, uint64_t parent, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, struct cat_attr *ret);
/*
 * Makes every committed transaction durable, lazy commits included: the
 * packs, then the catalog's WAL (fsync(), fsyncdir of the tree, unmount).
 */
int cas_sync(struct cas_store *st);
/*
 * Unlinks a file or symlink.  With keep set (the file is open) the inode
 * becomes an orphan that cas_release_orphan() deletes at last close.
 * Sets *ret_ino to the inode unlinked.
 */
int cas_unlink(struct cas_store *st, uint64_t parent, const char *name,
	       int keep, uint64_t *ret_ino);
int cas_rmdir(struct cas_store *st, uint64_t parent, const char *name);
/*
 * A new file or symlink that no folder names (an orphan, nlink 0), for
 * bytes that are not a file of models/ yet or at all: a push being
 * written, the local copy of a fetched layer.  Freed by
 * cas_release_orphan(), or at the next start if the daemon stops first.
 */
int cas_store_orphan_create(struct cas_store *st, uint32_t mode, uint32_t uid,
			    uint32_t gid, const char *target, uint64_t *ret_ino);
/*
 * Renames; replaces a file or empty folder at the target unless noreplace.
 * If the replaced inode is open (keep_replaced), it becomes an orphan.
 * Sets *ret_replaced to the replaced inode or 0.
 */
int cas_rename(struct cas_store *st, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, int noreplace,
	       int keep_replaced, uint64_t *ret_replaced);
int cas_set_attr(struct cas_store *st, const struct cat_attr *a);
int cas_readlink(struct cas_store *st, uint64_t ino, char **ret);
int cas_release_orphan(struct cas_store *st, uint64_t ino);
int cas_children(struct cas_store *st, uint64_t ino,
		 int (*cb)(void *arg, const char *name, const struct cat_attr *a),
		 void *arg);
/*
 * A folder's children copied out (names and attributes) under the store's
 * lock, for callers that do I/O or take other locks per child, which the
 * callback of cas_children() must not.  On error nothing is returned.
 */
struct cas_child {
	char *name;
	struct cat_attr a;
};
int cas_children_get(struct cas_store *st, uint64_t ino, struct cas_child **ret,
		     size_t *ret_n);
void cas_children_free(struct cas_child *v, size_t n);
/* The path of ino relative to models/, for messages. */
int cas_path(struct cas_store *st, uint64_t ino, char *buf, size_t len);

/* Committed content: an immutable snapshot of one file version. */
int cas_file_open(struct cas_store *st, uint64_t ino, struct cas_file **ret);
void cas_file_free(struct cas_file *f);
uint64_t cas_file_size(const struct cas_file *f);
/*
 * Returns bytes read (short only at end of file), -EIO with fault filled.
 * Reads that cover the file in order (a small reordering window allowed)
 * are hashed on the way: the read that completes the file gets -EIO
 * (fault->whole) if the SHA-256 does not match, and so does every later
 * read of this snapshot, wherever it starts.  A match of a file of
 * 16 MiB or more is recorded in the catalog (a digest of the SHA-256 and the chunk list): a snapshot opened
 * later with the same pair is not hashed again (its chunks still are
 * checked against their ids).
 */
ssize_t cas_file_read(struct cas_store *st, struct cas_file *f, void *buf,
		      size_t len, uint64_t off, struct cas_fault *fault);
/*
 * Reads answered from the packs' own pages.  A thread's pins for
 * cas_file_read_mapped(), made by cas_pins_open() and used by one thread
 * at a time: pipes that hold page references (pack_pin()) while a reply
 * is sent, and /dev/null, where they are emptied after.  cas_pins_close()
 * accepts closed pins (fds -1).
 */
#define CAS_PIN_PIPES 3
#define CAS_MAPPED_MAX (1u << 20) /* the largest read answered so */
struct cas_pins {
	int pipe[CAS_PIN_PIPES][2];
	int null;
	size_t pages; /* the pipes' room, in pages (a pipe buffer holds one at most) */
};
int cas_pins_open(struct cas_pins *p);
void cas_pins_close(struct cas_pins *p);

/*
 * Answers the read of len bytes at off of f without copying its bytes in
 * the daemon, when f's list needs no whole-file check (confirmed, or no
 * SHA-256 known) and a chunk in the range is stored as is in a pack.  Each
 * such chunk is pinned whole in the page cache and mapped (pack_pin()),
 * and checked against its id through the mapping; other chunks are read
 * as cas_file_read() reads them, into a buffer.  Then, with the store's
 * read lock still held (no collection punches or removes the pinned
 * records meanwhile), send(arg, iov, n) is called with the bytes in
 * order: iov[0..n) point into the mappings and the buffer, valid only
 * during the call.  Everything is unmapped, unpinned and freed after.
 *
 * Returns 1 when send was called (its result is the caller's to keep), 0
 * when it was not: the read is not for this path (a whole-file check is
 * pending, no chunk in range is raw in a pack, len over CAS_MAPPED_MAX,
 * off at or past the end) or anything failed on the way (a splice, a
 * mapping, a record or chunk that does not check out).  With 0 the caller
 * reads with cas_file_read(), which reports damage as ever.  The pins are
 * left empty, or closed (fds -1) when they could not be emptied.
 * Thread-safe as cas_file_read().
 */
struct iovec;
int cas_file_read_mapped(struct cas_store *st, struct cas_file *f, struct cas_pins *p,
			 size_t len, uint64_t off,
			 int (*send)(void *arg, const struct iovec *iov, int n), void *arg);
/* SHA-256 of the whole file; -ENODATA if unknown. */
int cas_file_sha256(const struct cas_file *f, uint8_t ret[32]);
size_t cas_file_nchunks(const struct cas_file *f);
void cas_file_chunk(const struct cas_file *f, size_t i, struct cas_id *ret_id,
		    uint32_t *ret_len);

/*
 * Writers.  A writer holds a file's next content.  Appends stream through
 * the chunker and the worker pool as they arrive (an append of 64 KiB or
 * more returns once copied, and is chunked on the store's feed pool); an
 * out-of-order write, a read of unwritten content or a truncate to a
 * middle point moves the writer to a staging file, chunked at commit.
 * Storing is asynchronous: an error it meets (ENOSPC, EIO, ENOMEM) is
 * returned by the next write, share, append or the commit, and sticks.
 * A commit, failed or not, returns once none of the writer's storing runs.
 * One caller at a time per writer; different writers are independent.
 */
int cas_writer_open(struct cas_store *st, uint64_t ino, int truncate,
		    struct cas_writer **ret);
void cas_writer_free(struct cas_writer *w); /* drops what is uncommitted */
int cas_writer_write(struct cas_writer *w, const void *buf, size_t len,
		     uint64_t off);
ssize_t cas_writer_read(struct cas_writer *w, void *buf, size_t len,
			uint64_t off, struct cas_fault *fault);
int cas_writer_truncate(struct cas_writer *w, uint64_t size);
uint64_t cas_writer_size(const struct cas_writer *w);
int cas_writer_dirty(const struct cas_writer *w);
/*
 * The error the writer met (it sticks: every later write and the commit
 * return it), or 0.  A failed writer will commit nothing: the file's
 * content and size are the committed ones.
 */
int cas_writer_error(struct cas_writer *w);
/*
 * Shares chunks of src instead of copying bytes, when off_out is the
 * writer's end and off_in a chunk boundary of src.  Returns the bytes shared
 * (a whole number of chunks, possibly 0); the caller copies the rest.
 */
ssize_t cas_writer_share(struct cas_writer *w, struct cas_file *src,
			 uint64_t off_in, size_t len, uint64_t off_out);
int cas_writer_commit(struct cas_writer *w);
/*
 * The same commit, visible at once, without waiting for the disk: what a
 * close() does (see Durability above).  With cas_options.close_sync set,
 * cas_writer_commit() itself.
 */
int cas_writer_commit_lazy(struct cas_writer *w);
/* Whether the last commit replaced content the file had (references were
 * dropped, so a collection may free something); a new file's first commit
 * did not, and need not ask for one (each collection snapshots the files:
 * four syncs). */
int cas_writer_dropped(const struct cas_writer *w);
/*
 * Appends stored chunks (cas_chunk_has()) at the writer's end, as
 * cas_writer_share() does; sha, if set, is the SHA-256 of the whole content
 * when these chunks are all of it.  Returns 0, or -EAGAIN when the writer is
 * not at a chunk boundary of an in-order stream (the caller writes bytes).
 */
int cas_writer_append(struct cas_writer *w, const struct cas_id *ids,
		      const uint32_t *lens, size_t n, const uint8_t sha[32]);
/* Makes every later write and commit fail with err (a failed import). */
void cas_writer_abort(struct cas_writer *w, int err);

/*
 * Chunks from elsewhere (net/: models on registries).  A record is a pack
 * record as any store writes it (pack.h): header and encoded bytes.
 */
#define CAS_FETCHED_KEEP_S (24 * 3600)
/* 1 if the store has a good copy of chunk id, 0 if not, or -errno. */
int cas_chunk_has(struct cas_store *st, const struct cas_id *id);
/* Decoded, verified bytes of a stored chunk into out[0..CDC_MAX). */
ssize_t cas_chunk_read(struct cas_store *st, const struct cas_id *id,
		       void *out);
/* The stored record of a chunk: its length, and its bytes if buf is set. */
ssize_t cas_chunk_record(struct cas_store *st, const struct cas_id *id,
			 void *buf, size_t cap);
/*
 * Checks a record that claims to be chunk id: a well-formed header naming
 * id, bytes that decode to a chunk whose XXH3-128 is id.  The decoded bytes
 * go to out (CDC_MAX) if set.  Returns the chunk length or -EBADMSG.
 */
ssize_t cas_record_check(struct cas_store *st, const void *rec, size_t len,
			 const struct cas_id *id, void *out);
/*
 * Stores checked records as fetched chunks: appended to the packs, made
 * durable, and committed in one transaction.  No file refers to them yet;
 * collection keeps them for CAS_FETCHED_KEEP_S, so that a pull killed
 * midway resumes without fetching them again.  Chunks the store already
 * has are skipped.
 */
int cas_records_add(struct cas_store *st, const void *const *recs,
		    const size_t *lens, size_t n);
/*
 * The same in steps, for a stream of records: add() appends (from any
 * thread), commit() makes what was added durable and commits it in one
 * transaction, end() finishes (what was added and not committed is left
 * as garbage at the packs' tails, cut at the next start or collection).
 */
struct cas_import;
int cas_import_begin(struct cas_store *st, struct cas_import **ret);
int cas_import_add(struct cas_import *im, const void *const *recs,
		   const size_t *lens, size_t n);
uint64_t cas_import_pending(struct cas_import *im);
/* Starts writing what was added to disk, without waiting. */
void cas_import_writeback(struct cas_import *im);
int cas_import_commit(struct cas_import *im);
void cas_import_end(struct cas_import *im);

/* Accounting. */
struct cas_status {
	struct cat_stats cat;
	uint64_t pack_disk_bytes; /* what the packs take on disk */
	struct statvfs fs;        /* of the filesystem holding the store */
	uint64_t flushes;         /* syncs of lazy commits by the flusher */
	uint64_t flush_failures;
	uint64_t lost_at_open;    /* chunks found lost past the durable mark */
	uint64_t pack_syncs;      /* pack syncs that had bytes to sync */
	uint64_t inline_chunks;   /* chunks still inline in the catalog */
	uint64_t known_lists;     /* file opens whose whole-file hash was skipped */
	uint64_t mapped_chunks;   /* chunks sent from their pack's pages (cas_file_read_mapped()) */
	uint64_t mapped_reads;    /* reads answered so */
	uint64_t mapped_fallbacks; /* reads that tried and went the copying way */
};
int cas_status(struct cas_store *st, struct cas_status *ret);
/*
 * What statfs() answers, without cas_status()'s scans of the catalog
 * (milliseconds a call on 10,000 files, and find and du ask once each):
 * the catalog's inodes (orphans included, as a disk counts them), the
 * packs' disk use and the store's filesystem.
 */
int cas_space(struct cas_store *st, uint64_t *ret_inodes, uint64_t *ret_pack_disk_bytes,
	      struct statvfs *ret_fs);
/* The text of /llm/.llmfs/status (malloc()ed). */
int cas_status_text(struct cas_store *st, char **ret, size_t *ret_len);

/*
 * Garbage collection: drops chunks no file references (punching their
 * records' blocks out of the packs), deletes packs left empty and rewrites
 * packs less than half live.  -EBUSY while a writer is open (its new
 * chunks are not yet in the catalog) or another collection runs.  Returns
 * the bytes the packs gave back to the disk.
 */
int64_t cas_gc(struct cas_store *st);

/*
 * The store's collector thread: cas_gc_want() asks for a collection, which
 * runs after a second without more asks (a burst of deletes, rm -r, ends
 * first); one held off by an open writer is tried again a second later.
 * After each collection that ran, the thread snapshots the files
 * (cas_snapshot()) and calls done(arg, bytes freed or -errno) on its own
 * thread (done may be NULL; it must not call cas_gc_thread_stop()).
 * cas_gc_thread_stop() (also done by cas_store_close()) waits for a running
 * collection.  Start and stop from one thread; want from any.
 */
int cas_gc_thread_start(struct cas_store *st,
			void (*done)(void *arg, int64_t freed), void *arg);
void cas_gc_want(struct cas_store *st);
void cas_gc_thread_stop(struct cas_store *st);

/*
 * Snapshots the catalog's files (names, attributes, SHA-256s, chunk lists)
 * into STORE/files.snap, through a connection of its own: taken at every
 * open and clean close of a recovered store and after collection, it is
 * what cas_rebuild() restores files from when the catalog is lost.
 */
int cas_snapshot(struct cas_store *st);

/*
 * Rebuilds the catalog of a store opened with the rebuild option: every
 * record of every pack (and of packs in quarantine/, moved back) is
 * decoded and checked against its id and indexed again; files come back
 * from files.snap (else files.snap.old), their reference counts recounted.
 * Reports through cb.  Returns the number of files that could not be
 * restored whole (0: everything in the snapshot is back), or -errno.
 */
int cas_rebuild(struct cas_store *st, void (*cb)(void *arg, const char *line),
		void *arg);

/*
 * Checks every chunk and the catalog, reporting through cb (a line each);
 * with repair, fixes reference counts and removes orphans.  Returns the
 * number of problems left unrepaired.
 */
int cas_fsck(struct cas_store *st, int repair,
	     void (*cb)(void *arg, const char *line), void *arg);

#endif
