/*
 * test_peers_pages.c - /peers lists every live node, a page at a time
 * (issue 16 item 5), on a real coordinator: 2,500 nodes register with
 * signed heartbeats (more than the 1,000 one reply may hold), then
 *   - paging with next_cursor, at limit=1000 and at limit=77, sees every
 *     node exactly once, in id order, each reply at most `limit` nodes,
 *     the last page with next_cursor null;
 *   - a model filter pages the same way over the nodes serving it;
 *   - a cursor that is not one (not base64url, too long, empty, a NUL or a
 *     space inside) gets 400 with the JSON error shape;
 *   - `troop nodes --json` follows the cursors to all 2,500 nodes, and
 *     `--limit 1234` stops at 1,234.
 * test_pg_coordinator.sh runs it again on Redis (harness_backend_args).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <curl/curl.h>

#include "encoding.h"
#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"

#define NODES 2500
#define MODEL_EVERY 5           /* every 5th node also serves "pages-model" */

static harness_proc coord;
static char tmp[256];
static char ids[NODES][TROOP_ID_LEN + 1];
static char last_id[TROOP_ID_LEN + 1];  /* the last node of a whole walk */

static int cmp_str(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

/* GET path; returns the status and the parsed body in *out (may be NULL). */
static int get_json(const char *path, json_t **out)
{
	http_client *c;
	char url[600];
	int status = 0;

	assert_int_equal(http_client_new(&c), 0);
	snprintf(url, sizeof(url), "%s%s", coord.url, path);
	*out = NULL;
	assert_int_equal(http_request_json(c, &status, out, "GET", url, NULL, NULL), 0);
	http_client_free(c);
	return status;
}

static void register_nodes(void)
{
	http_client *c;

	assert_int_equal(http_client_new(&c), 0);
	for (int k = 0; k < NODES; k++) {
		troop_identity node;
		json_t *models = json_array(), *body, *out = NULL;
		int status = 0;

		identity_generate(&node);
		snprintf(ids[k], sizeof(ids[k]), "%s", node.id);
		json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s}", "name",
		    "every-model", "content_hash", "", "size_bytes", (json_int_t)1, "engine",
		    "vllm"));
		if (k % MODEL_EVERY == 0)
			json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s}", "name",
			    "pages-model", "content_hash", "", "size_bytes", (json_int_t)1,
			    "engine", "vllm"));
		body = json_pack("{s:s, s:s, s:s, s:i, s:s, s:o, s:{s:i, s:i}}", "node_id",
		    node.id, "name", "page", "tailscale_ip", "127.0.0.1", "port", 8421,
		    "status", "IDLE", "models", models, "load", "active_jobs", 0, "max_jobs", 4);
		assert_int_equal(http_request_signed(c, &status, &out, &node, "POST", coord.url,
		    "/heartbeat", body), 0);
		if (status != 200)
			fail_msg("heartbeat %d answered %d", k, status);
		json_decref(out);
		json_decref(body);
	}
	http_client_free(c);
}

/* Walk /peers?limit=L[&model=M] to the end: the ids listed must be the
 * registered ids that the filter keeps (every `every`-th one), each once,
 * in id order, every page but the last full (or at the byte budget). */
static void walk(int limit, const char *model, int every)
{
	static char seen[NODES][TROOP_ID_LEN + 1];
	static char want[NODES][TROOP_ID_LEN + 1];
	char cursor[200] = "", path[500];
	size_t n = 0, nw = 0;
	int pages = 0;

	for (;;) {
		json_t *rep, *nodes, *node;
		const char *next;
		size_t i;

		snprintf(path, sizeof(path), "/peers?limit=%d%s%s%s%s", limit,
		    model ? "&model=" : "", model ? model : "", cursor[0] ? "&cursor=" : "",
		    cursor);
		assert_int_equal(get_json(path, &rep), 200);
		pages++;
		nodes = json_object_get(rep, "nodes");
		assert_true(json_is_array(nodes));
		assert_true(json_array_size(nodes) <= (size_t)limit);
		assert_int_equal(json_integer_value(json_object_get(rep, "count")),
		    (json_int_t)json_array_size(nodes));
		json_array_foreach(nodes, i, node) {
			const char *id = json_string_value(json_object_get(node, "node_id"));

			assert_non_null(id);
			assert_true(n < NODES);
			/* in id (byte) order, in memory and in Redis */
			if (n > 0)
				assert_true(strcmp(seen[n - 1], id) < 0);
			snprintf(seen[n++], sizeof(seen[0]), "%s", id);
		}
		next = json_string_value(json_object_get(rep, "next_cursor"));
		assert_true(json_is_boolean(json_object_get(rep, "truncated")));
		assert_int_equal(json_is_true(json_object_get(rep, "truncated")), next != NULL);
		if (next == NULL) {
			assert_true(json_is_null(json_object_get(rep, "next_cursor")));
			json_decref(rep);
			break;
		}
		/* a page (full, or cut at the reply's byte budget), and a
		 * cursor that is opaque and short */
		assert_true(json_array_size(nodes) > 0);
		if (limit <= 100)
			assert_int_equal(json_array_size(nodes), (size_t)limit);
		assert_true(strlen(next) > 0 && strlen(next) < 100);
		snprintf(cursor, sizeof(cursor), "%s", next);
		json_decref(rep);
		assert_true(pages < NODES);
	}
	if (n > 0 && model == NULL)
		snprintf(last_id, sizeof(last_id), "%.*s", (int)sizeof(last_id) - 1, seen[n - 1]);
	for (int k = 0; k < NODES; k += every)
		memcpy(want[nw++], ids[k], sizeof(want[0]));
	qsort(want, nw, sizeof(want[0]), cmp_str);
	/* each once: the same ids, no repeat, none missing */
	qsort(seen, n, sizeof(seen[0]), cmp_str);
	printf("# limit=%d model=%s: %zu nodes in %d pages\n", limit, model ? model : "-", n,
	    pages);
	assert_int_equal(n, nw);
	for (size_t k = 0; k < n; k++)
		assert_string_equal(seen[k], want[k]);
}

