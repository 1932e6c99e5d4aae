/*
 * env: universal environments — a model of the tree run with its runtime in an OCI container
 * (runc, or crun when runc is absent).  No FUSE here: fs/envs.c maps the files of
 * envs/<name>/ onto these calls.
 *
 * An env is made empty (env_table_create(), for a mkdir), gets its env.json
 * (env_table_submit(): checked at once, docs/envs.md) and is started and stopped through
 * env_table_control().  Its state:
 *
 *     created --start--> starting --runc start--> running --exit--> stopped (exit N | signal N
 *        ^                  |                        |                      | OOM killed)
 *        |                  +--(rootfs, runc)--> failed: reason             |
 *        +------------------------- start again <---------------------------+
 *
 * Each started env is one shim process (env_shim_main(): cfg->exe, llmfs-env-shim or the
 * daemon's own program, run with "--env-shim"; one spare is kept started ahead, waiting for its
 * arguments on stdin, so that a start does not wait for a program to load), which builds or
 * finds the root filesystem, runs `runc create` and `runc
 * start`, is the container's subreaper (so it learns its exit status), reads the OOM count
 * of the container's memory cgroup, copies the container's output into the env's log and
 * runs `runc delete`.  The daemon never waits on runc: runc stats the model's folder inside
 * the daemon's own mount, and a FUSE thread waiting on it could deadlock the mount.  The
 * shim tells the daemon's one env thread what happens in lines on a pipe; the daemon stops
 * it by closing its stdin, so a daemon that dies takes its containers down with it.
 *
 * Kept per env in state_dir/<name>/ (the daemon's, 0700): env.json, owner, config.json (the
 * OCI runtime spec, generated from env.json unless root wrote its own), state, want (present
 * while the env should run: a daemon that opens again starts those envs again), log (the
 * container's output, capped), run/ (bind-mounted at /run/llmfs: the endpoint socket), and
 * rootfs/ for the "host" root filesystem.  Built root filesystems are shared in cache_dir.
 *
 * Locking: one mutex for the table; on_change is called with it held (it must not call back
 * and must not block).  Every call may be made from any thread; none blocks on runc or on
 * a shim, but env_table_close() (which waits for the containers to stop).
 *
 * Errors: -ENOENT (no such env), -EEXIST, -EINVAL (a bad name, env.json or control word:
 * the reason is the env's "failed: ..." state), -EBUSY (rmdir or env.json of a running env),
 * -EPERM (a bind outside the allow-list; config.json by anyone but root), -errno from the
 * file system.
 */
#ifndef LLMFS_ENV_H
#define LLMFS_ENV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct env_table;

struct env_table_config {
	const char *state_dir;   /* one folder per env; made 0700 */
	const char *cache_dir;   /* built root filesystems, shared */
	const char *tree;        /* the mounted tree: models/<model> is bound from it */
	const char *exe;         /* the shim, started as "exe --env-shim ..." */
	const char *runc;        /* the OCI runtime's program */
	const char *serve;       /* the llmfs-serve program, or NULL (runtime refused) */
	const char *remotes;     /* the remotes file, for root filesystems from net/ */
	const char *const *bind_allow; /* folders whose subfolders env.json may bind */
	size_t n_bind_allow;
	/* Told the name of an env whose state or files changed (with the table lock held). */
	void (*on_change)(void *arg, const char *name);
	void *on_change_arg;
};

/* The runtime's program: runc, else crun, in the usual folders; NULL when neither. */
const char *env_find_runtime(void);

/* Opens the table, starting the envs that were running; ret_warnings (may be NULL) says
 * which envs it could not read, one per line. */
int env_table_open(const struct env_table_config *cfg, struct env_table **ret,
		   char **ret_warnings);
/* Stops every container (they start again at the next open) and frees everything. */
void env_table_close(struct env_table *t);

/* True for names usable as an env folder. */
int env_name_valid(const char *name);

struct env_owner {
	uid_t uid;
	gid_t gid;
};

int env_table_create(struct env_table *t, const char *name, const struct env_owner *owner,
		     unsigned mode);
/* env.json: checked and stored.  A bad file is -EINVAL and the env "failed: <reason>". */
int env_table_submit(struct env_table *t, const char *name, const char *text, size_t len);
/* config.json written by root: used as it is at the next start (docs/security.md). */
int env_table_set_config(struct env_table *t, const char *name, const char *text, size_t len);
/* "start" or "stop". */
int env_table_control(struct env_table *t, const char *name, const char *text, size_t len);
/* Removes a stopped env's folder (-EBUSY while it runs). */
int env_table_remove(struct env_table *t, const char *name);

struct env_info {
	uid_t uid;
	gid_t gid;
	unsigned mode;           /* of the env's folder */
	int running;
	char model[256];         /* env.json's model, "" before one */
	unsigned long long gen;  /* bumped at each change */
};
int env_table_info(struct env_table *t, const char *name, struct env_info *ret);
int env_table_names(struct env_table *t, char ***ret_names, size_t *ret_n);
void env_table_names_free(char **names, size_t n);

/* The files of an env folder, in listing order. */
enum env_file {
	ENV_F_ENV,       /* env.json */
	ENV_F_CONTROL,
	ENV_F_STATE,
	ENV_F_ENDPOINT,
	ENV_F_LOG,
	ENV_F_CONFIG,    /* config.json */
	ENV_F_COUNT
};
const char *env_file_name(enum env_file f);
/* Which file a name is, or -ENOENT. */
int env_file_lookup(const char *file);
/* The content now (endpoint: "" while not running). */
int env_table_read(struct env_table *t, const char *name, enum env_file f, char **ret,
		   size_t *ret_len);
/* Its size now, without reading it (a stat of the kept files: ls -l of a 4 MiB log). */
int env_table_size(struct env_table *t, const char *name, enum env_file f, uint64_t *ret);

/*
 * A model card for paths/ (docs/paths.md, "Model cards") for each running env whose
 * endpoint is up: name, the card's JSON text, and its owner.
 */
struct env_card {
	char *name;
	char *card_json;
	uid_t uid;
};
int env_table_cards(struct env_table *t, struct env_card **ret, size_t *ret_n);
void env_cards_free(struct env_card *c, size_t n);

/* The shim: argv is { exe, "--env-shim", runc, id, env dir, cache dir, remotes }, or
 * { exe, "--env-shim" } for a spare, which reads those five, tab-separated, as a line on stdin. */
int env_shim_main(int argc, char **argv);

#endif
