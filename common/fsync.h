/*
 * fsync.h - durability of a path: the one helper for "fsync this file or
 * folder by name", and for the folder that holds a name after a rename.
 *
 * Contract: each opens the path read-only (a folder too), fsyncs it and
 * closes it; returns 0 or -errno (of the open or of the fsync).  No
 * allocation except fsync_parent()'s copy of the path; safe from any thread.
 */
#ifndef LLMFS_COMMON_FSYNC_H
#define LLMFS_COMMON_FSYNC_H

/* fsync() of the file or folder at path. */
int fsync_path(const char *path);

/* fsync() of the folder that holds path ("." for a bare name): what makes a
 * rename or a creation of path durable. */
int fsync_parent(const char *path);

#endif
