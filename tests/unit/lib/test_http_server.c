/*
 * test_http_server.c - the HTTP server (src/lib/http_server.c) against a
 * small raw-socket HTTP/1.1 client on 127.0.0.1, port 0.
 *
 * Each test starts its own server, runs http_server_run on a helper
 * thread and stops it with http_server_stop, so every test also exercises
 * shutdown.  Handlers that answer later use timers on http_req_base; the
 * client and the handlers synchronise through a mutex/condition pair, never
 * through sleeps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "error.h"
#include "http_server.h"
#include "log.h"

/* ---- synchronisation between client (test thread) and handlers -------- */

static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cv = PTHREAD_COND_INITIALIZER;

static void sync_add(atomic_int *v, int n)
{
	pthread_mutex_lock(&sync_mu);
	atomic_fetch_add(v, n);
	pthread_cond_broadcast(&sync_cv);
	pthread_mutex_unlock(&sync_mu);
}

/* Wait until *v >= want (5 s at most).  Returns whether it got there. */
static bool sync_wait(atomic_int *v, int want)
{
	struct timespec dl;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	pthread_mutex_lock(&sync_mu);
	while (atomic_load(v) < want)
		if (pthread_cond_timedwait(&sync_cv, &sync_mu, &dl) != 0)
			break;
	ok = atomic_load(v) >= want;
	pthread_mutex_unlock(&sync_mu);
	return ok;
}

/* ---- a raw HTTP/1.1 client ------------------------------------------------- */

struct cli {
	int fd;
	size_t len;
	char buf[1 << 18];
};

struct resp {
	int status;
	char head[16384];
	char *body;
	size_t body_len;
};

static void cli_timeout(int fd, int secs)
{
	struct timeval tv = { secs, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static struct cli *cli_open(int port)
{
	struct cli *c = calloc(1, sizeof(*c));
	struct sockaddr_in a;

	assert_non_null(c);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	cli_timeout(c->fd, 5);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return c;
}

static void cli_close(struct cli *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c);
}

static int cli_send(struct cli *c, const void *p, size_t n)
{
	const char *b = p;

	while (n > 0) {
		ssize_t k = send(c->fd, b, n, MSG_NOSIGNAL);

		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

static int cli_sendf(struct cli *c, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	return cli_send(c, buf, (size_t)n);
}

/* Read more bytes: >0 read, 0 EOF, -1 error or timeout. */
static int cli_fill(struct cli *c)
{
	ssize_t n;

	if (c->len == sizeof(c->buf))
		return -1;
	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n > 0)
		c->len += (size_t)n;
	return n > 0 ? 1 : (n == 0 ? 0 : -1);
}

static void cli_consume(struct cli *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

static bool cli_need(struct cli *c, size_t n)
{
	while (c->len < n)
		if (cli_fill(c) <= 0)
			return false;
	return true;
}

/* Index just past the first "\r\n" (or "\r\n\r\n"), reading as needed. */
static long cli_find(struct cli *c, const char *delim)
{
	size_t dl = strlen(delim);

	for (;;) {
		char *p = memmem(c->buf, c->len, delim, dl);

		if (p != NULL)
			return (long)(p - c->buf) + (long)dl;
		if (cli_fill(c) <= 0)
			return -1;
	}
}

static const char *hdr(const struct resp *r, const char *name)
{
	static char val[1024];
	char pat[128];
	const char *p, *e;
	size_t n;

	snprintf(pat, sizeof(pat), "\r\n%s:", name);
	p = strcasestr(r->head, pat);
	if (p == NULL)
		return NULL;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	e = strstr(p, "\r\n");
	n = e != NULL ? (size_t)(e - p) : strlen(p);
	if (n >= sizeof(val))
		n = sizeof(val) - 1;
	memcpy(val, p, n);
	val[n] = '\0';
	return val;
}

static void body_add(struct resp *r, const char *p, size_t n)
{
	r->body = realloc(r->body, r->body_len + n + 1);
	assert_non_null(r->body);
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
}

/* One chunk of a chunked body into r (appended); returns its size, 0 for
 * the last chunk, -1 on error. */
static long cli_chunk(struct cli *c, struct resp *r)
{
	long e = cli_find(c, "\r\n");
	long size;

	if (e < 0)
		return -1;
	size = strtol(c->buf, NULL, 16);
	cli_consume(c, (size_t)e);
	if (size == 0) {
		e = cli_find(c, "\r\n");
		if (e < 0)
			return -1;
		cli_consume(c, (size_t)e);
		return 0;
	}
	if (!cli_need(c, (size_t)size + 2))
		return -1;
	body_add(r, c->buf, (size_t)size);
	cli_consume(c, (size_t)size + 2);
	return size;
}

/* Status line and headers into r.  Returns 0, or -1 (EOF/timeout). */
static int cli_head(struct cli *c, struct resp *r)
{
	long e;

	memset(r, 0, sizeof(*r));
	e = cli_find(c, "\r\n\r\n");
	if (e < 0 || (size_t)e >= sizeof(r->head))
		return -1;
	memcpy(r->head, c->buf, (size_t)e);
	r->head[e] = '\0';
	cli_consume(c, (size_t)e);
	if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
		return -1;
	return 0;
}

static int cli_response(struct cli *c, struct resp *r, bool head_only)
{
	const char *v;

	if (cli_head(c, r) != 0)
		return -1;
	body_add(r, "", 0);
	if (head_only)
		return 0;
	v = hdr(r, "Transfer-Encoding");
	if (v != NULL && strcasecmp(v, "chunked") == 0) {
		long n;

		while ((n = cli_chunk(c, r)) > 0)
			;
		return n == 0 ? 0 : -1;
	}
	v = hdr(r, "Content-Length");
	if (v != NULL) {
		size_t n = strtoul(v, NULL, 10);

		if (!cli_need(c, n))
			return -1;
		body_add(r, c->buf, n);
		cli_consume(c, n);
		return 0;
	}
	while (cli_fill(c) > 0)
		;
	body_add(r, c->buf, c->len);
	cli_consume(c, c->len);
	return 0;
}

static void resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* One request on a fresh connection. */
static int do_request(int port, const char *raw, size_t rawlen, struct resp *r)
{
	struct cli *c = cli_open(port);
	int rc = -1;

	if (cli_send(c, raw, rawlen) == 0)
		rc = cli_response(c, r, false);
	else
		memset(r, 0, sizeof(*r));
	cli_close(c);
	return rc;
}

static int do_get(int port, const char *path, struct resp *r)
{
	char raw[2048];

	snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
	return do_request(port, raw, strlen(raw), r);
}

/* The JSON error shape with this code. */
static void assert_error_shape(const struct resp *r, const char *code)
{
	json_error_t jerr;
	json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);
	json_t *e;

	assert_non_null(j);
	e = json_object_get(j, "error");
	assert_true(json_is_object(e));
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_true(json_string_length(json_object_get(e, "message")) > 0);
	assert_true(json_is_string(json_object_get(e, "type")));
	assert_string_equal(json_string_value(json_object_get(e, "code")), code);
	assert_non_null(hdr(r, "Content-Type"));
	assert_non_null(strstr(hdr(r, "Content-Type"), "application/json"));
	json_decref(j);
}

static json_t *body_json(const struct resp *r)
{
	json_error_t jerr;
	json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);

	assert_non_null(j);
	return j;
}

static void assert_hello_ok(int port)
{
	struct resp r;
	json_t *j;

	assert_int_equal(do_get(port, "/hello", &r), 0);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "hello")), "world");
	json_decref(j);
	resp_free(&r);
}

