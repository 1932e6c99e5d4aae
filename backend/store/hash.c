/*
 * hash.c - XXH3-128 chunk ids.
 */
#include <xxhash.h>
#ifdef LLMFS_XXH_DISPATCH
#include <xxh_x86dispatch.h> /* the same hash, the widest vectors the CPU has */
#define XXH3_128bits XXH3_128bits_dispatch
#endif

#include "backend/store/hash.h"
#include "common/hex.h"

void cas_id_of(const void *data, size_t len, struct cas_id *ret)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
	memcpy(ret->b, c.digest, CAS_ID_LEN);
}

void cas_id_hex(const struct cas_id *id, char *out)
{
	hex_encode(id->b, CAS_ID_LEN, out);
}

int cas_id_parse(const char *hex, struct cas_id *ret)
{
	return hex_decode(hex, ret->b, CAS_ID_LEN, 0);
}
