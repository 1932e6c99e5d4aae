/*
 * test_layout.c - model layouts: manifests shaped as Ollama, Docker Model
 * Runner and ModelPack tools write them list the right files at the right
 * bytes; tar layers (our own writer and the system tar) list their members;
 * hostile manifests and tars are refused with a reason; and a ModelPack
 * manifest from layout_modelpack_build() parses back to its files.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

#include <jansson.h>

#include "backend/registry/layout.h"
#include "common/hex.h"
#include "tests/check.h"

/* ---- blobs served through the fetch callback ---- */

#define SYNTH_DIGEST \
	"sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

struct blob {
	char digest[OCI_DIGEST_LEN];
	unsigned char *data;
	size_t len;
};

struct store {
	struct blob b[64];
	size_t n;
	size_t fetches;
	int fail;            /* answer every fetch with this, if set */
	uint64_t synth_n;    /* members of the synthetic tar SYNTH_DIGEST */
};

static const char *store_put(struct store *s, const void *p, size_t n)
{
	struct blob *b;

	if (s->n == sizeof(s->b) / sizeof(s->b[0]))
		abort();
	b = &s->b[s->n++];

	b->data = malloc(n ? n : 1);
	memcpy(b->data, p, n);
	b->len = n;
	digest_sha256(p, n, b->digest);
	return b->digest;
}

static const char *store_str(struct store *s, const char *text)
{
	return store_put(s, text, strlen(text));
}

static void store_release(struct store *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->b[i].data);
	s->n = 0;
}

/* A tar of synth_n empty files "f<i>", made up block by block. */
static void synth_block(uint64_t k, uint64_t n, unsigned char *h);

static int fetch(void *arg, const char *digest, uint64_t off, size_t len,
		 void *buf)
{
	struct store *s = arg;
	size_t i;

	s->fetches++;
	if (s->fail)
		return s->fail;
	if (strcmp(digest, SYNTH_DIGEST) == 0) {
		if (off % 512 || len != 512)
			return -EINVAL;
		synth_block(off / 512, s->synth_n, buf);
		return 0;
	}
	for (i = 0; i < s->n; i++) {
		if (strcmp(s->b[i].digest, digest) != 0)
			continue;
		if (off > s->b[i].len || len > s->b[i].len - off)
			return -ERANGE;
		memcpy(buf, s->b[i].data + off, len);
		return 0;
	}
	return -ENOENT;
}

static const struct blob *store_get(struct store *s, const char *digest)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->b[i].digest, digest) == 0)
			return &s->b[i];
	return NULL;
}

/* ---- a tar writer: ustar, GNU long names, pax ---- */

struct tarw {
	unsigned char *buf;
	size_t len, cap;
};

enum { TW_USTAR, TW_GNU, TW_PAX };

static void tw_put(struct tarw *t, const void *p, size_t n)
{
	size_t padded = (n + 511) / 512 * 512;

	if (t->len + padded > t->cap) {
		t->cap = (t->len + padded) * 2 + 4096;
		t->buf = realloc(t->buf, t->cap);
	}
	memcpy(t->buf + t->len, p, n);
	memset(t->buf + t->len + n, 0, padded - n);
	t->len += padded;
}

