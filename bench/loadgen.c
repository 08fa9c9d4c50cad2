/*
 * loadgen.c - load generator for `troop coordinator`, used by
 * bench/bench_coordinator.sh.  It talks to the coordinator the way real
 * workers and clients do: RFC 9421 signed requests made with httpsig_sign
 * (a fresh nonce each), bodies shaped as DESIGN.md section 6 describes,
 * over many HTTP/1.1 keep-alive connections driven by one thread with
 * non-blocking sockets and epoll.
 *
 * Before each timed phase the requests of that phase are signed in a
 * batch (on every core, while the coordinator is idle), so the generator's
 * own Ed25519 signing does not compete with the coordinator for the CPU
 * during the measurement.  A batch is used only while its oldest signature
 * is less than 50 s old (the coordinator refuses signatures more than 60 s
 * away from its clock) and each request, with its nonce, is sent once.
 *
 * Phases (each prints requests/s, p50, p99, max and the error count):
 *   heartbeat   closed loop: N node identities heartbeating round-robin
 *   authorize   closed loop: user identities authorizing one model served
 *               by nodes registered with max_jobs 0 (reserves on SQLite)
 *   *-open      open loop at a fixed request rate; latency is measured
 *               from each request's scheduled send time, so a stalled
 *               server is not hidden by a stalled generator
 *   peers-*     GET /peers?model=M after registering many nodes with
 *               heartbeats: one connection (the service time), 16
 *               connections closed loop, open loop at half that rate,
 *               and 16 connections asking for one model (peers-same: a
 *               burst of one request, which a cached reply serves)
 *
 * Closed-loop latency is measured from the moment the request is written.
 * With --coord-pid each phase also reports the coordinator's CPU use (from
 * /proc) and CPU time per request, and the run starts and ends with a
 * one-thread Ed25519 verify rate: the machine is shared, and these tell a
 * slow coordinator from a busy machine.  $LOADGEN_TRACE=FILE writes one
 * line per reply (phase, connection, scheduled ms, latency ms).
 *
 * It ends with a table of the figures next to their targets and lines
 * "RESULT ..." for bench/run.sh.  `loadgen --selftest` checks the HTTP
 * response reader (every split point of a set of responses).  Exit status:
 * 0, 1 when it could not run, 2 when a timed phase got no good reply.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "encoding.h"
#include "httpsig.h"
#include "identity.h"
#include "bench_proc.h"

#define SLOT 640                  /* bytes of one pre-rendered request head */
#define HDR_MAX 65536             /* response header block limit */
#define RBUF_MAX (32u << 20)      /* response size limit */
#define MAX_AGE_S 50              /* oldest signature a batch may still send */
#define DRAIN_S 10                /* wait for in-flight replies at phase end */
#define MAX_THREADS 16

/* ---- options ---------------------------------------------------------------------- */

static struct {
	const char *host;
	int port;
	int conns;                /* connections of the heartbeat/authorize phases */
	double duration;          /* seconds per timed phase */
	int hb_nodes;             /* heartbeat identities */
	int users;                /* authorize identities */
	int auth_nodes;           /* nodes serving the authorize model */
	int peer_nodes;           /* nodes registered for /peers */
	int peer_models;          /* models spread over them */
	int peer_conns;           /* connections of the peers phases */
	double hb_cap, auth_cap;  /* most requests/s pre-signed for closed loops */
	double hb_target, auth_target, open_p99, peers_p99;
	double hb_open_rate, auth_open_rate;  /* 0: half the targets */
	int threads;              /* signing threads */
	int coord_pid;            /* to read its CPU time from /proc; 0: none */
	const char *phases;
} opt = {
	.host = "127.0.0.1", .conns = 64, .duration = 4.0, .hb_nodes = 1000, .users = 100,
	.auth_nodes = 10, .peer_nodes = 100000, .peer_models = 1000, .peer_conns = 16,
	.hb_cap = 50000, .auth_cap = 20000, .hb_target = 20000, .auth_target = 5000,
	.open_p99 = 10.0, .peers_p99 = 5.0, .threads = 0,
	.phases = "heartbeat,authorize,heartbeat-open,authorize-open,peers",
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "loadgen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		die("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool phase_wanted(const char *name)
{
	size_t n = strlen(name);
	const char *p = opt.phases;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == opt.phases || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
		p += n;
	}
	return false;
}

/* ---- HTTP/1.1 response reader ---------------------------------------------------------- */

/* Incremental: state survives between calls on a growing buffer, so a
 * large body is not rescanned from its start on every read. */
struct resp {
	size_t hdr_len;         /* 0 until the header block is complete */
	int status;
	bool chunked, close, until_close;
	long long clen;         /* -1: none */
	size_t cpos;            /* chunked: offset of the next chunk-size line */
	size_t body_off, body_len;  /* Content-Length body, for checks */
	size_t dechunked;       /* chunked: body bytes seen */
};

static void resp_reset(struct resp *p)
{
	memset(p, 0, sizeof(*p));
	p->clen = -1;
}

