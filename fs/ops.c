/*
 * ops.c - the FUSE low-level operations.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/registry/smip.h"
#include "fs/fs.h"
#include "fs/net.h"
#include "fs/paths.h"

#define INO_ROOT 1
#define INO_CTL 2    /* .llmfs */
#define INO_STATUS 3 /* .llmfs/status */
#define INO_TRANSFERS 8 /* .llmfs/transfers (net/ is 7) */
#define INO_GC 9        /* .llmfs/gc: write "gc" to collect now */
/* Bits 56-59 of a model's inode name its .smip entries (paths/ uses 61). */
#define VIRT_SHIFT 56
#define VIRT_MASK (15ULL << VIRT_SHIFT)
enum { V_NONE, V_SMIP_DIR, V_MANIFEST, V_INFO, V_TENSORS };
#define VIRT(ino, kind) (((ino) & ~VIRT_MASK) | ((uint64_t)(kind) << VIRT_SHIFT))
#define VIRT_KIND(ino) ((int)(((ino) & VIRT_MASK) >> VIRT_SHIFT))
#define IS_VIRT_FILE(ino) (VIRT_KIND(ino) == V_MANIFEST || VIRT_KIND(ino) == V_INFO || \
			   VIRT_KIND(ino) == V_TENSORS)
#define MODEL_OF(ino) ((ino) & ~VIRT_MASK)
#define SMIP_NAME ".smip"
#define MANIFEST_NAME "manifest.json"
#define INFO_NAME "info"
#define TENSORS_NAME "tensors"

#define ENTRY_TIMEOUT 1.0
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define IO_BLOCK (1024 * 1024) /* cp and cat size their buffers by st_blksize */

struct snap {
	struct cas_file *f;
	unsigned refs;
};

struct fs_node {
	uint64_t ino;
	uint64_t nlookup; /* references the kernel holds (lookups - forgets) */
	unsigned opens;   /* handles */
	unsigned writers; /* handles open for writing */
	int orphan;       /* unlinked while open */
	struct snap *snap;
	pthread_mutex_t wlock; /* serialises w */
	struct cas_writer *w;
	struct fs_node *next;
};

enum { H_FILE, H_DIR, H_VIRT, H_PATHS, H_NET };

struct dirent_snap {
	char *name;
	uint64_t ino;
	uint32_t mode;
};

struct fs_handle {
	int kind;
	int writable;
	struct fs_node *node;
	char *buf; /* H_VIRT: the file's text */
	size_t len;
	struct dirent_snap *ents; /* H_DIR */
	size_t nents, capents;
	struct fs_paths_handle *ph; /* H_PATHS */
	struct fs_handle *prev, *next; /* H_FILE, H_PATHS: fs->open_handles */
	struct fs_net_handle *nh;   /* H_NET */
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int is_catalog(uint64_t ino)
{
	return ino >= CAT_ROOT_INO && !(ino >> VIRT_SHIFT);
}

static void models_changed(struct fs *fs)
{
	atomic_fetch_add(&fs->models_gen, 1);
}

static int is_paths(struct fs *fs, uint64_t ino)
{
	return fs->paths && fs_paths_owns(ino);
}

static int is_net(struct fs *fs, uint64_t ino)
{
	return fs->net && fs_net_owns(ino);
}

/* May the caller use the remote that ino lies in (net/ is open to all)? */
static int net_may(fuse_req_t req, uint64_t ino)
{
	return fs_net_may(fs_of(req)->net, ino, fuse_req_ctx(req)->uid);
}

/* ---- the open-node table ------------------------------------------------ */

static struct fs_node *node_find(struct fs *fs, uint64_t ino)
{
	struct fs_node *n;

	if (!fs->nodecap)
		return NULL;
	for (n = fs->nodes[ino % fs->nodecap]; n; n = n->next)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct fs_node *node_get(struct fs *fs, uint64_t ino)
{
	struct fs_node *n = node_find(fs, ino);

	if (n)
		return n;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->ino = ino;
	pthread_mutex_init(&n->wlock, NULL);
	n->next = fs->nodes[ino % fs->nodecap];
	fs->nodes[ino % fs->nodecap] = n;
	return n;
}

static void node_unlink(struct fs *fs, struct fs_node *node)
{
	struct fs_node **p = &fs->nodes[node->ino % fs->nodecap];

	while (*p && *p != node)
		p = &(*p)->next;
	if (*p)
		*p = node->next;
}

static void snap_put_locked(struct snap *s)
{
	if (s && --s->refs == 0) {
		cas_file_free(s->f);
		free(s);
	}
}

static int snap_get(struct fs *fs, struct fs_node *node, struct snap **ret)
{
	struct snap *s;
	int r = 0;

	pthread_mutex_lock(&fs->lock);
	if (!node->snap) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			r = -ENOMEM;
			goto out;
		}
		r = cas_file_open(fs->st, node->ino, &s->f);
		if (r < 0) {
			free(s);
			goto out;
		}
		s->refs = 1;
		node->snap = s;
	}
	node->snap->refs++;
	*ret = node->snap;
out:
	pthread_mutex_unlock(&fs->lock);
	return r;
}

static void snap_put(struct fs *fs, struct snap *s)
{
	pthread_mutex_lock(&fs->lock);
	snap_put_locked(s);
	pthread_mutex_unlock(&fs->lock);
}

/* After a commit the node's snapshot is stale. */
static void snap_drop(struct fs *fs, struct fs_node *node)
{
	pthread_mutex_lock(&fs->lock);
	snap_put_locked(node->snap);
	node->snap = NULL;
	pthread_mutex_unlock(&fs->lock);
}

static void want_gc(struct fs *fs)
{
	cas_gc_want(fs->st);
}

/*
 * The kernel may open an inode it looked up earlier, after a rename or
 * unlink on another path removed its name: such an inode stays (as an
 * orphan) until the kernel forgets it, as on a local filesystem.
 */
static void count_lookup(struct fs *fs, uint64_t ino)
{
	struct fs_node *n;

	if (!is_catalog(ino) || ino == CAT_ROOT_INO)
		return;
	pthread_mutex_lock(&fs->lock);
	n = node_get(fs, ino);
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
}

/* Frees a node nobody holds any more, deleting it if it was unlinked. */
static void node_drop_unused(struct fs *fs, struct fs_node *node)
{
	if (node->orphan) {
		cas_release_orphan(fs->st, node->ino);
		want_gc(fs);
	}
	pthread_mutex_destroy(&node->wlock);
	free(node);
}

/* ---- attributes --------------------------------------------------------- */

static void fill_stat(struct fs *fs, const struct cat_attr *a, struct stat *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->st_ino = a->ino;
	sb->st_mode = a->mode;
	sb->st_nlink = a->nlink ? a->nlink : 1;
	sb->st_uid = a->uid;
	sb->st_gid = a->gid;
	if (a->ino == CAT_ROOT_INO) {
		sb->st_uid = fs->uid;
		sb->st_gid = fs->gid;
	}
	sb->st_size = (off_t)a->size;
	sb->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	sb->st_blksize = IO_BLOCK;
	sb->st_mtim.tv_sec = a->mtime_ns / 1000000000;
	sb->st_mtim.tv_nsec = a->mtime_ns % 1000000000;
	sb->st_atim = sb->st_mtim;
	sb->st_ctim.tv_sec = a->ctime_ns / 1000000000;
	sb->st_ctim.tv_nsec = a->ctime_ns % 1000000000;
}

