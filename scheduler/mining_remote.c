/*
 * mining_remote: replicas run by another llmfs daemon that opted in (mining_provider.h).
 *
 * Two sides, both a provider.json of kind remote:
 *   on the coordinator   {"kind": "remote", "key": "<secret, 16+ characters>", "cpus": N}
 *                        a launch is a lease waiting for the serving daemon to claim it;
 *   on the serving one   {"kind": "remote", "coordinator": "http://HOST:PORT", "key": "...",
 *                         "provider": "<its name there>", "cpus": N, "cpu-list": "..."}
 *                        a thread asks the coordinator for work every second (GET
 *                        /v1/providers/<name>/work), starts the leases it is given as local
 *                        replicas of its own (mining_local.c, as the provider's owner there,
 *                        the job's token on their stdin), and reports their state and the
 *                        device-seconds its kernel metered (POST .../report).
 * The key authenticates the serving daemon; the replicas then talk to the coordinator with
 * the job's token like any other.  A serving daemon that stops asking for 30 s has its
 * claimed leases reported lost, and the coordinator starts them elsewhere or again.
 * Device-seconds of a remote replica are the serving daemon's word (its kernel's CPU time).
 */
#include "mining_provider.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "mining_wire.h"

#define LEASE_SILENT_S 30.0

struct lease {
	struct lease *next;
	char id[MINING_ID_MAX];
	char *url, *job, *token;
	unsigned slot, threads;
	int claimed, cancel;
	double last_seen;
	struct mining_replica_status st;
};

struct mining_provider {
	pthread_mutex_t lock;
	char key[256];
	unsigned cpus;
	unsigned long next_id;
	double last_contact;
	struct lease *leases;
};

static int key_ok(const char *want, const char *got)
{
	size_t n = strlen(want);
	unsigned char d = 0;

	if (!got || strlen(got) != n || n < 16)
		return 0;
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(want[i] ^ got[i]);
	return d == 0;
}

static int get_cpus(const json_t *cfg, unsigned *ret, char err[MINING_ERR_MAX])
{
	json_t *v = json_object_get(cfg, "cpus");

	*ret = 1;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 4096) {
		snprintf(err, MINING_ERR_MAX, "cpus: not a whole number from 1 to 4096");
		return -EINVAL;
	}
	*ret = (unsigned)json_integer_value(v);
	return 0;
}

static int get_key(const json_t *cfg, char *out, size_t len, char err[MINING_ERR_MAX])
{
	const char *k = json_string_value(json_object_get(cfg, "key"));

	if (!k || strlen(k) < 16 || strlen(k) >= len) {
		snprintf(err, MINING_ERR_MAX, "key: missing or not a secret of 16 to 255 "
			 "characters");
		return -EINVAL;
	}
	snprintf(out, len, "%s", k);
	return 0;
}

static int remote_open(const json_t *cfg, const char *state_dir, struct mining_provider **ret,
		       char err[MINING_ERR_MAX])
{
	struct mining_provider *p = calloc(1, sizeof(*p));

	(void)state_dir;
	if (!p)
		return -ENOMEM;
	if (get_key(cfg, p->key, sizeof(p->key), err) < 0 || get_cpus(cfg, &p->cpus, err) < 0) {
		free(p);
		return -EINVAL;
	}
	pthread_mutex_init(&p->lock, NULL);
	*ret = p;
	return 0;
}

static void lease_free(struct lease *l)
{
	free(l->url);
	free(l->job);
	free(l->token);
	free(l);
}

