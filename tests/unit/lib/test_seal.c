/*
 * test_seal.c - sealed jobs (src/lib/seal.c):
 *   - a worker's key statement verifies against its own node id only; a
 *     substituted key, a flipped byte or an expired statement is refused;
 *   - a sealed request opens only with the same job's key, ticket id and
 *     node id; any flipped byte or truncation is refused;
 *   - a sealed response stream gives back the chunks in order however the
 *     bytes arrive, and a dropped, reordered, altered, cut or foreign
 *     chunk is an error, never passed on;
 *   - the construction is what docs/PROTOCOL.md specifies: the job keys
 *     are re-derived here from raw X25519 and BLAKE2b, and the test
 *     vector printed in the docs is reproduced.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "error.h"
#include "identity.h"
#include "seal.h"

#define NOW 1800000000
/* docs/PROTOCOL.md, "Sealed jobs": the test vector's sealed request (hex) */
#define SEAL_TEST_VECTOR_GCM "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf0000001a10b9665e9053a870e31eaf" \
	"7a2168efe5bd2a57758abe9f06a8cc8000001035a6960439e821de0571f27c6cc6c3fe"
#define SEAL_TEST_VECTOR_GCM2 "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf0000001a4d7f038a7448eb9e82dceb" \
	"d3cd07a6447120f39a46e67dea00c08000001074528405677555ffb15bdb0c3f5748ad"
#define SEAL_TEST_VECTOR_SEALED "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7934d16d207726a8226" \
	"38667e43f57ef94a55c300102d9e4b96eb5503534d91fd735beabdb993e4f5dfecae"

static void hex(char *out, const uint8_t *p, size_t n)
{
	sodium_bin2hex(out, n * 2 + 1, p, n);
}

/* ---- key statements -------------------------------------------------------------- */

static void test_statement(void **state)
{
	troop_identity node, other;
	seal_keypair kp;
	char stmt[SEAL_STMT_MAX], forged[SEAL_STMT_MAX];
	uint8_t pk[SEAL_PK_LEN];
	int64_t na = 0;

	(void)state;
	assert_int_equal(identity_generate(&node), 0);
	assert_int_equal(identity_generate(&other), 0);
	assert_int_equal(seal_keypair_generate(&kp, NOW, 86400), 0);
	assert_int_equal(seal_statement_make(stmt, sizeof(stmt), &node, &kp), 0);
	assert_true(strlen(stmt) < SEAL_STMT_MAX);

	assert_int_equal(seal_statement_verify(pk, &na, stmt, node.id, NOW + 10), 0);
	assert_memory_equal(pk, kp.pk, SEAL_PK_LEN);
	assert_int_equal(na, NOW + 86400);

	/* a coordinator that offers its own key for this node: signed by
	 * another key, so refused */
	assert_int_equal(seal_statement_make(forged, sizeof(forged), &other, &kp), 0);
	assert_int_equal(seal_statement_verify(pk, NULL, forged, node.id, NOW), TROOP_EAUTH);
	assert_non_null(strstr(troop_error_msg(), "substituted"));
	/* another node's genuine statement, presented for this node */
	assert_int_equal(seal_statement_verify(pk, NULL, forged, other.id, NOW), 0);
	assert_int_equal(seal_statement_verify(pk, NULL, stmt, other.id, NOW), TROOP_EAUTH);

	/* every single flipped character is refused */
	for (size_t i = 0; stmt[i]; i++) {
		char t[SEAL_STMT_MAX];
		memcpy(t, stmt, sizeof(t));
		t[i] = t[i] == 'A' ? 'B' : 'A';
		int rc = seal_statement_verify(pk, NULL, t, node.id, NOW);
		assert_true(rc == TROOP_EAUTH || rc == TROOP_EINVAL);
	}
	/* outside its validity, with 60 s of skew */
	assert_int_equal(seal_statement_verify(pk, NULL, stmt, node.id, NOW - 61), TROOP_EGONE);
	assert_int_equal(seal_statement_verify(pk, NULL, stmt, node.id, NOW - 60), 0);
	assert_int_equal(seal_statement_verify(pk, NULL, stmt, node.id, NOW + 86400 + 60), 0);
	assert_int_equal(seal_statement_verify(pk, NULL, stmt, node.id, NOW + 86400 + 61),
	    TROOP_EGONE);
	/* garbage */
	assert_int_equal(seal_statement_verify(pk, NULL, "", node.id, NOW), TROOP_EINVAL);
	assert_int_equal(seal_statement_verify(pk, NULL, NULL, node.id, NOW), TROOP_EINVAL);
	assert_int_equal(seal_statement_verify(pk, NULL, "not base64 !", node.id, NOW),
	    TROOP_EINVAL);
	assert_int_equal(seal_statement_verify(pk, NULL, stmt, "nonsense", NOW), TROOP_EINVAL);
	stmt[20] = '\0';
	assert_int_equal(seal_statement_verify(pk, NULL, stmt, node.id, NOW), TROOP_EINVAL);
}

