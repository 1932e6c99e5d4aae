/*
 * mining/: joint mining as folders (one row of the subtree table, fs/subtree.h).
 *
 *   mining/status                      the replicas' URL and the counts
 *   mining/providers/                  1777: anyone opts a provider in (mkdir)
 *     <name>/provider.json             0600, its owner writes it: kind local|slurm|remote ...
 *     <name>/status                    alive, jobs, device-seconds served, last error
 *   mining/accounts/                   1777: an account is a folder (mkdir) of its owner
 *     <name>/balance                   0444, its balance in the ledger (mining_book.h)
 *     <name>/transfer                  0200, its owner writes "to=NAME amount=MICRO key=ID"
 *                                      lines: each moves money when its line is written
 *   mining/ledger.jsonl                0444, the ledger's entries (docs/mining.md)
 *   mining/jobs/                       1777: anyone makes a job (mkdir); its owner removes it
 *     <job>/job                        the job file; closing it starts the job
 *     <job>/control                    "stop" or "resume"
 *     <job>/status rounds.tsv contributions.tsv metrics.tsv trainer_state.json
 *           events.out.tfevents.<time>.llmfs loss.svg samples.txt log
 *     <job>/result                     blocks until the job ends; the model is models/<job>/
 *
 * Every file maps onto one call of scheduler/mining_job.h (docs/mining.md).  A folder's owner
 * and mode are its mkdir's, so a job made with mode 0700 is private to its owner (and root);
 * files are read with direct I/O at their current size, and a read of result is parked
 * (fs/park.h) and answered when the job ends.
 *
 * Inodes: the folder FS_MINING_INO; the rest FS_MINING_TAG << 60 | kind << 48 | id << 8 |
 * file, kind 1-3 the folders providers/, accounts/, jobs/, 4 mining/status, 5-7 an entry of
 * each (file 0 its folder, 1 + its file's number), ids kept for the daemon's life.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/inval.h"
#include "fs/names.h"
#include "fs/park.h"
#include "fs/subtree.h"
#include "scheduler/mining_book.h"
#include "scheduler/mining_job.h"

#define WRITE_MAX (64u << 10)
#define TRANSFER_LINE_MAX 1024u /* a transfer request is one short line */
enum { A_BALANCE, A_TRANSFER, A_COUNT };  /* an account's files */

enum { K_PROVIDERS = 1, K_ACCOUNTS = 2, K_JOBS = 3, K_STATUS = 4, K_ENTRY = 5, K_LEDGER = 8 };

struct fs_mining {
	struct fs *fs;
	struct mining *m;
	struct mining_book *book;   /* the ledger's hook and views; NULL: no ledger */
	struct fs_park *park;       /* reads of results not ready */
	struct fs_names names[3];   /* ids of providers, accounts, jobs */
};

struct mhandle {
	int kind;                   /* enum mining_kind */
	char *name;
	int file;
	char *wbuf;
	size_t wlen;
	int wrote, done;
	uid_t uid;                  /* who opened it: a transfer spends only its owner's money */
};

static struct fs_mining *M(struct fs *fs)
{
	return fs->mining;
}

static uint64_t ino_of(int kind, size_t id, int file)
{
	return FS_TAG_BASE(FS_MINING_TAG) | (uint64_t)kind << 48 | (uint64_t)id << 8 |
	       (uint64_t)file;
}

static int ino_kind(uint64_t ino)
{
	return (int)((ino >> 48) & 0xfff);
}

static size_t ino_id(uint64_t ino)
{
	return (size_t)((ino >> 8) & 0xffffffffffULL);
}

static size_t name_id(struct fs_mining *t, int k, const char *name)
{
	return fs_names_id(&t->names[k], name);
}

/* The entry kind (enum mining_kind) and name of ino (caller frees), or NULL. */
static char *ino_name(struct fs_mining *t, uint64_t ino, int *ret_k)
{
	int k = ino_kind(ino) - K_ENTRY;

	if (k < 0 || k > 2)
		return NULL;
	*ret_k = k;
	return fs_names_get(&t->names[k], ino_id(ino));
}

/* ---- result readers (as fs/train.c) -------------------------------------------------------- */

/* The coordinator's notice, with its lock held: the park takes only its own. */
static void on_change(void *arg, const char *kind, const char *name)
{
	struct fs_mining *t = arg;

	if (!kind || !strcmp(kind, "jobs"))
		fs_park_notice(t->park, kind ? name : NULL);
}

