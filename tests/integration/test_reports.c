/*
 * test_reports.c - the second witness against real processes (issue 14,
 * "Two witnesses"): a coordinator, engine simulators, a real worker and
 * the real `troop up`, each on loopback.
 *
 *   - honest: troop up promises and sends a delivery report for every job;
 *     the worker's receipt carries the digest of the body it sent and the
 *     report the digest of the body received: they are equal, the job
 *     settles at the worker's duration, nothing is disputed;
 *   - a worker inflating its duration, with the real troop up as its
 *     client: paid what troop up observed, the dispute recorded (before
 *     troop up sent reports the inflated receipt was paid in full);
 *   - a client under-reporting (digests equal, a duration shorter than the
 *     tokens received allow): the worker is paid its claim, the account's
 *     dispute recorded, and past --max-account-dispute-rate the account is
 *     refused /authorize (403); a report "refused" (the node answered 401)
 *     counts against the node;
 *   - a crashed client: troop up killed with -9 mid-stream never reports,
 *     the worker's claim settles after --report-wait; a report troop up
 *     could not send (coordinator stopped) is spooled, and a restarted
 *     troop up sends it.
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
#include <dirent.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "ledger.h"

#define REPORT_WAIT "6"

static char tmp[256], dbpath[4200];
static harness_proc coord, sim, slow_sim, evil_sim, worker, slow_worker;
static http_client *hc;
static ledger *led;
static troop_identity admin;
static char liar_id[TROOP_ID_LEN + 1], under_node_id[TROOP_ID_LEN + 1];

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
	assert_true(ledger_totals_balanced(&t));
	ledger_conn_close(c);
}

static void reservation(ledger_reservation *res, const char *job)
{
	ledger_conn *c = NULL;

	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_reservation_get(res, c, job), 0);
	ledger_conn_close(c);
}

/* Wait up to ms for job to settle; its reservation into *res. */
static void wait_settled(ledger_reservation *res, const char *job, int ms)
{
	for (int i = 0; i < ms / 100; i++) {
		reservation(res, job);
		if (res->status == LEDGER_RES_SETTLED)
			return;
		harness_sleep_ms(100);
	}
	fail_msg("job %s did not settle in %d ms (claim_ms %lld report_ms %lld)", job, ms,
	    (long long)res->claim_ms, (long long)res->report_ms);
}

/* The newest job `account` reserved, into job[64] ("" when none yet). */
static void find_last_job(char job[64], const char *account)
{
	ledger_conn *c = NULL;
	ledger_tx *tx = NULL;
	size_t n = 0;
	int64_t next = 0;

	job[0] = '\0';
	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_transactions(&tx, &n, &next, c, account, 50, 0), 0);
	for (size_t i = 0; i < n && !job[0]; i++)
		if (strcmp(tx[i].type, "reserve") == 0)
			snprintf(job, 64, "%.63s", tx[i].job_id);
	free(tx);
	ledger_conn_close(c);
}

/* The same, waiting up to 10 s for it. */
static void last_job(char job[64], const char *account)
{
	for (int i = 0; i < 200; i++) {
		find_last_job(job, account);
		if (job[0])
			return;
		harness_sleep_ms(50);
	}
	fail_msg("account %.8s reserved no job in 10 s", account);
}

static int64_t json_field(const troop_identity *id, const char *path, const char *field)
{
	int st;
	json_t *out = call(id, "GET", path, NULL, &st);
	int64_t v;

	assert_int_equal(st, 200);
	v = json_integer_value(json_object_get(out, field));
	json_decref(out);
	return v;
}

static int64_t balance_field(const troop_identity *id, const char *field)
{
	char path[128];

	snprintf(path, sizeof(path), "/users/%s/balance", id->id);
	return json_field(id, path, field);
}

static void heartbeat(const troop_identity *node, int port, const char *model);

/* The node's disputes as /nodes/{id} shows them (the registry's copy of
 * its ledger row is refreshed by its heartbeat). */
static int64_t node_disputes(const troop_identity *asker, const troop_identity *node,
    const char *model)
{
	char path[128];

	heartbeat(node, 9, model);
	snprintf(path, sizeof(path), "/nodes/%s", node->id);
	return json_field(asker, path, "disputes");
}

