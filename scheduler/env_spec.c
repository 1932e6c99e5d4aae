/*
 * env_spec: env.json (docs/envs.md) read into a struct env_spec, and the OCI runtime spec
 * (config.json) made from it.  Every field of env.json is checked here, before anything runs:
 * unknown keys, names that are not names, package lists that could be options, binds outside
 * the allow-list, targets with "..".  The runtime spec keeps the isolation of docs/security.md
 * ("Environments") whatever env.json says: env.json chooses what runs, never how it is confined.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/registry/oci.h"
#include "common/hex.h"
#include "env_i.h"

#define ARGS_MAX 64
#define ARG_LEN_MAX 4096
#define PKGS_MAX 64
#define BINDS_MAX 16
#define MEMORY_MIN (8ULL << 20)
#define MEMORY_MAX (1ULL << 40)
#define PIDS_MAX 65536L
#define CPUS_MAX 1024.0
#define CPU_PERIOD 100000

__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

void env_spec_release(struct env_spec *s)
{
	size_t i;

	if (!s)
		return;
	free(s->model);
	for (i = 0; i < s->argc; i++)
		free(s->argv[i]);
	free(s->argv);
	for (i = 0; i < s->npkgs; i++)
		free(s->pkgs[i]);
	free(s->pkgs);
	free(s->remote);
	free(s->repo);
	free(s->tag);
	for (i = 0; i < s->nbinds; i++) {
		free(s->binds[i].source);
		free(s->binds[i].target);
	}
	free(s->binds);
	memset(s, 0, sizeof(*s));
}

/* A name of models/ or net/: what a folder of the tree may be called. */
static int plain_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255 || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '/' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

