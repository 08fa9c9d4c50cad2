/*
 * test_up_seal.c - both ends of a sealed job in memory: `troop up`'s side
 * (up_seal.h) against the worker's (sealed.h, seal_keys.h).  A statement
 * checked against the ticket's node (another node's refused, nothing
 * sealed); the request opens on the worker for this ticket only; a sealed
 * event stream opens frame by frame, a whole reply only at its end; a
 * flipped byte, a dropped frame or a missing final frame fail; a 2xx that
 * is not sealed is refused while the worker's plain errors pass; a job key
 * is kept for a worker that answers in a256gcm2, and a reply to a job under
 * it in another suite, or bound to another ticket, is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "dynbuf.h"
#include "error.h"
#include "identity.h"
#include "seal.h"
#include "seal_keys.h"
#include "sealed.h"
#include "up_seal.h"

typedef struct {
	char dir[64], path[128];
	troop_identity node;
	seal_keys *keys;
	char stmt[SEAL_STMT_MAX];
} worker_side;

static void worker_init(worker_side *w)
{
	int64_t now = (int64_t)time(NULL);

	snprintf(w->dir, sizeof(w->dir), "/tmp/troop-upseal-XXXXXX");
	assert_non_null(mkdtemp(w->dir));
	snprintf(w->path, sizeof(w->path), "%s/seal.key", w->dir);
	assert_int_equal(identity_generate(&w->node), 0);
	assert_int_equal(seal_keys_open(&w->keys, w->path, &w->node, 3600, now), 0);
	assert_int_equal(seal_keys_statement(w->keys, w->stmt, sizeof(w->stmt), now), 0);
}

static void worker_free(worker_side *w)
{
	seal_keys_free(w->keys);
	unlink(w->path);
	rmdir(w->dir);
}

static const char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"secret\"}]}";

/* Seal a request for ticket `jti` on the client (c initialised) at `now`
 * and open it on the worker: the job's keys. */
static void handshake_at(up_seal *c, worker_side *w, seal_job *wj, const char *jti,
    int64_t now)
{
	dynbuf plain;

	assert_int_equal(up_seal_begin(c, w->stmt, w->node.id, jti, body, strlen(body), now), 0);
	assert_true(c->active);
	assert_null(strstr(dynbuf_ptr(&c->body), "secret"));
	assert_int_equal(strncmp(c->header, "X-Troop-Seal: v1; ", 18), 0);
	dynbuf_init(&plain, 4096);
	assert_int_equal(sealed_request_open(&plain, wj, w->keys, c->header + 14, jti,
	    w->node.id, dynbuf_ptr(&c->body), dynbuf_len(&c->body), now), 0);
	assert_int_equal(dynbuf_len(&plain), strlen(body));
	assert_memory_equal(dynbuf_ptr(&plain), body, strlen(body));
	dynbuf_reset(&plain);
	/* under another ticket, or for another node: refused */
	assert_int_equal(sealed_request_open(&plain, &(seal_job){ 0 }, w->keys, c->header + 14,
	    "jti-other", w->node.id, dynbuf_ptr(&c->body), dynbuf_len(&c->body), now),
	    TROOP_EINVAL);
	assert_int_equal(sealed_request_open(&plain, &(seal_job){ 0 }, w->keys, c->header + 14,
	    jti, "another-node", dynbuf_ptr(&c->body), dynbuf_len(&c->body), now),
	    TROOP_EINVAL);
	dynbuf_free(&plain);
}

static void handshake(up_seal *c, worker_side *w, seal_job *wj)
{
	handshake_at(c, w, wj, "jti-1", (int64_t)time(NULL));
}

