/*
 * test_oci.c - the registry client against a real registry (run-oci.sh
 * starts it): OCI_URL with htpasswd auth (OCI_USER, OCI_PASS), OCI_PROXY a
 * fault proxy in front of it whose rules are the file OCI_RULES, OCI_BEARER
 * a stand-in bearer token server in front of it (OCI_BEARER_USER/PASS).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "backend/registry/oci.h"
#include "tests/check.h"

static const char *url, *user, *pass, *proxy, *rules_path, *bearer, *tmp;

/*
 * realloc() calls, counted through the linker's --wrap (meson.build): the
 * client's and this file's, not the shared libraries'.  How often an answer
 * kept in memory is copied as it grows.
 */
static _Atomic long reallocs;
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n)
{
	reallocs++;
	return __real_realloc(p, n);
}

/* The client's sleeps (its backoff between attempts), counted the same way. */
static _Atomic long sleeps;
int __real_nanosleep(const struct timespec *req, struct timespec *rem);
int __wrap_nanosleep(const struct timespec *req, struct timespec *rem);
int __wrap_nanosleep(const struct timespec *req, struct timespec *rem)
{
	sleeps++;
	return __real_nanosleep(req, rem);
}
static char err[1024];

static struct oci_client *client_at(const char *u, const char *usr,
				    const char *pw, int retries, int stall_s)
{
	struct oci_remote r = {
		.name = "lab", .url = (char *)u, .insecure = 1,
		.connections = 4, .retries = retries, .stall_s = stall_s,
		.username = (char *)usr, .password = (char *)pw,
	};
	struct oci_client *c = NULL;
	int res = oci_client_new(&r, &c, err, sizeof(err));

	if (res < 0)
		fprintf(stderr, "oci_client_new: %s\n", err);
	CHECK_EQ(res, 0);
	return c;
}

static struct oci_client *client(void)
{
	return client_at(url, user, pass, 5, 30);
}

static void set_rules(const char *json)
{
	char t[4096];
	FILE *f;

	snprintf(t, sizeof(t), "%s.tmp", rules_path);
	f = fopen(t, "w");
	fputs(json, f);
	fclose(f);
	rename(t, rules_path);
}

/* The proxy's count of field for a path class; -1 if none. */
static long long proxy_stat(const char *base, const char *cls, const char *field)
{
	char u[256], body[65536];
	size_t len = 0;
	FILE *f;
	CURL *h = curl_easy_init();
	json_t *root;
	long long v = -1;

	snprintf(u, sizeof(u), "%s/_stats", base);
	f = fmemopen(body, sizeof(body) - 1, "w");
	curl_easy_setopt(h, CURLOPT_URL, u);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
	curl_easy_perform(h);
	curl_easy_cleanup(h);
	len = ftell(f);
	fclose(f);
	body[len] = 0;
	root = json_loads(body, 0, NULL);
	if (json_object_get(json_object_get(root, cls), field))
		v = json_integer_value(json_object_get(json_object_get(root, cls),
						       field));
	json_decref(root);
	return v;
}

static void fill(unsigned char *p, size_t n, unsigned long long seed)
{
	fill_random(p, n, seed);
}

struct mem {
	const unsigned char *p;
	size_t n;
};

static ssize_t mem_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct mem *m = arg;

	if (off + len > m->n)
		return -EIO;
	memcpy(buf, m->p + off, len);
	return len;
}

static void up_init(struct oci_upload *u, struct mem *m, const void *p, size_t n)
{
	memset(u, 0, sizeof(*u));
	m->p = p;
	m->n = n;
	digest_sha256(p, n, u->digest);
	u->size = n;
	u->read = mem_read;
	u->arg = m;
}

static int push_blob(struct oci_client *c, const char *repo, const void *p,
		     size_t n, char digest[OCI_DIGEST_LEN])
{
	struct oci_upload u;
	struct mem m;
	int r;

	up_init(&u, &m, p, n);
	r = oci_upload_blobs(c, repo, &u, 1, NULL, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "push_blob: %s\n", err);
	memcpy(digest, u.digest, OCI_DIGEST_LEN);
	return r;
}

/* Pushes a small image (config {} and one layer) under tag. */
static int push_image(struct oci_client *c, const char *repo, const char *tag,
		      char mdigest[OCI_DIGEST_LEN])
{
	char cfg[OCI_DIGEST_LEN], lay[OCI_DIGEST_LEN], m[2048];
	unsigned char layer[1000];
	int r;

	fill(layer, sizeof(layer), (unsigned long long)strlen(repo) * 7 + tag[0]);
	if ((r = push_blob(c, repo, "{}", 2, cfg)) < 0 ||
	    (r = push_blob(c, repo, layer, sizeof(layer), lay)) < 0)
		return r;
	snprintf(m, sizeof(m),
		 "{\"schemaVersion\":2,\"mediaType\":\"%s\","
		 "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
		 "\"digest\":\"%s\",\"size\":2},"
		 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
		 "\"digest\":\"%s\",\"size\":%zu}]}",
		 OCI_MT_MANIFEST, cfg, lay, sizeof(layer));
	if (mdigest)
		digest_sha256(m, strlen(m), mdigest);
	r = oci_manifest_put(c, repo, tag, OCI_MT_MANIFEST, m, strlen(m), err,
			     sizeof(err));
	if (r < 0)
		fprintf(stderr, "push_image: %s\n", err);
	return r;
}

