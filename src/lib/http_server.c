/*
 * http_server.c - the multi-threaded HTTP server of http_server.h, on
 * libevent 2.1's evhttp.
 *
 * Each server thread owns an event_base, an evhttp and its own listening
 * socket; all sockets are bound to one address with SO_REUSEPORT, so the
 * kernel spreads new connections over the threads and nothing is shared on
 * the request path except a few atomic counters.
 *
 * evhttp in 2.1 gives no hook between "connection accepted" and "request
 * complete", so this file keeps a small record per connection (struct
 * srv_conn) built from the bufferevent callback:
 *   - it counts open connections against max_conns and closes extra ones;
 *   - it sets TCP_NODELAY;
 *   - it tells a handler that its client went away (evhttp's close
 *     callback, plus a read watcher while a handler is working, because
 *     evhttp stops reading once a request is complete);
 *   - it watches the connection's output and rewrites the few error pages
 *     evhttp writes on its own (400 malformed request, 413 body too large,
 *     417, 501) into the JSON error shape before they reach the socket.
 *     evhttp enforces the body and header limits itself (Content-Length and
 *     chunked bodies alike); only its HTML is replaced.
 *
 * Lifetimes: a connection record is freed from evhttp's close callback;
 * the server frees connections only from its own events, never from inside
 * a callback of that connection.  An http_req lives from the request
 * callback until its reply ends (or, once the client has gone, until the
 * handler's on_close returns or its final reply call).
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <sodium.h>

#include "error.h"
#include "http_check.h"
#include "log.h"

#define HTTP_MAX_THREADS 256
#define HTTP_MAX_PARAMS 8
#define HTTP_MAX_SEGS 16
#define HTTP_MAX_ROUTES 256
#define HTTP_LISTEN_BACKLOG 1024
#define SHUTDOWN_FLUSH_MS 200   /* after the drain: the loops write what is queued */
/* http_stream_on_drain fires once at most this much output is queued. */
#define HTTP_STREAM_LOW_WATER (16u * 1024)
/* A stream whose client reads slower than the handler writes, and whose
 * handler ignores backpressure, is cut off here. */
#define HTTP_STREAM_MAX_PENDING (64u * 1024 * 1024)
/* fd -> connection table bound. */
#define HTTP_MAX_FDS (1 << 20)
/* Descriptors kept back from the connection limit (listeners, databases,
 * outgoing connections, logs), plus 1/16 of the rest. */
#define HTTP_FD_RESERVE 64
#define HTTP_MAX_CONNS_CAP (1 << 16)
/* Per-address connection counts: a hash table of counters (keyed by a
 * secret hash, so nobody can aim a collision at someone else). */
#define HTTP_ADDR_SLOTS (1 << 16)
/* accept() out of descriptors: pause this long, log once per interval. */
#define HTTP_ACCEPT_PAUSE_MS 100
#define HTTP_LOG_INTERVAL_S 10
/* After an error reply, how long the client has to read it. */
#define HTTP_LINGER_MS 2000

#define CTL_CLOSE_LISTENER 1

struct route {
	char *method;               /* "GET", ..., or "*" */
	char *pattern;              /* as registered, for messages */
	char *segbuf;               /* pattern segments, NUL-separated */
	const char *seg[HTTP_MAX_SEGS];
	size_t seglen[HTTP_MAX_SEGS];
	bool is_param[HTTP_MAX_SEGS];
	int nsegs;
	bool has_params;
	http_handler_fn fn;
	void *arg;
};

struct srv_thread;

struct srv_conn {
	struct srv_thread *th;
	struct srv_conn *cprev, *cnext;     /* th->conns */
	struct bufferevent *bev;
	struct evhttp_connection *evcon;    /* set once initialised */
	struct evbuffer_cb_entry *out_cb;
	struct event *ev;                   /* deferred work: init, rewrite */
	struct event *watch;                /* client-gone watcher */
	http_req *active;                   /* request a handler is working on */
	evutil_socket_t fd;
	size_t err_at;                      /* where evhttp's error page starts */
	int err_status;
	bool need_init;
	bool reject;                        /* over max_conns */
	bool err_pending;
	bool writing;                       /* output written by us, not evhttp */
	/* strict framing and deadlines */
	struct evbuffer_cb_entry *in_cb;
	struct event *dl_ev;                /* head/body deadline, linger */
	http_check chk;
	int addr_slot;                      /* s->addr_conns index, -1: none */
	int fail_status;                    /* error to answer, then close */
	const char *fail_msg;
	bool fail_written;                  /* answered; closing */
	bool close_now;
};

struct srv_thread {
	http_server *s;
	int index;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	evutil_socket_t lfd;                /* until handed to evhttp */
	struct event *ctl_ev;
	atomic_int ctl;
	pthread_t tid;
	bool created;                       /* thread exists, not yet joined */
	bool inited;                        /* init hook succeeded */
	void *tctx;
	struct evbuffer *tmp;               /* scratch for stream chunks */
	struct srv_conn *conns;             /* open connections */
	http_req *live;                     /* requests handed to handlers */
	http_req *cur;                      /* the one whose handler runs now */
	struct event *accept_ev;            /* resumes accept() after EMFILE */
	long accept_fails;                  /* since the last log line */
	long long accept_log_s;
};

struct http_server {
	http_server_opts o;
	char *listen;
	char *name;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int nthreads;

	struct route *routes;
	int nroutes;

	http_thread_init_fn init;
	http_thread_fini_fn fini;
	void *thread_arg;
	void (*shutdown_fn)(void *);
	void *shutdown_arg;

	struct srv_thread *threads;
	int port;
	atomic_int inflight;
	atomic_int nconns;
	atomic_llong last_reject_log;
	atomic_llong last_addr_log;
	atomic_llong last_slow_log;
	atomic_int *addr_conns;             /* HTTP_ADDR_SLOTS counters */
	unsigned char addr_key[16];         /* hash key for addr_conns */
	int stop_pipe[2];
	int sig_slot;                       /* sig_register's slot; -1 none */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n_ready, n_failed, n_closed;    /* under mu */
	int go;                             /* under mu: 1 serve, -1 abort */

	_Atomic(struct srv_conn *) *byfd;   /* fd -> connection */
	int byfd_len;

	bool started;
	bool stopped;
};

struct http_req {
	struct evhttp_request *ev;          /* NULL once the client is gone */
	struct srv_thread *th;
	struct srv_conn *conn;
	http_req *prev, *next;              /* th->live */
	const char *method;
	char *path;                         /* path and query, one allocation */
	char *query;
	int nparams;
	const char *pname[HTTP_MAX_PARAMS];
	size_t pnamelen[HTTP_MAX_PARAMS];
	char *pval[HTTP_MAX_PARAMS];
	struct evkeyvalq qparams;
	bool qparsed;
	char *body;
	size_t body_len;
	bool body_read;
	char peer[INET6_ADDRSTRLEN];
	char acct[12];
	long long t0_us;
	int status;
	bool streaming;
	bool gone;                          /* client disconnected */
	bool in_close;                      /* inside the on_close callback */
	void (*close_cb)(http_req *, void *);
	void *close_arg;
	void (*drain_cb)(http_req *, void *);
	void *drain_arg;
	struct event *defer_ev;             /* runs drain_cb */
};

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- error bodies ---------------------------------------------------------- */

/* {"error":{"message","type","code"}}; a message that is not valid UTF-8
 * is replaced rather than dropping the whole body. */
static json_t *error_body(int err, const char *msg)
{
	json_t *j = json_pack("{s:{s:s,s:s,s:s}}", "error", "message", msg,
	    "type", troop_err_type(err), "code", troop_err_code(err));

	if (j == NULL)
		j = json_pack("{s:{s:s,s:s,s:s}}", "error", "message",
		    "(message not valid UTF-8)", "type", troop_err_type(err),
		    "code", troop_err_code(err));
	return j;
}

/* ---- logging ------------------------------------------------------------- */

/* The path as it may appear in a log line: printable, no spaces, bounded. */
static void log_path(char *out, size_t outlen, const char *path)
{
	size_t i = 0;

	for (; path != NULL && path[i] != '\0' && i + 1 < outlen; i++) {
		unsigned char ch = (unsigned char)path[i];
		out[i] = (ch <= 0x20 || ch >= 0x7f || ch == '"') ? '?' : (char)ch;
	}
	out[i] = '\0';
}

static void log_request(const http_server *s, const char *method,
    const char *path, int status, long long us, const char *acct)
{
	char p[256];

	if (s->o.quiet)
		return;
	log_path(p, sizeof(p), path);
	if (s->name != NULL)
		log_info("request", "srv=%s method=%s path=%s status=%d us=%lld acct=%s",
		    s->name, method, p, status, us, acct[0] ? acct : "-");
	else
		log_info("request", "method=%s path=%s status=%d us=%lld acct=%s",
		    method, p, status, us, acct[0] ? acct : "-");
}

