/*
 * test_worker_parts.c - the worker's pieces that need no network: the
 * token counter (against the recorded engine replies, fed at every byte
 * split), receipt bodies and job ids, the jti replay cache, the
 * coordinator key parser and keyring, the model catalog (lookup by name
 * and hash, engine priority, change detection), the heartbeat body, and
 * the receipt spool (files appear, are loaded back, are removed once the
 * coordinator accepts).
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
#include "encoding.h"
#include "error.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"
#include "ticket.h"

static char *fixture(const char *name, size_t *len)
{
	const char *dir = getenv("TROOP_FIXTURES");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "../shared/fixtures/engines", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* ---- token counter ------------------------------------------------------------- */

static void count(const char *text, size_t len, bool sse, size_t split,
    int64_t *pt, int64_t *ct, bool *rep)
{
	usage_counter *u;

	assert_int_equal(usage_counter_new(&u, sse), 0);
	if (split == 0 || split >= len) {
		usage_counter_feed(u, text, len);
	} else {
		usage_counter_feed(u, text, split);
		usage_counter_feed(u, text + split, len - split);
	}
	usage_counter_result(u, pt, ct, rep);
	usage_counter_free(u);
}

static void test_usage_from_stream_any_split(void **state)
{
	size_t len;
	char *sse = fixture("openai_chat_stream.sse", &len);

	/* the fixture ends with a usage chunk: 24 prompt, 5 completion */
	for (size_t split = 0; split <= len; split++) {
		int64_t pt, ct;
		bool rep;

		count(sse, len, true, split, &pt, &ct, &rep);
		assert_true(rep);
		assert_int_equal(pt, 24);
		assert_int_equal(ct, 5);
	}
	free(sse);
}

static void test_usage_counted_without_usage_chunk(void **state)
{
	size_t len;
	char *sse = fixture("openai_chat_stream.sse", &len);
	char *cut = strstr(sse, "data: {\"id\":\"chatcmpl-5f0c2d8e91b34a7c\",\"object\":"
	    "\"chat.completion.chunk\",\"created\":1787379410,\"model\":\"Qwen/Qwen2.5-7B-Instruct\","
	    "\"choices\":[],\"usage\"");
	char *noUsage;
	int64_t pt, ct;
	bool rep;

	assert_non_null(cut);
	/* the same stream without its usage chunk: content deltas are counted
	 * ("The", " sky", " is blue", "."; the role and the final empty delta
	 * are not) */
	noUsage = malloc(len + 1);
	memcpy(noUsage, sse, (size_t)(cut - sse));
	strcpy(noUsage + (cut - sse), "data: [DONE]\n\n");
	for (size_t split = 0; split <= strlen(noUsage); split += 7) {
		count(noUsage, strlen(noUsage), true, split, &pt, &ct, &rep);
		assert_false(rep);
		assert_int_equal(pt, 0);
		assert_int_equal(ct, 4);
	}
	free(noUsage);
	free(sse);
}

static void test_usage_from_json_reply(void **state)
{
	size_t len;
	char *js = fixture("openai_chat.json", &len);
	char *big;
	int64_t pt, ct;
	bool rep;

	for (size_t split = 0; split <= len; split += 13) {
		count(js, len, false, split, &pt, &ct, &rep);
		assert_true(rep);
		assert_int_equal(pt, 24);
		assert_int_equal(ct, 28);
	}
	/* a long reply: only the tail is kept, the usage is still found */
	big = malloc(len + 200000);
	memset(big, ' ', 200000);
	memcpy(big + 200000, js, len);
	count(big, len + 200000, false, 100000, &pt, &ct, &rep);
	assert_true(rep);
	assert_int_equal(ct, 28);
	free(big);
	/* no usage at all */
	count("{\"object\":\"list\",\"data\":[]}", 27, false, 0, &pt, &ct, &rep);
	assert_false(rep);
	assert_int_equal(ct, 0);
	free(js);
}

