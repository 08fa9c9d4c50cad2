/*
 * test_registry.c - the in-process registry: node records and the model
 * index (by name and by content hash, following model changes), TTL
 * expiry and OFFLINE removal, listing every node page by page, 100k
 * nodes over 1000 models, aggregated
 * models, active job counts, nonce replay window, rate limits, key/value
 * TTLs and one-shot takes, and a multi-threaded smoke test.
 *
 * With TROOP_TEST_REGISTRY_URL=redis://... (tests/integration/
 * test_pg_backends.sh sets it) the same tests run on Redis instead, each
 * registry under a key prefix of its own.
 */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "httpsig.h"
#include "registry.h"

#define NOW 1764000000
#define TTL 30

/* registry_nonce_check must plug straight into httpsig_verify */
static const httpsig_nonce_fn nonce_fn_check = registry_nonce_check;

/* The backend under test: TROOP_TEST_REGISTRY_URL, or NULL (memory). */
static const char *test_url(void)
{
	const char *u = getenv("TROOP_TEST_REGISTRY_URL");
	return (u != NULL && *u != '\0') ? u : NULL;
}

static const char *backend_expected(void)
{
	return test_url() ? "redis" : "memory";
}

/* Open the registry under test; on Redis with a key prefix no other test
 * (or run) uses, so every test starts empty. */
static int open_reg(registry **out, const registry_opts *o)
{
	static int seq;
	const char *base = test_url();
	if (base == NULL)
		return registry_open(out, NULL, o);
	char url[1200];
	snprintf(url, sizeof url, "%s%cprefix=t%ld-%d-%d:", base, strchr(base, '?') ? '&' : '?',
	    (long)getpid(), (int)time(NULL) % 100000, ++seq);
	int rc = registry_open(out, url, o);
	if (rc != 0)
		fprintf(stderr, "registry_open %s: %s\n", url, troop_error_msg());
	return rc;
}

static int setup(void **state)
{
	registry *r = NULL;
	if (open_reg(&r, NULL) != 0)
		return -1;
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	registry_close(*state);
	return 0;
}

static void make_node(registry_node *n, registry_model *models, const char *id, size_t nm,
    const char *const *names, const char *const *hashes)
{
	memset(n, 0, sizeof *n);
	snprintf(n->node_id, sizeof n->node_id, "%s", id);
	snprintf(n->name, sizeof n->name, "box-%s", id);
	snprintf(n->ip, sizeof n->ip, "100.64.0.1");
	n->port = 8421;
	n->status = NODE_IDLE;
	n->max_jobs = 4;
	snprintf(n->encryption_public_key, sizeof n->encryption_public_key, "pk-%s", id);
	snprintf(n->seal_key, sizeof n->seal_key, "seal-%s", id);
	snprintf(n->owner, sizeof n->owner, "owner-%s", id);
	snprintf(n->version, sizeof n->version, "troop/0.1.0");
	for (size_t i = 0; i < nm; i++) {
		memset(&models[i], 0, sizeof models[i]);
		snprintf(models[i].name, sizeof models[i].name, "%s", names[i]);
		snprintf(models[i].content_hash, sizeof models[i].content_hash, "%s",
		    hashes ? hashes[i] : "");
		snprintf(models[i].engine, sizeof models[i].engine, "ollama");
		models[i].size_bytes = 1000 + (int64_t)i;
	}
	n->models = nm ? models : NULL;
	n->n_models = nm;
}

static size_t find_count(registry *r, const char *model, int64_t now)
{
	registry_node *out = NULL;
	size_t n = 0;
	assert_int_equal(registry_find_nodes(&out, &n, r, model, now, 1000000, 0), 0);
	registry_nodes_free(out, n);
	return n;
}

/* ---- nodes ---------------------------------------------------------------- */

static void test_put_get(void **state)
{
	registry *r = *state;
	registry_node n, got;
	registry_model models[2];
	const char *names[] = { "llama3:8b", "qwen2:7b" };
	const char *hashes[] = { "sha256:aaa", "sha256:bbb" };
	make_node(&n, models, "node-a", 2, names, hashes);
	n.extra_json = "{\"hardware\":{\"gpu\":\"RTX 4090\"}}";
	n.active_jobs = 1;
	n.last_seen = 5;     /* ignored: set by put */
	n.expires_at = 5;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);

	assert_int_equal(registry_get_node(&got, r, "node-a", NOW, REGISTRY_WITH_ALL), 0);
	assert_string_equal(got.node_id, "node-a");
	assert_string_equal(got.name, "box-node-a");
	assert_string_equal(got.ip, "100.64.0.1");
	assert_int_equal(got.port, 8421);
	assert_int_equal(got.status, NODE_IDLE);
	assert_int_equal(got.active_jobs, 1);
	assert_int_equal(got.max_jobs, 4);
	assert_string_equal(got.encryption_public_key, "pk-node-a");
	assert_string_equal(got.seal_key, "seal-node-a");
	assert_string_equal(got.owner, "owner-node-a");
	assert_string_equal(got.version, "troop/0.1.0");
	assert_int_equal(got.last_seen, NOW);
	assert_int_equal(got.expires_at, NOW + TTL);
	assert_int_equal(got.n_models, 2);
	assert_string_equal(got.models[1].name, "qwen2:7b");
	assert_string_equal(got.models[1].content_hash, "sha256:bbb");
	assert_string_equal(got.models[1].engine, "ollama");
	assert_int_equal(got.models[1].size_bytes, 1001);
	assert_string_equal(got.extra_json, n.extra_json);
	registry_node_clear(&got);
	assert_null(got.models);

	/* fixed fields only */
	assert_int_equal(registry_get_node(&got, r, "node-a", NOW, 0), 0);
	assert_null(got.models);
	assert_int_equal(got.n_models, 0);
	assert_null(got.extra_json);
	registry_node_clear(&got);

	assert_int_equal(registry_get_node(&got, r, "node-b", NOW, 0), TROOP_ENOTFOUND);
	assert_string_equal(registry_backend_name(r), backend_expected());
}

static void test_find_by_name_and_hash(void **state)
{
	registry *r = *state;
	registry_node n;
	registry_model models[3];
	const char *n1[] = { "llama3:8b", "qwen2:7b" };
	const char *h1[] = { "sha256:aaa", "sha256:bbb" };
	const char *n2[] = { "llama3:8b" };
	const char *h2[] = { "sha256:aaa" };
	const char *n3[] = { "mistral", "mistral:latest", "phi3" };  /* aliases: one hash */
	const char *h3[] = { "sha256:ccc", "sha256:ccc", "" };
	make_node(&n, models, "node-1", 2, n1, h1);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "node-2", 1, n2, h2);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "node-3", 3, n3, h3);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);

	assert_int_equal(find_count(r, "llama3:8b", NOW), 2);
	assert_int_equal(find_count(r, "sha256:aaa", NOW), 2);
	assert_int_equal(find_count(r, "qwen2:7b", NOW), 1);
	assert_int_equal(find_count(r, "sha256:bbb", NOW), 1);
	assert_int_equal(find_count(r, "sha256:ccc", NOW), 1);  /* once, not twice */
	assert_int_equal(find_count(r, "mistral:latest", NOW), 1);
	assert_int_equal(find_count(r, "phi3", NOW), 1);
	assert_int_equal(find_count(r, "gpt-5", NOW), 0);
	assert_int_equal(find_count(r, NULL, NOW), 3);
	assert_int_equal(find_count(r, "", NOW), 3);

	registry_node *out = NULL;
	size_t k = 0;
	assert_int_equal(registry_find_nodes(&out, &k, r, "qwen2:7b", NOW, 10,
	    REGISTRY_WITH_MODELS), 0);
	assert_int_equal(k, 1);
	assert_string_equal(out[0].node_id, "node-1");
	assert_int_equal(out[0].n_models, 2);
	registry_nodes_free(out, k);

	/* max caps the answer */
	assert_int_equal(registry_find_nodes(&out, &k, r, "llama3:8b", NOW, 1, 0), 0);
	assert_int_equal(k, 1);
	registry_nodes_free(out, k);
	assert_int_equal(registry_find_nodes(&out, &k, r, "llama3:8b", NOW, 0, 0), TROOP_EINVAL);
}

static void test_index_follows_model_changes(void **state)
{
	registry *r = *state;
	registry_node n;
	registry_model models[2];
	const char *before[] = { "llama3:8b", "qwen2:7b" };
	const char *hb[] = { "sha256:aaa", "sha256:bbb" };
	const char *after[] = { "phi3" };
	const char *ha[] = { "sha256:ddd" };
	make_node(&n, models, "node-1", 2, before, hb);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "node-2", 1, before, hb);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	assert_int_equal(find_count(r, "llama3:8b", NOW), 2);

	make_node(&n, models, "node-1", 1, after, ha);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 5), 0);
	assert_int_equal(find_count(r, "llama3:8b", NOW + 5), 1);
	assert_int_equal(find_count(r, "sha256:aaa", NOW + 5), 1);
	assert_int_equal(find_count(r, "qwen2:7b", NOW + 5), 0);
	assert_int_equal(find_count(r, "sha256:bbb", NOW + 5), 0);
	assert_int_equal(find_count(r, "phi3", NOW + 5), 1);
	assert_int_equal(find_count(r, "sha256:ddd", NOW + 5), 1);

	/* no models at all */
	make_node(&n, models, "node-1", 0, NULL, NULL);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 6), 0);
	assert_int_equal(find_count(r, "phi3", NOW + 6), 0);
	assert_int_equal(find_count(r, NULL, NOW + 6), 2);

	registry_model_info *mi = NULL;
	size_t k = 0;
	assert_int_equal(registry_models(&mi, &k, r, NOW + 6), 0);
	assert_int_equal(k, 1);
	assert_string_equal(mi[0].name, "llama3:8b");
	free(mi);
}

/* The live count (what /metrics reports) against the expiries put: nodes
 * with 50 different lifetimes, counted at each second until all expired,
 * and again after some heartbeat anew (their expiry moves on). */
