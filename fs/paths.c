/*
 * paths.c - the /llm/paths tree over plan_engine.
 *
 * Inodes: a task's folder is PATHS_BIT | id << 4, its files add 1..7; ids
 * are handed out per name for the daemon's lifetime, so a name always
 * maps to the same inodes.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/store.h"
#include "fs/paths.h"
#include "scheduler/plan_engine.h"

enum { F_DIR, F_TASK, F_STATUS, F_PLAN, F_CANDS, F_RESULT, F_TRACE, F_FEEDBACK, F_MAX };

static const struct {
	const char *name;
	uint32_t mode;
} files[F_MAX] = {
	[F_DIR] = { NULL, S_IFDIR | 0755 },
	[F_TASK] = { "task", S_IFREG | 0644 },
	[F_STATUS] = { "status", S_IFREG | 0444 },
	[F_PLAN] = { "plan.json", S_IFREG | 0444 },
	[F_CANDS] = { "candidates.json", S_IFREG | 0444 },
	[F_RESULT] = { "result", S_IFREG | 0444 },
	[F_TRACE] = { "trace.jsonl", S_IFREG | 0444 },
	[F_FEEDBACK] = { "feedback", S_IFREG | 0644 },
};

/* The largest task or feedback text buffered from writes. */
#define WRITE_MAX (1u << 20)
/* Model cards larger than this are not copied out. */
#define CARD_MAX (1u << 20)

struct fs_paths {
	struct fs *fs;
	struct plan_engine *e;
	char *cards_dir;
	pthread_mutex_t lock; /* names, exported_gen, pollers, closing */
	pthread_cond_t idle;  /* pollers reached 0 */
	char **names;         /* id - 1 -> name */
	size_t n, cap;
	uint64_t exported_gen;
	int exported;
	unsigned pollers;
	int closing;
};

struct fs_paths_handle {
	uint64_t ino;
	int file; /* F_*, or -1 for .stats / .models */
	char *name;
	char *buf; /* what reads return */
	size_t len;
	int have; /* buf is filled */
	char *wbuf;
	size_t wlen;
	int wrote, submitted;
};

int fs_paths_owns(uint64_t ino)
{
	return ino == PATHS_INO || ino == PATHS_STATS_INO || ino == PATHS_MODELS_INO ||
	       (ino >> 61) == 1;
}

static uint64_t task_ino(size_t id, int file)
{
	return PATHS_BIT | (uint64_t)id << 4 | (uint64_t)file;
}

/* The id of name, handed out on first use; 0 on allocation failure. */
static size_t name_id(struct fs_paths *p, const char *name)
{
	size_t i, id = 0;

	pthread_mutex_lock(&p->lock);
	for (i = 0; i < p->n; i++)
		if (!strcmp(p->names[i], name)) {
			id = i + 1;
			goto out;
		}
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		char **v = realloc(p->names, cap * sizeof(*v));

		if (!v)
			goto out;
		p->names = v;
		p->cap = cap;
	}
	p->names[p->n] = strdup(name);
	if (p->names[p->n])
		id = ++p->n;
out:
	pthread_mutex_unlock(&p->lock);
	return id;
}

static char *id_name(struct fs_paths *p, uint64_t ino)
{
	size_t id = (size_t)((ino & ~PATHS_BIT) >> 4);
	char *name = NULL;

	pthread_mutex_lock(&p->lock);
	if (id >= 1 && id <= p->n)
		name = strdup(p->names[id - 1]);
	pthread_mutex_unlock(&p->lock);
	return name;
}

static int task_exists(struct fs_paths *p, const char *name)
{
	char *s = NULL;
	int r = plan_engine_status(p->e, name, &s);

	free(s);
	return r == 0;
}

/* ---- model cards -------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	return ftw->level == 0 ? 0 : remove(path);
}

struct model_dir {
	char *name;
	uint64_t ino;
	uint32_t uid, mode; /* of the stored folder */
};

struct model_dirs {
	struct model_dir *v;
	size_t n, cap;
};

static int add_model_dir(void *arg, const char *name, const struct cat_attr *a)
{
	struct model_dirs *d = arg;

	if (!S_ISDIR(a->mode))
		return 0;
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct model_dir *v = realloc(d->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n].name = strdup(name);
	if (!d->v[d->n].name)
		return -ENOMEM;
	d->v[d->n].uid = a->uid;
	d->v[d->n].mode = a->mode;
	d->v[d->n++].ino = a->ino;
	return 0;
}

