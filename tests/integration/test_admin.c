/*
 * test_admin.c - the operator's tools (issue 19, "The operator's tools")
 * against a real coordinator, driven over HTTP and through the real
 * `troop admin` command:
 *
 *   - a suspended node is not chosen by /authorize, and the receipt of a
 *     job it was given before its suspension settles at 0 (its requester
 *     refunded, the conservation invariant intact); unsuspended, it is
 *     chosen again;
 *   - a suspended account gets 403 from /authorize with the operator's
 *     reason; unsuspended, it authorizes again;
 *   - every admin action (grant, suspend, unsuspend, invite, rate limit)
 *     is an audit row with who, what, target, when and why, read back by
 *     GET /admin/audit and `troop admin audit`, filtered and paginated;
 *   - `troop admin invite` makes a code an account redeems;
 *   - per-account rate limits on /authorize: the coordinator's default
 *     (--account-rate-limit) and an account's own (`troop admin
 *     rate-limit`), 429 with Retry-After; and a per-address one
 *     (--authorize-address-limit);
 *   - `troop admin list nodes|accounts`, table and --json, paginated;
 *   - none of it answers a key that is not an --admin;
 *   - an owner's display name on the leaderboard (`troop account name`):
 *     opt-in, cleared again, and refused with a 400 when it could pass for
 *     another (direction overrides, invisible characters), is too long or
 *     has control characters.
 *
 * With TROOP_TEST_DATABASE_URL / TROOP_TEST_REGISTRY_URL
 * (tests/integration/test_pg_coordinator.sh) it runs on PostgreSQL and
 * Redis, with a second coordinator sharing both: a suspension made on one
 * applies on the other within about a second (the time it keeps an
 * account's standing; on the one that made it at once), and an account's
 * rate is counted across the two.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "ledger.h"

#define DEFAULT_RATE 25

static char tmp[256], dbpath[4200];
static harness_proc coord, coord_b;
static bool have_b;
static http_client *hc;
static ledger *led;
static troop_identity admin;

/* A signed request; `body` (may be NULL) is stolen: callers pass json_pack's. */
static json_t *call_at(const harness_proc *p, const troop_identity *id, const char *method,
    const char *path, json_t *body, int *status)
{
	json_t *out = NULL;
	int rc = http_request_signed(hc, status, &out, id, method, p->url, path, body);

	json_decref(body);
	assert_int_equal(rc, 0);
	return out;
}

static json_t *call(const troop_identity *id, const char *method, const char *path,
    json_t *body, int *status)
{
	return call_at(&coord, id, method, path, body, status);
}

static void check_invariant(void)
{
	ledger_conn *c = NULL;
	ledger_totals t;

	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_totals_get(&t, c), 0);
	assert_true(ledger_totals_balanced(&t));
	ledger_conn_close(c);
}

static const char *err_message(const json_t *out)
{
	const char *m = json_string_value(json_object_get(json_object_get(out, "error"),
	    "message"));
	return m ? m : "";
}

/* A node of the test's own key at 127.0.0.1:9 serving `model`, through
 * coordinator p. */
static void heartbeat_at(const harness_proc *p, const troop_identity *node, const char *model)
{
	int st;
	json_t *b = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s}], s:{s:i, s:i}}",
	    "node_id", node->id, "tailscale_ip", "127.0.0.1", "port", 9, "status", "IDLE",
	    "models", "name", model, "load", "active_jobs", 0, "max_jobs", 1000);
	json_t *out = call_at(p, node, "POST", "/heartbeat", b, &st);

	assert_int_equal(st, 200);
	json_decref(out);
}

/* POST /authorize on p; the job id into job (when 200), the error message
 * into msg (otherwise).  Returns the status. */
static int authorize_at(const harness_proc *p, char job[64], const troop_identity *who,
    const char *model, char *msg, size_t mlen)
{
	int st;
	json_t *b = json_pack("{s:s, s:i}", "model", model, "max_seconds", 2);
	json_t *out = call_at(p, who, "POST", "/authorize", b, &st);

	if (st == 200 && job)
		snprintf(job, 64, "%s", json_string_value(json_object_get(out, "job_id")));
	else if (st != 200 && msg)
		snprintf(msg, mlen, "%s", err_message(out));
	json_decref(out);
	return st;
}

