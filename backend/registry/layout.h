/*
 * layout.h - what an OCI manifest holds as model files.
 *
 * Models travel through registries in several layouts; this module reads
 * an image manifest (and, where the layout needs it, tar headers inside
 * its layers) and lists the model's files, each a byte range of one blob:
 *
 *   SMIP       artifactType application/vnd.llmfs.smip.v1: the files are in
 *              the SMIP config blob, not here (kind LAYOUT_SMIP, no files)
 *   Ollama     layers application/vnd.ollama.image.{model,adapter,
 *              projector,template,system,params,license,messages}
 *   Docker     Docker Model Runner: application/vnd.docker.ai.gguf.v3,
 *              .safetensors, .license, ... with a
 *              application/vnd.docker.ai.model.config.* config
 *   ModelPack  CNCF model-spec: artifactType / config
 *              application/vnd.cncf.model.{manifest,config}.v1+json, layers
 *              application/vnd.cncf.model.{weight,weight.config,doc,code,
 *              dataset}.v1.{raw,tar} named by the
 *              org.cncf.model.filepath annotation
 *
 * Names are chosen as docs/layouts.md tabulates (model.gguf, template,
 * params, LICENSE, ...); a layer's org.opencontainers.image.title
 * annotation wins where the layout has no name of its own.  The config blob
 * of a foreign layout is listed as config.json unless a layer already has
 * that name.
 *
 * Hostile input is refused with -EINVAL (or -EFBIG) and a reason: paths
 * that are absolute, hold "..", "." or empty components, NUL or control
 * characters, a component longer than NAME_MAX, or exceed PATH_MAX;
 * duplicate paths, or a path that is also another's directory; more than
 * LAYOUT_MAX_FILES files; sizes that disagree (a tar member running past its
 * blob, a tar blob shorter than declared); digests not of the form sha256:<64 hex>; manifests over
 * OCI_MANIFEST_MAX.  Layers of unknown media types are skipped, layers
 * compressed as a whole (.tar+gzip, .tar+zstd) are listed as the layer's
 * bytes under the title with its extension.
 *
 * Contract: pure functions (no I/O but the fetch callback), thread-safe;
 * return 0 or -errno; results are malloc()ed and freed with layout_free().
 */
#ifndef LLMFS_LAYOUT_H
#define LLMFS_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "backend/registry/oci.h"

#define LAYOUT_MAX_FILES 100000

#define SMIP_ARTIFACT_TYPE "application/vnd.llmfs.smip.v1"
#define SMIP_MT_CONFIG "application/vnd.llmfs.smip.manifest.v1+json"
#define SMIP_MT_PACK "application/vnd.llmfs.smip.pack.v1"
#define MODELPACK_ARTIFACT_TYPE "application/vnd.cncf.model.manifest.v1+json"
#define MODELPACK_MT_CONFIG "application/vnd.cncf.model.config.v1+json"

enum layout_kind {
	LAYOUT_SMIP = 1,
	LAYOUT_OLLAMA,
	LAYOUT_DOCKER,
	LAYOUT_MODELPACK,
};

struct layout_desc {
	char media_type[256];
	char digest[OCI_DIGEST_LEN];
	uint64_t size;
};

struct layout_file {
	char *path;              /* relative, '/'-separated, validated */
	char digest[OCI_DIGEST_LEN]; /* the blob holding the bytes */
	uint64_t blob_size;
	uint64_t off;            /* first byte inside the blob */
	uint64_t size;           /* the file's length */
	uint32_t mode;           /* 0644, or from a tar header (& 0777) */
	int whole;               /* 1: the file is the whole blob, so its
				    SHA-256 is the digest */
	char media_type[256];
};

struct layout {
	enum layout_kind kind;
	struct layout_desc config;
	struct layout_desc *layers;
	size_t nlayers;
	struct layout_file *files;
	size_t nfiles;
};

/*
 * Reads bytes [off, off + len) of a blob (tar headers); returns 0 or
 * -errno.  The caller's fetch retries and checks what it can.
 */
typedef int (*layout_fetch_fn)(void *arg, const char *digest, uint64_t off,
			       size_t len, void *buf);

/*
 * Parses an image manifest (OCI or Docker v2 schema 2).  fetch may be NULL
 * when no layer is a tar (it is then an error, -EAGAIN, to meet one).
 * Returns -ENOTSUP with a reason for a manifest of no known model layout
 * (a container image, an index).
 */
int layout_parse(const char *manifest, size_t len, layout_fetch_fn fetch,
		 void *arg, struct layout **ret, char *err, size_t errlen);
void layout_free(struct layout *l);

/* 1 if path is a safe relative path as above, else 0. */
int layout_path_valid(const char *path);

/* A file to describe in a ModelPack manifest: one raw layer per file. */
struct layout_put_file {
	const char *path;
	char digest[OCI_DIGEST_LEN]; /* SHA-256 of the file's bytes */
	uint64_t size;
};

/*
 * Writes a ModelPack manifest (and its config) for files pushed one layer
 * each, media types chosen by file kind (weights, weight configs, docs,
 * code).  name is the model's name for the config.  Returns the manifest
 * and config JSON (malloc()ed) and their lengths; the config's digest, named
 * in the manifest, is the SHA-256 of exactly those ret_clen bytes.  The
 * output is deterministic (no timestamps; docs/layouts.md).
 */
int layout_modelpack_build(const char *name, const struct layout_put_file *f,
			   size_t n, char **ret_manifest, size_t *ret_mlen,
			   char **ret_config, size_t *ret_clen,
			   char *err, size_t errlen);

#endif
