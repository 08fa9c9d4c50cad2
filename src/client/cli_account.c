/*
 * cli_account.c - `troop balance`, `troop transactions` and `troop
 * account`: this machine's account as the coordinator's ledger sees it
 * (DESIGN.md section 7), its name on the public leaderboard, and invite
 * codes.  Every call is signed with the identity in $TROOP_HOME; the
 * coordinator answers only for the signing account.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "error.h"
#include "proto.h"

/* ---- balance ----------------------------------------------------------------- */

static const config_opt balance_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

static json_int_t get_int(const json_t *o, const char *name)
{
	return json_integer_value(json_object_get(o, name));
}

static int digits(json_int_t v)
{
	char buf[32];

	return snprintf(buf, sizeof(buf), "%lld", (long long)v);
}

int cmd_balance(int argc, char **argv)
{
	char path[128];
	json_t *out = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "balance", "[--json] [--coordinator URL]",
	    "Show your credits: the balance, what open jobs hold in reserve, what is\n"
	    "available to spend, the trial credits among it (starter credits: spendable,\n"
	    "not transferable) and your nodes' pending earnings (spendable once the node\n"
	    "is established; see docs/CREDITS.md).  One credit is one second of a\n"
	    "reference GPU.",
	    balance_opts, argc, argv, 0))
		return rc;
	if ((rc = cli_load_identity(&c)) != 0)
		goto out;
	snprintf(path, sizeof(path), "/users/%s/balance", c.id.id);
	if ((rc = cli_call_ok(&c, &out, "GET", path, NULL, true)) != 0)
		goto out;
	if (c.json) {
		rc = cli_print_json(out);
		goto out;
	}
	{
		json_int_t bal = get_int(out, "balance_seconds");
		json_int_t res = get_int(out, "reserved_seconds");
		json_int_t avail = get_int(out, "available_seconds");
		json_int_t trial = get_int(out, "trial_seconds");
		json_int_t pend = get_int(out, "pending_seconds");
		int w = digits(bal);
		if (digits(res) > w)
			w = digits(res);
		if (digits(avail) > w)
			w = digits(avail);
		if (digits(pend) > w)
			w = digits(pend);
		printf("account    %s\n", c.id.id);
		printf("balance    %*lld s  (%.2f h)\n", w, (long long)bal, (double)bal / 3600.0);
		printf("reserved   %*lld s  (%.2f h)\n", w, (long long)res, (double)res / 3600.0);
		printf("available  %*lld s  (%.2f h)\n", w, (long long)avail,
		    (double)avail / 3600.0);
		printf("trial      %*lld s  (%.2f h, starter credits among the above)\n", w,
		    (long long)trial, (double)trial / 3600.0);
		printf("pending    %*lld s  (%.2f h, earned, spendable once your node is "
		    "established)\n", w, (long long)pend, (double)pend / 3600.0);
		printf("disputes   %*lld    (of %lld delivery reports, %.0f%%: reports that said "
		    "a job took less time than its tokens need)\n", w,
		    (long long)get_int(out, "disputes"), (long long)get_int(out, "reports"),
		    json_number_value(json_object_get(out, "dispute_rate")) * 100.0);
	}
	if (get_int(out, "reserved_seconds") > 0)
		printf("\nReserved credits are held for jobs in flight; what a job does not use "
		    "comes back when it settles.\n");
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	json_decref(out);
	cli_end(&c);
	return rc;
}

/* ---- transactions ---------------------------------------------------------------- */

