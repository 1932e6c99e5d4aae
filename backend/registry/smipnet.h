/*
 * smipnet.h - SMIP models on OCI registries (docs/smip.md, "On a registry").
 *
 * A model travels as an OCI 1.1 artifact: an image manifest with
 * artifactType SMIP_ARTIFACT_TYPE, the SMIP manifest as its config blob
 * (extended with "packs", the layers, and "index", where each chunk's
 * record lies in them), and pack blobs as layers: a pack header and chunk
 * records exactly as a store keeps them, so that a pull stores fetched
 * records as they are, without recompressing, and a lazy reader fetches one
 * record with an HTTP range.
 *
 * Pushes upload only chunks the repository lacks: the index of every SMIP
 * tag already in the repository says which chunks are there and where;
 * new chunks go into new pack blobs, and the manifest goes last.
 *
 * Contract: thread-safe (through the store's and the client's own locks);
 * returns 0 or -errno with a one-line reason in err; nothing prints.
 * Records fetched are checked (cas_record_check()) before the store or a
 * reader sees them; a range that keeps failing is -EIO.
 */
#ifndef LLMFS_SMIPNET_H
#define LLMFS_SMIPNET_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/registry/layout.h"
#include "backend/registry/oci.h"
#include "backend/registry/smip.h"
#include "backend/store/store.h"

/* Largest pack blob a push writes: small enough that a push killed midway
 * leaves whole blobs behind, which the next push finds and skips. */
#define SMIP_PACK_BLOB_MAX (16u << 20)

/* A chunk of a remote model and where its record lies. */
struct smip_rchunk {
	struct cas_id id;
	uint32_t ulen;
	uint32_t pack;   /* index into packs */
	uint64_t off;    /* of the record in the pack blob */
	uint32_t rlen;   /* record length: header and encoded bytes */
};

struct smip_rfile {
	char *path;
	uint32_t mode;       /* with the S_IF* type bits */
	uint64_t size;
	uint8_t sha[32];
	int has_sha;
	char *target;        /* symlinks */
	uint32_t *chunks;    /* indexes into smip_model.chunks, in order */
	uint64_t *offs;      /* file offset of each chunk; offs[n] = size */
	size_t nchunks;
};

struct smip_model {
	char *name;
	struct smip_rfile *files;
	size_t nfiles;
	struct smip_rchunk *chunks; /* distinct chunks */
	size_t nchunks;
	struct layout_desc *packs;
	size_t npacks;
};

/* Parses a SMIP config blob (the manifest with packs and index). */
int smip_model_parse(const char *json, size_t len, struct smip_model **ret,
		     char *err, size_t errlen);
void smip_model_free(struct smip_model *m);
/* The file at path, or NULL. */
const struct smip_rfile *smip_model_file(const struct smip_model *m,
					 const char *path);

/*
 * Makes the store hold chunks idx[0..n) of m: those it lacks are fetched
 * (ranges coalesced, in parallel), checked and stored as fetched chunks.
 * progress counts bytes received.
 */
int smip_fetch(struct cas_store *st, struct oci_client *c, const char *repo,
	       const struct smip_model *m, const uint32_t *idx, size_t n,
	       _Atomic uint64_t *progress, char *err, size_t errlen);

struct smip_push_stats {
	uint64_t chunks, new_chunks;
	uint64_t bytes_sent;      /* pack blob bytes uploaded */
	uint64_t packs_new, packs_reused, packs_mounted;
};

/* A model of another repository on the same registry, to mount blobs from. */
struct smip_source {
	const char *repo;
	const struct smip_model *m;
};

/*
 * Pushes the entries (a model's files, folders and symlinks) as repo:tag.
 * Chunks already in the repository stay where they are; pack blobs of the
 * sources that hold chunks are mounted (no bytes move) where the registry
 * allows it; the rest go up in new pack blobs.  Blobs first, the manifest
 * last: the tag appears only when complete.
 */
int smip_push(struct cas_store *st, struct oci_client *c, const char *repo,
	      const char *tag, const char *name, const struct smip_entry *e,
	      size_t n, const struct smip_source *src, size_t nsrc,
	      _Atomic uint64_t *progress, struct smip_push_stats *stats,
	      char *err, size_t errlen);

/*
 * Pushes the entries' regular files as a plain CNCF ModelPack artifact
 * (layout.h): one raw layer per file, its SHA-256 the file's, for tools
 * that speak only ModelPack.  Folders are implied by the paths; symlinks
 * are left out (ModelPack has none).  Layers the repository has are not
 * sent again.
 */
int smip_push_modelpack(struct cas_store *st, struct oci_client *c,
			const char *repo, const char *tag, const char *name,
			const struct smip_entry *e, size_t n,
			_Atomic uint64_t *progress, struct smip_push_stats *stats,
			char *err, size_t errlen);

#endif
