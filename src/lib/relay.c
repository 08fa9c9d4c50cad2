/*
 * relay.c - the streaming relay of relay.h: one upstream reply, taken from
 * http_async's callbacks, written to one http_req as chunks.
 *
 * A relay lives from relay_start until both sides are done: the upstream
 * request has called on_done (always exactly once) and the client side is
 * finished (stream ended, error replied, request handed back, or the client
 * gone).  The client side is always finished from the upstream's on_done
 * or from relay_abort / the client's close callback, and the relay is
 * freed only after the upstream's on_done, so no callback can reach freed
 * memory: http_async never calls back after on_done, and the server never
 * calls back after the request was finished.
 *
 * Event alignment: for text/event-stream replies a small scanner follows
 * the WHATWG line rules (LF, CRLF, CR) across chunks and finds where the
 * last complete event ends; the bytes after it wait in `tail` until their
 * event is complete.
 */
#include "relay.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dynbuf.h"
#include "error.h"
#include "json.h"
#include "log.h"

#define RELAY_CHUNK_SLACK (4u << 20)  /* see relay_start */

enum phase {
	PH_HEADERS = 0,   /* waiting for the upstream status */
	PH_BODY,          /* relaying the body */
	PH_ERRBODY,       /* collecting an error body for normalize_error */
};

struct relay {
	http_req *req;            /* NULL once the client side is finished */
	http_async_req *up;       /* NULL once the upstream called on_done */
	relay_cb cb;
	void *arg;
	relay_opts o;
	enum phase phase;
	int64_t t0_us;
	relay_stats st;
	char content_type[128];
	bool began;               /* http_stream_begin done */
	bool paused;              /* upstream paused until the client drains */
	bool ending;              /* abort / client gone / reject decided */
	bool done;                /* on_done called */
	/* event-stream scanner state (over every byte seen so far) */
	bool sse;
	bool at_line_start;
	bool last_cr;
	bool cr_boundary;         /* an event ended at a CR: a following LF joins it */
	bool unaligned;           /* an over-long event was forwarded in pieces */
	dynbuf tail;              /* bytes after the last complete event */
	/* bytes queued for the client, sent at the end of the loop iteration */
	dynbuf out;
	struct event *flush_ev;
	bool flush_armed;
	struct event *keepalive_ev; /* relay_opts.keepalive_ms */
	int64_t last_write_us;
	/* error body for normalize_error */
	char *errbuf;
	size_t err_len;
	relay_wrap_fn wrap;       /* relay_set_wrap */
	char wrap_type[128];      /* the client's Content-Type while wrapped */
	/* abort message to send (relay_abort before anything was sent) */
	int abort_err;
	char abort_msg[256];
};

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *relay_end_name(relay_end e)
{
	switch (e) {
	case RELAY_END_COMPLETE: return "complete";
	case RELAY_END_UPSTREAM: return "upstream_error";
	case RELAY_END_ABORTED: return "aborted";
	case RELAY_END_CLIENT_GONE: return "client_gone";
	case RELAY_END_REJECTED: return "rejected";
	}
	return "unknown";
}

void relay_set_content_type(relay *rl, const char *ctype)
{
	if (!rl || !ctype)
		return;
	snprintf(rl->content_type, sizeof(rl->content_type), "%s", ctype);
	rl->sse = strncasecmp(rl->content_type, "text/event-stream", 17) == 0;
	rl->st.event_stream = rl->sse;
}

void relay_set_wrap(relay *rl, const char *ctype, relay_wrap_fn fn)
{
	if (!rl || !ctype || !fn)
		return;
	rl->wrap = fn;
	snprintf(rl->wrap_type, sizeof(rl->wrap_type), "%s", ctype);
}

uint64_t relay_bytes_out(const relay *rl)
{
	return rl ? rl->st.bytes_out : 0;
}

static void relay_free(relay *rl)
{
	if (!rl)
		return;
	if (rl->flush_ev)
		event_free(rl->flush_ev);
	if (rl->keepalive_ev)
		event_free(rl->keepalive_ev);
	dynbuf_free(&rl->out);
	dynbuf_free(&rl->tail);
	free(rl->errbuf);
	free(rl);
}

/* ---- writing to the client ------------------------------------------------- */

static void client_closed(http_req *req, void *arg);

