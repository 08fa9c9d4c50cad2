/*
 * cli_admin.c - `troop admin report`: the operator report of the
 * coordinator (GET /admin/report, signed with the identity in
 * $TROOP_HOME, which must be one of the coordinator's --admin keys):
 *   - accounts whose settled spending all went to one node or one owner
 *     (a throwaway account feeding its maker's node looks like this);
 *   - nodes that earned mostly from trial credits (starter grants).
 * Neither is proof of abuse: a new user trying one friend's node looks
 * the same.  The report says where to look.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static const config_opt admin_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ "min-jobs", 0, OPT_INT, NULL, NULL, "3", "N",
	  "only accounts and nodes with at least N settled jobs", 1, 1000000 },
	{ "limit", 'n', OPT_INT, NULL, NULL, "100", "N", "at most N rows of each kind",
	  1, 500 },
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

int cmd_admin(int argc, char **argv)
{
	char path[128];
	const char *what;
	json_t *out = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "admin", "report [--min-jobs N] [--limit N] [--json] "
	    "[--coordinator URL]",
	    "Operator commands; your identity must be an --admin of the coordinator.\n"
	    "  report   accounts whose spending all went to one node or one owner, and\n"
	    "           nodes that earned mostly from trial (starter) credits: where a\n"
	    "           ring of throwaway accounts would show (docs/CREDITS.md).",
	    admin_opts, argc, argv, 1))
		return rc;
	what = config_npositional(c.cfg) > 0 ? config_positional(c.cfg, 0) : NULL;
	if (!what || strcmp(what, "report") != 0) {
		rc = cli_usage_error(&c, "say what: 'troop admin report'");
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
