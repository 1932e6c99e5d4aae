/*
 * test_codec.c - every scheme round-trips; damaged input never decodes.
 */
#include <errno.h>
#include <stdint.h>

#include "backend/store/chunker.h"
#include "backend/store/codec.h"
#include "tests/check.h"

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

int main(void)
{
	RUN(test_round_trips);
	RUN(test_damage);
	return check_status();
}
