/* Unit tests for backend/bytegroup: round trips of every scheme over every
 * width, odd lengths and several kinds of data; corrupt input is rejected;
 * the chooser is never larger than plain zstd nor than the input. */
#include "backend/store/bytegroup.h"

#include "tests/check.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

enum kind { RANDOM, ZEROS, BF16, F16, F32, TEXT, KINDS };

/* Values like trained weights: N(0, 0.02) by the central limit of four
 * uniforms, stored as the dtype's bits. */
static void fill(uint8_t *p, size_t n, enum kind k)
{
	size_t i;

	for (i = 0; i < n; i++) {
		float f = (float)(((next() >> 40) + (next() >> 40) + (next() >> 40) +
				   (next() >> 40)) / 16777216.0 - 2.0) * 0.035f;
		uint32_t x;

		memcpy(&x, &f, 4);
		switch (k) {
		case RANDOM: p[i] = (uint8_t)next(); break;
		case ZEROS: p[i] = 0; break;
		case BF16: p[i] = (uint8_t)(x >> (i % 2 ? 24 : 16)); break;
		case F16: {
			/* Exponent rebias is enough for the byte statistics. */
			uint16_t h = (uint16_t)((x >> 16 & 0x8000) |
						((((x >> 23) & 0xff) - 112) & 0x1f) << 10 |
						(x >> 13 & 0x3ff));
			p[i] = (uint8_t)(h >> (i % 2 ? 8 : 0));
			break;
		}
		case F32: p[i] = (uint8_t)(x >> (8 * (i % 4))); break;
		case TEXT: p[i] = (uint8_t)"the quick brown fox "[next() % 20]; break;
		default: break;
		}
	}
}

static void round_trip(struct bg_ctx *ctx, enum bg_scheme s, const uint8_t *src, size_t n)
{
	size_t cap = bg_bound(n);
	uint8_t *enc = malloc(cap), *dec = malloc(n + 1);
	ssize_t r = bg_encode(ctx, s, src, n, enc, cap);
	int rc;

	CHECK(r >= 0);
	if (r >= 0) {
		dec[n] = 0xa5;
		rc = bg_decode(ctx, s, enc, (size_t)r, dec, n);
		CHECK(rc == 0);
		CHECK(rc != 0 || memcmp(dec, src, n) == 0);
		CHECK(dec[n] == 0xa5);
		/* A length that disagrees with the stream is an error. */
		if (n > 0)
			CHECK(bg_decode(ctx, s, enc, (size_t)r, dec, n - 1) < 0);
		CHECK(bg_decode(ctx, s, enc, (size_t)r, dec, n + 1) < 0);
		/* A short dst is refused, never overrun. */
		if (r > 0 && s != BG_SCHEME_RAW)
			CHECK(bg_encode(ctx, s, src, n, enc, (size_t)r - 1) == -ENOSPC ||
			      s == BG_SCHEME_ZSTD);
	}
	free(enc);
	free(dec);
}

static void test_round_trips(void)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 4, 5, 7, 63, 64, 65, 66, 67, 127, 255, 1000,
					4097, 65535, 65536, 65537, 131071 };
	struct bg_ctx ctx;
	uint8_t *src = malloc(131072);
	size_t i;
	int k, s, v;

	CHECK(bg_ctx_init(&ctx, 3) == 0);
	for (v = 0; v < 6; v++) {
		/* Every encoder variant must decode with the same decoder: joined
		 * or not, rotated or not, many small frames per plane, other
		 * plane parameters. */
		ctx.opts.joined = v & 1;
		ctx.opts.no_rotate = v >> 1 & 1;
		ctx.opts.plane_segment = v == 4 ? 97 : 0;
		ctx.opts.plane_level = v == 5 ? 3 : 0;
		ctx.opts.plane_min_match = v == 5 ? 4 : 0;
		for (k = 0; k < KINDS; k++)
			for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
				fill(src, sizes[i], (enum kind)k);
				for (s = 0; s < 4; s++)
					round_trip(&ctx, (enum bg_scheme)s, src, sizes[i]);
			}
	}
	bg_ctx_release(&ctx);
	free(src);
}