/* A node of the test's own key at 127.0.0.1:port serving `model`. */
static void heartbeat(const troop_identity *node, int port, const char *model)
{
	int st;
	json_t *b = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "tailscale_ip", "127.0.0.1", "port", port, "status", "IDLE",
	    "models", "name", model, "load", "active_jobs", 0, "max_jobs", 1000);
	json_t *out = call(node, "POST", "/heartbeat", b, &st);

	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);
}

/* A troop up with its own home and a key made here (so the test knows its
 * account). */
static void start_up(harness_proc *up, troop_identity *id, const char *name, bool new_key)
{
	static const char *const noprefetch[] = { "--prefetch-idle", "0", NULL };
	char home[400], key[460], log[460];

	snprintf(home, sizeof(home), "%s/%s", tmp, name);
	snprintf(key, sizeof(key), "%s/identity.key", home);
	snprintf(log, sizeof(log), "%s/%s.log", tmp, name);
	if (new_key) {
		assert_int_equal(mkdir(home, 0700), 0);
		identity_generate(id);
		assert_int_equal(identity_save(id, key), 0);
	}
	/* no ticket fetched ahead: each test reads the account's newest
	 * reservation as the job it just ran */
	assert_int_equal(harness_start_up(up, home, log, coord.url, noprefetch), 0);
}

/* One chat request through troop up; returns the HTTP status. */
static int chat(const harness_proc *up, const char *model, bool stream, int max_tokens)
{
	char url[128], body[256];
	const char *headers[] = { "Content-Type: application/json", NULL };
	http_response resp;
	http_client *c = NULL;
	int rc;

	snprintf(url, sizeof(url), "%s/v1/chat/completions", up->url);
	snprintf(body, sizeof(body), "{\"model\":\"%s\",\"stream\":%s,\"max_tokens\":%d,"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}", model,
	    stream ? "true" : "false", max_tokens);
	assert_int_equal(http_client_new(&c), 0);
	http_client_set_limits(c, 60000, 0);
	memset(&resp, 0, sizeof(resp));
	rc = http_request(c, &resp, "POST", url, headers, body, strlen(body));
	http_client_free(c);
	if (rc != 0)
		return 0;
	rc = resp.status;
	http_response_free(&resp);
	return rc;
}

/* The same in a child process (for a client killed mid-stream). */
static pid_t chat_in_child(const harness_proc *up, const char *model, int max_tokens)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(chat(up, model, true, max_tokens) == 200 ? 0 : 1);
	return pid;
}

static int files_in(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.' && strstr(de->d_name, ".json") != NULL;
	closedir(d);
	return n;
}

/* ---- honest -------------------------------------------------------------------- */

static void test_honest(void **state)
{
	harness_proc up;
	troop_identity me;
	ledger_reservation res;
	char job[64];

	(void)state;
	start_up(&up, &me, "honest", true);
	for (int stream = 0; stream < 2; stream++) {
		assert_int_equal(chat(&up, "llama3:8b", stream, 24), 200);
		last_job(job, me.id);
		wait_settled(&res, job, 10000);
		assert_true(res.report_wanted);
		assert_true(res.report_ms >= 0);
		assert_true(res.claim_ms >= 0);
		/* both witnesses saw the same body */
		assert_int_equal(strlen(res.claim_digest), 64);
		assert_string_equal(res.claim_digest, res.report_digest);
		assert_false(res.disputed);
		assert_false(res.client_disputed);
		/* paid what the worker claimed, as without a report */
		assert_int_equal(res.duration_ms, res.claim_ms);
		assert_true(res.report_tokens > 0);
	}
	assert_int_equal(balance_field(&me, "reports"), 2);
	assert_int_equal(balance_field(&me, "disputes"), 0);
	harness_stop(&up, SIGTERM);
	check_invariant();
}

/* `troop CMDLINE` with TROOP_HOME=tmp/HOME; its output (malloc'd) into
 * *out; returns its exit status. */