/* The park's result: the job's summary once it ended (-EAGAIN before). */
static int park_result(void *arg, const char *name, char **ret_text, size_t *ret_len)
{
	struct fs_mining *t = arg;
	struct mining_info info;

	if (mining_info(t->m, MINING_JOBS, name, &info) == 0 && !info.ended)
		return -EAGAIN;
	return mining_job_read(t->m, name, MINING_F_RESULT, ret_text, ret_len);
}

/* ---- start and stop ------------------------------------------------------------------------ */

static int mining_start(struct fs *fs, const struct fs_options *opt)
{
	struct fs_mining *t;
	struct mining_config cfg = { 0 };
	char *dir = NULL, *warnings = NULL, exe[4096];
	ssize_t n;
	int r;

	if (!opt->mountpoint)
		return 0;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = '\0';
	t = calloc(1, sizeof(*t));
	if (!t || asprintf(&dir, "%s/mining", cas_store_dir(fs->st)) < 0) {
		free(t);
		return -ENOMEM;
	}
	t->fs = fs;
	for (int k = 0; k < 3; k++)
		fs_names_init(&t->names[k]);
	cfg.state_dir = dir;
	cfg.tree = opt->mountpoint;
	cfg.exe = exe;
	cfg.listen = opt->mining_listen;
	cfg.advertise = opt->mining_url;
	cfg.on_change = on_change;
	cfg.on_change_arg = t;
	r = mining_book_open(cas_store_dir(fs->st), &t->book);
	if (r < 0)
		fs_log(fs->log, LOG_ERR, "mining: no ledger: %s", strerror(-r));
	cfg.on_round = t->book ? mining_book_on_round : NULL;
	cfg.on_round_arg = t->book;
	/* The park first: the coordinator tells of jobs it resumes while it opens. */
	r = fs_park_open(park_result, t, &t->park);
	if (r == 0)
		r = mining_open(&cfg, &t->m, &warnings);
	if (r == 0 && t->book)
		mining_book_attach(t->book, t->m);
	if (warnings)
		fs_log(fs->log, r < 0 ? LOG_ERR : LOG_WARNING, "mining: %s", warnings);
	free(warnings);
	free(dir);
	if (r < 0) {
		fs_log(fs->log, LOG_ERR, "mining/ disabled: %s", strerror(-r));
		mining_close(t->m);
		mining_book_close(t->book);
		fs_park_close(t->park);
		for (int k = 0; k < 3; k++)
			fs_names_free(&t->names[k]);
		free(t);
		return 0;
	}
	fs_log(fs->log, LOG_INFO, "mining: replicas reach this daemon at %s", mining_url(t->m));
	fs->mining = t;
	return 0;
}

static void mining_end(struct fs *fs)
{
	struct fs_mining *t = M(fs);

	if (t)
		fs_park_drain(t->park);
}

static void mining_stop(struct fs *fs)
{
	struct fs_mining *t = M(fs);

	if (!t)
		return;
	fs_park_drain(t->park);
	mining_close(t->m);
	mining_book_close(t->book);
	fs_park_close(t->park);
	for (int k = 0; k < 3; k++)
		fs_names_free(&t->names[k]);
	free(t);
	fs->mining = NULL;
}

static int mining_present(const struct fs *fs)
{
	return fs->mining != NULL;
}

/* ---- names and attributes ------------------------------------------------------------------ */

static const char *const folder_names[] = { NULL, "providers", "accounts", "jobs", "status" };

/* The files of an entry kind: their count and the name of file f (job: may be made). */
static int entry_files(int k)
{
	return k == MINING_PROVIDERS ? MINING_PF_COUNT : k == MINING_JOBS ? MINING_F_COUNT :
	       A_COUNT;
}

