/*
 * models.c - models/: the store's namespace as files (the models/ row of
 * fs_subtrees[], subtree.h).
 *
 * Catalog inodes are the store's own; every direct child of models/ (a
 * model folder) has a hidden .smip folder whose files are made from the
 * model on demand (smip.h).  Open files share one node per inode: its
 * writer (the new content, committed at close or fsync) and a snapshot of
 * the committed content that readers share.  A node lives while the kernel
 * holds a lookup of it or a handle is open on it; a file unlinked while
 * open is kept as an orphan of the store until then.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>

#include "backend/registry/smip.h"
#include "fs/inval.h"
#include "fs/subtree.h"

/* Bits 56-59 of a model's inode name its .smip entries (subtree.h). */
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

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

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

/* The row's state; guarded by fs->lock. */
struct fs_models {
	/* The nodes of inodes the kernel holds or has open. */
	struct fs_node **nodes;
	size_t nodecap;
	/*
	 * The last .smip texts made (manifest, info, tensors): a stat and the
	 * open that follows it would otherwise each walk the model and parse
	 * its headers.  Valid while fs->models_gen is unchanged.
	 */
	struct vtext {
		uint64_t ino, gen;
		char *text;
		size_t len;
	} vcache[8];
	unsigned vnext;
	/* Each FUSE thread's pins for reads from the packs' pages (struct cas_pins). */
	pthread_key_t pins;
	int pins_ok;
};

/* An open file: a catalog file's node, or the text of a .smip file. */
struct model_handle {
	int is_text;
	int writable;
	struct fs_node *node;
	char *buf;
	size_t len;
};

static int is_catalog(uint64_t ino)
{
	return ino >= CAT_ROOT_INO && !(ino >> VIRT_SHIFT);
}

void fs_models_changed(struct fs *fs)
{
	atomic_fetch_add(&fs->models_gen, 1);
}

/* ---- the open-node table ------------------------------------------------ */

static struct fs_node *node_find(struct fs *fs, uint64_t ino)
{
	struct fs_node *n;

	if (!fs->models || !fs->models->nodecap)
		return NULL;
	for (n = fs->models->nodes[ino % fs->models->nodecap]; n; n = n->next)
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
	n->next = fs->models->nodes[ino % fs->models->nodecap];
	fs->models->nodes[ino % fs->models->nodecap] = n;
	return n;
}

static void node_unlink(struct fs *fs, struct fs_node *node)
{
	struct fs_node **p = &fs->models->nodes[node->ino % fs->models->nodecap];

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
		fs_gc_want(fs);
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
	sb->st_blksize = FS_IO_BLOCK;
	sb->st_mtim.tv_sec = a->mtime_ns / 1000000000;
	sb->st_mtim.tv_nsec = a->mtime_ns % 1000000000;
	sb->st_atim = sb->st_mtim;
	sb->st_ctim.tv_sec = a->ctime_ns / 1000000000;
	sb->st_ctim.tv_nsec = a->ctime_ns % 1000000000;
}

static int make_virt_text(struct fs *fs, uint64_t ino, char **ret, size_t *ret_len);