static void virt_stat(struct fs *fs, uint64_t ino, uint32_t mode, uint64_t size,
		      struct stat *sb)
{
	struct cat_attr a = { .ino = ino, .mode = mode, .uid = fs->uid,
			      .gid = fs->gid, .nlink = S_ISDIR(mode) ? 2 : 1,
			      .size = size };

	a.mtime_ns = a.ctime_ns = (int64_t)time(NULL) * 1000000000;
	fill_stat(fs, &a, sb);
}

/* The text of a virtual file (status, manifest). */
static int make_virt_text(struct fs *fs, uint64_t ino, char **ret, size_t *ret_len);

/* Notes a collection's result (requested: asked for through .llmfs/gc). */
static void gc_record(struct fs *fs, int64_t freed, int requested)
{
	pthread_mutex_lock(&fs->lock);
	fs->gc_runs++;
	if (freed > 0)
		fs->gc_freed += (uint64_t)freed;
	if (requested)
		fs->gc_request = freed;
	pthread_mutex_unlock(&fs->lock);
}

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
	gc_record(fs, freed, 1);
	return freed < 0 ? (int)freed : 0;
}

/* A copy of the virtual file's text, from the cache when models/ is unchanged. */
static int virt_text(struct fs *fs, uint64_t ino, char **ret, size_t *ret_len)
{
	uint64_t gen = atomic_load(&fs->models_gen);
	struct fs_vtext *v;
	char *text;
	size_t len, i;
	int r;

	if (ino == INO_STATUS || ino == INO_GC)
		return make_virt_text(fs, ino, ret, ret_len);
	if (ino == INO_TRANSFERS)
		return fs->net ? fs_net_transfers(fs->net, ret, ret_len) : -ENOENT;
	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < ARRAY_SIZE(fs->vcache); i++) {
		v = &fs->vcache[i];
		if (v->text && v->ino == ino && v->gen == gen) {
			*ret = malloc(v->len + 1);
			if (*ret) {
				memcpy(*ret, v->text, v->len + 1);
				*ret_len = v->len;
			}
			pthread_mutex_unlock(&fs->lock);
			return *ret ? 0 : -ENOMEM;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	r = make_virt_text(fs, ino, ret, ret_len);
	if (r < 0)
		return r;
	len = *ret_len;
	text = malloc(len + 1);
	if (!text)
		return 0;
	memcpy(text, *ret, len);
	text[len] = '\0';
	pthread_mutex_lock(&fs->lock);
	v = &fs->vcache[fs->vnext++ % ARRAY_SIZE(fs->vcache)];
	free(v->text);
	*v = (struct fs_vtext){ .ino = ino, .gen = gen, .text = text, .len = len };
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

static int make_virt_text(struct fs *fs, uint64_t ino, char **ret, size_t *ret_len)
{
	char name[NAME_MAX + 1] = "";
	struct cat_attr a;
	uint64_t model;
	int r;

	if (ino == INO_STATUS)
		return cas_status_text(fs->st, ret, ret_len);
	if (ino == INO_GC)
		return gc_text(fs, ret, ret_len);
	if (!IS_VIRT_FILE(ino))
		return -EINVAL;
	model = MODEL_OF(ino);
	r = cas_getattr(fs->st, model, &a);
	if (r < 0)
		return r;
	cas_path(fs->st, model, name, sizeof(name));
	if (VIRT_KIND(ino) == V_INFO)
		return smip_info(fs->st, model, name, 0, ret, ret_len);
	if (VIRT_KIND(ino) == V_TENSORS)
		return smip_info(fs->st, model, name, 1, ret, ret_len);
	return smip_manifest(fs->st, model, name, ret, ret_len);
}

/* ---- who may see what (docs/security.md) -------------------------------- */

/* The caller of a request: its fs uid, gid and supplementary groups. */
struct fs_cred {
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	int ngroups;
};

static void cred_of(fuse_req_t req, struct fs_cred *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int n;

	c->uid = ctx->uid;
	c->gid = ctx->gid;
	n = fuse_req_getgroups(req, (int)ARRAY_SIZE(c->groups), c->groups);
	/* Groups unknown: only the owner and "other" bits apply, never more. */
	c->ngroups = n < 0 ? 0 : n > (int)ARRAY_SIZE(c->groups) ? (int)ARRAY_SIZE(c->groups) : n;
}

static int cred_in_group(const struct fs_cred *c, gid_t gid)
{
	int i;

	if (c->gid == gid)
		return 1;
	for (i = 0; i < c->ngroups; i++)
		if (c->groups[i] == gid)
			return 1;
	return 0;
}

/* The kernel's rule for mode bits (mask: 4 read, 2 write, 1 search). */
static int cred_may(const struct fs_cred *c, const struct cat_attr *a, unsigned mask)
{
	unsigned bits;

	if (c->uid == 0)
		return 1;
	if (c->uid == a->uid)
		bits = a->mode >> 6;
	else if (cred_in_group(c, a->gid))
		bits = a->mode >> 3;
	else
		bits = a->mode;
	return (bits & mask) == mask;
}

struct model_walk {
	struct cas_store *st;
	const struct fs_cred *c;
	uint64_t *dirs; /* folders still to look into */
	size_t ndirs, capdirs;
};

static int walk_entry(void *arg, const char *name, const struct cat_attr *a)
{
	struct model_walk *w = arg;
	uint64_t *v;

	(void)name;
	if (S_ISREG(a->mode))
		return cred_may(w->c, a, 4) ? 0 : -EACCES;
	if (!S_ISDIR(a->mode))
		return 0;
	if (!cred_may(w->c, a, 4 | 1))
		return -EACCES;
	if (w->ndirs == w->capdirs) {
		size_t cap = w->capdirs ? 2 * w->capdirs : 16;

		v = realloc(w->dirs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		w->dirs = v;
		w->capdirs = cap;
	}
	w->dirs[w->ndirs++] = a->ino;
	return 0;
}

/*
 * A model's .smip views describe every file of it (names, sizes, SHA-256,
 * headers): they are shown only to a caller who could read every file and
 * list every folder of the model anyway.  All or nothing, so that one
 * text serves every reader who gets it.
 */
static int may_see_model(struct fs *fs, const struct fs_cred *c, uint64_t model)
{
	struct model_walk w = { .st = fs->st, .c = c };
	struct cat_attr a;
	int r;

	if (c->uid == 0)
		return 0;
	r = cas_getattr(fs->st, model, &a);
	if (r < 0)
		return r;
	if (!cred_may(c, &a, 4 | 1))
		return -EACCES;
	r = walk_entry(&w, NULL, &a);
	while (r == 0 && w.ndirs)
		r = cas_children(fs->st, w.dirs[--w.ndirs], walk_entry, &w);
	free(w.dirs);
	return r;
}

static int is_model_dir(struct fs *fs, uint64_t ino)
{
	struct cat_attr a;

	return is_catalog(ino) && ino != CAT_ROOT_INO &&
	       cas_getattr(fs->st, ino, &a) == 0 && S_ISDIR(a.mode) &&
	       a.parent == CAT_ROOT_INO && a.nlink > 0;
}

/* A writer's size overrides the catalog's while the file is being written. */
static void overlay_size(struct fs *fs, struct cat_attr *a)
{
	struct fs_node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, a->ino);
	if (n && n->w) {
		/* Unlocked read of a size: a racing write only makes it newer. */
		a->size = cas_writer_size(n->w);
	}
	pthread_mutex_unlock(&fs->lock);
}

static int do_getattr(struct fs *fs, uint64_t ino, struct stat *sb)
{
	struct cat_attr a;
	char *text;
	size_t len;
	int r;

	if (is_paths(fs, ino))
		return fs_paths_stat(fs->paths, ino, sb);
	if (is_net(fs, ino))
		return fs_net_stat(fs->net, ino, sb);
	switch (ino) {
	case INO_ROOT:
	case INO_CTL:
		virt_stat(fs, ino, S_IFDIR | 0755, 0, sb);
		return 0;
	case INO_STATUS:
	case INO_TRANSFERS:
	case INO_GC:
		break;
	default:
		if (VIRT_KIND(ino) == V_SMIP_DIR) {
			if (!is_model_dir(fs, MODEL_OF(ino)))
				return -ENOENT;
			virt_stat(fs, ino, S_IFDIR | 0555, 0, sb);
			return 0;
		}
		if (VIRT_KIND(ino) == V_NONE) {
			if (!is_catalog(ino))
				return -ENOENT;
			r = cas_getattr(fs->st, ino, &a);
			if (r < 0)
				return r;
			overlay_size(fs, &a);
			fill_stat(fs, &a, sb);
			return 0;
		}
	}
	r = virt_text(fs, ino, &text, &len);
	if (r < 0)
		return r;
	free(text);
	virt_stat(fs, ino, S_IFREG | (ino == INO_GC ? 0644 : 0444), len, sb);
	return 0;
}

static void reply_err(fuse_req_t req, int r)
{
	fuse_reply_err(req, r < 0 ? -r : r);
}

static void reply_entry(fuse_req_t req, struct fs *fs, uint64_t ino)
{
	struct fuse_entry_param e;
	int r;

	memset(&e, 0, sizeof(e));
	r = do_getattr(fs, ino, &e.attr);
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	e.ino = ino;
	if (is_catalog(ino)) {
		e.attr_timeout = ENTRY_TIMEOUT;
		e.entry_timeout = ENTRY_TIMEOUT;
	}
	count_lookup(fs, ino);
	fuse_reply_entry(req, &e);
}

static void forget_one(struct fs *fs, uint64_t ino, uint64_t n)
{
	struct fs_node *node;
	int unused = 0;

	pthread_mutex_lock(&fs->lock);
	node = node_find(fs, ino);
	if (node) {
		node->nlookup = node->nlookup > n ? node->nlookup - n : 0;
		if (!node->nlookup && !node->opens) {
			node_unlink(fs, node);
			snap_put_locked(node->snap);
			node->snap = NULL;
			unused = 1;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (unused)
		node_drop_unused(fs, node);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		forget_one(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* Names: too long, not UTF-8, or "." / ".." cannot be stored. */
static int check_name(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t len = strlen(name);

	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	if (len == 0 || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2
					: (*p & 0xf8) == 0xf0 ? 3 : -1;

		if (n < 0 || (n == 1 && *p < 0xc2))
			return -EILSEQ;
		for (p++; n > 0; n--, p++)
			if ((*p & 0xc0) != 0x80)
				return -EILSEQ;
	}
	return 0;
}

/* May a new entry called name be made in parent? */
static int check_new_entry(struct fs *fs, uint64_t parent, const char *name)
{
	int r;

	if (!is_catalog(parent))
		return -EPERM;
	r = check_name(name);
	if (r < 0)
		return r;
	if (!strcmp(name, SMIP_NAME) && is_model_dir(fs, parent))
		return -EEXIST;
	return 0;
}

/* ---- lookups and attributes --------------------------------------------- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct cat_attr a;
	int r;

	if (parent == INO_ROOT) {
		if (!strcmp(name, "models"))
			return reply_entry(req, fs, CAT_ROOT_INO);
		if (!strcmp(name, ".llmfs"))
			return reply_entry(req, fs, INO_CTL);
		if (!strcmp(name, "paths") && fs->paths)
			return reply_entry(req, fs, PATHS_INO);
		if (!strcmp(name, "net") && fs->net)
			return reply_entry(req, fs, NET_INO);
		return reply_err(req, -ENOENT);
	}
	if (is_net(fs, parent)) {
		uint64_t ino;

		r = net_may(req, parent);
		if (r == 0)
			r = fs_net_lookup(fs->net, parent, name, &ino);
		return r < 0 ? reply_err(req, r) : reply_entry(req, fs, ino);
	}
	if (is_paths(fs, parent)) {
		uint64_t ino;

		r = fs_paths_lookup(fs->paths, parent, name, &ino);
		return r < 0 ? reply_err(req, r) : reply_entry(req, fs, ino);
	}
	if (parent == INO_CTL) {
		if (!strcmp(name, "status"))
			return reply_entry(req, fs, INO_STATUS);
		if (!strcmp(name, "gc"))
			return reply_entry(req, fs, INO_GC);
		if (!strcmp(name, "transfers") && fs->net)
			return reply_entry(req, fs, INO_TRANSFERS);
		return reply_err(req, -ENOENT);
	}
	if (VIRT_KIND(parent) == V_SMIP_DIR) {
		if (!strcmp(name, MANIFEST_NAME))
			return reply_entry(req, fs, VIRT(parent, V_MANIFEST));
		if (!strcmp(name, INFO_NAME))
			return reply_entry(req, fs, VIRT(parent, V_INFO));
		if (!strcmp(name, TENSORS_NAME))
			return reply_entry(req, fs, VIRT(parent, V_TENSORS));
		return reply_err(req, -ENOENT);
	}
	if (!is_catalog(parent))
		return reply_err(req, -ENOENT);
	if (strlen(name) > NAME_MAX)
		return reply_err(req, -ENAMETOOLONG);
	if (!strcmp(name, SMIP_NAME) && is_model_dir(fs, parent))
		return reply_entry(req, fs, VIRT(parent, V_SMIP_DIR));
	r = cas_lookup(fs->st, parent, name, &a);
	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs, a.ino);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct stat sb;
	int r = do_getattr(fs, ino, &sb);

	if (r < 0)
		return reply_err(req, r);
	fuse_reply_attr(req, &sb, is_catalog(ino) ? ENTRY_TIMEOUT : 0);
}

static int truncate_file(struct fs *fs, uint64_t ino, uint64_t size,
			 struct fuse_file_info *fi)
{
	struct fs_handle *h = fi ? (struct fs_handle *)(uintptr_t)fi->fh : NULL;
	struct cas_writer *tmp = NULL;
	struct fs_node *node;
	int idle, r;

	pthread_mutex_lock(&fs->lock);
	node = h ? h->node : node_find(fs, ino);
	pthread_mutex_unlock(&fs->lock);
	if (!node) {
		/* truncate(2) of a closed file: one writer, committed now. */
		r = cas_writer_open(fs->st, ino, size == 0, &tmp);
		if (r == 0 && size)
			r = cas_writer_truncate(tmp, size);
		if (r == 0)
			r = cas_writer_commit(tmp);
		cas_writer_free(tmp);
		models_changed(fs);
		want_gc(fs);
		return r;
	}
	pthread_mutex_lock(&node->wlock);
	r = node->w ? 0 : cas_writer_open(fs->st, ino, 0, &node->w);
	if (r == 0)
		r = cas_writer_truncate(node->w, size);
	if (r == 0 && !h)
		r = cas_writer_commit(node->w);
	if (!h) {
		/*
		 * With no handle open for writing, no release will free this
		 * writer: an open writer holds collection off for good.
		 */
		pthread_mutex_lock(&fs->lock);
		idle = node->writers == 0;
		pthread_mutex_unlock(&fs->lock);
		if (idle) {
			cas_writer_free(node->w);
			node->w = NULL;
		}
	}
	pthread_mutex_unlock(&node->wlock);
	if (!h) {
		snap_drop(fs, node);
		models_changed(fs);
		want_gc(fs);
	}
	return r;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct cat_attr a;
	struct stat sb;
	int64_t now = (int64_t)time(NULL) * 1000000000;
	int r;

	if (is_paths(fs, ino) && (to_set & FUSE_SET_ATTR_MODE) &&
	    !(to_set & ~(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_CTIME))) {
		/* The kernel let only the owner or root this far. */
		r = fs_paths_chmod(fs->paths, ino, attr->st_mode);
		if (r == 0)
			r = fs_paths_stat(fs->paths, ino, &sb);
		return r < 0 ? reply_err(req, r) : (void)fuse_reply_attr(req, &sb, 0);
	}
	if (is_paths(fs, ino) && !(to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
					       FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
					       FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)) &&
	    (!(to_set & FUSE_SET_ATTR_SIZE) || attr->st_size == 0)) {
		/* `echo x > task` truncates first: the write replaces the text anyway. */
		r = fs_paths_stat(fs->paths, ino, &sb);
		if (r < 0)
			return reply_err(req, r);
		return (void)fuse_reply_attr(req, &sb, 0);
	}
	if (is_net(fs, ino)) {
		/* Modes and times of a push are not kept; sizes are. */
		struct fs_handle *h = fi ? (struct fs_handle *)(uintptr_t)fi->fh : NULL;

		r = 0;
		if ((to_set & FUSE_SET_ATTR_SIZE) && h && h->kind == H_NET)
			r = fs_net_truncate(fs->net, h->nh, (uint64_t)attr->st_size);
		else if (to_set & FUSE_SET_ATTR_SIZE)
			r = -EROFS;
		if (r == 0)
			r = fs_net_stat(fs->net, ino, &sb);
		return r < 0 ? reply_err(req, r) : (void)fuse_reply_attr(req, &sb, 0);
	}
	if (!is_catalog(ino) || ino == CAT_ROOT_INO)
		return reply_err(req, -EPERM);
	r = cas_getattr(fs->st, ino, &a);
	if (r < 0)
		return reply_err(req, r);
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (S_ISDIR(a.mode))
			return reply_err(req, -EISDIR);
		r = truncate_file(fs, ino, (uint64_t)attr->st_size, fi);
		if (r < 0)
			return reply_err(req, r);
		r = cas_getattr(fs->st, ino, &a);
		if (r < 0)
			return reply_err(req, r);
	}
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
		      FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)) {
		if (to_set & FUSE_SET_ATTR_MODE)
			a.mode = (a.mode & S_IFMT) | (attr->st_mode & 07777);
		if (to_set & FUSE_SET_ATTR_UID)
			a.uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			a.gid = attr->st_gid;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			a.mtime_ns = now;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			a.mtime_ns = (int64_t)attr->st_mtim.tv_sec * 1000000000 +
				     attr->st_mtim.tv_nsec;
		a.ctime_ns = now;
		r = cas_set_attr(fs->st, &a);
		if (r < 0)
			return reply_err(req, r);
	}
	models_changed(fs);
	r = do_getattr(fs, ino, &sb);
	if (r < 0)
		return reply_err(req, r);
	fuse_reply_attr(req, &sb, ENTRY_TIMEOUT);
}