static void tw_header(struct tarw *t, const char *name, const char *prefix,
		      char type, uint64_t size, unsigned mode, int gnu)
{
	unsigned char h[512];
	unsigned sum = 0;
	size_t i;

	memset(h, 0, sizeof(h));
	memcpy(h, name, strnlen(name, 100));
	snprintf((char *)h + 100, 8, "%07o", mode);
	snprintf((char *)h + 108, 8, "%07o", 1000);
	snprintf((char *)h + 116, 8, "%07o", 1000);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
	snprintf((char *)h + 136, 12, "%011o", 1700000000);
	h[156] = (unsigned char)type;
	if (gnu) {
		memcpy(h + 257, "ustar  ", 8);
	} else {
		memcpy(h + 257, "ustar", 6);
		memcpy(h + 263, "00", 2);
		if (prefix)
			memcpy(h + 345, prefix, strnlen(prefix, 155));
	}
	memset(h + 148, ' ', 8);
	for (i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	tw_put(t, h, 512);
}

/* One pax record "LEN key=value\n", LEN counting itself. */
static size_t pax_record(char *out, const char *key, const char *val)
{
	size_t body = strlen(key) + strlen(val) + 3, len = body + 1;

	while ((size_t)snprintf(NULL, 0, "%zu", len) + body != len)
		len++;
	return (size_t)sprintf(out, "%zu %s=%s\n", len, key, val);
}

static void tw_entry(struct tarw *t, int style, const char *name, char type,
		     const void *data, size_t len, unsigned mode)
{
	size_t n = strlen(name);
	const char *slash;

	if (n <= 100) {
		tw_header(t, name, NULL, type, len, mode, style == TW_GNU);
	} else if (style == TW_GNU) {
		tw_header(t, "././@LongLink", NULL, 'L', n + 1, 0, 1);
		tw_put(t, name, n + 1);
		tw_header(t, name, NULL, type, len, mode, 1);
	} else if (style == TW_PAX) {
		char rec[PATH_MAX + 64];
		size_t r = pax_record(rec, "path", name);

		tw_header(t, "PaxHeaders/x", NULL, 'x', r, 0644, 0);
		tw_put(t, rec, r);
		tw_header(t, "truncated-name", NULL, type, len, mode, 0);
	} else {
		char prefix[156];

		/* ustar: split at a '/' so that the name fits in 100 bytes */
		slash = strchr(name + n - 101, '/');
		memcpy(prefix, name, (size_t)(slash - name));
		prefix[slash - name] = '\0';
		tw_header(t, slash + 1, prefix, type, len, mode, 0);
	}
	if (len)
		tw_put(t, data, len);
}

/* The checksum of a header changed after it was written. */
static void fix_sum(unsigned char *h)
{
	unsigned sum = 0;
	size_t i;

	memset(h + 148, ' ', 8);
	for (i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
}

static void tw_end(struct tarw *t)
{
	unsigned char z[1024] = { 0 };

	tw_put(t, z, sizeof(z));
}

static void synth_block(uint64_t k, uint64_t n, unsigned char *h)
{
	struct tarw t = { 0 };
	char name[32];

	memset(h, 0, 512);
	if (k >= n)
		return;
	snprintf(name, sizeof(name), "f%llu", (unsigned long long)k);
	tw_header(&t, name, NULL, '0', 0, 0644, 0);
	memcpy(h, t.buf, 512);
	free(t.buf);
}

/* ---- manifests as text ---- */

struct sb {
	char *s;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (b->len + (size_t)n + 1 > b->cap) {
		b->cap = (b->len + (size_t)n + 1) * 2;
		b->s = realloc(b->s, b->cap);
	}
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* A descriptor; annotations is a JSON object's inside, or NULL. */
static void sb_desc(struct sb *b, const char *mt, const char *digest,
		    unsigned long long size, const char *annotations)
{
	sb_printf(b, "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%llu", mt,
		  digest, size);
	if (annotations)
		sb_printf(b, ",\"annotations\":{%s}", annotations);
	sb_printf(b, "}");
}

static const struct layout_file *find(const struct layout *l, const char *path)
{
	size_t i;

	for (i = 0; i < l->nfiles; i++)
		if (strcmp(l->files[i].path, path) == 0)
			return &l->files[i];
	return NULL;
}

/* The file's bytes, read from its blob, equal text. */
static int file_is(struct store *s, const struct layout *l, const char *path,
		   const char *text)
{
	const struct layout_file *f = find(l, path);
	const struct blob *b;

	if (!f) {
		fprintf(stderr, "  no file %s\n", path);
		return 0;
	}
	b = store_get(s, f->digest);
	if (!b || f->off + f->size > b->len || f->blob_size != b->len)
		return 0;
	return f->size == strlen(text) && memcmp(b->data + f->off, text, f->size) == 0;
}

static int parse(struct store *s, const char *m, struct layout **l, char *err)
{
	return layout_parse(m, strlen(m), fetch, s, l, err, 256);
}

/* ---- Ollama ---- */

/*
 * The shape of a manifest under ~/.ollama/models/manifests (and of
 * registry.ollama.ai answers): Docker v2 schema 2, a container image config
 * of the model's details, layers typed by ollama/ollama server/images.go.
 */
static void test_ollama(void)
{
	static const char *const mts[] = { "model", "projector", "adapter", "adapter",
		"template", "system", "params", "license", "messages" };
	static const char *const names[] = { "model.gguf", "projector.gguf",
		"adapter-1.gguf", "adapter-2.gguf", "template", "system", "params",
		"LICENSE", "messages.json" };
	struct store s = { 0 };
	struct sb m = { 0 };
	struct layout *l = NULL;
	char err[256], text[64], mt[128];
	const char *cfg = "{\"model_format\":\"gguf\",\"model_family\":\"llama\"}";
	size_t i;

	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":",
		  OCI_MT_DOCKER_MANIFEST);
	sb_desc(&m, "application/vnd.docker.container.image.v1+json",
		store_str(&s, cfg), strlen(cfg), NULL);
	sb_printf(&m, ",\"layers\":[");
	for (i = 0; i < 9; i++) {
		snprintf(text, sizeof(text), "bytes of %s", names[i]);
		snprintf(mt, sizeof(mt), "application/vnd.ollama.image.%s", mts[i]);
		sb_desc(&m, mt, store_str(&s, text), strlen(text), NULL);
		sb_printf(&m, ",");
	}
	/* A layer type this module does not know is skipped. */
	sb_desc(&m, "application/vnd.ollama.image.embed", store_str(&s, "e"), 1, NULL);
	sb_printf(&m, "]}");

	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (!l)
		goto out;
	CHECK_EQ(l->kind, LAYOUT_OLLAMA);
	CHECK_EQ(l->nlayers, 10);
	CHECK_EQ(l->nfiles, 10);
	for (i = 0; i < 9; i++) {
		snprintf(text, sizeof(text), "bytes of %s", names[i]);
		CHECK(file_is(&s, l, names[i], text));
	}
	CHECK(file_is(&s, l, "config.json", cfg));
	CHECK(find(l, "model.gguf") && find(l, "model.gguf")->whole == 1);
	CHECK(find(l, "model.gguf") && find(l, "model.gguf")->mode == 0644);
	CHECK(strcmp(l->files[0].media_type, "application/vnd.ollama.image.model") == 0);
out:
	layout_free(l);
	free(m.s);
	store_release(&s);
}

/* ---- Docker Model Runner ---- */

/*
 * docker/model-runner pkg/distribution/types/config.go: an OCI manifest
 * whose config is application/vnd.docker.ai.model.config.v0.1+json and whose
 * layers are gguf.v3 (several for a sharded model), license, mmproj and the
 * jinja chat template, without annotations (v0.1).
 */
static void test_docker_gguf(void)
{
	struct store s = { 0 };
	struct sb m = { 0 };
	struct layout *l = NULL;
	char err[256];
	const char *cfg = "{\"config\":{\"format\":\"gguf\",\"size\":\"3\"},"
			  "\"descriptor\":{},\"rootfs\":{\"type\":\"rootfs\"}}";

	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":",
		  OCI_MT_MANIFEST);
	sb_desc(&m, "application/vnd.docker.ai.model.config.v0.1+json",
		store_str(&s, cfg), strlen(cfg), NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.docker.ai.gguf.v3", store_str(&s, "shard1"), 6, NULL);
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.gguf.v3", store_str(&s, "shard2"), 6, NULL);
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.gguf.v3", store_str(&s, "shard3"), 6, NULL);
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.license", store_str(&s, "MIT"), 3, NULL);
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.mmproj", store_str(&s, "proj"), 4, NULL);
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.chat.template.jinja",
		store_str(&s, "{{x}}"), 5, NULL);
	sb_printf(&m, "]}");

	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (!l)
		goto out;
	CHECK_EQ(l->kind, LAYOUT_DOCKER);
	CHECK_EQ(l->nfiles, 7);
	CHECK(file_is(&s, l, "model-00001-of-00003.gguf", "shard1"));
	CHECK(file_is(&s, l, "model-00002-of-00003.gguf", "shard2"));
	CHECK(file_is(&s, l, "model-00003-of-00003.gguf", "shard3"));
	CHECK(file_is(&s, l, "LICENSE", "MIT"));
	CHECK(file_is(&s, l, "model.mmproj", "proj"));
	CHECK(file_is(&s, l, "template.jinja", "{{x}}"));
	CHECK(file_is(&s, l, "config.json", cfg));
	layout_free(l);
	l = NULL;

	/* One gguf layer is model.gguf; a title annotation wins. */
	free(m.s);
	memset(&m, 0, sizeof(m));
	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":",
		  OCI_MT_MANIFEST);
	sb_desc(&m, "application/vnd.docker.ai.model.config.v0.1+json",
		store_str(&s, cfg), strlen(cfg), NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.docker.ai.gguf.v3", store_str(&s, "shard1"), 6, NULL);
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.license", store_str(&s, "MIT"), 3,
		"\"org.opencontainers.image.title\":\"LICENSE.txt\"");
	sb_printf(&m, "]}");
	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (l) {
		CHECK(file_is(&s, l, "model.gguf", "shard1"));
		CHECK(file_is(&s, l, "LICENSE.txt", "MIT"));
		CHECK_EQ(l->nfiles, 3);
	}
out:
	layout_free(l);
	free(m.s);
	store_release(&s);
}

/*
 * Docker Model Runner v0.2 (builder.FromDirectory): one layer per file
 * with org.cncf.model.filepath, nested paths, and a dir.tar layer holding a
 * directory as an uncompressed tar.  A layer named config.json keeps the
 * config blob out of the list.
 */
