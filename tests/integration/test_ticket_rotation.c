/*
 * test_ticket_rotation.c - rotating the coordinator's ticket signing key
 * drops no ticket (docs/OPERATING.md "Rotating the ticket key"), against a
 * real coordinator, engine simulator and workers:
 *
 *   - `troop admin rotate-ticket-key --lead 4` publishes the new key at
 *     once (the JWKS lists both) while the old one still signs;
 *   - a running worker learns the new key from its heartbeat reply before
 *     the key signs, so the first ticket signed with it is served without
 *     a refetch;
 *   - a ticket signed with the old key before the rotation is still served
 *     after the switch, by the running worker and by a worker started
 *     after the switch (which reads the whole key set: before the key
 *     ring, it knew only the new key and refused such a ticket with 401);
 *   - a second rotation while one is under way is 409, a key that is not
 *     an --admin gets 403, and the rotation is an audit-log row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "encoding.h"
#include "worker_env.h"

#define MODEL "llama3:8b"
#define LEAD 4

static char tmp[256];
static troop_identity user, admin;
static harness_proc coord, sim;

static bool wait_log(const harness_proc *p, const char *needle, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 25) {
		if (harness_log_contains(p, needle))
			return true;
		harness_sleep_ms(25);
	}
	return false;
}

/* The kid in a ticket's JOSE header. */
static void ticket_kid_of(char out[64], const char *token)
{
	const char *dot = strchr(token, '.');
	char header[256];
	size_t n = 0;
	json_t *h;

	assert_non_null(dot);
	assert_int_equal(b64url_decode(header, sizeof(header) - 1, &n, token,
	    (size_t)(dot - token)), 0);
	header[n] = '\0';
	h = json_loads(header, 0, NULL);
	assert_non_null(h);
	snprintf(out, 64, "%s", json_string_value(json_object_get(h, "kid")));
	json_decref(h);
}

static char *ticket(const char *node)
{
	char *tok = NULL;
	int st = 0;

	for (int i = 0; i < 200; i++) {
		st = wenv_authorize(&tok, NULL, &user, coord.url, MODEL, node, 0);
		if (st != 503)
			break;
		harness_sleep_ms(50);
	}
	assert_int_equal(st, 200);
	return tok;
}

static int serve(const harness_proc *w, const char *tok)
{
	static const char body[] = "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"hi\"}],\"max_tokens\":4}";
	http_response r;
	int st;

	assert_int_equal(wenv_post(&r, w->url, "/v1/chat/completions", tok, body), 0);
	st = r.status;
	http_response_free(&r);
	return st;
}

