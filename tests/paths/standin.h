/*
 * A stand-in for an OpenAI-compatible chat endpoint, on loopback, for the
 * executor and engine tests.  It is not a model: the "model" field of a
 * request picks a behaviour.
 *
 *   echo      answers "echo: <prompt>" with usage 10 in / 5 out
 *   upper     answers the prompt in capitals, no usage reported
 *   fixed-X   answers X
 *   hang      never answers (until the stand-in stops)
 *   garbage   200 with a body that is not JSON
 *   busy      429 for the first two requests it sees, then like echo
 *   broken    500 always
 *   plan      answers a two-step JSON task (a planner model)
 *   plan-inject  a planner that obeys the task text: its plan carries a
 *             check.command "touch <path>" (path after MARK= in the prompt)
 *   open      answers "open: <prompt>", and needs no key (a card that
 *             names only an endpoint)
 *   busy-wait 429 with "Retry-After: 2" for its first request, then answers
 *             "waited as asked"
 *   down-wait the same with 503
 *   date-wait 503 with a Retry-After HTTP date 3 s ahead for its first
 *             request, then answers "waited as asked"
 *   busy-long 429 with "Retry-After: 3600", always
 *   stream    a server-sent event stream of "streamed: <prompt>" in three
 *             deltas, with usage 7 in / 3 out
 * Every other request must carry "Authorization: Bearer <key>", else 401.
 */
#ifndef LLMFS_TEST_PATHS_STANDIN_H
#define LLMFS_TEST_PATHS_STANDIN_H

struct standin;

/* Starts on a free loopback port; NULL when it cannot. */
struct standin *standin_start(const char *key);
int standin_port(const struct standin *s);
/* Requests seen for a behaviour. */
int standin_count(struct standin *s, const char *model);
/* Milliseconds between a behaviour's first and last request, -1. */
long long standin_gap_ms(struct standin *s, const char *model);
/* Who owned the socket of the last "open" request (/proc/net/tcp), -1. */
long standin_open_uid(struct standin *s);
void standin_stop(struct standin *s);

/* Writes <dir>/<name>/card.json with the given JSON text. */
void write_card(const char *dir, const char *name, const char *json);

#endif
