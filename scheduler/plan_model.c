/* plan_model: see plan_model.h for the contract; docs/paths.md for cards. */
#include "plan_model.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan_util.h"

#define CARD_MAX (64 * 1024)

/* Reports the first reason a card or task is refused; returns -EINVAL. */
#define fail(ret_err, ...) plan_errf((ret_err), -EINVAL, __VA_ARGS__)

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void plan_model_release(struct plan_model *m)
{
	if (!m)
		return;
	free(m->name);
	free(m->base_url);
	free(m->unix_socket);
	free(m->remote_model);
	free(m->api_key_env);
	free(m->api_key_file);
	if (m->argv) {
		size_t n = 0;

		while (m->argv[n])
			n++;
		free_list(m->argv, n);
	}
	free_list(m->skills, m->n_skills);
	free(m->pipeline_tag);
	free(m->base_model);
	free_list(m->tags, m->n_tags);
	free_list(m->languages, m->n_languages);
	memset(m, 0, sizeof(*m));
}

static int push(char ***v, size_t *n, const char *s, size_t len)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(**v));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strndup(s, len);
	if (!nv[*n])
		return -ENOMEM;
	nv[++*n] = NULL;
	return 0;
}

/* Trims blanks and one pair of matching quotes. */
static void unquote(const char **s, size_t *len)
{
	while (*len && isspace((unsigned char)**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
	if (*len >= 2 && (**s == '"' || **s == '\'') &&
	    (*s)[*len - 1] == **s) {
		(*s)++;
		*len -= 2;
	}
}

static int yaml_list(const char *v, size_t len, char ***out, size_t *n)
{
	const char *p = v + 1, *end = v + len - 1;

	/* Flow list: [a, b, "c"]. */
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		const char *s = p;
		size_t l = (size_t)(e - p);

		unquote(&s, &l);
		if (l && push(out, n, s, l) < 0)
			return -ENOMEM;
		p = e + 1;
	}
	return 0;
}

/*
 * Reads the subset of YAML front matter that model cards use: top-level
 * "key: value", "key: [a, b]" and "key:" followed by "- item" lines.
 * Anything else (nested maps such as model-index) is skipped.
 */
static int front_matter(struct plan_model *m, const char *readme)
{
	const char *p = readme, *key = NULL;
	size_t key_len = 0;

	if (strncmp(p, "---", 3) || (p[3] != '\n' && p[3] != '\r'))
		return 0;
	p = strchr(p, '\n') + 1;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		const char *line = p;
		char ***list = NULL;
		size_t *count = NULL;

		p = nl ? nl + 1 : p + len;
		if (len && line[len - 1] == '\r')
			len--;
		if (len >= 3 && !strncmp(line, "---", 3))
			break;
		if (len && !isspace((unsigned char)*line) && *line != '-') {
			const char *colon = memchr(line, ':', len);

			key = NULL;
			if (!colon)
				continue;
			key = line;
			key_len = (size_t)(colon - line);
			line = colon + 1;
			len -= key_len + 1;
		} else if (key) {
			/* "  - item" continuation of the current key. */
			while (len && isspace((unsigned char)*line)) {
				line++;
				len--;
			}
			if (!len || *line != '-')
				continue;
			line++;
			len--;
		} else {
			continue;
		}
		if (!key)
			continue;
#define KEY(s) (key_len == strlen(s) && !strncmp(key, s, key_len))
		if (KEY("tags")) {
			list = &m->tags;
			count = &m->n_tags;
		} else if (KEY("language")) {
			list = &m->languages;
			count = &m->n_languages;
		}
		unquote(&line, &len);
		if (!len)
			continue;
		if (list && *line == '[') {
			if (yaml_list(line, len, list, count) < 0)
				return -ENOMEM;
		} else if (list) {
			if (push(list, count, line, len) < 0)
				return -ENOMEM;
		} else if (KEY("pipeline_tag") && !m->pipeline_tag) {
			m->pipeline_tag = strndup(line, len);
		} else if (KEY("base_model") && !m->base_model) {
			m->base_model = strndup(line, len);
		}
#undef KEY
	}
	return 0;
}

