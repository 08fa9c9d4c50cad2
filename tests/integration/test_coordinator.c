/*
 * test_coordinator.c - a real `troop coordinator` process on a loopback
 * port, driven over HTTP with signed requests the way workers and clients
 * sign them (DESIGN.md sections 4 to 7, 11).
 *
 * The coordinator uses its embedded storage unless TROOP_TEST_DATABASE_URL
 * and TROOP_TEST_REGISTRY_URL name a PostgreSQL database and a Redis
 * prefix (harness_backend_args): tests/integration/test_pg_coordinator.sh
 * runs this suite that way, each run on a fresh database and prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "http_client.h"
#include "httpsig.h"
#include "identity.h"
#include "json.h"
#include "ticket.h"

static char tmp[256];
static harness_proc coord;

static void start_coordinator(const char *dir, const char *extra1, const char *extra2)
{
	char data[300];
	const char *args[] = { "--threads", "2", "--allow-unverified", extra1, extra2, NULL };

	if (!extra1)
		args[3] = extra2;
	snprintf(data, sizeof(data), "%s/%s", tmp, dir);
	assert_int_equal(harness_start_coordinator(&coord, data, args), 0);
}

/* ---- request helpers -------------------------------------------------------- */

static json_t *call(http_client *c, const troop_identity *id, const char *method,
    const char *path, json_t *body, int *status)
{
	json_t *out = NULL;
	int rc;

	if (id)
		rc = http_request_signed(c, status, &out, id, method, coord.url, path, body);
	else {
		char url[512];
		snprintf(url, sizeof(url), "%s%s", coord.url, path);
		rc = http_request_json(c, status, &out, method, url, NULL, body);
	}
	assert_int_equal(rc, 0);
	return out;
}

static const char *err_code(json_t *body)
{
	json_t *e = json_object_get(body, "error");
	assert_non_null(e);
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_true(json_is_string(json_object_get(e, "type")));
	return json_string_value(json_object_get(e, "code"));
}

static json_t *heartbeat_body(const troop_identity *node, const char *status,
    const char *model, int max_jobs)
{
	return json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s, s:s, s:I, s:s}],"
	    " s:{s:s, s:i, s:i, s:i, s:i}, s:[{s:s, s:s, s:i}], s:s, s:{s:i, s:i}, s:s}",
	    "node_id", node->id, "name", "gpu-box", "tailscale_ip", "100.101.102.103",
	    "port", 8421, "status", status,
	    "models", "name", model, "content_hash", "sha256:abc123", "size_bytes",
	    (json_int_t)4661224676LL, "engine", "ollama",
	    "hardware", "gpu", "NVIDIA GeForce RTX 4090", "gpu_count", 1, "vram_total", 24564,
	    "vram_free", 20480, "gpu_util", 3,
	    "engines", "type", "ollama", "version", "0.6.2", "port", 11434,
	    "encryption_public_key", "x25519-key", "load", "active_jobs", 0,
	    "max_jobs", max_jobs, "version", "troop/0.1.0");
}

static void heartbeat(http_client *c, const troop_identity *node, const char *status,
    const char *model, int max_jobs, int want)
{
	int st = 0;
	json_t *b = heartbeat_body(node, status, model, max_jobs);
	json_t *out = call(c, node, "POST", "/heartbeat", b, &st);

	if (st != want)
		fprintf(stderr, "heartbeat: %d %s\n", st, out ? json_dumps(out, 0) : "");
	assert_int_equal(st, want);
	json_decref(b);
	json_decref(out);
}

