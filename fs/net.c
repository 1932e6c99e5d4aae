/*
 * net.c - /llm/net: remotes, repositories, tags and model files mapped onto
 * the registry wing (backend/registry): a tag onto reg_model_resolve(), a
 * file's reads and pulls onto pull_read() / pull_copy(), a push's files
 * onto push.h, .llmfs/transfers onto transfers.h.
 *
 * Nodes are made as the kernel looks names up and live as long as the
 * daemon (a node is small; what it stands for is re-read from the registry
 * when older than NET_TTL).  A tag's model (struct ntag) is resolved once
 * per NET_TTL and shared by the handles open on it.  Network calls run
 * without n->lock held, and the registry wing holds no lock across them.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backend/registry/layout.h"
#include "backend/registry/listing.h"
#include "backend/registry/oci.h"
#include "backend/registry/pull.h"
#include "backend/registry/push.h"
#include "backend/registry/smipnet.h"
#include "backend/registry/transfers.h"
#include "fs/net.h"
#include "common/clock.h"

#define NET_TTL_NS (10 * 1000000000LL)
#define ERR_LEN 512

enum { N_ROOT, N_DIR, N_TAG, N_MDIR, N_FILE, N_LINK, N_SMIPDIR, N_SMIPFILE };
enum { SF_MANIFEST, SF_OCI, SF_INFO };
static const char *const smip_files[] = { "manifest.json", "oci-manifest.json", "info" };

/* One entry of a model: a file of its SMIP manifest, layout or push. */
struct tent {
	char *path;
	uint32_t mode;
	uint64_t size;
	long idx; /* into m->files, l->files or the push; -1 for implied folders */
};

/* A tag: a model resolved from the registry, or a push being written. */
struct ntag {
	unsigned refs;
	int remote;
	char *repo, *tag;
	int64_t at;
	struct reg_model *rm;   /* resolved (NULL for a push) */
	struct reg_push *push;  /* a push being written (NULL otherwise) */
	struct tent *ents;      /* under n->lock */
	size_t nents;
};

struct nnode {
	uint64_t ino;
	int kind;
	struct nnode *parent;
	char *name;
	int remote;
	char *prefix;   /* N_DIR: repository path so far; N_TAG: the repository */
	char *path;     /* N_MDIR, N_FILE, N_LINK: inside the model; N_SMIPFILE: kind */
	int sf;
	int made;         /* N_DIR made by mkdir: a repository path to push to */
	struct ntag *tag; /* N_TAG */
	struct nnode **kids;
	size_t nkids;
	char **names;   /* N_DIR: the last listing */
	uint32_t *modes;
	size_t nnames;
	int64_t listed;
};

struct nremote {
	struct oci_remote *cfg;
	struct oci_client *c;
	/* Who may use it ("users"): root and these uids, or everyone. */
	int everyone;
	uid_t *users;
	size_t nusers;
	char **repos;
	size_t nrepos;
	int64_t listed;
};

struct fs_net {
	struct fs *fs;
	struct oci_remote *cfg;
	size_t ncfg;
	struct nremote *r;
	pthread_mutex_t lock;  /* nodes, listings, tags and their entries */
	struct nnode **nodes;
	size_t nnodes, capnodes;
	struct xfer_list *xfers;
	time_t started;
};

struct fs_net_handle {
	struct nnode *node;
	struct ntag *tag;
	long idx;               /* into m->files / l->files / the push */
	char *text;             /* .smip files */
	size_t len;
	struct pull_reader *rd; /* a file of a resolved model */
	int writable;
	pthread_mutex_t lock;   /* the kernel reads ahead on several threads */
};

int fs_net_transfers(struct fs_net *n, char **ret, size_t *ret_len)
{
	return xfer_list_text(n->xfers, ret, ret_len);
}

/* ---- nodes --------------------------------------------------------------- */

int fs_net_owns(uint64_t ino)
{
	return ino == NET_INO || FS_TAG(ino) == FS_NET_TAG;
}

static struct nnode *node_of(struct fs_net *n, uint64_t ino)
{
	uint64_t i = ino == NET_INO ? 0 : ino & ~NET_BIT;

	if (!fs_net_owns(ino) || i >= n->nnodes)
		return NULL;
	return n->nodes[i];
}

/* A child node by name, made if absent.  n->lock held. */
static struct nnode *kid_get(struct fs_net *n, struct nnode *p, const char *name,
			     int kind)
{
	struct nnode *k, **v;
	size_t i;

	for (i = 0; i < p->nkids; i++)
		if (strcmp(p->kids[i]->name, name) == 0) {
			p->kids[i]->kind = kind;
			return p->kids[i];
		}
	if (n->nnodes == n->capnodes) {
		size_t cap = n->capnodes ? 2 * n->capnodes : 64;

		v = realloc(n->nodes, cap * sizeof(*v));
		if (!v)
			return NULL;
		n->nodes = v;
		n->capnodes = cap;
	}
	v = realloc(p->kids, (p->nkids + 1) * sizeof(*v));
	k = calloc(1, sizeof(*k));
	if (v)
		p->kids = v;
	if (!v || !k || !(k->name = strdup(name))) {
		free(k);
		return NULL;
	}
	k->kind = kind;
	k->parent = p;
	k->remote = p->remote;
	k->ino = NET_BIT | n->nnodes;
	n->nodes[n->nnodes++] = k;
	p->kids[p->nkids++] = k;
	return k;
}

static struct nnode *kid_find(struct nnode *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->nkids; i++)
		if (strcmp(p->kids[i]->name, name) == 0)
			return p->kids[i];
	return NULL;
}

static struct nnode *tag_node(struct nnode *x)
{
	while (x && x->kind != N_TAG)
		x = x->parent;
	return x;
}

/* ---- tags ---------------------------------------------------------------- */

static void tag_put(struct fs_net *n, struct ntag *t)
{
	size_t i;

	if (!t)
		return;
	pthread_mutex_lock(&n->lock);
	i = --t->refs;
	pthread_mutex_unlock(&n->lock);
	if (i)
		return;
	for (i = 0; i < t->nents; i++)
		free(t->ents[i].path);
	free(t->ents);
	push_free(t->push);
	reg_model_free(n->fs->st, t->rm);
	free(t->repo);
	free(t->tag);
	free(t);
}

