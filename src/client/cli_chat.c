/*
 * cli_chat.c - `troop chat -m MODEL "prompt"`: one chat turn streamed to
 * the terminal.  A signed /authorize buys a ticket for a node serving the
 * model; the OpenAI chat request (stream: true) goes straight to that
 * worker with the ticket as a Bearer token, and each content delta of the
 * SSE reply is printed as it arrives.  The same authorization and
 * failover as `troop up` (authorize.h): when the worker cannot be reached,
 * or answers 5xx or 429 before any text was printed, authorize again
 * excluding it (3 tries in all).  When every node is busy the coordinator
 * keeps the request in its queue for --wait seconds; meanwhile a thread
 * asks GET /queue and prints the request's position on stderr.
 *
 * Sealed like `troop up`'s requests (up_seal.h, the same code): when the
 * ticket's node offers a sealing key, the key is checked against the node
 * before anything is sent, the prompt goes sealed, and the reply is opened
 * as it streams; a reply that does not open is an error, never printed.
 * --require-sealed refuses nodes that do not seal.
 */
#include <jansson.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "authorize.h"
#include "cli.h"
#include "commands.h"
#include "error.h"
#include "report.h"
#include "sse.h"
#include "up_seal.h"

#define CHAT_TRIES 3
#define CHAT_PROMPT_MAX (1024 * 1024)
#define CHAT_EVENT_MAX (1024 * 1024)
#define CHAT_BODY_MAX (4 * 1024 * 1024)   /* a non-streamed or error reply */
#define CHAT_WORKER_TIMEOUT_MS 30000L     /* connect, and silence mid-stream */
#define CHAT_REPORT_FLUSH_MS 3000         /* at exit, for the delivery report */

