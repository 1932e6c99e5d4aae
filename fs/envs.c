/*
 * envs/: environments as folders (one row of the subtree table, fs/subtree.h), each a model
 * of models/ run with its runtime in an OCI container (scheduler/env.h, docs/envs.md).
 *
 *   envs/                       root's (0755), or 0775 with --env-group: who may make envs
 *   envs/<name>/                its maker's, mode from the mkdir
 *     env.json                  the maker's: what runs (model, runtime, rootfs, limits, binds)
 *     control                   the maker's: write "start" or "stop"
 *     state                     created / starting / running / stopped (...) / failed: reason;
 *                               poll() says when it changed since the handle last read it
 *     endpoint                  unix:<socket> while it runs and listens
 *     log                       the container's output
 *     config.json               the OCI runtime spec it runs with; root's alone to write
 *
 * Every file maps onto one call of scheduler/env.h, none of which waits on runc (it stats
 * paths inside this mount).  Files are read with direct I/O and their size is the current one.
 * A running env with an endpoint is a model card of paths/ (fs_envs_cards()).  The row is off
 * when the daemon is not root or finds no OCI runtime.
 *
 * Inodes: the folder FS_ENVS_INO; an env's folder and files are FS_ENVS_TAG << 60 | id << 8
 * | file (file 0: the folder, 1 + enum env_file: its files), ids kept for the daemon's life.
 */
#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/jobtext.h"
#include "fs/names.h"
#include "fs/subtree.h"
#include "scheduler/env.h"

#define WRITE_MAX (64u << 10)

struct poller {
	struct poller *next;
	struct envs_handle *h;
	struct fuse_pollhandle *ph;
};

struct fs_envs {
	struct fs *fs;
	struct env_table *table;
	gid_t group;                /* may make envs too; (gid_t)-1: root alone */
	pthread_mutex_t lock;       /* pollers */
	struct fs_names names;      /* env ids */
	struct poller *pollers;
};

struct envs_handle {
	char *name;
	int file;                   /* enum env_file */
	uid_t uid;                  /* who opened it */
	unsigned long long seen;    /* the env's gen at the last read */
	struct fs_jobtext text;     /* env, control or config */
};

static struct fs_envs *E(struct fs *fs)
{
	return fs->envs;
}

static uint64_t env_ino(size_t id, int file)
{
	return FS_TAG_BASE(FS_ENVS_TAG) | (uint64_t)id << 8 | (uint64_t)file;
}

static size_t name_id(struct fs_envs *t, const char *name)
{
	return fs_names_id(&t->names, name);
}

static char *ino_name(struct fs_envs *t, uint64_t ino)
{
	return fs_names_get(&t->names, (size_t)((ino & ~FS_TAG_BASE(0xf)) >> 8));
}

static void wake_pollers(struct fs_envs *t)
{
	struct poller *p;

	pthread_mutex_lock(&t->lock);
	while ((p = t->pollers)) {
		t->pollers = p->next;
		fuse_lowlevel_notify_poll(p->ph);
		fuse_pollhandle_destroy(p->ph);
		free(p);
	}
	pthread_mutex_unlock(&t->lock);
}

/* An env changed (the table's lock held): pollers woken, paths/ reads its cards again. */
static void on_change(void *arg, const char *name)
{
	struct fs_envs *t = arg;

	(void)name;
	atomic_fetch_add(&t->fs->models_gen, 1);
	wake_pollers(t);
}

int fs_envs_cards(struct fs *fs, struct env_card **ret, size_t *ret_n)
{
	if (!E(fs)) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	return env_table_cards(E(fs)->table, ret, ret_n);
}

/* ---- the row's operations -------------------------------------------------------------------- */

