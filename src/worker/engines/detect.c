/*
 * detect.c - fetch engine health, version and models over HTTP (blocking
 * client of http_client.h) and hand the replies to the drivers' parsers.
 * All network code of the engine drivers lives in this file; everything it
 * calls in engine.c and the per-engine files is pure.  See detect.h.
 */
#include "engines/detect.h"

#include "error.h"
#include "http_client.h"
#include "log.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GET base+path as JSON, with the engine's API key when it has one.
 * *body is NULL when the reply is not JSON. */
static int get_json(http_client *c, int *status, json_t **body, const char *base,
    const char *path, const char *api_key)
{
	char url[ENGINE_URL_MAX + 64], authz[ENGINE_KEY_MAX + 32];
	const char *headers[2] = { NULL, NULL };
	int rc;

	if ((size_t)snprintf(url, sizeof(url), "%s%s", base, path) >= sizeof(url))
		return troop_error_set(TROOP_EINVAL, "engine URL '%.128s' is too long", base);
	*status = 0;
	*body = NULL;
	if (api_key && api_key[0]) {
		snprintf(authz, sizeof(authz), "Authorization: Bearer %s", api_key);
		headers[0] = authz;
	}
	rc = http_request_json(c, status, body, "GET", url, headers, NULL);
	sodium_memzero(authz, sizeof(authz));
	return rc;
}

/* Models Ollama is asked about with POST /api/show, per probe: the rest
 * are advertised without capabilities (unknown). */
#define OLLAMA_SHOW_MAX 32

/* Ollama's POST /api/show for each model (at most OLLAMA_SHOW_MAX): its
 * context length and capabilities.  A model Ollama says nothing about
 * keeps them unknown; no failure here fails the probe. */
static void ollama_show_all(engine_model_list *models, http_client *c, const char *base,
    const char *api_key)
{
	char url[ENGINE_URL_MAX + 64], authz[ENGINE_KEY_MAX + 32];
	const char *headers[2] = { NULL, NULL };

	if ((size_t)snprintf(url, sizeof(url), "%s/api/show", base) >= sizeof(url))
		return;
	if (api_key && api_key[0]) {
		snprintf(authz, sizeof(authz), "Authorization: Bearer %s", api_key);
		headers[0] = authz;
	}
	for (size_t i = 0; i < models->count && i < OLLAMA_SHOW_MAX; i++) {
		engine_model *m = &models->items[i];
		json_t *req = json_pack("{s:s}", "model", m->name), *body = NULL;
		int status = 0;

		if (req && http_request_json(c, &status, &body, "POST", url, headers, req) == 0 &&
		    status == 200 && body)
			(void)ollama_parse_show(m, body);
		json_decref(req);
		json_decref(body);
	}
	sodium_memzero(authz, sizeof(authz));
}

/* Models of a llama.cpp server from /props, when /v1/models gave none. */
static int llamacpp_props_models(engine_model_list *out, const json_t *props)
{
	engine_model m = { .engine = ENGINE_LLAMACPP, .loaded = true };

	if (llamacpp_parse_props_model(m.name, sizeof(m.name), props) < 0)
		return 0;
	return engine_model_list_add(out, &m);
}

/* Health, version and models into *info (whose type and url are set). */
/* Added to a 404 from an engine's own path: something answers at the URL,
 * but not as the kind of engine the user named. */
#define WRONG_KIND_HINT "; something answers there, but not as this kind of engine: " \
	"check TYPE in --engine TYPE=URL (ollama, vllm, lmstudio, llamacpp, openai), " \
	"or leave --engine out to detect it"

static int probe(engine_info *info, http_client *c, const struct engine_driver *d)
{
	engine_model_list models = { 0 };
	json_t *body = NULL, *props = NULL;
	int status, rc;

	info->ready = true;
	if (d->health_path) {
		rc = get_json(c, &status, &body, info->url, d->health_path, info->api_key);
		if (rc < 0)
			goto out;
		rc = d->parse_health(&info->ready, status, body);
		if (rc < 0)
			goto out;
		if (!info->ready) {
			/* llama.cpp answers 503 {"error":{...}} while loading */
			if (status != 503) {
				rc = troop_error_set(TROOP_EINVAL, "%s at %s: %s answered HTTP %d "
				    "without {\"status\":\"ok\"}", d->name, info->url, d->health_path,
				    status);
				goto out;
			}
			rc = 0;
			goto out;
		}
		json_decref(body);
		body = NULL;
	}

	if (d->version_path) {
		rc = get_json(c, &status, &body, info->url, d->version_path, info->api_key);
		if (rc < 0)
			goto out;
		if (status == 200 && body)
			rc = d->parse_version(info->version, sizeof(info->version), body);
		else
			rc = troop_error_set(TROOP_EINVAL, "%s at %s: %s answered HTTP %d%s",
			    d->name, info->url, d->version_path, status, status == 404 ?
			    WRONG_KIND_HINT : "");
		if (rc < 0 && d->type != ENGINE_LLAMACPP)
			goto out; /* the version reply is how Ollama and vLLM are told apart */
		rc = 0;
		info->version[sizeof(info->version) - 1] = '\0';
		if (d->type == ENGINE_LLAMACPP && status == 200 && body)
			props = json_incref(body);
		json_decref(body);
		body = NULL;
	}

	rc = get_json(c, &status, &body, info->url, d->models_path, info->api_key);
	if (rc < 0)
		goto out;
	if (status != 200 || !body) {
		rc = troop_error_set(TROOP_EINVAL, "%s at %s: %s answered HTTP %d%s",
		    d->name, info->url, d->models_path, status, status == 404 ?
		    WRONG_KIND_HINT : "");
	} else {
		rc = d->parse_models(&models, body);
	}
	if (rc < 0)
		goto out;
	if (models.count == 0 && props)
		rc = llamacpp_props_models(&models, props);
	if (rc < 0)
		goto out;
	/* /props describes the one model a llama.cpp server serves (router
	 * mode lists several: those stay as /v1/models says) */
	if (props && models.count == 1)
		(void)llamacpp_parse_props_caps(&models.items[0], props);
	if (d->type == ENGINE_OLLAMA)
		ollama_show_all(&models, c, info->url, info->api_key);

	engine_model_list_clear(&info->models);
	info->models = models;
	models = (engine_model_list){ 0 };
out:
	engine_model_list_clear(&models);
	json_decref(body);
	json_decref(props);
	return rc;
}

