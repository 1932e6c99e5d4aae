/* llmfs-serve - an OpenAI-compatible HTTP server for GPT-2-architecture models.
 *
 *   llmfs-serve --model DIR [--name NAME] [--model DIR2 [--name NAME2] ...]
 *               --listen unix:/path/to/sock | --listen HOST:PORT [--listen ...]
 *               [--max-queue N] [--max-body BYTES] [--threads N]
 *
 * Each DIR is a checkpoint (config.json + model.safetensors, Hugging Face GPT-2 names: llmfs's
 * own or the GPT-2 family's) with its tokenizer beside it (tokenizer.json, or vocab.json +
 * merges.txt; llmfs's byte vocabulary when vocab_size is 256).  A model is named by its
 * folder's last component unless --name follows its --model.  Endpoints: GET /health,
 * GET /v1/models, POST /v1/completions, POST /v1/chat/completions (both with "stream": true as
 * server-sent events).  docs/serve.md is the reference.
 *
 * Threads and the queue
 *   libmicrohttpd runs one thread per connection (at most max_queue + 4 connections).  Each
 *   model generates one request at a time: a request waits for its model in FIFO order (a
 *   ticket), so any number of requests at once are queued, never interleaved; past max_queue
 *   waiting requests the answer is 503 with Retry-After.  A streamed request takes its turn
 *   when its first event is due and gives it back when the stream ends or the client goes
 *   away (libmicrohttpd then calls the response's free callback).
 *
 * Lock order: srv_model.lock only (no other lock is held with it).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/utf8.h"
#include "gpu/infer.h"
#include "gpu/tokenizer.h"

#define MAX_MODELS 16
#define MAX_LISTEN 8
#define MAX_STOPS 4
#define DEFAULT_MAX_TOKENS 16

struct srv_model {
	char *name, *dir;
	struct gpu_infer *w;
	struct gpu_tok *tok;
	int n_ctx, vocab;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next_ticket, serving;   /* FIFO turn: ticket == serving generates */
	int waiting;
};

struct srv {
	struct srv_model models[MAX_MODELS];
	int n_models;
	int max_queue;
	int threads;             /* --threads, 0: OpenMP's default */
	size_t max_body;
	struct MHD_Daemon *d[MAX_LISTEN];
	char *unix_path[MAX_LISTEN];
	int n_listen;
	atomic_ulong next_id;
	atomic_int stopping;
};

/* ---- responses ---- */

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(j);
	if (!s)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(s);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(r, "Retry-After", "1");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* OpenAI's error shape: {"error": {"message", "type", "param", "code"}}. */
static json_t *error_body(const char *type, const char *param, const char *code,
			  const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	return json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", msg, "type", type,
			 "param", param, "code", code);
}

__attribute__((format(printf, 6, 7)))
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *type,
				  const char *param, const char *code, const char *fmt, ...)
{
	va_list ap;
	json_t *j;

	va_start(ap, fmt);
	j = error_body(type, param, code, fmt, ap);
	va_end(ap);
	return j ? send_json(c, status, j) : MHD_NO;
}

#define BAD_REQUEST(c, param, ...) \
	send_error(c, MHD_HTTP_BAD_REQUEST, "invalid_request_error", param, NULL, __VA_ARGS__)

/* ---- text ---- */

