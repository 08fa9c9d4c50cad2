/*
 * test_reputation.c - node reputation and choice (docs/SCHEDULING.md)
 * against real processes: a coordinator, engine simulators behind real
 * workers, and the real `troop up` sending delivery reports.
 *
 *   share        after a warm-up that lasts until the fast, flaky and
 *                greedy nodes are judged on their own records (50 jobs
 *                settled each; before that every node weighs the same, and
 *                a run measured from the first request on a fast machine
 *                was mostly a run among new nodes),
 *                1,000 streamed requests through troop up, six at a time,
 *                over four workers serving one model: a fast reliable one,
 *                a slow one (time to first token 150 ms, 40 tokens/s), a
 *                flaky one (the engine answers 500 to 40% of requests,
 *                which the app gets as the engine's answer and troop up
 *                reports) and a fast one that claims 4096
 *                slots.  The fast reliable workers get measurably more
 *                than the slow and the flaky one, every worker gets some,
 *                the greedy claim wins nothing (it gets about what the
 *                other fast worker gets, and its slots are capped), and
 *                /peers shows the components that made it so.  With the
 *                old choice (least loaded first) the flaky worker, free
 *                again at once after each failure, got more than the fast
 *                one and this failed.
 *   newcomer     a fifth node joining after that gets a fair share of the
 *                next 400 requests (at least 13%; it got 20% to 25%;
 *                without the floor 5% to 15%, so this alone does not
 *                always tell the two apart), not the share of its
 *                starting reputation;
 *   earned-slots a node claiming max_jobs 100000 that has served nothing
 *                yet is counted --max-jobs-new slots (2 here), not its
 *                class cap (8): the third ticket aimed at it is 503.
 *
 * With TROOP_TEST_DATABASE_URL / TROOP_TEST_REGISTRY_URL
 * (tests/integration/test_pg_coordinator.sh) the coordinator runs on
 * PostgreSQL and Redis instead, and the observations live in Redis; a
 * second coordinator shares both, and half of the share test's clients go
 * through it (its own troop up): both choose by the same reputations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"

#define MODEL "rep:1b"
#define REQUESTS 1000
#define CLIENTS 6

enum { FAST, SLOW, FLAKY, GREEDY, N_WORKERS };
static const char *const names[N_WORKERS] = { "fast", "slow", "flaky", "greedy" };

static char tmp[256];
static harness_proc coord, up, sims[N_WORKERS], workers[N_WORKERS];
/* on PostgreSQL and Redis: a second coordinator sharing both, with its own
 * troop up; half of the clients go through it */
static harness_proc coord_b, up_b;
static bool have_b;
static atomic_int ok_b;
static char ids[N_WORKERS][TROOP_ID_LEN + 1];
static troop_identity user;

/* ---- helpers ------------------------------------------------------------------ */

static json_t *get_json(const char *path, int *status)
{
	http_client *c = NULL;
	json_t *out = NULL;
	char url[512];

	snprintf(url, sizeof(url), "%s%s", coord.url, path);
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_json(c, status, &out, "GET", url, NULL, NULL), 0);
	http_client_free(c);
	return out;
}

static json_t *signed_call(const troop_identity *id, const char *method, const char *path,
    json_t *body, int *status)
{
	http_client *c = NULL;
	json_t *out = NULL;

	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, status, &out, id, method, coord.url, path,
	    body), 0);
	http_client_free(c);
	json_decref(body);
	return out;
}

/* A count from simulator `p`'s /sim/stats ("chat_requests", "faults"). */
static long sim_requests(const harness_proc *p, const char *field)
{
	http_client *c = NULL;
	json_t *out = NULL;
	char url[128];
	int st = 0;
	long n;

	snprintf(url, sizeof(url), "%s/sim/stats", p->url);
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_json(c, &st, &out, "GET", url, NULL, NULL), 0);
	assert_int_equal(st, 200);
	n = (long)json_integer_value(json_object_get(out, field));
	json_decref(out);
	http_client_free(c);
	return n;
}

/* The node id of the worker whose TROOP_HOME is `home`. */
static void worker_id(char out[TROOP_ID_LEN + 1], const char *home)
{
	char key[400];
	troop_identity id;

	snprintf(key, sizeof(key), "%s/identity.key", home);
	assert_int_equal(identity_load(&id, key), 0);
	snprintf(out, TROOP_ID_LEN + 1, "%s", id.id);
	identity_wipe(&id);
}

