/*
 * writer.c - a file's next content, streamed through the chunker.
 *
 * State machine:
 *
 *      open(truncate) / open(existing)
 *                |
 *                v
 *   +------- STREAM ------+   appends at the end: chunk, hash, hand new
 *   |  write elsewhere,   |   chunks to the pool (compress + append to a
 *   |  read, truncate to  |   pack) as the bytes arrive; large appends
 *   |  a middle point     |   are chunked after their answer (feed_job)
 *   v                     |
 *  STAGE  (a tmp/ file; chunked from the start at commit)
 *
 * commit() in either state waits for the pool, syncs the packs and swaps
 * the chunk list in one catalog transaction; commits that arrive together
 * share one sync and one transaction (commit_grouped()); a lazy commit (a
 * close) waits for neither sync, the flusher makes it durable (flush.c).
 * A STREAM writer can go on
 * appending after a commit: its short last chunk is re-cut, so the chunk
 * boundaries are those of a file written in one go.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/modelfmt.h"
#include "backend/store/store_i.h"

enum { W_STREAM, W_STAGE };

/*
 * A model file's header is held back (up to this much) until it parses, so
 * that chunks can be cut at tensor starts and encoded by tensor dtype.
 */
#define FMT_HEADER_MAX (64u << 20)

/*
 * Every tensor of at least this size starts a chunk, even one far below
 * the chunker's minimum: models of many small tensors (vision encoders:
 * 1,400 tensors of 15 KB) then renew only the tensors that changed, not
 * the 128 KiB chunk around each.  Tensors below it share the previous
 * tensor's chunk, so the catalog row and record header a chunk costs (about
 * 90 bytes) stay under 2.2% of the data.
 */
#define TENSOR_CUT_MIN 4096

enum { FMT_UNDECIDED, FMT_MODEL, FMT_NONE };

struct wchunk {
	struct cas_id id;
	uint32_t len;
};

/*
 * One copy of a large write's bytes, shared by the SHA job and by every
 * chunk cut where the bytes lie: the thread serving the write copies each
 * byte once instead of once for the hash and once for its chunk.  Freed
 * by the last of them.
 */
struct slab {
	unsigned refs;
	size_t len;
	struct slab *next; /* the writer's feed queue */
	uint8_t data[];
};

static struct slab *slab_new(const void *buf, size_t len)
{
	struct slab *s = malloc(sizeof(*s) + len);

	if (!s)
		return NULL;
	s->refs = 1;
	s->len = len;
	s->next = NULL;
	memcpy(s->data, buf, len);
	return s;
}

