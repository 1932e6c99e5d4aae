/*
 * ctl.c - .llmfs/: the daemon's control files (the .llmfs/ row of
 * fs_subtrees[], subtree.h).
 *
 *   .llmfs/status      store size, logical size, dedup, compression
 *   .llmfs/gc          write "gc" or "compact": collect now; read: results
 *   .llmfs/transfers   pulls and pushes of net/ (only with net/ on)
 *
 * Each open reads a fresh text: the files are small and change at any time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/net.h"
#include "fs/subtree.h"

enum { CTL_DIR = FS_CTL_INO, CTL_STATUS, CTL_GC, CTL_TRANSFERS };

struct ctl_handle {
	char *buf;
	size_t len;
};

static int gc_text(struct fs *fs, char **ret, size_t *ret_len)
{
	uint64_t runs, freed;
	int64_t req;
	int n;

	pthread_mutex_lock(&fs->lock);
	runs = fs->gc_runs;
	freed = fs->gc_freed;
	req = fs->gc_request;
	pthread_mutex_unlock(&fs->lock);
	n = asprintf(ret, "collections %" PRIu64 "\nfreed_bytes %" PRIu64
		     "\nrequest_freed_bytes %" PRId64 "\nrequest_error %s\n",
		     runs, freed, req > 0 ? req : 0,
		     req < 0 ? strerror((int)-req) : "none");
	if (n < 0)
		return -ENOMEM;
	*ret_len = (size_t)n;
	return 0;
}

/*
 * A write of "gc" or "compact" to .llmfs/gc: collects and compacts now,
 * answering when the space is free.  A collection that runs already (or a
 * file open for writing) is waited for, ten seconds at most.
 */
static int gc_request(struct fs *fs, const char *buf, size_t size)
{
	int64_t freed;
	int tries;

	while (size && (buf[size - 1] == '\n' || buf[size - 1] == ' '))
		size--;
	if (!(size == 2 && !memcmp(buf, "gc", 2)) &&
	    !(size == 7 && !memcmp(buf, "compact", 7)))
		return -EINVAL;
	for (tries = 0; (freed = cas_gc(fs->st)) == -EBUSY && tries < 100; tries++)
		usleep(100000);
	fs_gc_record(fs, freed, 1);
	return freed < 0 ? (int)freed : 0;
}

static int ctl_text(struct fs *fs, uint64_t ino, char **ret, size_t *ret_len)
{
	switch (ino) {
	case CTL_STATUS:
		return cas_status_text(fs->st, ret, ret_len);
	case CTL_GC:
		return gc_text(fs, ret, ret_len);
	case CTL_TRANSFERS:
		return fs->net ? fs_net_transfers(fs->net, ret, ret_len) : -ENOENT;
	}
	return -ENOENT;
}

static int ctl_lookup(struct fs *fs, fuse_req_t req, uint64_t parent,
		      const char *name, uint64_t *ret_ino)
{
	if (parent != CTL_DIR)
		return -ENOENT;
	if (!strcmp(name, "status"))
		*ret_ino = CTL_STATUS;
	else if (!strcmp(name, "gc"))
		*ret_ino = CTL_GC;
	else if (!strcmp(name, "transfers") && fs->net)
		*ret_ino = CTL_TRANSFERS;
	else
		return -ENOENT;
	return 0;
}

static int ctl_getattr(struct fs *fs, uint64_t ino, struct stat *sb,
		       double *ret_timeout)
{
	char *text;
	size_t len;
	int r;

	if (ino == CTL_DIR) {
		fs_virt_stat(fs, ino, S_IFDIR | 0755, 0, sb);
		return 0;
	}
	r = ctl_text(fs, ino, &text, &len);
	if (r < 0)
		return r;
	free(text);
	fs_virt_stat(fs, ino, S_IFREG | (ino == CTL_GC ? 0644 : 0444), len, sb);
	return 0;
}

static int ctl_list(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add,
		    void *arg)
{
	int r;

	if (ino != CTL_DIR)
		return -ENOTDIR;
	r = add(arg, "status", CTL_STATUS, S_IFREG);
	if (r == 0)
		r = add(arg, "gc", CTL_GC, S_IFREG);
	if (r == 0 && fs->net)
		r = add(arg, "transfers", CTL_TRANSFERS, S_IFREG);
	return r;
}

static int ctl_open(struct fs *fs, fuse_req_t req, uint64_t ino,
		    struct fuse_file_info *fi, void **ret_h)
{
	struct ctl_handle *h;
	int r;

	if (ino == CTL_DIR)
		return -EISDIR;
	if ((fi->flags & O_ACCMODE) != O_RDONLY && ino != CTL_GC)
		return -EACCES;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	r = ctl_text(fs, ino, &h->buf, &h->len);
	if (r < 0) {
		free(h);
		return r;
	}
	fi->direct_io = 1;
	*ret_h = h;
	return 0;
}

static void ctl_read(struct fs *fs, fuse_req_t req, void *hv, uint64_t ino,
		     size_t size, off_t off)
{
	struct ctl_handle *h = hv;

	fs_reply_text(req, h->buf, h->len, size, off);
}

static int ctl_write(struct fs *fs, fuse_req_t req, void *h, uint64_t ino,
		     const char *buf, size_t size, off_t off)
{
	return ino == CTL_GC ? gc_request(fs, buf, size) : -EBADF;
}

static void ctl_release(struct fs *fs, void *hv)
{
	struct ctl_handle *h = hv;

	free(h->buf);
	free(h);
}

const struct fs_subtree_ops fs_ctl_ops = {
	.lookup = ctl_lookup,
	.getattr = ctl_getattr,
	.list = ctl_list,
	.open = ctl_open,
	.read = ctl_read,
	.write = ctl_write,
	.release = ctl_release,
	.abandon = ctl_release,
};