static const config_opt chat_opts[] = {
	CLI_OPT_COORDINATOR,
	{ "model", 'm', OPT_STRING, "TROOP_MODEL", NULL, NULL, "MODEL",
	  "the model to ask (see 'troop models')", 0, 0 },
	{ "system", 's', OPT_STRING, NULL, NULL, NULL, "TEXT", "a system prompt", 0, 0 },
	{ "max-seconds", 0, OPT_INT, NULL, NULL, NULL, "N",
	  "the most GPU time the job may use (reserved from your credits)", 1, 86400 },
	{ "max-tokens", 0, OPT_INT, "TROOP_MAX_TOKENS", NULL, NULL, "N",
	  "the most tokens the answer may have (default: the engine's; llama.cpp's "
	  "fills the context)", 1, 1048576 },
	{ "wait", 0, OPT_INT, "TROOP_WAIT", NULL, "120", "SECONDS",
	  "when every node is busy, wait this long in the coordinator's queue "
	  "(0: fail at once)", 0, 600 },
	{ "require-sealed", 0, OPT_BOOL, "TROOP_REQUIRE_SEALED", NULL, NULL, NULL,
	  "send the prompt only to workers that seal it (end-to-end encryption; by "
	  "default it is sealed whenever the worker offers it)", 0, 0 },
	{ "verbose", 'v', OPT_BOOL, NULL, NULL, NULL, NULL,
	  "say which node serves the job, and how long it took", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

typedef struct {
	cli *c;
	int *status;
	sse_parser *sse;
	bool tty;           /* stdout is a terminal: filter control bytes */
	bool json_mode;     /* the worker answered plain JSON, not SSE */
	bool printed;       /* text reached stdout: no failover from here on */
	bool done;          /* "[DONE]" or a finish_reason seen */
	char last;          /* the last byte printed */
	char *buf;          /* error or non-streamed body, bounded */
	size_t len;
	char stream_err[512];
	double first_byte;  /* seconds since the request went out */
	struct timespec t0;
	client_delivery dl; /* the job's delivery report (report.h) */
	http_client *w;     /* the worker's connection: its reply headers */
	up_seal *seal;      /* NULL: a plain request */
	bool seal_headers;  /* the reply's headers went to up_seal_headers */
	bool seal_failed;   /* the sealed reply did not open */
	char seal_err[256]; /* why */
} chat_stream;

static double since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Write model text to stdout; on a terminal, without the control bytes
 * that could drive it (the text comes from someone else's machine). */
static void emit(chat_stream *s, const char *text, size_t len)
{
	if (len == 0)
		return;
	if (s->tty) {
		for (size_t i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)text[i];
			if ((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f)
				continue;
			putchar(ch);
		}
	} else {
		fwrite(text, 1, len, stdout);
	}
	fflush(stdout);
	s->printed = true;
	s->last = text[len - 1];
}

static void take_choice(chat_stream *s, const json_t *obj, const char *part)
{
	json_t *choice = json_array_get(json_object_get(obj, "choices"), 0);
	json_t *msg = json_object_get(choice, part);
	const char *text = json_string_value(json_object_get(msg, "content"));

	if (text)
		emit(s, text, strlen(text));
	if (json_is_string(json_object_get(choice, "finish_reason")))
		s->done = true;
}

static int on_event(void *arg, const char *event, const char *data, size_t len,
    const char *id)
{
	chat_stream *s = arg;
	json_t *obj;

	(void)event;
	(void)id;
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		s->done = true;
		return 0;
	}
	obj = json_loadb(data, len, 0, NULL);
	if (!obj)
		return 0; /* not ours to judge: keep what can be shown */
	if (json_object_get(obj, "error")) {
		cli_sanitize(s->stream_err, sizeof(s->stream_err), cli_error_message(obj));
		if (!s->stream_err[0])
			snprintf(s->stream_err, sizeof(s->stream_err), "the worker reported an error");
		json_decref(obj);
		return 1;
	}
	take_choice(s, obj, "delta");
	json_decref(obj);
	return 0;
}

/* The reply's bytes (opened, when sealed). */
static int take_data(chat_stream *s, const char *data, size_t len)
{
	if (len == 0)
		return 0;
	client_delivery_body(&s->dl, data, len);
	if (s->first_byte == 0)
		s->first_byte = since(&s->t0);
	if (*s->status >= 200 && *s->status < 300 && !s->json_mode && s->len == 0) {
		/* an engine that ignored "stream": a JSON object instead of events */
		size_t i = 0;
		while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r'))
			i++;
		if (i < len && data[i] == '{' && !s->printed)
			s->json_mode = true;
	}
	if (*s->status >= 300 || s->json_mode) {
		char *n;
		if (s->len + len > CHAT_BODY_MAX)
			return troop_error_set(TROOP_ETOOLARGE, "reply over %d bytes", CHAT_BODY_MAX);
		n = realloc(s->buf, s->len + len + 1);
		if (!n)
			return troop_error_set(TROOP_ENOMEM, "out of memory");
		s->buf = n;
		memcpy(s->buf + s->len, data, len);
		s->len += len;
		s->buf[s->len] = '\0';
		return 0;
	}
	{
		int rc = sse_parser_feed(s->sse, data, len);
		if (rc < 0)
			return rc;
		if (rc > 0)
			return troop_error_set(TROOP_EUPSTREAM, "%s", s->stream_err);
	}
	return 0;
}

/* The sealed reply failed to open: remembered with why, and the stream
 * stopped. */
static int seal_fail(chat_stream *s)
{
	s->seal_failed = true;
	snprintf(s->seal_err, sizeof(s->seal_err), "%s", troop_error_msg());
	return TROOP_EAUTH;
}

/* A sealed reply's headers, once: whether it is sealed, and its own type. */
static int seal_check_headers(chat_stream *s)
{
	char ct[160], orig[160], l1[192], l2[192];
	const char *lines[3] = { NULL, NULL, NULL }, *ctype = NULL;
	int n = 0;

	if (s->seal_headers)
		return 0;
	s->seal_headers = true;
	if (http_client_reply_header(s->w, "Content-Type", ct, sizeof(ct)) == 0) {
		snprintf(l1, sizeof(l1), "Content-Type: %s", ct);
		lines[n++] = l1;
	}
	if (http_client_reply_header(s->w, UP_SEAL_TYPE_HEADER, orig, sizeof(orig)) == 0) {
		snprintf(l2, sizeof(l2), "%s: %s", UP_SEAL_TYPE_HEADER, orig);
		lines[n++] = l2;
	}
	if (up_seal_headers(s->seal, *s->status, lines, &ctype) != 0)
		return seal_fail(s);
	return 0;
}

/* Bytes from the worker: opened first when the request went sealed. */
static int on_data(void *arg, const char *data, size_t len)
{
	chat_stream *s = arg;
	const char *out;
	size_t olen;
	int rc;

	if (!s->seal)
		return take_data(s, data, len);
	if ((rc = seal_check_headers(s)) != 0)
		return rc;
	if (up_seal_transform(s->seal, data, len, false, &out, &olen) != 0)
		return seal_fail(s);
	return take_data(s, out, olen);
}

/* The worker's reply ended: a sealed one must end with its final frame
 * (what a whole reply holds comes out only now). */
static int seal_finish(chat_stream *s)
{
	const char *out;
	size_t olen;
	int rc;

	if (!s->seal)
		return 0;
	if ((rc = seal_check_headers(s)) != 0)
		return rc;
	if (up_seal_transform(s->seal, NULL, 0, true, &out, &olen) != 0)
		return seal_fail(s);
	return take_data(s, out, olen);
}

/* ---- one try ------------------------------------------------------------------ */

typedef enum { TRY_OK, TRY_FAILOVER, TRY_FATAL } try_result;

/* Read the prompt: the positional words joined by spaces, or stdin. */
static int read_prompt(cli *c, char **out)
{
	size_t n = config_npositional(c->cfg), len = 0;
	char *p = NULL;

	*out = NULL;
	if (n == 0 || (n == 1 && strcmp(config_positional(c->cfg, 0), "-") == 0)) {
		size_t cap = 0, got;
		if (isatty(STDIN_FILENO))
			fprintf(stderr, "troop chat: type the prompt, then Ctrl-D\n");
		do {
			char *np;
			if (len + 4096 + 1 > cap) {
				cap = cap ? cap * 2 : 8192;
				np = realloc(p, cap);
				if (!np) {
					free(p);
					return cli_fail(c, "out of memory reading the prompt");
				}
				p = np;
			}
			got = fread(p + len, 1, 4096, stdin);
			len += got;
			if (len > CHAT_PROMPT_MAX) {
				free(p);
				return cli_fail(c, "the prompt on stdin is over %d bytes", CHAT_PROMPT_MAX);
			}
		} while (got > 0);
		p[len] = '\0';
		while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
			p[--len] = '\0';
	} else {
		for (size_t i = 0; i < n; i++)
			len += strlen(config_positional(c->cfg, i)) + 1;
		if (len > CHAT_PROMPT_MAX)
			return cli_fail(c, "the prompt is over %d bytes", CHAT_PROMPT_MAX);
		p = calloc(1, len + 1);
		if (!p)
			return cli_fail(c, "out of memory");
		for (size_t i = 0; i < n; i++) {
			if (i)
				strcat(p, " ");
			strcat(p, config_positional(c->cfg, i));
		}
	}
	if (!p || !p[0]) {
		free(p);
		return cli_usage_error(c, "the prompt is empty");
	}
	*out = p;
	return 0;
}

/* A failover-worthy failure, remembered for the final message:
 * "node AbCdEfGh <what> (<detail>)". */
static try_result failover(char *why, size_t wlen, const char *node, const char *what,
    const char *detail)
{
	char d[CLIENT_AUTH_WHY_MAX - 48];

	cli_sanitize(d, sizeof(d), detail);
	snprintf(why, wlen, "node %s %s (%s)", node, what, d);
	return TRY_FAILOVER;
}

static try_result run_stream(cli *c, http_client *w, const proto_authorize_reply *ticket,
    const char *body, size_t blen, bool verbose, bool require_sealed, char *why, size_t wlen,
    client_reports *reports)
{
	const char *outcome = "unreachable";   /* for the delivery report */
	const char *token = ticket->token, *ip = ticket->target_ip, *node = ticket->node_id;
	int port = ticket->target_port;
	char url[256], authz[PROTO_TICKET_MAX + 32], snode[9];
	const char *headers[5];
	up_seal seal;
	chat_stream s;
	int status = 0, engine_status = 0, rc;
	try_result res = TRY_FATAL;

	memset(&s, 0, sizeof(s));
	up_seal_init(&seal, API_OPENAI);
	/* the job is authorized: it gets a report whatever happens */
	client_delivery_begin(&s.dl, ticket->job_id);
	client_delivery_headers(&s.dl, true);
	if (!cli_token_ok(token, PROTO_TICKET_MAX) ||
	    cli_worker_url(url, sizeof(url), ip, (long long)port, "/v1/chat/completions") != 0) {
		cli_fail(c, "the coordinator's /authorize reply lacks a valid token, node_id, "
		    "target_ip or target_port; is --coordinator pointing at a troop coordinator?");
		(void)client_delivery_finish(&s.dl, reports, outcome);
		return TRY_FATAL;
	}
	snprintf(snode, sizeof(snode), "%.8s", node);
	/* sealed when the node offers a key, checked against the ticket's node
	 * before anything is sent (as troop up does) */
	if (ticket->seal_key[0]) {
		if (up_seal_begin(&seal, ticket->seal_key, node, ticket->job_id, body, blen,
		    (int64_t)time(NULL)) != 0) {
			res = failover(why, wlen, snode, "was refused", troop_error_msg());
			goto out;
		}
		s.seal = &seal;
	} else if (require_sealed) {
		res = failover(why, wlen, snode, "was refused", "it does not seal requests "
		    "(--require-sealed)");
		goto out;
	}
	snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
	headers[0] = authz;
	headers[1] = s.seal ? "Content-Type: " SEAL_CONTENT_TYPE : "Content-Type: application/json";
	headers[2] = "Accept: text/event-stream";
	headers[3] = s.seal ? seal.header : NULL;
	headers[4] = NULL;

	s.c = c;
	s.w = w;
	s.status = &status;
	s.tty = isatty(STDOUT_FILENO);
	if (sse_parser_new(&s.sse, CHAT_EVENT_MAX, on_event, &s) != 0) {
		cli_fail(c, "out of memory");
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &s.t0);
	rc = s.seal ? http_request_stream(w, &status, "POST", url, headers,
	    dynbuf_ptr(&seal.body), dynbuf_len(&seal.body), on_data, &s) :
	    http_request_stream(w, &status, "POST", url, headers, body, blen, on_data, &s);
	sodium_memzero(authz, sizeof(authz));
	if (rc == 0 && status != 0)
		rc = seal_finish(&s);
	if (s.seal_failed) {
		/* the job ran, but its reply was altered or cut on the way:
		 * an error, not a second run elsewhere */
		if (s.printed)
			putchar('\n');
		outcome = "cut";
		cli_fail(c, "node %s: %s; nothing more of it was shown", snode, s.seal_err);
		goto out;
	}
	if (rc == 0 && status >= 200 && status < 300 && !s.json_mode)
		sse_parser_finish(s.sse);

	if (rc != 0 && !s.printed && (rc == TROOP_EUPSTREAM || rc == TROOP_ETIMEOUT) &&
	    status == 0) {
		const char *m = troop_error_msg(), *p = strstr(m, ": ");
		res = failover(why, wlen, snode, "could not be reached", p ? p + 2 : m);
		goto out;
	}
	/* an error the worker's engine answered (X-Troop-Engine-Status) is the
	 * answer: shown as it is, no other node tried; only the worker's own
	 * failures (unreachable, full, not its ticket) fail over */
	if (status >= 400) {
		char es[8];
		if (http_client_reply_header(w, "X-Troop-Engine-Status", es, sizeof(es)) == 0)
			engine_status = (int)strtol(es, NULL, 10);
		if (engine_status < 400 || engine_status > 599)
			engine_status = 0;
	}
	if (client_auth_worker_failed(status, engine_status)) {
		json_t *err = s.buf ? json_loadb(s.buf, s.len, 0, NULL) : NULL;
		char detail[400];
		snprintf(detail, sizeof(detail), "HTTP %d%s%s", status,
		    err && cli_error_message(err)[0] ? ": " : "", err ? cli_error_message(err) : "");
		json_decref(err);
		if (!s.printed) {
			if (status == 401)
				outcome = "refused";
			res = failover(why, wlen, snode, "failed", detail);
			goto out;
		}
	}
	outcome = "engine_error";
	if (rc != 0) {
		if (s.printed)
			putchar('\n');
		outcome = "cut";
		cli_fail(c, "the stream from node %s broke off: %s", snode,
		    s.stream_err[0] ? s.stream_err : troop_error_msg());
		goto out;
	}
	if (status < 200 || status >= 300) {
		json_t *err = s.buf ? json_loadb(s.buf, s.len, 0, NULL) : NULL;
		char who[64];
		if (engine_status)
			snprintf(who, sizeof(who), "the engine of node %s", snode);
		else
			snprintf(who, sizeof(who), "node %s", snode);
		cli_report_error(c, who, status, err);
		json_decref(err);
		goto out;
	}
	outcome = "complete";
	if (s.json_mode) {
		json_t *obj = json_loadb(s.buf ? s.buf : "", s.len, 0, NULL);
		if (obj)
			take_choice(&s, obj, "message");
		json_decref(obj);
		if (!obj) {
			cli_fail(c, "node %s sent a reply that is neither events nor JSON", snode);
			goto out;
		}
	}
	if (s.printed && s.last != '\n')
		putchar('\n');
	fflush(stdout);
	if (!s.done)
		fprintf(stderr, "troop chat: note: the stream from node %s ended without "
		    "[DONE]; the answer may be cut short\n", snode);
	if (verbose)
		fprintf(stderr, "troop chat: node %s at %s:%lld, first byte after %.1f ms, done "
		    "after %.1f ms\n", snode, ip, (long long)port, s.first_byte * 1000,
		    since(&s.t0) * 1000);
	res = TRY_OK;
out:
	(void)client_delivery_finish(&s.dl, reports, outcome);
	sse_parser_free(s.sse);
	if (s.buf)
		sodium_memzero(s.buf, s.len);
	free(s.buf);
	up_seal_reset(&seal);
	dynbuf_free(&seal.body);
	dynbuf_free(&seal.out);
	return res;
}

/* ---- the queue position, while /authorize waits ------------------------------ */

#define WATCH_FIRST_MS 1000   /* a request served at once prints nothing */
#define WATCH_EVERY_MS 2000

typedef struct {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, running;
	char base[512];
	char path[600];
	const troop_identity *id;
} queue_watch;

/* Wait up to ms or until told to stop; true when told. Locked. */
static bool watch_sleep(queue_watch *q, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (!q->stop && pthread_cond_timedwait(&q->cv, &q->mu, &ts) != ETIMEDOUT)
		;
	return q->stop;
}

static void *watch_main(void *arg)
{
	queue_watch *q = arg;
	http_client *hc = NULL;
	long long last = -1;

	if (http_client_new(&hc) != 0)
		return NULL;
	http_client_set_limits(hc, 5000, 64 * 1024);
	pthread_mutex_lock(&q->mu);
	for (long wait = WATCH_FIRST_MS; !watch_sleep(q, wait); wait = WATCH_EVERY_MS) {
		json_t *out = NULL;
		int st = 0;
		pthread_mutex_unlock(&q->mu);
		if (http_request_signed(hc, &st, &out, q->id, "GET", q->base, q->path, NULL) == 0 &&
		    st == 200) {
			json_t *pos = json_object_get(out, "position");
			long long p = json_is_integer(pos) ? (long long)json_integer_value(pos) : -1;
			if (p > 0 && p != last)
				fprintf(stderr, "troop chat: queued, position %lld (%lld waiting)\n", p,
				    (long long)json_integer_value(json_object_get(out, "waiting")));
			last = p;
		}
		json_decref(out);
		pthread_mutex_lock(&q->mu);
	}
	pthread_mutex_unlock(&q->mu);
	http_client_free(hc);
	return NULL;
}

static void watch_start(queue_watch *q, const cli *c, const char *model)
{
	char *esc = cli_url_escape(model);

	memset(q, 0, sizeof(*q));
	if (!esc)
		return;
	snprintf(q->base, sizeof(q->base), "%s", c->coordinator);
	snprintf(q->path, sizeof(q->path), "/queue?model=%s", esc);
	free(esc);
	q->id = &c->id;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->running = pthread_create(&q->th, NULL, watch_main, q) == 0;
}

static void watch_stop(queue_watch *q)
{
	if (!q->running)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->th, NULL);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	q->running = false;
}

int cmd_chat(int argc, char **argv)
{
	const char *model, *system;
	char *prompt = NULL, *body = NULL;
	json_t *req = NULL, *msgs;
	http_client *w = NULL;
	client_auth *ca = NULL;
	client_reports *reports = NULL;
	size_t blen = 0;
	bool verbose;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "chat", "-m MODEL [--system TEXT] [--max-seconds N] "
	    "[--max-tokens N] [--wait SECONDS] [--require-sealed] [--verbose] [PROMPT | -]",
	    "Ask a model one question and stream the answer to the terminal.  The\n"
	    "prompt is the arguments, or stdin when none are given (or '-').  The job\n"
	    "id goes to stderr: it names the job in 'troop transactions'.",
	    chat_opts, argc, argv, (size_t)-1))
		return rc;
	model = config_str(c.cfg, "model");
	system = config_str(c.cfg, "system");
	verbose = config_bool(c.cfg, "verbose");
	if (!model || !model[0]) {
		rc = cli_usage_error(&c, "say which model with -m MODEL (see 'troop models')");
		goto out;
	}
	if (strlen(model) > PROTO_MODEL_MAX) {
		rc = cli_usage_error(&c, "the model name is over %d bytes", PROTO_MODEL_MAX);
		goto out;
	}
	if ((rc = read_prompt(&c, &prompt)) != 0 || (rc = cli_load_identity(&c)) != 0)
		goto out;

	msgs = json_array();
	if (system && system[0])
		json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system",
		    "content", system));
	json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
	req = json_pack("{s:s, s:o, s:b}", "model", model, "messages", msgs, "stream", 1);
	if (req && config_is_set(c.cfg, "max-tokens"))
		json_object_set_new(req, "max_tokens", json_integer(config_int(c.cfg, "max-tokens")));
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	ca = malloc(sizeof(*ca));
	if (!body || !ca || http_client_new(&w) != 0) {
		rc = cli_fail(&c, "out of memory");
		goto out;
	}
	client_auth_init(ca, model, config_is_set(c.cfg, "max-seconds") ?
	    config_int(c.cfg, "max-seconds") : 0, CHAT_TRIES);
	client_auth_require(ca, req);
	ca->req.wait = config_int(c.cfg, "wait");
	/* the coordinator may hold /authorize for the whole wait */
	http_client_set_limits(c.http, (long)(ca->req.wait + 30) * 1000, 0);
	blen = strlen(body);
	http_client_set_limits(w, CHAT_WORKER_TIMEOUT_MS, 0);
	/* delivery reports: sent by the spool's thread, flushed at exit; one
	 * left unsent goes with the next troop chat or troop up */
	if (client_reports_start(&reports, c.coordinator, &c.id, NULL) != 0) {
		fprintf(stderr, "troop chat: note: no delivery reports (%s)\n", troop_error_msg());
		reports = NULL;
	}
	ca->delivery_report = reports != NULL;

	rc = 1;
	for (;;) {
		json_t *areq, *reply = NULL;
		proto_error e;
		char msg[PROTO_ERR_MESSAGE_MAX + 1];
		try_result tr;
		int status;

		queue_watch qw;
		int crc;

		areq = proto_authorize_req_encode(&ca->req);
		if (areq && ca->delivery_report)
			json_object_set_new(areq, "delivery_report", json_true());
		ca->attempt++;
		if (!areq) {
			cli_fail(&c, "out of memory");
			goto out;
		}
		if (ca->req.wait > 0)
			watch_start(&qw, &c, model);
		else
			memset(&qw, 0, sizeof(qw));
		crc = cli_call(&c, &status, &reply, "POST", "/authorize", areq, true);
		watch_stop(&qw);
		if (crc != 0) {
			json_decref(areq);
			goto out;
		}
		json_decref(areq);
		switch (client_auth_reply(ca, status, reply, &e)) {
		case CLIENT_AUTH_OK:
			break;
		case CLIENT_AUTH_NO_CREDITS:
			cli_sanitize(msg, sizeof(msg), e.message);
			cli_fail(&c, "%s; see 'troop balance', or ask for less time with "
			    "--max-seconds N", msg[0] ? msg : "insufficient credits");
			json_decref(reply);
			goto out;
		case CLIENT_AUTH_EXHAUSTED:
			/* everyone else is busy or excluded: say what went wrong before */
			cli_fail(&c, "no other node can serve '%s' right now (%s); try again "
			    "shortly", model, ca->why);
			json_decref(reply);
			goto out;
		case CLIENT_AUTH_BAD_REPLY:
			if (status == 200) {
				cli_sanitize(msg, sizeof(msg), e.message);
				cli_fail(&c, "the coordinator's /authorize reply is not a ticket (%s); "
				    "is --coordinator pointing at a troop coordinator?", msg);
				json_decref(reply);
				goto out;
			}
			/* fall through */
		default:
			cli_report_error(&c, "the coordinator", status, reply);
			json_decref(reply);
			goto out;
		}
		json_decref(reply);
		fprintf(stderr, "troop chat: job %s on node %.8s\n", ca->ticket.job_id,
		    ca->ticket.node_id);
		tr = run_stream(&c, w, &ca->ticket, body, blen, verbose,
		    config_bool(c.cfg, "require-sealed"), ca->why, sizeof(ca->why), reports);
		sodium_memzero(ca->ticket.token, sizeof(ca->ticket.token));
		if (tr == TRY_OK) {
			rc = 0;
			goto out;
		}
		if (tr == TRY_FATAL)
			goto out;
		if (!client_auth_failover(ca, NULL))
			break;
		fprintf(stderr, "troop chat: %s; trying another node\n", ca->why);
	}
	cli_fail(&c, "no node could serve '%s' after %d tries (last: %s); try again shortly",
	    model, ca->attempt, ca->why);
out:
	client_reports_stop(reports, CHAT_REPORT_FLUSH_MS);
	if (ca) {
		sodium_memzero(ca, sizeof(*ca));
		free(ca);
	}
	http_client_free(w);
	json_decref(req);
	free(body);
	if (prompt) {
		sodium_memzero(prompt, strlen(prompt));
		free(prompt);
	}
	cli_end(&c);
	return rc;
}