static size_t peers_count(http_client *c, const char *model)
{
	char path[300];
	int st;
	json_t *out;
	size_t n;

	snprintf(path, sizeof(path), "/peers%s%s", model ? "?model=" : "", model ? model : "");
	out = call(c, NULL, "GET", path, NULL, &st);
	assert_int_equal(st, 200);
	n = (size_t)json_integer_value(json_object_get(out, "count"));
	assert_int_equal(n, json_array_size(json_object_get(out, "nodes")));
	json_decref(out);
	return n;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_flow(void **state)
{
	troop_identity node, user;
	http_client *c;
	json_t *out, *b;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	http_client_new(&c);

	out = call(c, NULL, "GET", "/health", NULL, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "healthy");
	json_decref(out);

	heartbeat(c, &node, "IDLE", "llama3:8b", 4, 200);
	assert_int_equal(peers_count(c, "llama3:8b"), 1);
	assert_int_equal(peers_count(c, "sha256:abc123"), 1);
	assert_int_equal(peers_count(c, "other-model"), 0);

	out = call(c, NULL, "GET", "/peers?model=llama3:8b", NULL, &st);
	{
		json_t *n0 = json_array_get(json_object_get(out, "nodes"), 0);
		assert_string_equal(json_string_value(json_object_get(n0, "node_id")), node.id);
		assert_string_equal(json_string_value(json_object_get(n0, "tailscale_ip")),
		    "100.101.102.103");
		assert_true(json_is_object(json_object_get(n0, "hardware")));
		assert_true(json_is_boolean(json_object_get(n0, "verified")));
		assert_true(json_is_number(json_object_get(n0, "multiplier")));
	}
	json_decref(out);

	out = call(c, NULL, "GET", "/v1/models", NULL, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "object")), "list");
	{
		json_t *m = json_array_get(json_object_get(out, "data"), 0);
		assert_string_equal(json_string_value(json_object_get(m, "id")), "llama3:8b");
		assert_int_equal(json_integer_value(json_object_get(m, "nodes")), 1);
		assert_string_equal(json_string_value(json_object_get(m, "owned_by")), "monkey-troop");
	}
	json_decref(out);

	/* authorize: a ticket for that node, verifiable with the public key */
	b = json_pack("{s:s}", "model", "llama3:8b");
	out = call(c, &user, "POST", "/authorize", b, &st);
	json_decref(b);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "node_id")), node.id);
	assert_string_equal(json_string_value(json_object_get(out, "target_ip")), "100.101.102.103");
	assert_int_equal(json_integer_value(json_object_get(out, "target_port")), 8421);
	assert_int_equal(json_integer_value(json_object_get(out, "estimated_cost")), 300);
	{
		json_t *pk = call(c, NULL, "GET", "/public-key", NULL, &st);
		ticket_key key;
		ticket_claims cl;
		size_t n = 0;
		const char *pks = json_string_value(json_object_get(pk, "public_key"));
		assert_non_null(pks);
		assert_int_equal(sodium_base642bin(key.pk, sizeof(key.pk), pks, strlen(pks), NULL,
		    &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
		snprintf(key.kid, sizeof(key.kid), "%s", json_string_value(json_object_get(pk, "kid")));
		assert_int_equal(ticket_verify(&cl, json_string_value(json_object_get(out, "token")),
		    &key, 1, time(NULL)), 0);
		assert_string_equal(cl.sub, user.id);
		assert_string_equal(cl.target_node, node.id);
		assert_string_equal(cl.model, "llama3:8b");
		assert_string_equal(cl.jti, json_string_value(json_object_get(out, "job_id")));
		json_decref(pk);
	}
	json_decref(out);

	/* the reservation shows in the balance */
	{
		char path[128];
		snprintf(path, sizeof(path), "/users/%s/balance", user.id);
		out = call(c, &user, "GET", path, NULL, &st);
		assert_int_equal(st, 200);
		assert_int_equal(json_integer_value(json_object_get(out, "balance_seconds")), 3600);
		assert_int_equal(json_integer_value(json_object_get(out, "reserved_seconds")), 300);
		assert_int_equal(json_integer_value(json_object_get(out, "available_seconds")), 3300);
		json_decref(out);

		snprintf(path, sizeof(path), "/users/%s/transactions?limit=10", user.id);
		out = call(c, &user, "GET", path, NULL, &st);
		assert_int_equal(st, 200);
		json_t *tx = json_object_get(out, "transactions");
		assert_int_equal(json_array_size(tx), 2); /* grant, reserve */
		assert_string_equal(json_string_value(json_object_get(json_array_get(tx, 0), "type")),
		    "reserve");
		assert_string_equal(json_string_value(json_object_get(json_array_get(tx, 1), "type")),
		    "grant");
		json_decref(out);
	}

	/* a model nobody serves: 404; every node excluded: 503 */
	b = json_pack("{s:s}", "model", "nope");
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 404);
	assert_string_equal(err_code(out), "model_not_found");
	json_decref(out);
	json_decref(b);
	b = json_pack("{s:s, s:[s]}", "model", "llama3:8b", "exclude", node.id);
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 503);
	assert_string_equal(err_code(out), "no_capacity");
	/* the message says why: the one node already failed this request */
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
	    "message")), "1 node already failed this request"));
	json_decref(out);
	json_decref(b);

	/* a BUSY node is not chosen, and the message says it is busy */
	heartbeat(c, &node, "BUSY", "llama3:8b", 4, 200);
	b = json_pack("{s:s}", "model", "llama3:8b");
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 503);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
	    "message")), "1 node busy"));
	json_decref(out);
	json_decref(b);
	heartbeat(c, &node, "OFFLINE", "llama3:8b", 4, 200);
	http_client_free(c);
}

static void test_node_id_must_be_signer(void **state)
{
	troop_identity node, thief;
	http_client *c;
	json_t *b, *out;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&thief);
	http_client_new(&c);
	heartbeat(c, &node, "IDLE", "m-owned", 4, 200);
	/* the thief signs a heartbeat that claims the node's id and a new address */
	b = heartbeat_body(&node, "IDLE", "m-owned", 4);
	json_object_set_new(b, "tailscale_ip", json_string("100.66.66.66"));
	out = call(c, &thief, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 403);
	assert_string_equal(err_code(out), "forbidden");
	json_decref(out);
	json_decref(b);
	out = call(c, NULL, "GET", "/peers?model=m-owned", NULL, &st);
	assert_string_equal(json_string_value(json_object_get(
	    json_array_get(json_object_get(out, "nodes"), 0), "tailscale_ip")), "100.101.102.103");
	json_decref(out);
	heartbeat(c, &node, "OFFLINE", "m-owned", 4, 200);
	http_client_free(c);
}

