/*
 * plan_exec against a stand-in OpenAI-compatible server and real local
 * programs: answers, usage-based costs, retries, fallbacks, timeouts,
 * garbage, checkers, cascades, votes, DAGs, cancellation, and that the API
 * key never reaches a trace.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"
#include "scheduler/plan_exec.h"
#include "common/clock.h"
#include "scheduler/plan_route.h"
#include "scheduler/plan_util.h"
#include "standin.h"

#define KEY "sk-standin-SECRET-0123456789"

static struct standin *srv;
/* Given to plan_exec_run() as its per-prompt learner; NULL: none. */
static struct plan_route *run_route;
static char base[256];
static int dir_seq;

struct out {
	struct plan_buf trace;
	size_t progress;
};

static void on_trace(void *arg, const char *line)
{
	struct out *o = arg;

	CHECK(!strstr(line, KEY) && !strstr(line, "SECRET"));
	CHECK(!strchr(line, '\n'));
	plan_buf_puts(&o->trace, line);
	plan_buf_puts(&o->trace, "\n");
}

static void on_progress(void *arg, size_t done, size_t total)
{
	struct out *o = arg;

	CHECK(done <= total);
	o->progress = done;
}

/* A fresh models directory; cards is "name=json" strings, NULL-ended. */
static char *models_dir(const char *const *cards)
{
	char *dir = NULL;

	CHECK(asprintf(&dir, "%s/models%d", base, ++dir_seq) > 0);
	CHECK(mkdir(dir, 0700) == 0);
	for (; *cards; cards++) {
		const char *eq = strchr(*cards, '=');
		char name[64];

		snprintf(name, sizeof(name), "%.*s", (int)(eq - *cards), *cards);
		write_card(dir, name, eq + 1);
	}
	return dir;
}

/* A card for the stand-in; extra adds fields (timeout_s, retries or
 * price_in given there replace the defaults). */
static char *http_card(const char *remote, const char *extra)
{
	const char *ex = extra ? extra : "";
	char *s = NULL;

	CHECK(asprintf(&s, "{\"endpoint\": \"http://127.0.0.1:%d/v1\","
		       " \"model\": \"%s\", \"api_key_env\": \"STANDIN_KEY\""
		       "%s%s%s%s%s%s", standin_port(srv), remote,
		       strstr(ex, "price_in") ? "" : ", \"price_in\": 2",
		       strstr(ex, "price_out") ? "" : ", \"price_out\": 4",
		       strstr(ex, "timeout_s") ? "" : ", \"timeout_s\": 2",
		       strstr(ex, "retries") ? "" : ", \"retries\": 2",
		       *ex ? ", " : "", ex) > 0);
	s = realloc(s, strlen(s) + 2);
	strcat(s, "}");
	return s;
}

struct runres {
	int rc;
	char *answer, *error, *trace;
	double cost, secs;
	size_t progress;
};

static struct runres run(const char *dir, struct plan_stats *stats,
			 const char *task_json, const atomic_int *cancel)
{
	struct plan_models ms = { 0 };
	struct plan_task *t = NULL;
	struct plan_candidates c;
	struct plan_exec_result res;
	struct plan_score_opts so = { .explore = PLAN_EXPLORE_MEAN };
	struct out o;
	struct plan_exec_opts eo = { .stats = stats, .route = run_route,
				     .cancel = cancel,
				     .trace = on_trace,
				     .progress = on_progress, .arg = &o };
	struct plan_rng rng;
	struct runres r = { 0 };
	char *err = NULL;
	double t0;

	plan_buf_init(&o.trace);
	o.progress = 0;
	plan_rng_seed(&rng, 7);
	CHECK_RC(plan_models_load(dir, NULL, &ms, &err), 0);
	CHECK(!err);
	CHECK_RC(plan_task_parse(task_json, strlen(task_json), &t, &err), 0);
	CHECK_RC(plan_candidates_build(t, &ms, stats, &so, &rng, &c, &err), 0);
	t0 = clock_mono_s();
	r.rc = plan_exec_run(t, &ms, &c, &c.v[c.best], &eo, &res);
	r.secs = clock_mono_s() - t0;
	r.answer = res.answer ? strdup(res.answer) : NULL;
	r.error = res.error ? strdup(res.error) : NULL;
	r.cost = res.cost_usd;
	r.trace = plan_buf_steal(&o.trace);
	r.progress = o.progress;
	plan_exec_result_release(&res);
	plan_candidates_release(&c);
	plan_task_free(t);
	plan_models_release(&ms);
	return r;
}

