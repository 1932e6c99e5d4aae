/*
 * plan_feat and plan_route: features of a prompt, per-prompt predictions
 * learned from outcomes (batch and online), and their use by plan_cand.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "tests/check.h"
#include "scheduler/plan_cand.h"
#include "scheduler/plan_feat.h"
#include "scheduler/plan_route.h"

static void test_feat(void)
{
	struct plan_feat a, b, c, wa, wb, wc;
	struct plan_idf idf;

	CHECK_RC(plan_feat_terms("The cat sat on the mat.", &a), 0);
	CHECK_RC(plan_feat_terms("the CAT sat on the mat", &b), 0);
	CHECK_RC(plan_feat_terms("Integrate x squared from 0 to 1", &c), 0);
	CHECK(a.n > 10);
	for (size_t i = 1; i < a.n; i++)
		CHECK(a.idx[i - 1] < a.idx[i] && a.idx[i] < PLAN_FEAT_DIM);
	REQUIRE(plan_idf_init(&idf) == 0);
	plan_idf_add(&idf, &a);
	plan_idf_add(&idf, &c);
	/* A bucket in every document weighs less than one in a single one. */
	CHECK(plan_idf_weight(&idf, a.idx[0]) >= 1.0);
	CHECK_RC(plan_feat_weigh(&idf, &a, &wa), 0);
	CHECK_RC(plan_feat_weigh(&idf, &b, &wb), 0);
	CHECK_RC(plan_feat_weigh(&idf, &c, &wc), 0);
	CHECK(fabs(plan_feat_dot(&wa, &wa) - 1) < 1e-5);
	/* Case and punctuation aside the same text; another text is far. */
	CHECK(plan_feat_dot(&wa, &wb) > 0.95);
	CHECK(plan_feat_dot(&wa, &wc) < 0.2);
	plan_feat_release(&a);
	plan_feat_release(&b);
	plan_feat_release(&c);
	plan_feat_release(&wa);
	plan_feat_release(&wb);
	plan_feat_release(&wc);
	/* Empty and NULL text: no terms, no crash, a zero vector. */
	CHECK_RC(plan_feat_terms("", &a), 0);
	CHECK_EQ(a.n, 0);
	CHECK_RC(plan_feat_terms(NULL, &a), 0);
	CHECK_RC(plan_feat_weigh(&idf, &a, &wa), 0);
	CHECK_EQ(wa.n, 0);
	plan_idf_release(&idf);
	/* Only the first PLAN_FEAT_MAX_BYTES are read: a long prompt's vector
	 * stays small. */
	{
		size_t n = 200000, len = 0;
		char *big = malloc(n + 16);

		REQUIRE(big);
		for (int i = 0; len + 12 < n; i++)
			len += (size_t)sprintf(big + len, "w%d ", i);
		CHECK_RC(plan_feat_terms(big, &a), 0);
		CHECK_MSG(a.n > 1000 && a.n < 3 * PLAN_FEAT_MAX_BYTES, "%zu", a.n);
		plan_feat_release(&a);
		free(big);
	}
}

static const char *const animals[] = { "cat", "kitten", "tabby", "feline" };
static const char *const sums[] = { "integral", "derivative", "matrix",
				    "eigenvalue" };

/* A prompt about pets (kind 0) or about calculus (kind 1). */
static void prompt(char *buf, size_t n, int kind, int i)
{
	if (kind == 0)
		snprintf(buf, n, "Tell me about my %s number %d and its toys.",
			 animals[(i / 2) % 4], i);
	else
		snprintf(buf, n, "Compute the %s of problem %d step by step.",
			 sums[(i / 2) % 4], i);
}

/* Model "pets" is right on pet prompts, "maths" on calculus prompts. */
static void teach(struct plan_route *r, int n, bool online)
{
	char buf[128];

	for (int i = 0; i < n; i++) {
		int kind = i % 2;
		long id;

		prompt(buf, sizeof(buf), kind, i);
		id = plan_route_add(r, buf);
		REQUIRE(id >= 0);
		CHECK_RC(plan_route_observe(r, id, "pets", 0.5, kind == 0,
					    0.001), 0);
		if (!online || i % 3)
			CHECK_RC(plan_route_observe(r, id, "maths", 0.5,
						    kind == 1, 0.01), 0);
	}
}

