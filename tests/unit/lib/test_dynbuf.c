/*
 * test_dynbuf.c - the bounded buffer: growth, the limit (exactly max fits,
 * one more byte fails and leaves the content intact), addf, setlen, take
 * and reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dynbuf.h"
#include "error.h"

static void test_grow_and_limit(void **state)
{
	dynbuf b;
	char chunk[1000];

	(void)state;
	memset(chunk, 'x', sizeof chunk);
	dynbuf_init(&b, 10000);
	assert_string_equal(dynbuf_ptr(&b), "");
	assert_int_equal(dynbuf_len(&b), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(dynbuf_add(&b, chunk, sizeof chunk), 0);
	assert_int_equal(dynbuf_len(&b), 10000);
	assert_true(b.cap <= 10001);        /* never allocates past the limit */
	assert_int_equal(dynbuf_ptr(&b)[10000], '\0');
	/* one byte more fails and changes nothing */
	assert_int_equal(dynbuf_add(&b, "y", 1), TROOP_ETOOLARGE);
	assert_int_equal(dynbuf_len(&b), 10000);
	assert_int_equal(dynbuf_ptr(&b)[9999], 'x');
	assert_int_equal(dynbuf_addf(&b, "%d", 7), TROOP_ETOOLARGE);
	assert_int_equal(dynbuf_add(&b, "", 0), 0);
	dynbuf_free(&b);
	assert_null(b.buf);
	assert_int_equal(dynbuf_len(&b), 0);
	/* usable again after free, same limit */
	assert_int_equal(dynbuf_add(&b, "again", 5), 0);
	assert_string_equal(dynbuf_ptr(&b), "again");
	dynbuf_free(&b);
	dynbuf_free(NULL);
}

static void test_addf_setlen_take(void **state)
{
	dynbuf b;
	size_t len = 99;
	char *p;

	(void)state;
	dynbuf_init(&b, 32);
	assert_int_equal(dynbuf_addf(&b, "%s=%d;", "a", 1), 0);
	assert_int_equal(dynbuf_addf(&b, "%s=%d;", "bb", 22), 0);
	assert_string_equal(dynbuf_ptr(&b), "a=1;bb=22;");
	/* a format that does not fit appends nothing */
	assert_int_equal(dynbuf_addf(&b, "%030d", 5), TROOP_ETOOLARGE);
	assert_string_equal(dynbuf_ptr(&b), "a=1;bb=22;");
	dynbuf_setlen(&b, 4);
	assert_string_equal(dynbuf_ptr(&b), "a=1;");
	dynbuf_setlen(&b, 100);
	assert_string_equal(dynbuf_ptr(&b), "a=1;");
	assert_int_equal(dynbuf_add(&b, "bb=22;", 6), 0);
	/* binary content with a NUL */
	assert_int_equal(dynbuf_add(&b, "\0z", 2), 0);
	assert_int_equal(dynbuf_len(&b), 12);
	p = dynbuf_take(&b, &len);
	assert_int_equal(len, 12);
	assert_memory_equal(p, "a=1;bb=22;\0z", 13);
	free(p);
	assert_int_equal(dynbuf_len(&b), 0);
	assert_null(b.buf);
	/* taking an empty buffer gives an empty string */
	p = dynbuf_take(&b, &len);
	assert_non_null(p);
	assert_string_equal(p, "");
	assert_int_equal(len, 0);
	free(p);
	assert_int_equal(dynbuf_add(&b, "hello", 5), 0);
	dynbuf_reset(&b);
	assert_string_equal(dynbuf_ptr(&b), "");
	assert_int_equal(dynbuf_add(&b, "x", 1), 0);
	assert_string_equal(dynbuf_ptr(&b), "x");
	dynbuf_free(&b);
}

static void test_exact_limit_one(void **state)
{
	dynbuf b;

	(void)state;
	dynbuf_init(&b, 1);
	assert_int_equal(dynbuf_add(&b, "ab", 2), TROOP_ETOOLARGE);
	assert_null(b.buf);
	assert_int_equal(dynbuf_add(&b, "a", 1), 0);
	assert_int_equal(dynbuf_add(&b, "b", 1), TROOP_ETOOLARGE);
	assert_string_equal(dynbuf_ptr(&b), "a");
	dynbuf_free(&b);
}

/* dynbuf_reserve: room made once, so the appends that follow do not move
 * the content; no bytes added; capped at the limit, not failed by it. */
static void test_reserve(void **state)
{
	dynbuf b;
	const char *at;

	(void)state;
	dynbuf_init(&b, 1000);
	assert_int_equal(dynbuf_reserve(&b, 600), 0);
	assert_int_equal(dynbuf_len(&b), 0);
	at = dynbuf_ptr(&b);
	for (int i = 0; i < 60; i++)
		assert_int_equal(dynbuf_add(&b, "0123456789", 10), 0);
	assert_ptr_equal(dynbuf_ptr(&b), at);
	assert_int_equal(dynbuf_len(&b), 600);
	/* past the limit: room up to it, and the limit still holds */
	assert_int_equal(dynbuf_reserve(&b, 1u << 20), 0);
	assert_true(b.cap <= 1001);
	assert_int_equal(dynbuf_add(&b, "x", 1), 0);
	assert_int_equal(dynbuf_extend(&b, 400, &(void *){ NULL }), TROOP_ETOOLARGE);
	dynbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_and_limit),
		cmocka_unit_test(test_addf_setlen_take),
		cmocka_unit_test(test_exact_limit_one),
		cmocka_unit_test(test_reserve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
