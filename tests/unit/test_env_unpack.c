/*
 * test_env_unpack.c - image layers unpacked by scheduler/env_unpack.h, hostile ones included.
 *
 * Each layer is a tar written here with libarchive's writer.  A folder "outside" beside the
 * root holds one file: every hostile layer must leave it as it was, and the root must hold
 * nothing that leads out of it.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "scheduler/env_unpack.h"
#include "tests/check.h"

static char base[] = "/tmp/llmfs-unpack-XXXXXX";
static char root[4096], outside[4096];

/* ---- building layers ----------------------------------------------------------------------- */

struct layer {
	struct archive *a;
	char *buf;
	size_t cap, used;
};

static void layer_begin(struct layer *l, int gzip)
{
	l->cap = 64u << 20;
	l->buf = malloc(l->cap);
	REQUIRE(l->buf);
	l->a = archive_write_new();
	archive_write_set_format_pax_restricted(l->a);
	if (gzip)
		archive_write_add_filter_gzip(l->a);
	archive_write_set_bytes_in_last_block(l->a, 1);
	REQUIRE(archive_write_open_memory(l->a, l->buf, l->cap, &l->used) == ARCHIVE_OK);
}

static void add(struct layer *l, const char *path, mode_t type, mode_t perm, const char *data,
		size_t size, const char *link, const char *hardlink)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	if (type == AE_IFREG && !hardlink)
		archive_entry_set_size(e, (la_int64_t)size);
	if (link)
		archive_entry_set_symlink(e, link);
	if (hardlink)
		archive_entry_set_hardlink(e, hardlink);
	if (type == AE_IFCHR)
		archive_entry_set_rdev(e, makedev(1, 3));
	REQUIRE(archive_write_header(l->a, e) == ARCHIVE_OK);
	if (data && size)
		REQUIRE(archive_write_data(l->a, data, size) == (la_ssize_t)size);
	archive_entry_free(e);
}

static void file(struct layer *l, const char *path, const char *text)
{
	add(l, path, AE_IFREG, 0644, text, strlen(text), NULL, NULL);
}

/* Ends the layer and unpacks it into root; the result of env_unpack_mem(). */
static int layer_unpack(struct layer *l, uint64_t max_bytes, char *err, size_t errlen)
{
	struct env_unpack_limits lim = { max_bytes, 1000 };
	struct env_unpack_stats st = { 0 };
	int fd, r;

	archive_write_close(l->a);
	archive_write_free(l->a);
	fd = open(root, O_RDONLY | O_DIRECTORY);
	REQUIRE(fd >= 0);
	r = env_unpack_mem(fd, l->buf, l->used, &lim, &st, err, errlen);
	close(fd);
	free(l->buf);
	return r;
}

static int unpack_default(struct layer *l)
{
	char err[512] = "";
	int r = layer_unpack(l, 1u << 30, err, sizeof(err));

	if (r < 0)
		fprintf(stderr, "  (unpack said: %s)\n", err);
	return r;
}

/* ---- checking the result ------------------------------------------------------------------ */

static char *in_root(const char *rel)
{
	static char p[16384];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return p;
}

static char *slurp(const char *path)
{
	static char buf[4096];
	int fd = open(path, O_RDONLY | O_NOFOLLOW);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

/* outside/ holds exactly its one file, unchanged. */
static void check_outside(void)
{
	DIR *d = opendir(outside);
	struct dirent *e;
	int n = 0;
	char p[8192];

	REQUIRE(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	CHECK_EQ(n, 1);
	snprintf(p, sizeof(p), "%s/secret", outside);
	CHECK(slurp(p) && !strcmp(slurp(p), "keep"));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void fresh_root(void)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	REQUIRE(mkdir(root, 0755) == 0);
}

/* ---- the tests ---------------------------------------------------------------------------- */

static void test_layers_and_whiteouts(void)
{
	struct layer l;
	struct stat sb;

	fresh_root();
	layer_begin(&l, 0);
	add(&l, "etc/", AE_IFDIR, 0755, NULL, 0, NULL, NULL);
	file(&l, "etc/os-release", "ID=test\n");
	file(&l, "etc/gone", "old\n");
	file(&l, "./var/lib/deep/file", "implicit parents\n");
	file(&l, "opaque/a", "a");
	file(&l, "opaque/b", "b");
	add(&l, "usr/bin/su", AE_IFREG, 04755, "#!", 2, NULL, NULL);
	add(&l, "usr/bin/wall", AE_IFREG, 02755, "#!", 2, NULL, NULL);
	add(&l, "bin", AE_IFLNK, 0777, NULL, 0, "usr/bin", NULL);
	add(&l, "etc/abs", AE_IFLNK, 0777, NULL, 0, "/etc/os-release", NULL);
	add(&l, "etc/hard", AE_IFREG, 0644, NULL, 0, NULL, "etc/os-release");
	add(&l, "tmp", AE_IFDIR, 01777, NULL, 0, NULL, NULL);
	CHECK_RC(unpack_default(&l), 0);
	CHECK(slurp(in_root("etc/os-release")) && !strcmp(slurp(in_root("etc/os-release")), "ID=test\n"));
	CHECK(slurp(in_root("var/lib/deep/file")) != NULL);
	CHECK(stat(in_root("usr/bin/su"), &sb) == 0 && (sb.st_mode & 07777) == 0755);
	CHECK(stat(in_root("usr/bin/wall"), &sb) == 0 && (sb.st_mode & 07777) == 0755);
	CHECK(stat(in_root("tmp"), &sb) == 0 && (sb.st_mode & 07777) == 01777);
	CHECK(lstat(in_root("bin"), &sb) == 0 && S_ISLNK(sb.st_mode));
	CHECK(stat(in_root("etc/hard"), &sb) == 0 && sb.st_nlink == 2);

	/* A second layer: whiteouts of a file and of a folder's contents, a file replaced. */
	layer_begin(&l, 1);
	file(&l, "etc/.wh.gone", "");
	file(&l, "opaque/.wh..wh..opq", "");
	file(&l, "opaque/c", "c");
	file(&l, "etc/os-release", "ID=new\n");
	CHECK_RC(unpack_default(&l), 0);
	CHECK(access(in_root("etc/gone"), F_OK) < 0);
	CHECK(access(in_root("opaque/a"), F_OK) < 0 && access(in_root("opaque/b"), F_OK) < 0);
	CHECK(access(in_root("opaque/c"), F_OK) == 0);
	CHECK(access(in_root("opaque/.wh..wh..opq"), F_OK) < 0);
	CHECK(slurp(in_root("etc/os-release")) && !strcmp(slurp(in_root("etc/os-release")), "ID=new\n"));
	check_outside();
}

static void test_dotdot_refused(void)
{
	struct layer l;
	char err[512] = "";

	fresh_root();
	layer_begin(&l, 0);
	file(&l, "ok", "fine");
	file(&l, "a/../../outside/secret", "pwned");
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "..") != NULL);
	check_outside();
}

