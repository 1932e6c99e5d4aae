/*
 * llmfs-mining-sim - the economics of joint mining on virtual contracts, with the reward code
 * of the coordinator (scheduler/reward.c, linked, not copied).
 *
 *   llmfs-mining-sim [--providers N] [--designers N] [--months N] [--seeds N] [--seed S]
 *                    [--eps X] [--designer-share PCT] [--price USD] [--p-success P]
 *                    [--revenue-median USD] [--revenue-sigma S] [--sweep] [--svg FILE]
 *
 * The world, month by month (docs/mining.md, "The economics, simulated"):
 *   providers  a cost per device-hour (U[0.25, 0.85] USD: power and wear), hours offered per
 *              month (U[150, 600]) and a quality (U[0.5, 1.5]: improvement per hour).  A
 *              provider leaves for good when its income over the last two months falls below
 *              its cost over them (from month 3, so that first revenues can arrive).
 *   designers  each month each designer starts a job with probability 0.6, on up to 8 active
 *              providers drawn at random, each giving a quarter of its hours.
 *   a job      compute is paid at --price per device-hour (reward_compute_pay(), billing
 *              weight gpu=1); 10 rounds, each improving the validation loss by a relative
 *              amount drawn around the coalition's strength (sqrt of sum of quality x hours),
 *              larger when the job succeeds (probability --p-success).  A round above eps
 *              pays 2000 USD per unit of relative improvement (reward_breakthrough()) split by
 *              exact Shapley values of that coalition value (reward_shapley(),
 *              reward_split_shapley()).  Share units: the compute pay and breakthrough rewards
 *              a provider earned on the job.
 *   revenue    a successful model earns each following month a log-normal amount (median
 *              --revenue-median, sigma --revenue-sigma), split by reward_revenue_split():
 *              --designer-share to the designer, the rest to the providers by units.
 *
 * Output: provider retention by month, the distribution of the providers' net returns (USD),
 * and with --sweep the same for eps, the designer's share and the compute price, each averaged
 * over --seeds worlds.  --svg writes the retention curves of the sweep as an SVG picture.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/ledger.h"
#include "scheduler/reward.h"

#define MAXP 256
#define MAXD 128
#define MAXJ 4096
#define MAXM 60

struct params {
	int providers, designers, months, seeds;
	uint64_t seed;
	double eps, designer_share, price, p_success, revenue_median, revenue_sigma;
};

struct provider {
	double cost, hours, quality;
	int active, left_month;
	int64_t income[MAXM], spent[MAXM]; /* micro-USD by month */
};

struct job {
	int designer, success, month;
	int n, who[8];
	int64_t units[8];
};

struct world {
	const struct params *p;
	uint64_t rng;
	struct provider pr[MAXP];
	struct job jobs[MAXJ];
	int n_jobs;
	struct reward_billing billing;
	double active_frac[MAXM];
};

static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double unif(uint64_t *s)
{
	return (double)(next(s) >> 11) / 9007199254740992.0;
}

static double normal(uint64_t *s)
{
	double u = unif(s), v = unif(s);

	return sqrt(-2.0 * log(u > 0 ? u : 1e-300)) * cos(2 * M_PI * v);
}

/* The coalition value of a round: sqrt of the members' quality x hours, times the round's
 * scale.  Concave, so members interact and Shapley splits matter. */
struct coal {
	double w[8];
	double scale;
};

static int coal_value(void *arg, const uint8_t *mem, int n, double *ret)
{
	const struct coal *c = arg;
	double s = 0;
	int i;

	for (i = 0; i < n; i++)
		if (mem[i])
			s += c->w[i];
	*ret = c->scale * sqrt(s);
	return 0;
}

