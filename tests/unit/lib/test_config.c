/*
 * test_config.c - option parsing: flag > environment > alternate variable
 * > default, every option form, the message of every error path naming the
 * flag or the variable, lists, booleans, help, positionals and "--", the
 * usage table and the TROOP_HOME lookup.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "error.h"

static const config_opt opts[] = {
	{ "coordinator", 'c', OPT_STRING, "TROOP_COORDINATOR", "COORDINATOR_URL",
	  "http://127.0.0.1:8420", "URL", "coordinator base URL", 0, 0 },
	{ "node-ttl", 0, OPT_INT, "TROOP_NODE_TTL", NULL, "30", "SECONDS",
	  "seconds a node stays live after a heartbeat", 1, 3600 },
	{ "multiplier", 'x', OPT_DOUBLE, "TROOP_MULTIPLIER", NULL, "1", "X",
	  "speed relative to the reference GPU", 0.01, 20 },
	{ "json", 'j', OPT_BOOL, "TROOP_JSON", NULL, NULL, NULL,
	  "print JSON instead of a table", 0, 0 },
	{ "engine", 'e', OPT_LIST, "TROOP_ENGINES", NULL, NULL, "TYPE=URL",
	  "an engine to serve from", 0, 0 },
	{ "model", 'm', OPT_STRING, NULL, NULL, NULL, "MODEL", "model to use", 0, 0 },
	{ "offset", 0, OPT_INT, NULL, NULL, "0", "N", "any integer", 0, 0 },
	{ NULL, 0, OPT_STRING, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

static const char *const env_names[] = {
	"TROOP_COORDINATOR", "COORDINATOR_URL", "TROOP_NODE_TTL", "TROOP_MULTIPLIER",
	"TROOP_JSON", "TROOP_ENGINES",
};

static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
	return 0;
}

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Parse expecting success. */
static config *parse_ok(int argc, char **argv)
{
	config *c = NULL;
	int rc = config_parse(&c, opts, argc, argv);

	if (rc != 0)
		fail_msg("config_parse: %d %s", rc, troop_error_msg());
	assert_non_null(c);
	return c;
}

/* Parse expecting TROOP_EINVAL with exactly `msg`. */
static void parse_err(int argc, char **argv, const char *msg)
{
	config *c = (config *)1;

	assert_int_equal(config_parse(&c, opts, argc, argv), TROOP_EINVAL);
	assert_null(c);
	assert_string_equal(troop_error_msg(), msg);
}

/* Parse expecting TROOP_EINVAL with a message starting with `prefix` and
 * containing `needle`. */
static void parse_err_has(int argc, char **argv, const char *prefix, const char *needle)
{
	config *c = (config *)1;

	assert_int_equal(config_parse(&c, opts, argc, argv), TROOP_EINVAL);
	assert_null(c);
	if (strncmp(troop_error_msg(), prefix, strlen(prefix)) != 0 ||
	    !strstr(troop_error_msg(), needle))
		fail_msg("error '%s' lacks '%s' ... '%s'", troop_error_msg(), prefix, needle);
}

static void test_defaults(void **state)
{
	char *argv[] = { "cmd" };
	config *c;
	const char *const *list = NULL;

	(void)state;
	c = parse_ok(ARGC(argv), argv);
	assert_string_equal(config_str(c, "coordinator"), "http://127.0.0.1:8420");
	assert_int_equal(config_int(c, "node-ttl"), 30);
	assert_true(config_double(c, "multiplier") == 1.0);
	assert_false(config_bool(c, "json"));
	assert_int_equal(config_list(c, "engine", &list), 0);
	assert_null(config_str(c, "model"));
	assert_false(config_is_set(c, "coordinator"));
	assert_false(config_is_set(c, "node-ttl"));
	assert_false(config_is_set(c, "model"));
	assert_int_equal(config_npositional(c), 0);
	assert_null(config_positional(c, 0));
	config_free(c);
	config_free(NULL);
}

