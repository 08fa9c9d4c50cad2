/*
 * cli_list.c - `troop nodes` and `troop models`: what the troop offers
 * right now, from the coordinator's public discovery endpoints
 * (GET /peers, GET /v1/models; DESIGN.md section 6).  Unsigned.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"

/* ---- nodes ------------------------------------------------------------------- */

static const config_opt nodes_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ "model", 'm', OPT_STRING, NULL, NULL, NULL, "MODEL",
	  "only nodes serving MODEL (a name or a content hash)", 0, 0 },
	{ "limit", 'n', OPT_INT, NULL, NULL, "0", "N",
	  "show at most N nodes (0: every live node)", 0, 1000000000.0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

/* Nodes asked for in one /peers page (the coordinator's most). */
#define NODES_PAGE 1000
/* Tries of one page the coordinator's anonymous rate limit refused. */
#define NODES_RATE_TRIES 30

/* "llama3:8b, qwen2.5:7b" from a node's models array, bounded. */
static void join_models(char *out, size_t len, const json_t *models)
{
	size_t i, o = 0;
	json_t *m;

	out[0] = '\0';
	json_array_foreach(models, i, m) {
		const char *name = json_string_value(json_object_get(m, "name"));
		int n;
		if (!name)
			continue;
		n = snprintf(out + o, len - o, "%s%s", o ? "," : "", name);
		if (n < 0 || (size_t)n >= len - o) {
			/* mark the cut instead of silently dropping models */
			if (len > 4)
				memcpy(out + len - 4, "...", 4);
			return;
		}
		o += (size_t)n;
	}
}

/* One node of /peers as a row of `troop nodes`. */
static void node_row(cli_row *r, const json_t *n, void *arg)
{
	const char *id = json_string_value(json_object_get(n, "node_id"));
	const char *ip = json_string_value(json_object_get(n, "tailscale_ip"));
	const char *name = json_string_value(json_object_get(n, "name"));
	const json_t *load = json_object_get(n, "load");

	(void)arg;
	snprintf(r->buf[0], sizeof(r->buf[0]), "%.8s", id ? id : "?");
	ip = ip ? ip : "?";
	snprintf(r->buf[2], sizeof(r->buf[2]), strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip,
	    (long long)json_integer_value(json_object_get(n, "port")));
	join_models(r->buf[4], sizeof(r->buf[4]), json_object_get(n, "models"));
	snprintf(r->buf[5], sizeof(r->buf[5]), "%lld/%lld",
	    (long long)json_integer_value(json_object_get(load, "active_jobs")),
	    (long long)json_integer_value(json_object_get(load, "max_jobs")));
	snprintf(r->buf[6], sizeof(r->buf[6]), "x%.2f",
	    json_number_value(json_object_get(n, "multiplier")));
	r->cells[0] = r->buf[0];
	r->cells[1] = name && *name ? name : NULL;
	r->cells[2] = r->buf[2];
	r->cells[3] = json_string_value(json_object_get(n, "status"));
	r->cells[4] = r->buf[4];
	r->cells[5] = r->buf[5];
	r->cells[6] = r->buf[6];
	/* a proof verifies a node for its own class only */
	const char *cls = json_string_value(json_object_get(n, "hardware_class"));
	if (!json_is_true(json_object_get(n, "verified")))
		snprintf(r->buf[7], sizeof(r->buf[7]), "no");
	else if (cls && *cls)
		snprintf(r->buf[7], sizeof(r->buf[7]), "yes (%.8s)", cls);
	else
		snprintf(r->buf[7], sizeof(r->buf[7]), "yes");
	snprintf(r->buf[9], sizeof(r->buf[9]), "%lld (%.0f%%)",
	    (long long)json_integer_value(json_object_get(n, "disputes")),
	    json_number_value(json_object_get(n, "dispute_rate")) * 100.0);
	r->cells[7] = r->buf[7];
	r->cells[8] = json_is_true(json_object_get(n, "established")) ? "yes" : "no";
	r->cells[9] = r->buf[9];
	/* whether it offers a sealing key (end-to-end encrypted prompts) */
	{
		const char *sk = json_string_value(json_object_get(n, "seal_key"));
		r->cells[11] = sk && *sk ? "yes" : "no";
	}
	/* its reputation (docs/SCHEDULING.md); "new" while it earns one */
	{
		const json_t *d = json_object_get(n, "reputation_detail");
		snprintf(r->buf[10], sizeof(r->buf[10]), "%.2f%s",
		    json_number_value(json_object_get(n, "reputation")),
		    json_is_true(json_object_get(d, "new")) ? " new" : "");
		r->cells[10] = r->buf[10];
	}
}

/* GET one /peers page into *out: at most `want` nodes after `cursor`
 * (NULL for the first page).  A page refused by the anonymous rate limit
 * (429) is asked again a second later, NODES_RATE_TRIES times at most.
 * Returns 0, or 1 after reporting the error. */
static int nodes_page(cli *c, json_t **out, const char *model_esc, const char *cursor,
    size_t want)
{
	char path[1400];
	char *cur = NULL;
	int rc, status = 0;

	if (cursor && (cur = cli_url_escape(cursor)) == NULL) {
		fprintf(stderr, "troop nodes: out of memory\n");
		return 1;
	}
	snprintf(path, sizeof(path), "/peers?limit=%zu%s%s%s%s", want,
	    model_esc ? "&model=" : "", model_esc ? model_esc : "",
	    cur ? "&cursor=" : "", cur ? cur : "");
	free(cur);
	for (int i = 0; i < NODES_RATE_TRIES; i++) {
		*out = NULL;
		if (cli_call(c, &status, out, "GET", path, NULL, false) != 0)
			return 1;       /* unreachable: reported */
		if (status != 429)
			break;
		json_decref(*out);
		*out = NULL;
		sleep(1);
	}
	if (status >= 200 && status < 300 && *out)
		return 0;
	if (status >= 200 && status < 300) {
		return cli_fail(c, "the coordinator at %s answered without a JSON body; is "
		    "--coordinator pointing at a troop coordinator?", c->coordinator);
	}
	rc = cli_report_error(c, "the coordinator", status, *out);
	json_decref(*out);
	*out = NULL;
	return rc;
}

/* Every live node (serving `model`), at most `limit` (0: no bound), page
 * by page following next_cursor, as one reply {count, nodes, truncated,
 * next_cursor}: next_cursor is where --limit stopped (null at the end).
 * Returns 0 and *out, or 1 after reporting the error. */
static int nodes_fetch(cli *c, json_t **out, const char *model_esc, size_t limit)
{
	json_t *all = json_array(), *page = NULL;
	char cursor[200] = "";
	const char *next = NULL;
	size_t got = 0;

	for (;;) {
		size_t want = limit && limit - got < NODES_PAGE ? limit - got : NODES_PAGE;
		json_t *nodes;

		if (nodes_page(c, &page, model_esc, cursor[0] ? cursor : NULL, want) != 0) {
			json_decref(all);
			return 1;
		}
		nodes = json_object_get(page, "nodes");
		if (json_is_array(nodes))
			json_array_extend(all, nodes);
		got = json_array_size(all);
		next = json_string_value(json_object_get(page, "next_cursor"));
		/* the end, the bound, or a cursor that would not move on */
		if (!next || !next[0] || strlen(next) >= sizeof(cursor) ||
		    strcmp(next, cursor) == 0 || json_array_size(nodes) == 0 ||
		    (limit && got >= limit))
			break;
		snprintf(cursor, sizeof(cursor), "%s", next);
		json_decref(page);
		page = NULL;
	}
	*out = json_pack("{s:I, s:o, s:b, s:o}", "count", (json_int_t)got, "nodes", all,
	    "truncated", next != NULL && next[0] != '\0',
	    "next_cursor", next && next[0] ? json_string(next) : json_null());
	json_decref(page);
	return *out ? 0 : 1;
}

int cmd_nodes(int argc, char **argv)
{
	static const char *const hdr[12] = { "ID", "NAME", "ADDRESS", "STATUS", "MODELS",
		"LOAD", "MULT", "VERIFIED", "ESTABLISHED", "DISPUTES", "REPUTATION", "SEALED" };
	const char *model;
	char empty[400];
	char *esc = NULL;
	json_t *out = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "nodes",
	    "[--model MODEL] [--limit N] [--json] [--coordinator URL]",
	    "List the live worker nodes: their address, status, models, load (jobs\n"
	    "running / most at once), speed multiplier (credits a second of their\n"
	    "time costs), whether their hardware was verified (and for which class),\n"
	    "whether they are established (their earnings from trial credits are\n"
	    "spendable; docs/CREDITS.md) and their disputes (jobs they billed for more\n"
	    "than their client saw) and whether they seal requests end to end\n"
	    "(docs/SECURITY.md), and their reputation (availability x reliability x\n"
	    "speed x audits, docs/SCHEDULING.md; 'new' while a node earns one; --json\n"
	    "has the components).  Every live node, in pages of 1,000 (in node id\n"
	    "order), unless --limit bounds them.",
	    nodes_opts, argc, argv, 0))
		return rc;
	model = config_str(c.cfg, "model");
	if (model) {
		esc = cli_url_escape(model);
		if (!esc || strlen(esc) > 768) {
			rc = cli_usage_error(&c, "--model: name too long");
			goto out;
		}
	}
	if ((rc = nodes_fetch(&c, &out, esc, (size_t)config_int(c.cfg, "limit"))) != 0)
		goto out;
	if (c.json) {
		rc = cli_print_json(out);
		goto out;
	}
	if (model)
		snprintf(empty, sizeof(empty), "No live node serves '%.300s' right now (see "
		    "'troop models').", model);
	else
		snprintf(empty, sizeof(empty), "No live nodes right now.  Start one with "
		    "'troop worker'.");
	if ((rc = cli_print_rows(&c, json_object_get(out, "nodes"), 12, hdr,
	    1u << 5 | 1u << 6 | 1u << 9 | 1u << 10,
	    empty, node_row, NULL)) != 0)
		goto out;
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	free(esc);
	json_decref(out);
	cli_end(&c);
	return rc;
}

