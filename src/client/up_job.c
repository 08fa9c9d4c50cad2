/*
 * up_job.c - one inference request through `troop up`:
 *
 *   app --POST /v1/...--> up_handle_inference
 *        1. read "model" (and "stream") from the body
 *        2. signed POST /authorize to the coordinator (http_async, on this
 *           thread's loop; body, headers and the reply's meaning come from
 *           authorize.h and http_signed_headers_build)
 *        3. relay the app's body, unchanged, to the worker named in the
 *           ticket with "Authorization: Bearer <ticket>", and the worker's
 *           reply back to the app as it streams (relay.h: byte for byte,
 *           event-aligned, with backpressure)
 *        4. failover (authorize.h): when the worker cannot be reached, times
 *           out before its first byte, or answers 5xx, 429 or 401 (a ticket
 *           for another node: the address is not the node's), or is this
 *           proxy itself (up_target_is_self), and nothing has reached
 *           the app yet, authorize again with that node excluded (UP_TRIES
 *           authorizations in all); then 503 no_capacity in the OpenAI
 *           error shape.  402 insufficient_credits and 404 model_not_found
 *           from the coordinator go to the app as they are.  An error the
 *           worker's engine answered (X-Troop-Engine-Status) is the app's
 *           answer: relayed as it is, status and message, no failover.
 *        4a. on the Anthropic paths (/v1/messages, .../count_tokens) every
 *           error the app gets (ours, the coordinator's, the worker's) is
 *           in the Anthropic shape (api_kind.h), and a stream the worker
 *           broke off ends with the API's own error event (also on
 *           /v1/responses).
 *        4b. a streamed request that waits in the coordinator's queue
 *           (--wait): while /authorize is in flight, GET /queue is asked
 *           every UP_QUEUE_EVERY_MS (the first time after
 *           UP_QUEUE_FIRST_MS), and each time the request is queued the
 *           app gets an SSE comment ": queued, position N" (the reply
 *           begins, 200 text/event-stream, at the first), so that its
 *           connection does not time out; SSE readers skip comments.  From
 *           then on the reply's headers are sent: the worker's reply is
 *           relayed as body only (relay_opts.begun), and every failure is
 *           the stream's error event.  Non-streamed requests get nothing.
 *        5. a streamed reply whose headers came may take long for its
 *           first token (the engine reads the prompt); the worker sends
 *           keep-alive comments meanwhile, so only a worker silent for
 *           UP_FIRST_TOKEN_MIN_MS (or the first-byte timeout if longer),
 *           plus 1 s per KiB of request body, counts as failed.
 *
 * Every job authorized gets a delivery report (report.h): what this proxy
 * saw of it, from sending the request to the worker to the last byte,
 * queued to the report spool when the relay ends (or when the job could
 * not be sent), never holding up the app's reply.
 *
 * A job's memory is freed by whichever callback finishes last: the app's
 * request is ours only while no relay holds it, and our close callback is
 * set only while /authorize is in flight (it cancels that request).
 */
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "api_kind.h"
#include "authorize.h"
#include "cli.h"
#include "error.h"
#include "http_client.h"
#include "json.h"
#include "log.h"
#include "relay.h"
#include "report.h"
#include "up.h"
#include "up_metrics.h"
#include "up_prefetch.h"
#include "up_seal.h"

typedef struct up_job {
	up_thread *t;
	up_server *s;
	http_req *req;              /* the app's request while we own it; NULL after */
	const char *body;           /* the app's body, owned by req */
	size_t len;
	char path[32];              /* "/v1/chat/completions" */
	char model[UP_MODEL_MAX + 1];
	char accept[128];
	bool stream;
	client_auth ca;             /* authorizations: exclude list, tries, why,
	                               the current ticket (authorize.h) */
	/* the current authorization */
	http_async_req *auth;
	char *abuf;
	size_t alen;
	int astatus;
	bool atoolarge;
	char job_id[PROTO_JOB_ID_MAX + 1];
	char node_id[64];
	int64_t max_seconds;
	/* the current relay */
	relay *rl;
	struct event *body_timer;   /* headers came, no body byte yet */
	long first_byte_ms;         /* this job's first-byte timeout */
	long body_wait_ms;          /* headers to first body byte */
	bool stalled;               /* body_timer fired */
	bool body_seen;             /* a body byte reached the app */
	bool header_set;            /* X-Troop-Job added to the reply */
	int worker_status;          /* the worker's HTTP status, 0 before */
	bool engine_error;          /* an error the worker's engine answered */
	client_delivery dl;         /* the current job's observation (report.h) */
	int64_t t0_us, auth_us;
	bool ahead;                 /* the current ticket was fetched ahead */
	bool prefetch_due;          /* the session's next ticket: to fetch */
	struct event *prefetch_ev;  /* ... at the next turn of the loop */
	up_seal seal;               /* the current try's sealing (up_seal.h) */
	bool seal_refused;          /* the last failover: a bad sealing key */
	/* the queue position while /authorize waits (4b) */
	struct event *queue_timer;
	http_async_req *qreq;       /* GET /queue in flight */
	char qbuf[512];
	size_t qlen;
	int qstatus;
	bool sse_begun;             /* the app's reply began with a comment */
	bool free_pending;          /* job_free waits for qreq's end */
	int begun_status;           /* a worker's error after the reply began */
} up_job;

