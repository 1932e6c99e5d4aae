/*
 * net.c - /llm/net: remotes, repositories, tags and model files.
 *
 * Nodes are made as the kernel looks names up and live as long as the
 * daemon (a node is small; what it stands for is re-read from the registry
 * when older than NET_TTL).  A tag's model (struct ntag) is resolved once
 * per NET_TTL and shared by the handles open on it.  Network calls run
 * without n->lock held.
 */
#include <errno.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "backend/store/chunker.h"
#include "backend/registry/layout.h"
#include "backend/registry/oci.h"
#include "backend/registry/smipnet.h"
#include "fs/net.h"

#define NET_TTL_NS (10 * 1000000000LL)
#define SMALL_BLOB (16u << 20)   /* foreign files this small are fetched whole */
#define READ_AHEAD (64u << 20)   /* SMIP chunks fetched ahead of a sequential reader */
#define READ_AHEAD_MIN (4u << 20) /* ... once it has read this much in order */
#define XFER_KEEP 32             /* finished transfers listed */
#define ERR_LEN 512

enum { N_ROOT, N_DIR, N_TAG, N_MDIR, N_FILE, N_LINK, N_SMIPDIR, N_SMIPFILE };
enum { SF_MANIFEST, SF_OCI, SF_INFO };
static const char *const smip_files[] = { "manifest.json", "oci-manifest.json", "info" };

/* One entry of a model: a file of its SMIP manifest, layout or push. */
struct tent {
	char *path;
	uint32_t mode;
	uint64_t size;
	long idx; /* into m->files, l->files or pf; -1 for implied folders */
};

/* A file or folder of a push, held in the store as an orphan inode. */
struct pfile {
	char *path;
	uint32_t mode;
	uint64_t ino;           /* 0 for folders */
	struct cas_writer *w;
	unsigned opens;
};

