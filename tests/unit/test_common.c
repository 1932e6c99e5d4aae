/*
 * test_common.c - the shared helpers of common/: the UTF-8 validator at
 * every boundary of Unicode table 3-7, hex and digests, the three error
 * maps (the table in common/errmap.h), the monotonic clock.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <curl/curl.h>
#include <sqlite3.h>

#include "backend/store/hash.h"
#include "backend/store/store.h"
#include "common/clock.h"
#include "common/errmap.h"
#include "common/hex.h"
#include "common/utf8.h"
#include "tests/check.h"

#define U8(s) utf8_check_n((s), sizeof(s) - 1)

static void test_utf8_valid(void)
{
	CHECK_EQ(U8(""), 0);
	CHECK_EQ(U8("plain ascii \x7f"), 0);
	CHECK_EQ(U8("\xc2\x80"), 0);               /* U+0080, the first 2-byte */
	CHECK_EQ(U8("\xdf\xbf"), 0);               /* U+07FF */
	CHECK_EQ(U8("\xe0\xa0\x80"), 0);           /* U+0800, the first 3-byte */
	CHECK_EQ(U8("\xed\x9f\xbf"), 0);           /* U+D7FF, below the surrogates */
	CHECK_EQ(U8("\xee\x80\x80"), 0);           /* U+E000, above them */
	CHECK_EQ(U8("\xef\xbf\xbf"), 0);           /* U+FFFF */
	CHECK_EQ(U8("\xf0\x90\x80\x80"), 0);       /* U+10000, the first 4-byte */
	CHECK_EQ(U8("\xf4\x8f\xbf\xbf"), 0);       /* U+10FFFF, the last */
	CHECK_EQ(U8("caf\xc3\xa9 \xf0\x9f\xa6\x99"), 0);
	CHECK(utf8_valid("\xc3\xa9t\xc3\xa9"));
}

static void test_utf8_refused(void)
{
	/* overlong forms */
	CHECK_EQ(U8("a\xe0\x80\x80z"), -EILSEQ);   /* the name of issue 13 */
	CHECK_EQ(U8("\xc0\x80"), -EILSEQ);
	CHECK_EQ(U8("\xc1\xbf"), -EILSEQ);
	CHECK_EQ(U8("\xe0\x9f\xbf"), -EILSEQ);     /* U+07FF in three bytes */
	CHECK_EQ(U8("\xf0\x8f\xbf\xbf"), -EILSEQ); /* U+FFFF in four bytes */
	CHECK_EQ(U8("\xf0\x80\x80\xaf"), -EILSEQ);
	/* surrogates */
	CHECK_EQ(U8("\xed\xa0\x80"), -EILSEQ);
	CHECK_EQ(U8("\xed\xbf\xbf"), -EILSEQ);
	/* past U+10FFFF */
	CHECK_EQ(U8("\xf4\x90\x80\x80"), -EILSEQ);
	CHECK_EQ(U8("\xf5\x80\x80\x80"), -EILSEQ);
	CHECK_EQ(U8("\xf7\xbf\xbf\xbf"), -EILSEQ);
	CHECK_EQ(U8("\xf8\x88\x80\x80\x80"), -EILSEQ);
	CHECK_EQ(U8("\xff"), -EILSEQ);
	CHECK_EQ(U8("\xfe"), -EILSEQ);
	/* lone continuation bytes, truncated sequences, bad continuations */
	CHECK_EQ(U8("\x80"), -EILSEQ);
	CHECK_EQ(U8("a\xbf"), -EILSEQ);
	CHECK_EQ(U8("\xc3"), -EILSEQ);
	CHECK_EQ(U8("\xe2\x82"), -EILSEQ);
	CHECK_EQ(U8("\xf0\x9f\xa6"), -EILSEQ);
	CHECK_EQ(U8("\xc3("), -EILSEQ);
	CHECK_EQ(U8("\xe2\x82("), -EILSEQ);
	CHECK_EQ(U8("\xf0\x9f\xa6("), -EILSEQ);
	/* a NUL inside counted bytes */
	CHECK_EQ(U8("a\0b"), -EILSEQ);
	/* a sequence cut by the count, although the bytes go on */
	CHECK_EQ(utf8_check_n("\xc3\xa9", 1), -EILSEQ);
	CHECK(!utf8_valid("a\xe0\x80\x80z"));
	CHECK(!utf8_valid("\xed\xa0\x80"));
}

