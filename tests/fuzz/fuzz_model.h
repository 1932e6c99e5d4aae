/* Shared body of the model-format fuzz harnesses: one parser, driven the
 * ways the store drives it (whole file, a prefix of a file, a prefix of a
 * much larger file, a prefix of a file still being written), then every
 * reader of a successful result. */
#ifndef LLMFS_FUZZ_MODEL_H
#define LLMFS_FUZZ_MODEL_H

#include "backend/store/modelfmt.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*fuzz_parser)(const void *buf, size_t len, uint64_t file_size,
			   struct mf_info *info);

static void fuzz_use(const struct mf_info *info)
{
	uint64_t *starts = NULL, i, last = 0;
	char *text = NULL;
	ssize_t n;

	if (mf_info_summary(info, "fuzz", &text) >= 0)
		free(text);
	if (mf_info_tensor_list(info, &text) >= 0)
		free(text);
	n = mf_tensor_starts(info, &starts);
	for (i = 0; n > 0 && i < (uint64_t)n; i++) {
		/* Sorted, unique and inside the file. */
		if ((i && starts[i] <= last) || starts[i] > info->file_size)
			__builtin_trap();
		last = starts[i];
		(void)mf_tensor_at(info, starts[i]);
		(void)mf_dtype_at(info, starts[i], starts[i] + 65536);
	}
	free(starts);
	n = mf_tensor_cuts(info, 4096, &starts);
	for (i = 0; n > 0 && i < (uint64_t)n; i++)
		if ((i && starts[i] <= starts[i - 1]) || starts[i] > info->file_size)
			__builtin_trap();
	free(starts);
	(void)mf_dtype_at(info, 0, info->file_size);
}

static void fuzz_parse(fuzz_parser parse, const uint8_t *data, size_t size)
{
	struct mf_info info;
	int rc;

	mf_info_init(&info);
	rc = parse(data, size, size, &info);
	if (rc == -EAGAIN)   /* the whole file is there: never "need more" */
		__builtin_trap();
	if (rc != info.status || (rc < 0 && !info.error[0]))
		__builtin_trap();
	fuzz_use(&info);

	rc = parse(data, size / 2, size, &info);
	if (rc == -EAGAIN && (info.need <= size / 2 || info.need > size))
		__builtin_trap();
	fuzz_use(&info);

	rc = parse(data, size, (uint64_t)size * 4096 + 7, &info);
	if (rc == -EAGAIN && info.need <= size)
		__builtin_trap();
	fuzz_use(&info);

	rc = parse(data, size, MF_SIZE_UNKNOWN, &info);
	if (rc == -EAGAIN && info.need <= size)
		__builtin_trap();
	fuzz_use(&info);
	mf_info_release(&info);
}

#endif
