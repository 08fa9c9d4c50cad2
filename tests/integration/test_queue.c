/*
 * test_queue.c - the wait queue of /authorize and slots held by real work
 * (queue.h), against real coordinators over HTTP with signed requests and
 * nodes that heartbeat like workers:
 *   wait-then-ticket  one node of max_jobs 1 busy: a request asking to
 *                     wait gets its ticket as soon as the receipt frees
 *                     the slot; without a wait it gets 503 at once;
 *   wait-expires      the wait runs out: 503 no_capacity saying so;
 *   unused-tickets    eight tickets never used (max_seconds 1, aimed at
 *                     the node) block an honest client no longer than
 *                     --unused-ticket plus one sweep;
 *   started           a node's "started" notice keeps the slot past the
 *                     unused time; another node's notice is refused;
 *   heartbeat-holds   a heartbeat counts the node's running jobs plus the
 *                     tickets not started yet, then the unused one's slot
 *                     comes back once;
 *   bounds            per-account queue bound: 429 with Retry-After;
 *   priority          a contributor (earned credits lately) goes ahead of
 *                     a trial-only account that waited longer, and the
 *                     trial account is served next;
 *   tickets-in-flight --max-tickets per account: 429;
 *   max-jobs-cap      a node claiming max_jobs 100000 gets --max-jobs-other;
 *   metrics           /metrics shows the waiting request per model;
 *   stop              a coordinator stopped with a request waiting answers
 *                     it 503 at once and exits 0.
 * With TROOP_TEST_DATABASE_URL on PostgreSQL (test_pg_coordinator.sh) a
 * second coordinator shares the ledger and the Redis registry: nodes
 * heartbeat and receipts go to A, waiting requests to B, so the queue and
 * the slot counts must be shared for anything to pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"

#define UNUSED_S 2        /* --unused-ticket */
#define SWEEP_S 2         /* the coordinator's sweep interval */

static char tmp[256];
static harness_proc coord_a, coord_b_proc;
static const char *url_a, *url_b;
static troop_identity worker_owner;
static const troop_identity *hb_owner = &worker_owner;  /* heartbeat()'s owner */

/* ---- helpers ------------------------------------------------------------------ */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* A signed (id) or anonymous call; the JSON reply (caller frees) and status.
 * retry_after (may be NULL) gets the Retry-After header. */
static json_t *call_h(const char *base, const troop_identity *id, const char *method,
    const char *path, json_t *body, int *status, char *retry_after, size_t ra_len)
{
	http_client *hc = NULL;
	json_t *out = NULL;
	int rc;

	assert_int_equal(http_client_new(&hc), 0);
	http_client_set_limits(hc, 120000, 1 << 20);
	*status = 0;
	if (id) {
		rc = http_request_signed(hc, status, &out, id, method, base, path, body);
	} else {
		char url[512];
		snprintf(url, sizeof(url), "%s%s", base, path);
		rc = http_request_json(hc, status, &out, method, url, NULL, body);
	}
	if (rc != 0)
		fprintf(stderr, "%s %s%s: no answer\n", method, base, path);
	assert_int_equal(rc, 0);
	if (retry_after) {
		retry_after[0] = '\0';
		(void)http_client_reply_header(hc, "Retry-After", retry_after, ra_len);
	}
	http_client_free(hc);
	json_decref(body);
	return out;
}

static json_t *call(const char *base, const troop_identity *id, const char *method,
    const char *path, json_t *body, int *status)
{
	return call_h(base, id, method, path, body, status, NULL, 0);
}

static const char *err_code(const json_t *out)
{
	const json_t *e = json_object_get(out, "error");
	const char *c = json_string_value(json_object_get(e, "code"));

	assert_non_null(e);
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_true(json_is_string(json_object_get(e, "type")));
	return c ? c : "";
}

static const char *err_message(const json_t *out)
{
	const char *m = json_string_value(json_object_get(json_object_get(out, "error"),
	    "message"));
	return m ? m : "";
}

/* A node heartbeat to coordinator A: one model, max_jobs, `active` jobs
 * running, owned by hb_owner. */
