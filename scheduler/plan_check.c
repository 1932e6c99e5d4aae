/* plan_check: see plan_check.h for the contract and the schema subset. */
#include "plan_check.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "plan_proc.h"
#include "plan_util.h"

static const char *const schema_keys[] = {
	"type", "properties", "required", "additionalProperties", "items",
	"enum", "const", "minimum", "maximum", "minLength", "maxLength",
	"minItems", "maxItems", "title", "description", "$schema", NULL,
};

/* Records why an answer fails; 0 is the "answer fails" result. */
#define set_why(ret_why, ...) plan_errf((ret_why), 0, __VA_ARGS__)

int plan_check_schema_valid(json_t *schema, char **ret_err)
{
	const char *key;
	json_t *v;

	if (!json_is_object(schema)) {
		set_why(ret_err, "schema: not an object");
		return -EINVAL;
	}
	json_object_foreach(schema, key, v) {
		bool known = false;

		for (int i = 0; schema_keys[i]; i++)
			if (!strcmp(key, schema_keys[i]))
				known = true;
		if (!known) {
			set_why(ret_err, "schema: unsupported keyword %s", key);
			return -EINVAL;
		}
		if (!strcmp(key, "properties")) {
			const char *k2;
			json_t *sub;

			if (!json_is_object(v)) {
				set_why(ret_err, "schema: properties is not "
					"an object");
				return -EINVAL;
			}
			json_object_foreach(v, k2, sub)
				if (plan_check_schema_valid(sub, ret_err) < 0)
					return -EINVAL;
		} else if (!strcmp(key, "items")) {
			if (plan_check_schema_valid(v, ret_err) < 0)
				return -EINVAL;
		} else if (!strcmp(key, "additionalProperties") &&
			   !json_is_false(v) && !json_is_true(v)) {
			set_why(ret_err, "schema: additionalProperties must "
				"be a boolean");
			return -EINVAL;
		}
	}
	return 0;
}

static bool type_is(json_t *v, const char *t)
{
	if (!strcmp(t, "object"))
		return json_is_object(v);
	if (!strcmp(t, "array"))
		return json_is_array(v);
	if (!strcmp(t, "string"))
		return json_is_string(v);
	if (!strcmp(t, "number"))
		return json_is_number(v);
	if (!strcmp(t, "integer"))
		return json_is_integer(v) ||
		       (json_is_real(v) &&
			floor(json_real_value(v)) == json_real_value(v));
	if (!strcmp(t, "boolean"))
		return json_is_boolean(v);
	if (!strcmp(t, "null"))
		return json_is_null(v);
	return false;
}

static bool type_ok(json_t *type, json_t *v)
{
	size_t i;
	json_t *t;

	if (!type)
		return true;
	if (json_is_string(type))
		return type_is(v, json_string_value(type));
	json_array_foreach(type, i, t)
		if (json_is_string(t) && type_is(v, json_string_value(t)))
			return true;
	return false;
}

static double num(json_t *v)
{
	return json_number_value(v);
}

/* JSON equality, where 5 and 5.0 are the same number. */
static bool same(json_t *a, json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b))
		return json_integer_value(a) == json_integer_value(b);
	if (json_is_number(a) && json_is_number(b))
		return num(a) == num(b);
	return json_equal(a, b);
}

/* r, a nested check's result: its reason gains where (a property named
 * in the schema, or an item's index), so that the trace says which. */
static int within(int r, char **ret_why, const char *at)
{
	char *why;

	if (r == 0 && ret_why && *ret_why &&
	    asprintf(&why, "%s: %s", at, *ret_why) >= 0) {
		free(*ret_why);
		*ret_why = why;
	}
	return r;
}

