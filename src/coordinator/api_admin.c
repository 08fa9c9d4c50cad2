/*
 * api_admin.c - the operator's tools (docs/OPERATING.md), every endpoint
 * signed by one of the coordinator's --admin keys:
 *   POST /admin/suspend      {"node"|"account": ID, "reason"}  stop a node
 *                            being chosen and paid, or an account
 *                            authorizing
 *   POST /admin/unsuspend    {"node"|"account": ID, "reason"}
 *   POST /admin/rate-limit   {"account", "per_second", "reason"}: the
 *                            account's own /authorize limit (0: default)
 *   GET  /admin/audit        ?account=&node=&type=&since=&limit=&before=
 *   GET  /admin/nodes        ?after=&limit=   nodes with their standing
 *   GET  /admin/accounts     ?after=&limit=   accounts with theirs
 *   POST /admin/ticket-key/rotate {"lead_seconds"?, "reason"?}: a new
 *                            ticket signing key, published now, signing
 *                            after the lead (ticket_keys.h)
 * Every change is stored in the ledger with its audit row in one
 * transaction, so every coordinator of the troop applies it: a node's
 * suspension reaches the registry's copy of its facts at once (and again
 * at each heartbeat), an account's is read by /authorize
 * (coord_account_allowed): one indexed read, kept for about a second per
 * account (policy_cache) and dropped at once when this process changes
 * an account's standing, so a suspension or limit made on another
 * coordinator of the troop applies there within a second.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "error.h"
#include "json.h"
#include "log.h"

#define ADMIN_PAGE_DEFAULT 100

/* ---- the account policies /authorize read, kept for about a second ---------- */

#define POLICY_CACHE_SLOTS 4096   /* direct-mapped by a hash of the account */
#define POLICY_CACHE_MS 1000      /* how long a read policy is used again */

/* One account's policy as the ledger had it at `read_ms` (monotonic),
 * read while the cache's generation was `gen`. */
typedef struct {
	char account[LEDGER_ID_MAX + 1];
	ledger_account_policy p;
	int64_t read_ms;
	uint64_t gen;
} policy_entry;

/* The process's account policies (one mutex: thread-safe).  `gen` moves
 * on with every change this process makes to an account's standing: an
 * entry of an older generation is not used (nor one read while the
 * change was being made: the reader took the generation before its
 * read). */
static struct {
	pthread_mutex_t mu;
	uint64_t gen;
	policy_entry e[POLICY_CACHE_SLOTS];
} policy_cache = { .mu = PTHREAD_MUTEX_INITIALIZER, .gen = 1 };

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static policy_entry *policy_slot(const char *account)
{
	uint32_t h = 2166136261u;   /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)account; *p; p++)
		h = (h ^ *p) * 16777619u;
	return &policy_cache.e[h % POLICY_CACHE_SLOTS];
}

/* Stop using every kept policy: this process changed an account's
 * standing (called after the change is committed). */
static void policy_forget(void)
{
	pthread_mutex_lock(&policy_cache.mu);
	policy_cache.gen++;
	pthread_mutex_unlock(&policy_cache.mu);
}

/* `account`'s policy into *p: the one kept when it is recent, else read
 * from the ledger on `t`'s connection and kept.  0 (an account the ledger
 * does not have yet: all zero, as it will be created), or the ledger's
 * troop_err (nothing kept). */
static int policy_get(ledger_account_policy *p, coord_thread *t, const char *account)
{
	policy_entry *e = policy_slot(account);
	int64_t now = mono_ms();
	uint64_t gen;
	int rc;

	pthread_mutex_lock(&policy_cache.mu);
	gen = policy_cache.gen;
	if (e->gen == gen && now - e->read_ms < POLICY_CACHE_MS &&
	    strcmp(e->account, account) == 0) {
		*p = e->p;
		pthread_mutex_unlock(&policy_cache.mu);
		return 0;
	}
	pthread_mutex_unlock(&policy_cache.mu);
	rc = ledger_account_policy_get(p, t->db, account);
	if (rc == TROOP_ENOTFOUND)
		rc = 0;   /* *p is all zero: a new account's standing */
	if (rc != 0 || strlen(account) > LEDGER_ID_MAX)
		return rc;
	pthread_mutex_lock(&policy_cache.mu);
	if (policy_cache.gen == gen) {
		snprintf(e->account, sizeof(e->account), "%s", account);
		e->p = *p;
		e->read_ms = now;
		e->gen = gen;
	}
	pthread_mutex_unlock(&policy_cache.mu);
	return 0;
}

