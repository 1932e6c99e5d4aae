/* route-table: the outcome table reader of llmfs-route-eval (route-table.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "route-table.h"
#include "scheduler/plan_util.h"

uint64_t route_fnv(const char *s, uint64_t h)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int intern_grow(struct intern *t)
{
	size_t ns = t->n_slots ? t->n_slots * 2 : 1024;
	size_t *slots = calloc(ns, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t h = route_fnv(t->names[i], 1469598103934665603ULL) % ns;

		while (slots[h])
			h = (h + 1) % ns;
		slots[h] = i + 1;
	}
	free(t->slots);
	t->slots = slots;
	t->n_slots = ns;
	return 0;
}

/* Returns the index of s, adding it when add is set; -ENOENT otherwise. */
static long intern_get(struct intern *t, const char *s, bool add)
{
	size_t h;

	if ((t->n + 1) * 2 > t->n_slots && intern_grow(t) < 0)
		return -ENOMEM;
	h = route_fnv(s, 1469598103934665603ULL) % t->n_slots;
	while (t->slots[h]) {
		if (!strcmp(t->names[t->slots[h] - 1], s))
			return (long)t->slots[h] - 1;
		h = (h + 1) % t->n_slots;
	}
	if (!add)
		return -ENOENT;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **v = realloc(t->names, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->names = v;
		t->cap = cap;
	}
	t->names[t->n] = strdup(s);
	if (!t->names[t->n])
		return -ENOMEM;
	t->slots[h] = ++t->n;
	return (long)t->n - 1;
}

static void intern_release(struct intern *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->names[i]);
	free(t->names);
	free(t->slots);
}

void table_release(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->p[i].text);
	intern_release(&t->models);
	intern_release(&t->types);
	intern_release(&t->ids);
	free(t->p);
}

/* Splits at tabs into a growing array; returns the field count or -ENOMEM. */
static long split_tabs(char *line, char ***f, size_t *cap)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		if (n == *cap) {
			size_t nc = *cap ? *cap * 2 : 64;
			char **v = realloc(*f, nc * sizeof(*v));

			if (!v)
				return -ENOMEM;
			*f = v;
			*cap = nc;
		}
		(*f)[n++] = p;
		p = strchr(p, '\t');
		if (!p)
			break;
		*p++ = '\0';
	}
	return (long)n;
}

/* Drops the LF and one CR before it: a raw CR elsewhere is data. */
static void chomp(char *line, ssize_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		line[--len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
}

static bool parse_num(const char *s, double *ret, bool allow_unknown)
{
	char *end;

	if (allow_unknown && (!*s || !strcmp(s, "-"))) {
		*ret = -1;
		return true;
	}
	/* Decimal, as written: strtod would also take leading blanks and
	 * hex ("0x0.8p0" is 0.5). */
	if (isspace((unsigned char)*s) || strpbrk(s, "xX"))
		return false;
	errno = 0;
	*ret = strtod(s, &end);
	return !errno && end != s && !*end && isfinite(*ret);
}

/* \t \n \r \\ in place; any other backslash stays as written. */
static void unescape(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (*s == '\\' && s[1]) {
			char c = s[1];

			if (c == 't' || c == 'n' || c == 'r' || c == '\\') {
				*d++ = c == 't' ? '\t' : c == 'n' ? '\n' :
				       c == 'r' ? '\r' : '\\';
				s++;
				continue;
			}
		}
		*d++ = *s;
	}
	*d = '\0';
}

int answer_key(const regex_t *key, const char *s, uint64_t *ret)
{
	char *k;
	int rc = plan_answer_key(key, s, &k);

	*ret = 0;
	if (rc < 0)
		return rc;
	if (k) {
		*ret = XXH3_64bits(k, strlen(k));
		*ret += !*ret;
	}
	free(k);
	return 0;
}

enum { C_ID, C_TYPE, C_MODEL, C_Q, C_COST, C_LAT, C_CHK, C_ANS, C_PROMPT,
       C_SPLIT, C_N };