/*
 * Gives a copy the stored owner and the stored group and other write bits:
 * the engine judges by them whether a card may run commands or read keys
 * (plan_model.h, "Trust"), so a user's card must not become the daemon's
 * by being copied.  The copy stays private to the daemon (cards_dir is
 * 0700); base is its own mode.
 */
static int carry_owner(const char *path, uint32_t uid, uint32_t mode, mode_t base)
{
	if (uid != geteuid() && lchown(path, uid, (gid_t)-1) < 0)
		return -errno;
	return chmod(path, base | (mode & (S_IWGRP | S_IWOTH))) < 0 ? -errno : 0;
}

/* Copies models/<m>/<file> out of the store into cards_dir/<m>/<file>. */
static int export_file(struct fs_paths *p, const struct model_dir *m, const char *file)
{
	struct cas_store *st = p->fs->st;
	struct cas_file *f = NULL;
	struct cat_attr a;
	char *path = NULL, *buf = NULL;
	ssize_t n;
	FILE *out;
	int r;

	r = cas_lookup(st, m->ino, file, &a);
	if (r < 0 || !S_ISREG(a.mode) || a.size > CARD_MAX)
		return 0;
	r = cas_file_open(st, a.ino, &f);
	if (r < 0)
		return r;
	buf = malloc(cas_file_size(f) + 1);
	n = buf ? cas_file_read(st, f, buf, cas_file_size(f), 0, NULL) : -ENOMEM;
	cas_file_free(f);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	if (asprintf(&path, "%s/%s", p->cards_dir, m->name) < 0) {
		r = -ENOMEM;
		goto out;
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto out;
	}
	r = carry_owner(path, m->uid, m->mode, 0700);
	if (r < 0)
		goto refuse;
	free(path);
	if (asprintf(&path, "%s/%s/%s", p->cards_dir, m->name, file) < 0) {
		path = NULL;
		r = -ENOMEM;
		goto out;
	}
	out = fopen(path, "we");
	if (!out) {
		r = -errno;
		goto out;
	}
	r = fwrite(buf, 1, (size_t)n, out) == (size_t)n ? 0 : -EIO;
	if (fclose(out) != 0 && r == 0)
		r = -errno;
	if (r == 0)
		r = carry_owner(path, a.uid, a.mode, 0600);
refuse:
	if (r == -EPERM) {
		/* A daemon not run as root cannot give the copy its owner:
		 * the card is left out rather than made the daemon's. */
		fs_log(p->fs->log, LOG_WARNING, "paths: models/%s/%s: the daemon "
		       "cannot give its copy the owner uid %u: not used", m->name,
		       file, (unsigned)(m->uid != geteuid() ? m->uid : a.uid));
		unlink(path);
		r = 0;
	}
out:
	free(path);
	free(buf);
	return r;
}

/*
 * Brings the engine's cards up to date with models/ when it changed since
 * the last copy.  A busy engine keeps its cards until the next submit.
 */
