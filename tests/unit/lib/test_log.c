/*
 * test_log.c - the logger keeps secrets out of log lines: named secret
 * keys, bare compact JWS values and Bearer credentials are redacted,
 * everything else passes unchanged; log_write applies the same rules to
 * the line it writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define JWS "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"

static void redact(char *out, size_t cap, const char *in)
{
	log_redact(out, cap, in);
}

static void test_named_keys(void **state)
{
	static const char *const keys[] = { "authorization", "signature", "token", "ticket",
		"secret", "password", "private", "key", "api_key", "seed", "sk" };
	char in[256], out[256];

	(void)state;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(in, sizeof(in), "job=abc %s=hunter2value status=200", keys[i]);
		redact(out, sizeof(out), in);
		assert_null(strstr(out, "hunter2value"));
		assert_non_null(strstr(out, "[redacted]"));
		/* the fields around it survive */
		assert_non_null(strstr(out, "job=abc"));
		assert_non_null(strstr(out, "status=200"));
	}
}

static void test_quoted_value(void **state)
{
	char out[256];

	(void)state;
	redact(out, sizeof(out), "event=x secret=\"two words here\" n=1");
	assert_null(strstr(out, "two words"));
	assert_null(strstr(out, "here"));
	assert_non_null(strstr(out, "n=1"));
}

static void test_bare_jws_and_bearer(void **state)
{
	char out[512];

	(void)state;
	redact(out, sizeof(out), "reason=\"bad token " JWS "\" peer=127.0.0.1");
	assert_null(strstr(out, "c2lnbmF0dXJl"));
	assert_null(strstr(out, "eyJzdWIiOiJhIn0"));
	assert_non_null(strstr(out, "peer=127.0.0.1"));
	redact(out, sizeof(out), "header=\"Authorization: Bearer sk-live-123456\"");
	assert_null(strstr(out, "sk-live-123456"));
	redact(out, sizeof(out), "url=" JWS);
	assert_null(strstr(out, "c2lnbmF0dXJl"));
}

static void test_plain_values_untouched(void **state)
{
	const char *in = "method=GET path=/health status=200 us=45 model=llama3:8b";
	char out[256];

	(void)state;
	redact(out, sizeof(out), in);
	assert_string_equal(out, in);
	/* a key that merely contains a secret word as part of a longer name
	 * that is not secret keeps its value only if it is not a secret key:
	 * "monkey" must not be read as "key" */
	redact(out, sizeof(out), "monkey=troop");
	assert_string_equal(out, "monkey=troop");
}

static void test_truncation_stays_terminated(void **state)
{
	char big[4096], out[32];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "token=", 6);
	redact(out, sizeof(out), big);
	assert_true(strlen(out) < sizeof(out));
	assert_null(strstr(out, "aaaa"));
}

static void test_log_write_redacts(void **state)
{
	int fds[2];
	char buf[1024];
	ssize_t n;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	log_set_fd(fds[1]);
	log_write(LOG_INFO, "job", "ticket=%s key=%s note=%s", JWS, "c2VjcmV0a2V5", "fine");
	log_write(LOG_WARN, "refused", "reason=\"Bearer %s\"", JWS);
	log_set_fd(2);
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_null(strstr(buf, "c2lnbmF0dXJl"));
	assert_null(strstr(buf, "c2VjcmV0a2V5"));
	assert_non_null(strstr(buf, "note=fine"));
	assert_non_null(strstr(buf, "INFO job"));
	assert_non_null(strstr(buf, "WARN refused"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_named_keys),
		cmocka_unit_test(test_quoted_value),
		cmocka_unit_test(test_bare_jws_and_bearer),
		cmocka_unit_test(test_plain_values_untouched),
		cmocka_unit_test(test_truncation_stays_terminated),
		cmocka_unit_test(test_log_write_redacts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
