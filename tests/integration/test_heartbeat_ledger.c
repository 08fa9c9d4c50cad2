/*
 * test_heartbeat_ledger.c - a heartbeat reads the node's ledger row only
 * when something durable may have changed, on a real coordinator with
 * its SQLite ledger:
 *   - a row changed behind the coordinator's back (as another coordinator
 *     sharing the ledger would change it) is not read by the node's next
 *     heartbeats: the reply keeps the multiplier the first one read;
 *   - a heartbeat with a new name, or a new owner, reads it (the reply and
 *     /nodes/{id} show the row's multiplier and the new owner);
 *   - a change the coordinator makes itself (an operator's suspension)
 *     makes the next heartbeat read the row again;
 *   - two nodes whose ids hash to the same entry of the direct-mapped
 *     table the coordinator had before (the same set now) both keep
 *     their rows while heartbeating in turn;
 *   - the reply is the object proto_heartbeat_reply_encode wrote;
 *   - a body byte-identical to the node's last one (whose decoded record
 *     the coordinator reuses) still moves last_seen; a changed body, even
 *     one byte, puts the new record; the same bytes signed by another
 *     identity are refused as before (403), and leave the record alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"

static harness_proc coord;
static char tmp[256];
static troop_identity admin;

/* Heartbeat as `id` with `name` and `owner` (NULL: none): the reply. */
static json_t *heartbeat(const troop_identity *id, const char *name, const char *owner)
{
	http_client *c;
	json_t *out = NULL, *body;
	int status = 0;

	body = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s, s:s, s:I, s:s}]}", "node_id",
	    id->id, "name", name, "tailscale_ip", "127.0.0.1", "port", 8421, "status", "IDLE",
	    "models", "name", "hb-model", "content_hash", "", "size_bytes", (json_int_t)1,
	    "engine", "vllm");
	if (owner)
		json_object_set_new(body, "owner", json_string(owner));
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, &status, &out, id, "POST", coord.url,
	    "/heartbeat", body), 0);
	if (status != 200)
		fail_msg("heartbeat answered %d", status);
	json_decref(body);
	http_client_free(c);
	return out;
}

static double multiplier_of(json_t *reply)
{
	double m = json_real_value(json_object_get(reply, "multiplier"));

	json_decref(reply);
	return m;
}

/* Change node `id`'s multiplier in the ledger file directly. */
static void ledger_set_multiplier(const char *id, double m)
{
	char path[400], *sql;
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/coordinator/ledger.db", tmp);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	sql = sqlite3_mprintf("UPDATE nodes SET multiplier = %.3f WHERE node_id = %Q", m, id);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_free(sql);
	sqlite3_close(db);
}

static json_t *get_node(const char *id)
{
	http_client *c;
	char url[600];
	json_t *out = NULL;
	int status = 0;

	assert_int_equal(http_client_new(&c), 0);
	snprintf(url, sizeof(url), "%s/nodes/%s", coord.url, id);
	assert_int_equal(http_request_json(c, &status, &out, "GET", url, NULL, NULL), 0);
	assert_int_equal(status, 200);
	http_client_free(c);
	return out;
}

static void test_reply_shape(void **state)
{
	troop_identity node;
	json_t *rep;

	(void)state;
	identity_generate(&node);
	rep = heartbeat(&node, "shape", NULL);
	assert_string_equal(json_string_value(json_object_get(rep, "status")), "seen");
	assert_true(json_integer_value(json_object_get(rep, "ttl")) > 0);
	assert_true(json_integer_value(json_object_get(rep, "next_heartbeat")) > 0);
	assert_true(json_is_boolean(json_object_get(rep, "verified")));
	assert_true(json_is_real(json_object_get(rep, "multiplier")));
	assert_true(json_object_size(rep) == 5 || json_object_size(rep) == 6);
	json_decref(rep);
}