static void test_pages_every_node_once(void **state)
{
	(void)state;
	register_nodes();
	walk(1000, NULL, 1);
	walk(77, NULL, 1);
	walk(1000, "pages-model", MODEL_EVERY);
	walk(64, "pages-model", MODEL_EVERY);
}

static void test_bad_cursor(void **state)
{
	/* '%2B' is '+': base64, not base64url; 'AA' decodes to NULs; 'IA' to a
	 * space; the long one to more bytes than a node id has */
	static const char *const bad[] = { "!!!", "%2B%2B%2B%2B", "AA", "IA", "a",
		"QUJDRA==", "", "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB"
		"QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB" "QUFB"
		"QUFB" "QUFB" "QUFB" "QUFB" };
	char path[400];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *rep, *err;

		snprintf(path, sizeof(path), "/peers?limit=5&cursor=%s", bad[i]);
		if (get_json(path, &rep) != 400)
			fail_msg("cursor '%s' was not refused", bad[i]);
		err = json_object_get(rep, "error");
		assert_non_null(json_string_value(json_object_get(err, "message")));
		assert_non_null(json_string_value(json_object_get(err, "type")));
		assert_true(json_object_get(err, "code") != NULL);
		json_decref(rep);
	}
	/* a well-formed cursor after the last node: an empty last page */
	{
		char cur[120];
		json_t *rep;

		assert_true(b64url_encode(cur, sizeof(cur), last_id, strlen(last_id)) > 0);
		snprintf(path, sizeof(path), "/peers?limit=5&cursor=%s", cur);
		assert_int_equal(get_json(path, &rep), 200);
		assert_int_equal(json_array_size(json_object_get(rep, "nodes")), 0);
		assert_true(json_is_null(json_object_get(rep, "next_cursor")));
		json_decref(rep);
	}
}

/* `troop nodes ARGS --json`: the parsed output. */
static json_t *troop_nodes(const char *limit)
{
	char outp[320], home[320];
	const char *argv[10];
	json_t *v;
	json_error_t e;
	int n = 0, status;
	pid_t pid;

	snprintf(outp, sizeof(outp), "%s/nodes.out", tmp);
	snprintf(home, sizeof(home), "%s/home", tmp);
	mkdir(home, 0700);
	argv[n++] = harness_troop();
	argv[n++] = "nodes";
	argv[n++] = "--json";
	argv[n++] = "--coordinator";
	argv[n++] = coord.url;
	if (limit) {
		argv[n++] = "--limit";
		argv[n++] = limit;
	}
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(o, 1);
		setenv("TROOP_HOME", home, 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	v = json_load_file(outp, 0, &e);
	if (!v)
		fail_msg("troop nodes --json: not JSON (%s)", e.text);
	return v;
}

static void test_cli_follows_cursors(void **state)
{
	json_t *v, *node;
	size_t i;
	const char *prev = "";

	(void)state;
	v = troop_nodes(NULL);
	assert_int_equal(json_integer_value(json_object_get(v, "count")), NODES);
	assert_int_equal(json_array_size(json_object_get(v, "nodes")), NODES);
	json_array_foreach(json_object_get(v, "nodes"), i, node) {
		const char *id = json_string_value(json_object_get(node, "node_id"));

		assert_non_null(id);
		assert_true(strcmp(prev, id) < 0);
		prev = id;
	}
	assert_true(json_is_null(json_object_get(v, "next_cursor")));
	json_decref(v);

	v = troop_nodes("1234");
	assert_int_equal(json_array_size(json_object_get(v, "nodes")), 1234);
	assert_true(json_is_true(json_object_get(v, "truncated")));
	assert_non_null(json_string_value(json_object_get(v, "next_cursor")));
	json_decref(v);
}

static int setup(void **state)
{
	/* nodes stay live for the whole test; reads are not rate-limited here
	 * (test_anon.c covers that) */
	static const char *const extra[] = { "--node-ttl", "600", "--anon-rate-limit",
		"100000", NULL };
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
		cmocka_unit_test(test_pages_every_node_once),
		cmocka_unit_test(test_bad_cursor),
		cmocka_unit_test(test_cli_follows_cursors),
	};
	curl_global_init(CURL_GLOBAL_ALL);
	return cmocka_run_group_tests(tests, setup, teardown);
}
