/*
 * names.h - the numbers a subtree gives the names of its entries.
 *
 * train/, mining/ and envs/ number an entry's inodes by an id kept for the daemon's life:
 * a name always maps to the same inodes, even after its entry is removed and made again,
 * so that the kernel's cached inodes never name another entry.  Ids start at 1 and are
 * dense.  Every call takes the table's own lock (a leaf) and may be made from any thread.
 */
#ifndef LLMFS_FS_NAMES_H
#define LLMFS_FS_NAMES_H

#include <pthread.h>
#include <stddef.h>

struct fs_names {
	pthread_mutex_t lock;
	char **v;               /* id - 1 -> name */
	size_t n, cap;
};

void fs_names_init(struct fs_names *nm);
void fs_names_free(struct fs_names *nm);
/* name's id, made when new; 0 when out of memory. */
size_t fs_names_id(struct fs_names *nm, const char *name);
/* A copy of the name of id (caller frees), or NULL (no such id, or no memory). */
char *fs_names_get(struct fs_names *nm, size_t id);

#endif
