/*
 * ticket.c - authorization tickets as compact JWS with EdDSA (Ed25519),
 * DESIGN.md section 5.
 *
 * Signing builds the header and claims text directly (no JSON library):
 * ticket_sign sits on the coordinator's /authorize path and should cost
 * little more than the Ed25519 signature itself.  Verification is the
 * careful side: a bounded length, exactly three strict base64url segments,
 * the header's alg compared to "EdDSA" byte for byte before anything else
 * is trusted, the kid looked up, the signature checked over the segments
 * as received, and only then the claims parsed (jansson) and checked.
 */
#include "ticket.h"

#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "error.h"

#define SIG_B64_LEN 86    /* b64url_len(64) */
#define CLAIMS_MAX 3072   /* worst case: every string char escaped as \u00XX */

void ticket_kid(char out[TICKET_KID_LEN + 1], const unsigned char pk[TROOP_PK_LEN])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, pk, TROOP_PK_LEN);
	b64url_encode(out, TICKET_KID_LEN + 1, h, 12);
}

void ticket_new_jti(char out[32])
{
	unsigned char r[16];

	randombytes_buf(r, sizeof(r));
	b64url_encode(out, 32, r, sizeof(r));
}

/* ---- signing ------------------------------------------------------------------ */

typedef struct {
	char *p, *end;
	bool bad;
} jwriter;

static void jw_raw(jwriter *w, const char *s, size_t n)
{
	if (w->bad || (size_t)(w->end - w->p) <= n) {
		w->bad = true;
		return;
	}
	memcpy(w->p, s, n);
	w->p += n;
}

/* Length of the valid UTF-8 sequence at s (at most `left` bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
	unsigned c = s[0];
	size_t n;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Append "name":"value" with JSON escaping.  `s` must be NUL-terminated
 * within `cap` bytes and valid UTF-8. */
static void jw_str(jwriter *w, const char *name, const char *s, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t len = strnlen(s, cap);

	if (len == cap) {
		w->bad = true;
		return;
	}
	jw_raw(w, "\"", 1);
	jw_raw(w, name, strlen(name));
	jw_raw(w, "\":\"", 3);
	for (size_t i = 0; i < len && !w->bad; ) {
		unsigned char c = (unsigned char)s[i];
		size_t n;
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			jw_raw(w, esc, 2);
			i++;
		} else if (c < 0x20) {
			char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			jw_raw(w, esc, 6);
			i++;
		} else if ((n = utf8_seq((const unsigned char *)s + i, len - i)) == 0) {
			w->bad = true;
		} else {
			jw_raw(w, s + i, n);
			i += n;
		}
	}
	jw_raw(w, "\"", 1);
}

static void jw_int(jwriter *w, const char *name, int64_t v)
{
	char num[48];
	int n = snprintf(num, sizeof(num), "\"%s\":%lld", name, (long long)v);

	jw_raw(w, num, (size_t)n);
}

/* Tickets are public, so signing encodes with a plain table instead of
 * libsodium's constant-time codec, which costs about 3 ns a byte: ~10% of
 * an Ed25519 signature for a 400-byte ticket.  The verifier still decodes
 * strictly with the libsodium codec, and the tests round-trip through it.
 * `out` must hold b64url_len(n) + 1 bytes. */
static size_t b64url_fast(char *out, const unsigned char *in, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *o = out;
	size_t i = 0;
	uint32_t v;

	for (; i + 3 <= n; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		o[0] = tab[v >> 18];
		o[1] = tab[(v >> 12) & 63];
		o[2] = tab[(v >> 6) & 63];
		o[3] = tab[v & 63];
		o += 4;
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
	} else if (n - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
	}
	*o = '\0';
	return (size_t)(o - out);
}