/* ---- handlers ----------------------------------------------------------------- */

static void h_hello(http_req *r, void *arg)
{
	http_req_set_account(r, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
	http_reply_json(r, 200, json_pack("{s:s,s:s,s:i}", "hello", "world",
	    "peer", http_req_peer(r), "thread", http_req_thread_index(r)));
}

static void h_balance(http_req *r, void *arg)
{
	http_reply_json(r, 200, json_pack("{s:s,s:s}", "account", http_req_param(r, "account"),
	    "route", "balance"));
}

static void h_model(http_req *r, void *arg)
{
	http_reply_json(r, 200, json_pack("{s:s,s:s}", "id", http_req_param(r, "id"),
	    "route", "model"));
}

static void h_model_exact(http_req *r, void *arg)
{
	http_reply_json(r, 200, json_pack("{s:s}", "route", "exact"));
}

static void h_query(http_req *r, void *arg)
{
	const char *m = http_req_query_param(r, "model");
	const char *x = http_req_query_param(r, "x");
	const char *ua = http_req_header(r, "x-test-header");

	http_reply_json(r, 200, json_pack("{s:s?,s:s?,s:s,s:s,s:s?}", "model", m, "x", x,
	    "raw", http_req_query(r), "path", http_req_path(r), "hdr", ua));
}

static void h_query_int(http_req *r, void *arg)
{
	int64_t v;

	if (http_req_query_int(r, "n", 7, -5, 100, &v) != 0) {
		http_reply_error(r, TROOP_EINVAL, "%s", troop_error_msg());
		return;
	}
	http_reply_json(r, 200, json_pack("{s:I}", "n", (json_int_t)v));
}

static void h_echo(http_req *r, void *arg)
{
	size_t len;
	const char *body = http_req_body(r, &len);
	json_error_t jerr;
	json_t *j;

	assert_int_equal(body[len], '\0');
	j = json_loadb(body, len, 0, &jerr);
	if (j == NULL) {
		http_reply_error(r, TROOP_EINVAL, "body is not valid JSON: %s", jerr.text);
		return;
	}
	http_reply_json(r, 200, json_pack("{s:o,s:I}", "got", j, "len", (json_int_t)len));
}

/* streaming: chunk 0 at once, the rest on a timer, but only once the
 * client has seen chunk 0 (or after a bound, which then fails the test) */
#define STREAM_CHUNKS 5
static atomic_int stream_client_got_first;
static atomic_int stream_last_before_first;
static atomic_int stream_done;

struct stream_st {
	http_req *r;
	struct event *tm;
	int sent;
	int waited;
};

static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
	struct stream_st *st = arg;
	struct timeval tv = { 0, 2000 };
	char chunk[32];

	if (st->sent == 1 && !atomic_load(&stream_client_got_first) && st->waited++ < 2500) {
		evtimer_add(st->tm, &tv);
		return;
	}
	snprintf(chunk, sizeof(chunk), "chunk-%d\n", st->sent);
	assert_int_equal(http_stream_write(st->r, chunk, strlen(chunk)), 0);
	if (++st->sent < STREAM_CHUNKS) {
		evtimer_add(st->tm, &tv);
		return;
	}
	atomic_store(&stream_last_before_first, !atomic_load(&stream_client_got_first));
	http_stream_end(st->r);
	event_free(st->tm);
	free(st);
	sync_add(&stream_done, 1);
}

static void h_stream(http_req *r, void *arg)
{
	struct stream_st *st = calloc(1, sizeof(*st));
	struct timeval tv = { 0, 2000 };

	assert_non_null(st);
	st->r = r;
	st->tm = evtimer_new(http_req_base(r), stream_tick, st);
	http_stream_begin(r, 200, "text/plain");
	assert_int_equal(http_stream_write(r, "chunk-0\n", 8), 0);
	st->sent = 1;
	evtimer_add(st->tm, &tv);
}

/* streams until the client goes away */
static atomic_int forever_closed;
static atomic_int forever_started;
static atomic_int drain_calls;

static void forever_tick(evutil_socket_t fd, short what, void *arg)
{
	struct stream_st *st = arg;
	struct timeval tv = { 0, 2000 };

	(void)http_stream_write(st->r, "data: x\n\n", 9);
	evtimer_add(st->tm, &tv);
}

static void forever_closed_cb(http_req *r, void *arg)
{
	struct stream_st *st = arg;

	assert_ptr_equal(st->r, r);
	assert_int_equal(http_stream_write(r, "x", 1), TROOP_EIO);
	event_free(st->tm);
	free(st);
	sync_add(&forever_closed, 1);
}

static void forever_drained(http_req *r, void *arg)
{
	sync_add(&drain_calls, 1);
}

static void h_forever(http_req *r, void *arg)
{
	struct stream_st *st = calloc(1, sizeof(*st));
	struct timeval tv = { 0, 2000 };

	assert_non_null(st);
	st->r = r;
	st->tm = evtimer_new(http_req_base(r), forever_tick, st);
	http_req_on_close(r, forever_closed_cb, st);
	http_stream_begin(r, 200, "text/event-stream");
	assert_int_equal(http_stream_write(r, "data: first\n\n", 13), 0);
	http_stream_on_drain(r, forever_drained, NULL);
	evtimer_add(st->tm, &tv);
	sync_add(&forever_started, 1);
}

/* backpressure: queue > 1 MiB at once, finish once it has drained */
#define BP_CHUNK (64 * 1024)
#define BP_CHUNKS 32
static atomic_int bp_drained;
static size_t bp_pending_before;

static void bp_drained_cb(http_req *r, void *arg)
{
	assert_true(http_stream_pending(r) <= 16 * 1024);
	assert_int_equal(http_stream_write(r, "END", 3), 0);
	http_stream_end(r);
	sync_add(&bp_drained, 1);
}

static void h_bigstream(http_req *r, void *arg)
{
	char *chunk = malloc(BP_CHUNK);

	assert_non_null(chunk);
	memset(chunk, 'z', BP_CHUNK);
	http_stream_begin(r, 200, "application/octet-stream");
	for (int i = 0; i < BP_CHUNKS; i++)
		assert_int_equal(http_stream_write(r, chunk, BP_CHUNK), 0);
	free(chunk);
	bp_pending_before = http_stream_pending(r);
	http_stream_on_drain(r, bp_drained_cb, NULL);
}