static void test_chooser(void)
{
	struct bg_ctx ctx;
	size_t n = 65536 + 3, cap = bg_bound(n);
	uint8_t *src = malloc(n), *best = malloc(n), *z = malloc(cap), *dec = malloc(n);
	unsigned widths[] = { 0, 2, 4 };
	int k, w, grouped_won = 0;

	CHECK(bg_ctx_init(&ctx, 3) == 0);
	for (k = 0; k < KINDS; k++)
		for (w = 0; w < 3; w++) {
			enum bg_scheme s = 99;
			ssize_t rb, rz;

			fill(src, n, (enum kind)k);
			rz = bg_encode(&ctx, BG_SCHEME_ZSTD, src, n, z, cap);
			rb = bg_encode_best(&ctx, src, n, widths[w], best, n, &s);
			CHECK(rz > 0 && rb > 0);
			CHECK(rb <= rz && (size_t)rb <= n);
			CHECK(s <= BG_SCHEME_GROUP4);
			CHECK(bg_decode(&ctx, s, best, (size_t)rb, dec, n) == 0 &&
			      memcmp(dec, src, n) == 0);
			if (widths[w] == 0)
				CHECK(s == BG_SCHEME_RAW || s == BG_SCHEME_ZSTD);
			if (k == RANDOM)
				CHECK(s == BG_SCHEME_RAW);
			if (k == ZEROS)
				CHECK(s == BG_SCHEME_ZSTD);
			if ((k == BF16 && widths[w] == 2) || (k == F32 && widths[w] == 4)) {
				grouped_won += s == BG_SCHEME_GROUP2 || s == BG_SCHEME_GROUP4;
				/* On weight-like data grouping must clearly win. */
				CHECK((double)rb < 0.95 * (double)rz);
			}
		}
	CHECK(grouped_won == 2);

	/* The probing chooser decodes the same way, never exceeds the input,
	 * and on weight-like data makes the full comparison's choice. */
	ctx.opts.probe = 1;
	for (k = 0; k < KINDS; k++)
		for (w = 0; w < 3; w++) {
			enum bg_scheme s = 99, s_exact = 99;
			ssize_t rb, re;

			fill(src, n, (enum kind)k);
			ctx.opts.probe = 0;
			re = bg_encode_best(&ctx, src, n, widths[w], best, n, &s_exact);
			ctx.opts.probe = 1;
			rb = bg_encode_best(&ctx, src, n, widths[w], best, n, &s);
			CHECK(rb > 0 && (size_t)rb <= n && re > 0);
			CHECK(bg_decode(&ctx, s, best, (size_t)rb, dec, n) == 0 &&
			      memcmp(dec, src, n) == 0);
			if (k == BF16 || k == F32 || k == RANDOM || k == ZEROS)
				CHECK(s == s_exact && rb == re);
		}
	ctx.opts.probe = 0;
	CHECK(bg_encode_best(&ctx, src, n, 2, best, n - 1, &(enum bg_scheme){ 0 }) == -ENOSPC);
	bg_ctx_release(&ctx);
	free(src);
	free(best);
	free(z);
	free(dec);
}

/* Every single-byte corruption of a grouped chunk either fails or decodes
 * to exactly n bytes; none writes past dst (checked by the canary and by
 * the sanitizer build). */
static void test_corruption(void)
{
	struct bg_ctx ctx;
	size_t n = 4099, cap = bg_bound(n), i;
	uint8_t *src = malloc(n), *enc = malloc(cap), *dec = malloc(n + 1);
	ssize_t r;
	int s;

	CHECK(bg_ctx_init(&ctx, 3) == 0);
	fill(src, n, BF16);
	for (s = 1; s < 4; s++) {
		r = bg_encode(&ctx, (enum bg_scheme)s, src, n, enc, cap);
		CHECK(r > 0);
		for (i = 0; r > 0 && i < (size_t)r; i++) {
			uint8_t keep = enc[i];

			enc[i] ^= (uint8_t)(1u << (i % 8));
			dec[n] = 0x5a;
			(void)bg_decode(&ctx, (enum bg_scheme)s, enc, (size_t)r, dec, n);
			CHECK(dec[n] == 0x5a);
			enc[i] = keep;
		}
		/* Truncations. */
		for (i = 0; r > 0 && i < (size_t)r; i += 7)
			CHECK(bg_decode(&ctx, (enum bg_scheme)s, enc, i, dec, n) < 0);
	}
	/* Reserved flag bits and impossible plane lengths. */
	enc[0] = 0x80;
	CHECK(bg_decode(&ctx, BG_SCHEME_GROUP2, enc, 64, dec, n) == -EBADMSG);
	memset(enc, 0xff, 64);
	enc[0] = 0;
	CHECK(bg_decode(&ctx, BG_SCHEME_GROUP4, enc, 64, dec, n) == -EBADMSG);
	CHECK(bg_decode(&ctx, (enum bg_scheme)7, enc, 64, dec, n) == -EINVAL);
	CHECK(bg_decode(&ctx, BG_SCHEME_RAW, enc, 63, dec, 64) == -EBADMSG);
	CHECK(bg_decode(&ctx, BG_SCHEME_GROUP2, enc, 0, dec, 0) == -EBADMSG);
	bg_ctx_release(&ctx);
	free(src);
	free(enc);
	free(dec);
}

/* Chunks cut inside a value: the head is kept raw and the values after it
 * grouped; every size, down to chunks shorter than the head, round-trips,
 * and the content probe finds each float kind's width and phase. */