static bool hdr_name_is(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

static bool value_has_token(const char *v, size_t n, const char *tok)
{
	size_t t = strlen(tok);

	for (size_t i = 0; i + t <= n; i++)
		if (strncasecmp(v + i, tok, t) == 0 &&
		    (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ' || v[i - 1] == '\t') &&
		    (i + t == n || v[i + t] == ',' || v[i + t] == ' ' || v[i + t] == '\t' ||
		    v[i + t] == ';'))
			return true;
	return false;
}

/* Parse the status line and headers of buf[0..hdr_len). */
static int resp_headers(struct resp *p, const char *buf, size_t hdr_len)
{
	const char *end = buf + hdr_len - 2;   /* at the final CRLF */
	const char *line = buf, *eol;

	if (hdr_len < 16 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ' || !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
	    !isdigit((unsigned char)buf[11]) || (buf[12] != ' ' && buf[12] != '\r'))
		return -1;
	p->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if (buf[7] == '0')
		p->close = true;  /* HTTP/1.0 without keep-alive */
	eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
	while (eol && eol + 2 < end) {
		const char *h = eol + 2, *colon, *v, *ve;
		eol = memmem(h, (size_t)(end - h) + 2, "\r\n", 2);
		if (!eol)
			return -1;
		colon = memchr(h, ':', (size_t)(eol - h));
		if (!colon || colon == h)
			return -1;
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		ve = eol;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (hdr_name_is(h, (size_t)(colon - h), "Content-Length")) {
			long long x = 0;
			if (v == ve)
				return -1;
			for (const char *q = v; q < ve; q++) {
				if (!isdigit((unsigned char)*q) || x > (long long)RBUF_MAX)
					return -1;
				x = x * 10 + (*q - '0');
			}
			if (p->clen >= 0 && p->clen != x)
				return -1;
			p->clen = x;
		} else if (hdr_name_is(h, (size_t)(colon - h), "Transfer-Encoding")) {
			if (value_has_token(v, (size_t)(ve - v), "chunked"))
				p->chunked = true;
		} else if (hdr_name_is(h, (size_t)(colon - h), "Connection")) {
			if (value_has_token(v, (size_t)(ve - v), "close"))
				p->close = true;
			else if (value_has_token(v, (size_t)(ve - v), "keep-alive"))
				p->close = false;
		}
	}
	return 0;
}

/* Look for one complete response at the start of buf[0..len).  Returns its
 * length (> 0), 0 when more bytes are needed, -1 when it is malformed or
 * over the limits.  `eof`: the peer closed (ends an until-close body).
 * Interim 1xx responses are returned like any other; the caller skips them. */
static long resp_parse(struct resp *p, const char *buf, size_t len, bool eof)
{
	if (p->hdr_len == 0) {
		const char *e = memmem(buf, len < HDR_MAX ? len : HDR_MAX, "\r\n\r\n", 4);
		if (!e)
			return len >= HDR_MAX ? -1 : 0;
		p->hdr_len = (size_t)(e - buf) + 4;
		if (resp_headers(p, buf, p->hdr_len) != 0)
			return -1;
		p->cpos = p->hdr_len;
		p->body_off = p->hdr_len;
		if ((p->status >= 100 && p->status < 200) || p->status == 204 || p->status == 304)
			return (long)p->hdr_len;
		if (p->chunked)
			p->clen = -1;   /* RFC 9112 6.3: chunked wins over Content-Length */
		else if (p->clen < 0)
			p->until_close = true;
	}
	if (p->until_close) {
		if (len > RBUF_MAX)
			return -1;
		if (!eof)
			return 0;
		p->body_len = len - p->hdr_len;
		return (long)len;
	}
	if (!p->chunked) {
		size_t need = p->hdr_len + (size_t)p->clen;
		if (need > RBUF_MAX)
			return -1;
		if (len < need)
			return 0;
		p->body_len = (size_t)p->clen;
		return (long)need;
	}
	for (;;) {
		const char *line = buf + p->cpos, *eol, *q;
		size_t avail = len - p->cpos, size = 0;
		eol = memmem(line, avail < 1024 ? avail : 1024, "\r\n", 2);
		if (!eol)
			return avail >= 1024 ? -1 : 0;
		for (q = line; q < eol && isxdigit((unsigned char)*q); q++) {
			if (size > RBUF_MAX)
				return -1;
			size = size * 16 + (size_t)(isdigit((unsigned char)*q) ? *q - '0' :
			    (tolower((unsigned char)*q) - 'a' + 10));
		}
		if (q == line || (q < eol && *q != ';' && *q != ' ' && *q != '\t'))
			return -1;
		if (size == 0) {
			/* last chunk, then trailer lines, then an empty line */
			size_t t = (size_t)(eol + 2 - buf);
			const char *e;
			if (len - t >= 2 && buf[t] == '\r' && buf[t + 1] == '\n')
				return (long)(t + 2);
			if (len - t < 2)
				return 0;
			e = memmem(buf + t, len - t, "\r\n\r\n", 4);
			if (!e)
				return len - t > HDR_MAX ? -1 : 0;
			return (long)(e + 4 - buf);
		}
		if (p->dechunked + size > RBUF_MAX)
			return -1;
		{
			size_t data = (size_t)(eol + 2 - buf);
			if (len < data + size + 2)
				return 0;
			if (buf[data + size] != '\r' || buf[data + size + 1] != '\n')
				return -1;
			p->dechunked += size;
			p->cpos = data + size + 2;
		}
	}
}

/* ---- request templates and pre-signed batches ---------------------------------------- */

struct tpl {
	const troop_identity *id;   /* NULL: unsigned */
	const char *method, *path, *query;  /* query without '?'; NULL: none */
	char *body;                 /* NULL: none; owned */
	size_t body_len;
	const char *expect;         /* substring a 2xx body must hold, or NULL */
};

struct batch {
	size_t n, next;
	char *heads;                /* n slots of SLOT bytes */
	uint16_t *hlen;
	uint32_t *tix;              /* template of each request */
	struct tpl *tpls;
	size_t ntpl, stride;
	int64_t signed_mono;        /* when the first request was signed */
	int fail;                   /* a signing error */
};

static char host_hdr[80];
static FILE *trace_fp;        /* $LOADGEN_TRACE: one line per reply */
static int64_t trace_t0;

/* Render request i of b into its slot, signing it if its template has an
 * identity.  Thread-safe for distinct i. */
static int render_one(struct batch *b, size_t i)
{
	struct tpl *t = &b->tpls[b->tix[i]];
	char *s = b->heads + i * SLOT;
	int n;

	if (t->id) {
		httpsig_headers h;
		if (httpsig_sign(&h, t->id, t->method, t->path, t->query, t->body, t->body_len,
		    (int64_t)time(NULL)) != 0)
			return -1;
		if (t->body)
			n = snprintf(s, SLOT, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n"
			    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
			    "Content-Digest: %s\r\nSignature-Input: %s\r\nSignature: %s\r\n\r\n",
			    t->method, t->path, t->query ? "?" : "", t->query ? t->query : "",
			    host_hdr, t->body_len, h.content_digest, h.signature_input, h.signature);
		else
			n = snprintf(s, SLOT, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n"
			    "Signature-Input: %s\r\nSignature: %s\r\n\r\n",
			    t->method, t->path, t->query ? "?" : "", t->query ? t->query : "",
			    host_hdr, h.signature_input, h.signature);
	} else if (t->body) {
		n = snprintf(s, SLOT, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n"
		    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		    t->method, t->path, t->query ? "?" : "", t->query ? t->query : "",
		    host_hdr, t->body_len);
	} else {
		n = snprintf(s, SLOT, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n\r\n",
		    t->method, t->path, t->query ? "?" : "", t->query ? t->query : "", host_hdr);
	}
	if (n < 0 || n >= SLOT)
		return -1;
	b->hlen[i] = (uint16_t)n;
	return 0;
}

/* Run fn(ctx, i) for i in [0, n) on opt.threads threads. */
typedef int (*each_fn)(void *ctx, size_t i);

struct par {
	each_fn fn;
	void *ctx;
	size_t lo, hi;
	int rc;
};

static void *par_main(void *arg)
{
	struct par *p = arg;

	for (size_t i = p->lo; i < p->hi && p->rc == 0; i++)
		p->rc = p->fn(p->ctx, i);
	return NULL;
}

static int parallel_for(size_t n, each_fn fn, void *ctx)
{
	struct par ps[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	int k = opt.threads, rc = 0;

	for (int j = 0; j < k; j++) {
		ps[j] = (struct par){ fn, ctx, n * (size_t)j / (size_t)k,
			n * (size_t)(j + 1) / (size_t)k, 0 };
		if (pthread_create(&th[j], NULL, par_main, &ps[j]) != 0)
			die("pthread_create failed");
	}
	for (int j = 0; j < k; j++) {
		pthread_join(th[j], NULL);
		if (ps[j].rc)
			rc = ps[j].rc;
	}
	return rc;
}

static int render_each(void *ctx, size_t i)
{
	return render_one(ctx, i);
}

/* A batch of n requests cycling over the templates (template of request i:
 * i * stride mod ntpl; stride must be coprime to ntpl), rendered and
 * signed now.  Prints how long signing took. */
static struct batch *batch_new(struct tpl *tpls, size_t ntpl, size_t n, size_t stride,
    const char *what)
{
	struct batch *b = xcalloc(1, sizeof(*b));
	int64_t t0;

	b->n = n;
	b->tpls = tpls;
	b->ntpl = ntpl;
	b->stride = stride;
	b->heads = xcalloc(n, SLOT);
	b->hlen = xcalloc(n, sizeof(*b->hlen));
	b->tix = xcalloc(n, sizeof(*b->tix));
	for (size_t i = 0; i < n; i++)
		b->tix[i] = (uint32_t)((i * stride) % ntpl);
	t0 = mono_ns();
	b->signed_mono = t0;
	if (parallel_for(n, render_each, b) != 0)
		die("signing %s requests failed", what);
	if (what && tpls[0].id)
		printf("  pre-signed %zu %s requests in %.2f s (%d threads, before the timer "
		    "starts)\n", n, what, (double)(mono_ns() - t0) / 1e9, opt.threads);
	return b;
}

static void batch_free(struct batch *b)
{
	if (!b)
		return;
	free(b->heads);
	free(b->hlen);
	free(b->tix);
	free(b);
}

/* ---- connections and the event loop ----------------------------------------------------- */

struct conn {
	int fd;
	uint32_t gen;              /* bumped on every (re)connect: stale events are skipped */
	bool connecting, busy, want_out;
	char *w;
	size_t wlen, woff, wcap;
	char *r;
	size_t rlen, rcap;
	struct resp rp;
	int64_t origin;            /* latency origin of the request in flight */
	const char *expect;
};

struct phase {
	const char *name;
	bool open;                 /* open loop at `rate` */
	double rate, duration;
	int conns;
	struct batch *b;
	/* results */
	size_t sent, ok, errors, queued;
	int64_t *lat;
	size_t nlat;
	double elapsed, rps, p50, p99, pmax;
	double coord_cpu, gen_cpu;   /* CPU seconds used while the phase ran */
	bool exhausted, stale;
	int err_status;
	char err_body[200];
};

struct loop;
static void idle_remove(struct loop *L, int i);

struct loop {
	int ep, tfd;
	struct conn *c;
	int n;
	int *idle;                 /* FIFO ring of connected, idle connections: */
	int ihead, nidle;          /* requests rotate over all of them */
	struct sockaddr_in addr;
	size_t inflight;
};

static void idle_push(struct loop *L, int i)
{
	L->idle[(L->ihead + L->nidle++) % L->n] = i;
}

static int idle_pop(struct loop *L)
{
	int i = L->idle[L->ihead];

	L->ihead = (L->ihead + 1) % L->n;
	L->nidle--;
	return i;
}

/* Take connection i out of the ring (it broke or closed), keeping the
 * order of the others. */
static void idle_remove(struct loop *L, int i)
{
	int n = L->nidle, kept = 0;

	for (int k = 0; k < n; k++) {
		int v = L->idle[(L->ihead + k) % L->n];
		if (v != i)
			L->idle[(L->ihead + kept++) % L->n] = v;
	}
	L->nidle = kept;
}

static void conn_close(struct loop *L, int i)
{
	struct conn *c = &L->c[i];

	if (c->fd >= 0) {
		epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->busy = c->connecting = c->want_out = false;
	c->rlen = c->wlen = c->woff = 0;
	idle_remove(L, i);
}

static void conn_open(struct loop *L, int i)
{
	struct conn *c = &L->c[i];
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	int one = 1;

	c->gen++;
	ev.data.u64 = (uint64_t)c->gen << 32 | (uint32_t)i;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&L->addr, sizeof(L->addr)) != 0 &&
	    errno != EINPROGRESS)
		die("connect to %s:%d: %s", opt.host, opt.port, strerror(errno));
	c->connecting = true;
	c->want_out = true;
	resp_reset(&c->rp);
	if (epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		die("epoll_ctl: %s", strerror(errno));
}

static void conn_want_out(struct loop *L, int i, bool on)
{
	struct conn *c = &L->c[i];
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0) };

	ev.data.u64 = (uint64_t)c->gen << 32 | (uint32_t)i;
	if (c->want_out == on)
		return;
	c->want_out = on;
	epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void loop_init(struct loop *L, int n)
{
	memset(L, 0, sizeof(*L));
	L->ep = epoll_create1(EPOLL_CLOEXEC);
	L->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (L->ep < 0 || L->tfd < 0)
		die("epoll/timerfd: %s", strerror(errno));
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT32_MAX };
		epoll_ctl(L->ep, EPOLL_CTL_ADD, L->tfd, &ev);
	}
	L->addr.sin_family = AF_INET;
	L->addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &L->addr.sin_addr) != 1)
		die("--host must be an IPv4 address");
	L->n = n;
	L->c = xcalloc((size_t)n, sizeof(*L->c));
	L->idle = xcalloc((size_t)n, sizeof(*L->idle));
	for (int i = 0; i < n; i++) {
		L->c[i].fd = -1;
		conn_open(L, i);
	}
}

