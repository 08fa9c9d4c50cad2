/*
 * up_ui.c - your own page, served by `troop up` on its loopback port:
 *   GET /ui                   the page (src/web/ui.html, built in)
 *   GET /ui/api/account       this proxy's account id, coordinator, version
 *   GET /ui/api/balance       the coordinator's /users/{me}/balance
 *   GET /ui/api/transactions  the coordinator's /users/{me}/transactions
 *                             (?limit=N, 1..200, default 100)
 *   GET /ui/api/nodes         the live nodes this account owns (from the
 *                             public /peers, filtered by owner), and the
 *                             names of all live nodes by id
 *   GET /ui/api/jobs          the jobs this proxy relayed since it started
 *                             (the last UI_JOBS_MAX): job, node, model,
 *                             status, time; their cost is in transactions
 * The balance and transactions are signed with this machine's key, as the
 * CLI does; the page never sees the key.  Every route runs behind the
 * edge of up.c (Host and Origin rules: only troop up's own page, or an
 * --allow-origin one, may read them) and the API key when one is set.
 * Replies pass the coordinator's JSON through; a coordinator that cannot
 * be reached is 503 coordinator_unreachable in the OpenAI error shape.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynbuf.h"
#include "error.h"
#include "log.h"
#include "proto.h"
#include "up.h"
#include "web_assets.h"

#define UI_NODES_MAX 1000
#define UI_JOBS_MAX 200

/* The jobs relayed, newest last, in a ring shared by the server threads
 * (one troop up per process). */
struct ui_job {
	char job_id[PROTO_JOB_ID_MAX + 1];
	char node_id[64];
	char model[UP_MODEL_MAX + 1];
	int status;
	int64_t at;               /* unix seconds */
	int64_t duration_ms;
};

static struct {
	pthread_mutex_t mu;
	struct ui_job jobs[UI_JOBS_MAX];
	size_t next, count;
} ui_jobs = { .mu = PTHREAD_MUTEX_INITIALIZER };

void up_ui_job_done(const char *job_id, const char *node_id, const char *model, int status,
    int64_t duration_us)
{
	struct ui_job *j;

	pthread_mutex_lock(&ui_jobs.mu);
	j = &ui_jobs.jobs[ui_jobs.next];
	snprintf(j->job_id, sizeof(j->job_id), "%s", job_id ? job_id : "");
	snprintf(j->node_id, sizeof(j->node_id), "%s", node_id ? node_id : "");
	snprintf(j->model, sizeof(j->model), "%s", model ? model : "");
	j->status = status;
	j->at = (int64_t)time(NULL);
	j->duration_ms = duration_us >= 0 ? duration_us / 1000 : 0;
	ui_jobs.next = (ui_jobs.next + 1) % UI_JOBS_MAX;
	if (ui_jobs.count < UI_JOBS_MAX)
		ui_jobs.count++;
	pthread_mutex_unlock(&ui_jobs.mu);
}

static json_t *jobs_json(void)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&ui_jobs.mu);
	for (size_t i = 0; i < ui_jobs.count; i++) {
		const struct ui_job *j =
		    &ui_jobs.jobs[(ui_jobs.next + UI_JOBS_MAX - 1 - i) % UI_JOBS_MAX];
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:i, s:I, s:I}", "job_id",
		    j->job_id, "node_id", j->node_id, "model", j->model, "status", j->status,
		    "at", (json_int_t)j->at, "duration_ms", (json_int_t)j->duration_ms));
	}
	pthread_mutex_unlock(&ui_jobs.mu);
	return json_pack("{s:o}", "jobs", arr);
}

typedef enum { UI_BALANCE, UI_TRANSACTIONS, UI_NODES } ui_what;

typedef struct {
	up_server *s;
	http_req *req;            /* NULL once the app went away */
	http_async_req *fetch;
	ui_what what;
	dynbuf body;
	int status;
	bool toolarge;
} ui_req;

void up_handle_ui(http_req *r, void *arg)
{
	size_t len = 0;
	const char *page = web_asset("ui.html", &len);

	(void)arg;
	if (!page) {
		up_reply_error(r, 404, "invalid_request_error", "not_found", NULL,
		    "this build has no /ui page");
		return;
	}
	web_reply_page(r, page, len);
}

static void ui_req_free(ui_req *u)
{
	if (!u)
		return;
	dynbuf_free(&u->body);
	free(u);
}

static void app_closed(http_req *req, void *arg)
{
	ui_req *u = arg;

	(void)req;
	u->req = NULL;
	if (u->fetch)
		http_async_cancel(u->fetch);
}

static int fetch_headers(void *arg, int status, const char *const *headers)
{
	ui_req *u = arg;

	(void)headers;
	u->status = status;
	return 0;
}

static int fetch_data(void *arg, const char *data, size_t len)
{
	ui_req *u = arg;
	int rc = dynbuf_add(&u->body, data, len);

	if (rc == TROOP_ETOOLARGE)
		u->toolarge = true;
	return rc == 0 ? 0 : -1;
}

/* The nodes of /peers whose owner is this account, with what the page
 * shows.  New reference, or NULL when the reply is not a node list. */