static int mining_lookup(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name,
			 uint64_t *ret_ino)
{
	struct fs_mining *t = M(fs);
	struct mining_info info;
	char *entry;
	int k, r, f = -1;

	(void)req;
	if (parent == FS_MINING_INO) {
		for (int i = K_PROVIDERS; i <= K_STATUS; i++)
			if (!strcmp(name, folder_names[i])) {
				*ret_ino = ino_of(i, 0, 0);
				return 0;
			}
		if (t->book && !strcmp(name, "ledger.jsonl")) {
			*ret_ino = ino_of(K_LEDGER, 0, 0);
			return 0;
		}
		return -ENOENT;
	}
	k = ino_kind(parent);
	if (k >= K_PROVIDERS && k <= K_JOBS && ino_id(parent) == 0) {
		size_t id;

		r = mining_info(t->m, (enum mining_kind)(k - 1), name, &info);
		if (r < 0)
			return r;
		id = name_id(t, k - 1, name);
		if (!id)
			return -ENOMEM;
		*ret_ino = ino_of(K_ENTRY + k - 1, id, 0);
		return 0;
	}
	if ((parent & 0xff) != 0)
		return -ENOTDIR;
	entry = ino_name(t, parent, &k);
	if (!entry)
		return -ENOENT;
	if (k == MINING_PROVIDERS) {
		for (int i = 0; i < MINING_PF_COUNT; i++)
			if (!strcmp(name, mining_pfile_names[i]))
				f = i;
		r = f >= 0 ? mining_info(t->m, MINING_PROVIDERS, entry, &info) : -ENOENT;
	} else if (k == MINING_JOBS) {
		r = f = mining_job_file_lookup(t->m, entry, name);
	} else if (t->book && (!strcmp(name, "balance") || !strcmp(name, "transfer"))) {
		f = !strcmp(name, "balance") ? A_BALANCE : A_TRANSFER;
		r = mining_info(t->m, MINING_ACCOUNTS, entry, &info);
	} else {
		r = -ENOENT;
	}
	free(entry);
	if (r < 0)
		return r;
	*ret_ino = (parent & ~(uint64_t)0xff) | (uint64_t)(f + 1);
	return 0;
}

static unsigned file_mode(int k, int f)
{
	if (k == MINING_PROVIDERS)
		return f == MINING_PF_CONFIG ? 0600 : 0444;
	if (k == MINING_ACCOUNTS)
		return f == A_TRANSFER ? 0200 : 0444;
	return f == MINING_F_JOB || f == MINING_F_CONTROL ? 0644 : 0444;
}

static int read_entry_file(struct fs_mining *t, int k, const char *entry, int f, char **ret,
			   size_t *ret_len)
{
	if (k == MINING_PROVIDERS)
		return mining_provider_read(t->m, entry, (enum mining_pfile)f, ret, ret_len);
	if (k == MINING_ACCOUNTS && f == A_TRANSFER) /* write-only: reads as empty */
		return (*ret = strdup("")) ? (*ret_len = 0, 0) : -ENOMEM;
	if (k == MINING_ACCOUNTS)
		return t->book ? mining_book_balance(t->book, entry, ret, ret_len) : -ENOENT;
	return mining_job_read(t->m, entry, (enum mining_file)f, ret, ret_len);
}

static int mining_getattr(struct fs *fs, uint64_t ino, struct stat *sb, double *ret_timeout)
{
	struct fs_mining *t = M(fs);
	struct mining_info info;
	char *entry, *text = NULL;
	size_t len = 0;
	int k, f, r;

	*ret_timeout = 0;
	if (ino == FS_MINING_INO) {
		fs_virt_stat(fs, ino, S_IFDIR | 0755, 0, sb);
		return 0;
	}
	k = ino_kind(ino);
	if (k >= K_PROVIDERS && k <= K_JOBS && ino_id(ino) == 0 && !(ino & 0xff)) {
		fs_virt_stat(fs, ino, S_IFDIR | 01777, 0, sb);
		return 0;
	}
	if (k == K_STATUS || k == K_LEDGER) {
		r = k == K_STATUS ? mining_status(t->m, &text, &len)
				  : t->book ? mining_book_export(t->book, &text, &len) : -ENOENT;
		free(text);
		if (r < 0)
			return r;
		fs_virt_stat(fs, ino, S_IFREG | 0444, len, sb);
		return 0;
	}
	entry = ino_name(t, ino, &k);
	if (!entry)
		return -ENOENT;
	r = mining_info(t->m, (enum mining_kind)k, entry, &info);
	f = (int)(ino & 0xff) - 1;
	if (r == 0 && f >= entry_files(k))
		r = -ENOENT;
	if (r == 0 && f >= 0) {
		r = read_entry_file(t, k, entry, f, &text, &len);
		if (r == -EAGAIN)
			r = 0, len = 0;
	}
	free(text);
	free(entry);
	if (r < 0)
		return r;
	if (f < 0)
		fs_virt_stat(fs, ino, S_IFDIR | (info.mode & 07777), 0, sb);
	else
		fs_virt_stat(fs, ino, S_IFREG | file_mode(k, f), len, sb);
	sb->st_uid = info.uid;
	sb->st_gid = info.gid;
	return 0;
}

