/*
 * test_json.c - the jansson helpers: parsing with positions in the error,
 * every getter's missing / mistyped / out-of-range message naming the
 * field, optional fields left untouched, compact dumps, and the OpenAI
 * error body for each error code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"

#define S(lit) lit, sizeof(lit) - 1

static json_t *parse_ok(const char *text)
{
	json_t *o = NULL;

	assert_int_equal(json_parse_object(&o, text, strlen(text)), 0);
	assert_non_null(o);
	return o;
}

static void assert_msg(const char *needle)
{
	if (!strstr(troop_error_msg(), needle))
		fail_msg("error '%s' does not contain '%s'", troop_error_msg(), needle);
}

static void test_parse_object(void **state)
{
	json_t *o = NULL;

	(void)state;
	o = parse_ok("{\"model\":\"m\",\"n\":1}");
	assert_int_equal(json_object_size(o), 2);
	json_decref(o);

	/* syntax error on line 2: the message says where */
	assert_int_equal(json_parse_object(&o, S("{\"a\":1,\n \"b\": tru}")), TROOP_EINVAL);
	assert_null(o);
	assert_msg("body is not valid JSON");
	assert_msg("line 2");
	assert_msg("column");

	assert_int_equal(json_parse_object(&o, S("[1,2]")), TROOP_EINVAL);
	assert_null(o);
	assert_msg("must be a JSON object");
	assert_int_equal(json_parse_object(&o, S("\"s\"")), TROOP_EINVAL);
	assert_int_equal(json_parse_object(&o, S("")), TROOP_EINVAL);
	assert_msg("not valid JSON");
	/* trailing bytes after the object */
	assert_int_equal(json_parse_object(&o, S("{} {}")), TROOP_EINVAL);
	/* the length is honoured: no reading past it */
	assert_int_equal(json_parse_object(&o, "{}garbage", 2), 0);
	json_decref(o);
	/* duplicate keys are refused */
	assert_int_equal(json_parse_object(&o, S("{\"model\":\"a\",\"model\":\"b\"}")),
	    TROOP_EINVAL);
	assert_msg("model");
	/* NUL inside a string is refused, so borrowed strings are C strings */
	assert_int_equal(json_parse_object(&o, S("{\"a\":\"x\\u0000y\"}")), TROOP_EINVAL);
	/* invalid UTF-8 is refused */
	assert_int_equal(json_parse_object(&o, S("{\"a\":\"\xff\"}")), TROOP_EINVAL);
}

