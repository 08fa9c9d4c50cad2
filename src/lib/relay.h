/*
 * relay.h - stream an upstream HTTP response to a waiting client, byte for
 * byte, as it arrives.
 *
 * Both proxies use it: the worker relays the engine's reply to the
 * requester, and the client's `troop up` relays the worker's reply to the
 * app.  A relay joins one incoming request (http_server.h) to one upstream
 * request made with http_async (http_client.h) on the same thread's
 * event_base:
 *
 *   - The client gets the upstream status and Content-Type, then the body
 *     in chunks (chunked encoding) as the upstream hands them over.  Nothing
 *     is buffered whole.  Nothing at all is sent to the client before the
 *     first body byte (or the end of an empty body), so a failure up to
 *     that point can still be answered with a JSON error, or retried
 *     elsewhere: the request is then handed back to the caller untouched.
 *   - Bytes are written to the client at the end of the loop iteration in
 *     which they arrived: what came in one read of the upstream socket
 *     leaves as one chunk (curl hands over each chunk of a chunked reply
 *     separately; one write per event would cost a syscall per token),
 *     without waiting for anything.
 *   - Server-Sent Events (Content-Type text/event-stream) are forwarded
 *     event by event: bytes after the last complete event (blank line) are
 *     held back until the event is complete (at most max_event bytes; an
 *     event longer than that is forwarded as it comes).  So the client
 *     never sees half an event followed by something else.
 *   - Backpressure: when more than max_pending bytes wait for the client's
 *     socket, the upstream transfer is paused (HTTP_ASYNC_PAUSE) and
 *     resumed once the output has drained (http_stream_on_drain).
 *   - The client disconnecting cancels the upstream request.
 *   - An upstream failure after bytes were sent (reset, engine died)
 *     finishes the client's stream cleanly instead of leaving it hanging.
 *     For an event stream the relay drops any incomplete trailing event and
 *     appends one event:
 *         data: {"error":{"message":"...","type":"...","code":"..."}}\n\n
 *     (the OpenAI error shape of DESIGN.md section 6, which OpenAI SDKs
 *     raise as an error) and no "data: [DONE]": as the OpenAI API does, a
 *     failed stream ends without the marker that says the answer is
 *     complete, so a reader that ignores error events still sees it cut.
 *     Other content types are ended where the upstream stopped (the client
 *     sees a short body).
 *   - relay_abort ends the stream from outside (a job past its time
 *     budget) the same way.
 *   - Error replies (upstream status >= 400) can be normalised into the
 *     OpenAI error shape by a hook (the worker plugs engine_error_normalize
 *     in); the error body is then buffered, bounded by max_error_body.
 *     Without the hook they are relayed unchanged like any other reply.
 *
 * Threading: everything on the event loop thread of the http_req (which is
 * the base of the http_async).  Callbacks run on that thread.
 */
#ifndef TROOP_RELAY_H
#define TROOP_RELAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_client.h"
#include "http_server.h"

#define RELAY_DEFAULT_MAX_PENDING (256u * 1024)
#define RELAY_DEFAULT_MAX_EVENT (1024u * 1024)
#define RELAY_DEFAULT_MAX_ERROR_BODY (64u * 1024)

/* Return values of relay_cb.on_headers. */
#define RELAY_ACCEPT 0
#define RELAY_REJECT 1

typedef struct relay relay;

/* How a relay ended. */
typedef enum {
	RELAY_END_COMPLETE = 0, /* the upstream reply was relayed to its end */
	RELAY_END_UPSTREAM,     /* the upstream failed: connect, timeout, reset,
	                         * engine died mid-stream */
	RELAY_END_ABORTED,      /* ended by relay_abort */
	RELAY_END_CLIENT_GONE,  /* the client disconnected; upstream cancelled */
	RELAY_END_REJECTED,     /* on_headers returned RELAY_REJECT */
} relay_end;

