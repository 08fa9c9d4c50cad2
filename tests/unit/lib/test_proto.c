/*
 * test_proto.c - the wire messages of proto.h: every encoder's output
 * decodes back to the same struct, every decoder refuses what is over its
 * limits with a message naming the field, the heartbeat keeps only the
 * documented hardware fields, and the client's authorize-and-failover
 * rules (client/authorize.h) classify replies as both clients expect.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authorize.h"
#include "encoding.h"
#include "error.h"
#include "json.h"
#include "proto.h"

static json_t *parse(const char *text)
{
	json_t *o = NULL;

	assert_int_equal(json_parse_object(&o, text, strlen(text)), 0);
	return o;
}

/* The decoder's error names `field`. */
static void expect_refused(int rc, const char *field)
{
	assert_true(rc < 0);
	if (!strstr(troop_error_msg(), field))
		fail_msg("message \"%s\" does not name \"%s\"", troop_error_msg(), field);
}

static char *filler(size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, 'x', n);
	s[n] = '\0';
	return s;
}

/* ---- heartbeat ------------------------------------------------------------------ */

static void fill_heartbeat(proto_heartbeat *hb, troop_identity *id)
{
	memset(hb, 0, sizeof(*hb));
	identity_generate(id);
	snprintf(hb->node_id, sizeof(hb->node_id), "%s", id->id);
	snprintf(hb->name, sizeof(hb->name), "gpu-box");
	snprintf(hb->tailscale_ip, sizeof(hb->tailscale_ip), "100.101.102.103");
	hb->port = 8421;
	hb->status = PROTO_BUSY;
	hb->n_models = 2;
	hb->models = calloc(2, sizeof(*hb->models));
	snprintf(hb->models[0].name, sizeof(hb->models[0].name), "llama3:8b");
	snprintf(hb->models[0].content_hash, sizeof(hb->models[0].content_hash), "sha256:ab");
	hb->models[0].size_bytes = 4661224676LL;
	snprintf(hb->models[0].engine, sizeof(hb->models[0].engine), "ollama");
	snprintf(hb->models[1].name, sizeof(hb->models[1].name), "qwen");
	hb->has_hardware = true;
	snprintf(hb->hardware.gpu, sizeof(hb->hardware.gpu), "NVIDIA GeForce RTX 4090");
	hb->hardware.gpu_count = 1;
	hb->hardware.vram_total = 24564;
	hb->hardware.vram_free = 20480;
	hb->hardware.gpu_util = 3;
	hb->hardware.has_vram = hb->hardware.has_util = true;
	snprintf(hb->hardware.source, sizeof(hb->hardware.source), "nvml");
	hb->n_engines = 1;
	snprintf(hb->engines[0].type, sizeof(hb->engines[0].type), "ollama");
	snprintf(hb->engines[0].version, sizeof(hb->engines[0].version), "0.6.2");
	hb->engines[0].port = 11434;
	snprintf(hb->encryption_public_key, sizeof(hb->encryption_public_key), "key");
	snprintf(hb->seal_key, sizeof(hb->seal_key), "VFNLMQ_stmt-");
	hb->active_jobs = 1;
	hb->max_jobs = 4;
	snprintf(hb->owner, sizeof(hb->owner), "%s", id->id);
	snprintf(hb->version, sizeof(hb->version), "troop/0.1.0");
}

static void test_heartbeat_round_trip(void **state)
{
	proto_heartbeat in, out;
	troop_identity id;
	json_t *j;

	(void)state;
	fill_heartbeat(&in, &id);
	j = proto_heartbeat_encode(&in);
	assert_non_null(j);
	assert_int_equal(proto_heartbeat_decode(&out, j, id.id), 0);
	assert_string_equal(out.node_id, in.node_id);
	assert_string_equal(out.tailscale_ip, in.tailscale_ip);
	assert_int_equal(out.port, 8421);
	assert_int_equal(out.status, PROTO_BUSY);
	assert_int_equal(out.n_models, 2);
	assert_memory_equal(out.models, in.models, 2 * sizeof(*in.models));
	assert_true(out.has_hardware);
	assert_memory_equal(&out.hardware, &in.hardware, sizeof(in.hardware));
	assert_int_equal(out.n_engines, 1);
	assert_memory_equal(&out.engines[0], &in.engines[0], sizeof(in.engines[0]));
	assert_int_equal(out.active_jobs, 1);
	assert_int_equal(out.max_jobs, 4);
	assert_string_equal(out.owner, id.id);
	assert_string_equal(out.seal_key, "VFNLMQ_stmt-");
	/* a statement that is not base64url is refused */
	json_object_set_new(j, "seal_key", json_string("TSK1\r\nX: y"));
	{
		proto_heartbeat x;
		expect_refused(proto_heartbeat_decode(&x, j, id.id), "seal_key");
	}
	json_object_set_new(j, "seal_key", json_string("VFNLMQ_stmt-"));
	/* another signer: 403 */
	{
		troop_identity other;
		proto_heartbeat x;
		identity_generate(&other);
		assert_int_equal(proto_heartbeat_decode(&x, j, other.id), TROOP_EFORBIDDEN);
	}
	json_decref(j);
	proto_heartbeat_clear(&in);
	proto_heartbeat_clear(&out);
}

