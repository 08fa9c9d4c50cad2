/*
 * test_http_client.c - the blocking and libevent-driven HTTP clients
 * against real loopback servers written here, running on their own
 * thread: an evhttp server, a raw TCP listener that dies mid-response and
 * one that never answers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "http_client.h"

/* ---- the test server ------------------------------------------------------ */

#define MAX_PEERS 256
#define MAX_RAW 64

struct srv {
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *raw;     /* partial reply, then close */
	struct evconnlistener *mute;    /* reads requests, never answers */
	int port, raw_port, mute_port;
	pthread_t thr;
	int sig_pipe[2];                /* client -> server: send chunk 2 */
	struct event *sig_ev;
	struct event *stop_ev;          /* made active by the main thread */
	struct evhttp_request *held;    /* /stream2 waiting for the signal */
	struct bufferevent *raw_bevs[MAX_RAW];
	pthread_mutex_t mu;
	uint16_t peers[MAX_PEERS];      /* distinct client ports seen */
	int npeers;
};

static struct srv S;

/* Pattern byte at offset i: not periodic over any small chunk size. */
static unsigned char pat_byte(size_t i)
{
	return (unsigned char)((i * 131u) ^ (i >> 8) ^ (i >> 16) ^ 0x5a);
}

/* Body of /num?i=K, so that each concurrent request checks its own. */
static size_t num_body(char *out, size_t cap, int k)
{
	size_t n = 100 + (size_t)k * 53;

	assert_true(n <= cap);
	for (size_t j = 0; j < n; j++)
		out[j] = (char)('a' + (k + (int)j) % 26);
	return n;
}

static long query_long(struct evhttp_request *req, const char *key, long dflt)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *q = evhttp_uri_get_query(u), *v;
	struct evkeyvalq kv;
	long out = dflt;

	if (!q)
		return dflt;
	TAILQ_INIT(&kv);
	if (evhttp_parse_query_str(q, &kv) == 0 && (v = evhttp_find_header(&kv, key)))
		out = strtol(v, NULL, 10);
	evhttp_clear_headers(&kv);
	return out;
}

static void srv_record_peer(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;
	int i;

	evhttp_connection_get_peer(conn, &addr, &port);
	pthread_mutex_lock(&S.mu);
	for (i = 0; i < S.npeers; i++)
		if (S.peers[i] == port)
			break;
	if (i == S.npeers && S.npeers < MAX_PEERS)
		S.peers[S.npeers++] = port;
	pthread_mutex_unlock(&S.mu);
}

static int srv_connections(void)
{
	int n;

	pthread_mutex_lock(&S.mu);
	n = S.npeers;
	pthread_mutex_unlock(&S.mu);
	return n;
}

static const char *cmd_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_HEAD: return "HEAD";
	default: return "OTHER";
	}
}

static void h_echo(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req), *out = evbuffer_new();
	struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
	size_t len = evbuffer_get_length(in);
	const char *ct = evhttp_find_header(hin, "Content-Type");
	const char *xt = evhttp_find_header(hin, "X-Test");
	json_t *o = json_object(), *body = NULL;
	char *text;

	if (len) {
		body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
		if (!body)
			body = json_stringn((const char *)evbuffer_pullup(in, -1), len);
	}
	json_object_set_new(o, "method", json_string(cmd_name(evhttp_request_get_command(req))));
	json_object_set_new(o, "body", body ? body : json_null());
	json_object_set_new(o, "content_type", ct ? json_string(ct) : json_null());
	json_object_set_new(o, "x_test", xt ? json_string(xt) : json_null());
	text = json_dumps(o, JSON_COMPACT);
	evbuffer_add(out, text, strlen(text));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	evhttp_send_reply(req, 200, "OK", out);
	free(text);
	json_decref(o);
	evbuffer_free(out);
}

static void h_status(struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();
	long code = query_long(req, "code", 200);

	if (code != 204)
		evbuffer_add_printf(out, "status %ld", code);
	evhttp_send_reply(req, (int)code, "Whatever", out);
	evbuffer_free(out);
}

static void h_big(struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();
	long n = query_long(req, "n", 0);

	for (long i = 0; i < n; i++)
		evbuffer_add(out, "x", 1);
	if (query_long(req, "chunked", 0)) {
		evhttp_send_reply_start(req, 200, "OK");
		evhttp_send_reply_chunk(req, out);
		evhttp_send_reply_end(req);
	} else {
		evhttp_send_reply(req, 200, "OK", out);
	}
	evbuffer_free(out);
}

