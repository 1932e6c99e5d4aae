/*
 * env_unpack: see env_unpack.h for the contract.
 *
 * Every entry goes through the same three steps: its name is made clean (no ".." component,
 * leading "/" and "./" dropped), its parent folder is opened beneath root without following
 * any symbolic link (made when missing, as tar files may leave folders out), and the entry is
 * made with *at() calls relative to that parent, never by a path.  libarchive parses the
 * formats; it never writes here (archive_write_disk is not used: we keep the rules above
 * in our own hands).
 */
#include "env_unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PATH_LEN_MAX 4096
#define RM_DEPTH_MAX 256

struct unpack {
	int root;
	const struct env_unpack_limits *lim;
	struct env_unpack_stats *st;
	char *err;
	size_t errlen;
};

static int fail(struct unpack *u, int r, const char *what, const char *path)
{
	if (u->err && u->errlen)
		snprintf(u->err, u->errlen, "%s: %.200s", what, path ? path : "");
	return r;
}

/* Opens path (clean, relative) beneath root, never through a symbolic link. */
static int open_beneath(int root, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
			   RESOLVE_NO_XDEV,
	};
	int fd;

	fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
	return fd < 0 ? -errno : fd;
}

/*
 * The clean form of a name in place: leading "/" and "./" dropped, "." components and
 * repeated slashes gone, a trailing slash gone.  -EINVAL for a ".." component.
 */
static int clean_name(char *s)
{
	char *out = s, *p = s;

	while (*p) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0)
			break;
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return -EINVAL;
		if (!(n == 1 && p[0] == '.')) {
			if (out != s)
				*out++ = '/';
			memmove(out, p, n);
			out += n;
		}
		p += n;
	}
	*out = '\0';
	return 0;
}

/*
 * Opens the folder dir (clean) beneath root a component at a time, never through a symbolic
 * link, making what is missing (0755).
 */
static int open_dir_made(struct unpack *u, const char *dir)
{
	int fd = fcntl(u->root, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	while (*dir) {
		char comp[NAME_MAX + 1];
		size_t n = strcspn(dir, "/");
		int next;

		if (n > NAME_MAX) {
			close(fd);
			return -ENAMETOOLONG;
		}
		memcpy(comp, dir, n);
		comp[n] = '\0';
		if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
			close(fd);
			return -errno;
		}
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (next < 0)
			return -errno;
		fd = next;
		dir += n;
		dir += *dir == '/';
	}
	return fd;
}

/* Removes name in dirfd and, for a folder, all beneath it; a missing name is fine. */
static int remove_at(int dirfd, const char *name, int depth)
{
	struct stat sb;
	DIR *d;
	struct dirent *e;
	int fd, r = 0;

	if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(sb.st_mode))
		return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
	if (depth > RM_DEPTH_MAX)
		return -ELOOP;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (r == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			r = remove_at(fd, e->d_name, depth + 1);
	closedir(d);
	if (r == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

/* Empties the folder dirfd (an opaque whiteout). */
static int empty_dir(int dirfd)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	struct dirent *e;
	DIR *d;
	int r = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (r == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			r = remove_at(dirfd, e->d_name, 0);
	closedir(d);
	return r;
}

static int write_data(struct unpack *u, struct archive *a, int fd, const char *path)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	int r;

	while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
		if (off < 0 || len > u->lim->max_bytes - u->st->bytes)
			return fail(u, -EFBIG, "the layers are larger than allowed, at", path);
		u->st->bytes += len;
		for (size_t done = 0; done < len;) {
			ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
					   (off_t)(off + (la_int64_t)done));

			if (n < 0)
				return fail(u, -errno, strerror(errno), path);
			done += (size_t)n;
		}
	}
	if (r != ARCHIVE_EOF)
		return fail(u, -EINVAL, archive_error_string(a) ? archive_error_string(a)
								  : "unreadable data", path);
	/* A sparse file's length: its last hole counts too. */
	return 0;
}