/* Every 1-, 2- and 3-byte sequence, against a decoder written from the
 * definition: valid exactly when it decodes to a scalar value in its
 * shortest form. */
static void test_utf8_exhaustive(void)
{
	unsigned a, b, c, bad = 0;

	for (a = 1; a < 256; a++) {
		char s1[1] = { (char)a };
		int want1 = a < 0x80;

		bad += (utf8_check_n(s1, 1) == 0) != want1;
		for (b = 0; b < 256; b++) {
			char s2[2] = { (char)a, (char)b };
			unsigned cp2 = (a & 0x1f) << 6 | (b & 0x3f);
			int want2 = (a < 0x80 && b >= 1 && b < 0x80) ||
				    ((a & 0xe0) == 0xc0 && (b & 0xc0) == 0x80 && cp2 >= 0x80);

			bad += (utf8_check_n(s2, 2) == 0) != want2;
			if ((a & 0xf0) != 0xe0)
				continue;
			for (c = 0; c < 256; c++) {
				char s3[3] = { (char)a, (char)b, (char)c };
				unsigned cp = (a & 0x0f) << 12 | (b & 0x3f) << 6 | (c & 0x3f);
				int want = (b & 0xc0) == 0x80 && (c & 0xc0) == 0x80 &&
					   cp >= 0x800 && !(cp >= 0xd800 && cp <= 0xdfff);

				bad += (utf8_check_n(s3, 3) == 0) != want;
			}
		}
	}
	CHECK_EQ(bad, 0);
}

static void test_store_names(void)
{
	char long256[257];

	memset(long256, 'x', 256);
	long256[256] = '\0';
	CHECK_EQ(cas_name_check("model.safetensors"), 0);
	CHECK_EQ(cas_name_check("\xc3\xa9moji-\xf0\x9f\xa6\x99"), 0);
	CHECK_EQ(cas_name_check("a\xe0\x80\x80z"), -EILSEQ);
	CHECK_EQ(cas_name_check("\xed\xa0\x80"), -EILSEQ);
	CHECK_EQ(cas_name_check("bad\xff"), -EILSEQ);
	CHECK_EQ(cas_name_check(""), -EINVAL);
	CHECK_EQ(cas_name_check("."), -EINVAL);
	CHECK_EQ(cas_name_check(".."), -EINVAL);
	CHECK_EQ(cas_name_check("a/b"), -EINVAL);
	CHECK_EQ(cas_name_check(long256), -ENAMETOOLONG);
	long256[255] = '\0';
	CHECK_EQ(cas_name_check(long256), 0);
}

