/*
 * test_relay.c - the streaming relay between a real http_server (one
 * thread) and a raw upstream written here (a thread per connection, so a
 * test decides every byte, every chunk boundary and when the upstream
 * dies).  The client side is the blocking http_client or a raw socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "http_client.h"
#include "http_server.h"
#include "json.h"
#include "relay.h"

/* ---- the raw upstream ---------------------------------------------------------- */

#define BIG_TOTAL (32u * 1024 * 1024)
#define BYTES_STREAM "data: a\n\ndata: b\r\n\r\n: comment\r\rdata: c\ndata: d\n\n" \
	"event: x\r\ndata: e\r\n\ndata: [DONE]\n\n"

static int up_port;
static int up_lfd = -1;
static pthread_t up_thr;
static sem_t sem_first_seen;     /* client got the first event */
static atomic_int up_saw_close;  /* the slow upstream's write failed */
static atomic_ulong up_written;  /* bytes of /big written so far */

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			return;
		}
		c += k;
		n -= (size_t)k;
	}
}

static int send_chunk(int fd, const char *data, size_t n)
{
	char h[32];
	int hl = snprintf(h, sizeof(h), "%zx\r\n", n);
	ssize_t k;

	k = send(fd, h, (size_t)hl, MSG_NOSIGNAL);
	if (k != hl)
		return -1;
	send_all(fd, data, n);
	k = send(fd, "\r\n", 2, MSG_NOSIGNAL);
	return k == 2 ? 0 : -1;
}

