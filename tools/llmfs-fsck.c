/*
 * llmfs-fsck - verifies a store: the catalog, every chunk, every file.
 *
 *   llmfs-fsck [--repair] [--store] DIR
 *   llmfs-fsck --rebuild [--store] DIR
 *
 * Exits 0 when the store is sound (or was repaired; crash residue the next
 * mount cleans is reported as a note and is no problem), 1 when problems
 * remain, 2 on usage errors or when the store cannot be opened (a running
 * daemon holds it, the catalog is lost: --rebuild).  --rebuild moves the
 * catalog aside, indexes every pack again and restores the files of the
 * last file snapshot; then it checks the result as plain fsck does.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "backend/store/store.h"

static void print_line(void *arg, const char *line)
{
	(void)arg;
	printf("%s\n", line);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "rebuild", no_argument, NULL, 'R' },
		{ "store", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cas_options opt = { .no_recovery = 1, .threads = 1 };
	struct cas_store *st;
	const char *dir = NULL;
	char err[1024];
	int repair = 0, rebuild = 0, c, r;

	while ((c = getopt_long(argc, argv, "rs:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			repair = 1;
			break;
		case 'R':
			rebuild = 1;
			break;
		case 's':
			dir = optarg;
			break;
		case 'h':
			printf("usage: llmfs-fsck [--repair | --rebuild] [--store] DIR\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!dir && optind < argc)
		dir = argv[optind++];
	if (!dir || optind != argc) {
		fprintf(stderr, "usage: llmfs-fsck [--repair | --rebuild] [--store] DIR\n");
		return 2;
	}
	if (rebuild && cas_store_open(dir, &opt, &st, err, sizeof(err)) == 0) {
		/*
		 * The catalog opens: rebuilding would drop whatever was
		 * committed after the last file snapshot.  A catalog that opens
		 * but is beyond --repair is moved aside by hand first.
		 */
		cas_store_close(st);
		fprintf(stderr,
			"llmfs-fsck: the catalog of %s opens: --rebuild is for a lost catalog"
			" (it restores files as of the last snapshot); run --repair, or move"
			" catalog.db aside first to rebuild anyway\n", dir);
		return 2;
	}
	opt.rebuild = rebuild;
	r = cas_store_open(dir, &opt, &st, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "llmfs-fsck: %s\n", err);
		return 2;
	}
	if (rebuild) {
		r = cas_rebuild(st, print_line, NULL);
		if (r < 0) {
			cas_store_close(st);
			fprintf(stderr, "llmfs-fsck: rebuilding %s: %s\n", dir, strerror(-r));
			return 2;
		}
		printf("catalog rebuilt; checking it\n");
	}
	r = cas_fsck(st, repair, print_line, NULL);
	cas_store_close(st);
	if (r < 0) {
		fprintf(stderr, "llmfs-fsck: %s: %s\n", dir, strerror(-r));
		return 2;
	}
	if (r > 0) {
		printf("%d problem%s found%s\n", r, r == 1 ? "" : "s",
		       repair ? " that could not be repaired" : "; run with --repair to fix what can be fixed");
		return 1;
	}
	printf("store %s is sound\n", dir);
	return 0;
}