static void test_row_kept(void **state)
{
	troop_identity node, owner;
	json_t *n;

	(void)state;
	identity_generate(&node);
	identity_generate(&owner);
	assert_true(fabs(multiplier_of(heartbeat(&node, "kept", NULL)) - 1.0) < 1e-9);

	/* changed behind the coordinator's back: the next heartbeats keep
	 * the row they read */
	ledger_set_multiplier(node.id, 2.5);
	assert_true(fabs(multiplier_of(heartbeat(&node, "kept", NULL)) - 1.0) < 1e-9);
	assert_true(fabs(multiplier_of(heartbeat(&node, "kept", NULL)) - 1.0) < 1e-9);

	/* a new name: the row is read (and written) */
	assert_true(fabs(multiplier_of(heartbeat(&node, "renamed", NULL)) - 2.5) < 1e-9);

	/* a new owner: likewise */
	ledger_set_multiplier(node.id, 3.0);
	assert_true(fabs(multiplier_of(heartbeat(&node, "renamed", NULL)) - 2.5) < 1e-9);
	assert_true(fabs(multiplier_of(heartbeat(&node, "renamed", owner.id)) - 3.0) < 1e-9);
	n = get_node(node.id);
	assert_string_equal(json_string_value(json_object_get(n, "owner")), owner.id);
	assert_string_equal(json_string_value(json_object_get(n, "name")), "renamed");
	assert_true(fabs(json_real_value(json_object_get(n, "multiplier")) - 3.0) < 1e-9);
	json_decref(n);
}

static void test_own_change_reread(void **state)
{
	troop_identity node;
	http_client *c;
	json_t *out = NULL, *body;
	int status = 0;

	(void)state;
	identity_generate(&node);
	assert_true(fabs(multiplier_of(heartbeat(&node, "suspended", NULL)) - 1.0) < 1e-9);
	ledger_set_multiplier(node.id, 4.0);
	assert_true(fabs(multiplier_of(heartbeat(&node, "suspended", NULL)) - 1.0) < 1e-9);
	/* an operator suspends it through this coordinator: its row changed,
	 * and the next heartbeat reads it */
	body = json_pack("{s:s, s:s}", "node", node.id, "reason", "test");
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, &status, &out, &admin, "POST", coord.url,
	    "/admin/suspend", body), 0);
	if (status != 200)
		fail_msg("suspend answered %d: %s", status, out ? json_dumps(out, 0) : "");
	json_decref(out);
	json_decref(body);
	http_client_free(c);
	assert_true(fabs(multiplier_of(heartbeat(&node, "suspended", NULL)) - 4.0) < 1e-9);
}

/* POST body (text) to /heartbeat signed by `id`: the status; the reply
 * freed. */
static int heartbeat_raw(const troop_identity *id, const char *text)
{
	http_client *c;
	json_t *out = NULL, *body = json_loads(text, 0, NULL);
	int status = 0;

	assert_non_null(body);
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, &status, &out, id, "POST", coord.url,
	    "/heartbeat", body), 0);
	json_decref(out);
	json_decref(body);
	http_client_free(c);
	return status;
}

static char *body_text(const troop_identity *id, int port, const char *model)
{
	json_t *b = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s, s:s, s:I, s:s}], s:{s:s, "
	    "s:i}, s:[{s:s, s:s}], s:{s:i, s:i}}", "node_id", id->id, "name", "same-body",
	    "tailscale_ip", "127.0.0.1", "port", port, "status", "IDLE", "models", "name",
	    model, "content_hash", "", "size_bytes", (json_int_t)1, "engine", "vllm",
	    "hardware", "gpu", "RTX 4090", "vram_total", 24564, "engines", "type", "vllm",
	    "version", "0.9", "load", "active_jobs", 0, "max_jobs", 3);
	char *s = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);

	json_decref(b);
	assert_non_null(s);
	return s;
}