static void test_usage_completions_text(void **state)
{
	static const char s[] =
	    "data: {\"choices\":[{\"index\":0,\"text\":\"Slowly\"}]}\n\n"
	    "data: {\"choices\":[{\"index\":0,\"text\" : \" short.\"}]}\n\n"
	    "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n"
	    "data: [DONE]\n\n";
	int64_t pt, ct;
	bool rep;

	count(s, strlen(s), true, 0, &pt, &ct, &rep);
	assert_false(rep);
	assert_int_equal(ct, 2);
}

/* ---- records ---------------------------------------------------------------------- */

static void test_receipt_body_and_ids(void **state)
{
	worker_job j = { .prompt_tokens = 3, .completion_tokens = 9, .duration_ms = 1234,
		.started_at_ms = 1764000000123LL, .ended_at_ms = 1764000001357LL,
		.outcome = JOB_CUT_OFF };
	json_t *b;

	snprintf(j.job_id, sizeof(j.job_id), "AbC-_09");
	snprintf(j.requester, sizeof(j.requester), "requester");
	snprintf(j.model, sizeof(j.model), "llama3:8b");
	b = job_receipt_body(&j, "node");
	assert_string_equal(json_string_value(json_object_get(b, "job_id")), "AbC-_09");
	assert_string_equal(json_string_value(json_object_get(b, "node_id")), "node");
	assert_string_equal(json_string_value(json_object_get(b, "requester")), "requester");
	assert_string_equal(json_string_value(json_object_get(b, "model")), "llama3:8b");
	assert_string_equal(json_string_value(json_object_get(b, "outcome")), "cut_off");
	assert_int_equal(json_integer_value(json_object_get(b, "duration_ms")), 1234);
	assert_int_equal(json_integer_value(json_object_get(b, "prompt_tokens")), 3);
	assert_int_equal(json_integer_value(json_object_get(b, "completion_tokens")), 9);
	assert_int_equal(json_integer_value(json_object_get(b, "started_at")), 1764000000);
	assert_int_equal(json_integer_value(json_object_get(b, "ended_at")), 1764000001);
	json_decref(b);

	assert_true(job_id_valid("AbC-_09"));
	assert_false(job_id_valid(""));
	assert_false(job_id_valid(NULL));
	assert_false(job_id_valid("../etc"));
	assert_false(job_id_valid("a.b"));
	assert_false(job_id_valid("a/b"));
	{
		char longid[JOB_ID_MAX + 2];
		memset(longid, 'a', sizeof(longid) - 1);
		longid[JOB_ID_MAX + 1] = '\0';
		assert_false(job_id_valid(longid));
		longid[JOB_ID_MAX] = '\0';
		assert_true(job_id_valid(longid));
	}
	assert_string_equal(job_outcome_name(JOB_CLIENT_GONE), "client_gone");
	assert_string_equal(job_outcome_name(JOB_REJECTED), "rejected");
}

/* ---- replay cache ----------------------------------------------------------------------- */

static void test_replay_cache(void **state)
{
	replay_cache *c;
	char id[32];

	assert_int_equal(replay_cache_new(&c, 1000), 0);
	assert_int_equal(replay_cache_check(c, "jti-1", 200, 100), 0);
	assert_int_equal(replay_cache_check(c, "jti-1", 200, 150), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "jti-2", 200, 150), 0);
	/* expired: the entry no longer blocks (the ticket itself is expired) */
	assert_int_equal(replay_cache_check(c, "jti-1", 400, 200), 0);
	assert_int_equal(replay_cache_check(c, "jti-1", 400, 201), TROOP_ETICKET);
	/* forget */
	replay_cache_forget(c, "jti-2");
	assert_int_equal(replay_cache_check(c, "jti-2", 400, 201), 0);
	/* bad ids */
	assert_int_equal(replay_cache_check(c, "", 400, 201), TROOP_EINVAL);
	{
		char longid[REPLAY_ID_MAX + 2];
		memset(longid, 'x', sizeof(longid) - 1);
		longid[sizeof(longid) - 1] = '\0';
		assert_int_equal(replay_cache_check(c, longid, 400, 201), TROOP_EINVAL);
	}
	/* many: grows, every one remembered */
	for (int i = 0; i < 900; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		assert_int_equal(replay_cache_check(c, id, 1000, 300), 0);
	}
	for (int i = 0; i < 900; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		assert_int_equal(replay_cache_check(c, id, 1000, 300), TROOP_ETICKET);
	}
	/* full of live entries: refused, not forgotten */
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "more-%d", i);
		(void)replay_cache_check(c, id, 1000, 300);
	}
	assert_true(replay_cache_size(c) <= 1000);
	assert_int_equal(replay_cache_check(c, "one-too-many", 1000, 300), TROOP_ERATE);
	/* once they expire there is room again */
	assert_int_equal(replay_cache_check(c, "later", 2000, 1500), 0);
	assert_true(replay_cache_size(c) < 10);
	replay_cache_free(c);
}