#define UP_QUEUE_FIRST_MS 1000
#define UP_QUEUE_EVERY_MS 2000

static void start_authorize(up_job *j);
static void job_authorized(up_job *j);
static void prefetch_start(up_thread *t, up_server *s, const proto_authorize_req *req);

static void job_free(up_job *j)
{
	if (!j)
		return;
	if (j->queue_timer) {
		event_free(j->queue_timer);
		j->queue_timer = NULL;
	}
	if (j->qreq) {
		/* its on_done comes later from the loop: it frees the job */
		j->free_pending = true;
		http_async_cancel(j->qreq);
		return;
	}
	if (j->body_timer)
		event_free(j->body_timer);
	if (j->prefetch_ev) {
		event_free(j->prefetch_ev);
		j->prefetch_ev = NULL;
		j->prefetch_due = true;
	}
	if (j->prefetch_due)
		prefetch_start(j->t, j->s, &j->ca.req);
	up_seal_reset(&j->seal);
	dynbuf_free(&j->seal.body);
	dynbuf_free(&j->seal.out);
	client_delivery_clear(&j->dl);
	sodium_memzero(j->ca.ticket.token, sizeof(j->ca.ticket.token));
	free(j->abuf);
	free(j);
}

/* ---- the app's side ------------------------------------------------------------ */

static void job_app_closed(http_req *req, void *arg)
{
	up_job *j = arg;

	/* req is freed when this returns */
	(void)req;
	j->req = NULL;
	if (j->auth)
		http_async_cancel(j->auth);   /* auth_done frees the job */
	else
		job_free(j);
}

/* Take the request back for an answer of ours: no close callback may
 * fire on it after this. */
static http_req *job_take_req(up_job *j)
{
	http_req *r = j->req;

	j->req = NULL;
	if (r)
		http_req_on_close(r, NULL, NULL);
	return r;
}

/* The reply began with queue comments (4b): end it with the error event
 * of the app's API, `body` being the error in the app's shape (consumed). */
static void job_end_stream(up_job *j, http_req *r, int status, json_t *body, const char *msg)
{
	api_kind k = api_kind_of_path(j->path);
	char *text = NULL, *ev = NULL;

	if (k == API_OPENAI) {
		text = body ? json_dump_compact(body, NULL) : NULL;
		if (text && (ev = malloc(strlen(text) + 9)) != NULL)
			sprintf(ev, "data: %s\n\n", text);
	} else {
		ev = api_error_event(k, status >= 500 ? TROOP_EUPSTREAM : TROOP_EINVAL, msg, 0);
	}
	if (ev)
		(void)http_stream_write(r, ev, strlen(ev));
	http_stream_end(r);
	free(ev);
	free(text);
	json_decref(body);
}

/* Answer with an error and free the job. */
static void job_fail(up_job *j, int status, const char *type, const char *code,
    const char *msg)
{
	http_req *r = job_take_req(j);

	atomic_fetch_add(&j->s->failed, 1);
	up_metrics_reply(status);
	log_info("job_failed", "model=%s status=%d code=%s tries=%d job=%s", j->model, status,
	    code, j->ca.attempt, j->job_id[0] ? j->job_id : "-");
	if (r && j->sse_begun)
		job_end_stream(j, r, status, api_error_body(api_kind_of_path(j->path), status,
		    type, code, msg), msg);
	else if (r)
		up_reply_error(r, status, type, code, j->job_id[0] ? j->job_id : NULL, "%s", msg);
	job_free(j);
}

/* Pass a coordinator error reply (OpenAI shape) through to the app. */
static void job_pass_error(up_job *j, int status, const char *body, size_t len)
{
	http_req *r = job_take_req(j);

	atomic_fetch_add(&j->s->failed, 1);
	up_metrics_reply(status);
	log_info("job_failed", "model=%s status=%d tries=%d", j->model, status, j->ca.attempt);
	if (r && j->sse_begun) {
		json_t *e = NULL;
		const char *m = NULL;
		char msg[PROTO_ERR_MESSAGE_MAX + 1] = "the coordinator refused the request";

		if (api_error_convert(api_kind_of_path(j->path), status, body, len, &e) == 0 &&
		    (m = json_string_value(json_object_get(json_object_get(e, "error"),
		    "message"))) != NULL)
			snprintf(msg, sizeof(msg), "%s", m);
		job_end_stream(j, r, status, e, msg);
	} else if (r && api_kind_of_path(j->path) == API_MESSAGES) {
		json_t *e = NULL;

		if (api_error_convert(API_MESSAGES, status, body, len, &e) == 0)
			http_reply_json(r, status, e);
		else
			http_reply(r, status, "application/json", body, len);
	} else if (r) {
		http_reply(r, status, "application/json", body, len);
	}
	job_free(j);
}

/* ---- failover ----------------------------------------------------------------- */

/* The current node failed before any byte reached the app: try another,
 * or give up with 503. */