static int has(char **v, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return 1;
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

/* ---- no network ---- */

static void test_names(void)
{
	CHECK(oci_repo_valid("team/qwen2.5"));
	CHECK(oci_repo_valid("a/b-c__d/e"));
	CHECK(!oci_repo_valid("Team/x"));
	CHECK(!oci_repo_valid("a//b"));
	CHECK(!oci_repo_valid("a/"));
	CHECK(!oci_repo_valid("../x"));
	CHECK(!oci_repo_valid("a/b?x"));
	CHECK(oci_tag_valid("v1.0_rc-1"));
	CHECK(!oci_tag_valid(".x"));
	CHECK(!oci_tag_valid("a/b"));
	CHECK(!digest_valid("sha256:abc"));
	CHECK(digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	CHECK(!digest_valid("sha256:E3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

static void test_config(void)
{
	char path[512];
	struct oci_remote *r = NULL;
	size_t n = 9;

	snprintf(path, sizeof(path), "%s/remotes.json", tmp);
	write_file(path, "{\"remotes\": {\"lab\": {\"url\": \"https://reg.example.com/\","
		   " \"connections\": 8, \"retries\": 3, \"stall_seconds\": 7,"
		   " \"username\": \"u\", \"password\": \"p\","
		   " \"repositories\": [\"team/qwen2.5\"]},"
		   " \"local\": {\"url\": \"http://127.0.0.1:5000\", \"insecure\": true}}}");
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), 0);
	CHECK_EQ(n, 2);
	if (n == 2) {
		CHECK(!strcmp(r[0].name, "lab"));
		CHECK(!strcmp(r[0].url, "https://reg.example.com"));
		CHECK_EQ(r[0].connections, 8);
		CHECK_EQ(r[0].retries, 3);
		CHECK_EQ(r[0].stall_s, 7);
		CHECK_EQ(r[0].nrepositories, 1);
		CHECK_EQ(r[1].insecure, 1);
		CHECK_EQ(r[1].connections, 4);
	}
	oci_config_free(r, n);

	write_file(path, "{\"remotes\": {\"lab\": {\"url\": \"https://x\",}}}");
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "remotes.json") != NULL);
	write_file(path, "{\"remotes\": {\"lab\": {\"url\": \"http://x:5000\"}}}");
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "\"insecure\": true") != NULL);
	write_file(path, "{\"remotes\": {\"lab\": {\"url\": \"ftp://x\"}}}");
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), -EINVAL);
	write_file(path, "{\"remotes\": {\"../x\": {\"url\": \"https://x\"}}}");
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), -EINVAL);
	write_file(path, "{\"remotes\": {\"lab\": {\"url\": \"https://x\", \"retires\": 3}}}");
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "lab") != NULL);
	write_file(path, "{\"remotes\": {\"lab\": {\"url\": \"https://x\", \"connections\": 0}}}");
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), -EINVAL);
	snprintf(path, sizeof(path), "%s/none.json", tmp);
	CHECK_EQ(oci_config_load(path, &r, &n, err, sizeof(err)), 0);
	CHECK_EQ(n, 0);
}

static void test_http_refused(void)
{
	struct oci_remote r = { .name = "lab", .url = (char *)url };
	struct oci_client *c = NULL;

	CHECK_EQ(oci_client_new(&r, &c, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "insecure") != NULL);
	CHECK(c == NULL);
}

static void test_bad_args(void)
{
	struct oci_client *c = client();
	char **v = NULL, *body = NULL, d[OCI_DIGEST_LEN];
	size_t n = 0, len;
	uint64_t size;

	CHECK_EQ(oci_tags(c, "Bad/Repo", &v, &n, err, sizeof(err)), -EINVAL);
	CHECK_EQ(oci_manifest_get(c, "ok/repo", "bad tag", &body, &len, NULL, 0,
				  d, err, sizeof(err)), -EINVAL);
	CHECK_EQ(oci_manifest_get(c, "ok/repo", "sha256:12", &body, &len, NULL, 0,
				  d, err, sizeof(err)), -EINVAL);
	CHECK_EQ(oci_blob_head(c, "ok/repo", "sha256:xyz", &size, err,
			       sizeof(err)), -EINVAL);
	CHECK_EQ(oci_manifest_put(c, "ok/repo", "t", "a\r\nX: y", "{}", 2, err,
				  sizeof(err)), -EINVAL);
	oci_client_free(c);
}

