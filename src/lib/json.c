/*
 * json.c - helpers on jansson for request and response bodies.
 *
 * Parsing is strict where strictness protects the services: the whole
 * buffer must be one JSON object, duplicate keys are rejected (so that the
 * worker, which checks a body and then forwards its bytes to an engine, can
 * never see a different "model" than the engine does), and "\u0000" in a
 * string is rejected by jansson so that borrowed strings are C strings.
 * The getters turn every missing or mistyped field into a message naming
 * the field.  See json.h for the contract.
 */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int json_parse_object(json_t **out, const char *buf, size_t len)
{
	json_error_t jerr;
	json_t *v = NULL;

	*out = NULL;
	v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!v)
		return troop_error_set(TROOP_EINVAL,
		    "body is not valid JSON: line %d column %d: %s",
		    jerr.line, jerr.column, jerr.text);
	if (!json_is_object(v)) {
		const char *kind = json_is_array(v) ? "an array" :
		    json_is_string(v) ? "a string" :
		    json_is_number(v) ? "a number" :
		    json_is_boolean(v) ? "a boolean" : "null";
		json_decref(v);
		return troop_error_set(TROOP_EINVAL,
		    "body must be a JSON object, got %s", kind);
	}
	*out = v;
	return 0;
}

/* Look up `field`: returns 1 with *v set when present and not null, 0 when
 * absent or null and optional, or a negative error. */
static int json_lookup(json_t **v, const json_t *obj, const char *field,
    bool required)
{
	if (!json_is_object(obj))
		return troop_error_set(TROOP_EINVAL,
		    "expected a JSON object holding field '%s'", field);
	*v = json_object_get(obj, field);
	if (*v && !json_is_null(*v))
		return 1;
	if (required)
		return troop_error_set(TROOP_EINVAL, "missing field '%s'", field);
	return 0;
}

int json_get_str(const char **out, const json_t *obj, const char *field, bool required)
{
	json_t *v = NULL;
	int rc = json_lookup(&v, obj, field, required);

	if (rc <= 0)
		return rc;
	if (!json_is_string(v))
		return troop_error_set(TROOP_EINVAL, "field '%s' must be a string", field);
	/* values built in memory (json_stringn) may hold a NUL; a borrowed
	 * C string would silently stop there */
	if (strlen(json_string_value(v)) != json_string_length(v))
		return troop_error_set(TROOP_EINVAL,
		    "field '%s' must not contain a NUL character", field);
	*out = json_string_value(v);
	return 0;
}

int json_get_strn(const char **out, const json_t *obj, const char *field,
    bool required, size_t maxlen)
{
	const char *s = NULL;
	int rc = json_get_str(&s, obj, field, required);
	size_t n;

	if (rc != 0 || !s)
		return rc;
	n = strlen(s);
	if (n == 0)
		return troop_error_set(TROOP_EINVAL, "field '%s' must not be empty", field);
	if (n > maxlen)
		return troop_error_set(TROOP_EINVAL,
		    "field '%s' is longer than %zu bytes", field, maxlen);
	*out = s;
	return 0;
}

int json_get_int(int64_t *out, const json_t *obj, const char *field, bool required,
    int64_t min, int64_t max)
{
	json_t *v = NULL;
	int rc = json_lookup(&v, obj, field, required);
	int64_t n;

	if (rc <= 0)
		return rc;
	if (json_is_integer(v)) {
		n = (int64_t)json_integer_value(v);
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		/* 2^63 is exact as a double; anything in [-2^63, 2^63) fits */
		if (!isfinite(d) || d != trunc(d))
			return troop_error_set(TROOP_EINVAL,
			    "field '%s' must be an integer", field);
		if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
			if (min < max)
				return troop_error_set(TROOP_EINVAL,
				    "field '%s' must be between %lld and %lld",
				    field, (long long)min, (long long)max);
			return troop_error_set(TROOP_EINVAL,
			    "field '%s' is out of range for an integer", field);
		}
		n = (int64_t)d;
	} else {
		return troop_error_set(TROOP_EINVAL, "field '%s' must be an integer", field);
	}
	if (min < max && (n < min || n > max))
		return troop_error_set(TROOP_EINVAL,
		    "field '%s' must be between %lld and %lld",
		    field, (long long)min, (long long)max);
	*out = n;
	return 0;
}

int json_get_double(double *out, const json_t *obj, const char *field, bool required)
{
	json_t *v = NULL;
	int rc = json_lookup(&v, obj, field, required);

	if (rc <= 0)
		return rc;
	if (!json_is_number(v))
		return troop_error_set(TROOP_EINVAL, "field '%s' must be a number", field);
	*out = json_number_value(v);
	return 0;
}

int json_get_bool(bool *out, const json_t *obj, const char *field, bool required)
{
	json_t *v = NULL;
	int rc = json_lookup(&v, obj, field, required);

	if (rc <= 0)
		return rc;
	if (!json_is_boolean(v))
		return troop_error_set(TROOP_EINVAL,
		    "field '%s' must be true or false", field);
	*out = json_is_true(v);
	return 0;
}

int json_get_array(json_t **out, const json_t *obj, const char *field, bool required,
    size_t maxlen)
{
	json_t *v = NULL;
	int rc = json_lookup(&v, obj, field, required);

	if (rc <= 0)
		return rc;
	if (!json_is_array(v))
		return troop_error_set(TROOP_EINVAL, "field '%s' must be an array", field);
	if (maxlen && json_array_size(v) > maxlen)
		return troop_error_set(TROOP_EINVAL,
		    "field '%s' has more than %zu items", field, maxlen);
	*out = v;
	return 0;
}

int json_get_object(json_t **out, const json_t *obj, const char *field, bool required)
{
	json_t *v = NULL;
	int rc = json_lookup(&v, obj, field, required);

	if (rc <= 0)
		return rc;
	if (!json_is_object(v))
		return troop_error_set(TROOP_EINVAL, "field '%s' must be an object", field);
	*out = v;
	return 0;
}

char *json_dump_compact(const json_t *v, size_t *len)
{
	char *s;

	if (!v)
		return NULL;
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s && len)
		*len = strlen(s);
	return s;
}

size_t json_utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Error messages may quote user bytes ("got '...'"); jansson only takes
 * UTF-8, so replace each invalid byte with U+FFFD.  The message is bounded
 * by the caller (troop_error_msg is at most 511 bytes), the copy by 4096. */
#define JSON_MSG_MAX 4096

json_t *json_error_body(int err, const char *msg)
{
	const unsigned char *s = (const unsigned char *)(msg ? msg : "");
	size_t n = strnlen((const char *)s, JSON_MSG_MAX);
	char *clean = malloc(n * 3 + 1);
	size_t o = 0;
	json_t *body = NULL;

	if (!clean)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t l = json_utf8_seq_len(s + i, n - i);
		if (l == 0) {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(clean + o, s + i, l);
		o += l;
		i += l;
	}
	clean[o] = '\0';
	body = json_pack("{s:{s:s,s:s,s:s}}", "error",
	    "message", clean,
	    "type", troop_err_type(err),
	    "code", troop_err_code(err));
	free(clean);
	return body;
}
