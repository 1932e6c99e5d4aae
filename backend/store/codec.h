/*
 * codec.h - per-chunk compression schemes.
 *
 * Contract: a struct codec holds one thread's compression and decompression
 * contexts; use one per thread.  Every stored chunk carries a scheme id, so a
 * store can hold chunks of several schemes at once and a new scheme needs no
 * migration.  The schemes themselves are bytegroup.h's; this module picks
 * among them for the store.  Functions return a length, or -errno: -ENOMEM,
 * -EINVAL for an unknown scheme, -EIO for data that does not decode to the
 * stated length.
 */
#ifndef LLMFS_CODEC_H
#define LLMFS_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum codec_scheme {
	CODEC_RAW = 0,    /* stored as is: incompressible chunks */
	CODEC_ZSTD = 1,   /* zstd frames */
	CODEC_GROUP2 = 2, /* byte planes of 16-bit floats, then zstd */
	CODEC_GROUP4 = 3, /* byte planes of 32-bit floats, then zstd */
	CODEC_SCHEME_MAX
};

struct codec;

struct codec *codec_new(int level);
void codec_free(struct codec *c);

/* Worst-case encoded size of a chunk of len bytes. */
size_t codec_bound(size_t len);

/*
 * Encodes src into dst[0..cap) with the smallest scheme: raw, zstd, or
 * byte grouping, of width `width` when the caller knows it (2 or 4, the
 * float width of the tensor the chunk lies in), else of the width the
 * bytes look like (bg_guess_width: bare float files get grouping too).
 * Never larger than the input; never larger than plain zstd, except for a
 * chunk of 16 KiB or more whose middle 8 KiB zstd cannot shrink by 5%,
 * which is stored raw without trying (the cost of such a chunk is a probe
 * of 8 KiB and a copy; decoding it is a copy), and for grouped chunks
 * chosen on bg_encode_best's probe.  Sets *ret_scheme; returns the encoded
 * length.
 */
int codec_encode(struct codec *c, unsigned width, const void *src, size_t len,
		 void *dst, size_t cap, enum codec_scheme *ret_scheme);

/*
 * codec_encode() without the copy of a chunk found incompressible: *ret_out
 * is src when the chunk is stored raw that way, else dst (a caller
 * appending the result to a pack writes it from where it lies).
 */
int codec_encode_ref(struct codec *c, unsigned width, const void *src, size_t len,
		     void *dst, size_t cap, enum codec_scheme *ret_scheme,
		     const void **ret_out);

/* Decodes exactly ulen bytes into dst; returns ulen or -errno. */
int codec_decode(struct codec *c, enum codec_scheme scheme, const void *src,
		 size_t clen, void *dst, size_t ulen);

const char *codec_scheme_name(enum codec_scheme scheme);

#endif
