/*
 * store.c - opening and recovering a store, the namespace, and reads of
 * committed files.  Writers live in writer.c, collection in gc.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "backend/store/store_i.h"
#include "common/nice.h"
#include "common/utf8.h"

#define READ_AHEAD 4       /* chunks decoded ahead of a sequential reader */
#define CACHE_SLOTS 64
/* Reads ahead of the hashed prefix kept for the whole-file check. */
#define VERIFY_PIECES 16
#define VERIFY_BYTES (8u << 20)

enum { V_FOLLOW, V_GOOD, V_BAD, V_OFF };

/* A read that arrived ahead of the hashed prefix, kept until it is reached. */
struct piece {
	uint64_t off;
	size_t len;
	uint8_t *data;
};

/*
 * The whole-file check: the bytes readers get, in file order, hashed as
 * they go.  FUSE answers a sequential reader's requests on several threads,
 * so a few reads may arrive ahead of their turn; they wait in pend[].
 */
struct verify {
	pthread_mutex_t lock;
	EVP_MD_CTX *md;
	uint64_t done; /* bytes hashed */
	int state;     /* V_* */
	struct piece pend[VERIFY_PIECES];
	size_t npend, pend_bytes;
};

struct cas_file {
	uint64_t ino;
	uint64_t size;
	size_t n;
	struct cas_id *ids;
	uint32_t *lens;
	uint64_t *ends; /* ends[i]: offset just past chunk i */
	uint8_t sha[32];
	int has_sha;
	uint8_t list_digest[32]; /* SHA-256 of sha and the chunk list */
	atomic_size_t next; /* chunk a sequential reader wants next */
	/* Per chunk, what cas_file_read_mapped() last found (K_*); a hint only. */
	_Atomic uint8_t *kind;
	atomic_int copies; /* it found a chunk it copies: its read-ahead is of use */
	struct verify v;
};

enum { K_UNKNOWN, K_RAW, K_OTHER };

int64_t store_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct worker_ctx *worker_ctx_new(int level)
{
	struct worker_ctx *c = calloc(1, sizeof(*c));
	size_t bound = codec_bound(CDC_MAX);

	if (!c)
		return NULL;
	c->codec = codec_new(level);
	c->rec = malloc(PACK_REC_LEN + bound);
	c->out = malloc(bound);
	if (!c->codec || !c->rec || !c->out) {
		worker_ctx_free(c);
		return NULL;
	}
	return c;
}

void worker_ctx_free(void *p)
{
	struct worker_ctx *c = p;

	if (!c)
		return;
	codec_free(c->codec);
	free(c->rec);
	free(c->out);
	free(c);
}

/*
 * The store's background threads (the compression workers, the SHA
 * thread) run a few nice steps below the threads serving FUSE requests.
 * An ingest is a chain: `cp` waits for each write's answer, and the thread
 * answering it (a copy; for small writes the chunking too) and the feeder
 * chunking large writes behind it are the stages no other can run beside;
 * the queues hold work enough to wait.  On two cores a worker preempting
 * them stalled the whole chain, while a worker that waits loses nothing:
 * it runs as soon as the chain waits, and the bounded queues stop the
 * chain when the workers fall behind.  The feeders keep the daemon's nice.
 */
#define BACKGROUND_NICE 5

static void *pool_init(void *arg)
{
	struct cas_store *st = arg;

	thread_nice(BACKGROUND_NICE);
	return worker_ctx_new(st->level);
}

/* The SHA jobs need no context: NULL. */
static void *sha_init(void *arg)
{
	(void)arg;
	thread_nice(BACKGROUND_NICE);
	return NULL;
}

/* The feeders: no context, and the daemon's own nice (a chain stage). */
static void *feed_init(void *arg)
{
	(void)arg;
	return NULL;
}

struct worker_ctx *store_tls(struct cas_store *st)
{
	struct worker_ctx *c = pthread_getspecific(st->tls);

	if (!c) {
		c = worker_ctx_new(st->level);
		if (c)
			pthread_setspecific(st->tls, c);
	}
	return c;
}

static int read_record(struct cas_store *st, struct worker_ctx *ctx,
		       const struct cas_id *id, const struct pack_loc *loc,
		       uint8_t *out);

/*
 * An inline chunk's bytes are read from the catalog with its row, under
 * one hold of the lock: the mover (store_inline_move()) may relocate it
 * the moment the lock is let go.
 */
static int load_chunk(struct cas_store *st, struct worker_ctx *ctx,
		      const struct cas_id *id, const struct pack_loc *loc,
		      uint8_t *out, uint32_t *ret_len, int locked)
{
	struct pack_loc l;
	int r = 0, n, inl = 0;

	if (!locked)
		pthread_rwlock_rdlock(&st->gc_lock);
	if (!loc || loc->pack == CAS_PACK_INLINE) {
		if (!locked)
			pthread_mutex_lock(&st->lock);
		if (loc)
			l = *loc;
		else
			r = cat_chunk_get(st->cat, id, &l, NULL);
		if (r == 0 && l.pack == CAS_PACK_INLINE) {
			inl = 1;
			n = cat_inline_get(st->cat, id, ctx->rec,
					   PACK_REC_LEN + codec_bound(CDC_MAX));
			r = n < 0 ? n : (uint32_t)n != l.clen ? -EIO : 0;
		}
		if (!locked)
			pthread_mutex_unlock(&st->lock);
		if (r < 0) {
			r = r == -ENOENT ? -EIO : r;
			goto out;
		}
	} else {
		l = *loc;
	}
	r = inl ? store_decode_payload(ctx, id, &l, ctx->rec, out)
		: read_record(st, ctx, id, &l, out);
	if (r == -EIO && !loc && !locked) {
		/* Remembered, so that writing the same bytes again repairs it. */
		pthread_mutex_lock(&st->lock);
		cat_damaged_mark(st->cat, id);
		pthread_mutex_unlock(&st->lock);
	}
	if (r == 0)
		*ret_len = l.ulen;
out:
	if (!locked)
		pthread_rwlock_unlock(&st->gc_lock);
	return r;
}

int store_load_chunk(struct cas_store *st, struct worker_ctx *ctx,
		     const struct cas_id *id, const struct pack_loc *loc,
		     uint8_t *out, uint32_t *ret_len)
{
	return load_chunk(st, ctx, id, loc, out, ret_len, 0);
}

int store_load_chunk_locked(struct cas_store *st, struct worker_ctx *ctx,
			    const struct cas_id *id, const struct pack_loc *loc,
			    uint8_t *out, uint32_t *ret_len)
{
	return load_chunk(st, ctx, id, loc, out, ret_len, 1);
}

int store_decode_payload(struct worker_ctx *ctx, const struct cas_id *id,
			 const struct pack_loc *loc, const uint8_t *payload,
			 uint8_t *out)
{
	struct cas_id got;

	if (loc->ulen > CDC_MAX || loc->clen > codec_bound(CDC_MAX))
		return -EIO;
	if (loc->scheme == CODEC_RAW) {
		if (loc->clen != loc->ulen)
			return -EIO;
		memcpy(out, payload, loc->ulen);
	} else if (codec_decode(ctx->codec, loc->scheme, payload, loc->clen, out,
				loc->ulen) < 0) {
		return -EIO;
	}
	cas_id_of(out, loc->ulen, &got);
	return cas_id_eq(&got, id) ? 0 : -EIO;
}

/* Reads, decodes and verifies one record.  gc_lock held. */
static int read_record(struct cas_store *st, struct worker_ctx *ctx,
		       const struct cas_id *id, const struct pack_loc *loc,
		       uint8_t *out)
{
	struct pack_loc l = *loc;
	struct cas_id got;
	int r;

	if (l.ulen > CDC_MAX || l.clen > codec_bound(CDC_MAX))
		return -EIO;
	if (l.scheme == CODEC_RAW) {
		/* Stored as is: read straight into place, then verify. */
		if (l.clen != l.ulen)
			return -EIO;
		r = pack_read_payload(st->packs, &l, id, out);
		if (r < 0)
			return r;
		cas_id_of(out, l.ulen, &got);
		return cas_id_eq(&got, id) ? 0 : -EIO;
	}
	r = pack_read(st->packs, &l, id, ctx->rec);
	if (r < 0)
		return r;
	r = codec_decode(ctx->codec, l.scheme, ctx->rec + PACK_REC_LEN, l.clen,
			 out, l.ulen);
	if (r < 0)
		return -EIO;
	cas_id_of(out, l.ulen, &got);
	return cas_id_eq(&got, id) ? 0 : -EIO;
}

int store_delta_add(struct pack_delta **v, size_t *n, uint32_t pack, int64_t d)
{
	struct pack_delta *t;
	size_t i;

	/* Inline chunks live in the catalog: no pack to account. */
	if (pack == CAS_PACK_INLINE)
		return 0;
	for (i = 0; i < *n; i++)
		if ((*v)[i].pack == pack) {
			(*v)[i].live += d;
			return 0;
		}
	t = realloc(*v, (*n + 1) * sizeof(**v));
	if (!t)
		return -ENOMEM;
	*v = t;
	t[*n].pack = pack;
	t[*n].live = d;
	(*n)++;
	return 0;
}