/* never answers; only notices the client leaving */
static atomic_int hang_got;
static atomic_int hang_closed;

static void hang_closed_cb(http_req *r, void *arg)
{
	sync_add(&hang_closed, 1);
}

static void h_hang(http_req *r, void *arg)
{
	http_req_on_close(r, hang_closed_cb, NULL);
	sync_add(&hang_got, 1);
}

/* answers only once told to, possibly after its client left */
static atomic_int late_got;
static atomic_int late_go;
static atomic_int late_done;

static void late_tick(evutil_socket_t fd, short what, void *arg)
{
	struct stream_st *st = arg;
	struct timeval tv = { 0, 2000 };

	if (!atomic_load(&late_go) && st->waited++ < 2500) {
		evtimer_add(st->tm, &tv);
		return;
	}
	http_reply_json(st->r, 200, json_pack("{s:b}", "late", 1));
	event_free(st->tm);
	free(st);
	sync_add(&late_done, 1);
}

static void h_late(http_req *r, void *arg)
{
	struct stream_st *st = calloc(1, sizeof(*st));
	struct timeval tv = { 0, 2000 };

	assert_non_null(st);
	st->r = r;
	st->tm = evtimer_new(http_req_base(r), late_tick, st);
	evtimer_add(st->tm, &tv);
	sync_add(&late_got, 1);
}

static void h_thread_ctx(http_req *r, void *arg)
{
	int *ctx = http_req_thread_ctx(r);

	assert_non_null(ctx);
	assert_int_equal(*ctx, http_req_thread_index(r));
	http_reply_json(r, 200, json_pack("{s:i}", "ctx", *ctx));
}

/* ---- server fixture ------------------------------------------------------------- */

struct fx {
	http_server *s;
	pthread_t runner;
	int port;
	int run_rc;
};

static void *fx_run(void *arg)
{
	struct fx *f = arg;

	f->run_rc = http_server_run(f->s, 500);
	return NULL;
}

static void fx_routes(http_server *s)
{
	assert_int_equal(http_server_route(s, "GET", "/hello", h_hello, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/users/{account}/balance", h_balance, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/v1/models/{id}", h_model, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/v1/models/special", h_model_exact, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/q", h_query, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/qi", h_query_int, NULL), 0);
	assert_int_equal(http_server_route(s, "POST", "/echo", h_echo, NULL), 0);
	assert_int_equal(http_server_route(s, "PUT", "/echo", h_echo, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/stream", h_stream, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/forever", h_forever, NULL), 0);
	assert_int_equal(http_server_route(s, "*", "/hang", h_hang, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/big", h_bigstream, NULL), 0);
	assert_int_equal(http_server_route(s, "GET", "/late", h_late, NULL), 0);
}

static void fx_start_opts(struct fx *f, http_server_opts *o)
{
	memset(f, 0, sizeof(*f));
	if (o->listen == NULL)
		o->listen = "127.0.0.1:0";
	o->quiet = getenv("TEST_VERBOSE") == NULL;
	assert_int_equal(http_server_new(&f->s, o), 0);
	fx_routes(f->s);
	assert_int_equal(http_server_start(f->s), 0);
	f->port = http_server_port(f->s);
	assert_true(f->port > 0);
	assert_int_equal(pthread_create(&f->runner, NULL, fx_run, f), 0);
}

static void fx_start(struct fx *f, int threads)
{
	http_server_opts o = { .threads = threads };

	fx_start_opts(f, &o);
}

static void fx_stop(struct fx *f)
{
	http_server_stop(f->s);
	pthread_join(f->runner, NULL);
	assert_int_equal(f->run_rc, 0);
	assert_int_equal(http_server_inflight(f->s), 0);
	http_server_free(f->s);
	f->s = NULL;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_get_json(void **state)
{
	struct fx f;
	struct resp r;
	json_t *j;

	fx_start(&f, 1);
	assert_int_equal(do_get(f.port, "/hello", &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(hdr(&r, "Content-Type"), "application/json");
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "hello")), "world");
	assert_string_equal(json_string_value(json_object_get(j, "peer")), "127.0.0.1");
	json_decref(j);
	resp_free(&r);
	fx_stop(&f);
}

static void test_path_params(void **state)
{
	struct fx f;
	struct resp r;
	json_t *j;

	fx_start(&f, 1);
	assert_int_equal(do_get(f.port, "/users/Abc-_123/balance", &r), 0);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "account")), "Abc-_123");
	json_decref(j);
	resp_free(&r);

	/* percent-decoded parameter */
	assert_int_equal(do_get(f.port, "/v1/models/llama3%3A8b", &r), 0);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "llama3:8b");
	assert_string_equal(json_string_value(json_object_get(j, "route")), "model");
	json_decref(j);
	resp_free(&r);

	/* an exact route wins over a pattern */
	assert_int_equal(do_get(f.port, "/v1/models/special", &r), 0);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "route")), "exact");
	json_decref(j);
	resp_free(&r);

	/* a parameter never matches an empty segment */
	assert_int_equal(do_get(f.port, "/users//balance", &r), 0);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	fx_stop(&f);
}

static void test_query_params(void **state)
{
	struct fx f;
	struct resp r;
	json_t *j;
	const char *raw = "GET /q?model=llama3%3A8b&x=a+b%20c HTTP/1.1\r\nHost: t\r\n"
	    "X-Test-Header: hv\r\n\r\n";

	fx_start(&f, 1);
	assert_int_equal(do_request(f.port, raw, strlen(raw), &r), 0);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "model")), "llama3:8b");
	assert_string_equal(json_string_value(json_object_get(j, "x")), "a b c");
	assert_string_equal(json_string_value(json_object_get(j, "raw")), "model=llama3%3A8b&x=a+b%20c");
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/q");
	assert_string_equal(json_string_value(json_object_get(j, "hdr")), "hv");
	json_decref(j);
	resp_free(&r);

	assert_int_equal(do_get(f.port, "/q", &r), 0);
	j = body_json(&r);
	assert_true(json_is_null(json_object_get(j, "model")) || json_object_get(j, "model") == NULL);
	assert_string_equal(json_string_value(json_object_get(j, "raw")), "");
	json_decref(j);
	resp_free(&r);
	fx_stop(&f);
}

static void test_not_found_and_method(void **state)
{
	struct fx f;
	struct resp r;
	const char *del = "DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n";
	const char *post = "POST /users/me/balance HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
	const char *brew = "BREW /hello HTTP/1.1\r\nHost: t\r\n\r\n";

	fx_start(&f, 1);
	assert_int_equal(do_get(f.port, "/nope", &r), 0);
	assert_int_equal(r.status, 404);
	assert_error_shape(&r, "not_found");
	resp_free(&r);

	assert_int_equal(do_request(f.port, del, strlen(del), &r), 0);
	assert_int_equal(r.status, 405);
	assert_error_shape(&r, "method_not_allowed");
	assert_non_null(hdr(&r, "Allow"));
	assert_string_equal(hdr(&r, "Allow"), "GET");
	resp_free(&r);

	assert_int_equal(do_request(f.port, post, strlen(post), &r), 0);
	assert_int_equal(r.status, 405);
	assert_error_shape(&r, "method_not_allowed");
	resp_free(&r);

	/* an unknown method is answered in the same shape */
	assert_int_equal(do_request(f.port, brew, strlen(brew), &r), 0);
	assert_true(r.status == 405 || r.status == 501);
	assert_error_shape(&r, "method_not_allowed");
	resp_free(&r);
	assert_hello_ok(f.port);
	fx_stop(&f);
}

