/*
 * inval.h - telling the kernel that the daemon changed models/ on its own.
 *
 * The kernel keeps models/ names, attributes and folder listings for a long
 * time (FS_MODELS_TIMEOUT, fs/subtree.h).  A change made through the mount
 * updates those caches itself; a change the daemon makes outside a request
 * on the same path (train/ and mining/ making models/<job>/, a commit that
 * fails and leaves a file with content the kernel has not seen) must be
 * announced with FUSE_NOTIFY_INVAL_*, or readers keep the old state.
 *
 * libfuse's rule (fuse_lowlevel.h): a notification must not be sent from
 * a request that the kernel's invalidation may wait on, nor with a lock
 * such a request needs.  So every notification is sent by one thread of
 * this module that holds no lock of the daemon while it sends; callers
 * only queue (fs_inval_inode()), and may wait for the send
 * (fs_inval_wait()) only from a request that no invalidation waits on and
 * with no lock held (a flush of a train/ or mining/ file: the kernel holds
 * no lock of models/ for it).
 *
 * Contract: fs_inval_start() / fs_inval_stop() run on the daemon's main
 * thread (fs_init / fs_release); fs_inval_session() there too, once the
 * session is mounted and again with NULL before it is unmounted (no
 * notification touches the session after it returns).  The rest is
 * thread-safe.  Notifications queued with no session are dropped: a
 * kernel that has mounted nothing caches nothing.
 */
#ifndef LLMFS_FS_INVAL_H
#define LLMFS_FS_INVAL_H

#include <stdint.h>

struct fs;
struct fuse_session;

int fs_inval_start(struct fs *fs);
void fs_inval_stop(struct fs *fs);
void fs_inval_session(struct fs *fs, struct fuse_session *se);

/*
 * Queues an invalidation of ino's attributes and, with pages, of its
 * cached data (a folder's cached listing is its data).  Returns a ticket
 * for fs_inval_wait(), 0 when nothing was queued (out of memory: the
 * caches then stay as they are until their timeout).
 */
uint64_t fs_inval_inode(struct fs *fs, uint64_t ino, int pages);
/* Waits until the notification with this ticket (and every earlier one) was sent. */
void fs_inval_wait(struct fs *fs, uint64_t ticket);

#endif