int store_deltas_apply(struct cas_store *st, const struct pack_delta *v,
		       size_t n)
{
	size_t i;
	int r = 0;

	for (i = 0; r == 0 && i < n; i++) {
		int64_t ps = pack_size(st->packs, v[i].pack);

		r = ps < 0 ? (int)ps : pack_mark_committing(st->packs, v[i].pack);
		if (r == 0)
			r = cat_pack_update(st->cat, v[i].pack, ps, v[i].live);
	}
	return r;
}

void store_deltas_committed(struct cas_store *st, const struct pack_delta *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pack_mark_committed(st->packs, v[i].pack);
}

int store_txn_end(struct cas_store *st, int r, const struct pack_delta *v, size_t n)
{
	if (r == 0)
		r = store_deltas_apply(st, v, n);
	if (r == 0)
		r = cat_commit(st->cat);
	else
		cat_rollback(st->cat);
	if (r == 0)
		store_deltas_committed(st, v, n);
	return r;
}

int store_deref_blob(struct cas_store *st, const void *blob, size_t len)
{
	const uint8_t *p = blob;
	struct cas_id id;
	uint32_t clen;
	size_t i;
	int r;

	for (i = 0; i + CHUNK_ENTRY_LEN <= len; i += CHUNK_ENTRY_LEN) {
		entry_get(p + i, &id, &clen);
		r = cat_chunk_addref(st->cat, &id, -1);
		if (r < 0 && r != -ENOENT)
			return r;
	}
	return 0;
}

/* Deletes an inode and drops its chunk references.  Lock held, in a txn. */
static int delete_inode_locked(struct cas_store *st, uint64_t ino)
{
	void *blob = NULL;
	size_t len = 0;
	uint8_t sha[32];
	int has, r;

	r = cat_get_content(st->cat, ino, &blob, &len, sha, &has);
	if (r < 0)
		return r;
	r = store_deref_blob(st, blob, len);
	free(blob);
	if (r < 0)
		return r;
	return cat_delete(st->cat, ino);
}

/*
 * A file of spare blocks, given back when a full disk refuses the catalog
 * the few pages a delete needs: deleting is how a full store makes room.
 * 1% of the disk, at most 8 MiB; best effort.  While it is given back,
 * appends do not take its room (store_append(), store_append_room()): they
 * make it again first, or fail, so the next delete finds the blocks it needs.
 */
static int reserve_make_locked(struct cas_store *st)
{
	struct statvfs sv;
	uint64_t size;
	int fd, r = 0;

	if (statvfs(st->dir, &sv) < 0)
		return 0; /* let the append say */
	size = (uint64_t)sv.f_blocks * sv.f_frsize / 100;
	if (size > RESERVE_MAX)
		size = RESERVE_MAX;
	fd = openat(st->tmpfd, "../reserve", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = errno == EEXIST ? 0 : -errno;
	} else {
		r = -posix_fallocate(fd, 0, (off_t)size);
		if (r < 0)
			unlinkat(st->tmpfd, "../reserve", 0);
		close(fd);
	}
	__atomic_store_n(&st->reserve_gone, r < 0, __ATOMIC_RELEASE);
	return r == -EDQUOT ? -ENOSPC : r;
}

int store_reserve_make(struct cas_store *st)
{
	int r;

	pthread_mutex_lock(&st->reserve_lock);
	r = reserve_make_locked(st);
	pthread_mutex_unlock(&st->reserve_lock);
	return r;
}

int store_append_room(struct cas_store *st)
{
	if (!__atomic_load_n(&st->reserve_gone, __ATOMIC_ACQUIRE))
		return 0;
	return store_reserve_make(st);
}

int store_append(struct cas_store *st, const struct cas_id *id, enum codec_scheme scheme,
		 uint32_t ulen, const void *data, uint32_t clen, struct pack_loc *loc)
{
	int r = 0;

	/* Appends are one at a time anyway (the pack set's lock, below it). */
	pthread_mutex_lock(&st->reserve_lock);
	if (__atomic_load_n(&st->reserve_gone, __ATOMIC_ACQUIRE))
		r = reserve_make_locked(st);
	if (r == 0)
		r = pack_append(st->packs, id, scheme, ulen, data, clen, loc);
	pthread_mutex_unlock(&st->reserve_lock);
	return r;
}

/* Gives the reserve back (if there is one); appends stay off its blocks. */
static void reserve_drop(struct cas_store *st)
{
	unlinkat(st->tmpfd, "../reserve", 0);
	__atomic_store_n(&st->reserve_gone, 1, __ATOMIC_RELEASE);
}

/* Index of id in v[0..n), or n. */
static int find_id(const uint32_t *v, int n, uint32_t id)
{
	int i;

	for (i = 0; i < n && v[i] != id; i++)
		;
	return i;
}

/*
 * Gives committed sizes the floor of the chunk rows: a pack row that is
 * missing, or lower than the end of a chunk record the catalog points at,
 * is raised to it (compaction that filled a pack, a lost or damaged row).
 * Best effort: a full disk leaves the rows as they are, and the caller
 * still never cuts below the chunk rows.
 */
static void raise_pack_rows(struct cas_store *st, const uint32_t *ids,
			    const uint64_t *sizes, int n, const uint32_t *cp,
			    const uint64_t *ends, const uint64_t *clive, int nc)
{
	int i, j, r;

	if (cat_begin(st->cat) < 0)
		return;
	for (r = 0, j = 0; r == 0 && j < nc; j++) {
		i = find_id(ids, n, cp[j]);
		if (i == n)
			r = cat_pack_update(st->cat, cp[j], (int64_t)ends[j], (int64_t)clive[j]);
		else if (sizes[i] < ends[j])
			r = cat_pack_update(st->cat, cp[j], (int64_t)ends[j], 0);
	}
	if (r == 0)
		cat_commit(st->cat);
	else
		cat_rollback(st->cat);
}

/*
 * A pack file that no row of the catalog knows (no packs row, no chunk
 * row pointing into it).  It provably holds nothing committed, and is
 * removed, when it is no more than a header; when a collection marked it
 * dead and stopped before its unlink (cat_pack_delete()); or when this
 * process made it or its header still carries the fresh mark (pack.h),
 * since the first commit that names a pack clears that mark before the
 * transaction that records the pack's row.  Such packs are what crashed
 * writers leave, and removing them keeps crash after crash from filling
 * quarantine/ (the current pack is cut back to its header instead).  Any
 * other is set aside in quarantine/, never deleted: its catalog rows may
 * be lost, and only llmfs-fsck --rebuild (or a person) can tell.  A
 * current pack this process did not make is left alone (cas_store_open()
 * never makes one current).
 */
int store_pack_set_aside(struct cas_store *st, uint32_t id, char *ret_name,
			 size_t namelen)
{
	char q[4096];
	int64_t s = pack_size(st->packs, id);
	int mine = id >= st->made_from || pack_is_fresh(st->packs, id) > 0;
	int dead = cat_pack_dead(st->cat, id) > 0, r;

	/* At open, recovery runs before any pack is current. */
	if (st->made_from != UINT32_MAX && id == pack_current(st->packs))
		return mine && s > PACK_HEADER_LEN ?
			pack_truncate(st->packs, id, PACK_HEADER_LEN) : 0;
	if ((s >= 0 && s <= PACK_HEADER_LEN) || mine || dead) {
		r = pack_remove(st->packs, id);
		if (r == 0 && dead)
			cat_pack_dead_clear(st->cat, id);
		return r < 0 ? r : 0;
	}
	snprintf(q, sizeof(q), "%s/quarantine", st->dir);
	r = pack_quarantine(st->packs, id, q, ret_name, namelen);
	return r < 0 ? r : 1;
}

/*
 * 1 if some pack may have bytes to cut or be unknown: one whose file is
 * longer than its row, or a file no row names (but the current pack while
 * it holds only its header).  Rows lower than their chunk records show up
 * here too (the file is longer than the row), so when nothing does, the
 * chunk rows need not be read: a table scan a collection is spared.
 */
static int packs_need_trim(struct cas_store *st, const uint32_t *ids,
			   const uint64_t *sizes, int n, const uint32_t *disk, int nd)
{
	int i;

	for (i = 0; i < n; i++)
		if (pack_size(st->packs, ids[i]) > (int64_t)sizes[i])
			return 1;
	for (i = 0; i < nd; i++)
		if (find_id(ids, n, disk[i]) == n &&
		    (disk[i] != pack_current(st->packs) ||
		     pack_size(st->packs, disk[i]) > PACK_HEADER_LEN))
			return 1;
	return 0;
}

void store_pack_rows_free(uint32_t *ids, uint64_t *sizes, uint64_t *live,
			  uint32_t *cp, uint64_t *ends, uint64_t *clive)
{
	free(ids);
	free(sizes);
	free(live);
	free(cp);
	free(ends);
	free(clive);
}