static int str_field(json_t *card, const char *key, char **ret,
		     const char *name, char **ret_err)
{
	json_t *v = json_object_get(card, key);

	if (!v)
		return 0;
	if (!json_is_string(v) || !json_string_length(v))
		return fail(ret_err, "model %s: %s must be a non-empty string",
			    name, key);
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

static int num_field(json_t *card, const char *key, double *ret, double def,
		     const char *name, char **ret_err)
{
	json_t *v = json_object_get(card, key);

	*ret = def;
	if (!v)
		return 0;
	if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
	    json_number_value(v) < 0)
		return fail(ret_err, "model %s: %s must be a number >= 0",
			    name, key);
	*ret = json_number_value(v);
	return 0;
}

static const char *const card_keys[] = {
	"endpoint", "model", "api_key_env", "api_key_file", "command",
	"price_in", "price_out", "context", "latency_s", "tokens_per_s",
	"timeout_s", "retries", "skills", "description", "stream", "unix_socket",
	NULL,
};

static int parse_card(struct plan_model *m, json_t *card, char **ret_err)
{
	const char *k;
	json_t *v, *cmd;
	double d = 0;
	int rc = 0;

	json_object_foreach(card, k, v) {
		bool ok = false;

		for (int i = 0; card_keys[i]; i++)
			ok |= !strcmp(k, card_keys[i]);
		if (!strcmp(k, "api_key"))
			return fail(ret_err, "model %s: cards must not hold "
				    "keys; name them with api_key_env or "
				    "api_key_file", m->name);
		if (!ok)
			return fail(ret_err, "model %s: unknown field \"%s\"",
				    m->name, k);
	}
	cmd = json_object_get(card, "command");
	if (!cmd == !json_object_get(card, "endpoint"))
		return fail(ret_err, "model %s: needs exactly one of endpoint "
			    "and command", m->name);
	if (cmd) {
		size_t i, n = json_is_array(cmd) ? json_array_size(cmd) : 0;
		size_t cnt = 0;

		if (!n || n > 64)
			return fail(ret_err, "model %s: command is a list of "
				    "1 to 64 strings", m->name);
		m->kind = PLAN_MODEL_COMMAND;
		json_array_foreach(cmd, i, v) {
			if (!json_is_string(v))
				return fail(ret_err, "model %s: command[%zu] "
					    "is not a string", m->name, i);
			if (push(&m->argv, &cnt, json_string_value(v),
				 json_string_length(v)) < 0)
				return -ENOMEM;
		}
	} else {
		m->kind = PLAN_MODEL_HTTP;
		rc = str_field(card, "endpoint", &m->base_url, m->name, ret_err);
		if (!rc && strncmp(m->base_url, "http://", 7) &&
		    strncmp(m->base_url, "https://", 8))
			rc = fail(ret_err, "model %s: endpoint must be an "
				  "http:// or https:// URL", m->name);
		if (!rc)
			rc = str_field(card, "model", &m->remote_model,
				       m->name, ret_err);
		if (!rc && !m->remote_model)
			m->remote_model = strdup(m->name);
		if (!rc)
			rc = str_field(card, "api_key_env", &m->api_key_env,
				       m->name, ret_err);
		if (!rc)
			rc = str_field(card, "api_key_file", &m->api_key_file,
				       m->name, ret_err);
		v = json_object_get(card, "stream");
		if (!rc && v && !json_is_boolean(v))
			rc = fail(ret_err, "model %s: stream must be true or "
				  "false", m->name);
		m->stream = json_is_true(v);
		if (!rc)
			rc = str_field(card, "unix_socket", &m->unix_socket,
				       m->name, ret_err);
		if (!rc && m->unix_socket && m->unix_socket[0] != '/')
			rc = fail(ret_err, "model %s: unix_socket must be an "
				  "absolute path", m->name);
		if (rc)
			return rc;
	}
	rc = num_field(card, "price_in", &m->price_in, 0, m->name, ret_err);
	if (!rc)
		rc = num_field(card, "price_out", &m->price_out, 0, m->name,
			       ret_err);
	if (!rc)
		rc = num_field(card, "context", &d, 0, m->name, ret_err);
	m->context = (long)d;
	if (!rc)
		rc = num_field(card, "latency_s", &m->latency_s, 1.0, m->name,
			       ret_err);
	if (!rc)
		rc = num_field(card, "tokens_per_s", &m->tokens_per_s, 50,
			       m->name, ret_err);
	if (!rc)
		rc = num_field(card, "timeout_s", &m->timeout_s, 120, m->name,
			       ret_err);
	if (!rc)
		rc = num_field(card, "retries", &d, 2, m->name, ret_err);
	m->retries = d > 10 ? 10 : (int)d;
	if (!rc && m->tokens_per_s <= 0)
		m->tokens_per_s = 50;
	if (!rc && m->timeout_s <= 0)
		rc = fail(ret_err, "model %s: timeout_s must be > 0", m->name);
	if (rc)
		return rc;
	if ((v = json_object_get(card, "skills"))) {
		size_t i;
		json_t *s;

		if (!json_is_array(v))
			return fail(ret_err, "model %s: skills is a list of "
				    "task types", m->name);
		json_array_foreach(v, i, s) {
			if (!json_is_string(s))
				return fail(ret_err, "model %s: skills[%zu] "
					    "is not a string", m->name, i);
			if (push(&m->skills, &m->n_skills,
				 json_string_value(s),
				 json_string_length(s)) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static bool valid_model_name(const char *s)
{
	if (!*s || *s == '.' || strlen(s) > 128)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || *s == '/' || *s == 0x7f)
			return false;
	return true;
}

int plan_model_parse(const char *name, const char *card_json,
		     const char *readme, struct plan_model *ret_model,
		     char **ret_err)
{
	struct plan_model m = { 0 };
	json_error_t jerr;
	json_t *card = NULL;
	int rc;

	if (!valid_model_name(name))
		return fail(ret_err, "model name \"%s\" is not usable", name);
	m.name = strdup(name);
	if (!m.name)
		return -ENOMEM;
	card = json_loads(card_json, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(card)) {
		rc = fail(ret_err, "model %s: card.json line %d: %s", name,
			  jerr.line, card ? "not an object" : jerr.text);
		goto out;
	}
	/* Text the process supplies is its own; the loader judges files. */
	m.trusted = true;
	m.owner = geteuid();
	rc = parse_card(&m, card, ret_err);
	if (rc == 0 && readme)
		rc = front_matter(&m, readme);
out:
	json_decref(card);
	if (rc < 0) {
		plan_model_release(&m);
		return rc;
	}
	*ret_model = m;
	return 0;
}

/* Reads at most max bytes of an open file; the fd is closed. */
static int read_fd(int fd, size_t max, char **ret)
{
	FILE *f = fdopen(fd, "r");
	char *buf;
	size_t n;

	if (!f) {
		close(fd);
		return -errno;
	}
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, max + 1, f);
	fclose(f);
	if (n > max) {
		free(buf);
		return -EFBIG;
	}
	buf[n] = '\0';
	*ret = buf;
	return 0;
}

static int read_small(const char *path, size_t max, char **ret)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : read_fd(fd, max, ret);
}

/*
 * Opens name under dirfd without following a symbolic link; one is
 * followed all the same, and *ret_link says so (its target's owner is not
 * what a reader of the folder sees, so it is never trusted).
 */
static int open_at(int dirfd, const char *name, int flags, bool *ret_link)
{
	int fd = openat(dirfd, name, flags | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	*ret_link = false;
	if (fd < 0 && errno == ELOOP) {
		*ret_link = true;
		fd = openat(dirfd, name, flags | O_RDONLY | O_CLOEXEC);
	}
	return fd < 0 ? -errno : fd;
}

static bool trusted_uid(uid_t uid, const struct plan_model_trust *trust)
{
	if (uid == geteuid())
		return true;
	for (size_t i = 0; trust && i < trust->n_uids; i++)
		if (trust->uids[i] == uid)
			return true;
	return false;
}

/*
 * Why the file or folder st (called what) cannot vouch for a card that
 * runs a command or reads a key, or NULL when it can: it must belong to a
 * trusted uid and be writable by nobody else.
 */
static char *distrust(const struct stat *st, bool link, const char *what,
		      const struct plan_model_trust *trust)
{
	char *why = NULL;
	int r = 0;

	if (link)
		r = asprintf(&why, "%s is a symbolic link", what);
	else if (!trusted_uid(st->st_uid, trust))
		r = asprintf(&why, "%s belongs to uid %u", what,
			     (unsigned)st->st_uid);
	else if (st->st_mode & (S_IWGRP | S_IWOTH))
		r = asprintf(&why, "%s is writable by its group or others",
			     what);
	return r < 0 ? strdup("(out of memory)") : why;
}

/* Can st vouch for a card: trusted owner, no other writer, no link? */
static bool vouches(const struct stat *st, bool link,
		    const struct plan_model_trust *trust)
{
	return !link && trusted_uid(st->st_uid, trust) &&
	       !(st->st_mode & (S_IWGRP | S_IWOTH));
}

/*
 * The one uid that controls a card: card.json and its folder belong to it
 * and no one else may write them or the models folder (dir_ok).
 */
static uid_t sole_owner(bool dir_ok, const struct stat *dst, bool dir_link,
			const struct stat *cst, bool link)
{
	if (!dir_ok || dir_link || link || dst->st_uid != cst->st_uid ||
	    ((dst->st_mode | cst->st_mode) & (S_IWGRP | S_IWOTH)))
		return PLAN_MODEL_NO_OWNER;
	return cst->st_uid;
}

/* What in m needs a trusted card, or NULL. */
static const char *needs_trust(const struct plan_model *m)
{
	if (m->kind == PLAN_MODEL_COMMAND)
		return "runs a command";
	if (m->api_key_env)
		return "reads a key (api_key_env)";
	if (m->api_key_file)
		return "reads a key (api_key_file)";
	/* The daemon would connect to any socket of the host (envs/ makes these). */
	if (m->unix_socket)
		return "connects to a unix socket (unix_socket)";
	return NULL;
}

/* Appends one line to the warnings. */
static void warn(char **ret_err, const char *fmt, ...)
{
	char *line = NULL, *all = NULL;
	va_list ap;
	int r;

	if (!ret_err)
		return;
	va_start(ap, fmt);
	r = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	if (!*ret_err) {
		*ret_err = line;
		return;
	}
	if (asprintf(&all, "%s\n%s", *ret_err, line) >= 0) {
		free(*ret_err);
		*ret_err = all;
	}
	free(line);
}

static int cmp_model(const void *a, const void *b)
{
	return strcmp(((const struct plan_model *)a)->name,
		      ((const struct plan_model *)b)->name);
}

/*
 * Parses the card text of model name and judges its trust from its folder
 * (dst) and card.json (cst); 0 (a bad or refused card is a warning in
 * *ret_err, *ret_ok false) or -ENOMEM.  dir_why: why the folder holding
 * the models cannot vouch for cards, or NULL.
 */
static int judge_card(const char *name, const char *card, const char *readme,
		      const struct stat *dst, bool dir_link, const struct stat *cst,
		      bool link, const char *dir_why,
		      const struct plan_model_trust *trust,
		      struct plan_model *ret, bool *ret_ok, char **ret_err)
{
	char *why = NULL, *err = NULL;
	const char *needs;
	int r;

	*ret_ok = false;
	r = plan_model_parse(name, card, readme, ret, &err);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		warn(ret_err, "%s", err ? err : "model: bad card");
		free(err);
		return 0;
	}
	ret->trusted = !dir_why && vouches(dst, dir_link, trust) &&
		       vouches(cst, link, trust);
	ret->owner = sole_owner(!dir_why, dst, dir_link, cst, link);
	needs = needs_trust(ret);
	if (needs && !ret->trusted) {
		why = dir_why ? strdup(dir_why)
			      : distrust(dst, dir_link, "its folder", trust);
		if (!why)
			why = distrust(cst, link, "card.json", trust);
		if (!why)
			why = strdup("(out of memory)");
		warn(ret_err, "model %s: refused: it %s but %s; only cards "
		     "of uid %u or a trusted uid (--trusted-uid), writable by "
		     "no one else, may run commands or read keys", name,
		     needs, why ? why : "(out of memory)", (unsigned)geteuid());
		free(why);
		plan_model_release(ret);
		return 0;
	}
	*ret_ok = true;
	return 0;
}

/*
 * Loads models_dir/<name>/ (folder fd mfd) into *ret; 1 when it is no
 * model, -ENOMEM, or 0 (a bad card is a warning, not an error).
 */
static int load_one(int mfd, const char *name, const struct stat *dst,
		    bool dir_link, const char *dir_why,
		    const struct plan_model_trust *trust,
		    struct plan_model *ret, bool *ret_ok, char **ret_err)
{
	char *card = NULL, *readme = NULL;
	struct stat cst;
	bool link;
	int fd, r;

	*ret_ok = false;
	fd = open_at(mfd, "card.json", 0, &link);
	if (fd == -ENOENT || fd == -ENOTDIR)
		return 1;
	if (fd >= 0 && (fstat(fd, &cst) < 0 || !S_ISREG(cst.st_mode))) {
		close(fd);
		fd = -EINVAL;
	}
	r = fd < 0 ? fd : read_fd(fd, CARD_MAX, &card);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		warn(ret_err, "model %s: card.json: %s", name,
		     r == -EINVAL ? "not a regular file" : strerror(-r));
		return 0;
	}
	fd = open_at(mfd, "README.md", 0, &(bool){ false });
	if (fd < 0 || read_fd(fd, 1 << 20, &readme) < 0)
		readme = NULL;
	r = judge_card(name, card, readme, dst, dir_link, &cst, link, dir_why,
		       trust, ret, ret_ok, ret_err);
	free(card);
	free(readme);
	return r;
}