static void test_keepalive_and_head(void **state)
{
	struct fx f;
	struct resp r;
	struct cli *c;

	fx_start(&f, 1);
	c = cli_open(f.port);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(cli_sendf(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
		assert_int_equal(cli_response(c, &r, false), 0);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}
	/* HEAD is served by the GET route, without a body: the next response
	 * on the connection must parse */
	assert_int_equal(cli_sendf(c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c, &r, true), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	/* two pipelined requests */
	assert_int_equal(cli_sendf(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
	    "GET /users/x/balance HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "world"));
	resp_free(&r);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "balance"));
	resp_free(&r);
	cli_close(c);
	fx_stop(&f);
}

static void test_body_too_large(void **state)
{
	http_server_opts o = { .threads = 1, .max_body = 1024 };
	struct fx f;
	struct resp r;
	struct cli *c;
	char *big = malloc(2048);

	assert_non_null(big);
	memset(big, 'a', 2048);
	fx_start_opts(&f, &o);

	/* Content-Length over the limit */
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n"), 0);
	(void)cli_send(c, big, 2048);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 413);
	assert_error_shape(&r, "too_large");
	resp_free(&r);
	cli_close(c);
	assert_hello_ok(f.port);

	/* chunked, each chunk small, the sum over the limit */
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"), 0);
	for (int i = 0; i < 4; i++) {
		(void)cli_sendf(c, "200\r\n");
		(void)cli_send(c, big, 512);
		(void)cli_sendf(c, "\r\n");
	}
	(void)cli_sendf(c, "0\r\n\r\n");
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 413);
	assert_error_shape(&r, "too_large");
	resp_free(&r);
	cli_close(c);
	assert_hello_ok(f.port);

	/* Expect: 100-continue with a length over the limit: no body sent */
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n"
	    "Expect: 100-continue\r\n\r\n"), 0);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 413);
	assert_error_shape(&r, "too_large");
	resp_free(&r);
	cli_close(c);

	/* a chunked body within the limit is reassembled */
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), 0);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"len\":7"));
	resp_free(&r);
	cli_close(c);

	/* exactly the limit is fine */
	{
		char *ok = malloc(1024);
		char head[256];

		assert_non_null(ok);
		memset(ok, ' ', 1024);
		memcpy(ok, "{\"k\":1}", 7);
		c = cli_open(f.port);
		snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n");
		assert_int_equal(cli_send(c, head, strlen(head)), 0);
		assert_int_equal(cli_send(c, ok, 1024), 0);
		assert_int_equal(cli_response(c, &r, false), 0);
		assert_int_equal(r.status, 200);
		resp_free(&r);
		cli_close(c);
		free(ok);
	}
	assert_hello_ok(f.port);
	free(big);
	fx_stop(&f);
}