static int out_append(relay *rl, const char *data, size_t len)
{
	return dynbuf_add(&rl->out, data, len) == 0 ? 0 : -1;
}

/* Whether bytes were given to the client (sent, or queued to go out at
 * the end of this iteration): from then on it gets a stream, not a
 * hand-back. */
static bool client_started(const relay *rl)
{
	return rl->began || dynbuf_len(&rl->out) > 0;
}

/* Send what is queued now, starting the reply if it has not started.
 * Returns 0, or -1 when the client cannot take it (gone). */
static int client_flush_ex(relay *rl, bool final)
{
	const char *p;
	size_t n;
	int rc;

	if (!rl->req) {
		dynbuf_reset(&rl->out);
		return -1;
	}
	if (!rl->began) {
		rl->st.status = rl->st.upstream_status ? rl->st.upstream_status : 200;
		if (!rl->o.begun)
			http_stream_begin(rl->req, rl->st.status, rl->wrap ? rl->wrap_type :
			    rl->content_type[0] ? rl->content_type : NULL);
		rl->began = true;
	}
	if (dynbuf_len(&rl->out) == 0 && !(final && rl->wrap))
		return 0;
	p = dynbuf_ptr(&rl->out);
	n = dynbuf_len(&rl->out);
	/* relay_set_wrap: what this write holds, wrapped as one piece */
	if (rl->wrap && rl->wrap(rl->arg, p, n, final, &p, &n) != 0) {
		snprintf(rl->st.error, sizeof(rl->st.error), "cannot wrap the reply: %s",
		    troop_error_msg());
		dynbuf_reset(&rl->out);
		return -1;
	}
	if (n == 0) {
		dynbuf_reset(&rl->out);
		return 0;
	}
	if (rl->st.ttfb_us < 0)
		rl->st.ttfb_us = now_us() - rl->t0_us;
	rc = http_stream_write(rl->req, p, n);
	if (rc == 0) {
		rl->st.bytes_out += n;
		rl->st.writes++;
	}
	dynbuf_reset(&rl->out);
	return rc == 0 ? 0 : -1;
}

static int client_flush(relay *rl)
{
	return client_flush_ex(rl, false);
}

/* The last write of a reply (relay_set_wrap: its final piece). */
static int client_flush_final(relay *rl)
{
	return client_flush_ex(rl, true);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	relay *rl = arg;

	rl->flush_armed = false;
	if (rl->req && dynbuf_len(&rl->out))
		(void)client_flush(rl);
}

/* Queue bytes for the client.  They leave at the end of this loop
 * iteration (flush_cb), so the events that came in one read of the
 * upstream leave in one chunk rather than one chunk each (curl hands over
 * each chunk of a chunked reply separately), with no added wait.
 * Returns 0, or -1 when the client is gone or memory ran out. */
static int client_write(relay *rl, const char *data, size_t len, bool observe)
{
	if (!rl->req)
		return -1;
	if (len == 0)
		return 0;
	if (out_append(rl, data, len) != 0)
		return -1;
	rl->last_write_us = now_us();
	if (observe && rl->cb.on_body)
		rl->cb.on_body(rl->arg, data, len);
	if (!rl->flush_armed) {
		rl->flush_armed = true;
		event_active(rl->flush_ev, EV_TIMEOUT, 1);
	}
	return 0;
}

/* The error event that ends an event stream after a failure.  No
 * "data: [DONE]" follows: that marker means the answer is complete, and
 * the OpenAI API itself ends a stream that failed with the error event
 * alone, so a reader that ignores error events still sees the stream end
 * without its end marker. */
static char *error_events_text(relay *rl, int err, const char *msg)
{
	json_t *body;
	char *text, *ev;
	size_t n;

	if (rl->cb.error_event &&
	    (text = rl->cb.error_event(rl->arg, err ? err : TROOP_EUPSTREAM, msg)) != NULL)
		return text;
	body = json_error_body(err ? err : TROOP_EUPSTREAM, msg);
	text = body ? json_dump_compact(body, NULL) : NULL;
	json_decref(body);
	if (!text)
		return NULL;
	n = strlen(text) + 9;
	ev = malloc(n);
	if (ev)
		snprintf(ev, n, "data: %s\n\n", text);
	free(text);
	return ev;
}