static void refresh_cards(struct fs_paths *p)
{
	uint64_t gen = atomic_load(&p->fs->models_gen);
	struct model_dirs d = { 0 };
	char *warnings = NULL;
	size_t i;
	int r;

	pthread_mutex_lock(&p->lock);
	r = p->exported && gen == p->exported_gen;
	pthread_mutex_unlock(&p->lock);
	if (r)
		return;
	nftw(p->cards_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	r = cas_children(p->fs->st, CAT_ROOT_INO, add_model_dir, &d);
	for (i = 0; r == 0 && i < d.n; i++) {
		r = export_file(p, &d.v[i], "card.json");
		if (r == 0)
			r = export_file(p, &d.v[i], "README.md");
	}
	for (i = 0; i < d.n; i++)
		free(d.v[i].name);
	free(d.v);
	if (r < 0) {
		fs_log(p->fs->log, LOG_ERR, "paths: cannot copy model cards: %s",
		       strerror(-r));
		return;
	}
	if (!p->e)
		goto done;
	r = plan_engine_reload_models(p->e, &warnings);
	if (warnings)
		fs_log(p->fs->log, LOG_WARNING, "paths: %s", warnings);
	free(warnings);
	if (r < 0)
		return;
done:
	pthread_mutex_lock(&p->lock);
	p->exported = 1;
	p->exported_gen = gen;
	pthread_mutex_unlock(&p->lock);
}

/* ---- lifecycle ---------------------------------------------------------- */

int fs_paths_open(struct fs *fs, const char *state_dir, const char *planner,
		  struct fs_paths **ret, char **ret_warnings)
{
	struct plan_engine_config cfg = { 0 };
	struct fs_paths *p;
	char *db = NULL;
	int r;

	*ret_warnings = NULL;
	if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fs = fs;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->idle, NULL);
	if (asprintf(&p->cards_dir, "%s/cards", state_dir) < 0 ||
	    asprintf(&db, "%s/stats.db", state_dir) < 0) {
		p->cards_dir = NULL;
		r = -ENOMEM;
		goto fail;
	}
	if (mkdir(p->cards_dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	/* Cards first, so the engine starts with them. */
	refresh_cards(p);
	cfg.db_path = db;
	cfg.models_dir = p->cards_dir;
	cfg.workers = 2;
	cfg.planner_model = planner;
	cfg.trusted_uids = fs->trusted_uids;
	cfg.n_trusted_uids = fs->n_trusted_uids;
	r = plan_engine_open(&cfg, &p->e, ret_warnings);
	if (r < 0)
		goto fail;
	free(db);
	*ret = p;
	return 0;
fail:
	free(db);
	fs_paths_close(p);
	return r;
}

void fs_paths_close(struct fs_paths *p)
{
	size_t i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->closing = 1;
	pthread_mutex_unlock(&p->lock);
	/* Ends every wait, so poll watchers return. */
	plan_engine_close(p->e);
	pthread_mutex_lock(&p->lock);
	while (p->pollers)
		pthread_cond_wait(&p->idle, &p->lock);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->n; i++)
		free(p->names[i]);
	free(p->names);
	free(p->cards_dir);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->idle);
	free(p);
}

/* ---- the namespace ------------------------------------------------------ */

int fs_paths_lookup(struct fs_paths *p, uint64_t parent, const char *name,
		    uint64_t *ret_ino)
{
	size_t id;
	char *task;
	int f, ok;

	if (parent == PATHS_INO) {
		if (!strcmp(name, ".stats")) {
			*ret_ino = PATHS_STATS_INO;
			return 0;
		}
		if (!strcmp(name, ".models")) {
			*ret_ino = PATHS_MODELS_INO;
			return 0;
		}
		if (!plan_engine_name_valid(name) || !task_exists(p, name))
			return -ENOENT;
		id = name_id(p, name);
		if (!id)
			return -ENOMEM;
		*ret_ino = task_ino(id, F_DIR);
		return 0;
	}
	if (!(parent & PATHS_BIT) || (parent & 15) != F_DIR)
		return -ENOTDIR;
	task = id_name(p, parent);
	ok = task && task_exists(p, task);
	free(task);
	if (!ok)
		return -ENOENT;
	for (f = F_TASK; f < F_MAX; f++)
		if (!strcmp(name, files[f].name)) {
			*ret_ino = parent | (uint64_t)f;
			return 0;
		}
	return -ENOENT;
}

int fs_paths_stat(struct fs_paths *p, uint64_t ino, struct stat *sb)
{
	uint32_t mode;
	char *task;
	int ok;

	if (ino == PATHS_INO) {
		mode = S_IFDIR | 0755;
	} else if (ino == PATHS_STATS_INO || ino == PATHS_MODELS_INO) {
		mode = S_IFREG | 0444;
	} else {
		if ((ino & 15) >= F_MAX)
			return -ENOENT;
		task = id_name(p, ino);
		ok = task && task_exists(p, task);
		free(task);
		if (!ok)
			return -ENOENT;
		mode = files[ino & 15].mode;
	}
	memset(sb, 0, sizeof(*sb));
	sb->st_ino = ino;
	sb->st_mode = mode;
	sb->st_nlink = S_ISDIR(mode) ? 2 : 1;
	sb->st_uid = p->fs->uid;
	sb->st_gid = p->fs->gid;
	sb->st_blksize = 4096;
	sb->st_mtim.tv_sec = sb->st_ctim.tv_sec = sb->st_atim.tv_sec = time(NULL);
	/* Sizes change as a task runs: files are read with direct I/O. */
	return 0;
}