static void h_num(struct evhttp_request *req)
{
	static char body[100 + 53 * 200];
	struct evbuffer *out = evbuffer_new();
	size_t n = num_body(body, sizeof(body), (int)query_long(req, "i", 0));

	evbuffer_add(out, body, n);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* /stream2: "first;" now, "second" once the client says it got the first. */
/* The client went away mid-reply: evhttp detaches a request the handler
 * still owns instead of freeing it, so free it here.  (When the server is
 * shut down instead, the request is still attached and evhttp frees it.) */
static void orphan_free(struct evhttp_request *req)
{
	if (!evhttp_request_get_connection(req))
		evhttp_request_free(req);
}

static void held_closed(struct evhttp_connection *conn, void *arg)
{
	if (S.held)
		orphan_free(S.held);
	S.held = NULL;
}

static void h_stream2(struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();

	evhttp_send_reply_start(req, 200, "OK");
	evbuffer_add(out, "first;", 6);
	evhttp_send_reply_chunk(req, out);
	evbuffer_free(out);
	S.held = req;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), held_closed, NULL);
}

static void srv_signal(evutil_socket_t fd, short what, void *arg)
{
	struct evbuffer *out;
	char b;

	if (read(fd, &b, 1) != 1 || !S.held)
		return;
	out = evbuffer_new();
	evbuffer_add(out, "second", 6);
	evhttp_send_reply_chunk(S.held, out);
	evbuffer_free(out);
	evhttp_connection_set_closecb(evhttp_request_get_connection(S.held), NULL, NULL);
	evhttp_send_reply_end(S.held);
	S.held = NULL;
}

/* /pattern?n=N&chunk=C: N pattern bytes, chunked, the next chunk queued
 * when the previous one has been written; whole=1 sends it all at once. */
struct pat {
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	size_t off, n, chunk;
};

static void pat_closed(struct evhttp_connection *conn, void *arg)
{
	struct pat *p = arg;

	orphan_free(p->req);
	free(p);
}

static void pat_next(struct evhttp_connection *conn, void *arg)
{
	struct pat *p = arg;
	struct evbuffer *out;
	size_t len;

	if (p->off >= p->n) {
		evhttp_connection_set_closecb(p->conn, NULL, NULL);
		evhttp_send_reply_end(p->req);
		free(p);
		return;
	}
	len = p->n - p->off < p->chunk ? p->n - p->off : p->chunk;
	out = evbuffer_new();
	for (size_t i = 0; i < len; i++) {
		unsigned char b = pat_byte(p->off + i);
		evbuffer_add(out, &b, 1);
	}
	p->off += len;
	evhttp_send_reply_chunk_with_cb(p->req, out, pat_next, p);
	evbuffer_free(out);
}

static void h_pattern(struct evhttp_request *req)
{
	size_t n = (size_t)query_long(req, "n", 0);
	struct pat *p;

	if (query_long(req, "whole", 0)) {
		struct evbuffer *out = evbuffer_new();
		unsigned char *buf = malloc(n);
		for (size_t i = 0; i < n; i++)
			buf[i] = pat_byte(i);
		evbuffer_add(out, buf, n);
		evhttp_send_reply(req, 200, "OK", out);
		evbuffer_free(out);
		free(buf);
		return;
	}
	p = calloc(1, sizeof(*p));
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	p->n = n;
	p->chunk = (size_t)query_long(req, "chunk", 16384);
	evhttp_connection_set_closecb(p->conn, pat_closed, p);
	evhttp_send_reply_start(req, 200, "OK");
	pat_next(p->conn, p);
}

static void srv_dispatch(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

	srv_record_peer(req);
	if (!path)
		evhttp_send_error(req, 400, NULL);
	else if (strcmp(path, "/echo") == 0)
		h_echo(req);
	else if (strcmp(path, "/status") == 0)
		h_status(req);
	else if (strcmp(path, "/big") == 0)
		h_big(req);
	else if (strcmp(path, "/num") == 0)
		h_num(req);
	else if (strcmp(path, "/stream2") == 0)
		h_stream2(req);
	else if (strcmp(path, "/pattern") == 0)
		h_pattern(req);
	else
		evhttp_send_error(req, 404, NULL);
}

/* Raw listeners.  "raw" answers any request with headers and one chunk
 * of a chunked body, then closes the connection; "mute" reads requests
 * and never answers (the connection is closed when the server stops). */
