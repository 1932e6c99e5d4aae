/*
 * mining_ledger: what a completed round and a model's revenue write into the ledger.
 *
 * Between the coordinator (mining_job.h, which knows rounds, replicas and providers) and the
 * journal (ledger.h, which knows entries): it applies the formulas of reward.h and appends
 * each round's credits, and each revenue with its shares, in one transaction, so that a round
 * is paid once or not at all whatever crashes (the keys are (job, round, account, kind)).
 *
 * A round's entries (docs/mining.md):
 *   flag          each replica the verifier rejected (amount 0, evidence its verdict)
 *   compute       each accepted, unflagged replica: reward_compute_pay() of its metered
 *                 device-seconds at its provider's price
 *   breakthrough  when the round's validation loss beats the job's best by more than eps:
 *                 the reward split by Shapley values among the accepted, unflagged replicas
 *                 (value function given by the caller, evaluated on those replicas only)
 *   units         each paid replica: its compute pay plus its breakthrough share; and the
 *                 designer's units entry of amount 0 whose evidence holds the round's
 *                 validation loss (the job's best is the lowest of those before the round)
 * Several replicas of one account in a round are summed into one entry per kind.
 *
 * Revenue: the model <name> of job <name> earned R micro-USD: a revenue entry on
 * "model:<name>" and share entries for the designer (designer_bp) and the holders of units
 * in the job, in proportion, job "model:<name>", round the model's next revenue number.
 * A call's revenue is booked once at most (a crash between the answer and the booking loses
 * it; a retry never doubles it).
 *
 * A transfer request (mining/accounts/<name>/transfer, docs/mining.md) is one line of words
 *   to=NAME amount=MICRO key=ID
 * each once, in any order: NAME the payee's account, MICRO the amount in micro-USD (decimal
 * digits, 1 to LEDGER_AMOUNT_MAX), ID the idempotency key (ledger_transfer()).
 *
 * Errors: -EINVAL (a bad argument), the ledger's and the value function's -errno.
 */
#ifndef LLMFS_MINING_LEDGER_H
#define LLMFS_MINING_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "scheduler/ledger.h"
#include "scheduler/reward.h"

struct mining_ledger_cfg {
	struct reward_billing billing; /* weights per device kind */
	double eps;                    /* relative improvement for a breakthrough */
	int64_t rate_micro;            /* micro-USD per unit of relative improvement */
	int designer_bp;               /* the designer's part of revenue, basis points */
	long shapley_samples;          /* above 8 replicas; 0: reward.h's default */
	uint64_t seed;
};

/* mining_ledger_cfg defaults: cpu=1,gpu=8, eps 0.005, 100 USD per unit, 30 %. */
void mining_ledger_cfg_init(struct mining_ledger_cfg *c);

struct mining_ledger_contrib {
	const char *account;          /* the provider's account */
	const char *device_kind;      /* "cpu", "gpu": a kind of the billing weights */
	double device_seconds;        /* metered by the provider */
	int64_t price_micro_per_hour; /* the provider's price per billing hour */
	int accepted;                 /* the coordinator used its pseudo-gradient */
	const char *flag;             /* the verifier's evidence (JSON) when rejected, else NULL */
	const char *evidence;         /* more evidence for its compute entry (JSON object: its
				       * window, steps, tokens), NULL for none */
};

struct mining_ledger_round {
	const char *job;
	long round;                   /* >= 1 */
	const char *designer;         /* the designer's account */
	double val_loss;              /* of the round's global weights */
	const struct mining_ledger_contrib *c;
	size_t n;
	/* The coalition value over c[0..n) (members outside the paid replicas are never set);
	 * NULL: no breakthrough is paid. */
	reward_value_fn value;
	void *value_arg;
};

struct mining_ledger_paid {
	int64_t compute, breakthrough; /* totals of the round, micro-USD */
	int flags;
	int64_t appended;              /* entries appended now (0: the round was booked before) */
};

int mining_ledger_book_round(struct ledger *l, const struct mining_ledger_cfg *cfg,
			     const struct mining_ledger_round *r, struct mining_ledger_paid *ret);

/* The job's best validation loss before round (NAN when none). */
int mining_ledger_best(struct ledger *l, const char *job, long round, double *ret);

/* Books revenue_micro earned by model (a mining job's name); *ret_round (may be NULL) gets
 * its revenue number.  With no holder of units the whole revenue goes to the designer; with
 * no designer either, -ENOENT (nothing booked: the model was not mined here). */
int mining_ledger_revenue(struct ledger *l, const struct mining_ledger_cfg *cfg,
			  const char *model, int64_t revenue_micro, const char *evidence,
			  int64_t *ret_round);

/* Parses a transfer request (line, without its newline; modified: t->to and t->key point
 * into it); sets t's to, amount and key.  -EINVAL with *why (static text) when malformed. */
int mining_ledger_transfer_parse(char *line, struct ledger_transfer *t, const char **why);

#endif
