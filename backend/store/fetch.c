/*
 * fetch.c - chunks that come from elsewhere: checking records received from
 * a registry and storing them as fetched chunks; reading single chunks and
 * records for the net/ tree and for pushes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store/store_i.h"

int cas_chunk_has(struct cas_store *st, const struct cas_id *id)
{
	struct pack_loc loc;
	int r;

	pthread_mutex_lock(&st->lock);
	r = cat_chunk_get(st->cat, id, &loc, NULL);
	if (r == 0)
		r = cat_damaged_has(st->cat, id) == 1 ? 0 : 1;
	else if (r == -ENOENT)
		r = 0;
	pthread_mutex_unlock(&st->lock);
	return r;
}

ssize_t cas_chunk_read(struct cas_store *st, const struct cas_id *id,
		       void *out)
{
	struct worker_ctx *ctx = store_tls(st);
	uint32_t len;
	int r;

	if (!ctx)
		return -ENOMEM;
	r = store_load_chunk(st, ctx, id, NULL, out, &len);
	return r < 0 ? r : (ssize_t)len;
}

ssize_t cas_chunk_record(struct cas_store *st, const struct cas_id *id,
			 void *buf, size_t cap)
{
	struct pack_loc loc;
	int r;

	pthread_rwlock_rdlock(&st->gc_lock);
	pthread_mutex_lock(&st->lock);
	r = cat_chunk_get(st->cat, id, &loc, NULL);
	if (r == 0 && buf && cap < PACK_REC_LEN + (size_t)loc.clen)
		r = -ENOBUFS;
	/* An inline chunk's record is made from its row and bytes, as its
	 * pack record will be once moved. */
	if (r == 0 && buf && loc.pack == CAS_PACK_INLINE) {
		int n = cat_inline_get(st->cat, id, (uint8_t *)buf + PACK_REC_LEN,
				       cap - PACK_REC_LEN);

		r = n < 0 ? (n == -ENOENT ? -EIO : n) : (uint32_t)n != loc.clen ? -EIO : 0;
		if (r == 0)
			pack_rec_header(buf, id, loc.scheme, loc.ulen, loc.clen);
		buf = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	if (r == 0 && buf)
		r = pack_read(st->packs, &loc, id, buf);
	pthread_rwlock_unlock(&st->gc_lock);
	return r < 0 ? r : (ssize_t)(PACK_REC_LEN + loc.clen);
}

ssize_t cas_record_check(struct cas_store *st, const void *rec, size_t len,
			 const struct cas_id *id, void *out)
{
	struct worker_ctx *ctx = store_tls(st);
	const uint8_t *p = rec;
	enum codec_scheme scheme;
	struct cas_id hid, got;
	uint32_t ulen, clen;
	uint8_t *dst;

	if (!ctx)
		return -ENOMEM;
	if (len < PACK_REC_LEN ||
	    pack_rec_parse(p, &hid, &scheme, &ulen, &clen) < 0 ||
	    len != PACK_REC_LEN + (size_t)clen || !cas_id_eq(&hid, id))
		return -EBADMSG;
	dst = out ? out : ctx->out;
	if (scheme == CODEC_RAW) {
		if (clen != ulen)
			return -EBADMSG;
		memcpy(dst, p + PACK_REC_LEN, ulen);
	} else if (codec_decode(ctx->codec, scheme, p + PACK_REC_LEN, clen, dst,
				ulen) < 0) {
		return -EBADMSG;
	}
	cas_id_of(dst, ulen, &got);
	return cas_id_eq(&got, id) ? (ssize_t)ulen : -EBADMSG;
}

struct added {
	struct cas_id id;
	struct pack_loc loc;
};

struct cas_import {
	struct cas_store *st;
	pthread_mutex_t lock;
	struct added *a;      /* appended, not yet committed */
	size_t n, cap;
	uint64_t bytes;
};

int cas_import_begin(struct cas_store *st, struct cas_import **ret)
{
	struct cas_import *im = calloc(1, sizeof(*im));

	if (!im)
		return -ENOMEM;
	im->st = st;
	pthread_mutex_init(&im->lock, NULL);
	/* Counted as a writer: collection must not cut what is appended. */
	pthread_mutex_lock(&st->lock);
	st->writers++;
	pthread_mutex_unlock(&st->lock);
	*ret = im;
	return 0;
}

