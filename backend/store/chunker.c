/*
 * chunker.c - the gear rolling hash and FastCDC's normalised cut test.
 */
#include "backend/store/chunker.h"
#include "backend/store/gear_table.h"

/* 17 bits for a 128 KiB average; normalisation level 2 shifts by two bits. */
#define MASK_S (~0ULL << (64 - 19))
#define MASK_L (~0ULL << (64 - 15))

/*
 * The gear hash from buf[i] up to end: returns the index of the first byte
 * after which (h & mask) == 0, or end.  Four bytes a step with one branch
 * (the hash chain is the bound, not the tests); a step that holds a cut is
 * walked again byte by byte, so the cut points are those of the plain loop.
 */
static size_t scan(const uint8_t *buf, size_t i, size_t end, uint64_t *hp, uint64_t mask)
{
	uint64_t h = *hp;

	for (; i + 4 <= end; i += 4) {
		uint64_t h0 = (h << 1) + cdc_gear[buf[i]];
		uint64_t h1 = (h0 << 1) + cdc_gear[buf[i + 1]];
		uint64_t h2 = (h1 << 1) + cdc_gear[buf[i + 2]];
		uint64_t h3 = (h2 << 1) + cdc_gear[buf[i + 3]];

		if (!(h0 & mask) | !(h1 & mask) | !(h2 & mask) | !(h3 & mask))
			break;
		h = h3;
	}
	for (; i < end; i++) {
		h = (h << 1) + cdc_gear[buf[i]];
		if (!(h & mask))
			break;
	}
	*hp = h;
	return i;
}

/* scan() over positions [i, end) of a[0..alen) followed by b. */
static size_t scan2(const uint8_t *a, size_t alen, const uint8_t *b, size_t i, size_t end,
		    uint64_t *hp, uint64_t mask)
{
	if (i < alen) {
		size_t e = end < alen ? end : alen;

		i = scan(a, i, e, hp, mask);
		if (i < e || e == end)
			return i;
	}
	return alen + scan(b, i - alen, end - alen, hp, mask);
}

size_t cdc_next2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int eof)
{
	size_t len = alen + blen;
	size_t n = len < CDC_MAX ? len : CDC_MAX;
	size_t normal = CDC_AVG < n ? CDC_AVG : n;
	uint64_t h = 0;
	size_t i;

	if (len <= CDC_MIN)
		return eof ? len : 0;
	/*
	 * The gear hash of a 64-bit word only remembers the last 64 bytes, so
	 * warming it over the 64 bytes before CDC_MIN gives the same cut points
	 * as hashing from the start.
	 */
	for (i = CDC_MIN - 64; i < CDC_MIN; i++)
		h = (h << 1) + cdc_gear[i < alen ? a[i] : b[i - alen]];
	i = scan2(a, alen, b, i, normal, &h, MASK_S);
	if (i < normal)
		return i + 1;
	i = scan2(a, alen, b, i, n, &h, MASK_L);
	if (i < n)
		return i + 1;
	if (n == CDC_MAX || eof)
		return n;
	return 0;
}

size_t cdc_next(const uint8_t *buf, size_t len, int eof)
{
	return cdc_next2(buf, len, buf + len, 0, eof);
}
