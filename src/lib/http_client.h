/*
 * http_client.h - HTTP client on libcurl.
 *
 * Two faces:
 *  - http_client: blocking requests on one reused easy handle (keep-alive
 *    connection cache), for the CLI, heartbeats, and tests.  One
 *    http_client per thread; not thread-safe.
 *  - http_async: non-blocking requests on a curl multi handle driven by a
 *    libevent event_base (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION), for the
 *    proxies.  Response headers, then each body chunk as it arrives, are
 *    handed to callbacks; a data callback may pause the transfer
 *    (backpressure) until http_async_resume.  One http_async per event_base;
 *    all calls on that base's thread.
 * Every response body is bounded (max_body); over it is TROOP_ETOOLARGE.
 */
#ifndef TROOP_HTTP_CLIENT_H
#define TROOP_HTTP_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct troop_identity;

typedef struct http_client http_client;

typedef struct {
	int status;           /* HTTP status, 0 if no response */
	char *body;           /* malloc'd, NUL-terminated; caller frees */
	size_t len;
	char content_type[128];
} http_response;

/* New client.  Returns 0 or TROOP_ENOMEM. */
int http_client_new(http_client **out);
void http_client_free(http_client *c);

/* Default limits for this client (timeout_ms 0: 10 s; max_body 0: 8 MiB). */
void http_client_set_limits(http_client *c, long timeout_ms, size_t max_body);

/* Let another thread stop this client's blocking calls: while *flag is
 * non-zero a call in progress fails within about a second (TROOP_ERR,
 * "aborted"), and new calls fail at once.  NULL removes it.  The flag must
 * outlive the client's use of it. */
void http_client_set_abort(http_client *c, const atomic_int *flag);

/* One request.  `headers` is a NULL-terminated array of "Name: value" or
 * NULL.  On transport failure returns TROOP_EUPSTREAM (connect refused,
 * reset), TROOP_ETIMEOUT, or TROOP_ETOOLARGE, with a message naming the
 * URL; an HTTP error status is not a failure (see out->status).
 * out->body must be freed with http_response_free. */
int http_request(http_client *c, http_response *out, const char *method,
    const char *url, const char *const *headers, const void *body, size_t len);
void http_response_free(http_response *r);

/* JSON convenience: sends `body` (may be NULL; not stolen) as
 * application/json, parses the reply.  *out is a new reference to the
 * parsed reply (NULL if the body was not JSON); *status the HTTP status. */
int http_request_json(http_client *c, int *status, json_t **out, const char *method,
    const char *url, const char *const *headers, const json_t *body);

/* Signed JSON request (DESIGN.md section 4): `base` is the coordinator URL
 * ("http://127.0.0.1:8420"), `path_query` the path with optional query
 * ("/users/X/transactions?limit=5").  Adds Content-Digest (when a body is
 * sent), Signature-Input and Signature made with `id`. */
int http_request_signed(http_client *c, int *status, json_t **out,
    const struct troop_identity *id, const char *method, const char *base,
    const char *path_query, const json_t *body);

/* The headers of a signed request, for callers that send it themselves
 * (troop up's asynchronous /authorize): `list` is NULL-terminated and
 * points into the struct: Content-Digest (when there is a body),
 * Signature-Input, Signature, Content-Type: application/json (when there
 * is a body), Accept: application/json.  The one signed-request builder:
 * http_request_signed uses it too. */
typedef struct {
	char digest[96];
	char input[300];
	char sig[160];
	const char *list[6];
} http_signed_headers;

/* Sign `method` `path` (no query) `query` (raw, without '?', "" for none)
 * over body[0..len) (body NULL: none) at `now` with `id`, into *h.
 * Returns 0 or the error of httpsig_sign.  Thread-safe. */
int http_signed_headers_build(http_signed_headers *h, const struct troop_identity *id,
    const char *method, const char *path, const char *query, const char *body, size_t len,
    int64_t now);

/* Streaming: `on_data` gets each chunk of the body as it arrives; it
 * returns 0 to continue or non-zero to abort (the call then returns
 * TROOP_ERR, or on_data's return value when that is a negative troop_err).
 * *status is set before the first chunk.  The client's timeout limits the
 * connect and the time without any byte arriving, not the whole stream;
 * max_body does not apply (nothing is buffered). */
typedef int (*http_data_fn)(void *arg, const char *data, size_t len);
int http_request_stream(http_client *c, int *status, const char *method,
    const char *url, const char *const *headers, const void *body, size_t len,
    http_data_fn on_data, void *arg);

/* The value of reply header `name` (case-insensitive; the last one when
 * repeated) of the client's most recent request, copied into out[0..len)
 * and NUL-terminated.  Returns 0, or TROOP_ENOTFOUND when the reply had no
 * such header (or no request ran), TROOP_ETOOLARGE when it does not fit. */
int http_client_reply_header(http_client *c, const char *name, char *out, size_t len);

/* ---- async, on a libevent loop ------------------------------------------- */

typedef struct http_async http_async;
typedef struct http_async_req http_async_req;

#define HTTP_ASYNC_PAUSE 1  /* return from on_data: stop delivering until resume */

typedef struct {
	/* Status and headers are known.  `headers` is a NULL-terminated array
	 * of "Name: value" lines (no status line, no CRLF; interim 1xx
	 * responses are not reported), valid during the call only.  Return
	 * non-zero to abort. */
	int (*on_headers)(void *arg, int status, const char *const *headers);
	/* A body chunk.  Return 0, HTTP_ASYNC_PAUSE, or negative to abort. */
	int (*on_data)(void *arg, const char *data, size_t len);
	/* The request ended: err is 0 (complete), TROOP_EUPSTREAM,
	 * TROOP_ETIMEOUT, or TROOP_ERR (aborted); troop_error_msg() says why.
	 * Called exactly once, from the loop, after which the http_async_req
	 * is freed (cancel/resume on it during this call do nothing). */
	void (*on_done)(void *arg, int err);
} http_async_cb;

typedef struct {
	long connect_timeout_ms;   /* 0: 3000 */
	long first_byte_timeout_ms; /* time to response headers; 0: none */
	long total_timeout_ms;     /* 0: none */
	bool tcp_nodelay;          /* default on in practice: set true */
} http_async_opts;

/* New async client on `base` (which must outlive it).  Returns 0,
 * TROOP_ENOMEM or TROOP_ERR. */
int http_async_new(http_async **out, struct event_base *base);
/* Cancels every request in flight (their on_done runs with TROOP_ERR,
 * from inside this call).  Not to be called from one of its own
 * callbacks. */
void http_async_free(http_async *a);

/* Start a request; `headers` and `body` are copied.  *out (may be NULL)
 * is a handle valid until on_done.  Returns 0 or a troop_err (then no
 * callback runs).  The transfer starts from the loop, so this may be
 * called from inside another request's callbacks.  `opts` may be NULL
 * (defaults, TCP_NODELAY on). */
int http_async_request(http_async *a, http_async_req **out, const char *method,
    const char *url, const char *const *headers, const void *body, size_t len,
    const http_async_opts *opts, const http_async_cb *cb, void *arg);
/* Continue a request paused with HTTP_ASYNC_PAUSE; a no-op if it is not
 * paused.  Delivery resumes from the loop (never from inside this call),
 * starting right after the chunk that paused: no byte is handed twice. */
void http_async_resume(http_async_req *r);
/* Abort a request; on_done runs with TROOP_ERR (possibly later, from the
 * loop, never from inside this call). */
void http_async_cancel(http_async_req *r);

#endif
