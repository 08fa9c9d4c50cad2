/*
 * cli_admin.c - `troop admin`, the operator's tools, every call signed
 * with the identity in $TROOP_HOME, which must be one of the
 * coordinator's --admin keys (docs/OPERATING.md):
 *   suspend|unsuspend node|account ID --reason TEXT   POST /admin/(un)suspend
 *   list nodes|accounts [--after ID]                  GET /admin/nodes, /admin/accounts
 *   audit [--account A|--node N] [--type T] [--since T] [--before CURSOR]
 *                                                     GET /admin/audit
 *   invite [--credits N]                              POST /admin/invites
 *   rate-limit ACCOUNT N [--reason TEXT]              POST /admin/rate-limit
 *   grant ACCOUNT CREDITS [--reason TEXT]             POST /admin/grant
 *   report                                            GET /admin/report
 * `report` is the operator report (GET /admin/report):
 *   - accounts whose settled spending all went to one node or one owner
 *     (a throwaway account feeding its maker's node looks like this);
 *   - nodes that earned mostly from trial credits (starter grants).
 * Neither is proof of abuse: a new user trying one friend's node looks
 * the same.  The report says where to look.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"

static const config_opt admin_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ "min-jobs", 0, OPT_INT, NULL, NULL, "3", "N",
	  "only accounts and nodes with at least N settled jobs", 1, 1000000 },
	{ "limit", 'n', OPT_INT, NULL, NULL, "100", "N", "at most N rows (of each kind)",
	  1, 500 },
	{ "reason", 0, OPT_STRING, NULL, NULL, NULL, "TEXT",
	  "why (suspend, unsuspend, grant, rate-limit): kept in the audit log", 0, 0 },
	{ "credits", 0, OPT_INT, NULL, NULL, "0", "N",
	  "invite: the code's credits (0: the coordinator's --starter-credits)", 0, 1e12 },
	{ "account", 0, OPT_STRING, NULL, NULL, NULL, "ID", "audit: rows about this account",
	  0, 0 },
	{ "node", 0, OPT_STRING, NULL, NULL, NULL, "ID", "audit: rows about this node", 0, 0 },
	{ "type", 0, OPT_STRING, NULL, NULL, NULL, "TYPE",
	  "audit: rows of this type (suspend, unsuspend, admin_grant, invite_create, "
	  "rate_limit, dispute, ...)", 0, 0 },
	{ "since", 0, OPT_STRING, NULL, NULL, NULL, "TIME",
	  "audit: rows since TIME (unix seconds, or an age: 90m, 24h, 7d)", 0, 0 },
	{ "before", 0, OPT_INT, NULL, NULL, "0", "CURSOR",
	  "audit: the page before CURSOR (the 'next' of the previous page)", 0, 9e18 },
	{ "after", 0, OPT_STRING, NULL, NULL, NULL, "ID",
	  "list: the page after ID (the 'next' of the previous page)", 0, 0 },
	{ "lead", 0, OPT_INT, NULL, NULL, "-1", "SECONDS",
	  "rotate-ticket-key: publish the new key this long before it signs (-1: the "
	  "coordinator's --ticket-key-lead)", -1, 86400 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

static const char *short_id(char *buf, size_t len, const json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));

	if (!s)
		return NULL;
	snprintf(buf, len, "%.8s", s);
	return buf;
}

/* The two tables of the report for people. */
static int print_report(const json_t *out)
{
	static const char *const ahdr[6] = { "ACCOUNT", "JOBS", "SPENT", "NODE", "OWNER",
		"TRIAL" };
	static const char *const nhdr[6] = { "NODE", "OWNER", "JOBS", "EARNED", "TRIAL",
		"PAYERS" };
	const json_t *accs = json_object_get(out, "single_payee_accounts");
	const json_t *nodes = json_object_get(out, "trial_funded_nodes");
	cli_table *t;
	size_t i;
	json_t *o;

	printf("Accounts whose spending all went to one node or one owner:\n");
	if (json_array_size(accs) == 0)
		printf("  none\n");
	else if ((t = cli_table_new(6, ahdr)) != NULL) {
		for (size_t k = 1; k <= 2; k++)
			cli_table_align_right(t, k);
		cli_table_align_right(t, 5);
		json_array_foreach(accs, i, o) {
			char b[6][48];
			const char *cells[6];
			cells[0] = short_id(b[0], sizeof(b[0]), o, "account");
			snprintf(b[1], sizeof(b[1]), "%lld",
			    (long long)json_integer_value(json_object_get(o, "jobs")));
			snprintf(b[2], sizeof(b[2]), "%lld",
			    (long long)json_integer_value(json_object_get(o, "spent")));
			cells[1] = b[1];
			cells[2] = b[2];
			cells[3] = short_id(b[3], sizeof(b[3]), o, "node_id");
			cells[4] = short_id(b[4], sizeof(b[4]), o, "owner");
			snprintf(b[5], sizeof(b[5]), "%lld",
			    (long long)json_integer_value(json_object_get(o, "trial_reserved")));
			cells[5] = b[5];
			if (!cells[3]) {
				snprintf(b[3], sizeof(b[3]), "%lld nodes",
				    (long long)json_integer_value(json_object_get(o, "nodes")));
				cells[3] = b[3];
			}
			(void)cli_table_add(t, cells);
		}
		cli_table_print(t, stdout);
		cli_table_free(t);
	}
	printf("\nNodes paid mostly with trial credits:\n");
	if (json_array_size(nodes) == 0)
		printf("  none\n");
	else if ((t = cli_table_new(6, nhdr)) != NULL) {
		for (size_t k = 2; k <= 5; k++)
			cli_table_align_right(t, k);
		json_array_foreach(nodes, i, o) {
			char b[6][48];
			const char *cells[6];
			cells[0] = short_id(b[0], sizeof(b[0]), o, "node_id");
			cells[1] = short_id(b[1], sizeof(b[1]), o, "owner");
			snprintf(b[2], sizeof(b[2]), "%lld",
			    (long long)json_integer_value(json_object_get(o, "jobs")));
			snprintf(b[3], sizeof(b[3]), "%lld",
			    (long long)json_integer_value(json_object_get(o, "earned")));
			snprintf(b[4], sizeof(b[4]), "%lld (%.0f%%)",
			    (long long)json_integer_value(json_object_get(o, "trial_paid")),
			    json_number_value(json_object_get(o, "trial_share")) * 100.0);
			snprintf(b[5], sizeof(b[5]), "%lld",
			    (long long)json_integer_value(json_object_get(o, "payers")));
			for (int k = 2; k < 6; k++)
				cells[k] = b[k];
			(void)cli_table_add(t, cells);
		}
		cli_table_print(t, stdout);
		cli_table_free(t);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/* The value of --since: unix seconds, or an age ("90m", "24h", "7d",
 * "30s") counted back from now.  -1 when it is neither. */
static long long parse_since(const char *v)
{
	char *end = NULL;
	long long n = strtoll(v, &end, 10);

	if (end == v || n < 0)
		return -1;
	if (*end == '\0')
		return n;
	if (end[1] != '\0')
		return -1;
	switch (*end) {
	case 's': break;
	case 'm': n *= 60; break;
	case 'h': n *= 3600; break;
	case 'd': n *= 86400; break;
	default: return -1;
	}
	n = (long long)time(NULL) - n;
	return n > 0 ? n : 0;
}

static const char *time_cell(char *buf, size_t len, const json_t *o, const char *name)
{
	time_t t = (time_t)json_integer_value(json_object_get(o, name));
	struct tm tm;

	if (t <= 0 || !gmtime_r(&t, &tm))
		return "-";
	strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
	return buf;
}

static const char *int_cell(char *buf, size_t len, const json_t *o, const char *name)
{
	snprintf(buf, len, "%lld", (long long)json_integer_value(json_object_get(o, name)));
	return buf;
}

/* Print the "next" cursor line of a page, when there is one. */
static void print_next(const json_t *out, const char *flag)
{
	const json_t *next = json_object_get(out, "next");

	if (json_is_integer(next))
		printf("\nmore: --%s %lld\n", flag, (long long)json_integer_value(next));
	else if (json_is_string(next))
		printf("\nmore: --%s=%s\n", flag, json_string_value(next));
}

static int print_nodes(const json_t *out)
{
	static const char *const hdr[10] = { "NODE", "OWNER", "NAME", "VERIFIED", "REPUTATION",
		"JOBS", "DISPUTES", "PENDING", "ESTABLISHED", "SUSPENDED" };
	const json_t *nodes = json_object_get(out, "nodes");
	cli_table *t = cli_table_new(10, hdr);
	size_t i;
	json_t *o;

	if (!t)
		return 1;
	for (size_t k = 4; k <= 7; k++)
		cli_table_align_right(t, k);
	json_array_foreach(nodes, i, o) {
		char b[10][300];
		const char *cells[10];
		const char *reason = json_string_value(json_object_get(o, "suspend_reason"));
		cells[0] = short_id(b[0], sizeof(b[0]), o, "node_id");
		cells[1] = short_id(b[1], sizeof(b[1]), o, "owner");
		cells[2] = json_string_value(json_object_get(o, "name"));
		cells[3] = json_is_true(json_object_get(o, "verified")) ? "yes" : "no";
		snprintf(b[4], sizeof(b[4]), "%.2f",
		    json_number_value(json_object_get(o, "reputation")));
		cells[4] = b[4];
		snprintf(b[5], sizeof(b[5]), "%lld/%lld",
		    (long long)json_integer_value(json_object_get(o, "jobs_ok")),
		    (long long)(json_integer_value(json_object_get(o, "jobs_ok")) +
		    json_integer_value(json_object_get(o, "jobs_failed"))));
		cells[5] = b[5];
		snprintf(b[6], sizeof(b[6]), "%lld (%lld refused)",
		    (long long)json_integer_value(json_object_get(o, "disputes")),
		    (long long)json_integer_value(json_object_get(o, "refusals")));
		cells[6] = b[6];
		cells[7] = int_cell(b[7], sizeof(b[7]), o, "pending");
		cells[8] = json_integer_value(json_object_get(o, "audit_failed")) ? "audit failed" :
		    json_is_true(json_object_get(o, "established")) ? "yes" : "no";
		if (json_is_true(json_object_get(o, "suspended"))) {
			snprintf(b[9], sizeof(b[9]), "yes: %.200s", reason ? reason : "");
			cells[9] = b[9];
		} else
			cells[9] = "no";
		(void)cli_table_add(t, cells);
	}
	if (json_array_size(nodes) == 0)
		printf("no nodes\n");
	else
		cli_table_print(t, stdout);
	cli_table_free(t);
	print_next(out, "after");
	return fflush(stdout) == 0 ? 0 : 1;
}

static int print_accounts(const json_t *out)
{
	static const char *const hdr[8] = { "ACCOUNT", "BALANCE", "TRIAL", "REPORTS",
		"DISPUTES", "RATE LIMIT", "CREATED", "SUSPENDED" };
	const json_t *accs = json_object_get(out, "accounts");
	cli_table *t = cli_table_new(8, hdr);
	size_t i;
	json_t *o;

	if (!t)
		return 1;
	for (size_t k = 1; k <= 5; k++)
		cli_table_align_right(t, k);
	json_array_foreach(accs, i, o) {
		char b[8][300];
		const char *cells[8];
		const char *reason = json_string_value(json_object_get(o, "suspend_reason"));
		cells[0] = short_id(b[0], sizeof(b[0]), o, "account");
		cells[1] = int_cell(b[1], sizeof(b[1]), o, "balance");
		cells[2] = int_cell(b[2], sizeof(b[2]), o, "trial");
		cells[3] = int_cell(b[3], sizeof(b[3]), o, "reports");
		cells[4] = int_cell(b[4], sizeof(b[4]), o, "disputes");
		if (json_integer_value(json_object_get(o, "rate_limit")) > 0) {
			snprintf(b[5], sizeof(b[5]), "%lld/s",
			    (long long)json_integer_value(json_object_get(o, "rate_limit")));
			cells[5] = b[5];
		} else
			cells[5] = "default";
		cells[6] = time_cell(b[6], sizeof(b[6]), o, "created_at");
		if (json_is_true(json_object_get(o, "suspended"))) {
			snprintf(b[7], sizeof(b[7]), "yes: %.200s", reason ? reason : "");
			cells[7] = b[7];
		} else
			cells[7] = "no";
		(void)cli_table_add(t, cells);
	}
	if (json_array_size(accs) == 0)
		printf("no accounts\n");
	else
		cli_table_print(t, stdout);
	cli_table_free(t);
	print_next(out, "after");
	return fflush(stdout) == 0 ? 0 : 1;
}

static int print_audit(const json_t *out)
{
	static const char *const hdr[6] = { "ID", "TIME", "ACTOR", "TYPE", "TARGET", "WHY" };
	const json_t *rows = json_object_get(out, "entries");
	cli_table *t = cli_table_new(6, hdr);
	size_t i;
	json_t *o;

	if (!t)
		return 1;
	cli_table_align_right(t, 0);
	json_array_foreach(rows, i, o) {
		char b[6][300];
		const char *cells[6];
		const char *reason = json_string_value(json_object_get(o, "reason"));
		const char *detail = json_string_value(json_object_get(o, "detail"));
		cells[0] = int_cell(b[0], sizeof(b[0]), o, "id");
		cells[1] = time_cell(b[1], sizeof(b[1]), o, "time");
		cells[2] = short_id(b[2], sizeof(b[2]), o, "actor");
		cells[3] = json_string_value(json_object_get(o, "type"));
		cells[4] = short_id(b[4], sizeof(b[4]), o, "target");
		if (cells[4] && !cells[4][0])
			cells[4] = "-";
		snprintf(b[5], sizeof(b[5]), "%.200s", reason && reason[0] ? reason :
		    detail ? detail : "");
		cells[5] = b[5];
		(void)cli_table_add(t, cells);
	}
	if (json_array_size(rows) == 0)
		printf("no audit rows\n");
	else
		cli_table_print(t, stdout);
	cli_table_free(t);
	print_next(out, "before");
	return fflush(stdout) == 0 ? 0 : 1;
}

/* Append "&name=<escaped value>" to path when the option is set. */
static int add_query(cli *c, char *path, size_t len, const char *name, const char *value)
{
	char *esc;
	size_t used = strlen(path);

	if (!value || !value[0])
		return 0;
	if ((esc = cli_url_escape(value)) == NULL)
		return cli_fail(c, "out of memory");
	snprintf(path + used, len - used, "&%s=%s", name, esc);
	free(esc);
	return 0;
}

static const char *positional(const cli *c, size_t i)
{
	return config_npositional(c->cfg) > i ? config_positional(c->cfg, i) : NULL;
}

/* suspend|unsuspend node|account ID */
static int do_suspend(cli *c, json_t **out, bool on)
{
	const char *kind = positional(c, 1), *id = positional(c, 2);
	const char *reason = config_str(c->cfg, "reason");
	json_t *body;
	int rc;

	if (!kind || !id || (strcmp(kind, "node") != 0 && strcmp(kind, "account") != 0) ||
	    positional(c, 3))
		return cli_usage_error(c, "say what: 'troop admin %s node ID' or "
		    "'troop admin %s account ID'", on ? "suspend" : "unsuspend",
		    on ? "suspend" : "unsuspend");
	if (on && (!reason || !reason[0]))
		return cli_usage_error(c, "say why: --reason TEXT (kept in the audit log)");
	if ((rc = cli_load_identity(c)) != 0)
		return rc;
	body = reason && reason[0] ? json_pack("{s:s, s:s}", kind, id, "reason", reason) :
	    json_pack("{s:s}", kind, id);
	rc = cli_call_ok(c, out, "POST", on ? "/admin/suspend" : "/admin/unsuspend", body, true);
	json_decref(body);
	if (rc == 0 && !c->json)
		printf("%s %s %s\n", kind, id, on ? "suspended" : "no longer suspended");
	return rc;
}

static int do_list(cli *c, json_t **out)
{
	const char *what = positional(c, 1);
	char path[512];
	int rc;

	if (!what || (strcmp(what, "nodes") != 0 && strcmp(what, "accounts") != 0) ||
	    positional(c, 2))
		return cli_usage_error(c, "say what: 'troop admin list nodes' or "
		    "'troop admin list accounts'");
	snprintf(path, sizeof(path), "/admin/%s?limit=%ld", what, config_int(c->cfg, "limit"));
	if ((rc = add_query(c, path, sizeof(path), "after", config_str(c->cfg, "after"))) ||
	    (rc = cli_load_identity(c)) || (rc = cli_call_ok(c, out, "GET", path, NULL, true)))
		return rc;
	if (c->json)
		return cli_print_json(*out);
	return strcmp(what, "nodes") == 0 ? print_nodes(*out) : print_accounts(*out);
}

static int do_audit(cli *c, json_t **out)
{
	const char *since = config_str(c->cfg, "since");
	char path[1024], num[32];
	int rc;

	if (positional(c, 1))
		return cli_usage_error(c, "'troop admin audit' takes options only");
	snprintf(path, sizeof(path), "/admin/audit?limit=%ld", config_int(c->cfg, "limit"));
	if (config_int(c->cfg, "before") > 0) {
		snprintf(num, sizeof(num), "%ld", config_int(c->cfg, "before"));
		(void)add_query(c, path, sizeof(path), "before", num);
	}
	if (since) {
		long long t = parse_since(since);
		if (t < 0)
			return cli_usage_error(c, "--since: '%s' is neither unix seconds nor an age "
			    "such as 90m, 24h or 7d", since);
		snprintf(num, sizeof(num), "%lld", t);
		(void)add_query(c, path, sizeof(path), "since", num);
	}
	if ((rc = add_query(c, path, sizeof(path), "account", config_str(c->cfg, "account"))) ||
	    (rc = add_query(c, path, sizeof(path), "node", config_str(c->cfg, "node"))) ||
	    (rc = add_query(c, path, sizeof(path), "type", config_str(c->cfg, "type"))) ||
	    (rc = cli_load_identity(c)) || (rc = cli_call_ok(c, out, "GET", path, NULL, true)))
		return rc;
	return c->json ? cli_print_json(*out) : print_audit(*out);
}

static int do_invite(cli *c, json_t **out)
{
	json_t *body;
	int rc;

	if (positional(c, 1))
		return cli_usage_error(c, "'troop admin invite' takes options only");
	if ((rc = cli_load_identity(c)) != 0)
		return rc;
	body = config_int(c->cfg, "credits") > 0 ?
	    json_pack("{s:I}", "credits", (json_int_t)config_int(c->cfg, "credits")) :
	    json_object();
	rc = cli_call_ok(c, out, "POST", "/admin/invites", body, true);
	json_decref(body);
	if (rc != 0)
		return rc;
	if (c->json)
		return cli_print_json(*out);
	printf("invite code: %s (%lld trial credit-seconds, one use; the invited account "
	    "redeems it with 'troop account redeem CODE')\n",
	    json_string_value(json_object_get(*out, "code")),
	    (long long)json_integer_value(json_object_get(*out, "credits")));
	return 0;
}

/* rotate-ticket-key */
static int do_rotate(cli *c, json_t **out)
{
	const char *reason = config_str(c->cfg, "reason");
	int64_t lead = config_int(c->cfg, "lead");
	json_t *body, *k;
	size_t i;
	int rc;

	if (positional(c, 1))
		return cli_usage_error(c, "'troop admin rotate-ticket-key' takes options only");
	if ((rc = cli_load_identity(c)) != 0)
		return rc;
	body = json_object();
	if (lead >= 0)
		json_object_set_new(body, "lead_seconds", json_integer(lead));
	if (reason)
		json_object_set_new(body, "reason", json_string(reason));
	rc = cli_call_ok(c, out, "POST", "/admin/ticket-key/rotate", body, true);
	json_decref(body);
	if (rc != 0)
		return rc;
	if (c->json)
		return cli_print_json(*out);
	printf("New ticket key %s: published now, signs from %lld (in %lld s).\n",
	    json_string_value(json_object_get(*out, "next_kid")),
	    (long long)json_integer_value(json_object_get(*out, "activates_at")),
	    (long long)(json_integer_value(json_object_get(*out, "activates_at")) -
	    (json_int_t)time(NULL)));
	json_array_foreach(json_object_get(*out, "keys"), i, k) {
		json_int_t ret = json_integer_value(json_object_get(k, "retires_at"));
		printf("  %s  %s", json_string_value(json_object_get(k, "kid")),
		    json_is_true(json_object_get(k, "signing")) ? "signing now" : "next      ");
		if (ret > 0)
			printf("  retires at %lld, when its last ticket has expired",
			    (long long)ret);
		printf("\n");
	}
	return 0;
}

/* rate-limit ACCOUNT N and grant ACCOUNT CREDITS: an account and a count. */
static int do_account_number(cli *c, json_t **out, bool grant)
{
	const char *account = positional(c, 1), *num = positional(c, 2);
	const char *reason = config_str(c->cfg, "reason");
	char *end = NULL;
	long long n;
	json_t *body;
	int rc;

	if (!account || !num || positional(c, 3))
		return cli_usage_error(c, grant ? "say what: 'troop admin grant ACCOUNT CREDITS'" :
		    "say what: 'troop admin rate-limit ACCOUNT N' (N requests a second; 0: the "
		    "coordinator's default)");
	n = strtoll(num, &end, 10);
	if (end == num || *end || n < (grant ? 1 : 0))
		return cli_usage_error(c, "'%s' is not a %s number", num, grant ? "positive" :
		    "whole");
	if ((rc = cli_load_identity(c)) != 0)
		return rc;
	body = json_pack("{s:s, s:I}", "account", account, grant ? "credits" : "per_second",
	    (json_int_t)n);
	if (body && reason && reason[0])
		json_object_set_new(body, "reason", json_string(reason));
	rc = cli_call_ok(c, out, "POST", grant ? "/admin/grant" : "/admin/rate-limit", body,
	    true);
	json_decref(body);
	if (rc != 0 || c->json)
		return rc ? rc : cli_print_json(*out);
	if (grant)
		printf("granted %lld credit-seconds to %s\n", n, account);
	else if (n > 0)
		printf("account %s: at most %lld /authorize requests a second\n", account, n);
	else
		printf("account %s: the coordinator's default rate limit\n", account);
	return 0;
}

int cmd_admin(int argc, char **argv)
{
	char path[128];
	const char *what;
	json_t *out = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "admin", "COMMAND [ARGS] [--json] [--coordinator URL]",
	    "Operator commands; your identity must be an --admin of the coordinator.\n"
	    "Every change is kept in the ledger's audit log (docs/OPERATING.md).\n"
	    "  suspend node|account ID --reason TEXT\n"
	    "           a suspended node is never chosen and its receipts settle at 0;\n"
	    "           a suspended account cannot authorize\n"
	    "  unsuspend node|account ID [--reason TEXT]\n"
	    "  list nodes|accounts [--after ID] [--limit N]\n"
	    "           reputation, jobs, disputes, pending earnings, standing\n"
	    "  audit [--account A | --node N] [--type T] [--since TIME] [--before CURSOR]\n"
	    "           the audit log, newest first\n"
	    "  invite [--credits N]     a new invite code (--starter-policy invite)\n"
	    "  rate-limit ACCOUNT N     at most N /authorize requests a second for the\n"
	    "           account (0: the coordinator's --account-rate-limit)\n"
	    "  grant ACCOUNT CREDITS [--reason TEXT]\n"
	    "  rotate-ticket-key [--lead SECONDS] [--reason TEXT]\n"
	    "           a new ticket signing key: published at once, signing after the\n"
	    "           lead; the old key stays published until its tickets expire, so\n"
	    "           no ticket in flight is refused (docs/OPERATING.md)\n"
	    "  report   accounts whose spending all went to one node or one owner, and\n"
	    "           nodes that earned mostly from trial (starter) credits: where a\n"
	    "           ring of throwaway accounts would show (docs/CREDITS.md).\n"
	    "Ids go after the options; an id starting with '-' after '--':\n"
	    "  troop admin suspend node --reason \"...\" -- -Xb3...",
	    admin_opts, argc, argv, 4))
		return rc;
	what = positional(&c, 0);
	if (!what) {
		rc = cli_usage_error(&c, "say what: suspend, unsuspend, list, audit, invite, "
		    "rate-limit, grant, rotate-ticket-key or report");
		goto out;
	}
	if (strcmp(what, "suspend") == 0 || strcmp(what, "unsuspend") == 0) {
		rc = do_suspend(&c, &out, what[0] == 's');
		if (rc == 0 && c.json)
			rc = cli_print_json(out);
		goto out;
	}
	if (strcmp(what, "list") == 0) {
		rc = do_list(&c, &out);
		goto out;
	}
	if (strcmp(what, "audit") == 0) {
		rc = do_audit(&c, &out);
		goto out;
	}
	if (strcmp(what, "invite") == 0) {
		rc = do_invite(&c, &out);
		goto out;
	}
	if (strcmp(what, "rotate-ticket-key") == 0) {
		rc = do_rotate(&c, &out);
		goto out;
	}
	if (strcmp(what, "rate-limit") == 0 || strcmp(what, "grant") == 0) {
		rc = do_account_number(&c, &out, what[0] == 'g');
		goto out;
	}
	if (strcmp(what, "report") != 0 || positional(&c, 1)) {
		rc = cli_usage_error(&c, "unknown admin command '%s': suspend, unsuspend, list, "
		    "audit, invite, rate-limit, grant, rotate-ticket-key or report", what);
		goto out;
	}
	if ((rc = cli_load_identity(&c)) != 0)
		goto out;
	snprintf(path, sizeof(path), "/admin/report?min_jobs=%ld&limit=%ld",
	    config_int(c.cfg, "min-jobs"), config_int(c.cfg, "limit"));
	if ((rc = cli_call_ok(&c, &out, "GET", path, NULL, true)) != 0)
		goto out;
	rc = c.json ? cli_print_json(out) : print_report(out);
out:
	json_decref(out);
	cli_end(&c);
	return rc;
}
