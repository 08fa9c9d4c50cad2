/*
 * test_peers_json.c - the text /peers writes without a JSON tree is the
 * record GET /nodes/{id} builds with proto_node_encode (the same keys and
 * values), on a real coordinator, for nodes of every shape: no models, models with
 * and without capabilities, endpoints and context lengths, hardware with
 * and without VRAM and utilisation, engines without hardware, seal keys,
 * an owner that is not the node, BUSY, and names (of nodes, models, GPUs,
 * engines, versions) holding quotes, backslashes, control characters,
 * non-ASCII text and "</script>".  Also the cache of /peers replies: the
 * same request within a second is answered from the reply already built
 * (a heartbeat that changes nothing but last_seen shows there a second
 * late), while a node that joins shows at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"

#define ODD "q\"uo\\te\n\t\x01\x1f </script> caf\xc3\xa9 \xf0\x9f\x90\x92 /"

static harness_proc coord;
static char tmp[256];

static int get_json(const char *path, json_t **out)
{
	http_client *c;
	char url[700];
	int status = 0;

	assert_int_equal(http_client_new(&c), 0);
	snprintf(url, sizeof(url), "%s%s", coord.url, path);
	*out = NULL;
	assert_int_equal(http_request_json(c, &status, out, "GET", url, NULL, NULL), 0);
	http_client_free(c);
	return status;
}

/* Heartbeat `body` (stolen) signed by `id`: asserts 200. */
static void heartbeat(const troop_identity *id, json_t *body)
{
	http_client *c;
	json_t *out = NULL;
	int status = 0;

	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, &status, &out, id, "POST", coord.url,
	    "/heartbeat", body), 0);
	if (status != 200)
		fail_msg("heartbeat answered %d", status);
	json_decref(out);
	json_decref(body);
	http_client_free(c);
}

static json_t *base(const troop_identity *id, const char *name, const char *status)
{
	return json_pack("{s:s, s:s, s:s, s:i, s:s, s:{s:i, s:i}, s:s, s:s}", "node_id", id->id,
	    "name", name, "tailscale_ip", "100.64.0.7", "port", 8421, "status", status,
	    "load", "active_jobs", 1, "max_jobs", 4, "encryption_public_key",
	    "kX2v0sQbZc3Lw8sJx1bq3b0eWq0s8cTn2Y1x5xB7a2E", "version", "0.9.1-" ODD);
}

#define N_NODES 6

static troop_identity nodes[N_NODES];

