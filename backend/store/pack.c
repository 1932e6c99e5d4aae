/*
 * pack.c - pack files: one O_RDWR descriptor per pack, opened on demand.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend/store/chunker.h"
#include "backend/store/pack.h"

#define PACK_WRITEBEHIND (8u << 20)

#define PACK_MAGIC "LLMFSPAK"
#define PACK_VERSION 1
#define REC_MAGIC "LCK1"

struct pack_set {
	/* pack_set_sync() callers, one at a time: a caller that finds nothing
	 * dirty must still wait for a sync another began (before `lock`). */
	pthread_mutex_t sync_lock;
	pthread_mutex_t lock; /* guards every field below */
	int dirfd;
	uint64_t pack_max;
	uint32_t keep_packs; /* the newest packs written that stay cached; 0: all */
	int *fds;      /* indexed by pack id; -1 when not open */
	uint8_t *dirty; /* appended since the last sync */
	uint8_t *badhdr; /* the 16-byte header is not what pack_header() writes */
	uint8_t *fresh;  /* the header says no commit has named the pack yet */
	uint32_t nfds;
	uint32_t cur;
	uint64_t cur_size;
	uint64_t wb_from; /* the current pack's bytes before this are being written out */
	int dir_dirty; /* a pack was created since the last sync */
	/* Every byte of packs before (durable_id, durable_off) is on disk:
	 * where the current pack ended when the last sync that succeeded began. */
	uint32_t durable_id;
	uint64_t durable_off;
	uint64_t syncs; /* pack_set_sync() calls that synced something */
};

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

void pack_header(uint8_t out[PACK_HEADER_LEN])
{
	memset(out, 0, PACK_HEADER_LEN);
	memcpy(out, PACK_MAGIC, 8);
	put_le32(out + 8, PACK_VERSION);
}

int pack_rec_parse(const void *hdr, struct cas_id *ret_id,
		   enum codec_scheme *ret_scheme, uint32_t *ret_ulen,
		   uint32_t *ret_clen)
{
	const uint8_t *h = hdr;
	uint32_t ulen = get_le32(h + 8), clen = get_le32(h + 12);

	if (memcmp(h, REC_MAGIC, 4) != 0 || h[4] >= CODEC_SCHEME_MAX ||
	    h[5] || h[6] || h[7] || ulen == 0 || ulen > CDC_MAX ||
	    clen > codec_bound(CDC_MAX))
		return -EBADMSG;
	memcpy(ret_id->b, h + 16, CAS_ID_LEN);
	*ret_scheme = (enum codec_scheme)h[4];
	*ret_ulen = ulen;
	*ret_clen = clen;
	return 0;
}

static void pack_name(uint32_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%08x.pack", id);
}

int pack_set_open(const char *dir, uint64_t pack_max, uint64_t keep_cached,
		  struct pack_set **ret)
{
	struct pack_set *ps;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ps->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ps->dirfd < 0) {
		int r = -errno;

		free(ps);
		return r;
	}
	pthread_mutex_init(&ps->lock, NULL);
	pthread_mutex_init(&ps->sync_lock, NULL);
	ps->pack_max = pack_max;
	if (keep_cached) {
		uint64_t n = keep_cached / pack_max + (keep_cached % pack_max != 0);

		/* A budget past any store's packs keeps them all, not a wrapped few. */
		ps->keep_packs = n < UINT32_MAX ? (uint32_t)n : 0;
	}
	*ret = ps;
	return 0;
}

void pack_set_free(struct pack_set *ps)
{
	uint32_t i;

	if (!ps)
		return;
	for (i = 0; i < ps->nfds; i++)
		if (ps->fds[i] >= 0)
			close(ps->fds[i]);
	free(ps->fds);
	free(ps->dirty);
	free(ps->badhdr);
	free(ps->fresh);
	close(ps->dirfd);
	pthread_mutex_destroy(&ps->lock);
	pthread_mutex_destroy(&ps->sync_lock);
	free(ps);
}

