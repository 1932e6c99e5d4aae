/*
 * fetch.c - chunks that come from elsewhere: checking records received from
 * a registry and storing them as fetched chunks; reading single chunks and
 * records for the net/ tree and for pushes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store_i.h"

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
	pthread_mutex_unlock(&st->lock);
	if (r == 0 && buf) {
		if (cap < PACK_REC_LEN + (size_t)loc.clen)
			r = -ENOBUFS;
		else
			r = pack_read(st->packs, &loc, id, buf);
	}
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

int cas_records_add(struct cas_store *st, const void *const *recs,
		    const size_t *lens, size_t n)
{
	struct added *a = calloc(n ? n : 1, sizeof(*a));
	uint32_t *packs = NULL;
	int64_t *live = NULL;
	size_t na = 0, np = 0, i, k;
	int64_t now = store_now_ns();
	int r = 0;

	if (!a)
		return -ENOMEM;
	/* Counted as a writer: collection must not cut what is appended. */
	pthread_mutex_lock(&st->lock);
	st->writers++;
	pthread_mutex_unlock(&st->lock);
	/* Appends first, outside the catalog lock, as writers do. */
	for (i = 0; i < n; i++) {
		const uint8_t *p = recs[i];
		enum codec_scheme scheme;
		uint32_t ulen, clen;

		if (lens[i] < PACK_REC_LEN ||
		    pack_rec_parse(p, &a[na].id, &scheme, &ulen, &clen) < 0 ||
		    lens[i] != PACK_REC_LEN + (size_t)clen) {
			r = -EBADMSG;
			goto out;
		}
		r = cas_chunk_has(st, &a[na].id);
		if (r < 0)
			goto out;
		if (r == 1) {
			r = 0;
			continue;
		}
		r = pack_append(st->packs, &a[na].id, scheme, ulen,
				p + PACK_REC_LEN, clen, &a[na].loc);
		if (r < 0)
			goto out;
		na++;
	}
	if (na == 0)
		goto out;
	r = pack_set_sync(st->packs);
	if (r < 0)
		goto out;
	packs = calloc(na + 1, sizeof(*packs));
	live = calloc(na + 1, sizeof(*live));
	if (!packs || !live) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&st->lock);
	r = cat_begin(st->cat);
	for (i = 0; r == 0 && i < na; i++) {
		struct pack_loc old;

		r = cat_chunk_insert(st->cat, &a[i].id, &a[i].loc);
		if (r == -EEXIST) {
			/* Stored meanwhile, or a damaged copy: heal that. */
			r = 0;
			if (cat_damaged_has(st->cat, &a[i].id) != 1)
				continue;
			r = cat_chunk_get(st->cat, &a[i].id, &old, NULL);
			if (r == 0)
				r = cat_chunk_relocate(st->cat, &a[i].id, &a[i].loc);
			if (r == 0)
				r = cat_damaged_clear(st->cat, &a[i].id);
			for (k = 0; r == 0 && k < np && packs[k] != old.pack; k++)
				;
			if (r == 0 && k == np)
				packs[np++] = old.pack;
			if (r == 0)
				live[k] -= PACK_REC_LEN + old.clen;
		}
		if (r == 0)
			r = cat_fetched_add(st->cat, &a[i].id, now);
		for (k = 0; r == 0 && k < np && packs[k] != a[i].loc.pack; k++)
			;
		if (r == 0 && k == np)
			packs[np++] = a[i].loc.pack;
		if (r == 0)
			live[k] += PACK_REC_LEN + a[i].loc.clen;
	}
	for (k = 0; r == 0 && k < np; k++) {
		int64_t ps = pack_size(st->packs, packs[k]);

		r = ps < 0 ? (int)ps : cat_pack_update(st->cat, packs[k], ps, live[k]);
	}
	if (r == 0)
		r = cat_commit(st->cat);
	else
		cat_rollback(st->cat);
	pthread_mutex_unlock(&st->lock);
out:
	pthread_mutex_lock(&st->lock);
	st->writers--;
	pthread_mutex_unlock(&st->lock);
	free(packs);
	free(live);
	free(a);
	return r;
}
