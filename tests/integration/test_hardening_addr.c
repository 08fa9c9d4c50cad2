/*
 * test_hardening_addr.c - issue 16 item 3, "a node can advertise any
 * address", against a real coordinator, worker, engine simulator and
 * `troop up`:
 *   - the coordinator accepts advertised addresses from the tailnet
 *     ranges, loopback only when it listens on loopback, and what
 *     --allow-addresses adds; never unspecified, multicast or broadcast;
 *     link-local and LAN only when allowed
 *   - a node advertising the victim's own `troop up` (127.0.0.1 and its
 *     port, on a one-machine troop where loopback is allowed) does not
 *     turn one request into a chain of nested authorizations
 *   - a node advertising another node's address: that worker answers 401
 *     ("not my ticket") and `troop up` fails over to another node
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"
#include "worker_env.h"

#define MODEL "llama3:8b"

static char tmp[256];
static harness_proc coord, wide, sim, w, up;
static char w_id[TROOP_ID_LEN + 1];

/* Signed heartbeat of `node` advertising ip:port; returns the status. */
static int heartbeat(const harness_proc *p, const troop_identity *node, const char *ip,
    int port, const char *model)
{
	http_client *c;
	json_t *b = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "name", "addr", "tailscale_ip", ip, "port", port,
	    "status", "IDLE", "models", "name", model, "load", "active_jobs", 0,
	    "max_jobs", 1000);
	json_t *out = NULL;
	int st = 0;

	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, &st, &out, node, "POST", p->url, "/heartbeat",
	    b), 0);
	if (st == 403) {
		const char *code = json_string_value(json_object_get(json_object_get(out, "error"),
		    "code"));
		assert_string_equal(code, "forbidden");
	}
	json_decref(out);
	json_decref(b);
	http_client_free(c);
	return st;
}

/* Occurrences of `needle` in the process log. */
static int log_count(const harness_proc *p, const char *needle)
{
	char *s = wenv_read_file(p->log);
	int n = s ? wenv_count(s, needle) : 0;

	free(s);
	return n;
}

static void test_advertised_ranges(void **state)
{
	static const struct { const char *ip; int loop, wide; } cases[] = {
		/* ip                       on the loopback coordinator, on the 0.0.0.0 one */
		{ "100.64.0.1", 200, 200 },
		{ "100.127.255.254", 200, 200 },
		{ "fd7a:115c:a1e0::5", 200, 200 },
		{ "127.0.0.1", 200, 403 },
		{ "::1", 200, 403 },
		{ "::ffff:127.0.0.1", 200, 403 },
		{ "100.128.0.1", 403, 403 },
		{ "10.0.0.5", 403, 403 },
		{ "10.1.2.3", 403, 200 },
		{ "172.16.0.1", 403, 403 },
		{ "192.168.1.20", 403, 200 },
		{ "::ffff:192.168.1.20", 403, 200 },
		{ "169.254.169.254", 403, 403 },
		{ "fe80::1", 403, 403 },
		{ "fd00::1", 403, 403 },
		{ "224.0.0.1", 403, 403 },
		{ "255.255.255.255", 403, 403 },
		{ "ff02::1", 403, 403 },
		{ "0.0.0.0", 403, 403 },
		{ "::", 403, 403 },
	};
	troop_identity node;

	(void)state;
	identity_generate(&node);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int a = heartbeat(&coord, &node, cases[i].ip, 8421, MODEL);
		int b = heartbeat(&wide, &node, cases[i].ip, 8421, MODEL);
		if (a != cases[i].loop || b != cases[i].wide)
			fail_msg("%s: got %d / %d, want %d / %d", cases[i].ip, a, b, cases[i].loop,
			    cases[i].wide);
	}
	/* even --allow-addresses cannot allow multicast or the unspecified address
	 * (224.0.0.0/4 and 0.0.0.0/8 are given to the wide coordinator) */
	assert_int_equal(heartbeat(&wide, &node, "203.0.113.7", 8421, MODEL), 200);
	assert_int_equal(heartbeat(&wide, &node, "239.1.2.3", 8421, MODEL), 403);
	assert_int_equal(heartbeat(&wide, &node, "0.0.0.0", 8421, MODEL), 403);
	/* a bad --allow-addresses entry stops the coordinator at start */
	{
		static const char *const args[] = { "--allow-addresses", "10.0.0.0/33", NULL };
		char data[400];
		harness_proc bad;
		snprintf(data, sizeof(data), "%s/bad", tmp);
		assert_int_equal(harness_start_coordinator(&bad, data, args), -1);
		harness_stop(&bad, SIGTERM);
		assert_true(harness_log_contains(&bad, "--allow-addresses"));
	}
}

