/*
 * oci.c - the registry client: every request is a small retrying task run
 * on a curl multi handle; auth challenges are answered per client; every
 * body is checked before a caller sees success.
 *
 * A task holds one request (struct req) that may take several attempts.
 * Simple calls run one task, oci_fetch_ranges() and oci_upload_blobs() run
 * many; run_tasks() keeps up to `connections` of them in flight on the
 * one HTTP engine (common/http.h), each on an easy handle of its own that
 * draws DNS answers and TLS sessions from the client's share handle and
 * connections from its run's multi handle: libcurl does not support one
 * connection cache used by several threads at once (calls of one client
 * run in many threads; shared, it crashed under load).  After an attempt,
 * req_outcome() decides, by the one error map (common/errmap.h) and our
 * own checks of the bytes: done (the task's step() looks at the answer),
 * retry (the engine's count and jittered backoff), auth (answer the
 * challenge and go again at once) or fail (-errno).  An upload walks this
 * machine:
 *
 *   HEAD --200--> EXISTED
 *     | 404
 *   POST ?mount= --201--> MOUNTED        (only with mount_from)
 *     | 202 Location, or no mount_from
 *   POST --202 Location--> PUT ?digest= --201--> SENT
 *     ^                                  |
 *     +---- retryable failure, backoff --+
 *
 * Lock order: c->lock (challenge and tokens) is never held while curl runs;
 * the share locks are taken by curl alone.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "backend/registry/oci.h"
#include "common/clock.h"
#include "common/errmap.h"
#include "common/http.h"

#define PIECE (1u << 20)         /* upload bytes read per u->read() */
#define SMALL_MAX (1u << 20)     /* a token answer */
#define PAGE_MAX (8u << 20)      /* one page of a catalog or tag list */
#define PAGES_MAX 10000
#define ERRBODY_MAX 512          /* error bodies kept for messages */
#define AUTH_ROUNDS 3            /* challenges answered per request */
#define TOKENS_MAX 64
#define BACKOFF_MS 100
#define BACKOFF_MAX_MS 2000

enum auth_mode { AUTH_ANON, AUTH_BASIC, AUTH_BEARER };
enum { USED_NONE, USED_BASIC, USED_CACHED, USED_FRESH };
/* Outcomes of an attempt besides 0 (done) and -errno (failed). */
enum { OUT_RETRY = 1, OUT_AUTH, OUT_NEXT };
enum sink { SINK_NONE, SINK_MEM, SINK_BUF, SINK_CB };

struct token {
	char *scope;
	char *value;
	time_t expires;
};

struct oci_client {
	char *name;
	char *url;
	char *user, *pass; /* NULL: anonymous */
	char **repos;      /* answered when the catalog is refused */
	size_t nrepos;
	int insecure, connections, retries, stall_s;
	struct http_retry retry;   /* retries attempts, jittered backoff */
	CURLSH *share;
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
	struct oci_counters ctr;
	pthread_mutex_t lock; /* guards the fields below */
	enum auth_mode mode;
	char *realm, *service;
	struct token *tokens;
	size_t ntokens;
};

/* One HTTP request, possibly over several attempts. */
struct req {
	struct oci_client *c;
	const char *method;      /* GET HEAD PUT POST */
	char *url;
	char what[160];          /* "GET /v2/..", for messages */
	char scope[600];         /* bearer scope(s), space separated */
	const char *accept, *ctype;
	int noauth;              /* a token request: no challenge answering */
	int lenient;             /* 4xx answers (not 401) go to step() */
	/* request body: memory, or an upload's read() */
	const unsigned char *body;
	uint64_t body_len;
	struct oci_upload *up;
	unsigned char *piece;
	size_t piece_off, piece_len;
	uint64_t sent;
	/* the bytes wanted: [roff, roff + rlen), rlen UINT64_MAX to the end */
	int ranged;
	uint64_t roff, rlen;
	enum sink sink;
	char *mem;
	size_t mem_len, mem_max, mem_cap;
	unsigned char *buf;
	uint64_t got;            /* body bytes kept (SINK_CB: over attempts) */
	uint64_t got0;           /* got when the attempt started */
	uint64_t start;          /* the first byte asked for this attempt */
	uint64_t skip;           /* bytes to drop: a 200 to a Range request */
	uint64_t total;          /* blob size when the answer told it */
	uint64_t want_total;     /* the blob size the caller expects, 0: any */
	int (*cb)(void *arg, const void *buf, size_t n);
	void *cbarg;
	EVP_MD_CTX *md;
	_Atomic uint64_t *progress;
	/* the answer */
	long status;
	char reason[64];
	char *location, *www_auth, *link, *dcd, *ctype_got;
	int has_crange, started, complete, overflow, badrange, toobig, stop;
	int stalled;
	uint64_t last_bytes;     /* body bytes moved at last_ms */
	int64_t last_ms;
	uint64_t cr_first, cr_total;
	int64_t clen;
	char errbody[ERRBODY_MAX];
	size_t errbody_len;
	/* attempts */
	CURL *h;
	struct curl_slist *hl;
	int auth_rounds, used;
	int retry_errno;         /* what the last retried cause ends as */
	char cause[256];
};

struct task {
	struct http_job job;          /* attempts and backoff (common/http.h) */
	struct req rq;
	void (*prep)(struct task *k); /* fills rq for the state, each attempt */
	int (*step)(struct task *k);  /* after a good answer */
	int state, restart, done, status;
	int64_t due;
	void *ctx;
	char msg[700];
};

static void errf(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int causef(struct req *rq, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int causef(struct req *rq, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rq->cause, sizeof(rq->cause), fmt, ap);
	va_end(ap);
	return r;
}

/* ---- names and digests ---- */

int oci_tag_valid(const char *s)
{
	size_t i;

	if (!s || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (i = 1; s[i]; i++)
		if (i >= 128 || !(isalnum((unsigned char)s[i]) || strchr("._-", s[i])))
			return 0;
	return 1;
}

static int lower_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

/* [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)* */
int oci_repo_valid(const char *s)
{
	const char *p = s;

	if (!s || !*s || strlen(s) > 255)
		return 0;
	for (;;) {
		if (!lower_alnum(*p))
			return 0;
		while (lower_alnum(*p))
			p++;
		if (*p == 0)
			return 1;
		if (*p == '/') {
			p++;
			continue;
		}
		if (*p == '.')
			p++;
		else if (p[0] == '_')
			p += p[1] == '_' ? 2 : 1;
		else if (*p == '-')
			while (*p == '-')
				p++;
		else
			return 0;
	}
}

/* ---- configuration ---- */

/* scheme://host[:port]: a host of letters, digits, '.', '-' or [v6]. */
static int url_valid(const char *u)
{
	const char *p = u;

	if (!strncmp(p, "https://", 8))
		p += 8;
	else if (!strncmp(p, "http://", 7))
		p += 7;
	else
		return 0;
	if (*p == '[') {
		p += strspn(p, "[0123456789abcdefABCDEF:.");
		if (*p++ != ']')
			return 0;
	} else {
		size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");

		if (!n)
			return 0;
		p += n;
	}
	if (*p == ':') {
		size_t n = strspn(++p, "0123456789");

		if (!n || n > 5)
			return 0;
		p += n;
	}
	return *p == 0;
}

static int name_valid(const char *s)
{
	return *s && s[0] != '.' && !strchr(s, '/') && strlen(s) < 256;
}

static void remote_release(struct oci_remote *r)
{
	free(r->name);
	free(r->url);
	free(r->username);
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
	free(r->auth_file);
	oci_strv_free(r->repositories, r->nrepositories);
}

void oci_config_free(struct oci_remote *r, size_t n)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < n; i++)
		remote_release(&r[i]);
	free(r);
}

static int conf_int(json_t *v, const char *key, int lo, int hi, int *out)
{
	json_t *x = json_object_get(v, key);

	if (!x)
		return 0;
	if (!json_is_integer(x) || json_integer_value(x) < lo ||
	    json_integer_value(x) > hi)
		return -1;
	*out = (int)json_integer_value(x);
	return 0;
}

static int conf_str(json_t *v, const char *key, char **out)
{
	json_t *x = json_object_get(v, key);

	if (!x)
		return 0;
	if (!json_is_string(x) || !*json_string_value(x))
		return -1;
	*out = strdup(json_string_value(x));
	return *out ? 0 : -1;
}

static const char *const conf_keys[] = {
	"url", "insecure", "connections", "retries", "stall_seconds",
	"username", "password", "auth_file", "repositories", "format",
	"users", /* who may use the remote: read by fs/net.c */
	NULL
};