static void job_failover(up_job *j)
{
	char node[9];

	snprintf(node, sizeof(node), "%.8s", j->node_id);
	log_info("failover", "job=%s node=%s model=%s try=%d ahead=%d why=\"%s\"", j->job_id,
	    node, j->model, j->ca.attempt, j->ahead, j->ca.why);
	if (j->ahead) {
		/* a ticket fetched ahead whose node is busy now, or gone: the
		 * request starts over as if it had none (it may wait in the
		 * queue for that very node), with all its tries */
		j->ahead = false;
		j->ca.attempt = 0;
		j->ca.why[0] = '\0';
		memset(&j->ca.ticket, 0, sizeof(j->ca.ticket));
		start_authorize(j);
		return;
	}
	if (!client_auth_failover(&j->ca, NULL)) {
		char msg[1024];

		if (j->seal_refused) {
			/* a key substituted every time: the coordinator's doing */
			snprintf(msg, sizeof(msg), "troop up refused to send the request after %d "
			    "tries: %s", j->ca.attempt, j->ca.why);
			job_fail(j, 502, "api_error", "seal_key_invalid", msg);
			return;
		}
		snprintf(msg, sizeof(msg), "no worker could serve '%s' after %d tries (last: %s); "
		    "try again shortly", j->model, j->ca.attempt, j->ca.why);
		job_fail(j, 503, "server_error", "no_capacity", msg);
		return;
	}
	atomic_fetch_add(&j->s->failovers, 1);
	start_authorize(j);
}

/* ---- relay to the worker ------------------------------------------------------- */

/* The worker's X-Troop-Engine-Status: the status of an error its engine
 * answered, or 0 (absent: the worker's own answer). */
static int engine_status_of(const char *const *headers)
{
	static const char name[] = "X-Troop-Engine-Status:";

	for (size_t i = 0; headers && headers[i]; i++) {
		if (strncasecmp(headers[i], name, sizeof(name) - 1) == 0) {
			long v = strtol(headers[i] + sizeof(name) - 1, NULL, 10);
			return v >= 400 && v <= 599 ? (int)v : 0;
		}
	}
	return 0;
}

static int relay_headers(void *arg, int status, const char *const *headers)
{
	up_job *j = arg;
	long wait_ms;
	int engine_status = engine_status_of(headers);
	bool sse = false;

	j->worker_status = status;
	j->engine_error = engine_status != 0;
	for (size_t i = 0; headers && headers[i]; i++)
		if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
			sse = strstr(headers[i] + 13, "text/event-stream") != NULL;
	if (client_auth_worker_failed(status, engine_status)) {
		snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s answered HTTP %d", j->node_id, status);
		return RELAY_REJECT;
	}
	if (j->seal.active) {
		const char *ctype = NULL;

		if (up_seal_headers(&j->seal, status, headers, &ctype) != 0) {
			snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s: %s", j->node_id,
			    troop_error_msg());
			return RELAY_REJECT;
		}
		if (ctype) {
			/* the reply's own type, inside the seal */
			relay_set_content_type(j->rl, ctype);
			sse = strstr(ctype, "text/event-stream") != NULL;
		}
	}
	if (j->sse_begun && (status < 200 || status >= 300 || !sse)) {
		/* the app's reply is an event stream already: an error of the
		 * worker's engine becomes its error event (relay_done) */
		j->begun_status = status >= 400 ? status : 502;
		snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s answered HTTP %d%s", j->node_id,
		    status, sse ? "" : " without an event stream");
		return RELAY_REJECT;
	}
	if (j->header_set)
		http_reply_header_remove(j->req, "X-Troop-Job");
	if (!j->sse_begun) {
		/* (with queue comments the headers went out with the first) */
		http_reply_header(j->req, "X-Troop-Job", j->job_id);
		j->header_set = true;
	}
	client_delivery_headers(&j->dl, sse);
	/* a worker that answers the headers and then nothing is as dead as one
	 * that never answers; but a stream's first token waits for the engine
	 * to read the prompt, during which the worker sends keep-alives */
	wait_ms = j->first_byte_ms;
	if (j->stream && wait_ms < UP_FIRST_TOKEN_MIN_MS)
		wait_ms = UP_FIRST_TOKEN_MIN_MS;
	if (j->stream)
		wait_ms += (long)(j->len / 1024) * 1000;
	j->body_wait_ms = wait_ms;
	if (j->body_timer) {
		struct timeval tv = { wait_ms / 1000, (wait_ms % 1000) * 1000 };
		evtimer_add(j->body_timer, &tv);
	}
	return RELAY_ACCEPT;
}

static void prefetch_fire(evutil_socket_t fd, short what, void *arg)
{
	up_job *j = arg;

	(void)fd;
	(void)what;
	event_free(j->prefetch_ev);
	j->prefetch_ev = NULL;
	prefetch_start(j->t, j->s, &j->ca.req);
}

/* The session's next ticket, fetched once this request's first bytes are
 * on their way to the app: its signing and its request to the coordinator
 * wait for the next turn of the loop.  They took 37 us at the median
 * (bench_client.sh), spent before the worker was even asked, on every
 * request that used a ticket ahead.  A job that ends first starts it in
 * job_free. */
static void prefetch_soon(up_job *j)
{
	static const struct timeval now = { 0, 0 };

	if (!j->prefetch_due || j->prefetch_ev)
		return;
	j->prefetch_due = false;
	j->prefetch_ev = evtimer_new(j->t->base, prefetch_fire, j);
	if (!j->prefetch_ev || evtimer_add(j->prefetch_ev, &now) != 0) {
		if (j->prefetch_ev)
			event_free(j->prefetch_ev);
		j->prefetch_ev = NULL;
		prefetch_start(j->t, j->s, &j->ca.req);
	}
}