/* ---- the real registry ---- */

static void test_manifests(void)
{
	struct oci_client *c = client();
	char md[OCI_DIGEST_LEN], d[OCI_DIGEST_LEN], type[128];
	char *body = NULL;
	size_t len = 0;

	CHECK_EQ(push_image(c, "team/model", "v1", md), 0);
	CHECK_EQ(oci_manifest_get(c, "team/model", "v1", &body, &len, type,
				  sizeof(type), d, err, sizeof(err)), 0);
	CHECK(!strcmp(d, md));
	CHECK(!strcmp(type, OCI_MT_MANIFEST));
	free(body);
	body = NULL;
	CHECK_EQ(oci_manifest_get(c, "team/model", md, &body, &len, type,
				  sizeof(type), d, err, sizeof(err)), 0);
	CHECK(body && strstr(body, "schemaVersion"));
	free(body);
	body = NULL;
	CHECK_EQ(oci_manifest_get(c, "team/model", "nosuchtag", &body, &len,
				  NULL, 0, d, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "404") != NULL);
	CHECK_EQ(oci_manifest_get(c, "no/such", "v1", &body, &len, NULL, 0, d,
				  err, sizeof(err)), -ENOENT);
	oci_client_free(c);
}

static void test_catalog_tags(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	char name[64], **v = NULL;
	size_t n = 0, i;
	long long before = proxy_stat(proxy, "catalog", "requests");

	set_rules("");
	sleeps = 0;
	for (i = 0; i < 7; i++) {
		snprintf(name, sizeof(name), "cat/r%zu", i);
		CHECK_EQ(push_image(c, name, "latest", NULL), 0);
	}
	/*
	 * Nothing failed, so nothing waited: a request answered with an auth
	 * challenge is sent again at once (it slept a second, the time of a
	 * wait computed before the answer came).
	 */
	CHECK_EQ(sleeps, 0);
	CHECK_EQ(oci_catalog(c, &v, &n, err, sizeof(err)), 0);
	CHECK(n >= 7);
	for (i = 0; i < 7; i++) {
		snprintf(name, sizeof(name), "cat/r%zu", i);
		CHECK(has(v, n, name));
	}
	/* three names a page (registry.sh): several pages were followed */
	CHECK(proxy_stat(proxy, "catalog", "requests") - (before < 0 ? 0 : before) >= 3);
	oci_strv_free(v, n);

	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "t%zu", i);
		CHECK_EQ(push_image(c, "cat/tagged", name, NULL), 0);
	}
	v = NULL;
	CHECK_EQ(oci_tags(c, "cat/tagged", &v, &n, err, sizeof(err)), 0);
	CHECK_EQ(n, 5);
	CHECK(has(v, n, "t0") && has(v, n, "t4"));
	oci_strv_free(v, n);
	CHECK_EQ(oci_tags(c, "cat/nosuch", &v, &n, err, sizeof(err)), -ENOENT);
	oci_client_free(c);
}

#define BIG (64u << 20)
#define NSMALL 6
#define SMALL (3u << 20)

static unsigned char *big;
static char big_digest[OCI_DIGEST_LEN];

static void test_uploads(void)
{
	struct oci_client *c = client();
	struct oci_upload u[NSMALL + 1];
	struct mem m[NSMALL + 1];
	unsigned char *small = malloc(NSMALL * SMALL);
	_Atomic uint64_t progress = 0;
	uint64_t size = 0;
	size_t i;

	big = malloc(BIG);
	fill(big, BIG, 42);
	fill(small, NSMALL * SMALL, 43);
	for (i = 0; i < NSMALL; i++)
		up_init(&u[i], &m[i], small + i * SMALL, SMALL);
	up_init(&u[NSMALL], &m[NSMALL], big, BIG);
	memcpy(big_digest, u[NSMALL].digest, OCI_DIGEST_LEN);
	CHECK_EQ(oci_upload_blobs(c, "up/a", u, NSMALL + 1, &progress, err,
				  sizeof(err)), 0);
	for (i = 0; i <= NSMALL; i++) {
		CHECK_EQ(u[i].status, 0);
		CHECK_EQ(u[i].how, OCI_UP_SENT);
	}
	CHECK_EQ(progress, NSMALL * SMALL + BIG);
	CHECK(oci_client_counters(c)->tx_bytes >= NSMALL * SMALL + BIG);
	CHECK_EQ(oci_blob_head(c, "up/a", big_digest, &size, err, sizeof(err)), 0);
	CHECK_EQ(size, BIG);

	CHECK_EQ(oci_upload_blobs(c, "up/a", u, NSMALL + 1, NULL, err,
				  sizeof(err)), 0);
	for (i = 0; i <= NSMALL; i++)
		CHECK_EQ(u[i].how, OCI_UP_EXISTED);

	u[NSMALL].mount_from = "up/a";
	CHECK_EQ(oci_upload_blobs(c, "up/b", &u[NSMALL], 1, NULL, err,
				  sizeof(err)), 0);
	CHECK_EQ(u[NSMALL].how, OCI_UP_MOUNTED);
	CHECK_EQ(oci_blob_head(c, "up/b", big_digest, &size, err, sizeof(err)), 0);
	/* a mount from a repository without the blob falls back to a PUT */
	u[0].mount_from = "up/nothing";
	CHECK_EQ(oci_upload_blobs(c, "up/c", &u[0], 1, NULL, err, sizeof(err)), 0);
	CHECK_EQ(u[0].how, OCI_UP_SENT);
	CHECK_EQ(oci_blob_head(c, "up/c", u[1].digest, &size, err, sizeof(err)),
		 -ENOENT);
	free(small);
	oci_client_free(c);
}