/* ---- namespace changes -------------------------------------------------- */

static void make_node(fuse_req_t req, uint64_t parent, const char *name,
		      uint32_t mode, const char *target, struct cat_attr *ret, int *rr)
{
	struct fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int r = check_new_entry(fs, parent, name);

	if (r == 0)
		r = cas_mknode(fs->st, parent, name, mode, ctx->uid, ctx->gid, target, ret);
	if (r == 0)
		models_changed(fs);
	*rr = r;
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct fs *fs = fs_of(req);
	struct cat_attr a;
	int r;

	if (is_paths(fs, parent)) {
		uint64_t ino;

		r = fs_paths_mkdir(fs->paths, parent, name, fuse_req_ctx(req)->uid,
				   fuse_req_ctx(req)->gid, mode, &ino);
		return r < 0 ? reply_err(req, r) : reply_entry(req, fs, ino);
	}
	if (is_net(fs, parent)) {
		uint64_t ino;

		r = net_may(req, parent);
		if (r == 0)
			r = fs_net_mkdir(fs->net, parent, name, mode, &ino);
		return r < 0 ? reply_err(req, r) : reply_entry(req, fs, ino);
	}
	make_node(req, parent, name, S_IFDIR | (mode & 07777 & ~fuse_req_ctx(req)->umask),
		  NULL, &a, &r);
	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs_of(req), a.ino);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct fs *fs = fs_of(req);
	struct cat_attr a;
	uint64_t ino;
	int r;

	if (is_net(fs, parent)) {
		r = net_may(req, parent);
		if (r == 0)
			r = fs_net_symlink(fs->net, parent, name, link, &ino);
		return r < 0 ? reply_err(req, r) : reply_entry(req, fs, ino);
	}
	if (strlen(link) >= PATH_MAX)
		return reply_err(req, -ENAMETOOLONG);
	make_node(req, parent, name, S_IFLNK | 0777, link, &a, &r);
	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs_of(req), a.ino);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct cat_attr a;
	int r;

	/* Models are regular files; devices and fifos have no place here. */
	if (!S_ISREG(mode))
		return reply_err(req, -EPERM);
	make_node(req, parent, name, S_IFREG | (mode & 07777 & ~fuse_req_ctx(req)->umask),
		  NULL, &a, &r);
	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs_of(req), a.ino);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	char *target = NULL;
	int r;

	if (is_net(fs, ino)) {
		r = net_may(req, ino);
		if (r == 0)
			r = fs_net_readlink(fs->net, ino, &target);
	} else if (!is_catalog(ino)) {
		return reply_err(req, -EINVAL);
	} else {
		r = cas_readlink(fs->st, ino, &target);
	}
	if (r < 0)
		return reply_err(req, r);
	fuse_reply_readlink(req, target);
	free(target);
}