static void relay_body(void *arg, const char *data, size_t len)
{
	up_job *j = arg;

	prefetch_soon(j);
	client_delivery_body(&j->dl, data, len);
	if (!j->body_seen && j->body_timer)
		evtimer_del(j->body_timer);
	j->body_seen = true;
}

static void body_timeout(evutil_socket_t fd, short what, void *arg)
{
	up_job *j = arg;

	(void)fd;
	(void)what;
	if (!j->rl || relay_bytes_out(j->rl) > 0)
		return;
	j->stalled = true;
	snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s sent its headers and then nothing for %ld ms",
	    j->node_id, j->body_wait_ms);
	relay_abort(j->rl, TROOP_ETIMEOUT, "the worker sent nothing in time");
}

/* What the app saw of the job, for its delivery report (report.h):
 * `handed_back` when nothing reached it. */
static const char *delivery_outcome(const up_job *j, bool handed_back, const relay_stats *st)
{
	if (handed_back) {
		if (st->end == RELAY_END_REJECTED && j->worker_status == 401)
			return "refused";
		if (st->end == RELAY_END_REJECTED && j->engine_error)
			return "engine_error";
		return "unreachable";
	}
	switch (st->end) {
	case RELAY_END_COMPLETE:
		return j->engine_error ? "engine_error" : "complete";
	case RELAY_END_CLIENT_GONE:
		return "aborted";
	default:
		return "cut";
	}
}

static void relay_done(void *arg, http_req *req, const relay_stats *st)
{
	up_job *j = arg;

	j->rl = NULL;
	if (j->body_timer)
		evtimer_del(j->body_timer);
	(void)client_delivery_finish(&j->dl, j->s->reports, delivery_outcome(j, req != NULL, st));
	if (!req) {
		up_metrics_relayed(st);
		up_ui_job_done(j->job_id, j->node_id, j->model, st->status, st->duration_us);
		log_info("job", "job=%s node=%.8s model=%s status=%d end=%s tries=%d auth_us=%lld "
		    "ttfb_us=%lld us=%lld bytes=%llu sealed=%d", j->job_id, j->node_id, j->model,
		    st->status, relay_end_name(st->end), j->ca.attempt, (long long)j->auth_us,
		    (long long)st->ttfb_us, (long long)(up_now_us() - j->t0_us),
		    (unsigned long long)st->bytes_out, j->seal.active);
		if (j->seal.failed)
			log_warn("seal_open_failed", "job=%s node=%.8s error=\"%s\"", j->job_id,
			    j->node_id, st->error);
		job_free(j);
		return;
	}
	/* handed back: nothing reached the app */
	j->req = req;
	http_req_on_close(req, job_app_closed, j);
	if (j->begun_status) {
		/* the worker's own answer (an error of its engine), and the app's
		 * reply is an event stream already: its error event */
		job_fail(j, j->begun_status, j->begun_status < 500 ? "invalid_request_error" :
		    "api_error", "upstream_error", j->ca.why);
		return;
	}
	if (j->seal.failed) {
		/* the job ran, but its reply was altered or cut on the way: an
		 * error for the app, not a second run elsewhere */
		log_warn("seal_open_failed", "job=%s node=%.8s error=\"%s\"", j->job_id,
		    j->node_id, st->error);
		job_fail(j, 502, "api_error", "seal_open_failed", "the worker's sealed reply did "
		    "not open (altered, reordered or cut short on the way); nothing of it was "
		    "passed on");
		return;
	}
	if (st->end == RELAY_END_UPSTREAM)
		snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s failed before answering: %s",
		    j->node_id, st->error);
	else if (st->end != RELAY_END_REJECTED && !j->stalled)
		snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s: %s", j->node_id, st->error);
	job_failover(j);
}

/* relay_cb.normalize_error on /v1/messages: the worker's (or its
 * engine's) error in the Anthropic shape (kept when it is already). */
static int relay_normalize(void *arg, int status, const char *body, size_t len, json_t **out)
{
	(void)arg;
	return api_error_convert(API_MESSAGES, status, body, len, out) == 0 ? status :
	    TROOP_ENOMEM;
}

/* relay_cb.transform of a sealed try: the worker's reply opened. */
static int relay_transform(void *arg, const char *data, size_t len, bool end,
    const char **out, size_t *out_len)
{
	up_job *j = arg;

	return up_seal_transform(&j->seal, data, len, end, out, out_len);
}

/* relay_cb.error_event: a stream the worker broke off ends with the
 * error event of the app's API. */
static char *relay_error_event(void *arg, int err, const char *msg)
{
	up_job *j = arg;
	api_kind k = api_kind_of_path(j->path);

	return k == API_OPENAI ? NULL : api_error_event(k, err, msg, 0);
}

