/*
 * up.c - `troop up`: the local OpenAI-compatible proxy (DESIGN.md section
 * 10).  Any OpenAI SDK pointed at http://127.0.0.1:9000/v1 gets the
 * troop's models; each request is authorized with this machine's identity
 * and served by a worker found through the coordinator (up_job.c).
 *
 * This file wires it together: options, the listen-address policy (only
 * loopback unless --allow-remote and --api-key), the API key check, the
 * server threads with one http_async each, /health, and the message that
 * tells people where to point their SDK.
 *
 * Loopback is no boundary against the browser on the same machine, so
 * every route is guarded (the "edge" below) before its handler runs:
 *   - Host must be a loopback name or address (localhost, 127.0.0.0/8,
 *     [::1], any port), the literal --listen host, or an --allow-host name:
 *     a DNS-rebinding page names its own host and is refused (403);
 *   - a request with an Origin (a browser) must come from an --allow-origin
 *     origin or from troop up itself (same origin); other pages are refused
 *     (403) before anything is spent.  No Origin: not a browser, allowed;
 *   - POST bodies must be application/json (parameters such as charset
 *     allowed): the content types a page can send without a CORS preflight
 *     (text/plain, forms) get 415.
 * Allowed origins get CORS headers and preflight answers; others get none.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_kind.h"
#include "cli.h"
#include "commands.h"
#include "error.h"
#include "json.h"
#include "log.h"
#include "metrics_server.h"
#include "report.h"
#include "up.h"
#include "up_prefetch.h"
#include "up_metrics.h"
#include "up_seal.h"

#define UP_DEFAULT_LISTEN "127.0.0.1:9000"
#define UP_MIN_KEY_LEN 16
#define UP_MAX_BODY (32u * 1024 * 1024)   /* long prompts, embedding batches */
#define UP_EDGE_LIST 2048
#define UP_MAX_ROUTES 24
#define UP_REPORT_FLUSH_MS 2000  /* at exit: send the delivery reports left */

