/*
 * api_meta.c - the coordinator's public, unsigned endpoints about itself:
 * GET /health, GET /public-key, GET /.well-known/jwks.json, GET /metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "encoding.h"
#include "error.h"
#include "proto.h"

static void h_health(http_req *r, void *arg)
{
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:s, s:s}", "status", "healthy",
	    "version", TROOP_VERSION, "ledger", ledger_backend_name(((coord *)arg)->ledger),
	    "registry", registry_backend_name(((coord *)arg)->reg)));
}

static void public_key_of(proto_public_key *k, const coord *c)
{
	memset(k, 0, sizeof(*k));
	b64url_encode(k->public_key, sizeof(k->public_key), c->pub.pk, sizeof(c->pub.pk));
	snprintf(k->kid, sizeof(k->kid), "%s", c->pub.kid);
	snprintf(k->alg, sizeof(k->alg), "EdDSA");
}

static void h_public_key(http_req *r, void *arg)
{
	proto_public_key k;

	if (coord_anon_allowed(r) != 0)
		return;
	public_key_of(&k, arg);
	coord_reply_json(r, 200, proto_public_key_encode(&k));
}

static void h_jwks(http_req *r, void *arg)
{
	proto_public_key k;

	if (coord_anon_allowed(r) != 0)
		return;
	public_key_of(&k, arg);
	coord_reply_json(r, 200, proto_jwks_encode(&k));
}

static void h_metrics(http_req *r, void *arg)
{
	coord *c = arg;
	int64_t now = (int64_t)time(NULL);
	size_t live = 0, nmodels = 0, len = 0;
	registry_model_info *models = NULL;
	char *text;

	if (registry_count_nodes(&live, c->reg, now) != 0)
		live = 0;
	if (registry_models(&models, &nmodels, c->reg, now) != 0)
		nmodels = 0;
	free(models);
	text = metrics_render(&c->metrics, live, nmodels, (long)(now - c->started), &len);
	if (text && queue_metrics_append(&text, &len, c->reg, now) != 0) {
		free(text);
		text = NULL;
	}
	if (!text) {
		coord_reply_error(r, TROOP_ENOMEM, "out of memory rendering metrics");
		return;
	}
	METRIC_ADD(&c->metrics, req_2xx, 1);
	http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

void api_meta_routes(http_server *s, coord *c)
{
	http_server_route(s, "GET", "/health", h_health, c);
	http_server_route(s, "GET", "/public-key", h_public_key, c);
	http_server_route(s, "GET", "/.well-known/jwks.json", h_jwks, c);
	http_server_route(s, "GET", "/metrics", h_metrics, c);
}