static void test_docker_dirs(void)
{
	struct store s = { 0 };
	struct sb m = { 0 };
	struct tarw t = { 0 };
	struct layout *l = NULL;
	char err[256];
	const char *cfg = "{\"config\":{\"format\":\"safetensors\"}}";
	const char *hf = "{\"architectures\":[\"X\"]}";

	tw_entry(&t, TW_USTAR, "tokenizer/", '5', NULL, 0, 0755);
	tw_entry(&t, TW_USTAR, "tokenizer/vocab.txt", '0', "a b c", 5, 0644);
	tw_entry(&t, TW_USTAR, "tokenizer/merges.txt", '0', "ab", 2, 0600);
	tw_end(&t);

	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":",
		  OCI_MT_MANIFEST);
	sb_desc(&m, "application/vnd.docker.ai.model.config.v0.2+json",
		store_str(&s, cfg), strlen(cfg), NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.docker.ai.safetensors", store_str(&s, "W1"), 2,
		"\"org.cncf.model.filepath\":\"text_encoder/model.safetensors\"");
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.safetensors", store_str(&s, "W2"), 2,
		"\"org.cncf.model.filepath\":\"unet/model.safetensors\"");
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.config", store_str(&s, hf), strlen(hf),
		"\"org.cncf.model.filepath\":\"config.json\"");
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.docker.ai.dir.tar", store_put(&s, t.buf, t.len),
		t.len, NULL);
	sb_printf(&m, "]}");

	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (!l)
		goto out;
	CHECK_EQ(l->kind, LAYOUT_DOCKER);
	CHECK_EQ(l->nfiles, 5);
	CHECK(file_is(&s, l, "text_encoder/model.safetensors", "W1"));
	CHECK(file_is(&s, l, "unet/model.safetensors", "W2"));
	CHECK(file_is(&s, l, "config.json", hf));
	CHECK(file_is(&s, l, "tokenizer/vocab.txt", "a b c"));
	CHECK(file_is(&s, l, "tokenizer/merges.txt", "ab"));
	CHECK(find(l, "tokenizer/merges.txt") && find(l, "tokenizer/merges.txt")->mode == 0600);
	CHECK(find(l, "tokenizer/vocab.txt") && find(l, "tokenizer/vocab.txt")->whole == 0);
out:
	layout_free(l);
	free(m.s);
	free(t.buf);
	store_release(&s);
}

/* ---- ModelPack ---- */

/*
 * modelpack/model-spec docs/spec.md and specs-go/v1: artifactType
 * application/vnd.cncf.model.manifest.v1+json, config
 * application/vnd.cncf.model.config.v1+json, one raw layer per file named by
 * org.cncf.model.filepath (as modctl builds them), file metadata in
 * org.cncf.model.file.metadata+json.
 */
static void test_modelpack_raw(void)
{
	struct store s = { 0 };
	struct sb m = { 0 };
	struct layout *l = NULL;
	char err[256];
	const char *cfg = "{\"descriptor\":{\"name\":\"m\"},\"modelfs\":{\"type\":"
			  "\"layers\",\"diffIds\":[]},\"config\":{}}";

	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"%s\","
		  "\"config\":", OCI_MT_MANIFEST, MODELPACK_ARTIFACT_TYPE);
	sb_desc(&m, MODELPACK_MT_CONFIG, store_str(&s, cfg), strlen(cfg), NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.cncf.model.weight.v1.raw", store_str(&s, "W"), 1,
		"\"org.cncf.model.filepath\":\"model-00001-of-00001.safetensors\","
		"\"org.cncf.model.file.metadata+json\":\"{\\\"name\\\":\\\"x\\\","
		"\\\"mode\\\":420,\\\"size\\\":1,\\\"typeflag\\\":48}\"");
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.cncf.model.code.v1.raw", store_str(&s, "#!"), 2,
		"\"org.cncf.model.filepath\":\"scripts/run.py\","
		"\"org.cncf.model.file.metadata+json\":\"{\\\"mode\\\":493}\"");
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.cncf.model.doc.v1.raw", store_str(&s, "# M"), 3,
		"\"org.opencontainers.image.title\":\"README.md\"");
	sb_printf(&m, ",");
	sb_desc(&m, "application/vnd.cncf.model.weight.config.v1.tar+gzip",
		store_str(&s, "\x1f\x8bgz"), 4,
		"\"org.cncf.model.filepath\":\"tokenizer\"");
	sb_printf(&m, ",");
	/* Not a ModelPack layer: skipped. */
	sb_desc(&m, "application/vnd.oci.image.layer.v1.tar", store_str(&s, "x"), 1, NULL);
	sb_printf(&m, ",");
	/* The spec's first names (dragonflyoss/model-spec, modctl before v0.1). */
	sb_desc(&m, "application/vnd.cnai.model.weight.v1.raw", store_str(&s, "old"), 3,
		"\"org.cnai.model.filepath\":\"legacy/model.bin\"");
	sb_printf(&m, "]}");

	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (!l)
		goto out;
	CHECK_EQ(l->kind, LAYOUT_MODELPACK);
	CHECK_EQ(l->nfiles, 6);
	CHECK(file_is(&s, l, "legacy/model.bin", "old"));
	CHECK(file_is(&s, l, "model-00001-of-00001.safetensors", "W"));
	CHECK(file_is(&s, l, "scripts/run.py", "#!"));
	CHECK(find(l, "scripts/run.py") && find(l, "scripts/run.py")->mode == 0755);
	CHECK(file_is(&s, l, "README.md", "# M"));
	CHECK(file_is(&s, l, "tokenizer.tar.gz", "\x1f\x8bgz"));
	CHECK(find(l, "tokenizer.tar.gz") && find(l, "tokenizer.tar.gz")->whole);
	CHECK(file_is(&s, l, "config.json", cfg));
	CHECK(strcmp(l->config.media_type, MODELPACK_MT_CONFIG) == 0);
out:
	layout_free(l);
	free(m.s);
	store_release(&s);
}

static char *long_path(size_t depth, const char *leaf)
{
	struct sb b = { 0 };
	size_t i;

	for (i = 0; i < depth; i++)
		sb_printf(&b, "directory-%02zu-with-a-long-name/", i);
	sb_printf(&b, "%s", leaf);
	return b.s;
}

