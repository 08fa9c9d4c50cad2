/*
 * test_worker_lifecycle.c - `troop worker` over time, as real processes:
 * --donate idle turns the node BUSY while the owner uses the GPU (a fake
 * nvidia-smi on PATH), SIGTERM withdraws the node at once and lets the job
 * in flight finish, and receipts are spooled while the coordinator is down
 * and sent once it is back, across a worker restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"
#include "worker_env.h"

#define MODEL "llama3:8b"

static char tmp[256];
static troop_identity user;
static harness_proc coord, sim, slow_sim;

static char *chat_body(const char *prompt, int max_tokens, bool stream)
{
	json_t *b = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model", MODEL, "messages",
	    "role", "user", "content", prompt, "max_tokens", max_tokens, "stream", stream);
	char *s = json_dumps(b, JSON_COMPACT);

	json_decref(b);
	return s;
}

static char *ticket(const char *coord_url, const char *node, char *job_id)
{
	char *tok = NULL;
	int st = 0;

	for (int i = 0; i < 200; i++) {
		st = wenv_authorize(&tok, job_id, &user, coord_url, MODEL, node, 0);
		if (st != 503)
			break;
		harness_sleep_ms(50);
	}
	assert_int_equal(st, 200);
	return tok;
}

static bool wait_log(const harness_proc *p, const char *needle, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 25) {
		if (harness_log_contains(p, needle))
			return true;
		harness_sleep_ms(25);
	}
	return false;
}

static bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

/* ---- donate idle -------------------------------------------------------------------- */