static int mining_list(struct fs *fs, fuse_req_t req, uint64_t ino, fs_add_fn add, void *arg)
{
	struct fs_mining *t = M(fs);
	char **names = NULL, *entry;
	size_t n = 0;
	int r = 0, k;

	(void)req;
	if (ino == FS_MINING_INO) {
		for (int i = K_PROVIDERS; i <= K_STATUS && r == 0; i++)
			r = add(arg, folder_names[i], ino_of(i, 0, 0),
				i == K_STATUS ? S_IFREG : S_IFDIR);
		if (r == 0 && t->book)
			r = add(arg, "ledger.jsonl", ino_of(K_LEDGER, 0, 0), S_IFREG);
		return r < 0 ? r : 0;
	}
	k = ino_kind(ino);
	if (k >= K_PROVIDERS && k <= K_JOBS && ino_id(ino) == 0) {
		r = mining_names(t->m, (enum mining_kind)(k - 1), &names, &n);
		for (size_t i = 0; r == 0 && i < n; i++) {
			size_t id = name_id(t, k - 1, names[i]);

			r = id ? add(arg, names[i], ino_of(K_ENTRY + k - 1, id, 0), S_IFDIR) : -ENOMEM;
		}
		if (names)
			mining_names_free(names, n);
		return r < 0 ? r : 0;
	}
	if ((ino & 0xff) != 0)
		return -ENOTDIR;
	entry = ino_name(t, ino, &k);
	if (!entry)
		return -ENOENT;
	for (int f = 0; r == 0 && f < entry_files(k); f++) {
		char *name = NULL;

		if (k == MINING_PROVIDERS)
			name = strdup(mining_pfile_names[f]);
		else if (k == MINING_ACCOUNTS && !t->book)
			break;
		else if (k == MINING_ACCOUNTS)
			name = strdup(f == A_BALANCE ? "balance" : "transfer");
		else
			r = mining_job_file_name(t->m, entry, (enum mining_file)f, &name);
		if (r == 0)
			r = name ? add(arg, name, (ino & ~(uint64_t)0xff) | (uint64_t)(f + 1),
				       S_IFREG) : -ENOMEM;
		free(name);
	}
	free(entry);
	return r < 0 ? r : 0;
}

/* ---- mkdir and rmdir ----------------------------------------------------------------------- */

static int parent_kind(uint64_t parent)
{
	int k = ino_kind(parent);

	if (parent == FS_MINING_INO || k < K_PROVIDERS || k > K_JOBS || ino_id(parent) ||
	    (parent & 0xff))
		return -1;
	return k - 1;
}

static int mining_mkdir(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name,
			uint32_t mode, uint64_t *ret_ino)
{
	struct fs_mining *t = M(fs);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct plan_proc_user owner = { ctx->uid, ctx->gid };
	int k = parent_kind(parent), r;
	size_t id;

	if (k < 0)
		return -EPERM;
	if (!mining_name_valid(name))
		return -EINVAL;
	if (k == MINING_JOBS) {
		/* its model lands in models/<job>: a folder someone else has is not this job's */
		struct cat_attr a;

		r = cas_lookup(fs->st, CAT_ROOT_INO, name, &a);
		if (r == 0 && (!S_ISDIR(a.mode) || (ctx->uid != 0 && a.uid != ctx->uid)))
			return -EEXIST;
	}
	r = mining_create(t->m, (enum mining_kind)k, name, &owner, (mode & ~ctx->umask) & 0777);
	if (r < 0)
		return r;
	id = name_id(t, k, name);
	if (!id)
		return -ENOMEM;
	*ret_ino = ino_of(K_ENTRY + k, id, 0);
	return 0;
}

static int mining_rmdir(struct fs *fs, fuse_req_t req, uint64_t parent, const char *name)
{
	int k = parent_kind(parent);
	int64_t money = 0;

	if (k < 0)
		return -EPERM;
	/* the ledger keys balances by name: a removed account's money would go to whoever
	 * made the name next */
	if (k == MINING_ACCOUNTS && M(fs)->book &&
	    mining_book_money(M(fs)->book, name, &money) == 0 && money != 0)
		return -ENOTEMPTY;
	return mining_remove(M(fs)->m, (enum mining_kind)k, name, fuse_req_ctx(req)->uid);
}

/* ---- files --------------------------------------------------------------------------------- */