static void test_bad_json(void **state)
{
	struct fx f;
	struct resp r;
	const char *raw = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"a\": tru";
	const char *good = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n{\"a\":[]}";
	json_t *j;

	fx_start(&f, 1);
	assert_int_equal(do_request(f.port, raw, strlen(raw), &r), 0);
	assert_int_equal(r.status, 400);
	assert_error_shape(&r, "bad_request");
	resp_free(&r);
	assert_int_equal(do_request(f.port, good, strlen(good), &r), 0);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_true(json_is_array(json_object_get(json_object_get(j, "got"), "a")));
	json_decref(j);
	resp_free(&r);
	assert_hello_ok(f.port);
	fx_stop(&f);
}

static void test_headers_too_large(void **state)
{
	http_server_opts o = { .threads = 1, .max_headers = 2048 };
	struct fx f;
	struct resp r;
	struct cli *c;
	char *big = malloc(8192);

	assert_non_null(big);
	memset(big, 'h', 8191);
	big[8191] = '\0';
	fx_start_opts(&f, &o);
	c = cli_open(f.port);
	(void)cli_sendf(c, "GET /hello HTTP/1.1\r\nHost: t\r\n");
	(void)cli_send(c, "X-Big: ", 7);
	(void)cli_send(c, big, 8191);
	(void)cli_sendf(c, "\r\n\r\n");
	if (cli_response(c, &r, false) == 0) {
		assert_true(r.status >= 400 && r.status < 500);
		assert_error_shape(&r, r.status == 413 ? "too_large" : "bad_request");
		resp_free(&r);
	}
	cli_close(c);

	/* a request line over the limit too */
	c = cli_open(f.port);
	(void)cli_sendf(c, "GET /");
	(void)cli_send(c, big, 8191);
	(void)cli_sendf(c, " HTTP/1.1\r\nHost: t\r\n\r\n");
	if (cli_response(c, &r, false) == 0) {
		assert_true(r.status >= 400 && r.status < 500);
		resp_free(&r);
	}
	cli_close(c);
	assert_hello_ok(f.port);
	free(big);
	fx_stop(&f);
}

static void test_streaming(void **state)
{
	struct fx f;
	struct resp r;
	struct cli *c;
	long n;
	int chunks = 1;

	atomic_store(&stream_client_got_first, 0);
	atomic_store(&stream_last_before_first, 1);
	atomic_store(&stream_done, 0);
	fx_start(&f, 1);
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_head(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(hdr(&r, "Transfer-Encoding"), "chunked");
	assert_string_equal(hdr(&r, "Content-Type"), "text/plain");
	/* the first chunk arrives while the handler still holds the rest */
	assert_int_equal(cli_chunk(c, &r), 8);
	assert_string_equal(r.body, "chunk-0\n");
	atomic_store(&stream_client_got_first, 1);
	while ((n = cli_chunk(c, &r)) > 0)
		chunks++;
	assert_int_equal(n, 0);
	assert_int_equal(chunks, STREAM_CHUNKS);
	assert_string_equal(r.body, "chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n");
	assert_true(sync_wait(&stream_done, 1));
	assert_int_equal(atomic_load(&stream_last_before_first), 0);
	resp_free(&r);
	/* the connection is still usable */
	assert_int_equal(cli_sendf(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	cli_close(c);
	fx_stop(&f);
}

static void test_disconnect_mid_stream(void **state)
{
	struct fx f;
	struct resp r;
	struct cli *c;

	atomic_store(&forever_closed, 0);
	atomic_store(&forever_started, 0);
	atomic_store(&drain_calls, 0);
	fx_start(&f, 1);
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "GET /forever HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_head(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_true(cli_chunk(c, &r) > 0);
	assert_non_null(strstr(r.body, "data: first"));
	resp_free(&r);
	assert_true(sync_wait(&drain_calls, 1));
	cli_close(c);
	assert_true(sync_wait(&forever_closed, 1));
	assert_int_equal(atomic_load(&forever_closed), 1);
	assert_hello_ok(f.port);
	fx_stop(&f);
}

static void test_stream_backpressure(void **state)
{
	struct fx f;
	struct resp r;
	struct cli *c;

	atomic_store(&bp_drained, 0);
	fx_start(&f, 1);
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, (size_t)BP_CHUNK * BP_CHUNKS + 3);
	assert_memory_equal(r.body + r.body_len - 3, "END", 3);
	assert_true(sync_wait(&bp_drained, 1));
	/* everything was queued in user space before the drain callback */
	assert_true(bp_pending_before >= (size_t)BP_CHUNK * BP_CHUNKS);
	resp_free(&r);
	cli_close(c);
	fx_stop(&f);
}

static void test_disconnect_while_waiting(void **state)
{
	struct fx f;
	struct cli *c;

	atomic_store(&hang_got, 0);
	atomic_store(&hang_closed, 0);
	fx_start(&f, 1);
	/* a GET whose handler has not answered yet */
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_true(sync_wait(&hang_got, 1));
	cli_close(c);
	assert_true(sync_wait(&hang_closed, 1));
	/* a POST: evhttp has stopped reading once its body was complete */
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "POST /hang HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"), 0);
	assert_true(sync_wait(&hang_got, 2));
	cli_close(c);
	assert_true(sync_wait(&hang_closed, 2));
	assert_int_equal(atomic_load(&hang_closed), 2);
	assert_hello_ok(f.port);
	fx_stop(&f);
}

static void test_reply_after_client_left(void **state)
{
	struct fx f;
	struct cli *c;

	atomic_store(&late_got, 0);
	atomic_store(&late_go, 0);
	atomic_store(&late_done, 0);
	fx_start(&f, 1);
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_true(sync_wait(&late_got, 1));
	cli_close(c);
	atomic_store(&late_go, 1);
	assert_true(sync_wait(&late_done, 1));
	assert_hello_ok(f.port);
	fx_stop(&f);
}

#define NCONC 64

static void test_threads_concurrent(void **state)
{
	struct fx f;
	struct cli *c[NCONC];
	bool seen[2] = { false, false };

	fx_start(&f, 2);
	for (int i = 0; i < NCONC; i++)
		c[i] = cli_open(f.port);
	for (int i = 0; i < NCONC; i++)
		assert_int_equal(cli_sendf(c[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	for (int i = 0; i < NCONC; i++) {
		struct resp r;
		json_t *j;
		json_int_t t;

		assert_int_equal(cli_response(c[i], &r, false), 0);
		assert_int_equal(r.status, 200);
		j = body_json(&r);
		t = json_integer_value(json_object_get(j, "thread"));
		assert_true(t == 0 || t == 1);
		seen[t] = true;
		json_decref(j);
		resp_free(&r);
		cli_close(c[i]);
	}
	/* SO_REUSEPORT spread 64 connections over both threads */
	assert_true(seen[0] && seen[1]);
	fx_stop(&f);
}

static atomic_int hook_init, hook_fini, hook_shutdown;
static atomic_int hook_index_mask;

static int t_init(void *arg, int index, struct event_base *base, void **tctx)
{
	int *ctx = malloc(sizeof(*ctx));

	assert_ptr_equal(arg, &hook_init);
	assert_non_null(base);
	if (ctx == NULL)
		return -1;
	*ctx = index;
	*tctx = ctx;
	atomic_fetch_or(&hook_index_mask, 1 << index);
	sync_add(&hook_init, 1);
	return 0;
}

static void t_fini(void *arg, void *tctx)
{
	free(tctx);
	atomic_fetch_add(&hook_fini, 1);
}

static int hook_port;
static atomic_int hook_refused;

static void t_shutdown(void *arg)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_ptr_equal(arg, &hook_shutdown);
	/* the listeners are closed before the hook runs */
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)hook_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno == ECONNREFUSED)
		atomic_store(&hook_refused, 1);
	close(fd);
	atomic_fetch_add(&hook_shutdown, 1);
}

static int t_init_fail(void *arg, int index, struct event_base *base, void **tctx)
{
	if (index == 1)
		return TROOP_EUNAVAIL;
	atomic_fetch_add(&hook_init, 1);
	*tctx = NULL;
	return 0;
}

static void test_stop_and_hooks(void **state)
{
	http_server_opts o = { .listen = "127.0.0.1:0", .threads = 2, .quiet = true };
	struct fx f;
	struct resp r;

	atomic_store(&hook_init, 0);
	atomic_store(&hook_fini, 0);
	atomic_store(&hook_shutdown, 0);
	atomic_store(&hook_index_mask, 0);
	memset(&f, 0, sizeof(f));
	assert_int_equal(http_server_new(&f.s, &o), 0);
	assert_int_equal(http_server_route(f.s, "GET", "/ctx", h_thread_ctx, NULL), 0);
	http_server_on_thread(f.s, t_init, t_fini, &hook_init);
	http_server_on_shutdown(f.s, t_shutdown, &hook_shutdown);
	/* http_server_run starts the server itself */
	assert_int_equal(pthread_create(&f.runner, NULL, fx_run, &f), 0);
	assert_true(sync_wait(&hook_init, 2));
	f.port = http_server_port(f.s);
	hook_port = f.port;
	atomic_store(&hook_refused, 0);
	for (int i = 0; i < 8; i++) {
		char path[16];

		snprintf(path, sizeof(path), "/ctx");
		assert_int_equal(do_get(f.port, path, &r), 0);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}
	http_server_stop(f.s);
	pthread_join(f.runner, NULL);
	assert_int_equal(f.run_rc, 0);
	assert_int_equal(atomic_load(&hook_init), 2);
	assert_int_equal(atomic_load(&hook_fini), 2);
	assert_int_equal(atomic_load(&hook_shutdown), 1);
	assert_int_equal(atomic_load(&hook_refused), 1);
	assert_int_equal(atomic_load(&hook_index_mask), 3);
	/* the listeners are gone */
	{
		struct sockaddr_in a;
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)f.port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_not_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		close(fd);
	}
	http_server_free(f.s);

	/* an init hook failing fails the start, and the others are finalised */
	atomic_store(&hook_init, 0);
	atomic_store(&hook_fini, 0);
	assert_int_equal(http_server_new(&f.s, &o), 0);
	http_server_on_thread(f.s, t_init_fail, t_fini, NULL);
	assert_int_equal(http_server_start(f.s), TROOP_ERR);
	assert_non_null(strstr(troop_error_msg(), "initialise"));
	assert_int_equal(atomic_load(&hook_init), 1);
	assert_int_equal(atomic_load(&hook_fini), 1);
	http_server_free(f.s);
}

