/* bytegroup: byte-grouped float chunks.  Contract and encoded layout in
 * bytegroup.h.
 *
 * Encode: transform (rotate, split into planes) into ctx->planes, then
 * compress each plane straight into dst, keeping a plane raw when zstd does
 * not save at least 1/32 of it (a barely compressible mantissa plane would
 * cost decode time for nothing).  Decode: decompress or copy each plane into
 * ctx->planes, then interleave back into dst in one pass.
 */
#include "bytegroup.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
/* ZSTD_c_literalCompressionMode (plane_zstd()) is an experimental
 * parameter: a number the library accepts, named only under this macro. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define PLANE_ZSTD 0x80000000u

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int bg_ctx_init(struct bg_ctx *ctx, int level)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->level = level;
	ctx->cctx = ZSTD_createCCtx();
	ctx->plane_cctx = ZSTD_createCCtx();
	ctx->dctx = ZSTD_createDCtx();
	if (!ctx->cctx || !ctx->plane_cctx || !ctx->dctx) {
		bg_ctx_release(ctx);
		return -ENOMEM;
	}
	return 0;
}

void bg_ctx_release(struct bg_ctx *ctx)
{
	if (!ctx)
		return;
	ZSTD_freeCCtx(ctx->cctx);
	ZSTD_freeCCtx(ctx->plane_cctx);
	ZSTD_freeDCtx(ctx->dctx);
	free(ctx->planes);
	free(ctx->trial);
	memset(ctx, 0, sizeof(*ctx));
}

static int grow(uint8_t **buf, size_t *cap, size_t n)
{
	uint8_t *p;

	if (*cap >= n)
		return 0;
	p = realloc(*buf, n);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

size_t bg_bound(size_t n)
{
	size_t z = ZSTD_compressBound(n);

	/* Grouped: flags + 4 headers + raw planes at worst; or the flags byte,
	 * a frame over n - t plane bytes and the t <= 3 tail bytes, which
	 * ZSTD_compressBound(n) covers to within a byte or two. */
	if (z < n + 1 + 4 * 4)
		z = n + 1 + 4 * 4;
	return z + 8;
}

unsigned bg_scheme_width(enum bg_scheme scheme)
{
	return scheme == BG_SCHEME_GROUP2 ? 2 : scheme == BG_SCHEME_GROUP4 ? 4 : 0;
}

/* ---- the transform: values <-> planes ---- */

static void split2(const uint8_t *src, size_t m, uint8_t *planes, int rotate)
{
	uint8_t *p0 = planes, *p1 = planes + m;
	size_t i = 0;

#ifdef __SSE2__
	const __m128i lo = _mm_set1_epi16(0xff);

	for (; i + 16 <= m; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(src + 2 * i));
		__m128i b = _mm_loadu_si128((const __m128i *)(src + 2 * i + 16));

		if (rotate) {
			a = _mm_or_si128(_mm_slli_epi16(a, 1), _mm_srli_epi16(a, 15));
			b = _mm_or_si128(_mm_slli_epi16(b, 1), _mm_srli_epi16(b, 15));
		}
		_mm_storeu_si128((__m128i *)(p0 + i),
				 _mm_packus_epi16(_mm_and_si128(a, lo), _mm_and_si128(b, lo)));
		_mm_storeu_si128((__m128i *)(p1 + i),
				 _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
	}
#endif
	for (; i < m; i++) {
		uint16_t v = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);

		if (rotate)
			v = (uint16_t)(v << 1 | v >> 15);
		p0[i] = (uint8_t)v;
		p1[i] = (uint8_t)(v >> 8);
	}
}

/* The interleaving loops run once per decoded byte, so x86-64 gets an SSE2
 * version of each (16 values a step); the scalar loops are the reference
 * and handle the remainder. */
static void join2(const uint8_t *const *pl, size_t m, uint8_t *dst, int rotate)
{
	const uint8_t *p0 = pl[0], *p1 = pl[1];
	size_t i = 0;

#ifdef __SSE2__
	for (; i + 16 <= m; i += 16) {
		__m128i lo = _mm_loadu_si128((const __m128i *)(p0 + i));
		__m128i hi = _mm_loadu_si128((const __m128i *)(p1 + i));
		__m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi);

		if (rotate) {
			a = _mm_or_si128(_mm_srli_epi16(a, 1), _mm_slli_epi16(a, 15));
			b = _mm_or_si128(_mm_srli_epi16(b, 1), _mm_slli_epi16(b, 15));
		}
		_mm_storeu_si128((__m128i *)(dst + 2 * i), a);
		_mm_storeu_si128((__m128i *)(dst + 2 * i + 16), b);
	}