static void test_absolute_names_stay_inside(void)
{
	struct layer l;
	char p[8192];

	fresh_root();
	snprintf(p, sizeof(p), "%s/secret", outside);
	layer_begin(&l, 0);
	file(&l, p, "inside");
	CHECK_RC(unpack_default(&l), 0);
	/* outside's absolute path, recreated beneath root */
	CHECK(slurp(in_root(p + 1)) && !strcmp(slurp(in_root(p + 1)), "inside"));
	check_outside();
}

static void test_symlink_escape_refused(void)
{
	struct layer l;
	char err[512] = "";

	fresh_root();
	/* A link to outside/ (absolute and relative), then writes through them. */
	layer_begin(&l, 0);
	add(&l, "evil", AE_IFLNK, 0777, NULL, 0, outside, NULL);
	add(&l, "rel", AE_IFLNK, 0777, NULL, 0, "../outside", NULL);
	CHECK_RC(unpack_default(&l), 0);
	layer_begin(&l, 0);
	file(&l, "evil/secret", "pwned");
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "symbolic link") != NULL);
	layer_begin(&l, 0);
	file(&l, "rel/new", "pwned");
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
	/* A hard link through the link, or to a name with "..". */
	layer_begin(&l, 0);
	add(&l, "h1", AE_IFREG, 0644, NULL, 0, NULL, "evil/secret");
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
	layer_begin(&l, 0);
	add(&l, "h2", AE_IFREG, 0644, NULL, 0, NULL, "../outside/secret");
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
	/* A whiteout through the link. */
	layer_begin(&l, 0);
	file(&l, "evil/.wh.secret", "");
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
	/* Replacing the link itself is fine: it is a name in root. */
	layer_begin(&l, 0);
	file(&l, "evil", "a file now");
	CHECK_RC(unpack_default(&l), 0);
	check_outside();
}

static void test_devices_refused(void)
{
	struct layer l;
	char err[512] = "";

	fresh_root();
	layer_begin(&l, 0);
	add(&l, "dev/null", AE_IFCHR, 0666, NULL, 0, NULL, NULL);
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "device") != NULL);
	CHECK(access(in_root("dev/null"), F_OK) < 0);
	layer_begin(&l, 0);
	add(&l, "fifo", AE_IFIFO, 0666, NULL, 0, NULL, NULL);
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EINVAL);
}

static void test_limits(void)
{
	struct layer l;
	char err[512] = "", *big = calloc(1, 3u << 20);

	REQUIRE(big);
	fresh_root();
	/* 3 MiB of zeros: a few KiB compressed, refused by a 1 MiB limit. */
	layer_begin(&l, 1);
	add(&l, "bomb", AE_IFREG, 0644, big, 3u << 20, NULL, NULL);
	CHECK_RC(layer_unpack(&l, 1u << 20, err, sizeof(err)), -EFBIG);
	free(big);
	/* More entries than allowed (1000). */
	layer_begin(&l, 0);
	for (int i = 0; i < 1100; i++) {
		char name[32];

		snprintf(name, sizeof(name), "f%d", i);
		file(&l, name, "x");
	}
	CHECK_RC(layer_unpack(&l, 1u << 30, err, sizeof(err)), -EFBIG);
}

static void test_garbage(void)
{
	struct env_unpack_limits lim = { 1u << 20, 100 };
	struct env_unpack_stats st = { 0 };
	char junk[4096], err[256];
	int fd = open(root, O_RDONLY | O_DIRECTORY);

	REQUIRE(fd >= 0);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	CHECK_RC(env_unpack_mem(fd, junk, sizeof(junk), &lim, &st, err, sizeof(err)), -EINVAL);
	close(fd);
}

int main(void)
{
	char p[8192];
	int fd;

	REQUIRE(mkdtemp(base));
	snprintf(root, sizeof(root), "%s/root", base);
	snprintf(outside, sizeof(outside), "%s/outside", base);
	REQUIRE(mkdir(root, 0755) == 0 && mkdir(outside, 0755) == 0);
	snprintf(p, sizeof(p), "%s/secret", outside);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	REQUIRE(fd >= 0 && write(fd, "keep", 4) == 4);
	close(fd);
	RUN(test_layers_and_whiteouts);
	RUN(test_dotdot_refused);
	RUN(test_absolute_names_stay_inside);
	RUN(test_symlink_escape_refused);
	RUN(test_devices_refused);
	RUN(test_limits);
	RUN(test_garbage);
	nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_status();
}
