/*
 * codec.c - zstd and raw chunk schemes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "backend/codec.h"

struct codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int level;
};

struct codec *codec_new(int level)
{
	struct codec *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	c->level = level;
	if (!c->cctx || !c->dctx) {
		codec_free(c);
		return NULL;
	}
	return c;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c);
}

size_t codec_bound(size_t len)
{
	size_t z = ZSTD_compressBound(len);

	return z > len ? z : len;
}

int codec_encode(struct codec *c, const void *src, size_t len, void *dst,
		 size_t cap, enum codec_scheme *ret_scheme)
{
	size_t z;

	if (cap < len)
		return -EINVAL;
	z = ZSTD_compressCCtx(c->cctx, dst, cap, src, len, c->level);
	if (!ZSTD_isError(z) && z < len - len / 32) {
		*ret_scheme = CODEC_ZSTD;
		return (int)z;
	}
	memcpy(dst, src, len);
	*ret_scheme = CODEC_RAW;
	return (int)len;
}

int codec_decode(struct codec *c, enum codec_scheme scheme, const void *src,
		 size_t clen, void *dst, size_t ulen)
{
	size_t z;

	switch (scheme) {
	case CODEC_RAW:
		if (clen != ulen)
			return -EIO;
		memcpy(dst, src, ulen);
		return (int)ulen;
	case CODEC_ZSTD:
		z = ZSTD_decompressDCtx(c->dctx, dst, ulen, src, clen);
		if (ZSTD_isError(z) || z != ulen)
			return -EIO;
		return (int)ulen;
	default:
		return -EINVAL;
	}
}

const char *codec_scheme_name(enum codec_scheme scheme)
{
	switch (scheme) {
	case CODEC_RAW:
		return "raw";
	case CODEC_ZSTD:
		return "zstd";
	default:
		return "unknown";
	}
}