static int grow_table(struct pack_set *ps, uint32_t id)
{
	uint32_t n = ps->nfds, i;
	int *fds;
	uint8_t *dirty, *badhdr, *fresh;

	if (id < n)
		return 0;
	n = id + 16;
	fds = realloc(ps->fds, n * sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	ps->fds = fds;
	dirty = realloc(ps->dirty, n);
	if (!dirty)
		return -ENOMEM;
	ps->dirty = dirty;
	badhdr = realloc(ps->badhdr, n);
	if (!badhdr)
		return -ENOMEM;
	ps->badhdr = badhdr;
	fresh = realloc(ps->fresh, n);
	if (!fresh)
		return -ENOMEM;
	ps->fresh = fresh;
	for (i = ps->nfds; i < n; i++) {
		fds[i] = -1;
		dirty[i] = 0;
		badhdr[i] = 0;
		fresh[i] = 0;
	}
	ps->nfds = n;
	return 0;
}

/* Returns the descriptor of pack id, opening (and with create, making) it. */
static int pack_fd_locked(struct pack_set *ps, uint32_t id, int create)
{
	char name[32];
	uint8_t hdr[PACK_HEADER_LEN];
	int fd, r;

	r = grow_table(ps, id);
	if (r < 0)
		return r;
	if (ps->fds[id] >= 0)
		return ps->fds[id];
	pack_name(id, name, sizeof(name));
	fd = openat(ps->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		fd = openat(ps->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		pack_header(hdr);
		hdr[PACK_FRESH_OFF] = PACK_MARK_FRESH;
		if (pwrite(fd, hdr, sizeof(hdr), 0) != sizeof(hdr)) {
			r = errno ? -errno : -EIO;
			close(fd);
			unlinkat(ps->dirfd, name, 0);
			return r;
		}
		ps->dirty[id] = 1;
		ps->dir_dirty = 1;
		ps->fresh[id] = PACK_MARK_FRESH;
	} else if (fd < 0) {
		return -errno;
	} else {
		uint8_t want[PACK_HEADER_LEN];

		/*
		 * A damaged header does not make the pack unreadable: every
		 * record carries its own magic, lengths and id, and each read
		 * is checked against them.  It is remembered for fsck, which
		 * reports it and rewrites it with --repair.  (A newer pack
		 * format comes with a newer catalog format, refused there.)
		 */
		pack_header(want);
		if (pread(fd, hdr, sizeof(hdr), 0) != sizeof(hdr)) {
			ps->badhdr[id] = 1;
		} else {
			uint8_t m = hdr[PACK_FRESH_OFF];
			int mark = m == PACK_MARK_FRESH || m == PACK_MARK_COMMITTING;

			/*
			 * The mark counts only in a header of ours: a file that
			 * is not a pack (junk, another program's) whose byte
			 * there happens to be a mark is no fresh pack of ours,
			 * and is set aside, never removed (store_pack_set_aside()).
			 */
			want[PACK_FRESH_OFF] = m;
			ps->badhdr[id] = memcmp(hdr, want, sizeof(hdr)) != 0 || (m && !mark);
			ps->fresh[id] = mark && !ps->badhdr[id] ? m : 0;
		}
	}
	ps->fds[id] = fd;
	return fd;
}

int pack_set_start(struct pack_set *ps, uint32_t id)
{
	struct stat sb;
	int fd, r = 0;

	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 1);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	if (fstat(fd, &sb) < 0) {
		r = -errno;
		goto out;
	}
	ps->cur = id;
	ps->cur_size = (uint64_t)sb.st_size;
	/* What a previous process left is known durable only once synced. */
	ps->durable_id = 0;
	ps->durable_off = 0;
out:
	pthread_mutex_unlock(&ps->lock);
	return r;
}

uint64_t pack_sync_count(struct pack_set *ps)
{
	uint64_t n;

	pthread_mutex_lock(&ps->lock);
	n = ps->syncs;
	pthread_mutex_unlock(&ps->lock);
	return n;
}

uint32_t pack_current(struct pack_set *ps)
{
	uint32_t cur;

	pthread_mutex_lock(&ps->lock);
	cur = ps->cur;
	pthread_mutex_unlock(&ps->lock);
	return cur;
}

void pack_rec_header(uint8_t hdr[PACK_REC_LEN], const struct cas_id *id,
		     enum codec_scheme scheme, uint32_t ulen, uint32_t clen)
{
	memcpy(hdr, REC_MAGIC, 4);
	hdr[4] = (uint8_t)scheme;
	hdr[5] = hdr[6] = hdr[7] = 0;
	put_le32(hdr + 8, ulen);
	put_le32(hdr + 12, clen);
	memcpy(hdr + 16, id->b, CAS_ID_LEN);
}

/*
 * A stream longer than the page cache's room keeps its newest packs cached
 * (a file just written is often read at once) and lets each older one go
 * as a new one starts: left cached, it pushes out everything else, and its
 * writes wait on reclaim of memory it filled itself.  The pack dropped was
 * written keep_packs packs ago, and written back since (write-behind).
 */
static void drop_old_locked(struct pack_set *ps)
{
	uint32_t old;

	if (!ps->keep_packs || ps->cur <= ps->keep_packs)
		return;
	old = ps->cur - ps->keep_packs - 1;
	if (old > 0 && old < ps->nfds && ps->fds[old] >= 0)
		posix_fadvise(ps->fds[old], 0, 0, POSIX_FADV_DONTNEED);
}

int pack_append(struct pack_set *ps, const struct cas_id *id,
		enum codec_scheme scheme, uint32_t ulen, const void *data,
		uint32_t clen, struct pack_loc *ret_loc)
{
	uint8_t hdr[PACK_REC_LEN];
	struct iovec iov[2];
	ssize_t n;
	int fd, r = 0;

	pack_rec_header(hdr, id, scheme, ulen, clen);
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)data;
	iov[1].iov_len = clen;

	pthread_mutex_lock(&ps->lock);
	if (ps->cur_size >= ps->pack_max) {
		fd = pack_fd_locked(ps, ps->cur + 1, 1);
		if (fd < 0) {
			r = fd;
			goto out;
		}
		/* The finished pack's last bytes follow its windows out. */
		if (ps->cur < ps->nfds && ps->fds[ps->cur] >= 0 && ps->wb_from < ps->cur_size)
			sync_file_range(ps->fds[ps->cur], (off_t)ps->wb_from, 0,
					SYNC_FILE_RANGE_WRITE);
		ps->cur++;
		ps->cur_size = PACK_HEADER_LEN;
		ps->wb_from = PACK_HEADER_LEN;
		drop_old_locked(ps);
	}
	fd = pack_fd_locked(ps, ps->cur, 1);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	n = pwritev(fd, iov, 2, (off_t)ps->cur_size);
	if (n != (ssize_t)(sizeof(hdr) + clen)) {
		r = n < 0 ? -errno : -ENOSPC;
		/* A short write leaves a torn record past the end: cut it off. */
		if (ftruncate(fd, (off_t)ps->cur_size) < 0 && r == 0)
			r = -errno;
		goto out;
	}
	ret_loc->pack = ps->cur;
	ret_loc->off = ps->cur_size;
	ret_loc->clen = clen;
	ret_loc->ulen = ulen;
	ret_loc->scheme = scheme;
	ps->cur_size += (uint64_t)n;
	ps->dirty[ps->cur] = 1;
	/*
	 * Write-behind: a large file's bytes go to the disk while it is still
	 * being written, so the fdatasync of its commit has little left to
	 * wait for (and ingest keeps the disk busy instead of a burst at close).
	 */
	if (ps->wb_from > ps->cur_size || ps->wb_from < PACK_HEADER_LEN)
		ps->wb_from = PACK_HEADER_LEN;
	if (ps->cur_size - ps->wb_from >= PACK_WRITEBEHIND) {
		sync_file_range(fd, (off_t)ps->wb_from, (off_t)(ps->cur_size - ps->wb_from),
				SYNC_FILE_RANGE_WRITE);
		ps->wb_from = ps->cur_size;
	}
out:
	pthread_mutex_unlock(&ps->lock);
	return r;
}

