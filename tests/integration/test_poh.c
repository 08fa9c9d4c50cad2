/*
 * test_poh.c - proof-of-hardware against a real `troop coordinator` on a
 * loopback port (DESIGN.md section 9, docs/PROTOCOL-POH.md): an honest
 * CPU worker (poh_run_challenge) is verified and its multiplier shows in
 * GET /nodes/{id}; a worker that fills half its rows with junk is
 * rejected, run after run; replays, expired challenges, reveals of rows
 * that were not asked for, and challenges for other nodes are refused; a
 * duration claimed by the worker is ignored; a second challenge inside
 * the rate-limit window gets 429.
 *
 * The cheating workers are written here with the library's own math
 * (poh.h) so that each one differs from the honest one in exactly one way.
 *
 * TROOP_TEST_DATABASE_URL / TROOP_TEST_REGISTRY_URL put both coordinators
 * on PostgreSQL and Redis (tests/integration/test_pg_coordinator.sh); then
 * a proof the ledger cannot record (its row locked) must not be answered
 * "verified" (skipped on the embedded ledger).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#ifdef TROOP_HAVE_PQ
#include <libpq-fe.h>
#endif

#include "encoding.h"
#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"
#include "poh.h"
#include "poh_worker.h"

#define N 256
#define ROUNDS 64
#define K 16
#define REFERENCE_OPS 1e10
#define JUNK_RUNS 30

static char tmp[256];
static harness_proc coord;       /* challenge TTL 30 s */
static harness_proc coord_short; /* challenge TTL 1 s, for expiry */
static http_client *http;

static void start(harness_proc *p, const char *name, const char *ttl, const char *rounds)
{
	char data[300];
	const char *args[] = { "--threads", "2",
	    "--poh-cpu-matrix-size", "256", "--poh-cpu-rounds", rounds,
	    "--poh-matrix-size", "256", "--poh-rounds", "8",
	    "--poh-samples", "16", "--poh-reference-ops", "1e10",
	    "--poh-rate-limit", "600", "--poh-challenge-ttl", ttl,
	    /* fresh nodes from one address, challenged at once (the limits on
	     * those have tests in test_poh_flood.c) */
	    "--poh-min-node-age", "0", "--poh-address-limit", "0",
	    /* a fast CPU earns a multiplier up to 20: a fresh user must afford
	     * 300 s at that price (the default 3600 credits do not) */
	    "--starter-credits", "100000", NULL };

	snprintf(data, sizeof(data), "%s/%s", tmp, name);
	assert_int_equal(harness_start_coordinator(p, data, args), 0);
}

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- requests ------------------------------------------------------------------ */

static json_t *post(const harness_proc *p, const troop_identity *id, const char *path,
    json_t *body, int *status)
{
	json_t *out = NULL;

	assert_int_equal(http_request_signed(http, status, &out, id, "POST", p->url, path, body),
	    0);
	json_decref(body);
	return out;
}

static const char *err_code(const json_t *reply)
{
	const char *code = json_string_value(json_object_get(json_object_get(reply, "error"),
	    "code"));
	assert_non_null(code);
	return code;
}

static const char *err_msg(const json_t *reply)
{
	const char *m = json_string_value(json_object_get(json_object_get(reply, "error"),
	    "message"));
	assert_non_null(m);
	return m;
}

static void expect_error(json_t *reply, int status, int want, const char *code,
    const char *msg_part)
{
	if (status != want)
		fprintf(stderr, "got %d: %s\n", status, reply ? json_dumps(reply, 0) : "(none)");
	assert_int_equal(status, want);
	assert_string_equal(err_code(reply), code);
	if (msg_part && !strstr(err_msg(reply), msg_part)) {
		fprintf(stderr, "message '%s' lacks '%s'\n", err_msg(reply), msg_part);
		fail();
	}
}

/* A fresh node that has heartbeated once. */
static void new_node(const harness_proc *p, troop_identity *node)
{
	int st = 0;
	json_t *out;

	identity_generate(node);
	out = post(p, node, "/heartbeat", json_pack("{s:s, s:s, s:s, s:i, s:s, s:[]}",
	    "node_id", node->id, "name", "poh-box", "tailscale_ip", "100.64.0.9", "port", 8421,
	    "status", "IDLE", "models"), &st);
	assert_int_equal(st, 200);
	json_decref(out);
}