static int check_existing(struct fs *fs, uint64_t parent, const char *name)
{
	if (!is_catalog(parent))
		return -EPERM;
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	if (!strcmp(name, SMIP_NAME) && is_model_dir(fs, parent))
		return -EPERM;
	return 0;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_node *node;
	struct cat_attr a;
	uint64_t ino;
	int r = check_existing(fs, parent, name);

	if (r < 0)
		return reply_err(req, r);
	pthread_mutex_lock(&fs->lock);
	r = cas_lookup(fs->st, parent, name, &a);
	node = r == 0 ? node_find(fs, a.ino) : NULL;
	if (r == 0)
		r = cas_unlink(fs->st, parent, name, node != NULL, &ino);
	if (r == 0 && node)
		node->orphan = 1;
	pthread_mutex_unlock(&fs->lock);
	if (r == 0)
		models_changed(fs);
	if (r == 0 && !node)
		want_gc(fs);
	reply_err(req, r);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	int r;

	if (is_paths(fs, parent))
		return reply_err(req, fs_paths_rmdir(fs->paths, parent, name));
	r = check_existing(fs, parent, name);
	if (r == 0)
		r = cas_rmdir(fs->st, parent, name);
	if (r == 0)
		models_changed(fs);
	reply_err(req, r);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	struct fs_node *node;
	struct cat_attr a;
	uint64_t replaced = 0;
	int r;

	if (flags & ~RENAME_NOREPLACE)
		return reply_err(req, -EINVAL);
	r = check_existing(fs, parent, name);
	if (r == 0)
		r = check_new_entry(fs, newparent, newname);
	if (r == -EEXIST)
		r = -EPERM; /* the reserved .smip name */
	if (r < 0)
		return reply_err(req, r);
	pthread_mutex_lock(&fs->lock);
	node = cas_lookup(fs->st, newparent, newname, &a) == 0 ? node_find(fs, a.ino)
							      : NULL;
	r = cas_rename(fs->st, parent, name, newparent, newname,
		       !!(flags & RENAME_NOREPLACE), node != NULL, &replaced);
	if (r == 0 && node && replaced == node->ino)
		node->orphan = 1;
	pthread_mutex_unlock(&fs->lock);
	if (r == 0)
		models_changed(fs);
	if (r == 0 && replaced && !node)
		want_gc(fs);
	reply_err(req, r);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	/* Hard links: chunk sharing makes copies free, so none are kept. */
	reply_err(req, -EPERM);
}