/* Appends m to ms; -ENOMEM (m released) or 0. */
static int models_push(struct plan_models *ms, struct plan_model *m)
{
	struct plan_model *nv = realloc(ms->v, (ms->n + 1) * sizeof(*nv));

	if (!nv) {
		plan_model_release(m);
		return -ENOMEM;
	}
	ms->v = nv;
	ms->v[ms->n++] = *m;
	return 0;
}

int plan_models_load(const char *dir, const struct plan_model_trust *trust,
		     struct plan_models *ret, char **ret_err)
{
	struct plan_models ms = { 0 };
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(dir);
	char *dir_why = NULL;
	int rc = 0;

	if (!d)
		return -errno;
	if (fstat(dirfd(d), &st) < 0) {
		rc = -errno;
		closedir(d);
		return rc;
	}
	dir_why = distrust(&st, false, "the models folder", trust);
	while ((de = readdir(d))) {
		struct plan_model m = { 0 };
		bool link, ok = false;
		int mfd, r;

		if (de->d_name[0] == '.')
			continue;
		mfd = open_at(dirfd(d), de->d_name, O_DIRECTORY, &link);
		if (mfd < 0)
			continue;
		r = fstat(mfd, &st) < 0 ? -errno : 0;
		if (r == 0)
			r = load_one(mfd, de->d_name, &st, link, dir_why, trust,
				     &m, &ok, ret_err);
		close(mfd);
		if (r == -ENOMEM) {
			rc = r;
			break;
		}
		if (r < 0 || !ok)
			continue;
		rc = models_push(&ms, &m);
		if (rc < 0)
			break;
	}
	closedir(d);
	free(dir_why);
	if (rc < 0) {
		plan_models_release(&ms);
		return rc;
	}
	if (ms.n)
		qsort(ms.v, ms.n, sizeof(*ms.v), cmp_model);
	*ret = ms;
	return 0;
}