static void test_count_follows_expiry(void **state)
{
	registry *r = *state;
	registry_node n;
	registry_model models[1];
	const char *names[] = { "llama3:8b" };
	char id[32];
	size_t live = 0;

	for (int i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "node-%d", i);
		make_node(&n, models, id, 1, names, NULL);
		assert_int_equal(registry_put_node(r, &n, 1 + i % 50, NOW), 0);
	}
	for (int t = 0; t <= 51; t++) {
		size_t want = 0;
		for (int i = 0; i < 2000; i++)
			want += 1 + i % 50 > t;
		assert_int_equal(registry_count_nodes(&live, r, NOW + t), 0);
		assert_int_equal(live, want);
	}
	/* a third heartbeat at NOW + 10 for 100 s more */
	for (int i = 0; i < 2000; i += 3) {
		snprintf(id, sizeof(id), "node-%d", i);
		make_node(&n, models, id, 1, names, NULL);
		assert_int_equal(registry_put_node(r, &n, 100, NOW + 10), 0);
	}
	for (int t = 10; t <= 111; t++) {
		size_t want = 0;
		for (int i = 0; i < 2000; i++)
			want += i % 3 == 0 ? 110 > t : 1 + i % 50 > t;
		assert_int_equal(registry_count_nodes(&live, r, NOW + t), 0);
		assert_int_equal(live, want);
	}
}

static void test_ttl_and_offline(void **state)
{
	registry *r = *state;
	registry_node n, got;
	registry_model models[1];
	const char *names[] = { "llama3:8b" };
	make_node(&n, models, "node-1", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "node-2", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, 60, NOW), 0);

	size_t live = 0, removed = 0;
	assert_int_equal(registry_count_nodes(&live, r, NOW + TTL - 1), 0);
	assert_int_equal(live, 2);
	assert_int_equal(registry_get_node(&got, r, "node-1", NOW + TTL - 1, 0), 0);
	registry_node_clear(&got);
	/* live while now < put time + ttl */
	assert_int_equal(registry_get_node(&got, r, "node-1", NOW + TTL, 0), TROOP_ENOTFOUND);
	assert_int_equal(find_count(r, "llama3:8b", NOW + TTL), 1);
	assert_int_equal(find_count(r, NULL, NOW + TTL), 1);
	assert_int_equal(registry_count_nodes(&live, r, NOW + TTL), 0);
	assert_int_equal(live, 1);
	assert_int_equal(registry_add_active_job(r, "node-1", 1), 0);  /* still stored */
	assert_int_equal(registry_sweep(&removed, r, NOW + TTL), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(registry_add_active_job(r, "node-1", 1), TROOP_ENOTFOUND);

	/* a heartbeat extends the life */
	make_node(&n, models, "node-2", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, 60, NOW + 50), 0);
	assert_int_equal(find_count(r, "llama3:8b", NOW + 100), 1);

	/* OFFLINE: gone at once, and again is not an error */
	n.status = NODE_OFFLINE;
	assert_int_equal(registry_put_node(r, &n, 60, NOW + 51), 0);
	assert_int_equal(find_count(r, "llama3:8b", NOW + 51), 0);
	assert_int_equal(registry_get_node(&got, r, "node-2", NOW + 51, 0), TROOP_ENOTFOUND);
	assert_int_equal(registry_put_node(r, &n, 60, NOW + 52), 0);
	assert_int_equal(registry_remove_node(r, "node-2"), TROOP_ENOTFOUND);

	/* a put also drops expired nodes on its way */
	make_node(&n, models, "node-3", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, 10, NOW), 0);
	make_node(&n, models, "node-4", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, 10, NOW + 100), 0);
	assert_int_equal(registry_sweep(&removed, r, NOW + 100), 0);
	assert_int_equal(removed, 0);
}

static void test_remove_node(void **state)
{
	registry *r = *state;
	registry_node n;
	registry_model models[1];
	const char *names[] = { "llama3:8b" };
	const char *hashes[] = { "sha256:aaa" };
	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof id, "node-%d", i);
		make_node(&n, models, id, 1, names, hashes);
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	}
	/* removing from the middle of an index bucket keeps the others */
	assert_int_equal(registry_remove_node(r, "node-1"), 0);
	assert_int_equal(registry_remove_node(r, "node-3"), 0);
	registry_node *out = NULL;
	size_t k = 0;
	assert_int_equal(registry_find_nodes(&out, &k, r, "sha256:aaa", NOW, 100, 0), 0);
	assert_int_equal(k, 3);
	bool seen[5] = { false };
	for (size_t i = 0; i < k; i++) {
		int idx = out[i].node_id[5] - '0';
		assert_true(idx >= 0 && idx < 5);
		assert_false(seen[idx]);
		seen[idx] = true;
	}
	assert_true(seen[0] && seen[2] && seen[4]);
	registry_nodes_free(out, k);
}

#define BIG_NODES 100000
#define BIG_MODELS 1000

static void big_models_of(int i, int *a, int *b)
{
	*a = i % BIG_MODELS;
	*b = (i / 7 + 13 * i + 3) % BIG_MODELS;
}

static void test_100k_nodes(void **state)
{
	registry *r = *state;
	registry_node n;
	registry_model models[2];
	/* Redis drops a record its own TTL after the put, in real time;
	 * putting 100k nodes on a loaded machine can take longer than TTL */
	const int64_t ttl = 3600;
	for (int i = 0; i < BIG_NODES; i++) {
		char id[32], n0[32], n1[32], h0[32], h1[32];
		int a, b;
		big_models_of(i, &a, &b);
		snprintf(id, sizeof id, "node-%06d", i);
		snprintf(n0, sizeof n0, "model-%03d", a);
		snprintf(n1, sizeof n1, "model-%03d", b);
		snprintf(h0, sizeof h0, "sha256:%03d", a);
		snprintf(h1, sizeof h1, "sha256:%03d", b);
		const char *names[] = { n0, n1 };
		const char *hashes[] = { h0, h1 };
		make_node(&n, models, id, a == b ? 1 : 2, names, hashes);
		assert_int_equal(registry_put_node(r, &n, ttl, NOW), 0);
	}
	size_t live = 0;
	assert_int_equal(registry_count_nodes(&live, r, NOW), 0);
	assert_int_equal(live, BIG_NODES);

	const int probes[] = { 0, 1, 417, 999 };
	for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
		int want = probes[p];
		size_t expect = 0;
		for (int i = 0; i < BIG_NODES; i++) {
			int a, b;
			big_models_of(i, &a, &b);
			expect += (a == want || b == want);
		}
		char name[32], hash[32];
		snprintf(name, sizeof name, "model-%03d", want);
		snprintf(hash, sizeof hash, "sha256:%03d", want);
		registry_node *out = NULL;
		size_t k = 0;
		assert_int_equal(registry_find_nodes(&out, &k, r, name, NOW, BIG_NODES,
		    REGISTRY_WITH_MODELS), 0);
		assert_int_equal(k, expect);
		for (size_t j = 0; j < k; j++) {
			bool has = false;
			for (size_t m = 0; m < out[j].n_models; m++)
				has |= strcmp(out[j].models[m].name, name) == 0;
			assert_true(has);
		}
		registry_nodes_free(out, k);
		assert_int_equal(find_count(r, hash, NOW), expect);
	}

	registry_model_info *mi = NULL;
	size_t k = 0, total = 0;
	assert_int_equal(registry_models(&mi, &k, r, NOW), 0);
	assert_int_equal(k, BIG_MODELS);
	for (size_t i = 0; i < k; i++) {
		total += mi[i].node_count;
		if (i > 0)
			assert_true(strcmp(mi[i - 1].name, mi[i].name) < 0);
	}
	size_t pairs = 0;
	for (int i = 0; i < BIG_NODES; i++) {
		int a, b;
		big_models_of(i, &a, &b);
		pairs += a == b ? 1 : 2;
	}
	assert_int_equal(total, pairs);
	free(mi);

	/* everything expires together; the sweep empties the index */
	size_t removed = 0;
	assert_int_equal(registry_sweep(&removed, r, NOW + ttl), 0);
	assert_int_equal(removed, BIG_NODES);
	assert_int_equal(find_count(r, "model-000", NOW + ttl), 0);
	assert_int_equal(registry_models(&mi, &k, r, NOW + ttl), 0);
	assert_int_equal(k, 0);
}

static void test_models_aggregate(void **state)
{
	registry *r = *state;
	registry_node n;
	registry_model models[2];
	const char *names[] = { "llama3:8b", "phi3" };
	const char *ha[] = { "sha256:new", "" };
	const char *hb[] = { "sha256:old", "" };
	make_node(&n, models, "node-1", 2, names, ha);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "node-2", 1, names, ha);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "node-3", 1, names, hb);
	assert_int_equal(registry_put_node(r, &n, 5, NOW), 0);

	registry_model_info *mi = NULL;
	size_t k = 0;
	assert_int_equal(registry_models(&mi, &k, r, NOW), 0);
	assert_int_equal(k, 2);
	assert_string_equal(mi[0].name, "llama3:8b");
	assert_int_equal(mi[0].node_count, 3);
	assert_string_equal(mi[0].content_hash, "sha256:new");  /* 2 of 3 */
	assert_int_equal(mi[0].size_bytes, 1000);
	assert_string_equal(mi[1].name, "phi3");
	assert_int_equal(mi[1].node_count, 1);
	assert_string_equal(mi[1].content_hash, "");
	free(mi);

	/* expired nodes do not count */
	assert_int_equal(registry_models(&mi, &k, r, NOW + 5), 0);
	assert_int_equal(k, 2);
	assert_int_equal(mi[0].node_count, 2);
	free(mi);
}

/* Capabilities are kept per node and folded per model name: the largest
 * context, the capabilities and endpoints some live node has; a node
 * that changes or expires stops counting. */