static void test_heartbeat_hardware_trimmed(void **state)
{
	proto_heartbeat in, out;
	troop_identity id;
	json_t *j, *extra, *hw;
	char *big = filler(60 * 1024), *text;

	(void)state;
	fill_heartbeat(&in, &id);
	j = proto_heartbeat_encode(&in);
	hw = json_object_get(j, "hardware");
	json_object_set_new(hw, "junk", json_string(big));
	json_object_set_new(hw, "nested", json_pack("{s:[i, i, i]}", "a", 1, 2, 3));
	assert_int_equal(proto_heartbeat_decode(&out, j, NULL), 0);
	extra = proto_heartbeat_extra_encode(&out);
	text = json_dump_compact(extra, NULL);
	assert_true(strlen(text) < 400);
	assert_null(strstr(text, "junk"));
	assert_non_null(strstr(text, "RTX 4090"));
	free(text);
	json_decref(extra);
	proto_heartbeat_clear(&out);

	/* documented fields are bounded, and named */
	json_object_set_new(hw, "gpu", json_string(big));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "hardware: field 'gpu'");
	json_object_set_new(hw, "gpu", json_string("ok"));
	json_object_set_new(hw, "gpu_util", json_integer(101));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "gpu_util");
	json_object_set_new(hw, "gpu_util", json_integer(-1));
	json_object_set_new(hw, "gpu_count", json_integer(100000));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "gpu_count");
	json_object_set_new(hw, "gpu_count", json_integer(1));
	json_object_set_new(hw, "vram_total", json_string("24 GB"));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "vram_total");
	json_object_set_new(hw, "vram_total", json_integer(1));
	json_object_set_new(j, "hardware", json_string("a string"));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "hardware");
	json_object_del(j, "hardware");
	assert_int_equal(proto_heartbeat_decode(&out, j, NULL), 0);
	assert_false(out.has_hardware);
	proto_heartbeat_clear(&out);
	free(big);
	json_decref(j);
	proto_heartbeat_clear(&in);
}

static void test_heartbeat_limits(void **state)
{
	proto_heartbeat in, out;
	troop_identity id;
	json_t *j, *models, *engines;
	char *big = filler(300);

	(void)state;
	fill_heartbeat(&in, &id);
	j = proto_heartbeat_encode(&in);
	json_object_set_new(j, "tailscale_ip", json_string("not-an-ip"));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "tailscale_ip");
	json_object_set_new(j, "tailscale_ip", json_string("fd7a:115c:a1e0::1"));
	json_object_set_new(j, "status", json_string("idle"));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "status");
	json_object_set_new(j, "status", json_string("OFFLINE"));
	json_object_set_new(j, "owner", json_string("not an account"));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "owner");
	json_object_set_new(j, "owner", json_string(id.id));
	json_object_set_new(j, "name", json_string(big));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "name");
	json_object_set_new(j, "name", json_string("n"));
	json_object_set_new(j, "load", json_pack("{s:i}", "max_jobs", -1));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "load: field 'max_jobs'");
	json_object_set_new(j, "load", json_pack("{s:i}", "max_jobs", 2));
	json_object_set_new(json_array_get(json_object_get(j, "models"), 1), "content_hash",
	    json_string(big));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "models[1]: field 'content_hash'");
	models = json_array();
	for (int i = 0; i < PROTO_MODELS_MAX + 1; i++)
		json_array_append_new(models, json_pack("{s:s}", "name", "m"));
	json_object_set_new(j, "models", models);
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "models");
	json_object_set_new(j, "models", json_pack("[{s:s}]", "name", ""));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "models[0]: field 'name'");
	json_object_set_new(j, "models", json_array());
	engines = json_array();
	for (int i = 0; i < PROTO_ENGINES_MAX + 1; i++)
		json_array_append_new(engines, json_pack("{s:s}", "type", "vllm"));
	json_object_set_new(j, "engines", engines);
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "engines");
	json_object_set_new(j, "engines", json_pack("[{s:i}]", "port", 70000));
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "engines[0]: field 'port'");
	json_object_set_new(j, "engines", json_array());
	assert_int_equal(proto_heartbeat_decode(&out, j, NULL), 0);
	assert_int_equal(out.status, PROTO_OFFLINE);
	proto_heartbeat_clear(&out);
	json_object_del(j, "node_id");
	expect_refused(proto_heartbeat_decode(&out, j, NULL), "node_id");
	free(big);
	json_decref(j);
	proto_heartbeat_clear(&in);
}

static void test_heartbeat_reply(void **state)
{
	proto_heartbeat_reply in = { .ttl = 30, .next_heartbeat = 10, .verified = true,
		.multiplier = 2.5 }, out;
	json_t *j = proto_heartbeat_reply_encode(&in);

	(void)state;
	assert_int_equal(proto_heartbeat_reply_decode(&out, j), 0);
	assert_false(out.removed);
	assert_int_equal(out.ttl, 30);
	assert_int_equal(out.next_heartbeat, 10);
	assert_true(out.verified);
	assert_true(out.multiplier == 2.5);
	assert_string_equal(out.ticket_kid, "");
	assert_null(json_object_get(j, "ticket_kid"));
	json_decref(j);
	snprintf(in.ticket_kid, sizeof(in.ticket_kid), "abcdefghijklmnop");
	j = proto_heartbeat_reply_encode(&in);
	assert_int_equal(proto_heartbeat_reply_decode(&out, j), 0);
	assert_string_equal(out.ticket_kid, "abcdefghijklmnop");
	json_object_set_new(j, "ticket_kid", json_string("abcdefghijklmnopq"));
	expect_refused(proto_heartbeat_reply_decode(&out, j), "ticket_kid");
	json_decref(j);
	in.removed = true;
	j = proto_heartbeat_reply_encode(&in);
	assert_int_equal(proto_heartbeat_reply_decode(&out, j), 0);
	assert_true(out.removed);
	assert_int_equal(out.ttl, 0);
	assert_null(json_object_get(j, "multiplier"));
	json_decref(j);
	j = parse("{\"status\":\"gone\"}");
	expect_refused(proto_heartbeat_reply_decode(&out, j), "status");
	json_decref(j);
	j = parse("{\"status\":\"seen\",\"next_heartbeat\":999999}");
	expect_refused(proto_heartbeat_reply_decode(&out, j), "next_heartbeat");
	json_decref(j);
}