/* Debian policy's package names: [a-z0-9][a-z0-9+.-]+ (never an option of mmdebstrap). */
static int pkg_name(const char *s, size_t n)
{
	if (n < 2 || n > 100 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '+' ||
		      s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_debian(struct env_spec *s, const char *list, char *err, size_t errlen)
{
	const char *p = list;

	s->rootfs = ENV_ROOT_DEBIAN;
	s->pkgs = calloc(PKGS_MAX, sizeof(*s->pkgs));
	if (!s->pkgs)
		return -ENOMEM;
	for (;;) {
		size_t n;

		p += strspn(p, " \t,");
		if (!*p)
			break;
		n = strcspn(p, " \t,");
		if (!pkg_name(p, n))
			return fail(err, errlen, -EINVAL, "rootfs: \"%.60s\" is not a Debian package name", p);
		if (s->npkgs == PKGS_MAX)
			return fail(err, errlen, -EINVAL, "rootfs: more than %s packages", "64");
		s->pkgs[s->npkgs] = strndup(p, n);
		if (!s->pkgs[s->npkgs++])
			return -ENOMEM;
		p += n;
	}
	qsort(s->pkgs, s->npkgs, sizeof(*s->pkgs), cmp_str);
	for (size_t i = 1; i < s->npkgs; i++)
		if (!strcmp(s->pkgs[i], s->pkgs[i - 1]))
			return fail(err, errlen, -EINVAL, "rootfs: package %s named twice", s->pkgs[i]);
	return 0;
}

/* net/<remote>/<repo>:<tag> (or <repo>/<tag>, as the tree shows it). */
static int parse_oci(struct env_spec *s, const char *ref, char *err, size_t errlen)
{
	const char *rest = ref + 4, *slash = strchr(rest, '/'), *colon;
	char *repo = NULL;

	s->rootfs = ENV_ROOT_OCI;
	if (!slash)
		return fail(err, errlen, -EINVAL, "rootfs: %s is not net/<remote>/<repository>:<tag>", ref);
	s->remote = strndup(rest, (size_t)(slash - rest));
	if (!s->remote)
		return -ENOMEM;
	if (!plain_name(s->remote))
		return fail(err, errlen, -EINVAL, "rootfs: %s names no remote", ref);
	colon = strrchr(slash + 1, ':');
	if (colon) {
		repo = strndup(slash + 1, (size_t)(colon - slash - 1));
		s->tag = strdup(colon + 1);
	} else {
		const char *last = strrchr(slash + 1, '/');

		if (!last)
			return fail(err, errlen, -EINVAL, "rootfs: %s has no tag", ref);
		repo = strndup(slash + 1, (size_t)(last - slash - 1));
		s->tag = strdup(last + 1);
	}
	s->repo = repo;
	if (!s->repo || !s->tag)
		return -ENOMEM;
	if (!oci_repo_valid(s->repo) || !oci_tag_valid(s->tag))
		return fail(err, errlen, -EINVAL, "rootfs: %s is not a valid repository:tag", ref);
	return 0;
}

static int parse_rootfs(struct env_spec *s, json_t *v, char *err, size_t errlen)
{
	const char *r;

	if (!v) {
		s->rootfs = ENV_ROOT_HOST;
		return 0;
	}
	if (!json_is_string(v))
		return fail(err, errlen, -EINVAL, "%s must be a string", "rootfs");
	r = json_string_value(v);
	if (!strcmp(r, "host")) {
		s->rootfs = ENV_ROOT_HOST;
		return 0;
	}
	if (!strncmp(r, "debian:", 7))
		return parse_debian(s, r + 7, err, errlen);
	if (!strncmp(r, "net/", 4))
		return parse_oci(s, r, err, errlen);
	return fail(err, errlen, -EINVAL,
		    "rootfs \"%.60s\": not host, debian: <packages> or net/<remote>/<repository>:<tag>", r);
}

/* "2G", "512M", "65536K", a number of bytes. */
static int parse_size(json_t *v, uint64_t *ret)
{
	const char *s;
	char *end;
	double x;

	if (json_is_integer(v)) {
		if (json_integer_value(v) <= 0)
			return -EINVAL;
		*ret = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EINVAL;
	s = json_string_value(v);
	errno = 0;
	x = strtod(s, &end);
	if (errno || end == s || !(x > 0))
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': x *= 1024; end++; break;
	case 'm': case 'M': x *= 1024 * 1024; end++; break;
	case 'g': case 'G': x *= 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': x *= 1024.0 * 1024 * 1024 * 1024; end++; break;
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' ? (end[1] == 'B' ? 2 : 1) : 1;
	if (*end || x > 1e15)
		return -EINVAL;
	*ret = (uint64_t)x;
	return 0;
}

static int parse_limits(struct env_spec *s, json_t *lim, char *err, size_t errlen)
{
	const char *key;
	json_t *v;

	s->memory = 1ULL << 30;
	s->cpus = 1;
	s->pids = 256;
	if (!lim)
		return 0;
	if (!json_is_object(lim))
		return fail(err, errlen, -EINVAL, "%s must be an object", "limits");
	json_object_foreach(lim, key, v) {
		if (!strcmp(key, "memory")) {
			if (parse_size(v, &s->memory) < 0 || s->memory < MEMORY_MIN ||
			    s->memory > MEMORY_MAX)
				return fail(err, errlen, -EINVAL, "limits.%s: a size from 8M to 1T", key);
		} else if (!strcmp(key, "cpus")) {
			s->cpus = json_is_number(v) ? json_number_value(v) : -1;
			if (!(s->cpus >= 0.01 && s->cpus <= CPUS_MAX))
				return fail(err, errlen, -EINVAL, "limits.%s: a number from 0.01 to 1024", key);
		} else if (!strcmp(key, "pids")) {
			s->pids = json_is_integer(v) ? (long)json_integer_value(v) : -1;
			if (s->pids < 1 || s->pids > PIDS_MAX)
				return fail(err, errlen, -EINVAL, "limits.%s: an integer from 1 to 65536", key);
		} else {
			return fail(err, errlen, -EINVAL, "limits: unknown key \"%.60s\"", key);
		}
	}
	return 0;
}

static int parse_command(struct env_spec *s, json_t *cmd, char *err, size_t errlen)
{
	size_t i, n = json_array_size(cmd);

	if (!json_is_array(cmd) || n == 0 || n > ARGS_MAX)
		return fail(err, errlen, -EINVAL, "%s must be an array of 1 to 64 strings", "command");
	s->argv = calloc(n + 1, sizeof(*s->argv));
	if (!s->argv)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		json_t *a = json_array_get(cmd, i);

		if (!json_is_string(a) || json_string_length(a) > ARG_LEN_MAX ||
		    strlen(json_string_value(a)) != json_string_length(a))
			return fail(err, errlen, -EINVAL, "%s: every argument a string without NUL", "command");
		s->argv[i] = strdup(json_string_value(a));
		if (!s->argv[i])
			return -ENOMEM;
		s->argc++;
	}
	if (s->argv[0][0] != '/')
		return fail(err, errlen, -EINVAL, "command: \"%.60s\" must be an absolute path", s->argv[0]);
	return 0;
}

/* An absolute path without "." or ".." components, not the root itself. */
static int clean_path(const char *p)
{
	if (p[0] != '/' || strlen(p) > 1024 || !strcmp(p, "/"))
		return 0;
	for (const char *c = p; *c;) {
		size_t n;

		c += strspn(c, "/");
		n = strcspn(c, "/");
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		c += n;
	}
	return 1;
}

/* The container's own folders: a bind may not cover them. */
static int reserved_target(const char *t)
{
	static const char *const mine[] = { "/proc", "/sys", "/dev", "/usr", "/run", "/mnt",
					    "/opt", "/etc", "/bin", "/sbin", "/lib", "/lib64" };

	for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++) {
		size_t n = strlen(mine[i]);

		if (!strncmp(t, mine[i], n) && (t[n] == '\0' || t[n] == '/'))
			return 1;
	}
	return 0;
}

static int under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == '\0');
}