/* ---- files -------------------------------------------------------------- */

static void handle_free(struct fs_handle *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->nents; i++)
		free(h->ents[i].name);
	free(h->ents);
	free(h->buf);
	free(h);
}

/* Files the kernel may never release (a stop) are listed to be freed. */
static void handle_link(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->lock);
	h->prev = NULL;
	h->next = fs->open_handles;
	if (h->next)
		h->next->prev = h;
	fs->open_handles = h;
	pthread_mutex_unlock(&fs->lock);
}

static void handle_unlink(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->open_handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->lock);
}

static void release_file(struct fs *fs, struct fs_handle *h);

/* Opens a catalog file: a node shared by its handles, a writer on demand. */
static int open_file(struct fs *fs, uint64_t ino, struct fuse_file_info *fi,
		     int truncate)
{
	struct fs_handle *h = calloc(1, sizeof(*h));
	struct fs_node *node;
	int acc = fi->flags & O_ACCMODE, r = 0;

	if (!h)
		return -ENOMEM;
	h->kind = H_FILE;
	h->writable = acc == O_WRONLY || acc == O_RDWR;
	pthread_mutex_lock(&fs->lock);
	node = node_get(fs, ino);
	if (node) {
		node->opens++;
		node->writers += h->writable;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!node) {
		free(h);
		return -ENOMEM;
	}
	h->node = node;
	if (h->writable && truncate) {
		pthread_mutex_lock(&node->wlock);
		if (!node->w)
			r = cas_writer_open(fs->st, ino, 1, &node->w);
		else
			r = cas_writer_truncate(node->w, 0);
		pthread_mutex_unlock(&node->wlock);
	}
	if (r < 0) {
		release_file(fs, h);
		free(h);
		return r;
	}
	handle_link(fs, h);
	fi->fh = (uintptr_t)h;
	/* Committed content is immutable: the page cache stays valid. */
	fi->keep_cache = 1;
	return 0;
}

