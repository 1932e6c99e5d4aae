/* plan_model: card.json fields, Hugging Face front matter, key handling. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "scheduler/plan_model.h"

static const char readme[] =
	"---\n"
	"license: apache-2.0\n"
	"pipeline_tag: text-generation\n"
	"base_model: mistralai/Mixtral-8x7B-v0.1\n"
	"language:\n"
	"- fr\n"
	"- \"en\"\n"
	"tags: [chat, 'moe', instruct]\n"
	"model-index:\n"
	"  - name: x\n"
	"    results: []\n"
	"---\n"
	"# Mixtral\n"
	"tags: not front matter\n";

static void test_card(void)
{
	struct plan_model m;
	char *err = NULL;
	json_t *j;
	char *s;

	CHECK_RC(plan_model_parse("mixtral",
		"{\"endpoint\": \"https://api.example.com/v1/\","
		" \"model\": \"mistralai/Mixtral-8x7B-Instruct-v0.1\","
		" \"api_key_env\": \"EXAMPLE_KEY\", \"price_in\": 0.6,"
		" \"price_out\": 0.6, \"context\": 32768,"
		" \"skills\": [\"summarise\", \"translate\"]}", readme, &m, &err),
		0);
	CHECK(m.kind == PLAN_MODEL_HTTP && m.context == 32768);
	CHECK(!strcmp(m.remote_model, "mistralai/Mixtral-8x7B-Instruct-v0.1"));
	CHECK(!strcmp(m.pipeline_tag, "text-generation"));
	CHECK(!strcmp(m.base_model, "mistralai/Mixtral-8x7B-v0.1"));
	CHECK(m.n_languages == 2 && !strcmp(m.languages[0], "fr") &&
	      !strcmp(m.languages[1], "en"));
	CHECK(m.n_tags == 3 && !strcmp(m.tags[1], "moe") &&
	      !strcmp(m.tags[2], "instruct"));
	CHECK(plan_model_serves(&m, "translate") &&
	      !plan_model_serves(&m, "math"));
	/* $0.6/M in and out: 1000 + 500 tokens = $0.0009. */
	CHECK(plan_model_cost(&m, 1000, 500) > 0.0009 - 1e-12 &&
	      plan_model_cost(&m, 1000, 500) < 0.0009 + 1e-12);
	/* Defaults: 2 retries, 120 s timeout. */
	CHECK(m.retries == 2 && m.timeout_s == 120);
	j = plan_model_to_json(&m);
	s = json_dumps(j, JSON_COMPACT);
	CHECK(strstr(s, "\"pipeline_tag\":\"text-generation\"") &&
	      !strstr(s, "EXAMPLE_KEY"));
	free(s);
	json_decref(j);
	/* The key comes from the named variable at call time only. */
	unsetenv("EXAMPLE_KEY");
	CHECK_RC(plan_model_api_key(&m, &s), -ENOKEY);
	setenv("EXAMPLE_KEY", "sk-abc\n", 1);
	CHECK_RC(plan_model_api_key(&m, &s), 0);
	CHECK(!strcmp(s, "sk-abc"));
	free(s);
	plan_model_release(&m);

	CHECK_RC(plan_model_parse("local", "{\"command\": [\"llama-cli\","
				  " \"-m\", \"x.gguf\"]}", NULL, &m, &err), 0);
	CHECK(m.kind == PLAN_MODEL_COMMAND && !strcmp(m.argv[2], "x.gguf") &&
	      !m.argv[3] && plan_model_serves(&m, "anything"));
	plan_model_release(&m);
}

static void bad(const char *name, const char *card, const char *why)
{
	struct plan_model m;
	char *err = NULL;

	CHECK_RC(plan_model_parse(name, card, NULL, &m, &err), -EINVAL);
	if (!err || !strstr(err, why))
		fprintf(stderr, "%s: got %s\n", why, err ? err : "(none)");
	CHECK(err && strstr(err, why));
	free(err);
}

int main(void)
{
	test_card();
	bad("x", "{\"endpoint\": \"ftp://h/\"}", "http:// or https://");
	bad("x", "{}", "exactly one of endpoint and command");
	bad("x", "{\"command\": [\"a\"], \"endpoint\": \"http://h\"}",
	    "exactly one");
	bad("x", "{\"command\": []}", "command is a list");
	bad("x", "{\"command\": [\"a\"], \"price_in\": -1}", "price_in");
	bad("x", "{\"command\": [\"a\"], \"colour\": 1}", "unknown field");
	bad("x", "{\"endpoint\": \"http://h\", \"api_key\": \"sk\"}",
	    "must not hold keys");
	bad("x", "{\"command\": [\"a\"], \"skills\": \"all\"}", "skills");
	bad("x", "[1]", "not an object");
	bad("x", "{\"command\": [\"a\"],", "card.json line");
	bad("../etc", "{\"command\": [\"a\"]}", "not usable");
	return 0;
}