static void register_varied(void)
{
	troop_identity owner;
	json_t *b;

	identity_generate(&owner);
	for (int i = 0; i < N_NODES; i++)
		identity_generate(&nodes[i]);

	/* 0: nothing but the required fields */
	heartbeat(&nodes[0], json_pack("{s:s, s:s, s:i, s:s}", "node_id", nodes[0].id,
	    "tailscale_ip", "127.0.0.1", "port", 1, "status", "IDLE"));

	/* 1: everything, odd names everywhere */
	b = base(&nodes[1], ODD, "IDLE");
	json_object_set_new(b, "models", json_pack(
	    "[{s:s, s:s, s:I, s:s, s:i, s:{s:b, s:b, s:b}, s:[s, s, s]},"
	    " {s:s, s:s, s:I, s:s}]",
	    "name", "json-" ODD, "content_hash", "sha256:" ODD, "size_bytes",
	    (json_int_t)4661211808LL, "engine", "ollama", "context_length", 131072,
	    "capabilities", "tools", 1, "vision", 0, "embeddings", 1,
	    "endpoints", "chat", "responses", "count_tokens",
	    "name", "json-plain", "content_hash", "", "size_bytes", (json_int_t)0, "engine", ""));
	json_object_set_new(b, "hardware", json_pack("{s:s, s:i, s:I, s:I, s:i, s:s}", "gpu",
	    "NVIDIA \"H100\" " ODD, "gpu_count", 8, "vram_total", (json_int_t)85899345920LL,
	    "vram_free", (json_int_t)0, "gpu_util", 100, "source", "nvml"));
	json_object_set_new(b, "engines", json_pack("[{s:s, s:s, s:i}, {s:s, s:s, s:i}]",
	    "type", "vllm", "version", "0.6 " ODD, "port", 8000, "type", "ollama", "version",
	    "", "port", 0));
	json_object_set_new(b, "seal_key", json_string("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"));
	json_object_set_new(b, "owner", json_string(owner.id));
	heartbeat(&nodes[1], b);

	/* 2: hardware without VRAM, utilisation or source; BUSY */
	b = base(&nodes[2], "\xe6\x97\xa5\xe6\x9c\xac", "BUSY");
	json_object_set_new(b, "models", json_pack("[{s:s, s:s, s:I, s:s, s:{s:b}}]", "name",
	    "json-plain", "content_hash", "sha256:abc", "size_bytes", (json_int_t)7, "engine",
	    "vllm", "capabilities", "vision", 0));
	json_object_set_new(b, "hardware", json_pack("{s:s, s:i}", "gpu", "", "gpu_count", 0));
	heartbeat(&nodes[2], b);

	/* 3: engines without hardware; endpoints without capabilities */
	b = base(&nodes[3], "", "IDLE");
	json_object_set_new(b, "models", json_pack("[{s:s, s:s, s:I, s:s, s:[s]}]", "name",
	    "json-plain", "content_hash", "", "size_bytes", (json_int_t)1, "engine", "vllm",
	    "endpoints", "embeddings"));
	json_object_set_new(b, "engines", json_pack("[{s:s, s:s, s:i}]", "type", "llama.cpp",
	    "version", "b4000", "port", 8080));
	heartbeat(&nodes[3], b);

	/* 4: hardware only, VRAM but no utilisation */
	b = base(&nodes[4], "back\\slash", "IDLE");
	json_object_set_new(b, "hardware", json_pack("{s:s, s:i, s:I, s:I}", "gpu", "cpu",
	    "gpu_count", 1, "vram_total", (json_int_t)-1, "vram_free", (json_int_t)-1));
	heartbeat(&nodes[4], b);

	/* 5: 40 models */
	b = base(&nodes[5], "many", "IDLE");
	{
		json_t *ms = json_array();
		for (int k = 0; k < 40; k++) {
			char name[64];
			snprintf(name, sizeof(name), "json-many-%02d-\xc3\xa9\"", k);
			json_array_append_new(ms, json_pack("{s:s, s:s, s:I, s:s, s:i}", "name", name,
			    "content_hash", "", "size_bytes", (json_int_t)k, "engine", "ollama",
			    "context_length", k));
		}
		json_object_set_new(b, "models", ms);
	}
	heartbeat(&nodes[5], b);
}

/* Every node of a /peers reply `path` is what /nodes/{id} says of it;
 * returns how many it listed. */
static size_t check_reply(const char *path)
{
	json_t *peers = NULL, *n;
	size_t i, count;

	assert_int_equal(get_json(path, &peers), 200);
	count = json_array_size(json_object_get(peers, "nodes"));
	assert_int_equal(json_integer_value(json_object_get(peers, "count")), (json_int_t)count);
	assert_non_null(json_object_get(peers, "truncated"));
	assert_non_null(json_object_get(peers, "next_cursor"));
	assert_int_equal(json_object_size(peers), 4);
	json_array_foreach(json_object_get(peers, "nodes"), i, n) {
		char p[200];
		json_t *one = NULL;

		snprintf(p, sizeof(p), "/nodes/%s", json_string_value(json_object_get(n, "node_id")));
		assert_int_equal(get_json(p, &one), 200);
		if (!json_equal(n, one)) {
			char *a = json_dumps(n, JSON_SORT_KEYS), *b = json_dumps(one, JSON_SORT_KEYS);
			fail_msg("%s: the /peers record differs from /nodes/{id}:\n%s\n%s", path, a, b);
		}
		json_decref(one);
	}
	json_decref(peers);
	return count;
}

