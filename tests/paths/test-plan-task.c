/* plan_task and plan_check: task files, good and bad, and the checkers. */
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "scheduler/plan_check.h"
#include "scheduler/plan_task.h"
#include "scheduler/plan_util.h"

static struct plan_task *parse_ok(const char *s)
{
	struct plan_task *t = NULL;
	char *err = NULL;
	int rc = plan_task_parse(s, strlen(s), &t, &err);

	if (rc != 0)
		fprintf(stderr, "unexpected error %d: %s\n", rc, err);
	CHECK(rc == 0 && t && !err);
	return t;
}

/* Parses bad input and checks the reason mentions `want`. */
static void parse_bad(const char *s, size_t len, int want_rc,
		      const char *want)
{
	struct plan_task *t = NULL;
	char *err = NULL;
	int rc = plan_task_parse(s, len, &t, &err);

	if (rc != want_rc || !err || !strstr(err, want))
		fprintf(stderr, "input %.60s: rc %d, reason %s (want %s)\n",
			s, rc, err ? err : "(none)", want);
	CHECK(rc == want_rc && !t && err && strstr(err, want));
	free(err);
}

static void test_text(void)
{
	struct plan_task *t = parse_ok("  Summarise docs/ in French\n");

	CHECK(t->from_text && t->n_steps == 1 && t->output == 0);
	CHECK(!strcmp(t->steps[0].prompt, "Summarise docs/ in French\n"));
	CHECK(!strcmp(t->steps[0].task_type, "general"));
	CHECK(t->budget_usd == 0 && t->latency_s == 0);
	CHECK(!plan_task_check(t, 0));
	plan_task_free(t);
}

static void test_json(void)
{
	struct plan_task *t = parse_ok(
		"{\"steps\": ["
		" {\"id\": \"fr\", \"prompt\": \"Translate: {{sum}}\","
		"  \"deps\": [\"sum\"], \"task_type\": \"translate\"},"
		" {\"id\": \"sum\", \"prompt\": \"Summarise\","
		"  \"task_type\": \"summarise\", \"max_tokens\": 100},"
		" {\"id\": \"kw\", \"prompt\": \"Keywords\", \"deps\": [\"sum\"]}"
		"], \"output\": \"fr\", \"budget_usd\": 0.05, \"latency_s\": 30,"
		" \"min_quality\": 0.5, \"check\": {\"regex\": \"[a-z]+\"}}");

	CHECK(t->n_steps == 3);
	/* Dependencies first; the output follows its step. */
	CHECK(!strcmp(t->steps[0].id, "sum"));
	CHECK(!strcmp(t->steps[t->output].id, "fr"));
	CHECK(t->steps[t->output].n_deps == 1);
	CHECK(!strcmp(t->steps[t->steps[t->output].deps[0]].id, "sum"));
	CHECK(t->steps[0].max_tokens == 100);
	CHECK(t->steps[2].max_tokens == PLAN_TASK_DEFAULT_MAX_TOKENS);
	CHECK(!strcmp(t->steps[1].id, "kw") &&
	      !strcmp(t->steps[1].task_type, "general"));
	CHECK(t->budget_usd == 0.05 && t->latency_s == 30);
	CHECK(t->min_quality == 0.5);
	/* The task's check judges the output step only. */
	CHECK(plan_task_check(t, t->output)->kind == PLAN_CHECK_REGEX);
	CHECK(!plan_task_check(t, 0));
	plan_task_free(t);

	t = parse_ok("{\"prompt\": \"2+2?\", \"task_type\": \"math\","
		     " \"model\": \"m1\", \"check\": {\"exact\": \" 4 \"}}");
	CHECK(t->n_steps == 1 && !strcmp(t->steps[0].model, "m1"));
	CHECK(!strcmp(t->steps[0].check.text, "4"));
	CHECK(!plan_task_confidence(t, 0));
	plan_task_free(t);

	/* A UTF-8 byte order mark before the JSON is not text. */
	t = parse_ok("\xef\xbb\xbf{\"prompt\": \"x\", \"budget_usd\": 0.5}");
	CHECK(!t->from_text && t->budget_usd == 0.5);
	plan_task_free(t);

	/* A step's own id in braces is text too: it cannot run beside
	 * itself. */
	t = parse_ok("{\"prompt\": \"Explain mustache, as in {{s1}}\"}");
	CHECK(t->n_steps == 1);
	plan_task_free(t);

	/* Braces that name no step are text. */
	t = parse_ok("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"},"
		     " {\"id\": \"b\", \"prompt\": \"{{a}} in {{ jinja }}\","
		     " \"deps\": [\"a\"]}]}");
	CHECK(t->n_steps == 2);
	plan_task_free(t);

	/* A confidence checker: the task's for the output step, or a
	 * step's own, beside a check or alone. */
	t = parse_ok("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\","
		     " \"confidence\": {\"regex\": \"^[0-9]+$\"}},"
		     " {\"id\": \"b\", \"prompt\": \"{{a}}\", \"deps\": [\"a\"]}],"
		     " \"output\": \"b\", \"check\": {\"exact\": \"4\"},"
		     " \"confidence\": {\"command\": [\"/bin/true\"]}}");
	CHECK(plan_task_confidence(t, 0)->kind == PLAN_CHECK_REGEX);
	CHECK(!plan_task_check(t, 0));
	CHECK(plan_task_confidence(t, 1)->kind == PLAN_CHECK_COMMAND);
	CHECK(plan_task_check(t, 1)->kind == PLAN_CHECK_EXACT);
	plan_task_free(t);
}

