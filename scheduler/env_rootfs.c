/*
 * env_rootfs: the root filesystems of envs, made by the shim (never by the daemon, which
 * must not wait on them):
 *   host           a skeleton in the env's folder: /usr and the library folders are bound
 *                  read-only from the host by the runtime spec, /etc is our own (no host
 *                  secrets), the rest are mount points;
 *   debian: pkg..  mmdebstrap --variant=minbase of the host's suite with the packages, from
 *                  the host's Debian archive, built once and kept in the cache;
 *   net/r/repo:tag an OCI image: its manifest and layers fetched through our registry client
 *                  (backend/registry/oci.h, digests checked) and unpacked by env_unpack.h,
 *                  kept in the cache by what it was made from.
 * A cached one is built in "<dir>.tmp", marked complete with "<dir>/.ready" and renamed into
 * place; "<dir>.lock" (flock) keeps two shims from building the same one at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/registry/oci.h"
#include "env_i.h"
#include "env_unpack.h"

extern char **environ;

#define LAYERS_MAX 128
#define IMAGE_BYTES_MAX (8ULL << 30)
#define IMAGE_ENTRIES_MAX 1000000ULL

static int rm_rf(const char *path)
{
	char *const argv[] = { "rm", "-rf", "--one-file-system", "--", (char *)path, NULL };
	pid_t pid;
	int st;

	if (posix_spawn(&pid, "/bin/rm", NULL, NULL, argv, environ) != 0)
		return -errno;
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int put(const char *dir, const char *name, const char *text)
{
	char *p = NULL;
	int fd, r = 0;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	free(p);
	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		r = -EIO;
	close(fd);
	return r;
}

static int mk(const char *dir, const char *name, mode_t mode)
{
	char *p = NULL;
	int r = 0;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		r = -errno;
	free(p);
	return r;
}

/* The mount points every env's spec uses, made in the root filesystem beforehand. */
static int mount_points(const char *dir)
{
	static const char *const dirs[] = { "proc", "dev", "sys", "tmp", "run", "run/llmfs", "mnt",
					    "mnt/models", "opt", "opt/llmfs", "etc", "usr", NULL };
	int r = 0;

	for (const char *const *d = dirs; r == 0 && *d; d++)
		r = mk(dir, *d, 0755);
	if (r == 0) {
		char *p = NULL;
		int fd;

		if (asprintf(&p, "%s/opt/llmfs/llmfs-serve", dir) < 0)
			return -ENOMEM;
		fd = open(p, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0755);
		free(p);
		if (fd < 0)
			return -errno;
		close(fd);
	}
	return r;
}

static int host_skeleton(const char *dir)
{
	static const char *const links[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32",
					     NULL };
	int r = mk(dir, "", 0755);

	if (r == 0)
		r = mount_points(dir);
	for (const char *const *l = links; r == 0 && *l; l++) {
		char host[64], target[256], *p = NULL;
		ssize_t n;
		struct stat sb;

		snprintf(host, sizeof(host), "/%s", *l);
		if (lstat(host, &sb) < 0)
			continue;
		if (asprintf(&p, "%s/%s", dir, *l) < 0)
			return -ENOMEM;
		if (S_ISLNK(sb.st_mode)) {
			n = readlink(host, target, sizeof(target) - 1);
			if (n > 0) {
				target[n] = '\0';
				unlink(p);
				if (symlink(target, p) < 0)
					r = -errno;
			}
		} else if (S_ISDIR(sb.st_mode) && mkdir(p, 0755) < 0 && errno != EEXIST) {
			r = -errno;
		}
		free(p);
	}
	if (r == 0)
		r = put(dir, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
	if (r == 0)
		r = put(dir, "etc/group", "root:x:0:\nnogroup:x:65534:\n");
	if (r == 0)
		r = put(dir, "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n");
	return r;
}

/* ---- debian: pkg... ----------------------------------------------------------------------- */

/* VERSION_CODENAME of /etc/os-release (a symbolic link into /usr/lib on Debian). */
static int host_suite(char *ret, size_t len)
{
	FILE *f = fopen("/etc/os-release", "re");
	char line[512];
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof(line), f)) {
		char *p = line;
		size_t n;

		if (strncmp(p, "VERSION_CODENAME=", 17))
			continue;
		p += 17;
		p += *p == '"';
		n = strcspn(p, "\"\n");
		if (n > 0 && n < len) {
			memcpy(ret, p, n);
			ret[n] = '\0';
			r = 0;
		}
	}
	fclose(f);
	return r;
}