static void test_same_as_tree(void **state)
{
	(void)state;
	register_varied();
	assert_int_equal(check_reply("/peers"), N_NODES);
	assert_int_equal(check_reply("/peers?limit=1000"), N_NODES);
	assert_int_equal(check_reply("/peers?model=json-plain"), 3);
	/* by content hash */
	assert_int_equal(check_reply("/peers?model=sha256:abc"), 1);
	assert_int_equal(check_reply("/peers?model=json-many-07-%C3%A9%22"), 1);
	{
		/* pages of two */
		json_t *p = NULL;
		size_t seen = 0;
		char path[300] = "/peers?limit=2";

		for (int k = 0; k < 10; k++) {
			const char *next;
			seen += check_reply(path);
			assert_int_equal(get_json(path, &p), 200);
			next = json_string_value(json_object_get(p, "next_cursor"));
			if (!next) {
				json_decref(p);
				break;
			}
			assert_true(json_is_true(json_object_get(p, "truncated")));
			snprintf(path, sizeof(path), "/peers?limit=2&cursor=%s", next);
			json_decref(p);
		}
		assert_int_equal(seen, N_NODES);
	}
}

static int64_t wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static json_int_t last_seen_of(const char *path, const char *id)
{
	json_t *p = NULL, *n;
	json_int_t v = -1;
	size_t i;

	assert_int_equal(get_json(path, &p), 200);
	json_array_foreach(json_object_get(p, "nodes"), i, n)
		if (strcmp(json_string_value(json_object_get(n, "node_id")), id) == 0)
			v = json_integer_value(json_object_get(n, "last_seen"));
	json_decref(p);
	return v;
}

static json_t *cache_body(const troop_identity *id)
{
	json_t *b = base(id, "cached", "IDLE");

	json_object_set_new(b, "models", json_pack("[{s:s, s:s, s:I, s:s}]", "name",
	    "json-cache", "content_hash", "", "size_bytes", (json_int_t)1, "engine", "vllm"));
	return b;
}

static void test_cache(void **state)
{
	troop_identity a, b;
	json_int_t first, cached, later;
	int64_t t0;

	(void)state;
	if (getenv("TROOP_TEST_REGISTRY_URL") && *getenv("TROOP_TEST_REGISTRY_URL"))
		skip();   /* the cache is the in-process registry's */
	identity_generate(&a);
	identity_generate(&b);
	heartbeat(&a, cache_body(&a));
	/* the next heartbeat must fall in a later second than this one (and
	 * not in its first milliseconds: time() may lag a clock tick) */
	t0 = wall_ms() / 1000;
	while (wall_ms() / 1000 == t0 || wall_ms() % 1000 < 30 || wall_ms() % 1000 > 150)
		harness_sleep_ms(5);
	first = last_seen_of("/peers?model=json-cache", a.id);
	assert_true(first > 0);
	t0 = wall_ms();
	/* the same heartbeat again: only last_seen (and availability) move */
	heartbeat(&a, cache_body(&a));
	cached = last_seen_of("/peers?model=json-cache", a.id);
	if (wall_ms() - t0 < 800)
		assert_int_equal(cached, first);
	/* a node that joins shows at once */
	heartbeat(&b, cache_body(&b));
	assert_true(last_seen_of("/peers?model=json-cache", b.id) > 0);
	/* and after a second the reply is built again */
	harness_sleep_ms(1100);
	later = last_seen_of("/peers?model=json-cache", a.id);
	printf("# last_seen %lld, within the second %lld, after it %lld\n", (long long)first,
	    (long long)cached, (long long)later);
	assert_true(later > first);
}

static int setup(void **state)
{
	static const char *const extra[] = { "--node-ttl", "600", "--anon-rate-limit",
		"100000", NULL };
	(void)state;
	return harness_start_coordinator_tmp(&coord, tmp, sizeof(tmp), extra);
}

static int teardown(void **state)
{
	(void)state;
	harness_stop(&coord, SIGTERM);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_as_tree),
		cmocka_unit_test(test_cache),
	};
	curl_global_init(CURL_GLOBAL_ALL);
	return cmocka_run_group_tests(tests, setup, teardown);
}
