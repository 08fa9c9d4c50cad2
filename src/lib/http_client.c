/*
 * http_client.c - HTTP clients on libcurl: a blocking one for the CLI,
 * heartbeats and tests, and an asynchronous one driven by a libevent loop
 * for the proxies.  See http_client.h for the contract.
 *
 * The blocking client keeps one easy handle and resets it between
 * requests, so its connection cache gives keep-alive for free.
 *
 * The asynchronous client wires a curl multi handle into an event_base:
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to wake it (CURLMOPT_TIMERFUNCTION); libevent calls
 * curl_multi_socket_action back, and finished transfers are collected with
 * curl_multi_info_read.  Anything that would remove a handle from the
 * multi or re-enter curl (starting, resuming, cancelling) is deferred to a
 * per-request event, so that it never runs inside a curl callback.
 *
 * Backpressure: when on_data returns HTTP_ASYNC_PAUSE, the write callback
 * returns CURL_WRITEFUNC_PAUSE.  curl then keeps that whole chunk and hands
 * it again after the unpause; the user has already seen it, so we remember
 * its length and skip that many bytes of what curl hands us next.
 *
 * Signed requests (http_request_signed) live in http_client_signed.c.
 */
#include "http_client.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dynbuf.h"
#include "error.h"

#define HTTP_DEFAULT_TIMEOUT_MS 10000L
#define HTTP_DEFAULT_MAX_BODY ((size_t)8 << 20)
#define HTTP_URL_SHOWN 256          /* printable URL kept for messages */
#define HTTP_METHOD_MAX 15
#define HTTP_MAX_HEADERS 64         /* caller-supplied request headers */
#define HTTP_HEADER_MAX 8192        /* one caller-supplied header line */

#define ASYNC_CONNECT_TIMEOUT_MS 3000L
#define ASYNC_HDR_BYTES 16384       /* response header lines, in total */
#define ASYNC_HDR_LINES 100
#define ASYNC_SPARE_EASY 16         /* easy handles kept for reuse */

/* ---- shared -------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int curl_ready(void)
{
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return troop_error_set(TROOP_ERR, "libcurl failed to initialise: %s",
		    curl_easy_strerror(curl_init_result));
	return 0;
}

static bool method_valid(const char *m)
{
	size_t n = 0;

	if (!m)
		return false;
	for (; m[n]; n++) {
		unsigned char ch = (unsigned char)m[n];
		if (n >= HTTP_METHOD_MAX)
			return false;
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch)))
			return false;
	}
	return n > 0;
}

/* Print the URL's part before any query or fragment, for messages when
 * the URL does not even parse. */
static void url_prefix(char *out, size_t outlen, const char *url)
{
	size_t n = strcspn(url, "?#");

	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, url, n);
	out[n] = '\0';
}

/* Parse `url`: write a printable form without credentials, query or
 * fragment into `shown`, and say whether the host is loopback (those
 * requests never go through a proxy).  Returns 0 or TROOP_EINVAL. */
static int url_inspect(char *shown, size_t shown_len, bool *loopback, const char *url)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	char pre[HTTP_URL_SHOWN];
	int rc = 0;

	*loopback = false;
	if (!url || !*url)
		return troop_error_set(TROOP_EINVAL, "request URL is empty");
	u = curl_url();
	if (!u)
		return troop_error_set(TROOP_ENOMEM, "out of memory parsing a URL");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		url_prefix(pre, sizeof(pre), url);
		rc = troop_error_set(TROOP_EINVAL, "invalid URL \"%s\"", pre);
		goto out;
	}
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		url_prefix(pre, sizeof(pre), url);
		rc = troop_error_set(TROOP_EINVAL, "URL \"%s\": only http and https are supported", pre);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
		port = NULL;
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		path = NULL;
	snprintf(shown, shown_len, "%s://%s%s%s%s", scheme, host, port ? ":" : "",
	    port ? port : "", path ? path : "/");
	*loopback = strcasecmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	    strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return rc;
}

static bool header_present(const char *const *headers, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; headers && headers[i]; i++)
		if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
			return true;
	return false;
}

/* Options every request gets, blocking or not: URL, method, body, request
 * headers, proxy and protocol policy.  `body` must outlive the transfer
 * (curl does not copy it).  The header list goes to *hdrs (caller frees
 * with curl_slist_free_all, also on error). */