/* ---- requests ---------------------------------------------------------------------- */

static void test_request(void **state)
{
	static const char body[] = "{\"model\":\"llama3:8b\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"a secret prompt\"}]}";
	seal_keypair kp;
	seal_job c, w, c2, w2;
	dynbuf sealed, plain;
	char header[256];
	uint8_t epk[SEAL_PK_LEN], key[SEAL_PK_LEN];

	(void)state;
	dynbuf_init(&sealed, 1 << 20);
	dynbuf_init(&plain, 1 << 20);
	assert_int_equal(seal_keypair_generate(&kp, NOW, 3600), 0);
	assert_int_equal(seal_client_begin(&c, kp.pk), 0);
	assert_int_equal(seal_header_format(header, sizeof(header), &c), 0);
	assert_int_equal(seal_header_parse(epk, key, NULL, header), 0);
	assert_memory_equal(key, kp.pk, SEAL_PK_LEN);
	assert_int_equal(seal_server_begin(&w, &kp, epk), 0);
	assert_memory_equal(w.req_key, c.req_key, SEAL_KEY_LEN);
	assert_memory_equal(w.resp_key, c.resp_key, SEAL_KEY_LEN);
	assert_memory_not_equal(c.req_key, c.resp_key, SEAL_KEY_LEN);

	assert_int_equal(seal_request_seal(&sealed, &c, "jti-1", "node-A", body, strlen(body)), 0);
	assert_int_equal(sealed.len, strlen(body) + SEAL_REQUEST_OVERHEAD);
	assert_null(memmem(sealed.buf, sealed.len, "secret", 6));
	assert_int_equal(seal_request_open(&plain, &w, "jti-1", "node-A", sealed.buf, sealed.len),
	    0);
	assert_int_equal(plain.len, strlen(body));
	assert_memory_equal(plain.buf, body, plain.len);

	/* replayed under another ticket, or sent to another node: refused */
	dynbuf_reset(&plain);
	assert_int_equal(seal_request_open(&plain, &w, "jti-2", "node-A", sealed.buf, sealed.len),
	    TROOP_EAUTH);
	assert_int_equal(seal_request_open(&plain, &w, "jti-1", "node-B", sealed.buf, sealed.len),
	    TROOP_EAUTH);
	assert_int_equal(plain.len, 0);
	/* another job's keys */
	assert_int_equal(seal_client_begin(&c2, kp.pk), 0);
	assert_int_equal(seal_server_begin(&w2, &kp, c2.epk), 0);
	assert_int_equal(seal_request_open(&plain, &w2, "jti-1", "node-A", sealed.buf, sealed.len),
	    TROOP_EAUTH);
	/* every flipped byte, and every truncation */
	for (size_t i = 0; i < sealed.len; i++) {
		sealed.buf[i] ^= 0x01;
		assert_int_equal(seal_request_open(&plain, &w, "jti-1", "node-A", sealed.buf,
		    sealed.len), TROOP_EAUTH);
		sealed.buf[i] ^= 0x01;
	}
	for (size_t n = 0; n < sealed.len; n++) {
		int rc = seal_request_open(&plain, &w, "jti-1", "node-A", sealed.buf, n);
		assert_true(rc == TROOP_EAUTH || rc == TROOP_EINVAL);
	}
	assert_int_equal(plain.len, 0);
	/* an empty body seals and opens */
	dynbuf_reset(&sealed);
	assert_int_equal(seal_request_seal(&sealed, &c, "j", "n", "", 0), 0);
	assert_int_equal(seal_request_open(&plain, &w, "j", "n", sealed.buf, sealed.len), 0);
	assert_int_equal(plain.len, 0);
	/* bad headers */
	assert_int_equal(seal_header_parse(epk, key, NULL, "v2; epk=x; key=y"), TROOP_EINVAL);
	assert_int_equal(seal_header_parse(epk, key, NULL, "v1; key=AAAA"), TROOP_EINVAL);
	assert_int_equal(seal_header_parse(epk, key, NULL, NULL), TROOP_EINVAL);
	dynbuf_free(&sealed);
	dynbuf_free(&plain);
}