static void test_same_body(void **state)
{
	troop_identity node, other;
	char *a, *b;
	json_t *n, *m;
	json_int_t seen;

	(void)state;
	identity_generate(&node);
	identity_generate(&other);
	a = body_text(&node, 8421, "same-a");
	b = body_text(&node, 8422, "same-b");
	assert_int_equal(heartbeat_raw(&node, a), 200);
	n = get_node(node.id);
	seen = json_integer_value(json_object_get(n, "last_seen"));
	assert_int_equal(json_integer_value(json_object_get(n, "port")), 8421);
	json_decref(n);

	/* the same bytes a second later: the same record, seen again */
	sleep(2);
	assert_int_equal(heartbeat_raw(&node, a), 200);
	n = get_node(node.id);
	assert_true(json_integer_value(json_object_get(n, "last_seen")) > seen);
	assert_int_equal(json_integer_value(json_object_get(n, "port")), 8421);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(n, "models"), 0), "name")), "same-a");
	assert_string_equal(json_string_value(json_object_get(json_object_get(n, "hardware"),
	    "gpu")), "RTX 4090");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "load"),
	    "max_jobs")), 3);
	json_decref(n);

	/* the node's bytes signed by another identity: refused, nothing put */
	assert_int_equal(heartbeat_raw(&other, a), 403);
	assert_int_equal(heartbeat_raw(&other, b), 403);
	n = get_node(node.id);
	assert_int_equal(json_integer_value(json_object_get(n, "port")), 8421);
	json_decref(n);

	/* a changed body: its record; then the first body again */
	assert_int_equal(heartbeat_raw(&node, b), 200);
	n = get_node(node.id);
	assert_int_equal(json_integer_value(json_object_get(n, "port")), 8422);
	m = json_array_get(json_object_get(n, "models"), 0);
	assert_string_equal(json_string_value(json_object_get(m, "name")), "same-b");
	json_decref(n);
	assert_int_equal(heartbeat_raw(&node, a), 200);
	n = get_node(node.id);
	assert_int_equal(json_integer_value(json_object_get(n, "port")), 8421);
	json_decref(n);
	free(a);
	free(b);
}

/* api_nodes.c's hash of a node id (FNV-1a over the id and its NUL). */
static uint64_t node_hash(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i <= strlen(id); i++)
		h = (h ^ (unsigned char)id[i]) * 0x100000001b3ull;
	return h ? h : 1;
}

static void test_same_set(void **state)
{
	enum { N = 6000, MOD = 1 << 18 };
	static troop_identity ids[N];
	troop_identity *a = NULL, *b = NULL;
	char *seen = calloc(MOD, sizeof(*seen));
	int *who = calloc(MOD, sizeof(*who));

	(void)state;
	assert_non_null(seen);
	assert_non_null(who);
	/* two identities equal in the hash's low 18 bits: the same slot of
	 * a 2^17 direct-mapped table, the same set of a 2^18 4-way one */
	for (int i = 0; i < N && !a; i++) {
		size_t k = (size_t)(node_hash((identity_generate(&ids[i]), ids[i].id)) % MOD);
		if (seen[k]) {
			a = &ids[who[k]];
			b = &ids[i];
		}
		seen[k] = 1;
		who[k] = i;
	}
	free(seen);
	free(who);
	assert_non_null(a);
	assert_true(fabs(multiplier_of(heartbeat(a, "set-a", NULL)) - 1.0) < 1e-9);
	assert_true(fabs(multiplier_of(heartbeat(b, "set-b", NULL)) - 1.0) < 1e-9);
	ledger_set_multiplier(a->id, 5.0);
	ledger_set_multiplier(b->id, 6.0);
	/* in turn: each keeps the row it read */
	for (int i = 0; i < 2; i++) {
		assert_true(fabs(multiplier_of(heartbeat(a, "set-a", NULL)) - 1.0) < 1e-9);
		assert_true(fabs(multiplier_of(heartbeat(b, "set-b", NULL)) - 1.0) < 1e-9);
	}
}

static int setup(void **state)
{
	const char *extra[] = { "--node-ttl", "600", "--anon-rate-limit", "100000", "--admin",
		NULL, NULL };

	(void)state;
	identity_generate(&admin);
	extra[5] = admin.id;
	return harness_start_coordinator_tmp(&coord, tmp, sizeof(tmp), extra);
}

static int teardown(void **state)
{
	(void)state;
	harness_stop(&coord, SIGTERM);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_shape),
		cmocka_unit_test(test_row_kept),
		cmocka_unit_test(test_own_change_reread),
		cmocka_unit_test(test_same_body),
		cmocka_unit_test(test_same_set),
	};
	curl_global_init(CURL_GLOBAL_ALL);
	return cmocka_run_group_tests(tests, setup, teardown);
}
