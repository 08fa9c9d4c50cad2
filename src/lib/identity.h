/*
 * identity.h - Ed25519 identities and account ids.
 *
 * An account id is the base64url (no padding) of the 32-byte Ed25519
 * public key: 43 characters.  Key files hold the 64-byte libsodium secret
 * key (seed || pk) as base64 text on one line; they are created with mode
 * 0600 in a directory created with 0700, and a key file that group or
 * others can read is refused.
 */
#ifndef TROOP_IDENTITY_H
#define TROOP_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

#define TROOP_ID_LEN 43  /* chars in an account id */
#define TROOP_PK_LEN 32
#define TROOP_SK_LEN 64

typedef struct troop_identity {
	unsigned char pk[TROOP_PK_LEN];
	unsigned char sk[TROOP_SK_LEN];
	char id[TROOP_ID_LEN + 1];
} troop_identity;

/* Make a fresh identity in memory. */
int identity_generate(troop_identity *out);

/* Load the key file at `path`, creating it (and its directory, 0700) if it
 * does not exist; *created tells which (may be NULL).  Returns 0, or
 * TROOP_EIO / TROOP_EINVAL / TROOP_EFORBIDDEN (file readable by others:
 * "identity.key is readable by others (mode 0644); run chmod 600 ...")
 * with a message. */
int identity_load_or_create(troop_identity *out, const char *path, bool *created);
/* Load only; TROOP_ENOTFOUND if missing. */
int identity_load(troop_identity *out, const char *path);
/* Write `id` to `path` (mode 0600, atomic rename). */
int identity_save(const troop_identity *id, const char *path);

/* "$TROOP_HOME/identity.key" (see config_troop_home) into buf. */
int identity_default_path(char *buf, size_t len);

/* Wipe the secret key (sodium_memzero). */
void identity_wipe(troop_identity *id);

/* Account id <-> public key.  decode returns TROOP_EINVAL unless `id` is
 * exactly 43 valid base64url chars. */
int account_id_encode(char out[TROOP_ID_LEN + 1], const unsigned char pk[TROOP_PK_LEN]);
int account_id_decode(unsigned char pk[TROOP_PK_LEN], const char *id);
/* First 8 chars of an id, for log lines ("AbCdEfGh"). */
void account_id_short(char out[9], const char *id);

#endif
