/*
 * test_jsonw.c - the streaming JSON writer: strings and reals written as
 * json_dumps(JSON_COMPACT) writes them (byte for byte), commas in nested
 * objects and arrays, raw members, bytes that are not UTF-8, and the
 * sticky error when the buffer's limit is reached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "dynbuf.h"
#include "error.h"
#include "jsonw.h"

/* jansson's text for v (stolen) */
static char *dumped(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	json_decref(v);
	assert_non_null(s);
	return s;
}

static void test_strings_as_jansson(void **state)
{
	static const char *const strs[] = { "", "plain", "quote \" backslash \\ slash /",
		"\b\f\n\r\t", "\x01\x02\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x92",
		"</script><b>", "\xe2\x80\xa8 line sep", "tab\tand\x0bvtab" };

	(void)state;
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		dynbuf b;
		jsonw w;
		char *want = dumped(json_string(strs[i]));

		dynbuf_init(&b, 4096);
		jsonw_init(&w, &b);
		jsonw_str(&w, strs[i]);
		assert_int_equal(jsonw_error(&w), 0);
		assert_string_equal(dynbuf_ptr(&b), want);
		free(want);
		dynbuf_free(&b);
	}
}

/* Keys as jansson writes them: plain ones (written in one piece with
 * their comma and colon) and ones that need escaping, first in their
 * object and after another member; ints past what printf-free formatting
 * might get wrong. */
static void test_keys_as_jansson(void **state)
{
	static const char *const keys[] = { "plain", "", "quote \" in", "\n first",
		"caf\xc3\xa9", "tab\tkey", "x" };
	static const int64_t ints[] = { 0, 7, -7, 10, -10, 999999999999, INT64_MAX, INT64_MIN,
		INT64_MIN + 1 };

	(void)state;
	for (size_t first = 0; first < sizeof(keys) / sizeof(keys[0]); first++) {
		json_t *want = json_object();
		dynbuf b;
		jsonw w;
		char *ws;

		dynbuf_init(&b, 4096);
		jsonw_init(&w, &b);
		jsonw_obj_begin(&w);
		/* keys[first] first, then the others, each with its own int */
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			size_t i = (first + k) % (sizeof(keys) / sizeof(keys[0]));
			int64_t v = ints[i % (sizeof(ints) / sizeof(ints[0]))];

			jsonw_key(&w, keys[i]);
			jsonw_int(&w, v);
			json_object_set_new(want, keys[i], json_integer(v));
		}
		jsonw_obj_end(&w);
		assert_int_equal(jsonw_error(&w), 0);
		ws = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER);
		assert_non_null(ws);
		assert_string_equal(dynbuf_ptr(&b), ws);
		free(ws);
		json_decref(want);
		dynbuf_free(&b);
	}
}

static void test_numbers_as_jansson(void **state)
{
	static const double reals[] = { 0.0, -0.0, 1.0, 0.5, 1.0 / 3.0, 2.5e-7, 1e20, 1e300,
		-123456.789, 0.1, 100.0, 4.9e-324, 1.7976931348623157e308, 12345678901234567.0,
		-0.5, 0.0009765625, 1048575.9990234375, 1048576.0, -1048575.0, 0.75, 1e15,
		9007199254740993.0, 0.25, 1.5, 2.0, 1e-5 };
	static const int64_t ints[] = { 0, -1, 42, INT64_MAX, INT64_MIN };

	(void)state;
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		dynbuf b;
		jsonw w;
		char *want = dumped(json_real(reals[i]));

		dynbuf_init(&b, 4096);
		jsonw_init(&w, &b);
		jsonw_real(&w, reals[i]);
		assert_string_equal(dynbuf_ptr(&b), want);
		free(want);
		dynbuf_free(&b);
	}
	/* whole numbers, multiples of 2^-10 (the short path) and any other */
	srand(7);
	for (int i = 0; i < 200000; i++) {
		double v;
		dynbuf b;
		jsonw w;
		char *want;

		switch (i % 4) {
		case 0: v = (double)(rand() % 2000001 - 1000000); break;
		case 1: v = (double)(rand() % 2000001 - 1000000) / 1024.0; break;
		case 2: v = (double)rand() / RAND_MAX; break;
		default: v = ldexp((double)rand() / RAND_MAX, rand() % 80 - 40); break;
		}
		want = dumped(json_real(v));
		dynbuf_init(&b, 4096);
		jsonw_init(&w, &b);
		jsonw_real(&w, v);
		if (strcmp(dynbuf_ptr(&b), want) != 0)
			fail_msg("%.17g: %s, jansson %s", v, dynbuf_ptr(&b), want);
		free(want);
		dynbuf_free(&b);
	}
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		dynbuf b;
		jsonw w;
		char *want = dumped(json_integer(ints[i]));

		dynbuf_init(&b, 4096);
		jsonw_init(&w, &b);
		jsonw_int(&w, ints[i]);
		assert_string_equal(dynbuf_ptr(&b), want);
		free(want);
		dynbuf_free(&b);
	}
}