static void test_substituted_key(void **state)
{
	worker_side a, b;
	up_seal c;

	(void)state;
	worker_init(&a);
	worker_init(&b);
	up_seal_init(&c, API_OPENAI);
	/* b's genuine statement, given for node a: not sent */
	assert_int_equal(up_seal_begin(&c, b.stmt, a.node.id, "jti-1", body, strlen(body),
	    (int64_t)time(NULL)), TROOP_EAUTH);
	assert_false(c.active);
	assert_int_equal(dynbuf_len(&c.body), 0);
	assert_non_null(strstr(troop_error_msg(), "not signed by that node"));
	/* a's own statement after a failed check: still accepted */
	assert_int_equal(up_seal_begin(&c, a.stmt, a.node.id, "jti-1", body, strlen(body),
	    (int64_t)time(NULL)), 0);
	/* remembered, but only for the same node */
	assert_int_equal(up_seal_begin(&c, a.stmt, b.node.id, "jti-1", body, strlen(body),
	    (int64_t)time(NULL)), TROOP_EAUTH);
	assert_int_equal(up_seal_begin(&c, "bm90IGEgc3RhdGVtZW50", a.node.id, "jti-1", body,
	    strlen(body), (int64_t)time(NULL)), TROOP_EINVAL);
	up_seal_reset(&c);
	worker_free(&a);
	worker_free(&b);
}

/* With the key pool running: the first job makes its keys itself, the
 * pool then fills for that key, and the jobs taken from it are each
 * different (a fresh ephemeral key) and open on the worker; a substituted
 * key is still refused before any pooled job is used. */
static void test_pool(void **state)
{
	worker_side a, b;
	uint8_t pk[SEAL_PK_LEN];
	char seen[8][UP_SEAL_HEADER_MAX];
	seal_job wj;
	up_seal c;

	(void)state;
	worker_init(&a);
	worker_init(&b);
	seal_keys_current(a.keys, pk);
	assert_int_equal(up_seal_pool_start(), 0);
	up_seal_init(&c, API_OPENAI);
	assert_int_equal(up_seal_pool_ready(pk), 0);
	handshake(&c, &a, &wj);
	seal_job_wipe(&wj);
	up_seal_reset(&c);     /* the job ended: the pool fills */
	for (int i = 0; i < 500 && up_seal_pool_ready(pk) < 8; i++)
		usleep(10000);
	assert_int_equal(up_seal_pool_ready(pk), 8);
	for (int i = 0; i < 8; i++) {
		handshake(&c, &a, &wj);
		seal_job_wipe(&wj);
		snprintf(seen[i], sizeof(seen[i]), "%s", c.header);
		for (int k = 0; k < i; k++)
			assert_string_not_equal(seen[k], seen[i]);
	}
	assert_int_equal(up_seal_begin(&c, b.stmt, a.node.id, "jti-1", body, strlen(body),
	    (int64_t)time(NULL)), TROOP_EAUTH);
	up_seal_reset(&c);
	up_seal_pool_stop();
	assert_int_equal(up_seal_pool_ready(pk), 0);
	worker_free(&a);
	worker_free(&b);
}

/* Requests that go to several nodes in turn: each node's statement is
 * checked once, not again each time the node comes round; another node's
 * statement is still refused (and checked each time). */
static void test_statement_cache(void **state)
{
	worker_side w[5];
	seal_job wj;
	up_seal c;
	uint64_t before;

	(void)state;
	for (int i = 0; i < 5; i++)
		worker_init(&w[i]);
	up_seal_init(&c, API_OPENAI);
	before = up_seal_statement_checks();
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 5; i++) {
			handshake(&c, &w[i], &wj);
			seal_job_wipe(&wj);
		}
	}
	assert_int_equal(up_seal_statement_checks() - before, 5);
	for (int round = 0; round < 2; round++)
		assert_int_equal(up_seal_begin(&c, w[1].stmt, w[0].node.id, "jti-1", body,
		    strlen(body), (int64_t)time(NULL)), TROOP_EAUTH);
	assert_int_equal(up_seal_statement_checks() - before, 7);
	up_seal_reset(&c);
	for (int i = 0; i < 5; i++)
		worker_free(&w[i]);
}

/* The key pool keeps jobs ready for several nodes' keys at once (a small
 * fleet's), not only for the last few used. */
