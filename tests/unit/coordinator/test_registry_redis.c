/*
 * test_registry_redis.c - what only the Redis registry has to get right:
 * two coordinators (separate handles) sharing nodes, nonces, rate windows
 * and one-shot values; key prefixes keeping deployments apart; index
 * entries left behind by records Redis dropped on its own; credentials and
 * database numbers in the URL; and a Redis restart mid-run.
 *
 * Needs a server: TROOP_TEST_REGISTRY_URL=redis://127.0.0.1:PORT, and for
 * the restart test shell commands that stop and start it,
 * TROOP_TEST_REDIS_STOP and TROOP_TEST_REDIS_START.
 * tests/integration/test_pg_backends.sh sets all three.  Without the URL
 * (the plain unit run) every test is skipped.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
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
#include "registry.h"

#ifdef TROOP_HAVE_HIREDIS
#include <hiredis/hiredis.h>

#define NOW 1764000000
#define TTL 30

static const char *base_url(void)
{
	const char *u = getenv("TROOP_TEST_REGISTRY_URL");
	return (u != NULL && strncmp(u, "redis://", 8) == 0) ? u : NULL;
}

static void need_server(void)
{
	if (base_url() == NULL) {
		print_message("TROOP_TEST_REGISTRY_URL is not a redis:// URL: skipped\n");
		skip();
	}
}

/* A key prefix no other test or run uses. */
static void fresh_prefix(char *out, size_t cap)
{
	static int seq;
	snprintf(out, cap, "rt%ld-%ld-%d:", (long)getpid(), (long)time(NULL) % 100000, ++seq);
}

/* base URL + "?prefix=P" (+ extra query options) */
static void url_for(char *out, size_t cap, const char *prefix, const char *extra)
{
	snprintf(out, cap, "%s?prefix=%s%s%s", base_url(), prefix, extra ? "&" : "",
	    extra ? extra : "");
}

static registry *open_prefix(const char *prefix, const registry_opts *o)
{
	char url[512];
	registry *r = NULL;
	url_for(url, sizeof url, prefix, NULL);
	if (registry_open(&r, url, o) != 0)
		fail_msg("registry_open %s: %s", url, troop_error_msg());
	return r;
}

/* A direct connection to the test server, to look behind the backend. */
static redisContext *direct(void)
{
	char host[256] = "";
	int port = 0;
	if (sscanf(base_url(), "redis://%255[^:/]:%d", host, &port) != 2)
		fail_msg("cannot parse %s", base_url());
	redisContext *c = redisConnect(host, port);
	assert_non_null(c);
	assert_int_equal(c->err, 0);
	return c;
}

static long long direct_int(redisContext *c, const char *fmt, const char *a, const char *b)
{
	redisReply *r = redisCommand(c, fmt, a, b);
	assert_non_null(r);
	long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	freeReplyObject(r);
	return v;
}

static void make_node(registry_node *n, registry_model *m, const char *id, const char *model,
    const char *hash)
{
	memset(n, 0, sizeof *n);
	memset(m, 0, sizeof *m);
	snprintf(n->node_id, sizeof n->node_id, "%s", id);
	snprintf(n->ip, sizeof n->ip, "100.64.0.9");
	n->port = 8421;
	n->max_jobs = 2;
	snprintf(n->owner, sizeof n->owner, "owner-%s", id);
	snprintf(m->name, sizeof m->name, "%s", model);
	snprintf(m->content_hash, sizeof m->content_hash, "%s", hash);
	snprintf(m->engine, sizeof m->engine, "ollama");
	m->size_bytes = 42;
	n->models = m;
	n->n_models = 1;
}

static size_t find_count(registry *r, const char *model, int64_t now)
{
	registry_node *out = NULL;
	size_t n = 0;
	assert_int_equal(registry_find_nodes(&out, &n, r, model, now, 1000, 0), 0);
	registry_nodes_free(out, n);
	return n;
}

/* ---- two coordinators ----------------------------------------------------------- */