static void test_donate_idle_follows_owner(void **state)
{
	static const char *const args[] = { "--gpu-sample", "1", "--donate", "idle",
		"--busy-threshold", "30", NULL };
	char dir[400], script[450], util[450], path[2048], id[TROOP_ID_LEN + 1];
	const char *old_path = getenv("PATH");
	char *saved = strdup(old_path ? old_path : "/usr/bin:/bin");
	static harness_proc w;
	json_t *peers, *n;
	size_t i;

	snprintf(dir, sizeof(dir), "%s/fakebin", tmp);
	mkdir(dir, 0700);
	snprintf(util, sizeof(util), "%s/smi.csv", tmp);
	snprintf(script, sizeof(script), "%s/nvidia-smi", dir);
	{
		char body[600];
		snprintf(body, sizeof(body), "#!/bin/sh\ncat '%s'\n", util);
		write_text(script, body, 0755);
	}
	/* the owner is gaming: 95% */
	write_text(util, "95, 20000, 24564, NVIDIA Fake GPU\n", 0644);
	snprintf(path, sizeof(path), "%s:%s", dir, saved);
	setenv("PATH", path, 1);
	setenv("TROOP_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
	assert_int_equal(wenv_start_worker(&w, tmp, "wgpu", coord.url, sim.port, args), 0);
	setenv("PATH", saved, 1);
	unsetenv("TROOP_NVML_LIB");
	assert_int_equal(wenv_worker_id(id, tmp, "wgpu"), 0);

	assert_int_equal(wenv_wait_peer(coord.url, id, "BUSY", 20000), 0);
	peers = wenv_get_json(coord.url, "/peers", NULL);
	json_array_foreach(json_object_get(peers, "nodes"), i, n) {
		json_t *hw = json_object_get(n, "hardware");
		if (strcmp(json_string_value(json_object_get(n, "node_id")), id) != 0)
			continue;
		assert_string_equal(json_string_value(json_object_get(hw, "gpu")), "NVIDIA Fake GPU");
		assert_int_equal(json_integer_value(json_object_get(hw, "gpu_count")), 1);
		assert_int_equal(json_integer_value(json_object_get(hw, "gpu_util")), 95);
	}
	json_decref(peers);
	/* a BUSY node gets no tickets */
	{
		char *tok = NULL;
		assert_int_equal(wenv_authorize(&tok, NULL, &user, coord.url, MODEL, id, 0), 503);
		free(tok);
	}
	/* the owner stops: back to IDLE */
	write_text(util, "2, 500, 24564, NVIDIA Fake GPU\n", 0644);
	assert_int_equal(wenv_wait_peer(coord.url, id, "IDLE", 20000), 0);
	/* and busy again */
	write_text(util, "80, 20000, 24564, NVIDIA Fake GPU\n", 0644);
	assert_int_equal(wenv_wait_peer(coord.url, id, "BUSY", 20000), 0);
	assert_int_equal(harness_stop(&w, SIGTERM), 0);
	free(saved);
}

/* ---- model refresh ------------------------------------------------------------------- */

static bool peer_has_model(const char *node_id, const char *model)
{
	char path[300];
	json_t *p, *n;
	size_t i;
	bool found = false;

	snprintf(path, sizeof(path), "/peers?model=%s", model);
	p = wenv_get_json(coord.url, path, NULL);
	json_array_foreach(json_object_get(p, "nodes"), i, n)
		if (strcmp(json_string_value(json_object_get(n, "node_id")) ?: "", node_id) == 0)
			found = true;
	json_decref(p);
	return found;
}

static void test_model_change_heartbeated(void **state)
{
	static const char *const a_args[] = { "--models", "alpha:1b", NULL };
	static const char *const w_args[] = { "--model-refresh", "1", NULL };
	static harness_proc sa, sb, w;
	char log[400], listen[64], id[TROOP_ID_LEN + 1];
	const char *b_args[] = { "--listen", listen, "--models", "beta:2b", NULL };
	bool seen = false;

	snprintf(log, sizeof(log), "%s/sim-alpha.log", tmp);
	assert_int_equal(wenv_start_sim(&sa, log, a_args), 0);
	assert_int_equal(wenv_start_worker(&w, tmp, "wmodels", coord.url, sa.port, w_args), 0);
	assert_int_equal(wenv_worker_id(id, tmp, "wmodels"), 0);
	assert_true(peer_has_model(id, "alpha:1b"));
	assert_false(peer_has_model(id, "beta:2b"));
	/* the engine is replaced by one with another model, on the same port */
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", sa.port);
	harness_stop(&sa, SIGTERM);
	snprintf(log, sizeof(log), "%s/sim-beta.log", tmp);
	assert_int_equal(wenv_start_sim(&sb, log, b_args), 0);
	/* re-read within a second, heartbeated at once (not at the next
	 * 10 s beat) */
	for (int i = 0; i < 200 && !seen; i++) {
		seen = peer_has_model(id, "beta:2b");
		if (!seen)
			harness_sleep_ms(50);
	}
	assert_true(seen);
	assert_false(peer_has_model(id, "alpha:1b"));
	assert_true(harness_log_contains(&w, "models_changed"));
	assert_int_equal(harness_stop(&w, SIGTERM), 0);
	harness_stop(&sb, SIGTERM);
}

/* ---- SIGTERM -------------------------------------------------------------------------- */

struct bg {
	pthread_t t;
	const char *url;
	char *token, *body, *buf;
	size_t len;
	int status;
	atomic_bool first, done;
};

static int bg_data(void *arg, const char *data, size_t len)
{
	struct bg *b = arg;

	b->buf = realloc(b->buf, b->len + len + 1);
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	b->buf[b->len] = '\0';
	if (strstr(b->buf, "\n\n"))
		atomic_store(&b->first, true);
	return 0;
}

static void *bg_main(void *arg)
{
	struct bg *b = arg;

	wenv_post_stream(&b->status, b->url, "/v1/chat/completions", b->token, b->body,
	    bg_data, b);
	atomic_store(&b->first, true);
	atomic_store(&b->done, true);
	return NULL;
}

static void test_sigterm_withdraws_and_drains(void **state)
{
	static harness_proc w;
	char id[TROOP_ID_LEN + 1];
	struct bg b = { 0 };
	int st = 0;

	assert_int_equal(wenv_start_worker(&w, tmp, "wterm", coord.url, slow_sim.port, NULL), 0);
	assert_int_equal(wenv_worker_id(id, tmp, "wterm"), 0);
	assert_int_equal(wenv_wait_peer(coord.url, id, "IDLE", 5000), 0);
	b.url = w.url;
	b.body = chat_body("a slow one", 60, true);  /* 3 s at 20 tokens/s */
	b.token = ticket(coord.url, id, NULL);
	assert_int_equal(pthread_create(&b.t, NULL, bg_main, &b), 0);
	while (!atomic_load(&b.first))
		harness_sleep_ms(5);
	assert_false(atomic_load(&b.done));
	kill(w.pid, SIGTERM);
	/* withdrawn at once (OFFLINE), long before a TTL could expire, and
	 * while the job is still streaming */
	assert_int_equal(wenv_wait_peer(coord.url, id, "", 5000), 0);
	assert_false(atomic_load(&b.done));
	pthread_join(b.t, NULL);
	/* the job in flight finished whole */
	assert_int_equal(b.status, 200);
	if (wenv_count(b.buf, "\"chat.completion.chunk\"") != 62)
		fprintf(stderr, "the stream as received (%zu bytes):\n%s\n", b.len, b.buf);
	assert_int_equal(wenv_count(b.buf, "\"chat.completion.chunk\""), 62);
	assert_int_equal(wenv_count(b.buf, "data: [DONE]"), 1);
	assert_null(strstr(b.buf, "\"error\""));
	assert_int_equal(waitpid(w.pid, &st, 0), w.pid);
	w.pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(harness_log_contains(&w, "status=OFFLINE result=ok"));
	free(b.buf);
	free(b.token);
	free(b.body);
}

/* ---- receipts ------------------------------------------------------------------------- */

static void test_receipts_spooled_and_resent(void **state)
{
	static harness_proc c2, w;
	char id[TROOP_ID_LEN + 1], job0[64], job[64], spool[600], needle[128];
	char *tok, *body = chat_body("pay me", 4, false), *text;
	json_t *rec;
	http_response r;
	int port;

	assert_int_equal(wenv_start_coordinator(&c2, tmp, "coord2", 0, NULL), 0);
	port = c2.port;
	assert_int_equal(wenv_start_worker(&w, tmp, "wrcpt", c2.url, sim.port, NULL), 0);
	assert_int_equal(wenv_worker_id(id, tmp, "wrcpt"), 0);

	/* coordinator up: the receipt settles and leaves no file */
	tok = ticket(c2.url, id, job0);
	assert_int_equal(wenv_post(&r, w.url, "/v1/chat/completions", tok, body), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	free(tok);
	snprintf(needle, sizeof(needle), "settled job=%s", job0);
	assert_true(wait_log(&c2, needle, 10000));
	snprintf(spool, sizeof(spool), "%s/wrcpt-home/worker/receipts/%s.json", tmp, job0);
	for (int i = 0; i < 400 && file_exists(spool); i++)
		harness_sleep_ms(25);
	assert_false(file_exists(spool));

	/* coordinator down: the ticket it issued is still served; the
	 * receipt waits in the spool and is retried */
	tok = ticket(c2.url, id, job);
	assert_int_equal(harness_stop(&c2, SIGTERM), 0);
	assert_int_equal(wenv_post(&r, w.url, "/v1/chat/completions", tok, body), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	free(tok);
	snprintf(spool, sizeof(spool), "%s/wrcpt-home/worker/receipts/%s.json", tmp, job);
	for (int i = 0; i < 400 && !file_exists(spool); i++)
		harness_sleep_ms(25);
	assert_true(file_exists(spool));
	text = wenv_read_file(spool);
	rec = json_loads(text, 0, NULL);
	assert_non_null(rec);
	assert_string_equal(json_string_value(json_object_get(rec, "job_id")), job);
	assert_string_equal(json_string_value(json_object_get(rec, "node_id")), id);
	assert_string_equal(json_string_value(json_object_get(rec, "requester")), user.id);
	assert_string_equal(json_string_value(json_object_get(rec, "model")), MODEL);
	assert_string_equal(json_string_value(json_object_get(rec, "outcome")), "ok");
	assert_int_equal(json_integer_value(json_object_get(rec, "completion_tokens")), 4);
	assert_true(json_is_integer(json_object_get(rec, "duration_ms")));
	json_decref(rec);
	free(text);
	snprintf(needle, sizeof(needle), "receipt_retry job=%s", job);
	assert_true(wait_log(&w, needle, 10000));

	/* the worker restarts with the receipt still unsent: it stays on disk */
	assert_int_equal(harness_stop(&w, SIGTERM), 0);
	assert_true(file_exists(spool));

	/* the coordinator is back on its address; the new worker sends it */
	assert_int_equal(wenv_start_coordinator(&c2, tmp, "coord2", port, NULL), 0);
	assert_int_equal(wenv_start_worker(&w, tmp, "wrcpt", c2.url, sim.port, NULL), 0);
	assert_true(wait_log(&w, "loaded=1", 5000));
	snprintf(needle, sizeof(needle), "settled job=%s", job);
	assert_true(wait_log(&c2, needle, 15000));
	for (int i = 0; i < 400 && file_exists(spool); i++)
		harness_sleep_ms(25);
	assert_false(file_exists(spool));
	assert_int_equal(harness_stop(&w, SIGTERM), 0);
	assert_int_equal(harness_stop(&c2, SIGTERM), 0);
	free(body);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int setup(void **state)
{
	static const char *const slow_args[] = { "--tokens-per-second", "20", NULL };
	char log[400];

	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	identity_generate(&user);
	assert_int_equal(wenv_start_coordinator(&coord, tmp, "coord", 0, NULL), 0);
	snprintf(log, sizeof(log), "%s/sim.log", tmp);
	assert_int_equal(wenv_start_sim(&sim, log, NULL), 0);
	snprintf(log, sizeof(log), "%s/sim-slow.log", tmp);
	assert_int_equal(wenv_start_sim(&slow_sim, log, slow_args), 0);
	return 0;
}

static int teardown(void **state)
{
	harness_stop_all();
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_donate_idle_follows_owner),
		cmocka_unit_test(test_model_change_heartbeated),
		cmocka_unit_test(test_sigterm_withdraws_and_drains),
		cmocka_unit_test(test_receipts_spooled_and_resent),
	};

	/* the harness stops what is left and removes tmp at exit */
	return cmocka_run_group_tests(tests, setup, teardown);
}
