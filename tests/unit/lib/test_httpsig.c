/*
 * test_httpsig.c - signed requests (RFC 9421 profile of DESIGN.md
 * section 4): round trips, the wire format rebuilt by hand, each check of
 * the verifier failing on its own, structured-field parsing, and the
 * nonce cache (expiry, bound, threads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "error.h"
#include "expset.h"
#include "httpsig.h"
#include "identity.h"

#define NOW ((int64_t)1764000000)
#define BODY "{\"model\":\"llama3:8b\",\"max_seconds\":60}"

static troop_identity alice, bob;

/* A nonce store for the tests (the coordinator's is its registry). */
static int nonce_check(void *set, const char *keyid, const char *nonce, int64_t now)
{
	char key[600];
	int rc;

	snprintf(key, sizeof(key), "%s\n%s", keyid, nonce);
	rc = expset_put(set, key, NULL, NULL, 0, now + 121, EXPSET_NX, now);
	return rc == TROOP_ECONFLICT ? TROOP_EAUTH : rc;
}

static int verify(const httpsig_headers *h, const char *method, const char *path,
    const char *query, const char *body, int64_t now, void *cache, char *keyid)
{
	char kid[TROOP_ID_LEN + 1];

	troop_error_clear();
	return httpsig_verify(keyid ? keyid : kid, method, path, query, body,
	    body ? strlen(body) : 0, h->content_digest[0] ? h->content_digest : NULL,
	    h->signature_input, h->signature, now, cache ? nonce_check : NULL, cache);
}

static void expect_auth(int rc, const char *needle)
{
	assert_int_equal(rc, TROOP_EAUTH);
	if (!strstr(troop_error_msg(), needle))
		fail_msg("message '%s' does not mention '%s'", troop_error_msg(), needle);
}

/* Replace the first `from` in s (in place, buffer of cap bytes). */
static void replace(char *s, size_t cap, const char *from, const char *to)
{
	char *p = strstr(s, from);
	char tmp[1024];

	assert_non_null(p);
	snprintf(tmp, sizeof(tmp), "%s%s", to, p + strlen(from));
	assert_true((size_t)(p - s) + strlen(tmp) < cap);
	strcpy(p, tmp);
}

/* Sign by hand: `list` is the inner list contents, `lines` the component
 * lines of the signature base in the same order.  Builds the headers the
 * way an independent RFC 9421 implementation would. */
static void hand_sign(httpsig_headers *h, const troop_identity *signer, const char *list,
    const char *lines, const char *extra_params, const char *alg, int64_t created,
    const char *keyid)
{
	char params[512], base[2048], b64[100];
	unsigned char sig[64];

	snprintf(params, sizeof(params), "(%s);created=%lld;nonce=\"%s\";keyid=\"%s\"%s%s%s%s",
	    list, (long long)created, "bm9uY2Vub25jZW5vbmNl", keyid, alg ? ";alg=\"" : "",
	    alg ? alg : "", alg ? "\"" : "", extra_params ? extra_params : "");
	snprintf(base, sizeof(base), "%s\"@signature-params\": %s", lines, params);
	crypto_sign_detached(sig, NULL, (const unsigned char *)base, strlen(base), signer->sk);
	b64_encode(b64, sizeof(b64), sig, sizeof(sig));
	assert_true(snprintf(h->signature_input, sizeof(h->signature_input), "troop=%s",
	    params) < (int)sizeof(h->signature_input));
	assert_true(snprintf(h->signature, sizeof(h->signature), "troop=:%s:", b64) <
	    (int)sizeof(h->signature));
}

static void digest_header(char *out, size_t len, const char *body)
{
	unsigned char d[32];
	char b64[45];

	crypto_hash_sha256(d, (const unsigned char *)body, strlen(body));
	b64_encode(b64, sizeof(b64), d, sizeof(d));
	snprintf(out, len, "sha-256=:%s:", b64);
}

/* ---- round trips ----------------------------------------------------------- */

static void test_sign_verify_with_body(void **state)
{
	httpsig_headers h;
	char keyid[TROOP_ID_LEN + 1];

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/authorize", NULL, BODY,
	    strlen(BODY), NOW), 0);
	assert_non_null(strstr(h.signature_input, "\"content-digest\""));
	assert_int_equal(strncmp(h.content_digest, "sha-256=:", 9), 0);
	assert_int_equal(verify(&h, "POST", "/authorize", "", BODY, NOW, NULL, keyid), 0);
	assert_string_equal(keyid, alice.id);
}

