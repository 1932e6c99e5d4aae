/*
 * test_store.c - the store end to end, without FUSE: writers and readers,
 * deduplication, staging, catalog transactions, collection, recovery,
 * damage detection and refusals; recovery that cuts nothing the catalog
 * points at, quarantine, a lost catalog rebuilt, a damaged pack header,
 * and whole-file SHA-256 checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include <openssl/sha.h>
#include <sqlite3.h>

#include "backend/store/catalog.h"
#include "backend/store/chunker.h"
#include "backend/store/pack.h"
#include "backend/store/pool.h"
#include "backend/store/store.h"
#include "tests/check.h"
#include "tools/bench/smallmodel.h"
#include "store_util.h"

static char dir[256];

static struct cas_store *open_store(uint64_t pack_max)
{
	return store_open_in(dir, pack_max);
}

static uint64_t new_file(struct cas_store *st, const char *name)
{
	struct cat_attr a;

	CHECK_EQ(cas_mknode(st, CAT_ROOT_INO, name, S_IFREG | 0644, 0, 0, NULL, &a), 0);
	return a.ino;
}

static void write_file(struct cas_store *st, uint64_t ino, const uint8_t *data,
		       size_t len, size_t step)
{
	struct cas_writer *w;
	size_t off;

	CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
	for (off = 0; off < len; off += step)
		CHECK_EQ(cas_writer_write(w, data + off, off + step > len ? len - off : step, off), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
}

static void check_content(struct cas_store *st, uint64_t ino, const uint8_t *data,
			  size_t len)
{
	struct cas_file *f;
	uint8_t *buf = malloc(len + 1), sha[32], want[32];
	size_t off = 0, i;

	CHECK_EQ(cas_file_open(st, ino, &f), 0);
	CHECK_EQ(cas_file_size(f), len);
	while (off < len) {
		ssize_t n = cas_file_read(st, f, buf + off, 300000, off, NULL);

		CHECK(n > 0);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	CHECK(memcmp(buf, data, len) == 0);
	CHECK_EQ(cas_file_read(st, f, buf, 10, len, NULL), 0);
	/* Reads at odd offsets across chunk boundaries. */
	for (i = 1; i < 20 && len > 1000; i++) {
		size_t o = (len / 20) * i - 7, l = 5000 < len - o ? 5000 : len - o;

		CHECK_EQ(cas_file_read(st, f, buf, l, o, NULL), l);
		CHECK(memcmp(buf, data + o, l) == 0);
	}
	SHA256(data, len, want);
	CHECK_EQ(cas_file_sha256(f, sha), 0);
	CHECK(memcmp(sha, want, 32) == 0);
	cas_file_free(f);
	free(buf);
}

/* Model-like data: half random, half a repeating pattern. */
static uint8_t *make_data(size_t len, unsigned seed)
{
	uint8_t *d = malloc(len);
	size_t i;

	fill_random(d, len, seed);
	for (i = 0; i < len; i++)
		if ((i / 65536) % 2)
			d[i] = (uint8_t)(i % 251 < 200 ? 0 : d[i]);
	return d;
}

static uint64_t unique_bytes(struct cas_store *st)
{
	struct cas_status s;

	CHECK_EQ(cas_status(st, &s), 0);
	return s.cat.unique_bytes;
}

static void test_write_read(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 5u << 20;
	uint8_t *d = make_data(len, 1);
	uint64_t ino = new_file(st, "a");

	write_file(st, ino, d, len, 131072);
	check_content(st, ino, d, len);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
}

static void test_dedup(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 3u << 20;
	uint8_t *d = make_data(len, 2);
	uint64_t a = new_file(st, "d1"), b, u;

	write_file(st, a, d, len, 65536);
	u = unique_bytes(st);
	b = new_file(st, "d2");
	/* Other write sizes, same content: the same chunks. */
	write_file(st, b, d, len, 1000000);
	CHECK_EQ(unique_bytes(st), u);
	check_content(st, b, d, len);
	cas_store_close(st);
	free(d);
}

static uint64_t stored_bytes(struct cas_store *st)
{
	struct cas_status s;

	CHECK_EQ(cas_status(st, &s), 0);
	return s.cat.stored_bytes;
}

/*
 * A model of ~1,400 tensors of ~15 KB (smaller than a chunk): version 2
 * changes 13% of them and grows the header by 8 KiB.  Chunks that held
 * several tensors would renew every chunk holding a changed tensor; the
 * store must add at most 15% of the file (each changed tensor, compressed,
 * is about 8%).
 */
static void test_small_tensors(void)
{
	struct cas_store *st = open_store(0);
	uint8_t *v1, *v2;
	size_t l1 = sm_build(1, &v1), l2 = sm_build(2, &v2);
	uint64_t a = new_file(st, "vit-v1.safetensors"), b, s0, s1, s2;

	s0 = stored_bytes(st);
	write_file(st, a, v1, l1, 131072);
	s1 = stored_bytes(st);
	b = new_file(st, "vit-v2.safetensors");
	write_file(st, b, v2, l2, 131072);
	s2 = stored_bytes(st);
	fprintf(stderr, "  small tensors: v1 %zu B stored as %llu B; v2 adds %llu B = %.1f%%\n",
		l1, (unsigned long long)(s1 - s0), (unsigned long long)(s2 - s1),
		100.0 * (double)(s2 - s1) / (double)l2);
	CHECK((s2 - s1) * 100 <= (uint64_t)l2 * 15);
	/* Byte grouping still applies to tensors this small. */
	CHECK((s1 - s0) * 100 <= (uint64_t)l1 * 80);
	check_content(st, a, v1, l1);
	check_content(st, b, v2, l2);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(v1);
	free(v2);
}

