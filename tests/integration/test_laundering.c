/*
 * test_laundering.c - the laundering ring of issue 14 replayed against a
 * real coordinator: an attacker makes 100 throwaway identities, each of
 * which takes its trial starter credits and authorizes a job on the
 * attacker's own nodes (no engine behind them), whose keys then sign
 * receipts for work never done.  Before trial credits and pending
 * earnings existed, the attacker's owner account held every starter grant
 * as spendable credits a second later.
 *
 * Required here:
 *   - receipts at the full reserved duration are refused (the job has not
 *     existed that long);
 *   - what the plausible receipts earn is pending: the owner account has
 *     nothing spendable and cannot buy a job on an honest node;
 *   - once one of its nodes is established (old enough, paid by enough
 *     distinct accounts holding ordinary credits), the owner gains at most
 *     --trial-daily-cap of the pending earnings that day, however many
 *     more throwaway jobs it runs;
 *   - the ledger invariant holds after every step (read from the
 *     coordinator's database through a ledger handle of this process).
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

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "ledger.h"

#define RING 100
#define STARTER 3600
#define DAILY_CAP 40
#define MAX_SECONDS 300

static char tmp[256], dbpath[4200];
static harness_proc coord;
static http_client *hc;
static troop_identity owner, evil[2], honest_node, admin, payer[2];
static troop_identity ring[RING];
static ledger *led;

static json_t *call(const troop_identity *id, const char *method, const char *path,
    json_t *body, int *status)
{
	json_t *out = NULL;

	assert_int_equal(http_request_signed(hc, status, &out, id, method, coord.url, path, body), 0);
	return out;
}

static void check_invariant(void)
{
	ledger_conn *c = NULL;
	ledger_totals t;

	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_totals_get(&t, c), 0);
	if (!ledger_totals_balanced(&t))
		fail_msg("invariant broken: granted %lld forfeited %lld balances %lld trial %lld "
		    "reserved %lld pending %lld", (long long)t.granted, (long long)t.forfeited,
		    (long long)t.balances, (long long)t.trial, (long long)t.reserved,
		    (long long)t.pending);
	ledger_conn_close(c);
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

static void heartbeat(const troop_identity *node, const char *model, const troop_identity *own)
{
	int st;
	json_t *b = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "owner", own->id, "tailscale_ip", "127.0.0.1", "port", 9,
	    "status", "IDLE", "models", "name", model, "load", "active_jobs", 0,
	    "max_jobs", 100000);
	json_t *out = call(node, "POST", "/heartbeat", b, &st);

	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);
}

/* Authorize `model` for `who` on node `node`; the job id into job[64].
 * Returns the HTTP status. */
static int authorize(char job[64], const troop_identity *who, const char *model,
    const troop_identity *node, int max_seconds)
{
	int st;
	json_t *b = json_pack("{s:s, s:i}", "model", model, "max_seconds", max_seconds);
	json_t *out;

	if (node)
		json_object_set_new(b, "node_id", json_string(node->id));
	out = call(who, "POST", "/authorize", b, &st);
	if (st == 200)
		snprintf(job, 64, "%s", json_string_value(json_object_get(out, "job_id")));
	json_decref(out);
	json_decref(b);
	return st;
}

