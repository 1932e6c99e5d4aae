/*
 * oci.h - a client of the OCI distribution protocol (container registries).
 *
 * One struct oci_client talks to one remote: a registry base URL such as
 * "https://registry.example.com" or, for a remote configured insecure,
 * "http://127.0.0.1:5000".  It speaks the parts of the distribution spec a
 * model store needs: the catalog and tag lists (following Link pagination),
 * manifests by tag or digest, blob existence, whole and ranged blob reads,
 * monolithic blob uploads and cross-repository mounts.
 *
 * Transfers run on libcurl's multi interface: oci_fetch_ranges() and
 * oci_upload_blobs() keep up to the remote's `connections` transfers in
 * flight on keep-alive connections shared by every call (a curl share
 * handle).  Each request is retried with exponential backoff on 429, 5xx,
 * connection resets, timeouts, stalls (no byte for stall_s seconds), short
 * or overlong bodies, and when the caller's check rejects the bytes; after
 * `retries` attempts it fails with -EIO and a message.
 *
 * Authentication: anonymous first; on 401 the challenge decides.  Basic
 * sends the credentials; Bearer runs the token flow (GET realm?service=..
 * &scope=.. with the credentials, if any, as basic auth; "token" or
 * "access_token" of the JSON answer), caching one token per scope until it
 * expires or a 401 says it is stale.  Credentials come from the remote's
 * configuration or from the Docker/Podman auth files (auths.<host>.auth,
 * base64 "user:password"): $REGISTRY_AUTH_FILE, then
 * $XDG_RUNTIME_DIR/containers/auth.json, then ~/.docker/config.json.  They
 * never appear in error messages.  TLS peers are always verified; plain
 * http:// is accepted only for a remote configured insecure.
 *
 * Every byte is checked: oci_blob_get() and oci_blob_stream() of a whole
 * blob verify its SHA-256 (OpenSSL) against the digest, manifests fetched
 * by digest are verified, and ranges are handed to the caller's check.
 *
 * Contract: a client is thread-safe; calls from many threads share its
 * connections and tokens.  Functions return 0 (or a count) or -errno and
 * write a one-line reason into err (err may be NULL): -ENOENT for an
 * unknown repository, tag or blob; -EACCES for refused credentials;
 * -EPROTO for a malformed answer; when retries ran out, the errno of the
 * last cause by common/errmap.h (-EREMOTEIO after 5xx, -EAGAIN after 429,
 * -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET...) or -EIO when our own check
 * refused the bytes (a digest, a short body, a stall); -EFBIG when
 * an answer exceeds its limit; -EINVAL for bad arguments (a digest that is
 * not "sha256:" and 64 lowercase hex digits, a repository name outside the
 * distribution spec's grammar).  Nothing here prints.
 */
#ifndef LLMFS_OCI_H
#define LLMFS_OCI_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/hex.h"

/* "sha256:" + 64 hex digits + NUL */
#define OCI_DIGEST_LEN DIGEST_LEN
/* Limits on what a registry may answer. */
#define OCI_MANIFEST_MAX (4u << 20)
#define OCI_LIST_MAX 100000

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_DOCKER_MANIFEST \
	"application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MT_EMPTY "application/vnd.oci.empty.v1+json"

/* One configured remote (see oci_config_load()). */
struct oci_remote {
	char *name;          /* the folder under net/ */
	char *url;           /* scheme://host[:port], no trailing slash */
	int insecure;        /* allow http:// (never turns TLS checks off) */
	int connections;     /* parallel transfers, default 4 */
	int retries;         /* attempts per request, default 5 */
	int stall_s;         /* no byte for this long = stalled, default 30 */
	char *username;      /* NULL: look in the auth files */
	char *password;
	char *auth_file;     /* NULL: the usual places (above) */
	char **repositories; /* listed when the catalog API is refused */
	size_t nrepositories;
	int modelpack;       /* "format": "modelpack": pushes write plain
				CNCF ModelPack artifacts, not SMIP */
};

/*
 * Reads the remotes configuration, a JSON file (docs/smip.md):
 *   {"remotes": {"lab": {"url": "https://reg.example.com", "insecure": false,
 *     "connections": 4, "retries": 5, "stall_seconds": 30,
 *     "username": "u", "password": "p", "auth_file": "/path",
 *     "repositories": ["team/qwen2.5"], "format": "smip"}}}
 * Names must be valid file names (no '/', not "." or "..", not hidden).
 * A missing file is no remotes (returns 0, *ret_n = 0).
 */
int oci_config_load(const char *path, struct oci_remote **ret, size_t *ret_n,
		    char *err, size_t errlen);
void oci_config_free(struct oci_remote *r, size_t n);

struct oci_client;

/* Byte and request counters of a client, for status files and benchmarks. */
struct oci_counters {
	_Atomic uint64_t rx_bytes;   /* body bytes received */
	_Atomic uint64_t tx_bytes;   /* body bytes sent */
	_Atomic uint64_t requests;
	_Atomic uint64_t retries;
};

