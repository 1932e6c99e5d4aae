/*
 * hex.h - the one hex encoder and decoder, and SHA-256 digests in their
 * text form ("sha256:" and 64 lowercase hex digits, as OCI writes them).
 *
 * Contract: pure functions, no allocation, safe from any thread.  Encoders
 * always write lowercase and a terminating NUL.  Decoders return 0 or
 * -EINVAL and leave their output untouched on failure.
 */
#ifndef LLMFS_COMMON_HEX_H
#define LLMFS_COMMON_HEX_H

#include <stddef.h>
#include <stdint.h>

/* "sha256:" + 64 hex digits + NUL */
#define DIGEST_LEN 72

/* Lowercase hex of n bytes into out[2n + 1]. */
void hex_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decodes exactly 2n hex digits followed by a NUL into ret[n].  With
 * lower_only, uppercase digits are refused too (digests are compared as
 * text, so their one spelling is lowercase).
 */
int hex_decode(const char *hex, uint8_t *ret, size_t n, int lower_only);

/* "sha256:<hex>" of the 32 bytes of a SHA-256 sum. */
void digest_of_sha256(const uint8_t md[32], char out[DIGEST_LEN]);

/* "sha256:<hex>" of len bytes. */
void digest_sha256(const void *buf, size_t len, char out[DIGEST_LEN]);

/* 1 if s is "sha256:" and exactly 64 lowercase hex digits, else 0. */
int digest_valid(const char *s);

#endif