struct ctx {
	const unsigned char *src;
	int calls, bad;
};

static int check_range(void *arg, struct oci_range *r)
{
	struct ctx *x = arg;

	x->calls++;
	if (memcmp(r->buf, x->src + r->off, r->len)) {
		x->bad++;
		return -EBADMSG;
	}
	return 0;
}

static void test_ranges(void)
{
	struct oci_client *c = client();
	struct oci_range r[64];
	struct ctx x = { big, 0, 0 };
	_Atomic uint64_t progress = 0;
	uint64_t total = 0;
	size_t i;

	if (!big)
		return;
	for (i = 0; i < 64; i++) {
		uint64_t off = (uint64_t)(i * 1048573u) % (BIG - 3000000);

		r[i] = (struct oci_range){ big_digest, off, 1000 + i * 40000,
					   malloc(1000 + i * 40000), 1, NULL, 0 };
		total += r[i].len;
	}
	r[0].off = 0;
	r[63].off = BIG - r[63].len;
	CHECK_EQ(oci_fetch_ranges(c, "up/a", r, 64, check_range, &x, &progress,
				  err, sizeof(err)), 0);
	CHECK_EQ(x.calls, 64);
	CHECK_EQ(x.bad, 0);
	CHECK_EQ(progress, total);
	for (i = 0; i < 64; i++) {
		CHECK_EQ(r[i].status, 0);
		CHECK(!memcmp(r[i].buf, big + r[i].off, r[i].len));
		free(r[i].buf);
	}
	oci_client_free(c);
}

struct sink {
	unsigned char *p;
	size_t n, cap;
};

static int sink_cb(void *arg, const void *buf, size_t n)
{
	struct sink *s = arg;

	if (s->n + n > s->cap)
		return -ENOSPC;
	memcpy(s->p + s->n, buf, n);
	s->n += n;
	return 0;
}

static void test_stream(void)
{
	struct oci_client *c = client();
	struct sink s = { malloc(BIG), 0, BIG };
	_Atomic uint64_t progress = 0;
	void *p = NULL;
	size_t len = 0;

	if (!big)
		return;
	CHECK_EQ(oci_blob_stream(c, "up/a", big_digest, 0, UINT64_MAX, sink_cb,
				 &s, &progress, err, sizeof(err)), 0);
	CHECK_EQ(s.n, BIG);
	CHECK_EQ(progress, BIG);
	CHECK(!memcmp(s.p, big, BIG));
	s.n = 0;
	CHECK_EQ(oci_blob_stream(c, "up/a", big_digest, 12345, 1000000, sink_cb,
				 &s, NULL, err, sizeof(err)), 0);
	CHECK_EQ(s.n, 1000000);
	CHECK(!memcmp(s.p, big + 12345, 1000000));
	s.n = 0;
	s.cap = 100;
	CHECK_EQ(oci_blob_stream(c, "up/a", big_digest, 0, UINT64_MAX, sink_cb,
				 &s, NULL, err, sizeof(err)), -ENOSPC);
	reallocs = 0;
	CHECK_EQ(oci_blob_get(c, "up/a", big_digest, BIG, &p, &len, err,
			      sizeof(err)), 0);
	CHECK_EQ(len, BIG);
	CHECK(p && !memcmp(p, big, BIG));
	/*
	 * The 64 MiB come in thousands of pieces of at most 16 KiB.  A buffer
	 * grown to the exact size at each piece is copied each time (about
	 * 4,000 reallocs, 128 GiB copied: minutes under AddressSanitizer, whose
	 * realloc always moves); grown geometrically, some 20.
	 */
	fprintf(stderr, "test_stream: %ld reallocs for a %u byte blob\n",
		(long)reallocs, BIG);
	CHECK(reallocs <= 64);
	free(p);
	CHECK_EQ(oci_blob_get(c, "up/a", big_digest, 1000, &p, &len, err,
			      sizeof(err)), -EFBIG);
	free(s.p);
	oci_client_free(c);
}