/* Count one /authorize against `key` at `limit` a second: 0, or
 * TROOP_ERATE with the 429 sent (`who` says whose requests, for the
 * message).  The registry failing must not stop every request: 0. */
static int rate_allowed(http_req *r, coord *c, const char *key, int64_t limit,
    const char *who)
{
	int rc = registry_rate_check(c->reg, key, 1, limit, (int64_t)time(NULL));

	if (rc != TROOP_ERATE)
		return 0;
	METRIC_ADD(&c->metrics, auth_rate_limited, 1);
	http_reply_header(r, "Retry-After", "1");
	coord_reply_error(r, TROOP_ERATE, "%s made more than %lld /authorize requests this "
	    "second; slow down (Retry-After: 1)", who, (long long)limit);
	return rc;
}

int coord_account_allowed(http_req *r, const char *account)
{
	coord_thread *t = coord_thread_of(r);
	coord *c = t->c;
	const char *peer = http_req_peer(r);
	ledger_account_policy p;
	int64_t limit;
	char key[96], who[96];
	int rc;

	if (c->authorize_addr_rate > 0 && peer && peer[0]) {
		snprintf(key, sizeof(key), "authaddr:%s", peer);
		snprintf(who, sizeof(who), "address %s", peer);
		if ((rc = rate_allowed(r, c, key, c->authorize_addr_rate, who)) != 0)
			return rc;
	}
	if (policy_get(&p, t, account) != 0)
		return 0;   /* the ledger failing shows at the reservation */
	if (p.suspended) {
		METRIC_ADD(&c->metrics, auth_suspended, 1);
		coord_reply_error(r, TROOP_EFORBIDDEN, "account %.8s is suspended by the "
		    "operator%s%s; ask the troop's operator", account,
		    p.suspend_reason[0] ? ": " : "", p.suspend_reason);
		return TROOP_EFORBIDDEN;
	}
	limit = p.rate_limit > 0 ? p.rate_limit : c->account_rate;
	if (limit <= 0)
		return 0;
	snprintf(key, sizeof(key), "acct:%s", account);
	snprintf(who, sizeof(who), "account %.8s", account);
	return rate_allowed(r, c, key, limit, who);
}

/* The body's target: "node" or "account", an id either way.  0, or a
 * troop_err with the reply sent. */
static int body_target(http_req *r, const json_t *body, ledger_target *kind, const char **id)
{
	const char *node = NULL, *account = NULL;
	unsigned char pk[TROOP_PK_LEN];
	int rc;

	if ((rc = json_get_strn(&node, body, "node", false, LEDGER_ID_MAX)) ||
	    (rc = json_get_strn(&account, body, "account", false, LEDGER_ID_MAX))) {
		coord_reply_last_error(r, rc);
		return rc;
	}
	if ((node == NULL) == (account == NULL)) {
		coord_reply_error(r, TROOP_EINVAL, "name exactly one of the fields 'node' and "
		    "'account'");
		return TROOP_EINVAL;
	}
	*kind = node ? LEDGER_TARGET_NODE : LEDGER_TARGET_ACCOUNT;
	*id = node ? node : account;
	if (account_id_decode(pk, *id) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "field '%s' must be an id (43 base64url "
		    "characters)", node ? "node" : "account");
		return TROOP_EINVAL;
	}
	return 0;
}

/* Copy node `id`'s ledger facts (its suspension) into its live registry
 * record, so that no coordinator chooses it before its next heartbeat.
 * A node that is not live has no record: nothing to do. */