#endif
	for (; i < m; i++) {
		uint16_t v = (uint16_t)(p0[i] | p1[i] << 8);

		if (rotate)
			v = (uint16_t)(v >> 1 | v << 15);
		dst[2 * i] = (uint8_t)v;
		dst[2 * i + 1] = (uint8_t)(v >> 8);
	}
}

static void split4(const uint8_t *src, size_t m, uint8_t *planes, int rotate)
{
	uint8_t *p0 = planes, *p1 = planes + m, *p2 = planes + 2 * m, *p3 = planes + 3 * m;
	size_t i = 0;

#ifdef __SSE2__
	const __m128i lo = _mm_set1_epi32(0xff);

	for (; i + 16 <= m; i += 16) {
		__m128i v[4];
		uint8_t *out[4] = { p0 + i, p1 + i, p2 + i, p3 + i };
		int k, j;

		for (k = 0; k < 4; k++) {
			v[k] = _mm_loadu_si128((const __m128i *)(src + 4 * i + 16 * k));
			if (rotate)
				v[k] = _mm_or_si128(_mm_slli_epi32(v[k], 1), _mm_srli_epi32(v[k], 31));
		}
		for (j = 0; j < 4; j++) {
			__m128i x[4];

			for (k = 0; k < 4; k++)
				x[k] = _mm_and_si128(j ? _mm_srli_epi32(v[k], 8 * j) : v[k], lo);
			_mm_storeu_si128((__m128i *)out[j],
					 _mm_packus_epi16(_mm_packs_epi32(x[0], x[1]),
							  _mm_packs_epi32(x[2], x[3])));
		}
	}
#endif
	for (; i < m; i++) {
		uint32_t v = rd32(src + 4 * i);

		if (rotate)
			v = v << 1 | v >> 31;
		p0[i] = (uint8_t)v;
		p1[i] = (uint8_t)(v >> 8);
		p2[i] = (uint8_t)(v >> 16);
		p3[i] = (uint8_t)(v >> 24);
	}
}

static void join4(const uint8_t *const *pl, size_t m, uint8_t *dst, int rotate)
{
	const uint8_t *p0 = pl[0], *p1 = pl[1], *p2 = pl[2], *p3 = pl[3];
	size_t i = 0;

#ifdef __SSE2__
	for (; i + 16 <= m; i += 16) {
		__m128i b0 = _mm_loadu_si128((const __m128i *)(p0 + i));
		__m128i b1 = _mm_loadu_si128((const __m128i *)(p1 + i));
		__m128i b2 = _mm_loadu_si128((const __m128i *)(p2 + i));
		__m128i b3 = _mm_loadu_si128((const __m128i *)(p3 + i));
		__m128i l01 = _mm_unpacklo_epi8(b0, b1), h01 = _mm_unpackhi_epi8(b0, b1);
		__m128i l23 = _mm_unpacklo_epi8(b2, b3), h23 = _mm_unpackhi_epi8(b2, b3);
		__m128i v[4] = {
			_mm_unpacklo_epi16(l01, l23), _mm_unpackhi_epi16(l01, l23),
			_mm_unpacklo_epi16(h01, h23), _mm_unpackhi_epi16(h01, h23),
		};
		int k;

		for (k = 0; k < 4; k++) {
			if (rotate)
				v[k] = _mm_or_si128(_mm_srli_epi32(v[k], 1), _mm_slli_epi32(v[k], 31));
			_mm_storeu_si128((__m128i *)(dst + 4 * i + 16 * k), v[k]);
		}
	}
#endif
	for (; i < m; i++) {
		uint32_t v = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 |
			     (uint32_t)p3[i] << 24;

		if (rotate)
			v = v >> 1 | v << 31;
		wr32(dst + 4 * i, v);
	}
}

/* ---- encode ---- */

static ssize_t zstd_into(struct bg_ctx *ctx, const void *src, size_t n, void *dst, size_t cap)
{
	size_t z = ZSTD_compressCCtx(ctx->cctx, dst, cap, src, n, ctx->level);

	if (ZSTD_isError(z))
		return ZSTD_getErrorCode(z) == ZSTD_error_dstSize_tooSmall ? -ENOSPC :
		       ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation ? -ENOMEM : -EINVAL;
	return (ssize_t)z;
}