static int request_setup(CURL *e, struct curl_slist **hdrs, char *shown, size_t shown_len,
    const char *method, const char *url, const char *const *headers,
    const void *body, size_t len)
{
	struct curl_slist *l;
	bool loopback, sends_body;
	size_t i;
	int rc;

	rc = url_inspect(shown, shown_len, &loopback, url);
	if (rc)
		return rc;
	if (!method_valid(method))
		return troop_error_set(TROOP_EINVAL, "request to %s: invalid HTTP method", shown);
	if (!body && len)
		return troop_error_set(TROOP_EINVAL, "request to %s: body length without a body", shown);
	for (i = 0; headers && headers[i]; i++) {
		const char *h = headers[i];
		if (i >= HTTP_MAX_HEADERS)
			return troop_error_set(TROOP_EINVAL, "request to %s: more than %d headers",
			    shown, HTTP_MAX_HEADERS);
		if (strlen(h) > HTTP_HEADER_MAX || strpbrk(h, "\r\n") || !strchr(h, ':') || h[0] == ':')
			return troop_error_set(TROOP_EINVAL,
			    "request to %s: header %zu is not one \"Name: value\" line", shown, i);
		l = curl_slist_append(*hdrs, h);
		if (!l)
			return troop_error_set(TROOP_ENOMEM, "out of memory building headers");
		*hdrs = l;
	}

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	if (loopback)
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*");

	sends_body = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	    strcmp(method, "PATCH") == 0;
	if (strcmp(method, "HEAD") == 0) {
		if (len)
			return troop_error_set(TROOP_EINVAL, "request to %s: HEAD with a body", shown);
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (!sends_body) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
		if (strcmp(method, "GET") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	} else {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		/* No "Expect: 100-continue" round trip, and no made-up form
		 * content type when the caller did not give one. */
		l = curl_slist_append(*hdrs, "Expect:");
		if (l && !header_present(headers, "Content-Type"))
			l = curl_slist_append(l, "Content-Type:");
		if (!l)
			return troop_error_set(TROOP_ENOMEM, "out of memory building headers");
		*hdrs = l;
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
	return 0;
}

/* Map a failed transfer to a troop_err with a message naming the request.
 * `detail` is curl's error buffer (may be empty). */
static int curl_failure(CURLcode cc, const char *method, const char *shown,
    const char *detail, size_t max_body)
{
	const char *why = detail && *detail ? detail : curl_easy_strerror(cc);

	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return troop_error_set(TROOP_ETIMEOUT, "%s %s: timed out (%s)", method, shown, why);
	case CURLE_FILESIZE_EXCEEDED:
		return troop_error_set(TROOP_ETOOLARGE, "%s %s: response body over %zu bytes",
		    method, shown, max_body);
	case CURLE_OUT_OF_MEMORY:
		return troop_error_set(TROOP_ENOMEM, "%s %s: out of memory", method, shown);
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_BAD_FUNCTION_ARGUMENT:
		return troop_error_set(TROOP_EINVAL, "%s %s: %s", method, shown, why);
	default:
		/* couldn't connect / resolve, reset, recv/send error, partial
		 * body, garbage reply, TLS failure: the other side failed us. */
		return troop_error_set(TROOP_EUPSTREAM, "%s %s: %s", method, shown, why);
	}
}

/* ---- blocking client ----------------------------------------------------- */

struct http_client {
	CURL *easy;
	const atomic_int *abort_flag;   /* http_client_set_abort; may be NULL */
	long timeout_ms;
	size_t max_body;
	char errbuf[CURL_ERROR_SIZE];
};

/* Where one blocking transfer's body goes: a bounded buffer, or a
 * streaming callback. */
struct sink {
	CURL *easy;
	dynbuf body;        /* buffered mode: limit max */
	size_t max;
	bool too_large;
	http_data_fn on_data;
	void *arg;
	int *status;
	bool status_set;
	int abort_rc;       /* non-zero when on_data asked to stop */
};

static size_t sink_buffer(char *ptr, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t len = size * n;
	int rc = dynbuf_add(&s->body, ptr, len);

	if (rc == TROOP_ETOOLARGE)
		s->too_large = true;
	return rc == 0 ? len : 0;
}

static size_t sink_stream(char *ptr, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t len = size * n;
	int rc;

	if (!s->status_set) {
		long code = 0;
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
		if (s->status)
			*s->status = (int)code;
		s->status_set = true;
	}
	if (len == 0)
		return 0;
	rc = s->on_data(s->arg, ptr, len);
	if (rc) {
		s->abort_rc = rc;
		return 0;
	}
	return len;
}

int http_client_new(http_client **out)
{
	http_client *c;
	int rc;

	*out = NULL;
	rc = curl_ready();
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return troop_error_set(TROOP_ENOMEM, "out of memory creating an HTTP client");
	c->easy = curl_easy_init();
	if (!c->easy) {
		free(c);
		return troop_error_set(TROOP_ENOMEM, "out of memory creating a curl handle");
	}
	c->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
	c->max_body = HTTP_DEFAULT_MAX_BODY;
	*out = c;
	return 0;
}

void http_client_free(http_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->easy);
	free(c);
}