static void slab_ref(struct slab *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

static void slab_unref(struct slab *s)
{
	if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(s);
}

/* A chunk this writer stored and the catalog does not know yet. */
struct newchunk {
	struct cas_id id;
	struct pack_loc loc;
	const uint8_t *data; /* until the pool has encoded and appended it */
	struct slab *slab;   /* data lies in it, else data is the chunk's own */
	size_t len;
	unsigned width; /* float width of its tensor, for the codec */
	int heal;       /* replaces a stored copy found damaged */
	int inl;        /* to be committed inline (catalog.h) */
	uint8_t *enc;   /* inline: its encoded bytes, loc.clen of them */
	struct cas_writer *w;
};

struct cas_writer {
	struct cas_store *st;
	uint64_t ino;
	pthread_mutex_t lock; /* inflight and err, shared with the pool */
	pthread_cond_t idle;
	unsigned inflight;
	int err;

	/*
	 * Appends of FEED_MIN bytes or more are answered once copied into a
	 * slab and queued here; one feed job at a time (feeding) chunks them
	 * in order on the feed pool.  Every other entry point first waits
	 * for the queue to drain (settle()), so the chunker's state below is
	 * touched by one thread at a time.  Under lock.
	 */
	struct slab *fq_head, *fq_tail;
	unsigned fq_len;
	int feeding;
	pthread_cond_t fed;

	int mode;
	int dirty;
	struct wchunk *list;
	size_t n, cap;
	uint8_t *buf; /* bytes after the last cut: buf[bstart..bstart+blen) */
	struct slab *cur; /* the write being fed lies in it (or NULL) */
	size_t bstart, blen, bcap;
	uint64_t pos;
	uint64_t emitted; /* bytes in list: the file offset of buf[bstart] */
	int tail_open; /* list[n-1] ended at a commit, not at a cut */
	int inline_ok; /* a durable commit is cutting: a whole small file's
			* one chunk goes inline (catalog.h) */

	int fmt_state;       /* FMT_*: is this a model file we can read? */
	struct mf_info fmt;
	size_t fmt_need;     /* header bytes the parser asked for */
	uint64_t *starts;    /* tensor data starts, sorted */
	size_t nstarts, next_start;

	EVP_MD_CTX *sha;
	int sha_ok;       /* sha has seen (or has queued) every byte, in order */
	uint64_t sha_next, sha_seq; /* pool jobs update sha in submission order */
	pthread_cond_t sha_turn;
	int share_whole;  /* the content is exactly a shared copy of share_sha */
	uint8_t share_sha[32];

	struct newchunk **nc; /* uncommitted new chunks, and a hash set on them */
	size_t nnc, capnc;
	struct newchunk **set;
	size_t setcap;

	int fd; /* STAGE: the staging file */
	uint64_t stage_size;
	int dropped; /* the last commit replaced content: garbage to collect */
};

static size_t set_slot(const struct cas_id *id, size_t cap)
{
	uint64_t h;

	memcpy(&h, id->b, sizeof(h));
	return (size_t)h & (cap - 1);
}

static struct newchunk *set_find(struct cas_writer *w, const struct cas_id *id)
{
	size_t i;

	if (!w->setcap)
		return NULL;
	for (i = set_slot(id, w->setcap); w->set[i]; i = (i + 1) & (w->setcap - 1))
		if (cas_id_eq(&w->set[i]->id, id))
			return w->set[i];
	return NULL;
}

static int set_add(struct cas_writer *w, struct newchunk *nc)
{
	size_t i;

	if (2 * (w->nnc + 1) > w->setcap) {
		size_t cap = w->setcap ? 2 * w->setcap : 256, k;
		struct newchunk **set = calloc(cap, sizeof(*set));

		if (!set)
			return -ENOMEM;
		for (k = 0; k < w->nnc; k++) {
			for (i = set_slot(&w->nc[k]->id, cap); set[i]; i = (i + 1) & (cap - 1))
				;
			set[i] = w->nc[k];
		}
		free(w->set);
		w->set = set;
		w->setcap = cap;
	}
	if (w->nnc == w->capnc) {
		size_t cap = w->capnc ? 2 * w->capnc : 256;
		struct newchunk **v = realloc(w->nc, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		w->nc = v;
		w->capnc = cap;
	}
	w->nc[w->nnc++] = nc;
	for (i = set_slot(&nc->id, w->setcap); w->set[i]; i = (i + 1) & (w->setcap - 1))
		;
	w->set[i] = nc;
	return 0;
}

static void chunk_data_free(struct newchunk *nc)
{
	if (nc->slab)
		slab_unref(nc->slab);
	else
		free((void *)nc->data);
	nc->slab = NULL;
	nc->data = NULL;
}

static void set_clear(struct cas_writer *w)
{
	size_t i;

	for (i = 0; i < w->nnc; i++) {
		chunk_data_free(w->nc[i]);
		free(w->nc[i]->enc);
		free(w->nc[i]);
	}
	w->nnc = 0;
	if (w->set)
		memset(w->set, 0, w->setcap * sizeof(*w->set));
}

/*
 * Waits until the feed queue is chunked and, with jobs, until every pool
 * job of the writer's chunks and hash is done; the writer's first error.
 */
static int drain(struct cas_writer *w, int jobs)
{
	int r;

	pthread_mutex_lock(&w->lock);
	while (w->feeding)
		pthread_cond_wait(&w->fed, &w->lock);
	while (jobs && w->inflight)
		pthread_cond_wait(&w->idle, &w->lock);
	r = w->err;
	pthread_mutex_unlock(&w->lock);
	return r;
}

static int settle(struct cas_writer *w)
{
	return drain(w, 0);
}

static int wait_idle(struct cas_writer *w)
{
	return drain(w, 1);
}

/*
 * SHA-256 of a whole file is one sequential pass; it runs on the store's
 * one SHA thread, in the order the bytes arrived, so that the thread
 * serving writes only chunks and no compression worker waits its turn.
 */
struct sha_job {
	struct cas_writer *w;
	uint64_t seq;
	size_t len;
	const uint8_t *p;  /* data, or the slab's bytes */
	struct slab *slab;
	uint8_t data[];
};

static void sha_job(void *ctx, void *arg)
{
	struct sha_job *j = arg;
	struct cas_writer *w = j->w;

	(void)ctx;
	pthread_mutex_lock(&w->lock);
	while (w->sha_next != j->seq)
		pthread_cond_wait(&w->sha_turn, &w->lock);
	pthread_mutex_unlock(&w->lock);
	EVP_DigestUpdate(w->sha, j->p, j->len);
	pthread_mutex_lock(&w->lock);
	w->sha_next++;
	pthread_cond_broadcast(&w->sha_turn);
	if (--w->inflight == 0)
		pthread_cond_broadcast(&w->idle);
	pthread_mutex_unlock(&w->lock);
	slab_unref(j->slab);
	free(j);
}

/*
 * Bytes this few are hashed on the caller's thread when no job of the
 * writer's is queued (the order holds): handing a small file's one write
 * to the SHA thread and waiting for it cost more than the hash.
 */
#define INLINE_MAX (16u << 10)

static int sha_update(struct cas_writer *w, const void *buf, size_t len,
		      struct slab *slab)
{
	struct sha_job *j;
	int idle;

	if (!slab && len <= INLINE_MAX) {
		pthread_mutex_lock(&w->lock);
		idle = w->sha_next == w->sha_seq;
		pthread_mutex_unlock(&w->lock);
		/* Only this writer's caller submits: none can start meanwhile. */
		if (idle)
			return EVP_DigestUpdate(w->sha, buf, len) == 1 ? 0 : -ENOMEM;
	}
	j = malloc(sizeof(*j) + (slab ? 0 : len));
	if (!j)
		return -ENOMEM;
	j->w = w;
	j->len = len;
	j->slab = slab;
	j->p = slab ? slab->data : j->data;
	if (slab)
		slab_ref(slab);
	else
		memcpy(j->data, buf, len);
	pthread_mutex_lock(&w->lock);
	j->seq = w->sha_seq++;
	w->inflight++;
	pthread_mutex_unlock(&w->lock);
	return pool_submit(w->st->sha_pool, sha_job, j);
}

/* An inline chunk keeps its encoded bytes for the commit's transaction. */
static int keep_inline(struct newchunk *nc, enum codec_scheme scheme,
		       const uint8_t *enc, uint32_t clen)
{
	nc->enc = malloc(clen ? clen : 1);
	if (!nc->enc)
		return -ENOMEM;
	memcpy(nc->enc, enc, clen);
	nc->loc.pack = CAS_PACK_INLINE;
	nc->loc.off = 0;
	nc->loc.clen = clen;
	nc->loc.ulen = (uint32_t)nc->len;
	nc->loc.scheme = scheme;
	return 0;
}

static void store_job(void *ctx, void *arg)
{
	struct worker_ctx *wc = ctx;
	struct newchunk *nc = arg;
	struct cas_writer *w = nc->w;
	enum codec_scheme scheme;
	const void *out;
	int n, r = -ENOMEM;

	if (wc) {
		/* A raw chunk goes to its pack from where it lies, uncopied. */
		n = codec_encode_ref(wc->codec, nc->width, nc->data, nc->len, wc->out,
				     codec_bound(CDC_MAX), &scheme, &out);
		if (n >= 0 && nc->inl)
			r = store_append_room(w->st) < 0 ? -ENOSPC
							 : keep_inline(nc, scheme, out, (uint32_t)n);
		else
			r = n < 0 ? n
				  : store_append(w->st, &nc->id, scheme, (uint32_t)nc->len,
						 out, (uint32_t)n, &nc->loc);
	}
	chunk_data_free(nc);
	pthread_mutex_lock(&w->lock);
	if (r < 0 && !w->err)
		w->err = r;
	if (--w->inflight == 0)
		pthread_cond_broadcast(&w->idle);
	pthread_mutex_unlock(&w->lock);
}

static int list_push(struct cas_writer *w, const struct cas_id *id, uint32_t len)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 256;
		struct wchunk *v = realloc(w->list, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		w->list = v;
		w->cap = cap;
	}
	w->list[w->n].id = *id;
	w->list[w->n].len = len;
	w->n++;
	return 0;
}

/*
 * Records one chunk; stores it unless this writer or the catalog has it.
 * own: data is a copy of the chunk's own (malloc'd), taken or freed here.
 */
static int emit_owned(struct cas_writer *w, const uint8_t *data, size_t len, uint8_t *own)
{
	uint64_t at = w->emitted;
	int heal = 0;
	struct cas_store *st = w->st;
	struct newchunk *nc;
	struct pack_loc loc;
	struct cas_id id;
	int r;

	cas_id_of(data, len, &id);
	r = list_push(w, &id, (uint32_t)len);
	if (r == 0)
		w->emitted += len;
	if (r < 0 || set_find(w, &id)) {
		free(own);
		return r;
	}
	pthread_mutex_lock(&st->lock);
	r = cat_chunk_get(st->cat, &id, &loc, NULL);
	if (r == 0)
		heal = cat_damaged_has(st->cat, &id) == 1;
	pthread_mutex_unlock(&st->lock);
	if (r != -ENOENT && !heal) {
		free(own);
		return r;
	}
	nc = calloc(1, sizeof(*nc));
	if (!nc) {
		free(own);
		return -ENOMEM;
	}
	if (own) {
		nc->data = own;
	} else if (w->cur && (uintptr_t)data >= (uintptr_t)w->cur->data &&
		   (uintptr_t)data + len <= (uintptr_t)w->cur->data + w->cur->len) {
		slab_ref(w->cur);
		nc->slab = w->cur;
		nc->data = data;
	} else {
		uint8_t *copy = malloc(len);

		if (!copy) {
			free(nc);
			return -ENOMEM;
		}
		memcpy(copy, data, len);
		nc->data = copy;
	}
	nc->len = len;
	nc->id = id;
	nc->w = w;
	nc->heal = heal;
	/* The whole file is this one small chunk, cut by a durable commit. */
	nc->inl = w->inline_ok && at == 0 && len <= INLINE_MAX && w->n == 1;
	if (w->fmt_state == FMT_MODEL)
		nc->width = mf_dtype_group_width(mf_dtype_at(&w->fmt, at, at + len));
	r = set_add(w, nc);
	if (r < 0) {
		chunk_data_free(nc);
		free(nc);
		return r;
	}
	pthread_mutex_lock(&w->lock);
	w->inflight++;
	pthread_mutex_unlock(&w->lock);
	/* A small chunk (a small file, a tail) is stored on this thread: the
	 * hand-off to a worker and back would cost more than its encoding. */
	if (len <= INLINE_MAX) {
		struct worker_ctx *wc = store_tls(st);

		store_job(wc, nc);
		return 0;
	}
	return pool_submit(st->pool, store_job, nc);
}

static int emit(struct cas_writer *w, const uint8_t *data, size_t len)
{
	return emit_owned(w, data, len, NULL);
}

static void fmt_reset(struct cas_writer *w, int state)
{
	mf_info_release(&w->fmt);
	mf_info_init(&w->fmt);
	free(w->starts);
	w->starts = NULL;
	w->nstarts = w->next_start = 0;
	w->fmt_need = 0;
	w->fmt_state = state;
}

/*
 * Reads the file's header once the buffer holds it (the store sees a model
 * file from its first byte only).  -EAGAIN: hold the bytes, more header is
 * coming.
 */
static int decide_format(struct cas_writer *w, int eof)
{
	ssize_t n;
	int r;

	if (w->fmt_state != FMT_UNDECIDED)
		return 0;
	if (w->emitted != 0) {
		fmt_reset(w, FMT_NONE);
		return 0;
	}
	if (!eof && w->blen < w->fmt_need)
		return -EAGAIN;
	r = mf_parse(w->buf + w->bstart, w->blen, eof ? w->blen : MF_SIZE_UNKNOWN,
		     &w->fmt);
	if (r == -EAGAIN && !eof && w->fmt.need <= FMT_HEADER_MAX &&
	    w->fmt.need > w->blen) {
		w->fmt_need = w->fmt.need;
		return -EAGAIN;
	}
	if (r < 0 || !w->fmt.n_tensors) {
		fmt_reset(w, FMT_NONE);
		return 0;
	}
	/* Tiny tensors share the previous tensor's chunk. */
	n = mf_tensor_cuts(&w->fmt, TENSOR_CUT_MIN, &w->starts);
	if (n < 0) {
		fmt_reset(w, FMT_NONE);
		return 0;
	}
	w->nstarts = (size_t)n;
	w->fmt_state = FMT_MODEL;
	return 0;
}

/*
 * The next cut in the buffer: a content-defined boundary, or a tensor
 * start if that comes first, so that an unchanged tensor is the same
 * chunks in every version of a model however its offset moved.  0: none yet.
 */
static size_t cut_in2(struct cas_writer *w, const uint8_t *p, size_t plen,
		      const uint8_t *q, size_t qlen, int eof)
{
	size_t len = plen + qlen, limit = len;
	int force = eof;

	if (w->fmt_state == FMT_MODEL) {
		while (w->next_start < w->nstarts && w->starts[w->next_start] <= w->emitted)
			w->next_start++;
		if (w->next_start < w->nstarts &&
		    w->starts[w->next_start] - w->emitted <= len) {
			limit = (size_t)(w->starts[w->next_start] - w->emitted);
			force = 1;
		}
	}
	if (limit <= plen)
		return cdc_next(p, limit, force);
	return cdc_next2(p, plen, q, limit - plen, force);
}

static size_t cut_in(struct cas_writer *w, const uint8_t *p, size_t len, int eof)
{
	return cut_in2(w, p, len, p + len, 0, eof);
}

static size_t next_cut(struct cas_writer *w, int eof)
{
	return cut_in(w, w->buf + w->bstart, w->blen, eof);
}

/* Appends bytes to the chunker's buffer and emits every complete chunk. */
static int buffer_and_cut(struct cas_writer *w, const uint8_t *data, size_t len)
{
	size_t c;
	int r;

	if (w->bstart + w->blen + len > w->bcap) {
		if (w->blen)
			memmove(w->buf, w->buf + w->bstart, w->blen);
		w->bstart = 0;
		if (w->blen + len > w->bcap) {
			size_t cap = w->blen + len + CDC_MAX;
			uint8_t *b = realloc(w->buf, cap);

			if (!b)
				return -ENOMEM;
			w->buf = b;
			w->bcap = cap;
		}
	}
	memcpy(w->buf + w->bstart + w->blen, data, len);
	w->blen += len;
	if (decide_format(w, 0) == -EAGAIN)
		return 0;
	while ((c = next_cut(w, 0)) > 0) {
		r = emit(w, w->buf + w->bstart, c);
		if (r < 0)
			return r;
		w->bstart += c;
		w->blen -= c;
	}
	if (!w->blen)
		w->bstart = 0;
	return 0;
}

/*
 * Chunks arriving bytes.  Only the chunk that straddles two writes goes
 * through the buffer; the chunks after it are cut from the caller's bytes
 * where they lie, and the tail is buffered for the next write.
 */
static int feed(struct cas_writer *w, const uint8_t *data, size_t len)
{
	uint8_t *own;
	size_t take, c;
	int r;

	if (w->fmt_state == FMT_UNDECIDED)
		return buffer_and_cut(w, data, len);
	if (w->blen) {
		/*
		 * The chunk that straddles the buffer and this write is cut
		 * over the two as they lie and copied once, into its own
		 * bytes; with no cut in them yet, the write is buffered.
		 */
		c = cut_in2(w, w->buf + w->bstart, w->blen, data, len, 0);
		if (c == 0)
			return buffer_and_cut(w, data, len);
		if (c <= w->blen) {
			/* Not reached: a cut inside the buffer was made before. */
			r = emit(w, w->buf + w->bstart, c);
			w->bstart += c;
			w->blen -= c;
			return r < 0 ? r : feed(w, data, len);
		}
		take = c - w->blen;
		own = malloc(c);
		if (!own)
			return -ENOMEM;
		memcpy(own, w->buf + w->bstart, w->blen);
		memcpy(own + w->blen, data, take);
		r = emit_owned(w, own, c, own);
		if (r < 0)
			return r;
		/* What is left lies in data: forget the buffered copy. */
		data += take;
		len -= take;
		w->bstart = w->blen = 0;
	}
	while (len && (c = cut_in(w, data, len, 0)) > 0) {
		r = emit(w, data, c);
		if (r < 0)
			return r;
		data += c;
		len -= c;
	}
	return len ? buffer_and_cut(w, data, len) : 0;
}

/*
 * Appends this large are answered once copied into a slab (struct
 * cas_writer): `cp` reads its next block while the last is chunked and
 * hashed, on another core, where before each read waited for both.  The
 * chunks and the hash are those of the same bytes fed at once; an error
 * is returned by the next write, or the commit, like a worker's.
 */
#define FEED_MIN (64u << 10)
/* Slabs queued a writer: 4 MiB at FUSE's largest writes. */
#define FEED_QMAX 4u

/* Chunks a write's slab, and queues its hash. */
static int feed_slab(struct cas_writer *w, struct slab *s)
{
	int r;

	w->cur = s;
	r = feed(w, s->data, s->len);
	w->cur = NULL;
	/* Without memory for the job, the hash is recomputed at commit. */
	if (r == 0 && w->sha_ok && sha_update(w, s->data, s->len, s) < 0)
		w->sha_ok = 0;
	return r;
}

static void feed_job(void *ctx, void *arg);

/*
 * Chunks a writer's queue in order.  On a feeder (yield), after FEED_QMAX
 * slabs it goes to the back of the feed pool's queue, so that a writer
 * whose queue never runs dry (a user writing flat out) does not keep a
 * feeder from the rest.
 */
static void feed_run(struct cas_writer *w, int yield)
{
	unsigned done = 0;
	struct slab *s;
	int r;

	pthread_mutex_lock(&w->lock);
	while ((s = w->fq_head)) {
		if (done == FEED_QMAX && yield) {
			pool_requeue(w->st->feed_pool, feed_job, w);
			pthread_mutex_unlock(&w->lock);
			return;
		}
		r = w->err;
		pthread_mutex_unlock(&w->lock);
		if (r == 0)
			r = feed_slab(w, s);
		pthread_mutex_lock(&w->lock);
		w->fq_head = s->next;
		if (!w->fq_head)
			w->fq_tail = NULL;
		w->fq_len--;
		if (r < 0 && !w->err)
			w->err = r;
		pthread_cond_broadcast(&w->fed);
		pthread_mutex_unlock(&w->lock);
		slab_unref(s);
		done++;
		pthread_mutex_lock(&w->lock);
	}
	w->feeding = 0;
	pthread_cond_broadcast(&w->fed);
	pthread_mutex_unlock(&w->lock);
}

static void feed_job(void *ctx, void *arg)
{
	(void)ctx;
	feed_run(arg, 1);
}

/* Queues an append's slab for the feeder; 0, or the writer's error. */
static int feed_queue(struct cas_writer *w, struct slab *s)
{
	int start, r;

	pthread_mutex_lock(&w->lock);
	while (w->fq_len >= FEED_QMAX && !w->err)
		pthread_cond_wait(&w->fed, &w->lock);
	r = w->err;
	if (r == 0) {
		if (w->fq_tail)
			w->fq_tail->next = s;
		else
			w->fq_head = s;
		w->fq_tail = s;
		w->fq_len++;
	}
	start = r == 0 && !w->feeding;
	if (start)
		w->feeding = 1;
	pthread_mutex_unlock(&w->lock);
	if (r < 0) {
		slab_unref(s);
		return r;
	}
	if (start && pool_submit(w->st->feed_pool, feed_job, w) < 0)
		feed_run(w, 0); /* no feeder to be had: chunked here */
	return 0;
}

static int flush_tail(struct cas_writer *w)
{
	size_t c;
	int r = 0;

	decide_format(w, 1);
	while (r == 0 && w->blen) {
		c = next_cut(w, 1);
		r = emit(w, w->buf + w->bstart, c);
		w->bstart += c;
		w->blen -= c;
		w->tail_open = 1;
	}
	w->bstart = w->blen = 0;
	return r;
}

/* Loads list entry i's bytes (stored by this writer or in the catalog). */
static int load_entry(struct cas_writer *w, size_t i, uint8_t *out)
{
	struct worker_ctx *ctx = store_tls(w->st);
	struct newchunk *nc = set_find(w, &w->list[i].id);
	uint32_t len;
	int r;

	if (!ctx)
		return -ENOMEM;
	r = wait_idle(w);
	if (r < 0)
		return r;
	if (nc && nc->enc) {
		/* Inline and not committed yet: its bytes are here alone. */
		r = store_decode_payload(ctx, &nc->id, &nc->loc, nc->enc, ctx->out);
		len = nc->loc.ulen;
	} else {
		r = store_load_chunk(w->st, ctx, &w->list[i].id, nc ? &nc->loc : NULL,
				     ctx->out, &len);
	}
	if (r < 0)
		return r;
	if (len != w->list[i].len)
		return -EIO;
	memcpy(out, ctx->out, len);
	return 0;
}

static void sha_reset(struct cas_writer *w)
{
	EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL);
	w->sha_ok = 1;
	w->share_whole = 0;
}

