/*
 * test_ticket.c - EdDSA tickets (DESIGN.md section 5): the round trip and
 * the classic JWT attacks, each crafted by hand: alg none, HS256 keyed
 * with the public key, unknown kid, re-encoded payloads, flipped
 * signature bits, every truncation, extra segments and padding, plus the
 * time and audience rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "error.h"
#include "identity.h"
#include "ticket.h"

#define NOW ((int64_t)1764000000)

static troop_identity coord, other, user, node;
static ticket_key keys[2];  /* [0] another coordinator's key, [1] ours */

static void fill_claims(ticket_claims *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->iss, sizeof(c->iss), "coord-eu-1");
	memcpy(c->sub, user.id, sizeof(c->sub));
	memcpy(c->target_node, node.id, sizeof(c->target_node));
	snprintf(c->model, sizeof(c->model), "llama3:8b");
	ticket_new_jti(c->jti);
	c->iat = NOW;
	c->exp = NOW + 300;
	c->max_seconds = 120;
}

static char *sign_default(void)
{
	ticket_claims c;
	char *tok = NULL;

	fill_claims(&c);
	assert_int_equal(ticket_sign(&tok, &c, &coord), 0);
	assert_non_null(tok);
	return tok;
}

static int verify_at(const char *tok, int64_t now)
{
	ticket_claims out;

	troop_error_clear();
	return ticket_verify(&out, tok, keys, 2, now);
}

static void expect_ticket(int rc, const char *needle)
{
	assert_int_equal(rc, TROOP_ETICKET);
	if (needle && !strstr(troop_error_msg(), needle))
		fail_msg("message '%s' does not mention '%s'", troop_error_msg(), needle);
}

/* base64url(json) into out */
static void b64u(char *out, size_t len, const void *data, size_t n)
{
	assert_true(b64url_encode(out, len, data, n) > 0 || n == 0);
}

/* A token from raw header and claims text, signed (Ed25519) by `key`. */
static char *craft(const char *header, const char *claims, const troop_identity *key)
{
	char *tok = malloc(8192);
	char seg[4096];
	unsigned char sig[64];

	assert_non_null(tok);
	b64u(tok, 8192, header, strlen(header));
	strcat(tok, ".");
	b64u(seg, sizeof(seg), claims, strlen(claims));
	strcat(tok, seg);
	crypto_sign_detached(sig, NULL, (const unsigned char *)tok, strlen(tok), key->sk);
	strcat(tok, ".");
	b64u(seg, sizeof(seg), sig, sizeof(sig));
	strcat(tok, seg);
	return tok;
}

static void claims_json(char *out, size_t len, const char *aud, int64_t iat, int64_t exp)
{
	assert_true(snprintf(out, len, "{\"iss\":\"coord-eu-1\",\"sub\":\"%s\",\"aud\":\"%s\","
	    "\"target_node\":\"%s\",\"model\":\"llama3:8b\",\"jti\":\"AAAAAAAAAAAAAAAAAAAAAA\","
	    "\"iat\":%lld,\"exp\":%lld,\"max_seconds\":120}", user.id, aud, node.id,
	    (long long)iat, (long long)exp) < (int)len);
}

static void header_json(char *out, size_t len, const char *alg)
{
	assert_true(snprintf(out, len, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg,
	    keys[1].kid) < (int)len);
}

/* ---- round trip ------------------------------------------------------------ */

static void test_kid_and_jti(void **state)
{
	unsigned char h[32];
	char want[17], a[32], b[32];

	(void)state;
	crypto_hash_sha256(h, coord.pk, 32);
	b64url_encode(want, sizeof(want), h, 12);
	assert_string_equal(keys[1].kid, want);
	assert_int_equal(strlen(keys[1].kid), TICKET_KID_LEN);
	assert_string_not_equal(keys[0].kid, keys[1].kid);
	ticket_new_jti(a);
	ticket_new_jti(b);
	assert_int_equal(strlen(a), 22);
	assert_string_not_equal(a, b);
}

