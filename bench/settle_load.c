/*
 * settle_load.c - settlement throughput of `troop coordinator`, for
 * bench/bench_settle.sh: how many POST /authorize and then how many
 * POST /jobs/{id}/receipt it serves per second, signed as real clients
 * and workers sign them (http_request_signed, one keep-alive connection
 * per thread).
 *
 *   settle_load --url URL [--threads N] [--jobs N] [--nodes N] [--report]
 *               [--coord-pid P]
 *
 * Registers --nodes nodes (heartbeats, max_jobs large, model "bench"),
 * then --threads threads each authorize --jobs/threads jobs as accounts of
 * their own (the accounts are created, with their starter credits, by one
 * untimed authorization first), then send each job's receipt signed by the
 * node the ticket names.  With --report the authorizations promise a
 * delivery report and each receipt is followed by the client's report
 * (timed with the receipts).  Prints
 *   RESULT authorize_per_s N
 *   RESULT receipt_per_s N
 * and the errors; with --coord-pid also the coordinator's CPU time per
 * request of each phase (from /proc: on a shared machine a steadier
 * figure than the rate),
 *   RESULT authorize_cpu_us N
 *   RESULT receipt_cpu_us N
 * Exit 0, 1 when it could not run, 2 on errors.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "http_client.h"
#include "identity.h"
#include "bench_proc.h"

#define MAX_NODES 64

static const char *url;
static int threads = 2, jobs = 4000, n_nodes = 8;
static bool with_report;
static int coord_pid;
static troop_identity nodes[MAX_NODES];

struct job {
	char id[72];
	int node;
};

struct worker {
	pthread_t th;
	troop_identity user;
	struct job *jobs;
	int n, done;
	int errors;
	pthread_barrier_t *bar;
	double auth_s, receipt_s;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int node_index(const char *id)
{
	for (int i = 0; i < n_nodes; i++)
		if (strcmp(nodes[i].id, id) == 0)
			return i;
	return -1;
}

static int authorize(http_client *c, const troop_identity *user, struct job *j)
{
	json_t *b = json_pack("{s:s, s:i}", "model", "bench", "max_seconds", 60), *out = NULL;
	int st = 0, rc;

	if (with_report)
		json_object_set_new(b, "delivery_report", json_true());
	rc = http_request_signed(c, &st, &out, user, "POST", url, "/authorize", b);
	json_decref(b);
	if (rc == 0 && st == 200 && j) {
		snprintf(j->id, sizeof(j->id), "%s",
		    json_string_value(json_object_get(out, "job_id")) ?: "");
		j->node = node_index(json_string_value(json_object_get(out, "node_id")) ?: "");
	}
	json_decref(out);
	return rc == 0 && st == 200 && (!j || j->node >= 0) ? 0 : -1;
}

static int post(http_client *c, const troop_identity *id, const char *job, const char *what,
    json_t *b)
{
	char path[128];
	json_t *out = NULL;
	int st = 0, rc;

	snprintf(path, sizeof(path), "/jobs/%s/%s", job, what);
	rc = http_request_signed(c, &st, &out, id, "POST", url, path, b);
	json_decref(b);
	json_decref(out);
	return rc == 0 && st == 200 ? 0 : -1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	http_client *c = NULL;
	double t0;

	if (http_client_new(&c) != 0) {
		w->errors = w->n;
		return NULL;
	}
	if (authorize(c, &w->user, NULL) != 0)   /* the account, untimed */
		w->errors++;
	pthread_barrier_wait(w->bar);
	t0 = now_s();
	for (int i = 0; i < w->n; i++) {
		if (authorize(c, &w->user, &w->jobs[i]) != 0) {
			w->errors++;
			w->jobs[i].id[0] = '\0';
		}
	}
	w->auth_s = now_s() - t0;
	pthread_barrier_wait(w->bar);
	t0 = now_s();
	for (int i = 0; i < w->n; i++) {
		struct job *j = &w->jobs[i];
		if (!j->id[0])
			continue;
		if (post(c, &nodes[j->node], j->id, "receipt", json_pack("{s:s, s:s, s:i, s:i, "
		    "s:i, s:s, s:s}", "job_id", j->id, "node_id", nodes[j->node].id,
		    "duration_ms", 300, "prompt_tokens", 10, "completion_tokens", 20, "outcome", "ok",
		    "response_digest", "0123456789abcdef")) != 0)
			w->errors++;
		else if (with_report && post(c, &w->user, j->id, "report", json_pack("{s:s, s:i, "
		    "s:i, s:i, s:s, s:s}", "job_id", j->id, "duration_ms", 320, "bytes", 900,
		    "completion_tokens", 20, "outcome", "complete", "response_digest",
		    "0123456789abcdef")) != 0)
			w->errors++;
		w->done++;
	}
	w->receipt_s = now_s() - t0;
	pthread_barrier_wait(w->bar);
	http_client_free(c);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_barrier_t bar;
	struct worker *ws;
	http_client *c = NULL;
	double auth_s = 0, receipt_s = 0, cpu[3];
	int done = 0, errors = 0, per;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--url") == 0 && v)
			url = argv[++i];
		else if (strcmp(argv[i], "--threads") == 0 && v)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--jobs") == 0 && v)
			jobs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--nodes") == 0 && v)
			n_nodes = atoi(argv[++i]);
		else if (strcmp(argv[i], "--report") == 0)
			with_report = true;
		else if (strcmp(argv[i], "--coord-pid") == 0 && v)
			coord_pid = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: settle_load --url URL [--threads N] [--jobs N] "
			    "[--nodes N] [--report]\n");
			return 1;
		}
	}
	if (!url || threads < 1 || threads > 64 || jobs < threads || n_nodes < 1 ||
	    n_nodes > MAX_NODES || sodium_init() < 0)
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (http_client_new(&c) != 0)
		return 1;
	for (int i = 0; i < n_nodes; i++) {
		json_t *b, *out = NULL;
		int st = 0;

		identity_generate(&nodes[i]);
		b = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}", "node_id",
		    nodes[i].id, "tailscale_ip", "127.0.0.1", "port", 9, "status", "IDLE",
		    "models", "name", "bench", "load", "active_jobs", 0, "max_jobs", 100000);
		if (http_request_signed(c, &st, &out, &nodes[i], "POST", url, "/heartbeat", b) != 0 ||
		    st != 200) {
			fprintf(stderr, "settle_load: heartbeat failed (HTTP %d)\n", st);
			return 1;
		}
		json_decref(b);
		json_decref(out);
	}
	http_client_free(c);
	per = jobs / threads;
	ws = calloc((size_t)threads, sizeof(*ws));
	/* the threads and this one: phase boundaries for the CPU readings */
	pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++) {
		identity_generate(&ws[i].user);
		ws[i].n = per;
		ws[i].jobs = calloc((size_t)per, sizeof(struct job));
		ws[i].bar = &bar;
		pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
	}
	for (int k = 0; k < 3; k++) {
		pthread_barrier_wait(&bar);
		cpu[k] = bench_proc_cpu_s(coord_pid);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(ws[i].th, NULL);
		if (ws[i].auth_s > auth_s)
			auth_s = ws[i].auth_s;
		if (ws[i].receipt_s > receipt_s)
			receipt_s = ws[i].receipt_s;
		done += ws[i].done;
		errors += ws[i].errors;
		free(ws[i].jobs);
	}
	free(ws);
	printf("settle_load: %d threads, %d jobs on %d nodes%s: authorize %.2f s, receipts "
	    "%.2f s, %d errors\n", threads, per * threads, n_nodes,
	    with_report ? " (with delivery reports)" : "", auth_s, receipt_s, errors);
	printf("RESULT authorize_per_s %.0f\n", (double)(per * threads) / auth_s);
	printf("RESULT %s_per_s %.0f\n", with_report ? "receipt_and_report" : "receipt",
	    (double)done / receipt_s);
	if (coord_pid > 0 && done > 0) {
		printf("RESULT authorize_cpu_us %.1f\n", (cpu[1] - cpu[0]) * 1e6 / (per * threads));
		printf("RESULT %s_cpu_us %.1f\n", with_report ? "receipt_and_report" : "receipt",
		    (cpu[2] - cpu[1]) * 1e6 / done);
	}
	curl_global_cleanup();
	return errors ? 2 : 0;
}
