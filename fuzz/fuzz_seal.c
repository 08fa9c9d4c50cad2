/*
 * fuzz_seal.c - libFuzzer harness for what a sealed job reads from the
 * network (src/lib/seal.c): the response stream reader (bytes from the
 * worker), the request opener and the X-Troop-Seal header parser (bytes
 * from the client), and the key statement check (from the coordinator).
 * The stream is read and written in all three reply suites (secretstream,
 * a256gcm and a256gcm2).  Besides surviving any input, the reader must pass on the same chunks
 * and end with the same result whether the input comes whole or in
 * pieces cut at data[0]; and the first part of the input is also sealed
 * and read back, which must round-trip exactly.  abort() otherwise.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
	uint8_t buf[1 << 16];
	size_t len;
};

static int on_chunk(void *arg, const uint8_t *p, size_t n)
{
	struct trace *t = arg;

	if (t->len + n > sizeof(t->buf))
		n = sizeof(t->buf) - t->len;
	memcpy(t->buf + t->len, p, n);
	t->len += n;
	return 0;
}

static int read_stream(const seal_job *j, const uint8_t *d, size_t n, size_t step,
    struct trace *t)
{
	seal_reader r;
	int rc = 0;

	t->len = 0;
	seal_reader_init(&r, j, on_chunk, t);
	for (size_t at = 0; at < n && rc == 0; at += step)
		rc = seal_reader_feed(&r, d + at, n - at < step ? n - at : step);
	if (rc == 0)
		rc = seal_reader_finish(&r);
	seal_reader_free(&r);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static seal_keypair kp;
	static seal_job job;
	static int ready;
	static struct trace a, b;
	char text[512];
	uint8_t epk[SEAL_PK_LEN], key[SEAL_PK_LEN];
	dynbuf out, back;

	if (!ready) {
		if (sodium_init() < 0 || seal_keypair_generate(&kp, 1800000000, 3600) != 0 ||
		    seal_client_begin(&job, kp.pk) != 0)
			abort();
		strcpy(job.jti, "jti");   /* what the request below binds too */
		ready = 1;
	}
	/* the stream reader: whole, and in pieces, in every suite */
	for (int suite = SEAL_REPLY_SS; suite <= SEAL_REPLY_GCM2; suite++) {
		size_t step = size ? (size_t)data[0] % 64 + 1 : 1;
		job.reply = (uint8_t)suite;
		int r1 = read_stream(&job, data, size, size ? size : 1, &a);
		int r2 = read_stream(&job, data, size, step, &b);
		if (r1 != r2 || a.len != b.len || memcmp(a.buf, b.buf, a.len) != 0)
			abort();
	}
	/* the header parser and the key statement, as text */
	{
		size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
		memcpy(text, data, n);
		text[n] = '\0';
		(void)seal_header_parse(epk, key, NULL, text);
		(void)seal_statement_verify(key, NULL, text,
		    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1800000000);
	}
	/* the request opener, then a round trip of the input */
	dynbuf_init(&out, 1 << 20);
	dynbuf_init(&back, 1 << 20);
	(void)seal_request_open(&out, &job, "jti", "node", data, size);
	dynbuf_reset(&out);
	if (seal_request_seal(&out, &job, "jti", "node", data, size) != 0 ||
	    seal_request_open(&back, &job, "jti", "node", out.buf, out.len) != 0 ||
	    back.len != size || (size && memcmp(back.buf, data, size) != 0))
		abort();
	/* and a stream of the input cut into chunks, read back (the suite
	 * picked by the input) */
	{
		seal_writer w;
		job.reply = (uint8_t)(size ? data[size - 1] % 3 : SEAL_REPLY_SS);
		size_t step = size ? (size_t)data[0] % 97 + 1 : 1;
		dynbuf_reset(&out);
		if (seal_writer_begin(&w, &out, &job) != 0)
			abort();
		for (size_t at = 0; at < size; at += step)
			if (seal_writer_push(&w, &out, data + at, size - at < step ? size - at : step,
			    false) != 0)
				abort();
		int pushed = seal_writer_push(&w, &out, NULL, 0, true);
		seal_writer_free(&w);
		if (pushed != 0 ||
		    read_stream(&job, (const uint8_t *)out.buf, out.len, 13, &a) != 0 ||
		    a.len != (size < sizeof(a.buf) ? size : sizeof(a.buf)) ||
		    memcmp(a.buf, data, a.len) != 0)
			abort();
	}
	dynbuf_free(&out);
	dynbuf_free(&back);
	return 0;
}
