/*
 * cli.c - shared plumbing of the client commands: option parsing with the
 * coordinator URL, the identity, coordinator calls with one-line errors,
 * JSON output and aligned tables.  See cli.h.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"

#define CLI_URL_MAX 4096

/* ---- start and end ----------------------------------------------------- */

static void vprint_line(const cli *c, const char *fmt, va_list ap)
{
	char msg[2048];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "troop %s: %s\n", c->cmd, msg);
}

int cli_usage_error(const cli *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint_line(c, fmt, ap);
	va_end(ap);
	fprintf(stderr, "usage: troop %s %s   (see 'troop %s --help')\n", c->cmd,
	    c->synopsis, c->cmd);
	return EXIT_USAGE;
}

int cli_fail(const cli *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint_line(c, fmt, ap);
	va_end(ap);
	return 1;
}

static bool has_option(const config_opt *opts, const char *name)
{
	for (size_t i = 0; opts[i].name; i++)
		if (strcmp(opts[i].name, name) == 0)
			return true;
	return false;
}

bool cli_start(cli *c, int *exit_code, const char *cmd, const char *synopsis,
    const char *summary, const config_opt *opts, int argc, char **argv,
    size_t max_positional)
{
	const char *url;
	size_t len;
	int rc;

	memset(c, 0, sizeof(*c));
	c->cmd = cmd;
	c->synopsis = synopsis;
	rc = config_parse(&c->cfg, opts, argc, argv);
	if (rc == CONFIG_HELP) {
		config_usage(stdout, cmd, synopsis, summary, opts);
		*exit_code = 0;
		return false;
	}
	if (rc != 0) {
		*exit_code = cli_usage_error(c, "%s", troop_error_msg());
		return false;
	}
	if (config_npositional(c->cfg) > max_positional) {
		*exit_code = cli_usage_error(c, "unexpected argument '%s'",
		    config_positional(c->cfg, max_positional));
		goto fail;
	}
	if (has_option(opts, "json"))
		c->json = config_bool(c->cfg, "json");
	url = config_str(c->cfg, "coordinator");
	len = url ? strlen(url) : 0;
	while (len > 0 && url[len - 1] == '/')
		len--;
	if (len == 0 || len >= sizeof(c->coordinator) ||
	    (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
		*exit_code = cli_usage_error(c,
		    "--coordinator: expected an http:// or https:// URL, got '%s'",
		    url ? url : "");
		goto fail;
	}
	memcpy(c->coordinator, url, len);
	c->coordinator[len] = '\0';
	if (http_client_new(&c->http) != 0) {
		*exit_code = cli_fail(c, "%s", troop_error_msg());
		goto fail;
	}
	return true;
fail:
	config_free(c->cfg);
	c->cfg = NULL;
	return false;
}

void cli_end(cli *c)
{
	if (!c)
		return;
	http_client_free(c->http);
	c->http = NULL;
	config_free(c->cfg);
	c->cfg = NULL;
	if (c->have_id)
		identity_wipe(&c->id);
	c->have_id = false;
}

int cli_load_identity(cli *c)
{
	char path[4096];
	bool created = false;

	if (identity_default_path(path, sizeof(path)) != 0)
		return cli_fail(c, "%s; set TROOP_HOME to the directory of your identity",
		    troop_error_msg());
	if (identity_load_or_create(&c->id, path, &created) != 0)
		return cli_fail(c, "%s", troop_error_msg());
	c->have_id = true;
	if (created)
		fprintf(stderr, "troop: created a new identity at %s (account %s)\n", path,
		    c->id.id);
	return 0;
}

/* ---- coordinator calls --------------------------------------------------- */

/* The part of an http_client message after "METHOD URL: ". */
static const char *transport_why(const char *msg)
{
	const char *p = strstr(msg, ": ");

	return p ? p + 2 : msg;
}

int cli_call(cli *c, int *status, json_t **out, const char *method,
    const char *path_query, const json_t *body, bool sign)
{
	int rc;

	*out = NULL;
	*status = 0;
	if (sign) {
		if (!c->have_id && cli_load_identity(c) != 0)
			return 1;
		rc = http_request_signed(c->http, status, out, &c->id, method, c->coordinator,
		    path_query, body);
	} else {
		char url[CLI_URL_MAX];
		if ((size_t)snprintf(url, sizeof(url), "%s%s", c->coordinator, path_query) >=
		    sizeof(url))
			return cli_fail(c, "request URL is too long");
		rc = http_request_json(c->http, status, out, method, url, NULL, body);
	}
	if (rc == TROOP_EUPSTREAM || rc == TROOP_ETIMEOUT)
		return cli_fail(c, "cannot reach the coordinator at %s (%s); is it running? "
		    "Start one with 'troop coordinator', or point --coordinator or "
		    "TROOP_COORDINATOR at yours", c->coordinator, transport_why(troop_error_msg()));
	if (rc != 0)
		return cli_fail(c, "request to the coordinator at %s failed: %s", c->coordinator,
		    troop_error_msg());
	return 0;
}

int cli_call_ok(cli *c, json_t **out, const char *method, const char *path_query,
    const json_t *body, bool sign)
{
	int status, rc;

	rc = cli_call(c, &status, out, method, path_query, body, sign);
	if (rc != 0)
		return rc;
	if (status >= 200 && status < 300 && *out)
		return 0;
	if (status >= 200 && status < 300)
		rc = cli_fail(c, "the coordinator at %s answered without a JSON body; is "
		    "--coordinator pointing at a troop coordinator?", c->coordinator);
	else
		rc = cli_report_error(c, "the coordinator", status, *out);
	json_decref(*out);
	*out = NULL;
	return rc;
}

static const char *error_field(const json_t *body, const char *name)
{
	json_t *e = json_object_get(body, "error");
	const char *s = NULL;

	if (json_is_object(e))
		s = json_string_value(json_object_get(e, name));
	else if (json_is_string(e) && strcmp(name, "message") == 0)
		s = json_string_value(e);
	return s ? s : "";
}

const char *cli_error_code(const json_t *body)
{
	return error_field(body, "code");
}

const char *cli_error_message(const json_t *body)
{
	return error_field(body, "message");
}

int cli_report_error(const cli *c, const char *what, int status, const json_t *body)
{
	char msg[1024];
	const char *code = cli_error_code(body);

	cli_sanitize(msg, sizeof(msg), cli_error_message(body));
	if (!msg[0] && strcmp(what, "the coordinator") == 0)
		return cli_fail(c, "the coordinator at %s answered HTTP %d without a troop error; "
		    "is --coordinator right?", c->coordinator, status);
	if (!msg[0])
		return cli_fail(c, "%s answered HTTP %d without a troop error; try again, or try "
		    "another model", what, status);
	if (strcmp(code, "bad_signature") == 0)
		return cli_fail(c, "%s refused this request's signature: %s; check that this "
		    "machine's clock is right (within 60 s)", what, msg);
	if (strcmp(code, "rate_limited") == 0)
		return cli_fail(c, "%s; wait a few seconds and try again", msg);
	if (strcmp(code, "forbidden") == 0)
		return cli_fail(c, "%s (identity in TROOP_HOME: account %s)", msg,
		    c->have_id ? c->id.id : "not loaded");
	if (strcmp(code, "insufficient_credits") == 0 || strcmp(code, "no_capacity") == 0 ||
	    strcmp(code, "model_not_found") == 0)
		return cli_fail(c, "%s", msg);
	if (status >= 500)
		return cli_fail(c, "%s failed (HTTP %d %s: %s); try again in a moment, or "
		    "tell its operator if it keeps happening", what, status,
		    code[0] ? code : "error", msg);
	return cli_fail(c, "%s answered HTTP %d %s: %s", what, status,
	    code[0] ? code : "error", msg);
}

/* ---- output helpers ---------------------------------------------------------- */

int cli_print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (!s) {
		fprintf(stderr, "troop: out of memory\n");
		return 1;
	}
	fputs(s, stdout);
	fputc('\n', stdout);
	free(s);
	return fflush(stdout) == 0 ? 0 : 1;
}

