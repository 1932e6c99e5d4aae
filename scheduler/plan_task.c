/* plan_task: see plan_task.h for the formats and invariants. */
#include "plan_task.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_check.h"
#include "plan_util.h"

#define ID_MAX 64

/* Reports the first reason a card or task is refused; returns -EINVAL. */
#define fail(ret_err, ...) plan_errf((ret_err), -EINVAL, __VA_ARGS__)

static void check_release(struct plan_check *c)
{
	if (c->kind == PLAN_CHECK_REGEX)
		regfree(&c->re);
	free(c->text);
	json_decref(c->schema);
	for (size_t i = 0; c->argv && c->argv[i]; i++)
		free(c->argv[i]);
	free(c->argv);
	memset(c, 0, sizeof(*c));
}

void plan_task_free(struct plan_task *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_steps; i++) {
		struct plan_step *s = &t->steps[i];

		free(s->id);
		free(s->prompt);
		free(s->task_type);
		free(s->model);
		check_release(&s->check);
		check_release(&s->confidence);
		if (s->key)
			regfree(&s->key_re);
		free(s->key);
	}
	free(t->steps);
	free(t);
}

const struct plan_check *plan_task_check(const struct plan_task *t,
					 size_t step)
{
	return t->steps[step].check.kind != PLAN_CHECK_NONE ?
	       &t->steps[step].check : NULL;
}

const struct plan_check *plan_task_confidence(const struct plan_task *t,
					      size_t step)
{
	return t->steps[step].confidence.kind != PLAN_CHECK_NONE ?
	       &t->steps[step].confidence : NULL;
}

const regex_t *plan_task_key(const struct plan_task *t, size_t step)
{
	return t->steps[step].key ? &t->steps[step].key_re : NULL;
}

static bool valid_id(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > ID_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

/* Names such as task types and models: printable, no slash or tab. */
static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 128)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == '/' || *s == '\t' ||
		    *s == 0x7f)
			return false;
	return true;
}

static int parse_check(json_t *j, const char *where, struct plan_check *c,
		       char **ret_err)
{
	json_t *v;
	size_t n;

	if (!json_is_object(j) || json_object_size(j) != 1)
		return fail(ret_err, "%s: must be an object with one of "
			    "exact, regex, schema, command", where);
	if ((v = json_object_get(j, "exact"))) {
		if (!json_is_string(v))
			return fail(ret_err, "%s.exact: not a string", where);
		c->kind = PLAN_CHECK_EXACT;
		c->text = strdup(json_string_value(v));
		/* The comparison ignores outer blanks on both sides. */
		if (c->text) {
			char *s = c->text, *e;

			while (isspace((unsigned char)*s))
				s++;
			memmove(c->text, s, strlen(s) + 1);
			e = c->text + strlen(c->text);
			while (e > c->text && isspace((unsigned char)e[-1]))
				*--e = '\0';
		}
		return c->text ? 0 : -ENOMEM;
	}
	if ((v = json_object_get(j, "regex"))) {
		char msg[128];
		int r;

		if (!json_is_string(v))
			return fail(ret_err, "%s.regex: not a string", where);
		if (plan_regex_vet(json_string_value(v), msg, sizeof(msg)) < 0)
			return fail(ret_err, "%s.regex: %s", where, msg);
		r = regcomp(&c->re, json_string_value(v),
			    REG_EXTENDED | REG_NOSUB);
		if (r) {
			regerror(r, &c->re, msg, sizeof(msg));
			return fail(ret_err, "%s.regex: %s", where, msg);
		}
		c->kind = PLAN_CHECK_REGEX;
		c->text = strdup(json_string_value(v));
		return c->text ? 0 : -ENOMEM;
	}
	if ((v = json_object_get(j, "schema"))) {
		char *e = NULL;

		if (plan_check_schema_valid(v, &e) < 0) {
			fail(ret_err, "%s.%s", where, e ? e : "schema");
			free(e);
			return -EINVAL;
		}
		c->kind = PLAN_CHECK_SCHEMA;
		c->schema = json_incref(v);
		return 0;
	}
	if ((v = json_object_get(j, "command"))) {
		if (!json_is_array(v) || !(n = json_array_size(v)) || n > 64)
			return fail(ret_err, "%s.command: a list of 1 to 64 "
				    "strings", where);
		c->kind = PLAN_CHECK_COMMAND;
		c->argv = calloc(n + 1, sizeof(*c->argv));
		if (!c->argv)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			json_t *a = json_array_get(v, i);

			if (!json_is_string(a))
				return fail(ret_err, "%s.command[%zu]: not a "
					    "string", where, i);
			c->argv[i] = strdup(json_string_value(a));
			if (!c->argv[i])
				return -ENOMEM;
		}
		return 0;
	}
	return fail(ret_err, "%s: unknown check kind", where);
}