static void runres_free(struct runres *r)
{
	free(r->answer);
	free(r->error);
	free(r->trace);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void test_answers_and_costs(struct plan_stats *st)
{
	char *echo = http_card("echo", NULL), *upper = http_card("upper",
		"\"skills\": [\"shout\"]");
	const char *cards[] = { NULL, NULL, NULL };
	struct plan_estimate e;
	struct runres r;
	char *dir, *c1, *c2;

	CHECK(asprintf(&c1, "echo=%s", echo) > 0);
	CHECK(asprintf(&c2, "upper=%s", upper) > 0);
	cards[0] = c1;
	cards[1] = c2;
	dir = models_dir(cards);
	r = run(dir, st, "{\"prompt\": \"hello\", \"task_type\": \"greet\","
		" \"model\": \"echo\"}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK(!strcmp(r.answer, "echo: hello"));
	/* Reported usage: 10 in at $2/M, 5 out at $4/M. */
	CHECK(fabs(r.cost - (10 * 2 + 5 * 4) / 1e6) < 1e-15);
	CHECK(strstr(r.trace, "\"usage\":\"reported\""));
	CHECK(strstr(r.trace, "\"outcome\":\"ok\"") && r.progress == 1);
	/* Unjudged: cost and latency learned, quality not. */
	CHECK_RC(plan_stats_estimate(st, "echo", "greet", &e), 0);
	CHECK(e.n == 0 && e.cost > 0 && e.latency >= 0);
	runres_free(&r);
	/* No usage in the reply: bytes / 4 ("hello" -> 2, 5 bytes -> 2). */
	r = run(dir, st, "{\"prompt\": \"hello\", \"model\": \"upper\"}",
		NULL);
	CHECK_RC(r.rc, 0);
	CHECK(!strcmp(r.answer, "HELLO"));
	CHECK(strstr(r.trace, "\"usage\":\"estimated\""));
	CHECK(fabs(r.cost - (2 * 2 + 2 * 4) / 1e6) < 1e-15);
	runres_free(&r);
	free(echo);
	free(upper);
	free(c1);
	free(c2);
	free(dir);
}

static void test_failures(struct plan_stats *st)
{
	char *cards_s[6];
	const char *cards[7] = { NULL };
	struct plan_estimate e;
	struct runres r;
	char *dir;

	cards_s[0] = http_card("busy", "\"skills\": [\"busy\"]");
	cards_s[1] = http_card("broken", "\"retries\": 1");
	cards_s[2] = http_card("hang", "\"timeout_s\": 0.5, \"retries\": 0");
	cards_s[3] = http_card("garbage", NULL);
	cards_s[4] = http_card("fixed-fine", "\"price_in\": 50");
	for (int i = 0; i < 5; i++) {
		const char *names[] = { "busy", "broken", "hang", "garbage",
					"fine" };

		CHECK(asprintf((char **)&cards[i], "%s=%s", names[i],
			       cards_s[i]) > 0);
		free(cards_s[i]);
	}
	dir = models_dir(cards);
	/* 429 twice, then an answer: two retries in the trace. */
	r = run(dir, st, "{\"prompt\": \"x\", \"model\": \"busy\"}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK(!strcmp(r.answer, "busy but fine"));
	CHECK(count(r.trace, "\"outcome\":\"retry\"") == 2);
	CHECK(count(r.trace, "\"http_status\":429") == 2);
	runres_free(&r);
	/*
	 * Each failing endpoint in turn is believed best (taught so), fails,
	 * and the step falls back to the next model; "fine" answers.
	 */
	for (int i = 0; i < 3; i++) {
		const char *bad = i == 0 ? "broken" : i == 1 ? "hang" :
				  "garbage";
		const char *want = i == 0 ? "\"http_status\":500" :
				   i == 1 ? "Timeout" : "invalid reply";
		char task[128];

		for (int k = 0; k < 30; k++) {
			CHECK_RC(plan_stats_record(st, bad, "fb", 1, -1, -1), 0);
			CHECK_RC(plan_stats_record(st, "fine", "fb", 0.5, -1,
						   -1), 0);
		}
		snprintf(task, sizeof(task), "{\"prompt\": \"x\", \"task_type\":"
			 " \"fb\", \"strategies\": [\"single\"]}");
		r = run(dir, st, task, NULL);
		CHECK_RC(r.rc, 0);
		CHECK(!strcmp(r.answer, "fine"));
		CHECK(strstr(r.trace, want));
		CHECK(strstr(r.trace, "\"outcome\":\"failed\""));
		if (i == 0) /* retried once: two 500s */
			CHECK(count(r.trace, "\"http_status\":500") == 2);
		if (i == 1) /* a hang costs one timeout, not forever */
			CHECK(r.secs < 3);
		if (i == 2) /* garbage is not retried */
			CHECK(count(r.trace, "\"model\":\"garbage\"") == 1);
		runres_free(&r);
		/* The failure taught the planner. */
		CHECK_RC(plan_stats_estimate(st, bad, "fb", &e), 0);
		CHECK(e.n == 31 && e.alpha < 31 + 2);
	}
	for (int i = 0; i < 5; i++)
		free((char *)cards[i]);
	free(dir);
}

static void test_checks_cascade_vote(struct plan_stats *st)
{
	char *w = http_card("fixed-41", "\"price_in\": 0.1, \"price_out\": 0.1");
	char *rt = http_card("fixed-42", "\"price_in\": 9, \"price_out\": 9");
	char *b = http_card("fixed-B", "\"price_in\": 0.2, \"price_out\": 0.2");
	char *a1, *a2, *a3, *a4;
	const char *cards[5];
	struct runres r;
	char *dir;

	CHECK(asprintf(&a1, "wrong=%s", w) > 0);
	CHECK(asprintf(&a2, "right=%s", rt) > 0);
	CHECK(asprintf(&a3, "bee=%s", b) > 0);
	CHECK(asprintf(&a4, "bee2=%s", b) > 0);
	cards[0] = a1;
	cards[1] = a2;
	cards[2] = a3;
	cards[3] = a4;
	cards[4] = NULL;
	dir = models_dir(cards);
	/* Cascade: the cheap answer is rejected, the dear one accepted. */
	r = run(dir, st, "{\"prompt\": \"6*7?\", \"task_type\": \"arith\","
		" \"strategies\": [\"cascade\"], \"check\": {\"exact\": \"42\"}}",
		NULL);
	CHECK_RC(r.rc, 0);
	CHECK(!strcmp(r.answer, "42"));
	CHECK(strstr(r.trace, "\"model\":\"wrong\""));
	/* The verdict that sent the step on, in a line of its own. */
	CHECK_MSG(strstr(r.trace, "{\"step\":\"s1\",\"model\":\"wrong\","
			  "\"kind\":\"check\",\"outcome\":\"rejected\","
			  "\"detail\":\"answer differs from the expected "
			  "text\"}"), "%s", r.trace);
	runres_free(&r);
	/* Judged answers teach quality. */
	{
		struct plan_estimate e;

		CHECK_RC(plan_stats_estimate(st, "right", "arith", &e), 0);
		CHECK(e.n == 1 && e.quality > 0.5);
		CHECK_RC(plan_stats_estimate(st, "wrong", "arith", &e), 0);
		CHECK(e.n == 1 && e.quality < 0.5);
	}
	/* A vote: two of three say B (three models, so one vote). */
	{
		const char *three[] = { a1, a3, a4, NULL };
		char *vdir = models_dir(three);

		r = run(vdir, st, "{\"prompt\": \"A or B?\", \"task_type\":"
			" \"ab\", \"strategies\": [\"vote\"]}", NULL);
		CHECK_RC(r.rc, 0);
		CHECK(!strcmp(r.answer, "B"));
		CHECK(count(r.trace, "\"vote_slot\"") == 3);
		runres_free(&r);
		free(vdir);
	}
	/* agree: the two cheapest (wrong: 41, bee: B) disagree, so the dear
	 * model answers (without bee2: with three cheap models two of them
	 * agreeing would stand, test_agree3). */
	free(dir);
	cards[3] = NULL;
	dir = models_dir(cards);
	r = run(dir, st, "{\"prompt\": \"6*7?\", \"task_type\": \"ag\","
		" \"strategies\": [\"agree\"]}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "42"), "%s", r.trace);
	CHECK(count(r.trace, "\"vote_slot\"") == 2);
	CHECK(strstr(r.trace, "\"model\":\"right\""));
	runres_free(&r);
	/* The majority's answer (B) fails the checker, a member's passes:
	 * that one, already paid for, is the step's. */
	{
		const char *three[] = { a2, a3, a4, NULL };
		char *vdir = models_dir(three);

		r = run(vdir, st, "{\"prompt\": \"6*7?\", \"task_type\":"
			" \"v42\", \"strategies\": [\"vote\"], \"check\": "
			"{\"exact\": \"42\"}}", NULL);
		CHECK_RC(r.rc, 0);
		CHECK_MSG(r.answer && !strcmp(r.answer, "42"), "%s", r.trace);
		CHECK(count(r.trace, "\"vote_slot\"") == 3);
		runres_free(&r);
		free(vdir);
	}
	/* A checker that cannot run says why, stops the step after one
	 * answer and blames no model. */
	r = run(dir, st, "{\"prompt\": \"6*7?\", \"task_type\": \"broken\","
		" \"strategies\": [\"single\"], \"check\": {\"command\": "
		"[\"/nonexistent/checker\"]}}", NULL);
	CHECK(r.rc < 0 && r.error &&
	      strstr(r.error, "the checker could not run"));
	CHECK_MSG(strstr(r.trace, "\"kind\":\"check\",\"outcome\":\"error\","
			  "\"detail\":\"the checker could not run"), "%s",
		  r.trace);
	CHECK_MSG(count(r.trace, "\"attempt\"") == 1, "%s", r.trace);
	runres_free(&r);
	{
		struct plan_estimate e;

		for (int i = 0; i < 3; i++) {
			static const char *const nm[] = { "wrong", "right",
							  "bee" };

			CHECK_RC(plan_stats_estimate(st, nm[i], "broken", &e),
				 0);
			CHECK(e.n == 0);
		}
	}
	/* Nobody passes the checker: a clear failure. */
	r = run(dir, st, "{\"prompt\": \"?\", \"task_type\": \"none\","
		" \"check\": {\"regex\": \"^zzz$\"}}", NULL);
	CHECK(r.rc < 0 && r.error && strstr(r.error, "regex did not match"));
	runres_free(&r);
	free(w);
	free(rt);
	free(b);
	free(a1);
	free(a2);
	free(a3);
	free(a4);
	free(dir);
}

/* 6*7 by cascade only, with "confidence": {"exact": "42"} and extra. */
static struct runres conf_run(const char *dir, struct plan_stats *st,
			      const char *type, const char *extra)
{
	char task[256];

	snprintf(task, sizeof(task), "{\"prompt\": \"6*7?\", \"task_type\": "
		 "\"%s\", \"strategies\": [\"cascade\"], %s\"confidence\": "
		 "{\"exact\": \"42\"}}", type, extra);
	return run(dir, st, task, NULL);
}

/*
 * confidence: it judges only a cascade's cheap answer; the dear answer
 * stands even where it would fail it, and the step never fails on it.
 */
static void test_confidence(struct plan_stats *st)
{
	char *lo = http_card("fixed-41", "\"price_in\": 0.1, \"price_out\": 0.1");
	char *lo2 = http_card("fixed-42", "\"price_in\": 0.1, \"price_out\": 0.1");
	char *hi = http_card("fixed-43", "\"price_in\": 9, \"price_out\": 9");
	const char *cards[3] = { NULL };
	struct plan_estimate e;
	struct runres r;
	char *dir;

	CHECK(asprintf((char **)&cards[0], "cheap=%s", lo) > 0);
	CHECK(asprintf((char **)&cards[1], "dear=%s", hi) > 0);
	dir = models_dir(cards);
	r = conf_run(dir, st, "conf", "");
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "43"), "%s", r.trace);
	CHECK(strstr(r.trace, "\"model\":\"cheap\""));
	CHECK(strstr(r.trace, "\"model\":\"dear\""));
	runres_free(&r);
	/* Its verdict on the cheap answer is that answer's outcome; the dear
	 * answer was not judged. */
	CHECK_RC(plan_stats_estimate(st, "cheap", "conf", &e), 0);
	CHECK(e.n == 1 && e.q_sum == 0);
	CHECK_RC(plan_stats_estimate(st, "dear", "conf", &e), 0);
	CHECK(e.n == 0);
	/* With a check too: the cheap answer passes the check but not the
	 * confidence checker, the dear one passes the check and stands. */
	r = conf_run(dir, st, "conf2", "\"check\": {\"regex\": \"^4\"}, ");
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "43"), "%s", r.trace);
	runres_free(&r);
	CHECK_RC(plan_stats_estimate(st, "cheap", "conf2", &e), 0);
	CHECK(e.n == 1 && e.q_sum == 1);
	free(dir);
	free((char *)cards[0]);
	/* A confident cheap answer stands: the dear model is never called. */
	CHECK(asprintf((char **)&cards[0], "cheap=%s", lo2) > 0);
	dir = models_dir(cards);
	r = conf_run(dir, st, "conf3", "");
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "42"), "%s", r.trace);
	CHECK(!strstr(r.trace, "\"model\":\"dear\""));
	runres_free(&r);
	free(dir);
	free((char *)cards[0]);
	free((char *)cards[1]);
	free(lo);
	free(lo2);
	free(hi);
}

