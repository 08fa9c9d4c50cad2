/*
 * test_audits.c - the auditor against real processes (issue 15, section
 * 4): a coordinator, four engine simulators in --deterministic mode and
 * four real workers, each on loopback.
 *
 *   workers A and B  honest: llama3:8b and qwen2.5:7b
 *   worker C         --cheat other: llama3:8b answered with other text
 *   worker F         --cheat smaller:8: qwen2.5:7b answered by a "smaller
 *                    model" that agrees on the first 8 tokens only
 *
 * All four advertise the honest weights' digest.  First with the auditor
 * off (--audit-interval 0): the cheaters are chosen and paid like anyone
 * (their pending earnings grow), although their answers differ from the
 * honest ones.  Then the coordinator restarts on the same ledger with
 * --audit-interval 1 --audit-nodes 3 --audit-tokens 32: each audit of a
 * model asks its three nodes, so a cheater fails its first audit.  The
 * test checks that C and F are suspect, that the first audit that asked
 * each of them failed it (their oldest verdict in the audit log), that A and B pass and never fail, that the cheaters' pending
 * earnings were forfeited with audit_log rows, and that /authorize no
 * longer chooses them (named, they are refused with a 503 that says why).
 * Last, C's engine answers honestly again: a later audit passes it, it is
 * no longer suspect and is chosen again.
 *
 * With TROOP_TEST_DATABASE_URL / TROOP_TEST_REGISTRY_URL
 * (tests/integration/test_pg_coordinator.sh) the coordinator runs on
 * PostgreSQL and Redis instead.
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
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "ledger.h"

#define N_WORKERS 4
enum { A, B, C, F };

static char tmp[256], dbpath[4200], coord_dir[300];
static harness_proc coord, sims[N_WORKERS], workers[N_WORKERS];
static char ids[N_WORKERS][TROOP_ID_LEN + 1];
static http_client *hc;
static ledger *led;
static troop_identity user, admin;
static char admin_flag[64];

static json_t *call(const troop_identity *id, const char *method, const char *path,
    json_t *body, int *status)
{
	json_t *out = NULL;

	assert_int_equal(http_request_signed(hc, status, &out, id, method, coord.url, path, body), 0);
	return out;
}

/* GET /nodes/{id}: the node's public record (a new reference). */
static json_t *node_record(const char *id)
{
	char url[256];
	json_t *out = NULL;
	int status = 0;

	snprintf(url, sizeof(url), "%s/nodes/%s", coord.url, id);
	assert_int_equal(http_request_json(hc, &status, &out, "GET", url, NULL, NULL), 0);
	assert_int_equal(status, 200);
	return out;
}

static int64_t node_int(const char *id, const char *field)
{
	json_t *o = node_record(id);
	int64_t v = (int64_t)json_integer_value(json_object_get(o, field));

	json_decref(o);
	return v;
}

static bool node_suspect(const char *id)
{
	json_t *o = node_record(id);
	bool v = json_is_true(json_object_get(o, "suspect"));

	json_decref(o);
	return v;
}

/* Wait until every worker is live at the coordinator. */
static void wait_live(void)
{
	for (int tries = 0; tries < 100; tries++) {
		int live = 0;
		for (int i = 0; i < N_WORKERS; i++) {
			char url[256];
			json_t *o = NULL;
			int status = 0;
			snprintf(url, sizeof(url), "%s/nodes/%s", coord.url, ids[i]);
			if (http_request_json(hc, &status, &o, "GET", url, NULL, NULL) == 0 &&
			    status == 200 && json_is_true(json_object_get(o, "live")))
				live++;
			json_decref(o);
		}
		if (live == N_WORKERS)
			return;
		harness_sleep_ms(200);
	}
	fail_msg("the workers did not all become live");
}

/* POST /authorize for `model` as `user` (node_id may be NULL): the
 * status; *node (may be NULL) gets the node chosen, *token the ticket. */