static void test_round_trip(void **state)
{
	ticket_claims in, out;
	char *tok, *dot;
	char hdr[200], want[200];
	size_t n;

	(void)state;
	fill_claims(&in);
	assert_int_equal(ticket_sign(&tok, &in, &coord), 0);
	assert_int_equal(ticket_verify(&out, tok, keys, 2, NOW), 0);
	assert_string_equal(out.iss, in.iss);
	assert_string_equal(out.sub, user.id);
	assert_string_equal(out.aud, TICKET_AUD);
	assert_string_equal(out.target_node, node.id);
	assert_string_equal(out.model, in.model);
	assert_string_equal(out.jti, in.jti);
	assert_int_equal(out.iat, in.iat);
	assert_int_equal(out.exp, in.exp);
	assert_int_equal(out.max_seconds, in.max_seconds);

	/* the header is exactly the one DESIGN.md prescribes */
	dot = strchr(tok, '.');
	assert_non_null(dot);
	assert_int_equal(b64url_decode(hdr, sizeof(hdr) - 1, &n, tok, (size_t)(dot - tok)), 0);
	hdr[n] = '\0';
	snprintf(want, sizeof(want), "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
	    keys[1].kid);
	assert_string_equal(hdr, want);
	/* and the signature is Ed25519 over the first two segments */
	{
		char *dot2 = strchr(dot + 1, '.');
		unsigned char sig[64];
		assert_non_null(dot2);
		assert_int_equal(b64url_decode(sig, sizeof(sig), &n, dot2 + 1, strlen(dot2 + 1)), 0);
		assert_int_equal(crypto_sign_verify_detached(sig, (unsigned char *)tok,
		    (size_t)(dot2 - tok), coord.pk), 0);
	}
	free(tok);
}

static void test_round_trip_escaped_strings(void **state)
{
	ticket_claims in, out;
	char *tok;

	(void)state;
	fill_claims(&in);
	snprintf(in.model, sizeof(in.model), "we\"ird\\mo\tdel/\x01 caf\xc3\xa9 \xf0\x9f\x90\x92");
	snprintf(in.iss, sizeof(in.iss), "https://coord.example/\"x\"");
	assert_int_equal(ticket_sign(&tok, &in, &coord), 0);
	assert_int_equal(ticket_verify(&out, tok, keys, 2, NOW), 0);
	assert_string_equal(out.model, in.model);
	assert_string_equal(out.iss, in.iss);
	free(tok);

	/* a model name that is not UTF-8 cannot make a ticket */
	snprintf(in.model, sizeof(in.model), "bad\xff");
	assert_int_equal(ticket_sign(&tok, &in, &coord), TROOP_EINVAL);
	assert_null(tok);
	snprintf(in.model, sizeof(in.model), "overlong\xc0\xaf");
	assert_int_equal(ticket_sign(&tok, &in, &coord), TROOP_EINVAL);
	snprintf(in.model, sizeof(in.model), "surrogate\xed\xa0\x80");
	assert_int_equal(ticket_sign(&tok, &in, &coord), TROOP_EINVAL);
}

static void test_longest_claims_fit(void **state)
{
	ticket_claims in, out;
	char *tok;

	(void)state;
	fill_claims(&in);
	memset(in.model, 'm', sizeof(in.model) - 1);
	memset(in.iss, 'i', sizeof(in.iss) - 1);
	assert_int_equal(ticket_sign(&tok, &in, &coord), 0);
	assert_true(strlen(tok) <= TICKET_MAX_LEN);
	assert_int_equal(ticket_verify(&out, tok, keys, 2, NOW), 0);
	assert_string_equal(out.model, in.model);
	free(tok);
	/* a claim that is not NUL-terminated within its field is refused */
	in.model[sizeof(in.model) - 1] = 'm';
	assert_int_equal(ticket_sign(&tok, &in, &coord), TROOP_EINVAL);
}

/* ---- alg confusion ------------------------------------------------------------ */