static void test_sign_verify_without_body(void **state)
{
	httpsig_headers h;
	char keyid[TROOP_ID_LEN + 1];

	(void)state;
	assert_int_equal(httpsig_sign(&h, &bob, "GET", "/balance", "", NULL, 0, NOW), 0);
	assert_string_equal(h.content_digest, "");
	assert_null(strstr(h.signature_input, "content-digest"));
	assert_int_equal(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, keyid), 0);
	assert_string_equal(keyid, bob.id);
	/* a Content-Digest header sent along anyway is not covered and ignored */
	assert_int_equal(httpsig_verify(keyid, "GET", "/balance", "", NULL, 0,
	    "sha-256=:AAAA:", h.signature_input, h.signature, NOW, NULL, NULL), 0);
}

static void test_sign_verify_with_query(void **state)
{
	httpsig_headers h;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "GET", "/transactions",
	    "limit=10&after=abc%20d", NULL, 0, NOW), 0);
	assert_int_equal(verify(&h, "GET", "/transactions", "limit=10&after=abc%20d", NULL,
	    NOW, NULL, NULL), 0);
	/* the query is covered: without it, or with another, it fails */
	expect_auth(verify(&h, "GET", "/transactions", "", NULL, NOW, NULL, NULL),
	    "does not verify");
	expect_auth(verify(&h, "GET", "/transactions", "limit=11&after=abc%20d", NULL,
	    NOW, NULL, NULL), "does not verify");
}

static void test_nonces_are_fresh(void **state)
{
	httpsig_headers a, b;

	(void)state;
	assert_int_equal(httpsig_sign(&a, &alice, "GET", "/balance", NULL, NULL, 0, NOW), 0);
	assert_int_equal(httpsig_sign(&b, &alice, "GET", "/balance", NULL, NULL, 0, NOW), 0);
	assert_string_not_equal(a.signature_input, b.signature_input);
	assert_string_not_equal(a.signature, b.signature);
}

/* ---- the wire format, rebuilt independently -------------------------------- */

static void test_wire_format_pinned(void **state)
{
	httpsig_headers h;
	char nonce[64], want[512], base[2048], digest[80];
	const char *p, *q;
	unsigned char sig[64];
	size_t n;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/authorize", "a=b", BODY,
	    strlen(BODY), NOW), 0);

	/* Content-Digest: sha-256=:<base64 of SHA-256(body)>: */
	digest_header(digest, sizeof(digest), BODY);
	assert_string_equal(h.content_digest, digest);

	/* the nonce is 16 random bytes in base64url */
	p = strstr(h.signature_input, ";nonce=\"");
	assert_non_null(p);
	p += 8;
	q = strchr(p, '"');
	assert_non_null(q);
	assert_int_equal(q - p, 22);
	snprintf(nonce, sizeof(nonce), "%.*s", (int)(q - p), p);
	{
		unsigned char raw[16];
		assert_int_equal(b64url_decode(raw, sizeof(raw), &n, nonce, strlen(nonce)), 0);
		assert_int_equal(n, 16);
	}

	snprintf(want, sizeof(want), "troop=(\"@method\" \"@path\" \"@query\" "
	    "\"content-digest\");created=1764000000;nonce=\"%s\";keyid=\"%s\";"
	    "alg=\"ed25519\"", nonce, alice.id);
	assert_string_equal(h.signature_input, want);

	/* RFC 9421 section 2.5: one line per component, then the params line,
	 * joined by \n with no trailing newline */
	snprintf(base, sizeof(base),
	    "\"@method\": POST\n"
	    "\"@path\": /authorize\n"
	    "\"@query\": ?a=b\n"
	    "\"content-digest\": %s\n"
	    "\"@signature-params\": %s", digest, want + strlen("troop="));

	assert_int_equal(strncmp(h.signature, "troop=:", 7), 0);
	assert_int_equal(h.signature[strlen(h.signature) - 1], ':');
	assert_int_equal(b64_decode(sig, sizeof(sig), &n, h.signature + 7,
	    strlen(h.signature) - 8), 0);
	assert_int_equal(n, 64);
	assert_int_equal(crypto_sign_verify_detached(sig, (const unsigned char *)base,
	    strlen(base), alice.pk), 0);
}