/* ---- models ------------------------------------------------------------------ */

static const config_opt models_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

/* "sha256:0123456789ab" from "sha256:0123...": 12 hex digits are plenty
 * to tell builds apart at a glance; --json has the whole hash. */
static void short_hash(char *out, size_t len, const char *hash)
{
	const char *colon;

	if (!hash || !*hash) {
		snprintf(out, len, "-");
		return;
	}
	colon = strchr(hash, ':');
	if (colon)
		snprintf(out, len, "%.*s:%.12s", (int)(colon - hash), hash, colon + 1);
	else
		snprintf(out, len, "%.12s", hash);
}

/* One model of /v1/models as a row of `troop models`. */
static void model_row(cli_row *r, const json_t *m, void *arg)
{
	json_int_t bytes = json_integer_value(json_object_get(m, "size_bytes")), ctx;
	json_t *v;
	size_t i;

	(void)arg;
	snprintf(r->buf[1], sizeof(r->buf[1]), "%lld",
	    (long long)json_integer_value(json_object_get(m, "nodes")));
	if (bytes > 0)
		cli_format_bytes(r->buf[2], sizeof(r->buf[2]), bytes);
	else
		snprintf(r->buf[2], sizeof(r->buf[2]), "-");
	short_hash(r->buf[3], sizeof(r->buf[3]),
	    json_string_value(json_object_get(m, "content_hash")));
	r->cells[0] = json_string_value(json_object_get(m, "id"));
	r->cells[1] = r->buf[1];
	r->cells[2] = r->buf[2];
	r->cells[3] = r->buf[3];
	/* what the engines say; "-" where none says */
	ctx = json_integer_value(json_object_get(m, "context_length"));
	if (ctx > 0)
		snprintf(r->buf[4], sizeof(r->buf[4]), "%lld", (long long)ctx);
	else
		snprintf(r->buf[4], sizeof(r->buf[4]), "-");
	r->cells[4] = r->buf[4];
	r->buf[5][0] = '\0';
	json_array_foreach(json_object_get(m, "capabilities"), i, v) {
		size_t used = strlen(r->buf[5]);
		if (json_is_string(v) && used + json_string_length(v) + 2 < sizeof(r->buf[5]))
			snprintf(r->buf[5] + used, sizeof(r->buf[5]) - used, "%s%s",
			    used ? "," : "", json_string_value(v));
	}
	r->cells[5] = r->buf[5][0] ? r->buf[5] : NULL;
}

int cmd_models(int argc, char **argv)
{
	static const char *const hdr[6] = { "MODEL", "NODES", "SIZE", "CONTENT HASH", "CONTEXT",
		"CAPABILITIES" };
	json_t *out = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "models", "[--json] [--coordinator URL]",
	    "List the models live nodes serve, how many nodes serve each, the size and\n"
	    "the content hash of the weights, the largest context length and what the\n"
	    "model takes (tools, vision, embeddings) when the engines tell them.",
	    models_opts, argc, argv, 0))
		return rc;
	if ((rc = cli_call_ok(&c, &out, "GET", "/v1/models", NULL, false)) != 0)
		goto out;
	if (c.json) {
		rc = cli_print_json(out);
		goto out;
	}
	if ((rc = cli_print_rows(&c, json_object_get(out, "data"), 6, hdr,
	    1u << 1 | 1u << 2 | 1u << 4,
	    "No models are served right now.  Start a worker with 'troop worker'.", model_row,
	    NULL)) != 0)
		goto out;
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	json_decref(out);
	cli_end(&c);
	return rc;
}