/* ---- response streams ---------------------------------------------------------------- */

struct got {
	char buf[4096];
	size_t len;
	int chunks;
};

static int on_chunk(void *arg, const uint8_t *data, size_t len)
{
	struct got *g = arg;

	assert_true(g->len + len + 1 < sizeof(g->buf));
	memcpy(g->buf + g->len, data, len);
	g->len += len;
	g->buf[g->len++] = '|';
	g->chunks++;
	return 0;
}

static const char *const events[] = {
	"data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n",
	"data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\n\n",
	"data: [DONE]\n\n",
};
static const char want[] =
	"data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n|"
	"data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\n\n|"
	"data: [DONE]\n\n|";

/* A sealed stream of the three events, the last one final; frame offsets
 * into off[] (off[0] the first frame's start). */
static void make_stream(dynbuf *out, const seal_job *j, size_t off[4])
{
	seal_writer w;

	assert_int_equal(seal_writer_begin(&w, out, j), 0);
	for (int i = 0; i < 3; i++) {
		off[i] = out->len;
		assert_int_equal(seal_writer_push(&w, out, events[i], strlen(events[i]), i == 2), 0);
	}
	off[3] = out->len;
	assert_int_equal(seal_writer_push(&w, out, "x", 1, false), TROOP_EINVAL);
	seal_writer_free(&w);
}

static int read_all(const seal_job *j, const void *p, size_t n, size_t step, struct got *g)
{
	seal_reader r;
	int rc = 0;

	memset(g, 0, sizeof(*g));
	seal_reader_init(&r, j, on_chunk, g);
	for (size_t at = 0; at < n && rc == 0; at += step)
		rc = seal_reader_feed(&r, (const uint8_t *)p + at, n - at < step ? n - at : step);
	if (rc == 0)
		rc = seal_reader_finish(&r);
	seal_reader_free(&r);
	return rc;
}

/* As read_all, the plaintext opened into a sink (seal_reader_init_sink):
 * into g->buf without separators, g->chunks unused. */
static int read_sink(const seal_job *j, const void *p, size_t n, size_t step, struct got *g)
{
	seal_reader r;
	dynbuf sink;
	int rc = 0;

	memset(g, 0, sizeof(*g));
	dynbuf_init(&sink, sizeof(g->buf) - 1);
	seal_reader_init_sink(&r, j, &sink);
	for (size_t at = 0; at < n && rc == 0; at += step)
		rc = seal_reader_feed(&r, (const uint8_t *)p + at, n - at < step ? n - at : step);
	if (rc == 0)
		rc = seal_reader_finish(&r);
	seal_reader_free(&r);
	g->len = sink.len;
	if (sink.len)
		memcpy(g->buf, sink.buf, sink.len);
	dynbuf_free(&sink);
	return rc;
}

/* The sink gets the same plaintext as the callback, whole frames or in
 * pieces, and never a byte of a frame that does not open. */