int store_packs_trim(struct cas_store *st, char *err, size_t errlen)
{
	uint32_t *ids = NULL, *disk = NULL, *cp = NULL;
	uint64_t *sizes = NULL, *live = NULL, *ends = NULL, *clive = NULL;
	int n, nd, nc = 0, i, j, r = 0;

	n = cat_packs(st->cat, &ids, &sizes, &live);
	if (n < 0)
		return n;
	nd = pack_list(st->packs, &disk);
	if (nd < 0) {
		r = nd;
		goto out;
	}
	/* A row names these: committed, whatever a crash left in their marks. */
	for (i = 0; i < n; i++)
		if (find_id(disk, nd, ids[i]) < nd && pack_is_fresh(st->packs, ids[i]) > 0)
			pack_mark_committed(st->packs, ids[i]);
	if (!packs_need_trim(st, ids, sizes, n, disk, nd))
		goto out;
	nc = cat_pack_ends(st->cat, &cp, &ends, &clive);
	if (nc < 0) {
		r = nc;
		goto out;
	}
	raise_pack_rows(st, ids, sizes, n, cp, ends, clive, nc);
	for (i = 0; i < n; i++) {
		int64_t s = pack_size(st->packs, ids[i]);
		uint64_t keep = sizes[i] > PACK_HEADER_LEN ? sizes[i] : PACK_HEADER_LEN;

		j = find_id(cp, nc, ids[i]);
		if (j < nc && ends[j] > keep)
			keep = ends[j];
		if (s > (int64_t)keep) {
			r = pack_truncate(st->packs, ids[i], keep);
			if (r < 0) {
				snprintf(err, errlen, "cannot truncate pack %u: %s",
					 ids[i], strerror(-r));
				goto out;
			}
		}
	}
	for (j = 0; j < nd; j++)
		if (find_id(ids, n, disk[j]) == n && find_id(cp, nc, disk[j]) == nc)
			store_pack_set_aside(st, disk[j], NULL, 0);
out:
	store_pack_rows_free(ids, sizes, live, cp, ends, clive);
	free(disk);
	return r;
}

/*
 * Recovery after a crash: store_packs_trim(), then deletes orphan inodes.
 * A full disk defers what needs catalog pages (orphans wait for the next
 * start).
 */
static int recover(struct cas_store *st, char *err, size_t errlen)
{
	uint64_t *orphans = NULL;
	int no, i, r;

	r = store_packs_trim(st, err, errlen);
	if (r < 0)
		return r;
	no = cat_orphans(st->cat, &orphans);
	if (no < 0) {
		r = no;
		goto out;
	}
	if (no > 0) {
		r = cat_begin(st->cat);
		for (i = 0; r == 0 && i < no; i++)
			r = delete_inode_locked(st, orphans[i]);
		if (r == 0)
			r = cat_commit(st->cat);
		else
			cat_rollback(st->cat);
		if (r == -ENOSPC || r == -EDQUOT) {
			r = 0; /* the next start deletes them */
		} else if (r < 0) {
			snprintf(err, errlen, "cannot delete orphans: %s", strerror(-r));
			goto out;
		}
	}
	r = pack_set_sync(st->packs);
out:
	free(orphans);
	return r;
}

/* The number of packs on disk holding more than a header, or -errno. */
static int packs_with_data(struct cas_store *st)
{
	uint32_t *disk = NULL;
	int nd, i, k = 0;

	nd = pack_list(st->packs, &disk);
	for (i = 0; i < nd; i++)
		if (pack_size(st->packs, disk[i]) > PACK_HEADER_LEN)
			k++;
	free(disk);
	return nd < 0 ? nd : k;
}

/*
 * Sets st->made_from past every pack on disk: packs from there on are made
 * by this process.  A cur that names a pack file no packs row knows (only
 * without recovery, as llmfs-fsck opens) moves past them too, so that
 * appends and collection never treat a pack of unknown bytes as their own.
 */
static int packs_made_from(struct cas_store *st, const uint32_t *ids, int n,
			   uint32_t *cur)
{
	uint32_t *disk = NULL, top = 0;
	int nd, i;

	nd = pack_list(st->packs, &disk);
	if (nd < 0)
		return nd;
	for (i = 0; i < nd; i++)
		if (disk[i] > top)
			top = disk[i];
	if (find_id(disk, nd, *cur) < nd && find_id(ids, n, *cur) == n)
		*cur = top + 1;
	free(disk);
	st->made_from = top + 1;
	return 0;
}

/* 1 if path is missing or empty, 0 if not. */
static int file_missing_or_empty(const char *path)
{
	struct stat sb;

	return stat(path, &sb) < 0 ? errno == ENOENT : sb.st_size == 0;
}

/*
 * Moves catalog.db (and its -wal and -shm) aside as catalog.db.lost-TIME,
 * for llmfs-fsck --rebuild: a damaged catalog is kept, never deleted.
 */
static int catalog_set_aside(struct cas_store *st, char *err, size_t errlen)
{
	static const char *const sfx[] = { "", "-wal", "-shm" };
	char from[4096], to[4096 + 64];
	long long now = (long long)time(NULL);
	size_t i;

	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(from, sizeof(from), "%s/catalog.db%s", st->dir, sfx[i]);
		snprintf(to, sizeof(to), "%s/catalog.db.lost-%lld%s", st->dir, now, sfx[i]);
		if (rename(from, to) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "cannot move %s aside: %s", from,
				 strerror(errno));
			return -errno;
		}
	}
	return 0;
}

/*
 * Before the catalog is opened: a catalog that is gone or empty while
 * packs hold data is lost, not new.  Starting empty would hide every file
 * and let recovery set every pack aside: refuse, and say how to rebuild.
 */
static int check_catalog_lost(struct cas_store *st, const char *path,
			      char *err, size_t errlen)
{
	char wal[4096 + 8];
	int k;

	snprintf(wal, sizeof(wal), "%s-wal", path);
	if (!file_missing_or_empty(path) || !file_missing_or_empty(wal))
		return 0;
	k = packs_with_data(st);
	if (k <= 0)
		return k;
	snprintf(err, errlen,
		 "%s is missing or empty, but %d pack%s in %s/packs hold%s data:"
		 " refusing to start with an empty catalog; run"
		 " `llmfs-fsck --rebuild %s` to rebuild it from the packs and the"
		 " last file snapshot",
		 path, k, k == 1 ? "" : "s", st->dir, k == 1 ? "s" : "", st->dir);
	return -EUCLEAN;
}

/* 1 when the disk holding the store has less than a reserve's room. */
static int disk_short(struct cas_store *st)
{
	struct statvfs sv;

	return statvfs(st->dir, &sv) == 0 &&
	       (uint64_t)sv.f_bavail * sv.f_frsize < RESERVE_MAX;
}

int cas_snapshot(struct cas_store *st)
{
	char cat[4096], snap[4096];
	int r = -ENOSPC;

	snprintf(cat, sizeof(cat), "%s/catalog.db", st->dir);
	snprintf(snap, sizeof(snap), "%s/files.snap", st->dir);
	/*
	 * The room is for deletes: the last snapshot stays, and none is
	 * written while a delete that gave the reserve back retries (it
	 * would take the freed blocks).
	 */
	pthread_mutex_lock(&st->snap_lock);
	if (!__atomic_load_n(&st->reserve_gone, __ATOMIC_ACQUIRE) &&
	    !disk_short(st))
		r = cat_snapshot(cat, snap);
	pthread_mutex_unlock(&st->snap_lock);
	return r;
}

