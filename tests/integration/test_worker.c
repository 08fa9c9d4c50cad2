/*
 * test_worker.c - `troop worker` as a real process between a real
 * coordinator and the engine simulator (DESIGN.md sections 5 and 8):
 * registration, the ticket checks (each refusal is a 401 and the engine
 * never sees the request), event-by-event streaming, an engine dying
 * mid-stream, 64 concurrent streams byte for byte, max_seconds and
 * --max-jobs.
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
#include <time.h>

#include <curl/curl.h>

#include "encoding.h"
#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"
#include "ticket.h"
#include "worker_env.h"

#define MODEL "llama3:8b"
#define MODEL2 "qwen2.5:7b-instruct"

static char tmp[256];
static troop_identity ckey;       /* the coordinator's ticket key (a file we made) */
static troop_identity user;
static harness_proc coord, sim, slow_sim, wa, ws;
static char wa_id[TROOP_ID_LEN + 1], ws_id[TROOP_ID_LEN + 1];

/* ---- helpers --------------------------------------------------------------------- */

static char *chat_body(const char *model, const char *prompt, int max_tokens, bool stream)
{
	json_t *b = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model", model, "messages",
	    "role", "user", "content", prompt, "max_tokens", max_tokens, "stream", stream);
	char *s = json_dumps(b, JSON_COMPACT);

	json_decref(b);
	return s;
}

/* A ticket signed with the coordinator's key, for the negative cases that
 * need claims /authorize never gives. */
static char *mint(const char *target, const char *model, int64_t iat, int64_t exp,
    const char *aud, const troop_identity *key)
{
	ticket_claims cl;
	char *tok = NULL;

	memset(&cl, 0, sizeof(cl));
	snprintf(cl.iss, sizeof(cl.iss), "%s", ckey.id);
	snprintf(cl.sub, sizeof(cl.sub), "%s", user.id);
	snprintf(cl.aud, sizeof(cl.aud), "%s", aud ? aud : TICKET_AUD);
	snprintf(cl.target_node, sizeof(cl.target_node), "%s", target);
	snprintf(cl.model, sizeof(cl.model), "%s", model);
	ticket_new_jti(cl.jti);
	cl.iat = iat;
	cl.exp = exp;
	cl.max_seconds = 60;
	assert_int_equal(ticket_sign(&tok, &cl, key ? key : &ckey), 0);
	return tok;
}

static char *b64url_of(const char *s)
{
	size_t n = strlen(s), cap = b64url_len(n) + 1;
	char *out = malloc(cap);

	assert_true(b64url_encode(out, cap, s, n) > 0);
	return out;
}

/* header.claims.sig with a made-up header and signature bytes. */
static char *forge(const char *header_json, const char *claims_json, const unsigned char *sig,
    size_t siglen)
{
	char *h = b64url_of(header_json), *c = b64url_of(claims_json);
	char sigtxt[200] = "";
	size_t n;
	char *out;

	if (siglen)
		b64url_encode(sigtxt, sizeof(sigtxt), sig, siglen);
	n = strlen(h) + strlen(c) + strlen(sigtxt) + 3;
	out = malloc(n);
	snprintf(out, n, "%s.%s.%s", h, c, sigtxt);
	free(h);
	free(c);
	return out;
}

static char *claims_json(const char *target, const char *model)
{
	int64_t now = time(NULL);
	char jti[32];
	json_t *c;
	char *s;

	ticket_new_jti(jti);
	c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "iss", ckey.id,
	    "sub", user.id, "aud", TICKET_AUD, "target_node", target, "model", model,
	    "jti", jti, "iat", (json_int_t)now, "exp", (json_int_t)(now + 300),
	    "max_seconds", (json_int_t)60);
	s = json_dumps(c, JSON_COMPACT);
	json_decref(c);
	return s;
}

/* A real ticket for `model` on `node`, retrying while the node is still
 * busy with a previous job (its slot and registry count free up once the
 * receipt is in). */
static char *real_ticket(const char *node, const char *model, int max_seconds, char *job_id)
{
	char *tok = NULL;
	int st = 0;

	for (int i = 0; i < 200; i++) {
		st = wenv_authorize(&tok, job_id, &user, coord.url, model, node, max_seconds);
		if (st != 503)
			break;
		harness_sleep_ms(50);
	}
	assert_int_equal(st, 200);
	return tok;
}

