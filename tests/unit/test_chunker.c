/*
 * test_chunker.c - chunk sizes stay in bounds, boundaries are deterministic
 * and stable under insertions and deletions.
 */
#include <stdint.h>
#include <xxhash.h>

#include "backend/store/chunker.h"
#include "backend/store/gear_table.h"
#include "backend/store/hash.h"
#include "tests/check.h"

#define LEN (16u << 20)
#define MAXCH (LEN / CDC_MIN + 2)

/* Cuts buf into chunks; fills ids and returns the count. */
static size_t cut_all(const uint8_t *buf, size_t len, struct cas_id *ids,
		      size_t *sizes)
{
	size_t off = 0, n = 0;

	while (off < len) {
		size_t c = cdc_next(buf + off, len - off, 1);

		cas_id_of(buf + off, c, &ids[n]);
		sizes[n++] = c;
		off += c;
	}
	return n;
}

static size_t shared(const struct cas_id *a, size_t na, const struct cas_id *b,
		     size_t nb)
{
	size_t i, j, s = 0;

	for (i = 0; i < na; i++)
		for (j = 0; j < nb; j++)
			if (cas_id_eq(&a[i], &b[j])) {
				s++;
				break;
			}
	return s;
}

static uint8_t *buf, *buf2;
static struct cas_id ids[MAXCH], ids2[MAXCH];
static size_t sizes[MAXCH], sizes2[MAXCH];

static void test_bounds(void)
{
	size_t n = cut_all(buf, LEN, ids, sizes), i, total = 0;

	for (i = 0; i < n; i++) {
		total += sizes[i];
		CHECK(sizes[i] <= CDC_MAX);
		if (i + 1 < n)
			CHECK(sizes[i] >= CDC_MIN);
	}
	CHECK_EQ(total, LEN);
	/* Normalised chunking keeps the mean near the target. */
	CHECK(LEN / n > CDC_AVG / 2 && LEN / n < CDC_AVG * 2);
}

static void test_need_more(void)
{
	/* Short of CDC_MAX without a boundary, the chunker asks for more. */
	CHECK_EQ(cdc_next(buf, CDC_MIN, 0), 0);
	CHECK_EQ(cdc_next(buf, CDC_MIN, 1), CDC_MIN);
	CHECK_EQ(cdc_next(buf, 10, 1), 10);
	CHECK(cdc_next(buf, CDC_MAX, 0) > 0);
}

static void test_zeros(void)
{
	static uint8_t z[3 * CDC_MAX];

	/* No entropy, no content boundary: maximal chunks. */
	CHECK_EQ(cdc_next(z, sizeof(z), 0), CDC_MAX);
}

static void test_deterministic(void)
{
	size_t n = cut_all(buf, LEN, ids, sizes);
	size_t n2 = cut_all(buf, LEN, ids2, sizes2);

	CHECK_EQ(n, n2);
	CHECK(memcmp(ids, ids2, n * sizeof(*ids)) == 0);
}

static void test_insertion(void)
{
	size_t n = cut_all(buf, LEN, ids, sizes), n2, s;
	const size_t at = 5u << 20, ins = 1000;

	memcpy(buf2, buf, at);
	fill_random(buf2 + at, ins, 99);
	memcpy(buf2 + at + ins, buf + at, LEN - at - ins);
	n2 = cut_all(buf2, LEN, ids2, sizes2);
	s = shared(ids, n, ids2, n2);
	/* All chunks but the few around the edit (and the cut-off tail) survive. */
	CHECK(s + 4 >= n);
}

static void test_deletion(void)
{
	size_t n = cut_all(buf, LEN, ids, sizes), n2, s;
	const size_t at = 9u << 20, del = 70000;

	memcpy(buf2, buf, at);
	memcpy(buf2 + at, buf + at + del, LEN - at - del);
	n2 = cut_all(buf2, LEN - del, ids2, sizes2);
	s = shared(ids, n, ids2, n2);
	CHECK(s + 4 >= n);
}

static void test_known_hash(void)
{
	struct cas_id id;
	char hex[CAS_ID_HEX];

	/* The values `xxhsum -H2` prints. */
	cas_id_of("", 0, &id);
	cas_id_hex(&id, hex);
	CHECK(strcmp(hex, "99aa06d3014798d86001c324468d497f") == 0);
	cas_id_of("abc", 3, &id);
	cas_id_hex(&id, hex);
	CHECK(strcmp(hex, "06b05ab6733a618578af5f94892f3950") == 0);
	CHECK(cas_id_parse(hex, &id) == 0);
	CHECK(cas_id_parse("06b05ab6733a618578af5f94892f395", &id) < 0);
	CHECK(cas_id_parse("06b05ab6733a618578af5f94892f395g", &id) < 0);
	CHECK(cas_id_parse("06b05ab6733a618578af5f94892f39500", &id) < 0);
}

