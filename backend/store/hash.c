/*
 * hash.c - XXH3-128 chunk ids.
 */
#include <errno.h>

#include <xxhash.h>

#include "backend/store/hash.h"

void cas_id_of(const void *data, size_t len, struct cas_id *ret)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
	memcpy(ret->b, c.digest, CAS_ID_LEN);
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void cas_id_hex(const struct cas_id *id, char *out)
{
	hex_encode(id->b, CAS_ID_LEN, out);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cas_id_parse(const char *hex, struct cas_id *ret)
{
	struct cas_id id;
	int i;

	for (i = 0; i < CAS_ID_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		id.b[i] = (uint8_t)(hi << 4 | lo);
	}
	if (hex[2 * CAS_ID_LEN] != '\0')
		return -EINVAL;
	*ret = id;
	return 0;
}
