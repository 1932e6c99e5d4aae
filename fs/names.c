/*
 * names.c - ids of entry names (names.h).
 */
#include <stdlib.h>
#include <string.h>

#include "fs/names.h"

void fs_names_init(struct fs_names *nm)
{
	memset(nm, 0, sizeof(*nm));
	pthread_mutex_init(&nm->lock, NULL);
}

void fs_names_free(struct fs_names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->v[i]);
	free(nm->v);
	pthread_mutex_destroy(&nm->lock);
}

size_t fs_names_id(struct fs_names *nm, const char *name)
{
	size_t id = 0;

	pthread_mutex_lock(&nm->lock);
	for (size_t i = 0; i < nm->n && !id; i++)
		if (!strcmp(nm->v[i], name))
			id = i + 1;
	if (!id && nm->n == nm->cap) {
		size_t cap = nm->cap ? 2 * nm->cap : 64;
		char **v = realloc(nm->v, cap * sizeof(*v));

		if (v) {
			nm->v = v;
			nm->cap = cap;
		}
	}
	if (!id && nm->n < nm->cap && (nm->v[nm->n] = strdup(name)))
		id = ++nm->n;
	pthread_mutex_unlock(&nm->lock);
	return id;
}

char *fs_names_get(struct fs_names *nm, size_t id)
{
	char *s = NULL;

	pthread_mutex_lock(&nm->lock);
	if (id >= 1 && id <= nm->n)
		s = strdup(nm->v[id - 1]);
	pthread_mutex_unlock(&nm->lock);
	return s;
}