static void raw_forget(struct bufferevent *bev)
{
	for (int i = 0; i < MAX_RAW; i++)
		if (S.raw_bevs[i] == bev)
			S.raw_bevs[i] = NULL;
	bufferevent_free(bev);
}

static void raw_written(struct bufferevent *bev, void *arg)
{
	if (arg)
		raw_forget(bev);
}

static void raw_event(struct bufferevent *bev, short what, void *arg)
{
	raw_forget(bev);
}

static void raw_read(struct bufferevent *bev, void *arg)
{
	static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";

	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
	if (arg == &S.mute)
		return;
	if (!arg) {
		bufferevent_write(bev, reply, sizeof(reply) - 1);
		/* close once it is flushed */
		bufferevent_setcb(bev, raw_read, raw_written, raw_event, (void *)1);
	}
}

static void raw_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(S.base, fd, BEV_OPT_CLOSE_ON_FREE);

	for (int i = 0; i < MAX_RAW; i++) {
		if (!S.raw_bevs[i]) {
			S.raw_bevs[i] = bev;
			break;
		}
	}
	bufferevent_setcb(bev, raw_read, NULL, raw_event, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static int sock_port(evutil_socket_t fd)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	return ntohs(sin.sin_port);
}

/* loopbreak from here, on the server's own thread: a loopbreak from the
 * main thread before the loop started would be forgotten */
static void srv_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(S.base);
}

static void *srv_thread(void *arg)
{
	event_base_dispatch(S.base);
	return NULL;
}

static int srv_start(void **state)
{
	struct evhttp_bound_socket *bound;
	struct sockaddr_in sin;

	memset(&S, 0, sizeof(S));
	pthread_mutex_init(&S.mu, NULL);
	S.base = event_base_new();
	S.http = evhttp_new(S.base);
	assert_non_null(S.http);
	evhttp_set_gencb(S.http, srv_dispatch, NULL);
	bound = evhttp_bind_socket_with_handle(S.http, "127.0.0.1", 0);
	assert_non_null(bound);
	S.port = sock_port(evhttp_bound_socket_get_fd(bound));

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	S.raw = evconnlistener_new_bind(S.base, raw_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16, (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(S.raw);
	S.raw_port = sock_port(evconnlistener_get_fd(S.raw));
	S.mute = evconnlistener_new_bind(S.base, raw_accept, &S.mute,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16, (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(S.mute);
	S.mute_port = sock_port(evconnlistener_get_fd(S.mute));

	assert_int_equal(pipe(S.sig_pipe), 0);
	S.sig_ev = event_new(S.base, S.sig_pipe[0], EV_READ | EV_PERSIST, srv_signal, NULL);
	event_add(S.sig_ev, NULL);
	S.stop_ev = event_new(S.base, -1, 0, srv_stop_cb, NULL);
	assert_int_equal(pthread_create(&S.thr, NULL, srv_thread, NULL), 0);
	return 0;
}

static int srv_stop(void **state)
{
	event_active(S.stop_ev, EV_TIMEOUT, 0);
	pthread_join(S.thr, NULL);
	event_free(S.stop_ev);
	for (int i = 0; i < MAX_RAW; i++)
		if (S.raw_bevs[i])
			bufferevent_free(S.raw_bevs[i]);
	evhttp_free(S.http);
	evconnlistener_free(S.raw);
	evconnlistener_free(S.mute);
	event_free(S.sig_ev);
	event_base_free(S.base);
	close(S.sig_pipe[0]);
	close(S.sig_pipe[1]);
	pthread_mutex_destroy(&S.mu);
	return 0;
}

static void url(char *buf, size_t len, const char *path_query)
{
	snprintf(buf, len, "http://127.0.0.1:%d%s", S.port, path_query);
}

/* A port where nothing listens: bound (so nobody else takes it) but not
 * listening, so connecting is refused. */
static int refused_port(int *fd)
{
	struct sockaddr_in sin;

	*fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(*fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(*fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return sock_port(*fd);
}

/* ---- blocking client ----------------------------------------------------- */

static void test_blocking_json_roundtrip(void **state)
{
	const char *hdrs[] = { "X-Test: yes", NULL };
	http_client *c;
	json_t *body = json_pack("{s:i, s:s, s:[i,i]}", "a", 1, "s", "h\xc3\xa9llo", "l", 2, 3);
	json_t *reply = NULL;
	int status = 0;
	char u[128];

	url(u, sizeof(u), "/echo");
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_json(c, &status, &reply, "POST", u, hdrs, body), 0);
	assert_int_equal(status, 200);
	assert_non_null(reply);
	assert_string_equal(json_string_value(json_object_get(reply, "method")), "POST");
	assert_true(json_equal(json_object_get(reply, "body"), body));
	assert_string_equal(json_string_value(json_object_get(reply, "content_type")),
	    "application/json");
	assert_string_equal(json_string_value(json_object_get(reply, "x_test")), "yes");
	json_decref(reply);

	assert_int_equal(http_request_json(c, &status, &reply, "GET", u, NULL, NULL), 0);
	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(reply, "method")), "GET");
	assert_true(json_is_null(json_object_get(reply, "body")));
	json_decref(reply);

	/* PUT with a raw body through the plain call */
	http_response r;
	assert_int_equal(http_request(c, &r, "PUT", u, NULL, "plain", 5), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.content_type, "application/json");
	assert_non_null(strstr(r.body, "\"method\":\"PUT\""));
	assert_non_null(strstr(r.body, "\"body\":\"plain\""));
	assert_int_equal(strlen(r.body), r.len);
	http_response_free(&r);

	json_decref(body);
	http_client_free(c);
}

static void test_blocking_status_passthrough(void **state)
{
	http_client *c;
	http_response r;
	json_t *reply = NULL;
	int status = 0;
	char u[128];

	assert_int_equal(http_client_new(&c), 0);
	url(u, sizeof(u), "/status?code=404");
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "status 404");
	http_response_free(&r);

	url(u, sizeof(u), "/status?code=503");
	assert_int_equal(http_request_json(c, &status, &reply, "GET", u, NULL, NULL), 0);
	assert_int_equal(status, 503);
	assert_null(reply);  /* "status 503" is not JSON */

	url(u, sizeof(u), "/status?code=204");
	assert_int_equal(http_request(c, &r, "DELETE", u, NULL, NULL, 0), 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.len, 0);
	assert_non_null(r.body);
	assert_string_equal(r.body, "");
	http_response_free(&r);
	http_client_free(c);
}

static void test_blocking_keepalive(void **state)
{
	http_client *c, *c2;
	http_response r;
	char u[128];

	url(u, sizeof(u), "/num?i=3");
	assert_int_equal(http_client_new(&c), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), 0);
		assert_int_equal(r.status, 200);
		http_response_free(&r);
	}
	assert_int_equal(srv_connections(), 1);

	/* a second client has its own connection */
	assert_int_equal(http_client_new(&c2), 0);
	assert_int_equal(http_request(c2, &r, "GET", u, NULL, NULL, 0), 0);
	http_response_free(&r);
	assert_int_equal(srv_connections(), 2);
	http_client_free(c2);
	http_client_free(c);
}