int plan_models_from_cards(const struct plan_card *cards, size_t n,
			   const struct plan_model_trust *trust,
			   struct plan_models *ret, char **ret_err)
{
	struct plan_models ms = { 0 };
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		const struct plan_card *c = &cards[i];
		struct stat dst = { .st_uid = c->folder_uid,
				    .st_mode = S_IFDIR | c->folder_mode };
		struct stat cst = { .st_uid = c->card_uid,
				    .st_mode = S_IFREG | c->card_mode };
		struct plan_model m = { 0 };
		bool ok;

		rc = judge_card(c->name, c->card_json, c->readme, &dst, false,
				&cst, false, NULL, trust, &m, &ok, ret_err);
		if (rc == 0 && ok)
			rc = models_push(&ms, &m);
		if (rc < 0) {
			plan_models_release(&ms);
			return rc;
		}
	}
	if (ms.n)
		qsort(ms.v, ms.n, sizeof(*ms.v), cmp_model);
	*ret = ms;
	return 0;
}

void plan_models_release(struct plan_models *ms)
{
	for (size_t i = 0; ms && i < ms->n; i++)
		plan_model_release(&ms->v[i]);
	if (ms) {
		free(ms->v);
		ms->v = NULL;
		ms->n = 0;
	}
}

long plan_models_find(const struct plan_models *ms, const char *name)
{
	for (size_t i = 0; i < ms->n; i++)
		if (!strcmp(ms->v[i].name, name))
			return (long)i;
	return -ENOENT;
}