/* Fills r from v; returns NULL or what is wrong. */
static const char *conf_remote(json_t *v, struct oci_remote *r)
{
	const char *key;
	json_t *x;
	size_t i, n;

	if (!json_is_object(v))
		return "is not an object";
	json_object_foreach(v, key, x) {
		for (i = 0; conf_keys[i] && strcmp(conf_keys[i], key); i++)
			;
		if (!conf_keys[i])
			return "has an unknown key";
	}
	r->connections = 4;
	r->retries = 5;
	r->stall_s = 30;
	if (conf_str(v, "url", &r->url) < 0 || !r->url)
		return "needs \"url\", a string";
	n = strlen(r->url);
	while (n > 0 && r->url[n - 1] == '/')
		r->url[--n] = 0;
	if (!url_valid(r->url))
		return "\"url\" must be http(s)://host[:port]";
	x = json_object_get(v, "insecure");
	if (x && !json_is_boolean(x))
		return "\"insecure\" must be true or false";
	r->insecure = json_is_true(x);
	if (!strncmp(r->url, "http://", 7) && !r->insecure)
		return "has an http:// url: set \"insecure\": true to allow it";
	if (conf_int(v, "connections", 1, 64, &r->connections) < 0)
		return "\"connections\" must be an integer 1..64";
	if (conf_int(v, "retries", 1, 100, &r->retries) < 0)
		return "\"retries\" must be an integer 1..100";
	if (conf_int(v, "stall_seconds", 1, 3600, &r->stall_s) < 0)
		return "\"stall_seconds\" must be an integer 1..3600";
	if (conf_str(v, "username", &r->username) < 0 ||
	    conf_str(v, "password", &r->password) < 0 ||
	    conf_str(v, "auth_file", &r->auth_file) < 0)
		return "\"username\", \"password\", \"auth_file\" must be strings";
	if (!r->username != !r->password)
		return "needs both \"username\" and \"password\" or neither";
	x = json_object_get(v, "format");
	if (x && (!json_is_string(x) || (strcmp(json_string_value(x), "smip") &&
					 strcmp(json_string_value(x), "modelpack"))))
		return "\"format\" must be \"smip\" or \"modelpack\"";
	r->modelpack = x && !strcmp(json_string_value(x), "modelpack");
	x = json_object_get(v, "repositories");
	if (!x)
		return NULL;
	if (!json_is_array(x))
		return "\"repositories\" must be an array";
	r->repositories = calloc(json_array_size(x) + 1, sizeof(char *));
	if (!r->repositories)
		return "out of memory";
	for (i = 0; i < json_array_size(x); i++) {
		const char *s = json_string_value(json_array_get(x, i));

		if (!s || !oci_repo_valid(s))
			return "\"repositories\" holds an invalid repository name";
		if (!(r->repositories[r->nrepositories++] = strdup(s)))
			return "out of memory";
	}
	return NULL;
}

/*
 * What is wrong with a JSON file that may hold secrets, without quoting it:
 * jansson's message quotes the text "near" the error, which in remotes.json
 * or an auth file is a password or a base64 user:password.
 */
static const char *json_why(const json_error_t *je)
{
	switch (json_error_code(je)) {
	case json_error_out_of_memory:
		return "out of memory";
	case json_error_stack_overflow:
		return "nested too deep";
	case json_error_cannot_open_file:
		return "cannot be read";
	case json_error_invalid_utf8:
		return "invalid UTF-8";
	case json_error_premature_end_of_input:
		return "ends too early";
	case json_error_end_of_input_expected:
		return "text after the end";
	case json_error_null_character:
	case json_error_null_byte_in_key:
		return "NUL byte";
	case json_error_duplicate_key:
		return "duplicate key";
	case json_error_numeric_overflow:
		return "number out of range";
	default:
		return "syntax error";
	}
}

int oci_config_load(const char *path, struct oci_remote **ret, size_t *ret_n,
		    char *err, size_t errlen)
{
	struct oci_remote *r = NULL;
	json_error_t je;
	json_t *root = NULL, *rem, *v;
	const char *name, *why;
	size_t n = 0;
	FILE *f;
	int res = -EINVAL;

	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT) {
			*ret = NULL;
			*ret_n = 0;
			return 0;
		}
		res = -errno;
		errf(err, errlen, "%s: %s", path, strerror(errno));
		return res;
	}
	root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	fclose(f);
	if (!root) {
		errf(err, errlen, "%s: line %d, column %d: %s (not quoted: "
		     "the file holds passwords)", path, je.line, je.column,
		     json_why(&je));
		goto out;
	}
	rem = json_object_get(root, "remotes");
	if (!json_is_object(root) || !json_is_object(rem)) {
		errf(err, errlen, "%s: needs an object \"remotes\"", path);
		goto out;
	}
	r = calloc(json_object_size(rem) + 1, sizeof(*r));
	if (!r) {
		res = -ENOMEM;
		goto out;
	}
	json_object_foreach(rem, name, v) {
		if (!name_valid(name)) {
			errf(err, errlen, "%s: remote \"%s\": the name must be a "
			     "file name (no '/', not hidden)", path, name);
			goto out;
		}
		r[n].name = strdup(name);
		why = r[n].name ? conf_remote(v, &r[n]) : "out of memory";
		n++;
		if (why) {
			errf(err, errlen, "%s: remote \"%s\" %s", path, name, why);
			goto out;
		}
	}
	*ret = r;
	*ret_n = n;
	r = NULL;
	res = 0;
out:
	oci_config_free(r, n);
	json_decref(root);
	return res;
}

/* ---- credentials from the auth files ---- */

/* "https://host:port/v1/" and "host:port" both name host:port. */
static int auth_key_matches(const char *key, const char *host)
{
	const char *p = strstr(key, "://");
	size_t n;

	p = p ? p + 3 : key;
	n = strcspn(p, "/");
	return n == strlen(host) && !strncasecmp(p, host, n);
}

/* 1 and *user, *pass when the file has an entry for host; 0 when not. */
static int auth_file_read(const char *path, const char *host, char **user,
			  char **pass, char *err, size_t errlen)
{
	json_t *root, *auths, *v;
	json_error_t je;
	const char *key, *b64 = NULL;
	unsigned char *raw = NULL;
	size_t n;
	int len, res = 0;
	char *colon;

	root = json_load_file(path, 0, &je);
	if (!root) {
		if (access(path, F_OK) < 0)
			return 0;
		errf(err, errlen, "auth file %s: line %d, column %d: %s (not "
		     "quoted: the file holds passwords)", path, je.line,
		     je.column, json_why(&je));
		return -EINVAL;
	}
	auths = json_object_get(root, "auths");
	json_object_foreach(auths, key, v)
		if (auth_key_matches(key, host) &&
		    (b64 = json_string_value(json_object_get(v, "auth"))))
			break;
	if (!b64)
		goto out;
	n = strlen(b64);
	res = -EINVAL;
	raw = malloc(n / 4 * 3 + 4);
	if (!raw || n % 4 || (len = EVP_DecodeBlock(raw, (const unsigned char *)b64, n)) < 0) {
		errf(err, errlen, "auth file %s: the \"auth\" of %s is not base64",
		     path, key);
		goto out;
	}
	while (n > 0 && b64[--n] == '=')
		len--;
	raw[len] = 0;
	colon = strchr((char *)raw, ':');
	if (!colon || strlen((char *)raw) != (size_t)len) {
		errf(err, errlen, "auth file %s: the \"auth\" of %s is not "
		     "user:password", path, key);
		goto out;
	}
	*colon = 0;
	*user = strdup((char *)raw);
	*pass = strdup(colon + 1);
	res = *user && *pass ? 1 : -ENOMEM;
out:
	if (raw)
		explicit_bzero(raw, n / 4 * 3 + 4);
	free(raw);
	json_decref(root);
	return res;
}

static int find_credentials(struct oci_client *c, const struct oci_remote *r,
			    char *err, size_t errlen)
{
	const char *host = strstr(c->url, "://") + 3;
	const char *env;
	char paths[3][4096];
	int i, np = 0, res;

	if (r->username) {
		c->user = strdup(r->username);
		c->pass = strdup(r->password ? r->password : "");
		return c->user && c->pass ? 0 : -ENOMEM;
	}
	if (r->auth_file)
		snprintf(paths[np++], sizeof(paths[0]), "%s", r->auth_file);
	else {
		if ((env = getenv("REGISTRY_AUTH_FILE")) && *env)
			snprintf(paths[np++], sizeof(paths[0]), "%s", env);
		if ((env = getenv("XDG_RUNTIME_DIR")) && *env)
			snprintf(paths[np++], sizeof(paths[0]),
				 "%s/containers/auth.json", env);
		if ((env = getenv("HOME")) && *env)
			snprintf(paths[np++], sizeof(paths[0]),
				 "%s/.docker/config.json", env);
	}
	for (i = 0; i < np; i++) {
		res = auth_file_read(paths[i], host, &c->user, &c->pass, err,
				     errlen);
		if (res)
			return res < 0 ? res : 0;
	}
	return 0;
}

/* ---- the client ---- */

