/*
 * push.c - a tag being written, and its pushes.
 *
 * The file table (path, mode, orphan inode, writer, opens) sits under the
 * push's lock.  A push copies the entries it needs (paths live as long as
 * the push, inodes are committed snapshots in the store) under the lock,
 * drops it, and uploads; `pushing` with its condition makes the next push
 * wait for the running one, so that uploads of one tag never interleave.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/registry/push.h"

struct pfile {
	char *path;
	uint32_t mode;
	uint64_t ino;           /* 0 for folders */
	struct cas_writer *w;
	unsigned opens;
};

struct reg_push {
	struct cas_store *st;
	struct oci_client *c;
	char *remote, *repo, *tag;
	int modelpack;
	uint32_t uid, gid;
	pthread_mutex_t lock;   /* files, writers; a leaf, never held across I/O to a registry */
	pthread_cond_t idle;    /* signalled when pushing drops to 0 */
	int pushing;
	struct pfile *f;
	size_t nf;
};

int push_new(struct cas_store *st, struct oci_client *c, const char *remote,
	     int modelpack, const char *repo, const char *tag, uint32_t uid,
	     uint32_t gid, struct reg_push **ret)
{
	struct reg_push *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->st = st;
	p->c = c;
	p->modelpack = modelpack;
	p->uid = uid;
	p->gid = gid;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->remote = strdup(remote);
	p->repo = strdup(repo);
	p->tag = strdup(tag);
	if (!p->remote || !p->repo || !p->tag) {
		push_free(p);
		return -ENOMEM;
	}
	*ret = p;
	return 0;
}

void push_free(struct reg_push *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->nf; i++) {
		if (p->f[i].w)
			cas_writer_free(p->f[i].w);
		if (p->f[i].ino)
			cas_release_orphan(p->st, p->f[i].ino);
		free(p->f[i].path);
	}
	free(p->f);
	free(p->remote);
	free(p->repo);
	free(p->tag);
	pthread_cond_destroy(&p->idle);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int push_add(struct reg_push *p, const char *path, uint32_t mode,
	     const char *target, size_t *ret_idx)
{
	struct pfile *v;
	uint64_t ino = 0;
	char *copy = strdup(path);
	int r = copy ? 0 : -ENOMEM;

	/* The bytes live in the store as an orphan inode until the push ends. */
	if (r == 0 && !S_ISDIR(mode))
		r = cas_store_orphan_create(p->st, mode, p->uid, p->gid, target, &ino);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&p->lock);
	v = realloc(p->f, (p->nf + 1) * sizeof(*v));
	if (v) {
		p->f = v;
		v[p->nf] = (struct pfile){ .path = copy, .mode = mode, .ino = ino };
		*ret_idx = p->nf++;
	}
	pthread_mutex_unlock(&p->lock);
	if (v)
		return 0;
	r = -ENOMEM;
fail:
	if (ino)
		cas_release_orphan(p->st, ino);
	free(copy);
	return r;
}

int push_open(struct reg_push *p, size_t idx, int writable, int trunc)
{
	struct pfile *f;
	int r = 0;

	pthread_mutex_lock(&p->lock);
	f = &p->f[idx];
	if (writable && !f->w)
		r = cas_writer_open(p->st, f->ino, trunc, &f->w);
	if (r == 0)
		f->opens++;
	pthread_mutex_unlock(&p->lock);
	return r;
}

void push_close(struct reg_push *p, size_t idx)
{
	struct pfile *f;

	pthread_mutex_lock(&p->lock);
	f = &p->f[idx];
	if (--f->opens == 0 && f->w) {
		cas_writer_free(f->w);
		f->w = NULL;
	}
	pthread_mutex_unlock(&p->lock);
}

int push_write(struct reg_push *p, size_t idx, const void *buf, size_t size,
	       uint64_t off)
{
	int r;

	pthread_mutex_lock(&p->lock);
	r = p->f[idx].w ? cas_writer_write(p->f[idx].w, buf, size, off) : -EBADF;
	pthread_mutex_unlock(&p->lock);
	return r;
}

int push_truncate(struct reg_push *p, size_t idx, uint64_t size)
{
	int r;

	pthread_mutex_lock(&p->lock);
	r = p->f[idx].w ? cas_writer_truncate(p->f[idx].w, size) : -EBADF;
	pthread_mutex_unlock(&p->lock);
	return r;
}