static void loop_free(struct loop *L)
{
	for (int i = 0; i < L->n; i++) {
		conn_close(L, i);
		free(L->c[i].w);
		free(L->c[i].r);
	}
	close(L->tfd);
	close(L->ep);
	free(L->c);
	free(L->idle);
}

/* Write what is pending; 0, or -1 when the connection failed. */
static int conn_flush(struct loop *L, int i)
{
	struct conn *c = &L->c[i];

	while (c->woff < c->wlen) {
		ssize_t k = write(c->fd, c->w + c->woff, c->wlen - c->woff);
		if (k > 0) {
			c->woff += (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_want_out(L, i, true);
			return 0;
		}
		return -1;
	}
	conn_want_out(L, i, false);
	return 0;
}

static void record_error(struct phase *P, int status, const char *body, size_t len)
{
	if (P->errors++ == 0) {
		P->err_status = status;
		snprintf(P->err_body, sizeof(P->err_body), "%.*s", (int)(len < 180 ? len : 180),
		    body ? body : "");
	}
}

static void send_request(struct loop *L, struct phase *P, int i, size_t k, int64_t origin)
{
	struct conn *c = &L->c[i];
	struct batch *b = P->b;
	struct tpl *t = &b->tpls[b->tix[k]];
	size_t need = b->hlen[k] + t->body_len;

	if (need > c->wcap) {
		c->wcap = need > 4096 ? need : 4096;
		free(c->w);
		c->w = xcalloc(1, c->wcap);
	}
	memcpy(c->w, b->heads + k * SLOT, b->hlen[k]);
	if (t->body_len)
		memcpy(c->w + b->hlen[k], t->body, t->body_len);
	c->wlen = need;
	c->woff = 0;
	c->busy = true;
	c->origin = origin;
	c->expect = t->expect;
	resp_reset(&c->rp);
	L->inflight++;
	P->sent++;
	if (conn_flush(L, i) != 0) {
		record_error(P, 0, "write failed", 12);
		L->inflight--;
		conn_close(L, i);
		conn_open(L, i);
	}
}

/* A request whose connection broke: count it, reconnect. */
static void conn_broken(struct loop *L, struct phase *P, int i, const char *why)
{
	if (L->c[i].busy) {
		record_error(P, 0, why, strlen(why));
		L->inflight--;
	}
	conn_close(L, i);
	conn_open(L, i);
}

/* Complete response of length `len` at the start of c->r. */
static void on_response(struct loop *L, struct phase *P, int i, size_t len, int64_t now)
{
	struct conn *c = &L->c[i];
	int st = c->rp.status;
	bool good = st >= 200 && st < 300;
	bool close_after = c->rp.close;

	if (!c->busy) {
		conn_broken(L, P, i, "response without a request");
		return;
	}
	if (good && c->expect && !c->rp.chunked &&
	    !memmem(c->r + c->rp.body_off, c->rp.body_len, c->expect, strlen(c->expect)))
		good = false;
	if (good) {
		P->ok++;
		if (trace_fp)
			fprintf(trace_fp, "%s %d %.3f %.3f\n", P->name, i,
			    (double)(c->origin - trace_t0) / 1e6, (double)(now - c->origin) / 1e6);
		P->lat[P->nlat++] = now - c->origin;
	} else {
		record_error(P, st, c->r + c->rp.body_off, c->rp.body_len);
	}
	c->busy = false;
	L->inflight--;
	memmove(c->r, c->r + len, c->rlen - len);
	c->rlen -= len;
	resp_reset(&c->rp);
	if (close_after || c->rlen > 0) {
		conn_close(L, i);
		conn_open(L, i);
		return;
	}
	idle_push(L, i);
}

static void on_readable(struct loop *L, struct phase *P, int i, int64_t *now)
{
	struct conn *c = &L->c[i];
	bool eof = false;

	for (;;) {
		ssize_t k;
		if (c->rcap - c->rlen < 16384) {
			size_t ncap = c->rcap ? c->rcap * 2 : 65536;
			char *nr;
			if (ncap > RBUF_MAX + 65536) {
				conn_broken(L, P, i, "response over the size limit");
				return;
			}
			nr = realloc(c->r, ncap);
			if (!nr)
				die("out of memory");
			c->r = nr;
			c->rcap = ncap;
		}
		k = read(c->fd, c->r + c->rlen, c->rcap - c->rlen);
		if (k > 0) {
			c->rlen += (size_t)k;
			if ((size_t)k < c->rcap - c->rlen + (size_t)k)
				break;   /* short read: the socket is drained */
			continue;
		}
		if (k == 0) {
			eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		conn_broken(L, P, i, strerror(errno));
		return;
	}
	*now = mono_ns();
	while (c->rlen > 0 || eof) {
		long n = resp_parse(&c->rp, c->r, c->rlen, eof);
		if (n < 0) {
			conn_broken(L, P, i, "malformed response");
			return;
		}
		if (n == 0)
			break;
		if (c->rp.status >= 100 && c->rp.status < 200) {
			memmove(c->r, c->r + n, c->rlen - (size_t)n);
			c->rlen -= (size_t)n;
			resp_reset(&c->rp);
			continue;
		}
		on_response(L, P, i, (size_t)n, *now);
		if (L->c[i].fd < 0 || L->c[i].connecting)
			return;
		if (eof)
			break;
	}
	if (eof) {
		if (c->busy)
			conn_broken(L, P, i, "connection closed by the server");
		else {
			conn_close(L, i);
			conn_open(L, i);
		}
	}
}

static void on_writable(struct loop *L, struct phase *P, int i)
{
	struct conn *c = &L->c[i];

	if (c->connecting) {
		int err = 0;
		socklen_t sl = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err != 0)
			die("connect to %s:%d: %s", opt.host, opt.port, strerror(err));
		c->connecting = false;
		conn_want_out(L, i, false);
		idle_push(L, i);
		return;
	}
	if (c->busy && conn_flush(L, i) != 0)
		conn_broken(L, P, i, "write failed");
}

static void arm_timer(struct loop *L, int64_t at_ns)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (at_ns > 0) {
		its.it_value.tv_sec = at_ns / 1000000000;
		its.it_value.tv_nsec = at_ns % 1000000000;
	}
	timerfd_settime(L->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static double pct_ms(const int64_t *v, size_t n, double q)
{
	size_t k;

	if (n == 0)
		return NAN;
	k = (size_t)ceil(q * (double)n);
	k = k == 0 ? 0 : k - 1;
	if (k >= n)
		k = n - 1;
	return (double)v[k] / 1e6;
}

/* Run one phase on fresh connections.  Closed loop: each connection sends
 * its next request as soon as the previous reply is in, for `duration`.
 * Open loop: request k is due at t0 + k/rate and goes out on any idle
 * connection (waiting in a queue when none is), latency counted from t0 +
 * k/rate. */
static void run_phase(struct phase *P)
{
	struct loop L;
	struct epoll_event evs[256];
	size_t total, k = 0;
	int64_t t0, deadline, now, last = 0;
	double gap_ns = 0;
	bool stop = false;

	loop_init(&L, P->conns);
	/* connect everything before the clock starts */
	while (L.nidle < L.n) {
		int ne = epoll_wait(L.ep, evs, 256, 5000);
		if (ne == 0)
			die("connecting to %s:%d timed out", opt.host, opt.port);
		for (int e = 0; e < ne; e++) {
			uint32_t i = (uint32_t)evs[e].data.u64;
			if (evs[e].data.u64 != UINT32_MAX && L.c[i].gen == evs[e].data.u64 >> 32 &&
			    L.c[i].connecting && (evs[e].events & (EPOLLOUT | EPOLLERR)))
				on_writable(&L, P, (int)i);
		}
	}
	total = P->b->n;
	if (P->open) {
		gap_ns = 1e9 / P->rate;
		if ((double)total > P->rate * P->duration)
			total = (size_t)(P->rate * P->duration);
	}
	P->lat = xcalloc(total, sizeof(*P->lat));
	now = mono_ns();
	t0 = now + 1000000;
	deadline = t0 + (int64_t)(P->duration * 1e9);
	if ((now - P->b->signed_mono) / 1000000000 >= MAX_AGE_S)
		die("phase %s: its batch is already %d s old", P->name, MAX_AGE_S);
	while (mono_ns() < t0)
		;
	now = t0;
	trace_t0 = t0;
	P->coord_cpu = -bench_proc_cpu_s(opt.coord_pid);
	P->gen_cpu = -bench_self_cpu_s();
	last = t0;
	for (;;) {
		int timeout = -1, ne;
		/* issue */
		if (!stop) {
			if ((now - P->b->signed_mono) / 1000000000 >= MAX_AGE_S) {
				P->stale = true;
				stop = true;
			} else if (P->open) {
				while (k < total && t0 + (int64_t)((double)k * gap_ns) <= now) {
					if (L.nidle == 0) {
						break;
					}
					if (now - (t0 + (int64_t)((double)k * gap_ns)) > 1000000)
						P->queued++;
					send_request(&L, P, idle_pop(&L), k,
					    t0 + (int64_t)((double)k * gap_ns));
					k++;
				}
				if (k >= total)
					stop = true;
				else if (L.nidle > 0)
					arm_timer(&L, t0 + (int64_t)((double)k * gap_ns));
			} else {
				if (now >= deadline) {
					stop = true;
				} else {
					while (L.nidle > 0 && k < total) {
						send_request(&L, P, idle_pop(&L), k, mono_ns());
						k++;
					}
					if (k >= total) {
						P->exhausted = true;
						stop = true;
					}
				}
			}
		}
		if (stop && L.inflight == 0)
			break;
		if (stop) {
			int64_t left = deadline + (int64_t)DRAIN_S * 1000000000 - now;
			if (left <= 0) {
				for (int i = 0; i < L.n; i++)
					if (L.c[i].busy)
						conn_broken(&L, P, i, "no reply in time");
				break;
			}
			timeout = left > 1000000000 ? 1000 : (int)(left / 1000000) + 1;
		} else if (!P->open) {
			int64_t left = deadline - now;
			timeout = left > 1000000000 ? 1000 : (int)(left / 1000000) + 1;
		}
		ne = epoll_wait(L.ep, evs, 256, timeout);
		if (ne < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		now = mono_ns();
		for (int e = 0; e < ne; e++) {
			uint32_t i = (uint32_t)evs[e].data.u64, gen = (uint32_t)(evs[e].data.u64 >> 32);
			if (evs[e].data.u64 == UINT32_MAX) {
				uint64_t x;
				if (read(L.tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
					die("timerfd: %s", strerror(errno));
				continue;
			}
			/* an event for a socket closed earlier in this batch */
			if (L.c[i].fd < 0 || L.c[i].gen != gen)
				continue;
			if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				size_t before = P->ok + P->errors;
				on_readable(&L, P, (int)i, &now);
				if (P->ok + P->errors != before)
					last = now;
			}
			if (L.c[i].fd >= 0 && L.c[i].gen == gen && (evs[e].events & EPOLLOUT))
				on_writable(&L, P, (int)i);
		}
	}
	P->coord_cpu += bench_proc_cpu_s(opt.coord_pid);
	P->gen_cpu += bench_self_cpu_s();
	P->elapsed = (double)(last - t0) / 1e9;
	if (P->elapsed <= 0)
		P->elapsed = 1e-9;
	P->rps = (double)(P->ok + P->errors) / P->elapsed;
	qsort(P->lat, P->nlat, sizeof(*P->lat), cmp_i64);
	P->p50 = pct_ms(P->lat, P->nlat, 0.50);
	P->p99 = pct_ms(P->lat, P->nlat, 0.99);
	P->pmax = P->nlat ? (double)P->lat[P->nlat - 1] / 1e6 : NAN;
	free(P->lat);
	P->lat = NULL;
	loop_free(&L);
}

static void print_phase(const struct phase *P)
{
	printf("  %-16s %-6s %5d conns %8zu req %6zu err %9.0f req/s  p50 %7.3f ms  "
	    "p99 %7.3f ms  max %8.3f ms\n", P->name, P->open ? "open" : "closed", P->conns,
	    P->ok + P->errors, P->errors, P->rps, P->p50, P->p99, P->pmax);
	if (P->open)
		printf("  %-16s offered %.0f req/s for %.1f s; %zu requests waited > 1 ms for a free "
		    "connection\n", "", P->rate, P->duration, P->queued);
	if (opt.coord_pid && P->ok + P->errors > 0 && P->duration < 1e5) {
		printf("  %-16s CPU: coordinator %.2f cores (%.0f us per request), loadgen %.2f "
		    "cores\n", "", P->coord_cpu / P->elapsed,
		    P->coord_cpu / (double)(P->ok + P->errors) * 1e6, P->gen_cpu / P->elapsed);
	}
	if (P->exhausted && P->duration < 1e5)
		printf("  %-16s (the pre-signed batch ran out before %.1f s: the rate is at least "
		    "this)\n", "", P->duration);
	if (P->stale)
		printf("  %-16s (stopped early: the batch's signatures reached %d s of age)\n", "",
		    MAX_AGE_S);
	if (P->errors)
		printf("  %-16s first error: status %d %s\n", "", P->err_status, P->err_body);
	fflush(stdout);
}

/* Send every request of b once (closed loop, untimed figures), dying if
 * more than `max_err` fail. */
static void run_all(struct phase *P, size_t max_err)
{
	P->duration = 1e6;
	run_phase(P);
	print_phase(P);
	if (P->errors > max_err)
		die("%s: %zu of %zu requests failed", P->name, P->errors, P->ok + P->errors);
}

/* ---- bodies ------------------------------------------------------------------------------ */

static void rand_b64url(char *out, size_t cap, size_t nbytes)
{
	unsigned char raw[64];

	randombytes_buf(raw, nbytes);
	b64url_encode(out, cap, raw, nbytes);
}

/* A heartbeat body as DESIGN.md section 6 shows it. */
static char *heartbeat_body(size_t *len, const troop_identity *id, int serial,
    const char *model, int max_jobs)
{
	char enc[64], hash[72], *s;
	unsigned char h[32];
	int n;

	rand_b64url(enc, sizeof(enc), 32);
	crypto_hash_sha256(h, (const unsigned char *)model, strlen(model));
	memcpy(hash, "sha256:", 7);
	for (int i = 0; i < 32; i++)
		snprintf(hash + 7 + 2 * i, 3, "%02x", h[i]);
	s = xcalloc(1, 1024);
	n = snprintf(s, 1024,
	    "{\"node_id\":\"%s\",\"name\":\"bench-%06d\",\"tailscale_ip\":\"100.%d.%d.%d\","
	    "\"port\":8421,\"status\":\"IDLE\",\"models\":[{\"name\":\"%s\","
	    "\"content_hash\":\"%s\",\"size_bytes\":4661224676,\"engine\":\"ollama\"}],"
	    "\"hardware\":{\"gpu\":\"NVIDIA GeForce RTX 4090\",\"gpu_count\":1,"
	    "\"vram_total\":24564,\"vram_free\":20480,\"gpu_util\":3},"
	    "\"engines\":[{\"type\":\"ollama\",\"version\":\"0.6.2\",\"port\":11434}],"
	    "\"encryption_public_key\":\"%s\",\"load\":{\"active_jobs\":0,\"max_jobs\":%d},"
	    "\"version\":\"troop/0.1.0\"}",
	    id->id, serial, 64 + (serial >> 16) % 64, (serial >> 8) & 255, serial & 255, model,
	    hash, enc, max_jobs);
	if (n < 0 || n >= 1024)
		die("heartbeat body too long");
	*len = (size_t)n;
	return s;
}

static void heartbeat_tpl(struct tpl *t, const troop_identity *id, int serial,
    const char *model, int max_jobs)
{
	t->id = id;
	t->method = "POST";
	t->path = "/heartbeat";
	t->query = NULL;
	t->body = heartbeat_body(&t->body_len, id, serial, model, max_jobs);
	t->expect = "\"seen\"";
}

static void tpls_free(struct tpl *t, size_t n)
{
	for (size_t i = 0; t && i < n; i++)
		free(t[i].body);
	free(t);
}

static int gen_identity(void *ctx, size_t i)
{
	return identity_generate(&((troop_identity *)ctx)[i]);
}

static troop_identity *identities(size_t n)
{
	troop_identity *ids = sodium_allocarray(n ? n : 1, sizeof(*ids));

	if (!ids)
		die("out of memory for %zu identities", n);
	if (parallel_for(n, gen_identity, ids) != 0)
		die("identity_generate failed");
	return ids;
}

static void identities_free(troop_identity *ids)
{
	sodium_free(ids);   /* zeroes the memory */
}

/* Single-thread Ed25519 verifies/s over ~0.3 s: how much CPU this machine
 * gives right now (other work on it slows every figure down alike). */
static double calibrate(void)
{
	troop_identity id;
	unsigned char sig[64];
	static const unsigned char msg[256];
	int64_t t0, t;
	long n = 0;

	if (identity_generate(&id) != 0)
		return 0;
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), id.sk);
	t0 = mono_ns();
	do {
		for (int i = 0; i < 32; i++)
			if (crypto_sign_verify_detached(sig, msg, sizeof(msg), id.pk) != 0)
				die("calibration verify failed");
		n += 32;
		t = mono_ns();
	} while (t - t0 < 300000000);
	identity_wipe(&id);
	return (double)n / ((double)(t - t0) / 1e9);
}

static double calib_before, load_before;

static void print_calibration(const char *when)
{
	double l1 = 0, v;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &l1) != 1)
			l1 = 0;
		fclose(f);
	}
	v = calibrate();
	printf("machine %s: %.0f Ed25519 verifies/s on one thread, load average %.2f\n", when,
	    v, l1);
	if (calib_before == 0) {
		calib_before = v;
		load_before = l1;
	} else {
		/* the same figure other benchmarks' ratios depend on: shows a busy machine */
		printf("RESULT coordinator machine: %.0f / %.0f Ed25519 verifies/s on one thread "
		    "before / after, load average %.2f / %.2f\n", calib_before, v, load_before, l1);
	}
	fflush(stdout);
}