static void heartbeat_active(const troop_identity *node, const char *model, int max_jobs,
    int active)
{
	int st;
	json_t *out = call(url_a, node, "POST", "/heartbeat",
	    json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "owner", hb_owner->id, "name", "queue-box",
	    "tailscale_ip", "127.0.0.1", "port", 9, "status", "IDLE", "models", "name", model,
	    "load", "active_jobs", active, "max_jobs", max_jobs), &st);

	if (st != 200)
		fprintf(stderr, "heartbeat: %d %s\n", st, json_dumps(out, 0));
	assert_int_equal(st, 200);
	json_decref(out);
}

static void heartbeat(const troop_identity *node, const char *model, int max_jobs)
{
	heartbeat_active(node, model, max_jobs, 0);
}

/* POST /authorize at `base`; status; the job id into job (may be NULL). */
static int authorize(const char *base, const troop_identity *who, const char *model,
    int wait, int max_seconds, char job[64], json_t **reply)
{
	int st;
	json_t *b = json_pack("{s:s}", "model", model);
	json_t *out;

	if (wait > 0)
		json_object_set_new(b, "wait", json_integer(wait));
	if (max_seconds > 0)
		json_object_set_new(b, "max_seconds", json_integer(max_seconds));
	out = call(base, who, "POST", "/authorize", b, &st);
	if (job && st == 200)
		snprintf(job, 64, "%s", json_string_value(json_object_get(out, "job_id")));
	if (reply)
		*reply = out;
	else
		json_decref(out);
	return st;
}

static int receipt(const troop_identity *node, const char *job, int duration_ms)
{
	char path[128];
	int st;
	json_t *out;

	snprintf(path, sizeof(path), "/jobs/%s/receipt", job);
	out = call(url_a, node, "POST", path, json_pack("{s:s, s:s, s:i, s:i, s:i, s:s}",
	    "job_id", job, "node_id", node->id, "duration_ms", duration_ms,
	    "prompt_tokens", 5, "completion_tokens", 8, "outcome", "ok"), &st);
	if (st != 200)
		fprintf(stderr, "receipt: %d %s\n", st, json_dumps(out, 0));
	json_decref(out);
	return st;
}

static int started(const troop_identity *node, const char *job)
{
	char path[128];
	int st;

	snprintf(path, sizeof(path), "/jobs/%s/started", job);
	json_decref(call(url_a, node, "POST", path, json_object(), &st));
	return st;
}

/* A waiting /authorize on its own thread. */
struct waiter {
	pthread_t th;
	const char *base;
	troop_identity *who;
	const char *model;
	int wait;
	int status;
	double elapsed_ms, done_at;
	char job[64];
	char message[512];
	char code[64];
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	json_t *out = NULL;
	double t0 = now_ms();

	w->status = authorize(w->base, w->who, w->model, w->wait, 0, w->job, &out);
	w->done_at = now_ms();
	w->elapsed_ms = w->done_at - t0;
	if (w->status != 200 && out) {
		snprintf(w->message, sizeof(w->message), "%s", err_message(out));
		snprintf(w->code, sizeof(w->code), "%s", err_code(out));
	}
	json_decref(out);
	return NULL;
}

static void waiter_start(struct waiter *w, const char *base, troop_identity *who,
    const char *model, int wait)
{
	memset(&w->status, 0, sizeof(*w) - offsetof(struct waiter, status));
	w->base = base;
	w->who = who;
	w->model = model;
	w->wait = wait;
	assert_int_equal(pthread_create(&w->th, NULL, waiter_main, w), 0);
}

static void waiter_join(struct waiter *w)
{
	pthread_join(w->th, NULL);
}

