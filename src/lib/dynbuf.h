/*
 * dynbuf.h - a growable byte buffer with a hard limit set at creation
 * (curl's dynbuf is the model): response collectors, stream tails and
 * text built piece by piece grow in it, and going over the limit is an
 * error (TROOP_ETOOLARGE, which becomes a 413 or a 502 upstream) rather
 * than an unbounded realloc.
 *
 * The content is always NUL-terminated (one byte past len is allocated
 * and zero), so text can be used as a C string; binary content may hold
 * NULs.  A failed add (over the limit, or out of memory) leaves the
 * buffer intact: content and length as before the call, still owned by
 * the buffer (free it with dynbuf_free as usual).
 *
 * A dynbuf is a plain struct owned by its user: not thread-safe; one
 * thread at a time.
 */
#ifndef TROOP_DYNBUF_H
#define TROOP_DYNBUF_H

#include <stddef.h>

typedef struct {
	char *buf;     /* NULL until the first add */
	size_t len;    /* bytes used */
	size_t cap;    /* bytes allocated (>= len + 1 once allocated) */
	size_t max;    /* most bytes the content may hold */
} dynbuf;

/* Start an empty buffer that may hold at most `max` (>= 1) bytes.  No
 * allocation happens until the first add. */
void dynbuf_init(dynbuf *b, size_t max);

/* Append n bytes.  0, TROOP_ETOOLARGE (len + n > max; message set) or
 * TROOP_ENOMEM; on error the buffer is intact.  n == 0 is a no-op. */
int dynbuf_add(dynbuf *b, const void *p, size_t n);

/* Grow the content by n bytes whose value the caller writes through *at
 * (valid until the next call that changes the buffer): for output made in
 * place, such as a ciphertext.  0, TROOP_ETOOLARGE or TROOP_ENOMEM (the
 * buffer intact, *at NULL). */
int dynbuf_extend(dynbuf *b, size_t n, void **at);

/* Make room for n more bytes (at most up to the limit) without adding
 * any, so that the appends that follow do not move the content: for a
 * writer that knows about how much it will write.  0 or TROOP_ENOMEM (the
 * buffer intact). */
int dynbuf_reserve(dynbuf *b, size_t n);

/* Append printf-style text; as dynbuf_add (nothing is appended on error). */
int dynbuf_addf(dynbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The content (NUL-terminated), or "" while empty: never NULL.  Valid
 * until the next call that changes the buffer. */
const char *dynbuf_ptr(const dynbuf *b);

/* Bytes of content. */
size_t dynbuf_len(const dynbuf *b);

/* Cut the content to its first `len` bytes (len >= current length:
 * nothing changes). */
void dynbuf_setlen(dynbuf *b, size_t len);

/* Hand the content over: a malloc'd NUL-terminated copy of `len` bytes
 * (the buffer's own allocation, or a fresh empty string when nothing was
 * added), *len (may be NULL) its length; the buffer is left empty with the
 * same limit.  NULL only when out of memory (the buffer is then intact). */
char *dynbuf_take(dynbuf *b, size_t *len);

/* Empty the content, keeping the allocation and the limit. */
void dynbuf_reset(dynbuf *b);

/* Free the allocation; the buffer is empty with the same limit and may be
 * used again.  NULL is fine. */
void dynbuf_free(dynbuf *b);

#endif