/* A copy of n strings and a NULL after them, or NULL. */
static char **strv_dup(char *const *src, size_t n)
{
	char **v = calloc(n + 1, sizeof(char *));
	size_t i;

	for (i = 0; v && i < n; i++)
		if (!(v[i] = strdup(src[i]))) {
			oci_strv_free(v, i);
			return NULL;
		}
	return v;
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *arg)
{
	struct oci_client *c = arg;

	pthread_mutex_lock(&c->share_lock[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *arg)
{
	struct oci_client *c = arg;

	pthread_mutex_unlock(&c->share_lock[d]);
}

int oci_client_new(const struct oci_remote *r, struct oci_client **ret,
		   char *err, size_t errlen)
{
	struct oci_client *c;
	int i, res = -ENOMEM;

	if (!r->url || !url_valid(r->url)) {
		errf(err, errlen, "%s: the url must be http(s)://host[:port]",
		     r->name ? r->name : "remote");
		return -EINVAL;
	}
	if (!strncmp(r->url, "http://", 7) && !r->insecure) {
		errf(err, errlen, "%s: %s is plain http: set \"insecure\": true "
		     "to allow it", r->name ? r->name : "remote", r->url);
		return -EINVAL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT))
		return -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_lock[i], NULL);
	c->name = strdup(r->name ? r->name : "remote");
	c->url = strdup(r->url);
	c->insecure = r->insecure;
	c->connections = r->connections > 0 ? r->connections : 4;
	c->retries = r->retries > 0 ? r->retries : 5;
	c->retry = (struct http_retry){ .attempts = c->retries, .first_ms = BACKOFF_MS,
					.max_ms = BACKOFF_MAX_MS, .jitter = 1 };
	c->stall_s = r->stall_s > 0 ? r->stall_s : 30;
	c->share = curl_share_init();
	if (!c->name || !c->url || !c->share)
		goto fail;
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	if (r->nrepositories) {
		if (!(c->repos = strv_dup(r->repositories, r->nrepositories)))
			goto fail;
		c->nrepos = r->nrepositories;
	}
	res = find_credentials(c, r, err, errlen);
	if (res < 0)
		goto fail;
	*ret = c;
	return 0;
fail:
	oci_client_free(c);
	return res;
}

static void token_drop(struct oci_client *c, size_t i)
{
	free(c->tokens[i].scope);
	explicit_bzero(c->tokens[i].value, strlen(c->tokens[i].value));
	free(c->tokens[i].value);
	c->tokens[i] = c->tokens[--c->ntokens];
}

void oci_client_free(struct oci_client *c)
{
	int i;

	if (!c)
		return;
	while (c->ntokens)
		token_drop(c, 0);
	free(c->tokens);
	if (c->share)
		curl_share_cleanup(c->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_lock[i]);
	pthread_mutex_destroy(&c->lock);
	if (c->pass)
		explicit_bzero(c->pass, strlen(c->pass));
	free(c->pass);
	free(c->user);
	free(c->realm);
	free(c->service);
	free(c->name);
	free(c->url);
	oci_strv_free(c->repos, c->nrepos);
	free(c);
	curl_global_cleanup();
}

struct oci_counters *oci_client_counters(struct oci_client *c)
{
	return &c->ctr;
}

void oci_strv_free(char **v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- one attempt: callbacks ---- */

static void answer_reset(struct req *rq)
{
	free(rq->location);
	free(rq->www_auth);
	free(rq->link);
	free(rq->dcd);
	free(rq->ctype_got);
	rq->location = rq->www_auth = rq->link = rq->dcd = rq->ctype_got = NULL;
	rq->status = 0;
	rq->reason[0] = 0;
	rq->has_crange = 0;
	rq->clen = -1;
	rq->errbody_len = 0;
}

static void set_hdr(char **slot, const char *v)
{
	free(*slot);
	*slot = strdup(v);
}

static void header_line(struct req *rq, char *line)
{
	char *v = strchr(line, ':');
	unsigned long long a, b, t;

	if (!strncmp(line, "HTTP/", 5)) {
		/* a new answer: after a redirect or 100 Continue */
		answer_reset(rq);
		v = strchr(line, ' ');
		if (v) {
			rq->status = strtol(v + 1, &v, 10);
			snprintf(rq->reason, sizeof(rq->reason), "%s",
				 v + strspn(v, " "));
		}
		return;
	}
	if (!v)
		return;
	*v++ = 0;
	v += strspn(v, " \t");
	if (!strcasecmp(line, "location"))
		set_hdr(&rq->location, v);
	else if (!strcasecmp(line, "www-authenticate") && !rq->www_auth)
		set_hdr(&rq->www_auth, v);
	else if (!strcasecmp(line, "link"))
		set_hdr(&rq->link, v);
	else if (!strcasecmp(line, "docker-content-digest"))
		set_hdr(&rq->dcd, v);
	else if (!strcasecmp(line, "content-type"))
		set_hdr(&rq->ctype_got, v);
	else if (!strcasecmp(line, "content-length"))
		rq->clen = strtoll(v, NULL, 10);
	else if (!strcasecmp(line, "content-range") &&
		 sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) == 3) {
		rq->has_crange = 1;
		rq->cr_first = a;
		rq->cr_total = t;
	}
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct req *rq = arg;
	size_t len = size * n;
	char line[8192];
	size_t l = len < sizeof(line) - 1 ? len : sizeof(line) - 1;

	memcpy(line, p, l);
	while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
		l--;
	line[l] = 0;
	header_line(rq, line);
	if (rq->sink == SINK_MEM && rq->status >= 200 && rq->status < 300 &&
	    rq->clen >= 0 && (uint64_t)rq->clen > rq->mem_max) {
		rq->toobig = 1;
		return 0;
	}
	return len;
}

/* The first body byte of an attempt: a 200 to a Range request is the whole
 * blob, whose first `start` bytes are not wanted. */
static void body_begins(struct req *rq)
{
	rq->started = 1;
	if (rq->status == 200 && rq->ranged)
		rq->skip = rq->start;
	if (rq->status == 200 && rq->clen >= 0)
		rq->total = rq->clen;
	else if (rq->status == 206 && rq->has_crange)
		rq->total = rq->cr_total;
}

/* Takes what the range wants of [p, p + *len); 0 to stop the transfer. */
static int body_trim(struct req *rq, const char **p, size_t *len)
{
	uint64_t drop = rq->skip < *len ? rq->skip : *len;

	*p += drop;
	*len -= drop;
	rq->skip -= drop;
	if (rq->rlen == UINT64_MAX || rq->got + *len <= rq->rlen)
		return 1;
	if (rq->status != 200) {
		rq->overflow = 1;
		return 0;
	}
	*len = rq->rlen - rq->got;
	rq->complete = 1;
	return 1;
}

/* Appends to a SINK_MEM answer, NUL-terminated; 0 to stop the transfer. */
static int mem_keep(struct req *rq, const char *p, size_t len)
{
	size_t cap = rq->mem_cap ? rq->mem_cap : 4096;
	char *m;

	if (rq->mem_len + len > rq->mem_max) {
		rq->toobig = 1;
		return 0;
	}
	/*
	 * Grown geometrically: a body comes in thousands of pieces, and a
	 * buffer grown to the exact size each time is copied each time (a
	 * 64 MiB blob took minutes under AddressSanitizer).
	 */
	if (rq->mem_len + len + 1 > rq->mem_cap) {
		while (cap < rq->mem_len + len + 1)
			cap *= 2;
		if (cap - 1 > rq->mem_max)
			cap = rq->mem_max + 1;
		m = realloc(rq->mem, cap);
		if (!m)
			return 0;
		rq->mem = m;
		rq->mem_cap = cap;
	}
	m = rq->mem;
	memcpy(m + rq->mem_len, p, len);
	rq->mem_len += len;
	m[rq->mem_len] = 0;
	return 1;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct req *rq = arg;
	size_t len = size * n, keep;
	const char *q = p;
	int r;

	if (rq->status < 200 || rq->status >= 300) {
		keep = ERRBODY_MAX - 1 - rq->errbody_len;
		keep = len < keep ? len : keep;
		memcpy(rq->errbody + rq->errbody_len, p, keep);
		rq->errbody_len += keep;
		rq->errbody[rq->errbody_len] = 0;
		return len;
	}
	atomic_fetch_add(&rq->c->ctr.rx_bytes, len);
	if (!rq->started)
		body_begins(rq);
	if (rq->status == 206 && (!rq->has_crange || rq->cr_first != rq->start)) {
		rq->badrange = 1;
		return 0;
	}
	if (rq->sink == SINK_MEM)
		return mem_keep(rq, p, len) ? len : 0;
	if (rq->sink != SINK_BUF && rq->sink != SINK_CB)
		return len;
	if (!body_trim(rq, &q, &len))
		return 0;
	if (rq->sink == SINK_BUF) {
		memcpy(rq->buf + rq->got, q, len);
	} else if (len) {
		if (rq->md)
			EVP_DigestUpdate(rq->md, q, len);
		r = rq->cb(rq->cbarg, q, len);
		if (r < 0) {
			rq->stop = r;
			return 0;
		}
	}
	rq->got += len;
	if (rq->progress)
		atomic_fetch_add(rq->progress, len);
	return rq->complete ? 0 : size * n;
}

