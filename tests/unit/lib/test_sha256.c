/*
 * test_sha256.c - the reply digests' SHA-256 (sha256.h): FIPS 180-4
 * vectors, and the same digest as libsodium for every length up to three
 * blocks and more, fed whole, byte by byte and in random pieces, on the
 * processor's SHA extensions (where it has them) and on the portable path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "sha256.h"

static void hex(char out[65], const unsigned char h[32])
{
	sodium_bin2hex(out, 65, h, 32);
}

static void digest(char out[65], const void *p, size_t n)
{
	sha256_ctx c;
	unsigned char h[32];

	sha256_init(&c);
	sha256_update(&c, p, n);
	sha256_final(&c, h);
	hex(out, h);
}

static void check_vectors(void)
{
	static const struct {
		const char *in, *out;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
		  "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
		  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
	};
	char got[65];
	sha256_ctx c;
	unsigned char h[32], a[1000];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		digest(got, v[i].in, strlen(v[i].in));
		assert_string_equal(got, v[i].out);
	}
	/* one million 'a' */
	memset(a, 'a', sizeof(a));
	sha256_init(&c);
	for (int i = 0; i < 1000; i++)
		sha256_update(&c, a, sizeof(a));
	sha256_final(&c, h);
	hex(got, h);
	assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void check_against_sodium(void)
{
	unsigned char buf[1200], want[32], got[32];
	uint32_t seed = 7;

	randombytes_buf(buf, sizeof(buf));
	for (size_t n = 0; n <= sizeof(buf); n += n < 200 ? 1 : 37) {
		sha256_ctx c, copy;

		crypto_hash_sha256(want, buf, n);
		/* whole */
		sha256_init(&c);
		sha256_update(&c, buf, n);
		sha256_final(&c, got);
		assert_memory_equal(got, want, 32);
		/* byte by byte, and a copy taken half way goes on alike */
		sha256_init(&c);
		for (size_t i = 0; i < n; i++) {
			sha256_update(&c, buf + i, 1);
			if (i == n / 2)
				copy = c;
		}
		sha256_final(&c, got);
		assert_memory_equal(got, want, 32);
		if (n > 0) {
			sha256_update(&copy, buf + n / 2 + 1, n - n / 2 - 1);
			sha256_final(&copy, got);
			assert_memory_equal(got, want, 32);
		}
		/* random pieces */
		sha256_init(&c);
		for (size_t i = 0; i < n; ) {
			size_t k;

			seed = seed * 1103515245u + 12345u;
			k = (seed >> 16) % 150;
			if (k > n - i)
				k = n - i;
			sha256_update(&c, buf + i, k);
			i += k;
		}
		sha256_final(&c, got);
		assert_memory_equal(got, want, 32);
	}
}

static void test_accelerated(void **state)
{
	(void)state;
	sha256_allow_accel(true);
	if (!sha256_accelerated())
		print_message("no SHA extensions on this processor: the portable path only\n");
	check_vectors();
	check_against_sodium();
}

static void test_portable(void **state)
{
	(void)state;
	sha256_allow_accel(false);
	assert_false(sha256_accelerated());
	check_vectors();
	check_against_sodium();
	sha256_allow_accel(true);
}

static int setup(void **state)
{
	(void)state;
	return sodium_init() < 0 ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accelerated),
		cmocka_unit_test(test_portable),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
