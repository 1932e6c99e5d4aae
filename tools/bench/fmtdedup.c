/* fmtdedup: what tensor-aligned chunking and the tensor-aware codec buy on
 * two versions of one model, through the same path the store will take.
 *
 * Usage: fmtdedup [--tensors N] [--changed PERCENT] [--seed S]
 *
 * Builds two safetensors models in memory: version 1 with N bf16 tensors of
 * N(0, 0.02) values (sizes 16 KiB to 4 MiB), and version 2 in which
 * PERCENT % of the tensors have new values and the JSON header grew (more
 * __metadata__), so every tensor moved.  Each version is then ingested:
 * mf_parse() on its header, a gear content-defined chunker (16/64/256 KiB
 * min/average/max) with and without extra cuts at mf_tensor_cuts(), and
 * every chunk encoded by bg_encode_best() with the dtype hint from
 * mf_dtype_at().  Prints the bytes version 2 adds to a store that holds
 * version 1, and the stored size of each version.
 *
 * The chunker is a stand-in for the store's (backend/), kept here only so
 * the formats work can be measured on its own.
 */
#include "backend/store/bytegroup.h"
#include "common/modelfmt.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define MIN_CHUNK (16u << 10)
#define AVG_MASK  ((1u << 16) - 1)   /* 64 KiB average past the minimum */
#define MAX_CHUNK (256u << 10)