/* Whether a plane looks worth compressing: its order-0 entropy, from a
 * histogram (a few GB/s), must promise the 1/32 saving that is required
 * anyway.  Skipping zstd on random mantissa planes doubles encode speed. */
/*
 * Order-0 entropy of the plane, estimated on at most four spread 4 KiB
 * samples: the estimate's bias at 16 KiB (about 0.01 bit a byte) is far
 * inside the margin below, and the histogram no longer costs a pass over
 * every byte of every plane.
 */
#define PLANE_SAMPLE 4096

static bool plane_compressible(const uint8_t *p, size_t m)
{
	uint32_t h[4][256];
	double bits = 0, n = 0;
	size_t i, s, nsamples = m > 4 * PLANE_SAMPLE ? 4 : 1;
	size_t len = nsamples == 1 ? m : PLANE_SAMPLE;
	int b;

	memset(h, 0, sizeof(h));
	for (s = 0; s < nsamples; s++) {
		const uint8_t *q = p + (nsamples == 1 ? 0 : s * (m - len) / 3);

		for (i = 0; i + 4 <= len; i += 4) {
			h[0][q[i]]++;
			h[1][q[i + 1]]++;
			h[2][q[i + 2]]++;
			h[3][q[i + 3]]++;
		}
		for (; i < len; i++)
			h[0][q[i]]++;
		n += (double)len;
	}
	for (b = 0; b < 256; b++) {
		uint32_t c = h[0][b] + h[1][b] + h[2][b] + h[3][b];

		if (c)
			bits -= c * log2((double)c / n);
	}
	/* LZ can beat order-0 on repeats (zeros, padding); leave a margin. */
	return bits < 8.0 * n * (1.0 - 1.0 / 64);
}

/* A plane is mostly entropy-coded literals: short matches cost more bits
 * than the literals they replace, so planes use level 1 with the longest
 * minimum match (measured in docs/formats.md: smaller and faster than the
 * store's level 3).  The match search also steps 64 bytes at a time
 * (targetLength, the fast strategy's acceleration): on an exponent plane it
 * found almost nothing worth its time (half the encoder's CPU), while a run
 * of padding or zeros is still found within 64 bytes and then followed to
 * its end.  With an acceleration zstd would also turn off Huffman coding
 * of literals, which is what compresses a plane: it is forced on.  Smaller
 * and twice as fast on bf16 (docs/formats.md).  The plane context keeps
 * those parameters between calls, so switching codecs costs no
 * re-initialisation. */
#define PLANE_STEP 64
static size_t plane_zstd(struct bg_ctx *ctx, const uint8_t *plane, size_t m, uint8_t *dst,
			 size_t cap)
{
	ZSTD_CCtx *c = ctx->plane_cctx;
	size_t seg;

	if (ctx->plane_opts_set != 1 + ctx->opts.plane_level * 64 + ctx->opts.plane_min_match) {
		ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel,
				       ctx->opts.plane_level ? ctx->opts.plane_level : 1);
		ZSTD_CCtx_setParameter(c, ZSTD_c_minMatch,
				       ctx->opts.plane_min_match ? ctx->opts.plane_min_match : 7);
		ZSTD_CCtx_setParameter(c, ZSTD_c_hashLog, 10);
		ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 14);
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
		ZSTD_CCtx_setParameter(c, ZSTD_c_targetLength, PLANE_STEP);
		ZSTD_CCtx_setParameter(c, ZSTD_c_literalCompressionMode, ZSTD_ps_enable);
		ctx->plane_opts_set = 1 + ctx->opts.plane_level * 64 + ctx->opts.plane_min_match;
	}
	/* Exponent statistics drift along a tensor: a frame (a Huffman table)
	 * per BG_PLANE_SEGMENT bytes adapts to them and saves more than the
	 * frame headers cost. */
	seg = ctx->opts.plane_segment ? ctx->opts.plane_segment : BG_PLANE_SEGMENT;
	if (m <= seg)
		return ZSTD_compress2(c, dst, cap, plane, m);
	{
		size_t off, out = 0;

		for (off = 0; off < m; off += seg) {
			size_t k = m - off < seg ? m - off : seg;
			size_t z = ZSTD_compress2(c, dst + out, cap - out, plane + off, k);

			if (ZSTD_isError(z))
				return z;
			out += z;
		}
		return out;
	}
}

/* head: bytes before the first whole value (the chunk was cut inside a
 * value), stored raw after the flags byte. */
