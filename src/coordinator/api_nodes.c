/*
 * api_nodes.c - node registration and discovery:
 *   POST /heartbeat        signed by the node (node_id must be the signer)
 *   GET  /peers?model=M    live nodes, optionally serving M, a page at a
 *                          time in id order (cursor=, next_cursor)
 *   GET  /v1/models        the models live nodes serve, OpenAI list shape
 *   GET  /nodes/{node_id}  one node: live record and durable facts
 *
 * The live record goes to the registry (TTL); the durable facts (owner,
 * multiplier, verification) to the ledger, written only when they change.
 * The heartbeat copies the ledger row it reads into the registry record
 * (registry_facts), so /peers and /v1/models read the registry alone;
 * /nodes/{id} reads the ledger only for a node that is not live.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "encoding.h"
#include "error.h"
#include "json.h"
#include "log.h"
#include "proto.h"

/* ---- heartbeat ---------------------------------------------------------------- */

/* The decoder's limits must fit the registry's fields. */
_Static_assert(PROTO_ID_MAX <= REGISTRY_ID_MAX && PROTO_NAME_MAX <= REGISTRY_NAME_MAX &&
    PROTO_IP_MAX <= REGISTRY_IP_MAX && PROTO_KEY_MAX <= REGISTRY_KEY_MAX &&
    PROTO_VERSION_MAX <= REGISTRY_VERSION_MAX && PROTO_MODEL_MAX <= REGISTRY_MODEL_MAX &&
    PROTO_HASH_MAX <= REGISTRY_HASH_MAX && PROTO_ENGINE_MAX <= REGISTRY_ENGINE_MAX &&
    PROTO_MODELS_MAX <= REGISTRY_MODELS_MAX, "proto.h limits exceed registry.h fields");

/* Fill *n from a decoded heartbeat; models and extra_json are allocated
 * (registry_node_clear frees them).  extra_json holds only the decoded
 * hardware and engine fields, so /peers repeats nothing else. */