static void test_node_record(void **state)
{
	proto_node in, out;
	troop_identity id;
	json_t *j;

	(void)state;
	memset(&in, 0, sizeof(in));
	fill_heartbeat(&in.hb, &id);
	in.last_seen = 1764000000;
	in.multiplier = 1.25;
	in.verified = true;
	in.verified_at = 1763990000;
	in.reputation = 0.75;
	in.live = true;
	j = proto_node_encode(&in);
	assert_int_equal(proto_node_decode(&out, j), 0);
	assert_string_equal(out.hb.node_id, id.id);
	assert_int_equal(out.hb.status, PROTO_BUSY);
	assert_int_equal(out.hb.n_models, 2);
	assert_memory_equal(&out.hb.hardware, &in.hb.hardware, sizeof(in.hb.hardware));
	assert_true(out.multiplier == 1.25 && out.reputation == 0.75 && out.verified && out.live);
	assert_int_equal(out.verified_at, 1763990000);
	proto_node_clear(&out);
	json_decref(j);
	/* a node that is not live: OFFLINE, no address */
	in.live = false;
	in.hb.tailscale_ip[0] = '\0';
	in.hb.port = 0;
	j = proto_node_encode(&in);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "OFFLINE");
	assert_int_equal(proto_node_decode(&out, j), 0);
	assert_false(out.live);
	proto_node_clear(&out);
	json_object_set_new(j, "reputation", json_real(7));
	expect_refused(proto_node_decode(&out, j), "reputation");
	json_decref(j);
	proto_node_clear(&in);
}

/* ---- authorize ------------------------------------------------------------------ */