static const char *const cols[C_N] = {
	"prompt_id", "task_type", "model", "quality", "cost_usd",
	"latency_s", "check", "answer", "prompt", "split",
};

static int header(char **f, long nf, int *col, const char *name)
{
	for (int c = 0; c < C_N; c++) {
		col[c] = -1;
		for (long i = 0; i < nf; i++) {
			if (strcmp(f[i], cols[c]))
				continue;
			if (col[c] >= 0) {
				fprintf(stderr, "%s:1: column %s appears twice "
					"(columns %d and %ld)\n", name, cols[c],
					col[c] + 1, i + 1);
				return -EINVAL;
			}
			col[c] = (int)i;
		}
		if (col[c] < 0 && c <= C_Q) {
			fprintf(stderr, "%s: header lacks column %s\n", name,
				cols[c]);
			return -EINVAL;
		}
	}
	return 0;
}

static int row_error(const char *name, size_t line, const char *col,
		     const char *what, const char *value)
{
	fprintf(stderr, "%s:%zu: %s: %s", name, line, col, what);
	if (value)
		fprintf(stderr, " (got \"%.40s%s\")", value,
			strlen(value) > 40 ? "..." : "");
	fprintf(stderr, "\n");
	return -EINVAL;
}

static int new_prompt(struct table *t, long id, long ty)
{
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 4096;
		struct prompt *v = realloc(t->p, nc * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->p = v;
		t->cap = nc;
	}
	memset(&t->p[t->n], 0, sizeof(t->p[t->n]));
	t->p[t->n].id = t->ids.names[id];
	t->p[t->n].type = (int)ty;
	t->p[t->n].split = SPLIT_HASH;
	t->n++;
	return 0;
}

static int row(struct table *t, char **f, const int *col, const char *name,
	       size_t ln)
{
	double q, cost = 0, lat = -1, chk = -1;
	int split = SPLIT_HASH;
	long m, ty, id;
	struct prompt *p;

	for (int c = C_ID; c <= C_MODEL; c++)
		if (!*f[col[c]])
			return row_error(name, ln, cols[c], "empty", NULL);
	if (!parse_num(f[col[C_Q]], &q, false) || q < 0 || q > 1)
		return row_error(name, ln, "quality", "must be a number in "
				 "[0, 1]", f[col[C_Q]]);
	if (col[C_COST] >= 0 &&
	    (!parse_num(f[col[C_COST]], &cost, false) || cost < 0))
		return row_error(name, ln, "cost_usd", "must be a finite "
				 "number >= 0", f[col[C_COST]]);
	if (col[C_LAT] >= 0 && (!parse_num(f[col[C_LAT]], &lat, true) ||
				(lat < 0 && strcmp(f[col[C_LAT]], "-") &&
				 *f[col[C_LAT]])))
		return row_error(name, ln, "latency_s", "must be a number "
				 ">= 0 or -", f[col[C_LAT]]);
	if (col[C_CHK] >= 0 && *f[col[C_CHK]] && strcmp(f[col[C_CHK]], "-") &&
	    strcmp(f[col[C_CHK]], "0") && strcmp(f[col[C_CHK]], "1"))
		return row_error(name, ln, "check", "must be 0, 1 or -",
				 f[col[C_CHK]]);
	if (col[C_CHK] >= 0 && (*f[col[C_CHK]] == '0' || *f[col[C_CHK]] == '1'))
		chk = *f[col[C_CHK]] - '0';
	if (col[C_SPLIT] >= 0) {
		const char *s = f[col[C_SPLIT]];

		if (!strcmp(s, "train"))
			split = SPLIT_TRAIN;
		else if (!strcmp(s, "test"))
			split = SPLIT_TEST;
		else
			return row_error(name, ln, "split", "must be train or "
					 "test", s);
	}
	m = intern_get(&t->models, f[col[C_MODEL]], false);
	if (m == -ENOENT) {
		if (t->models.n >= ROUTE_MAX_MODELS)
			return row_error(name, ln, "model", "more than 64 "
					 "models", f[col[C_MODEL]]);
		m = intern_get(&t->models, f[col[C_MODEL]], true);
	}
	ty = intern_get(&t->types, f[col[C_TYPE]], true);
	id = intern_get(&t->ids, f[col[C_ID]], true);
	if (m < 0 || ty < 0 || id < 0)
		return -ENOMEM;
	if ((size_t)id == t->n && new_prompt(t, id, ty) < 0)
		return -ENOMEM;
	p = &t->p[id];
	if (p->have & (1ULL << m)) {
		fprintf(stderr, "%s:%zu: duplicate row for %s × %s\n", name,
			ln, f[col[C_ID]], f[col[C_MODEL]]);
		return -EINVAL;
	}
	if (p->type != ty)
		return row_error(name, ln, "task_type", "a second task type "
				 "for this prompt", f[col[C_TYPE]]);
	if (p->have && p->split != split)
		return row_error(name, ln, "split", "differs from this "
				 "prompt's other rows", f[col[C_SPLIT]]);
	p->split = split;
	p->have |= 1ULL << m;
	p->q[m] = q;
	p->c[m] = cost;
	p->l[m] = lat;
	p->chk[m] = (signed char)chk;
	if (lat >= 0)
		t->has_latency = true;
	if (col[C_ANS] >= 0 && strcmp(f[col[C_ANS]], "-") && *f[col[C_ANS]]) {
		unescape(f[col[C_ANS]]);
		if (answer_key(t->key, f[col[C_ANS]], &p->ans[m]) < 0)
			return -ENOMEM;
		p->said |= 1ULL << m;
		t->has_answer = true;
	}
	if (col[C_PROMPT] >= 0 && !p->text && *f[col[C_PROMPT]] &&
	    strcmp(f[col[C_PROMPT]], "-")) {
		unescape(f[col[C_PROMPT]]);
		p->text = strdup(f[col[C_PROMPT]]);
		if (!p->text)
			return -ENOMEM;
		t->has_prompt = true;
	}
	return 0;
}