bool plan_model_usable_by(const struct plan_model *m, uid_t uid)
{
	return m->trusted ||
	       (m->owner != PLAN_MODEL_NO_OWNER && m->owner == uid);
}

bool plan_model_serves(const struct plan_model *m, const char *task_type)
{
	if (!m->n_skills)
		return true;
	for (size_t i = 0; i < m->n_skills; i++)
		if (!strcmp(m->skills[i], "*") ||
		    !strcmp(m->skills[i], task_type))
			return true;
	return false;
}

int plan_model_api_key(const struct plan_model *m, char **ret_key)
{
	char *key = NULL;
	size_t n;
	int rc;

	*ret_key = NULL;
	if (m->api_key_env) {
		const char *v = getenv(m->api_key_env);

		if (!v || !*v)
			return -ENOKEY;
		key = strdup(v);
		if (!key)
			return -ENOMEM;
	} else if (m->api_key_file) {
		rc = read_small(m->api_key_file, 16384, &key);
		if (rc < 0)
			return rc == -ENOENT ? -ENOKEY : rc;
	} else {
		return 0;
	}
	/* Files usually end in a newline; headers must not. */
	n = strlen(key);
	while (n && isspace((unsigned char)key[n - 1]))
		key[--n] = '\0';
	if (!n || strpbrk(key, "\r\n")) {
		free(key);
		return -ENOKEY;
	}
	*ret_key = key;
	return 0;
}

double plan_model_cost(const struct plan_model *m, double tokens_in,
		       double tokens_out)
{
	return (tokens_in * m->price_in + tokens_out * m->price_out) / 1e6;
}

static json_t *list_json(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

json_t *plan_model_to_json(const struct plan_model *m)
{
	json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:I, s:o}",
			      "name", m->name,
			      "kind", m->kind == PLAN_MODEL_HTTP ? "http" :
				      "command",
			      "price_in", m->price_in,
			      "price_out", m->price_out,
			      "context", (json_int_t)m->context,
			      "skills", list_json(m->skills, m->n_skills));

	if (!o)
		return NULL;
	if (m->pipeline_tag)
		json_object_set_new(o, "pipeline_tag",
				    json_string(m->pipeline_tag));
	if (m->base_model)
		json_object_set_new(o, "base_model", json_string(m->base_model));
	if (m->n_tags)
		json_object_set_new(o, "tags", list_json(m->tags, m->n_tags));
	if (m->n_languages)
		json_object_set_new(o, "language",
				    list_json(m->languages, m->n_languages));
	return o;
}