static size_t on_read(char *p, size_t size, size_t n, void *arg)
{
	struct req *rq = arg;
	size_t len = size * n;
	uint64_t left;
	ssize_t r;

	if (rq->body) {
		left = rq->body_len - rq->sent;
		len = len < left ? len : left;
		memcpy(p, rq->body + rq->sent, len);
	} else {
		if (rq->piece_off == rq->piece_len) {
			left = rq->up->size - rq->sent;
			rq->piece_len = left < PIECE ? left : PIECE;
			rq->piece_off = 0;
			if (!rq->piece_len)
				return 0;
			r = rq->up->read(rq->up->arg, rq->piece, rq->piece_len,
					 rq->sent);
			if (r != (ssize_t)rq->piece_len) {
				rq->stop = r < 0 ? (int)r : -EIO;
				rq->piece_len = 0;
				return CURL_READFUNC_ABORT;
			}
		}
		left = rq->piece_len - rq->piece_off;
		len = len < left ? len : left;
		memcpy(p, rq->piece + rq->piece_off, len);
		rq->piece_off += len;
	}
	rq->sent += len;
	atomic_fetch_add(&rq->c->ctr.tx_bytes, len);
	if (rq->progress)
		atomic_fetch_add(rq->progress, len);
	return len;
}

/* A stall: no byte moved either way for stall_s seconds. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct req *rq = arg;
	int64_t now = clock_mono_ms();

	if ((uint64_t)(dlnow + ulnow) != rq->last_bytes) {
		rq->last_bytes = dlnow + ulnow;
		rq->last_ms = now;
	} else if (now - rq->last_ms >= rq->c->stall_s * 1000LL) {
		rq->stalled = 1;
		return 1;
	}
	return 0;
}

/* curl rewinds the body for a redirect or a resent request. */
static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct req *rq = arg;

	if (origin != SEEK_SET || off < 0)
		return CURL_SEEKFUNC_FAIL;
	if (rq->progress)
		atomic_fetch_add(rq->progress, (uint64_t)off - rq->sent);
	rq->sent = off;
	rq->piece_off = rq->piece_len = 0;
	return CURL_SEEKFUNC_OK;
}

/* ---- auth ---- */

/* Reads key="value" (or key=value) from a challenge's parameters. */
static int challenge_param(const char *ch, const char *key, char *out,
			   size_t outlen)
{
	size_t kl = strlen(key), n = 0;
	const char *p = ch;

	while ((p = strcasestr(p, key))) {
		if ((p == ch || strchr(" ,", p[-1])) && p[kl] == '=')
			break;
		p += kl;
	}
	if (!p)
		return 0;
	p += kl + 1;
	if (*p == '"') {
		for (p++; *p && *p != '"' && n + 1 < outlen; p++)
			out[n++] = *p;
	} else {
		for (; *p && *p != ',' && *p != ' ' && n + 1 < outlen; p++)
			out[n++] = *p;
	}
	out[n] = 0;
	return 1;
}

static int run_tasks(struct oci_client *c, struct task *t, size_t n,
		     char *err, size_t errlen);
static void req_init(struct req *rq, struct oci_client *c, const char *method);
static void req_release(struct req *rq);

static int token_step(struct task *k)
{
	struct req *rq = &k->rq;
	struct token *tok = k->ctx;
	json_t *root = json_loads(rq->mem ? rq->mem : "", 0, NULL);
	const char *v = json_string_value(json_object_get(root, "token"));
	json_int_t exp = json_integer_value(json_object_get(root, "expires_in"));
	int r = 0;

	if (!v || !*v)
		v = json_string_value(json_object_get(root, "access_token"));
	if (!v || !*v || strpbrk(v, "\r\n"))
		r = causef(rq, -EPROTO, "the token answer has no token");
	else if (!(tok->value = strdup(v)))
		r = -ENOMEM;
	tok->expires = time(NULL) + (exp > 10 ? exp - 5 : exp > 0 ? exp : 60);
	json_decref(root);
	return r;
}

static int query_add(CURLU *u, const char *key, const char *val)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s=%s", key, val);
	return curl_url_set(u, CURLUPART_QUERY, buf,
			    CURLU_APPENDQUERY | CURLU_URLENCODE) ? -ENOMEM : 0;
}

/* GET realm?service=..&scope=.. (blocking), into *ret (malloc()ed). */
static int token_fetch(struct req *orig, const char *realm,
		       const char *service, char **ret, time_t *ret_expires)
{
	struct oci_client *c = orig->c;
	struct token tok = { 0 };
	struct task k = { 0 };
	char scope[sizeof(orig->scope)], *s, *save = NULL, *url = NULL;
	CURLU *u = curl_url();
	int r = -ENOMEM;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, realm, 0)) {
		r = causef(orig, -EPROTO, "the token realm is not a url");
		goto out;
	}
	if (*service && query_add(u, "service", service) < 0)
		goto out;
	snprintf(scope, sizeof(scope), "%s", orig->scope);
	for (s = strtok_r(scope, " ", &save); s; s = strtok_r(NULL, " ", &save))
		if (query_add(u, "scope", s) < 0)
			goto out;
	req_init(&k.rq, c, "GET");
	if (curl_url_get(u, CURLUPART_URL, &url, 0) || !(k.rq.url = strdup(url)))
		goto out;
	k.rq.noauth = 1;
	k.rq.sink = SINK_MEM;
	k.rq.mem_max = SMALL_MAX;
	k.step = token_step;
	k.ctx = &tok;
	r = run_tasks(c, &k, 1, NULL, 0);
	if (r < 0)
		snprintf(orig->cause, sizeof(orig->cause), "token: %s",
			 k.msg + strlen(c->name) + 2);
	*ret = tok.value;
	*ret_expires = tok.expires;
out:
	req_release(&k.rq);
	curl_free(url);
	curl_url_cleanup(u);
	return r;
}

/* The index of scope's token, or -1; c->lock held. */
static ssize_t token_find(struct oci_client *c, const char *scope)
{
	size_t i;

	for (i = 0; i < c->ntokens; i++)
		if (!strcmp(c->tokens[i].scope, scope))
			return i;
	return -1;
}

