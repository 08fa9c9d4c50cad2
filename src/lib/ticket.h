/*
 * ticket.h - authorization tickets: compact JWS (RFC 7515/7519) with alg
 * EdDSA (RFC 8037), signed by the coordinator's Ed25519 key
 * (DESIGN.md section 5).
 *
 *   header  {"alg":"EdDSA","typ":"JWT","kid":"<kid>"}
 *   claims  iss, sub, aud ("troop-worker"), target_node, model, jti, iat,
 *           exp, max_seconds
 *
 * The kid of a key is the base64url of the first 12 bytes of SHA-256(pk)
 * (16 chars).  Verification here checks the structure, alg (exactly
 * EdDSA), kid, signature, times and aud; the worker then checks
 * target_node, model and jti itself.  Thread-safe.
 */
#ifndef TROOP_TICKET_H
#define TROOP_TICKET_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"

#define TICKET_AUD "troop-worker"
#define TICKET_MAX_LEN 4096
#define TICKET_KID_LEN 16
#define TICKET_SKEW 30
/* Bounds on every time claim, so that no sum of them can overflow:
 * iat and exp lie in [0, TICKET_TIME_MAX] (the year 36812), exp - iat is
 * at most the longest ticket TTL a coordinator can be configured with
 * (--ticket-ttl), max_seconds at most its largest --max-seconds. */
#define TICKET_TIME_MAX ((int64_t)1 << 40)
#define TICKET_TTL_MAX 86400
#define TICKET_MAX_SECONDS 86400

typedef struct {
	char iss[128];
	char sub[TROOP_ID_LEN + 1];
	char aud[32];
	char target_node[TROOP_ID_LEN + 1];
	char model[256];
	char jti[32];
	int64_t iat;
	int64_t exp;
	int64_t max_seconds;
} ticket_claims;

typedef struct {
	char kid[TICKET_KID_LEN + 1];
	unsigned char pk[TROOP_PK_LEN];
} ticket_key;

/* The kid of a public key. */
void ticket_kid(char out[TICKET_KID_LEN + 1], const unsigned char pk[TROOP_PK_LEN]);

/* A fresh jti: 16 random bytes, base64url (22 chars). */
void ticket_new_jti(char out[32]);

/* Sign `claims` with `key` (aud is forced to TICKET_AUD when empty).
 * *out is a malloc'd NUL-terminated token; caller frees. */
int ticket_sign(char **out, const ticket_claims *claims, const troop_identity *key);

/* Verify `token` against the known keys.  Returns 0 and fills *out, or
 *   TROOP_ENOKEY  the kid names no known key (caller may refetch once),
 *   TROOP_ETICKET anything else, with the reason in troop_error_msg():
 *                 malformed, alg not EdDSA, bad signature, expired, not yet
 *                 valid, wrong aud, too long.
 * Checked in this order: length <= TICKET_MAX_LEN; exactly three strict
 * base64url segments (no padding, canonical); the header is a JSON object
 * with alg exactly "EdDSA", typ (if present) "JWT", a kid, and no other
 * members; the kid names one of `keys`; the Ed25519 signature over the
 * first two segments as received; then the claims: iss, sub, aud,
 * target_node, model, jti present as non-empty strings that fit the
 * fields of ticket_claims (sub and target_node valid account ids), iat,
 * exp, max_seconds integers with 0 <= iat < exp <= TICKET_TIME_MAX,
 * exp - iat <= TICKET_TTL_MAX and 0 < max_seconds <= TICKET_MAX_SECONDS;
 * aud equal to TICKET_AUD.  Times, with skew S = TICKET_SKEW: the ticket is valid
 * iff  iat <= now + S  and  now < exp + S.  Unknown claims are ignored.
 * On failure *out is zeroed. */
int ticket_verify(ticket_claims *out, const char *token, const ticket_key *keys,
    size_t nkeys, int64_t now);

#endif