void http_client_set_limits(http_client *c, long timeout_ms, size_t max_body)
{
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
	c->max_body = max_body ? max_body : HTTP_DEFAULT_MAX_BODY;
}

void http_client_set_abort(http_client *c, const atomic_int *flag)
{
	c->abort_flag = flag;
}

/* curl's progress callback: non-zero stops the transfer. */
static int xfer_abort(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
    curl_off_t ulnow)
{
	const atomic_int *flag = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(flag) != 0;
}

/* Run one blocking transfer into `s`.  Streams get the timeout as connect
 * and idle limits (a long generation is fine while bytes keep coming);
 * buffered requests get it as a limit on the whole exchange. */
static int client_perform(http_client *c, struct sink *s, const char *method,
    const char *url, const char *const *headers, const void *body, size_t len)
{
	struct curl_slist *hdrs = NULL;
	char shown[HTTP_URL_SHOWN];
	CURLcode cc;
	CURL *e = c->easy;
	int rc;

	/* reset keeps live connections: that is the keep-alive */
	curl_easy_reset(e);
	s->easy = e;
	rc = request_setup(e, &hdrs, shown, sizeof(shown), method, url, headers, body, len);
	if (rc)
		goto out;
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	if (s->on_data) {
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_stream);
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (c->timeout_ms + 999) / 1000);
	} else {
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_buffer);
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
		curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->max);
	}
	if (c->abort_flag) {
		if (atomic_load(c->abort_flag)) {
			rc = troop_error_set(TROOP_ERR, "%s %s: aborted", method, shown);
			goto out;
		}
		curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xfer_abort);
		curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)c->abort_flag);
	}
	c->errbuf[0] = '\0';
	cc = curl_easy_perform(e);
	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		rc = troop_error_set(TROOP_ERR, "%s %s: aborted", method, shown);
		goto out;
	}
	if (cc == CURLE_OK)
		goto out;
	if (cc == CURLE_WRITE_ERROR && s->too_large) {
		rc = troop_error_set(TROOP_ETOOLARGE, "%s %s: response body over %zu bytes",
		    method, shown, s->max);
	} else if (cc == CURLE_WRITE_ERROR && s->abort_rc) {
		if (s->abort_rc < 0 && s->abort_rc > TROOP_ERR_MIN_) {
			rc = s->abort_rc;
			if (troop_error_last() != rc)
				troop_error_set(rc, "%s %s: stopped by the data callback", method, shown);
		} else {
			rc = troop_error_set(TROOP_ERR, "%s %s: stopped by the data callback",
			    method, shown);
		}
	} else if (cc == CURLE_WRITE_ERROR) {
		rc = troop_error_set(TROOP_ENOMEM, "%s %s: out of memory for the response",
		    method, shown);
	} else {
		rc = curl_failure(cc, method, shown, c->errbuf, s->max);
	}
out:
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	return rc;
}