/* 0 if hdr is the header of the record at loc, named id; else -EIO. */
static int rec_check(const uint8_t *hdr, const struct pack_loc *loc,
		     const struct cas_id *id)
{
	if (memcmp(hdr, REC_MAGIC, 4) != 0 || hdr[4] != (uint8_t)loc->scheme ||
	    get_le32(hdr + 8) != loc->ulen || get_le32(hdr + 12) != loc->clen ||
	    memcmp(hdr + 16, id->b, CAS_ID_LEN) != 0)
		return -EIO;
	return 0;
}

/* Pack id's descriptor, or -errno (-EIO when the pack is gone). */
static int pack_read_fd(struct pack_set *ps, uint32_t id)
{
	int fd;

	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 0);
	pthread_mutex_unlock(&ps->lock);
	return fd == -ENOENT ? -EIO : fd;
}

/* Reads a record's header into hdr and its bytes into payload. */
static int read_split(struct pack_set *ps, const struct pack_loc *loc,
		      const struct cas_id *id, uint8_t *hdr, void *payload)
{
	size_t want = PACK_REC_LEN + (size_t)loc->clen;
	struct iovec iov[2] = { { hdr, PACK_REC_LEN }, { payload, loc->clen } };
	ssize_t n;
	int fd;

	fd = pack_read_fd(ps, loc->pack);
	if (fd < 0)
		return fd;
	n = preadv(fd, iov, 2, (off_t)loc->off);
	if (n < 0)
		return -errno;
	if ((size_t)n != want)
		return -EIO;
	return rec_check(hdr, loc, id);
}

