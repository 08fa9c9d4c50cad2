/*
 * config.c - command-line options with environment and default fallbacks.
 *
 * config_parse walks argv once, recording the value each option was given
 * on the command line; every option left unset is then filled from the
 * first non-empty variable among opt.env and opt.env_alt, then from
 * opt.def.  All text is converted and range-checked here, so that commands
 * read typed values and every bad input is reported with the flag or the
 * variable it came from.  See config.h for the contract.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

/* Where a value came from; decides config_is_set and the error prefix. */
enum cfg_source { SRC_NONE = 0, SRC_DEFAULT, SRC_ENV, SRC_ARGV };

struct cfg_value {
	char *name;          /* copy of opt.name, so the table may go away */
	config_type type;
	enum cfg_source src;
	char *str;           /* OPT_STRING value (owned) */
	long i;
	double d;
	bool b;
	char **list;         /* OPT_LIST values (owned) */
	size_t nlist, caplist;
};

struct config {
	struct cfg_value *vals;
	size_t nvals;
	char **pos;
	size_t npos;
};

/* Upper bounds that keep every buffer bounded even for hostile argv/env. */
#define CFG_MAX_LIST 1024

/* ---- small helpers -------------------------------------------------------- */

static char *cfg_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

static char *cfg_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static int cfg_parse_bool(bool *out, const char *s)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static bool cfg_has_range(const config_opt *o)
{
	return o->min != o->max;
}

static int cfg_list_push(struct cfg_value *v, const char *s, size_t n,
    const char *label)
{
	if (v->nlist >= CFG_MAX_LIST)
		return troop_error_set(TROOP_ETOOLARGE,
		    "%s: more than %d values", label, CFG_MAX_LIST);
	if (v->nlist == v->caplist) {
		size_t cap = v->caplist ? v->caplist * 2 : 4;
		char **l = realloc(v->list, cap * sizeof(*l));
		if (!l)
			return troop_error_set(TROOP_ENOMEM, "out of memory");
		v->list = l;
		v->caplist = cap;
	}
	v->list[v->nlist] = cfg_strndup(s, n);
	if (!v->list[v->nlist])
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	v->nlist++;
	return 0;
}

static void cfg_list_clear(struct cfg_value *v)
{
	for (size_t i = 0; i < v->nlist; i++)
		free(v->list[i]);
	v->nlist = 0;
}

/* Split a comma-separated environment or default value into the list,
 * trimming blanks around items and dropping empty ones. */
static int cfg_list_split(struct cfg_value *v, const char *s, const char *label)
{
	while (*s) {
		const char *end = strchr(s, ',');
		const char *e = end ? end : s + strlen(s);
		const char *b = s;
		int rc;

		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		if (e > b && (rc = cfg_list_push(v, b, (size_t)(e - b), label)) != 0)
			return rc;
		if (!end)
			break;
		s = end + 1;
	}
	return 0;
}

/* Convert `text` into v according to o.  `label` starts any error message
 * ("--node-ttl", "-t", "TROOP_NODE_TTL").  Lists append one value (argv)
 * or split a comma-separated one (env, default). */
static int cfg_set(struct cfg_value *v, const config_opt *o, const char *text,
    enum cfg_source src, const char *label)
{
	char *end;