static void test_heads(void)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 5, 64, 4099, 65536 + 3 };
	static const unsigned want_w[KINDS] = { 0, 0, 2, 2, 4, 0 };
	struct bg_ctx ctx;
	size_t n = 65536 + 8, cap = bg_bound(n), i;
	uint8_t *src = malloc(n), *enc = malloc(cap), *dec = malloc(n + 1);
	unsigned w, h, head;
	int k;

	CHECK(bg_ctx_init(&ctx, 3) == 0);
	for (k = 0; k < KINDS; k++) {
		fill(src, n, (enum kind)k);
		for (h = 0; h < 4; h++) {
			unsigned g = bg_guess_width(src + h, n - h, 0, &head);

			CHECK_EQ(g, want_w[k]);
			if (g)
				CHECK_EQ(head, (g - h % g) % g);
		}
		for (w = 2; w <= 4; w += 2)
			for (h = 0; h < w; h++)
				for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
					enum bg_scheme s = 99;
					ssize_t r = bg_encode_best_at(&ctx, src, sizes[i], w, h, enc,
								      cap, &s);

					CHECK(r >= 0 && (size_t)r <= sizes[i]);
					dec[sizes[i]] = 0x5a;
					CHECK(bg_decode(&ctx, s, enc, (size_t)r, dec, sizes[i]) == 0);
					CHECK(memcmp(dec, src, sizes[i]) == 0 && dec[sizes[i]] == 0x5a);
				}
	}
	CHECK(bg_encode_best_at(&ctx, src, 100, 2, 2, enc, cap, &(enum bg_scheme){ 0 }) ==
	      -EINVAL);
	/* A head as long as a value, or longer than the chunk, is corrupt. */
	fill(src, n, BF16);
	CHECK(bg_encode(&ctx, BG_SCHEME_GROUP2, src, 4099, enc, cap) > 0);
	enc[0] |= 2 << BG_HEAD_SHIFT;
	CHECK(bg_decode(&ctx, BG_SCHEME_GROUP2, enc, 4099, dec, 4099) == -EBADMSG);
	enc[0] = BG_FLAG_ROTATED | 3 << BG_HEAD_SHIFT;
	CHECK(bg_decode(&ctx, BG_SCHEME_GROUP4, enc, 3, dec, 2) == -EBADMSG);
	bg_ctx_release(&ctx);
	free(src);
	free(enc);
	free(dec);
}

/* Order-0 entropy, in bytes, of p[0..n) coded per seg bytes (one Huffman
 * table per plane frame). */
static double entropy_bytes(const uint8_t *p, size_t n, size_t seg)
{
	double bits = 0;
	size_t off, i;

	for (off = 0; off < n; off += seg) {
		size_t k = n - off < seg ? n - off : seg;
		unsigned h[256] = { 0 };
		int b;

		for (i = 0; i < k; i++)
			h[p[off + i]]++;
		for (b = 0; b < 256; b++)
			if (h[b])
				bits -= h[b] * log2((double)h[b] / (double)k);
	}
	return bits / 8;
}

/* Stored length of plane j of a planes-layout encoding (0: kept raw). */
static size_t plane_len(const uint8_t *enc, unsigned j)
{
	uint32_t hdr;

	memcpy(&hdr, enc + 1 + 4 * j, 4);
	return hdr & 0x80000000u ? hdr & 0x7fffffffu : 0;
}

/*
 * An exponent plane is near-random literals with a skewed histogram: the
 * plane encoder entropy-codes them and spends no bits (nor time) on short
 * matches, so the plane lands within 4% of its order-0 entropy per 8 KiB
 * frame, tables and frame headers included (3.1%; with the short matches
 * it was 5.7%); a run of padding in it still
 * costs next to nothing.
 */
static void test_exponent_plane(void)
{
	size_t n = 131072, m = n / 2, cap = bg_bound(n), i;
	uint8_t *src = malloc(n), *enc = malloc(cap), *plane = malloc(m);
	struct bg_ctx ctx;
	ssize_t r, rz;
	double e;

	CHECK(bg_ctx_init(&ctx, 3) == 0);
	rng = 88172645463325252ull; /* the same data whichever test ran before */
	fill(src, n, BF16);
	r = bg_encode(&ctx, BG_SCHEME_GROUP2, src, n, enc, cap);
	CHECK(r > 0);
	/* The rotated top byte of each value: the plane the encoder made. */
	for (i = 0; i < m; i++)
		plane[i] = (uint8_t)(src[2 * i + 1] << 1 | src[2 * i] >> 7);
	e = entropy_bytes(plane, m, BG_PLANE_SEGMENT);
	CHECK(plane_len(enc, 1) > 0);
	CHECK((double)plane_len(enc, 1) <= 1.04 * e);
	CHECK(plane_len(enc, 0) == 0); /* the mantissa plane stays raw */

	/* The second half zeros (padding): its planes cost next to nothing. */
	memset(src + n / 2, 0, n / 2);
	rz = bg_encode(&ctx, BG_SCHEME_GROUP2, src, n, enc, cap);
	CHECK(rz > 0 && rz < r / 2 + 1024);
	bg_ctx_release(&ctx);
	free(src);
	free(enc);
	free(plane);
}

int main(void)
{
	test_round_trips();
	test_chooser();
	test_corruption();
	test_heads();
	test_exponent_plane();
	return check_status();
}
