/*
 * paths.c - the /llm/paths tree over plan_engine.
 *
 * Inodes: a task's folder is PATHS_BIT | id << 4, its files add 1..7; ids
 * are handed out per name for the daemon's lifetime, so a name always
 * maps to the same inodes.
 *
 * Owners: each name records who made its task (the uid and gid of the
 * mkdir) and the folder's mode (0700 until its owner chmods it); the
 * kernel enforces them (the mount always has default_permissions).  A
 * task acts for that owner: its submission carries the owner's uid and
 * gid into the engine (plan_engine_submit_as()), whose checks run as them.
 *
 * Waiting: a read of an unfinished result, or a poll on one, holds no
 * thread: it is parked (fs/park.h) and answered when the engine's on_change
 * notice says the task ended, or EINTR when the reader is interrupted.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/store/store.h"
#include "fs/jobtext.h"
#include "fs/park.h"
#include "fs/paths.h"
#include "scheduler/ledger.h"
#include "scheduler/mining_ledger.h"
#include "scheduler/plan_engine.h"
#include "scheduler/env.h"

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
/* Model cards larger than this are not read. */
#define CARD_MAX (1u << 20)

/* A task name and who owns its folder; kept for the daemon's lifetime. */
struct task_ent {
	char *name;
	uid_t uid;
	gid_t gid;
	uint32_t mode;  /* permission bits of the folder */
	uint64_t made;  /* bumped by each mkdir: handles of an older task fail */
};

/*
 * Lock order: mkdir_lock, the engine's lock, then p->lock (on_change()
 * takes it under the engine's); no engine call is made with p->lock held.
 */
struct fs_paths {
	struct fs *fs;
	struct plan_engine *e;
	pthread_mutex_t mkdir_lock; /* one mkdir at a time: taken before all */
	pthread_mutex_t lock; /* names, cards_gen, handles */
	struct fs_park *park; /* reads and polls of results not ready */
	struct task_ent *names; /* id - 1 -> name */
	size_t n, cap;
	uint64_t cards_gen;  /* models_gen when the cards were read */
	int cards_read;
	/* Open files: a session that ends while they are open never releases them. */
	struct fs_paths_handle *handles;
	/* The mining ledger, opened at the first revenue (docs/mining.md): models
	 * mined here earn for their share holders.  After every other lock. */
	pthread_mutex_t ledger_lock;
	struct ledger *ledger;
	int ledger_tried;
};

struct fs_paths_handle {
	struct fs_paths_handle *prev, *next; /* p->handles */
	uint64_t ino;
	int file; /* F_*, or -1 for .stats / .models */
	char *name;
	uint64_t made; /* the task's mkdir count at open */
	char *buf; /* what reads return */
	size_t len;
	int have; /* buf is filled */
	struct fs_jobtext text; /* task or feedback; done: submitted since the last write */
};

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
		if (!strcmp(p->names[i].name, name)) {
			id = i + 1;
			goto out;
		}
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		struct task_ent *v = realloc(p->names, cap * sizeof(*v));

		if (!v)
			goto out;
		p->names = v;
		p->cap = cap;
	}
	/* A task not made by mkdir here is the daemon's own, and private. */
	p->names[p->n] = (struct task_ent){ .name = strdup(name), .uid = p->fs->uid,
					    .gid = p->fs->gid, .mode = 0700 };
	if (p->names[p->n].name)
		id = ++p->n;
out:
	pthread_mutex_unlock(&p->lock);
	return id;
}

static size_t ino_id(uint64_t ino)
{
	return (size_t)((ino & ~PATHS_BIT) >> 4);
}

/* The name of ino's task, and what its entry says when ret_ent is set. */
static char *id_name_ent(struct fs_paths *p, uint64_t ino, struct task_ent *ret_ent)
{
	size_t id = ino_id(ino);
	char *name = NULL;

	pthread_mutex_lock(&p->lock);
	if (id >= 1 && id <= p->n) {
		name = strdup(p->names[id - 1].name);
		if (ret_ent)
			*ret_ent = p->names[id - 1];
	}
	pthread_mutex_unlock(&p->lock);
	return name;
}

static char *id_name(struct fs_paths *p, uint64_t ino)
{
	return id_name_ent(p, ino, NULL);
}

static int task_exists(struct fs_paths *p, const char *name)
{
	char *s = NULL;
	int r = plan_engine_status(p->e, name, &s);

	free(s);
	return r == 0;
}