static void test_pool_nodes(void **state)
{
	worker_side w[6];
	uint8_t pk[6][SEAL_PK_LEN];
	seal_job wj;
	up_seal c;
	int full = 0;

	(void)state;
	assert_int_equal(up_seal_pool_start(), 0);
	up_seal_init(&c, API_OPENAI);
	for (int i = 0; i < 6; i++) {
		worker_init(&w[i]);
		seal_keys_current(w[i].keys, pk[i]);
		handshake(&c, &w[i], &wj);
		seal_job_wipe(&wj);
		up_seal_reset(&c);
	}
	for (int t = 0; t < 1000 && full < 6; t++) {
		full = 0;
		for (int i = 0; i < 6; i++)
			full += up_seal_pool_ready(pk[i]) == 8;
		if (full < 6)
			usleep(10000);
	}
	assert_int_equal(full, 6);
	up_seal_pool_stop();
	for (int i = 0; i < 6; i++)
		worker_free(&w[i]);
}

/* The worker's sealed reply of `n` pieces into `wire`; `final` ends it. */
static void seal_reply(dynbuf *wire, const seal_job *wj, const char *const *pieces, size_t n,
    bool final)
{
	sealed_reply r;

	assert_int_equal(sealed_reply_init(&r, wj), 0);
	for (size_t i = 0; i < n; i++) {
		const char *o;
		size_t ol;
		assert_int_equal(sealed_reply_push(&r, pieces[i], strlen(pieces[i]),
		    final && i == n - 1, &o, &ol), 0);
		assert_int_equal(dynbuf_add(wire, o, ol), 0);
	}
	sealed_reply_free(&r);
}

static const char *const events[] = { "data: {\"a\":1}\n\n", "data: {\"b\":2}\n\n",
	"data: [DONE]\n\n" };
/* What a worker that takes the client's offer of a256gcm2 answers with. */
static const char *const h_stream[] = { "Content-Type: " SEAL_CONTENT_TYPE_GCM2,
	"X-Troop-Sealed-Type: text/event-stream", NULL };
static const char *const h_json[] = { "Content-Type: " SEAL_CONTENT_TYPE_GCM2,
	"X-Troop-Sealed-Type: application/json", NULL };
/* ... one that knows only a256gcm */
static const char *const h_stream_gcm[] = { "Content-Type: " SEAL_CONTENT_TYPE_GCM,
	"X-Troop-Sealed-Type: text/event-stream", NULL };
/* ... and one that knows neither (secretstream) */
static const char *const h_stream_v1[] = { "Content-Type: application/x-troop-sealed",
	"X-Troop-Sealed-Type: text/event-stream", NULL };

/* `suite`: what the worker knows (a256gcm2; a256gcm only; neither) */
static void stream_opens(int suite)
{
	worker_side w;
	seal_job wj;
	up_seal c;
	dynbuf wire, got;
	const char *ct, *o;
	size_t ol, off = 0;

	worker_init(&w);
	up_seal_init(&c, API_OPENAI);
	handshake(&c, &w, &wj);
	assert_int_equal(wj.reply, SEAL_REPLY_GCM2);   /* the client offered it */
	wj.reply = (uint8_t)suite;
	dynbuf_init(&wire, 1 << 20);
	dynbuf_init(&got, 1 << 20);
	seal_reply(&wire, &wj, events, 3, true);
	assert_null(memmem(dynbuf_ptr(&wire), dynbuf_len(&wire), "data:", 5));
	assert_int_equal(up_seal_headers(&c, 200, suite == SEAL_REPLY_GCM2 ? h_stream :
	    suite == SEAL_REPLY_GCM ? h_stream_gcm : h_stream_v1, &ct), 0);
	assert_string_equal(ct, "text/event-stream");
	/* byte by byte: each event comes out when its frame is in */
	while (off < dynbuf_len(&wire)) {
		assert_int_equal(up_seal_transform(&c, dynbuf_ptr(&wire) + off, 1, false, &o, &ol),
		    0);
		assert_int_equal(dynbuf_add(&got, o, ol), 0);
		off++;
	}
	assert_int_equal(up_seal_transform(&c, NULL, 0, true, &o, &ol), 0);
	assert_int_equal(dynbuf_add(&got, o, ol), 0);
	assert_string_equal(dynbuf_ptr(&got), "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n");
	up_seal_reset(&c);
	dynbuf_free(&wire);
	dynbuf_free(&got);
	worker_free(&w);
}