static int parse_bind(struct env_bind *b, json_t *v, const char *const *allow, size_t n_allow,
		      char *err, size_t errlen)
{
	const char *src = json_string_value(json_object_get(v, "source"));
	const char *dst = json_string_value(json_object_get(v, "target"));
	char *real;
	size_t i;

	if (!json_is_object(v) || !src || !dst || json_object_size(v) != 2)
		return fail(err, errlen, -EINVAL, "%s: each one {\"source\": path, \"target\": path}", "binds");
	if (!clean_path(src) || !clean_path(dst))
		return fail(err, errlen, -EINVAL, "binds: \"%.80s\" and its target must be absolute, without . or ..", src);
	if (reserved_target(dst))
		return fail(err, errlen, -EINVAL, "binds: target %.80s is the container's own", dst);
	b->target = strdup(dst);
	if (!b->target)
		return -ENOMEM;
	if (!allow) {
		b->source = strdup(src);
		return b->source ? 0 : -ENOMEM;
	}
	/* Judged by where it leads: a symbolic link out of an allowed folder is outside it. */
	real = realpath(src, NULL);
	if (!real)
		return fail(err, errlen, -EINVAL, "binds: %.80s does not exist", src);
	for (i = 0; i < n_allow && !under(real, allow[i]); i++)
		;
	if (i == n_allow) {
		if (err && errlen)
			snprintf(err, errlen, "binds: %.80s is outside the folders the daemon allows (--env-bind)", src);
		free(real);
		return -EPERM;
	}
	b->source = real;
	return 0;
}