/* Wait until /peers lists `want` nodes for MODEL. */
static void wait_nodes(size_t want)
{
	for (int i = 0; i < 200; i++) {
		int st = 0;
		json_t *o = get_json("/peers?model=" MODEL, &st);
		size_t n = json_array_size(json_object_get(o, "nodes"));
		json_decref(o);
		if (st == 200 && n >= want)
			return;
		harness_sleep_ms(100);
	}
	fail_msg("fewer than %zu nodes registered for " MODEL, want);
}

/* ---- the clients ---------------------------------------------------------------- */

static atomic_int next_request, ok_replies, bad_replies;
static int requests_wanted = REQUESTS;

static void *client_main(void *arg)
{
	const harness_proc *via = arg ? arg : &up;
	static const char body[] = "{\"model\":\"" MODEL "\",\"stream\":true,\"max_tokens\":8,"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"who is the fastest\"}]}";
	const char *headers[] = { "Content-Type: application/json", NULL };
	http_client *c = NULL;
	char url[128];

	snprintf(url, sizeof(url), "%s/v1/chat/completions", via->url);
	if (http_client_new(&c) != 0)
		return NULL;
	http_client_set_limits(c, 60000, 0);
	while (atomic_fetch_add(&next_request, 1) < requests_wanted) {
		http_response resp;
		memset(&resp, 0, sizeof(resp));
		if (http_request(c, &resp, "POST", url, headers, body, strlen(body)) == 0 &&
		    resp.status == 200) {
			atomic_fetch_add(&ok_replies, 1);
			if (via == &up_b)
				atomic_fetch_add(&ok_b, 1);
		}
		else {
			if (atomic_fetch_add(&bad_replies, 1) < 5 && resp.status != 500)
				fprintf(stderr, "request failed: status %d %.200s\n", resp.status,
				    resp.body ? resp.body : "");
		}
		http_response_free(&resp);
	}
	http_client_free(c);
	return NULL;
}

/* `n` requests from CLIENTS clients at once (half of them through the
 * second coordinator's troop up when there is one); the counters count
 * these alone. */
static void run_clients(int n)
{
	pthread_t th[CLIENTS];

	atomic_store(&next_request, 0);
	atomic_store(&ok_replies, 0);
	atomic_store(&bad_replies, 0);
	atomic_store(&ok_b, 0);
	requests_wanted = n;
	for (int i = 0; i < CLIENTS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, client_main,
		    have_b && i % 2 ? &up_b : &up), 0);
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(th[i], NULL);
}

/* Whether /peers judges the fast, flaky and greedy nodes on their own
 * record ("new": false); the slow one, which serves a few a second, may
 * still be new. */