/* ---- requests: lifetime ------------------------------------------------------ */

static void conn_watch(struct srv_conn *c, bool on);
static void conn_deadline_update(struct srv_conn *c);

static void req_unlink(http_req *r)
{
	struct srv_thread *th = r->th;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else if (th->live == r)
		th->live = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	if (th->cur == r)
		th->cur = NULL;
}

static void req_free(http_req *r)
{
	for (int i = 0; i < r->nparams; i++)
		free(r->pval[i]);
	if (r->qparsed)
		evhttp_clear_headers(&r->qparams);
	if (r->defer_ev != NULL)
		event_free(r->defer_ev);
	free(r->body);
	free(r->path);
	free(r);
}

/* The request is over (replied, or abandoned): log it, count it out, free
 * it.  The evhttp_request is libevent's from here on (or already gone). */
static void req_finish(http_req *r)
{
	http_server *s = r->th->s;

	log_request(s, r->method, r->path, r->status, now_us() - r->t0_us, r->acct);
	if (r->conn != NULL) {
		if (r->conn->active == r)
			r->conn->active = NULL;
		conn_watch(r->conn, false);
		conn_deadline_update(r->conn);
	}
	req_unlink(r);
	atomic_fetch_sub(&s->inflight, 1);
	req_free(r);
}

/* The client disconnected while a handler held `r` (called from the
 * connection's close callback). */
static void req_client_gone(http_req *r)
{
	/* On EOF or timeout evhttp detaches a request the user still holds and
	 * leaves freeing it to the user; otherwise it frees it itself right
	 * after the close callback. */
	if (r->ev != NULL && evhttp_request_get_connection(r->ev) == NULL)
		evhttp_request_free(r->ev);
	r->ev = NULL;
	r->conn = NULL;
	r->gone = true;
	if (!r->streaming)
		r->status = 499;
	if (r->close_cb != NULL) {
		r->in_close = true;
		r->close_cb(r, r->close_arg);
		req_finish(r);
	}
	/* else the handler still owns r; its final reply call frees it. */
}

/* ---- connections ------------------------------------------------------------- */

static void conn_set_byfd(http_server *s, evutil_socket_t fd, struct srv_conn *c)
{
	if (s->byfd != NULL && fd >= 0 && fd < s->byfd_len)
		atomic_store(&s->byfd[fd], c);
}

static void conn_clear_byfd(http_server *s, struct srv_conn *c)
{
	struct srv_conn *expect = c;

	if (s->byfd != NULL && c->fd >= 0 && c->fd < s->byfd_len)
		atomic_compare_exchange_strong(&s->byfd[c->fd], &expect, NULL);
}

static struct srv_conn *conn_lookup(http_server *s, struct evhttp_connection *evcon)
{
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct srv_conn *c;

	if (evcon == NULL || s->byfd == NULL)
		return NULL;
	bev = evhttp_connection_get_bufferevent(evcon);
	fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	if (fd < 0 || fd >= s->byfd_len)
		return NULL;
	c = atomic_load(&s->byfd[fd]);
	return (c != NULL && c->evcon == evcon) ? c : NULL;
}

static void conn_free(struct srv_conn *c)
{
	struct srv_thread *th = c->th;
	http_server *s = th->s;

	if (c->cprev != NULL)
		c->cprev->cnext = c->cnext;
	else if (th->conns == c)
		th->conns = c->cnext;
	if (c->cnext != NULL)
		c->cnext->cprev = c->cprev;
	conn_clear_byfd(s, c);
	if (c->out_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
	if (c->in_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
	if (c->dl_ev != NULL)
		event_free(c->dl_ev);
	if (c->addr_slot >= 0)
		atomic_fetch_sub(&s->addr_conns[c->addr_slot], 1);
	if (c->watch != NULL)
		event_free(c->watch);
	if (c->ev != NULL)
		event_free(c->ev);
	free(c);
	atomic_fetch_sub(&s->nconns, 1);
}

/* evhttp is freeing the connection (client gone, timeout, error, reply
 * done with Connection: close, or server shutdown). */
static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct srv_conn *c = arg;
	http_req *r = c->active;

	c->active = NULL;
	if (r != NULL)
		req_client_gone(r);
	conn_free(c);
}

static void conn_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_conn *c = arg;
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n > 0)
		return;         /* a pipelined request: evhttp sees EOF later */
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(c->watch, NULL);
		return;
	}
	/* EOF or reset while a handler works: drop the connection; the close
	 * callback tells the handler.  c is freed inside. */
	evhttp_connection_free(c->evcon);
}

static void conn_watch(struct srv_conn *c, bool on)
{
	if (!on) {
		if (c->watch != NULL)
			event_del(c->watch);
		return;
	}
	if (c->evcon == NULL || c->fd < 0)
		return;
	if (c->watch == NULL)
		c->watch = event_new(c->th->base, c->fd, EV_READ, conn_watch_cb, c);
	if (c->watch != NULL)
		event_add(c->watch, NULL);
}

static const char *status_reason(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 501: return "Not Implemented";
	default: return status >= 500 ? "Server Error" : "Client Error";
	}
}

/* Replace the error page evhttp wrote on its own (from c->err_at to the
 * end of the output) with the JSON error shape.  Runs before the output
 * reaches the socket: the page was written in this loop iteration and the
 * socket write waits for the next poll. */
static void conn_rewrite_error(struct srv_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer *keep = NULL;
	struct evbuffer_ptr pos;
	char ver[9] = "HTTP/1.1";
	const char *msg;
	json_t *j;
	char *body = NULL;
	bool frozen;
	int status = c->err_status;
	int err;

	c->err_pending = false;
	if (c->err_at >= evbuffer_get_length(out))
		return;
	if (evbuffer_ptr_set(out, &pos, c->err_at, EVBUFFER_PTR_SET) == 0)
		(void)evbuffer_copyout_from(out, &pos, ver, 8);
	ver[8] = '\0';

	switch (status) {
	case 413:
		err = TROOP_ETOOLARGE;
		msg = "request body too large";
		break;
	case 405:
	case 501:
		err = TROOP_EMETHOD;
		msg = "request method not supported";
		break;
	case 417:
		err = TROOP_EINVAL;
		msg = "unsupported Expect header";
		break;
	default:
		err = TROOP_EINVAL;
		msg = "malformed HTTP request (bad request line, headers or body framing, "
		    "or headers too large)";
		break;
	}
	j = error_body(err, msg);
	body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	keep = evbuffer_new();
	if (body == NULL || keep == NULL)
		goto done;      /* leave evhttp's page as it is */

	c->writing = true;
	frozen = evbuffer_drain(out, 0) != 0;
	evbuffer_unfreeze(out, 1);
	if (c->err_at > 0)
		evbuffer_remove_buffer(out, keep, c->err_at);
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add_buffer(out, keep);
	evbuffer_add_printf(out, "%s %d %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    ver, status, status_reason(status), strlen(body), body);
	if (frozen)
		evbuffer_freeze(out, 1);
	c->writing = false;
	log_request(c->th->s, "-", "-", status, 0, "");
done:
	if (keep != NULL)
		evbuffer_free(keep);
	free(body);
}

/* ---- connections: strict framing, deadlines, per-address limit ------------ */

/* Log at most one line per HTTP_LOG_INTERVAL_S for `last`. */
static bool log_due(atomic_llong *last)
{
	long long now = now_us() / 1000000;
	long long prev = atomic_load(last);

	return now - prev >= HTTP_LOG_INTERVAL_S &&
	    atomic_compare_exchange_strong(last, &prev, now);
}

static void conn_arm(struct srv_conn *c, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (c->dl_ev != NULL)
		evtimer_add(c->dl_ev, &tv);
}

/* Deadline for the phase the connection's request is in: the whole head,
 * or the whole body, from now; none between requests. */
static void conn_deadline_update(struct srv_conn *c)
{
	const http_server *s = c->th->s;

	if (c->fail_written || c->dl_ev == NULL)
		return;
	switch (c->chk.phase) {
	case HTTP_CHECK_HEAD:
		conn_arm(c, s->o.header_timeout_s * 1000);
		break;
	case HTTP_CHECK_BODY:
		conn_arm(c, s->o.body_timeout_s * 1000);
		break;
	default:
		evtimer_del(c->dl_ev);
		break;
	}
}

/* Answer `status` (JSON error shape) and close once it is written, or
 * after HTTP_LINGER_MS.  Takes effect from the deferred event: never
 * inside evhttp's callbacks. */
static void conn_fail(struct srv_conn *c, int status, const char *msg)
{
	if (c->fail_status != 0)
		return;
	c->fail_status = status;
	c->fail_msg = msg;
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	event_active(c->ev, EV_TIMEOUT, 1);
}

static void conn_write_fail(struct srv_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const char *code;
	json_t *j;
	char *body;
	bool frozen;
	int err;

	switch (c->fail_status) {
	case 405: err = TROOP_EMETHOD; code = troop_err_code(err); break;
	case 408: err = TROOP_EINVAL; code = "request_timeout"; break;
	case 411: err = TROOP_EINVAL; code = "length_required"; break;
	default: err = TROOP_EINVAL; code = troop_err_code(err); break;
	}
	j = json_pack("{s:{s:s,s:s,s:s}}", "error", "message", c->fail_msg,
	    "type", troop_err_type(err), "code", code);
	body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	c->writing = true;
	frozen = evbuffer_drain(out, 0) != 0;
	if (frozen)
		evbuffer_unfreeze(out, 1);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s", c->fail_status,
	    status_reason(c->fail_status), body != NULL ? strlen(body) : 0,
	    c->fail_status == 405 ? "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n" : "",
	    body != NULL ? body : "");
	if (frozen)
		evbuffer_freeze(out, 1);
	c->writing = false;
	free(body);
	/* no more requests from this connection: evhttp must not read on */
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
	c->fail_written = true;
	log_request(c->th->s, "-", "-", c->fail_status, 0, "");
	conn_arm(c, HTTP_LINGER_MS);
}