/* ---- results ----------------------------------------------------------------------------- */

struct result {
	const char *what, *unit, *cmp;
	double value, target;
	bool have;
};

static struct result results[16];
static int nresults;

static void add_result(const char *what, double value, const char *unit, const char *cmp,
    double target)
{
	results[nresults++] = (struct result){ what, unit, cmp, value, target, !isnan(value) };
}

static bool result_pass(const struct result *r)
{
	if (!r->have || !r->cmp)
		return false;
	return strcmp(r->cmp, ">=") == 0 ? r->value >= r->target : r->value < r->target;
}

/* ---- main -------------------------------------------------------------------------------- */

static void usage(void)
{
	printf("usage: loadgen --port N [options]\n"
	    "       loadgen --selftest\n"
	    "  --host A            coordinator address (127.0.0.1)\n"
	    "  --conns N           connections, heartbeat/authorize phases (%d)\n"
	    "  --duration S        seconds per timed phase (%.1f)\n"
	    "  --nodes N           heartbeating node identities (%d)\n"
	    "  --users N           authorizing user identities (%d)\n"
	    "  --auth-nodes N      nodes serving the authorize model, max_jobs 0 (%d)\n"
	    "  --peer-nodes N      nodes registered for the /peers phase (%d)\n"
	    "  --peer-models N     models spread over them (%d)\n"
	    "  --peer-conns N      connections of the /peers phases (%d)\n"
	    "  --hb-open-rate R    open-loop heartbeats/s (half the target)\n"
	    "  --auth-open-rate R  open-loop authorizations/s (half the target)\n"
	    "  --threads N         signing threads (cores)\n"
	    "  --coord-pid P       report the CPU time process P used in each phase\n"
	    "  --phases LIST       of heartbeat,authorize,heartbeat-open,authorize-open,peers\n",
	    opt.conns, opt.duration, opt.hb_nodes, opt.users, opt.auth_nodes, opt.peer_nodes,
	    opt.peer_models, opt.peer_conns);
}