static void start_relay(up_job *j, const char *token, const char *ip, long long port)
{
	static const relay_cb cb = { relay_headers, relay_body, NULL, relay_done,
		NULL, relay_error_event };
	/* Messages: errors in the Anthropic shape */
	static const relay_cb cb_messages = { relay_headers, relay_body, relay_normalize,
		relay_done, NULL, relay_error_event };
	/* sealed: the reply is opened (and Messages errors converted) in the
	 * transform */
	static const relay_cb cb_sealed = { relay_headers, relay_body, NULL, relay_done,
		relay_transform, relay_error_event };
	char url[256], authz[PROTO_TICKET_MAX + 32], accept[160];
	const char *headers[5];
	relay_upstream up = { 0 };
	http_async_opts ao = { .tcp_nodelay = true };
	relay_opts ro = { 0 };
	http_req *r;
	int n = 0, rc;

	/* from here the job is authorized: it gets a report whatever happens */
	client_delivery_begin(&j->dl, j->job_id);
	j->worker_status = 0;
	j->engine_error = false;
	j->begun_status = 0;
	if (!cli_token_ok(token, PROTO_TICKET_MAX) ||
	    cli_worker_url(url, sizeof(url), ip, port, j->path) != 0) {
		(void)client_delivery_finish(&j->dl, j->s->reports, "unreachable");
		job_fail(j, 502, "api_error", "upstream_error",
		    "the coordinator's /authorize reply names no valid ticket or worker address");
		return;
	}
	if (up_target_is_self(j->s, ip, port)) {
		(void)client_delivery_finish(&j->dl, j->s->reports, "unreachable");
		snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s advertises this proxy's own address",
		    j->node_id);
		job_failover(j);
		return;
	}
	/* sealed when the node offers a key; the key checked against the
	 * ticket's node before anything is sent */
	j->seal_refused = false;
	up_seal_reset(&j->seal);
	if (j->ca.ticket.seal_key[0]) {
		if (up_seal_begin(&j->seal, j->ca.ticket.seal_key, j->ca.ticket.node_id,
		    j->ca.ticket.job_id, j->body, j->len, (int64_t)time(NULL)) != 0) {
			log_warn("seal_refused", "job=%s node=%.8s error=\"%s\"", j->job_id,
			    j->node_id, troop_error_msg());
			snprintf(j->ca.why, sizeof(j->ca.why), "%s", troop_error_msg());
			j->seal_refused = true;
			job_failover(j);
			return;
		}
	} else if (j->s->require_sealed) {
		snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s does not seal requests "
		    "(--require-sealed)", j->node_id);
		job_failover(j);
		return;
	}
	snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
	headers[n++] = authz;
	headers[n++] = j->seal.active ? "Content-Type: " SEAL_CONTENT_TYPE :
	    "Content-Type: application/json";
	if (j->seal.active)
		headers[n++] = j->seal.header;
	if (j->accept[0]) {
		snprintf(accept, sizeof(accept), "Accept: %s", j->accept);
		headers[n++] = accept;
	}
	headers[n] = NULL;
	/* a whole (non-streamed) reply only starts when the model is done */
	ao.first_byte_timeout_ms = j->s->first_byte_timeout_ms;
	if (!j->stream && j->max_seconds * 1000 + 5000 > ao.first_byte_timeout_ms)
		ao.first_byte_timeout_ms = j->max_seconds * 1000 + 5000;
	j->first_byte_ms = ao.first_byte_timeout_ms;
	j->stalled = false;
	j->body_seen = false;
	if (!j->body_timer)
		j->body_timer = evtimer_new(j->t->base, body_timeout, j);
	up.method = "POST";
	up.url = url;
	up.headers = headers;
	up.body = j->seal.active ? dynbuf_ptr(&j->seal.body) : j->body;
	up.body_len = j->seal.active ? dynbuf_len(&j->seal.body) : j->len;
	up.opts = &ao;

	/* the relay owns the request (and its close callback) from here */
	r = j->req;
	http_req_on_close(r, NULL, NULL);
	ro.begun = j->sse_begun;   /* queue comments went out: body only */
	rc = relay_start(&j->rl, r, j->t->async, &up, &ro, j->seal.active ? &cb_sealed :
	    api_kind_of_path(j->path) == API_MESSAGES ? &cb_messages : &cb, j);
	sodium_memzero(authz, sizeof(authz));
	if (rc != 0) {
		(void)client_delivery_finish(&j->dl, j->s->reports, "unreachable");
		snprintf(j->ca.why, sizeof(j->ca.why), "node %.8s: %s", j->node_id,
		    troop_error_msg());
		http_req_on_close(r, job_app_closed, j);
		job_failover(j);
	}
}

/* ---- the queue position while /authorize waits (4b) ------------------------------- */

static void queue_arm(up_job *j, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(j->queue_timer, &tv);
}

static int queue_headers(void *arg, int status, const char *const *headers)
{
	up_job *j = arg;

	(void)headers;
	j->qstatus = status;
	return 0;
}

static int queue_data(void *arg, const char *data, size_t len)
{
	up_job *j = arg;

	if (j->qlen + len >= sizeof(j->qbuf))
		return -1;
	memcpy(j->qbuf + j->qlen, data, len);
	j->qlen += len;
	return 0;
}

