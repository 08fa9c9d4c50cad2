/*
 * proxy.c - the worker's ticket-checking streaming proxy (proxy.h).
 *
 * Each server thread owns an http_async client on its event base, so a
 * job's engine request, its relay and its max_seconds timer all live on
 * the thread that took the request.  Shared state (keys, replay cache,
 * catalog, receipts) is behind the modules' own locks; the job count is
 * an atomic.
 *
 * A job's life: admitted (ticket + slot) -> relay_start -> relay on_done
 * (any ending) -> record, receipt, slot released.  The only path where a
 * request waits before admission is an unknown kid: the request is parked
 * while GET /public-key runs on the same loop.
 */
#include "proxy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

#include "api_kind.h"
#include "compat.h"
#include "dynbuf.h"
#include "endpoints.h"
#include "error.h"
#include "http_client.h"
#include "http_server.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "relay.h"
#include "sealed.h"
#include "sha256.h"
#include "ticket.h"
#include "worker_metrics.h"

struct proxy {
	proxy_opts o;
	char *node_id;
	char *coordinator;
	http_server *srv;
	atomic_int active;
	atomic_long done;
};

/* Per server thread. */
struct pthread_ctx {
	proxy *p;
	http_async *a;
	struct event_base *base;
};

struct job {
	proxy *p;
	struct pthread_ctx *t;
	relay *rl;
	http_req *req;              /* the requester's, while the relay holds it */
	struct event *deadline;
	struct event *first_token;  /* armed at the engine's headers */
	int64_t first_token_s;
	bool body_seen;             /* a body byte of the engine's came */
	bool first_token_late;      /* stopped by the first-token limit */
	usage_counter *usage;
	sha256_ctx digest;                /* of the body bytes sent to the requester */
	bool digest_fed;
	worker_job rec;
	int64_t t0_us;
	int64_t max_seconds;
	char path[32];             /* /v1/... of the request */
	api_kind api;              /* the API the request speaks */
	bool translate;            /* sent to the engine as chat completions */
	bool renamed;              /* the engine knows the model by another name */
	compat_reply *compat;      /* translating the engine's reply back */
	dynbuf xout;               /* the translated bytes of one chunk */
	bool sealed;               /* the request came sealed: so goes the reply */
	sealed_reply seal;
};

/* A request parked while the coordinator key is refetched. */
struct keyfetch {
	proxy *p;
	http_req *r;
	dynbuf body;               /* the reply, at most KEYRING_REPLY_MAX - 1 bytes */
	bool overflow;
	int status;
};

static void admit(proxy *p, http_req *r, bool refetched);
static void job_seal_headers(struct job *j, int status, const char *const *headers);
static int job_seal_wrap(void *arg, const char *data, size_t len, bool final,
    const char **out, size_t *out_len);

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- jobs --------------------------------------------------------------------- */

static int job_on_headers(void *arg, int status, const char *const *headers)
{
	struct job *j = arg;
	bool sse = false;

	for (size_t i = 0; headers && headers[i]; i++) {
		const char *h = headers[i];
		if (strncasecmp(h, "Content-Type:", 13) == 0) {
			h += 13;
			while (*h == ' ')
				h++;
			sse = strncasecmp(h, "text/event-stream", 17) == 0;
		}
	}
	if (!j->usage && usage_counter_new(&j->usage, sse) != 0)
		j->usage = NULL;  /* no counts, the job still runs */
	if (j->sealed && j->req && j->rl)
		job_seal_headers(j, status, headers);
	/* a chat completion that the app asked for in another API's words */
	if (j->translate && !j->compat && status >= 200 && status < 300 &&
	    compat_reply_new(&j->compat, j->api, sse, j->rec.job_id, j->rec.model,
	    (int64_t)time(NULL)) != 0)
		return RELAY_REJECT;
	/* the engine's own Responses or Messages reply, revised for the SDKs,
	 * and any reply of an engine that names the model otherwise (llama.cpp
	 * without --alias: the model file's path), without the engine's name */
	if (!j->translate && !j->compat && (j->api != API_OPENAI || j->renamed) &&
	    status >= 200 &&
	    status < 300 && compat_native_new(&j->compat, j->api, sse, j->rec.model) != 0)
		return RELAY_REJECT;
	/* an error the engine answered (not this worker's failure): the client
	 * passes it to the app instead of trying another node */
	if (status >= 400 && j->req) {
		char v[16];

		snprintf(v, sizeof(v), "%d", status);
		http_reply_header(j->req, PROXY_ENGINE_STATUS_HEADER, v);
	}
	/* the engine accepted the request: from here the first token may take
	 * as long as the prompt needs, up to the first-token limit */
	if (sse && status >= 200 && status < 300 && j->first_token) {
		struct timeval tv = { (time_t)j->first_token_s, 0 };
		evtimer_add(j->first_token, &tv);
	}
	return RELAY_ACCEPT;
}