static int run_job(struct world *w, int d, int month)
{
	const struct params *p = w->p;
	struct job *j = &w->jobs[w->n_jobs];
	int active[MAXP], na = 0, i, k, r;
	struct coal c;
	double best = 3.0, strength = 0;

	for (i = 0; i < p->providers; i++)
		if (w->pr[i].active)
			active[na++] = i;
	if (na == 0 || w->n_jobs == MAXJ)
		return 0;
	memset(j, 0, sizeof(*j));
	j->designer = d;
	j->month = month;
	j->success = unif(&w->rng) < p->p_success;
	j->n = na < 8 ? na : 8;
	for (i = 0; i < j->n; i++) { /* a partial Fisher-Yates draw */
		int x = i + (int)(next(&w->rng) % (uint64_t)(na - i)), t = active[i];

		active[i] = active[x];
		active[x] = t;
		j->who[i] = active[i];
	}
	for (i = 0; i < j->n; i++) {
		struct provider *pr = &w->pr[j->who[i]];
		double hours = pr->hours / 4;
		int64_t pay;

		if (reward_compute_pay(&w->billing, "gpu", hours * 3600,
				       (int64_t)llround(p->price * LEDGER_MICRO), &pay) < 0)
			return -EINVAL;
		pr->income[month] += pay;
		pr->spent[month] += (int64_t)llround(hours * pr->cost * LEDGER_MICRO);
		j->units[i] += pay;
		c.w[i] = pr->quality * hours;
		strength += c.w[i];
	}
	for (r = 0; r < 10; r++) {
		double rel = (j->success ? 0.012 : 0.002) * sqrt(strength / 300.0) *
			     exp(0.5 * normal(&w->rng)) * (1.0 - r / 12.0);
		double loss = best * (1 - rel), phi[8];
		int64_t reward, split[8];

		if (reward_breakthrough(best, loss, p->eps, 2000 * LEDGER_MICRO, &reward) <= 0)
			continue;
		c.scale = 1.0;
		if (reward_shapley(j->n, coal_value, &c, 0, 0, phi, NULL) < 0)
			return -EINVAL;
		reward_split_shapley(reward, j->n, phi, NULL, split);
		for (k = 0; k < j->n; k++) {
			w->pr[j->who[k]].income[month] += split[k];
			j->units[k] += split[k];
		}
		best = loss;
	}
	w->n_jobs++;
	return 0;
}

static int pay_revenue(struct world *w, int month)
{
	const struct params *p = w->p;
	int i, k;

	for (i = 0; i < w->n_jobs; i++) {
		struct job *j = &w->jobs[i];
		int64_t rev, designer, split[8];

		if (!j->success || j->month >= month)
			continue;
		rev = (int64_t)llround(p->revenue_median * exp(p->revenue_sigma *
							       normal(&w->rng)) * LEDGER_MICRO);
		if (reward_revenue_split(rev, (int)llround(p->designer_share * 100), j->n, j->units,
					 &designer, split) < 0)
			return -EINVAL;
		for (k = 0; k < j->n; k++)
			w->pr[j->who[k]].income[month] += split[k];
	}
	return 0;
}