/* ---- keyring ---------------------------------------------------------------------------- */

static json_t *pubkey_reply(const troop_identity *id, const char *alg, const char *kid)
{
	char pk[64], k[TICKET_KID_LEN + 1];

	b64url_encode(pk, sizeof(pk), id->pk, TROOP_PK_LEN);
	ticket_kid(k, id->pk);
	return json_pack("{s:s, s:s, s:s}", "public_key", pk, "kid", kid ? kid : k, "alg", alg);
}

static void test_keyring(void **state)
{
	troop_identity coord, other;
	keyring *k;
	ticket_key key;
	ticket_claims cl, out;
	char *tok = NULL;
	json_t *r;

	identity_generate(&coord);
	identity_generate(&other);
	r = pubkey_reply(&coord, "EdDSA", NULL);
	assert_int_equal(keyring_parse(&key, r), 0);
	json_decref(r);
	r = pubkey_reply(&coord, "HS256", NULL);
	assert_int_equal(keyring_parse(&key, r), TROOP_EINVAL);
	json_decref(r);
	r = pubkey_reply(&coord, "EdDSA", "not-the-kid");
	assert_int_equal(keyring_parse(&key, r), TROOP_EINVAL);
	json_decref(r);
	r = json_pack("{s:s, s:s, s:s}", "public_key", "short", "kid", "x", "alg", "EdDSA");
	assert_int_equal(keyring_parse(&key, r), TROOP_EINVAL);
	json_decref(r);

	memset(&cl, 0, sizeof(cl));
	snprintf(cl.iss, sizeof(cl.iss), "%s", coord.id);
	snprintf(cl.sub, sizeof(cl.sub), "%s", other.id);
	snprintf(cl.target_node, sizeof(cl.target_node), "%s", other.id);
	snprintf(cl.model, sizeof(cl.model), "m");
	ticket_new_jti(cl.jti);
	cl.iat = 1000;
	cl.exp = 1300;
	cl.max_seconds = 60;
	assert_int_equal(ticket_sign(&tok, &cl, &coord), 0);

	assert_int_equal(keyring_new(&k), 0);
	assert_int_equal(keyring_verify(k, &out, tok, 1100), TROOP_ENOKEY);
	r = pubkey_reply(&coord, "EdDSA", NULL);
	assert_int_equal(keyring_parse(&key, r), 0);
	json_decref(r);
	assert_int_equal(keyring_add(k, &key), 0);
	assert_int_equal(keyring_add(k, &key), 0);  /* same kid: replaced */
	assert_int_equal(keyring_count(k), 1);
	assert_int_equal(keyring_verify(k, &out, tok, 1100), 0);
	assert_string_equal(out.jti, cl.jti);
	/* more keys than kept: the oldest goes */
	for (int i = 0; i < KEYRING_MAX; i++) {
		troop_identity t;
		identity_generate(&t);
		r = pubkey_reply(&t, "EdDSA", NULL);
		assert_int_equal(keyring_parse(&key, r), 0);
		json_decref(r);
		keyring_add(k, &key);
	}
	assert_int_equal(keyring_count(k), KEYRING_MAX);
	assert_int_equal(keyring_verify(k, &out, tok, 1100), TROOP_ENOKEY);
	/* refetches at most once a minute */
	assert_true(keyring_refetch_due(k, 5000));
	assert_false(keyring_refetch_due(k, 5001));
	assert_false(keyring_refetch_due(k, 5000 + KEYRING_REFETCH_S - 1));
	assert_true(keyring_refetch_due(k, 5000 + KEYRING_REFETCH_S));
	free(tok);
	keyring_free(k);
}

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
	json_decref(b);

	o.owner = "someone";
	b = heartbeat_body(&o, "IDLE", NULL, 0);
	assert_string_equal(json_string_value(json_object_get(b, "owner")), "someone");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(b, "hardware"),
	    "gpu_count")), 0);
	json_decref(b);
	engine_info_clear(&e);
	catalog_free(c);
}

