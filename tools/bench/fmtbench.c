/* fmtbench: stored size and throughput of the chunk codecs on one file.
 *
 * Usage: fmtbench [--level L] [--chunk BYTES] [--as f32|bf16|f16]
 *                 [--convert bf16|f16|q8_0|q4_0] [--label TEXT]
 *                 (FILE | --synthetic BYTES)
 *
 * FILE holds raw little-endian values of the --as dtype, unless it is
 * float32 and --convert bf16|f16 asks for a round-to-nearest-even
 * conversion first (realistic bf16/fp16 data from real fp32 weights).
 * --synthetic draws values from N(0, 0.02), the usual initialisation scale.
 * q8_0 and q4_0 quantise fp32 values into llama.cpp's blocks, the data the
 * chooser should store raw or nearly so.
 * The data is cut into fixed chunks (the store's chunks average 64 KiB) and
 * each is encoded with plain zstd, byte grouping in three variants and the
 * chooser; every decode is checked against the input.  Prints one
 * markdown table row per codec: stored size as % of the original, encode
 * and decode MB/s per second of this thread's CPU time (best of three).
 */
#include "backend/store/bytegroup.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { F32, BF16, F16, Q8_0, Q4_0 };

/* CPU time of this thread: on a shared machine, wall time measures the
 * neighbours' load as much as the codec. */
static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint16_t f32_to_bf16(uint32_t x)
{
	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)(x >> 16 | 0x40);   /* quiet NaN */
	return (uint16_t)((x + 0x7fff + (x >> 16 & 1)) >> 16);
}