static void test_rejects_alg_none(void **state)
{
	char hdr[64], pay[1024], seg[2048], tok[4096];
	char *real = sign_default();
	const char *sig = strrchr(real, '.') + 1;

	(void)state;
	claims_json(pay, sizeof(pay), TICKET_AUD, NOW, NOW + 300);
	b64u(seg, sizeof(seg), pay, strlen(pay));
	/* {"alg":"none"} with an empty signature, as RFC 7519 unsecured JWTs */
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"none\",\"typ\":\"JWT\"}");
	b64u(tok, sizeof(tok), hdr, strlen(hdr));
	strcat(tok, ".");
	strcat(tok, seg);
	strcat(tok, ".");
	expect_ticket(verify_at(tok, NOW), "alg");
	/* and with a real signature from another token */
	strcat(tok, sig);
	expect_ticket(verify_at(tok, NOW), "alg");
	/* with our kid, in other spellings */
	static const char *const algs[] = { "none", "None", "NONE", "EdDSA ", " EdDSA",
		"eddsa", "EDDSA", "Ed25519", "ES256", "EdDSA\\u0000" };
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		char h[200];
		char *t;
		header_json(h, sizeof(h), algs[i]);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), NULL);
		free(t);
	}
	/* alg missing or not a string */
	{
		char *t;
		char h[200];
		snprintf(h, sizeof(h), "{\"typ\":\"JWT\",\"kid\":\"%s\"}", keys[1].kid);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), "alg");
		free(t);
		snprintf(h, sizeof(h), "{\"alg\":[\"EdDSA\"],\"kid\":\"%s\"}", keys[1].kid);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), "alg");
		free(t);
		/* duplicate alg: a parser that takes the last one would see EdDSA */
		snprintf(h, sizeof(h), "{\"alg\":\"none\",\"alg\":\"EdDSA\",\"kid\":\"%s\"}",
		    keys[1].kid);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), NULL);
		free(t);
		/* crit and other unknown header members */
		snprintf(h, sizeof(h), "{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"crit\":[\"x\"]}",
		    keys[1].kid);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), "header");
		free(t);
		/* the control: the same construction with the right header works */
		header_json(h, sizeof(h), "EdDSA");
		t = craft(h, pay, &coord);
		assert_int_equal(verify_at(t, NOW), 0);
		free(t);
	}
	free(real);
}

static void test_rejects_hs256_with_public_key(void **state)
{
	char hdr[200], pay[1024], tok[4096], seg[2048];
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;

	(void)state;
	header_json(hdr, sizeof(hdr), "HS256");
	claims_json(pay, sizeof(pay), TICKET_AUD, NOW, NOW + 300);
	b64u(tok, sizeof(tok), hdr, strlen(hdr));
	strcat(tok, ".");
	b64u(seg, sizeof(seg), pay, strlen(pay));
	strcat(tok, seg);
	/* HMAC-SHA256 keyed with the coordinator's 32-byte public key */
	crypto_auth_hmacsha256_init(&st, coord.pk, sizeof(coord.pk));
	crypto_auth_hmacsha256_update(&st, (unsigned char *)tok, strlen(tok));
	crypto_auth_hmacsha256_final(&st, mac);
	strcat(tok, ".");
	b64u(seg, sizeof(seg), mac, sizeof(mac));
	strcat(tok, seg);
	expect_ticket(verify_at(tok, NOW), "alg");
}

/* ---- keys ------------------------------------------------------------------------ */

static void test_unknown_kid(void **state)
{
	ticket_claims c, out;
	troop_identity stranger;
	char *tok;
	char kid[TICKET_KID_LEN + 1];

	(void)state;
	assert_int_equal(identity_generate(&stranger), 0);
	fill_claims(&c);
	assert_int_equal(ticket_sign(&tok, &c, &stranger), 0);
	troop_error_clear();
	assert_int_equal(ticket_verify(&out, tok, keys, 2, NOW), TROOP_ENOKEY);
	ticket_kid(kid, stranger.pk);
	assert_non_null(strstr(troop_error_msg(), kid));
	assert_int_equal(ticket_verify(&out, tok, NULL, 0, NOW), TROOP_ENOKEY);
	free(tok);

	/* our kid on a token signed by another known key: bad signature */
	{
		char h[200], pay[1024];
		char *t;
		header_json(h, sizeof(h), "EdDSA");
		claims_json(pay, sizeof(pay), TICKET_AUD, NOW, NOW + 300);
		t = craft(h, pay, &other);
		expect_ticket(verify_at(t, NOW), "signature");
		free(t);
	}
	/* the other known key verifies its own tokens */
	assert_int_equal(ticket_sign(&tok, &c, &other), 0);
	assert_int_equal(verify_at(tok, NOW), 0);
	free(tok);
	identity_wipe(&stranger);
}

