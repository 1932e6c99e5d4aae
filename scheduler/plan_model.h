/*
 * plan_model: the models a plan may use, read from model cards.
 *
 * A model is a directory models/<name>/ holding card.json (how to reach
 * and price it; format in docs/paths.md, "Model cards") and optionally a
 * Hugging Face README.md whose YAML front matter supplies pipeline_tag,
 * tags, language and base_model.  The directory name is the model's name
 * in tasks, plans, traces and statistics.
 *
 * Secrets: a card names where the API key lives (api_key_env, the name of
 * an environment variable, or api_key_file, a path); the key itself is
 * never stored in a struct plan_model and is read only by
 * plan_model_api_key() at call time.  A card holding a field called
 * "api_key" is refused so that keys are not committed by mistake.
 *
 * Trust: a card that runs a command or reads a key (api_key_env,
 * api_key_file) acts with the loading process's rights, so
 * plan_models_load() honours it only when card.json, its folder and the
 * models folder are owned by the process's effective uid or a uid of
 * struct plan_model_trust, none of them is writable by group or others and
 * neither card.json nor its folder is a symbolic link; otherwise the card
 * is refused with a warning that says why.  Cards that only name an
 * endpoint load whoever owns them.  plan_model_parse() judges no trust:
 * it sees text, not files.  docs/security.md, "Model cards and the
 * planner".
 *
 * Routing: a task's prompts go only to cards that may speak for its
 * writer (plan_model_usable_by()): trusted cards (those that pass the
 * test above), and cards whose card.json and folder both belong to the
 * writer, writable by no one else, in a trusted models folder.  A card
 * that a user publishes with only an endpoint thus receives that user's
 * tasks and no one else's.  Cards from plan_model_parse() count as the
 * process's own (trusted, owner the effective uid).
 *
 * Errors: -errno; a malformed card gives -EINVAL and a one-line reason.
 * A models directory with some bad cards loads the good ones and reports
 * the others in *ret_err.  The list is immutable once loaded; any thread
 * may read it.
 */
#ifndef LLMFS_PLAN_MODEL_H
#define LLMFS_PLAN_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum plan_model_kind {
	PLAN_MODEL_HTTP,     /* OpenAI-compatible /chat/completions */
	PLAN_MODEL_COMMAND,  /* local program: prompt on stdin, answer on stdout */
};

struct plan_model {
	char *name;
	enum plan_model_kind kind;
	char *base_url;      /* HTTP: e.g. http://127.0.0.1:8080/v1 */
	char *remote_model;  /* HTTP: the "model" field sent */
	char *api_key_env;   /* HTTP: name of the variable holding the key */
	char *api_key_file;  /* HTTP: path of a file holding the key */
	char *unix_socket;   /* HTTP: the endpoint is reached through this unix
				socket (an env of envs/); trusted cards only */
	char **argv;         /* COMMAND: NULL-terminated */
	double price_in;     /* USD per million input tokens */
	double price_out;    /* USD per million output tokens */
	long context;        /* tokens; 0 unknown */
	double latency_s;    /* prior for a call's fixed latency */
	double tokens_per_s; /* prior for output speed */
	double timeout_s;    /* per attempt */
	int retries;         /* extra attempts on 429, 5xx, timeouts */
	bool stream;         /* HTTP: ask for a streamed reply (SSE) */
	char **skills;       /* task types it serves; NULL or "*" = all */
	size_t n_skills;
	/* From Hugging Face front matter, informative. */
	char *pipeline_tag;
	char *base_model;
	char **tags;
	size_t n_tags;
	char **languages;
	size_t n_languages;
	/* Who answers for the card (see Trust and Routing above). */
	bool trusted;        /* may act with the loading process's rights */
	uid_t owner;         /* sole owner of card.json and its folder, or
				PLAN_MODEL_NO_OWNER */
};

#define PLAN_MODEL_NO_OWNER ((uid_t)-1)

struct plan_models {
	struct plan_model *v;
	size_t n;
};

/* Parses one card; readme may be NULL. */
int plan_model_parse(const char *name, const char *card_json,
		     const char *readme, struct plan_model *ret_model,
		     char **ret_err);
void plan_model_release(struct plan_model *m);

/* Owners besides the process's effective uid whose cards may run
 * commands or read keys (e.g. from llmfs --trusted-uid). */
struct plan_model_trust {
	const uid_t *uids;
	size_t n_uids;
};

/*
 * Loads every models_dir/<name>/card.json, sorted by name; trust may be
 * NULL (the effective uid only).  Bad and refused cards are skipped and
 * described, one per line, in *ret_err.
 */
int plan_models_load(const char *models_dir,
		     const struct plan_model_trust *trust,
		     struct plan_models *ret_models, char **ret_err);

/*
 * One card as its holder read it (the daemon reads cards from its store):
 * the text of card.json and README.md, and the owner and mode bits of
 * card.json and of its folder, judged as plan_models_load() judges files.
 * The holder answers for the folder holding the model folders (the
 * daemon's models/, whose entries carry their own owners).
 */
struct plan_card {
	const char *name;
	const char *card_json;
	const char *readme;     /* NULL: none */
	uid_t folder_uid, card_uid;
	mode_t folder_mode, card_mode;
};

/* As plan_models_load(), from cards in memory. */
int plan_models_from_cards(const struct plan_card *cards, size_t n,
			   const struct plan_model_trust *trust,
			   struct plan_models *ret_models, char **ret_err);
void plan_models_release(struct plan_models *ms);

long plan_models_find(const struct plan_models *ms, const char *name);

/* True when a task written by uid may use the model (Routing above). */
bool plan_model_usable_by(const struct plan_model *m, uid_t uid);

/* True when the model serves task_type (by its skills). */
bool plan_model_serves(const struct plan_model *m, const char *task_type);

/* Reads the key (trimmed) into *ret_key, NULL when the card names none. */
int plan_model_api_key(const struct plan_model *m, char **ret_key);

/* Estimated cost in USD of a call. */
double plan_model_cost(const struct plan_model *m, double tokens_in,
		       double tokens_out);

/* Card as JSON without any secret location details beyond names. */
json_t *plan_model_to_json(const struct plan_model *m);

#endif
