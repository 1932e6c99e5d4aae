/*
 * park.h - reads and polls of a file whose answer is not ready yet, kept without
 * holding a thread.
 *
 * Some files answer when something ends: paths/<task>/result, train/<job>/result.  A
 * read of one that is not ready is parked here and the FUSE worker returns; the
 * subtree tells the park when a name may have changed (fs_park_notice()), and the
 * park's watcher thread asks the subtree's result function for that name and answers
 * every parked read of it once it is ready.  A FUSE interrupt (the reader got a
 * signal, SIGKILL included) answers EINTR at once.  A poll() on such a file keeps its
 * poll handle here, one per open handle (key), and is notified when the answer is
 * ready.
 *
 * Whoever takes a parked request off the list answers it and frees it, so that each
 * request is answered exactly once:
 *
 *   read:      list (unarmed) -> set the interrupt func -> arm -> look at the result
 *   interrupt: armed -> take, EINTR; unarmed -> mark, the reading thread takes it
 *   notice:    result ready -> take every armed request of the name, answer
 *
 * result(arg, name, &text, &len) returns 0 with the answer (malloc'd; the park frees
 * it) when ready, -EAGAIN when not yet, another -errno to answer that error.  It is
 * called with none of the park's locks held, from the watcher, from the thread of a
 * read or a poll; it must not block for long.
 *
 * fs_park_notice() may be called from any thread and with the subtree's own locks
 * held: it takes only the park's lock and never calls result.  A notice lost for want
 * of memory makes the watcher look at every parked name.  fs_park_drain() (the session
 * ends) answers everything parked with EINTR and stops the watcher; later reads are
 * answered EINTR at once and later notices are dropped.
 */
#ifndef LLMFS_FS_PARK_H
#define LLMFS_FS_PARK_H

#include <stddef.h>
#include <sys/types.h>

#include "fs/fs.h"

struct fs_park;

typedef int (*fs_park_result_fn)(void *arg, const char *name, char **ret_text,
				 size_t *ret_len);

int fs_park_open(fs_park_result_fn result, void *arg, struct fs_park **ret);
/* Drains, then frees. */
void fs_park_close(struct fs_park *pk);
void fs_park_drain(struct fs_park *pk);

/* Answers req with [off, off + size) of name's answer, now or once it is ready. */
void fs_park_read(struct fs_park *pk, const char *name, fuse_req_t req, size_t size,
		  off_t off);
/*
 * A poll on name through the open handle key: *ret_events is POLLIN | POLLRDNORM when
 * the answer is ready, else 0, and ph (NULL: none wanted) is kept, replacing key's last
 * one, until it is.  Returns 0 or -ENOMEM.
 */
int fs_park_poll(struct fs_park *pk, const char *name, const void *key,
		 struct fuse_pollhandle *ph, unsigned *ret_events);
/* The handle key is released: drops its poll handle. */
void fs_park_forget(struct fs_park *pk, const void *key);
/* name's answer may be ready (NULL: look at every name). */
void fs_park_notice(struct fs_park *pk, const char *name);

#endif