static void test_stream_opens_as_it_comes(void **state)
{
	(void)state;
	stream_opens(SEAL_REPLY_GCM2);
	stream_opens(SEAL_REPLY_GCM);
	stream_opens(SEAL_REPLY_SS);
}

/* The reply in `wire` fed whole, then the end (headers already taken). */
static int feed_all_opened(up_seal *c, const dynbuf *wire, dynbuf *got)
{
	const char *o;
	size_t ol;
	int rc;

	rc = up_seal_transform(c, dynbuf_ptr(wire), dynbuf_len(wire), false, &o, &ol);
	if (rc == 0)
		(void)dynbuf_add(got, o, ol);
	if (rc == 0)
		rc = up_seal_transform(c, NULL, 0, true, &o, &ol);
	if (rc == 0)
		(void)dynbuf_add(got, o, ol);
	return rc;
}

/* Feed `wire` (altered by the caller) whole, then the end: the result. */
static int feed_all(up_seal *c, const dynbuf *wire, const char *const *h, dynbuf *got)
{
	const char *ct;

	assert_int_equal(up_seal_headers(c, 200, h, &ct), 0);
	return feed_all_opened(c, wire, got);
}

static void test_tampering(void **state)
{
	worker_side w;
	seal_job wj;
	up_seal c;
	dynbuf wire, got;

	(void)state;
	worker_init(&w);
	dynbuf_init(&wire, 1 << 20);
	dynbuf_init(&got, 1 << 20);

	/* a flipped byte in the second frame */
	up_seal_init(&c, API_OPENAI);
	handshake(&c, &w, &wj);
	seal_reply(&wire, &wj, events, 3, true);
	((char *)dynbuf_ptr(&wire))[dynbuf_len(&wire) - 40] ^= 1;
	assert_int_not_equal(feed_all(&c, &wire, h_stream, &got), 0);
	assert_true(c.failed);
	assert_null(strstr(dynbuf_ptr(&got), "[DONE]"));

	/* the final frame missing: cut short */
	dynbuf_reset(&wire);
	dynbuf_reset(&got);
	handshake(&c, &w, &wj);
	seal_reply(&wire, &wj, events, 2, false);
	assert_int_not_equal(feed_all(&c, &wire, h_stream, &got), 0);
	assert_true(c.failed);

	/* a whole reply: nothing comes out until its final frame opened */
	dynbuf_reset(&wire);
	dynbuf_reset(&got);
	handshake(&c, &w, &wj);
	{
		static const char *const json[] = { "{\"choices\":", "[]}" };
		const char *ct, *o;
		size_t ol;

		seal_reply(&wire, &wj, json, 2, true);
		assert_int_equal(up_seal_headers(&c, 200, h_json, &ct), 0);
		assert_string_equal(ct, "application/json");
		assert_int_equal(up_seal_transform(&c, dynbuf_ptr(&wire), dynbuf_len(&wire) - 1,
		    false, &o, &ol), 0);
		assert_int_equal(ol, 0);
		assert_int_equal(up_seal_transform(&c, dynbuf_ptr(&wire) + dynbuf_len(&wire) - 1, 1,
		    false, &o, &ol), 0);
		assert_int_equal(ol, 0);
		assert_int_equal(up_seal_transform(&c, NULL, 0, true, &o, &ol), 0);
		assert_int_equal(ol, strlen("{\"choices\":[]}"));
		assert_memory_equal(o, "{\"choices\":[]}", ol);
	}

	/* another job's reply (another ticket; the same job key, kept since
	 * the a256gcm2 reply above): does not open */
	{
		seal_job other;
		up_seal c2;

		dynbuf_reset(&wire);
		dynbuf_reset(&got);
		up_seal_init(&c2, API_OPENAI);
		handshake_at(&c2, &w, &other, "jti-a", (int64_t)time(NULL));
		handshake_at(&c, &w, &wj, "jti-b", (int64_t)time(NULL));
		seal_reply(&wire, &other, events, 3, true);
		assert_int_not_equal(feed_all(&c, &wire, h_stream, &got), 0);
		assert_int_equal(dynbuf_len(&got), 0);
		up_seal_reset(&c2);
	}
	up_seal_reset(&c);
	dynbuf_free(&wire);
	dynbuf_free(&got);
	worker_free(&w);
}

