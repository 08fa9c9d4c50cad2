/*
 * jsonw.h - a small streaming JSON writer into a dynbuf, for replies too
 * big or too frequent to build as a jansson tree first (GET /peers).  It
 * writes what json_dumps(JSON_COMPACT) writes for the same values: strings
 * escaped the same way (", \, control characters; UTF-8 passed through),
 * reals as jansson prints them ("%.17g", ".0" added to whole numbers).
 *
 * The writer places the commas: begin an object or array, then write
 * values (in an object, each after its key), then end it.  Errors are
 * sticky: after the first one (the dynbuf's limit, out of memory, nesting
 * deeper than JSONW_DEPTH_MAX) every call does nothing and jsonw_error
 * returns it.  A jsonw is a plain struct owned by its user: one thread at
 * a time.
 */
#ifndef TROOP_JSONW_H
#define TROOP_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dynbuf.h"

#define JSONW_DEPTH_MAX 32

typedef struct {
	dynbuf *b;                  /* where the text goes (not owned) */
	int err;                    /* first error, 0 none */
	int depth;                  /* open objects and arrays */
	bool any[JSONW_DEPTH_MAX];  /* whether each open level has a member yet */
	bool obj[JSONW_DEPTH_MAX];  /* whether each open level is an object */
	bool after_key;             /* a key was written: its value comes next */
} jsonw;

/* Start writing at the end of `b` (which keeps its content and limit). */
void jsonw_init(jsonw *w, dynbuf *b);

void jsonw_obj_begin(jsonw *w);
void jsonw_obj_end(jsonw *w);
void jsonw_arr_begin(jsonw *w);
void jsonw_arr_end(jsonw *w);

/* The key of the next member of the open object (escaped as a string). */
void jsonw_key(jsonw *w, const char *key);

/* Values.  jsonw_str: NUL-terminated UTF-8 (a byte that is not part of a
 * valid UTF-8 sequence is written as U+FFFD); NULL writes null.
 * jsonw_real: a value that is not finite is written as null. */
void jsonw_str(jsonw *w, const char *s);
void jsonw_strn(jsonw *w, const char *s, size_t len);
void jsonw_int(jsonw *w, int64_t v);
void jsonw_real(jsonw *w, double v);
void jsonw_bool(jsonw *w, bool v);
void jsonw_null(jsonw *w);

/* A value that is already JSON text, copied as it is (the caller vouches
 * for it). */
void jsonw_raw(jsonw *w, const char *json, size_t len);

/* Members that are already JSON text ("\"a\":1,\"b\":[2]": an object's
 * content without its braces), added to the open object as they are. */
void jsonw_raw_members(jsonw *w, const char *json, size_t len);

/* The first error (TROOP_ETOOLARGE, TROOP_ENOMEM, TROOP_EINVAL for a
 * misuse such as too deep a nesting), or 0. */
int jsonw_error(const jsonw *w);

#endif
