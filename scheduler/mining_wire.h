/*
 * mining_wire: what co-training moves between a replica and its coordinator, and how.
 *
 * The format.  Weights and pseudo-gradients are one flat fp32 vector (gpu/gpt.h's parameter
 * layout) in a frame:
 *
 *   offset  size  field
 *   0       8     magic "LLMFSPG1"
 *   8       4     encoding (u32 LE): 1 fp32, 2 int8
 *   12      4     block (u32 LE): elements per scale (int8), 0 for fp32
 *   16      8     n (u64 LE): elements
 *   24      ...   fp32: n floats (LE).  int8: ceil(n / block) fp32 scales, then n int8
 *
 * On the wire a frame may be packed (mining_wire_pack()), losslessly:
 *
 *   0       8     magic "LLMFSPZ1"
 *   8       8     the plain frame's length (u64 LE)
 *   16      ...   one zstd frame of the plain frame with its values split into byte planes
 *                 (every float's byte 0, then every byte 1, ...; int8: the scales' planes,
 *                 then the int8 values as they are)
 *
 * Byte planes put the floats' sign-and-exponent bytes together, where zstd finds their
 * redundancy (pseudo-gradients and outer updates pack to about 83% of fp32); the decoder
 * unpacks first and then checks the plain frame as below.  A frame that would not shrink is
 * sent plain.
 *
 * int8 (INTELLECT-1's pseudo-gradient compression, with a scale per block): scale =
 * max |v| / 127 over the block, q = round(v / scale); the value read back is q * scale.
 * A frame is accepted only when it is whole and exactly as long as its header says, its
 * encoding and block are known, n is what the reader expects, and every value (and scale) is
 * finite (a scale >= 0, an int8 never -128): a garbage, truncated or wrong-shaped frame is
 * refused with a reason and the output is left as it was.
 *
 * The transport is HTTP/1.1 (libmicrohttpd on the coordinator, libcurl in the replicas):
 * mining_server_*() wraps the server, mining_http_*() the client.  Every request carries the
 * job's secret as "Authorization: Bearer <token>"; the handler decides what it may see.
 *
 * Errors: -EINVAL, -EBADMSG (a malformed frame: err says why), -ENOMEM, -errno.
 */
#ifndef LLMFS_MINING_WIRE_H
#define LLMFS_MINING_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MINING_WIRE_MAGIC "LLMFSPG1"
#define MINING_WIRE_PACKED_MAGIC "LLMFSPZ1"
#define MINING_WIRE_PACKED_HEADER 16
#define MINING_WIRE_HEADER 24
#define MINING_WIRE_BLOCK 256 /* the default int8 block */

enum mining_enc {
	MINING_ENC_FP32 = 1,
	MINING_ENC_INT8 = 2,
};

/* "none" (fp32) or "int8"; -EINVAL otherwise. */
int mining_enc_parse(const char *s, enum mining_enc *ret);
const char *mining_enc_name(enum mining_enc e);

/* Bytes of a frame of n elements; 0 on overflow or a bad block. */
size_t mining_wire_size(enum mining_enc enc, unsigned block, size_t n);
/* Encodes v[0..n) into a malloc'd frame. */
int mining_wire_encode(enum mining_enc enc, unsigned block, const float *v, size_t n,
		       void **ret, size_t *ret_len);
/* Packs a plain frame for the wire into a malloc'd buffer: the packed frame, or a copy of
 * the plain one when packing would not make it smaller. */
int mining_wire_pack(const void *frame, size_t len, void **ret, size_t *ret_len);
/* The plain frame of buf (packed or plain) of n elements, malloc'd: a packed frame is
 * unpacked (refused, -EBADMSG with err, when its data is not a zstd frame of the length its
 * header says, or longer than an fp32 frame of n elements); a plain one is copied.  The plain
 * frame is not checked here (mining_wire_decode() does). */
int mining_wire_unpack(const void *buf, size_t len, size_t n, void **ret, size_t *ret_len,
		       char *err, size_t errlen);
/* Decodes a frame (packed or plain) of exactly n elements into out (left alone on error);
 * ret_enc may be NULL. */
int mining_wire_decode(const void *buf, size_t len, size_t n, float *out,
		       enum mining_enc *ret_enc, char *err, size_t errlen);

/* ---- the server (coordinator) ---------------------------------------------------------- */

struct mining_request {
	const char *method;        /* "GET", "POST" */
	const char *path;          /* "/v1/..." */
	const char *token;         /* the bearer token, or NULL */
	const char *(*arg)(const struct mining_request *rq, const char *name); /* ?name= */
	const void *body;
	size_t body_len;
	void *conn;                /* the server's */
};

struct mining_response {
	unsigned status;           /* 200, 204, 400, ... */
	char *body;                /* malloc'd (or NULL); freed by the server */
	size_t len;
	const char *type;          /* Content-Type, NULL: text/plain */
	char headers[256];         /* extra header lines "Name: value\n", may be empty */
};

/* The handler runs on one of the server's threads, any number at once. */
typedef void (*mining_handler_fn)(void *arg, const struct mining_request *rq,
				  struct mining_response *rs);

struct mining_server;

/*
 * Listens on addr ("HOST:PORT", HOST a numeric IPv4 address; PORT 0: any free port) with
 * bodies up to max_body bytes (larger: 413).  *ret_port gets the port bound.
 */
int mining_server_start(const char *addr, size_t max_body, mining_handler_fn fn, void *arg,
			struct mining_server **ret, unsigned *ret_port, char *err, size_t errlen);
void mining_server_stop(struct mining_server *s);
/* The largest body the server takes now; may grow (a job with a larger model). */
void mining_server_max_body(struct mining_server *s, size_t max_body);

/* ---- the client (replicas, the remote provider) ------------------------------------------ */

struct mining_http_reply {
	long status;
	char *body;                /* malloc'd, NUL-terminated */
	size_t len;
	char round[32];            /* the X-Llmfs-Round header, or "" */
	char base[32];             /* X-Llmfs-Base: the body is an update to the weights of
				    * that round, not the weights; "" when absent */
	char own[32];              /* X-Llmfs-Own (overlap=1): the window of this round starts
				    * from the weights before these minus the slot's own
				    * pseudo-gradient of that round; "" when absent */
};

/* GET (body NULL) or POST url with the bearer token; timeout in seconds.  0 when an answer
 * came (any status), -EHOSTDOWN when none (err says why). */
int mining_http(const char *url, const char *token, const void *body, size_t len,
		long timeout_s, struct mining_http_reply *ret, char *err, size_t errlen);
void mining_http_reply_free(struct mining_http_reply *r);

#endif