static void test_blocking_connect_refused(void **state)
{
	http_client *c;
	http_response r;
	int fd, port = refused_port(&fd);
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/x?secret=hunter2", port);
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), TROOP_EUPSTREAM);
	assert_int_equal(r.status, 0);
	assert_null(r.body);
	assert_non_null(strstr(troop_error_msg(), "127.0.0.1"));
	assert_null(strstr(troop_error_msg(), "hunter2"));
	http_response_free(&r);
	http_client_free(c);
	close(fd);
}

static void test_blocking_timeout(void **state)
{
	http_client *c;
	http_response r;
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/hang", S.mute_port);
	assert_int_equal(http_client_new(&c), 0);
	http_client_set_limits(c, 300, 0);
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), TROOP_ETIMEOUT);
	assert_non_null(strstr(troop_error_msg(), "/hang"));
	http_response_free(&r);

	/* the handle is still good afterwards */
	url(u, sizeof(u), "/num?i=1");
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	http_client_free(c);
}

static void test_blocking_too_large(void **state)
{
	http_client *c;
	http_response r;
	char u[128];

	assert_int_equal(http_client_new(&c), 0);
	http_client_set_limits(c, 0, 1000);

	url(u, sizeof(u), "/big?n=1000");
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), 0);
	assert_int_equal(r.len, 1000);
	http_response_free(&r);

	url(u, sizeof(u), "/big?n=1001");
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), TROOP_ETOOLARGE);
	assert_null(r.body);
	http_response_free(&r);

	url(u, sizeof(u), "/big?n=5000&chunked=1");
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), TROOP_ETOOLARGE);
	http_response_free(&r);

	url(u, sizeof(u), "/big?n=1000&chunked=1");
	assert_int_equal(http_request(c, &r, "GET", u, NULL, NULL, 0), 0);
	assert_int_equal(r.len, 1000);
	http_response_free(&r);
	http_client_free(c);
}