static int selftest(void);

static double num_arg(const char *flag, const char *v, double lo, double hi)
{
	char *end;
	double x = v ? strtod(v, &end) : NAN;

	if (!v || *v == '\0' || *end || !(x >= lo && x <= hi))
		die("%s needs a number from %g to %g", flag, lo, hi);
	return x;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--selftest") == 0)
			exit(selftest());
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage();
			exit(0);
		}
		i++;
		if (strcmp(a, "--host") == 0 && v)
			opt.host = v;
		else if (strcmp(a, "--port") == 0)
			opt.port = (int)num_arg(a, v, 1, 65535);
		else if (strcmp(a, "--conns") == 0)
			opt.conns = (int)num_arg(a, v, 1, 4000);
		else if (strcmp(a, "--duration") == 0)
			opt.duration = num_arg(a, v, 0.1, 50);
		else if (strcmp(a, "--nodes") == 0)
			opt.hb_nodes = (int)num_arg(a, v, 1, 1000000);
		else if (strcmp(a, "--users") == 0)
			opt.users = (int)num_arg(a, v, 1, 1000000);
		else if (strcmp(a, "--auth-nodes") == 0)
			opt.auth_nodes = (int)num_arg(a, v, 1, 64);
		else if (strcmp(a, "--peer-nodes") == 0)
			opt.peer_nodes = (int)num_arg(a, v, 1, 4000000);
		else if (strcmp(a, "--peer-models") == 0)
			opt.peer_models = (int)num_arg(a, v, 1, 100000);
		else if (strcmp(a, "--peer-conns") == 0)
			opt.peer_conns = (int)num_arg(a, v, 1, 4000);
		else if (strcmp(a, "--hb-open-rate") == 0)
			opt.hb_open_rate = num_arg(a, v, 1, 1e6);
		else if (strcmp(a, "--auth-open-rate") == 0)
			opt.auth_open_rate = num_arg(a, v, 1, 1e6);
		else if (strcmp(a, "--threads") == 0)
			opt.threads = (int)num_arg(a, v, 1, MAX_THREADS);
		else if (strcmp(a, "--coord-pid") == 0)
			opt.coord_pid = (int)num_arg(a, v, 1, 1e9);
		else if (strcmp(a, "--phases") == 0 && v)
			opt.phases = v;
		else {
			usage();
			die("unknown or incomplete option %s", a);
		}
	}
	if (opt.port == 0)
		die("--port is required");
	if (opt.threads == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		opt.threads = c < 1 ? 1 : c > MAX_THREADS ? MAX_THREADS : (int)c;
	}
	if (opt.hb_open_rate == 0)
		opt.hb_open_rate = opt.hb_target / 2;
	if (opt.auth_open_rate == 0)
		opt.auth_open_rate = opt.auth_target / 2;
}