static void test_wire_format_without_body_or_query(void **state)
{
	httpsig_headers h;
	char base[1024];
	unsigned char sig[64];
	size_t n;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &bob, "GET", "/balance", NULL, NULL, 0, NOW), 0);
	snprintf(base, sizeof(base),
	    "\"@method\": GET\n"
	    "\"@path\": /balance\n"
	    "\"@query\": ?\n"
	    "\"@signature-params\": %s", h.signature_input + strlen("troop="));
	assert_int_equal(strncmp(h.signature_input, "troop=(\"@method\" \"@path\" "
	    "\"@query\");created=1764000000;nonce=\"", 61), 0);
	assert_int_equal(b64_decode(sig, sizeof(sig), &n, h.signature + 7,
	    strlen(h.signature) - 8), 0);
	assert_int_equal(crypto_sign_verify_detached(sig, (const unsigned char *)base,
	    strlen(base), bob.pk), 0);
}

static void test_hand_signed_request_verifies(void **state)
{
	httpsig_headers h;

	memset(&h, 0, sizeof(h));
	char lines[512];

	(void)state;
	digest_header(h.content_digest, sizeof(h.content_digest), BODY);
	snprintf(lines, sizeof(lines), "\"content-digest\": %s\n\"@method\": POST\n"
	    "\"@query\": ?\n\"@path\": /authorize\n", h.content_digest);
	/* the signer's order is accepted, not just ours */
	hand_sign(&h, &alice, "\"content-digest\" \"@method\" \"@query\" \"@path\"", lines,
	    NULL, "ed25519", NOW, alice.id);
	assert_int_equal(verify(&h, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL), 0);
}

/* ---- each check on its own --------------------------------------------------- */

static void test_rejects_body_not_matching_digest(void **state)
{
	httpsig_headers h;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/authorize", NULL, BODY,
	    strlen(BODY), NOW), 0);
	expect_auth(verify(&h, "POST", "/authorize", NULL,
	    "{\"model\":\"llama3:8b\",\"max_seconds\":6000}", NOW, NULL, NULL),
	    "content-digest does not match the body");
	/* the digest is required when there is a body */
	expect_auth(httpsig_verify(NULL, "POST", "/authorize", NULL, BODY, strlen(BODY),
	    NULL, h.signature_input, h.signature, NOW, NULL, NULL),
	    "missing Content-Digest header");
	/* a Content-Digest that matches the new body but is not the signed one */
	{
		const char *other = "{\"x\":1}";
		digest_header(h.content_digest, sizeof(h.content_digest), other);
		expect_auth(verify(&h, "POST", "/authorize", NULL, other, NOW, NULL, NULL),
		    "does not verify");
	}
}

static void test_rejects_created_out_of_window(void **state)
{
	httpsig_headers h;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "GET", "/balance", NULL, NULL, 0,
	    NOW - 61), 0);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "signature created 61 s from server time");
	assert_int_equal(httpsig_sign(&h, &alice, "GET", "/balance", NULL, NULL, 0,
	    NOW + 61), 0);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "signature created 61 s from server time");
	/* the edges of the window are inside */
	assert_int_equal(httpsig_sign(&h, &alice, "GET", "/balance", NULL, NULL, 0,
	    NOW - 60), 0);
	assert_int_equal(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), 0);
	assert_int_equal(httpsig_sign(&h, &alice, "GET", "/balance", NULL, NULL, 0,
	    NOW + 60), 0);
	assert_int_equal(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), 0);
}

static void test_rejects_replayed_nonce(void **state)
{
	httpsig_headers h;
	expset *c;

	(void)state;
	assert_int_equal(expset_new(&c, NULL), 0);
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/heartbeat", NULL, BODY,
	    strlen(BODY), NOW), 0);
	assert_int_equal(verify(&h, "POST", "/heartbeat", NULL, BODY, NOW, c, NULL), 0);
	expect_auth(verify(&h, "POST", "/heartbeat", NULL, BODY, NOW, c, NULL),
	    "nonce already used");
	expect_auth(verify(&h, "POST", "/heartbeat", NULL, BODY, NOW + 30, c, NULL),
	    "nonce already used");
	expset_free(c);
}