/* The position came: a comment to the app while it still waits. */
static void queue_done(void *arg, int err)
{
	up_job *j = arg;
	json_t *o, *pos, *waiting;
	char line[64];

	j->qreq = NULL;
	if (j->free_pending) {
		job_free(j);
		return;
	}
	if (err || j->qstatus != 200 || !j->auth || !j->req)
		return;
	o = json_loadb(j->qbuf, j->qlen, 0, NULL);
	pos = json_object_get(o, "position");
	waiting = json_object_get(o, "waiting");
	/* the coordinator knows the position of this account's latest waiting
	 * request only: with several waiting, the others' comments say how
	 * many wait (this request is among them: /authorize has not answered) */
	if (json_is_integer(pos) && json_integer_value(pos) > 0)
		snprintf(line, sizeof(line), ": queued, position %lld\n\n",
		    (long long)json_integer_value(pos));
	else if (json_is_integer(waiting) && json_integer_value(waiting) > 0)
		snprintf(line, sizeof(line), ": queued, %lld waiting\n\n",
		    (long long)json_integer_value(waiting));
	else
		line[0] = '\0';
	json_decref(o);
	if (!line[0])
		return;
	if (!j->sse_begun) {
		http_reply_header(j->req, "Cache-Control", "no-cache");
		http_stream_begin(j->req, 200, "text/event-stream");
		j->sse_begun = true;
	}
	(void)http_stream_write(j->req, line, strlen(line));
}

/* Every UP_QUEUE_EVERY_MS while /authorize is in flight: ask GET /queue. */
static void queue_tick(evutil_socket_t fd, short what, void *arg)
{
	static const http_async_cb cb = { queue_headers, queue_data, queue_done };
	http_async_opts ao = { .connect_timeout_ms = 3000, .total_timeout_ms = 5000,
		.tcp_nodelay = true };
	up_job *j = arg;
	http_signed_headers hs;
	char url[1200], query[400];
	char *esc;

	(void)fd;
	(void)what;
	if (!j->auth || !j->req)
		return;
	queue_arm(j, UP_QUEUE_EVERY_MS);
	if (j->qreq || (esc = cli_url_escape(j->model)) == NULL)
		return;
	snprintf(query, sizeof(query), "model=%s", esc);
	free(esc);
	if (http_signed_headers_build(&hs, &j->s->id, "GET", "/queue", query, NULL, 0,
	    (int64_t)time(NULL)) != 0)
		return;
	snprintf(url, sizeof(url), "%s/queue?%s", j->s->coordinator, query);
	j->qlen = 0;
	j->qstatus = 0;
	if (http_async_request(j->t->async, &j->qreq, "GET", url, hs.list, NULL, 0, &ao, &cb,
	    j) != 0)
		j->qreq = NULL;
}

/* Watch the queue for a streamed request that may wait in it. */
static void queue_watch(up_job *j)
{
	if (!j->stream || j->s->wait_s <= 0)
		return;
	if (!j->queue_timer && (j->queue_timer = evtimer_new(j->t->base, queue_tick, j)) == NULL)
		return;
	if (!evtimer_pending(j->queue_timer, NULL))
		queue_arm(j, UP_QUEUE_FIRST_MS);
}

/* /authorize answered: no more positions. */
static void queue_unwatch(up_job *j)
{
	if (j->queue_timer)
		evtimer_del(j->queue_timer);
	if (j->qreq)
		http_async_cancel(j->qreq);   /* queue_done ignores it */
}

/* ---- /authorize ------------------------------------------------------------------- */

static int auth_headers(void *arg, int status, const char *const *headers)
{
	up_job *j = arg;

	(void)headers;
	j->astatus = status;
	return 0;
}

/* Append a coordinator reply's bytes to *buf (NUL-terminated, *len long):
 * 0, or -1 out of memory or past UP_COORD_REPLY_MAX (*toolarge set). */
static int reply_add(char **buf, size_t *len, bool *toolarge, const char *data, size_t n)
{
	char *p;

	if (*len + n > UP_COORD_REPLY_MAX) {
		*toolarge = true;
		return -1;
	}
	if (!(p = realloc(*buf, *len + n + 1)))
		return -1;
	*buf = p;
	memcpy(p + *len, data, n);
	*len += n;
	p[*len] = '\0';
	return 0;
}

static int auth_data(void *arg, const char *data, size_t len)
{
	up_job *j = arg;

	return reply_add(&j->abuf, &j->alen, &j->atoolarge, data, len);
}

