/* bytegroup: the tensor-aware chunk codec.
 *
 * Floating-point weights compress badly as a byte stream because every
 * value interleaves a low-entropy exponent with a near-random mantissa.
 * Byte grouping (ZipNN's idea) first rotates each value left by one bit, so
 * the sign drops to bit 0 and the top byte holds the exponent (all 8 bits for
 * bf16 and fp32, 5 bits and 3 mantissa bits for fp16), then splits the
 * values into byte planes: plane j holds byte j of every value.  The
 * exponent plane then compresses to about 3 bits a byte; mantissa planes
 * that do not compress are kept raw, so they decode at copy speed.
 *
 * Schemes (the store writes the id beside each chunk):
 *   BG_SCHEME_RAW    0  the bytes themselves
 *   BG_SCHEME_ZSTD   1  one or more zstd frames decoding to the bytes
 *   BG_SCHEME_GROUP2 2  byte grouping, width 2 (bf16, fp16), planes + zstd
 *   BG_SCHEME_GROUP4 3  byte grouping, width 4 (fp32), planes + zstd
 * A chunk's encoded bytes, its scheme id and its uncompressed length are all
 * a decoder needs.  Encoded layout of schemes 2 and 3, for n bytes, width w,
 * m = n / w values and t = n % w tail bytes:
 *
 *   byte 0      flags: bit 0 set = "joined" (one zstd frame over all
 *               planes), clear = "planes"; bit 1 set = values were rotated
 *               left by one bit; bits 2-3 the head length h (< w); bits 4-7
 *               zero
 *   h bytes     the head: the chunk's first h bytes stored raw, when the
 *               chunk was cut inside a value (the rest below describes the
 *               n - h bytes after it: m = (n - h) / w, t = (n - h) % w)
 *   planes:     w little-endian u32 plane headers, bit 31 set = that plane
 *               is zstd (one or more concatenated frames: the encoder starts
 *               a new frame every BG_PLANE_SEGMENT bytes so each gets its own
 *               Huffman table), bits 0-30 its stored length (m when raw);
 *               then the w plane payloads in order, plane 0 (least
 *               significant byte) first
 *   joined:     one zstd frame decoding to the w * m plane bytes
 *   last t bytes  the tail, stored raw (lengths need not be multiples of w)
 *
 * Decoding checks every length against n and src_len and returns -EBADMSG
 * for anything inconsistent: a hostile chunk never writes outside dst.
 *
 * Threads: functions are pure over caller buffers; a `struct bg_ctx` holds
 * one thread's zstd contexts and scratch memory and must not be shared
 * between threads at once.  Errors: -EINVAL (bad arguments), -E2BIG (n
 * above BG_CHUNK_MAX), -ENOSPC (dst too small), -EBADMSG (corrupt input),
 * -ENOMEM.  Nothing is logged.
 */
#ifndef LLMFS_BYTEGROUP_H
#define LLMFS_BYTEGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BG_CHUNK_MAX (1u << 30)   /* plane lengths must fit in 31 bits */

enum bg_scheme {
	BG_SCHEME_RAW = 0,
	BG_SCHEME_ZSTD = 1,
	BG_SCHEME_GROUP2 = 2,
	BG_SCHEME_GROUP4 = 3,
};

#define BG_PLANE_SEGMENT 8192

#define BG_FLAG_JOINED  0x01
#define BG_FLAG_ROTATED 0x02
#define BG_FLAG_HEAD    0x0c
#define BG_HEAD_SHIFT   2

/* Encoder choices.  All zero is what the store should use (rotated planes,
 * exact chooser); the others exist to measure the alternatives, and any of
 * them decodes with the same decoder, so changing them needs no new scheme
 * id. */