static void job_on_body(void *arg, const char *data, size_t len)
{
	struct job *j = arg;

	if (!j->body_seen && j->first_token)
		evtimer_del(j->first_token);
	j->body_seen = true;
	usage_counter_feed(j->usage, data, len);
	sha256_update(&j->digest, data, len);
	j->digest_fed = true;
}

static void job_first_token_late(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	char msg[160];

	if (j->body_seen || !j->rl)
		return;
	snprintf(msg, sizeof(msg), "the engine produced no first token within %lld s",
	    (long long)j->first_token_s);
	j->first_token_late = true;
	relay_abort(j->rl, TROOP_ETIMEOUT, msg);
}

static int job_normalize(void *arg, int status, const char *body, size_t len, json_t **out)
{
	struct job *j = arg;
	json_t *e = NULL;
	char *text;
	int rc = engine_error_normalize(status, body, len, &e);

	*out = e;
	if (rc < 0 || j->api != API_MESSAGES)
		return rc;
	/* the Anthropic shape for the Messages API */
	text = json_dump_compact(e, NULL);
	json_decref(e);
	*out = NULL;
	if (!text || api_error_convert(j->api, rc, text, strlen(text), out) != 0)
		rc = TROOP_ENOMEM;
	free(text);
	return rc;
}

/* ---- sealed replies (sealed.h) -------------------------------------------------- */

/* A sealed job's reply headers: the sealed type, the original one beside
 * it (an error body is normalised into JSON), the status unchanged. */
static void job_seal_headers(struct job *j, int status, const char *const *headers)
{
	const char *type = "application/octet-stream";
	char v[128];

	for (size_t i = 0; headers && headers[i]; i++) {
		const char *h = headers[i];
		if (strncasecmp(h, "Content-Type:", 13) == 0) {
			h += 13;
			while (*h == ' ' || *h == '\t')
				h++;
			type = h;
		}
	}
	if (status >= 400)
		type = "application/json";
	snprintf(v, sizeof(v), "%s", strpbrk(type, "\r\n") ? "application/octet-stream" : type);
	http_reply_header(j->req, SEALED_TYPE_HEADER, v);
	relay_set_wrap(j->rl, seal_reply_content_type(&j->seal.keys), job_seal_wrap);
}

/* relay_set_wrap of a sealed job: each write to the requester sealed as
 * one frame, the final frame at the end (sealed.h).  The relay does
 * everything else on the plaintext: event alignment, token counting,
 * keep-alives, error events, error normalisation. */
static int job_seal_wrap(void *arg, const char *data, size_t len, bool final,
    const char **out, size_t *out_len)
{
	struct job *j = arg;

	return sealed_reply_push(&j->seal, data, len, final, out, out_len);
}

/* relay_cb.transform: the engine's chat completion in the app's API. */
static int job_transform(void *arg, const char *data, size_t len, bool end, const char **out,
    size_t *out_len)
{
	struct job *j = arg;
	int rc;

	if (!j->compat) {
		*out = data;
		*out_len = len;
		return 0;
	}
	dynbuf_reset(&j->xout);
	rc = end ? compat_reply_finish(j->compat, &j->xout) :
	    compat_reply_feed(j->compat, data, len, &j->xout);
	*out = dynbuf_ptr(&j->xout);
	*out_len = dynbuf_len(&j->xout);
	return rc;
}