static void test_get_str(void **state)
{
	json_t *o = parse_ok("{\"model\":\"llama3:8b\",\"n\":3,\"nul\":null,\"e\":\"\"}");
	const char *s = "untouched";

	(void)state;
	assert_int_equal(json_get_str(&s, o, "model", true), 0);
	assert_string_equal(s, "llama3:8b");

	s = "untouched";
	assert_int_equal(json_get_str(&s, o, "absent", false), 0);
	assert_string_equal(s, "untouched");
	assert_int_equal(json_get_str(&s, o, "nul", false), 0);
	assert_string_equal(s, "untouched");

	assert_int_equal(json_get_str(&s, o, "absent", true), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "missing field 'absent'");
	assert_int_equal(json_get_str(&s, o, "nul", true), TROOP_EINVAL);
	assert_msg("'nul'");
	assert_int_equal(json_get_str(&s, o, "n", true), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'n' must be a string");
	assert_int_equal(json_get_str(&s, o, "n", false), TROOP_EINVAL);

	/* strn bounds */
	assert_int_equal(json_get_strn(&s, o, "model", true, 9), 0);
	assert_string_equal(s, "llama3:8b");
	assert_int_equal(json_get_strn(&s, o, "model", true, 8), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'model' is longer than 8 bytes");
	assert_int_equal(json_get_strn(&s, o, "e", true, 8), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'e' must not be empty");
	assert_int_equal(json_get_strn(&s, o, "e", false, 8), TROOP_EINVAL);
	s = "untouched";
	assert_int_equal(json_get_strn(&s, o, "absent", false, 8), 0);
	assert_string_equal(s, "untouched");
	assert_int_equal(json_get_strn(&s, o, "absent", true, 8), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "missing field 'absent'");

	/* a string built in memory with a NUL inside is refused */
	json_object_set_new(o, "bin", json_stringn("a\0b", 3));
	assert_int_equal(json_get_str(&s, o, "bin", true), TROOP_EINVAL);
	assert_msg("'bin'");

	/* not an object */
	json_t *arr = json_array();
	assert_int_equal(json_get_str(&s, arr, "model", true), TROOP_EINVAL);
	assert_msg("'model'");
	assert_int_equal(json_get_str(&s, NULL, "model", false), TROOP_EINVAL);
	json_decref(arr);
	json_decref(o);
}

static void test_get_int(void **state)
{
	json_t *o = parse_ok("{\"port\":8421,\"neg\":-5,\"real\":3.0,\"frac\":2.5,"
	    "\"s\":\"1\",\"b\":true,\"huge\":1e300,\"big\":9223372036854775807}");
	int64_t n = 42;

	(void)state;
	assert_int_equal(json_get_int(&n, o, "port", true, 1, 65535), 0);
	assert_int_equal(n, 8421);
	assert_int_equal(json_get_int(&n, o, "neg", true, 0, 0), 0);   /* no range */
	assert_int_equal(n, -5);
	assert_int_equal(json_get_int(&n, o, "real", true, 0, 10), 0);
	assert_int_equal(n, 3);
	assert_int_equal(json_get_int(&n, o, "big", true, 0, 0), 0);
	assert_true(n == INT64_MAX);

	n = 42;
	assert_int_equal(json_get_int(&n, o, "absent", false, 1, 2), 0);
	assert_int_equal(n, 42);
	assert_int_equal(json_get_int(&n, o, "absent", true, 1, 2), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "missing field 'absent'");

	assert_int_equal(json_get_int(&n, o, "frac", true, 0, 0), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'frac' must be an integer");
	assert_int_equal(json_get_int(&n, o, "s", true, 0, 0), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 's' must be an integer");
	assert_int_equal(json_get_int(&n, o, "b", true, 0, 0), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'b' must be an integer");

	assert_int_equal(json_get_int(&n, o, "port", true, 1, 1024), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'port' must be between 1 and 1024");
	assert_int_equal(json_get_int(&n, o, "neg", true, 0, 10), TROOP_EINVAL);
	assert_msg("'neg'");
	assert_int_equal(json_get_int(&n, o, "huge", true, 0, 10), TROOP_EINVAL);
	assert_msg("'huge'");
	assert_int_equal(json_get_int(&n, o, "huge", true, 0, 0), TROOP_EINVAL);
	assert_msg("'huge'");
	/* a failed get leaves the output alone */
	assert_int_equal(n, 42);
	json_decref(o);
}

static void test_get_double_bool(void **state)
{
	json_t *o = parse_ok("{\"t\":0.5,\"i\":2,\"s\":\"x\",\"yes\":true,\"no\":false,\"one\":1}");
	double d = -1;
	bool b = true;

	(void)state;
	assert_int_equal(json_get_double(&d, o, "t", true), 0);
	assert_true(d == 0.5);
	assert_int_equal(json_get_double(&d, o, "i", true), 0);
	assert_true(d == 2.0);
	d = -1;
	assert_int_equal(json_get_double(&d, o, "absent", false), 0);
	assert_true(d == -1);
	assert_int_equal(json_get_double(&d, o, "absent", true), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "missing field 'absent'");
	assert_int_equal(json_get_double(&d, o, "s", true), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 's' must be a number");

	assert_int_equal(json_get_bool(&b, o, "no", true), 0);
	assert_false(b);
	assert_int_equal(json_get_bool(&b, o, "yes", true), 0);
	assert_true(b);
	b = false;
	assert_int_equal(json_get_bool(&b, o, "absent", false), 0);
	assert_false(b);
	assert_int_equal(json_get_bool(&b, o, "absent", true), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "missing field 'absent'");
	assert_int_equal(json_get_bool(&b, o, "one", true), TROOP_EINVAL);
	assert_msg("field 'one' must be");
	json_decref(o);
}

static void test_get_array_object(void **state)
{
	json_t *o = parse_ok("{\"models\":[1,2,3],\"hw\":{\"gpu\":\"x\"},\"s\":\"x\"}");
	json_t *a = NULL, *h = NULL;

	(void)state;
	assert_int_equal(json_get_array(&a, o, "models", true, 3), 0);
	assert_int_equal(json_array_size(a), 3);
	assert_int_equal(json_get_array(&a, o, "models", true, 0), 0);   /* no bound */
	a = NULL;
	assert_int_equal(json_get_array(&a, o, "models", true, 2), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'models' has more than 2 items");
	assert_null(a);
	assert_int_equal(json_get_array(&a, o, "hw", true, 0), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'hw' must be an array");
	assert_int_equal(json_get_array(&a, o, "absent", false, 0), 0);
	assert_null(a);
	assert_int_equal(json_get_array(&a, o, "absent", true, 0), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "missing field 'absent'");

	assert_int_equal(json_get_object(&h, o, "hw", true), 0);
	assert_non_null(json_object_get(h, "gpu"));
	h = NULL;
	assert_int_equal(json_get_object(&h, o, "models", true), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "field 'models' must be an object");
	assert_int_equal(json_get_object(&h, o, "absent", false), 0);
	assert_null(h);
	assert_int_equal(json_get_object(&h, o, "absent", true), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(), "missing field 'absent'");
	json_decref(o);
}

static void test_dump_compact(void **state)
{
	const char in[] = "{ \"b\" : [1, 2, {\"c\": null}],\n \"a\": \"x\\\"y\", \"u\": \"\xc3\xa9\" }";
	json_t *o = NULL, *back = NULL;
	size_t len = 0;
	char *s;

	(void)state;
	assert_int_equal(json_parse_object(&o, S(in)), 0);
	s = json_dump_compact(o, &len);
	assert_non_null(s);
	assert_int_equal(len, strlen(s));
	/* compact: no blank outside strings, keys in their original order */
	assert_string_equal(s, "{\"b\":[1,2,{\"c\":null}],\"a\":\"x\\\"y\",\"u\":\"\xc3\xa9\"}");
	assert_int_equal(json_parse_object(&back, s, len), 0);
	assert_true(json_equal(o, back));
	free(s);
	json_decref(back);
	json_decref(o);

	json_t *str = json_string("plain");
	s = json_dump_compact(str, NULL);
	assert_string_equal(s, "\"plain\"");
	free(s);
	json_decref(str);
	assert_null(json_dump_compact(NULL, &len));
}

static void test_error_body(void **state)
{
	const int codes[] = { TROOP_EINVAL, TROOP_ETOOLARGE, TROOP_EAUTH, TROOP_ECREDITS,
	    TROOP_ENOMODEL, TROOP_ECAPACITY, TROOP_ERR };

	(void)state;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		json_t *b = json_error_body(codes[i], "missing field 'model'");
		json_t *e = NULL;
		const char *v = NULL;
		char *text;

		assert_non_null(b);
		assert_int_equal(json_object_size(b), 1);
		assert_int_equal(json_get_object(&e, b, "error", true), 0);
		assert_int_equal(json_object_size(e), 3);
		assert_int_equal(json_get_str(&v, e, "message", true), 0);
		assert_string_equal(v, "missing field 'model'");
		assert_int_equal(json_get_str(&v, e, "type", true), 0);
		assert_string_equal(v, troop_err_type(codes[i]));
		assert_int_equal(json_get_str(&v, e, "code", true), 0);
		assert_string_equal(v, troop_err_code(codes[i]));
		/* it serialises, and round-trips through the parser */
		text = json_dump_compact(b, NULL);
		assert_non_null(text);
		json_t *back = NULL;
		assert_int_equal(json_parse_object(&back, text, strlen(text)), 0);
		assert_true(json_equal(b, back));
		json_decref(back);
		free(text);
		json_decref(b);
	}

	/* a message quoting invalid UTF-8 still gives a valid body */
	json_t *b = json_error_body(TROOP_EINVAL, "got '\xff\xc3(' and \xe2\x82\xac ok");
	json_t *e = NULL;
	const char *m = NULL;
	assert_non_null(b);
	assert_int_equal(json_get_object(&e, b, "error", true), 0);
	assert_int_equal(json_get_str(&m, e, "message", true), 0);
	assert_string_equal(m, "got '\xef\xbf\xbd\xef\xbf\xbd(' and \xe2\x82\xac ok");
	json_decref(b);

	/* NULL message: an empty one, still the full shape */
	b = json_error_body(TROOP_ERATE, NULL);
	assert_non_null(b);
	assert_int_equal(json_get_object(&e, b, "error", true), 0);
	assert_int_equal(json_get_str(&m, e, "code", true), 0);
	assert_string_equal(m, "rate_limited");
	json_decref(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_object),
		cmocka_unit_test(test_get_str),
		cmocka_unit_test(test_get_int),
		cmocka_unit_test(test_get_double_bool),
		cmocka_unit_test(test_get_array_object),
		cmocka_unit_test(test_dump_compact),
		cmocka_unit_test(test_error_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