/*
 * Closes that commit at once share a group (one pack sync, one catalog
 * transaction): every file commits with its own content, and a member
 * that fails (a chunk list naming a chunk the store lacks: -EIO) fails
 * alone, however the commits were grouped.
 */
#define GROUP_THREADS 6
#define GROUP_FILES 12

struct group_arg {
	struct cas_store *st;
	pthread_barrier_t *start;
	int t;
	uint64_t ino[GROUP_FILES];
	int rc[GROUP_FILES];
};

static void *group_worker(void *p)
{
	struct group_arg *a = p;
	uint8_t data[3000];
	int i;

	for (i = 0; i < GROUP_FILES; i++) {
		struct cas_writer *w;
		int bad = a->t == 0 && i % 3 == 1;

		fill_random(data, sizeof(data), (unsigned long long)(a->t * 100 + i));
		a->rc[i] = cas_writer_open(a->st, a->ino[i], 1, &w);
		if (a->rc[i] < 0)
			continue;
		if (bad) {
			struct cas_id id;
			uint32_t len = 100;

			memset(&id, 0xab, sizeof(id));
			id.b[0] = (uint8_t)i;
			a->rc[i] = cas_writer_append(w, &id, &len, 1, NULL);
		} else {
			a->rc[i] = cas_writer_write(w, data, 100 + (size_t)(a->t * 37 + i * 211) % 2900, 0);
		}
		pthread_barrier_wait(a->start);
		if (a->rc[i] == 0)
			a->rc[i] = cas_writer_commit(w);
		cas_writer_free(w);
	}
	return NULL;
}

static void test_group_commit(void)
{
	struct cas_store *st = open_store(0);
	static struct group_arg a[GROUP_THREADS];
	pthread_t th[GROUP_THREADS];
	pthread_barrier_t start;
	uint8_t data[3000];
	char name[32];
	int t, i;

	pthread_barrier_init(&start, NULL, GROUP_THREADS);
	for (t = 0; t < GROUP_THREADS; t++) {
		a[t].st = st;
		a[t].start = &start;
		a[t].t = t;
		for (i = 0; i < GROUP_FILES; i++) {
			snprintf(name, sizeof(name), "g%d.%d", t, i);
			a[t].ino[i] = new_file(st, name);
		}
	}
	for (t = 0; t < GROUP_THREADS; t++)
		CHECK_EQ(pthread_create(&th[t], NULL, group_worker, &a[t]), 0);
	for (t = 0; t < GROUP_THREADS; t++)
		pthread_join(th[t], NULL);
	for (t = 0; t < GROUP_THREADS; t++)
		for (i = 0; i < GROUP_FILES; i++) {
			struct cas_file *f;

			if (t == 0 && i % 3 == 1) {
				/* The failed member: -EIO, and the file keeps its
				 * previous (empty) content. */
				CHECK_EQ(a[t].rc[i], -EIO);
				CHECK_EQ(cas_file_open(st, a[t].ino[i], &f), 0);
				CHECK_EQ(cas_file_size(f), 0);
				cas_file_free(f);
				continue;
			}
			CHECK_EQ(a[t].rc[i], 0);
			fill_random(data, sizeof(data), (unsigned long long)(t * 100 + i));
			check_content(st, a[t].ino[i], data, 100 + (size_t)(t * 37 + i * 211) % 2900);
		}
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	/* What the commits returned for is in the catalog a new open reads. */
	st = open_store(0);
	for (i = 0; i < GROUP_FILES; i += 5) {
		fill_random(data, sizeof(data), (unsigned long long)(300 + i));
		check_content(st, a[3].ino[i], data, 100 + (size_t)(3 * 37 + i * 211) % 2900);
	}
	cas_store_close(st);
	pthread_barrier_destroy(&start);
}

