/*
 * test_report.c - the clients' delivery reports (src/client/report.h):
 * what one job's observation becomes (bytes, tokens, the SHA-256 of the
 * body received, whatever the chunking), and the outbox keeping a report
 * it could not send on disk for the next start.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

static const char body[] =
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\" you\"}}]}\n\n"
    "data: [DONE]\n\n";

static void hex_sha256(char out[65], const char *data, size_t len)
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const unsigned char *)data, len);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

static void test_body_any_split(void **state)
{
	char want[65];
	size_t len = strlen(body);

	(void)state;
	hex_sha256(want, body, len);
	for (size_t cut = 0; cut <= len; cut += 7) {
		client_delivery d;
		json_t *b;

		memset(&d, 0, sizeof(d));
		client_delivery_begin(&d, "job-1");
		client_delivery_headers(&d, true);
		client_delivery_body(&d, body, cut);
		client_delivery_body(&d, body + cut, len - cut);
		b = client_delivery_body_json(&d, "complete", d.t0_us + 1500000);
		assert_non_null(b);
		assert_string_equal(json_string_value(json_object_get(b, "job_id")), "job-1");
		assert_int_equal(json_integer_value(json_object_get(b, "duration_ms")), 1500);
		assert_int_equal(json_integer_value(json_object_get(b, "bytes")), len);
		assert_int_equal(json_integer_value(json_object_get(b, "completion_tokens")), 3);
		assert_string_equal(json_string_value(json_object_get(b, "outcome")), "complete");
		assert_string_equal(json_string_value(json_object_get(b, "response_digest")), want);
		json_decref(b);
		client_delivery_clear(&d);
	}
}

/* ttfb_ms: the time to the first token event of a stream (not a
 * keep-alive comment, not the role chunk); none for a whole reply. */
static void test_time_to_first_token(void **state)
{
	static const char role[] = ": keep-alive\n\n"
	    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
	client_delivery d;
	json_t *b;

	(void)state;
	memset(&d, 0, sizeof(d));
	client_delivery_begin(&d, "job-3");
	client_delivery_headers(&d, true);
	client_delivery_body(&d, role, strlen(role));
	assert_int_equal(d.first_us, 0);
	b = client_delivery_body_json(&d, "cut", d.t0_us + 50000);
	assert_null(json_object_get(b, "ttfb_ms"));   /* no token yet */
	json_decref(b);
	d.t0_us -= 200000;   /* as if the request went out 200 ms ago */
	client_delivery_body(&d, body, strlen(body));
	assert_true(d.first_us > 0);
	b = client_delivery_body_json(&d, "complete", d.t0_us + 300000);
	assert_true(json_integer_value(json_object_get(b, "ttfb_ms")) >= 200);
	assert_true(json_integer_value(json_object_get(b, "ttfb_ms")) < 300);
	json_decref(b);
	client_delivery_clear(&d);

	/* a whole JSON reply: its first byte is its last token */
	client_delivery_begin(&d, "job-4");
	client_delivery_headers(&d, false);
	client_delivery_body(&d, "{\"choices\":[]}", 14);
	b = client_delivery_body_json(&d, "complete", d.t0_us + 1000);
	assert_non_null(json_object_get(b, "response_digest"));
	assert_null(json_object_get(b, "ttfb_ms"));
	json_decref(b);
	client_delivery_clear(&d);
}

static void test_no_body_no_digest(void **state)
{
	client_delivery d;
	json_t *b;

	(void)state;
	memset(&d, 0, sizeof(d));
	client_delivery_begin(&d, "job-2");
	b = client_delivery_body_json(&d, "unreachable", d.t0_us);
	assert_int_equal(json_integer_value(json_object_get(b, "bytes")), 0);
	assert_null(json_object_get(b, "response_digest"));
	json_decref(b);
	client_delivery_clear(&d);
	/* nothing begun: nothing to report */
	assert_int_equal(client_delivery_finish(&d, NULL, "complete"), 0);
}

static int spool_files(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, name) == 0;
	closedir(d);
	return n;
}

static void test_unsent_report_stays_spooled(void **state)
{
	char dir[] = "/tmp/troop-report-XXXXXX", sub[64], cmd[128];
	troop_identity id;
	client_reports *r = NULL;
	client_delivery d;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/reports", dir);
	identity_generate(&id);
	/* nothing listens on port 1: every send fails */
	assert_int_equal(client_reports_start(&r, "http://127.0.0.1:1", &id, sub), 0);
	memset(&d, 0, sizeof(d));
	client_delivery_begin(&d, "job-3");
	client_delivery_body(&d, "x", 1);
	assert_int_equal(client_delivery_finish(&d, r, "complete"), 0);
	for (int i = 0; i < 100 && !spool_files(sub, "job-3.json"); i++)
		usleep(20000);
	client_reports_stop(r, 200);
	assert_int_equal(spool_files(sub, "job-3.json"), 1);
	/* a bad job id is refused, not spooled */
	assert_int_equal(client_reports_start(&r, "http://127.0.0.1:1", &id, sub), 0);
	client_delivery_begin(&d, "../evil");
	assert_int_not_equal(client_delivery_finish(&d, r, "complete"), 0);
	client_reports_stop(r, 0);
	assert_int_equal(spool_files(sub, "job-3.json"), 1);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_any_split),
		cmocka_unit_test(test_no_body_no_digest),
		cmocka_unit_test(test_time_to_first_token),
		cmocka_unit_test(test_unsent_report_stays_spooled),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