/* Every input length's path (vector loops, tails) gives the library's baseline hash. */
static void test_hash_paths(void)
{
	static const size_t lens[] = { 1, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025,
				       65536, 131071, 1u << 20 };
	size_t len = 1u << 20, i;
	uint8_t *data = malloc(len);
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	CHECK(data != NULL);
	for (i = 0; i < len; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		data[i] = (uint8_t)(x >> 56);
	}
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		XXH128_canonical_t c;
		struct cas_id id;

		XXH128_canonicalFromHash(&c, XXH3_128bits(data + 3, lens[i] - 3 * (lens[i] > 3)));
		cas_id_of(data + 3, lens[i] - 3 * (lens[i] > 3), &id);
		CHECK(memcmp(id.b, c.digest, CAS_ID_LEN) == 0);
	}
	free(data);
}

/*
 * The chunker's cut points are part of the store's format in effect (a
 * store deduplicates new files against chunks cut years ago): the fast scan
 * must cut exactly where the one-byte-at-a-time definition does.
 */
static size_t cdc_reference(const uint8_t *p, size_t len, int eof)
{
	const uint64_t mask_s = ~0ULL << (64 - 19), mask_l = ~0ULL << (64 - 15);
	size_t n = len < CDC_MAX ? len : CDC_MAX, normal = CDC_AVG < n ? CDC_AVG : n, i;
	uint64_t h = 0;

	if (len <= CDC_MIN)
		return eof ? len : 0;
	for (i = CDC_MIN - 64; i < CDC_MIN; i++)
		h = (h << 1) + cdc_gear[p[i]];
	for (; i < normal; i++) {
		h = (h << 1) + cdc_gear[p[i]];
		if (!(h & mask_s))
			return i + 1;
	}
	for (; i < n; i++) {
		h = (h << 1) + cdc_gear[p[i]];
		if (!(h & mask_l))
			return i + 1;
	}
	return n == CDC_MAX || eof ? n : 0;
}

static void test_reference_cuts(void)
{
	size_t off, k, lens[] = { 100, CDC_MIN + 1, CDC_MIN + 5, CDC_AVG + 3, CDC_MAX - 1, CDC_MAX + 7 };
	int eof;

	for (off = 0; off + CDC_MAX < LEN; off += cdc_reference(buf + off, LEN - off, 1))
		CHECK_EQ(cdc_next(buf + off, LEN - off, 1), cdc_reference(buf + off, LEN - off, 1));
	/* Short buffers, with and without eof, end in every position of a step. */
	for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (off = 0; off < 8; off++)
			for (eof = 0; eof < 2; eof++)
				CHECK_EQ(cdc_next(buf + off * 977, lens[k] + off, eof),
					 cdc_reference(buf + off * 977, lens[k] + off, eof));
}

/* A cut over two parts is the cut over the two joined, wherever they split. */
static void test_two_parts(void)
{
	size_t splits[] = { 0, 1, 63, 64, CDC_MIN - 65, CDC_MIN - 1, CDC_MIN, CDC_MIN + 3,
			    CDC_AVG - 1, CDC_AVG, CDC_AVG + 1, CDC_MAX - 1, CDC_MAX, CDC_MAX + 9 };
	size_t lens[] = { 100, CDC_MIN + 1, CDC_AVG + 3, CDC_MAX - 1, CDC_MAX, 2 * CDC_MAX };
	size_t off, k, j;
	int eof;

	for (off = 0; off + 2 * CDC_MAX < LEN; off += cdc_reference(buf + off, LEN - off, 1))
		for (j = 0; j < sizeof(splits) / sizeof(splits[0]); j++)
			CHECK_EQ(cdc_next2(buf + off, splits[j], buf + off + splits[j],
					   2 * CDC_MAX - splits[j], 0),
				 cdc_reference(buf + off, 2 * CDC_MAX, 0));
	for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (j = 0; j < sizeof(splits) / sizeof(splits[0]); j++)
			for (eof = 0; eof < 2; eof++) {
				size_t a = splits[j] < lens[k] ? splits[j] : lens[k];

				CHECK_EQ(cdc_next2(buf + 4099, a, buf + 4099 + a, lens[k] - a, eof),
					 cdc_reference(buf + 4099, lens[k], eof));
			}
}

int main(void)
{
	buf = malloc(LEN);
	buf2 = malloc(LEN);
	if (!buf || !buf2)
		return 1;
	fill_random(buf, LEN, 1);
	RUN(test_bounds);
	RUN(test_need_more);
	RUN(test_zeros);
	RUN(test_deterministic);
	RUN(test_insertion);
	RUN(test_deletion);
	RUN(test_known_hash);
	RUN(test_hash_paths);
	RUN(test_reference_cuts);
	RUN(test_two_parts);
	free(buf);
	free(buf2);
	return check_status();
}