static void test_model_capabilities(void **state)
{
	registry *r = *state;
	registry_node n, got;
	registry_model models[2];
	const char *names[] = { "llama3", "phi3" };
	registry_model_info *mi = NULL;
	size_t k = 0;

	make_node(&n, models, "node-1", 2, names, NULL);
	models[0].context_length = 8192;
	models[0].caps_known = 0x7;        /* tools, vision, embeddings */
	models[0].caps = 0x1;              /* tools */
	models[0].endpoints = 0x7;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "node-2", 1, names, NULL);
	models[0].context_length = 32768;
	models[0].caps_known = 0x2;
	models[0].caps = 0x2;              /* vision */
	models[0].endpoints = 0x9;         /* chat, responses */
	assert_int_equal(registry_put_node(r, &n, 5, NOW), 0);
	make_node(&n, models, "node-3", 1, names, NULL);
	models[0].caps = 0x4;              /* said "embeddings" but did not know: ignored */
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);

	assert_int_equal(registry_get_node(&got, r, "node-2", NOW, REGISTRY_WITH_MODELS), 0);
	assert_int_equal(got.n_models, 1);
	assert_int_equal(got.models[0].context_length, 32768);
	assert_int_equal(got.models[0].caps_known, 0x2);
	assert_int_equal(got.models[0].caps, 0x2);
	assert_int_equal(got.models[0].endpoints, 0x9);
	registry_node_clear(&got);

	assert_int_equal(registry_models(&mi, &k, r, NOW), 0);
	assert_int_equal(k, 2);
	assert_string_equal(mi[0].name, "llama3");
	assert_int_equal(mi[0].context_length, 32768);
	assert_int_equal(mi[0].caps, 0x3);
	assert_int_equal(mi[0].endpoints, 0xf);
	assert_string_equal(mi[1].name, "phi3");
	assert_int_equal(mi[1].context_length, 0);
	assert_int_equal(mi[1].caps, 0);
	assert_int_equal(mi[1].endpoints, 0);
	free(mi);

	/* node-2 expired: its vision and its 32768 go with it */
	assert_int_equal(registry_models(&mi, &k, r, NOW + 5), 0);
	assert_int_equal(mi[0].context_length, 8192);
	assert_int_equal(mi[0].caps, 0x1);
	assert_int_equal(mi[0].endpoints, 0x7);
	free(mi);

	/* node-1 heartbeats again knowing nothing: nothing is left */
	make_node(&n, models, "node-1", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 5), 0);
	assert_int_equal(registry_models(&mi, &k, r, NOW + 5), 0);
	assert_int_equal(mi[0].context_length, 0);
	assert_int_equal(mi[0].caps, 0);
	assert_int_equal(mi[0].endpoints, 0);
	free(mi);

	/* bounded */
	make_node(&n, models, "node-4", 1, names, NULL);
	models[0].context_length = -1;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
	models[0].context_length = REGISTRY_CONTEXT_MAX + 1;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
	models[0].context_length = 0;
	models[0].caps = 0x100;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
}

static void test_active_jobs(void **state)
{
	registry *r = *state;
	registry_node n, got;
	registry_model models[1];
	const char *names[] = { "llama3:8b" };
	make_node(&n, models, "node-1", 1, names, NULL);
	n.active_jobs = 1;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	assert_int_equal(registry_add_active_job(r, "node-1", 1), 0);
	assert_int_equal(registry_add_active_job(r, "node-1", 1), 0);
	assert_int_equal(registry_get_node(&got, r, "node-1", NOW, 0), 0);
	assert_int_equal(got.active_jobs, 3);
	assert_int_equal(registry_add_active_job(r, "node-1", -10), 0);
	assert_int_equal(registry_get_node(&got, r, "node-1", NOW, 0), 0);
	assert_int_equal(got.active_jobs, 0);
	assert_int_equal(registry_add_active_job(r, "node-1", 2), 0);
	/* the next heartbeat's count replaces ours */
	n.active_jobs = 1;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 10), 0);
	assert_int_equal(registry_get_node(&got, r, "node-1", NOW + 10, 0), 0);
	assert_int_equal(got.active_jobs, 1);
	assert_int_equal(registry_add_active_job(r, "node-x", 1), TROOP_ENOTFOUND);
}

static void test_node_facts(void **state)
{
	registry *r = *state;
	registry_node n, got, *found = NULL;
	registry_model models[1];
	const char *names[] = { "llama3:8b" };
	size_t k = 0;
	make_node(&n, models, "node-f", 1, names, NULL);
	n.facts = (registry_facts){ .multiplier = 2.5, .verified = true, .verified_at = NOW - 7,
		.reputation = 0.75, .rep_availability = 1, .rep_reliability = 0.9375,
		.rep_speed = 0.8, .rep_audits = 1, .ttft_ms = 125.5, .tokens_per_s = 42.25,
		.failovers = 3, .served_jobs = 4 };
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW, 0), 0);
	/* the reputation's components and speed (reputation.h) */
	assert_true(got.facts.rep_availability == 1 && got.facts.rep_reliability == 0.9375);
	assert_true(got.facts.rep_speed == 0.8 && got.facts.rep_audits == 1);
	assert_true(got.facts.ttft_ms == 125.5 && got.facts.tokens_per_s == 42.25);
	assert_int_equal(got.facts.failovers, 3);
	assert_int_equal(got.facts.served_jobs, 4);
	assert_true(got.facts.multiplier == 2.5);
	assert_true(got.facts.verified);
	assert_int_equal(got.facts.verified_at, NOW - 7);
	assert_true(got.facts.reputation == 0.75);
	/* node choice reads them from a find without models or extra */
	assert_int_equal(registry_find_nodes(&found, &k, r, "llama3:8b", NOW, 10, 0), 0);
	assert_int_equal(k, 1);
	assert_true(found[0].facts.verified && found[0].facts.multiplier == 2.5);
	registry_nodes_free(found, k);

	/* a proof changes them; the rest of the record stays */
	assert_int_equal(registry_add_active_job(r, "node-f", 2), 0);
	registry_facts f = { .multiplier = 0.125, .verified = false, .verified_at = NOW,
		.reputation = 0.5, .suspect = true, .audits_passed = 3, .audits_failed = 1 };
	assert_int_equal(registry_set_node_facts(r, "node-f", &f, NOW + 1), 0);
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW + 1, REGISTRY_WITH_ALL), 0);
	/* an audit's verdict (audit.c) */
	assert_true(got.facts.suspect);
	assert_int_equal(got.facts.audits_passed, 3);
	assert_int_equal(got.facts.audits_failed, 1);
	assert_true(got.facts.multiplier == 0.125);
	assert_false(got.facts.verified);
	assert_int_equal(got.facts.verified_at, NOW);
	assert_true(got.facts.reputation == 0.5);
	assert_int_equal(got.active_jobs, 2);
	assert_int_equal(got.n_models, 1);
	assert_string_equal(got.owner, "owner-node-f");
	registry_node_clear(&got);
	assert_int_equal(registry_find_nodes(&found, &k, r, NULL, NOW + 1, 10, 0), 0);
	assert_int_equal(k, 1);
	assert_true(found[0].facts.multiplier == 0.125);
	registry_nodes_free(found, k);

	/* the next heartbeat's copy replaces them */
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 2), 0);
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW + 2, 0), 0);
	assert_true(got.facts.multiplier == 2.5 && got.facts.verified);

	/* absent or expired nodes, bad values */
	assert_int_equal(registry_set_node_facts(r, "node-x", &f, NOW), TROOP_ENOTFOUND);
	assert_int_equal(registry_set_node_facts(r, "node-f", &f, NOW + 2 + TTL),
	    TROOP_ENOTFOUND);
	f.multiplier = -1;
	assert_int_equal(registry_set_node_facts(r, "node-f", &f, NOW), TROOP_EINVAL);
	f.multiplier = 1;
	f.reputation = 2;
	assert_int_equal(registry_set_node_facts(r, "node-f", &f, NOW), TROOP_EINVAL);
	f.reputation = 0.5;
	f.rep_speed = 1.5;
	assert_int_equal(registry_set_node_facts(r, "node-f", &f, NOW), TROOP_EINVAL);
	f.rep_speed = 0.5;
	f.served_jobs = -1;
	assert_int_equal(registry_set_node_facts(r, "node-f", &f, NOW), TROOP_EINVAL);
	f.served_jobs = 0;
	n.facts.multiplier = 1e9;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
	assert_int_equal(registry_set_node_facts(r, "node-f", NULL, NOW), TROOP_EINVAL);
}

/* A string of n copies of c in dst (n + 1 bytes). */
static void fill(char *dst, size_t n, char c)
{
	memset(dst, c, n);
	dst[n] = '\0';
}

/* base64url (no padding) of n deterministic bytes into dst. */
static void b64_of(char *dst, size_t cap, size_t n, unsigned seed)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char bin[256];
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		bin[i] = (unsigned char)(seed * 131 + i * 29 + (i >> 3));
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)bin[i] << 16 | (i + 1 < n ? (uint32_t)bin[i + 1] << 8 : 0) |
		    (i + 2 < n ? bin[i + 2] : 0);
		size_t chars = n - i >= 3 ? 4 : n - i + 1;
		for (size_t c = 0; c < chars && k + 1 < cap; c++)
			dst[k++] = a[(v >> (18 - 6 * c)) & 63];
	}
	dst[k] = '\0';
}

static void assert_same_node(const registry_node *got, const registry_node *want)
{
	assert_string_equal(got->node_id, want->node_id);
	assert_string_equal(got->name, want->name);
	assert_string_equal(got->ip, want->ip);
	assert_string_equal(got->encryption_public_key, want->encryption_public_key);
	assert_string_equal(got->seal_key, want->seal_key);
	assert_string_equal(got->owner, want->owner);
	assert_string_equal(got->version, want->version);
	assert_int_equal(got->port, want->port);
	assert_int_equal(got->status, want->status);
	assert_int_equal(got->max_jobs, want->max_jobs);
	assert_int_equal(got->active_jobs, want->active_jobs);
	assert_int_equal(got->n_models, want->n_models);
	for (size_t i = 0; i < want->n_models; i++) {
		const registry_model *a = &got->models[i], *b = &want->models[i];
		assert_string_equal(a->name, b->name);
		assert_string_equal(a->content_hash, b->content_hash);
		assert_string_equal(a->engine, b->engine);
		assert_int_equal(a->size_bytes, b->size_bytes);
		assert_int_equal(a->context_length, b->context_length);
		assert_int_equal(a->caps, b->caps);
		assert_int_equal(a->caps_known, b->caps_known);
		assert_int_equal(a->endpoints, b->endpoints);
	}
	if (want->extra_json == NULL)
		assert_null(got->extra_json);
	else
		assert_string_equal(got->extra_json, want->extra_json);
	const registry_facts *x = &got->facts, *y = &want->facts;
	assert_true(x->multiplier == y->multiplier && x->reputation == y->reputation);
	assert_true(x->rep_availability == y->rep_availability &&
	    x->rep_reliability == y->rep_reliability && x->rep_speed == y->rep_speed &&
	    x->rep_audits == y->rep_audits);
	assert_true(x->ttft_ms == y->ttft_ms && x->tokens_per_s == y->tokens_per_s);
	assert_int_equal(x->verified, y->verified);
	assert_int_equal(x->verified_at, y->verified_at);
	assert_string_equal(x->hw_class, y->hw_class);
	assert_int_equal(x->established, y->established);
	assert_int_equal(x->pending, y->pending);
	assert_int_equal(x->disputes, y->disputes);
	assert_int_equal(x->jobs, y->jobs);
	assert_int_equal(x->suspended, y->suspended);
	assert_int_equal(x->suspect, y->suspect);
	assert_int_equal(x->audits_passed, y->audits_passed);
	assert_int_equal(x->audits_failed, y->audits_failed);
	assert_int_equal(x->failovers, y->failovers);
	assert_int_equal(x->served_jobs, y->served_jobs);
}