static void test_precedence(void **state)
{
	char *none[] = { "cmd" };
	char *flag[] = { "cmd", "--coordinator", "http://flag:1" };
	config *c;

	(void)state;
	/* the alternate variable alone */
	setenv("COORDINATOR_URL", "http://alt:1", 1);
	c = parse_ok(ARGC(none), none);
	assert_string_equal(config_str(c, "coordinator"), "http://alt:1");
	assert_true(config_is_set(c, "coordinator"));
	config_free(c);

	/* the first variable beats the alternate */
	setenv("TROOP_COORDINATOR", "http://env:1", 1);
	c = parse_ok(ARGC(none), none);
	assert_string_equal(config_str(c, "coordinator"), "http://env:1");
	config_free(c);

	/* the flag beats both */
	c = parse_ok(ARGC(flag), flag);
	assert_string_equal(config_str(c, "coordinator"), "http://flag:1");
	assert_true(config_is_set(c, "coordinator"));
	config_free(c);

	/* an empty variable counts as unset */
	setenv("TROOP_COORDINATOR", "", 1);
	c = parse_ok(ARGC(none), none);
	assert_string_equal(config_str(c, "coordinator"), "http://alt:1");
	config_free(c);

	/* numbers and doubles from the environment */
	setenv("TROOP_NODE_TTL", "120", 1);
	setenv("TROOP_MULTIPLIER", "2.5", 1);
	c = parse_ok(ARGC(none), none);
	assert_int_equal(config_int(c, "node-ttl"), 120);
	assert_true(config_double(c, "multiplier") == 2.5);
	assert_true(config_is_set(c, "node-ttl"));
	config_free(c);

	char *ttl[] = { "cmd", "--node-ttl=7" };
	c = parse_ok(ARGC(ttl), ttl);
	assert_int_equal(config_int(c, "node-ttl"), 7);
	config_free(c);
}

static void test_forms(void **state)
{
	char *argv[] = { "cmd", "--node-ttl", "60", "--multiplier=0.5", "-c", "http://a:1",
	    "-mllama3:8b", "--offset", "-5", "-x", "3" };
	char *repeat[] = { "cmd", "--model", "a", "--model=b", "-m", "c" };
	config *c;

	(void)state;
	c = parse_ok(ARGC(argv), argv);
	assert_int_equal(config_int(c, "node-ttl"), 60);
	assert_true(config_double(c, "multiplier") == 3.0);   /* -x 3 came last */
	assert_string_equal(config_str(c, "coordinator"), "http://a:1");
	assert_string_equal(config_str(c, "model"), "llama3:8b");
	assert_int_equal(config_int(c, "offset"), -5);
	assert_true(config_is_set(c, "model"));
	config_free(c);

	/* a repeated single-valued option: the last one wins */
	c = parse_ok(ARGC(repeat), repeat);
	assert_string_equal(config_str(c, "model"), "c");
	config_free(c);

	/* "=" lets a value start with a dash */
	char *dash[] = { "cmd", "--model=-odd" };
	c = parse_ok(ARGC(dash), dash);
	assert_string_equal(config_str(c, "model"), "-odd");
	config_free(c);

	/* so does a separate word that names no option: account ids are
	 * base64url and one in 64 begins with '-' ("--owner -Ab...") */
	char *id[] = { "cmd", "--model", "-Ab_9-xyz", "-c", "--Qz-id" };
	c = parse_ok(ARGC(id), id);
	assert_string_equal(config_str(c, "model"), "-Ab_9-xyz");
	assert_string_equal(config_str(c, "coordinator"), "--Qz-id");
	config_free(c);
}