static const config_opt up_opts[] = {
	CLI_OPT_COORDINATOR,
	{ "listen", 'l', OPT_STRING, "TROOP_CLIENT_LISTEN", NULL, UP_DEFAULT_LISTEN, "ADDR:PORT",
	  "where apps reach the proxy (loopback unless --allow-remote)", 0, 0 },
	{ "allow-remote", 0, OPT_BOOL, "TROOP_ALLOW_REMOTE", NULL, NULL, NULL,
	  "allow a non-loopback --listen address (needs --api-key)", 0, 0 },
	{ "api-key", 0, OPT_STRING, "TROOP_API_KEY", NULL, NULL, "KEY",
	  "require 'Authorization: Bearer KEY' from apps (at least 16 characters)", 0, 0 },
	{ "max-seconds", 0, OPT_INT, "TROOP_CLIENT_MAX_SECONDS", NULL, NULL, "N",
	  "GPU seconds reserved per request (default: the coordinator's)", 1, 86400 },
	{ "wait", 0, OPT_INT, "TROOP_WAIT", NULL, "120", "SECONDS",
	  "when every node is busy, wait this long in the coordinator's queue on the app's "
	  "behalf (0: answer 503 at once)", 0, 600 },
	{ "prefetch-idle", 0, OPT_INT, "TROOP_PREFETCH_IDLE", NULL, "0", "SECONDS",
	  "after a request, keep one ticket fetched ahead for the model's next request "
	  "(no /authorize round trip before it: for a coordinator far away) until the "
	  "model has been idle this long; each such ticket holds its credits until used "
	  "or expired (0: off)", 0, 3600 },
	{ "require-sealed", 0, OPT_BOOL, "TROOP_REQUIRE_SEALED", NULL, NULL, NULL,
	  "send requests only to workers that seal them (end-to-end encryption; "
	  "by default they are sealed whenever the worker offers it)", 0, 0 },
	{ "first-byte-timeout", 0, OPT_INT, "TROOP_FIRST_BYTE_TIMEOUT", NULL, "30", "SECONDS",
	  "fail over when a worker sends nothing for this long (streamed replies)", 1, 3600 },
	{ "allow-host", 0, OPT_STRING, "TROOP_ALLOW_HOST", NULL, NULL, "NAMES",
	  "also answer requests whose Host is one of these names (comma-separated; "
	  "loopback names always)", 0, 0 },
	{ "allow-origin", 0, OPT_STRING, "TROOP_ALLOW_ORIGIN", NULL, NULL, "ORIGINS",
	  "let web pages from these origins use the API (comma-separated, e.g. "
	  "http://localhost:3000)", 0, 0 },
	{ "threads", 0, OPT_INT, "TROOP_CLIENT_THREADS", NULL, "0", "N",
	  "server threads (0: one per core)", 0, 256 },
	{ "log-level", 0, OPT_STRING, "TROOP_LOG_LEVEL", NULL, "info", "LEVEL",
	  "debug, info, warn, error or off", 0, 0 },
	{ "metrics-listen", 0, OPT_STRING, "TROOP_CLIENT_METRICS_LISTEN", NULL, NULL, "ADDR:PORT",
	  "serve Prometheus metrics on GET /metrics here (off by default; loopback only "
	  "unless --metrics-listen-allow-remote)", 0, 0 },
	{ "metrics-listen-allow-remote", 0, OPT_BOOL, "TROOP_METRICS_ALLOW_REMOTE", NULL, NULL,
	  NULL, "allow a non-loopback --metrics-listen address", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

/* ---- shared helpers (up.h) ------------------------------------------------------- */

int64_t up_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t up_now_ms(void)
{
	return up_now_us() / 1000;
}

up_thread *up_thread_of(http_req *r)
{
	return http_req_thread_ctx(r);
}

void up_reply_error(http_req *r, int status, const char *type, const char *code,
    const char *job_id, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (job_id)
		http_reply_header(r, "X-Troop-Job", job_id);
	/* the Anthropic error shape on the Messages API, else OpenAI's */
	http_reply_json(r, status, api_error_body(api_kind_of_path(http_req_path(r)), status,
	    type, code, msg));
}

bool up_check_key(http_req *r, const up_server *s)
{
	const char *h;
	unsigned char got[32];

	if (!s->require_key)
		return true;
	h = http_req_header(r, "Authorization");
	if (h && strncasecmp(h, "Bearer ", 7) == 0)
		h += 7;
	else
		h = http_req_header(r, "x-api-key");  /* the Anthropic SDKs' header */
	if (h) {
		crypto_generichash(got, sizeof(got), (const unsigned char *)h, strlen(h), NULL, 0);
		if (sodium_memcmp(got, s->key_hash, sizeof(got)) == 0)
			return true;
	}
	up_reply_error(r, 401, "invalid_request_error", "invalid_api_key", NULL,
	    "missing or wrong API key: send 'Authorization: Bearer <the --api-key of troop up>' "
	    "(or 'x-api-key: <key>')");
	return false;
}

/* ---- listen policy ----------------------------------------------------------------- */

/* ---- the edge: Host, Origin, Content-Type ------------------------------------------ */

typedef struct {
	char hosts[UP_EDGE_LIST];       /* --allow-host, comma-separated */
	char origins[UP_EDGE_LIST];     /* --allow-origin, comma-separated */
	char listen_host[128];          /* the literal --listen host, "" if wildcard */
} up_edge;

typedef struct {
	const up_edge *edge;
	http_handler_fn fn;
	void *arg;
} up_route;

/* Is `item` (len bytes) in the comma-separated `list` (case-insensitive,
 * spaces and a trailing '/' around entries ignored)? */
static bool list_has(const char *list, const char *item, size_t len)
{
	const char *p = list;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *q = p;

		while (n > 0 && isspace((unsigned char)*q)) {
			q++;
			n--;
		}
		while (n > 0 && (isspace((unsigned char)q[n - 1]) || q[n - 1] == '/'))
			n--;
		if (n == len && n > 0 && strncasecmp(q, item, n) == 0)
			return true;
		p = end != NULL ? end + 1 : NULL;
	}
	return false;
}

/* Split a Host header into its name (brackets dropped) and check the port
 * part is digits.  Returns false if malformed. */
static bool host_name(const char *host, char *out, size_t outlen)
{
	const char *end, *port;
	size_t n;

	if (host[0] == '[') {
		end = strchr(host, ']');
		if (end == NULL)
			return false;
		port = end + 1;
		host++;
	} else {
		end = strrchr(host, ':');
		if (end != NULL && memchr(host, ':', (size_t)(end - host)) != NULL)
			return false;   /* a bare IPv6 address */
		port = end;
		if (end == NULL)
			end = host + strlen(host);
	}
	if (port != NULL && *port != '\0') {
		if (*port != ':' || port[1] == '\0')
			return false;
		for (const char *d = port + 1; *d; d++)
			if (*d < '0' || *d > '9')
				return false;
	}
	n = (size_t)(end - host);
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, host, n);
	out[n] = '\0';
	return true;
}

