/*
 * jscan.h - a reader for the plain JSON the troop writes itself (node
 * records kept in Redis): it walks objects and arrays where they lie, with
 * no tree and no allocation.
 *
 * It reads only the plain forms: text of printable ASCII (no escapes, no
 * control characters, no bytes above 0x7F), integers that fit int64_t, and
 * numbers.  Every call returns false (or -1) on anything else, and the
 * caller then parses the text again with jansson, which reads every JSON
 * text: this is a fast path beside the full parser, never instead of it.
 * What it accepts it reads as jansson does (fuzz/fuzz_jscan.c checks that).
 *
 *   jscan s;
 *   jscan_init(&s, text, len);
 *   if (!jscan_object(&s)) goto slow;
 *   while ((r = jscan_member(&s, &key, &klen)) == 1)
 *       if (JSCAN_KEY(key, klen, "port")) { if (!jscan_int(&s, &port)) goto slow; }
 *       else if (!jscan_skip(&s)) goto slow;
 *   if (r != 0 || !jscan_end(&s)) goto slow;
 */
#ifndef TROOP_JSCAN_H
#define TROOP_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct jscan {
	const char *p, *end;
	bool first;   /* the container just opened has had no member yet */
} jscan;

#define JSCAN_DEPTH_MAX 32   /* containers inside containers, for jscan_skip */

/* whether key (klen bytes) is the literal `lit` */
#define JSCAN_KEY(key, klen, lit) \
	((klen) == sizeof(lit) - 1 && memcmp((key), (lit), sizeof(lit) - 1) == 0)

void jscan_init(jscan *s, const char *text, size_t len);

/* Open the object or array that comes next. */
bool jscan_object(jscan *s);
bool jscan_array(jscan *s);

/* The next member of the open object: 1 with its key (not NUL-terminated)
 * and the scanner at its value, which the caller must read or skip; 0 at
 * the object's end (consumed); -1 when the text is not plain JSON. */
int jscan_member(jscan *s, const char **key, size_t *klen);

/* The next element of the open array: 1 when one follows (the caller
 * reads or skips it), 0 at the array's end (consumed), -1 otherwise. */
int jscan_element(jscan *s);

/* Values.  A string is returned in place, without its quotes. */
bool jscan_string(jscan *s, const char **v, size_t *len);
bool jscan_int(jscan *s, int64_t *v);       /* an integer, not 1.0 or 1e3 */
bool jscan_number(jscan *s, double *v);     /* an integer or a real */
bool jscan_bool(jscan *s, bool *v);
/* Any plain value, containers included (at most JSCAN_DEPTH_MAX deep). */
bool jscan_skip(jscan *s);

/* Whether only white space is left. */
bool jscan_end(jscan *s);

#endif