static void test_out_of_order(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 2u << 20, step = 100000, off;
	uint8_t *d = make_data(len, 3), buf[100];
	uint64_t ino = new_file(st, "ooo"), ref = new_file(st, "ooo-ref"), u;
	struct cas_writer *w;

	write_file(st, ref, d, len, len);
	u = unique_bytes(st);
	CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
	/* Back to front. */
	for (off = (len - 1) / step * step;; off -= step) {
		CHECK_EQ(cas_writer_write(w, d + off, off + step > len ? len - off : step, off), 0);
		if (off == 0)
			break;
	}
	CHECK_EQ(cas_writer_size(w), len);
	CHECK_EQ(cas_writer_read(w, buf, sizeof(buf), 12345, NULL), sizeof(buf));
	CHECK(memcmp(buf, d + 12345, sizeof(buf)) == 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	check_content(st, ino, d, len);
	/* Chunk boundaries depend on content only. */
	CHECK_EQ(unique_bytes(st), u);
	cas_store_close(st);
	free(d);
}

static void test_append_after_commit(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 3u << 20, half = len / 2 + 1234;
	uint8_t *d = make_data(len, 4);
	uint64_t ino = new_file(st, "app"), ref = new_file(st, "app-ref"), u;
	struct cas_writer *w;

	write_file(st, ref, d, len, len);
	u = unique_bytes(st);
	CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
	CHECK_EQ(cas_writer_write(w, d, half, 0), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	check_content(st, ino, d, half);
	CHECK_EQ(cas_writer_write(w, d + half, len - half, half), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	check_content(st, ino, d, len);
	CHECK_EQ(cas_gc(st) >= 0, 1);
	CHECK_EQ(unique_bytes(st), u);
	/* Appending through a fresh writer (open without truncation). */
	CHECK_EQ(cas_writer_open(st, ino, 0, &w), 0);
	CHECK_EQ(cas_writer_write(w, "tail", 4, len), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	{
		uint8_t *e = malloc(len + 4);

		memcpy(e, d, len);
		memcpy(e + len, "tail", 4);
		check_content(st, ino, e, len + 4);
		free(e);
	}
	cas_store_close(st);
	free(d);
}

static void test_truncate_and_share(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 2u << 20;
	uint8_t *d = make_data(len, 5);
	uint64_t a = new_file(st, "t"), b = new_file(st, "t-copy"), u;
	struct cas_writer *w;
	struct cas_file *f;

	write_file(st, a, d, len, len);
	CHECK_EQ(cas_writer_open(st, a, 0, &w), 0);
	CHECK_EQ(cas_writer_truncate(w, 777777), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	check_content(st, a, d, 777777);
	write_file(st, a, d, len, len);
	u = unique_bytes(st);
	CHECK_EQ(cas_file_open(st, a, &f), 0);
	CHECK_EQ(cas_writer_open(st, b, 1, &w), 0);
	CHECK_EQ(cas_writer_share(w, f, 0, len * 2, 0), len);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	cas_file_free(f);
	check_content(st, b, d, len);
	CHECK_EQ(unique_bytes(st), u);
	/* An empty truncating writer makes an empty file. */
	CHECK_EQ(cas_writer_open(st, a, 1, &w), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	check_content(st, a, d, 0);
	cas_store_close(st);
	free(d);
}

static void test_namespace(void)
{
	struct cas_store *st = open_store(0);
	struct cat_attr d1, d2, f, x;
	uint64_t rep = 0;

	CHECK_EQ(cas_mknode(st, CAT_ROOT_INO, "n1", S_IFDIR | 0755, 0, 0, NULL, &d1), 0);
	CHECK_EQ(cas_mknode(st, d1.ino, "n2", S_IFDIR | 0755, 0, 0, NULL, &d2), 0);
	CHECK_EQ(cas_mknode(st, d2.ino, "f", S_IFREG | 0644, 0, 0, NULL, &f), 0);
	CHECK_EQ(cas_mknode(st, d2.ino, "f", S_IFREG | 0644, 0, 0, NULL, &x), -EEXIST);
	CHECK_EQ(cas_mknode(st, f.ino, "g", S_IFREG | 0644, 0, 0, NULL, &x), -ENOTDIR);
	CHECK_EQ(cas_rmdir(st, CAT_ROOT_INO, "n1"), -ENOTEMPTY);
	CHECK_EQ(cas_rename(st, CAT_ROOT_INO, "n1", d2.ino, "loop", 0, 0, &rep), -EINVAL);
	CHECK_EQ(cas_rename(st, d2.ino, "f", CAT_ROOT_INO, "f2", 0, 0, &rep), 0);
	CHECK_EQ(cas_lookup(st, CAT_ROOT_INO, "f2", &x), 0);
	CHECK_EQ(x.ino, f.ino);
	CHECK_EQ(cas_rename(st, CAT_ROOT_INO, "f2", CAT_ROOT_INO, "n1", 0, 0, &rep), -EISDIR);
	CHECK_EQ(cas_mknode(st, CAT_ROOT_INO, "f3", S_IFREG | 0644, 0, 0, NULL, &x), 0);
	CHECK_EQ(cas_rename(st, CAT_ROOT_INO, "f2", CAT_ROOT_INO, "f3", 1, 0, &rep), -EEXIST);
	CHECK_EQ(cas_rename(st, CAT_ROOT_INO, "f2", CAT_ROOT_INO, "f3", 0, 0, &rep), 0);
	CHECK_EQ(rep, x.ino);
	CHECK_EQ(cas_getattr(st, x.ino, &x), -ENOENT);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "n1", 0, NULL), -EISDIR);
	CHECK_EQ(cas_rmdir(st, d1.ino, "n2"), 0);
	CHECK_EQ(cas_rmdir(st, CAT_ROOT_INO, "n1"), 0);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "f3", 0, NULL), 0);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

static void test_catalog_txn(void)
{
	struct cat *c;
	struct cat_attr a;
	char path[512], err[256];

	snprintf(path, sizeof(path), "%s/txn.db", dir);
	CHECK_EQ(cat_open(path, &c, err, sizeof(err)), 0);
	CHECK_EQ(cat_begin(c), 0);
	CHECK_EQ(cat_insert(c, CAT_ROOT_INO, "gone", S_IFREG | 0644, 0, 0, 1, NULL, &a), 0);
	cat_rollback(c);
	CHECK_EQ(cat_lookup(c, CAT_ROOT_INO, "gone", &a), -ENOENT);
	CHECK_EQ(cat_begin(c), 0);
	CHECK_EQ(cat_insert(c, CAT_ROOT_INO, "kept", S_IFREG | 0644, 0, 0, 1, NULL, &a), 0);
	CHECK_EQ(cat_commit(c), 0);
	cat_close(c);
	CHECK_EQ(cat_open(path, &c, err, sizeof(err)), 0);
	CHECK_EQ(cat_lookup(c, CAT_ROOT_INO, "kept", &a), 0);
	cat_close(c);
}

static void test_gc(void)
{
	/* Small packs, so that deletes empty some and leave others half live. */
	struct cas_store *st = open_store(1u << 20);
	size_t len = 4u << 20;
	uint8_t *a = make_data(len, 6), *b = make_data(len, 7);
	uint64_t fa = new_file(st, "gc-a"), fb = new_file(st, "gc-b");
	struct cas_status s0, s1;
	int64_t freed;

	CHECK_EQ(cas_status(st, &s0), 0);
	write_file(st, fa, a, len, 200000);
	write_file(st, fb, b, len, 200000);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "gc-a", 0, NULL), 0);
	freed = cas_gc(st);
	CHECK(freed > 0);
	CHECK_EQ(cas_status(st, &s1), 0);
	CHECK_EQ(s1.cat.dead_chunks, 0);
	check_content(st, fb, b, len);
	CHECK_EQ(fsck_problems(st), 0);
	/* Deleting the rest empties the store but for the current pack. */
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "gc-b", 0, NULL), 0);
	CHECK(cas_gc(st) > 0);
	CHECK_EQ(cas_status(st, &s1), 0);
	CHECK(s1.cat.chunks <= s0.cat.chunks);
	CHECK(s1.cat.packs <= s0.cat.packs + 1);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(a);
	free(b);
}