/* What happened, for the completion callback. */
typedef struct {
	relay_end end;
	int upstream_status;  /* upstream HTTP status; 0 when none came */
	int status;           /* status sent to the client; 0 when nothing was */
	int err;              /* 0, or the troop_err of the failure / abort */
	char error[256];      /* why, for logs ("" when complete); may name the
	                       * upstream URL: do not send it to clients */
	uint64_t bytes_in;    /* body bytes received from upstream */
	uint64_t bytes_out;   /* body bytes queued to the client, error events
	                       * included */
	int64_t ttfb_us;      /* relay_start to the first body byte queued to
	                       * the client; -1 when none was */
	int64_t duration_us;  /* relay_start to the end */
	unsigned pauses;      /* times the upstream was paused (backpressure) */
	uint64_t chunks_in;   /* body chunks handed over by the upstream */
	uint64_t writes;      /* chunks queued to the client */
	bool event_stream;    /* the reply was text/event-stream */
} relay_stats;

typedef struct {
	/* The upstream status and headers are known and nothing has been sent
	 * to the client.  `headers` is a NULL-terminated list of "Name: value"
	 * lines, valid for the call.  Return RELAY_ACCEPT to relay the reply,
	 * RELAY_REJECT to cancel it: on_done then hands the request back
	 * (end RELAY_END_REJECTED) so the caller can answer it or try another
	 * upstream (the client proxy fails over on 5xx, 429).  The caller may
	 * add response headers here with http_reply_header.  NULL: accept. */
	int (*on_headers)(void *arg, int status, const char *const *headers);
	/* Observe the body bytes exactly as they are queued to the client
	 * (not the error events the relay adds, nor a normalised error reply).
	 * E.g. the worker counts tokens from the usage chunk.  May be NULL. */
	void (*on_body)(void *arg, const char *data, size_t len);
	/* Normalise an upstream error reply (status >= 400, body `body` of
	 * `len` bytes, possibly cut at max_error_body) into *out, a new
	 * reference to the JSON to send; return the HTTP status to answer
	 * with (400..599), or a negative troop_err to relay the error reply
	 * unchanged.  NULL: error replies are relayed unchanged. */
	int (*normalize_error)(void *arg, int status, const char *body, size_t len,
	    json_t **out);
	/* Required.  The relay is over and is freed when this returns (its
	 * handle must not be used after it).  `req` is non-NULL when nothing
	 * at all was sent to the client and it is still connected (upstream
	 * failed before the first body byte, on_headers rejected, or
	 * relay_abort came first): the caller owns the request again and must
	 * answer it, or relay it elsewhere.  (Body bytes that arrived in the
	 * same loop iteration as the failure count as sent: they go out,
	 * followed by the error events.)  Otherwise the request is finished
	 * (replied, or the client went away) and `req` is NULL.  `st` is
	 * valid for the call. */
	void (*on_done)(void *arg, http_req *req, const relay_stats *st);
	/* Rewrite the body of a reply that is relayed (not a normalised error)
	 * before it goes to the client: the worker translates chat completions
	 * into the API the app speaks (compat.h).  Called with each upstream
	 * chunk (end false), then once with len 0 and end true when the
	 * upstream reply is complete; sets *out and *out_len to the bytes to
	 * send instead (valid until the next call; may be empty).  Returns 0,
	 * or a troop_err that fails the reply as an upstream failure.  on_body
	 * observes what it returns.  NULL: bytes go as they came. */
	int (*transform)(void *arg, const char *data, size_t len, bool end, const char **out,
	    size_t *out_len);
	/* The event that ends an event stream after a failure (err, msg):
	 * malloc'd text of whole events, or NULL for the default OpenAI
	 * "data: {error}" event.  The Anthropic SDKs only raise an
	 * "event: error" (api_kind.h).  May be NULL. */
	char *(*error_event)(void *arg, int err, const char *msg);
} relay_cb;

/* Wraps one write to the client (see relay_set_wrap): `data` (len bytes,
 * possibly 0; `final`: the last write of the reply) into *out / *out_len
 * (valid until the next callback; may be empty).  Returns 0 or a
 * troop_err (the client's reply then fails as if it had gone away). */
typedef int (*relay_wrap_fn)(void *arg, const char *data, size_t len, bool final,
    const char **out, size_t *out_len);

/* The upstream request.  Strings, headers and body are copied by
 * relay_start (the caller may free them when it returns). */
typedef struct {
	const char *method;           /* "POST" */
	const char *url;              /* "http://127.0.0.1:11434/v1/chat/completions" */
	const char *const *headers;   /* NULL-terminated "Name: value"; may be NULL */
	const void *body;
	size_t body_len;
	/* Timeouts; NULL: http_async defaults.  The relay always turns
	 * TCP_NODELAY on, whatever opts->tcp_nodelay says. */
	const http_async_opts *opts;
} relay_upstream;

