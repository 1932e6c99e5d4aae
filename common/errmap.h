/*
 * errmap.h - one translation to -errno per foreign error source: sqlite
 * result codes, HTTP statuses, libcurl codes.  Every module that meets one
 * of these sources uses these maps, so one failure reads the same in the
 * store, the registry client and the planner (docs/architecture.md, "Errors").
 *
 * Contract: pure functions, safe from any thread; the header needs neither
 * sqlite3.h nor curl/curl.h, and the library links neither.
 *
 * sqlite (extended codes are reduced to their primary code):
 *   OK, ROW, DONE 0 · FULL -ENOSPC · BUSY, LOCKED -EBUSY · NOMEM -ENOMEM ·
 *   CONSTRAINT -EEXIST · READONLY -EROFS · PERM, AUTH -EACCES ·
 *   TOOBIG -EFBIG · CANTOPEN -ENOENT · CORRUPT, NOTADB -EUCLEAN
 *   (what llmfs-fsck repairs) · anything else -EIO.
 * HTTP statuses:
 *   2xx 0 · 400 -EINVAL · 401, 403 -EACCES · 404 -ENOENT · 405 -EOPNOTSUPP ·
 *   408 -ETIMEDOUT · 413 -EFBIG (the request body is too large, as a file
 *   too large for its filesystem) · 416 -ERANGE · 429 -EAGAIN ·
 *   other 4xx, 1xx, 3xx -EPROTO · 5xx -EREMOTEIO (the remote end failed;
 *   -EIO stays for bytes we read that are wrong).
 *   Worth another attempt: 408, 429 and 5xx (errmap_http_transient).
 * libcurl codes:
 *   OK 0 · OPERATION_TIMEDOUT -ETIMEDOUT · COULDNT_CONNECT -ECONNREFUSED ·
 *   COULDNT_RESOLVE_HOST, COULDNT_RESOLVE_PROXY -EHOSTUNREACH ·
 *   OUT_OF_MEMORY -ENOMEM · WRITE_ERROR -EFBIG (a write callback refuses
 *   only an answer larger than its caller allows) · GOT_NOTHING, RECV_ERROR,
 *   SEND_ERROR, PARTIAL_FILE, HTTP2, HTTP2_STREAM, WEIRD_SERVER_REPLY
 *   -ECONNRESET · SSL_CONNECT_ERROR -ECONNABORTED ·
 *   ABORTED_BY_CALLBACK -ECANCELED · anything else -EIO.
 *   Worth another attempt: timeouts, resolve and connect failures, the
 *   -ECONNRESET group and SSL_CONNECT_ERROR (errmap_curl_transient).
 */
#ifndef LLMFS_COMMON_ERRMAP_H
#define LLMFS_COMMON_ERRMAP_H

int errno_of_sqlite(int rc);
int errno_of_http(long status);
int errno_of_curl(int code);

/* 1 when another attempt may succeed: 408, 429, 5xx. */
int errmap_http_transient(long status);
/* 1 when another attempt may succeed (the list above). */
int errmap_curl_transient(int code);

#endif
