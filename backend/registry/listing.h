/*
 * listing.h - what a remote holds, as folders: its repositories (the
 * catalog API merged with the configured list), the names under a
 * repository path (its tags, then the next parts of deeper repository
 * paths), and whether a path is a repository.
 *
 * Contract: thread-safe (the client's own locks); no cache (the caller
 * keeps listings as long as it wants); returns 0 or -errno, nothing
 * prints.  Lists are freed with oci_strv_free(v, n).
 */
#ifndef LLMFS_BACKEND_REGISTRY_LISTING_H
#define LLMFS_BACKEND_REGISTRY_LISTING_H

#include <stddef.h>

#include "backend/registry/oci.h"

/*
 * The repositories of a remote: the catalog's, then the configured ones
 * it lacks.  A registry without the catalog API gives the configured list
 * and, in err, why the catalog failed (not an error).
 */
int reg_repos(struct oci_client *c, const struct oci_remote *cfg,
	      char ***ret, size_t *ret_n, char *err, size_t errlen);

/*
 * The names under repository path prefix ("" for the remote's top) given
 * the remote's repositories: the tags of prefix if it is a repository
 * (is_tag 1), then each next part of the deeper repositories once.
 */
int reg_dir_names(struct oci_client *c, char *const *repos, size_t nrepos,
		  const char *prefix, char ***ret_names,
		  unsigned char **ret_is_tag, size_t *ret_n);

/* 1 if path is a repository with tags, else 0. */
int reg_is_repo(struct oci_client *c, const char *path);

#endif