static void send_head(int fd, int status, const char *ctype)
{
	char h[256];
	int n = snprintf(h, sizeof(h), "HTTP/1.1 %d X\r\nContent-Type: %s\r\n"
	    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", status, ctype);

	send_all(fd, h, (size_t)n);
}

static unsigned char big_byte(size_t i)
{
	return (unsigned char)((i * 131u) ^ (i >> 9) ^ 0x5a);
}

/* Read the request head (and ignore any body); returns the path. */
static int read_request(int fd, char *path, size_t plen)
{
	char buf[8192];
	size_t used = 0;

	while (used < sizeof(buf) - 1) {
		ssize_t k = recv(fd, buf + used, sizeof(buf) - 1 - used, 0);
		if (k <= 0)
			return -1;
		used += (size_t)k;
		buf[used] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	if (sscanf(buf, "%*s %255s", path) != 1 || plen < 256)
		return -1;
	return 0;
}

static void *up_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char path[256];

	if (read_request(fd, path, sizeof(path)) != 0)
		goto out;
	if (strcmp(path, "/sse") == 0) {
		/* events split across chunks, and chunks with two events */
		send_head(fd, 200, "text/event-stream");
		send_chunk(fd, "data: {\"n\":1}\n\nda", 17);
		send_chunk(fd, "ta: {\"n\":2}\n", 12);
		send_chunk(fd, "\ndata: {\"n\":3}\r\n\r", 17);   /* CRLF split */
		send_chunk(fd, "\ndata: {\"n\":4}\n\n", 16);
		send_chunk(fd, "data: [DONE]\n\n", 14);
		send_chunk(fd, "", 0);
	} else if (strcmp(path, "/bytes") == 0) {
		/* every byte its own chunk, LF, CRLF and CR line ends mixed */
		send_head(fd, 200, "text/event-stream");
		for (const char *p = BYTES_STREAM; *p; p++)
			send_chunk(fd, p, 1);
		send_chunk(fd, "", 0);
	} else if (strcmp(path, "/wait") == 0) {
		/* the last event only once the client has the first */
		send_head(fd, 200, "text/event-stream");
		send_chunk(fd, "data: first\n\n", 13);
		sem_wait(&sem_first_seen);
		send_chunk(fd, "data: last\n\n", 12);
		send_chunk(fd, "", 0);
	} else if (strcmp(path, "/late") == 0 || strcmp(path, "/late-die") == 0) {
		/* an engine reading a long prompt: headers at once, the first
		 * token 700 ms later (or never: it dies) */
		struct timespec ts = { 0, 700 * 1000000L };
		send_head(fd, 200, "text/event-stream");
		nanosleep(&ts, NULL);
		if (strcmp(path, "/late") == 0) {
			send_chunk(fd, "data: tok\n\n", 11);
			send_chunk(fd, "", 0);
		}
	} else if (strcmp(path, "/die") == 0) {
		send_head(fd, 200, "text/event-stream");
		send_chunk(fd, "data: {\"n\":1}\n\n", 15);
		send_chunk(fd, "data: {\"n\":2}\n\ndata: {\"par", 26);
		/* closed without the last chunk */
	} else if (strcmp(path, "/slow") == 0) {
		send_head(fd, 200, "text/event-stream");
		for (int i = 0; i < 20000; i++) {
			struct timespec ts = { 0, 5 * 1000000L };
			if (send_chunk(fd, "data: tick\n\n", 12) != 0) {
				atomic_store(&up_saw_close, 1);
				break;
			}
			nanosleep(&ts, NULL);
		}
	} else if (strcmp(path, "/big") == 0) {
		static unsigned char blk[65536];
		send_head(fd, 200, "application/octet-stream");
		for (size_t off = 0; off < BIG_TOTAL; off += sizeof(blk)) {
			for (size_t j = 0; j < sizeof(blk); j++)
				blk[j] = big_byte(off + j);
			if (send_chunk(fd, (const char *)blk, sizeof(blk)) != 0)
				break;
			atomic_fetch_add(&up_written, sizeof(blk));
		}
		send_chunk(fd, "", 0);
	} else if (strcmp(path, "/err404") == 0) {
		static const char b[] = "{\"error\":\"model 'x' not found\"}";
		send_head(fd, 404, "application/json");
		send_chunk(fd, b, sizeof(b) - 1);
		send_chunk(fd, "", 0);
	} else if (strcmp(path, "/busy503") == 0) {
		send_head(fd, 503, "application/json");
		send_chunk(fd, "{}", 2);
		send_chunk(fd, "", 0);
	} else if (strcmp(path, "/json") == 0) {
		send_head(fd, 200, "application/json");
		send_chunk(fd, "{\"a\":", 5);
		send_chunk(fd, "1}", 2);
		send_chunk(fd, "", 0);
	}
out:
	shutdown(fd, SHUT_WR);
	{
		char sink[4096];
		struct pollfd p = { fd, POLLIN, 0 };
		while (poll(&p, 1, 200) > 0 && recv(fd, sink, sizeof(sink), 0) > 0)
			;
	}
	close(fd);
	return NULL;
}

static void *up_accept(void *arg)
{
	for (;;) {
		int fd = accept(up_lfd, NULL, NULL);
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		pthread_create(&t, NULL, up_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static int listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 128), 0);
	getsockname(fd, (struct sockaddr *)&a, &al);
	*port = ntohs(a.sin_port);
	return fd;
}

/* ---- the relaying server ------------------------------------------------------- */

struct job {
	relay *rl;
	struct event *abort_ev;
	bool abort_after_first;
	bool normalise;
	bool reject_5xx;
};

static http_server *srv;
static int srv_port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static relay_stats last;         /* stats of the last finished relay */
static int finished;             /* relays finished */
static bool handed_back;
static bool chunks_aligned;      /* every on_body chunk ended an event */
static char seen_tail[4];        /* the last bytes on_body saw */
static int dead_port;            /* nothing listens here */

static int th_init(void *arg, int index, struct event_base *base, void **tctx)
{
	http_async *a;
	int rc = http_async_new(&a, base);

	*tctx = a;
	return rc;
}

static void th_fini(void *arg, void *tctx)
{
	http_async_free(tctx);
}

static void on_body(void *arg, const char *data, size_t len)
{
	struct job *j = arg;

	/* everything forwarded so far must end with a blank line (LF LF,
	 * CR CR, LF CR, CRLF CRLF, CR CRLF, ...): an event boundary */
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < len; i++) {
		memmove(seen_tail, seen_tail + 1, 3);
		seen_tail[3] = data[i];
	}
	if (memcmp(seen_tail + 2, "\n\n", 2) != 0 && memcmp(seen_tail + 2, "\r\r", 2) != 0 &&
	    memcmp(seen_tail + 2, "\n\r", 2) != 0 && memcmp(seen_tail + 1, "\n\r\n", 3) != 0 &&
	    memcmp(seen_tail + 1, "\r\r\n", 3) != 0)
		chunks_aligned = false;
	pthread_mutex_unlock(&mu);
	if (j->abort_after_first && j->abort_ev) {
		event_active(j->abort_ev, EV_TIMEOUT, 1);
		j->abort_after_first = false;
	}
}