int plan_check_schema(json_t *s, json_t *v, char **ret_why)
{
	json_t *k;

	if (!type_ok(json_object_get(s, "type"), v))
		return set_why(ret_why, "wrong type");
	if ((k = json_object_get(s, "const")) && !same(k, v))
		return set_why(ret_why, "not the constant");
	if ((k = json_object_get(s, "enum")) && json_is_array(k)) {
		bool found = false;
		size_t i;
		json_t *e;

		json_array_foreach(k, i, e)
			if (same(e, v))
				found = true;
		if (!found)
			return set_why(ret_why, "not in enum");
	}
	if (json_is_number(v)) {
		if ((k = json_object_get(s, "minimum")) && num(v) < num(k))
			return set_why(ret_why, "below minimum");
		if ((k = json_object_get(s, "maximum")) && num(v) > num(k))
			return set_why(ret_why, "above maximum");
	}
	if (json_is_string(v)) {
		size_t n = json_string_length(v);

		if ((k = json_object_get(s, "minLength")) && n < num(k))
			return set_why(ret_why, "string too short");
		if ((k = json_object_get(s, "maxLength")) && n > num(k))
			return set_why(ret_why, "string too long");
	}
	if (json_is_array(v)) {
		size_t n = json_array_size(v), i;
		json_t *e, *items = json_object_get(s, "items");
		int r;

		if ((k = json_object_get(s, "minItems")) && n < num(k))
			return set_why(ret_why, "too few items");
		if ((k = json_object_get(s, "maxItems")) && n > num(k))
			return set_why(ret_why, "too many items");
		json_array_foreach(v, i, e) {
			char at[32];

			if (!items || (r = plan_check_schema(items, e,
							     ret_why)) == 1)
				continue;
			snprintf(at, sizeof(at), "item %zu", i);
			return within(r, ret_why, at);
		}
	}
	if (json_is_object(v)) {
		json_t *props = json_object_get(s, "properties");
		json_t *req = json_object_get(s, "required");
		const char *key;
		size_t i;
		json_t *e;
		int r;

		json_array_foreach(req, i, e)
			if (json_is_string(e) &&
			    !json_object_get(v, json_string_value(e)))
				return set_why(ret_why, "missing property %s",
					       json_string_value(e));
		json_object_foreach(v, key, e) {
			json_t *ps = props ? json_object_get(props, key) : NULL;

			if (ps && (r = plan_check_schema(ps, e, ret_why)) != 1)
				return within(r, ret_why, key);
			if (!ps && json_is_false(json_object_get(s,
						"additionalProperties")))
				return set_why(ret_why,
					       "unexpected property %s", key);
		}
	}
	return 1;
}

/* Trims outer blanks into a new string. */
static char *trimmed(const char *s)
{
	size_t n;

	while (isspace((unsigned char)*s))
		s++;
	n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	return strndup(s, n);
}

/*
 * The JSON inside a chat answer: the whole text, else the first Markdown
 * code fence, else the span from the first '{' to the last '}'.
 */
json_t *plan_check_answer_json(const char *answer)
{
	char *t = trimmed(answer), *fence, *nl, *close, *open, *last;
	json_t *v = NULL;

	if (!t)
		return NULL;
	v = json_loads(t, JSON_DECODE_ANY, NULL);
	if (!v && (fence = strstr(t, "```")) && (nl = strchr(fence, '\n')) &&
	    (close = strstr(nl + 1, "```")))
		v = json_loadb(nl + 1, (size_t)(close - nl - 1),
			       JSON_DECODE_ANY, NULL);
	if (!v && (open = strchr(t, '{')) && (last = strrchr(t, '}')) &&
	    last > open)
		v = json_loadb(open, (size_t)(last - open + 1), 0, NULL);
	free(t);
	return v;
}

int plan_check_run(const struct plan_check *c, const char *answer,
		   double timeout_s, char **ret_why)
{
	return plan_check_run_as(c, answer, timeout_s, NULL, ret_why);
}

int plan_check_run_as(const struct plan_check *c, const char *answer,
		      double timeout_s, const struct plan_proc_user *as,
		      char **ret_why)
{
	char *t = NULL, *out = NULL;
	json_t *v = NULL;
	int rc = 0, status;

	if (ret_why)
		*ret_why = NULL;
	switch (c->kind) {
	case PLAN_CHECK_NONE:
		return 1;
	case PLAN_CHECK_EXACT:
		t = trimmed(answer);
		if (!t)
			return -ENOMEM;
		rc = !strcmp(t, c->text);
		if (!rc)
			set_why(ret_why, "answer differs from the expected "
				"text");
		break;
	case PLAN_CHECK_REGEX:
		rc = regexec(&c->re, answer, 0, NULL, 0) == 0;
		if (!rc)
			set_why(ret_why, "regex did not match");
		break;
	case PLAN_CHECK_SCHEMA:
		v = plan_check_answer_json(answer);
		if (!v) {
			set_why(ret_why, "answer is not JSON");
			rc = 0;
			break;
		}
		rc = plan_check_schema(c->schema, v, ret_why);
		break;
	case PLAN_CHECK_COMMAND:
		rc = plan_proc_run_as(as, c->argv, answer, strlen(answer),
				      timeout_s, 64 * 1024, NULL, &out, NULL,
				      &status);
		if (rc < 0)
			break;
		rc = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (!rc)
			set_why(ret_why, "checker %s rejected the answer",
				c->argv[0]);
		break;
	}
	free(t);
	free(out);
	json_decref(v);
	return rc;
}
