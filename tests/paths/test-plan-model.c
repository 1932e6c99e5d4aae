/*
 * plan_model: card.json fields, Hugging Face front matter, key handling,
 * and which owners' cards may run commands or read keys.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"
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

#define OTHER 54321 /* a uid nobody here trusts */

static const char cmd_card[] = "{\"command\": [\"cat\"]}";
static const char key_card[] = "{\"endpoint\": \"http://127.0.0.1:9/v1\","
			       " \"api_key_file\": \"/etc/shadow\"}";
static const char env_card[] = "{\"endpoint\": \"http://127.0.0.1:9/v1\","
			       " \"api_key_env\": \"HOME\"}";
static const char plain_card[] = "{\"endpoint\": \"http://127.0.0.1:9/v1\"}";

/* models/<name>/card.json with that owner and those modes. */
static void put(const char *dir, const char *name, const char *json,
		uid_t dir_uid, mode_t dir_mode, uid_t uid, mode_t mode)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK(mkdir(path, 0755) == 0);
	CHECK(chown(path, dir_uid, (gid_t)-1) == 0);
	CHECK(chmod(path, dir_mode) == 0);
	snprintf(path, sizeof(path), "%s/%s/card.json", dir, name);
	f = fopen(path, "w");
	CHECK(f && fputs(json, f) >= 0 && fclose(f) == 0);
	CHECK(chown(path, uid, (gid_t)-1) == 0);
	CHECK(chmod(path, mode) == 0);
}

/* Loads dir; checks that exactly the names in want (space-separated,
 * sorted) loaded, and that each refused name's warning holds its reason. */
static void expect(const char *dir, const struct plan_model_trust *trust,
		   const char *want, const char *const *reasons)
{
	struct plan_models ms = { 0 };
	char *err = NULL, got[512] = "";

	CHECK_RC(plan_models_load(dir, trust, &ms, &err), 0);
	for (size_t i = 0; i < ms.n; i++) {
		strcat(got, i ? " " : "");
		strcat(got, ms.v[i].name);
	}
	if (strcmp(got, want))
		fprintf(stderr, "loaded \"%s\", want \"%s\"; warnings:\n%s\n",
			got, want, err ? err : "(none)");
	CHECK(!strcmp(got, want));
	for (; reasons && *reasons; reasons++) {
		if (!err || !strstr(err, *reasons))
			fprintf(stderr, "no warning \"%s\" in:\n%s\n", *reasons,
				err ? err : "(none)");
		CHECK(err && strstr(err, *reasons));
	}
	free(err);
	plan_models_release(&ms);
}

/*
 * A user who owns a model folder must not run commands or read keys with
 * the loader's rights (issue: cp -a of a user's folder into models/ kept
 * its owner, and the daemon, root, ran its command).
 */