static int take_lock(struct cas_store *st, char *err, size_t errlen)
{
	char path[4096], buf[32];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/lock", st->dir);
	st->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lockfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(st->lockfd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		n = pread(st->lockfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (e == EWOULDBLOCK) {
			snprintf(err, errlen,
				 "store %s is already in use by another llmfs process%s%s%s",
				 st->dir, buf[0] ? " (pid " : "", buf, buf[0] ? ")" : "");
			return -EBUSY;
		}
		snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
		return -e;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(st->lockfd, 0) < 0 || pwrite(st->lockfd, buf, (size_t)n, 0) != n) {
		/* The pid is only for the message a second daemon prints. */
	}
	return 0;
}

static int make_dir(const char *dir, const char *sub, char *err, size_t errlen)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s%s%s", dir, sub ? "/" : "", sub ? sub : "");
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

int cas_store_open(const char *dir, const struct cas_options *opt,
		   struct cas_store **ret, char *err, size_t errlen)
{
	struct cas_options o = { .level = 3, .threads = 0, .pack_max = 256 << 20 };
	pthread_rwlockattr_t rwa;
	struct cas_store *st;
	char path[4096];
	uint32_t *ids = NULL, cur = 1;
	uint64_t *sizes = NULL, *live = NULL;
	int r, n;

	if (opt)
		o = *opt;
	if (o.level == 0)
		o.level = 3;
	if (o.threads <= 0) {
		long np = sysconf(_SC_NPROCESSORS_ONLN);

		o.threads = np > 0 ? (int)(np > 16 ? 16 : np) : 2;
	}
	if (o.pack_max == 0)
		o.pack_max = 256 << 20;
	if (o.pack_cache == 0) {
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

		o.pack_cache = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz / 8 : 0;
	}
	if (o.pack_cache == UINT64_MAX)
		o.pack_cache = 0;
	if (o.rebuild)
		o.no_recovery = 1;
	err[0] = '\0';
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->lockfd = st->tmpfd = -1;
	st->made_from = UINT32_MAX;
	st->level = o.level;
	st->pack_max = o.pack_max;
	/*
	 * Readers first, even with a writer waiting: a read from the packs'
	 * pages (cas_file_read_mapped()) holds gc_lock shared while a chunk it
	 * copies takes it shared again (load_chunk()), which a lock that
	 * queued readers behind a waiting collector would deadlock.  This is
	 * glibc's default, asked for by name so that it does not depend on it.
	 */
	pthread_rwlockattr_init(&rwa);
	pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_READER_NP);
	pthread_rwlock_init(&st->gc_lock, &rwa);
	pthread_rwlockattr_destroy(&rwa);
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->reserve_lock, NULL);
	pthread_mutex_init(&st->snap_lock, NULL);
	pthread_mutex_init(&st->cg.lock, NULL);
	pthread_cond_init(&st->cg.cond, NULL);
	st->cg.tail = &st->cg.queue;
	pthread_mutex_init(&st->fl.lock, NULL);
	pthread_cond_init(&st->fl.cond, NULL);
	st->markfd = -1;
	st->close_sync = o.close_sync;
	r = pthread_key_create(&st->tls, worker_ctx_free);
	if (r) {
		free(st);
		return -r;
	}
	st->dir = realpath(dir, NULL);
	if (!st->dir) {
		r = make_dir(dir, NULL, err, errlen);
		if (r < 0)
			goto fail;
		st->dir = realpath(dir, NULL);
		if (!st->dir) {
			r = -errno;
			snprintf(err, errlen, "%s: %s", dir, strerror(errno));
			goto fail;
		}
	}
	r = take_lock(st, err, errlen);
	if (r < 0)
		goto fail;
	r = make_dir(st->dir, "tmp", err, errlen);
	if (r < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/tmp", st->dir);
	st->tmpfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->tmpfd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/packs", st->dir);
	r = pack_set_open(path, o.pack_max, o.pack_cache, &st->packs);
	if (r < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
		goto fail;
	}
	/*
	 * On a full disk the catalog cannot even open (its -shm and WAL need
	 * blocks): the reserve is given back first, so that the daemon starts
	 * and files can be deleted.
	 */
	if (!o.no_recovery && disk_short(st))
		reserve_drop(st);
	snprintf(path, sizeof(path), "%s/catalog.db", st->dir);
	if (o.rebuild)
		r = catalog_set_aside(st, err, errlen);
	else
		r = check_catalog_lost(st, path, err, errlen);
	if (r < 0)
		goto fail;
	r = cat_open(path, &st->cat, err, errlen);
	if (r < 0) {
		size_t l = strlen(err);

		if (r != -EBUSY && r != -EPROTONOSUPPORT && l < errlen)
			snprintf(err + l, errlen - l,
				 "; `llmfs-fsck --rebuild %s` rebuilds the catalog from"
				 " the packs and the last file snapshot", st->dir);
		goto fail;
	}
	if (!o.no_recovery) {
		r = recover(st, err, errlen);
		if (r < 0) {
			if (!err[0])
				snprintf(err, errlen, "recovery failed: %s", strerror(-r));
			goto fail;
		}
	}
	n = cat_packs(st->cat, &ids, &sizes, &live);
	if (n < 0) {
		r = n;
		snprintf(err, errlen, "cannot read the pack table: %s", strerror(-r));
		goto fail;
	}
	if (n > 0)
		cur = sizes[n - 1] < o.pack_max ? ids[n - 1] : ids[n - 1] + 1;
	r = packs_made_from(st, ids, n, &cur);
	if (r == 0)
		r = pack_set_start(st->packs, cur);
	if ((r == -ENOSPC || r == -EDQUOT) && n > 0 && cur != ids[n - 1])
		/* No room for a new pack: appends start it when there is. */
		r = pack_set_start(st->packs, ids[n - 1]);
	free(ids);
	free(sizes);
	free(live);
	if (r < 0) {
		snprintf(err, errlen, "cannot open pack %u: %s", cur, strerror(-r));
		goto fail;
	}
	if (!o.no_recovery) {
		cas_snapshot(st); /* best effort: a full disk keeps the last one */
		st->snap_on_close = 1;
	}
	if (!o.no_recovery)
		store_reserve_make(st);
	st->cache = ccache_new(CACHE_SLOTS, CDC_MAX);
	if (!st->cache) {
		r = -ENOMEM;
		goto fail;
	}
	r = pool_new(o.threads, (size_t)o.threads * 2 + 2, pool_init,
		     worker_ctx_free, st, &st->pool);
	if (r == 0)
		r = pool_new(1, 8, sha_init, NULL, NULL, &st->sha_pool);
	if (r == 0)
		r = pool_new(o.threads, (size_t)o.threads * 4, feed_init, NULL, NULL,
			     &st->feed_pool);
	if (r < 0) {
		snprintf(err, errlen, "cannot start workers: %s", strerror(-r));
		goto fail;
	}
	if (!o.no_recovery) {
		r = store_tail_check(st, err, errlen);
		if (r < 0)
			goto fail;
		r = store_flusher_start(st, o.flush_ms > 0 ? o.flush_ms : CAS_FLUSH_MS);
		if (r < 0) {
			snprintf(err, errlen, "cannot start the flusher: %s", strerror(-r));
			goto fail;
		}
		/* Inline chunks a stop left: the flusher moves them soon. */
		store_inline_note(st);
	}
	*ret = st;
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "cannot open store %s: %s", dir, strerror(-r));
	cas_store_close(st);
	return r;
}

void cas_store_close(struct cas_store *st)
{
	void *c;

	if (!st)
		return;
	cas_gc_thread_stop(st);
	store_flusher_stop(st);
	pool_free(st->feed_pool); /* its jobs submit to the two below */
	pool_free(st->pool);
	pool_free(st->sha_pool);
	/* Inline chunks into the packs, so that a rebuild from the packs finds
	 * them (markfd: opened with recovery); then lazy commits not flushed
	 * yet: durable before the store is let go. */
	if (st->packs && st->cat && st->markfd >= 0)
		store_inline_move_all(st);
	if (st->packs && st->cat)
		cas_sync(st);
	else if (st->packs)
		pack_set_sync(st->packs);
	if (st->markfd >= 0)
		close(st->markfd);
	if (st->snap_on_close && st->cat) {
		cas_snapshot(st);
		/* The next start on a full disk needs it to open the catalog. */
		store_reserve_make(st);
	}
	pack_set_free(st->packs);
	cat_close(st->cat);
	ccache_free(st->cache);
	c = pthread_getspecific(st->tls);
	worker_ctx_free(c);
	pthread_setspecific(st->tls, NULL);
	pthread_key_delete(st->tls);
	if (st->tmpfd >= 0)
		close(st->tmpfd);
	if (st->lockfd >= 0)
		close(st->lockfd);
	pthread_rwlock_destroy(&st->gc_lock);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->reserve_lock);
	pthread_mutex_destroy(&st->snap_lock);
	pthread_mutex_destroy(&st->cg.lock);
	pthread_cond_destroy(&st->cg.cond);
	pthread_mutex_destroy(&st->fl.lock);
	pthread_cond_destroy(&st->fl.cond);
	free(st->dir);
	free(st);
}

const char *cas_store_dir(const struct cas_store *st)
{
	return st->dir;
}

/* ---- namespace ---------------------------------------------------------- */

int cas_getattr(struct cas_store *st, uint64_t ino, struct cat_attr *ret)
{
	int r;

	pthread_mutex_lock(&st->lock);
	r = cat_get(st->cat, ino, ret);
	pthread_mutex_unlock(&st->lock);
	return r;
}

int cas_lookup(struct cas_store *st, uint64_t parent, const char *name,
	       struct cat_attr *ret)
{
	int r;

	pthread_mutex_lock(&st->lock);
	r = cat_lookup(st->cat, parent, name, ret);
	pthread_mutex_unlock(&st->lock);
	return r;
}

/* Runs fn inside a transaction, rolling back on failure; lock held. */
#define IN_TXN_LOCKED(st, r, body)                   \
	do {                                         \
		(r) = cat_begin((st)->cat);          \
		if ((r) == 0) {                      \
			body;                        \
			if ((r) == 0)                \
				(r) = cat_commit((st)->cat); \
			else                         \
				cat_rollback((st)->cat); \
		}                                    \
	} while (0)

