/*
 * test_anon.c - the coordinator's anonymous endpoints against strangers
 * (issue 16 item 5), on a real coordinator:
 *   - /peers is no amplifier: 40 throwaway nodes, each advertising 256
 *     models with 250-byte names (about 100 kB of record each), make one
 *     100-byte anonymous `GET /peers?limit=1000` answer a bounded reply
 *     (COORD_PEERS_REPLY_MAX plus one record) marked "truncated", not the
 *     4 MB the records add up to;
 *   - anonymous reads are rate-limited per source address: past
 *     --anon-rate-limit (2) a second, 429 with Retry-After, while another
 *     address (127.0.0.2) and /health are still served.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"

static harness_proc coord;
static char tmp[256];

struct reply {
	size_t bytes;
	int retry_after;
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	(void)p;
	((struct reply *)arg)->bytes += sz * n;
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	if (sz * n > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
		((struct reply *)arg)->retry_after = atoi(p + 12);
	return sz * n;
}

/* GET path from the source address `from`; returns the status. */
static long get_from(const char *from, const char *path, struct reply *rep)
{
	CURL *h = curl_easy_init();
	char url[400];
	long status = 0;

	memset(rep, 0, sizeof(*rep));
	snprintf(url, sizeof(url), "%s%s", coord.url, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_INTERFACE, from);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, rep);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, rep);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	return status;
}

static void test_peers_reply_bounded(void **state)
{
	http_client *c;
	struct reply rep;
	char name[300];
	long st;

	(void)state;
	assert_int_equal(http_client_new(&c), 0);
	for (int k = 0; k < 40; k++) {
		troop_identity node;
		json_t *models = json_array(), *body, *out = NULL;
		int status = 0;

		identity_generate(&node);
		for (int m = 0; m < 256; m++) {
			snprintf(name, sizeof(name), "%03d-%0246d", m, k);
			json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s}", "name", name,
			    "content_hash", "", "size_bytes", (json_int_t)1, "engine", "vllm"));
		}
		body = json_pack("{s:s, s:s, s:s, s:i, s:s, s:o, s:{s:i, s:i}}", "node_id", node.id,
		    "name", "amp", "tailscale_ip", "127.0.0.1", "port", 8421, "status", "IDLE",
		    "models", models, "load", "active_jobs", 0, "max_jobs", 4);
		assert_int_equal(http_request_signed(c, &status, &out, &node, "POST", coord.url,
		    "/heartbeat", body), 0);
		assert_int_equal(status, 200);
		json_decref(out);
		json_decref(body);
	}
	http_client_free(c);
	/* 40 records of about 100 kB: the reply stops at the budget */
	st = get_from("127.0.0.1", "/peers?limit=1000", &rep);
	assert_int_equal(st, 200);
	printf("# /peers over 40 nodes of 256 long model names: %zu bytes\n", rep.bytes);
	assert_true(rep.bytes < 512 * 1024 + 200 * 1024);
	assert_true(rep.bytes > 100 * 1024);   /* it does list nodes */
}

static void test_anon_rate_per_address(void **state)
{
	struct reply rep;
	int ok = 0, limited = 0, retry = 0;
	time_t first, last;

	(void)state;
	/* the limit is 2 a second: reads as fast as one client goes, for at
	 * least 30 reads and until one was refused (a slow, sanitized build
	 * reads fewer a second) */
	first = time(NULL);
	for (int i = 0; i < 300 && (i < 30 || limited == 0); i++) {
		long st = get_from("127.0.0.1", "/v1/models", &rep);
		if (st == 200)
			ok++;
		else if (st == 429) {
			limited++;
			retry = rep.retry_after;
		} else {
			fail_msg("read %d answered %ld", i, st);
		}
	}
	last = time(NULL);
	printf("# %d reads from 127.0.0.1 in %lld s: %d answered, %d limited\n", ok + limited,
	    (long long)(last - first + 1), ok, limited);
	assert_true(limited >= 1);
	assert_int_equal(retry, 1);
	/* at most 2 answered in each one-second window the reads spanned */
	assert_true(ok <= 2 * (int)(last - first + 1));
	/* another address is not held back by the first one's reads */
	assert_int_equal(get_from("127.0.0.2", "/peers?limit=1", &rep), 200);
	assert_int_equal(get_from("127.0.0.2", "/public-key", &rep), 200);
	/* /health is never limited */
	for (int i = 0; i < 20; i++)
		assert_int_equal(get_from("127.0.0.1", "/health", &rep), 200);
}

static int setup(void **state)
{
	static const char *const extra[] = { "--anon-rate-limit", "2", NULL };
	(void)state;
	return harness_start_coordinator_tmp(&coord, tmp, sizeof(tmp), extra);
}

static int teardown(void **state)
{
	(void)state;
	harness_stop(&coord, SIGTERM);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_peers_reply_bounded),
		cmocka_unit_test(test_anon_rate_per_address),
	};
	curl_global_init(CURL_GLOBAL_ALL);
	return cmocka_run_group_tests(tests, setup, teardown);
}