static void client_error_events(relay *rl, int err, const char *msg)
{
	char *text;

	if (rl->unaligned)  /* end whatever event was cut, so ours stands alone */
		(void)client_write(rl, "\n\n", 2, false);
	text = error_events_text(rl, err, msg);
	if (text)
		(void)client_write(rl, text, strlen(text), false);
	free(text);
}

/* Finish the client's stream after a failure or abort once bytes were
 * sent: an event stream gets the error events; other bodies just end. */
static void client_end_with_error(relay *rl, int err, const char *msg)
{
	if (!rl->req)
		return;
	dynbuf_reset(&rl->tail);  /* an incomplete event is dropped */
	if (rl->sse)
		client_error_events(rl, err, msg);
	if (client_flush_final(rl) != 0 || !rl->req)
		return;
	http_req_on_close(rl->req, NULL, NULL);
	http_stream_end(rl->req);
	rl->req = NULL;
}

/* Give the request back to the caller (nothing was sent). */
static http_req *client_hand_back(relay *rl)
{
	http_req *req = rl->req;

	if (req) {
		http_req_on_close(req, NULL, NULL);
		http_stream_on_drain(req, NULL, NULL);
	}
	rl->req = NULL;
	dynbuf_reset(&rl->out);  /* queued, never sent */
	return req;
}

/* ---- event-stream alignment -------------------------------------------------- */

/* Scan `len` bytes, updating the line state; returns the offset just past
 * the last complete event in them, or 0 when none ends here.  A blank line
 * (a line terminator right after another) ends an event. */
static size_t sse_scan(relay *rl, const char *p, size_t len)
{
	size_t last = 0;

	if (len == 0)
		return 0;
	if (!rl->last_cr && !memchr(p, '\r', len)) {
		/* LF only (what engines send): the last "\n\n", searched from the
		 * end, without looking at every byte */
		const char *q = memrchr(p, '\n', len);

		while (q) {
			size_t i = (size_t)(q - p);

			if (i > 0 ? p[i - 1] == '\n' : rl->at_line_start) {
				last = i + 1;
				break;
			}
			q = i > 1 ? memrchr(p, '\n', i - 1) : NULL;
		}
		rl->at_line_start = p[len - 1] == '\n';
		rl->cr_boundary = false;
		return last;
	}

	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (c == '\n') {
			if (rl->last_cr) {
				/* the LF of a CRLF: the line already ended at the CR */
				rl->last_cr = false;
				if (rl->cr_boundary) {
					last = i + 1;
					rl->cr_boundary = false;
				}
				continue;
			}
			if (rl->at_line_start)
				last = i + 1;
			rl->at_line_start = true;
		} else if (c == '\r') {
			rl->cr_boundary = false;
			if (rl->at_line_start) {
				last = i + 1;
				rl->cr_boundary = true;
			}
			rl->at_line_start = true;
			rl->last_cr = true;
		} else {
			rl->at_line_start = false;
			rl->last_cr = false;
			rl->cr_boundary = false;
		}
	}
	return last;
}

static int tail_append(relay *rl, const char *p, size_t len)
{
	return dynbuf_add(&rl->tail, p, len) == 0 ? 0 : -1;
}

/* Forward the complete events in tail + data; keep the rest. */
static int sse_forward(relay *rl, const char *data, size_t len)
{
	size_t cut = sse_scan(rl, data, len);

	if (cut == 0) {
		if (dynbuf_len(&rl->tail) + len > rl->o.max_event) {
			/* an event longer than we hold: forward it as it comes */
			rl->unaligned = true;
			if (dynbuf_len(&rl->tail) && client_write(rl, dynbuf_ptr(&rl->tail),
			    dynbuf_len(&rl->tail), true) != 0)
				return -1;
			dynbuf_reset(&rl->tail);
			return client_write(rl, data, len, true);
		}
		return tail_append(rl, data, len);
	}
	rl->unaligned = false;
	if (dynbuf_len(&rl->tail) == 0) {
		if (client_write(rl, data, cut, true) != 0)
			return -1;
	} else {
		if (tail_append(rl, data, cut) != 0 ||
		    client_write(rl, dynbuf_ptr(&rl->tail), dynbuf_len(&rl->tail), true) != 0)
			return -1;
		dynbuf_reset(&rl->tail);
	}
	if (cut < len)
		return tail_append(rl, data + cut, len - cut);
	return 0;
}