static void heartbeat_fake_node(const troop_identity *node, const char *model)
{
	http_client *c;
	json_t *b = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "name", "fake", "tailscale_ip", "127.0.0.1", "port", 9,
	    "status", "IDLE", "models", "name", model, "load", "active_jobs", 0, "max_jobs", 4);
	json_t *out = NULL;
	int st = 0;

	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, &st, &out, node, "POST", coord.url, "/heartbeat",
	    b), 0);
	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);
	http_client_free(c);
}

static const char *error_code(const char *body)
{
	static char code[64];
	json_t *j = json_loads(body, JSON_DISABLE_EOF_CHECK, NULL);
	const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));

	snprintf(code, sizeof(code), "%s", c ? c : "(none)");
	json_decref(j);
	return code;
}

static void wait_idle(const harness_proc *w)
{
	for (int i = 0; i < 400; i++) {
		json_t *h = wenv_get_json(w->url, "/health", NULL);
		long a = (long)json_integer_value(json_object_get(h, "active_jobs"));
		json_decref(h);
		if (a == 0)
			return;
		harness_sleep_ms(25);
	}
	fail_msg("worker still busy");
}

static bool wait_log(const harness_proc *p, const char *needle)
{
	for (int i = 0; i < 400; i++) {
		if (harness_log_contains(p, needle))
			return true;
		harness_sleep_ms(25);
	}
	return false;
}

/* ---- streaming client ------------------------------------------------------------- */

struct stream {
	const harness_proc *sim;   /* checked when the first event arrives */
	char *buf;
	size_t len, cap;
	int chunks_with_events;
	bool first_seen;
	long completed_at_first, completed_before;
	atomic_bool started;
};

static int stream_data(void *arg, const char *data, size_t len)
{
	struct stream *s = arg;

	if (s->len + len + 1 > s->cap) {
		s->cap = (s->len + len + 1) * 2;
		s->buf = realloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	if (memmem(data, len, "data: ", 6))
		s->chunks_with_events++;
	if (!s->first_seen && strstr(s->buf, "\n\n")) {
		s->first_seen = true;
		if (s->sim)
			s->completed_at_first = wenv_sim_stat(s->sim, "completed");
		atomic_store(&s->started, true);
	}
	return 0;
}

/* The same request straight to the simulator, normalised. */
static char *direct(const harness_proc *simp, const char *body)
{
	http_response r;
	char *s;

	assert_int_equal(wenv_post(&r, simp->url, "/v1/chat/completions", NULL, body), 0);
	assert_int_equal(r.status, 200);
	s = strdup(r.body);
	http_response_free(&r);
	wenv_normalise(s);
	return s;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_registers_with_models(void **state)
{
	json_t *peers = wenv_get_json(coord.url, "/peers?model=" MODEL, NULL), *n, *m;
	size_t i;
	bool found = false;

	assert_non_null(peers);
	json_array_foreach(json_object_get(peers, "nodes"), i, n) {
		json_t *models = json_object_get(n, "models");
		size_t k;
		int have = 0;

		if (strcmp(json_string_value(json_object_get(n, "node_id")), wa_id) != 0)
			continue;
		found = true;
		assert_string_equal(json_string_value(json_object_get(n, "status")), "IDLE");
		assert_string_equal(json_string_value(json_object_get(n, "tailscale_ip")), "127.0.0.1");
		assert_int_equal(json_integer_value(json_object_get(n, "port")), wa.port);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "load"),
		    "max_jobs")), 64);
		assert_string_equal(json_string_value(json_object_get(n, "version")),
		    "troop/" TROOP_VERSION);
		json_array_foreach(models, k, m) {
			const char *name = json_string_value(json_object_get(m, "name"));
			const char *hash = json_string_value(json_object_get(m, "content_hash"));
			unsigned char h[crypto_hash_sha256_BYTES];
			char want[80] = "sha256:";

			/* the simulator's digest of a model is SHA-256 of its name */
			crypto_hash_sha256(h, (const unsigned char *)name, strlen(name));
			sodium_bin2hex(want + 7, sizeof(want) - 7, h, sizeof(h));
			assert_string_equal(hash, want);
			assert_string_equal(json_string_value(json_object_get(m, "engine")), "ollama");
			assert_true(json_integer_value(json_object_get(m, "size_bytes")) > 0);
			if (strcmp(name, MODEL) == 0 || strcmp(name, MODEL2) == 0)
				have++;
		}
		assert_int_equal(have, 2);
		assert_string_equal(json_string_value(json_object_get(json_array_get(
		    json_object_get(n, "engines"), 0), "type")), "ollama");
	}
	assert_true(found);
	json_decref(peers);
}

