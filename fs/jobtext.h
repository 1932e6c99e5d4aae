/*
 * jobtext.h - the text of a file that train/, mining/, envs/ and paths/ take whole.
 *
 * A job file, a control file or a task is written whole: `echo ... > job` opens (truncating),
 * writes one or more pieces at any offsets and closes, and the subtree acts on the text at
 * the flush.  A handle gathers that text in a struct fs_jobtext: at most `max` bytes (EFBIG
 * past them), holes read as zeros.  The truncation that `>` makes first, and times, are the
 * only attribute changes such a file takes (fs_jobtext_setattr_ok()).
 *
 * A job whose model lands in models/<job> has that folder made for its owner before the job
 * starts (fs_job_model_dir()), so that the job's process writes there with the owner's rights.
 * It is called from the flush of a train/ or mining/ file only: it waits until the kernel's
 * cached models/ is invalidated (fs/inval.h says why that wait is safe there alone).
 *
 * The text functions take no lock: a handle is used by one request at a time.
 */
#ifndef LLMFS_FS_JOBTEXT_H
#define LLMFS_FS_JOBTEXT_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

struct fs;

struct fs_jobtext {
	char *buf;                  /* NULL until the first write */
	size_t len;
	int wrote, done;            /* written since the open; acted on */
};

/* Copies size bytes at off: 0, -EFBIG past max, -ENOMEM. */
int fs_jobtext_write(struct fs_jobtext *t, const char *buf, size_t size, off_t off, size_t max);
/* The text, "" when nothing was written (never NULL). */
const char *fs_jobtext_str(const struct fs_jobtext *t);
void fs_jobtext_free(struct fs_jobtext *t);

/* 1 when a setattr of to_set (FUSE_SET_ATTR_*) is only `>`'s truncation to 0 and times. */
int fs_jobtext_setattr_ok(const struct stat *attr, int to_set);

/*
 * models/<name> for uid:gid: made when absent; an existing folder of that owner (any owner
 * when uid is 0) is kept.  0, -EEXIST (another owner's or not a folder), or the store's error.
 */
int fs_job_model_dir(struct fs *fs, const char *name, uid_t uid, gid_t gid);

#endif
