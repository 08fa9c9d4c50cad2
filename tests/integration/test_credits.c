/*
 * test_credits.c - settlement through a real coordinator: signed receipts
 * move exactly the expected credits (paid from the requester's trial
 * starter credits, so into the node owner's pending earnings), replays,
 * forgeries and implausible durations move nothing, unpaid reservations
 * are refunded after their deadline, a worker claiming more than its
 * client's delivery report observed is paid what the client observed (a
 * dispute recorded), a receipt whose client never reports settles after
 * --report-wait, and the ledger's conservation
 * invariant holds after every step (read through a ledger handle of this
 * process, opened on the coordinator's SQLite file while it runs).
 *
 * With TROOP_TEST_DATABASE_URL and TROOP_TEST_REGISTRY_URL set
 * (tests/integration/test_pg_coordinator.sh) the coordinator runs on that
 * PostgreSQL database and Redis prefix instead, and the invariant is read
 * from the same database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "ledger.h"

static char tmp[256], dbpath[4200];
static harness_proc coord;
static http_client *hc;
static troop_identity node, user;

static json_t *call(const troop_identity *id, const char *method, const char *path,
    json_t *body, int *status)
{
	json_t *out = NULL;

	assert_int_equal(http_request_signed(hc, status, &out, id, method, coord.url, path, body), 0);
	return out;
}

static void check_invariant(void)
{
	ledger *l = NULL;
	ledger_conn *c = NULL;
	ledger_totals t;

	assert_int_equal(ledger_open(&l, dbpath), 0);
	assert_int_equal(ledger_conn_open(&c, l), 0);
	assert_int_equal(ledger_totals_get(&t, c), 0);
	assert_true(ledger_totals_balanced(&t));
	ledger_conn_close(c);
	ledger_close(l);
}

static int64_t balance_of(const troop_identity *id, const char *field)
{
	char path[128];
	int st;
	json_t *out;
	int64_t v;

	snprintf(path, sizeof(path), "/users/%s/balance", id->id);
	out = call(id, "GET", path, NULL, &st);
	assert_int_equal(st, 200);
	v = json_integer_value(json_object_get(out, field));
	json_decref(out);
	return v;
}

static void heartbeat(void)
{
	int st;
	json_t *b = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node.id, "tailscale_ip", "127.0.0.1", "port", 9, "status", "IDLE",
	    "models", "name", "m1", "load", "active_jobs", 0, "max_jobs", 1000);
	json_t *out = call(&node, "POST", "/heartbeat", b, &st);

	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);
}

/* Authorize a job of max_seconds; returns its id (static buffer). */
static const char *authorize(int max_seconds)
{
	static char job[64];
	int st;
	json_t *b = json_pack("{s:s, s:i}", "model", "m1", "max_seconds", max_seconds);
	json_t *out = call(&user, "POST", "/authorize", b, &st);

	assert_int_equal(st, 200);
	assert_int_equal(json_integer_value(json_object_get(out, "estimated_cost")), max_seconds);
	snprintf(job, sizeof(job), "%s", json_string_value(json_object_get(out, "job_id")));
	json_decref(out);
	json_decref(b);
	return job;
}

static json_t *receipt(const troop_identity *signer, const char *job, int64_t duration_ms,
    int *st)
{
	char path[128];
	json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:s}", "job_id", job,
	    "node_id", signer->id, "requester", user.id, "model", "m1",
	    "duration_ms", (json_int_t)duration_ms, "prompt_tokens", 5,
	    "completion_tokens", 16, "outcome", "ok");
	json_t *out;

	snprintf(path, sizeof(path), "/jobs/%s/receipt", job);
	out = call(signer, "POST", path, b, st);
	json_decref(b);
	return out;
}