static void test_bad_tickets_refused(void **state)
{
	troop_identity other, fake_node;
	int64_t now = time(NULL);
	long before = wenv_sim_stat(&sim, "chat_requests");
	char *body = chat_body(MODEL, "hello", 2, false);
	char *body2 = chat_body(MODEL2, "hello", 2, false);
	char *notserved = chat_body("not-served-model", "hello", 2, false);
	char pk_b64[64];
	json_t *pkj = wenv_get_json(coord.url, "/public-key", NULL);
	struct { const char *name; char *token; const char *body; } cases[16];
	int n = 0;
	char *real, *replay_tok, *tmp_tok;
	http_response r;

	identity_generate(&other);
	identity_generate(&fake_node);
	snprintf(pk_b64, sizeof(pk_b64), "%s", json_string_value(json_object_get(pkj, "public_key")));

	/* alg none */
	{
		char *c = claims_json(wa_id, MODEL);
		cases[n++] = (typeof(cases[0])){ "alg none",
			forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", c, NULL, 0), body };
		free(c);
	}
	/* HS256 keyed with the public key (its text, and its raw bytes) */
	for (int raw = 0; raw < 2; raw++) {
		char hdr[128], *c = claims_json(wa_id, MODEL), *h, *cc, *signing;
		unsigned char mac[crypto_auth_hmacsha256_BYTES], pk[32];
		crypto_auth_hmacsha256_state st;
		size_t pkn = 0;

		snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
		    json_string_value(json_object_get(pkj, "kid")));
		h = b64url_of(hdr);
		cc = b64url_of(c);
		signing = malloc(strlen(h) + strlen(cc) + 2);
		sprintf(signing, "%s.%s", h, cc);
		b64url_decode(pk, sizeof(pk), &pkn, pk_b64, strlen(pk_b64));
		if (raw)
			crypto_auth_hmacsha256_init(&st, pk, pkn);
		else
			crypto_auth_hmacsha256_init(&st, (const unsigned char *)pk_b64, strlen(pk_b64));
		crypto_auth_hmacsha256_update(&st, (const unsigned char *)signing, strlen(signing));
		crypto_auth_hmacsha256_final(&st, mac);
		cases[n++] = (typeof(cases[0])){ raw ? "HS256 raw public key" : "HS256 public key",
			forge(hdr, c, mac, sizeof(mac)), body };
		free(c);
		free(h);
		free(cc);
		free(signing);
	}
	cases[n++] = (typeof(cases[0])){ "expired",
		mint(wa_id, MODEL, now - 400, now - 100, NULL, NULL), body };
	cases[n++] = (typeof(cases[0])){ "not yet valid",
		mint(wa_id, MODEL, now + 120, now + 400, NULL, NULL), body };
	cases[n++] = (typeof(cases[0])){ "wrong aud",
		mint(wa_id, MODEL, now, now + 300, "someone-else", NULL), body };
	cases[n++] = (typeof(cases[0])){ "unknown key",
		mint(wa_id, MODEL, now, now + 300, NULL, &other), body };
	cases[n++] = (typeof(cases[0])){ "model not served here",
		mint(wa_id, "not-served-model", now, now + 300, NULL, NULL), notserved };
	/* a real ticket for another node */
	heartbeat_fake_node(&fake_node, MODEL);
	cases[n++] = (typeof(cases[0])){ "wrong node",
		real_ticket(fake_node.id, MODEL, 0, NULL), body };
	/* a real ticket, another model in the body */
	cases[n++] = (typeof(cases[0])){ "wrong model", real_ticket(wa_id, MODEL, 0, NULL), body2 };
	/* a real ticket, tampered: claims changed, signature kept */
	real = real_ticket(wa_id, MODEL, 0, NULL);
	{
		char *d1 = strchr(real, '.'), *d2 = strchr(d1 + 1, '.');
		char claims[2048], *hdr, *tampered;
		size_t cl = 0;
		json_t *cj;

		*d1 = '\0';
		hdr = strdup(real);
		*d1 = '.';
		assert_int_equal(b64url_decode(claims, sizeof(claims) - 1, &cl, d1 + 1,
		    (size_t)(d2 - d1 - 1)), 0);
		claims[cl] = '\0';
		cj = json_loads(claims, 0, NULL);
		json_object_set_new(cj, "max_seconds", json_integer(86400));
		{
			char *c2 = json_dumps(cj, JSON_COMPACT), *c2b = b64url_of(c2);
			size_t len = strlen(hdr) + strlen(c2b) + strlen(d2) + 2;
			tampered = malloc(len);
			snprintf(tampered, len, "%s.%s%s", hdr, c2b, d2);
			free(c2);
			free(c2b);
		}
		json_decref(cj);
		free(hdr);
		cases[n++] = (typeof(cases[0])){ "tampered claims", tampered, body };
		tmp_tok = strdup(real);
		tmp_tok[strlen(tmp_tok) - 2] = '\0';
		cases[n++] = (typeof(cases[0])){ "truncated signature", tmp_tok, body };
		tmp_tok = malloc(strlen(real) + 2);
		sprintf(tmp_tok, "%s=", real);
		cases[n++] = (typeof(cases[0])){ "re-encoded (padding)", tmp_tok, body };
	}
	free(real);
	cases[n++] = (typeof(cases[0])){ "no ticket", NULL, body };

	for (int i = 0; i < n; i++) {
		assert_int_equal(wenv_post(&r, wa.url, "/v1/chat/completions", cases[i].token,
		    cases[i].body), 0);
		if (r.status != 401)
			fprintf(stderr, "case '%s': %d %s\n", cases[i].name, r.status, r.body);
		assert_int_equal(r.status, 401);
		assert_string_equal(error_code(r.body), "invalid_ticket");
		http_response_free(&r);
		free(cases[i].token);
	}
	/* the engine saw none of them */
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before);

	/* replay: the first use works, the second is refused */
	replay_tok = real_ticket(wa_id, MODEL, 0, NULL);
	assert_int_equal(wenv_post(&r, wa.url, "/v1/chat/completions", replay_tok, body), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before + 1);
	assert_int_equal(wenv_post(&r, wa.url, "/v1/chat/completions", replay_tok, body), 0);
	assert_int_equal(r.status, 401);
	assert_string_equal(error_code(r.body), "invalid_ticket");
	http_response_free(&r);
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before + 1);
	free(replay_tok);

	/* the unknown kid made the worker fetch the coordinator key again */
	assert_true(harness_log_contains(&wa, "source=refetch"));
	/* never logged */
	assert_false(harness_log_contains(&wa, "eyJ"));
	assert_false(harness_log_contains(&wa, "Bearer"));
	json_decref(pkj);
	free(body);
	free(body2);
	free(notserved);
}