static bool host_allowed(const up_edge *e, const char *host)
{
	char name[256];
	size_t n;
	struct in_addr a4;
	struct in6_addr a6;

	if (!host_name(host, name, sizeof(name)))
		return false;
	n = strlen(name);
	if (n > 1 && name[n - 1] == '.')
		name[--n] = '\0';
	if (strcasecmp(name, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127)
		return true;
	if (inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6))
		return true;
	if (e->listen_host[0] != '\0' && strcasecmp(name, e->listen_host) == 0)
		return true;
	return list_has(e->hosts, name, n) || list_has(e->hosts, host, strlen(host));
}

/* An Origin that may use the API: listed, or troop up itself (the Host was
 * checked first, so "http://<Host>" is a page troop up served). */
static bool origin_allowed(const up_edge *e, const char *origin, const char *host)
{
	size_t n = strlen(origin);

	if (list_has(e->origins, origin, n))
		return true;
	return host != NULL && strncasecmp(origin, "http://", 7) == 0 &&
	    strcasecmp(origin + 7, host) == 0;
}

/* application/json, with or without parameters ("; charset=utf-8"). */
static bool is_json_type(const char *ct)
{
	if (ct == NULL)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, "application/json", 16) != 0)
		return false;
	ct += 16;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/* Every route runs through here first. */
static void h_edge(http_req *r, void *arg)
{
	const up_route *rt = arg;
	const char *host = http_req_header(r, "Host");
	const char *origin = http_req_header(r, "Origin");
	const char *method = http_req_method(r);

	if (host != NULL && !host_allowed(rt->edge, host)) {
		up_reply_error(r, 403, "invalid_request_error", "host_not_allowed", NULL,
		    "Host '%.100s' is not allowed: troop up answers requests for loopback names "
		    "(localhost, 127.0.0.1, [::1]); to use another name, start it with "
		    "--allow-host NAME", host);
		return;
	}
	if (origin != NULL) {
		if (!origin_allowed(rt->edge, origin, host)) {
			up_reply_error(r, 403, "invalid_request_error", "origin_not_allowed", NULL,
			    "web pages from '%.100s' may not use this proxy (it would spend your "
			    "credits); to allow one, start troop up with --allow-origin ORIGIN",
			    origin);
			return;
		}
		if (strcasecmp(origin + (strncasecmp(origin, "http://", 7) == 0 ? 7 : 0),
		    host != NULL ? host : "") != 0) {
			http_reply_header(r, "Access-Control-Allow-Origin", origin);
			http_reply_header(r, "Access-Control-Expose-Headers", "X-Troop-Job");
			http_reply_header(r, "Vary", "Origin");
		}
	}
	if (strcmp(method, "OPTIONS") == 0) {
		/* a preflight from an allowed origin (or no browser at all) */
		http_reply_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
		http_reply_header(r, "Access-Control-Allow-Headers",
		    "Authorization, Content-Type, OpenAI-Organization, OpenAI-Project, "
		    "X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-OS, "
		    "X-Stainless-Arch, X-Stainless-Runtime, X-Stainless-Runtime-Version, "
		    "X-Stainless-Retry-Count, X-Stainless-Timeout, x-api-key, anthropic-version, "
		    "anthropic-beta, anthropic-dangerous-direct-browser-access");
		http_reply_header(r, "Access-Control-Max-Age", "600");
		http_reply_header(r, "Allow", "GET, POST, OPTIONS");
		http_reply(r, 204, NULL, NULL, 0);
		return;
	}
	if (strcmp(method, "POST") == 0 && !is_json_type(http_req_header(r, "Content-Type"))) {
		const char *ct = http_req_header(r, "Content-Type");

		up_reply_error(r, 415, "invalid_request_error", "unsupported_media_type", NULL,
		    "Content-Type must be application/json, not '%.100s' (curl: add "
		    "-H 'Content-Type: application/json')", ct != NULL ? ct : "(none)");
		return;
	}
	rt->fn(r, rt->arg);
}