static const config_opt tx_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ "limit", 'n', OPT_INT, NULL, NULL, "20", "N", "show the N newest movements",
	  1, 500 },
	{ "before", 'b', OPT_INT, NULL, NULL, NULL, "ID",
	  "only movements older than ID (the 'next' cursor of the previous page)", 1,
	  9007199254740991.0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

/* A measured duration as a person reads it: "850 ms", "12.4 s". */
static void fmt_duration(char *out, size_t len, long long ms)
{
	if (ms < 1000)
		snprintf(out, len, "%lld ms", ms);
	else
		snprintf(out, len, "%.1f s", (double)ms / 1000.0);
}

/* The change a row made to `me`'s available balance, and a note saying
 * what it was. */
/* The dispute part of a settle row's note ("disputed: worker claimed ...",
 * "client dispute: reported ..."; docs/PROTOCOL.md), or NULL. */
static const char *dispute_of(const char *note)
{
	const char *d;

	if (!note)
		return NULL;
	if ((d = strstr(note, "client dispute:")) != NULL)
		return d;
	return strstr(note, "disputed:");
}

static void tx_describe(char *credits, size_t clen, char *note, size_t nlen,
    const json_t *row, const char *me)
{
	const char *type = json_string_value(json_object_get(row, "type"));
	const char *worker = json_string_value(json_object_get(row, "worker"));
	const char *requester = json_string_value(json_object_get(row, "requester"));
	const char *reason = json_string_value(json_object_get(row, "note"));
	long long n = (long long)get_int(row, "credits");
	char took[32];
	bool mine_worker = worker && strcmp(worker, me) == 0;
	bool mine_req = requester && strcmp(requester, me) == 0;

	fmt_duration(took, sizeof(took), (long long)get_int(row, "duration_ms"));
	type = type ? type : "";
	if (strcmp(type, "grant") == 0) {
		snprintf(credits, clen, "+%lld", n);
		snprintf(note, nlen, "%s (trial credits: spendable, not transferable)",
		    reason && strcmp(reason, "invite") == 0 ? "invite code" : "starter credits");
	} else if (strcmp(type, "mature") == 0) {
		snprintf(credits, clen, "+%lld", n);
		snprintf(note, nlen, "pending earnings released (%s)", reason ? reason : "");
	} else if (strcmp(type, "forfeit") == 0) {
		snprintf(credits, clen, "0");
		snprintf(note, nlen, "pending earnings of %lld forfeited: failed audit (%s)", n,
		    reason ? reason : "");
	} else if (strcmp(type, "admin") == 0) {
		snprintf(credits, clen, "+%lld", n);
		snprintf(note, nlen, "granted by an operator%s%s", reason && *reason ? ": " : "",
		    reason ? reason : "");
	} else if (strcmp(type, "reserve") == 0 && mine_req) {
		snprintf(credits, clen, "-%lld", n);
		snprintf(note, nlen, "held for the job");
	} else if (strcmp(type, "reserve") == 0) {
		/* a job this account's node serves: the requester's money */
		snprintf(credits, clen, "0");
		snprintf(note, nlen, "requester's hold of %lld for a job you serve", n);
	} else if (strcmp(type, "release") == 0 && mine_req) {
		snprintf(credits, clen, "+%lld", n);
		snprintf(note, nlen, "unused hold returned");
	} else if (strcmp(type, "release") == 0) {
		snprintf(credits, clen, "0");
		snprintf(note, nlen, "requester's unused hold of %lld returned", n);
	} else if (strcmp(type, "settle") == 0 && mine_worker) {
		long long pend = 0;
		char part[64] = "";
		if (reason && strncmp(reason, "pending=", 8) == 0)
			pend = strtoll(reason + 8, NULL, 10);
		if (pend > 0)
			snprintf(part, sizeof(part), "; %lld paid with trial credits, pending", pend);
		snprintf(credits, clen, "+%lld", n - pend);
		snprintf(note, nlen, "earned serving for %s (1 credit per second x the node's "
		    "multiplier, rounded up)%s%s%s%s", took, mine_req ? "; your own job" : "", part,
		    dispute_of(reason) ? "; " : "", dispute_of(reason) ? dispute_of(reason) : "");
	} else if (strcmp(type, "settle") == 0) {
		/* the charge comes out of the hold, already taken at reserve */
		snprintf(credits, clen, "(-%lld)", n);
		snprintf(note, nlen, "charged from the hold: %s served (1 credit per second x "
		    "the node's multiplier, rounded up)%s%s", took, dispute_of(reason) ? "; " : "",
		    dispute_of(reason) ? dispute_of(reason) : "");
	} else {
		snprintf(credits, clen, "%lld", n);
		snprintf(note, nlen, "%s", "");
	}
}

/* One credit movement as a row of `troop transactions`; arg is the
 * account's id. */
static void tx_row(cli_row *r, const json_t *row, void *arg)
{
	time_t ts = (time_t)get_int(row, "timestamp");
	struct tm tm;
	const char *job = json_string_value(json_object_get(row, "job_id"));
	const char *model = json_string_value(json_object_get(row, "model"));

	snprintf(r->buf[0], sizeof(r->buf[0]), "%lld", (long long)get_int(row, "id"));
	if (localtime_r(&ts, &tm))
		strftime(r->buf[1], sizeof(r->buf[1]), "%Y-%m-%d %H:%M:%S", &tm);
	else
		snprintf(r->buf[1], sizeof(r->buf[1]), "%lld", (long long)ts);
	tx_describe(r->buf[3], sizeof(r->buf[3]), r->buf[6], sizeof(r->buf[6]), row, arg);
	r->cells[0] = r->buf[0];
	r->cells[1] = r->buf[1];
	r->cells[2] = json_string_value(json_object_get(row, "type"));
	r->cells[3] = r->buf[3];
	r->cells[4] = job && *job ? job : NULL;
	r->cells[5] = model && *model ? model : NULL;
	r->cells[6] = r->buf[6];
}

int cmd_transactions(int argc, char **argv)
{
	static const char *const hdr[7] = { "ID", "TIME", "TYPE", "CREDITS", "JOB", "MODEL",
		"NOTE" };
	char path[160], empty[200];
	json_t *out = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "transactions",
	    "[--limit N] [--before ID] [--json] [--coordinator URL]",
	    "List your credit movements, newest first.  CREDITS is the change to your\n"
	    "available balance; a settled job's charge, in parentheses, was already held\n"
	    "by its reservation.  The JOB column matches the X-Troop-Job header of\n"
	    "'troop up' and the job id 'troop chat' prints.",
	    tx_opts, argc, argv, 0))
		return rc;
	if ((rc = cli_load_identity(&c)) != 0)
		goto out;
	if (config_is_set(c.cfg, "before"))
		snprintf(path, sizeof(path), "/users/%s/transactions?limit=%ld&before=%ld",
		    c.id.id, config_int(c.cfg, "limit"), config_int(c.cfg, "before"));
	else
		snprintf(path, sizeof(path), "/users/%s/transactions?limit=%ld", c.id.id,
		    config_int(c.cfg, "limit"));
	if ((rc = cli_call_ok(&c, &out, "GET", path, NULL, true)) != 0)
		goto out;
	if (c.json) {
		rc = cli_print_json(out);
		goto out;
	}
	if (config_is_set(c.cfg, "before"))
		snprintf(empty, sizeof(empty), "No credit movements before %ld.",
		    config_int(c.cfg, "before"));
	else
		snprintf(empty, sizeof(empty), "No credit movements yet for account %s.", c.id.id);
	if ((rc = cli_print_rows(&c, json_object_get(out, "transactions"), 7, hdr,
	    1u << 0 | 1u << 3, empty, tx_row, c.id.id)) != 0)
		goto out;
	if (json_is_integer(json_object_get(out, "next")))
		printf("(older movements exist: 'troop transactions --before %lld' shows them)\n",
		    (long long)json_integer_value(json_object_get(out, "next")));
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	json_decref(out);
	cli_end(&c);
	return rc;
}