/* ---- tampering --------------------------------------------------------------------- */

static void test_rejects_changed_payload(void **state)
{
	char *tok = sign_default();
	char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	char claims[2048], seg[4096], forged[8192];
	size_t n;
	json_t *j;
	char *text;

	(void)state;
	assert_int_equal(b64url_decode(claims, sizeof(claims) - 1, &n, d1 + 1,
	    (size_t)(d2 - d1 - 1)), 0);
	claims[n] = '\0';
	j = json_loads(claims, 0, NULL);
	assert_non_null(j);
	json_object_set_new(j, "max_seconds", json_integer(100000));
	text = json_dumps(j, JSON_COMPACT);
	b64u(seg, sizeof(seg), text, strlen(text));
	snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, seg, d2);
	expect_ticket(verify_at(forged, NOW), "signature");
	free(text);

	/* the same claims re-serialised (different whitespace) also fail: the
	 * signature is over the bytes as received */
	json_object_set_new(j, "max_seconds", json_integer(120));
	text = json_dumps(j, JSON_INDENT(1));
	b64u(seg, sizeof(seg), text, strlen(text));
	snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, seg, d2);
	expect_ticket(verify_at(forged, NOW), "signature");
	free(text);
	json_decref(j);

	/* swapping in another ticket's payload */
	{
		char *t2 = sign_default();
		char *e1 = strchr(t2, '.'), *e2 = strrchr(t2, '.');
		snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(d1 - tok), tok,
		    (int)(e2 - e1), e1, d2);
		assert_string_not_equal(forged, tok);
		expect_ticket(verify_at(forged, NOW), "signature");
		free(t2);
	}
	assert_int_equal(verify_at(tok, NOW), 0);
	free(tok);
}