/* The memory backend packs records (keys as bytes, IPv4 addresses in 4,
 * an owner that is the node as nothing, facts by their non-zero fields,
 * the heartbeat JSON dictionary-coded): every string at its longest, and
 * strings that look packable but are not, come back byte for byte. */
static void test_packed_roundtrip(void **state)
{
	registry *r = *state;
	static registry_node n[6];
	static registry_model models[6][2];
	static char extra_big[REGISTRY_EXTRA_MAX + 1];
	const char *tok = "{\"hardware\":{\"gpu\":\"NVIDIA GeForce RTX ";
	size_t k = 0, tl = strlen(tok);
	while (k + tl <= REGISTRY_EXTRA_MAX) {
		memcpy(extra_big + k, tok, tl);
		k += tl;
	}
	fill(extra_big + k, REGISTRY_EXTRA_MAX - k, 'z');

	for (int i = 0; i < 6; i++) {
		const char *names[] = { "m" };
		char id[8];
		snprintf(id, sizeof id, "p%d", i);
		make_node(&n[i], models[i], id, 1, names, NULL);
	}
	/* 0: every string at its limit, plain text */
	fill(n[0].node_id, REGISTRY_ID_MAX, 'i');
	fill(n[0].name, REGISTRY_NAME_MAX, 'n');
	fill(n[0].ip, REGISTRY_IP_MAX, 'h');
	fill(n[0].encryption_public_key, REGISTRY_KEY_MAX, '~');
	fill(n[0].seal_key, REGISTRY_SEAL_KEY_MAX, '.');
	fill(n[0].owner, REGISTRY_ID_MAX, 'o');
	fill(n[0].version, REGISTRY_VERSION_MAX, 'v');
	n[0].n_models = 2;
	for (int j = 0; j < 2; j++) {
		registry_model *m = &models[0][j];
		fill(m->name, REGISTRY_MODEL_MAX, (char)('a' + j));
		fill(m->content_hash, REGISTRY_HASH_MAX, 'c');
		fill(m->engine, REGISTRY_ENGINE_MAX, 'e');
		m->size_bytes = INT64_MAX;
		m->context_length = REGISTRY_CONTEXT_MAX;
		m->caps = m->caps_known = m->endpoints = REGISTRY_BITS_MAX;
	}
	n[0].extra_json = extra_big;
	n[0].port = 65535;
	n[0].max_jobs = 100000;
	n[0].active_jobs = 100000;
	n[0].facts = (registry_facts){ .multiplier = 1000, .verified = true,
		.verified_at = INT64_MAX, .reputation = 0.1, .established = true,
		.pending = INT64_MIN, .disputes = INT64_MAX, .jobs = 1, .suspended = true,
		.suspect = true, .audits_passed = -1, .audits_failed = 1LL << 40,
		.rep_availability = 1.0 / 3, .rep_reliability = 1, .rep_speed = 0.5,
		.rep_audits = 1e-300, .ttft_ms = 999999999.875, .tokens_per_s = 3.4e-38,
		.failovers = 129, .served_jobs = 2147483647 };
	fill(n[0].facts.hw_class, REGISTRY_CLASS_MAX, 'g');

	/* 1: canonical base64url keys and statement, an IPv4 address, the
	 * owner the node itself, the heartbeat's usual JSON */
	b64_of(n[1].node_id, sizeof n[1].node_id, 32, 1);
	b64_of(n[1].encryption_public_key, sizeof n[1].encryption_public_key, 32, 2);
	b64_of(n[1].seal_key, sizeof n[1].seal_key, 116, 3);
	assert_int_equal(strlen(n[1].seal_key), 155);
	snprintf(n[1].owner, sizeof n[1].owner, "%s", n[1].node_id);
	snprintf(n[1].ip, sizeof n[1].ip, "100.101.102.103");
	n[1].extra_json = "{\"hardware\":{\"gpu\":\"NVIDIA GeForce RTX 4090\",\"gpu_count\":1,"
	    "\"vram_total\":24564,\"vram_free\":20480,\"gpu_util\":3,\"source\":\"nvml\"},"
	    "\"engines\":[{\"type\":\"ollama\",\"version\":\"0.6.2\",\"port\":11434},"
	    "{\"type\":\"vllm\",\"version\":\"0.8\",\"port\":8000}]}";

	/* 2: almost packable: base64url whose last char has stray bits, an
	 * address with leading zeros, a 48-byte key (64 chars), bytes that
	 * are codes in the JSON dictionary, an empty owner */
	b64_of(n[2].node_id, sizeof n[2].node_id, 32, 4);
	n[2].node_id[42] = 'B';  /* 43 chars encode 32 bytes only if the last has low bits 0 */
	b64_of(n[2].encryption_public_key, sizeof n[2].encryption_public_key, 48, 5);
	assert_int_equal(strlen(n[2].encryption_public_key), 64);
	b64_of(n[2].seal_key, sizeof n[2].seal_key, 120, 6);
	assert_int_equal(strlen(n[2].seal_key), REGISTRY_SEAL_KEY_MAX);
	snprintf(n[2].ip, sizeof n[2].ip, "100.064.001.002");
	n[2].owner[0] = '\0';
	n[2].extra_json = "{\"hardware\":{\"gpu\":\"\x01\x1f\"}}";

	/* 3: IPv6, a name like the node id, empty JSON, all-zero facts */
	snprintf(n[3].ip, sizeof n[3].ip, "fd7a:115c:a1e0::1");
	snprintf(n[3].name, sizeof n[3].name, "%s", n[3].node_id);
	n[3].extra_json = "";
	n[3].facts = (registry_facts){ 0 };

	/* 4: addresses that read as IPv4 but are not written back the same */
	snprintf(n[4].ip, sizeof n[4].ip, "1.2.3");
	n[4].name[0] = '\0';
	snprintf(n[4].encryption_public_key, sizeof n[4].encryption_public_key,
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	/* 5: the same model twice (shared descriptions), then one other */
	n[5].n_models = 2;
	models[5][1] = models[5][0];
	models[5][1].endpoints = 3;

	for (int i = 0; i < 6; i++)
		assert_int_equal(registry_put_node(r, &n[i], TTL, NOW), 0);
	for (int i = 0; i < 6; i++) {
		registry_node got;
		assert_int_equal(registry_get_node(&got, r, n[i].node_id, NOW, REGISTRY_WITH_ALL),
		    0);
		assert_same_node(&got, &n[i]);
		registry_node_clear(&got);
	}
	/* finding by the longest name and hash */
	assert_int_equal(find_count(r, models[0][1].name, NOW), 1);
	assert_int_equal(find_count(r, models[0][0].content_hash, NOW), 1);
	assert_int_equal(find_count(r, "m", NOW), 5);

	/* new facts keep the rest of the packed record */
	registry_facts f = n[0].facts;
	f.pending = 7;
	f.rep_speed = 0.3;
	assert_int_equal(registry_set_node_facts(r, n[0].node_id, &f, NOW), 0);
	n[0].facts = f;
	registry_node got;
	assert_int_equal(registry_get_node(&got, r, n[0].node_id, NOW, REGISTRY_WITH_ALL), 0);
	assert_same_node(&got, &n[0]);
	assert_int_equal(got.expires_at, NOW + TTL);
	registry_node_clear(&got);
	assert_int_equal(find_count(r, models[0][1].name, NOW), 1);
	assert_int_equal(registry_remove_node(r, n[0].node_id), 0);
	assert_int_equal(find_count(r, models[0][1].name, NOW), 0);
}

/* What a heartbeat-like node costs the memory backend, counted by the
 * allocator (glibc's mallinfo2: exact, unlike the resident set): two
 * base64url keys, a 155-char seal key statement, an IPv4 address, one or
 * two of 40 models, the hardware JSON, verified facts.  1,000,000 such
 * nodes must fit in well under 600 MB (1.2 KB each before records were
 * packed). */
static void test_memory_per_node(void **state)
{
	(void)state;
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 33)
	enum { NODES = 20000 };
	if (test_url() != NULL)
		skip();
	registry *r = NULL;
	assert_int_equal(registry_open(&r, NULL, NULL), 0);
	static char names[40][32], hashes[40][80];
	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof names[i], "model-%d:%db", i, 1 + i % 5);
		snprintf(hashes[i], sizeof hashes[i], "sha256:%064x", i * 7919);
	}
	size_t before = mallinfo2().uordblks;
	for (int i = 0; i < NODES; i++) {
		registry_node n;
		registry_model models[2];
		const char *nm[2] = { names[i % 40], names[(i + 7) % 40] };
		const char *hs[2] = { hashes[i % 40], hashes[(i + 7) % 40] };
		char extra[256];
		make_node(&n, models, "x", 1 + (size_t)(i % 2), nm, hs);
		b64_of(n.node_id, sizeof n.node_id, 32, (unsigned)i);
		for (int c = 0; c < 4; c++)  /* distinct ids: b64_of repeats every 256 seeds */
			n.node_id[c] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			    [(i >> (6 * c)) & 63];
		b64_of(n.encryption_public_key, sizeof n.encryption_public_key, 32,
		    (unsigned)i + 1);
		b64_of(n.seal_key, sizeof n.seal_key, 116, (unsigned)i + 2);
		snprintf(n.owner, sizeof n.owner, "%s", n.node_id);
		snprintf(n.name, sizeof n.name, "gpu-box-%d", i);
		snprintf(n.ip, sizeof n.ip, "100.%d.%d.%d", 64 + i % 64, (i >> 8) & 255, i & 255);
		snprintf(extra, sizeof extra, "{\"hardware\":{\"gpu\":\"NVIDIA GeForce RTX 4090\","
		    "\"gpu_count\":1,\"vram_total\":24564,\"vram_free\":%d,\"gpu_util\":%d,"
		    "\"source\":\"nvml\"},\"engines\":[{\"type\":\"ollama\",\"version\":"
		    "\"0.6.2\",\"port\":11434}]}", 20480 - i % 1000, i % 100);
		n.extra_json = extra;
		n.facts = (registry_facts){ .multiplier = 0.5 + i / 1e5, .verified = true,
			.verified_at = NOW, .reputation = 0.81 + i / 1e7, .rep_availability = 0.9,
			.rep_reliability = 0.95 + i / 1e7, .rep_speed = 0.9, .rep_audits = 1,
			.jobs = i, .ttft_ms = 120.5, .tokens_per_s = 40 + i / 1e3 };
		snprintf(n.facts.hw_class, sizeof n.facts.hw_class, "gpu");
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	}
	size_t after = mallinfo2().uordblks;
	if (after < before + NODES) {  /* a sanitizer's allocator: glibc's counts nothing */
		registry_close(r);
		skip();
	}
	double per_node = (double)(after - before) / NODES;
	size_t live = 0;
	assert_int_equal(registry_count_nodes(&live, r, NOW), 0);
	assert_int_equal(live, NODES);
	printf("# memory backend: %.0f bytes allocated per node\n", per_node);
	assert_true(per_node < 560);
	registry_close(r);
