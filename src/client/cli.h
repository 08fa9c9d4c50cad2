/*
 * cli.h - what the client commands (`troop balance`, `nodes`, `models`,
 * `transactions`, `chat`, `up`) share: the --coordinator option and its
 * environment fallbacks, loading the identity from $TROOP_HOME, calling
 * the coordinator (signed or not), turning a coordinator error into one
 * line that says what to do, aligned tables for people and JSON for
 * scripts.
 *
 * Exit codes follow commands.h: 0 success, 1 error, EXIT_USAGE (2) bad
 * usage.  Nothing here is thread-safe: a cli belongs to the command's
 * main thread.
 */
#ifndef TROOP_CLIENT_CLI_H
#define TROOP_CLIENT_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "http_client.h"
#include "identity.h"
#include "ticket.h"

#define CLI_DEFAULT_COORDINATOR "http://127.0.0.1:8420"

/* Option rows every client command has; put them in its config_opt table. */
#define CLI_OPT_COORDINATOR \
	{ "coordinator", 0, OPT_STRING, "TROOP_COORDINATOR", "COORDINATOR_URL", \
	  CLI_DEFAULT_COORDINATOR, "URL", "the coordinator to ask", 0, 0 }
#define CLI_OPT_JSON \
	{ "json", 0, OPT_BOOL, NULL, NULL, NULL, NULL, \
	  "print the coordinator's JSON instead of a table (for scripts)", 0, 0 }

typedef struct {
	const char *cmd;          /* "balance": the prefix of every message */
	const char *synopsis;     /* "[--json]": for the usage line */
	config *cfg;
	char coordinator[512];    /* URL without a trailing '/' */
	bool json;                /* --json given (when the command has it) */
	http_client *http;        /* to the coordinator, keep-alive */
	troop_identity id;        /* valid after cli_load_identity */
	bool have_id;
} cli;

/* Parse argv (starting at the command's name) against `opts`, which must
 * include CLI_OPT_COORDINATOR (and may include CLI_OPT_JSON), accepting
 * at most `max_positional` positional arguments.  Returns true when the
 * command should go on; false when it should return *exit_code at once:
 * 0 after --help was printed, EXIT_USAGE after a usage error (message and
 * usage line on stderr), 1 on another failure.  On true the caller must
 * call cli_end. */
bool cli_start(cli *c, int *exit_code, const char *cmd, const char *synopsis,
    const char *summary, const config_opt *opts, int argc, char **argv,
    size_t max_positional);

/* Free what cli_start and cli_load_identity made; wipes the key. */
void cli_end(cli *c);

/* Print "troop CMD: <message>" and "usage: troop CMD SYNOPSIS" on
 * stderr; returns EXIT_USAGE. */
int cli_usage_error(const cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Print "troop CMD: <message>" on stderr; returns 1. */
int cli_fail(const cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Load (or create, with a note on stderr) the identity in $TROOP_HOME
 * into c->id.  Returns 0, or 1 after printing what went wrong. */
int cli_load_identity(cli *c);

/* One call to the coordinator: `path_query` is "/peers?model=x"; `body`
 * (may be NULL) is sent as JSON; `sign` signs it with c->id (load it
 * first).  Returns 0 with *out the parsed reply (new reference, may be
 * NULL when the body was not JSON) and *status the HTTP status, whatever
 * the status; or 1 after printing one line on stderr when the
 * coordinator could not be reached. */
int cli_call(cli *c, int *status, json_t **out, const char *method,
    const char *path_query, const json_t *body, bool sign);

/* As cli_call, but any status other than 2xx is reported with
 * cli_report_error and 1 is returned (and *out is NULL). */
int cli_call_ok(cli *c, json_t **out, const char *method, const char *path_query,
    const json_t *body, bool sign);

/* Print one line on stderr for a coordinator error reply (OpenAI error
 * shape or anything else) that says what happened and what to do.
 * `what` names the peer ("the coordinator", "the worker").  Returns 1. */
int cli_report_error(const cli *c, const char *what, int status, const json_t *body);

/* The error's "code" and "message" from an OpenAI-shape error body; ""
 * when absent.  Borrowed from `body`. */
const char *cli_error_code(const json_t *body);
const char *cli_error_message(const json_t *body);

/* Print `v` as indented JSON and a newline on stdout.  Returns 0 or 1. */
int cli_print_json(const json_t *v);

/* `s` with the query-string escaping of curl (malloc'd; NULL on ENOMEM). */
char *cli_url_escape(const char *s);

/* Copy `in` into `out` (size outlen, always terminated) replacing control
 * characters and invalid bytes with '?': text from the network must not
 * drive the terminal. */
void cli_sanitize(char *out, size_t outlen, const char *in);

/* "4.3 GiB", "512 MiB", "900 B" into out. */
void cli_format_bytes(char *out, size_t outlen, int64_t bytes);

/* ---- tickets --------------------------------------------------------------- */

/* "http://IP:PORT/path" (IPv6 in brackets) into out, for the worker an
 * /authorize reply names.  Returns 0, or -1 when `ip` is not an IPv4 or
 * IPv6 address, the port is out of range, or it does not fit: a reply
 * from the coordinator must not be able to point requests elsewhere. */
int cli_worker_url(char *out, size_t len, const char *ip, long long port, const char *path);

/* Whether `token` looks like a compact JWS (base64url and dots, at most
 * `max` bytes; callers pass TICKET_MAX_LEN), so that it is safe to put in
 * a header. */
bool cli_token_ok(const char *token, size_t max);

/* ---- tables ------------------------------------------------------------- */

typedef struct cli_table cli_table;

/* A table of `ncols` columns with these headers (copied).  Returns NULL
 * on ENOMEM. */
cli_table *cli_table_new(size_t ncols, const char *const *headers);
void cli_table_free(cli_table *t);
/* Right-align column `col` (numbers). */
void cli_table_align_right(cli_table *t, size_t col);
/* Add a row of ncols strings (copied, sanitized; NULL prints as "-").
 * Returns 0 or TROOP_ENOMEM. */
int cli_table_add(cli_table *t, const char *const *cells);
/* Print headers and rows with the columns aligned (two spaces apart, no
 * trailing blanks). */
void cli_table_print(const cli_table *t, FILE *f);
size_t cli_table_rows(const cli_table *t);

/* One row being filled by a cli_row_fn: point cells[i] at a string (a
 * JSON value's, or buf[i] written by the callback; NULL prints "-"). */
#define CLI_ROW_MAX_COLS 12
typedef struct {
	char buf[CLI_ROW_MAX_COLS][320];
	const char *cells[CLI_ROW_MAX_COLS];
} cli_row;
typedef void (*cli_row_fn)(cli_row *r, const json_t *item, void *arg);

/* The list commands' table: print `empty` (a whole line, newline added)
 * when `items` has no element, else one row per element of the JSON
 * array `items`, filled by fn(arg), under `hdr`, with the columns whose
 * bit is set in `right_cols` right-aligned.  ncols <= CLI_ROW_MAX_COLS.
 * Does not flush.  Returns 0, or 1 after saying "out of memory". */
int cli_print_rows(const cli *c, const json_t *items, size_t ncols, const char *const *hdr,
    unsigned right_cols, const char *empty, cli_row_fn fn, void *arg);

#endif