static int authorize(const char *model, const char *node_id, char node[TROOP_ID_LEN + 1],
    char *token, size_t tlen, char *ip_port, size_t iplen, char *msg, size_t mlen)
{
	json_t *body = json_pack("{s:s}", "model", model), *out;
	int status = 0;

	if (node_id)
		json_object_set_new(body, "node_id", json_string(node_id));
	out = call(&user, "POST", "/authorize", body, &status);
	if (status == 200) {
		if (node)
			snprintf(node, TROOP_ID_LEN + 1, "%s",
			    json_string_value(json_object_get(out, "node_id")));
		if (token)
			snprintf(token, tlen, "%s", json_string_value(json_object_get(out, "token")));
		if (ip_port)
			snprintf(ip_port, iplen, "%s:%lld",
			    json_string_value(json_object_get(out, "target_ip")),
			    (long long)json_integer_value(json_object_get(out, "target_port")));
	} else if (msg) {
		snprintf(msg, mlen, "%s", json_string_value(json_object_get(json_object_get(out,
		    "error"), "message")));
	}
	json_decref(body);
	json_decref(out);
	return status;
}

/* The text node `node_id` answers a seeded temperature-0 question with,
 * through a normal ticket (malloc'd). */
static char *chat(const char *model, const char *node_id)
{
	char token[2048], where[128], url[256], authz[2100];
	const char *headers[3];
	http_response resp;
	json_t *body, *got = NULL;
	char *text, *answer;
	size_t len;

	assert_int_equal(authorize(model, node_id, NULL, token, sizeof(token), where,
	    sizeof(where), NULL, 0), 200);
	snprintf(url, sizeof(url), "http://%s/v1/chat/completions", where);
	snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
	headers[0] = authz;
	headers[1] = "Content-Type: application/json";
	headers[2] = NULL;
	body = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:i, s:i, s:b}", "model", model,
	    "messages", "role", "user", "content", "Why is the sky blue?", "temperature", 0,
	    "seed", 7, "max_tokens", 32, "stream", 0);
	text = json_dumps(body, JSON_COMPACT);
	len = strlen(text);
	memset(&resp, 0, sizeof(resp));
	assert_int_equal(http_request(hc, &resp, "POST", url, headers, text, len), 0);
	assert_int_equal(resp.status, 200);
	got = json_loadb(resp.body, resp.len, 0, NULL);
	answer = strdup(json_string_value(json_object_get(json_object_get(json_array_get(
	    json_object_get(got, "choices"), 0), "message"), "content")));
	json_decref(got);
	json_decref(body);
	free(text);
	http_response_free(&resp);
	return answer;
}

/* How many of the first k words of a and b are equal, position by position. */
static int same_words(const char *a, const char *b, int k)
{
	char *x = strdup(a), *y = strdup(b), *sx = NULL, *sy = NULL;
	char *wa = strtok_r(x, " ", &sx), *wb = strtok_r(y, " ", &sy);
	int same = 0;

	for (int i = 0; i < k && wa && wb; i++) {
		same += strcmp(wa, wb) == 0;
		wa = strtok_r(NULL, " ", &sx);
		wb = strtok_r(NULL, " ", &sy);
	}
	free(x);
	free(y);
	return same;
}

static void read_node(ledger_node *out, const char *id)
{
	ledger_conn *c = NULL;

	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_node_get(out, c, id), 0);
	ledger_conn_close(c);
}

/* Wait until node `id`'s pending earnings are above 0 (its receipt settled). */
static void wait_pending(const char *id)
{
	ledger_node n;

	for (int tries = 0; tries < 100; tries++) {
		read_node(&n, id);
		if (n.pending > 0)
			return;
		harness_sleep_ms(100);
	}
	fail_msg("node %.8s was never paid", id);
}

static size_t audit_rows(const char *target, const char *action)
{
	ledger_conn *c = NULL;
	ledger_audit_row *rows = NULL;
	size_t n = 0;
	int64_t next = 0;

	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, c, target, action, 0, 100, 0), 0);
	free(rows);
	ledger_conn_close(c);
	return n;
}

/* The credits node `id`'s first forfeit took (its oldest "node_forfeit"
 * audit row: "... forfeited=N ..."). */
static int64_t first_forfeit(const char *id)
{
	ledger_conn *c = NULL;
	ledger_audit_row *rows = NULL;
	size_t n = 0;
	int64_t next = 0, v = -1;
	const char *p;

	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, c, id, "node_forfeit", 0, 100, 0), 0);
	assert_true(n > 0);
	p = strstr(rows[n - 1].detail, "forfeited=");
	if (p)
		v = strtoll(p + 10, NULL, 10);
	free(rows);
	ledger_conn_close(c);
	return v;
}

/* The action of node `id`'s oldest audit verdict ("audit_pass" or
 * "audit_fail"; "" when it has none). */
