/* mining_wire.c - the frame of weights and pseudo-gradients, and the HTTP transport (see
 * mining_wire.h). */
#include "mining_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "backend/store/bytegroup.h"

int mining_enc_parse(const char *s, enum mining_enc *ret)
{
	if (!strcmp(s, "none") || !strcmp(s, "fp32"))
		*ret = MINING_ENC_FP32;
	else if (!strcmp(s, "int8"))
		*ret = MINING_ENC_INT8;
	else
		return -EINVAL;
	return 0;
}

const char *mining_enc_name(enum mining_enc e)
{
	return e == MINING_ENC_INT8 ? "int8" : "none";
}

size_t mining_wire_size(enum mining_enc enc, unsigned block, size_t n)
{
	if (n > (SIZE_MAX - MINING_WIRE_HEADER) / 8)
		return 0;
	if (enc == MINING_ENC_FP32)
		return MINING_WIRE_HEADER + n * 4;
	if (enc != MINING_ENC_INT8 || block < 1 || block > (1u << 20))
		return 0;
	return MINING_WIRE_HEADER + (n + block - 1) / block * 4 + n;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void putf(unsigned char *p, float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	put32(p, u);
}

static float getf(const unsigned char *p)
{
	uint32_t u = get32(p);
	float f;

	memcpy(&f, &u, 4);
	return f;
}

int mining_wire_encode(enum mining_enc enc, unsigned block, const float *v, size_t n,
		       void **ret, size_t *ret_len)
{
	size_t len = mining_wire_size(enc, block, n);
	unsigned char *b, *p;

	if (!len)
		return -EINVAL;
	b = malloc(len);
	if (!b)
		return -ENOMEM;
	memcpy(b, MINING_WIRE_MAGIC, 8);
	put32(b + 8, (uint32_t)enc);
	put32(b + 12, enc == MINING_ENC_INT8 ? block : 0);
	put32(b + 16, (uint32_t)n);
	put32(b + 20, (uint32_t)((uint64_t)n >> 32));
	p = b + MINING_WIRE_HEADER;
	if (enc == MINING_ENC_FP32) {
		for (size_t i = 0; i < n; i++)
			putf(p + 4 * i, v[i]);
	} else {
		size_t nb = (n + block - 1) / block;
		signed char *q = (signed char *)(p + nb * 4);

		for (size_t k = 0; k < nb; k++) {
			size_t lo = k * block, hi = lo + block < n ? lo + block : n;
			float mx = 0.0f, scale;

			for (size_t i = lo; i < hi; i++)
				mx = fabsf(v[i]) > mx ? fabsf(v[i]) : mx;
			scale = isfinite(mx) ? mx / 127.0f : 0.0f;
			putf(p + 4 * k, scale);
			for (size_t i = lo; i < hi; i++) {
				float x = scale > 0 ? nearbyintf(v[i] / scale) : 0.0f;

				q[i] = (signed char)(x > 127 ? 127 : x < -127 ? -127 : x);
			}
		}
	}
	*ret = b;
	*ret_len = len;
	return 0;
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

static int decode_plain(const void *buf, size_t len, size_t n, float *out,
			enum mining_enc *ret_enc, char *err, size_t errlen);

int mining_wire_decode(const void *buf, size_t len, size_t n, float *out,
		       enum mining_enc *ret_enc, char *err, size_t errlen)
{
	void *plain = NULL;
	size_t plen = 0;
	int r;

	if (len < 8 || memcmp(buf, MINING_WIRE_PACKED_MAGIC, 8))
		return decode_plain(buf, len, n, out, ret_enc, err, errlen);
	r = mining_wire_unpack(buf, len, n, &plain, &plen, err, errlen);
	if (r == 0)
		r = decode_plain(plain, plen, n, out, ret_enc, err, errlen);
	free(plain);
	return r;
}

static int decode_plain(const void *buf, size_t len, size_t n, float *out,
			enum mining_enc *ret_enc, char *err, size_t errlen)
{
	const unsigned char *b = buf, *p;
	uint32_t enc, block;
	uint64_t fn;
	size_t want;

	if (len < MINING_WIRE_HEADER)
		return bad(err, errlen, "truncated: %zu bytes, shorter than the %d-byte header",
			   len, MINING_WIRE_HEADER);
	if (memcmp(b, MINING_WIRE_MAGIC, 8))
		return bad(err, errlen, "not a tensor frame (no %s magic)", MINING_WIRE_MAGIC);
	enc = get32(b + 8);
	block = get32(b + 12);
	fn = (uint64_t)get32(b + 16) | (uint64_t)get32(b + 20) << 32;
	if (enc != MINING_ENC_FP32 && enc != MINING_ENC_INT8)
		return bad(err, errlen, "unknown encoding %u", enc);
	if (enc == MINING_ENC_INT8 && (block < 1 || block > (1u << 20)))
		return bad(err, errlen, "int8 block %u out of range", block);
	if (fn != n)
		return bad(err, errlen, "wrong shape: %llu elements, the model has %zu",
			   (unsigned long long)fn, n);
	want = mining_wire_size((enum mining_enc)enc, block, n);
	if (len != want)
		return bad(err, errlen, "%s: %zu bytes, a frame of %zu elements is %zu",
			   len < want ? "truncated" : "trailing bytes", len, n, want);
	p = b + MINING_WIRE_HEADER;
	if (enc == MINING_ENC_FP32) {
		for (size_t i = 0; i < n; i++)
			if (!isfinite(getf(p + 4 * i)))
				return bad(err, errlen, "element %zu is not finite", i);
		for (size_t i = 0; i < n; i++)
			out[i] = getf(p + 4 * i);
	} else {
		size_t nb = (n + block - 1) / block;
		const signed char *q = (const signed char *)(p + nb * 4);

		for (size_t k = 0; k < nb; k++) {
			float s = getf(p + 4 * k);

			if (!isfinite(s) || s < 0)
				return bad(err, errlen, "scale of block %zu is not a finite "
					   "non-negative number", k);
		}
		for (size_t i = 0; i < n; i++)
			if (q[i] == -128)
				return bad(err, errlen, "element %zu is -128 (outside +-127)", i);
		for (size_t i = 0; i < n; i++)
			out[i] = (float)q[i] * getf(p + 4 * (i / block));
	}
	if (ret_enc)
		*ret_enc = (enum mining_enc)enc;
	return 0;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/*
 * Packed: magic, the plain frame's length (u64), the plain header (24 bytes), the byte
 * grouping scheme (u32, backend/store/bytegroup.h) and the payload as that scheme encodes it.
 * fp32 payloads are grouped by 4 (the exponents' plane compresses, the low mantissa planes
 * stay raw); int8 ones get plain zstd or nothing, whichever is smaller.
 */
#define PACKED_FIXED (MINING_WIRE_PACKED_HEADER + MINING_WIRE_HEADER + 4)

int mining_wire_pack(const void *frame, size_t len, void **ret, size_t *ret_len)
{
	const unsigned char *f = frame;
	unsigned char *b = NULL;
	struct bg_ctx ctx;
	enum bg_scheme scheme;
	size_t payload = len - MINING_WIRE_HEADER;
	ssize_t el = -EINVAL;
	int r;

	if (len < MINING_WIRE_HEADER || len > BG_CHUNK_MAX || memcmp(f, MINING_WIRE_MAGIC, 8))
		return -EINVAL;
	r = bg_ctx_init(&ctx, 3);
	if (r < 0)
		return r;
	b = malloc(PACKED_FIXED + payload);
	if (b)
		el = bg_encode_best(&ctx, f + MINING_WIRE_HEADER, payload,
				    get32(f + 8) == MINING_ENC_FP32 ? 4 : 0, b + PACKED_FIXED,
				    payload, &scheme);
	bg_ctx_release(&ctx);
	if (!b)
		return -ENOMEM;
	if (el < 0 || PACKED_FIXED + (size_t)el >= len) {
		/* it would not shrink: the plain frame */
		memcpy(b, frame, len);
		*ret = b;
		*ret_len = len;
		return 0;
	}
	memcpy(b, MINING_WIRE_PACKED_MAGIC, 8);
	put32(b + 8, (uint32_t)len);
	put32(b + 12, (uint32_t)((uint64_t)len >> 32));
	memcpy(b + MINING_WIRE_PACKED_HEADER, f, MINING_WIRE_HEADER);
	put32(b + MINING_WIRE_PACKED_HEADER + MINING_WIRE_HEADER, (uint32_t)scheme);
	*ret = b;
	*ret_len = PACKED_FIXED + (size_t)el;
	return 0;
}

int mining_wire_unpack(const void *buf, size_t len, size_t n, void **ret, size_t *ret_len,
		       char *err, size_t errlen)
{
	const unsigned char *b = buf;
	size_t max = mining_wire_size(MINING_ENC_FP32, 0, n);
	unsigned char *out;
	struct bg_ctx ctx;
	uint64_t plain;
	uint32_t scheme;
	int r;

	if (len < 8 || memcmp(b, MINING_WIRE_PACKED_MAGIC, 8)) {
		/* plain (or garbage, which mining_wire_decode() refuses with its reason) */
		out = malloc(len ? len : 1);
		if (!out)
			return -ENOMEM;
		memcpy(out, buf, len);
		*ret = out;
		*ret_len = len;
		return 0;
	}
	if (len < PACKED_FIXED)
		return bad(err, errlen, "truncated: %zu bytes, shorter than a packed frame's "
			   "%d-byte header", len, PACKED_FIXED);
	plain = get64(b + 8);
	scheme = get32(b + MINING_WIRE_PACKED_HEADER + MINING_WIRE_HEADER);
	if (!max || plain < MINING_WIRE_HEADER || plain > max)
		return bad(err, errlen, "packed: a plain frame of %llu bytes, a frame of %zu "
			   "elements is at most %zu", (unsigned long long)plain, n, max);
	if (scheme > BG_SCHEME_GROUP4)
		return bad(err, errlen, "packed: unknown scheme %u", scheme);
	out = malloc((size_t)plain);
	if (!out)
		return -ENOMEM;
	r = bg_ctx_init(&ctx, 3);
	if (r == 0) {
		r = bg_decode(&ctx, (enum bg_scheme)scheme, b + PACKED_FIXED, len - PACKED_FIXED,
			      out + MINING_WIRE_HEADER, (size_t)plain - MINING_WIRE_HEADER);
		bg_ctx_release(&ctx);
	}
	if (r < 0) {
		free(out);
		return r == -ENOMEM ? r : bad(err, errlen, "packed: its data does not decode "
					      "to the %llu bytes its header says",
					      (unsigned long long)plain);
	}
	memcpy(out, b + MINING_WIRE_PACKED_HEADER, MINING_WIRE_HEADER);
	*ret = out;
	*ret_len = (size_t)plain;
	return 0;
}

/* ---- the server ------------------------------------------------------------------------ */

struct mining_server {
	struct MHD_Daemon *d;
	mining_handler_fn fn;
	void *arg;
	_Atomic size_t max_body;
};

struct conn_body {
	char *buf;
	size_t len, cap;
	int too_big;
};

static const char *req_arg(const struct mining_request *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct mining_response *rs)
{
	struct MHD_Response *resp;
	enum MHD_Result ok;
	char *line, *save = NULL;

	resp = MHD_create_response_from_buffer(rs->len, rs->body ? rs->body : (void *)"",
					       rs->body ? MHD_RESPMEM_MUST_FREE
							: MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(rs->body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", rs->type ? rs->type : "text/plain");
	for (line = strtok_r(rs->headers, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *colon = strchr(line, ':');

		if (colon) {
			*colon = '\0';
			MHD_add_response_header(resp, line, colon + 1 + (colon[1] == ' '));
		}
	}
	ok = MHD_queue_response(c, rs->status, resp);
	MHD_destroy_response(resp);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload, size_t *upload_size, void **con_cls)
{
	struct mining_server *s = cls;
	struct conn_body *b = *con_cls;
	struct mining_request rq = { 0 };
	struct mining_response rs = { 0 };
	const char *auth;

	(void)version;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return MHD_NO;
		*con_cls = b;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t max = s->max_body;

		if (!b->too_big && b->len + *upload_size > max)
			b->too_big = 1;
		if (!b->too_big && b->len + *upload_size > b->cap) {
			size_t cap = (b->len + *upload_size) * 2 > max ? max : (b->len + *upload_size) * 2;
			char *nb = realloc(b->buf, cap);

			if (!nb)
				return MHD_NO;
			b->buf = nb;
			b->cap = cap;
		}
		if (!b->too_big) {
			memcpy(b->buf + b->len, upload, *upload_size);
			b->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (b->too_big) {
		rs.status = 413;
		rs.body = strdup("body too large\n");
		rs.len = rs.body ? strlen(rs.body) : 0;
		return send_reply(c, &rs);
	}
	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	rq.method = method;
	rq.path = url;
	rq.token = auth && !strncmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
	rq.arg = req_arg;
	rq.body = b->buf;
	rq.body_len = b->len;
	rq.conn = c;
	rs.status = 500;
	s->fn(s->arg, &rq, &rs);
	return send_reply(c, &rs);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode toe)
{
	struct conn_body *b = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (b) {
		free(b->buf);
		free(b);
		*con_cls = NULL;
	}
}

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(addr, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 0 || port > 65535)
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

int mining_server_start(const char *addr, size_t max_body, mining_handler_fn fn, void *arg,
			struct mining_server **ret, unsigned *ret_port, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	struct mining_server *s;
	const union MHD_DaemonInfo *info;

	if (parse_addr(addr, &sa) < 0) {
		snprintf(err, errlen, "%s: not an address HOST:PORT (numeric IPv4)", addr);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fn = fn;
	s->arg = arg;
	s->max_body = max_body;
	s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
				0, NULL, NULL, on_request, s,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				MHD_OPTION_NOTIFY_COMPLETED, on_done, s,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
				MHD_OPTION_END);
	if (!s->d) {
		snprintf(err, errlen, "%s: cannot listen (address in use or not local)", addr);
		free(s);
		return -EADDRNOTAVAIL;
	}
	info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	*ret_port = info ? info->port : ntohs(sa.sin_port);
	*ret = s;
	return 0;
}

void mining_server_stop(struct mining_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	free(s);
}

void mining_server_max_body(struct mining_server *s, size_t max_body)
{
	if (max_body > s->max_body)
		s->max_body = max_body;
}

/* ---- the client -------------------------------------------------------------------------- */

struct sink {
	char *buf;
	size_t len, cap;
	char round[32], base[32], own[32];
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;

	if (s->len + n + 1 > s->cap) {
		size_t cap = (s->len + n + 1) * 2;
		char *nb = realloc(s->buf, cap);

		if (!nb)
			return 0;
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

/* A header's decimal value into out (size 32) when the line is that header. */
static void header_number(const char *p, size_t n, const char *name, char *out)
{
	size_t k = strlen(name), i = k, j = 0;

	if (n <= k || strncasecmp(p, name, k))
		return;
	while (i < n && p[i] == ' ')
		i++;
	while (i < n && p[i] >= '0' && p[i] <= '9' && j + 1 < 32)
		out[j++] = p[i++];
	out[j] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;

	header_number(p, n, "X-Llmfs-Round:", s->round);
	header_number(p, n, "X-Llmfs-Base:", s->base);
	header_number(p, n, "X-Llmfs-Own:", s->own);
	return n;
}

int mining_http(const char *url, const char *token, const void *body, size_t len,
		long timeout_s, struct mining_http_reply *ret, char *err, size_t errlen)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdr = NULL;
	struct sink s = { 0 };
	char auth[256];
	CURLcode rc;
	int r = 0;

	memset(ret, 0, sizeof(*ret));
	if (!h)
		return -ENOMEM;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token ? token : "");
	hdr = curl_slist_append(hdr, auth);
	hdr = curl_slist_append(hdr, "Expect:");
	hdr = curl_slist_append(hdr, "Content-Type: application/octet-stream");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (body) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
		r = -EHOSTDOWN;
		free(s.buf);
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
		if (!s.buf)
			s.buf = strdup("");
		ret->body = s.buf;
		ret->len = s.len;
		memcpy(ret->round, s.round, sizeof(ret->round));
		memcpy(ret->base, s.base, sizeof(ret->base));
		memcpy(ret->own, s.own, sizeof(ret->own));
		if (!s.buf)
			r = -ENOMEM;
	}
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	return r;
}

void mining_http_reply_free(struct mining_http_reply *r)
{
	free(r->body);
	r->body = NULL;
}