static ssize_t encode_grouped(struct bg_ctx *ctx, unsigned w, unsigned head, const uint8_t *src,
			      size_t n, uint8_t *dst, size_t cap)
{
	size_t m, t, pos, j;
	int rotate = !ctx->opts.no_rotate;
	uint8_t flags;

	if (head >= w || head > n)
		return -EINVAL;
	flags = (uint8_t)((rotate ? BG_FLAG_ROTATED : 0) | head << BG_HEAD_SHIFT);
	if (cap < 1 + head)
		return -ENOSPC;
	memcpy(dst + 1, src, head);
	src += head;
	n -= head;
	dst += head;
	cap -= head;
	m = n / w;
	t = n % w;
	if (grow(&ctx->planes, &ctx->planes_cap, (w * m > 0 ? w * m : 1)) < 0)
		return -ENOMEM;
	if (w == 2)
		split2(src, m, ctx->planes, rotate);
	else
		split4(src, m, ctx->planes, rotate);

	if (ctx->opts.joined) {
		ssize_t z;

		if (cap < 1 + t)
			return -ENOSPC;
		z = zstd_into(ctx, ctx->planes, w * m, dst + 1, cap - 1 - t);
		if (z < 0)
			return z;
		dst[-(ssize_t)head] = flags | BG_FLAG_JOINED;
		memcpy(dst + 1 + z, src + w * m, t);
		return (ssize_t)(head + 1 + (size_t)z + t);
	}

	pos = 1 + 4 * (size_t)w;
	if (cap < pos)
		return -ENOSPC;
	dst[-(ssize_t)head] = flags;
	for (j = 0; j < w; j++) {
		const uint8_t *plane = ctx->planes + j * m;
		size_t room = cap - pos, z = 0;
		uint32_t hdr = (uint32_t)m;

		/* Compressed only when it fits below m - m/32: the cap makes
		 * zstd give up early on planes that would not pay. */
		if (m >= 64 && plane_compressible(plane, m)) {
			size_t want = m - m / 32;

			z = plane_zstd(ctx, plane, m, dst + pos, room < want ? room : want);
			if (ZSTD_isError(z))
				z = 0;
		}
		if (z) {
			hdr = (uint32_t)z | PLANE_ZSTD;
		} else {
			if (room < m)
				return -ENOSPC;
			memcpy(dst + pos, plane, m);
			z = m;
		}
		wr32(dst + 1 + 4 * j, hdr);
		pos += z;
	}
	if (cap - pos < t)
		return -ENOSPC;
	memcpy(dst + pos, src + w * m, t);
	return (ssize_t)(head + pos + t);
}

ssize_t bg_encode(struct bg_ctx *ctx, enum bg_scheme scheme, const void *src, size_t n,
		  void *dst, size_t cap)
{
	if (n > BG_CHUNK_MAX)
		return -E2BIG;
	switch (scheme) {
	case BG_SCHEME_RAW:
		if (cap < n)
			return -ENOSPC;
		memcpy(dst, src, n);
		return (ssize_t)n;
	case BG_SCHEME_ZSTD:
		return zstd_into(ctx, src, n, dst, cap);
	case BG_SCHEME_GROUP2:
	case BG_SCHEME_GROUP4:
		return encode_grouped(ctx, bg_scheme_width(scheme), 0, src, n, dst, cap);
	}
	return -EINVAL;
}

/* The probe: both codecs on the first BG_PROBE_BYTES; when grouping wins
 * by a clear margin there, only the grouped encoding of the whole chunk is
 * made.  -EAGAIN: no clear answer, encode both. */
static ssize_t probe_grouped(struct bg_ctx *ctx, unsigned w, unsigned head, const uint8_t *src,
			     size_t n, uint8_t *dst)
{
	size_t bound = bg_bound(BG_PROBE_BYTES);
	ssize_t z, g;

	if (grow(&ctx->trial, &ctx->trial_cap, 2 * bound) < 0)
		return -ENOMEM;
	z = zstd_into(ctx, src, BG_PROBE_BYTES, ctx->trial, bound);
	g = encode_grouped(ctx, w, head, src, BG_PROBE_BYTES, ctx->trial + bound, bound);
	if (z < 0 || g < 0)
		return z < 0 ? z : g;
	if (g * 100 > z * BG_PROBE_PERCENT)
		return -EAGAIN;
	g = encode_grouped(ctx, w, head, src, n, dst, n - 1);
	return g == -ENOSPC ? -EAGAIN : g;
}

