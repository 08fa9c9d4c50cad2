/*
 * jsonw.c - the streaming JSON writer of jsonw.h.  The escaping and the
 * number formats follow jansson's dump.c, so that a reply written here
 * reads, and mostly is, byte for byte what json_dumps(JSON_COMPACT) wrote
 * for the same tree.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "jsonw.h"

void jsonw_init(jsonw *w, dynbuf *b)
{
	memset(w, 0, sizeof(*w));
	w->b = b;
}

int jsonw_error(const jsonw *w)
{
	return w->err;
}

static void put(jsonw *w, const void *p, size_t n)
{
	int rc;

	if (w->err == 0 && (rc = dynbuf_add(w->b, p, n)) != 0)
		w->err = rc;
}

/* The comma before a member of the open level, if one came before. */
static void comma(jsonw *w)
{
	if (w->any[w->depth - 1])
		put(w, ",", 1);
	w->any[w->depth - 1] = true;
}

/* Before a value: the comma that separates it from the one before (not
 * after a key, whose colon is written already); in an object a value
 * must follow its key. */
static void before_value(jsonw *w)
{
	if (w->err)
		return;
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth > 0) {
		if (w->obj[w->depth - 1]) {
			w->err = troop_error_set(TROOP_EINVAL, "json: a value without a key");
			return;
		}
		comma(w);
	}
}

static void open_level(jsonw *w, char c)
{
	before_value(w);
	if (w->err)
		return;
	if (w->depth >= JSONW_DEPTH_MAX) {
		w->err = troop_error_set(TROOP_EINVAL, "json: nested deeper than %d",
		    JSONW_DEPTH_MAX);
		return;
	}
	put(w, &c, 1);
	w->obj[w->depth] = c == '{';
	w->any[w->depth++] = false;
}

static void close_level(jsonw *w, char c)
{
	if (w->err)
		return;
	if (w->depth == 0 || w->after_key || w->obj[w->depth - 1] != (c == '}')) {
		w->err = troop_error_set(TROOP_EINVAL, "json: '%c' with no such level open", c);
		return;
	}
	w->depth--;
	put(w, &c, 1);
}

void jsonw_obj_begin(jsonw *w)
{
	open_level(w, '{');
}

void jsonw_obj_end(jsonw *w)
{
	close_level(w, '}');
}

void jsonw_arr_begin(jsonw *w)
{
	open_level(w, '[');
}

void jsonw_arr_end(jsonw *w)
{
	close_level(w, ']');
}

/* The length of the start of s that a JSON string holds as it is: no
 * control character, quote, backslash or byte of a multi-byte sequence. */
static size_t plain_prefix(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
		i++;
	return i;
}

/* `lead` (0 none), then s quoted, then `trail` (0 none), as one piece:
 * the common case of a key or a value that needs no escaping, which
 * costs one append instead of three to five.  Returns false, having
 * written nothing, when s needs escaping. */
static bool put_plain(jsonw *w, char lead, const char *s, size_t len, char trail)
{
	char *at;
	size_t k = 0;
	int rc;

	if (plain_prefix((const unsigned char *)s, len) != len)
		return false;
	if (w->err)
		return true;
	if ((rc = dynbuf_extend(w->b, len + 2 + (lead != 0) + (trail != 0), (void **)&at)) != 0) {
		w->err = rc;
		return true;
	}
	if (lead)
		at[k++] = lead;
	at[k++] = '"';
	memcpy(at + k, s, len);
	k += len;
	at[k++] = '"';
	if (trail)
		at[k] = trail;
	return true;
}

static void put_string(jsonw *w, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;

	if (put_plain(w, 0, str, len, 0))
		return;
	put(w, "\"", 1);
	i = plain_prefix(s, len);
	while (i < len && w->err == 0) {
		unsigned c = s[i];
		size_t k;
		char esc[8];
		const char *e = NULL;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		k = c < 0x80 ? 1 : json_utf8_seq_len(s + i, len - i);
		if (k > 1) {
			i += k;
			continue;
		}
		/* flush the plain run before this byte */
		put(w, s + run, i - run);
		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		default:
			if (k == 0)
				e = "\\uFFFD";
			else {
				snprintf(esc, sizeof(esc), "\\u%04X", c);
				e = esc;
			}
		}
		put(w, e, strlen(e));
		run = ++i;
	}
	put(w, s + run, len - run);
	put(w, "\"", 1);
}