static void test_failed_verify_does_not_record_nonce(void **state)
{
	httpsig_headers h;
	expset *c;

	(void)state;
	assert_int_equal(expset_new(&c, NULL), 0);
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/heartbeat", NULL, BODY,
	    strlen(BODY), NOW), 0);
	/* a forged request carrying the same nonce must not burn it */
	expect_auth(verify(&h, "POST", "/receipts", NULL, BODY, NOW, c, NULL),
	    "does not verify");
	assert_int_equal(verify(&h, "POST", "/heartbeat", NULL, BODY, NOW, c, NULL), 0);
	expset_free(c);
}

static void test_rejects_signature_by_other_key(void **state)
{
	httpsig_headers h;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/authorize", NULL, BODY,
	    strlen(BODY), NOW), 0);
	replace(h.signature_input, sizeof(h.signature_input), alice.id, bob.id);
	expect_auth(verify(&h, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "signature does not verify");
}

static void test_rejects_missing_covered_component(void **state)
{
	httpsig_headers h;

	memset(&h, 0, sizeof(h));
	char lines[512];

	(void)state;
	/* properly signed, but @query is not covered */
	hand_sign(&h, &alice, "\"@method\" \"@path\"", "\"@method\": GET\n\"@path\": /balance\n",
	    NULL, "ed25519", NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "missing covered component \"@query\"");

	/* properly signed with a body, but content-digest is not covered */
	digest_header(h.content_digest, sizeof(h.content_digest), BODY);
	hand_sign(&h, &alice, "\"@method\" \"@path\" \"@query\"",
	    "\"@method\": POST\n\"@path\": /authorize\n\"@query\": ?\n",
	    NULL, "ed25519", NOW, alice.id);
	expect_auth(verify(&h, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "missing covered component \"content-digest\"");

	/* the same construction with everything covered passes, so it was only
	 * the missing component that failed above */
	snprintf(lines, sizeof(lines), "\"@method\": POST\n\"@path\": /authorize\n"
	    "\"@query\": ?\n\"content-digest\": %s\n", h.content_digest);
	hand_sign(&h, &alice, "\"@method\" \"@path\" \"@query\" \"content-digest\"", lines,
	    NULL, "ed25519", NOW, alice.id);
	assert_int_equal(verify(&h, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL), 0);
}

static void test_rejects_unsupported_or_duplicate_component(void **state)
{
	httpsig_headers h;

	memset(&h, 0, sizeof(h));

	(void)state;
	hand_sign(&h, &alice, "\"@method\" \"@path\" \"@query\" \"@authority\"",
	    "\"@method\": GET\n\"@path\": /balance\n\"@query\": ?\n\"@authority\": x\n",
	    NULL, "ed25519", NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "unsupported covered component \"@authority\"");
	hand_sign(&h, &alice, "\"@method\" \"@path\" \"@query\" \"@path\"",
	    "\"@method\": GET\n\"@path\": /balance\n\"@query\": ?\n\"@path\": /balance\n",
	    NULL, "ed25519", NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "twice");
	hand_sign(&h, &alice, "\"@method\" \"@path\" \"@query\";sf",
	    "\"@method\": GET\n\"@path\": /balance\n\"@query\";sf: ?\n",
	    NULL, "ed25519", NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "parameters");
}

static void test_rejects_bad_base64(void **state)
{
	httpsig_headers h, g;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/authorize", NULL, BODY,
	    strlen(BODY), NOW), 0);

	/* Signature: padding in the middle, a missing char, and 3 bytes */
	g = h;
	g.signature[10] = '=';
	expect_auth(verify(&g, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "Signature");
	g = h;
	memmove(g.signature + 7, g.signature + 8, strlen(g.signature + 7));
	expect_auth(verify(&g, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "Signature");
	g = h;
	snprintf(g.signature, sizeof(g.signature), "troop=:AAAA:");
	expect_auth(verify(&g, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "64-byte");

	/* Content-Digest: a char that base64 does not have at that place */
	g = h;
	g.content_digest[12] = '=';
	expect_auth(verify(&g, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "Content-Digest");
	g = h;
	snprintf(g.content_digest, sizeof(g.content_digest), "sha-256=:AAAA:");
	expect_auth(verify(&g, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "Content-Digest");
	g = h;
	snprintf(g.content_digest, sizeof(g.content_digest), "sha-256=:!!:");
	expect_auth(verify(&g, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "Content-Digest");
	g = h;
	replace(g.content_digest, sizeof(g.content_digest), "sha-256", "sha-512");
	expect_auth(verify(&g, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "no sha-256");
}

static void test_rejects_missing_headers(void **state)
{
	httpsig_headers h;
	char kid[TROOP_ID_LEN + 1];

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/authorize", NULL, BODY,
	    strlen(BODY), NOW), 0);
	expect_auth(httpsig_verify(kid, "POST", "/authorize", NULL, BODY, strlen(BODY),
	    h.content_digest, NULL, h.signature, NOW, NULL, NULL),
	    "missing Signature-Input");
	expect_auth(httpsig_verify(kid, "POST", "/authorize", NULL, BODY, strlen(BODY),
	    h.content_digest, h.signature_input, NULL, NOW, NULL, NULL),
	    "missing Signature header");
	expect_auth(httpsig_verify(kid, "POST", "/authorize", NULL, BODY, strlen(BODY),
	    NULL, h.signature_input, h.signature, NOW, NULL, NULL),
	    "missing Content-Digest");
	expect_auth(httpsig_verify(kid, "POST", "/authorize", NULL, BODY, strlen(BODY),
	    h.content_digest, "", h.signature, NOW, NULL, NULL), "no \"troop\"");
	expect_auth(httpsig_verify(kid, "POST", "/authorize", NULL, BODY, strlen(BODY),
	    h.content_digest, h.signature_input, "", NOW, NULL, NULL), "no \"troop\"");
	assert_string_equal(kid, "");
}

static void test_rejects_other_request(void **state)
{
	httpsig_headers h;

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "POST", "/authorize", "x=1", BODY,
	    strlen(BODY), NOW), 0);
	assert_int_equal(verify(&h, "POST", "/authorize", "x=1", BODY, NOW, NULL, NULL), 0);
	expect_auth(verify(&h, "PUT", "/authorize", "x=1", BODY, NOW, NULL, NULL),
	    "does not verify");
	expect_auth(verify(&h, "POST", "/receipts", "x=1", BODY, NOW, NULL, NULL),
	    "does not verify");
	expect_auth(verify(&h, "POST", "/authorize", "x=2", BODY, NOW, NULL, NULL),
	    "does not verify");
	expect_auth(verify(&h, "POST", "/authorize", NULL, BODY, NOW, NULL, NULL),
	    "does not verify");
	/* a path that would inject a line into the base is refused outright */
	expect_auth(verify(&h, "POST", "/authorize\n\"@query\": ?x=1", NULL, BODY, NOW,
	    NULL, NULL), "cannot be signed");
}

static void test_rejects_bad_parameters(void **state)
{
	httpsig_headers h;

	memset(&h, 0, sizeof(h));
	const char *list = "\"@method\" \"@path\" \"@query\"";
	const char *lines = "\"@method\": GET\n\"@path\": /balance\n\"@query\": ?\n";

	(void)state;
	hand_sign(&h, &alice, list, lines, NULL, "rsa-pss-sha512", NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "unsupported alg");
	hand_sign(&h, &alice, list, lines, NULL, NULL, NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "missing signature parameter \"alg\"");
	hand_sign(&h, &alice, list, lines, NULL, "ed25519", NOW, "not-an-account-id");
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "keyid");
	hand_sign(&h, &alice, list, lines, ";foo=1", "ed25519", NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "unsupported signature parameter \"foo\"");
	hand_sign(&h, &alice, list, lines, ";created=1", "ed25519", NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "twice");
	hand_sign(&h, &alice, list, lines, ";expires=1764000010", "ed25519", NOW, alice.id);
	assert_int_equal(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), 0);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW + 11, NULL, NULL),
	    "expired");
	/* created as a string, nonce missing */
	snprintf(h.signature_input, sizeof(h.signature_input), "troop=(%s);created=\"1\";"
	    "nonce=\"abcdefgh12\";keyid=\"%s\";alg=\"ed25519\"", list, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "\"created\" must be an integer");
	snprintf(h.signature_input, sizeof(h.signature_input), "troop=(%s);created=%lld;"
	    "keyid=\"%s\";alg=\"ed25519\"", list, (long long)NOW, alice.id);
	expect_auth(verify(&h, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "missing signature parameter \"nonce\"");
}