/* ---- receipt spool -------------------------------------------------------------------------- */

static int count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name), sl = strlen(suffix);
		if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(p);
	return 0;
}

static void test_receipt_spool(void **state)
{
	char dir[256], root[256], path[400];
	troop_identity id;
	receipts *r;
	worker_job j = { .outcome = JOB_OK, .duration_ms = 5 };
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/troop-spool-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") :
	    "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(root, sizeof(root), "%s", dir);
	strcat(dir, "/a/b");  /* created with its parents */
	identity_generate(&id);
	/* nothing listens on port 1: every send fails, receipts stay */
	assert_int_equal(receipts_start(&r, "http://127.0.0.1:1", &id, dir), 0);
	snprintf(j.job_id, sizeof(j.job_id), "job-one");
	snprintf(j.model, sizeof(j.model), "m");
	assert_int_equal(receipts_submit(r, &j), 0);
	snprintf(j.job_id, sizeof(j.job_id), "job-two");
	assert_int_equal(receipts_submit(r, &j), 0);
	snprintf(j.job_id, sizeof(j.job_id), "bad/id");
	assert_int_equal(receipts_submit(r, &j), TROOP_EINVAL);
	assert_int_equal(receipts_pending(r), 2);
	for (int i = 0; i < 400 && count_files(dir, ".json") < 1; i++)
		usleep(10000);
	assert_true(count_files(dir, ".json") >= 1);
	receipts_stop(r, 200);
	/* both are on disk after the stop */
	assert_int_equal(count_files(dir, ".json"), 2);
	snprintf(path, sizeof(path), "%s/job-one.json", dir);
	{
		json_t *b = json_load_file(path, 0, NULL);
		assert_non_null(b);
		assert_string_equal(json_string_value(json_object_get(b, "job_id")), "job-one");
		assert_string_equal(json_string_value(json_object_get(b, "node_id")), id.id);
		json_decref(b);
	}
	/* a stray temporary file and a file that is not a receipt */
	snprintf(path, sizeof(path), "%s/.job-x.json.tmp", dir);
	f = fopen(path, "w");
	fputs("{", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/garbage.json", dir);
	f = fopen(path, "w");
	fputs("not json", f);
	fclose(f);
	/* loaded back at start */
	assert_int_equal(receipts_start(&r, "http://127.0.0.1:1", &id, dir), 0);
	assert_int_equal(receipts_pending(r), 2);
	receipts_stop(r, 0);
	assert_int_equal(count_files(dir, ".tmp"), 0);
	assert_int_equal(count_files(dir, ".json"), 3);  /* the garbage is left alone */
	identity_wipe(&id);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage_from_stream_any_split),
		cmocka_unit_test(test_usage_counted_without_usage_chunk),
		cmocka_unit_test(test_usage_from_json_reply),
		cmocka_unit_test(test_usage_completions_text),
		cmocka_unit_test(test_receipt_body_and_ids),
		cmocka_unit_test(test_replay_cache),
		cmocka_unit_test(test_keyring),
		cmocka_unit_test(test_catalog),
		cmocka_unit_test(test_heartbeat_body),
		cmocka_unit_test(test_receipt_spool),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