static void test_bad_signatures(void **state)
{
	troop_identity user;
	http_client *c;
	http_response resp;
	char url[256];
	json_t *out;
	int st;

	(void)state;
	identity_generate(&user);
	http_client_new(&c);
	/* unsigned */
	snprintf(url, sizeof(url), "%s/authorize", coord.url);
	{
		json_t *b = json_pack("{s:s}", "model", "x");
		out = NULL;
		assert_int_equal(http_request_json(c, &st, &out, "POST", url, NULL, b), 0);
		assert_int_equal(st, 401);
		assert_string_equal(err_code(out), "bad_signature");
		json_decref(out);
		json_decref(b);
	}
	/* signed, then the body changed in transit */
	{
		const char *body = "{\"model\":\"x\"}", *evil = "{\"model\":\"y\"}";
		httpsig_headers h;
		char cd[128], si[300], sg[200];
		assert_int_equal(httpsig_sign(&h, &user, "POST", "/authorize", "", body,
		    strlen(body), time(NULL)), 0);
		snprintf(cd, sizeof(cd), "Content-Digest: %s", h.content_digest);
		snprintf(si, sizeof(si), "Signature-Input: %s", h.signature_input);
		snprintf(sg, sizeof(sg), "Signature: %s", h.signature);
		const char *hdrs[] = { cd, si, sg, "Content-Type: application/json", NULL };
		assert_int_equal(http_request(c, &resp, "POST", url, hdrs, evil, strlen(evil)), 0);
		assert_int_equal(resp.status, 401);
		assert_non_null(strstr(resp.body, "bad_signature"));
		http_response_free(&resp);
		/* the untouched request goes through once ... */
		assert_int_equal(http_request(c, &resp, "POST", url, hdrs, body, strlen(body)), 0);
		assert_int_equal(resp.status, 404); /* signature fine; model x unknown */
		http_response_free(&resp);
		/* ... and never twice (nonce) */
		assert_int_equal(http_request(c, &resp, "POST", url, hdrs, body, strlen(body)), 0);
		assert_int_equal(resp.status, 401);
		http_response_free(&resp);
	}
	http_client_free(c);
}

static void test_other_accounts_private(void **state)
{
	troop_identity a, b;
	http_client *c;
	char path[128];
	json_t *out;
	int st;

	(void)state;
	identity_generate(&a);
	identity_generate(&b);
	http_client_new(&c);
	snprintf(path, sizeof(path), "/users/%s/balance", a.id);
	out = call(c, &b, "GET", path, NULL, &st);
	assert_int_equal(st, 403);
	json_decref(out);
	snprintf(path, sizeof(path), "/users/%s/transactions", a.id);
	out = call(c, &b, "GET", path, NULL, &st);
	assert_int_equal(st, 403);
	json_decref(out);
	out = call(c, &a, "GET", path, NULL, &st);
	assert_int_equal(st, 200);
	json_decref(out);
	http_client_free(c);
}

struct race {
	const troop_identity *user;
	int ok, poor, other;
	pthread_mutex_t mu;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	http_client *c;

	http_client_new(&c);
	for (int i = 0; i < 10; i++) {
		json_t *b = json_pack("{s:s}", "model", "race-model"), *out = NULL;
		int st = 0;
		http_request_signed(c, &st, &out, r->user, "POST", coord.url, "/authorize", b);
		pthread_mutex_lock(&r->mu);
		if (st == 200)
			r->ok++;
		else if (st == 402)
			r->poor++;
		else
			r->other++;
		pthread_mutex_unlock(&r->mu);
		json_decref(b);
		json_decref(out);
	}
	http_client_free(c);
	return NULL;
}

static void test_concurrent_authorize(void **state)
{
	troop_identity node, user;
	http_client *c;
	struct race r = { 0 };
	pthread_t th[10];
	char path[128];
	json_t *out;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	http_client_new(&c);
	heartbeat(c, &node, "IDLE", "race-model", 100000, 200);
	/* 3600 starter credits at 300 per authorization: exactly 12 fit;
	 * spend 2 first so that exactly 10 remain */
	for (int i = 0; i < 2; i++) {
		json_t *b = json_pack("{s:s}", "model", "race-model");
		out = call(c, &user, "POST", "/authorize", b, &st);
		assert_int_equal(st, 200);
		json_decref(out);
		json_decref(b);
	}
	r.user = &user;
	pthread_mutex_init(&r.mu, NULL);
	for (int i = 0; i < 10; i++)
		pthread_create(&th[i], NULL, race_thread, &r);
	for (int i = 0; i < 10; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(r.other, 0);
	assert_int_equal(r.ok, 10);
	assert_int_equal(r.poor, 90);
	snprintf(path, sizeof(path), "/users/%s/balance", user.id);
	out = call(c, &user, "GET", path, NULL, &st);
	assert_int_equal(json_integer_value(json_object_get(out, "available_seconds")), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "reserved_seconds")), 3600);
	json_decref(out);
	/* the 402 names balance and price */
	{
		json_t *b = json_pack("{s:s}", "model", "race-model");
		out = call(c, &user, "POST", "/authorize", b, &st);
		assert_int_equal(st, 402);
		assert_string_equal(err_code(out), "insufficient_credits");
		assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
		    "message")), "price 300"));
		json_decref(out);
		json_decref(b);
	}
	heartbeat(c, &node, "OFFLINE", "race-model", 4, 200);
	http_client_free(c);
}