static void test_streams_event_by_event(void **state)
{
	char *body = chat_body(MODEL, "why is the sky blue", 40, true);
	char *tok = real_ticket(ws_id, MODEL, 0, NULL);
	struct stream s = { .sim = &slow_sim };
	char *want;
	int status = 0;

	s.completed_before = wenv_sim_stat(&slow_sim, "completed");
	assert_int_equal(wenv_post_stream(&status, ws.url, "/v1/chat/completions", tok, body,
	    stream_data, &s), 0);
	assert_int_equal(status, 200);
	assert_true(s.first_seen);
	/* when the first event reached us, the simulator had not finished */
	assert_int_equal(s.completed_at_first, s.completed_before);
	/* events came as they were made, not in one piece */
	assert_true(s.chunks_with_events >= 10);
	/* byte for byte what the engine says (ids and timestamps aside) */
	wenv_normalise(s.buf);
	want = direct(&slow_sim, body);
	assert_string_equal(s.buf, want);
	assert_int_equal(wenv_count(s.buf, "data: [DONE]"), 1);
	free(want);
	free(s.buf);
	free(tok);
	free(body);
	wait_idle(&ws);
}

static void test_engine_dies_mid_stream(void **state)
{
	static const char *const sim_args[] = { "--fault", "die-mid-stream", "--fault-after",
		"3", NULL };
	static harness_proc dsim, wd;
	char wd_id[TROOP_ID_LEN + 1], *tok, *body = chat_body(MODEL, "hi", 20, true);
	char log[400];
	struct stream s = { 0 };
	const char *ev;
	int status = 0;

	snprintf(log, sizeof(log), "%s/sim-die.log", tmp);
	assert_int_equal(wenv_start_sim(&dsim, log, sim_args), 0);
	assert_int_equal(wenv_start_worker(&wd, tmp, "wd", coord.url, dsim.port, NULL), 0);
	assert_int_equal(wenv_worker_id(wd_id, tmp, "wd"), 0);
	tok = real_ticket(wd_id, MODEL, 0, NULL);
	assert_int_equal(wenv_post_stream(&status, wd.url, "/v1/chat/completions", tok, body,
	    stream_data, &s), 0);
	assert_int_equal(status, 200);
	/* three events of the engine, then our error event, and no end marker:
	 * the answer is not complete */
	assert_int_equal(wenv_count(s.buf, "\"chat.completion.chunk\""), 3);
	ev = strstr(s.buf, "data: {\"error\"");
	assert_non_null(ev);
	assert_string_equal(error_code(ev + 6), "upstream_error");
	assert_null(strstr(ev, "[DONE]"));
	assert_true(wait_log(&wd, "outcome=error"));
	free(s.buf);
	free(tok);
	free(body);
	assert_int_equal(harness_stop(&wd, SIGTERM), 0);
	harness_stop(&dsim, SIGTERM);
}