/* ---- structured-field syntax ---------------------------------------------------- */

static void test_structured_fields(void **state)
{
	httpsig_headers h, g;
	char buf[600];

	(void)state;
	assert_int_equal(httpsig_sign(&h, &alice, "GET", "/balance", NULL, NULL, 0, NOW), 0);

	/* other signatures may ride along (e.g. added by a proxy) */
	g = h;
	snprintf(buf, sizeof(buf), "proxy=(\"@method\");created=1;keyid=\"x\", %s",
	    h.signature_input);
	assert_true(snprintf(g.signature_input, sizeof(g.signature_input), "%s", buf) <
	    (int)sizeof(g.signature_input));
	snprintf(buf, sizeof(buf), "%s,proxy=:AAAA:", h.signature);
	assert_true(snprintf(g.signature, sizeof(g.signature), "%s", buf) <
	    (int)sizeof(g.signature));
	assert_int_equal(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), 0);

	/* but another label alone is not ours */
	g = h;
	replace(g.signature_input, sizeof(g.signature_input), "troop=", "other=");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "no \"troop\"");
	g = h;
	replace(g.signature, sizeof(g.signature), "troop=", "other=");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "no \"troop\"");

	/* the label twice is refused rather than picking one */
	snprintf(buf, sizeof(buf), "%s, %s", h.signature, h.signature);
	expect_auth(httpsig_verify(NULL, "GET", "/balance", NULL, NULL, 0, NULL,
	    h.signature_input, buf, NOW, NULL, NULL), "twice");

	/* syntax errors: trailing comma, unterminated list, bad key, stray text */
	g = h;
	strcat(g.signature_input, ",");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "malformed");
	g = h;
	replace(g.signature_input, sizeof(g.signature_input), ")", "");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "malformed");
	g = h;
	replace(g.signature_input, sizeof(g.signature_input), "troop=", "Troop=");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "malformed");
	g = h;
	strcat(g.signature, " x");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "malformed");
	g = h;
	replace(g.signature_input, sizeof(g.signature_input), "\"@path\"", "\"@pa\x01th\"");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), "malformed");

	/* the signature base uses the canonical serialisation, so optional
	 * whitespace the grammar allows does not break the signature */
	g = h;
	replace(g.signature_input, sizeof(g.signature_input), "(", "(  ");
	replace(g.signature_input, sizeof(g.signature_input), "\" \"", "\"   \"");
	replace(g.signature_input, sizeof(g.signature_input), ";nonce", "; nonce");
	assert_int_equal(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL), 0);
	/* a signature over the Signature-Input bytes is still over its meaning:
	 * changing a parameter value breaks it */
	g = h;
	replace(g.signature_input, sizeof(g.signature_input), "created=1764000000",
	    "created=1764000001");
	expect_auth(verify(&g, "GET", "/balance", NULL, NULL, NOW, NULL, NULL),
	    "does not verify");
}

