/*
 * ticket_keys.h - the coordinator's ring of ticket signing keys, so that
 * the key can be rotated without refusing a ticket in flight
 * (docs/OPERATING.md "Rotating the ticket key").
 *
 * Each key has a time from which it signs and, once a newer key has taken
 * over, a time at which it retires.  At any moment:
 *   - the signer is the newest key whose activation time has come;
 *   - every key not yet retired is published (GET /.well-known/jwks.json),
 *     so that workers learn a new key before it signs (its activation is
 *     --ticket-key-lead seconds after the rotation; heartbeat replies name
 *     the newest published kid, and a worker that does not know it fetches
 *     the key set) and keep the old one until every ticket it signed has
 *     expired (it retires --ticket-ttl seconds, plus a minute, after its
 *     successor activates).
 *
 * The ring starts as the one key the coordinator has always had (its key
 * file with SQLite, the ledger's `ticket_signing_key` with PostgreSQL).  A
 * rotation stores the whole ring in the ledger's kv table under
 * `ticket_keyring` with a compare and set, so that coordinators sharing a
 * PostgreSQL ledger agree on it; each reloads it every sweep (2 s).
 *
 * Thread-safe: one mutex; the signer is handed out as a copy.
 */
#ifndef TROOP_TICKET_KEYS_H
#define TROOP_TICKET_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "ledger.h"
#include "ticket.h"

#define TICKET_KEYS_MAX 4
#define TICKET_KEYS_KV "ticket_keyring"
#define TICKET_KEYS_RETIRE_MARGIN_S 60

typedef struct ticket_keys ticket_keys;

/* A key as the world may see it. */
typedef struct {
	ticket_key pub;            /* kid + public key */
	int64_t activates_at;      /* unix seconds it signs from (0: always) */
	int64_t retires_at;        /* unix seconds it stops being published (0: never) */
} ticket_keys_pub;

/* A ring of one key, `initial`, that signs from the start and never
 * retires.  0, or TROOP_ENOMEM. */
int ticket_keys_new(ticket_keys **out, const troop_identity *initial);

/* Wipe the secret keys and free.  NULL is a no-op. */
void ticket_keys_free(ticket_keys *k);

/* Replace what the ring holds with the ring stored in the ledger, if one
 * is stored (nothing changes otherwise).  0, or an error (a stored ring
 * that does not parse is TROOP_EINVAL and changes nothing). */
int ticket_keys_reload(ticket_keys *k, ledger_conn *db);

/* A copy of the key that signs at `now`; the caller wipes it
 * (identity_wipe) when done. */
void ticket_keys_signer(ticket_keys *k, troop_identity *out, int64_t now);

/* The keys published at `now` (not retired), oldest first: at most `cap`
 * into out; returns how many. */
size_t ticket_keys_published(ticket_keys *k, ticket_keys_pub *out, size_t cap, int64_t now);

/* Rotate: a new key that signs from now + lead; the key signing until
 * then retires ttl + TICKET_KEYS_RETIRE_MARGIN_S seconds after that.  The
 * ring is written to the ledger first (compare and set), then held.
 * *next (may be NULL) gets the new key.  TROOP_ECONFLICT when a rotation
 * is already under way (a key waits for its activation) or another
 * coordinator rotated at the same moment; TROOP_EINVAL for a lead or ttl
 * out of range. */
int ticket_keys_rotate(ticket_keys *k, ledger_conn *db, int64_t now, int64_t lead,
    int64_t ttl, ticket_keys_pub *next);

/* ---- the stored form, for tests --------------------------------------------- */

/* The ring's text: "troop-ticket-keys 1\n" then one line per key, "SK
 * ACTIVATES RETIRES\n" (SK: the 64-byte secret key in standard base64).
 * Writes at most cap bytes, NUL-terminated; 0 or TROOP_ETOOLARGE. */
int ticket_keys_encode(const ticket_keys *k, char *out, size_t cap);

/* Parse `text` into a ring (replacing what k holds).  0, or TROOP_EINVAL
 * naming what is wrong (k unchanged). */
int ticket_keys_decode(ticket_keys *k, const char *text);

#endif
