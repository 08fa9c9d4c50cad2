/*
 * test_client_cli.c - the client commands' shared helpers (src/client/cli.h):
 * aligned tables, terminal-safe text, byte sizes, and the checks on what
 * an /authorize reply may make the client do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static char *print_table(const cli_table *t)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	cli_table_print(t, f);
	fclose(f);
	return buf;
}

static void test_table_aligns_columns(void **state)
{
	const char *hdr[3] = { "NAME", "N", "NOTE" };
	const char *r1[3] = { "a", "5", "x" };
	const char *r2[3] = { "longer-name", "1234", NULL };
	const char *r3[3] = { "ünï", "7", "last" };
	cli_table *t = cli_table_new(3, hdr);
	char *out;

	(void)state;
	assert_non_null(t);
	cli_table_align_right(t, 1);
	assert_int_equal(cli_table_add(t, r1), 0);
	assert_int_equal(cli_table_add(t, r2), 0);
	assert_int_equal(cli_table_add(t, r3), 0);
	assert_int_equal(cli_table_rows(t), 3);
	out = print_table(t);
	/* widths: 11, 4, 4; right-aligned numbers; NULL prints "-"; a
	 * multi-byte name counts its characters, not its bytes; no trailing
	 * blanks */
	assert_string_equal(out,
	    "NAME            N  NOTE\n"
	    "a               5  x\n"
	    "longer-name  1234  -\n"
	    "ünï             7  last\n");
	free(out);
	cli_table_free(t);
	cli_table_free(NULL);
}

static void test_table_grows(void **state)
{
	const char *hdr[1] = { "I" };
	cli_table *t = cli_table_new(1, hdr);
	char cell[16], *out;
	const char *row[1] = { cell };

	(void)state;
	for (int i = 0; i < 1000; i++) {
		snprintf(cell, sizeof(cell), "%d", i);
		assert_int_equal(cli_table_add(t, row), 0);
	}
	assert_int_equal(cli_table_rows(t), 1000);
	out = print_table(t);
	assert_non_null(strstr(out, "\n999\n"));
	free(out);
	cli_table_free(t);
}

static void test_sanitize(void **state)
{
	char out[64];

	(void)state;
	cli_sanitize(out, sizeof(out), "box\033[31m red\a\r\n");
	assert_string_equal(out, "box?[31m red???");
	cli_sanitize(out, sizeof(out), "ok ünïcode ✓");
	assert_string_equal(out, "ok ünïcode ✓");
	/* a C1 control (U+009B, CSI), an overlong '/', a lone continuation byte */
	cli_sanitize(out, sizeof(out), "a\xc2\x9b" "b\xc0\xaf" "c\x80");
	assert_string_equal(out, "a??b??c?");  /* one ? per byte */
	cli_sanitize(out, 4, "abcdef");
	assert_string_equal(out, "abc");
	/* a multi-byte character that does not fit is left out whole */
	cli_sanitize(out, 3, "aü");
	assert_string_equal(out, "a");
	cli_sanitize(out, sizeof(out), NULL);
	assert_string_equal(out, "");
}

static void test_format_bytes(void **state)
{
	char out[32];

	(void)state;
	cli_format_bytes(out, sizeof(out), 900);
	assert_string_equal(out, "900 B");
	cli_format_bytes(out, sizeof(out), 4661224676LL);
	assert_string_equal(out, "4.3 GiB");
	cli_format_bytes(out, sizeof(out), 512LL * 1024 * 1024);
	assert_string_equal(out, "512 MiB");
	cli_format_bytes(out, sizeof(out), -5);
	assert_string_equal(out, "0 B");
}

static void test_worker_url(void **state)
{
	char url[128];

	(void)state;
	assert_int_equal(cli_worker_url(url, sizeof(url), "100.101.102.103", 8421,
	    "/v1/chat/completions"), 0);
	assert_string_equal(url, "http://100.101.102.103:8421/v1/chat/completions");
	assert_int_equal(cli_worker_url(url, sizeof(url), "fd7a:115c:a1e0::1", 8421, "/x"), 0);
	assert_string_equal(url, "http://[fd7a:115c:a1e0::1]:8421/x");
	/* a reply must not be able to send the request (and ticket) elsewhere */
	assert_int_equal(cli_worker_url(url, sizeof(url), "evil.example/steal?", 80, "/x"), -1);
	assert_int_equal(cli_worker_url(url, sizeof(url), "1.2.3.4@evil", 80, "/x"), -1);
	assert_int_equal(cli_worker_url(url, sizeof(url), "1.2.3.4", 0, "/x"), -1);
	assert_int_equal(cli_worker_url(url, sizeof(url), "1.2.3.4", 65536, "/x"), -1);
	assert_int_equal(cli_worker_url(url, sizeof(url), NULL, 80, "/x"), -1);
	assert_int_equal(cli_worker_url(url, 10, "1.2.3.4", 80, "/x"), -1);
}

static void test_token_ok(void **state)
{
	(void)state;
	assert_true(cli_token_ok("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln-_", 100));
	assert_false(cli_token_ok("abc\r\nX-Injected: 1", 100));
	assert_false(cli_token_ok("abc def", 100));
	assert_false(cli_token_ok("", 100));
	assert_false(cli_token_ok(NULL, 100));
	assert_false(cli_token_ok("aaaaaaaaaa", 5));
	{
		/* one ticket limit everywhere: the longest ticket_verify accepts */
		static char big[TICKET_MAX_LEN + 2];
		memset(big, 'a', TICKET_MAX_LEN);
		big[TICKET_MAX_LEN] = '\0';
		assert_true(cli_token_ok(big, TICKET_MAX_LEN));
		big[TICKET_MAX_LEN] = 'a';
		assert_false(cli_token_ok(big, TICKET_MAX_LEN));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_aligns_columns),
		cmocka_unit_test(test_table_grows),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_format_bytes),
		cmocka_unit_test(test_worker_url),
		cmocka_unit_test(test_token_ok),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