static void check_sink(const seal_job *c, dynbuf *s)
{
	char all[1024] = "";
	struct got g;

	for (int i = 0; i < 3; i++)
		strcat(all, events[i]);
	size_t steps[4] = { 1, 7, 100, s->len };
	for (int k = 0; k < 4; k++) {
		assert_int_equal(read_sink(c, s->buf, s->len, steps[k], &g), 0);
		assert_int_equal(g.len, strlen(all));
		assert_memory_equal(g.buf, all, g.len);
	}
	for (size_t i = 0; i < s->len; i++) {
		s->buf[i] ^= 0x01;
		int rc = read_sink(c, s->buf, s->len, i % 2 ? s->len : 13, &g);
		assert_true(rc == TROOP_EAUTH || rc == TROOP_EINVAL || rc == TROOP_EUPSTREAM);
		assert_true(g.len < strlen(all));
		assert_memory_equal(g.buf, all, g.len);
		s->buf[i] ^= 0x01;
	}
}

/* One suite's stream: round trips and every kind of tampering. */
static void stream_suite(int suite)
{
	seal_keypair kp;
	seal_job c, w, other;
	dynbuf s, t;
	size_t off[4];
	struct got g;
	const size_t hl = suite != SEAL_REPLY_SS ? SEAL_GCM_SALT_LEN : SEAL_STREAM_HEADER_LEN;

	dynbuf_init(&s, 1 << 20);
	dynbuf_init(&t, 1 << 20);
	assert_int_equal(seal_keypair_generate(&kp, NOW, 3600), 0);
	assert_int_equal(seal_client_begin(&c, kp.pk), 0);
	assert_int_equal(c.reply, SEAL_REPLY_GCM2);   /* what a client offers */
	assert_int_equal(seal_server_begin(&w, &kp, c.epk), 0);
	c.reply = w.reply = (uint8_t)suite;
	strcpy(c.jti, "jti-1");
	strcpy(w.jti, "jti-1");
	make_stream(&s, &w, off);
	assert_int_equal(off[0], hl);
	assert_null(memmem(s.buf, s.len, "Hello", 5));

	/* whole, in 7-byte pieces, byte by byte: the same chunks */
	size_t steps[3] = { 1, 7, s.len };
	for (int k = 0; k < 3; k++) {
		assert_int_equal(read_all(&c, s.buf, s.len, steps[k], &g), 0);
		assert_int_equal(g.chunks, 3);
		assert_int_equal(g.len, strlen(want));
		assert_memory_equal(g.buf, want, g.len);
	}
	check_sink(&c, &s);
	/* cut short at every byte: an error at the end, and only whole
	 * authenticated chunks were passed on before it */
	for (size_t n = 0; n < s.len; n++) {
		int rc = read_all(&c, s.buf, n, n ? n : 1, &g);
		assert_int_equal(rc, TROOP_EUPSTREAM);
		assert_true(g.chunks <= 2);
	}
	/* a flipped byte anywhere */
	for (size_t i = 0; i < s.len; i++) {
		s.buf[i] ^= 0x20;
		int rc = read_all(&c, s.buf, s.len, s.len, &g);
		/* refused (a length flipped upwards reads as a cut stream), and
		 * what was passed on before is the genuine start */
		assert_true(rc == TROOP_EAUTH || rc == TROOP_EINVAL || rc == TROOP_EUPSTREAM);
		assert_true(g.len < strlen(want));
		assert_memory_equal(g.buf, want, g.len);
		s.buf[i] ^= 0x20;
	}
	/* the second frame dropped */
	dynbuf_reset(&t);
	dynbuf_add(&t, s.buf, off[1]);
	dynbuf_add(&t, s.buf + off[2], off[3] - off[2]);
	assert_int_equal(read_all(&c, t.buf, t.len, t.len, &g), TROOP_EAUTH);
	assert_int_equal(g.chunks, 1);
	/* frames two and three swapped */
	dynbuf_reset(&t);
	dynbuf_add(&t, s.buf, off[1]);
	dynbuf_add(&t, s.buf + off[2], off[3] - off[2]);
	dynbuf_add(&t, s.buf + off[1], off[2] - off[1]);
	assert_int_equal(read_all(&c, t.buf, t.len, t.len, &g), TROOP_EAUTH);
	/* bytes after the final frame */
	dynbuf_reset(&t);
	dynbuf_add(&t, s.buf, s.len);
	dynbuf_add(&t, s.buf + off[0], off[1] - off[0]);
	assert_int_equal(read_all(&c, t.buf, t.len, t.len, &g), TROOP_EINVAL);
	/* the final mark moved: taken off the last frame (a cut stream that
	 * looks whole), or put on an earlier one (a stream cut there) */
	if (suite != SEAL_REPLY_SS) {
		dynbuf_reset(&t);
		dynbuf_add(&t, s.buf, s.len);
		t.buf[off[2]] ^= 0x80;
		assert_int_equal(read_all(&c, t.buf, t.len, t.len, &g), TROOP_EAUTH);
		assert_int_equal(g.chunks, 2);
		dynbuf_reset(&t);
		dynbuf_add(&t, s.buf, off[2]);
		t.buf[off[1]] ^= 0x80;
		assert_int_equal(read_all(&c, t.buf, t.len, t.len, &g), TROOP_EAUTH);
		assert_int_equal(g.chunks, 1);
	}
	/* another suite's reader: nothing opens */
	for (int other_suite = SEAL_REPLY_SS; other_suite <= SEAL_REPLY_GCM2; other_suite++) {
		seal_job c3 = c;
		if (other_suite == suite)
			continue;
		c3.reply = (uint8_t)other_suite;
		int rc = read_all(&c3, s.buf, s.len, s.len, &g);
		assert_true(rc == TROOP_EAUTH || rc == TROOP_EINVAL || rc == TROOP_EUPSTREAM);
		assert_int_equal(g.chunks, 0);
	}
	/* the same job key, another ticket's reply (a client that keeps one
	 * key for several jobs): a256gcm2 opens only for its own ticket, the
	 * suites without the binding cannot tell */
	{
		seal_job c4 = c;
		strcpy(c4.jti, "jti-2");
		int rc = read_all(&c4, s.buf, s.len, s.len, &g);
		if (suite == SEAL_REPLY_GCM2) {
			assert_int_equal(rc, TROOP_EAUTH);
			assert_int_equal(g.chunks, 0);
		} else {
			assert_int_equal(rc, 0);
		}
	}
	/* a256gcm2 without a ticket id does not start */
	if (suite == SEAL_REPLY_GCM2) {
		seal_job w5 = w;
		seal_writer wr;
		w5.jti[0] = '\0';
		dynbuf_reset(&t);
		assert_int_equal(seal_writer_begin(&wr, &t, &w5), TROOP_EINVAL);
		assert_int_equal(t.len, 0);
	}
	/* another job's stream */
	{
		seal_job c2, w2;
		assert_int_equal(seal_client_begin(&c2, kp.pk), 0);
		assert_int_equal(seal_server_begin(&w2, &kp, c2.epk), 0);
		c2.reply = w2.reply = (uint8_t)suite;
		strcpy(c2.jti, "jti-1");
		strcpy(w2.jti, "jti-1");
		dynbuf_reset(&t);
		make_stream(&t, &w2, off);
		assert_int_equal(read_all(&c, t.buf, t.len, t.len, &g), TROOP_EAUTH);
		assert_int_equal(g.chunks, 0);
		assert_int_equal(read_all(&c2, t.buf, t.len, t.len, &g), 0);
	}
	/* a frame length over the limit is refused before anything is buffered */
	{
		static const uint8_t big[4] = { 0x7f, 0xff, 0xff, 0xff };
		seal_reader r;
		memcpy(&other, &c, sizeof(other));
		seal_reader_init(&r, &other, on_chunk, &g);
		dynbuf_reset(&t);
		dynbuf_add(&t, s.buf, hl);
		assert_int_equal(seal_reader_feed(&r, t.buf, t.len), 0);
		assert_int_equal(seal_reader_feed(&r, big, 4), TROOP_EINVAL);
		seal_reader_free(&r);
	}
	dynbuf_free(&s);
	dynbuf_free(&t);
}