static int on_headers(void *arg, int status, const char *const *headers)
{
	struct job *j = arg;

	return j->reject_5xx && status >= 500 ? RELAY_REJECT : RELAY_ACCEPT;
}

static int normalise(void *arg, int status, const char *body, size_t len, json_t **out)
{
	json_t *in = json_loadb(body, len, 0, NULL);
	const char *m = in ? json_string_value(json_object_get(in, "error")) : NULL;

	*out = json_pack("{s:{s:s,s:s,s:s}}", "error", "message", m ? m : "?",
	    "type", "invalid_request_error", "code", "model_not_found");
	json_decref(in);
	return status;
}

static void on_done(void *arg, http_req *req, const relay_stats *st)
{
	struct job *j = arg;

	pthread_mutex_lock(&mu);
	last = *st;
	handed_back = req != NULL;
	finished++;
	pthread_mutex_unlock(&mu);
	if (req) {
		if (st->end == RELAY_END_REJECTED)
			http_reply_error(req, TROOP_ECAPACITY, "upstream busy (%d)", st->upstream_status);
		else
			http_reply_error(req, st->err ? st->err : TROOP_EUPSTREAM, "no reply");
	}
	if (j->abort_ev)
		event_free(j->abort_ev);
	free(j);
}

static void do_abort(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;

	relay_abort(j->rl, TROOP_ETIMEOUT, "past max_seconds");
}

static void handler(http_req *req, void *arg)
{
	static const relay_cb cb = { on_headers, on_body, NULL, on_done, NULL, NULL };
	relay_cb c = cb;
	struct job *j = calloc(1, sizeof(*j));
	const char *path = http_req_param(req, "what");
	char url[128];
	relay_upstream up = { .method = "POST", .url = url, .body = "{}", .body_len = 2 };
	relay_opts ro = { 0 };
	int port = up_port;

	assert_non_null(j);
	if (strcmp(path, "dead") == 0)
		port = dead_port;
	if (strcmp(path, "abort") == 0) {
		path = "slow";
		j->abort_after_first = true;
		j->abort_ev = event_new(http_req_base(req), -1, 0, do_abort, j);
	}
	if (strcmp(path, "err404") == 0)
		c.normalize_error = normalise;
	if (strncmp(path, "ka-", 3) == 0) {
		path += 3;
		ro.keepalive_ms = 200;
	}
	j->reject_5xx = true;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", port, path);
	if (relay_start(&j->rl, req, http_req_thread_ctx(req), &up, &ro, &c, j) != 0) {
		http_reply_error(req, troop_error_last(), "%s", troop_error_msg());
		free(j);
	}
}

static int setup(void **state)
{
	http_server_opts o = { .listen = "127.0.0.1:0", .threads = 1, .quiet = true };
	int dfd;

	signal(SIGPIPE, SIG_IGN);
	sem_init(&sem_first_seen, 0, 0);
	up_lfd = listen_any(&up_port);
	pthread_create(&up_thr, NULL, up_accept, NULL);
	dfd = listen_any(&dead_port);
	close(dfd);
	assert_int_equal(http_server_new(&srv, &o), 0);
	assert_int_equal(http_server_route(srv, "POST", "/r/{what}", handler, NULL), 0);
	http_server_on_thread(srv, th_init, th_fini, NULL);
	assert_int_equal(http_server_start(srv), 0);
	srv_port = http_server_port(srv);
	return 0;
}