/* The number of requests waiting for `model`, from A's /metrics. */
static long queue_waiting(const char *model)
{
	http_client *hc = NULL;
	http_response resp;
	char url[512], needle[300], *text;
	long v = -1;

	assert_int_equal(http_client_new(&hc), 0);
	snprintf(url, sizeof(url), "%s/metrics", url_a);
	memset(&resp, 0, sizeof(resp));
	assert_int_equal(http_request(hc, &resp, "GET", url, NULL, NULL, 0), 0);
	assert_int_equal(resp.status, 200);
	text = strndup(resp.body ? resp.body : "", resp.len);
	snprintf(needle, sizeof(needle), "troop_queue_waiting{model=\"%s\"} ", model);
	char *p = text ? strstr(text, needle) : NULL;
	if (p)
		v = strtol(p + strlen(needle), NULL, 10);
	free(text);
	http_response_free(&resp);
	http_client_free(hc);
	return v;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_wait_then_ticket(void **state)
{
	troop_identity node, u1, u2;
	char job[64];
	struct waiter w;
	json_t *out = NULL;

	(void)state;
	identity_generate(&node);
	identity_generate(&u1);
	identity_generate(&u2);
	heartbeat(&node, "q-wait", 1);
	assert_int_equal(authorize(url_a, &u1, "q-wait", 0, 60, job, NULL), 200);
	assert_int_equal(started(&node, job), 200);
	/* busy, no wait asked: 503 at once, saying how to wait */
	assert_int_equal(authorize(url_b, &u2, "q-wait", 0, 0, NULL, &out), 503);
	assert_string_equal(err_code(out), "no_capacity");
	assert_non_null(strstr(err_message(out), "'wait'"));
	json_decref(out);

	waiter_start(&w, url_b, &u2, "q-wait", 30);
	harness_sleep_ms(1500);
	assert_int_equal(queue_waiting("q-wait"), 1);
	assert_int_equal(w.status, 0);            /* still waiting */
	double freed = now_ms();
	assert_int_equal(receipt(&node, job, 1000), 200);
	waiter_join(&w);
	if (w.status != 200)
		fprintf(stderr, "waiter: %d %s\n", w.status, w.message);
	assert_int_equal(w.status, 200);
	assert_true(w.elapsed_ms >= 1400);
	/* served within a poll or two of the receipt */
	assert_true(w.done_at - freed < 1500);
	assert_int_equal(queue_waiting("q-wait"), 0);
	assert_int_equal(receipt(&node, w.job, 100), 200);
}

static void test_wait_expires(void **state)
{
	troop_identity node, u1, u2;
	char job[64];
	struct waiter w;

	(void)state;
	identity_generate(&node);
	identity_generate(&u1);
	identity_generate(&u2);
	heartbeat(&node, "q-expire", 1);
	assert_int_equal(authorize(url_a, &u1, "q-expire", 0, 60, job, NULL), 200);
	assert_int_equal(started(&node, job), 200);
	waiter_start(&w, url_b, &u2, "q-expire", 2);
	waiter_join(&w);
	assert_int_equal(w.status, 503);
	assert_string_equal(w.code, "no_capacity");
	assert_non_null(strstr(w.message, "within its wait of 2 s"));
	assert_true(w.elapsed_ms >= 1900 && w.elapsed_ms < 4000);
	assert_int_equal(receipt(&node, job, 500), 200);
}

static void test_unused_tickets(void **state)
{
	troop_identity node, attacker, honest;
	char job[64];
	json_t *out = NULL;
	struct waiter w;
	double t0;

	(void)state;
	identity_generate(&node);
	identity_generate(&attacker);
	identity_generate(&honest);
	heartbeat(&node, "q-unused", 8);
	/* eight tickets aimed at the node, never used */
	for (int i = 0; i < 8; i++) {
		json_t *b = json_pack("{s:s, s:s, s:i}", "model", "q-unused", "node_id", node.id,
		    "max_seconds", 1);
		int st;
		json_decref(call(url_b, &attacker, "POST", "/authorize", b, &st));
		assert_int_equal(st, 200);
	}
	t0 = now_ms();
	/* the node is full for now ... */
	assert_int_equal(authorize(url_a, &honest, "q-unused", 0, 0, NULL, &out), 503);
	json_decref(out);
	/* ... but only until the unused time runs out */
	waiter_start(&w, url_b, &honest, "q-unused", 30);
	waiter_join(&w);
	if (w.status != 200)
		fprintf(stderr, "honest client: %d %s\n", w.status, w.message);
	assert_int_equal(w.status, 200);
	fprintf(stderr, "honest client served %.0f ms after 8 unused tickets "
	    "(--unused-ticket %d, sweep every %d s)\n", w.done_at - t0, UNUSED_S, SWEEP_S);
	assert_true(w.done_at - t0 <= (UNUSED_S + SWEEP_S + 1) * 1000.0);
	snprintf(job, sizeof(job), "%s", w.job);
	assert_int_equal(receipt(&node, job, 100), 200);
}

static void test_started(void **state)
{
	troop_identity node, other, u1, u2;
	char job[64];
	json_t *out = NULL;

	(void)state;
	identity_generate(&node);
	identity_generate(&other);
	identity_generate(&u1);
	identity_generate(&u2);
	heartbeat(&node, "q-started", 1);
	heartbeat(&other, "q-other", 1);
	assert_int_equal(authorize(url_a, &u1, "q-started", 0, 60, job, NULL), 200);
	/* only the ticket's node may say its job started */
	assert_int_equal(started(&other, job), 403);
	assert_int_equal(started(&node, job), 200);
	/* past the unused time and a sweep: the slot is still taken */
	harness_sleep_ms((UNUSED_S + SWEEP_S + 1) * 1000);
	assert_int_equal(authorize(url_b, &u2, "q-started", 0, 0, NULL, &out), 503);
	json_decref(out);
	assert_int_equal(receipt(&node, job, 1000), 200);
	/* the receipt gives it back, once: the node's one slot, not two */
	assert_int_equal(authorize(url_b, &u2, "q-started", 0, 0, job, NULL), 200);
	assert_int_equal(authorize(url_b, &u1, "q-started", 0, 0, NULL, &out), 503);
	json_decref(out);
	assert_int_equal(started(&node, job), 200);
	assert_int_equal(receipt(&node, job, 100), 200);
}

/* A heartbeat reports the jobs the node runs; tickets not started yet
 * still hold their slots until their unused time, and no longer. */
static void test_heartbeat_keeps_holds(void **state)
{
	troop_identity node, u1, u2, u3;
	char job_a[64], job_b[64], job_c[64];
	json_t *out = NULL;

	(void)state;
	identity_generate(&node);
	identity_generate(&u1);
	identity_generate(&u2);
	identity_generate(&u3);
	heartbeat(&node, "q-hb", 2);
	assert_int_equal(authorize(url_a, &u1, "q-hb", 0, 60, job_a, NULL), 200);
	assert_int_equal(started(&node, job_a), 200);
	assert_int_equal(authorize(url_b, &u2, "q-hb", 0, 60, job_b, NULL), 200);  /* unused */
	/* the node runs one job: with the unused ticket's hold, it is full */
	heartbeat_active(&node, "q-hb", 2, 1);
	assert_int_equal(authorize(url_b, &u3, "q-hb", 0, 0, NULL, &out), 503);
	json_decref(out);
	/* the hold runs out: one slot free, exactly one */
	harness_sleep_ms((UNUSED_S + SWEEP_S + 1) * 1000);
	assert_int_equal(authorize(url_b, &u3, "q-hb", 0, 60, job_c, NULL), 200);
	assert_int_equal(started(&node, job_c), 200);
	assert_int_equal(authorize(url_b, &u3, "q-hb", 0, 0, NULL, &out), 503);
	json_decref(out);
	harness_sleep_ms(1100);
	assert_int_equal(receipt(&node, job_a, 1000), 200);
	assert_int_equal(receipt(&node, job_c, 1000), 200);
}

static void test_bounds(void **state)
{
	troop_identity node, u1, u2;
	char job[64], retry[32];
	struct waiter w[2];
	json_t *out;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&u1);
	identity_generate(&u2);
	heartbeat(&node, "q-bounds", 1);
	assert_int_equal(authorize(url_a, &u1, "q-bounds", 0, 60, job, NULL), 200);
	assert_int_equal(started(&node, job), 200);
	/* --queue-max-account 2 */
	waiter_start(&w[0], url_b, &u2, "q-bounds", 5);
	waiter_start(&w[1], url_b, &u2, "q-bounds", 5);
	harness_sleep_ms(700);
	out = call_h(url_b, &u2, "POST", "/authorize",
	    json_pack("{s:s, s:i}", "model", "q-bounds", "wait", 5), &st, retry, sizeof(retry));
	assert_int_equal(st, 429);
	assert_string_equal(err_code(out), "rate_limited");
	assert_true(atoi(retry) > 0);
	json_decref(out);
	waiter_join(&w[0]);
	waiter_join(&w[1]);
	assert_int_equal(w[0].status, 503);
	assert_int_equal(w[1].status, 503);
	assert_int_equal(receipt(&node, job, 500), 200);
}