int cas_writer_open(struct cas_store *st, uint64_t ino, int truncate,
		    struct cas_writer **ret)
{
	struct cas_writer *w;
	struct cas_file *f = NULL;
	size_t i;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->st = st;
	w->ino = ino;
	w->fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->idle, NULL);
	pthread_cond_init(&w->fed, NULL);
	pthread_cond_init(&w->sha_turn, NULL);
	mf_info_init(&w->fmt);
	w->sha = EVP_MD_CTX_new();
	if (!w->sha) {
		r = -ENOMEM;
		goto fail;
	}
	sha_reset(w);
	if (truncate) {
		w->dirty = 1;
	} else {
		r = cas_file_open(st, ino, &f);
		if (r < 0)
			goto fail;
		for (i = 0; i < cas_file_nchunks(f); i++) {
			struct cas_id id;
			uint32_t len;

			cas_file_chunk(f, i, &id, &len);
			r = list_push(w, &id, len);
			if (r < 0)
				goto fail;
		}
		w->pos = w->emitted = cas_file_size(f);
		w->tail_open = w->n > 0;
		w->sha_ok = w->pos == 0;
		cas_file_free(f);
		f = NULL;
	}
	pthread_mutex_lock(&st->lock);
	st->writers++;
	pthread_mutex_unlock(&st->lock);
	*ret = w;
	return 0;