static void remote_close(struct mining_provider *p)
{
	if (!p)
		return;
	while (p->leases) {
		struct lease *l = p->leases;

		p->leases = l->next;
		lease_free(l);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static int remote_alive(struct mining_provider *p, char err[MINING_ERR_MAX])
{
	int r = 0;

	pthread_mutex_lock(&p->lock);
	if (!p->last_contact || clock_mono_s() - p->last_contact > LEASE_SILENT_S) {
		snprintf(err, MINING_ERR_MAX, "its daemon has not asked for work %s",
			 p->last_contact ? "for 30 s" : "yet");
		r = -EHOSTDOWN;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

static int remote_launch(struct mining_provider *p, const struct mining_launch *l,
			 char id[MINING_ID_MAX], char err[MINING_ERR_MAX])
{
	struct lease *ls = calloc(1, sizeof(*ls));

	if (!ls)
		return -ENOMEM;
	/* argv: exe --mining-replica URL JOB SLOT THREADS (mining_job.c) */
	ls->url = strdup(l->argv[2]);
	ls->job = strdup(l->argv[3]);
	ls->token = strdup(l->secret ? l->secret : "");
	ls->slot = (unsigned)atoi(l->argv[4]);
	ls->threads = l->cpus ? l->cpus : 1;
	if (!ls->url || !ls->job || !ls->token) {
		lease_free(ls);
		snprintf(err, MINING_ERR_MAX, "out of memory");
		return -ENOMEM;
	}
	ls->st.state = MINING_REPLICA_PENDING;
	pthread_mutex_lock(&p->lock);
	snprintf(ls->id, sizeof(ls->id), "lease-%lu", ++p->next_id);
	snprintf(id, MINING_ID_MAX, "%s", ls->id);
	ls->last_seen = clock_mono_s();
	ls->next = p->leases;
	p->leases = ls;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static struct lease *find(struct mining_provider *p, const char *id)
{
	for (struct lease *l = p->leases; l; l = l->next)
		if (!strcmp(l->id, id))
			return l;
	return NULL;
}

static int remote_poll(struct mining_provider *p, const char *id, struct mining_replica_status *st)
{
	struct lease *l;
	int r = 0;

	pthread_mutex_lock(&p->lock);
	l = find(p, id);
	if (!l) {
		r = -ENOENT;
	} else {
		int live = l->st.state == MINING_REPLICA_RUNNING ||
			   l->st.state == MINING_REPLICA_PENDING;

		if (live && l->claimed && clock_mono_s() - l->last_seen > LEASE_SILENT_S)
			l->st.state = MINING_REPLICA_LOST;
		*st = l->st;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

static int remote_cancel(struct mining_provider *p, const char *id)
{
	struct lease *l;

	pthread_mutex_lock(&p->lock);
	l = find(p, id);
	if (l) {
		l->cancel = 1;
		if (!l->claimed) {
			l->st.state = MINING_REPLICA_KILLED;
			l->st.signal = 15;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void remote_forget(struct mining_provider *p, const char *id)
{
	pthread_mutex_lock(&p->lock);
	for (struct lease **pp = &p->leases; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->id, id)) {
			struct lease *l = *pp;

			/* a cancelled lease stays until its daemon has heard of it */
			if (l->cancel && l->claimed && (l->st.state == MINING_REPLICA_RUNNING ||
							l->st.state == MINING_REPLICA_PENDING))
				break;
			*pp = l->next;
			lease_free(l);
			break;
		}
	pthread_mutex_unlock(&p->lock);
}

static unsigned remote_cpus(struct mining_provider *p)
{
	return p->cpus;
}

static unsigned answer(char **body, size_t *len, unsigned status, const char *text)
{
	*body = strdup(text);
	*len = *body ? strlen(*body) : 0;
	return status;
}

unsigned mining_remote_handle(struct mining_provider *p, const char *key, const char *op,
			      const void *body, size_t len, char **ret_body, size_t *ret_len)
{
	json_t *arr, *in;
	double now = clock_mono_s();
	unsigned status = 200;

	if (!key_ok(p->key, key))
		return answer(ret_body, ret_len, 403, "{\"error\": \"bad key\"}\n");
	pthread_mutex_lock(&p->lock);
	p->last_contact = now;
	if (!strcmp(op, "work")) {
		arr = json_array();
		for (struct lease *l = p->leases; l && arr; l = l->next) {
			if (l->st.state != MINING_REPLICA_PENDING &&
			    l->st.state != MINING_REPLICA_RUNNING)
				continue;
			l->claimed = 1;
			l->last_seen = now;
			json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:b}",
				"id", l->id, "url", l->url, "job", l->job, "token", l->token,
				"slot", (int)l->slot, "threads", (int)l->threads, "cancel", l->cancel));
		}
		*ret_body = arr ? json_dumps(arr, 0) : NULL;
		*ret_len = *ret_body ? strlen(*ret_body) : 0;
		json_decref(arr);
	} else if (!strcmp(op, "report")) {
		size_t i;
		json_t *e;

		in = json_loadb(body, len, 0, NULL);
		if (!json_is_array(in)) {
			status = answer(ret_body, ret_len, 400, "{\"error\": \"not a JSON array\"}\n");
		} else {
			json_array_foreach(in, i, e) {
				const char *id = json_string_value(json_object_get(e, "id"));
				const char *state = json_string_value(json_object_get(e, "state"));
				struct lease *l = id ? find(p, id) : NULL;

				if (!l || !state)
					continue;
				l->last_seen = now;
				l->st.device_seconds = json_number_value(json_object_get(e,
										"device_seconds"));
				if (!strcmp(state, "running"))
					l->st.state = MINING_REPLICA_RUNNING;
				else if (!strcmp(state, "exited"))
					l->st.state = MINING_REPLICA_EXITED;
				else if (!strcmp(state, "killed"))
					l->st.state = MINING_REPLICA_KILLED;
				else
					l->st.state = MINING_REPLICA_LOST;
				l->st.exit_code = (int)json_integer_value(json_object_get(e, "exit_code"));
				l->st.signal = (int)json_integer_value(json_object_get(e, "signal"));
			}
			status = answer(ret_body, ret_len, 200, "{}\n");
		}
		json_decref(in);
	} else {
		status = answer(ret_body, ret_len, 404, "{\"error\": \"no such operation\"}\n");
	}
	pthread_mutex_unlock(&p->lock);
	return status;
}

const struct mining_provider_ops mining_remote_ops = {
	.kind = "remote",
	.open = remote_open,
	.close = remote_close,
	.alive = remote_alive,
	.launch = remote_launch,
	.poll = remote_poll,
	.cancel = remote_cancel,
	.forget = remote_forget,
	.cpus = remote_cpus,
};

/* ---- the serving side ---------------------------------------------------------------------- */

struct served {
	struct served *next;
	char lease[MINING_ID_MAX];
	char local[MINING_ID_MAX];   /* "" once ended and reported */
	int ended_reported;
};

struct mining_serve {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int closing;
	pthread_t th;
	char *url, *name, *exe, *key;
	struct plan_proc_user owner;
	struct mining_provider *local;
	struct served *served;
	unsigned running;
	char error[MINING_ERR_MAX];
};

static struct served *served_find(struct mining_serve *s, const char *lease)
{
	for (struct served *x = s->served; x; x = x->next)
		if (!strcmp(x->lease, lease))
			return x;
	return NULL;
}

static void serve_launch(struct mining_serve *s, json_t *e)
{
	const char *id = json_string_value(json_object_get(e, "id"));
	const char *url = json_string_value(json_object_get(e, "url"));
	const char *job = json_string_value(json_object_get(e, "job"));
	const char *token = json_string_value(json_object_get(e, "token"));
	int slot = (int)json_integer_value(json_object_get(e, "slot"));
	int threads = (int)json_integer_value(json_object_get(e, "threads"));
	char sslot[16], sthreads[16], name[160], err[MINING_ERR_MAX] = "";
	char *argv[] = { s->exe, "--mining-replica", (char *)url, (char *)job, sslot, sthreads,
			 NULL };
	struct mining_launch l = { argv, &s->owner, (unsigned)threads, NULL, name, token };
	struct served *x;

	if (!id || !url || !job || !token || strncmp(url, "http", 4) || slot < 0 || threads < 1 ||
	    served_find(s, id) || !(x = calloc(1, sizeof(*x))))
		return;
	snprintf(x->lease, sizeof(x->lease), "%s", id);
	snprintf(sslot, sizeof(sslot), "%d", slot);
	snprintf(sthreads, sizeof(sthreads), "%d", threads);
	snprintf(name, sizeof(name), "%s/%d", job, slot);
	if (mining_local_ops.launch(s->local, &l, x->local, err) < 0) {
		snprintf(s->error, sizeof(s->error), "%.200s", err);
		x->local[0] = '\0';
	}
	x->next = s->served;
	s->served = x;
}

static const char *state_name(enum mining_replica_state st)
{
	switch (st) {
	case MINING_REPLICA_PENDING:
	case MINING_REPLICA_RUNNING:
		return "running";
	case MINING_REPLICA_EXITED:
		return "exited";
	case MINING_REPLICA_KILLED:
		return "killed";
	default:
		return "lost";
	}
}

static void serve_once(struct mining_serve *s)
{
	char url[1024], err[512];
	struct mining_http_reply rep;
	json_t *arr, *e, *report = json_array();
	size_t i;
	unsigned running = 0;
	char *body;

	snprintf(url, sizeof(url), "%s/v1/providers/%s/work", s->url, s->name);
	if (mining_http(url, s->key, NULL, 0, 30, &rep, err, sizeof(err)) < 0) {
		pthread_mutex_lock(&s->lock);
		snprintf(s->error, sizeof(s->error), "%.200s", err);
		pthread_mutex_unlock(&s->lock);
		json_decref(report);
		return;
	}
	arr = rep.status == 200 ? json_loadb(rep.body, rep.len, 0, NULL) : NULL;
	pthread_mutex_lock(&s->lock);
	if (rep.status != 200)
		snprintf(s->error, sizeof(s->error), "%.200s: HTTP %ld", url, rep.status);
	else
		s->error[0] = '\0';
	json_array_foreach(arr, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		struct served *x = id ? served_find(s, id) : NULL;

		if (!x && !json_is_true(json_object_get(e, "cancel")))
			serve_launch(s, e);
		else if (x && x->local[0] && json_is_true(json_object_get(e, "cancel")))
			mining_local_ops.cancel(s->local, x->local);
	}
	for (struct served *x = s->served; x; x = x->next) {
		struct mining_replica_status st = { MINING_REPLICA_LOST, 0, 0, 0 };

		if (x->ended_reported)
			continue;
		if (x->local[0])
			mining_local_ops.poll(s->local, x->local, &st);
		running += st.state == MINING_REPLICA_RUNNING;
		json_array_append_new(report, json_pack("{s:s,s:s,s:i,s:i,s:f}", "id", x->lease,
			"state", state_name(st.state), "exit_code", st.exit_code, "signal", st.signal,
			"device_seconds", st.device_seconds));
		if (st.state != MINING_REPLICA_RUNNING && st.state != MINING_REPLICA_PENDING) {
			x->ended_reported = 1;
			if (x->local[0])
				mining_local_ops.forget(s->local, x->local);
		}
	}
	s->running = running;
	pthread_mutex_unlock(&s->lock);
	json_decref(arr);
	mining_http_reply_free(&rep);
	body = json_dumps(report, 0);
	json_decref(report);
	snprintf(url, sizeof(url), "%s/v1/providers/%s/report", s->url, s->name);
	if (body && mining_http(url, s->key, body, strlen(body), 30, &rep, err, sizeof(err)) == 0)
		mining_http_reply_free(&rep);
	free(body);
}

/* The thread's replicas are spawned from it: they die with it (parent-death signal). */
static void *serve_main(void *arg)
{
	struct mining_serve *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->closing) {
		struct timespec ts;

		pthread_mutex_unlock(&s->lock);
		serve_once(s);
		pthread_mutex_lock(&s->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!s->closing)
			pthread_cond_timedwait(&s->wake, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int mining_remote_serve_start(const json_t *cfg, const struct plan_proc_user *owner,
			      const char *exe, const char *name, struct mining_serve **ret,
			      char err[MINING_ERR_MAX])
{
	struct mining_serve *s = calloc(1, sizeof(*s));
	const char *url = json_string_value(json_object_get(cfg, "coordinator"));
	const char *pname = json_string_value(json_object_get(cfg, "provider"));
	char key[256];
	int r;

	if (!s)
		return -ENOMEM;
	if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
		snprintf(err, MINING_ERR_MAX, "coordinator: not an http:// URL");
		free(s);
		return -EINVAL;
	}
	if ((r = get_key(cfg, key, sizeof(key), err)) < 0 ||
	    (r = mining_local_ops.open(cfg, NULL, &s->local, err)) < 0) {
		free(s);
		return r;
	}
	s->url = strdup(url);
	s->name = strdup(pname ? pname : name);
	s->exe = strdup(exe);
	s->key = strdup(key);
	s->owner = *owner;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	if (!s->url || !s->name || !s->exe || !s->key ||
	    (r = -pthread_create(&s->th, NULL, serve_main, s)) < 0) {
		mining_local_ops.close(s->local);
		free(s->url);
		free(s->name);
		free(s->exe);
		free(s->key);
		free(s);
		return r < 0 ? r : -ENOMEM;
	}
	*ret = s;
	return 0;
}

void mining_remote_serve_stop(struct mining_serve *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->closing = 1;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->th, NULL);
	mining_local_ops.close(s->local);
	while (s->served) {
		struct served *x = s->served;

		s->served = x->next;
		free(x);
	}
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->wake);
	free(s->url);
	free(s->name);
	free(s->exe);
	free(s->key);
	free(s);
}

void mining_remote_serve_status(struct mining_serve *s, char *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	snprintf(buf, len, "coordinator %s as %s\nreplicas running %u\n%s%s%s", s->url, s->name,
		 s->running, s->error[0] ? "serve error " : "", s->error, s->error[0] ? "\n" : "");
	pthread_mutex_unlock(&s->lock);
}