/* What runs taught under key for type: n outcomes of sum q_sum. */
static void learned(struct plan_stats *st, const char *key, const char *type,
		    double n, double q_sum)
{
	struct plan_estimate e;

	CHECK_RC(plan_stats_estimate(st, key, type, &e), 0);
	CHECK_MSG(e.n == n && e.q_sum == q_sum, "%s: %g %g", key, e.n,
		  e.q_sum);
}

/* agree: two cheap models that agree need no dear call. */
/*
 * A models folder of three stand-in models that answer what they are
 * given: dear (42, at 9 per million tokens), cheap1 (a1, at 0.2) and
 * cheap2 (a2, at 0.3).
 */
static char *pair_and_dear(const char *a1, const char *a2)
{
	static const char *const name[3] = { "dear", "cheap1", "cheap2" };
	static const char *const price[3] = { "9", "0.2", "0.3" };
	const char *answer[3] = { "42", a1, a2 };
	const char *cards[4] = { NULL };
	char *dir;

	for (int i = 0; i < 3; i++) {
		char remote[128], extra[64], *card;

		snprintf(remote, sizeof(remote), "fixed-%s", answer[i]);
		snprintf(extra, sizeof(extra), "\"price_in\": %s, "
			 "\"price_out\": %s", price[i], price[i]);
		card = http_card(remote, extra);
		CHECK(asprintf((char **)&cards[i], "%s=%s", name[i], card) > 0);
		free(card);
	}
	dir = models_dir(cards);
	for (int i = 0; i < 3; i++)
		free((char *)cards[i]);
	return dir;
}