static void test_route(void)
{
	const char *arms[] = { "pets", "maths", "never-seen" };
	double prior[] = { 0.5, 0.5, 0.7 }, pc[] = { -1, 0.02, 0.3 };
	struct plan_route_pred p[3];
	struct plan_route *r;
	size_t np, no;

	CHECK_RC(plan_route_open(&(struct plan_route_config){ .k = 0 }, &r),
		 -EINVAL);
	/* Online only: one SGD step per outcome, neighbours at once. */
	CHECK_RC(plan_route_open(NULL, &r), 0);
	teach(r, 60, true);
	plan_route_counts(r, &np, &no);
	CHECK_EQ(np, 60);
	CHECK_EQ(no, 60 + 40);
	CHECK_RC(plan_route_predict(r, "Tell me about my tabby cat's toys",
				    arms, 3, prior, pc, p), 0);
	CHECK_MSG(p[0].quality > 0.7 && p[1].quality < 0.3,
		  "pets %.3f maths %.3f", p[0].quality, p[1].quality);
	CHECK(p[0].q_knn > 0.5 && p[0].q_lr > 0.5 && p[0].support > 0);
	/* An arm never observed keeps its prior quality and cost. */
	CHECK(p[2].quality == 0.7 && p[2].cost == 0.3);
	/* Cost: unknown prior, so the neighbours' mean. */
	CHECK(fabs(p[0].cost - 0.001) < 1e-9);
	CHECK_RC(plan_route_predict(r, "Compute the eigenvalue of this one",
				    arms, 3, prior, pc, p), 0);
	CHECK_MSG(p[0].quality < 0.3 && p[1].quality > 0.7,
		  "pets %.3f maths %.3f", p[0].quality, p[1].quality);
	/* Text unlike anything seen: near the prior. */
	CHECK_RC(plan_route_predict(r, "zzqx", arms, 3, prior, pc, p), 0);
	CHECK(fabs(p[0].quality - 0.5) < 0.1);
	CHECK_RC(plan_route_observe(r, 999, "pets", 0.5, 1, 0), -EINVAL);
	CHECK_RC(plan_route_observe(r, 0, "pets", 0.5, NAN, 0), -EINVAL);
	/* A batch fit over the same outcomes agrees. */
	CHECK_RC(plan_route_fit(r), 0);
	CHECK_RC(plan_route_predict(r, "my kitten and my feline friend", arms,
				    3, prior, pc, p), 0);
	CHECK_MSG(p[0].quality > 0.7 && p[1].quality < 0.3,
		  "pets %.3f maths %.3f", p[0].quality, p[1].quality);
	plan_route_free(r);
	/* Bounded: the 4th prompt forgets the first three. */
	{
		struct plan_route_config cfg;
		long ids[4];

		plan_route_config_default(&cfg);
		cfg.max_prompts = 3;
		CHECK_RC(plan_route_open(&cfg, &r), 0);
		for (int i = 0; i < 4; i++) {
			ids[i] = plan_route_add(r, i % 2 ? "cat" : "integral");
			CHECK_EQ(ids[i], i);
		}
		plan_route_counts(r, &np, &no);
		CHECK_EQ(np, 1);
		CHECK_RC(plan_route_observe(r, ids[0], "pets", 0.5, 1, 0),
			 -ESTALE);
		CHECK_RC(plan_route_observe(r, ids[3], "pets", 0.5, 1, 0), 0);
		CHECK_RC(plan_route_observe(r, 4, "pets", 0.5, 1, 0), -EINVAL);
		plan_route_free(r);
	}
}

/* strength: 0 is the prior alone, 0.5 halfway to the prediction. */
static void test_strength(void)
{
	const char *arms[] = { "pets", "maths" };
	double prior[] = { 0.5, 0.5 };
	struct plan_route_pred full[2], half[2], none[2];
	struct plan_route_config cfg;
	struct plan_route *r;
	const char *text = "Tell me about my tabby cat's toys";

	plan_route_config_default(&cfg);
	cfg.strength = 1.5;
	CHECK_RC(plan_route_open(&cfg, &r), -EINVAL);
	for (int k = 0; k < 3; k++) {
		cfg.strength = k == 0 ? 1 : k == 1 ? 0.5 : 0;
		CHECK_RC(plan_route_open(&cfg, &r), 0);
		teach(r, 60, true);
		CHECK_RC(plan_route_predict(r, text, arms, 2, prior, NULL,
					    k == 0 ? full : k == 1 ? half :
					    none), 0);
		plan_route_free(r);
	}
	CHECK_MSG(full[0].quality > 0.7, "%.3f", full[0].quality);
	CHECK_MSG(fabs(half[0].quality - (0.5 + full[0].quality) / 2) < 1e-9,
		  "%.3f %.3f", half[0].quality, full[0].quality);
	CHECK(none[0].quality == 0.5 && none[1].quality == 0.5);
}