/* A copy of a .smip file's text, from the cache when models/ is unchanged. */
static int virt_text(struct fs *fs, uint64_t ino, char **ret, size_t *ret_len)
{
	uint64_t gen = atomic_load(&fs->models_gen);
	struct vtext *v;
	char *text;
	size_t len, i;
	int r;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < ARRAY_SIZE(fs->models->vcache); i++) {
		v = &fs->models->vcache[i];
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
	v = &fs->models->vcache[fs->models->vnext++ % ARRAY_SIZE(fs->models->vcache)];
	free(v->text);
	*v = (struct vtext){ .ino = ino, .gen = gen, .text = text, .len = len };
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

static int make_virt_text(struct fs *fs, uint64_t ino, char **ret, size_t *ret_len)
{
	char name[NAME_MAX + 1] = "";
	struct cat_attr a;
	uint64_t model;
	int r;

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

/*
 * A writer's size overrides the catalog's while the file is being written;
 * not once it failed (a full disk): it will commit nothing, and a stat
 * after the failed close(), before the release frees it, shows the
 * committed size, as a read shows the committed content.
 */
static void overlay_size(struct fs *fs, struct cat_attr *a)
{
	struct fs_node *n;

	pthread_mutex_lock(&fs->lock);
	n = node_find(fs, a->ino);
	if (n && n->w && !cas_writer_error(n->w)) {
		/* Unlocked read of a size: a racing write only makes it newer. */
		a->size = cas_writer_size(n->w);
	}
	pthread_mutex_unlock(&fs->lock);
}

/*
 * After a commit: the file's attributes (mtime, ctime) changed without
 * the kernel seeing it, and after a failed one its content is the old one
 * while the kernel's page cache holds what was written.  The invalidation
 * also makes the kernel drop a getattr or readdirplus answer begun before
 * it and arriving after (its attribute version), so attributes given
 * while the file was written (the writer's size, the old mtime) are never
 * kept past the commit; the kernel keeps the size right meanwhile itself.
 */
static void commit_seen(struct fs *fs, uint64_t ino, int failed)
{
	fs_inval_inode(fs, ino, failed);
}

/* ---- attributes and names ------------------------------------------------ */

static int models_getattr(struct fs *fs, uint64_t ino, struct stat *sb,
			  double *ret_timeout)
{
	struct cat_attr a;
	char *text;
	size_t len;
	int r;

	if (VIRT_KIND(ino) == V_SMIP_DIR) {
		if (!is_model_dir(fs, MODEL_OF(ino)))
			return -ENOENT;
		fs_virt_stat(fs, ino, S_IFDIR | 0555, 0, sb);
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
		*ret_timeout = FS_MODELS_TIMEOUT;
		return 0;
	}
	r = virt_text(fs, ino, &text, &len);
	if (r < 0)
		return r;
	free(text);
	fs_virt_stat(fs, ino, S_IFREG | 0444, len, sb);
	return 0;
}

static void models_forget(struct fs *fs, uint64_t ino, uint64_t n)
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

/* May a new entry called name be made in parent? */
static int check_new_entry(struct fs *fs, uint64_t parent, const char *name)
{
	int r;

	if (!is_catalog(parent))
		return -EPERM;
	r = cas_name_check(name);
	if (r < 0)
		return r;
	if (!strcmp(name, SMIP_NAME) && is_model_dir(fs, parent))
		return -EEXIST;
	return 0;
}


static int models_lookup(struct fs *fs, fuse_req_t req, uint64_t parent,
			 const char *name, uint64_t *ret_ino)
{
	struct cat_attr a;
	int r;

	if (VIRT_KIND(parent) == V_SMIP_DIR) {
		if (!strcmp(name, MANIFEST_NAME))
			*ret_ino = VIRT(parent, V_MANIFEST);
		else if (!strcmp(name, INFO_NAME))
			*ret_ino = VIRT(parent, V_INFO);
		else if (!strcmp(name, TENSORS_NAME))
			*ret_ino = VIRT(parent, V_TENSORS);
		else
			return -ENOENT;
		return 0;
	}
	if (!is_catalog(parent))
		return -ENOENT;
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	if (!strcmp(name, SMIP_NAME) && is_model_dir(fs, parent)) {
		*ret_ino = VIRT(parent, V_SMIP_DIR);
		return 0;
	}
	r = cas_lookup(fs->st, parent, name, &a);
	if (r == 0)
		*ret_ino = a.ino;
	return r;
}

static int truncate_file(struct fs *fs, uint64_t ino, uint64_t size,
			 struct model_handle *h)
{
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
		fs_models_changed(fs);
		fs_gc_want(fs);
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
		fs_models_changed(fs);
		fs_gc_want(fs);
	}
	return r;
}

static int models_setattr(struct fs *fs, fuse_req_t req, uint64_t ino,
			  const struct stat *attr, int to_set, void *h,
			  struct stat *ret, double *ret_timeout)
{
	int64_t now = (int64_t)time(NULL) * 1000000000;
	struct cat_attr a;
	int r;

	if (!is_catalog(ino) || ino == CAT_ROOT_INO)
		return -EPERM;
	r = cas_getattr(fs->st, ino, &a);
	if (r < 0)
		return r;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (S_ISDIR(a.mode))
			return -EISDIR;
		r = truncate_file(fs, ino, (uint64_t)attr->st_size, h);
		if (r < 0)
			return r;
		r = cas_getattr(fs->st, ino, &a);
		if (r < 0)
			return r;
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
			return r;
	}
	fs_models_changed(fs);
	return models_getattr(fs, ino, ret, ret_timeout);
}

