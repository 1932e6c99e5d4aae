/* libFuzzer harness: layout_parse() on hostile manifests and tar layers,
 * then layout_modelpack_build() on what it listed.
 *
 * Input: a manifest, optionally followed by a NUL and the bytes of a blob;
 * the fetch callback serves those bytes for every digest (a range past them
 * is -EIO), so one input can carry a manifest and a tar layer.  An input
 * starting with 'T' is a tar blob alone, behind a ModelPack manifest the
 * harness writes, so that mutations go to the tar reader.  The seeds in
 * corpus/layout are manifests as Ollama, Docker Model Runner and ModelPack
 * write them, tars in ustar, GNU and pax styles behind ModelPack and Docker
 * dir.tar manifests, an SMIP manifest and an index (written once with
 * Python's json and tarfile); the SHA-1-named ones are inputs fuzz runs
 * found.
 *
 * What must hold for every input: a failure comes with a reason; a
 * success lists safe, unique paths, each inside its blob; and a ModelPack
 * manifest built from those files parses back to them. */
#include "backend/registry/layout.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct blob {
	const uint8_t *p;
	size_t n;
};

static int fetch(void *arg, const char *digest, uint64_t off, size_t len,
		 void *buf)
{
	const struct blob *b = arg;

	(void)digest;
	if (off > b->n || len > b->n - off)
		return -EIO;
	memcpy(buf, b->p + off, len);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_files(const struct layout *l)
{
	char **v;
	size_t i;

	if (l->kind < LAYOUT_SMIP || l->kind > LAYOUT_MODELPACK)
		__builtin_trap();
	if (l->kind == LAYOUT_SMIP && l->nfiles)
		__builtin_trap();
	if (l->nfiles > LAYOUT_MAX_FILES)
		__builtin_trap();
	for (i = 0; i < l->nfiles; i++) {
		const struct layout_file *f = &l->files[i];

		if (!layout_path_valid(f->path) || f->off > f->blob_size ||
		    f->size > f->blob_size - f->off || f->mode > 0777 ||
		    (f->whole && (f->off || f->size != f->blob_size)))
			__builtin_trap();
	}
	v = malloc((l->nfiles + 1) * sizeof(*v));
	if (!v)
		return;
	for (i = 0; i < l->nfiles; i++)
		v[i] = l->files[i].path;
	qsort(v, l->nfiles, sizeof(*v), cmp_str);
	for (i = 1; i < l->nfiles; i++)
		if (strcmp(v[i - 1], v[i]) == 0)
			__builtin_trap();
	free(v);
}

/* What layout_parse() listed, as a ModelPack manifest, parses back. */
static void round_trip(const struct layout *l)
{
	struct layout_put_file *pf;
	struct layout *back = NULL;
	char *m = NULL, *c = NULL, err[256];
	size_t n = l->nfiles, mlen, clen, i;
	int rc;

	if (l->kind == LAYOUT_SMIP || n == 0 || n > 256)
		return;
	pf = calloc(n, sizeof(*pf));
	if (!pf)
		return;
	for (i = 0; i < n; i++) {
		pf[i].path = l->files[i].path;
		memcpy(pf[i].digest, l->files[i].digest, OCI_DIGEST_LEN);
		pf[i].size = l->files[i].size;
	}
	rc = layout_modelpack_build("fuzz", pf, n, &m, &mlen, &c, &clen, err,
				    sizeof(err));
	if (rc < 0 && !err[0])
		__builtin_trap();
	if (rc == 0) {
		/* Raw layers only: no fetch is needed. */
		rc = layout_parse(m, mlen, NULL, NULL, &back, err, sizeof(err));
		if (rc != 0 || back->kind != LAYOUT_MODELPACK ||
		    (back->nfiles != n && back->nfiles != n + 1))
			__builtin_trap();
		for (i = 0; i < n; i++)
			if (strcmp(back->files[i].path, pf[i].path) != 0 ||
			    back->files[i].size != pf[i].size)
				__builtin_trap();
		layout_free(back);
		free(m);
		free(c);
	}
	free(pf);
}

/* A ModelPack manifest of one tar layer: the input after its 'T'. */
static void tar_only(const uint8_t *data, size_t size)
{
	struct blob b = { data + 1, size - 1 };
	struct layout *l = NULL;
	char m[1024], err[256];
	int n;

	n = snprintf(m, sizeof(m),
		     "{\"schemaVersion\":2,\"artifactType\":\"%s\",\"config\":"
		     "{\"mediaType\":\"%s\",\"digest\":\"sha256:%064d\",\"size\":2},"
		     "\"layers\":[{\"mediaType\":\"application/vnd.cncf.model.weight."
		     "v1.tar\",\"digest\":\"sha256:%064d\",\"size\":%zu}]}",
		     MODELPACK_ARTIFACT_TYPE, MODELPACK_MT_CONFIG, 0, 1, b.n);
	err[0] = '\0';
	if (layout_parse(m, (size_t)n, fetch, &b, &l, err, sizeof(err)) < 0) {
		if (l || !err[0])
			__builtin_trap();
		return;
	}
	check_files(l);
	round_trip(l);
	layout_free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t mlen = nul ? (size_t)(nul - data) : size;
	struct blob b = { nul ? nul + 1 : data, nul ? size - mlen - 1 : 0 };
	struct layout *l = NULL;
	char err[256], path[512];
	int rc;

	if (size && data[0] == 'T') {
		tar_only(data, size);
		return 0;
	}
	err[0] = '\0';
	rc = layout_parse((const char *)data, mlen, fetch, &b, &l, err, sizeof(err));
	if (rc < 0) {
		if (l || (rc != -ENOMEM && !err[0]) || memchr(err, '\n', strlen(err)))
			__builtin_trap();
	} else {
		if (rc != 0 || !l)
			__builtin_trap();
		check_files(l);
		round_trip(l);
		layout_free(l);
	}
	/* The path checker on the same bytes. */
	if (mlen < sizeof(path)) {
		memcpy(path, data, mlen);
		path[mlen] = '\0';
		(void)layout_path_valid(path);
	}
	return 0;
}