struct stream_state {
	char buf[64];
	size_t len;
	int calls;
	bool signalled;
	int ret;
};

static int stream_collect(void *arg, const char *data, size_t len)
{
	struct stream_state *s = arg;

	s->calls++;
	if (s->len + len > sizeof(s->buf) - 1)
		return TROOP_ETOOLARGE;
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	/* the server holds "second" back until it hears from us here */
	if (!s->signalled && strcmp(s->buf, "first;") == 0) {
		assert_int_equal(write(S.sig_pipe[1], "x", 1), 1);
		s->signalled = true;
	}
	return 0;
}

static void test_blocking_stream_incremental(void **state)
{
	struct stream_state s = { .len = 0 };
	http_client *c;
	int status = 0;
	char u[128];

	url(u, sizeof(u), "/stream2");
	assert_int_equal(http_client_new(&c), 0);
	http_client_set_limits(c, 5000, 0);
	assert_int_equal(http_request_stream(c, &status, "GET", u, NULL, NULL, 0,
	    stream_collect, &s), 0);
	assert_int_equal(status, 200);
	assert_true(s.signalled);
	assert_true(s.calls >= 2);
	assert_string_equal(s.buf, "first;second");
	http_client_free(c);
}

static int stream_stop(void *arg, const char *data, size_t len)
{
	struct stream_state *s = arg;

	s->calls++;
	return s->ret;
}

static void test_blocking_stream_abort(void **state)
{
	struct stream_state s = { .ret = 1 };
	http_client *c;
	int status = 0;
	char u[128];

	url(u, sizeof(u), "/pattern?n=200000&chunk=4096");
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_stream(c, &status, "GET", u, NULL, NULL, 0,
	    stream_stop, &s), TROOP_ERR);
	assert_int_equal(status, 200);
	assert_int_equal(s.calls, 1);

	s.calls = 0;
	s.ret = TROOP_ECAPACITY;
	assert_int_equal(http_request_stream(c, &status, "GET", u, NULL, NULL, 0,
	    stream_stop, &s), TROOP_ECAPACITY);
	assert_int_equal(s.calls, 1);
	http_client_free(c);
}

static void test_blocking_stream_idle_timeout(void **state)
{
	struct stream_state s = { .len = 0 };
	http_client *c;
	int status = -1;
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/hang", S.mute_port);
	assert_int_equal(http_client_new(&c), 0);
	http_client_set_limits(c, 500, 0);
	assert_int_equal(http_request_stream(c, &status, "GET", u, NULL, NULL, 0,
	    stream_collect, &s), TROOP_ETIMEOUT);
	assert_int_equal(status, 0);
	assert_int_equal(s.calls, 0);
	http_client_free(c);
}

static void test_blocking_bad_input(void **state)
{
	const char *crlf[] = { "X-A: b\r\nX-Injected: 1", NULL };
	http_client *c;
	http_response r;
	char u[128];

	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request(c, &r, "GET", "ftp://127.0.0.1/x", NULL, NULL, 0),
	    TROOP_EINVAL);
	assert_int_equal(http_request(c, &r, "GET", "not a url", NULL, NULL, 0), TROOP_EINVAL);
	url(u, sizeof(u), "/echo");
	assert_int_equal(http_request(c, &r, "GET", u, crlf, NULL, 0), TROOP_EINVAL);
	assert_int_equal(http_request(c, &r, "GE T", u, NULL, NULL, 0), TROOP_EINVAL);
	http_client_free(c);
}

/* ---- async client ---------------------------------------------------------- */

struct rq {
	http_async_req *req;
	int headers_calls, status, data_calls, done_calls, err;
	bool saw_ct;
	/* collected body (bounded) */
	char *buf;
	size_t len, cap;
	/* pattern checking */
	bool pattern;
	size_t off;
	bool mismatch;
	int pause_every;            /* pause on every Nth on_data call */
	int pauses;
	long resume_delay_ms;       /* 0: 1 ms */
	struct event *resume_ev;
	size_t cancel_after;        /* cancel from on_data after this many bytes */
	bool cancelled;
	int calls_after_cancel;
	int data_ret;               /* forced return from on_data */
	int *done_total;
};