int ticket_sign(char **out, const ticket_claims *c, const troop_identity *key)
{
	char kid[TICKET_KID_LEN + 1];
	char header[80], claims[CLAIMS_MAX];
	jwriter w = { claims, claims + sizeof(claims), false };
	unsigned char sig[crypto_sign_BYTES];
	size_t hlen, plen, total, off;
	char *tok;
	int n;

	if (!out)
		return troop_error_set(TROOP_EINVAL, "ticket_sign: no output");
	*out = NULL;
	if (!c || !key)
		return troop_error_set(TROOP_EINVAL, "ticket_sign: no claims or key");
	if (!c->iss[0] || !c->sub[0] || !c->target_node[0] || !c->model[0] || !c->jti[0])
		return troop_error_set(TROOP_EINVAL, "ticket_sign: iss, sub, target_node, "
		    "model and jti are required");

	ticket_kid(kid, key->pk);
	n = snprintf(header, sizeof(header), "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
	    kid);

	jw_raw(&w, "{", 1);
	jw_str(&w, "iss", c->iss, sizeof(c->iss));
	jw_raw(&w, ",", 1);
	jw_str(&w, "sub", c->sub, sizeof(c->sub));
	jw_raw(&w, ",", 1);
	jw_str(&w, "aud", c->aud[0] ? c->aud : TICKET_AUD, sizeof(c->aud));
	jw_raw(&w, ",", 1);
	jw_str(&w, "target_node", c->target_node, sizeof(c->target_node));
	jw_raw(&w, ",", 1);
	jw_str(&w, "model", c->model, sizeof(c->model));
	jw_raw(&w, ",", 1);
	jw_str(&w, "jti", c->jti, sizeof(c->jti));
	jw_raw(&w, ",", 1);
	jw_int(&w, "iat", c->iat);
	jw_raw(&w, ",", 1);
	jw_int(&w, "exp", c->exp);
	jw_raw(&w, ",", 1);
	jw_int(&w, "max_seconds", c->max_seconds);
	jw_raw(&w, "}", 1);
	if (w.bad)
		return troop_error_set(TROOP_EINVAL, "ticket_sign: a claim is not "
		    "NUL-terminated or not valid UTF-8");

	hlen = b64url_len((size_t)n);
	plen = b64url_len((size_t)(w.p - claims));
	total = hlen + 1 + plen + 1 + SIG_B64_LEN;
	if (total > TICKET_MAX_LEN)
		return troop_error_set(TROOP_ETOOLARGE, "ticket would be %zu bytes, over "
		    "the %d-byte limit", total, TICKET_MAX_LEN);
	tok = malloc(total + 1);
	if (!tok)
		return troop_error_set(TROOP_ENOMEM, "out of memory for a ticket");
	off = b64url_fast(tok, (const unsigned char *)header, (size_t)n);
	tok[off++] = '.';
	off += b64url_fast(tok + off, (const unsigned char *)claims, (size_t)(w.p - claims));
	crypto_sign_detached(sig, NULL, (const unsigned char *)tok, off, key->sk);
	tok[off++] = '.';
	b64url_fast(tok + off, sig, sizeof(sig));
	*out = tok;
	return 0;
}

/* ---- verification ----------------------------------------------------------- */

static int bad(const char *msg)
{
	return troop_error_set(TROOP_ETICKET, "%s", msg);
}

/* Decode one base64url segment and parse it as a JSON object. */
static int segment_json(json_t **out, const char *s, size_t len, const char *what)
{
	char buf[TICKET_MAX_LEN];
	json_error_t jerr;
	size_t n = 0;

	*out = NULL;
	if (len == 0 || b64url_decode(buf, sizeof(buf), &n, s, len) != 0)
		return troop_error_set(TROOP_ETICKET, "malformed ticket: %s is not "
		    "base64url (no padding)", what);
	*out = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!*out || !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return troop_error_set(TROOP_ETICKET, "malformed ticket: %s is not a "
		    "JSON object", what);
	}
	return 0;
}

static bool json_str_is(const json_t *v, const char *lit)
{
	size_t n = strlen(lit);

	return json_is_string(v) && json_string_length(v) == n &&
	    memcmp(json_string_value(v), lit, n) == 0;
}

static int claim_str(char *dst, size_t cap, const json_t *claims, const char *name,
    bool account_id)
{
	const json_t *v = json_object_get(claims, name);
	unsigned char pk[TROOP_PK_LEN];
	size_t n;

	if (!json_is_string(v))
		return troop_error_set(TROOP_ETICKET, "ticket claim \"%s\" is missing or "
		    "not a string", name);
	n = json_string_length(v);
	if (n == 0 || n >= cap)
		return troop_error_set(TROOP_ETICKET, "ticket claim \"%s\" is empty or "
		    "longer than %zu bytes", name, cap - 1);
	memcpy(dst, json_string_value(v), n + 1);
	if (account_id && account_id_decode(pk, dst) != 0)
		return troop_error_set(TROOP_ETICKET, "ticket claim \"%s\" is not an "
		    "account id", name);
	return 0;
}

static int claim_int(int64_t *dst, const json_t *claims, const char *name)
{
	const json_t *v = json_object_get(claims, name);

	if (!json_is_integer(v))
		return troop_error_set(TROOP_ETICKET, "ticket claim \"%s\" is missing or "
		    "not an integer", name);
	*dst = (int64_t)json_integer_value(v);
	return 0;
}

