/*
 * test_smipnet.c - SMIP artifacts on registries without a registry: the
 * config blob's parser (good and hostile inputs) and the store's side of a
 * pull: record checks, imports kept from collection, files made of them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/store/chunker.h"
#include "backend/store/pack.h"
#include "backend/registry/smipnet.h"
#include "tests/check.h"

#define ID1 "00112233445566778899aabbccddeeff"
#define ID2 "ffeeddccbbaa99887766554433221100"
#define DIG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A config with one pack, two chunks, a folder and a file; fmt fills in
 * the file's path, its second chunk's length and the index's second offset. */
static int parse(const char *path, int len2, int off2, struct smip_model **m)
{
	char json[2048], err[256] = "";
	int r;

	snprintf(json, sizeof(json),
		 "{\"smip\":1,\"name\":\"m\",\"files\":["
		 "{\"path\":\"d\",\"type\":\"dir\",\"mode\":\"0755\"},"
		 "{\"path\":\"%s\",\"type\":\"file\",\"mode\":\"0644\",\"size\":%d,"
		 "\"chunks\":[[\"" ID1 "\",100],[\"" ID2 "\",%d]]}],"
		 "\"packs\":[{\"digest\":\"" DIG "\",\"size\":1000}],"
		 "\"index\":[[\"" ID1 "\",0,16,132],[\"" ID2 "\",0,%d,100]]}",
		 path, 100 + len2, len2, off2);
	*m = NULL;
	r = smip_model_parse(json, strlen(json), m, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "  (refused: %s)\n", err);
	return r;
}

static void test_parse(void)
{
	struct smip_model *m;
	const struct smip_rfile *f;

	CHECK_EQ(parse("d/w.bin", 50, 148, &m), 0);
	if (!m)
		return;
	CHECK_EQ(m->nfiles, 2);
	CHECK_EQ(m->nchunks, 2);
	CHECK_EQ(m->npacks, 1);
	f = smip_model_file(m, "d/w.bin");
	CHECK(f != NULL);
	if (f) {
		CHECK(S_ISREG(f->mode));
		CHECK_EQ(f->size, 150);
		CHECK_EQ(f->nchunks, 2);
		CHECK_EQ(f->offs[1], 100);
		CHECK_EQ(f->offs[2], 150);
		CHECK_EQ(m->chunks[f->chunks[1]].off, 148);
		CHECK_EQ(m->chunks[f->chunks[1]].ulen, 50);
	}
	CHECK(S_ISDIR(smip_model_file(m, "d")->mode));
	smip_model_free(m);
}

static void test_hostile(void)
{
	struct smip_model *m;
	const char *bad[] = { "../x", "/etc/passwd", "d/../../x", "a//b", "", "./x" };
	char json[512], err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_EQ(parse(bad[i], 50, 148, &m), -EINVAL);
	/* A record running past its pack, or before its header. */
	CHECK_EQ(parse("w", 50, 950, &m), -EINVAL);
	CHECK_EQ(parse("w", 50, 4, &m), -EINVAL);
	/* Chunk lengths that do not add up to the size. */
	CHECK_EQ(parse("w", 0, 148, &m), -EINVAL);
	/* A newer manifest version, a path twice, a chunk in no pack. */
	snprintf(json, sizeof(json), "{\"smip\":99,\"files\":[],\"packs\":[],\"index\":[]}");
	CHECK_EQ(smip_model_parse(json, strlen(json), &m, err, sizeof(err)), -ENOTSUP);
	snprintf(json, sizeof(json),
		 "{\"smip\":1,\"files\":[{\"path\":\"a\",\"type\":\"dir\"},"
		 "{\"path\":\"a\",\"type\":\"dir\"}],\"packs\":[],\"index\":[]}");
	CHECK_EQ(smip_model_parse(json, strlen(json), &m, err, sizeof(err)), -EINVAL);
	snprintf(json, sizeof(json),
		 "{\"smip\":1,\"files\":[{\"path\":\"a\",\"type\":\"file\",\"size\":5,"
		 "\"chunks\":[[\"" ID1 "\",5]]}],\"packs\":[],\"index\":[]}");
	CHECK_EQ(smip_model_parse(json, strlen(json), &m, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "no pack") != NULL);
	/* Not JSON at all, and duplicate keys. */
	CHECK_EQ(smip_model_parse("{\"smip\":", 8, &m, err, sizeof(err)), -EINVAL);
	snprintf(json, sizeof(json), "{\"smip\":1,\"smip\":1,\"files\":[]}");
	CHECK_EQ(smip_model_parse(json, strlen(json), &m, err, sizeof(err)), -EINVAL);
}

static char dir1[64], dir2[64];

static struct cas_store *open_at(const char *d)
{
	struct cas_options o = { .threads = 2 };
	struct cas_store *st = NULL;
	char err[256];

	CHECK_EQ(cas_store_open(d, &o, &st, err, sizeof(err)), 0);
	return st;
}