static json_t *get_node(const harness_proc *p, const char *id)
{
	char url[256];
	int st = 0;
	json_t *out = NULL;

	snprintf(url, sizeof(url), "%s/nodes/%s", p->url, id);
	assert_int_equal(http_request_json(http, &st, &out, "GET", url, NULL, NULL), 0);
	assert_int_equal(st, 200);
	return out;
}

/* ---- a worker written out step by step ------------------------------------------ */

struct run {
	char id[80];
	uint8_t seed[POH_SEED_LEN];
	size_t n;
	unsigned rounds;
	int8_t *rows;
	poh_tree *tree;
	uint32_t asked[POH_K_MAX];
	size_t k;
};

static void run_free(struct run *w)
{
	free(w->rows);
	poh_tree_free(w->tree);
	memset(w, 0, sizeof(*w));
}

static void get_challenge(struct run *w, const harness_proc *p, const troop_identity *node)
{
	int st = 0;
	size_t len = 0;
	json_t *out = post(p, node, "/hardware/challenge", json_pack("{s:s}", "class", "cpu"),
	    &st);

	if (st != 200)
		fprintf(stderr, "challenge: %d %s\n", st, json_dumps(out, 0));
	assert_int_equal(st, 200);
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "%s", json_string_value(json_object_get(out, "challenge_id")));
	assert_string_equal(json_string_value(json_object_get(out, "algorithm")), POH_ALGORITHM);
	{
		const char *s = json_string_value(json_object_get(out, "seed"));
		assert_non_null(s);
		assert_int_equal(b64url_decode(w->seed, sizeof(w->seed), &len, s, strlen(s)), 0);
		assert_int_equal(len, POH_SEED_LEN);
	}
	w->n = (size_t)json_integer_value(json_object_get(out, "matrix_size"));
	w->rounds = (unsigned)json_integer_value(json_object_get(out, "rounds"));
	assert_int_equal(w->n, N);
	assert_int_equal(w->rounds, p == &coord_short ? 1 : ROUNDS);
	assert_true(json_integer_value(json_object_get(out, "expires_at")) > time(NULL));
	json_decref(out);
}

/* The rows, honestly computed; or, with `junk` > 0, a cheater's: a random
 * `junk` of them are random bytes and only the others are computed. */
