/*
 * api_meta.c - the coordinator's public, unsigned endpoints about itself:
 * GET /health, GET /public-key, GET /.well-known/jwks.json, GET /metrics,
 * GET /stats (public numbers), GET /leaderboard (donors by credits earned)
 * and GET / (the network page that shows them).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "encoding.h"
#include "error.h"
#include "prom.h"
#include "proto.h"
#include "queue.h"
#include "web_assets.h"

static void h_health(http_req *r, void *arg)
{
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:s, s:s}", "status", "healthy",
	    "version", TROOP_VERSION, "ledger", ledger_backend_name(((coord *)arg)->ledger),
	    "registry", registry_backend_name(((coord *)arg)->reg)));
}

static void public_key_fill(proto_public_key *k, const unsigned char pk[TROOP_PK_LEN])
{
	memset(k, 0, sizeof(*k));
	b64url_encode(k->public_key, sizeof(k->public_key), pk, TROOP_PK_LEN);
	ticket_kid(k->kid, pk);
	snprintf(k->alg, sizeof(k->alg), "EdDSA");
}

/* GET /public-key: the key that signs tickets now (one key; the whole set,
 * with the next and the previous key during a rotation, is the JWKS). */
static void h_public_key(http_req *r, void *arg)
{
	coord *c = arg;
	troop_identity signer;
	proto_public_key k;

	if (coord_anon_allowed(r) != 0)
		return;
	ticket_keys_signer(c->tkeys, &signer, (int64_t)time(NULL));
	public_key_fill(&k, signer.pk);
	identity_wipe(&signer);
	coord_reply_json(r, 200, proto_public_key_encode(&k));
}

/* GET /.well-known/jwks.json: every key a worker should accept now. */
static void h_jwks(http_req *r, void *arg)
{
	coord *c = arg;
	ticket_keys_pub pub[TICKET_KEYS_MAX];
	proto_public_key k[TICKET_KEYS_MAX];
	size_t n;

	if (coord_anon_allowed(r) != 0)
		return;
	n = ticket_keys_published(c->tkeys, pub, TICKET_KEYS_MAX, (int64_t)time(NULL));
	for (size_t i = 0; i < n; i++)
		public_key_fill(&k[i], pub[i].pub.pk);
	coord_reply_json(r, 200, proto_jwks_encode(k, n));
}

/* The gauges of /metrics and /stats, read from the registry now. */
static void read_gauges(coord_gauges *g, coord *c, int64_t now)
{
	registry_node *nodes = NULL;
	registry_model_info *models = NULL;
	size_t n = 0;

	memset(g, 0, sizeof(*g));
	g->uptime_s = (long)(now - c->started);
	if (registry_count_nodes(&g->live_nodes, c->reg, now) != 0)
		g->live_nodes = 0;
	if (api_nodes_models(&models, &g->models, c->reg, now) != 0)
		g->models = 0;
	free(models);
	if (registry_find_nodes(&nodes, &n, c->reg, NULL, now, COORD_PEERS_MAX, 0) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (nodes[i].status == NODE_BUSY)
				g->busy_nodes++;
			else
				g->idle_nodes++;
		}
		registry_nodes_free(nodes, n);
	}
}

static void h_metrics(http_req *r, void *arg)
{
	coord *c = arg;
	coord_gauges g;
	registry_model_info *models = NULL;
	size_t len = 0, n = 0;
	int64_t now = (int64_t)time(NULL);
	char *text;

	read_gauges(&g, c, now);
	text = metrics_render(&c->metrics, &g, &len);
	if (api_nodes_models(&models, &n, c->reg, now) != 0)
		n = 0;
	if (text && queue_metrics_append(&text, &len, c->reg, models, n, now) != 0) {
		free(text);
		text = NULL;
	}
	free(models);
	if (!text) {
		coord_reply_error(r, TROOP_ENOMEM, "out of memory rendering metrics");
		return;
	}
	METRIC_ADD(&c->metrics, req_2xx, 1);
	http_reply(r, 200, PROM_CONTENT_TYPE, text, len);
	free(text);
}

/* GET /stats: the network's public numbers for the page at / (no account
 * data): nodes, models, and the running totals a page turns into rates. */
static void h_stats(http_req *r, void *arg)
{
	coord *c = arg;
	coord_gauges g;

	if (coord_anon_allowed(r) != 0)
		return;
	read_gauges(&g, c, (int64_t)time(NULL));
#define V(f) (json_int_t)atomic_load_explicit(&c->metrics.f, memory_order_relaxed)
	coord_reply_json(r, 200, json_pack("{s:s, s:I, s:{s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I}",
	    "version", TROOP_VERSION, "uptime_seconds", (json_int_t)g.uptime_s,
	    "nodes", "live", (json_int_t)g.live_nodes, "idle", (json_int_t)g.idle_nodes,
	    "busy", (json_int_t)g.busy_nodes, "models", (json_int_t)g.models,
	    "jobs_total", V(receipts), "tokens_total", V(tokens_out),
	    "credits_charged_total", V(credits_charged),
	    "queued", (json_int_t)queue_waiting_total(c->reg, (int64_t)time(NULL))));
#undef V
}