int pack_read(struct pack_set *ps, const struct pack_loc *loc,
	      const struct cas_id *id, void *buf)
{
	return read_split(ps, loc, id, buf, (uint8_t *)buf + PACK_REC_LEN);
}

int pack_read_payload(struct pack_set *ps, const struct pack_loc *loc,
		      const struct cas_id *id, void *payload)
{
	uint8_t hdr[PACK_REC_LEN];

	return read_split(ps, loc, id, hdr, payload);
}

int pack_pin(struct pack_set *ps, const struct pack_loc *loc, const struct cas_id *id,
	     const int *pins, int npins)
{
	uint8_t hdr[PACK_REC_LEN];
	loff_t pos = (loff_t)(loc->off + PACK_REC_LEN);
	size_t left = loc->clen;
	int fd, k = 0;

	if (loc->clen == 0)
		return -EINVAL;
	fd = pack_read_fd(ps, loc->pack);
	if (fd < 0)
		return fd;
	if (pread(fd, hdr, sizeof(hdr), (off_t)loc->off) != (ssize_t)sizeof(hdr) ||
	    rec_check(hdr, loc, id) < 0)
		return -EIO;
	while (left) {
		ssize_t n;

		if (k == npins)
			return -ENOSPC;
		n = splice(fd, &pos, pins[k], NULL, left, SPLICE_F_NONBLOCK);
		if (n < 0 && errno == EAGAIN) {
			k++;
			continue;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the record runs past the pack's end */
		left -= (size_t)n;
	}
	return 0;
}

int pack_map(struct pack_set *ps, uint32_t id, uint64_t off, size_t len,
	     struct pack_map *ret_map)
{
	uint64_t base = off & ~((uint64_t)sysconf(_SC_PAGESIZE) - 1);
	void *p;
	int fd;

	if (len == 0)
		return -EINVAL;
	fd = pack_read_fd(ps, id);
	if (fd < 0)
		return fd;
	p = mmap(NULL, (size_t)(off + len - base), PROT_READ, MAP_SHARED, fd, (off_t)base);
	if (p == MAP_FAILED)
		return -errno;
	ret_map->base = p;
	ret_map->len = (size_t)(off + len - base);
	ret_map->data = (const uint8_t *)p + (off - base);
	return 0;
}

void pack_unmap(struct pack_map *m)
{
	if (m->base)
		munmap(m->base, m->len);
	m->base = NULL;
}

void pack_set_writeback(struct pack_set *ps)
{
	uint32_t i;

	pthread_mutex_lock(&ps->lock);
	for (i = 0; i < ps->nfds; i++)
		if (ps->dirty[i] && ps->fds[i] >= 0)
			sync_file_range(ps->fds[i], 0, 0, SYNC_FILE_RANGE_WRITE);
	pthread_mutex_unlock(&ps->lock);
}

/*
 * The fdatasyncs run without the lock, on duplicates of the descriptors,
 * so that appends of other writers go on while a commit waits for the
 * disk; a pack whose sync fails is marked dirty again.
 */
int pack_set_sync(struct pack_set *ps)
{
	uint32_t i, n = 0, *ids = NULL, mark_id;
	uint64_t mark_off;
	int *fds = NULL, dir, r = 0;

	pthread_mutex_lock(&ps->sync_lock);
	pthread_mutex_lock(&ps->lock);
	/* Appends are in id and offset order: all before this point that is
	 * not dirty now is already on disk, the dirty rest is synced below. */
	mark_id = ps->cur;
	mark_off = ps->cur_size;
	for (i = 0; i < ps->nfds; i++)
		n += ps->dirty[i] && ps->fds[i] >= 0;
	if (n) {
		ids = malloc(n * sizeof(*ids));
		fds = malloc(n * sizeof(*fds));
		if (!ids || !fds) {
			pthread_mutex_unlock(&ps->lock);
			pthread_mutex_unlock(&ps->sync_lock);
			free(ids);
			free(fds);
			return -ENOMEM;
		}
	}
	n = 0;
	for (i = 0; i < ps->nfds; i++) {
		if (!ps->dirty[i] || ps->fds[i] < 0)
			continue;
		fds[n] = fcntl(ps->fds[i], F_DUPFD_CLOEXEC, 0);
		if (fds[n] < 0) {
			r = -errno;
			break;
		}
		ids[n++] = i;
		ps->dirty[i] = 0;
	}
	dir = ps->dir_dirty;
	ps->dir_dirty = 0;
	if (n || dir)
		ps->syncs++;
	pthread_mutex_unlock(&ps->lock);

	for (i = 0; i < n; i++) {
		if (r == 0 && fdatasync(fds[i]) < 0)
			r = -errno;
		close(fds[i]);
	}
	if (r == 0 && dir && fsync(ps->dirfd) < 0)
		r = -errno;
	if (r < 0) {
		pthread_mutex_lock(&ps->lock);
		for (i = 0; i < n; i++)
			if (ids[i] < ps->nfds)
				ps->dirty[ids[i]] = 1;
		ps->dir_dirty |= dir;
		pthread_mutex_unlock(&ps->lock);
	} else {
		pthread_mutex_lock(&ps->lock);
		if (mark_id > ps->durable_id ||
		    (mark_id == ps->durable_id && mark_off > ps->durable_off)) {
			ps->durable_id = mark_id;
			ps->durable_off = mark_off;
		}
		pthread_mutex_unlock(&ps->lock);
	}
	pthread_mutex_unlock(&ps->sync_lock);
	free(ids);
	free(fds);
	return r;
}

void pack_durable(struct pack_set *ps, uint32_t *ret_id, uint64_t *ret_off)
{
	pthread_mutex_lock(&ps->lock);
	*ret_id = ps->durable_id;
	*ret_off = ps->durable_off;
	pthread_mutex_unlock(&ps->lock);
}

void pack_set_dirty_from(struct pack_set *ps, uint32_t id)
{
	uint32_t i;

	pthread_mutex_lock(&ps->lock);
	for (i = id; i < ps->nfds; i++)
		if (ps->fds[i] >= 0)
			ps->dirty[i] = 1;
	pthread_mutex_unlock(&ps->lock);
}

int64_t pack_size(struct pack_set *ps, uint32_t id)
{
	struct stat sb;
	int64_t r;
	int fd;

	pthread_mutex_lock(&ps->lock);
	if (id == ps->cur && ps->fds && id < ps->nfds && ps->fds[id] >= 0) {
		r = (int64_t)ps->cur_size;
		goto out;
	}
	fd = pack_fd_locked(ps, id, 0);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	r = fstat(fd, &sb) < 0 ? -errno : (int64_t)sb.st_size;
out:
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int pack_truncate(struct pack_set *ps, uint32_t id, uint64_t size)
{
	int fd, r = 0;

	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 0);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	if (ftruncate(fd, (off_t)size) < 0 || fdatasync(fd) < 0) {
		r = -errno;
		goto out;
	}
	if (id == ps->cur)
		ps->cur_size = size;
out:
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int pack_header_check(struct pack_set *ps, uint32_t id)
{
	int fd, r;

	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 0);
	r = fd < 0 ? fd : ps->badhdr[id] ? -EBADMSG : 0;
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int pack_header_repair(struct pack_set *ps, uint32_t id)
{
	uint8_t hdr[PACK_HEADER_LEN];
	int fd, r = 0;

	pack_header(hdr);
	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 0);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	if (pwrite(fd, hdr, sizeof(hdr), 0) != sizeof(hdr) || fdatasync(fd) < 0) {
		r = errno ? -errno : -EIO;
		goto out;
	}
	ps->badhdr[id] = 0;
out:
	pthread_mutex_unlock(&ps->lock);
	return r;
}

/* Closes pack id's descriptor.  Lock held. */
static void pack_close_locked(struct pack_set *ps, uint32_t id)
{
	if (id < ps->nfds && ps->fds[id] >= 0) {
		close(ps->fds[id]);
		ps->fds[id] = -1;
		ps->dirty[id] = 0;
		ps->badhdr[id] = 0;
	}
}

int pack_quarantine(struct pack_set *ps, uint32_t id, const char *qdir,
		    char *ret_name, size_t namelen)
{
	char name[32], dst[4096];
	struct stat sb;
	int r = 0, i;

	if (mkdir(qdir, 0700) < 0 && errno != EEXIST)
		return -errno;
	pthread_mutex_lock(&ps->lock);
	pack_close_locked(ps, id);
	pack_name(id, name, sizeof(name));
	/* Never over another quarantined file: a suffix makes the name free. */
	for (i = 0; i < 1000; i++) {
		if (i == 0)
			snprintf(dst, sizeof(dst), "%s/%s", qdir, name);
		else
			snprintf(dst, sizeof(dst), "%s/%s.%d", qdir, name, i);
		if (stat(dst, &sb) < 0 && errno == ENOENT)
			break;
	}
	if (i == 1000) {
		r = -EEXIST;
		goto out;
	}
	if (renameat(ps->dirfd, name, AT_FDCWD, dst) < 0) {
		r = -errno;
		goto out;
	}
	ps->dir_dirty = 1;
	if (ret_name)
		snprintf(ret_name, namelen, "%s", strrchr(dst, '/') + 1);
out:
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int pack_remove(struct pack_set *ps, uint32_t id)
{
	char name[32];
	int r = 0;

	pthread_mutex_lock(&ps->lock);
	pack_close_locked(ps, id);
	pack_name(id, name, sizeof(name));
	if (unlinkat(ps->dirfd, name, 0) < 0 && errno != ENOENT)
		r = -errno;
	else
		ps->dir_dirty = 1;
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int pack_list(struct pack_set *ps, uint32_t **ret_ids)
{
	uint32_t *ids = NULL, *tmp;
	struct dirent *de;
	size_t n = 0, cap = 0;
	DIR *d;
	int fd;

	fd = openat(ps->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		unsigned int id;
		char tail;

		if (sscanf(de->d_name, "%8x.pac%c", &id, &tail) != 2 || tail != 'k' ||
		    strlen(de->d_name) != 13)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			tmp = realloc(ids, cap * sizeof(*ids));
			if (!tmp) {
				free(ids);
				closedir(d);
				return -ENOMEM;
			}
			ids = tmp;
		}
		ids[n++] = id;
	}
	closedir(d);
	*ret_ids = ids;
	return (int)n;
}

uint64_t pack_disk_usage(struct pack_set *ps)
{
	uint32_t *ids = NULL;
	uint64_t total = 0;
	struct stat sb;
	char name[32];
	int n, i;

	n = pack_list(ps, &ids);
	for (i = 0; i < n; i++) {
		pack_name(ids[i], name, sizeof(name));
		if (fstatat(ps->dirfd, name, &sb, 0) == 0)
			total += (uint64_t)sb.st_blocks * 512;
	}
	free(ids);
	return total;
}

/* Whole blocks inside a record's encoded bytes: the record header stays. */
#define PUNCH_BLOCK 4096u

static void punch_range(const struct pack_loc *loc, uint64_t *start, uint64_t *end)
{
	*start = (loc->off + PACK_REC_LEN + PUNCH_BLOCK - 1) / PUNCH_BLOCK * PUNCH_BLOCK;
	*end = (loc->off + PACK_REC_LEN + loc->clen) / PUNCH_BLOCK * PUNCH_BLOCK;
}

int pack_rec_punched(const struct pack_loc *loc, const void *rec)
{
	const uint8_t *p = rec;
	uint64_t start, end, i;

	punch_range(loc, &start, &end);
	if (end <= start)
		return 0;
	for (i = start - loc->off; i < end - loc->off; i++)
		if (p[i])
			return 0;
	return 1;
}

int64_t pack_punch(struct pack_set *ps, const struct pack_loc *loc)
{
	uint64_t start, end;
	int64_t r;
	int fd;

	punch_range(loc, &start, &end);
	if (end <= start)
		return 0;
	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, loc->pack, 0);
	if (fd < 0)
		r = fd;
	else if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			   (off_t)start, (off_t)(end - start)) < 0)
		r = errno == EOPNOTSUPP ? 0 : -errno;
	else
		r = (int64_t)(end - start);
	pthread_mutex_unlock(&ps->lock);
	return r;
}