static size_t cap_n(double rate)
{
	return (size_t)(rate * opt.duration) + 1;
}

/* Register count nodes with heartbeats, in chunks signed just before they
 * are sent; node i serves model "bench-peers-<i % models>". */
static void register_peer_nodes(int count, int models)
{
	const size_t chunk = 25000;
	int64_t t0 = mono_ns();
	size_t done = 0, errors = 0;

	printf("  registering %d nodes serving %d models (heartbeats signed in chunks of %zu "
	    "just before sending; identity and signing time included in this rate)\n", count,
	    models, chunk);
	fflush(stdout);
	while (done < (size_t)count) {
		size_t n = (size_t)count - done < chunk ? (size_t)count - done : chunk;
		troop_identity *ids = identities(n);
		struct tpl *tp = xcalloc(n, sizeof(*tp));
		struct batch *b;
		struct phase P = { .name = "register", .conns = opt.conns };
		for (size_t i = 0; i < n; i++) {
			char model[64];
			snprintf(model, sizeof(model), "bench-peers-%04d",
			    (int)((done + i) % (size_t)models));
			heartbeat_tpl(&tp[i], &ids[i], (int)(done + i), model, 4);
		}
		b = batch_new(tp, n, n, 1, NULL);
		P.b = b;
		P.duration = 1e6;
		run_phase(&P);
		errors += P.errors;
		if (P.errors)
			printf("  register: %zu errors, first: status %d %s\n", P.errors, P.err_status,
			    P.err_body);
		batch_free(b);
		tpls_free(tp, n);
		identities_free(ids);
		done += n;
	}
	printf("  registered %zu nodes in %.1f s, %zu errors\n", done,
	    (double)(mono_ns() - t0) / 1e9, errors);
	if (errors > done / 100)
		die("registering nodes failed");
}