/* llmfs-serve beside the daemon's program (a build folder or an install), or NULL. */
static char *find_serve(const char *exe, const char *given)
{
	static const char *const rel[] = { "llmfs-serve", "../serve/llmfs-serve",
					   "../tools/serve/llmfs-serve", "../tools/llmfs-serve", NULL };
	char *dup, *dir, *p = NULL;

	if (given)
		return realpath(given, NULL);
	dup = strdup(exe);
	if (!dup)
		return NULL;
	dir = dirname(dup);
	for (const char *const *r = rel; *r && !p; r++) {
		char *c = NULL;

		if (asprintf(&c, "%s/%s", dir, *r) < 0)
			break;
		if (access(c, X_OK) == 0)
			p = realpath(c, NULL);
		free(c);
	}
	free(dup);
	return p;
}

/*
 * The shim program: llmfs-env-shim beside the daemon (an install's libexec, or the build
 * folder's scheduler/), else the daemon's own program, which runs it as "--env-shim" too.
 */
static char *find_shim(const char *exe)
{
	static const char *const rel[] = { "llmfs-env-shim", "../scheduler/llmfs-env-shim",
					   "../libexec/llmfs-env-shim", NULL };
	char *dup = strdup(exe), *dir, *p = NULL;

	if (!dup)
		return NULL;
	dir = dirname(dup);
	for (const char *const *r = rel; *r && !p; r++) {
		char *c = NULL;

		if (asprintf(&c, "%s/%s", dir, *r) < 0)
			break;
		if (access(c, X_OK) == 0)
			p = realpath(c, NULL);
		free(c);
	}
	free(dup);
	return p ? p : strdup(exe);
}

static int envs_start(struct fs *fs, const struct fs_options *opt)
{
	struct env_table_config cfg = { 0 };
	struct fs_envs *t;
	char *state = NULL, *cache = NULL, *warnings = NULL, *serve = NULL, *shim = NULL;
	char exe[4096];
	const char *runc = env_find_runtime();
	ssize_t n;
	int r;

	/* Containers need root; without a runtime there is nothing to run them with. */
	if (!opt->mountpoint || getuid() != 0 || !runc)
		return 0;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = '\0';
	t = calloc(1, sizeof(*t));
	if (!t || asprintf(&state, "%s/envs", cas_store_dir(fs->st)) < 0 ||
	    asprintf(&cache, "%s/envs-cache", cas_store_dir(fs->st)) < 0) {
		free(t);
		free(state);
		return -ENOMEM;
	}
	serve = find_serve(exe, opt->env_serve);
	shim = find_shim(exe);
	t->fs = fs;
	t->group = opt->has_env_group ? opt->env_group : (gid_t)-1;
	pthread_mutex_init(&t->lock, NULL);
	fs_names_init(&t->names);
	cfg.state_dir = state;
	cfg.cache_dir = cache;
	cfg.tree = opt->mountpoint;
	cfg.exe = shim ? shim : exe;
	cfg.runc = runc;
	cfg.serve = serve;
	cfg.remotes = opt->remotes;
	cfg.bind_allow = opt->env_binds;
	cfg.n_bind_allow = opt->n_env_binds;
	cfg.on_change = on_change;
	cfg.on_change_arg = t;
	r = env_table_open(&cfg, &t->table, &warnings);
	if (warnings)
		fs_log(fs->log, LOG_WARNING, "envs: %s", warnings);
	free(warnings);
	free(state);
	free(cache);
	free(serve);
	free(shim);
	if (r < 0) {
		fs_log(fs->log, LOG_ERR, "envs/ disabled: %s", strerror(-r));
		fs_names_free(&t->names);
		pthread_mutex_destroy(&t->lock);
		free(t);
		return 0;
	}
	fs->envs = t;
	return 0;
}

static void envs_end(struct fs *fs)
{
	struct fs_envs *t = E(fs);
	struct poller *p;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	while ((p = t->pollers)) {
		t->pollers = p->next;
		fuse_pollhandle_destroy(p->ph);
		free(p);
	}
	pthread_mutex_unlock(&t->lock);
}

static void envs_stop(struct fs *fs)
{
	struct fs_envs *t = E(fs);

	if (!t)
		return;
	/* The containers stop here, their table with them (scheduler/env.h). */
	env_table_close(t->table);
	envs_end(fs);
	fs_names_free(&t->names);
	pthread_mutex_destroy(&t->lock);
	free(t);
	fs->envs = NULL;
}