int http_request(http_client *c, http_response *out, const char *method,
    const char *url, const char *const *headers, const void *body, size_t len)
{
	struct sink s = { .max = c->max_body };
	const char *ct = NULL;
	size_t blen = 0;
	long code = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	dynbuf_init(&s.body, c->max_body);
	rc = client_perform(c, &s, method, url, headers, body, len);
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
	out->status = (int)code;
	if (rc) {
		dynbuf_free(&s.body);
		return rc;
	}
	if ((out->body = dynbuf_take(&s.body, &blen)) == NULL)
		return troop_error_set(TROOP_ENOMEM, "out of memory for a response");
	out->len = blen;
	if (curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		snprintf(out->content_type, sizeof(out->content_type), "%s", ct);
	return 0;
}

void http_response_free(http_response *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

int http_request_json(http_client *c, int *status, json_t **out, const char *method,
    const char *url, const char *const *headers, const json_t *body)
{
	const char *hv[HTTP_MAX_HEADERS + 3];
	http_response resp = { 0 };
	json_error_t jerr;
	char *text = NULL;
	size_t n = 0;
	int rc = 0;

	if (out)
		*out = NULL;
	if (status)
		*status = 0;
	for (; headers && headers[n]; n++) {
		if (n >= HTTP_MAX_HEADERS) {
			rc = troop_error_set(TROOP_EINVAL, "more than %d request headers",
			    HTTP_MAX_HEADERS);
			goto out;
		}
		hv[n] = headers[n];
	}
	if (body) {
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text) {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory serialising a request body");
			goto out;
		}
		if (!header_present(headers, "Content-Type"))
			hv[n++] = "Content-Type: application/json";
	}
	if (!header_present(headers, "Accept"))
		hv[n++] = "Accept: application/json";
	hv[n] = NULL;
	rc = http_request(c, &resp, method, url, hv, text, text ? strlen(text) : 0);
	if (status)
		*status = resp.status;
	if (rc)
		goto out;
	if (out && resp.len)
		*out = json_loadb(resp.body, resp.len, 0, &jerr);
out:
	free(text);
	http_response_free(&resp);
	return rc;
}

int http_request_stream(http_client *c, int *status, const char *method,
    const char *url, const char *const *headers, const void *body, size_t len,
    http_data_fn on_data, void *arg)
{
	struct sink s = { .max = c->max_body, .on_data = on_data, .arg = arg, .status = status };
	long code = 0;
	int rc;

	if (status)
		*status = 0;
	if (!on_data)
		return troop_error_set(TROOP_EINVAL, "streaming request without a data callback");
	rc = client_perform(c, &s, method, url, headers, body, len);
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
	if (status)
		*status = (int)code;
	return rc;
}

int http_client_reply_header(http_client *c, const char *name, char *out, size_t len)
{
	struct curl_header *h = NULL;
	size_t n;

	if (len)
		out[0] = '\0';
	if (curl_easy_header(c->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
		return troop_error_set(TROOP_ENOTFOUND, "no %s header in the reply", name);
	n = strlen(h->value);
	if (n >= len)
		return troop_error_set(TROOP_ETOOLARGE, "the reply's %s header is over %zu bytes",
		    name, len);
	memcpy(out, h->value, n + 1);
	return 0;
}

/* ---- asynchronous client -------------------------------------------------- */

/* One socket curl asked us to watch. */
struct async_sock {
	http_async *a;
	curl_socket_t fd;
	int what;                   /* CURL_POLL_* the event was made for */
	struct event *ev;
	struct async_sock *prev, *next;
};

struct http_async {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;        /* curl's single timeout */
	http_async_req *reqs;       /* live requests */
	struct async_sock *socks;
	CURL *spare[ASYNC_SPARE_EASY];
	int nspare;
	bool closing;
};

struct http_async_req {
	http_async *a;
	http_async_req *prev, *next;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	http_async_cb cb;
	void *arg;
	struct event *work;         /* deferred start / resume / cancel */
	struct event *fb_timer;     /* first-byte timeout */
	/* response header lines, NUL-separated, until on_headers ran */
	char *hbuf;
	size_t hused, nlines;
	const char *hlines[ASYNC_HDR_LINES + 1];
	size_t skip;                /* bytes curl will hand again after unpause */
	int fail;                   /* set when a callback stopped the transfer */
	const char *fail_why;
	bool in_multi, headers_done, paused, resume_pending, cancelled, done;
	char method[HTTP_METHOD_MAX + 1];
	char shown[HTTP_URL_SHOWN];
	char errbuf[CURL_ERROR_SIZE];
};

static void async_check_done(http_async *a);

/* -- libevent <-> curl multi glue -- */

static void async_sock_free(http_async *a, struct async_sock *sk)
{
	if (sk->ev)
		event_free(sk->ev);
	if (sk->prev)
		sk->prev->next = sk->next;
	else
		a->socks = sk->next;
	if (sk->next)
		sk->next->prev = sk->prev;
	free(sk);
}

static void async_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct async_sock *sk = arg;
	http_async *a = sk->a;  /* sk may be freed inside socket_action */
	int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
	    ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;

	curl_multi_socket_action(a->multi, fd, action, &running);
	async_check_done(a);
}

static int async_socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	http_async *a = userp;
	struct async_sock *sk = socketp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (sk)
			async_sock_free(a, sk);
		return 0;
	}
	if (!sk) {
		sk = calloc(1, sizeof(*sk));
		if (!sk)
			return -1;
		sk->a = a;
		sk->fd = s;
		sk->next = a->socks;
		if (a->socks)
			a->socks->prev = sk;
		a->socks = sk;
		curl_multi_assign(a->multi, s, sk);
	}
	if (sk->ev && sk->what == what)
		return 0;
	if (sk->ev) {
		event_free(sk->ev);
		sk->ev = NULL;
	}
	sk->what = what;
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	sk->ev = event_new(a->base, s, kind, async_sock_event, sk);
	if (!sk->ev || event_add(sk->ev, NULL) != 0)
		return -1;
	return 0;
}

