/*
 * The frame of weights and pseudo-gradients (scheduler/mining_wire.h): fp32 round trips
 * exactly, int8 within half a step of its block's scale; every malformed frame (garbage, a
 * truncated one, trailing bytes, a wrong shape, an unknown encoding or block, a value or scale
 * that is not finite, an int8 -128) is refused with its reason and leaves the output alone.
 * A packed frame (byte planes and zstd) decodes to exactly what its plain frame does, is
 * smaller for pseudo-gradient-like values, and a corrupt, truncated or oversized one is
 * refused the same way; one that would not shrink is sent plain.
 * And gpu_train_window(): the same window twice gives the same weights bit for bit (what the
 * ledger's replay needs), another seed other ones.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gpu/data.h"
#include "gpu/train.h"
#include "scheduler/mining_job.h"
#include "scheduler/mining_wire.h"
#include "tests/check.h"

#define N 1000

static void test_fp32(const float *v)
{
	void *f = NULL;
	size_t len = 0;
	float out[N];
	enum mining_enc enc = 0;
	char err[128];

	CHECK_RC(mining_wire_encode(MINING_ENC_FP32, 0, v, N, &f, &len), 0);
	CHECK_EQ(len, MINING_WIRE_HEADER + 4 * N);
	CHECK_RC(mining_wire_decode(f, len, N, out, &enc, err, sizeof(err)), 0);
	CHECK_EQ(enc, MINING_ENC_FP32);
	CHECK(!memcmp(out, v, sizeof(out)));
	free(f);
}

static void test_int8(const float *v)
{
	void *f = NULL;
	size_t len = 0;
	float out[N];
	char err[128];
	unsigned block = 64;

	CHECK_RC(mining_wire_encode(MINING_ENC_INT8, block, v, N, &f, &len), 0);
	CHECK_EQ(len, MINING_WIRE_HEADER + (N + block - 1) / block * 4 + N);
	/* about 4x fewer bytes than fp32 */
	CHECK(len * 3 < MINING_WIRE_HEADER + 4 * N);
	CHECK_RC(mining_wire_decode(f, len, N, out, NULL, err, sizeof(err)), 0);
	for (size_t b = 0; b < N; b += block) {
		float mx = 0;

		for (size_t i = b; i < b + block && i < N; i++)
			mx = fmaxf(mx, fabsf(v[i]));
		for (size_t i = b; i < b + block && i < N; i++)
			CHECK_MSG(fabsf(out[i] - v[i]) <= mx / 127 * 0.5001f, "element %zu: %g vs %g",
				  i, out[i], v[i]);
	}
	free(f);
}

/* A malformed frame: refused, naming why, output untouched. */
static void refused(const void *f, size_t len, size_t n, const char *why)
{
	float out[N + 1];
	char err[256] = "";

	for (size_t i = 0; i <= N; i++)
		out[i] = 42.0f;
	CHECK_RC(mining_wire_decode(f, len, n, out, NULL, err, sizeof(err)), -EBADMSG);
	CHECK_MSG(strstr(err, why) != NULL, "wanted \"%s\" in \"%s\"", why, err);
	for (size_t i = 0; i <= N; i++)
		if (out[i] != 42.0f) {
			CHECK_MSG(0, "output changed at %zu (%s)", i, why);
			break;
		}
}