ssize_t push_share(struct reg_push *p, size_t idx, struct cas_file *src,
		   uint64_t off_in, size_t len, uint64_t off_out)
{
	ssize_t r;

	pthread_mutex_lock(&p->lock);
	r = p->f[idx].w ? cas_writer_share(p->f[idx].w, src, off_in, len, off_out)
			: -EBADF;
	pthread_mutex_unlock(&p->lock);
	return r;
}

ssize_t push_read(struct reg_push *p, size_t idx, void *buf, size_t size,
		  uint64_t off)
{
	struct cas_fault fault;
	struct cas_file *cf;
	struct pfile *f;
	ssize_t r;

	pthread_mutex_lock(&p->lock);
	f = &p->f[idx];
	if (f->w && cas_writer_dirty(f->w)) {
		r = cas_writer_read(f->w, buf, size, off, &fault);
	} else {
		r = cas_file_open(p->st, f->ino, &cf);
		if (r == 0) {
			r = cas_file_read(p->st, cf, buf, size, off, &fault);
			cas_file_free(cf);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

int push_size(struct reg_push *p, size_t idx, uint64_t *ret_size)
{
	struct cat_attr a;
	int r = 0;

	pthread_mutex_lock(&p->lock);
	if (p->f[idx].w)
		*ret_size = cas_writer_size(p->f[idx].w);
	else if ((r = cas_getattr(p->st, p->f[idx].ino, &a)) == 0)
		*ret_size = a.size;
	pthread_mutex_unlock(&p->lock);
	return r;
}

int push_readlink(struct reg_push *p, size_t idx, char **ret)
{
	uint64_t ino;

	pthread_mutex_lock(&p->lock);
	ino = p->f[idx].ino;
	pthread_mutex_unlock(&p->lock);
	return cas_readlink(p->st, ino, ret);
}

int push_commit(struct reg_push *p, size_t idx)
{
	struct pfile *f;
	int r = 0;

	pthread_mutex_lock(&p->lock);
	f = &p->f[idx];
	if (f->w && cas_writer_dirty(f->w)) {
		r = cas_writer_commit(f->w);
		r = r < 0 ? r : 1;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* The entries as committed now, and their bytes; lock held. */
static int push_entries(struct reg_push *p, struct smip_entry **ret,
			uint64_t *ret_total)
{
	struct smip_entry *e = calloc(p->nf + 1, sizeof(*e));
	struct cat_attr a;
	size_t i;

	if (!e)
		return -ENOMEM;
	*ret_total = 0;
	for (i = 0; i < p->nf; i++) {
		e[i].path = p->f[i].path;
		e[i].ino = p->f[i].ino;
		e[i].mode = p->f[i].mode;
		if (e[i].ino && cas_getattr(p->st, e[i].ino, &a) == 0)
			*ret_total += a.size;
	}
	*ret = e;
	return 0;
}

int push_tag(struct reg_push *p, const struct smip_source *src, size_t nsrc,
	     struct xfer_list *xl, struct smip_push_stats *stats, char *err,
	     size_t errlen)
{
	const char *name = strrchr(p->repo, '/');
	struct smip_entry *e = NULL;
	uint64_t total = 0;
	struct xfer *x;
	size_t n;
	int r;

	name = name ? name + 1 : p->repo;
	pthread_mutex_lock(&p->lock);
	while (p->pushing)
		pthread_cond_wait(&p->idle, &p->lock);
	r = push_entries(p, &e, &total);
	n = p->nf;
	p->pushing = r == 0;
	pthread_mutex_unlock(&p->lock);
	if (r < 0)
		return r;
	memset(stats, 0, sizeof(*stats));
	x = xfer_start(xl, "push", p->remote, p->repo, p->tag, NULL, total);
	if (p->modelpack)
		r = smip_push_modelpack(p->st, p->c, p->repo, p->tag, name, e, n,
					x ? &x->done : NULL, stats, err, errlen);
	else
		r = smip_push(p->st, p->c, p->repo, p->tag, name, e, n, src, nsrc,
			      x ? &x->done : NULL, stats, err, errlen);
	xfer_end(xl, x, r, err);
	free(e);
	pthread_mutex_lock(&p->lock);
	p->pushing = 0;
	pthread_cond_broadcast(&p->idle);
	pthread_mutex_unlock(&p->lock);
	if (r < 0 && err && !*err)
		snprintf(err, errlen, "%s", strerror(-r));
	return r < 0 && r != -EACCES && r != -ENOSPC ? -EIO : r;
}