struct conc {
	pthread_t t;
	int k;
	char *token;
	char *body;
	struct stream s;
	int status;
	int rc;
	char *want;   /* the same request straight to the simulator */
	int want_status;
};

static void *conc_main(void *arg)
{
	struct conc *c = arg;
	http_response r;

	c->rc = wenv_post_stream(&c->status, wa.url, "/v1/chat/completions", c->token, c->body,
	    stream_data, &c->s);
	if (wenv_post(&r, sim.url, "/v1/chat/completions", NULL, c->body) == 0) {
		c->want_status = r.status;
		c->want = strdup(r.body ? r.body : "");
		wenv_normalise(c->want);
		http_response_free(&r);
	}
	return NULL;
}

static void test_64_concurrent_streams(void **state)
{
	enum { N = 64 };
	struct conc *cs = calloc(N, sizeof(*cs));
	long before = wenv_sim_stat(&sim, "chat_requests");

	for (int k = 0; k < N; k++) {
		char prompt[64];

		snprintf(prompt, sizeof(prompt), "stream number %d of many", k);
		cs[k].k = k;
		cs[k].body = chat_body(k % 2 ? MODEL : MODEL2, prompt, 24 + k % 7, true);
		cs[k].token = real_ticket(wa_id, k % 2 ? MODEL : MODEL2, 30, NULL);
	}
	for (int k = 0; k < N; k++)
		assert_int_equal(pthread_create(&cs[k].t, NULL, conc_main, &cs[k]), 0);
	for (int k = 0; k < N; k++)
		pthread_join(cs[k].t, NULL);
	/* one request each through the worker, one each direct */
	assert_int_equal(wenv_sim_stat(&sim, "chat_requests"), before + 2 * N);
	for (int k = 0; k < N; k++) {
		assert_int_equal(cs[k].rc, 0);
		assert_int_equal(cs[k].status, 200);
		assert_int_equal(cs[k].want_status, 200);
		wenv_normalise(cs[k].s.buf);
		assert_string_equal(cs[k].s.buf, cs[k].want);
		free(cs[k].want);
		free(cs[k].s.buf);
		free(cs[k].token);
		free(cs[k].body);
	}
	free(cs);
	wait_idle(&wa);
}