/* Runs fn inside a transaction under the lock, rolling back on failure. */
#define IN_TXN(st, r, body)                          \
	do {                                         \
		pthread_mutex_lock(&(st)->lock);     \
		IN_TXN_LOCKED(st, r, body);          \
		pthread_mutex_unlock(&(st)->lock);   \
	} while (0)

/*
 * IN_TXN for deletes: on a full disk the reserve is given back and the
 * transaction tried once more.  From the reserve's removal to the retry's
 * commit nothing else may take the blocks: the reserve's lock keeps
 * appends off (they would make it again), the snapshot's keeps a catalog
 * snapshot from being written, and the catalog's lock, held throughout,
 * other transactions and a collection's copies.
 */
#define IN_TXN_MAKING_ROOM(st, r, body)                    \
	do {                                               \
		IN_TXN(st, r, body);                       \
		if ((r) == -ENOSPC) {                      \
			pthread_mutex_lock(&(st)->reserve_lock); \
			pthread_mutex_lock(&(st)->snap_lock); \
			pthread_mutex_lock(&(st)->lock);   \
			reserve_drop(st);                  \
			IN_TXN_LOCKED(st, r, body);        \
			pthread_mutex_unlock(&(st)->lock); \
			pthread_mutex_unlock(&(st)->snap_lock); \
			pthread_mutex_unlock(&(st)->reserve_lock); \
		}                                          \
	} while (0)

static int check_parent(struct cas_store *st, uint64_t parent)
{
	struct cat_attr p;
	int r = cat_get(st->cat, parent, &p);

	if (r < 0)
		return r;
	return S_ISDIR(p.mode) && p.nlink > 0 ? 0 : -ENOTDIR;
}

