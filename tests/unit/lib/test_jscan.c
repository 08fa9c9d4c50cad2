/*
 * test_jscan.c - the plain-JSON reader: which texts it takes (plain JSON
 * only) and which it leaves to jansson, values read in place, members and
 * elements of nested containers, integers at the edges of int64_t, and the
 * depth bound.  fuzz/fuzz_jscan.c checks it against jansson on any input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jscan.h"

static bool plain(const char *text)
{
	jscan s;

	jscan_init(&s, text, strlen(text));
	return jscan_skip(&s) && jscan_end(&s);
}

static void test_plain_or_not(void **state)
{
	static const struct {
		const char *text;
		bool plain;
	} cases[] = {
		{ "{}", true },
		{ "[]", true },
		{ " { \"a\" : [ 1 , -2.5e3 , true , false , null , \"x\" , { } ] }\n", true },
		{ "{\"a\":{\"b\":{\"c\":[[]]}},\"d\":0}", true },
		{ "\"printable ASCII ~!@#$%^&*()\"", true },
		{ "-0", true },
		{ "9223372036854775807", true },
		{ "-9223372036854775808", true },
		{ "1.5E-7", true },
		/* what jansson would read but this reader leaves to it */
		{ "\"a\\\"b\"", false },          /* an escape */
		{ "\"caf\xc3\xa9\"", false },      /* a byte above 0x7F */
		{ "\"tab\there\"", false },        /* a control character */
		{ "9223372036854775808", false },  /* past int64_t: jansson refuses too */
		{ "-9223372036854775809", false },
		{ "1e999", false },                /* real overflow: jansson refuses too */
		/* not JSON at all */
		{ "", false },
		{ "{", false },
		{ "{\"a\":1,}", false },
		{ "{,\"a\":1}", false },
		{ "{\"a\" 1}", false },
		{ "{\"a\":1 \"b\":2}", false },
		{ "{1:2}", false },
		{ "[1,]", false },
		{ "[,1]", false },
		{ "[1 2]", false },
		{ "01", false },
		{ "-", false },
		{ "1.", false },
		{ ".5", false },
		{ "1e", false },
		{ "+1", false },
		{ "tru", false },
		{ "nul", false },
		{ "\"open", false },
		{ "{} {}", false },
		{ "[1]]", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (plain(cases[i].text) != cases[i].plain)
			fail_msg("case %zu (%s): expected %s", i, cases[i].text,
			    cases[i].plain ? "plain" : "not plain");
	}
}

static void test_values(void **state)
{
	const char *text = "{\"name\":\"gpu-box\",\"port\":8421,\"mul\":0.1,\"big\":-9223372036854775808,"
	    "\"ok\":true,\"rp\":{\"av\":1,\"fo\":3},\"m\":[[\"llama3\",\"\",42]],\"z\":null}";
	jscan s;
	const char *k, *v;
	size_t kl, vl;
	int64_t i;
	double d;
	bool b;
	int seen = 0;

	(void)state;
	jscan_init(&s, text, strlen(text));
	assert_true(jscan_object(&s));
	while (jscan_member(&s, &k, &kl) == 1) {
		if (JSCAN_KEY(k, kl, "name")) {
			assert_true(jscan_string(&s, &v, &vl));
			assert_int_equal(vl, 7);
			assert_memory_equal(v, "gpu-box", 7);
		} else if (JSCAN_KEY(k, kl, "port")) {
			/* an integer is not a string, nor a bool; the failed reads
			 * leave it to be read */
			assert_false(jscan_string(&s, &v, &vl));
			assert_false(jscan_bool(&s, &b));
			assert_true(jscan_int(&s, &i));
			assert_int_equal(i, 8421);
		} else if (JSCAN_KEY(k, kl, "mul")) {
			/* a real is not an integer; as a number it is strtod's */
			assert_false(jscan_int(&s, &i));
			assert_true(jscan_number(&s, &d));
			assert_true(d == 0.1);
		} else if (JSCAN_KEY(k, kl, "big")) {
			assert_true(jscan_int(&s, &i));
			assert_true(i == INT64_MIN);
		} else if (JSCAN_KEY(k, kl, "ok")) {
			assert_true(jscan_bool(&s, &b));
			assert_true(b);
		} else if (JSCAN_KEY(k, kl, "rp")) {
			int n = 0;

			assert_true(jscan_object(&s));
			while (jscan_member(&s, &k, &kl) == 1) {
				assert_true(jscan_number(&s, &d));
				assert_true(d == (n == 0 ? 1.0 : 3.0));
				n++;
			}
			assert_int_equal(n, 2);
		} else if (JSCAN_KEY(k, kl, "m")) {
			int n = 0;

			assert_true(jscan_array(&s));
			assert_int_equal(jscan_element(&s), 1);
			assert_true(jscan_array(&s));
			while (jscan_element(&s) == 1) {
				if (n < 2)
					assert_true(jscan_string(&s, &v, &vl));
				else
					assert_true(jscan_int(&s, &i) && i == 42);
				n++;
			}
			assert_int_equal(n, 3);
			assert_int_equal(jscan_element(&s), 0);
		} else {
			assert_true(JSCAN_KEY(k, kl, "z"));
			assert_true(jscan_skip(&s));
		}
		seen++;
	}
	assert_int_equal(seen, 8);
	assert_true(jscan_end(&s));
}

/* containers nested past JSCAN_DEPTH_MAX are left to jansson */
static void test_depth(void **state)
{
	char text[2 * (JSCAN_DEPTH_MAX + 2) + 1];
	int n;

	(void)state;
	for (n = JSCAN_DEPTH_MAX; n <= JSCAN_DEPTH_MAX + 1; n++) {
		memset(text, '[', (size_t)n);
		memset(text + n, ']', (size_t)n);
		text[2 * n] = '\0';
		assert_int_equal(plain(text), n <= JSCAN_DEPTH_MAX);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_or_not),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