typedef struct {
	size_t max_pending;     /* bytes queued to the client before the upstream
	                         * is paused; 0: RELAY_DEFAULT_MAX_PENDING */
	size_t max_event;       /* longest SSE event held back whole;
	                         * 0: RELAY_DEFAULT_MAX_EVENT */
	size_t max_error_body;  /* error body kept for normalize_error;
	                         * 0: RELAY_DEFAULT_MAX_ERROR_BODY */
	/* 0: off.  Otherwise, for an accepted 2xx event stream, the client's
	 * reply begins (status and headers sent) as soon as the upstream's
	 * headers are in, not at the first body byte, and an SSE comment
	 * line ": keep-alive" (which event-stream readers skip) is sent after
	 * every keepalive_ms without bytes to the client.  So the next hop
	 * sees that the upstream accepted the request and is working on it
	 * (an engine reading a long prompt sends nothing for a long time).
	 * The request can then no longer be handed back: a failure before
	 * the first event ends the stream with the error event. */
	long keepalive_ms;
	/* The caller already began the client's reply (http_stream_begin: 200,
	 * text/event-stream; `troop up` sends queue comments while a request
	 * waits): the relay sends no status or headers of its own, only the
	 * body.  Nothing else changes: a failure before the first body byte
	 * still hands the request back, and the caller then ends the stream
	 * itself (an error event).  Only for a 2xx event stream: the caller's
	 * on_headers must reject anything else. */
	bool begun;
} relay_opts;

/* Start relaying: send `up` with `a` (which must run on req's event base)
 * and stream its reply to `req`.  `opts` may be NULL (defaults); `cb` is
 * copied and cb->on_done is required; `arg` is passed to every callback.
 * Registers req's close callback (http_req_on_close) for its own use: the
 * caller must not set another while the relay runs.
 *
 * Returns 0 and sets *out (may be NULL) to a handle valid until on_done
 * runs; on_done then always runs exactly once, later, from the loop.  Or
 * returns a troop_err (TROOP_EINVAL, TROOP_ENOMEM, or http_async's error)
 * and no callback runs: req is untouched and still the caller's. */
int relay_start(relay **out, http_req *req, http_async *a, const relay_upstream *up,
    const relay_opts *opts, const relay_cb *cb, void *arg);

/* End the relay early with an error `err` (a troop_err, for the error
 * event's type and code) and message `msg` (sent to the client: keep
 * secrets and local URLs out of it).  If bytes were sent, the client's
 * stream ends now (an event stream gets the error event, no [DONE]);
 * otherwise the request is handed back in on_done.  The upstream is
 * cancelled; on_done follows from the loop with end RELAY_END_ABORTED
 * (unless the relay had already ended another way).  A no-op on a relay
 * that is already ending.  Must be called on the relay's thread, never
 * after its on_done. */
void relay_abort(relay *rl, int err, const char *msg);

/* From on_headers only: send the client Content-Type `ctype` instead of the
 * upstream's, and treat the body the client gets (the transform's output)
 * as an event stream or not by that type: event alignment, error events
 * and keep-alives follow the client's type.  `troop up` turns a sealed
 * reply, once opened by its transform, back into the event stream it was
 * (seal.h).  ctype is copied (at most 127 bytes). */
void relay_set_content_type(relay *rl, const char *ctype);

/* From on_headers only: the client gets Content-Type `ctype` (copied, at
 * most 127 bytes), and everything written to it passes through `fn`
 * (called with the relay's arg) just before it goes out: each write (the
 * bytes queued in one loop iteration, event-aligned as usual: body, keep-
 * alive comments, the error events that end a failed stream, a normalised
 * error reply) as one piece, and a last call with final true when the
 * reply ends (cleanly or after a failure; not when the client went away).
 * The worker seals replies this way (seal.h): the relay works on the
 * plaintext as it would without, on_body included. */
void relay_set_wrap(relay *rl, const char *ctype, relay_wrap_fn fn);

/* Bytes the relay has queued to the client so far (0 before the first). */
uint64_t relay_bytes_out(const relay *rl);

/* The name of an end ("complete", "upstream_error", "aborted",
 * "client_gone", "rejected").  Static string. */
const char *relay_end_name(relay_end e);

#endif