static int teardown(void **state)
{
	http_server_stop(srv);
	assert_int_equal(http_server_run(srv, 1000), 0);
	http_server_free(srv);
	return 0;
}

/* ---- client helpers ----------------------------------------------------------- */

struct got {
	char buf[1 << 16];
	size_t len;
	bool first_signalled;
	int stop_after;      /* abort the request after this many callbacks */
	int calls;
};

static int got_data(void *arg, const char *data, size_t len)
{
	struct got *g = arg;

	if (g->len + len < sizeof(g->buf)) {
		memcpy(g->buf + g->len, data, len);
		g->len += len;
		g->buf[g->len] = '\0';
	}
	if (!g->first_signalled && strstr(g->buf, "data: first\n\n")) {
		g->first_signalled = true;
		sem_post(&sem_first_seen);
	}
	g->calls++;
	return g->stop_after && g->calls >= g->stop_after ? 1 : 0;
}

static int post_stream(const char *what, struct got *g)
{
	http_client *c;
	char url[128];
	int status = 0, rc;

	memset(g->buf, 0, 16);
	g->len = 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/r/%s", srv_port, what);
	assert_int_equal(http_client_new(&c), 0);
	rc = http_request_stream(c, &status, "POST", url, NULL, "{}", 2, got_data, g);
	http_client_free(c);
	(void)rc;
	return status;
}

static void wait_finished(int n)
{
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&mu);
		int f = finished;
		pthread_mutex_unlock(&mu);
		if (f >= n)
			return;
		struct timespec ts = { 0, 5 * 1000000L };
		nanosleep(&ts, NULL);
	}
	fail_msg("relay did not finish");
}

static int finished_now(void)
{
	int f;

	pthread_mutex_lock(&mu);
	f = finished;
	pthread_mutex_unlock(&mu);
	return f;
}

/* ---- tests --------------------------------------------------------------------- */

static void test_sse_byte_for_byte_and_aligned(void **state)
{
	static const char want[] = "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: {\"n\":3}\r\n\r\n"
	    "data: {\"n\":4}\n\ndata: [DONE]\n\n";
	struct got *g = calloc(1, sizeof(*g));
	int n0 = finished_now();

	chunks_aligned = true;
	memset(seen_tail, 0, sizeof(seen_tail));
	assert_int_equal(post_stream("sse", g), 200);
	assert_string_equal(g->buf, want);
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_COMPLETE);
	assert_true(last.event_stream);
	assert_int_equal(last.bytes_out, strlen(want));
	assert_int_equal(last.bytes_in, strlen(want));
	assert_true(chunks_aligned);
	assert_false(handed_back);
	free(g);
}

static void test_byte_by_byte_aligned(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	int n0 = finished_now();

	chunks_aligned = true;
	memset(seen_tail, 0, sizeof(seen_tail));
	assert_int_equal(post_stream("bytes", g), 200);
	assert_string_equal(g->buf, BYTES_STREAM);
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_COMPLETE);
	assert_int_equal(last.chunks_in, strlen(BYTES_STREAM));
	/* forwarded event by event, never a piece of one */
	assert_true(chunks_aligned);
	assert_true(last.writes <= 9);
	free(g);
}

static void test_first_event_before_last(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	int n0 = finished_now();

	/* the upstream sends "last" only after the client got "first": this
	 * completes only if the relay streams */
	assert_int_equal(post_stream("wait", g), 200);
	assert_true(g->first_signalled);
	assert_string_equal(g->buf, "data: first\n\ndata: last\n\n");
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_COMPLETE);
	free(g);
}

