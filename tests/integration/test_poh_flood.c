/*
 * test_poh_flood.c - issue 16 item 2 against a real coordinator: 20 fake
 * provers (fresh node keys, a Merkle root over junk rows, a reveal with
 * valid paths, so that the coordinator must recompute the rows before it
 * rejects them) attack while /health and /authorize are timed; their p99
 * must stay well under a second (the figures are printed).  The fake
 * proofs are rejected (403) or, when the check queue is full, answered
 * 429 with Retry-After.  Then the challenge limits that fresh keys cannot
 * dodge: a node that has not heartbeated long enough, too many challenges
 * from one address, too many for one owner account.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <curl/curl.h>

#include "encoding.h"
#include "harness.h"
#include "httpsig.h"
#include "identity.h"
#include "json.h"
#include "poh.h"

#define N 2048
#define ROUNDS 32
#define ATTACKERS 20
#define MEASURE_MS 5000
#define HEALTH_P99_MAX_MS 250.0
#define AUTHORIZE_P99_MAX_MS 500.0

static char tmp[256];
static harness_proc coord;     /* the flood target: limits per address/owner off */
static harness_proc strict;    /* the challenge limits on */
static troop_identity user, good_node;

/* ---- one signed request, with the Retry-After header -------------------------- */

struct reply {
	int status;
	char retry_after[32];
	char *body;
	size_t len;
};

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = size * n;

	if (len > 12 && strncasecmp(buf, "Retry-After:", 12) == 0) {
		size_t k = 0;
		for (size_t i = 12; i < len && k < sizeof(r->retry_after) - 1; i++)
			if (buf[i] >= '0' && buf[i] <= '9')
				r->retry_after[k++] = buf[i];
		r->retry_after[k] = '\0';
	}
	return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = size * n;
	char *b = realloc(r->body, r->len + len + 1);

	if (!b)
		return 0;
	memcpy(b + r->len, buf, len);
	r->body = b;
	r->len += len;
	r->body[r->len] = '\0';
	return len;
}