static void test_orphan(void)
{
	struct cas_store *st = open_store(0);
	uint8_t d[1000];
	uint64_t ino = new_file(st, "orph"), got;

	fill_random(d, sizeof(d), 8);
	write_file(st, ino, d, sizeof(d), sizeof(d));
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "orph", 1, &got), 0);
	CHECK_EQ(got, ino);
	/* Still readable through its inode while open... */
	check_content(st, ino, d, sizeof(d));
	cas_store_close(st);
	/* ...and gone after a restart. */
	st = open_store(0);
	{
		struct cat_attr a;

		CHECK_EQ(cas_getattr(st, ino, &a), -ENOENT);
	}
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

/* The pack appends go to: the highest-numbered one. */
static void newest_pack(char *path, size_t len)
{
	char cmd[600];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "ls '%s/packs' | sort | tail -n 1", dir);
	p = popen(cmd, "r");
	path[0] = '\0';
	if (p) {
		char name[64] = "";

		if (fgets(name, sizeof(name), p))
			name[strcspn(name, "\n")] = '\0';
		pclose(p);
		snprintf(path, len, "%s/packs/%s", dir, name);
	}
}

static void test_uncommitted_cut_off(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 1u << 20;
	uint8_t *d = make_data(len, 9);
	uint64_t ino = new_file(st, "uncommitted");
	struct cas_writer *w;
	char path[512];
	struct stat before, after;

	newest_pack(path, sizeof(path));
	CHECK_EQ(stat(path, &before), 0);
	CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
	CHECK_EQ(cas_writer_write(w, d, len, 0), 0);
	/* Dropped without a commit: as if the daemon died here. */
	cas_writer_free(w);
	cas_store_close(st);
	CHECK_EQ(stat(path, &after), 0);
	CHECK(after.st_size > before.st_size);
	/* A running store cuts a dropped writer's bytes at its next collection. */
	st = open_store(0);
	{
		struct stat size0, mid;

		CHECK_EQ(stat(path, &size0), 0);
		CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
		CHECK_EQ(cas_writer_write(w, d, len, 0), 0);
		cas_writer_free(w);
		CHECK_EQ(stat(path, &mid), 0);
		CHECK(mid.st_size > size0.st_size);
		CHECK(cas_gc(st) > 0);
		CHECK_EQ(stat(path, &after), 0);
		CHECK_EQ(after.st_size, size0.st_size);
	}
	cas_store_close(st);
	st = open_store(0);
	CHECK_EQ(stat(path, &after), 0);
	CHECK_EQ(after.st_size, before.st_size);
	check_content(st, ino, d, 0);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
}

/* The pack of chunk id and an offset in the middle of its encoded bytes. */
static void chunk_place(const struct cas_id *id, unsigned *ret_pack, off_t *ret_off)
{
	char path[512];
	sqlite3 *db;
	sqlite3_stmt *q;

	*ret_pack = 0;
	*ret_off = 0;
	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ(sqlite3_prepare_v2(db, "SELECT pack, off, clen FROM chunks WHERE id = ?1",
				    -1, &q, NULL),
		 SQLITE_OK);
	sqlite3_bind_blob(q, 1, id->b, CAS_ID_LEN, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		*ret_pack = (unsigned)sqlite3_column_int64(q, 0);
		*ret_off = (off_t)(sqlite3_column_int64(q, 1) + PACK_REC_LEN +
				   sqlite3_column_int64(q, 2) / 2);
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	CHECK(*ret_off > 0);
}

static void test_damage(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 1u << 20;
	uint8_t *d = make_data(len, 10), *buf = malloc(len);
	uint64_t ino = new_file(st, "damaged");
	struct cas_fault fault;
	struct cas_file *f;
	struct cas_id last;
	uint32_t last_len;
	char path[512];
	unsigned pack;
	off_t at;
	int fd, lines = 0;
	uint8_t byte;

	write_file(st, ino, d, len, len);
	/*
	 * Flip one bit in the record of the file's last chunk.  Records are
	 * packed in the order compression finishes, so the pack's last record
	 * may be any chunk of the file: ask the catalog where this one lies.
	 */
	CHECK_EQ(cas_file_open(st, ino, &f), 0);
	CHECK(cas_file_nchunks(f) >= 2);
	cas_file_chunk(f, cas_file_nchunks(f) - 1, &last, &last_len);
	cas_file_free(f);
	cas_store_close(st);
	chunk_place(&last, &pack, &at);
	snprintf(path, sizeof(path), "%s/packs/%08x.pack", dir, pack);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, &byte, 1, at), 1);
	byte ^= 4;
	CHECK_EQ(pwrite(fd, &byte, 1, at), 1);
	close(fd);
	st = open_store(0);
	CHECK_EQ(cas_file_open(st, ino, &f), 0);
	CHECK_EQ(cas_file_read(st, f, buf, len, 0, &fault), -EIO);
	CHECK(fault.off > 0 && fault.off < len);
	/* Bytes before the damage still read. */
	CHECK_EQ(cas_file_read(st, f, buf, fault.off, 0, NULL), fault.off);
	cas_file_free(f);
	CHECK(cas_fsck(st, 0, fsck_line, &lines) >= 2);
	/* Writing the same bytes again stores a good copy of the damaged chunk. */
	write_file(st, ino, d, len, len);
	check_content(st, ino, d, len);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
	free(buf);
}

