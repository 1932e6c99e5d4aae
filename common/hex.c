/*
 * hex.c - hex text and SHA-256 digests.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/hex.h"

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

static int hexval(char c, int lower_only)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (!lower_only && c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *hex, uint8_t *ret, size_t n, int lower_only)
{
	size_t i;

	/* checked whole before ret is written: untouched on failure */
	for (i = 0; i < 2 * n; i++)
		if (hexval(hex[i], lower_only) < 0)
			return -EINVAL;
	if (hex[2 * n] != '\0')
		return -EINVAL;
	for (i = 0; i < n; i++)
		ret[i] = (uint8_t)(hexval(hex[2 * i], 0) << 4 | hexval(hex[2 * i + 1], 0));
	return 0;
}

void digest_of_sha256(const uint8_t md[32], char out[DIGEST_LEN])
{
	memcpy(out, "sha256:", 7);
	hex_encode(md, 32, out + 7);
}

void digest_sha256(const void *buf, size_t len, char out[DIGEST_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];

	EVP_Digest(buf, len, md, NULL, EVP_sha256(), NULL);
	digest_of_sha256(md, out);
}

int digest_valid(const char *s)
{
	size_t i;

	if (!s || strncmp(s, "sha256:", 7) != 0)
		return 0;
	for (i = 7; i < 7 + 64; i++)
		if (hexval(s[i], 1) < 0)
			return 0;
	return s[i] == '\0';
}