static void test_ttl_and_offline(void **state)
{
	troop_identity a, b;
	http_client *c;

	(void)state;
	identity_generate(&a);
	identity_generate(&b);
	http_client_new(&c);
	heartbeat(c, &a, "IDLE", "ttl-model", 4, 200);
	heartbeat(c, &b, "IDLE", "ttl-model", 4, 200);
	assert_int_equal(peers_count(c, "ttl-model"), 2);
	heartbeat(c, &b, "OFFLINE", "ttl-model", 4, 200);
	assert_int_equal(peers_count(c, "ttl-model"), 1);
	/* node-ttl is 3 s in this suite: a silent node drops out */
	harness_sleep_ms(3500);
	assert_int_equal(peers_count(c, "ttl-model"), 0);
	http_client_free(c);
}

static void test_bad_input(void **state)
{
	troop_identity node;
	http_client *c;
	http_response resp;
	char url[256];
	json_t *b, *out, *models;
	int st;

	(void)state;
	identity_generate(&node);
	http_client_new(&c);

	/* unknown fields are ignored */
	b = heartbeat_body(&node, "IDLE", "bad-input-model", 4);
	json_object_set_new(b, "future_field", json_pack("{s:i}", "x", 1));
	out = call(c, &node, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 200);
	json_decref(out);
	/* a missing field is named */
	json_object_del(b, "port");
	out = call(c, &node, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 400);
	assert_string_equal(err_code(out), "bad_request");
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
	    "message")), "port"));
	json_decref(out);
	/* a mistyped field is named */
	json_object_set_new(b, "port", json_string("8421"));
	out = call(c, &node, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 400);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
	    "message")), "port"));
	json_decref(out);
	/* more than 256 models */
	json_object_set_new(b, "port", json_integer(8421));
	models = json_array();
	for (int i = 0; i < 257; i++)
		json_array_append_new(models, json_pack("{s:s}", "name", "m"));
	json_object_set_new(b, "models", models);
	out = call(c, &node, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 400);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
	    "message")), "models"));
	json_decref(out);
	json_decref(b);

	/* a body over 1 MiB: 413 in the JSON shape */
	{
		size_t big = 1024 * 1024 + 10;
		char *junk = malloc(big);
		memset(junk, 'a', big);
		snprintf(url, sizeof(url), "%s/heartbeat", coord.url);
		/* Expect: 100-continue, as curl sends for large bodies: the 413
		 * comes before the body is sent.  Without it the server may
		 * answer and close while the client is still sending, and the
		 * client then sees a reset instead of the 413 (seen under TSan) */
		const char *h[] = { "Content-Type: application/json", "Expect: 100-continue", NULL };
		assert_int_equal(http_request(c, &resp, "POST", url, h, junk, big), 0);
		assert_int_equal(resp.status, 413);
		assert_non_null(strstr(resp.body, "too_large"));
		http_response_free(&resp);
		free(junk);
	}
	/* malformed JSON: 400 */
	{
		const char *bad = "{\"node_id\": ";
		httpsig_headers hs;
		char cd[128], si[300], sg[200];
		httpsig_sign(&hs, &node, "POST", "/heartbeat", "", bad, strlen(bad), time(NULL));
		snprintf(cd, sizeof(cd), "Content-Digest: %s", hs.content_digest);
		snprintf(si, sizeof(si), "Signature-Input: %s", hs.signature_input);
		snprintf(sg, sizeof(sg), "Signature: %s", hs.signature);
		const char *h[] = { cd, si, sg, NULL };
		assert_int_equal(http_request(c, &resp, "POST", url, h, bad, strlen(bad)), 0);
		assert_int_equal(resp.status, 400);
		assert_non_null(strstr(resp.body, "bad_request"));
		http_response_free(&resp);
	}
	/* unknown path: JSON 404; wrong method: JSON 405 */
	out = call(c, NULL, "GET", "/no/such/path", NULL, &st);
	assert_int_equal(st, 404);
	assert_string_equal(err_code(out), "not_found");
	json_decref(out);
	out = call(c, NULL, "GET", "/heartbeat", NULL, &st);
	assert_int_equal(st, 405);
	assert_string_equal(err_code(out), "method_not_allowed");
	json_decref(out);
	/* transactions limit over 500 */
	{
		char path[160];
		snprintf(path, sizeof(path), "/users/%s/transactions?limit=501", node.id);
		out = call(c, &node, "GET", path, NULL, &st);
		assert_int_equal(st, 400);
		json_decref(out);
	}
	/* the server still serves */
	out = call(c, NULL, "GET", "/health", NULL, &st);
	assert_int_equal(st, 200);
	json_decref(out);
	heartbeat(c, &node, "OFFLINE", "bad-input-model", 4, 200);
	http_client_free(c);
}