#define TAKERS 8
#define ONE_SHOTS 200

struct take_ctx {
	registry *r;
	pthread_barrier_t *barrier;
	int wins, errors;
};

static void *take_thread(void *arg)
{
	struct take_ctx *x = arg;
	pthread_barrier_wait(x->barrier);
	for (int i = 0; i < ONE_SHOTS; i++) {
		char key[32], buf[16];
		snprintf(key, sizeof key, "challenge-%d", i);
		int rc = registry_kv_take(buf, sizeof buf, NULL, x->r, key, NOW);
		if (rc == 0)
			x->wins++;
		else if (rc != TROOP_ENOTFOUND)
			x->errors++;
	}
	return NULL;
}

static void test_two_coordinators(void **state)
{
	(void)state;
	need_server();
	char prefix[64];
	fresh_prefix(prefix, sizeof prefix);
	registry *r1 = open_prefix(prefix, NULL), *r2 = open_prefix(prefix, NULL);
	registry_node n, got;
	registry_model m;

	make_node(&n, &m, "node-1", "llama3:8b", "sha256:aaa");
	assert_int_equal(registry_put_node(r1, &n, TTL, NOW), 0);
	assert_int_equal(registry_get_node(&got, r2, "node-1", NOW, REGISTRY_WITH_MODELS), 0);
	assert_string_equal(got.owner, "owner-node-1");
	assert_int_equal(got.n_models, 1);
	registry_node_clear(&got);
	assert_int_equal(find_count(r2, "sha256:aaa", NOW), 1);
	assert_int_equal(registry_add_active_job(r2, "node-1", 1), 0);
	assert_int_equal(registry_get_node(&got, r1, "node-1", NOW, 0), 0);
	assert_int_equal(got.active_jobs, 1);
	registry_node_clear(&got);
	n.status = NODE_OFFLINE;
	assert_int_equal(registry_put_node(r2, &n, TTL, NOW + 1), 0);
	assert_int_equal(find_count(r1, "llama3:8b", NOW + 1), 0);

	/* a nonce seen by one coordinator is a replay at the other */
	assert_int_equal(registry_nonce_check(r1, "alice", "n-1", NOW), 0);
	assert_int_equal(registry_nonce_check(r2, "alice", "n-1", NOW + 1), TROOP_EAUTH);
	/* one rate window for both */
	assert_int_equal(registry_rate_check(r1, "poh:node-1", 60, 3, NOW), 0);
	assert_int_equal(registry_rate_check(r2, "poh:node-1", 60, 3, NOW), 0);
	assert_int_equal(registry_rate_check(r1, "poh:node-1", 60, 3, NOW), 0);
	assert_int_equal(registry_rate_check(r2, "poh:node-1", 60, 3, NOW), TROOP_ERATE);

	/* one-shot values: of all the takers on both, one wins each */
	for (int i = 0; i < ONE_SHOTS; i++) {
		char key[32];
		snprintf(key, sizeof key, "challenge-%d", i);
		assert_int_equal(registry_kv_put(r1, key, "v", 1, 60, REGISTRY_KV_NX, NOW), 0);
	}
	pthread_t th[TAKERS];
	struct take_ctx ctx[TAKERS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, TAKERS);
	for (int i = 0; i < TAKERS; i++) {
		ctx[i] = (struct take_ctx){ i % 2 ? r1 : r2, &barrier, 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, take_thread, &ctx[i]), 0);
	}
	int wins = 0, errors = 0;
	for (int i = 0; i < TAKERS; i++) {
		pthread_join(th[i], NULL);
		wins += ctx[i].wins;
		errors += ctx[i].errors;
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(errors, 0);
	assert_int_equal(wins, ONE_SHOTS);
	registry_close(r1);
	registry_close(r2);
}

