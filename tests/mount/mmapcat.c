/*
 * mmapcat.c - writes a file to stdout by reading it through mmap(), the way
 * llama.cpp loads model files.
 *
 *   mmapcat [-s] [-r] FILE
 *     -s  MAP_SHARED instead of MAP_PRIVATE
 *     -r  touch the pages in reverse order first (random-ish access), then
 *         write them out in order
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int flags = MAP_PRIVATE, reverse = 0, c, fd;
	struct stat st;
	unsigned char *p;
	size_t off, n;
	unsigned long sum = 0;

	while ((c = getopt(argc, argv, "sr")) != -1) {
		if (c == 's')
			flags = MAP_SHARED;
		else if (c == 'r')
			reverse = 1;
		else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: mmapcat [-s] [-r] FILE\n");
		return 2;
	}
	fd = open(argv[optind], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[optind]);
		return 1;
	}
	if (st.st_size == 0)
		return 0;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, flags, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	close(fd);
	if (reverse) {
		for (off = (size_t)st.st_size; off > 0;) {
			off = off > 4096 ? off - 4096 : 0;
			sum += p[off];
		}
	}
	for (off = 0; off < (size_t)st.st_size; off += n) {
		ssize_t w;

		n = (size_t)st.st_size - off;
		if (n > 1 << 20)
			n = 1 << 20;
		w = write(1, p + off, n);
		if (w < 0) {
			perror("write");
			return 1;
		}
		n = (size_t)w;
	}
	munmap(p, (size_t)st.st_size);
	return sum == (unsigned long)-1; /* keeps the reverse pass */
}
