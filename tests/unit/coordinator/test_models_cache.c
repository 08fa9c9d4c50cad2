/*
 * test_models_cache.c - the model list of /v1/models and /metrics
 * (api_nodes_models): exact while the registry is small; with
 * API_MODELS_CACHE_NODES live nodes or more, where every read is a pass
 * over every node, the list the sweeper read (api_nodes_models_refresh),
 * read again by a request only when it is older than API_MODELS_CACHE_S.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "coordinator/coordinator.h"
#include "coordinator/registry.h"

#define NOW 1800000000

static void put(registry *r, const char *id, const char *model, int64_t now)
{
	registry_node n;
	registry_model m;

	memset(&n, 0, sizeof(n));
	memset(&m, 0, sizeof(m));
	snprintf(n.node_id, sizeof(n.node_id), "%s", id);
	snprintf(n.ip, sizeof(n.ip), "100.64.0.1");
	n.port = 8421;
	n.status = NODE_IDLE;
	n.max_jobs = 4;
	snprintf(m.name, sizeof(m.name), "%s", model);
	snprintf(m.engine, sizeof(m.engine), "ollama");
	n.models = &m;
	n.n_models = 1;
	assert_int_equal(registry_put_node(r, &n, 60, now), 0);
}

/* Whether the list has `model`, with `nodes` live nodes. */
static bool listed(registry *r, const char *model, size_t nodes, int64_t now)
{
	registry_model_info *mi = NULL;
	size_t n = 0;
	bool found = false;

	assert_int_equal(api_nodes_models(&mi, &n, r, now), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(mi[i].name, model) == 0 && mi[i].node_count == nodes)
			found = true;
	free(mi);
	return found;
}

static void test_models_cache(void **state)
{
	registry *r = NULL;
	char id[32];

	(void)state;
	assert_int_equal(registry_open(&r, NULL, NULL), 0);
	/* small: every read is exact */
	put(r, "node-a", "first:1b", NOW);
	assert_true(listed(r, "first:1b", 1, NOW));
	put(r, "node-b", "second:1b", NOW);
	assert_true(listed(r, "second:1b", 1, NOW));
	/* large: the second's list until the clock moves on */
	for (int i = 0; i < API_MODELS_CACHE_NODES; i++) {
		snprintf(id, sizeof(id), "bulk-%d", i);
		put(r, id, "bulk:7b", NOW);
	}
	assert_true(listed(r, "bulk:7b", API_MODELS_CACHE_NODES, NOW));
	put(r, "node-c", "third:1b", NOW);
	assert_false(listed(r, "third:1b", 1, NOW));
	assert_true(listed(r, "bulk:7b", API_MODELS_CACHE_NODES, NOW));
	assert_false(listed(r, "third:1b", 1, NOW + API_MODELS_CACHE_S));
	/* read again when older than that */
	assert_true(listed(r, "third:1b", 1, NOW + API_MODELS_CACHE_S + 1));
	assert_true(listed(r, "first:1b", 1, NOW + API_MODELS_CACHE_S + 1));
	/* or when the sweeper refreshes it */
	put(r, "node-d", "fourth:1b", NOW + 7);
	assert_false(listed(r, "fourth:1b", 1, NOW + 7));
	api_nodes_models_refresh(r, NOW + 7);
	assert_true(listed(r, "fourth:1b", 1, NOW + 7));
	/* which it does only while the list is asked for */
	put(r, "node-e", "fifth:1b", NOW + 8);
	api_nodes_models_refresh(r, NOW + 7 + API_MODELS_WANTED_S + 1);
	assert_false(listed(r, "fifth:1b", 1, NOW + 8));
	registry_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_models_cache),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