/* ---- auth ---- */

static void test_wrong_password(void)
{
	struct oci_client *c = client_at(url, user, "WrongPassw0rd-xyz", 5, 30);
	char **v = NULL;
	size_t n = 0;

	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), -EACCES);
	CHECK(strstr(err, "credentials refused") != NULL);
	CHECK(strstr(err, "WrongPassw0rd") == NULL);
	oci_client_free(c);
}

static void test_no_credentials(void)
{
	struct oci_client *c;
	char home[512], **v = NULL;
	size_t n = 0;

	snprintf(home, sizeof(home), "%s/emptyhome", tmp);
	mkdir(home, 0700);
	setenv("HOME", home, 1);
	unsetenv("REGISTRY_AUTH_FILE");
	unsetenv("XDG_RUNTIME_DIR");
	c = client_at(url, NULL, NULL, 5, 30);
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), -EACCES);
	CHECK(strstr(err, "authentication required") != NULL);
	oci_client_free(c);
}

static void test_auth_file(void)
{
	char path[1100], text[1024], up[256], b64[512], **v = NULL;
	const char *host = strstr(url, "://") + 3;
	struct oci_client *c;
	size_t n = 0;

	snprintf(up, sizeof(up), "%s:%s", user, pass);
	EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)up, strlen(up));
	snprintf(path, sizeof(path), "%s/auth.json", tmp);
	snprintf(text, sizeof(text), "{\"auths\": {\"other:1\": {\"auth\": \"eDp5\"},"
		 " \"%s\": {\"auth\": \"%s\"}}, \"credsStore\": \"desktop\"}",
		 host, b64);
	write_file(path, text);
	setenv("REGISTRY_AUTH_FILE", path, 1);
	c = client_at(url, NULL, NULL, 5, 30);
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), 0);
	CHECK(has(v, n, "v1"));
	oci_strv_free(v, n);
	oci_client_free(c);

	/* a key with a scheme, in ~/.docker/config.json */
	snprintf(text, sizeof(text), "%s/emptyhome/.docker", tmp);
	mkdir(text, 0700);
	snprintf(path, sizeof(path), "%s/config.json", text);
	snprintf(text, sizeof(text), "{\"auths\": {\"http://%s\": {\"auth\": \"%s\"}}}",
		 host, b64);
	write_file(path, text);
	unsetenv("REGISTRY_AUTH_FILE");
	c = client_at(url, NULL, NULL, 5, 30);
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), 0);
	oci_strv_free(v, n);
	oci_client_free(c);
	unlink(path);
}

static void test_bearer(void)
{
	const char *bu = getenv("OCI_BEARER_USER"), *bp = getenv("OCI_BEARER_PASS");
	struct oci_client *c = client_at(bearer, bu, bp, 5, 30);
	char **v = NULL, d[OCI_DIGEST_LEN], *body = NULL;
	size_t n = 0, len;
	long long tokens;

	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), 0);
	CHECK(has(v, n, "v1"));
	oci_strv_free(v, n);
	tokens = proxy_stat(bearer, "token", "requests");
	CHECK_EQ(tokens, 1);
	/* the same scope again: the cached token */
	CHECK_EQ(oci_manifest_get(c, "team/model", "v1", &body, &len, NULL, 0, d,
				  err, sizeof(err)), 0);
	free(body);
	CHECK_EQ(proxy_stat(bearer, "token", "requests"), tokens);
	/* a push scope is a token of its own */
	CHECK_EQ(push_image(c, "team/bearer", "v1", NULL), 0);
	CHECK(proxy_stat(bearer, "token", "requests") > tokens);
	oci_client_free(c);

	c = client_at(bearer, bu, "wrong", 5, 30);
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), -EACCES);
	CHECK(strstr(err, "wrong") == NULL);
	oci_client_free(c);
	c = client_at(bearer, NULL, NULL, 5, 30);
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), -EACCES);
	CHECK(strstr(err, "authentication required") != NULL);
	oci_client_free(c);
}

/* ---- faults (through the proxy) ---- */

static char fault_digest[OCI_DIGEST_LEN];
static unsigned char *fault_src;
#define FAULT_LEN (4u << 20)

static void fault_setup(void)
{
	struct oci_client *c = client();

	fault_src = malloc(FAULT_LEN);
	fill(fault_src, FAULT_LEN, 77);
	CHECK_EQ(push_blob(c, "faults/a", fault_src, FAULT_LEN, fault_digest), 0);
	oci_client_free(c);
}

static void rule(const char *action, const char *extra)
{
	char j[1024];

	snprintf(j, sizeof(j), "{\"rules\": [{\"path\": \"/v2/faults/a/blobs/sha256:\","
		 " \"method\": \"GET\", \"action\": \"%s\"%s}]}", action, extra);
	set_rules(j);
}

