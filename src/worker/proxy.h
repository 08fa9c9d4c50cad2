/*
 * proxy.h - the worker's inference proxy (DESIGN.md sections 5 and 8).
 *
 * Routes, on --listen (default 0.0.0.0:8421):
 *   POST /v1/chat/completions, /v1/completions, /v1/embeddings
 *        ticket in "Authorization: Bearer <ticket>", checked exactly as
 *        DESIGN.md section 5 says; then the body goes, byte for byte, to
 *        the engine serving the model and the reply streams back through
 *        the relay (relay.h): event by event, TCP_NODELAY, keep-alive to
 *        the engine, backpressure.
 *   POST /v1/responses, /v1/messages, /v1/messages/count_tokens, /tokenize
 *        the same, passed through to an engine that serves the path
 *        natively (endpoints.h; the reply revised by compat_native_new);
 *        /v1/responses and /v1/messages on other engines are translated
 *        to /v1/chat/completions and back (compat.h), and what cannot be
 *        translated is refused (400) before the ticket is spent.  Streams
 *        that fail end with the API's own error event (api_kind.h).
 *   GET  /health
 *
 * Ticket check, in order; any failure is 401 (invalid_ticket) with a JSON
 * error and nothing reaches the engine:
 *   1. a Bearer token is present;
 *   2. ticket_verify against the coordinator keys (alg exactly EdDSA,
 *      known kid, signature, exp/iat with 30 s skew, aud troop-worker);
 *      an unknown kid triggers one refetch of GET /public-key (at most
 *      once a minute, keyring.h), then the check runs again;
 *   3. the body is a JSON object with a string "model" (else 400);
 *   4. target_node is this node;
 *   5. the ticket's model is the body's model;
 *   6. that model is served here (by name or content hash);
 *   7. the jti was not used before (remembered until exp + 30 s).
 * Then the job needs a slot: at most max_jobs at once, else 429
 * rate_limited (and a receipt with outcome "rejected" and no duration,
 * so the coordinator releases the reservation at once).
 *
 * Each job is stopped at the ticket's max_seconds: the stream ends with an
 * error event (relay_abort), or, when nothing was sent yet, a 504 JSON
 * error.  Engine error replies carry PROXY_ENGINE_STATUS_HEADER.  A
 * streamed reply starts (status and headers) as soon as the
 * engine accepted the request, and carries an SSE comment ": keep-alive"
 * every PROXY_KEEPALIVE_MS of silence, so that the client can tell an
 * engine reading a long prompt from a dead node; the first token must
 * then come within first_token_s plus one second per KiB of request body
 * (a long prompt takes longer), else the stream ends with a timeout
 * error event.  Engine error replies are normalised (engine_error_normalize).
 * Every job that reached the engine is recorded (job.h) and its receipt
 * queued (receipts.h).  Tickets and Authorization headers are never
 * logged.
 */
#ifndef TROOP_WORKER_PROXY_H
#define TROOP_WORKER_PROXY_H

#include <stddef.h>

#include "catalog.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"

#define PROXY_DEFAULT_MAX_BODY (16u * 1024 * 1024)
#define PROXY_KEEPALIVE_MS 5000
/* On an error reply that came from the engine (normalised to the OpenAI
 * shape, the engine's status kept): the engine's status.  Absent on the
 * worker's own errors (ticket, node full, engine unreachable, timeout), so
 * a client knows which failures another node could avoid. */
#define PROXY_ENGINE_STATUS_HEADER "X-Troop-Engine-Status"
#define PROXY_DEFAULT_FIRST_TOKEN_S 120

typedef struct proxy proxy;

typedef struct {
	const char *listen;        /* "0.0.0.0:8421" */
	int threads;               /* 0: one per core */
	int max_jobs;              /* >= 1 */
	const char *node_id;       /* this node's account id */
	const char *coordinator;   /* base URL, for key refetches */
	catalog *cat;
	keyring *keys;
	replay_cache *replay;
	receipts *receipts;        /* may be NULL: no receipts */
	size_t max_body;           /* request bodies; 0: PROXY_DEFAULT_MAX_BODY */
	int idle_timeout_s;        /* 0: 300 */
	int first_token_s;         /* first token of a stream, before the
	                            * per-KiB allowance; 0: the default */
} proxy_opts;

/* Create the proxy and its HTTP server (nothing bound yet).  The pointed
 * objects must outlive it; strings are copied.  Returns 0, TROOP_EINVAL
 * (bad listen address, max_jobs < 1), TROOP_ENOMEM. */
int proxy_new(proxy **out, const proxy_opts *o);

/* Bind and start serving.  Returns 0 or TROOP_EIO ("cannot listen on
 * ..."). */
int proxy_start(proxy *p);

/* The bound port (after proxy_start). */
int proxy_port(const proxy *p);

/* Block until SIGINT/SIGTERM (or proxy_stop); then stop accepting, call
 * on_shutdown(arg) (may be NULL), wait up to drain_ms for jobs in flight,
 * and stop.  Returns 0 or a troop_err. */
int proxy_run(proxy *p, int drain_ms, void (*on_shutdown)(void *), void *arg);

/* Ask a running proxy to stop (thread-safe, async-signal-safe). */
void proxy_stop(proxy *p);

/* Jobs running now.  Thread-safe. */
int proxy_active_jobs(proxy *p);

/* A heartbeat_opts.active_jobs callback (arg is the proxy). */
int proxy_active_jobs_cb(void *arg);

/* Jobs served since start (finished, any outcome).  Thread-safe. */
long proxy_jobs_done(proxy *p);

/* A heartbeat_opts.jobs_done callback (arg is the proxy). */
long proxy_jobs_done_cb(void *arg);

/* Free a stopped proxy; NULL is fine. */
void proxy_free(proxy *p);

#endif