static int rq_headers(void *arg, int status, const char *const *headers)
{
	struct rq *q = arg;

	q->headers_calls++;
	q->status = status;
	for (size_t i = 0; headers[i]; i++)
		if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
			q->saw_ct = true;
	return 0;
}

static int rq_data(void *arg, const char *data, size_t len)
{
	struct rq *q = arg;

	q->data_calls++;
	assert_int_equal(q->headers_calls, 1);
	if (q->cancelled) {
		q->calls_after_cancel++;
		return 0;
	}
	if (q->data_ret)
		return q->data_ret;
	if (q->pattern) {
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)data[i] != pat_byte(q->off + i))
				q->mismatch = true;
	} else {
		if (q->len + len > q->cap)
			return -1;
		memcpy(q->buf + q->len, data, len);
		q->len += len;
	}
	q->off += len;
	if (q->cancel_after && q->off >= q->cancel_after) {
		http_async_cancel(q->req);
		http_async_cancel(q->req);  /* twice is harmless */
		q->cancelled = true;
		return 0;
	}
	if (q->pause_every && q->data_calls % q->pause_every == 0) {
		long ms = q->resume_delay_ms ? q->resume_delay_ms : 1;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		q->pauses++;
		evtimer_add(q->resume_ev, &tv);
		return HTTP_ASYNC_PAUSE;
	}
	return 0;
}

static void rq_done(void *arg, int err)
{
	struct rq *q = arg;

	q->done_calls++;
	q->err = err;
	q->req = NULL;
	if (q->resume_ev)
		evtimer_del(q->resume_ev);
	if (q->done_total)
		(*q->done_total)++;
}

static void rq_resume(evutil_socket_t fd, short what, void *arg)
{
	struct rq *q = arg;

	http_async_resume(q->req);
}

static const http_async_cb rq_cb = { rq_headers, rq_data, rq_done };

static void guard_expired(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Run `base` until *done reaches `want`, failing after 8 s. */
static void run_until(struct event_base *base, const int *done, int want)
{
	bool expired = false;
	struct event *guard = evtimer_new(base, guard_expired, &expired);
	struct timeval tv = { 8, 0 };

	evtimer_add(guard, &tv);
	while (*done < want && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	assert_false(expired);
}

static void test_async_concurrent(void **state)
{
	enum { N = 40 };
	static char expect[100 + 53 * N];
	struct event_base *base = event_base_new();
	struct rq q[N];
	http_async *a;
	int done = 0;
	char u[128];

	assert_int_equal(http_async_new(&a, base), 0);
	memset(q, 0, sizeof(q));
	for (int i = 0; i < N; i++) {
		q[i].cap = 100 + 53 * N;
		q[i].buf = malloc(q[i].cap);
		q[i].done_total = &done;
		snprintf(u, sizeof(u), "http://127.0.0.1:%d/num?i=%d", S.port, i);
		assert_int_equal(http_async_request(a, &q[i].req, "GET", u, NULL, NULL, 0,
		    NULL, &rq_cb, &q[i]), 0);
		assert_non_null(q[i].req);
	}
	run_until(base, &done, N);
	for (int i = 0; i < N; i++) {
		size_t n = num_body(expect, sizeof(expect), i);
		assert_int_equal(q[i].done_calls, 1);
		assert_int_equal(q[i].err, 0);
		assert_int_equal(q[i].headers_calls, 1);
		assert_int_equal(q[i].status, 200);
		assert_true(q[i].saw_ct);
		assert_int_equal(q[i].len, n);
		assert_memory_equal(q[i].buf, expect, n);
		free(q[i].buf);
	}
	http_async_free(a);
	event_base_free(base);
}

static void test_async_keepalive_and_post(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q[3];
	http_async *a;
	http_async_opts o = { .tcp_nodelay = true, .total_timeout_ms = 5000 };
	int done = 0;
	char u[128];

	assert_int_equal(http_async_new(&a, base), 0);
	memset(q, 0, sizeof(q));
	url(u, sizeof(u), "/echo");
	for (int i = 0; i < 3; i++) {
		char body[32];
		q[i].cap = 4096;
		q[i].buf = calloc(1, q[i].cap + 1);
		q[i].done_total = &done;
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		/* sequential: each starts after the previous one finished */
		assert_int_equal(http_async_request(a, &q[i].req, "POST", u,
		    (const char *[]){ "Content-Type: application/json", NULL },
		    body, strlen(body), &o, &rq_cb, &q[i]), 0);
		memset(body, 'X', sizeof(body));  /* the body was copied */
		run_until(base, &done, i + 1);
		assert_int_equal(q[i].err, 0);
		json_t *j = json_loadb(q[i].buf, q[i].len, 0, NULL);
		assert_non_null(j);
		assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
		assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "body"), "n")), i);
		json_decref(j);
		free(q[i].buf);
	}
	assert_int_equal(srv_connections(), 1);
	http_async_free(a);
	event_base_free(base);
}