/* Raw bytes the client sent, before evhttp parses them. */
static void conn_in_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct srv_conn *c = arg;
	struct evbuffer_iovec vec[16];
	struct evbuffer_ptr pos;
	size_t left = info->n_added;
	uint64_t reqs = c->chk.requests;
	int phase = c->chk.phase;

	if (info->n_added == 0)
		return;
	if (c->fail_status != 0) {
		evbuffer_drain(buf, evbuffer_get_length(buf));
		return;
	}
	if (evbuffer_ptr_set(buf, &pos, info->orig_size, EVBUFFER_PTR_SET) != 0)
		return;
	while (left > 0) {
		int n = evbuffer_peek(buf, (ev_ssize_t)left, &pos, vec, 16);
		size_t took = 0;

		if (n <= 0)
			break;
		for (int i = 0; i < n && i < 16 && left > 0; i++) {
			size_t len = vec[i].iov_len < left ? vec[i].iov_len : left;
			int st = http_check_feed(&c->chk, vec[i].iov_base, len, NULL);

			if (st != 0) {
				conn_fail(c, st, c->chk.msg);
				return;
			}
			left -= len;
			took += len;
		}
		if (left > 0 && evbuffer_ptr_set(buf, &pos, took, EVBUFFER_PTR_ADD) != 0)
			break;
	}
	if (c->chk.requests != reqs || c->chk.phase != phase)
		conn_deadline_update(c);
}

static void conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_conn *c = arg;
	http_server *s = c->th->s;

	if (c->fail_written) {
		c->close_now = true;
		event_active(c->ev, EV_TIMEOUT, 1);
		return;
	}
	if (c->active != NULL)
		return;         /* a handler works; req_finish re-arms */
	if (log_due(&s->last_slow_log))
		log_warn("slow_client", "srv=%s closing a connection that did not send its "
		    "request %s within %d s (logged once per %d s)", s->name ? s->name : "http",
		    c->chk.phase == HTTP_CHECK_BODY ? "body" : "head",
		    c->chk.phase == HTTP_CHECK_BODY ? s->o.body_timeout_s : s->o.header_timeout_s,
		    HTTP_LOG_INTERVAL_S);
	conn_fail(c, 408, c->chk.phase == HTTP_CHECK_BODY ?
	    "request body not received in time" : "request head not received in time");
}

/* The counter slot of the peer's address (IPv4, or an IPv6 /64), or -1. */
static int conn_addr_slot(const http_server *s, evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	unsigned char key[9];
	unsigned char h[crypto_shorthash_BYTES];
	size_t klen;

	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return -1;
	if (ss.ss_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		klen = 5;
	} else if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			key[0] = 4;
			memcpy(key + 1, a->s6_addr + 12, 4);
			klen = 5;
		} else {
			key[0] = 6;
			memcpy(key + 1, a->s6_addr, 8);
			klen = 9;
		}
	} else {
		return -1;
	}
	crypto_shorthash(h, key, klen, s->addr_key);
	return (int)(((unsigned)h[0] | (unsigned)h[1] << 8) % HTTP_ADDR_SLOTS);
}

/* Deferred per-connection work, on this server thread's loop but outside
 * any of evhttp's callbacks for the connection. */
static void conn_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct srv_conn *c = arg;
	http_server *s = c->th->s;

	if (c->need_init) {
		struct bufferevent *bev = c->bev;
		bufferevent_data_cb rcb, wcb;
		bufferevent_event_cb ecb;
		void *cbarg = NULL;
		int one = 1;

		c->need_init = false;
		bufferevent_getcb(bev, &rcb, &wcb, &ecb, &cbarg);
		if (ecb == NULL || cbarg == NULL) {
			/* evhttp dropped the connection before we saw it
			 * (allocation failure); our reference kept bev. */
			conn_free(c);
			bufferevent_decref(bev);
			return;
		}
		c->evcon = cbarg;
		c->fd = bufferevent_getfd(bev);
		evhttp_connection_set_closecb(c->evcon, conn_closed, c);
		if (c->fd >= 0)
			(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_set_byfd(s, c->fd, c);
		bufferevent_decref(bev);
		c->addr_slot = conn_addr_slot(s, c->fd);
		if (c->addr_slot >= 0 && !c->reject &&
		    atomic_fetch_add(&s->addr_conns[c->addr_slot], 1) >= s->o.max_conns_per_addr) {
			if (log_due(&s->last_addr_log))
				log_warn("conn_limit", "srv=%s max_conns_per_addr=%d reached by a "
				    "client; closing its new connections (logged once per %d s)",
				    s->name ? s->name : "http", s->o.max_conns_per_addr,
				    HTTP_LOG_INTERVAL_S);
			evhttp_connection_free(c->evcon);       /* frees c */
			return;
		} else if (c->reject) {
			c->addr_slot = -1;
		}
		if (c->reject) {
			long long now = now_us() / 1000000;
			long long last = atomic_load(&s->last_reject_log);

			if (now != last && atomic_compare_exchange_strong(&s->last_reject_log, &last, now))
				log_warn("conn_limit", "max_conns=%d reached; closing new connections",
				    s->o.max_conns);
			evhttp_connection_free(c->evcon);       /* frees c */
			return;
		}
	}
	if (c->err_pending)
		conn_rewrite_error(c);
	if (c->evcon == NULL)
		return;
	if (c->close_now) {
		evhttp_connection_free(c->evcon);       /* frees c */
		return;
	}
	if (c->fail_status != 0 && !c->fail_written) {
		if (c->active != NULL) {
			/* a handler still answers an earlier request: drop it all */
			evhttp_connection_free(c->evcon);
			return;
		}
		conn_write_fail(c);
	}
}

static void req_schedule_drain(http_req *r);

static void conn_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct srv_conn *c = arg;
	struct evbuffer_ptr pos;
	char head[12];
	bool frozen, copied;
	int status;

	if (info->n_added == 0) {
		if (info->n_deleted > 0 && c->active != NULL && c->active->drain_cb != NULL &&
		    evbuffer_get_length(buf) <= HTTP_STREAM_LOW_WATER)
			req_schedule_drain(c->active);
		if (info->n_deleted > 0 && c->fail_written && evbuffer_get_length(buf) == 0) {
			c->close_now = true;
			event_active(c->ev, EV_TIMEOUT, 1);
		}
		return;
	}
	if (c->writing || c->err_pending)
		return;
	/* evhttp wrote a response on its own: "100 Continue" or an error page. */
	/* evhttp may have frozen the buffer's start (it does on a kept-alive
	 * connection that it is about to close), and copyout refuses a frozen
	 * buffer: thaw it for the peek and restore the state. */
	frozen = evbuffer_drain(buf, 0) != 0;
	if (frozen)
		evbuffer_unfreeze(buf, 1);
	copied = evbuffer_ptr_set(buf, &pos, info->orig_size, EVBUFFER_PTR_SET) == 0 &&
	    evbuffer_copyout_from(buf, &pos, head, sizeof(head)) == (ev_ssize_t)sizeof(head);
	if (frozen)
		evbuffer_freeze(buf, 1);
	if (!copied)
		return;
	if (memcmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ' ||
	    head[9] < '1' || head[9] > '5' || head[10] < '0' || head[10] > '9' ||
	    head[11] < '0' || head[11] > '9')
		return;
	status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
	if (status < 400)
		return;
	c->err_pending = true;
	c->err_at = info->orig_size;
	c->err_status = status;
	event_active(c->ev, EV_TIMEOUT, 1);
}

