/*
 * tree.c - paths inside the mounted tree (tree.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tree.h"

int tree_path(const char *tree, const char *rel, char **ret)
{
	const char *p = rel;

	if (!rel || !*rel || rel[0] == '/')
		return -EINVAL;
	while (*p) {
		size_t n = strcspn(p, "/");

		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.') || n == 0)
			return -EINVAL;
		p += n + (p[n] == '/');
	}
	if (asprintf(ret, "%s/%s", tree, rel) < 0) {
		*ret = NULL;
		return -ENOMEM;
	}
	return 0;
}

int tree_wait(const char *tree)
{
	char *p = NULL;
	int i;

	if (asprintf(&p, "%s/.llmfs/status", tree) < 0)
		return -ENOMEM;
	for (i = 0; i < 600 && access(p, F_OK) < 0; i++)
		usleep(100000);
	free(p);
	return i < 600 ? 0 : -ETIMEDOUT;
}