static void test_max_seconds_cuts_stream(void **state)
{
	char *body = chat_body(MODEL, "tell me a long story", 400, true);
	char job[64];
	char *tok = real_ticket(ws_id, MODEL, 1, job);
	struct stream s = { 0 };
	const char *ev;
	char needle[128];
	int status = 0;

	assert_int_equal(wenv_post_stream(&status, ws.url, "/v1/chat/completions", tok, body,
	    stream_data, &s), 0);
	assert_int_equal(status, 200);
	assert_true(wenv_count(s.buf, "\"chat.completion.chunk\"") < 400);
	ev = strstr(s.buf, "data: {\"error\"");
	assert_non_null(ev);
	assert_string_equal(error_code(ev + 6), "timeout");
	assert_non_null(strstr(ev, "max_seconds"));
	assert_null(strstr(ev, "[DONE]"));
	snprintf(needle, sizeof(needle), "job=%s", job);
	assert_true(wait_log(&ws, needle));
	assert_true(wait_log(&ws, "outcome=cut_off"));
	free(s.buf);
	free(tok);
	free(body);
	wait_idle(&ws);
}

struct bg {
	pthread_t t;
	char *token, *body;
	struct stream s;
	int status;
};

static void *bg_main(void *arg)
{
	struct bg *b = arg;

	wenv_post_stream(&b->status, ws.url, "/v1/chat/completions", b->token, b->body,
	    stream_data, &b->s);
	atomic_store(&b->s.started, true);
	return NULL;
}

static void test_max_jobs_429(void **state)
{
	struct bg a = { 0 };
	int64_t now = time(NULL);
	char *tok_b, *body_b = chat_body(MODEL, "second", 2, false);
	long before;
	http_response r;

	/* worker ws runs one job at a time: keep it busy */
	a.body = chat_body(MODEL, "a long one", 40, true);
	a.token = real_ticket(ws_id, MODEL, 0, NULL);
	assert_int_equal(pthread_create(&a.t, NULL, bg_main, &a), 0);
	while (!atomic_load(&a.s.started))
		harness_sleep_ms(5);
	before = wenv_sim_stat(&slow_sim, "chat_requests");
	/* /authorize would not hand out a ticket for a full node: mint a valid one */
	tok_b = mint(ws_id, MODEL, now, now + 300, NULL, NULL);
	assert_int_equal(wenv_post(&r, ws.url, "/v1/chat/completions", tok_b, body_b), 0);
	assert_int_equal(r.status, 429);
	assert_string_equal(error_code(r.body), "rate_limited");
	http_response_free(&r);
	assert_int_equal(wenv_sim_stat(&slow_sim, "chat_requests"), before);
	pthread_join(a.t, NULL);
	assert_int_equal(a.status, 200);
	assert_int_equal(wenv_count(a.s.buf, "data: [DONE]"), 1);
	assert_null(strstr(a.s.buf, "\"error\""));
	free(a.s.buf);
	free(a.token);
	free(a.body);
	free(tok_b);
	free(body_b);
	wait_idle(&ws);
}


static void test_other_routes(void **state)
{
	static const char *const paths[] = { "/v1/completions", "/v1/embeddings" };
	static const char *const bodies[] = {
		"{\"model\":\"" MODEL "\",\"prompt\":\"once upon a time\",\"max_tokens\":6,"
		"\"stream\":true}",
		"{\"model\":\"" MODEL "\",\"input\":[\"one two three\",\"four\"]}",
	};
	char job[64], needle[160];

	for (int i = 0; i < 2; i++) {
		char *tok = real_ticket(wa_id, MODEL, 0, job);
		http_response via, dir;

		assert_int_equal(wenv_post(&via, wa.url, paths[i], tok, bodies[i]), 0);
		assert_int_equal(wenv_post(&dir, sim.url, paths[i], NULL, bodies[i]), 0);
		assert_int_equal(via.status, 200);
		assert_int_equal(dir.status, 200);
		wenv_normalise(via.body);
		wenv_normalise(dir.body);
		assert_string_equal(via.body, dir.body);
		http_response_free(&via);
		http_response_free(&dir);
		free(tok);
		/* the embeddings reply reports usage: 4 prompt tokens */
		snprintf(needle, sizeof(needle), "job=%s path=%s", job, paths[i]);
		assert_true(wait_log(&wa, needle));
	}
	assert_true(wait_log(&wa, "prompt=4 completion=0 usage=engine"));
	wait_idle(&wa);
}

