/*
 * api_nodes.c - node registration and discovery:
 *   POST /heartbeat        signed by the node (node_id must be the signer)
 *   GET  /peers?model=M    live nodes, optionally serving M
 *   GET  /v1/models        the models live nodes serve, OpenAI list shape
 *   GET  /nodes/{node_id}  one node: live record and durable facts
 *
 * The live record goes to the registry (TTL); the durable facts (owner,
 * multiplier, verification) to the ledger, written only when they change.
 * The heartbeat copies the ledger row it reads into the registry record
 * (registry_facts), so /peers and /v1/models read the registry alone;
 * /nodes/{id} reads the ledger only for a node that is not live.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "error.h"
#include "json.h"
#include "log.h"

/* ---- heartbeat parsing ------------------------------------------------------ */

static int parse_models(registry_node *n, json_t *arr)
{
	size_t i;
	json_t *m;

	n->n_models = json_array_size(arr);
	if (n->n_models == 0)
		return 0;
	n->models = calloc(n->n_models, sizeof(*n->models));
	if (!n->models)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	json_array_foreach(arr, i, m) {
		const char *name = NULL, *hash = "", *engine = "";
		int64_t size = 0;
		int rc;
		if (!json_is_object(m))
			return troop_error_set(TROOP_EINVAL, "models[%zu] must be an object", i);
		if ((rc = json_get_strn(&name, m, "name", true, REGISTRY_MODEL_MAX)) ||
		    (rc = json_get_str(&hash, m, "content_hash", false)) ||
		    (rc = json_get_int(&size, m, "size_bytes", false, 0, INT64_MAX)) ||
		    (rc = json_get_str(&engine, m, "engine", false)))
			return troop_error_set(rc, "models[%zu]: %s", i, troop_error_msg());
		if (strlen(hash) > REGISTRY_HASH_MAX || strlen(engine) > REGISTRY_ENGINE_MAX)
			return troop_error_set(TROOP_EINVAL,
			    "models[%zu]: content_hash or engine too long", i);
		snprintf(n->models[i].name, sizeof(n->models[i].name), "%s", name);
		snprintf(n->models[i].content_hash, sizeof(n->models[i].content_hash), "%s", hash);
		snprintf(n->models[i].engine, sizeof(n->models[i].engine), "%s", engine);
		n->models[i].size_bytes = size;
	}
	return 0;
}