static void use_basic(struct req *rq)
{
	curl_easy_setopt(rq->h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
	curl_easy_setopt(rq->h, CURLOPT_USERNAME, rq->c->user);
	curl_easy_setopt(rq->h, CURLOPT_PASSWORD, rq->c->pass);
}

static int token_store(struct oci_client *c, const char *scope,
		       const char *value, time_t expires)
{
	struct token t = { strdup(scope), strdup(value), expires };
	struct token *v;
	ssize_t i;

	if (!t.scope || !t.value)
		goto fail;
	pthread_mutex_lock(&c->lock);
	if ((i = token_find(c, scope)) >= 0)
		token_drop(c, i);
	if (c->ntokens >= TOKENS_MAX)
		token_drop(c, 0);
	v = realloc(c->tokens, (c->ntokens + 1) * sizeof(*v));
	if (v) {
		c->tokens = v;
		v[c->ntokens++] = t;
	}
	pthread_mutex_unlock(&c->lock);
	if (v)
		return 0;
fail:
	free(t.scope);
	free(t.value);
	return -ENOMEM;
}

/* Sets the credentials the client knows to use on the attempt. */
static int auth_apply(struct req *rq)
{
	struct oci_client *c = rq->c;
	char *tok = NULL, *realm = NULL, *service = NULL;
	time_t expires;
	enum auth_mode mode;
	ssize_t i;
	int r = 0;

	rq->used = USED_NONE;
	if (rq->noauth) {
		if (c->user)
			use_basic(rq);
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	mode = c->mode;
	i = mode == AUTH_BEARER ? token_find(c, rq->scope) : -1;
	if (i >= 0 && c->tokens[i].expires > time(NULL))
		tok = strdup(c->tokens[i].value);
	else if (i >= 0)
		token_drop(c, i);
	if (mode == AUTH_BEARER && !tok && c->realm) {
		realm = strdup(c->realm);
		service = strdup(c->service ? c->service : "");
	}
	pthread_mutex_unlock(&c->lock);
	if (mode == AUTH_BASIC && c->user) {
		rq->used = USED_BASIC;
		use_basic(rq);
	} else if (mode == AUTH_BEARER) {
		rq->used = tok ? USED_CACHED : USED_FRESH;
		if (!tok && (!realm || !service))
			r = -ENOMEM;
		else if (!tok && (r = token_fetch(rq, realm, service, &tok,
						    &expires)) == 0)
			r = token_store(c, rq->scope, tok, expires);
		if (r == 0) {
			/* curl sends this to the request's host only, not
			 * after a redirect elsewhere (blob storage) */
			curl_easy_setopt(rq->h, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
			curl_easy_setopt(rq->h, CURLOPT_XOAUTH2_BEARER, tok);
		}
	}
	if (tok)
		explicit_bzero(tok, strlen(tok));
	free(tok);
	free(realm);
	free(service);
	return r;
}

/* A 401: learns the challenge; OUT_AUTH to go again, or -EACCES. */
static int auth_answer(struct req *rq)
{
	struct oci_client *c = rq->c;
	const char *ch = rq->www_auth;
	const char *none = c->user ? "credentials refused"
				   : "authentication required";
	char realm[1024], service[256];
	ssize_t i;

	if (rq->noauth || !ch)
		return causef(rq, -EACCES, "%s", none);
	if (++rq->auth_rounds > AUTH_ROUNDS)
		return causef(rq, -EACCES, "%s (challenges go on)", none);
	if (!strncasecmp(ch, "Basic", 5)) {
		if (!c->user || rq->used == USED_BASIC)
			return causef(rq, -EACCES, "%s", none);
		pthread_mutex_lock(&c->lock);
		c->mode = AUTH_BASIC;
		pthread_mutex_unlock(&c->lock);
		return OUT_AUTH;
	}
	if (strncasecmp(ch, "Bearer", 6))
		return causef(rq, -EACCES, "unsupported challenge %.20s", ch);
	if (rq->used == USED_FRESH)
		return causef(rq, -EACCES, "%s (the token was refused)", none);
	if (!challenge_param(ch + 6, "realm", realm, sizeof(realm)))
		return causef(rq, -EPROTO, "a Bearer challenge without realm");
	if (!challenge_param(ch + 6, "service", service, sizeof(service)))
		service[0] = 0;
	pthread_mutex_lock(&c->lock);
	free(c->realm);
	free(c->service);
	c->realm = strdup(realm);
	c->service = strdup(service);
	c->mode = AUTH_BEARER;
	if (rq->used == USED_CACHED && (i = token_find(c, rq->scope)) >= 0)
		token_drop(c, i);
	pthread_mutex_unlock(&c->lock);
	return OUT_AUTH;
}

/* ---- one attempt ---- */

/* "METHOD /path" of the url, digests shortened, for messages. */
static void req_what(struct req *rq)
{
	const char *p = strstr(rq->url, "://");
	char *d;
	size_t n;

	p = p ? strchr(p + 3, '/') : NULL;
	p = p ? p : "/";
	n = strcspn(p, "?");
	snprintf(rq->what, sizeof(rq->what), "%s %.*s", rq->method,
		 (int)(n < 120 ? n : 120), p);
	for (d = rq->what; (d = strstr(d, "sha256:")); d += 7)
		if (strspn(d + 7, "0123456789abcdef") == 64) {
			memcpy(d + 19, "..", 2);
			memmove(d + 21, d + 71, strlen(d + 71) + 1);
		}
}

static void req_end(struct req *rq)
{
	if (rq->h)
		curl_easy_cleanup(rq->h);
	curl_slist_free_all(rq->hl);
	rq->h = NULL;
	rq->hl = NULL;
}

static void req_release(struct req *rq)
{
	req_end(rq);
	answer_reset(rq);
	free(rq->url);
	free(rq->mem);
	free(rq->piece);
	rq->url = rq->mem = NULL;
	rq->mem_cap = 0;
	rq->piece = NULL;
}

static int hdr_add(struct req *rq, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int hdr_add(struct req *rq, const char *fmt, ...)
{
	struct curl_slist *l;
	char h[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h, sizeof(h), fmt, ap);
	va_end(ap);
	l = curl_slist_append(rq->hl, h);

	if (!l)
		return -ENOMEM;
	rq->hl = l;
	return 0;
}

/*
 * Forgets what the last attempt saw and sent.  Progress gives back bytes
 * that will come again; a SINK_CB stream keeps what it delivered and asks
 * for the rest.
 */
static void attempt_reset(struct req *rq)
{
	answer_reset(rq);
	req_what(rq);
	rq->started = rq->complete = rq->overflow = rq->toobig = 0;
	rq->badrange = rq->stop = rq->stalled = 0;
	rq->retry_errno = -EIO;
	rq->skip = 0;
	rq->mem_len = 0;
	if (rq->sink == SINK_BUF && rq->progress)
		atomic_fetch_sub(rq->progress, rq->got);
	if (rq->sink != SINK_CB)
		rq->got = 0;
	if (rq->progress && rq->sent)
		atomic_fetch_sub(rq->progress, rq->sent);
	rq->sent = 0;
	rq->piece_off = rq->piece_len = 0;
	rq->start = rq->roff + rq->got;
	rq->got0 = rq->got;
}

/* A fresh easy handle for the next attempt of rq. */
static int req_start(struct req *rq)
{
	struct oci_client *c = rq->c;
	const char *protos = c->insecure ? "http,https" : "https";
	CURL *e;
	int r;

	attempt_reset(rq);
	e = rq->h = curl_easy_init();
	if (!e)
		return -ENOMEM;
	curl_easy_setopt(e, CURLOPT_URL, rq->url);
	curl_easy_setopt(e, CURLOPT_SHARE, c->share);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protos);
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, protos);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	/* parallel TCP connections move bulk data better than streams
	 * multiplexed on one */
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)c->stall_s);
	/* curl's low-speed check averages over seconds of history: a stall
	 * right after a burst goes unseen for long; watch the bytes instead */
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, rq);
	rq->last_bytes = 0;
	rq->last_ms = clock_mono_ms();
	curl_easy_setopt(e, CURLOPT_USERAGENT, "llmfs/0.1");
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, rq);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, rq);
	r = hdr_add(rq, "Expect:");
	if (!strcmp(rq->method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(rq->method, "PUT")) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)
				 (rq->body ? rq->body_len : rq->up->size));
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, rq);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, rq);
	} else if (!strcmp(rq->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
	}
	if (rq->accept && r == 0)
		r = hdr_add(rq, "Accept: %s", rq->accept);
	if (rq->ctype && r == 0)
		r = hdr_add(rq, "Content-Type: %s", rq->ctype);
	rq->ranged = rq->start > 0 || rq->rlen != UINT64_MAX;
	if (rq->ranged && r == 0 && rq->rlen == UINT64_MAX)
		r = hdr_add(rq, "Range: bytes=%llu-",
			    (unsigned long long)rq->start);
	else if (rq->ranged && r == 0)
		r = hdr_add(rq, "Range: bytes=%llu-%llu",
			    (unsigned long long)rq->start,
			    (unsigned long long)(rq->roff + rq->rlen - 1));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, rq->hl);
	if (r == 0)
		r = auth_apply(rq);
	atomic_fetch_add(&c->ctr.requests, 1);
	return r;
}

/*
 * curl's codes, by the one map (common/errmap.h); a transient one is
 * retried and, once attempts run out, ends as its own errno.
 */
static int curl_outcome(struct req *rq, CURLcode code)
{
	int r = errno_of_curl(code);

	if (errmap_curl_transient(code)) {
		rq->retry_errno = r;
		r = OUT_RETRY;
	}
	return causef(rq, r, "%s", curl_easy_strerror(code));
}

/* The registry's own words for an error, if its body has them. */
static const char *errbody_code(struct req *rq, char *buf, size_t len)
{
	json_t *root = json_loads(rq->errbody, 0, NULL);
	const char *s = json_string_value(json_object_get(
		json_array_get(json_object_get(root, "errors"), 0), "code"));

	snprintf(buf, len, "%s%.40s%s", s ? " (" : "", s ? s : "", s ? ")" : "");
	json_decref(root);
	return buf;
}

/* HTTP statuses, by the one map (common/errmap.h), as curl_outcome(). */
static int http_error(struct req *rq)
{
	long st = rq->status;
	char code[64], line[160];
	int r;

	snprintf(line, sizeof(line), "%ld %s%s", st, rq->reason,
		 errbody_code(rq, code, sizeof(code)));
	r = errno_of_http(st);
	if (errmap_http_transient(st)) {
		rq->retry_errno = r;
		r = OUT_RETRY;
	}
	return causef(rq, r, "%s", line);
}

/* Checks a 2xx against the blob size expected and the range asked. */
static int body_outcome(struct req *rq)
{
	if (rq->want_total && rq->total && rq->total != rq->want_total)
		return causef(rq, -EIO, "the blob has %llu bytes, the manifest says %llu",
			      (unsigned long long)rq->total,
			      (unsigned long long)rq->want_total);
	if (rq->sink != SINK_BUF && rq->sink != SINK_CB)
		return 0;
	if (rq->status != 206 && rq->status != 200)
		return causef(rq, -EPROTO, "%ld to a GET", rq->status);
	/* a stream asked past the blob's end ends with the blob */
	if (rq->sink == SINK_CB && (rq->rlen == UINT64_MAX ||
	    (rq->total && rq->roff + rq->got == rq->total)))
		return 0;
	if (rq->got != rq->rlen)
		return causef(rq, OUT_RETRY, "short body (%llu of %llu bytes)",
			      (unsigned long long)rq->got,
			      (unsigned long long)rq->rlen);
	return 0;
}

