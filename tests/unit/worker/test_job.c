/*
 * test_job.c - the worker's token counter (job.h): usage read from the recorded engine
 * replies, fed at every byte split, streamed or whole, chat or completions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <sodium.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "encoding.h"
#include "error.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"
#include "ticket.h"

static char *fixture(const char *name, size_t *len)
{
	const char *dir = getenv("TROOP_FIXTURES");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "../shared/fixtures/engines", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* ---- token counter ------------------------------------------------------------- */

static void count(const char *text, size_t len, bool sse, size_t split,
    int64_t *pt, int64_t *ct, bool *rep)
{
	usage_counter *u;

	assert_int_equal(usage_counter_new(&u, sse), 0);
	if (split == 0 || split >= len) {
		usage_counter_feed(u, text, len);
	} else {
		usage_counter_feed(u, text, split);
		usage_counter_feed(u, text + split, len - split);
	}
	usage_counter_result(u, pt, ct, rep);
	usage_counter_free(u);
}

static void test_usage_from_stream_any_split(void **state)
{
	size_t len;
	char *sse = fixture("openai_chat_stream.sse", &len);

	/* the fixture ends with a usage chunk: 24 prompt, 5 completion */
	for (size_t split = 0; split <= len; split++) {
		int64_t pt, ct;
		bool rep;

		count(sse, len, true, split, &pt, &ct, &rep);
		assert_true(rep);
		assert_int_equal(pt, 24);
		assert_int_equal(ct, 5);
	}
	free(sse);
}

static void test_usage_counted_without_usage_chunk(void **state)
{
	size_t len;
	char *sse = fixture("openai_chat_stream.sse", &len);
	char *cut = strstr(sse, "data: {\"id\":\"chatcmpl-5f0c2d8e91b34a7c\",\"object\":"
	    "\"chat.completion.chunk\",\"created\":1787379410,\"model\":\"Qwen/Qwen2.5-7B-Instruct\","
	    "\"choices\":[],\"usage\"");
	char *noUsage;
	int64_t pt, ct;
	bool rep;

	assert_non_null(cut);
	/* the same stream without its usage chunk: content deltas are counted
	 * ("The", " sky", " is blue", "."; the role and the final empty delta
	 * are not) */
	noUsage = malloc(len + 1);
	memcpy(noUsage, sse, (size_t)(cut - sse));
	strcpy(noUsage + (cut - sse), "data: [DONE]\n\n");
	for (size_t split = 0; split <= strlen(noUsage); split += 7) {
		count(noUsage, strlen(noUsage), true, split, &pt, &ct, &rep);
		assert_false(rep);
		assert_int_equal(pt, 0);
		assert_int_equal(ct, 4);
	}
	free(noUsage);
	free(sse);
}

static void test_usage_from_json_reply(void **state)
{
	size_t len;
	char *js = fixture("openai_chat.json", &len);
	char *big;
	int64_t pt, ct;
	bool rep;

	for (size_t split = 0; split <= len; split += 13) {
		count(js, len, false, split, &pt, &ct, &rep);
		assert_true(rep);
		assert_int_equal(pt, 24);
		assert_int_equal(ct, 28);
	}
	/* a long reply: only the tail is kept, the usage is still found */
	big = malloc(len + 200000);
	memset(big, ' ', 200000);
	memcpy(big + 200000, js, len);
	count(big, len + 200000, false, 100000, &pt, &ct, &rep);
	assert_true(rep);
	assert_int_equal(ct, 28);
	free(big);
	/* no usage at all */
	count("{\"object\":\"list\",\"data\":[]}", 27, false, 0, &pt, &ct, &rep);
	assert_false(rep);
	assert_int_equal(ct, 0);
	free(js);
}

static void test_usage_completions_text(void **state)
{
	static const char s[] =
	    "data: {\"choices\":[{\"index\":0,\"text\":\"Slowly\"}]}\n\n"
	    "data: {\"choices\":[{\"index\":0,\"text\" : \" short.\"}]}\n\n"
	    "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n"
	    "data: [DONE]\n\n";
	int64_t pt, ct;
	bool rep;

	count(s, strlen(s), true, 0, &pt, &ct, &rep);
	assert_false(rep);
	assert_int_equal(ct, 2);
}

/* The one-pass scan of an event (x86-64: 16 bytes at a time) agrees with
 * the reference (a memmem search per key) on every input: the keys at
 * every alignment and near the end, and a million mutated events. */
static void scan_agrees(const char *s, size_t n)
{
	bool u1, t1, u2, t2;

	usage_scan_event(s, n, &u1, &t1);
	usage_scan_event_search(s, n, &u2, &t2);
	if (u1 != u2 || t1 != t2)
		fail_msg("scan %d/%d, search %d/%d: %.*s", u1, t1, u2, t2, (int)n, s);
}

static void test_scan_event(void **state)
{
	static const char *const seeds[] = {
		"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
		"\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},"
		"\"finish_reason\":null}],\"usage\":null}",
		"{\"usage\": {\"prompt_tokens\":1,\"completion_tokens\":2}}",
		"{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}",
		"{\"delta\" : \"\"}",
		"{\"text\":\"\\\"content\\\": \\\"x\"}",
		"\"text\"text\": \"a\"",
		"{\"content\":\"\"}",
		"{\"type\":\"response.output_text.delta\",\"delta\":\"x\"}",
	};
	static const char alpha[] = "\"usagecontextdl: n{}\\";
	char buf[256];
	bool u, t;

	(void)state;
	/* the answers themselves, for the shapes that matter */
	usage_scan_event(seeds[0], strlen(seeds[0]), &u, &t);
	assert_false(u);
	assert_true(t);
	usage_scan_event(seeds[1], strlen(seeds[1]), &u, &t);
	assert_true(u);
	assert_false(t);
	usage_scan_event(seeds[6], strlen(seeds[6]), &u, &t);
	assert_false(u || t);
	/* each seed shifted by 0..40 bytes, and cut at every length */
	for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
		size_t n = strlen(seeds[k]);
		for (size_t pad = 0; pad <= 40; pad++) {
			memset(buf, ' ', pad);
			memcpy(buf + pad, seeds[k], n);
			for (size_t cut = 0; cut <= pad + n; cut++)
				scan_agrees(buf, cut);
		}
	}
	/* mutated: bytes changed, inserted and removed (a fixed sequence) */
	uint64_t x = 0x9e3779b97f4a7c15u;
	for (int it = 0; it < 1000000; it++) {
		const char *sd = seeds[it % (sizeof(seeds) / sizeof(seeds[0]))];
		size_t n = strlen(sd);
		memcpy(buf, sd, n);
		for (int m = 0; m < 1 + it % 5; m++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t at = (size_t)(x % (n + 1));
			char c = alpha[(x >> 32) % (sizeof(alpha) - 1)];
			switch ((x >> 40) % 3) {
			case 0: if (at < n) buf[at] = c; break;
			case 1: if (n < sizeof(buf) - 1) { memmove(buf + at + 1, buf + at, n - at);
				buf[at] = c; n++; } break;
			default: if (at < n) { memmove(buf + at, buf + at + 1, n - at - 1); n--; }
			}
		}
		scan_agrees(buf, n);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage_from_stream_any_split),
		cmocka_unit_test(test_usage_counted_without_usage_chunk),
		cmocka_unit_test(test_usage_from_json_reply),
		cmocka_unit_test(test_usage_completions_text),
		cmocka_unit_test(test_scan_event),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