/* Copies what it needs from r. */
int oci_client_new(const struct oci_remote *r, struct oci_client **ret,
		   char *err, size_t errlen);
void oci_client_free(struct oci_client *c);
struct oci_counters *oci_client_counters(struct oci_client *c);

/* Repositories (GET /v2/_catalog, paginated) or tags of one repository. */
int oci_catalog(struct oci_client *c, char ***ret, size_t *ret_n, char *err,
		size_t errlen);
int oci_tags(struct oci_client *c, const char *repo, char ***ret,
	     size_t *ret_n, char *err, size_t errlen);
void oci_strv_free(char **v, size_t n);

/*
 * Gets a manifest by tag or digest, accepting OCI and Docker v2 manifests
 * and indexes.  Returns the body (malloc()ed, NUL-terminated), its media
 * type and its digest (from the SHA-256 of the body).
 */
int oci_manifest_get(struct oci_client *c, const char *repo, const char *ref,
		     char **ret_body, size_t *ret_len, char *type,
		     size_t typelen, char digest[OCI_DIGEST_LEN], char *err,
		     size_t errlen);
/* PUTs a manifest under ref (a tag or its digest). */
int oci_manifest_put(struct oci_client *c, const char *repo, const char *ref,
		     const char *media_type, const void *body, size_t len,
		     char *err, size_t errlen);

/* 0 and the size when the repository has the blob, -ENOENT when not. */
int oci_blob_head(struct oci_client *c, const char *repo, const char *digest,
		  uint64_t *ret_size, char *err, size_t errlen);

/* A whole blob of at most max bytes into memory, SHA-256 verified. */
int oci_blob_get(struct oci_client *c, const char *repo, const char *digest,
		 size_t max, void **ret, size_t *ret_len, char *err,
		 size_t errlen);

/*
 * Streams bytes [off, off + len) of a blob to cb in order (len = UINT64_MAX:
 * to the end).  A broken transfer resumes with a Range request from the
 * last byte delivered.  With off = 0 and the whole blob read, the SHA-256 is
 * verified before the function returns 0; on a mismatch it returns -EIO
 * after cb has seen the bytes (callers commit only on 0).  cb returns 0 or
 * -errno to stop.  progress, if set, counts bytes delivered.
 */
int oci_blob_stream(struct oci_client *c, const char *repo,
		    const char *digest, uint64_t off, uint64_t len,
		    int (*cb)(void *arg, const void *buf, size_t n), void *arg,
		    _Atomic uint64_t *progress, char *err, size_t errlen);

/* One range of a blob for oci_fetch_ranges(). */
struct oci_range {
	const char *digest;
	uint64_t off;
	uint64_t len;
	void *buf;       /* receives exactly len bytes */
	int status;      /* out: 0 or -errno */
	void *user;      /* the caller's */
	uint64_t size;   /* the blob's size as the manifest says, 0: unchecked */
};

/*
 * Fetches ranges in parallel (up to the remote's connections in flight).
 * check(arg, r), called in the calling thread as each range completes with
 * exactly len bytes, returns 0 to accept, -EBADMSG to have it fetched again
 * (a retry), or another -errno to fail it.  A range that cannot be fetched
 * or passes no check within the retries gets status -EIO.  Returns 0 when
 * every range succeeded, else the first failure's code (err says which).
 */
int oci_fetch_ranges(struct oci_client *c, const char *repo,
		     struct oci_range *r, size_t n,
		     int (*check)(void *arg, struct oci_range *r), void *arg,
		     _Atomic uint64_t *progress, char *err, size_t errlen);

/* One blob for oci_upload_blobs(); its digest and size are known. */
struct oci_upload {
	char digest[OCI_DIGEST_LEN];
	uint64_t size;
	const char *mount_from; /* NULL, or a repository of this remote to
				   mount the blob from (POST ?mount=&from=) */
	/* Fills buf with len bytes from off; returns len or -errno. */
	ssize_t (*read)(void *arg, void *buf, size_t len, uint64_t off);
	void *arg;
	int status;     /* out: 0 or -errno */
	int how;        /* out: OCI_UP_SENT, OCI_UP_EXISTED, OCI_UP_MOUNTED */
};
enum { OCI_UP_SENT = 1, OCI_UP_EXISTED, OCI_UP_MOUNTED };

/*
 * Uploads blobs in parallel: skips one the repository has (HEAD), tries a
 * mount when mount_from is set, else POSTs an upload and PUTs the bytes
 * (monolithic, ?digest=).  A failed upload is retried from the start.
 * Returns 0 when every blob is on the registry, else the first failure.
 */
int oci_upload_blobs(struct oci_client *c, const char *repo,
		     struct oci_upload *u, size_t n, _Atomic uint64_t *progress,
		     char *err, size_t errlen);

/* Digests: digest_sha256() and digest_valid() of common/hex.h. */
/* 1 if s is a repository name of the distribution spec, else 0. */
int oci_repo_valid(const char *s);
/* 1 if s is a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}), else 0. */
int oci_tag_valid(const char *s);

#endif
