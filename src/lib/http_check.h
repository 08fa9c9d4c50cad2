/*
 * http_check.h - a strict, incremental check of HTTP/1.1 request framing,
 * run over the raw bytes of a connection before libevent's evhttp parses
 * them (http_server.c).
 *
 * evhttp is lenient where a proxy in front of the server may read the same
 * bytes differently (request smuggling): it takes the first of two
 * different Content-Length headers, reads a body with "Transfer-Encoding:
 * chunked, identity" by Content-Length, unfolds obsolete folded header
 * lines, keeps NUL bytes in header values, ignores the body of a GET (and
 * then parses it as the next request), and answers a bad chunk size 413.
 * This checker follows the same framing as evhttp for every request it
 * lets through, and stops at the first request that is ambiguous:
 *   - 400: a request line other than METHOD SP target SP HTTP/1.0 or
 *     HTTP/1.1; a NUL byte or a bare CR in the request line or a header; an
 *     empty or non-token header name, or a line without ':'; a folded
 *     header line; two Content-Length headers with different values, or
 *     one that is not plain digits; a Transfer-Encoding other than exactly
 *     "chunked" (once), or together with Content-Length; a body (or
 *     Transfer-Encoding) on a method evhttp reads no body for; a chunk
 *     size that is not plain hex digits, or chunk data not followed by
 *     CRLF; Content-Length or Transfer-Encoding in trailers; more than
 *     one Host header.
 *   - 405: CONNECT (this server is no proxy).
 * Limits on sizes (headers, body) are left to evhttp.
 *
 * Pipelined requests are followed one after the other.  The phase
 * (between requests, in the head, in the body) drives the server's
 * deadlines.  Pure functions on caller-owned state; no allocation; not
 * thread-safe per object (one per connection).
 */
#ifndef TROOP_HTTP_CHECK_H
#define TROOP_HTTP_CHECK_H

#include <stddef.h>
#include <stdint.h>

enum http_check_phase {
	HTTP_CHECK_IDLE,        /* between requests, nothing of the next one seen */
	HTTP_CHECK_HEAD,        /* request line or headers under way */
	HTTP_CHECK_BODY,        /* body (or chunked trailers) under way */
	HTTP_CHECK_FAILED,      /* stopped at an error */
};

#define HTTP_CHECK_LINE 256     /* bytes of each line kept for inspection */

typedef struct {
	int st;                 /* internal state */
	int phase;              /* enum http_check_phase */
	int status;             /* 0, or the HTTP status of the error */
	const char *msg;        /* static message of the error, or NULL */
	uint64_t requests;      /* complete requests seen */
	char line[HTTP_CHECK_LINE];
	size_t len;             /* bytes of the current line (may exceed line[]) */
	int64_t remain;         /* body bytes still to come (Content-Length, chunk) */
	int64_t cl;             /* Content-Length, -1 if none */
	int te;                 /* Transfer-Encoding headers seen */
	int host;               /* Host headers seen */
	int body_ok;            /* the method may have a body (POST, PUT, PATCH) */
	int cr;                 /* the previous byte was CR */
	int spaces;             /* spaces in the current line */
	char tail[9];           /* its last 9 bytes (" HTTP/1.1") */
} http_check;

/* Start a connection (or restart after an error). */
void http_check_init(http_check *c);

/* Feed the next `n` bytes the client sent.  Returns 0 while the bytes so
 * far are well framed, else the HTTP status of the first error (400 or
 * 405; then c->msg says why and further input is ignored).  *consumed, if
 * not NULL, gets the bytes taken before the error (n when there is none). */
int http_check_feed(http_check *c, const char *p, size_t n, size_t *consumed);

#endif
