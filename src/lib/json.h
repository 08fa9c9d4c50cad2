/*
 * json.h - helpers on jansson for request and response bodies.
 *
 * The typed getters name the field in their error: a missing required
 * field gives TROOP_EINVAL with "missing field 'model'", a wrong type
 * "field 'port' must be an integer".  Optional fields leave *out untouched
 * when absent (or JSON null).  Unknown fields are never an error.
 * All functions are thread-safe (jansson values are not shared across
 * threads by these helpers).
 */
#ifndef TROOP_JSON_H
#define TROOP_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse `len` bytes as one JSON value that must be an object.
 * Returns the new reference in *out, or TROOP_EINVAL with a message giving
 * the line/column of the syntax error ("body is not valid JSON: ...").
 * Duplicate keys, "\u0000" in strings and invalid UTF-8 are rejected. */
int json_parse_object(json_t **out, const char *buf, size_t len);

/* Getters.  `required`: absence is an error.  Strings point into `obj`
 * (borrowed; valid while obj lives).  Integers must be JSON integers (a
 * real with no fractional part is accepted); ranges are checked when
 * min < max, naming the field. */
int json_get_str(const char **out, const json_t *obj, const char *field, bool required);
/* As json_get_str, but also enforces 1 <= strlen <= maxlen. */
int json_get_strn(const char **out, const json_t *obj, const char *field,
    bool required, size_t maxlen);
int json_get_int(int64_t *out, const json_t *obj, const char *field, bool required,
    int64_t min, int64_t max);
int json_get_double(double *out, const json_t *obj, const char *field, bool required);
int json_get_bool(bool *out, const json_t *obj, const char *field, bool required);
/* Borrowed array / object; `maxlen` bounds the array length (0 = no bound),
 * over it is TROOP_EINVAL "field 'models' has more than 256 items". */
int json_get_array(json_t **out, const json_t *obj, const char *field, bool required,
    size_t maxlen);
int json_get_object(json_t **out, const json_t *obj, const char *field, bool required);

/* Serialise compactly (JSON_COMPACT).  Returns malloc'd text (caller frees)
 * and its length in *len if len != NULL; NULL on allocation failure. */
char *json_dump_compact(const json_t *v, size_t *len);

/* {"error":{"message":msg,"type":troop_err_type(err),"code":troop_err_code(err)}}
 * New reference. */
json_t *json_error_body(int err, const char *msg);

/* Length of the valid UTF-8 sequence at s (at most n >= 1 bytes), or 0 if
 * the bytes there are not one (overlong forms, surrogates and code points
 * above U+10FFFF are not). */
size_t json_utf8_seq_len(const unsigned char *s, size_t n);

#endif