static void test_authorize_request(void **state)
{
	proto_authorize_req in, out;
	json_t *j;

	(void)state;
	memset(&in, 0, sizeof(in));
	snprintf(in.model, sizeof(in.model), "llama3:8b");
	in.max_seconds = 60;
	assert_int_equal(proto_authorize_req_exclude(&in, "node-a"), 0);
	assert_int_equal(proto_authorize_req_exclude(&in, "node-a"), 0);
	assert_int_equal(proto_authorize_req_exclude(&in, "node-b"), 0);
	assert_int_equal(in.n_exclude, 2);
	j = proto_authorize_req_encode(&in);
	assert_int_equal(proto_authorize_req_decode(&out, j), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	assert_true(proto_authorize_req_excludes(&out, "node-b"));
	assert_false(proto_authorize_req_excludes(&out, "node-c"));
	assert_null(json_object_get(j, "ahead"));
	json_decref(j);
	/* a ticket fetched ahead says so */
	in.ahead = true;
	j = proto_authorize_req_encode(&in);
	assert_true(json_is_true(json_object_get(j, "ahead")));
	assert_int_equal(proto_authorize_req_decode(&out, j), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	json_decref(j);
	j = parse("{\"model\":\"m\",\"ahead\":1}");
	expect_refused(proto_authorize_req_decode(&out, j), "ahead");
	json_decref(j);

	j = parse("{\"model\":\"m\",\"exclude\":[\"a\",7]}");
	expect_refused(proto_authorize_req_decode(&out, j), "exclude[1]");
	json_decref(j);
	j = parse("{\"model\":\"m\",\"exclude\":[\"\"]}");
	expect_refused(proto_authorize_req_decode(&out, j), "exclude[0]");
	json_decref(j);
	j = parse("{\"model\":\"m\",\"exclude\":\"a\"}");
	expect_refused(proto_authorize_req_decode(&out, j), "exclude");
	json_decref(j);
	j = parse("{\"model\":\"m\",\"max_seconds\":0}");
	expect_refused(proto_authorize_req_decode(&out, j), "max_seconds");
	json_decref(j);
	j = parse("{\"model\":\"\"}");
	expect_refused(proto_authorize_req_decode(&out, j), "model");
	json_decref(j);
	j = json_pack("{s:s, s:o}", "model", "m", "exclude", json_array());
	for (int i = 0; i < PROTO_EXCLUDE_MAX + 1; i++)
		json_array_append_new(json_object_get(j, "exclude"), json_string("n"));
	expect_refused(proto_authorize_req_decode(&out, j), "exclude");
	json_decref(j);
	for (int i = 2; i < PROTO_EXCLUDE_MAX; i++) {
		char id[16];
		snprintf(id, sizeof(id), "n%d", i);
		assert_int_equal(proto_authorize_req_exclude(&in, id), 0);
	}
	assert_int_equal(proto_authorize_req_exclude(&in, "one-more"), TROOP_ETOOLARGE);
}

static void fill_reply(proto_authorize_reply *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->job_id, sizeof(r->job_id), "AbCd_-12");
	snprintf(r->token, sizeof(r->token), "aaa.bbb.ccc");
	snprintf(r->node_id, sizeof(r->node_id), "NodeId_-");
	snprintf(r->target_ip, sizeof(r->target_ip), "100.64.0.1");
	r->target_port = 8421;
	r->estimated_cost = 300;
	r->expires_at = 1764000300;
	r->max_seconds = 300;
	snprintf(r->encryption_public_key, sizeof(r->encryption_public_key), "xk");
	snprintf(r->seal_key, sizeof(r->seal_key), "VFNLMQ_stmt-");
}

static void test_authorize_reply(void **state)
{
	proto_authorize_reply in, out;
	json_t *j;
	char *big;

	(void)state;
	fill_reply(&in);
	j = proto_authorize_reply_encode(&in);
	assert_int_equal(proto_authorize_reply_decode(&out, j), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	/* the sealing key statement: optional, base64url, bounded */
	json_object_set_new(j, "seal_key", json_string("a b"));
	expect_refused(proto_authorize_reply_decode(&out, j), "seal_key");
	big = filler(PROTO_SEAL_KEY_MAX + 1);
	json_object_set_new(j, "seal_key", json_string(big));
	expect_refused(proto_authorize_reply_decode(&out, j), "seal_key");
	free(big);
	json_object_del(j, "seal_key");
	assert_int_equal(proto_authorize_reply_decode(&out, j), 0);
	assert_string_equal(out.seal_key, "");
	{
		/* not sent when the node does not seal */
		json_t *k = proto_authorize_reply_encode(&out);
		assert_null(json_object_get(k, "seal_key"));
		json_decref(k);
	}
	json_object_set_new(j, "token", json_string("a b.c"));
	expect_refused(proto_authorize_reply_decode(&out, j), "token");
	big = filler(PROTO_TICKET_MAX + 1);
	json_object_set_new(j, "token", json_string(big));
	expect_refused(proto_authorize_reply_decode(&out, j), "token");
	free(big);
	json_object_set_new(j, "token", json_string("a.b.c"));
	json_object_set_new(j, "target_ip", json_string("evil.example\r\nX: y"));
	expect_refused(proto_authorize_reply_decode(&out, j), "target_ip");
	json_object_set_new(j, "target_ip", json_string("::1"));
	json_object_set_new(j, "target_port", json_integer(0));
	expect_refused(proto_authorize_reply_decode(&out, j), "target_port");
	json_object_set_new(j, "target_port", json_integer(1));
	json_object_set_new(j, "job_id", json_string("../../etc"));
	expect_refused(proto_authorize_reply_decode(&out, j), "job_id");
	json_object_set_new(j, "job_id", json_string("j"));
	json_object_del(j, "max_seconds");
	assert_int_equal(proto_authorize_reply_decode(&out, j), 0);
	assert_int_equal(out.max_seconds, 300);
	json_decref(j);
}

/* ---- receipt, settlement, key, error ----------------------------------------------- */

static void test_receipt_and_settlement(void **state)
{
	proto_receipt in, out;
	proto_settlement sin, sout;
	json_t *j;

	(void)state;
	memset(&in, 0, sizeof(in));
	snprintf(in.job_id, sizeof(in.job_id), "job1");
	snprintf(in.node_id, sizeof(in.node_id), "node");
	snprintf(in.requester, sizeof(in.requester), "req");
	snprintf(in.model, sizeof(in.model), "m");
	in.duration_ms = 1234;
	in.prompt_tokens = 5;
	in.completion_tokens = 7;
	snprintf(in.outcome, sizeof(in.outcome), "cut_off");
	in.started_at = 1764000000;
	in.ended_at = 1764000002;
	j = proto_receipt_encode(&in);
	assert_int_equal(proto_receipt_decode(&out, j), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	json_object_set_new(j, "duration_ms", json_integer(-1));
	expect_refused(proto_receipt_decode(&out, j), "duration_ms");
	json_object_set_new(j, "duration_ms", json_integer(PROTO_DURATION_MS_MAX + 1));
	expect_refused(proto_receipt_decode(&out, j), "duration_ms");
	json_object_del(j, "duration_ms");
	expect_refused(proto_receipt_decode(&out, j), "duration_ms");
	json_object_set_new(j, "duration_ms", json_integer(1));
	json_object_set_new(j, "prompt_tokens", json_integer((json_int_t)INT32_MAX + 1));
	expect_refused(proto_receipt_decode(&out, j), "prompt_tokens");
	json_object_del(j, "prompt_tokens");
	json_object_del(j, "outcome");
	assert_int_equal(proto_receipt_decode(&out, j), 0);
	assert_string_equal(out.outcome, "ok");
	json_decref(j);

	memset(&sin, 0, sizeof(sin));
	snprintf(sin.job_id, sizeof(sin.job_id), "job1");
	sin.charged = 10;
	sin.refunded = 290;
	sin.already_settled = true;
	j = proto_settlement_encode(&sin);
	assert_int_equal(proto_settlement_decode(&sout, j), 0);
	assert_memory_equal(&sin, &sout, sizeof(sin));
	json_object_set_new(j, "charged", json_integer(-5));
	expect_refused(proto_settlement_decode(&sout, j), "charged");
	json_decref(j);
}

static void test_public_key_and_error(void **state)
{
	proto_public_key in, out;
	troop_identity id;
	proto_error e;
	json_t *j;

	(void)state;
	identity_generate(&id);
	memset(&in, 0, sizeof(in));
	b64url_encode(in.public_key, sizeof(in.public_key), id.pk, sizeof(id.pk));
	ticket_kid(in.kid, id.pk);
	snprintf(in.alg, sizeof(in.alg), "EdDSA");
	j = proto_public_key_encode(&in);
	assert_int_equal(proto_public_key_decode(&out, j), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	json_object_set_new(j, "kid", json_string("AAAAAAAAAAAAAAAA"));
	expect_refused(proto_public_key_decode(&out, j), "kid");
	json_object_set_new(j, "kid", json_string(in.kid));
	json_object_set_new(j, "alg", json_string("HS256"));
	expect_refused(proto_public_key_decode(&out, j), "alg");
	json_decref(j);
	{
		/* a key set of two, read back; a key of another kind skipped; a
		 * key that does not match its kid refuses the whole set */
		proto_public_key two[2], back[PROTO_JWKS_MAX];
		troop_identity id2;
		size_t n = 0;

		identity_generate(&id2);
		two[0] = in;
		memset(&two[1], 0, sizeof(two[1]));
		b64url_encode(two[1].public_key, sizeof(two[1].public_key), id2.pk, sizeof(id2.pk));
		ticket_kid(two[1].kid, id2.pk);
		snprintf(two[1].alg, sizeof(two[1].alg), "EdDSA");
		j = proto_jwks_encode(two, 2);
		assert_string_equal(json_string_value(json_object_get(json_array_get(
		    json_object_get(j, "keys"), 0), "x")), in.public_key);
		json_array_append_new(json_object_get(j, "keys"), json_pack("{s:s, s:s, s:s}",
		    "kty", "RSA", "n", "x", "e", "AQAB"));
		assert_int_equal(proto_jwks_decode(back, &n, j), 0);
		assert_int_equal(n, 2);
		assert_memory_equal(&back[0], &two[0], sizeof(two[0]));
		assert_memory_equal(&back[1], &two[1], sizeof(two[1]));
		json_object_set_new(json_array_get(json_object_get(j, "keys"), 1), "kid",
		    json_string(in.kid));
		expect_refused(proto_jwks_decode(back, &n, j), "kid");
		assert_int_equal(n, 0);
		json_decref(j);
		j = parse("{\"keys\":{}}");
		assert_int_equal(proto_jwks_decode(back, &n, j), TROOP_EINVAL);
		json_decref(j);
		identity_wipe(&id2);
	}

	j = proto_error_encode(TROOP_ECAPACITY, "busy");
	assert_int_equal(proto_error_decode(&e, j), 0);
	assert_string_equal(e.message, "busy");
	assert_string_equal(e.code, "no_capacity");
	json_decref(j);
	/* engines' shapes: a bare string, a numeric code */
	j = parse("{\"error\":\"model not loaded\"}");
	assert_int_equal(proto_error_decode(&e, j), 0);
	assert_string_equal(e.message, "model not loaded");
	json_decref(j);
	j = parse("{\"error\":{\"message\":\"m\",\"code\":500}}");
	assert_int_equal(proto_error_decode(&e, j), 0);
	assert_string_equal(e.code, "500");
	json_decref(j);
	j = parse("{\"ok\":true}");
	assert_int_equal(proto_error_decode(&e, j), TROOP_EINVAL);
	json_decref(j);
}

/* ---- proof-of-hardware ----------------------------------------------------------------- */

static void test_poh_messages(void **state)
{
	proto_poh_challenge ch, ch2;
	proto_poh_verify_req vr, vr2;
	proto_poh_verify_reply rep, rep2;
	proto_poh_reveal rv, rv2;
	proto_poh_result res, res2;
	proto_poh_challenge_req cr;
	int8_t data[2 * 16];
	char id[PROTO_POH_ID_MAX + 1];
	json_t *j;

	(void)state;
	j = parse("{\"class\":\"tpu\"}");
	expect_refused(proto_poh_challenge_req_decode(&cr, j), "class");
	json_decref(j);

	memset(&ch, 0, sizeof(ch));
	snprintf(ch.challenge_id, sizeof(ch.challenge_id), "c1");
	memset(ch.seed, 7, sizeof(ch.seed));
	ch.matrix_size = 64;
	ch.rounds = 2;
	ch.expires_at = 1764000000;
	ch.samples = 16;
	snprintf(ch.class_, sizeof(ch.class_), "cpu");
	j = proto_poh_challenge_encode(&ch);
	assert_int_equal(proto_poh_challenge_decode(&ch2, j), 0);
	assert_memory_equal(&ch, &ch2, sizeof(ch));
	json_object_set_new(j, "algorithm", json_string("sha256-v0"));
	expect_refused(proto_poh_challenge_decode(&ch2, j), "algorithm");
	json_object_set_new(j, "algorithm", json_string(POH_ALGORITHM));
	json_object_set_new(j, "seed", json_string("short"));
	expect_refused(proto_poh_challenge_decode(&ch2, j), "seed");
	json_decref(j);

	memset(&vr, 0, sizeof(vr));
	snprintf(vr.challenge_id, sizeof(vr.challenge_id), "c1");
	memset(vr.merkle_root, 9, sizeof(vr.merkle_root));
	j = proto_poh_verify_req_encode(&vr);
	assert_int_equal(proto_poh_verify_req_decode(&vr2, j), 0);
	assert_memory_equal(&vr, &vr2, sizeof(vr));
	json_object_set_new(j, "merkle_root", json_string("AAAA"));
	expect_refused(proto_poh_verify_req_decode(&vr2, j), "merkle_root");
	json_decref(j);

	memset(&rep, 0, sizeof(rep));
	snprintf(rep.challenge_id, sizeof(rep.challenge_id), "c1");
	rep.indices[0] = 3;
	rep.indices[1] = 15;
	rep.n_indices = 2;
	rep.expires_at = 5;
	j = proto_poh_verify_reply_encode(&rep);
	assert_int_equal(proto_poh_verify_reply_decode(&rep2, j, 16), 0);
	assert_memory_equal(&rep, &rep2, sizeof(rep));
	expect_refused(proto_poh_verify_reply_decode(&rep2, j, 15), "indices[1]");
	json_decref(j);

	memset(&rv, 0, sizeof(rv));
	snprintf(rv.challenge_id, sizeof(rv.challenge_id), "c1");
	rv.n = 16;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (int8_t)(i * 7);
	rv.rows = calloc(2, sizeof(*rv.rows));
	rv.n_rows = 2;
	rv.rows[0].index = 3;
	rv.rows[0].row = data;
	rv.rows[0].path_len = 4;
	memset(rv.rows[0].path, 1, sizeof(rv.rows[0].path[0]) * 4);
	rv.rows[1].index = 15;
	rv.rows[1].row = data + 16;
	j = proto_poh_reveal_encode(&rv);
	assert_int_equal(proto_poh_reveal_id(id, j), 0);
	assert_string_equal(id, "c1");
	assert_int_equal(proto_poh_reveal_decode(&rv2, j, 16), 0);
	assert_int_equal(rv2.n_rows, 2);
	assert_int_equal(rv2.rows[1].index, 15);
	assert_memory_equal(rv2.rows[0].row, data, 16);
	assert_memory_equal(rv2.rows[1].row, data + 16, 16);
	assert_int_equal(rv2.rows[0].path_len, 4);
	assert_memory_equal(rv2.rows[0].path, rv.rows[0].path, 4 * POH_HASH_LEN);
	proto_poh_reveal_clear(&rv2);
	/* rows of another length, an index out of range */
	expect_refused(proto_poh_reveal_decode(&rv2, j, 32), "rows[0]: field 'row'");
	json_object_set_new(json_array_get(json_object_get(j, "rows"), 1), "index",
	    json_integer(16));
	expect_refused(proto_poh_reveal_decode(&rv2, j, 16), "rows[1]: field 'index'");
	json_decref(j);
	free(rv.rows);

	memset(&res, 0, sizeof(res));
	res.verified = true;
	res.multiplier = 1.5;
	res.ops = 1e9;
	res.ops_per_s = 2e9;
	res.elapsed_ms = 500;
	res.matrix_size = 64;
	res.rounds = 2;
	res.samples = 16;
	res.verified_at = 1764000000;
	j = proto_poh_result_encode(&res);
	assert_int_equal(proto_poh_result_decode(&res2, j), 0);
	assert_memory_equal(&res, &res2, sizeof(res));
	json_decref(j);
}

/* ---- the clients' authorize-and-failover rules ----------------------------------------- */

static void test_client_authorize(void **state)
{
	client_auth a;
	proto_authorize_reply t;
	proto_error e;
	json_t *body, *req;
	char *text;
	size_t len;

	(void)state;
	client_auth_init(&a, "llama3:8b", 60, 0);
	assert_int_equal(a.tries, CLIENT_AUTH_TRIES);
	text = client_auth_body(&a, &len);
	assert_int_equal(a.attempt, 1);
	req = parse(text);
	assert_string_equal(json_string_value(json_object_get(req, "model")), "llama3:8b");
	assert_int_equal(json_integer_value(json_object_get(req, "max_seconds")), 60);
	assert_null(json_object_get(req, "exclude"));
	json_decref(req);
	free(text);

	fill_reply(&t);
	body = proto_authorize_reply_encode(&t);
	assert_int_equal(client_auth_reply(&a, 200, body, &e), CLIENT_AUTH_OK);
	assert_string_equal(a.ticket.node_id, "NodeId_-");
	json_decref(body);
	/* the worker answered 503: fail over, excluding the node */
	assert_true(client_auth_worker_failed(503, 0));
	assert_true(client_auth_worker_failed(502, 0));
	assert_true(client_auth_worker_failed(429, 0));
	assert_true(client_auth_worker_failed(401, 0));  /* a ticket for another node */
	assert_false(client_auth_worker_failed(200, 0));
	assert_false(client_auth_worker_failed(400, 0));
	/* errors the engine answered are the user's answer, except loading
	 * or overloaded engines */
	assert_false(client_auth_worker_failed(500, 500));
	assert_false(client_auth_worker_failed(501, 501));
	assert_false(client_auth_worker_failed(400, 400));
	assert_true(client_auth_worker_failed(503, 503));
	assert_true(client_auth_worker_failed(429, 429));
	assert_true(client_auth_failover(&a, "node NodeId_- answered HTTP 503"));
	text = client_auth_body(&a, &len);
	req = parse(text);
	assert_string_equal(json_string_value(json_array_get(json_object_get(req, "exclude"), 0)),
	    "NodeId_-");
	json_decref(req);
	free(text);
	/* nobody else: 503 after a failover is "exhausted", with the reason */
	body = proto_error_encode(TROOP_ECAPACITY, "every node serving it is busy");
	assert_int_equal(client_auth_reply(&a, 503, body, &e), CLIENT_AUTH_EXHAUSTED);
	assert_non_null(strstr(a.why, "HTTP 503"));
	json_decref(body);
	body = proto_error_encode(TROOP_ECREDITS, "insufficient credits");
	assert_int_equal(client_auth_reply(&a, 402, body, &e), CLIENT_AUTH_NO_CREDITS);
	json_decref(body);
	body = proto_error_encode(TROOP_EAUTH, "stale");
	assert_int_equal(client_auth_reply(&a, 401, body, &e), CLIENT_AUTH_BAD_SIGNATURE);
	json_decref(body);
	body = proto_error_encode(TROOP_ENOMODEL, "nobody serves it");
	assert_int_equal(client_auth_reply(&a, 404, body, &e), CLIENT_AUTH_ERROR);
	assert_string_equal(e.code, "model_not_found");
	json_decref(body);
	assert_int_equal(client_auth_reply(&a, 502, NULL, &e), CLIENT_AUTH_BAD_REPLY);
	/* a 200 that is no ticket is not followed */
	body = parse("{\"token\":\"a.b.c\",\"target_ip\":\"10.0.0.1\"}");
	assert_int_equal(client_auth_reply(&a, 200, body, &e), CLIENT_AUTH_BAD_REPLY);
	assert_non_null(strstr(e.message, "job_id"));
	json_decref(body);
	/* the tries run out */
	text = client_auth_body(&a, &len);
	free(text);
	assert_int_equal(a.attempt, 3);
	assert_false(client_auth_failover(&a, "again"));
}

/* ---- capabilities ----------------------------------------------------------------- */

static void test_model_capabilities(void **state)
{
	proto_heartbeat in, out;
	troop_identity id;
	json_t *j, *m;
	proto_model *pm;
	size_t n;

	(void)state;
	fill_heartbeat(&in, &id);
	in.models[0].context_length = 131072;
	in.models[0].caps_known = PROTO_CAP_ALL;
	in.models[0].caps = PROTO_CAP_TOOLS;
	in.models[0].endpoints = PROTO_EP_CHAT | PROTO_EP_RESPONSES;
	/* models[1]: nothing known */
	j = proto_heartbeat_encode(&in);
	m = json_array_get(json_object_get(j, "models"), 0);
	assert_int_equal(json_integer_value(json_object_get(m, "context_length")), 131072);
	assert_true(json_is_true(json_object_get(json_object_get(m, "capabilities"), "tools")));
	assert_true(json_is_false(json_object_get(json_object_get(m, "capabilities"), "vision")));
	assert_string_equal(json_string_value(json_array_get(json_object_get(m, "endpoints"), 1)),
	    "responses");
	/* unknown stays absent on the wire */
	m = json_array_get(json_object_get(j, "models"), 1);
	assert_null(json_object_get(m, "context_length"));
	assert_null(json_object_get(m, "capabilities"));
	assert_null(json_object_get(m, "endpoints"));
	assert_int_equal(proto_heartbeat_decode(&out, j, id.id), 0);
	assert_memory_equal(out.models, in.models, 2 * sizeof(*in.models));
	json_decref(j);
	proto_heartbeat_clear(&in);
	proto_heartbeat_clear(&out);

	/* a newer worker's names are dropped, not refused; known ones kept */
	j = parse("{\"m\":[{\"name\":\"a\",\"capabilities\":{\"vision\":true,\"audio\":true},"
	    "\"endpoints\":[\"chat\",\"realtime\"]}]}");
	assert_int_equal(proto_models_decode(&pm, &n, json_object_get(j, "m")), 0);
	assert_int_equal(pm[0].caps_known, PROTO_CAP_VISION);
	assert_int_equal(pm[0].caps, PROTO_CAP_VISION);
	assert_int_equal(pm[0].endpoints, PROTO_EP_CHAT);
	assert_int_equal(pm[0].context_length, 0);
	free(pm);
	json_decref(j);

	/* bounded and typed */
	j = parse("{\"m\":[{\"name\":\"a\",\"context_length\":-1}]}");
	expect_refused(proto_models_decode(&pm, &n, json_object_get(j, "m")), "context_length");
	json_decref(j);
	j = parse("{\"m\":[{\"name\":\"a\",\"context_length\":99999999999}]}");
	expect_refused(proto_models_decode(&pm, &n, json_object_get(j, "m")), "context_length");
	json_decref(j);
	j = parse("{\"m\":[{\"name\":\"a\",\"capabilities\":{\"tools\":\"yes\"}}]}");
	expect_refused(proto_models_decode(&pm, &n, json_object_get(j, "m")), "tools");
	json_decref(j);
	j = parse("{\"m\":[{\"name\":\"a\",\"capabilities\":[\"tools\"]}]}");
	expect_refused(proto_models_decode(&pm, &n, json_object_get(j, "m")), "capabilities");
	json_decref(j);
	j = parse("{\"m\":[{\"name\":\"a\",\"endpoints\":[1]}]}");
	expect_refused(proto_models_decode(&pm, &n, json_object_get(j, "m")), "endpoints[0]");
	json_decref(j);
	j = parse("{\"m\":[{\"name\":\"a\",\"endpoints\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\","
	    "\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}]}");
	expect_refused(proto_models_decode(&pm, &n, json_object_get(j, "m")), "endpoints");
	json_decref(j);

	assert_string_equal(proto_cap_name(PROTO_CAP_VISION), "vision");
	assert_null(proto_cap_name(3));
	assert_int_equal(proto_endpoint_parse("messages"), PROTO_EP_MESSAGES);
	assert_int_equal(proto_endpoint_parse("nope"), 0);
}

static void test_require(void **state)
{
	proto_authorize_req in, out;
	proto_model m;
	json_t *j;
	uint32_t why;
	char kind;

	(void)state;
	memset(&in, 0, sizeof(in));
	snprintf(in.model, sizeof(in.model), "llama3");
	in.require.context = 9000;
	in.require.caps = PROTO_CAP_VISION | PROTO_CAP_TOOLS;
	in.require.endpoints = PROTO_EP_RESPONSES;
	j = proto_authorize_req_encode(&in);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "require"),
	    "context")), 9000);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "require"),
	    "endpoint")), "responses");
	assert_int_equal(proto_authorize_req_decode(&out, j), 0);
	assert_memory_equal(&out.require, &in.require, sizeof(in.require));
	json_decref(j);
	/* nothing required: no "require" at all (an older coordinator sees
	 * the same body as before) */
	in.require = (proto_require){ 0 };
	j = proto_authorize_req_encode(&in);
	assert_null(json_object_get(j, "require"));
	json_decref(j);

	j = parse("{\"model\":\"m\",\"require\":{\"vision\":false,\"tools\":true}}");
	assert_int_equal(proto_authorize_req_decode(&out, j), 0);
	assert_int_equal(out.require.caps, PROTO_CAP_TOOLS);
	json_decref(j);
	j = parse("{\"model\":\"m\",\"require\":{\"audio\":true}}");
	expect_refused(proto_authorize_req_decode(&out, j), "audio");
	json_decref(j);
	j = parse("{\"model\":\"m\",\"require\":{\"endpoint\":\"realtime\"}}");
	expect_refused(proto_authorize_req_decode(&out, j), "endpoint");
	json_decref(j);
	j = parse("{\"model\":\"m\",\"require\":{\"context\":-3}}");
	expect_refused(proto_authorize_req_decode(&out, j), "context");
	json_decref(j);
	j = parse("{\"model\":\"m\",\"require\":{\"tools\":1}}");
	expect_refused(proto_authorize_req_decode(&out, j), "tools");
	json_decref(j);
	j = parse("{\"model\":\"m\",\"require\":[]}");
	expect_refused(proto_authorize_req_decode(&out, j), "require");
	json_decref(j);

	/* the rule: what the engine did not say is "unknown" (taken when no
	 * node is known to fit), what it said no to is "unmet" */
	memset(&m, 0, sizeof(m));
	in.require = (proto_require){ 0 };
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_MET);
	in.require = (proto_require){ .context = 4096 };
	/* an unknown context passes */
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_MET);
	m.context_length = 2048;
	assert_int_equal(proto_require_check(&in.require, &m, &kind, &why), PROTO_FIT_UNMET);
	assert_int_equal(kind, 'x');
	m.context_length = 4096;
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_MET);
	in.require = (proto_require){ .caps = PROTO_CAP_VISION };
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_UNKNOWN);
	m.caps_known = PROTO_CAP_VISION;
	assert_int_equal(proto_require_check(&in.require, &m, &kind, &why), PROTO_FIT_UNMET);
	assert_int_equal(kind, 'c');
	assert_int_equal(why, PROTO_CAP_VISION);
	m.caps = PROTO_CAP_VISION;
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_MET);
	in.require = (proto_require){ .endpoints = PROTO_EP_MESSAGES };
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_UNKNOWN);
	m.endpoints = PROTO_EP_CHAT;
	assert_int_equal(proto_require_check(&in.require, &m, &kind, &why), PROTO_FIT_UNMET);
	assert_int_equal(kind, 'e');
	assert_int_equal(why, PROTO_EP_MESSAGES);
	m.endpoints = PROTO_EP_MESSAGES | PROTO_EP_CHAT;
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_MET);
	/* one unmet requirement outweighs an unknown one */
	in.require = (proto_require){ .caps = PROTO_CAP_VISION | PROTO_CAP_TOOLS };
	m.caps_known = PROTO_CAP_TOOLS;
	m.caps = 0;
	assert_int_equal(proto_require_check(&in.require, &m, NULL, NULL), PROTO_FIT_UNMET);
}