static void run_pattern(const char *path_query, size_t n, int pause_every)
{
	struct event_base *base = event_base_new();
	struct rq q = { .pattern = true, .pause_every = pause_every };
	http_async *a;
	char u[128];

	url(u, sizeof(u), path_query);
	q.resume_ev = evtimer_new(base, rq_resume, &q);
	assert_int_equal(http_async_new(&a, base), 0);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.done_calls, 1);
	assert_int_equal(q.err, 0);
	assert_int_equal(q.status, 200);
	assert_false(q.mismatch);
	assert_int_equal(q.off, n);   /* every byte exactly once */
	if (pause_every)
		assert_true(q.pauses > 0);
	event_free(q.resume_ev);
	http_async_free(a);
	event_base_free(base);
}

static void test_async_pause_resume_stream(void **state)
{
	run_pattern("/pattern?n=1048576&chunk=16384", 1048576, 2);
}

static void test_async_pause_resume_small_chunks(void **state)
{
	/* many small chunks arrive together while paused */
	run_pattern("/pattern?n=200000&chunk=1000", 200000, 1);
}

static void test_async_pause_resume_whole(void **state)
{
	/* the whole body (Content-Length) is read while we are paused */
	run_pattern("/pattern?n=300000&whole=1", 300000, 1);
}

static void test_async_cancel_midstream(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q = { .pattern = true, .cancel_after = 65536 };
	http_async *a;
	char u[128];
	int after;

	url(u, sizeof(u), "/pattern?n=8388608&chunk=16384");
	assert_int_equal(http_async_new(&a, base), 0);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.err, TROOP_ERR);
	assert_int_equal(q.calls_after_cancel, 0);
	assert_false(q.mismatch);
	assert_true(q.off < 8388608);
	/* nothing else arrives later */
	after = q.done_calls;
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(q.done_calls, after);
	http_async_free(a);
	event_base_free(base);
}

static void cancel_from_timer(evutil_socket_t fd, short what, void *arg)
{
	struct rq *q = arg;

	http_async_cancel(q->req);
	q->cancelled = true;
}

static void test_async_cancel_paused_and_unstarted(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q = { .pattern = true, .pause_every = 1 };
	struct rq q2 = { .pattern = true };
	http_async *a;
	char u[128];

	url(u, sizeof(u), "/pattern?n=4194304&chunk=16384");
	assert_int_equal(http_async_new(&a, base), 0);
	/* paused on the first chunk and never resumed: the timer cancels */
	q.resume_ev = evtimer_new(base, cancel_from_timer, &q);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	/* cancelled before the loop ever ran it */
	assert_int_equal(http_async_request(a, &q2.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q2), 0);
	http_async_cancel(q2.req);
	assert_int_equal(q2.done_calls, 0);  /* never from inside cancel */
	run_until(base, &q.done_calls, 1);
	run_until(base, &q2.done_calls, 1);
	assert_int_equal(q.err, TROOP_ERR);
	assert_int_equal(q.done_calls, 1);
	assert_int_equal(q.pauses, 1);
	assert_int_equal(q.calls_after_cancel, 0);
	assert_int_equal(q2.err, TROOP_ERR);
	assert_int_equal(q2.done_calls, 1);
	assert_int_equal(q2.headers_calls, 0);
	assert_int_equal(q2.data_calls, 0);
	event_free(q.resume_ev);
	http_async_free(a);
	event_base_free(base);
}