/* A ModelPack .tar layer written in every header style. */
static void test_modelpack_tar(void)
{
	struct store s = { 0 };
	struct sb m = { 0 };
	struct tarw t = { 0 };
	struct layout *l = NULL;
	char err[256];
	char *ustar_long = long_path(4, "u.bin"), *gnu_long = long_path(12, "g.bin"),
	     *pax_long = long_path(20, "p.bin");
	const char *cfg = "{}";
	const char *tar_digest;

	tw_entry(&t, TW_USTAR, "./", '5', NULL, 0, 0755);
	tw_entry(&t, TW_USTAR, "./weights/", '5', NULL, 0, 0755);
	tw_entry(&t, TW_USTAR, "./weights/a.safetensors", '0', "AAAA", 4, 0644);
	tw_entry(&t, TW_USTAR, ustar_long, '0', "ustar", 5, 0644);
	tw_entry(&t, TW_GNU, gnu_long, '0', "gnu-long", 8, 0640);
	tw_entry(&t, TW_PAX, pax_long, '0', "pax-long", 8, 0600);
	tw_entry(&t, TW_USTAR, "weights/link", '2', NULL, 0, 0777);
	tw_entry(&t, TW_USTAR, "weights/hard", '1', NULL, 0, 0644);
	tw_entry(&t, TW_USTAR, "empty", '0', NULL, 0, 0644);
	tw_entry(&t, TW_USTAR, "fifo", '6', NULL, 0, 0644);
	tw_end(&t);
	tar_digest = store_put(&s, t.buf, t.len);

	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"%s\","
		  "\"config\":", OCI_MT_MANIFEST, MODELPACK_ARTIFACT_TYPE);
	sb_desc(&m, MODELPACK_MT_CONFIG, store_str(&s, cfg), strlen(cfg), NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.cncf.model.weight.v1.tar", tar_digest, t.len,
		"\"org.cncf.model.filepath\":\"weights\"");
	sb_printf(&m, "]}");

	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (!l) {
		fprintf(stderr, "  %s\n", err);
		goto out;
	}
	CHECK_EQ(l->nfiles, 6);
	CHECK(file_is(&s, l, "weights/a.safetensors", "AAAA"));
	CHECK(file_is(&s, l, ustar_long, "ustar"));
	CHECK(file_is(&s, l, gnu_long, "gnu-long"));
	CHECK(file_is(&s, l, pax_long, "pax-long"));
	CHECK(file_is(&s, l, "empty", ""));
	CHECK(file_is(&s, l, "config.json", "{}"));
	CHECK(find(l, gnu_long) && find(l, gnu_long)->mode == 0640);
	CHECK(find(l, pax_long) && find(l, pax_long)->mode == 0600);
	CHECK(!find(l, "weights/link") && !find(l, "weights/hard") && !find(l, "fifo"));
	layout_free(l);
	l = NULL;

	/*
	 * modctl (pkg/archiver, pkg/backend extract) tars a file under its base
	 * name and untars it into the directory of its filepath annotation.
	 */
	{
		struct tarw one = { 0 };
		struct sb m2 = { 0 };

		tw_entry(&one, TW_USTAR, "tokenizer.json", '0', "{\"t\":1}", 7, 0644);
		tw_end(&one);
		sb_printf(&m2, "{\"schemaVersion\":2,\"artifactType\":\"%s\",\"config\":",
			  MODELPACK_ARTIFACT_TYPE);
		sb_desc(&m2, MODELPACK_MT_CONFIG, store_str(&s, cfg), strlen(cfg), NULL);
		sb_printf(&m2, ",\"layers\":[");
		sb_desc(&m2, "application/vnd.cncf.model.weight.config.v1.tar",
			store_put(&s, one.buf, one.len), one.len,
			"\"org.cncf.model.filepath\":\"sub/dir/tokenizer.json\"");
		sb_printf(&m2, "]}");
		CHECK_EQ(parse(&s, m2.s, &l, err), 0);
		CHECK(l && l->nfiles == 2 && file_is(&s, l, "sub/dir/tokenizer.json", "{\"t\":1}"));
		layout_free(l);
		l = NULL;
		/* The directory is checked with the member: no way out. */
		free(m2.s);
		memset(&m2, 0, sizeof(m2));
		sb_printf(&m2, "{\"schemaVersion\":2,\"artifactType\":\"%s\",\"config\":",
			  MODELPACK_ARTIFACT_TYPE);
		sb_desc(&m2, MODELPACK_MT_CONFIG, store_str(&s, cfg), strlen(cfg), NULL);
		sb_printf(&m2, ",\"layers\":[");
		sb_desc(&m2, "application/vnd.cncf.model.weight.config.v1.tar",
			store_put(&s, one.buf, one.len), one.len,
			"\"org.cncf.model.filepath\":\"../../tokenizer.json\"");
		sb_printf(&m2, "]}");
		CHECK_EQ(parse(&s, m2.s, &l, err), -EINVAL);
		CHECK(l == NULL);
		free(m2.s);
		free(one.buf);
	}

	/* Without a fetch, a tar layer cannot be listed. */
	layout_free(l);
	l = NULL;
	CHECK_EQ(layout_parse(m.s, m.len, NULL, NULL, &l, err, sizeof(err)), -EAGAIN);
	CHECK(l == NULL && err[0]);
	/* A fetch that fails fails the parse, with its code. */
	s.fail = -EIO;
	CHECK_EQ(parse(&s, m.s, &l, err), -EIO);
	CHECK(strstr(err, tar_digest) != NULL);
	s.fail = 0;
out:
	layout_free(l);
	free(m.s);
	free(t.buf);
	free(ustar_long);
	free(gnu_long);
	free(pax_long);
	store_release(&s);
}

/* The system tar, in GNU and pax formats, read as a ModelPack tar layer. */
static void tar_with_system(const char *format)
{
	char dir[] = "/tmp/llmfs-layout-XXXXXX", cmd[8192], err[256];
	struct store s = { 0 };
	struct sb m = { 0 };
	struct layout *l = NULL;
	unsigned char buf[65536];
	char *deep = long_path(6, "deep.gguf");
	size_t n;
	FILE *f;

	if (!mkdtemp(dir))
		return;
	snprintf(cmd, sizeof(cmd),
		 "cd %s && mkdir -p m/$(dirname %s) && printf hello > m/a.json && "
		 "printf deep-bytes > m/%s && ln -s a.json m/sym && "
		 "tar --format=%s -C m -cf - . 2>/dev/null", dir, deep, deep, format);
	f = popen(cmd, "r");
	if (!f) {
		fprintf(stderr, "  skipped: no tar\n");
		goto out;
	}
	n = fread(buf, 1, sizeof(buf), f);
	if (pclose(f) != 0 || n == 0 || n == sizeof(buf)) {
		fprintf(stderr, "  skipped: tar --format=%s failed\n", format);
		goto out;
	}
	sb_printf(&m, "{\"schemaVersion\":2,\"artifactType\":\"%s\",\"config\":",
		  MODELPACK_ARTIFACT_TYPE);
	sb_desc(&m, MODELPACK_MT_CONFIG, store_str(&s, "{}"), 2, NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.cncf.model.weight.v1.tar", store_put(&s, buf, n),
		n, NULL);
	sb_printf(&m, "]}");
	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (l) {
		CHECK_EQ(l->nfiles, 3);
		CHECK(file_is(&s, l, "a.json", "hello"));
		CHECK(file_is(&s, l, deep, "deep-bytes"));
		CHECK(!find(l, "sym"));
	}
out:
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  cannot remove %s\n", dir);
	layout_free(l);
	free(m.s);
	free(deep);
	store_release(&s);
}

