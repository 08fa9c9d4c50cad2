/*
 * http_server.h - the HTTP server every role uses, on libevent's evhttp.
 *
 * N threads (default: number of cores), each with its own event_base and
 * evhttp bound to the same port with SO_REUSEPORT, so the kernel spreads
 * connections and no lock is taken on the request path.  Routes are
 * matched by method and path pattern ("/users/{account}/balance"); an
 * unknown path answers a JSON 404, a known path with another method a JSON
 * 405.  Limits: body size (413 too_large, JSON; Content-Length and chunked
 * bodies alike), header size, total connections and connections per
 * client address (extra ones are closed at once), a total deadline for the
 * request head and one for the body (a client that trickles bytes is
 * closed at the deadline, not kept by each byte), idle time between
 * requests.  Request framing is checked strictly before evhttp parses it
 * (http_check.h: no smuggling through duplicate Content-Length, odd
 * Transfer-Encoding, folded lines or NUL bytes; CONNECT is refused 405 at
 * once).  At start the soft RLIMIT_NOFILE is raised to the hard one and
 * the connection limit derived from it; when accept() still runs out of
 * descriptors it pauses briefly and logs once per interval.  Every error
 * the server itself answers (malformed request 400, 405, 408, 411, 413,
 * unknown method 501) uses the JSON error shape.  Replies may be whole or
 * streamed with chunked encoding, with a drain callback for backpressure.
 * One log line per request: method, path, status, microseconds, account
 * (if set).
 *
 * Threading: routes and hooks are registered before http_server_start.
 * A handler runs on one server thread; it may reply at once or later, but
 * every call on an http_req must happen on that thread's event loop
 * (http_req_base).  http_server_stop is thread-safe and async-signal-safe.
 */
#ifndef TROOP_HTTP_SERVER_H
#define TROOP_HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
typedef struct http_server http_server;
typedef struct http_req http_req;

typedef struct {
	const char *listen;     /* "0.0.0.0:8420", "127.0.0.1:0", "[::1]:9000" */
	int threads;            /* 0: number of online cores */
	size_t max_body;        /* bytes; 0: 1 MiB */
	size_t max_headers;     /* bytes of all headers; 0: 16 KiB */
	int max_conns;          /* open connections over all threads; 0: derived
	                         * from RLIMIT_NOFILE (never more than that) */
	int idle_timeout_s;     /* idle keep-alive between requests; 0: 60 */
	const char *name;       /* for log lines ("coordinator"); may be NULL */
	bool quiet;             /* no per-request log lines */
	int header_timeout_s;   /* whole request head, from its first byte (or
	                         * from the accept); 0: 10 */
	int body_timeout_s;     /* whole body, from the end of the head; 0: 60 */
	int max_conns_per_addr; /* open connections from one IPv4 address or
	                         * IPv6 /64; 0: max_conns / 8 (at least 16) */
} http_server_opts;

typedef void (*http_handler_fn)(http_req *req, void *arg);

/* Create a server (nothing is bound yet).  Returns 0 or a troop_err. */
int http_server_new(http_server **out, const http_server_opts *opts);

/* Route `method` ("GET", "POST", ... ; "*" for any) and `pattern` to fn.
 * Pattern segments "{name}" match one non-empty path segment, readable
 * (percent-decoded) with http_req_param.  Exact routes win over patterns,
 * an exact method over "*"; HEAD is served by a GET route (no body sent).
 * Returns 0, TROOP_EINVAL (bad pattern) or TROOP_ECONFLICT (registered
 * twice).  Not thread-safe: call before http_server_start. */
int http_server_route(http_server *s, const char *method, const char *pattern,
    http_handler_fn fn, void *arg);

/* Called on each server thread as it starts (init) and ends (fini), e.g.
 * to open one database connection per thread.  *tctx is then available as
 * http_req_thread_ctx.  init returning non-zero fails http_server_start. */
typedef int (*http_thread_init_fn)(void *arg, int index, struct event_base *base, void **tctx);
typedef void (*http_thread_fini_fn)(void *arg, void *tctx);
void http_server_on_thread(http_server *s, http_thread_init_fn init,
    http_thread_fini_fn fini, void *arg);

/* Called once, on the thread that called http_server_run, after SIGINT or
 * SIGTERM (or http_server_stop) and after the listeners are closed, before
 * waiting for requests in flight: e.g. a worker heartbeats OFFLINE. */
void http_server_on_shutdown(http_server *s, void (*fn)(void *arg), void *arg);

/* Bind and start the threads.  Returns 0, or TROOP_EIO with a message
 * ("cannot listen on 0.0.0.0:8420: Address already in use"; also when
 * another process holds the port with SO_REUSEPORT), or TROOP_ERR when a
 * thread init hook fails (the threads already initialised are finalised).
 * Sets SIGPIPE to SIG_IGN if it was SIG_DFL. */
int http_server_start(http_server *s);