/* ---- account ------------------------------------------------------------------ */

static const config_opt account_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ "clear", 0, OPT_BOOL, NULL, NULL, NULL, NULL,
	  "with 'name': take your name off the leaderboard", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

static const char *account_arg(const cli *c, size_t i)
{
	return config_npositional(c->cfg) > i ? config_positional(c->cfg, i) : NULL;
}

/* name NAME | name --clear */
static int account_name(cli *c, json_t **out)
{
	const char *name = account_arg(c, 1);
	bool clear = config_bool(c->cfg, "clear");
	json_t *body;
	int rc;

	if (clear == (name != NULL))
		return cli_usage_error(c, "say the name to show ('troop account name \"My GPUs\"'), "
		    "or --clear to show your account by its id only");
	if (clear)
		name = "";
	else if (name[0] == '\0')
		return cli_usage_error(c, "the name is empty: use --clear to take it off");
	if (proto_display_name_check(name) != 0)
		return cli_usage_error(c, "%s", troop_error_msg());
	if ((rc = cli_load_identity(c)) != 0)
		return rc;
	body = json_pack("{s:s}", "display_name", name);
	rc = cli_call_ok(c, out, "POST", "/accounts/name", body, true);
	json_decref(body);
	if (rc != 0)
		return rc;
	if (c->json)
		return cli_print_json(*out);
	if (clear)
		printf("The leaderboard shows your account by its id only (%.8s...).\n", c->id.id);
	else
		printf("The leaderboard shows your account as \"%s\" (next to its id, %.8s...).\n"
		    "Anyone can read it at %s/leaderboard and on the network page.\n", name,
		    c->id.id, c->coordinator);
	return 0;
}

/* redeem CODE */
static int account_redeem(cli *c, json_t **out)
{
	const char *code = account_arg(c, 1);
	json_t *body;
	int rc;

	if (!code || account_arg(c, 2))
		return cli_usage_error(c, "say the invite code: 'troop account redeem CODE'");
	if ((rc = cli_load_identity(c)) != 0)
		return rc;
	body = json_pack("{s:s}", "code", code);
	rc = cli_call_ok(c, out, "POST", "/invites/redeem", body, true);
	json_decref(body);
	if (rc != 0)
		return rc;
	if (c->json)
		return cli_print_json(*out);
	printf("Redeemed: %lld trial credit-seconds (%.2f h) for %.8s...  They are spendable, "
	    "not transferable; 'troop balance' shows them.\n",
	    (long long)get_int(*out, "trial_credits"),
	    (double)get_int(*out, "trial_credits") / 3600.0, c->id.id);
	return 0;
}

int cmd_account(int argc, char **argv)
{
	const char *what;
	json_t *out = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "account", "COMMAND [ARGS] [--json] [--coordinator URL]",
	    "Your account on the coordinator:\n"
	    "  name NAME     show NAME (at most 32 bytes) on the public donors' leaderboard,\n"
	    "                next to your account id; by default an account shows by its\n"
	    "                id only\n"
	    "  name --clear  take the name off again\n"
	    "  redeem CODE   redeem an invite code for trial credits (coordinators with\n"
	    "                --starter-policy invite; the operator makes codes with\n"
	    "                'troop admin invite')",
	    account_opts, argc, argv, 3))
		return rc;
	what = account_arg(&c, 0);
	if (!what)
		rc = cli_usage_error(&c, "say what: name or redeem");
	else if (strcmp(what, "name") == 0)
		rc = account_name(&c, &out);
	else if (strcmp(what, "redeem") == 0)
		rc = account_redeem(&c, &out);
	else
		rc = cli_usage_error(&c, "unknown account command '%s': name or redeem", what);
	json_decref(out);
	cli_end(&c);
	return rc;
}