int cas_name_check(const char *name)
{
	size_t len = strlen(name);

	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	if (len == 0 || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return -EINVAL;
	return utf8_check_n(name, len);
}

int cas_mknode(struct cas_store *st, uint64_t parent, const char *name,
	       uint32_t mode, uint32_t uid, uint32_t gid, const char *target,
	       struct cat_attr *ret)
{
	int r = cas_name_check(name);

	if (r < 0)
		return r;
	IN_TXN(st, r, {
		r = check_parent(st, parent);
		if (r == 0)
			r = cat_insert(st->cat, parent, name, mode, uid, gid,
				       store_now_ns(), target, ret);
	});
	return r;
}

int cas_create(struct cas_store *st, uint64_t parent, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, struct cat_attr *ret)
{
	int r = cas_name_check(name);

	if (r < 0)
		return r;
	if (!S_ISREG(mode))
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	r = cat_begin_unsynced(st->cat);
	if (r == 0) {
		r = check_parent(st, parent);
		if (r == 0)
			r = cat_insert(st->cat, parent, name, mode, uid, gid, store_now_ns(),
				       NULL, ret);
		r = cat_end_unsynced(st->cat, r);
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

int cas_unlink(struct cas_store *st, uint64_t parent, const char *name,
	       int keep, uint64_t *ret_ino)
{
	struct cat_attr a;
	int r;

	IN_TXN_MAKING_ROOM(st, r, {
		r = cat_lookup(st->cat, parent, name, &a);
		if (r == 0 && S_ISDIR(a.mode))
			r = -EISDIR;
		if (r == 0)
			r = keep ? cat_orphan(st->cat, a.ino)
				 : delete_inode_locked(st, a.ino);
	});
	if (r == 0 && ret_ino)
		*ret_ino = a.ino;
	return r;
}

int cas_store_orphan_create(struct cas_store *st, uint32_t mode, uint32_t uid,
			    uint32_t gid, const char *target, uint64_t *ret_ino)
{
	struct cat_attr a;
	int r;

	if (S_ISDIR(mode))
		return -EINVAL;
	/*
	 * Made under parent 0 and orphaned in the same transaction: orphans
	 * are named '#INO' there, so "#new" is free, and no name under
	 * models/ ever shows it.
	 */
	IN_TXN(st, r, {
		r = cat_insert(st->cat, 0, "#new", mode, uid, gid, store_now_ns(),
			       target, &a);
		if (r == 0)
			r = cat_orphan(st->cat, a.ino);
	});
	if (r == 0)
		*ret_ino = a.ino;
	return r;
}

int cas_rmdir(struct cas_store *st, uint64_t parent, const char *name)
{
	struct cat_attr a;
	int r;

	IN_TXN_MAKING_ROOM(st, r, {
		r = cat_lookup(st->cat, parent, name, &a);
		if (r == 0 && !S_ISDIR(a.mode))
			r = -ENOTDIR;
		if (r == 0) {
			r = cat_count_children(st->cat, a.ino);
			r = r > 0 ? -ENOTEMPTY : r;
		}
		if (r == 0)
			r = cat_delete(st->cat, a.ino);
	});
	return r;
}

/* -EINVAL if dir is ino or below it (a folder cannot move into itself). */
static int check_not_below(struct cas_store *st, uint64_t ino, uint64_t dir)
{
	struct cat_attr a;
	int depth = 0, r;

	while (dir != 0 && depth++ < 4096) {
		if (dir == ino)
			return -EINVAL;
		if (dir == CAT_ROOT_INO)
			return 0;
		r = cat_get(st->cat, dir, &a);
		if (r < 0)
			return r;
		dir = a.parent;
	}
	return 0;
}

static int rename_locked(struct cas_store *st, uint64_t parent, const char *name,
			 uint64_t newparent, const char *newname, int noreplace,
			 int keep_replaced, uint64_t *ret_replaced)
{
	struct cat_attr src, dst;
	int r;

	r = cat_lookup(st->cat, parent, name, &src);
	if (r < 0)
		return r;
	r = check_parent(st, newparent);
	if (r < 0)
		return r;
	if (S_ISDIR(src.mode)) {
		r = check_not_below(st, src.ino, newparent);
		if (r < 0)
			return r;
	}
	r = cat_lookup(st->cat, newparent, newname, &dst);
	if (r == 0) {
		if (dst.ino == src.ino)
			return 0;
		if (noreplace)
			return -EEXIST;
		if (S_ISDIR(dst.mode)) {
			if (!S_ISDIR(src.mode))
				return -EISDIR;
			r = cat_count_children(st->cat, dst.ino);
			if (r != 0)
				return r > 0 ? -ENOTEMPTY : r;
			r = cat_delete(st->cat, dst.ino);
		} else {
			if (S_ISDIR(src.mode))
				return -ENOTDIR;
			r = keep_replaced ? cat_orphan(st->cat, dst.ino)
					  : delete_inode_locked(st, dst.ino);
		}
		if (r < 0)
			return r;
		*ret_replaced = dst.ino;
	} else if (r != -ENOENT) {
		return r;
	}
	return cat_move(st->cat, src.ino, newparent, newname, store_now_ns());
}

int cas_rename(struct cas_store *st, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname, int noreplace,
	       int keep_replaced, uint64_t *ret_replaced)
{
	uint64_t replaced = 0;
	int r = cas_name_check(newname);

	if (r < 0)
		return r;
	IN_TXN_MAKING_ROOM(st, r, {
		r = rename_locked(st, parent, name, newparent, newname, noreplace,
				  keep_replaced, &replaced);
	});
	if (ret_replaced)
		*ret_replaced = r == 0 ? replaced : 0;
	return r;
}

int cas_set_attr(struct cas_store *st, const struct cat_attr *a)
{
	int r;

	IN_TXN(st, r, { r = cat_set_attr(st->cat, a); });
	return r;
}

int cas_readlink(struct cas_store *st, uint64_t ino, char **ret)
{
	int r;

	pthread_mutex_lock(&st->lock);
	r = cat_readlink(st->cat, ino, ret);
	pthread_mutex_unlock(&st->lock);
	return r;
}

int cas_release_orphan(struct cas_store *st, uint64_t ino)
{
	struct cat_attr a;
	int r;

	IN_TXN_MAKING_ROOM(st, r, {
		r = cat_get(st->cat, ino, &a);
		if (r == 0 && a.nlink == 0)
			r = delete_inode_locked(st, ino);
		else if (r == -ENOENT)
			r = 0;
	});
	return r;
}

int cas_children(struct cas_store *st, uint64_t ino,
		 int (*cb)(void *arg, const char *name, const struct cat_attr *a),
		 void *arg)
{
	int r;

	pthread_mutex_lock(&st->lock);
	r = cat_children(st->cat, ino, cb, arg);
	pthread_mutex_unlock(&st->lock);
	return r;
}

struct child_list {
	struct cas_child *v;
	size_t n, cap;
};

static int child_add(void *arg, const char *name, const struct cat_attr *a)
{
	struct child_list *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct cas_child *v = realloc(c->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n].name = strdup(name);
	if (!c->v[c->n].name)
		return -ENOMEM;
	c->v[c->n++].a = *a;
	return 0;
}

int cas_children_get(struct cas_store *st, uint64_t ino, struct cas_child **ret,
		     size_t *ret_n)
{
	struct child_list c = { 0 };
	int r = cas_children(st, ino, child_add, &c);

	if (r < 0) {
		cas_children_free(c.v, c.n);
		c.v = NULL;
		c.n = 0;
	}
	*ret = c.v;
	*ret_n = c.n;
	return r;
}

void cas_children_free(struct cas_child *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

int cas_path(struct cas_store *st, uint64_t ino, char *buf, size_t len)
{
	int r;

	pthread_mutex_lock(&st->lock);
	r = cat_path(st->cat, ino, buf, len);
	pthread_mutex_unlock(&st->lock);
	return r;
}

/* ---- committed files ---------------------------------------------------- */

int store_list_digest(const uint8_t sha[32], const void *blob, size_t len,
		      uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int dlen = 0;
	int r = 0;

	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(md, sha, 32) || !EVP_DigestUpdate(md, blob, len) ||
	    !EVP_DigestFinal_ex(md, out, &dlen))
		r = -ENOMEM;
	EVP_MD_CTX_free(md);
	return r;
}

/*
 * A confirmed chunk list (a whole read that matched the SHA-256, or a
 * writer that stored every chunk of it: store_i.h): every chunk is still
 * checked against its id as it is loaded, so the same list gives the same
 * bytes, and the whole-file hash is not done again.  A list changed in any
 * way (damage, a repair) has another digest and is hashed.
 */
static void list_known(struct cas_store *st, struct cas_file *f,
		       const void *blob, size_t len)
{
	if (store_list_digest(f->sha, blob, len, f->list_digest) < 0) {
		/* Not known: the whole-file check runs. */
		memset(f->list_digest, 0, sizeof(f->list_digest));
		return;
	}
	pthread_mutex_lock(&st->lock);
	if (cat_verified_has(st->cat, f->list_digest) == 1) {
		f->v.state = V_GOOD;
		st->known_lists++;
	}
	pthread_mutex_unlock(&st->lock);
}

int cas_file_open(struct cas_store *st, uint64_t ino, struct cas_file **ret)
{
	struct cas_file *f;
	void *blob = NULL;
	size_t len = 0, i;
	uint64_t end = 0;
	int r;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->v.lock, NULL);
	pthread_mutex_lock(&st->lock);
	r = cat_get_content(st->cat, ino, &blob, &len, f->sha, &f->has_sha);
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		goto fail;
	f->ino = ino;
	f->n = len / CHUNK_ENTRY_LEN;
	if (f->n) {
		f->ids = malloc(f->n * sizeof(*f->ids));
		f->lens = malloc(f->n * sizeof(*f->lens));
		f->ends = malloc(f->n * sizeof(*f->ends));
		f->kind = calloc(f->n, sizeof(*f->kind));
		if (!f->ids || !f->lens || !f->ends || !f->kind) {
			r = -ENOMEM;
			goto fail;
		}
	}
	for (i = 0; i < f->n; i++) {
		entry_get((uint8_t *)blob + i * CHUNK_ENTRY_LEN, &f->ids[i], &f->lens[i]);
		end += f->lens[i];
		f->ends[i] = end;
	}
	f->size = end;
	if (!f->n && !f->has_sha) {
		/* A file never written: the hash of no bytes. */
		SHA256((const unsigned char *)"", 0, f->sha);
		f->has_sha = 1;
	}
	if (f->has_sha && f->size >= KNOWN_LIST_MIN)
		list_known(st, f, blob, len);
	free(blob);
	*ret = f;
	return 0;
fail:
	free(blob);
	cas_file_free(f);
	return r;
}

static void verify_stop(struct verify *v, int state)
{
	size_t i;

	for (i = 0; i < v->npend; i++)
		free(v->pend[i].data);
	v->npend = v->pend_bytes = 0;
	EVP_MD_CTX_free(v->md);
	v->md = NULL;
	v->state = state;
}

void cas_file_free(struct cas_file *f)
{
	if (!f)
		return;
	verify_stop(&f->v, V_OFF);
	pthread_mutex_destroy(&f->v.lock);
	free(f->ids);
	free(f->lens);
	free(f->ends);
	free(f->kind);
	free(f);
}

uint64_t cas_file_size(const struct cas_file *f)
{
	return f->size;
}

int cas_file_sha256(const struct cas_file *f, uint8_t ret[32])
{
	if (!f->has_sha)
		return -ENODATA;
	memcpy(ret, f->sha, 32);
	return 0;
}

size_t cas_file_nchunks(const struct cas_file *f)
{
	return f->n;
}

void cas_file_chunk(const struct cas_file *f, size_t i, struct cas_id *ret_id,
		    uint32_t *ret_len)
{
	*ret_id = f->ids[i];
	*ret_len = f->lens[i];
}

/* Index of the chunk holding byte off (off < f->size). */
static size_t chunk_at(const struct cas_file *f, uint64_t off)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->ends[mid] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct prefetch {
	struct cas_store *st;
	struct cas_id id;
	int skip_raw; /* for the mapped path: a raw chunk in a pack is its own */
};

/* 1 if loc is a record the mapped path sends (stored as is, in a pack). */
static int loc_raw(const struct pack_loc *l)
{
	return l->pack != CAS_PACK_INLINE && l->scheme == CODEC_RAW && l->clen == l->ulen &&
	       l->ulen > 0;
}

static void prefetch_job(void *ctx, void *arg)
{
	struct worker_ctx *w = ctx;
	struct prefetch *p = arg;
	struct pack_loc l;
	uint32_t len = 0;
	uint8_t *slot;
	int r;

	if (p->skip_raw) {
		pthread_mutex_lock(&p->st->lock);
		r = cat_chunk_get(p->st->cat, &p->id, &l, NULL);
		pthread_mutex_unlock(&p->st->lock);
		if (r < 0 || loc_raw(&l)) {
			free(p);
			return;
		}
	}
	slot = ccache_begin(p->st->cache, &p->id);

	if (slot && (!w || store_load_chunk(p->st, w, &p->id, NULL, slot, &len) < 0))
		len = 0;
	if (slot)
		ccache_end(p->st->cache, &p->id, len);
	free(p);
}

/*
 * Decodes the next chunks into the cache.  For the mapped path (skip_raw)
 * only those it will copy: chunks it found raw are skipped here, the rest
 * looked up by the job first.
 */
static void read_ahead(struct cas_store *st, struct cas_file *f, size_t i, int skip_raw)
{
	size_t j;

	for (j = i + 1; j < f->n && j <= i + READ_AHEAD; j++) {
		struct prefetch *p;

		if (skip_raw && atomic_load_explicit(&f->kind[j], memory_order_relaxed) == K_RAW)
			continue;
		p = malloc(sizeof(*p));
		if (!p)
			break;
		p->st = st;
		p->id = f->ids[j];
		p->skip_raw = skip_raw;
		if (pool_try_submit(st->pool, prefetch_job, p) < 0) {
			free(p);
			break;
		}
	}
}

/*
 * Copies part of chunk i into dst: from the cache, else decoded into a
 * cache slot, else (no slot free) decoded privately.
 */
static int read_chunk(struct cas_store *st, struct cas_file *f, size_t i,
		      size_t within, void *dst, size_t take)
{
	struct worker_ctx *ctx;
	uint32_t ulen = 0;
	uint8_t *slot;
	int tries, r;

	for (tries = 0; tries < 3; tries++) {
		if (ccache_read(st->cache, &f->ids[i], within, dst, take) == 0)
			return 0;
		slot = ccache_begin(st->cache, &f->ids[i]);
		if (!slot)
			continue;
		ctx = store_tls(st);
		r = ctx ? store_load_chunk(st, ctx, &f->ids[i], NULL, slot, &ulen) : -ENOMEM;
		if (r == 0 && ulen != f->lens[i])
			r = -EIO;
		ccache_end(st->cache, &f->ids[i], r == 0 ? ulen : 0);
		if (r < 0)
			return r;
	}
	ctx = store_tls(st);
	if (!ctx)
		return -ENOMEM;
	r = store_load_chunk(st, ctx, &f->ids[i], NULL, ctx->out, &ulen);
	if (r == 0 && ulen != f->lens[i])
		r = -EIO;
	if (r == 0)
		memcpy(dst, ctx->out + within, take);
	return r;
}

/* Hashes what of buf[0..n) at off lies past the hashed prefix.  Lock held. */
static void verify_feed(struct verify *v, const uint8_t *buf, size_t n, uint64_t off)
{
	if (off <= v->done && off + n > v->done) {
		EVP_DigestUpdate(v->md, buf + (v->done - off), (size_t)(off + n - v->done));
		v->done = off + n;
	}
}

/*
 * Follows a read of n bytes at off for the whole-file check; -EIO when the
 * file is known not to match its SHA-256: this read completed it, or came
 * after.  Every later read fails, not only those that reach the end: the
 * read that completes the hash need not be the last one answered (FUSE
 * answers read-ahead on several threads), and the kernel retries a failed
 * read-ahead range in pages of its own, which would otherwise be served
 * and complete a copy of bytes known to be wrong somewhere.
 */
static int verify_read(struct cas_store *st, struct cas_file *f,
		       const uint8_t *buf, size_t n, uint64_t off)
{
	int good = 0;
	struct verify *v = &f->v;
	uint8_t md[32];
	size_t i;
	int r = 0;

	if (!f->has_sha || n == 0)
		return 0;
	pthread_mutex_lock(&v->lock);
	if (v->state == V_BAD)
		r = -EIO;
	if (v->state != V_FOLLOW)
		goto out;
	if (!v->md) {
		v->md = EVP_MD_CTX_new();
		if (!v->md || !EVP_DigestInit_ex(v->md, EVP_sha256(), NULL)) {
			verify_stop(v, V_OFF);
			goto out;
		}
	}
	if (off > v->done) {
		uint8_t *copy;

		/* Ahead of its turn: kept, within bounds (a random reader is not followed). */
		if (v->npend == VERIFY_PIECES || v->pend_bytes + n > VERIFY_BYTES ||
		    !(copy = malloc(n))) {
			verify_stop(v, V_OFF);
			goto out;
		}
		memcpy(copy, buf, n);
		v->pend[v->npend++] = (struct piece){ off, n, copy };
		v->pend_bytes += n;
		goto out;
	}
	verify_feed(v, buf, n, off);
	for (i = 0; i < v->npend;) {
		struct piece *p = &v->pend[i];

		if (p->off > v->done) {
			i++;
			continue;
		}
		verify_feed(v, p->data, p->len, p->off);
		v->pend_bytes -= p->len;
		free(p->data);
		*p = v->pend[--v->npend];
		i = 0; /* the prefix grew: look at every piece again */
	}
	if (v->done < f->size)
		goto out;
	if (!EVP_DigestFinal_ex(v->md, md, NULL)) {
		verify_stop(v, V_OFF);
		goto out;
	}
	verify_stop(v, memcmp(md, f->sha, 32) == 0 ? V_GOOD : V_BAD);
	if (v->state == V_BAD)
		r = -EIO;
	good = v->state == V_GOOD;
out:
	pthread_mutex_unlock(&v->lock);
	/*
	 * Remembered for later opens; a failure only costs a hash.  Not on a
	 * short disk: the catalog's room is for deletes (cas_snapshot too).
	 */
	if (good && f->size >= KNOWN_LIST_MIN &&
	    !__atomic_load_n(&st->reserve_gone, __ATOMIC_ACQUIRE) && !disk_short(st)) {
		pthread_mutex_lock(&st->lock);
		cat_verified_add(st->cat, f->list_digest);
		pthread_mutex_unlock(&st->lock);
	}
	return r;
}

ssize_t cas_file_read(struct cas_store *st, struct cas_file *f, void *buf,
		      size_t len, uint64_t off, struct cas_fault *fault)
{
	size_t done = 0, i;
	int r;

	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	i = chunk_at(f, off);
	while (done < len) {
		uint64_t start = i ? f->ends[i - 1] : 0;
		size_t within = (size_t)(off + done - start);
		size_t take = f->lens[i] - within;

		if (take > len - done)
			take = len - done;
		if (atomic_exchange(&f->next, i + 1) == i)
			read_ahead(st, f, i, 0);
		r = read_chunk(st, f, i, within, (uint8_t *)buf + done, take);
		if (r < 0) {
			if (fault) {
				fault->off = start;
				fault->id = f->ids[i];
				fault->whole = 0;
			}
			return r;
		}
		done += take;
		i++;
	}
	r = verify_read(st, f, buf, done, off);
	if (r < 0) {
		if (fault) {
			fault->off = 0;
			memset(&fault->id, 0, sizeof(fault->id));
			fault->whole = 1;
		}
		return r;
	}
	return (ssize_t)done;
}

/* ---- reads from the packs' pages ---------------------------------------- */

/* Chunks a read of CAS_MAPPED_MAX bytes can touch, but for short ones. */
#define MAPPED_CHUNKS (CAS_MAPPED_MAX / CDC_MIN + 3)
/* Each pin pipe's size: what an unprivileged process may ask for. */
#define PIN_PIPE_BYTES (1 << 20)

static void fd_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void cas_pins_close(struct cas_pins *p)
{
	int k;

	for (k = 0; k < CAS_PIN_PIPES; k++) {
		fd_close(&p->pipe[k][0]);
		fd_close(&p->pipe[k][1]);
	}
	fd_close(&p->null);
}

int cas_pins_open(struct cas_pins *p)
{
	int k, r;

	for (k = 0; k < CAS_PIN_PIPES; k++)
		p->pipe[k][0] = p->pipe[k][1] = -1;
	p->pages = 0;
	p->null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (p->null < 0)
		return -errno;
	for (k = 0; k < CAS_PIN_PIPES; k++) {
		if (pipe2(p->pipe[k], O_NONBLOCK | O_CLOEXEC) < 0) {
			r = -errno;
			p->pipe[k][0] = p->pipe[k][1] = -1;
			cas_pins_close(p);
			return r;
		}
		/* Best effort: a smaller pipe only pins less. */
		fcntl(p->pipe[k][0], F_SETPIPE_SZ, PIN_PIPE_BYTES);
		r = fcntl(p->pipe[k][0], F_GETPIPE_SZ);
		p->pages += r > 0 ? (size_t)r / (size_t)sysconf(_SC_PAGESIZE) : 0;
	}
	return 0;
}

/* Empties the pins into /dev/null; closes them if that fails. */
static void pins_release(struct cas_pins *p)
{
	int k, n;

	for (k = 0; k < CAS_PIN_PIPES; k++) {
		while (ioctl(p->pipe[k][0], FIONREAD, &n) == 0 && n > 0) {
			if (splice(p->pipe[k][0], NULL, p->null, NULL, (size_t)n,
				   SPLICE_F_NONBLOCK) <= 0) {
				cas_pins_close(p);
				return;
			}
		}
	}
}

/* 1 if reads of f need no whole-file check. */
static int list_confirmed(struct cas_file *f)
{
	int r;

	if (!f->has_sha)
		return 1;
	pthread_mutex_lock(&f->v.lock);
	r = f->v.state == V_GOOD;
	pthread_mutex_unlock(&f->v.lock);
	return r;
}

/*
 * Looks up chunks [first, first + n) into locs under one hold of the
 * catalog's lock; returns how many are raw in a pack, or -errno.
 */
static int locate(struct cas_store *st, struct cas_file *f, size_t first, size_t n,
		  struct pack_loc *locs)
{
	size_t k;
	int r = 0, raw = 0;

	pthread_mutex_lock(&st->lock);
	for (k = 0; k < n && r == 0; k++) {
		r = cat_chunk_get(st->cat, &f->ids[first + k], &locs[k], NULL);
		if (r == 0 && locs[k].ulen != f->lens[first + k])
			r = -EIO;
	}
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return r;
	for (k = 0; k < n; k++) {
		int is_raw = loc_raw(&locs[k]);

		raw += is_raw;
		atomic_store_explicit(&f->kind[first + k], is_raw ? K_RAW : K_OTHER,
				      memory_order_relaxed);
		if (!is_raw)
			atomic_store_explicit(&f->copies, 1, memory_order_relaxed);
	}
	return raw;
}

/* Pins raw chunk i (at l) in the page cache (pack_pin()).  gc_lock held. */
static int pin_chunk(struct cas_store *st, struct cas_file *f, size_t i,
		     const struct pack_loc *l, struct cas_pins *p)
{
	int pins[CAS_PIN_PIPES], k;

	for (k = 0; k < CAS_PIN_PIPES; k++)
		pins[k] = p->pipe[k][1];
	return pack_pin(st->packs, l, &f->ids[i], pins, CAS_PIN_PIPES);
}

/*
 * Maps the pinned chunks [first, first + n) at locs, one mapping per pack
 * (maps[k] for the first chunk k of each), checks each against its id
 * through it and points its iov entry (iov_len set, iov_base the offset
 * within it) there.  Only pinned bytes are read: those between records
 * are mapped, not touched.  gc_lock held.
 */
static int map_pinned(struct cas_store *st, struct cas_file *f, size_t first, size_t n,
		      const struct pack_loc *locs, struct iovec *iov, struct pack_map *maps)
{
	uint8_t seen[MAPPED_CHUNKS] = { 0 };
	size_t k, j;
	int r;

	for (k = 0; k < n; k++) {
		uint64_t lo, hi;

		if (!loc_raw(&locs[k]) || seen[k])
			continue;
		lo = locs[k].off + PACK_REC_LEN;
		hi = lo + locs[k].clen;
		for (j = k + 1; j < n; j++) {
			if (!loc_raw(&locs[j]) || locs[j].pack != locs[k].pack)
				continue;
			if (locs[j].off + PACK_REC_LEN < lo)
				lo = locs[j].off + PACK_REC_LEN;
			if (locs[j].off + PACK_REC_LEN + locs[j].clen > hi)
				hi = locs[j].off + PACK_REC_LEN + locs[j].clen;
		}
		r = pack_map(st->packs, locs[k].pack, lo, (size_t)(hi - lo), &maps[k]);
		if (r < 0)
			return r;
		for (j = k; j < n; j++) {
			const uint8_t *data;
			struct cas_id got;

			if (!loc_raw(&locs[j]) || locs[j].pack != locs[k].pack)
				continue;
			seen[j] = 1;
			data = maps[k].data + (locs[j].off + PACK_REC_LEN - lo);
			cas_id_of(data, locs[j].ulen, &got);
			if (!cas_id_eq(&got, &f->ids[first + j]))
				return -EIO;
			iov[j].iov_base = (void *)(data + (size_t)(uintptr_t)iov[j].iov_base);
		}
	}
	return 0;
}

/*
 * Describes the len bytes at off, from chunks [first, ...) at locs, in
 * iov: raw chunks pinned, then mapped and checked (map_pinned()); copied
 * chunks' parts in buf (len bytes).  Returns the raw chunks' count or
 * -errno.  gc_lock held.
 */
static int mapped_fill(struct cas_store *st, struct cas_file *f, struct cas_pins *p,
		       size_t first, const struct pack_loc *locs, size_t len, uint64_t off,
		       struct iovec *iov, struct pack_map *maps, uint8_t **buf)
{
	size_t done = 0, i = first;
	int r = 0, mapped = 0;

	while (done < len && r == 0) {
		uint64_t start = i ? f->ends[i - 1] : 0;
		size_t within = (size_t)(off + done - start);
		size_t take = f->lens[i] - within, k = i - first;

		if (take > len - done)
			take = len - done;
		/* A file of raw chunks alone has nothing to decode ahead. */
		if (atomic_exchange(&f->next, i + 1) == i &&
		    atomic_load_explicit(&f->copies, memory_order_relaxed))
			read_ahead(st, f, i, 1);
		if (loc_raw(&locs[k])) {
			r = pin_chunk(st, f, i, &locs[k], p);
			/* The part's offset in the chunk, until map_pinned(). */
			iov[k].iov_base = (void *)(uintptr_t)within;
			mapped++;
		} else {
			if (!*buf && !(*buf = malloc(len)))
				return -ENOMEM;
			r = read_chunk(st, f, i, within, *buf + done, take);
			iov[k].iov_base = *buf + done;
		}
		iov[k].iov_len = take;
		done += take;
		i++;
	}
	if (r == 0)
		r = map_pinned(st, f, first, i - first, locs, iov, maps);
	return r < 0 ? r : mapped;
}

int cas_file_read_mapped(struct cas_store *st, struct cas_file *f, struct cas_pins *p,
			 size_t len, uint64_t off,
			 int (*send)(void *arg, const struct iovec *iov, int n), void *arg)
{
	struct pack_map maps[MAPPED_CHUNKS] = { 0 };
	struct pack_loc locs[MAPPED_CHUNKS];
	struct iovec iov[MAPPED_CHUNKS];
	size_t first, last, k, n;
	uint8_t *buf = NULL;
	int r, sent = 0;

	if (p->null < 0 || off >= f->size || len == 0 || len > CAS_MAPPED_MAX ||
	    !list_confirmed(f))
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	first = chunk_at(f, off);
	last = chunk_at(f, off + len - 1);
	n = last - first + 1;
	/* Each chunk pinned whole, a part page at each of its ends. */
	if (n > MAPPED_CHUNKS ||
	    (f->ends[last] - (first ? f->ends[first - 1] : 0)) / (uint64_t)sysconf(_SC_PAGESIZE) +
			    2 * n > p->pages)
		return 0;
	/* Chunks known to be copied: the copying path reads them as well. */
	for (k = first; k <= last; k++)
		if (atomic_load_explicit(&f->kind[k], memory_order_relaxed) != K_OTHER)
			break;
	if (k > last)
		return 0;
	pthread_rwlock_rdlock(&st->gc_lock);
	r = locate(st, f, first, n, locs);
	if (r <= 0)
		goto out;
	r = mapped_fill(st, f, p, first, locs, len, off, iov, maps, &buf);
	if (r < 0)
		goto out;
	sent = 1;
	send(arg, iov, (int)n);
	__atomic_add_fetch(&st->mapped_chunks, (uint64_t)r, __ATOMIC_RELAXED);
	__atomic_add_fetch(&st->mapped_reads, 1, __ATOMIC_RELAXED);
out:
	for (k = 0; k < n; k++)
		pack_unmap(&maps[k]);
	pthread_rwlock_unlock(&st->gc_lock);
	if (r < 0)
		__atomic_add_fetch(&st->mapped_fallbacks, 1, __ATOMIC_RELAXED);
	pins_release(p);
	free(buf);
	return sent;
}

/* ---- accounting --------------------------------------------------------- */

int cas_status(struct cas_store *st, struct cas_status *ret)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&st->lock);
	r = cat_stats(st->cat, &ret->cat);
	if (r == 0)
		r = cat_inline_count(st->cat, &ret->inline_chunks);
	ret->known_lists = st->known_lists;
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return r;
	ret->pack_disk_bytes = pack_disk_usage(st->packs);
	if (statvfs(st->dir, &ret->fs) < 0)
		return -errno;
	pthread_mutex_lock(&st->fl.lock);
	ret->flushes = st->fl.flushes;
	ret->flush_failures = st->fl.failures;
	pthread_mutex_unlock(&st->fl.lock);
	ret->lost_at_open = st->lost_at_open;
	ret->pack_syncs = pack_sync_count(st->packs);
	ret->mapped_chunks = __atomic_load_n(&st->mapped_chunks, __ATOMIC_RELAXED);
	ret->mapped_reads = __atomic_load_n(&st->mapped_reads, __ATOMIC_RELAXED);
	ret->mapped_fallbacks = __atomic_load_n(&st->mapped_fallbacks, __ATOMIC_RELAXED);
	return 0;
}