static bool warmed_up(void)
{
	static const int judged[] = { FAST, FLAKY, GREEDY };
	json_t *peers, *n;
	int st = 0, done = 0;
	size_t k;

	harness_sleep_ms(1100);   /* a heartbeat folds the last receipts in */
	peers = get_json("/peers?model=" MODEL, &st);
	assert_int_equal(st, 200);
	json_array_foreach(json_object_get(peers, "nodes"), k, n) {
		const char *id = json_string_value(json_object_get(n, "node_id"));
		json_t *d = json_object_get(n, "reputation_detail");
		for (size_t i = 0; id && i < sizeof(judged) / sizeof(judged[0]); i++)
			if (strcmp(id, ids[judged[i]]) == 0 &&
			    json_is_false(json_object_get(d, "new")))
				done++;
	}
	json_decref(peers);
	return done == (int)(sizeof(judged) / sizeof(judged[0]));
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_share(void **state)
{
	long got[N_WORKERS], before[N_WORKERS], faults_before, total = 0;
	json_t *peers;
	int st = 0;

	(void)state;
	wait_nodes(N_WORKERS);
	/* warm up: a node is judged on its own record once it has settled
	 * REP_NEW_JOBS jobs; until then every node weighs the same (the
	 * exploration floor), so a run measured from the first request on a
	 * fast machine (1,000 requests in 3 s) is mostly a run among new
	 * nodes, and the flaky one gets as much as the fast one */
	for (int round = 0; round < 40 && !warmed_up(); round++)
		run_clients(60);
	if (!warmed_up())
		fail_msg("the fast, flaky and greedy nodes still count as new after warming up");
	for (int i = 0; i < N_WORKERS; i++)
		before[i] = sim_requests(&sims[i], "chat_requests");
	faults_before = sim_requests(&sims[FLAKY], "faults");
	run_clients(REQUESTS);
	for (int i = 0; i < N_WORKERS; i++) {
		got[i] = sim_requests(&sims[i], "chat_requests") - before[i];
		total += got[i];
	}
	/* the app's only errors are the flaky engine's 500s, relayed as the
	 * engine's answer (troop up fails over before a worker answers, not
	 * after an engine did) */
	assert_int_equal(atomic_load(&bad_replies),
	    sim_requests(&sims[FLAKY], "faults") - faults_before);
	assert_int_equal(atomic_load(&ok_replies) + atomic_load(&bad_replies), REQUESTS);
	if (have_b) {
		fprintf(stderr, "through the second coordinator: %d answered\n",
		    atomic_load(&ok_b));
		assert_true(atomic_load(&ok_b) > REQUESTS / 4);
	}
	fprintf(stderr, "requests reaching each worker: fast %ld, slow %ld, flaky %ld "
	    "(failures included), greedy %ld; %ld in all for %d requests\n", got[FAST],
	    got[SLOW], got[FLAKY], got[GREEDY], total, REQUESTS);
	/* every worker gets some: at least 1% (the slow one, 4 slots of
	 * 350-ms jobs, serves about 11 a second: 19 to 26 when the whole run
	 * takes 3 s) */
	for (int i = 0; i < N_WORKERS; i++)
		if (got[i] < REQUESTS / 100)
			fail_msg("worker %s got only %ld requests", names[i], got[i]);
	/* the fast reliable ones get measurably more */
	if (!(got[FAST] * 10 > got[SLOW] * 15))
		fail_msg("fast %ld is not 1.5 x slow %ld", got[FAST], got[SLOW]);
	if (!(got[FAST] * 10 > got[FLAKY] * 15))
		fail_msg("fast %ld is not 1.5 x flaky %ld", got[FAST], got[FLAKY]);
	if (!(got[GREEDY] * 10 > got[SLOW] * 15 && got[GREEDY] * 10 > got[FLAKY] * 15))
		fail_msg("greedy (fast) %ld is not 1.5 x slow %ld and flaky %ld", got[GREEDY],
		    got[SLOW], got[FLAKY]);
	/* a claim of 4096 slots wins little over an honest fast node: its
	 * slots are capped by twice what it served well at once, so it earns
	 * some over a node that claims few (greedy / fast ran 0.88 to 1.6 over
	 * twelve runs on a loaded 2-core machine); test_earned_slots checks
	 * the cap itself */
	if (got[GREEDY] > got[FAST] * 2)
		fail_msg("greedy %ld got more than 2 x fast %ld", got[GREEDY], got[FAST]);

	/* /peers shows the components; its slots are capped */
	harness_sleep_ms(1500);   /* a heartbeat folds the last reports in */
	peers = get_json("/peers?model=" MODEL, &st);
	assert_int_equal(st, 200);
	{
		double rep[N_WORKERS] = { 0 }, speed[N_WORKERS] = { 0 }, rel[N_WORKERS] = { 0 };
		double ttft[N_WORKERS] = { 0 };
		json_t *nodes = json_object_get(peers, "nodes"), *n;
		size_t k;
		json_array_foreach(nodes, k, n) {
			const char *id = json_string_value(json_object_get(n, "node_id"));
			json_t *d = json_object_get(n, "reputation_detail");
			assert_non_null(d);
			for (int i = 0; i < N_WORKERS; i++) {
				if (!id || strcmp(id, ids[i]) != 0)
					continue;
				rep[i] = json_number_value(json_object_get(n, "reputation"));
				speed[i] = json_number_value(json_object_get(d, "speed"));
				rel[i] = json_number_value(json_object_get(d, "reliability"));
				ttft[i] = json_number_value(json_object_get(d, "ttft_ms"));
				assert_true(json_number_value(json_object_get(d, "availability")) > 0.9);
				assert_true(json_is_number(json_object_get(d, "audits")));
				assert_true(json_is_integer(json_object_get(d, "failovers")));
				if (i == GREEDY)
					assert_true(json_integer_value(json_object_get(d, "slots")) <= 8);
				fprintf(stderr, "%-6s reputation %.3f availability %.3f reliability "
				    "%.3f speed %.3f ttft %.0f ms %.0f tokens/s failovers %lld "
				    "served %lld slots %lld\n", names[i], rep[i],
				    json_number_value(json_object_get(d, "availability")), rel[i],
				    speed[i], json_number_value(json_object_get(d, "ttft_ms")),
				    json_number_value(json_object_get(d, "tokens_per_s")),
				    (long long)json_integer_value(json_object_get(d, "failovers")),
				    (long long)json_integer_value(json_object_get(d, "served_jobs")),
				    (long long)json_integer_value(json_object_get(d, "slots")));
			}
		}
		/* troop up's reports say when the first token came (ttfb_ms) */
		assert_true(ttft[SLOW] >= 140);
		assert_true(ttft[FAST] < ttft[SLOW]);
		assert_true(speed[FAST] > speed[SLOW]);
		assert_true(rel[FAST] > rel[FLAKY]);
		assert_true(rep[FAST] > rep[SLOW] && rep[FAST] > rep[FLAKY]);
	}
	json_decref(peers);

	/* troop nodes: a REPUTATION column, the components with --json */
	{
		char cmd[1200], line[2048];
		bool header = false, json = false;
		FILE *f;
		snprintf(cmd, sizeof(cmd), "'%s' nodes --coordinator %s --model " MODEL " 2>&1",
		    harness_troop(), coord.url);
		f = popen(cmd, "r");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f))
			header |= strstr(line, "REPUTATION") != NULL;
		assert_int_equal(pclose(f), 0);
		assert_true(header);
		snprintf(cmd, sizeof(cmd), "'%s' nodes --json --coordinator %s --model " MODEL
		    " 2>&1", harness_troop(), coord.url);
		f = popen(cmd, "r");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f))
			json |= strstr(line, "\"reputation_detail\"") != NULL;
		assert_int_equal(pclose(f), 0);
		assert_true(json);
	}

	/* GET /nodes/{id} has them too */
	{
		char path[128];
		json_t *o;
		snprintf(path, sizeof(path), "/nodes/%s", ids[FLAKY]);
		o = get_json(path, &st);
		assert_int_equal(st, 200);
		assert_true(json_integer_value(json_object_get(json_object_get(o,
		    "reputation_detail"), "failovers")) > 0);
		json_decref(o);
	}
}