static int envs_present(const struct fs *fs)
{
	return fs->envs != NULL;
}

static int envs_lookup(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name,
		       uint64_t *ret_ino)
{
	struct fs_envs *t = E(fs);
	struct env_info info;
	int f;

	(void)req;
	if (parent == FS_ENVS_INO) {
		size_t id;
		int r = env_table_info(t->table, name, &info);

		if (r < 0)
			return r;
		id = name_id(t, name);
		if (!id)
			return -ENOMEM;
		*ret_ino = env_ino(id, 0);
		return 0;
	}
	if ((parent & 0xff) != 0)
		return -ENOTDIR;
	f = env_file_lookup(name);
	if (f < 0)
		return f;
	*ret_ino = (parent & ~(uint64_t)0xff) | (uint64_t)(f + 1);
	return 0;
}

static const unsigned file_mode[ENV_F_COUNT] = {
	[ENV_F_ENV] = 0644, [ENV_F_CONTROL] = 0644, [ENV_F_STATE] = 0444,
	[ENV_F_ENDPOINT] = 0444, [ENV_F_LOG] = 0444, [ENV_F_CONFIG] = 0644,
};

static int envs_getattr(struct fs *fs, uint64_t ino, struct stat *sb, double *ret_timeout)
{
	struct fs_envs *t = E(fs);
	struct env_info info;
	char *name;
	uint64_t len = 0;
	int f, r;

	if (ino == FS_ENVS_INO) {
		int grp = t->group != (gid_t)-1;

		fs_virt_stat(fs, ino, S_IFDIR | (grp ? 0775 : 0755), 0, sb);
		sb->st_uid = 0;
		sb->st_gid = grp ? t->group : 0;
		return 0;
	}
	name = ino_name(t, ino);
	if (!name)
		return -ENOENT;
	r = env_table_info(t->table, name, &info);
	f = (int)(ino & 0xff) - 1;
	if (r == 0 && f >= ENV_F_COUNT)
		r = -ENOENT;
	else if (r == 0 && f >= 0)
		r = env_table_size(t->table, name, (enum env_file)f, &len);
	free(name);
	if (r < 0)
		return r;
	if (f < 0)
		fs_virt_stat(fs, ino, S_IFDIR | (info.mode & 07777), 0, sb);
	else
		fs_virt_stat(fs, ino, S_IFREG | file_mode[f], len, sb);
	/* config.json is root's: it says how the container is confined. */
	sb->st_uid = f == ENV_F_CONFIG ? 0 : info.uid;
	sb->st_gid = f == ENV_F_CONFIG ? 0 : info.gid;
	*ret_timeout = 0;
	return 0;
}

static int envs_list(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add, void *arg)
{
	struct fs_envs *t = E(fs);
	char **names = NULL;
	size_t n = 0;
	int r = 0;

	(void)req;
	if (ino == FS_ENVS_INO) {
		r = env_table_names(t->table, &names, &n);
		for (size_t i = 0; r == 0 && i < n; i++) {
			size_t id = name_id(t, names[i]);

			r = id ? add(arg, names[i], env_ino(id, 0), S_IFDIR) : -ENOMEM;
		}
		env_table_names_free(names, n);
		return r < 0 ? r : 0;
	}
	if ((ino & 0xff) != 0)
		return -ENOTDIR;
	for (int f = 0; r == 0 && f < ENV_F_COUNT; f++)
		r = add(arg, env_file_name((enum env_file)f),
			(ino & ~(uint64_t)0xff) | (uint64_t)(f + 1), S_IFREG);
	return r < 0 ? r : 0;
}

/* Root, or a member of --env-group. */
static int may_make(struct fs_envs *t, fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[256];
	int n;

	if (ctx->uid == 0)
		return 1;
	if (t->group == (gid_t)-1)
		return 0;
	if (ctx->gid == t->group)
		return 1;
	n = fuse_req_getgroups(req, 256, groups);
	for (int i = 0; i < n && i < 256; i++)
		if (groups[i] == t->group)
			return 1;
	return 0;
}