static void release_file(struct fs *fs, struct fs_handle *h)
{
	struct fs_node *node = h->node;
	int last_writer, removed = 0, r;

	pthread_mutex_lock(&node->wlock);
	pthread_mutex_lock(&fs->lock);
	node->writers -= h->writable;
	last_writer = node->writers == 0;
	pthread_mutex_unlock(&fs->lock);
	if (last_writer && node->w) {
		if (cas_writer_dirty(node->w)) {
			r = cas_writer_commit(node->w);
			if (r < 0) {
				char path[1024] = "";

				cas_path(fs->st, node->ino, path, sizeof(path));
				fs_log(fs->log, LOG_ERR,
				       "models/%s: new content not stored: %s", path,
				       strerror(-r));
			}
		}
		cas_writer_free(node->w);
		node->w = NULL;
		snap_drop(fs, node);
		models_changed(fs);
		want_gc(fs);
	}
	pthread_mutex_unlock(&node->wlock);
	pthread_mutex_lock(&fs->lock);
	if (--node->opens == 0 && !node->nlookup) {
		node_unlink(fs, node);
		snap_put_locked(node->snap);
		node->snap = NULL;
		removed = 1;
	}
	pthread_mutex_unlock(&fs->lock);
	if (removed)
		node_drop_unused(fs, node);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h;
	struct cat_attr a;
	int acc = fi->flags & O_ACCMODE, r;

	if (is_paths(fs, ino)) {
		h = calloc(1, sizeof(*h));
		if (!h)
			return reply_err(req, -ENOMEM);
		h->kind = H_PATHS;
		r = fs_paths_fopen(fs->paths, ino, fi->flags, &h->ph);
		if (r < 0) {
			free(h);
			return reply_err(req, r);
		}
		handle_link(fs, h);
		fi->fh = (uintptr_t)h;
		fi->direct_io = 1;
		fi->nonseekable = 0;
		return (void)fuse_reply_open(req, fi);
	}
	if (is_net(fs, ino)) {
		h = calloc(1, sizeof(*h));
		if (!h)
			return reply_err(req, -ENOMEM);
		h->kind = H_NET;
		r = net_may(req, ino);
		if (r == 0)
			r = fs_net_fopen(fs->net, ino, fi->flags, &h->nh);
		if (r < 0) {
			free(h);
			return reply_err(req, r);
		}
		fi->fh = (uintptr_t)h;
		fi->keep_cache = (fi->flags & O_ACCMODE) == O_RDONLY;
		return (void)fuse_reply_open(req, fi);
	}
	if (ino == INO_STATUS || ino == INO_TRANSFERS || ino == INO_GC ||
	    IS_VIRT_FILE(ino)) {
		struct fs_cred c;

		if (acc != O_RDONLY && ino != INO_GC)
			return reply_err(req, -EACCES);
		cred_of(req, &c);
		if (IS_VIRT_FILE(ino)) {
			r = may_see_model(fs, &c, MODEL_OF(ino));
			if (r < 0)
				return reply_err(req, r);
		}
		h = calloc(1, sizeof(*h));
		if (!h)
			return reply_err(req, -ENOMEM);
		h->kind = H_VIRT;
		r = virt_text(fs, ino, &h->buf, &h->len);
		if (r < 0) {
			free(h);
			return reply_err(req, r);
		}
		fi->fh = (uintptr_t)h;
		fi->direct_io = 1;
		return (void)fuse_reply_open(req, fi);
	}
	if (!is_catalog(ino))
		return reply_err(req, -EISDIR);
	r = cas_getattr(fs->st, ino, &a);
	if (r < 0)
		return reply_err(req, r);
	if (S_ISDIR(a.mode))
		return reply_err(req, -EISDIR);
	r = open_file(fs, ino, fi, !!(fi->flags & O_TRUNC));
	if (r < 0)
		return reply_err(req, r);
	fuse_reply_open(req, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct cat_attr a;
	int r;

	if (is_net(fs, parent)) {
		struct fs_handle *h = calloc(1, sizeof(*h));
		uint64_t ino;

		if (!h)
			return reply_err(req, -ENOMEM);
		h->kind = H_NET;
		r = net_may(req, parent);
		if (r == 0)
			r = fs_net_create(fs->net, parent, name, mode, &ino, &h->nh);
		if (r == 0) {
			memset(&e, 0, sizeof(e));
			r = fs_net_stat(fs->net, ino, &e.attr);
			if (r < 0)
				fs_net_release(fs->net, h->nh);
		}
		if (r < 0) {
			free(h);
			return reply_err(req, r);
		}
		e.ino = ino;
		fi->fh = (uintptr_t)h;
		fi->direct_io = 1;
		return (void)fuse_reply_create(req, &e, fi);
	}
	make_node(req, parent, name, S_IFREG | (mode & 07777 & ~fuse_req_ctx(req)->umask),
		  NULL, &a, &r);
	if (r < 0)
		return reply_err(req, r);
	memset(&e, 0, sizeof(e));
	r = do_getattr(fs, a.ino, &e.attr);
	if (r == 0)
		r = open_file(fs, a.ino, fi, 1);
	if (r < 0)
		return reply_err(req, r);
	e.ino = a.ino;
	e.attr_timeout = e.entry_timeout = ENTRY_TIMEOUT;
	count_lookup(fs, a.ino);
	fuse_reply_create(req, &e, fi);
}

static void log_fault(struct fs *fs, uint64_t ino, const struct cas_fault *f)
{
	char path[1024] = "", hex[CAS_ID_HEX];

	cas_path(fs->st, ino, path, sizeof(path));
	if (f->whole) {
		fs_log(fs->log, LOG_ERR,
		       "models/%s: content read to the end does not match its SHA-256"
		       " (damaged chunk list); returning EIO, run llmfs-fsck", path);
		return;
	}
	cas_id_hex(&f->id, hex);
	fs_log(fs->log, LOG_ERR,
	       "models/%s: damaged data at offset %llu (chunk %s does not match its id);"
	       " returning EIO, run llmfs-fsck",
	       path, (unsigned long long)f->off, hex);
}

static void reply_copy(fuse_req_t req, const char *data, size_t len)
{
	char *copy = len ? malloc(len) : NULL;

	if (len && !copy)
		return reply_err(req, -ENOMEM);
	if (len)
		memcpy(copy, data, len);
	fuse_reply_buf(req, copy, len);
	free(copy);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	struct fs_node *node = h->node;
	struct cas_fault fault = { 0 };
	struct snap *s;
	ssize_t n;
	char *buf;
	int r;

	/*
	 * Virtual files reply from a copy: once the kernel has the data the
	 * reader may close, and the release free the handle's text, before
	 * this thread is back from writev().
	 */
	if (h->kind == H_PATHS)
		return fs_paths_read(fs->paths, h->ph, req, size, off);
	if (h->kind == H_NET) {
		buf = malloc(size ? size : 1);
		n = buf ? fs_net_read(fs->net, h->nh, buf, size, (uint64_t)off) : -ENOMEM;
		goto reply;
	}
	if (h->kind == H_VIRT) {
		if ((size_t)off >= h->len)
			return (void)fuse_reply_buf(req, NULL, 0);
		return reply_copy(req, h->buf + off,
				  size < h->len - (size_t)off ? size : h->len - (size_t)off);
	}
	buf = malloc(size ? size : 1);
	if (!buf)
		return reply_err(req, -ENOMEM);
	pthread_mutex_lock(&node->wlock);
	if (node->w && cas_writer_dirty(node->w)) {
		n = cas_writer_read(node->w, buf, size, (uint64_t)off, &fault);
		pthread_mutex_unlock(&node->wlock);
		goto reply;
	}
	pthread_mutex_unlock(&node->wlock);
	r = snap_get(fs, node, &s);
	if (r < 0) {
		n = r;
		goto reply;
	}
	n = cas_file_read(fs->st, s->f, buf, size, (uint64_t)off, &fault);
	snap_put(fs, s);
	if (n == -EIO)
		log_fault(fs, ino, &fault);
reply:
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	struct fs_node *node = h->node;
	int r = 0;

	if (h->kind == H_PATHS) {
		r = fs_paths_write(fs->paths, h->ph, buf, size, off);
		return r < 0 ? reply_err(req, r) : (void)fuse_reply_write(req, size);
	}
	if (h->kind == H_NET) {
		r = fs_net_write(fs->net, h->nh, buf, size, (uint64_t)off);
		return r < 0 ? reply_err(req, r) : (void)fuse_reply_write(req, size);
	}
	if (h->kind == H_VIRT && ino == INO_GC) {
		r = gc_request(fs, buf, size);
		return r < 0 ? reply_err(req, r) : (void)fuse_reply_write(req, size);
	}
	if (h->kind != H_FILE)
		return reply_err(req, -EBADF);
	pthread_mutex_lock(&node->wlock);
	if (!node->w)
		r = cas_writer_open(fs->st, ino, 0, &node->w);
	if (r == 0)
		r = cas_writer_write(node->w, buf, size, (uint64_t)off);
	pthread_mutex_unlock(&node->wlock);
	if (r == -ENOSPC)
		want_gc(fs); /* runs once the writer is closed */
	if (r < 0)
		return reply_err(req, r);
	fuse_reply_write(req, size);
}

static int commit_node(struct fs *fs, struct fs_node *node)
{
	char path[1024] = "";
	int r = 0;

	pthread_mutex_lock(&node->wlock);
	if (node->w && cas_writer_dirty(node->w)) {
		r = cas_writer_commit(node->w);
		if (r == 0) {
			snap_drop(fs, node);
			models_changed(fs);
			want_gc(fs);
		}
	}
	pthread_mutex_unlock(&node->wlock);
	if (r < 0) {
		cas_path(fs->st, node->ino, path, sizeof(path));
		fs_log(fs->log, r == -ENOSPC ? LOG_WARNING : LOG_ERR,
		       "models/%s: cannot store new content: %s", path, strerror(-r));
	}
	return r;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

	if (h->kind == H_PATHS)
		return reply_err(req, fs_paths_flush(fs_of(req)->paths, h->ph));
	if (h->kind == H_NET)
		return reply_err(req, fs_net_flush(fs_of(req)->net, h->nh));
	if (h->kind != H_FILE || !h->writable)
		return reply_err(req, 0);
	reply_err(req, commit_node(fs_of(req), h->node));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

	if (h->kind == H_NET)
		return reply_err(req, fs_net_flush(fs_of(req)->net, h->nh));
	if (h->kind != H_FILE)
		return reply_err(req, 0);
	reply_err(req, commit_node(fs_of(req), h->node));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

	if (h->kind == H_FILE || h->kind == H_PATHS)
		handle_unlink(fs_of(req), h);
	if (h->kind == H_FILE)
		release_file(fs_of(req), h);
	if (h->kind == H_PATHS)
		fs_paths_release(fs_of(req)->paths, h->ph);
	if (h->kind == H_NET)
		fs_net_release(fs_of(req)->net, h->nh);
	handle_free(h);
	reply_err(req, 0);
}

/*
 * copy_file_range() with a net/ end: a pull (net -> models) shares the
 * fetched chunks, a push (models -> net) the stored ones; where offsets
 * do not fall on chunk boundaries a slice is copied through memory.
 */
static void copy_net(fuse_req_t req, struct fs_handle *hi, off_t off_in,
		     uint64_t ino_out, struct fs_handle *ho, off_t off_out,
		     size_t len)
{
	struct fs *fs = fs_of(req);
	const size_t step = 4u << 20;
	size_t want = len < step ? len : step;
	struct cas_fault fault;
	struct snap *s = NULL;
	ssize_t n = 0;
	char *buf = NULL;
	int r = 0;

	if (hi->kind == H_NET && ho->kind == H_FILE && ho->writable) {
		pthread_mutex_lock(&ho->node->wlock);
		if (!ho->node->w)
			r = cas_writer_open(fs->st, ino_out, 0, &ho->node->w);
		if (r == 0)
			n = fs_net_copy_out(fs->net, hi->nh, (uint64_t)off_in, len,
					    ho->node->w, (uint64_t)off_out);
		if (r == 0 && n == 0) {
			buf = malloc(want);
			n = buf ? fs_net_read(fs->net, hi->nh, buf, want, (uint64_t)off_in)
				: -ENOMEM;
			if (n > 0)
				r = cas_writer_write(ho->node->w, buf, (size_t)n,
						     (uint64_t)off_out);
		}
		pthread_mutex_unlock(&ho->node->wlock);
	} else if (hi->kind == H_FILE && ho->kind == H_NET) {
		r = commit_node(fs, hi->node) < 0 ? -EIO : 0;
		if (r == 0)
			r = snap_get(fs, hi->node, &s);
		if (r == 0)
			n = fs_net_copy_in(fs->net, ho->nh, (uint64_t)off_out, s->f,
					   (uint64_t)off_in, len);
		if (r == 0 && n == 0) {
			buf = malloc(want);
			n = buf ? cas_file_read(fs->st, s->f, buf, want, (uint64_t)off_in,
						&fault)
				: -ENOMEM;
			if (n > 0)
				r = fs_net_write(fs->net, ho->nh, buf, (size_t)n,
						 (uint64_t)off_out);
		}
		if (s)
			snap_put(fs, s);
	} else {
		r = -EXDEV;
	}
	free(buf);
	if (r < 0 || n < 0)
		return reply_err(req, r < 0 ? r : (int)n);
	fuse_reply_write(req, (size_t)n);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out,
			       size_t len, int flags)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *hi = (struct fs_handle *)(uintptr_t)fi_in->fh;
	struct fs_handle *ho = (struct fs_handle *)(uintptr_t)fi_out->fh;
	const size_t step = 4u << 20;
	struct cas_fault fault;
	struct snap *s = NULL;
	ssize_t n = 0;
	char *buf = NULL;
	int r = 0;

	if (hi->kind == H_NET || ho->kind == H_NET)
		return copy_net(req, hi, off_in, ino_out, ho, off_out, len);
	if (hi->kind != H_FILE || ho->kind != H_FILE || !ho->writable)
		return reply_err(req, -EBADF);
	if (hi->node == ho->node)
		return reply_err(req, -EINVAL);
	/* The source's written bytes must be committed to be shared. */
	r = commit_node(fs, hi->node) < 0 ? -EIO : 0;
	if (r == 0)
		r = snap_get(fs, hi->node, &s);
	if (r < 0)
		return reply_err(req, r);
	pthread_mutex_lock(&ho->node->wlock);
	if (!ho->node->w)
		r = cas_writer_open(fs->st, ino_out, 0, &ho->node->w);
	if (r == 0)
		n = cas_writer_share(ho->node->w, s->f, (uint64_t)off_in, len,
				     (uint64_t)off_out);
	if (r == 0 && n == 0) {
		/* Not on a chunk boundary: copy a slice through memory. */
		buf = malloc(step);
		n = buf ? cas_file_read(fs->st, s->f, buf, len < step ? len : step,
					(uint64_t)off_in, &fault)
			: -ENOMEM;
		if (n == -EIO)
			log_fault(fs, ino_in, &fault);
		if (n > 0) {
			r = cas_writer_write(ho->node->w, buf, (size_t)n, (uint64_t)off_out);
			if (r < 0)
				n = r;
		}
	}
	pthread_mutex_unlock(&ho->node->wlock);
	snap_put(fs, s);
	free(buf);
	if (r < 0 || n < 0)
		return reply_err(req, r < 0 ? r : (int)n);
	fuse_reply_write(req, (size_t)n);
}