static void test_agree(struct plan_stats *st)
{
	char *dir = pair_and_dear("  the   b ", "The B");
	struct runres r;

	r = run(dir, st, "{\"prompt\": \"A or B?\", \"task_type\": \"ag2\","
		" \"strategies\": [\"agree\"]}", NULL);
	CHECK_RC(r.rc, 0);
	/* Blanks (at either end, or runs of them) and case aside the same
	 * answer: the first member's stands. */
	CHECK_MSG(r.answer && !strcmp(r.answer, "  the   b "), "%s", r.trace);
	CHECK(count(r.trace, "\"vote_slot\"") == 2);
	CHECK(!strstr(r.trace, "\"model\":\"dear\""));
	runres_free(&r);
	/* The two agree, the checker rejects their answer: dear is called,
	 * and the run teaches that the pair agreed but did not stand. */
	r = run(dir, st, "{\"prompt\": \"A or B?\", \"task_type\": \"ag2c\","
		" \"strategies\": [\"agree\"], \"check\": {\"exact\": \"42\"}}",
		NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "42"), "%s", r.trace);
	runres_free(&r);
	learned(st, "agree(cheap1,cheap2)#pair", "ag2c", 1, 1);
	learned(st, "agree(cheap1,cheap2)#stood", "ag2c", 1, 0);
	free(dir);
}

/*
 * Runs a task of one step over dir's models with the given strategy and
 * key (NULL: none) and checks its answer is want (or, want2 non-NULL,
 * either) and that its trace tells the tally (text in a line of kind
 * tally), never an answer; returns how many vote members it called.
 */
static int keyed(const char *dir, struct plan_stats *st, const char *type,
		 const char *strategy, const char *key, const char *want,
		 const char *want2, const char *tally)
{
	struct runres r;
	char *task;
	int slots;

	CHECK(asprintf(&task, "{\"prompt\": \"A to D?\", \"task_type\":"
		       " \"%s\", \"strategies\": [\"%s\"]%s%s%s}", type,
		       strategy, key ? ", \"key\": \"" : "", key ? key : "",
		       key ? "\"" : "") > 0);
	r = run(dir, st, task, NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && (!strcmp(r.answer, want) ||
			       (want2 && !strcmp(r.answer, want2))),
		  "%s: %s", task, r.trace);
	CHECK_MSG(strstr(r.trace, tally), "%s: %s", tally, r.trace);
	CHECK(!strstr(r.trace, "answer is") && !strstr(r.trace, "pick"));
	slots = (int)count(r.trace, "\"vote_slot\"");
	runres_free(&r);
	free(task);
	return slots;
}

/*
 * A task's key: the cheap models answer in sentences that differ but
 * name the same choice, which agrees by the key and not whole; an answer
 * without a key agrees with none.
 */
