/*
 * httpsig.c - the RFC 9421 / RFC 9530 profile of DESIGN.md section 4:
 * signing requests, verifying them, and an in-process nonce cache.
 *
 * The verifier parses Signature-Input, Signature and Content-Digest as
 * RFC 8941 dictionaries with a strict, bounded parser (below), looks only
 * at the "troop" member, and rebuilds the signature base from the request
 * and the parsed parameters, re-serialised canonically, so that any
 * conforming RFC 9421 signer interoperates.  Checks run cheapest first
 * and the nonce is recorded only after the signature verifies, so that
 * unsigned garbage cannot fill the replay cache.
 *
 * Every rejection is TROOP_EAUTH with a message naming the failed check.
 */
#include "httpsig.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "error.h"

#define HDR_MAX 4096          /* longest header value we parse */
#define BASE_MAX 8192         /* longest signature base we build */
#define SF_MAX_ITEMS 16       /* items in one inner list */
#define SF_MAX_PARAMS 16      /* parameters on one item or inner list */
#define LABEL "troop"
#define NONCE_MIN 8
#define NONCE_MAX 64

/* ---- RFC 8941 structured fields (the subset of the parser we need) ------- */

typedef enum { SF_INT, SF_DEC, SF_STR, SF_TOKEN, SF_BYTES, SF_BOOL } sf_type;

/* A bare item points into the header text: for strings the raw characters
 * between the quotes (escapes kept, which is also their canonical
 * serialisation), for byte sequences the base64 between the colons. */
typedef struct {
	sf_type type;
	const char *s;
	size_t len;
	int64_t i;
} sf_bare;

typedef struct {
	const char *key;
	size_t klen;
	sf_bare v;
} sf_param;

typedef struct {
	sf_param p[SF_MAX_PARAMS];
	size_t n;
} sf_params;

typedef struct {
	bool is_list;
	sf_bare item;                 /* when !is_list */
	sf_bare list[SF_MAX_ITEMS];   /* when is_list */
	size_t nlist;
	bool list_item_params;        /* some list member carried parameters */
	sf_params params;             /* of the item or of the inner list */
} sf_member;

typedef struct {
	const char *p, *end;
} sf_in;