static void test_bad(void)
{
	char *big = malloc(PLAN_TASK_MAX_BYTES + 2);

	REQUIRE(big);
	memset(big, 'a', PLAN_TASK_MAX_BYTES + 1);
	big[PLAN_TASK_MAX_BYTES + 1] = '\0';
	parse_bad(big, PLAN_TASK_MAX_BYTES + 1, -E2BIG, "larger than");
	free(big);
	parse_bad("   \n\t", 5, -EINVAL, "empty");
	parse_bad("abc\0def", 7, -EINVAL, "NUL");
	parse_bad("{\"prompt\": \"x\"", 14, -EINVAL, "JSON line 1");
	parse_bad("{\"prompt\": 3}", 13, -EINVAL, "prompt");
	parse_bad("{\"prompt\": \"x\", \"colour\": 1}", 28, -EINVAL,
		  "unknown field \"colour\"");
	parse_bad("{\"steps\": []}", 13, -EINVAL, "1 to 32");
	parse_bad("{\"prompt\": \"x\", \"prompt\": \"y\"}", 30, -EINVAL,
		  "duplicate");
#define BAD(s, why) parse_bad(s, strlen(s), -EINVAL, why)
	BAD("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", \"deps\": [\"b\"]}]}",
	    "unknown step");
	BAD("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", \"deps\": [\"b\"]},"
	    " {\"id\": \"b\", \"prompt\": \"y\", \"deps\": [\"a\"]}]}", "cycle");
	BAD("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", \"deps\": [\"a\"]}]}",
	    "itself");
	BAD("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"},"
	    " {\"id\": \"a\", \"prompt\": \"y\"}]}", "duplicate");
	BAD("{\"steps\": [{\"id\": \"a b\", \"prompt\": \"x\"}]}", "id");
	BAD("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"},"
	    " {\"id\": \"c\", \"prompt\": \"see {{a}}\"}]}",
	    "steps[1].prompt: {{a}} names a step that is not in its deps");
	BAD("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"},"
	    " {\"id\": \"c\", \"prompt\": \"y\", \"deps\": [\"a\", \"a\"]}]}",
	    "steps[1].deps[1]: a duplicate");
	BAD("{\"prompt\": \"x\", \"task_type\": \"a/b\"}", "task_type");
	BAD("{\"prompt\": \"x\", \"budget_usd\": -1}", "budget_usd");
	BAD("{\"prompt\": \"x\", \"min_quality\": 2}", "min_quality");
	BAD("{\"prompt\": \"x\", \"check\": {\"regex\": \"(\"}}", "regex");
	BAD("{\"prompt\": \"x\", \"check\": {\"smell\": \"ok\"}}", "unknown check");
	BAD("{\"prompt\": \"x\", \"check\": {\"schema\": {\"oneOf\": []}}}",
	    "unsupported keyword oneOf");
	BAD("{\"prompt\": \"x\", \"check\": {\"command\": []}}", "command");
	BAD("{\"prompt\": \"x\", \"confidence\": {\"regex\": \"(\"}}",
	    "confidence.regex");
	BAD("{\"prompt\": \"x\", \"confidence\": \"42\"}",
	    "confidence: must be an object");
	BAD("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", \"confidence\":"
	    " {\"exact\": \"1\"}}], \"confidence\": {\"exact\": \"2\"}}",
	    "confidence: the output step has one");
	BAD("{\"prompt\": \"x\", \"strategies\": [\"magic\"]}", "strategies");
	BAD("{\"prompt\": \"x\", \"output\": \"nope\"}", "output");
	BAD("{\"prompt\": \"x\", \"steps\": [{\"prompt\": \"y\"}]}", "not both");
	BAD("{}", "needs prompt or steps");
	BAD("{\"steps\": {\"a\": 1}}", "1 to 32");
