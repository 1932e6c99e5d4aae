/*
 * smallmodel.h - two versions of a safetensors model made of many small
 * tensors, as vision encoders ship: about 1,400 tensors averaging 15 KB,
 * BF16, F16 and F32 mixed.  Version 2 gives new values to 13% of the
 * tensors (a spread-out choice) and grows the JSON header by 8 KiB, so
 * every tensor moves.  Header-only; used by the store's unit test of
 * small-tensor deduplication and by tools/bench/gen-weights.c (the same
 * bytes in the benchmark).  Deterministic: the same arguments give the
 * same bytes.  Allocation failure aborts (test and benchmark code only).
 */
#ifndef LLMFS_SMALLMODEL_H
#define LLMFS_SMALLMODEL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SM_TENSORS 1400
#define SM_CHANGED_PERMILLE 130

static inline uint64_t sm_mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline float sm_normal(uint64_t *s)
{
	double u1 = ((sm_mix(s) >> 11) + 1.0) / 9007199254740993.0;
	double u2 = (sm_mix(s) >> 11) / 9007199254740992.0;

	return (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

/* Tensor i: its dtype (0 BF16, 1 F16, 2 F32) and its element count. */
static inline int sm_dtype(size_t i)
{
	size_t k = i * 2654435761u % 10;

	return k < 6 ? 0 : k < 8 ? 1 : 2;
}

static inline size_t sm_width(int dtype)
{
	return dtype == 2 ? 4 : 2;
}

static inline size_t sm_elems(size_t i)
{
	uint64_t s = i * 7 + 1;
	/* 2 KB to 28 KB of data, about 15 KB on average. */
	size_t bytes = 2048 + (size_t)(sm_mix(&s) % 26624);

	return bytes / sm_width(sm_dtype(i));
}

static inline int sm_changed(size_t i)
{
	uint64_t s = i * 31 + 5;

	return sm_mix(&s) % 1000 < SM_CHANGED_PERMILLE;
}

static inline void sm_fill(uint8_t *p, size_t i, int dtype, size_t n, uint64_t seed)
{
	/* Layer norms sit near 1, weights near 0 with a spread of 0.02. */
	float mean = i % 9 == 4 ? 1.0f : 0.0f, sd = i % 9 == 4 ? 0.05f : 0.02f;
	size_t k;

	for (k = 0; k < n; k++) {
		float f = mean + sd * sm_normal(&seed);
		uint32_t x;
		uint16_t h;

		memcpy(&x, &f, 4);
		if (dtype == 2) {
			memcpy(p + 4 * k, &x, 4);
			continue;
		}
		if (dtype == 0) {
			h = (uint16_t)((x + 0x7fff + (x >> 16 & 1)) >> 16);
		} else {
			/* f is small and normal: an fp16 with the mantissa's top 10 bits. */
			int e = (int)(x >> 23 & 0xff) - 127 + 15;

			h = (uint16_t)((x >> 16 & 0x8000) |
				       (e <= 0 ? 0 : e >= 31 ? 0x7c00 : (uint32_t)e << 10 |
						   (x >> 13 & 0x3ff)));
		}
		memcpy(p + 2 * k, &h, 2);
	}
}

/* Builds version 1 or 2 into a malloc()ed buffer; returns its length. */
static inline size_t sm_build(int version, uint8_t **ret)
{
	static const char *const dt[] = { "BF16", "F16", "F32" };
	size_t cap = 256 + SM_TENSORS * 120 + 8192 + 64, hlen = 0, off = 0, i, total, data;
	char *json = malloc(cap);
	uint8_t *out;

	if (!json)
		abort();
	hlen += (size_t)snprintf(json + hlen, cap - hlen,
				 "{\"__metadata__\":{\"format\":\"pt\",\"notes\":\"");
	if (version == 2) {
		memset(json + hlen, 'v', 8192);
		hlen += 8192;
	}
	hlen += (size_t)snprintf(json + hlen, cap - hlen, "\"}");
	for (i = 0; i < SM_TENSORS; i++) {
		size_t b = sm_elems(i) * sm_width(sm_dtype(i));

		hlen += (size_t)snprintf(json + hlen, cap - hlen,
					 ",\"vision.blocks.%zu.w%zu\":{\"dtype\":\"%s\","
					 "\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}",
					 i / 8, i % 8, dt[sm_dtype(i)], sm_elems(i), off, off + b);
		off += b;
	}
	hlen += (size_t)snprintf(json + hlen, cap - hlen, "}");
	/* The header is padded with spaces to 8 bytes, as the reference writer does. */
	while (hlen % 8)
		json[hlen++] = ' ';
	data = off;
	total = 8 + hlen + data;
	out = malloc(total);
	if (!out)
		abort();
	for (i = 0; i < 8; i++)
		out[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
	memcpy(out + 8, json, hlen);
	free(json);
	off = 8 + hlen;
	for (i = 0; i < SM_TENSORS; i++) {
		size_t n = sm_elems(i);
		uint64_t seed = i * 1000003 + (version == 2 && sm_changed(i) ? 77 : 0);

		sm_fill(out + off, i, sm_dtype(i), n, seed);
		off += n * sm_width(sm_dtype(i));
	}
	*ret = out;
	return total;
}

#endif