/* The epk of c's sealed request (from its header). */
static void header_epk(const up_seal *c, char out[64])
{
	const char *e = strstr(c->header, "epk=");

	assert_non_null(e);
	snprintf(out, 64, "%.*s", (int)strcspn(e + 4, ";"), e + 4);
}

/* A job of c (ticket jti, at now) answered by the worker in `suite` with
 * Content-Type headers h: what up_seal_headers returns; the reply opened
 * into got when it did. */
static int job(up_seal *c, worker_side *w, const char *jti, int64_t now, int suite,
    const char *const *h, char epk[64], dynbuf *got)
{
	seal_job wj;
	dynbuf wire;
	const char *ct;
	int rc;

	up_seal_reset(c);
	handshake_at(c, w, &wj, jti, now);
	header_epk(c, epk);
	wj.reply = (uint8_t)suite;
	dynbuf_init(&wire, 1 << 20);
	seal_reply(&wire, &wj, events, 3, true);
	dynbuf_reset(got);
	rc = up_seal_headers(c, 200, h, &ct);
	if (rc == 0)
		rc = feed_all_opened(c, &wire, got);
	dynbuf_free(&wire);
	seal_job_wipe(&wj);
	return rc;
}

/* A worker that answers in a256gcm2: troop up keeps the job key and seals
 * the next jobs with it (no X25519 for them), each reply bound to its own
 * ticket; a reply to such a job in a256gcm (the offer altered on the way)
 * is refused and the key dropped; a worker that knows only a256gcm gets a
 * fresh key per job; a key is kept SEAL_KEY_REUSE_S at most. */