/* ---- upstream callbacks ------------------------------------------------------ */

/* Every keepalive_ms: a comment line when nothing went to the client for
 * that long.  Written only between events (the scanner holds a partial
 * event back in tail; an over-long one forwarded in pieces is skipped). */
static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	relay *rl = arg;

	if (!rl->req || rl->ending || rl->unaligned || !rl->began)
		return;
	if (now_us() - rl->last_write_us < rl->o.keepalive_ms * 1000 - 50000)
		return;
	(void)client_write(rl, ": keep-alive\n\n", 14, false);
}

/* Begin the client's reply now and start the keep-alive comments. */
static void begin_early(relay *rl)
{
	struct timeval tv = { rl->o.keepalive_ms / 1000, (rl->o.keepalive_ms % 1000) * 1000 };

	if (client_flush(rl) != 0 || !rl->req)
		return;
	rl->last_write_us = now_us();
	rl->keepalive_ev = event_new(http_req_base(rl->req), -1, EV_PERSIST, keepalive_cb, rl);
	if (rl->keepalive_ev)
		event_add(rl->keepalive_ev, &tv);
}

static void client_drained(http_req *req, void *arg)
{
	relay *rl = arg;

	rl->paused = false;
	if (rl->up)
		http_async_resume(rl->up);
}

static int up_headers(void *arg, int status, const char *const *headers)
{
	relay *rl = arg;

	rl->st.upstream_status = status;
	if (!rl->req || rl->ending)
		return 1;
	for (size_t i = 0; headers && headers[i]; i++) {
		const char *h = headers[i];

		if (strncasecmp(h, "Content-Type:", 13) == 0) {
			h += 13;
			while (*h == ' ' || *h == '\t')
				h++;
			snprintf(rl->content_type, sizeof(rl->content_type), "%s", h);
		}
	}
	rl->sse = strncasecmp(rl->content_type, "text/event-stream", 17) == 0;
	rl->st.event_stream = rl->sse;
	rl->at_line_start = true;
	if (rl->cb.on_headers && rl->cb.on_headers(rl->arg, status, headers) != RELAY_ACCEPT) {
		rl->ending = true;
		rl->st.end = RELAY_END_REJECTED;
		rl->st.err = TROOP_EUPSTREAM;
		snprintf(rl->st.error, sizeof(rl->st.error), "upstream reply %d rejected", status);
		return 1;
	}
	if (status >= 400 && rl->cb.normalize_error) {
		rl->phase = PH_ERRBODY;
		rl->errbuf = malloc(rl->o.max_error_body + 1);
		if (!rl->errbuf)
			return 1;
	} else {
		rl->phase = PH_BODY;
		if (rl->o.keepalive_ms > 0 && rl->sse && status >= 200 && status < 300)
			begin_early(rl);
	}
	return 0;
}

/* relay_cb.transform on a chunk; a failure is logged as the reply's. */
static int transform(relay *rl, const char *data, size_t len, bool end, const char **out,
    size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (rl->cb.transform(rl->arg, data, len, end, out, out_len) != 0) {
		snprintf(rl->st.error, sizeof(rl->st.error), "cannot translate the reply: %s",
		    troop_error_msg());
		return -1;
	}
	if (!*out)
		*out_len = 0;
	return 0;
}

static int up_data(void *arg, const char *data, size_t len)
{
	relay *rl = arg;
	int rc;

	rl->st.bytes_in += len;
	rl->st.chunks_in++;
	if (!rl->req || rl->ending)
		return -1;
	if (rl->phase == PH_ERRBODY) {
		size_t room = rl->o.max_error_body - rl->err_len;
		size_t n = len < room ? len : room;

		memcpy(rl->errbuf + rl->err_len, data, n);
		rl->err_len += n;
		return 0;
	}
	if (rl->cb.transform && transform(rl, data, len, false, &data, &len) != 0)
		return -1;
	rc = rl->sse ? sse_forward(rl, data, len) : client_write(rl, data, len, true);
	if (rc != 0 || !rl->req)
		return -1;
	if (http_stream_pending(rl->req) + dynbuf_len(&rl->out) > rl->o.max_pending) {
		if (client_flush(rl) != 0 || !rl->req)
			return -1;
		rl->paused = true;
		rl->st.pauses++;
		http_stream_on_drain(rl->req, client_drained, rl);
		return HTTP_ASYNC_PAUSE;
	}
	return 0;
}