/* What one attempt came to: 0, OUT_RETRY, OUT_AUTH or -errno. */
static int req_outcome(struct req *rq, CURLcode code)
{
	if (rq->stop)
		return causef(rq, rq->stop, "stopped: %s", strerror(-rq->stop));
	if (rq->toobig)
		return causef(rq, -EFBIG, "the answer exceeds %zu bytes",
			      rq->mem_max);
	if (rq->stalled)
		return causef(rq, OUT_RETRY, "stalled (no byte for %d s)",
			      rq->c->stall_s);
	if (rq->overflow)
		return causef(rq, OUT_RETRY, "body longer than asked");
	if (rq->badrange)
		return causef(rq, OUT_RETRY, "Content-Range does not start at %llu",
			      (unsigned long long)rq->start);
	if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && rq->complete))
		return curl_outcome(rq, code);
	if (rq->status == 401)
		return auth_answer(rq);
	if (rq->status >= 200 && rq->status < 300)
		return body_outcome(rq);
	if (rq->lenient && rq->status >= 400 && rq->status < 500)
		return 0;
	return http_error(rq);
}

static void task_fail(struct task *k, int r)
{
	struct oci_client *c = k->rq.c;

	k->done = 1;
	k->status = r;
	if (k->job.attempts >= c->retries)
		snprintf(k->msg, sizeof(k->msg), "%s: %s: %s after %d attempts",
			 c->name, k->rq.what, k->rq.cause, k->job.attempts);
	else
		snprintf(k->msg, sizeof(k->msg), "%s: %s: %s", c->name,
			 k->rq.what, k->rq.cause[0] ? k->rq.cause : strerror(-r));
}

/* After an attempt: 1 when the task goes on, 0 when it is over. */
static int task_after(struct http_engine *e, struct task *k, CURLcode code)
{
	struct req *rq = &k->rq;
	int r = req_outcome(rq, code);

	req_end(rq);
	if (r == 0 && k->step)
		r = k->step(k);
	if (r == 0) {
		k->done = 1;
		return 0;
	}
	if (r == OUT_AUTH || r == OUT_NEXT) {
		k->job.due_ms = 0;
		return 1;
	}
	if (r == OUT_RETRY) {
		/* a stream that moved on starts its count again */
		if (rq->sink == SINK_CB && rq->got > rq->got0) {
			http_job_retry_anew(e, &k->job);
		} else if (!http_job_retry(e, &k->job)) {
			task_fail(k, rq->retry_errno);
			return 0;
		}
		atomic_fetch_add(&rq->c->ctr.retries, 1);
		k->state = k->restart;
		return 1;
	}
	task_fail(k, r);
	return 0;
}

static int task_launch(struct task *k, struct http_engine *e)
{
	int r;

	if (k->prep)
		k->prep(k);
	r = req_start(&k->rq);
	if (r == 0) {
		k->job.h = k->rq.h;
		r = http_engine_add(e, &k->job);
	}
	if (r < 0) {
		req_end(&k->rq);
		task_fail(k, r);
	}
	return r;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

struct task_run {
	struct http_engine e;
	size_t left;                 /* tasks not done */
	struct task *first;          /* the first task that failed */
	int64_t wait;                /* ms until the next task is due */
};

static void task_done(void *arg, struct http_job *job, CURLcode code)
{
	struct task *k = (struct task *)((char *)job - offsetof(struct task, job));
	struct task_run *run = arg;

	k->job.h = NULL;             /* req_end() cleans it up with the request */
	if (task_after(&run->e, k, code) == 0) {
		run->left--;
		if (k->status < 0 && !run->first)
			run->first = k;
	} else {
		/*
		 * Due again: at once (an auth challenge answered) or after its
		 * backoff.  The wait was computed before this answer came.
		 */
		int64_t d = k->job.due_ms - clock_mono_ms();

		run->wait = d < 0 ? 0 : d < run->wait ? d : run->wait;
	}
}

/*
 * Runs the tasks to their end on the engine (common/http.h), up to
 * c->connections attempts in flight.  Returns 0 or the first failure (its
 * message in err).
 */
static int run_tasks(struct oci_client *c, struct task *t, size_t n,
		     char *err, size_t errlen)
{
	struct task_run run = { .left = n };
	size_t i;

	if (http_engine_init(&run.e) < 0)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		t[i].job.retry = &c->retry;
		if (t[i].done)
			run.left--;
	}
	while (run.left) {
		int64_t now = clock_mono_ms(), wait = 1000;

		for (i = 0; i < n && run.e.active < (size_t)c->connections; i++) {
			struct task *k = &t[i];

			if (k->done || k->rq.h)
				continue;
			if (k->job.due_ms > now) {
				wait = k->job.due_ms - now < wait ? k->job.due_ms - now : wait;
				continue;
			}
			if (task_launch(k, &run.e) < 0) {
				run.left--;
				run.first = run.first ? run.first : k;
			}
		}
		run.wait = wait;
		http_engine_collect(&run.e, task_done, &run);
		/* Nothing in flight: a plain sleep, which a test counts (--wrap=nanosleep). */
		if (run.left && !run.e.active && run.wait > 0)
			sleep_ms(run.wait);
		else if (run.left && run.wait > 0)
			http_engine_wait(&run.e, (int)run.wait);
	}
	http_engine_release(&run.e);
	if (!run.first)
		return 0;
	errf(err, errlen, "%s", run.first->msg);
	return run.first->status;
}

/* ---- the calls ---- */