static bool is_lcalpha(int c) { return c >= 'a' && c <= 'z'; }
static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static bool is_tchar(int c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool sf_peek(const sf_in *in, char c)
{
	return in->p < in->end && *in->p == c;
}

static void sf_skip_sp(sf_in *in)
{
	while (in->p < in->end && *in->p == ' ')
		in->p++;
}

static void sf_skip_ows(sf_in *in)
{
	while (in->p < in->end && (*in->p == ' ' || *in->p == '\t'))
		in->p++;
}

/* key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ) */
static bool sf_key(sf_in *in, const char **key, size_t *klen)
{
	const char *start = in->p;

	if (in->p >= in->end || !(is_lcalpha(*in->p) || *in->p == '*'))
		return false;
	while (in->p < in->end && (is_lcalpha(*in->p) || is_digit(*in->p) ||
	    strchr("_-.*", *in->p)) && *in->p)
		in->p++;
	*key = start;
	*klen = (size_t)(in->p - start);
	return true;
}

static bool sf_number(sf_in *in, sf_bare *out)
{
	const char *start = in->p;
	bool neg = false, dec = false;
	size_t ndigits = 0, nfrac = 0;
	int64_t v = 0;

	if (sf_peek(in, '-')) {
		neg = true;
		in->p++;
	}
	if (in->p >= in->end || !is_digit(*in->p))
		return false;
	while (in->p < in->end) {
		char c = *in->p;
		if (is_digit(c)) {
			ndigits++;
			if (dec)
				nfrac++;
			else
				v = v * 10 + (c - '0');  /* at most 15 digits: no overflow */
		} else if (!dec && c == '.') {
			if (ndigits > 12)
				return false;
			dec = true;
		} else {
			break;
		}
		in->p++;
		if (!dec && ndigits > 15)
			return false;
		if (dec && ndigits + 1 > 16)
			return false;
	}
	if (dec && (nfrac == 0 || nfrac > 3))
		return false;
	out->type = dec ? SF_DEC : SF_INT;
	out->s = start;
	out->len = (size_t)(in->p - start);
	out->i = neg ? -v : v;
	return true;
}

static bool sf_string(sf_in *in, sf_bare *out)
{
	const char *start;

	in->p++;  /* the opening quote */
	start = in->p;
	while (in->p < in->end) {
		unsigned char c = (unsigned char)*in->p++;
		if (c == '\\') {
			if (in->p >= in->end || (*in->p != '"' && *in->p != '\\'))
				return false;
			in->p++;
		} else if (c == '"') {
			out->type = SF_STR;
			out->s = start;
			out->len = (size_t)(in->p - 1 - start);
			return true;
		} else if (c < 0x20 || c > 0x7e) {
			return false;
		}
	}
	return false;
}

static bool sf_bare_item(sf_in *in, sf_bare *out)
{
	const char *start;

	if (in->p >= in->end)
		return false;
	memset(out, 0, sizeof(*out));
	start = in->p;
	if (*in->p == '-' || is_digit(*in->p))
		return sf_number(in, out);
	if (*in->p == '"')
		return sf_string(in, out);
	if (is_alpha(*in->p) || *in->p == '*') {
		while (in->p < in->end && (is_tchar(*in->p) || *in->p == ':' || *in->p == '/'))
			in->p++;
		out->type = SF_TOKEN;
		out->s = start;
		out->len = (size_t)(in->p - start);
		return true;
	}
	if (*in->p == ':') {
		in->p++;
		start = in->p;
		while (in->p < in->end && *in->p != ':') {
			char c = *in->p;
			if (!(is_alpha(c) || is_digit(c) || c == '+' || c == '/' || c == '='))
				return false;
			in->p++;
		}
		if (in->p >= in->end)
			return false;
		out->type = SF_BYTES;
		out->s = start;
		out->len = (size_t)(in->p - start);
		in->p++;
		return true;
	}
	if (*in->p == '?') {
		in->p++;
		if (in->p >= in->end || (*in->p != '0' && *in->p != '1'))
			return false;
		out->type = SF_BOOL;
		out->i = *in->p == '1';
		in->p++;
		return true;
	}
	return false;
}

/* parameters = *( ";" *SP key [ "=" bare-item ] ); `out` may be NULL. */
static bool sf_parameters(sf_in *in, sf_params *out, bool *any)
{
	sf_params scratch;

	if (!out)
		out = &scratch;
	out->n = 0;
	while (sf_peek(in, ';')) {
		sf_param *p;
		in->p++;
		sf_skip_sp(in);
		if (out->n >= SF_MAX_PARAMS)
			return false;
		p = &out->p[out->n++];
		if (!sf_key(in, &p->key, &p->klen))
			return false;
		if (sf_peek(in, '=')) {
			in->p++;
			if (!sf_bare_item(in, &p->v))
				return false;
		} else {
			memset(&p->v, 0, sizeof(p->v));
			p->v.type = SF_BOOL;
			p->v.i = 1;
		}
		if (any)
			*any = true;
	}
	return true;
}

static bool sf_inner_list(sf_in *in, sf_member *out)
{
	in->p++;  /* '(' */
	out->is_list = true;
	out->nlist = 0;
	out->list_item_params = false;
	while (in->p < in->end) {
		sf_skip_sp(in);
		if (sf_peek(in, ')')) {
			in->p++;
			return sf_parameters(in, &out->params, NULL);
		}
		if (out->nlist >= SF_MAX_ITEMS)
			return false;
		if (!sf_bare_item(in, &out->list[out->nlist++]))
			return false;
		if (!sf_parameters(in, NULL, &out->list_item_params))
			return false;
		if (in->p >= in->end || (*in->p != ' ' && *in->p != ')'))
			return false;
	}
	return false;
}

static bool sf_member_value(sf_in *in, sf_member *out)
{
	if (sf_peek(in, '('))
		return sf_inner_list(in, out);
	out->is_list = false;
	if (!sf_bare_item(in, &out->item))
		return false;
	return sf_parameters(in, &out->params, NULL);
}

/* Parse `s` as a dictionary; copy the member named `want` into *out.
 * Returns 0 (with *found), or TROOP_EAUTH naming header `hname`. */
static int sf_dict_find(sf_member *out, bool *found, const char *s, const char *want,
    const char *hname)
{
	sf_member scratch;
	sf_in in;
	size_t wlen = strlen(want);
	size_t len = strnlen(s, HDR_MAX + 1);

	*found = false;
	if (len > HDR_MAX)
		return troop_error_set(TROOP_EAUTH, "%s header is longer than %d bytes",
		    hname, HDR_MAX);
	in.p = s;
	in.end = s + len;
	sf_skip_sp(&in);
	while (in.p < in.end) {
		const char *key;
		size_t klen;
		if (!sf_key(&in, &key, &klen))
			goto malformed;
		bool mine = klen == wlen && memcmp(key, want, wlen) == 0;
		if (mine && *found)
			return troop_error_set(TROOP_EAUTH, "%s header has \"%s\" twice",
			    hname, want);
		sf_member *m = mine ? out : &scratch;
		if (sf_peek(&in, '=')) {
			in.p++;
			if (!sf_member_value(&in, m))
				goto malformed;
		} else {
			memset(&m->item, 0, sizeof(m->item));
			m->is_list = false;
			m->item.type = SF_BOOL;
			m->item.i = 1;
			if (!sf_parameters(&in, &m->params, NULL))
				goto malformed;
		}
		if (mine)
			*found = true;
		sf_skip_ows(&in);
		if (in.p >= in.end)
			return 0;
		if (*in.p != ',')
			goto malformed;
		in.p++;
		sf_skip_ows(&in);
		if (in.p >= in.end)
			goto malformed;  /* trailing comma */
	}
	return 0;
malformed:
	*found = false;
	return troop_error_set(TROOP_EAUTH, "malformed %s header (not an RFC 8941 "
	    "dictionary) at offset %td", hname, in.p - s);
}

static bool span_eq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* ---- signature base -------------------------------------------------------- */

typedef struct {
	char *buf;
	size_t len, cap;
	bool overflow;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->overflow || n >= b->cap - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

enum { C_METHOD, C_PATH, C_QUERY, C_DIGEST, C_COUNT };
static const char *const comp_names[C_COUNT] = {
	"@method", "@path", "@query", "content-digest",
};

/* Append the component lines for `comps` (in order) and the
 * @signature-params line holding `params` to b. */
static void base_build(sbuf *b, const int *comps, size_t ncomps, const char *method,
    const char *path, const char *query, const char *digest, size_t digest_len,
    const char *params, size_t params_len)
{
	for (size_t i = 0; i < ncomps; i++) {
		sb_str(b, "\"");
		sb_str(b, comp_names[comps[i]]);
		sb_str(b, "\": ");
		switch (comps[i]) {
		case C_METHOD:
			sb_str(b, method);
			break;
		case C_PATH:
			sb_str(b, path);
			break;
		case C_QUERY:
			sb_str(b, "?");
			sb_str(b, query ? query : "");
			break;
		default:
			sb_add(b, digest, digest_len);
			break;
		}
		sb_str(b, "\n");
	}
	sb_str(b, "\"@signature-params\": ");
	sb_add(b, params, params_len);
}

/* Request parts go verbatim into the base, so they must not be able to
 * start a new line or otherwise fake one. */
static bool method_ok(const char *m)
{
	size_t n = 0;

	if (!m)
		return false;
	for (; m[n]; n++)
		if (n >= 32 || !is_tchar((unsigned char)m[n]))
			return false;
	return n > 0;
}

static bool target_part_ok(const char *s, bool is_path)
{
	if (!s)
		return !is_path;
	if (is_path && s[0] != '/')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static void digest_of(char *out, size_t outlen, const void *body, size_t body_len)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char b64[45];  /* b64_len(32) + 1 */

	crypto_hash_sha256(h, (const unsigned char *)body, body_len);
	b64_encode(b64, sizeof(b64), h, sizeof(h));
	snprintf(out, outlen, "sha-256=:%s:", b64);
}

/* ---- signing ------------------------------------------------------------------ */

int httpsig_sign(httpsig_headers *out, const troop_identity *id, const char *method,
    const char *path, const char *query, const void *body, size_t body_len,
    int64_t now)
{
	static const int comps[] = { C_METHOD, C_PATH, C_QUERY, C_DIGEST };
	unsigned char nonce_raw[16], sig[crypto_sign_BYTES];
	char nonce[32], params[256], sig_b64[96];
	char base_buf[BASE_MAX];
	sbuf base = { base_buf, 0, sizeof(base_buf), false };
	bool has_body = body_len > 0;
	int n;

	if (!out || !id)
		return troop_error_set(TROOP_EINVAL, "httpsig_sign: no identity or output");
	memset(out, 0, sizeof(*out));
	if (!method_ok(method))
		return troop_error_set(TROOP_EINVAL, "httpsig_sign: bad method");
	if (!target_part_ok(path, true) || !target_part_ok(query, false))
		return troop_error_set(TROOP_EINVAL, "httpsig_sign: path must start with '/' "
		    "and path and query must be printable ASCII without spaces");
	if (has_body && !body)
		return troop_error_set(TROOP_EINVAL, "httpsig_sign: body_len without body");
	if (has_body)
		digest_of(out->content_digest, sizeof(out->content_digest), body, body_len);

	randombytes_buf(nonce_raw, sizeof(nonce_raw));
	b64url_encode(nonce, sizeof(nonce), nonce_raw, sizeof(nonce_raw));
	n = snprintf(params, sizeof(params), "(\"@method\" \"@path\" \"@query\"%s);"
	    "created=%lld;nonce=\"%s\";keyid=\"%s\";alg=\"ed25519\"",
	    has_body ? " \"content-digest\"" : "", (long long)now, nonce, id->id);
	if (n < 0 || (size_t)n >= sizeof(params) ||
	    (size_t)snprintf(out->signature_input, sizeof(out->signature_input),
	    LABEL "=%s", params) >= sizeof(out->signature_input))
		return troop_error_set(TROOP_ERR, "httpsig_sign: Signature-Input too long");

	base_build(&base, comps, has_body ? 4 : 3, method, path, query,
	    out->content_digest, strlen(out->content_digest), params, (size_t)n);
	if (base.overflow)
		return troop_error_set(TROOP_ETOOLARGE, "httpsig_sign: request target "
		    "longer than %d bytes", BASE_MAX - 512);
	crypto_sign_detached(sig, NULL, (const unsigned char *)base.buf, base.len, id->sk);
	b64_encode(sig_b64, sizeof(sig_b64), sig, sizeof(sig));
	snprintf(out->signature, sizeof(out->signature), LABEL "=:%s:", sig_b64);
	return 0;
}

/* ---- verification ----------------------------------------------------------- */

static bool nonce_ok(const char *s, size_t len)
{
	if (len < NONCE_MIN || len > NONCE_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(is_alpha(s[i]) || is_digit(s[i]) || strchr("-_+/=.~", s[i])))
			return false;
	return true;
}

/* Canonical RFC 8941 serialisation of the inner list and its parameters:
 * the value of "@signature-params".  Only strings and integers occur here
 * (checked by the caller). */
static void serialize_params(sbuf *b, const sf_member *m)
{
	char num[32];

	sb_str(b, "(");
	for (size_t i = 0; i < m->nlist; i++) {
		if (i)
			sb_str(b, " ");
		sb_str(b, "\"");
		sb_add(b, m->list[i].s, m->list[i].len);
		sb_str(b, "\"");
	}
	sb_str(b, ")");
	for (size_t i = 0; i < m->params.n; i++) {
		const sf_param *p = &m->params.p[i];
		sb_str(b, ";");
		sb_add(b, p->key, p->klen);
		sb_str(b, "=");
		if (p->v.type == SF_INT) {
			snprintf(num, sizeof(num), "%lld", (long long)p->v.i);
			sb_str(b, num);
		} else {
			sb_str(b, "\"");
			sb_add(b, p->v.s, p->v.len);
			sb_str(b, "\"");
		}
	}
}

static int reject(const char *msg)
{
	return troop_error_set(TROOP_EAUTH, "%s", msg);
}

/* The signature parameters we understand, with the type each must have. */
enum { P_CREATED, P_NONCE, P_KEYID, P_ALG, P_EXPIRES, P_TAG, P_COUNT };
static const struct {
	const char *name;
	sf_type type;
	bool required;
} param_spec[P_COUNT] = {
	{ "created", SF_INT, true },
	{ "nonce", SF_STR, true },
	{ "keyid", SF_STR, true },
	{ "alg", SF_STR, true },
	{ "expires", SF_INT, false },
	{ "tag", SF_STR, false },
};

int httpsig_verify(char keyid_out[TROOP_ID_LEN + 1], const char *method,
    const char *path, const char *query, const void *body, size_t body_len,
    const char *content_digest, const char *signature_input, const char *signature,
    int64_t now, httpsig_nonce_fn nonce_fn, void *nonce_ctx)
{
	sf_member in_m, sig_m, dig_m;
	const sf_param *par[P_COUNT] = { 0 };
	int comps[C_COUNT];
	bool covered[C_COUNT] = { false };
	size_t ncomps = 0, n = 0;
	unsigned char sig[crypto_sign_BYTES + 1], pk[TROOP_PK_LEN];
	unsigned char want[crypto_hash_sha256_BYTES], got[crypto_hash_sha256_BYTES + 1];
	char keyid[TROOP_ID_LEN + 1], nonce[NONCE_MAX + 1];
	char base_buf[BASE_MAX], params_buf[HDR_MAX + 64];
	sbuf base = { base_buf, 0, sizeof(base_buf), false };
	sbuf params = { params_buf, 0, sizeof(params_buf), false };
	const char *dig_val = NULL;
	size_t dig_len = 0;
	bool found;
	int rc;

	if (keyid_out)
		keyid_out[0] = '\0';

	/* 1. parse */
	if (!signature_input)
		return reject("missing Signature-Input header");
	if (!signature)
		return reject("missing Signature header");
	rc = sf_dict_find(&in_m, &found, signature_input, LABEL, "Signature-Input");
	if (rc)
		return rc;
	if (!found)
		return reject("Signature-Input header has no \"" LABEL "\" signature");
	if (!in_m.is_list)
		return reject("Signature-Input \"" LABEL "\" is not an inner list of components");
	rc = sf_dict_find(&sig_m, &found, signature, LABEL, "Signature");
	if (rc)
		return rc;
	if (!found)
		return reject("Signature header has no \"" LABEL "\" signature");
	if (sig_m.is_list || sig_m.item.type != SF_BYTES)
		return reject("Signature \"" LABEL "\" is not a byte sequence (:base64:)");
	if (b64_decode(sig, sizeof(sig), &n, sig_m.item.s, sig_m.item.len) != 0 ||
	    n != crypto_sign_BYTES)
		return reject("Signature \"" LABEL "\" is not base64 of a 64-byte Ed25519 "
		    "signature");

	for (size_t i = 0; i < in_m.params.n; i++) {
		const sf_param *p = &in_m.params.p[i];
		size_t k;
		for (k = 0; k < P_COUNT; k++)
			if (span_eq(p->key, p->klen, param_spec[k].name))
				break;
		if (k == P_COUNT)
			return troop_error_set(TROOP_EAUTH, "unsupported signature parameter "
			    "\"%.*s\"", (int)(p->klen > 32 ? 32 : p->klen), p->key);
		if (par[k])
			return troop_error_set(TROOP_EAUTH, "signature parameter \"%s\" given "
			    "twice", param_spec[k].name);
		if (p->v.type != param_spec[k].type)
			return troop_error_set(TROOP_EAUTH, "signature parameter \"%s\" must be "
			    "%s", param_spec[k].name,
			    param_spec[k].type == SF_INT ? "an integer" : "a string");
		par[k] = p;
	}
	for (size_t k = 0; k < P_COUNT; k++)
		if (param_spec[k].required && !par[k])
			return troop_error_set(TROOP_EAUTH, "missing signature parameter "
			    "\"%s\"", param_spec[k].name);
	if (!span_eq(par[P_ALG]->v.s, par[P_ALG]->v.len, "ed25519"))
		return troop_error_set(TROOP_EAUTH, "unsupported alg \"%.*s\" (expected "
		    "\"ed25519\")", (int)(par[P_ALG]->v.len > 32 ? 32 : par[P_ALG]->v.len),
		    par[P_ALG]->v.s);
	if (par[P_KEYID]->v.len != TROOP_ID_LEN)
		return reject("keyid is not an account id (43 base64url characters)");
	memcpy(keyid, par[P_KEYID]->v.s, TROOP_ID_LEN);
	keyid[TROOP_ID_LEN] = '\0';
	if (account_id_decode(pk, keyid) != 0)
		return reject("keyid is not an account id (43 base64url characters)");
	if (!nonce_ok(par[P_NONCE]->v.s, par[P_NONCE]->v.len))
		return troop_error_set(TROOP_EAUTH, "nonce must be %d to %d base64 "
		    "characters", NONCE_MIN, NONCE_MAX);
	memcpy(nonce, par[P_NONCE]->v.s, par[P_NONCE]->v.len);
	nonce[par[P_NONCE]->v.len] = '\0';

	/* 2. components: exactly the profile's set, in the signer's order */
	if (in_m.list_item_params)
		return reject("parameters on covered components are not supported");
	for (size_t i = 0; i < in_m.nlist; i++) {
		const sf_bare *it = &in_m.list[i];
		int c;
		if (it->type != SF_STR)
			return reject("covered components must be strings");
		for (c = 0; c < C_COUNT; c++)
			if (span_eq(it->s, it->len, comp_names[c]))
				break;
		if (c == C_COUNT)
			return troop_error_set(TROOP_EAUTH, "unsupported covered component "
			    "\"%.*s\"", (int)(it->len > 40 ? 40 : it->len), it->s);
		if (covered[c])
			return troop_error_set(TROOP_EAUTH, "covered component \"%s\" listed "
			    "twice", comp_names[c]);
		covered[c] = true;
		comps[ncomps++] = c;
	}
	for (int c = 0; c < C_COUNT; c++) {
		/* content-digest is required only when there is a body */
		if (!covered[c] && (c != C_DIGEST || body_len > 0))
			return troop_error_set(TROOP_EAUTH, "missing covered component "
			    "\"%s\"", comp_names[c]);
	}
	if (!method_ok(method) || !target_part_ok(path, true) || !target_part_ok(query, false))
		return reject("request method, path or query cannot be signed "
		    "(control characters or spaces)");
	if (body_len > 0 && !body)
		return troop_error_set(TROOP_EINVAL, "httpsig_verify: body_len without body");

	/* 3. digest */
	if (covered[C_DIGEST]) {
		if (!content_digest)
			return reject("missing Content-Digest header");
		rc = sf_dict_find(&dig_m, &found, content_digest, "sha-256", "Content-Digest");
		if (rc)
			return rc;
		if (!found)
			return reject("Content-Digest header has no sha-256 value");
		if (dig_m.is_list || dig_m.item.type != SF_BYTES ||
		    b64_decode(got, sizeof(got), &n, dig_m.item.s, dig_m.item.len) != 0 ||
		    n != crypto_hash_sha256_BYTES)
			return reject("Content-Digest sha-256 is not base64 of 32 bytes");
		crypto_hash_sha256(want, (const unsigned char *)(body_len ? body : ""), body_len);
		if (sodium_memcmp(want, got, sizeof(want)) != 0)
			return reject("content-digest does not match the body");
		/* the base holds the field value with surrounding whitespace removed */
		dig_val = content_digest;
		dig_len = strlen(content_digest);
		while (dig_len && (*dig_val == ' ' || *dig_val == '\t')) {
			dig_val++;
			dig_len--;
		}
		while (dig_len && (dig_val[dig_len - 1] == ' ' || dig_val[dig_len - 1] == '\t'))
			dig_len--;
	}

	/* 4. time */
	{
		int64_t created = par[P_CREATED]->v.i;
		if (created > now + HTTPSIG_MAX_SKEW || created < now - HTTPSIG_MAX_SKEW)
			return troop_error_set(TROOP_EAUTH, "signature created %lld s from "
			    "server time (allowed: %d s)", (long long)(created > now ?
			    created - now : now - created), HTTPSIG_MAX_SKEW);
		if (par[P_EXPIRES] && now > par[P_EXPIRES]->v.i)
			return reject("signature expired (expires parameter)");
	}

	/* 5. signature */
	serialize_params(&params, &in_m);
	if (params.overflow)
		return reject("Signature-Input too long");
	base_build(&base, comps, ncomps, method, path, query ? query : "", dig_val, dig_len,
	    params.buf, params.len);
	if (base.overflow)
		return troop_error_set(TROOP_EAUTH, "request too long to verify (signature "
		    "base over %d bytes)", BASE_MAX);
	if (crypto_sign_verify_detached(sig, (const unsigned char *)base.buf, base.len,
	    pk) != 0)
		return reject("signature does not verify");

	/* 6. nonce: only now, so that only signed requests reach the cache */
	if (nonce_fn) {
		rc = nonce_fn(nonce_ctx, keyid, nonce, now);
		if (rc == TROOP_EAUTH)
			return reject("nonce already used (replayed request)");
		if (rc)
			return rc;
	}
	if (keyid_out)
		memcpy(keyid_out, keyid, TROOP_ID_LEN + 1);
	return 0;
}
