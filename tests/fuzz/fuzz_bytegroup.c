/* libFuzzer harness: the chunk decoder on hostile encoded bytes, and the
 * encoders' round trip on arbitrary plain bytes.
 *
 * Input: byte 0 picks the scheme (bits 0-1) and encoder options (bits
 * 2-3); bytes 1-3 give the uncompressed length n (little-endian, at most
 * 2^18); the rest is the encoded chunk for the decoder and the plain chunk
 * for the round trip. */
#include "backend/store/bytegroup.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bg_ctx ctx;
	enum bg_scheme s;
	size_t n, len, cap;
	uint8_t *out, *enc;
	ssize_t r;

	if (size < 4 || bg_ctx_init(&ctx, 1) < 0)
		return 0;
	s = (enum bg_scheme)(data[0] & 3);
	ctx.opts.joined = data[0] >> 2 & 1;
	ctx.opts.no_rotate = data[0] >> 3 & 1;
	n = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)(data[3] & 3) << 16;
	data += 4;
	len = size - 4;

	/* Decode: exactly n bytes or an error, nothing written past them
	 * (ASan guards the exact-size allocation). */
	out = malloc(n ? n : 1);
	(void)bg_decode(&ctx, s, data, len, out, n);
	free(out);

	/* Round trip of the input itself, for every scheme and the chooser. */
	cap = bg_bound(len);
	enc = malloc(cap);
	out = malloc(len ? len : 1);
	r = bg_encode(&ctx, s, data, len, enc, cap);
	if (r < 0 || bg_decode(&ctx, s, enc, (size_t)r, out, len) != 0 ||
	    memcmp(out, data, len) != 0)
		__builtin_trap();
	r = bg_encode_best(&ctx, data, len, data[-4] & 0x10 ? 4 : 2, enc, len, &s);
	/* dst holds len bytes: the chooser must always fit, falling back to
	 * raw. */
	if (r < 0 || (size_t)r > len || bg_decode(&ctx, s, enc, (size_t)r, out, len) != 0 ||
	    memcmp(out, data, len) != 0)
		__builtin_trap();
	free(enc);
	free(out);
	bg_ctx_release(&ctx);
	return 0;
}