int main(int argc, char **argv)
{
	troop_identity *nodes = NULL, *users = NULL, *anodes = NULL;
	struct tpl *hb = NULL, *auth = NULL, *ahb = NULL;
	struct phase ph_hb = { .name = "heartbeat" }, ph_auth = { .name = "authorize" };
	struct phase ph_hbo = { .name = "heartbeat-open" }, ph_autho = { .name = "authorize-open" };
	struct phase ph_pmax = { .name = "peers" }, ph_popen = { .name = "peers-open" };
	struct phase ph_pser = { .name = "peers-serial" }, ph_psame = { .name = "peers-same" };
	bool want_hb, want_auth, want_hbo, want_autho, want_peers;
	int fails = 0;

	if (sodium_init() < 0)
		die("sodium_init failed");
	parse_args(argc, argv);
	if (getenv("LOADGEN_TRACE") && !(trace_fp = fopen(getenv("LOADGEN_TRACE"), "w")))
		die("cannot write %s", getenv("LOADGEN_TRACE"));
	snprintf(host_hdr, sizeof(host_hdr), "%s:%d", opt.host, opt.port);
	want_hb = phase_wanted("heartbeat");
	want_auth = phase_wanted("authorize");
	want_hbo = phase_wanted("heartbeat-open");
	want_autho = phase_wanted("authorize-open");
	want_peers = phase_wanted("peers");

	printf("loadgen: coordinator %s:%d, %d signing threads; requests of each timed phase "
	    "are signed in a batch before its timer starts\n", opt.host, opt.port, opt.threads);

	/* identities and bodies */
	nodes = identities((size_t)opt.hb_nodes);
	hb = xcalloc((size_t)opt.hb_nodes, sizeof(*hb));
	for (int i = 0; i < opt.hb_nodes; i++) {
		char model[64];
		snprintf(model, sizeof(model), "bench-hb-%02d", i % 20);
		heartbeat_tpl(&hb[i], &nodes[i], i, model, 4);
	}
	anodes = identities((size_t)opt.auth_nodes);
	ahb = xcalloc((size_t)opt.auth_nodes, sizeof(*ahb));
	for (int i = 0; i < opt.auth_nodes; i++)
		heartbeat_tpl(&ahb[i], &anodes[i], 4100000 + i, "bench-auth-model", 0);
	users = identities((size_t)opt.users);
	auth = xcalloc((size_t)opt.users, sizeof(*auth));
	for (int i = 0; i < opt.users; i++) {
		auth[i].id = &users[i];
		auth[i].method = "POST";
		auth[i].path = "/authorize";
		auth[i].body = strdup("{\"model\":\"bench-auth-model\",\"max_seconds\":120}");
		if (!auth[i].body)
			die("out of memory");
		auth[i].body_len = strlen(auth[i].body);
		auth[i].expect = "\"job_id\"";
	}

	print_calibration("before");

	/* untimed set-up: every node heartbeats once (its ledger row is created),
	 * every user authorizes once (its account is created) */
	printf("set-up (untimed):\n");
	if (want_hb || want_hbo) {
		struct phase P = { .name = "first heartbeat", .conns = opt.conns };
		P.b = batch_new(hb, (size_t)opt.hb_nodes, (size_t)opt.hb_nodes, 1, NULL);
		run_all(&P, 0);
		batch_free(P.b);
	}
	if (want_auth || want_autho) {
		struct phase P = { .name = "auth nodes", .conns = opt.auth_nodes };
		struct phase U = { .name = "first authorize", .conns = opt.conns };
		P.b = batch_new(ahb, (size_t)opt.auth_nodes, (size_t)opt.auth_nodes, 1, NULL);
		run_all(&P, 0);
		batch_free(P.b);
		U.b = batch_new(auth, (size_t)opt.users, (size_t)opt.users, 1, NULL);
		run_all(&U, 0);
		batch_free(U.b);
	}

	printf("timed phases (%.1f s each):\n", opt.duration);
	if (want_hb) {
		ph_hb.conns = opt.conns;
		ph_hb.duration = opt.duration;
		ph_hb.b = batch_new(hb, (size_t)opt.hb_nodes, cap_n(opt.hb_cap), 1, "heartbeat");
		run_phase(&ph_hb);
		print_phase(&ph_hb);
		batch_free(ph_hb.b);
	}
	if (want_auth) {
		ph_auth.conns = opt.conns;
		ph_auth.duration = opt.duration;
		ph_auth.b = batch_new(auth, (size_t)opt.users, cap_n(opt.auth_cap), 1, "authorize");
		run_phase(&ph_auth);
		print_phase(&ph_auth);
		batch_free(ph_auth.b);
	}
	if (want_hbo) {
		ph_hbo.open = true;
		ph_hbo.rate = opt.hb_open_rate;
		ph_hbo.conns = opt.conns;
		ph_hbo.duration = opt.duration;
		ph_hbo.b = batch_new(hb, (size_t)opt.hb_nodes, cap_n(ph_hbo.rate), 1, "heartbeat");
		run_phase(&ph_hbo);
		print_phase(&ph_hbo);
		batch_free(ph_hbo.b);
	}
	if (want_autho) {
		ph_autho.open = true;
		ph_autho.rate = opt.auth_open_rate;
		ph_autho.conns = opt.conns;
		ph_autho.duration = opt.duration;
		ph_autho.b = batch_new(auth, (size_t)opt.users, cap_n(ph_autho.rate), 1, "authorize");
		run_phase(&ph_autho);
		print_phase(&ph_autho);
		batch_free(ph_autho.b);
	}
	if (want_peers) {
		struct tpl *pt = xcalloc((size_t)opt.peer_models, sizeof(*pt));
		char (*q)[48] = xcalloc((size_t)opt.peer_models, sizeof(*q));
		size_t stride = 7919;
		while (opt.peer_models % (int)stride == 0)
			stride++;
		register_peer_nodes(opt.peer_nodes, opt.peer_models);
		for (int i = 0; i < opt.peer_models; i++) {
			snprintf(q[i], sizeof(q[i]), "model=bench-peers-%04d", i);
			pt[i] = (struct tpl){ NULL, "GET", "/peers", q[i], NULL, 0, "\"nodes\"" };
		}
		/* one request at a time: the service time with no queueing */
		ph_pser.conns = 1;
		ph_pser.duration = opt.duration / 2;
		ph_pser.b = batch_new(pt, (size_t)opt.peer_models, cap_n(20000), stride, NULL);
		run_phase(&ph_pser);
		print_phase(&ph_pser);
		batch_free(ph_pser.b);
		ph_pmax.conns = opt.peer_conns;
		ph_pmax.duration = opt.duration;
		ph_pmax.b = batch_new(pt, (size_t)opt.peer_models, cap_n(100000), stride, NULL);
		run_phase(&ph_pmax);
		print_phase(&ph_pmax);
		batch_free(ph_pmax.b);
		ph_popen.open = true;
		ph_popen.rate = floor(ph_pmax.rps / 2) > 1 ? floor(ph_pmax.rps / 2) : 1;
		ph_popen.conns = opt.peer_conns;
		ph_popen.duration = opt.duration;
		ph_popen.b = batch_new(pt, (size_t)opt.peer_models, cap_n(ph_popen.rate), stride, NULL);
		run_phase(&ph_popen);
		print_phase(&ph_popen);
		batch_free(ph_popen.b);
		/* a burst of one request (one model), closed loop: what a cached
		 * reply serves */
		ph_psame.conns = opt.peer_conns;
		ph_psame.duration = opt.duration / 2;
		ph_psame.b = batch_new(pt, 1, cap_n(100000), 1, NULL);
		run_phase(&ph_psame);
		print_phase(&ph_psame);
		batch_free(ph_psame.b);
		free(pt);
		free(q);
	}

	print_calibration("after");
	if (want_hb)
		add_result("heartbeats/s (closed loop)", ph_hb.rps, "req/s", ">=", opt.hb_target);
	if (want_auth)
		add_result("authorizations/s (closed loop)", ph_auth.rps, "req/s", ">=",
		    opt.auth_target);
	if (want_hbo)
		add_result("heartbeat p99 at open-loop rate", ph_hbo.p99, "ms", "<", opt.open_p99);
	if (want_autho)
		add_result("authorize p99 at open-loop rate", ph_autho.p99, "ms", "<", opt.open_p99);
	if (want_peers) {
		add_result("GET /peers p99, open loop", ph_popen.p99, "ms", "<", opt.peers_p99);
		add_result("GET /peers p99, one at a time", ph_pser.p99, "ms", NULL, 0);
		add_result("GET /peers/s (closed loop)", ph_pmax.rps, "req/s", NULL, 0);
		add_result("GET /peers p50, one at a time", ph_pser.p50, "ms", NULL, 0);
		add_result("GET /peers/s, one model (closed loop)", ph_psame.rps, "req/s", NULL, 0);
		add_result("GET /peers p99, one model", ph_psame.p99, "ms", NULL, 0);
	}

	printf("\n%-34s %12s %12s   %s\n", "coordinator benchmark", "measured", "target", "");
	for (int i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		int prec = strcmp(r->unit, "ms") ? 0 : 3;
		if (r->cmp)
			printf("%-34s %12.*f %3s %8.0f %-5s   %s\n", r->what, prec, r->value, r->cmp,
			    r->target, r->unit, result_pass(r) ? "PASS" : "MISS");
		else
			printf("%-34s %12.*f %12s %-5s   %s\n", r->what, prec, r->value, "-", r->unit,
			    "(info)");
	}
	if (want_hbo || want_autho || want_peers)
		printf("(open-loop rates: heartbeat %.0f/s, authorize %.0f/s, peers %.0f/s = half "
		    "the closed-loop peers rate; %d models x ~%d nodes each)\n", ph_hbo.rate,
		    ph_autho.rate, ph_popen.rate, opt.peer_models, opt.peer_nodes / opt.peer_models);
	for (int i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		int prec = strcmp(r->unit, "ms") ? 0 : 3;
		if (r->cmp)
			printf("RESULT coordinator %s: %.*f %s (target %s %.0f) %s\n", r->what, prec,
			    r->value, r->unit, r->cmp, r->target, result_pass(r) ? "PASS" : "MISS");
		else
			printf("RESULT coordinator %s: %.*f %s\n", r->what, prec, r->value, r->unit);
	}
	{
		size_t errs = ph_hb.errors + ph_auth.errors + ph_hbo.errors + ph_autho.errors +
		    ph_pser.errors + ph_pmax.errors + ph_popen.errors + ph_psame.errors;
		printf("RESULT coordinator errors in timed phases: %zu\n", errs);
		/* a phase that got no answer at all did not measure anything */
		fails = (want_hb && ph_hb.ok == 0) || (want_auth && ph_auth.ok == 0) ||
		    (want_hbo && ph_hbo.ok == 0) || (want_autho && ph_autho.ok == 0) ||
		    (want_peers && ph_popen.ok == 0);
	}

	tpls_free(hb, (size_t)opt.hb_nodes);
	tpls_free(ahb, (size_t)opt.auth_nodes);
	tpls_free(auth, (size_t)opt.users);
	identities_free(nodes);
	identities_free(anodes);
	identities_free(users);
	return fails ? 2 : 0;
}

