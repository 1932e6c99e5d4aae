/*
 * libFuzzer harness: scheduler/env_unpack.h on hostile layers.  Each input is unpacked into
 * a fresh root beside a folder "outside" holding one file; after every input the harness
 * aborts when outside/ changed or when root holds a setuid or setgid file or a device node,
 * the unpacker's invariants (env_unpack.h).  The input is unpacked twice, the second time
 * over the first result, as a second layer would be.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scheduler/env_unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[] = "/tmp/llmfs-fuzz-unpack-XXXXXX";
static char root[256], outside[256];
static int ready;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	/* Folders an input made without write permission: opened up to be removed. */
	if (flag == FTW_DP || flag == FTW_D)
		chmod(path, 0700);
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int bad_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	return (sb->st_mode & (S_ISUID | S_ISGID)) || S_ISCHR(sb->st_mode) ||
	       S_ISBLK(sb->st_mode) || S_ISFIFO(sb->st_mode) || S_ISSOCK(sb->st_mode);
}

static void setup(void)
{
	char p[512];
	int fd;

	if (!mkdtemp(base))
		abort();
	snprintf(root, sizeof(root), "%s/root", base);
	snprintf(outside, sizeof(outside), "%s/outside", base);
	snprintf(p, sizeof(p), "%s/secret", outside);
	if (mkdir(outside, 0755) < 0)
		abort();
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	if (fd < 0 || write(fd, "keep", 4) != 4)
		abort();
	close(fd);
}

static void check_outside(void)
{
	char p[512], buf[16] = "";
	struct dirent *e;
	DIR *d = opendir(outside);
	int n = 0, fd;

	if (!d)
		abort();
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	snprintf(p, sizeof(p), "%s/secret", outside);
	fd = open(p, O_RDONLY | O_NOFOLLOW);
	if (n != 1 || fd < 0 || read(fd, buf, sizeof(buf)) != 4 || memcmp(buf, "keep", 4))
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct env_unpack_limits lim = { 4u << 20, 2000 };
	struct env_unpack_stats st = { 0 };
	char err[512];
	int fd;

	if (!ready++)
		setup();
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(root, 0755) < 0)
		abort();
	fd = open(root, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		abort();
	for (int pass = 0; pass < 2; pass++)
		env_unpack_mem(fd, data, size, &lim, &st, err, sizeof(err));
	close(fd);
	check_outside();
	if (nftw(root, bad_entry, 16, FTW_PHYS) != 0)
		abort();
	return 0;
}