static void test_priority(void **state)
{
	troop_identity node, payer, trial, owner;
	char job[64];
	struct waiter wt, wc;

	(void)state;
	identity_generate(&node);
	identity_generate(&payer);
	identity_generate(&trial);
	identity_generate(&owner);
	/* the owner has an account (starter credits) before it earns */
	{
		char path[128];
		int st;
		snprintf(path, sizeof(path), "/users/%s/balance", owner.id);
		json_decref(call(url_a, &owner, "GET", path, NULL, &st));
		assert_int_equal(st, 200);
	}
	hb_owner = &owner;
	heartbeat(&node, "q-prio", 1);
	hb_owner = &worker_owner;
	/* the owner earns: a job on its node, settled */
	assert_int_equal(authorize(url_a, &payer, "q-prio", 0, 60, job, NULL), 200);
	assert_int_equal(started(&node, job), 200);
	harness_sleep_ms(1100);
	assert_int_equal(receipt(&node, job, 1000), 200);
	/* the slot busy again */
	assert_int_equal(authorize(url_a, &payer, "q-prio", 0, 60, job, NULL), 200);
	assert_int_equal(started(&node, job), 200);
	/* a trial-only account waits first, the contributor a second later */
	waiter_start(&wt, url_b, &trial, "q-prio", 30);
	harness_sleep_ms(1000);
	waiter_start(&wc, url_b, &owner, "q-prio", 30);
	harness_sleep_ms(700);
	assert_int_equal(queue_waiting("q-prio"), 2);
	assert_int_equal(receipt(&node, job, 500), 200);
	waiter_join(&wc);
	assert_int_equal(wc.status, 200);
	harness_sleep_ms(500);
	assert_int_equal(wt.status, 0);            /* still waiting: behind */
	assert_int_equal(started(&node, wc.job), 200);
	assert_int_equal(receipt(&node, wc.job, 500), 200);
	waiter_join(&wt);
	assert_int_equal(wt.status, 200);
	assert_true(wt.done_at > wc.done_at);
	assert_int_equal(receipt(&node, wt.job, 100), 200);
}