static int check_header(const json_t *hdr, const ticket_key *keys, size_t nkeys,
    const ticket_key **key)
{
	const char *name;
	json_t *v;
	const json_t *kid;

	/* alg first: nothing else in an unauthenticated header matters if
	 * the token is not even claiming our one algorithm */
	if (!json_str_is(json_object_get(hdr, "alg"), "EdDSA"))
		return bad("ticket alg must be exactly \"EdDSA\"");
	json_object_foreach((json_t *)hdr, name, v) {
		if (strcmp(name, "alg") != 0 && strcmp(name, "typ") != 0 &&
		    strcmp(name, "kid") != 0)
			return bad("ticket header has a member other than alg, typ, kid");
	}
	v = json_object_get(hdr, "typ");
	if (v && !json_str_is(v, "JWT"))
		return bad("ticket typ must be \"JWT\"");
	kid = json_object_get(hdr, "kid");
	if (!json_is_string(kid))
		return bad("ticket header has no kid");
	for (size_t i = 0; i < nkeys; i++) {
		if (json_str_is(kid, keys[i].kid)) {
			*key = &keys[i];
			return 0;
		}
	}
	if (json_string_length(kid) == TICKET_KID_LEN && strspn(json_string_value(kid),
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
	    TICKET_KID_LEN)
		return troop_error_set(TROOP_ENOKEY, "ticket kid %s names no known "
		    "coordinator key", json_string_value(kid));
	return troop_error_set(TROOP_ENOKEY, "ticket kid names no known coordinator key");
}

int ticket_verify(ticket_claims *out, const char *token, const ticket_key *keys,
    size_t nkeys, int64_t now)
{
	const char *dot1, *dot2;
	size_t len, hlen, plen, slen, n = 0;
	const ticket_key *key = NULL;
	unsigned char sig[crypto_sign_BYTES + 1];
	json_t *hdr = NULL, *claims = NULL;
	int rc = 0;

	if (!out)
		return troop_error_set(TROOP_EINVAL, "ticket_verify: no output");
	memset(out, 0, sizeof(*out));
	if (!token || !*token)
		return bad("missing ticket");
	len = strnlen(token, TICKET_MAX_LEN + 1);
	if (len > TICKET_MAX_LEN)
		return troop_error_set(TROOP_ETICKET, "ticket longer than %d bytes",
		    TICKET_MAX_LEN);
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		return bad("malformed ticket: expected three dot-separated segments");
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);
	slen = len - (size_t)(dot2 + 1 - token);

	rc = segment_json(&hdr, token, hlen, "header");
	if (rc)
		goto out;
	rc = check_header(hdr, keys, nkeys, &key);
	if (rc)
		goto out;
	if (slen != SIG_B64_LEN || b64url_decode(sig, sizeof(sig), &n, dot2 + 1, slen) != 0 ||
	    n != crypto_sign_BYTES) {
		rc = bad("malformed ticket: signature is not base64url of 64 bytes");
		goto out;
	}
	if (crypto_sign_verify_detached(sig, (const unsigned char *)token, hlen + 1 + plen,
	    key->pk) != 0) {
		rc = bad("ticket signature does not verify");
		goto out;
	}

	rc = segment_json(&claims, dot1 + 1, plen, "claims");
	if (rc == 0)
		rc = claim_str(out->iss, sizeof(out->iss), claims, "iss", false);
	if (rc == 0)
		rc = claim_str(out->sub, sizeof(out->sub), claims, "sub", true);
	if (rc == 0)
		rc = claim_str(out->aud, sizeof(out->aud), claims, "aud", false);
	if (rc == 0)
		rc = claim_str(out->target_node, sizeof(out->target_node), claims,
		    "target_node", true);
	if (rc == 0)
		rc = claim_str(out->model, sizeof(out->model), claims, "model", false);
	if (rc == 0)
		rc = claim_str(out->jti, sizeof(out->jti), claims, "jti", false);
	if (rc == 0)
		rc = claim_int(&out->iat, claims, "iat");
	if (rc == 0)
		rc = claim_int(&out->exp, claims, "exp");
	if (rc == 0)
		rc = claim_int(&out->max_seconds, claims, "max_seconds");
	if (rc)
		goto out;
	if (strcmp(out->aud, TICKET_AUD) != 0)
		rc = bad("ticket aud is not \"" TICKET_AUD "\"");
	else if (out->iat < 0 || out->iat > TICKET_TIME_MAX || out->exp < 0 ||
	    out->exp > TICKET_TIME_MAX)
		rc = bad("ticket iat or exp is out of range");
	else if (out->exp <= out->iat)
		rc = bad("ticket exp is not after iat");
	else if (out->exp - out->iat > TICKET_TTL_MAX)
		rc = troop_error_set(TROOP_ETICKET, "ticket lifetime exp - iat = %lld s is "
		    "longer than the longest a coordinator issues (%d s)",
		    (long long)(out->exp - out->iat), TICKET_TTL_MAX);
	else if (out->max_seconds <= 0 || out->max_seconds > TICKET_MAX_SECONDS)
		rc = troop_error_set(TROOP_ETICKET, "ticket max_seconds must be between 1 and %d",
		    TICKET_MAX_SECONDS);
	else if (out->exp <= now - TICKET_SKEW)  /* now >= exp + skew, without overflow */
		rc = troop_error_set(TROOP_ETICKET, "ticket expired (exp %lld, now %lld, "
		    "skew %d s)", (long long)out->exp, (long long)now, TICKET_SKEW);
	else if (out->iat > now + TICKET_SKEW)
		rc = troop_error_set(TROOP_ETICKET, "ticket not valid yet (iat %lld is in "
		    "the future; now %lld, skew %d s)", (long long)out->iat, (long long)now,
		    TICKET_SKEW);
out:
	json_decref(hdr);
	json_decref(claims);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}