static void test_prefixes_apart(void **state)
{
	(void)state;
	need_server();
	char pa[64], pb[64];
	fresh_prefix(pa, sizeof pa);
	fresh_prefix(pb, sizeof pb);
	registry *a = open_prefix(pa, NULL), *b = open_prefix(pb, NULL);
	registry_node n;
	registry_model m;
	make_node(&n, &m, "node-1", "phi3", "");
	assert_int_equal(registry_put_node(a, &n, TTL, NOW), 0);
	assert_int_equal(find_count(b, "phi3", NOW), 0);
	assert_int_equal(registry_nonce_check(a, "k", "n", NOW), 0);
	assert_int_equal(registry_nonce_check(b, "k", "n", NOW), 0);
	size_t removed = 0, live = 0;
	assert_int_equal(registry_sweep(&removed, b, NOW + REGISTRY_NONCE_WINDOW), 0);
	assert_int_equal(removed, 1);  /* b's nonce only */
	assert_int_equal(registry_count_nodes(&live, a, NOW), 0);
	assert_int_equal(live, 1);
	registry_close(a);
	registry_close(b);
}

/* ---- records Redis dropped by itself ----------------------------------------------- */

static void test_stale_index_entries(void **state)
{
	(void)state;
	need_server();
	char prefix[64], key[128];
	fresh_prefix(prefix, sizeof prefix);
	registry *r = open_prefix(prefix, NULL);
	redisContext *d = direct();
	registry_node n;
	registry_model m;

	/* the record vanishes (as when its Redis TTL runs out): the index
	 * entries that point at it are skipped and cleaned on read */
	make_node(&n, &m, "node-1", "llama3:8b", "sha256:aaa");
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	snprintf(key, sizeof key, "%snode:node-1", prefix);
	assert_int_equal(direct_int(d, "DEL %s", key, NULL), 1);
	assert_int_equal(find_count(r, "llama3:8b", NOW), 0);
	snprintf(key, sizeof key, "%smodel:llama3:8b", prefix);
	assert_int_equal(direct_int(d, "EXISTS %s", key, NULL), 0);
	assert_int_equal(find_count(r, "sha256:aaa", NOW), 0);
	snprintf(key, sizeof key, "%shash:sha256:aaa", prefix);
	assert_int_equal(direct_int(d, "EXISTS %s", key, NULL), 0);
	registry_model_info *mi = NULL;
	size_t k = 0;
	assert_int_equal(registry_models(&mi, &k, r, NOW), 0);
	assert_int_equal(k, 0);
	snprintf(key, sizeof key, "%smodels", prefix);
	assert_int_equal(direct_int(d, "SCARD %s", key, NULL), 0);

	/* it comes back listing another model: the old entry is not followed */
	make_node(&n, &m, "node-2", "qwen2:7b", "sha256:bbb");
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	snprintf(key, sizeof key, "%snode:node-2", prefix);
	assert_int_equal(direct_int(d, "DEL %s", key, NULL), 1);
	make_node(&n, &m, "node-2", "phi3", "sha256:ccc");
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 1), 0);
	assert_int_equal(find_count(r, "qwen2:7b", NOW + 1), 0);
	assert_int_equal(find_count(r, "sha256:bbb", NOW + 1), 0);
	assert_int_equal(find_count(r, "phi3", NOW + 1), 1);
	assert_int_equal(registry_models(&mi, &k, r, NOW + 1), 0);
	assert_int_equal(k, 1);
	assert_string_equal(mi[0].name, "phi3");
	assert_string_equal(mi[0].content_hash, "sha256:ccc");
	free(mi);
	snprintf(key, sizeof key, "%smodel:qwen2:7b", prefix);
	assert_int_equal(direct_int(d, "EXISTS %s", key, NULL), 0);

	/* records carry a Redis TTL a little over theirs */
	snprintf(key, sizeof key, "%snode:node-2", prefix);
	long long pttl = direct_int(d, "PTTL %s", key, NULL);
	assert_true(pttl > (TTL - 5) * 1000LL && pttl <= (TTL + 5) * 1000LL);
	redisFree(d);
	registry_close(r);
}

/* ---- the id-ordered sets behind paging ---------------------------------------------- */

