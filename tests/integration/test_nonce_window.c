/*
 * test_nonce_window.c - a captured signed request replayed at the edges of
 * its validity (issue 16 item 8), against a running coordinator.
 *
 * A signature is valid while its `created` is within HTTPSIG_MAX_SKEW
 * (60 s) of the server's clock, both ends included: a request signed with
 * created = T + 60 is first accepted at T and is still valid at T + 120.
 * Its nonce must be remembered that long.  With the request first seen at
 * second T (server time), replays at T + 119 (just inside), T + 120 (the
 * last second the signature is valid: a nonce kept only 120 s was
 * forgotten and the replay accepted) and T + 121 (past the window) must
 * all get 401.  Controls: a request signed with the same `created` and a
 * fresh nonce is accepted at T + 120 (the window is open, so the refusal
 * there is the nonce's doing) and refused at T + 121.
 *
 * Waits about two minutes; it stays in `make test` (ctest runs other
 * tests beside it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"

static harness_proc coord;
static char tmp[256];

/* Send the GET with the captured headers; returns the status and the
 * error message (if any) in msg. */
static int send_captured(const char *path, const http_signed_headers *h, char *msg,
    size_t msglen)
{
	http_client *c;
	http_response rep;
	char url[400];
	json_t *j;
	int status;

	assert_int_equal(http_client_new(&c), 0);
	snprintf(url, sizeof(url), "%s%s", coord.url, path);
	memset(&rep, 0, sizeof(rep));
	assert_int_equal(http_request(c, &rep, "GET", url, h->list, NULL, 0), 0);
	status = rep.status;
	msg[0] = '\0';
	if ((j = json_loadb(rep.body ? rep.body : "", rep.len, 0, NULL)) != NULL) {
		const char *m = json_string_value(json_object_get(json_object_get(j, "error"),
		    "message"));
		snprintf(msg, msglen, "%s", m ? m : "");
		json_decref(j);
	}
	http_response_free(&rep);
	http_client_free(c);
	return status;
}

/* Sleep until the wall clock reaches second `at` plus 200 ms. */
static void wait_until(time_t at)
{
	struct timeval tv;

	for (;;) {
		gettimeofday(&tv, NULL);
		if (tv.tv_sec > at || (tv.tv_sec == at && tv.tv_usec >= 200000))
			return;
		harness_sleep_ms(50);
	}
}

static void expect(const char *when, int got, int want, const char *msg, const char *needle)
{
	printf("# %s: %d %s\n", when, got, msg);
	if (got != want || (needle && !strstr(msg, needle)))
		fail_msg("%s: answered %d (%s), want %d%s%s", when, got, msg, want,
		    needle ? " with " : "", needle ? needle : "");
}

static void test_replay_at_window_edges(void **state)
{
	troop_identity id;
	http_signed_headers cap, fresh120, fresh121;
	char path[200], msg[300];
	struct timeval tv;
	time_t t0;

	(void)state;
	identity_generate(&id);
	snprintf(path, sizeof(path), "/users/%s/balance", id.id);
	/* start at the beginning of a second, so that the first use and the
	 * replays land in the seconds they are meant for */
	gettimeofday(&tv, NULL);
	t0 = tv.tv_sec + 1;
	wait_until(t0);
	t0 = time(NULL);
	/* created = T + 60: the latest a server at T accepts */
	assert_int_equal(http_signed_headers_build(&cap, &id, "GET", path, "", NULL, 0,
	    (int64_t)t0 + 60), 0);
	assert_int_equal(http_signed_headers_build(&fresh120, &id, "GET", path, "", NULL, 0,
	    (int64_t)t0 + 60), 0);
	assert_int_equal(http_signed_headers_build(&fresh121, &id, "GET", path, "", NULL, 0,
	    (int64_t)t0 + 60), 0);
	expect("first use at T", send_captured(path, &cap, msg, sizeof(msg)), 200, msg, NULL);
	assert_int_equal(time(NULL), t0);       /* it landed in second T */

	wait_until(t0 + 119);
	expect("replay at T + 119", send_captured(path, &cap, msg, sizeof(msg)), 401, msg,
	    "nonce");
	wait_until(t0 + 120);
	expect("replay at T + 120", send_captured(path, &cap, msg, sizeof(msg)), 401, msg,
	    "nonce");
	expect("fresh nonce at T + 120", send_captured(path, &fresh120, msg, sizeof(msg)), 200,
	    msg, NULL);
	assert_int_equal(time(NULL), t0 + 120);
	wait_until(t0 + 121);
	expect("replay at T + 121", send_captured(path, &cap, msg, sizeof(msg)), 401, msg, NULL);
	expect("fresh nonce at T + 121", send_captured(path, &fresh121, msg, sizeof(msg)), 401,
	    msg, "created");
}

static int setup(void **state)
{
	(void)state;
	return harness_start_coordinator_tmp(&coord, tmp, sizeof(tmp), NULL);
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
		cmocka_unit_test(test_replay_at_window_edges),
	};
	curl_global_init(CURL_GLOBAL_ALL);
	return cmocka_run_group_tests(tests, setup, teardown);
}