fail:
	cas_file_free(f);
	EVP_MD_CTX_free(w->sha);
	free(w->list);
	free(w);
	return r;
}

void cas_writer_free(struct cas_writer *w)
{
	if (!w)
		return;
	wait_idle(w);
	set_clear(w);
	free(w->nc);
	free(w->set);
	free(w->list);
	free(w->buf);
	if (w->fd >= 0)
		close(w->fd);
	EVP_MD_CTX_free(w->sha);
	fmt_reset(w, FMT_NONE);
	pthread_mutex_lock(&w->st->lock);
	w->st->writers--;
	pthread_mutex_unlock(&w->st->lock);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->fed);
	pthread_cond_destroy(&w->sha_turn);
	free(w);
}

uint64_t cas_writer_size(const struct cas_writer *w)
{
	return w->mode == W_STAGE ? w->stage_size : w->pos;
}

int cas_writer_dirty(const struct cas_writer *w)
{
	return w->dirty;
}

int cas_writer_dropped(const struct cas_writer *w)
{
	return w->dropped;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf = (const uint8_t *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* STREAM -> STAGE: writes the content so far into a staging file. */
static int to_stage(struct cas_writer *w)
{
	uint8_t *tmp = NULL;
	uint64_t off = 0;
	size_t i;
	int r;

	if (w->mode == W_STAGE)
		return 0;
	r = wait_idle(w);
	if (r < 0)
		return r;
	w->fd = openat(w->st->tmpfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (w->fd < 0)
		return -errno;
	tmp = malloc(CDC_MAX);
	if (!tmp) {
		r = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < w->n; i++) {
		r = load_entry(w, i, tmp);
		if (r == 0)
			r = pwrite_all(w->fd, tmp, w->list[i].len, off);
		if (r < 0)
			goto fail;
		off += w->list[i].len;
	}
	r = pwrite_all(w->fd, w->buf + w->bstart, w->blen, off);
	if (r < 0)
		goto fail;
	free(tmp);
	w->stage_size = w->pos;
	w->mode = W_STAGE;
	w->n = 0;
	w->emitted = 0;
	w->bstart = w->blen = 0;
	w->tail_open = 0;
	return 0;
fail:
	free(tmp);
	close(w->fd);
	w->fd = -1;
	return r;
}

/* Puts the short last chunk back into the buffer to be re-cut. */
static int reopen_tail(struct cas_writer *w)
{
	uint32_t len;
	int r;

	w->tail_open = 0;
	if (!w->n || w->blen)
		return 0;
	len = w->list[w->n - 1].len;
	if (w->bcap < (size_t)len + CDC_MAX) {
		uint8_t *b = realloc(w->buf, (size_t)len + CDC_MAX);

		if (!b)
			return -ENOMEM;
		w->buf = b;
		w->bcap = (size_t)len + CDC_MAX;
	}
	r = load_entry(w, w->n - 1, w->buf);
	if (r < 0)
		return r;
	w->n--;
	w->emitted -= len;
	w->bstart = 0;
	w->blen = len;
	return 0;
}

int cas_writer_error(struct cas_writer *w)
{
	int r;

	pthread_mutex_lock(&w->lock);
	r = w->err;
	pthread_mutex_unlock(&w->lock);
	return r;
}

int cas_writer_write(struct cas_writer *w, const void *buf, size_t len,
		     uint64_t off)
{
	struct slab *slab;
	int r = cas_writer_error(w);

	if (r < 0)
		return r;
	if (len == 0)
		return 0;
	w->dirty = 1;
	w->share_whole = 0;
	if (w->mode == W_STREAM && off == w->pos && len >= FEED_MIN && !w->tail_open &&
	    (slab = slab_new(buf, len))) {
		r = feed_queue(w, slab);
		if (r == 0)
			w->pos += len;
		return r;
	}
	r = settle(w);
	if (r < 0)
		return r;
	if (w->mode == W_STREAM && off == w->pos) {
		if (w->tail_open) {
			r = reopen_tail(w);
			if (r < 0)
				return r;
		}
		/* A large write is copied once, for its chunks and the hash. */
		slab = w->sha_ok && len > INLINE_MAX ? slab_new(buf, len) : NULL;
		w->cur = slab;
		r = feed(w, slab ? slab->data : buf, len);
		w->cur = NULL;
		/* Without memory for the job, the hash is recomputed at commit. */
		if (r == 0 && w->sha_ok && sha_update(w, buf, len, slab) < 0)
			w->sha_ok = 0;
		slab_unref(slab);
		if (r < 0)
			return r;
		w->pos += len;
		return 0;
	}
	r = to_stage(w);
	if (r < 0)
		return r;
	r = pwrite_all(w->fd, buf, len, off);
	if (r < 0)
		return r;
	if (off + len > w->stage_size)
		w->stage_size = off + len;
	return 0;
}

ssize_t cas_writer_read(struct cas_writer *w, void *buf, size_t len,
			uint64_t off, struct cas_fault *fault)
{
	size_t done = 0;
	int r;

	r = to_stage(w);
	if (r < 0)
		return r;
	if (off >= w->stage_size)
		return 0;
	if (len > w->stage_size - off)
		len = (size_t)(w->stage_size - off);
	while (done < len) {
		ssize_t n = pread(w->fd, (uint8_t *)buf + done, len - done,
				  (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	(void)fault;
	return (ssize_t)done;
}

int cas_writer_truncate(struct cas_writer *w, uint64_t size)
{
	int r;

	if (size == cas_writer_size(w) && w->mode == W_STREAM)
		return 0;
	w->dirty = 1;
	w->share_whole = 0;
	if (w->mode == W_STREAM && size == 0) {
		r = wait_idle(w);
		if (r < 0)
			return r;
		w->n = 0;
		w->bstart = w->blen = 0;
		w->pos = w->emitted = 0;
		w->tail_open = 0;
		fmt_reset(w, FMT_UNDECIDED);
		sha_reset(w);
		return 0;
	}
	r = to_stage(w);
	if (r < 0)
		return r;
	if (ftruncate(w->fd, (off_t)size) < 0)
		return -errno;
	w->stage_size = size;
	return 0;
}

ssize_t cas_writer_share(struct cas_writer *w, struct cas_file *src,
			 uint64_t off_in, size_t len, uint64_t off_out)
{
	size_t i, n = cas_file_nchunks(src), first;
	uint64_t start = 0, shared = 0;
	int whole;
	int r = settle(w);

	if (r < 0)
		return r;
	if (w->mode != W_STREAM || off_out != w->pos || w->blen)
		return 0;
	for (i = 0; i < n && start < off_in; i++) {
		struct cas_id id;
		uint32_t clen;

		cas_file_chunk(src, i, &id, &clen);
		start += clen;
	}
	if (start != off_in)
		return 0;
	whole = w->pos == 0 && off_in == 0;
	first = i;
	for (; i < n; i++) {
		struct cas_id id;
		uint32_t clen;

		cas_file_chunk(src, i, &id, &clen);
		if (shared + clen > len)
			break;
		r = list_push(w, &id, clen);
		if (r < 0)
			return r;
		shared += clen;
	}
	if (i == first)
		return 0;
	w->dirty = 1;
	w->tail_open = 0;
	w->pos += shared;
	w->emitted += shared;
	if (w->fmt_state == FMT_UNDECIDED)
		fmt_reset(w, FMT_NONE);
	w->sha_ok = 0;
	w->share_whole = whole && i == n && cas_file_sha256(src, w->share_sha) == 0;
	return (ssize_t)shared;
}

int cas_writer_append(struct cas_writer *w, const struct cas_id *ids,
		      const uint32_t *lens, size_t n, const uint8_t sha[32])
{
	int whole = w->pos == 0;
	uint64_t added = 0;
	size_t i;
	int r = settle(w);

	if (r < 0)
		return r;
	if (w->mode != W_STREAM || w->blen)
		return -EAGAIN;
	for (i = 0; i < n; i++) {
		r = list_push(w, &ids[i], lens[i]);
		if (r < 0)
			return r;
		added += lens[i];
	}
	w->dirty = 1;
	w->tail_open = 0;
	w->pos += added;
	w->emitted += added;
	if (w->fmt_state == FMT_UNDECIDED)
		fmt_reset(w, FMT_NONE);
	w->sha_ok = 0;
	w->share_whole = whole && sha;
	if (sha)
		memcpy(w->share_sha, sha, 32);
	return 0;
}

void cas_writer_abort(struct cas_writer *w, int err)
{
	pthread_mutex_lock(&w->lock);
	if (!w->err)
		w->err = err;
	pthread_mutex_unlock(&w->lock);
}

/* SHA-256 of the content, by re-reading it when it was not hashed in order. */
static int content_sha(struct cas_writer *w, uint8_t out[32])
{
	uint8_t *tmp;
	size_t i;
	int r = 0;

	if (w->sha_ok) {
		EVP_MD_CTX *c = EVP_MD_CTX_new();

		if (!c || !EVP_MD_CTX_copy_ex(c, w->sha) ||
		    !EVP_DigestFinal_ex(c, out, NULL))
			r = -ENOMEM;
		EVP_MD_CTX_free(c);
		return r;
	}
	if (w->share_whole) {
		memcpy(out, w->share_sha, 32);
		return 0;
	}
	tmp = malloc(CDC_MAX);
	if (!tmp)
		return -ENOMEM;
	EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL);
	for (i = 0; r == 0 && i < w->n; i++) {
		r = load_entry(w, i, tmp);
		if (r == 0)
			EVP_DigestUpdate(w->sha, tmp, w->list[i].len);
	}
	free(tmp);
	if (r == 0) {
		w->sha_ok = 1;
		return content_sha(w, out);
	}
	return r;
}

/* STAGE: chunks the staging file from the start. */
static int chunk_stage(struct cas_writer *w)
{
	const size_t step = 1 << 20;
	uint8_t *tmp = malloc(step);
	uint64_t off = 0;
	int r = 0;

	if (!tmp)
		return -ENOMEM;
	w->n = 0;
	w->bstart = w->blen = 0;
	w->emitted = 0;
	fmt_reset(w, FMT_UNDECIDED);
	sha_reset(w);
	while (off < w->stage_size) {
		size_t want = w->stage_size - off < step ? (size_t)(w->stage_size - off) : step;
		ssize_t n = pread(w->fd, tmp, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		r = feed(w, tmp, (size_t)n);
		if (r < 0)
			break;
		EVP_DigestUpdate(w->sha, tmp, (size_t)n);
		off += (uint64_t)n;
	}
	free(tmp);
	if (r == 0)
		r = flush_tail(w);
	w->tail_open = 0;
	return r;
}

/*
 * The stored copy of this chunk was found damaged: point the chunk at the
 * good copy just written, for every file that uses it.  Lock held, in the
 * commit's transaction.
 */
static int heal_chunk(struct cas_store *st, const struct newchunk *nc,
		      struct pack_delta **d, size_t *nd)
{
	struct pack_loc old;
	int r;

	r = cat_chunk_get(st->cat, &nc->id, &old, NULL);
	if (r == 0)
		r = cat_chunk_relocate(st->cat, &nc->id, &nc->loc);
	if (r == 0 && old.pack == CAS_PACK_INLINE && !nc->enc)
		r = cat_inline_delete(st->cat, &nc->id);
	if (r == 0)
		r = store_delta_add(d, nd, old.pack, -(int64_t)(PACK_REC_LEN + old.clen));
	if (r == 0)
		r = store_delta_add(d, nd, nc->loc.pack, PACK_REC_LEN + nc->loc.clen);
	if (r == 0)
		r = cat_damaged_clear(st->cat, &nc->id);
	return r;
}

/*
 * One writer's part of a group's transaction: new chunk rows, a reference
 * for each chunk of the new list, one dropped for each of the old, the new
 * list and SHA-256.  Its pack deltas go to *d only when it succeeds.  Lock
 * held, inside the group's transaction and the writer's savepoint.
 */
static int commit_member(struct cas_writer *w, const uint8_t *blob, size_t len,
			 uint64_t size, const uint8_t sha[32], struct pack_delta **d,
			 size_t *nd)
{
	struct cas_store *st = w->st;
	size_t i;
	void *old = NULL;
	size_t oldlen = 0;
	uint8_t oldsha[32], digest[32];
	int has, r = 0, fresh = size >= KNOWN_LIST_MIN;

	for (i = 0; r == 0 && i < w->nnc; i++) {
		struct newchunk *nc = w->nc[i];

		r = cat_chunk_insert(st->cat, &nc->id, &nc->loc);
		if (r == -EEXIST && nc->heal) {
			r = heal_chunk(st, nc, d, nd);
			if (r == 0 && nc->enc)
				r = cat_inline_put(st->cat, &nc->id, nc->enc, nc->loc.clen);
			continue;
		}
		if (r == -EEXIST) {
			/* Another writer committed the same chunk first. */
			r = 0;
			fresh = 0;
			continue;
		}
		if (r == 0 && nc->enc)
			r = cat_inline_put(st->cat, &nc->id, nc->enc, nc->loc.clen);
		if (r == 0)
			r = store_delta_add(d, nd, nc->loc.pack, PACK_REC_LEN + nc->loc.clen);
	}
	for (i = 0; r == 0 && i < w->n; i++) {
		r = cat_chunk_addref(st->cat, &w->list[i].id, 1);
		if (r == -ENOENT)
			r = -EIO;
		if (fresh && !set_find(w, &w->list[i].id))
			fresh = 0; /* stored before: its bytes are not ours */
	}
	if (r == 0)
		r = cat_get_content(st->cat, w->ino, &old, &oldlen, oldsha, &has);
	if (r == 0)
		w->dropped = oldlen > 0;
	if (r == 0)
		r = store_deref_blob(st, old, oldlen);
	if (r == 0)
		r = cat_set_content(st->cat, w->ino, blob, len, size, sha, store_now_ns());
	/* Every chunk stored by this commit: the list is confirmed (store_i.h). */
	if (r == 0 && fresh && store_list_digest(sha, blob, len, digest) == 0)
		r = cat_verified_add(st->cat, digest);
	free(old);
	return r;
}

/*
 * A commit waiting for its group.  Commits that arrive while a group runs
 * queue up; when it ends, one of them leads the next group for all that
 * queued.  So under concurrent closes each pays a share of one pack sync
 * and of one catalog commit (one WAL fsync), and none returns before both
 * covered its own chunks and list: a group member's promise is a lone
 * commit's.
 */
struct commit_req {
	struct cas_writer *w;
	const uint8_t *blob;
	size_t len;
	uint64_t size;
	const uint8_t *sha;
	int lazy; /* a close: neither sync is waited for (flush.c) */
	int r, done;
	struct commit_req *next;
};

/* store_txn_end() for a transaction cat_begin_unsynced() began. */
static int txn_end_unsynced(struct cas_store *st, int r, const struct pack_delta *d,
			    size_t nd)
{
	if (r == 0)
		r = store_deltas_apply(st, d, nd);
	r = cat_end_unsynced(st->cat, r);
	if (r == 0)
		store_deltas_committed(st, d, nd);
	return r;
}

/*
 * Leader: the pack sync covers every member's records (each waited for
 * its pool jobs before it queued), then one transaction, a savepoint per
 * member: a member that fails (a chunk gone, -EIO) is undone alone and
 * gets its error; a transaction that fails (a full disk) fails them all.
 */
static void run_group(struct cas_store *st, struct commit_req *g)
{
	struct pack_delta *d = NULL, *md = NULL;
	size_t nd = 0, nmd, i;
	struct commit_req *q;
	int r = 0, ok = 0, lazy = 1, packed = 0, inl = 0;

	/* One member that must be durable makes the whole group so. */
	for (q = g; q; q = q->next) {
		lazy &= q->lazy;
		for (i = 0; i < q->w->nnc; i++) {
			packed |= !q->w->nc[i]->enc;
			inl |= q->w->nc[i]->enc != NULL;
		}
	}
	/*
	 * The packs need no sync when no member appended to them and every
	 * committed chunk is durable already: with every close synced
	 * (close_sync), a committed row's record was synced before its
	 * commit, and a previous process's lazy tail was synced at open.
	 * Inline chunks are in the transaction itself: a small file's
	 * durable close pays the WAL's sync alone.
	 */
	if (!lazy && (packed || !st->close_sync))
		r = pack_set_sync(st->packs);
	/* The mark covers what is synced before any commit names it. */
	if (!lazy && r == 0)
		store_synced(st);
	pthread_mutex_lock(&st->lock);
	if (r == 0)
		r = lazy ? cat_begin_unsynced(st->cat) : cat_begin(st->cat);
	for (q = g; r == 0 && q; q = q->next) {
		int m = cat_savepoint(st->cat);

		nmd = 0;
		if (m == 0)
			m = commit_member(q->w, q->blob, q->len, q->size, q->sha, &md, &nmd);
		if (m < 0 && m != -ENOSPC && m != -ENOMEM &&
		    cat_savepoint_end(st->cat, 1) == 0) {
			q->r = m;
			continue;
		}
		if (m == 0)
			m = cat_savepoint_end(st->cat, 0);
		for (i = 0; m == 0 && i < nmd; i++)
			m = store_delta_add(&d, &nd, md[i].pack, md[i].live);
		/* What the whole transaction lacks (room, memory, an undo that
		 * failed) fails the group. */
		r = m;
		ok += m == 0;
	}
	/* The current pack's length is recorded when a member appended to
	 * it: a group of inline chunks alone leaves the packs row as it was
	 * (one statement and one WAL page less a small file). */
	if (r == 0 && ok && packed)
		r = store_delta_add(&d, &nd, pack_current(st->packs), 0);
	if (r == 0 && !ok)
		lazy ? cat_end_unsynced(st->cat, -ECANCELED) : cat_rollback(st->cat);
	else if (lazy)
		r = txn_end_unsynced(st, r, d, nd);
	else
		r = store_txn_end(st, r, d, nd);
	pthread_mutex_unlock(&st->lock);
	if (r == 0 && ok)
		lazy ? store_lazy_note(st) : store_synced(st);
	if (r == 0 && ok && inl)
		store_inline_note(st);
	for (q = g; q; q = q->next)
		if (r < 0 || !q->r)
			q->r = r;
	free(md);
	free(d);
}

static int commit_grouped(struct cas_writer *w, const uint8_t *blob, size_t len,
			  uint64_t size, const uint8_t sha[32], int lazy)
{
	struct commit_group *cg = &w->st->cg;
	struct commit_req req = { w, blob, len, size, sha, lazy, 0, 0, NULL }, *g, *q;

	pthread_mutex_lock(&cg->lock);
	*cg->tail = &req;
	cg->tail = &req.next;
	while (!req.done) {
		if (cg->running) {
			pthread_cond_wait(&cg->cond, &cg->lock);
			continue;
		}
		g = cg->queue;
		cg->queue = NULL;
		cg->tail = &cg->queue;
		cg->running = 1;
		pthread_mutex_unlock(&cg->lock);
		run_group(w->st, g);
		pthread_mutex_lock(&cg->lock);
		for (q = g; q; q = q->next)
			q->done = 1;
		cg->running = 0;
		pthread_cond_broadcast(&cg->cond);
	}
	pthread_mutex_unlock(&cg->lock);
	return req.r;
}

static int commit(struct cas_writer *w, int lazy)
{
	uint8_t sha[32], *blob = NULL;
	uint64_t size;
	size_t i;
	int r = settle(w), idle;

	/*
	 * Even when it fails, a commit returns only once no job of the writer
	 * runs: a failed close() leaves nothing appending behind it (on a
	 * full disk, into the room a delete just freed from the reserve).
	 */
	if (r < 0) {
		wait_idle(w);
		return r;
	}
	if (!w->dirty)
		return 0;
	w->inline_ok = !lazy;
	r = w->mode == W_STAGE ? chunk_stage(w) : flush_tail(w);
	w->inline_ok = 0;
	idle = wait_idle(w);
	if (r == 0)
		r = idle;
	if (r == 0)
		r = content_sha(w, sha);
	if (r < 0)
		return r;
	blob = malloc(w->n * CHUNK_ENTRY_LEN + 1);
	if (!blob)
		return -ENOMEM;
	size = 0;
	for (i = 0; i < w->n; i++) {
		entry_put(blob + i * CHUNK_ENTRY_LEN, &w->list[i].id, w->list[i].len);
		size += w->list[i].len;
	}
	r = commit_grouped(w, blob, w->n * CHUNK_ENTRY_LEN, size, sha, lazy);
	free(blob);
	if (r < 0)
		return r;
	set_clear(w);
	w->dirty = 0;
	return 0;
}

int cas_writer_commit(struct cas_writer *w)
{
	return commit(w, 0);
}

int cas_writer_commit_lazy(struct cas_writer *w)
{
	return commit(w, !w->st->close_sync);
}