int cas_import_add(struct cas_import *im, const void *const *recs,
		   const size_t *lens, size_t n)
{
	size_t i;
	int r = 0;

	for (i = 0; r == 0 && i < n; i++) {
		const uint8_t *p = recs[i];
		enum codec_scheme scheme;
		uint32_t ulen, clen;
		struct added a;

		if (lens[i] < PACK_REC_LEN ||
		    pack_rec_parse(p, &a.id, &scheme, &ulen, &clen) < 0 ||
		    lens[i] != PACK_REC_LEN + (size_t)clen)
			return -EBADMSG;
		r = cas_chunk_has(im->st, &a.id);
		if (r != 0) {
			r = r == 1 ? 0 : r;
			continue;
		}
		r = store_append(im->st, &a.id, scheme, ulen, p + PACK_REC_LEN, clen,
				 &a.loc);
		if (r < 0)
			break;
		pthread_mutex_lock(&im->lock);
		if (im->n == im->cap) {
			size_t cap = im->cap ? 2 * im->cap : 256;
			struct added *v = realloc(im->a, cap * sizeof(*v));

			if (!v) {
				r = -ENOMEM;
			} else {
				im->a = v;
				im->cap = cap;
			}
		}
		if (r == 0) {
			im->a[im->n++] = a;
			im->bytes += lens[i];
		}
		pthread_mutex_unlock(&im->lock);
	}
	return r;
}

void cas_import_writeback(struct cas_import *im)
{
	pack_set_writeback(im->st->packs);
}

uint64_t cas_import_pending(struct cas_import *im)
{
	uint64_t b;

	pthread_mutex_lock(&im->lock);
	b = im->bytes;
	pthread_mutex_unlock(&im->lock);
	return b;
}

int cas_import_commit(struct cas_import *im)
{
	struct cas_store *st = im->st;
	int64_t now = store_now_ns();
	struct pack_delta *d = NULL;
	size_t nd = 0, i;
	int r;

	pthread_mutex_lock(&im->lock);
	if (!im->n) {
		pthread_mutex_unlock(&im->lock);
		return 0;
	}
	r = pack_set_sync(st->packs);
	if (r < 0)
		goto out;
	pthread_mutex_lock(&st->lock);
	r = cat_begin(st->cat);
	for (i = 0; r == 0 && i < im->n; i++) {
		struct added *a = &im->a[i];
		struct pack_loc old;

		r = cat_chunk_insert(st->cat, &a->id, &a->loc);
		if (r == -EEXIST) {
			/* Stored meanwhile, or a damaged copy: heal that. */
			r = 0;
			if (cat_damaged_has(st->cat, &a->id) != 1)
				continue;
			r = cat_chunk_get(st->cat, &a->id, &old, NULL);
			if (r == 0)
				r = cat_chunk_relocate(st->cat, &a->id, &a->loc);
			if (r == 0 && old.pack == CAS_PACK_INLINE)
				r = cat_inline_delete(st->cat, &a->id);
			if (r == 0)
				r = cat_damaged_clear(st->cat, &a->id);
			if (r == 0)
				r = store_delta_add(&d, &nd, old.pack,
						    -(int64_t)(PACK_REC_LEN + old.clen));
		}
		if (r == 0)
			r = cat_fetched_add(st->cat, &a->id, now);
		if (r == 0)
			r = store_delta_add(&d, &nd, a->loc.pack,
					    PACK_REC_LEN + a->loc.clen);
	}
	r = store_txn_end(st, r, d, nd);
	pthread_mutex_unlock(&st->lock);
	if (r == 0) {
		im->n = 0;
		im->bytes = 0;
	}
out:
	pthread_mutex_unlock(&im->lock);
	free(d);
	return r;
}

void cas_import_end(struct cas_import *im)
{
	if (!im)
		return;
	pthread_mutex_lock(&im->st->lock);
	im->st->writers--;
	pthread_mutex_unlock(&im->st->lock);
	pthread_mutex_destroy(&im->lock);
	free(im->a);
	free(im);
}

int cas_records_add(struct cas_store *st, const void *const *recs,
		    const size_t *lens, size_t n)
{
	struct cas_import *im;
	int r = cas_import_begin(st, &im);

	if (r < 0)
		return r;
	r = cas_import_add(im, recs, lens, n);
	if (r == 0)
		r = cas_import_commit(im);
	cas_import_end(im);
	return r;
}
