/*
 * http_check.c - the strict request-framing check of http_check.h.
 *
 * A byte-at-a-time state machine for the request line, header and trailer
 * lines and chunk-size lines (each line is kept up to HTTP_CHECK_LINE bytes,
 * enough for every header whose value it reads), and bulk skipping for
 * body bytes.  It decides the framing of each request the way evhttp 2.1
 * does for every request it accepts (evhttp_get_body: POST, PUT and PATCH
 * have bodies, by "chunked" or by Content-Length), so both stay in step
 * over pipelined requests; where evhttp would guess, it fails instead.
 */
#include "http_check.h"

#include <string.h>
#include <strings.h>

enum {
	S_LINE,                 /* request line */
	S_HEAD,                 /* header lines */
	S_BODY,                 /* Content-Length bytes */
	S_CHUNK_SIZE,           /* chunk-size line */
	S_CHUNK_DATA,           /* chunk bytes */
	S_CHUNK_END,            /* the CRLF after chunk bytes */
	S_TRAILER,              /* trailer lines after the last chunk */
	S_FAILED,
};

void http_check_init(http_check *c)
{
	memset(c, 0, sizeof(*c));
	c->st = S_LINE;
	c->phase = HTTP_CHECK_IDLE;
	c->cl = -1;
}

static int fail(http_check *c, int status, const char *msg)
{
	c->st = S_FAILED;
	c->phase = HTTP_CHECK_FAILED;
	c->status = status;
	c->msg = msg;
	return status;
}

static void request_done(http_check *c)
{
	c->requests++;
	c->st = S_LINE;
	c->phase = HTTP_CHECK_IDLE;
	c->cl = -1;
	c->te = 0;
	c->host = 0;
	c->body_ok = 0;
	c->remain = 0;
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return 1;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int request_line(http_check *c)
{
	size_t kept = c->len < sizeof(c->line) ? c->len : sizeof(c->line);
	const char *sp = memchr(c->line, ' ', kept);
	size_t mlen;

	/* a long target is kept only in part: spaces and the tail are
	 * counted over the whole line */
	if (kept == 0 || sp == NULL || sp == c->line || c->spaces != 2 || c->len < 12 ||
	    (memcmp(c->tail, " HTTP/1.1", 9) != 0 && memcmp(c->tail, " HTTP/1.0", 9) != 0))
		return fail(c, 400, "malformed request line");
	mlen = (size_t)(sp - c->line);
	if (mlen == 7 && memcmp(c->line, "CONNECT", 7) == 0)
		return fail(c, 405, "CONNECT is not supported: this server is not a proxy");
	c->body_ok = (mlen == 4 && memcmp(c->line, "POST", 4) == 0) ||
	    (mlen == 3 && memcmp(c->line, "PUT", 3) == 0) ||
	    (mlen == 5 && memcmp(c->line, "PATCH", 5) == 0);
	c->st = S_HEAD;
	return 0;
}

/* The head is complete: how is the body framed? */
static int head_done(http_check *c)
{
	if (c->te > 0 && c->cl >= 0)
		return fail(c, 400, "both Transfer-Encoding and Content-Length");
	if (c->te > 0) {
		if (!c->body_ok)
			return fail(c, 400, "a body is not allowed with this method");
		c->st = S_CHUNK_SIZE;
		c->phase = HTTP_CHECK_BODY;
		return 0;
	}
	if (c->cl > 0) {
		if (!c->body_ok)
			return fail(c, 400, "a body is not allowed with this method");
		c->remain = c->cl;
		c->st = S_BODY;
		c->phase = HTTP_CHECK_BODY;
		return 0;
	}
	if (c->cl < 0 && c->body_ok)
		return fail(c, 411, "Content-Length or Transfer-Encoding: chunked is required");
	request_done(c);
	return 0;
}

/* One header (or trailer) line, CRLF stripped. */
static int header_line(http_check *c, int trailer)
{
	size_t kept = c->len < sizeof(c->line) ? c->len : sizeof(c->line);
	const char *colon, *v, *end;
	size_t nlen, vlen;

	if (c->len == 0)
		return trailer ? (request_done(c), 0) : head_done(c);
	if (c->line[0] == ' ' || c->line[0] == '\t')
		return fail(c, 400, "folded header lines are not allowed");
	colon = memchr(c->line, ':', kept);
	if (colon == NULL)
		return fail(c, 400, "malformed header line");
	nlen = (size_t)(colon - c->line);
	if (nlen == 0)
		return fail(c, 400, "empty header name");
	for (size_t i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)c->line[i]))
			return fail(c, 400, "invalid character in a header name");
	v = colon + 1;
	end = c->line + kept;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	vlen = (size_t)(end - v);
	if (nlen == 14 && strncasecmp(c->line, "Content-Length", 14) == 0) {
		int64_t x = 0;

		if (trailer)
			return fail(c, 400, "Content-Length in trailers");
		if (c->len > sizeof(c->line) || vlen == 0 || vlen > 15)
			return fail(c, 400, "invalid Content-Length");
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return fail(c, 400, "invalid Content-Length");
			x = x * 10 + (v[i] - '0');
		}
		if (c->cl >= 0 && c->cl != x)
			return fail(c, 400, "two different Content-Length headers");
		c->cl = x;
	} else if (nlen == 4 && strncasecmp(c->line, "Host", 4) == 0 && !trailer) {
		if (++c->host > 1)
			return fail(c, 400, "more than one Host header");
	} else if (nlen == 17 && strncasecmp(c->line, "Transfer-Encoding", 17) == 0) {
		if (trailer)
			return fail(c, 400, "Transfer-Encoding in trailers");
		if (c->len > sizeof(c->line) || vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
			return fail(c, 400, "Transfer-Encoding must be exactly 'chunked'");
		if (++c->te > 1)
			return fail(c, 400, "more than one Transfer-Encoding header");
	}
	return 0;
}