static int simulate(struct world *w, const struct params *p, uint64_t seed)
{
	int m, i, d;

	memset(w, 0, sizeof(*w));
	w->p = p;
	w->rng = seed;
	if (reward_billing_parse("gpu=1", &w->billing, NULL, 0) < 0)
		return -EINVAL;
	for (i = 0; i < p->providers; i++) {
		w->pr[i].cost = 0.25 + 0.6 * unif(&w->rng);
		w->pr[i].hours = 150 + 450 * unif(&w->rng);
		w->pr[i].quality = 0.5 + unif(&w->rng);
		w->pr[i].active = 1;
		w->pr[i].left_month = -1;
	}
	for (m = 0; m < p->months; m++) {
		int active = 0;

		for (d = 0; d < p->designers; d++)
			if (unif(&w->rng) < 0.6 && run_job(w, d, m) < 0)
				return -EINVAL;
		if (pay_revenue(w, m) < 0)
			return -EINVAL;
		for (i = 0; i < p->providers; i++) {
			struct provider *pr = &w->pr[i];

			if (pr->active && m >= 2 &&
			    pr->income[m] + pr->income[m - 1] < pr->spent[m] + pr->spent[m - 1]) {
				pr->active = 0;
				pr->left_month = m;
			}
			active += pr->active;
		}
		w->active_frac[m] = (double)active / p->providers;
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct summary {
	double retention[MAXM];   /* mean over seeds */
	double q[5];              /* net return per provider over the run, USD: min p10 p50 p90 max */
	double mean_return;
};

static int summarise(const struct params *p, struct summary *s)
{
	static struct world w;
	double *ret = malloc(sizeof(double) * (size_t)p->providers * (size_t)p->seeds);
	int seed, i, m, n = 0;

	if (!ret)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	for (seed = 0; seed < p->seeds; seed++) {
		if (simulate(&w, p, p->seed + (uint64_t)seed * 7919) < 0) {
			free(ret);
			return -EINVAL;
		}
		for (m = 0; m < p->months; m++)
			s->retention[m] += w.active_frac[m] / p->seeds;
		for (i = 0; i < p->providers; i++) {
			double net = 0;

			for (m = 0; m < p->months; m++)
				net += (double)(w.pr[i].income[m] - w.pr[i].spent[m]) / LEDGER_MICRO;
			ret[n++] = net;
			s->mean_return += net;
		}
	}
	qsort(ret, (size_t)n, sizeof(*ret), cmp_double);
	s->q[0] = ret[0];
	s->q[1] = ret[n / 10];
	s->q[2] = ret[n / 2];
	s->q[3] = ret[n * 9 / 10];
	s->q[4] = ret[n - 1];
	s->mean_return /= n;
	free(ret);
	return 0;
}

static void print_summary(const char *label, const struct params *p, const struct summary *s)
{
	int m;

	printf("%-26s retention", label);
	for (m = 0; m < p->months; m++)
		printf(" %3.0f%%", 100 * s->retention[m]);
	printf("  | net USD p10 %7.0f p50 %7.0f p90 %7.0f mean %7.0f\n", s->q[1], s->q[2],
	       s->q[3], s->mean_return);
}

/* ---- the SVG ---- */

struct curve {
	char label[64];
	double y[MAXM];
};

static const char *const colours[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
				       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22" };

static int write_svg(const char *path, const struct curve *cv, int n, int months,
		     const char *title)
{
	FILE *f = fopen(path, "w");
	const double x0 = 60, y0 = 40, wd = 520, ht = 300;
	int i, m;

	if (!f)
		return -errno;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"400\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"820\" height=\"400\" "
		"fill=\"white\"/>\n<text x=\"%g\" y=\"22\" font-size=\"14\">%s</text>\n", x0, title);
	for (i = 0; i <= 4; i++) {
		double y = y0 + ht - ht * i / 4;

		fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>"
			"<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%d%%</text>\n", x0, y, x0 + wd,
			y, x0 - 6, y + 4, i * 25);
	}
	for (m = 1; m <= months; m++) {
		double x = x0 + wd * (m - 1) / (months > 1 ? months - 1 : 1);

		fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%d</text>\n", x,
			y0 + ht + 18, m);
	}
	fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">month</text>\n", x0 + wd / 2,
		y0 + ht + 36);
	fprintf(f, "<text x=\"16\" y=\"%g\" transform=\"rotate(-90 16 %g)\" "
		"text-anchor=\"middle\">providers still active</text>\n", y0 + ht / 2, y0 + ht / 2);
	for (i = 0; i < n; i++) {
		const char *col = colours[i % 9];

		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
			col, i >= 9 ? " stroke-dasharray=\"4 3\"" : "");
		for (m = 0; m < months; m++)
			fprintf(f, "%.1f,%.1f ", x0 + wd * m / (months > 1 ? months - 1 : 1),
				y0 + ht - ht * cv[i].y[m]);
		fprintf(f, "\"/>\n<line x1=\"600\" y1=\"%d\" x2=\"625\" y2=\"%d\" stroke=\"%s\" "
			"stroke-width=\"2\"/><text x=\"630\" y=\"%d\">%s</text>\n", 50 + 18 * i,
			50 + 18 * i, col, 54 + 18 * i, cv[i].label);
	}
	fprintf(f, "</svg>\n");
	if (fclose(f) != 0)
		return -errno;
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: llmfs-mining-sim [--providers N] [--designers N] [--months N]"
		" [--seeds N] [--seed S] [--eps X] [--designer-share PCT] [--price USD]"
		" [--p-success P] [--revenue-median USD] [--revenue-sigma S] [--sweep]"
		" [--svg FILE]\n");
	return 2;
}

