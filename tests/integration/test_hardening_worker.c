/*
 * test_hardening_worker.c - attacks on the worker's ticket checks from
 * issue 16, run against a real coordinator, worker and engine simulator:
 *   item 6   a ticket served before a restart (clean, or SIGKILL right
 *            after the reply) is refused after it; an unused one is not
 *   item 10  a ticket-bound body with "Model" beside "model", or "model"
 *            twice, is refused (400) and never reaches the engine
 *   item 11  a coordinator-signed ticket with exp near 2^63 is refused
 *            (and, in the sanitizer build, the worker survives it: the
 *            teardown wants a clean exit)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"
#include "ticket.h"
#include "worker_env.h"

#define MODEL "llama3:8b"

static char tmp[256];
static troop_identity ckey;       /* the coordinator's ticket key (a file we made) */
static troop_identity user;
static harness_proc coord, sim, w;
static char w_id[TROOP_ID_LEN + 1];

/* ---- helpers --------------------------------------------------------------------- */

static char *chat_body(const char *model)
{
	json_t *b = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model", model, "messages",
	    "role", "user", "content", "hello", "max_tokens", 2, "stream", 0);
	char *s = json_dumps(b, JSON_COMPACT);

	json_decref(b);
	return s;
}

/* A ticket signed with the coordinator's key with the given times. */
static char *mint(int64_t iat, int64_t exp)
{
	ticket_claims cl;
	char *tok = NULL;

	memset(&cl, 0, sizeof(cl));
	snprintf(cl.iss, sizeof(cl.iss), "%s", ckey.id);
	snprintf(cl.sub, sizeof(cl.sub), "%s", user.id);
	snprintf(cl.aud, sizeof(cl.aud), "%s", TICKET_AUD);
	snprintf(cl.target_node, sizeof(cl.target_node), "%s", w_id);
	snprintf(cl.model, sizeof(cl.model), "%s", MODEL);
	ticket_new_jti(cl.jti);
	cl.iat = iat;
	cl.exp = exp;
	cl.max_seconds = 60;
	assert_int_equal(ticket_sign(&tok, &cl, &ckey), 0);
	return tok;
}

/* A real ticket from /authorize, retrying while the node is busy. */
static char *real_ticket(void)
{
	char *tok = NULL;
	int st = 0;

	for (int i = 0; i < 200; i++) {
		st = wenv_authorize(&tok, NULL, &user, coord.url, MODEL, w_id, 0);
		if (st != 503)
			break;
		harness_sleep_ms(50);
	}
	assert_int_equal(st, 200);
	return tok;
}

static const char *error_code(const char *body)
{
	static char code[64];
	json_t *j = json_loads(body, JSON_DISABLE_EOF_CHECK, NULL);
	const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));

	snprintf(code, sizeof(code), "%s", c ? c : "(none)");
	json_decref(j);
	return code;
}

/* POST the body with the ticket; returns the status, *code the error code. */
static int infer(const char *token, const char *body, char code[64])
{
	http_response r;
	int st;

	assert_int_equal(wenv_post(&r, w.url, "/v1/chat/completions", token, body), 0);
	st = r.status;
	if (code)
		snprintf(code, 64, "%s", st == 200 ? "" : error_code(r.body));
	if (st != 200 && st != 401 && st != 400)
		fprintf(stderr, "unexpected %d: %s\n", st, r.body);
	http_response_free(&r);
	return st;
}

static void start_worker(void)
{
	static const char *const args[] = { "--max-jobs", "8", NULL };

	assert_int_equal(wenv_start_worker(&w, tmp, "w", coord.url, sim.port, args), 0);
	assert_int_equal(wenv_worker_id(w_id, tmp, "w"), 0);
	assert_int_equal(wenv_wait_peer(coord.url, w_id, "IDLE", 10000), 0);
}

/* ---- item 6: replay across a restart -------------------------------------------- */

static void test_replay_after_restart(void **state)
{
	char *body = chat_body(MODEL), code[64];
	char *used = real_ticket(), *unused = real_ticket(), *crashed;
	long before;

	(void)state;
	assert_int_equal(infer(used, body, NULL), 200);
	before = wenv_sim_stat(&sim, "chat_requests");

	/* a clean restart */
	assert_int_equal(harness_stop(&w, SIGTERM), 0);
	start_worker();
	assert_int_equal(infer(used, body, code), 401);
	assert_string_equal(code, "invalid_ticket");
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before);
	/* a ticket that was never served still works */
	assert_int_equal(infer(unused, body, NULL), 200);
	assert_int_equal(infer(unused, body, code), 401);

	/* a crash right after serving: the record was on disk before the job ran */
	crashed = real_ticket();
	assert_int_equal(infer(crashed, body, NULL), 200);
	harness_stop(&w, SIGKILL);
	start_worker();
	before = wenv_sim_stat(&sim, "chat_requests");
	assert_int_equal(infer(crashed, body, code), 401);
	assert_string_equal(code, "invalid_ticket");
	assert_int_equal(infer(used, body, code), 401);
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before);
	free(used);
	free(unused);
	free(crashed);
	free(body);
}