struct bg_opts {
	int joined;     /* one frame instead of per-plane frames */
	int no_rotate;  /* keep the sign bit in the top byte */
	int probe;      /* chooser: decide on a sample (see bg_encode_best) */
	int plane_level;      /* zstd level for planes, 0 = 1 */
	int plane_min_match;  /* ZSTD_c_minMatch for planes, 0 = 7 */
	size_t plane_segment; /* plane bytes per zstd frame, 0 = BG_PLANE_SEGMENT */
};

struct bg_ctx {
	void *cctx;          /* ZSTD_CCtx for plain zstd at `level` */
	void *plane_cctx;    /* ZSTD_CCtx for planes (level 1, long matches) */
	int plane_opts_set;  /* which opts plane_cctx was set up for */
	void *dctx;          /* ZSTD_DCtx */
	int level;           /* zstd level of plain zstd and joined planes */
	struct bg_opts opts;
	uint8_t *planes;     /* w * m plane bytes */
	size_t planes_cap;
	uint8_t *trial;      /* the chooser's second candidate */
	size_t trial_cap;
};

int bg_ctx_init(struct bg_ctx *ctx, int level);
void bg_ctx_release(struct bg_ctx *ctx);

/* Largest encoded size of n bytes under any scheme. */
size_t bg_bound(size_t n);

/* Width of a byte-grouped scheme (2 or 4), 0 for the others. */
unsigned bg_scheme_width(enum bg_scheme scheme);

/* Encodes src[0..n) with one scheme into dst[0..cap).  Returns the encoded
 * length, or -ENOSPC when it does not fit (cap >= bg_bound(n) always does). */
ssize_t bg_encode(struct bg_ctx *ctx, enum bg_scheme scheme, const void *src, size_t n,
		  void *dst, size_t cap);

/* Decodes exactly n bytes into dst.  Returns 0 or -EBADMSG / -EINVAL /
 * -ENOMEM. */
int bg_decode(struct bg_ctx *ctx, enum bg_scheme scheme, const void *src, size_t src_len,
	      void *dst, size_t n);

/* Picks the smallest of raw, zstd and (when width_hint is 2 or 4, from the
 * chunk's dtype) byte grouping of that width, and writes it to dst, which
 * must hold at least n bytes.  Ties go to the faster decoder (raw, zstd,
 * grouped), so the result is never larger than plain zstd at the same level
 * nor than the input.  Returns the encoded length and sets *ret_scheme.
 *
 * With ctx->opts.probe set, a chunk of at least 4 * BG_PROBE_BYTES is first
 * tried on its first BG_PROBE_BYTES; when grouping is at most
 * BG_PROBE_PERCENT % of plain zstd there, the chunk is stored grouped
 * without running plain zstd on all of it (faster ingest, and the "never
 * larger than zstd" promise then holds per file rather than per chunk: see
 * docs/formats.md for the measured difference). */
#define BG_PROBE_BYTES   8192
#define BG_PROBE_PERCENT 92
ssize_t bg_encode_best(struct bg_ctx *ctx, const void *src, size_t n, unsigned width_hint,
		       void *dst, size_t cap, enum bg_scheme *ret_scheme);

/* The same, for a chunk whose first whole value starts at byte head (<
 * width_hint; -EINVAL otherwise): the head is stored raw. */
ssize_t bg_encode_best_at(struct bg_ctx *ctx, const void *src, size_t n, unsigned width_hint,
			  unsigned head, void *dst, size_t cap, enum bg_scheme *ret_scheme);

/* The content probe, for chunks whose dtype no header names and chunks cut
 * inside a value: the collision entropy of each byte position modulo 4
 * over an 8 KiB sample (a histogram and four log2s: a few microseconds).  Returns the float width the bytes
 * look like (2 or 4; 0: none) and sets *ret_head to the offset of the first
 * whole value.  With want 2 or 4 (a header's dtype) the width is want and
 * only the head is guessed.  A guess is only a candidate: bg_encode_best_at
 * still keeps the smallest of raw, zstd and grouped. */
unsigned bg_guess_width(const void *src, size_t n, unsigned want, unsigned *ret_head);

#endif