static int writable(int k, int f)
{
	return (k == MINING_PROVIDERS && f == MINING_PF_CONFIG) ||
	       (k == MINING_JOBS && (f == MINING_F_JOB || f == MINING_F_CONTROL)) ||
	       (k == MINING_ACCOUNTS && f == A_TRANSFER);
}

static int mining_open_file(struct fs *fs, fuse_req_t req, uint64_t ino,
			    struct fuse_file_info *fi, void **ret_h)
{
	struct fs_mining *t = M(fs);
	struct mhandle *h;
	int f = (int)(ino & 0xff) - 1, acc = fi->flags & O_ACCMODE, k;
	char *entry;

	if (ino_kind(ino) == K_STATUS || ino_kind(ino) == K_LEDGER) {
		f = 0;
		k = ino_kind(ino) == K_STATUS ? -1 : -2;
		entry = NULL;
		if (acc != O_RDONLY)
			return -EACCES;
	} else {
		if (f < 0 || ino == FS_MINING_INO)
			return -EISDIR;
		entry = ino_name(t, ino, &k);
		if (!entry)
			return -ENOENT;
		if (f >= entry_files(k) || (acc != O_RDONLY && !writable(k, f))) {
			free(entry);
			return f >= entry_files(k) ? -ENOENT : -EACCES;
		}
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		free(entry);
		return -ENOMEM;
	}
	h->kind = k;
	h->name = entry;
	h->file = f;
	h->uid = fuse_req_ctx(req)->uid;
	fi->direct_io = 1;
	*ret_h = h;
	return 0;
}

static void mining_read(struct fs *fs, fuse_req_t req, void *vh, uint64_t ino, size_t size,
			off_t off)
{
	struct fs_mining *t = M(fs);
	struct mhandle *h = vh;
	char *text = NULL;
	size_t len = 0;
	int r;

	(void)ino;
	if (h->kind == -1)
		r = mining_status(t->m, &text, &len);
	else if (h->kind == -2)
		r = t->book ? mining_book_export(t->book, &text, &len) : -ENOENT;
	else
		r = read_entry_file(t, h->kind, h->name, h->file, &text, &len);
	if (r == -EAGAIN && h->kind == MINING_JOBS && h->file == MINING_F_RESULT)
		return fs_park_read(t->park, h->name, req, size, off);
	if (r < 0)
		fs_reply_err(req, r);
	else
		fs_reply_text(req, text, len, size, off);
	free(text);
}

static int is_transfer(const struct mhandle *h)
{
	return h->kind == MINING_ACCOUNTS && h->file == A_TRANSFER;
}

/* Each whole line of h's buffer, one transfer each, in order; the first failure stops
 * (the lines before it are done: their keys make a retry of the write safe). */
static int run_transfers(struct fs_mining *t, struct mhandle *h, int all)
{
	const char *why = "";
	size_t i = 0;
	int r = 0;

	while (r == 0 && i < h->wlen) {
		char *nl = memchr(h->wbuf + i, '\n', h->wlen - i);
		size_t end = nl ? (size_t)(nl - h->wbuf) : h->wlen;

		if (!nl && !all)
			break;
		h->wbuf[end] = 0;
		if (memchr(h->wbuf + i, 0, end - i)) {
			r = -EINVAL;
			why = "a NUL byte in the line";
		}
		else if (strspn(h->wbuf + i, " \t") < end - i)
			r = mining_book_transfer(t->book, h->name, h->uid, h->wbuf + i, &why);
		if (r == -EINVAL)
			fs_log(t->fs->log, LOG_INFO, "mining: account %s: transfer refused: %s",
			       h->name, why);
		i = end + 1;
	}
	i = i > h->wlen ? h->wlen : i;
	memmove(h->wbuf, h->wbuf + i, h->wlen - i);
	h->wlen -= i;
	return r;
}

/* A transfer's bytes are a stream of lines (the offset is the kernel's count of them);
 * each line moves money when it is whole, so the write that ends it gets its error. */
static int transfer_write(struct fs_mining *t, struct mhandle *h, const char *buf, size_t size)
{
	char *nb;

	if (!t->book)
		return -ENOENT;
	if (h->wlen + size > TRANSFER_LINE_MAX + 1 && !memchr(buf, '\n', size))
		return -EINVAL; /* a line this long is no request */
	nb = realloc(h->wbuf, h->wlen + size + 1);
	if (!nb)
		return -ENOMEM;
	h->wbuf = nb;
	memcpy(h->wbuf + h->wlen, buf, size);
	h->wlen += size;
	h->wrote = 1;
	return run_transfers(t, h, 0);
}