static void test_upstream_dies_mid_stream(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	json_t *ev;
	const char *p;
	int n0 = finished_now();

	assert_int_equal(post_stream("die", g), 200);
	/* the complete events, no half event, then the error, and no [DONE]:
	 * the stream failed */
	assert_memory_equal(g->buf, "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: {\"error\":", 44);
	assert_null(strstr(g->buf, "par"));
	p = strstr(g->buf, "data: {\"error\"");
	assert_non_null(p);
	ev = json_loadb(p + 6, strcspn(p + 6, "\n"), 0, NULL);
	assert_non_null(ev);
	assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "error"),
	    "code")), "upstream_error");
	json_decref(ev);
	assert_null(strstr(g->buf, "[DONE]"));
	assert_int_equal(p[strlen(p) - 1], '\n');
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_UPSTREAM);
	assert_int_equal(last.err, TROOP_EUPSTREAM);
	free(g);
}

static void test_connect_failure_hands_back(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	int n0 = finished_now();

	assert_int_equal(post_stream("dead", g), 502);
	assert_non_null(strstr(g->buf, "\"upstream_error\""));
	wait_finished(n0 + 1);
	assert_true(handed_back);
	assert_int_equal(last.end, RELAY_END_UPSTREAM);
	assert_int_equal(last.status, 0);
	assert_int_equal(last.bytes_out, 0);
	free(g);
}

static void test_reject_hands_back(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	int n0 = finished_now();

	assert_int_equal(post_stream("busy503", g), 503);
	assert_non_null(strstr(g->buf, "upstream busy (503)"));
	wait_finished(n0 + 1);
	assert_true(handed_back);
	assert_int_equal(last.end, RELAY_END_REJECTED);
	assert_int_equal(last.upstream_status, 503);
	free(g);
}

static void test_error_normalised(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	json_t *b;
	int n0 = finished_now();

	assert_int_equal(post_stream("err404", g), 404);
	b = json_loads(g->buf, 0, NULL);
	assert_non_null(b);
	assert_string_equal(json_string_value(json_object_get(json_object_get(b, "error"),
	    "message")), "model 'x' not found");
	assert_string_equal(json_string_value(json_object_get(json_object_get(b, "error"),
	    "code")), "model_not_found");
	json_decref(b);
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_COMPLETE);
	assert_int_equal(last.status, 404);
	assert_false(handed_back);
	free(g);
}

static void test_json_passthrough(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	int n0 = finished_now();

	assert_int_equal(post_stream("json", g), 200);
	assert_string_equal(g->buf, "{\"a\":1}");
	wait_finished(n0 + 1);
	assert_false(last.event_stream);
	assert_int_equal(last.end, RELAY_END_COMPLETE);
	free(g);
}

static void test_client_gone_cancels_upstream(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	int n0 = finished_now();

	atomic_store(&up_saw_close, 0);
	g->stop_after = 2;
	(void)post_stream("slow", g);
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_CLIENT_GONE);
	/* the upstream connection is closed: its next write fails */
	for (int i = 0; i < 400 && !atomic_load(&up_saw_close); i++) {
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	assert_true(atomic_load(&up_saw_close));
	free(g);
}

/* keepalive_ms: the reply starts at the upstream's headers and carries
 * comment lines while the upstream is silent; the observer never sees
 * them.  Without it, nothing is sent before the first event. */
static void test_keepalive_while_upstream_silent(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	const char *ka, *tok;
	int n0 = finished_now();

	assert_int_equal(post_stream("ka-late", g), 200);
	ka = strstr(g->buf, ": keep-alive\n\n");
	tok = strstr(g->buf, "data: tok\n\n");
	assert_non_null(ka);
	assert_non_null(tok);
	assert_true(ka < tok);
	assert_true(strncmp(g->buf, ": keep-alive\n\n", 14) == 0);
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_COMPLETE);

	assert_int_equal(post_stream("late", g), 200);
	assert_string_equal(g->buf, "data: tok\n\n");
	wait_finished(n0 + 2);

	/* the upstream dies after its headers: the reply had begun, so the
	 * client gets the error event (no [DONE]) rather than a hand-back */
	assert_int_equal(post_stream("ka-late-die", g), 200);
	assert_non_null(strstr(g->buf, "data: {\"error\""));
	assert_null(strstr(g->buf, "[DONE]"));
	wait_finished(n0 + 3);
	assert_int_equal(last.end, RELAY_END_UPSTREAM);
	assert_false(handed_back);
	free(g);
}

