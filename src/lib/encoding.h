/*
 * encoding.h - base64 / base64url codecs (libsodium variants) and
 * constant-time helpers.  All functions are pure and thread-safe.
 */
#ifndef TROOP_ENCODING_H
#define TROOP_ENCODING_H

#include <stddef.h>

/* Encoded length (without NUL) of n bytes. */
size_t b64_len(size_t n);     /* standard, padded */
size_t b64url_len(size_t n);  /* url-safe, no padding */

/* Encode n bytes into out (outlen must be >= *_len(n) + 1); NUL-terminated.
 * Returns the length written, or 0 if it does not fit. */
size_t b64_encode(char *out, size_t outlen, const void *in, size_t n);
size_t b64url_encode(char *out, size_t outlen, const void *in, size_t n);

/* Decode exactly `inlen` chars.  Rejects any character outside the
 * alphabet, wrong padding (b64: required; b64url: forbidden) and
 * non-canonical trailing bits.  Returns 0 with *outlen set, or
 * TROOP_EINVAL. */
int b64_decode(void *out, size_t outmax, size_t *outlen, const char *in, size_t inlen);
int b64url_decode(void *out, size_t outmax, size_t *outlen, const char *in, size_t inlen);

#endif