static void test_fault_503(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	void *p = NULL;
	size_t len = 0;

	rule("status", ", \"status\": 503, \"count\": 2");
	CHECK_EQ(oci_blob_get(c, "faults/a", fault_digest, FAULT_LEN, &p, &len,
			      err, sizeof(err)), 0);
	CHECK_EQ(len, FAULT_LEN);
	CHECK(p && !memcmp(p, fault_src, FAULT_LEN));
	CHECK_EQ(oci_client_counters(c)->retries, 2);
	free(p);
	set_rules("");
	oci_client_free(c);
}

static void test_fault_drop_resume(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 3, 30);
	struct sink s = { malloc(FAULT_LEN), 0, FAULT_LEN };

	/* more drops than retries: each resumes where the last one stopped */
	rule("drop", ", \"after\": 700000, \"count\": 4");
	CHECK_EQ(oci_blob_stream(c, "faults/a", fault_digest, 0, UINT64_MAX,
				 sink_cb, &s, NULL, err, sizeof(err)), 0);
	CHECK_EQ(s.n, FAULT_LEN);
	CHECK(!memcmp(s.p, fault_src, FAULT_LEN));
	CHECK(oci_client_counters(c)->rx_bytes < FAULT_LEN + 1000000);
	free(s.p);
	set_rules("");
	oci_client_free(c);
}

static void fetch_one(struct oci_client *c, uint64_t off, uint64_t len,
		      struct ctx *x, int want)
{
	struct oci_range r = { fault_digest, off, len, malloc(len), 1, NULL, 0 };

	CHECK_EQ(oci_fetch_ranges(c, "faults/a", &r, 1, check_range, x, NULL,
				  err, sizeof(err)), want);
	CHECK_EQ(r.status, want);
	if (want == 0)
		CHECK(!memcmp(r.buf, fault_src + off, len));
	free(r.buf);
}

static void test_fault_truncate(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	struct ctx x = { 0 };

	x.src = fault_src;
	rule("truncate", ", \"count\": 2");
	fetch_one(c, 100, 2000000, &x, 0);
	CHECK_EQ(x.calls, 1);
	CHECK_EQ(oci_client_counters(c)->retries, 2);
	set_rules("");
	oci_client_free(c);
}

static void test_fault_flip(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	struct ctx x = { 0 };
	struct sink s = { malloc(FAULT_LEN), 0, FAULT_LEN };

	x.src = fault_src;
	rule("flip", ", \"count\": 1");
	fetch_one(c, 5000, 1000000, &x, 0);
	CHECK_EQ(x.calls, 2);
	CHECK_EQ(x.bad, 1);
	/* a flipped byte in a whole stream: the digest catches it */
	rule("flip", ", \"count\": 1, \"after\": 3000000");
	CHECK_EQ(oci_blob_stream(c, "faults/a", fault_digest, 0, UINT64_MAX,
				 sink_cb, &s, NULL, err, sizeof(err)), -EIO);
	CHECK(strstr(err, "digest") != NULL);
	free(s.p);
	set_rules("");
	oci_client_free(c);
}

static void test_fault_stall(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 2);
	struct ctx x = { 0 };
	time_t t0 = time(NULL);

	x.src = fault_src;
	rule("stall", ", \"count\": 1, \"seconds\": 6");
	fetch_one(c, 0, 300000, &x, 0);
	CHECK(time(NULL) - t0 >= 2);
	CHECK(time(NULL) - t0 < 6);
	CHECK_EQ(oci_client_counters(c)->retries, 1);
	rule("stall", ", \"count\": 1, \"seconds\": 6, \"after\": 100000");
	t0 = time(NULL);
	fetch_one(c, 0, 300000, &x, 0);
	CHECK(time(NULL) - t0 < 6);
	CHECK_EQ(oci_client_counters(c)->retries, 2);
	set_rules("");
	oci_client_free(c);
}

static void test_fault_every_attempt(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 3, 30);
	struct ctx x = { 0 };

	x.src = fault_src;
	/* 5xx to the last attempt ends as the one map says (common/errmap.h) */
	rule("status", ", \"status\": 503, \"count\": -1");
	fetch_one(c, 0, 1000, &x, -EREMOTEIO);
	fprintf(stderr, "  (message: %s)\n", err);
	CHECK(strstr(err, "lab: GET /v2/faults/a/blobs/sha256:") != NULL);
	CHECK(strstr(err, "503") != NULL);
	CHECK(strstr(err, "after 3 attempts") != NULL);
	CHECK(strstr(err, pass) == NULL);
	set_rules("");
	oci_client_free(c);
}