static void test_bools(void **state)
{
	char *none[] = { "cmd" };
	char *on[] = { "cmd", "--json" };
	char *off[] = { "cmd", "--no-json" };
	char *shrt[] = { "cmd", "-j" };
	char *eq[] = { "cmd", "--json=false" };
	config *c;
	const char *yes[] = { "1", "true", "YES", "on" };
	const char *no[] = { "0", "false", "No", "off" };

	(void)state;
	c = parse_ok(ARGC(on), on);
	assert_true(config_bool(c, "json"));
	assert_true(config_is_set(c, "json"));
	config_free(c);
	c = parse_ok(ARGC(shrt), shrt);
	assert_true(config_bool(c, "json"));
	config_free(c);
	c = parse_ok(ARGC(eq), eq);
	assert_false(config_bool(c, "json"));
	config_free(c);

	for (size_t i = 0; i < 4; i++) {
		setenv("TROOP_JSON", yes[i], 1);
		c = parse_ok(ARGC(none), none);
		assert_true(config_bool(c, "json"));
		assert_true(config_is_set(c, "json"));
		config_free(c);
		/* the flag still wins over the variable */
		c = parse_ok(ARGC(off), off);
		assert_false(config_bool(c, "json"));
		config_free(c);

		setenv("TROOP_JSON", no[i], 1);
		c = parse_ok(ARGC(none), none);
		assert_false(config_bool(c, "json"));
		config_free(c);
		c = parse_ok(ARGC(on), on);
		assert_true(config_bool(c, "json"));
		config_free(c);
	}

	setenv("TROOP_JSON", "maybe", 1);
	parse_err(ARGC(none), none,
	    "TROOP_JSON: expected true or false (1/0, yes/no, on/off), got 'maybe'");
	/* the flag given, the bad variable is never read */
	c = parse_ok(ARGC(on), on);
	config_free(c);
}

static void test_lists(void **state)
{
	char *none[] = { "cmd" };
	char *flags[] = { "cmd", "-e", "ollama=http://a", "--engine", "vllm=http://b",
	    "--engine=llamacpp=http://c" };
	const char *const *l = NULL;
	config *c;

	(void)state;
	c = parse_ok(ARGC(flags), flags);
	assert_int_equal(config_list(c, "engine", &l), 3);
	assert_string_equal(l[0], "ollama=http://a");
	assert_string_equal(l[1], "vllm=http://b");
	assert_string_equal(l[2], "llamacpp=http://c");
	assert_true(config_is_set(c, "engine"));
	config_free(c);

	setenv("TROOP_ENGINES", " x=1, y=2,,z=3 ,", 1);
	c = parse_ok(ARGC(none), none);
	assert_int_equal(config_list(c, "engine", &l), 3);
	assert_string_equal(l[0], "x=1");
	assert_string_equal(l[1], "y=2");
	assert_string_equal(l[2], "z=3");
	assert_true(config_is_set(c, "engine"));
	config_free(c);

	/* flags replace the variable's list rather than add to it */
	c = parse_ok(ARGC(flags), flags);
	assert_int_equal(config_list(c, "engine", &l), 3);
	assert_string_equal(l[0], "ollama=http://a");
	config_free(c);
}

