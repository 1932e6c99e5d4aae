/*
 * llmfs-ledger - reads a store's mining ledger (scheduler/ledger.h).
 *
 *   llmfs-ledger verify STORE            the chain, the head, every amount and balance
 *   llmfs-ledger verify-file FILE [HEAD] an exported ledger.jsonl (HEAD: its last hash)
 *   llmfs-ledger show STORE [--job J] [--account A]   entries as JSON lines
 *   llmfs-ledger balance STORE ACCOUNT   the account's balance as JSON
 *   llmfs-ledger head STORE              the last entry's seq and hash
 *
 * It never writes the ledger: credits come from the daemon's coordinator only.  Exit status
 * 0, 1 when verification finds a fault (the message names the entry), 2 for a usage or
 * system error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/ledger.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: llmfs-ledger verify STORE\n"
		"       llmfs-ledger verify-file FILE [HEAD]\n"
		"       llmfs-ledger show STORE [--job JOB] [--account ACCOUNT]\n"
		"       llmfs-ledger balance STORE ACCOUNT\n"
		"       llmfs-ledger head STORE\n");
	return 2;
}

static int open_store(const char *store, struct ledger **l)
{
	char *path = ledger_path(store);
	int r;

	if (!path)
		return -ENOMEM;
	r = ledger_open(path, 0, l);
	if (r < 0)
		fprintf(stderr, "llmfs-ledger: %s: %s\n", path, strerror(-r));
	free(path);
	return r;
}

static int print_entry(void *arg, const struct ledger_entry *e)
{
	char *line = ledger_entry_line(e, 1);

	if (!line)
		return -ENOMEM;
	printf("%s\n", line);
	free(line);
	return 0;
}

static int read_all(const char *path, char **ret, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return -errno;
	do {
		if (len + 65536 > cap) {
			char *p = realloc(buf, cap = cap * 2 + 65536);

			if (!p) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = p;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int cmd_verify(int argc, char **argv, int file)
{
	char err[LEDGER_ERR_MAX];
	struct ledger *l = NULL;
	int64_t n = 0;
	int r;

	if (argc < 3 || argc > (file ? 4 : 3))
		return usage();
	if (file) {
		char *text = NULL;
		size_t len = 0;

		r = read_all(argv[2], &text, &len);
		if (r < 0) {
			fprintf(stderr, "llmfs-ledger: %s: %s\n", argv[2], strerror(-r));
			return 2;
		}
		r = ledger_verify_jsonl(text, len, argc == 4 ? argv[3] : NULL, err, &n);
		free(text);
	} else {
		if (open_store(argv[2], &l) < 0)
			return 2;
		r = ledger_verify(l, err, &n);
		ledger_close(l);
	}
	if (r == -EBADMSG) {
		fprintf(stderr, "llmfs-ledger: %s: %s\n", argv[2], err);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "llmfs-ledger: %s: %s\n", argv[2], strerror(-r));
		return 2;
	}
	printf("ok: %" PRId64 " entries, chain and balances verified\n", n);
	return 0;
}

int main(int argc, char **argv)
{
	struct ledger *l = NULL;
	int r = 0, i;

	if (argc < 3)
		return usage();
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc, argv, 0);
	if (strcmp(argv[1], "verify-file") == 0)
		return cmd_verify(argc, argv, 1);
	if (strcmp(argv[1], "show") == 0) {
		const char *job = NULL, *acc = NULL;

		for (i = 3; i < argc; i++) {
			if (i + 1 < argc && strcmp(argv[i], "--job") == 0)
				job = argv[++i];
			else if (i + 1 < argc && strcmp(argv[i], "--account") == 0)
				acc = argv[++i];
			else
				return usage();
		}
		if (open_store(argv[2], &l) < 0)
			return 2;
		r = ledger_foreach(l, job, acc, print_entry, NULL);
	} else if (strcmp(argv[1], "balance") == 0 && argc == 4) {
		char *s = NULL;

		if (open_store(argv[2], &l) < 0)
			return 2;
		r = ledger_balance_json(l, argv[3], &s);
		if (r == 0)
			fputs(s, stdout);
		free(s);
	} else if (strcmp(argv[1], "head") == 0 && argc == 3) {
		char hash[72];
		int64_t seq;

		if (open_store(argv[2], &l) < 0)
			return 2;
		r = ledger_head(l, &seq, hash);
		if (r == 0)
			printf("%" PRId64 " %s\n", seq, hash);
	} else {
		return usage();
	}
	ledger_close(l);
	if (r < 0) {
		fprintf(stderr, "llmfs-ledger: %s: %s\n", argv[2], strerror(-r));
		return 2;
	}
	return 0;
}