static void test_hex(void)
{
	static const uint8_t in[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
	uint8_t out[6], keep[6];
	char s[13], idhex[CAS_ID_HEX];
	struct cas_id id;

	hex_encode(in, sizeof(in), s);
	CHECK(strcmp(s, "00017f80abff") == 0);
	hex_encode(in, 0, s);
	CHECK(s[0] == '\0');
	CHECK_EQ(hex_decode("00017f80abff", out, 6, 1), 0);
	CHECK(memcmp(out, in, 6) == 0);
	CHECK_EQ(hex_decode("00017F80ABFF", out, 6, 0), 0);
	CHECK(memcmp(out, in, 6) == 0);
	memcpy(keep, out, 6);
	CHECK_EQ(hex_decode("00017F80ABFF", out, 6, 1), -EINVAL);
	CHECK_EQ(hex_decode("00017f80abf", out, 6, 0), -EINVAL);   /* short */
	CHECK_EQ(hex_decode("00017f80abff0", out, 6, 0), -EINVAL); /* long */
	CHECK_EQ(hex_decode("00017f80abfg", out, 6, 0), -EINVAL);
	CHECK(memcmp(out, keep, 6) == 0);                          /* untouched */
	/* chunk ids go through the same pair */
	CHECK_EQ(cas_id_parse("000102030405060708090A0B0C0D0E0F", &id), 0);
	cas_id_hex(&id, idhex);
	CHECK(strcmp(idhex, "000102030405060708090a0b0c0d0e0f") == 0);
	CHECK_EQ(cas_id_parse("000102030405060708090a0b0c0d0e0", &id), -EINVAL);
	CHECK_EQ(cas_id_parse("000102030405060708090a0b0c0d0e0f0", &id), -EINVAL);
}

static void test_digest(void)
{
	char d[DIGEST_LEN];
	uint8_t md[32];

	/* SHA-256 of "" and of "abc" (FIPS 180-2) */
	digest_sha256("", 0, d);
	CHECK(strcmp(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
	digest_sha256("abc", 3, d);
	CHECK(strcmp(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
	CHECK(digest_valid(d));
	CHECK_EQ(hex_decode(d + 7, md, 32, 1), 0);
	digest_of_sha256(md, d);
	CHECK(strcmp(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
	CHECK(!digest_valid(NULL));
	CHECK(!digest_valid("sha256:abc"));
	CHECK(!digest_valid("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	CHECK(!digest_valid("sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	CHECK(!digest_valid("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0"));
}

static void test_errmap_http(void)
{
	CHECK_EQ(errno_of_http(200), 0);
	CHECK_EQ(errno_of_http(206), 0);
	CHECK_EQ(errno_of_http(400), -EINVAL);
	CHECK_EQ(errno_of_http(401), -EACCES);
	CHECK_EQ(errno_of_http(403), -EACCES);
	CHECK_EQ(errno_of_http(404), -ENOENT);
	CHECK_EQ(errno_of_http(405), -EOPNOTSUPP);
	CHECK_EQ(errno_of_http(408), -ETIMEDOUT);
	CHECK_EQ(errno_of_http(413), -EFBIG);      /* not E2BIG */
	CHECK_EQ(errno_of_http(416), -ERANGE);
	CHECK_EQ(errno_of_http(429), -EAGAIN);
	CHECK_EQ(errno_of_http(418), -EPROTO);
	CHECK_EQ(errno_of_http(302), -EPROTO);
	CHECK_EQ(errno_of_http(100), -EPROTO);
	CHECK_EQ(errno_of_http(500), -EREMOTEIO);  /* not EIO */
	CHECK_EQ(errno_of_http(503), -EREMOTEIO);
	CHECK_EQ(errno_of_http(599), -EREMOTEIO);
	CHECK_EQ(errno_of_http(600), -EPROTO);
	CHECK(errmap_http_transient(408));
	CHECK(errmap_http_transient(429));
	CHECK(errmap_http_transient(500));
	CHECK(errmap_http_transient(503));
	CHECK(!errmap_http_transient(200));
	CHECK(!errmap_http_transient(404));
	CHECK(!errmap_http_transient(413));
}

static void test_errmap_curl(void)
{
	CHECK_EQ(errno_of_curl(CURLE_OK), 0);
	CHECK_EQ(errno_of_curl(CURLE_OPERATION_TIMEDOUT), -ETIMEDOUT);
	CHECK_EQ(errno_of_curl(CURLE_COULDNT_CONNECT), -ECONNREFUSED);
	CHECK_EQ(errno_of_curl(CURLE_COULDNT_RESOLVE_HOST), -EHOSTUNREACH);
	CHECK_EQ(errno_of_curl(CURLE_COULDNT_RESOLVE_PROXY), -EHOSTUNREACH);
	CHECK_EQ(errno_of_curl(CURLE_OUT_OF_MEMORY), -ENOMEM);
	CHECK_EQ(errno_of_curl(CURLE_WRITE_ERROR), -EFBIG);
	CHECK_EQ(errno_of_curl(CURLE_RECV_ERROR), -ECONNRESET);
	CHECK_EQ(errno_of_curl(CURLE_GOT_NOTHING), -ECONNRESET);
	CHECK_EQ(errno_of_curl(CURLE_PARTIAL_FILE), -ECONNRESET);
	CHECK_EQ(errno_of_curl(CURLE_SSL_CONNECT_ERROR), -ECONNABORTED);
	CHECK_EQ(errno_of_curl(CURLE_ABORTED_BY_CALLBACK), -ECANCELED);
	CHECK_EQ(errno_of_curl(CURLE_UNSUPPORTED_PROTOCOL), -EIO);
	CHECK(errmap_curl_transient(CURLE_OPERATION_TIMEDOUT));
	CHECK(errmap_curl_transient(CURLE_COULDNT_CONNECT));
	CHECK(errmap_curl_transient(CURLE_RECV_ERROR));
	CHECK(!errmap_curl_transient(CURLE_OK));
	CHECK(!errmap_curl_transient(CURLE_OUT_OF_MEMORY));
	CHECK(!errmap_curl_transient(CURLE_WRITE_ERROR));
	CHECK(!errmap_curl_transient(CURLE_UNSUPPORTED_PROTOCOL));
}

static void test_errmap_sqlite(void)
{
	CHECK_EQ(errno_of_sqlite(SQLITE_OK), 0);
	CHECK_EQ(errno_of_sqlite(SQLITE_ROW), 0);
	CHECK_EQ(errno_of_sqlite(SQLITE_DONE), 0);
	CHECK_EQ(errno_of_sqlite(SQLITE_FULL), -ENOSPC);
	CHECK_EQ(errno_of_sqlite(SQLITE_BUSY), -EBUSY);
	CHECK_EQ(errno_of_sqlite(SQLITE_BUSY_SNAPSHOT), -EBUSY);   /* extended */
	CHECK_EQ(errno_of_sqlite(SQLITE_LOCKED), -EBUSY);
	CHECK_EQ(errno_of_sqlite(SQLITE_NOMEM), -ENOMEM);
	CHECK_EQ(errno_of_sqlite(SQLITE_CONSTRAINT_UNIQUE), -EEXIST);
	CHECK_EQ(errno_of_sqlite(SQLITE_READONLY), -EROFS);
	CHECK_EQ(errno_of_sqlite(SQLITE_PERM), -EACCES);
	CHECK_EQ(errno_of_sqlite(SQLITE_AUTH), -EACCES);
	CHECK_EQ(errno_of_sqlite(SQLITE_TOOBIG), -EFBIG);
	CHECK_EQ(errno_of_sqlite(SQLITE_CANTOPEN), -ENOENT);
	CHECK_EQ(errno_of_sqlite(SQLITE_CORRUPT), -EUCLEAN);
	CHECK_EQ(errno_of_sqlite(SQLITE_NOTADB), -EUCLEAN);
	CHECK_EQ(errno_of_sqlite(SQLITE_IOERR_WRITE), -EIO);
	CHECK_EQ(errno_of_sqlite(SQLITE_ERROR), -EIO);
}

static void test_clock(void)
{
	int64_t ns0 = clock_mono_ns(), ms0 = clock_mono_ms();
	double s0 = clock_mono_s();
	int i;

	/* never backwards; the three units name one clock */
	for (i = 0; i < 1000; i++) {
		int64_t ns = clock_mono_ns();

		CHECK(ns >= ns0);
		ns0 = ns;
	}
	CHECK(clock_mono_ms() >= ms0);
	CHECK(clock_mono_s() >= s0);
	CHECK(ms0 <= clock_mono_ns() / 1000000);
	CHECK(s0 <= (double)clock_mono_ns() * 1e-9 + 1e-6);
}

int main(void)
{
	RUN(test_utf8_valid);
	RUN(test_utf8_refused);
	RUN(test_utf8_exhaustive);
	RUN(test_store_names);
	RUN(test_hex);
	RUN(test_digest);
	RUN(test_errmap_http);
	RUN(test_errmap_curl);
	RUN(test_errmap_sqlite);
	RUN(test_clock);
	return check_status();
}