struct model {
	uint8_t *p;
	size_t len;
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint16_t bf16_normal(uint64_t *s)
{
	double u1 = ((splitmix(s) >> 11) + 1.0) / 9007199254740993.0;
	double u2 = (splitmix(s) >> 11) / 9007199254740992.0;
	float f = (float)(0.02 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
	uint32_t x;

	memcpy(&x, &f, 4);
	return (uint16_t)((x + 0x7fff + (x >> 16 & 1)) >> 16);
}

/* Tensor i's size, the same in both versions. */
static size_t tensor_bytes(size_t i)
{
	static const size_t sizes[] = { 16 << 10, 1 << 20, 4 << 20, 64 << 10, 2 << 20, 512 << 10 };

	return sizes[i % 6];
}

/* Which tensors version 2 changes: a spread-out PERCENT % of them. */
static int changed_tensor(size_t i, unsigned pct)
{
	return (i * 7919 % 100) < pct;
}

static int build(struct model *m, size_t n, unsigned changed_pct, int version, uint64_t seed)
{
	size_t i, data = 0, hlen, cap = 256 + n * 128 + (version == 2 ? 4096 : 0), off = 0;
	char *json = malloc(cap);
	int w;

	if (!json)
		return -ENOMEM;
	w = snprintf(json, cap, "{\"__metadata__\":{\"format\":\"pt\",\"version\":\"%d\"", version);
	/* Version 2's header grows by a few hundred bytes: every offset moves. */
	for (i = 0; version == 2 && i < 12; i++)
		w += snprintf(json + w, cap - (size_t)w, ",\"note%zu\":\"fine-tuned on more data\"", i);
	w += snprintf(json + w, cap - (size_t)w, "}");
	for (i = 0; i < n; i++) {
		size_t b = tensor_bytes(i);

		w += snprintf(json + w, cap - (size_t)w,
			      ",\"layers.%zu.weight\":{\"dtype\":\"BF16\",\"shape\":[%zu],"
			      "\"data_offsets\":[%zu,%zu]}", i, b / 2, data, data + b);
		data += b;
	}
	w += snprintf(json + w, cap - (size_t)w, "}");
	hlen = (size_t)w;
	m->len = 8 + hlen + data;
	m->p = malloc(m->len);
	if (!m->p) {
		free(json);
		return -ENOMEM;
	}
	for (i = 0; i < 8; i++)
		m->p[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
	memcpy(m->p + 8, json, hlen);
	free(json);
	off = 8 + hlen;
	for (i = 0; i < n; i++) {
		/* A changed tensor draws from another stream. */
		uint64_t s = seed + i * 1000003 +
			     (version == 2 && changed_tensor(i, changed_pct) ? 0x5555 : 0);
		size_t j, b = tensor_bytes(i);

		for (j = 0; j < b; j += 2) {
			uint16_t h = bf16_normal(&s);

			memcpy(m->p + off + j, &h, 2);
		}
		off += b;
	}
	return 0;
}

/* A set of chunk ids, open addressing. */
struct idset {
	XXH128_hash_t *ids;
	size_t cap, n;
};

static int idset_add(struct idset *s, XXH128_hash_t id)
{
	size_t i;

	if (2 * (s->n + 1) > s->cap) {
		struct idset bigger = { calloc(s->cap ? 2 * s->cap : 1024, sizeof(*s->ids)),
					s->cap ? 2 * s->cap : 1024, 0 };

		if (!bigger.ids)
			return -ENOMEM;
		for (i = 0; i < s->cap; i++)
			if (s->ids[i].low64 | s->ids[i].high64)
				idset_add(&bigger, s->ids[i]);
		free(s->ids);
		*s = bigger;
	}
	for (i = id.low64 & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (!(s->ids[i].low64 | s->ids[i].high64)) {
			s->ids[i] = id;
			s->n++;
			return 1;
		}
		if (XXH128_isEqual(s->ids[i], id))
			return 0;
	}
}

struct ingest {
	size_t new_bytes, stored, chunks;
	unsigned schemes[4];
};

/* Chunks `m` (cutting at tensor starts when `aligned`), adds every chunk to
 * `seen`, and encodes the new ones. */
static int ingest(const struct model *m, int aligned, struct idset *seen, struct bg_ctx *ctx,
		  uint8_t *enc, const uint64_t *gear, struct ingest *r)
{
	struct mf_info info;
	uint64_t *starts = NULL;
	ssize_t ns = 0, si = 0;
	size_t pos = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	mf_info_init(&info);
	rc = mf_parse(m->p, m->len, m->len, &info);
	if (rc < 0)
		goto out;
	if (aligned) {
		ns = mf_tensor_cuts(&info, MIN_CHUNK, &starts);
		if (ns < 0) {
			rc = (int)ns;
			goto out;
		}
	}
	while (pos < m->len) {
		size_t end = pos + MAX_CHUNK < m->len ? pos + MAX_CHUNK : m->len, i;
		uint64_t h = 0, next_cut = UINT64_MAX;
		enum bg_scheme s;
		ssize_t z;

		while (si < ns && starts[si] <= pos)
			si++;
		if (si < ns)
			next_cut = starts[si];
		if (next_cut < end)
			end = (size_t)next_cut;
		for (i = pos + MIN_CHUNK; i < end; i++) {
			h = (h << 1) + gear[m->p[i]];
			if (!(h & ((uint64_t)AVG_MASK << 48))) {
				end = i + 1;
				break;
			}
		}
		rc = idset_add(seen, XXH3_128bits(m->p + pos, end - pos));
		if (rc < 0)
			goto out;
		r->chunks++;
		if (rc == 1) {
			unsigned w = mf_dtype_group_width(mf_dtype_at(&info, pos, end));

			z = bg_encode_best(ctx, m->p + pos, end - pos, w, enc, MAX_CHUNK, &s);
			if (z < 0) {
				rc = (int)z;
				goto out;
			}
			r->new_bytes += end - pos;
			r->stored += (size_t)z;
			r->schemes[s]++;
		}
		pos = end;
	}
	rc = 0;
out:
	free(starts);
	mf_info_release(&info);
	return rc;
}

int main(int argc, char **argv)
{
	size_t n = 48, i;
	unsigned changed = 10;
	uint64_t seed = 42, gear[256], gs = 7;
	struct model v1 = { 0 }, v2 = { 0 };
	struct bg_ctx ctx;
	uint8_t *enc = malloc(MAX_CHUNK);
	int aligned, rc;

	for (i = 1; i < (size_t)argc; i++) {
		if (!strcmp(argv[i], "--tensors") && i + 1 < (size_t)argc)
			n = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--changed") && i + 1 < (size_t)argc)
			changed = (unsigned)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--seed") && i + 1 < (size_t)argc)
			seed = strtoull(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: fmtdedup [--tensors N] [--changed PERCENT] [--seed S]\n");
			return 2;
		}
	}
	for (i = 0; i < 256; i++)
		gear[i] = splitmix(&gs);
	if (!enc || build(&v1, n, changed, 1, seed) < 0 || build(&v2, n, changed, 2, seed) < 0 ||
	    bg_ctx_init(&ctx, 3) < 0)
		return 1;
	{
		size_t changed_bytes = 0;

		for (i = 0; i < n; i++)
			if (changed_tensor(i, changed))
				changed_bytes += tensor_bytes(i);
		printf("v1 %.1f MiB, v2 %.1f MiB (header +%zu bytes), %zu tensors, %u%% changed "
		       "(%.1f%% of the bytes: the floor for what v2 must add)\n",
		       v1.len / 1048576.0, v2.len / 1048576.0, v2.len - v1.len, n, changed,
		       100.0 * changed_bytes / v2.len);
	}
	printf("| chunking | v1 stored | v2 new bytes | v2 adds to the store | chunks v2 |\n");
	printf("|---|---|---|---|---|\n");
	for (aligned = 0; aligned < 2; aligned++) {
		struct idset seen = { 0 };
		struct ingest r1, r2;

		rc = ingest(&v1, aligned, &seen, &ctx, enc, gear, &r1);
		if (rc == 0)
			rc = ingest(&v2, aligned, &seen, &ctx, enc, gear, &r2);
		if (rc < 0) {
			fprintf(stderr, "fmtdedup: %s\n", strerror(-rc));
			return 1;
		}
		printf("| %s | %.1f%% of v1 | %.1f%% of v2 | %.1f%% of v2 (stored) | %zu |\n",
		       aligned ? "gear CDC + tensor starts" : "gear CDC only",
		       100.0 * r1.stored / v1.len, 100.0 * r2.new_bytes / v2.len,
		       100.0 * r2.stored / v2.len, r2.chunks);
		free(seen.ids);
	}
	bg_ctx_release(&ctx);
	free(v1.p);
	free(v2.p);
	free(enc);
	return 0;
}