	switch (o->type) {
	case OPT_STRING: {
		char *s = cfg_strdup(text);
		if (!s)
			return troop_error_set(TROOP_ENOMEM, "out of memory");
		free(v->str);
		v->str = s;
		break;
	}
	case OPT_INT: {
		long n;
		errno = 0;
		n = strtol(text, &end, 10);
		if (*text == '\0' || isspace((unsigned char)*text) || *end != '\0' ||
		    errno == ERANGE || (cfg_has_range(o) &&
		    ((double)n < o->min || (double)n > o->max))) {
			if (cfg_has_range(o))
				return troop_error_set(TROOP_EINVAL,
				    "%s: expected an integer between %.0f and %.0f, got '%s'",
				    label, o->min, o->max, text);
			return troop_error_set(TROOP_EINVAL,
			    "%s: expected an integer, got '%s'", label, text);
		}
		v->i = n;
		break;
	}
	case OPT_DOUBLE: {
		double d;
		errno = 0;
		d = strtod(text, &end);
		if (*text == '\0' || isspace((unsigned char)*text) || *end != '\0' ||
		    !isfinite(d) || (cfg_has_range(o) && (d < o->min || d > o->max))) {
			if (cfg_has_range(o))
				return troop_error_set(TROOP_EINVAL,
				    "%s: expected a number between %g and %g, got '%s'",
				    label, o->min, o->max, text);
			return troop_error_set(TROOP_EINVAL,
			    "%s: expected a number, got '%s'", label, text);
		}
		v->d = d;
		break;
	}
	case OPT_BOOL:
		if (cfg_parse_bool(&v->b, text) != 0)
			return troop_error_set(TROOP_EINVAL,
			    "%s: expected true or false (1/0, yes/no, on/off), got '%s'",
			    label, text);
		break;
	case OPT_LIST:
		if (src == SRC_ARGV)
			return cfg_list_push(v, text, strlen(text), label);
		return cfg_list_split(v, text, label);
	}
	return 0;
}

static const config_opt *cfg_find_long(const config_opt *opts, const char *name,
    size_t len, size_t *idx)
{
	for (size_t i = 0; opts[i].name; i++) {
		if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0) {
			*idx = i;
			return &opts[i];
		}
	}
	return NULL;
}

static const config_opt *cfg_find_short(const config_opt *opts, char c, size_t *idx)
{
	for (size_t i = 0; opts[i].name; i++) {
		if (opts[i].short_name && opts[i].short_name == c) {
			*idx = i;
			return &opts[i];
		}
	}
	return NULL;
}

/* Whether argv word `s` would be read as an option rather than a value:
 * "-x", "--x"; but not "-", nor a negative number ("-5", "-0.5"). */
static bool cfg_looks_like_option(const char *s)
{
	if (s[0] != '-' || s[1] == '\0')
		return false;
	if (isdigit((unsigned char)s[1]) || (s[1] == '.' && isdigit((unsigned char)s[2])))
		return false;
	return true;
}

static bool cfg_is_help(const char *s);

/* Whether the word after an option that needs a value is another option
 * rather than that value: one that looks like an option and names one of
 * `opts` ("-x", "--name[=...]", "--no-name" of a boolean), help, or "--".
 * Any other word is the value, even one that begins with '-' (an account
 * id may: "--owner -Ab..." is that id). */
static bool cfg_names_option(const config_opt *opts, const char *s)
{
	size_t idx, len;
	const config_opt *o;

	if (!cfg_looks_like_option(s))
		return false;
	if (cfg_is_help(s) || strcmp(s, "--") == 0)
		return true;
	if (s[1] != '-')
		return cfg_find_short(opts, s[1], &idx) != NULL;
	len = strcspn(s + 2, "=");
	if (cfg_find_long(opts, s + 2, len, &idx))
		return true;
	o = len > 3 && memcmp(s + 2, "no-", 3) == 0 ?
	    cfg_find_long(opts, s + 5, len - 3, &idx) : NULL;
	return o && o->type == OPT_BOOL;
}

static bool cfg_is_help(const char *s)
{
	return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0;
}

/* ---- parsing ---------------------------------------------------------------- */