static void test_engine_error_normalised(void **state)
{
	static const char *const sim_args[] = { "--fault", "500", "--version-kind", "llamacpp",
		NULL };
	static harness_proc esim, we;
	char we_id[TROOP_ID_LEN + 1], *tok, *body = chat_body(MODEL, "hi", 4, true);
	char log[400];
	http_response r;
	json_t *j, *e;

	snprintf(log, sizeof(log), "%s/sim-500.log", tmp);
	assert_int_equal(wenv_start_sim(&esim, log, sim_args), 0);
	{
		/* llama.cpp's error shape: {"error":{"code":500,"message","type"}} */
		char engine[128];
		const char *args[] = { "--engine", engine, NULL };

		snprintf(engine, sizeof(engine), "llamacpp=http://127.0.0.1:%d", esim.port);
		assert_int_equal(wenv_start_worker(&we, tmp, "we", coord.url, 0, args), 0);
	}
	assert_int_equal(wenv_worker_id(we_id, tmp, "we"), 0);
	/* the llama.cpp simulator serves its first model under its alias */
	tok = real_ticket(we_id, MODEL, 0, NULL);
	assert_int_equal(wenv_post(&r, we.url, "/v1/chat/completions", tok, body), 0);
	assert_int_equal(r.status, 500);
	j = json_loads(r.body, 0, NULL);
	e = json_object_get(j, "error");
	assert_non_null(e);
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_string_equal(json_string_value(json_object_get(e, "type")), "server_error");
	assert_string_equal(json_string_value(json_object_get(e, "code")), "engine_error");
	json_decref(j);
	http_response_free(&r);
	assert_true(wait_log(&we, "outcome=engine_error status=500"));
	free(tok);
	free(body);
	assert_int_equal(harness_stop(&we, SIGTERM), 0);
	harness_stop(&esim, SIGTERM);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int setup(void **state)
{
	static const char *const slow_args[] = { "--tokens-per-second", "20", NULL };
	static const char *const wa_args[] = { "--max-jobs", "64", NULL };
	static const char *const ws_args[] = { "--max-jobs", "1", NULL };
	char log[400];

	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	identity_generate(&user);
	assert_int_equal(wenv_start_ticket_coordinator(&coord, &ckey, tmp), 0);
	snprintf(log, sizeof(log), "%s/sim.log", tmp);
	assert_int_equal(wenv_start_sim(&sim, log, NULL), 0);
	snprintf(log, sizeof(log), "%s/sim-slow.log", tmp);
	assert_int_equal(wenv_start_sim(&slow_sim, log, slow_args), 0);
	assert_int_equal(wenv_start_worker(&wa, tmp, "wa", coord.url, sim.port, wa_args), 0);
	assert_int_equal(wenv_start_worker(&ws, tmp, "ws", coord.url, slow_sim.port, ws_args), 0);
	assert_int_equal(wenv_worker_id(wa_id, tmp, "wa"), 0);
	assert_int_equal(wenv_worker_id(ws_id, tmp, "ws"), 0);
	return 0;
}

static int teardown(void **state)
{
	int rc = 0;

	if (wenv_stop_clean(&wa) != 0)
		rc = -1;
	if (wenv_stop_clean(&ws) != 0)
		rc = -1;
	harness_stop_all();  /* the simulators and the coordinator */
	identity_wipe(&ckey);
	curl_global_cleanup();
	return rc;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registers_with_models),
		cmocka_unit_test(test_bad_tickets_refused),
		cmocka_unit_test(test_streams_event_by_event),
		cmocka_unit_test(test_engine_dies_mid_stream),
		cmocka_unit_test(test_engine_error_normalised),
		cmocka_unit_test(test_other_routes),
		cmocka_unit_test(test_64_concurrent_streams),
		cmocka_unit_test(test_max_seconds_cuts_stream),
		cmocka_unit_test(test_max_jobs_429),
	};

	/* the harness stops what is left and removes tmp at exit */
	return cmocka_run_group_tests(tests, setup, teardown);
}