static int setup(void **state)
{
	(void)state;
	if (sodium_init() < 0)
		return -1;
	return identity_generate(&alice) || identity_generate(&bob);
}

static int teardown(void **state)
{
	(void)state;
	identity_wipe(&alice);
	identity_wipe(&bob);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_verify_with_body),
		cmocka_unit_test(test_sign_verify_without_body),
		cmocka_unit_test(test_sign_verify_with_query),
		cmocka_unit_test(test_nonces_are_fresh),
		cmocka_unit_test(test_wire_format_pinned),
		cmocka_unit_test(test_wire_format_without_body_or_query),
		cmocka_unit_test(test_hand_signed_request_verifies),
		cmocka_unit_test(test_rejects_body_not_matching_digest),
		cmocka_unit_test(test_rejects_created_out_of_window),
		cmocka_unit_test(test_rejects_replayed_nonce),
		cmocka_unit_test(test_failed_verify_does_not_record_nonce),
		cmocka_unit_test(test_rejects_signature_by_other_key),
		cmocka_unit_test(test_rejects_missing_covered_component),
		cmocka_unit_test(test_rejects_unsupported_or_duplicate_component),
		cmocka_unit_test(test_rejects_bad_base64),
		cmocka_unit_test(test_rejects_missing_headers),
		cmocka_unit_test(test_rejects_other_request),
		cmocka_unit_test(test_rejects_bad_parameters),
		cmocka_unit_test(test_structured_fields),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
