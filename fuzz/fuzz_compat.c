/*
 * fuzz_compat.c - libFuzzer harness for the worker's reply translators
 * (src/worker/compat.h): an engine's chat completions reply into the
 * Responses and Messages APIs, and the revision of a native Responses or
 * Messages reply, as event streams and as JSON bodies.  The input's first
 * byte picks one of the eight (API, stream or body, translate or revise),
 * the rest is the engine's reply.  For any input, the translator must give
 * the same output whether the reply comes whole, in two chunks split at
 * data[1] % size, or in small pieces (byte by byte for its first 256
 * bytes, then 1 to 16 bytes at a time); a translated stream must be made
 * of whole "event: NAME\ndata: {json}\n\n" events; abort() otherwise.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *run(const char *p, size_t n, api_kind k, bool sse, bool native, int how,
    size_t *outlen)
{
	compat_reply *c;
	dynbuf out;
	int rc = 0;

	dynbuf_init(&out, 1u << 26);
	if ((native ? compat_native_new(&c, k, sse, "m") :
	    compat_reply_new(&c, k, sse, "id", "m", 1)) != 0)
		abort();
	if (how == 0) {
		rc = compat_reply_feed(c, p, n, &out);
	} else if (how == 1) {
		size_t cut = n ? (unsigned char)p[0] % n : 0;
		rc = compat_reply_feed(c, p, cut, &out);
		if (rc == 0)
			rc = compat_reply_feed(c, p + cut, n - cut, &out);
	} else {
		/* byte by byte; past the first 256 bytes in pieces of 1 to 16
		 * bytes, their sizes drawn from the input itself */
		uint32_t x = 2166136261u;

		for (size_t i = 0; i < n && rc == 0; ) {
			size_t step = 1;

			x = (x ^ (unsigned char)p[i]) * 16777619u;
			if (i >= 256)
				step = 1 + (x >> 28);
			if (step > n - i)
				step = n - i;
			rc = compat_reply_feed(c, p + i, step, &out);
			i += step;
		}
	}
	if (rc == 0)
		rc = compat_reply_finish(c, &out);
	compat_reply_free(c);
	if (rc != 0) {
		dynbuf_free(&out);
		*outlen = (size_t)-1;   /* the same failure whatever the split */
		return NULL;
	}
	*outlen = dynbuf_len(&out);
	return dynbuf_take(&out, NULL);
}

/* Whole events: "event: NAME\ndata: {json object}\n\n", nothing else. */
static void check_events(const char *s, size_t n)
{
	const char *end = s + n;

	while (s < end) {
		const char *nl, *dd;
		json_t *v;

		if (strncmp(s, "event: ", 7) != 0 || !(nl = memchr(s, '\n', (size_t)(end - s))))
			abort();
		s = nl + 1;
		if (strncmp(s, "data: ", 6) != 0 || !(dd = strstr(s, "\n\n")))
			abort();
		v = json_loadb(s + 6, (size_t)(dd - s - 6), 0, NULL);
		if (!json_is_object(v))
			abort();
		json_decref(v);
		s = dd + 2;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data + 1;
	size_t n = size ? size - 1 : 0;
	int mode = size ? data[0] & 7 : 0;
	api_kind k = (mode & 1) ? API_MESSAGES : API_RESPONSES;
	bool sse = mode & 2, native = mode & 4;
	size_t alen, blen;
	char *a;

	if (size == 0 || size > 64 * 1024)
		return 0;
	a = run(p, n, k, sse, native, 0, &alen);
	if (a && sse && !native)
		check_events(a, alen);
	for (int how = 1; how < 3; how++) {
		char *b = run(p, n, k, sse, native, how, &blen);

		if (alen != blen || (a && memcmp(a, b, alen) != 0))
			abort();
		free(b);
	}
	free(a);
	return 0;
}