static void test_rejects_changed_signature(void **state)
{
	char *tok = sign_default();
	char *sigtxt = strrchr(tok, '.') + 1;
	unsigned char sig[64];
	char copy[4096];
	size_t n;

	(void)state;
	assert_int_equal(b64url_decode(sig, sizeof(sig), &n, sigtxt, strlen(sigtxt)), 0);
	/* every single-bit flip of the signature */
	for (int bit = 0; bit < 512; bit++) {
		unsigned char s2[64];
		memcpy(s2, sig, 64);
		s2[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		snprintf(copy, sizeof(copy), "%.*s", (int)(sigtxt - tok), tok);
		b64u(copy + strlen(copy), sizeof(copy) - strlen(copy), s2, 64);
		assert_int_not_equal(verify_at(copy, NOW), 0);
	}
	/* and a changed character of the text */
	snprintf(copy, sizeof(copy), "%s", tok);
	copy[strlen(copy) - 5] = copy[strlen(copy) - 5] == 'A' ? 'B' : 'A';
	expect_ticket(verify_at(copy, NOW), NULL);
	free(tok);
}

static void test_rejects_every_truncation(void **state)
{
	char *tok = sign_default();
	size_t len = strlen(tok);
	char *copy = malloc(len + 1);

	(void)state;
	assert_non_null(copy);
	for (size_t i = 0; i < len; i++) {
		memcpy(copy, tok, i);
		copy[i] = '\0';
		if (verify_at(copy, NOW) == 0)
			fail_msg("prefix of length %zu of %zu verified", i, len);
	}
	/* dropping the first characters fails too */
	for (size_t i = 1; i < len; i += 7)
		assert_int_not_equal(verify_at(tok + i, NOW), 0);
	free(copy);
	free(tok);
}

static void test_rejects_segments_and_padding(void **state)
{
	char *tok = sign_default();
	char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	char t[8192];

	(void)state;
	assert_int_equal(verify_at(tok, NOW), 0);
	snprintf(t, sizeof(t), "%s.", tok);
	expect_ticket(verify_at(t, NOW), "segments");
	snprintf(t, sizeof(t), "%s.AAAA", tok);
	expect_ticket(verify_at(t, NOW), "segments");
	snprintf(t, sizeof(t), "%.*s%s", (int)(d2 - tok), tok, "");  /* two segments */
	expect_ticket(verify_at(t, NOW), "segments");
	snprintf(t, sizeof(t), "%s", "..");
	expect_ticket(verify_at(t, NOW), NULL);
	expect_ticket(verify_at("", NOW), "missing");
	expect_ticket(verify_at(NULL, NOW), "missing");

	/* padding on each segment */
	snprintf(t, sizeof(t), "%.*s=%s", (int)(d1 - tok), tok, d1);
	expect_ticket(verify_at(t, NOW), "base64url");
	snprintf(t, sizeof(t), "%.*s==%s", (int)(d2 - tok), tok, d2);
	expect_ticket(verify_at(t, NOW), NULL);
	snprintf(t, sizeof(t), "%s=", tok);
	expect_ticket(verify_at(t, NOW), "signature");
	snprintf(t, sizeof(t), "%s==", tok);
	expect_ticket(verify_at(t, NOW), NULL);
	/* standard base64 characters, whitespace */
	snprintf(t, sizeof(t), "%s", tok);
	t[3] = '+';
	expect_ticket(verify_at(t, NOW), NULL);
	snprintf(t, sizeof(t), " %s", tok);
	expect_ticket(verify_at(t, NOW), NULL);
	snprintf(t, sizeof(t), "%s\n", tok);
	expect_ticket(verify_at(t, NOW), NULL);
	free(tok);
}

static void test_rejects_too_long(void **state)
{
	char *t = malloc(TICKET_MAX_LEN + 2);

	(void)state;
	assert_non_null(t);
	memset(t, 'A', TICKET_MAX_LEN + 1);
	t[10] = '.';
	t[20] = '.';
	t[TICKET_MAX_LEN + 1] = '\0';
	expect_ticket(verify_at(t, NOW), "longer than");
	free(t);
}

/* ---- claims ------------------------------------------------------------------------ */

static void test_time_rules(void **state)
{
	char *tok = sign_default();  /* iat NOW, exp NOW + 300 */

	(void)state;
	/* valid iff iat <= now + skew and now < exp + skew */
	assert_int_equal(verify_at(tok, NOW), 0);
	assert_int_equal(verify_at(tok, NOW + 300 + TICKET_SKEW - 1), 0);
	expect_ticket(verify_at(tok, NOW + 300 + TICKET_SKEW), "expired");
	expect_ticket(verify_at(tok, NOW + 100000), "expired");
	assert_int_equal(verify_at(tok, NOW - TICKET_SKEW), 0);
	expect_ticket(verify_at(tok, NOW - TICKET_SKEW - 1), "not valid yet");
	free(tok);

	/* an expired ticket, and one issued in the future, both properly signed */
	{
		char h[200], pay[1024];
		char *t;
		header_json(h, sizeof(h), "EdDSA");
		claims_json(pay, sizeof(pay), TICKET_AUD, NOW - 400, NOW - 100);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), "expired");
		free(t);
		claims_json(pay, sizeof(pay), TICKET_AUD, NOW + 120, NOW + 420);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), "not valid yet");
		free(t);
		claims_json(pay, sizeof(pay), TICKET_AUD, NOW, NOW);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), "exp");
		free(t);
		/* extreme values are refused, and overflow nothing on the way */
		claims_json(pay, sizeof(pay), TICKET_AUD, INT64_MIN, INT64_MAX);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), "out of range");
		free(t);
	}
}

/* Issue 16 item 11: every time claim is bounded, so that the worker's
 * exp + skew (its replay cache horizon) cannot overflow. */