static int mining_write(struct fs *fs, fuse_req_t req, void *vh, uint64_t ino, const char *buf,
			size_t size, off_t off)
{
	struct mhandle *h = vh;

	(void)req;
	(void)ino;
	if (h->kind < 0 || !writable(h->kind, h->file))
		return -EACCES;
	if (is_transfer(h))
		return transfer_write(M(fs), h, buf, size);
	if (off < 0 || (size_t)off + size > WRITE_MAX)
		return -EFBIG;
	if ((size_t)off + size > h->wlen) {
		char *nb = realloc(h->wbuf, (size_t)off + size);

		if (!nb)
			return -ENOMEM;
		memset(nb + h->wlen, 0, (size_t)off + size - h->wlen);
		h->wbuf = nb;
		h->wlen = (size_t)off + size;
	}
	memcpy(h->wbuf + off, buf, size);
	h->wrote = 1;
	return 0;
}

/* models/<job>, owned by the job's owner, who writes the model there. */
static int make_model_dir(struct fs *fs, const char *name)
{
	struct mining_info info;
	struct cat_attr a, made;
	int r = mining_info(M(fs)->m, MINING_JOBS, name, &info);

	if (r < 0)
		return r;
	r = cas_lookup(fs->st, CAT_ROOT_INO, name, &a);
	if (r == 0)
		return S_ISDIR(a.mode) && (a.uid == info.uid || info.uid == 0) ? 0 : -EEXIST;
	if (r != -ENOENT)
		return r;
	r = cas_mknode(fs->st, CAT_ROOT_INO, name, S_IFDIR | 0755, info.uid, info.gid, NULL,
		       &made);
	if (r == 0) {
		fs_models_changed(fs);
		/*
		 * Made outside a request on models/: the kernel's copy of its
		 * listing and attributes goes before this flush returns (a
		 * flush here holds no lock that the invalidation may need).
		 */
		fs_inval_wait(fs, fs_inval_inode(fs, FS_MODELS_INO, 1));
	}
	return r == -EEXIST ? 0 : r;
}

static int mining_flush(struct fs *fs, void *vh)
{
	struct mhandle *h = vh;
	struct fs_mining *t = M(fs);
	const char *buf = h->wbuf ? h->wbuf : "";
	int r;

	if (is_transfer(h)) /* a last line without its newline */
		return h->wlen ? run_transfers(t, h, 1) : 0;
	if (!h->wrote || h->done)
		return 0;
	h->done = 1;
	if (h->kind == MINING_PROVIDERS)
		return mining_provider_set(t->m, h->name, buf, h->wlen);
	if (h->file == MINING_F_CONTROL)
		return mining_job_control(t->m, h->name, buf, h->wlen);
	r = make_model_dir(fs, h->name);
	if (r < 0)
		return r;
	return mining_job_submit(t->m, h->name, buf, h->wlen);
}

static void mining_release(struct fs *fs, void *vh)
{
	struct mhandle *h = vh;

	mining_flush(fs, h);
	free(h->name);
	free(h->wbuf);
	free(h);
}

static void mining_abandon(struct fs *fs, void *vh)
{
	struct mhandle *h = vh;

	(void)fs;
	free(h->name);
	free(h->wbuf);
	free(h);
}

static int mining_setattr(struct fs *fs, fuse_req_t req, uint64_t ino, const struct stat *attr,
			  int to_set, void *h, struct stat *ret, double *ret_timeout)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			  FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;

	(void)req;
	(void)h;
	/* `echo x > job` truncates first: the write replaces the text anyway */
	if (!(to_set & ~(FUSE_SET_ATTR_SIZE | times)) &&
	    (!(to_set & FUSE_SET_ATTR_SIZE) || attr->st_size == 0))
		return mining_getattr(fs, ino, ret, ret_timeout);
	return -EPERM;
}

const struct fs_subtree_ops fs_mining_ops = {
	.start = mining_start,
	.stop = mining_stop,
	.present = mining_present,
	.lookup = mining_lookup,
	.getattr = mining_getattr,
	.setattr = mining_setattr,
	.list = mining_list,
	.mkdir = mining_mkdir,
	.rmdir = mining_rmdir,
	.open = mining_open_file,
	.read = mining_read,
	.write = mining_write,
	.flush = mining_flush,
	.release = mining_release,
	.abandon = mining_abandon,
	.end = mining_end,
};