/* POST a chat completion through `troop up`; the status. */
static long up_chat(const char *model)
{
	http_response r;
	json_t *b = json_pack("{s:s, s:[{s:s, s:s}], s:i}", "model", model, "messages",
	    "role", "user", "content", "hi", "max_tokens", 2);
	char *body = json_dumps(b, JSON_COMPACT);
	long st;

	assert_int_equal(wenv_post(&r, up.url, "/v1/chat/completions", NULL, body), 0);
	st = r.status;
	if (st != 200)
		fprintf(stderr, "troop up: %ld %s\n", st, r.body);
	http_response_free(&r);
	free(body);
	json_decref(b);
	return st;
}

static void test_up_never_calls_itself(void **state)
{
	troop_identity evil;
	int before = log_count(&coord, "path=/authorize");
	long st;

	(void)state;
	identity_generate(&evil);
	/* loopback is allowed here (a one-machine troop): only troop up can
	 * tell that this is its own address */
	assert_int_equal(heartbeat(&coord, &evil, "127.0.0.1", up.port, "evil-model"), 200);
	st = up_chat("evil-model");
	assert_true(st != 200);
	/* one authorization, then the node is excluded: no nesting */
	harness_sleep_ms(200);
	if (log_count(&coord, "path=/authorize") - before > 3)
		fail_msg("%d authorizations for one request",
		    log_count(&coord, "path=/authorize") - before);
	assert_true(harness_log_contains(&up, "own address"));
}

static void test_401_is_failed_over(void **state)
{
	troop_identity liar;
	int ok = 0;

	(void)state;
	identity_generate(&liar);
	/* a node that advertises the real worker's address: its tickets reach
	 * that worker, which answers 401 (a ticket for another node) */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(heartbeat(&coord, &liar, "127.0.0.1", w.port, MODEL), 200);
		if (up_chat(MODEL) == 200)
			ok++;
	}
	assert_int_equal(ok, 10);
	assert_true(harness_log_contains(&up, "answered HTTP 401"));
}

static int setup(void **state)
{
	static const char *const credits[] = { "--starter-credits", "1000000", NULL };
	static const char *const wide_args[] = { "--allow-addresses",
		"192.168.0.0/16, 10.1.2.3", "--allow-addresses", "203.0.113.0/24", NULL };
	static const char *const up_args[] = { "--threads", "2", "--first-byte-timeout", "5", NULL };
	char log[400], home[400], data[400];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	/* every failed try keeps its reservation until it expires */
	assert_int_equal(wenv_start_coordinator(&coord, tmp, "coord", 0, credits), 0);
	/* every interface: loopback is then not a node address */
	snprintf(data, sizeof(data), "%s/wide", tmp);
	{
		const char *wargs[] = { "--listen", "0.0.0.0:0", "--threads", "1", wide_args[0],
			wide_args[1], wide_args[2], wide_args[3],
			"--allow-addresses", "224.0.0.0/4,0.0.0.0/8", NULL };
		assert_int_equal(harness_start_coordinator(&wide, data, wargs), 0);
	}
	snprintf(log, sizeof(log), "%s/sim.log", tmp);
	assert_int_equal(wenv_start_sim(&sim, log, NULL), 0);
	assert_int_equal(wenv_start_worker(&w, tmp, "w", coord.url, sim.port, NULL), 0);
	assert_int_equal(wenv_worker_id(w_id, tmp, "w"), 0);
	assert_int_equal(wenv_wait_peer(coord.url, w_id, "IDLE", 10000), 0);

	snprintf(home, sizeof(home), "%s/up-home", tmp);
	snprintf(log, sizeof(log), "%s/up.log", tmp);
	assert_int_equal(harness_start_up(&up, home, log, coord.url, up_args), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	harness_stop_all();  /* troop up, the worker, the simulator, the coordinators */
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_advertised_ranges),
		cmocka_unit_test(test_up_never_calls_itself),
		cmocka_unit_test(test_401_is_failed_over),
	};
	/* the harness stops what is left and removes tmp at exit */
	return cmocka_run_group_tests(tests, setup, teardown);
}