static int valid_ip(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Fill *n from the heartbeat body; the strings are copied, models and
 * extra_json allocated (registry_node_clear frees them). */
static int parse_heartbeat(registry_node *n, json_t *body, const char *signer)
{
	const char *node_id, *ip, *status, *name = "", *enc = "", *owner = "", *version = "";
	int64_t port, active = 0, maxj = 0;
	json_t *models = NULL, *load = NULL, *hw = NULL, *engines = NULL;
	int rc;

	if ((rc = json_get_strn(&node_id, body, "node_id", true, TROOP_ID_LEN)) ||
	    (rc = json_get_strn(&ip, body, "tailscale_ip", true, REGISTRY_IP_MAX)) ||
	    (rc = json_get_int(&port, body, "port", true, 1, 65535)) ||
	    (rc = json_get_str(&status, body, "status", true)) ||
	    (rc = json_get_str(&name, body, "name", false)) ||
	    (rc = json_get_array(&models, body, "models", false, REGISTRY_MODELS_MAX)) ||
	    (rc = json_get_object(&load, body, "load", false)) ||
	    (rc = json_get_object(&hw, body, "hardware", false)) ||
	    (rc = json_get_array(&engines, body, "engines", false, 32)) ||
	    (rc = json_get_str(&enc, body, "encryption_public_key", false)) ||
	    (rc = json_get_str(&owner, body, "owner", false)) ||
	    (rc = json_get_str(&version, body, "version", false)))
		return rc;
	if (strcmp(node_id, signer) != 0)
		return troop_error_set(TROOP_EFORBIDDEN,
		    "node_id must be the signing key's account id: a node can only "
		    "heartbeat for itself");
	if (!valid_ip(ip))
		return troop_error_set(TROOP_EINVAL,
		    "field 'tailscale_ip' must be an IPv4 or IPv6 address");
	if (registry_status_parse(&n->status, status) != 0)
		return troop_error_set(TROOP_EINVAL,
		    "field 'status' must be one of IDLE, BUSY, OFFLINE");
	if (strlen(name) > REGISTRY_NAME_MAX || strlen(enc) > REGISTRY_KEY_MAX ||
	    strlen(version) > REGISTRY_VERSION_MAX)
		return troop_error_set(TROOP_EINVAL,
		    "field 'name', 'encryption_public_key' or 'version' is too long");
	if (owner[0]) {
		unsigned char pk[TROOP_PK_LEN];
		if (account_id_decode(pk, owner) != 0)
			return troop_error_set(TROOP_EINVAL,
			    "field 'owner' must be an account id (43 base64url characters)");
	}
	if (load && ((rc = json_get_int(&active, load, "active_jobs", false, 0, 100000)) ||
	    (rc = json_get_int(&maxj, load, "max_jobs", false, 0, 100000))))
		return troop_error_set(rc, "load: %s", troop_error_msg());

	snprintf(n->node_id, sizeof(n->node_id), "%s", node_id);
	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->ip, sizeof(n->ip), "%s", ip);
	n->port = (int)port;
	n->active_jobs = (int)active;
	n->max_jobs = (int)maxj;
	snprintf(n->encryption_public_key, sizeof(n->encryption_public_key), "%s", enc);
	snprintf(n->owner, sizeof(n->owner), "%s", owner[0] ? owner : node_id);
	snprintf(n->version, sizeof(n->version), "%s", version);
	if (models && (rc = parse_models(n, models)) != 0)
		return rc;
	if (hw || engines) {
		json_t *extra = json_object();
		if (hw)
			json_object_set(extra, "hardware", hw);
		if (engines)
			json_object_set(extra, "engines", engines);
		n->extra_json = json_dump_compact(extra, NULL);
		json_decref(extra);
		if (!n->extra_json)
			return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	return 0;
}

static void h_heartbeat(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	int64_t now = (int64_t)time(NULL);
	registry_node n;
	ledger_node ln;
	json_t *body = NULL;
	size_t len;
	const char *raw;
	int rc;

	memset(&n, 0, sizeof(n));
	if (coord_authenticate(r, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) != 0 ||
	    (rc = parse_heartbeat(&n, body, signer)) != 0 ||
	    (rc = addr_policy_check(&c->addrs, n.ip)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (n.status == NODE_OFFLINE) {
		registry_remove_node(c->reg, n.node_id);
		log_info("node_offline", "node=%.8s", n.node_id);
		coord_reply_json(r, 200, json_pack("{s:s, s:I, s:I}", "status", "removed",
		    "ttl", (json_int_t)0, "next_heartbeat", (json_int_t)0));
		goto out;
	}
	if ((rc = ledger_node_touch(&ln, NULL, t->db, n.node_id, n.owner, n.name, now)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	snprintf(n.owner, sizeof(n.owner), "%s", ln.owner);
	coord_node_facts(&n.facts, c, &ln, now);
	if ((rc = registry_put_node(c->reg, &n, c->node_ttl, now)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	METRIC_ADD(&c->metrics, heartbeats, 1);
	{
		int64_t next = c->node_ttl / 3 > 0 ? c->node_ttl / 3 : 1;
		coord_reply_json(r, 200, json_pack("{s:s, s:I, s:I, s:b, s:f}", "status", "seen",
		    "ttl", (json_int_t)c->node_ttl, "next_heartbeat", (json_int_t)next,
		    "verified", ln.verified, "multiplier", ln.multiplier));
	}
out:
	registry_node_clear(&n);
	json_decref(body);
}

/* ---- discovery --------------------------------------------------------------- */

/* The public view of a node: its heartbeat fields plus the durable facts,
 * from the live record's copy (live) or from the ledger row `ln` (not
 * live; NULL when the ledger does not know the node). */
static json_t *node_json(const coord *c, const registry_node *n, const ledger_node *ln,
    bool live)
{
	const registry_facts *f = &n->facts;

	json_t *o = json_object(), *models = json_array();

	for (size_t i = 0; i < n->n_models; i++)
		json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s}",
		    "name", n->models[i].name, "content_hash", n->models[i].content_hash,
		    "size_bytes", (json_int_t)n->models[i].size_bytes,
		    "engine", n->models[i].engine));
	json_object_set_new(o, "node_id", json_string(n->node_id));
	json_object_set_new(o, "name", json_string(n->name));
	json_object_set_new(o, "tailscale_ip", json_string(n->ip));
	json_object_set_new(o, "port", json_integer(n->port));
	json_object_set_new(o, "status", json_string(live ? registry_status_name(n->status) : "OFFLINE"));
	json_object_set_new(o, "models", models);
	if (n->extra_json) {
		json_t *extra = json_loads(n->extra_json, 0, NULL);
		if (extra)
			json_object_update(o, extra);
		json_decref(extra);
	}
	json_object_set_new(o, "encryption_public_key", json_string(n->encryption_public_key));
	json_object_set_new(o, "load", json_pack("{s:i, s:i}", "active_jobs", n->active_jobs,
	    "max_jobs", n->max_jobs));
	json_object_set_new(o, "owner", json_string(live ? n->owner : ln ? ln->owner : ""));
	json_object_set_new(o, "version", json_string(n->version));
	json_object_set_new(o, "last_seen", json_integer(live ? n->last_seen :
	    (ln ? ln->last_seen : 0)));
	json_object_set_new(o, "multiplier", json_real(live ? f->multiplier :
	    ln ? ln->multiplier : 1.0));
	json_object_set_new(o, "verified", json_boolean(live ? f->verified : ln && ln->verified));
	json_object_set_new(o, "verified_at", json_integer(live ? f->verified_at :
	    ln ? ln->verified_at : 0));
	json_object_set_new(o, "reputation", json_real(live ? f->reputation :
	    ln ? ln->reputation : 0.5));
	/* the economy (docs/CREDITS.md): the class its proof verified, whether
	 * its trial-paid earnings are spendable yet, and what is pending */
	json_object_set_new(o, "hardware_class", json_string(live ? f->hw_class :
	    ln ? ln->hw_class : ""));
	json_object_set_new(o, "established", json_boolean(live ? f->established :
	    ln && ledger_node_established(ln, &c->policy, (int64_t)time(NULL))));
	json_object_set_new(o, "pending_credits", json_integer(live ? f->pending :
	    ln ? ln->pending : 0));
	/* settled jobs where it claimed more than its client saw */
	json_object_set_new(o, "disputes", json_integer(live ? f->disputes :
	    ln ? ln->disputes : 0));
	json_object_set_new(o, "live", json_boolean(live));
	return o;
}

static void h_peers(http_req *r, void *arg)
{
	coord *c = arg;
	const char *model = http_req_query_param(r, "model");
	const char *lim = http_req_query_param(r, "limit");
	int64_t now = (int64_t)time(NULL);
	registry_node *nodes = NULL;
	size_t n = 0, max = 100;
	json_t *arr;
	int rc;

	if (lim) {
		char *end;
		long v = strtol(lim, &end, 10);
		if (*lim == '\0' || *end || v < 1 || v > COORD_PEERS_MAX) {
			coord_reply_error(r, TROOP_EINVAL,
			    "query parameter 'limit' must be an integer between 1 and %d",
			    COORD_PEERS_MAX);
			return;
		}
		max = (size_t)v;
	}
	if (model && strlen(model) > REGISTRY_MODEL_MAX) {
		coord_reply_error(r, TROOP_EINVAL, "query parameter 'model' is too long");
		return;
	}
	rc = registry_find_nodes(&nodes, &n, c->reg, model, now, max, REGISTRY_WITH_ALL);
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, node_json(c, &nodes[i], NULL, true));
	registry_nodes_free(nodes, n);
	coord_reply_json(r, 200, json_pack("{s:I, s:o}", "count", (json_int_t)n, "nodes", arr));
}

static void h_models(http_req *r, void *arg)
{
	coord *c = arg;
	registry_model_info *models = NULL;
	size_t n = 0;
	json_t *data;
	int rc;

	rc = registry_models(&models, &n, c->reg, (int64_t)time(NULL));
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return;
	}
	data = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(data, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}",
		    "id", models[i].name, "object", "model", "owned_by", "monkey-troop",
		    "content_hash", models[i].content_hash,
		    "size_bytes", (json_int_t)models[i].size_bytes,
		    "nodes", (json_int_t)models[i].node_count));
	free(models);
	coord_reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void h_node(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	const char *id = http_req_param(r, "node_id");
	registry_node n;
	ledger_node ln;
	bool live, known;
	int rc;

	memset(&n, 0, sizeof(n));
	if (!id || strlen(id) > REGISTRY_ID_MAX) {
		coord_reply_error(r, TROOP_EINVAL, "node id is not valid");
		return;
	}
	rc = registry_get_node(&n, c->reg, id, (int64_t)time(NULL), REGISTRY_WITH_ALL);
	if (rc != 0 && rc != TROOP_ENOTFOUND) {
		coord_reply_last_error(r, rc);
		return;
	}
	live = rc == 0;
	if (live) {
		coord_reply_json(r, 200, node_json(c, &n, NULL, true));
		registry_node_clear(&n);
		return;
	}
	rc = ledger_node_get(&ln, t->db, id);
	if (rc != 0 && rc != TROOP_ENOTFOUND) {
		coord_reply_last_error(r, rc);
		return;
	}
	known = rc == 0;
	if (!known) {
		coord_reply_error(r, TROOP_ENOTFOUND, "no node with id '%s'", id);
		return;
	}
	snprintf(n.node_id, sizeof(n.node_id), "%s", ln.node_id);
	snprintf(n.name, sizeof(n.name), "%s", ln.name);
	coord_reply_json(r, 200, node_json(c, &n, &ln, false));
}

void api_nodes_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/heartbeat", h_heartbeat, c);
	http_server_route(s, "GET", "/peers", h_peers, c);
	http_server_route(s, "GET", "/v1/models", h_models, c);
	http_server_route(s, "GET", "/nodes/{node_id}", h_node, c);
}