static void test_errors_name_the_flag(void **state)
{
	char *unknown[] = { "cmd", "--foo" };
	char *unknown_eq[] = { "cmd", "--foo=1" };
	char *unknown_short[] = { "cmd", "-q" };
	char *unknown_no[] = { "cmd", "--no-model" };
	char *missing_end[] = { "cmd", "--node-ttl" };
	char *missing_short[] = { "cmd", "-m" };
	char *missing_next[] = { "cmd", "--model", "--json" };
	char *bad_int[] = { "cmd", "--node-ttl", "abc" };
	char *bad_int_eq[] = { "cmd", "--node-ttl=12x" };
	char *low_int[] = { "cmd", "--node-ttl", "0" };
	char *high_int[] = { "cmd", "--node-ttl=3601" };
	char *empty_int[] = { "cmd", "--node-ttl=" };
	char *bad_dbl[] = { "cmd", "-x", "50" };
	char *nan_dbl[] = { "cmd", "--multiplier", "nan" };
	char *free_int[] = { "cmd", "--offset", "1.5" };
	char *bad_bool[] = { "cmd", "--json=maybe" };
	char *no_value[] = { "cmd", "--no-json=1" };
	char *short_value[] = { "cmd", "-jx" };
	char *none[] = { "cmd" };

	(void)state;
	parse_err(ARGC(unknown), unknown, "unknown option '--foo'");
	parse_err(ARGC(unknown_eq), unknown_eq, "unknown option '--foo'");
	parse_err(ARGC(unknown_short), unknown_short, "unknown option '-q'");
	parse_err(ARGC(unknown_no), unknown_no, "unknown option '--no-model'");
	parse_err(ARGC(missing_end), missing_end, "--node-ttl: missing value (SECONDS)");
	parse_err(ARGC(missing_short), missing_short, "-m: missing value (MODEL)");
	parse_err(ARGC(missing_next), missing_next, "--model: missing value (MODEL); a value "
	    "that begins with '-' goes after '='");
	/* the next word names an option: a short one, a negated boolean */
	char *next_short[] = { "cmd", "--model", "-jx" };
	char *next_no[] = { "cmd", "--model", "--no-json" };
	parse_err_has(ARGC(next_short), next_short, "--model: missing value (MODEL)", "'='");
	parse_err_has(ARGC(next_no), next_no, "--model: missing value (MODEL)", "'='");
	parse_err(ARGC(bad_int), bad_int,
	    "--node-ttl: expected an integer between 1 and 3600, got 'abc'");
	parse_err(ARGC(bad_int_eq), bad_int_eq,
	    "--node-ttl: expected an integer between 1 and 3600, got '12x'");
	parse_err(ARGC(low_int), low_int,
	    "--node-ttl: expected an integer between 1 and 3600, got '0'");
	parse_err(ARGC(high_int), high_int,
	    "--node-ttl: expected an integer between 1 and 3600, got '3601'");
	parse_err(ARGC(empty_int), empty_int,
	    "--node-ttl: expected an integer between 1 and 3600, got ''");
	parse_err(ARGC(bad_dbl), bad_dbl,
	    "-x: expected a number between 0.01 and 20, got '50'");
	parse_err_has(ARGC(nan_dbl), nan_dbl, "--multiplier: ", "got 'nan'");
	parse_err(ARGC(free_int), free_int, "--offset: expected an integer, got '1.5'");
	parse_err(ARGC(bad_bool), bad_bool,
	    "--json: expected true or false (1/0, yes/no, on/off), got 'maybe'");
	parse_err(ARGC(no_value), no_value, "--no-json: takes no value, got '1'");
	parse_err(ARGC(short_value), short_value, "-j: takes no value, got 'x'");

	/* from the environment: the message names the variable */
	setenv("TROOP_NODE_TTL", "abc", 1);
	parse_err(ARGC(none), none,
	    "TROOP_NODE_TTL: expected an integer between 1 and 3600, got 'abc'");
	unsetenv("TROOP_NODE_TTL");
	setenv("TROOP_MULTIPLIER", "0", 1);
	parse_err(ARGC(none), none,
	    "TROOP_MULTIPLIER: expected a number between 0.01 and 20, got '0'");
	unsetenv("TROOP_MULTIPLIER");

	/* a bad default is reported against the option */
	static const config_opt bad_def[] = {
		{ "port", 'p', OPT_INT, NULL, NULL, "http", "PORT", "port", 1, 65535 },
		{ NULL, 0, OPT_STRING, NULL, NULL, NULL, NULL, NULL, 0, 0 },
	};
	config *c = (config *)1;
	assert_int_equal(config_parse(&c, bad_def, ARGC(none), none), TROOP_EINVAL);
	assert_null(c);
	assert_string_equal(troop_error_msg(),
	    "default of --port: expected an integer between 1 and 65535, got 'http'");
}

static void test_alt_env_error(void **state)
{
	static const config_opt o[] = {
		{ "port", 'p', OPT_INT, "TROOP_TCFG_PORT", "TCFG_PORT", "1", "PORT", "port", 1, 9 },
		{ NULL, 0, OPT_STRING, NULL, NULL, NULL, NULL, NULL, 0, 0 },
	};
	char *none[] = { "cmd" };
	config *c = NULL;

	(void)state;
	unsetenv("TROOP_TCFG_PORT");
	setenv("TCFG_PORT", "99", 1);
	assert_int_equal(config_parse(&c, o, ARGC(none), none), TROOP_EINVAL);
	assert_string_equal(troop_error_msg(),
	    "TCFG_PORT: expected an integer between 1 and 9, got '99'");
	setenv("TROOP_TCFG_PORT", "5", 1);
	assert_int_equal(config_parse(&c, o, ARGC(none), none), 0);
	assert_int_equal(config_int(c, "port"), 5);
	config_free(c);
	unsetenv("TROOP_TCFG_PORT");
	unsetenv("TCFG_PORT");
}

