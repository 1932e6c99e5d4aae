/* gpu/data.c - token files and batch sampling (see data.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsync.h"
#include "gpu/data.h"
#include "gpu/gpt.h"

#define TOK_MAGIC "LLMFSTOK"
#define TOK_HEADER 16
#define TOK_VERSION 1

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}


/* Two pieces, so that the tokeniser need not build header + body in one buffer. */
static int write_atomic2(const char *path, const void *a, size_t alen, const void *b,
			 size_t blen)
{
	size_t n = strlen(path) + 16;
	char *tmp = malloc(n);
	int fd = -1, r;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if ((r = write_all(fd, a, alen)) < 0 || (r = write_all(fd, b, blen)) < 0)
		goto out_unlink;
	if (fsync(fd) < 0) {
		r = -errno;
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto out_unlink;
	}
	r = fsync_parent(path);
	goto out;
out_unlink:
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	return r;
}

int gpu_write_file_atomic(const char *path, const void *data, size_t len)
{
	return write_atomic2(path, data, len, "", 0);
}

static int read_whole(const char *path, unsigned char **ret, size_t *ret_len)
{
	struct stat st;
	unsigned char *buf = NULL;
	size_t got = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)n;
	}
	*ret = buf;
	*ret_len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

int gpu_data_tokenize(const char *text_path, const char *token_path)
{
	unsigned char *text = NULL, header[TOK_HEADER];
	uint16_t *tok = NULL;
	size_t len = 0;
	int r;

	r = read_whole(text_path, &text, &len);
	if (r < 0)
		return r;
	tok = malloc((len ? len : 1) * sizeof(*tok));
	if (!tok) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		/* little-endian on disk whatever the host */
		unsigned char *p = (unsigned char *)(tok + i);

		p[0] = text[i];
		p[1] = 0;
	}
	memcpy(header, TOK_MAGIC, 8);
	header[8] = TOK_VERSION; header[9] = 0; header[10] = 0; header[11] = 0;
	header[12] = 0; header[13] = 1; header[14] = 0; header[15] = 0; /* 256 */
	r = write_atomic2(token_path, header, sizeof(header), tok, len * sizeof(*tok));
out:
	free(tok);
	free(text);
	return r;
}

int gpu_data_is_token_file(const char *path)
{
	char magic[8];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, magic, sizeof(magic));
	close(fd);
	return n == (ssize_t)sizeof(magic) && memcmp(magic, TOK_MAGIC, 8) == 0;
}

int gpu_data_open(struct gpu_data *d, const char *token_path, double val_fraction)
{
	struct stat st;
	const unsigned char *h;
	void *map;
	int fd, r = 0;

	memset(d, 0, sizeof(*d));
	if (!(val_fraction >= 0.0 && val_fraction < 1.0))
		return -EINVAL;
	fd = open(token_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (st.st_size < TOK_HEADER || (st.st_size - TOK_HEADER) % 2 != 0) {
		r = -EINVAL;
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		r = -errno;
		goto out;
	}
	h = map;
	if (memcmp(h, TOK_MAGIC, 8) != 0 || h[8] != TOK_VERSION || h[9] || h[10] || h[11]) {
		munmap(map, (size_t)st.st_size);
		r = -EINVAL;
		goto out;
	}
	d->map = map;
	d->map_len = (size_t)st.st_size;
	d->vocab_size = (int)(h[12] | h[13] << 8 | h[14] << 16 | (unsigned)h[15] << 24);
	d->tokens = (const uint16_t *)(h + TOK_HEADER);
	d->n_tokens = (d->map_len - TOK_HEADER) / 2;
	d->n_train = d->n_tokens - (size_t)(val_fraction * (double)d->n_tokens);
out:
	close(fd);
	return r;
}

void gpu_data_release(struct gpu_data *d)
{
	if (d->map)
		munmap(d->map, d->map_len);
	memset(d, 0, sizeof(*d));
}

static int32_t tok_at(const struct gpu_data *d, size_t i)
{
	const unsigned char *p = (const unsigned char *)(d->tokens + i);

	return p[0] | p[1] << 8;
}

int gpu_data_batch(const struct gpu_data *d, enum gpu_split split, uint64_t seed,
		   uint64_t index, int B, int T, int32_t *inputs, int32_t *targets)
{
	size_t lo = split == GPU_SPLIT_TRAIN ? 0 : d->n_train;
	size_t hi = split == GPU_SPLIT_TRAIN ? d->n_train : d->n_tokens;
	/* Distinct, fixed streams per split; the constant is arbitrary but part of the format of
	 * a run: changing it changes every batch. */
	uint64_t rng = seed ^ (split == GPU_SPLIT_VAL ? 0x5bd1e9955bd1e995ULL : 0);

	if (B < 1 || T < 1 || hi - lo < (size_t)T + 1)
		return -EINVAL;
	for (int b = 0; b < B; b++) {
		uint64_t s = rng ^ ((index * (uint64_t)B + (uint64_t)b) * 0xd6e8feb86659fd93ULL);
		size_t start = lo + gpu_rng_next(&s) % (hi - lo - (size_t)T);

		for (int t = 0; t < T; t++) {
			inputs[(size_t)b * T + t] = tok_at(d, start + t);
			targets[(size_t)b * T + t] = tok_at(d, start + t + 1);
		}
	}
	return 0;
}