static int get_number(json_t *root, const char *key, double max,
		      double *ret, char **ret_err)
{
	json_t *v = json_object_get(root, key);

	if (!v)
		return 0;
	if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
	    json_number_value(v) < 0 || json_number_value(v) > max)
		return fail(ret_err, "%s: a number from 0 to %g", key, max);
	*ret = json_number_value(v);
	return 0;
}

static int parse_strategies(json_t *v, const char *where, unsigned *ret,
			    char **ret_err)
{
	size_t i;
	json_t *e;
	unsigned s = 0;

	if (!v) {
		*ret = PLAN_STRAT_ALL;
		return 0;
	}
	if (!json_is_array(v))
		return fail(ret_err, "%s.strategies: a list", where);
	json_array_foreach(v, i, e) {
		const char *n = json_string_value(e);

		if (n && !strcmp(n, "single"))
			s |= PLAN_STRAT_SINGLE;
		else if (n && !strcmp(n, "cascade"))
			s |= PLAN_STRAT_CASCADE;
		else if (n && !strcmp(n, "vote"))
			s |= PLAN_STRAT_VOTE;
		else if (n && !strcmp(n, "agree"))
			s |= PLAN_STRAT_AGREE;
		else
			return fail(ret_err, "%s.strategies[%zu]: one of "
				    "single, cascade, vote, agree", where, i);
	}
	*ret = s ? s : PLAN_STRAT_ALL;
	return 0;
}

/*
 * The checker field name of object o, if any, into c: where names a step
 * ("steps[2]"), NULL the task, whose checker may not meet the output
 * step's own.
 */
static int checker(json_t *o, const char *name, const char *where,
		   struct plan_check *c, char **ret_err)
{
	json_t *v = json_object_get(o, name);
	char w[48];

	if (!v)
		return 0;
	if (c->kind != PLAN_CHECK_NONE)
		return fail(ret_err, "%s: the output step has one", name);
	if (where)
		snprintf(w, sizeof(w), "%s.%s", where, name);
	else
		snprintf(w, sizeof(w), "%s", name);
	return parse_check(v, w, c, ret_err);
}

static const char *const task_keys[] = {
	"prompt", "steps", "task_type", "output", "budget_usd", "latency_s",
	"min_quality", "check", "confidence", "key", "strategies",
	"max_tokens", "model", NULL,
};
static const char *const step_keys[] = {
	"id", "prompt", "task_type", "deps", "model", "check", "confidence",
	"key", "strategies", "max_tokens", NULL,
};

/* The answer key of a step (where: "steps[2]"), else the task's
 * (defaults; where NULL: the task's own, j the task). */
static int parse_key(json_t *j, json_t *defaults, const char *where,
		     struct plan_step *s, char **ret_err)
{
	json_t *v = json_object_get(j, "key");
	char w[48], msg[128];

	if (v && where)
		snprintf(w, sizeof(w), "%s.key", where);
	else if (v)
		snprintf(w, sizeof(w), "key");
	else if ((v = json_object_get(defaults, "key")))
		snprintf(w, sizeof(w), "key");
	else
		return 0;
	if (!json_is_string(v) || !json_string_length(v))
		return fail(ret_err, "%s: a non-empty regex", w);
	if (plan_key_compile(&s->key_re, json_string_value(v), msg,
			     sizeof(msg)) < 0)
		return fail(ret_err, "%s: %s", w, msg);
	s->key = strdup(json_string_value(v));
	if (!s->key) {
		regfree(&s->key_re);
		return -ENOMEM;
	}
	return 0;
}

static int only_keys(json_t *o, const char *const *keys, const char *where,
		     char **ret_err)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		bool ok = false;

		for (int i = 0; keys[i]; i++)
			if (!strcmp(k, keys[i]))
				ok = true;
		if (!ok)
			return fail(ret_err, "%s: unknown field \"%s\"", where,
				    k);
	}
	return 0;
}

static int parse_step(json_t *j, size_t idx, json_t *defaults,
		      struct plan_step *s, char **ret_err)
{
	char where[32];
	json_t *v;
	int rc;