/* relay_cb.error_event: a failed stream ends with the app's API's error
 * event (the Anthropic SDKs ignore an event without a name). */
static char *job_error_event(void *arg, int err, const char *msg)
{
	struct job *j = arg;

	if (j->api == API_OPENAI)
		return NULL;
	return api_error_event(j->api, err, msg, compat_reply_seq(j->compat));
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	if (j->deadline)
		event_free(j->deadline);
	if (j->first_token)
		event_free(j->first_token);
	usage_counter_free(j->usage);
	compat_reply_free(j->compat);
	dynbuf_free(&j->xout);
	sealed_reply_free(&j->seal);
	free(j);
}

static void job_finish(struct job *j, int status, job_outcome outcome, const relay_stats *st)
{
	proxy *p = j->p;
	worker_job *rec = &j->rec;

	rec->ended_at_ms = wall_ms();
	rec->duration_ms = (mono_us() - j->t0_us) / 1000;
	rec->status = status;
	rec->outcome = outcome;
	usage_counter_result(j->usage, &rec->prompt_tokens, &rec->completion_tokens,
	    &rec->usage_reported);
	if (j->digest_fed) {
		unsigned char h[crypto_hash_sha256_BYTES];
		sha256_final(&j->digest, h);
		sodium_bin2hex(rec->response_digest, sizeof(rec->response_digest), h, sizeof(h));
	}
	log_info("job", "job=%s path=%s%s requester=%.8s model=%s outcome=%s status=%d duration_ms=%lld "
	    "prompt=%lld completion=%lld usage=%s bytes=%llu ttfb_us=%lld sealed=%d",
	    rec->job_id, j->path, j->translate ? " via=/v1/chat/completions" : "", rec->requester, rec->model, job_outcome_name(outcome), status,
	    (long long)rec->duration_ms, (long long)rec->prompt_tokens,
	    (long long)rec->completion_tokens, rec->usage_reported ? "engine" : "counted",
	    st ? (unsigned long long)st->bytes_out : 0ULL,
	    st ? (long long)st->ttfb_us : -1LL, j->sealed);
	if (st)
		log_debug("job_relay", "job=%s chunks_in=%llu writes=%llu pauses=%u", rec->job_id,
		    (unsigned long long)st->chunks_in, (unsigned long long)st->writes, st->pauses);
	if (st && st->err && outcome != JOB_OK)
		log_debug("job_error", "job=%s end=%s error=\"%s\"", rec->job_id,
		    relay_end_name(st->end), st->error);
	worker_metrics_job(rec, st);
	if (p->o.receipts)
		(void)receipts_submit(p->o.receipts, rec);
	atomic_fetch_sub(&p->active, 1);
	atomic_fetch_add(&p->done, 1);
	job_free(j);
}

static void job_on_done(void *arg, http_req *req, const relay_stats *st)
{
	struct job *j = arg;
	job_outcome outcome;
	int status = st->status;

	j->rl = NULL;
	j->req = NULL;
	switch (st->end) {
	case RELAY_END_COMPLETE:
		/* an error reply of the engine's is no output: not charged */
		outcome = st->status >= 400 ? JOB_ENGINE_ERROR : JOB_OK;
		break;
	case RELAY_END_UPSTREAM:
		outcome = j->body_seen ? JOB_ERROR : JOB_ENGINE_ERROR;
		break;
	case RELAY_END_ABORTED:
		/* no first token in time: nothing was served */
		outcome = j->first_token_late ? JOB_ENGINE_ERROR : JOB_CUT_OFF;
		break;
	case RELAY_END_CLIENT_GONE:
		outcome = JOB_CLIENT_GONE;
		break;
	default:
		outcome = JOB_ERROR;
		break;
	}
	/* the engine is gone or failing: have the catalog re-read now rather
	 * than advertise its models for another minute */
	if (st->end == RELAY_END_UPSTREAM || st->upstream_status == 502 ||
	    st->upstream_status == 503 || st->upstream_status == 504)
		catalog_want_refresh(j->p->o.cat);
	if (req) {
		/* nothing reached the client yet: answer with a JSON error */
		if (st->end == RELAY_END_ABORTED) {
			status = troop_err_status(TROOP_ETIMEOUT);
			http_reply_error(req, TROOP_ETIMEOUT, "the job ran past its time budget of "
			    "%lld s (max_seconds) before the engine answered",
			    (long long)j->max_seconds);
		} else if (st->err == TROOP_ETIMEOUT) {
			status = troop_err_status(TROOP_ETIMEOUT);
			http_reply_error(req, TROOP_ETIMEOUT, "the engine did not answer in time");
		} else {
			status = troop_err_status(TROOP_EUPSTREAM);
			http_reply_error(req, TROOP_EUPSTREAM, "the engine failed before replying");
		}
	}
	job_finish(j, status, outcome, st);
}

