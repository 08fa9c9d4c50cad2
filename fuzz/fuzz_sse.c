/*
 * fuzz_sse.c - libFuzzer harness for the SSE parser.  Besides surviving
 * any input within its limits, it must give
 * the same events and the same result whether the input comes whole, in
 * two chunks split at data[0] % size, or byte by byte; abort() otherwise.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Events serialised into one bounded byte string, for comparison. */
struct trace {
	char buf[1 << 16];
	size_t len;
	size_t n;
};

static void trace_add(struct trace *t, const void *p, size_t n)
{
	if (t->len + n + sizeof(size_t) > sizeof(t->buf)) {
		t->len = sizeof(t->buf);   /* saturate: still compared */
		return;
	}
	memcpy(t->buf + t->len, &n, sizeof(n));
	t->len += sizeof(n);
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

static int on_event(void *arg, const char *event, const char *data, size_t data_len,
    const char *id)
{
	struct trace *t = arg;

	if (!event || !data || !id || data[data_len] != '\0' || data_len == SIZE_MAX)
		abort();
	trace_add(t, event, strlen(event));
	trace_add(t, data, data_len);
	trace_add(t, id, strlen(id));
	t->n++;
	return 0;
}

#define MAX_EVENT 4096

/* mode 0: whole; 1: split at k; 2: byte by byte */
static int sse_run(struct trace *t, const char *d, size_t n, int mode, size_t k)
{
	sse_parser *p = NULL;
	int rc = 0;

	if (sse_parser_new(&p, MAX_EVENT, on_event, t) != 0)
		abort();
	if (mode == 0) {
		rc = sse_parser_feed(p, d, n);
	} else if (mode == 1) {
		rc = sse_parser_feed(p, d, k);
		if (rc == 0)
			rc = sse_parser_feed(p, d + k, n - k);
	} else {
		for (size_t i = 0; i < n && rc == 0; i++)
			rc = sse_parser_feed(p, d + i, 1);
	}
	if (rc == 0)
		sse_parser_finish(p);
	sse_parser_free(p);
	return rc;
}

static void same(const struct trace *a, int ra, const struct trace *b, int rb)
{
	if (ra != rb || a->n != b->n || a->len != b->len ||
	    memcmp(a->buf, b->buf, a->len) != 0)
		abort();
}

static struct trace t_whole, t_split, t_bytes;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data;
	size_t k = size ? data[0] % size : 0;
	int r0, r1, r2;

	t_whole.len = t_whole.n = 0;
	t_split.len = t_split.n = 0;
	t_bytes.len = t_bytes.n = 0;
	r0 = sse_run(&t_whole, d, size, 0, 0);
	r1 = sse_run(&t_split, d, size, 1, k);
	same(&t_whole, r0, &t_split, r1);
	if (size <= 4096) {
		r2 = sse_run(&t_bytes, d, size, 2, 0);
		same(&t_whole, r0, &t_bytes, r2);
	}

	return 0;
}
