/*
 * jscan.c - the plain-JSON reader of jscan.h.
 */
#include "jscan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

void jscan_init(jscan *s, const char *text, size_t len)
{
	s->p = text;
	s->end = text + len;
	s->first = false;
}

static void ws(jscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* the next byte after white space, consumed when it is c */
static bool take(jscan *s, char c)
{
	ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

static bool open_container(jscan *s, char c)
{
	if (!take(s, c))
		return false;
	s->first = true;
	return true;
}

bool jscan_object(jscan *s)
{
	return open_container(s, '{');
}

bool jscan_array(jscan *s)
{
	return open_container(s, '[');
}

/* Before the next member or element: 0 at the closing byte (consumed),
 * 1 when one follows (its comma consumed), -1 otherwise. */
static int next(jscan *s, char close)
{
	if (take(s, close)) {
		/* the enclosing container has had this one as a member */
		s->first = false;
		return 0;
	}
	if (!s->first && !take(s, ','))
		return -1;
	s->first = false;
	return 1;
}

int jscan_member(jscan *s, const char **key, size_t *klen)
{
	int r = next(s, '}');

	if (r != 1)
		return r;
	/* a key must follow, also after a comma ("{"a":1,}" is not JSON) */
	if (!jscan_string(s, key, klen) || !take(s, ':'))
		return -1;
	return 1;
}

int jscan_element(jscan *s)
{
	bool first = s->first;
	int r = next(s, ']');

	if (r == 1 && !first) {
		/* "[1,]": a value must follow the comma */
		ws(s);
		if (s->p < s->end && *s->p == ']')
			return -1;
	}
	return r;
}

bool jscan_string(jscan *s, const char **v, size_t *len)
{
	const char *q;

	if (!take(s, '"'))
		return false;
	for (q = s->p; q < s->end; q++) {
		unsigned char c = (unsigned char)*q;

		if (c == '"') {
			*v = s->p;
			*len = (size_t)(q - s->p);
			s->p = q + 1;
			return true;
		}
		if (c < 0x20 || c > 0x7F || c == '\\')
			return false;
	}
	return false;
}

static bool digit(const char *p, const char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

/* The number at s->p (after white space) per RFC 8259: its end in *stop
 * and whether it is an integer (no fraction, no exponent). */
static bool number_span(jscan *s, const char **stop, bool *integer)
{
	const char *p, *e = s->end;

	ws(s);
	p = s->p;
	if (p < e && *p == '-')
		p++;
	if (!digit(p, e))
		return false;
	if (*p == '0')
		p++;
	else
		while (digit(p, e))
			p++;
	*integer = true;
	if (p < e && *p == '.') {
		p++;
		if (!digit(p, e))
			return false;
		while (digit(p, e))
			p++;
		*integer = false;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (!digit(p, e))
			return false;
		while (digit(p, e))
			p++;
		*integer = false;
	}
	*stop = p;
	return true;
}

/* digits of an integer span (grammar already checked) into int64 */
static bool int_of(const char *p, const char *stop, int64_t *v)
{
	bool neg = *p == '-';
	uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, n = 0;

	if (neg)
		p++;
	for (; p < stop; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (lim - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*v = neg ? (int64_t)(0 - n) : (int64_t)n;
	return true;
}

bool jscan_int(jscan *s, int64_t *v)
{
	const char *stop;
	bool integer;

	if (!number_span(s, &stop, &integer) || !integer || !int_of(s->p, stop, v))
		return false;
	s->p = stop;
	return true;
}

bool jscan_number(jscan *s, double *v)
{
	const char *stop;
	bool integer;
	char buf[64];
	size_t n;

	if (!number_span(s, &stop, &integer))
		return false;
	if (integer) {
		int64_t i;

		if (!int_of(s->p, stop, &i))
			return false;
		*v = (double)i;
		s->p = stop;
		return true;
	}
	n = (size_t)(stop - s->p);
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, s->p, n);
	buf[n] = '\0';
	errno = 0;
	*v = strtod(buf, NULL);
	if (errno == ERANGE && isinf(*v))
		return false;
	s->p = stop;
	return true;
}

static bool literal(jscan *s, const char *lit, size_t n)
{
	ws(s);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return false;
	s->p += n;
	return true;
}

bool jscan_bool(jscan *s, bool *v)
{
	if (literal(s, "true", 4)) {
		*v = true;
		return true;
	}
	if (literal(s, "false", 5)) {
		*v = false;
		return true;
	}
	return false;
}

static bool skip_at(jscan *s, int depth)
{
	const char *str;
	size_t len;
	int r;

	ws(s);
	if (s->p >= s->end)
		return false;
	switch (*s->p) {
	case '"':
		return jscan_string(s, &str, &len);
	case '{':
		if (depth >= JSCAN_DEPTH_MAX || !jscan_object(s))
			return false;
		while ((r = jscan_member(s, &str, &len)) == 1)
			if (!skip_at(s, depth + 1))
				return false;
		return r == 0;
	case '[':
		if (depth >= JSCAN_DEPTH_MAX || !jscan_array(s))
			return false;
		while ((r = jscan_element(s)) == 1)
			if (!skip_at(s, depth + 1))
				return false;
		return r == 0;
	case 't':
		return literal(s, "true", 4);
	case 'f':
		return literal(s, "false", 5);
	case 'n':
		return literal(s, "null", 4);
	default: {
		/* an integer beyond int64_t is refused here as by jansson */
		double d;

		return jscan_number(s, &d);
	}
	}
}

bool jscan_skip(jscan *s)
{
	return skip_at(s, 0);
}

bool jscan_end(jscan *s)
{
	ws(s);
	return s->p == s->end;
}