/* SIGTERM makes http_server_run return (and its handler is removed after). */
static void *send_sigterm(void *arg)
{
	struct sigaction sa;

	/* wait until http_server_run has installed its handler */
	for (int i = 0; i < 5000; i++) {
		if (sigaction(SIGTERM, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL)
			break;
		poll(NULL, 0, 1);
	}
	kill(getpid(), SIGTERM);
	return NULL;
}

static void test_sigterm(void **state)
{
	http_server_opts o = { .listen = "127.0.0.1:0", .threads = 2, .quiet = true };
	struct sigaction sa;
	http_server *s;
	pthread_t t;

	assert_int_equal(http_server_new(&s, &o), 0);
	assert_int_equal(http_server_route(s, "GET", "/hello", h_hello, NULL), 0);
	assert_int_equal(http_server_start(s), 0);
	assert_hello_ok(http_server_port(s));
	assert_int_equal(pthread_create(&t, NULL, send_sigterm, NULL), 0);
	assert_int_equal(http_server_run(s, 100), 0);
	pthread_join(t, NULL);
	assert_int_equal(sigaction(SIGTERM, NULL, &sa), 0);
	assert_true(sa.sa_handler == SIG_DFL);
	http_server_free(s);
}

/* Stopping with connections open (idle keep-alive, half-sent request, a
 * handler waiting with on_close, one without) closes them all cleanly. */
static void test_stop_with_open_connections(void **state)
{
	struct fx f;
	struct resp r;
	struct cli *idle, *silent, *half, *hang, *late;
	char b;

	atomic_store(&hang_got, 0);
	atomic_store(&hang_closed, 0);
	atomic_store(&late_got, 0);
	atomic_store(&late_go, 0);
	atomic_store(&late_done, 0);
	fx_start(&f, 2);
	idle = cli_open(f.port);
	assert_int_equal(cli_sendf(idle, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(idle, &r, false), 0);
	resp_free(&r);
	silent = cli_open(f.port);
	half = cli_open(f.port);
	assert_int_equal(cli_sendf(half, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"), 0);
	hang = cli_open(f.port);
	assert_int_equal(cli_sendf(hang, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_true(sync_wait(&hang_got, 1));
	late = cli_open(f.port);
	assert_int_equal(cli_sendf(late, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_true(sync_wait(&late_got, 1));
	/* the late handler answers during the drain */
	atomic_store(&late_go, 1);
	fx_stop(&f);
	assert_int_equal(atomic_load(&hang_closed), 1);
	assert_int_equal(atomic_load(&late_done), 1);
	assert_int_equal(cli_response(late, &r, false), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	/* everything else was closed by the server */
	assert_true(recv(idle->fd, &b, 1, 0) <= 0);
	assert_true(recv(silent->fd, &b, 1, 0) <= 0);
	assert_true(recv(half->fd, &b, 1, 0) <= 0);
	assert_true(recv(hang->fd, &b, 1, 0) <= 0);
	cli_close(idle);
	cli_close(silent);
	cli_close(half);
	cli_close(hang);
	cli_close(late);
}

static void test_listen_errors(void **state)
{
	http_server_opts o = { .listen = "127.0.0.1:0", .threads = 1, .quiet = true };
	http_server *a = NULL, *b = NULL;
	char addr[64];

	assert_int_equal(http_server_new(&a, &o), 0);
	assert_int_equal(http_server_start(a), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", http_server_port(a));
	o.listen = addr;
	assert_int_equal(http_server_new(&b, &o), 0);
	assert_int_equal(http_server_start(b), TROOP_EIO);
	assert_non_null(strstr(troop_error_msg(), "cannot listen on"));
	assert_non_null(strstr(troop_error_msg(), "in use"));
	http_server_free(b);
	/* free without run stops the threads */
	http_server_free(a);

	o.listen = "127.0.0.1";
	assert_int_equal(http_server_new(&b, &o), TROOP_EINVAL);
	o.listen = "127.0.0.1:99999";
	assert_int_equal(http_server_new(&b, &o), TROOP_EINVAL);
	o.listen = "[::1:80";
	assert_int_equal(http_server_new(&b, &o), TROOP_EINVAL);
	assert_null(b);
	o.listen = "127.0.0.1:0";
	assert_int_equal(http_server_new(&b, &o), 0);
	assert_int_equal(http_server_route(b, "GET", "nope", h_hello, NULL), TROOP_EINVAL);
	assert_int_equal(http_server_route(b, "GET", "/a/{}", h_hello, NULL), TROOP_EINVAL);
	assert_int_equal(http_server_route(b, "GET", "/a/x{y}", h_hello, NULL), TROOP_EINVAL);
	assert_int_equal(http_server_route(b, "GET", "/a", h_hello, NULL), 0);
	assert_int_equal(http_server_route(b, "GET", "/a", h_hello, NULL), TROOP_ECONFLICT);
	http_server_free(b);
	http_server_free(NULL);
}

static void test_ipv6(void **state)
{
	http_server_opts o = { .listen = "[::1]:0", .threads = 1, .quiet = true };
	struct fx f;
	struct sockaddr_in6 a;
	struct cli *c;
	struct resp r;

	memset(&f, 0, sizeof(f));
	assert_int_equal(http_server_new(&f.s, &o), 0);
	fx_routes(f.s);
	if (http_server_start(f.s) != 0) {
		http_server_free(f.s);
		skip();         /* no IPv6 loopback here */
	}
	f.port = http_server_port(f.s);
	assert_int_equal(pthread_create(&f.runner, NULL, fx_run, &f), 0);
	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_port = htons((uint16_t)f.port);
	a.sin6_addr = in6addr_loopback;
	c->fd = socket(AF_INET6, SOCK_STREAM, 0);
	cli_timeout(c->fd, 5);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(cli_sendf(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c, &r, false), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"peer\":\"::1\""));
	resp_free(&r);
	cli_close(c);
	fx_stop(&f);
}

static void test_max_conns(void **state)
{
	http_server_opts o = { .threads = 1, .max_conns = 2 };
	struct fx f;
	struct cli *c1, *c2, *c3;
	struct resp r;
	bool ok = false;

	fx_start_opts(&f, &o);
	c1 = cli_open(f.port);
	c2 = cli_open(f.port);
	assert_int_equal(cli_sendf(c1, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c1, &r, false), 0);
	resp_free(&r);
	assert_int_equal(cli_sendf(c2, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c2, &r, false), 0);
	resp_free(&r);
	/* a third is closed without an answer */
	c3 = cli_open(f.port);
	(void)cli_sendf(c3, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_int_equal(cli_response(c3, &r, false), -1);
	resp_free(&r);
	cli_close(c3);
	/* the first two still work */
	assert_int_equal(cli_sendf(c1, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(c1, &r, false), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	/* once one closes, a new one is served (the server notices the close
	 * asynchronously: retry a bounded number of times) */
	cli_close(c1);
	for (int i = 0; i < 200 && !ok; i++) {
		struct cli *c = cli_open(f.port);

		if (cli_sendf(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0 &&
		    cli_response(c, &r, false) == 0) {
			ok = r.status == 200;
		}
		resp_free(&r);
		cli_close(c);
		if (!ok)
			poll(NULL, 0, 5);
	}
	assert_true(ok);
	cli_close(c2);
	fx_stop(&f);
}

static void test_idle_timeout(void **state)
{
	http_server_opts o = { .threads = 1, .idle_timeout_s = 1 };
	struct fx f;
	struct cli *c;
	char b;

	fx_start_opts(&f, &o);
	c = cli_open(f.port);
	/* a silent client is dropped (well before the 5 s receive timeout) */
	assert_int_equal(recv(c->fd, &b, 1, 0), 0);
	cli_close(c);
	/* a half-sent request too */
	c = cli_open(f.port);
	assert_int_equal(cli_sendf(c, "GET /hello HTTP/1.1\r\nHo"), 0);
	assert_true(recv(c->fd, &b, 1, 0) <= 0);
	cli_close(c);
	assert_hello_ok(f.port);
	fx_stop(&f);
}

static void test_request_log(void **state)
{
	http_server_opts o = { .listen = "127.0.0.1:0", .threads = 1, .name = "testsrv" };
	struct fx f;
	struct resp r;
	int p[2];
	char buf[8192];
	ssize_t n;
	const char *raw = "GET /hello?token=supersecret HTTP/1.1\r\nHost: t\r\n"
	    "Authorization: Bearer abc.def.ghi\r\n\r\n";

	assert_int_equal(pipe(p), 0);
	log_set_fd(p[1]);
	memset(&f, 0, sizeof(f));
	assert_int_equal(http_server_new(&f.s, &o), 0);
	fx_routes(f.s);
	assert_int_equal(http_server_start(f.s), 0);
	f.port = http_server_port(f.s);
	assert_int_equal(pthread_create(&f.runner, NULL, fx_run, &f), 0);
	assert_int_equal(do_request(f.port, raw, strlen(raw), &r), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	assert_int_equal(do_get(f.port, "/missing", &r), 0);
	resp_free(&r);
	fx_stop(&f);
	log_set_fd(2);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "request srv=testsrv method=GET path=/hello status=200 us="));
	assert_non_null(strstr(buf, "acct=abcdefgh"));
	assert_non_null(strstr(buf, "path=/missing status=404"));
	assert_null(strstr(buf, "supersecret"));
	assert_null(strstr(buf, "abc.def"));
}

/* Garbage and mangled requests: the server answers 4xx (in the JSON shape)
 * or closes, and keeps serving. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

static const char *const fuzz_seeds[] = {
	"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
	"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
	"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n",
	"GET /users/a/balance?x=%zz HTTP/1.0\r\n\r\n",
	"POST /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
	"POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
	"GET / HTTP/9.9\r\n\r\n",
	"GET\r\n\r\n",
	"\r\n\r\n\r\n",
	"GET /hello HTTP/1.1\r\n: novalue\r\n\r\n",
	"GET /hello HTTP/1.1\r\n continuation\r\n\r\n",
	"GET http://evil/hello HTTP/1.1\r\n\r\n",
	"GET /hello HTTP/1.1\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx",
};

static void test_fuzz_garbage(void **state)
{
	http_server_opts o = { .threads = 2, .max_body = 4096, .max_headers = 4096 };
	struct fx f;
	char req[2048];

	fx_start_opts(&f, &o);
	for (int iter = 0; iter < 300; iter++) {
		const char *seed = fuzz_seeds[rng() % (sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]))];
		size_t len = strlen(seed);
		int mode = (int)(rng() % 4);
		struct cli *c;
		struct resp r;

		memcpy(req, seed, len);
		if (mode == 0) {
			/* random bytes */
			len = 1 + rng() % 512;
			for (size_t i = 0; i < len; i++)
				req[i] = (char)rng();
		} else if (mode == 1) {
			/* flip a few bytes */
			for (int k = 0; k < 1 + (int)(rng() % 4); k++)
				req[rng() % len] = (char)rng();
		} else if (mode == 2) {
			/* insert CR/LF/NUL/space somewhere */
			static const char ins[] = "\r\n\0 :";
			size_t at = rng() % len;

			memmove(req + at + 1, req + at, len - at);
			req[at] = ins[rng() % 5];
			len++;
		} /* mode 3: the seed as it is */
		c = cli_open(f.port);
		cli_timeout(c->fd, 3);
		(void)cli_send(c, req, len);
		shutdown(c->fd, SHUT_WR);
		if (cli_response(c, &r, false) == 0) {
			assert_true(r.status >= 200 && r.status < 600);
			if (r.status >= 400 && r.body_len > 0) {
				json_error_t jerr;
				json_t *j = json_loadb(r.body, r.body_len, 0, &jerr);

				assert_non_null(j);
				assert_true(json_is_object(json_object_get(j, "error")));
				json_decref(j);
			}
		}
		resp_free(&r);
		cli_close(c);
	}
	assert_hello_ok(f.port);
	fx_stop(&f);
}

/* ---- hardening: query numbers, per-address limit, deadlines, EMFILE ----------- */

static void test_query_int_strict(void **state)
{
	static const struct { const char *q; int status; long long n; } cases[] = {
		{ "", 200, 7 }, { "?n=5", 200, 5 }, { "?n=-5", 200, -5 }, { "?n=100", 200, 100 },
		{ "?n=%205", 400, 0 }, { "?n=99999999999999999999", 400, 0 }, { "?n=+5", 400, 0 },
		{ "?n=101", 400, 0 }, { "?n=-6", 400, 0 }, { "?n=", 400, 0 }, { "?n=5x", 400, 0 },
		{ "?n=0x5", 400, 0 }, { "?n=-", 400, 0 }, { "?n=18446744073709551621", 400, 0 },
	};
	struct fx f;

	(void)state;
	fx_start(&f, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[64];
		struct resp r;
		json_t *j;

		snprintf(path, sizeof(path), "/qi%s", cases[i].q);
		assert_int_equal(do_get(f.port, path, &r), 0);
		if (r.status != cases[i].status)
			fail_msg("%s: %d, want %d", path, r.status, cases[i].status);
		j = body_json(&r);
		if (cases[i].status == 200)
			assert_int_equal(json_integer_value(json_object_get(j, "n")), cases[i].n);
		else
			assert_non_null(strstr(json_string_value(json_object_get(
			    json_object_get(j, "error"), "message")), "between -5 and 100"));
		json_decref(j);
		resp_free(&r);
	}
	fx_stop(&f);
}

static struct cli *cli_open_from(int port, const char *src)
{
	struct cli *c = calloc(1, sizeof(*c));
	struct sockaddr_in a, b;

	assert_non_null(c);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(&b, 0, sizeof(b));
	b.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, src, &b.sin_addr), 1);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(bind(c->fd, (struct sockaddr *)&b, sizeof(b)), 0);
	cli_timeout(c->fd, 5);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return c;
}

/* One address may hold max_conns_per_addr connections; another address
 * is still served. */
static void test_conns_per_addr(void **state)
{
	http_server_opts o = { .threads = 1, .max_conns_per_addr = 3 };
	struct cli *c[4], *other;
	struct resp r;
	struct fx f;

	(void)state;
	fx_start_opts(&f, &o);
	for (int i = 0; i < 3; i++) {
		c[i] = cli_open_from(f.port, "127.0.0.1");
		assert_int_equal(cli_sendf(c[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
		assert_int_equal(cli_response(c[i], &r, false), 0);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}
	c[3] = cli_open_from(f.port, "127.0.0.1");
	(void)cli_sendf(c[3], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_int_equal(cli_response(c[3], &r, false), -1);
	resp_free(&r);
	other = cli_open_from(f.port, "127.0.0.2");
	assert_int_equal(cli_sendf(other, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	assert_int_equal(cli_response(other, &r, false), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	for (int i = 0; i < 4; i++)
		cli_close(c[i]);
	cli_close(other);
	fx_stop(&f);
}

/* Send the first `at_once` bytes of `head`, then one byte every `gap_ms`
 * until the server answers or closes; returns the seconds that took and
 * the status seen (0: closed). */
static double trickle(int port, const char *head, size_t at_once, int gap_ms, int *status)
{
	struct cli *c = cli_open(port);
	long long t0 = 0;
	struct timespec ts;
	double dt;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	*status = 0;
	assert_int_equal(cli_send(c, head, at_once), 0);
	for (size_t i = at_once; head[i] != '\0'; i++) {
		struct pollfd p = { c->fd, POLLIN, 0 };

		if (send(c->fd, head + i, 1, MSG_NOSIGNAL) != 1)
			break;
		if (poll(&p, 1, gap_ms) > 0) {
			char buf[512];
			ssize_t n = recv(c->fd, buf, sizeof(buf) - 1, 0);

			if (n > 12) {
				buf[n] = '\0';
				*status = atoi(buf + 9);
			}
			break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	dt = (double)((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - t0) / 1000.0;
	cli_close(c);
	return dt;
}

/* The head and the body each have a total deadline: bytes trickling in
 * do not extend it (the idle timeout is much longer here). */
static void test_head_body_deadline(void **state)
{
	http_server_opts o = { .threads = 1, .idle_timeout_s = 30, .header_timeout_s = 1,
	    .body_timeout_s = 1 };
	struct fx f;
	double dt;
	int st;
	char body_req[256];

	(void)state;
	fx_start_opts(&f, &o);
	dt = trickle(f.port, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    0, 200, &st);
	if (dt < 0.8 || dt > 2.5 || st != 408)
		fail_msg("slow head: closed after %.1f s with %d (want 408 at 1 s)", dt, st);
	/* a complete head, then the body one byte at a time */
	snprintf(body_req, sizeof(body_req), "POST /echo HTTP/1.1\r\nHost: t\r\n"
	    "Content-Length: 100\r\n\r\n%s", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	dt = trickle(f.port, body_req, strstr(body_req, "\r\n\r\n") + 4 - body_req, 200, &st);
	if (dt < 0.8 || dt > 2.5 || st != 408)
		fail_msg("slow body: closed after %.1f s with %d (want 408)", dt, st);
	/* a normal client is not affected */
	assert_hello_ok(f.port);
	fx_stop(&f);
}

/* Out of descriptors, accept() pauses instead of spinning, and says so
 * once per interval.  Runs in a child: it lowers RLIMIT_NOFILE for good. */
static void test_emfile_backoff(void **state)
{
	int pfd[2], port = 0, status = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { 64, 64 };
		http_server_opts o = { .threads = 1, .listen = "127.0.0.1:0" };
		http_server *s;
		struct rusage u0, u1;
		char logpath[] = "/tmp/test_http_emfile_XXXXXX";
		int logfd = mkstemp(logpath);
		FILE *lf;
		char line[512];
		int lines = 0, fd, p;
		double cpu;

		close(pfd[0]);
		if (logfd < 0 || setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(10);
		dup2(logfd, 2);
		if (http_server_new(&s, &o) != 0 || http_server_route(s, "GET", "/hello", h_hello,
		    NULL) != 0 || http_server_start(s) != 0)
			_exit(11);
		p = http_server_port(s);
		/* every descriptor left, gone */
		while ((fd = dup(0)) >= 0)
			;
		if (write(pfd[1], &p, sizeof(p)) != sizeof(p))
			_exit(12);
		usleep(300 * 1000);     /* the parent connects */
		getrusage(RUSAGE_SELF, &u0);
		usleep(1500 * 1000);
		getrusage(RUSAGE_SELF, &u1);
		cpu = (double)(u1.ru_utime.tv_sec - u0.ru_utime.tv_sec +
		    u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) +
		    (double)(u1.ru_utime.tv_usec - u0.ru_utime.tv_usec +
		    u1.ru_stime.tv_usec - u0.ru_stime.tv_usec) / 1e6;
		lf = fopen(logpath, "r");
		if (lf == NULL) {
			close(3);       /* one descriptor back to read the log */
			lf = fopen(logpath, "r");
		}
		while (lf != NULL && fgets(line, sizeof(line), lf) != NULL)
			if (strstr(line, "accept") != NULL && strstr(line, "listen") == NULL)
				lines++;
		unlink(logpath);
		fprintf(stdout, "emfile: cpu %.2f s in 1.5 s, %d accept log lines\n", cpu, lines);
		fflush(stdout);
		_exit(cpu < 0.4 && lines >= 1 && lines <= 2 ? 0 : 1);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &port, sizeof(port)), (ssize_t)sizeof(port));
	close(pfd[0]);
	{
		struct cli *c[20];

		for (int i = 0; i < 20; i++)
			c[i] = cli_open(port);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		for (int i = 0; i < 20; i++)
			cli_close(c[i]);
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_json),
		cmocka_unit_test(test_path_params),
		cmocka_unit_test(test_query_params),
		cmocka_unit_test(test_not_found_and_method),
		cmocka_unit_test(test_keepalive_and_head),
		cmocka_unit_test(test_body_too_large),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_headers_too_large),
		cmocka_unit_test(test_streaming),
		cmocka_unit_test(test_disconnect_mid_stream),
		cmocka_unit_test(test_stream_backpressure),
		cmocka_unit_test(test_disconnect_while_waiting),
		cmocka_unit_test(test_reply_after_client_left),
		cmocka_unit_test(test_threads_concurrent),
		cmocka_unit_test(test_stop_and_hooks),
		cmocka_unit_test(test_stop_with_open_connections),
		cmocka_unit_test(test_sigterm),
		cmocka_unit_test(test_listen_errors),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_max_conns),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_request_log),
		cmocka_unit_test(test_fuzz_garbage),
		cmocka_unit_test(test_query_int_strict),
		cmocka_unit_test(test_conns_per_addr),
		cmocka_unit_test(test_head_body_deadline),
		cmocka_unit_test(test_emfile_backoff),
	};

	log_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