static int parse_binds(struct env_spec *s, json_t *binds, const char *const *allow,
		       size_t n_allow, char *err, size_t errlen)
{
	size_t i, n = json_array_size(binds);

	if (!binds)
		return 0;
	if (!json_is_array(binds) || n > BINDS_MAX)
		return fail(err, errlen, -EINVAL, "%s must be an array of at most 16 binds", "binds");
	s->binds = calloc(n ? n : 1, sizeof(*s->binds));
	if (!s->binds)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		int r = parse_bind(&s->binds[i], json_array_get(binds, i), allow, n_allow, err,
				   errlen);

		s->nbinds++;
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_obj(json_t *o, const char *const *allow, size_t n_allow,
		     struct env_spec *s, char *err, size_t errlen)
{
	static const char *const keys[] = { "model", "runtime", "command", "rootfs", "limits",
					    "binds" };
	const char *key, *model, *rt;
	json_t *v;
	int r;

	json_object_foreach(o, key, v) {
		size_t i;

		for (i = 0; i < sizeof(keys) / sizeof(keys[0]) && strcmp(key, keys[i]); i++)
			;
		if (i == sizeof(keys) / sizeof(keys[0]))
			return fail(err, errlen, -EINVAL, "unknown key \"%.60s\"", key);
	}
	model = json_string_value(json_object_get(o, "model"));
	if (!model || !plain_name(model))
		return fail(err, errlen, -EINVAL, "%s: the name of a folder of models/", "model");
	s->model = strdup(model);
	if (!s->model)
		return -ENOMEM;
	rt = json_string_value(json_object_get(o, "runtime"));
	if (!rt)
		rt = json_object_get(o, "command") ? "command" : "llmfs-serve";
	if (!strcmp(rt, "llmfs-serve")) {
		s->runtime = ENV_RT_SERVE;
		if (json_object_get(o, "command"))
			return fail(err, errlen, -EINVAL, "%s: the llmfs-serve runtime takes no command", "command");
	} else if (!strcmp(rt, "command")) {
		s->runtime = ENV_RT_COMMAND;
		r = parse_command(s, json_object_get(o, "command"), err, errlen);
		if (r < 0)
			return r;
	} else {
		return fail(err, errlen, -EINVAL, "runtime \"%.60s\": llmfs-serve or command", rt);
	}
	r = parse_rootfs(s, json_object_get(o, "rootfs"), err, errlen);
	if (r == 0)
		r = parse_limits(s, json_object_get(o, "limits"), err, errlen);
	if (r == 0)
		r = parse_binds(s, json_object_get(o, "binds"), allow, n_allow, err, errlen);
	return r;
}

int env_spec_parse(const char *text, size_t len, const char *const *allow, size_t n_allow,
		   struct env_spec *ret, char *err, size_t errlen)
{
	struct env_spec s = { 0 };
	json_error_t je;
	json_t *o;
	int r;

	if (len > ENV_TEXT_MAX)
		return fail(err, errlen, -EINVAL, "env.json is longer than %s", "64 KiB");
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		if (err && errlen)
			snprintf(err, errlen, "env.json line %d: %s", je.line,
				 o ? "not a JSON object" : je.text);
		return -EINVAL;
	}
	r = parse_obj(o, allow, n_allow, &s, err, errlen);
	json_decref(o);
	if (r < 0) {
		env_spec_release(&s);
		return r;
	}
	*ret = s;
	return 0;
}

int env_spec_rootfs_dir(const struct env_spec *s, const char *env_dir, const char *cache_dir,
			char **ret)
{
	char digest[DIGEST_LEN], *what = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	if (s->rootfs == ENV_ROOT_HOST)
		return asprintf(ret, "%s/rootfs", env_dir) < 0 ? -ENOMEM : 0;
	f = open_memstream(&what, &len);
	if (!f)
		return -ENOMEM;
	if (s->rootfs == ENV_ROOT_DEBIAN)
		for (size_t i = 0; i < s->npkgs; i++)
			fprintf(f, "%s\n", s->pkgs[i]);
	else
		fprintf(f, "%s\n%s\n%s\n", s->remote, s->repo, s->tag);
	fclose(f);
	digest_sha256(what, len, digest);
	free(what);
	r = asprintf(ret, "%s/%s-%.16s", cache_dir, s->rootfs == ENV_ROOT_DEBIAN ? "debian" : "oci",
		     digest + 7);
	return r < 0 ? -ENOMEM : 0;
}