static int heartbeat_to_node(registry_node *n, const proto_heartbeat *hb)
{
	json_t *extra;

	snprintf(n->node_id, sizeof(n->node_id), "%s", hb->node_id);
	snprintf(n->name, sizeof(n->name), "%s", hb->name);
	snprintf(n->ip, sizeof(n->ip), "%s", hb->tailscale_ip);
	n->port = hb->port;
	if (registry_status_parse(&n->status, proto_status_name(hb->status)) != 0)
		return troop_error_set(TROOP_EINVAL,
		    "field 'status' must be one of IDLE, BUSY, OFFLINE");
	n->active_jobs = hb->active_jobs;
	n->max_jobs = hb->max_jobs;
	snprintf(n->encryption_public_key, sizeof(n->encryption_public_key), "%s",
	    hb->encryption_public_key);
	snprintf(n->seal_key, sizeof(n->seal_key), "%s", hb->seal_key);
	snprintf(n->owner, sizeof(n->owner), "%s", hb->owner[0] ? hb->owner : hb->node_id);
	snprintf(n->version, sizeof(n->version), "%s", hb->version);
	if (hb->n_models) {
		n->models = calloc(hb->n_models, sizeof(*n->models));
		if (!n->models)
			return troop_error_set(TROOP_ENOMEM, "out of memory");
		n->n_models = hb->n_models;
		for (size_t i = 0; i < hb->n_models; i++) {
			registry_model *m = &n->models[i];
			snprintf(m->name, sizeof(m->name), "%s", hb->models[i].name);
			snprintf(m->content_hash, sizeof(m->content_hash), "%s",
			    hb->models[i].content_hash);
			snprintf(m->engine, sizeof(m->engine), "%s", hb->models[i].engine);
			m->size_bytes = hb->models[i].size_bytes;
			m->context_length = hb->models[i].context_length;
			m->caps = hb->models[i].caps;
			m->caps_known = hb->models[i].caps_known;
			m->endpoints = hb->models[i].endpoints;
		}
	}
	if (hb->has_hardware || hb->n_engines) {
		extra = proto_heartbeat_extra_encode(hb);
		n->extra_json = extra ? json_dump_compact(extra, NULL) : NULL;
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
	reputation_stats st;
	proto_heartbeat hb;
	proto_heartbeat_reply rep;
	json_t *body = NULL;
	size_t len;
	const char *raw;
	int rc;

	memset(&n, 0, sizeof(n));
	memset(&hb, 0, sizeof(hb));
	memset(&rep, 0, sizeof(rep));
	if (coord_authenticate(r, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) != 0 ||
	    (rc = proto_heartbeat_decode(&hb, body, signer)) != 0 ||
	    (rc = heartbeat_to_node(&n, &hb)) != 0 ||
	    (rc = addr_policy_check(&c->addrs, n.ip)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (n.status == NODE_OFFLINE) {
		registry_remove_node(c->reg, n.node_id);
		log_info("node_offline", "node=%.8s", n.node_id);
		rep.removed = true;
		coord_reply_json(r, 200, proto_heartbeat_reply_encode(&rep));
		goto out;
	}
	if ((rc = ledger_node_touch(&ln, NULL, t->db, n.node_id, n.owner, n.name, now)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	snprintf(n.owner, sizeof(n.owner), "%s", ln.owner);
	/* availability counts heartbeats kept; a registry error only costs that */
	if (reputation_note_heartbeat(&st, c->reg, n.node_id, c->node_ttl, now) != 0) {
		log_warn("reputation", "node=%.8s error=\"%s\"", n.node_id, troop_error_msg());
		coord_node_facts_with(&n.facts, c, &ln, NULL, now);
	} else {
		coord_node_facts_with(&n.facts, c, &ln, &st, now);
	}
	/* the node counts the jobs it runs; tickets not started yet are ours */
	n.active_jobs += (int)queue_node_holds(c->reg, n.node_id, now);
	if ((rc = registry_put_node(c->reg, &n, c->node_ttl, now)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	METRIC_ADD(&c->metrics, heartbeats, 1);
	rep.ttl = c->node_ttl;
	rep.next_heartbeat = c->node_ttl / 3 > 0 ? c->node_ttl / 3 : 1;
	rep.verified = ln.verified;
	rep.multiplier = ln.multiplier;
	{
		/* the newest key, so that the worker knows it before it signs */
		ticket_keys_pub pub[TICKET_KEYS_MAX];
		size_t np = ticket_keys_published(c->tkeys, pub, TICKET_KEYS_MAX, now);
		if (np > 0)
			snprintf(rep.ticket_kid, sizeof(rep.ticket_kid), "%s", pub[np - 1].pub.kid);
	}
	coord_reply_json(r, 200, proto_heartbeat_reply_encode(&rep));
out:
	proto_heartbeat_clear(&hb);
	registry_node_clear(&n);
	json_decref(body);
}

/* ---- discovery --------------------------------------------------------------- */

/* The public view of a node (proto_node): its heartbeat fields plus the
 * durable facts, from the live record's copy (live) or from the ledger
 * row `ln` (not live; NULL when the ledger does not know the node), plus
 * the economy's facts (docs/CREDITS.md).  NULL when out of memory. */
/* A node's disputes per settled job (0 with none): from the registry's
 * copy `f` when not NULL, else from its ledger row (may be NULL). */
static double node_dispute_rate(const registry_facts *f, const ledger_node *ln)
{
	int64_t d = f ? f->disputes : ln ? ln->disputes : 0;
	int64_t jobs = f ? f->jobs : ln ? ln->jobs_ok + ln->jobs_failed : 0;

	return d > 0 ? (double)d / (double)(jobs > 0 ? jobs : 1) : 0.0;
}

/* A node's reputation components (reputation.h) and what the choice
 * counts of it: its job slots (live only) and whether it is still new. */
static json_t *reputation_json(const coord *c, const registry_node *n,
    const registry_facts *f, bool live)
{
	json_t *o = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:i, s:b}",
	    "availability", f->rep_availability, "reliability", f->rep_reliability,
	    "speed", f->rep_speed, "audits", f->rep_audits, "ttft_ms", f->ttft_ms,
	    "tokens_per_s", f->tokens_per_s, "failovers", (json_int_t)f->failovers,
	    "served_jobs", f->served_jobs, "new", reputation_is_new(f));

	if (o && live)
		json_object_set_new(o, "slots", json_integer(coord_node_slots(c, n)));
	return o;
}

static json_t *node_json(const coord *c, const registry_node *n, const ledger_node *ln,
    bool live)
{
	const registry_facts *f = &n->facts, *rf = live ? f : NULL;
	registry_facts gone;
	proto_node pn;
	proto_heartbeat *hb = &pn.hb;
	json_t *o = NULL;

	memset(&pn, 0, sizeof(pn));
	snprintf(hb->node_id, sizeof(hb->node_id), "%.43s", n->node_id);
	snprintf(hb->name, sizeof(hb->name), "%s", n->name);
	snprintf(hb->tailscale_ip, sizeof(hb->tailscale_ip), "%s", n->ip);
	hb->port = n->port;
	hb->status = n->status == NODE_BUSY ? PROTO_BUSY : n->status == NODE_OFFLINE ?
	    PROTO_OFFLINE : PROTO_IDLE;
	if (n->n_models) {
		hb->models = calloc(n->n_models, sizeof(*hb->models));
		if (!hb->models)
			return NULL;
		hb->n_models = n->n_models;
		for (size_t i = 0; i < n->n_models; i++) {
			proto_model *m = &hb->models[i];
			snprintf(m->name, sizeof(m->name), "%s", n->models[i].name);
			snprintf(m->content_hash, sizeof(m->content_hash), "%s",
			    n->models[i].content_hash);
			snprintf(m->engine, sizeof(m->engine), "%s", n->models[i].engine);
			m->size_bytes = n->models[i].size_bytes;
			m->context_length = n->models[i].context_length;
			m->caps = n->models[i].caps;
			m->caps_known = n->models[i].caps_known;
			m->endpoints = n->models[i].endpoints;
		}
	}
	if (n->extra_json) {
		json_t *extra = json_loads(n->extra_json, 0, NULL);
		/* written by proto_heartbeat_extra_encode: a failure is a record
		 * from an older version, shown without hardware */
		if (extra && proto_heartbeat_extra_decode(hb, extra) != 0) {
			hb->has_hardware = false;
			hb->n_engines = 0;
		}
		json_decref(extra);
	}
	snprintf(hb->encryption_public_key, sizeof(hb->encryption_public_key), "%s",
	    n->encryption_public_key);
	snprintf(hb->seal_key, sizeof(hb->seal_key), "%s", n->seal_key);
	hb->active_jobs = n->active_jobs < 0 ? 0 : n->active_jobs;
	hb->max_jobs = n->max_jobs < 0 ? 0 : n->max_jobs;
	snprintf(hb->owner, sizeof(hb->owner), "%.43s", live ? n->owner : ln ? ln->owner : "");
	snprintf(hb->version, sizeof(hb->version), "%s", n->version);
	pn.last_seen = live ? n->last_seen : (ln ? ln->last_seen : 0);
	pn.multiplier = live ? f->multiplier : ln ? ln->multiplier : 1.0;
	pn.verified = live ? f->verified : ln && ln->verified;
	pn.verified_at = live ? f->verified_at : ln ? ln->verified_at : 0;
	if (!live && ln) {
		/* not live: the reputation from the ledger and what is kept */
		coord_node_facts(&gone, c, ln, (int64_t)time(NULL));
		rf = &gone;
	}
	pn.reputation = rf ? rf->reputation : 0.5;
	pn.live = live;
	o = proto_node_encode(&pn);
	proto_node_clear(&pn);
	if (o) {
		/* the class its proof verified, whether its trial-paid earnings
		 * are spendable yet, what is pending, and the settled jobs where
		 * it claimed more than its client saw */
		json_object_set_new(o, "hardware_class", json_string(live ? f->hw_class :
		    ln ? ln->hw_class : ""));
		json_object_set_new(o, "established", json_boolean(live ? f->established :
		    ln && ledger_node_established(ln, &c->policy, (int64_t)time(NULL))));
		json_object_set_new(o, "pending_credits", json_integer(live ? f->pending :
		    ln ? ln->pending : 0));
		json_object_set_new(o, "disputes", json_integer(live ? f->disputes :
		    ln ? ln->disputes : 0));
		json_object_set_new(o, "dispute_rate", json_real(node_dispute_rate(live ? f : NULL,
		    ln)));
		/* spot checks of its output (docs/AUDITS.md) */
		json_object_set_new(o, "audits_passed", json_integer(live ? f->audits_passed :
		    ln ? ln->audits_passed : 0));
		json_object_set_new(o, "audits_failed", json_integer(live ? f->audits_failed :
		    ln ? ln->audits_failed : 0));
		json_object_set_new(o, "suspect", json_boolean(live ? f->suspect :
		    ln && ln->suspect));
		if (rf)
			json_object_set_new(o, "reputation_detail", reputation_json(c, n, rf, live));
	}
	return o;
}

/* What a node's record may add to a /peers reply, in bytes, without
 * encoding it: the fixed fields, the heartbeat extras and the model list
 * (an upper bound; JSON escaping aside). */
static size_t node_json_estimate(const registry_node *n)
{
	size_t z = 1024 + (n->extra_json ? strlen(n->extra_json) : 0);

	for (size_t i = 0; i < n->n_models; i++)
		/* 64 for the fixed keys, 200 for the capability fields at their
		 * longest (context_length, capabilities, endpoints) */
		z += 64 + 200 + strlen(n->models[i].name) + strlen(n->models[i].content_hash) +
		    strlen(n->models[i].engine);
	return z;
}

/* The cursor of /peers: base64url (no padding) of the last node id a page
 * listed, opaque to callers.  Decode it into after[REGISTRY_ID_MAX + 1]:
 * 0, or TROOP_EINVAL for anything else (too long, not base64url, empty,
 * or bytes no node id has). */
static int peers_cursor_decode(char *after, const char *cursor)
{
	size_t len = strlen(cursor), n = 0;

	if (len == 0 || len > b64url_len(REGISTRY_ID_MAX) ||
	    b64url_decode(after, REGISTRY_ID_MAX, &n, cursor, len) != 0 || n == 0)
		return TROOP_EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)after[i] <= 0x20 || (unsigned char)after[i] >= 0x7f)
			return TROOP_EINVAL;
	after[n] = '\0';
	return 0;
}

/* GET /peers[?model=M][&limit=N][&cursor=C]: a page of the live nodes in
 * id order, at most `limit` (100 by default, COORD_PEERS_MAX at most) and
 * about COORD_PEERS_REPLY_MAX bytes of records.  "next_cursor" (null on
 * the last page) asks for the page after; "truncated" says there is one. */
static void h_peers(http_req *r, void *arg)
{
	coord *c = arg;
	const char *model = http_req_query_param(r, "model");
	const char *lim = http_req_query_param(r, "limit");
	const char *cursor = http_req_query_param(r, "cursor");
	int64_t now = (int64_t)time(NULL);
	registry_node *nodes = NULL;
	size_t n = 0, max = 100, bytes = 0, listed = 0;
	char after[REGISTRY_ID_MAX + 1], next[REGISTRY_ID_MAX * 2];
	bool more;
	json_t *arr;
	int rc;

	if (coord_anon_allowed(r) != 0)
		return;

	if (lim) {
		int64_t v;

		if (http_req_query_int(r, "limit", 100, 1, COORD_PEERS_MAX, &v) != 0) {
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
	after[0] = '\0';
	if (cursor && peers_cursor_decode(after, cursor) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "query parameter 'cursor' is not valid "
		    "(use the next_cursor of a /peers reply)");
		return;
	}
	/* one more than the page, to know whether another page follows */
	rc = registry_list_nodes(&nodes, &n, c->reg, model, after, now, max + 1,
	    REGISTRY_WITH_ALL);
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return;
	}
	more = n > max;
	arr = json_array();
	for (size_t i = 0; i < n && i < max; i++) {
		json_t *o;

		/* a bounded reply whatever the nodes put in their records: an
		 * anonymous request must not be an amplifier; the rest is on
		 * the next page */
		bytes += node_json_estimate(&nodes[i]);
		if (bytes > COORD_PEERS_REPLY_MAX && i > 0) {
			more = true;
			break;
		}
		if ((o = node_json(c, &nodes[i], NULL, true)) != NULL)
			json_array_append_new(arr, o);
		listed = i + 1;
	}
	next[0] = '\0';
	if (more && listed > 0)
		b64url_encode(next, sizeof(next), nodes[listed - 1].node_id,
		    strlen(nodes[listed - 1].node_id));
	registry_nodes_free(nodes, n);
	coord_reply_json(r, 200, json_pack("{s:I, s:o, s:b, s:o}", "count",
	    (json_int_t)json_array_size(arr), "nodes", arr, "truncated", next[0] != '\0',
	    "next_cursor", next[0] ? json_string(next) : json_null()));
}

static void h_models(http_req *r, void *arg)
{
	coord *c = arg;
	registry_model_info *models = NULL;
	size_t n = 0;
	json_t *data;
	int rc;

	if (coord_anon_allowed(r) != 0)
		return;
	rc = registry_models(&models, &n, c->reg, (int64_t)time(NULL));
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return;
	}
	data = json_array();
	for (size_t i = 0; i < n; i++) {
		const registry_model_info *mi = &models[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}",
		    "id", mi->name, "object", "model", "owned_by", "monkey-troop",
		    "content_hash", mi->content_hash, "size_bytes", (json_int_t)mi->size_bytes,
		    "nodes", (json_int_t)mi->node_count);

		/* what some live node reports; a field nobody reports is left out */
		if (o && mi->context_length > 0)
			json_object_set_new(o, "context_length", json_integer(mi->context_length));
		if (o && mi->caps)
			json_object_set_new(o, "capabilities", proto_caps_json(mi->caps));
		if (o && mi->endpoints)
			json_object_set_new(o, "endpoints", proto_endpoints_json(mi->endpoints));
		json_array_append_new(data, o);
	}
	free(models);
	coord_reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void reply_node(http_req *r, json_t *o)
{
	if (o)
		coord_reply_json(r, 200, o);
	else
		coord_reply_error(r, TROOP_ENOMEM, "out of memory");
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

	if (coord_anon_allowed(r) != 0)
		return;
	memset(&n, 0, sizeof(n));
	if (!id || !id[0] || strlen(id) > REGISTRY_ID_MAX) {
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
		reply_node(r, node_json(c, &n, NULL, true));
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
	reply_node(r, node_json(c, &n, &ln, false));
}

void api_nodes_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/heartbeat", h_heartbeat, c);
	http_server_route(s, "GET", "/peers", h_peers, c);
	http_server_route(s, "GET", "/v1/models", h_models, c);
	http_server_route(s, "GET", "/nodes/{node_id}", h_node, c);
}
