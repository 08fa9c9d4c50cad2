/*
 * seal_keys.h - the worker's X25519 sealing keys (seal.h): the current key
 * pair, whose signed statement the heartbeat carries, and the previous one,
 * which still opens requests for a while after a rotation so that jobs
 * authorized just before it are served.
 *
 * The keys live in one file, 0600, in the worker's state directory
 * ($TROOP_HOME/worker/seal.key, next to the replay journal), so a restarted
 * worker keeps the key clients were told about.  The file holds up to two
 * lines, current first:
 *     <pk base64url> <sk base64url> <not_before> <not_after>\n
 * written whole to a temporary file, fsync'd and renamed over the old one.
 *
 * Rotation: a key is current for `rotate_s` seconds from its not_before;
 * its statement is valid for rotate_s + SEAL_KEYS_OVERLAP_S, and once
 * replaced it keeps opening requests until its not_after.  A key whose
 * statement has expired is never used.
 *
 * Thread-safe: the heartbeat thread rotates while proxy threads look keys
 * up (one mutex, held for microseconds except while the file is written on
 * rotation).
 */
#ifndef TROOP_WORKER_SEAL_KEYS_H
#define TROOP_WORKER_SEAL_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "seal.h"

#define SEAL_KEYS_DEFAULT_ROTATE_S (24 * 3600)
#define SEAL_KEYS_MIN_ROTATE_S 60
/* how long a replaced key still opens requests (and its statement stays
 * valid): the coordinator hands out the statement of the last heartbeat,
 * and a ticket is used within seconds of being issued */
#define SEAL_KEYS_OVERLAP_S 900

typedef struct seal_keys seal_keys;

/* Load the keys from `path` (created 0600 with a fresh key when missing;
 * its directory is created 0700), rotating at once when the current key is
 * due.  `node` signs the statements (copied).  rotate_s >=
 * SEAL_KEYS_MIN_ROTATE_S.  Returns 0, TROOP_EINVAL (bad rotate_s, or a
 * corrupt key file: refused rather than replaced, so that a damaged file
 * is noticed), TROOP_EIO or TROOP_ENOMEM. */
int seal_keys_open(seal_keys **out, const char *path, const troop_identity *node,
    int64_t rotate_s, int64_t now);

/* The signed statement of the current key into out (at least
 * SEAL_STMT_MAX bytes), rotating first when the current key is due (the
 * new key is saved before it is used; when saving fails the old key stays
 * current and the failure is logged).  Returns 0 or TROOP_EINVAL. */
int seal_keys_statement(seal_keys *k, char *out, size_t len, int64_t now);

/* The key pair whose public key is `pk`, the current or the previous one,
 * while its validity lasts at `now`.  Returns 0, or TROOP_ENOKEY (unknown,
 * or expired: the client must authorize again). */
int seal_keys_find(seal_keys *k, seal_keypair *out, const uint8_t pk[SEAL_PK_LEN],
    int64_t now);

/* The current public key (for tests and logs). */
void seal_keys_current(seal_keys *k, uint8_t pk[SEAL_PK_LEN]);

/* Wipes the keys.  NULL is a no-op. */
void seal_keys_free(seal_keys *k);

#endif