static void async_timer_event(evutil_socket_t fd, short what, void *arg)
{
	http_async *a = arg;
	int running;

	curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	async_check_done(a);
}

/* curl asks to be woken after timeout_ms (-1: never).  Only arm the
 * timer here; calling back into curl from this callback is not allowed. */
static int async_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	http_async *a = userp;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(a->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(a->timer, &tv) == 0 ? 0 : -1;
}

/* -- request life cycle -- */

static CURL *async_take_easy(http_async *a)
{
	if (a->nspare > 0)
		return a->spare[--a->nspare];
	return curl_easy_init();
}

static void async_put_easy(http_async *a, CURL *e)
{
	if (!e)
		return;
	curl_easy_reset(e);  /* drop pointers into the finished request */
	if (!a->closing && a->nspare < ASYNC_SPARE_EASY)
		a->spare[a->nspare++] = e;
	else
		curl_easy_cleanup(e);
}

/* Free a request's resources without any callback. */
static void req_destroy(http_async_req *r)
{
	if (!r)
		return;
	if (r->in_multi)
		curl_multi_remove_handle(r->a->multi, r->easy);
	if (r->work)
		event_free(r->work);
	if (r->fb_timer)
		event_free(r->fb_timer);
	async_put_easy(r->a, r->easy);
	curl_slist_free_all(r->hdrs);
	free(r->body);
	free(r->hbuf);
	free(r);
}

/* End a request: take it out of the multi and the live list, call on_done
 * once, free it.  Never called from inside a curl callback; the caller has
 * set the error message when err != 0. */
static void req_finish(http_async_req *r, int err)
{
	http_async *a = r->a;

	if (r->done)
		return;
	r->done = true;
	if (r->in_multi) {
		curl_multi_remove_handle(a->multi, r->easy);
		r->in_multi = false;
	}
	if (r->prev)
		r->prev->next = r->next;
	else
		a->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	/* r stays readable during on_done, so a late cancel/resume on it is
	 * a harmless no-op */
	if (r->cb.on_done)
		r->cb.on_done(r->arg, err);
	req_destroy(r);
}

/* Status and headers are complete: hand them over once. */
static int req_fire_headers(http_async_req *r)
{
	long code = 0;
	int rc = 0;

	r->headers_done = true;
	if (r->fb_timer)
		evtimer_del(r->fb_timer);
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	r->hlines[r->nlines] = NULL;
	if (r->cb.on_headers)
		rc = r->cb.on_headers(r->arg, (int)code, r->hlines);
	free(r->hbuf);
	r->hbuf = NULL;
	r->nlines = r->hused = 0;
	r->hlines[0] = NULL;
	if (rc && !r->cancelled && !r->fail) {
		r->fail = TROOP_ERR;
		r->fail_why = "stopped by the headers callback";
	}
	return (r->cancelled || r->fail) ? -1 : 0;
}