#undef BAD
}

static int run_check(const char *task, const char *answer)
{
	struct plan_task *t = parse_ok(task);
	char *why = NULL;
	int r = plan_check_run(plan_task_check(t, t->output), answer, 5, &why);

	CHECK(r == 1 ? !why : r == 0 ? why != NULL : 1);
	free(why);
	plan_task_free(t);
	return r;
}

static void test_checkers(void)
{
	const char *schema = "{\"prompt\": \"x\", \"check\": {\"schema\": {"
		"\"type\": \"object\", \"required\": [\"name\", \"age\"],"
		"\"additionalProperties\": false, \"properties\": {"
		"\"name\": {\"type\": \"string\", \"minLength\": 1},"
		"\"age\": {\"type\": \"integer\", \"minimum\": 0},"
		"\"tags\": {\"type\": \"array\", \"maxItems\": 2,"
		" \"items\": {\"enum\": [\"a\", \"b\"]}}}}}}";

	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"exact\": \"Paris\"}}",
			"  Paris\n") == 1);
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"exact\": \"Paris\"}}",
			"paris") == 0);
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"regex\": "
			"\"^[0-9]+$\"}}", "1234") == 1);
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"regex\": "
			"\"^[0-9]+$\"}}", "12a4") == 0);
	CHECK(run_check(schema, "{\"name\": \"Ada\", \"age\": 36}") == 1);
	CHECK(run_check(schema, "```json\n{\"name\": \"Ada\", \"age\": 36,"
			" \"tags\": [\"a\"]}\n```") == 1);
	CHECK(run_check(schema, "{\"name\": \"Ada\"}") == 0);
	CHECK(run_check(schema, "{\"name\": \"Ada\", \"age\": -1}") == 0);
	CHECK(run_check(schema, "{\"name\": \"Ada\", \"age\": 1.5}") == 0);
	CHECK(run_check(schema, "{\"name\": \"\", \"age\": 1}") == 0);
	CHECK(run_check(schema, "{\"name\": \"A\", \"age\": 1, \"x\": 0}") == 0);
	CHECK(run_check(schema, "{\"name\": \"A\", \"age\": 1,"
			" \"tags\": [\"a\", \"c\"]}") == 0);
	CHECK(run_check(schema, "not json") == 0);
	/* The reason names where, in the schema's own words. */
	{
		struct plan_task *t = parse_ok(schema);
		char *why = NULL;

		CHECK(plan_check_run(plan_task_check(t, 0), "{\"name\": \"A\","
				     " \"age\": 1, \"tags\": [\"a\", \"c\"]}",
				     5, &why) == 0);
		CHECK_MSG(why && !strcmp(why, "tags: item 1: not in enum"),
			  "%s", why ? why : "(none)");
		free(why);
		plan_task_free(t);
	}
	/* 5 and 5.0 are one number. */
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"schema\": "
			"{\"enum\": [5.0]}}}", "5") == 1);
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"schema\": "
			"{\"const\": 2}}}", "2.0") == 1);
	/* Integers compare exactly, beyond a double's 53 bits. */
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"schema\": "
			"{\"const\": 9007199254740993}}}",
			"9007199254740992") == 0);
	/* Command checkers are real programs judging by exit status. */
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"command\": "
			"[\"grep\", \"-q\", \"^ok$\"]}}", "ok\n") == 1);
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"command\": "
			"[\"grep\", \"-q\", \"^ok$\"]}}", "no\n") == 0);
	CHECK(run_check("{\"prompt\": \"x\", \"check\": {\"command\": "
			"[\"/nonexistent/checker\"]}}", "ok") < 0);
	/* A checker that hangs is killed at the timeout. */
	{
		struct plan_task *t = parse_ok("{\"prompt\": \"x\", \"check\":"
			" {\"command\": [\"sleep\", \"10\"]}}");
		int r = plan_check_run(plan_task_check(t, 0), "x", 0.3, NULL);

		CHECK(r == -ETIMEDOUT);
		plan_task_free(t);
	}
}

/* Whether plan_regex_vet() lets src be compiled. */
static bool vet(const char *src)
{
	char msg[128];

	return plan_regex_vet(src, msg, sizeof(msg)) == 0;
}

/* The key of answer under pattern, or NULL when it holds none. */
static char *key_of(const char *pattern, const char *answer)
{
	regex_t re;
	char msg[128], *k = (char *)"unset";

	CHECK_RC(plan_key_compile(&re, pattern, msg, sizeof(msg)), 0);
	CHECK_RC(plan_answer_key(&re, answer, &k), 0);
	regfree(&re);
	return k;
}

