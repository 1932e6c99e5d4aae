/*
 * codec.c - the store's use of bytegroup.h's schemes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "backend/store/bytegroup.h"
#include "backend/store/codec.h"

/*
 * Random-looking chunks (quantised blocks, compressed archives) are found
 * on a sample before zstd spends a whole pass failing on them.
 */
#define PROBE_BYTES 8192
#define PROBE_MIN_SAVING 50 /* per mille */

struct codec {
	struct bg_ctx bg;
	ZSTD_CCtx *probe;
	uint8_t probe_out[PROBE_BYTES + 512];
};

static int looks_incompressible(struct codec *c, const void *src, size_t len)
{
	size_t z;

	if (len < 2 * PROBE_BYTES)
		return 0;
	z = ZSTD_compressCCtx(c->probe, c->probe_out, sizeof(c->probe_out),
			      (const uint8_t *)src + len / 2 - PROBE_BYTES / 2,
			      PROBE_BYTES, 1);
	return ZSTD_isError(z) || z * 1000 > PROBE_BYTES * (1000 - PROBE_MIN_SAVING);
}

struct codec *codec_new(int level)
{
	struct codec *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (bg_ctx_init(&c->bg, level) < 0) {
		free(c);
		return NULL;
	}
	c->probe = ZSTD_createCCtx();
	if (!c->probe) {
		bg_ctx_release(&c->bg);
		free(c);
		return NULL;
	}
	/* Decide grouped-or-not on a sample: faster ingest of float tensors. */
	c->bg.opts.probe = 1;
	return c;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	bg_ctx_release(&c->bg);
	ZSTD_freeCCtx(c->probe);
	free(c);
}

size_t codec_bound(size_t len)
{
	return bg_bound(len);
}

int codec_encode_ref(struct codec *c, unsigned width, const void *src, size_t len,
		     void *dst, size_t cap, enum codec_scheme *ret_scheme,
		     const void **ret_out)
{
	enum bg_scheme s;
	unsigned head;
	ssize_t n;

	*ret_out = dst;

	/*
	 * Floats without a header that names them (bare weight files, other
	 * frameworks' shards, optimizer states) are found by their bytes, and
	 * a chunk cut inside a value gets its phase: grouping is tried, and
	 * kept only when it beats zstd.
	 */
	width = bg_guess_width(src, len, width, &head);
	if (!width && looks_incompressible(c, src, len)) {
		if (cap < len)
			return -ENOSPC;
		*ret_out = src;
		*ret_scheme = CODEC_RAW;
		return (int)len;
	}
	n = bg_encode_best_at(&c->bg, src, len, width, head, dst, cap, &s);
	if (n < 0)
		return (int)n;
	*ret_scheme = (enum codec_scheme)s;
	return (int)n;
}

int codec_encode(struct codec *c, unsigned width, const void *src, size_t len,
		 void *dst, size_t cap, enum codec_scheme *ret_scheme)
{
	const void *out;
	int n = codec_encode_ref(c, width, src, len, dst, cap, ret_scheme, &out);

	if (n > 0 && out != dst)
		memcpy(dst, src, (size_t)n);
	return n;
}

int codec_decode(struct codec *c, enum codec_scheme scheme, const void *src,
		 size_t clen, void *dst, size_t ulen)
{
	int r;

	if (scheme >= CODEC_SCHEME_MAX)
		return -EINVAL;
	r = bg_decode(&c->bg, (enum bg_scheme)scheme, src, clen, dst, ulen);
	if (r == -EINVAL || r == -ENOMEM)
		return r;
	return r < 0 ? -EIO : (int)ulen;
}

const char *codec_scheme_name(enum codec_scheme scheme)
{
	static const char *const names[] = { "raw", "zstd", "group2+zstd",
					     "group4+zstd" };

	return scheme < CODEC_SCHEME_MAX ? names[scheme] : "unknown";
}