/*
 * The matrix factorisation alone (knn_weight 0, mf_weight 1) learns which
 * arm is right on which kind of prompt, from a batch fit and online; its
 * prediction is what plan_route_blend() makes of q_mf.
 */
static void test_mf(void)
{
	const char *arms[] = { "pets", "maths" };
	double prior[] = { 0.5, 0.5 };
	struct plan_route_pred p[2];
	struct plan_route_config cfg;
	struct plan_route *r;

	plan_route_config_default(&cfg);
	cfg.mf_weight = -0.1;
	CHECK_RC(plan_route_open(&cfg, &r), -EINVAL);
	cfg.mf_weight = 1;
	cfg.knn_weight = 0;
	cfg.epochs = 30;
	CHECK_RC(plan_route_open(&cfg, &r), 0);
	teach(r, 200, false);
	CHECK_RC(plan_route_fit(r), 0);
	CHECK_RC(plan_route_predict(r, "Tell me about my tabby cat's toys",
				    arms, 2, prior, NULL, p), 0);
	CHECK_MSG(p[0].q_mf > 0.6 && p[1].q_mf < 0.4, "pets %.3f maths %.3f",
		  p[0].q_mf, p[1].q_mf);
	CHECK(p[0].quality == plan_route_blend(&cfg, 0.5, &p[0]));
	CHECK(fabs(p[0].quality - p[0].q_mf) < 1e-12);
	CHECK_RC(plan_route_predict(r, "Compute the matrix of problem 7",
				    arms, 2, prior, NULL, p), 0);
	CHECK_MSG(p[0].q_mf < 0.4 && p[1].q_mf > 0.6, "pets %.3f maths %.3f",
		  p[0].q_mf, p[1].q_mf);
	plan_route_free(r);
	/* Two routers with the same seed and outcomes predict alike. */
	{
		struct plan_route_pred a[2], b[2];
		struct plan_route *r2;

		CHECK_RC(plan_route_open(&cfg, &r), 0);
		CHECK_RC(plan_route_open(&cfg, &r2), 0);
		teach(r, 40, false);
		teach(r2, 40, false);
		CHECK_RC(plan_route_fit(r), 0);
		CHECK_RC(plan_route_fit(r2), 0);
		CHECK_RC(plan_route_predict(r, "my kitten", arms, 2, prior,
					    NULL, a), 0);
		CHECK_RC(plan_route_predict(r2, "my kitten", arms, 2, prior,
					    NULL, b), 0);
		CHECK(a[0].q_mf == b[0].q_mf && a[1].q_mf == b[1].q_mf);
		plan_route_free(r);
		plan_route_free(r2);
	}
}