#else
	skip();
#endif
}

static void test_validation(void **state)
{
	registry *r = *state;
	registry_node n;
	static registry_model models[REGISTRY_MODELS_MAX + 1];
	const char *names[] = { "llama3:8b" };
	make_node(&n, models, "node-1", 1, names, NULL);
	n.port = 0;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
	n.port = 70000;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
	n.port = 8421;
	assert_int_equal(registry_put_node(r, &n, 0, NOW), TROOP_EINVAL);
	n.ip[0] = '\0';
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
	snprintf(n.ip, sizeof n.ip, "100.64.0.1");
	memset(n.name, 'x', sizeof n.name);  /* not terminated */
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_ETOOLARGE);
	snprintf(n.name, sizeof n.name, "ok");
	for (size_t i = 0; i <= REGISTRY_MODELS_MAX; i++)
		snprintf(models[i].name, sizeof models[i].name, "m%zu", i);
	n.models = models;
	n.n_models = REGISTRY_MODELS_MAX + 1;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_ETOOLARGE);
	n.n_models = REGISTRY_MODELS_MAX;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	assert_int_equal(find_count(r, "m255", NOW), 1);
	models[0].name[0] = '\0';
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);
	models[0].name[0] = 'm';
	n.status = (node_status)7;
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EINVAL);

	node_status st;
	assert_int_equal(registry_status_parse(&st, "BUSY"), 0);
	assert_int_equal(st, NODE_BUSY);
	assert_int_equal(registry_status_parse(&st, "busy"), TROOP_EINVAL);
	assert_string_equal(registry_status_name(NODE_OFFLINE), "OFFLINE");

	registry *r2 = NULL;
#ifdef TROOP_HAVE_HIREDIS
	/* built in: a server that is not there is unavailable; bad URLs are refused */
	assert_int_equal(registry_open(&r2, "redis://127.0.0.1:1", NULL), TROOP_EUNAVAIL);
	assert_non_null(strstr(troop_error_msg(), "127.0.0.1:1"));
	assert_int_equal(registry_open(&r2, "redis://127.0.0.1:99999", NULL), TROOP_EINVAL);
	assert_int_equal(registry_open(&r2, "redis://127.0.0.1:6379?colour=red", NULL),
	    TROOP_EINVAL);
	assert_int_equal(registry_open(&r2, "rediss://127.0.0.1:6379", NULL), TROOP_EINVAL);
	assert_null(r2);
#else
	assert_int_equal(registry_open(&r2, "redis://localhost:6379", NULL), TROOP_EINVAL);
#endif
	assert_int_equal(registry_open(&r2, "bogus", NULL), TROOP_EINVAL);
	assert_null(r2);
	assert_int_equal(registry_open(&r2, "memory:", NULL), 0);
	registry_close(r2);
}

static void test_node_capacity(void **state)
{
	(void)state;
	registry *r = NULL;
	registry_opts o = { .max_nodes = 3 };
	assert_int_equal(open_reg(&r, &o), 0);
	registry_node n;
	registry_model models[1];
	const char *names[] = { "m" };
	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof id, "n%d", i);
		make_node(&n, models, id, 1, names, NULL);
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	}
	make_node(&n, models, "n3", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EUNAVAIL);
	/* replacing an existing one is fine; so is a new one once others expired */
	make_node(&n, models, "n0", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	make_node(&n, models, "n3", 1, names, NULL);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + TTL), 0);
	assert_int_equal(find_count(r, "m", NOW + TTL), 1);
	registry_close(r);
}

/* The default cap follows the machine's memory and always fits 1M nodes. */
static void test_default_max_nodes(void **state)
{
	(void)state;
	size_t n = registry_default_max_nodes();
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	assert_true(n >= REGISTRY_MIN_DEFAULT_NODES && n > 1000000);
	assert_true(pages > 0 && page > 0);
	size_t quarter = (size_t)pages / 4 * (size_t)page / REGISTRY_NODE_BYTES;
	assert_int_equal(n, quarter > REGISTRY_MIN_DEFAULT_NODES ? quarter :
	    REGISTRY_MIN_DEFAULT_NODES);
}

/* The default nonce cap follows the machine's memory in process (the old
 * fixed 1,000,000 took 8,264 signed requests/s at most); with Redis it
 * stays 1,000,000. */
static void test_default_max_nonces(void **state)
{
	(void)state;
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	size_t n = registry_default_max_nonces(NULL);
	assert_true(pages > 0 && page > 0);
	size_t quarter = (size_t)pages / 4 * (size_t)page / REGISTRY_NONCE_BYTES;
	assert_int_equal(n, quarter > REGISTRY_MIN_DEFAULT_NONCES ? quarter :
	    REGISTRY_MIN_DEFAULT_NONCES);
	assert_int_equal(registry_default_max_nonces("memory:"), n);
	assert_int_equal(registry_default_max_nonces(""), n);
	assert_int_equal(registry_default_max_nonces("redis://127.0.0.1:6379/0"),
	    REGISTRY_MIN_DEFAULT_NONCES);
	/* a machine with 1 GiB or more: beyond the old cap */
	if ((size_t)pages * (size_t)page >= (size_t)1 << 30)
		assert_true(n > 1000000);
	/* a registry opened with the default takes that many */
	{
		registry *r = NULL;
		assert_int_equal(registry_open(&r, NULL, NULL), 0);
		registry_close(r);
	}
}

/* The key/value cap follows the node cap: a registry sized for more than
 * 100,000 nodes keeps an entry (a reputation) for each of them; the old
 * fixed cap of 100,000 refused the 100,001st. */
static void test_default_max_kv(void **state)
{
	registry_opts o = { .max_nodes = 100000 };
	registry *r = NULL;
	char key[64];
	int rc = 0;

	(void)state;
	assert_int_equal(registry_default_max_kv(0), REGISTRY_MIN_DEFAULT_KV);
	assert_int_equal(registry_default_max_kv(1000), REGISTRY_MIN_DEFAULT_KV);
	assert_int_equal(registry_default_max_kv(1100000), 2200000);
	assert_int_equal(registry_default_max_kv(SIZE_MAX), SIZE_MAX);
	assert_int_equal(registry_open(&r, NULL, &o), 0);
	for (int i = 0; i < 150000 && rc == 0; i++) {
		snprintf(key, sizeof(key), "rep:node-%d", i);
		rc = registry_kv_put(r, key, "{}", 2, 60, 0, NOW);
	}
	assert_int_equal(rc, 0);
	registry_close(r);
	/* an explicit cap still holds */
	o.max_kv = 1000;
	assert_int_equal(registry_open(&r, NULL, &o), 0);
	for (int i = 0; i < 1001 && rc == 0; i++) {
		snprintf(key, sizeof(key), "rep:node-%d", i);
		rc = registry_kv_put(r, key, "{}", 2, 60, 0, NOW);
	}
	assert_int_equal(rc, TROOP_EUNAVAIL);
	registry_close(r);
}

/* ---- nonces, rates, kv ------------------------------------------------------- */

static void test_nonces(void **state)
{
	registry *r = *state;
	assert_int_equal(nonce_fn_check(r, "alice", "nonce-1", NOW), 0);
	assert_int_equal(registry_nonce_check(r, "alice", "nonce-1", NOW + 1), TROOP_EAUTH);
	assert_int_equal(troop_err_status(TROOP_EAUTH), 401);
	assert_int_equal(registry_nonce_check(r, "bob", "nonce-1", NOW + 1), 0);
	assert_int_equal(registry_nonce_check(r, "alice", "nonce-2", NOW + 1), 0);
	/* remembered for the whole window, forgotten after */
	assert_int_equal(registry_nonce_check(r, "alice", "nonce-1",
	    NOW + REGISTRY_NONCE_WINDOW - 1), TROOP_EAUTH);
	assert_int_equal(registry_nonce_check(r, "alice", "nonce-1", NOW + REGISTRY_NONCE_WINDOW),
	    0);
	assert_int_equal(registry_nonce_check(r, "alice", "nonce-1",
	    NOW + REGISTRY_NONCE_WINDOW + 1), TROOP_EAUTH);
	/* the boundary: a request signed with created = T + 60 (the client's
	 * clock 60 s ahead) and first used at T is still valid at T + 120
	 * (created + 60, the window's inclusive end): its nonce must still be
	 * remembered then */
	assert_int_equal(registry_nonce_check(r, "carol", "edge", NOW), 0);
	assert_int_equal(registry_nonce_check(r, "carol", "edge", NOW + 120), TROOP_EAUTH);
	assert_true(REGISTRY_NONCE_WINDOW >= 2 * 60 + 1);
	/* keyid and nonce are not confusable by concatenation */
	assert_int_equal(registry_nonce_check(r, "ab", "c", NOW), 0);
	assert_int_equal(registry_nonce_check(r, "a", "bc", NOW), 0);
	assert_int_equal(registry_nonce_check(r, "", "x", NOW), TROOP_EINVAL);
}