/* The bound port (useful with port 0).  Valid after start. */
int http_server_port(const http_server *s);

/* Catch SIGINT and SIGTERM for this server's http_server_run from now
 * on: one that comes before run (while the process finishes starting,
 * after its listeners already serve) makes run shut down at once instead
 * of the process dying of the signal's default action.  Call it before
 * http_server_start on the server that http_server_run will wait on.
 * Returns 0 or TROOP_ERR (too many servers catching). */
int http_server_catch_signals(http_server *s);

/* Start if needed, then block until SIGINT/SIGTERM or http_server_stop;
 * stop accepting, run the shutdown hook, wait up to `drain_ms` for
 * requests in flight, stop the threads (handlers still holding a request
 * then get their on_close).  SIGINT/SIGTERM handlers are installed while
 * this runs (from http_server_catch_signals on, when called); the server
 * threads block both.  Returns 0 or a
 * troop_err.  A server runs once: free it afterwards. */
int http_server_run(http_server *s, int drain_ms);

/* Ask a running server to shut down (thread-safe, async-signal-safe). */
void http_server_stop(http_server *s);

/* Requests being handled right now, over all threads. */
int http_server_inflight(const http_server *s);

/* Free a stopped server; NULL is fine. */
void http_server_free(http_server *s);

/* ---- the request --------------------------------------------------------- */

const char *http_req_method(const http_req *r);      /* "GET" */
const char *http_req_path(const http_req *r);        /* "/peers", no query */
const char *http_req_query(const http_req *r);       /* "model=x" or "" */
const char *http_req_param(const http_req *r, const char *name); /* NULL if none */
/* Decoded value of query parameter `name`, or NULL.  Owned by the request. */
const char *http_req_query_param(http_req *r, const char *name);
/* Query parameter `name` as an integer in [min, max] into *out (def when
 * absent).  Strict: optional '-' then decimal digits only (no spaces, no
 * '+', no overflow).  Returns 0 or TROOP_EINVAL with a message naming the
 * parameter and the range. */
int http_req_query_int(http_req *r, const char *name, int64_t def, int64_t min,
    int64_t max, int64_t *out);
/* Header value (case-insensitive name), or NULL.  Owned by the request;
 * valid until the reply, or until the client goes away. */
const char *http_req_header(const http_req *r, const char *name);
/* The whole body, NUL-terminated (len excludes the NUL); "" if none.
 * A copy owned by the request (valid until the request ends). */
const char *http_req_body(const http_req *r, size_t *len);
/* Peer address "127.0.0.1". */
const char *http_req_peer(const http_req *r);
void *http_req_thread_ctx(const http_req *r);
int http_req_thread_index(const http_req *r);
struct event_base *http_req_base(const http_req *r);
/* Account id to show (its first 8 characters) in this request's log line. */
void http_req_set_account(http_req *r, const char *account_id);

/* ---- whole replies (each ends the request; the http_req is then gone) ---- */

void http_reply_header(http_req *r, const char *name, const char *value);
/* Drop every response header `name` added so far (before the reply or
 * stream begins), e.g. to replace one set for an earlier attempt. */
void http_reply_header_remove(http_req *r, const char *name);
void http_reply(http_req *r, int status, const char *content_type,
    const void *body, size_t len);
/* Serialises and sends `body` (reference stolen) as application/json. */
void http_reply_json(http_req *r, int status, json_t *body);
/* The JSON error shape with troop_err_status(err) / troop_err_code(err). */
void http_reply_error(http_req *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- streamed replies (chunked) ------------------------------------------ */

/* Send the status line and headers; the body follows in chunks. */
void http_stream_begin(http_req *r, int status, const char *content_type);
/* Queue bytes; returns 0, or TROOP_EIO if the client went away, or
 * TROOP_ETOOLARGE if more than 64 MiB would be queued (a handler that
 * ignores http_stream_on_drain). */
int http_stream_write(http_req *r, const void *data, size_t len);
/* Bytes queued and not yet written to the socket. */
size_t http_stream_pending(const http_req *r);
/* Call `cb` once the queued output has been written out (the socket drained
 * below its low watermark, 16 KiB); for pausing an upstream producer.  One
 * call per registration, from the request's loop (never from inside
 * http_stream_on_drain itself); not called if the client goes away. */
void http_stream_on_drain(http_req *r, void (*cb)(http_req *r, void *arg), void *arg);
/* Finish the stream (last chunk); the http_req is then gone. */
void http_stream_end(http_req *r);

/* Call `cb` if the client disconnects before the reply is finished; after
 * that the http_req must not be used (it is freed when cb returns).  The
 * disconnect is noticed while a handler waits as well as while it streams
 * (an idle time limit does not apply before the first byte of the reply).
 * Without on_close, a gone client's request stays valid: its reply calls do
 * nothing but end it (http_stream_write returns TROOP_EIO). */
void http_req_on_close(http_req *r, void (*cb)(http_req *r, void *arg), void *arg);

#endif