static void test_abort_ends_with_error_event(void **state)
{
	struct got *g = calloc(1, sizeof(*g));
	const char *p;
	int n0 = finished_now();

	assert_int_equal(post_stream("abort", g), 200);
	assert_memory_equal(g->buf, "data: tick\n\n", 12);
	p = strstr(g->buf, "data: {\"error\"");
	assert_non_null(p);
	assert_non_null(strstr(p, "\"timeout\""));
	assert_non_null(strstr(p, "past max_seconds"));
	assert_null(strstr(p, "[DONE]"));
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_ABORTED);
	assert_int_equal(last.err, TROOP_ETIMEOUT);
	free(g);
}

static void test_backpressure_pauses_upstream(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char req[256], buf[65536];
	unsigned long prev = 0, cur;
	size_t body = 0, bad = 0;
	int n0 = finished_now(), stable = 0, rcv = 64 * 1024;
	/* body bytes, after the head, in chunked framing */
	char *all;
	size_t used = 0, cap = BIG_TOTAL + (1u << 20);

	atomic_store(&up_written, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)srv_port);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "POST /r/big HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
	    "Connection: close\r\n\r\n{}");
	send_all(fd, req, strlen(req));
	/* read nothing until the upstream stops making progress */
	while (stable < 30) {
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
		cur = atomic_load(&up_written);
		stable = cur == prev && cur > 0 ? stable + 1 : 0;
		prev = cur;
	}
	assert_true(cur < BIG_TOTAL / 2);  /* the relay did not swallow it all */
	all = malloc(cap);
	assert_non_null(all);
	for (;;) {
		ssize_t k = recv(fd, buf, sizeof(buf), 0);
		if (k <= 0)
			break;
		assert_true(used + (size_t)k <= cap);
		memcpy(all + used, buf, (size_t)k);
		used += (size_t)k;
	}
	close(fd);
	/* de-chunk and check every byte */
	{
		char *p = strstr(all, "\r\n\r\n"), *end = all + used;
		assert_non_null(p);
		p += 4;
		while (p < end) {
			char *e;
			unsigned long n = strtoul(p, &e, 16);
			if (n == 0)
				break;
			p = e + 2;
			for (unsigned long j = 0; j < n; j++)
				if ((unsigned char)p[j] != big_byte(body + j))
					bad++;
			body += n;
			p += n + 2;
		}
	}
	free(all);
	assert_int_equal(bad, 0);
	assert_int_equal(body, BIG_TOTAL);
	wait_finished(n0 + 1);
	assert_int_equal(last.end, RELAY_END_COMPLETE);
	assert_true(last.pauses > 0);
	assert_int_equal(last.bytes_out, BIG_TOTAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sse_byte_for_byte_and_aligned),
		cmocka_unit_test(test_byte_by_byte_aligned),
		cmocka_unit_test(test_first_event_before_last),
		cmocka_unit_test(test_upstream_dies_mid_stream),
		cmocka_unit_test(test_connect_failure_hands_back),
		cmocka_unit_test(test_reject_hands_back),
		cmocka_unit_test(test_error_normalised),
		cmocka_unit_test(test_json_passthrough),
		cmocka_unit_test(test_client_gone_cancels_upstream),
		cmocka_unit_test(test_abort_ends_with_error_event),
		cmocka_unit_test(test_keepalive_while_upstream_silent),
		cmocka_unit_test(test_backpressure_pauses_upstream),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