/* ---- self test of the response reader ----------------------------------------------------- */

struct case_ {
	const char *raw;
	int status;       /* of the first response; -1: malformed */
	size_t body_len;  /* dechunked */
};

static const struct case_ cases[] = {
	{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, 5 },
	{ "HTTP/1.1 404 Not Found\r\ncontent-length:   2  \r\nX: y\r\n\r\n{}", 404, 2 },
	{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n", 200, 16 },
	{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n"
	  "3\r\nabc\r\n0\r\nTrailer: x\r\nMore: y\r\n\r\n", 200, 3 },
	{ "HTTP/1.1 204 No Content\r\n\r\n", 204, 0 },
	{ "HTTP/1.1 100 Continue\r\n\r\n", 100, 0 },
	{ "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", 200, 13 },
	{ "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", -1, 0 },
	{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", -1, 0 },
	{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", -1, 0 },
	{ "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", -1, 0 },
	{ "HTTP/2 200\r\n\r\n", -1, 0 },
	{ "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", -1, 0 },
};

/* Feed raw (+ a second response after it) in two pieces split at every
 * offset; the first response must come out the same each time. */
static int selftest(void)
{
	static const char next[] = "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nxyz";
	int bad = 0, checks = 0;

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct case_ *t = &cases[c];
		size_t rl = strlen(t->raw);
		bool until_close = strstr(t->raw, "Connection: close") != NULL;
		char buf[1024];
		size_t total = rl;

		memcpy(buf, t->raw, rl);
		if (!until_close && t->status > 0) {
			memcpy(buf + rl, next, sizeof(next) - 1);
			total += sizeof(next) - 1;
		}
		for (size_t split = 0; split <= total; split++) {
			struct resp p;
			long n = 0;
			size_t body;
			resp_reset(&p);
			if (split > 0)
				n = resp_parse(&p, buf, split, false);
			if (n == 0)
				n = resp_parse(&p, buf, total, until_close);
			checks++;
			if (t->status < 0) {
				/* malformed: refused once enough of it is there */
				if (n >= 0 && split >= rl) {
					fprintf(stderr, "selftest case %zu split %zu: accepted malformed "
					    "(n=%ld)\n", c, split, n);
					bad++;
				}
				continue;
			}
			body = p.chunked ? p.dechunked : p.body_len;
			if (n != (long)rl || p.status != t->status || body != t->body_len) {
				fprintf(stderr, "selftest case %zu split %zu: n=%ld (want %zu) status=%d "
				    "body=%zu (want %zu)\n", c, split, n, rl, p.status, body, t->body_len);
				bad++;
				continue;
			}
			if (total > rl) {
				struct resp q;
				resp_reset(&q);
				n = resp_parse(&q, buf + rl, total - rl, false);
				if (n != (long)(total - rl) || q.status != 201 || q.body_len != 3) {
					fprintf(stderr, "selftest case %zu: second response n=%ld\n", c, n);
					bad++;
				}
			}
		}
	}
	printf("loadgen selftest: %d checks, %d failures\n", checks, bad);
	return bad ? 1 : 0;
}