/* The n bytes at s as valid UTF-8: each byte that starts no valid sequence becomes U+FFFD. */
static json_t *json_text(const char *s, size_t n)
{
	char *buf = malloc(3 * n + 1);
	size_t o = 0;
	json_t *j;

	if (!buf)
		return NULL;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t l = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

		if (i + l <= n && utf8_check_n(s + i, l) == 0) {
			memcpy(buf + o, s + i, l);
			o += l;
			i += l;
		} else {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

/* Bytes at the end of s[0..n) that may be the start of a UTF-8 sequence still incomplete. */
static size_t utf8_tail(const char *s, size_t n)
{
	for (size_t k = 1; k <= 3 && k <= n; k++) {
		unsigned char c = (unsigned char)s[n - k];

		if ((c & 0xc0) == 0x80)
			continue;
		size_t l = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

		return c >= 0xc0 && l > k ? k : 0;
	}
	return 0;
}

/* ---- a generation ---- */

enum phase { PH_ROLE, PH_TOKENS, PH_FINAL, PH_USAGE, PH_DONE, PH_END };

struct gen {
	struct srv *srv;
	struct srv_model *m;
	bool chat, stream, include_usage;
	int32_t *prompt;
	size_t n_prompt;
	int max_tokens;
	struct gpu_sampling sp;
	uint64_t rng;
	char *stops[MAX_STOPS];
	int n_stops;
	char id[48];
	long created;

	struct gpu_infer_state *st;
	struct gpu_sampler sampler;
	float *logits;
	int n_gen;
	int32_t last;
	char *text;
	size_t text_len, text_cap, sent;
	const char *finish;      /* NULL while generating */
	int err;                 /* -errno of a failed step */
	bool have_turn;

	enum phase phase;
	char *out;               /* the pending server-sent event */
	size_t out_len, out_off;
};

static void gen_free(struct gen *g)
{
	if (!g)
		return;
	free(g->prompt);
	for (int i = 0; i < g->n_stops; i++)
		free(g->stops[i]);
	gpu_infer_state_free(g->st);
	gpu_sampler_release(&g->sampler);
	free(g->logits);
	free(g->text);
	free(g->out);
	free(g);
}

static int turn_take(struct srv *srv, struct srv_model *m)
{
	uint64_t t;

	pthread_mutex_lock(&m->lock);
	if (m->waiting >= srv->max_queue) {
		pthread_mutex_unlock(&m->lock);
		return -EBUSY;
	}
	t = m->next_ticket++;
	m->waiting++;
	while (m->serving != t)
		pthread_cond_wait(&m->cond, &m->lock);
	m->waiting--;
	pthread_mutex_unlock(&m->lock);
	/* OpenMP's thread count is per calling thread: set it in each connection's thread */
	if (srv->threads > 0)
		omp_set_num_threads(srv->threads);
	return 0;
}

static void turn_give(struct srv_model *m)
{
	pthread_mutex_lock(&m->lock);
	m->serving++;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static int gen_prepare(struct gen *g)
{
	int cap = (int)g->n_prompt + g->max_tokens;
	int r;

	if (cap > g->m->n_ctx)
		cap = g->m->n_ctx;
	r = gpu_infer_state_new(&g->st, g->m->w, cap);
	if (r < 0)
		return r;
	r = gpu_sampler_init(&g->sampler, g->m->vocab);
	if (r < 0)
		return r;
	g->logits = malloc((size_t)g->m->vocab * sizeof(float));
	g->text_cap = 256;
	g->text = malloc(g->text_cap);
	return g->logits && g->text ? 0 : -ENOMEM;
}

static int text_append(struct gen *g, const char *s, size_t n)
{
	if (g->text_len + n + 1 > g->text_cap) {
		size_t cap = 2 * (g->text_len + n + 1);
		char *t = realloc(g->text, cap);

		if (!t)
			return -ENOMEM;
		g->text = t;
		g->text_cap = cap;
	}
	memcpy(g->text + g->text_len, s, n);
	g->text_len += n;
	g->text[g->text_len] = '\0';
	return 0;
}

/* Cut the text at the first stop string that ends in its last `fresh` bytes. */
static bool stop_hit(struct gen *g, size_t fresh)
{
	for (int i = 0; i < g->n_stops; i++) {
		size_t sl = strlen(g->stops[i]);
		size_t from = g->text_len - fresh >= sl ? g->text_len - fresh - sl + 1 : 0;
		char *p = memmem(g->text + from, g->text_len - from, g->stops[i], sl);

		if (p) {
			g->text_len = (size_t)(p - g->text);
			g->text[g->text_len] = '\0';
			return true;
		}
	}
	return false;
}

/* One token: feed (the prompt first), draw, decode, check the ends. */
static void gen_step(struct gen *g)
{
	char buf[GPU_TOK_MAX_BYTES];
	int r, n;

	if (g->n_gen == 0 && gpu_infer_state_len(g->st) == 0)
		r = gpu_infer_feed(g->st, g->prompt, (int)g->n_prompt, g->logits);
	else
		r = gpu_infer_feed(g->st, &g->last, 1, g->logits);
	if (r < 0) {
		g->err = r;
		g->finish = "error";
		return;
	}
	g->last = gpu_sampler_pick(&g->sampler, &g->sp, g->logits, &g->rng);
	g->n_gen++;
	if (g->last == gpu_tok_eos(g->m->tok)) {
		g->finish = "stop";
		return;
	}
	n = gpu_tok_decode1(g->m->tok, g->last, buf);
	if (n < 0 || text_append(g, buf, (size_t)n) < 0) {
		g->err = n < 0 ? n : -ENOMEM;
		g->finish = "error";
		return;
	}
	if (stop_hit(g, (size_t)n))
		g->finish = "stop";
	else if (g->n_gen >= g->max_tokens || atomic_load(&g->srv->stopping))
		g->finish = "length";
}

static void gen_fail(struct gen *g, int err)
{
	g->err = err;
	g->finish = "error";
}

static void gen_start(struct gen *g)
{
	if (!g->finish && g->max_tokens == 0)
		g->finish = "length";
}

/* Text that can be sent now: not a possible start of a stop string, not half a character. */
static size_t gen_sendable(const struct gen *g)
{
	size_t end = g->text_len, hold = 0;

	if (g->finish)
		return end;
	for (int i = 0; i < g->n_stops; i++) {
		size_t sl = strlen(g->stops[i]);

		for (size_t k = sl - 1; k > hold; k--)
			if (k <= end && memcmp(g->text + end - k, g->stops[i], k) == 0) {
				hold = k;
				break;
			}
	}
	end -= hold;
	return end - utf8_tail(g->text, end);
}

static json_t *usage_json(const struct gen *g)
{
	return json_pack("{s:i,s:i,s:i}", "prompt_tokens", (int)g->n_prompt, "completion_tokens",
			 g->n_gen, "total_tokens", (int)g->n_prompt + g->n_gen);
}

/* One choice: chat {index, message|delta, finish_reason} or completion {text, index, ...}. */
static json_t *choice_json(const struct gen *g, json_t *text, bool delta, bool role)
{
	json_t *fr = g->finish && !role ? json_string(g->finish) : json_null();

	if (!text)
		text = json_string("");
	if (!g->chat)
		return json_pack("{s:o,s:i,s:n,s:o}", "text", text, "index", 0, "logprobs",
				 "finish_reason", fr);
	if (!delta)
		return json_pack("{s:i,s:{s:s,s:o},s:n,s:o}", "index", 0, "message", "role",
				 "assistant", "content", text, "logprobs", "finish_reason", fr);
	if (role) {
		json_decref(text);
		return json_pack("{s:i,s:{s:s,s:s},s:n,s:o}", "index", 0, "delta", "role",
				 "assistant", "content", "", "logprobs", "finish_reason", fr);
	}
	if (g->finish && json_string_length(text) == 0) {
		json_decref(text);
		return json_pack("{s:i,s:{},s:n,s:o}", "index", 0, "delta", "logprobs",
				 "finish_reason", fr);
	}
	return json_pack("{s:i,s:{s:o},s:n,s:o}", "index", 0, "delta", "content", text,
			 "logprobs", "finish_reason", fr);
}

static json_t *envelope(const struct gen *g, json_t *choices)
{
	const char *obj = g->chat ? (g->stream ? "chat.completion.chunk" : "chat.completion")
				  : "text_completion";

	return json_pack("{s:s,s:s,s:i,s:s,s:o}", "id", g->id, "object", obj, "created",
			 (int)g->created, "model", g->m->name, "choices", choices);
}

/* ---- request parsing ---- */

struct req {
	char *body;
	size_t len;
	bool too_big;
};

static struct srv_model *find_model(struct srv *srv, const char *name)
{
	for (int i = 0; i < srv->n_models; i++)
		if (strcmp(srv->models[i].name, name) == 0)
			return &srv->models[i];
	return NULL;
}

/* The chat messages as one prompt: "role: content\n" each, then "assistant:". */
static int chat_prompt(json_t *msgs, char **ret, const char **ret_err)
{
	size_t i, len = 0, cap = 256;
	json_t *msg;
	char *p = malloc(cap);

	if (!p)
		return -ENOMEM;
	p[0] = '\0';
	if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
		*ret_err = "'messages' must be a non-empty array";
		free(p);
		return -EINVAL;
	}
	json_array_foreach(msgs, i, msg) {
		const char *role = json_string_value(json_object_get(msg, "role"));
		json_t *content = json_object_get(msg, "content");
		const char *parts[64];
		int np = 0;

		if (!role || (strcmp(role, "system") && strcmp(role, "user") &&
			      strcmp(role, "assistant") && strcmp(role, "developer"))) {
			*ret_err = "each message needs a 'role': system, user or assistant";
			free(p);
			return -EINVAL;
		}
		if (json_is_string(content)) {
			parts[np++] = json_string_value(content);
		} else if (json_is_array(content) && json_array_size(content) <= 64) {
			size_t k;
			json_t *part;

			json_array_foreach(content, k, part) {
				const char *tx = json_string_value(json_object_get(part, "text"));

				if (!tx)
					break;
				parts[np++] = tx;
			}
			if ((size_t)np != json_array_size(content))
				np = -1;
		} else {
			np = -1;
		}
		if (np < 0) {
			*ret_err = "each message needs a 'content' string (or text parts)";
			free(p);
			return -EINVAL;
		}
		for (int k = -1; k <= np; k++) {
			const char *s = k < 0 ? role : k < np ? parts[k] : "\n";
			size_t sl = strlen(s) + (k < 0 ? 2 : 0);

			while (len + sl + 16 > cap) {
				char *q = realloc(p, cap * 2);

				if (!q) {
					free(p);
					return -ENOMEM;
				}
				p = q;
				cap *= 2;
			}
			len += (size_t)sprintf(p + len, k < 0 ? "%s: " : "%s", s);
		}
	}
	strcpy(p + len, "assistant:");
	*ret = p;
	return 0;
}

/* Parse the options common to both endpoints; on failure an error is queued and *ret_sent
 * says so. */
static int parse_sampling(struct gen *g, json_t *j, struct MHD_Connection *c, bool *ret_sent)
{
	json_t *v;

	*ret_sent = true;
	v = json_object_get(j, "max_tokens");
	if (!v && g->chat)
		v = json_object_get(j, "max_completion_tokens");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 1 << 20) {
			BAD_REQUEST(c, "max_tokens", "'max_tokens' must be an integer >= 0");
			return -EINVAL;
		}
		g->max_tokens = (int)json_integer_value(v);
	}
	v = json_object_get(j, "temperature");
	g->sp.temperature = 1.0f;
	if (v && !json_is_null(v)) {
		if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 2) {
			BAD_REQUEST(c, "temperature", "'temperature' must be a number in [0, 2]");
			return -EINVAL;
		}
		g->sp.temperature = (float)json_number_value(v);
	}
	v = json_object_get(j, "top_p");
	g->sp.top_p = 1.0f;
	if (v && !json_is_null(v)) {
		if (!json_is_number(v) || !(json_number_value(v) > 0) || json_number_value(v) > 1) {
			BAD_REQUEST(c, "top_p", "'top_p' must be a number in (0, 1]");
			return -EINVAL;
		}
		g->sp.top_p = (float)json_number_value(v);
	}
	v = json_object_get(j, "top_k");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 1 << 20) {
			BAD_REQUEST(c, "top_k", "'top_k' must be an integer >= 0 (0: all tokens)");
			return -EINVAL;
		}
		g->sp.top_k = (int)json_integer_value(v);
	}
	v = json_object_get(j, "seed");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v)) {
			BAD_REQUEST(c, "seed", "'seed' must be an integer");
			return -EINVAL;
		}
		g->rng = (uint64_t)json_integer_value(v);
	} else if (getrandom(&g->rng, sizeof(g->rng), 0) != sizeof(g->rng)) {
		g->rng = (uint64_t)time(NULL) ^ atomic_load(&g->srv->next_id);
	}
	v = json_object_get(j, "n");
	if (v && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) != 1)) {
		BAD_REQUEST(c, "n", "only 'n': 1 is supported");
		return -EINVAL;
	}
	v = json_object_get(j, "stop");
	if (json_is_string(v)) {
		if (json_string_length(v) > 0)
			g->stops[g->n_stops++] = strdup(json_string_value(v));
	} else if (json_is_array(v) && json_array_size(v) <= MAX_STOPS) {
		size_t i;
		json_t *s;

		json_array_foreach(v, i, s) {
			if (!json_is_string(s) || json_string_length(s) == 0) {
				BAD_REQUEST(c, "stop", "'stop' entries must be non-empty strings");
				return -EINVAL;
			}
			g->stops[g->n_stops++] = strdup(json_string_value(s));
		}
	} else if (v && !json_is_null(v)) {
		BAD_REQUEST(c, "stop", "'stop' must be a string or an array of at most 4");
		return -EINVAL;
	}
	for (int i = 0; i < g->n_stops; i++)
		if (!g->stops[i])
			return -ENOMEM;
	v = json_object_get(j, "stream");
	if (v && !json_is_null(v) && !json_is_boolean(v)) {
		BAD_REQUEST(c, "stream", "'stream' must be true or false");
		return -EINVAL;
	}
	g->stream = json_is_true(v);
	g->include_usage = json_is_true(
		json_object_get(json_object_get(j, "stream_options"), "include_usage"));
	*ret_sent = false;
	return 0;
}