static void test_refusals(void)
{
	struct cas_store *st = open_store(0), *st2 = NULL;
	char err[512];

	CHECK_EQ(cas_store_open(dir, NULL, &st2, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, "already in use") != NULL);
	cas_store_close(st);
	catalog_sql(dir, "UPDATE meta SET value = '999' WHERE key = 'format'");
	CHECK_EQ(cas_store_open(dir, NULL, &st2, err, sizeof(err)), -EPROTONOSUPPORT);
	CHECK(strstr(err, "newer") != NULL);
	CHECK(st2 == NULL);
}

static off_t file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/* A lowered or lost packs row: recovery cuts nothing a chunk row points at. */
static void test_recover_keeps_chunk_rows(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 1u << 20;
	uint8_t *d = make_data(len, 21);
	uint64_t ino = new_file(st, "kept");
	static const char *const damage[] = {
		"UPDATE packs SET size = 16",
		"DELETE FROM packs",
	};
	char path[512];
	off_t size;
	size_t i;

	write_file(st, ino, d, len, len);
	cas_store_close(st);
	newest_pack(path, sizeof(path));
	size = file_size(path);
	for (i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
		catalog_sql(dir, damage[i]);
		st = open_store(0);
		CHECK_EQ(file_size(path), size);
		check_content(st, ino, d, len);
		CHECK_EQ(fsck_problems(st), 0);
		cas_store_close(st);
	}
	free(d);
}

/* A pack no row knows is moved to quarantine/, byte for byte. */
static void test_unknown_pack_quarantined(void)
{
	struct cas_store *st;
	char cmd[1200], path[512];

	newest_pack(path, sizeof(path));
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s/packs/00000077.pack'", path, dir);
	CHECK_EQ(system(cmd), 0);
	st = open_store(0);
	snprintf(path, sizeof(path), "%s/packs/00000077.pack", dir);
	CHECK_EQ(file_size(path), -1);
	newest_pack(path, sizeof(path));
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s/quarantine/00000077.pack'", path, dir);
	CHECK_EQ(system(cmd), 0);
	cas_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -r '%s/quarantine'", dir);
	CHECK_EQ(system(cmd), 0);
}

/*
 * The pack header's mark through a commit: a pack no row names whose mark
 * says fresh or committing was never named by a committed transaction (a
 * crash before the commit): removed, not set aside.  A named pack whose
 * mark a crash left at committing gets it cleared.
 */
/* Byte 12 of a pack file (its mark): set to v when v >= 0; the old value. */
static int pack_mark_byte(const char *path, int v)
{
	FILE *f = fopen(path, "r+b");
	int old = -1;

	if (!f)
		return -1;
	if (fseek(f, 12, SEEK_SET) == 0)
		old = fgetc(f);
	if (v >= 0 && fseek(f, 12, SEEK_SET) == 0)
		fputc(v, f);
	fclose(f);
	return old;
}

static void test_unknown_pack_marks(void)
{
	struct cas_store *st;
	char cmd[1400], path[512], named[512];
	int i;

	newest_pack(named, sizeof(named));
	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/packs/0000007%d.pack", dir, 8 + i);
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", named, path);
		CHECK_EQ(system(cmd), 0);
		pack_mark_byte(path, i + 1); /* 1 fresh, 2 committing */
	}
	pack_mark_byte(named, 2);
	st = open_store(0);
	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/packs/0000007%d.pack", dir, 8 + i);
		CHECK_EQ(file_size(path), -1);
		snprintf(path, sizeof(path), "%s/quarantine/0000007%d.pack", dir, 8 + i);
		CHECK_EQ(file_size(path), -1);
	}
	cas_store_close(st);
	CHECK_EQ(pack_mark_byte(named, -1), 0);
}

/* A lost catalog is refused; cas_rebuild() brings every file back. */
static void test_lost_catalog(void)
{
	struct cas_options o = { .threads = 2, .rebuild = 1 };
	struct cas_store *st = open_store(0), *st2 = NULL;
	size_t len = 700000;
	uint8_t *d = make_data(len, 22);
	uint64_t ino = new_file(st, "rebuilt");
	char err[512], path[512];
	struct cat_attr a;
	int lines = 0;

	write_file(st, ino, d, len, 4096);
	cas_store_close(st);
	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(cas_store_open(dir, NULL, &st2, err, sizeof(err)), -EUCLEAN);
	CHECK(strstr(err, "--rebuild") != NULL);
	CHECK(st2 == NULL);
	CHECK_EQ(cas_store_open(dir, &o, &st2, err, sizeof(err)), 0);
	CHECK_EQ(cas_rebuild(st2, fsck_line, &lines), 0);
	CHECK_EQ(fsck_problems(st2), 0);
	cas_store_close(st2);
	st = open_store(0);
	CHECK_EQ(cas_lookup(st, CAT_ROOT_INO, "rebuilt", &a), 0);
	CHECK_EQ(a.ino, ino);
	check_content(st, ino, d, len);
	cas_store_close(st);
	free(d);
}

