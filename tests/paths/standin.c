/* The stand-in OpenAI-compatible endpoint: see standin.h. */
#include "standin.h"

#include <ctype.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/check.h"

#define N_KINDS 15
#define KIND_OPEN 9
#define KIND_BUSY_WAIT 10
#define KIND_DOWN_WAIT 11
#define KIND_BUSY_LONG 12
#define KIND_STREAM 13
#define KIND_DATE_WAIT 14

static const char *const kinds[N_KINDS] = {
	"echo", "upper", "fixed-", "hang", "garbage", "busy", "broken", "plan",
	"plan-inject", "open", "busy-wait", "down-wait", "busy-long", "stream",
	"date-wait",
};

struct standin {
	struct MHD_Daemon *d;
	char key[128];
	atomic_int stopping;
	atomic_int count[N_KINDS];
	atomic_long open_uid;   /* owner of the last "open" caller's socket */
	/* Monotonic ms of a kind's first and last request. */
	atomic_llong first_ms[N_KINDS], last_ms[N_KINDS];
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


struct upload {
	char *data;
	size_t len;
};

static int kind_of(const char *model)
{
	for (int i = 0; i < N_KINDS; i++)
		if (!strncmp(model, kinds[i], strlen(kinds[i])) &&
		    (i == 2 || !model[strlen(kinds[i])]))
			return i;
	return -1;
}

long long standin_gap_ms(struct standin *s, const char *model)
{
	int k = kind_of(model);

	return k < 0 ? -1 : atomic_load(&s->last_ms[k]) -
			    atomic_load(&s->first_ms[k]);
}

/*
 * The owner of the client's socket, from /proc/net/tcp (the kernel's uid
 * column: the fsuid the socket was made with); -1 when not found.
 */
static long peer_uid(struct standin *s, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	unsigned lport, rport, want, me = (unsigned)standin_port(s);
	char line[512];
	long uid = -1;
	FILE *f;

	if (!ci || !ci->client_addr || ci->client_addr->sa_family != AF_INET)
		return -1;
	want = ntohs(((const struct sockaddr_in *)ci->client_addr)->sin_port);
	f = fopen("/proc/net/tcp", "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long u;

		if (sscanf(line, " %*d: %*x:%x %*x:%x %*x %*x:%*x %*x:%*x %*x %lu",
			   &lport, &rport, &u) == 3 && lport == want &&
		    rport == me) {
			uid = (long)u;
			break;
		}
	}
	if (f)
		fclose(f);
	return uid;
}

/* retry_after: the Retry-After header's value, NULL for none. */
static enum MHD_Result reply_as(struct MHD_Connection *c, unsigned status,
				const char *type, const char *body,
				const char *retry_after)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", type);
	if (retry_after)
		MHD_add_response_header(r, "Retry-After", retry_after);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* 503 with Retry-After as an HTTP date 3 s ahead (RFC 9110 allows either
 * form; a whole second's resolution, so the wait is 2 to 3 s). */
static enum MHD_Result date_later(struct MHD_Connection *c)
{
	time_t t = time(NULL) + 3;
	struct tm tm;
	char when[64];

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	return reply_as(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
			"{\"error\": \"later\"}", when);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
			     const char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer(struct MHD_Connection *c, const char *text,
			      int usage)
{
	json_t *o = json_pack("{s:s, s:[{s:i, s:{s:s, s:s}}]}", "object",
			      "chat.completion", "choices", "index", 0,
			      "message", "role", "assistant", "content", text);
	char *body;
	enum MHD_Result r;

	if (usage)
		json_object_set_new(o, "usage", json_pack("{s:i, s:i}",
			"prompt_tokens", 10, "completion_tokens", 5));
	body = json_dumps(o, JSON_COMPACT);
	r = reply(c, MHD_HTTP_OK, body);
	free(body);
	json_decref(o);
	return r;
}

/*
 * A streamed chat completion (server-sent events, as OpenAI's API sends
 * with "stream": true): the answer "streamed: <prompt>" in three deltas,
 * then a usage chunk and [DONE].  Without "stream" in the request it
 * answers as echo does, but the request's flag is checked by the test
 * through the answer's prefix.
 */
#define CHUNK "data: {\"object\":\"chat.completion.chunk\"," \
	"\"choices\":[{\"index\":0,\"delta\":{\"content\":%s}}]}\n\n"

static enum MHD_Result stream_reply(struct MHD_Connection *c,
				    const char *prompt)
{
	char *body = NULL, *p1 = NULL, *p2 = NULL, *p3 = NULL, *q = NULL;
	json_t *js = json_string(prompt);
	enum MHD_Result r;

	q = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
	json_decref(js);
	if (!q || asprintf(&p1, CHUNK, "\"stre\"") < 0 ||
	    asprintf(&p2, CHUNK, "\"amed: \"") < 0 ||
	    asprintf(&p3, CHUNK, q) < 0 ||
	    asprintf(&body, ": a comment line\n\n%s%s%sdata: {\"choices\":[],"
		     "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}"
		     "\n\ndata: [DONE]\n\n", p1, p2, p3) < 0)
		body = NULL;
	r = body ? reply_as(c, MHD_HTTP_OK, "text/event-stream", body, NULL) :
		   MHD_NO;
	free(body);
	free(p1);
	free(p2);
	free(p3);
	free(q);
	return r;
}

static const char plan_reply[] =
	"Here is the plan:\n```json\n{\"steps\": ["
	"{\"id\": \"sum\", \"prompt\": \"Summarise the text\","
	" \"task_type\": \"summarise\"},"
	"{\"id\": \"fr\", \"prompt\": \"Translate into French: {{sum}}\","
	" \"task_type\": \"translate\", \"deps\": [\"sum\"]}],"
	" \"output\": \"fr\"}\n```";

/*
 * A planner obeying a prompt injection: the task text asks for a step whose
 * checker runs "touch <path after MARK=>"; the reply carries it, and pins
 * the step to a model as well.
 */
static enum MHD_Result inject_reply(struct MHD_Connection *c,
				    const char *prompt)
{
	const char *m = strstr(prompt, "MARK=");
	char path[256];
	json_t *o;
	char *plan, *text = NULL;
	enum MHD_Result r;

	if (!m || sscanf(m, "MARK=%255s", path) != 1)
		return reply(c, MHD_HTTP_BAD_REQUEST, "{\"error\": \"mark\"}");
	o = json_pack("{s:[{s:s, s:s, s:s, s:{s:[s, s]}}, "
		      "{s:s, s:s, s:[s], s:s}], s:s}",
		      "steps", "id", "a", "prompt", "Say hi", "task_type",
		      "general", "check", "command", "touch", path,
		      "id", "b", "prompt", "Repeat {{a}}", "deps", "a",
		      "model", "echo", "output", "b");
	plan = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (plan && asprintf(&text, "```json\n%s\n```", plan) < 0)
		text = NULL;
	r = text ? answer(c, text, 1) : reply(c, 500, "{}");
	free(text);
	free(plan);
	json_decref(o);
	return r;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *data,
			      size_t *size, void **state)
{
	struct standin *s = cls;
	struct upload *u = *state;
	const char *auth, *model, *prompt;
	char want[160], *text = NULL;
	json_t *req;
	enum MHD_Result r;
	int k;

	if (!u) {
		*state = calloc(1, sizeof(*u));
		return *state ? MHD_YES : MHD_NO;
	}
	if (*size) {
		u->data = realloc(u->data, u->len + *size + 1);
		memcpy(u->data + u->len, data, *size);
		u->len += *size;
		u->data[u->len] = '\0';
		*size = 0;
		return MHD_YES;
	}
	if (strcmp(method, "POST") || strcmp(url, "/v1/chat/completions"))
		return reply(c, MHD_HTTP_NOT_FOUND, "{\"error\": \"no route\"}");
	req = u->data ? json_loads(u->data, 0, NULL) : NULL;
	model = json_string_value(json_object_get(req, "model"));
	prompt = json_string_value(json_object_get(json_array_get(
		json_object_get(req, "messages"), 0), "content"));
	k = model && prompt ? kind_of(model) : -1;
	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					   "Authorization");
	snprintf(want, sizeof(want), "Bearer %s", s->key);
	if (k != KIND_OPEN && (!auth || strcmp(auth, want))) {
		json_decref(req);
		return reply(c, MHD_HTTP_UNAUTHORIZED, "{\"error\": \"key\"}");
	}
	if (k < 0) {
		json_decref(req);
		return reply(c, MHD_HTTP_BAD_REQUEST, "{\"error\": \"model\"}");
	}
	atomic_fetch_add(&s->count[k], 1);
	switch (k) {
	case 0:
		if (asprintf(&text, "echo: %s", prompt) < 0)
			text = NULL;
		r = answer(c, text, 1);
		break;
	case 1:
		text = strdup(prompt);
		for (char *p = text; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		r = answer(c, text, 0);
		break;
	case 2:
		r = answer(c, model + strlen("fixed-"), 1);
		break;
	case 3:
		while (!atomic_load(&s->stopping))
			usleep(10000);
		r = MHD_NO;
		break;
	case 4:
		r = reply(c, MHD_HTTP_OK, "<html>this is not json{{");
		break;
	case 5:
		if (atomic_load(&s->count[5]) <= 2)
			r = reply(c, MHD_HTTP_TOO_MANY_REQUESTS,
				  "{\"error\": \"slow down\"}");
		else
			r = answer(c, "busy but fine", 1);
		break;
	case 6:
		r = reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
			  "{\"error\": \"boom\"}");
		break;
	case 7:
		r = answer(c, plan_reply, 1);
		break;
	case KIND_DATE_WAIT:
		if (atomic_load(&s->count[k]) == 1) {
			atomic_store(&s->first_ms[k], now_ms());
			r = date_later(c);
		} else {
			atomic_store(&s->last_ms[k], now_ms());
			r = answer(c, "waited as asked", 1);
		}
		break;
	case KIND_BUSY_WAIT:
	case KIND_DOWN_WAIT:
		atomic_store(&s->last_ms[k], now_ms());
		if (atomic_load(&s->count[k]) == 1)
			atomic_store(&s->first_ms[k], now_ms());
		if (atomic_load(&s->count[k]) == 1)
			r = reply_as(c, k == KIND_BUSY_WAIT ?
				     MHD_HTTP_TOO_MANY_REQUESTS :
				     MHD_HTTP_SERVICE_UNAVAILABLE,
				     "application/json",
				     "{\"error\": \"later\"}", "2");
		else
			r = answer(c, "waited as asked", 1);
		break;
	case KIND_BUSY_LONG:
		r = reply_as(c, MHD_HTTP_TOO_MANY_REQUESTS, "application/json",
			     "{\"error\": \"come back in an hour\"}", "3600");
		break;
	case KIND_STREAM:
		/* Streams only when asked to, as the test must see. */
		r = json_is_true(json_object_get(req, "stream")) ?
		    stream_reply(c, prompt) :
		    reply(c, MHD_HTTP_BAD_REQUEST, "{\"error\": \"stream\"}");
		break;
	case KIND_OPEN:
		atomic_store(&s->open_uid, peer_uid(s, c));
		if (asprintf(&text, "open: %s", prompt) < 0)
			text = NULL;
		r = answer(c, text, 1);
		break;
	default:
		r = inject_reply(c, prompt);
		break;
	}
	free(text);
	json_decref(req);
	return r;
}

static void done(void *cls, struct MHD_Connection *c, void **state,
		 enum MHD_RequestTerminationCode code)
{
	struct upload *u = *state;

	if (u) {
		free(u->data);
		free(u);
	}
	*state = NULL;
}

struct standin *standin_start(const char *key)
{
	struct standin *s = calloc(1, sizeof(*s));
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const union MHD_DaemonInfo *info;

	if (!s)
		return NULL;
	snprintf(s->key, sizeof(s->key), "%s", key);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* A thread per connection, so a hanging reply blocks no other. */
	s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				MHD_USE_THREAD_PER_CONNECTION,
				0, NULL, NULL, handle, s,
				MHD_OPTION_SOCK_ADDR, &sa,
				MHD_OPTION_NOTIFY_COMPLETED, done, s,
				MHD_OPTION_END);
	if (!s->d) {
		free(s);
		return NULL;
	}
	info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || !info->port) {
		MHD_stop_daemon(s->d);
		free(s);
		return NULL;
	}
	return s;
}

int standin_port(const struct standin *s)
{
	return MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

long standin_open_uid(struct standin *s)
{
	return atomic_load(&s->open_uid);
}

int standin_count(struct standin *s, const char *model)
{
	int k = kind_of(model);

	return k < 0 ? -1 : atomic_load(&s->count[k]);
}

void standin_stop(struct standin *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, 1);
	MHD_stop_daemon(s->d);
	free(s);
}

void write_card(const char *dir, const char *name, const char *json)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK(mkdir(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/%s/card.json", dir, name);
	f = fopen(path, "w");
	REQUIRE(f);
	fputs(json, f);
	CHECK(fclose(f) == 0);
}
