/*
 * test_durable.c - the ledger's group commit under a crash: a coordinator
 * (--ledger-batch, its writer committing the reservations and settlements
 * of many concurrent clients together) is killed with SIGKILL in the
 * middle of a stream of authorizations and receipts, then restarted on
 * the same database.  Every reservation whose ticket reached a client and
 * every settlement answered 200 must be in the ledger, as answered;
 * nothing may be half-applied (a reservation without its "reserve" row,
 * a settled reservation without its "settle" row, or log rows of a job
 * the reservations do not show); and the conservation invariant holds.
 * A write the coordinator answered before its commit was durable would
 * show up here as a ticket with no reservation after the restart.
 *
 * With TROOP_TEST_DATABASE_URL and TROOP_TEST_REGISTRY_URL set
 * (tests/integration/test_pg_coordinator.sh) the coordinator runs on that
 * PostgreSQL database and Redis prefix, and the ledger is read there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "ledger.h"

#define CLIENTS 16
#define NODES 4
#define MAX_JOBS 4096   /* per client */
#define LOAD_MS 2500    /* the stream runs this long before the kill */

static char tmp[256], data[280], dbpath[4200];
static harness_proc coord;
static troop_identity nodes[NODES];
static atomic_bool stop;

/* What one client was told. */
struct acked {
	char job[64];
	int node;
	bool settled;        /* the receipt was answered 200 "settled" */
	int64_t charged;
};

struct client {
	pthread_t th;
	troop_identity user;
	struct acked *jobs;
	int n;                /* tickets received */
	int settled;
	int errors;           /* answers other than 200 before the crash */
};

static struct client clients[CLIENTS];

static int node_index(const char *id)
{
	for (int i = 0; i < NODES; i++)
		if (strcmp(nodes[i].id, id) == 0)
			return i;
	return -1;
}

static int heartbeat(http_client *hc, const troop_identity *n)
{
	int st = 0;
	json_t *out = NULL;
	json_t *b = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", n->id, "tailscale_ip", "127.0.0.1", "port", 9, "status", "IDLE",
	    "models", "name", "m1", "load", "active_jobs", 0, "max_jobs", 100000);
	int rc = http_request_signed(hc, &st, &out, n, "POST", coord.url, "/heartbeat", b);

	json_decref(b);
	json_decref(out);
	return rc == 0 && st == 200 ? 0 : -1;
}

/* Authorize, then (every other job) send its receipt, until the
 * coordinator is gone: a request that gets no answer ends the stream. */
static void *client_main(void *arg)
{
	struct client *cl = arg;
	http_client *hc = NULL;

	if (http_client_new(&hc) != 0)
		return NULL;
	while (!atomic_load(&stop) && cl->n < MAX_JOBS) {
		json_t *b = json_pack("{s:s, s:i}", "model", "m1", "max_seconds", 30), *out = NULL;
		int st = 0;
		int rc = http_request_signed(hc, &st, &out, &cl->user, "POST", coord.url,
		    "/authorize", b);
		json_decref(b);
		if (rc != 0) {
			json_decref(out);
			break;
		}
		if (st != 200) {
			cl->errors++;
			json_decref(out);
			continue;
		}
		struct acked *a = &cl->jobs[cl->n++];
		snprintf(a->job, sizeof(a->job), "%s",
		    json_string_value(json_object_get(out, "job_id")) ?: "");
		a->node = node_index(json_string_value(json_object_get(out, "node_id")) ?: "");
		json_decref(out);
		if (a->node < 0 || cl->n % 2 == 0)
			continue;   /* every other job stays open */

		char path[128];
		out = NULL;
		b = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s}", "job_id", a->job,
		    "node_id", nodes[a->node].id, "requester", cl->user.id, "model", "m1",
		    "duration_ms", 200 + (cl->n % 7) * 300, "prompt_tokens", 5,
		    "completion_tokens", 16, "outcome", "ok");
		snprintf(path, sizeof(path), "/jobs/%s/receipt", a->job);
		rc = http_request_signed(hc, &st, &out, &nodes[a->node], "POST", coord.url, path, b);
		json_decref(b);
		if (rc != 0) {
			json_decref(out);
			break;
		}
		if (st == 200 && strcmp(json_string_value(json_object_get(out, "status")) ?: "",
		    "settled") == 0) {
			a->settled = true;
			a->charged = json_integer_value(json_object_get(out, "charged"));
			cl->settled++;
		} else {
			cl->errors++;
		}
		json_decref(out);
	}
	http_client_free(hc);
	return NULL;
}

/* One job's rows in its requester's transaction log. */
struct log_count {
	int reserve, settle, release;
};

/* Count the log rows of every job of `account` into counts[] (parallel to
 * the jobs a client was told about) and return the rows naming a job it
 * was not told about (a commit whose answer the crash cut off). */
