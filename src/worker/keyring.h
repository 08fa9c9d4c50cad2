/*
 * keyring.h - the coordinator public keys a worker checks tickets with.
 *
 * Keys come from the coordinator's GET /public-key
 * ({"public_key":"<base64url>","kid","alg":"EdDSA"}).  The worker fetches
 * it at start (and from the heartbeat thread while it has none), and again
 * when a ticket names a kid it does not know, at most once per
 * KEYRING_REFETCH_S (DESIGN.md section 5), so a flood of forged kids
 * cannot make it hammer the coordinator.  Keys are never dropped (a
 * network of coordinators may rotate keys; old tickets stay checkable
 * until they expire); at most KEYRING_MAX keys are kept, the oldest going
 * first.
 *
 * Thread-safe: proxy threads verify while others add keys.
 */
#ifndef TROOP_WORKER_KEYRING_H
#define TROOP_WORKER_KEYRING_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ticket.h"

#define KEYRING_MAX 8
#define KEYRING_REFETCH_S 60
#define KEYRING_REPLY_MAX 16384   /* bytes of a /public-key reply */

typedef struct keyring keyring;
typedef struct http_client http_client;

/* New empty keyring.  Returns 0 or TROOP_ENOMEM. */
int keyring_new(keyring **out);
void keyring_free(keyring *k);

/* Parse a /public-key reply: alg must be "EdDSA", public_key 32 bytes of
 * base64url, kid the ticket_kid of that key.  Returns 0 or TROOP_EINVAL
 * naming the field.  Pure. */
int keyring_parse(ticket_key *out, const json_t *body);

/* Add a key (a kid already present is replaced).  Returns 0. */
int keyring_add(keyring *k, const ticket_key *key);

/* Keys known. */
size_t keyring_count(keyring *k);

/* GET <coordinator>/public-key with the blocking client and add the key.
 * Returns 0, TROOP_EUPSTREAM / TROOP_ETIMEOUT (coordinator unreachable),
 * or TROOP_EINVAL (bad reply), message set.  Records the time of the try
 * for keyring_refetch_due. */
int keyring_fetch(keyring *k, http_client *c, const char *coordinator);

/* ticket_verify against the known keys.  Returns as ticket_verify
 * (TROOP_ENOKEY when the kid is unknown). */
int keyring_verify(keyring *k, ticket_claims *out, const char *token, int64_t now);

/* Whether a refetch for an unknown kid may start now: true at most once
 * per KEYRING_REFETCH_S (the call that returns true claims the slot). */
bool keyring_refetch_due(keyring *k, int64_t now);

#endif