void jsonw_key(jsonw *w, const char *key)
{
	if (w->err)
		return;
	if (w->depth == 0 || w->after_key || !w->obj[w->depth - 1]) {
		w->err = troop_error_set(TROOP_EINVAL, "json: a key outside an object");
		return;
	}
	if (w->any[w->depth - 1]) {
		if (!put_plain(w, ',', key, strlen(key), ':')) {
			put(w, ",", 1);
			put_string(w, key, strlen(key));
			put(w, ":", 1);
		}
	} else if (!put_plain(w, 0, key, strlen(key), ':')) {
		put_string(w, key, strlen(key));
		put(w, ":", 1);
	}
	w->any[w->depth - 1] = true;
	w->after_key = true;
}

void jsonw_strn(jsonw *w, const char *s, size_t len)
{
	before_value(w);
	put_string(w, s, len);
}

void jsonw_str(jsonw *w, const char *s)
{
	if (!s) {
		jsonw_null(w);
		return;
	}
	jsonw_strn(w, s, strlen(s));
}

/* v in decimal, as "%" PRId64 writes it, without printf's machinery
 * (a /peers page writes about 1,500 integers); the length. */
static size_t fmt_int(char *t, int64_t v)
{
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	char d[20];
	size_t k = 0, n = 0;

	do {
		d[k++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		t[n++] = '-';
	while (k)
		t[n++] = d[--k];
	return n;
}

void jsonw_int(jsonw *w, int64_t v)
{
	char t[24];
	size_t n = fmt_int(t, v);

	before_value(w);
	put(w, t, n);
}

/* Write v into t when it is a multiple of 2^-10 below 2^20 in magnitude
 * (0, 1.0, 0.5, 0.75, 1536.25, ...: most reals a reply holds), as "%.17g"
 * writes it (then exactly: at most 7 + 10 significant digits) with ".0"
 * after a whole number; the length, or 0 for any other value (and -0.0). */
static size_t real_short(char *t, double v)
{
	double m = v * 1024.0;
	uint64_t a, ip, frac;
	char d[32];
	size_t n = 0, k = 0;

	if (!(fabs(m) < 1073741824.0) || m != floor(m) || (v == 0 && signbit(v)))
		return 0;
	a = (uint64_t)fabs(m);
	ip = a >> 10;
	frac = (a & 1023u) * 9765625u;  /* the fraction in units of 1e-10 */
	if (v < 0)
		t[n++] = '-';
	do {
		d[k++] = (char)('0' + ip % 10);
		ip /= 10;
	} while (ip);
	while (k)
		t[n++] = d[--k];
	t[n++] = '.';
	if (frac == 0) {
		t[n++] = '0';
		return n;
	}
	for (int i = 9; i >= 0; i--) {
		d[i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	k = 10;
	while (d[k - 1] == '0')
		k--;
	memcpy(t + n, d, k);
	return n + k;
}

void jsonw_real(jsonw *w, double v)
{
	char t[40], *e;
	size_t n;

	if (!isfinite(v)) {
		jsonw_null(w);
		return;
	}
	if ((n = real_short(t, v)) > 0) {
		before_value(w);
		put(w, t, n);
		return;
	}
	/* jansson's jsonp_dtostr at its default precision */
	n = (size_t)snprintf(t, sizeof(t) - 3, "%.17g", v);
	if (!strchr(t, '.') && !strchr(t, 'e')) {
		memcpy(t + n, ".0", 3);
		n += 2;
	}
	if ((e = strchr(t, 'e')) != NULL) {
		/* the exponent without '+' or leading zeros */
		char *start = e + 1, *end = start + 1;

		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, n - (size_t)(end - t) + 1);
			n -= (size_t)(end - start);
		}
	}
	before_value(w);
	put(w, t, n);
}

void jsonw_bool(jsonw *w, bool v)
{
	before_value(w);
	put(w, v ? "true" : "false", v ? 4 : 5);
}

void jsonw_null(jsonw *w)
{
	before_value(w);
	put(w, "null", 4);
}

void jsonw_raw(jsonw *w, const char *json, size_t len)
{
	before_value(w);
	put(w, json, len);
}

void jsonw_raw_members(jsonw *w, const char *json, size_t len)
{
	if (w->err || len == 0)
		return;
	if (w->depth == 0 || w->after_key || !w->obj[w->depth - 1]) {
		w->err = troop_error_set(TROOP_EINVAL, "json: members outside an object");
		return;
	}
	comma(w);
	put(w, json, len);
}