/* ---- GET /leaderboard ------------------------------------------------------ */

#define BOARD_MAX 100
#define BOARD_TTL_S 30

/* The last answer, shared by the server threads: the ledger query scans
 * every settlement, so an anonymous caller gets a copy at most
 * BOARD_TTL_S old and never drives the database. */
static struct {
	pthread_mutex_t mu;
	const coord *c;
	json_t *leaders;           /* BOARD_MAX at most, most first */
	time_t at;
} board = { .mu = PTHREAD_MUTEX_INITIALIZER };

void api_meta_board_forget(void)
{
	pthread_mutex_lock(&board.mu);
	board.at = 0;
	pthread_mutex_unlock(&board.mu);
}

/* The leaderboard from the ledger, with each owner's live node names
 * (public in /peers already).  New reference, or NULL with the error set. */
static json_t *board_read(coord *c, ledger_conn *db, int64_t now)
{
	ledger_earner *e = NULL;
	registry_node *nodes = NULL;
	size_t n = 0, nn = 0;
	json_t *out;

	if (ledger_top_earners(&e, &n, db, BOARD_MAX) != 0)
		return NULL;
	if (registry_find_nodes(&nodes, &nn, c->reg, NULL, now, COORD_PEERS_MAX, 0) != 0)
		nn = 0;
	out = json_array();
	for (size_t i = 0; i < n && out; i++) {
		json_t *names = json_array();

		for (size_t k = 0; k < nn; k++)
			if (strcmp(nodes[k].owner, e[i].account) == 0)
				json_array_append_new(names, json_string(nodes[k].name));
		json_array_append_new(out, json_pack("{s:I, s:s, s:o, s:I, s:I, s:o}", "rank",
		    (json_int_t)(i + 1), "account", e[i].account, "name",
		    e[i].name[0] ? json_string(e[i].name) : json_null(),
		    "earned", (json_int_t)e[i].earned,
		    "jobs", (json_int_t)e[i].jobs, "live_nodes", names));
	}
	registry_nodes_free(nodes, nn);
	free(e);
	return out;
}

/* GET /leaderboard?limit=N: node owners by the credits other accounts paid
 * them (1..100, default 20).  Accounts appear by their public id, and by
 * the display name an owner chose to show (POST /accounts/name; null
 * when none). */
static void h_leaderboard(http_req *r, void *arg)
{
	coord *c = arg;
	int64_t limit, now = (int64_t)time(NULL);
	json_t *leaders, *page;
	time_t at;

	if (coord_anon_allowed(r) != 0)
		return;
	if (http_req_query_int(r, "limit", 20, 1, BOARD_MAX, &limit) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "query parameter 'limit' must be an integer "
		    "between 1 and %d", BOARD_MAX);
		return;
	}
	pthread_mutex_lock(&board.mu);
	if (board.c != c || !board.leaders || now - board.at >= BOARD_TTL_S || now < board.at) {
		json_t *fresh = board_read(c, coord_thread_of(r)->db, now);

		if (!fresh) {
			int err = troop_error_last();

			pthread_mutex_unlock(&board.mu);
			coord_reply_last_error(r, err ? err : TROOP_ERR);
			return;
		}
		json_decref(board.leaders);
		board.leaders = fresh;
		board.c = c;
		board.at = (time_t)now;
	}
	leaders = json_array();
	for (size_t i = 0; i < json_array_size(board.leaders) && (int64_t)i < limit; i++)
		json_array_append_new(leaders, json_deep_copy(json_array_get(board.leaders, i)));
	at = board.at;
	pthread_mutex_unlock(&board.mu);
	page = json_pack("{s:o, s:I, s:i}", "leaders", leaders, "updated_at", (json_int_t)at,
	    "cache_seconds", BOARD_TTL_S);
	coord_reply_json(r, 200, page);
}

/* GET /: the public network page (src/web/network.html, built in). */
static void h_page(http_req *r, void *arg)
{
	size_t len = 0;
	const char *page = web_asset("network.html", &len);

	if (!page) {
		coord_reply_error(r, TROOP_ENOTFOUND, "this build has no network page");
		return;
	}
	METRIC_ADD(&((coord *)arg)->metrics, req_2xx, 1);
	web_reply_page(r, page, len);
}

void api_meta_routes(http_server *s, coord *c)
{
	http_server_route(s, "GET", "/health", h_health, c);
	http_server_route(s, "GET", "/public-key", h_public_key, c);
	http_server_route(s, "GET", "/.well-known/jwks.json", h_jwks, c);
	http_server_route(s, "GET", "/metrics", h_metrics, c);
	http_server_route(s, "GET", "/stats", h_stats, c);
	http_server_route(s, "GET", "/leaderboard", h_leaderboard, c);
	http_server_route(s, "GET", "/", h_page, c);
}