static void test_agree_key(struct plan_stats *st)
{
	static const char b1[] = "The answer is B.", b2[] = "I pick (b), surely";
	char *dir = pair_and_dear(b1, b2);
	/* \(?([A-Da-d])\)?[.,] as a JSON string: the letter before . or , */
	static const char key[] = "\\\\(?([A-Da-d])\\\\)?[.,]";

	/* Whole, the answers differ: the dear model is called.  By the key
	 * they agree: the first member's answer stands, whole, without the
	 * dear call (two members' calls only).  A key that neither answer
	 * holds: no agreement, the dear call. */
	CHECK(keyed(dir, st, "agk", "agree", NULL, "42", NULL,
		    "\"kind\":\"tally\",\"outcome\":\"disagreed\",\"detail\":"
		    "\"1 of 2 called give one answer (2 answered)\"") == 2);
	CHECK(keyed(dir, st, "agk2", "agree", key, b1, NULL,
		    "\"outcome\":\"agreed\",\"detail\":\"2 of 2 called give one "
		    "answer by the key (2 answered, 0 without a key)\"") == 2);
	learned(st, "agree(cheap1,cheap2)#pair", "agk2", 1, 1);
	CHECK(keyed(dir, st, "agk3", "agree", "#### (.*)", "42", NULL,
		    "\"outcome\":\"disagreed\",\"detail\":\"1 of 2 called give "
		    "one answer by the key (2 answered, 2 without a key)\"") == 2);
	learned(st, "agree(cheap1,cheap2)#pair", "agk3", 1, 0);
	/* A vote of the three: whole, no majority, the first member's
	 * (dear ranks first on these statistics); with a key that no answer
	 * holds, the first member's again (three answers paid for are not
	 * "none answered"); by the key, two of three name b. */
	CHECK(keyed(dir, st, "vk", "vote", NULL, "42", NULL,
		    "\"outcome\":\"no majority\"") == 3);
	CHECK(keyed(dir, st, "vk", "vote", "#### (.*)", "42", NULL,
		    "\"outcome\":\"no majority\",\"detail\":\"1 of 3 called give "
		    "one answer by the key (3 answered, 3 without a key)\"") == 3);
	CHECK(keyed(dir, st, "vk", "vote", key, b1, b2,
		    "\"outcome\":\"majority\",\"detail\":\"2 of 3") == 3);
	free(dir);
}

/*
 * agree(a, b, c; 2 -> dear): two cheap models in parallel, the third when
 * they disagree; two of them saying the same (blanks and case aside)
 * stand without the dear call, three different answers call it.
 */