/* Handle one option word at argv[*i].  May consume argv[*i + 1]. */
static int cfg_parse_word(config *c, const config_opt *opts, int argc, char **argv,
    int *i)
{
	const char *arg = argv[*i];
	const config_opt *o = NULL;
	const char *value = NULL;   /* inline value: --name=value or -xVALUE */
	bool negated = false;
	size_t idx = 0;
	char shown[80];

	if (arg[1] == '-') {
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);

		o = cfg_find_long(opts, name, len, &idx);
		if (!o && len > 3 && memcmp(name, "no-", 3) == 0) {
			o = cfg_find_long(opts, name + 3, len - 3, &idx);
			if (o && o->type != OPT_BOOL)
				o = NULL;
			negated = o != NULL;
		}
		if (!o)
			return troop_error_set(TROOP_EINVAL, "unknown option '--%.*s'",
			    (int)(len > 64 ? 64 : len), name);
		if (eq)
			value = eq + 1;
		snprintf(shown, sizeof(shown), "--%s%s", negated ? "no-" : "", o->name);
	} else {
		o = cfg_find_short(opts, arg[1], &idx);
		if (!o)
			return troop_error_set(TROOP_EINVAL, "unknown option '-%c'", arg[1]);
		if (arg[2] != '\0')
			value = arg + 2;
		snprintf(shown, sizeof(shown), "-%c", arg[1]);
	}

	struct cfg_value *v = &c->vals[idx];
	if (o->type == OPT_BOOL) {
		if ((negated || arg[1] != '-') && value)
			return troop_error_set(TROOP_EINVAL, "%s: takes no value, got '%s'",
			    shown, value);
		if (value) {
			if (cfg_parse_bool(&v->b, value) != 0)
				return troop_error_set(TROOP_EINVAL,
				    "%s: expected true or false (1/0, yes/no, on/off), got '%s'",
				    shown, value);
		} else {
			v->b = !negated;
		}
		v->src = SRC_ARGV;
		return 0;
	}
	if (!value) {
		if (*i + 1 >= argc || cfg_names_option(opts, argv[*i + 1]))
			return troop_error_set(TROOP_EINVAL, "%s: missing value (%s)%s",
			    shown, o->metavar ? o->metavar : "expected a value",
			    *i + 1 < argc && arg[1] == '-' ? "; a value that begins with "
			    "'-' goes after '='" : "");
		value = argv[++*i];
	}
	v->src = SRC_ARGV;
	/* errors name the flag as it was typed (-m or --model) */
	return cfg_set(v, o, value, SRC_ARGV, shown);
}

static int cfg_fill_env_default(config *c, const config_opt *opts)
{
	for (size_t k = 0; k < c->nvals; k++) {
		const config_opt *o = &opts[k];
		struct cfg_value *v = &c->vals[k];
		const char *names[2] = { o->env, o->env_alt };
		int rc;

		if (v->src == SRC_ARGV)
			continue;
		for (int j = 0; j < 2 && v->src == SRC_NONE; j++) {
			const char *val = names[j] ? getenv(names[j]) : NULL;
			if (!val || !*val)
				continue;
			if ((rc = cfg_set(v, o, val, SRC_ENV, names[j])) != 0)
				return rc;
			v->src = SRC_ENV;
		}
		if (v->src == SRC_NONE && o->def) {
			char label[96];
			/* a bad default is a bug in the option table; say whose */
			snprintf(label, sizeof(label), "default of --%.64s", o->name);
			if ((rc = cfg_set(v, o, o->def, SRC_DEFAULT, label)) != 0)
				return rc;
			v->src = SRC_DEFAULT;
		}
	}
	return 0;
}

int config_parse(config **out, const config_opt *opts, int argc, char **argv)
{
	config *c = NULL;
	size_t n = 0;
	int rc = 0;
	bool help = false, ended = false;

	*out = NULL;
	while (opts[n].name)
		n++;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->vals = calloc(n ? n : 1, sizeof(*c->vals))) ||
	    !(c->pos = calloc(argc > 0 ? (size_t)argc : 1, sizeof(*c->pos)))) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		goto fail;
	}
	c->nvals = n;
	for (size_t k = 0; k < n; k++) {
		c->vals[k].type = opts[k].type;
		if (!(c->vals[k].name = cfg_strdup(opts[k].name))) {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory");
			goto fail;
		}
	}

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (ended || !cfg_looks_like_option(arg)) {
			if (!ended && strcmp(arg, "--") == 0) {
				ended = true;
				continue;
			}
			if (!(c->pos[c->npos] = cfg_strdup(arg))) {
				rc = troop_error_set(TROOP_ENOMEM, "out of memory");
				goto fail;
			}
			c->npos++;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			ended = true;
			continue;
		}
		if (cfg_is_help(arg)) {
			help = true;
			continue;
		}
		if ((rc = cfg_parse_word(c, opts, argc, argv, &i)) != 0) {
			/* --help after a mistake still wins */
			for (int j = i + 1; j < argc && strcmp(argv[j], "--") != 0; j++)
				help = help || cfg_is_help(argv[j]);
			goto fail;
		}
	}
	if (help)
		goto fail;
	if ((rc = cfg_fill_env_default(c, opts)) != 0)
		goto fail;
	*out = c;
	return 0;

