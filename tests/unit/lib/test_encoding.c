/*
 * test_encoding.c - base64 / base64url: RFC 4648 vectors, round trips,
 * buffer limits, and rejection of every non-canonical or foreign form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "encoding.h"
#include "error.h"

static const struct {
	const char *in, *b64, *url;
} vectors[] = {
	{ "", "", "" },
	{ "f", "Zg==", "Zg" },
	{ "fo", "Zm8=", "Zm8" },
	{ "foo", "Zm9v", "Zm9v" },
	{ "foob", "Zm9vYg==", "Zm9vYg" },
	{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
	{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	{ "\xfb\xff\xfe", "+//+", "-__-" },
};

static void test_rfc4648_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char out[32];
		unsigned char bin[32];
		size_t n = 99, len = strlen(vectors[i].in);

		assert_int_equal(b64_encode(out, sizeof(out), vectors[i].in, len),
		    strlen(vectors[i].b64));
		assert_string_equal(out, vectors[i].b64);
		assert_int_equal(b64url_encode(out, sizeof(out), vectors[i].in, len),
		    strlen(vectors[i].url));
		assert_string_equal(out, vectors[i].url);

		assert_int_equal(b64_decode(bin, sizeof(bin), &n, vectors[i].b64,
		    strlen(vectors[i].b64)), 0);
		assert_int_equal(n, len);
		assert_memory_equal(bin, vectors[i].in, len);
		n = 99;
		assert_int_equal(b64url_decode(bin, sizeof(bin), &n, vectors[i].url,
		    strlen(vectors[i].url)), 0);
		assert_int_equal(n, len);
		assert_memory_equal(bin, vectors[i].in, len);
	}
}

static void test_lengths_match_libsodium(void **state)
{
	(void)state;
	for (size_t n = 0; n < 200; n++) {
		assert_int_equal(b64_len(n),
		    sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL) - 1);
		assert_int_equal(b64url_len(n),
		    sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1);
	}
	assert_int_equal(b64url_len(32), 43);
	assert_int_equal(b64_len(64), 88);
}

static void test_round_trip_random(void **state)
{
	unsigned char in[100], bin[100];
	char enc[160];
	size_t n;

	(void)state;
	for (size_t len = 0; len <= sizeof(in); len++) {
		randombytes_buf(in, len);
		assert_int_equal(b64_encode(enc, sizeof(enc), in, len), b64_len(len));
		assert_int_equal(b64_decode(bin, sizeof(bin), &n, enc, strlen(enc)), 0);
		assert_int_equal(n, len);
		assert_memory_equal(bin, in, len);
		assert_int_equal(b64url_encode(enc, sizeof(enc), in, len), b64url_len(len));
		assert_null(strpbrk(enc, "+/="));
		assert_int_equal(b64url_decode(bin, sizeof(bin), &n, enc, strlen(enc)), 0);
		assert_int_equal(n, len);
		assert_memory_equal(bin, in, len);
	}
}

static void test_encode_buffer_limit(void **state)
{
	char out[9];

	(void)state;
	/* "foobar" needs 8 chars + NUL */
	assert_int_equal(b64_encode(out, 8, "foobar", 6), 0);
	assert_int_equal(b64_encode(out, 9, "foobar", 6), 8);
	assert_int_equal(b64url_encode(out, 3, "fo", 2), 0);
	assert_int_equal(b64url_encode(out, 4, "fo", 2), 3);
	assert_string_equal(out, "Zm8");
}

static void expect_reject(int (*dec)(void *, size_t, size_t *, const char *, size_t),
    const char *in)
{
	unsigned char bin[64];
	size_t n = 77;

	troop_error_clear();
	assert_int_equal(dec(bin, sizeof(bin), &n, in, strlen(in)), TROOP_EINVAL);
	assert_int_equal(n, 0);
	assert_true(strlen(troop_error_msg()) > 0);
}

static void test_b64_rejects(void **state)
{
	(void)state;
	expect_reject(b64_decode, "Zg");        /* padding required */
	expect_reject(b64_decode, "Zg=");       /* short padding */
	expect_reject(b64_decode, "Zg===");     /* extra padding */
	expect_reject(b64_decode, "Zh==");      /* non-zero trailing bits */
	expect_reject(b64_decode, "Zm9=");      /* non-zero trailing bits */
	expect_reject(b64_decode, "Z===");      /* impossible length */
	expect_reject(b64_decode, "Zm9v!");     /* outside the alphabet */
	expect_reject(b64_decode, "-__-");      /* url alphabet */
	expect_reject(b64_decode, "Zm9v ");     /* whitespace */
	expect_reject(b64_decode, " Zm9v");
	expect_reject(b64_decode, "Zm\n9v");
	expect_reject(b64_decode, "Zg==Zg==");  /* data after padding */
}

static void test_b64url_rejects(void **state)
{
	(void)state;
	expect_reject(b64url_decode, "Zg==");   /* padding forbidden */
	expect_reject(b64url_decode, "Zg=");
	expect_reject(b64url_decode, "Zh");     /* non-zero trailing bits */
	expect_reject(b64url_decode, "Zm9");
	expect_reject(b64url_decode, "Z");      /* impossible length */
	expect_reject(b64url_decode, "Zm9vY");
	expect_reject(b64url_decode, "+//+");   /* standard alphabet */
	expect_reject(b64url_decode, "Zm9v.");
	expect_reject(b64url_decode, "Zm9v\t");
}

static void test_decode_is_length_bounded(void **state)
{
	unsigned char bin[8];
	size_t n;

	(void)state;
	/* exactly `inlen` chars are read: the rest of the string is ignored */
	assert_int_equal(b64url_decode(bin, sizeof(bin), &n, "Zm9vYmFy", 4), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(bin, "foo", 3);
	/* an embedded NUL inside the length is a bad character */
	assert_int_equal(b64_decode(bin, sizeof(bin), &n, "Zm9v\0mFy", 8), TROOP_EINVAL);
	/* output too small */
	assert_int_equal(b64_decode(bin, 5, &n, "Zm9vYmFy", 8), TROOP_EINVAL);
	assert_int_equal(b64_decode(bin, 6, &n, "Zm9vYmFy", 8), 0);
	assert_int_equal(n, 6);
	/* empty input decodes to nothing */
	assert_int_equal(b64url_decode(bin, sizeof(bin), &n, "", 0), 0);
	assert_int_equal(n, 0);
}

static int setup(void **state)
{
	(void)state;
	return sodium_init() < 0 ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_lengths_match_libsodium),
		cmocka_unit_test(test_round_trip_random),
		cmocka_unit_test(test_encode_buffer_limit),
		cmocka_unit_test(test_b64_rejects),
		cmocka_unit_test(test_b64url_rejects),
		cmocka_unit_test(test_decode_is_length_bounded),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