static void test_malformed(const float *v)
{
	unsigned char *f = NULL, *g;
	size_t len = 0;
	float nan = NAN;

	CHECK_RC(mining_wire_encode(MINING_ENC_FP32, 0, v, N, (void **)&f, &len), 0);
	g = malloc(len + 8);
	REQUIRE(g);
	refused("hello", 5, N, "truncated");
	memset(g, 0x5a, len);
	refused(g, len, N, "magic");
	refused(f, len - 1, N, "truncated");
	memcpy(g, f, len);
	memset(g + len, 0, 8);
	refused(g, len + 4, N, "trailing bytes");
	refused(f, len, N + 1, "wrong shape");
	memcpy(g, f, len);
	g[8] = 7;
	refused(g, len, N, "unknown encoding");
	memcpy(g, f, len);
	memcpy(g + MINING_WIRE_HEADER + 4 * 17, &nan, 4);
	refused(g, len, N, "element 17 is not finite");
	free(f);
	CHECK_RC(mining_wire_encode(MINING_ENC_INT8, 100, v, N, (void **)&f, &len), 0);
	memcpy(g, f, len);
	g[12] = 0, g[13] = 0, g[14] = 0, g[15] = 0;
	refused(g, len, N, "block 0 out of range");
	memcpy(g, f, len);
	memcpy(g + MINING_WIRE_HEADER + 4 * 3, &nan, 4);
	refused(g, len, N, "scale of block 3");
	memcpy(g, f, len);
	g[MINING_WIRE_HEADER + 4 * 10 + 5] = 0x80;
	refused(g, len, N, "element 5 is -128");
	free(f);
	free(g);
}

/* Packing is lossless, smaller for values of like magnitudes, and checked. */
static void test_packed(const float *v)
{
	static const enum mining_enc encs[] = { MINING_ENC_FP32, MINING_ENC_INT8 };
	unsigned char *f = NULL, *p = NULL, *g, *plain = NULL;
	size_t len = 0, plen = 0, ulen = 0;
	float a[N], b[N], w[N];
	char err[256];
	uint64_t s = 7;

	/* what a pseudo-gradient looks like: values of one scale, their exponents close */
	for (int i = 0; i < N; i++)
		w[i] = (gpu_rng_uniform(&s) - 0.5f) * 1e-3f;
	for (int e = 0; e < 2; e++) {
		CHECK_RC(mining_wire_encode(encs[e], 64, w, N, (void **)&f, &len), 0);
		CHECK_RC(mining_wire_pack(f, len, (void **)&p, &plen), 0);
		/* fp32 shrinks (the exponents' plane); int8 values of full range may not */
		CHECK_MSG(encs[e] == MINING_ENC_FP32 ? plen < len : plen <= len,
			  "%s: packed %zu, plain %zu", mining_enc_name(encs[e]), plen, len);
		CHECK(!memcmp(p, plen < len ? MINING_WIRE_PACKED_MAGIC : MINING_WIRE_MAGIC, 8));
		CHECK_RC(mining_wire_decode(f, len, N, a, NULL, err, sizeof(err)), 0);
		CHECK_RC(mining_wire_decode(p, plen, N, b, NULL, err, sizeof(err)), 0);
		CHECK(!memcmp(a, b, sizeof(a)));
		CHECK_RC(mining_wire_unpack(p, plen, N, (void **)&plain, &ulen, err, sizeof(err)), 0);
		CHECK(ulen == len && !memcmp(plain, f, len));
		free(plain);
		if (plen < len) {
			g = malloc(plen);
			REQUIRE(g);
			refused(p, plen - 1, N, "packed: its data does not decode");
			refused(p, 20, N, "truncated");
			memcpy(g, p, plen);
			g[8] = 0xff, g[9] = 0xff, g[10] = 0xff, g[11] = 0x7f;
			refused(g, plen, N, "at most");
			memcpy(g, p, plen);
			g[MINING_WIRE_PACKED_HEADER + MINING_WIRE_HEADER] = 9;
			refused(g, plen, N, "unknown scheme");
			/* the plain frame inside is checked as any other */
			refused(p, plen, N + 1, "wrong shape");
			free(g);
		}
		free(p);
		free(f);
	}
	/* noise in every bit does not shrink: sent plain */
	{
		uint32_t raw[N];

		for (int i = 0; i < N; i++) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64: every bit random */
			raw[i] = (uint32_t)s;
			if ((raw[i] >> 23 & 0xff) == 0xff)
				raw[i] ^= 1u << 23;               /* finite */
		}
		CHECK_RC(mining_wire_encode(MINING_ENC_FP32, 0, (const float *)raw, N, (void **)&f,
					    &len), 0);
		CHECK_RC(mining_wire_pack(f, len, (void **)&p, &plen), 0);
		CHECK(plen == len && !memcmp(p, f, len));
		free(p);
		free(f);
	}
	(void)v;
}