/* The error reply, normalised; false when it should be relayed unchanged. */
static bool reply_normalised(relay *rl)
{
	json_t *out = NULL;
	int status;

	rl->errbuf[rl->err_len] = '\0';
	status = rl->cb.normalize_error(rl->arg, rl->st.upstream_status, rl->errbuf,
	    rl->err_len, &out);
	if (status < 400 || status > 599 || !out) {
		json_decref(out);
		return false;
	}
	{
		size_t n = 0;
		char *text = json_dump_compact(out, &n);

		json_decref(out);
		if (!text)
			return false;
		if (rl->wrap) {
			/* wrapped like any other reply, with the normalised status */
			if (!rl->began) {
				rl->st.status = status;
				http_stream_begin(rl->req, status, rl->wrap_type);
				rl->began = true;
			}
			if (client_write(rl, text, n, false) == 0 && client_flush_final(rl) == 0 &&
			    rl->req) {
				http_req_on_close(rl->req, NULL, NULL);
				http_stream_end(rl->req);
			}
			free(text);
			rl->req = NULL;
			return true;
		}
		http_req_on_close(rl->req, NULL, NULL);
		rl->st.status = status;
		rl->st.bytes_out += n;
		if (rl->st.ttfb_us < 0)
			rl->st.ttfb_us = now_us() - rl->t0_us;
		http_reply(rl->req, status, "application/json", text, n);
		free(text);
	}
	rl->req = NULL;
	return true;
}

static void up_done(void *arg, int err)
{
	relay *rl = arg;
	http_req *back = NULL;
	const char *last = NULL;
	size_t last_len = 0;

	rl->up = NULL;
	if (rl->keepalive_ev)
		event_del(rl->keepalive_ev);
	if (err && !rl->ending && !rl->st.error[0])
		snprintf(rl->st.error, sizeof(rl->st.error), "%s", troop_error_msg());

	if (rl->ending) {
		/* decided before: reject, abort, client gone */
		if (rl->req && !client_started(rl))
			back = client_hand_back(rl);
		else if (rl->req)
			client_end_with_error(rl, rl->abort_err, rl->abort_msg);
	} else if (!rl->req) {
		rl->st.end = RELAY_END_CLIENT_GONE;
	} else if (err == 0 && rl->phase == PH_ERRBODY) {
		if (!reply_normalised(rl)) {
			/* relay it as it came */
			if (client_write(rl, rl->errbuf, rl->err_len, true) == 0 &&
			    client_flush_final(rl) == 0 && rl->req) {
				http_req_on_close(rl->req, NULL, NULL);
				http_stream_end(rl->req);
			}
			rl->req = NULL;
		}
		rl->st.end = RELAY_END_COMPLETE;
	} else if (err == 0 && rl->cb.transform &&
	    (transform(rl, NULL, 0, true, &last, &last_len) != 0 ||
	    (rl->sse ? sse_forward(rl, last, last_len) :
	    client_write(rl, last, last_len, true)) != 0)) {
		/* the end of a translated reply failed (when it succeeds, its last
		 * bytes are queued and the next branch ends the reply) */
		rl->st.end = RELAY_END_UPSTREAM;
		rl->st.err = TROOP_EUPSTREAM;
		if (!client_started(rl))
			back = client_hand_back(rl);
		else
			client_end_with_error(rl, TROOP_EUPSTREAM, "the reply could not be translated");
	} else if (err == 0) {
		/* a last event without its blank line is still the upstream's bytes */
		if (dynbuf_len(&rl->tail))
			(void)client_write(rl, dynbuf_ptr(&rl->tail), dynbuf_len(&rl->tail), true);
		dynbuf_reset(&rl->tail);
		if (rl->req && client_flush_final(rl) == 0 && rl->req) {
			http_req_on_close(rl->req, NULL, NULL);
			http_stream_end(rl->req);
		}
		rl->req = NULL;
		rl->st.end = RELAY_END_COMPLETE;
	} else {
		rl->st.end = RELAY_END_UPSTREAM;
		rl->st.err = err;
		if (!client_started(rl))
			back = client_hand_back(rl);
		else
			client_end_with_error(rl, TROOP_EUPSTREAM,
			    "the upstream stopped in the middle of the reply");
	}
	if (rl->req) {
		/* not reachable: every branch above finished the client side */
		http_req_on_close(rl->req, NULL, NULL);
		http_stream_end(rl->req);
		rl->req = NULL;
	}
	rl->st.duration_us = now_us() - rl->t0_us;
	rl->done = true;
	rl->cb.on_done(rl->arg, back, &rl->st);
	relay_free(rl);
}

