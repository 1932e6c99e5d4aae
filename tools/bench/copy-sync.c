/* copy-sync: `cp -r SRC DST` that syncs each file before closing it.
 *
 * Usage: copy-sync SRC DST
 *
 * Copies the tree of folders and regular files under SRC to DST (made) and
 * calls fdatasync() on each copied file before its close(), so that each
 * close returns with the file on the disk: what llmfs's default close
 * promises (docs/architecture.md, Crash safety).  On ext4 this is the floor
 * of any store that keeps that promise for a `cp -r` of small files, which
 * closes one file at a time.  Exits 1 with a message on the first error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_file(const char *from, const char *to)
{
	char buf[1 << 16];
	int in, out, r = -1;
	ssize_t n;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		goto out;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			goto out;
	if (n == 0 && fdatasync(out) == 0)
		r = 0;
out:
	if (out >= 0 && close(out) < 0)
		r = -1;
	close(in);
	return r;
}

static int copy_tree(const char *from, const char *to)
{
	char s[PATH_MAX], t[PATH_MAX];
	struct dirent *e;
	struct stat st;
	DIR *d;
	int r = 0;

	if (mkdir(to, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "copy-sync: %s: %s\n", to, strerror(errno));
		return -1;
	}
	d = opendir(from);
	if (!d) {
		fprintf(stderr, "copy-sync: %s: %s\n", from, strerror(errno));
		return -1;
	}
	while (r == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(s, sizeof(s), "%s/%s", from, e->d_name) >= (int)sizeof(s) ||
		    snprintf(t, sizeof(t), "%s/%s", to, e->d_name) >= (int)sizeof(t)) {
			errno = ENAMETOOLONG;
			r = -1;
			break;
		}
		if (lstat(s, &st) < 0 || (S_ISREG(st.st_mode) && copy_file(s, t) < 0)) {
			fprintf(stderr, "copy-sync: %s: %s\n", s, strerror(errno));
			r = -1;
		} else if (S_ISDIR(st.st_mode)) {
			r = copy_tree(s, t);
		}
	}
	closedir(d);
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: copy-sync SRC DST\n");
		return 2;
	}
	return copy_tree(argv[1], argv[2]) < 0 ? 1 : 0;
}