static int chunk_size_line(http_check *c)
{
	int64_t x = 0;

	if (c->len == 0 || c->len > 15)
		return fail(c, 400, "invalid chunk size");
	for (size_t i = 0; i < c->len; i++) {
		int h = hexval((unsigned char)c->line[i]);

		if (h < 0)
			return fail(c, 400, "invalid chunk size");
		x = x * 16 + h;
	}
	if (x == 0) {
		c->st = S_TRAILER;
		return 0;
	}
	c->remain = x;
	c->st = S_CHUNK_DATA;
	return 0;
}

static int line_done(http_check *c)
{
	int rc = 0;

	switch (c->st) {
	case S_LINE:
		rc = request_line(c);
		break;
	case S_HEAD:
		rc = header_line(c, 0);
		break;
	case S_TRAILER:
		rc = header_line(c, 1);
		break;
	case S_CHUNK_SIZE:
		rc = chunk_size_line(c);
		break;
	case S_CHUNK_END:
		if (c->len != 0)
			return fail(c, 400, "chunk data longer than its size");
		c->st = S_CHUNK_SIZE;
		break;
	}
	c->len = 0;
	c->spaces = 0;
	return rc;
}

int http_check_feed(http_check *c, const char *p, size_t n, size_t *consumed)
{
	size_t i = 0;
	int rc = 0;

	while (i < n && rc == 0) {
		unsigned char ch;

		if (c->st == S_FAILED) {
			rc = c->status;
			break;
		}
		if (c->st == S_BODY || c->st == S_CHUNK_DATA) {
			size_t take = n - i;

			if ((int64_t)take > c->remain)
				take = (size_t)c->remain;
			c->remain -= (int64_t)take;
			i += take;
			if (c->remain == 0) {
				if (c->st == S_BODY)
					request_done(c);
				else
					c->st = S_CHUNK_END;
			}
			continue;
		}
		ch = (unsigned char)p[i++];
		if (c->st == S_LINE)
			c->phase = HTTP_CHECK_HEAD;
		if (c->cr && ch != '\n') {
			rc = fail(c, 400, "bare CR in the request head");
			break;
		}
		if (ch == '\r') {
			c->cr = 1;
			continue;
		}
		if (ch == '\n') {
			c->cr = 0;
			rc = line_done(c);
			continue;
		}
		if (ch == '\0') {
			rc = fail(c, 400, "NUL byte in the request head");
			break;
		}
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			rc = fail(c, 400, "control character in the request head");
			break;
		}
		if (c->len < sizeof(c->line))
			c->line[c->len] = (char)ch;
		if (ch == ' ')
			c->spaces++;
		memmove(c->tail, c->tail + 1, sizeof(c->tail) - 1);
		c->tail[sizeof(c->tail) - 1] = (char)ch;
		if (c->len < (size_t)1 << 40)
			c->len++;
	}
	if (c->st == S_FAILED && rc == 0)
		rc = c->status;
	if (consumed != NULL)
		*consumed = i;
	return rc;
}