static long long zcard(redisContext *d, const char *prefix, const char *set)
{
	char key[192];
	snprintf(key, sizeof key, "%s%s", prefix, set);
	return direct_int(d, "ZCARD %s", key, NULL);
}

/* whether `id` is in the set (ZSCORE answers a string when it is) */
static bool in_set(redisContext *d, const char *prefix, const char *set, const char *id)
{
	char key[192];
	snprintf(key, sizeof key, "%s%s", prefix, set);
	redisReply *rep = redisCommand(d, "ZSCORE %s %s", key, id);
	assert_non_null(rep);
	bool in = rep->type == REDIS_REPLY_STRING;
	freeReplyObject(rep);
	return in;
}

/* the count of a page, and in last (when not NULL) its last node's id */
static size_t list_count(registry *r, const char *model, const char *after, int64_t now,
    size_t max, char last[REGISTRY_ID_MAX + 1])
{
	registry_node *out = NULL;
	size_t n = 0;
	assert_int_equal(registry_list_nodes(&out, &n, r, model, after, now, max, 0), 0);
	if (last != NULL && n > 0)
		memcpy(last, out[n - 1].node_id, sizeof out[n - 1].node_id);
	registry_nodes_free(out, n);
	return n;
}

/* /peers pages come from sets kept in id order (lnodes, lm:<name>,
 * lh:<hash>): a node is in those of what its record lists, leaves them
 * when it stops listing a model, is removed or swept, and an entry whose
 * record vanished is deleted by the page that meets it. */
static void test_id_order_sets(void **state)
{
	(void)state;
	need_server();
	char prefix[64];
	fresh_prefix(prefix, sizeof prefix);
	registry *r = open_prefix(prefix, NULL);
	redisContext *d = direct();
	registry_node n;
	registry_model m;

	for (int i = 1; i <= 3; i++) {
		char id[16];
		snprintf(id, sizeof id, "node-%d", i);
		make_node(&n, &m, id, "llama3:8b", "sha256:aaa");
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	}
	assert_int_equal(zcard(d, prefix, "lnodes"), 3);
	assert_int_equal(zcard(d, prefix, "lm:llama3:8b"), 3);
	assert_int_equal(zcard(d, prefix, "lh:sha256:aaa"), 3);

	/* a heartbeat that lists the same model changes nothing */
	make_node(&n, &m, "node-2", "llama3:8b", "sha256:aaa");
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 1), 0);
	assert_int_equal(zcard(d, prefix, "lm:llama3:8b"), 3);

	/* node-2 moves to another model and hash */
	make_node(&n, &m, "node-2", "phi3", "sha256:bbb");
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 2), 0);
	assert_false(in_set(d, prefix, "lm:llama3:8b", "node-2"));
	assert_false(in_set(d, prefix, "lh:sha256:aaa", "node-2"));
	assert_true(in_set(d, prefix, "lm:phi3", "node-2"));
	assert_true(in_set(d, prefix, "lh:sha256:bbb", "node-2"));
	assert_true(in_set(d, prefix, "lnodes", "node-2"));
	assert_int_equal(list_count(r, "llama3:8b", "", NOW + 2, 10, NULL), 2);
	assert_int_equal(list_count(r, "sha256:bbb", "", NOW + 2, 10, NULL), 1);

	/* removed: out of every set */
	assert_int_equal(registry_remove_node(r, "node-3"), 0);
	assert_false(in_set(d, prefix, "lnodes", "node-3"));
	assert_false(in_set(d, prefix, "lm:llama3:8b", "node-3"));
	assert_false(in_set(d, prefix, "lh:sha256:aaa", "node-3"));

	/* the record vanishes behind the registry's back: the page that meets
	 * its entries deletes them */
	char key[128];
	snprintf(key, sizeof key, "%snode:node-1", prefix);
	assert_int_equal(direct_int(d, "DEL %s", key, NULL), 1);
	assert_int_equal(list_count(r, "llama3:8b", "", NOW + 2, 10, NULL), 0);
	assert_false(in_set(d, prefix, "lm:llama3:8b", "node-1"));
	assert_int_equal(list_count(r, NULL, "", NOW + 2, 10, NULL), 1);
	assert_false(in_set(d, prefix, "lnodes", "node-1"));

	/* expired: not listed, then swept out of the sets */
	assert_int_equal(list_count(r, NULL, "", NOW + 2 + TTL, 10, NULL), 0);
	size_t removed = 0;
	assert_int_equal(registry_sweep(&removed, r, NOW + 2 + TTL), 0);
	assert_int_equal(zcard(d, prefix, "lnodes"), 0);
	assert_int_equal(zcard(d, prefix, "lm:phi3"), 0);
	assert_int_equal(zcard(d, prefix, "lh:sha256:bbb"), 0);

	/* pages of a model with many stale entries before the live ones still
	 * fill: 300 records vanish, the 20 after them are listed */
	for (int i = 0; i < 320; i++) {
		char id[16];
		snprintf(id, sizeof id, "p%04d", i);
		make_node(&n, &m, id, "big", "sha256:ccc");
		assert_int_equal(registry_put_node(r, &n, TTL, NOW + 3), 0);
		if (i < 300) {
			snprintf(key, sizeof key, "%snode:%s", prefix, id);
			assert_int_equal(direct_int(d, "DEL %s", key, NULL), 1);
		}
	}
	char last[REGISTRY_ID_MAX + 1] = "";
	assert_int_equal(list_count(r, "big", "", NOW + 3, 15, last), 15);
	assert_string_equal(last, "p0314");
	assert_int_equal(zcard(d, prefix, "lm:big"), 20);
	assert_int_equal(list_count(r, "big", last, NOW + 3, 15, last), 5);
	assert_string_equal(last, "p0319");
	redisFree(d);
	registry_close(r);
}

