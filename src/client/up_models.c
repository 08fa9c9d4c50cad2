/*
 * up_models.c - GET /v1/models and GET /v1/models/{model} of `troop up`:
 * the models the troop serves right now, from the coordinator's
 * /v1/models (public, unsigned), in the OpenAI list shape, cached for
 * UP_MODELS_TTL_MS so that SDKs listing models on every start do not each
 * reach the coordinator.  When the coordinator cannot be reached, a stale
 * list is better than none and is served as is.
 *
 * The cache is one JSON text under a mutex, shared by the server threads;
 * a miss is fetched with http_async on the asking thread's loop.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynbuf.h"
#include "error.h"
#include "log.h"
#include "up.h"

typedef struct {
	up_server *s;
	http_req *req;            /* NULL once the app went away */
	http_async_req *fetch;
	char model[UP_MODEL_MAX + 1];  /* "" for the list */
	dynbuf body;              /* the coordinator's reply, bounded */
	int status;
	bool toolarge;
} models_req;

void up_models_clear(up_server *s)
{
	pthread_mutex_lock(&s->models_mu);
	free(s->models_json);
	s->models_json = NULL;
	s->models_len = 0;
	s->models_at_ms = 0;
	pthread_mutex_unlock(&s->models_mu);
}

/* A copy of the cached list if there is one (fresh only when `fresh`). */
static char *cache_get(up_server *s, bool fresh, size_t *len)
{
	char *copy = NULL;

	pthread_mutex_lock(&s->models_mu);
	if (s->models_json &&
	    (!fresh || up_now_ms() - s->models_at_ms < UP_MODELS_TTL_MS)) {
		copy = malloc(s->models_len + 1);
		if (copy) {
			memcpy(copy, s->models_json, s->models_len + 1);
			*len = s->models_len;
		}
	}
	pthread_mutex_unlock(&s->models_mu);
	return copy;
}

static void cache_put(up_server *s, const char *text, size_t len)
{
	char *copy = malloc(len + 1);

	if (!copy)
		return;
	memcpy(copy, text, len + 1);
	pthread_mutex_lock(&s->models_mu);
	free(s->models_json);
	s->models_json = copy;
	s->models_len = len;
	s->models_at_ms = up_now_ms();
	pthread_mutex_unlock(&s->models_mu);
}

/* The coordinator's list in the OpenAI shape: each model gets "created"
 * (SDKs expect it) when the coordinator left it out. */
static char *normalise(const char *buf, size_t len, size_t *out_len)
{
	json_t *v = json_loadb(buf, len, 0, NULL), *data, *m;
	char *text = NULL;
	size_t i;

	data = json_object_get(v, "data");
	if (!json_is_array(data))
		goto out;
	json_array_foreach(data, i, m) {
		if (!json_is_object(m) || !json_is_string(json_object_get(m, "id")))
			goto out;
		if (!json_object_get(m, "object"))
			json_object_set_new(m, "object", json_string("model"));
		if (!json_object_get(m, "created"))
			json_object_set_new(m, "created", json_integer(0));
		if (!json_object_get(m, "owned_by"))
			json_object_set_new(m, "owned_by", json_string("monkey-troop"));
	}
	json_object_set_new(v, "object", json_string("list"));
	text = json_dumps(v, JSON_COMPACT);
	if (text)
		*out_len = strlen(text);
out:
	json_decref(v);
	return text;
}

/* Answer the app from the list text. */
static void answer(models_req *m, const char *text, size_t len)
{
	http_req *r = m->req;
	json_t *v, *data, *e;
	size_t i;

	m->req = NULL;
	http_req_on_close(r, NULL, NULL);
	if (!m->model[0]) {
		http_reply(r, 200, "application/json", text, len);
		return;
	}
	v = json_loadb(text, len, 0, NULL);
	data = json_object_get(v, "data");
	json_array_foreach(data, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		if (id && strcmp(id, m->model) == 0) {
			json_incref(e);
			json_decref(v);
			http_reply_json(r, 200, e);
			return;
		}
	}
	json_decref(v);
	up_reply_error(r, 404, "invalid_request_error", "model_not_found", NULL,
	    "no live node serves model '%s' right now; GET /v1/models lists what the troop "
	    "serves", m->model);
}

static void models_req_free(models_req *m)
{
	if (!m)
		return;
	dynbuf_free(&m->body);
	free(m);
}