/* `troop admin ARGS` as `as`; its output into *out (malloc'd). */
static int run_admin(char **out, const troop_identity *as, const char *args)
{
	char home[400], key[460], log[460], cmd[3000];
	int st;

	snprintf(home, sizeof(home), "%s/home-%.8s", tmp, as->id);
	snprintf(key, sizeof(key), "%s/identity.key", home);
	snprintf(log, sizeof(log), "%s/admin-cli.out", tmp);
	(void)mkdir(home, 0700);
	assert_int_equal(identity_save(as, key), 0);
	snprintf(cmd, sizeof(cmd), "TROOP_HOME='%s' '%s' admin --coordinator %s %s > '%s' 2>&1",
	    home, harness_troop(), coord.url, args, log);
	st = system(cmd);
	*out = wenv_read_file(log);
	assert_non_null(*out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t jwks_count(void)
{
	int st = 0;
	json_t *j = wenv_get_json(coord.url, "/.well-known/jwks.json", &st);
	size_t n;

	assert_int_equal(st, 200);
	n = json_array_size(json_object_get(j, "keys"));
	json_decref(j);
	return n;
}

static void test_rotation_drops_nothing(void **state)
{
	static const char *const wargs[] = { NULL };
	static harness_proc w, w2;
	char id[TROOP_ID_LEN + 1], old_kid[64], new_kid[64], kid[64], needle[160], *text;
	char *old_a, *old_b, *tok;
	const char *p;
	time_t switch_at;

	(void)state;
	assert_int_equal(wenv_start_worker(&w, tmp, "wrot", coord.url, sim.port, wargs), 0);
	assert_int_equal(wenv_worker_id(id, tmp, "wrot"), 0);
	assert_int_equal(jwks_count(), 1);

	/* two tickets signed by the old key, kept for after the switch */
	old_a = ticket(id);
	old_b = ticket(id);
	ticket_kid_of(old_kid, old_a);
	tok = ticket(id);
	assert_int_equal(serve(&w, tok), 200);
	free(tok);

	/* only an admin rotates */
	assert_int_equal(run_admin(&text, &user, "rotate-ticket-key"), 1);
	free(text);
	assert_int_equal(jwks_count(), 1);

	assert_int_equal(run_admin(&text, &admin, "rotate-ticket-key --lead " "4"
	    " --reason 'yearly rotation'"), 0);
	switch_at = time(NULL) + LEAD;
	p = strstr(text, "New ticket key ");
	assert_non_null(p);
	assert_int_equal(sscanf(p + strlen("New ticket key "), "%63[^:]", new_kid), 1);
	free(text);
	assert_string_not_equal(new_kid, old_kid);
	/* published now, both; the old key still signs */
	assert_int_equal(jwks_count(), 2);
	tok = ticket(id);
	ticket_kid_of(kid, tok);
	assert_string_equal(kid, old_kid);
	free(tok);
	/* one rotation at a time */
	assert_int_equal(run_admin(&text, &admin, "rotate-ticket-key"), 1);
	assert_non_null(strstr(text, "under way"));
	free(text);

	/* the running worker learns the new key from a heartbeat, before it signs */
	snprintf(needle, sizeof(needle), "kid=%s learnt=1", new_kid);
	assert_true(wait_log(&w, needle, (LEAD - 1) * 1000));
	assert_true(time(NULL) < switch_at);

	/* after the switch: tickets carry the new kid and are served at once */
	while (time(NULL) <= switch_at)
		harness_sleep_ms(100);
	tok = ticket(id);
	ticket_kid_of(kid, tok);
	assert_string_equal(kid, new_kid);
	assert_int_equal(serve(&w, tok), 200);
	free(tok);
	assert_false(harness_log_contains(&w, "source=refetch"));

	/* the old key's tickets in flight: still served */
	assert_int_equal(serve(&w, old_a), 200);

	/* a worker started after the switch reads the whole key set */
	assert_int_equal(wenv_stop_clean(&w), 0);
	assert_int_equal(wenv_start_worker(&w2, tmp, "wrot", coord.url, sim.port, wargs), 0);
	assert_int_equal(wenv_wait_peer(coord.url, id, "IDLE", 20000), 0);
	assert_int_equal(serve(&w2, old_b), 200);
	tok = ticket(id);
	assert_int_equal(serve(&w2, tok), 200);
	free(tok);

	/* the audit log keeps who rotated, and why */
	assert_int_equal(run_admin(&text, &admin, "audit --type ticket_key_rotate --json"), 0);
	assert_non_null(strstr(text, new_kid));
	assert_non_null(strstr(text, "yearly rotation"));
	assert_non_null(strstr(text, admin.id));
	free(text);
	free(old_a);
	free(old_b);
}

static int setup(void **state)
{
	char flag[128];
	const char *cargs[] = { flag, "--node-ttl", "3", "--ticket-ttl", "120", NULL };
	static const char *const sargs[] = { "--models", MODEL, NULL };
	char log[400];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	harness_tmpdir(tmp, sizeof(tmp));
	identity_generate(&user);
	identity_generate(&admin);
	snprintf(flag, sizeof(flag), "--admin=%s", admin.id);
	snprintf(log, sizeof(log), "%s/sim.log", tmp);
	if (wenv_start_sim(&sim, log, sargs) != 0)
		return -1;
	return wenv_start_coordinator(&coord, tmp, "coord", 0, cargs);
}

static int teardown(void **state)
{
	(void)state;
	wenv_stop_all();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rotation_drops_nothing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