/* ---- model cards -------------------------------------------------------- */

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

/* The text of models/<m>/<file> when it is a regular file up to CARD_MAX. */
static int read_card_file(struct fs_paths *p, const struct model_dir *m,
			  const char *file, struct cat_attr *a, char **ret)
{
	struct cas_store *st = p->fs->st;
	struct cas_file *f = NULL;
	char *buf;
	ssize_t n;
	int r;

	*ret = NULL;
	r = cas_lookup(st, m->ino, file, a);
	if (r < 0 || !S_ISREG(a->mode) || a->size > CARD_MAX)
		return 0;
	r = cas_file_open(st, a->ino, &f);
	if (r < 0)
		return r;
	buf = malloc(cas_file_size(f) + 1);
	n = buf ? cas_file_read(st, f, buf, cas_file_size(f), 0, NULL) : -ENOMEM;
	cas_file_free(f);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	buf[n] = '\0';
	*ret = buf;
	return 0;
}

/*
 * The cards of envs/ (fs/envs.c): one per running env with an endpoint, made by the daemon
 * (so trusted: it names a unix socket), after the cards of models/, whose names win.  The
 * engine takes the cards with the models' ones (n of *cards).
 */
static int add_env_cards(struct fs_paths *p, struct plan_card **cards, size_t *n,
			 char **ret_warnings)
{
	struct env_card *ec = NULL;
	struct plan_card *all;
	size_t nec = 0, m = *n, i, j;
	int r = fs_envs_cards(p->fs, &ec, &nec);

	if (r < 0 || nec == 0) {
		env_cards_free(ec, nec);
		return r < 0 ? r : plan_engine_set_models(p->e, *cards, *n, ret_warnings);
	}
	all = realloc(*cards, (m + nec) * sizeof(*all));
	if (!all) {
		env_cards_free(ec, nec);
		return -ENOMEM;
	}
	*cards = all;
	for (i = 0; i < nec; i++) {
		for (j = 0; j < *n && strcmp(all[j].name, ec[i].name); j++)
			;
		if (j < *n)
			continue;
		memset(&all[m], 0, sizeof(all[m]));
		all[m].name = ec[i].name;
		all[m].card_json = ec[i].card_json;
		all[m].folder_uid = all[m].card_uid = p->fs->uid;
		all[m].folder_mode = 0755;
		all[m].card_mode = 0644;
		m++;
	}
	r = plan_engine_set_models(p->e, all, m, ret_warnings);
	env_cards_free(ec, nec);
	return r;
}

/*
 * The engine's cards from models/<m>/card.json and README.md, read from the
 * store with their stored owners and modes: the engine judges by them
 * whether a card may run commands or read keys (plan_model.h, "Trust").
 */
static int load_cards(struct fs_paths *p, const struct model_dirs *d,
		      char **ret_warnings)
{
	struct plan_card *cards = calloc(d->n ? d->n : 1, sizeof(*cards));
	char **texts = calloc(2 * d->n + 1, sizeof(*texts));
	struct cat_attr a;
	size_t i, n = 0;
	int r = cards && texts ? 0 : -ENOMEM;

	for (i = 0; r == 0 && i < d->n; i++) {
		struct plan_card *c = &cards[n];

		r = read_card_file(p, &d->v[i], "card.json", &a, &texts[2 * i]);
		if (r < 0 || !texts[2 * i])
			continue;
		c->name = d->v[i].name;
		c->card_json = texts[2 * i];
		c->card_uid = a.uid;
		c->card_mode = a.mode & 07777;
		c->folder_uid = d->v[i].uid;
		c->folder_mode = d->v[i].mode & 07777;
		r = read_card_file(p, &d->v[i], "README.md", &a, &texts[2 * i + 1]);
		c->readme = texts[2 * i + 1];
		n++;
	}
	if (r == 0)
		r = add_env_cards(p, &cards, &n, ret_warnings);
	for (i = 0; texts && i < 2 * d->n; i++)
		free(texts[i]);
	free(texts);
	free(cards);
	return r;
}

/*
 * Brings the engine's cards up to date with models/ when it changed since
 * they were last read.  A busy engine keeps its cards until the next submit.
 */