static void test_system_tar(void)
{
	tar_with_system("gnu");
	tar_with_system("pax");
	tar_with_system("ustar");
}

/* ---- SMIP, indexes, images ---- */

static void test_smip_and_others(void)
{
	struct store s = { 0 };
	struct sb m = { 0 };
	struct layout *l = NULL;
	char err[256];
	const char *d = store_str(&s, "x");

	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"%s\","
		  "\"config\":", OCI_MT_MANIFEST, SMIP_ARTIFACT_TYPE);
	sb_desc(&m, SMIP_MT_CONFIG, d, 1, NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, SMIP_MT_PACK, d, 1, NULL);
	sb_printf(&m, "]}");
	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	if (l) {
		CHECK_EQ(l->kind, LAYOUT_SMIP);
		CHECK_EQ(l->nfiles, 0);
		CHECK_EQ(l->nlayers, 1);
		CHECK(strcmp(l->layers[0].media_type, SMIP_MT_PACK) == 0);
		CHECK(strcmp(l->config.digest, d) == 0);
	}
	layout_free(l);
	l = NULL;

	/* The SMIP config media type alone is enough. */
	free(m.s);
	memset(&m, 0, sizeof(m));
	sb_printf(&m, "{\"schemaVersion\":2,\"config\":");
	sb_desc(&m, SMIP_MT_CONFIG, d, 1, NULL);
	sb_printf(&m, ",\"layers\":[]}");
	CHECK_EQ(parse(&s, m.s, &l, err), 0);
	CHECK(l && l->kind == LAYOUT_SMIP);
	layout_free(l);
	l = NULL;

	/* A container image: no model layers. */
	free(m.s);
	memset(&m, 0, sizeof(m));
	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":",
		  OCI_MT_MANIFEST);
	sb_desc(&m, "application/vnd.oci.image.config.v1+json", d, 1, NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.oci.image.layer.v1.tar+gzip", d, 1, NULL);
	sb_printf(&m, "]}");
	CHECK_EQ(parse(&s, m.s, &l, err), -ENOTSUP);
	CHECK(l == NULL && strstr(err, "container image"));

	/* Indexes, OCI and Docker. */
	free(m.s);
	memset(&m, 0, sizeof(m));
	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[",
		  OCI_MT_INDEX);
	sb_desc(&m, OCI_MT_MANIFEST, d, 1, NULL);
	sb_printf(&m, "]}");
	CHECK_EQ(parse(&s, m.s, &l, err), -ENOTSUP);
	CHECK(strstr(err, "an index: pick a platform manifest") != NULL);
	CHECK_EQ(parse(&s, "{\"schemaVersion\":2,\"mediaType\":\"application/vnd."
		       "docker.distribution.manifest.list.v2+json\",\"manifests\":[]}",
		       &l, err), -ENOTSUP);
	CHECK_EQ(parse(&s, "{\"schemaVersion\":2,\"manifests\":[]}", &l, err), -ENOTSUP);
	free(m.s);
	store_release(&s);
}

/* ---- hostile manifests ---- */

/* A ModelPack manifest of one raw layer with the given annotations. */
static char *mp_one(const char *mt, const char *digest, const char *size,
		    const char *annotations)
{
	struct sb m = { 0 };

	sb_printf(&m, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"%s\","
		  "\"config\":{\"mediaType\":\"%s\",\"digest\":\"sha256:%064d\",\"size\":2},"
		  "\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%s",
		  OCI_MT_MANIFEST, MODELPACK_ARTIFACT_TYPE, MODELPACK_MT_CONFIG, 0, mt,
		  digest, size);
	if (annotations)
		sb_printf(&m, ",\"annotations\":{%s}", annotations);
	sb_printf(&m, "}]}");
	return m.s;
}

#define RAW "application/vnd.cncf.model.weight.v1.raw"
#define GOOD_DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void expect_refused(const char *m, size_t len, int want, const char *why)
{
	struct layout *l = NULL;
	char err[256] = "";
	int rc = layout_parse(m, len, NULL, NULL, &l, err, sizeof(err));

	if (getenv("LAYOUT_TEST_VERBOSE"))
		fprintf(stderr, "  %s: %d %s\n", why, rc, err);
	if (rc != want || l || !err[0] || strchr(err, '\n')) {
		fprintf(stderr, "  %s: got %d (%s), want %d\n", why, rc, err, want);
		check_failures++;
	}
	layout_free(l);
}

static void refuse_mp(const char *mt, const char *digest, const char *size,
		      const char *annotations, int want, const char *why)
{
	char *m = mp_one(mt, digest, size, annotations);

	expect_refused(m, strlen(m), want, why);
	free(m);
}

static void refuse(const char *m, int want, const char *why)
{
	expect_refused(m, strlen(m), want, why);
}