	snprintf(where, sizeof(where), "steps[%zu]", idx);
	if (!json_is_object(j))
		return fail(ret_err, "%s: not an object", where);
	rc = only_keys(j, step_keys, where, ret_err);
	if (rc < 0)
		return rc;
	v = json_object_get(j, "id");
	if (v && (!json_is_string(v) || !valid_id(json_string_value(v))))
		return fail(ret_err, "%s.id: 1 to %d of [A-Za-z0-9_-]", where,
			    ID_MAX);
	if (v)
		s->id = strdup(json_string_value(v));
	else if (asprintf(&s->id, "s%zu", idx + 1) < 0)
		s->id = NULL;
	v = json_object_get(j, "prompt");
	if (!json_is_string(v) || !json_string_length(v))
		return fail(ret_err, "%s.prompt: a non-empty string", where);
	s->prompt = strdup(json_string_value(v));
	v = json_object_get(j, "task_type");
	if (!v)
		v = json_object_get(defaults, "task_type");
	if (v && (!json_is_string(v) || !valid_name(json_string_value(v))))
		return fail(ret_err, "%s.task_type: a name without / or "
			    "control characters", where);
	s->task_type = strdup(v ? json_string_value(v) :
			      PLAN_TASK_DEFAULT_TYPE);
	v = json_object_get(j, "model");
	if (!v)
		v = json_object_get(defaults, "model");
	if (v && (!json_is_string(v) || !valid_name(json_string_value(v))))
		return fail(ret_err, "%s.model: a model name", where);
	if (v)
		s->model = strdup(json_string_value(v));
	if (!s->id || !s->prompt || !s->task_type || (v && !s->model))
		return -ENOMEM;
	if ((rc = checker(j, "check", where, &s->check, ret_err)) < 0 ||
	    (rc = checker(j, "confidence", where, &s->confidence,
			  ret_err)) < 0 ||
	    (rc = parse_key(j, defaults, where, s, ret_err)) < 0)
		return rc;
	v = json_object_get(j, "strategies");
	rc = parse_strategies(v ? v : json_object_get(defaults, "strategies"),
			      where, &s->strategies, ret_err);
	if (rc < 0)
		return rc;
	v = json_object_get(j, "max_tokens");
	if (!v)
		v = json_object_get(defaults, "max_tokens");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
		  json_integer_value(v) > 1000000))
		return fail(ret_err, "%s.max_tokens: 1 to 1000000", where);
	s->max_tokens = v ? (unsigned)json_integer_value(v) :
			PLAN_TASK_DEFAULT_MAX_TOKENS;
	return 0;
}

static long find_step(const struct plan_task *t, const char *id)
{
	for (size_t i = 0; i < t->n_steps; i++)
		if (!strcmp(t->steps[i].id, id))
			return (long)i;
	return -1;
}

/*
 * A {{id}} in step i's prompt that names another step must name one of
 * its dependencies: otherwise the step would run beside that one and send
 * the reference unfilled.  Text in braces that names no step stays text.
 */
static int step_refs(const struct plan_task *t, size_t i, char **ret_err)
{
	const struct plan_step *s = &t->steps[i];

	for (const char *p = strstr(s->prompt, "{{"); p;
	     p = strstr(p + 2, "{{")) {
		const char *e = strstr(p + 2, "}}");
		char id[ID_MAX + 1];
		long j;
		bool dep = false;

		if (!e || (size_t)(e - p - 2) > ID_MAX)
			continue;
		memcpy(id, p + 2, (size_t)(e - p - 2));
		id[e - p - 2] = '\0';
		j = find_step(t, id);
		if (j < 0 || (size_t)j == i)
			continue;
		for (size_t k = 0; k < s->n_deps; k++)
			dep |= s->deps[k] == (size_t)j;
		if (!dep)
			return fail(ret_err, "steps[%zu].prompt: {{%s}} names "
				    "a step that is not in its deps", i, id);
	}
	return 0;
}