static void test_settle_exact(void **state)
{
	char job[64];
	json_t *out;
	int st;

	(void)state;
	heartbeat();
	snprintf(job, sizeof(job), "%s", authorize(10));
	assert_int_equal(balance_of(&user, "reserved_seconds"), 10);
	check_invariant();

	/* 1.5 s at multiplier 1.0 costs ceil(1.5) = 2 credit-seconds */
	out = receipt(&node, job, 1500, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "settled");
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
	assert_int_equal(json_integer_value(json_object_get(out, "refunded")), 8);
	json_decref(out);
	assert_int_equal(balance_of(&user, "balance_seconds"), 1000 - 2);
	assert_int_equal(balance_of(&user, "reserved_seconds"), 0);
	assert_int_equal(balance_of(&user, "trial_seconds"), 998);
	/* paid from trial credits: pending until the node is established */
	assert_int_equal(balance_of(&node, "balance_seconds"), 0);
	assert_int_equal(balance_of(&node, "pending_seconds"), 2);
	check_invariant();

	/* the same receipt again: same answer, nothing moves */
	out = receipt(&node, job, 1500, &st);
	assert_int_equal(st, 200);
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
	assert_true(json_is_true(json_object_get(out, "already_settled")));
	json_decref(out);
	/* ... even with a bigger duration */
	out = receipt(&node, job, 9000, &st);
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
	json_decref(out);
	assert_int_equal(balance_of(&user, "balance_seconds"), 998);
	assert_int_equal(balance_of(&node, "pending_seconds"), 2);
	check_invariant();
}

static void test_forged_and_unknown(void **state)
{
	troop_identity thief;
	char job[64];
	json_t *out;
	int st;

	(void)state;
	identity_generate(&thief);
	heartbeat();
	snprintf(job, sizeof(job), "%s", authorize(10));
	/* another key cannot settle the job (and so cannot pay itself) */
	out = receipt(&thief, job, 10000, &st);
	assert_int_equal(st, 403);
	json_decref(out);
	assert_int_equal(balance_of(&user, "reserved_seconds"), 10);
	/* an unknown job */
	out = receipt(&node, "AAAAAAAAAAAAAAAAAAAAAA", 1000, &st);
	assert_int_equal(st, 404);
	json_decref(out);
	/* a job longer than its max_seconds, or than the time since its
	 * ticket was issued, is refused and moves nothing */
	out = receipt(&node, job, 3600 * 1000, &st);
	assert_int_equal(st, 400);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
	    "message")), "implausible"));
	json_decref(out);
	out = receipt(&node, job, 9000, &st);
	assert_int_equal(st, 400);
	json_decref(out);
	assert_int_equal(balance_of(&user, "reserved_seconds"), 10);
	/* the plausible claim settles */
	out = receipt(&node, job, 1000, &st);
	assert_int_equal(st, 200);
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 1);
	assert_int_equal(json_integer_value(json_object_get(out, "refunded")), 9);
	json_decref(out);
	check_invariant();
}

static void test_expiry_refund(void **state)
{
	char job[64];
	int64_t before;
	json_t *out;
	int st;

	(void)state;
	heartbeat();
	before = balance_of(&user, "balance_seconds");
	snprintf(job, sizeof(job), "%s", authorize(1));
	assert_int_equal(balance_of(&user, "reserved_seconds"), 1);
	/* ticket-ttl 2 + max_seconds 1 + grace 0, swept every 2 s */
	for (int i = 0; i < 100 && balance_of(&user, "reserved_seconds") != 0; i++)
		harness_sleep_ms(200);
	assert_int_equal(balance_of(&user, "reserved_seconds"), 0);
	assert_int_equal(balance_of(&user, "balance_seconds"), before);
	/* a receipt after the refund is refused: 410 */
	out = receipt(&node, job, 500, &st);
	assert_int_equal(st, 410);
	json_decref(out);
	assert_int_equal(balance_of(&user, "balance_seconds"), before);
	check_invariant();
}

/* Authorize a job of max_seconds whose client promises a delivery report. */
static const char *authorize_reported(int max_seconds)
{
	static char job[64];
	int st;
	json_t *b = json_pack("{s:s, s:i, s:b}", "model", "m1", "max_seconds", max_seconds,
	    "delivery_report", 1);
	json_t *out = call(&user, "POST", "/authorize", b, &st);

	assert_int_equal(st, 200);
	snprintf(job, sizeof(job), "%s", json_string_value(json_object_get(out, "job_id")));
	json_decref(out);
	json_decref(b);
	return job;
}

static json_t *report(const troop_identity *signer, const char *job, int64_t duration_ms,
    int *st)
{
	char path[128];
	json_t *b = json_pack("{s:s, s:I, s:i, s:i, s:s, s:s}", "job_id", job,
	    "duration_ms", (json_int_t)duration_ms, "bytes", 900, "completion_tokens", 16,
	    "outcome", "complete", "response_digest", "sha256:0f0f");
	json_t *out;

	snprintf(path, sizeof(path), "/jobs/%s/report", job);
	out = call(signer, "POST", path, b, st);
	json_decref(b);
	return out;
}

