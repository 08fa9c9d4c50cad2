/*
 * log.c - one-line key=value logger with secret redaction.  See log.h.
 */
#include "log.h"
#include "error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level_cur = LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR", "OFF" };

void log_set_level(log_level level)
{
	atomic_store(&log_level_cur, (int)level);
}

log_level log_get_level(void)
{
	return (log_level)atomic_load(&log_level_cur);
}

int log_parse_level(log_level *out, const char *s)
{
	for (int i = LOG_DEBUG; i <= LOG_OFF; i++) {
		if (s && strcasecmp(s, level_names[i]) == 0) {
			*out = (log_level)i;
			return 0;
		}
	}
	if (s && strcasecmp(s, "warning") == 0) {
		*out = LOG_WARN;
		return 0;
	}
	return troop_error_set(TROOP_EINVAL,
	    "log level '%s' is not one of debug, info, warn, error, off", s ? s : "");
}

void log_set_fd(int fd)
{
	log_fd = fd;
}

void log_init(void)
{
	const char *env = getenv("TROOP_LOG_LEVEL");
	log_level l;

	if (env && *env && log_parse_level(&l, env) == 0)
		log_set_level(l);
}

static int key_is_secret(const char *key, size_t len)
{
	static const char *const contains[] = {
		"authorization", "signature", "token", "ticket", "secret",
		"password", "private", "cookie",
	};
	static const char *const exact[] = { "key", "api_key", "apikey", "seed", "sk" };
	char k[64];

	if (len == 0 || len >= sizeof(k))
		return 0;
	for (size_t i = 0; i < len; i++)
		k[i] = (char)tolower((unsigned char)key[i]);
	k[len] = '\0';
	for (size_t i = 0; i < sizeof(contains) / sizeof(contains[0]); i++)
		if (strstr(k, contains[i]))
			return 1;
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (strcmp(k, exact[i]) == 0)
			return 1;
	return 0;
}

/* A value that looks like a compact JWS: starts "eyJ" and has a '.'. */
static int value_is_secret(const char *v, size_t len)
{
	if (len >= 3 && memcmp(v, "eyJ", 3) == 0 && memchr(v, '.', len))
		return 1;
	if (len >= 6 && strncasecmp(v, "Bearer", 6) == 0)
		return 1;
	return 0;
}

static size_t put(char *out, size_t outlen, size_t o, const char *s, size_t n)
{
	if (o + 1 >= outlen)
		return o;
	if (n > outlen - 1 - o)
		n = outlen - 1 - o;
	memcpy(out + o, s, n);
	return o + n;
}

/* Redact the bare words of `s` (len bytes, no key=value structure): a
 * compact-JWS-looking word, and "Bearer" with the word after it, become
 * [redacted].  Spaces are kept. */
static size_t redact_words(char *out, size_t outlen, size_t o, const char *s, size_t len)
{
	const char *p = s, *end = s + len;
	int after_bearer = 0;

	while (p < end) {
		const char *w = p;
		while (p < end && *p != ' ')
			p++;
		size_t wlen = (size_t)(p - w);
		/* look past an opening quote or bracket for the test */
		const char *t = w;
		size_t tlen = wlen;
		while (tlen > 0 && (*t == '"' || *t == '\'' || *t == '(' || *t == '['))
			t++, tlen--;
		if (after_bearer || (tlen >= 3 && memcmp(t, "eyJ", 3) == 0 && memchr(t, '.', tlen))) {
			o = put(out, outlen, o, "[redacted]", 10);
			after_bearer = 0;
		} else if (tlen == 6 && strncasecmp(t, "Bearer", 6) == 0 && p < end) {
			/* "Bearer X" becomes one [redacted] */
			o = put(out, outlen, o, w, (size_t)(t - w));
			after_bearer = 1;
			while (p < end && *p == ' ')
				p++;
			continue;
		} else {
			o = put(out, outlen, o, w, wlen);
		}
		while (p < end && *p == ' ')
			o = put(out, outlen, o, p++, 1);
	}
	return o;
}

/* The end of a token starting at p: the next space, except that a value
 * in double quotes (key="...") runs to its closing quote (backslash
 * escapes skipped), so that a quoted secret is redacted whole. */
static const char *token_end(const char *p)
{
	const char *eq = NULL;

	for (const char *q = p; *q && *q != ' '; q++)
		if (*q == '=') {
			eq = q;
			break;
		}
	if (eq && eq[1] == '"') {
		const char *q = eq + 2;
		while (*q && *q != '"') {
			if (*q == '\\' && q[1])
				q++;
			q++;
		}
		return *q ? q + 1 : q;
	}
	while (*p && *p != ' ')
		p++;
	return p;
}

void log_redact(char *out, size_t outlen, const char *in)
{
	size_t o = 0;
	const char *p = in;

	if (outlen == 0)
		return;
	while (*p) {
		const char *tok = p;
		p = token_end(p);
		size_t toklen = (size_t)(p - tok);
		const char *eq = memchr(tok, '=', toklen);
		if (eq) {
			size_t klen = (size_t)(eq - tok);
			const char *v = eq + 1;
			size_t vlen = toklen - klen - 1;
			/* key=Bearer x: the credential is the next token */
			int bearer = vlen == 6 && strncasecmp(v, "Bearer", 6) == 0 && *p == ' ';
			if (key_is_secret(tok, klen) || value_is_secret(v, vlen)) {
				o = put(out, outlen, o, tok, klen + 1);
				o = put(out, outlen, o, "[redacted]", 10);
				if (bearer) {
					p++;
					p = token_end(p);
				}
			} else {
				/* a value that is not itself secret may still hold a
				 * token or a Bearer credential among its words */
				o = put(out, outlen, o, tok, klen + 1);
				o = redact_words(out, outlen, o, v, vlen);
			}
		} else {
			o = redact_words(out, outlen, o, tok, toklen);
		}
		while (*p == ' ')
			o = put(out, outlen, o, p++, 1);
	}
	out[o] = '\0';
}

void log_write(log_level level, const char *event, const char *fmt, ...)
{
	char fields[2048], red[2048], line[4096];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	if ((int)level < atomic_load(&log_level_cur) || level >= LOG_OFF)
		return;
	fields[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(fields, sizeof(fields), fmt, ap);
		va_end(ap);
	}
	/* control characters would let a value forge a log line */
	for (char *c = fields; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	log_redact(red, sizeof(red), fields);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s%s%s\n",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level],
	    event ? event : "-", red[0] ? " " : "", red);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	ssize_t w = write(log_fd, line, (size_t)n);
	(void)w;
}