/* Reorders steps so that dependencies come first (Kahn), or -EINVAL. */
static int topo_sort(struct plan_task *t, json_t *steps, char **ret_err)
{
	size_t n = t->n_steps, done = 0;
	long order[PLAN_TASK_MAX_STEPS], pos[PLAN_TASK_MAX_STEPS];
	bool placed[PLAN_TASK_MAX_STEPS] = { false };
	struct plan_step tmp[PLAN_TASK_MAX_STEPS];

	/* Resolve names to indexes in the parsed order first. */
	for (size_t i = 0; i < n; i++) {
		json_t *deps = json_object_get(json_array_get(steps, i),
					       "deps");
		size_t k;
		json_t *d;

		if (!deps)
			continue;
		if (!json_is_array(deps) ||
		    json_array_size(deps) > PLAN_TASK_MAX_DEPS)
			return fail(ret_err, "steps[%zu].deps: a list of at "
				    "most %d ids", i, PLAN_TASK_MAX_DEPS);
		json_array_foreach(deps, k, d) {
			long j = json_is_string(d) ?
				 find_step(t, json_string_value(d)) : -1;

			if (j < 0)
				return fail(ret_err, "steps[%zu].deps[%zu]: "
					    "unknown step", i, k);
			if ((size_t)j == i)
				return fail(ret_err, "steps[%zu]: depends on "
					    "itself", i);
			for (size_t m = 0; m < t->steps[i].n_deps; m++)
				if (t->steps[i].deps[m] == (size_t)j)
					return fail(ret_err, "steps[%zu].deps"
						    "[%zu]: a duplicate", i, k);
			t->steps[i].deps[t->steps[i].n_deps++] = (size_t)j;
		}
	}
	for (size_t i = 0; i < n; i++) {
		int rc = step_refs(t, i, ret_err);

		if (rc < 0)
			return rc;
	}
	while (done < n) {
		bool progress = false;

		for (size_t i = 0; i < n; i++) {
			bool ready = !placed[i];

			for (size_t k = 0; ready && k < t->steps[i].n_deps; k++)
				ready = placed[t->steps[i].deps[k]];
			if (ready) {
				placed[i] = true;
				order[done++] = (long)i;
				progress = true;
			}
		}
		if (!progress)
			return fail(ret_err, "steps: dependency cycle");
	}
	for (size_t i = 0; i < n; i++) {
		pos[order[i]] = (long)i;
		tmp[i] = t->steps[order[i]];
	}
	for (size_t i = 0; i < n; i++) {
		t->steps[i] = tmp[i];
		for (size_t k = 0; k < t->steps[i].n_deps; k++)
			t->steps[i].deps[k] = (size_t)pos[t->steps[i].deps[k]];
	}
	t->output = (size_t)pos[t->output];
	return 0;
}

int plan_task_from_json(json_t *root, struct plan_task **ret_task,
			char **ret_err)
{
	struct plan_task *t;
	json_t *steps, *v, *one = NULL;
	size_t n;
	int rc;

	if (!json_is_object(root))
		return fail(ret_err, "task: a JSON object");
	rc = only_keys(root, task_keys, "task", ret_err);
	if (rc < 0)
		return rc;
	steps = json_object_get(root, "steps");
	if (steps && json_object_get(root, "prompt"))
		return fail(ret_err, "task: either prompt or steps, not both");
	if (!steps) {
		v = json_object_get(root, "prompt");
		if (!v)
			return fail(ret_err, "task: needs prompt or steps");
		one = json_pack("[{s:O}]", "prompt", v);
		if (!one)
			return -ENOMEM;
		steps = one;
	}
	if (!json_is_array(steps) || !(n = json_array_size(steps)) ||
	    n > PLAN_TASK_MAX_STEPS) {
		json_decref(one);
		return fail(ret_err, "steps: a list of 1 to %d steps",
			    PLAN_TASK_MAX_STEPS);
	}
	/* The task's key, checked once though every step may have its own. */
	if ((v = json_object_get(root, "key"))) {
		struct plan_step k = { 0 };

		if ((rc = parse_key(root, NULL, NULL, &k, ret_err)) < 0) {
			json_decref(one);
			return rc;
		}
		regfree(&k.key_re);
		free(k.key);
	}
	t = calloc(1, sizeof(*t));
	if (t)
		t->steps = calloc(n, sizeof(*t->steps));
	if (!t || !t->steps) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		t->n_steps = i + 1;
		rc = parse_step(json_array_get(steps, i), i, root,
				&t->steps[i], ret_err);
		if (rc < 0)
			goto out;
		if (find_step(t, t->steps[i].id) != (long)i) {
			rc = fail(ret_err, "steps[%zu].id: duplicate", i);
			goto out;
		}
	}
	t->output = n - 1;
	if ((v = json_object_get(root, "output"))) {
		long o = json_is_string(v) ? find_step(t, json_string_value(v))
					   : -1;

		if (o < 0) {
			rc = fail(ret_err, "output: not a step id");
			goto out;
		}
		t->output = (size_t)o;
	}
	/* A task-level checker judges the result step. */
	if ((rc = checker(root, "check", NULL, &t->steps[t->output].check,
			  ret_err)) < 0 ||
	    (rc = checker(root, "confidence", NULL,
			  &t->steps[t->output].confidence, ret_err)) < 0)
		goto out;
	rc = get_number(root, "budget_usd", 1e6, &t->budget_usd, ret_err);
	if (rc == 0)
		rc = get_number(root, "latency_s", 1e6, &t->latency_s, ret_err);
	if (rc == 0)
		rc = get_number(root, "min_quality", 1, &t->min_quality,
				ret_err);
	if (rc == 0)
		rc = topo_sort(t, steps, ret_err);
