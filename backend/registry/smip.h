/*
 * smip.h - SMIP manifests: the JSON description of a stored model.
 *
 * A manifest names every file of a model folder with its size, mode,
 * SHA-256 and ordered chunk list, so that another store can tell which
 * chunks it lacks and rebuild each file exactly.  The format is versioned
 * (SMIP_VERSION) and documented in docs/smip.md.
 *
 * Contract: thread-safe (it reads through the store's locked API).
 * Returns 0 or -errno; the text is malloc()ed and owned by the caller.
 */
#ifndef LLMFS_SMIP_H
#define LLMFS_SMIP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "backend/store/store.h"

#define SMIP_VERSION 1

int smip_manifest(struct cas_store *st, uint64_t dir_ino, const char *name,
		  char **ret, size_t *ret_len);

/* One entry of a manifest made from a list rather than a folder. */
struct smip_entry {
	const char *path; /* relative, parents listed before children */
	uint64_t ino;     /* a catalog inode (linked or orphaned), or 0 */
	uint32_t mode;    /* with ino 0: a folder of this mode */
};
/* The manifest of the entries, as a JSON object (the caller decrefs it). */
int smip_manifest_json(struct cas_store *st, const char *name,
		       const struct smip_entry *e, size_t n, json_t **ret);

/*
 * A readable summary of the model (.smip/info): for each file that is a
 * GGUF, safetensors or config.json, what its header says (modelfmt.h);
 * other files are listed as plain bytes, with the reason when a header
 * was malformed.  With tensors set, the tensor index instead
 * (.smip/tensors): one line per tensor, "file offset size dtype [shape]
 * name".
 */
int smip_info(struct cas_store *st, uint64_t dir_ino, const char *name,
	      int tensors, char **ret, size_t *ret_len);

#endif
