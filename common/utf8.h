/*
 * utf8.h - the one UTF-8 validator, the strictest (RFC 3629, Unicode
 * table 3-7): what JSON strings (jansson), OCI annotations and our names
 * must hold.
 *
 * Contract: pure functions, safe from any thread.  Refused: bytes that
 * start no sequence (0x80..0xbf alone, 0xc0, 0xc1, 0xf5..0xff), truncated
 * sequences, overlong forms (e.g. 0xe0 0x80 0x80 for U+0000), UTF-16
 * surrogates (U+D800..U+DFFF) and code points past U+10FFFF.  NUL ends a
 * C string, so utf8_valid() never sees one inside; utf8_check_n() refuses
 * an embedded NUL too, since no name or JSON key of ours may hold one.
 */
#ifndef LLMFS_COMMON_UTF8_H
#define LLMFS_COMMON_UTF8_H

#include <stddef.h>

/* 0 if the n bytes at s are strict UTF-8 without NUL, else -EILSEQ. */
int utf8_check_n(const char *s, size_t n);

/* 1 if the C string s is strict UTF-8, else 0. */
int utf8_valid(const char *s);

#endif