ssize_t bg_encode_best(struct bg_ctx *ctx, const void *src, size_t n, unsigned width_hint,
		       void *dst, size_t cap, enum bg_scheme *ret_scheme)
{
	return bg_encode_best_at(ctx, src, n, width_hint, 0, dst, cap, ret_scheme);
}

ssize_t bg_encode_best_at(struct bg_ctx *ctx, const void *src, size_t n, unsigned width_hint,
			  unsigned head, void *dst, size_t cap, enum bg_scheme *ret_scheme)
{
	enum bg_scheme grouped = width_hint == 2 ? BG_SCHEME_GROUP2 :
				 width_hint == 4 ? BG_SCHEME_GROUP4 : BG_SCHEME_RAW;
	ssize_t z, g;

	if (n > BG_CHUNK_MAX)
		return -E2BIG;
	if (cap < n)
		return -ENOSPC;
	if (grouped != BG_SCHEME_RAW && head >= width_hint)
		return -EINVAL;
	if (ctx->opts.probe && grouped != BG_SCHEME_RAW && n >= 4 * BG_PROBE_BYTES) {
		g = probe_grouped(ctx, width_hint, head, src, n, dst);
		if (g >= 0) {
			*ret_scheme = grouped;
			return g;
		}
		if (g != -EAGAIN)
			return g;
	}
	/* Candidates must beat raw strictly: dst holds n bytes, so capping
	 * them at n - 1 lets zstd stop early on incompressible data. */
	z = n ? zstd_into(ctx, src, n, dst, n - 1) : -ENOSPC;
	if (z < 0 && z != -ENOSPC)
		return z;
	if (grouped != BG_SCHEME_RAW && n >= 64) {
		size_t lim = z >= 0 ? (size_t)z - 1 : n - 1;

		if (grow(&ctx->trial, &ctx->trial_cap, lim) < 0)
			return -ENOMEM;
		g = encode_grouped(ctx, width_hint, head, src, n, ctx->trial, lim);
		if (g >= 0) {
			memcpy(dst, ctx->trial, (size_t)g);
			*ret_scheme = grouped;
			return g;
		}
		if (g != -ENOSPC)
			return g;
	}
	if (z >= 0) {
		*ret_scheme = BG_SCHEME_ZSTD;
		return z;
	}
	memcpy(dst, src, n);
	*ret_scheme = BG_SCHEME_RAW;
	return (ssize_t)n;
}

/* ---- the content probe ---- */

/*
 * Collision entropy (Renyi order 2: -log2 of the chance that two bytes
 * drawn at random are equal), in bits a byte, of each byte position modulo
 * 4 over a sample taken at a multiple of 4 from the chunk's start (so
 * positions keep their phase).  It needs one log2 a position where Shannon
 * entropy needs one a byte value, and shows the same thing: floats have one
 * position (fp32: the exponent byte) or two opposite positions (bf16,
 * fp16) far below the others.
 */
#define GUESS_SAMPLE 8192
#define GUESS_MARGIN 1.0 /* bits a byte between exponent and mantissa bytes */

static void class_entropy(const uint8_t *p, size_t len, double e[4])
{
	uint32_t h[4][256];
	size_t i, per = len / 4;
	int k, b;

	memset(h, 0, sizeof(h));
	for (i = 0; i + 4 <= len; i += 4) {
		h[0][p[i]]++;
		h[1][p[i + 1]]++;
		h[2][p[i + 2]]++;
		h[3][p[i + 3]]++;
	}
	for (k = 0; k < 4; k++) {
		uint64_t sq = 0;

		for (b = 0; b < 256; b++)
			sq += (uint64_t)h[k][b] * h[k][b];
		e[k] = -log2((double)sq / ((double)per * (double)per));
	}
}

static double min3(double a, double b, double c)
{
	return a < b ? (a < c ? a : c) : (b < c ? b : c);
}