out:
	json_decref(one);
	if (rc < 0) {
		plan_task_free(t);
		return rc;
	}
	*ret_task = t;
	return 0;
}

/*
 * What a planner model may say: the shape of the work, nothing that runs
 * or spends.  Its reply is text a prompt injection in the user's free text
 * can steer, so checkers (check.command runs a program), pinned models,
 * strategies and limits are refused, not trusted.
 */
static const char *const planner_task_keys[] = { "steps", "output", NULL };
static const char *const planner_step_keys[] = {
	"id", "prompt", "task_type", "deps", NULL,
};

int plan_task_from_planner_json(json_t *root, struct plan_task **ret_task,
				char **ret_err)
{
	json_t *steps, *v;
	size_t i;
	char where[48];
	int rc;

	if (!json_is_object(root))
		return fail(ret_err, "planner reply: a JSON object");
	rc = only_keys(root, planner_task_keys, "planner reply", ret_err);
	if (rc < 0)
		return rc;
	steps = json_object_get(root, "steps");
	if (!json_is_array(steps))
		return fail(ret_err, "planner reply: needs a list of steps");
	json_array_foreach(steps, i, v) {
		if (!json_is_object(v))
			return fail(ret_err, "planner reply: steps[%zu]: a "
				    "JSON object", i);
		snprintf(where, sizeof(where), "planner reply: steps[%zu]", i);
		rc = only_keys(v, planner_step_keys, where, ret_err);
		if (rc < 0)
			return rc;
	}
	return plan_task_from_json(root, ret_task, ret_err);
}

static int from_text(const char *data, size_t len, struct plan_task **ret)
{
	struct plan_task *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->steps = calloc(1, sizeof(*t->steps));
	if (!t->steps) {
		free(t);
		return -ENOMEM;
	}
	t->n_steps = 1;
	t->from_text = true;
	t->steps[0].id = strdup("s1");
	t->steps[0].prompt = strndup(data, len);
	t->steps[0].task_type = strdup(PLAN_TASK_DEFAULT_TYPE);
	t->steps[0].strategies = PLAN_STRAT_ALL;
	t->steps[0].max_tokens = PLAN_TASK_DEFAULT_MAX_TOKENS;
	if (!t->steps[0].id || !t->steps[0].prompt || !t->steps[0].task_type) {
		plan_task_free(t);
		return -ENOMEM;
	}
	*ret = t;
	return 0;
}

int plan_task_parse(const char *data, size_t len, struct plan_task **ret_task,
		    char **ret_err)
{
	json_error_t jerr;
	json_t *root;
	size_t i = 0, bom = 0;
	int rc;

	if (ret_err)
		*ret_err = NULL;
	if (len > PLAN_TASK_MAX_BYTES) {
		fail(ret_err, "task: larger than %u bytes",
		     PLAN_TASK_MAX_BYTES);
		return -E2BIG;
	}
	if (memchr(data, '\0', len))
		return fail(ret_err, "task: contains NUL bytes");
	/* A UTF-8 byte order mark, as some editors write, is not text. */
	if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3))
		bom = i = 3;
	while (i < len && isspace((unsigned char)data[i]))
		i++;
	if (i == len)
		return fail(ret_err, "task: empty");
	if (data[i] != '{')
		return from_text(data + i, len - i, ret_task);
	root = json_loadb(data + bom, len - bom, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(ret_err, "task: JSON line %d column %d: %s",
			    jerr.line, jerr.column, jerr.text);
	rc = plan_task_from_json(root, ret_task, ret_err);
	json_decref(root);
	return rc;
}