static uint16_t f32_to_f16(uint32_t x)
{
	uint32_t sign = x >> 16 & 0x8000, ax = x & 0x7fffffff, r;
	float a;

	if (ax >= 0x7f800000)
		return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0));
	if (ax >= 0x477ff000)
		return (uint16_t)(sign | 0x7c00);
	if (ax < 0x38800000) {
		/* Below the smallest normal half: a multiple of 2^-24. */
		memcpy(&a, &ax, 4);
		return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f));
	}
	r = ax - 0x38000000;                        /* rebias 127 -> 15 */
	r += 0xfff + (r >> 13 & 1);
	return (uint16_t)(sign | r >> 13);
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static float normal(uint64_t *s)
{
	double u1 = ((rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
	double u2 = (rng_next(s) >> 11) / 9007199254740992.0;

	return (float)(0.02 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

static uint8_t *load(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len) {
		*n = (size_t)len;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* fp32 values in, `to` values out, in place. */
static size_t convert(uint8_t *buf, size_t n, int to)
{
	size_t i, m = n / 4;

	if (to == F32)
		return n;
	for (i = 0; i < m; i++) {
		uint32_t x;
		uint16_t h;

		memcpy(&x, buf + 4 * i, 4);
		h = to == BF16 ? f32_to_bf16(x) : f32_to_f16(x);
		memcpy(buf + 2 * i, &h, 2);
	}
	return 2 * m;
}

/* fp32 values in, ggml Q8_0 or Q4_0 blocks out (32 values a block, an fp16
 * scale first), in place: the layout of llama.cpp's quantised tensors. */
static size_t quantize(uint8_t *buf, size_t n, int to)
{
	size_t b, nb = n / 4 / 32, out = 0;
	float x[32];
	int j;

	for (b = 0; b < nb; b++) {
		float amax = 0, vmax = 0, d;
		uint32_t bits;
		uint16_t h;

		memcpy(x, buf + 128 * b, sizeof(x));
		for (j = 0; j < 32; j++)
			if (fabsf(x[j]) > amax) {
				amax = fabsf(x[j]);
				vmax = x[j];
			}
		d = to == Q8_0 ? amax / 127 : vmax / -8;
		memcpy(&bits, &d, 4);
		h = f32_to_f16(bits);
		memcpy(buf + out, &h, 2);
		out += 2;
		for (j = 0; j < (to == Q8_0 ? 32 : 16); j++) {
			float id = d ? 1 / d : 0;

			if (to == Q8_0) {
				buf[out++] = (uint8_t)(int8_t)lrintf(x[j] * id);
			} else {
				int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);

				lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
				hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
				buf[out++] = (uint8_t)(lo | hi << 4);
			}
		}
	}
	return out;
}

struct variant {
	const char *name;
	int scheme;         /* -1: the chooser */
	struct bg_opts opts;
};

struct pass {
	struct bg_ctx ctx;
	const uint8_t *data;
	size_t n, chunk, cap;
	uint8_t *enc, *out;
	size_t *len;
	enum bg_scheme *sch;
	size_t stored;
	unsigned counts[4];
};

/* One timed pass over every chunk; returns seconds or a -errno. */
static double encode_pass(struct pass *p, const struct variant *v, unsigned width)
{
	double t0 = now();
	size_t off, k;

	p->stored = 0;
	memset(p->counts, 0, sizeof(p->counts));
	for (off = 0, k = 0; off < p->n; off += p->chunk, k++) {
		size_t c = p->n - off < p->chunk ? p->n - off : p->chunk;
		ssize_t r;

		if (v->scheme < 0) {
			r = bg_encode_best(&p->ctx, p->data + off, c, width, p->enc + k * p->cap,
					   p->cap, &p->sch[k]);
		} else {
			p->sch[k] = (enum bg_scheme)v->scheme;
			r = bg_encode(&p->ctx, p->sch[k], p->data + off, c, p->enc + k * p->cap,
				      p->cap);
		}
		if (r < 0)
			return (double)r;
		p->len[k] = (size_t)r;
		p->stored += (size_t)r;
		p->counts[p->sch[k]]++;
	}
	return now() - t0;
}

static double decode_pass(struct pass *p)
{
	double t0 = now();
	size_t off, k;
	int rc;

	for (off = 0, k = 0; off < p->n; off += p->chunk, k++) {
		size_t c = p->n - off < p->chunk ? p->n - off : p->chunk;

		rc = bg_decode(&p->ctx, p->sch[k], p->enc + k * p->cap, p->len[k], p->out + off, c);
		if (rc < 0)
			return rc;
	}
	return now() - t0;
}

/* Best of three passes each way: the machine is shared, and the first pass
 * also pays for faulting the buffers in. */
static int run(const char *label, const char *dtype, const uint8_t *data, size_t n,
	       size_t chunk, int level, unsigned width, const struct variant *v)
{
	struct pass p = { .data = data, .n = n, .chunk = chunk, .cap = bg_bound(chunk) };
	size_t nchunks = (n + chunk - 1) / chunk;
	double t_enc = 1e9, t_dec = 1e9, t;
	int rc = -ENOMEM, rep;

	p.enc = malloc(nchunks * p.cap);
	p.out = malloc(n ? n : 1);
	p.len = calloc(nchunks, sizeof(size_t));
	p.sch = calloc(nchunks, sizeof(*p.sch));
	if (!p.enc || !p.out || !p.len || !p.sch || bg_ctx_init(&p.ctx, level) < 0)
		goto out;
	p.ctx.opts = v->opts;
	if (getenv("BG_PLANE_LEVEL"))
		p.ctx.opts.plane_level = atoi(getenv("BG_PLANE_LEVEL"));
	if (getenv("BG_PLANE_SEGMENT"))
		p.ctx.opts.plane_segment = strtoull(getenv("BG_PLANE_SEGMENT"), NULL, 0);
	if (getenv("BG_PLANE_MINMATCH"))
		p.ctx.opts.plane_min_match = atoi(getenv("BG_PLANE_MINMATCH"));
	for (rep = 0; rep < 3; rep++) {
		t = encode_pass(&p, v, width);
		if (t < 0) {
			rc = (int)t;
			goto out;
		}
		t_enc = t < t_enc ? t : t_enc;
		t = decode_pass(&p);
		if (t < 0) {
			rc = (int)t;
			goto out;
		}
		t_dec = t < t_dec ? t : t_dec;
	}
	if (memcmp(p.out, data, n) != 0) {
		fprintf(stderr, "fmtbench: %s: round trip mismatch\n", v->name);
		rc = -EBADMSG;
		goto out;
	}
	printf("| %s | %s | %.1f MiB | %s | %.1f%% | %.0f | %.0f |", label, dtype,
	       n / 1048576.0, v->name, 100.0 * p.stored / n, n / t_enc / 1e6, n / t_dec / 1e6);
	if (v->scheme < 0)
		printf(" raw %u, zstd %u, grouped %u", p.counts[0], p.counts[1],
		       p.counts[2] + p.counts[3]);
	printf("\n");
	rc = 0;
out:
	bg_ctx_release(&p.ctx);
	free(p.enc);
	free(p.out);
	free(p.len);
	free(p.sch);
	return rc;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *label = NULL, *as = "f32", *conv = NULL;
	size_t chunk = 65536, n = 0, synth = 0, i;
	int level = 3, dtype, rc = 0;
	unsigned width;
	uint8_t *data;

	for (i = 1; i < (size_t)argc; i++) {
		if (!strcmp(argv[i], "--level") && i + 1 < (size_t)argc)
			level = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--chunk") && i + 1 < (size_t)argc)
			chunk = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--as") && i + 1 < (size_t)argc)
			as = argv[++i];
		else if (!strcmp(argv[i], "--convert") && i + 1 < (size_t)argc)
			conv = argv[++i];
		else if (!strcmp(argv[i], "--label") && i + 1 < (size_t)argc)
			label = argv[++i];
		else if (!strcmp(argv[i], "--synthetic") && i + 1 < (size_t)argc)
			synth = strtoull(argv[++i], NULL, 0);
		else if (argv[i][0] != '-')
			path = argv[i];
		else
			goto usage;
	}
	if ((!path && !synth) || chunk == 0)
		goto usage;
	if (conv && strcmp(as, "f32") != 0)
		goto usage;
	if (synth && !conv)
		conv = as;
	{
		const char *t = conv ? conv : as;

		dtype = !strcmp(t, "bf16") ? BF16 : !strcmp(t, "f16") ? F16 :
			!strcmp(t, "q8_0") ? Q8_0 : !strcmp(t, "q4_0") ? Q4_0 : F32;
	}
	if (synth) {
		uint64_t s = 0x9e3779b97f4a7c15ull;

		n = synth / 4 * 4;
		data = malloc(n ? n : 1);
		if (!data)
			return 1;
		for (i = 0; i < n / 4; i++) {
			float f = normal(&s);

			memcpy(data + 4 * i, &f, 4);
		}
		n = dtype >= Q8_0 ? quantize(data, n, dtype) : convert(data, n, dtype);
	} else {
		data = load(path, &n);
		if (!data) {
			perror(path);
			return 1;
		}
		if (conv)
			n = dtype >= Q8_0 ? quantize(data, n, dtype) : convert(data, n, dtype);
	}
	width = dtype == F32 ? 4 : dtype >= Q8_0 ? 0 : 2;
	{
		const struct variant variants[] = {
			{ "zstd", BG_SCHEME_ZSTD, { 0 } },
			{ "grouped", width == 2 ? BG_SCHEME_GROUP2 : BG_SCHEME_GROUP4, { 0 } },
			{ "grouped, no rotation", width == 2 ? BG_SCHEME_GROUP2 : BG_SCHEME_GROUP4,
			  { .no_rotate = 1 } },
			{ "grouped, joined frame", width == 2 ? BG_SCHEME_GROUP2 : BG_SCHEME_GROUP4,
			  { .joined = 1 } },
			{ "chooser", -1, { 0 } },
			{ "chooser, probe", -1, { .probe = 1 } },
		};
		const char *names[] = { "F32", "BF16", "F16", "Q8_0", "Q4_0" };

		for (i = 0; i < sizeof(variants) / sizeof(variants[0]) && rc == 0; i++) {
			/* Quantised blocks are not floats: grouping does not apply. */
			if (!width && variants[i].scheme > BG_SCHEME_ZSTD)
				continue;
			rc = run(label ? label : synth ? "synthetic N(0,0.02)" : path, names[dtype],
				 data, n, chunk, level, width, &variants[i]);
		}
	}
	free(data);
	if (rc < 0)
		fprintf(stderr, "fmtbench: %s\n", strerror(-rc));
	return rc < 0;
usage:
	fprintf(stderr, "usage: fmtbench [--level L] [--chunk BYTES] [--as f32|bf16|f16] "
			"[--convert bf16|f16|q8_0|q4_0] [--label TEXT] (FILE | --synthetic BYTES)\n");
	return 2;
}