/* A receipt signed by `node` for `job`; returns the status, *charged. */
static int receipt(const troop_identity *node, const char *job, int64_t duration_ms,
    int64_t *charged)
{
	char path[128];
	int st;
	json_t *b = json_pack("{s:s, s:s, s:I, s:i, s:i, s:s}", "job_id", job,
	    "node_id", node->id, "duration_ms", (json_int_t)duration_ms, "prompt_tokens", 5,
	    "completion_tokens", 16, "outcome", "ok");
	json_t *out;

	snprintf(path, sizeof(path), "/jobs/%s/receipt", job);
	out = call(node, "POST", path, b, &st);
	if (charged)
		*charged = json_integer_value(json_object_get(out, "charged"));
	json_decref(out);
	json_decref(b);
	return st;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every identity of the ring authorizes one job on the evil nodes; after
 * a pause each job's node claims the whole reservation (refused), then the
 * longest duration the coordinator can believe.  Returns the credits
 * charged; the invariant is checked after every identity. */
static int64_t run_ring(int first, int count)
{
	char jobs[RING][64];
	int64_t t0[RING], total = 0, charged;

	for (int i = first; i < first + count; i++) {
		assert_int_equal(authorize(jobs[i], &ring[i], "evil-model", &evil[i % 2],
		    MAX_SECONDS), 200);
		t0[i] = now_ms();
	}
	check_invariant();
	harness_sleep_ms(1500);
	for (int i = first; i < first + count; i++) {
		const troop_identity *n = &evil[i % 2];
		/* the old attack: bill the full reservation */
		assert_int_equal(receipt(n, jobs[i], (int64_t)MAX_SECONDS * 1000, NULL), 400);
		/* the most the coordinator will take: the time since authorization */
		assert_int_equal(receipt(n, jobs[i], now_ms() - t0[i], &charged), 200);
		assert_true(charged > 0);
		total += charged;
		check_invariant();
	}
	return total;
}

static void test_ring(void **state)
{
	char job[64];
	int64_t earned, pending, charged, paid_ordinary = 0;

	(void)state;
	heartbeat(&evil[0], "evil-model", &owner);
	heartbeat(&evil[1], "evil-model", &owner);
	heartbeat(&honest_node, "good-model", &honest_node);

	/* 1. the ring: everything it earns is pending, nothing spendable */
	earned = run_ring(0, RING / 2);
	print_message("ring of %d earned %lld credits, all pending\n", RING / 2,
	    (long long)earned);
	assert_int_equal(balance_of(&owner, "available_seconds"), 0);
	assert_int_equal(balance_of(&owner, "trial_seconds"), 0);
	assert_int_equal(balance_of(&owner, "pending_seconds"), earned);
	/* ... and the owner cannot spend it on an honest node */
	assert_int_equal(authorize(job, &owner, "good-model", NULL, 10), 402);
	check_invariant();
	/* each throwaway identity keeps its unspent trial credits: they never
	 * move to another account */
	assert_int_equal(balance_of(&ring[0], "available_seconds"),
	    balance_of(&ring[0], "trial_seconds"));
	assert_true(balance_of(&ring[0], "trial_seconds") < STARTER);

	/* 2. two accounts with ordinary credits pay evil[0]: it is established
	 * (--establish-age 0, --establish-payers 2) */
	for (int i = 0; i < 2; i++) {
		int st;
		json_t *b = json_pack("{s:s, s:i, s:s}", "account", payer[i].id, "credits", 100,
		    "reason", "test");
		json_t *out = call(&admin, "POST", "/admin/grant", b, &st);
		assert_int_equal(st, 200);
		json_decref(out);
		json_decref(b);
		assert_int_equal(authorize(job, &payer[i], "evil-model", &evil[0], 10), 200);
		harness_sleep_ms(1100);
		assert_int_equal(receipt(&evil[0], job, 1000, &charged), 200);
		paid_ordinary += charged;
		check_invariant();
	}
	/* once established, the sweeper (--pending-interval 1, every 2 s)
	 * releases pending earnings, at most the daily cap */
	int64_t avail = 0;
	for (int i = 0; i < 50 && (avail = balance_of(&owner, "available_seconds")) <=
	    paid_ordinary; i++)
		harness_sleep_ms(200);
	print_message("after establishment: %lld spendable (%lld paid with ordinary credits)\n",
	    (long long)avail, (long long)paid_ordinary);
	assert_true(avail > paid_ordinary);
	assert_true(avail <= paid_ordinary + DAILY_CAP);

	/* 3. the rest of the ring, on both nodes: the cap holds for the day */
	earned += run_ring(RING / 2, RING / 2);
	harness_sleep_ms(4500);  /* two more sweeps */
	avail = balance_of(&owner, "available_seconds");
	pending = balance_of(&owner, "pending_seconds");
	print_message("ring of %d earned %lld; owner spendable %lld, pending %lld\n", RING,
	    (long long)earned, (long long)avail, (long long)pending);
	assert_true(avail <= paid_ordinary + DAILY_CAP);
	assert_int_equal(avail + pending, paid_ordinary + earned);
	/* what it may spend is exactly what it holds: a job costing more is
	 * refused */
	assert_int_equal(authorize(job, &owner, "good-model", NULL, (int)avail + 1), 402);
	check_invariant();
}

static int setup(void **state)
{
	static char adminflag[64], capflag[32];
	char data[280];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	identity_generate(&owner);
	identity_generate(&evil[0]);
	identity_generate(&evil[1]);
	identity_generate(&honest_node);
	identity_generate(&admin);
	identity_generate(&payer[0]);
	identity_generate(&payer[1]);
	for (int i = 0; i < RING; i++)
		identity_generate(&ring[i]);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(data, sizeof(data), "%s/coord", tmp);
	/* "--admin=ID": an id may start with '-', which would read as a flag */
	snprintf(adminflag, sizeof(adminflag), "--admin=%s", admin.id);
	snprintf(capflag, sizeof(capflag), "%d", DAILY_CAP);
	if (harness_backend_pg())
		snprintf(dbpath, sizeof(dbpath), "%s", getenv("TROOP_TEST_DATABASE_URL"));
	else
		snprintf(dbpath, sizeof(dbpath), "%s/ledger.db", data);
	const char *args[] = { "--allow-unverified", "--starter-credits", "3600",
		"--ticket-ttl", "300", "--threads", "2", adminflag,
		"--establish-age", "0", "--establish-payers", "2", "--trial-daily-cap", capflag,
		"--pending-interval", "1",
		/* the ring's 100 jobs sit on two unverified nodes at once */
		"--max-jobs-other", "0", NULL };
	if (harness_start_coordinator(&coord, data, args) != 0)
		return -1;
	if (ledger_open(&led, dbpath) != 0)
		return -1;
	http_client_new(&hc);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_client_free(hc);
	harness_stop(&coord, SIGTERM);
	ledger_close(led);
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