static void test_nesting_and_raw(void **state)
{
	dynbuf b;
	jsonw w;
	json_t *want = json_pack("{s:[i, {}, [], s, n, b], s:{s:f, s:{s:b}}, s:[]}",
	    "a", 1, "x", false, "c", "d", 1.5, "e", "f", true, "g");
	json_t *got;
	char *ws;

	(void)state;
	dynbuf_init(&b, 4096);
	jsonw_init(&w, &b);
	jsonw_obj_begin(&w);
	jsonw_key(&w, "a");
	jsonw_arr_begin(&w);
	jsonw_int(&w, 1);
	jsonw_obj_begin(&w);
	jsonw_obj_end(&w);
	jsonw_arr_begin(&w);
	jsonw_arr_end(&w);
	jsonw_str(&w, "x");
	jsonw_null(&w);
	jsonw_bool(&w, false);
	jsonw_arr_end(&w);
	jsonw_key(&w, "c");
	jsonw_obj_begin(&w);
	jsonw_raw_members(&w, "\"d\":1.5", 7);
	jsonw_key(&w, "e");
	jsonw_raw(&w, "{\"f\":true}", 10);
	jsonw_obj_end(&w);
	jsonw_key(&w, "g");
	jsonw_arr_begin(&w);
	jsonw_arr_end(&w);
	jsonw_obj_end(&w);
	assert_int_equal(jsonw_error(&w), 0);
	ws = dumped(json_incref(want));
	assert_string_equal(dynbuf_ptr(&b), ws);
	got = json_loads(dynbuf_ptr(&b), 0, NULL);
	assert_non_null(got);
	assert_true(json_equal(got, want));
	free(ws);
	json_decref(got);
	json_decref(want);
	dynbuf_free(&b);
}

static void test_not_utf8(void **state)
{
	dynbuf b;
	jsonw w;
	json_t *got;

	(void)state;
	dynbuf_init(&b, 4096);
	jsonw_init(&w, &b);
	/* a lone continuation byte, an overlong '/', a surrogate, a cut sequence */
	jsonw_str(&w, "a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xe2\x82");
	assert_int_equal(jsonw_error(&w), 0);
	got = json_loads(dynbuf_ptr(&b), JSON_DECODE_ANY, NULL);
	assert_non_null(got);
	assert_string_equal(json_string_value(got),
	    "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	    "d\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(got);
	dynbuf_free(&b);
}

static void test_limit_and_misuse(void **state)
{
	dynbuf b;
	jsonw w;

	(void)state;
	dynbuf_init(&b, 16);
	jsonw_init(&w, &b);
	jsonw_arr_begin(&w);
	for (int i = 0; i < 10; i++)
		jsonw_str(&w, "abc");
	assert_int_equal(jsonw_error(&w), TROOP_ETOOLARGE);
	jsonw_arr_end(&w);
	assert_int_equal(jsonw_error(&w), TROOP_ETOOLARGE);
	assert_true(dynbuf_len(&b) <= 16);
	dynbuf_free(&b);

	/* keys, written in one piece with their comma and colon, stop at
	 * the limit as values do */
	dynbuf_init(&b, 16);
	jsonw_init(&w, &b);
	jsonw_obj_begin(&w);
	for (int i = 0; i < 10; i++) {
		jsonw_key(&w, "abc");
		jsonw_int(&w, i);
	}
	assert_int_equal(jsonw_error(&w), TROOP_ETOOLARGE);
	assert_true(dynbuf_len(&b) <= 16);
	assert_string_equal(dynbuf_ptr(&b), "{\"abc\":0,\"abc\":1");
	dynbuf_free(&b);

	dynbuf_init(&b, 4096);
	jsonw_init(&w, &b);
	jsonw_arr_begin(&w);
	jsonw_key(&w, "k");
	assert_int_equal(jsonw_error(&w), TROOP_EINVAL);
	dynbuf_free(&b);

	dynbuf_init(&b, 4096);
	jsonw_init(&w, &b);
	jsonw_obj_begin(&w);
	jsonw_int(&w, 1);
	assert_int_equal(jsonw_error(&w), TROOP_EINVAL);
	dynbuf_free(&b);

	dynbuf_init(&b, 4096);
	jsonw_init(&w, &b);
	for (int i = 0; i <= JSONW_DEPTH_MAX; i++)
		jsonw_arr_begin(&w);
	assert_int_equal(jsonw_error(&w), TROOP_EINVAL);
	dynbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strings_as_jansson),
		cmocka_unit_test(test_keys_as_jansson),
		cmocka_unit_test(test_numbers_as_jansson),
		cmocka_unit_test(test_nesting_and_raw),
		cmocka_unit_test(test_not_utf8),
		cmocka_unit_test(test_limit_and_misuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