static int build_debian(const struct env_spec *s, const char *tmp, int log_fd, char *err,
			size_t errlen)
{
	char suite[64], *include = NULL, *arg = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&include, &len);
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, r;

	if (!f)
		return -ENOMEM;
	fputs("--include=", f);
	for (size_t i = 0; i < s->npkgs; i++)
		fprintf(f, "%s%s", i ? "," : "", s->pkgs[i]);
	fclose(f);
	r = host_suite(suite, sizeof(suite));
	if (r < 0) {
		free(include);
		snprintf(err, errlen, "rootfs: cannot tell the host's Debian suite");
		return r;
	}
	arg = strdup(tmp);
	{
		char *const argv[] = { "mmdebstrap", "--variant=minbase", "--mode=root",
				       "--quiet", include, suite, arg, NULL };

		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
		posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
		posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
		r = posix_spawnp(&pid, "mmdebstrap", &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
	}
	free(include);
	free(arg);
	if (r != 0) {
		snprintf(err, errlen, "rootfs: cannot run mmdebstrap: %s", strerror(r));
		return -r;
	}
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(err, errlen, "rootfs: mmdebstrap failed (status %d; its output is in the log)",
			 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		return -EIO;
	}
	return mount_points(tmp);
}

/* ---- net/<remote>/<repo>:<tag> ------------------------------------------------------------- */

static int write_all(void *arg, const void *buf, size_t n)
{
	int fd = *(int *)arg;

	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, (const char *)buf + done, n - done);

		if (w < 0)
			return -errno;
		done += (size_t)w;
	}
	return 0;
}

static int layer_type_ok(const char *t)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		NULL };

	for (const char *const *o = ok; *o; o++)
		if (!strcmp(t, *o))
			return 1;
	return 0;
}

/* The manifest of an image; an index gives its linux/amd64 one. */
static int get_manifest(struct oci_client *c, const struct env_spec *s, json_t **ret, char *err,
			size_t errlen)
{
	char type[128], digest[OCI_DIGEST_LEN], *body = NULL;
	const char *ref = s->tag;
	size_t len;
	json_t *m = NULL;
	int r;

	for (int hop = 0; hop < 2; hop++) {
		json_t *manifests, *e;
		size_t i;

		r = oci_manifest_get(c, s->repo, ref, &body, &len, type, sizeof(type), digest, err,
				     errlen);
		if (r < 0)
			return r;
		m = json_loadb(body, len, 0, NULL);
		free(body);
		if (!m)
			break;
		manifests = json_object_get(m, "manifests");
		if (!json_is_array(manifests)) {
			*ret = m;
			return 0;
		}
		ref = NULL;
		json_array_foreach(manifests, i, e) {
			json_t *p = json_object_get(e, "platform");
			const char *os = json_string_value(json_object_get(p, "os"));
			const char *arch = json_string_value(json_object_get(p, "architecture"));
			const char *d = json_string_value(json_object_get(e, "digest"));

			if (os && arch && d && !strcmp(os, "linux") && !strcmp(arch, "amd64") &&
			    digest_valid(d)) {
				snprintf(digest, sizeof(digest), "%s", d);
				ref = digest;
				break;
			}
		}
		json_decref(m);
		m = NULL;
		if (!ref) {
			snprintf(err, errlen, "rootfs: the image has no linux/amd64 manifest");
			return -ENOENT;
		}
	}
	snprintf(err, errlen, "rootfs: the image's manifest is not valid JSON");
	return -EPROTO;
}

static int unpack_layers(struct oci_client *c, const struct env_spec *s, json_t *layers,
			 const char *tmp, uint64_t max_bytes, int log_fd, char *err,
			 size_t errlen)
{
	struct env_unpack_limits lim = { max_bytes, IMAGE_ENTRIES_MAX };
	struct env_unpack_stats stats = { 0 };
	int root = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;
	json_t *l;
	size_t i;

	if (root < 0)
		return -errno;
	json_array_foreach(layers, i, l) {
		const char *d = json_string_value(json_object_get(l, "digest"));
		const char *t = json_string_value(json_object_get(l, "mediaType"));
		json_int_t size = json_integer_value(json_object_get(l, "size"));
		int fd;

		if (!d || !digest_valid(d) || !t || !layer_type_ok(t)) {
			snprintf(err, errlen, "rootfs: layer %zu is not a tar layer with a digest", i);
			r = -EPROTO;
			break;
		}
		if (size < 0 || (uint64_t)size > max_bytes) {
			snprintf(err, errlen, "rootfs: layer %zu (%lld bytes) is larger than allowed",
				 i, (long long)size);
			r = -EFBIG;
			break;
		}
		fd = open(tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0) {
			r = -errno;
			break;
		}
		/* The blob is checked against its digest before a byte of it is unpacked. */
		r = oci_blob_stream(c, s->repo, d, 0, UINT64_MAX, write_all, &fd, NULL, err, errlen);
		if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
			r = -errno;
		if (r == 0)
			r = env_unpack_fd(root, fd, &lim, &stats, err, errlen);
		close(fd);
		if (r < 0)
			break;
	}
	close(root);
	if (r == 0)
		dprintf(log_fd, "llmfs: image %s/%s:%s unpacked: %zu layers, %llu entries, %llu bytes, "
			"%llu setuid/setgid bits cleared, %llu whiteouts\n", s->remote, s->repo,
			s->tag, json_array_size(layers), (unsigned long long)stats.entries,
			(unsigned long long)stats.bytes, (unsigned long long)stats.setid_cleared,
			(unsigned long long)stats.whiteouts);
	return r;
}