static void key_is(const char *pattern, const char *answer, const char *want)
{
	char *k = key_of(pattern, answer);

	CHECK_MSG(want ? k && !strcmp(k, want) : !k, "%s on %s: %s, want %s",
		  pattern, answer, k ? k : "(none)", want ? want : "(none)");
	free(k);
}

/* Answer keys: parsed from task files, and what they take of an answer. */
static void test_key(void)
{
	struct plan_task *t;
	char *k = NULL, msg[128];
	regex_t re;

	/* The task's key is every step's, a step's own comes first. */
	t = parse_ok("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\","
		     " \"key\": \"#### (.*)\"}, {\"id\": \"b\", \"prompt\":"
		     " \"{{a}}\", \"deps\": [\"a\"]}], \"key\": \"[A-D]\"}");
	CHECK(!strcmp(t->steps[0].key, "#### (.*)"));
	CHECK(!strcmp(t->steps[1].key, "[A-D]"));
	CHECK(plan_task_key(t, 1) == &t->steps[1].key_re);
	plan_task_free(t);
	t = parse_ok("{\"prompt\": \"x\"}");
	CHECK(!plan_task_key(t, 0) && !t->steps[0].key);
	plan_task_free(t);
#define BAD(s, why) parse_bad(s, strlen(s), -EINVAL, why)
	BAD("{\"prompt\": \"x\", \"key\": \"(\"}", "key: ");
	BAD("{\"prompt\": \"x\", \"key\": \"\"}", "key: a non-empty regex");
	BAD("{\"prompt\": \"x\", \"key\": {\"regex\": \"a\"}}",
	    "key: a non-empty regex");
	BAD("{\"steps\": [{\"prompt\": \"x\", \"key\": \"[\"}]}",
	    "steps[0].key: ");
	/* The task's key is checked though every step has its own. */
	BAD("{\"steps\": [{\"prompt\": \"x\", \"key\": \"a\"}],"
	    " \"key\": 7}", "key: a non-empty regex");
	/* Back-references (not POSIX ERE; exponential or worse in glibc)
	 * are refused, in keys and regex checks alike; a bracket's \1 is
	 * two bytes, and \\1 a backslash and a digit. */
	BAD("{\"prompt\": \"x\", \"key\": \"(|)(\\\\1\\\\1)*\"}",
	    "key: back-references are not allowed");
	BAD("{\"prompt\": \"x\", \"check\": {\"regex\": \"(a*)*\\\\1b\"}}",
	    "check.regex: back-references are not allowed");
	CHECK(vet("[\\1]x") && vet("\\\\1") && vet("[]\\1]") && vet("[^]\\1]"));
	CHECK(vet("[[:digit:]\\1]"));
	CHECK(!vet("[[:digit:]]\\1") && !vet("(a)\\9"));
	/* Intervals and + are copies in glibc: a regex that would expand
	 * past PLAN_REGEX_MAX_WEIGHT atoms is refused, in checks as in keys;
	 * so is an interval on what holds a repetition (exponential time in
	 * regcomp). */
	BAD("{\"prompt\": \"x\", \"key\": \"[a-z]{1,1001}\"}",
	    "key: too large once its repetitions are expanded");
	BAD("{\"prompt\": \"x\", \"check\": {\"regex\": \"(a{1,255}){1,255}\"}}",
	    "check.regex: an interval on what holds a repetition");
	BAD("{\"prompt\": \"x\", \"key\": \"((a|b*)*|c?){40}\"}",
	    "key: an interval on what holds a repetition");
	CHECK(vet("(-?[0-9]+(,[0-9]{3})*(\\.[0-9]+)?)[^0-9]*$"));
	CHECK(vet("([A-D])([^A-Za-z]|$)") && vet("#### *(.*)"));
	CHECK(vet("[a-z]{1,1000}") && vet("(ab){500}") && !vet("(ab){501}"));
	CHECK(vet("a{100}|b{100}|(c|d){100}") && vet("x{,3}{{"));
	CHECK(!vet("a{2}{3}") && !vet("a?{3}") && !vet("(a+){2}"));
	CHECK(!vet("((a{,10}){,10}){,10}"));   /* glibc's {,n} */
	CHECK(vet("(((((((((a)+)+)+)+)+)+)+)+)+"));      /* 512 */
	CHECK(!vet("((((((((((a)+)+)+)+)+)+)+)+)+)+"));  /* 1024 */
	CHECK(!vet("((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))"));
#undef BAD

	/* The last match; its first group when the regex has one. */
	key_is("[A-D]", "A guess: B, no, C.", "c");
	key_is("answer is \\(?([A-D])", "The answer is (B) since A is wrong",
	       "b");
	key_is("answer is \\(?([A-D])", "I pick (b)", NULL);
	key_is("(-?[0-9][0-9,]*)[^0-9]*$", "3 + 4 = 7, so 42 apples.", "42");
	key_is("#### *(.*)", "work\n#### 18\n", "18");
	/* Case and blanks aside, as whole answers. */
	key_is("[Ff]inal: (.*)", "Final: The  Cat\t", "the cat");
	/* The regex matches as written: case counts there. */
	key_is("final: (.*)", "Final: B", NULL);
	/* Empty or blank matches are no key; so is no match at all. */
	key_is("x*", "abc", NULL);
	key_is("(x*)y", "y y", NULL);
	key_is("=( *)", "a = ", NULL);
	key_is("[0-9]", "", NULL);
	/* An empty match does not stop the search for a later one. */
	key_is("[0-9]*", "a1b22c", "22");
	/* After the first match ^ no longer matches. */
	key_is("^[a-z]", "ab", "a");
	/* Anchors see the bytes before a later search's start. */
	key_is("\\<[a-z]", "ab", "a");
	key_is("\\b[0-9]", "12", "1");
	/* The last match whose key holds more than blanks. */
	key_is("=([^;]*)", "x=b; y=", "b");
	key_is("=([^;]*)", "x=b; y= ", "b");
	key_is("(a)|b", "a b", "a");
	/* To the last byte of a long answer.  (Few matches: the sanitizers'
	 * regexec wrapper reads the whole string at every search.) */
	{
		size_t n = 1 << 20;
		char *big = malloc(n + 2);

		REQUIRE(big);
		memset(big, 'a', n);
		memcpy(big + n / 2, "bb", 2);
		big[n] = 'c';
		big[n + 1] = '\0';
		key_is("([bc]+)", big, "c");
		free(big);
	}
	/* No regex: the whole answer, normalised. */
	CHECK_RC(plan_answer_key(NULL, "  The\nB ", &k), 0);
	CHECK(k && !strcmp(k, "the b"));
	free(k);
	CHECK(plan_key_compile(&re, "a{2", msg, sizeof(msg)) == -EINVAL &&
	      *msg);
}