static void test_time_claims_bounded(void **state)
{
	static const struct { int64_t iat, exp; const char *why; } cases[] = {
		{ NOW, INT64_MAX, "out of range" },
		{ NOW, INT64_MAX - TICKET_SKEW + 1, "out of range" },
		{ NOW, ((int64_t)1 << 62), "out of range" },
		{ -1, NOW + 300, "out of range" },
		{ INT64_MIN, NOW, "out of range" },
		{ NOW - 100, NOW + TICKET_TTL_MAX, "lifetime" },
		{ NOW, NOW + TICKET_TTL_MAX + 1, "lifetime" },
		{ 0, NOW + 300, "lifetime" },
	};
	char h[200], pay[1024];
	ticket_claims c;
	char *t;

	(void)state;
	header_json(h, sizeof(h), "EdDSA");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		claims_json(pay, sizeof(pay), TICKET_AUD, cases[i].iat, cases[i].exp);
		t = craft(h, pay, &coord);
		expect_ticket(verify_at(t, NOW), cases[i].why);
		free(t);
	}
	/* the longest lifetime itself is fine */
	claims_json(pay, sizeof(pay), TICKET_AUD, NOW, NOW + TICKET_TTL_MAX);
	t = craft(h, pay, &coord);
	assert_int_equal(verify_at(t, NOW), 0);
	free(t);
	/* max_seconds is bounded too */
	fill_claims(&c);
	c.max_seconds = TICKET_MAX_SECONDS + 1;
	assert_int_equal(ticket_sign(&t, &c, &coord), 0);
	expect_ticket(verify_at(t, NOW), "max_seconds");
	free(t);
	c.max_seconds = TICKET_MAX_SECONDS;
	assert_int_equal(ticket_sign(&t, &c, &coord), 0);
	assert_int_equal(verify_at(t, NOW), 0);
	free(t);
}

static void test_rejects_wrong_aud(void **state)
{
	ticket_claims c;
	char *tok;
	char h[200], pay[1024];

	(void)state;
	fill_claims(&c);
	snprintf(c.aud, sizeof(c.aud), "troop-client");
	assert_int_equal(ticket_sign(&tok, &c, &coord), 0);
	expect_ticket(verify_at(tok, NOW), "aud");
	free(tok);
	header_json(h, sizeof(h), "EdDSA");
	claims_json(pay, sizeof(pay), "troop-worker ", NOW, NOW + 300);
	tok = craft(h, pay, &coord);
	expect_ticket(verify_at(tok, NOW), "aud");
	free(tok);
}

/* Copy `tmpl` into out with @SUB, @NODE and @SHORT replaced by the user's
 * id, the node's id and a 40-char prefix of the user's id. */
static void expand(char *out, size_t len, const char *tmpl)
{
	size_t o = 0;

	while (*tmpl && o + 64 < len) {
		if (strncmp(tmpl, "@SUB", 4) == 0) {
			o += (size_t)snprintf(out + o, len - o, "%s", user.id);
			tmpl += 4;
		} else if (strncmp(tmpl, "@NODE", 5) == 0) {
			o += (size_t)snprintf(out + o, len - o, "%s", node.id);
			tmpl += 5;
		} else if (strncmp(tmpl, "@SHORT", 6) == 0) {
			o += (size_t)snprintf(out + o, len - o, "%.40s", user.id);
			tmpl += 6;
		} else {
			out[o++] = *tmpl++;
		}
	}
	assert_int_equal(*tmpl, '\0');
	out[o] = '\0';
}