static void refresh_node_facts(coord_thread *t, const char *id, int64_t now)
{
	ledger_node ln;
	registry_facts f;
	int rc;

	api_nodes_facts_forget(id);
	if (ledger_node_get(&ln, t->db, id) != 0)
		return;
	coord_node_facts(&f, t->c, &ln, now);
	rc = registry_set_node_facts(t->c->reg, id, &f, now);
	api_nodes_peers_forget();
	if (rc != 0 && rc != TROOP_ENOTFOUND)
		log_warn("admin_facts", "node=%.8s error=\"%s\"", id, troop_error_msg());
}

static void suspend(http_req *r, coord *c, bool on)
{
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *id = NULL, *reason = "", *raw;
	ledger_target kind;
	json_t *body = NULL;
	int64_t now = (int64_t)time(NULL);
	size_t len;
	int rc;

	if (coord_admin_signer(r, c, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_strn(&reason, body, "reason", false, LEDGER_NOTE_MAX))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (body_target(r, body, &kind, &id) != 0)
		goto out;
	if ((rc = ledger_admin_suspend(t->db, kind, id, on, reason, signer, now)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (kind == LEDGER_TARGET_NODE)
		refresh_node_facts(t, id, now);
	else
		policy_forget();
	log_info(on ? "admin_suspend" : "admin_unsuspend", "admin=%.8s %s=%.8s", signer,
	    kind == LEDGER_TARGET_NODE ? "node" : "account", id);
	coord_reply_json(r, 200, json_pack("{s:s, s:b, s:s}",
	    kind == LEDGER_TARGET_NODE ? "node" : "account", id, "suspended", on,
	    "reason", reason ? reason : ""));
out:
	json_decref(body);
}

static void h_suspend(http_req *r, void *arg)
{
	suspend(r, arg, true);
}

static void h_unsuspend(http_req *r, void *arg)
{
	suspend(r, arg, false);
}

static void h_rate_limit(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *account = NULL, *reason = "", *raw;
	unsigned char pk[TROOP_PK_LEN];
	int64_t per_second = 0;
	json_t *body = NULL;
	size_t len;
	int rc;

	if (coord_admin_signer(r, c, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_strn(&account, body, "account", true, LEDGER_ID_MAX)) ||
	    (rc = json_get_int(&per_second, body, "per_second", true, 0, 1000000)) ||
	    (rc = json_get_strn(&reason, body, "reason", false, LEDGER_NOTE_MAX))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (account_id_decode(pk, account) != 0) {
		coord_reply_error(r, TROOP_EINVAL,
		    "field 'account' must be an account id (43 base64url characters)");
		goto out;
	}
	if ((rc = ledger_admin_rate_limit(t->db, account, per_second, reason, signer,
	    (int64_t)time(NULL))) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	policy_forget();
	log_info("admin_rate_limit", "admin=%.8s account=%.8s per_second=%lld", signer, account,
	    (long long)per_second);
	coord_reply_json(r, 200, json_pack("{s:s, s:I, s:I}", "account", account, "per_second",
	    (json_int_t)per_second, "default", (json_int_t)c->account_rate));
out:
	json_decref(body);
}

/* The ring's published keys as JSON, oldest first. */
static json_t *keys_json(coord *c, int64_t now)
{
	ticket_keys_pub pub[TICKET_KEYS_MAX];
	size_t n = ticket_keys_published(c->tkeys, pub, TICKET_KEYS_MAX, now);
	json_t *a = json_array();

	for (size_t i = 0; i < n && a; i++)
		json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:b}", "kid", pub[i].pub.kid,
		    "activates_at", (json_int_t)pub[i].activates_at, "retires_at",
		    (json_int_t)pub[i].retires_at, "signing", pub[i].activates_at <= now &&
		    (i + 1 == n || pub[i + 1].activates_at > now)));
	return a;
}

static void h_rotate_key(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1], detail[256];
	const char *reason = "", *raw;
	int64_t lead = c->ticket_key_lead, now = (int64_t)time(NULL);
	ticket_keys_pub next;
	json_t *body = NULL;
	size_t len;
	int rc;

	if (coord_admin_signer(r, c, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_int(&lead, body, "lead_seconds", false, 0, 86400)) ||
	    (rc = json_get_strn(&reason, body, "reason", false, LEDGER_NOTE_MAX))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if ((rc = ticket_keys_rotate(c->tkeys, t->db, now, lead, c->ticket_ttl, &next)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	snprintf(detail, sizeof(detail), "kid=%s activates_at=%lld reason=%.160s",
	    next.pub.kid, (long long)next.activates_at, reason);
	if (ledger_audit(t->db, signer, "ticket_key_rotate", detail, now) != 0)
		log_warn("admin_ticket_key", "audit error=\"%s\"", troop_error_msg());
	log_info("admin_ticket_key", "admin=%.8s next_kid=%s activates_in=%lld", signer,
	    next.pub.kid, (long long)lead);
	coord_reply_json(r, 200, json_pack("{s:s, s:I, s:o}", "next_kid", next.pub.kid,
	    "activates_at", (json_int_t)next.activates_at, "keys", keys_json(c, now)));
out:
	json_decref(body);
}

/* Query parameter `name` as an id (or absent: ""): 0, or TROOP_EINVAL
 * with the reply sent. */
static int query_id(http_req *r, const char *name, const char **out)
{
	const char *v = http_req_query_param(r, name);
	unsigned char pk[TROOP_PK_LEN];

	*out = v ? v : "";
	if (v && v[0] && account_id_decode(pk, v) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "parameter '%s' must be an id (43 base64url "
		    "characters)", name);
		return TROOP_EINVAL;
	}
	return 0;
}

static void h_audit(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *account, *node, *type;
	int64_t limit, before, since, next = 0;
	ledger_audit_row *rows = NULL;
	size_t n = 0;
	json_t *arr;
	int rc;

	if (coord_admin_signer(r, c, signer) != 0)
		return;
	if (query_id(r, "account", &account) || query_id(r, "node", &node))
		return;
	if (account[0] && node[0]) {
		coord_reply_error(r, TROOP_EINVAL, "give 'account' or 'node', not both");
		return;
	}
	type = http_req_query_param(r, "type");
	if (type && strlen(type) > LEDGER_ACTION_MAX) {
		coord_reply_error(r, TROOP_EINVAL, "parameter 'type' is longer than %d characters",
		    LEDGER_ACTION_MAX);
		return;
	}
	if ((rc = http_req_query_int(r, "limit", ADMIN_PAGE_DEFAULT, 1, LEDGER_TX_LIMIT_MAX,
	    &limit)) ||
	    (rc = http_req_query_int(r, "before", 0, 0, INT64_MAX, &before)) ||
	    (rc = http_req_query_int(r, "since", 0, 0, INT64_MAX, &since)) ||
	    (rc = ledger_audit_page(&rows, &n, &next, t->db, account[0] ? account : node,
	    type ? type : "", since, (int)limit, before))) {
		coord_reply_last_error(r, rc);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I}",
		    "id", (json_int_t)rows[i].id, "actor", rows[i].actor, "type", rows[i].action,
		    "target", rows[i].target, "reason", rows[i].reason, "detail", rows[i].detail,
		    "time", (json_int_t)rows[i].created_at));
	free(rows);
	coord_reply_json(r, 200, json_pack("{s:o, s:o}", "entries", arr,
	    "next", next ? json_integer(next) : json_null()));
}

/* The admin signer and the ?after=ID&limit=N of a list page: 0, or -1
 * with the reply sent. */
static int list_page_args(http_req *r, coord *c, const char **after, int64_t *limit)
{
	char signer[TROOP_ID_LEN + 1];
	int rc;

	if (coord_admin_signer(r, c, signer) != 0 || query_id(r, "after", after))
		return -1;
	if ((rc = http_req_query_int(r, "limit", ADMIN_PAGE_DEFAULT, 1, LEDGER_TX_LIMIT_MAX,
	    limit)) != 0) {
		coord_reply_last_error(r, rc);
		return -1;
	}
	return 0;
}

static void h_nodes(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	const char *after;
	int64_t limit, now = (int64_t)time(NULL);
	ledger_node *rows = NULL;
	size_t n = 0;
	json_t *arr;
	int rc;

	if (list_page_args(r, c, &after, &limit) != 0)
		return;
	if ((rc = ledger_nodes_list(&rows, &n, t->db, after, (int)limit))) {
		coord_reply_last_error(r, rc);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++) {
		const ledger_node *ln = &rows[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:f, s:s, s:f, s:I, s:I, s:I, s:I, "
		    "s:I, s:I, s:b, s:b, s:I, s:I}",
		    "node_id", ln->node_id, "owner", ln->owner, "name", ln->name,
		    "verified", ln->verified, "multiplier", ln->multiplier,
		    "hardware_class", ln->hw_class, "reputation", ln->reputation,
		    "jobs_ok", (json_int_t)ln->jobs_ok, "jobs_failed", (json_int_t)ln->jobs_failed,
		    "disputes", (json_int_t)ln->disputes, "refusals", (json_int_t)ln->refusals,
		    "pending", (json_int_t)ln->pending, "payers", (json_int_t)ln->payers,
		    "established", ledger_node_established(ln, &c->policy, now),
		    "suspended", ln->suspended != 0, "audit_failed", (json_int_t)ln->audit_failed,
		    "last_seen", (json_int_t)ln->last_seen);
		if (o && ln->suspended)
			json_object_set_new(o, "suspend_reason", json_string(ln->suspend_reason));
		if (o) {
			/* docs/AUDITS.md */
			json_object_set_new(o, "audits_passed", json_integer(ln->audits_passed));
			json_object_set_new(o, "audits_failed", json_integer(ln->audits_failed));
			json_object_set_new(o, "suspect", json_boolean(ln->suspect != 0));
		}
		json_array_append_new(arr, o);
	}
	coord_reply_json(r, 200, json_pack("{s:o, s:o}", "nodes", arr, "next",
	    n == (size_t)limit ? json_string(rows[n - 1].node_id) : json_null()));
	free(rows);
}

static void h_accounts(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	const char *after;
	int64_t limit;
	ledger_account_row *rows = NULL;
	size_t n = 0;
	json_t *arr;
	int rc;

	if (list_page_args(r, c, &after, &limit) != 0)
		return;
	if ((rc = ledger_accounts_list(&rows, &n, t->db, after, (int)limit))) {
		coord_reply_last_error(r, rc);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++) {
		const ledger_account_row *a = &rows[i];
		json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:b, s:I, s:I}",
		    "account", a->account, "balance", (json_int_t)a->balance,
		    "trial", (json_int_t)a->trial, "reports", (json_int_t)a->reports,
		    "disputes", (json_int_t)a->disputes,
		    "dispute_rate", a->reports > 0 ? (double)a->disputes / (double)a->reports : 0.0,
		    "suspended", a->suspended != 0, "rate_limit", (json_int_t)a->rate_limit,
		    "created_at", (json_int_t)a->created_at);
		if (o && a->suspended)
			json_object_set_new(o, "suspend_reason", json_string(a->suspend_reason));
		json_array_append_new(arr, o);
	}
	coord_reply_json(r, 200, json_pack("{s:o, s:o}", "accounts", arr, "next",
	    n == (size_t)limit ? json_string(rows[n - 1].account) : json_null()));
	free(rows);
}

void api_admin_routes(http_server *s, coord *c)
{
	policy_forget();   /* a coordinator (re)started in this process: its own ledger */
	http_server_route(s, "POST", "/admin/suspend", h_suspend, c);
	http_server_route(s, "POST", "/admin/unsuspend", h_unsuspend, c);
	http_server_route(s, "POST", "/admin/rate-limit", h_rate_limit, c);
	http_server_route(s, "GET", "/admin/audit", h_audit, c);
	http_server_route(s, "GET", "/admin/nodes", h_nodes, c);
	http_server_route(s, "GET", "/admin/accounts", h_accounts, c);
	http_server_route(s, "POST", "/admin/ticket-key/rotate", h_rotate_key, c);
}
