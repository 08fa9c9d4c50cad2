/*
 * test_multi_coord.c - two running coordinators that share one PostgreSQL
 * ledger and one Redis registry, driven over HTTP with signed requests:
 *   same-key      both serve the same /public-key and JWKS;
 *   cross-settle  a job authorized on one coordinator settles with a
 *                 receipt sent to the other, in both directions, and a
 *                 receipt resent to the other one moves nothing;
 *   race          100 concurrent authorizations split across both, from an
 *                 account that affords exactly 10: 10 succeed, 90 get 402;
 *   node-row-unreadable   a candidate node's ledger row cannot be read (its
 *                 table locked past lock_timeout): /authorize answers 503
 *                 unavailable, not no_capacity;
 *   pg-restart    PostgreSQL stopped, with a client authorizing and settling
 *                 on both the whole time: what needs the ledger answers 503
 *                 in the JSON error shape on both, /health and /peers still
 *                 answer, no request goes unanswered; started again:
 *                 requests succeed at once, every balance and transaction
 *                 committed before is still there, and receipts refused
 *                 while it was down settle when resent;
 *   redis-restart Redis stopped: the registry's requests answer 503, both
 *                 keep serving /health; started again (empty): nodes are
 *                 gone until their next heartbeat, which brings them back
 *                 on both; optionally a real worker reappears within its
 *                 heartbeat interval.
 *
 * It does not start anything itself: tests/integration/test_multi_coordinator.sh
 * (label pg) starts the servers, the coordinators and a worker chain, and
 * runs this program with:
 *   TROOP_TEST_COORD_A, TROOP_TEST_COORD_B   the coordinators' base URLs
 *   TROOP_TEST_COORD_C                       a third one on the same servers
 *                                            with a 200 ms lock_timeout
 *   TROOP_TEST_DATABASE_URL                  their ledger (the conservation
 *                                            invariant is read from it)
 *   TROOP_TEST_PG_STOP, TROOP_TEST_PG_START  shell commands (pg-restart)
 *   TROOP_TEST_REDIS_STOP, TROOP_TEST_REDIS_START   (redis-restart)
 *   TROOP_TEST_WATCH_NODE, TROOP_TEST_WATCH_WITHIN_S   a live worker's node
 *                                            id and the seconds it may take
 *                                            to reappear after Redis restarts
 * Arguments name the tests to run (default: all, in the order above).
 * Without the two URLs it exits 77 (skipped), as under a plain ctest run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef TROOP_HAVE_PQ
#include <libpq-fe.h>
#endif

#include "error.h"
#include "harness.h"
#include "http_client.h"
#include "httpsig.h"
#include "identity.h"
#include "json.h"
#include "ledger.h"
#include "ticket.h"

#define RACE_THREADS 10
#define RACE_PER_THREAD 10

static const char *url_a, *url_b;
static http_client *hc;

/* ---- helpers ------------------------------------------------------------------ */

static json_t *call(const char *base, const troop_identity *id, const char *method,
    const char *path, const json_t *body, int *status)
{
	json_t *out = NULL;
	int rc;

	*status = 0;
	if (id) {
		rc = http_request_signed(hc, status, &out, id, method, base, path, body);
	} else {
		char url[512];
		snprintf(url, sizeof(url), "%s%s", base, path);
		rc = http_request_json(hc, status, &out, method, url, NULL, body);
	}
	if (rc != 0)
		fprintf(stderr, "%s %s%s: no answer: %s\n", method, base, path, troop_error_msg());
	assert_int_equal(rc, 0);
	return out;
}

/* The error reply shape of every API error: {"error": {message, type, code}};
 * returns the code. */
static const char *err_code(const json_t *body)
{
	const json_t *e = json_object_get(body, "error");

	assert_non_null(e);
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_true(json_is_string(json_object_get(e, "type")));
	assert_true(json_is_string(json_object_get(e, "code")));
	return json_string_value(json_object_get(e, "code"));
}

/* Expect `status` and, for errors, the JSON shape with `code`. */
static void expect(json_t *out, int st, int want, const char *code, const char *what)
{
	if (st != want)
		fprintf(stderr, "%s: %d, want %d: %s\n", what, st, want,
		    out ? json_dumps(out, 0) : "(no JSON)");
	assert_int_equal(st, want);
	if (code)
		assert_string_equal(err_code(out), code);
}

static int heartbeat(const char *base, const troop_identity *node, const char *model,
    int max_jobs)
{
	int st;
	json_t *b = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "name", "multi-box", "tailscale_ip", "127.0.0.1", "port", 9,
	    "status", "IDLE", "models", "name", model, "load", "active_jobs", 0,
	    "max_jobs", max_jobs);
	json_t *out = call(base, node, "POST", "/heartbeat", b, &st);

	if (st != 200 && st != 503)
		fprintf(stderr, "heartbeat: %d %s\n", st, out ? json_dumps(out, 0) : "");
	if (st == 503)
		assert_string_equal(err_code(out), "unavailable");
	json_decref(out);
	json_decref(b);
	return st;
}

