/*
 * keyring.h - the coordinator public keys a worker checks tickets with.
 *
 * Keys come from the coordinator's key set (GET /.well-known/jwks.json:
 * every key it publishes; during a rotation the next and the previous key
 * too), or from GET /public-key on a coordinator without one.  The worker
 * fetches them at start (and from the heartbeat thread while it has none),
 * when a heartbeat reply names a kid it does not know (a rotation: the new
 * key is published before it signs), and when a ticket names a kid it does
 * not know, at most once per
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

/* Whether the ring holds the key named `kid`. */
bool keyring_has(keyring *k, const char *kid);

#define KEYRING_SET_PATH "/.well-known/jwks.json"

/* Add the keys of a coordinator's key set (GET /.well-known/jwks.json:
 * every key it publishes, the next and the previous one during a
 * rotation) or of its GET /public-key reply (one key).  0, or
 * TROOP_EINVAL (bad reply, nothing added), message set. */
int keyring_add_reply(keyring *k, const json_t *body);

/* GET <coordinator>/.well-known/jwks.json (or, from a coordinator that has
 * none, /public-key) with the blocking client and add the keys.
 * Returns 0, TROOP_EUPSTREAM / TROOP_ETIMEOUT (coordinator unreachable),
 * or TROOP_EINVAL (bad reply), message set.  (The fetches at start and
 * while no key is known do not count against the unknown-kid limit.) */
int keyring_fetch(keyring *k, http_client *c, const char *coordinator);

/* ticket_verify against the known keys.  Returns as ticket_verify
 * (TROOP_ENOKEY when the kid is unknown). */
int keyring_verify(keyring *k, ticket_claims *out, const char *token, int64_t now);

/* Whether a refetch for an unknown kid may start now: true at most once
 * per KEYRING_REFETCH_S (the call that returns true claims the slot; the
 * first one is always allowed). */
bool keyring_refetch_due(keyring *k, int64_t now);

#endif