/* ---- threads and routes -------------------------------------------------------------- */

static int thread_init(void *arg, int index, struct event_base *base, void **tctx)
{
	up_thread *t = calloc(1, sizeof(*t));

	(void)index;
	if (!t)
		return -1;
	t->srv = arg;
	t->base = base;
	if (http_async_new(&t->async, base) != 0) {
		free(t);
		return -1;
	}
	*tctx = t;
	return 0;
}

static void thread_fini(void *arg, void *tctx)
{
	up_thread *t = tctx;

	(void)arg;
	if (!t)
		return;
	http_async_free(t->async);
	free(t);
}

static void h_health(http_req *r, void *arg)
{
	(void)arg;
	http_reply_json(r, 200, json_pack("{s:s, s:s, s:s}", "status", "healthy",
	    "role", "client", "version", TROOP_VERSION));
}

/* What the coordinator says about this account, for the banner: a line
 * with the available credits, or a warning that it cannot be reached yet
 * (the proxy starts anyway: requests work once the coordinator does). */
static void credits_line(char *out, size_t len, cli *c)
{
	char path[128];
	json_t *b = NULL;
	int status = 0;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/users/%s/balance", c->id.id);
	http_client_set_limits(c->http, 3000, 0);
	if (http_request_signed(c->http, &status, &b, &c->id, "GET", c->coordinator, path,
	    NULL) != 0) {
		const char *why = strstr(troop_error_msg(), ": ");
		snprintf(out, len, "  warning      the coordinator cannot be reached yet (%s);\n"
		    "               requests will fail with 503 until it can\n",
		    why ? why + 2 : troop_error_msg());
	} else if (status == 200) {
		json_int_t avail = json_integer_value(json_object_get(b, "available_seconds"));
		snprintf(out, len, "  credits      %lld s available (%.2f h)%s\n", (long long)avail,
		    (double)avail / 3600.0, avail > 0 ? "" :
		    ": requests will fail with 402 until you earn or are granted credits");
	} else {
		snprintf(out, len, "  warning      the coordinator answered HTTP %d to a balance "
		    "check: %s\n", status, cli_error_message(b));
	}
	json_decref(b);
}

static void print_banner(const up_server *s, const char *listen, int port, bool key,
    const char *credits)
{
	char host[128];
	const char *colon = strrchr(listen, ':');
	size_t n = colon ? (size_t)(colon - listen) : 0;

	snprintf(host, sizeof(host), "%.*s", (int)n, listen);
	if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	printf("\ntroop up: an OpenAI-compatible API is ready at http://%s:%d/v1\n"
	    "  account      %s\n"
	    "  coordinator  %s\n%s\n"
	    "Point any OpenAI SDK or tool at it:\n"
	    "  export OPENAI_BASE_URL=http://%s:%d/v1\n"
	    "  export OPENAI_API_KEY=%s\n"
	    "See what you can use with 'troop models', your credits with 'troop balance'.\n"
	    "Each reply carries an X-Troop-Job header naming its job in 'troop transactions'.\n"
	    "Ctrl-C stops the proxy.\n\n",
	    host, port, s->id.id, s->coordinator, credits, host, port,
	    key ? "<your --api-key>" : "troop   (any value: this proxy signs for you)");
	fflush(stdout);
}

