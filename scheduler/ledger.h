/*
 * ledger: the store's one append-only journal of what mining jobs owe and paid.
 *
 * What it owns
 *   One sqlite database (WAL, synchronous=FULL) per store, <store>/mining/ledger.db, with
 *   three tables: entries (the journal), head (the last entry's seq and hash) and balances
 *   (each account's totals, kept in the same transaction as the entries).  The journal is
 *   exported as JSON lines (ledger_export(): the `mining/ledger.jsonl` view) and each account's
 *   balance as a JSON object (ledger_balance_json(): `mining/accounts/<name>/balance`).
 *
 * An entry
 *   seq (1, 2, ... without gaps), prev (the hash of entry seq - 1; for seq 1 the digest of
 *   64 zeros), time (Unix seconds, UTC), job, round, account, kind, amount, evidence (a JSON
 *   object), hash.  hash is "sha256:" + the SHA-256 of the entry's canonical line: the compact
 *   JSON object of the fields above in that order, without hash, evidence with sorted keys
 *   (ledger_entry_line()).  An edit to any field breaks its hash; a deleted, inserted or
 *   reordered entry breaks the next entry's prev or the seq sequence; a deleted tail breaks
 *   the head row.  An exported file alone cannot show that its tail was cut: compare its last
 *   hash with the store's head (ledger_head()) or one published elsewhere.
 *
 * Units
 *   Amounts are integers, never floating point: money in micro-USD (1 USD = 1 000 000,
 *   LEDGER_MICRO), share units in micro-units of the compute pay that earned them.  A
 *   balance is the sum of an account's entries by kind:
 *     compute, breakthrough, share   money credited (amount >= 0)
 *     revenue                        money a model earned, booked on the model's account
 *                                    "model:<name>" (amount >= 0); its share entries, same
 *                                    job and round, add up to it exactly (the verifier
 *                                    checks it)
 *     units                          share units in the job's model (amount >= 0)
 *     flag                           a rejected contribution (amount 0; evidence says why)
 *     debit, credit                  a transfer (ledger_transfer()): money out of one
 *                                    account (subtracted) and into another (amount > 0),
 *                                    always a pair of job "transfer:<from>:<key>", round 0,
 *                                    equal amounts, appended together; a debit never takes
 *                                    an account below 0 (the verifier checks both)
 *   |amount| <= LEDGER_AMOUNT_MAX.
 *
 * Exactly once
 *   (job, round, account, kind) is a unique key of the entries table and every append is one
 *   IMMEDIATE transaction (the head read, the entry, the head and balance rows), so a process
 *   killed at any moment leaves an append done once or not at all; appending a key that is
 *   there changes nothing and says so (returns 1).
 *
 * Threads: a struct ledger is used by one thread at a time; several processes may append to
 *   one database (sqlite's lock, a busy timeout of 10 s).
 * Errors: -errno (errno_of_sqlite() for sqlite's codes); the verifier puts a one-line reason
 *   naming the entry into its err argument and returns -EBADMSG.
 */
#ifndef LLMFS_LEDGER_H
#define LLMFS_LEDGER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LEDGER_MICRO 1000000LL
#define LEDGER_AMOUNT_MAX 1000000000000000LL /* 10^15 micro-USD: a billion dollars */
#define LEDGER_NAME_MAX 128                  /* job and account names, bytes */
#define LEDGER_ERR_MAX 256

struct ledger;

enum ledger_kind {
	LEDGER_COMPUTE,
	LEDGER_BREAKTHROUGH,
	LEDGER_SHARE,
	LEDGER_REVENUE,
	LEDGER_UNITS,
	LEDGER_FLAG,
	LEDGER_DEBIT,   /* a transfer's money out of its owner's account (ledger_transfer()) */
	LEDGER_CREDIT,  /* the same transfer's money into the other account */
	LEDGER_NKINDS
};

/* An entry to append; seq, prev and hash are the ledger's. */
struct ledger_credit {
	const char *job;
	int64_t round;
	const char *account;
	enum ledger_kind kind;
	int64_t amount;
	const char *evidence; /* a JSON object as text, or NULL for {} */
	int64_t time;         /* 0: now */
};

/* An entry as stored (strings owned by the entry). */
struct ledger_entry {
	int64_t seq;
	char prev[72];
	int64_t time;
	char *job;
	int64_t round;
	char *account;
	enum ledger_kind kind;
	int64_t amount;
	char *evidence; /* compact JSON, sorted keys */
	char hash[72];
};

struct ledger_balance {
	int64_t money;  /* compute + breakthrough + share + revenue, micro-USD */
	int64_t units;  /* share units */
	int64_t flags;  /* flag entries */
};