static void job_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	char msg[160];

	snprintf(msg, sizeof(msg), "the job ran past its time budget of %lld s (max_seconds)",
	    (long long)j->max_seconds);
	if (j->rl)
		relay_abort(j->rl, TROOP_ETIMEOUT, msg);
}

/* Start the admitted job: the slot is taken, the jti recorded.  `body`
 * (len bytes) is what goes to the engine at `tg`; `translate`: as a chat
 * completion (compat.h), whatever the request's path. */
static void job_start(proxy *p, http_req *r, const ticket_claims *cl,
    const catalog_target *tg, const char *body, size_t len, bool translate,
    const seal_job *sj)
{
	static const relay_cb cb = { job_on_headers, job_on_body, job_normalize, job_on_done,
		job_transform, job_error_event };
	struct pthread_ctx *t = http_req_thread_ctx(r);
	const char *ctype = http_req_header(r, "Content-Type");
	const char *accept = http_req_header(r, "Accept");
	char url[ENGINE_URL_MAX + 64], h_ctype[160], h_accept[160];
	char h_authz[ENGINE_KEY_MAX + 32] = "";
	const char *headers[4] = { NULL, NULL, NULL, NULL };
	int nh = 0;
	http_async_opts ao = { .tcp_nodelay = true };
	relay_opts ro = { .keepalive_ms = PROXY_KEEPALIVE_MS };
	struct job *j = calloc(1, sizeof(*j));
	relay_upstream up;
	int rc;

	if (!j) {
		http_reply_error(r, TROOP_ENOMEM, "out of memory starting the job");
		goto fail;
	}
	j->p = p;
	j->t = t;
	j->t0_us = mono_us();
	sha256_init(&j->digest);
	j->max_seconds = cl->max_seconds;
	snprintf(j->path, sizeof(j->path), "%s", http_req_path(r));
	j->api = api_kind_of_path(j->path);
	j->translate = translate;
	j->renamed = tg->engine_name[0] != '\0';
	dynbuf_init(&j->xout, COMPAT_MAX_BODY + COMPAT_MAX_EVENT);
	if (sj) {
		j->sealed = true;
		(void)sealed_reply_init(&j->seal, sj);
	}
	snprintf(j->rec.job_id, sizeof(j->rec.job_id), "%s", cl->jti);
	snprintf(j->rec.requester, sizeof(j->rec.requester), "%s", cl->sub);
	snprintf(j->rec.model, sizeof(j->rec.model), "%s", cl->model);
	j->rec.started_at_ms = wall_ms();

	snprintf(url, sizeof(url), "%s%s", tg->url, translate ? "/v1/chat/completions" :
	    http_req_path(r));
	snprintf(h_ctype, sizeof(h_ctype), "Content-Type: %s", !j->sealed && ctype &&
	    strlen(ctype) < 128 && !strpbrk(ctype, "\r\n") ? ctype : "application/json");
	headers[nh++] = h_ctype;
	if (accept && strlen(accept) < 128 && !strpbrk(accept, "\r\n")) {
		snprintf(h_accept, sizeof(h_accept), "Accept: %s", accept);
		headers[nh++] = h_accept;
	}
	/* the engine's own key; the requester's ticket never goes to the engine */
	if (tg->api_key[0]) {
		snprintf(h_authz, sizeof(h_authz), "Authorization: Bearer %s", tg->api_key);
		headers[nh++] = h_authz;
	}
	if (cl->max_seconds <= 0)
		ao.first_byte_timeout_ms = 600000;  /* no budget: still do not wait forever */
	up = (relay_upstream){ .method = "POST", .url = url, .headers = headers,
		.body = body, .body_len = len, .opts = &ao };

	if (cl->max_seconds > 0) {
		struct timeval tv = { (time_t)cl->max_seconds, 0 };
		j->deadline = evtimer_new(t->base, job_deadline, j);
		if (!j->deadline || evtimer_add(j->deadline, &tv) != 0) {
			http_reply_error(r, TROOP_ENOMEM, "out of memory starting the job");
			goto fail;
		}
	}
	j->first_token_s = (p->o.first_token_s > 0 ? p->o.first_token_s :
	    PROXY_DEFAULT_FIRST_TOKEN_S) + (int64_t)(len / 1024);
	j->first_token = evtimer_new(t->base, job_first_token_late, j);
	if (!j->first_token) {
		http_reply_error(r, TROOP_ENOMEM, "out of memory starting the job");
		goto fail;
	}
	j->req = r;
	rc = relay_start(&j->rl, r, t->a, &up, &ro, &cb, j);
	sodium_memzero(h_authz, sizeof(h_authz));
	if (rc) {
		http_reply_error(r, rc, "cannot start the engine request");
		goto fail;
	}
	return;
fail:
	replay_cache_forget(p->o.replay, cl->jti);  /* nothing ran: the ticket stays usable */
	atomic_fetch_sub(&p->active, 1);
	job_free(j);
}

