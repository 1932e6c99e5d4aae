/*
 * utf8.c - strict UTF-8, by the ranges of Unicode table 3-7 (the second
 * byte's range depends on the first, which is what rules out overlongs,
 * surrogates and code points past U+10FFFF without decoding).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/utf8.h"

/* Length of the sequence s starts (up to n bytes), or 0 if not valid. */
static size_t seq_len(const uint8_t *s, size_t n)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (s[0] >= 0x01 && s[0] <= 0x7f)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;		/* below: overlong */
	else if (s[0] == 0xed)
		hi = 0x9f;		/* above: surrogates */
	else if (s[0] == 0xf0)
		lo = 0x90;		/* below: overlong */
	else if (s[0] == 0xf4)
		hi = 0x8f;		/* above: past U+10FFFF */
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

int utf8_check_n(const char *s, size_t n)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t i = 0;

	while (i < n) {
		size_t len = seq_len(u + i, n - i);

		if (len == 0)
			return -EILSEQ;
		i += len;
	}
	return 0;
}

int utf8_valid(const char *s)
{
	return utf8_check_n(s, strlen(s)) == 0;
}