static json_t *owned_nodes(const up_server *s, const char *buf, size_t len)
{
	json_t *v = json_loadb(buf, len, 0, NULL), *out = NULL, *n, *names;
	json_t *nodes = json_object_get(v, "nodes");
	size_t i;

	if (!json_is_array(nodes))
		goto done;
	out = json_array();
	names = json_object();
	json_array_foreach(nodes, i, n) {
		const char *owner = json_string_value(json_object_get(n, "owner"));
		const char *id = json_string_value(json_object_get(n, "node_id"));
		const char *name = json_string_value(json_object_get(n, "name"));
		json_t *o;

		if (id && name)
			json_object_set_new(names, id, json_string(name));
		if (!owner || strcmp(owner, s->id.id) != 0)
			continue;
		o = json_object();
		for (const char *const *k = (const char *const[]){ "node_id", "name", "status",
		    "models", "load", "hardware", "verified", "multiplier", "reputation",
		    "pending_credits", "established", "last_seen", NULL }; *k; k++) {
			json_t *f = json_object_get(n, *k);
			if (f)
				json_object_set(o, *k, f);
		}
		json_array_append_new(out, o);
	}
	out = json_pack("{s:s, s:o, s:o}", "account", s->id.id, "nodes", out, "names", names);
done:
	json_decref(v);
	return out;
}

static void fetch_done(void *arg, int err)
{
	ui_req *u = arg;
	http_req *r = u->req;

	u->fetch = NULL;
	if (!r)
		goto out;
	u->req = NULL;
	http_req_on_close(r, NULL, NULL);
	if (err != 0 || u->toolarge) {
		up_reply_error(r, 503, "server_error", "coordinator_unreachable", NULL,
		    "troop up cannot reach the coordinator at %s (%s)", u->s->coordinator,
		    u->toolarge ? "reply too large" : troop_error_msg());
		goto out;
	}
	if (u->what == UI_NODES && u->status == 200) {
		json_t *o = owned_nodes(u->s, dynbuf_ptr(&u->body), dynbuf_len(&u->body));

		if (o)
			http_reply_json(r, 200, o);
		else
			up_reply_error(r, 502, "api_error", "upstream_error", NULL,
			    "the coordinator's /peers reply is not a node list");
		goto out;
	}
	if (u->status >= 200 && u->status < 600 && dynbuf_len(&u->body) > 0 &&
	    dynbuf_ptr(&u->body)[0] == '{') {
		/* the coordinator's answer (or its error, in the same shape) */
		http_reply(r, u->status, "application/json", dynbuf_ptr(&u->body),
		    dynbuf_len(&u->body));
		goto out;
	}
	up_reply_error(r, 502, "api_error", "upstream_error", NULL,
	    "the coordinator at %s answered HTTP %d without JSON", u->s->coordinator, u->status);
out:
	ui_req_free(u);
}

static void handle(http_req *r, up_server *s, ui_what what)
{
	static const http_async_cb cb = { fetch_headers, fetch_data, fetch_done };
	http_async_opts ao = { .connect_timeout_ms = 3000,
		.total_timeout_ms = UP_COORD_TIMEOUT_MS, .tcp_nodelay = true };
	up_thread *t = up_thread_of(r);
	http_signed_headers hs;
	const char *const *headers = NULL;
	char path[160], query[64] = "", url[800];
	int64_t limit = 100;
	ui_req *u;

	if (!up_check_key(r, s))
		return;
	if (what == UI_TRANSACTIONS &&
	    http_req_query_int(r, "limit", 100, 1, 200, &limit) != 0) {
		up_reply_error(r, 400, "invalid_request_error", "bad_request", NULL, "%s",
		    troop_error_msg());
		return;
	}
	switch (what) {
	case UI_BALANCE:
		snprintf(path, sizeof(path), "/users/%s/balance", s->id.id);
		break;
	case UI_TRANSACTIONS:
		snprintf(path, sizeof(path), "/users/%s/transactions", s->id.id);
		snprintf(query, sizeof(query), "limit=%lld", (long long)limit);
		break;
	case UI_NODES:
		snprintf(path, sizeof(path), "/peers");
		snprintf(query, sizeof(query), "limit=%d", UI_NODES_MAX);
		break;
	}
	if (what != UI_NODES) {
		if (http_signed_headers_build(&hs, &s->id, "GET", path, query, NULL, 0,
		    (int64_t)time(NULL)) != 0) {
			up_reply_error(r, 500, "server_error", "internal_error", NULL, "%s",
			    troop_error_msg());
			return;
		}
		headers = hs.list;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		up_reply_error(r, 500, "server_error", "internal_error", NULL, "out of memory");
		return;
	}
	u->s = s;
	u->what = what;
	u->req = r;
	dynbuf_init(&u->body, UP_COORD_REPLY_MAX * 16);
	snprintf(url, sizeof(url), "%s%s%s%s", s->coordinator, path, query[0] ? "?" : "", query);
	if (http_async_request(t->async, &u->fetch, "GET", url, headers, NULL, 0, &ao, &cb,
	    u) != 0) {
		ui_req_free(u);
		up_reply_error(r, 503, "server_error", "coordinator_unreachable", NULL, "%s",
		    troop_error_msg());
		return;
	}
	http_req_on_close(r, app_closed, u);
}

void up_handle_ui_api(http_req *r, void *arg)
{
	up_server *s = arg;
	const char *what = http_req_param(r, "what");

	if (what && strcmp(what, "balance") == 0) {
		handle(r, s, UI_BALANCE);
	} else if (what && strcmp(what, "transactions") == 0) {
		handle(r, s, UI_TRANSACTIONS);
	} else if (what && strcmp(what, "nodes") == 0) {
		handle(r, s, UI_NODES);
	} else if (what && strcmp(what, "jobs") == 0) {
		if (up_check_key(r, s))
			http_reply_json(r, 200, jobs_json());
	} else if (what && strcmp(what, "account") == 0) {
		if (!up_check_key(r, s))
			return;
		http_reply_json(r, 200, json_pack("{s:s, s:s, s:s}", "account", s->id.id,
		    "coordinator", s->coordinator, "version", TROOP_VERSION));
	} else {
		up_reply_error(r, 404, "invalid_request_error", "not_found", NULL,
		    "no such endpoint: /ui/api/ has account, balance, transactions, nodes and jobs");
	}
}
