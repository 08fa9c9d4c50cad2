/*
 * fuzz_jscan.c - libFuzzer harness for the plain-JSON reader (jscan.h),
 * against jansson.  Whatever text jscan takes, jansson must take too; and
 * when the text is an object, each member jscan reads as a string, an
 * integer, a number or a bool must be what jansson gives for that key (the
 * last of equal keys, as jansson keeps).  abort() otherwise.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEMBERS_MAX 64

struct member {
	const char *key, *str;
	size_t klen, slen;
	enum { M_STR, M_INT, M_NUM, M_BOOL, M_OTHER } kind;
	int64_t i;
	double d;
	bool b;
};

/* read one member's value the way a record reader would: the first read
 * that works */
static bool read_value(jscan *s, struct member *m)
{
	if (jscan_string(s, &m->str, &m->slen))
		m->kind = M_STR;
	else if (jscan_int(s, &m->i))
		m->kind = M_INT;
	else if (jscan_number(s, &m->d))
		m->kind = M_NUM;
	else if (jscan_bool(s, &m->b))
		m->kind = M_BOOL;
	else {
		m->kind = M_OTHER;
		return jscan_skip(s);
	}
	return true;
}

static bool last_of_key(const struct member *ms, size_t n, size_t i)
{
	for (size_t j = i + 1; j < n; j++)
		if (ms[j].klen == ms[i].klen && memcmp(ms[j].key, ms[i].key, ms[i].klen) == 0)
			return false;
	return true;
}

static void check(const struct member *m, json_t *o)
{
	char key[256];
	json_t *v;

	if (m->klen >= sizeof(key) || memchr(m->key, '\0', m->klen))
		return;
	memcpy(key, m->key, m->klen);
	key[m->klen] = '\0';
	if ((v = json_object_get(o, key)) == NULL)
		abort();
	switch (m->kind) {
	case M_STR:
		if (!json_is_string(v) || json_string_length(v) != m->slen ||
		    memcmp(json_string_value(v), m->str, m->slen) != 0)
			abort();
		break;
	case M_INT:
		if (!json_is_integer(v) || json_integer_value(v) != m->i)
			abort();
		break;
	case M_NUM:
		if (!json_is_real(v) || !(json_real_value(v) == m->d))
			abort();
		break;
	case M_BOOL:
		if (!json_is_boolean(v) || json_is_true(v) != m->b)
			abort();
		break;
	default:
		if (json_is_string(v) || json_is_number(v) || json_is_boolean(v))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct member ms[MEMBERS_MAX];
	size_t n = 0, all = 0;
	jscan s;
	json_t *o;
	int r;
	bool whole;

	/* 1. any value: taken by jscan => taken by jansson */
	jscan_init(&s, text, size);
	whole = jscan_skip(&s) && jscan_end(&s);
	o = json_loadb(text, size, JSON_DECODE_ANY, NULL);
	if (whole && o == NULL)
		abort();
	json_decref(o);
	if (!whole)
		return 0;

	/* 2. an object: the members as read in place, against jansson's */
	jscan_init(&s, text, size);
	if (!jscan_object(&s))
		return 0;
	while ((r = jscan_member(&s, &ms[n].key, &ms[n].klen)) == 1) {
		if (!read_value(&s, &ms[n]))
			abort();   /* the whole text was plain */
		all++;
		if (n + 1 < MEMBERS_MAX)
			n++;
	}
	if (r != 0 || !jscan_end(&s))
		abort();
	if ((o = json_loadb(text, size, 0, NULL)) == NULL || !json_is_object(o))
		abort();
	/* with more members than kept, a later equal key may be unseen */
	for (size_t i = 0; i < n && all == n; i++)
		if (last_of_key(ms, n, i))
			check(&ms[i], o);
	json_decref(o);
	return 0;
}