/* The prompt's tokens: a string, one string in an array, or an array of token ids. */
static int parse_prompt(struct gen *g, json_t *j, struct MHD_Connection *c, bool *ret_sent)
{
	char *text = NULL;
	const char *s = NULL, *err = NULL;
	size_t n = 0;
	int r;

	*ret_sent = true;
	if (g->chat) {
		r = chat_prompt(json_object_get(j, "messages"), &text, &err);
		if (r == -EINVAL) {
			BAD_REQUEST(c, "messages", "%s", err);
			return r;
		}
		if (r < 0)
			return r;
		s = text;
		n = strlen(text);
	} else {
		json_t *p = json_object_get(j, "prompt");

		if (json_is_array(p) && json_array_size(p) == 1 &&
		    json_is_string(json_array_get(p, 0)))
			p = json_array_get(p, 0);
		if (json_is_string(p)) {
			s = json_string_value(p);
			n = json_string_length(p);
		} else if (json_is_array(p) && json_array_size(p) > 0 &&
			   json_is_integer(json_array_get(p, 0))) {
			size_t i;
			json_t *id;

			g->n_prompt = json_array_size(p);
			g->prompt = malloc(g->n_prompt * sizeof(int32_t));
			if (!g->prompt)
				return -ENOMEM;
			json_array_foreach(p, i, id) {
				if (!json_is_integer(id) || json_integer_value(id) < 0 ||
				    json_integer_value(id) >= g->m->vocab) {
					BAD_REQUEST(c, "prompt", "token id out of the vocabulary");
					return -EINVAL;
				}
				g->prompt[i] = (int32_t)json_integer_value(id);
			}
			*ret_sent = false;
			return 0;
		} else {
			BAD_REQUEST(c, "prompt", "'prompt' must be a string, an array of one string, "
				    "or an array of token ids");
			return -EINVAL;
		}
	}
	r = gpu_tok_encode(g->m->tok, s, n, &g->prompt, &g->n_prompt);
	free(text);
	if (r == -EILSEQ || r == -EINVAL) {
		BAD_REQUEST(c, "prompt", "the prompt could not be tokenized (invalid UTF-8?)");
		return r;
	}
	if (r < 0)
		return r;
	if (g->n_prompt == 0) {
		/* GPT-2 starts unconditioned text from end-of-text */
		int eos = gpu_tok_eos(g->m->tok);

		if (eos < 0) {
			BAD_REQUEST(c, "prompt", "the prompt is empty");
			return -EINVAL;
		}
		free(g->prompt);
		g->prompt = malloc(sizeof(int32_t));
		if (!g->prompt)
			return -ENOMEM;
		g->prompt[0] = eos;
		g->n_prompt = 1;
	}
	*ret_sent = false;
	return 0;
}

