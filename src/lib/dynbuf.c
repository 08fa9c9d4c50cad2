/*
 * dynbuf.c - the bounded growable buffer of dynbuf.h.  Growth doubles
 * (from 64 bytes) and is clamped to max + 1, so a buffer never allocates
 * more than its limit allows.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "error.h"

#define DYNBUF_MIN 64

void dynbuf_init(dynbuf *b, size_t max)
{
	b->buf = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max ? max : 1;
}

/* Room for `need` bytes of content plus the NUL; need <= max. */
static int reserve(dynbuf *b, size_t need)
{
	size_t cap;
	char *nb;

	if (b->buf != NULL && need < b->cap)
		return 0;
	cap = b->cap ? b->cap : DYNBUF_MIN;
	while (cap <= need)
		cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
	if (b->max < SIZE_MAX && cap > b->max + 1)
		cap = b->max + 1;
	nb = realloc(b->buf, cap);
	if (nb == NULL)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	b->buf = nb;
	b->cap = cap;
	return 0;
}

static int too_large(const dynbuf *b)
{
	return troop_error_set(TROOP_ETOOLARGE, "more than %zu bytes", b->max);
}

int dynbuf_add(dynbuf *b, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	if (n > b->max - b->len)
		return too_large(b);
	if ((rc = reserve(b, b->len + n)) != 0)
		return rc;
	memcpy(b->buf + b->len, p, n);
	b->len += n;
	b->buf[b->len] = '\0';
	return 0;
}

int dynbuf_extend(dynbuf *b, size_t n, void **at)
{
	int rc;

	*at = NULL;
	if (n > b->max - b->len)
		return too_large(b);
	if ((rc = reserve(b, b->len + n)) != 0)
		return rc;
	*at = b->buf + b->len;
	b->len += n;
	b->buf[b->len] = '\0';
	return 0;
}

int dynbuf_reserve(dynbuf *b, size_t n)
{
	if (n > b->max - b->len)
		n = b->max - b->len;
	return reserve(b, b->len + n);
}

int dynbuf_addf(dynbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return troop_error_set(TROOP_EINVAL, "bad format");
	if ((size_t)n > b->max - b->len)
		return too_large(b);
	if ((rc = reserve(b, b->len + (size_t)n)) != 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

const char *dynbuf_ptr(const dynbuf *b)
{
	return b->buf ? b->buf : "";
}

size_t dynbuf_len(const dynbuf *b)
{
	return b->len;
}

void dynbuf_setlen(dynbuf *b, size_t len)
{
	if (len >= b->len)
		return;
	b->len = len;
	b->buf[len] = '\0';
}

char *dynbuf_take(dynbuf *b, size_t *len)
{
	char *p = b->buf;

	if (p == NULL && (p = calloc(1, 1)) == NULL) {
		troop_error_set(TROOP_ENOMEM, "out of memory");
		return NULL;
	}
	if (len)
		*len = b->len;
	b->buf = NULL;
	b->len = b->cap = 0;
	return p;
}

void dynbuf_reset(dynbuf *b)
{
	b->len = 0;
	if (b->buf)
		b->buf[0] = '\0';
}

void dynbuf_free(dynbuf *b)
{
	if (b == NULL)
		return;
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}