struct ntag {
	unsigned refs;
	int remote;
	char *repo, *tag;
	int64_t at;
	char digest[OCI_DIGEST_LEN];
	char *manifest, *config;
	size_t mlen, clen;
	struct layout *l;
	struct smip_model *m;
	struct tent *ents;
	size_t nents;
	int pending;            /* a push being written */
	struct pfile *pf;
	size_t npf;
	/*
	 * Tar layers pulled member by member are fetched once, checked, and
	 * kept as orphan inodes of the store while the tag is resolved.
	 */
	struct lcache {
		char digest[OCI_DIGEST_LEN];
		uint64_t ino;
	} *lc;
	size_t nlc;
	pthread_mutex_t plock;  /* the push (pf, writers, uploads) and lc */
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

struct xfer {
	char what[8];
	char *name;
	uint64_t total;
	_Atomic uint64_t done;
	int64_t start, end;
	int state;            /* 0 running, 1 done, 2 failed */
	char err[ERR_LEN];
	struct xfer *next;
};

struct fs_net {
	struct fs *fs;
	struct oci_remote *cfg;
	size_t ncfg;
	struct nremote *r;
	pthread_mutex_t lock;  /* nodes, listings, tags, transfers */
	struct nnode **nodes;
	size_t nnodes, capnodes;
	struct xfer *xfers;
	time_t started;
};

struct fs_net_handle {
	struct nnode *node;
	struct ntag *tag;
	long idx;             /* into m->files / l->files / pf */
	char *text;           /* .smip files, small foreign files */
	size_t len;
	int has_text;
	uint8_t *chunk;       /* the last chunk decoded */
	long chunk_at;
	uint64_t next_off;    /* sequential reader detection: where the last */
	uint64_t streak;      /* read ended, and how long the run is */
	uint64_t have_from, have_to; /* the last span made sure of (SMIP) */
	struct xfer *x;
	int writable;
	pthread_mutex_t lock; /* the kernel reads ahead on several threads */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- transfers ---------------------------------------------------------- */

static struct xfer *xfer_start(struct fs_net *n, const char *what,
			       const struct ntag *t, const char *path,
			       uint64_t total)
{
	struct xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	snprintf(x->what, sizeof(x->what), "%s", what);
	if (asprintf(&x->name, "%s/%s:%s%s%s", n->r[t->remote].cfg->name, t->repo,
		     t->tag, path ? "/" : "", path ? path : "") < 0) {
		free(x);
		return NULL;
	}
	x->total = total;
	x->start = now_ns();
	pthread_mutex_lock(&n->lock);
	x->next = n->xfers;
	n->xfers = x;
	pthread_mutex_unlock(&n->lock);
	return x;
}

static void xfer_end(struct fs_net *n, struct xfer *x, int r, const char *err)
{
	struct xfer **p;
	int kept = 0;

	if (!x)
		return;
	pthread_mutex_lock(&n->lock);
	x->end = now_ns();
	x->state = r < 0 ? 2 : 1;
	if (r < 0)
		snprintf(x->err, sizeof(x->err), "%s", err && *err ? err : strerror(-r));
	/* Keep the newest finished ones. */
	for (p = &n->xfers; *p;) {
		struct xfer *y = *p;

		if (y->state && ++kept > XFER_KEEP) {
			*p = y->next;
			free(y->name);
			free(y);
			continue;
		}
		p = &y->next;
	}
	pthread_mutex_unlock(&n->lock);
}

static void human(uint64_t b, char *out, size_t len)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

int fs_net_transfers(struct fs_net *n, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int64_t now = now_ns();
	struct xfer *x;

	if (!f)
		return -ENOMEM;
	fprintf(f, "# kind name done/total-bytes (human) rate eta state\n");
	pthread_mutex_lock(&n->lock);
	for (x = n->xfers; x; x = x->next) {
		uint64_t done = atomic_load(&x->done);
		double s = (double)((x->state ? x->end : now) - x->start) / 1e9;
		double rate = s > 0 ? (double)done / s : 0;
		char d[32], t[32], rt[32], eta[32] = "-";

		human(done, d, sizeof(d));
		human(x->total, t, sizeof(t));
		human((uint64_t)rate, rt, sizeof(rt));
		if (!x->state && rate > 0 && x->total > done)
			snprintf(eta, sizeof(eta), "%.0fs", (double)(x->total - done) / rate);
		fprintf(f, "%s %s %llu/%llu (%s/%s) %s/s %s %s%s%s\n", x->what, x->name,
			(unsigned long long)done, (unsigned long long)x->total, d, t, rt, eta, x->state == 0 ? "running" : x->state == 1 ? "done" : "failed",
			x->state == 2 ? ": " : "", x->state == 2 ? x->err : "");
	}
	pthread_mutex_unlock(&n->lock);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* ---- nodes --------------------------------------------------------------- */

int fs_net_owns(uint64_t ino)
{
	return ino == NET_INO || (ino & NET_BIT);
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
	for (i = 0; i < t->npf; i++) {
		if (t->pf[i].w)
			cas_writer_free(t->pf[i].w);
		if (t->pf[i].ino)
			cas_release_orphan(n->fs->st, t->pf[i].ino);
		free(t->pf[i].path);
	}
	for (i = 0; i < t->nlc; i++)
		cas_release_orphan(n->fs->st, t->lc[i].ino);
	free(t->lc);
	free(t->pf);
	free(t->ents);
	free(t->manifest);
	free(t->config);
	layout_free(t->l);
	smip_model_free(t->m);
	free(t->repo);
	free(t->tag);
	pthread_mutex_destroy(&t->plock);
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

struct tarfetch {
	struct oci_client *c;
	const char *repo;
};

static int tar_fetch(void *arg, const char *digest, uint64_t off, size_t len,
		     void *buf)
{
	struct tarfetch *tf = arg;
	struct oci_range r = { .digest = digest, .off = off, .len = len, .buf = buf };

	return oci_fetch_ranges(tf->c, tf->repo, &r, 1, NULL, NULL, NULL, NULL, 0);
}

/* Reads repo:tag from the registry into a new ntag. */
static int tag_resolve(struct fs_net *n, int remote, const char *repo,
		       const char *tag, struct ntag **ret, char *err, size_t errlen)
{
	struct oci_client *c = n->r[remote].c;
	struct ntag *t = calloc(1, sizeof(*t));
	struct tarfetch tf = { c, repo };
	char type[256];
	size_t i;
	int r;

	if (!t)
		return -ENOMEM;
	t->refs = 1;
	t->remote = remote;
	pthread_mutex_init(&t->plock, NULL);
	t->repo = strdup(repo);
	t->tag = strdup(tag);
	t->at = now_ns();
	if (!t->repo || !t->tag) {
		r = -ENOMEM;
		goto out;
	}
	r = oci_manifest_get(c, repo, tag, &t->manifest, &t->mlen, type, sizeof(type),
			     t->digest, err, errlen);
	if (r == 0)
		r = layout_parse(t->manifest, t->mlen, tar_fetch, &tf, &t->l, err, errlen);
	if (r < 0)
		goto out;
	if (t->l->kind == LAYOUT_SMIP) {
		void *cfg = NULL;

		r = oci_blob_get(c, repo, t->l->config.digest, 512u << 20, &cfg, &t->clen,
				 err, errlen);
		t->config = cfg;
		if (r == 0)
			r = smip_model_parse(t->config, t->clen, &t->m, err, errlen);
		/* The index must name the manifest's own layers. */
		for (i = 0; r == 0 && i < t->m->npacks; i++) {
			size_t k;

			for (k = 0; k < t->l->nlayers; k++)
				if (!strcmp(t->l->layers[k].digest, t->m->packs[i].digest) &&
				    t->l->layers[k].size == t->m->packs[i].size)
					break;
			if (k == t->l->nlayers)
				r = -EINVAL;
		}
		if (r == -EINVAL && err && !*err)
			snprintf(err, errlen, "the SMIP index names a blob the manifest lacks");
		for (i = 0; r == 0 && i < t->m->nfiles; i++) {
			const struct smip_rfile *f = &t->m->files[i];

			r = ent_add_path(t, f->path, f->mode, f->size, (long)i);
		}
	} else {
		for (i = 0; r == 0 && i < t->l->nfiles; i++) {
			const struct layout_file *f = &t->l->files[i];

			r = ent_add_path(t, f->path, S_IFREG | (f->mode & 0555), f->size,
					 (long)i);
		}
	}
out:
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
	if (t && (t->pending || now_ns() - t->at < NET_TTL_NS)) {
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
	if (old && !old->pending && !strcmp(old->digest, t->digest)) {
		pthread_mutex_lock(&old->plock);
		t->lc = old->lc;
		t->nlc = old->nlc;
		old->lc = NULL;
		old->nlc = 0;
		pthread_mutex_unlock(&old->plock);
	}
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
	if (nr->repos && now_ns() - nr->listed < NET_TTL_NS)
		goto copy;
	pthread_mutex_unlock(&n->lock);
	r = oci_catalog(nr->c, &v, &nv, err, sizeof(err));
	if (r < 0) {
		if (!nr->cfg->nrepositories)
			fs_log(n->fs->log, LOG_WARNING, "net/%s: no catalog: %s",
			       nr->cfg->name, *err ? err : strerror(-r));
		v = NULL;
		nv = 0;
	}
	for (i = 0; i < nr->cfg->nrepositories; i++) {
		char **t;

		if (strv_has(v, nv, nr->cfg->repositories[i]))
			continue;
		t = realloc(v, (nv + 1) * sizeof(*t));
		if (!t || !(t[nv] = strdup(nr->cfg->repositories[i]))) {
			oci_strv_free(t ? t : v, nv);
			return -ENOMEM;
		}
		v = t;
		nv++;
	}
	pthread_mutex_lock(&n->lock);
	oci_strv_free(nr->repos, nr->nrepos);
	nr->repos = v;
	nr->nrepos = nv;
	nr->listed = now_ns();
copy:
	*ret = calloc(nr->nrepos + 1, sizeof(char *));
	for (i = 0; *ret && i < nr->nrepos; i++)
		(*ret)[i] = strdup(nr->repos[i]);
	*ret_n = *ret ? nr->nrepos : 0;
	pthread_mutex_unlock(&n->lock);
	return *ret ? 0 : -ENOMEM;
}

/* Names under a repository-path folder: next path parts, then tags. */
static int dir_listing(struct fs_net *n, struct nnode *d)
{
	char **repos = NULL, **tags = NULL, **names;
	uint32_t *modes;
	size_t nrepos = 0, ntags = 0, nn = 0, i, plen = strlen(d->prefix);
	int r;

	pthread_mutex_lock(&n->lock);
	if (d->names && now_ns() - d->listed < NET_TTL_NS) {
		pthread_mutex_unlock(&n->lock);
		return 0;
	}
	pthread_mutex_unlock(&n->lock);
	r = remote_repos(n, d->remote, &repos, &nrepos);
	if (r < 0)
		return r;
	if (plen && oci_tags(n->r[d->remote].c, d->prefix, &tags, &ntags, NULL, 0) < 0) {
		tags = NULL;
		ntags = 0;
	}
	names = calloc(nrepos + ntags + 1, sizeof(*names));
	modes = calloc(nrepos + ntags + 1, sizeof(*modes));
	if (!names || !modes) {
		r = -ENOMEM;
		goto out;
	}
	/* Tags are marked with S_ISVTX here, repository path parts are not. */
	for (i = 0; i < ntags; i++) {
		names[nn] = strdup(tags[i]);
		modes[nn++] = S_IFDIR | S_ISVTX | 0755;
	}
	for (i = 0; i < nrepos; i++) {
		const char *rest = repos[i];
		char *part;
		size_t k;

		if (plen && (strncmp(rest, d->prefix, plen) || rest[plen] != '/'))
			continue;
		rest += plen ? plen + 1 : 0;
		part = strndup(rest, strcspn(rest, "/"));
		if (!part) {
			r = -ENOMEM;
			goto out;
		}
		for (k = 0; k < nn && strcmp(names[k], part); k++)
			;
		if (k < nn || !*part) {
			free(part);
			continue;
		}
		names[nn] = part;
		modes[nn++] = S_IFDIR | 0755;
	}
	pthread_mutex_lock(&n->lock);
	oci_strv_free(d->names, d->nnames);
	free(d->modes);
	d->names = names;
	d->modes = modes;
	d->nnames = nn;
	d->listed = now_ns();
	pthread_mutex_unlock(&n->lock);
	names = NULL;
	modes = NULL;
out:
	oci_strv_free(names, nn);
	free(modes);
	oci_strv_free(repos, nrepos);
	oci_strv_free(tags, ntags);
	return r;
}

/* 1 if the folder's path is a repository with tags. */
static int is_repo(struct fs_net *n, struct nnode *d)
{
	char **tags = NULL;
	size_t ntags = 0;
	int r;

	if (!*d->prefix)
		return 0;
	r = oci_tags(n->r[d->remote].c, d->prefix, &tags, &ntags, NULL, 0);
	oci_strv_free(tags, ntags);
	return r == 0;
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
		   (k->tag->pending || now_ns() - k->tag->at < NET_TTL_NS)) ||
		  (k->kind == N_DIR && (k->made || now_ns() - k->listed < NET_TTL_NS)))) {
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
		stale = i == d->nnames && !again && now_ns() - d->listed > NET_TTL_NS / 10;
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
	if (kind < 0 && (i < d->nnames || oci_repo_valid(full))) {
		char **tags = NULL;
		size_t ntags = 0;

		if (i < d->nnames ||
		    oci_tags(n->r[d->remote].c, full, &tags, &ntags, NULL, 0) == 0)
			kind = N_DIR;
		oci_strv_free(tags, ntags);
	}
	if (kind == N_DIR) {
		pthread_mutex_lock(&n->lock);
		k = kid_get(n, d, name, N_DIR);
		if (k && !k->prefix)
			k->prefix = strdup(full);
		if (k && !k->names)
			k->listed = now_ns();
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
	if (p->kind == N_TAG && strcmp(name, ".smip") == 0 && !t->pending) {
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
		fill(n, ino, S_IFDIR | (x->tag && x->tag->pending ? 0755 : 0555), 0, sb);
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
		if (t->pending && idx >= 0) {
			struct cat_attr a;

			pthread_mutex_lock(&t->plock);
			if (t->pf[idx].w)
				sb->st_size = (off_t)cas_writer_size(t->pf[idx].w);
			else if (cas_getattr(n->fs->st, t->pf[idx].ino, &a) == 0)
				sb->st_size = (off_t)a.size;
			pthread_mutex_unlock(&t->plock);
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
			      x->kids[i]->tag->pending) || x->kids[i]->made) &&
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
	if (idx >= 0 && t->m && t->m->files[idx].target) {
		*ret = strdup(t->m->files[idx].target);
		r = *ret ? 0 : -ENOMEM;
	} else if (idx >= 0 && t->pending) {
		uint64_t lino;

		pthread_mutex_lock(&t->plock);
		lino = t->pf[idx].ino;
		pthread_mutex_unlock(&t->plock);
		r = cas_readlink(n->fs->st, lino, ret);
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
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f;

	if (sf == SF_MANIFEST || sf == SF_OCI) {
		const char *s = sf == SF_MANIFEST && t->config ? t->config : t->manifest;
		size_t l = sf == SF_MANIFEST && t->config ? t->clen : t->mlen;

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
		n->r[t->remote].cfg->name, t->repo, t->tag, t->digest,
		kinds[t->l->kind]);
	if (t->m)
		fprintf(f, "chunks: %zu in %zu pack blobs\n", t->m->nchunks, t->m->npacks);
	fprintf(f, "files:\n");
	for (i = 0; i < t->nents; i++) {
		const struct tent *e = &t->ents[i];

		if (!S_ISREG(e->mode))
			continue;
		fprintf(f, "  %s %llu", e->path, (unsigned long long)e->size);
		if (!t->m && e->idx >= 0) {
			const struct layout_file *lf = &t->l->files[e->idx];

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

/* ---- reading ------------------------------------------------------------- */

static void handle_free(struct fs_net *n, struct fs_net_handle *h)
{
	pthread_mutex_destroy(&h->lock);
	tag_put(n, h->tag);
	free(h->text);
	free(h->chunk);
	free(h);
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
	pthread_mutex_lock(&n->lock);
	x = node_of(n, ino);
	pthread_mutex_unlock(&n->lock);
	r = -EISDIR;
	if (!x || (x->kind != N_FILE && x->kind != N_SMIPFILE))
		goto fail;
	h->node = x;
	h->chunk_at = -1;
	r = tag_get(n, tag_node(x), &h->tag);
	if (r < 0)
		goto fail;
	if (x->kind == N_SMIPFILE) {
		r = acc == O_RDONLY ? smip_text(n, h->tag, x->sf, &h->text, &h->len)
				    : -EACCES;
		h->has_text = 1;
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
	if (h->tag->pending) {
		struct pfile *pf;

		pthread_mutex_lock(&h->tag->plock);
		pf = &h->tag->pf[h->idx];
		r = 0;
		if (acc != O_RDONLY && !pf->w)
			r = cas_writer_open(n->fs->st, pf->ino, !!(flags & O_TRUNC), &pf->w);
		if (r == 0)
			pf->opens++;
		pthread_mutex_unlock(&h->tag->plock);
		h->writable = acc != O_RDONLY;
		if (r < 0)
			goto fail;
		*ret = h;
		return 0;
	}
	r = -EROFS;
	if (acc != O_RDONLY)
		goto fail;
	*ret = h;
	return 0;
fail:
	handle_free(n, h);
	return r;
}

static void log_net(struct fs_net *n, struct fs_net_handle *h, const char *err,
		    int r)
{
	fs_log(n->fs->log, LOG_ERR, "net/%s/%s/%s/%s: %s", n->r[h->tag->remote].cfg->name,
	       h->tag->repo, h->tag->tag, h->node->path, *err ? err : strerror(-r));
}

/*
 * Fetches SMIP chunks [i, j) of the file unless the store has them; the
 * transfer (what: read or pull) counts the bytes of the records fetched.
 */
static int smip_need(struct fs_net *n, struct fs_net_handle *h, size_t i,
		     size_t j, const char *what)
{
	const struct smip_model *m = h->tag->m;
	const struct smip_rfile *f = &m->files[h->idx];
	char err[ERR_LEN] = "";
	uint64_t miss = 0;
	size_t k;
	int r;

	for (k = i; k < j; k++) {
		r = cas_chunk_has(n->fs->st, &m->chunks[f->chunks[k]].id);
		if (r < 0)
			return r;
		if (r == 0)
			miss += m->chunks[f->chunks[k]].rlen;
	}
	if (!miss)
		return 0;
	if (h->x && strcmp(h->x->what, what)) {
		xfer_end(n, h->x, 0, NULL);
		h->x = NULL;
	}
	if (!h->x)
		h->x = xfer_start(n, what, h->tag, h->node->path, 0);
	if (h->x)
		h->x->total += miss;
	r = smip_fetch(n->fs->st, n->r[h->tag->remote].c, h->tag->repo, m,
		       f->chunks + i, j - i, h->x ? &h->x->done : NULL, err,
		       sizeof(err));
	if (r < 0) {
		log_net(n, h, err, r);
		if (h->x) {
			xfer_end(n, h->x, r, err);
			h->x = NULL;
		}
		return -EIO;
	}
	return 0;
}

static size_t chunk_at(const struct smip_rfile *f, uint64_t off)
{
	size_t lo = 0, hi = f->nchunks;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (f->offs[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static ssize_t read_smip(struct fs_net *n, struct fs_net_handle *h, uint8_t *buf,
			 size_t size, uint64_t off)
{
	const struct smip_rfile *f = &h->tag->m->files[h->idx];
	size_t i, j, done = 0;
	uint64_t end;
	int r;

	if (off >= f->size || !size)
		return 0;
	if (size > f->size - off)
		size = (size_t)(f->size - off);
	i = chunk_at(f, off);
	/*
	 * A reader that has gone READ_AHEAD_MIN in order gets chunks fetched
	 * ahead, as much as it has read in order, up to READ_AHEAD; random
	 * readers (and the kernel's splitting of one large read) get none.
	 * Chunks below have_to are known to be in the store already.
	 */
	h->streak = off == h->next_off ? h->streak + size : 0;
	end = off + size;
	if (end > h->have_to || off < h->have_from) {
		if (h->streak >= READ_AHEAD_MIN)
			end += h->streak < READ_AHEAD ? h->streak : READ_AHEAD;
		for (j = i; j < f->nchunks && f->offs[j] < end; j++)
			;
		r = smip_need(n, h, i, j, "read");
		if (r < 0)
			return r;
		h->have_from = f->offs[i];
		h->have_to = f->offs[j];
	}
	h->next_off = off + size;
	while (done < size) {
		uint64_t at = off + done;
		size_t k = chunk_at(f, at), take;
		uint64_t in = at - f->offs[k];

		if (h->chunk_at != (long)k) {
			ssize_t got;

			if (!h->chunk && !(h->chunk = malloc(CDC_MAX)))
				return -ENOMEM;
			got = cas_chunk_read(n->fs->st, &h->tag->m->chunks[f->chunks[k]].id,
					     h->chunk);
			if (got < 0 && got != -EIO)
				return got;
			if (got == -EIO || (uint64_t)got != f->offs[k + 1] - f->offs[k]) {
				log_net(n, h, "a fetched chunk is damaged in the store", -EIO);
				return -EIO;
			}
			h->chunk_at = (long)k;
		}
		take = (size_t)(f->offs[k + 1] - at);
		take = take < size - done ? take : size - done;
		memcpy(buf + done, h->chunk + in, take);
		done += take;
	}
	return (ssize_t)done;
}

static ssize_t read_layer(struct fs_net *n, struct fs_net_handle *h, uint8_t *buf,
			  size_t size, uint64_t off)
{
	const struct layout_file *f = &h->tag->l->files[h->idx];
	struct oci_client *c = n->r[h->tag->remote].c;
	char err[ERR_LEN] = "";
	int r;

	if (off >= f->size || !size)
		return 0;
	if (size > f->size - off)
		size = (size_t)(f->size - off);
	/* Small whole-blob files are fetched once and checked against the digest. */
	if (f->whole && f->size <= SMALL_BLOB) {
		if (!h->has_text) {
			void *data = NULL;
			size_t len = 0;

			r = oci_blob_get(c, h->tag->repo, f->digest, SMALL_BLOB, &data, &len,
					 err, sizeof(err));
			if (r < 0) {
				log_net(n, h, err, r);
				return -EIO;
			}
			if (len != f->size) {
				snprintf(err, sizeof(err), "the blob has %zu bytes, the manifest says %llu",
					 len, (unsigned long long)f->size);
				free(data);
				log_net(n, h, err, -EIO);
				return -EIO;
			}
			h->text = data;
			h->len = len;
			h->has_text = 1;
		}
		if (off >= h->len)
			return 0;
		size = size < h->len - off ? size : (size_t)(h->len - off);
		memcpy(buf, h->text + off, size);
		return (ssize_t)size;
	}
	if (!f->whole) {
		/* A tar layer pulled before is read from its checked local copy. */
		uint64_t ino = 0;
		size_t i;

		pthread_mutex_lock(&h->tag->plock);
		for (i = 0; i < h->tag->nlc; i++)
			if (!strcmp(h->tag->lc[i].digest, f->digest))
				ino = h->tag->lc[i].ino;
		pthread_mutex_unlock(&h->tag->plock);
		if (ino) {
			struct cas_file *cf = NULL;
			struct cas_fault fault;
			ssize_t got = cas_file_open(n->fs->st, ino, &cf);

			if (got == 0)
				got = cas_file_read(n->fs->st, cf, buf, size, f->off + off, &fault);
			cas_file_free(cf);
			return got < 0 ? -EIO : got;
		}
	}
	{
		struct oci_range rg = { .digest = f->digest, .off = f->off + off,
					.len = size, .buf = buf, .size = f->blob_size };

		if (!h->x)
			h->x = xfer_start(n, "read", h->tag, h->node->path, f->size);
		r = oci_fetch_ranges(c, h->tag->repo, &rg, 1, NULL, NULL,
				     h->x ? &h->x->done : NULL, err, sizeof(err));
	}
	if (r < 0) {
		log_net(n, h, err, r);
		return -EIO;
	}
	return (ssize_t)size;
}

ssize_t fs_net_read(struct fs_net *n, struct fs_net_handle *h, void *buf,
		    size_t size, uint64_t off)
{
	if (h->node->kind == N_SMIPFILE) {
		if (off >= h->len)
			return 0;
		size = size < h->len - off ? size : (size_t)(h->len - off);
		memcpy(buf, h->text + off, size);
		return (ssize_t)size;
	}
	if (h->tag->pending) {
		struct cas_fault fault;
		struct pfile *pf;
		struct cas_file *f;
		ssize_t r;

		pthread_mutex_lock(&h->tag->plock);
		pf = &h->tag->pf[h->idx];
		if (pf->w && cas_writer_dirty(pf->w)) {
			r = cas_writer_read(pf->w, buf, size, off, &fault);
		} else {
			r = cas_file_open(n->fs->st, pf->ino, &f);
			if (r == 0) {
				r = cas_file_read(n->fs->st, f, buf, size, off, &fault);
				cas_file_free(f);
			}
		}
		pthread_mutex_unlock(&h->tag->plock);
		return r;
	}
	{
		ssize_t r;

		pthread_mutex_lock(&h->lock);
		r = h->tag->m ? read_smip(n, h, buf, size, off)
			      : read_layer(n, h, buf, size, off);
		pthread_mutex_unlock(&h->lock);
		return r;
	}
}

/* ---- pulls: copy_file_range into models/ --------------------------------- */

struct sink {
	struct cas_writer *w;
	uint64_t skip, left, pos, seen;
};

static int sink_write(void *arg, const void *buf, size_t len)
{
	struct sink *s = arg;
	const uint8_t *p = buf;
	int r;

	s->seen += len;
	if (s->skip) {
		size_t k = len < s->skip ? len : (size_t)s->skip;

		s->skip -= k;
		p += k;
		len -= k;
	}
	if (len > s->left)
		len = (size_t)s->left;
	if (!len)
		return 0;
	r = cas_writer_write(s->w, p, len, s->pos);
	s->pos += len;
	s->left -= len;
	return r;
}

/*
 * A new inode of the store that no folder names (an orphan, freed by
 * cas_release_orphan() or at the next start): the bytes of a push or the
 * local copy of a layer.
 */
static int orphan_new(struct fs_net *n, uint32_t mode, const char *target,
		      uint64_t *ret_ino)
{
	struct cat_attr a;
	char tmp[64];
	int r;

	snprintf(tmp, sizeof(tmp), ".llmfs-net-%d-%lx", getpid(), (long)random());
	r = cas_mknode(n->fs->st, CAT_ROOT_INO, tmp, mode, n->fs->uid, n->fs->gid,
		       target, &a);
	return r < 0 ? r : cas_unlink(n->fs->st, CAT_ROOT_INO, tmp, 1, ret_ino);
}

/*
 * The local copy of a tar layer (an orphan inode of the store): fetched
 * whole the first time a member is pulled, committed only if its SHA-256
 * and size are the manifest's.  Returns 0 and the inode, or -EIO.
 */
static int layer_local(struct fs_net *n, struct fs_net_handle *h,
		       const struct layout_file *f, uint64_t *ret_ino)
{
	struct ntag *t = h->tag;
	struct cas_writer *w = NULL;
	char err[ERR_LEN] = "";
	uint64_t ino = 0;
	struct lcache *v;
	size_t i;
	int r;

	pthread_mutex_lock(&t->plock);
	for (i = 0; i < t->nlc; i++)
		if (!strcmp(t->lc[i].digest, f->digest)) {
			*ret_ino = t->lc[i].ino;
			pthread_mutex_unlock(&t->plock);
			return 0;
		}
	r = orphan_new(n, S_IFREG | 0600, NULL, &ino);
	if (r == 0)
		r = cas_writer_open(n->fs->st, ino, 1, &w);
	if (r == 0) {
		struct sink sk = { w, 0, f->blob_size, 0, 0 };

		h->x = xfer_start(n, "pull", t, h->node->path, f->blob_size);
		r = oci_blob_stream(n->r[t->remote].c, t->repo, f->digest, 0, UINT64_MAX,
				    sink_write, &sk, h->x ? &h->x->done : NULL, err,
				    sizeof(err));
		if (r == 0 && sk.seen != f->blob_size) {
			snprintf(err, sizeof(err), "the blob has %llu bytes, the manifest says %llu",
				 (unsigned long long)sk.seen, (unsigned long long)f->blob_size);
			r = -EIO;
		}
		if (r == 0)
			r = cas_writer_commit(w);
		xfer_end(n, h->x, r, err);
		h->x = NULL;
	}
	if (w)
		cas_writer_free(w);
	v = r == 0 ? realloc(t->lc, (t->nlc + 1) * sizeof(*v)) : NULL;
	if (v) {
		t->lc = v;
		snprintf(v[t->nlc].digest, sizeof(v[t->nlc].digest), "%s", f->digest);
		v[t->nlc++].ino = ino;
		*ret_ino = ino;
	} else if (ino) {
		cas_release_orphan(n->fs->st, ino);
	}
	pthread_mutex_unlock(&t->plock);
	if (r < 0) {
		log_net(n, h, err, r);
		return -EIO;
	}
	return v ? 0 : -ENOMEM;
}

/* A member of a tar layer: copied out of the layer's local copy. */
static ssize_t copy_member(struct fs_net *n, struct fs_net_handle *h,
			   const struct layout_file *f, struct cas_writer *w)
{
	const size_t step = 4u << 20;
	struct cas_file *cf = NULL;
	struct cas_fault fault;
	uint64_t ino, done = 0;
	uint8_t *buf = NULL;
	int r = layer_local(n, h, f, &ino);

	if (r == 0)
		r = cas_file_open(n->fs->st, ino, &cf);
	if (r == 0 && !(buf = malloc(step)))
		r = -ENOMEM;
	while (r == 0 && done < f->size) {
		size_t want = f->size - done < step ? (size_t)(f->size - done) : step;
		ssize_t got = cas_file_read(n->fs->st, cf, buf, want, f->off + done, &fault);

		r = got == (ssize_t)want ? cas_writer_write(w, buf, want, done)
					 : (got < 0 ? (int)got : -EIO);
		done += want;
	}
	free(buf);
	cas_file_free(cf);
	if (r < 0) {
		cas_writer_abort(w, -EIO);
		return r == -ENOMEM ? r : -EIO;
	}
	return (ssize_t)f->size;
}

static ssize_t copy_out(struct fs_net *n, struct fs_net_handle *h,
			uint64_t off_in, size_t len, struct cas_writer *w,
			uint64_t off_out)
{
	struct cas_id *ids = NULL;
	uint32_t *lens = NULL;
	char err[ERR_LEN] = "";
	size_t i, j, k;
	int r;

	if (h->node->kind != N_FILE || h->tag->pending)
		return 0;
	if (!h->tag->m) {
		/* A whole layer: streamed, and committed only if its digest matches. */
		const struct layout_file *f = &h->tag->l->files[h->idx];
		struct sink s = { w, f->off, f->size, off_out, 0 };

		if (off_in || off_out || len < f->size || cas_writer_size(w))
			return 0;
		if (!f->whole)
			return copy_member(n, h, f, w);
		h->x = xfer_start(n, "pull", h->tag, h->node->path, f->size);
		r = oci_blob_stream(n->r[h->tag->remote].c, h->tag->repo, f->digest, 0,
				    UINT64_MAX, sink_write, &s,
				    h->x ? &h->x->done : NULL, err, sizeof(err));
		if (r == 0 && s.seen != f->blob_size) {
			snprintf(err, sizeof(err), "the blob has %llu bytes, the manifest says %llu",
				 (unsigned long long)s.seen, (unsigned long long)f->blob_size);
			r = -EIO;
		}
		xfer_end(n, h->x, r, err);
		h->x = NULL;
		if (r < 0) {
			log_net(n, h, err, r);
			cas_writer_abort(w, -EIO);
			return -EIO;
		}
		return (ssize_t)f->size;
	}
	{
		const struct smip_rfile *f = &h->tag->m->files[h->idx];

		if (off_in > f->size)
			return 0;
		i = chunk_at(f, off_in);
		if (f->offs[i] != off_in || i >= f->nchunks)
			return 0;
		for (j = i; j < f->nchunks && f->offs[j + 1] - off_in <= len; j++)
			;
		if (j == i)
			return 0;
		r = smip_need(n, h, i, j, "pull");
		if (r < 0)
			return r;
		ids = malloc((j - i) * sizeof(*ids));
		lens = malloc((j - i) * sizeof(*lens));
		r = -ENOMEM;
		if (ids && lens) {
			for (k = i; k < j; k++) {
				ids[k - i] = h->tag->m->chunks[f->chunks[k]].id;
				lens[k - i] = (uint32_t)(f->offs[k + 1] - f->offs[k]);
			}
			r = cas_writer_append(w, ids, lens, j - i,
					      i == 0 && j == f->nchunks && f->has_sha ? f->sha : NULL);
		}
		free(ids);
		free(lens);
		if (h->x) {
			xfer_end(n, h->x, r == -EAGAIN ? 0 : r, NULL);
			h->x = NULL;
		}
		if (r == -EAGAIN)
			return 0;
		return r < 0 ? r : (ssize_t)(f->offs[j] - off_in);
	}
}

ssize_t fs_net_copy_out(struct fs_net *n, struct fs_net_handle *h,
			uint64_t off_in, size_t len, struct cas_writer *w,
			uint64_t off_out)
{
	ssize_t r;

	pthread_mutex_lock(&h->lock);
	r = copy_out(n, h, off_in, len, w, off_out);
	pthread_mutex_unlock(&h->lock);
	return r;
}

/* ---- pushes -------------------------------------------------------------- */

/*
 * Adds an entry to a push in progress and its node under p; takes *path
 * (the entry's path in the model) on success.
 */
static int pf_add(struct fs_net *n, struct ntag *t, struct nnode *p,
		  const char *name, char **path, uint32_t mode, uint64_t ino,
		  uint64_t size, uint64_t *ret_ino)
{
	struct nnode *k;
	int r;

	pthread_mutex_lock(&t->plock);
	pthread_mutex_lock(&n->lock);
	r = ent_find(t, *path) ? -EEXIST : 0;
	if (r == 0) {
		struct pfile *v = realloc(t->pf, (t->npf + 1) * sizeof(*v));

		r = -ENOMEM;
		if (v) {
			t->pf = v;
			v[t->npf] = (struct pfile){ .path = strdup(*path), .mode = mode,
						    .ino = ino };
			if (v[t->npf].path)
				r = ent_add(t, *path, mode, size, (long)t->npf++);
		}
	}
	if (r == 0) {
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
	}
	pthread_mutex_unlock(&n->lock);
	pthread_mutex_unlock(&t->plock);
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
	} else if (is_repo(n, p)) {
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
	t = calloc(1, sizeof(*t));
	if (!t)
		goto out;
	t->refs = 1;
	t->pending = 1;
	t->remote = p->remote;
	t->repo = repo;
	t->tag = tag;
	repo = tag = NULL;
	pthread_mutex_init(&t->plock, NULL);
	pthread_mutex_lock(&n->lock);
	k = kid_find(p, name);
	if (k && k->tag && k->tag->pending) {
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

static int push_locked(struct fs_net *n, struct ntag *t, size_t idx);

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
	pthread_mutex_lock(&t->plock);
	r = push_locked(n, t, t->npf - 1);
	pthread_mutex_unlock(&t->plock);
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
	uint64_t ino = 0;
	int r;

	pthread_mutex_lock(&n->lock);
	p = node_of(n, parent);
	pthread_mutex_unlock(&n->lock);
	if (!p || (p->kind != N_TAG && p->kind != N_MDIR))
		return p && p->kind == N_DIR ? -EPERM : -EROFS;
	r = tag_get(n, tag_node(p), &t);
	if (r < 0)
		return r;
	r = -EROFS;
	if (!t->pending)
		goto out;
	path = join(p->kind == N_TAG ? "" : p->path, name);
	r = -ENOMEM;
	if (!path)
		goto out;
	/* The bytes live in the store as an orphan inode until the push ends. */
	r = S_ISDIR(mode) ? 0 : orphan_new(n, mode, target, &ino);
	if (r < 0)
		goto out;
	r = pf_add(n, t, p, name, &path, mode, ino, target ? strlen(target) : 0,
		   ret_ino);
	if (r < 0 && ino)
		cas_release_orphan(n->fs->st, ino);
	else if (r == 0 && ret)
		r = fs_net_fopen(n, *ret_ino, O_WRONLY | O_TRUNC, ret);
out:
	free(path);
	tag_put(n, t);
	return r;
}

/*
 * The file of a push a handle writes, with the push's lock held (creating
 * another file may move the array): NULL, unlocked, if it writes none.
 */
static struct pfile *pf_lock(struct fs_net_handle *h)
{
	if (!h->tag || !h->tag->pending || !h->writable)
		return NULL;
	pthread_mutex_lock(&h->tag->plock);
	return &h->tag->pf[h->idx];
}

int fs_net_write(struct fs_net *n, struct fs_net_handle *h, const void *buf,
		 size_t size, uint64_t off)
{
	struct pfile *pf = pf_lock(h);
	int r;

	(void)n;
	if (!pf)
		return -EBADF;
	r = pf->w ? cas_writer_write(pf->w, buf, size, off) : -EBADF;
	pthread_mutex_unlock(&h->tag->plock);
	return r;
}

int fs_net_truncate(struct fs_net *n, struct fs_net_handle *h, uint64_t size)
{
	struct pfile *pf = pf_lock(h);
	int r;

	(void)n;
	if (!pf)
		return -EROFS;
	r = pf->w ? cas_writer_truncate(pf->w, size) : -EBADF;
	pthread_mutex_unlock(&h->tag->plock);
	return r;
}

ssize_t fs_net_copy_in(struct fs_net *n, struct fs_net_handle *h,
		       uint64_t off_out, struct cas_file *src, uint64_t off_in,
		       size_t len)
{
	struct pfile *pf = pf_lock(h);
	ssize_t r;

	(void)n;
	if (!pf)
		return -EBADF;
	r = pf->w ? cas_writer_share(pf->w, src, off_in, len, off_out) : -EBADF;
	pthread_mutex_unlock(&h->tag->plock);
	return r;
}

/* Commits file idx, then pushes every file of the tag.  plock held. */
static int push_locked(struct fs_net *n, struct ntag *t, size_t idx)
{
	struct pfile *pf = &t->pf[idx];
	struct smip_source src[16];
	struct ntag *held[16];
	size_t nsrc = 0;
	struct xfer *x;
	struct smip_entry *e = NULL;
	struct smip_push_stats stats;
	char err[ERR_LEN] = "";
	const char *name = strrchr(t->repo, '/');
	uint64_t total = 0;
	size_t i;
	int r = 0;

	if (pf->w && cas_writer_dirty(pf->w))
		r = cas_writer_commit(pf->w);
	if (r < 0) {
		fs_log(n->fs->log, LOG_ERR, "net/%s/%s:%s/%s: cannot store: %s",
		       n->r[t->remote].cfg->name, t->repo, t->tag, pf->path,
		       strerror(-r));
		return r;
	}
	e = calloc(t->npf + 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (i = 0; i < t->npf; i++) {
		struct cat_attr a;

		e[i].path = t->pf[i].path;
		e[i].ino = t->pf[i].ino;
		e[i].mode = t->pf[i].mode;
		if (e[i].ino && cas_getattr(n->fs->st, e[i].ino, &a) == 0)
			total += a.size;
	}
	/* Models of other repositories this daemon has read: blobs to mount. */
	pthread_mutex_lock(&n->lock);
	for (i = 0; i < n->nnodes; i++) {
		struct ntag *o = n->nodes[i]->tag;

		if (o && o->m && !o->pending && o->remote == t->remote &&
		    strcmp(o->repo, t->repo) && nsrc < 16) {
			o->refs++;
			held[nsrc] = o;
			src[nsrc].repo = o->repo;
			src[nsrc++].m = o->m;
		}
	}
	pthread_mutex_unlock(&n->lock);
	x = xfer_start(n, "push", t, NULL, total);
	if (n->r[t->remote].cfg->modelpack)
		r = smip_push_modelpack(n->fs->st, n->r[t->remote].c, t->repo, t->tag,
					name ? name + 1 : t->repo, e, t->npf,
					x ? &x->done : NULL, &stats, err, sizeof(err));
	else
		r = smip_push(n->fs->st, n->r[t->remote].c, t->repo, t->tag,
			      name ? name + 1 : t->repo, e, t->npf, src, nsrc,
			      x ? &x->done : NULL, &stats, err, sizeof(err));
	xfer_end(n, x, r, err);
	for (i = 0; i < nsrc; i++)
		tag_put(n, held[i]);
	free(e);
	if (r < 0) {
		fs_log(n->fs->log, LOG_ERR, "net/%s/%s:%s: push failed: %s",
		       n->r[t->remote].cfg->name, t->repo, t->tag,
		       *err ? err : strerror(-r));
		return r == -EACCES || r == -ENOSPC ? r : -EIO;
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

int fs_net_flush(struct fs_net *n, struct fs_net_handle *h)
{
	struct pfile *pf = pf_lock(h);
	int r = 0;

	if (!pf)
		return 0;
	if (pf->w && cas_writer_dirty(pf->w))
		r = push_locked(n, h->tag, (size_t)h->idx);
	pthread_mutex_unlock(&h->tag->plock);
	return r;
}

void fs_net_release(struct fs_net *n, struct fs_net_handle *h)
{
	struct pfile *pf;

	if (h->x)
		xfer_end(n, h->x, 0, NULL);
	pf = pf_lock(h);
	if (pf) {
		if (pf->w && cas_writer_dirty(pf->w))
			push_locked(n, h->tag, (size_t)h->idx);
		if (--pf->opens == 0 && pf->w) {
			cas_writer_free(pf->w);
			pf->w = NULL;
		}
		pthread_mutex_unlock(&h->tag->plock);
	} else if (h->tag && h->tag->pending && h->idx >= 0) {
		pthread_mutex_lock(&h->tag->plock);
		h->tag->pf[h->idx].opens--;
		pthread_mutex_unlock(&h->tag->plock);
	}
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
	while (n->xfers) {
		struct xfer *x = n->xfers;

		n->xfers = x->next;
		free(x->name);
		free(x);
	}
	pthread_mutex_destroy(&n->lock);
	free(n);
}