static void compute(struct run *w, size_t junk)
{
	uint32_t *perm = malloc(w->n * sizeof(*perm));
	int8_t *honest = malloc(w->n * w->n);
	poh_ctx *ctx;

	w->rows = malloc(w->n * w->n);
	assert_non_null(w->rows);
	assert_non_null(perm);
	assert_non_null(honest);
	for (uint32_t i = 0; i < w->n; i++)
		perm[i] = i;
	for (size_t i = w->n - 1; i > 0 && junk > 0; i--) {
		uint32_t j = randombytes_uniform((uint32_t)i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	/* perm[0 .. junk-1] are junk, the rest computed */
	for (size_t i = 0; i < junk; i++)
		randombytes_buf(w->rows + (size_t)perm[i] * w->n, w->n);
	assert_int_equal(poh_ctx_new(&ctx, w->seed, w->n, w->rounds, 2), 0);
	assert_int_equal(poh_compute_rows(honest, ctx, perm + junk, w->n - junk, 2, NULL, NULL),
	    0);
	poh_ctx_free(ctx);
	for (size_t i = junk; i < w->n; i++)
		memcpy(w->rows + (size_t)perm[i] * w->n, honest + (i - junk) * w->n, w->n);
	free(honest);
	free(perm);
	assert_int_equal(poh_tree_build(&w->tree, w->rows, w->n, w->n, 2), 0);
}

/* POST /hardware/verify; `extra` fields are merged into the body. */
static json_t *send_verify(struct run *w, const harness_proc *p, const troop_identity *node,
    json_t *extra, int *st)
{
	char root[64];
	json_t *body, *out;

	b64_encode(root, sizeof(root), poh_tree_root(w->tree), POH_HASH_LEN);
	body = json_pack("{s:s, s:s}", "challenge_id", w->id, "merkle_root", root);
	if (extra) {
		json_object_update(body, extra);
		json_decref(extra);
	}
	out = post(p, node, "/hardware/verify", body, st);
	if (*st == 200) {
		json_t *idx = json_object_get(out, "indices"), *v;
		size_t i;
		w->k = json_array_size(idx);
		json_array_foreach(idx, i, v)
			w->asked[i] = (uint32_t)json_integer_value(v);
	}
	return out;
}

static void verify_ok(struct run *w, const harness_proc *p, const troop_identity *node)
{
	int st = 0;
	json_t *out = send_verify(w, p, node, NULL, &st);

	if (st != 200)
		fprintf(stderr, "verify: %d %s\n", st, json_dumps(out, 0));
	assert_int_equal(st, 200);
	assert_int_equal(w->k, K);
	for (size_t i = 0; i < w->k; i++) {
		assert_true(w->asked[i] < w->n);
		if (i > 0)
			assert_true(w->asked[i] > w->asked[i - 1]);   /* distinct */
	}
	json_decref(out);
}

/* The reveal of rows idx[0..k-1] as the tree holds them. */
static json_t *reveal_body(const struct run *w, const uint32_t *idx, size_t k)
{
	json_t *rows = json_array();
	char *text = malloc(b64_len(w->n) + 1);
	uint8_t path[POH_PATH_MAX * POH_HASH_LEN];

	for (size_t i = 0; i < k; i++) {
		json_t *jp = json_array();
		size_t plen = 0;
		assert_int_equal(poh_tree_path(path, POH_PATH_MAX, &plen, w->tree, idx[i]), 0);
		for (size_t h = 0; h < plen; h++) {
			char hb[64];
			b64_encode(hb, sizeof(hb), path + h * POH_HASH_LEN, POH_HASH_LEN);
			json_array_append_new(jp, json_string(hb));
		}
		b64_encode(text, b64_len(w->n) + 1, w->rows + (size_t)idx[i] * w->n, w->n);
		json_array_append_new(rows, json_pack("{s:i, s:s, s:o}", "index", (int)idx[i],
		    "row", text, "path", jp));
	}
	free(text);
	return json_pack("{s:s, s:o}", "challenge_id", w->id, "rows", rows);
}

static json_t *send_reveal(const struct run *w, const harness_proc *p,
    const troop_identity *node, int *st)
{
	return post(p, node, "/hardware/reveal", reveal_body(w, w->asked, w->k), st);
}

/* ---- tests ---------------------------------------------------------------------- */

/* POST /authorize for `model` as a fresh user: the status. */
static int authorize(const harness_proc *p, const char *model, char node_out[64])
{
	troop_identity user;
	int st = 0;
	json_t *out;

	identity_generate(&user);
	out = post(p, &user, "/authorize", json_pack("{s:s}", "model", model), &st);
	if (st == 200)
		snprintf(node_out, 64, "%s", json_string_value(json_object_get(out, "node_id")));
	json_decref(out);
	return st;
}

/* POST /authorize for `model` asking for hardware class `cls`, required or
 * preferred: the status. */
static int authorize_class(const harness_proc *p, const char *model, const char *cls,
    bool required)
{
	troop_identity user;
	int st = 0;

	identity_generate(&user);
	json_decref(post(p, &user, "/authorize", json_pack("{s:s, s:s, s:b}", "model", model,
	    "class", cls, "class_required", required), &st));
	return st;
}

static void test_honest_cpu_worker(void **state)
{
	troop_identity node;
	poh_result res;
	poh_run_opts o;
	char picked[64] = "";
	json_t *n;
	int rc, st = 0;

	(void)state;
	/* a node serving a model of its own; this coordinator picks verified nodes only */
	identity_generate(&node);
	n = post(&coord, &node, "/heartbeat", json_pack("{s:s, s:s, s:s, s:i, s:s, "
	    "s:[{s:s}], s:{s:i, s:i}}", "node_id", node.id, "name", "poh-box", "tailscale_ip",
	    "100.64.0.9", "port", 8421, "status", "IDLE", "models", "name", "poh-model",
	    "load", "active_jobs", 0, "max_jobs", 4), &st);
	assert_int_equal(st, 200);
	json_decref(n);
	n = get_node(&coord, node.id);
	assert_false(json_is_true(json_object_get(n, "verified")));
	json_decref(n);
	assert_int_equal(authorize(&coord, "poh-model", picked), 503);   /* unverified */

	memset(&o, 0, sizeof(o));
	o.coordinator = coord.url;
	o.id = &node;
	o.http = http;
	o.engine_opts.device = POH_DEVICE_CPU;
	o.engine_opts.threads = 2;
	o.progress = POH_PROGRESS_NONE;
	rc = poh_run_challenge(&res, &o);
	if (rc != 0)
		fprintf(stderr, "poh_run_challenge: %s\n", res.message);
	assert_int_equal(rc, 0);
	assert_true(res.verified);
	assert_string_equal(res.message, "verified");
	assert_int_equal(res.n, N);
	assert_int_equal(res.rounds, ROUNDS);
	assert_int_equal(res.samples, K);
	assert_true(res.elapsed_ms >= 1);
	assert_true(res.multiplier >= 0.01 && res.multiplier <= 20.0);
	assert_true(fabs(res.ops_per_s - poh_ops(N, ROUNDS) / (res.elapsed_ms / 1000.0)) <
	    res.ops_per_s * 1e-6);
	assert_non_null(strstr(res.device, "cpu"));
	printf("# honest CPU run: %lld ms on the coordinator's clock, %.3f s computing, "
	    "%.3e ops/s, multiplier %.4f\n", (long long)res.elapsed_ms, res.compute_s,
	    res.ops_per_s, res.multiplier);

	n = get_node(&coord, node.id);
	assert_true(json_is_true(json_object_get(n, "verified")));
	assert_true(fabs(json_real_value(json_object_get(n, "multiplier")) - res.multiplier) <
	    1e-6 * res.multiplier);
	assert_true(json_integer_value(json_object_get(n, "verified_at")) > 0);
	json_decref(n);
	/* /peers reads the live record's copy of the facts, updated by the
	 * proof itself (no heartbeat came in between) */
	{
		char url[256];
		json_t *out = NULL, *peer;
		snprintf(url, sizeof(url), "%s/peers?model=poh-model", coord.url);
		assert_int_equal(http_request_json(http, &st, &out, "GET", url, NULL, NULL), 0);
		assert_int_equal(st, 200);
		peer = json_array_get(json_object_get(out, "nodes"), 0);
		assert_non_null(peer);
		assert_string_equal(json_string_value(json_object_get(peer, "node_id")), node.id);
		assert_true(json_is_true(json_object_get(peer, "verified")));
		assert_true(fabs(json_real_value(json_object_get(peer, "multiplier")) -
		    res.multiplier) < 1e-6 * res.multiplier);
		/* a CPU-class proof verifies it for the CPU class only */
		assert_string_equal(json_string_value(json_object_get(peer, "hardware_class")),
		    "cpu");
		assert_false(json_is_true(json_object_get(peer, "established")));
		json_decref(out);
	}
	/* verified: now /authorize hands it out */
	assert_int_equal(authorize(&coord, "poh-model", picked), 200);
	assert_string_equal(picked, node.id);
	/* ... but not to a client that requires a GPU-class node; preferring
	 * one, or requiring the CPU class, still gets it */
	assert_int_equal(authorize_class(&coord, "poh-model", "gpu", true), 503);
	assert_int_equal(authorize_class(&coord, "poh-model", "gpu", false), 200);
	assert_int_equal(authorize_class(&coord, "poh-model", "cpu", true), 200);
	assert_int_equal(authorize_class(&coord, "poh-model", "tpu", false), 400);
}

/* On a PostgreSQL ledger (test_pg_coordinator.sh): a proof whose result
 * the ledger cannot store (the node's row locked by another session past
 * the coordinator's lock_timeout) is not answered "verified". */
static void test_unrecorded_proof_not_verified(void **state)
{
	(void)state;
#ifdef TROOP_HAVE_PQ
	troop_identity node;
	poh_result res;
	poh_run_opts o;
	char sql[200];
	PGconn *pg;
	PGresult *q;
	json_t *n;
	int rc, st = 0;

	if (!harness_backend_pg())
		skip();
	identity_generate(&node);
	n = post(&coord, &node, "/heartbeat", json_pack("{s:s, s:s, s:s, s:i, s:s, "
	    "s:[{s:s}], s:{s:i, s:i}}", "node_id", node.id, "name", "poh-box", "tailscale_ip",
	    "100.64.0.9", "port", 8421, "status", "IDLE", "models", "name", "poh-locked",
	    "load", "active_jobs", 0, "max_jobs", 4), &st);
	assert_int_equal(st, 200);
	json_decref(n);

	pg = PQconnectdb(getenv("TROOP_TEST_DATABASE_URL"));
	assert_int_equal(PQstatus(pg), CONNECTION_OK);
	snprintf(sql, sizeof(sql), "BEGIN; SELECT 1 FROM nodes WHERE node_id = '%s' FOR UPDATE",
	    node.id);
	q = PQexec(pg, sql);
	assert_int_equal(PQresultStatus(q), PGRES_TUPLES_OK);
	PQclear(q);

	memset(&o, 0, sizeof(o));
	o.coordinator = coord.url;
	o.id = &node;
	o.http = http;
	o.engine_opts.device = POH_DEVICE_CPU;
	o.engine_opts.threads = 2;
	o.progress = POH_PROGRESS_NONE;
	rc = poh_run_challenge(&res, &o);
	printf("# proof while the node's row is locked: rc %d, status %d, %s\n", rc,
	    res.http_status, res.message);
	assert_int_not_equal(rc, 0);
	assert_false(res.verified);
	assert_int_equal(res.http_status, 503);

	q = PQexec(pg, "ROLLBACK");
	PQclear(q);
	PQfinish(pg);
	n = get_node(&coord, node.id);
	assert_false(json_is_true(json_object_get(n, "verified")));
	json_decref(n);
#else
	skip();
#endif
}

static double pass_odds(size_t n, size_t honest, size_t k)
{
	double p = 1.0;

	for (size_t i = 0; i < k; i++)
		p *= (double)(honest - i) / (double)(n - i);
	return p;
}

static void test_half_junk_never_passes(void **state)
{
	int passed = 0, rejected = 0;

	(void)state;
	printf("# a worker with %d of %d rows junk passes one run with odds %.3e "
	    "(2^-%d = %.3e); %d runs: %.3e\n", N / 2, N, pass_odds(N, N / 2, K), K,
	    ldexp(1.0, -K), JUNK_RUNS, 1.0 - pow(1.0 - pass_odds(N, N / 2, K), JUNK_RUNS));
	for (int run = 0; run < JUNK_RUNS; run++) {
		troop_identity node;
		struct run w;
		int st = 0;
		json_t *out, *n;

		new_node(&coord, &node);
		get_challenge(&w, &coord, &node);
		compute(&w, N / 2);
		verify_ok(&w, &coord, &node);
		out = send_reveal(&w, &coord, &node, &st);
		if (st == 200) {
			passed++;
		} else {
			expect_error(out, st, 403, "forbidden", "proof rejected");
			rejected++;
		}
		json_decref(out);
		n = get_node(&coord, node.id);
		assert_false(json_is_true(json_object_get(n, "verified")));
		json_decref(n);
		run_free(&w);
	}
	printf("# half-junk workers: %d rejected, %d passed\n", rejected, passed);
	assert_int_equal(passed, 0);
}

static void test_one_junk_row_asked_is_caught(void **state)
{
	/* every asked row matters: junk in just one of them fails */
	troop_identity node;
	struct run w;
	int st = 0;
	json_t *out;

	(void)state;
	new_node(&coord, &node);
	get_challenge(&w, &coord, &node);
	compute(&w, 0);
	verify_ok(&w, &coord, &node);
	w.rows[(size_t)w.asked[K / 2] * w.n + 3] ^= 0x01;  /* after the root: path breaks */
	out = send_reveal(&w, &coord, &node, &st);
	expect_error(out, st, 403, "forbidden", "Merkle path");
	json_decref(out);
	run_free(&w);
}

static void test_replay_rejected(void **state)
{
	troop_identity node, other;
	struct run w;
	int st = 0;
	json_t *out;

	(void)state;
	new_node(&coord, &node);
	new_node(&coord, &other);
	get_challenge(&w, &coord, &node);
	compute(&w, 0);

	/* another node cannot use (or burn) this challenge */
	out = send_verify(&w, &coord, &other, NULL, &st);
	expect_error(out, st, 403, "forbidden", "another node");
	json_decref(out);

	verify_ok(&w, &coord, &node);
	out = send_verify(&w, &coord, &node, NULL, &st);       /* replayed verify */
	expect_error(out, st, 409, "conflict", "already used");
	json_decref(out);

	out = send_reveal(&w, &coord, &node, &st);
	assert_int_equal(st, 200);
	assert_true(json_is_true(json_object_get(out, "verified")));
	json_decref(out);
	out = send_reveal(&w, &coord, &node, &st);             /* replayed reveal */
	expect_error(out, st, 409, "conflict", "already used");
	json_decref(out);
	run_free(&w);
}

static void test_expired_rejected(void **state)
{
	troop_identity node, node2;
	struct run w;
	int st = 0;
	json_t *out;

	(void)state;
	/* challenge -> root after the 1 s limit */
	new_node(&coord_short, &node);
	get_challenge(&w, &coord_short, &node);
	compute(&w, 0);
	harness_sleep_ms(1600);
	out = send_verify(&w, &coord_short, &node, NULL, &st);
	expect_error(out, st, 410, "expired", "expired");
	json_decref(out);
	run_free(&w);

	/* root in time -> reveal after the 1 s limit */
	new_node(&coord_short, &node2);
	get_challenge(&w, &coord_short, &node2);
	compute(&w, 0);
	verify_ok(&w, &coord_short, &node2);
	harness_sleep_ms(1600);
	out = send_reveal(&w, &coord_short, &node2, &st);
	expect_error(out, st, 410, "expired", "expired");
	json_decref(out);
	run_free(&w);
}

static void test_rows_not_asked_rejected(void **state)
{
	troop_identity node;
	struct run w;
	uint32_t idx[POH_K_MAX + 1];
	int st = 0;
	json_t *out;

	(void)state;
	/* one asked row swapped for a row that was not asked (correct data and path) */
	new_node(&coord, &node);
	get_challenge(&w, &coord, &node);
	compute(&w, 0);
	verify_ok(&w, &coord, &node);
	memcpy(idx, w.asked, w.k * sizeof(idx[0]));
	for (uint32_t x = 0; x < w.n; x++) {
		bool asked = false;
		for (size_t i = 0; i < w.k; i++)
			asked |= w.asked[i] == x;
		if (!asked) {
			idx[0] = x;
			break;
		}
	}
	out = post(&coord, &node, "/hardware/reveal", reveal_body(&w, idx, w.k), &st);
	expect_error(out, st, 400, "bad_request", "not asked for");
	json_decref(out);
	run_free(&w);

	/* all asked rows plus one more */
	new_node(&coord, &node);
	get_challenge(&w, &coord, &node);
	compute(&w, 0);
	verify_ok(&w, &coord, &node);
	memcpy(idx, w.asked, w.k * sizeof(idx[0]));
	/* a row that was not asked (rows 0 and 1 may both be in the sample:
	 * the extra row must not repeat an asked one) */
	for (uint32_t x = 0; x < w.n; x++) {
		bool asked = false;
		for (size_t i = 0; i < w.k; i++)
			asked |= w.asked[i] == x;
		if (!asked) {
			idx[w.k] = x;
			break;
		}
	}
	out = post(&coord, &node, "/hardware/reveal", reveal_body(&w, idx, w.k + 1), &st);
	expect_error(out, st, 400, "bad_request", "not asked for");
	json_decref(out);
	run_free(&w);

	/* one asked row left out */
	new_node(&coord, &node);
	get_challenge(&w, &coord, &node);
	compute(&w, 0);
	verify_ok(&w, &coord, &node);
	out = post(&coord, &node, "/hardware/reveal", reveal_body(&w, w.asked, w.k - 1), &st);
	expect_error(out, st, 400, "bad_request", "missing");
	json_decref(out);
	run_free(&w);
}

static void test_claimed_duration_ignored(void **state)
{
	troop_identity node;
	struct run w;
	int st = 0;
	double t0, t1, m, want;
	int64_t elapsed;
	json_t *out, *n;

	(void)state;
	new_node(&coord, &node);
	t0 = mono_ms();
	get_challenge(&w, &coord, &node);
	compute(&w, 0);
	/* a day, in every spelling a worker might try */
	out = send_verify(&w, &coord, &node, json_pack("{s:I, s:I, s:f, s:I}",
	    "duration_ms", (json_int_t)86400000, "elapsed_ms", (json_int_t)86400000,
	    "duration", 86400.0, "compute_ms", (json_int_t)86400000), &st);
	t1 = mono_ms();
	assert_int_equal(st, 200);
	json_decref(out);
	out = send_reveal(&w, &coord, &node, &st);
	assert_int_equal(st, 200);
	elapsed = json_integer_value(json_object_get(out, "elapsed_ms"));
	m = json_real_value(json_object_get(out, "multiplier"));
	/* the coordinator's interval lies inside the one this test saw */
	assert_true(elapsed >= 1);
	assert_true((double)elapsed <= t1 - t0 + 1.0);
	want = poh_ops(N, ROUNDS) / ((double)elapsed / 1000.0) / REFERENCE_OPS;
	want = want < 0.01 ? 0.01 : (want > 20 ? 20 : want);
	assert_true(fabs(m - want) <= 1e-9 * want);
	/* with a day's duration the multiplier would have been the floor */
	assert_true(m > 0.01);
	printf("# claimed 86400000 ms; coordinator measured %lld ms (client saw %.0f ms); "
	    "multiplier %.4f\n", (long long)elapsed, t1 - t0, m);
	json_decref(out);
	n = get_node(&coord, node.id);
	assert_true(json_is_true(json_object_get(n, "verified")));
	json_decref(n);
	run_free(&w);
}

static void test_rate_limited(void **state)
{
	troop_identity node;
	struct run w;
	int st = 0;
	json_t *out;

	(void)state;
	new_node(&coord, &node);
	get_challenge(&w, &coord, &node);
	out = post(&coord, &node, "/hardware/challenge", json_pack("{s:s}", "class", "cpu"), &st);
	expect_error(out, st, 429, "rate_limited", "per node");
	json_decref(out);
	run_free(&w);
}

static void test_bad_requests(void **state)
{
	troop_identity node, stranger;
	struct run w;
	int st = 0;
	json_t *out;

	(void)state;
	/* a node that never heartbeated */
	identity_generate(&stranger);
	out = post(&coord, &stranger, "/hardware/challenge", json_object(), &st);
	expect_error(out, st, 404, "not_found", "heartbeat");
	json_decref(out);

	/* unsigned */
	{
		char url[256];
		snprintf(url, sizeof(url), "%s/hardware/challenge", coord.url);
		assert_int_equal(http_request_json(http, &st, &out, "POST", url, NULL, NULL), 0);
		expect_error(out, st, 401, "bad_signature", NULL);
		json_decref(out);
	}

	new_node(&coord, &node);
	out = post(&coord, &node, "/hardware/challenge", json_pack("{s:s}", "class", "tpu"), &st);
	expect_error(out, st, 400, "bad_request", "class");
	json_decref(out);

	/* an unknown challenge id, a malformed root, a reveal before verify */
	out = post(&coord, &node, "/hardware/verify", json_pack("{s:s, s:s}", "challenge_id",
	    "nope", "merkle_root", "AAAA"), &st);
	expect_error(out, st, 400, "bad_request", "merkle_root");
	json_decref(out);
	get_challenge(&w, &coord, &node);
	out = post(&coord, &node, "/hardware/reveal", json_pack("{s:s, s:[]}", "challenge_id",
	    w.id, "rows"), &st);
	expect_error(out, st, 404, "not_found", "verify first");
	json_decref(out);
	{
		char root[64];
		uint8_t zero[POH_HASH_LEN] = { 0 };
		b64_encode(root, sizeof(root), zero, sizeof(zero));
		out = post(&coord, &node, "/hardware/verify", json_pack("{s:s, s:s}",
		    "challenge_id", "no-such-challenge", "merkle_root", root), &st);
		expect_error(out, st, 404, "not_found", "no challenge");
		json_decref(out);
	}
	run_free(&w);
}

static int setup(void **state)
{
	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	start(&coord, "coord", "30", "64");
	/* one round: even a sanitizer build answers well inside the 1 s */
	start(&coord_short, "coord-short", "1", "1");
	if (http_client_new(&http) != 0)
		return -1;
	http_client_set_limits(http, 30000, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_client_free(http);
	harness_stop_all();
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_honest_cpu_worker),
		cmocka_unit_test(test_half_junk_never_passes),
		cmocka_unit_test(test_one_junk_row_asked_is_caught),
		cmocka_unit_test(test_replay_rejected),
		cmocka_unit_test(test_expired_rejected),
		cmocka_unit_test(test_rows_not_asked_rejected),
		cmocka_unit_test(test_claimed_duration_ignored),
		cmocka_unit_test(test_rate_limited),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_unrecorded_proof_not_verified),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
