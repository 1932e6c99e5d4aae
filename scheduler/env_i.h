/*
 * env_i.h - what the env modules share (env.c: the table; env_spec.c: env.json and the OCI
 * runtime spec; env_shim.c: the process that runs one container; env_rootfs.c: root
 * filesystems).  Not for other modules.
 */
#ifndef LLMFS_ENV_I_H
#define LLMFS_ENV_I_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"

/* Where things are inside the container. */
#define ENV_MODEL_DIR "/mnt/models"
#define ENV_RUN_DIR "/run/llmfs"
#define ENV_SOCKET "endpoint.sock"
#define ENV_SERVE_PATH "/opt/llmfs/llmfs-serve"
/* The container's processes run as nobody, with no capability. */
#define ENV_UID 65534
#define ENV_GID 65534
/* The most of a container's output kept in its log. */
#define ENV_LOG_MAX (4u << 20)
/* How long a container has to end after SIGTERM before SIGKILL. */
#define ENV_STOP_GRACE_S 5
/* env.json, config.json: the longest text taken. */
#define ENV_TEXT_MAX (64u << 10)

enum env_runtime { ENV_RT_SERVE, ENV_RT_COMMAND };
enum env_rootfs { ENV_ROOT_HOST, ENV_ROOT_DEBIAN, ENV_ROOT_OCI };

struct env_bind {
	char *source;    /* absolute, resolved (no symbolic link) */
	char *target;    /* absolute, no ".." */
};

struct env_spec {
	char *model;                 /* models/<model> */
	enum env_runtime runtime;
	char **argv;                 /* ENV_RT_COMMAND: the command */
	size_t argc;
	enum env_rootfs rootfs;
	char **pkgs;                 /* ENV_ROOT_DEBIAN: sorted, unique */
	size_t npkgs;
	char *remote, *repo, *tag;   /* ENV_ROOT_OCI: net/<remote>/<repo>:<tag> */
	uint64_t memory;             /* bytes */
	double cpus;
	long pids;
	struct env_bind *binds;
	size_t nbinds;
};

/*
 * Parses env.json.  allow (n_allow folders) judges binds: a source must resolve to a path
 * under one of them (allow NULL: binds are not judged, for the shim, which reads a file
 * the daemon judged).  -EINVAL with the reason in err; -EPERM for a bind outside the list.
 */
int env_spec_parse(const char *text, size_t len, const char *const *allow, size_t n_allow,
		   struct env_spec *ret, char *err, size_t errlen);
void env_spec_release(struct env_spec *s);

/* The root filesystem's folder: env_dir/rootfs, or cache_dir/<kind>-<sha256 of what>. */
int env_spec_rootfs_dir(const struct env_spec *s, const char *env_dir, const char *cache_dir,
			char **ret);

struct env_spec_ctx {
	const char *name;        /* the hostname */
	const char *id;          /* the container's id: its cgroup */
	const char *env_dir;     /* run/ is bound from here */
	const char *rootfs;      /* env_spec_rootfs_dir() */
	const char *tree;        /* the mount: models/<model> */
	const char *serve;       /* llmfs-serve, for ENV_RT_SERVE */
	int memsw;               /* the memory cgroup limits swap too */
};
/* The OCI runtime spec (config.json) of an env, as text (malloc()ed). */
int env_spec_config(const struct env_spec *s, const struct env_spec_ctx *c, char **ret);

/*
 * Makes the root filesystem at dir when it is not there yet ("dir/.ready" marks one that
 * is complete; a lock file beside it keeps two shims from building one at once).  log
 * receives what the builders say.  -errno with the reason in err.
 */
int env_rootfs_build(const struct env_spec *s, const char *dir, const char *remotes,
		     int log_fd, char *err, size_t errlen);

/* Writes text to path through a temp file, fsync and rename (0600); durable 0: no fsync. */
int env_write_file(const char *path, const char *text, size_t len);
int env_write_file_how(const char *path, const char *text, size_t len, int durable);
/* Reads a file of at most max bytes (NUL-terminated). */
int env_read_file(const char *path, size_t max, char **ret, size_t *ret_len);

#endif