/* The offset of the next "LCK1" at or after off that parses, or size. */
static uint64_t resync(int fd, uint64_t off, uint64_t size)
{
	enum { WIN = 1 << 20 };
	uint8_t *buf = malloc(WIN);
	uint64_t found = size;

	if (!buf)
		return size;
	while (off + PACK_REC_LEN <= size) {
		ssize_t n = pread(fd, buf, WIN, (off_t)off), i;

		if (n < PACK_REC_LEN)
			break;
		for (i = 0; i + PACK_REC_LEN <= n; i++) {
			struct cas_id id;
			enum codec_scheme sc;
			uint32_t ulen, clen;

			if (buf[i] == 'L' && memcmp(buf + i, REC_MAGIC, 4) == 0 &&
			    pack_rec_parse(buf + i, &id, &sc, &ulen, &clen) == 0) {
				found = off + (uint64_t)i;
				goto out;
			}
		}
		off += (uint64_t)(n - PACK_REC_LEN + 1);
	}
out:
	free(buf);
	return found;
}

int pack_scan(struct pack_set *ps, uint32_t id,
	      int (*cb)(void *arg, const struct cas_id *id,
			const struct pack_loc *loc),
	      void *arg, uint64_t *ret_end)
{
	uint8_t hdr[PACK_REC_LEN];
	struct stat sb;
	uint64_t off = PACK_HEADER_LEN, end = PACK_HEADER_LEN;
	int fd, r = 0;

	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 0);
	pthread_mutex_unlock(&ps->lock);
	if (fd < 0)
		return fd;
	if (fstat(fd, &sb) < 0)
		return -errno;
	while (off + PACK_REC_LEN <= (uint64_t)sb.st_size) {
		struct pack_loc loc = { .pack = id, .off = off };
		struct cas_id cid;

		if (pread(fd, hdr, sizeof(hdr), (off_t)off) != sizeof(hdr)) {
			r = -EIO;
			break;
		}
		r = pack_rec_parse(hdr, &cid, &loc.scheme, &loc.ulen, &loc.clen);
		if (r == 0 && off + PACK_REC_LEN + loc.clen <= (uint64_t)sb.st_size)
			r = cb(arg, &cid, &loc);
		else
			r = 1;
		if (r < 0)
			break;
		if (r == 0) {
			off += PACK_REC_LEN + loc.clen;
			end = off;
			continue;
		}
		/* Not a record (damage, a torn tail): look for the next one. */
		r = 0;
		off = resync(fd, off + 1, (uint64_t)sb.st_size);
	}
	if (ret_end)
		*ret_end = end;
	return r;
}

