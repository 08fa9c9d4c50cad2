/*
 * config.h - command-line options with environment and default fallbacks.
 *
 * Each command declares a table of config_opt.  config_parse reads argv
 * ("--name value", "--name=value", "--flag" for booleans, repeated
 * "--name a --name b" for lists), then for every option not given on the
 * command line the first set environment variable among opt.env and
 * opt.env_alt, then opt.def.  Values are checked against the type and range;
 * a bad one fails with a message that names the flag (or the variable) and
 * says what is expected, e.g.
 *   "--node-ttl: expected an integer between 1 and 3600, got 'abc'".
 * "-h" / "--help" anywhere makes config_parse return CONFIG_HELP.
 * Arguments that are not options are kept, in order, as positionals; "--"
 * ends option parsing.
 *
 * Details: short options take "-m value" or "-mvalue"; a value that starts
 * with '-' (other than a negative number) must be written "--name=-value".
 * A boolean also takes "--no-name" (false) and "--name=VALUE" with the
 * spellings accepted from the environment (1/0, true/false, yes/no,
 * on/off).  A repeated single-valued option keeps its last value.  An
 * environment variable set to "" counts as unset.
 *
 * A config is immutable after parsing and may be read from any thread.
 */
#ifndef TROOP_CONFIG_H
#define TROOP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

typedef enum {
	OPT_STRING,   /* any string */
	OPT_INT,      /* long within [min, max] */
	OPT_DOUBLE,   /* double within [min, max] */
	OPT_BOOL,     /* flag: present = true; env accepts 1/0/true/false/yes/no */
	OPT_LIST,     /* repeatable string; env value is comma-separated */
} config_type;

typedef struct {
	const char *name;     /* long flag without dashes: "node-ttl" */
	char short_name;      /* e.g. 'm' for -m, or 0 */
	config_type type;
	const char *env;      /* "TROOP_NODE_TTL", or NULL */
	const char *env_alt;  /* a second accepted variable ("COORDINATOR_URL"), or NULL */
	const char *def;      /* default as text, or NULL for none */
	const char *metavar;  /* shown in help: "SECONDS", "URL", ... */
	const char *help;     /* one line */
	double min, max;      /* range for OPT_INT / OPT_DOUBLE (ignored if min == max) */
} config_opt;

typedef struct config config;

#define CONFIG_HELP 1  /* config_parse: --help was asked for */

/* Parse argv[1..argc-1] against `opts` (terminated by a row with name ==
 * NULL).  On success *out is a new config (free with config_free) and 0 is
 * returned; CONFIG_HELP if help was requested (*out is NULL); or
 * TROOP_EINVAL with the message in troop_error_msg() (*out is NULL). */
int config_parse(config **out, const config_opt *opts, int argc, char **argv);

/* Free a config; NULL is fine. */
void config_free(config *c);

/* Typed accessors by option name.  Asking for an undeclared name or the
 * wrong type aborts (a programming error).  Strings are owned by the config.
 * config_str returns NULL when the option has no value and no default. */
const char *config_str(const config *c, const char *name);
long config_int(const config *c, const char *name);
double config_double(const config *c, const char *name);
bool config_bool(const config *c, const char *name);
/* Number of values of a list option; *out points at an array owned by c. */
size_t config_list(const config *c, const char *name, const char *const **out);
/* Whether the value came from argv or the environment (not the default). */
bool config_is_set(const config *c, const char *name);

size_t config_npositional(const config *c);
const char *config_positional(const config *c, size_t i);

/* Print "usage: troop <cmd> <synopsis>", `summary`, then a table of the
 * options with metavars, defaults and environment variables. */
void config_usage(FILE *f, const char *cmd, const char *synopsis,
    const char *summary, const config_opt *opts);

/* $TROOP_HOME, else $HOME/.config/monkey-troop.  Writes into buf; returns
 * 0 or TROOP_EINVAL if neither is set or it does not fit. */
int config_troop_home(char *buf, size_t len);

/* Whether the host part of a listen address "host:port" / "[v6]:port" is
 * loopback: "localhost", 127.0.0.0/8 or ::1.  ":port", "0.0.0.0", "::"
 * and names other than localhost are not.  Thread-safe. */
bool config_listen_is_loopback(const char *listen);

/* mkdir -p: create `dir` and every missing parent, each with `mode` (less
 * the umask).  Levels that exist are left as they are.  Returns 0,
 * TROOP_EINVAL (empty or too long) or TROOP_EIO with the path that could
 * not be created (or that is not a directory) in troop_error_msg(). */
int config_make_dirs(const char *dir, mode_t mode);

/* A directory for keys, ledgers and other private state: created with its
 * parents (0700), and when it exists with group or other permission bits
 * they are removed, with a warning on stderr naming the directory and its
 * old mode.  Refuses (TROOP_EFORBIDDEN) a directory owned by another user,
 * and one whose mode cannot be fixed.  Returns 0, TROOP_EINVAL, TROOP_EIO
 * or TROOP_EFORBIDDEN with the message in troop_error_msg(). */
int config_private_dir(const char *dir);

#endif