static void auth_done(void *arg, int err)
{
	up_job *j = arg;
	json_t *reply = NULL;
	proto_error e;
	char msg[2048];

	j->auth = NULL;
	queue_unwatch(j);
	if (!j->req) {              /* the app went away meanwhile */
		job_free(j);
		return;
	}
	j->auth_us += up_now_us() - j->t0_us;
	up_metrics_authorize_us(up_now_us() - j->t0_us);
	if (err != 0 || j->atoolarge) {
		snprintf(msg, sizeof(msg), "troop up cannot reach the coordinator at %s (%s); "
		    "is it running, and is --coordinator right?", j->s->coordinator,
		    j->atoolarge ? "reply too large" : troop_error_msg());
		job_fail(j, 503, "server_error", "coordinator_unreachable", msg);
		return;
	}
	reply = j->abuf ? json_loadb(j->abuf, j->alen, 0, NULL) : NULL;
	switch (client_auth_reply(&j->ca, j->astatus, reply, &e)) {
	case CLIENT_AUTH_OK:
		break;
	case CLIENT_AUTH_EXHAUSTED:
		if (j->seal_refused) {
			/* every node offered was given with a key it did not sign */
			snprintf(msg, sizeof(msg), "troop up refused to send the request after %d "
			    "tries: %s", j->ca.attempt - 1, j->ca.why);
			job_fail(j, 502, "api_error", "seal_key_invalid", msg);
			json_decref(reply);
			return;
		}
		/* the nodes left after exclusion are busy or gone */
		snprintf(msg, sizeof(msg), "%s (before: %s)", e.message[0] ? e.message :
		    "no capacity", j->ca.why);
		job_fail(j, 503, "server_error", "no_capacity", msg);
		json_decref(reply);
		return;
	case CLIENT_AUTH_BAD_SIGNATURE:
		snprintf(msg, sizeof(msg), "the coordinator refused troop up's signature (%s); "
		    "check this machine's clock", e.message[0] ? e.message : "no reason given");
		job_fail(j, 502, "api_error", e.code[0] ? e.code : "bad_signature", msg);
		json_decref(reply);
		return;
	case CLIENT_AUTH_NO_CREDITS:
	case CLIENT_AUTH_ERROR:
		if (e.message[0]) {
			/* 402, 404 model_not_found, ...: the app gets them as they are */
			job_pass_error(j, j->astatus, j->abuf, j->alen);
			json_decref(reply);
			return;
		}
		/* fall through */
	case CLIENT_AUTH_BAD_REPLY:
		if (j->astatus == 200)
			snprintf(msg, sizeof(msg), "the coordinator's /authorize reply is not a "
			    "ticket: %s", e.message);
		else
			snprintf(msg, sizeof(msg), "the coordinator at %s answered /authorize with "
			    "HTTP %d and no error; is --coordinator right?", j->s->coordinator,
			    j->astatus);
		job_fail(j, 502, "api_error", "upstream_error", msg);
		json_decref(reply);
		return;
	}
	json_decref(reply);
	up_metrics_reserved(j->ca.ticket.estimated_cost);
	sodium_memzero(j->abuf, j->alen);
	free(j->abuf);
	j->abuf = NULL;
	j->alen = 0;
	/* the session's next request: a ticket ready before it comes (asked
	 * for once this one's reply is under way: prefetch_soon) */
	if (j->ca.attempt == 1)
		j->prefetch_due = true;
	job_authorized(j);
}

/* j->ca.ticket holds the job's ticket: to the worker.  May free the job
 * (failing over to the end): j is not used after. */
static void job_authorized(up_job *j)
{
	snprintf(j->job_id, sizeof(j->job_id), "%s", j->ca.ticket.job_id);
	snprintf(j->node_id, sizeof(j->node_id), "%s", j->ca.ticket.node_id);
	j->max_seconds = j->ca.ticket.max_seconds;
	start_relay(j, j->ca.ticket.token, j->ca.ticket.target_ip,
	    (long long)j->ca.ticket.target_port);
}

/* ---- tickets fetched ahead (up_prefetch.h) -------------------------------------------- */

struct prefetch_req {
	up_server *s;
	client_auth ca;             /* the fetch: the key's model and requirements */
	char *buf;
	size_t len;
	int status;
	bool toolarge;
};

static int prefetch_headers(void *arg, int status, const char *const *headers)
{
	struct prefetch_req *f = arg;

	(void)headers;
	f->status = status;
	return 0;
}

static int prefetch_data(void *arg, const char *data, size_t len)
{
	struct prefetch_req *f = arg;

	return reply_add(&f->buf, &f->len, &f->toolarge, data, len);
}

static void prefetch_done(void *arg, int err)
{
	struct prefetch_req *f = arg;
	json_t *reply = NULL;

	if (!err && !f->toolarge && f->buf)
		reply = json_loadb(f->buf, f->len, 0, NULL);
	if (reply && client_auth_reply(&f->ca, f->status, reply, NULL) == CLIENT_AUTH_OK) {
		up_prefetch_put(f->s->prefetch, &f->ca.req, &f->ca.ticket, (int64_t)time(NULL));
		up_metrics_prefetch(true, f->ca.ticket.estimated_cost);
		log_debug("prefetch", "model=%s job=%s node=%.8s", f->ca.req.model,
		    f->ca.ticket.job_id, f->ca.ticket.node_id);
	} else {
		up_prefetch_failed(f->s->prefetch, &f->ca.req);
		up_metrics_prefetch(false, 0);
		log_debug("prefetch", "model=%s status=%d result=none", f->ca.req.model, f->status);
	}
	json_decref(reply);
	if (f->buf)
		sodium_memzero(f->buf, f->len);
	free(f->buf);
	sodium_memzero(&f->ca.ticket, sizeof(f->ca.ticket));
	free(f);
}

/* Fetch one ticket ahead for `req`'s key when it wants one, on thread t's
 * loop, off any request's path. */