static void test_metrics(void **state)
{
	http_client *c;
	http_response resp;
	char url[256];
	int samples = 0;

	(void)state;
	http_client_new(&c);
	snprintf(url, sizeof(url), "%s/metrics", coord.url);
	assert_int_equal(http_request(c, &resp, "GET", url, NULL, NULL, 0), 0);
	assert_int_equal(resp.status, 200);
	assert_non_null(strstr(resp.content_type, "text/plain"));
	/* Prometheus text: comments start with '#', samples are
	 * name{labels} value, names [a-zA-Z_:][a-zA-Z0-9_:]* */
	for (char *line = strtok(resp.body, "\n"); line; line = strtok(NULL, "\n")) {
		char *p = line, *end;
		if (line[0] == '#') {
			assert_true(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0);
			continue;
		}
		assert_true(isalpha((unsigned char)*p) || *p == '_' || *p == ':');
		while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
			p++;
		if (*p == '{') {
			p = strchr(p, '}');
			assert_non_null(p);
			p++;
		}
		assert_int_equal(*p, ' ');
		strtod(p + 1, &end);
		assert_true(end > p + 1);
		assert_int_equal(*end, '\0');
		samples++;
	}
	assert_true(samples >= 10);
	http_response_free(&resp);
	http_client_free(c);
}

static void test_admin_and_restart(void **state)
{
	troop_identity admin, user;
	http_client *c;
	json_t *b, *out, *pk1, *pk2;
	char path[160];
	int st;

	(void)state;
	http_client_new(&c);
	identity_generate(&user);
	/* the suite's coordinator runs with --admin from the identity saved by setup */
	assert_int_equal(identity_load(&admin, getenv("TROOP_TEST_ADMIN_KEY")), 0);

	b = json_pack("{s:s, s:i, s:s}", "account", user.id, "credits", 500, "reason", "test");
	out = call(c, &user, "POST", "/admin/grant", b, &st);
	assert_int_equal(st, 403);
	json_decref(out);
	out = call(c, &admin, "POST", "/admin/grant", b, &st);
	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);

	snprintf(path, sizeof(path), "/users/%s/balance", user.id);
	/* an account that an admin grant created gets no starter credits */
	out = call(c, &user, "GET", path, NULL, &st);
	assert_int_equal(json_integer_value(json_object_get(out, "balance_seconds")), 500);
	json_decref(out);
	pk1 = call(c, NULL, "GET", "/public-key", NULL, &st);

	/* restart on the same data directory: balances, transactions and the
	 * coordinator key are still there */
	assert_int_equal(WIFEXITED(harness_stop(&coord, SIGTERM)), 1);
	start_coordinator("coord", "--node-ttl", "3");
	pk2 = call(c, NULL, "GET", "/public-key", NULL, &st);
	assert_true(json_equal(pk1, pk2));
	out = call(c, &user, "GET", path, NULL, &st);
	assert_int_equal(json_integer_value(json_object_get(out, "balance_seconds")), 500);
	json_decref(out);
	snprintf(path, sizeof(path), "/users/%s/transactions", user.id);
	out = call(c, &user, "GET", path, NULL, &st);
	assert_int_equal(json_array_size(json_object_get(out, "transactions")), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(out, "transactions"), 0), "type")), "admin");
	json_decref(out);
	json_decref(pk1);
	json_decref(pk2);
	http_client_free(c);
}

/* The periodic sweep (release of expired reservations) takes the ledger's
 * write lock.  While another process holds that lock the sweep waits in
 * SQLite's busy handler for up to 5 s: on its own thread that must not
 * delay /health on a coordinator with a single serving thread. */
static void test_sweeper_off_serving_loop(void **state)
{
	static const char *const one_thread[] = { "--threads", "1", NULL };
	char data[300], dbpath[320], url[128];
	harness_proc p;
	http_client *c;
	sqlite3 *db = NULL;
	double worst = 0;
	int st;

	(void)state;
	if (harness_backend_pg()) {
		print_message("the ledger is PostgreSQL: the SQLite write lock test is skipped\n");
		skip();
	}
	snprintf(data, sizeof(data), "%s/sweeplock", tmp);
	assert_int_equal(harness_start_coordinator(&p, data, one_thread), 0);
	http_client_new(&c);
	snprintf(url, sizeof(url), "%s/health", p.url);

	/* another process holds the write lock for 5 s: two sweeps fall in it */
	snprintf(dbpath, sizeof(dbpath), "%s/ledger.db", data);
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int k = 0; k < 50; k++) {
		struct timespec a, b;
		json_t *out = NULL;
		clock_gettime(CLOCK_MONOTONIC, &a);
		assert_int_equal(http_request_json(c, &st, &out, "GET", url, NULL, NULL), 0);
		clock_gettime(CLOCK_MONOTONIC, &b);
		assert_int_equal(st, 200);
		json_decref(out);
		double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
		if (ms > worst)
			worst = ms;
		harness_sleep_ms(100);
	}
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	printf("# /health while the sweeper waits on the ledger lock: worst %.1f ms\n", worst);
	/* a sweep waiting on the lock stalls a loop it runs on for up to 5 s */
	assert_true(worst < 1500);
	assert_int_equal(WIFEXITED(harness_stop(&p, SIGTERM)), 1);
	http_client_free(c);
}

/* Issue 16 item 7: the nonce store is shared by every signer.  One
 * identity sending signed requests as fast as it can must hit its own
 * quota and leave room for everyone else (a coordinator remembering 400
 * nonces: 20 per signer, 100 per address). */
