/*
 * chunker.c - the gear rolling hash and FastCDC's normalised cut test.
 */
#include "backend/store/chunker.h"
#include "backend/store/gear_table.h"

/* 17 bits for a 128 KiB average; normalisation level 2 shifts by two bits. */
#define MASK_S (~0ULL << (64 - 19))
#define MASK_L (~0ULL << (64 - 15))

size_t cdc_next(const uint8_t *buf, size_t len, int eof)
{
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
		h = (h << 1) + cdc_gear[buf[i]];
	for (; i < normal; i++) {
		h = (h << 1) + cdc_gear[buf[i]];
		if (!(h & MASK_S))
			return i + 1;
	}
	for (; i < n; i++) {
		h = (h << 1) + cdc_gear[buf[i]];
		if (!(h & MASK_L))
			return i + 1;
	}
	if (n == CDC_MAX || eof)
		return n;
	return 0;
}