fail:
	config_free(c);
	if (help)
		return CONFIG_HELP;
	return rc;
}

void config_free(config *c)
{
	if (!c)
		return;
	for (size_t k = 0; c->vals && k < c->nvals; k++) {
		cfg_list_clear(&c->vals[k]);
		free(c->vals[k].list);
		free(c->vals[k].str);
		free(c->vals[k].name);
	}
	for (size_t k = 0; c->pos && k < c->npos; k++)
		free(c->pos[k]);
	free(c->pos);
	free(c->vals);
	free(c);
}

/* ---- accessors ------------------------------------------------------------------ */

static const struct cfg_value *cfg_get(const config *c, const char *name,
    config_type type, const char *fn)
{
	for (size_t k = 0; k < c->nvals; k++) {
		if (strcmp(c->vals[k].name, name) != 0)
			continue;
		if (c->vals[k].type != type) {
			fprintf(stderr, "%s: option '%s' has another type\n", fn, name);
			abort();
		}
		return &c->vals[k];
	}
	fprintf(stderr, "%s: no option named '%s'\n", fn, name);
	abort();
}

const char *config_str(const config *c, const char *name)
{
	return cfg_get(c, name, OPT_STRING, __func__)->str;
}

long config_int(const config *c, const char *name)
{
	return cfg_get(c, name, OPT_INT, __func__)->i;
}

double config_double(const config *c, const char *name)
{
	return cfg_get(c, name, OPT_DOUBLE, __func__)->d;
}

bool config_bool(const config *c, const char *name)
{
	return cfg_get(c, name, OPT_BOOL, __func__)->b;
}

size_t config_list(const config *c, const char *name, const char *const **out)
{
	const struct cfg_value *v = cfg_get(c, name, OPT_LIST, __func__);

	*out = (const char *const *)v->list;
	return v->nlist;
}

bool config_is_set(const config *c, const char *name)
{
	for (size_t k = 0; k < c->nvals; k++)
		if (strcmp(c->vals[k].name, name) == 0)
			return c->vals[k].src == SRC_ARGV || c->vals[k].src == SRC_ENV;
	fprintf(stderr, "%s: no option named '%s'\n", __func__, name);
	abort();
}

size_t config_npositional(const config *c)
{
	return c->npos;
}

const char *config_positional(const config *c, size_t i)
{
	return i < c->npos ? c->pos[i] : NULL;
}

/* ---- usage ------------------------------------------------------------------------ */

/* Column where help text starts; longer flag columns wrap onto a new line. */
#define USAGE_COL_MAX 34

static void usage_flag(char *buf, size_t len, const config_opt *o)
{
	char sh[8] = "    ";
	const char *mv = o->metavar;

	if (o->short_name)
		snprintf(sh, sizeof(sh), "-%c, ", o->short_name);
	if (o->type == OPT_BOOL)
		snprintf(buf, len, "%s--%s", sh, o->name);
	else
		snprintf(buf, len, "%s--%s %s", sh, o->name, mv ? mv : "VALUE");
}