int engine_detect(engine_info *out, http_client *c, const struct engine_driver *d,
    const char *base_url, const char *api_key)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!d)
		return troop_error_set(TROOP_EINVAL, "no engine driver given");
	if (strlen(base_url) >= sizeof(out->url))
		return troop_error_set(TROOP_EINVAL, "engine URL '%.128s' is too long",
		    base_url);
	out->type = d->type;
	strcpy(out->url, base_url);
	out->port = engine_url_port(base_url);
	if (api_key)
		snprintf(out->api_key, sizeof(out->api_key), "%s", api_key);
	rc = probe(out, c, d);
	if (rc < 0) {
		engine_info_clear(out);
		sodium_memzero(out, sizeof(*out));
		return rc;
	}
	log_info("engine_detected", "type=%s url=%s version=%s ready=%d models=%zu",
	    d->name, out->url, out->version[0] ? out->version : "-", out->ready,
	    out->models.count);
	return 0;
}

int engine_refresh(engine_info *info, http_client *c)
{
	const struct engine_driver *d = engine_driver_get(info->type);
	int rc;

	if (!d)
		return troop_error_set(TROOP_EINVAL, "engine type %d is invalid", info->type);
	rc = probe(info, c, d);
	if (rc < 0)
		info->ready = false;
	return rc;
}

bool engine_ping(const engine_info *info, http_client *c)
{
	const struct engine_driver *d = engine_driver_get(info->type);
	const char *path;
	json_t *body = NULL;
	bool ready = false;
	int status = 0;

	if (!d)
		return false;
	path = d->health_path ? d->health_path : d->version_path ? d->version_path :
	    d->models_path;
	if (get_json(c, &status, &body, info->url, path, info->api_key) == 0) {
		if (d->health_path && d->parse_health)
			(void)d->parse_health(&ready, status, body);
		else
			ready = status == 200;
	}
	json_decref(body);
	return ready;
}

int engine_autodetect(engine_info **out, size_t *count, http_client *c,
    const char *host)
{
	engine_info *found = NULL;
	size_t n = 0, cap = 0;
	int seen[ENGINE_TYPE_COUNT_ * ENGINE_MAX_PORTS];
	size_t nseen = 0;

	*out = NULL;
	*count = 0;
	if (!host)
		host = "127.0.0.1";
	for (int t = 0; t < ENGINE_TYPE_COUNT_; t++) {
		const struct engine_driver *d = engine_driver_get((engine_type)t);

		for (int p = 0; p < ENGINE_MAX_PORTS && d->default_ports[p]; p++) {
			char url[ENGINE_URL_MAX];
			engine_info info;
			bool dup = false;
			int port = d->default_ports[p];

			for (size_t i = 0; i < nseen; i++)
				dup = dup || seen[i] == port;
			if (dup)
				continue;
			snprintf(url, sizeof(url), strchr(host, ':') ? "http://[%s]:%d" :
			    "http://%s:%d", host, port);
			if (engine_detect(&info, c, d, url, NULL) < 0) {
				log_debug("engine_probe", "type=%s url=%s result=%s", d->name, url,
				    troop_error_msg());
				continue;
			}
			seen[nseen++] = port;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 4;
				engine_info *grown = realloc(found, ncap * sizeof(*grown));

				if (!grown) {
					engine_info_clear(&info);
					engine_info_array_free(found, n);
					return troop_error_set(TROOP_ENOMEM,
					    "out of memory detecting engines");
				}
				found = grown;
				cap = ncap;
			}
			found[n++] = info;
		}
	}
	*out = found;
	*count = n;
	return 0;
}