static int build_oci(const struct env_spec *s, const char *tmp, const char *remotes,
		     uint64_t max_bytes, int log_fd, char *err, size_t errlen)
{
	struct oci_remote *rs = NULL;
	struct oci_client *c = NULL;
	json_t *m = NULL, *layers;
	size_t n = 0, i;
	int r;

	r = oci_config_load(remotes, &rs, &n, err, errlen);
	if (r < 0)
		return r;
	for (i = 0; i < n && strcmp(rs[i].name, s->remote); i++)
		;
	if (i == n) {
		snprintf(err, errlen, "rootfs: no remote %s under net/", s->remote);
		r = -ENOENT;
		goto out;
	}
	r = oci_client_new(&rs[i], &c, err, errlen);
	if (r == 0)
		r = get_manifest(c, s, &m, err, errlen);
	if (r < 0)
		goto out;
	layers = json_object_get(m, "layers");
	if (!json_is_array(layers) || json_array_size(layers) == 0 ||
	    json_array_size(layers) > LAYERS_MAX) {
		snprintf(err, errlen, "rootfs: the image has no layers, or more than %d", LAYERS_MAX);
		r = -EPROTO;
		goto out;
	}
	r = mk(tmp, "", 0755);
	if (r == 0)
		r = unpack_layers(c, s, layers, tmp, max_bytes, log_fd, err, errlen);
	if (r == 0)
		r = mount_points(tmp);
out:
	json_decref(m);
	oci_client_free(c);
	oci_config_free(rs, n);
	return r;
}

/* ---- the one entry ------------------------------------------------------------------------ */

static int ready(const char *dir)
{
	char *p = NULL;
	int r;

	if (asprintf(&p, "%s/.ready", dir) < 0)
		return 0;
	r = access(p, F_OK) == 0;
	free(p);
	return r;
}

int env_rootfs_build(const struct env_spec *s, const char *dir, const char *remotes,
		     int log_fd, char *err, size_t errlen)
{
	char *lock = NULL, *tmp = NULL;
	int lfd = -1, r;

	if (s->rootfs == ENV_ROOT_HOST) {
		r = host_skeleton(dir);
		if (r < 0)
			snprintf(err, errlen, "rootfs: cannot make %s: %s", dir, strerror(-r));
		return r;
	}
	if (ready(dir))
		return 0;
	if (asprintf(&lock, "%s.lock", dir) < 0 || asprintf(&tmp, "%s.tmp", dir) < 0) {
		r = -ENOMEM;
		goto out;
	}
	lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
		r = -errno;
		snprintf(err, errlen, "rootfs: cannot lock %s: %s", lock, strerror(errno));
		goto out;
	}
	r = 0;
	if (ready(dir))
		goto out;
	rm_rf(tmp);
	rm_rf(dir);
	if (s->rootfs == ENV_ROOT_DEBIAN) {
		r = build_debian(s, tmp, log_fd, err, errlen);
	} else {
		const char *max = getenv("LLMFS_ENV_IMAGE_MAX");

		r = build_oci(s, tmp, remotes, max ? strtoull(max, NULL, 10) : IMAGE_BYTES_MAX,
			      log_fd, err, errlen);
	}
	if (r == 0)
		r = put(tmp, ".ready", "");
	if (r == 0 && rename(tmp, dir) < 0)
		r = -errno;
	if (r < 0)
		rm_rf(tmp);
out:
	if (lfd >= 0)
		close(lfd);
	free(lock);
	free(tmp);
	return r;
}