static int authorize(char job[64], const troop_identity *who, const char *model, char *msg,
    size_t mlen)
{
	return authorize_at(&coord, job, who, model, msg, mlen);
}

/* `troop admin ARGS` as the admin (or as `as`, a key of its own home);
 * its output into *out (malloc'd).  Returns the exit status. */
static int run_troop(char **out, const troop_identity *as, const char *cmd_name,
    const char *args)
{
	char home[400], key[460], log[460], cmd[3000];
	int st;

	snprintf(home, sizeof(home), "%s/home-%.8s", tmp, as->id);
	snprintf(key, sizeof(key), "%s/identity.key", home);
	snprintf(log, sizeof(log), "%s/admin-cli.out", tmp);
	(void)mkdir(home, 0700);
	assert_int_equal(identity_save(as, key), 0);
	/* the options first: ids after "--" (an id may start with '-') */
	snprintf(cmd, sizeof(cmd), "TROOP_HOME='%s' '%s' %s --coordinator %s %s > '%s' 2>&1",
	    home, harness_troop(), cmd_name, coord.url, args, log);
	st = system(cmd);
	*out = harness_read_file(log);
	assert_non_null(*out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_admin(char **out, const troop_identity *as, const char *args)
{
	return run_troop(out, as, "admin", args);
}

/* The audit rows GET /admin/audit?QUERY answers (new reference). */
static json_t *audit(const char *query, json_t **next)
{
	char path[600];
	int st;
	json_t *out;

	snprintf(path, sizeof(path), "/admin/audit?%s", query);
	out = call(&admin, "GET", path, NULL, &st);
	assert_int_equal(st, 200);
	if (next)
		*next = json_incref(json_object_get(out, "next"));
	json_incref(json_object_get(out, "entries"));
	json_t *rows = json_object_get(out, "entries");
	json_decref(out);
	assert_true(json_is_array(rows));
	return rows;
}

/* Whether `rows` has one of type `type` on `target` with reason `reason`
 * (NULL: any) by the admin. */
static bool has_row(const json_t *rows, const char *type, const char *target,
    const char *reason)
{
	size_t i;
	json_t *o;

	json_array_foreach(rows, i, o) {
		const char *ty = json_string_value(json_object_get(o, "type"));
		const char *tg = json_string_value(json_object_get(o, "target"));
		const char *re = json_string_value(json_object_get(o, "reason"));
		const char *ac = json_string_value(json_object_get(o, "actor"));
		if (ty && tg && re && ac && strcmp(ty, type) == 0 && strcmp(tg, target) == 0 &&
		    (!reason || strcmp(re, reason) == 0) && strcmp(ac, admin.id) == 0 &&
		    json_integer_value(json_object_get(o, "time")) > 0)
			return true;
	}
	return false;
}

/* The value of the /metrics sample named `series` (name and labels), or -1. */
static long long metric(const char *series)
{
	char url[256];
	http_response resp;
	long long v = -1;

	snprintf(url, sizeof(url), "%s/metrics", coord.url);
	memset(&resp, 0, sizeof(resp));
	assert_int_equal(http_request(hc, &resp, "GET", url, NULL, NULL, 0), 0);
	assert_int_equal(resp.status, 200);
	for (const char *p = resp.body; p && (p = strstr(p, series)) != NULL; p++)
		if ((p == resp.body || p[-1] == '\n') && p[strlen(series)] == ' ') {
			v = atoll(p + strlen(series) + 1);
			break;
		}
	http_response_free(&resp);
	return v;
}

/* ---- suspended nodes -------------------------------------------------------------- */

static void test_suspend_node(void **state)
{
	troop_identity node, user;
	char job[64], job2[64], msg[600], args[400], *text;
	ledger_reservation res;
	ledger_conn *c = NULL;
	json_t *out, *rows;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	heartbeat_at(&coord, &node, "susp:1b");
	assert_int_equal(authorize(job, &user, "susp:1b", NULL, 0), 200);

	/* not an admin: refused, nothing changes */
	out = call(&user, "POST", "/admin/suspend", json_pack("{s:s, s:s}", "node", node.id,
	    "reason", "me"), &st);
	assert_int_equal(st, 403);
	assert_non_null(json_object_get(json_object_get(out, "error"), "code"));
	json_decref(out);
	assert_int_equal(authorize(job2, &user, "susp:1b", NULL, 0), 200);

	/* bad requests get the error shape */
	out = call(&admin, "POST", "/admin/suspend", json_pack("{s:s, s:s}", "node", node.id,
	    "account", user.id), &st);
	assert_int_equal(st, 400);
	assert_non_null(json_object_get(json_object_get(out, "error"), "type"));
	json_decref(out);
	{
		troop_identity ghost;
		identity_generate(&ghost);
		out = call(&admin, "POST", "/admin/suspend", json_pack("{s:s}", "node", ghost.id),
		    &st);
		assert_int_equal(st, 404);
		json_decref(out);
	}
	/* the CLI asks for a reason */
	snprintf(args, sizeof(args), "suspend node -- %s", node.id);
	assert_int_equal(run_admin(&text, &admin, args), 2);
	free(text);

	snprintf(args, sizeof(args), "suspend node --reason 'inflated receipts' -- %s", node.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	assert_non_null(strstr(text, "suspended"));
	free(text);

	/* not chosen, here and on every coordinator sharing the registry */
	assert_int_equal(authorize(NULL, &user, "susp:1b", msg, sizeof(msg)), 503);
	assert_non_null(strstr(msg, "suspended by the operator"));
	if (have_b) {
		assert_int_equal(authorize_at(&coord_b, NULL, &user, "susp:1b", msg, sizeof(msg)),
		    503);
		assert_non_null(strstr(msg, "suspended by the operator"));
	}
	/* nor after its next heartbeat (the facts it copies say so too) */
	heartbeat_at(&coord, &node, "susp:1b");
	assert_int_equal(authorize(NULL, &user, "susp:1b", msg, sizeof(msg)), 503);
	/* the list shows it, with the reason */
	out = call(&admin, "GET", "/admin/nodes?limit=500", NULL, &st);
	assert_int_equal(st, 200);
	{
		size_t i;
		json_t *o;
		bool seen = false;
		json_array_foreach(json_object_get(out, "nodes"), i, o)
			if (strcmp(json_string_value(json_object_get(o, "node_id")), node.id) == 0) {
				seen = true;
				assert_true(json_is_true(json_object_get(o, "suspended")));
				assert_string_equal(json_string_value(json_object_get(o,
				    "suspend_reason")), "inflated receipts");
			}
		assert_true(seen);
	}
	json_decref(out);

	/* the receipt of a job given before the suspension settles at 0 */
	harness_sleep_ms(1100);
	{
		char path[128];
		snprintf(path, sizeof(path), "/jobs/%.63s/receipt", job);
		out = call(&node, "POST", path, json_pack("{s:s, s:s, s:i, s:i, s:i, s:s}",
		    "job_id", job, "node_id", node.id, "duration_ms", 1000, "prompt_tokens", 5,
		    "completion_tokens", 50, "outcome", "ok"), &st);
	}
	assert_int_equal(st, 200);
	assert_int_equal(json_integer_value(json_object_get(out, "charged")), 0);
	json_decref(out);
	assert_int_equal(ledger_conn_open(&c, led), 0);
	assert_int_equal(ledger_reservation_get(&res, c, job), 0);
	assert_int_equal(res.status, LEDGER_RES_SETTLED);
	assert_int_equal(res.charged, 0);
	assert_int_equal(res.refunded, res.amount);
	ledger_conn_close(c);
	check_invariant();

	/* unsuspended: chosen again */
	snprintf(args, sizeof(args), "unsuspend node --reason 'owner fixed the worker' -- %s",
	    node.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	free(text);
	assert_int_equal(authorize(NULL, &user, "susp:1b", msg, sizeof(msg)), 200);
	if (have_b)
		assert_int_equal(authorize_at(&coord_b, NULL, &user, "susp:1b", msg, sizeof(msg)),
		    200);

	/* both actions are audit rows about the node, with their reasons */
	{
		char q[200];
		snprintf(q, sizeof(q), "node=%s", node.id);
		rows = audit(q, NULL);
	}
	assert_true(has_row(rows, "suspend", node.id, "inflated receipts"));
	assert_true(has_row(rows, "unsuspend", node.id, "owner fixed the worker"));
	json_decref(rows);
}

/* ---- suspended accounts ------------------------------------------------------------ */

static void test_suspend_account(void **state)
{
	troop_identity node, user, ghost;
	char msg[600], args[400], *text;
	json_t *out, *rows;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	identity_generate(&ghost);
	heartbeat_at(&coord, &node, "acct:1b");
	/* authorized just before: the coordinator keeps the account's standing
	 * for about a second, and its own suspension must still apply at once */
	assert_int_equal(authorize(NULL, &user, "acct:1b", NULL, 0), 200);
	if (have_b)
		assert_int_equal(authorize_at(&coord_b, NULL, &user, "acct:1b", NULL, 0), 200);

	out = call(&admin, "POST", "/admin/suspend", json_pack("{s:s, s:s}", "account", user.id,
	    "reason", "card testing"), &st);
	assert_int_equal(st, 200);
	assert_true(json_is_true(json_object_get(out, "suspended")));
	json_decref(out);
	assert_int_equal(authorize(NULL, &user, "acct:1b", msg, sizeof(msg)), 403);
	assert_non_null(strstr(msg, "suspended"));
	assert_non_null(strstr(msg, "card testing"));
	assert_true(metric("troop_authorizations_total{result=\"suspended\"}") >= 1);
	if (have_b) {
		/* the other coordinator read the standing before the change: it
		 * applies there within about a second */
		for (int i = 0; i < 30; i++) {
			st = authorize_at(&coord_b, NULL, &user, "acct:1b", msg, sizeof(msg));
			if (st != 200)
				break;
			usleep(100 * 1000);   /* 3 s in all */
		}
		assert_int_equal(st, 403);
	}
	/* another account is not touched */
	assert_int_equal(authorize(NULL, &node, "acct:1b", NULL, 0), 200);
	/* an account the ledger has never seen: 404 */
	out = call(&admin, "POST", "/admin/suspend", json_pack("{s:s}", "account", ghost.id),
	    &st);
	assert_int_equal(st, 404);
	json_decref(out);

	snprintf(args, sizeof(args), "unsuspend account --reason 'appeal granted' -- %s", user.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	free(text);
	assert_int_equal(authorize(NULL, &user, "acct:1b", msg, sizeof(msg)), 200);

	{
		char q[200];
		snprintf(q, sizeof(q), "account=%s", user.id);
		rows = audit(q, NULL);
	}
	assert_true(has_row(rows, "suspend", user.id, "card testing"));
	assert_true(has_row(rows, "unsuspend", user.id, "appeal granted"));
	json_decref(rows);
	check_invariant();
}

/* ---- the audit log ------------------------------------------------------------------ */

static void test_audit_log(void **state)
{
	troop_identity user, stranger;
	char args[400], q[300], *text;
	json_t *out, *rows, *next = NULL, *rows2;
	int64_t t0 = (int64_t)time(NULL);
	int st;

	(void)state;
	identity_generate(&user);
	identity_generate(&stranger);
	/* a grant, through the CLI */
	snprintf(args, sizeof(args), "grant --reason 'bug bounty' -- %s 500", user.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	free(text);
	snprintf(q, sizeof(q), "type=admin_grant&account=%s", user.id);
	rows = audit(q, NULL);
	assert_int_equal(json_array_size(rows), 1);
	assert_true(has_row(rows, "admin_grant", user.id, "bug bounty"));
	json_decref(rows);

	/* three suspensions and unsuspensions: a type filter and pages of 2 */
	for (int i = 0; i < 2; i++) {
		out = call(&admin, "POST", "/admin/suspend", json_pack("{s:s, s:s}", "account",
		    user.id, "reason", i ? "second" : "first"), &st);
		assert_int_equal(st, 200);
		json_decref(out);
		out = call(&admin, "POST", "/admin/unsuspend", json_pack("{s:s}", "account",
		    user.id), &st);
		assert_int_equal(st, 200);
		json_decref(out);
	}
	snprintf(q, sizeof(q), "account=%s&limit=2", user.id);
	rows = audit(q, &next);
	assert_int_equal(json_array_size(rows), 2);
	assert_true(json_is_integer(next));
	/* newest first: the last unsuspend, then the second suspend */
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "type")),
	    "unsuspend");
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "reason")),
	    "second");
	snprintf(q, sizeof(q), "account=%s&limit=2&before=%lld", user.id,
	    (long long)json_integer_value(next));
	json_decref(next);
	rows2 = audit(q, &next);
	assert_int_equal(json_array_size(rows2), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows2, 1),
	    "reason")), "first");
	assert_true(json_integer_value(json_object_get(json_array_get(rows2, 0), "id")) <
	    json_integer_value(json_object_get(json_array_get(rows, 1), "id")));
	json_decref(rows);
	json_decref(rows2);
	json_decref(next);
	snprintf(q, sizeof(q), "account=%s&type=suspend", user.id);
	rows = audit(q, NULL);
	assert_int_equal(json_array_size(rows), 2);
	json_decref(rows);
	/* since: none of these is from the future */
	snprintf(q, sizeof(q), "account=%s&since=%lld", user.id, (long long)(t0 + 3600));
	rows = audit(q, NULL);
	assert_int_equal(json_array_size(rows), 0);
	json_decref(rows);

	/* the CLI: a table, and the JSON */
	snprintf(args, sizeof(args), "audit --account=%s --since 1h", user.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	assert_non_null(strstr(text, "TYPE"));
	assert_non_null(strstr(text, "bug bounty"));
	assert_non_null(strstr(text, "unsuspend"));
	free(text);
	snprintf(args, sizeof(args), "audit --account=%s --type admin_grant --json", user.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	out = json_loads(text, 0, NULL);
	assert_non_null(out);
	assert_int_equal(json_array_size(json_object_get(out, "entries")), 1);
	json_decref(out);
	free(text);

	/* bad filters get the error shape; strangers get 403 */
	out = call(&admin, "GET", "/admin/audit?account=nope", NULL, &st);
	assert_int_equal(st, 400);
	assert_non_null(json_object_get(json_object_get(out, "error"), "message"));
	json_decref(out);
	out = call(&admin, "GET", "/admin/audit?limit=0", NULL, &st);
	assert_int_equal(st, 400);
	json_decref(out);
	out = call(&stranger, "GET", "/admin/audit", NULL, &st);
	assert_int_equal(st, 403);
	json_decref(out);
	assert_int_equal(run_admin(&text, &stranger, "audit"), 1);
	assert_non_null(strstr(text, "admin"));
	free(text);
}

/* ---- invites --------------------------------------------------------------------- */

static void test_invite(void **state)
{
	troop_identity user;
	char *text, code[64] = "";
	const char *p;
	json_t *out, *rows;
	int st;

	(void)state;
	identity_generate(&user);
	assert_int_equal(run_admin(&text, &admin, "invite --credits 77"), 0);
	p = strstr(text, "invite code: ");
	assert_non_null(p);
	sscanf(p + strlen("invite code: "), "%63s", code);
	free(text);
	assert_true(strlen(code) > 10);
	out = call(&user, "POST", "/invites/redeem", json_pack("{s:s}", "code", code), &st);
	assert_int_equal(st, 200);
	assert_int_equal(json_integer_value(json_object_get(out, "trial_credits")), 77);
	json_decref(out);
	/* once only */
	out = call(&user, "POST", "/invites/redeem", json_pack("{s:s}", "code", code), &st);
	assert_true(st >= 400);
	json_decref(out);
	rows = audit("type=invite_create&limit=5", NULL);
	assert_true(json_array_size(rows) >= 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "actor")),
	    admin.id);
	json_decref(rows);
	assert_int_equal(run_admin(&text, &admin, "invite --json"), 0);
	out = json_loads(text, 0, NULL);
	assert_non_null(out);
	assert_true(json_is_string(json_object_get(out, "code")));
	json_decref(out);
	free(text);
}