/* Parses a planner reply; want NULL: accepted, else the reason's words. */
static void planner(const char *s, const char *want)
{
	json_t *j = json_loads(s, 0, NULL);
	struct plan_task *t = NULL;
	char *err = NULL;
	int rc;

	REQUIRE(j);
	rc = plan_task_from_planner_json(j, &t, &err);
	if (want ? rc != -EINVAL || !err || !strstr(err, want) : rc != 0)
		fprintf(stderr, "planner reply %.60s: rc %d, reason %s\n", s,
			rc, err ? err : "(none)");
	CHECK(want ? rc == -EINVAL && !t && strstr(err, want) : rc == 0);
	plan_task_free(t);
	free(err);
	json_decref(j);
}

/* A planner model shapes the work; it never adds what runs or spends. */
static void test_planner_reply(void)
{
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", "
		"\"task_type\": \"code\"}, {\"id\": \"b\", \"prompt\": "
		"\"{{a}}\", \"deps\": [\"a\"]}], \"output\": \"b\"}", NULL);
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", "
		"\"check\": {\"command\": [\"sh\", \"-c\", \"id\"]}}]}",
		"steps[0]: unknown field \"check\"");
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"}], "
		"\"check\": {\"command\": [\"true\"]}}",
		"unknown field \"check\"");
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", "
		"\"confidence\": {\"command\": [\"id\"]}}]}",
		"steps[0]: unknown field \"confidence\"");
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"}], "
		"\"confidence\": {\"exact\": \"1\"}}",
		"unknown field \"confidence\"");
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", "
		"\"model\": \"local\"}]}", "unknown field \"model\"");
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"}], "
		"\"key\": \"[0-9]+\"}", "unknown field \"key\"");
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\"}], "
		"\"budget_usd\": 100}", "unknown field \"budget_usd\"");
	planner("{\"steps\": [{\"id\": \"a\", \"prompt\": \"x\", "
		"\"strategies\": [\"vote\"]}]}", "unknown field");
	planner("{\"prompt\": \"x\"}", "unknown field \"prompt\"");
	planner("{\"steps\": [7]}", "steps[0]");
	planner("[1]", "a JSON object");
}

int main(void)
{
	test_text();
	test_json();
	test_bad();
	test_checkers();
	test_key();
	test_planner_reply();
	return check_status();
}