static size_t req_on_header(char *buf, size_t size, size_t n, void *ud)
{
	http_async_req *r = ud;
	size_t len = size * n, l = len;

	if (r->cancelled || r->fail)
		return 0;
	if (r->headers_done)
		return len;  /* trailers */
	while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r'))
		l--;
	if (l == 0) {
		long code = 0;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 100 && code < 200) {
			/* interim response: the real one follows */
			r->hused = r->nlines = 0;
			return len;
		}
		return req_fire_headers(r) == 0 ? len : 0;
	}
	if (l >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		r->hused = r->nlines = 0;
		return len;
	}
	if (r->nlines >= ASYNC_HDR_LINES || l + 1 > ASYNC_HDR_BYTES - r->hused) {
		r->fail = TROOP_EUPSTREAM;
		r->fail_why = "response headers over the size limit";
		return 0;
	}
	memcpy(r->hbuf + r->hused, buf, l);
	r->hbuf[r->hused + l] = '\0';
	r->hlines[r->nlines++] = r->hbuf + r->hused;
	r->hused += l + 1;
	return len;
}

static size_t req_on_body(char *ptr, size_t size, size_t n, void *ud)
{
	http_async_req *r = ud;
	size_t total = size * n, len = total, k;
	int rc = 0;

	if (r->cancelled || r->fail)
		return 0;
	if (!r->headers_done && req_fire_headers(r) != 0)
		return 0;
	if (r->skip) {
		/* curl hands back the chunk we paused on; it was delivered */
		k = r->skip < len ? r->skip : len;
		r->skip -= k;
		ptr += k;
		len -= k;
	}
	if (len == 0)
		return total;
	if (r->cb.on_data)
		rc = r->cb.on_data(r->arg, ptr, len);
	if (r->cancelled)
		return 0;
	if (rc == HTTP_ASYNC_PAUSE) {
		r->paused = true;
		r->skip = total;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (rc != 0) {
		r->fail = TROOP_ERR;
		r->fail_why = "stopped by the data callback";
		return 0;
	}
	return total;
}

/* The transfer ended inside curl (or curl_easy_pause failed): work out
 * what to report and finish. */
static void req_complete(http_async_req *r, CURLcode cc)
{
	int err = 0;

	if (r->cancelled) {
		err = troop_error_set(TROOP_ERR, "%s %s: cancelled", r->method, r->shown);
	} else if (r->fail) {
		err = troop_error_set(r->fail, "%s %s: %s", r->method, r->shown, r->fail_why);
	} else if (cc == CURLE_OK) {
		if (!r->headers_done && req_fire_headers(r) != 0)
			err = troop_error_set(r->fail ? r->fail : TROOP_ERR, "%s %s: %s",
			    r->method, r->shown, r->fail_why ? r->fail_why : "cancelled");
	} else {
		err = curl_failure(cc, r->method, r->shown, r->errbuf, 0);
	}
	req_finish(r, err);
}

static void async_check_done(http_async *a)
{
	http_async_req *r;
	CURLMsg *m;
	CURLcode cc;
	int left;

	while ((m = curl_multi_info_read(a->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		r = NULL;
		cc = m->data.result;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r)
			req_complete(r, cc);
	}
}

/* Deferred work for one request, run from the loop: add to the multi,
 * unpause, or end a cancelled request. */
static void req_work(evutil_socket_t fd, short what, void *arg)
{
	http_async_req *r = arg;
	CURLcode cc;

	if (r->cancelled) {
		troop_error_set(TROOP_ERR, "%s %s: cancelled", r->method, r->shown);
		req_finish(r, TROOP_ERR);
		return;
	}
	if (!r->in_multi) {
		if (curl_multi_add_handle(r->a->multi, r->easy) != CURLM_OK) {
			troop_error_set(TROOP_ERR, "%s %s: could not start the transfer",
			    r->method, r->shown);
			req_finish(r, TROOP_ERR);
			return;
		}
		r->in_multi = true;
	}
	if (r->resume_pending) {
		r->resume_pending = false;
		if (r->paused) {
			r->paused = false;
			/* may hand the kept chunk to req_on_body right here */
			cc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
			if (cc != CURLE_OK)
				req_complete(r, cc);
		}
	}
}

static void req_first_byte_timeout(evutil_socket_t fd, short what, void *arg)
{
	http_async_req *r = arg;

	if (r->headers_done || r->done)
		return;
	troop_error_set(TROOP_ETIMEOUT, "%s %s: no response headers in time",
	    r->method, r->shown);
	req_finish(r, TROOP_ETIMEOUT);
}

int http_async_new(http_async **out, struct event_base *base)
{
	http_async *a = NULL;
	int rc;

	*out = NULL;
	rc = curl_ready();
	if (rc)
		return rc;
	if (!base)
		return troop_error_set(TROOP_EINVAL, "async HTTP client needs an event base");
	a = calloc(1, sizeof(*a));
	if (!a)
		return troop_error_set(TROOP_ENOMEM, "out of memory creating an async HTTP client");
	a->base = base;
	a->multi = curl_multi_init();
	a->timer = evtimer_new(base, async_timer_event, a);
	if (!a->multi || !a->timer) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory creating an async HTTP client");
		goto fail;
	}
	curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, async_socket_cb);
	curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
	curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, async_timer_cb);
	curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);
	*out = a;
	return 0;