/* ---- answering ---- */

static enum MHD_Result answer_whole(struct MHD_Connection *c, struct gen *g)
{
	json_t *choices, *body;
	int r;

	r = turn_take(g->srv, g->m);
	if (r < 0) {
		gen_free(g);
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error", NULL,
				  "queue_full", "too many requests are waiting; retry later");
	}
	/* the cache is allocated only with the turn: waiting requests hold none */
	r = gen_prepare(g);
	if (r < 0)
		gen_fail(g, r);
	gen_start(g);
	while (!g->finish)
		gen_step(g);
	turn_give(g->m);
	if (g->err) {
		r = g->err;
		gen_free(g);
		return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "server_error", NULL, NULL,
				  "generation failed: %s", strerror(-r));
	}
	choices = json_array();
	json_array_append_new(choices,
			      choice_json(g, json_text(g->text, g->text_len), false, false));
	body = envelope(g, choices);
	json_object_set_new(body, "usage", usage_json(g));
	gen_free(g);
	return send_json(c, MHD_HTTP_OK, body);
}

static int set_event(struct gen *g, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	free(g->out);
	g->out = NULL;
	g->out_len = g->out_off = 0;
	if (!s)
		return -ENOMEM;
	if (asprintf(&g->out, "data: %s\n\n", s) < 0)
		g->out = NULL;
	free(s);
	if (!g->out)
		return -ENOMEM;
	g->out_len = strlen(g->out);
	return 0;
}