static void test_async_first_byte_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q = { .pattern = true };
	http_async_opts o = { .first_byte_timeout_ms = 200, .tcp_nodelay = true };
	http_async *a;
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/hang", S.mute_port);
	assert_int_equal(http_async_new(&a, base), 0);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, &o,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.err, TROOP_ETIMEOUT);
	assert_int_equal(q.headers_calls, 0);

	/* total timeout, through curl */
	memset(&q, 0, sizeof(q));
	o.first_byte_timeout_ms = 0;
	o.total_timeout_ms = 200;
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, &o,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.err, TROOP_ETIMEOUT);

	/* a first-byte limit does not cut a response that has started: the
	 * first chunk pauses it for longer than the limit */
	memset(&q, 0, sizeof(q));
	q.pattern = true;
	q.pause_every = 1000;
	q.data_calls = 999;         /* so the first chunk pauses, once */
	q.resume_delay_ms = 1300;
	q.resume_ev = evtimer_new(base, rq_resume, &q);
	o.first_byte_timeout_ms = 1000;
	o.total_timeout_ms = 0;
	url(u, sizeof(u), "/pattern?n=100000&chunk=10000");
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, &o,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.err, 0);
	assert_int_equal(q.pauses, 1);
	assert_false(q.mismatch);
	assert_int_equal(q.off, 100000);
	event_free(q.resume_ev);
	http_async_free(a);
	event_base_free(base);
}

static void test_async_connect_refused(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q = { .pattern = true };
	http_async *a;
	int fd, port = refused_port(&fd);
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/v1/models", port);
	assert_int_equal(http_async_new(&a, base), 0);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.err, TROOP_EUPSTREAM);
	assert_int_equal(q.headers_calls, 0);
	http_async_free(a);
	event_base_free(base);
	close(fd);
}

static void test_async_server_dies(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q = { .cap = 64 };
	http_async *a;
	char u[128];

	q.buf = calloc(1, q.cap);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/stream", S.raw_port);
	assert_int_equal(http_async_new(&a, base), 0);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.headers_calls, 1);
	assert_int_equal(q.status, 200);
	assert_int_equal(q.len, 5);
	assert_memory_equal(q.buf, "hello", 5);
	assert_int_not_equal(q.err, 0);
	assert_int_equal(q.err, TROOP_EUPSTREAM);
	free(q.buf);
	http_async_free(a);
	event_base_free(base);
}

static void test_async_abort_and_no_body(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q = { .pattern = true, .data_ret = -1 };
	http_async *a;
	char u[128];

	url(u, sizeof(u), "/pattern?n=100000&chunk=1000");
	assert_int_equal(http_async_new(&a, base), 0);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.err, TROOP_ERR);
	assert_int_equal(q.data_calls, 1);

	/* 204: headers, no data, success */
	memset(&q, 0, sizeof(q));
	url(u, sizeof(u), "/status?code=204");
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	run_until(base, &q.done_calls, 1);
	assert_int_equal(q.err, 0);
	assert_int_equal(q.headers_calls, 1);
	assert_int_equal(q.status, 204);
	assert_int_equal(q.data_calls, 0);

	/* bad input fails at once, with no callback */
	memset(&q, 0, sizeof(q));
	assert_int_equal(http_async_request(a, &q.req, "GET", "gopher://x/", NULL, NULL, 0,
	    NULL, &rq_cb, &q), TROOP_EINVAL);
	assert_null(q.req);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(q.done_calls, 0);
	http_async_free(a);
	event_base_free(base);
}

static void test_async_free_cancels(void **state)
{
	struct event_base *base = event_base_new();
	struct rq q = { .pattern = true }, q2 = { .pattern = true };
	http_async *a;
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/hang", S.mute_port);
	assert_int_equal(http_async_new(&a, base), 0);
	assert_int_equal(http_async_request(a, &q.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q), 0);
	assert_int_equal(http_async_request(a, &q2.req, "GET", u, NULL, NULL, 0, NULL,
	    &rq_cb, &q2), 0);
	/* let both connect and send */
	for (int i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	http_async_free(a);
	assert_int_equal(q.done_calls, 1);
	assert_int_equal(q.err, TROOP_ERR);
	assert_int_equal(q2.done_calls, 1);
	assert_int_equal(q2.err, TROOP_ERR);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_blocking_json_roundtrip, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_status_passthrough, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_keepalive, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_connect_refused, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_timeout, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_too_large, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_stream_incremental, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_stream_abort, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_stream_idle_timeout, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_blocking_bad_input, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_concurrent, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_keepalive_and_post, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_pause_resume_stream, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_pause_resume_small_chunks, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_pause_resume_whole, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_cancel_midstream, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_cancel_paused_and_unstarted, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_first_byte_timeout, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_connect_refused, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_server_dies, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_abort_and_no_body, srv_start, srv_stop),
		cmocka_unit_test_setup_teardown(test_async_free_cancels, srv_start, srv_stop),
	};

	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