static int make_file(struct unpack *u, struct archive *a, struct archive_entry *e,
		     int dirfd, const char *base, const char *path, mode_t mode)
{
	la_int64_t size = archive_entry_size(e);
	int fd, r;

	if (size < 0 || (uint64_t)size > u->lim->max_bytes)
		return fail(u, -EFBIG, "a file larger than the layers may be", path);
	r = remove_at(dirfd, base, 0);
	if (r < 0)
		return fail(u, r, "cannot replace", path);
	fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(u, -errno, strerror(errno), path);
	r = write_data(u, a, fd, path);
	if (r == 0 && ftruncate(fd, (off_t)size) < 0)
		r = fail(u, -errno, strerror(errno), path);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = fail(u, -errno, strerror(errno), path);
	close(fd);
	return r;
}

static int make_dir(struct unpack *u, int dirfd, const char *base, const char *path, mode_t mode)
{
	struct stat sb;
	int fd;

	if (fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(sb.st_mode)) {
		int r = remove_at(dirfd, base, 0);

		if (r < 0)
			return fail(u, r, "cannot replace", path);
	}
	if (mkdirat(dirfd, base, 0700) < 0 && errno != EEXIST)
		return fail(u, -errno, strerror(errno), path);
	fd = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(u, -errno, strerror(errno), path);
	if (fchmod(fd, mode) < 0) {
		close(fd);
		return fail(u, -errno, strerror(errno), path);
	}
	close(fd);
	return 0;
}

static int make_hardlink(struct unpack *u, struct archive_entry *e, int dirfd, const char *base,
			 const char *path)
{
	const char *t = archive_entry_hardlink(e);
	char target[PATH_LEN_MAX + 1];
	struct stat sb;
	int fd, r;

	if (!t || strlen(t) > PATH_LEN_MAX)
		return fail(u, -EINVAL, "a hard link without a valid target", path);
	snprintf(target, sizeof(target), "%s", t);
	if (clean_name(target) < 0 || !*target)
		return fail(u, -EINVAL, "a hard link whose target leaves the root", path);
	fd = open_beneath(u->root, target, O_PATH);
	if (fd < 0)
		return fail(u, -EINVAL, "a hard link to nothing beneath the root (or through a symbolic link)", path);
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return fail(u, -EINVAL, "a hard link to something not a regular file", path);
	}
	r = remove_at(dirfd, base, 0);
	if (r == 0 && linkat(fd, "", dirfd, base, AT_EMPTY_PATH) < 0)
		r = -errno;
	close(fd);
	return r < 0 ? fail(u, r, "cannot link", path) : 0;
}

static int make_symlink(struct unpack *u, struct archive_entry *e, int dirfd, const char *base,
			const char *path)
{
	const char *t = archive_entry_symlink(e);
	int r;

	/*
	 * Its target is kept as it is: the folder is the container's root, where absolute
	 * targets stay inside; and we never follow one while unpacking (RESOLVE_NO_SYMLINKS).
	 */
	if (!t || !*t || strlen(t) > PATH_LEN_MAX)
		return fail(u, -EINVAL, "a symbolic link without a valid target", path);
	r = remove_at(dirfd, base, 0);
	if (r == 0 && symlinkat(t, dirfd, base) < 0)
		r = -errno;
	return r < 0 ? fail(u, r, "cannot make the symbolic link", path) : 0;
}

/* A whiteout in dirfd: -1 when base is not one. */
static int whiteout(struct unpack *u, int dirfd, const char *base, const char *path)
{
	int r;

	if (strncmp(base, ".wh.", 4))
		return -1;
	u->st->whiteouts++;
	if (!strcmp(base, ".wh..wh..opq"))
		r = empty_dir(dirfd);
	else if (!base[4] || !strcmp(base + 4, ".") || !strcmp(base + 4, ".."))
		return fail(u, -EINVAL, "a whiteout of nothing", path);
	else
		r = remove_at(dirfd, base + 4, 0);
	return r < 0 ? fail(u, r, "cannot apply the whiteout", path) : 0;
}

