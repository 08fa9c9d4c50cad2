/*
 * cli_list.c - `troop nodes` and `troop models`: what the troop offers
 * right now, from the coordinator's public discovery endpoints
 * (GET /peers, GET /v1/models; DESIGN.md section 6).  Unsigned.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

/* ---- nodes ------------------------------------------------------------------- */

static const config_opt nodes_opts[] = {
	CLI_OPT_COORDINATOR,
	CLI_OPT_JSON,
	{ "model", 'm', OPT_STRING, NULL, NULL, NULL, "MODEL",
	  "only nodes serving MODEL (a name or a content hash)", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

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

int cmd_nodes(int argc, char **argv)
{
	static const char *const hdr[10] = { "ID", "NAME", "ADDRESS", "STATUS", "MODELS",
		"LOAD", "MULT", "VERIFIED", "ESTABLISHED", "DISPUTES" };
	const char *model;
	char path[1024];
	json_t *out = NULL, *nodes, *n;
	cli_table *t = NULL;
	size_t i;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "nodes", "[--model MODEL] [--json] [--coordinator URL]",
	    "List the live worker nodes: their address, status, models, load (jobs\n"
	    "running / most at once), speed multiplier (credits a second of their\n"
	    "time costs), whether their hardware was verified (and for which class),\n"
	    "whether they are established (their earnings from trial credits are\n"
	    "spendable; docs/CREDITS.md) and their disputes (jobs they billed for more\n"
	    "than their client saw).",
	    nodes_opts, argc, argv, 0))
		return rc;
	model = config_str(c.cfg, "model");
	if (model) {
		char *esc = cli_url_escape(model);
		if (!esc || strlen(esc) > 512) {
			free(esc);
			rc = cli_usage_error(&c, "--model: name too long");
			goto out;
		}
		snprintf(path, sizeof(path), "/peers?model=%s", esc);
		free(esc);
	} else {
		snprintf(path, sizeof(path), "/peers");
	}
	if ((rc = cli_call_ok(&c, &out, "GET", path, NULL, false)) != 0)
		goto out;
	if (c.json) {
		rc = cli_print_json(out);
		goto out;
	}
	nodes = json_object_get(out, "nodes");
	if (json_array_size(nodes) == 0) {
		if (model)
			printf("No live node serves '%s' right now (see 'troop models').\n", model);
		else
			printf("No live nodes right now.  Start one with 'troop worker'.\n");
		rc = fflush(stdout) == 0 ? 0 : 1;
		goto out;
	}
	t = cli_table_new(10, hdr);
	if (!t) {
		rc = cli_fail(&c, "out of memory");
		goto out;
	}
	cli_table_align_right(t, 5);
	cli_table_align_right(t, 6);
	cli_table_align_right(t, 9);
	json_array_foreach(nodes, i, n) {
		const char *id = json_string_value(json_object_get(n, "node_id"));
		const char *ip = json_string_value(json_object_get(n, "tailscale_ip"));
		const char *name = json_string_value(json_object_get(n, "name"));
		json_t *load = json_object_get(n, "load");
		const char *cls = json_string_value(json_object_get(n, "hardware_class"));
		char sid[9], addr[96], models[256], ld[32], mult[32], ver[32], disp[32];
		const char *cells[10] = { sid, name && *name ? name : NULL, addr,
			json_string_value(json_object_get(n, "status")), models, ld, mult, ver,
			json_is_true(json_object_get(n, "established")) ? "yes" : "no", disp };

		if (!json_is_true(json_object_get(n, "verified")))
			snprintf(ver, sizeof(ver), "no");
		else if (cls && *cls)
			snprintf(ver, sizeof(ver), "yes (%.8s)", cls);
		else
			snprintf(ver, sizeof(ver), "yes");
		snprintf(disp, sizeof(disp), "%lld",
		    (long long)json_integer_value(json_object_get(n, "disputes")));

		snprintf(sid, sizeof(sid), "%.8s", id ? id : "?");
		ip = ip ? ip : "?";
		snprintf(addr, sizeof(addr), strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip,
		    (long long)json_integer_value(json_object_get(n, "port")));
		join_models(models, sizeof(models), json_object_get(n, "models"));
		snprintf(ld, sizeof(ld), "%lld/%lld",
		    (long long)json_integer_value(json_object_get(load, "active_jobs")),
		    (long long)json_integer_value(json_object_get(load, "max_jobs")));
		snprintf(mult, sizeof(mult), "x%.2f",
		    json_number_value(json_object_get(n, "multiplier")));
		if (cli_table_add(t, cells) != 0) {
			rc = cli_fail(&c, "out of memory");
			goto out;
		}
	}
	cli_table_print(t, stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	cli_table_free(t);
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

int cmd_models(int argc, char **argv)
{
	static const char *const hdr[4] = { "MODEL", "NODES", "SIZE", "CONTENT HASH" };
	json_t *out = NULL, *data, *m;
	cli_table *t = NULL;
	size_t i;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "models", "[--json] [--coordinator URL]",
	    "List the models live nodes serve, how many nodes serve each, the size and\n"
	    "the content hash of the weights (when the engine tells it).",
	    models_opts, argc, argv, 0))
		return rc;
	if ((rc = cli_call_ok(&c, &out, "GET", "/v1/models", NULL, false)) != 0)
		goto out;
	if (c.json) {
		rc = cli_print_json(out);
		goto out;
	}
	data = json_object_get(out, "data");
	if (json_array_size(data) == 0) {
		printf("No models are served right now.  Start a worker with 'troop worker'.\n");
		rc = fflush(stdout) == 0 ? 0 : 1;
		goto out;
	}
	t = cli_table_new(4, hdr);
	if (!t) {
		rc = cli_fail(&c, "out of memory");
		goto out;
	}
	cli_table_align_right(t, 1);
	cli_table_align_right(t, 2);
	json_array_foreach(data, i, m) {
		char nodes[32], size[32], hash[96];
		json_int_t bytes = json_integer_value(json_object_get(m, "size_bytes"));
		const char *cells[4] = { json_string_value(json_object_get(m, "id")), nodes,
			size, hash };

		snprintf(nodes, sizeof(nodes), "%lld",
		    (long long)json_integer_value(json_object_get(m, "nodes")));
		if (bytes > 0)
			cli_format_bytes(size, sizeof(size), bytes);
		else
			snprintf(size, sizeof(size), "-");
		short_hash(hash, sizeof(hash), json_string_value(json_object_get(m, "content_hash")));
		if (cli_table_add(t, cells) != 0) {
			rc = cli_fail(&c, "out of memory");
			goto out;
		}
	}
	cli_table_print(t, stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	cli_table_free(t);
	json_decref(out);
	cli_end(&c);
	return rc;
}