static void test_stream(void **state)
{
	(void)state;
	stream_suite(SEAL_REPLY_SS);
	stream_suite(SEAL_REPLY_GCM);
	stream_suite(SEAL_REPLY_GCM2);
}

/* The suite seal_reply_take reads from Content-Type `ct`, -1 when it is
 * not a sealed reply (the job then keeps its own). */
static int reply_of(const char *ct)
{
	seal_job j;

	memset(&j, 0, sizeof(j));
	j.reply = 7;
	if (seal_reply_take(&j, ct) != 0) {
		assert_int_equal(j.reply, 7);
		return -1;
	}
	return j.reply;
}

/* The reply suite: offered in the request header, chosen in the reply's
 * Content-Type; the best one offered is taken; an old client's header (no
 * offer) gets secretstream. */
static void test_reply_negotiation(void **state)
{
	uint8_t epk[32], key[32];
	seal_keypair kp;
	seal_job c;
	char header[256];
	int reply = -1;

	(void)state;
	assert_int_equal(seal_keypair_generate(&kp, NOW, 3600), 0);
	assert_int_equal(seal_client_begin(&c, kp.pk), 0);
	assert_int_equal(seal_header_format(header, sizeof(header), &c), 0);
	assert_non_null(strstr(header, "; reply=a256gcm2,a256gcm"));
	assert_int_equal(seal_header_parse(epk, key, &reply, header), 0);
	assert_int_equal(reply, SEAL_REPLY_GCM2);
	/* the previous client's offer */
	c.reply = SEAL_REPLY_GCM;
	assert_int_equal(seal_header_format(header, sizeof(header), &c), 0);
	assert_non_null(strstr(header, "; reply=a256gcm"));
	assert_null(strstr(header, "a256gcm2"));
	assert_int_equal(seal_header_parse(epk, key, &reply, header), 0);
	assert_int_equal(reply, SEAL_REPLY_GCM);
	c.reply = SEAL_REPLY_SS;
	assert_int_equal(seal_header_format(header, sizeof(header), &c), 0);
	assert_null(strstr(header, "reply="));
	assert_int_equal(seal_header_parse(epk, key, &reply, header), 0);
	assert_int_equal(reply, SEAL_REPLY_SS);
	/* a list, and names that only look like it */
	snprintf(header + strlen(header), sizeof(header) - strlen(header),
	    "; reply=x25519-future,a256gcm");
	assert_int_equal(seal_header_parse(epk, key, &reply, header), 0);
	assert_int_equal(reply, SEAL_REPLY_GCM);
	*strstr(header, "; reply=") = '\0';
	strcat(header, "; reply=a256gcm,a256gcm2");   /* in any order */
	assert_int_equal(seal_header_parse(epk, key, &reply, header), 0);
	assert_int_equal(reply, SEAL_REPLY_GCM2);
	*strstr(header, "; reply=") = '\0';
	strcat(header, "; reply=a256gcmx,a256gcm22; noreply=a256gcm");
	assert_int_equal(seal_header_parse(epk, key, &reply, header), 0);
	assert_int_equal(reply, SEAL_REPLY_SS);

	assert_int_equal(reply_of(SEAL_CONTENT_TYPE), SEAL_REPLY_SS);
	assert_int_equal(reply_of(SEAL_CONTENT_TYPE_GCM), SEAL_REPLY_GCM);
	assert_int_equal(reply_of(SEAL_CONTENT_TYPE_GCM2), SEAL_REPLY_GCM2);
	assert_int_equal(reply_of("Application/X-Troop-Sealed;reply=a256gcm"),
	    SEAL_REPLY_GCM);
	assert_int_equal(reply_of("application/x-troop-sealedness"), -1);
	assert_int_equal(reply_of("application/json"), -1);
	assert_int_equal(reply_of(NULL), -1);
	/* and what a worker answers with names the suite it uses */
	c.reply = SEAL_REPLY_GCM;
	assert_int_equal(reply_of(seal_reply_content_type(&c)), SEAL_REPLY_GCM);
	c.reply = SEAL_REPLY_GCM2;
	assert_int_equal(reply_of(seal_reply_content_type(&c)), SEAL_REPLY_GCM2);
	c.reply = SEAL_REPLY_SS;
	assert_string_equal(seal_reply_content_type(&c), SEAL_CONTENT_TYPE);
}