static void refresh_cards(struct fs_paths *p)
{
	uint64_t gen = atomic_load(&p->fs->models_gen);
	struct model_dirs d = { 0 };
	char *warnings = NULL;
	size_t i;
	int r;

	pthread_mutex_lock(&p->lock);
	r = p->cards_read && gen == p->cards_gen;
	pthread_mutex_unlock(&p->lock);
	if (r)
		return;
	r = cas_children(p->fs->st, CAT_ROOT_INO, add_model_dir, &d);
	if (r == 0)
		r = load_cards(p, &d, &warnings);
	for (i = 0; i < d.n; i++)
		free(d.v[i].name);
	free(d.v);
	if (warnings)
		fs_log(p->fs->log, LOG_WARNING, "paths: %s", warnings);
	free(warnings);
	if (r < 0) {
		if (r != -EBUSY)
			fs_log(p->fs->log, LOG_ERR, "paths: cannot read model "
			       "cards: %s", strerror(-r));
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->cards_read = 1;
	p->cards_gen = gen;
	pthread_mutex_unlock(&p->lock);
}

/* ---- waiting for results ------------------------------------------------ */

/* The park's result: the engine's (-EAGAIN until the task ends). */
static int park_result(void *arg, const char *name, char **ret_text, size_t *ret_len)
{
	struct fs_paths *p = arg;

	return plan_engine_result(p->e, name, ret_text, ret_len);
}

/* The engine's notice (engine lock held; no engine calls). */
static void on_change(void *arg, const char *name)
{
	struct fs_paths *p = arg;

	fs_park_notice(p->park, name);
}

/* Answers every kept request (the session is ending) and stops the watcher. */
void fs_paths_drain(struct fs_paths *p)
{
	if (p)
		fs_park_drain(p->park);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void on_revenue(void *arg, const char *model, double cost_usd);

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
	pthread_mutex_init(&p->mkdir_lock, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->ledger_lock, NULL);
	r = fs_park_open(park_result, p, &p->park);
	if (r < 0)
		goto fail;
	if (asprintf(&db, "%s/stats.db", state_dir) < 0) {
		db = NULL;
		r = -ENOMEM;
		goto fail;
	}
	cfg.db_path = db;
	cfg.workers = 2;
	cfg.planner_model = planner;
	cfg.on_change = on_change;
	cfg.on_change_arg = p;
	cfg.on_revenue = on_revenue;
	cfg.on_revenue_arg = p;
	cfg.trusted_uids = fs->trusted_uids;
	cfg.n_trusted_uids = fs->n_trusted_uids;
	r = plan_engine_open(&cfg, &p->e, ret_warnings);
	if (r < 0)
		goto fail;
	refresh_cards(p); /* before any task: tasks plan on them */
	free(db);
	*ret = p;
	return 0;
fail:
	free(db);
	fs_paths_close(p);
	return r;
}

/*
 * A model call's price is revenue for the model's share holders when the model was mined in
 * this store: booked in the ledger with its shares (mining_ledger_revenue()).  Other models
 * (-ENOENT) and a store that never mined (no ledger) book nothing.
 */
static void on_revenue(void *arg, const char *model, double cost_usd)
{
	struct fs_paths *p = arg;
	struct mining_ledger_cfg cfg;
	int64_t micro = isfinite(cost_usd) && cost_usd > 0 ? llround(cost_usd * 1e6) : 0;
	char ev[64], *path;
	int r;

	if (micro <= 0)
		return;
	pthread_mutex_lock(&p->ledger_lock);
	if (!p->ledger_tried) {
		p->ledger_tried = 1;
		path = ledger_path(cas_store_dir(p->fs->st));
		if (path && access(path, F_OK) == 0 && ledger_open(path, 0, &p->ledger) < 0)
			p->ledger = NULL;
		free(path);
	}
	if (p->ledger) {
		mining_ledger_cfg_init(&cfg);
		snprintf(ev, sizeof(ev), "{\"usd\":%.9g}", cost_usd);
		r = mining_ledger_revenue(p->ledger, &cfg, model, micro, ev, NULL);
		if (r < 0 && r != -ENOENT)
			fs_log(p->fs->log, LOG_ERR, "paths: booking %s's revenue: %s", model,
			       strerror(-r));
	}
	pthread_mutex_unlock(&p->ledger_lock);
}

static void handle_free(struct fs_paths_handle *h);

void fs_paths_close(struct fs_paths *p)
{
	struct fs_paths_handle *h;
	size_t i;

	if (!p)
		return;
	fs_paths_drain(p);
	/* Ends every task; its notices go to the drained park, which drops them. */
	plan_engine_close(p->e);
	fs_park_close(p->park);
	ledger_close(p->ledger);
	while ((h = p->handles)) {
		p->handles = h->next;
		handle_free(h);
	}
	for (i = 0; i < p->n; i++)
		free(p->names[i].name);
	free(p->names);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->mkdir_lock);
	pthread_mutex_destroy(&p->ledger_lock);
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
	struct task_ent ent = { .uid = p->fs->uid, .gid = p->fs->gid };
	uint32_t mode;
	char *task;
	int ok;

	if (ino == PATHS_INO) {
		/* Like /tmp: anyone makes tasks, only owners remove them. */
		mode = S_IFDIR | 01777;
	} else if (ino == PATHS_STATS_INO || ino == PATHS_MODELS_INO) {
		mode = S_IFREG | 0444;
	} else {
		if ((ino & 15) >= F_MAX)
			return -ENOENT;
		task = id_name_ent(p, ino, &ent);
		ok = task && task_exists(p, task);
		free(task);
		if (!ok)
			return -ENOENT;
		mode = files[ino & 15].mode;
		if ((ino & 15) == F_DIR)
			mode = S_IFDIR | ent.mode;
	}
	memset(sb, 0, sizeof(*sb));
	sb->st_ino = ino;
	sb->st_mode = mode;
	sb->st_nlink = S_ISDIR(mode) ? 2 : 1;
	sb->st_uid = ent.uid;
	sb->st_gid = ent.gid;
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

static void set_owner(struct fs_paths *p, size_t id, uid_t uid, gid_t gid,
		      uint32_t mode, int fresh)
{
	struct task_ent *t;

	pthread_mutex_lock(&p->lock);
	t = &p->names[id - 1];
	t->uid = uid;
	t->gid = gid;
	t->mode = mode;
	t->made += fresh;
	pthread_mutex_unlock(&p->lock);
}

int fs_paths_mkdir(struct fs_paths *p, uint64_t parent, const char *name,
		   uid_t uid, gid_t gid, uint32_t mode, uint64_t *ret_ino)
{
	size_t id;
	int r;

	if (parent != PATHS_INO)
		return -EPERM;
	if (!plan_engine_name_valid(name))
		return -EINVAL;
	pthread_mutex_lock(&p->mkdir_lock);
	r = task_exists(p, name) ? -EEXIST : 0;
	id = r == 0 ? name_id(p, name) : 0;
	if (r == 0 && !id)
		r = -ENOMEM;
	if (r < 0)
		goto out;
	/*
	 * While it is made, the task is the daemon's and private: an entry
	 * left by an earlier task of that name must not show it to its owner.
	 */
	set_owner(p, id, p->fs->uid, p->fs->gid, 0700, 1);
	r = plan_engine_create(p->e, name);
	if (r < 0)
		goto out;
	/* Group and others get nothing until the owner says so (chmod). */
	set_owner(p, id, uid, gid, mode & 0700, 0);
	*ret_ino = task_ino(id, F_DIR);
out:
	pthread_mutex_unlock(&p->mkdir_lock);
	return r;
}

int fs_paths_chmod(struct fs_paths *p, uint64_t ino, uint32_t mode)
{
	size_t id = ino_id(ino);

	if (!(ino & PATHS_BIT) || (ino & 15) != F_DIR)
		return -EPERM;
	pthread_mutex_lock(&p->lock);
	if (id >= 1 && id <= p->n)
		p->names[id - 1].mode = mode & 0777;
	pthread_mutex_unlock(&p->lock);
	return id >= 1 && id <= p->n ? 0 : -ENOENT;
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
		struct task_ent ent = { 0 };

		h->name = id_name_ent(p, ino, &ent);
		h->made = ent.made;
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
	pthread_mutex_lock(&p->lock);
	h->next = p->handles;
	if (p->handles)
		p->handles->prev = h;
	p->handles = h;
	pthread_mutex_unlock(&p->lock);
	*ret = h;
	return 0;
fail:
	free(h->name);
	free(h);
	return r;
}

/* A result as it is on first read; several reads of one handle may race. */
static int fill_result(struct fs_paths *p, struct fs_paths_handle *h)
{
	char *text = NULL;
	size_t len = 0;
	int r = plan_engine_result(p->e, h->name, &text, &len);

	if (r < 0)
		return r;
	pthread_mutex_lock(&p->lock);
	if (!h->have) {
		h->buf = text;
		h->len = len;
		h->have = 1;
		text = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	free(text);
	return 0;
}

void fs_paths_read(struct fs_paths *p, struct fs_paths_handle *h, fuse_req_t req,
		   size_t size, off_t off)
{
	int r = 0, have;

	pthread_mutex_lock(&p->lock);
	have = h->have;
	pthread_mutex_unlock(&p->lock);
	if (!have && h->file == F_RESULT) {
		r = fill_result(p, h);
		if (r == -EAGAIN)
			return fs_park_read(p->park, h->name, req, size, off);
	} else if (!have) {
		r = fill(p, h);
	}
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fs_reply_text(req, h->buf, h->len, size, off);
}

int fs_paths_write(struct fs_paths *p, struct fs_paths_handle *h,
		   const char *buf, size_t len, off_t off)
{
	int r;

	(void)p;
	if (h->file != F_TASK && h->file != F_FEEDBACK)
		return -EBADF;
	r = fs_jobtext_write(&h->text, buf, len, off, WRITE_MAX);
	if (r < 0)
		return r;
	h->text.done = 0;
	return (int)len;
}

/*
 * Is h's task still the one it opened (not removed and made again)?  Its
 * owner lands in *ret_ent.
 */
static int task_is(struct fs_paths *p, struct fs_paths_handle *h,
		   struct task_ent *ret_ent)
{
	char *name = id_name_ent(p, h->ino, ret_ent);
	int same = name && ret_ent->made == h->made && task_exists(p, name);

	free(name);
	return same;
}

int fs_paths_flush(struct fs_paths *p, struct fs_paths_handle *h)
{
	struct task_ent ent = { 0 };
	struct plan_proc_user writer;
	int r;

	if (!h->text.wrote || h->text.done)
		return 0;
	if (!task_is(p, h, &ent)) {
		/* The task was removed and made again, perhaps by someone else. */
		return -ENOENT;
	}
	if (h->file == F_TASK) {
		/*
		 * The task acts for its folder's owner, the uid and gid of its
		 * mkdir: only they (or root) may write its task file, and its
		 * checks run as them, never as the daemon.
		 */
		writer = (struct plan_proc_user){ .uid = ent.uid, .gid = ent.gid };
		refresh_cards(p);
		r = plan_engine_submit_as(p->e, h->name, fs_jobtext_str(&h->text),
					  h->text.len, &writer);
	} else {
		r = plan_engine_feedback(p->e, h->name, fs_jobtext_str(&h->text),
					 h->text.len);
	}
	if (r == 0)
		h->text.done = 1;
	return r;
}

static void handle_free(struct fs_paths_handle *h)
{
	free(h->name);
	free(h->buf);
	fs_jobtext_free(&h->text);
	free(h);
}

void fs_paths_release(struct fs_paths *p, struct fs_paths_handle *h)
{
	if (!h)
		return;
	fs_paths_flush(p, h);
	pthread_mutex_lock(&p->lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		p->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&p->lock);
	fs_park_forget(p->park, h);
	handle_free(h);
}

/* A poll on an unfinished result keeps its handle until the task ends. */
int fs_paths_poll(struct fs_paths *p, struct fs_paths_handle *h,
		  struct fuse_pollhandle *ph, unsigned *ret_events)
{
	*ret_events = POLLIN | POLLRDNORM;
	if (h->file == F_RESULT)
		return fs_park_poll(p->park, h->name, h, ph, ret_events);
	if (ph)
		fuse_pollhandle_destroy(ph);
	return 0;
}

/* ---- the paths/ row (subtree.h) ------------------------------------------ */

/* /llm/paths keeps its state (statistics, copied cards) in STORE/paths. */
static int paths_start(struct fs *fs, const struct fs_options *opt)
{
	char *dir = NULL, *warnings = NULL;
	int r;

	if (asprintf(&dir, "%s/paths", cas_store_dir(fs->st)) < 0)
		return 0;
	r = fs_paths_open(fs, dir, opt->planner, &fs->paths, &warnings);
	if (warnings)
		fs_log(fs->log, LOG_INFO, "paths: %s", warnings);
	if (r < 0) {
		fs_log(fs->log, LOG_ERR, "paths/ disabled: %s", strerror(-r));
		fs->paths = NULL;
	}
	free(warnings);
	free(dir);
	return 0;
}

static void paths_stop(struct fs *fs)
{
	fs_paths_close(fs->paths);
	fs->paths = NULL;
}

static int paths_present(const struct fs *fs)
{
	return fs->paths != NULL;
}

static int paths_lookup(struct fs *fs, fuse_req_t req, uint64_t parent,
			const char *name, uint64_t *ret_ino)
{
	return fs_paths_lookup(fs->paths, parent, name, ret_ino);
}

static int paths_getattr(struct fs *fs, uint64_t ino, struct stat *sb,
			 double *ret_timeout)
{
	return fs_paths_stat(fs->paths, ino, sb);
}

static int paths_setattr(struct fs *fs, fuse_req_t req, uint64_t ino,
			 const struct stat *attr, int to_set, void *h,
			 struct stat *ret, double *ret_timeout)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
			  FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW |
			  FUSE_SET_ATTR_CTIME;
	int r;

	if ((to_set & FUSE_SET_ATTR_MODE) &&
	    !(to_set & ~(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_CTIME))) {
		/* The kernel let only the owner or root this far. */
		r = fs_paths_chmod(fs->paths, ino, attr->st_mode);
		return r < 0 ? r : fs_paths_stat(fs->paths, ino, ret);
	}
	/* `echo x > task` truncates first: the write replaces the text anyway. */
	if (!(to_set & ~(FUSE_SET_ATTR_SIZE | times)) &&
	    (!(to_set & FUSE_SET_ATTR_SIZE) || attr->st_size == 0))
		return fs_paths_stat(fs->paths, ino, ret);
	return -EPERM;
}

static int paths_list(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add,
		      void *arg)
{
	return fs_paths_list(fs->paths, ino, add, arg);
}

static int paths_mkdir(struct fs *fs, fuse_req_t req, uint64_t parent,
		       const char *name, uint32_t mode, uint64_t *ret_ino)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	return fs_paths_mkdir(fs->paths, parent, name, ctx->uid, ctx->gid, mode, ret_ino);
}