int fs_paths_list(struct fs_paths *p, uint64_t ino,
		  int (*add)(void *arg, const char *name, uint64_t ino, uint32_t mode),
		  void *arg)
{
	char **names = NULL;
	size_t n = 0, i, id;
	int r, f;

	if (ino == PATHS_INO) {
		r = add(arg, ".stats", PATHS_STATS_INO, S_IFREG);
		if (r == 0)
			r = add(arg, ".models", PATHS_MODELS_INO, S_IFREG);
		if (r == 0)
			r = plan_engine_names(p->e, &names, &n);
		for (i = 0; r == 0 && i < n; i++) {
			id = name_id(p, names[i]);
			r = id ? add(arg, names[i], task_ino(id, F_DIR), S_IFDIR) : -ENOMEM;
		}
		if (names)
			plan_engine_names_free(names, n);
		return r;
	}
	if (!(ino & PATHS_BIT) || (ino & 15) != F_DIR)
		return -ENOTDIR;
	for (f = F_TASK, r = 0; r == 0 && f < F_MAX; f++)
		r = add(arg, files[f].name, ino | (uint64_t)f, files[f].mode & S_IFMT);
	return r;
}

int fs_paths_mkdir(struct fs_paths *p, uint64_t parent, const char *name,
		   uint64_t *ret_ino)
{
	size_t id;
	int r;

	if (parent != PATHS_INO)
		return -EPERM;
	if (!plan_engine_name_valid(name))
		return -EINVAL;
	if (task_exists(p, name))
		return -EEXIST;
	r = plan_engine_create(p->e, name);
	if (r < 0)
		return r;
	id = name_id(p, name);
	if (!id)
		return -ENOMEM;
	*ret_ino = task_ino(id, F_DIR);
	return 0;
}

int fs_paths_rmdir(struct fs_paths *p, uint64_t parent, const char *name)
{
	if (parent != PATHS_INO)
		return -EPERM;
	return plan_engine_remove(p->e, name);
}

/* ---- files -------------------------------------------------------------- */

static int fill(struct fs_paths *p, struct fs_paths_handle *h)
{
	int r;

	switch (h->file) {
	case -1:
		r = h->ino == PATHS_STATS_INO ? plan_engine_stats(p->e, &h->buf)
					      : plan_engine_models_json(p->e, &h->buf);
		break;
	case F_TASK:
		r = plan_engine_task(p->e, h->name, &h->buf, &h->len);
		if (r == -ENODATA) {
			h->buf = strdup("");
			r = h->buf ? 0 : -ENOMEM;
		}
		h->have = r == 0;
		return r;
	case F_STATUS:
		r = plan_engine_status(p->e, h->name, &h->buf);
		break;
	case F_PLAN:
		r = plan_engine_plan_json(p->e, h->name, &h->buf);
		break;
	case F_CANDS:
		r = plan_engine_candidates_json(p->e, h->name, &h->buf);
		break;
	case F_TRACE:
		r = plan_engine_trace(p->e, h->name, &h->buf);
		break;
	case F_FEEDBACK:
		h->buf = strdup("");
		r = h->buf ? 0 : -ENOMEM;
		break;
	default:
		return -EINVAL;
	}
	if (r == 0) {
		h->len = strlen(h->buf);
		h->have = 1;
	}
	return r;
}

int fs_paths_fopen(struct fs_paths *p, uint64_t ino, int flags,
		   struct fs_paths_handle **ret)
{
	struct fs_paths_handle *h;
	int acc = flags & O_ACCMODE, r = 0;

	if (ino == PATHS_INO || (ino & PATHS_BIT && (ino & 15) == F_DIR))
		return -EISDIR;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ino = ino;
	h->file = ino & PATHS_BIT ? (int)(ino & 15) : -1;
	if (acc != O_RDONLY && h->file != F_TASK && h->file != F_FEEDBACK) {
		free(h);
		return -EACCES;
	}
	if (h->file != -1) {
		h->name = id_name(p, ino);
		if (!h->name || !task_exists(p, h->name)) {
			r = -ENOENT;
			goto fail;
		}
	}
	/* Reads see the file as it is at open; a result waits for the end. */
	if (acc == O_RDONLY && h->file != F_RESULT) {
		r = fill(p, h);
		if (r < 0)
			goto fail;
	}
	*ret = h;
	return 0;
fail:
	free(h->name);
	free(h);
	return r;
}