int cmd_up(int argc, char **argv)
{
	http_server_opts so = { 0 };
	http_server *srv = NULL;
	static const struct {
		const char *method, *path;
		http_handler_fn fn;
	} routes[] = {
		{ "POST", "/v1/chat/completions", up_handle_inference },
		{ "POST", "/v1/completions", up_handle_inference },
		{ "POST", "/v1/embeddings", up_handle_inference },
		{ "POST", "/v1/responses", up_handle_inference },
		{ "POST", "/v1/messages", up_handle_inference },
		{ "POST", "/v1/messages/count_tokens", up_handle_inference },
		{ "POST", "/tokenize", up_handle_inference },
		{ "GET", "/v1/models", up_handle_models },
		{ "GET", "/v1/models/{model}", up_handle_model },
		{ "GET", "/v1/models/{org}/{name}", up_handle_model_org },
		{ "GET", "/health", h_health },
		{ "GET", "/ui", up_handle_ui },
		{ "GET", "/ui/api/{what}", up_handle_ui_api },
	};
	_Static_assert(sizeof(routes) / sizeof(routes[0]) <= UP_MAX_ROUTES,
	    "UP_MAX_ROUTES is too small for the routes");
	up_route rts[UP_MAX_ROUTES];
	up_edge edge;
	up_server *s = NULL;
	const char *listen, *key;
	log_level lvl;
	bool mu_ok = false;
	metrics_server *ms = NULL;
	cli c;
	int rc;

	if (!cli_start(&c, &rc, "up", "[--listen ADDR:PORT] [--allow-remote --api-key KEY] "
	    "[--coordinator URL]",
	    "Run the local OpenAI-compatible proxy.  Apps send OpenAI requests to it; each\n"
	    "one is authorized with your identity (credits are reserved, then charged for\n"
	    "the time used) and served by a worker of the troop, streaming straight back.\n"
	    "When a worker fails before answering, another one is tried (3 in all).",
	    up_opts, argc, argv, 0))
		return rc;
	listen = config_str(c.cfg, "listen");
	key = config_str(c.cfg, "api-key");
	if (log_parse_level(&lvl, config_str(c.cfg, "log-level")) != 0) {
		rc = cli_usage_error(&c, "--log-level: %s", troop_error_msg());
		goto out;
	}
	log_set_level(lvl);
	if (!config_listen_is_loopback(listen) && !(config_bool(c.cfg, "allow-remote") && key)) {
		rc = cli_usage_error(&c, "--listen %s is not a loopback address: anyone who can "
		    "reach it could spend your credits.  To allow it, add --allow-remote and "
		    "--api-key KEY (apps then send 'Authorization: Bearer KEY')", listen);
		goto out;
	}
	if (key && strlen(key) < UP_MIN_KEY_LEN) {
		rc = cli_usage_error(&c, "--api-key must be at least %d characters (try: "
		    "openssl rand -hex 24)", UP_MIN_KEY_LEN);
		goto out;
	}
	if ((rc = cli_load_identity(&c)) != 0)
		goto out;

	s = sodium_malloc(sizeof(*s));
	if (!s) {
		rc = cli_fail(&c, "out of memory");
		goto out;
	}
	memset(s, 0, sizeof(*s));
	if (pthread_mutex_init(&s->models_mu, NULL) != 0) {
		rc = cli_fail(&c, "cannot create a mutex");
		goto out;
	}
	mu_ok = true;
	snprintf(s->coordinator, sizeof(s->coordinator), "%s", c.coordinator);
	s->id = c.id;
	s->first_byte_timeout_ms = config_int(c.cfg, "first-byte-timeout") * 1000;
	s->max_seconds = config_is_set(c.cfg, "max-seconds") ? config_int(c.cfg, "max-seconds") : 0;
	s->wait_s = config_int(c.cfg, "wait");
	s->require_sealed = config_bool(c.cfg, "require-sealed");
	if (config_int(c.cfg, "prefetch-idle") > 0 &&
	    (rc = up_prefetch_new(&s->prefetch, config_int(c.cfg, "prefetch-idle"))) != 0) {
		rc = cli_fail(&c, "%s", troop_error_msg());
		goto out;
	}
	if ((rc = client_reports_start(&s->reports, s->coordinator, &s->id, NULL)) != 0) {
		rc = cli_fail(&c, "cannot start the delivery report spool: %s", troop_error_msg());
		goto out;
	}
	if (key) {
		s->require_key = true;
		crypto_generichash(s->key_hash, sizeof(s->key_hash), (const unsigned char *)key,
		    strlen(key), NULL, 0);
	}

	so.listen = listen;
	so.threads = (int)config_int(c.cfg, "threads");
	so.max_body = UP_MAX_BODY;
	so.idle_timeout_s = 300;
	so.name = "client";
	if ((rc = http_server_new(&srv, &so)) != 0) {
		rc = cli_fail(&c, "%s", troop_error_msg());
		goto out;
	}
	http_server_on_thread(srv, thread_init, thread_fini, s);
	memset(&edge, 0, sizeof(edge));
	snprintf(edge.hosts, sizeof(edge.hosts), "%s",
	    config_str(c.cfg, "allow-host") ? config_str(c.cfg, "allow-host") : "");
	snprintf(edge.origins, sizeof(edge.origins), "%s",
	    config_str(c.cfg, "allow-origin") ? config_str(c.cfg, "allow-origin") : "");
	{
		char lh[128];

		if (host_name(listen, lh, sizeof(lh)) && strcmp(lh, "0.0.0.0") != 0 &&
		    strcmp(lh, "::") != 0 && strcmp(lh, "*") != 0)
			snprintf(edge.listen_host, sizeof(edge.listen_host), "%s", lh);
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		rts[i].edge = &edge;
		rts[i].fn = routes[i].fn;
		rts[i].arg = s;
		if (http_server_route(srv, routes[i].method, routes[i].path, h_edge, &rts[i]) ||
		    (strcmp(routes[i].path, "/health") != 0 &&
		    http_server_route(srv, "OPTIONS", routes[i].path, h_edge, &rts[i]))) {
			rc = cli_fail(&c, "%s", troop_error_msg());
			goto out;
		}
	}
	/* a SIGTERM while the banner is being written is a clean shutdown */
	if (http_server_catch_signals(srv) != 0 || http_server_start(srv) != 0 ||
	    up_seal_pool_start() != 0) {
		rc = cli_fail(&c, "%s", troop_error_msg());
		goto out;
	}
	s->listen_port = http_server_port(srv);
	if (config_str(c.cfg, "metrics-listen")) {
		if (metrics_server_start(&ms, config_str(c.cfg, "metrics-listen"),
		    config_bool(c.cfg, "metrics-listen-allow-remote"), "--metrics-listen",
		    up_metrics_render, s) != 0) {
			rc = cli_fail(&c, "%s", troop_error_msg());
			goto out;
		}
		log_info("metrics_started", "listen=%s port=%d", config_str(c.cfg, "metrics-listen"),
		    metrics_server_port(ms));
	}
	log_info("client_started", "listen=%s port=%d coordinator=%s account=%.8s remote=%d "
	    "app_auth=%s", listen, http_server_port(srv), s->coordinator, s->id.id,
	    !config_listen_is_loopback(listen), s->require_key ? "bearer" : "none");
	{
		char credits[600];
		credits_line(credits, sizeof(credits), &c);
		print_banner(s, listen, http_server_port(srv), s->require_key, credits);
	}
	rc = http_server_run(srv, 10000) == 0 ? 0 : 1;
	log_info("client_stopped", "jobs=%llu failovers=%llu failed=%llu",
	    (unsigned long long)atomic_load(&s->jobs),
	    (unsigned long long)atomic_load(&s->failovers),
	    (unsigned long long)atomic_load(&s->failed));
out:
	metrics_server_stop(ms);
	http_server_free(srv);
	up_seal_pool_stop();
	if (s) {
		client_reports_stop(s->reports, UP_REPORT_FLUSH_MS);
		up_prefetch_free(s->prefetch);
		if (mu_ok) {
			up_models_clear(s);
			pthread_mutex_destroy(&s->models_mu);
		}
		identity_wipe(&s->id);
		sodium_free(s);
	}
	cli_end(&c);
	return rc;
}