static void test_fault_upload(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	unsigned char *p = malloc(5u << 20);
	_Atomic uint64_t progress = 0;
	struct oci_upload u;
	struct mem m;

	fill(p, 5u << 20, 99);
	up_init(&u, &m, p, 5u << 20);
	set_rules("{\"rules\": [{\"path\": \"/blobs/uploads/\", \"method\": \"PUT\","
		  " \"action\": \"status\", \"status\": 503, \"count\": 2}]}");
	CHECK_EQ(oci_upload_blobs(c, "faults/up", &u, 1, &progress, err,
				  sizeof(err)), 0);
	CHECK_EQ(u.how, OCI_UP_SENT);
	CHECK_EQ(progress, 5u << 20);
	CHECK_EQ(oci_client_counters(c)->retries, 2);
	set_rules("");
	free(p);
	oci_client_free(c);
}

/* A blob read redirected to "storage" on another host: followed, and the
 * credentials are not sent there. */
static void test_redirect(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	const char *port = strrchr(proxy, ':') + 1;
	struct ctx x = { 0 };
	char j[512];
	void *p = NULL;
	size_t len = 0;

	x.src = fault_src;
	snprintf(j, sizeof(j), "{\"rules\": [{\"path\": \"/v2/faults/a/blobs/sha256:\","
		 " \"method\": \"GET\", \"action\": \"redirect\", \"count\": -1,"
		 " \"to\": \"http://localhost:%s\"}]}", port);
	set_rules(j);
	if (oci_blob_get(c, "faults/a", fault_digest, FAULT_LEN, &p, &len, err,
			 sizeof(err)) < 0)
		fprintf(stderr, "  (message: %s)\n", err);
	CHECK(p && len == FAULT_LEN && !memcmp(p, fault_src, FAULT_LEN));
	free(p);
	fetch_one(c, 4096, 100000, &x, 0);
	CHECK(proxy_stat(proxy, "storage_noauth", "requests") >= 2);
	CHECK_EQ(proxy_stat(proxy, "storage_auth", "requests"), -1);
	set_rules("");
	oci_client_free(c);
}

/* Manifests are checked against Docker-Content-Digest and their digest. */
static void test_manifest_digest(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 3, 30);
	char d[OCI_DIGEST_LEN], md[OCI_DIGEST_LEN], *body = NULL;
	size_t len;

	set_rules("{\"rules\": [{\"path\": \"/v2/team/model/manifests/\","
		  " \"method\": \"GET\", \"action\": \"flip\", \"count\": 1}]}");
	CHECK_EQ(oci_manifest_get(c, "team/model", "v1", &body, &len, NULL, 0,
				  md, err, sizeof(err)), 0);
	CHECK_EQ(oci_client_counters(c)->retries, 1);
	free(body);
	body = NULL;
	set_rules("{\"rules\": [{\"path\": \"/v2/team/model/manifests/\","
		  " \"method\": \"GET\", \"action\": \"flip\", \"count\": -1}]}");
	CHECK_EQ(oci_manifest_get(c, "team/model", md, &body, &len, NULL, 0, d,
				  err, sizeof(err)), -EIO);
	CHECK(strstr(err, "does not match") != NULL);
	CHECK(body == NULL);
	set_rules("");
	oci_client_free(c);
}

/* A registry that ignores Range answers 200 with the whole blob. */
static void test_no_range_support(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	struct ctx x = { 0 };
	struct sink s = { malloc(FAULT_LEN), 0, FAULT_LEN };

	x.src = fault_src;
	rule("norange", ", \"count\": -1");
	fetch_one(c, 777777, 100000, &x, 0);
	fetch_one(c, 0, 4096, &x, 0);
	CHECK_EQ(oci_blob_stream(c, "faults/a", fault_digest, 1000, 5000,
				 sink_cb, &s, NULL, err, sizeof(err)), 0);
	CHECK_EQ(s.n, 5000);
	CHECK(!memcmp(s.p, fault_src + 1000, 5000));
	/* and a dropped connection resumed from the middle of such a blob */
	s.n = 0;
	set_rules("{\"rules\": [{\"path\": \"/v2/faults/a/blobs/\", \"action\": \"drop\","
		  " \"after\": 1500000, \"count\": 1}, {\"path\": \"/v2/faults/a/blobs/\","
		  " \"action\": \"norange\", \"count\": -1}]}");
	CHECK_EQ(oci_blob_stream(c, "faults/a", fault_digest, 0, UINT64_MAX,
				 sink_cb, &s, NULL, err, sizeof(err)), 0);
	CHECK_EQ(s.n, FAULT_LEN);
	CHECK(!memcmp(s.p, fault_src, FAULT_LEN));
	free(s.p);
	set_rules("");
	oci_client_free(c);
}

struct thread_arg {
	struct oci_client *c;
	int fails;
};

