/*
 * encoding.c - base64 (RFC 4648 section 4, padded) and base64url
 * (section 5, unpadded) on top of libsodium's constant-time codecs.
 *
 * Decoding is strict: the whole input must be consumed, padding must be
 * exactly right for the variant, and the unused low bits of the last
 * character must be zero.  Together these make the encoding canonical: a
 * byte string has exactly one accepted text form, so a signed token cannot
 * be re-encoded into a different string that still verifies.
 */
#include "encoding.h"

#include <sodium.h>
#include <stdint.h>

#include "error.h"

/* Largest input the length formulas below handle without overflow. */
#define B64_MAX_IN ((SIZE_MAX - 3) / 4 * 3)

size_t b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

size_t b64url_len(size_t n)
{
	/* full groups give 4 chars; a tail of 1 byte gives 2, of 2 gives 3 */
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

static size_t encode(char *out, size_t outlen, const void *in, size_t n,
    size_t enclen, int variant)
{
	if (!out || n > B64_MAX_IN || outlen < enclen + 1 || (n > 0 && !in))
		return 0;
	/* sodium_bin2base64 aborts on a short buffer, hence the check above */
	sodium_bin2base64(out, outlen, (const unsigned char *)in, n, variant);
	return enclen;
}

size_t b64_encode(char *out, size_t outlen, const void *in, size_t n)
{
	return encode(out, outlen, in, n, b64_len(n), sodium_base64_VARIANT_ORIGINAL);
}

size_t b64url_encode(char *out, size_t outlen, const void *in, size_t n)
{
	return encode(out, outlen, in, n, b64url_len(n),
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static int decode(void *out, size_t outmax, size_t *outlen, const char *in,
    size_t inlen, int variant, size_t (*enclen)(size_t))
{
	const char *end = NULL;
	size_t n = 0;

	if (outlen)
		*outlen = 0;
	if (!in || (inlen > 0 && !out))
		return troop_error_set(TROOP_EINVAL, "invalid base64: no input");
	if (inlen == 0)
		return 0;
	if (sodium_base642bin((unsigned char *)out, outmax, in, inlen, NULL, &n,
	    &end, variant) != 0 || end != in + inlen)
		return troop_error_set(TROOP_EINVAL, "invalid base64: bad character, "
		    "padding or length, or longer than %zu bytes", outmax);
	/* libsodium already rejects non-zero trailing bits; the length check
	 * makes the canonical-form guarantee independent of that detail */
	if (enclen(n) != inlen)
		return troop_error_set(TROOP_EINVAL, "invalid base64: not in canonical form");
	if (outlen)
		*outlen = n;
	return 0;
}

int b64_decode(void *out, size_t outmax, size_t *outlen, const char *in, size_t inlen)
{
	return decode(out, outmax, outlen, in, inlen, sodium_base64_VARIANT_ORIGINAL, b64_len);
}

int b64url_decode(void *out, size_t outmax, size_t *outlen, const char *in, size_t inlen)
{
	return decode(out, outmax, outlen, in, inlen,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING, b64url_len);
}
