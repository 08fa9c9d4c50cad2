/*
 * test_heartbeat.c - the worker's heartbeat body (heartbeat.h): the node record it sends.
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
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "encoding.h"
#include "error.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"
#include "seal.h"
#include "seal_keys.h"
#include "ticket.h"

static void add_model(engine_info *e, const char *name, const char *hash)
{
	engine_model m = { .engine = e->type, .loaded = true, .size_bytes = 42 };

	snprintf(m.name, sizeof(m.name), "%s", name);
	snprintf(m.content_hash, sizeof(m.content_hash), "%s", hash);
	assert_int_equal(engine_model_list_add(&e->models, &m), 0);
}

/* ---- heartbeat body ------------------------------------------------------------------------ */

static void test_heartbeat_body(void **state)
{
	troop_identity id;
	catalog *c;
	engine_info e;
	gpu_info g;
	heartbeat_opts o = { 0 };
	json_t *b, *hw;
	unsigned char x[32];
	size_t xn = 0;
	const char *enc;

	identity_generate(&id);
	memset(&e, 0, sizeof(e));
	e.type = ENGINE_OLLAMA;
	e.ready = true;
	e.port = 11434;
	snprintf(e.url, sizeof(e.url), "http://127.0.0.1:11434");
	add_model(&e, "llama3:8b", "sha256:bbbb");
	assert_int_equal(catalog_new(&c), 0);
	assert_int_equal(catalog_set(c, &e, 1, NULL), 0);
	o.id = &id;
	o.name = "box";
	o.address = "100.101.102.103";
	o.port = 8421;
	o.max_jobs = 4;
	o.cat = c;
	gpu_info_init_none(&g);
	g.count = 1;
	g.ndevices = 1;
	snprintf(g.devices[0].name, sizeof(g.devices[0].name), "NVIDIA Fake");
	g.devices[0].vram_total_mb = 24564;
	g.devices[0].vram_used_mb = 4084;
	g.devices[0].vram_free_mb = 20480;
	g.devices[0].util_percent = 3;
	gpu_info_summarize(&g);

	b = heartbeat_body(&o, "BUSY", &g, 2);
	assert_string_equal(json_string_value(json_object_get(b, "node_id")), id.id);
	assert_string_equal(json_string_value(json_object_get(b, "status")), "BUSY");
	assert_string_equal(json_string_value(json_object_get(b, "tailscale_ip")), "100.101.102.103");
	assert_int_equal(json_integer_value(json_object_get(b, "port")), 8421);
	assert_string_equal(json_string_value(json_object_get(b, "version")), "troop/" TROOP_VERSION);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(b, "load"),
	    "active_jobs")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(b, "load"),
	    "max_jobs")), 4);
	assert_null(json_object_get(b, "owner"));
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(b, "models"), 0), "content_hash")), "sha256:bbbb");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(
	    json_object_get(b, "engines"), 0), "port")), 11434);
	hw = json_object_get(b, "hardware");
	assert_string_equal(json_string_value(json_object_get(hw, "gpu")), "NVIDIA Fake");
	assert_int_equal(json_integer_value(json_object_get(hw, "gpu_count")), 1);
	assert_int_equal(json_integer_value(json_object_get(hw, "vram_total")), 24564);
	assert_int_equal(json_integer_value(json_object_get(hw, "vram_free")), 20480);
	assert_int_equal(json_integer_value(json_object_get(hw, "gpu_util")), 3);
	/* the X25519 key that goes with the node key */
	enc = json_string_value(json_object_get(b, "encryption_public_key"));
	assert_int_equal(b64url_decode(x, sizeof(x), &xn, enc, strlen(enc)), 0);
	assert_int_equal(xn, 32);

	/* no sealing keys: no statement */
	assert_null(json_object_get(b, "seal_key"));
	json_decref(b);

	/* with sealing keys: the statement of the current key, signed by the
	 * node (what troop up checks against the ticket's node id) */
	{
		char dir[] = "/tmp/troop-hbseal-XXXXXX", path[128];
		uint8_t pk[SEAL_PK_LEN], cur[SEAL_PK_LEN];

		assert_non_null(mkdtemp(dir));
		snprintf(path, sizeof(path), "%s/seal.key", dir);
		assert_int_equal(seal_keys_open(&o.seal, path, &id, 3600, (int64_t)time(NULL)), 0);
		b = heartbeat_body(&o, "IDLE", NULL, 0);
		assert_int_equal(seal_statement_verify(pk, NULL, json_string_value(
		    json_object_get(b, "seal_key")), id.id, (int64_t)time(NULL)), 0);
		seal_keys_current(o.seal, cur);
		assert_memory_equal(pk, cur, SEAL_PK_LEN);
		json_decref(b);
		seal_keys_free(o.seal);
		o.seal = NULL;
		unlink(path);
		rmdir(dir);
	}

	o.owner = "someone";
	b = heartbeat_body(&o, "IDLE", NULL, 0);
	assert_string_equal(json_string_value(json_object_get(b, "owner")), "someone");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(b, "hardware"),
	    "gpu_count")), 0);
	json_decref(b);
	engine_info_clear(&e);
	catalog_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heartbeat_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