unsigned bg_guess_width(const void *src, size_t n, unsigned want, unsigned *ret_head)
{
	const uint8_t *p = src;
	size_t len = n < GUESS_SAMPLE ? n & ~(size_t)3 : GUESS_SAMPLE;
	size_t at = ((n - len) / 2) & ~(size_t)3;
	double e[4];
	int k;

	*ret_head = 0;
	if (len < 1024 || (want != 0 && want != 2 && want != 4))
		return want == 2 || want == 4 ? want : 0;
	class_entropy(p + at, len, e);
	if (want == 2) {
		*ret_head = e[0] + e[2] < e[1] + e[3];
		return 2;
	}
	if (want == 4) {
		int lo = 0;

		for (k = 1; k < 4; k++)
			if (e[k] < e[lo])
				lo = k;
		*ret_head = (unsigned)(lo + 1) % 4;
		return 4;
	}
	/* Exponent byte at k: values start right after it. */
	for (k = 0; k < 2; k++) {
		double lo = e[k] > e[k + 2] ? e[k] : e[k + 2];
		double hi = e[k + 1] < e[(k + 3) % 4] ? e[k + 1] : e[(k + 3) % 4];

		if (lo + GUESS_MARGIN <= hi) {
			*ret_head = (unsigned)(k + 1) % 2;
			return 2;
		}
	}
	for (k = 0; k < 4; k++)
		if (e[k] + GUESS_MARGIN <= min3(e[(k + 1) % 4], e[(k + 2) % 4], e[(k + 3) % 4])) {
			*ret_head = (unsigned)(k + 1) % 4;
			return 4;
		}
	return 0;
}

/* ---- decode ---- */

static int unzstd(struct bg_ctx *ctx, const uint8_t *src, size_t len, uint8_t *dst, size_t n)
{
	size_t r = ZSTD_decompressDCtx(ctx->dctx, dst, n, src, len);

	if (ZSTD_isError(r))
		return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? -ENOMEM : -EBADMSG;
	return r == n ? 0 : -EBADMSG;
}

/* Raw planes are interleaved straight from src; only zstd planes pass
 * through ctx->planes. */
static int decode_grouped(struct bg_ctx *ctx, unsigned w, const uint8_t *src, size_t len,
			  uint8_t *dst, size_t n)
{
	size_t m, t, pos, j, body, head;
	const uint8_t *pl[4] = { NULL, NULL, NULL, NULL };
	uint8_t flags;
	int rc;

	if (len < 1)
		return -EBADMSG;
	flags = src[0];
	if (flags & ~(BG_FLAG_JOINED | BG_FLAG_ROTATED | BG_FLAG_HEAD))
		return -EBADMSG;
	/* A head: the chunk's first bytes, before its first whole value. */
	head = (flags & BG_FLAG_HEAD) >> BG_HEAD_SHIFT;
	if (head >= w || head > n || len < 1 + head)
		return -EBADMSG;
	memcpy(dst, src + 1, head);
	src += head;
	len -= head;
	dst += head;
	n -= head;
	m = n / w;
	t = n % w;
	if (len < 1 + t)
		return -EBADMSG;
	if (grow(&ctx->planes, &ctx->planes_cap, (w * m > 0 ? w * m : 1)) < 0)
		return -ENOMEM;
	body = len - t;   /* bytes before the tail */
	for (j = 0; j < w; j++)
		pl[j] = ctx->planes + j * m;

	if (flags & BG_FLAG_JOINED) {
		rc = unzstd(ctx, src + 1, body - 1, ctx->planes, w * m);
		if (rc < 0)
			return rc;
	} else {
		pos = 1 + 4 * (size_t)w;
		if (body < pos)
			return -EBADMSG;
		for (j = 0; j < w; j++) {
			uint32_t hdr = rd32(src + 1 + 4 * j);
			size_t plen = hdr & ~PLANE_ZSTD;

			if (plen > body - pos)
				return -EBADMSG;
			if (hdr & PLANE_ZSTD) {
				rc = unzstd(ctx, src + pos, plen, ctx->planes + j * m, m);
				if (rc < 0)
					return rc;
			} else {
				if (plen != m)
					return -EBADMSG;
				pl[j] = src + pos;
			}
			pos += plen;
		}
		if (pos != body)
			return -EBADMSG;
	}
	if (w == 2)
		join2(pl, m, dst, flags & BG_FLAG_ROTATED);
	else
		join4(pl, m, dst, flags & BG_FLAG_ROTATED);
	memcpy(dst + w * m, src + body, t);
	return 0;
}

int bg_decode(struct bg_ctx *ctx, enum bg_scheme scheme, const void *src, size_t src_len,
	      void *dst, size_t n)
{
	if (n > BG_CHUNK_MAX)
		return -E2BIG;
	switch (scheme) {
	case BG_SCHEME_RAW:
		if (src_len != n)
			return -EBADMSG;
		memcpy(dst, src, n);
		return 0;
	case BG_SCHEME_ZSTD:
		return unzstd(ctx, src, src_len, dst, n);
	case BG_SCHEME_GROUP2:
	case BG_SCHEME_GROUP4:
		return decode_grouped(ctx, bg_scheme_width(scheme), src, src_len, dst, n);
	}
	return -EINVAL;
}