int cas_space(struct cas_store *st, uint64_t *ret_inodes, uint64_t *ret_pack_disk_bytes,
	      struct statvfs *ret_fs)
{
	int r;

	pthread_mutex_lock(&st->lock);
	r = cat_inode_count(st->cat, ret_inodes);
	pthread_mutex_unlock(&st->lock);
	if (r < 0)
		return r;
	*ret_pack_disk_bytes = pack_disk_usage(st->packs);
	return statvfs(st->dir, ret_fs) < 0 ? -errno : 0;
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 1.0;
}

int cas_status_text(struct cas_store *st, char **ret, size_t *ret_len)
{
	struct cas_status s;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	r = cas_status(st, &s);
	if (r < 0)
		return r;
	f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f,
		"store: %s\n"
		"format: %d\n"
		"files: %llu\n"
		"directories: %llu\n"
		"symlinks: %llu\n"
		"logical_bytes: %llu\n"
		"unique_bytes: %llu\n"
		"stored_bytes: %llu\n"
		"pack_bytes: %llu\n"
		"garbage_bytes: %llu\n"
		"chunks: %llu\n"
		"dead_chunks: %llu\n"
		"packs: %llu\n"
		"dedup_ratio: %.3f\n"
		"compression_ratio: %.3f\n"
		"total_ratio: %.3f\n"
		"disk_free_bytes: %llu\n"
		"flushes: %llu\n"
		"flush_failures: %llu\n"
		"lost_at_open: %llu\n"
		"pack_syncs: %llu\n"
		"inline_chunks: %llu\n"
		"known_lists: %llu\n"
		"mapped_chunks: %llu\n"
		"mapped_reads: %llu\n"
		"mapped_fallbacks: %llu\n",
		st->dir, CAT_FORMAT,
		(unsigned long long)s.cat.files,
		(unsigned long long)(s.cat.dirs ? s.cat.dirs - 1 : 0),
		(unsigned long long)s.cat.symlinks,
		(unsigned long long)s.cat.logical_bytes,
		(unsigned long long)s.cat.unique_bytes,
		(unsigned long long)s.cat.stored_bytes,
		(unsigned long long)s.pack_disk_bytes,
		(unsigned long long)(s.cat.pack_bytes > s.cat.stored_bytes
					     ? s.cat.pack_bytes - s.cat.stored_bytes
					     : 0),
		(unsigned long long)s.cat.chunks,
		(unsigned long long)s.cat.dead_chunks,
		(unsigned long long)s.cat.packs,
		ratio(s.cat.logical_bytes, s.cat.unique_bytes),
		ratio(s.cat.unique_bytes, s.cat.stored_bytes),
		ratio(s.cat.logical_bytes, s.pack_disk_bytes),
		(unsigned long long)s.fs.f_bavail * s.fs.f_frsize,
		(unsigned long long)s.flushes, (unsigned long long)s.flush_failures,
		(unsigned long long)s.lost_at_open,
		(unsigned long long)s.pack_syncs, (unsigned long long)s.inline_chunks,
		(unsigned long long)s.known_lists,
		(unsigned long long)s.mapped_chunks,
		(unsigned long long)s.mapped_reads,
		(unsigned long long)s.mapped_fallbacks);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret = text;
	*ret_len = len;
	return 0;
}