static int paths_rmdir(struct fs *fs, fuse_req_t req, uint64_t parent,
		       const char *name)
{
	return fs_paths_rmdir(fs->paths, parent, name);
}

static int paths_open(struct fs *fs, fuse_req_t req, uint64_t ino,
		      struct fuse_file_info *fi, void **ret_h)
{
	struct fs_paths_handle *h;
	int r = fs_paths_fopen(fs->paths, ino, fi->flags, &h);

	if (r < 0)
		return r;
	fi->direct_io = 1;
	fi->nonseekable = 0;
	*ret_h = h;
	return 0;
}

static void paths_read(struct fs *fs, fuse_req_t req, void *h, uint64_t ino,
		       size_t size, off_t off)
{
	fs_paths_read(fs->paths, h, req, size, off);
}

static int paths_write(struct fs *fs, fuse_req_t req, void *h, uint64_t ino,
		       const char *buf, size_t size, off_t off)
{
	int r = fs_paths_write(fs->paths, h, buf, size, off);

	return r < 0 ? r : 0;
}

static int paths_flush(struct fs *fs, void *h)
{
	return fs_paths_flush(fs->paths, h);
}

static void paths_release(struct fs *fs, void *h)
{
	fs_paths_release(fs->paths, h);
}

static int paths_poll(struct fs *fs, void *h, struct fuse_pollhandle *ph,
		      unsigned *ret_events)
{
	return fs_paths_poll(fs->paths, h, ph, ret_events);
}

static void paths_end(struct fs *fs)
{
	fs_paths_drain(fs->paths);
}

const struct fs_subtree_ops fs_paths_ops = {
	.start = paths_start,
	.stop = paths_stop,
	.present = paths_present,
	.lookup = paths_lookup,
	.getattr = paths_getattr,
	.setattr = paths_setattr,
	.list = paths_list,
	.mkdir = paths_mkdir,
	.rmdir = paths_rmdir,
	.open = paths_open,
	.read = paths_read,
	.write = paths_write,
	.flush = paths_flush,
	.release = paths_release,
	.poll = paths_poll,
	.end = paths_end,
};