/* evhttp's bufferevent factory: called once per accepted connection. */
static struct bufferevent *conn_new(struct event_base *base, void *arg)
{
	struct srv_thread *th = arg;
	http_server *s = th->s;
	struct srv_conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);

	if (c == NULL || bev == NULL)
		goto fail;
	c->th = th;
	c->bev = bev;
	c->fd = -1;
	c->addr_slot = -1;
	c->need_init = true;
	http_check_init(&c->chk);
	c->ev = event_new(base, -1, 0, conn_deferred, c);
	c->dl_ev = evtimer_new(base, conn_deadline_cb, c);
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), conn_out_cb, c);
	c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), conn_in_cb, c);
	if (c->ev == NULL || c->dl_ev == NULL || c->out_cb == NULL || c->in_cb == NULL)
		goto fail;
	/* the head's deadline runs from the accept: a silent client too */
	conn_arm(c, s->o.header_timeout_s * 1000);
	if (atomic_fetch_add(&s->nconns, 1) >= s->o.max_conns)
		c->reject = true;
	/* Keep bev alive until conn_deferred has looked at it. */
	bufferevent_incref(bev);
	c->cnext = th->conns;
	if (th->conns != NULL)
		th->conns->cprev = c;
	th->conns = c;
	event_active(c->ev, EV_TIMEOUT, 1);
	return bev;
fail:
	if (c != NULL && c->ev != NULL)
		event_free(c->ev);
	if (c != NULL && c->dl_ev != NULL)
		event_free(c->dl_ev);
	free(c);
	if (bev != NULL)
		bufferevent_free(bev);
	return NULL;            /* evhttp makes a plain one; not tracked */
}

/* ---- routing -------------------------------------------------------------------- */

/* 2: method matches exactly, 1: by wildcard or HEAD served by GET, 0: no. */
static int method_match(const struct route *rt, const char *method)
{
	if (strcmp(rt->method, method) == 0)
		return 2;
	if (strcmp(rt->method, "*") == 0)
		return 1;
	if (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0)
		return 1;
	return 0;
}

/* Does `path` match rt?  Fills segment start/length of params if asked. */
static bool path_match(const struct route *rt, const char *path,
    const char **pstart, size_t *plen)
{
	const char *p = path;
	int np = 0;

	if (!rt->has_params)
		return strcmp(rt->pattern, path) == 0;
	for (int i = 0; i < rt->nsegs; i++) {
		const char *seg;
		size_t len;

		if (*p != '/')
			return false;
		seg = ++p;
		while (*p != '\0' && *p != '/')
			p++;
		len = (size_t)(p - seg);
		if (rt->is_param[i]) {
			if (len == 0)
				return false;
			if (pstart != NULL) {
				pstart[np] = seg;
				plen[np] = len;
			}
			np++;
		} else if (len != rt->seglen[i] || memcmp(seg, rt->seg[i], len) != 0) {
			return false;
		}
	}
	return *p == '\0';
}

static const struct route *route_find(const http_server *s, const char *method,
    const char *path, const char **pstart, size_t *plen)
{
	const struct route *best = NULL;
	int best_m = 0;

	/* Exact routes win over patterns; an exact method over "*" or HEAD. */
	for (int pass = 0; pass < 2 && best == NULL; pass++) {
		for (int i = 0; i < s->nroutes; i++) {
			const struct route *rt = &s->routes[i];
			int m;

			if (rt->has_params != (pass == 1))
				continue;
			m = method_match(rt, method);
			if (m <= best_m || !path_match(rt, path, NULL, NULL))
				continue;
			best = rt;
			best_m = m;
			if (m == 2)
				break;
		}
	}
	if (best != NULL && best->has_params)
		path_match(best, path, pstart, plen);
	return best;
}

/* Methods of the routes matching `path`, "GET, POST"; "" if none. */
static void route_allow(const http_server *s, const char *path, char *out, size_t outlen)
{
	size_t n = 0;

	out[0] = '\0';
	for (int i = 0; i < s->nroutes; i++) {
		const struct route *rt = &s->routes[i];
		bool dup = false;

		if (!path_match(rt, path, NULL, NULL))
			continue;
		for (int k = 0; k < i && !dup; k++)
			dup = strcmp(s->routes[k].method, rt->method) == 0 &&
			    path_match(&s->routes[k], path, NULL, NULL);
		if (dup)
			continue;
		n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%s%s",
		    n ? ", " : "", rt->method);
		if (n >= outlen) {
			out[outlen - 1] = '\0';
			return;
		}
	}
}

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	default: return "UNKNOWN";
	}
}

/* evhttp's request callback: a complete request (headers and body). */
static void on_request(struct evhttp_request *ev, void *arg)
{
	struct srv_thread *th = arg;
	http_server *s = th->s;
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(ev);
	const char *path = u != NULL ? evhttp_uri_get_path(u) : NULL;
	const char *query = u != NULL ? evhttp_uri_get_query(u) : NULL;
	const char *pstart[HTTP_MAX_PARAMS];
	size_t plen[HTTP_MAX_PARAMS];
	const struct route *rt;
	size_t lp, lq;
	http_req *r;

	if (path == NULL || path[0] == '\0')
		path = "/";
	if (query == NULL)
		query = "";
	lp = strlen(path);
	lq = strlen(query);
	r = calloc(1, sizeof(*r));
	if (r == NULL || (r->path = malloc(lp + lq + 2)) == NULL) {
		free(r);
		evhttp_send_error(ev, 500, NULL);       /* rewritten to JSON */
		return;
	}
	memcpy(r->path, path, lp + 1);
	r->query = r->path + lp + 1;
	memcpy(r->query, query, lq + 1);
	r->ev = ev;
	r->th = th;
	r->t0_us = now_us();
	r->method = method_name(evhttp_request_get_command(ev));
	if (evcon != NULL) {
		char *addr = NULL;
		ev_uint16_t port = 0;

		evhttp_connection_get_peer(evcon, &addr, &port);
		if (addr != NULL)
			snprintf(r->peer, sizeof(r->peer), "%s", addr);
	}
	r->conn = conn_lookup(s, evcon);
	if (r->conn != NULL)
		r->conn->active = r;
	r->next = th->live;
	if (th->live != NULL)
		th->live->prev = r;
	th->live = r;
	atomic_fetch_add(&s->inflight, 1);

	rt = route_find(s, r->method, r->path, pstart, plen);
	if (rt == NULL) {
		char allow[128];

		route_allow(s, r->path, allow, sizeof(allow));
		if (allow[0] != '\0') {
			http_reply_header(r, "Allow", allow);
			http_reply_error(r, TROOP_EMETHOD, "method %s not allowed here (allowed: %s)",
			    r->method, allow);
		} else {
			http_reply_error(r, TROOP_ENOTFOUND, "no such endpoint: %s %s",
			    r->method, r->path);
		}
		return;
	}
	if (rt->has_params) {
		int np = 0;

		for (int i = 0; i < rt->nsegs; i++) {
			char tmp[1024];
			size_t len;

			if (!rt->is_param[i])
				continue;
			len = plen[np];
			if (len >= sizeof(tmp)) {
				http_reply_error(r, TROOP_EINVAL, "path segment too long");
				return;
			}
			memcpy(tmp, pstart[np], len);
			tmp[len] = '\0';
			r->pname[np] = rt->seg[i];
			r->pnamelen[np] = rt->seglen[i];
			r->pval[np] = evhttp_uridecode(tmp, 0, NULL);
			r->nparams = ++np;
			if (r->pval[np - 1] == NULL) {
				http_reply_error(r, TROOP_ENOMEM, "out of memory");
				return;
			}
		}
	}

	th->cur = r;
	rt->fn(r, rt->arg);
	if (th->cur == r) {
		/* The handler answers later: notice if the client leaves. */
		th->cur = NULL;
		if (r->conn != NULL)
			conn_watch(r->conn, true);
	}
}

/* ---- the request: accessors ---------------------------------------------- */

const char *http_req_method(const http_req *r)
{
	return r->method;
}

const char *http_req_path(const http_req *r)
{
	return r->path;
}

const char *http_req_query(const http_req *r)
{
	return r->query;
}

const char *http_req_param(const http_req *r, const char *name)
{
	size_t n = strlen(name);

	for (int i = 0; i < r->nparams; i++)
		if (r->pnamelen[i] == n && memcmp(r->pname[i], name, n) == 0)
			return r->pval[i];
	return NULL;
}

const char *http_req_query_param(http_req *r, const char *name)
{
	if (!r->qparsed) {
		TAILQ_INIT(&r->qparams);
		r->qparsed = true;
		if (r->query[0] != '\0' && evhttp_parse_query_str(r->query, &r->qparams) != 0) {
			evhttp_clear_headers(&r->qparams);
			TAILQ_INIT(&r->qparams);
		}
	}
	return evhttp_find_header(&r->qparams, name);
}

