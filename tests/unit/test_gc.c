/*
 * test_gc.c - collection and compaction never lose committed data.
 *
 * Each case drives the store API with small packs (cas_options.pack_max),
 * so that compaction moves records between packs and crosses the pack limit
 * with a few MiB; every check is made after a close and a reopen too, since
 * the next start's recovery cuts each pack back to its committed size and a
 * loss can hide behind caches until then.  A delete must give its space
 * back at the next collection, without waiting for a pack to be half
 * garbage.  Collection follows recovery's rules: it cuts no pack below
 * the chunk records the catalog points into, sets aside (never deletes) a
 * pack it did not make and no row knows, and a catalog rebuilt from packs
 * it punched skips the punched records quietly.  The last case makes seeded random
 * creates, overwrites, deletes, collections and reopens against a model of
 * what every file must hold.  Then orphan files (cas_store_orphan_create())
 * and the store's collector thread, and the bound on verified_lists.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backend/store/catalog.h"
#include "backend/store/store.h"
#include "tests/check.h"
#include "store_util.h"

static char top[256];
static char dir[300];
static unsigned ncase;

/* A fresh store folder for each case. */
static void new_dir(void)
{
	snprintf(dir, sizeof(dir), "%s/s%u", top, ++ncase);
}

static struct cas_store *open_store(uint64_t pack_max)
{
	return store_open_in(dir, pack_max);
}

/* Content is a function of (seed, len): the model keeps no bytes. */
static uint8_t *content(unsigned seed, size_t len)
{
	uint8_t *d = malloc(len ? len : 1);

	fill_random(d, len, seed);
	return d;
}

static int put_file(struct cas_store *st, const char *name, unsigned seed,
		    size_t len)
{
	struct cat_attr a;
	struct cas_writer *w;
	uint8_t *d = content(seed, len);
	size_t off, step = 100000;
	int r;

	r = cas_lookup(st, CAT_ROOT_INO, name, &a);
	if (r == -ENOENT)
		r = cas_mknode(st, CAT_ROOT_INO, name, S_IFREG | 0644, 0, 0, NULL, &a);
	if (r == 0)
		r = cas_writer_open(st, a.ino, 1, &w);
	if (r < 0)
		goto out;
	for (off = 0; r == 0 && off < len; off += step)
		r = cas_writer_write(w, d + off, off + step > len ? len - off : step, off);
	if (r == 0)
		r = cas_writer_commit(w);
	cas_writer_free(w);
out:
	free(d);
	return r;
}

/* 1 if name holds exactly content(seed, len). */
static int file_is(struct cas_store *st, const char *name, unsigned seed, size_t len)
{
	struct cat_attr a;
	struct cas_file *f;
	uint8_t *want = content(seed, len), *got = malloc(len + 1);
	size_t off = 0;
	int ok = 0;

	if (cas_lookup(st, CAT_ROOT_INO, name, &a) < 0 ||
	    cas_file_open(st, a.ino, &f) < 0) {
		fprintf(stderr, "  %s: cannot open\n", name);
		goto out;
	}
	ok = cas_file_size(f) == len;
	while (ok && off < len) {
		ssize_t n = cas_file_read(st, f, got + off, len - off, off, NULL);

		if (n <= 0) {
			fprintf(stderr, "  %s: read at %zu: %zd\n", name, off, n);
			ok = 0;
		}
		off += n > 0 ? (size_t)n : 0;
	}
	ok = ok && memcmp(got, want, len) == 0;
	if (!ok)
		fprintf(stderr, "  %s: content differs\n", name);
	cas_file_free(f);
out:
	free(want);
	free(got);
	return ok;
}

/*
 * One run sees two deletions: compacting the older pack appends its live
 * records to the current pack, whose figures read before the run say it is
 * all garbage.  Scaled from the report (150, 60 and 120 MiB; 256 MiB packs).
 */