static int ent_add(struct ntag *t, const char *path, uint32_t mode, uint64_t size,
		   long idx)
{
	struct tent *v;
	size_t i;

	for (i = 0; i < t->nents; i++)
		if (strcmp(t->ents[i].path, path) == 0)
			return 0;
	v = realloc(t->ents, (t->nents + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->ents = v;
	v[t->nents].path = strdup(path);
	if (!v[t->nents].path)
		return -ENOMEM;
	v[t->nents].mode = mode;
	v[t->nents].size = size;
	v[t->nents].idx = idx;
	t->nents++;
	return 0;
}

/* An entry and the folders above it that the layout does not list. */
static int ent_add_path(struct ntag *t, const char *path, uint32_t mode,
			uint64_t size, long idx)
{
	char *dir = strdup(path), *s;
	int r = 0;

	if (!dir)
		return -ENOMEM;
	for (s = strchr(dir, '/'); r == 0 && s; s = strchr(s + 1, '/')) {
		*s = '\0';
		r = ent_add(t, dir, S_IFDIR | 0555, 0, -1);
		*s = '/';
	}
	free(dir);
	return r ? r : ent_add(t, path, mode, size, idx);
}

static const struct tent *ent_find(const struct ntag *t, const char *path)
{
	size_t i;

	for (i = 0; i < t->nents; i++)
		if (strcmp(t->ents[i].path, path) == 0)
			return &t->ents[i];
	return NULL;
}

/* A new tag of one reference, for a resolved model (taken) or a push. */
static struct ntag *tag_new(int remote, const char *repo, const char *tag)
{
	struct ntag *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->refs = 1;
	t->remote = remote;
	t->at = clock_mono_ns();
	t->repo = strdup(repo);
	t->tag = strdup(tag);
	if (!t->repo || !t->tag) {
		free(t->repo);
		free(t->tag);
		free(t);
		return NULL;
	}
	return t;
}

/* The files of a resolved model as entries: the mapping of its names. */
static int tag_ents(struct ntag *t)
{
	const struct reg_model *m = t->rm;
	size_t i;
	int r = 0;

	if (m->m) {
		for (i = 0; r == 0 && i < m->m->nfiles; i++) {
			const struct smip_rfile *f = &m->m->files[i];

			r = ent_add_path(t, f->path, f->mode, f->size, (long)i);
		}
		return r;
	}
	for (i = 0; r == 0 && i < m->l->nfiles; i++) {
		const struct layout_file *f = &m->l->files[i];

		r = ent_add_path(t, f->path, S_IFREG | (f->mode & 0555), f->size,
				 (long)i);
	}
	return r;
}

/* Reads repo:tag from the registry into a new ntag. */
static int tag_resolve(struct fs_net *n, int remote, const char *repo,
		       const char *tag, struct ntag **ret, char *err, size_t errlen)
{
	struct ntag *t = tag_new(remote, repo, tag);
	int r;

	if (!t)
		return -ENOMEM;
	r = reg_model_resolve(n->r[remote].c, n->r[remote].cfg->name, repo, tag,
			      &t->rm, err, errlen);
	if (r == 0)
		r = tag_ents(t);
	if (r < 0) {
		tag_put(n, t);
		return r;
	}
	*ret = t;
	return 0;
}

/*
 * The node's model, resolved again when older than NET_TTL; a push in
 * progress is kept as it is.  Returns a reference.
 */
static int tag_get(struct fs_net *n, struct nnode *tn, struct ntag **ret)
{
	struct ntag *t, *old;
	char err[ERR_LEN] = "";
	int r;

	pthread_mutex_lock(&n->lock);
	t = tn->tag;
	if (t && (t->push || clock_mono_ns() - t->at < NET_TTL_NS)) {
		t->refs++;
		pthread_mutex_unlock(&n->lock);
		*ret = t;
		return 0;
	}
	pthread_mutex_unlock(&n->lock);
	r = tag_resolve(n, tn->remote, tn->prefix, tn->name, &t, err, sizeof(err));
	if (r < 0) {
		if (r != -ENOENT)
			fs_log(n->fs->log, LOG_ERR, "net/%s/%s/%s: %s",
			       n->r[tn->remote].cfg->name, tn->prefix, tn->name,
			       *err ? err : strerror(-r));
		return r == -ENOENT || r == -EACCES || r == -ENOTSUP ? r : -EIO;
	}
	pthread_mutex_lock(&n->lock);
	old = tn->tag;
	tn->tag = t;
	t->refs++;
	if (old)
		old->refs++;
	pthread_mutex_unlock(&n->lock);
	/* The same manifest: the local copies of its tar layers carry over. */
	if (old && old->rm)
		reg_model_adopt_layers(t->rm, old->rm);
	tag_put(n, old);
	tag_put(n, old);
	*ret = t;
	return 0;
}

/* ---- listings ------------------------------------------------------------ */

static int strv_has(char **v, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* The repositories of a remote: the catalog API and the configured list. */
static int remote_repos(struct fs_net *n, int remote, char ***ret, size_t *ret_n)
{
	struct nremote *nr = &n->r[remote];
	char **v = NULL, err[ERR_LEN] = "";
	size_t nv = 0, i;
	int r;

	pthread_mutex_lock(&n->lock);
	if (nr->repos && clock_mono_ns() - nr->listed < NET_TTL_NS)
		goto copy;
	pthread_mutex_unlock(&n->lock);
	r = reg_repos(nr->c, nr->cfg, &v, &nv, err, sizeof(err));
	if (r < 0)
		return r;
	if (*err && !nr->cfg->nrepositories)
		fs_log(n->fs->log, LOG_WARNING, "net/%s: no catalog: %s",
		       nr->cfg->name, err);
	pthread_mutex_lock(&n->lock);
	oci_strv_free(nr->repos, nr->nrepos);
	nr->repos = v;
	nr->nrepos = nv;
	nr->listed = clock_mono_ns();
copy:
	*ret = calloc(nr->nrepos + 1, sizeof(char *));
	for (i = 0; *ret && i < nr->nrepos; i++)
		(*ret)[i] = strdup(nr->repos[i]);
	*ret_n = *ret ? nr->nrepos : 0;
	pthread_mutex_unlock(&n->lock);
	return *ret ? 0 : -ENOMEM;
}

/* Names under a repository-path folder: tags, then next path parts. */
static int dir_listing(struct fs_net *n, struct nnode *d)
{
	char **repos = NULL, **names = NULL;
	unsigned char *is_tag = NULL;
	uint32_t *modes = NULL;
	size_t nrepos = 0, nn = 0, i;
	int r;

	pthread_mutex_lock(&n->lock);
	if (d->names && clock_mono_ns() - d->listed < NET_TTL_NS) {
		pthread_mutex_unlock(&n->lock);
		return 0;
	}
	pthread_mutex_unlock(&n->lock);
	r = remote_repos(n, d->remote, &repos, &nrepos);
	if (r == 0)
		r = reg_dir_names(n->r[d->remote].c, repos, nrepos, d->prefix, &names,
				  &is_tag, &nn);
	if (r == 0 && !(modes = calloc(nn + 1, sizeof(*modes))))
		r = -ENOMEM;
	if (r < 0)
		goto out;
	/* Tags are marked with S_ISVTX here, repository path parts are not. */
	for (i = 0; i < nn; i++)
		modes[i] = S_IFDIR | (is_tag[i] ? S_ISVTX : 0) | 0755;
	pthread_mutex_lock(&n->lock);
	oci_strv_free(d->names, d->nnames);
	free(d->modes);
	d->names = names;
	d->modes = modes;
	d->nnames = nn;
	d->listed = clock_mono_ns();
	pthread_mutex_unlock(&n->lock);
	names = NULL;
	modes = NULL;
out:
	oci_strv_free(names, nn);
	free(modes);
	free(is_tag);
	oci_strv_free(repos, nrepos);
	return r;
}

/* ---- lookup, stat, list -------------------------------------------------- */

static char *join(const char *a, const char *b)
{
	char *s;

	if (asprintf(&s, "%s%s%s", a, *a ? "/" : "", b) < 0)
		return NULL;
	return s;
}

static int lookup_dir(struct fs_net *n, struct nnode *d, const char *name,
		      uint64_t *ret_ino)
{
	struct nnode *k;
	struct ntag *t;
	char *full;
	size_t i;
	int r, kind = -1, again, stale;

	pthread_mutex_lock(&n->lock);
	k = kid_find(d, name);
	if (k && ((k->kind == N_TAG && k->tag &&
		   (k->tag->push || clock_mono_ns() - k->tag->at < NET_TTL_NS)) ||
		  (k->kind == N_DIR && (k->made || clock_mono_ns() - k->listed < NET_TTL_NS)))) {
		*ret_ino = k->ino;
		pthread_mutex_unlock(&n->lock);
		return 0;
	}
	pthread_mutex_unlock(&n->lock);
	for (again = 0;; again++) {
		r = dir_listing(n, d);
		if (r < 0)
			return r;
		pthread_mutex_lock(&n->lock);
		for (i = 0; i < d->nnames; i++)
			if (strcmp(d->names[i], name) == 0)
				break;
		/* A name the cached listing lacks: list again, once a second. */
		stale = i == d->nnames && !again && clock_mono_ns() - d->listed > NET_TTL_NS / 10;
		if (stale) {
			d->listed = 0;
			n->r[d->remote].listed = 0;
		}
		pthread_mutex_unlock(&n->lock);
		if (!stale)
			break;
	}
	full = join(d->prefix, name);
	if (!full)
		return -ENOMEM;
	/* A tag of this repository, or a deeper repository path. */
	if (*d->prefix && oci_tag_valid(name)) {
		struct nnode probe = { .remote = d->remote, .prefix = d->prefix,
				       .name = (char *)name };

		r = tag_get(n, &probe, &t);
		if (r == 0) {
			kind = N_TAG;
			pthread_mutex_lock(&n->lock);
			struct ntag *old = NULL;

			k = kid_get(n, d, name, N_TAG);
			if (k) {
				/* A node's names never change: readers use them unlocked. */
				if (!k->prefix)
					k->prefix = strdup(d->prefix);
				old = k->tag;
				k->tag = t;
				t->refs++;
			}
			pthread_mutex_unlock(&n->lock);
			tag_put(n, old);
			tag_put(n, t);
			tag_put(n, probe.tag);
		} else if (r != -ENOENT) {
			free(full);
			return r;
		}
	}
	if (kind < 0 && (i < d->nnames ||
			 (oci_repo_valid(full) && reg_is_repo(n->r[d->remote].c, full))))
		kind = N_DIR;
	if (kind == N_DIR) {
		pthread_mutex_lock(&n->lock);
		k = kid_get(n, d, name, N_DIR);
		if (k && !k->prefix)
			k->prefix = strdup(full);
		if (k && !k->names)
			k->listed = clock_mono_ns();
		pthread_mutex_unlock(&n->lock);
	}
	free(full);
	if (kind < 0)
		return -ENOENT;
	if (!k || !k->prefix)
		return -ENOMEM;
	*ret_ino = k->ino;
	return 0;
}

int fs_net_lookup(struct fs_net *n, uint64_t parent, const char *name,
		  uint64_t *ret_ino)
{
	struct nnode *p, *k = NULL, *tn;
	struct ntag *t;
	const struct tent *e;
	char *path;
	size_t i;
	int r;

	pthread_mutex_lock(&n->lock);
	p = node_of(n, parent);
	pthread_mutex_unlock(&n->lock);
	if (!p)
		return -ENOENT;
	switch (p->kind) {
	case N_ROOT:
		for (i = 0; i < n->ncfg; i++)
			if (strcmp(n->cfg[i].name, name) == 0)
				break;
		if (i == n->ncfg)
			return -ENOENT;
		pthread_mutex_lock(&n->lock);
		k = kid_get(n, p, name, N_DIR);
		if (k) {
			k->remote = (int)i;
			if (!k->prefix)
				k->prefix = strdup("");
		}
		pthread_mutex_unlock(&n->lock);
		if (!k || !k->prefix)
			return -ENOMEM;
		*ret_ino = k->ino;
		return 0;
	case N_DIR:
		return lookup_dir(n, p, name, ret_ino);
	case N_SMIPDIR:
		for (i = 0; i < 3 && strcmp(smip_files[i], name); i++)
			;
		if (i == 3)
			return -ENOENT;
		pthread_mutex_lock(&n->lock);
		k = kid_get(n, p, name, N_SMIPFILE);
		if (k)
			k->sf = (int)i;
		pthread_mutex_unlock(&n->lock);
		if (!k)
			return -ENOMEM;
		*ret_ino = k->ino;
		return 0;
	case N_TAG:
	case N_MDIR:
		break;
	default:
		return -ENOTDIR;
	}
	tn = tag_node(p);
	r = tag_get(n, tn, &t);
	if (r < 0)
		return r;
	if (p->kind == N_TAG && strcmp(name, ".smip") == 0 && !t->push) {
		pthread_mutex_lock(&n->lock);
		k = kid_get(n, p, name, N_SMIPDIR);
		pthread_mutex_unlock(&n->lock);
		tag_put(n, t);
		if (!k)
			return -ENOMEM;
		*ret_ino = k->ino;
		return 0;
	}
	path = join(p->kind == N_TAG ? "" : p->path, name);
	if (!path) {
		tag_put(n, t);
		return -ENOMEM;
	}
	pthread_mutex_lock(&n->lock);
	e = ent_find(t, path);
	r = -ENOENT;
	if (e) {
		k = kid_get(n, p, name, S_ISDIR(e->mode) ? N_MDIR :
				  S_ISLNK(e->mode) ? N_LINK : N_FILE);
		r = -ENOMEM;
		if (k) {
			if (!k->path) {
				k->path = path;
				path = NULL;
			}
			*ret_ino = k->ino;
			r = 0;
		}
	}
	pthread_mutex_unlock(&n->lock);
	free(path);
	tag_put(n, t);
	return r;
}

static void fill(struct fs_net *n, uint64_t ino, uint32_t mode, uint64_t size,
		 struct stat *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->st_ino = ino;
	sb->st_mode = mode;
	sb->st_nlink = S_ISDIR(mode) ? 2 : 1;
	sb->st_uid = n->fs->uid;
	sb->st_gid = n->fs->gid;
	sb->st_size = (off_t)size;
	/*
	 * A buffered reader reads st_blksize at a time; a chunk (128 KiB on
	 * average) is what a fetch moves, so more would fetch more.
	 */
	sb->st_blksize = 128 << 10;
	sb->st_mtime = sb->st_ctime = sb->st_atime = n->started;
	sb->st_blocks = (blkcnt_t)((size + 511) / 512);
}

static int smip_text(struct fs_net *n, struct ntag *t, int sf, char **ret,
		     size_t *ret_len);

int fs_net_stat(struct fs_net *n, uint64_t ino, struct stat *sb)
{
	struct nnode *x;
	struct ntag *t;
	const struct tent *e;
	int r = 0;

	pthread_mutex_lock(&n->lock);
	x = node_of(n, ino);
	pthread_mutex_unlock(&n->lock);
	if (!x)
		return -ENOENT;
	if (x->kind == N_ROOT || x->kind == N_DIR) {
		/* A remote only its owner may use says so to `ls -l` too. */
		int closed = x->kind == N_DIR && x->parent && x->parent->kind == N_ROOT &&
			     !n->r[x->remote].everyone && !n->r[x->remote].nusers;

		fill(n, ino, S_IFDIR | (closed ? 0700 : 0755), 0, sb);
		return 0;
	}
	if (x->kind == N_TAG) {
		/* No registry round trip: `ls -l` of a repository stats every tag. */
		pthread_mutex_lock(&n->lock);
		fill(n, ino, S_IFDIR | (x->tag && x->tag->push ? 0755 : 0555), 0, sb);
		pthread_mutex_unlock(&n->lock);
		return 0;
	}
	r = tag_get(n, tag_node(x), &t);
	if (r < 0)
		return r;
	if (x->kind == N_SMIPDIR) {
		fill(n, ino, S_IFDIR | 0555, 0, sb);
	} else if (x->kind == N_SMIPFILE) {
		char *text;
		size_t len;

		r = smip_text(n, t, x->sf, &text, &len);
		if (r == 0) {
			free(text);
			fill(n, ino, S_IFREG | 0444, len, sb);
		}
	} else {
		long idx = -1;

		pthread_mutex_lock(&n->lock);
		e = ent_find(t, x->path);
		if (e) {
			fill(n, ino, e->mode, e->size, sb);
			idx = S_ISREG(e->mode) ? e->idx : -1;
		} else {
			r = -ENOENT;
		}
		pthread_mutex_unlock(&n->lock);
		/* A file of a push reports its writer's size. */
		if (t->push && idx >= 0) {
			uint64_t size;

			if (push_size(t->push, (size_t)idx, &size) == 0)
				sb->st_size = (off_t)size;
		}
	}
	tag_put(n, t);
	return r;
}

/* A listed child: a node, so that readdir can give its inode. n->lock held. */
static uint64_t list_kid(struct fs_net *n, struct nnode *p, const char *name,
			 int kind, const char *prefix, const char *path)
{
	struct nnode *k = kid_find(p, name);

	if (k)
		return k->ino;
	k = kid_get(n, p, name, kind);
	if (!k)
		return 0;
	if (prefix)
		k->prefix = strdup(prefix);
	if (path)
		k->path = strdup(path);
	return k->ino;
}

int fs_net_list(struct fs_net *n, uint64_t ino,
		int (*add)(void *arg, const char *name, uint64_t ino, uint32_t mode),
		void *arg)
{
	struct nnode *x;
	struct ntag *t;
	size_t i, plen;
	int r = 0;

	pthread_mutex_lock(&n->lock);
	x = node_of(n, ino);
	pthread_mutex_unlock(&n->lock);
	if (!x)
		return -ENOENT;
	switch (x->kind) {
	case N_ROOT:
		pthread_mutex_lock(&n->lock);
		for (i = 0; r == 0 && i < n->ncfg; i++) {
			struct nnode *k = kid_find(x, n->cfg[i].name);

			if (!k) {
				k = kid_get(n, x, n->cfg[i].name, N_DIR);
				if (k) {
					k->remote = (int)i;
					k->prefix = strdup("");
				}
			}
			r = k && k->prefix ? add(arg, n->cfg[i].name, k->ino, S_IFDIR)
					   : -ENOMEM;
		}
		pthread_mutex_unlock(&n->lock);
		return r;
	case N_DIR:
		r = dir_listing(n, x);
		pthread_mutex_lock(&n->lock);
		for (i = 0; r == 0 && i < x->nnames; i++) {
			char *full = join(x->prefix, x->names[i]);
			int tag = x->modes[i] & S_ISVTX;
			uint64_t k = full ? list_kid(n, x, x->names[i], tag ? N_TAG : N_DIR,
						     tag ? x->prefix : full, NULL)
					  : 0;

			free(full);
			r = k ? add(arg, x->names[i], k, S_IFDIR) : -ENOMEM;
		}
		/*
		 * Pushes being written are not on the registry yet; a NAME:TAG
		 * folder is found by name only (once pushed, NAME lists TAG).
		 */
		for (i = 0; r == 0 && i < x->nkids; i++)
			if (((x->kids[i]->kind == N_TAG && x->kids[i]->tag &&
			      x->kids[i]->tag->push) || x->kids[i]->made) &&
			    !strchr(x->kids[i]->name, ':') &&
			    !strv_has(x->names, x->nnames, x->kids[i]->name))
				r = add(arg, x->kids[i]->name, x->kids[i]->ino, S_IFDIR);
		pthread_mutex_unlock(&n->lock);
		return r;
	case N_SMIPDIR:
		pthread_mutex_lock(&n->lock);
		for (i = 0; r == 0 && i < 3; i++) {
			struct nnode *k = kid_find(x, smip_files[i]);

			if (!k && (k = kid_get(n, x, smip_files[i], N_SMIPFILE)))
				k->sf = (int)i;
			r = k ? add(arg, smip_files[i], k->ino, S_IFREG) : -ENOMEM;
		}
		pthread_mutex_unlock(&n->lock);
		return r;
	case N_TAG:
	case N_MDIR:
		break;
	default:
		return -ENOTDIR;
	}
	r = tag_get(n, tag_node(x), &t);
	if (r < 0)
		return r;
	plen = x->kind == N_TAG ? 0 : strlen(x->path);
	pthread_mutex_lock(&n->lock);
	for (i = 0; r == 0 && i < t->nents; i++) {
		const struct tent *e = &t->ents[i];
		const char *p = e->path;
		uint64_t k;

		if (plen && (strncmp(p, x->path, plen) || p[plen] != '/'))
			continue;
		p += plen ? plen + 1 : 0;
		if (!*p || strchr(p, '/'))
			continue;
		k = list_kid(n, x, p, S_ISDIR(e->mode) ? N_MDIR :
				      S_ISLNK(e->mode) ? N_LINK : N_FILE, NULL, e->path);
		r = k ? add(arg, p, k, e->mode) : -ENOMEM;
	}
	pthread_mutex_unlock(&n->lock);
	tag_put(n, t);
	return r;
}

int fs_net_readlink(struct fs_net *n, uint64_t ino, char **ret)
{
	long idx;
	struct nnode *x;
	struct ntag *t;
	const struct tent *e;
	int r;

	pthread_mutex_lock(&n->lock);
	x = node_of(n, ino);
	pthread_mutex_unlock(&n->lock);
	if (!x || x->kind != N_LINK)
		return -EINVAL;
	r = tag_get(n, tag_node(x), &t);
	if (r < 0)
		return r;
	pthread_mutex_lock(&n->lock);
	e = ent_find(t, x->path);
	idx = e ? e->idx : -1;
	pthread_mutex_unlock(&n->lock);
	r = -EINVAL;
	if (idx >= 0 && t->rm && t->rm->m && t->rm->m->files[idx].target) {
		*ret = strdup(t->rm->m->files[idx].target);
		r = *ret ? 0 : -ENOMEM;
	} else if (idx >= 0 && t->push) {
		r = push_readlink(t->push, (size_t)idx, ret);
	}
	tag_put(n, t);
	return r;
}

/* ---- .smip --------------------------------------------------------------- */

static int smip_text(struct fs_net *n, struct ntag *t, int sf, char **ret,
		     size_t *ret_len)
{
	static const char *const kinds[] = { "", "smip", "ollama", "docker",
					     "modelpack" };
	const struct reg_model *m = t->rm;
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f;

	/* A push being written has no .smip yet. */
	if (!m)
		return -ENOENT;
	if (sf == SF_MANIFEST || sf == SF_OCI) {
		const char *s = sf == SF_MANIFEST && m->config ? m->config : m->manifest;
		size_t l = sf == SF_MANIFEST && m->config ? m->clen : m->mlen;

		*ret = malloc(l + 2);
		if (!*ret)
			return -ENOMEM;
		memcpy(*ret, s, l);
		(*ret)[l] = '\n';
		*ret_len = l + 1;
		return 0;
	}
	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "remote: %s\nrepository: %s\ntag: %s\ndigest: %s\nlayout: %s\n",
		n->r[t->remote].cfg->name, t->repo, t->tag, m->digest,
		kinds[m->l->kind]);
	if (m->m)
		fprintf(f, "chunks: %zu in %zu pack blobs\n", m->m->nchunks, m->m->npacks);
	fprintf(f, "files:\n");
	for (i = 0; i < t->nents; i++) {
		const struct tent *e = &t->ents[i];

		if (!S_ISREG(e->mode))
			continue;
		fprintf(f, "  %s %llu", e->path, (unsigned long long)e->size);
		if (!m->m && e->idx >= 0) {
			const struct layout_file *lf = &m->l->files[e->idx];

			fprintf(f, " %s %s%s", lf->media_type, lf->digest,
				lf->whole ? "" : " (inside)");
		}
		fputc('\n', f);
	}
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* ---- reading and pulls ---------------------------------------------------- */

static void handle_free(struct fs_net *n, struct fs_net_handle *h)
{
	pull_reader_free(n->xfers, h->rd);
	pthread_mutex_destroy(&h->lock);
	tag_put(n, h->tag);
	free(h->text);
	free(h);
}

/* An open of a file of a push: its writer for writing. */
static int fopen_push(struct fs_net_handle *h, int flags)
{
	int acc = flags & O_ACCMODE, r;

	r = push_open(h->tag->push, (size_t)h->idx, acc != O_RDONLY,
		      !!(flags & O_TRUNC));
	h->writable = r == 0 && acc != O_RDONLY;
	if (r < 0)
		h->idx = -1; /* no open to close */
	return r;
}

int fs_net_fopen(struct fs_net *n, uint64_t ino, int flags,
		 struct fs_net_handle **ret)
{
	struct fs_net_handle *h = calloc(1, sizeof(*h));
	const struct tent *e;
	struct nnode *x;
	int acc = flags & O_ACCMODE, r;

	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->idx = -1;
	pthread_mutex_lock(&n->lock);
	x = node_of(n, ino);
	pthread_mutex_unlock(&n->lock);
	r = -EISDIR;
	if (!x || (x->kind != N_FILE && x->kind != N_SMIPFILE))
		goto fail;
	h->node = x;
	r = tag_get(n, tag_node(x), &h->tag);
	if (r < 0)
		goto fail;
	if (x->kind == N_SMIPFILE) {
		r = acc == O_RDONLY ? smip_text(n, h->tag, x->sf, &h->text, &h->len)
				    : -EACCES;
		if (r < 0)
			goto fail;
		*ret = h;
		return 0;
	}
	pthread_mutex_lock(&n->lock);
	e = ent_find(h->tag, x->path);
	h->idx = e ? e->idx : -1;
	pthread_mutex_unlock(&n->lock);
	r = -ENOENT;
	if (h->idx < 0)
		goto fail;
	if (h->tag->push)
		r = fopen_push(h, flags);
	else if (acc != O_RDONLY)
		r = -EROFS;
	else
		r = pull_reader_new(h->tag->rm, h->idx, x->path, &h->rd);
	if (r < 0)
		goto fail;
	*ret = h;
	return 0;
fail:
	h->idx = -1;
	handle_free(n, h);
	return r;
}

static void log_net(struct fs_net *n, struct fs_net_handle *h, const char *err,
		    int r)
{
	fs_log(n->fs->log, LOG_ERR, "net/%s/%s/%s/%s: %s", n->r[h->tag->remote].cfg->name,
	       h->tag->repo, h->tag->tag, h->node->path, *err ? err : strerror(-r));
}

ssize_t fs_net_read(struct fs_net *n, struct fs_net_handle *h, void *buf,
		    size_t size, uint64_t off)
{
	char err[ERR_LEN] = "";
	ssize_t r;

	if (h->node->kind == N_SMIPFILE) {
		if (off >= h->len)
			return 0;
		size = size < h->len - off ? size : (size_t)(h->len - off);
		memcpy(buf, h->text + off, size);
		return (ssize_t)size;
	}
	if (h->tag->push)
		return push_read(h->tag->push, (size_t)h->idx, buf, size, off);
	pthread_mutex_lock(&h->lock);
	r = pull_read(n->fs->st, n->xfers, h->rd, buf, size, off, err, sizeof(err));
	pthread_mutex_unlock(&h->lock);
	if (r < 0 && *err)
		log_net(n, h, err, (int)r);
	return r;
}

ssize_t fs_net_copy_out(struct fs_net *n, struct fs_net_handle *h,
			uint64_t off_in, size_t len, struct cas_writer *w,
			uint64_t off_out)
{
	char err[ERR_LEN] = "";
	ssize_t r;

	if (h->node->kind != N_FILE || h->tag->push)
		return 0;
	pthread_mutex_lock(&h->lock);
	r = pull_copy(n->fs->st, n->xfers, h->rd, off_in, len, w, off_out, err,
		      sizeof(err));
	pthread_mutex_unlock(&h->lock);
	if (r < 0 && *err)
		log_net(n, h, err, (int)r);
	return r;
}

/* ---- pushes -------------------------------------------------------------- */

static void ent_del(struct ntag *t, const char *path)
{
	size_t i;

	for (i = 0; i < t->nents; i++)
		if (strcmp(t->ents[i].path, path) == 0) {
			free(t->ents[i].path);
			t->ents[i] = t->ents[--t->nents];
			return;
		}
}

/*
 * Adds an entry to a push in progress and its node under p; takes *path
 * (the entry's path in the model) on success.  The name is claimed first,
 * by an entry of no index, so that two creates of one name cannot both
 * add to the push; the orphan inode is made with no lock held.
 */
static int pf_add(struct fs_net *n, struct ntag *t, struct nnode *p,
		  const char *name, char **path, uint32_t mode,
		  const char *target, uint64_t *ret_ino)
{
	struct nnode *k;
	size_t idx;
	int r;

	pthread_mutex_lock(&n->lock);
	r = ent_find(t, *path) ? -EEXIST
			       : ent_add(t, *path, mode, target ? strlen(target) : 0, -1);
	pthread_mutex_unlock(&n->lock);
	if (r < 0)
		return r;
	r = push_add(t->push, *path, mode, target, &idx);
	pthread_mutex_lock(&n->lock);
	if (r < 0) {
		ent_del(t, *path);
		pthread_mutex_unlock(&n->lock);
		return r;
	}
	((struct tent *)ent_find(t, *path))->idx = (long)idx;
	k = kid_get(n, p, name, S_ISDIR(mode) ? N_MDIR :
			  S_ISLNK(mode) ? N_LINK : N_FILE);
	r = -ENOMEM;
	if (k) {
		if (!k->path) {
			k->path = *path;
			*path = NULL;
		}
		*ret_ino = k->ino;
		r = 0;
	}
	pthread_mutex_unlock(&n->lock);
	return r;
}

static int push_node(struct fs_net *n, uint64_t parent, const char *name,
		     uint32_t mode, const char *target, uint64_t *ret_ino,
		     struct fs_net_handle **ret);

/* A new tag (or folder of one) to push: NAME under a repository, or REPO:TAG. */
int fs_net_mkdir(struct fs_net *n, uint64_t parent, const char *name,
		 uint32_t mode, uint64_t *ret_ino)
{
	struct nnode *p, *k = NULL;
	struct ntag *t = NULL;
	const char *colon = strchr(name, ':');
	char *repo = NULL, *tag = NULL;
	int r;

	pthread_mutex_lock(&n->lock);
	p = node_of(n, parent);
	pthread_mutex_unlock(&n->lock);
	if (!p || p->kind == N_ROOT)
		return -EPERM;
	/* A folder inside a push. */
	if (p->kind == N_TAG || p->kind == N_MDIR)
		return push_node(n, parent, name, S_IFDIR | (mode & 0777), NULL,
				 ret_ino, NULL);
	if (p->kind != N_DIR)
		return -ENOTDIR;
	if (colon) {
		char *base = strndup(name, (size_t)(colon - name));

		repo = base ? join(p->prefix, base) : NULL;
		free(base);
		tag = strdup(colon + 1);
	} else if (reg_is_repo(n->r[p->remote].c, p->prefix)) {
		repo = strdup(p->prefix);
		tag = strdup(name);
	} else {
		/* A folder of a repository path still to be pushed to. */
		repo = join(p->prefix, name);
		r = -ENOMEM;
		if (!repo)
			goto out;
		r = -EINVAL;
		if (!oci_repo_valid(repo))
			goto out;
		pthread_mutex_lock(&n->lock);
		r = kid_find(p, name) ? -EEXIST : -ENOMEM;
		k = r == -ENOMEM ? kid_get(n, p, name, N_DIR) : NULL;
		if (k) {
			k->prefix = repo;
			k->made = 1;
			repo = NULL;
			*ret_ino = k->ino;
			r = 0;
		}
		pthread_mutex_unlock(&n->lock);
		goto out;
	}
	r = -ENOMEM;
	if (!repo || !tag)
		goto out;
	r = -EINVAL;
	if (!oci_repo_valid(repo) || !oci_tag_valid(tag))
		goto out;
	r = -ENOMEM;
	t = tag_new(p->remote, repo, tag);
	if (!t)
		goto out;
	r = push_new(n->fs->st, n->r[p->remote].c, n->r[p->remote].cfg->name,
		     n->r[p->remote].cfg->modelpack, repo, tag, n->fs->uid,
		     n->fs->gid, &t->push);
	if (r < 0)
		goto out;
	pthread_mutex_lock(&n->lock);
	k = kid_find(p, name);
	if (k && k->tag && k->tag->push) {
		r = -EEXIST;
	} else {
		k = kid_get(n, p, name, N_TAG);
		r = -ENOMEM;
		if (k) {
			struct ntag *old = k->tag;

			if (!k->prefix)
				k->prefix = strdup(t->repo);
			k->tag = t;
			t->refs++;
			if (old)
				old->refs--;
			*ret_ino = k->ino;
			r = 0;
			if (old && old->refs == 0) {
				old->refs = 1;
				pthread_mutex_unlock(&n->lock);
				tag_put(n, old);
				pthread_mutex_lock(&n->lock);
			}
		}
	}
	pthread_mutex_unlock(&n->lock);
out:
	tag_put(n, t);
	free(repo);
	free(tag);
	return r;
}

static int push_run(struct fs_net *n, struct ntag *t);

int fs_net_create(struct fs_net *n, uint64_t parent, const char *name,
		  uint32_t mode, uint64_t *ret_ino, struct fs_net_handle **ret)
{
	return push_node(n, parent, name, S_IFREG | (mode & 0777), NULL, ret_ino,
			 ret);
}

int fs_net_symlink(struct fs_net *n, uint64_t parent, const char *name,
		   const char *target, uint64_t *ret_ino)
{
	struct nnode *x;
	struct ntag *t;
	int r = push_node(n, parent, name, S_IFLNK | 0777, target, ret_ino, NULL);

	/* No close follows a symlink: the tag is pushed again now. */
	pthread_mutex_lock(&n->lock);
	x = r == 0 ? node_of(n, *ret_ino) : NULL;
	pthread_mutex_unlock(&n->lock);
	if (!x || tag_get(n, tag_node(x), &t) < 0)
		return r;
	r = t->push ? push_run(n, t) : -EROFS;
	tag_put(n, t);
	return r;
}

/* A file, symlink or folder of a push; files and symlinks are orphan
 * inodes of the store. */
static int push_node(struct fs_net *n, uint64_t parent, const char *name,
		     uint32_t mode, const char *target, uint64_t *ret_ino,
		     struct fs_net_handle **ret)
{
	struct nnode *p;
	struct ntag *t;
	char *path = NULL;
	int r;

	/* Every name of a push goes into its manifest: the store's rule (strict UTF-8). */
	r = cas_name_check(name);
	if (r < 0)
		return r;
	pthread_mutex_lock(&n->lock);
	p = node_of(n, parent);
	pthread_mutex_unlock(&n->lock);
	if (!p || (p->kind != N_TAG && p->kind != N_MDIR))
		return p && p->kind == N_DIR ? -EPERM : -EROFS;
	r = tag_get(n, tag_node(p), &t);
	if (r < 0)
		return r;
	r = -EROFS;
	if (!t->push)
		goto out;
	path = join(p->kind == N_TAG ? "" : p->path, name);
	r = -ENOMEM;
	if (!path)
		goto out;
	r = pf_add(n, t, p, name, &path, mode, target, ret_ino);
	if (r == 0 && ret)
		r = fs_net_fopen(n, *ret_ino, O_WRONLY | O_TRUNC, ret);
out:
	free(path);
	tag_put(n, t);
	return r;
}

/* The push a handle writes, or NULL if it writes none. */
static struct reg_push *push_of(struct fs_net_handle *h)
{
	return h->tag && h->tag->push && h->writable ? h->tag->push : NULL;
}

int fs_net_write(struct fs_net *n, struct fs_net_handle *h, const void *buf,
		 size_t size, uint64_t off)
{
	struct reg_push *p = push_of(h);

	(void)n;
	return p ? push_write(p, (size_t)h->idx, buf, size, off) : -EBADF;
}

int fs_net_truncate(struct fs_net *n, struct fs_net_handle *h, uint64_t size)
{
	struct reg_push *p = push_of(h);

	(void)n;
	return p ? push_truncate(p, (size_t)h->idx, size) : -EROFS;
}

ssize_t fs_net_copy_in(struct fs_net *n, struct fs_net_handle *h,
		       uint64_t off_out, struct cas_file *src, uint64_t off_in,
		       size_t len)
{
	struct reg_push *p = push_of(h);

	(void)n;
	return p ? push_share(p, (size_t)h->idx, src, off_in, len, off_out) : -EBADF;
}

/*
 * Models of other repositories of t's remote that this daemon has read:
 * blobs a push may mount.  Each holds a reference for tags_put().
 */
static int mount_sources(struct fs_net *n, const struct ntag *t,
			 struct smip_source **ret_src, struct ntag ***ret_held,
			 size_t *ret_n)
{
	struct smip_source *src = NULL;
	struct ntag **held = NULL;
	size_t i, k = 0;

	pthread_mutex_lock(&n->lock);
	if (n->nnodes) {
		src = calloc(n->nnodes, sizeof(*src));
		held = calloc(n->nnodes, sizeof(*held));
	}
	for (i = 0; src && held && i < n->nnodes; i++) {
		struct ntag *o = n->nodes[i]->tag;

		if (o && o->rm && o->rm->m && o->remote == t->remote &&
		    strcmp(o->repo, t->repo)) {
			o->refs++;
			held[k] = o;
			src[k].repo = o->repo;
			src[k++].m = o->rm->m;
		}
	}
	pthread_mutex_unlock(&n->lock);
	if (n->nnodes && (!src || !held)) {
		free(src);
		free(held);
		return -ENOMEM;
	}
	*ret_src = src;
	*ret_held = held;
	*ret_n = k;
	return 0;
}

/* Pushes every file of the tag as committed now, and logs the outcome. */
static int push_run(struct fs_net *n, struct ntag *t)
{
	struct smip_push_stats stats;
	struct smip_source *src = NULL;
	struct ntag **held = NULL;
	char err[ERR_LEN] = "";
	size_t nsrc = 0, i;
	int r;

	r = mount_sources(n, t, &src, &held, &nsrc);
	if (r == 0)
		r = push_tag(t->push, src, nsrc, n->xfers, &stats, err, sizeof(err));
	for (i = 0; i < nsrc; i++)
		tag_put(n, held[i]);
	free(held);
	free(src);
	if (r < 0) {
		fs_log(n->fs->log, LOG_ERR, "net/%s/%s:%s: push failed: %s",
		       n->r[t->remote].cfg->name, t->repo, t->tag,
		       *err ? err : strerror(-r));
		return r;
	}
	/* The registry has changed: list it again. */
	pthread_mutex_lock(&n->lock);
	n->r[t->remote].listed = 0;
	for (i = 0; i < n->nnodes; i++)
		if (n->nodes[i]->remote == t->remote)
			n->nodes[i]->listed = 0;
	pthread_mutex_unlock(&n->lock);
	fs_log(n->fs->log, LOG_INFO,
	       "net/%s/%s:%s: pushed %llu chunks, %llu blobs mounted, %llu new, %llu bytes sent",
	       n->r[t->remote].cfg->name, t->repo, t->tag,
	       (unsigned long long)stats.chunks,
	       (unsigned long long)stats.packs_mounted,
	       (unsigned long long)stats.new_chunks,
	       (unsigned long long)stats.bytes_sent);
	return 0;
}

/* Commits the handle's file and, if it had new bytes, pushes the tag. */
static int push_file(struct fs_net *n, struct fs_net_handle *h)
{
	int r = push_commit(h->tag->push, (size_t)h->idx);

	if (r < 0)
		fs_log(n->fs->log, LOG_ERR, "net/%s/%s:%s/%s: cannot store: %s",
		       n->r[h->tag->remote].cfg->name, h->tag->repo, h->tag->tag,
		       h->node->path, strerror(-r));
	return r <= 0 ? r : push_run(n, h->tag);
}

int fs_net_flush(struct fs_net *n, struct fs_net_handle *h)
{
	return push_of(h) ? push_file(n, h) : 0;
}

void fs_net_release(struct fs_net *n, struct fs_net_handle *h)
{
	if (push_of(h))
		push_file(n, h);
	if (h->tag && h->tag->push && h->idx >= 0)
		push_close(h->tag->push, (size_t)h->idx);
	handle_free(n, h);
}

/* ---- who may use a remote ------------------------------------------------ */

/*
 * A remote answers with the daemon's credentials (given in the remotes
 * file or found in the daemon user's auth files) and fills the daemon's
 * store, so by default only root and the daemon's own user may use it;
 * its "users" list (user names or uids, "*" for everyone) admits more.
 */
static int user_add(struct nremote *r, json_t *v)
{
	char buf[4096];
	struct passwd pw, *res = NULL;
	uid_t *u;
	uid_t uid;

	if (json_is_string(v) && !strcmp(json_string_value(v), "*")) {
		r->everyone = 1;
		return 0;
	}
	if (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) < (json_int_t)UINT32_MAX) {
		uid = (uid_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		if (getpwnam_r(json_string_value(v), &pw, buf, sizeof(buf), &res) != 0 ||
		    !res)
			return -ENOENT;
		uid = res->pw_uid;
	} else {
		return -EINVAL;
	}
	u = realloc(r->users, (r->nusers + 1) * sizeof(*u));
	if (!u)
		return -ENOMEM;
	r->users = u;
	r->users[r->nusers++] = uid;
	return 0;
}

/* Reads each remote's "users" (the file was checked by oci_config_load()). */
static int users_load(struct fs_net *n, const char *config, char *err, size_t errlen)
{
	json_t *root, *remotes, *users, *v;
	size_t i, k;
	int r = 0;

	if (!n->ncfg)
		return 0;
	root = json_load_file(config, 0, NULL);
	if (!root) {
		snprintf(err, errlen, "%s: cannot read it again", config);
		return -EIO;
	}
	remotes = json_object_get(root, "remotes");
	for (i = 0; r == 0 && i < n->ncfg; i++) {
		users = json_object_get(json_object_get(remotes, n->cfg[i].name), "users");
		if (!users)
			continue;
		if (!json_is_array(users)) {
			r = -EINVAL;
			break;
		}
		json_array_foreach(users, k, v) {
			r = user_add(&n->r[i], v);
			if (r < 0)
				break;
		}
	}
	/* Names only: never a word of the file, which holds passwords. */
	if (r == -ENOENT)
		snprintf(err, errlen, "%s: remote %s: \"users\" names an unknown user",
			 config, n->cfg[i].name);
	else if (r < 0)
		snprintf(err, errlen, "%s: remote %s: \"users\" must be a list of user"
			 " names, uids or \"*\"", config, n->cfg[i].name);
	json_decref(root);
	return r;
}

static int remote_admits(const struct fs_net *n, int remote, uid_t uid)
{
	const struct nremote *r = &n->r[remote];
	size_t i;

	if (uid == 0 || uid == n->fs->uid || r->everyone)
		return 1;
	for (i = 0; i < r->nusers; i++)
		if (r->users[i] == uid)
			return 1;
	return 0;
}

int fs_net_per_caller(const struct fs_net *n)
{
	size_t i;

	for (i = 0; i < n->ncfg; i++)
		if (!n->r[i].everyone && n->r[i].nusers)
			return 1;
	return 0;
}

int fs_net_may(struct fs_net *n, uint64_t ino, uid_t uid)
{
	struct nnode *x;
	int ok;

	pthread_mutex_lock(&n->lock);
	x = node_of(n, ino);
	ok = x && (x->kind == N_ROOT || remote_admits(n, x->remote, uid));
	pthread_mutex_unlock(&n->lock);
	if (!x)
		return -ENOENT;
	return ok ? 0 : -EACCES;
}

/* ---- lifecycle ----------------------------------------------------------- */

int fs_net_open(struct fs *fs, const char *config, struct fs_net **ret,
		char *err, size_t errlen)
{
	struct fs_net *n = calloc(1, sizeof(*n));
	struct nnode *root;
	size_t i;
	int r;

	if (!n)
		return -ENOMEM;
	n->fs = fs;
	n->started = time(NULL);
	pthread_mutex_init(&n->lock, NULL);
	r = xfer_list_new(&n->xfers);
	if (r == 0)
		r = oci_config_load(config, &n->cfg, &n->ncfg, err, errlen);
	if (r < 0)
		goto fail;
	n->r = calloc(n->ncfg + 1, sizeof(*n->r));
	root = calloc(1, sizeof(*root));
	n->nodes = calloc(64, sizeof(*n->nodes));
	r = -ENOMEM;
	if (!n->r || !root || !n->nodes || !(root->name = strdup("net"))) {
		free(root);
		goto fail;
	}
	n->capnodes = 64;
	root->ino = NET_INO;
	root->kind = N_ROOT;
	n->nodes[n->nnodes++] = root;
	for (i = 0; i < n->ncfg; i++) {
		n->r[i].cfg = &n->cfg[i];
		r = oci_client_new(&n->cfg[i], &n->r[i].c, err, errlen);
		if (r < 0)
			goto fail;
	}
	r = users_load(n, config, err, errlen);
	if (r < 0)
		goto fail;
	*ret = n;
	return 0;
fail:
	fs_net_close(n);
	return r;
}

void fs_net_close(struct fs_net *n)
{
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n->nnodes; i++) {
		struct nnode *x = n->nodes[i];

		if (x->tag) {
			x->tag->refs = 1;
			tag_put(n, x->tag);
		}
		oci_strv_free(x->names, x->nnames);
		free(x->modes);
		free(x->kids);
		free(x->name);
		free(x->prefix);
		free(x->path);
		free(x);
	}
	free(n->nodes);
	for (i = 0; n->r && i < n->ncfg; i++) {
		oci_client_free(n->r[i].c);
		oci_strv_free(n->r[i].repos, n->r[i].nrepos);
		free(n->r[i].users);
	}
	free(n->r);
	oci_config_free(n->cfg, n->ncfg);
	xfer_list_free(n->xfers);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

/* ---- the net/ row (subtree.h) -------------------------------------------- */

static int net_start(struct fs *fs, const struct fs_options *opt)
{
	char err[1024] = "";
	int r = fs_net_open(fs, opt->remotes, &fs->net, err, sizeof(err));

	if (r < 0) {
		/* The reason names the file already. */
		if (*err)
			fs_log(fs->log, LOG_ERR, "%s", err);
		else
			fs_log(fs->log, LOG_ERR, "%s: %s", opt->remotes, strerror(-r));
		fs->net = NULL;
	}
	return r;
}

static void net_stop(struct fs *fs)
{
	fs_net_close(fs->net);
	fs->net = NULL;
}

static int net_present(const struct fs *fs)
{
	return fs->net != NULL;
}

/* May the caller use the remote that ino lies in (net/ is open to all)? */
static int net_may(struct fs *fs, fuse_req_t req, uint64_t ino)
{
	return fs_net_may(fs->net, ino, fuse_req_ctx(req)->uid);
}

/* The kernel must ask at each opendir if some remote lists per caller. */
static int net_per_caller(const struct fs *fs)
{
	return fs_net_per_caller(fs->net);
}

static int net_lookup(struct fs *fs, fuse_req_t req, uint64_t parent,
		      const char *name, uint64_t *ret_ino)
{
	int r = net_may(fs, req, parent);

	return r < 0 ? r : fs_net_lookup(fs->net, parent, name, ret_ino);
}

static int net_getattr(struct fs *fs, uint64_t ino, struct stat *sb,
		       double *ret_timeout)
{
	return fs_net_stat(fs->net, ino, sb);
}

/* Modes and times of a push are not kept; sizes are. */
static int net_setattr(struct fs *fs, fuse_req_t req, uint64_t ino,
		       const struct stat *attr, int to_set, void *h,
		       struct stat *ret, double *ret_timeout)
{
	int r = 0;

	if ((to_set & FUSE_SET_ATTR_SIZE) && h)
		r = fs_net_truncate(fs->net, h, (uint64_t)attr->st_size);
	else if (to_set & FUSE_SET_ATTR_SIZE)
		r = -EROFS;
	return r < 0 ? r : fs_net_stat(fs->net, ino, ret);
}

static int net_readlink(struct fs *fs, fuse_req_t req, uint64_t ino, char **ret)
{
	int r = net_may(fs, req, ino);

	return r < 0 ? r : fs_net_readlink(fs->net, ino, ret);
}

static int net_list(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add,
		    void *arg)
{
	int r = net_may(fs, req, ino);

	return r < 0 ? r : fs_net_list(fs->net, ino, add, arg);
}

static int net_mkdir(struct fs *fs, fuse_req_t req, uint64_t parent,
		     const char *name, uint32_t mode, uint64_t *ret_ino)
{
	int r = net_may(fs, req, parent);

	return r < 0 ? r : fs_net_mkdir(fs->net, parent, name, mode, ret_ino);
}

static int net_symlink(struct fs *fs, fuse_req_t req, uint64_t parent,
		       const char *name, const char *target, uint64_t *ret_ino)
{
	int r = net_may(fs, req, parent);

	return r < 0 ? r : fs_net_symlink(fs->net, parent, name, target, ret_ino);
}

static int net_open(struct fs *fs, fuse_req_t req, uint64_t ino,
		    struct fuse_file_info *fi, void **ret_h)
{
	struct fs_net_handle *h;
	int r = net_may(fs, req, ino);

	if (r == 0)
		r = fs_net_fopen(fs->net, ino, fi->flags, &h);
	if (r < 0)
		return r;
	fi->keep_cache = (fi->flags & O_ACCMODE) == O_RDONLY;
	*ret_h = h;
	return 0;
}

static int net_create(struct fs *fs, fuse_req_t req, uint64_t parent,
		      const char *name, uint32_t mode, struct fuse_file_info *fi,
		      uint64_t *ret_ino, void **ret_h)
{
	struct fs_net_handle *h;
	int r = net_may(fs, req, parent);

	if (r == 0)
		r = fs_net_create(fs->net, parent, name, mode, ret_ino, &h);
	if (r < 0)
		return r;
	fi->direct_io = 1;
	*ret_h = h;
	return 0;
}

static void net_read(struct fs *fs, fuse_req_t req, void *h, uint64_t ino,
		     size_t size, off_t off)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n = buf ? fs_net_read(fs->net, h, buf, size, (uint64_t)off) : -ENOMEM;

	if (n < 0)
		fs_reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static int net_write(struct fs *fs, fuse_req_t req, void *h, uint64_t ino,
		     const char *buf, size_t size, off_t off)
{
	return fs_net_write(fs->net, h, buf, size, (uint64_t)off);
}

static int net_flush(struct fs *fs, void *h)
{
	return fs_net_flush(fs->net, h);
}

static void net_release(struct fs *fs, void *h)
{
	fs_net_release(fs->net, h);
}

/* A slice copied through memory where the offsets do not allow sharing. */
#define NET_COPY_STEP (4u << 20)

/* A pull: net file -> store writer (models/). */
static ssize_t net_copy_out(struct fs *fs, void *h, uint64_t off_in, size_t len,
			    struct cas_writer *w, uint64_t off_out)
{
	size_t want = len < NET_COPY_STEP ? len : NET_COPY_STEP;
	ssize_t n = fs_net_copy_out(fs->net, h, off_in, len, w, off_out);
	char *buf;
	int r;

	if (n != 0)
		return n;
	buf = malloc(want ? want : 1);
	n = buf ? fs_net_read(fs->net, h, buf, want, off_in) : -ENOMEM;
	if (n > 0) {
		r = cas_writer_write(w, buf, (size_t)n, off_out);
		if (r < 0)
			n = r;
	}
	free(buf);
	return n;
}

/* A push: store file (models/) -> net file. */
static ssize_t net_copy_in(struct fs *fs, void *h, uint64_t off_out,
			   struct cas_file *src, uint64_t off_in, size_t len)
{
	size_t want = len < NET_COPY_STEP ? len : NET_COPY_STEP;
	ssize_t n = fs_net_copy_in(fs->net, h, off_out, src, off_in, len);
	struct cas_fault fault;
	char *buf;
	int r;

	if (n != 0)
		return n;
	buf = malloc(want ? want : 1);
	n = buf ? cas_file_read(fs->st, src, buf, want, off_in, &fault) : -ENOMEM;
	if (n > 0) {
		r = fs_net_write(fs->net, h, buf, (size_t)n, off_out);
		if (r < 0)
			n = r;
	}
	free(buf);
	return n;
}

const struct fs_subtree_ops fs_net_ops = {
	.start = net_start,
	.stop = net_stop,
	.present = net_present,
	.lookup = net_lookup,
	.getattr = net_getattr,
	.setattr = net_setattr,
	.readlink = net_readlink,
	.list = net_list,
	.per_caller = net_per_caller,
	.mkdir = net_mkdir,
	.symlink = net_symlink,
	.open = net_open,
	.create = net_create,
	.read = net_read,
	.write = net_write,
	.flush = net_flush,
	.fsync = net_flush,
	.release = net_release,
	.copy_out = net_copy_out,
	.copy_in = net_copy_in,
};