/* POST /authorize; the reply (caller frees) and its status. */
static json_t *authorize(const char *base, const troop_identity *user, const char *model,
    int max_seconds, int *st)
{
	json_t *b = max_seconds > 0 ?
	    json_pack("{s:s, s:i}", "model", model, "max_seconds", max_seconds) :
	    json_pack("{s:s}", "model", model);
	json_t *out = call(base, user, "POST", "/authorize", b, st);

	json_decref(b);
	return out;
}

static json_t *receipt(const char *base, const troop_identity *node,
    const troop_identity *user, const char *job, int64_t duration_ms, int *st)
{
	char path[128];
	json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:s}", "job_id", job,
	    "node_id", node->id, "requester", user->id, "model", "m",
	    "duration_ms", (json_int_t)duration_ms, "prompt_tokens", 5,
	    "completion_tokens", 16, "outcome", "ok");
	json_t *out;

	snprintf(path, sizeof(path), "/jobs/%s/receipt", job);
	out = call(base, node, "POST", path, b, st);
	json_decref(b);
	return out;
}

/* GET /users/{id}/balance on `base` (200 expected): the reply. */
static json_t *balance(const char *base, const troop_identity *id)
{
	char path[128];
	int st;
	json_t *out;

	snprintf(path, sizeof(path), "/users/%s/balance", id->id);
	out = call(base, id, "GET", path, NULL, &st);
	expect(out, st, 200, NULL, "balance");
	return out;
}

static int64_t balance_field(const char *base, const troop_identity *id, const char *field)
{
	json_t *out = balance(base, id);
	int64_t v;

	assert_true(json_is_integer(json_object_get(out, field)));
	v = json_integer_value(json_object_get(out, field));
	json_decref(out);
	return v;
}

/* The account's whole transaction log as one coordinator returns it. */
static json_t *transactions(const char *base, const troop_identity *id)
{
	char path[160];
	int st;
	json_t *out, *tx;

	snprintf(path, sizeof(path), "/users/%s/transactions?limit=500", id->id);
	out = call(base, id, "GET", path, NULL, &st);
	expect(out, st, 200, NULL, "transactions");
	tx = json_incref(json_object_get(out, "transactions"));
	assert_true(json_is_array(tx));
	json_decref(out);
	return tx;
}

/* Balance and transactions of `id` must read the same on both coordinators. */
static void same_on_both(const troop_identity *id)
{
	json_t *ba = balance(url_a, id), *bb = balance(url_b, id);
	json_t *ta = transactions(url_a, id), *tb = transactions(url_b, id);

	assert_true(json_equal(ba, bb));
	assert_true(json_equal(ta, tb));
	json_decref(ba);
	json_decref(bb);
	json_decref(ta);
	json_decref(tb);
}

/* The ledger invariant (ledger_totals_balanced), read from the shared database. */
static void check_invariant(void)
{
	const char *db = getenv("TROOP_TEST_DATABASE_URL");
	ledger *l = NULL;
	ledger_conn *c = NULL;
	ledger_totals t;

	if (!db || !*db)
		return;
	assert_int_equal(ledger_open(&l, db), 0);
	assert_int_equal(ledger_conn_open(&c, l), 0);
	assert_int_equal(ledger_totals_get(&t, c), 0);
	assert_true(ledger_totals_balanced(&t));
	ledger_conn_close(c);
	ledger_close(l);
}

static void run_cmd(const char *env)
{
	const char *cmd = getenv(env);

	assert_non_null(cmd);
	if (system(cmd) != 0) {
		fprintf(stderr, "%s failed: %s\n", env, cmd);
		fail();
	}
}

static bool have_env(const char *a, const char *b)
{
	const char *x = getenv(a), *y = getenv(b);

	if (x && *x && y && *y)
		return true;
	fprintf(stderr, "# %s / %s not set: skipped\n", a, b);
	return false;
}

/* Whether GET /peers?model=M on `base` lists `node_id` (NULL: count only). */
static size_t peers(const char *base, const char *model, const char *node_id, bool *listed)
{
	char path[300];
	int st;
	json_t *out, *n;
	size_t i, count;

	snprintf(path, sizeof(path), "/peers%s%s", model ? "?model=" : "", model ? model : "");
	out = call(base, NULL, "GET", path, NULL, &st);
	expect(out, st, 200, NULL, "peers");
	count = json_array_size(json_object_get(out, "nodes"));
	if (listed) {
		*listed = false;
		json_array_foreach(json_object_get(out, "nodes"), i, n)
			if (node_id && strcmp(json_string_value(json_object_get(n, "node_id")),
			    node_id) == 0)
				*listed = true;
	}
	json_decref(out);
	return count;
}