static void test_tickets_in_flight(void **state)
{
	troop_identity node, u;
	json_t *out = NULL;
	int i;

	(void)state;
	identity_generate(&node);
	identity_generate(&u);
	heartbeat(&node, "q-flight", 100);
	/* --max-tickets 12 (and --max-jobs-other 10 caps the node: use two) */
	for (i = 0; i < 10; i++)
		assert_int_equal(authorize(url_a, &u, "q-flight", 0, 1, NULL, NULL), 200);
	assert_int_equal(authorize(url_a, &u, "q-flight", 0, 1, NULL, &out), 503);
	json_decref(out);
	{
		troop_identity node2;
		identity_generate(&node2);
		heartbeat(&node2, "q-flight", 100);
	}
	for (i = 0; i < 2; i++)
		assert_int_equal(authorize(url_b, &u, "q-flight", 0, 1, NULL, NULL), 200);
	assert_int_equal(authorize(url_b, &u, "q-flight", 0, 1, NULL, &out), 429);
	assert_string_equal(err_code(out), "rate_limited");
	assert_non_null(strstr(err_message(out), "tickets in flight"));
	json_decref(out);
}

static void test_max_jobs_cap(void **state)
{
	troop_identity node, u[12];
	json_t *out = NULL;
	int ok = 0;

	(void)state;
	identity_generate(&node);
	heartbeat(&node, "q-cap", 100000);
	for (int i = 0; i < 12; i++) {
		identity_generate(&u[i]);
		int st = authorize(i % 2 ? url_b : url_a, &u[i], "q-cap", 0, 1, NULL, &out);
		json_decref(out);
		out = NULL;
		ok += st == 200;
		assert_true(st == 200 || st == 503);
	}
	/* --max-jobs-other 10: an unverified node is given 10 slots, not 100000 */
	assert_int_equal(ok, 10);
}