static void test_rejects_bad_claims(void **state)
{
	static const char *const cases[] = {
		/* not an object, and duplicates */
		"[1,2,3]",
		"{\"iss\":\"a\",\"iss\":\"b\"}",
		/* wrong types */
		"{\"iss\":\"c\",\"sub\":\"@SUB\",\"aud\":\"troop-worker\",\"target_node\":\"@NODE\","
		"\"model\":\"m\",\"jti\":\"j\",\"iat\":\"1764000000\",\"exp\":1764000300,"
		"\"max_seconds\":120}",
		"{\"iss\":\"c\",\"sub\":\"@SUB\",\"aud\":\"troop-worker\",\"target_node\":\"@NODE\","
		"\"model\":\"m\",\"jti\":\"j\",\"iat\":1764000000,\"exp\":1764000300.5,"
		"\"max_seconds\":120}",
		"{\"iss\":\"c\",\"sub\":\"@SUB\",\"aud\":\"troop-worker\",\"target_node\":\"@NODE\","
		"\"model\":7,\"jti\":\"j\",\"iat\":1764000000,\"exp\":1764000300,"
		"\"max_seconds\":120}",
		/* missing jti */
		"{\"iss\":\"c\",\"sub\":\"@SUB\",\"aud\":\"troop-worker\",\"target_node\":\"@NODE\","
		"\"model\":\"m\",\"iat\":1764000000,\"exp\":1764000300,\"max_seconds\":120}",
		/* sub not an account id */
		"{\"iss\":\"c\",\"sub\":\"@SHORT\",\"aud\":\"troop-worker\",\"target_node\":\"@NODE\","
		"\"model\":\"m\",\"jti\":\"j\",\"iat\":1764000000,\"exp\":1764000300,"
		"\"max_seconds\":120}",
		/* max_seconds not positive */
		"{\"iss\":\"c\",\"sub\":\"@SUB\",\"aud\":\"troop-worker\",\"target_node\":\"@NODE\","
		"\"model\":\"m\",\"jti\":\"j\",\"iat\":1764000000,\"exp\":1764000300,"
		"\"max_seconds\":0}",
		/* jti too long for the field */
		"{\"iss\":\"c\",\"sub\":\"@SUB\",\"aud\":\"troop-worker\",\"target_node\":\"@NODE\","
		"\"model\":\"m\",\"jti\":\"0123456789012345678901234567890123\","
		"\"iat\":1764000000,\"exp\":1764000300,\"max_seconds\":120}",
	};
	char h[200], pay[2048];

	(void)state;
	header_json(h, sizeof(h), "EdDSA");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t;
		ticket_claims out;
		expand(pay, sizeof(pay), cases[i]);
		t = craft(h, pay, &coord);
		troop_error_clear();
		if (ticket_verify(&out, t, keys, 2, NOW) != TROOP_ETICKET)
			fail_msg("case %zu accepted: %s", i, pay);
		assert_string_equal(out.sub, "");  /* nothing half-filled on failure */
		free(t);
	}
	/* the control: unknown extra claims are ignored */
	expand(pay, sizeof(pay), "{\"iss\":\"c\",\"sub\":\"@SUB\",\"aud\":\"troop-worker\","
	    "\"target_node\":\"@NODE\",\"model\":\"m\",\"jti\":\"j\",\"iat\":1764000000,"
	    "\"exp\":1764000300,\"max_seconds\":120,\"nbf\":1}");
	{
		char *t = craft(h, pay, &coord);
		assert_int_equal(verify_at(t, NOW), 0);
		free(t);
	}
}

static int setup(void **state)
{
	(void)state;
	if (sodium_init() < 0)
		return -1;
	if (identity_generate(&coord) || identity_generate(&other) ||
	    identity_generate(&user) || identity_generate(&node))
		return -1;
	ticket_kid(keys[0].kid, other.pk);
	memcpy(keys[0].pk, other.pk, TROOP_PK_LEN);
	ticket_kid(keys[1].kid, coord.pk);
	memcpy(keys[1].pk, coord.pk, TROOP_PK_LEN);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	identity_wipe(&coord);
	identity_wipe(&other);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kid_and_jti),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_round_trip_escaped_strings),
		cmocka_unit_test(test_longest_claims_fit),
		cmocka_unit_test(test_rejects_alg_none),
		cmocka_unit_test(test_rejects_hs256_with_public_key),
		cmocka_unit_test(test_unknown_kid),
		cmocka_unit_test(test_rejects_changed_payload),
		cmocka_unit_test(test_rejects_changed_signature),
		cmocka_unit_test(test_rejects_every_truncation),
		cmocka_unit_test(test_rejects_segments_and_padding),
		cmocka_unit_test(test_rejects_too_long),
		cmocka_unit_test(test_time_claims_bounded),
		cmocka_unit_test(test_time_rules),
		cmocka_unit_test(test_rejects_wrong_aud),
		cmocka_unit_test(test_rejects_bad_claims),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