static int parse_args(int argc, char **argv, struct params *p, int *sweep, const char **svg)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *end = NULL;
		double v;

		if (strcmp(a, "--sweep") == 0) {
			*sweep = 1;
			continue;
		}
		if (i + 1 >= argc)
			return -EINVAL;
		if (strcmp(a, "--svg") == 0) {
			*svg = argv[++i];
			continue;
		}
		v = strtod(argv[++i], &end);
		if (!end || *end || !isfinite(v) || v < 0)
			return -EINVAL;
		if (strcmp(a, "--providers") == 0 && v >= 1 && v <= MAXP)
			p->providers = (int)v;
		else if (strcmp(a, "--designers") == 0 && v >= 1 && v <= MAXD)
			p->designers = (int)v;
		else if (strcmp(a, "--months") == 0 && v >= 3 && v <= MAXM)
			p->months = (int)v;
		else if (strcmp(a, "--seeds") == 0 && v >= 1 && v <= 1000)
			p->seeds = (int)v;
		else if (strcmp(a, "--seed") == 0)
			p->seed = (uint64_t)v;
		else if (strcmp(a, "--eps") == 0 && v < 1)
			p->eps = v;
		else if (strcmp(a, "--designer-share") == 0 && v <= 100)
			p->designer_share = v;
		else if (strcmp(a, "--price") == 0)
			p->price = v;
		else if (strcmp(a, "--p-success") == 0 && v <= 1)
			p->p_success = v;
		else if (strcmp(a, "--revenue-median") == 0)
			p->revenue_median = v;
		else if (strcmp(a, "--revenue-sigma") == 0 && v <= 5)
			p->revenue_sigma = v;
		else
			return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct params p = { 24, 12, 6, 20, 1, REWARD_EPSILON_DEFAULT, 30, 0.6, 0.5, 300, 1.0 };
	static struct curve cv[16];
	struct summary s;
	const char *svg = NULL;
	int sweep = 0, n = 0, i;

	if (parse_args(argc, argv, &p, &sweep, &svg) < 0)
		return usage();
	printf("# %d providers, %d designers, %d months, %d worlds; eps %g, designer share %g%%,"
	       " price %g USD/h, p(success) %g, revenue median %g USD sigma %g\n", p.providers,
	       p.designers, p.months, p.seeds, p.eps, p.designer_share, p.price, p.p_success,
	       p.revenue_median, p.revenue_sigma);
	if (summarise(&p, &s) < 0)
		return 1;
	print_summary("base", &p, &s);
	printf("# net return per provider over the run, USD: min %.0f p10 %.0f p50 %.0f p90 %.0f"
	       " max %.0f\n", s.q[0], s.q[1], s.q[2], s.q[3], s.q[4]);
	snprintf(cv[n].label, sizeof(cv[n].label), "base");
	memcpy(cv[n++].y, s.retention, sizeof(s.retention));
	if (sweep) {
		static const double eps[] = { 0.001, 0.02, 0.05 };
		static const double share[] = { 10, 60, 90 };
		static const double price[] = { 0.3, 0.45, 0.9 };

		for (i = 0; i < 3; i++) {
			struct params q = p;

			q.eps = eps[i];
			if (summarise(&q, &s) < 0)
				return 1;
			snprintf(cv[n].label, sizeof(cv[n].label), "eps %g", eps[i]);
			print_summary(cv[n].label, &q, &s);
			memcpy(cv[n++].y, s.retention, sizeof(s.retention));
		}
		for (i = 0; i < 3; i++) {
			struct params q = p;

			q.designer_share = share[i];
			if (summarise(&q, &s) < 0)
				return 1;
			snprintf(cv[n].label, sizeof(cv[n].label), "designer share %g%%", share[i]);
			print_summary(cv[n].label, &q, &s);
			memcpy(cv[n++].y, s.retention, sizeof(s.retention));
		}
		for (i = 0; i < 3; i++) {
			struct params q = p;

			q.price = price[i];
			if (summarise(&q, &s) < 0)
				return 1;
			snprintf(cv[n].label, sizeof(cv[n].label), "price %g USD/h", price[i]);
			print_summary(cv[n].label, &q, &s);
			memcpy(cv[n++].y, s.retention, sizeof(s.retention));
		}
	}
	if (svg) {
		int r = write_svg(svg, cv, n, p.months, "Provider retention (llmfs-mining-sim)");

		if (r < 0) {
			fprintf(stderr, "llmfs-mining-sim: %s: %s\n", svg, strerror(-r));
			return 1;
		}
	}
	return 0;
}