/* ---- folders ------------------------------------------------------------ */

static int add_ent(struct fs_handle *h, const char *name, uint64_t ino, uint32_t mode)
{
	if (h->nents == h->capents) {
		size_t cap = h->capents ? 2 * h->capents : 16;
		struct dirent_snap *v = realloc(h->ents, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		h->ents = v;
		h->capents = cap;
	}
	h->ents[h->nents].name = strdup(name);
	if (!h->ents[h->nents].name)
		return -ENOMEM;
	h->ents[h->nents].ino = ino;
	h->ents[h->nents].mode = mode;
	h->nents++;
	return 0;
}

static int add_ent_cb(void *arg, const char *name, uint64_t ino, uint32_t mode)
{
	return add_ent(arg, name, ino, mode);
}

static int add_child(void *arg, const char *name, const struct cat_attr *a)
{
	return add_ent(arg, name, a->ino, a->mode);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h = calloc(1, sizeof(*h));
	struct cat_attr a;
	int r;

	if (!h)
		return reply_err(req, -ENOMEM);
	h->kind = H_DIR;
	r = add_ent(h, ".", ino, S_IFDIR);
	if (r == 0)
		r = add_ent(h, "..", INO_ROOT, S_IFDIR);
	if (r < 0)
		goto fail;
	if (ino == INO_ROOT) {
		r = add_ent(h, "models", CAT_ROOT_INO, S_IFDIR);
		if (r == 0 && fs->paths)
			r = add_ent(h, "paths", PATHS_INO, S_IFDIR);
		if (r == 0 && fs->net)
			r = add_ent(h, "net", NET_INO, S_IFDIR);
		if (r == 0)
			r = add_ent(h, ".llmfs", INO_CTL, S_IFDIR);
	} else if (is_paths(fs, ino)) {
		r = fs_paths_list(fs->paths, ino, add_ent_cb, h);
	} else if (is_net(fs, ino)) {
		r = net_may(req, ino);
		if (r == 0)
			r = fs_net_list(fs->net, ino, add_ent_cb, h);
	} else if (ino == INO_CTL) {
		r = add_ent(h, "status", INO_STATUS, S_IFREG);
		if (r == 0)
			r = add_ent(h, "gc", INO_GC, S_IFREG);
		if (r == 0 && fs->net)
			r = add_ent(h, "transfers", INO_TRANSFERS, S_IFREG);
	} else if (VIRT_KIND(ino) == V_SMIP_DIR) {
		r = add_ent(h, MANIFEST_NAME, VIRT(ino, V_MANIFEST), S_IFREG);
		if (r == 0)
			r = add_ent(h, INFO_NAME, VIRT(ino, V_INFO), S_IFREG);
		if (r == 0)
			r = add_ent(h, TENSORS_NAME, VIRT(ino, V_TENSORS), S_IFREG);
	} else if (is_catalog(ino)) {
		r = cas_getattr(fs->st, ino, &a);
		if (r == 0 && !S_ISDIR(a.mode))
			r = -ENOTDIR;
		if (r == 0)
			r = cas_children(fs->st, ino, add_child, h);
	} else {
		r = -ENOTDIR;
	}
	if (r < 0)
		goto fail;
	fi->fh = (uintptr_t)h;
	fuse_reply_open(req, fi);
	return;
fail:
	handle_free(h);
	reply_err(req, r);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t pos = 0, i;

	if (!buf)
		return reply_err(req, -ENOMEM);
	for (i = (size_t)off; i < h->nents; i++) {
		struct stat sb = { .st_ino = h->ents[i].ino, .st_mode = h->ents[i].mode };
		size_t n = fuse_add_direntry(req, buf + pos, size - pos, h->ents[i].name,
					     &sb, (off_t)(i + 1));

		if (n > size - pos)
			break;
		pos += n;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	handle_free((struct fs_handle *)(uintptr_t)fi->fh);
	reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct cas_status s;
	struct statvfs sv;
	const unsigned long bs = 4096;
	uint64_t avail;
	int r = cas_status(fs->st, &s);

	if (r < 0)
		return reply_err(req, r);
	/* Used is what the store takes on disk; free is what its disk has left. */
	avail = (uint64_t)s.fs.f_bavail * s.fs.f_frsize;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = bs;
	sv.f_frsize = bs;
	sv.f_blocks = (fsblkcnt_t)((s.pack_disk_bytes + avail) / bs);
	sv.f_bfree = (fsblkcnt_t)(avail / bs);
	sv.f_bavail = sv.f_bfree;
	sv.f_files = (fsfilcnt_t)(s.cat.files + s.cat.dirs + s.cat.symlinks +
				  s.fs.f_favail);
	sv.f_ffree = s.fs.f_favail;
	sv.f_favail = s.fs.f_favail;
	sv.f_namemax = NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	unsigned events = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
	int r;

	if (h->kind == H_PATHS) {
		r = fs_paths_poll(fs_of(req)->paths, h->ph, ph, &events);
		if (r < 0)
			return reply_err(req, r);
	} else if (ph) {
		fuse_pollhandle_destroy(ph);
	}
	fuse_reply_poll(req, events);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Writes go straight to the writer: close() is the commit point. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

/* The session ends: requests kept waiting are answered while they can be. */
static void op_destroy(void *userdata)
{
	struct fs *fs = userdata;
	struct fs_handle *h;

	fs_paths_drain(fs->paths);
	/*
	 * Files still open now are never released: fs_paths_close() frees the
	 * paths/ state of theirs, fs_release() their nodes and writers.
	 */
	pthread_mutex_lock(&fs->lock);
	while ((h = fs->open_handles)) {
		fs->open_handles = h->next;
		handle_free(h);
	}
	pthread_mutex_unlock(&fs->lock);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.create = op_create,
	.copy_file_range = op_copy_file_range,
	.poll = op_poll,
};

const struct fuse_lowlevel_ops *fs_ops(void)
{
	return &ops;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The store's collector thread ran one: noted for .llmfs/gc, failures logged. */
static void gc_done(void *arg, int64_t freed)
{
	struct fs *fs = arg;

	gc_record(fs, freed, 0);
	if (freed < 0)
		fs_log(fs->log, LOG_ERR, "garbage collection failed: %s",
		       strerror((int)-freed));
}

/* /llm/paths keeps its state (statistics, copied cards) in STORE/paths. */
static void open_paths(struct fs *fs, const char *planner)
{
	char *dir = NULL, *warnings = NULL;
	int r;

	if (asprintf(&dir, "%s/paths", cas_store_dir(fs->st)) < 0)
		return;
	r = fs_paths_open(fs, dir, planner, &fs->paths, &warnings);
	if (warnings)
		fs_log(fs->log, LOG_INFO, "paths: %s", warnings);
	if (r < 0) {
		fs_log(fs->log, LOG_ERR, "paths/ disabled: %s", strerror(-r));
		fs->paths = NULL;
	}
	free(warnings);
	free(dir);
}

int fs_init(struct fs *fs, struct cas_store *st, const struct fs_log *log,
	    const char *planner, const char *remotes,
	    const uid_t *trusted_uids, size_t n_trusted_uids)
{
	char err[1024] = "";
	int r;

	memset(fs, 0, sizeof(*fs));
	fs->st = st;
	fs->log = log;
	fs->trusted_uids = trusted_uids;
	fs->n_trusted_uids = n_trusted_uids;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->nodecap = 1024;
	fs->nodes = calloc(fs->nodecap, sizeof(*fs->nodes));
	if (!fs->nodes)
		return -ENOMEM;
	pthread_mutex_init(&fs->lock, NULL);
	r = cas_gc_thread_start(st, gc_done, fs);
	if (r < 0) {
		pthread_mutex_destroy(&fs->lock);
		free(fs->nodes);
		return r;
	}
	open_paths(fs, planner);
	r = fs_net_open(fs, remotes, &fs->net, err, sizeof(err));
	if (r < 0) {
		/* The reason names the file already. */
		if (*err)
			fs_log(log, LOG_ERR, "%s", err);
		else
			fs_log(log, LOG_ERR, "%s: %s", remotes, strerror(-r));
		fs->net = NULL;
		fs_release(fs);
		return r;
	}
	return 0;
}

void fs_release(struct fs *fs)
{
	size_t i;

	fs_paths_close(fs->paths);
	fs->paths = NULL;
	fs_net_close(fs->net);
	fs->net = NULL;
	cas_gc_thread_stop(fs->st);
	/*
	 * Handles the kernel never released (SIGTERM, a forced unmount) still
	 * hold nodes.  Their writers are dropped, not committed: a file whose
	 * writer never reached close() or fsync() keeps its committed version,
	 * exactly as after kill -9.
	 */
	for (i = 0; i < fs->nodecap; i++) {
		struct fs_node *n = fs->nodes[i], *next;

		for (; n; n = next) {
			next = n->next;
			cas_writer_free(n->w);
			snap_put_locked(n->snap);
			free(n);
		}
	}
	free(fs->nodes);
	for (i = 0; i < ARRAY_SIZE(fs->vcache); i++)
		free(fs->vcache[i].text);
	pthread_mutex_destroy(&fs->lock);
}