static void app_closed(http_req *req, void *arg)
{
	models_req *m = arg;

	(void)req;
	m->req = NULL;
	if (m->fetch)
		http_async_cancel(m->fetch);
}

static int fetch_headers(void *arg, int status, const char *const *headers)
{
	models_req *m = arg;

	(void)headers;
	m->status = status;
	return 0;
}

static int fetch_data(void *arg, const char *data, size_t len)
{
	models_req *m = arg;
	int rc = dynbuf_add(&m->body, data, len);

	if (rc == TROOP_ETOOLARGE)
		m->toolarge = true;
	return rc == 0 ? 0 : -1;
}

static void fetch_done(void *arg, int err)
{
	models_req *m = arg;
	char *text = NULL, *stale;
	size_t len = 0;

	m->fetch = NULL;
	if (!m->req)
		goto out;
	if (err == 0 && m->status == 200 && dynbuf_len(&m->body) > 0)
		text = normalise(dynbuf_ptr(&m->body), dynbuf_len(&m->body), &len);
	if (text) {
		cache_put(m->s, text, len);
		answer(m, text, len);
		goto out;
	}
	stale = cache_get(m->s, false, &len);
	if (stale) {
		log_warn("models_stale", "coordinator=%s status=%d", m->s->coordinator, m->status);
		answer(m, stale, len);
		free(stale);
		goto out;
	}
	{
		http_req *r = m->req;
		m->req = NULL;
		http_req_on_close(r, NULL, NULL);
		if (err != 0)
			up_reply_error(r, 503, "server_error", "coordinator_unreachable", NULL,
			    "troop up cannot reach the coordinator at %s (%s)", m->s->coordinator,
			    m->toolarge ? "reply too large" : troop_error_msg());
		else
			up_reply_error(r, 502, "api_error", "upstream_error", NULL,
			    "the coordinator at %s answered /v1/models with HTTP %d", m->s->coordinator,
			    m->status);
	}
out:
	free(text);
	models_req_free(m);
}

static void handle(http_req *r, up_server *s, const char *model)
{
	static const http_async_cb cb = { fetch_headers, fetch_data, fetch_done };
	http_async_opts ao = { .connect_timeout_ms = 3000,
		.total_timeout_ms = UP_COORD_TIMEOUT_MS, .tcp_nodelay = true };
	up_thread *t = up_thread_of(r);
	models_req *m;
	char url[600], *cached;
	size_t len = 0;

	if (!up_check_key(r, s))
		return;
	m = calloc(1, sizeof(*m));
	if (!m) {
		up_reply_error(r, 500, "server_error", "internal_error", NULL, "out of memory");
		return;
	}
	m->s = s;
	dynbuf_init(&m->body, UP_COORD_REPLY_MAX * 16);
	m->req = r;
	if (model) {
		if (strlen(model) > UP_MODEL_MAX) {
			free(m);
			up_reply_error(r, 400, "invalid_request_error", "bad_request", NULL,
			    "model name too long");
			return;
		}
		snprintf(m->model, sizeof(m->model), "%s", model);
	}
	cached = cache_get(s, true, &len);
	if (cached) {
		answer(m, cached, len);
		free(cached);
		models_req_free(m);
		return;
	}
	snprintf(url, sizeof(url), "%s/v1/models", s->coordinator);
	if (http_async_request(t->async, &m->fetch, "GET", url, NULL, NULL, 0, &ao, &cb, m) != 0) {
		models_req_free(m);
		up_reply_error(r, 503, "server_error", "coordinator_unreachable", NULL, "%s",
		    troop_error_msg());
		return;
	}
	http_req_on_close(r, app_closed, m);
}

void up_handle_models(http_req *r, void *arg)
{
	handle(r, arg, NULL);
}

void up_handle_model(http_req *r, void *arg)
{
	handle(r, arg, http_req_param(r, "model"));
}

void up_handle_model_org(http_req *r, void *arg)
{
	const char *org = http_req_param(r, "org"), *name = http_req_param(r, "name");
	char id[UP_MODEL_MAX + 1];

	/* Hugging Face style ids ("Qwen/Qwen2.5-7B-Instruct"): clients send
	 * the slash as it is, not as %2F */
	if (!org || !name || (size_t)snprintf(id, sizeof(id), "%s/%s", org, name) >= sizeof(id)) {
		up_reply_error(r, 404, "invalid_request_error", "model_not_found", NULL,
		    "no such model");
		return;
	}
	handle(r, arg, id);
}
