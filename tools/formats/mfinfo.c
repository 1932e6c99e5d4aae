/* mfinfo: prints what llmfs would show as a model file's `.smip/info`.
 *
 * Usage: mfinfo [--tensors] FILE...
 *
 * Reads each file the way the store does while a copy streams in: a small
 * prefix first, then more as mf_parse() asks for it (-EAGAIN), growing at
 * least geometrically.  A config.json beside a weights file adds what only
 * the config says (context length, architecture). */
#include "backend/store/modelfmt.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Parses `path`, reading only as much of it as the parser asks for. */
static int parse_file(const char *path, struct mf_info *info)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, want = 4096;
	struct stat st;
	int rc;

	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0) {
		rc = -errno;
		goto out;
	}
	for (;;) {
		uint8_t *p;

		if (want > (uint64_t)st.st_size)
			want = (size_t)st.st_size;
		p = realloc(buf, want ? want : 1);
		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		buf = p;
		len += fread(buf + len, 1, want - len, f);
		rc = mf_parse(buf, len, (uint64_t)st.st_size, info);
		if (rc != -EAGAIN || len < want)
			break;
		want = info->need > 2 * len ? info->need : 2 * len;
	}
	rc = 0;   /* a file that is not a model is still summarised */
out:
	free(buf);
	fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	int i, tensors = 0, status = 0;

	for (i = 1; i < argc; i++) {
		struct mf_info info, config;
		char *text = NULL, *dir, cfg[4096];
		int rc;

		if (!strcmp(argv[i], "--tensors")) {
			tensors = 1;
			continue;
		}
		mf_info_init(&info);
		mf_info_init(&config);
		rc = parse_file(argv[i], &info);
		if (rc < 0) {
			fprintf(stderr, "mfinfo: %s: %s\n", argv[i], strerror(-rc));
			status = 1;
			continue;
		}
		dir = strdup(argv[i]);
		snprintf(cfg, sizeof(cfg), "%s/config.json", dir ? dirname(dir) : ".");
		free(dir);
		if (info.status == 0 && info.format != MF_FORMAT_HF_CONFIG &&
		    parse_file(cfg, &config) == 0)
			mf_info_merge_config(&info, &config);
		if (mf_info_summary(&info, argv[i], &text) >= 0)
			fputs(text, stdout);
		free(text);
		text = NULL;
		if (tensors && mf_info_tensor_list(&info, &text) >= 0)
			fputs(text, stdout);
		free(text);
		mf_info_release(&info);
		mf_info_release(&config);
	}
	return status;
}