static void *fetch_thread(void *arg)
{
	struct thread_arg *t = arg;
	struct ctx x = { fault_src, 0, 0 };
	struct oci_range r[8];
	int i;

	for (i = 0; i < 8; i++)
		r[i] = (struct oci_range){ fault_digest, i * 300000u, 200000,
					   malloc(200000), 1, NULL, 0 };
	if (oci_fetch_ranges(t->c, "faults/a", r, 8, check_range, &x, NULL,
			     NULL, 0) < 0 || x.bad)
		t->fails++;
	for (i = 0; i < 8; i++)
		free(r[i].buf);
	return NULL;
}

/* One client, many threads: shared DNS answers, TLS sessions and tokens. */
static void test_threads(void)
{
	const char *bu = getenv("OCI_BEARER_USER"), *bp = getenv("OCI_BEARER_PASS");
	struct oci_client *c = client_at(bearer, bu, bp, 5, 30);
	struct thread_arg t[4];
	pthread_t th[4];
	int i;

	for (i = 0; i < 4; i++) {
		t[i] = (struct thread_arg){ c, 0 };
		pthread_create(&th[i], NULL, fetch_thread, &t[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(t[i].fails, 0);
	}
	oci_client_free(c);
}

/* A 401 to a cached token: dropped, and the flow runs once more. */
static void test_token_revoked(void)
{
	const char *bu = getenv("OCI_BEARER_USER"), *bp = getenv("OCI_BEARER_PASS");
	struct oci_client *c = client_at(bearer, bu, bp, 5, 30);
	char **v = NULL, u[256];
	size_t n = 0;
	long long before;
	CURL *h = curl_easy_init();

	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), 0);
	oci_strv_free(v, n);
	before = proxy_stat(bearer, "token", "requests");
	snprintf(u, sizeof(u), "%s/_revoke", bearer);
	curl_easy_setopt(h, CURLOPT_URL, u);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fwrite);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, stderr);
	curl_easy_perform(h);
	curl_easy_cleanup(h);
	v = NULL;
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), 0);
	CHECK(has(v, n, "v1"));
	oci_strv_free(v, n);
	CHECK_EQ(proxy_stat(bearer, "token", "requests"), before + 1);
	oci_client_free(c);
}

static void test_hostile(void)
{
	struct oci_client *c = client_at(proxy, user, pass, 5, 30);
	char d[OCI_DIGEST_LEN], **v = NULL, *body = NULL;
	size_t n = 0, len;

	set_rules("{\"rules\": [{\"path\": \"/manifests/\", \"action\": \"replace\","
		  " \"size\": 5000000, \"count\": -1}]}");
	CHECK_EQ(oci_manifest_get(c, "team/model", "v1", &body, &len, NULL, 0, d,
				  err, sizeof(err)), -EFBIG);
	set_rules("{\"rules\": [{\"path\": \"/tags/list\", \"action\": \"replace\","
		  " \"body\": \"{\\\"name\\\": \\\"x\\\", \\\"tags\\\": [1, 2\", \"count\": -1}]}");
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), -EPROTO);
	set_rules("{\"rules\": [{\"path\": \"/tags/list\", \"action\": \"replace\","
		  " \"body\": \"{\\\"tags\\\": [\\\"../../x\\\"]}\", \"count\": -1}]}");
	CHECK_EQ(oci_tags(c, "team/model", &v, &n, err, sizeof(err)), -EPROTO);
	set_rules("");
	oci_client_free(c);
}

int main(void)
{
	url = getenv("OCI_URL");
	user = getenv("OCI_USER");
	pass = getenv("OCI_PASS");
	proxy = getenv("OCI_PROXY");
	rules_path = getenv("OCI_RULES");
	bearer = getenv("OCI_BEARER");
	tmp = getenv("OCI_TMP");
	if (!url || !proxy || !rules_path || !bearer || !tmp) {
		fprintf(stderr, "test_oci: run through run-oci.sh (no registry)\n");
		return 77;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	RUN(test_names);
	RUN(test_config);
	RUN(test_http_refused);
	RUN(test_bad_args);
	RUN(test_manifests);
	RUN(test_catalog_tags);
	RUN(test_uploads);
	RUN(test_ranges);
	RUN(test_stream);
	RUN(test_wrong_password);
	RUN(test_bearer);
	fault_setup();
	RUN(test_fault_503);
	RUN(test_fault_drop_resume);
	RUN(test_fault_truncate);
	RUN(test_fault_flip);
	RUN(test_fault_stall);
	RUN(test_fault_every_attempt);
	RUN(test_fault_upload);
	RUN(test_redirect);
	RUN(test_manifest_digest);
	RUN(test_no_range_support);
	RUN(test_threads);
	RUN(test_token_revoked);
	RUN(test_hostile);
	RUN(test_no_credentials);
	RUN(test_auth_file);
	free(big);
	free(fault_src);
	curl_global_cleanup();
	return check_status();
}