static void test_nonce_bounded(void **state)
{
	(void)state;
	registry *r = NULL;
	registry_opts o = { .max_nonces = 64 };
	assert_int_equal(open_reg(&r, &o), 0);
	int ok = 0, full = 0;
	for (int i = 0; i < 1000; i++) {
		char nonce[32], signer[32];
		snprintf(nonce, sizeof nonce, "n%d", i);
		snprintf(signer, sizeof signer, "k%d", i);  /* under every signer's quota */
		int rc = registry_nonce_check(r, signer, nonce, NOW);
		ok += rc == 0;
		full += rc == TROOP_ERATE;
	}
	assert_int_equal(ok + full, 1000);
	assert_true(ok >= 1 && ok <= 64);
	assert_true(full > 0);
	/* once the window passes there is room again */
	assert_int_equal(registry_nonce_check(r, "k", "later", NOW + REGISTRY_NONCE_WINDOW), 0);
	size_t removed = 0;
	assert_int_equal(registry_sweep(&removed, r, NOW + 2 * REGISTRY_NONCE_WINDOW), 0);
	assert_true(removed >= 1);
	registry_close(r);
}

/* Issue 16 item 7: one identity (or one address) filling its quota of a
 * shared store does not lock others out of it. */
static void test_quotas(void **state)
{
	(void)state;
	registry *r = NULL;
	registry_opts o = { .max_nonces = 1000, .nonce_quota_signer = 10,
		.nonce_quota_addr = 25, .max_kv = 1000, .kv_quota_owner = 5, .kv_quota_addr = 8 };
	char n[32], k[32];
	int i;
	assert_int_equal(open_reg(&r, &o), 0);

	/* nonces: mallory's signer quota */
	for (i = 0; i < 10; i++) {
		snprintf(n, sizeof n, "m%d", i);
		assert_int_equal(registry_nonce_check_from(r, "mallory", n, "10.9.9.9", NOW), 0);
	}
	snprintf(n, sizeof n, "m%d", i);
	assert_int_equal(registry_nonce_check_from(r, "mallory", n, "10.9.9.9", NOW), TROOP_ERATE);
	assert_non_null(strstr(troop_error_msg(), "for one owner"));
	/* a replay is still a replay, not a quota refusal */
	assert_int_equal(registry_nonce_check_from(r, "mallory", "m0", "10.9.9.9", NOW),
	    TROOP_EAUTH);
	assert_int_equal(registry_nonce_check_from(r, "alice", "a0", "10.1.1.1", NOW), 0);
	/* fresh identities from one address stop at the address quota */
	int ok = 0;
	for (i = 0; i < 40; i++) {
		char id[32];
		snprintf(id, sizeof id, "throwaway-%d", i);
		ok += registry_nonce_check_from(r, id, "x", "10.9.9.9", NOW) == 0;
	}
	assert_int_equal(ok, 25 - 10);
	/* ... and others, from other addresses, still get in */
	assert_int_equal(registry_nonce_check_from(r, "bob", "b0", "10.2.2.2", NOW), 0);
	assert_int_equal(registry_nonce_check(r, "carol", "c0", NOW), 0);
	/* the quotas free up with the window */
	assert_int_equal(registry_nonce_check_from(r, "mallory", "late", "10.9.9.9",
	    NOW + REGISTRY_NONCE_WINDOW), 0);

	/* key/values: per owner (the node a record is for) and per address */
	for (i = 0; i < 5; i++) {
		snprintf(k, sizeof k, "poh:c:m%d", i);
		assert_int_equal(registry_kv_put_owned(r, k, "v", 1, 60, 0, "node-m", "10.9.9.9",
		    NOW), 0);
	}
	assert_int_equal(registry_kv_put_owned(r, "poh:c:m9", "v", 1, 60, 0, "node-m",
	    "10.9.9.9", NOW), TROOP_ERATE);
	assert_int_equal(registry_kv_put_owned(r, "poh:c:a0", "v", 1, 60, 0, "node-a",
	    "10.1.1.1", NOW), 0);
	/* replacing a record keeps its share */
	assert_int_equal(registry_kv_put_owned(r, "poh:c:m0", "w", 1, 60, 0, "node-m",
	    "10.9.9.9", NOW), 0);
	/* taking one gives the share back */
	assert_int_equal(registry_kv_take(NULL, 0, NULL, r, "poh:c:m1", NOW), TROOP_ETOOLARGE);
	char buf[8];
	size_t len = 0;
	assert_int_equal(registry_kv_take(buf, sizeof buf, &len, r, "poh:c:m1", NOW), 0);
	assert_int_equal(registry_kv_put_owned(r, "poh:c:m9", "v", 1, 60, 0, "node-m",
	    "10.9.9.9", NOW), 0);
	assert_int_equal(registry_kv_take(buf, sizeof buf, &len, r, "poh:c:m2", NOW), 0);
	/* other owners from the same address count against it: m0 m3 m4 m9 and
	 * x0 .. x3 make 8 */
	assert_int_equal(registry_kv_put_owned(r, "poh:c:x0", "v", 1, 60, 0, "node-x",
	    "10.9.9.9", NOW), 0);
	assert_int_equal(registry_kv_put_owned(r, "poh:c:x1", "v", 1, 60, 0, "node-x",
	    "10.9.9.9", NOW), 0);
	assert_int_equal(registry_kv_put_owned(r, "poh:c:x2", "v", 1, 60, 0, "node-x",
	    "10.9.9.9", NOW), 0);
	assert_int_equal(registry_kv_put_owned(r, "poh:c:x3", "v", 1, 60, 0, "node-x",
	    "10.9.9.9", NOW), 0);
	assert_int_equal(registry_kv_put_owned(r, "poh:c:x4", "v", 1, 60, 0, "node-x",
	    "10.9.9.9", NOW), TROOP_ERATE);
	/* records without an owner are only capped */
	assert_int_equal(registry_kv_put(r, "plain", "v", 1, 60, 0, NOW), 0);
	registry_close(r);
}

static void test_rate(void **state)
{
	registry *r = *state;
	for (int i = 0; i < 3; i++)
		assert_int_equal(registry_rate_check(r, "poh:node-1", 10, 3, NOW + i), 0);
	assert_int_equal(registry_rate_check(r, "poh:node-1", 10, 3, NOW + 5), TROOP_ERATE);
	assert_int_equal(troop_err_status(TROOP_ERATE), 429);
	assert_int_equal(registry_rate_check(r, "poh:node-2", 10, 3, NOW + 5), 0);
	assert_int_equal(registry_rate_check(r, "poh:node-1", 10, 3, NOW + 9), TROOP_ERATE);
	/* a new window */
	assert_int_equal(registry_rate_check(r, "poh:node-1", 10, 3, NOW + 10), 0);
	assert_int_equal(registry_rate_check(r, "poh:node-1", 10, 3, NOW + 10), 0);
	assert_int_equal(registry_rate_check(r, "poh:node-1", 10, 3, NOW + 10), 0);
	assert_int_equal(registry_rate_check(r, "poh:node-1", 10, 3, NOW + 11), TROOP_ERATE);
	assert_int_equal(registry_rate_check(r, "x", 0, 3, NOW), TROOP_EINVAL);
	assert_int_equal(registry_rate_check(r, "x", 10, 0, NOW), TROOP_EINVAL);
}

static void test_kv(void **state)
{
	registry *r = *state;
	char buf[64];
	size_t len = 0;
	const char *v = "challenge-state";
	assert_int_equal(registry_kv_put(r, "poh:abc", v, strlen(v), 60, 0, NOW), 0);
	assert_int_equal(registry_kv_get(buf, sizeof buf, &len, r, "poh:abc", NOW + 59), 0);
	assert_int_equal(len, strlen(v));
	assert_memory_equal(buf, v, len);
	assert_int_equal(registry_kv_get(buf, sizeof buf, &len, r, "poh:abc", NOW + 60),
	    TROOP_ENOTFOUND);

	/* NX: a replay cache */
	assert_int_equal(registry_kv_put(r, "jti:1", "1", 1, 300, REGISTRY_KV_NX, NOW), 0);
	assert_int_equal(registry_kv_put(r, "jti:1", "2", 1, 300, REGISTRY_KV_NX, NOW + 1),
	    TROOP_ECONFLICT);
	assert_int_equal(registry_kv_get(buf, sizeof buf, &len, r, "jti:1", NOW + 1), 0);
	assert_int_equal(buf[0], '1');
	assert_int_equal(registry_kv_put(r, "jti:1", "3", 1, 300, REGISTRY_KV_NX, NOW + 300), 0);

	/* overwrite extends the ttl */
	assert_int_equal(registry_kv_put(r, "k", "a", 1, 10, 0, NOW), 0);
	assert_int_equal(registry_kv_put(r, "k", "bb", 2, 100, 0, NOW + 5), 0);
	assert_int_equal(registry_kv_get(buf, sizeof buf, &len, r, "k", NOW + 50), 0);
	assert_int_equal(len, 2);
	assert_memory_equal(buf, "bb", 2);

	/* too small a buffer: length reported, value kept even by take */
	assert_int_equal(registry_kv_take(buf, 1, &len, r, "k", NOW + 50), TROOP_ETOOLARGE);
	assert_int_equal(len, 2);
	assert_int_equal(registry_kv_get(NULL, 0, &len, r, "k", NOW + 50), TROOP_ETOOLARGE);
	assert_int_equal(registry_kv_take(buf, sizeof buf, &len, r, "k", NOW + 50), 0);
	assert_int_equal(registry_kv_get(buf, sizeof buf, &len, r, "k", NOW + 50),
	    TROOP_ENOTFOUND);
	assert_int_equal(registry_kv_take(buf, sizeof buf, &len, r, "k", NOW + 50),
	    TROOP_ENOTFOUND);

	assert_int_equal(registry_kv_put(r, "d", "", 0, 10, 0, NOW), 0);
	assert_int_equal(registry_kv_get(buf, sizeof buf, &len, r, "d", NOW), 0);
	assert_int_equal(len, 0);
	assert_int_equal(registry_kv_take(buf, sizeof buf, &len, r, "d", NOW), 0);
	assert_int_equal(registry_kv_take(buf, sizeof buf, &len, r, "d", NOW), TROOP_ENOTFOUND);

	static char big[REGISTRY_KV_VALUE_MAX + 1];
	assert_int_equal(registry_kv_put(r, "big", big, sizeof big, 10, 0, NOW), TROOP_ETOOLARGE);
	assert_int_equal(registry_kv_put(r, "big", big, sizeof big - 1, 10, 0, NOW), 0);
	assert_int_equal(registry_kv_put(r, "t", "x", 1, 0, 0, NOW), TROOP_EINVAL);
	assert_int_equal(registry_kv_put(r, "t", "x", 1, 10, 0x80, NOW), TROOP_EINVAL);
}