static int envs_mkdir(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name,
		      uint32_t mode, uint64_t *ret_ino)
{
	struct fs_envs *t = E(fs);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct env_owner owner = { ctx->uid, ctx->gid };
	size_t id;
	int r;

	if (parent != FS_ENVS_INO)
		return -EPERM;
	if (!may_make(t, req))
		return -EACCES;
	if (!env_name_valid(name))
		return -EINVAL;
	r = env_table_create(t->table, name, &owner, (mode & ~ctx->umask) & 0777);
	if (r < 0)
		return r;
	id = name_id(t, name);
	if (!id)
		return -ENOMEM;
	*ret_ino = env_ino(id, 0);
	return 0;
}

static int owns(struct fs_envs *t, fuse_req_t req, const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct env_info info;
	int r = env_table_info(t->table, name, &info);

	if (r < 0)
		return r;
	return ctx->uid == 0 || ctx->uid == info.uid ? 0 : -EACCES;
}

static int envs_rmdir(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name)
{
	int r;

	if (parent != FS_ENVS_INO)
		return -EPERM;
	r = owns(E(fs), req, name);
	return r < 0 ? r : env_table_remove(E(fs)->table, name);
}

static int envs_open(struct fs *fs, fuse_req_t req, uint64_t ino, struct fuse_file_info *fi,
		     void **ret_h)
{
	struct fs_envs *t = E(fs);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct envs_handle *h;
	int f = (int)(ino & 0xff) - 1, acc = fi->flags & O_ACCMODE, r;

	if (ino == FS_ENVS_INO || f < 0)
		return -EISDIR;
	if (f >= ENV_F_COUNT)
		return -ENOENT;
	if (acc != O_RDONLY && f != ENV_F_ENV && f != ENV_F_CONTROL && f != ENV_F_CONFIG)
		return -EACCES;
	h = calloc(1, sizeof(*h));
	if (!h || !(h->name = ino_name(t, ino))) {
		free(h);
		return h ? -ENOENT : -ENOMEM;
	}
	/* The kernel checked the modes; the rules of docs/security.md are checked here too. */
	r = 0;
	if (acc != O_RDONLY && f == ENV_F_CONFIG && ctx->uid != 0)
		r = -EACCES;
	else if (acc != O_RDONLY)
		r = owns(t, req, h->name);
	if (r < 0) {
		free(h->name);
		free(h);
		return r;
	}
	h->file = f;
	h->uid = ctx->uid;
	fi->direct_io = 1;
	*ret_h = h;
	return 0;
}

static void envs_read(struct fs *fs, fuse_req_t req, void *vh, uint64_t ino, size_t size,
		      off_t off)
{
	struct fs_envs *t = E(fs);
	struct envs_handle *h = vh;
	struct env_info info;
	char *text = NULL;
	size_t len = 0;
	int r;

	(void)ino;
	r = env_table_info(t->table, h->name, &info);
	if (r == 0)
		r = env_table_read(t->table, h->name, (enum env_file)h->file, &text, &len);
	if (r < 0) {
		fs_reply_err(req, r);
		return;
	}
	h->seen = info.gen;
	fs_reply_text(req, text, len, size, off);
	free(text);
}

static int envs_write(struct fs *fs, fuse_req_t req, void *vh, uint64_t ino, const char *buf,
		      size_t size, off_t off)
{
	struct envs_handle *h = vh;

	(void)fs;
	(void)req;
	(void)ino;
	if (h->file != ENV_F_ENV && h->file != ENV_F_CONTROL && h->file != ENV_F_CONFIG)
		return -EACCES;
	return fs_jobtext_write(&h->text, buf, size, off, WRITE_MAX);
}

/* "start" of an env whose model is not in models/: refused before anything runs. */
static int model_there(struct fs *fs, const char *name)
{
	struct env_info info;
	struct cat_attr a;
	int r = env_table_info(E(fs)->table, name, &info);

	if (r < 0 || !info.model[0])
		return r;
	r = cas_lookup(fs->st, CAT_ROOT_INO, info.model, &a);
	if (r == 0 && !S_ISDIR(a.mode))
		r = -ENOTDIR;
	if (r < 0)
		fs_log(fs->log, LOG_INFO, "envs/%s: model %s is not a folder of models/", name,
		       info.model);
	return r;
}