int http_req_query_int(http_req *r, const char *name, int64_t def, int64_t min,
    int64_t max, int64_t *out)
{
	const char *v = http_req_query_param(r, name);
	const char *p = v;
	bool neg = false;
	uint64_t x = 0;

	*out = def;
	if (v == NULL)
		return 0;
	if (*p == '-') {
		neg = true;
		p++;
	}
	if (*p == '\0')
		goto bad;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
			goto bad;
		x = x * 10 + (uint64_t)(*p - '0');
	}
	if ((!neg && x > (uint64_t)INT64_MAX) || (neg && x > (uint64_t)INT64_MAX + 1))
		goto bad;
	{
		int64_t y = neg ? (x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x) :
		    (int64_t)x;

		if (y < min || y > max)
			goto bad;
		*out = y;
	}
	return 0;
bad:
	return troop_error_set(TROOP_EINVAL,
	    "query parameter '%s' must be an integer between %lld and %lld", name,
	    (long long)min, (long long)max);
}

const char *http_req_header(const http_req *r, const char *name)
{
	if (r->ev == NULL)
		return NULL;
	return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *http_req_body(const http_req *r, size_t *len)
{
	http_req *m = (http_req *)r;    /* the copy is a cache */

	if (!m->body_read && m->ev != NULL) {
		struct evbuffer *in = evhttp_request_get_input_buffer(m->ev);
		size_t n = evbuffer_get_length(in);

		if (n > 0 && (m->body = malloc(n + 1)) != NULL) {
			evbuffer_copyout(in, m->body, n);
			m->body[n] = '\0';
			m->body_len = n;
		}
		m->body_read = true;
	}
	if (len != NULL)
		*len = m->body != NULL ? m->body_len : 0;
	return m->body != NULL ? m->body : "";
}

const char *http_req_peer(const http_req *r)
{
	return r->peer;
}

void *http_req_thread_ctx(const http_req *r)
{
	return r->th->tctx;
}

int http_req_thread_index(const http_req *r)
{
	return r->th->index;
}

struct event_base *http_req_base(const http_req *r)
{
	return r->th->base;
}

void http_req_set_account(http_req *r, const char *account_id)
{
	size_t i = 0;

	for (; account_id != NULL && account_id[i] != '\0' && i < 8; i++) {
		unsigned char ch = (unsigned char)account_id[i];
		r->acct[i] = (ch <= 0x20 || ch >= 0x7f) ? '?' : (char)ch;
	}
	r->acct[i] = '\0';
}

/* ---- whole replies ------------------------------------------------------------- */

static void conn_writing(struct srv_conn *c, bool on)
{
	if (c != NULL)
		c->writing = on;
}

void http_reply_header(http_req *r, const char *name, const char *value)
{
	if (r == NULL || r->ev == NULL || r->in_close)
		return;
	evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

void http_reply_header_remove(http_req *r, const char *name)
{
	if (r == NULL || r->ev == NULL || r->in_close)
		return;
	while (evhttp_remove_header(evhttp_request_get_output_headers(r->ev), name) == 0)
		;
}

void http_reply(http_req *r, int status, const char *content_type,
    const void *body, size_t len)
{
	if (r == NULL || r->in_close)
		return;
	if (r->streaming) {
		/* misuse: finish the stream rather than corrupt it */
		if (len > 0)
			(void)http_stream_write(r, body, len);
		http_stream_end(r);
		return;
	}
	if (!r->gone)
		r->status = status;
	if (r->ev != NULL) {
		struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);

		if (content_type != NULL) {
			evhttp_remove_header(h, "Content-Type");
			evhttp_add_header(h, "Content-Type", content_type);
		}
		/* evhttp would send a body even where HTTP forbids one */
		if (strcmp(r->method, "HEAD") == 0) {
			char cl[24];

			snprintf(cl, sizeof(cl), "%zu", len);
			evhttp_remove_header(h, "Content-Length");
			evhttp_add_header(h, "Content-Length", cl);
		} else if (len > 0 && status >= 200 && status != 204 && status != 304) {
			evbuffer_add(evhttp_request_get_output_buffer(r->ev), body, len);
		}
		conn_writing(r->conn, true);
		evhttp_send_reply(r->ev, status, NULL, NULL);
		conn_writing(r->conn, false);
		r->ev = NULL;
	}
	req_finish(r);
}

void http_reply_json(http_req *r, int status, json_t *body)
{
	char *text;

	if (r == NULL || r->in_close) {
		json_decref(body);
		return;
	}
	text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL) {
		static const char oom[] = "{\"error\":{\"message\":\"cannot serialise the "
		    "response\",\"type\":\"server_error\",\"code\":\"internal_error\"}}";

		http_reply(r, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	http_reply(r, status, "application/json", text, strlen(text));
	free(text);
}

void http_reply_error(http_req *r, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (r == NULL || r->in_close)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_reply_json(r, troop_err_status(err), error_body(err, msg));
}

/* ---- streamed replies ---------------------------------------------------------- */

void http_stream_begin(http_req *r, int status, const char *content_type)
{
	if (r == NULL || r->in_close || r->streaming)
		return;
	r->streaming = true;
	if (r->ev == NULL)
		return;
	r->status = status;
	if (content_type != NULL) {
		struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);

		evhttp_remove_header(h, "Content-Type");
		evhttp_add_header(h, "Content-Type", content_type);
	}
	conn_writing(r->conn, true);
	evhttp_send_reply_start(r->ev, status, NULL);
	conn_writing(r->conn, false);
}

size_t http_stream_pending(const http_req *r)
{
	struct evhttp_connection *evcon;
	struct bufferevent *bev;

	if (r == NULL || r->ev == NULL)
		return 0;
	evcon = evhttp_request_get_connection(r->ev);
	bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
	return bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

int http_stream_write(http_req *r, const void *data, size_t len)
{
	struct evbuffer *tmp;

	if (r == NULL || r->ev == NULL || r->in_close)
		return troop_error_set(TROOP_EIO, "the client went away");
	if (!r->streaming)
		return troop_error_set(TROOP_ERR, "http_stream_write before http_stream_begin");
	if (len == 0)
		return 0;
	if (http_stream_pending(r) + len > HTTP_STREAM_MAX_PENDING)
		return troop_error_set(TROOP_ETOOLARGE,
		    "client reads too slowly: more than %u bytes queued",
		    HTTP_STREAM_MAX_PENDING);
	tmp = r->th->tmp;
	if (evbuffer_add(tmp, data, len) != 0)
		return troop_error_set(TROOP_ENOMEM, "out of memory queueing %zu bytes", len);
	conn_writing(r->conn, true);
	evhttp_send_reply_chunk(r->ev, tmp);
	conn_writing(r->conn, false);
	evbuffer_drain(tmp, evbuffer_get_length(tmp));  /* HEAD: nothing sent */
	return 0;
}

static void req_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	http_req *r = arg;
	void (*cb)(http_req *, void *) = r->drain_cb;

	if (cb == NULL || r->gone || http_stream_pending(r) > HTTP_STREAM_LOW_WATER)
		return;
	r->drain_cb = NULL;
	cb(r, r->drain_arg);        /* may end r */
}

static void req_schedule_drain(http_req *r)
{
	if (r->defer_ev == NULL)
		r->defer_ev = event_new(r->th->base, -1, 0, req_drain_cb, r);
	if (r->defer_ev != NULL)
		event_active(r->defer_ev, EV_TIMEOUT, 1);
}

void http_stream_on_drain(http_req *r, void (*cb)(http_req *r, void *arg), void *arg)
{
	if (r == NULL || r->gone || r->in_close)
		return;
	r->drain_cb = cb;
	r->drain_arg = arg;
	if (cb != NULL && http_stream_pending(r) <= HTTP_STREAM_LOW_WATER)
		req_schedule_drain(r);
}

void http_stream_end(http_req *r)
{
	if (r == NULL || r->in_close)
		return;
	if (!r->streaming) {
		http_reply(r, r->status ? r->status : 200, NULL, NULL, 0);
		return;
	}
	if (r->ev != NULL) {
		conn_writing(r->conn, true);
		evhttp_send_reply_end(r->ev);
		conn_writing(r->conn, false);
		r->ev = NULL;
	}
	req_finish(r);
}

void http_req_on_close(http_req *r, void (*cb)(http_req *r, void *arg), void *arg)
{
	if (r == NULL || r->in_close)
		return;
	r->close_cb = cb;
	r->close_arg = arg;
}

/* ---- server: configuration --------------------------------------------------- */

/* "host:port", "[v6]:port", ":port" -> sockaddr (port included). */
static int parse_listen(struct sockaddr_storage *out, socklen_t *outlen, const char *listen)
{
	char host[256];
	const char *colon, *portstr;
	char *end;
	long port;
	size_t hl;

	if (listen == NULL || listen[0] == '\0')
		return troop_error_set(TROOP_EINVAL, "listen address is empty (want host:port)");
	if (listen[0] == '[') {
		const char *rb = strchr(listen, ']');

		if (rb == NULL || rb[1] != ':')
			return troop_error_set(TROOP_EINVAL,
			    "invalid listen address '%s' (want [v6addr]:port)", listen);
		hl = (size_t)(rb - listen - 1);
		if (hl >= sizeof(host))
			return troop_error_set(TROOP_EINVAL, "listen address '%s' is too long", listen);
		memcpy(host, listen + 1, hl);
		host[hl] = '\0';
		portstr = rb + 2;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL)
			return troop_error_set(TROOP_EINVAL,
			    "invalid listen address '%s' (want host:port)", listen);
		hl = (size_t)(colon - listen);
		if (hl >= sizeof(host))
			return troop_error_set(TROOP_EINVAL, "listen address '%s' is too long", listen);
		memcpy(host, listen, hl);
		host[hl] = '\0';
		portstr = colon + 1;
	}
	errno = 0;
	port = strtol(portstr, &end, 10);
	if (portstr[0] == '\0' || *end != '\0' || errno != 0 || port < 0 || port > 65535)
		return troop_error_set(TROOP_EINVAL, "invalid port in listen address '%s'", listen);

	memset(out, 0, sizeof(*out));
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");
	{
		struct sockaddr_in *a4 = (struct sockaddr_in *)out;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;

		if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons((uint16_t)port);
			*outlen = sizeof(*a4);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons((uint16_t)port);
			*outlen = sizeof(*a6);
			return 0;
		}
	}
	{
		struct addrinfo hints, *res = NULL;
		int rc;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		rc = getaddrinfo(host, NULL, &hints, &res);
		if (rc != 0 || res == NULL)
			return troop_error_set(TROOP_EINVAL, "cannot resolve listen host '%s': %s",
			    host, gai_strerror(rc));
		memcpy(out, res->ai_addr, res->ai_addrlen);
		*outlen = (socklen_t)res->ai_addrlen;
		freeaddrinfo(res);
		if (out->ss_family == AF_INET)
			((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
		else
			((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
	}
	return 0;
}

static void addr_set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

int http_server_new(http_server **out, const http_server_opts *opts)
{
	http_server *s = NULL;
	long ncpu;
	struct rlimit rl;
	int rc;

	*out = NULL;
	if (opts == NULL)
		return troop_error_set(TROOP_EINVAL, "http server options missing");
	if (opts->threads < 0 || opts->threads > HTTP_MAX_THREADS)
		return troop_error_set(TROOP_EINVAL, "threads must be 0..%d, not %d",
		    HTTP_MAX_THREADS, opts->threads);
	if (opts->max_conns < 0 || opts->idle_timeout_s < 0)
		return troop_error_set(TROOP_EINVAL, "max_conns and idle_timeout_s must not be negative");
	if (opts->max_body > (size_t)INT64_MAX / 2 || opts->max_headers > (size_t)INT64_MAX / 2)
		return troop_error_set(TROOP_EINVAL, "max_body/max_headers out of range");
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	s->sig_slot = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->o = *opts;
	rc = parse_listen(&s->addr, &s->addrlen, opts->listen);
	if (rc != 0)
		goto fail;
	s->listen = strdup(opts->listen);
	s->name = opts->name != NULL ? strdup(opts->name) : NULL;
	if (s->listen == NULL || (opts->name != NULL && s->name == NULL)) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		goto fail;
	}
	s->o.listen = s->listen;
	s->o.name = s->name;
	if (s->o.max_body == 0)
		s->o.max_body = 1024 * 1024;
	if (s->o.max_headers == 0)
		s->o.max_headers = 16 * 1024;
	if (s->o.idle_timeout_s == 0)
		s->o.idle_timeout_s = 60;
	if (s->o.header_timeout_s <= 0)
		s->o.header_timeout_s = 10;
	if (s->o.body_timeout_s <= 0)
		s->o.body_timeout_s = 60;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	s->nthreads = s->o.threads > 0 ? s->o.threads : (ncpu > 0 ? (int)ncpu : 1);
	if (s->nthreads > HTTP_MAX_THREADS)
		s->nthreads = HTTP_MAX_THREADS;
	if (pipe2(s->stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
		rc = troop_error_set(TROOP_EIO, "cannot create the stop pipe: %s", strerror(errno));
		goto fail;
	}
	/* Every descriptor the process may have: raise the soft limit to the
	 * hard one, and keep the connection limit below it, so that accept()
	 * does not run out while the limit is not reached. */
	s->byfd_len = HTTP_MAX_FDS;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t want = rl.rlim_max;

		if (want == RLIM_INFINITY || want > (rlim_t)HTTP_MAX_FDS)
			want = (rlim_t)HTTP_MAX_FDS;
		if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
			struct rlimit nl = { want, rl.rlim_max };

			if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
				rl.rlim_cur = want;
		}
		if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)HTTP_MAX_FDS)
			s->byfd_len = (int)rl.rlim_cur;
	}
	{
		int fds = s->byfd_len;
		int derived = fds > 2 * HTTP_FD_RESERVE ? fds - HTTP_FD_RESERVE - fds / 16 : fds / 2;

		if (derived > HTTP_MAX_CONNS_CAP)
			derived = HTTP_MAX_CONNS_CAP;
		if (derived < 1)
			derived = 1;
		if (s->o.max_conns == 0) {
			s->o.max_conns = derived;
		} else if (s->o.max_conns > derived) {
			log_warn("conn_limit", "srv=%s max_conns=%d lowered to %d: the open-file "
			    "limit is %d (raise LimitNOFILE / ulimit -n)", s->name ? s->name : "http",
			    s->o.max_conns, derived, fds);
			s->o.max_conns = derived;
		}
	}
	if (s->o.max_conns_per_addr <= 0)
		s->o.max_conns_per_addr = s->o.max_conns / 8 > 16 ? s->o.max_conns / 8 : 16;
	s->addr_conns = calloc(HTTP_ADDR_SLOTS, sizeof(*s->addr_conns));
	if (s->addr_conns == NULL || sodium_init() < 0) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		goto fail;
	}
	randombytes_buf(s->addr_key, sizeof(s->addr_key));
	s->byfd = calloc((size_t)s->byfd_len, sizeof(*s->byfd));
	if (s->byfd == NULL) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		goto fail;
	}
	*out = s;
	return 0;