static const char *first_verdict(const char *id)
{
	static char action[LEDGER_ACTION_MAX + 1];
	ledger_conn *c = NULL;
	ledger_audit_row *rows = NULL;
	size_t n = 0;
	int64_t next = 0;

	action[0] = '\0';
	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, c, id, "", 0, 500, 0), 0);
	for (size_t i = n; i-- > 0; )
		if (strncmp(rows[i].action, "audit_", 6) == 0) {
			snprintf(action, sizeof(action), "%s", rows[i].action);
			break;
		}
	free(rows);
	ledger_conn_close(c);
	return action;
}

static void start_coordinator(const char *interval, const char *listen)
{
	const char *args[] = { "--allow-unverified", "--starter-credits", "100000",
		"--threads", "2", "--audit-interval", interval, "--audit-nodes", "3",
		"--audit-tokens", "32", "--audit-threshold", "0.9", "--unused-ticket", "2",
		admin_flag, listen ? "--listen" : NULL, listen, NULL };

	assert_int_equal(harness_start_coordinator(&coord, coord_dir, args), 0);
}

/* Without the auditor the cheaters answer differently and are chosen and
 * paid like anyone. */
static void test_cheaters_paid_without_auditor(void **state)
{
	char *honest, *honest2, *other, *smaller, *q_honest;
	bool chosen[N_WORKERS] = { false };
	char node[TROOP_ID_LEN + 1];

	(void)state;
	wait_live();
	honest = chat("llama3:8b", ids[A]);
	honest2 = chat("llama3:8b", ids[B]);
	other = chat("llama3:8b", ids[C]);
	q_honest = chat("qwen2.5:7b", ids[A]);
	smaller = chat("qwen2.5:7b", ids[F]);
	/* two honest nodes agree token for token: the simulator is deterministic */
	assert_string_equal(honest, honest2);
	assert_string_not_equal(honest, other);
	/* the smaller model agrees on its first 8 words only */
	assert_string_not_equal(q_honest, smaller);
	assert_int_equal(same_words(q_honest, smaller, 8), 8);
	assert_true(same_words(q_honest, smaller, 32) < 16);
	wait_pending(ids[C]);
	wait_pending(ids[F]);
	/* chosen like anyone: the weighted draw (docs/SCHEDULING.md) reaches
	 * the cheater within a few tickets, as it reaches every node */
	for (int i = 0; i < 12 && !chosen[C]; i++) {
		if (authorize("llama3:8b", NULL, node, NULL, 0, NULL, 0, NULL, 0) != 200)
			break;
		for (int k = 0; k < N_WORKERS; k++)
			chosen[k] |= strcmp(node, ids[k]) == 0;
	}
	assert_true(chosen[C]);
	assert_int_equal(node_int(ids[C], "audits_failed"), 0);
	free(honest);
	free(honest2);
	free(other);
	free(smaller);
	free(q_honest);
}

/* With the auditor the cheaters fail, are suspect, lose their pending
 * earnings and are no longer chosen; the honest nodes never fail. */