/* ---- admission ------------------------------------------------------------------ */

/* Refuse a request before it became a job; one log line says why (the
 * server's per-request lines are off: jobs log their own). */
static void refuse(http_req *r, int err, const char *why)
{
	log_info("refused", "path=%s status=%d code=%s peer=%s reason=\"%s\"", http_req_path(r),
	    troop_err_status(err), troop_err_code(err), http_req_peer(r), why);
	http_reply_error(r, err, "%s", why);
}

static void reply_ticket_error(http_req *r, const char *why)
{
	refuse(r, TROOP_ETICKET, why);
}

/* The token of "Authorization: Bearer <token>", or NULL. */
static const char *bearer(http_req *r)
{
	const char *h = http_req_header(r, "Authorization");

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h ? h : NULL;
}

static void keyfetch_closed(http_req *r, void *arg)
{
	struct keyfetch *f = arg;

	f->r = NULL;
}

static int keyfetch_headers(void *arg, int status, const char *const *headers)
{
	struct keyfetch *f = arg;

	f->status = status;
	return 0;
}

static int keyfetch_data(void *arg, const char *data, size_t len)
{
	struct keyfetch *f = arg;

	int rc = dynbuf_add(&f->body, data, len);

	if (rc == TROOP_ETOOLARGE)
		f->overflow = true;
	return rc == 0 ? 0 : -1;
}

static void keyfetch_done(void *arg, int err)
{
	struct keyfetch *f = arg;

	if (!err && f->status == 200 && !f->overflow) {
		json_t *body = json_loadb(dynbuf_ptr(&f->body), dynbuf_len(&f->body), 0, NULL);

		if (body && keyring_add_reply(f->p->o.keys, body) == 0)
			log_info("coordinator_key", "source=refetch keys=%zu",
			    keyring_count(f->p->o.keys));
		else
			log_warn("coordinator_key", "error=\"bad key set reply\"");
		json_decref(body);
	} else {
		log_warn("coordinator_key", "error=\"refetch failed (status %d)\"", f->status);
	}
	if (f->r) {
		http_req_on_close(f->r, NULL, NULL);
		admit(f->p, f->r, true);
	}
	dynbuf_free(&f->body);
	free(f);
}

/* Fetch the coordinator key on this loop, then admit r again.  Returns
 * false when the fetch could not start (r is still ours). */