fail:
	http_server_free(s);
	return rc;
}

int http_server_route(http_server *s, const char *method, const char *pattern,
    http_handler_fn fn, void *arg)
{
	struct route rt;
	struct route *grown;
	char *p;
	int rc;

	memset(&rt, 0, sizeof(rt));
	if (s->started)
		return troop_error_set(TROOP_ERR, "routes must be added before http_server_start");
	if (method == NULL || method[0] == '\0' || pattern == NULL || pattern[0] != '/' || fn == NULL)
		return troop_error_set(TROOP_EINVAL, "route needs a method, a pattern starting "
		    "with '/' and a handler");
	if (s->nroutes >= HTTP_MAX_ROUTES)
		return troop_error_set(TROOP_ETOOLARGE, "more than %d routes", HTTP_MAX_ROUTES);
	rt.method = strdup(method);
	rt.pattern = strdup(pattern);
	rt.segbuf = strdup(pattern + 1);
	if (rt.method == NULL || rt.pattern == NULL || rt.segbuf == NULL) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		goto fail;
	}
	rt.fn = fn;
	rt.arg = arg;
	p = rt.segbuf;
	for (;;) {
		char *slash = strchr(p, '/');
		size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);
		int nparams = 0;

		if (rt.nsegs >= HTTP_MAX_SEGS) {
			rc = troop_error_set(TROOP_EINVAL, "route '%s' has more than %d segments",
			    pattern, HTTP_MAX_SEGS);
			goto fail;
		}
		if (slash != NULL)
			*slash = '\0';
		if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
			for (int i = 0; i < rt.nsegs; i++)
				nparams += rt.is_param[i];
			if (len == 2 || nparams >= HTTP_MAX_PARAMS) {
				rc = troop_error_set(TROOP_EINVAL, "route '%s': empty parameter name or "
				    "more than %d parameters", pattern, HTTP_MAX_PARAMS);
				goto fail;
			}
			rt.seg[rt.nsegs] = p + 1;
			rt.seglen[rt.nsegs] = len - 2;
			rt.is_param[rt.nsegs] = true;
			rt.has_params = true;
		} else {
			if (memchr(p, '{', len) != NULL || memchr(p, '}', len) != NULL) {
				rc = troop_error_set(TROOP_EINVAL, "route '%s': a parameter must be a "
				    "whole segment", pattern);
				goto fail;
			}
			rt.seg[rt.nsegs] = p;
			rt.seglen[rt.nsegs] = len;
		}
		rt.nsegs++;
		if (slash == NULL)
			break;
		p = slash + 1;
	}
	for (int i = 0; i < s->nroutes; i++)
		if (strcmp(s->routes[i].method, method) == 0 &&
		    strcmp(s->routes[i].pattern, pattern) == 0) {
			rc = troop_error_set(TROOP_ECONFLICT, "route %s %s registered twice",
			    method, pattern);
			goto fail;
		}
	grown = realloc(s->routes, sizeof(*grown) * (size_t)(s->nroutes + 1));
	if (grown == NULL) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		goto fail;
	}
	s->routes = grown;
	s->routes[s->nroutes++] = rt;
	return 0;
