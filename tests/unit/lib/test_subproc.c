/*
 * test_subproc.c - the helper-program runner: output, exit status, a
 * missing program, the deadline and the output limit.  Uses only programs
 * every Debian system has (sh, sleep, yes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/wait.h>

#include "error.h"
#include "subproc.h"

static void test_output_and_status(void **state)
{
	char out[64];
	size_t n = 99;
	int status = -1;
	const char *argv[] = { "sh", "-c", "printf 'hello %s' \"$0\"; exit 3", "arg; rm -rf /", NULL };

	assert_int_equal(subproc_capture(out, sizeof(out), &n, argv, 5000, &status), 0);
	/* The argument reached the program as data, not as shell text. */
	assert_string_equal(out, "hello arg; rm -rf /");
	assert_int_equal(n, strlen("hello arg; rm -rf /"));
	assert_int_equal(status, 3);
}

static void test_stderr_discarded(void **state)
{
	char out[64];
	int status = -1;
	const char *argv[] = { "sh", "-c", "echo noise >&2; echo data", NULL };

	assert_int_equal(subproc_capture(out, sizeof(out), NULL, argv, 5000, &status), 0);
	assert_string_equal(out, "data\n");
	assert_int_equal(status, 0);
}

static void test_not_found(void **state)
{
	char out[16];
	int status = 0;
	const char *argv[] = { "troop-no-such-program-xyz", NULL };

	assert_int_equal(subproc_capture(out, sizeof(out), NULL, argv, 5000, &status),
	    TROOP_ENOTFOUND);
	assert_non_null(strstr(troop_error_msg(), "troop-no-such-program-xyz"));
	assert_string_equal(out, "");
}

static void test_deadline_kills(void **state)
{
	char out[16];
	int status = 0;
	const char *argv[] = { "sleep", "30", NULL };

	assert_int_equal(subproc_capture(out, sizeof(out), NULL, argv, 100, &status),
	    TROOP_ETIMEOUT);
	/* The child was reaped: no child of ours is left. */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static void test_output_limit(void **state)
{
	char out[100];
	size_t n = 0;
	int status = 0;
	const char *argv[] = { "yes", NULL };

	assert_int_equal(subproc_capture(out, sizeof(out), &n, argv, 5000, &status),
	    TROOP_ETOOLARGE);
	assert_int_equal(n, sizeof(out) - 1);
	assert_int_equal(strlen(out), sizeof(out) - 1);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

	/* Exactly at the limit is fine. */
	const char *fit[] = { "printf", "%s", "0123456789", NULL };
	char small[11];
	assert_int_equal(subproc_capture(small, sizeof(small), &n, fit, 5000, &status), 0);
	assert_string_equal(small, "0123456789");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_output_and_status),
		cmocka_unit_test(test_stderr_discarded),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_deadline_kills),
		cmocka_unit_test(test_output_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