static void test_nonce_quota(void **state)
{
	static const char *const max_nonces[] = { "--max-nonces", "400", NULL };
	char data[300], path[160];
	troop_identity mallory, alice;
	harness_proc p;
	http_client *c;
	json_t *out;
	int st = 0, accepted = 0;

	(void)state;
	snprintf(data, sizeof(data), "%s/nonceq", tmp);
	assert_int_equal(harness_start_coordinator(&p, data, max_nonces), 0);
	http_client_new(&c);
	identity_generate(&mallory);
	identity_generate(&alice);

	snprintf(path, sizeof(path), "/users/%s/balance", mallory.id);
	for (int k = 0; k < 400; k++) {
		out = NULL;
		assert_int_equal(http_request_signed(c, &st, &out, &mallory, "GET", p.url, path,
		    NULL), 0);
		json_decref(out);
		if (st != 200)
			break;
		accepted++;
	}
	/* refused at its quota, with 429, long before the store is full */
	assert_int_equal(st, 429);
	assert_int_equal(accepted, 20);
	/* another signer is not locked out */
	snprintf(path, sizeof(path), "/users/%s/balance", alice.id);
	out = NULL;
	assert_int_equal(http_request_signed(c, &st, &out, &alice, "GET", p.url, path, NULL), 0);
	assert_int_equal(st, 200);
	json_decref(out);
	assert_int_equal(WIFEXITED(harness_stop(&p, SIGTERM)), 1);
	http_client_free(c);
}

/* Issue "Speed under concurrency" item 3: the node cap is a flag.  With
 * --max-nodes 3 three nodes register, the fourth is refused (503 with the
 * error shape), a known node still heartbeats, and the fourth gets in
 * once one of the three went OFFLINE. */
static void test_max_nodes_flag(void **state)
{
	static const char *const max_nodes[] = { "--max-nodes", "3", NULL };
	troop_identity nodes[4];
	char data[300];
	harness_proc p;
	http_client *c;
	json_t *b, *out;
	int st;

	(void)state;
	snprintf(data, sizeof(data), "%s/maxnodes", tmp);
	assert_int_equal(harness_start_coordinator(&p, data, max_nodes), 0);
	http_client_new(&c);
	for (int i = 0; i < 4; i++) {
		identity_generate(&nodes[i]);
		b = heartbeat_body(&nodes[i], "IDLE", "llama3:8b", 4);
		out = NULL;
		assert_int_equal(http_request_signed(c, &st, &out, &nodes[i], "POST", p.url,
		    "/heartbeat", b), 0);
		assert_int_equal(st, i < 3 ? 200 : 503);
		if (i == 3)
			assert_string_equal(err_code(out), "unavailable");
		json_decref(out);
		json_decref(b);
	}
	const char *again[] = { "IDLE", "OFFLINE" };
	for (int k = 0; k < 2; k++) {
		b = heartbeat_body(&nodes[0], again[k], "llama3:8b", 4);
		out = NULL;
		assert_int_equal(http_request_signed(c, &st, &out, &nodes[0], "POST", p.url,
		    "/heartbeat", b), 0);
		assert_int_equal(st, 200);
		json_decref(out);
		json_decref(b);
	}
	b = heartbeat_body(&nodes[3], "IDLE", "llama3:8b", 4);
	out = NULL;
	assert_int_equal(http_request_signed(c, &st, &out, &nodes[3], "POST", p.url, "/heartbeat",
	    b), 0);
	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);
	assert_int_equal(WIFEXITED(harness_stop(&p, SIGTERM)), 1);
	http_client_free(c);
}

/* A string of n 'x' characters (malloc'd). */
static char *filler(size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, 'x', n);
	s[n] = '\0';
	return s;
}

static const char *err_message(json_t *body)
{
	return json_string_value(json_object_get(json_object_get(body, "error"), "message"));
}

/* Issue 16 item 5: a node cannot make /peers repeat a huge hardware
 * object.  Unknown hardware keys are dropped; documented ones are bounded. */