static int read_log(ledger_conn *c, const struct client *cl, struct log_count *counts,
    ledger *l)
{
	int64_t before = 0, next = 0;
	int unknown = 0;

	(void)l;
	memset(counts, 0, sizeof(*counts) * (size_t)cl->n);
	do {
		ledger_tx *rows = NULL;
		size_t n = 0;
		assert_int_equal(ledger_transactions(&rows, &n, &next, c, cl->user.id, 100,
		    before), 0);
		for (size_t i = 0; i < n; i++) {
			int k = -1;
			for (int j = 0; j < cl->n && k < 0; j++)
				if (strcmp(cl->jobs[j].job, rows[i].job_id) == 0)
					k = j;
			if (strcmp(rows[i].type, "grant") == 0)
				continue;
			if (k < 0) {
				/* committed, answer lost: whole on its own */
				ledger_reservation r;
				assert_int_equal(ledger_reservation_get(&r, c, rows[i].job_id), 0);
				unknown++;
				continue;
			}
			if (strcmp(rows[i].type, "reserve") == 0)
				counts[k].reserve++;
			else if (strcmp(rows[i].type, "settle") == 0)
				counts[k].settle++;
			else if (strcmp(rows[i].type, "release") == 0)
				counts[k].release++;
		}
		free(rows);
		before = next;
	} while (next > 0);
	return unknown;
}

static void test_sigkill_mid_stream(void **state)
{
	http_client *hc = NULL;
	int tickets = 0, settled = 0, errors = 0, unknown = 0;

	(void)state;
	assert_int_equal(http_client_new(&hc), 0);
	for (int i = 0; i < NODES; i++) {
		identity_generate(&nodes[i]);
		assert_int_equal(heartbeat(hc, &nodes[i]), 0);
	}
	for (int i = 0; i < CLIENTS; i++) {
		identity_generate(&clients[i].user);
		clients[i].jobs = calloc(MAX_JOBS, sizeof(struct acked));
		assert_non_null(clients[i].jobs);
		assert_int_equal(pthread_create(&clients[i].th, NULL, client_main, &clients[i]), 0);
	}
	harness_sleep_ms(LOAD_MS);
	/* mid-stream: no drain, no last checkpoint, no clean close */
	harness_stop(&coord, SIGKILL);
	atomic_store(&stop, true);
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(clients[i].th, NULL);
		tickets += clients[i].n;
		settled += clients[i].settled;
		errors += clients[i].errors;
	}
	http_client_free(hc);
	print_message("before the kill: %d tickets, %d settlements answered, %d errors\n",
	    tickets, settled, errors);
	assert_true(tickets >= CLIENTS);
	assert_true(settled >= 1);
	assert_int_equal(errors, 0);

	/* the restart recovers the database (SQLite replays its WAL) */
	const char *args[] = { "--allow-unverified", "--starter-credits", "1000000",
		"--threads", "4", "--report-wait", "600", NULL };
	assert_int_equal(harness_start_coordinator(&coord, data, args), 0);

	ledger *l = NULL;
	ledger_conn *c = NULL;
	ledger_totals t;
	assert_int_equal(ledger_open(&l, dbpath), 0);
	assert_int_equal(ledger_conn_open(&c, l), 0);
	for (int i = 0; i < CLIENTS; i++) {
		struct client *cl = &clients[i];
		struct log_count *counts = calloc((size_t)cl->n + 1, sizeof(*counts));
		assert_non_null(counts);
		unknown += read_log(c, cl, counts, l);
		for (int j = 0; j < cl->n; j++) {
			const struct acked *a = &cl->jobs[j];
			ledger_reservation r;
			/* the ticket reached the client: its reservation is there */
			if (ledger_reservation_get(&r, c, a->job) != 0)
				fail_msg("job %s: a ticket was given, but no reservation after the "
				    "restart", a->job);
			assert_string_equal(r.requester, cl->user.id);
			assert_int_equal(counts[j].reserve, 1);
			if (a->settled) {
				/* answered 200: settled, as answered */
				assert_int_equal(r.status, LEDGER_RES_SETTLED);
				assert_int_equal(r.charged, a->charged);
			}
			/* whole: settled with its log rows, or open without any */
			if (r.status == LEDGER_RES_SETTLED) {
				assert_int_equal(counts[j].settle, 1);
				assert_int_equal(counts[j].release, r.refunded > 0 ? 1 : 0);
				assert_int_equal(r.charged + r.refunded, r.amount);
			} else {
				assert_int_equal(r.status, LEDGER_RES_OPEN);
				assert_int_equal(counts[j].settle, 0);
				assert_int_equal(counts[j].release, 0);
			}
		}
		free(counts);
	}
	assert_int_equal(ledger_totals_get(&t, c), 0);
	assert_true(ledger_totals_balanced(&t));
	print_message("after the restart: every answered write is there; %d more were "
	    "committed without their answer reaching the client\n", unknown);
	ledger_conn_close(c);
	ledger_close(l);

	/* and the restarted coordinator serves */
	assert_int_equal(http_client_new(&hc), 0);
	assert_int_equal(heartbeat(hc, &nodes[0]), 0);
	http_client_free(hc);
	for (int i = 0; i < CLIENTS; i++)
		free(clients[i].jobs);
}

static int setup(void **state)
{
	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(data, sizeof(data), "%s/coord", tmp);
	if (harness_backend_pg())
		snprintf(dbpath, sizeof(dbpath), "%s", getenv("TROOP_TEST_DATABASE_URL"));
	else
		snprintf(dbpath, sizeof(dbpath), "sqlite:%s/ledger.db", data);
	/* more server threads than cores: requests wait for the writer
	 * together, so that its transactions hold several writes */
	const char *args[] = { "--allow-unverified", "--starter-credits", "1000000",
		"--threads", "16", "--ledger-batch", "64", "--report-wait", "600",
		"--max-jobs-other", "0", "--max-tickets", "1000000", NULL };
	if (harness_start_coordinator(&coord, data, args) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	harness_stop(&coord, SIGTERM);
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigkill_mid_stream),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
