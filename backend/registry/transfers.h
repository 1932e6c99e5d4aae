/*
 * transfers.h - the list of registry transfers behind /llm/.llmfs/transfers:
 * the running ones and the last XFER_KEEP finished, each with its bytes,
 * rate, ETA and, when it failed, why.
 *
 * Contract: every call is thread-safe; the list's lock is a leaf (held for
 * list edits only, never across a network call or another lock).  A
 * transfer's counters are atomics that the transfer's code (oci.c's
 * progress pointers) updates without the lock.  xfer_start() returns NULL
 * when memory runs out: callers go on without counting (every call takes
 * a NULL transfer).  Finished transfers are freed by the list.
 */
#ifndef LLMFS_BACKEND_REGISTRY_TRANSFERS_H
#define LLMFS_BACKEND_REGISTRY_TRANSFERS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define XFER_KEEP 32 /* finished transfers listed */

struct xfer_list;

struct xfer {
	char what[8];            /* read, pull, push */
	char *name;              /* remote/repository:tag[/path] */
	_Atomic uint64_t total;
	_Atomic uint64_t done;   /* a progress pointer for oci.c */
	int64_t start, end;
	int state;               /* 0 running, 1 done, 2 failed */
	char err[512];
	struct xfer *next;
};

int xfer_list_new(struct xfer_list **ret);
void xfer_list_free(struct xfer_list *l);

/* A running transfer named remote/repo:tag[/path]. */
struct xfer *xfer_start(struct xfer_list *l, const char *what,
			const char *remote, const char *repo, const char *tag,
			const char *path, uint64_t total);
/* Ends x (NULL: nothing) as done (r >= 0) or failed with err or strerror. */
void xfer_end(struct xfer_list *l, struct xfer *x, int r, const char *err);
/* The text of .llmfs/transfers (malloc()ed). */
int xfer_list_text(struct xfer_list *l, char **ret, size_t *ret_len);

#endif