char *cli_url_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0);
	char *copy = e ? strdup(e) : NULL;

	curl_free(e);
	return copy;
}

/* Length of the valid, printable UTF-8 sequence at p (1 to 4), or 0. */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned cp;
	size_t n;

	if (p[0] < 0x80)
		return p[0] >= 0x20 && p[0] != 0x7f ? 1 : 0;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
		return 0;
	return n;
}

void cli_sanitize(char *out, size_t outlen, const char *in)
{
	const unsigned char *p = (const unsigned char *)(in ? in : "");
	size_t o = 0;

	if (outlen == 0)
		return;
	while (*p) {
		size_t n = utf8_seq(p);
		if (n == 0) {
			if (o + 1 >= outlen)
				break;
			out[o++] = '?';
			p++;
			continue;
		}
		if (o + n >= outlen)
			break;
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
}

void cli_format_bytes(char *out, size_t outlen, int64_t bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(out, outlen, "%lld B", (long long)(bytes < 0 ? 0 : bytes));
		return;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, outlen, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* ---- tickets ------------------------------------------------------------------ */

int cli_worker_url(char *out, size_t len, const char *ip, long long port, const char *path)
{
	unsigned char buf[16];
	bool v6;
	int n;

	if (!ip || port < 1 || port > 65535)
		return -1;
	v6 = inet_pton(AF_INET6, ip, buf) == 1;
	if (!v6 && inet_pton(AF_INET, ip, buf) != 1)
		return -1;
	n = snprintf(out, len, v6 ? "http://[%s]:%lld%s" : "http://%s:%lld%s", ip, port, path);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

bool cli_token_ok(const char *token, size_t max)
{
	size_t n;

	if (!token)
		return false;
	n = strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.");
	return n > 0 && n <= max && token[n] == '\0';
}

/* ---- tables ------------------------------------------------------------------ */

#define CLI_TABLE_MAX_ROWS 100000
#define CLI_CELL_MAX 512

struct cli_table {
	size_t ncols, nrows, cap;
	char **cells;          /* (nrows + 1) * ncols: the headers first */
	bool *right;
};

cli_table *cli_table_new(size_t ncols, const char *const *headers)
{
	cli_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	t->right = calloc(ncols, sizeof(*t->right));
	if (!t->right || cli_table_add(t, headers) != 0) {
		cli_table_free(t);
		return NULL;
	}
	return t;
}

void cli_table_free(cli_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->cap * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->right);
	free(t);
}

void cli_table_align_right(cli_table *t, size_t col)
{
	if (col < t->ncols)
		t->right[col] = true;
}

size_t cli_table_rows(const cli_table *t)
{
	return t->nrows;
}

int cli_table_add(cli_table *t, const char *const *cells)
{
	/* the header row occupies slot 0; rows follow it */
	size_t used = t->cells ? t->nrows + 1 : 0;
	size_t base;

	if (used >= CLI_TABLE_MAX_ROWS)
		return troop_error_set(TROOP_ETOOLARGE, "table over %d rows", CLI_TABLE_MAX_ROWS);
	if (used + 1 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **n = realloc(t->cells, cap * t->ncols * sizeof(*n));
		if (!n)
			return troop_error_set(TROOP_ENOMEM, "out of memory for a table");
		memset(n + t->cap * t->ncols, 0, (cap - t->cap) * t->ncols * sizeof(*n));
		t->cells = n;
		t->cap = cap;
	}
	base = used * t->ncols;
	for (size_t i = 0; i < t->ncols; i++) {
		char buf[CLI_CELL_MAX];
		cli_sanitize(buf, sizeof(buf), cells[i] ? cells[i] : "-");
		t->cells[base + i] = strdup(buf);
		if (!t->cells[base + i]) {
			for (size_t j = 0; j < i; j++) {
				free(t->cells[base + j]);
				t->cells[base + j] = NULL;
			}
			return troop_error_set(TROOP_ENOMEM, "out of memory for a table");
		}
	}
	if (used > 0)
		t->nrows++;
	return 0;
}

/* Columns a (sanitized, valid UTF-8) string takes: one per code point. */
static size_t display_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void cli_table_print(const cli_table *t, FILE *f)
{
	size_t *width = calloc(t->ncols, sizeof(*width));

	if (!width)
		return;
	for (size_t r = 0; r <= t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			size_t w = display_width(t->cells[r * t->ncols + i]);
			if (w > width[i])
				width[i] = w;
		}
	for (size_t r = 0; r <= t->nrows; r++) {
		size_t pending = 0; /* blanks owed before the next cell */
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			size_t pad = width[i] - display_width(s);
			bool last = i + 1 == t->ncols;
			if (t->right[i])
				pending += pad;
			fprintf(f, "%*s%s", (int)pending, "", s);
			pending = last ? 0 : 2 + (t->right[i] ? 0 : pad);
		}
		fputc('\n', f);
	}
	free(width);
}

int cli_print_rows(const cli *c, const json_t *items, size_t ncols, const char *const *hdr,
    unsigned right_cols, const char *empty, cli_row_fn fn, void *arg)
{
	cli_table *t;
	const json_t *item;
	cli_row *row;
	size_t i;
	int rc = 0;

	if (json_array_size(items) == 0) {
		printf("%s\n", empty);
		return 0;
	}
	if (ncols > CLI_ROW_MAX_COLS)
		return cli_fail(c, "internal error: a table of %zu columns", ncols);
	t = cli_table_new(ncols, hdr);
	row = malloc(sizeof(*row));
	if (!t || !row) {
		rc = cli_fail(c, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < ncols; k++)
		if (right_cols & (1u << k))
			cli_table_align_right(t, k);
	json_array_foreach(items, i, item) {
		memset(row->cells, 0, sizeof(row->cells));
		fn(row, item, arg);
		if (cli_table_add(t, row->cells) != 0) {
			rc = cli_fail(c, "out of memory");
			goto out;
		}
	}
	cli_table_print(t, stdout);
out:
	free(row);
	cli_table_free(t);
	return rc;
}
