/*
 * test_codec.c - every scheme round-trips; damaged input never decodes;
 * float data without a header is found by its bytes, at any phase; random
 * bytes and text are never larger than plain zstd.
 */
#include <errno.h>
#include <stdint.h>

#include <zstd.h>

#include "backend/store/chunker.h"
#include "backend/store/codec.h"
#include "tests/check.h"
#include "tools/bench/smallmodel.h"

static void round_trip(struct codec *c, const uint8_t *src, size_t len,
		       enum codec_scheme want)
{
	size_t cap = codec_bound(len);
	uint8_t *enc = malloc(cap), *dec = malloc(len + 1);
	enum codec_scheme s;
	int n;

	n = codec_encode(c, 0, src, len, enc, cap, &s);
	CHECK(n >= 0);
	CHECK_EQ(s, want);
	CHECK_EQ(codec_decode(c, s, enc, (size_t)n, dec, len), len);
	CHECK(memcmp(src, dec, len) == 0);
	/* A wrong length is an error, not a short result. */
	if (len)
		CHECK_EQ(codec_decode(c, s, enc, (size_t)n, dec, len - 1), -EIO);
	free(enc);
	free(dec);
}

static void test_round_trips(void)
{
	struct codec *c = codec_new(3);
	uint8_t *buf = malloc(CDC_MAX);
	size_t i;

	fill_random(buf, CDC_MAX, 7);
	round_trip(c, buf, CDC_MAX, CODEC_RAW);
	round_trip(c, buf, 1, CODEC_RAW);
	round_trip(c, buf, 0, CODEC_RAW);
	for (i = 0; i < CDC_MAX; i++)
		buf[i] = (uint8_t)(i % 7 == 0 ? buf[i] : 'a' + i % 13);
	round_trip(c, buf, CDC_MAX, CODEC_ZSTD);
	codec_free(c);
	free(buf);
}

static void test_damage(void)
{
	struct codec *c = codec_new(3);
	size_t len = 100000, cap = codec_bound(len);
	uint8_t *src = calloc(1, len), *enc = malloc(cap), *dec = malloc(len);
	enum codec_scheme s;
	int n;

	memset(src, 'x', len / 2);
	n = codec_encode(c, 0, src, len, enc, cap, &s);
	CHECK_EQ(s, CODEC_ZSTD);
	enc[n / 2] ^= 0x55;
	enc[n - 1] ^= 0x55;
	CHECK(codec_decode(c, s, enc, (size_t)n, dec, len) < 0);
	CHECK_EQ(codec_decode(c, s, enc, (size_t)n / 2, dec, len), -EIO);
	CHECK_EQ(codec_decode(c, (enum codec_scheme)200, enc, (size_t)n, dec, len),
		 -EINVAL);
	codec_free(c);
	free(src);
	free(enc);
	free(dec);
}

/* Encodes buf[0..len) in chunks of `chunk` bytes from offset `from` with
 * the width hint given; every chunk must decode to its bytes.  Returns the
 * encoded total, and counts the chunks of each scheme in seen. */
static size_t encode_all(struct codec *c, const uint8_t *buf, size_t len, size_t from,
			 size_t chunk, unsigned width, unsigned seen[CODEC_SCHEME_MAX])
{
	size_t cap = codec_bound(chunk), off, total = 0;
	uint8_t *enc = malloc(cap), *dec = malloc(chunk);

	for (off = from; off + chunk <= len; off += chunk) {
		enum codec_scheme s;
		int n = codec_encode(c, width, buf + off, chunk, enc, cap, &s);

		CHECK(n >= 0 && (size_t)n <= chunk);
		if (n < 0)
			break;
		CHECK_EQ(codec_decode(c, s, enc, (size_t)n, dec, chunk), chunk);
		CHECK(memcmp(dec, buf + off, chunk) == 0);
		total += (size_t)n;
		if (seen)
			seen[s]++;
	}
	free(enc);
	free(dec);
	return total;
}

/* Plain zstd at the store's level over the same chunks. */
static size_t zstd_all(const uint8_t *buf, size_t len, size_t from, size_t chunk)
{
	size_t cap = ZSTD_compressBound(chunk), off, total = 0;
	uint8_t *enc = malloc(cap);

	for (off = from; off + chunk <= len; off += chunk)
		total += ZSTD_compress(enc, cap, buf + off, chunk, 3);
	free(enc);
	return total;
}

/*
 * Bare bf16 and fp32 weights, in chunks cut at every phase of a value:
 * found by their bytes, they store as well as chunks whose width a header
 * gave (within 1%), and clearly smaller than zstd.
 */
static void test_headerless_floats(void)
{
	static const int dtypes[] = { 0, 2 }; /* BF16, F32 */
	struct codec *c = codec_new(3);
	size_t len = 4u << 20, chunk = 128u << 10, k;
	uint8_t *buf = malloc(len);
	unsigned d;

	for (d = 0; d < 2; d++) {
		size_t w = sm_width(dtypes[d]);

		sm_fill(buf, 1, dtypes[d], len / w, 42);
		for (k = 0; k < w; k++) {
			unsigned seen[CODEC_SCHEME_MAX] = { 0 };
			size_t hinted = encode_all(c, buf, len, k, chunk, (unsigned)w, NULL);
			size_t bare = encode_all(c, buf, len, k, chunk, 0, seen);
			size_t z = zstd_all(buf, len, k, chunk);

			fprintf(stderr, "  width %zu phase %zu: bare %zu, hinted %zu, zstd %zu\n",
				w, k, bare, hinted, z);
			CHECK(bare * 100 <= hinted * 101);
			CHECK(bare * 100 <= z * 92);
			CHECK_EQ(seen[w == 2 ? CODEC_GROUP2 : CODEC_GROUP4], (len - k) / chunk);
		}
	}
	codec_free(c);
	free(buf);
}

/* Random bytes are stored raw without a compression attempt worth the
 * name, and read back exactly; text and random bytes are never larger
 * than plain zstd, at any chunk size. */
static void test_never_larger(void)
{
	static const size_t chunks[] = { 4096, 20000, 128u << 10, CDC_MAX };
	struct codec *c = codec_new(3);
	size_t len = 2u << 20, i, k;
	uint8_t *rnd = malloc(len), *text = malloc(len);
	static const char *const words[] = { "the ", "tensor ", "of ", "weights ", "is ",
					     "stored\n", "model ", "layer ", "attention " };

	fill_random(rnd, len, 99);
	for (i = 0, k = 0; i < len; k++) {
		const char *wd = words[(rnd[k % len] + k / 7) % 9];
		size_t l = strlen(wd);

		memcpy(text + i, wd, i + l <= len ? l : len - i);
		i += l;
	}
	for (k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		unsigned seen[CODEC_SCHEME_MAX] = { 0 };
		size_t r = encode_all(c, rnd, len, 0, chunks[k], 0, seen);

		CHECK_EQ(seen[CODEC_RAW], len / chunks[k]);
		CHECK_EQ(r, len / chunks[k] * chunks[k]);
		CHECK(encode_all(c, text, len, 0, chunks[k], 0, NULL) <=
		      zstd_all(text, len, 0, chunks[k]));
	}
	codec_free(c);
	free(rnd);
	free(text);
}

int main(void)
{
	RUN(test_round_trips);
	RUN(test_damage);
	RUN(test_headerless_floats);
	RUN(test_never_larger);
	return check_status();
}