/* The jobs of the test vectors: the worker's sealing key from seed 00 01
 * .. 1f, the client's ephemeral key from seed 80 81 .. 9f (the seeds go
 * to wseed and eseed). */
static void vector_jobs(seal_keypair *kp, seal_job *c, seal_job *w, uint8_t wseed[32],
    uint8_t eseed[32])
{
	for (int i = 0; i < 32; i++) {
		wseed[i] = (uint8_t)i;
		eseed[i] = (uint8_t)(0x80 + i);
	}
	crypto_kx_seed_keypair(kp->pk, kp->sk, wseed);
	kp->not_before = NOW;
	kp->not_after = NOW + 3600;
	assert_int_equal(seal_client_begin_seed(c, kp->pk, eseed), 0);
	assert_int_equal(seal_server_begin(w, kp, c->epk), 0);
}

/* ---- the construction, against raw primitives, and the test vector ------------------ */

static void test_construction_and_vector(void **state)
{
	uint8_t wseed[32], eseed[32], nonce[24], q[32], h[64], esk[32];
	seal_keypair kp;
	seal_job c, w;
	dynbuf sealed, plain;
	char got[2 * 256 + 1];
	static const char body[] = "{\"model\":\"m\",\"prompt\":\"hi\"}";
	crypto_generichash_state gh;

	(void)state;
	for (int i = 0; i < 24; i++)
		nonce[i] = (uint8_t)(0xa0 + i);
	vector_jobs(&kp, &c, &w, wseed, eseed);

	/* crypto_kx, by hand: BLAKE2b-512(X25519(esk, seal_pk) || epk ||
	 * seal_pk); the first half is the response key (client rx), the second
	 * the request key (client tx) */
	{
		uint8_t epk2[32];
		crypto_kx_seed_keypair(epk2, esk, eseed);
		assert_memory_equal(epk2, c.epk, 32);
	}
	assert_int_equal(crypto_scalarmult(q, esk, kp.pk), 0);
	crypto_generichash_init(&gh, NULL, 0, sizeof(h));
	crypto_generichash_update(&gh, q, sizeof(q));
	crypto_generichash_update(&gh, c.epk, 32);
	crypto_generichash_update(&gh, kp.pk, 32);
	crypto_generichash_final(&gh, h, sizeof(h));
	assert_memory_equal(c.resp_key, h, 32);
	assert_memory_equal(c.req_key, h + 32, 32);

	/* the request: nonce || XChaCha20-Poly1305(body, ad = "troop-seal-v1"
	 * NUL jti NUL node_id) */
	dynbuf_init(&sealed, 4096);
	dynbuf_init(&plain, 4096);
	assert_int_equal(seal_request_seal_nonce(&sealed, &c, "jti-1", "node-A", body,
	    strlen(body), nonce), 0);
	{
		static const char ad[] = "troop-seal-v1\0jti-1\0node-A";
		uint8_t ct[256];
		unsigned long long clen = 0;
		crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, (const uint8_t *)body,
		    strlen(body), (const uint8_t *)ad, sizeof(ad) - 1, NULL, nonce, h + 32);
		assert_int_equal(sealed.len, 24 + clen);
		assert_memory_equal(sealed.buf, nonce, 24);
		assert_memory_equal(sealed.buf + 24, ct, clen);
	}
	/* the vector in docs/PROTOCOL.md */
	hex(got, (const uint8_t *)sealed.buf, sealed.len);
	printf("vector: epk=");
	for (int i = 0; i < 32; i++)
		printf("%02x", c.epk[i]);
	printf("\nvector: sealed=%s\n", got);
	assert_string_equal(got, SEAL_TEST_VECTOR_SEALED);
	assert_int_equal(seal_request_open(&plain, &w, "jti-1", "node-A", sealed.buf, sealed.len),
	    0);
	assert_memory_equal(plain.buf, body, strlen(body));
	dynbuf_free(&sealed);
	dynbuf_free(&plain);
}