/* ---- namespace changes -------------------------------------------------- */

static int make_node(struct fs *fs, fuse_req_t req, uint64_t parent,
		     const char *name, uint32_t mode, const char *target,
		     uint64_t *ret_ino)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct cat_attr a;
	int r = check_new_entry(fs, parent, name);

	if (r == 0)
		r = cas_mknode(fs->st, parent, name, mode, ctx->uid, ctx->gid, target, &a);
	if (r == 0) {
		fs_models_changed(fs);
		*ret_ino = a.ino;
	}
	return r;
}

static int models_mkdir(struct fs *fs, fuse_req_t req, uint64_t parent,
			const char *name, uint32_t mode, uint64_t *ret_ino)
{
	return make_node(fs, req, parent, name,
			 S_IFDIR | (mode & 07777 & ~fuse_req_ctx(req)->umask), NULL,
			 ret_ino);
}

static int models_symlink(struct fs *fs, fuse_req_t req, uint64_t parent,
			  const char *name, const char *target, uint64_t *ret_ino)
{
	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	return make_node(fs, req, parent, name, S_IFLNK | 0777, target, ret_ino);
}

static int models_mknod(struct fs *fs, fuse_req_t req, uint64_t parent,
			const char *name, uint32_t mode, uint64_t *ret_ino)
{
	/* Models are regular files; devices and fifos have no place here. */
	if (!S_ISREG(mode))
		return -EPERM;
	return make_node(fs, req, parent, name,
			 S_IFREG | (mode & 07777 & ~fuse_req_ctx(req)->umask), NULL,
			 ret_ino);
}

