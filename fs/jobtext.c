/*
 * jobtext.c - whole-file texts of the job subtrees (jobtext.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"
#include "fs/inval.h"
#include "fs/jobtext.h"
#include "fs/subtree.h"

int fs_jobtext_write(struct fs_jobtext *t, const char *buf, size_t size, off_t off, size_t max)
{
	size_t end;
	char *nb;

	if (off < 0 || (size_t)off > max || size > max - (size_t)off)
		return -EFBIG;
	end = (size_t)off + size;
	if (end > t->len) {
		nb = realloc(t->buf, end);
		if (!nb)
			return -ENOMEM;
		memset(nb + t->len, 0, end - t->len);
		t->buf = nb;
		t->len = end;
	}
	memcpy(t->buf + off, buf, size);
	t->wrote = 1;
	return 0;
}

const char *fs_jobtext_str(const struct fs_jobtext *t)
{
	return t->buf ? t->buf : "";
}

void fs_jobtext_free(struct fs_jobtext *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

int fs_jobtext_setattr_ok(const struct stat *attr, int to_set)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			  FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;

	return !(to_set & ~(FUSE_SET_ATTR_SIZE | times)) &&
	       (!(to_set & FUSE_SET_ATTR_SIZE) || attr->st_size == 0);
}

int fs_job_model_dir(struct fs *fs, const char *name, uid_t uid, gid_t gid)
{
	struct cat_attr a, made;
	int r = cas_lookup(fs->st, CAT_ROOT_INO, name, &a);

	if (r == 0)
		return S_ISDIR(a.mode) && (a.uid == uid || uid == 0) ? 0 : -EEXIST;
	if (r != -ENOENT)
		return r;
	r = cas_mknode(fs->st, CAT_ROOT_INO, name, S_IFDIR | 0755, uid, gid, NULL, &made);
	if (r == 0) {
		fs_models_changed(fs);
		/* Made outside a request on models/: the kernel's copy of its listing and
		 * attributes goes before the flush returns (it holds no lock the invalidation
		 * may need: fs/inval.h). */
		fs_inval_wait(fs, fs_inval_inode(fs, FS_MODELS_INO, 1));
	}
	return r == -EEXIST ? 0 : r;
}