void config_usage(FILE *f, const char *cmd, const char *synopsis,
    const char *summary, const config_opt *opts)
{
	char flag[128];
	int width = (int)strlen("-h, --help");

	fprintf(f, "usage: troop %s %s\n", cmd, synopsis ? synopsis : "[options]");
	if (summary && *summary)
		fprintf(f, "\n%s\n", summary);
	fprintf(f, "\nOptions:\n");
	for (size_t i = 0; opts[i].name; i++) {
		usage_flag(flag, sizeof(flag), &opts[i]);
		int w = (int)strlen(flag);
		if (w > width && w <= USAGE_COL_MAX)
			width = w;
	}
	for (size_t i = 0; opts[i].name; i++) {
		const config_opt *o = &opts[i];
		int w;

		usage_flag(flag, sizeof(flag), o);
		w = (int)strlen(flag);
		if (w > width)
			fprintf(f, "  %s\n  %-*s  ", flag, width, "");
		else
			fprintf(f, "  %-*s  ", width, flag);
		fputs(o->help ? o->help : "", f);
		if (o->type == OPT_LIST)
			fputs(" (repeatable)", f);
		if (o->def && *o->def)
			fprintf(f, " [default: %s]", o->def);
		if (o->env && o->env_alt)
			fprintf(f, " [env: %s, %s]", o->env, o->env_alt);
		else if (o->env || o->env_alt)
			fprintf(f, " [env: %s]", o->env ? o->env : o->env_alt);
		fputc('\n', f);
	}
	fprintf(f, "  %-*s  %s\n", width, "-h, --help", "show this help and exit");
}

int config_troop_home(char *buf, size_t len)
{
	const char *home = getenv("TROOP_HOME");
	int n;

	if (home && *home) {
		n = snprintf(buf, len, "%s", home);
		if (n < 0 || (size_t)n >= len)
			return troop_error_set(TROOP_EINVAL,
			    "TROOP_HOME is longer than %zu bytes", len ? len - 1 : 0);
		return 0;
	}
	home = getenv("HOME");
	if (!home || !*home)
		return troop_error_set(TROOP_EINVAL,
		    "neither TROOP_HOME nor HOME is set; set TROOP_HOME to a directory");
	n = snprintf(buf, len, "%s/.config/monkey-troop", home);
	if (n < 0 || (size_t)n >= len)
		return troop_error_set(TROOP_EINVAL,
		    "HOME/.config/monkey-troop is longer than %zu bytes", len ? len - 1 : 0);
	return 0;
}

bool config_listen_is_loopback(const char *listen)
{
	char host[128];
	const char *colon = listen ? strrchr(listen, ':') : NULL;
	size_t n;
	struct in_addr a4;
	struct in6_addr a6;

	if (!colon)
		return false;
	n = (size_t)(colon - listen);
	if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
		listen++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, listen, n);
	host[n] = '\0';
	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

int config_make_dirs(const char *dir, mode_t mode)
{
	char tmp[4096];
	size_t n = dir ? strlen(dir) : 0;
	struct stat st;

	if (n == 0 || n >= sizeof(tmp))
		return troop_error_set(TROOP_EINVAL, "directory path is empty or too long");
	memcpy(tmp, dir, n + 1);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = '\0';
	for (char *p = tmp + 1; ; p++) {
		char c = *p;
		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return troop_error_set(TROOP_EIO, "cannot create directory %s: %s", tmp,
			    strerror(errno));
		*p = c;
		if (c == '\0')
			break;
	}
	if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode))
		return troop_error_set(TROOP_EIO, "%s is not a directory", tmp);
	return 0;
}

int config_private_dir(const char *dir)
{
	struct stat st;
	int rc = config_make_dirs(dir, 0700);

	if (rc != 0)
		return rc;
	if (stat(dir, &st) != 0)
		return troop_error_set(TROOP_EIO, "cannot read %s: %s", dir, strerror(errno));
	if (st.st_uid != geteuid())
		return troop_error_set(TROOP_EFORBIDDEN, "%s belongs to another user (uid %u); "
		    "use a directory of your own", dir, (unsigned)st.st_uid);
	if ((st.st_mode & 077) == 0)
		return 0;
	if (chmod(dir, 0700) != 0)
		return troop_error_set(TROOP_EFORBIDDEN, "%s is readable by other users (mode "
		    "%04o) and cannot be changed: %s; run 'chmod 700 %s'", dir,
		    (unsigned)(st.st_mode & 07777), strerror(errno), dir);
	fprintf(stderr, "warning: %s was open to other users (mode %04o); changed it to "
	    "0700\n", dir, (unsigned)(st.st_mode & 07777));
	return 0;
}