fail:
	free(rt.method);
	free(rt.pattern);
	free(rt.segbuf);
	return rc;
}

void http_server_on_thread(http_server *s, http_thread_init_fn init,
    http_thread_fini_fn fini, void *arg)
{
	s->init = init;
	s->fini = fini;
	s->thread_arg = arg;
}

void http_server_on_shutdown(http_server *s, void (*fn)(void *arg), void *arg)
{
	s->shutdown_fn = fn;
	s->shutdown_arg = arg;
}

int http_server_port(const http_server *s)
{
	return s->port;
}

int http_server_inflight(const http_server *s)
{
	return atomic_load(&((http_server *)s)->inflight);
}

/* ---- server: threads ------------------------------------------------------------ */

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static int evthread_rc;

static void evthread_init_once(void)
{
	evthread_rc = evthread_use_pthreads();
}

/* The server thread running on this OS thread (for the listener's error
 * callback, whose argument is evhttp's). */
static __thread struct srv_thread *tls_thread;

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *th = arg;

	if (th->bound != NULL)
		evconnlistener_enable(evhttp_bound_socket_get_listener(th->bound));
}

/* accept() failed.  Out of descriptors (or memory), the listening socket
 * stays readable and libevent would retry at once, forever, logging each
 * time: pause accepting for a moment instead, and log once per interval. */
static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct srv_thread *th = tls_thread;
	int err = EVUTIL_SOCKET_ERROR();
	long long now = now_us() / 1000000;
	struct timeval tv = { 0, HTTP_ACCEPT_PAUSE_MS * 1000 };
	char buf[128];

	(void)arg;
	if (th == NULL)
		return;
	th->accept_fails++;
	if (now - th->accept_log_s >= HTTP_LOG_INTERVAL_S) {
		log_warn("accept", "srv=%s thread=%d accept() failed: %s; pausing %d ms "
		    "(%ld failures since the last line; logged once per %d s)",
		    th->s->name ? th->s->name : "http", th->index,
		    strerror_r(err, buf, sizeof(buf)), HTTP_ACCEPT_PAUSE_MS,
		    th->accept_fails, HTTP_LOG_INTERVAL_S);
		th->accept_log_s = now;
		th->accept_fails = 0;
	}
	evconnlistener_disable(lev);
	evtimer_add(th->accept_ev, &tv);
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *th = arg;
	http_server *s = th->s;
	int cmd = atomic_exchange(&th->ctl, 0);

	if (cmd & CTL_CLOSE_LISTENER) {
		if (th->bound != NULL) {
			evhttp_del_accept_socket(th->http, th->bound);
			th->bound = NULL;
		}
		pthread_mutex_lock(&s->mu);
		s->n_closed++;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
}

static void thread_teardown(struct srv_thread *th)
{
	http_server *s = th->s;

	/* Closes the listener and every connection: handlers still holding a
	 * request get their on_close now. */
	if (th->http != NULL) {
		evhttp_free(th->http);
		th->http = NULL;
		th->bound = NULL;
	}
	/* Connections evhttp freed without telling us: accepted in the last
	 * loop iteration (still holding our bufferevent reference). */
	while (th->conns != NULL) {
		struct srv_conn *c = th->conns;
		struct bufferevent *bev = c->bev;
		bool held = c->need_init;

		if (c->active != NULL) {
			c->active->conn = NULL;
			c->active = NULL;
		}
		conn_free(c);
		if (held)
			bufferevent_decref(bev);
	}
	/* Freeing bufferevents queues their finalizers on the base; run them
	 * (and anything a close callback scheduled) before the base goes. */
	if (th->base != NULL) {
		for (int i = 0; i < 8 &&
		    event_base_get_num_events(th->base, EVENT_BASE_COUNT_ACTIVE) > 0; i++)
			event_base_loop(th->base, EVLOOP_NONBLOCK);
	}
	/* Requests whose handlers never answered and cannot any more (the
	 * loop is gone). */
	while (th->live != NULL) {
		http_req *r = th->live;

		r->ev = NULL;
		r->conn = NULL;
		if (r->status == 0)
			r->status = 499;
		req_finish(r);
	}
	if (th->inited && s->fini != NULL)
		s->fini(s->thread_arg, th->tctx);
	th->inited = false;
	if (th->tmp != NULL) {
		evbuffer_free(th->tmp);
		th->tmp = NULL;
	}
	if (th->ctl_ev != NULL) {
		event_free(th->ctl_ev);
		th->ctl_ev = NULL;
	}
	if (th->accept_ev != NULL) {
		event_free(th->accept_ev);
		th->accept_ev = NULL;
	}
	if (th->base != NULL) {
		event_base_free(th->base);
		th->base = NULL;
	}
}

static void *thread_main(void *arg)
{
	struct srv_thread *th = arg;
	http_server *s = th->s;
	int rc = 0;
	int go;

	tls_thread = th;
	if (s->init != NULL)
		rc = s->init(s->thread_arg, th->index, th->base, &th->tctx);
	th->inited = rc == 0;
	pthread_mutex_lock(&s->mu);
	if (rc != 0)
		s->n_failed++;
	else
		s->n_ready++;
	pthread_cond_broadcast(&s->cv);
	while (s->go == 0)
		pthread_cond_wait(&s->cv, &s->mu);
	go = s->go;
	pthread_mutex_unlock(&s->mu);

	if (go > 0 && th->inited)
		event_base_loop(th->base, EVLOOP_NO_EXIT_ON_EMPTY);
	thread_teardown(th);
	return NULL;
}

/* A listening socket on s->addr at `port`. */
static int make_socket(const http_server *s, int port, bool reuseport, bool do_listen)
{
	struct sockaddr_storage ss = s->addr;
	int one = 1;
	int fd;

	addr_set_port(&ss, port);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    bind(fd, (struct sockaddr *)&ss, s->addrlen) != 0 ||
	    (do_listen && listen(fd, HTTP_LISTEN_BACKLOG) != 0)) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* Stop the loops and join the threads (listeners may still be open). */