/* ---- records read in place or with jansson ----------------------------------------- */

static void hset(redisContext *d, const char *prefix, const char *id, const char *field,
    const char *value)
{
	char key[192];
	snprintf(key, sizeof key, "%snode:%s", prefix, id);
	redisReply *rep = redisCommand(d, "HSET %s %s %s", key, field, value);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
	freeReplyObject(rep);
}

/* A record's JSON fields are read in place when they are plain (ASCII, no
 * escapes) and with jansson when not; both give the same node.  Texts
 * another writer could have produced (spaces, other key orders, unknown
 * keys, a repeated object, a real where an integer was) read as jansson
 * reads them. */
static void test_record_forms(void **state)
{
	(void)state;
	need_server();
	char prefix[64];
	fresh_prefix(prefix, sizeof prefix);
	registry *r = open_prefix(prefix, NULL);
	redisContext *d = direct();
	registry_node n, got;
	registry_model m;

	/* names that need escapes or are not ASCII: jansson's path */
	const char *names[] = { "box \"A\" caf\xc3\xa9", "tab\there\\", "plain-box" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		make_node(&n, &m, "node-f", "llama3:8b", "sha256:aaa");
		snprintf(n.name, sizeof n.name, "%s", names[i]);
		snprintf(m.engine, sizeof m.engine, "%s", i == 0 ? "\xc3\xa9ngine" : "ollama");
		m.context_length = 8192;
		m.caps = m.caps_known = 3;
		m.endpoints = 5;
		n.facts.multiplier = 0.1;
		n.facts.rep_speed = 1.0 / 3;
		n.facts.tokens_per_s = 1e-300;
		n.facts.failovers = INT64_MAX;
		snprintf(n.facts.hw_class, sizeof n.facts.hw_class, "%s", i == 1 ? "g\"pu" : "gpu");
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
		assert_int_equal(registry_get_node(&got, r, "node-f", NOW, REGISTRY_WITH_ALL), 0);
		assert_string_equal(got.name, names[i]);
		assert_string_equal(got.owner, n.owner);
		assert_string_equal(got.ip, n.ip);
		assert_int_equal(got.port, n.port);
		assert_int_equal(got.max_jobs, n.max_jobs);
		assert_int_equal(got.last_seen, NOW);
		assert_int_equal(got.n_models, 1);
		assert_string_equal(got.models[0].name, "llama3:8b");
		assert_string_equal(got.models[0].engine, m.engine);
		assert_int_equal(got.models[0].size_bytes, 42);
		assert_int_equal(got.models[0].context_length, 8192);
		assert_int_equal(got.models[0].caps, 3);
		assert_int_equal(got.models[0].endpoints, 5);
		assert_true(got.facts.multiplier == 0.1);
		assert_true(got.facts.rep_speed == 1.0 / 3);
		assert_true(got.facts.tokens_per_s == 1e-300);
		assert_true(got.facts.failovers == INT64_MAX);
		assert_string_equal(got.facts.hw_class, n.facts.hw_class);
		registry_node_clear(&got);
	}

	/* written by hand */
	hset(d, prefix, "node-f", "f", " { \"seen\" : 7 , \"status\" : \"BUSY\", \"port\": 9000,"
	    " \"later\": [1, {\"x\": null}], \"name\": \"hand\", \"max_jobs\": 4 } ");
	hset(d, prefix, "node-f", "d", "{\"mul\":2,\"rp\":{\"av\":0.5,\"tps\":9},\"job\":3,"
	    "\"rp\":{\"av\":0.25}}");
	hset(d, prefix, "node-f", "m", "[[\"a\",\"h\",1,\"e\",0,1,1,1,\"more\",[2]],[\"b\"]]");
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW, REGISTRY_WITH_ALL), 0);
	assert_int_equal(got.facts.jobs, 3);
	assert_true(got.facts.rep_availability == 0.25);  /* the last "rp" whole */
	assert_true(got.facts.tokens_per_s == 0);
	assert_int_equal(got.n_models, 2);
	assert_int_equal(got.models[0].size_bytes, 1);
	assert_int_equal(got.models[0].caps, 1);
	assert_string_equal(got.models[1].name, "b");
	assert_string_equal(got.models[1].engine, "");
	registry_node_clear(&got);
	/* the same with a real where an integer was: jansson's reading */
	hset(d, prefix, "node-f", "d", "{\"mul\":2,\"rp\":{\"av\":0.5,\"tps\":9},\"job\":1.5,"
	    "\"rp\":{\"av\":0.25}}");
	hset(d, prefix, "node-f", "m", "[[\"a\",\"h\",1.5,\"e\"],[\"b\",\"\",7]]");
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW, REGISTRY_WITH_ALL), 0);
	assert_string_equal(got.name, "hand");
	assert_int_equal(got.status, NODE_BUSY);
	assert_int_equal(got.port, 9000);
	assert_int_equal(got.max_jobs, 4);
	assert_int_equal(got.last_seen, 7);
	assert_string_equal(got.owner, "");       /* absent */
	assert_true(got.facts.multiplier == 2);
	assert_int_equal(got.facts.jobs, 0);       /* a real is no integer to jansson */
	assert_true(got.facts.rep_availability == 0.25);  /* the last "rp" whole */
	assert_true(got.facts.tokens_per_s == 0);
	assert_int_equal(got.n_models, 2);
	assert_int_equal(got.models[0].size_bytes, 0);
	assert_string_equal(got.models[0].engine, "e");
	assert_int_equal(got.models[1].size_bytes, 7);
	registry_node_clear(&got);

	/* not JSON, or no status: corrupt, said so */
	hset(d, prefix, "node-f", "f", "{\"name\":\"x\"}");
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW, 0), TROOP_ERR);
	hset(d, prefix, "node-f", "f", "{\"status\":\"IDLE\"");
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW, 0), TROOP_ERR);
	hset(d, prefix, "node-f", "f", "{\"status\":\"IDLE\"}");
	hset(d, prefix, "node-f", "m", "{}");
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW, REGISTRY_WITH_MODELS), TROOP_ERR);
	assert_int_equal(registry_get_node(&got, r, "node-f", NOW, 0), 0);
	assert_int_equal(got.status, NODE_IDLE);
	registry_node_clear(&got);
	redisFree(d);
	registry_close(r);
}