static void test_kv_bounded(void **state)
{
	(void)state;
	registry *r = NULL;
	registry_opts o = { .max_kv = 16 };
	assert_int_equal(open_reg(&r, &o), 0);
	int ok = 0, full = 0;
	for (int i = 0; i < 200; i++) {
		char key[32];
		snprintf(key, sizeof key, "key-%d", i);
		int rc = registry_kv_put(r, key, "v", 1, 60, 0, NOW);
		ok += rc == 0;
		full += rc == TROOP_EUNAVAIL;
	}
	assert_int_equal(ok + full, 200);
	assert_true(ok >= 1 && ok <= 16);
	assert_true(full > 0);
	assert_int_equal(registry_kv_put(r, "key-late", "v", 1, 60, 0, NOW + 60), 0);
	registry_close(r);
}

/* ---- threads ------------------------------------------------------------------ */

#define THREADS 8
#define PER_THREAD 500

struct thread_ctx {
	registry *r;
	pthread_barrier_t *barrier;
	int index;
	int errors;
	int shared_nonce_wins;
	int take_wins;
};

static void *worker(void *arg)
{
	struct thread_ctx *x = arg;
	registry_node n;
	registry_model models[2];
	pthread_barrier_wait(x->barrier);
	for (int i = 0; i < PER_THREAD; i++) {
		char id[32], m0[16], m1[16], nonce[32];
		snprintf(id, sizeof id, "t%d-n%d", x->index, i % 50);
		snprintf(m0, sizeof m0, "model-%d", i % 10);
		snprintf(m1, sizeof m1, "model-%d", (i + x->index) % 10);
		const char *names[] = { m0, m1 };
		make_node(&n, models, id, strcmp(m0, m1) == 0 ? 1 : 2, names, NULL);
		if (registry_put_node(x->r, &n, TTL, NOW) != 0)
			x->errors++;
		registry_node *out = NULL;
		size_t k = 0;
		if (registry_find_nodes(&out, &k, x->r, m1, NOW, 20, REGISTRY_WITH_ALL) != 0 ||
		    k == 0)
			x->errors++;
		for (size_t j = 0; j < k; j++)
			if (out[j].port != 8421)
				x->errors++;
		registry_nodes_free(out, k);
		if (registry_add_active_job(x->r, id, 1) != 0)
			x->errors++;
		snprintf(nonce, sizeof nonce, "t%d-%d", x->index, i);
		if (registry_nonce_check(x->r, "key", nonce, NOW) != 0)
			x->errors++;
		/* every thread races for the same nonces and one-shot values */
		snprintf(nonce, sizeof nonce, "shared-%d", i);
		int rc = registry_nonce_check(x->r, "key", nonce, NOW);
		if (rc == 0)
			x->shared_nonce_wins++;
		else if (rc != TROOP_EAUTH)
			x->errors++;
		char key[32], buf[8];
		snprintf(key, sizeof key, "once-%d", i);
		registry_kv_put(x->r, key, "v", 1, 60, REGISTRY_KV_NX, NOW);
		rc = registry_kv_take(buf, sizeof buf, NULL, x->r, key, NOW);
		if (rc == 0)
			x->take_wins++;
		else if (rc != TROOP_ENOTFOUND)
			x->errors++;
		if (i % 50 == 0) {
			registry_model_info *mi = NULL;
			size_t nm = 0;
			if (registry_models(&mi, &nm, x->r, NOW) != 0)
				x->errors++;
			free(mi);
		}
		if (i % 100 == 99 && registry_remove_node(x->r, id) != 0)
			x->errors++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	registry *r = *state;
	pthread_t th[THREADS];
	struct thread_ctx ctx[THREADS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, THREADS);
	for (int i = 0; i < THREADS; i++) {
		ctx[i] = (struct thread_ctx){ r, &barrier, i, 0, 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker, &ctx[i]), 0);
	}
	int errors = 0, wins = 0, takes = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		errors += ctx[i].errors;
		wins += ctx[i].shared_nonce_wins;
		takes += ctx[i].take_wins;
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(errors, 0);
	assert_int_equal(wins, PER_THREAD);   /* each shared nonce accepted once */
	/* each one-shot value is taken at most once (a put may land after a take) */
	assert_true(takes >= PER_THREAD && takes <= THREADS * PER_THREAD);
	size_t live = 0;
	assert_int_equal(registry_count_nodes(&live, r, NOW), 0);
	/* each thread's last writes: ids n0..n49; 49 (from i=499) was removed */
	assert_int_equal(live, THREADS * 49);
	assert_int_equal(find_count(r, NULL, NOW), THREADS * 49);
}

/* Ordered sets with expiring members (the wait queue, ticket holds). */
static void test_ordered_sets(void **state)
{
	registry *r = *state;
	int64_t rank = -1, now = 1000;
	size_t count = 0, n = 0;
	char **taken = NULL;

	/* order: score, then member bytes */
	assert_int_equal(registry_set_add(r, "q:m", "b", 20, now + 10, 10, now), 0);
	assert_int_equal(registry_set_add(r, "q:m", "a", 30, now + 10, 10, now), 0);
	assert_int_equal(registry_set_add(r, "q:m", "c", 20, now + 2, 10, now), 0);
	assert_int_equal(registry_set_rank(&rank, &count, r, "q:m", "b", now), 0);
	assert_int_equal(rank, 0);
	assert_int_equal(count, 3);
	assert_int_equal(registry_set_rank(&rank, &count, r, "q:m", "c", now), 0);
	assert_int_equal(rank, 1);
	assert_int_equal(registry_set_rank(&rank, NULL, r, "q:m", "a", now), 0);
	assert_int_equal(rank, 2);
	assert_int_equal(registry_set_rank(&rank, NULL, r, "q:m", "zz", now), TROOP_ENOTFOUND);
	/* the bound counts live members; an update is not a new member */
	assert_int_equal(registry_set_add(r, "bound", "x", 0, now + 10, 2, now), 0);
	assert_int_equal(registry_set_add(r, "bound", "y", 0, now + 10, 2, now), 0);
	assert_int_equal(registry_set_add(r, "bound", "z", 0, now + 10, 2, now), TROOP_ERATE);
	assert_int_equal(registry_set_add(r, "bound", "y", 5, now + 10, 2, now), 0);
	/* expiry: "c" is gone at now + 2, and the rank of "a" moves up */
	assert_int_equal(registry_set_count(&count, r, "q:m", now + 2), 0);
	assert_int_equal(count, 2);
	assert_int_equal(registry_set_rank(&rank, NULL, r, "q:m", "a", now + 2), 0);
	assert_int_equal(rank, 1);
	/* remove: exactly once */
	assert_int_equal(registry_set_remove(r, "q:m", "b"), 0);
	assert_int_equal(registry_set_remove(r, "q:m", "b"), TROOP_ENOTFOUND);
	/* take_expired hands each expired member out once */
	assert_int_equal(registry_set_add(r, "holds", "n1|a|j1", 0, now + 1, 100, now), 0);
	assert_int_equal(registry_set_add(r, "holds", "n1|a|j2", 0, now + 5, 100, now), 0);
	assert_int_equal(registry_set_take_expired(&taken, &n, r, "holds", now + 1, 10), 0);
	assert_int_equal(n, 1);
	assert_string_equal(taken[0], "n1|a|j1");
	free(taken[0]);
	free(taken);
	assert_int_equal(registry_set_take_expired(&taken, &n, r, "holds", now + 1, 10), 0);
	assert_int_equal(n, 0);
	assert_null(taken);
	assert_int_equal(registry_set_remove(r, "holds", "n1|a|j2"), 0);
	/* argument checks */
	assert_int_equal(registry_set_add(r, "", "m", 0, now + 1, 1, now), TROOP_EINVAL);
	assert_int_equal(registry_set_add(r, "s", "m", 0, now + 1, 0, now), TROOP_EINVAL);
}

/* A big set (the ticket holds of a busy coordinator): members added,
 * updated, removed from the middle and taken when expired in any order
 * stay findable by name, counted once, and gone once removed. */
static void test_ordered_set_big(void **state)
{
	registry *r = *state;
	enum { N = 2000 };
	static bool live[N];
	int64_t now = 1000, rank;
	size_t count = 0, n = 0, want = 0;
	char m[32], **taken = NULL;

	for (int i = 0; i < N; i++) {
		snprintf(m, sizeof(m), "node|acct|job%d", i);
		/* every third expires at now + 1, the rest later */
		assert_int_equal(registry_set_add(r, "holds", m, i, now + (i % 3 ? 50 : 1),
		    N, now), 0);
		live[i] = true;
	}
	for (int i = 0; i < N; i += 7) {
		snprintf(m, sizeof(m), "node|acct|job%d", i);
		assert_int_equal(registry_set_remove(r, "holds", m), 0);
		assert_int_equal(registry_set_remove(r, "holds", m), TROOP_ENOTFOUND);
		live[i] = false;
	}
	/* an update moves no one: still one member */
	assert_int_equal(registry_set_add(r, "holds", "node|acct|job1", 1, now + 50, N, now), 0);
	for (int i = 0; i < N; i++)
		want += live[i];
	assert_int_equal(registry_set_count(&count, r, "holds", now), 0);
	assert_int_equal(count, want);
	/* the expired ones, taken in batches, each once */
	for (;;) {
		assert_int_equal(registry_set_take_expired(&taken, &n, r, "holds", now + 1, 100), 0);
		if (n == 0)
			break;
		for (size_t k = 0; k < n; k++) {
			int i = atoi(strrchr(taken[k], 'b') + 1);

			assert_true(i % 3 == 0 && live[i]);
			live[i] = false;
			free(taken[k]);
		}
		free(taken);
		taken = NULL;
	}
	want = 0;
	for (int i = 0; i < N; i++) {
		snprintf(m, sizeof(m), "node|acct|job%d", i);
		want += live[i];
		assert_int_equal(registry_set_rank(&rank, NULL, r, "holds", m, now + 1),
		    live[i] ? 0 : TROOP_ENOTFOUND);
	}
	assert_int_equal(registry_set_count(&count, r, "holds", now + 1), 0);
	assert_int_equal(count, want);
	/* all gone at their expiry */
	assert_int_equal(registry_set_count(&count, r, "holds", now + 50), 0);
	assert_int_equal(count, 0);
}

/* registry_list_nodes: pages in id order that see every node live during
 * the walk exactly once while nodes join, leave and heartbeat between
 * pages; the model filter (by name, then by hash); expired nodes left out;
 * bad arguments refused. */