static int one_entry(struct unpack *u, struct archive *a, struct archive_entry *e)
{
	const char *raw = archive_entry_pathname(e);
	char path[PATH_LEN_MAX + 1], *slash, *base;
	mode_t type = archive_entry_filetype(e), mode = archive_entry_perm(e);
	int dirfd, r;

	if (!raw || strlen(raw) > PATH_LEN_MAX)
		return fail(u, -EINVAL, "an entry without a valid name", raw ? "(too long)" : "");
	snprintf(path, sizeof(path), "%s", raw);
	if (clean_name(path) < 0)
		return fail(u, -EINVAL, "a name with \"..\" (it would leave the root)", raw);
	if (!*path)
		return 0; /* the root itself */
	if (++u->st->entries > u->lim->max_entries)
		return fail(u, -EFBIG, "more entries than allowed, at", path);
	if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK)
		return fail(u, -EINVAL, "a device node, fifo or socket (refused)", path);
	if (mode & (S_ISUID | S_ISGID)) {
		mode &= ~(mode_t)(S_ISUID | S_ISGID);
		u->st->setid_cleared++;
	}
	slash = strrchr(path, '/');
	if (slash) {
		*slash = '\0';
		base = slash + 1;
		dirfd = open_dir_made(u, path);
		*slash = '/';
	} else {
		base = path;
		dirfd = fcntl(u->root, F_DUPFD_CLOEXEC, 0);
		if (dirfd < 0)
			dirfd = -errno;
	}
	if (dirfd < 0)
		return fail(u, dirfd == -ELOOP || dirfd == -EXDEV || dirfd == -ENOTDIR ? -EINVAL : dirfd,
			    "its folder is not a folder beneath the root (a symbolic link?)", path);
	r = whiteout(u, dirfd, base, path);
	if (r != -1)
		goto out;
	if (archive_entry_hardlink(e))
		r = make_hardlink(u, e, dirfd, base, path);
	else if (type == AE_IFREG)
		r = make_file(u, a, e, dirfd, base, path, mode & 0777);
	else if (type == AE_IFDIR)
		r = make_dir(u, dirfd, base, path, mode & 01777);
	else if (type == AE_IFLNK)
		r = make_symlink(u, e, dirfd, base, path);
	else
		r = fail(u, -EINVAL, "an entry of an unknown type", path);
out:
	close(dirfd);
	return r;
}

static int unpack(struct unpack *u, struct archive *a)
{
	struct archive_entry *e;
	int r = 0, ar;

	while (r == 0 && (ar = archive_read_next_header(a, &e)) != ARCHIVE_EOF) {
		if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
			r = fail(u, -EINVAL, "not a readable tar layer",
				 archive_error_string(a) ? archive_error_string(a) : "");
			break;
		}
		r = one_entry(u, a, e);
	}
	return r;
}

static struct archive *reader(void)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
	archive_read_support_format_tar(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_none(a);
	return a;
}

static int run(int root_fd, struct archive *a, int opened, const struct env_unpack_limits *lim,
	       struct env_unpack_stats *stats, char *err, size_t errlen)
{
	struct unpack u = { root_fd, lim, stats, err, errlen };
	int r;

	if (opened != ARCHIVE_OK)
		r = fail(&u, -EINVAL, "not a readable tar layer",
			 archive_error_string(a) ? archive_error_string(a) : "");
	else
		r = unpack(&u, a);
	archive_read_free(a);
	return r;
}

int env_unpack_fd(int root_fd, int fd, const struct env_unpack_limits *lim,
		  struct env_unpack_stats *stats, char *err, size_t errlen)
{
	struct archive *a = reader();

	if (!a)
		return -ENOMEM;
	return run(root_fd, a, archive_read_open_fd(a, fd, 64 * 1024), lim, stats, err, errlen);
}

int env_unpack_mem(int root_fd, const void *buf, size_t len,
		   const struct env_unpack_limits *lim, struct env_unpack_stats *stats,
		   char *err, size_t errlen)
{
	struct archive *a = reader();

	if (!a)
		return -ENOMEM;
	return run(root_fd, a, archive_read_open_memory(a, buf, len), lim, stats, err, errlen);
}