/* ---- URL forms ----------------------------------------------------------------------- */

static void test_url_options(void **state)
{
	(void)state;
	need_server();
	char prefix[64], url[512], key[128];
	fresh_prefix(prefix, sizeof prefix);
	redisContext *d = direct();
	registry *r = NULL;
	registry_node n;
	registry_model m;
	make_node(&n, &m, "node-1", "phi3", "");

	/* a user with a password, and database 3 */
	redisReply *rep = redisCommand(d, "ACL SETUSER troop-test on >s3cr%%t ~* &* +@all");
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	const char *hostport = base_url() + strlen("redis://");
	snprintf(url, sizeof url, "redis://troop-test:s3cr%%25t@%s/3?prefix=%s&timeout_ms=2000",
	    hostport, prefix);
	assert_int_equal(registry_open(&r, url, NULL), 0);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	registry_close(r);
	rep = redisCommand(d, "SELECT 3");
	freeReplyObject(rep);
	snprintf(key, sizeof key, "%snode:node-1", prefix);
	assert_int_equal(direct_int(d, "EXISTS %s", key, NULL), 1);
	rep = redisCommand(d, "SELECT 0");
	freeReplyObject(rep);
	assert_int_equal(direct_int(d, "EXISTS %s", key, NULL), 0);

	/* a wrong password is refused, and the password is not in the message */
	snprintf(url, sizeof url, "redis://troop-test:wrong-pw@%s/3?prefix=%s", hostport, prefix);
	r = NULL;
	assert_int_equal(registry_open(&r, url, NULL), TROOP_EUNAVAIL);
	assert_null(strstr(troop_error_msg(), "wrong-pw"));
	assert_null(r);
	rep = redisCommand(d, "ACL DELUSER troop-test");
	freeReplyObject(rep);

	assert_int_equal(registry_open(&r, "redis://127.0.0.1:6379/x", NULL), TROOP_EINVAL);
	assert_int_equal(registry_open(&r, "redis://:6379", NULL), TROOP_EINVAL);
	assert_int_equal(registry_open(&r, "redis://127.0.0.1:6379?prefix=%zz", NULL),
	    TROOP_EINVAL);
	assert_int_equal(registry_open(&r, "unix://relative.sock", NULL), TROOP_EINVAL);
	/* credentials in a unix:// URL would be read as the path, and logged */
	assert_int_equal(registry_open(&r, "unix://:secret@/run/redis.sock", NULL), TROOP_EINVAL);
	assert_null(r);
	redisFree(d);
}