/* ---- display names on the leaderboard ------------------------------------------ */

/* The leaderboard entry of `account` (new reference), or NULL. */
static json_t *leader(const char *account)
{
	int st;
	size_t i;
	json_t *out = call(&admin, "GET", "/leaderboard?limit=100", NULL, &st), *o, *found = NULL;

	assert_int_equal(st, 200);
	json_array_foreach(json_object_get(out, "leaders"), i, o)
		if (strcmp(json_string_value(json_object_get(o, "account")), account) == 0)
			found = json_incref(o);
	json_decref(out);
	return found;
}

static void test_display_name(void **state)
{
	static const char *const bad[] = {
		"\xe2\x80\xae" "gnimraF", /* U+202E: reads backwards */
		"Ada\xe2\x80\x8b",        /* U+200B: invisible */
		"tab\there",
		" Ada",
		"123456789012345678901234567890123", /* 33 bytes */
		"del\x7f",
	};
	troop_identity node, user, ghost;
	char job[64], path[128], *text;
	json_t *out, *e;
	int st;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	identity_generate(&ghost);
	heartbeat_at(&coord, &node, "names:1b");
	assert_int_equal(authorize(job, &user, "names:1b", NULL, 0), 200);
	harness_sleep_ms(1100);
	snprintf(path, sizeof(path), "/jobs/%.63s/receipt", job);
	out = call(&node, "POST", path, json_pack("{s:s, s:s, s:i, s:i, s:i, s:s}", "job_id", job,
	    "node_id", node.id, "duration_ms", 1000, "prompt_tokens", 5, "completion_tokens", 50,
	    "outcome", "ok"), &st);
	assert_int_equal(st, 200);
	json_decref(out);

	/* by its id only until it opts in */
	e = leader(node.id);
	assert_non_null(e);
	assert_true(json_is_null(json_object_get(e, "name")));
	json_decref(e);
	assert_int_equal(run_troop(&text, &node, "account", "name \"Ada's GPUs\""), 0);
	assert_non_null(strstr(text, "Ada's GPUs"));
	free(text);
	e = leader(node.id);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "name")), "Ada's GPUs");
	json_decref(e);

	/* names that could pass for another, or are not text: 400, nothing changes */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *b = json_object();
		json_object_set_new(b, "display_name", json_stringn_nocheck(bad[i], strlen(bad[i])));
		out = call(&node, "POST", "/accounts/name", b, &st);
		assert_int_equal(st, 400);
		assert_string_equal(json_string_value(json_object_get(json_object_get(out, "error"),
		    "type")), "invalid_request_error");
		json_decref(out);
	}
	e = leader(node.id);
	assert_string_equal(json_string_value(json_object_get(e, "name")), "Ada's GPUs");
	json_decref(e);
	/* the CLI says why before asking */
	assert_int_equal(run_troop(&text, &node, "account", "name ' Ada'"), 2);
	assert_non_null(strstr(text, "space"));
	free(text);
	/* an account the ledger does not know: 404 */
	out = call(&ghost, "POST", "/accounts/name", json_pack("{s:s}", "display_name", "x"), &st);
	assert_int_equal(st, 404);
	json_decref(out);
	/* unsigned: 401 */
	{
		json_t *anon = NULL;
		char url[600];
		snprintf(url, sizeof(url), "%s/accounts/name", coord.url);
		json_t *b = json_pack("{s:s}", "display_name", "x");
		assert_int_equal(http_request_json(hc, &st, &anon, "POST", url, NULL, b), 0);
		assert_int_equal(st, 401);
		json_decref(anon);
		json_decref(b);
	}
	/* and off again */
	assert_int_equal(run_troop(&text, &node, "account", "name --clear"), 0);
	free(text);
	e = leader(node.id);
	assert_true(json_is_null(json_object_get(e, "name")));
	json_decref(e);
	check_invariant();
}