static void test_peers_amplification(void **state)
{
	enum { NODES = 20 };
	troop_identity nodes[NODES];
	http_client *c;
	http_response resp;
	char url[256];
	char *junk = filler(60 * 1024);
	json_t *b, *out, *hw;
	int st;

	(void)state;
	http_client_new(&c);
	for (int i = 0; i < NODES; i++) {
		identity_generate(&nodes[i]);
		b = heartbeat_body(&nodes[i], "IDLE", "amplify-model", 4);
		hw = json_object_get(b, "hardware");
		/* 60 kB: just under the registry's 64 kB per-node limit */
		json_object_set_new(hw, "junk", json_string(junk));
		out = call(c, &nodes[i], "POST", "/heartbeat", b, &st);
		/* refused or stored trimmed; both keep /peers small */
		assert_true(st == 200 || st == 400);
		json_decref(out);
		json_decref(b);
	}
	snprintf(url, sizeof(url), "%s/peers?model=amplify-model&limit=1000", coord.url);
	assert_int_equal(http_request(c, &resp, "GET", url, NULL, NULL, 0), 0);
	assert_int_equal(resp.status, 200);
	/* 20 nodes at 60 kB each would be 1.2 MB; a trimmed record is < 2 kB */
	assert_true(resp.len < NODES * 2048);
	assert_null(strstr(resp.body, "xxxxxxxx"));
	http_response_free(&resp);
	/* the documented fields survive */
	snprintf(url, sizeof(url), "/nodes/%s", nodes[0].id);
	out = call(c, NULL, "GET", url, NULL, &st);
	assert_int_equal(st, 200);
	hw = json_object_get(out, "hardware");
	assert_string_equal(json_string_value(json_object_get(hw, "gpu")),
	    "NVIDIA GeForce RTX 4090");
	assert_int_equal(json_integer_value(json_object_get(hw, "vram_total")), 24564);
	assert_null(json_object_get(hw, "junk"));
	json_decref(out);

	/* 120 kB of unknown hardware keys: trimmed and stored, where the
	 * registry once answered 413 with its own internal message */
	b = heartbeat_body(&nodes[1], "IDLE", "amplify-model", 4);
	hw = json_object_get(b, "hardware");
	json_object_set_new(hw, "junk", json_string(junk));
	json_object_set_new(hw, "more", json_string(junk));
	out = call(c, &nodes[1], "POST", "/heartbeat", b, &st);
	if (st != 200)
		assert_null(strstr(err_message(out), "registry"));
	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);

	/* a documented field over its bound: 400 naming it */
	b = heartbeat_body(&nodes[0], "IDLE", "amplify-model", 4);
	json_object_set_new(json_object_get(b, "hardware"), "gpu", json_string(junk));
	out = call(c, &nodes[0], "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 400);
	assert_non_null(strstr(err_message(out), "gpu"));
	json_decref(out);
	json_decref(b);
	/* engines are bounded too */
	b = heartbeat_body(&nodes[0], "IDLE", "amplify-model", 4);
	json_object_set_new(json_array_get(json_object_get(b, "engines"), 0), "version",
	    json_string(junk));
	out = call(c, &nodes[0], "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 400);
	assert_non_null(strstr(err_message(out), "engines[0]"));
	json_decref(out);
	json_decref(b);
	free(junk);
	http_client_free(c);
}

/* Issue 16 item 12 (authorize part): non-string exclude entries are 400,
 * an unknown node_id is 404 (not "every node is busy"), and backend
 * messages do not reach clients. */
static void test_authorize_strict(void **state)
{
	troop_identity node, user, ghost;
	http_client *c;
	json_t *b, *out;
	int st;

	(void)state;
	http_client_new(&c);
	identity_generate(&node);
	identity_generate(&user);
	identity_generate(&ghost);
	heartbeat(c, &node, "IDLE", "strict-model", 4, 200);

	b = json_pack("{s:s, s:[s, i]}", "model", "strict-model", "exclude", ghost.id, 7);
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 400);
	assert_string_equal(err_code(out), "bad_request");
	assert_non_null(strstr(err_message(out), "exclude[1]"));
	json_decref(out);
	json_decref(b);
	b = json_pack("{s:s, s:[{}]}", "model", "strict-model", "exclude");
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 400);
	json_decref(out);
	json_decref(b);

	/* a node that is not live: 404 not_found */
	b = json_pack("{s:s, s:s}", "model", "strict-model", "node_id", ghost.id);
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 404);
	assert_string_equal(err_code(out), "not_found");
	assert_null(strstr(err_message(out), "busy"));
	json_decref(out);
	json_decref(b);
	/* a live node that does not serve the model: 404 model_not_found */
	b = json_pack("{s:s, s:s}", "model", "other-model", "node_id", node.id);
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 404);
	json_decref(out);
	json_decref(b);
	/* the named live node serving it: a ticket for it */
	b = json_pack("{s:s, s:s, s:i}", "model", "strict-model", "node_id", node.id,
	    "max_seconds", 10);
	out = call(c, &user, "POST", "/authorize", b, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "node_id")), node.id);
	json_decref(out);
	json_decref(b);

	/* an empty node id in the path: a client message, not the registry's */
	out = call(c, NULL, "GET", "/nodes/", NULL, &st);
	assert_true(st == 400 || st == 404);
	assert_null(strstr(err_message(out), "registry"));
	json_decref(out);

	/* OFFLINE heartbeat: the documented reply */
	b = heartbeat_body(&node, "OFFLINE", "strict-model", 4);
	out = call(c, &node, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "removed");
	assert_int_equal(json_integer_value(json_object_get(out, "ttl")), 0);
	json_decref(out);
	json_decref(b);
	http_client_free(c);
}

/* Capabilities: a heartbeat's model with capabilities, as the worker sends
 * it. */
static void heartbeat_caps(http_client *c, const troop_identity *node, const char *model)
{
	json_t *b = heartbeat_body(node, "IDLE", model, 4), *out;
	json_t *m = json_array_get(json_object_get(b, "models"), 0);
	int st;

	json_object_set_new(m, "context_length", json_integer(8192));
	json_object_set_new(m, "capabilities", json_pack("{s:b, s:b}", "tools", 1, "vision", 0));
	json_object_set_new(m, "endpoints", json_pack("[s, s]", "chat", "responses"));
	out = call(c, node, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);
}