static int run_troop(char **out, const char *home, const char *cmdline)
{
	char log[460], cmd[2000];
	int st;

	snprintf(log, sizeof(log), "%s/%s-cli.out", tmp, home);
	snprintf(cmd, sizeof(cmd), "TROOP_HOME='%s/%s' '%s' %s --coordinator %s > '%s' 2>&1",
	    tmp, home, harness_troop(), cmdline, coord.url, log);
	st = system(cmd);
	*out = harness_read_file(log);
	assert_non_null(*out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- a worker inflating its duration ------------------------------------------------ */

static void test_inflating_worker(void **state)
{
	harness_proc up;
	troop_identity me, evil;
	ledger_reservation res;
	char job[64], path[128];
	int st;

	(void)state;
	/* the evil node advertises a simulator as its address: troop up gets
	 * a real answer, and the node's key signs what receipt it likes */
	identity_generate(&evil);
	heartbeat(&evil, evil_sim.port, "inflate:1b");
	start_up(&up, &me, "inflating", true);
	assert_int_equal(chat(&up, "inflate:1b", true, 8), 200);
	last_job(job, me.id);
	harness_sleep_ms(3200);
	{
		json_t *b = json_pack("{s:s, s:s, s:I, s:i, s:i, s:s}", "job_id", job,
		    "node_id", evil.id, "duration_ms", (json_int_t)3000, "prompt_tokens", 5,
		    "completion_tokens", 8, "outcome", "ok");
		json_t *out;

		snprintf(path, sizeof(path), "/jobs/%s/receipt", job);
		out = call(&evil, "POST", path, b, &st);
		assert_int_equal(st, 200);
		json_decref(out);
		json_decref(b);
	}
	wait_settled(&res, job, 10000);
	assert_true(res.report_ms >= 0 && res.report_ms < 1000);
	/* paid what the client observed, and the dispute is on record */
	assert_true(res.disputed);
	assert_int_equal(res.duration_ms, res.report_ms);
	assert_int_equal(res.charged, 1);
	assert_int_equal(node_disputes(&me, &evil, "inflate:1b"), 1);
	harness_stop(&up, SIGTERM);
	/* the client sees the dispute in its transactions */
	{
		char *text;
		assert_int_equal(run_troop(&text, "inflating", "transactions"), 0);
		assert_non_null(strstr(text, "disputed: worker claimed 3000 ms"));
		free(text);
		assert_int_equal(run_troop(&text, "inflating", "balance"), 0);
		assert_non_null(strstr(text, "disputes"));
		free(text);
	}
	check_invariant();
}

/* A node advertising another node's address: that worker answers 401 (not
 * its ticket); troop up reports "refused", which counts against the node. */
static void test_refused_ticket(void **state)
{
	harness_proc up;
	troop_identity me, squatter;
	ledger_reservation res;
	char job[64];

	(void)state;
	identity_generate(&squatter);
	heartbeat(&squatter, worker.port, "refuse:1b");
	start_up(&up, &me, "refused", true);
	assert_int_equal(chat(&up, "refuse:1b", false, 8), 503);
	last_job(job, me.id);
	for (int i = 0; i < 100; i++) {
		reservation(&res, job);
		if (res.report_ms >= 0)
			break;
		harness_sleep_ms(100);
	}
	assert_true(res.report_ms >= 0);
	assert_string_equal(res.report_outcome, "refused");
	assert_int_equal(node_disputes(&me, &squatter, "refuse:1b"), 1);
	harness_stop(&up, SIGTERM);
	check_invariant();
}

/* troop chat reports its job too (and flushes the report before it exits) */
static void test_chat_reports(void **state)
{
	ledger_reservation res;
	troop_identity me;
	char home[400], key[460], job[64], *text;

	(void)state;
	snprintf(home, sizeof(home), "%s/chat", tmp);
	snprintf(key, sizeof(key), "%s/identity.key", home);
	assert_int_equal(mkdir(home, 0700), 0);
	identity_generate(&me);
	assert_int_equal(identity_save(&me, key), 0);
	assert_int_equal(run_troop(&text, "chat", "chat -m llama3:8b --max-tokens 12 hello"), 0);
	free(text);
	last_job(job, me.id);
	wait_settled(&res, job, 10000);
	assert_true(res.report_wanted);
	assert_true(res.report_ms >= 0);
	assert_int_equal(strlen(res.report_digest), 64);
	assert_string_equal(res.claim_digest, res.report_digest);
	assert_false(res.disputed);
	assert_int_equal(res.duration_ms, res.claim_ms);
}

/* ---- a client under-reporting ------------------------------------------------------ */

/* Authorize `model` for `who`, promising a report; job id into job[64].
 * Returns the status; *msg (may be NULL) gets the error message. */
static int authorize(char job[64], const troop_identity *who, const char *model,
    char *msg, size_t mlen)
{
	int st;
	json_t *b = json_pack("{s:s, s:i, s:b}", "model", model, "max_seconds", 30,
	    "delivery_report", 1);
	json_t *out = call(who, "POST", "/authorize", b, &st);

	if (st == 200)
		snprintf(job, 64, "%s", json_string_value(json_object_get(out, "job_id")));
	else if (msg)
		snprintf(msg, mlen, "%s", json_string_value(json_object_get(
		    json_object_get(out, "error"), "message")));
	json_decref(out);
	json_decref(b);
	return st;
}

static json_t *post_job(const troop_identity *id, const char *job, const char *what,
    json_t *b, int *st)
{
	char path[128];
	json_t *out;

	snprintf(path, sizeof(path), "/jobs/%.63s/%.16s", job, what);
	out = call(id, "POST", path, b, st);
	json_decref(b);
	return out;
}

static void test_underreporting_client(void **state)
{
	static const char digest[] =
	    "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";
	troop_identity liar, node, refuser;
	char jobs[3][64], job[64], msg[512];
	ledger_reservation res;
	json_t *out;
	int st;

	(void)state;
	identity_generate(&liar);
	identity_generate(&node);
	identity_generate(&refuser);
	snprintf(liar_id, sizeof(liar_id), "%s", liar.id);
	snprintf(under_node_id, sizeof(under_node_id), "%s", node.id);
	heartbeat(&node, 9, "under:1b");
	for (int i = 0; i < 3; i++)
		assert_int_equal(authorize(jobs[i], &liar, "under:1b", NULL, 0), 200);
	harness_sleep_ms(1600);
	for (int i = 0; i < 3; i++) {
		/* 600 tokens in 1.5 s: 400 tokens/s, within the node's 1000 */
		out = post_job(&node, jobs[i], "receipt", json_pack("{s:s, s:s, s:i, s:i, s:i, "
		    "s:s, s:s}", "job_id", jobs[i], "node_id", node.id, "duration_ms", 1500,
		    "prompt_tokens", 5, "completion_tokens", 600, "outcome", "ok",
		    "response_digest", digest), &st);
		assert_int_equal(st, 200);
		assert_string_equal(json_string_value(json_object_get(out, "status")), "claimed");
		json_decref(out);
		/* the same body (same digest), "received" in 20 ms: 30000 tokens/s */
		out = post_job(&liar, jobs[i], "report", json_pack("{s:s, s:i, s:i, s:i, s:s, s:s}",
		    "job_id", jobs[i], "duration_ms", 20, "bytes", 4000, "completion_tokens", 600,
		    "outcome", "complete", "response_digest", digest), &st);
		assert_int_equal(st, 200);
		assert_true(json_is_true(json_object_get(out, "client_disputed")));
		assert_false(json_is_true(json_object_get(out, "disputed")));
		/* the worker is paid its claim, not the client's 20 ms */
		assert_int_equal(json_integer_value(json_object_get(out, "charged")), 2);
		json_decref(out);
		reservation(&res, jobs[i]);
		assert_true(res.client_disputed);
		assert_int_equal(res.duration_ms, 1500);
		check_invariant();
	}
	assert_int_equal(balance_field(&liar, "reports"), 3);
	assert_int_equal(balance_field(&liar, "disputes"), 3);
	assert_int_equal(node_disputes(&liar, &node, "under:1b"), 0);
	/* past --max-account-dispute-rate 0.5: stopped */
	assert_int_equal(authorize(job, &liar, "under:1b", msg, sizeof(msg)), 403);
	assert_non_null(strstr(msg, "max-account-dispute-rate"));

	/* an honest account is not stopped, and its report of a node that
	 * refused its ticket (401) counts against the node */
	assert_int_equal(authorize(job, &refuser, "under:1b", NULL, 0), 200);
	out = post_job(&refuser, job, "report", json_pack("{s:s, s:i, s:s}", "job_id", job,
	    "duration_ms", 3, "outcome", "refused"), &st);
	assert_int_equal(st, 200);
	json_decref(out);
	assert_int_equal(node_disputes(&refuser, &node, "under:1b"), 1);
	check_invariant();
}

/* ---- a crashed client ------------------------------------------------------------ */

static void test_crashed_client(void **state)
{
	harness_proc up;
	troop_identity me;
	ledger_reservation res;
	char job[64];
	pid_t child;
	int st;

	(void)state;
	start_up(&up, &me, "crashing", true);
	/* 20 tokens at 4 per second: killed a second into the stream */
	child = chat_in_child(&up, "slow:1b", 20);
	harness_sleep_ms(1500);
	assert_int_equal(harness_stop(&up, SIGKILL) & 0x7f, SIGKILL);
	waitpid(child, &st, 0);
	last_job(job, me.id);
	/* no report ever comes: the worker's claim settles after --report-wait */
	wait_settled(&res, job, 20000);
	assert_true(res.report_wanted);
	assert_int_equal(res.report_ms, -1);
	assert_true(res.claim_ms > 0);
	assert_int_equal(res.duration_ms, res.claim_ms);
	assert_int_equal(res.charged, (res.claim_ms + 999) / 1000);
	check_invariant();
}

static void test_spooled_report(void **state)
{
	harness_proc up;
	troop_identity me;
	ledger_reservation res;
	char job[64], spool[400];
	pid_t child;
	int st;

	(void)state;
	start_up(&up, &me, "spooling", true);
	snprintf(spool, sizeof(spool), "%s/spooling/client/reports", tmp);
	/* 20 tokens at 4 per second; the coordinator stops once the job is
	 * authorized, so the report cannot go when the stream ends */
	child = chat_in_child(&up, "slow:1b", 20);
	last_job(job, me.id);
	harness_sleep_ms(300);
	assert_int_equal(kill(coord.pid, SIGSTOP), 0);
	waitpid(child, &st, 0);
	for (int i = 0; i < 150 && !harness_log_contains(&up, "report_retry"); i++)
		harness_sleep_ms(100);
	assert_true(harness_log_contains(&up, "report_retry"));
	assert_int_equal(files_in(spool), 1);
	/* the client crashes with its report spooled */
	assert_int_equal(harness_stop(&up, SIGKILL) & 0x7f, SIGKILL);
	assert_int_equal(kill(coord.pid, SIGCONT), 0);
	/* restarted, troop up sends what it spooled */
	start_up(&up, &me, "spooling", false);
	wait_settled(&res, job, 20000);
	assert_true(res.report_ms > 0);
	assert_true(res.claim_ms > 0);
	assert_false(res.disputed);
	assert_string_equal(res.claim_digest, res.report_digest);
	for (int i = 0; i < 50 && files_in(spool) > 0; i++)
		harness_sleep_ms(100);
	assert_int_equal(files_in(spool), 0);
	harness_stop(&up, SIGTERM);
	check_invariant();
}

/* ---- the operator report ------------------------------------------------------ */

/* `troop admin report ARGS` as the admin; its stdout into out (malloc'd). */
static int run_admin_report(char **out, const char *arg)
{
	char home[400], key[460], log[460], cmd[2000];
	int st;

	snprintf(home, sizeof(home), "%s/admin", tmp);
	snprintf(key, sizeof(key), "%s/identity.key", home);
	snprintf(log, sizeof(log), "%s/admin-report.out", tmp);
	(void)mkdir(home, 0700);
	assert_int_equal(identity_save(&admin, key), 0);
	snprintf(cmd, sizeof(cmd), "TROOP_HOME='%s' '%s' admin report --coordinator %s %s "
	    "> '%s' 2>&1", home, harness_troop(), coord.url, arg, log);
	st = system(cmd);
	*out = harness_read_file(log);
	assert_non_null(*out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_admin_report(void **state)
{
	troop_identity stranger;
	json_t *out, *o;
	char *text;
	size_t i;
	int st;
	bool seen_account = false, seen_node = false;

	(void)state;
	/* the under-reporting account paid one node only, with trial credits */
	out = call(&admin, "GET", "/admin/report?min_jobs=3", NULL, &st);
	assert_int_equal(st, 200);
	json_array_foreach(json_object_get(out, "single_payee_accounts"), i, o) {
		if (strcmp(json_string_value(json_object_get(o, "account")), liar_id) != 0)
			continue;
		seen_account = true;
		assert_int_equal(json_integer_value(json_object_get(o, "jobs")), 3);
		assert_string_equal(json_string_value(json_object_get(o, "node_id")), under_node_id);
	}
	json_array_foreach(json_object_get(out, "trial_funded_nodes"), i, o) {
		if (strcmp(json_string_value(json_object_get(o, "node_id")), under_node_id) != 0)
			continue;
		seen_node = true;
		assert_true(json_number_value(json_object_get(o, "trial_share")) > 0.5);
	}
	json_decref(out);
	assert_true(seen_account);
	assert_true(seen_node);
	/* only an admin may read it */
	identity_generate(&stranger);
	out = call(&stranger, "GET", "/admin/report", NULL, &st);
	json_decref(out);
	assert_int_equal(st, 403);

	/* the CLI: a table for people, the JSON for scripts */
	assert_int_equal(run_admin_report(&text, ""), 0);
	{
		char short_liar[9];
		snprintf(short_liar, sizeof(short_liar), "%.8s", liar_id);
		assert_non_null(strstr(text, "Accounts whose spending all went to one node"));
		assert_non_null(strstr(text, short_liar));
		assert_non_null(strstr(text, "Nodes paid mostly with trial credits"));
	}
	free(text);
	assert_int_equal(run_admin_report(&text, "--json --min-jobs 1000"), 0);
	o = json_loads(text, 0, NULL);
	assert_non_null(o);
	assert_int_equal(json_array_size(json_object_get(o, "single_payee_accounts")), 0);
	json_decref(o);
	free(text);
}

static int setup(void **state)
{
	static const char *const no_verify[] = { "--no-verify", NULL };
	static char admin_flag[64];
	char data[300], log[300], engine[128];

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
	identity_generate(&admin);
	/* "--admin=ID": an id may start with '-' */
	snprintf(admin_flag, sizeof(admin_flag), "--admin=%s", admin.id);
	const char *args[] = { "--allow-unverified", "--starter-credits", "1000",
		"--threads", "2", "--report-wait", REPORT_WAIT,
		"--max-account-dispute-rate", "0.5", admin_flag, NULL };
	if (harness_start_coordinator(&coord, data, args) != 0)
		return -1;
	snprintf(log, sizeof(log), "%s/sim.log", tmp);
	const char *sim_args[] = { "--models", "llama3:8b", NULL };
	if (harness_start_sim(&sim, log, sim_args) != 0)
		return -1;
	snprintf(log, sizeof(log), "%s/evil-sim.log", tmp);
	const char *evil_args[] = { "--models", "inflate:1b", NULL };
	if (harness_start_sim(&evil_sim, log, evil_args) != 0)
		return -1;
	snprintf(log, sizeof(log), "%s/slow-sim.log", tmp);
	const char *slow_args[] = { "--models", "slow:1b", "--tokens-per-second", "4", NULL };
	if (harness_start_sim(&slow_sim, log, slow_args) != 0)
		return -1;
	snprintf(data, sizeof(data), "%s/worker", tmp);
	snprintf(engine, sizeof(engine), "ollama=%s", sim.url);
	if (harness_start_worker(&worker, data, coord.url, engine, no_verify) != 0)
		return -1;
	snprintf(data, sizeof(data), "%s/slow-worker", tmp);
	snprintf(engine, sizeof(engine), "ollama=%s", slow_sim.url);
	if (harness_start_worker(&slow_worker, data, coord.url, engine, no_verify) != 0)
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
	ledger_close(led);
	harness_stop_all();
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_honest),
		cmocka_unit_test(test_inflating_worker),
		cmocka_unit_test(test_chat_reports),
		cmocka_unit_test(test_refused_ticket),
		cmocka_unit_test(test_underreporting_client),
		cmocka_unit_test(test_crashed_client),
		cmocka_unit_test(test_spooled_report),
		cmocka_unit_test(test_admin_report),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