/* A node that joins a troop whose nodes have reputations gets a fair
 * share (weighed at least as the mean of the judged nodes, not at its
 * own starting 0.25) so that it can earn one. */
static void test_newcomer(void **state)
{
	static const char *const sim_args[] = { "--models", MODEL, "--tokens-per-second", "0",
		NULL };
	static const char *const worker_args[] = { "--no-verify", "--max-jobs", "4", NULL };
	harness_proc nsim, nworker;
	char data[300], log[300], engine[160];
	long got;

	(void)state;
	snprintf(log, sizeof(log), "%s/sim-new.log", tmp);
	assert_int_equal(harness_start_sim(&nsim, log, sim_args), 0);
	snprintf(data, sizeof(data), "%s/worker-new", tmp);
	snprintf(engine, sizeof(engine), "ollama=%s", nsim.url);
	assert_int_equal(harness_start_worker(&nworker, data, coord.url, engine, worker_args), 0);
	wait_nodes(N_WORKERS + 1);
	run_clients(400);
	got = sim_requests(&nsim, "chat_requests");
	fprintf(stderr, "a new node got %ld of %d requests\n", got, requests_wanted);
	if (got < requests_wanted * 13 / 100)
		fail_msg("the new node got %ld of %d requests, under 13%%", got, requests_wanted);
}