static int req_url(struct req *rq, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int req_url(struct req *rq, const char *fmt, ...)
{
	char path[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	free(rq->url);
	if (asprintf(&rq->url, "%s%s", rq->c->url, path) < 0)
		rq->url = NULL;
	return rq->url ? 0 : -ENOMEM;
}

static void req_init(struct req *rq, struct oci_client *c, const char *method)
{
	rq->c = c;
	rq->method = method;
	rq->rlen = UINT64_MAX;
	rq->clen = -1;
}

static int bad_arg(struct oci_client *c, char *err, size_t errlen,
		   const char *what, const char *s)
{
	errf(err, errlen, "%s: invalid %s \"%.80s\"", c->name, what,
	     s ? s : "(null)");
	return -EINVAL;
}

/*
 * Checks repo and ref (a digest for "blobs", a tag or digest for
 * "manifests"), then sets rq up for METHOD /v2/<repo>/<kind>/<ref> with
 * the pull scope.  rq needs req_release() whatever this returns.
 */
static int req_repo(struct req *rq, struct oci_client *c, const char *method,
		    const char *repo, const char *kind, const char *ref,
		    char *err, size_t errlen)
{
	int blob = !strcmp(kind, "blobs");

	if (!oci_repo_valid(repo))
		return bad_arg(c, err, errlen, "repository", repo);
	if (!digest_valid(ref) && (blob || !oci_tag_valid(ref)))
		return bad_arg(c, err, errlen, blob ? "digest" : "tag or digest",
			       ref);
	req_init(rq, c, method);
	snprintf(rq->scope, sizeof(rq->scope), "repository:%s:pull", repo);
	return req_url(rq, "/v2/%s/%s/%s", repo, kind, ref);
}

/* The next page's url from a Link header, on this registry only. */
static char *link_next(struct req *rq)
{
	const char *a = strchr(rq->link, '<'), *b = a ? strchr(a, '>') : NULL;
	char *next = NULL, *rel;
	size_t n = strlen(rq->c->url);
	CURLU *u;

	if (!b || !strstr(b, "rel=\"next\"") || !(u = curl_url()))
		return NULL;
	rel = strndup(a + 1, b - a - 1);
	if (rel && !curl_url_set(u, CURLUPART_URL, rq->url, 0) &&
	    !curl_url_set(u, CURLUPART_URL, rel, 0))
		curl_url_get(u, CURLUPART_URL, &next, 0);
	if (next && (strncmp(next, rq->c->url, n) || next[n] != '/')) {
		curl_free(next);
		next = NULL;
	}
	free(rel);
	curl_url_cleanup(u);
	return next;
}

/* Appends the names of one page; 0 or -errno (cause set). */
static int list_page(struct req *rq, const char *key, int (*valid)(const char *),
		     char ***v, size_t *n)
{
	json_t *root = json_loads(rq->mem ? rq->mem : "", 0, NULL);
	json_t *arr = json_object_get(root, key);
	size_t i, m = json_array_size(arr);
	char **nv;
	int r = 0;

	if (!json_is_object(root) || (arr && !json_is_array(arr) && !json_is_null(arr))) {
		r = causef(rq, -EPROTO, "malformed JSON answer");
		goto out;
	}
	if (*n + m > OCI_LIST_MAX) {
		r = causef(rq, -EFBIG, "more than %d names", OCI_LIST_MAX);
		goto out;
	}
	nv = realloc(*v, (*n + m + 1) * sizeof(char *));
	if (!nv) {
		r = -ENOMEM;
		goto out;
	}
	*v = nv;
	for (i = 0; i < m; i++) {
		const char *s = json_string_value(json_array_get(arr, i));

		if (!s || !valid(s)) {
			r = causef(rq, -EPROTO, "an invalid name in \"%s\"", key);
			goto out;
		}
		if (!(nv[*n] = strdup(s))) {
			r = -ENOMEM;
			goto out;
		}
		(*n)++;
	}
out:
	json_decref(root);
	return r;
}

static int list_get(struct oci_client *c, const char *repo, char ***ret,
		    size_t *ret_n, char *err, size_t errlen)
{
	struct task k = { 0 };
	struct req *rq = &k.rq;
	char **v = NULL, *next = NULL;
	size_t n = 0, pages;
	int r;

	req_init(rq, c, "GET");
	rq->sink = SINK_MEM;
	rq->mem_max = PAGE_MAX;
	rq->accept = "application/json";
	if (repo) {
		snprintf(rq->scope, sizeof(rq->scope), "repository:%s:pull", repo);
		r = req_url(rq, "/v2/%s/tags/list", repo);
	} else {
		snprintf(rq->scope, sizeof(rq->scope), "registry:catalog:*");
		r = req_url(rq, "/v2/_catalog");
	}
	for (pages = 0; r == 0; pages++) {
		k.done = 0;
		k.job.attempts = rq->auth_rounds = 0;
		r = run_tasks(c, &k, 1, err, errlen);
		if (r < 0)
			break;
		r = list_page(rq, repo ? "tags" : "repositories",
			      repo ? oci_tag_valid : oci_repo_valid, &v, &n);
		if (r == 0 && !rq->link)
			break;
		if (r == 0 && pages >= PAGES_MAX)
			r = causef(rq, -EFBIG, "more than %d pages", PAGES_MAX);
		if (r == 0 && !(next = link_next(rq)))
			r = causef(rq, -EPROTO, "a Link header without a next "
				   "page on this registry");
		if (r < 0) {
			errf(err, errlen, "%s: %s: %s", c->name, rq->what, rq->cause);
			break;
		}
		free(rq->url);
		rq->url = strdup(next);
		curl_free(next);
		r = rq->url ? 0 : -ENOMEM;
	}
	req_release(rq);
	if (r < 0) {
		oci_strv_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int oci_catalog(struct oci_client *c, char ***ret, size_t *ret_n, char *err,
		size_t errlen)
{
	char **v;
	int r = list_get(c, NULL, ret, ret_n, err, errlen);

	if (!c->nrepos || (r != -EACCES && r != -ENOENT && r != -EOPNOTSUPP))
		return r;
	/* the catalog is refused: the configured repositories stand in */
	if (!(v = strv_dup(c->repos, c->nrepos)))
		return -ENOMEM;
	*ret = v;
	*ret_n = c->nrepos;
	return 0;
}

int oci_tags(struct oci_client *c, const char *repo, char ***ret,
	     size_t *ret_n, char *err, size_t errlen)
{
	if (!oci_repo_valid(repo))
		return bad_arg(c, err, errlen, "repository", repo);
	return list_get(c, repo, ret, ret_n, err, errlen);
}

struct mget {
	const char *ref;
	char digest[OCI_DIGEST_LEN];
};

static int manifest_step(struct task *k)
{
	struct req *rq = &k->rq;
	struct mget *g = k->ctx;

	if (!rq->mem_len)
		return causef(rq, -EPROTO, "an empty manifest");
	digest_sha256(rq->mem, rq->mem_len, g->digest);
	if (digest_valid(g->ref) && strcmp(g->ref, g->digest))
		return causef(rq, OUT_RETRY, "the manifest does not match its "
			      "digest");
	if (rq->dcd && strcmp(rq->dcd, g->digest))
		return causef(rq, OUT_RETRY, "the manifest does not match "
			      "Docker-Content-Digest");
	return 0;
}

int oci_manifest_get(struct oci_client *c, const char *repo, const char *ref,
		     char **ret_body, size_t *ret_len, char *type,
		     size_t typelen, char digest[OCI_DIGEST_LEN], char *err,
		     size_t errlen)
{
	struct mget g = { ref, "" };
	struct task k = { .step = manifest_step, .ctx = &g };
	struct req *rq = &k.rq;
	int r;

	r = req_repo(rq, c, "GET", repo, "manifests", ref, err, errlen);
	rq->sink = SINK_MEM;
	rq->mem_max = OCI_MANIFEST_MAX;
	rq->accept = OCI_MT_MANIFEST ", " OCI_MT_INDEX ", " OCI_MT_DOCKER_MANIFEST
		", application/vnd.docker.distribution.manifest.list.v2+json";
	if (r == 0)
		r = run_tasks(c, &k, 1, err, errlen);
	if (r == 0) {
		if (type && typelen)
			snprintf(type, typelen, "%.*s",
				 rq->ctype_got ? (int)strcspn(rq->ctype_got, "; ") : 0,
				 rq->ctype_got ? rq->ctype_got : "");
		memcpy(digest, g.digest, OCI_DIGEST_LEN);
		*ret_body = rq->mem;
		*ret_len = rq->mem_len;
		rq->mem = NULL;
		rq->mem_cap = 0;
	}
	req_release(rq);
	return r;
}

static int put_step(struct task *k)
{
	if (k->rq.status != 201)
		return causef(&k->rq, -EPROTO, "%ld %s to a PUT", k->rq.status,
			      k->rq.reason);
	return 0;
}

int oci_manifest_put(struct oci_client *c, const char *repo, const char *ref,
		     const char *media_type, const void *body, size_t len,
		     char *err, size_t errlen)
{
	struct task k = { .step = put_step };
	struct req *rq = &k.rq;
	char d[OCI_DIGEST_LEN];
	int r;

	r = req_repo(rq, c, "PUT", repo, "manifests", ref, err, errlen);
	if (r < 0)
		goto out;
	if (!media_type || !*media_type || strpbrk(media_type, "\r\n") ||
	    strlen(media_type) > 200) {
		r = bad_arg(c, err, errlen, "media type", media_type);
		goto out;
	}
	if (len > OCI_MANIFEST_MAX) {
		errf(err, errlen, "%s: a manifest of %zu bytes exceeds %u",
		     c->name, len, OCI_MANIFEST_MAX);
		r = -EFBIG;
		goto out;
	}
	digest_sha256(body, len, d);
	if (digest_valid(ref) && strcmp(ref, d)) {
		r = bad_arg(c, err, errlen, "digest (not the body's)", ref);
		goto out;
	}
	rq->ctype = media_type;
	rq->body = body;
	rq->body_len = len;
	snprintf(rq->scope, sizeof(rq->scope), "repository:%s:pull,push", repo);
	r = run_tasks(c, &k, 1, err, errlen);
out:
	req_release(rq);
	return r;
}

int oci_blob_head(struct oci_client *c, const char *repo, const char *digest,
		  uint64_t *ret_size, char *err, size_t errlen)
{
	struct task k = { 0 };
	struct req *rq = &k.rq;
	int r;

	r = req_repo(rq, c, "HEAD", repo, "blobs", digest, err, errlen);
	if (r == 0)
		r = run_tasks(c, &k, 1, err, errlen);
	if (r == 0 && rq->clen < 0) {
		errf(err, errlen, "%s: %s: no Content-Length", c->name, rq->what);
		r = -EPROTO;
	}
	if (r == 0 && ret_size)
		*ret_size = rq->clen;
	req_release(rq);
	return r;
}

static int blob_get_step(struct task *k)
{
	char d[OCI_DIGEST_LEN];

	digest_sha256(k->rq.mem ? k->rq.mem : "", k->rq.mem_len, d);
	if (strcmp(d, k->ctx))
		return causef(&k->rq, OUT_RETRY, "the blob does not match its "
			      "digest");
	return 0;
}

int oci_blob_get(struct oci_client *c, const char *repo, const char *digest,
		 size_t max, void **ret, size_t *ret_len, char *err,
		 size_t errlen)
{
	struct task k = { .step = blob_get_step, .ctx = (void *)digest };
	struct req *rq = &k.rq;
	int r;

	r = req_repo(rq, c, "GET", repo, "blobs", digest, err, errlen);
	rq->sink = SINK_MEM;
	rq->mem_max = max;
	if (r == 0)
		r = run_tasks(c, &k, 1, err, errlen);
	if (r == 0) {
		*ret = rq->mem ? rq->mem : calloc(1, 1);
		*ret_len = rq->mem_len;
		rq->mem = NULL;
		rq->mem_cap = 0;
		r = *ret ? 0 : -ENOMEM;
	}
	req_release(rq);
	return r;
}

static int stream_step(struct task *k)
{
	struct req *rq = &k->rq;
	unsigned char md[32];
	char d[OCI_DIGEST_LEN];
	EVP_MD_CTX *x;

	if (!rq->md || (rq->rlen != UINT64_MAX && rq->got != rq->total))
		return 0;
	x = EVP_MD_CTX_new();
	if (!x || !EVP_MD_CTX_copy_ex(x, rq->md) || !EVP_DigestFinal_ex(x, md, NULL)) {
		EVP_MD_CTX_free(x);
		return -ENOMEM;
	}
	EVP_MD_CTX_free(x);
	digest_of_sha256(md, d);
	if (strcmp(d, k->ctx))
		return causef(rq, -EIO, "the blob does not match its digest");
	return 0;
}

int oci_blob_stream(struct oci_client *c, const char *repo,
		    const char *digest, uint64_t off, uint64_t len,
		    int (*cb)(void *arg, const void *buf, size_t n), void *arg,
		    _Atomic uint64_t *progress, char *err, size_t errlen)
{
	struct task k = { .step = stream_step, .ctx = (void *)digest };
	struct req *rq = &k.rq;
	int r;

	r = req_repo(rq, c, "GET", repo, "blobs", digest, err, errlen);
	if (r < 0 || len == 0)
		goto out;
	rq->sink = SINK_CB;
	rq->cb = cb;
	rq->cbarg = arg;
	rq->progress = progress;
	rq->roff = off;
	rq->rlen = len;
	if (off == 0) {
		rq->md = EVP_MD_CTX_new();
		if (!rq->md || !EVP_DigestInit_ex(rq->md, EVP_sha256(), NULL)) {
			r = -ENOMEM;
			goto out;
		}
	}
	r = run_tasks(c, &k, 1, err, errlen);
out:
	EVP_MD_CTX_free(rq->md);
	req_release(rq);
	return r;
}

struct fetch {
	struct oci_range *r;
	int (*check)(void *arg, struct oci_range *r);
	void *arg;
};

static int fetch_step(struct task *k)
{
	struct fetch *f = k->ctx;
	int r = f->check ? f->check(f->arg, f->r) : 0;

	if (r == -EBADMSG)
		return causef(&k->rq, OUT_RETRY, "the check rejected the bytes");
	if (r < 0)
		return causef(&k->rq, r, "the check failed: %s", strerror(-r));
	return 0;
}

int oci_fetch_ranges(struct oci_client *c, const char *repo,
		     struct oci_range *r, size_t n,
		     int (*check)(void *arg, struct oci_range *r), void *arg,
		     _Atomic uint64_t *progress, char *err, size_t errlen)
{
	struct task *t;
	struct fetch *f;
	size_t i;
	int res = 0;

	if (!oci_repo_valid(repo))
		return bad_arg(c, err, errlen, "repository", repo);
	for (i = 0; i < n; i++)
		if (!digest_valid(r[i].digest))
			return bad_arg(c, err, errlen, "digest", r[i].digest);
	t = calloc(n, sizeof(*t));
	f = calloc(n, sizeof(*f));
	if (!t || !f) {
		res = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n && res == 0; i++) {
		struct req *rq = &t[i].rq;

		f[i] = (struct fetch){ &r[i], check, arg };
		t[i].ctx = &f[i];
		t[i].step = fetch_step;
		t[i].done = r[i].len == 0;
		res = req_repo(rq, c, "GET", repo, "blobs", r[i].digest, err,
			       errlen);
		rq->sink = SINK_BUF;
		rq->buf = r[i].buf;
		rq->roff = r[i].off;
		rq->rlen = r[i].len;
		rq->want_total = r[i].size;
		rq->progress = progress;
	}
	if (res == 0)
		res = run_tasks(c, t, n, err, errlen);
	for (i = 0; i < n; i++)
		r[i].status = res == -ENOMEM && !t[i].done ? -ENOMEM : t[i].status;
out:
	for (i = 0; t && i < n; i++)
		req_release(&t[i].rq);
	free(t);
	free(f);
	return res;
}

enum { UP_HEAD, UP_MOUNT, UP_POST, UP_PUT };

struct upload {
	struct oci_upload *u;
	const char *repo;
	char *put_url;
};

static void up_prep(struct task *k)
{
	struct upload *x = k->ctx;
	struct req *rq = &k->rq;

	rq->up = NULL;
	rq->lenient = 0;
	rq->method = "POST";
	switch (k->state) {
	case UP_HEAD:
		rq->method = "HEAD";
		rq->lenient = 1;
		req_url(rq, "/v2/%s/blobs/%s", x->repo, x->u->digest);
		break;
	case UP_MOUNT:
		req_url(rq, "/v2/%s/blobs/uploads/?mount=%s&from=%s", x->repo,
			x->u->digest, x->u->mount_from);
		break;
	case UP_POST:
		req_url(rq, "/v2/%s/blobs/uploads/", x->repo);
		break;
	case UP_PUT:
		rq->method = "PUT";
		rq->lenient = 1;
		rq->up = x->u;
		free(rq->url);
		rq->url = strdup(x->put_url);
		if (!rq->piece)
			rq->piece = malloc(PIECE);
		break;
	}
}

/* The PUT url: the upload's Location, relative or not, plus ?digest=. */
static int up_location(struct task *k)
{
	struct upload *x = k->ctx;
	struct req *rq = &k->rq;
	char q[OCI_DIGEST_LEN + 8];
	CURLU *u = curl_url();
	int r = -ENOMEM;

	if (!rq->location || !*rq->location) {
		r = causef(rq, -EPROTO, "%ld without a Location", rq->status);
		goto out;
	}
	snprintf(q, sizeof(q), "digest=%s", x->u->digest);
	free(x->put_url);
	x->put_url = NULL;
	if (u && !curl_url_set(u, CURLUPART_URL, rq->url, 0) &&
	    !curl_url_set(u, CURLUPART_URL, rq->location, 0) &&
	    !curl_url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY) &&
	    !curl_url_get(u, CURLUPART_URL, &x->put_url, 0))
		r = OUT_NEXT;
out:
	curl_url_cleanup(u);
	return r;
}

static int up_step(struct task *k)
{
	struct upload *x = k->ctx;
	struct req *rq = &k->rq;

	switch (k->state) {
	case UP_HEAD:
		if (rq->status == 200) {
			x->u->how = OCI_UP_EXISTED;
			return 0;
		}
		if (rq->status != 404)
			return http_error(rq);
		k->state = k->restart = x->u->mount_from ? UP_MOUNT : UP_POST;
		return OUT_NEXT;
	case UP_MOUNT:
		if (rq->status == 201) {
			x->u->how = OCI_UP_MOUNTED;
			return 0;
		}
		/* a 202 is an upload to go on with */
		__attribute__((fallthrough));
	case UP_POST:
		if (rq->status != 202)
			return causef(rq, -EPROTO, "%ld %s to a POST", rq->status,
				      rq->reason);
		k->state = UP_PUT;
		k->restart = UP_POST;
		return up_location(k);
	default:
		if (rq->status == 400 || rq->status == 404)
			return causef(rq, OUT_RETRY, "%ld %s", rq->status, rq->reason);
		if (rq->status >= 400)
			return http_error(rq);
		if (rq->status != 201)
			return put_step(k);
		x->u->how = OCI_UP_SENT;
		free(rq->piece);
		rq->piece = NULL;
		return 0;
	}
}

int oci_upload_blobs(struct oci_client *c, const char *repo,
		     struct oci_upload *u, size_t n, _Atomic uint64_t *progress,
		     char *err, size_t errlen)
{
	struct upload *x;
	struct task *t;
	size_t i;
	int res = 0;

	if (!oci_repo_valid(repo))
		return bad_arg(c, err, errlen, "repository", repo);
	for (i = 0; i < n; i++) {
		if (!digest_valid(u[i].digest))
			return bad_arg(c, err, errlen, "digest", u[i].digest);
		if (u[i].mount_from && !oci_repo_valid(u[i].mount_from))
			return bad_arg(c, err, errlen, "repository", u[i].mount_from);
	}
	t = calloc(n, sizeof(*t));
	x = calloc(n, sizeof(*x));
	if (!t || !x) {
		res = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct req *rq = &t[i].rq;

		x[i] = (struct upload){ &u[i], repo, NULL };
		u[i].how = 0;
		t[i].ctx = &x[i];
		t[i].prep = up_prep;
		t[i].step = up_step;
		req_init(rq, c, "HEAD");
		rq->progress = progress;
		if (u[i].mount_from)
			snprintf(rq->scope, sizeof(rq->scope),
				 "repository:%s:pull,push repository:%s:pull",
				 repo, u[i].mount_from);
		else
			snprintf(rq->scope, sizeof(rq->scope),
				 "repository:%s:pull,push", repo);
	}
	res = run_tasks(c, t, n, err, errlen);
	for (i = 0; i < n; i++)
		u[i].status = t[i].status;
out:
	for (i = 0; t && x && i < n; i++) {
		req_release(&t[i].rq);
		curl_free(x[i].put_url);
	}
	free(t);
	free(x);
	return res;
}