/* Sets pack id's mark to v when it is one of from; durably when sync. */
static int mark_set(struct pack_set *ps, uint32_t id, uint8_t v, unsigned from, int sync)
{
	int fd, r = 0;

	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 0);
	if (fd < 0) {
		r = fd;
	} else if (from & (1u << ps->fresh[id])) {
		if (pwrite(fd, &v, 1, PACK_FRESH_OFF) != 1 || (sync && fdatasync(fd) < 0))
			r = errno ? -errno : -EIO;
		else
			ps->fresh[id] = v;
	}
	pthread_mutex_unlock(&ps->lock);
	return r;
}

int pack_mark_committing(struct pack_set *ps, uint32_t id)
{
	return mark_set(ps, id, PACK_MARK_COMMITTING, 1u << PACK_MARK_FRESH, 1);
}

int pack_mark_committed(struct pack_set *ps, uint32_t id)
{
	return mark_set(ps, id, 0, 1u << PACK_MARK_FRESH | 1u << PACK_MARK_COMMITTING, 0);
}

int pack_is_fresh(struct pack_set *ps, uint32_t id)
{
	int fd, r;

	pthread_mutex_lock(&ps->lock);
	fd = pack_fd_locked(ps, id, 0);
	r = fd < 0 ? fd : ps->fresh[id];
	pthread_mutex_unlock(&ps->lock);
	return r;
}