int fs_paths_read(struct fs_paths *p, struct fs_paths_handle *h, size_t size,
		  off_t off, int (*interrupted)(void *arg), void *arg,
		  const char **ret_data, size_t *ret_len)
{
	int r;

	if (!h->have && h->file == F_RESULT) {
		r = plan_engine_wait(p->e, h->name, -1, interrupted, arg);
		if (r < 0)
			return r;
		r = plan_engine_result(p->e, h->name, &h->buf, &h->len);
		if (r < 0)
			return r;
		h->have = 1;
	} else if (!h->have) {
		r = fill(p, h);
		if (r < 0)
			return r;
	}
	if ((size_t)off >= h->len) {
		*ret_data = NULL;
		*ret_len = 0;
		return 0;
	}
	*ret_data = h->buf + off;
	*ret_len = h->len - (size_t)off < size ? h->len - (size_t)off : size;
	return 0;
}

int fs_paths_write(struct fs_paths *p, struct fs_paths_handle *h,
		   const char *buf, size_t len, off_t off)
{
	size_t end = (size_t)off + len;
	char *t;

	(void)p;
	if (h->file != F_TASK && h->file != F_FEEDBACK)
		return -EBADF;
	if (end > WRITE_MAX)
		return -EFBIG;
	if (end > h->wlen) {
		t = realloc(h->wbuf, end);
		if (!t)
			return -ENOMEM;
		memset(t + h->wlen, 0, end - h->wlen);
		h->wbuf = t;
		h->wlen = end;
	}
	memcpy(h->wbuf + off, buf, len);
	h->wrote = 1;
	h->submitted = 0;
	return (int)len;
}

int fs_paths_flush(struct fs_paths *p, struct fs_paths_handle *h)
{
	int r;

	if (!h->wrote || h->submitted)
		return 0;
	if (h->file == F_TASK) {
		refresh_cards(p);
		r = plan_engine_submit(p->e, h->name, h->wbuf ? h->wbuf : "", h->wlen);
	} else {
		r = plan_engine_feedback(p->e, h->name, h->wbuf, h->wlen);
	}
	if (r == 0)
		h->submitted = 1;
	return r;
}

void fs_paths_release(struct fs_paths *p, struct fs_paths_handle *h)
{
	if (!h)
		return;
	fs_paths_flush(p, h);
	free(h->name);
	free(h->buf);
	free(h->wbuf);
	free(h);
}

struct poller {
	struct fs_paths *p;
	char *name;
	struct fuse_pollhandle *ph;
};

static int poll_closing(void *arg)
{
	struct fs_paths *p = arg;
	int c;

	pthread_mutex_lock(&p->lock);
	c = p->closing;
	pthread_mutex_unlock(&p->lock);
	return c;
}

static void *poll_main(void *arg)
{
	struct poller *w = arg;
	struct fs_paths *p = w->p;

	if (plan_engine_wait(p->e, w->name, -1, poll_closing, p) == 0)
		fuse_lowlevel_notify_poll(w->ph);
	fuse_pollhandle_destroy(w->ph);
	free(w->name);
	free(w);
	pthread_mutex_lock(&p->lock);
	if (--p->pollers == 0)
		pthread_cond_broadcast(&p->idle);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int fs_paths_poll(struct fs_paths *p, struct fs_paths_handle *h,
		  struct fuse_pollhandle *ph, unsigned *ret_events)
{
	struct poller *w;
	pthread_t t;
	int r;

	*ret_events = POLLIN | POLLRDNORM;
	if (h->file != F_RESULT) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		return 0;
	}
	r = plan_engine_wait(p->e, h->name, 0, NULL, NULL);
	if (r == 0 || r != -ETIMEDOUT || !ph) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		*ret_events = r == 0 || r != -ETIMEDOUT ? POLLIN | POLLRDNORM : 0;
		return 0;
	}
	*ret_events = 0;
	w = calloc(1, sizeof(*w));
	if (!w || !(w->name = strdup(h->name))) {
		free(w);
		fuse_pollhandle_destroy(ph);
		return -ENOMEM;
	}
	w->p = p;
	w->ph = ph;
	pthread_mutex_lock(&p->lock);
	p->pollers++;
	pthread_mutex_unlock(&p->lock);
	r = pthread_create(&t, NULL, poll_main, w);
	if (r) {
		pthread_mutex_lock(&p->lock);
		p->pollers--;
		pthread_mutex_unlock(&p->lock);
		fuse_pollhandle_destroy(ph);
		free(w->name);
		free(w);
		return -r;
	}
	pthread_detach(t);
	return 0;
}