static void test_hostile_manifests(void)
{
	char *m, *big, ann[PATH_MAX + 200], *longp;
	size_t n;
	struct layout *l = NULL;
	char err[256];

	/* The good one, for contrast. */
	m = mp_one(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"a/b.gguf\"");
	CHECK_EQ(layout_parse(m, strlen(m), NULL, NULL, &l, err, sizeof(err)), 0);
	CHECK(l && l->nfiles == 2 && find(l, "a/b.gguf"));
	layout_free(l);
	free(m);

	refuse("", -EINVAL, "empty");
	refuse("{\"schemaVersion\":2,", -EINVAL, "truncated JSON");
	refuse("[1,2]", -EINVAL, "not an object");
	refuse("{\"schemaVersion\":1,\"config\":{},\"layers\":[]}", -EINVAL, "schema 1");
	refuse("{\"schemaVersion\":\"2\",\"config\":{},\"layers\":[]}", -EINVAL,
	       "schema as string");
	refuse("{\"config\":{},\"layers\":[]}", -EINVAL, "no schema");
	refuse("{\"schemaVersion\":2,\"schemaVersion\":2}", -EINVAL, "duplicate key");
	refuse("{\"schemaVersion\":2,\"layers\":[]}", -EINVAL, "no config");
	refuse("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MODELPACK_MT_CONFIG
	       "\",\"digest\":\"" GOOD_DIGEST "\",\"size\":2}}", -EINVAL, "no layers");
	refuse("{\"schemaVersion\":2,\"config\":{\"digest\":\"" GOOD_DIGEST
	       "\",\"size\":2},\"layers\":[]}", -EINVAL, "config without media type");
	refuse("{\"schemaVersion\":2,\"mediaType\":\"text/plain\",\"config\":{},"
	       "\"layers\":[]}", -ENOTSUP, "unknown manifest media type");
	refuse("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MODELPACK_MT_CONFIG
	       "\",\"digest\":\"" GOOD_DIGEST "\",\"size\":2},\"layers\":[7]}", -EINVAL,
	       "layer not an object");

	refuse_mp(RAW, "sha256:abc", "5", "\"org.cncf.model.filepath\":\"a\"", -EINVAL,
		  "short digest");
	refuse_mp(RAW, "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef"
		  "0123456789abcdef", "5", "\"org.cncf.model.filepath\":\"a\"", -EINVAL,
		  "upper-case digest");
	refuse_mp(RAW, "sha512:0123456789abcdef0123456789abcdef0123456789abcdef"
		  "0123456789abcdef", "5", "\"org.cncf.model.filepath\":\"a\"", -EINVAL,
		  "other algorithm");
	refuse_mp(RAW, GOOD_DIGEST "0", "5", "\"org.cncf.model.filepath\":\"a\"",
		  -EINVAL, "long digest");
	refuse_mp(RAW, GOOD_DIGEST, "-1", "\"org.cncf.model.filepath\":\"a\"", -EINVAL,
		  "negative size");
	refuse_mp(RAW, GOOD_DIGEST, "9007199254740993",
		  "\"org.cncf.model.filepath\":\"a\"", -EINVAL, "size past 2^53");
	refuse_mp(RAW, GOOD_DIGEST, "5.0", "\"org.cncf.model.filepath\":\"a\"", -EINVAL,
		  "real size");
	refuse_mp(RAW, GOOD_DIGEST, "\"5\"", "\"org.cncf.model.filepath\":\"a\"",
		  -EINVAL, "size as string");
	refuse_mp(RAW, GOOD_DIGEST, "99999999999999999999999",
		  "\"org.cncf.model.filepath\":\"a\"", -EINVAL, "huge size");

	refuse_mp(RAW, GOOD_DIGEST, "5", NULL, -EINVAL, "no file path");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":7", -EINVAL,
		  "annotation not a string");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"/etc/passwd\"",
		  -EINVAL, "absolute path");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"../x\"",
		  -EINVAL, "dot-dot");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"a/../../x\"",
		  -EINVAL, "inner dot-dot");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"./x\"",
		  -EINVAL, "dot");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"a//b\"",
		  -EINVAL, "empty component");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"a/\"",
		  -EINVAL, "trailing slash");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"\"",
		  -EINVAL, "empty path");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"a\\nb\"",
		  -EINVAL, "newline");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"a\\u0001\"",
		  -EINVAL, "control character");
	refuse_mp(RAW, GOOD_DIGEST, "5", "\"org.cncf.model.filepath\":\"a\\u0000b\"",
		  -EINVAL, "NUL");
	longp = long_path(PATH_MAX / 30, "x");
	snprintf(ann, sizeof(ann), "\"org.cncf.model.filepath\":\"%s\"", longp);
	refuse_mp(RAW, GOOD_DIGEST, "5", ann, -EINVAL, "path over PATH_MAX");
	free(longp);
	memset(ann, 'n', 300);
	ann[300] = '\0';
	longp = strdup(ann);
	snprintf(ann, sizeof(ann), "\"org.cncf.model.filepath\":\"d/%s\"", longp);
	refuse_mp(RAW, GOOD_DIGEST, "5", ann, -EINVAL, "component over NAME_MAX");
	free(longp);

	/* Two layers, one path; a path that is another's directory. */
	refuse("{\"schemaVersion\":2,\"artifactType\":\"" MODELPACK_ARTIFACT_TYPE "\","
	       "\"config\":{\"mediaType\":\"" MODELPACK_MT_CONFIG "\",\"digest\":\""
	       GOOD_DIGEST "\",\"size\":2},\"layers\":["
	       "{\"mediaType\":\"" RAW "\",\"digest\":\"" GOOD_DIGEST "\",\"size\":1,"
	       "\"annotations\":{\"org.cncf.model.filepath\":\"w.gguf\"}},"
	       "{\"mediaType\":\"" RAW "\",\"digest\":\"" GOOD_DIGEST "\",\"size\":1,"
	       "\"annotations\":{\"org.cncf.model.filepath\":\"w.gguf\"}}]}",
	       -EINVAL, "duplicate path");
	refuse("{\"schemaVersion\":2,\"artifactType\":\"" MODELPACK_ARTIFACT_TYPE "\","
	       "\"config\":{\"mediaType\":\"" MODELPACK_MT_CONFIG "\",\"digest\":\""
	       GOOD_DIGEST "\",\"size\":2},\"layers\":["
	       "{\"mediaType\":\"" RAW "\",\"digest\":\"" GOOD_DIGEST "\",\"size\":1,"
	       "\"annotations\":{\"org.cncf.model.filepath\":\"w\"}},"
	       "{\"mediaType\":\"" RAW "\",\"digest\":\"" GOOD_DIGEST "\",\"size\":1,"
	       "\"annotations\":{\"org.cncf.model.filepath\":\"w/x\"}}]}",
	       -EINVAL, "file and directory");
	/* Ollama: two licences are numbered, not duplicates; media type limit. */
	n = 300;
	big = malloc(n + 400);
	memset(big, 'a', n);
	big[n] = '\0';
	m = mp_one(big, GOOD_DIGEST, "1", NULL);
	expect_refused(m, strlen(m), -EINVAL, "media type too long");
	free(m);
	free(big);

	/* Over OCI_MANIFEST_MAX, whatever it holds. */
	n = OCI_MANIFEST_MAX + 1;
	big = malloc(n);
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	expect_refused(big, n, -EFBIG, "huge manifest");
	free(big);
}

/* ---- hostile tars ---- */

