/*
 * hash.h - chunk ids (XXH3-128) and their text form.
 *
 * Contract: pure functions; safe from any thread.  A chunk id is the
 * XXH3-128 of the chunk's uncompressed bytes in XXH128's canonical
 * (big-endian) byte order, so ids compare with memcmp and print the same as
 * `xxhsum -H2`.
 */
#ifndef LLMFS_HASH_H
#define LLMFS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CAS_ID_LEN 16
#define CAS_ID_HEX (2 * CAS_ID_LEN + 1)

struct cas_id {
	uint8_t b[CAS_ID_LEN];
};

void cas_id_of(const void *data, size_t len, struct cas_id *ret);
/* Writes 32 lowercase hex digits and a NUL into out[CAS_ID_HEX]. */
void cas_id_hex(const struct cas_id *id, char *out);
/* Returns 0, or -EINVAL unless hex is exactly 32 hex digits. */
int cas_id_parse(const char *hex, struct cas_id *ret);

static inline int cas_id_eq(const struct cas_id *a, const struct cas_id *b)
{
	return memcmp(a->b, b->b, CAS_ID_LEN) == 0;
}

#endif