/* The journal: a reopened router holds what the last one learned. */
static void test_persist(void)
{
	const char *arms[] = { "pets", "maths" };
	double prior[] = { 0.5, 0.5 };
	struct plan_route_pred p[2];
	struct plan_route_config cfg;
	char dir[] = "/tmp/plan-route-XXXXXX", path[64], cmd[96];
	struct plan_route *r;
	size_t np, no;
	sqlite3 *db;

	REQUIRE(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/stats.db", dir);
	CHECK_RC(plan_route_open_db(NULL, path, &r), 0);
	teach(r, 40, false);
	plan_route_free(r);
	/* A damaged row is skipped, not fatal. */
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "INSERT INTO route_prompt(id, terms) "
			   "VALUES(40, x'0102')", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK_RC(plan_route_open_db(NULL, path, &r), 0);
	plan_route_counts(r, &np, &no);
	CHECK_EQ(np, 40);
	CHECK_EQ(no, 80);
	CHECK_RC(plan_route_predict(r, "Tell me about my tabby cat's toys",
				    arms, 2, prior, NULL, p), 0);
	CHECK_MSG(p[0].quality > 0.7 && p[1].quality < 0.3,
		  "pets %.3f maths %.3f", p[0].quality, p[1].quality);
	/* Ids go on after the stored ones (the damaged one dropped). */
	CHECK_EQ(plan_route_add(r, "one more"), 40);
	plan_route_free(r);
	/* Forgetting (max_prompts) is journalled too. */
	plan_route_config_default(&cfg);
	cfg.max_prompts = 10;
	CHECK_RC(plan_route_open_db(&cfg, path, &r), 0);
	CHECK(plan_route_add(r, "the eleventh") >= 0);
	plan_route_free(r);
	CHECK_RC(plan_route_open_db(&cfg, path, &r), 0);
	plan_route_counts(r, &np, &no);
	CHECK_EQ(np, 1);
	CHECK_EQ(no, 0);
	plan_route_free(r);
	/* A file that is no database: an error, not a crash. */
	snprintf(path, sizeof(path), "%s/junk.db", dir);
	{
		FILE *f = fopen(path, "w");

		CHECK(f && fputs("not sqlite at all, not at all, no", f) >= 0);
		if (f)
			fclose(f);
	}
	CHECK(plan_route_open_db(NULL, path, &r) < 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

static struct plan_models models;

static void add_model(const char *name, const char *card)
{
	char *err = NULL;

	models.v = realloc(models.v, (models.n + 1) * sizeof(*models.v));
	REQUIRE(models.v);
	CHECK_RC(plan_model_parse(name, card, NULL, &models.v[models.n], &err),
		 0);
	models.n++;
}

/* The planner's single choice for a prompt (mean ranking). */
static void choose(struct plan_stats *s, struct plan_route *r,
		   const char *text, char *out, size_t n)
{
	struct plan_score_opts o = { .explore = PLAN_EXPLORE_MEAN,
				     .tie_eps = 0.005, .route = r };
	char json[256];
	struct plan_candidates c;
	struct plan_task *t = NULL;
	struct plan_rng rng;
	char *err = NULL;

	snprintf(json, sizeof(json), "{\"prompt\": \"%s\", \"task_type\": "
		 "\"general\", \"strategies\": [\"single\"]}", text);
	CHECK_RC(plan_task_parse(json, strlen(json), &t, &err), 0);
	REQUIRE(t);
	plan_rng_seed(&rng, 1);
	CHECK_RC(plan_candidates_build(t, &models, s, &o, &rng, &c, &err), 0);
	snprintf(out, n, "%s", c.best >= 0 ?
		 models.v[c.v[c.best].steps[0].models[0]].name : "none");
	plan_candidates_release(&c);
	plan_task_free(t);
}

/* One task type, two models equally good on average: without the prompt
 * the planner picks one model for everything; with it, each prompt goes
 * to the model that answers its kind. */
static void test_cand(void)
{
	struct plan_stats *s;
	struct plan_route *r;
	char got[64];

	add_model("pets", "{\"endpoint\": \"http://127.0.0.1:9/v1\","
		  " \"price_in\": 1, \"price_out\": 1}");
	add_model("maths", "{\"endpoint\": \"http://127.0.0.1:9/v1\","
		  " \"price_in\": 1, \"price_out\": 1}");
	CHECK_RC(plan_stats_open(NULL, 2, &s), 0);
	for (int i = 0; i < 60; i++) {
		CHECK_RC(plan_stats_record(s, "pets", "general", i % 2 == 0,
					   -1, -1), 0);
		CHECK_RC(plan_stats_record(s, "maths", "general", i % 2 == 1,
					   -1, -1), 0);
	}
	choose(s, NULL, "Tell me about my tabby and its toys", got,
	       sizeof(got));
	{
		char other[64];

		choose(s, NULL, "Compute the integral of problem 7", other,
		       sizeof(other));
		CHECK(!strcmp(got, other));
	}
	CHECK_RC(plan_route_open(NULL, &r), 0);
	teach(r, 60, false);
	choose(s, r, "Tell me about my tabby and its toys", got, sizeof(got));
	CHECK_MSG(!strcmp(got, "pets"), "pet prompt went to %s", got);
	choose(s, r, "Compute the integral of problem 7", got, sizeof(got));
	CHECK_MSG(!strcmp(got, "maths"), "calculus prompt went to %s", got);
	plan_route_free(r);
	plan_stats_free(s);
	plan_models_release(&models);
}

int main(void)
{
	test_feat();
	test_route();
	test_strength();
	test_mf();
	test_persist();
	test_cand();
	return check_status();
}