static void refuse_tar(struct store *s, const void *tar, size_t len,
		       unsigned long long declared, int want, const char *why)
{
	struct sb m = { 0 };
	struct layout *l = NULL;
	char err[256] = "";
	const char *d = store_put(s, tar, len);
	int rc;

	sb_printf(&m, "{\"schemaVersion\":2,\"artifactType\":\"%s\",\"config\":",
		  MODELPACK_ARTIFACT_TYPE);
	sb_desc(&m, MODELPACK_MT_CONFIG, GOOD_DIGEST, 2, NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.cncf.model.weight.v1.tar", d, declared, NULL);
	sb_printf(&m, "]}");
	rc = parse(s, m.s, &l, err);
	if (getenv("LAYOUT_TEST_VERBOSE"))
		fprintf(stderr, "  %s: %d %s\n", why, rc, err);
	if (rc != want || l || !err[0]) {
		fprintf(stderr, "  %s: got %d (%s), want %d\n", why, rc, err, want);
		check_failures++;
	}
	layout_free(l);
	free(m.s);
}

static void test_hostile_tars(void)
{
	struct store s = { 0 };
	struct tarw t = { 0 };
	unsigned char *b;
	char name[PATH_MAX + 64];
	struct sb m = { 0 };
	struct layout *l = NULL;
	char err[256];
	int rc;

	/* A member whose size runs past the blob. */
	tw_header(&t, "big", NULL, '0', 4096, 0644, 0);
	tw_put(&t, "x", 1);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "member past the blob");
	/* The same tar, with a blob size smaller than its bytes. */
	t.len = 0;
	tw_entry(&t, TW_USTAR, "a", '0', "abc", 3, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, 600, -EINVAL, "declared size cuts a member");
	refuse_tar(&s, t.buf, t.len, 1300, -EINVAL, "truncated header");
	/* A declared size past the blob's end (the registry has less). */
	refuse_tar(&s, t.buf, t.len, t.len + 1024, -EINVAL, "declared size past the end");
	refuse_tar(&s, t.buf, t.len, t.len + 100, -EINVAL, "declared size a little past the end");
	/* A damaged checksum. */
	b = malloc(t.len);
	memcpy(b, t.buf, t.len);
	b[0] ^= 1;
	refuse_tar(&s, b, t.len, t.len, -EINVAL, "bad checksum");
	/* A bad size field. */
	memcpy(b, t.buf, t.len);
	b[124] = 'z';
	fix_sum(b);
	refuse_tar(&s, b, t.len, t.len, -EINVAL, "bad size field");
	free(b);
	/* Unsafe member names, in each header style. */
	t.len = 0;
	tw_entry(&t, TW_USTAR, "../evil", '0', "x", 1, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "dot-dot member");
	t.len = 0;
	tw_entry(&t, TW_USTAR, "/etc/passwd", '0', "x", 1, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "absolute member");
	t.len = 0;
	snprintf(name, sizeof(name), "%0150d/../../x", 0);
	tw_entry(&t, TW_GNU, name, '0', "x", 1, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "GNU long dot-dot");
	t.len = 0;
	tw_entry(&t, TW_PAX, name, '0', "x", 1, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "pax dot-dot");
	t.len = 0;
	tw_entry(&t, TW_USTAR, "dir/../../", '5', NULL, 0, 0755);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "dot-dot directory");
	t.len = 0;
	tw_entry(&t, TW_USTAR, "a", '0', "x", 1, 0644);
	tw_entry(&t, TW_USTAR, "./a", '0', "y", 1, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "duplicate member");
	/* A long name longer than PATH_MAX, a pax header past its bound. */
	t.len = 0;
	tw_header(&t, "././@LongLink", NULL, 'L', PATH_MAX + 10, 0, 1);
	{
		char *big = calloc(1, 70000);

		memset(big, 'a', PATH_MAX + 9);
		tw_put(&t, big, PATH_MAX + 10);
		tw_end(&t);
		refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "long name too long");
		t.len = 0;
		tw_header(&t, "p", NULL, 'x', 70000, 0644, 0);
		tw_put(&t, big, 70000);
		tw_end(&t);
		refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "pax too large");
		free(big);
	}
	/* Malformed pax records. */
	t.len = 0;
	tw_header(&t, "p", NULL, 'x', 12, 0644, 0);
	tw_put(&t, "99 path=abc\n", 12);
	tw_entry(&t, TW_USTAR, "a", '0', "x", 1, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "pax length past the data");
	/* A pax size that runs past the blob. */
	t.len = 0;
	{
		char rec[64];
		size_t r = pax_record(rec, "size", "99999999999");

		tw_header(&t, "p", NULL, 'x', r, 0644, 0);
		tw_put(&t, rec, r);
	}
	tw_entry(&t, TW_USTAR, "a", '0', "x", 1, 0644);
	tw_end(&t);
	refuse_tar(&s, t.buf, t.len, t.len, -EINVAL, "pax size past the blob");
	/* A compressed blob under a tar media type. */
	{
		unsigned char gz[512] = { 0x1f, 0x8b, 0x08, 0x00 };

		refuse_tar(&s, gz, sizeof(gz), sizeof(gz), -EINVAL, "gzip as tar");
	}

	/* More members than LAYOUT_MAX_FILES, made up as they are read. */
	s.synth_n = LAYOUT_MAX_FILES + 1;
	sb_printf(&m, "{\"schemaVersion\":2,\"artifactType\":\"%s\",\"config\":",
		  MODELPACK_ARTIFACT_TYPE);
	sb_desc(&m, MODELPACK_MT_CONFIG, GOOD_DIGEST, 2, NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.cncf.model.weight.v1.tar", SYNTH_DIGEST,
		(s.synth_n + 2) * 512ull, NULL);
	sb_printf(&m, "]}");
	rc = parse(&s, m.s, &l, err);
	CHECK_EQ(rc, -EFBIG);
	CHECK(l == NULL && strstr(err, "files"));
	/* Exactly LAYOUT_MAX_FILES - 1 members (config.json makes the last). */
	s.synth_n = LAYOUT_MAX_FILES - 1;
	free(m.s);
	memset(&m, 0, sizeof(m));
	sb_printf(&m, "{\"schemaVersion\":2,\"artifactType\":\"%s\",\"config\":",
		  MODELPACK_ARTIFACT_TYPE);
	sb_desc(&m, MODELPACK_MT_CONFIG, GOOD_DIGEST, 2, NULL);
	sb_printf(&m, ",\"layers\":[");
	sb_desc(&m, "application/vnd.cncf.model.weight.v1.tar", SYNTH_DIGEST,
		(s.synth_n + 2) * 512ull, NULL);
	sb_printf(&m, "]}");
	rc = parse(&s, m.s, &l, err);
	CHECK_EQ(rc, 0);
	CHECK(l && l->nfiles == LAYOUT_MAX_FILES);
	layout_free(l);
	free(m.s);
	free(t.buf);
	store_release(&s);
}

static void test_path_valid(void)
{
	char buf[PATH_MAX + 8];

	CHECK(layout_path_valid("a"));
	CHECK(layout_path_valid("a/b/c.gguf"));
	CHECK(layout_path_valid(".hidden"));
	CHECK(layout_path_valid("a..b"));
	CHECK(layout_path_valid("...") );
	CHECK(layout_path_valid("ünïcödé/名前"));
	CHECK(!layout_path_valid(NULL));
	CHECK(!layout_path_valid(""));
	CHECK(!layout_path_valid("/a"));
	CHECK(!layout_path_valid("a/"));
	CHECK(!layout_path_valid("a//b"));
	CHECK(!layout_path_valid("."));
	CHECK(!layout_path_valid(".."));
	CHECK(!layout_path_valid("a/./b"));
	CHECK(!layout_path_valid("a/.."));
	CHECK(!layout_path_valid("a\tb"));
	CHECK(!layout_path_valid("a\x7f"));
	memset(buf, 'a', sizeof(buf));
	buf[PATH_MAX] = '\0';
	CHECK(!layout_path_valid(buf));
	buf[NAME_MAX] = '\0';
	CHECK(layout_path_valid(buf));
	buf[NAME_MAX] = 'a';
	buf[NAME_MAX + 1] = '\0';
	CHECK(!layout_path_valid(buf));
}