static void reply_free(struct reply *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Signed POST (body stolen); or a plain GET when id is NULL. */
static int request(struct reply *out, const harness_proc *p, const troop_identity *id,
    const char *path, json_t *body)
{
	char url[300], h_dig[400], h_in[600], h_sig[300];
	struct curl_slist *hl = NULL;
	char *text = NULL;
	httpsig_headers sig;
	CURL *c = curl_easy_init();
	CURLcode cc;

	memset(out, 0, sizeof(*out));
	snprintf(url, sizeof(url), "%s%s", p->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 240000L);  /* a queued check, sanitizer build */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (id) {
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		assert_int_equal(httpsig_sign(&sig, id, "POST", path, "", text, strlen(text),
		    (int64_t)time(NULL)), 0);
		snprintf(h_dig, sizeof(h_dig), "Content-Digest: %s", sig.content_digest);
		snprintf(h_in, sizeof(h_in), "Signature-Input: %s", sig.signature_input);
		snprintf(h_sig, sizeof(h_sig), "Signature: %s", sig.signature);
		hl = curl_slist_append(hl, h_dig);
		hl = curl_slist_append(hl, h_in);
		hl = curl_slist_append(hl, h_sig);
		hl = curl_slist_append(hl, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
	}
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK) {
		long st = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
		out->status = (int)st;
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	free(text);
	return cc == CURLE_OK ? 0 : -1;
}

static json_t *reply_json(const struct reply *r)
{
	return r->body ? json_loads(r->body, 0, NULL) : NULL;
}

static bool reply_says(const struct reply *r, const char *needle)
{
	return r->body && strstr(r->body, needle);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Signed heartbeat; returns the status (0: no answer).  No cmocka
 * assertion: the attackers call it from their own threads. */
static int heartbeat_status(const harness_proc *p, const troop_identity *node,
    const char *owner, const char *ip)
{
	struct reply r;
	json_t *b = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "name", "flood", "tailscale_ip", ip, "port", 8421,
	    "status", "IDLE", "models", "name", "flood-model",
	    "load", "active_jobs", 0, "max_jobs", 100000);

	int st;

	if (owner)
		json_object_set_new(b, "owner", json_string(owner));
	if (request(&r, p, node, "/heartbeat", b) != 0)
		r.status = 0;
	if (r.status != 200)
		fprintf(stderr, "heartbeat: %d %s\n", r.status, r.body ? r.body : "");
	st = r.status;
	reply_free(&r);
	return st;
}

static void heartbeat(const harness_proc *p, const troop_identity *node, const char *owner,
    const char *ip)
{
	assert_int_equal(heartbeat_status(p, node, owner, ip), 200);
}

/* ---- the fake prover ----------------------------------------------------------- */

static atomic_bool stop;
static atomic_int reveals, rejected, busy, busy_without_retry, other;

/* A failed step of an attacker (its own thread: no cmocka assertion). */
static void attacker_error(const char *what, const struct reply *r)
{
	fprintf(stderr, "attacker: %s: %d %s\n", what, r ? r->status : 0,
	    r && r->body ? r->body : "");
	atomic_fetch_add(&other, 1);
}

/* One fake proof by a fresh node: junk rows, honest Merkle paths. */
static void fake_proof(int who)
{
	troop_identity node;
	char ip[32], cid[80], root[64];
	uint8_t seed[POH_SEED_LEN], path[POH_PATH_MAX * POH_HASH_LEN];
	uint32_t asked[POH_K_MAX];
	size_t n = 0, k = 0, len = 0;
	int8_t *rows = NULL;
	poh_tree *tree = NULL;
	struct reply r;
	json_t *j, *v, *jrows;
	const char *sd;
	size_t i;

	memset(&r, 0, sizeof(r));
	identity_generate(&node);
	snprintf(ip, sizeof(ip), "100.64.%d.%d", who + 1, (int)randombytes_uniform(250) + 1);
	if (heartbeat_status(&coord, &node, NULL, ip) != 200)
		goto fail;
	harness_sleep_ms(1100);                     /* --poh-min-node-age 1 */
	if (heartbeat_status(&coord, &node, NULL, ip) != 200)
		goto fail;
	if (request(&r, &coord, &node, "/hardware/challenge",
	    json_pack("{s:s}", "class", "gpu")) != 0 || r.status != 200) {
		attacker_error("challenge", &r);
		goto out;
	}
	j = reply_json(&r);
	snprintf(cid, sizeof(cid), "%s", json_string_value(json_object_get(j, "challenge_id")) ?: "");
	n = (size_t)json_integer_value(json_object_get(j, "matrix_size"));
	sd = json_string_value(json_object_get(j, "seed"));
	if (!sd || b64url_decode(seed, sizeof(seed), &len, sd, strlen(sd)) != 0 || n != N) {
		json_decref(j);
		attacker_error("challenge reply", &r);
		goto out;
	}
	json_decref(j);
	reply_free(&r);

	/* junk, not computed: the whole cost is on the coordinator's side */
	rows = malloc(n * n);
	if (!rows)
		goto fail;
	randombytes_buf(rows, n * n);
	if (poh_tree_build(&tree, rows, n, n, 1) != 0)
		goto fail;
	b64_encode(root, sizeof(root), poh_tree_root(tree), POH_HASH_LEN);
	if (request(&r, &coord, &node, "/hardware/verify",
	    json_pack("{s:s, s:s}", "challenge_id", cid, "merkle_root", root)) != 0 ||
	    r.status != 200) {
		attacker_error("verify", &r);
		goto out;
	}
	j = reply_json(&r);
	json_array_foreach(json_object_get(j, "indices"), i, v)
		if (k < POH_K_MAX)
			asked[k++] = (uint32_t)json_integer_value(v);
	json_decref(j);
	reply_free(&r);

	jrows = json_array();
	for (i = 0; i < k; i++) {
		json_t *jp = json_array();
		size_t plen = 0;
		char *text = malloc(b64_len(n) + 1);
		if (!text || poh_tree_path(path, POH_PATH_MAX, &plen, tree, asked[i]) != 0) {
			free(text);
			json_decref(jp);
			json_decref(jrows);
			goto fail;
		}
		for (size_t h = 0; h < plen; h++) {
			char hb[64];
			b64_encode(hb, sizeof(hb), path + h * POH_HASH_LEN, POH_HASH_LEN);
			json_array_append_new(jp, json_string(hb));
		}
		b64_encode(text, b64_len(n) + 1, rows + (size_t)asked[i] * n, n);
		json_array_append_new(jrows, json_pack("{s:i, s:s, s:o}", "index", (int)asked[i],
		    "row", text, "path", jp));
		free(text);
	}
	atomic_fetch_add(&reveals, 1);
	if (request(&r, &coord, &node, "/hardware/reveal",
	    json_pack("{s:s, s:o}", "challenge_id", cid, "rows", jrows)) != 0) {
		attacker_error("reveal", &r);
	} else if (r.status == 403 && reply_says(&r, "proof rejected")) {
		atomic_fetch_add(&rejected, 1);
	} else if (r.status == 429) {
		atomic_fetch_add(&busy, 1);
		if (atoi(r.retry_after) < 1)
			atomic_fetch_add(&busy_without_retry, 1);
	} else {
		attacker_error("reveal", &r);
	}
	goto out;
fail:
	attacker_error("local step", NULL);
out:
	reply_free(&r);
	poh_tree_free(tree);
	free(rows);
	identity_wipe(&node);
}

static void *attacker_main(void *arg)
{
	int who = (int)(intptr_t)arg;

	while (!atomic_load(&stop))
		fake_proof(who);
	return NULL;
}

/* ---- the measurement -------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double p99(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(size_t)((double)(n - 1) * 0.99)];
}

static void test_fake_provers_do_not_stall(void **state)
{
	pthread_t th[ATTACKERS];
	static double health[20000], authz[20000];
	size_t nh = 0, na = 0;
	double t_end, hp, ap, hmax = 0, amax = 0;

	(void)state;
	heartbeat(&coord, &good_node, NULL, "100.64.200.1");
	for (int i = 0; i < ATTACKERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, attacker_main, (void *)(intptr_t)i), 0);
	/* wait until the fake reveals are coming in */
	for (int i = 0; i < 600 && atomic_load(&reveals) < ATTACKERS / 2; i++)
		harness_sleep_ms(50);
	assert_true(atomic_load(&reveals) >= ATTACKERS / 2);

	t_end = now_ms() + MEASURE_MS;
	while (now_ms() < t_end && nh < 20000) {
		struct reply r;
		double t0 = now_ms();

		assert_int_equal(request(&r, &coord, NULL, "/health", NULL), 0);
		assert_int_equal(r.status, 200);
		health[nh++] = now_ms() - t0;
		reply_free(&r);

		t0 = now_ms();
		assert_int_equal(request(&r, &coord, &user, "/authorize",
		    json_pack("{s:s}", "model", "flood-model")), 0);
		if (r.status != 200)
			fprintf(stderr, "authorize: %d %s\n", r.status, r.body);
		assert_int_equal(r.status, 200);
		authz[na++] = now_ms() - t0;
		reply_free(&r);
		if (na % 50 == 0)
			heartbeat(&coord, &good_node, NULL, "100.64.200.1");
	}
	atomic_store(&stop, true);
	for (int i = 0; i < ATTACKERS; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < nh; i++)
		hmax = health[i] > hmax ? health[i] : hmax;
	for (size_t i = 0; i < na; i++)
		amax = authz[i] > amax ? authz[i] : amax;
	hp = p99(health, nh);
	ap = p99(authz, na);
	fprintf(stderr, "under %d fake provers (%d reveals: %d rejected, %d answered 429): "
	    "/health n=%zu p99=%.1f ms max=%.1f ms; /authorize n=%zu p99=%.1f ms max=%.1f ms\n",
	    ATTACKERS, atomic_load(&reveals), atomic_load(&rejected), atomic_load(&busy), nh, hp,
	    hmax, na, ap, amax);
	assert_int_equal(atomic_load(&other), 0);
	assert_true(atomic_load(&rejected) >= 1);       /* checked, and caught */
	assert_true(atomic_load(&busy) >= 1);           /* the queue is bounded */
	assert_int_equal(atomic_load(&busy_without_retry), 0);
	assert_true(hp < HEALTH_P99_MAX_MS);
	assert_true(ap < AUTHORIZE_P99_MAX_MS);
	/* the rejections reached the ledger: the coordinator logged them */
	assert_true(harness_log_contains(&coord, "poh_rejected"));
}

/* ---- the challenge limits ------------------------------------------------------------ */

static int challenge(const troop_identity *node, struct reply *r)
{
	assert_int_equal(request(r, &strict, node, "/hardware/challenge",
	    json_pack("{s:s}", "class", "cpu")), 0);
	return r->status;
}

static void test_challenge_limits(void **state)
{
	troop_identity young, owned[3], loose[2], owner;
	struct reply r;

	(void)state;
	identity_generate(&owner);
	/* a node must heartbeat for a while (--poh-min-node-age 2) */
	identity_generate(&young);
	heartbeat(&strict, &young, NULL, "100.64.1.1");
	assert_int_equal(challenge(&young, &r), 429);
	assert_true(atoi(r.retry_after) >= 1);
	assert_true(reply_says(&r, "heartbeat for"));
	reply_free(&r);
	for (int i = 0; i < 3; i++) {
		identity_generate(&owned[i]);
		heartbeat(&strict, &owned[i], owner.id, "100.64.1.2");
	}
	for (int i = 0; i < 2; i++) {
		identity_generate(&loose[i]);
		heartbeat(&strict, &loose[i], NULL, "100.64.1.3");
	}
	harness_sleep_ms(2200);
	heartbeat(&strict, &young, NULL, "100.64.1.1");
	for (int i = 0; i < 3; i++)
		heartbeat(&strict, &owned[i], owner.id, "100.64.1.2");
	for (int i = 0; i < 2; i++)
		heartbeat(&strict, &loose[i], NULL, "100.64.1.3");
	assert_int_equal(challenge(&young, &r), 200);                 /* address: 1 of 4 */
	reply_free(&r);
	/* --poh-owner-limit 2: the owner's third node is refused */
	assert_int_equal(challenge(&owned[0], &r), 200);              /* 2 */
	reply_free(&r);
	assert_int_equal(challenge(&owned[1], &r), 200);              /* 3 */
	reply_free(&r);
	assert_int_equal(challenge(&owned[2], &r), 429);              /* 4, owner 3 > 2 */
	assert_true(reply_says(&r, "one owner"));
	assert_true(atoi(r.retry_after) >= 1);
	reply_free(&r);
	/* --poh-address-limit 4: the fifth from this address is refused */
	assert_int_equal(challenge(&loose[0], &r), 429);              /* 5 > 4 */
	assert_true(reply_says(&r, "one address"));
	assert_true(atoi(r.retry_after) >= 1);
	reply_free(&r);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int start(harness_proc *p, const char *name, const char *const *extra)
{
	char data[300];
	const char *args[48] = { "--threads", "2", "--allow-unverified",
	    "--starter-credits", "1000000000", "--reserve-seconds", "1",
	    "--poh-matrix-size", "2048", "--poh-rounds", "32", "--poh-samples", "16",
	    "--poh-cpu-matrix-size", "64", "--poh-cpu-rounds", "8",
	    "--poh-rate-limit", "600",
	    /* /authorize as fast as it answers, tickets never used */
	    "--max-tickets", "1000000", "--max-jobs-other", "0" };
	int argc = 0;

	while (args[argc])
		argc++;
	for (int i = 0; extra[i] && argc < 47; i++)
		args[argc++] = extra[i];
	args[argc] = NULL;
	snprintf(data, sizeof(data), "%s/%s", tmp, name);
	return harness_start_coordinator(p, data, args);
}

static int setup(void **state)
{
	static const char *const flood[] = { "--poh-min-node-age", "1",
		"--poh-address-limit", "0", "--poh-owner-limit", "0",
		"--poh-check-workers", "1", "--poh-check-queue", "2", NULL };
	static const char *const limits[] = { "--poh-min-node-age", "2",
		"--poh-address-limit", "4", "--poh-owner-limit", "2", NULL };

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	identity_generate(&user);
	identity_generate(&good_node);
	if (start(&coord, "coord", flood) != 0 || start(&strict, "strict", limits) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	int st, rc = 0;

	(void)state;
	st = harness_stop(&coord, SIGTERM);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		harness_dump_log(&coord);
		rc = -1;
	}
	st = harness_stop(&strict, SIGTERM);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		harness_dump_log(&strict);
		rc = -1;
	}
	curl_global_cleanup();
	return rc;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_challenge_limits),
		cmocka_unit_test(test_fake_provers_do_not_stall),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