/* What troop up derives from an app's request. */
static void test_client_require(void **state)
{
	client_auth a;
	json_t *b;
	char *big;

	(void)state;
	client_auth_init(&a, "m", 0, 0);
	b = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
	client_auth_require(&a, b);
	assert_int_equal(a.req.require.caps, 0);
	assert_true(a.req.require.context > 0 && a.req.require.context < 30);
	json_decref(b);

	/* an image part: vision; tools: tools; max_tokens counts */
	b = parse("{\"model\":\"m\",\"max_tokens\":1000,\"tools\":[{\"type\":\"function\","
	    "\"function\":{\"name\":\"f\"}}],\"messages\":[{\"role\":\"user\",\"content\":"
	    "[{\"type\":\"text\",\"text\":\"what is this\"},{\"type\":\"image_url\","
	    "\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]}]}");
	client_auth_require(&a, b);
	assert_int_equal(a.req.require.caps, PROTO_CAP_VISION | PROTO_CAP_TOOLS);
	assert_true(a.req.require.context > 1000 && a.req.require.context < 1100);
	json_decref(b);

	/* an empty tools list asks for nothing; Responses and Messages images */
	b = parse("{\"model\":\"m\",\"tools\":[],\"input\":[{\"role\":\"user\",\"content\":"
	    "[{\"type\":\"input_image\",\"image_url\":\"https://x/y.png\"}]}]}");
	client_auth_require(&a, b);
	assert_int_equal(a.req.require.caps, PROTO_CAP_VISION);
	json_decref(b);
	b = parse("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":"
	    "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"data\":\"AA\"}}]}]}");
	client_auth_require(&a, b);
	assert_int_equal(a.req.require.caps, PROTO_CAP_VISION);
	json_decref(b);

	/* a long prompt: bytes / 4 */
	big = filler(40000);
	b = json_pack("{s:s, s:s, s:i}", "model", "m", "prompt", big, "max_tokens", 16);
	client_auth_require(&a, b);
	assert_int_equal(a.req.require.context, 10000 + 16);
	json_decref(b);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heartbeat_round_trip),
		cmocka_unit_test(test_heartbeat_hardware_trimmed),
		cmocka_unit_test(test_heartbeat_limits),
		cmocka_unit_test(test_heartbeat_reply),
		cmocka_unit_test(test_node_record),
		cmocka_unit_test(test_authorize_request),
		cmocka_unit_test(test_authorize_reply),
		cmocka_unit_test(test_receipt_and_settlement),
		cmocka_unit_test(test_public_key_and_error),
		cmocka_unit_test(test_poh_messages),
		cmocka_unit_test(test_client_authorize),
		cmocka_unit_test(test_model_capabilities),
		cmocka_unit_test(test_require),
		cmocka_unit_test(test_client_require),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