/* ---- layout_modelpack_build ---- */

static void test_round_trip(void)
{
	static const char *const paths[] = { "model-00001-of-00002.safetensors",
		"model-00002-of-00002.safetensors", "config.json", "tokenizer.json",
		"tokenizer.model", "README.md", "LICENSE", "modeling/custom.py",
		"template" };
	static const char *const want_mt[] = { "weight.v1.raw", "weight.v1.raw",
		"weight.config.v1.raw", "weight.config.v1.raw", "weight.config.v1.raw",
		"doc.v1.raw", "doc.v1.raw", "code.v1.raw", "weight.config.v1.raw" };
	struct layout_put_file f[9];
	struct store s = { 0 };
	struct layout *l = NULL;
	char *mj = NULL, *cj = NULL, *mj2 = NULL, *cj2 = NULL, err[256],
	     digest[OCI_DIGEST_LEN];
	size_t mlen = 0, clen = 0, mlen2, clen2, i;
	json_t *c;

	for (i = 0; i < 9; i++) {
		f[i].path = paths[i];
		strcpy(f[i].digest, store_str(&s, paths[i]));
		f[i].size = strlen(paths[i]);
	}
	CHECK_EQ(layout_modelpack_build("qwen2.5-0.5b", f, 9, &mj, &mlen, &cj, &clen,
					err, sizeof(err)), 0);
	if (!mj || !cj)
		goto out;
	CHECK_EQ(mlen, strlen(mj));
	CHECK_EQ(clen, strlen(cj));
	/* Deterministic: the same files give the same bytes. */
	CHECK_EQ(layout_modelpack_build("qwen2.5-0.5b", f, 9, &mj2, &mlen2, &cj2,
					&clen2, err, sizeof(err)), 0);
	CHECK(mj2 && cj2 && strcmp(mj, mj2) == 0 && strcmp(cj, cj2) == 0);
	free(mj2);
	free(cj2);

	/* The config: descriptor.name, modelfs.diffIds, config.format. */
	c = json_loads(cj, 0, NULL);
	CHECK(c != NULL);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(c,
		"descriptor"), "name")) ?: "", "qwen2.5-0.5b") == 0);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(c,
		"modelfs"), "type")) ?: "", "layers") == 0);
	CHECK_EQ(json_array_size(json_object_get(json_object_get(c, "modelfs"),
						 "diffIds")), 9);
	CHECK(strcmp(json_string_value(json_array_get(json_object_get(
		json_object_get(c, "modelfs"), "diffIds"), 0)) ?: "", f[0].digest) == 0);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(c,
		"config"), "format")) ?: "", "safetensors") == 0);
	CHECK(json_object_get(json_object_get(c, "descriptor"), "createdAt") == NULL);
	json_decref(c);
	CHECK(strchr(cj, ' ') == NULL && strchr(mj, '\n') == NULL);

	/* The config blob exists: its digest is in the manifest. */
	digest_sha256(cj, clen, digest);
	CHECK(strstr(mj, digest) != NULL);
	CHECK(strcmp(store_put(&s, cj, clen), digest) == 0);

	CHECK_EQ(parse(&s, mj, &l, err), 0);
	if (!l)
		goto out;
	CHECK_EQ(l->kind, LAYOUT_MODELPACK);
	CHECK_EQ(l->nfiles, 9); /* config.json is one of ours: no extra file */
	for (i = 0; i < 9; i++) {
		const struct layout_file *lf = find(l, paths[i]);
		char mt[128];

		CHECK(lf != NULL);
		if (!lf)
			continue;
		CHECK(file_is(&s, l, paths[i], paths[i]));
		CHECK(lf->whole == 1 && lf->off == 0 && lf->size == f[i].size);
		snprintf(mt, sizeof(mt), "application/vnd.cncf.model.%s", want_mt[i]);
		if (strcmp(lf->media_type, mt) != 0) {
			fprintf(stderr, "  %s: %s, want %s\n", paths[i], lf->media_type, mt);
			check_failures++;
		}
	}
	CHECK(strcmp(l->config.digest, digest) == 0 && l->config.size == clen);
	layout_free(l);
	l = NULL;
	free(mj);
	free(cj);
	mj = cj = NULL;

	/* Without a config.json among the files, the config blob is listed. */
	CHECK_EQ(layout_modelpack_build("m", f, 2, &mj, &mlen, &cj, &clen, err,
					sizeof(err)), 0);
	if (mj && cj) {
		store_put(&s, cj, clen);
		CHECK_EQ(parse(&s, mj, &l, err), 0);
		CHECK(l && l->nfiles == 3 && file_is(&s, l, "config.json", cj));
	}
	layout_free(l);
	l = NULL;
	free(mj);
	free(cj);
	mj = cj = NULL;

	/* gguf wins the format guess. */
	f[1].path = "x.gguf";
	CHECK_EQ(layout_modelpack_build("m", f, 2, &mj, &mlen, &cj, &clen, err,
					sizeof(err)), 0);
	CHECK(cj && strstr(cj, "\"format\":\"gguf\""));
	free(mj);
	free(cj);
	mj = cj = NULL;

	/* Refused: unsafe, duplicate, not UTF-8, bad digest, no name. */
	f[1].path = "../x";
	CHECK_EQ(layout_modelpack_build("m", f, 2, &mj, &mlen, &cj, &clen, err,
					sizeof(err)), -EINVAL);
	f[1].path = paths[0];
	CHECK_EQ(layout_modelpack_build("m", f, 2, &mj, &mlen, &cj, &clen, err,
					sizeof(err)), -EINVAL);
	CHECK(strstr(err, "duplicate") != NULL);
	f[1].path = "bad\xff.bin";
	CHECK_EQ(layout_modelpack_build("m", f, 2, &mj, &mlen, &cj, &clen, err,
					sizeof(err)), -EINVAL);
	f[1].path = paths[1];
	f[1].digest[10] = 'X';
	CHECK_EQ(layout_modelpack_build("m", f, 2, &mj, &mlen, &cj, &clen, err,
					sizeof(err)), -EINVAL);
	CHECK_EQ(layout_modelpack_build("", f, 1, &mj, &mlen, &cj, &clen, err,
					sizeof(err)), -EINVAL);
	CHECK(mj == NULL && cj == NULL);
out:
	layout_free(l);
	free(mj);
	free(cj);
	store_release(&s);
}

int main(void)
{
	RUN(test_path_valid);
	RUN(test_ollama);
	RUN(test_docker_gguf);
	RUN(test_docker_dirs);
	RUN(test_modelpack_raw);
	RUN(test_modelpack_tar);
	RUN(test_system_tar);
	RUN(test_smip_and_others);
	RUN(test_hostile_manifests);
	RUN(test_hostile_tars);
	RUN(test_round_trip);
	return check_status();
}