static void test_help(void **state)
{
	char *h1[] = { "cmd", "--help" };
	char *h2[] = { "cmd", "--json", "-m", "x", "-h" };
	char *h3[] = { "cmd", "--foo", "--help" };
	char *h4[] = { "cmd", "--node-ttl", "abc", "-h" };
	char *not_help[] = { "cmd", "--", "--help" };
	config *c = (config *)1;

	(void)state;
	assert_int_equal(config_parse(&c, opts, ARGC(h1), h1), CONFIG_HELP);
	assert_null(c);
	c = (config *)1;
	assert_int_equal(config_parse(&c, opts, ARGC(h2), h2), CONFIG_HELP);
	assert_null(c);
	assert_int_equal(config_parse(&c, opts, ARGC(h3), h3), CONFIG_HELP);
	assert_int_equal(config_parse(&c, opts, ARGC(h4), h4), CONFIG_HELP);
	/* help wins over a bad environment too */
	setenv("TROOP_NODE_TTL", "abc", 1);
	assert_int_equal(config_parse(&c, opts, ARGC(h1), h1), CONFIG_HELP);
	unsetenv("TROOP_NODE_TTL");

	c = parse_ok(ARGC(not_help), not_help);
	assert_int_equal(config_npositional(c), 1);
	assert_string_equal(config_positional(c, 0), "--help");
	config_free(c);
}