static void test_agree3(struct plan_stats *st)
{
	char *dear = http_card("fixed-42", "\"price_in\": 9, \"price_out\": 9");
	char *b = http_card("fixed-B", "\"price_in\": 0.2, \"price_out\": 0.2");
	char *c = http_card("fixed-C", "\"price_in\": 0.3, \"price_out\": 0.3");
	char *b2 = http_card("fixed- b", "\"price_in\": 0.4, \"price_out\": 0.4");
	char *d = http_card("fixed-D", "\"price_in\": 0.4, \"price_out\": 0.4");
	char *b3 = http_card("fixed- b", "\"price_in\": 0.3, \"price_out\": 0.3");
	const char *cards[5] = { NULL };
	struct runres r;
	char *dir;

	/* Learned: the cheap ones right on 65 %, dear on 85 %; agreement
	 * of two of three is then the best expected quality (0.958). */
	for (int i = 0; i < 200; i++) {
		plan_stats_record(st, "cheap1", "ag3", i % 20 < 13, -1, 1);
		plan_stats_record(st, "cheap2", "ag3", i % 20 < 13, -1, 1);
		plan_stats_record(st, "cheap3", "ag3", i % 20 < 13, -1, 1);
		plan_stats_record(st, "dear", "ag3", i % 20 < 17, -1, 1);
	}
	CHECK(asprintf((char **)&cards[0], "dear=%s", dear) > 0);
	CHECK(asprintf((char **)&cards[1], "cheap1=%s", b) > 0);
	CHECK(asprintf((char **)&cards[2], "cheap2=%s", c) > 0);
	CHECK(asprintf((char **)&cards[3], "cheap3=%s", b2) > 0);
	dir = models_dir(cards);
	r = run(dir, st, "{\"prompt\": \"A, B, C or D?\", \"task_type\": "
		"\"ag3\", \"strategies\": [\"agree\"]}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "B"), "%s", r.trace);
	CHECK(count(r.trace, "\"vote_slot\"") == 3);
	CHECK(!strstr(r.trace, "\"model\":\"dear\""));
	runres_free(&r);
	free(dir);
	free((char *)cards[3]);
	/* B, C, D: no two agree, so dear answers. */
	CHECK(asprintf((char **)&cards[3], "cheap3=%s", d) > 0);
	dir = models_dir(cards);
	r = run(dir, st, "{\"prompt\": \"A, B, C or D?\", \"task_type\": "
		"\"ag3\", \"strategies\": [\"agree\"]}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "42"), "%s", r.trace);
	CHECK(count(r.trace, "\"vote_slot\"") == 3);
	CHECK(strstr(r.trace, "\"model\":\"dear\""));
	runres_free(&r);
	free(dir);
	free((char *)cards[2]);
	/* B, b: the first two agree, so the third is never called. */
	CHECK(asprintf((char **)&cards[2], "cheap2=%s", b3) > 0);
	dir = models_dir(cards);
	r = run(dir, st, "{\"prompt\": \"A, B, C or D?\", \"task_type\": "
		"\"ag3\", \"strategies\": [\"agree\"]}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "B"), "%s", r.trace);
	CHECK(count(r.trace, "\"vote_slot\"") == 2);
	CHECK(!strstr(r.trace, "\"model\":\"cheap3\""));
	CHECK(!strstr(r.trace, "\"model\":\"dear\""));
	runres_free(&r);
	/* What the three runs taught of the members, for the price: the
	 * first two agreed once (a fact of theirs alone), the members'
	 * answer stood twice. */
	learned(st, "agree(cheap1,cheap2)#pair", "ag3", 3, 1);
	learned(st, "agree2(cheap1,cheap2,cheap3)#stood", "ag3", 3, 2);
	for (int i = 0; i < 4; i++)
		free((char *)cards[i]);
	free(dear);
	free(b);
	free(c);
	free(b2);
	free(b3);
	free(d);
	free(dir);
}

/*
 * The three-stage cascade agree(c4, c5, mid; 2 -> dear) really runs so:
 * the cheap pair in parallel, mid only when the two disagree, dear only
 * when mid agrees with neither (the learned qualities of
 * test-plan-cand.c's test_deep_cascade: only this cascade reaches 0.975).
 * Each run has a task type of its own, so that what one run teaches of
 * the members' agreement (plan_agree_key()) does not price the next.
 */
static void test_deep_cascade(struct plan_stats *st)
{
	static const char *const name[] = { "c1", "c2", "c3", "c4", "c5",
					    "mid", "dear" };
	static const char *const price[] = { "0.1", "0.2", "0.3", "0.4",
					     "0.5", "2", "20" };
	static const int right[] = { 30, 31, 32, 33, 34, 40, 45 };
	/* Per run: c4's, c5's and mid's answers; the others never agree. */
	static const char *const ans[][3] = {
		{ "B", "C", " b" }, { "B", "C", "D" }, { "B", " b", "D" },
	};
	static const char *const other[] = { "V", "W", "X" };
	for (int run_i = 0; run_i < 3; run_i++) {
		const char *cards[8] = { NULL };
		struct runres r;
		char *dir, ex[96], remote[32], type[16], task[160];

		snprintf(type, sizeof(type), "deep3-%d", run_i);
		snprintf(task, sizeof(task), "{\"prompt\": \"A, B, C or D?\", "
			 "\"task_type\": \"%s\", \"min_quality\": 0.975, "
			 "\"strategies\": [\"agree\"]}", type);
		for (int i = 0; i < 500; i++)
			for (int m = 0; m < 7; m++)
				plan_stats_record(st, name[m], type,
						  i % 50 < right[m], -1, 1);

		for (int m = 0; m < 7; m++) {
			char *card;

			snprintf(remote, sizeof(remote), "fixed-%s",
				 m < 3 ? other[m] : m < 6 ? ans[run_i][m - 3]
							  : "42");
			snprintf(ex, sizeof(ex), "\"price_in\": %s, "
				 "\"price_out\": %s", price[m], price[m]);
			card = http_card(remote, ex);
			CHECK(asprintf((char **)&cards[m], "%s=%s", name[m],
				       card) > 0);
			free(card);
		}
		dir = models_dir(cards);
		r = run(dir, st, task, NULL);
		CHECK_RC(r.rc, 0);
		CHECK(!strstr(r.trace, "\"model\":\"c1\""));
		CHECK(strstr(r.trace, "\"model\":\"c4\"") &&
		      strstr(r.trace, "\"model\":\"c5\""));
		switch (run_i) {
		case 0:   /* B, C: mid says b, which stands. */
			CHECK_MSG(r.answer && !strcmp(r.answer, "B"), "%s",
				  r.trace);
			CHECK(count(r.trace, "\"vote_slot\"") == 3);
			CHECK(strstr(r.trace, "\"model\":\"mid\""));
			CHECK(!strstr(r.trace, "\"model\":\"dear\""));
			break;
		case 1:   /* B, C, D: mid agrees with neither: dear. */
			CHECK_MSG(r.answer && !strcmp(r.answer, "42"), "%s",
				  r.trace);
			CHECK(count(r.trace, "\"vote_slot\"") == 3);
			CHECK(strstr(r.trace, "\"model\":\"dear\""));
			break;
		default:  /* B, b: the pair agrees, mid is never called. */
			CHECK_MSG(r.answer && !strcmp(r.answer, "B"), "%s",
				  r.trace);
			CHECK(count(r.trace, "\"vote_slot\"") == 2);
			CHECK(!strstr(r.trace, "\"model\":\"mid\""));
			CHECK(!strstr(r.trace, "\"model\":\"dear\""));
			break;
		}
		runres_free(&r);
		for (int m = 0; m < 7; m++)
			free((char *)cards[m]);
		free(dir);
	}
}

static void test_commands_and_dag(struct plan_stats *st)
{
	char *echo = http_card("echo", "\"skills\": [\"join\"]"), *e1;
	const char *cards[] = {
		"caps={\"command\": [\"tr\", \"a-z\", \"A-Z\"],"
		" \"skills\": [\"caps\"]}",
		"rev={\"command\": [\"rev\"], \"skills\": [\"rev\"]}",
		"fails={\"command\": [\"sh\", \"-c\", \"cat >/dev/null; exit 3\"],"
		" \"skills\": [\"bad\"]}",
		"slow={\"command\": [\"sleep\", \"10\"], \"timeout_s\": 0.3,"
		" \"retries\": 0, \"skills\": [\"slow\"]}",
		"missing={\"command\": [\"/nonexistent/llm\"],"
		" \"skills\": [\"missing\"]}",
		NULL, NULL,
	};
	struct runres r;
	char *dir;

	CHECK(asprintf(&e1, "echo=%s", echo) > 0);
	cards[5] = e1;
	dir = models_dir(cards);
	/* caps and rev run in parallel; echo joins them. */
	r = run(dir, st, "{\"steps\": ["
		"{\"id\": \"a\", \"prompt\": \"abc\", \"task_type\": \"caps\"},"
		"{\"id\": \"b\", \"prompt\": \"xyz\", \"task_type\": \"rev\"},"
		"{\"id\": \"c\", \"prompt\": \"[{{a}}|{{b}}]\","
		" \"task_type\": \"join\", \"deps\": [\"a\", \"b\"]}]}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK(!strcmp(r.answer, "echo: [ABC|zyx\n]") ||
	      !strcmp(r.answer, "echo: [ABC|zyx]"));
	CHECK(r.progress == 3);
	CHECK(count(r.trace, "\"kind\":\"command\"") == 2);
	runres_free(&r);
	r = run(dir, st, "{\"prompt\": \"x\", \"task_type\": \"bad\"}", NULL);
	CHECK(r.rc < 0 && strstr(r.error, "exit status 3"));
	runres_free(&r);
	r = run(dir, st, "{\"prompt\": \"x\", \"task_type\": \"slow\"}", NULL);
	CHECK(r.rc < 0 && strstr(r.error, "timed out") && r.secs < 3);
	runres_free(&r);
	r = run(dir, st, "{\"prompt\": \"x\", \"task_type\": \"missing\"}",
		NULL);
	CHECK(r.rc < 0 && r.error);
	runres_free(&r);
	/* A failed dependency fails the steps after it, with the reason. */
	r = run(dir, st, "{\"steps\": ["
		"{\"id\": \"a\", \"prompt\": \"x\", \"task_type\": \"bad\"},"
		"{\"id\": \"c\", \"prompt\": \"{{a}}\", \"task_type\": \"join\","
		" \"deps\": [\"a\"]}]}", NULL);
	CHECK(r.rc < 0 && strstr(r.error, "step a: fails: exit status 3"));
	runres_free(&r);
	free(echo);
	free(e1);
	free(dir);
}

static void *cancel_later(void *arg)
{
	usleep(200000);
	atomic_store((atomic_int *)arg, 1);
	return NULL;
}

static void test_keys_and_cancel(struct plan_stats *st)
{
	char *hang = http_card("hang", "\"timeout_s\": 30");
	char *nokey = NULL, *c1, *c2, *c3, *fast;
	const char *cards[4];
	atomic_int cancel = 0;
	pthread_t th;
	struct runres r;
	char *dir;

	CHECK(asprintf(&nokey, "{\"endpoint\": \"http://127.0.0.1:%d/v1\","
		       " \"model\": \"echo\", \"api_key_env\": "
		       "\"STANDIN_UNSET_KEY\", \"skills\": [\"k\"]}",
		       standin_port(srv)) > 0);
	CHECK(asprintf(&c1, "hang=%s", hang) > 0);
	CHECK(asprintf(&c2, "nokey=%s", nokey) > 0);
	fast = http_card("hang", "\"latency_s\": 0.01, \"tokens_per_s\": 1e6");
	CHECK(asprintf(&c3, "fasthang=%s", fast) > 0);
	cards[0] = c1;
	cards[1] = c2;
	cards[2] = c3;
	cards[3] = NULL;
	dir = models_dir(cards);
	r = run(dir, st, "{\"prompt\": \"x\", \"model\": \"nokey\"}", NULL);
	CHECK(r.rc < 0 && strstr(r.error, "no API key in variable "
				 "STANDIN_UNSET_KEY"));
	runres_free(&r);
	/* The latency bound holds at run time too. */
	r = run(dir, st, "{\"prompt\": \"x\", \"model\": \"fasthang\","
		" \"latency_s\": 0.5}", NULL);
	CHECK_RC(r.rc, -ETIMEDOUT);
	CHECK(strstr(r.error, "latency bound of 0.5s exceeded"));
	CHECK(r.secs < 2);
	runres_free(&r);
	/* A hanging endpoint with a long timeout: cancellation is prompt. */
	CHECK(pthread_create(&th, NULL, cancel_later, &cancel) == 0);
	r = run(dir, st, "{\"prompt\": \"x\", \"model\": \"hang\"}", &cancel);
	pthread_join(th, NULL);
	CHECK_RC(r.rc, -ECANCELED);
	CHECK(r.secs < 2);
	runres_free(&r);
	/* A card that embeds a key is refused outright. */
	{
		struct plan_model m;
		char *err = NULL;

		CHECK_RC(plan_model_parse("k", "{\"endpoint\": \"http://x/v1\","
					  " \"api_key\": \"sk-1\"}", NULL, &m,
					  &err), -EINVAL);
		CHECK(err && strstr(err, "must not hold keys"));
		free(err);
	}
	free(hang);
	free(nokey);
	free(fast);
	free(c1);
	free(c2);
	free(c3);
	free(dir);
}

/*
 * Retry-After on 429 and 503: the next attempt waits as long as the server
 * asked (2 s, longer than the 0.25 s backoff), in seconds or as an HTTP
 * date; one that asks for an hour is not waited for: the next model
 * answers.
 */
static void test_retry_after(struct plan_stats *st)
{
	const char *names[] = { "busy-wait", "down-wait", "date-wait",
				"busy-long", "fine" };
	const char *cards[6] = { NULL };
	struct runres r;
	char *dir;

	for (int i = 0; i < 5; i++) {
		/* The first three serve no type of the fallback test. */
		char *c = http_card(i < 4 ? names[i] : "fixed-fine",
				    i < 3 ? "\"price_in\": 0.1, \"skills\": "
					    "[\"wait\"]" :
				    i < 4 ? "\"price_in\": 0.1" :
					    "\"price_in\": 50");

		CHECK(asprintf((char **)&cards[i], "%s=%s", names[i], c) > 0);
		free(c);
	}
	dir = models_dir(cards);
	for (int i = 0; i < 2; i++) {
		char task[128];

		snprintf(task, sizeof(task), "{\"prompt\": \"x\", \"model\": "
			 "\"%s\"}", names[i]);
		r = run(dir, st, task, NULL);
		CHECK_RC(r.rc, 0);
		CHECK(r.answer && !strcmp(r.answer, "waited as asked"));
		CHECK_MSG(strstr(r.trace, "Retry-After 2s"), "%s", r.trace);
		CHECK(count(r.trace, "\"outcome\":\"retry\"") == 1);
		/* A lower bound only: the second request came no sooner. */
		CHECK_MSG(standin_gap_ms(srv, names[i]) >= 1990,
			  "%s: retried after %lld ms", names[i],
			  standin_gap_ms(srv, names[i]));
		runres_free(&r);
	}
	/* Believed best, but asks for an hour: one request, then "fine". */
	for (int k = 0; k < 30; k++) {
		CHECK_RC(plan_stats_record(st, "busy-long", "ra", 1, -1, -1), 0);
		CHECK_RC(plan_stats_record(st, "fine", "ra", 0.5, -1, -1), 0);
	}
	r = run(dir, st, "{\"prompt\": \"x\", \"task_type\": \"ra\","
		" \"strategies\": [\"single\"]}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "fine"), "%s: %s", r.answer,
		  r.trace);
	CHECK_MSG(strstr(r.trace, "Retry-After 3600s: over 30s, next model"),
		  "%s", r.trace);
	CHECK_EQ(standin_count(srv, "busy-long"), 1);
	runres_free(&r);
	/* An HTTP date 3 s ahead, to the second: a wait of 2 s at least. */
	r = run(dir, st, "{\"prompt\": \"x\", \"model\": \"date-wait\"}",
		NULL);
	CHECK_RC(r.rc, 0);
	CHECK(r.answer && !strcmp(r.answer, "waited as asked"));
	CHECK_MSG(strstr(r.trace, "\"detail\":\"http 503, Retry-After "),
		  "%s", r.trace);
	CHECK_MSG(standin_gap_ms(srv, "date-wait") >= 1000,
		  "date-wait: retried after %lld ms",
		  standin_gap_ms(srv, "date-wait"));
	runres_free(&r);
	for (int i = 0; i < 5; i++)
		free((char *)cards[i]);
	free(dir);
}

/* A card with "stream": true gets a streamed reply, put together from its
 * deltas, with the usage of its last chunk and the time to first token. */
static void test_stream(struct plan_stats *st)
{
	char *c = http_card("stream", "\"stream\": true");
	char *bad = http_card("stream", "\"stream\": \"yes\"");
	const char *cards[2] = { NULL };
	struct plan_models ms = { 0 };
	struct runres r;
	char *dir, *err = NULL;

	CHECK(asprintf((char **)&cards[0], "streamer=%s", c) > 0);
	dir = models_dir(cards);
	r = run(dir, st, "{\"prompt\": \"tell \\\"me\\\"\", \"model\": "
		"\"streamer\"}", NULL);
	CHECK_RC(r.rc, 0);
	CHECK_MSG(r.answer && !strcmp(r.answer, "streamed: tell \"me\""),
		  "%s", r.answer ? r.answer : "(none)");
	CHECK_MSG(strstr(r.trace, "\"ttft_s\":"), "%s", r.trace);
	CHECK(strstr(r.trace, "\"usage\":\"reported\""));
	/* 7 in at $2/M, 3 out at $4/M, from the usage chunk. */
	CHECK(fabs(r.cost - (7 * 2 + 3 * 4) / 1e6) < 1e-15);
	runres_free(&r);
	free((char *)cards[0]);
	free(dir);
	CHECK(asprintf((char **)&cards[0], "streamer=%s", bad) > 0);
	dir = models_dir(cards);
	CHECK_RC(plan_models_load(dir, NULL, &ms, &err), 0);
	CHECK_MSG(err && strstr(err, "stream must be true or false"), "%s",
		  err ? err : "(no warning)");
	free(err);
	plan_models_release(&ms);
	free((char *)cards[0]);
	free(dir);
	free(c);
	free(bad);
}

/* Checked answers teach the per-prompt learner as they arrive. */
static void test_route_online(struct plan_stats *st)
{
	char *c = http_card("echo", NULL);
	const char *cards[2] = { NULL };
	size_t np = 0, no = 0;
	struct runres r;
	char *dir;

	CHECK(asprintf((char **)&cards[0], "echo=%s", c) > 0);
	dir = models_dir(cards);
	CHECK_RC(plan_route_open(NULL, &run_route), 0);
	r = run(dir, st, "{\"prompt\": \"hi\", \"model\": \"echo\", "
		"\"check\": {\"exact\": \"echo: hi\"}}", NULL);
	CHECK_RC(r.rc, 0);
	runres_free(&r);
	/* Unjudged: nothing to learn from. */
	r = run(dir, st, "{\"prompt\": \"ho\", \"model\": \"echo\"}", NULL);
	CHECK_RC(r.rc, 0);
	runres_free(&r);
	plan_route_counts(run_route, &np, &no);
	CHECK_EQ(np, 1);
	CHECK_EQ(no, 1);
	plan_route_free(run_route);
	run_route = NULL;
	free((char *)cards[0]);
	free(dir);
	free(c);
}

int main(void)
{
	struct plan_stats *st;
	char cmd[300];

	srv = standin_start(KEY);
	if (!srv)
		SKIP("cannot start the stand-in server on loopback");
	setenv("STANDIN_KEY", KEY, 1);
	unsetenv("STANDIN_UNSET_KEY");
	snprintf(base, sizeof(base), "/tmp/plan-exec-XXXXXX");
	CHECK(mkdtemp(base));
	CHECK_RC(plan_stats_open(NULL, 2, &st), 0);
	test_answers_and_costs(st);
	test_failures(st);
	test_checks_cascade_vote(st);
	test_confidence(st);
	test_agree(st);
	test_agree_key(st);
	test_agree3(st);
	test_deep_cascade(st);
	test_commands_and_dag(st);
	test_keys_and_cancel(st);
	test_retry_after(st);
	test_stream(st);
	test_route_online(st);
	plan_stats_free(st);
	standin_stop(srv);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	CHECK(system(cmd) == 0);
	return check_status();
}
