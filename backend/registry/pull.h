/*
 * pull.h - reading models from registries: a tag resolved into a model
 * (struct reg_model), and per open file a reader (struct pull_reader) that
 * serves reads and pulls (copy_file_range into a store writer).
 *
 *   fs/net.c ──► reg_model_resolve()        manifest, layout, SMIP index
 *            ──► pull_read() / pull_copy()
 *                    │ SMIP: smip_fetch() the chunks the store lacks, then
 *                    │       cas_chunk_read() / cas_writer_append()
 *                    │ other layouts: HTTP ranges, small blobs whole, whole
 *                    │       layers streamed into the writer, tar layers
 *                    ▼       copied once into an orphan inode of the store
 *               backend/store (never fs/)
 *
 * Contract: a reg_model is immutable once resolved (its layer cache has
 * its own leaf lock) and may be shared by any threads; its owner frees it
 * with reg_model_free() once no reader uses it.  A pull_reader is used by
 * one thread at a time (the caller's handle lock).  No lock of this module
 * is held across a network call.  Calls return 0 (or a length) or -errno;
 * where a failure deserves a log line, err holds the reason (never
 * credentials) and the result is -EIO.  Nothing prints.  Progress is
 * counted on transfers of the given list (transfers.h), named
 * REMOTE/REPO:TAG/PATH.
 */
#ifndef LLMFS_BACKEND_REGISTRY_PULL_H
#define LLMFS_BACKEND_REGISTRY_PULL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/registry/layout.h"
#include "backend/registry/oci.h"
#include "backend/registry/smipnet.h"
#include "backend/registry/transfers.h"
#include "backend/store/store.h"

/* A tag resolved: what the registry said at one moment. */
struct reg_model {
	struct oci_client *c;     /* not owned */
	char *remote, *repo, *tag;
	char digest[OCI_DIGEST_LEN];
	char *manifest, *config;  /* config: the SMIP manifest (SMIP only) */
	size_t mlen, clen;
	struct layout *l;
	struct smip_model *m;     /* SMIP only; NULL for other layouts */
	/*
	 * Tar layers pulled member by member are fetched once, checked and
	 * kept as orphan inodes of the store while the model lives.
	 */
	pthread_mutex_t lock;     /* lc, nlc only; a leaf */
	struct pull_layer {
		char digest[OCI_DIGEST_LEN];
		uint64_t ino;
	} *lc;
	size_t nlc;
};

/*
 * Reads repo:tag: its manifest, the layout's file list and, for SMIP, the
 * index (which must name only the manifest's own layers).  -ENOENT when
 * the tag does not exist.
 */
int reg_model_resolve(struct oci_client *c, const char *remote,
		      const char *repo, const char *tag, struct reg_model **ret,
		      char *err, size_t errlen);
/* Frees m and the local layer copies it holds (NULL: nothing). */
void reg_model_free(struct cas_store *st, struct reg_model *m);
/* The same manifest resolved again: the local layer copies move over. */
void reg_model_adopt_layers(struct reg_model *to, struct reg_model *from);

struct pull_reader;

/* A reader of file idx (into m->files or l->files) of m, named path. */
int pull_reader_new(struct reg_model *m, long idx, const char *path,
		    struct pull_reader **ret);
/* Ends the reader's transfer, if any, as done. */
void pull_reader_free(struct xfer_list *xl, struct pull_reader *rd);

/*
 * Reads up to size bytes at off: SMIP chunks the store lacks are fetched
 * first (with read-ahead for a reader that goes in order), checked and
 * kept; other layouts read HTTP ranges.  Short only at the end.
 */
ssize_t pull_read(struct cas_store *st, struct xfer_list *xl,
		  struct pull_reader *rd, void *buf, size_t size, uint64_t off,
		  char *err, size_t errlen);

/*
 * copy_file_range() of [off_in, off_in + len) into w at off_out (a pull):
 * SMIP chunks are fetched if missing and appended by id; a whole layer is
 * streamed and committed only if its digest matches.  Returns the bytes
 * copied, 0 when the offsets do not allow it (the caller copies bytes), or
 * -errno (w aborted where a partial copy would be wrong).
 */
ssize_t pull_copy(struct cas_store *st, struct xfer_list *xl,
		  struct pull_reader *rd, uint64_t off_in, size_t len,
		  struct cas_writer *w, uint64_t off_out, char *err,
		  size_t errlen);

#endif