static void test_compacted_into_pack_kept(void)
{
	const uint64_t pm = 2560u << 10;
	struct cas_store *st;

	new_dir();
	st = open_store(pm);
	CHECK_EQ(put_file(st, "A", 1, 1500u << 10), 0);
	CHECK_EQ(put_file(st, "B", 2, 600u << 10), 0);
	CHECK_EQ(put_file(st, "E", 3, 1200u << 10), 0);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "A", 0, NULL), 0);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "E", 0, NULL), 0);
	CHECK(cas_gc(st) > 0);
	CHECK(file_is(st, "B", 2, 600u << 10));
	cas_store_close(st);
	st = open_store(pm);
	CHECK(file_is(st, "B", 2, 600u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	/* A second run has nothing left to break. */
	CHECK(cas_gc(st) >= 0);
	cas_store_close(st);
	st = open_store(pm);
	CHECK(file_is(st, "B", 2, 600u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

/*
 * Compaction fills the current pack past the limit and goes on in a new
 * one: the filled pack's new size must be committed with the move, or the
 * next start cuts the moved records off.  Scaled from the report (200, 80
 * and 190 MiB), with C a little larger so that B's first moved records
 * fill the pack C is in.
 */
static void test_compaction_across_pack_limit(void)
{
	const uint64_t pm = 2560u << 10;
	struct cas_store *st;

	new_dir();
	st = open_store(pm);
	CHECK_EQ(put_file(st, "A", 11, 2000u << 10), 0);
	CHECK_EQ(put_file(st, "B", 12, 800u << 10), 0);
	CHECK_EQ(put_file(st, "C", 13, 2300u << 10), 0);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "A", 0, NULL), 0);
	CHECK(cas_gc(st) > 0);
	CHECK(file_is(st, "B", 12, 800u << 10));
	CHECK(file_is(st, "C", 13, 2300u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	st = open_store(pm);
	CHECK(file_is(st, "B", 12, 800u << 10));
	CHECK(file_is(st, "C", 13, 2300u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

/* Files 0, 2 and 4 of every seven. */
static int kept(int i)
{
	return i % 7 < 5 && i % 7 % 2 == 0;
}

/*
 * The same, many times in one run: one-chunk files, three of every seven
 * kept, so that every pack is under half live and each compaction moves
 * several records into a pack that fills midway.
 */
static void test_compaction_across_many_packs(void)
{
	const uint64_t pm = 256u << 10, len = 40000;
	struct cas_store *st;
	char name[16];
	int i;

	new_dir();
	st = open_store(pm);
	for (i = 0; i < 70; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		CHECK_EQ(put_file(st, name, 100 + (unsigned)i, len), 0);
	}
	for (i = 0; i < 70; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		if (!kept(i))
			CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, name, 0, NULL), 0);
	}
	CHECK(cas_gc(st) > 0);
	cas_store_close(st);
	st = open_store(pm);
	for (i = 0; i < 70; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		if (kept(i))
			CHECK(file_is(st, name, 100 + (unsigned)i, len));
	}
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

/* 1 if the filesystem of dir can punch holes (ext4, xfs, btrfs, tmpfs). */
static int can_punch(void)
{
	char path[400];
	int fd, ok;

	snprintf(path, sizeof(path), "%s/punch-probe", top);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return 0;
	ok = posix_fallocate(fd, 0, 65536) == 0 &&
	     fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 65536) == 0;
	close(fd);
	unlink(path);
	return ok;
}

static uint64_t disk_bytes(struct cas_store *st)
{
	struct cas_status s;

	CHECK_EQ(cas_status(st, &s), 0);
	return s.pack_disk_bytes;
}

/*
 * Deleting frees space without compaction: one pack, two thirds of it
 * still live (no compaction is due), yet the deleted third goes back to
 * the disk at the next collection.
 */
static void test_delete_frees_space(void)
{
	const size_t la = 2u << 20, lb = 4u << 20;
	uint64_t before, after;
	struct cas_store *st;

	if (!can_punch()) {
		fprintf(stderr, "  (%s cannot punch holes: skipped)\n", top);
		return;
	}
	new_dir();
	st = open_store(0);
	CHECK_EQ(put_file(st, "A", 31, la), 0);
	CHECK_EQ(put_file(st, "B", 32, lb), 0);
	before = disk_bytes(st);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "A", 0, NULL), 0);
	CHECK(cas_gc(st) > (int64_t)(la - la / 16));
	after = disk_bytes(st);
	fprintf(stderr, "  pack bytes on disk %llu -> %llu\n",
		(unsigned long long)before, (unsigned long long)after);
	CHECK(after + la - la / 16 < before);
	CHECK(file_is(st, "B", 32, lb));
	cas_store_close(st);
	st = open_store(0);
	CHECK(file_is(st, "B", 32, lb));
	CHECK_EQ(fsck_problems(st), 0);
	/* The same bytes again: stored anew, not taken from a punched record. */
	CHECK_EQ(put_file(st, "A", 31, la), 0);
	cas_store_close(st);
	st = open_store(0);
	CHECK(file_is(st, "A", 31, la));
	CHECK(file_is(st, "B", 32, lb));
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

/* Count of files in dir/sub (0 if it does not exist). */
static int count_files(const char *sub)
{
	char cmd[600];
	FILE *p;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "ls '%s/%s' 2>/dev/null | wc -l", dir, sub);
	p = popen(cmd, "r");
	if (p) {
		if (fscanf(p, "%d", &n) != 1)
			n = 0;
		pclose(p);
	}
	return n;
}

/*
 * A packs row lowered or lost while the store runs (a damaged catalog):
 * collection cuts nothing the chunk rows point into, and removes no pack
 * they point into.  Several packs, so that both the current pack and
 * older ones go without a row.
 */
static void test_gc_keeps_chunk_row_floor(const char *sql)
{
	const uint64_t pm = 256u << 10;
	struct cas_store *st;

	new_dir();
	st = open_store(pm);
	CHECK_EQ(put_file(st, "A", 41, 1200u << 10), 0);
	CHECK_EQ(put_file(st, "B", 42, 300u << 10), 0);
	CHECK_EQ(put_file(st, "C", 43, 200u << 10), 0);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "C", 0, NULL), 0);
	catalog_sql(dir, sql);
	CHECK(cas_gc(st) >= 0);
	CHECK(file_is(st, "A", 41, 1200u << 10));
	CHECK(file_is(st, "B", 42, 300u << 10));
	cas_store_close(st);
	st = open_store(pm);
	CHECK(file_is(st, "A", 41, 1200u << 10));
	CHECK(file_is(st, "B", 42, 300u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	CHECK_EQ(count_files("quarantine"), 0);
	cas_store_close(st);
}

static void test_gc_pack_rows_lowered(void)
{
	test_gc_keeps_chunk_row_floor("UPDATE packs SET size = 16");
}

static void test_gc_pack_rows_lost(void)
{
	test_gc_keeps_chunk_row_floor("DELETE FROM packs");
}

/*
 * A pack that holds records but that no row knows, found by a collection
 * in a store opened without recovery (as llmfs-fsck opens it): its rows
 * may be lost, so it is moved to quarantine/, not deleted.
 */
static void test_gc_unknown_pack_quarantined(void)
{
	struct cas_options o = { .threads = 2, .no_recovery = 1 };
	struct cas_store *st;
	char cmd[1400], err[512];

	new_dir();
	st = open_store(0);
	CHECK_EQ(put_file(st, "A", 51, 500u << 10), 0);
	cas_store_close(st);
	/* As if the rows of pack 2 were lost: a copy of pack 1 under its id. */
	snprintf(cmd, sizeof(cmd), "cp '%s/packs/00000001.pack' '%s/packs/00000002.pack'",
		 dir, dir);
	CHECK_EQ(system(cmd), 0);
	CHECK_EQ(cas_store_open(dir, &o, &st, err, sizeof(err)), 0);
	CHECK(cas_gc(st) >= 0);
	cas_store_close(st);
	snprintf(cmd, sizeof(cmd), "cmp -s '%s/packs/00000001.pack' '%s/quarantine/00000002.pack'",
		 dir, dir);
	CHECK_EQ(system(cmd), 0);
	st = open_store(0);
	CHECK(file_is(st, "A", 51, 500u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

/*
 * A writer dropped after it started a new pack: the packs this run made
 * hold nothing committed, so collection deletes them (the space is the
 * user's), sets nothing aside, and keeps every committed file.
 */
static void test_gc_abandoned_pack_removed(void)
{
	const uint64_t pm = 256u << 10;
	uint8_t *d = content(62, 1200u << 10);
	struct cas_writer *w;
	struct cas_store *st;
	struct cat_attr a;
	int before;

	new_dir();
	st = open_store(pm);
	CHECK_EQ(put_file(st, "A", 61, 300u << 10), 0);
	before = count_files("packs");
	CHECK_EQ(cas_mknode(st, CAT_ROOT_INO, "B", S_IFREG | 0644, 0, 0, NULL, &a), 0);
	CHECK_EQ(cas_writer_open(st, a.ino, 1, &w), 0);
	CHECK_EQ(cas_writer_write(w, d, 1200u << 10, 0), 0);
	cas_writer_free(w);
	CHECK(count_files("packs") > before);
	CHECK(cas_gc(st) > 0);
	CHECK(count_files("packs") <= before + 1);
	CHECK_EQ(count_files("quarantine"), 0);
	CHECK(file_is(st, "A", 61, 300u << 10));
	cas_store_close(st);
	st = open_store(pm);
	CHECK(file_is(st, "A", 61, 300u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
}

/*
 * Counts the report lines of a rebuild that speak of damage, or of bytes
 * past a pack's committed size (the rebuilt size left out records).
 */
static void damage_line(void *arg, const char *line)
{
	fprintf(stderr, "  rebuild: %s\n", line);
	if (strstr(line, "damaged") || strstr(line, "uncommitted"))
		++*(int *)arg;
}

/*
 * Collection punched the records of a deleted file; then the catalog is
 * lost.  llmfs-fsck --rebuild skips the punched records as collected (no
 * damage reported) and every live file comes back byte-identical.
 */
static void test_rebuild_after_punch(void)
{
	struct cas_options o = { .threads = 2, .rebuild = 1 };
	struct cas_store *st;
	char cmd[600], err[512];
	int damage = 0;

	if (!can_punch()) {
		fprintf(stderr, "  (%s cannot punch holes: skipped)\n", top);
		return;
	}
	new_dir();
	st = open_store(0);
	CHECK_EQ(put_file(st, "A", 71, 1500u << 10), 0);
	CHECK_EQ(put_file(st, "B", 72, 700u << 10), 0);
	CHECK_EQ(put_file(st, "C", 73, 1500u << 10), 0);
	CHECK_EQ(put_file(st, "D", 74, 600u << 10), 0);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "B", 0, NULL), 0);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "D", 0, NULL), 0);
	/* Under half garbage: no compaction, the records are punched. */
	CHECK(cas_gc(st) > (int64_t)(1u << 20));
	CHECK_EQ(fsck_problems(st), 0);
	CHECK_EQ(cas_snapshot(st), 0);
	cas_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm '%s/catalog.db'*", dir);
	CHECK_EQ(system(cmd), 0);
	st = NULL;
	CHECK_EQ(cas_store_open(dir, &o, &st, err, sizeof(err)), 0);
	if (!st)
		return;
	CHECK_EQ(cas_rebuild(st, damage_line, &damage), 0);
	CHECK_EQ(cas_fsck(st, 0, damage_line, &damage), 0);
	CHECK_EQ(damage, 0);
	cas_store_close(st);
	st = open_store(0);
	CHECK(file_is(st, "A", 71, 1500u << 10));
	CHECK(file_is(st, "C", 73, 1500u << 10));
	CHECK_EQ(fsck_problems(st), 0);
	CHECK_EQ(count_files("quarantine"), 0);
	cas_store_close(st);
}

/* The model: which files exist and what they hold. */
#define NFILES 12
struct model {
	int exists[NFILES];
	unsigned seed[NFILES];
	size_t len[NFILES];
};

static size_t rand_len(unsigned *x)
{
	*x = *x * 1103515245u + 12345u;
	switch ((*x >> 16) % 4) {
	case 0:
		return (*x >> 8) % 5000;          /* one small chunk */
	case 1:
		return (*x >> 8) % (300u << 10);
	default:
		return (*x >> 8) % (1500u << 10);  /* several chunks, packs */
	}
}

static int check_model(struct cas_store *st, const struct model *m, unsigned seed,
		       int step)
{
	struct cat_attr a;
	char name[16];
	int i, bad = 0;

	for (i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		if (m->exists[i])
			bad += !file_is(st, name, m->seed[i], m->len[i]);
		else
			bad += cas_lookup(st, CAT_ROOT_INO, name, &a) != -ENOENT;
	}
	if (bad)
		fprintf(stderr, "  model seed %u: %d files wrong after step %d\n",
			seed, bad, step);
	return bad;
}

/*
 * Seeded random operations; a failure prints the seed (MODEL_SEED=N
 * repeats one).  Contents are random bytes, or a copy (same seed, other
 * length) of another file's, so that chunks are shared between files.
 */
static void model_run(unsigned seed, int steps)
{
	struct model m;
	struct cas_store *st;
	unsigned x = seed;
	char name[16];
	int s, i, op;

	memset(&m, 0, sizeof(m));
	new_dir();
	st = open_store(300u << 10);
	for (s = 0; s < steps; s++) {
		x = x * 1103515245u + 12345u;
		op = (int)((x >> 16) % 10);
		i = (int)((x >> 8) % NFILES);
		snprintf(name, sizeof(name), "f%d", i);
		if (op < 4) {
			int j = (int)((x >> 4) % NFILES);
			unsigned fs = m.exists[j] && op == 0 ? m.seed[j] : seed * 1000u + (unsigned)s;
			size_t len = rand_len(&x);

			CHECK_EQ(put_file(st, name, fs, len), 0);
			m.exists[i] = 1;
			m.seed[i] = fs;
			m.len[i] = len;
		} else if (op < 7) {
			CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, name, 0, NULL),
				 m.exists[i] ? 0 : -ENOENT);
			m.exists[i] = 0;
		} else if (op < 9) {
			CHECK(cas_gc(st) >= 0);
		} else {
			cas_store_close(st);
			st = open_store(300u << 10);
			if (check_model(st, &m, seed, s)) {
				check_failures++;
				break;
			}
		}
	}
	CHECK(cas_gc(st) >= 0);
	cas_store_close(st);
	st = open_store(300u << 10);
	if (check_model(st, &m, seed, steps))
		check_failures++;
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

static void test_model(void)
{
	const char *env = getenv("MODEL_SEED");
	unsigned seed;

	if (env) {
		model_run((unsigned)strtoul(env, NULL, 10), 200);
		return;
	}
	for (seed = 1; seed <= 6; seed++)
		model_run(seed, 60);
}

/*
 * Orphan files (cas_store_orphan_create()): no name shows them, they hold
 * committed content, cas_release_orphan() or the next open frees them.
 */
static int count_child(void *arg, const char *name, const struct cat_attr *a)
{
	(*(int *)arg)++;
	return 0;
}

static void test_orphan_create(void)
{
	struct cas_writer *w = NULL;
	struct cas_file *f = NULL;
	struct cat_attr a;
	uint64_t ino = 0, lino = 0;
	uint8_t *d = content(41, 300000), buf[16];
	char *target = NULL;
	struct cas_store *st;
	int kids = 0;

	new_dir();
	st = open_store(0);

	CHECK_EQ(cas_store_orphan_create(st, S_IFDIR | 0755, 0, 0, NULL, &ino), -EINVAL);
	CHECK_EQ(cas_store_orphan_create(st, S_IFREG | 0600, 0, 0, NULL, &ino), 0);
	CHECK_EQ(cas_store_orphan_create(st, S_IFLNK | 0777, 0, 0, "t", &lino), 0);
	CHECK(ino && lino && ino != lino);
	CHECK_EQ(cas_writer_open(st, ino, 1, &w), 0);
	CHECK_EQ(cas_writer_write(w, d, 300000, 0), 0);
	CHECK_EQ(cas_writer_commit(w), 0);
	cas_writer_free(w);
	CHECK_EQ(cas_children(st, CAT_ROOT_INO, count_child, &kids), 0);
	CHECK_EQ(kids, 0);
	CHECK_EQ(cas_getattr(st, ino, &a), 0);
	CHECK_EQ(a.nlink, 0);
	CHECK_EQ(a.size, 300000);
	CHECK_EQ(cas_file_open(st, ino, &f), 0);
	CHECK_EQ(cas_file_read(st, f, buf, sizeof(buf), 1000, NULL), (ssize_t)sizeof(buf));
	CHECK(memcmp(buf, d + 1000, sizeof(buf)) == 0);
	cas_file_free(f);
	CHECK_EQ(cas_readlink(st, lino, &target), 0);
	CHECK(target && !strcmp(target, "t"));
	free(target);
	CHECK_EQ(cas_release_orphan(st, lino), 0);
	CHECK_EQ(cas_getattr(st, lino, &a), -ENOENT);
	cas_store_close(st);
	/* The one left is crash residue: gone at the next open. */
	st = open_store(0);
	CHECK_EQ(cas_getattr(st, ino, &a), -ENOENT);
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
	free(d);
}

struct gc_seen {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int runs;
	int64_t freed;
};

static void gc_seen_done(void *arg, int64_t freed)
{
	struct gc_seen *g = arg;

	pthread_mutex_lock(&g->lock);
	g->runs++;
	g->freed = freed;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* The store's collector thread collects when asked, and says so. */
static void test_gc_thread(void)
{
	struct gc_seen g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	struct timespec ts;
	struct cas_store *st;
	char snap[400];
	int r = 0;

	new_dir();
	snprintf(snap, sizeof(snap), "%s/files.snap", dir);
	st = open_store(0);
	CHECK_EQ(put_file(st, "A", 51, 2u << 20), 0);
	CHECK_EQ(put_file(st, "B", 52, 1u << 20), 0);
	CHECK_EQ(cas_gc_thread_start(st, gc_seen_done, &g), 0);
	CHECK_EQ(cas_gc_thread_start(st, gc_seen_done, &g), -EBUSY);
	CHECK_EQ(cas_unlink(st, CAT_ROOT_INO, "A", 0, NULL), 0);
	unlink(snap);
	cas_gc_want(st);
	/* A deadline, not a timing check: the run comes a second after the ask. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 60;
	pthread_mutex_lock(&g.lock);
	while (!g.runs && r == 0)
		r = pthread_cond_timedwait(&g.cond, &g.lock, &ts);
	pthread_mutex_unlock(&g.lock);
	CHECK_EQ(g.runs, 1);
	CHECK(g.freed > 0);
	cas_gc_thread_stop(st);
	cas_gc_thread_stop(st);
	CHECK(file_is(st, "B", 52, 1u << 20));
	/* After a collection that ran, the files are snapshotted. */
	CHECK_EQ(access(snap, F_OK), 0);
	CHECK_EQ(fsck_problems(st), 0);
	/* Started again, then left for cas_store_close() to stop. */
	CHECK_EQ(cas_gc_thread_start(st, NULL, NULL), 0);
	cas_gc_want(st);
	cas_store_close(st);
}

/* The rows of verified_lists, read beside the open store. */
static long verified_rows(void)
{
	char path[512];
	sqlite3 *db;
	sqlite3_stmt *s;
	long n = -1;

	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM verified_lists", -1, &s,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			n = (long)sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
	return n;
}

/* Adds n made-up digests to verified_lists: lists of versions long gone. */
static void add_stale_lists(int n)
{
	char sql[300];

	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
		 "WHERE i < %d) INSERT INTO verified_lists(digest) "
		 "SELECT randomblob(32) FROM k", n);
	catalog_sql(dir, sql);
}

/*
 * verified_lists keeps the confirmed lists of versions since overwritten:
 * a collection empties it once it holds more than twice the large files
 * plus CAT_VERIFIED_SLACK, and leaves a smaller one alone.  Nothing read
 * changes: a large file read after it is emptied is hashed whole again.
 */
static void test_gc_verified_pruned(void)
{
	const size_t big = (16u << 20) + 4096;
	struct cas_store *st;

	new_dir();
	st = open_store(0);
	CHECK_EQ(put_file(st, "A", 51, big), 0);
	CHECK_EQ(verified_rows(), 1); /* A's writer stored every chunk */
	add_stale_lists(CAT_VERIFIED_SLACK - 1);
	CHECK(cas_gc(st) >= 0);
	CHECK_EQ(verified_rows(), CAT_VERIFIED_SLACK); /* 2 x 1 + slack: kept */
	add_stale_lists(10);
	CHECK(cas_gc(st) >= 0);
	CHECK_EQ(verified_rows(), 0);
	CHECK(file_is(st, "A", 51, big));
	cas_store_close(st);
	st = open_store(0);
	CHECK(file_is(st, "A", 51, big));
	CHECK_EQ(fsck_problems(st), 0);
	cas_store_close(st);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(top, sizeof(top), "%s/llmfs-test-gc-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(top))
		return 1;
	RUN(test_compacted_into_pack_kept);
	RUN(test_compaction_across_pack_limit);
	RUN(test_compaction_across_many_packs);
	RUN(test_delete_frees_space);
	RUN(test_gc_pack_rows_lowered);
	RUN(test_gc_pack_rows_lost);
	RUN(test_gc_unknown_pack_quarantined);
	RUN(test_gc_abandoned_pack_removed);
	RUN(test_rebuild_after_punch);
	RUN(test_model);
	RUN(test_orphan_create);
	RUN(test_gc_thread);
	RUN(test_gc_verified_pruned);
	if (!check_failures) {
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
		if (system(cmd) != 0)
			return 1;
	}
	return check_status();
}
