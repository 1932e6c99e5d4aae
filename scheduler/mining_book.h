/*
 * mining_book: the coordinator's round hook (mining_job.h, on_round) that pays a round.
 *
 * A call for round r books every round of the job up to r that the ledger has no entry for,
 * in round order.  For each it reads what the round left in the job folder (contributions.tsv:
 * each replica's provider, metered device-seconds, steps; rounds.tsv: the validation loss;
 * weights/<r-1>.pg; deltas/<r>-<slot>.pg, the pseudo-gradients as received), the job's
 * context from the call (options, tokens; its slots as a template of shard, H and threads),
 * and:
 *   - prices each accepted replica from its provider.json: "account" (who is paid; a provider
 *     without one is paid as "provider:<name>"), "price" (USD per device-hour, default 0) and
 *     "device" ("cpu" or "gpu", default cpu; the billing weights cpu=1, gpu=8);
 *   - replays the windows picked with probability q (mining_verify_pick() under the store's
 *     key, <store>/mining/ledger.key, 32 random bytes made once, 0600) with the engine and
 *     the window's thread count, and flags a claim that does not replay (bit for bit on the
 *     CPU; MINING_VERIFY_CUDA_TOL on CUDA; an int8 claim is compared with the replay passed
 *     through the same int8 coding);
 *   - on a breakthrough, values coalitions by the validation loss of the start weights moved
 *     by their pseudo-gradients (mining_verify.h) for the Shapley split;
 *   - books it all in one batch (mining_ledger_book_round()).
 * q is 0.1, or LLMFS_MINING_CHECK_Q in the daemon's environment (0 to 1; the tests use 1).
 *
 * A round made durable by a coordinator killed before it called the hook is booked by the
 * next call for the job (the same entries, the same checks): the coordinator's ledger thread
 * calls it again for its last durable round when the job resumes and when it ends.
 * LLMFS_MINING_BOOK_DROP=N (fault injection for the tests) loses the first call for round N,
 * as a crash before it would; LLMFS_MINING_BOOK_HOLD=PATH makes every call wait while PATH
 * exists (a ledger slower than the rounds).
 *
 * The ledger views of mining/ (ledger.jsonl, accounts/<name>/balance) read through it, under
 * the same lock as the hook, so that they see whole rounds.
 *
 * Threads: every call takes the book's lock; the hook runs on a job's ledger thread.  Errors: -errno;
 * the hook cannot return one, so the last failure is kept for mining_book_status().
 */
#ifndef LLMFS_MINING_BOOK_H
#define LLMFS_MINING_BOOK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mining;
struct mining_round;
struct mining_book;

int mining_book_open(const char *store_dir, struct mining_book **ret);
/* The coordinator whose providers the hook reads (set once mining_open() returned; a round
 * that completes before is priced at 0 and its replicas paid as "provider:<name>"). */
void mining_book_attach(struct mining_book *b, struct mining *m);
void mining_book_close(struct mining_book *b);

/* The hook: arg is the book. */
void mining_book_on_round(void *arg, const struct mining_round *r);

int mining_book_balance(struct mining_book *b, const char *account, char **ret, size_t *ret_len);
int mining_book_export(struct mining_book *b, char **ret, size_t *ret_len);
/*
 * Executes a transfer request (mining_ledger.h: "to=NAME amount=MICRO key=ID", one line
 * without its newline) out of account from, asked by uid: -EPERM unless uid owns from (root
 * too: only the owner spends), -ENOENT when from or the payee is no account of
 * mining/accounts/, -EINVAL when malformed or to itself, then ledger_transfer()'s answers
 * (-EDQUOT: not enough money; -EEXIST: the key was used for another transfer; a retry of
 * the same one is 0).  why (may be NULL) gets a reason for -EINVAL.
 */
int mining_book_transfer(struct mining_book *b, const char *from, uid_t uid, const char *line,
			 const char **why);
/* The money on account (micro-USD; 0 with no entries). */
int mining_book_money(struct mining_book *b, const char *account, int64_t *ret);
/* "" or the last booking failure, copied into buf. */
void mining_book_status(struct mining_book *b, char *buf, size_t len);

#endif