/* A damaged pack header: the store opens and reads; fsck reports, repairs. */
static void test_bad_header(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 500000;
	uint8_t *d = make_data(len, 23);
	uint64_t ino = new_file(st, "header");
	char path[512];
	uint8_t b;
	int fd, lines = 0;

	write_file(st, ino, d, len, len);
	cas_store_close(st);
	newest_pack(path, sizeof(path));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, &b, 1, 2), 1);
	b ^= 1;
	CHECK_EQ(pwrite(fd, &b, 1, 2), 1);
	close(fd);
	st = open_store(0);
	check_content(st, ino, d, len);
	CHECK_EQ(fsck_problems(st), 1);
	CHECK_EQ(cas_fsck(st, 1, fsck_line, &lines), 0);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
}

/* Swaps the first two entries of ino's chunk list (the store closed). */
static void swap_entries(uint64_t ino)
{
	char path[512];
	sqlite3 *db;
	sqlite3_stmt *q;
	uint8_t blob[4096], tmp[20];
	int n = 0;

	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_EQ(sqlite3_prepare_v2(db, "SELECT chunks FROM inodes WHERE ino = ?1", -1, &q, NULL),
		 SQLITE_OK);
	sqlite3_bind_int64(q, 1, (sqlite3_int64)ino);
	if (sqlite3_step(q) == SQLITE_ROW) {
		n = sqlite3_column_bytes(q, 0);
		if (n > (int)sizeof(blob))
			n = 0;
		memcpy(blob, sqlite3_column_blob(q, 0), (size_t)n);
	}
	sqlite3_finalize(q);
	CHECK(n >= 40 && memcmp(blob, blob + 20, 20) != 0);
	memcpy(tmp, blob, 20);
	memcpy(blob, blob + 20, 20);
	memcpy(blob + 20, tmp, 20);
	CHECK_EQ(sqlite3_prepare_v2(db, "UPDATE inodes SET chunks = ?2 WHERE ino = ?1", -1, &q, NULL),
		 SQLITE_OK);
	sqlite3_bind_int64(q, 1, (sqlite3_int64)ino);
	sqlite3_bind_blob(q, 2, blob, n, SQLITE_STATIC);
	CHECK_EQ(sqlite3_step(q), SQLITE_DONE);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

/* Reads size bytes of f in steps of step, the pairs of steps swapped. */
static ssize_t read_swapped(struct cas_store *st, struct cas_file *f, uint8_t *buf,
			    size_t size, size_t step, struct cas_fault *fault)
{
	size_t off;
	ssize_t n = 0;

	for (off = 0; off < size; off += 2 * step) {
		size_t o2 = off + step;

		if (o2 < size) {
			n = cas_file_read(st, f, buf + o2, step, o2, fault);
			if (n < 0)
				return n;
		}
		n = cas_file_read(st, f, buf + off, step, off, fault);
		if (n < 0)
			return n;
	}
	return 0;
}

/* A reordered chunk list: every chunk sound, the whole file wrong. */
static void test_sha_check(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 1500000, off;
	uint8_t *d = make_data(len, 24), *buf = malloc(len);
	uint64_t ino = new_file(st, "reordered");
	struct cas_fault fault = { 0 };
	struct cas_file *f;
	ssize_t n = 0;

	write_file(st, ino, d, len, len);
	/* Sound: read in order and slightly out of order, no EIO. */
	CHECK_EQ(cas_file_open(st, ino, &f), 0);
	CHECK_EQ(read_swapped(st, f, buf, len, 131072, NULL), 0);
	CHECK(memcmp(buf, d, len) == 0);
	cas_file_free(f);
	cas_store_close(st);
	swap_entries(ino);
	st = open_store(0);
	CHECK(fsck_problems(st) >= 1);
	CHECK_EQ(cas_file_open(st, ino, &f), 0);
	for (off = 0; off < len; off += (size_t)n) {
		n = cas_file_read(st, f, buf + off, 65536, off, &fault);
		if (n <= 0)
			break;
	}
	CHECK_EQ(n, -EIO);
	CHECK(fault.whole);
	/* Every later read fails too, wherever it starts: the kernel retries a
	 * failed read-ahead range in reads that need not reach the end. */
	CHECK_EQ(cas_file_read(st, f, buf, 100, len - 100, NULL), -EIO);
	CHECK_EQ(cas_file_read(st, f, buf, 100, 0, NULL), -EIO);
	cas_file_free(f);
	/* Out of order, the same. */
	CHECK_EQ(cas_file_open(st, ino, &f), 0);
	CHECK_EQ(read_swapped(st, f, buf, len, 131072, NULL), -EIO);
	cas_file_free(f);
	cas_store_close(st);
	swap_entries(ino); /* the swap undone */
	st = open_store(0);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
	free(buf);
}

/*
 * The pool: a job that always has more to do goes to the back of the
 * queue (pool_requeue()) and takes turns with a job submitted meanwhile,
 * even with the queue full (one thread, room for one job), and none of
 * its turns is lost.  This is how one writer fed flat out leaves the
 * store's feeders to the others.
 */
struct turns {
	struct pool *p;
	pthread_mutex_t lock;
	unsigned a_runs, a_left, b_after;
	int b_done;
};

static void turn_b(void *ctx, void *arg)
{
	struct turns *t = arg;

	(void)ctx;
	pthread_mutex_lock(&t->lock);
	t->b_after = t->a_runs;
	t->b_done = 1;
	pthread_mutex_unlock(&t->lock);
}

static void turn_a(void *ctx, void *arg)
{
	struct turns *t = arg;
	int more;

	(void)ctx;
	pthread_mutex_lock(&t->lock);
	t->a_runs++;
	more = --t->a_left > 0;
	pthread_mutex_unlock(&t->lock);
	if (more) {
		usleep(100);
		pool_requeue(t->p, turn_a, t);
	}
}

static void test_pool_requeue(void)
{
	struct turns t = { .a_left = 2000 };
	unsigned runs = 0;

	pthread_mutex_init(&t.lock, NULL);
	CHECK_EQ(pool_new(1, 1, NULL, NULL, NULL, &t.p), 0);
	CHECK_EQ(pool_submit(t.p, turn_a, &t), 0);
	while (!runs) {
		usleep(100);
		pthread_mutex_lock(&t.lock);
		runs = t.a_runs;
		pthread_mutex_unlock(&t.lock);
	}
	CHECK_EQ(pool_submit(t.p, turn_b, &t), 0);
	pool_free(t.p); /* runs what is queued, then joins */
	CHECK(t.b_done);
	CHECK_EQ(t.a_runs, 2000);
	printf("  the other job ran after %u of 2000 turns\n", t.b_after);
	CHECK(t.b_after < 1000);
	pthread_mutex_destroy(&t.lock);
}

/* xorshift64*: the seeded choices of the model test. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/*
 * A writer against a model of the file's bytes: seeded random appends
 * (small and large), overwrites, truncates, reads, size checks and commits.
 */
static void test_writer_model(void)
{
	const size_t cap = 6u << 20;
	struct cas_store *st = open_store(0);
	uint8_t *src = make_data(cap, 11), *model = malloc(cap), *buf = malloc(1u << 20);
	uint64_t ino = new_file(st, "model"), seed;
	struct cas_writer *w = NULL;
	size_t len = 0;
	int step, commits = 0;

	for (seed = 1; seed <= 3; seed++) {
		uint64_t s = seed * 0x9e3779b97f4a7c15ull;

		CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
		len = 0;
		for (step = 0; step < 120; step++) {
			unsigned op = (unsigned)(rnd(&s) % 100);
			size_t off, n;

			if (op < 60) { /* append: mostly 64 KiB or more */
				n = rnd(&s) % 4 ? 65536 + rnd(&s) % (1u << 20) : 1 + rnd(&s) % 60000;
				if (len + n > cap) {
					CHECK_EQ(cas_writer_truncate(w, 0), 0);
					len = 0;
				}
				off = rnd(&s) % (cap - n);
				memcpy(model + len, src + off, n);
				CHECK_EQ(cas_writer_write(w, model + len, n, len), 0);
				len += n;
			} else if (op < 70 && len) { /* overwrite inside */
				off = rnd(&s) % len;
				n = 1 + rnd(&s) % 200000;
				if (off + n > cap)
					n = cap - off;
				memcpy(model + off, src + rnd(&s) % (cap - n), n);
				CHECK_EQ(cas_writer_write(w, model + off, n, off), 0);
				if (off + n > len)
					len = off + n;
			} else if (op < 76 && len) { /* read back */
				off = rnd(&s) % len;
				n = 1 + rnd(&s) % (1u << 20);
				if (n > len - off)
					n = len - off;
				CHECK_EQ(cas_writer_read(w, buf, n, off, NULL), n);
				CHECK(memcmp(buf, model + off, n) == 0);
			} else if (op < 82) { /* truncate */
				n = len ? rnd(&s) % (len + 1) : 0;
				CHECK_EQ(cas_writer_truncate(w, n), 0);
				len = n;
			} else if (op < 92) { /* commit, and maybe a fresh writer */
				CHECK_EQ(cas_writer_commit(w), 0);
				commits++;
				check_content(st, ino, model, len);
				if (rnd(&s) % 2) {
					cas_writer_free(w);
					CHECK_EQ(cas_writer_open(st, ino, 0, &w), 0);
				}
			}
			CHECK_EQ(cas_writer_size(w), len);
		}
		CHECK_EQ(cas_writer_commit(w), 0);
		cas_writer_free(w);
		check_content(st, ino, model, len);
	}
	CHECK(commits > 10);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(src);
	free(model);
	free(buf);
}

/*
 * An error a writer hit (here an abort, as a full disk's) answers every
 * later write and the commit, and leaves the file with its committed
 * content.
 */
static void test_writer_error(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 4u << 20, i;
	uint8_t *d = make_data(len, 12), *e = make_data(len, 13);
	uint64_t ino = new_file(st, "qerr");
	struct cas_writer *w;
	int r;

	write_file(st, ino, d, 1u << 20, 1u << 20);
	CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
	for (i = 0; i < 2; i++)
		CHECK_EQ(cas_writer_write(w, e + i * (1u << 20), 1u << 20, i * (1u << 20)), 0);
	cas_writer_abort(w, -ENOSPC);
	r = cas_writer_write(w, e + 2 * (1u << 20), 1u << 20, 2 * (1u << 20));
	CHECK_EQ(r, -ENOSPC);
	CHECK_EQ(cas_writer_write(w, e + 3 * (1u << 20), 1u << 20, 3 * (1u << 20)), -ENOSPC);
	CHECK_EQ(cas_writer_commit(w), -ENOSPC);
	cas_writer_free(w);
	check_content(st, ino, d, 1u << 20);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
	free(e);
}

/*
 * A commit that fails returns once the writer's jobs are done: no chunk of
 * a failed writer reaches a pack after its close() (on a full disk such an
 * append took the room a delete had just freed from the reserve, and the
 * delete failed with ENOSPC).  Half the data is random, so its chunks go
 * to the packs raw, each a job that appends without asking the writer.
 */
static void test_writer_error_settles(void)
{
	struct cas_store *st = open_store(0);
	size_t len = 16u << 20, off;
	uint8_t *d = make_data(len, 14);
	uint64_t ino = new_file(st, "qsettle");
	struct cas_status s0, s1;
	struct cas_writer *w;

	CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
	for (off = 0; off < len; off += 1u << 20)
		CHECK_EQ(cas_writer_write(w, d + off, 1u << 20, off), 0);
	cas_writer_abort(w, -ENOSPC);
	CHECK_EQ(cas_writer_commit(w), -ENOSPC);
	CHECK_EQ(cas_status(st, &s0), 0);
	usleep(300 * 1000); /* room for jobs a commit left running to append */
	CHECK_EQ(cas_status(st, &s1), 0);
	CHECK_EQ(s1.pack_disk_bytes, s0.pack_disk_bytes);
	cas_writer_free(w);
	check_content(st, ino, d, 0);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
}

static uint64_t inline_chunks(struct cas_store *st)
{
	struct cas_status s;

	CHECK_EQ(cas_status(st, &s), 0);
	return s.inline_chunks;
}

/*
 * A durable commit of a file that is one small chunk keeps the chunk in
 * the catalog (inline): it reads back, deduplicates, makes the record a
 * push sends, is collected when dead, passes fsck, and moves into a pack
 * at close with the same record.
 */
static void test_inline_chunks(void)
{
	/* The flusher would move inline chunks within flush_ms: not before close here, however
	 * slow the machine. */
	struct cas_options o = { .threads = 2, .flush_ms = 3600 * 1000 };
	struct cas_store *st = NULL;
	char err[512];
	uint8_t *d = make_data(3000, 14), *e = make_data(2000, 15);
	uint8_t rec[PACK_REC_LEN + 4096], rec2[sizeof(rec)], out[4096];
	uint64_t a, b, c, u;
	struct cas_file *f;
	struct cas_id id;
	uint32_t len;
	ssize_t n, n2;

	REQUIRE(cas_store_open(dir, &o, &st, err, sizeof(err)) == 0);
	a = new_file(st, "inl-a");
	b = new_file(st, "inl-b");
	write_file(st, a, d, 3000, 3000);
	CHECK_EQ(inline_chunks(st), 1);
	check_content(st, a, d, 3000);
	REQUIRE(cas_file_open(st, a, &f) == 0);
	CHECK_EQ(cas_file_nchunks(f), 1);
	cas_file_chunk(f, 0, &id, &len);
	cas_file_free(f);
	n = cas_chunk_record(st, &id, rec, sizeof(rec));
	CHECK(n > PACK_REC_LEN);
	CHECK_EQ(cas_record_check(st, rec, (size_t)n, &id, out), 3000);
	CHECK(memcmp(out, d, 3000) == 0);
	/* The same bytes again: deduplicated against the inline chunk. */
	u = unique_bytes(st);
	c = new_file(st, "inl-c");
	write_file(st, c, d, 3000, 3000);
	CHECK_EQ(unique_bytes(st), u);
	CHECK_EQ(inline_chunks(st), 1);
	/* A dead inline chunk is collected with its bytes. */
	write_file(st, b, e, 2000, 2000);
	CHECK_EQ(inline_chunks(st), 2);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "inl-b", 0, NULL), 0);
	CHECK(cas_gc(st) >= 0);
	CHECK_EQ(inline_chunks(st), 1);
	CHECK_EQ(fsck_problems(st), 0);
	/* Closing moves it into a pack: the same record, read from there. */
	cas_store_close(st);
	st = open_store(0);
	CHECK_EQ(inline_chunks(st), 0);
	check_content(st, a, d, 3000);
	check_content(st, c, d, 3000);
	n2 = cas_chunk_record(st, &id, rec2, sizeof(rec2));
	CHECK_EQ(n2, n);
	CHECK(n2 == n && memcmp(rec, rec2, (size_t)n) == 0);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
	free(e);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/llmfs-test-store-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return 1;
	RUN(test_write_read);
	RUN(test_dedup);
	RUN(test_small_tensors);
	RUN(test_group_commit);
	RUN(test_out_of_order);
	RUN(test_append_after_commit);
	RUN(test_pool_requeue);
	RUN(test_writer_model);
	RUN(test_writer_error);
	RUN(test_writer_error_settles);
	RUN(test_inline_chunks);
	RUN(test_truncate_and_share);
	RUN(test_namespace);
	RUN(test_catalog_txn);
	RUN(test_gc);
	RUN(test_orphan);
	RUN(test_uncommitted_cut_off);
	RUN(test_damage);
	RUN(test_recover_keeps_chunk_rows);
	RUN(test_unknown_pack_quarantined);
	RUN(test_unknown_pack_marks);
	RUN(test_lost_catalog);
	RUN(test_bad_header);
	RUN(test_sha_check);
	RUN(test_refusals); /* last: it leaves a store no one may open */
	if (!check_failures) {
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			return 1;
	}
	return check_status();
}