/* ---- Redis restarted ------------------------------------------------------------------ */

static void run_cmd(const char *var)
{
	const char *cmd = getenv(var);
	if (cmd == NULL || *cmd == '\0')
		fail_msg("%s is not set: cannot restart the server", var);
	int rc = system(cmd);
	if (rc != 0)
		fail_msg("%s (%s) failed: %d", var, cmd, rc);
}

static void *put_thread(void *arg)
{
	registry *r = arg;
	registry_node n;
	registry_model m;
	char id[32];
	snprintf(id, sizeof id, "node-t%lu", (unsigned long)(pthread_self() % 100000));
	make_node(&n, &m, id, "llama3:8b", "sha256:aaa");
	return (void *)(intptr_t)registry_put_node(r, &n, TTL, NOW);
}

static void test_restart(void **state)
{
	(void)state;
	need_server();
	char prefix[64];
	fresh_prefix(prefix, sizeof prefix);
	registry *r = open_prefix(prefix, NULL);
	registry_node n, got;
	registry_model m;
	char buf[16];
	size_t live = 0, removed = 0;

	/* several connections in the pool */
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, put_thread, r), 0);
	for (int i = 0; i < 4; i++) {
		void *rc = NULL;
		pthread_join(th[i], &rc);
		assert_int_equal((int)(intptr_t)rc, 0);
	}
	make_node(&n, &m, "node-1", "llama3:8b", "sha256:aaa");
	assert_int_equal(registry_put_node(r, &n, TTL, NOW), 0);
	assert_int_equal(registry_kv_put(r, "poh:1", "x", 1, 60, 0, NOW), 0);
	assert_int_equal(registry_count_nodes(&live, r, NOW), 0);
	assert_true(live >= 2);

	run_cmd("TROOP_TEST_REDIS_STOP");
	for (int round = 0; round < 3; round++) {
		assert_int_equal(registry_put_node(r, &n, TTL, NOW), TROOP_EUNAVAIL);
		assert_non_null(strstr(troop_error_msg(), "unavailable"));
		assert_int_equal(registry_get_node(&got, r, "node-1", NOW, 0), TROOP_EUNAVAIL);
		registry_node *out = NULL;
		size_t k = 7;
		assert_int_equal(registry_find_nodes(&out, &k, r, "llama3:8b", NOW, 10, 0),
		    TROOP_EUNAVAIL);
		assert_null(out);
		assert_int_equal(k, 0);
		assert_int_equal(registry_nonce_check(r, "k", "n-1", NOW), TROOP_EUNAVAIL);
		assert_int_equal(registry_rate_check(r, "x", 10, 3, NOW), TROOP_EUNAVAIL);
		assert_int_equal(registry_kv_get(buf, sizeof buf, NULL, r, "poh:1", NOW),
		    TROOP_EUNAVAIL);
		assert_int_equal(registry_count_nodes(&live, r, NOW), TROOP_EUNAVAIL);
		assert_int_equal(registry_sweep(&removed, r, NOW), TROOP_EUNAVAIL);
		assert_int_equal(registry_add_active_job(r, "node-1", 1), TROOP_EUNAVAIL);
	}
	registry *r2 = NULL;
	char url[512];
	url_for(url, sizeof url, prefix, "connect_timeout_ms=500");
	assert_int_equal(registry_open(&r2, url, NULL), TROOP_EUNAVAIL);
	assert_null(r2);

	/* back, empty (no persistence): nodes re-register with their next heartbeat */
	run_cmd("TROOP_TEST_REDIS_START");
	assert_int_equal(registry_get_node(&got, r, "node-1", NOW, 0), TROOP_ENOTFOUND);
	assert_int_equal(registry_count_nodes(&live, r, NOW), 0);
	assert_int_equal(live, 0);
	assert_int_equal(registry_kv_get(buf, sizeof buf, NULL, r, "poh:1", NOW), TROOP_ENOTFOUND);
	assert_int_equal(registry_put_node(r, &n, TTL, NOW + 5), 0);
	assert_int_equal(find_count(r, "llama3:8b", NOW + 5), 1);
	assert_int_equal(registry_get_node(&got, r, "node-1", NOW + 5, REGISTRY_WITH_ALL), 0);
	assert_int_equal(got.n_models, 1);
	registry_node_clear(&got);
	assert_int_equal(registry_nonce_check(r, "k", "n-1", NOW + 5), 0);
	assert_int_equal(registry_nonce_check(r, "k", "n-1", NOW + 5), TROOP_EAUTH);
	registry_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_coordinators),
		cmocka_unit_test(test_prefixes_apart),
		cmocka_unit_test(test_stale_index_entries),
		cmocka_unit_test(test_id_order_sets),
		cmocka_unit_test(test_record_forms),
		cmocka_unit_test(test_url_options),
		cmocka_unit_test(test_restart),
	};
	if (base_url() == NULL) {
		/* 77: ctest reports the program as skipped, not as passed */
		printf("TROOP_TEST_REGISTRY_URL is not a redis:// URL: every test skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no hiredis: nothing to test */

int main(void)
{
	printf("the backend is not built in: skipped\n");
	return 77;   /* skipped */
}

#endif