/* POST /authorize with "require" {json}: the status; *node_id gets the
 * ticket's node ("" on an error), *msg the error message (static). */
static int authorize_require(http_client *c, const troop_identity *user, const char *model,
    const char *require, char *node_id, size_t len)
{
	json_t *b = json_pack("{s:s, s:o, s:i}", "model", model, "require",
	    json_loads(require, 0, NULL), "max_seconds", 5), *out;
	int st;

	out = call(c, user, "POST", "/authorize", b, &st);
	snprintf(node_id, len, "%s", st == 200 ?
	    json_string_value(json_object_get(out, "node_id")) : err_message(out));
	json_decref(out);
	json_decref(b);
	return st;
}

/* /authorize "require": nodes known to fit first, then nodes whose engine
 * did not say, never one whose engine said no; 400 naming why when none
 * can; /v1/models and /peers show what the engines said. */
static void test_authorize_require(void **state)
{
	troop_identity known, unknown, user;
	http_client *c;
	json_t *out, *m;
	char got[1100];
	int st;

	(void)state;
	http_client_new(&c);
	identity_generate(&known);
	identity_generate(&unknown);
	identity_generate(&user);
	heartbeat_caps(c, &known, "req-model");
	heartbeat(c, &unknown, "IDLE", "req-model", 4, 200);

	out = call(c, NULL, "GET", "/v1/models", NULL, &st);
	assert_int_equal(st, 200);
	for (size_t i = 0; i < json_array_size(json_object_get(out, "data")); i++) {
		m = json_array_get(json_object_get(out, "data"), i);
		if (strcmp(json_string_value(json_object_get(m, "id")), "req-model") != 0)
			continue;
		assert_int_equal(json_integer_value(json_object_get(m, "context_length")), 8192);
		assert_int_equal(json_array_size(json_object_get(m, "capabilities")), 1);
		assert_string_equal(json_string_value(json_array_get(json_object_get(m,
		    "capabilities"), 0)), "tools");
		assert_string_equal(json_string_value(json_array_get(json_object_get(m,
		    "endpoints"), 1)), "responses");
	}
	json_decref(out);

	/* known to fit: always the node that said so */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(authorize_require(c, &user, "req-model", "{\"tools\":true}", got,
		    sizeof(got)), 200);
		assert_string_equal(got, known.id);
	}
	/* said no (vision false, 8192 < 100000, no messages endpoint): the
	 * node that did not say */
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"vision\":true}", got,
	    sizeof(got)), 200);
	assert_string_equal(got, unknown.id);
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"context\":100000}", got,
	    sizeof(got)), 200);
	assert_string_equal(got, unknown.id);
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"endpoint\":\"messages\"}",
	    got, sizeof(got)), 200);
	assert_string_equal(got, unknown.id);

	/* only the node that said no is left: 400 naming why */
	heartbeat(c, &unknown, "OFFLINE", "req-model", 4, 200);
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"vision\":true}", got,
	    sizeof(got)), 400);
	assert_non_null(strstr(got, "no node serving 'req-model' takes images"));
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"context\":100000}", got,
	    sizeof(got)), 400);
	assert_non_null(strstr(got, "the largest context is 8192"));
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"endpoint\":\"messages\"}",
	    got, sizeof(got)), 400);
	assert_non_null(strstr(got, "messages API"));
	assert_int_equal(authorize_require(c, &user, "req-model",
	    "{\"context\":4096,\"tools\":true,\"endpoint\":\"responses\"}", got, sizeof(got)), 200);
	assert_string_equal(got, known.id);
	/* what cannot be checked is refused, not dropped */
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"audio\":true}", got,
	    sizeof(got)), 400);
	assert_non_null(strstr(got, "audio"));
	assert_int_equal(authorize_require(c, &user, "req-model", "{\"endpoint\":\"realtime\"}",
	    got, sizeof(got)), 400);
	http_client_free(c);
}

static int setup(void **state)
{
	static char adminflag[128], keypath[300];
	troop_identity admin;

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(keypath, sizeof(keypath), "%s/admin.key", tmp);
	identity_generate(&admin);
	identity_save(&admin, keypath);
	setenv("TROOP_TEST_ADMIN_KEY", keypath, 1);
	snprintf(adminflag, sizeof(adminflag), "--admin=%s", admin.id);
	setenv("TROOP_NODE_TTL", "3", 1);
	start_coordinator("coord", adminflag, NULL);
	/* later restarts keep the admin through the environment */
	setenv("TROOP_ADMIN", admin.id, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	harness_stop_all();
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flow),
		cmocka_unit_test(test_node_id_must_be_signer),
		cmocka_unit_test(test_bad_signatures),
		cmocka_unit_test(test_other_accounts_private),
		cmocka_unit_test(test_concurrent_authorize),
		cmocka_unit_test(test_ttl_and_offline),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_admin_and_restart),
		cmocka_unit_test(test_sweeper_off_serving_loop),
		cmocka_unit_test(test_nonce_quota),
		cmocka_unit_test(test_max_nodes_flag),
		cmocka_unit_test(test_peers_amplification),
		cmocka_unit_test(test_authorize_strict),
		cmocka_unit_test(test_authorize_require),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