int table_load(struct table *t, FILE *in, const char *name)
{
	int col[C_N], rc = 0;
	char *line = NULL, **f = NULL, *h;
	size_t cap = 0, fcap = 0, lineno = 1;
	ssize_t len;
	long nf, hnf;

	errno = 0;
	if ((len = getline(&line, &cap, in)) <= 0) {
		/* A folder opens but does not read: say why, not "empty". */
		if (ferror(in) && errno)
			fprintf(stderr, "%s: %s\n", name, strerror(errno));
		else
			fprintf(stderr, "%s: empty table\n", name);
		rc = -EINVAL;
		goto out;
	}
	chomp(line, len);
	h = line;
	if (!strncmp(h, "\xef\xbb\xbf", 3))
		h += 3;        /* a UTF-8 byte order mark */
	if ((nf = split_tabs(h, &f, &fcap)) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = header(f, nf, col, name)) < 0)
		goto out;
	hnf = nf;
	t->has_split = col[C_SPLIT] >= 0;
	while ((len = getline(&line, &cap, in)) > 0) {
		lineno++;
		chomp(line, len);
		if (!*line)
			continue;
		if ((nf = split_tabs(line, &f, &fcap)) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		/* More fields than the header is a raw tab in a field (an
		 * answer or prompt cut short), fewer a row cut short: both
		 * would be read wrong without a word. */
		if (nf != hnf) {
			fprintf(stderr, "%s:%zu: %ld columns, the header names "
				"%ld%s\n", name, lineno, nf, hnf, nf > hnf ?
				" (a raw tab inside a field? write it as \\t)" :
				"");
			rc = -EINVAL;
			goto out;
		}
		if ((rc = row(t, f, col, name, lineno)) < 0)
			goto out;
	}
out:
	free(f);
	free(line);
	return rc;
}