/* ---- rate limits ----------------------------------------------------------------- */

/* Sleep until just after the start of a second (the limit's window). */
static void second_start(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	harness_sleep_ms((int)((1000000000L - ts.tv_nsec) / 1000000L) + 20);
}

static void test_rate_limit(void **state)
{
	troop_identity node, user, quick;
	char args[400], msg[600], retry[32], *text;
	json_t *out, *rows;
	int st, ok = 0, limited = 0;

	(void)state;
	identity_generate(&node);
	identity_generate(&user);
	identity_generate(&quick);
	heartbeat_at(&coord, &node, "rate:1b");

	/* the default (--account-rate-limit): a burst beyond it gets 429 with
	 * Retry-After */
	for (int attempt = 0; attempt < 3 && limited == 0; attempt++) {
		/* a slow machine may spread a burst over two windows: again */
		ok = 0;
		second_start();
		for (int i = 0; i < DEFAULT_RATE + 10; i++) {
			st = authorize(NULL, &quick, "rate:1b", msg, sizeof(msg));
			if (st == 200)
				ok++;
			else {
				assert_int_equal(st, 429);
				assert_int_equal(http_client_reply_header(hc, "Retry-After", retry,
				    sizeof(retry)), 0);
				assert_string_equal(retry, "1");
				limited++;
			}
		}
	}
	assert_true(limited > 0);
	assert_true(ok <= 2 * DEFAULT_RATE);
	assert_non_null(strstr(msg, "Retry-After"));
	assert_true(metric("troop_authorizations_total{result=\"rate_limited\"}") >= limited);

	/* an account's own limit, set through the CLI */
	assert_int_equal(authorize(NULL, &user, "rate:1b", NULL, 0), 200);
	snprintf(args, sizeof(args), "rate-limit --reason 'scraping' -- %s 2", user.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	assert_non_null(strstr(text, "at most 2"));
	free(text);
	for (int attempt = 0; attempt < 3; attempt++) {
		second_start();
		assert_int_equal(authorize(NULL, &user, "rate:1b", NULL, 0), 200);
		/* the second: on the other coordinator when there is one (the
		 * count is the registry's, shared) */
		st = authorize_at(have_b ? &coord_b : &coord, NULL, &user, "rate:1b", NULL, 0);
		int third = authorize_at(have_b ? &coord_b : &coord, NULL, &user, "rate:1b",
		    msg, sizeof(msg));
		if (st == 200 && third == 429)
			break;
		/* a window boundary fell inside: try again */
		assert_true(attempt < 2);
	}
	assert_non_null(strstr(msg, "more than 2"));
	/* 0: back to the default */
	snprintf(args, sizeof(args), "rate-limit -- %s 0", user.id);
	assert_int_equal(run_admin(&text, &admin, args), 0);
	free(text);
	second_start();
	for (int i = 0; i < 5; i++)
		assert_int_equal(authorize(NULL, &user, "rate:1b", NULL, 0), 200);

	{
		char q[200];
		snprintf(q, sizeof(q), "account=%s&type=rate_limit", user.id);
		rows = audit(q, NULL);
	}
	assert_int_equal(json_array_size(rows), 2);
	assert_true(has_row(rows, "rate_limit", user.id, "scraping"));
	json_decref(rows);
	/* bad values */
	out = call(&admin, "POST", "/admin/rate-limit", json_pack("{s:s, s:i}", "account",
	    user.id, "per_second", -1), &st);
	assert_int_equal(st, 400);
	json_decref(out);
	check_invariant();
}

/* Per source address: a coordinator with --authorize-address-limit 3
 * refuses a fourth /authorize in a second from one address, whatever the
 * accounts. */
static void test_address_limit(void **state)
{
	static harness_proc c3;
	troop_identity node, users[6];
	char data[300], msg[600], retry[32];
	int ok = 0, limited = 0;

	(void)state;
	snprintf(data, sizeof(data), "%s/coord-addr", tmp);
	const char *args[] = { "--allow-unverified", "--starter-credits", "1000",
		"--threads", "2", "--authorize-address-limit", "3", "--max-jobs-other", "0",
		"--max-tickets", "100000", NULL };
	assert_int_equal(harness_start_coordinator(&c3, data, args), 0);
	identity_generate(&node);
	heartbeat_at(&c3, &node, "addr:1b");
	for (int attempt = 0; attempt < 3 && limited == 0; attempt++) {
		ok = 0;
		second_start();
		for (int i = 0; i < 6; i++) {
			identity_generate(&users[i]);
			int st = authorize_at(&c3, NULL, &users[i], "addr:1b", msg, sizeof(msg));
			if (st == 200) {
				ok++;
				continue;
			}
			assert_int_equal(st, 429);
			assert_int_equal(http_client_reply_header(hc, "Retry-After", retry,
			    sizeof(retry)), 0);
			assert_string_equal(retry, "1");
			assert_non_null(strstr(msg, "address 127.0.0.1"));
			limited++;
		}
	}
	assert_true(limited > 0);
	assert_true(ok <= 6);
	harness_stop(&c3, 0);
}

/* ---- lists --------------------------------------------------------------------- */

static void test_lists(void **state)
{
	char *text, args[200];
	json_t *out, *next;
	int st;

	(void)state;
	out = call(&admin, "GET", "/admin/nodes?limit=1", NULL, &st);
	assert_int_equal(st, 200);
	assert_int_equal(json_array_size(json_object_get(out, "nodes")), 1);
	next = json_object_get(out, "next");
	assert_true(json_is_string(next));
	{
		json_t *n0 = json_array_get(json_object_get(out, "nodes"), 0);
		assert_non_null(json_object_get(n0, "disputes"));
		assert_non_null(json_object_get(n0, "reputation"));
		assert_non_null(json_object_get(n0, "established"));
		assert_non_null(json_object_get(n0, "pending"));
	}
	snprintf(args, sizeof(args), "/admin/nodes?limit=1&after=%s", json_string_value(next));
	json_t *out2 = call(&admin, "GET", args, NULL, &st);
	assert_int_equal(st, 200);
	assert_true(strcmp(json_string_value(json_object_get(json_array_get(
	    json_object_get(out2, "nodes"), 0), "node_id")), json_string_value(next)) > 0);
	json_decref(out2);
	json_decref(out);

	out = call(&admin, "GET", "/admin/accounts?limit=500", NULL, &st);
	assert_int_equal(st, 200);
	assert_true(json_array_size(json_object_get(out, "accounts")) >= 5);
	assert_non_null(json_object_get(json_array_get(json_object_get(out, "accounts"), 0),
	    "dispute_rate"));
	json_decref(out);

	assert_int_equal(run_admin(&text, &admin, "list nodes"), 0);
	assert_non_null(strstr(text, "REPUTATION"));
	assert_non_null(strstr(text, "DISPUTES"));
	free(text);
	assert_int_equal(run_admin(&text, &admin, "list accounts --limit 2"), 0);
	assert_non_null(strstr(text, "RATE LIMIT"));
	assert_non_null(strstr(text, "more: --after="));
	free(text);
	assert_int_equal(run_admin(&text, &admin, "list accounts --json"), 0);
	out = json_loads(text, 0, NULL);
	assert_non_null(out);
	assert_true(json_is_array(json_object_get(out, "accounts")));
	json_decref(out);
	free(text);
	assert_int_equal(run_admin(&text, &admin, "list things"), 2);
	free(text);
}

static int setup(void **state)
{
	char data[300], rate[16];
	static char admin_flag[64];

	(void)state;
	if (sodium_init() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(data, sizeof(data), "%s/coord", tmp);
	if (harness_backend_pg())
		snprintf(dbpath, sizeof(dbpath), "%s", getenv("TROOP_TEST_DATABASE_URL"));
	else
		snprintf(dbpath, sizeof(dbpath), "%s/ledger.db", data);
	identity_generate(&admin);
	snprintf(admin_flag, sizeof(admin_flag), "--admin=%s", admin.id);
	snprintf(rate, sizeof(rate), "%d", DEFAULT_RATE);
	/* bursts of tickets on one unverified node: no slot cap (the wait
	 * queue's), so that what stops them is the rate limit under test */
	const char *args[] = { "--allow-unverified", "--starter-credits", "1000",
		"--threads", "2", "--account-rate-limit", rate, admin_flag,
		"--max-jobs-other", "0", "--max-tickets", "100000", NULL };
	if (harness_start_coordinator(&coord, data, args) != 0)
		return -1;
	/* on PostgreSQL and Redis: a second coordinator sharing both */
	if (harness_backend_pg()) {
		snprintf(data, sizeof(data), "%s/coord-b", tmp);
		if (harness_start_coordinator(&coord_b, data, args) != 0)
			return -1;
		have_b = true;
	}
	if (ledger_open(&led, dbpath) != 0)
		return -1;
	http_client_new(&hc);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_client_free(hc);
	ledger_close(led);
	harness_stop_all();
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suspend_node),
		cmocka_unit_test(test_suspend_account),
		cmocka_unit_test(test_audit_log),
		cmocka_unit_test(test_invite),
		cmocka_unit_test(test_display_name),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_address_limit),
		cmocka_unit_test(test_lists),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