static void test_positionals(void **state)
{
	char *argv[] = { "cmd", "first", "--json", "second prompt", "-", "-7",
	    "--", "--node-ttl", "-c", "--" };
	const char *want[] = { "first", "second prompt", "-", "-7", "--node-ttl", "-c", "--" };
	config *c;

	(void)state;
	c = parse_ok(ARGC(argv), argv);
	assert_true(config_bool(c, "json"));
	assert_int_equal(config_npositional(c), sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_string_equal(config_positional(c, i), want[i]);
	assert_null(config_positional(c, sizeof(want) / sizeof(want[0])));
	/* options after "--" were not parsed */
	assert_int_equal(config_int(c, "node-ttl"), 30);
	assert_false(config_is_set(c, "node-ttl"));
	config_free(c);
}

/* Column where text `needle` starts on the line that contains `line_key`. */
static long column_of(const char *text, const char *line_key, const char *needle)
{
	const char *k = strstr(text, line_key);
	const char *start, *n;

	assert_non_null(k);
	start = k;
	while (start > text && start[-1] != '\n')
		start--;
	n = strstr(start, needle);
	assert_non_null(n);
	assert_null(memchr(start, '\n', (size_t)(n - start)));
	return (long)(n - start);
}

static void test_usage(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	assert_non_null(f);
	config_usage(f, "worker", "[options] [PROMPT]", "Donate a GPU.", opts);
	fclose(f);
	assert_non_null(strstr(text, "usage: troop worker [options] [PROMPT]\n"));
	assert_non_null(strstr(text, "Donate a GPU."));
	assert_non_null(strstr(text, "-c, --coordinator URL"));
	assert_non_null(strstr(text, "--node-ttl SECONDS"));
	assert_non_null(strstr(text, "[default: 30]"));
	assert_non_null(strstr(text, "[default: http://127.0.0.1:8420]"));
	assert_non_null(strstr(text, "[env: TROOP_NODE_TTL]"));
	assert_non_null(strstr(text, "[env: TROOP_COORDINATOR, COORDINATOR_URL]"));
	assert_non_null(strstr(text, "-j, --json"));
	assert_null(strstr(text, "--json VALUE"));   /* a flag takes no metavar */
	assert_non_null(strstr(text, "--help"));
	/* the help texts start in one column */
	long col = column_of(text, "--node-ttl", "seconds a node");
	assert_int_equal(column_of(text, "--coordinator", "coordinator base"), col);
	assert_int_equal(column_of(text, "--json", "print JSON"), col);
	assert_int_equal(column_of(text, "--engine", "an engine"), col);
	free(text);
}

static void test_troop_home(void **state)
{
	char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	char *old_th = getenv("TROOP_HOME") ? strdup(getenv("TROOP_HOME")) : NULL;
	char buf[256];
	char tiny[8];

	(void)state;
	setenv("TROOP_HOME", "/srv/troop", 1);
	setenv("HOME", "/home/u", 1);
	assert_int_equal(config_troop_home(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/srv/troop");
	assert_int_equal(config_troop_home(tiny, sizeof(tiny)), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "TROOP_HOME"));

	unsetenv("TROOP_HOME");
	assert_int_equal(config_troop_home(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/home/u/.config/monkey-troop");
	assert_int_equal(config_troop_home(tiny, sizeof(tiny)), TROOP_EINVAL);

	unsetenv("HOME");
	assert_int_equal(config_troop_home(buf, sizeof(buf)), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "TROOP_HOME"));

	if (old_home)
		setenv("HOME", old_home, 1);
	if (old_th)
		setenv("TROOP_HOME", old_th, 1);
	free(old_home);
	free(old_th);
}

/* Asking for an undeclared option, or with the wrong type, is a bug in
 * the caller and aborts. */
static void test_accessor_misuse_aborts(void **state)
{
	char *none[] = { "cmd" };
	config *c = parse_ok(ARGC(none), none);

	(void)state;
	for (int which = 0; which < 3; which++) {
		pid_t pid = fork();
		int status = 0;

		assert_true(pid >= 0);
		if (pid == 0) {
			int devnull = open("/dev/null", O_WRONLY);
			if (devnull >= 0)
				dup2(devnull, 2);
			if (which == 0)
				(void)config_str(c, "no-such-option");
			else if (which == 1)
				(void)config_int(c, "coordinator");
			else
				(void)config_is_set(c, "nope");
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGABRT);
	}
	config_free(c);
}

static void test_listen_is_loopback(void **state)
{
	(void)state;
	assert_true(config_listen_is_loopback("127.0.0.1:9000"));
	assert_true(config_listen_is_loopback("127.1.2.3:0"));
	assert_true(config_listen_is_loopback("localhost:9000"));
	assert_true(config_listen_is_loopback("LOCALHOST:1"));
	assert_true(config_listen_is_loopback("[::1]:9000"));
	assert_false(config_listen_is_loopback("0.0.0.0:9000"));
	assert_false(config_listen_is_loopback("[::]:9000"));
	assert_false(config_listen_is_loopback(":9000"));
	assert_false(config_listen_is_loopback("100.64.1.2:8421"));
	assert_false(config_listen_is_loopback("localhost.evil.example:80"));
	assert_false(config_listen_is_loopback("127.0.0.1"));   /* no port: not a listen address */
	assert_false(config_listen_is_loopback(NULL));
	assert_false(config_listen_is_loopback("[::1:9000"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listen_is_loopback),
		cmocka_unit_test_setup(test_defaults, clear_env),
		cmocka_unit_test_setup(test_precedence, clear_env),
		cmocka_unit_test_setup(test_forms, clear_env),
		cmocka_unit_test_setup(test_bools, clear_env),
		cmocka_unit_test_setup(test_lists, clear_env),
		cmocka_unit_test_setup(test_errors_name_the_flag, clear_env),
		cmocka_unit_test_setup(test_alt_env_error, clear_env),
		cmocka_unit_test_setup(test_help, clear_env),
		cmocka_unit_test_setup(test_positionals, clear_env),
		cmocka_unit_test_setup(test_usage, clear_env),
		cmocka_unit_test_setup(test_troop_home, clear_env),
		cmocka_unit_test_setup(test_accessor_misuse_aborts, clear_env),
	};

	return cmocka_run_group_tests(tests, clear_env, clear_env);
}