static void test_auditor_catches_cheaters(void **state)
{
	char listen[64], node[TROOP_ID_LEN + 1], msg[600];
	int port = coord.port;
	ledger_node n;
	int64_t pending_before[2];
	int waited = 0;

	(void)state;
	harness_sleep_ms(2500);   /* the tickets of the test before are unused */
	read_node(&n, ids[C]);
	pending_before[0] = n.pending;
	read_node(&n, ids[F]);
	pending_before[1] = n.pending;
	assert_true(pending_before[0] > 0 && pending_before[1] > 0);
	assert_int_equal(harness_stop(&coord, SIGTERM) & 0x7f, 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	start_coordinator("1", listen);
	wait_live();
	/* each cheater: suspect */
	for (int k = 0; k < 2; k++) {
		const char *id = ids[k == 0 ? C : F];
		while (!node_suspect(id) && waited < 60000) {
			harness_sleep_ms(100);
			waited += 100;
		}
		if (!node_suspect(id))
			harness_dump_log(&coord);
		assert_true(node_suspect(id));
	}
	/* caught by the first audit that asked it: its oldest verdict in the
	 * audit log is a failure (later rounds may have failed it again) */
	assert_string_equal(first_verdict(ids[C]), "audit_fail");
	assert_string_equal(first_verdict(ids[F]), "audit_fail");
	assert_string_equal(first_verdict(ids[A]), "audit_pass");
	assert_int_equal(node_int(ids[C], "audits_passed"), 0);
	print_message("both cheaters suspect %d ms after the auditor's start\n", waited);
	/* the honest nodes pass and never fail */
	assert_true(node_int(ids[A], "audits_passed") >= 1);
	assert_true(node_int(ids[B], "audits_passed") >= 1);
	assert_int_equal(node_int(ids[A], "audits_failed"), 0);
	assert_int_equal(node_int(ids[B], "audits_failed"), 0);
	assert_false(node_suspect(ids[A]));
	assert_false(node_suspect(ids[B]));
	/* the pending earnings of before the audit forfeited, in the audit log
	 * (the audit jobs themselves are paid like any job: what the failed
	 * audit earned is pending again until the next failure forfeits it) */
	assert_true(first_forfeit(ids[C]) >= pending_before[0]);
	assert_true(first_forfeit(ids[F]) >= pending_before[1]);
	read_node(&n, ids[C]);
	assert_true(n.audit_failed > 0);
	assert_true(n.suspect > 0);
	assert_true(audit_rows(ids[C], "audit_fail") >= 1);
	assert_true(audit_rows(ids[C], "node_forfeit") >= 1);
	assert_true(audit_rows(ids[A], "audit_pass") >= 1);
	assert_int_equal(audit_rows(ids[A], "audit_fail"), 0);
	/* no longer chosen: named, refused with the reason */
	assert_int_equal(authorize("llama3:8b", ids[C], NULL, NULL, 0, NULL, 0, msg,
	    sizeof(msg)), 503);
	assert_non_null(strstr(msg, "suspect"));
	assert_int_equal(authorize("qwen2.5:7b", ids[F], NULL, NULL, 0, NULL, 0, msg,
	    sizeof(msg)), 503);
	/* and never picked among the others */
	for (int i = 0; i < 6; i++) {
		int st = authorize(i % 2 ? "qwen2.5:7b" : "llama3:8b", NULL, node, NULL, 0, NULL,
		    0, NULL, 0);
		if (st != 200)
			continue;   /* the honest nodes busy with audits */
		assert_string_not_equal(node, ids[C]);
		assert_string_not_equal(node, ids[F]);
	}
	/* the auditor's requests were sealed, as troop up seals whenever the
	 * node offers a key (the test's own chats above were plain) */
	assert_true(harness_log_contains(&workers[A], "sealed=1"));
	/* /metrics counts the verdicts */
	{
		char url[256];
		http_response m;
		memset(&m, 0, sizeof(m));
		snprintf(url, sizeof(url), "%s/metrics", coord.url);
		assert_int_equal(http_request(hc, &m, "GET", url, NULL, NULL, 0), 0);
		assert_int_equal(m.status, 200);
		assert_non_null(strstr(m.body, "troop_audits_total{result=\"fail\"}"));
		assert_null(strstr(m.body, "troop_audits_total{result=\"fail\"} 0\n"));
		assert_null(strstr(m.body, "troop_audits_total{result=\"pass\"} 0\n"));
		http_response_free(&m);
	}
	/* the operator's node list shows them */
	{
		json_t *o, *nd;
		int st = 0;
		size_t i;
		bool seen = false;
		o = call(&admin, "GET", "/admin/nodes?limit=500", NULL, &st);
		assert_int_equal(st, 200);
		json_array_foreach(json_object_get(o, "nodes"), i, nd) {
			const char *id = json_string_value(json_object_get(nd, "node_id"));
			if (strcmp(id, ids[F]) == 0) {
				seen = true;
				assert_true(json_is_true(json_object_get(nd, "suspect")));
				assert_true(json_integer_value(json_object_get(nd, "audits_failed")) >= 1);
			} else if (strcmp(id, ids[B]) == 0) {
				assert_false(json_is_true(json_object_get(nd, "suspect")));
				assert_int_equal(json_integer_value(json_object_get(nd, "audits_failed")), 0);
			}
		}
		assert_true(seen);
		json_decref(o);
	}
	/* /peers shows the counts */
	{
		char url[256];
		json_t *o = NULL, *nd;
		int status = 0;
		size_t i;
		bool seen = false;
		snprintf(url, sizeof(url), "%s/peers?model=llama3:8b", coord.url);
		assert_int_equal(http_request_json(hc, &status, &o, "GET", url, NULL, NULL), 0);
		json_array_foreach(json_object_get(o, "nodes"), i, nd) {
			if (strcmp(json_string_value(json_object_get(nd, "node_id")), ids[C]) != 0)
				continue;
			seen = true;
			assert_true(json_is_true(json_object_get(nd, "suspect")));
			assert_true(json_integer_value(json_object_get(nd, "audits_failed")) >= 1);
		}
		assert_true(seen);
		json_decref(o);
	}
}

/* A suspect node that answers honestly again passes a later audit (only
 * the auditor may still choose it) and is chosen again. */
static void test_suspect_passes_again(void **state)
{
	const char *honest_args[] = { "--models", "llama3:8b", "--deterministic", "--listen",
		NULL, NULL };
	char listen[64], log[300];
	int waited = 0;

	(void)state;
	assert_true(node_suspect(ids[C]));
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", sims[C].port);
	honest_args[4] = listen;
	harness_stop(&sims[C], SIGTERM);
	snprintf(log, sizeof(log), "%s/sim-c-honest.log", tmp);
	assert_int_equal(harness_start_sim(&sims[C], log, honest_args), 0);
	while (node_suspect(ids[C]) && waited < 60000) {
		harness_sleep_ms(100);
		waited += 100;
	}
	if (node_suspect(ids[C]))
		harness_dump_log(&coord);
	assert_false(node_suspect(ids[C]));
	print_message("the mended node passed an audit %d ms after its engine was\n", waited);
	assert_true(node_int(ids[C], "audits_passed") >= 1);
	assert_string_equal(first_verdict(ids[C]), "audit_fail");
	assert_int_equal(authorize("llama3:8b", ids[C], NULL, NULL, 0, NULL, 0, NULL, 0), 200);
}

static int setup(void **state)
{
	static const char *const no_verify[] = { "--no-verify", NULL };
	static const char *const sim_args[N_WORKERS][6] = {
		[A] = { "--models", "llama3:8b,qwen2.5:7b", "--deterministic", NULL },
		[B] = { "--models", "llama3:8b,qwen2.5:7b", "--deterministic", NULL },
		[C] = { "--models", "llama3:8b", "--deterministic", "--cheat", "other", NULL },
		[F] = { "--models", "qwen2.5:7b", "--deterministic", "--cheat", "smaller:8", NULL },
	};
	static const char *const names[N_WORKERS] = { "a", "b", "c", "f" };
	char data[300], log[300], engine[128], key[400];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(coord_dir, sizeof(coord_dir), "%s/coord", tmp);
	if (harness_backend_pg())
		snprintf(dbpath, sizeof(dbpath), "%s", getenv("TROOP_TEST_DATABASE_URL"));
	else
		snprintf(dbpath, sizeof(dbpath), "%s/ledger.db", coord_dir);
	identity_generate(&user);
	identity_generate(&admin);
	/* "--admin=ID": an id may start with '-' */
	snprintf(admin_flag, sizeof(admin_flag), "--admin=%s", admin.id);
	{
		const char *args[] = { "--allow-unverified", "--starter-credits", "100000",
			"--threads", "2", "--audit-interval", "0", "--unused-ticket", "2", NULL };
		if (harness_start_coordinator(&coord, coord_dir, args) != 0)
			return -1;
	}
	for (int i = 0; i < N_WORKERS; i++) {
		troop_identity wid;
		snprintf(log, sizeof(log), "%s/sim-%s.log", tmp, names[i]);
		if (harness_start_sim(&sims[i], log, sim_args[i]) != 0)
			return -1;
		snprintf(data, sizeof(data), "%s/worker-%s", tmp, names[i]);
		snprintf(engine, sizeof(engine), "ollama=%s", sims[i].url);
		if (harness_start_worker(&workers[i], data, coord.url, engine, no_verify) != 0)
			return -1;
		snprintf(key, sizeof(key), "%s/identity.key", data);
		if (identity_load(&wid, key) != 0)
			return -1;
		snprintf(ids[i], sizeof(ids[i]), "%s", wid.id);
	}
	if (ledger_open(&led, dbpath) != 0)
		return -1;
	http_client_new(&hc);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_client_free(hc);
	ledger_close(led);
	harness_stop_all();
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cheaters_paid_without_auditor),
		cmocka_unit_test(test_auditor_catches_cheaters),
		cmocka_unit_test(test_suspect_passes_again),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