static bool keyfetch_start(proxy *p, http_req *r)
{
	static const http_async_cb cb = { keyfetch_headers, keyfetch_data, keyfetch_done };
	struct pthread_ctx *t = http_req_thread_ctx(r);
	http_async_opts ao = { .tcp_nodelay = true, .total_timeout_ms = 5000 };
	struct keyfetch *f = calloc(1, sizeof(*f));
	char url[1024];

	if (!f)
		return false;
	f->p = p;
	f->r = r;
	dynbuf_init(&f->body, KEYRING_REPLY_MAX - 1);
	snprintf(url, sizeof(url), "%s%s", p->coordinator, KEYRING_SET_PATH);
	if (http_async_request(t->a, NULL, "GET", url, NULL, NULL, 0, &ao, &cb, f) != 0) {
		free(f);
		return false;
	}
	http_req_on_close(r, keyfetch_closed, f);
	return true;
}

/* The body fields a ticket binds (the engine must see exactly the value
 * checked against the ticket). */
static const char *const bound_fields[] = { "model" };

/* Refuse a body holding a case variant of a bound field ("Model", "MODEL"):
 * engines that match JSON keys case-insensitively (Go's encoding/json)
 * could read that one instead of the checked "model".  Exact duplicates
 * are already refused by the parser (JSON_REJECT_DUPLICATES).  Returns 0
 * or TROOP_EINVAL with the message set. */
static int bound_fields_check(json_t *body)
{
	const char *key;
	json_t *v;

	json_object_foreach(body, key, v) {
		for (size_t i = 0; i < sizeof(bound_fields) / sizeof(bound_fields[0]); i++)
			if (strcasecmp(key, bound_fields[i]) == 0 &&
			    strcmp(key, bound_fields[i]) != 0)
				return troop_error_set(TROOP_EINVAL, "body has a field '%s' beside "
				    "'%s': a field the ticket binds must appear once, in lower case",
				    key, bound_fields[i]);
	}
	return 0;
}