/* A waiting /authorize that may see its connection closed: status 0 then. */
struct raw_waiter {
	pthread_t th;
	const char *base;
	troop_identity *who;
	int status;
	double done_at;
};

static void *raw_waiter_main(void *arg)
{
	struct raw_waiter *w = arg;
	http_client *hc = NULL;
	json_t *b = json_pack("{s:s, s:i}", "model", "q-stop", "wait", 30), *out = NULL;

	if (http_client_new(&hc) == 0) {
		http_client_set_limits(hc, 60000, 1 << 20);
		if (http_request_signed(hc, &w->status, &out, w->who, "POST", w->base, "/authorize",
		    b) != 0)
			w->status = 0;
		http_client_free(hc);
	}
	w->done_at = now_ms();
	json_decref(out);
	json_decref(b);
	return NULL;
}

/* Last: a coordinator told to stop with a request waiting in its queue
 * answers it 503 unavailable at once and stops cleanly (exit 0). */
static void test_stop_with_waiter(void **state)
{
	troop_identity node, u1, u2;
	char job[64];
	struct raw_waiter w = { 0 };
	harness_proc *target = url_b == url_a ? &coord_a : &coord_b_proc;
	double t0;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&u1);
	identity_generate(&u2);
	heartbeat(&node, "q-stop", 1);
	assert_int_equal(authorize(url_a, &u1, "q-stop", 0, 60, job, NULL), 200);
	assert_int_equal(started(&node, job), 200);
	w.base = url_b;
	w.who = &u2;
	assert_int_equal(pthread_create(&w.th, NULL, raw_waiter_main, &w), 0);
	harness_sleep_ms(800);
	t0 = now_ms();
	st = harness_stop(target, SIGTERM);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	pthread_join(w.th, NULL);
	fprintf(stderr, "coordinator stopped %.0f ms after SIGTERM with a request waiting; "
	    "the client had its answer (HTTP %d, 0: connection closed) after %.0f ms\n",
	    now_ms() - t0, w.status, w.done_at - t0);
	assert_true(w.done_at - t0 < 2000);
	assert_int_equal(w.status, 503);
}

/* ---- setup ----------------------------------------------------------------------- */

static int setup(void **state)
{
	static const char *const args[] = { "--allow-unverified", "--node-ttl", "600",
		"--unused-ticket", "2", "--queue-max-account", "2", "--max-tickets", "12",
		"--max-jobs-other", "10", "--threads", "2", "--log-level", "debug", NULL };
	char dir[512];

	(void)state;
	harness_tmpdir(tmp, sizeof(tmp));
	identity_generate(&worker_owner);
	snprintf(dir, sizeof(dir), "%s/coord-a", tmp);
	if (harness_start_coordinator(&coord_a, dir, args) != 0)
		return -1;
	url_a = url_b = coord_a.url;
	if (harness_backend_pg()) {
		/* a second coordinator on the same PostgreSQL and Redis */
		snprintf(dir, sizeof(dir), "%s/coord-b", tmp);
		if (harness_start_coordinator(&coord_b_proc, dir, args) != 0)
			return -1;
		url_b = coord_b_proc.url;
		fprintf(stderr, "two coordinators: A %s, B %s\n", url_a, url_b);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	harness_stop_all();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wait_then_ticket),
		cmocka_unit_test(test_wait_expires),
		cmocka_unit_test(test_unused_tickets),
		cmocka_unit_test(test_started),
		cmocka_unit_test(test_heartbeat_keeps_holds),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_priority),
		cmocka_unit_test(test_tickets_in_flight),
		cmocka_unit_test(test_max_jobs_cap),
		cmocka_unit_test(test_stop_with_waiter),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