static void test_kept_key(void **state)
{
	worker_side w, old;
	char e1[64], e2[64], e3[64];
	dynbuf got;
	up_seal c;
	int64_t now = (int64_t)time(NULL);
	uint64_t reused = up_seal_reused_jobs();

	(void)state;
	worker_init(&w);
	worker_init(&old);
	dynbuf_init(&got, 1 << 20);
	up_seal_init(&c, API_OPENAI);

	/* the first job: a fresh key; answered in a256gcm2 */
	assert_int_equal(job(&c, &w, "jti-1", now, SEAL_REPLY_GCM2, h_stream, e1, &got), 0);
	assert_false(c.reused);
	assert_non_null(strstr(dynbuf_ptr(&got), "[DONE]"));
	/* the next ones: the same key, each reply opens for its own ticket */
	assert_int_equal(job(&c, &w, "jti-2", now, SEAL_REPLY_GCM2, h_stream, e2, &got), 0);
	assert_true(c.reused);
	assert_string_equal(e1, e2);
	assert_non_null(strstr(dynbuf_ptr(&got), "[DONE]"));
	assert_int_equal(up_seal_reused_jobs() - reused, 1);
	/* another job's reply under the same key (swapped on the way) */
	{
		seal_job wj, wj_other;
		dynbuf wire;
		const char *ct;

		up_seal_reset(&c);
		handshake_at(&c, &w, &wj_other, "jti-3", now);
		up_seal_reset(&c);
		handshake_at(&c, &w, &wj, "jti-4", now);
		assert_true(c.reused);
		assert_memory_equal(wj.resp_key, wj_other.resp_key, SEAL_KEY_LEN);
		dynbuf_init(&wire, 1 << 20);
		seal_reply(&wire, &wj_other, events, 3, true);
		dynbuf_reset(&got);
		assert_int_equal(up_seal_headers(&c, 200, h_stream, &ct), 0);
		assert_int_not_equal(feed_all_opened(&c, &wire, &got), 0);
		assert_int_equal(dynbuf_len(&got), 0);
		dynbuf_free(&wire);
		seal_job_wipe(&wj);
		seal_job_wipe(&wj_other);
	}
	/* a failed reply drops the key: the next job has a fresh one */
	assert_int_equal(job(&c, &w, "jti-5", now, SEAL_REPLY_GCM2, h_stream, e2, &got), 0);
	assert_false(c.reused);
	assert_string_not_equal(e1, e2);
	/* kept again; then a256gcm2 taken out of the offer: the worker answers
	 * a256gcm, which is refused for a kept key, and the key is dropped */
	assert_int_equal(job(&c, &w, "jti-6", now, SEAL_REPLY_GCM2, h_stream, e3, &got), 0);
	assert_true(c.reused);
	assert_string_equal(e2, e3);
	assert_int_equal(job(&c, &w, "jti-7", now, SEAL_REPLY_GCM, h_stream_gcm, e3, &got),
	    TROOP_EUPSTREAM);
	assert_non_null(strstr(troop_error_msg(), "not bound to the ticket"));
	assert_int_equal(job(&c, &w, "jti-8", now, SEAL_REPLY_GCM2, h_stream, e3, &got), 0);
	assert_false(c.reused);
	assert_string_not_equal(e2, e3);
	/* kept SEAL_KEY_REUSE_S at most */
	assert_int_equal(job(&c, &w, "jti-9", now + SEAL_KEY_REUSE_S - 1, SEAL_REPLY_GCM2,
	    h_stream, e1, &got), 0);
	assert_true(c.reused);
	assert_string_equal(e1, e3);
	assert_int_equal(job(&c, &w, "jti-10", now + SEAL_KEY_REUSE_S, SEAL_REPLY_GCM2,
	    h_stream, e1, &got), 0);
	assert_false(c.reused);
	assert_string_not_equal(e1, e3);

	/* a worker that knows only a256gcm: a fresh key for every job */
	assert_int_equal(job(&c, &old, "jti-1", now, SEAL_REPLY_GCM, h_stream_gcm, e1, &got), 0);
	assert_int_equal(job(&c, &old, "jti-2", now, SEAL_REPLY_GCM, h_stream_gcm, e2, &got), 0);
	assert_false(c.reused);
	assert_string_not_equal(e1, e2);
	assert_non_null(strstr(dynbuf_ptr(&got), "[DONE]"));

	up_seal_reset(&c);
	dynbuf_free(&got);
	worker_free(&w);
	worker_free(&old);
}

static void test_plain_replies(void **state)
{
	static const char *const h_plain[] = { "Content-Type: application/json", NULL };
	worker_side w;
	seal_job wj;
	up_seal c;
	const char *ct, *o;
	size_t ol;

	(void)state;
	worker_init(&w);
	up_seal_init(&c, API_OPENAI);
	handshake(&c, &w, &wj);
	/* an unsealed 2xx to a sealed request: refused */
	assert_int_equal(up_seal_headers(&c, 200, h_plain, &ct), TROOP_EUPSTREAM);
	/* the worker's own error: plain, passed as it is */
	handshake(&c, &w, &wj);
	assert_int_equal(up_seal_headers(&c, 401, h_plain, &ct), 0);
	assert_null(ct);
	assert_int_equal(up_seal_transform(&c, "{\"error\":{}}", 12, false, &o, &ol), 0);
	assert_int_equal(ol, 12);
	up_seal_reset(&c);
	worker_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_substituted_key),
		cmocka_unit_test(test_stream_opens_as_it_comes),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_plain_replies),
		cmocka_unit_test(test_kept_key),
		cmocka_unit_test(test_pool),
		cmocka_unit_test(test_statement_cache),
		cmocka_unit_test(test_pool_nodes),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