static void test_list_pages(void **state)
{
	registry *r = *state;
	static const char *const even[] = { "even:model" };
	static const char *const even_hash[] = { "sha256:even" };
	static const char *const odd[] = { "odd:model" };
	enum { N = 300, PAGE = 7 };
	static int seen[N];
	registry_model models[1];
	registry_node n, *out = NULL;
	char id[32], after[REGISTRY_ID_MAX + 1] = "";
	size_t k = 0, listed = 0, pages = 0;
	bool removed[N] = { false };

	memset(seen, 0, sizeof seen);
	/* put in a scattered order; ids sort as their numbers do */
	for (int i = 0; i < N; i++) {
		int j = (i * 7919) % N;
		snprintf(id, sizeof id, "n%04d", j);
		make_node(&n, models, id, 1, j % 2 ? odd : even, j % 2 ? NULL : even_hash);
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	}
	/* expired by NOW + 1: never listed */
	make_node(&n, models, "n0150x", 1, even, NULL);
	assert_int_equal(registry_put_node(r, &n, 1, NOW - 1), 0);

	for (;;) {
		assert_int_equal(registry_list_nodes(&out, &k, r, NULL, after, NOW + 1, PAGE, 0),
		    0);
		assert_true(k <= PAGE);
		if (k == 0)
			break;
		pages++;
		for (size_t i = 0; i < k; i++) {
			int num;

			assert_true(i == 0 || strcmp(out[i - 1].node_id, out[i].node_id) < 0);
			assert_true(after[0] == '\0' || strcmp(after, out[i].node_id) < 0);
			assert_string_not_equal(out[i].node_id, "n0150x");
			if (sscanf(out[i].node_id, "n%4d", &num) == 1 && strlen(out[i].node_id) == 5) {
				assert_true(num >= 0 && num < N);
				seen[num]++;
			}
			listed++;
		}
		snprintf(after, sizeof after, "%s", out[k - 1].node_id);
		registry_nodes_free(out, k);
		out = NULL;
		/* between pages: a new node before the cursor and one after it
		 * (either may be listed or not), a node not listed yet leaves,
		 * one not listed yet heartbeats again */
		snprintf(id, sizeof id, "m%04zu", pages);
		make_node(&n, models, id, 1, even, NULL);
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
		if (pages <= 20) {      /* a walk chasing new nodes would not end */
			snprintf(id, sizeof id, "o%04zu", pages);
			make_node(&n, models, id, 1, even, NULL);
			assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
		}
		int gone = (int)(pages * 13 % N);
		snprintf(id, sizeof id, "n%04d", gone);
		if (seen[gone] == 0 && !removed[gone] && registry_remove_node(r, id) == 0)
			removed[gone] = true;
		int again = (int)((pages * 29 + 3) % N);
		snprintf(id, sizeof id, "n%04d", again);
		if (!removed[again]) {
			make_node(&n, models, id, 1, again % 2 ? odd : even,
			    again % 2 ? NULL : even_hash);
			assert_int_equal(registry_put_node(r, &n, TTL, NOW + 1), 0);
		}
		assert_true(pages < 10 * N);
	}
	for (int i = 0; i < N; i++) {
		if (removed[i])
			assert_true(seen[i] <= 1);
		else if (seen[i] != 1)
			fail_msg("node n%04d listed %d times", i, seen[i]);
	}
	assert_true(listed >= N - pages);

	/* by model name: the even ones (and the m/o nodes added above) */
	size_t evens = 0;
	after[0] = '\0';
	for (;;) {
		assert_int_equal(registry_list_nodes(&out, &k, r, "even:model", after, NOW + 1, 50,
		    REGISTRY_WITH_MODELS), 0);
		if (k == 0)
			break;
		for (size_t i = 0; i < k; i++) {
			assert_int_equal(out[i].n_models, 1);
			assert_string_equal(out[i].models[0].name, "even:model");
			if (out[i].node_id[0] == 'n')
				evens++;
		}
		snprintf(after, sizeof after, "%s", out[k - 1].node_id);
		registry_nodes_free(out, k);
	}
	size_t want = 0;
	for (int i = 0; i < N; i += 2)
		want += !removed[i];
	assert_int_equal(evens, want);
	/* by content hash when no node lists the name */
	assert_int_equal(registry_list_nodes(&out, &k, r, "sha256:even", "n0100", NOW + 1,
	    1000, 0), 0);
	assert_true(k > 0);
	for (size_t i = 0; i < k; i++)
		assert_true(strcmp(out[i].node_id, "n0100") > 0 && out[i].node_id[0] == 'n');
	registry_nodes_free(out, k);
	/* nothing after the last id; nothing for an unknown model */
	assert_int_equal(registry_list_nodes(&out, &k, r, NULL, "z", NOW + 1, 10, 0), 0);
	assert_int_equal(k, 0);
	assert_null(out);
	assert_int_equal(registry_list_nodes(&out, &k, r, "no:such", NULL, NOW + 1, 10, 0), 0);
	assert_int_equal(k, 0);
	/* bad arguments */
	char long_id[REGISTRY_ID_MAX + 2];
	memset(long_id, 'a', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	assert_int_equal(registry_list_nodes(&out, &k, r, NULL, NULL, NOW, 0, 0), TROOP_EINVAL);
	assert_int_equal(registry_list_nodes(&out, &k, r, NULL, long_id, NOW, 5, 0),
	    TROOP_ETOOLARGE);
	assert_int_equal(registry_list_nodes(NULL, &k, r, NULL, NULL, NOW, 5, 0), TROOP_EINVAL);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Page through `model` (NULL: all nodes), `page` at a time: the ids
 * listed (those of length `only_len`; 0 for all) are want[0..nwant) in
 * that order. */
static void walk_in_order(registry *r, const char *model, size_t page,
    const char *const *want, size_t nwant, size_t only_len)
{
	char after[REGISTRY_ID_MAX + 1] = "";
	registry_node *out = NULL;
	size_t k = 0, got = 0;

	for (;;) {
		assert_int_equal(registry_list_nodes(&out, &k, r, model, after, NOW + 1, page, 0),
		    0);
		if (k == 0)
			break;
		for (size_t i = 0; i < k; i++) {
			if (only_len && strlen(out[i].node_id) != only_len)
				continue;
			assert_true(got < nwant);
			assert_string_equal(out[i].node_id, want[got]);
			got++;
		}
		snprintf(after, sizeof after, "%s", out[k - 1].node_id);
		registry_nodes_free(out, k);
		out = NULL;
	}
	assert_int_equal(got, nwant);
}

/* registry_list_nodes in strcmp order where ids share their first bytes:
 * the in-process registry orders by the first 8 bytes of each id and
 * only then by the whole id, so ids that tie on those bytes, ids shorter
 * than 8 and ids that are another's prefix must still come in byte
 * order, with a cursor in the middle of a tie; by model and for all. */
static void test_list_order_ties(void **state)
{
	registry *r = *state;
	static const char *const only[] = { "tie:model" };
	static const char *const stems[] = { "node-aaa", "node-aa", "node-aab", "node-a",
		"node-aaa~", "node-aaa ", "nodf", "n", "node-aaaa", "node-aa`" };
	enum { N = 120, PAGE = 7 };
	char ids[N][32];
	const char *want[N];
	registry_model models[1];
	registry_node n, *out = NULL;
	size_t k = 0;

	for (int i = 0; i < N; i++) {
		/* the stem, then a suffix for most: many ties on 8 bytes */
		if (i < (int)(sizeof(stems) / sizeof(stems[0])))
			snprintf(ids[i], sizeof ids[i], "%s", stems[i]);
		else
			snprintf(ids[i], sizeof ids[i], "%s%d", stems[i % 10], (i * 37) % 101);
		want[i] = ids[i];
	}
	/* no two the same */
	qsort(want, N, sizeof want[0], cmp_str);
	for (int i = 1; i < N; i++)
		assert_true(strcmp(want[i - 1], want[i]) < 0);
	for (int i = 0; i < N; i++) {
		int j = (i * 53) % N;
		make_node(&n, models, ids[j], 1, only, NULL);
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	}
	walk_in_order(r, "tie:model", PAGE, want, N, 0);
	walk_in_order(r, NULL, PAGE, want, N, 0);
	/* ids spread as node ids are (43 base64url characters): pages that
	 * start in one id range and end in a later one, cursors that fall in
	 * ranges no node has */
	{
		enum { R = 400 };
		static const char b64[] =
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
		static char rid[R][44];
		const char *rwant[R];
		uint64_t x = 0x9e3779b97f4a7c15u;

		for (int i = 0; i < R; i++) {
			for (int c = 0; c < 43; c++) {
				x = x * 6364136223846793005u + 1442695040888963407u;
				rid[i][c] = b64[x >> 58];
			}
			rid[i][43] = '\0';
			rwant[i] = rid[i];
			make_node(&n, models, rid[i], 1, only, NULL);
			assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
		}
		qsort(rwant, R, sizeof rwant[0], cmp_str);
		/* the N short ids above sort among the random ones: only the
		 * random ones are checked, in their order */
		walk_in_order(r, NULL, 13, rwant, R, 43);
		for (int i = 0; i < R; i++)
			assert_int_equal(registry_remove_node(r, rid[i]), 0);
	}
	/* a cursor that no node has, inside a tie */
	assert_int_equal(registry_list_nodes(&out, &k, r, "tie:model", "node-aaa5", NOW + 1, 1,
	    0), 0);
	assert_int_equal(k, 1);
	for (int i = 0; i < N; i++)
		if (strcmp(want[i], "node-aaa5") > 0) {
			assert_string_equal(out[0].node_id, want[i]);
			break;
		}
	registry_nodes_free(out, k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ordered_sets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ordered_set_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_by_name_and_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_follows_model_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_and_offline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_count_follows_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_node, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_order_ties, setup, teardown),
		cmocka_unit_test_setup_teardown(test_100k_nodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_models_aggregate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_model_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_active_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_facts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_roundtrip, setup, teardown),
		cmocka_unit_test(test_memory_per_node),
		cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
		cmocka_unit_test(test_node_capacity),
		cmocka_unit_test(test_default_max_nodes),
		cmocka_unit_test(test_default_max_nonces),
		cmocka_unit_test(test_default_max_kv),
		cmocka_unit_test_setup_teardown(test_nonces, setup, teardown),
		cmocka_unit_test(test_nonce_bounded),
		cmocka_unit_test(test_quotas),
		cmocka_unit_test_setup_teardown(test_rate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
		cmocka_unit_test(test_kv_bounded),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