static int64_t node_disputes(void)
{
	char path[128];
	int st;
	json_t *out;
	int64_t v;

	snprintf(path, sizeof(path), "/nodes/%s", node.id);
	out = call(&user, "GET", path, NULL, &st);
	assert_int_equal(st, 200);
	v = json_integer_value(json_object_get(out, "disputes"));
	json_decref(out);
	return v;
}

/* A worker bills 3 s for a job its client saw finish in 1 s: it is paid
 * what the client observed and the dispute is recorded. */
static void test_inflating_worker(void **state)
{
	char job[64];
	int64_t pending0, disputes0;
	json_t *out;
	int st;

	(void)state;
	heartbeat();
	pending0 = balance_of(&node, "pending_seconds");
	disputes0 = node_disputes();
	snprintf(job, sizeof(job), "%s", authorize_reported(10));
	/* only the requester reports */
	out = report(&node, job, 1000, &st);
	assert_int_equal(st, 403);
	json_decref(out);
	out = report(&user, job, 1000, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "recorded");
	json_decref(out);
	harness_sleep_ms(3100);
	out = receipt(&node, job, 3000, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "settled");
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 1);
	assert_int_equal(json_integer_value(json_object_get(out, "refunded")), 9);
	json_decref(out);
	assert_int_equal(balance_of(&node, "pending_seconds"), pending0 + 1);
	assert_int_equal(balance_of(&user, "reserved_seconds"), 0);
	/* the node's live record carries the ledger's count from its next
	 * heartbeat on */
	heartbeat();
	assert_int_equal(node_disputes(), disputes0 + 1);
	/* both see the dispute in their transactions */
	{
		char path[128];
		json_t *tx;
		snprintf(path, sizeof(path), "/users/%s/transactions?limit=5", user.id);
		out = call(&user, "GET", path, NULL, &st);
		assert_int_equal(st, 200);
		bool seen = false;
		size_t i;
		json_array_foreach(json_object_get(out, "transactions"), i, tx) {
			const char *note = json_string_value(json_object_get(tx, "note"));
			seen |= note && strstr(note, "disputed: worker claimed 3000 ms") != NULL;
		}
		assert_true(seen);
		json_decref(out);
	}
	check_invariant();
}

/* A client that crashes never reports: after --report-wait the worker's
 * plausible claim settles alone. */
static void test_crashed_client(void **state)
{
	char job[64];
	int64_t pending0;
	json_t *out;
	int st;

	(void)state;
	heartbeat();
	pending0 = balance_of(&node, "pending_seconds");
	snprintf(job, sizeof(job), "%s", authorize_reported(10));
	harness_sleep_ms(1600);
	out = receipt(&node, job, 1500, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "claimed");
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 0);
	json_decref(out);
	assert_int_equal(balance_of(&user, "reserved_seconds"), 10);
	check_invariant();
	/* --report-wait 2, swept every 2 s */
	for (int i = 0; i < 50 && balance_of(&user, "reserved_seconds") != 0; i++)
		harness_sleep_ms(200);
	assert_int_equal(balance_of(&user, "reserved_seconds"), 0);
	assert_int_equal(balance_of(&node, "pending_seconds"), pending0 + 2);
	/* a late report changes nothing */
	out = report(&user, job, 100, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "settled");
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
	json_decref(out);
	assert_int_equal(balance_of(&node, "pending_seconds"), pending0 + 2);
	check_invariant();
}

/* A node that keeps billing more than its clients saw: past
 * --max-dispute-rate (0.3, after 3 disputes) /authorize stops picking it. */
static void test_disputed_node_not_picked(void **state)
{
	char jobs[3][64];
	json_t *out;
	int st;

	(void)state;
	heartbeat();
	for (int i = 0; i < 3; i++) {
		snprintf(jobs[i], sizeof(jobs[i]), "%s", authorize_reported(10));
		out = report(&user, jobs[i], 500, &st);
		assert_int_equal(st, 200);
		json_decref(out);
	}
	harness_sleep_ms(1100);
	for (int i = 0; i < 3; i++) {
		out = receipt(&node, jobs[i], 3000, &st);
		assert_int_equal(st, 200);
		assert_int_equal(json_integer_value(json_object_get(out, "charged")), 1);
		json_decref(out);
	}
	heartbeat();  /* the live record's copy of the facts */
	assert_true(node_disputes() >= 3);
	{
		json_t *b = json_pack("{s:s, s:i}", "model", "m1", "max_seconds", 10);
		out = call(&user, "POST", "/authorize", b, &st);
		json_decref(b);
	}
	assert_int_equal(st, 503);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(out, "error"),
	    "message")), "billed more than their clients saw"));
	json_decref(out);
	check_invariant();
}