static void admit(proxy *p, http_req *r, bool refetched)
{
	const char *token = bearer(r);
	int64_t now = (int64_t)time(NULL);
	ticket_claims cl;
	json_t *body = NULL;
	const char *model = NULL, *raw;
	catalog_target tg;
	char *renamed = NULL;
	json_t *chat = NULL;
	const char *sealhdr = http_req_header(r, SEAL_HEADER);
	seal_job sj;
	dynbuf plain;
	bool sealed = false;
	size_t len;
	int rc;

	dynbuf_init(&plain, 1);

	if (!token) {
		/* worded so that the log's redaction of bearer credentials
		 * leaves the refusal line readable */
		reply_ticket_error(r, "missing ticket: send the ticket from the coordinator's "
		    "/authorize as a bearer token in the Authorization header");
		return;
	}
	rc = keyring_verify(p->o.keys, &cl, token, now);
	if (rc == TROOP_ENOKEY && !refetched && keyring_refetch_due(p->o.keys, now) &&
	    keyfetch_start(p, r))
		return;
	if (rc) {
		reply_ticket_error(r, troop_error_msg());
		goto out;
	}
	raw = http_req_body(r, &len);
	if (sealhdr) {
		/* a sealed body: opened for this ticket and this node, then
		 * everything goes on with the plaintext; one that does not open
		 * is refused before the ticket is spent */
		if (strcmp(cl.target_node, p->node_id) != 0) {
			reply_ticket_error(r, "ticket is for another node");
			goto out;
		}
		dynbuf_init(&plain, len + 1);
		if ((rc = sealed_request_open(&plain, &sj, p->o.seal, sealhdr, cl.jti, p->node_id,
		    raw, len, now)) != 0) {
			refuse(r, rc, troop_error_msg());
			goto out;
		}
		sealed = true;
		raw = dynbuf_ptr(&plain);
		len = dynbuf_len(&plain);
	}
	if ((rc = json_parse_object(&body, raw, len)) != 0 ||
	    (rc = bound_fields_check(body)) != 0 ||
	    (rc = json_get_strn(&model, body, "model", true, JOB_MODEL_MAX - 1)) != 0) {
		refuse(r, rc, troop_error_msg());
		goto out;
	}
	if (strcmp(cl.target_node, p->node_id) != 0) {
		reply_ticket_error(r, "ticket is for another node");
		goto out;
	}
	if (strcmp(cl.model, model) != 0) {
		reply_ticket_error(r, "ticket is for another model than the request's \"model\"");
		goto out;
	}
	if (catalog_resolve(p->o.cat, model, &tg) != 0) {
		reply_ticket_error(r, "the ticket's model is not served on this node");
		goto out;
	}
	/* the Responses or Messages API on an engine that does not serve it:
	 * translated to chat completions (refused here, before the ticket is
	 * spent, when it cannot be) */
	if (api_kind_of_path(http_req_path(r)) != API_OPENAI &&
	    !(tg.endpoints & endpoints_bit(http_req_path(r))) &&
	    strcmp(http_req_path(r), "/v1/messages/count_tokens") != 0) {
		if ((rc = compat_request(api_kind_of_path(http_req_path(r)), body, &chat)) != 0) {
			refuse(r, rc, troop_error_msg());
			goto out;
		}
	}
	if (!job_id_valid(cl.jti)) {
		reply_ticket_error(r, "ticket has no usable jti");
		goto out;
	}
	/* the replay journal's lines reach the disk in the kernel's time: a
	 * power cut may lose those written before the machine started, so
	 * tickets issued before then (clock skew allowed for) are refused */
	if (replay_cache_boot_time(p->o.replay) > 0 &&
	    cl.iat < replay_cache_boot_time(p->o.replay) + TICKET_SKEW) {
		reply_ticket_error(r, "ticket issued before this node's machine last started; "
		    "ask the coordinator for a new one");
		goto out;
	}
	rc = replay_cache_check(p->o.replay, cl.jti, cl.exp + TICKET_SKEW, now);
	if (rc) {
		if (rc == TROOP_ETICKET)
			reply_ticket_error(r, "ticket already used");
		else
			refuse(r, rc, troop_error_msg());
		goto out;
	}
	if (atomic_fetch_add(&p->active, 1) >= p->o.max_jobs) {
		worker_job rec = { 0 };

		atomic_fetch_sub(&p->active, 1);
		http_reply_error(r, TROOP_ERATE, "this node is running its maximum of %d jobs; "
		    "try another node", p->o.max_jobs);
		/* a receipt of nothing, so the reservation is released now */
		snprintf(rec.job_id, sizeof(rec.job_id), "%s", cl.jti);
		snprintf(rec.requester, sizeof(rec.requester), "%s", cl.sub);
		snprintf(rec.model, sizeof(rec.model), "%s", cl.model);
		rec.started_at_ms = rec.ended_at_ms = wall_ms();
		rec.outcome = JOB_REJECTED;
		rec.status = 429;
		log_info("job", "job=%s requester=%.8s model=%s outcome=rejected status=429 "
		    "active=%d", rec.job_id, rec.requester, rec.model, p->o.max_jobs);
		if (p->o.receipts)
			(void)receipts_submit(p->o.receipts, &rec);
		goto out;
	}
	/* the slot is in use: tell the coordinator before its unused time */
	if (p->o.receipts)
		(void)receipts_started(p->o.receipts, cl.jti);
	if (tg.engine_name[0]) {
		/* the engine knows the model by another name (llama.cpp's file
		 * name): the request says the engine's */
		json_object_set_new(chat ? chat : body, "model", json_string(tg.engine_name));
		renamed = json_dumps(chat ? chat : body, JSON_COMPACT);
	} else if (chat) {
		renamed = json_dumps(chat, JSON_COMPACT);
	}
	if (chat && !renamed) {
		http_reply_error(r, TROOP_ENOMEM, "out of memory translating the request");
		replay_cache_forget(p->o.replay, cl.jti);
		atomic_fetch_sub(&p->active, 1);
	} else if (renamed)
		job_start(p, r, &cl, &tg, renamed, strlen(renamed), chat != NULL,
		    sealed ? &sj : NULL);
	else
		job_start(p, r, &cl, &tg, raw, len, false, sealed ? &sj : NULL);
out:
	sodium_memzero((void *)dynbuf_ptr(&plain), dynbuf_len(&plain));
	if (sealed)
		seal_job_wipe(&sj);
	dynbuf_free(&plain);
	free(renamed);
	json_decref(chat);
	json_decref(body);
	sodium_memzero(&cl, sizeof(cl));
	sodium_memzero(&tg, sizeof(tg));
}