/* ---- the runtime spec -------------------------------------------------------------------- */

static json_t *strs(const char *const *v)
{
	json_t *a = json_array();

	for (; a && *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

static json_t *mount(const char *dst, const char *type, const char *src, const char *const *opt)
{
	return json_pack("{s:s, s:s, s:s, s:o}", "destination", dst, "type", type, "source", src,
			 "options", strs(opt));
}

static const char *const bind_ro[] = { "bind", "ro", "nosuid", "nodev", NULL };
static const char *const bind_ro_noexec[] = { "bind", "ro", "nosuid", "nodev", "noexec", NULL };
static const char *const bind_rw_noexec[] = { "bind", "rw", "nosuid", "nodev", "noexec", NULL };

/* The host's library folders that are folders (merged /usr makes them symbolic links). */
static const char *const host_dirs[] = { "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
					 NULL };

static int add_mounts(json_t *m, const struct env_spec *s, const struct env_spec_ctx *c)
{
	static const char *const proc[] = { "nosuid", "noexec", "nodev", NULL };
	static const char *const dev[] = { "nosuid", "strictatime", "mode=755", "size=65536k", NULL };
	static const char *const pts[] = { "nosuid", "noexec", "newinstance", "ptmxmode=0666",
					   "mode=0620", NULL };
	static const char *const shm[] = { "nosuid", "noexec", "nodev", "mode=1777", "size=65536k",
					   NULL };
	static const char *const mq[] = { "nosuid", "noexec", "nodev", NULL };
	static const char *const sys[] = { "nosuid", "noexec", "nodev", "ro", NULL };
	static const char *const cg[] = { "nosuid", "noexec", "nodev", "relatime", "ro", NULL };
	static const char *const tmp[] = { "nosuid", "nodev", "noexec", "mode=1777", "size=65536k",
					   NULL };
	char *model = NULL, *run = NULL;
	struct stat sb;
	int r = 0;

	if (asprintf(&model, "%s/models/%s", c->tree, s->model) < 0)
		model = NULL;
	if (asprintf(&run, "%s/run", c->env_dir) < 0)
		run = NULL;
	if (!model || !run) {
		r = -ENOMEM;
		goto out;
	}
	json_array_append_new(m, mount("/proc", "proc", "proc", proc));
	json_array_append_new(m, mount("/dev", "tmpfs", "tmpfs", dev));
	json_array_append_new(m, mount("/dev/pts", "devpts", "devpts", pts));
	json_array_append_new(m, mount("/dev/shm", "tmpfs", "shm", shm));
	json_array_append_new(m, mount("/dev/mqueue", "mqueue", "mqueue", mq));
	json_array_append_new(m, mount("/sys", "sysfs", "sysfs", sys));
	json_array_append_new(m, mount("/sys/fs/cgroup", "cgroup", "cgroup", cg));
	json_array_append_new(m, mount("/tmp", "tmpfs", "tmpfs", tmp));
	if (s->rootfs == ENV_ROOT_HOST) {
		json_array_append_new(m, mount("/usr", "bind", "/usr", bind_ro));
		for (const char *const *d = host_dirs; *d; d++)
			if (lstat(*d, &sb) == 0 && S_ISDIR(sb.st_mode))
				json_array_append_new(m, mount(*d, "bind", *d, bind_ro));
	}
	/* The model: read-only, and nothing in it runs or is a device. */
	json_array_append_new(m, mount(ENV_MODEL_DIR, "bind", model, bind_ro_noexec));
	json_array_append_new(m, mount(ENV_RUN_DIR, "bind", run, bind_rw_noexec));
	if (s->runtime == ENV_RT_SERVE)
		json_array_append_new(m, mount(ENV_SERVE_PATH, "bind", c->serve, bind_ro));
	for (size_t i = 0; i < s->nbinds; i++)
		json_array_append_new(m, mount(s->binds[i].target, "bind", s->binds[i].source,
					       bind_ro_noexec));
out:
	free(model);
	free(run);
	return r;
}

static json_t *process(const struct env_spec *s, const struct env_spec_ctx *c)
{
	static const char *const env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp",
					   "LLMFS_MODEL=" ENV_MODEL_DIR,
					   "LLMFS_ENDPOINT=" ENV_RUN_DIR "/" ENV_SOCKET, NULL };
	/* Named as in models/, so that a card's "model" reaches it. */
	const char *serve[] = { ENV_SERVE_PATH, "--model", ENV_MODEL_DIR, "--name", s->model,
				"--listen", "unix:" ENV_RUN_DIR "/" ENV_SOCKET, NULL };
	json_t *caps = json_pack("{s:[], s:[], s:[], s:[], s:[]}", "bounding", "effective",
				 "inheritable", "permitted", "ambient");

	(void)c;
	return json_pack("{s:b, s:{s:i, s:i}, s:o, s:o, s:s, s:o, s:[{s:s, s:i, s:i}], s:b}",
			 "terminal", 0, "user", "uid", ENV_UID, "gid", ENV_GID,
			 "args", s->runtime == ENV_RT_SERVE ? strs(serve)
							    : strs((const char *const *)s->argv),
			 "env", strs(env), "cwd", "/", "capabilities", caps,
			 "rlimits", "type", "RLIMIT_NOFILE", "hard", 1024, "soft", 1024,
			 "noNewPrivileges", 1);
}

static json_t *linux_part(const struct env_spec *s, const struct env_spec_ctx *c)
{
	static const char *const masked[] = { "/proc/acpi", "/proc/asound", "/proc/kcore",
		"/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/sys/firmware", "/proc/scsi", NULL };
	static const char *const ro[] = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
					  "/proc/sysrq-trigger", NULL };
	json_t *mem = json_pack("{s:I}", "limit", (json_int_t)s->memory);

	if (c->memsw)
		json_object_set_new(mem, "swap", json_integer((json_int_t)s->memory));
	return json_pack("{s:{s:[{s:b, s:s}], s:o, s:{s:I, s:I}, s:{s:I}}, s:s, "
			 "s:[{s:s}, {s:s}, {s:s}, {s:s}, {s:s}, {s:s}], s:o, s:o}",
			 "resources", "devices", "allow", 0, "access", "rwm", "memory", mem,
			 "cpu", "quota", (json_int_t)llround(s->cpus * CPU_PERIOD),
			 "period", (json_int_t)CPU_PERIOD, "pids", "limit", (json_int_t)s->pids,
			 "cgroupsPath", c->id,
			 "namespaces", "type", "pid", "type", "network", "type", "ipc",
			 "type", "uts", "type", "mount", "type", "cgroup",
			 "maskedPaths", strs(masked), "readonlyPaths", strs(ro));
}

/* Hostnames: the env's name where it is one, else "env". */
static const char *host_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63)
		return "env";
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return "env";
	return name;
}

int env_spec_config(const struct env_spec *s, const struct env_spec_ctx *c, char **ret)
{
	json_t *spec, *mounts = json_array();
	char *text = NULL;
	int r;

	if (s->runtime == ENV_RT_SERVE && !c->serve)
		return -ENOENT;
	if (!mounts)
		return -ENOMEM;
	r = add_mounts(mounts, s, c);
	if (r < 0) {
		json_decref(mounts);
		return r;
	}
	spec = json_pack("{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:o}", "ociVersion", "1.0.2",
			 "process", process(s, c), "root", "path", c->rootfs, "readonly", 1,
			 "hostname", host_name(c->name), "mounts", mounts,
			 "linux", linux_part(s, c));
	if (spec)
		text = json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(spec);
	if (!text)
		return -ENOMEM;
	*ret = text;
	return 0;
}