/* The next event of a stream, into g->out; false at the end. */
static bool next_event(struct gen *g)
{
	json_t *choices, *ev;
	size_t end;

	switch (g->phase) {
	case PH_ROLE:
		g->phase = PH_TOKENS;
		if (g->chat) {
			choices = json_array();
			json_array_append_new(choices, choice_json(g, NULL, true, true));
			return set_event(g, envelope(g, choices)) == 0;
		}
		/* fall through */
	case PH_TOKENS:
		if (!g->have_turn) {
			if (turn_take(g->srv, g->m) < 0) {
				g->phase = PH_END;
				return set_event(g, json_pack("{s:{s:s,s:s,s:s}}", "error", "message",
						 "too many requests are waiting; retry later",
						 "type", "server_error", "code", "queue_full")) == 0;
			}
			g->have_turn = true;
			if (gen_prepare(g) < 0)
				gen_fail(g, -ENOMEM);
			gen_start(g);
		}
		/* generate until there is text to send or the end */
		while (!g->finish && gen_sendable(g) <= g->sent)
			gen_step(g);
		if (g->finish) {
			turn_give(g->m);
			g->have_turn = false;
			g->phase = PH_FINAL;
			if (g->err) {
				g->phase = PH_END;
				return set_event(g, json_pack("{s:{s:s,s:s}}", "error", "message",
						 "generation failed", "type", "server_error")) == 0;
			}
		}
		end = gen_sendable(g);
		if (end > g->sent || g->phase == PH_FINAL) {
			choices = json_array();
			json_array_append_new(choices,
					      choice_json(g, json_text(g->text + g->sent,
								       end - g->sent), true, false));
			g->sent = end;
			ev = envelope(g, choices);
			if (g->phase == PH_FINAL)
				g->phase = g->include_usage ? PH_USAGE : PH_DONE;
			return set_event(g, ev) == 0;
		}
		return next_event(g);
	case PH_FINAL:
	case PH_USAGE:
		g->phase = PH_DONE;
		ev = envelope(g, json_array());
		json_object_set_new(ev, "usage", usage_json(g));
		return set_event(g, ev) == 0;
	case PH_DONE:
		g->phase = PH_END;
		free(g->out);
		g->out = strdup("data: [DONE]\n\n");
		g->out_len = g->out ? strlen(g->out) : 0;
		g->out_off = 0;
		return g->out != NULL;
	case PH_END:
		break;
	}
	return false;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct gen *g = cls;
	size_t n;

	if (g->out_off == g->out_len && !next_event(g))
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = g->out_len - g->out_off < max ? g->out_len - g->out_off : max;
	memcpy(buf, g->out + g->out_off, n);
	g->out_off += n;
	return (ssize_t)n;
}