static void prefetch_start(up_thread *t, up_server *s, const proto_authorize_req *req)
{
	static const http_async_cb cb = { prefetch_headers, prefetch_data, prefetch_done };
	http_async_opts ao = { .connect_timeout_ms = 3000, .total_timeout_ms = UP_COORD_TIMEOUT_MS,
		.tcp_nodelay = true };
	http_signed_headers hs;
	struct prefetch_req *f;
	char url[600], *text;
	size_t len = 0;
	int rc;

	if (!s->prefetch || !up_prefetch_want(s->prefetch, req, (int64_t)time(NULL)))
		return;
	if (!(f = calloc(1, sizeof(*f)))) {
		up_prefetch_failed(s->prefetch, req);
		return;
	}
	f->s = s;
	client_auth_init(&f->ca, req->model, s->max_seconds, 1);
	f->ca.req.require = req->require;
	f->ca.req.require.context = up_prefetch_context(s->prefetch, req);
	f->ca.req.wait = 0;         /* a ticket ahead never waits in the queue */
	f->ca.req.ahead = true;     /* nor holds a slot before its job starts */
	f->ca.delivery_report = s->reports != NULL;
	text = client_auth_body(&f->ca, &len);
	rc = text ? http_signed_headers_build(&hs, &s->id, "POST", "/authorize", "", text, len,
	    (int64_t)time(NULL)) : TROOP_ENOMEM;
	if (rc == 0) {
		snprintf(url, sizeof(url), "%s/authorize", s->coordinator);
		rc = http_async_request(t->async, NULL, "POST", url, hs.list, text, len, &ao, &cb,
		    f);
	}
	free(text);
	if (rc != 0) {
		up_prefetch_failed(s->prefetch, req);
		free(f);
	}
}

static void start_authorize(up_job *j)
{
	static const http_async_cb cb = { auth_headers, auth_data, auth_done };
	/* the coordinator may hold the request in its queue for wait_s */
	http_async_opts ao = { .connect_timeout_ms = 3000,
		.total_timeout_ms = UP_COORD_TIMEOUT_MS + j->s->wait_s * 1000, .tcp_nodelay = true };
	http_signed_headers hs;
	char url[600];
	char *text;
	size_t len = 0;
	int rc;

	free(j->abuf);
	j->abuf = NULL;
	j->alen = 0;
	j->astatus = 0;
	text = client_auth_body(&j->ca, &len);
	if (!text) {
		job_fail(j, 500, "server_error", "internal_error", "out of memory");
		return;
	}
	rc = http_signed_headers_build(&hs, &j->s->id, "POST", "/authorize", "", text, len,
	    (int64_t)time(NULL));
	if (rc != 0) {
		free(text);
		job_fail(j, 500, "server_error", "internal_error", troop_error_msg());
		return;
	}
	snprintf(url, sizeof(url), "%s/authorize", j->s->coordinator);
	j->t0_us = up_now_us();
	rc = http_async_request(j->t->async, &j->auth, "POST", url, hs.list, text, len, &ao,
	    &cb, j);
	free(text);
	if (rc != 0) {
		job_fail(j, 503, "server_error", "coordinator_unreachable", troop_error_msg());
		return;
	}
	http_req_on_close(j->req, job_app_closed, j);
	queue_watch(j);
}

/* ---- the route ---------------------------------------------------------------------- */

void up_handle_inference(http_req *r, void *arg)
{
	up_server *s = arg;
	up_thread *t = up_thread_of(r);
	const char *model = NULL, *accept;
	json_t *body = NULL;
	bool stream = false;
	up_job *j;
	int rc;

	if (!up_check_key(r, s))
		return;
	{
		size_t len;
		const char *raw = http_req_body(r, &len);
		if ((rc = json_parse_object(&body, raw, len)) != 0 ||
		    (rc = json_get_strn(&model, body, "model", true, UP_MODEL_MAX)) != 0 ||
		    (rc = json_get_bool(&stream, body, "stream", false)) != 0)
			goto fail;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		goto fail;
	}
	j->t = t;
	j->s = s;
	j->req = r;
	j->body = http_req_body(r, &j->len);
	j->stream = stream;
	snprintf(j->path, sizeof(j->path), "%s", http_req_path(r));
	snprintf(j->model, sizeof(j->model), "%s", model);
	client_auth_init(&j->ca, model, j->s->max_seconds, UP_TRIES);
	client_auth_require(&j->ca, body);
	j->ca.req.wait = s->wait_s;
	up_seal_init(&j->seal, api_kind_of_path(j->path));
	j->ca.delivery_report = s->reports != NULL;
	accept = http_req_header(r, "Accept");
	if (accept && strlen(accept) < sizeof(j->accept) && !strpbrk(accept, "\r\n"))
		snprintf(j->accept, sizeof(j->accept), "%s", accept);
	json_decref(body);
	atomic_fetch_add(&s->jobs, 1);
	/* a ticket fetched ahead for this session: no round trip */
	if (s->prefetch && up_prefetch_take(s->prefetch, &j->ca.req, &j->ca.ticket,
	    (int64_t)time(NULL))) {
		j->ca.attempt = 1;
		j->ahead = true;
		j->t0_us = up_now_us();
		up_metrics_prefetch_used();
		j->prefetch_due = true;   /* the next one: prefetch_soon */
		job_authorized(j);
		return;
	}
	start_authorize(j);
	return;
fail:
	json_decref(body);
	up_metrics_reply(troop_err_status(rc));
	up_reply_error(r, troop_err_status(rc), troop_err_type(rc), troop_err_code(rc), NULL,
	    "%s", troop_error_msg());
}