fail:
	if (a->multi)
		curl_multi_cleanup(a->multi);
	if (a->timer)
		event_free(a->timer);
	free(a);
	return rc;
}

void http_async_free(http_async *a)
{
	if (!a)
		return;
	a->closing = true;
	while (a->reqs) {
		http_async_req *r = a->reqs;
		r->cancelled = true;
		troop_error_set(TROOP_ERR, "%s %s: cancelled (client closed)", r->method, r->shown);
		req_finish(r, TROOP_ERR);
	}
	/* may still call the socket and timer callbacks: a stays valid */
	curl_multi_cleanup(a->multi);
	while (a->socks)
		async_sock_free(a, a->socks);
	while (a->nspare > 0)
		curl_easy_cleanup(a->spare[--a->nspare]);
	event_free(a->timer);
	free(a);
}

int http_async_request(http_async *a, http_async_req **out, const char *method,
    const char *url, const char *const *headers, const void *body, size_t len,
    const http_async_opts *opts, const http_async_cb *cb, void *arg)
{
	http_async_opts o = { .tcp_nodelay = true };
	http_async_req *r = NULL;
	struct timeval tv;
	CURL *e;
	int rc;

	if (out)
		*out = NULL;
	if (!a || !cb)
		return troop_error_set(TROOP_EINVAL, "async request without a client or callbacks");
	if (a->closing)
		return troop_error_set(TROOP_ERR, "async HTTP client is closing");
	if (opts)
		o = *opts;
	r = calloc(1, sizeof(*r));
	if (!r)
		return troop_error_set(TROOP_ENOMEM, "out of memory starting a request");
	r->a = a;
	r->cb = *cb;
	r->arg = arg;
	r->hbuf = malloc(ASYNC_HDR_BYTES);
	r->easy = async_take_easy(a);
	r->work = event_new(a->base, -1, 0, req_work, r);
	if (body && len)
		r->body = malloc(len);
	if (!r->hbuf || !r->easy || !r->work || (body && len && !r->body)) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory starting a request");
		goto fail;
	}
	if (r->body)
		memcpy(r->body, body, len);
	e = r->easy;
	rc = request_setup(e, &r->hdrs, r->shown, sizeof(r->shown), method, url, headers,
	    r->body ? r->body : (body ? "" : NULL), len);
	if (rc)
		goto fail;
	snprintf(r->method, sizeof(r->method), "%s", method);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, req_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, req_on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, o.tcp_nodelay ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    o.connect_timeout_ms > 0 ? o.connect_timeout_ms : ASYNC_CONNECT_TIMEOUT_MS);
	if (o.total_timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o.total_timeout_ms);
	if (o.first_byte_timeout_ms > 0) {
		r->fb_timer = evtimer_new(a->base, req_first_byte_timeout, r);
		tv.tv_sec = o.first_byte_timeout_ms / 1000;
		tv.tv_usec = (o.first_byte_timeout_ms % 1000) * 1000;
		if (!r->fb_timer || evtimer_add(r->fb_timer, &tv) != 0) {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory starting a request");
			goto fail;
		}
	}
	r->next = a->reqs;
	if (a->reqs)
		a->reqs->prev = r;
	a->reqs = r;
	/* joins the multi from the loop: this call may come from inside
	 * another request's callback, where curl refuses new handles */
	event_active(r->work, EV_TIMEOUT, 0);
	if (out)
		*out = r;
	return 0;
fail:
	req_destroy(r);
	return rc;
}

void http_async_resume(http_async_req *r)
{
	if (!r || r->done || r->cancelled || !r->paused)
		return;
	r->resume_pending = true;
	event_active(r->work, EV_TIMEOUT, 0);
}

void http_async_cancel(http_async_req *r)
{
	if (!r || r->done)
		return;
	r->cancelled = true;
	event_active(r->work, EV_TIMEOUT, 0);
}