/* Called when the stream ends or the client went away: give the turn back. */
static void stream_free(void *cls)
{
	struct gen *g = cls;

	if (g->have_turn)
		turn_give(g->m);
	gen_free(g);
}

static enum MHD_Result answer_stream(struct MHD_Connection *c, struct gen *g)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, g,
					      stream_free);
	if (!r) {
		gen_free(g);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle_generate(struct srv *srv, struct MHD_Connection *c,
				       struct req *rq, bool chat)
{
	json_error_t jerr;
	json_t *j, *mv;
	struct gen *g;
	bool sent = false;
	int r;

	if (rq->too_big)
		return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", NULL,
				  "request_too_large", "the request body exceeds %zu bytes",
				  srv->max_body);
	j = json_loadb(rq->body ? rq->body : "", rq->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return BAD_REQUEST(c, NULL, "could not parse the JSON body: %s (line %d, column %d)",
				   jerr.text, jerr.line, jerr.column);
	if (!json_is_object(j)) {
		json_decref(j);
		return BAD_REQUEST(c, NULL, "the JSON body must be an object");
	}
	mv = json_object_get(j, "model");
	if (mv && !json_is_string(mv)) {
		json_decref(j);
		return BAD_REQUEST(c, "model", "'model' must be a string");
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		json_decref(j);
		return MHD_NO;
	}
	g->srv = srv;
	g->chat = chat;
	g->max_tokens = chat ? 1 << 20 : DEFAULT_MAX_TOKENS;
	g->m = mv ? find_model(srv, json_string_value(mv)) : &srv->models[0];
	if (!g->m) {
		enum MHD_Result ret = send_error(c, MHD_HTTP_NOT_FOUND, "invalid_request_error",
						 "model", "model_not_found",
						 "The model '%s' does not exist",
						 json_string_value(mv));

		json_decref(j);
		gen_free(g);
		return ret;
	}
	/* a full queue is refused before a stream's 200 goes out */
	pthread_mutex_lock(&g->m->lock);
	r = g->m->waiting >= srv->max_queue ? -EBUSY : 0;
	pthread_mutex_unlock(&g->m->lock);
	if (r < 0) {
		json_decref(j);
		gen_free(g);
		return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error", NULL,
				  "queue_full", "too many requests are waiting; retry later");
	}
	r = parse_sampling(g, j, c, &sent);
	if (r == 0)
		r = parse_prompt(g, j, c, &sent);
	json_decref(j);
	if (r < 0) {
		gen_free(g);
		return sent ? MHD_YES : MHD_NO;
	}
	if (g->n_prompt >= (size_t)g->m->n_ctx) {
		enum MHD_Result ret = send_error(
			c, MHD_HTTP_BAD_REQUEST, "invalid_request_error", chat ? "messages" : "prompt",
			"context_length_exceeded",
			"This model's maximum context length is %d tokens, however the prompt has %zu "
			"tokens", g->m->n_ctx, g->n_prompt);

		gen_free(g);
		return ret;
	}
	if ((size_t)g->max_tokens > (size_t)g->m->n_ctx - g->n_prompt)
		g->max_tokens = g->m->n_ctx - (int)g->n_prompt;
	uint64_t nonce = 0;

	if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
		nonce = (uint64_t)time(NULL);
	snprintf(g->id, sizeof(g->id), "%s-%016" PRIx64 "%lx", chat ? "chatcmpl" : "cmpl", nonce,
		 atomic_fetch_add(&srv->next_id, 1));
	g->created = (long)time(NULL);
	return g->stream ? answer_stream(c, g) : answer_whole(c, g);
}

static enum MHD_Result handle_models(struct srv *srv, struct MHD_Connection *c)
{
	json_t *data = json_array();