static void test_trust(void)
{
	char base[] = "/tmp/plan-model-trust-XXXXXX", dir[64], link[128];
	char target[128], cmd[128];
	const uid_t other = OTHER;
	struct plan_model_trust allow = { &other, 1 };
	uid_t me = geteuid();

	if (me != 0) {
		fprintf(stderr, "skipped test_trust: needs root to chown\n");
		return;
	}
	CHECK(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/models", base);
	CHECK(mkdir(dir, 0755) == 0);
	put(dir, "a-mine", cmd_card, me, 0755, me, 0644);
	put(dir, "b-their-cmd", cmd_card, OTHER, 0755, OTHER, 0644);
	put(dir, "c-their-folder", cmd_card, OTHER, 0755, me, 0644);
	put(dir, "d-their-key", key_card, OTHER, 0755, OTHER, 0644);
	put(dir, "e-their-env", env_card, me, 0755, OTHER, 0600);
	put(dir, "f-their-plain", plain_card, OTHER, 0777, OTHER, 0666);
	put(dir, "g-card-o+w", cmd_card, me, 0755, me, 0646);
	put(dir, "h-folder-g+w", key_card, me, 0775, me, 0644);
	/* a link to a trusted card, placed in a folder another user owns */
	put(dir, "i-link", plain_card, me, 0755, me, 0644);
	snprintf(target, sizeof(target), "%s/a-mine/card.json", dir);
	snprintf(link, sizeof(link), "%s/i-link/card.json", dir);
	CHECK(unlink(link) == 0 && symlink(target, link) == 0);
	expect(dir, NULL, "a-mine f-their-plain",
	       (const char *const[]){
		       "model b-their-cmd: refused: it runs a command but "
		       "its folder belongs to uid 54321",
		       "model c-their-folder: refused: it runs a command but "
		       "its folder belongs to uid 54321",
		       "model d-their-key: refused: it reads a key (api_key_file)",
		       "model e-their-env: refused: it reads a key "
		       "(api_key_env) but card.json belongs to uid 54321",
		       "model g-card-o+w: refused: it runs a command but "
		       "card.json is writable by its group or others",
		       "model h-folder-g+w: refused: it reads a key "
		       "(api_key_file) but its folder is writable",
		       "model i-link: refused: it runs a command but card.json "
		       "is a symbolic link",
		       NULL });
	/* An allowed uid is trusted like the loader's own; modes still count. */
	expect(dir, &allow, "a-mine b-their-cmd c-their-folder d-their-key "
	       "e-their-env f-their-plain", NULL);
	/* A models folder others may write vouches for nothing. */
	CHECK(chmod(dir, 0777) == 0);
	expect(dir, NULL, "f-their-plain", (const char *const[]){
		"model a-mine: refused: it runs a command but the models "
		"folder is writable", NULL });
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	CHECK(system(cmd) == 0);
}

/* Is the model name of ms usable by uid? */
static bool usable(const struct plan_models *ms, const char *name, uid_t uid)
{
	long i = plan_models_find(ms, name);

	CHECK(i >= 0);
	return plan_model_usable_by(&ms->v[i], uid);
}

/*
 * Routing: a card that only names an endpoint loads whoever owns it, but
 * may receive only its sole owner's tasks, unless it is trusted.  Before,
 * every loaded card served every task.
 */
static void test_routing_owner(void)
{
	char base[] = "/tmp/plan-model-route-XXXXXX", dir[64], cmd[128];
	char target[128], link[128];
	struct plan_models ms = { 0 };

	if (geteuid() != 0) {
		fprintf(stderr, "skipped test_routing_owner: needs root\n");
		return;
	}
	CHECK(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/models", base);
	CHECK(mkdir(dir, 0755) == 0);
	put(dir, "p-mine", plain_card, 0, 0755, 0, 0644);
	put(dir, "q-theirs", plain_card, OTHER, 0755, OTHER, 0644);
	put(dir, "r-theirs-o+w", plain_card, OTHER, 0755, OTHER, 0666);
	put(dir, "s-mixed", plain_card, 0, 0755, OTHER, 0644);
	put(dir, "t-link", plain_card, OTHER, 0755, OTHER, 0644);
	snprintf(target, sizeof(target), "%s/q-theirs/card.json", dir);
	snprintf(link, sizeof(link), "%s/t-link/card.json", dir);
	CHECK(unlink(link) == 0 && symlink(target, link) == 0);
	CHECK_RC(plan_models_load(dir, NULL, &ms, NULL), 0);
	CHECK(ms.n == 5);
	CHECK(usable(&ms, "p-mine", 0) && usable(&ms, "p-mine", OTHER));
	CHECK(!usable(&ms, "q-theirs", 0) && usable(&ms, "q-theirs", OTHER));
	CHECK(!usable(&ms, "q-theirs", OTHER + 1));
	/* Others may rewrite it, or its owner is not one: no one's. */
	CHECK(!usable(&ms, "r-theirs-o+w", OTHER) &&
	      !usable(&ms, "r-theirs-o+w", 0));
	CHECK(!usable(&ms, "s-mixed", OTHER) && !usable(&ms, "s-mixed", 0));
	CHECK(!usable(&ms, "t-link", OTHER) && !usable(&ms, "t-link", 0));
	plan_models_release(&ms);
	/* Trusted by --trusted-uid: usable by every task. */
	CHECK_RC(plan_models_load(dir, &(struct plan_model_trust){
			(const uid_t[]){ OTHER }, 1 }, &ms, NULL), 0);
	CHECK(usable(&ms, "q-theirs", 0));
	plan_models_release(&ms);
	/* A models folder others may write vouches for no one. */
	CHECK(chmod(dir, 0777) == 0);
	CHECK_RC(plan_models_load(dir, NULL, &ms, NULL), 0);
	CHECK(!usable(&ms, "q-theirs", OTHER) && !usable(&ms, "p-mine", OTHER));
	plan_models_release(&ms);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	CHECK(system(cmd) == 0);
}

/* Cards in memory (the daemon's, read from its store) are judged alike. */
static void test_from_cards(void)
{
	uid_t me = geteuid();
	const uid_t other = OTHER;
	struct plan_model_trust allow = { &other, 1 };
	const struct plan_card cards[] = {
		{ "b-their-cmd", cmd_card, NULL, OTHER, OTHER, 0755, 0644 },
		{ "a-mine", cmd_card, readme, me, me, 0755, 0644 },
		{ "c-card-g+w", key_card, NULL, me, me, 0755, 0664 },
		{ "d-their-plain", plain_card, NULL, OTHER, OTHER, 0777, 0666 },
		{ "e-bad", "{", NULL, me, me, 0755, 0644 },
	};
	struct plan_models ms = { 0 };
	char *err = NULL;

	CHECK_RC(plan_models_from_cards(cards, 5, NULL, &ms, &err), 0);
	CHECK(ms.n == 2 && !strcmp(ms.v[0].name, "a-mine") &&
	      !strcmp(ms.v[1].name, "d-their-plain"));
	CHECK(ms.n == 2 && ms.v[0].trusted && !ms.v[1].trusted &&
	      ms.v[0].owner == me && ms.v[1].owner == PLAN_MODEL_NO_OWNER &&
	      !strcmp(ms.v[0].pipeline_tag, "text-generation"));
	CHECK(err && strstr(err, "model b-their-cmd: refused: it runs a command "
			    "but its folder belongs to uid 54321"));
	CHECK(err && strstr(err, "model c-card-g+w: refused: it reads a key "
			    "(api_key_file) but card.json is writable"));
	CHECK(err && strstr(err, "e-bad"));
	free(err);
	plan_models_release(&ms);
	err = NULL;
	CHECK_RC(plan_models_from_cards(cards, 5, &allow, &ms, &err), 0);
	CHECK(ms.n == 3 && !strcmp(ms.v[1].name, "b-their-cmd") &&
	      ms.v[1].trusted && ms.v[1].owner == OTHER);
	free(err);
	plan_models_release(&ms);
}

int main(void)
{
	test_card();
	test_trust();
	test_routing_owner();
	test_from_cards();
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
	return check_status();
}