static int envs_flush(struct fs *fs, void *vh)
{
	struct envs_handle *h = vh;
	struct env_table *tb = E(fs)->table;
	const char *text = fs_jobtext_str(&h->text);
	size_t len = h->text.len;

	if (!h->text.wrote || h->text.done)
		return 0;
	h->text.done = 1;
	switch (h->file) {
	case ENV_F_ENV:
		return env_table_submit(tb, h->name, text, len);
	case ENV_F_CONFIG:
		return env_table_set_config(tb, h->name, text, len);
	default:
		if (len >= 5 && !strncmp(text, "start", 5)) {
			int r = model_there(fs, h->name);

			if (r < 0)
				return r;
		}
		return env_table_control(tb, h->name, text, len);
	}
}

static void handle_free(struct envs_handle *h)
{
	free(h->name);
	fs_jobtext_free(&h->text);
	free(h);
}

static void forget_polls(struct fs_envs *t, struct envs_handle *h)
{
	pthread_mutex_lock(&t->lock);
	for (struct poller **pp = &t->pollers; *pp;) {
		struct poller *p = *pp;

		if (p->h == h) {
			*pp = p->next;
			fuse_pollhandle_destroy(p->ph);
			free(p);
		} else {
			pp = &p->next;
		}
	}
	pthread_mutex_unlock(&t->lock);
}

static void envs_release(struct fs *fs, void *vh)
{
	envs_flush(fs, vh);
	forget_polls(E(fs), vh);
	handle_free(vh);
}

static void envs_abandon(struct fs *fs, void *vh)
{
	(void)fs;
	handle_free(vh);
}

/* Ready when the env changed since this handle last read; else woken at the next change. */
static int envs_poll(struct fs *fs, void *vh, struct fuse_pollhandle *ph, unsigned *ret_events)
{
	struct fs_envs *t = E(fs);
	struct envs_handle *h = vh;
	struct env_info info;
	struct poller *p;
	int r = env_table_info(t->table, h->name, &info);

	if (r < 0 || info.gen != h->seen || !ph) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		*ret_events &= r < 0 ? (unsigned)(POLLERR | POLLIN) : (unsigned)(POLLIN | POLLRDNORM);
		return 0;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		fuse_pollhandle_destroy(ph);
		return -ENOMEM;
	}
	p->h = h;
	p->ph = ph;
	forget_polls(t, h); /* the kernel's newest handle replaces the last */
	pthread_mutex_lock(&t->lock);
	p->next = t->pollers;
	t->pollers = p;
	pthread_mutex_unlock(&t->lock);
	/* It may have changed between the look and the list: look again. */
	if (env_table_info(t->table, h->name, &info) == 0 && info.gen != h->seen)
		wake_pollers(t);
	*ret_events = 0;
	return 0;
}

static int envs_setattr(struct fs *fs, fuse_req_t req, uint64_t ino, const struct stat *attr,
			int to_set, void *h, struct stat *ret, double *ret_timeout)
{
	(void)req;
	(void)h;
	/* `echo x > control` truncates first: the write replaces the text anyway. */
	if (fs_jobtext_setattr_ok(attr, to_set))
		return envs_getattr(fs, ino, ret, ret_timeout);
	return -EPERM;
}

const struct fs_subtree_ops fs_envs_ops = {
	.start = envs_start,
	.stop = envs_stop,
	.present = envs_present,
	.lookup = envs_lookup,
	.getattr = envs_getattr,
	.setattr = envs_setattr,
	.list = envs_list,
	.mkdir = envs_mkdir,
	.rmdir = envs_rmdir,
	.open = envs_open,
	.read = envs_read,
	.write = envs_write,
	.flush = envs_flush,
	.release = envs_release,
	.abandon = envs_abandon,
	.end = envs_end,
	.poll = envs_poll,
};