/* An a256gcm or a256gcm2 reply stream against an independent AES-256-GCM
 * (libsodium's, where the processor has AES-NI) and the vector in
 * docs/PROTOCOL.md: the response key of the request vector above, salt
 * c0 c1 .. cf, jti "jti-1" (a256gcm2), a frame "data: hi\n\n" and the
 * final empty frame. */
static void gcm_vector(int suite, const char *want_stream)
{
	uint8_t wseed[32], eseed[32], salt[SEAL_GCM_SALT_LEN], k[32];
	uint8_t msg[64];
	static const char ev[] = "data: hi\n\n";
	seal_keypair kp;
	seal_job c, w;
	seal_writer wr;
	dynbuf s;
	char got[512];
	struct got g;

	for (int i = 0; i < SEAL_GCM_SALT_LEN; i++)
		salt[i] = (uint8_t)(0xc0 + i);
	vector_jobs(&kp, &c, &w, wseed, eseed);
	w.reply = (uint8_t)suite;
	strcpy(w.jti, "jti-1");
	dynbuf_init(&s, 4096);
	assert_int_equal(seal_writer_begin_salt(&wr, &s, &w, salt), 0);
	assert_int_equal(seal_writer_push(&wr, &s, ev, strlen(ev), false), 0);
	assert_int_equal(seal_writer_push(&wr, &s, NULL, 0, true), 0);
	seal_writer_free(&wr);
	/* salt(16) | 00 00 00 1a | 10 + 16 | 80 00 00 10 | 16 */
	assert_int_equal(s.len, 16 + 4 + 10 + 16 + 4 + 16);
	assert_memory_equal(s.buf, salt, 16);

	/* by hand: K = BLAKE2b-256(key = response key, context || salt), and
	 * || jti for a256gcm2 */
	memcpy(msg, suite == SEAL_REPLY_GCM2 ? "troop-seal-a256gcm-v2" : "troop-seal-a256gcm-v1",
	    21);
	memcpy(msg + 21, salt, 16);
	memcpy(msg + 37, "jti-1", 5);
	crypto_generichash(k, 32, msg, suite == SEAL_REPLY_GCM2 ? 21 + 16 + 5 : 21 + 16,
	    c.resp_key, 32);
	hex(got, k, 32);
	printf("vector: suite %d stream key=%s\n", suite, got);
	if (crypto_aead_aes256gcm_is_available()) {
		uint8_t ct[64], n0[12] = { 0 }, n1[12] = { 0 };
		static const uint8_t l0[4] = { 0, 0, 0, 10 + 16 }, l1[4] = { 0x80, 0, 0, 16 };
		unsigned long long cl = 0;
		n1[11] = 1;
		crypto_aead_aes256gcm_encrypt(ct, &cl, (const uint8_t *)ev, 10, l0, 4, NULL, n0, k);
		assert_memory_equal(s.buf + 16, l0, 4);
		assert_memory_equal(s.buf + 20, ct, cl);
		crypto_aead_aes256gcm_encrypt(ct, &cl, NULL, 0, l1, 4, NULL, n1, k);
		assert_memory_equal(s.buf + 20 + 26, l1, 4);
		assert_memory_equal(s.buf + 20 + 26 + 4, ct, cl);
	} else {
		print_message("no AES-NI here: the vector alone checks the construction\n");
	}
	hex(got, (const uint8_t *)s.buf, s.len);
	printf("vector: suite %d stream=%s\n", suite, got);
	assert_string_equal(got, want_stream);
	c.reply = (uint8_t)suite;
	strcpy(c.jti, "jti-1");
	assert_int_equal(read_all(&c, s.buf, s.len, 3, &g), 0);
	assert_int_equal(g.chunks, 1);
	dynbuf_free(&s);
}

static void test_gcm_vector(void **state)
{
	(void)state;
	gcm_vector(SEAL_REPLY_GCM, SEAL_TEST_VECTOR_GCM);
	gcm_vector(SEAL_REPLY_GCM2, SEAL_TEST_VECTOR_GCM2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_statement),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_reply_negotiation),
		cmocka_unit_test(test_gcm_vector),
		cmocka_unit_test(test_construction_and_vector),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
