/*
 * api_meta.c - the coordinator's public, unsigned endpoints about itself:
 * GET /health, GET /public-key, GET /.well-known/jwks.json, GET /metrics.
 */
#include <stdlib.h>
#include <time.h>

#include "coordinator.h"
#include "encoding.h"
#include "error.h"

static void h_health(http_req *r, void *arg)
{
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:s, s:s}", "status", "healthy",
	    "version", TROOP_VERSION, "ledger", ledger_backend_name(((coord *)arg)->ledger),
	    "registry", registry_backend_name(((coord *)arg)->reg)));
}

static void h_public_key(http_req *r, void *arg)
{
	coord *c = arg;
	char pk[64];

	b64url_encode(pk, sizeof(pk), c->pub.pk, sizeof(c->pub.pk));
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:s}", "public_key", pk,
	    "kid", c->pub.kid, "alg", "EdDSA"));
}

static void h_jwks(http_req *r, void *arg)
{
	coord *c = arg;
	char pk[64];

	b64url_encode(pk, sizeof(pk), c->pub.pk, sizeof(c->pub.pk));
	coord_reply_json(r, 200, json_pack("{s:[{s:s, s:s, s:s, s:s, s:s, s:s}]}", "keys",
	    "kty", "OKP", "crv", "Ed25519", "x", pk, "kid", c->pub.kid, "alg", "EdDSA",
	    "use", "sig"));
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
