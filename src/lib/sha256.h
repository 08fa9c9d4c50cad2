/*
 * sha256.h - streaming SHA-256 for the reply digests that every job's
 * bytes go through (the worker's receipt, the client's delivery report).
 *
 * On x86-64 processors with the SHA extensions it runs the compression
 * function on them (about five times libsodium's portable code here);
 * elsewhere it is libsodium's crypto_hash_sha256.  The digest is the same
 * either way: only the speed differs.  Which one runs is chosen once per
 * process (sha256_accelerated says which).
 *
 * A sha256_ctx is plain data: copying it copies the hash so far (to take
 * a digest and keep going).  Not thread-safe per context; distinct
 * contexts may be used from any threads.
 */
#ifndef TROOP_SHA256_H
#define TROOP_SHA256_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

typedef struct {
	bool ni;                        /* the SHA extensions' state below */
	union {
		crypto_hash_sha256_state sodium;
		struct {
			uint32_t h[8];
			uint64_t len;           /* bytes hashed so far */
			unsigned char buf[64];
			size_t nbuf;
		} x;
	} u;
} sha256_ctx;

/* Start a hash. */
void sha256_init(sha256_ctx *c);

/* Add len bytes (data may be NULL when len is 0). */
void sha256_update(sha256_ctx *c, const void *data, size_t len);

/* The digest of everything added, into out; c must be initialised again
 * before it is used again (copy it first to keep going). */
void sha256_final(sha256_ctx *c, unsigned char out[SHA256_BYTES]);

/* Whether this process uses the processor's SHA extensions. */
bool sha256_accelerated(void);

/* Tests and benchmarks: force the portable path (false) or allow the
 * extensions again where the processor has them (true).  Affects contexts
 * initialised afterwards.  Not thread-safe with concurrent sha256_init. */
void sha256_allow_accel(bool allow);

#endif