/* ---- client callbacks -------------------------------------------------------- */

static void client_closed(http_req *req, void *arg)
{
	relay *rl = arg;

	/* req is freed when this returns */
	rl->req = NULL;
	if (!rl->ending) {
		rl->ending = true;
		rl->st.end = RELAY_END_CLIENT_GONE;
		rl->st.err = TROOP_EIO;
		snprintf(rl->st.error, sizeof(rl->st.error), "the client went away");
	}
	if (rl->up)
		http_async_cancel(rl->up);
}

/* ---- API ---------------------------------------------------------------------- */

int relay_start(relay **out, http_req *req, http_async *a, const relay_upstream *up,
    const relay_opts *opts, const relay_cb *cb, void *arg)
{
	static const http_async_cb ucb = { up_headers, up_data, up_done };
	http_async_opts ao = { .tcp_nodelay = true };
	relay *rl;
	int rc;

	if (out)
		*out = NULL;
	if (!req || !a || !up || !up->method || !up->url || !cb || !cb->on_done)
		return troop_error_set(TROOP_EINVAL, "relay_start: missing request, "
		    "client, upstream or on_done");
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return troop_error_set(TROOP_ENOMEM, "out of memory starting a relay");
	rl->req = req;
	rl->cb = *cb;
	rl->arg = arg;
	if (opts)
		rl->o = *opts;
	if (!rl->o.max_pending)
		rl->o.max_pending = RELAY_DEFAULT_MAX_PENDING;
	if (!rl->o.max_event)
		rl->o.max_event = RELAY_DEFAULT_MAX_EVENT;
	if (!rl->o.max_error_body)
		rl->o.max_error_body = RELAY_DEFAULT_MAX_ERROR_BODY;
	/* The tail holds less than max_event plus the complete events of one
	 * upstream chunk; the queue is flushed once it passes max_pending, so
	 * it holds at most that plus one chunk's worth (curl hands over at most
	 * CURL_MAX_WRITE_SIZE, 16 KiB, per call; CHUNK_SLACK is far above). */
	dynbuf_init(&rl->tail, rl->o.max_event + RELAY_CHUNK_SLACK);
	dynbuf_init(&rl->out, rl->o.max_pending + rl->o.max_event + RELAY_CHUNK_SLACK);
	rl->st.ttfb_us = -1;
	rl->t0_us = now_us();
	rl->flush_ev = event_new(http_req_base(req), -1, 0, flush_cb, rl);
	if (!rl->flush_ev) {
		relay_free(rl);
		return troop_error_set(TROOP_ENOMEM, "out of memory starting a relay");
	}
	if (up->opts)
		ao = *up->opts;
	ao.tcp_nodelay = true;
	rc = http_async_request(a, &rl->up, up->method, up->url, up->headers, up->body,
	    up->body_len, &ao, &ucb, rl);
	if (rc) {
		relay_free(rl);
		return rc;
	}
	http_req_on_close(req, client_closed, rl);
	if (out)
		*out = rl;
	return 0;
}

void relay_abort(relay *rl, int err, const char *msg)
{
	if (!rl || rl->done || rl->ending)
		return;
	rl->ending = true;
	rl->st.end = RELAY_END_ABORTED;
	rl->st.err = err ? err : TROOP_ERR;
	snprintf(rl->st.error, sizeof(rl->st.error), "%s", msg ? msg : "aborted");
	rl->abort_err = rl->st.err;
	snprintf(rl->abort_msg, sizeof(rl->abort_msg), "%s", msg ? msg : "aborted");
	if (rl->req && client_started(rl))
		client_end_with_error(rl, rl->abort_err, rl->abort_msg);
	/* else: handed back from up_done, once the upstream has let go */
	if (rl->up)
		http_async_cancel(rl->up);
}