static int models_readlink(struct fs *fs, fuse_req_t req, uint64_t ino, char **ret)
{
	if (!is_catalog(ino))
		return -EINVAL;
	return cas_readlink(fs->st, ino, ret);
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

static int models_unlink(struct fs *fs, fuse_req_t req, uint64_t parent,
			 const char *name)
{
	struct fs_node *node;
	struct cat_attr a;
	uint64_t ino;
	int r = check_existing(fs, parent, name);

	if (r < 0)
		return r;
	pthread_mutex_lock(&fs->lock);
	r = cas_lookup(fs->st, parent, name, &a);
	node = r == 0 ? node_find(fs, a.ino) : NULL;
	if (r == 0)
		r = cas_unlink(fs->st, parent, name, node != NULL, &ino);
	if (r == 0 && node)
		node->orphan = 1;
	pthread_mutex_unlock(&fs->lock);
	/* Not meant to happen: the store gives its reserve back for deletes. */
	if (r == -ENOSPC) {
		struct statvfs sv;

		fs_log(fs->log, LOG_WARNING, "models: a delete failed on a full "
		       "disk (%llu bytes free after the reserve was given back)",
		       statvfs(cas_store_dir(fs->st), &sv) == 0 ?
		       (unsigned long long)sv.f_bavail * sv.f_frsize : 0ULL);
	}
	if (r == 0)
		fs_models_changed(fs);
	if (r == 0 && !node)
		fs_gc_want(fs);
	return r;
}

static int models_rmdir(struct fs *fs, fuse_req_t req, uint64_t parent,
			const char *name)
{
	int r = check_existing(fs, parent, name);

	if (r == 0)
		r = cas_rmdir(fs->st, parent, name);
	if (r == 0)
		fs_models_changed(fs);
	return r;
}

static int models_rename(struct fs *fs, fuse_req_t req, uint64_t parent,
			 const char *name, uint64_t newparent, const char *newname,
			 unsigned flags)
{
	struct fs_node *node;
	struct cat_attr a;
	uint64_t replaced = 0;
	int r;

	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;
	r = check_existing(fs, parent, name);
	if (r == 0)
		r = check_new_entry(fs, newparent, newname);
	if (r == -EEXIST)
		r = -EPERM; /* the reserved .smip name */
	if (r < 0)
		return r;
	pthread_mutex_lock(&fs->lock);
	node = cas_lookup(fs->st, newparent, newname, &a) == 0 ? node_find(fs, a.ino)
							      : NULL;
	r = cas_rename(fs->st, parent, name, newparent, newname,
		       !!(flags & RENAME_NOREPLACE), node != NULL, &replaced);
	if (r == 0 && node && replaced == node->ino)
		node->orphan = 1;
	pthread_mutex_unlock(&fs->lock);
	if (r == 0)
		fs_models_changed(fs);
	if (r == 0 && replaced && !node)
		fs_gc_want(fs);
	return r;
}

/* ---- files -------------------------------------------------------------- */

static void release_file(struct fs *fs, struct model_handle *h);

/* Opens a catalog file: a node shared by its handles, a writer on demand. */
static int open_file(struct fs *fs, uint64_t ino, struct fuse_file_info *fi,
		     int truncate, struct model_handle **ret)
{
	struct model_handle *h = calloc(1, sizeof(*h));
	struct fs_node *node;
	int acc = fi->flags & O_ACCMODE, r = 0;

	if (!h)
		return -ENOMEM;
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
	/* Committed content is immutable: the page cache stays valid. */
	fi->keep_cache = 1;
	/*
	 * A file opened write-only to be written afresh (cp, a download) is
	 * written past the page cache: the kernel hands the writer's own
	 * pages to the daemon instead of first copying them into pages of
	 * the file that would sit beside the store's copy in the packs (half
	 * the memory a large ingest dirties, one copy less on the path each
	 * write waits for).  Such a descriptor cannot be mapped shared; the
	 * kernel drops the file's cached pages a direct write covers, and
	 * readers on other descriptors read through the page cache as ever.
	 */
	if (acc == O_WRONLY && truncate)
		fi->direct_io = 1;
	*ret = h;
	return 0;
}

static void release_file(struct fs *fs, struct model_handle *h)
{
	struct fs_node *node = h->node;
	int last_writer, removed = 0, r;

	pthread_mutex_lock(&node->wlock);
	pthread_mutex_lock(&fs->lock);
	node->writers -= h->writable;
	last_writer = node->writers == 0;
	pthread_mutex_unlock(&fs->lock);
	if (last_writer && node->w) {
		int garbage;

		if (cas_writer_dirty(node->w)) {
			r = cas_writer_commit_lazy(node->w);
			commit_seen(fs, node->ino, r < 0);
			if (r < 0) {
				char path[1024] = "";

				cas_path(fs->st, node->ino, path, sizeof(path));
				fs_log(fs->log, LOG_ERR,
				       "models/%s: new content not stored: %s", path,
				       strerror(-r));
			}
		}
		/* Bytes of a content never committed, or a content replaced:
		 * a collection has something to do (a new file's first
		 * content leaves nothing, and each collection snapshots the
		 * files: four syncs a small file before this). */
		garbage = cas_writer_dirty(node->w) || cas_writer_dropped(node->w);
		cas_writer_free(node->w);
		node->w = NULL;
		snap_drop(fs, node);
		fs_models_changed(fs);
		if (garbage)
			fs_gc_want(fs);
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

/* A .smip file: its text, made once for this handle, if the caller may see it. */
static int open_text(struct fs *fs, fuse_req_t req, uint64_t ino,
		     struct fuse_file_info *fi, struct model_handle **ret)
{
	struct model_handle *h;
	struct fs_cred c;
	int r;

	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	cred_of(req, &c);
	r = may_see_model(fs, &c, MODEL_OF(ino));
	if (r < 0)
		return r;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->is_text = 1;
	r = virt_text(fs, ino, &h->buf, &h->len);
	if (r < 0) {
		free(h);
		return r;
	}
	fi->direct_io = 1;
	*ret = h;
	return 0;
}

static int models_open(struct fs *fs, fuse_req_t req, uint64_t ino,
		       struct fuse_file_info *fi, void **ret_h)
{
	struct model_handle *h = NULL;
	struct cat_attr a;
	int r;

	if (IS_VIRT_FILE(ino))
		r = open_text(fs, req, ino, fi, &h);
	else if (!is_catalog(ino))
		r = -EISDIR;
	else if ((r = cas_getattr(fs->st, ino, &a)) == 0 && S_ISDIR(a.mode))
		r = -EISDIR;
	else if (r == 0)
		r = open_file(fs, ino, fi, !!(fi->flags & O_TRUNC), &h);
	*ret_h = h;
	return r;
}

static int models_create(struct fs *fs, fuse_req_t req, uint64_t parent,
			 const char *name, uint32_t mode, struct fuse_file_info *fi,
			 uint64_t *ret_ino, void **ret_h)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct model_handle *h = NULL;
	struct cat_attr a;
	int r;

	if ((fi->flags & O_ACCMODE) == O_RDONLY) {
		r = make_node(fs, req, parent, name, S_IFREG | (mode & 07777 & ~ctx->umask),
			      NULL, ret_ino);
	} else {
		/*
		 * Opened for writing: the writer opened below is dirty from the
		 * start, so the file's close (or fsync) commits it, and that
		 * commit's sync covers the creation, which need not pay one of
		 * its own.
		 */
		r = check_new_entry(fs, parent, name);
		if (r == 0)
			r = cas_create(fs->st, parent, name, S_IFREG | (mode & 07777 & ~ctx->umask),
				       ctx->uid, ctx->gid, &a);
		if (r == 0) {
			fs_models_changed(fs);
			*ret_ino = a.ino;
		}
	}
	if (r == 0)
		r = open_file(fs, *ret_ino, fi, 1, &h);
	*ret_h = h;
	return r;
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

static void pins_free(void *v)
{
	struct cas_pins *p = v;

	if (p)
		cas_pins_close(p);
	free(p);
}

/* The calling thread's pins, made on first use; NULL if they cannot be. */
static struct cas_pins *thread_pins(struct fs_models *m)
{
	struct cas_pins *p = pthread_getspecific(m->pins);

	if (p && p->null >= 0)
		return p;
	if (!p) {
		p = malloc(sizeof(*p));
		if (!p)
			return NULL;
		p->null = -1;
		if (pthread_setspecific(m->pins, p) != 0) {
			free(p);
			return NULL;
		}
	}
	/* Closed after a failure, or never made: tried again. */
	if (cas_pins_open(p) < 0)
		return NULL;
	return p;
}

static int send_iov(void *arg, const struct iovec *iov, int n)
{
	return fuse_reply_iov(arg, iov, n);
}

/*
 * Answers a read of a committed file from the packs' pages where the
 * store can (cas_file_read_mapped()): 1 if answered, 0 if the copying
 * path must.
 */
static int read_mapped(struct fs *fs, fuse_req_t req, struct cas_file *f, size_t size,
		       off_t off)
{
	struct fs_models *m = fs->models;
	struct cas_pins *p;

	if (!m->pins_ok)
		return 0;
	p = thread_pins(m);
	if (!p)
		return 0;
	return cas_file_read_mapped(fs->st, f, p, size, (uint64_t)off, send_iov, req);
}

static void models_read(struct fs *fs, fuse_req_t req, void *hv, uint64_t ino,
			size_t size, off_t off)
{
	struct model_handle *h = hv;
	struct fs_node *node = h->node;
	struct cas_fault fault = { 0 };
	struct snap *s;
	ssize_t n;
	char *buf = NULL;
	int r;

	if (h->is_text)
		return fs_reply_text(req, h->buf, h->len, size, off);
	pthread_mutex_lock(&node->wlock);
	if (node->w && cas_writer_dirty(node->w) && !cas_writer_error(node->w)) {
		buf = malloc(size ? size : 1);
		n = buf ? cas_writer_read(node->w, buf, size, (uint64_t)off, &fault) : -ENOMEM;
		pthread_mutex_unlock(&node->wlock);
		goto reply;
	}
	pthread_mutex_unlock(&node->wlock);
	r = snap_get(fs, node, &s);
	if (r < 0) {
		n = r;
		goto reply;
	}
	/* Answered from the packs' pages: no buffer needed. */
	if (read_mapped(fs, req, s->f, size, off)) {
		snap_put(fs, s);
		return;
	}
	buf = malloc(size ? size : 1);
	n = buf ? cas_file_read(fs->st, s->f, buf, size, (uint64_t)off, &fault) : -ENOMEM;
	snap_put(fs, s);
	if (n == -EIO)
		log_fault(fs, ino, &fault);
	/* Pages answered before the mismatch was known: the kernel drops them. */
	if (n == -EIO && fault.whole)
		fs_inval_inode(fs, ino, 1);
reply:
	if (n < 0)
		fs_reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static int models_write(struct fs *fs, fuse_req_t req, void *hv, uint64_t ino,
			const char *buf, size_t size, off_t off)
{
	struct model_handle *h = hv;
	struct fs_node *node = h->node;
	int r = 0;

	if (h->is_text)
		return -EBADF;
	pthread_mutex_lock(&node->wlock);
	if (!node->w)
		r = cas_writer_open(fs->st, ino, 0, &node->w);
	if (r == 0)
		r = cas_writer_write(node->w, buf, size, (uint64_t)off);
	pthread_mutex_unlock(&node->wlock);
	if (r == -ENOSPC)
		fs_gc_want(fs); /* runs once the writer is closed */
	return r;
}

/*
 * Commits the node's writer: durable at once for an fsync() (lazy 0), at
 * once visible and durable within the flusher's delay for a close() and
 * the copies that need the source's content committed (lazy 1).
 */
static int commit_node(struct fs *fs, struct fs_node *node, int lazy)
{
	char path[1024] = "";
	int r = 0;

	pthread_mutex_lock(&node->wlock);
	if (node->w && cas_writer_dirty(node->w)) {
		r = lazy ? cas_writer_commit_lazy(node->w) : cas_writer_commit(node->w);
		commit_seen(fs, node->ino, r < 0);
		if (r == 0) {
			snap_drop(fs, node);
			fs_models_changed(fs);
			/* A new file's first content leaves no garbage: no
			 * collection (and file snapshot) after each small file. */
			if (cas_writer_dropped(node->w))
				fs_gc_want(fs);
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

static int models_flush(struct fs *fs, void *hv)
{
	struct model_handle *h = hv;

	if (h->is_text || !h->writable)
		return 0;
	return commit_node(fs, h->node, 1);
}

/* fsync(): this file's commit durable, and every lazy one before it. */
static int models_fsync(struct fs *fs, void *hv)
{
	struct model_handle *h = hv;
	int r;

	if (h->is_text)
		return 0;
	r = commit_node(fs, h->node, 0);
	return r < 0 ? r : cas_sync(fs->st);
}

static void models_abandon(struct fs *fs, void *hv)
{
	struct model_handle *h = hv;

	free(h->buf);
	free(h);
}

static void models_release(struct fs *fs, void *hv)
{
	struct model_handle *h = hv;

	if (!h->is_text)
		release_file(fs, h);
	models_abandon(fs, h);
}

/* ---- copy_file_range() -------------------------------------------------- */

/* Into a models/ file from another row's file: a pull (net/). */
static ssize_t copy_from(struct fs *fs, const struct fs_subtree *in_sub, void *in,
			 uint64_t off_in, struct model_handle *ho, uint64_t ino_out,
			 uint64_t off_out, size_t len)
{
	ssize_t n;
	int r = 0;

	if (!in_sub->ops->copy_out)
		return -EBADF;
	if (ho->is_text || !ho->writable)
		return -EXDEV;
	pthread_mutex_lock(&ho->node->wlock);
	if (!ho->node->w)
		r = cas_writer_open(fs->st, ino_out, 0, &ho->node->w);
	n = r < 0 ? r : in_sub->ops->copy_out(fs, in, off_in, len, ho->node->w, off_out);
	pthread_mutex_unlock(&ho->node->wlock);
	return n;
}

/* Out of a models/ file into another row's file: a push (net/). */
static ssize_t copy_to(struct fs *fs, struct model_handle *hi, uint64_t off_in,
		       const struct fs_subtree *out_sub, void *out,
		       uint64_t off_out, size_t len)
{
	struct snap *s = NULL;
	ssize_t n;
	int r;

	if (!out_sub->ops->copy_in)
		return -EBADF;
	if (hi->is_text)
		return -EXDEV;
	/* The source's written bytes must be committed to be shared. */
	r = commit_node(fs, hi->node, 1) < 0 ? -EIO : 0;
	if (r == 0)
		r = snap_get(fs, hi->node, &s);
	if (r < 0)
		return r;
	n = out_sub->ops->copy_in(fs, out, off_out, s->f, off_in, len);
	snap_put(fs, s);
	return n;
}

/* Between two models/ files: chunks are shared, nothing is copied. */
static ssize_t copy_local(struct fs *fs, struct model_handle *hi, uint64_t ino_in,
			  uint64_t off_in, struct model_handle *ho,
			  uint64_t ino_out, uint64_t off_out, size_t len)
{
	const size_t step = 4u << 20;
	struct cas_fault fault;
	struct snap *s = NULL;
	ssize_t n = 0;
	char *buf = NULL;
	int r;

	if (hi->is_text || ho->is_text || !ho->writable)
		return -EBADF;
	if (hi->node == ho->node)
		return -EINVAL;
	r = commit_node(fs, hi->node, 1) < 0 ? -EIO : 0;
	if (r == 0)
		r = snap_get(fs, hi->node, &s);
	if (r < 0)
		return r;
	pthread_mutex_lock(&ho->node->wlock);
	if (!ho->node->w)
		r = cas_writer_open(fs->st, ino_out, 0, &ho->node->w);
	if (r == 0)
		n = cas_writer_share(ho->node->w, s->f, off_in, len, off_out);
	if (r == 0 && n == 0) {
		/* Not on a chunk boundary: copy a slice through memory. */
		buf = malloc(step);
		n = buf ? cas_file_read(fs->st, s->f, buf, len < step ? len : step,
					off_in, &fault)
			: -ENOMEM;
		if (n == -EIO)
			log_fault(fs, ino_in, &fault);
		if (n > 0) {
			r = cas_writer_write(ho->node->w, buf, (size_t)n, off_out);
			if (r < 0)
				n = r;
		}
	}
	pthread_mutex_unlock(&ho->node->wlock);
	snap_put(fs, s);
	free(buf);
	return r < 0 ? r : n;
}

static ssize_t models_copy_range(struct fs *fs, const struct fs_subtree *in_sub,
				 void *in, uint64_t ino_in, off_t off_in,
				 const struct fs_subtree *out_sub, void *out,
				 uint64_t ino_out, off_t off_out, size_t len)
{
	int in_here = in_sub->ops == &fs_models_ops;
	int out_here = out_sub->ops == &fs_models_ops;

	if (in_here && out_here)
		return copy_local(fs, in, ino_in, (uint64_t)off_in, out, ino_out,
				  (uint64_t)off_out, len);
	if (out_here)
		return copy_from(fs, in_sub, in, (uint64_t)off_in, out, ino_out,
				 (uint64_t)off_out, len);
	return copy_to(fs, in, (uint64_t)off_in, out_sub, out, (uint64_t)off_out, len);
}

/* ---- folders ------------------------------------------------------------ */

struct list_ctx {
	fs_add_fn add;
	void *arg;
};

static int add_child(void *arg, const char *name, const struct cat_attr *a)
{
	struct list_ctx *c = arg;

	return c->add(c->arg, name, a->ino, a->mode);
}

/* 0 when INO is a folder of the catalog, else -ENOTDIR or getattr's error. */
static int catalog_dir(struct fs *fs, uint64_t ino)
{
	struct cat_attr a;
	int r;

	if (!is_catalog(ino))
		return -ENOTDIR;
	r = cas_getattr(fs->st, ino, &a);
	return r == 0 && !S_ISDIR(a.mode) ? -ENOTDIR : r;
}

static int models_list_plus(struct fs *fs, fuse_req_t req, uint64_t ino,
			    fs_add_plus_fn add, void *arg)
{
	struct cas_child *kids = NULL;
	struct stat sb;
	size_t n = 0;
	int r;

	if (VIRT_KIND(ino) == V_SMIP_DIR) {
		/* Virtual texts: no timeout, looked up as after a readdir. */
		static const struct { const char *name; int kind; } v[] = {
			{ MANIFEST_NAME, V_MANIFEST }, { INFO_NAME, V_INFO },
			{ TENSORS_NAME, V_TENSORS },
		};
		size_t i;

		for (i = 0, r = 0; r == 0 && i < sizeof(v) / sizeof(v[0]); i++) {
			memset(&sb, 0, sizeof(sb));
			sb.st_ino = VIRT(ino, v[i].kind);
			sb.st_mode = S_IFREG;
			r = add(arg, v[i].name, &sb, 0);
		}
		return r;
	}
	/*
	 * The children are copied out under the store's lock and the writers'
	 * sizes (fs.lock) laid over them after it is released, since fs.lock
	 * comes before the store's lock (docs/architecture.md, Locking).
	 */
	r = catalog_dir(fs, ino);
	if (r == 0)
		r = cas_children_get(fs->st, ino, &kids, &n);
	for (size_t i = 0; r == 0 && i < n; i++) {
		overlay_size(fs, &kids[i].a);
		fill_stat(fs, &kids[i].a, &sb);
		r = add(arg, kids[i].name, &sb, FS_MODELS_TIMEOUT);
	}
	cas_children_free(kids, n);
	return r;
}

/* Catalog folders: every change the kernel does not make is announced. */
static int models_cache_listing(struct fs *fs, uint64_t ino)
{
	return is_catalog(ino);
}

static int models_list(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add,
		       void *arg)
{
	struct list_ctx c = { add, arg };
	int r;

	if (VIRT_KIND(ino) == V_SMIP_DIR) {
		r = add(arg, MANIFEST_NAME, VIRT(ino, V_MANIFEST), S_IFREG);
		if (r == 0)
			r = add(arg, INFO_NAME, VIRT(ino, V_INFO), S_IFREG);
		if (r == 0)
			r = add(arg, TENSORS_NAME, VIRT(ino, V_TENSORS), S_IFREG);
		return r;
	}
	r = catalog_dir(fs, ino);
	return r ? r : cas_children(fs->st, ino, add_child, &c);
}

/* ---- the row ------------------------------------------------------------ */

int fs_models_init(struct fs *fs)
{
	struct fs_models *m = calloc(1, sizeof(*m));

	if (m)
		m->nodes = calloc(1024, sizeof(*m->nodes));
	if (!m || !m->nodes) {
		free(m);
		return -ENOMEM;
	}
	m->nodecap = 1024;
	m->pins_ok = pthread_key_create(&m->pins, pins_free) == 0;
	fs->models = m;
	return 0;
}

void fs_models_release(struct fs *fs)
{
	struct fs_models *m = fs->models;
	size_t i;

	if (!m)
		return;
	/*
	 * Handles the kernel never released (SIGTERM, a forced unmount) still
	 * hold nodes.  Their writers are dropped, not committed: a file whose
	 * writer never reached close() or fsync() keeps its committed version,
	 * exactly as after kill -9.
	 */
	for (i = 0; i < m->nodecap; i++) {
		struct fs_node *n = m->nodes[i], *next;

		for (; n; n = next) {
			next = n->next;
			cas_writer_free(n->w);
			snap_put_locked(n->snap);
			free(n);
		}
	}
	free(m->nodes);
	for (i = 0; i < ARRAY_SIZE(m->vcache); i++)
		free(m->vcache[i].text);
	if (m->pins_ok) {
		/* The FUSE threads freed theirs as they ended; this thread's now. */
		pins_free(pthread_getspecific(m->pins));
		pthread_key_delete(m->pins);
	}
	free(m);
	fs->models = NULL;
}

const struct fs_subtree_ops fs_models_ops = {
	.lookup = models_lookup,
	.getattr = models_getattr,
	.remember = count_lookup,
	.list_plus = models_list_plus,
	.cache_listing = models_cache_listing,
	.forget = models_forget,
	.setattr = models_setattr,
	.readlink = models_readlink,
	.list = models_list,
	.mknod = models_mknod,
	.mkdir = models_mkdir,
	.symlink = models_symlink,
	.unlink = models_unlink,
	.rmdir = models_rmdir,
	.rename = models_rename,
	.open = models_open,
	.create = models_create,
	.read = models_read,
	.write = models_write,
	.flush = models_flush,
	.fsync = models_fsync,
	.release = models_release,
	.abandon = models_abandon,
	.copy_range = models_copy_range,
};