/* The ticket reply, written without a jansson tree, is byte for byte what
 * jansson's compact dump of the same members gives, also for a node whose
 * fields need escaping (quotes, backslashes, control characters, UTF-8),
 * and has exactly the members PROTOCOL.md lists. */
static void test_authorize_reply_bytes(void **state)
{
	static const char key[] = "k\"q\\b/\n\t\x01\x1f \xc3\xa9\xe2\x82\xac";
	static const char *const members[] = { "job_id", "token", "node_id", "target_ip",
		"target_port", "estimated_cost", "expires_at", "max_seconds",
		"encryption_public_key", NULL };
	troop_identity esc;
	http_signed_headers h;
	http_response res;
	json_error_t jerr;
	char url[512], *text, *body;
	json_t *b, *out;
	int st;

	(void)state;
	identity_generate(&esc);
	b = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}, s:s}",
	    "node_id", esc.id, "tailscale_ip", "127.0.0.1", "port", 9, "status", "IDLE",
	    "models", "name", "m-esc", "load", "active_jobs", 0, "max_jobs", 1000,
	    "encryption_public_key", key);
	out = call(&esc, "POST", "/heartbeat", b, &st);
	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);

	body = strdup("{\"model\":\"m-esc\",\"max_seconds\":7}");
	assert_non_null(body);
	assert_int_equal(http_signed_headers_build(&h, &user, "POST", "/authorize", "", body,
	    strlen(body), (int64_t)time(NULL)), 0);
	snprintf(url, sizeof(url), "%s/authorize", coord.url);
	memset(&res, 0, sizeof(res));
	assert_int_equal(http_request(hc, &res, "POST", url, h.list, body, strlen(body)), 0);
	free(body);
	assert_int_equal(res.status, 200);
	assert_non_null(strstr(res.content_type, "application/json"));
	out = json_loadb(res.body, res.len, 0, &jerr);
	assert_non_null(out);
	text = json_dumps(out, JSON_COMPACT);
	assert_non_null(text);
	assert_string_equal(res.body, text);
	assert_int_equal(json_object_size(out), 9);
	for (size_t i = 0; members[i]; i++)
		assert_non_null(json_object_get(out, members[i]));
	assert_string_equal(json_string_value(json_object_get(out, "encryption_public_key")),
	    key);
	assert_string_equal(json_string_value(json_object_get(out, "node_id")), esc.id);
	assert_int_equal(json_integer_value(json_object_get(out, "estimated_cost")), 7);
	free(text);
	json_decref(out);
	http_response_free(&res);
	check_invariant();
}

static int setup(void **state)
{
	char data[280];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(data, sizeof(data), "%s/coord", tmp);
	if (harness_backend_pg())
		snprintf(dbpath, sizeof(dbpath), "%s", getenv("TROOP_TEST_DATABASE_URL"));
	else
		snprintf(dbpath, sizeof(dbpath), "%s/ledger.db", data);
	const char *args[] = { "--allow-unverified", "--starter-credits", "1000",
		"--ticket-ttl", "2", "--release-grace", "0", "--threads", "2",
		"--report-wait", "2", "--max-dispute-rate", "0.3", NULL };
	if (harness_start_coordinator(&coord, data, args) != 0)
		return -1;
	identity_generate(&node);
	identity_generate(&user);
	http_client_new(&hc);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_client_free(hc);
	harness_stop(&coord, SIGTERM);
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settle_exact),
		cmocka_unit_test(test_forged_and_unknown),
		cmocka_unit_test(test_expiry_refund),
		cmocka_unit_test(test_inflating_worker),
		cmocka_unit_test(test_crashed_client),
		cmocka_unit_test(test_disputed_node_not_picked),
		cmocka_unit_test(test_authorize_reply_bytes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