static void stop_threads(http_server *s)
{
	bool looping;

	if (s->threads == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	looping = s->go > 0;
	if (s->go == 0)
		s->go = -1;     /* threads waiting to start: tear down instead */
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	/* Only a running loop may be told to exit: a thread that never
	 * entered its loop is already freeing its base. */
	for (int i = 0; i < s->nthreads && looping; i++) {
		struct srv_thread *th = &s->threads[i];

		if (th->created)
			event_base_loopexit(th->base, NULL);
	}
	for (int i = 0; i < s->nthreads; i++) {
		struct srv_thread *th = &s->threads[i];

		if (!th->created)
			continue;
		pthread_join(th->tid, NULL);
		th->created = false;
	}
}

static void free_threads(http_server *s)
{
	if (s->threads == NULL)
		return;
	stop_threads(s);
	for (int i = 0; i < s->nthreads; i++) {
		struct srv_thread *th = &s->threads[i];

		thread_teardown(th);    /* no-op for joined threads */
		if (th->lfd >= 0)
			close(th->lfd);
	}
	free(s->threads);
	s->threads = NULL;
}

int http_server_start(http_server *s)
{
	struct sigaction sa;
	sigset_t block, old;
	char errbuf[128];
	int rc = 0;
	int probe;

	if (s->started)
		return 0;
	if (s->stopped)
		return troop_error_set(TROOP_ERR, "http server already stopped");
	pthread_once(&evthread_once, evthread_init_once);
	if (evthread_rc != 0)
		return troop_error_set(TROOP_ERR, "libevent has no pthreads support");
	/* A client that goes away must not kill the process. */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);

	/* Bind once without SO_REUSEPORT: fails if anyone (even another troop
	 * with SO_REUSEPORT) listens there, and picks the port for port 0. */
	probe = make_socket(s, ntohs(s->addr.ss_family == AF_INET ?
	    ((struct sockaddr_in *)&s->addr)->sin_port :
	    ((struct sockaddr_in6 *)&s->addr)->sin6_port), false, false);
	if (probe < 0)
		return troop_error_set(TROOP_EIO, "cannot listen on %s: %s", s->listen,
		    strerror_r(-probe, errbuf, sizeof(errbuf)));
	{
		struct sockaddr_storage got;
		socklen_t gl = sizeof(got);

		if (getsockname(probe, (struct sockaddr *)&got, &gl) != 0) {
			rc = troop_error_set(TROOP_EIO, "cannot listen on %s: %s", s->listen,
			    strerror(errno));
			close(probe);
			return rc;
		}
		s->port = ntohs(got.ss_family == AF_INET ?
		    ((struct sockaddr_in *)&got)->sin_port :
		    ((struct sockaddr_in6 *)&got)->sin6_port);
	}
	close(probe);

	s->threads = calloc((size_t)s->nthreads, sizeof(*s->threads));
	if (s->threads == NULL)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	for (int i = 0; i < s->nthreads; i++)
		s->threads[i].lfd = -1;
	s->n_ready = s->n_failed = s->n_closed = 0;
	s->go = 0;
	for (int i = 0; i < s->nthreads; i++) {
		struct srv_thread *th = &s->threads[i];
		int fd = make_socket(s, s->port, true, true);

		th->s = s;
		th->index = i;
		if (fd < 0) {
			rc = troop_error_set(TROOP_EIO, "cannot listen on %s: %s", s->listen,
			    strerror_r(-fd, errbuf, sizeof(errbuf)));
			goto fail;
		}
		th->lfd = fd;
		th->base = event_base_new();
		th->http = th->base != NULL ? evhttp_new(th->base) : NULL;
		th->tmp = evbuffer_new();
		th->ctl_ev = th->base != NULL ? event_new(th->base, -1, 0, ctl_cb, th) : NULL;
		th->accept_ev = th->base != NULL ? evtimer_new(th->base, accept_resume_cb, th) : NULL;
		if (th->http == NULL || th->tmp == NULL || th->ctl_ev == NULL ||
		    th->accept_ev == NULL) {
			rc = troop_error_set(TROOP_ENOMEM, "cannot create the event loop of thread %d", i);
			goto fail;
		}
		evhttp_set_max_body_size(th->http, (ev_ssize_t)s->o.max_body);
		evhttp_set_max_headers_size(th->http, (ev_ssize_t)s->o.max_headers);
		evhttp_set_timeout(th->http, s->o.idle_timeout_s);
		evhttp_set_allowed_methods(th->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
		    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
		    EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
		evhttp_set_default_content_type(th->http, NULL);
		evhttp_set_gencb(th->http, on_request, th);
		evhttp_set_bevcb(th->http, conn_new, th);
		th->bound = evhttp_accept_socket_with_handle(th->http, fd);
		if (th->bound == NULL) {
			rc = troop_error_set(TROOP_EIO, "cannot listen on %s: %s", s->listen,
			    strerror(errno));
			goto fail;
		}
		th->lfd = -1;   /* evhttp owns it now */
		evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(th->bound),
		    accept_error_cb);
	}

	/* Workers leave SIGINT/SIGTERM to the thread in http_server_run. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (int i = 0; i < s->nthreads; i++) {
		struct srv_thread *th = &s->threads[i];
		int e = pthread_create(&th->tid, NULL, thread_main, th);

		if (e != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			rc = troop_error_set(TROOP_EIO, "cannot start server thread: %s", strerror(e));
			goto fail;
		}
		th->created = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	pthread_mutex_lock(&s->mu);
	while (s->n_ready + s->n_failed < s->nthreads)
		pthread_cond_wait(&s->cv, &s->mu);
	if (s->n_failed > 0) {
		pthread_mutex_unlock(&s->mu);
		rc = troop_error_set(TROOP_ERR, "%d server thread(s) failed to initialise",
		    s->n_failed);
		goto fail;
	}
	s->go = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	s->started = true;
	log_info("listen", "srv=%s addr=%s port=%d threads=%d", s->name ? s->name : "http",
	    s->listen, s->port, s->nthreads);
	return 0;
fail:
	free_threads(s);
	return rc;
}

/* ---- server: shutdown ------------------------------------------------------------- */

#define SIG_SLOTS 16
static _Atomic int sig_fds[SIG_SLOTS];     /* write end + 1; 0 = free */
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static int sig_users;
static struct sigaction sig_old_int, sig_old_term;

static void on_signal(int sig)
{
	int saved = errno;

	for (int i = 0; i < SIG_SLOTS; i++) {
		int fd = atomic_load(&sig_fds[i]);

		if (fd > 0)
			(void)!write(fd - 1, "s", 1);
	}
	errno = saved;
}

static int sig_register(int fd)
{
	int slot = -1;

	pthread_mutex_lock(&sig_mu);
	for (int i = 0; i < SIG_SLOTS && slot < 0; i++)
		if (atomic_load(&sig_fds[i]) == 0)
			slot = i;
	if (slot >= 0) {
		atomic_store(&sig_fds[slot], fd + 1);
		if (sig_users++ == 0) {
			struct sigaction sa;

			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = on_signal;
			sigemptyset(&sa.sa_mask);
			sigaction(SIGINT, &sa, &sig_old_int);
			sigaction(SIGTERM, &sa, &sig_old_term);
		}
	}
	pthread_mutex_unlock(&sig_mu);
	return slot;
}

static void sig_unregister(int slot)
{
	if (slot < 0)
		return;
	pthread_mutex_lock(&sig_mu);
	atomic_store(&sig_fds[slot], 0);
	if (--sig_users == 0) {
		sigaction(SIGINT, &sig_old_int, NULL);
		sigaction(SIGTERM, &sig_old_term, NULL);
	}
	pthread_mutex_unlock(&sig_mu);
}

void http_server_stop(http_server *s)
{
	int saved = errno;

	if (s != NULL && s->stop_pipe[1] >= 0)
		(void)!write(s->stop_pipe[1], "x", 1);
	errno = saved;
}

int http_server_catch_signals(http_server *s)
{
	if (s->sig_slot < 0)
		s->sig_slot = sig_register(s->stop_pipe[1]);
	return s->sig_slot >= 0 ? 0 : troop_error_set(TROOP_ERR,
	    "too many servers catching SIGINT and SIGTERM");
}

int http_server_run(http_server *s, int drain_ms)
{
	struct pollfd pfd;
	char buf[64];
	long long deadline;
	bool had_inflight;
	int slot;
	int rc;

	rc = http_server_start(s);
	if (rc != 0)
		return rc;
	/* a signal caught since http_server_catch_signals is in the pipe */
	(void)http_server_catch_signals(s);
	slot = s->sig_slot;
	s->sig_slot = -1;
	pfd.fd = s->stop_pipe[0];
	pfd.events = POLLIN;
	for (;;) {
		int n = poll(&pfd, 1, -1);

		if (n > 0)
			break;
		if (n < 0 && errno != EINTR) {
			sig_unregister(slot);
			return troop_error_set(TROOP_EIO, "waiting for shutdown: %s", strerror(errno));
		}
	}
	while (read(s->stop_pipe[0], buf, sizeof(buf)) > 0)
		;
	sig_unregister(slot);
	log_info("shutdown", "srv=%s inflight=%d", s->name ? s->name : "http",
	    http_server_inflight(s));

	/* 1. stop accepting */
	for (int i = 0; i < s->nthreads; i++) {
		atomic_fetch_or(&s->threads[i].ctl, CTL_CLOSE_LISTENER);
		event_active(s->threads[i].ctl_ev, EV_TIMEOUT, 1);
	}
	pthread_mutex_lock(&s->mu);
	while (s->n_closed < s->nthreads)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);

	/* 2. the owner's hook (e.g. heartbeat OFFLINE) */
	if (s->shutdown_fn != NULL)
		s->shutdown_fn(s->shutdown_arg);

	/* 3. let requests in flight finish */
	deadline = now_us() + (long long)(drain_ms > 0 ? drain_ms : 0) * 1000;
	had_inflight = http_server_inflight(s) > 0;
	while (http_server_inflight(s) > 0 && now_us() < deadline)
		poll(NULL, 0, 5);
	/* a request counts as finished once its last bytes are queued on its
	 * connection; the loops write them on their next turn: give them that
	 * turn before stopping them, or a stream's last events are lost */
	if (had_inflight && drain_ms > 0)
		poll(NULL, 0, SHUTDOWN_FLUSH_MS);
	if (http_server_inflight(s) > 0)
		log_warn("shutdown", "srv=%s abandoning=%d requests after drain_ms=%d",
		    s->name ? s->name : "http", http_server_inflight(s), drain_ms);

	/* 4. stop the loops */
	stop_threads(s);
	s->stopped = true;
	s->started = false;
	return 0;
}

void http_server_free(http_server *s)
{
	if (s == NULL)
		return;
	free_threads(s);
	for (int i = 0; i < s->nroutes; i++) {
		free(s->routes[i].method);
		free(s->routes[i].pattern);
		free(s->routes[i].segbuf);
	}
	free(s->routes);
	sig_unregister(s->sig_slot);   /* caught, never run */
	if (s->stop_pipe[0] >= 0)
		close(s->stop_pipe[0]);
	if (s->stop_pipe[1] >= 0)
		close(s->stop_pipe[1]);
	free(s->byfd);
	free(s->addr_conns);
	free(s->listen);
	free(s->name);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