/* A signed GET of the user's balance sent to `first` and then, unchanged
 * (same nonce), to `second`: the nonce store is shared, so the copy is a
 * replay there.  Asserts 200 then 401 bad_signature. */
static void replay_across(const troop_identity *user, const char *first, const char *second)
{
	char path[128], url[512], si[300], sg[200];
	httpsig_headers h;
	json_t *out;
	int st;

	snprintf(path, sizeof(path), "/users/%s/balance", user->id);
	assert_int_equal(httpsig_sign(&h, user, "GET", path, "", NULL, 0, time(NULL)), 0);
	snprintf(si, sizeof(si), "Signature-Input: %s", h.signature_input);
	snprintf(sg, sizeof(sg), "Signature: %s", h.signature);
	const char *hdrs[] = { si, sg, NULL };
	snprintf(url, sizeof(url), "%s%s", first, path);
	assert_int_equal(http_request_json(hc, &st, &out, "GET", url, hdrs, NULL), 0);
	expect(out, st, 200, NULL, "signed balance");
	json_decref(out);
	snprintf(url, sizeof(url), "%s%s", second, path);
	assert_int_equal(http_request_json(hc, &st, &out, "GET", url, hdrs, NULL), 0);
	expect(out, st, 401, "bad_signature", "the same signed request at the other coordinator");
	json_decref(out);
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- one signing key ------------------------------------------------------------ */

static void test_same_key(void **state)
{
	json_t *a, *b;
	int st;

	(void)state;
	a = call(url_a, NULL, "GET", "/public-key", NULL, &st);
	assert_int_equal(st, 200);
	b = call(url_b, NULL, "GET", "/public-key", NULL, &st);
	assert_int_equal(st, 200);
	assert_non_null(json_string_value(json_object_get(a, "public_key")));
	assert_true(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	a = call(url_a, NULL, "GET", "/.well-known/jwks.json", NULL, &st);
	b = call(url_b, NULL, "GET", "/.well-known/jwks.json", NULL, &st);
	assert_true(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	/* and both run on the shared backends */
	a = call(url_a, NULL, "GET", "/health", NULL, &st);
	b = call(url_b, NULL, "GET", "/health", NULL, &st);
	assert_string_equal(json_string_value(json_object_get(a, "ledger")), "postgres");
	assert_string_equal(json_string_value(json_object_get(a, "registry")), "redis");
	assert_true(json_equal(json_object_get(a, "ledger"), json_object_get(b, "ledger")));
	assert_true(json_equal(json_object_get(a, "registry"), json_object_get(b, "registry")));
	json_decref(a);
	json_decref(b);
}

/* ---- settlement on either coordinator --------------------------------------------- */

/* Authorize on `on`, check the ticket against the other's public key,
 * settle with a receipt sent to `settle_on`, resend to `on`. */
static void authorize_and_settle(const troop_identity *node, const troop_identity *user,
    const char *model, const char *on, const char *settle_on)
{
	char job[64];
	json_t *out, *pk;
	ticket_key key;
	ticket_claims cl;
	size_t n = 0;
	const char *pks;
	int st;

	out = authorize(on, user, model, 10, &st);
	expect(out, st, 200, NULL, "authorize");
	assert_string_equal(json_string_value(json_object_get(out, "node_id")), node->id);
	assert_int_equal(json_integer_value(json_object_get(out, "estimated_cost")), 10);
	snprintf(job, sizeof(job), "%s", json_string_value(json_object_get(out, "job_id")));
	/* the worker checks tickets with the key of the coordinator it knows */
	pk = call(settle_on, NULL, "GET", "/public-key", NULL, &st);
	pks = json_string_value(json_object_get(pk, "public_key"));
	assert_non_null(pks);
	assert_int_equal(sodium_base642bin(key.pk, sizeof(key.pk), pks, strlen(pks), NULL, &n,
	    NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	snprintf(key.kid, sizeof(key.kid), "%s", json_string_value(json_object_get(pk, "kid")));
	assert_int_equal(ticket_verify(&cl, json_string_value(json_object_get(out, "token")),
	    &key, 1, time(NULL)), 0);
	assert_string_equal(cl.jti, job);
	json_decref(pk);
	json_decref(out);
	/* both coordinators see the reservation */
	assert_int_equal(balance_field(on, user, "reserved_seconds"), 10);
	assert_int_equal(balance_field(settle_on, user, "reserved_seconds"), 10);
	check_invariant();

	/* 1.5 s at multiplier 1.0: charged 2, refunded 8 */
	out = receipt(settle_on, node, user, job, 1500, &st);
	expect(out, st, 200, NULL, "receipt");
	assert_string_equal(json_string_value(json_object_get(out, "status")), "settled");
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
	assert_int_equal(json_integer_value(json_object_get(out, "refunded")), 8);
	assert_false(json_is_true(json_object_get(out, "already_settled")));
	json_decref(out);
	/* resent to the coordinator that authorized it: the same answer, nothing moves */
	out = receipt(on, node, user, job, 9000, &st);
	expect(out, st, 200, NULL, "receipt resent");
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
	assert_true(json_is_true(json_object_get(out, "already_settled")));
	json_decref(out);
	assert_int_equal(balance_field(on, user, "reserved_seconds"), 0);
	check_invariant();
}

static void test_cross_settle(void **state)
{
	troop_identity node, user, thief;
	json_t *out;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	identity_generate(&thief);
	/* the node heartbeats to A only; B hands it out */
	assert_int_equal(heartbeat(url_a, &node, "multi-settle", 1000), 200);

	/* authorized on B, settled on A; then the other way round */
	authorize_and_settle(&node, &user, "multi-settle", url_b, url_a);
	authorize_and_settle(&node, &user, "multi-settle", url_a, url_b);

	assert_int_equal(balance_field(url_a, &user, "balance_seconds"), 3600 - 4);
	/* paid from the user's trial (starter) credits: pending for the node */
	assert_int_equal(balance_field(url_b, &node, "balance_seconds"), 0);
	assert_int_equal(balance_field(url_b, &node, "pending_seconds"), 4);
	same_on_both(&user);
	same_on_both(&node);

	/* another key cannot settle a job authorized elsewhere */
	out = authorize(url_b, &user, "multi-settle", 10, &st);
	expect(out, st, 200, NULL, "authorize");
	{
		char job[64];
		json_t *r;
		snprintf(job, sizeof(job), "%s", json_string_value(json_object_get(out, "job_id")));
		r = receipt(url_a, &thief, &user, job, 1000, &st);
		expect(r, st, 403, "forbidden", "thief's receipt");
		json_decref(r);
		r = receipt(url_a, &node, &user, job, 1000, &st);
		expect(r, st, 200, NULL, "receipt");
		json_decref(r);
	}
	json_decref(out);
	assert_int_equal(balance_field(url_b, &thief, "balance_seconds"), 3600);
	same_on_both(&user);
	/* one nonce store: a signed request used at A is a replay at B */
	replay_across(&user, url_a, url_b);
	replay_across(&user, url_b, url_a);
	check_invariant();
}

/* ---- 100 concurrent authorizations across both ------------------------------------- */

struct race {
	const troop_identity *user;
	int ok, poor, other, ok_a, ok_b;
	pthread_mutex_t mu;
	pthread_barrier_t go;
	int index;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	http_client *c;
	int me;

	pthread_mutex_lock(&r->mu);
	me = r->index++;
	pthread_mutex_unlock(&r->mu);
	http_client_new(&c);
	pthread_barrier_wait(&r->go);
	for (int i = 0; i < RACE_PER_THREAD; i++) {
		/* half of all requests to each coordinator, interleaved */
		bool on_a = (me + i) % 2 == 0;
		json_t *b = json_pack("{s:s}", "model", "multi-race"), *out = NULL;
		int st = 0;

		http_request_signed(c, &st, &out, r->user, "POST", on_a ? url_a : url_b,
		    "/authorize", b);
		pthread_mutex_lock(&r->mu);
		if (st == 200) {
			r->ok++;
			if (on_a)
				r->ok_a++;
			else
				r->ok_b++;
		} else if (st == 402 && out && json_is_object(json_object_get(out, "error")) &&
		    strcmp(json_string_value(json_object_get(json_object_get(out, "error"), "code")) ?:
		    "", "insufficient_credits") == 0) {
			r->poor++;
		} else {
			r->other++;
			fprintf(stderr, "race: %d %s\n", st, out ? json_dumps(out, 0) : "");
		}
		pthread_mutex_unlock(&r->mu);
		json_decref(b);
		json_decref(out);
	}
	http_client_free(c);
	return NULL;
}

static void test_race(void **state)
{
	troop_identity node, user;
	struct race r = { 0 };
	pthread_t th[RACE_THREADS];
	int64_t cost, available, starter;
	json_t *out;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	assert_int_equal(heartbeat(url_a, &node, "multi-race", 100000), 200);
	/* learn the price, then spend down (alternating coordinators) until
	 * exactly 10 authorizations fit */
	out = authorize(url_a, &user, "multi-race", 0, &st);
	expect(out, st, 200, NULL, "authorize");
	cost = json_integer_value(json_object_get(out, "estimated_cost"));
	json_decref(out);
	assert_true(cost > 0);
	available = balance_field(url_b, &user, "available_seconds");
	starter = available + cost;
	assert_int_equal(available % cost, 0);
	assert_true(available / cost >= 10);
	for (int i = 0; available > 10 * cost; i++) {
		out = authorize(i % 2 ? url_a : url_b, &user, "multi-race", 0, &st);
		expect(out, st, 200, NULL, "authorize");
		json_decref(out);
		available -= cost;
	}
	assert_int_equal(balance_field(url_a, &user, "available_seconds"), 10 * cost);

	r.user = &user;
	pthread_mutex_init(&r.mu, NULL);
	pthread_barrier_init(&r.go, NULL, RACE_THREADS);
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_create(&th[i], NULL, race_thread, &r);
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&r.go);
	pthread_mutex_destroy(&r.mu);
	printf("# race: %d granted (%d on A, %d on B), %d refused with 402, %d other\n",
	    r.ok, r.ok_a, r.ok_b, r.poor, r.other);
	assert_int_equal(r.other, 0);
	assert_int_equal(r.ok, 10);
	assert_int_equal(r.poor, RACE_THREADS * RACE_PER_THREAD - 10);
	assert_int_equal(balance_field(url_a, &user, "available_seconds"), 0);
	assert_int_equal(balance_field(url_b, &user, "reserved_seconds"), starter);
	same_on_both(&user);
	{
		json_t *tx = transactions(url_a, &user);
		size_t i, reserves = 0;
		json_t *row;
		json_array_foreach(tx, i, row)
			if (strcmp(json_string_value(json_object_get(row, "type")), "reserve") == 0)
				reserves++;
		assert_int_equal(reserves, (size_t)(starter / cost));
		json_decref(tx);
	}
	check_invariant();
}

/* ---- PostgreSQL restarted ------------------------------------------------------------ */

/* Traffic that runs while the database goes away and comes back: one
 * client authorizing (1 s jobs, price 1) on both coordinators in turn and
 * its node settling each job at the other one.  Every answer must be a
 * success or a clean 503 in the JSON error shape: never a dropped
 * connection (a coordinator that crashed) or another error. */
#define BG_JOBS_MAX 4096

struct bg {
	troop_identity node, user;
	_Atomic int stop;
	_Atomic int ok, unavailable, bad;   /* read by the main thread as they go */
	char unsettled[BG_JOBS_MAX][64];   /* jobs whose receipt got 503 */
	size_t n_unsettled;
};

static bool bg_clean(struct bg *g, int rc, int st, json_t *out, const char *what)
{
	const char *code = NULL;

	if (rc == 0 && st == 200) {
		g->ok++;
		return true;
	}
	if (rc == 0 && st == 503 && json_is_object(json_object_get(out, "error")))
		code = json_string_value(json_object_get(json_object_get(out, "error"), "code"));
	if (code && strcmp(code, "unavailable") == 0 &&
	    json_is_string(json_object_get(json_object_get(out, "error"), "message"))) {
		g->unavailable++;
	} else {
		g->bad++;
		fprintf(stderr, "background %s: rc %d status %d %s\n", what, rc, st,
		    out ? json_dumps(out, 0) : "(no JSON)");
	}
	return false;
}

static void *bg_thread(void *arg)
{
	struct bg *g = arg;
	http_client *c;

	http_client_new(&c);
	http_client_set_limits(c, 15000, 0);
	for (int i = 0; !g->stop && g->n_unsettled < BG_JOBS_MAX; i++) {
		const char *on = i % 2 ? url_a : url_b, *other = i % 2 ? url_b : url_a;
		json_t *b = json_pack("{s:s, s:i}", "model", "multi-pg-bg", "max_seconds", 1);
		json_t *out = NULL, *r = NULL;
		char job[64], path[128];
		int st = 0, rc;

		rc = http_request_signed(c, &st, &out, &g->user, "POST", on, "/authorize", b);
		json_decref(b);
		if (!bg_clean(g, rc, st, out, "authorize")) {
			json_decref(out);
			harness_sleep_ms(20);
			continue;
		}
		snprintf(job, sizeof(job), "%s", json_string_value(json_object_get(out, "job_id")));
		json_decref(out);
		b = json_pack("{s:s, s:s, s:I, s:s}", "job_id", job, "node_id", g->node.id,
		    "duration_ms", (json_int_t)500, "outcome", "ok");
		snprintf(path, sizeof(path), "/jobs/%s/receipt", job);
		st = 0;
		rc = http_request_signed(c, &st, &r, &g->node, "POST", other, path, b);
		json_decref(b);
		if (!bg_clean(g, rc, st, r, "receipt"))
			snprintf(g->unsettled[g->n_unsettled++], 64, "%s", job);
		json_decref(r);
	}
	http_client_free(c);
	return NULL;
}

static void test_pg_restart(void **state)
{
	troop_identity node, user;
	json_t *out, *bal_u, *bal_n, *tx_u, *tx_n;
	char pending[64], path[160];
	const char *urls[2] = { url_a, url_b };
	struct bg *g;
	pthread_t bg_th;
	int st;

	(void)state;
	if (!have_env("TROOP_TEST_PG_STOP", "TROOP_TEST_PG_START"))
		skip();
	identity_generate(&node);
	identity_generate(&user);
	assert_int_equal(heartbeat(url_a, &node, "multi-pg", 1000), 200);
	authorize_and_settle(&node, &user, "multi-pg", url_a, url_b);
	/* a job still reserved when the database goes away */
	out = authorize(url_b, &user, "multi-pg", 10, &st);
	expect(out, st, 200, NULL, "authorize");
	snprintf(pending, sizeof(pending), "%s", json_string_value(json_object_get(out, "job_id")));
	json_decref(out);
	bal_u = balance(url_a, &user);
	bal_n = balance(url_a, &node);
	tx_u = transactions(url_b, &user);
	tx_n = transactions(url_b, &node);
	check_invariant();

	/* traffic in flight across the stop and the start */
	g = calloc(1, sizeof(*g));
	assert_non_null(g);
	identity_generate(&g->node);
	identity_generate(&g->user);
	assert_int_equal(heartbeat(url_b, &g->node, "multi-pg-bg", 100000), 200);
	assert_int_equal(pthread_create(&bg_th, NULL, bg_thread, g), 0);
	for (int i = 0; i < 1000 && g->ok < 20 && g->bad == 0; i++)
		harness_sleep_ms(10);
	assert_int_equal(g->bad, 0);
	assert_true(g->ok >= 20);

	run_cmd("TROOP_TEST_PG_STOP");
	for (int k = 0; k < 2; k++) {
		const char *u = urls[k];
		/* what needs the ledger: 503 unavailable, JSON error shape */
		out = authorize(u, &user, "multi-pg", 10, &st);
		expect(out, st, 503, "unavailable", "authorize, database down");
		json_decref(out);
		snprintf(path, sizeof(path), "/users/%s/balance", user.id);
		out = call(u, &user, "GET", path, NULL, &st);
		expect(out, st, 503, "unavailable", "balance, database down");
		json_decref(out);
		snprintf(path, sizeof(path), "/users/%s/transactions", user.id);
		out = call(u, &user, "GET", path, NULL, &st);
		expect(out, st, 503, "unavailable", "transactions, database down");
		json_decref(out);
		out = receipt(u, &node, &user, pending, 1500, &st);
		expect(out, st, 503, "unavailable", "receipt, database down");
		json_decref(out);
		assert_int_equal(heartbeat(u, &node, "multi-pg", 1000), 503);
		/* the coordinator itself keeps serving */
		out = call(u, NULL, "GET", "/health", NULL, &st);
		expect(out, st, 200, NULL, "health, database down");
		json_decref(out);
		out = call(u, NULL, "GET", "/public-key", NULL, &st);
		expect(out, st, 200, NULL, "public-key, database down");
		json_decref(out);
		(void)peers(u, "multi-pg", NULL, NULL);
	}
	run_cmd("TROOP_TEST_PG_START");

	/* service resumes with the first request on each coordinator (each
	 * thread replaces its dropped connection), and nothing committed is lost */
	for (int k = 0; k < 2; k++) {
		json_t *b = balance(urls[k], &user), *t = transactions(urls[k], &user);
		assert_true(json_equal(b, bal_u));
		assert_true(json_equal(t, tx_u));
		json_decref(b);
		json_decref(t);
		b = balance(urls[k], &node);
		t = transactions(urls[k], &node);
		assert_true(json_equal(b, bal_n));
		assert_true(json_equal(t, tx_n));
		json_decref(b);
		json_decref(t);
	}
	check_invariant();
	/* every request of the test once more on each, several times so that
	 * every server thread's connection is exercised */
	for (int i = 0; i < 8; i++) {
		assert_int_equal(heartbeat(urls[i % 2], &node, "multi-pg", 1000), 200);
		out = call(urls[i % 2], NULL, "GET", "/peers?model=multi-pg", NULL, &st);
		expect(out, st, 200, NULL, "peers");
		json_decref(out);
	}
	/* the background client went on through it all, cleanly */
	{
		int before = g->ok;
		for (int i = 0; i < 500 && g->ok < before + 20; i++)
			harness_sleep_ms(10);
	}
	g->stop = 1;
	pthread_join(bg_th, NULL);
	printf("# background traffic across the restart: %d answered, %d clean 503s, "
	    "%d receipts to resend\n", g->ok, g->unavailable, (int)g->n_unsettled);
	assert_int_equal(g->bad, 0);
	assert_true(g->unavailable > 0);
	for (size_t i = 0; i < g->n_unsettled; i++) {
		json_t *b = json_pack("{s:s, s:s, s:I, s:s}", "job_id", g->unsettled[i],
		    "node_id", g->node.id, "duration_ms", (json_int_t)500, "outcome", "ok");
		snprintf(path, sizeof(path), "/jobs/%s/receipt", g->unsettled[i]);
		out = call(urls[i % 2], &g->node, "POST", path, b, &st);
		expect(out, st, 200, NULL, "a receipt refused during the outage, resent");
		json_decref(out);
		json_decref(b);
	}
	free(g);

	/* the receipt refused while the database was down settles now */
	out = receipt(url_a, &node, &user, pending, 1500, &st);
	expect(out, st, 200, NULL, "receipt after restart");
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
	json_decref(out);
	authorize_and_settle(&node, &user, "multi-pg", url_b, url_a);
	same_on_both(&user);
	same_on_both(&node);
	/* balance_seconds counts reserved credits: each of the two jobs cost 2 */
	assert_int_equal(balance_field(url_b, &user, "balance_seconds"),
	    json_integer_value(json_object_get(bal_u, "balance_seconds")) - 2 - 2);
	assert_int_equal(balance_field(url_b, &user, "reserved_seconds"), 0);
	json_decref(bal_u);
	json_decref(bal_n);
	json_decref(tx_u);
	json_decref(tx_n);
	check_invariant();
}

/* ---- a node's ledger row that cannot be read ----------------------------------------- */

/* /authorize takes the candidates' durable facts from the registry
 * records (copied there at heartbeat time), so it does not read the nodes
 * table at all: locked by another session, /authorize still answers.
 * When the one ledger transaction it does need fails (the accounts table
 * locked past the coordinator's lock_timeout), the answer is the ledger's
 * 503 "unavailable", not 503 "no_capacity" (every node busy), which would
 * send clients looking for capacity that is there. */
static void test_node_row_unreadable(void **state)
{
	const char *url_c = getenv("TROOP_TEST_COORD_C");
	const char *db = getenv("TROOP_TEST_DATABASE_URL");
	troop_identity node, user;
	json_t *out;
	int st;

	(void)state;
	if (!have_env("TROOP_TEST_COORD_C", "TROOP_TEST_DATABASE_URL"))
		skip();
#ifdef TROOP_HAVE_PQ
	PGconn *pg = PQconnectdb(db);
	PGresult *res;

	assert_int_equal(PQstatus(pg), CONNECTION_OK);
	identity_generate(&node);
	identity_generate(&user);
	assert_int_equal(heartbeat(url_a, &node, "multi-locked", 1000), 200);
	out = authorize(url_c, &user, "multi-locked", 10, &st);
	expect(out, st, 200, NULL, "authorize before the lock");
	json_decref(out);

	res = PQexec(pg, "BEGIN; LOCK TABLE nodes IN ACCESS EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	out = authorize(url_c, &user, "multi-locked", 10, &st);
	expect(out, st, 200, NULL, "authorize while the nodes table is locked");
	json_decref(out);
	res = PQexec(pg, "ROLLBACK");
	PQclear(res);

	res = PQexec(pg, "BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	out = authorize(url_c, &user, "multi-locked", 10, &st);
	expect(out, st, 503, "unavailable", "authorize while the ledger cannot reserve");
	json_decref(out);
	res = PQexec(pg, "ROLLBACK");
	PQclear(res);
	PQfinish(pg);

	out = authorize(url_c, &user, "multi-locked", 10, &st);
	expect(out, st, 200, NULL, "authorize after the lock");
	json_decref(out);
	check_invariant();
#else
	(void)node;
	(void)user;
	(void)out;
	(void)st;
	(void)url_c;
	(void)db;
	skip();
#endif
}

/* ---- Redis restarted ------------------------------------------------------------------- */

static void test_redis_restart(void **state)
{
	troop_identity node, user;
	const char *urls[2] = { url_a, url_b };
	const char *watch = getenv("TROOP_TEST_WATCH_NODE");
	const char *within = getenv("TROOP_TEST_WATCH_WITHIN_S");
	bool listed = false;
	double t0;
	json_t *out;
	int st;

	(void)state;
	if (!have_env("TROOP_TEST_REDIS_STOP", "TROOP_TEST_REDIS_START"))
		skip();
	identity_generate(&node);
	identity_generate(&user);
	assert_int_equal(heartbeat(url_a, &node, "multi-redis", 1000), 200);
	assert_int_equal(peers(url_b, "multi-redis", node.id, &listed), 1);
	assert_true(listed);

	run_cmd("TROOP_TEST_REDIS_STOP");
	for (int k = 0; k < 2; k++) {
		const char *u = urls[k];
		out = call(u, NULL, "GET", "/peers?model=multi-redis", NULL, &st);
		expect(out, st, 503, "unavailable", "peers, Redis down");
		json_decref(out);
		out = call(u, NULL, "GET", "/v1/models", NULL, &st);
		expect(out, st, 503, "unavailable", "models, Redis down");
		json_decref(out);
		/* signed requests fail closed: the nonce cannot be checked */
		assert_int_equal(heartbeat(u, &node, "multi-redis", 1000), 503);
		out = authorize(u, &user, "multi-redis", 10, &st);
		expect(out, st, 503, "unavailable", "authorize, Redis down");
		json_decref(out);
		out = call(u, NULL, "GET", "/health", NULL, &st);
		expect(out, st, 200, NULL, "health, Redis down");
		json_decref(out);
	}
	run_cmd("TROOP_TEST_REDIS_START");
	t0 = mono_s();

	/* Redis came back empty: every node is gone until its next heartbeat
	 * (only the live worker may have sent one already) */
	for (int k = 0; k < 2; k++) {
		size_t all, worker_back = 0;
		assert_int_equal(peers(urls[k], "multi-redis", node.id, &listed), 0);
		assert_false(listed);
		all = peers(urls[k], NULL, node.id, &listed);
		assert_false(listed);
		if (watch && *watch) {
			bool w = false;
			(void)peers(urls[k], NULL, watch, &w);
			worker_back = w ? 1 : 0;
		}
		printf("# right after the restart coordinator %c lists %zu node(s)%s\n", 'A' + k,
		    all, worker_back ? " (the worker, back already)" : "");
		assert_true(all <= worker_back);
	}
	/* its next heartbeat, to B this time, re-registers it for both */
	assert_int_equal(heartbeat(url_b, &node, "multi-redis", 1000), 200);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(peers(urls[k], "multi-redis", node.id, &listed), 1);
		assert_true(listed);
	}
	out = authorize(url_a, &user, "multi-redis", 10, &st);
	expect(out, st, 200, NULL, "authorize after Redis restart");
	assert_string_equal(json_string_value(json_object_get(out, "node_id")), node.id);
	json_decref(out);
	/* nonces are shared again: a request used at one is a replay at the other */
	replay_across(&user, url_b, url_a);

	/* a real worker comes back by itself within its heartbeat interval */
	if (watch && *watch) {
		double limit = within ? atof(within) : 15.0, took;
		listed = false;
		while (!listed && mono_s() - t0 < limit + 5) {
			(void)peers(url_b, NULL, watch, &listed);
			if (!listed)
				harness_sleep_ms(50);
		}
		took = mono_s() - t0;
		printf("# worker %.8s listed again %.2f s after Redis restarted (limit %.1f s)\n",
		    watch, took, limit);
		assert_true(listed);
		assert_true(took <= limit);
	}
	check_invariant();
}

/* ---- main --------------------------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (http_client_new(&hc) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_client_free(hc);
	curl_global_cleanup();
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		struct CMUnitTest t;
	} all[] = {
		{ "same-key", cmocka_unit_test(test_same_key) },
		{ "cross-settle", cmocka_unit_test(test_cross_settle) },
		{ "race", cmocka_unit_test(test_race) },
		{ "node-row-unreadable", cmocka_unit_test(test_node_row_unreadable) },
		{ "pg-restart", cmocka_unit_test(test_pg_restart) },
		{ "redis-restart", cmocka_unit_test(test_redis_restart) },
	};
	struct CMUnitTest tests[sizeof(all) / sizeof(all[0])];
	size_t n = 0;

	url_a = getenv("TROOP_TEST_COORD_A");
	url_b = getenv("TROOP_TEST_COORD_B");
	if (!url_a || !*url_a || !url_b || !*url_b) {
		fprintf(stderr, "TROOP_TEST_COORD_A / TROOP_TEST_COORD_B not set: skipped "
		    "(tests/integration/test_multi_coordinator.sh runs this)\n");
		return 77;
	}
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		bool want = argc < 2;
		for (int k = 1; k < argc; k++)
			if (strcmp(argv[k], all[i].name) == 0)
				want = true;
		if (want)
			tests[n++] = all[i].t;
	}
	if (n == 0 || (int)n < argc - 1) {
		fprintf(stderr, "usage: %s [same-key|cross-settle|race|node-row-unreadable|pg-restart|"
		    "redis-restart]...\n",
		    argv[0]);
		return 2;
	}
	return _cmocka_run_group_tests("multi_coordinator", tests, n, setup, teardown);
}