/* A window is a pure function of its inputs. */
static void test_window(void)
{
	struct gpu_train_opts o;
	struct gpu_model *m = NULL;
	struct gpu_data d = { 0 };
	uint16_t *tok = malloc(20000 * sizeof(*tok));
	float *w0, *a, *b, *c;
	char err[256];
	double loss = 0;
	size_t n;
	uint64_t s = 7;

	REQUIRE(tok);
	for (int i = 0; i < 20000; i++)
		tok[i] = (uint16_t)("the quick brown fox jumps over the lazy dog "[i % 44] +
				    (gpu_rng_next(&s) % 3 == 0));
	d.tokens = tok;
	d.n_tokens = d.n_train = 20000;
	d.vocab_size = 256;
	gpu_train_opts_init(&o);
	REQUIRE(gpu_train_opts_parse(&o, "data=x layers=1 heads=2 embd=16 seq=16 batch=2 steps=40",
				     strlen("data=x layers=1 heads=2 embd=16 seq=16 batch=2 steps=40"),
				     err, sizeof(err)) == 0);
	REQUIRE(gpu_train_opts_finish(&o, err, sizeof(err)) == 0);
	REQUIRE(gpu_model_new(&m, &o.cfg, &o.opts) == 0);
	n = gpu_model_num_params(m);
	w0 = malloc(n * 4), a = malloc(n * 4), b = malloc(n * 4), c = malloc(n * 4);
	REQUIRE(w0 && a && b && c);
	CHECK_RC(gpu_model_read(m, GPU_BUF_PARAMS, w0), 0);
	CHECK_RC(gpu_train_window(m, &d, &o, mining_window_seed(3, 2, 1), 10, 10, &loss), 0);
	CHECK(isfinite(loss) && loss > 0);
	CHECK_RC(gpu_model_read(m, GPU_BUF_PARAMS, a), 0);
	/* the second run starts from the same weights but a used optimizer: the window resets it */
	CHECK_RC(gpu_model_write(m, GPU_BUF_PARAMS, w0), 0);
	CHECK_RC(gpu_train_window(m, &d, &o, mining_window_seed(3, 2, 1), 10, 10, NULL), 0);
	CHECK_RC(gpu_model_read(m, GPU_BUF_PARAMS, b), 0);
	CHECK(!memcmp(a, b, n * 4));
	CHECK(memcmp(a, w0, n * 4));
	CHECK_RC(gpu_model_write(m, GPU_BUF_PARAMS, w0), 0);
	CHECK_RC(gpu_train_window(m, &d, &o, mining_window_seed(3, 2, 0), 10, 10, NULL), 0);
	CHECK_RC(gpu_model_read(m, GPU_BUF_PARAMS, c), 0);
	CHECK(memcmp(a, c, n * 4));
	CHECK(mining_window_seed(3, 2, 1) != mining_window_seed(3, 1, 2));
	gpu_model_free(m);
	gpu_train_opts_release(&o);
	free(w0), free(a), free(b), free(c), free(tok);
}

int main(void)
{
	float v[N];
	uint64_t s = 1;

	for (int i = 0; i < N; i++)
		v[i] = (gpu_rng_uniform(&s) - 0.5f) * (i % 100 == 0 ? 10.0f : 0.01f);
	v[5] = 0;
	test_fp32(v);
	test_int8(v);
	test_malformed(v);
	test_packed(v);
	test_window();
	return check_status();
}