/* A file's chunks moved as records from one store into another. */
static void test_import(void)
{
	size_t len = 3u << 20, i, n;
	uint8_t *data = malloc(len), *back = malloc(len), *rec;
	struct cas_store *a = open_at(dir1), *b = open_at(dir2);
	struct cas_writer *w;
	struct cas_file *f = NULL, *g = NULL;
	struct cas_fault fault;
	struct cas_id *ids;
	uint32_t *lens;
	struct cat_attr at;

	if (!a || !b || !data || !back)
		return;
	fill_random(data, len / 2, 7);
	memset(data + len / 2, 'x', len - len / 2); /* some of it compresses */
	CHECK_EQ(cas_mknode(a, CAT_ROOT_INO, "f", S_IFREG | 0644, 0, 0, NULL, &at), 0);
	CHECK_EQ(cas_writer_open(a, at.ino, 1, &w), 0);
	CHECK_EQ(cas_writer_write(w, data, len, 0), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	CHECK_EQ(cas_file_open(a, at.ino, &f), 0);
	n = cas_file_nchunks(f);
	ids = calloc(n, sizeof(*ids));
	lens = calloc(n, sizeof(*lens));
	rec = malloc(PACK_REC_LEN + codec_bound(CDC_MAX));
	for (i = 0; i < n; i++) {
		ssize_t rl;
		const void *p;
		size_t l;

		cas_file_chunk(f, i, &ids[i], &lens[i]);
		rl = cas_chunk_record(a, &ids[i], rec, PACK_REC_LEN + codec_bound(CDC_MAX));
		CHECK(rl > PACK_REC_LEN);
		CHECK_EQ(cas_record_check(b, rec, (size_t)rl, &ids[i], NULL), lens[i]);
		/* A flipped byte, a wrong id, a short record: refused. */
		rec[rl - 1] ^= 1;
		CHECK_EQ(cas_record_check(b, rec, (size_t)rl, &ids[i], NULL), -EBADMSG);
		rec[rl - 1] ^= 1;
		if (!cas_id_eq(&ids[i], &ids[(i + 1) % n]))
			CHECK_EQ(cas_record_check(b, rec, (size_t)rl, &ids[(i + 1) % n], NULL),
				 -EBADMSG);
		CHECK_EQ(cas_record_check(b, rec, (size_t)rl - 1, &ids[i], NULL), -EBADMSG);
		/* (The run of 'x' repeats one chunk: stored the first time.) */
		p = rec;
		l = (size_t)rl;
		CHECK_EQ(cas_records_add(b, &p, &l, 1), 0);
		CHECK_EQ(cas_chunk_has(b, &ids[i]), 1);
	}
	/* Fetched chunks survive collection while no file holds them. */
	CHECK(cas_gc(b) >= 0);
	for (i = 0; i < n; i++)
		CHECK_EQ(cas_chunk_has(b, &ids[i]), 1);
	/* A file made of them reads back the bytes. */
	CHECK_EQ(cas_mknode(b, CAT_ROOT_INO, "g", S_IFREG | 0644, 0, 0, NULL, &at), 0);
	CHECK_EQ(cas_writer_open(b, at.ino, 1, &w), 0);
	CHECK_EQ(cas_writer_append(w, ids, lens, n, NULL), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	CHECK_EQ(cas_file_open(b, at.ino, &g), 0);
	if (g) {
		CHECK_EQ(cas_file_size(g), len);
		CHECK_EQ(cas_file_read(b, g, back, len, 0, &fault), (ssize_t)len);
		CHECK(memcmp(back, data, len) == 0);
	}
	/* A failed import: the writer's commit fails, nothing changes. */
	CHECK_EQ(cas_writer_open(b, at.ino, 1, &w), 0);
	CHECK_EQ(cas_writer_write(w, "abc", 3, 0), 0);
	cas_writer_abort(w, -EIO);
	CHECK_EQ(cas_writer_commit(w), -EIO);
	cas_writer_free(w);
	cas_file_free(g);
	CHECK_EQ(cas_file_open(b, at.ino, &g), 0);
	CHECK_EQ(cas_file_size(g), len);
	cas_file_free(g);
	cas_file_free(f);
	free(rec);
	free(ids);
	free(lens);
	free(data);
	free(back);
	cas_store_close(a);
	cas_store_close(b);
}

int main(void)
{
	char cmd[256];

	snprintf(dir1, sizeof(dir1), "/tmp/llmfs-smipnet-a.XXXXXX");
	snprintf(dir2, sizeof(dir2), "/tmp/llmfs-smipnet-b.XXXXXX");
	if (!mkdtemp(dir1) || !mkdtemp(dir2))
		return 1;
	RUN(test_parse);
	RUN(test_hostile);
	RUN(test_import);
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir1, dir2);
	if (system(cmd) != 0)
		check_failures++;
	return check_status();
}
