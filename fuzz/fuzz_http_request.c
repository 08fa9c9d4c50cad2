/*
 * fuzz_http_request.c - libFuzzer harness for the request path of the HTTP
 * server (src/lib/http_server.c): raw bytes from a client, as they would
 * arrive on a connection.
 *
 * Two parts, on every input:
 *   1. The strict framing check (http_check.h) must survive any bytes and
 *      give the same verdict (status, complete requests) whether the input
 *      comes whole, in two pieces split at data[0] % size, or byte by byte.
 *   2. The same bytes go over loopback to a real http_server (started once,
 *      one thread, routes that echo the body length): libevent's evhttp
 *      parser behind the server's own checks.  Every reply must have a
 *      well-formed HTTP/1.x status line, every error reply must carry the
 *      JSON error shape, and the server must never answer more requests
 *      successfully than the checker saw complete: a request evhttp would
 *      parse out of bytes the checker counted as something else (request
 *      smuggling) aborts.
 * abort() marks a finding.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "http_check.h"
#include "http_server.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this skip the server part (the checker sees all). */
#define FUZZ_NET_MAX 16384

static http_server *srv;
static int srv_port;

static void h_echo(http_req *r, void *arg)
{
	size_t n;

	(void)arg;
	(void)http_req_body(r, &n);
	http_reply_json(r, 200, json_pack("{s:I}", "len", (json_int_t)n));
}

static void server_once(void)
{
	http_server_opts o = { .listen = "127.0.0.1:0", .threads = 1, .max_body = 65536,
	    .max_headers = 8192, .quiet = true, .header_timeout_s = 2, .body_timeout_s = 2 };

	if (srv != NULL)
		return;
	log_init();
	log_set_level(LOG_OFF);
	if (http_server_new(&srv, &o) != 0 ||
	    http_server_route(srv, "*", "/", h_echo, NULL) != 0 ||
	    http_server_route(srv, "*", "/{a}", h_echo, NULL) != 0 ||
	    http_server_route(srv, "*", "/{a}/{b}", h_echo, NULL) != 0 ||
	    http_server_start(srv) != 0)
		abort();
	srv_port = http_server_port(srv);
}

static void check_same(const http_check *a, const http_check *b, int sa, int sb)
{
	if (sa != sb || a->requests != b->requests || a->phase != b->phase)
		abort();
}

static int check_all(http_check *c, const char *p, size_t n, int how)
{
	int st = 0;

	http_check_init(c);
	if (how == 0) {
		size_t used = 0;

		st = http_check_feed(c, p, n, &used);
		if (used > n || (st == 0 && used != n))
			abort();
	} else if (how == 1) {
		size_t cut = n ? (unsigned char)p[0] % n : 0;

		st = http_check_feed(c, p, cut, NULL);
		if (st == 0)
			st = http_check_feed(c, p + cut, n - cut, NULL);
	} else {
		for (size_t i = 0; i < n && st == 0; i++)
			st = http_check_feed(c, p + i, 1, NULL);
	}
	if (st != 0 && st != 400 && st != 405 && st != 411)
		abort();
	if (st != 0 && (c->msg == NULL || c->phase != HTTP_CHECK_FAILED))
		abort();
	return st;
}

/* Send the bytes, half-close, read the whole answer (bounded). */
static size_t exchange(const uint8_t *data, size_t size, char *out, size_t outlen)
{
	struct sockaddr_in a;
	struct timeval tv = { 3, 0 };
	struct linger lg = { 1, 0 };
	size_t got = 0, sent = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		abort();
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)srv_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* no TIME_WAIT left behind: millions of runs would use up the ports */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return (size_t)-1;      /* out of local ports: skip this run */
	}
	while (sent < size) {
		ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);

		if (n <= 0)
			break;  /* the server may close early (an error answered) */
		sent += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	while (got + 1 < outlen) {
		ssize_t n = recv(fd, out + got, outlen - 1 - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	out[got] = '\0';
	close(fd);
	return got;
}

/* Walk the replies: well-formed, JSON errors; count the 2xx ones. */
static unsigned replies_ok(const char *p, size_t n)
{
	unsigned ok = 0;
	const char *end = p + n;

	while (p < end) {
		const char *head_end = strstr(p, "\r\n\r\n");
		const char *cl;
		long status, len = 0;
		char *e;

		if (head_end == NULL || strncmp(p, "HTTP/1.", 7) != 0 ||
		    (p[7] != '0' && p[7] != '1') || p[8] != ' ')
			abort();
		status = strtol(p + 9, &e, 10);
		if (e != p + 12 || status < 100 || status > 599)
			abort();
		cl = memmem(p, (size_t)(head_end - p), "\r\nContent-Length: ", 18);
		head_end += 4;
		if (cl != NULL) {
			len = strtol(cl + 18, NULL, 10);
		} else if (status >= 200 && status != 204 && status != 304) {
			/* chunked, or to EOF (HTTP/1.0): the last reply */
			return ok + (status < 300);
		}
		/* a HEAD reply has a Content-Length but no body */
		if (strncmp(head_end, "HTTP/1.", 7) == 0 && (head_end + len >= end ||
		    strncmp(head_end + len, "HTTP/1.", 7) != 0))
			len = 0;
		if (len < 0 || head_end + len > end)
			return ok;      /* cut short: a HEAD reply or an early close */
		if (status >= 400 && len > 0) {
			json_t *j = json_loadb(head_end, (size_t)len, 0, NULL);

			if (j == NULL || !json_is_object(json_object_get(j, "error")))
				abort();
			json_decref(j);
		}
		if (status >= 200 && status < 300)
			ok++;
		p = head_end + len;
	}
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char reply[1 << 18];
	http_check a, b, c;
	int sa, sb, sc;
	size_t n;

	sa = check_all(&a, (const char *)data, size, 0);
	sb = check_all(&b, (const char *)data, size, 1);
	sc = check_all(&c, (const char *)data, size, 2);
	check_same(&a, &b, sa, sb);
	check_same(&a, &c, sa, sc);
	if (size == 0 || size > FUZZ_NET_MAX)
		return 0;
	server_once();
	n = exchange(data, size, reply, sizeof(reply));
	if (n == (size_t)-1)
		return 0;
	if (getenv("FUZZ_HTTP_VERBOSE") != NULL)
		fprintf(stderr, "check %d (%s), %llu complete; server:\n%s\n---\n", sa,
		    a.msg != NULL ? a.msg : "ok", (unsigned long long)a.requests, reply);
	if (replies_ok(reply, n) > a.requests)
		abort();
	return 0;
}
