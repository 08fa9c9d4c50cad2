/*
 * test_catalog.c - the worker's model catalog (catalog.h): lookup by name and hash,
 * engine priority, change detection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <sodium.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "endpoints.h"
#include "encoding.h"
#include "error.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"
#include "ticket.h"

/* ---- catalog ------------------------------------------------------------------------------ */

static void add_model(engine_info *e, const char *name, const char *hash)
{
	engine_model m = { .engine = e->type, .loaded = true, .size_bytes = 42 };

	snprintf(m.name, sizeof(m.name), "%s", name);
	snprintf(m.content_hash, sizeof(m.content_hash), "%s", hash);
	assert_int_equal(engine_model_list_add(&e->models, &m), 0);
}

static void test_catalog(void **state)
{
	engine_info e[3];
	catalog *c;
	char url[ENGINE_URL_MAX];
	engine_type t;
	bool changed;
	json_t *models, *engines;

	memset(e, 0, sizeof(e));
	e[0].type = ENGINE_OLLAMA;
	snprintf(e[0].url, sizeof(e[0].url), "http://127.0.0.1:11434");
	e[0].ready = true;
	snprintf(e[0].version, sizeof(e[0].version), "0.6.2");
	e[0].port = 11434;
	add_model(&e[0], "llama3:8b", "sha256:aaaa");
	add_model(&e[0], "shared", "");
	e[1].type = ENGINE_VLLM;
	snprintf(e[1].url, sizeof(e[1].url), "http://127.0.0.1:8000");
	e[1].ready = true;
	add_model(&e[1], "shared", "");
	e[2].type = ENGINE_LLAMACPP;
	snprintf(e[2].url, sizeof(e[2].url), "http://127.0.0.1:8080");
	e[2].ready = false;  /* still loading: serves nothing */
	add_model(&e[2], "loading-model", "");

	assert_int_equal(catalog_new(&c), 0);
	assert_int_equal(catalog_lookup(c, "llama3:8b", url, sizeof(url), &t), TROOP_ENOMODEL);
	assert_int_equal(catalog_set(c, e, 3, &changed), 0);
	assert_true(changed);
	assert_int_equal(catalog_model_count(c), 2);
	assert_int_equal(catalog_lookup(c, "llama3:8b", url, sizeof(url), &t), 0);
	assert_string_equal(url, "http://127.0.0.1:11434");
	assert_int_equal(t, ENGINE_OLLAMA);
	/* by content hash */
	assert_int_equal(catalog_lookup(c, "sha256:aaaa", url, sizeof(url), &t), 0);
	assert_int_equal(t, ENGINE_OLLAMA);
	/* vLLM beats Ollama for a model both serve */
	assert_int_equal(catalog_lookup(c, "shared", url, sizeof(url), &t), 0);
	assert_string_equal(url, "http://127.0.0.1:8000");
	assert_int_equal(t, ENGINE_VLLM);
	assert_int_equal(catalog_lookup(c, "loading-model", url, sizeof(url), &t), TROOP_ENOMODEL);
	assert_int_equal(catalog_lookup(c, "", url, sizeof(url), &t), TROOP_ENOMODEL);

	models = catalog_models_json(c);
	assert_int_equal(json_array_size(models), 2);
	{
		json_t *m0 = json_array_get(models, 0);
		assert_string_equal(json_string_value(json_object_get(m0, "name")), "llama3:8b");
		assert_string_equal(json_string_value(json_object_get(m0, "content_hash")),
		    "sha256:aaaa");
		assert_string_equal(json_string_value(json_object_get(m0, "engine")), "ollama");
		assert_int_equal(json_integer_value(json_object_get(m0, "size_bytes")), 42);
		assert_string_equal(json_string_value(json_object_get(json_array_get(models, 1),
		    "engine")), "vllm");
	}
	json_decref(models);
	engines = catalog_engines_json(c);
	assert_int_equal(json_array_size(engines), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(engines, 0),
	    "version")), "0.6.2");
	json_decref(engines);

	/* the same again: no change; the loading engine becomes ready: change */
	assert_int_equal(catalog_set(c, e, 3, &changed), 0);
	assert_false(changed);
	e[2].ready = true;
	assert_int_equal(catalog_set(c, e, 3, &changed), 0);
	assert_true(changed);
	assert_int_equal(catalog_lookup(c, "loading-model", url, sizeof(url), &t), 0);
	assert_int_equal(t, ENGINE_LLAMACPP);
	{
		engine_info *copy;
		size_t n;
		assert_int_equal(catalog_engines_copy(c, &copy, &n), 0);
		assert_int_equal(n, 3);
		assert_int_equal(copy[0].models.count, 2);
		engine_info_array_free(copy, n);
	}
	for (int i = 0; i < 3; i++)
		engine_info_clear(&e[i]);
	catalog_free(c);
}

/* What the heartbeat says of each model: the capabilities its parser
 * found, and the endpoints of its engine (the default ones plus what the
 * probe found served natively); a change in them is a change. */
static void test_catalog_capabilities(void **state)
{
	engine_info e[1];
	catalog *c;
	bool changed;
	json_t *models, *m;

	(void)state;
	assert_int_equal(catalog_endpoints(0), PROTO_EP_CHAT | PROTO_EP_COMPLETIONS |
	    PROTO_EP_EMBEDDINGS);
	assert_int_equal(catalog_endpoints(ENDPOINT_RESPONSES | ENDPOINT_MESSAGES |
	    ENDPOINT_COUNT_TOKENS | ENDPOINT_TOKENIZE), PROTO_EP_ALL);
	memset(e, 0, sizeof(e));
	e[0].type = ENGINE_LLAMACPP;
	snprintf(e[0].url, sizeof(e[0].url), "http://127.0.0.1:8080");
	e[0].ready = true;
	add_model(&e[0], "tiny", "");
	e[0].models.items[0].context_length = 4096;
	e[0].models.items[0].caps_known = PROTO_CAP_VISION;
	assert_int_equal(catalog_new(&c), 0);
	assert_int_equal(catalog_set(c, e, 1, &changed), 0);
	models = catalog_models_json(c);
	m = json_array_get(models, 0);
	assert_int_equal(json_integer_value(json_object_get(m, "context_length")), 4096);
	assert_true(json_is_false(json_object_get(json_object_get(m, "capabilities"), "vision")));
	assert_null(json_object_get(json_object_get(m, "capabilities"), "tools"));
	assert_int_equal(json_array_size(json_object_get(m, "endpoints")), 3);
	json_decref(models);

	/* the probe found /v1/responses and /v1/messages: advertised */
	e[0].endpoints = ENDPOINT_RESPONSES | ENDPOINT_MESSAGES;
	assert_int_equal(catalog_set(c, e, 1, &changed), 0);
	assert_true(changed);
	models = catalog_models_json(c);
	m = json_array_get(models, 0);
	assert_int_equal(json_array_size(json_object_get(m, "endpoints")), 5);
	assert_string_equal(json_string_value(json_array_get(json_object_get(m, "endpoints"), 4)),
	    "messages");
	json_decref(models);
	/* the context changed (the engine restarted with another -c): a change */
	e[0].models.items[0].context_length = 8192;
	assert_int_equal(catalog_set(c, e, 1, &changed), 0);
	assert_true(changed);
	assert_int_equal(catalog_set(c, e, 1, &changed), 0);
	assert_false(changed);
	engine_info_clear(&e[0]);
	catalog_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catalog),
		cmocka_unit_test(test_catalog_capabilities),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