/* A power cut: the journal's lines go to the disk in the kernel's time,
 * so a cut may lose the last ones.  The machine "starts" after it
 * (TROOP_TEST_BOOT_TIME), and the ticket whose line was lost was issued
 * before that start: refused, the engine never asked; a ticket issued
 * after the start (and the clock skew) runs. */
static void test_replay_after_power_cut(void **state)
{
	int64_t now = (int64_t)time(NULL);
	char *served = mint(now - 20, now + 60), *fresh, *body = chat_body(MODEL), code[64];
	char path[512], boot[32];
	long before;

	(void)state;
	assert_int_equal(infer(served, body, NULL), 200);
	harness_stop(&w, SIGKILL);
	snprintf(path, sizeof(path), "%s/w-home/worker/replay.log", tmp);
	assert_int_equal(truncate(path, 0), 0);   /* the lines the cut took */
	snprintf(boot, sizeof(boot), "%lld", (long long)(now - TICKET_SKEW - 10));
	setenv("TROOP_TEST_BOOT_TIME", boot, 1);
	start_worker();
	unsetenv("TROOP_TEST_BOOT_TIME");
	before = wenv_sim_stat(&sim, "chat_requests");
	assert_int_equal(infer(served, body, code), 401);
	assert_string_equal(code, "invalid_ticket");
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before);
	fresh = mint(now - 5, now + 60);
	assert_int_equal(infer(fresh, body, NULL), 200);
	assert_int_equal(infer(fresh, body, code), 401);
	free(served);
	free(fresh);
	free(body);
}

/* ---- item 10: case-variant and duplicate bound keys ----------------------------- */

static void test_case_variant_model_refused(void **state)
{
	static const char *const bodies[] = {
		"{\"model\":\"" MODEL "\",\"Model\":\"other-model\",\"messages\":[{\"role\":\"user\","
		"\"content\":\"hi\"}],\"max_tokens\":2}",
		"{\"MODEL\":\"other-model\",\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\","
		"\"content\":\"hi\"}],\"max_tokens\":2}",
		"{\"model\":\"" MODEL "\",\"model\":\"other-model\",\"messages\":[{\"role\":\"user\","
		"\"content\":\"hi\"}],\"max_tokens\":2}",
		"{\"model\":\"" MODEL "\",\"mod\\u0065l\":\"other-model\",\"messages\":[{\"role\":"
		"\"user\",\"content\":\"hi\"}],\"max_tokens\":2}",
	};
	char *tok = real_ticket(), code[64], *ok;
	long before = wenv_sim_stat(&sim, "chat_requests");

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		if (infer(tok, bodies[i], code) != 400)
			fail_msg("body %zu (%s) was not refused with 400", i, bodies[i]);
		assert_string_equal(code, "bad_request");
	}
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before);
	/* the ticket was not spent by the refusals: a clean body still runs */
	ok = chat_body(MODEL);
	assert_int_equal(infer(tok, ok, NULL), 200);
	free(ok);
	free(tok);
}

/* ---- item 11: exp near 2^63 ------------------------------------------------------ */

static void test_huge_exp_refused(void **state)
{
	int64_t now = time(NULL);
	const int64_t exps[] = { INT64_MAX, INT64_MAX - TICKET_SKEW + 1, INT64_MAX - 5,
		now + TICKET_TTL_MAX + 100 };
	char *body = chat_body(MODEL), code[64];
	long before = wenv_sim_stat(&sim, "chat_requests");

	(void)state;
	for (size_t i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
		char *tok = mint(now, exps[i]);
		if (infer(tok, body, code) != 401)
			fail_msg("a ticket with exp %lld was not refused", (long long)exps[i]);
		assert_string_equal(code, "invalid_ticket");
		free(tok);
	}
	/* iat far in the past with a sane exp: a lifetime no coordinator issues */
	{
		char *tok = mint(INT64_MIN, now + 60);
		assert_int_equal(infer(tok, body, code), 401);
		free(tok);
	}
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before);
	/* the worker is alive and well */
	{
		char *tok = mint(now, now + 300);
		assert_int_equal(infer(tok, body, NULL), 200);
		free(tok);
	}
	free(body);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int setup(void **state)
{
	char log[400];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	identity_generate(&user);
	assert_int_equal(wenv_start_ticket_coordinator(&coord, &ckey, tmp), 0);
	snprintf(log, sizeof(log), "%s/sim.log", tmp);
	assert_int_equal(wenv_start_sim(&sim, log, NULL), 0);
	start_worker();
	return 0;
}

static int teardown(void **state)
{
	int rc = 0;

	(void)state;
	if (wenv_stop_clean(&w) != 0)
		rc = -1;
	harness_stop_all();
	identity_wipe(&ckey);
	curl_global_cleanup();
	return rc;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_huge_exp_refused),
		cmocka_unit_test(test_case_variant_model_refused),
		cmocka_unit_test(test_replay_after_restart),
		cmocka_unit_test(test_replay_after_power_cut),
	};
	/* the harness stops what is left and removes tmp at exit */
	return cmocka_run_group_tests(tests, setup, teardown);
}