static void test_earned_slots(void **state)
{
	troop_identity node;
	json_t *out;
	int st = 0, tickets = 0;

	(void)state;
	identity_generate(&node);
	out = signed_call(&node, "POST", "/heartbeat", json_pack("{s:s, s:s, s:s, s:i, s:s, "
	    "s:[{s:s}], s:{s:i, s:i}}", "node_id", node.id, "name", "greedy-claim",
	    "tailscale_ip", "127.0.0.1", "port", 9, "status", "IDLE", "models", "name",
	    "cap:1b", "load", "active_jobs", 0, "max_jobs", 100000), &st);
	assert_int_equal(st, 200);
	json_decref(out);
	for (int i = 0; i < 10; i++) {
		out = signed_call(&user, "POST", "/authorize", json_pack("{s:s, s:s, s:i}",
		    "model", "cap:1b", "node_id", node.id, "max_seconds", 5), &st);
		if (st == 200)
			tickets++;
		else {
			assert_int_equal(st, 503);
			assert_string_equal(json_string_value(json_object_get(json_object_get(out,
			    "error"), "code")), "no_capacity");
			json_decref(out);
			break;
		}
		json_decref(out);
	}
	assert_int_equal(tickets, 2);
	{
		char path[128];
		snprintf(path, sizeof(path), "/nodes/%s", node.id);
		out = get_json(path, &st);
		assert_int_equal(st, 200);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(out,
		    "reputation_detail"), "slots")), 2);
		json_decref(out);
	}
	identity_wipe(&node);
}

/* ---- setup -------------------------------------------------------------------------- */

static int setup(void **state)
{
	static const char *const sim_args[N_WORKERS][9] = {
		[FAST] = { "--models", MODEL, "--tokens-per-second", "0", NULL },
		[SLOW] = { "--models", MODEL, "--ttft-ms", "150", "--tokens-per-second", "40",
			NULL },
		[FLAKY] = { "--models", MODEL, "--tokens-per-second", "0", "--fault", "500",
			"--fault-rate", "40", NULL },
		[GREEDY] = { "--models", MODEL, "--tokens-per-second", "0", NULL },
	};
	static const char *const worker_args[N_WORKERS][4] = {
		[FAST] = { "--no-verify", "--max-jobs", "4", NULL },
		[SLOW] = { "--no-verify", "--max-jobs", "4", NULL },
		[FLAKY] = { "--no-verify", "--max-jobs", "4", NULL },
		[GREEDY] = { "--no-verify", "--max-jobs", "4096", NULL },
	};
	const char *args[] = { "--allow-unverified", "--starter-credits", "100000000",
		"--threads", "2", "--node-ttl", "3", "--report-wait", "5",
		"--max-jobs-other", "8", "--max-jobs-new", "2", NULL };
	char data[300], log[300], engine[160], home[300], key[360];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(data, sizeof(data), "%s/coord", tmp);
	if (harness_start_coordinator(&coord, data, args) != 0)
		return -1;
	for (int i = 0; i < N_WORKERS; i++) {
		snprintf(log, sizeof(log), "%s/sim-%s.log", tmp, names[i]);
		if (harness_start_sim(&sims[i], log, sim_args[i]) != 0)
			return -1;
		snprintf(data, sizeof(data), "%s/worker-%s", tmp, names[i]);
		snprintf(engine, sizeof(engine), "ollama=%s", sims[i].url);
		if (harness_start_worker(&workers[i], data, coord.url, engine, worker_args[i]) != 0)
			return -1;
		worker_id(ids[i], data);
	}
	snprintf(home, sizeof(home), "%s/user", tmp);
	snprintf(key, sizeof(key), "%s/identity.key", home);
	snprintf(log, sizeof(log), "%s/up.log", tmp);
	if (mkdir(home, 0700) != 0)
		return -1;
	identity_generate(&user);
	if (identity_save(&user, key) != 0)
		return -1;
	if (harness_start_up(&up, home, log, coord.url, NULL) != 0)
		return -1;
	if (harness_backend_pg()) {
		snprintf(data, sizeof(data), "%s/coord-b", tmp);
		if (harness_start_coordinator(&coord_b, data, args) != 0)
			return -1;
		snprintf(log, sizeof(log), "%s/up-b.log", tmp);
		if (harness_start_up(&up_b, home, log, coord_b.url, NULL) != 0)
			return -1;
		have_b = true;
		fprintf(stderr, "two coordinators: A %s, B %s\n", coord.url, coord_b.url);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	harness_stop_all();
	identity_wipe(&user);
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_share),
		cmocka_unit_test(test_newcomer),
		cmocka_unit_test(test_earned_slots),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