	for (int i = 0; i < srv->n_models; i++) {
		const struct gpu_config *cfg = gpu_infer_config(srv->models[i].w);

		json_array_append_new(
			data, json_pack("{s:s,s:s,s:i,s:s,s:i,s:i,s:s}", "id", srv->models[i].name,
					"object", "model", "created", 0, "owned_by", "llmfs",
					"context_length", cfg->n_ctx, "vocab_size", cfg->vocab_size,
					"tokenizer",
					gpu_tok_kind(srv->models[i].tok) == GPU_TOK_BPE ? "gpt2-bpe"
											: "bytes"));
	}
	return send_json(c, MHD_HTTP_OK, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct srv *srv = cls;
	struct req *rq = *con_cls;
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;

	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->too_big && rq->len + *upload_size <= srv->max_body) {
			char *b = realloc(rq->body, rq->len + *upload_size + 1);

			if (!b)
				return MHD_NO;
			rq->body = b;
			memcpy(rq->body + rq->len, upload, *upload_size);
			rq->len += *upload_size;
		} else {
			rq->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/health") == 0 && get)
		return send_json(c, MHD_HTTP_OK, json_pack("{s:s,s:i}", "status", "ok", "models",
							   srv->n_models));
	if (strcmp(url, "/v1/models") == 0 && get)
		return handle_models(srv, c);
	if (strcmp(url, "/v1/completions") == 0 && post)
		return handle_generate(srv, c, rq, false);
	if (strcmp(url, "/v1/chat/completions") == 0 && post)
		return handle_generate(srv, c, rq, true);
	if (!strcmp(url, "/health") || !strcmp(url, "/v1/models") ||
	    !strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions"))
		return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request_error", NULL,
				  "method_not_allowed", "%s is not allowed on %s", method, url);
	return send_error(c, MHD_HTTP_NOT_FOUND, "invalid_request_error", NULL, "not_found",
			  "no such endpoint: %s %s", method, url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct req *rq = *con_cls;

	if (rq) {
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

/* ---- setup ---- */

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	/* a stale socket from an earlier run; never anything else */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static int start_listen(struct srv *srv, const char *spec)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_ERROR_LOG;
	unsigned limit = (unsigned)srv->max_queue + 4;
	struct MHD_Daemon *d;
	int i = srv->n_listen;

	if (i == MAX_LISTEN)
		return -E2BIG;
	if (strncmp(spec, "unix:", 5) == 0) {
		int fd = listen_unix(spec + 5);

		if (fd < 0)
			return fd;
		d = MHD_start_daemon(flags, 0, NULL, NULL, handle, srv,
				     MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_CONNECTION_LIMIT, limit,
				     MHD_OPTION_CONNECTION_TIMEOUT, 120u,
				     MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				     MHD_OPTION_END);
		if (!d) {
			close(fd);
			unlink(spec + 5);
			return -EIO;
		}
		srv->unix_path[i] = strdup(spec + 5);
		fprintf(stderr, "llmfs-serve: listening on unix:%s\n", spec + 5);
	} else {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		char host[64];
		const char *colon = strrchr(spec, ':');
		char *end;
		long port;

		if (!colon || (size_t)(colon - spec) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = strtol(colon + 1, &end, 10);
		if (*end || port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
			return -EINVAL;
		sa.sin_port = htons((uint16_t)port);
		d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, srv,
				     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				     MHD_OPTION_CONNECTION_LIMIT, limit,
				     MHD_OPTION_CONNECTION_TIMEOUT, 120u,
				     MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				     MHD_OPTION_END);
		if (!d)
			return -EADDRINUSE;
		const union MHD_DaemonInfo *info = MHD_get_daemon_info(d,
								       MHD_DAEMON_INFO_BIND_PORT);

		fprintf(stderr, "llmfs-serve: listening on http://%s:%u\n", host,
			info ? info->port : (unsigned)port);
	}
	srv->d[i] = d;
	srv->n_listen++;
	return 0;
}

static int load_model(struct srv_model *m, const char *dir, const char *name)
{
	int r;

	m->dir = strdup(dir);
	if (name) {
		m->name = strdup(name);
	} else {
		char *tmp = strdup(dir);

		/* "a/b/" names "b" */
		if (tmp) {
			size_t l = strlen(tmp);

			while (l > 1 && tmp[l - 1] == '/')
				tmp[--l] = '\0';
			m->name = strdup(basename(tmp));
		}
		free(tmp);
	}
	if (!m->dir || !m->name)
		return -ENOMEM;
	r = gpu_infer_load(&m->w, dir);
	if (r < 0) {
		fprintf(stderr, "llmfs-serve: %s: cannot load the model (config.json, "
			"model.safetensors): %s\n", dir, strerror(-r));
		return r;
	}
	m->n_ctx = gpu_infer_config(m->w)->n_ctx;
	m->vocab = gpu_infer_config(m->w)->vocab_size;
	r = gpu_tok_load_dir(&m->tok, dir, m->vocab);
	if (r < 0) {
		fprintf(stderr, "llmfs-serve: %s: %s\n", dir, r == -ENOENT ?
			"no tokenizer (tokenizer.json, or vocab.json + merges.txt; a 256-token "
			"vocabulary needs none)" : r == -EINVAL ?
			"the tokenizer is malformed or larger than the model's vocabulary" :
			strerror(-r));
		return r;
	}
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmfs-serve --model DIR [--name NAME] [--model DIR ...]\n"
		"                   --listen unix:PATH | --listen HOST:PORT [--listen ...]\n"
		"                   [--max-queue N] [--max-body BYTES] [--threads N]\n"
		"  --model DIR      a checkpoint: config.json, model.safetensors, tokenizer\n"
		"  --name NAME      the name of the --model before it (default: DIR's name)\n"
		"  --listen ADDR    unix:PATH (a unix socket) or IPv4 HOST:PORT (port 0: any)\n"
		"  --max-queue N    requests waiting per model before 503 (default 64)\n"
		"  --max-body BYTES largest request body, else 413 (default 1048576)\n"
		"  --threads N      compute threads (default: OpenMP's)\n"
		"Endpoints: GET /health, GET /v1/models, POST /v1/completions,\n"
		"POST /v1/chat/completions (see docs/serve.md)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "name", required_argument, NULL, 'n' },
		{ "listen", required_argument, NULL, 'l' },
		{ "max-queue", required_argument, NULL, 'q' },
		{ "max-body", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dirs[MAX_MODELS], *names[MAX_MODELS], *listens[MAX_LISTEN];
	int nd = 0, nl = 0, opt, rc = 1;
	struct srv *srv = calloc(1, sizeof(*srv));
	sigset_t set;
	int sig;

	if (!srv)
		return 1;
	srv->max_queue = 64;
	srv->max_body = 1 << 20;
	while ((opt = getopt_long(argc, argv, "m:n:l:q:b:t:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (nd == MAX_MODELS) {
				fprintf(stderr, "llmfs-serve: at most %d models\n", MAX_MODELS);
				return 2;
			}
			dirs[nd] = optarg;
			names[nd++] = NULL;
			break;
		case 'n':
			if (nd == 0 || names[nd - 1]) {
				fprintf(stderr, "llmfs-serve: --name follows the --model it names\n");
				return 2;
			}
			names[nd - 1] = optarg;
			break;
		case 'l':
			if (nl == MAX_LISTEN) {
				fprintf(stderr, "llmfs-serve: at most %d --listen\n", MAX_LISTEN);
				return 2;
			}
			listens[nl++] = optarg;
			break;
		case 'q':
			srv->max_queue = atoi(optarg);
			break;
		case 'b':
			srv->max_body = (size_t)strtoull(optarg, NULL, 10);
			break;
		case 't':
			srv->threads = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (nd == 0 || nl == 0 || optind != argc || srv->max_queue < 1 || srv->max_body < 16) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < nd; i++) {
		if (load_model(&srv->models[i], dirs[i], names[i]) < 0)
			return 1;
		srv->n_models++;
		for (int k = 0; k < i; k++)
			if (strcmp(srv->models[k].name, srv->models[i].name) == 0) {
				fprintf(stderr, "llmfs-serve: two models named '%s' (use --name)\n",
					srv->models[i].name);
				return 2;
			}
	}
	/* signals are taken synchronously by main; every other thread inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < nl; i++) {
		int r = start_listen(srv, listens[i]);

		if (r < 0) {
			fprintf(stderr, "llmfs-serve: cannot listen on %s: %s\n", listens[i],
				r == -EINVAL ? "expected unix:PATH or IPv4-HOST:PORT" : strerror(-r));
			goto out;
		}
	}
	for (int i = 0; i < srv->n_models; i++)
		fprintf(stderr, "llmfs-serve: model %s from %s (%d layers, context %d, vocab %d)\n",
			srv->models[i].name, srv->models[i].dir,
			gpu_infer_config(srv->models[i].w)->n_layer, srv->models[i].n_ctx,
			srv->models[i].vocab);
	fflush(stderr);
	sigwait(&set, &sig);
	atomic_store(&srv->stopping, 1);
	rc = 0;
out:
	for (int i = 0; i < srv->n_listen; i++) {
		MHD_stop_daemon(srv->d[i]);
		if (srv->unix_path[i])
			unlink(srv->unix_path[i]);
		free(srv->unix_path[i]);
	}
	for (int i = 0; i < srv->n_models; i++) {
		gpu_infer_free(srv->models[i].w);
		gpu_tok_free(srv->models[i].tok);
		free(srv->models[i].name);
		free(srv->models[i].dir);
	}
	free(srv);
	return rc;
}