static void h_infer(http_req *r, void *arg)
{
	admit(arg, r, false);
}

static void h_health(http_req *r, void *arg)
{
	proxy *p = arg;

	http_reply_json(r, 200, json_pack("{s:s, s:s, s:s, s:i, s:i, s:I}", "status", "ok",
	    "node_id", p->node_id, "version", "troop/" TROOP_VERSION,
	    "active_jobs", atomic_load(&p->active), "max_jobs", p->o.max_jobs,
	    "models", (json_int_t)catalog_model_count(p->o.cat)));
}

/* ---- threads and server ------------------------------------------------------------ */

static int thread_init(void *arg, int index, struct event_base *base, void **tctx)
{
	struct pthread_ctx *t = calloc(1, sizeof(*t));
	int rc;

	if (!t)
		return troop_error_set(TROOP_ENOMEM, "out of memory for a proxy thread");
	t->p = arg;
	t->base = base;
	rc = http_async_new(&t->a, base);
	if (rc) {
		free(t);
		return rc;
	}
	*tctx = t;
	return 0;
}

static void thread_fini(void *arg, void *tctx)
{
	struct pthread_ctx *t = tctx;

	if (!t)
		return;
	http_async_free(t->a);  /* jobs still running end here (on_done) */
	free(t);
}

int proxy_new(proxy **out, const proxy_opts *o)
{
	static const char *const paths[] = { "/v1/chat/completions", "/v1/completions",
		"/v1/embeddings", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens",
		"/tokenize" };
	http_server_opts so = { 0 };
	proxy *p;
	int rc;

	*out = NULL;
	if (o->max_jobs < 1 || !o->node_id || !o->coordinator || !o->cat || !o->keys ||
	    !o->replay)
		return troop_error_set(TROOP_EINVAL, "proxy: max_jobs must be >= 1 and node id, "
		    "coordinator, catalog, keys and replay cache are required");
	p = calloc(1, sizeof(*p));
	if (!p)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the proxy");
	p->o = *o;
	p->node_id = strdup(o->node_id);
	p->coordinator = strdup(o->coordinator);
	if (!p->node_id || !p->coordinator) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory for the proxy");
		goto fail;
	}
	so.listen = o->listen;
	so.threads = o->threads;
	so.max_body = o->max_body ? o->max_body : PROXY_DEFAULT_MAX_BODY;
	so.idle_timeout_s = o->idle_timeout_s ? o->idle_timeout_s : 300;
	so.name = "worker";
	so.quiet = true;  /* one line per job or refusal instead */
	rc = http_server_new(&p->srv, &so);
	if (rc)
		goto fail;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		rc = http_server_route(p->srv, "POST", paths[i], h_infer, p);
		if (rc)
			goto fail;
	}
	rc = http_server_route(p->srv, "GET", "/health", h_health, p);
	if (rc)
		goto fail;
	http_server_on_thread(p->srv, thread_init, thread_fini, p);
	*out = p;
	return 0;
fail:
	proxy_free(p);
	return rc;
}

int proxy_start(proxy *p)
{
	int rc = http_server_catch_signals(p->srv);

	return rc != 0 ? rc : http_server_start(p->srv);
}

int proxy_port(const proxy *p)
{
	return http_server_port(p->srv);
}

int proxy_run(proxy *p, int drain_ms, void (*on_shutdown)(void *), void *arg)
{
	if (on_shutdown)
		http_server_on_shutdown(p->srv, on_shutdown, arg);
	return http_server_run(p->srv, drain_ms);
}

void proxy_stop(proxy *p)
{
	if (p)
		http_server_stop(p->srv);
}

int proxy_active_jobs(proxy *p)
{
	return atomic_load(&p->active);
}

int proxy_active_jobs_cb(void *arg)
{
	return proxy_active_jobs(arg);
}

long proxy_jobs_done(proxy *p)
{
	return atomic_load(&p->done);
}

long proxy_jobs_done_cb(void *arg)
{
	return proxy_jobs_done(arg);
}

void proxy_free(proxy *p)
{
	if (!p)
		return;
	http_server_free(p->srv);
	free(p->node_id);
	free(p->coordinator);
	free(p);
}
