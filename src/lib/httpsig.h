/*
 * httpsig.h - HTTP Message Signatures (RFC 9421) with Content-Digest
 * (RFC 9530), in the profile of DESIGN.md section 4:
 *
 *   Content-Digest: sha-256=:<b64 SHA-256(body)>:
 *   Signature-Input: troop=("@method" "@path" "@query" "content-digest");created=N;nonce="<b64url 16 bytes>";keyid="<account id>";alg="ed25519"
 *   Signature: troop=:<b64 64-byte Ed25519 signature>:
 *
 * Requests without a body leave out content-digest (from the header and
 * from the covered components).  The verifier accepts the components in
 * the order the signer listed them but requires exactly this set (for a
 * request without a body, content-digest may still be covered, and must
 * then match the empty body).
 *
 * Verifier details: the three headers are parsed as RFC 8941 dictionaries
 * (at most 4096 bytes each) and only the "troop" member is used (other
 * labels may be present; "troop" twice is refused).  Parameters created,
 * nonce, keyid and alg are required; expires (checked) and tag (ignored)
 * are allowed; anything else is refused.  The nonce must be 8 to 64 chars
 * of [A-Za-z0-9+/=_.~-].  "@signature-params" is rebuilt in canonical
 * RFC 8941 form, so optional whitespace in Signature-Input is harmless.
 * `path` and `query` must be as sent on the wire (not percent-decoded);
 * one containing spaces or control characters is refused.
 *
 * Thread-safe; the nonce cache is internally locked.
 */
#ifndef TROOP_HTTPSIG_H
#define TROOP_HTTPSIG_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"

#define HTTPSIG_MAX_SKEW 60      /* seconds either way */

typedef struct {
	char content_digest[64];     /* "" when there is no body */
	char signature_input[256];
	char signature[128];
} httpsig_headers;

/* Sign a request.  `query` is the raw query string without '?' ("" or
 * NULL for none).  `now` is unix seconds. */
int httpsig_sign(httpsig_headers *out, const troop_identity *id, const char *method,
    const char *path, const char *query, const void *body, size_t body_len,
    int64_t now);

/* Nonce check-and-record: return 0 if (keyid, nonce) was not seen within
 * the window and record it, TROOP_EAUTH if it was, or another troop_err if
 * the store failed.  Backends: the in-process cache below, or the
 * coordinator's registry. */
typedef int (*httpsig_nonce_fn)(void *ctx, const char *keyid, const char *nonce, int64_t now);

/* Verify.  Header values may be NULL (missing).  On success writes the
 * signer's account id into keyid_out and returns 0; otherwise TROOP_EAUTH
 * with a message saying which check failed ("content-digest does not
 * match the body", "signature created 75 s from server time", "nonce
 * already used", "signature does not verify", "missing covered component
 * \"@query\"", ...).  `nonce_fn` may be NULL (no replay check). */
int httpsig_verify(char keyid_out[TROOP_ID_LEN + 1], const char *method,
    const char *path, const char *query, const void *body, size_t body_len,
    const char *content_digest, const char *signature_input, const char *signature,
    int64_t now, httpsig_nonce_fn nonce_fn, void *nonce_ctx);

#endif