const char *ledger_kind_name(enum ledger_kind k);
/* The kind named s; -EINVAL when none. */
int ledger_kind_parse(const char *s, enum ledger_kind *ret);

/* <store>/mining/ledger.db, malloc'd (NULL when out of memory). */
char *ledger_path(const char *store_dir);
/* Opens (creating it and its folder, when create) the database at path. */
int ledger_open(const char *path, int create, struct ledger **ret);
void ledger_close(struct ledger *l);

/*
 * Appends c (any kind but debit and credit, which only ledger_transfer() writes): 0 when
 * appended (ret_seq, may be NULL, gets its seq), 1 when (job, round,
 * account, kind) was there already (nothing changes; ret_seq gets that entry's seq), -EINVAL
 * for a bad name (empty, over LEDGER_NAME_MAX, control characters or '/'), a bad amount
 * for its kind or evidence that is not a JSON object.
 */
int ledger_append(struct ledger *l, const struct ledger_credit *c, int64_t *ret_seq);

/*
 * Appends credits c[0..n) in one transaction (a revenue and its shares, a round's credits):
 * each key not there yet is appended, those there are left as they are; *ret_appended (may be
 * NULL) gets how many were appended.  -EINVAL (nothing appended) when one is bad.
 */
int ledger_append_batch(struct ledger *l, const struct ledger_credit *c, size_t n,
			int64_t *ret_appended);

/* A transfer of amount micro-USD from one account to another, named by the payer's key. */
struct ledger_transfer {
	const char *from;     /* the payer: a name without ':' (job:, model:, provider: accounts
			       * are the ledger's records, never spent) */
	const char *to;       /* the payee: the same rules, not from */
	int64_t amount;       /* 1 .. LEDGER_AMOUNT_MAX */
	const char *key;      /* the idempotency key, LEDGER_KEY_MAX of [A-Za-z0-9._-] */
	const char *evidence; /* more evidence (a JSON object as text, who asked), or NULL */
	int64_t time;         /* 0: now */
};

#define LEDGER_KEY_MAX 48

/*
 * Moves t->amount from t->from to t->to: a debit and a credit entry, job
 * "transfer:<from>:<key>", round 0, in one IMMEDIATE transaction with the balance check, so
 * that it is done once or not at all.  0 when done (ret_seq, may be NULL, gets the debit's
 * seq); 1 when the key was used before for the same payee and amount (a retry: nothing
 * changes); -EEXIST when it was used for another; -EDQUOT when from's balance is below the
 * amount (nothing changes); -EINVAL for bad names, key, amount, evidence or from == to.
 * Evidence of both entries: {"from", "to", "key"} and t->evidence's keys.
 */
int ledger_transfer(struct ledger *l, const struct ledger_transfer *t, int64_t *ret_seq);

/* The balance of account (zeros when it has no entries). */
int ledger_balance(struct ledger *l, const char *account, struct ledger_balance *ret);
/* {"account":..,"balance":..,"units":..,"flags":..,"unit":"micro-USD"} and a newline. */
int ledger_balance_json(struct ledger *l, const char *account, char **ret);
/* The last entry's seq (0 for an empty ledger) and hash. */
int ledger_head(struct ledger *l, int64_t *ret_seq, char ret_hash[72]);

/* Calls fn for each entry in seq order whose job and account match (NULL: any); fn's
 * non-zero return stops and is returned. */
int ledger_foreach(struct ledger *l, const char *job, const char *account,
		   int (*fn)(void *arg, const struct ledger_entry *e), void *arg);
/* The journal as JSON lines (every entry, with its hash), malloc'd in *ret. */
int ledger_export(struct ledger *l, char **ret, size_t *ret_len);
/* One entry's line: canonical (with_hash 0, what is hashed) or exported (with hash). */
char *ledger_entry_line(const struct ledger_entry *e, int with_hash);

/*
 * Checks the database: seq without gaps, each prev and hash, the head row, each amount
 * against its kind, revenue fully distributed, and every balance row against the sums
 * recomputed from the entries.  0, or -EBADMSG with err naming the first fault
 * ("entry 7: hash does not match its contents (edited?)").  ret_n (may be NULL) gets the
 * number of entries checked.
 */
int ledger_verify(struct ledger *l, char err[LEDGER_ERR_MAX], int64_t *ret_n);
/*
 * Checks an exported journal (text, len bytes): each line parses as an entry with every
 * field of its type, then the same checks as ledger_verify() but the head and the balance
 * rows; head (may be NULL) is the hash its last entry must have.
 */
int ledger_verify_jsonl(const char *text, size_t len, const char *head,
			char err[LEDGER_ERR_MAX], int64_t *ret_n);

#endif
