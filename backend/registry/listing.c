/*
 * listing.c - a remote's repositories and tags as folder names.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry/listing.h"

static int strv_has(char *const *v, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

int reg_repos(struct oci_client *c, const struct oci_remote *cfg,
	      char ***ret, size_t *ret_n, char *err, size_t errlen)
{
	char **v = NULL;
	size_t nv = 0, i;

	if (oci_catalog(c, &v, &nv, err, errlen) < 0) {
		v = NULL;
		nv = 0;
	}
	for (i = 0; i < cfg->nrepositories; i++) {
		char **t;

		if (strv_has(v, nv, cfg->repositories[i]))
			continue;
		t = realloc(v, (nv + 1) * sizeof(*t));
		if (!t || !(t[nv] = strdup(cfg->repositories[i]))) {
			oci_strv_free(t ? t : v, nv);
			return -ENOMEM;
		}
		v = t;
		nv++;
	}
	*ret = v;
	*ret_n = nv;
	return 0;
}

/* Adds the next part of repo below prefix (plen bytes) unless listed. */
static int add_part(const char *repo, const char *prefix, size_t plen,
		    char **names, unsigned char *is_tag, size_t *nn)
{
	const char *rest = repo;
	char *part;
	size_t k;

	if (plen && (strncmp(rest, prefix, plen) || rest[plen] != '/'))
		return 0;
	rest += plen ? plen + 1 : 0;
	part = strndup(rest, strcspn(rest, "/"));
	if (!part)
		return -ENOMEM;
	for (k = 0; k < *nn && strcmp(names[k], part); k++)
		;
	if (k < *nn || !*part) {
		free(part);
		return 0;
	}
	names[*nn] = part;
	is_tag[(*nn)++] = 0;
	return 0;
}

int reg_dir_names(struct oci_client *c, char *const *repos, size_t nrepos,
		  const char *prefix, char ***ret_names,
		  unsigned char **ret_is_tag, size_t *ret_n)
{
	char **tags = NULL, **names;
	unsigned char *is_tag;
	size_t ntags = 0, nn = 0, i, plen = strlen(prefix);
	int r = 0;

	if (plen && oci_tags(c, prefix, &tags, &ntags, NULL, 0) < 0) {
		tags = NULL;
		ntags = 0;
	}
	names = calloc(nrepos + ntags + 1, sizeof(*names));
	is_tag = calloc(nrepos + ntags + 1, sizeof(*is_tag));
	if (!names || !is_tag) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < ntags; i++) {
		names[nn] = strdup(tags[i]);
		if (!names[nn]) {
			r = -ENOMEM;
			goto out;
		}
		is_tag[nn++] = 1;
	}
	for (i = 0; r == 0 && i < nrepos; i++)
		r = add_part(repos[i], prefix, plen, names, is_tag, &nn);
out:
	oci_strv_free(tags, ntags);
	if (r < 0) {
		oci_strv_free(names, nn);
		free(is_tag);
		return r;
	}
	*ret_names = names;
	*ret_is_tag = is_tag;
	*ret_n = nn;
	return 0;
}

int reg_is_repo(struct oci_client *c, const char *path)
{
	char **tags = NULL;
	size_t ntags = 0;
	int r;

	if (!*path)
		return 0;
	r = oci_tags(c, path, &tags, &ntags, NULL, 0);
	oci_strv_free(tags, ntags);
	return r == 0;
}
