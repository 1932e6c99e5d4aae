#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsync.h"

int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

int fsync_parent(const char *path)
{
	char *copy = strdup(path);
	int r;

	if (!copy)
		return -ENOMEM;
	r = fsync_path(dirname(copy));
	free(copy);
	return r;
}
