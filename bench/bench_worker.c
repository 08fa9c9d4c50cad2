/*
 * bench_worker.c - the worker proxy against the engine simulator called
 * directly, in one run, with the same client for both: a raw HTTP/1.1
 * client on keep-alive sockets (chunked decoding, timestamps per read).
 * Built and run by bench/bench_worker.sh, which starts the processes; not
 * part of the test suite.
 *
 *   ttfb      time from writing a streamed request (max_tokens 1) to the
 *             first SSE event, N times, direct and through the worker
 *             alternately; p50 / p90 of each and the added p50
 *   stream    one long unpaced stream at a time (the simulator writes as
 *             fast as the client reads): events per second, direct and
 *             proxied alternately, median of 5 each
 *   per-event a paced stream (200 tokens/s): for each event, arrival time
 *             minus its place in the schedule; the median, direct and
 *             proxied; the difference is the latency the proxy adds to
 *             every event of a stream
 *
 * Tickets are minted with the coordinator's key (its --ticket-key file),
 * so /authorize and the escrow stay out of the measured path.
 *
 * usage: bench_worker SIM_PORT PACED_PORT WORKER_PORT TICKET_KEY WORKER_KEY [N]
 * (TICKET_KEY: the coordinator's key file; WORKER_KEY: the worker's
 * identity file, for its node id)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "identity.h"
#include "ticket.h"

#define MODEL "llama3:8b"
#define PACED_MODEL "paced:1b"
#define MAX_EVENTS 1100000

static troop_identity key;
static char node_id[TROOP_ID_LEN + 1];

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[(int)(p * (n - 1) + 0.5)];
}

static char *mint(const char *model)
{
	ticket_claims cl;
	char *tok = NULL;
	int64_t now = time(NULL);

	memset(&cl, 0, sizeof(cl));
	snprintf(cl.sub, sizeof(cl.sub), "%s", key.id);
	snprintf(cl.iss, sizeof(cl.iss), "%s", key.id);
	snprintf(cl.target_node, sizeof(cl.target_node), "%s", node_id);
	snprintf(cl.model, sizeof(cl.model), "%s", model);
	ticket_new_jti(cl.jti);
	cl.iat = now;
	cl.exp = now + 300;
	cl.max_seconds = 600;
	if (ticket_sign(&tok, &cl, &key) != 0) {
		fprintf(stderr, "bench_worker: cannot sign a ticket\n");
		exit(1);
	}
	return tok;
}

/* ---- a keep-alive HTTP/1.1 client ------------------------------------------------- */

struct conn {
	int port;
	int fd;
	char buf[1 << 17];
	size_t off, have;
};

static void conn_open(struct conn *c)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)c->port);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		fprintf(stderr, "bench_worker: connect to port %d: %s\n", c->port, strerror(errno));
		exit(1);
	}
	c->off = c->have = 0;
}

/* More bytes into the buffer; returns the time they came. */
static double conn_fill(struct conn *c)
{
	ssize_t k;

	if (c->off == c->have)
		c->off = c->have = 0;
	if (c->have == sizeof(c->buf)) {
		memmove(c->buf, c->buf + c->off, c->have - c->off);
		c->have -= c->off;
		c->off = 0;
	}
	do
		k = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, 0);
	while (k < 0 && errno == EINTR);
	if (k <= 0) {
		fprintf(stderr, "bench_worker: connection to port %d closed\n", c->port);
		exit(1);
	}
	c->have += (size_t)k;
	return now_us();
}

/* A line (without CRLF) from the buffer, reading as needed. */
static char *conn_line(struct conn *c, double *t)
{
	for (;;) {
		char *s = c->buf + c->off;
		char *e = memmem(s, c->have - c->off, "\r\n", 2);
		if (e) {
			*e = '\0';
			c->off = (size_t)(e + 2 - c->buf);
			return s;
		}
		*t = conn_fill(c);
	}
}

typedef void (*event_fn)(void *arg, double t);

/* Send a streamed request, read the chunked reply; on_event per SSE event
 * ("\n\n") with the time of the read that completed it.  Returns the time
 * of sending. */
static double request(struct conn *c, const char *token, const char *body, event_fn on_event,
    void *arg)
{
	char head[8192];
	double t0, t = 0;
	int n, status = 0;
	bool chunked = false;
	char prev = 0;

	n = snprintf(head, sizeof(head), "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
	    "Content-Type: application/json\r\n%s%s%sContent-Length: %zu\r\n\r\n%s",
	    token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
	    strlen(body), body);
	t0 = now_us();
	if (send(c->fd, head, (size_t)n, MSG_NOSIGNAL) != n) {
		fprintf(stderr, "bench_worker: send failed\n");
		exit(1);
	}
	for (;;) {
		char *l = conn_line(c, &t);
		if (strncmp(l, "HTTP/1.1 ", 9) == 0)
			status = atoi(l + 9);
		if (strncasecmp(l, "Transfer-Encoding: chunked", 26) == 0)
			chunked = true;
		if (*l == '\0')
			break;
	}
	if (status != 200 || !chunked) {
		fprintf(stderr, "bench_worker: port %d answered %d%s\n", c->port, status,
		    chunked ? "" : " (not chunked)");
		exit(1);
	}
	for (;;) {
		size_t size = strtoul(conn_line(c, &t), NULL, 16), got = 0;

		while (got < size + 2) {
			size_t avail = c->have - c->off, take;

			if (avail == 0) {
				t = conn_fill(c);
				continue;
			}
			take = size + 2 - got < avail ? size + 2 - got : avail;
			for (size_t i = 0; i < take && got + i < size; i++) {
				char ch = c->buf[c->off + i];
				if (ch == '\n' && prev == '\n' && on_event)
					on_event(arg, t);
				prev = ch;
			}
			c->off += take;
			got += take;
		}
		if (size == 0)
			break;
	}
	return t0;
}

/* ---- measures --------------------------------------------------------------------------- */

struct first { double t; bool seen; };

static void first_event(void *arg, double t)
{
	struct first *f = arg;

	if (!f->seen) {
		f->t = t;
		f->seen = true;
	}
}

static char *body_for(const char *model, int max_tokens, int k)
{
	static char b[512];

	snprintf(b, sizeof(b), "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":"
	    "\"benchmark prompt %d\"}],\"max_tokens\":%d,\"stream\":true}", model, k, max_tokens);
	return b;
}

struct arrivals { double *t; int n; };

static void arrival(void *arg, double t)
{
	struct arrivals *a = arg;

	if (a->n < MAX_EVENTS)
		a->t[a->n++] = t;
}

int main(int argc, char **argv)
{
	struct conn *sim, *paced, *wk;
	int nreq = argc > 6 ? atoi(argv[6]) : 500;
	double *td, *tw;
	double p50d, p50w, p90d, p90w;

	if (argc < 6) {
		fprintf(stderr, "usage: bench_worker SIM_PORT PACED_PORT WORKER_PORT TICKET_KEY "
		    "WORKER_KEY [N]\n");
		return 2;
	}
	if (sodium_init() < 0 || identity_load(&key, argv[4]) != 0) {
		fprintf(stderr, "bench_worker: cannot load %s\n", argv[4]);
		return 1;
	}
	{
		troop_identity w;

		if (identity_load(&w, argv[5]) != 0) {
			fprintf(stderr, "bench_worker: cannot load %s\n", argv[5]);
			return 1;
		}
		snprintf(node_id, sizeof(node_id), "%s", w.id);
		identity_wipe(&w);
	}
	sim = calloc(1, sizeof(*sim));
	paced = calloc(1, sizeof(*paced));
	wk = calloc(1, sizeof(*wk));
	sim->port = atoi(argv[1]);
	paced->port = atoi(argv[2]);
	wk->port = atoi(argv[3]);
	conn_open(sim);
	conn_open(paced);
	conn_open(wk);
	td = calloc((size_t)nreq + 1, sizeof(*td));
	tw = calloc((size_t)nreq + 1, sizeof(*tw));

	/* 1. time to first event (N 0: skipped) */
	for (int i = 0; i < 20 && nreq > 0; i++) {  /* warm up both paths */
		char *tok = mint(MODEL);
		request(sim, NULL, body_for(MODEL, 1, i), NULL, NULL);
		request(wk, tok, body_for(MODEL, 1, i), NULL, NULL);
		free(tok);
	}
	for (int i = 0; i < nreq; i++) {
		struct first f = { 0 };
		char *tok = mint(MODEL);
		double t0;

		t0 = request(sim, NULL, body_for(MODEL, 1, i), first_event, &f);
		td[i] = f.t - t0;
		f.seen = false;
		t0 = request(wk, tok, body_for(MODEL, 1, i), first_event, &f);
		tw[i] = f.t - t0;
		free(tok);
	}
	if (nreq > 0) {
		p90d = pct(td, nreq, 0.9);
		p50d = pct(td, nreq, 0.5);
		p90w = pct(tw, nreq, 0.9);
		p50w = pct(tw, nreq, 0.5);
		printf("ttfb_direct_p50_us %.1f\nttfb_direct_p90_us %.1f\n", p50d, p90d);
		printf("ttfb_worker_p50_us %.1f\nttfb_worker_p90_us %.1f\n", p50w, p90w);
		printf("ttfb_added_p50_ms %.3f   (target < 0.5)\n", (p50w - p50d) / 1000.0);
	}

	if (getenv("BENCH_TTFB_ONLY"))
		return 0;

	/* 2. one unpaced stream at a time: events per second, direct and
	 * proxied alternately, the median of RUNS each */
	{
		enum { RUNS = 5 };
		struct arrivals a = { calloc(MAX_EVENTS, sizeof(double)), 0 };
		int tokens = 200000;
		double rd[RUNS], rw[RUNS], md, mw;

		for (int r = 0; r < RUNS; r++) {
			char *tok = mint(MODEL);
			double t0;

			a.n = 0;
			t0 = request(sim, NULL, body_for(MODEL, tokens, 7), arrival, &a);
			rd[r] = a.n / ((a.t[a.n - 1] - t0) / 1e6);
			a.n = 0;
			t0 = request(wk, tok, body_for(MODEL, tokens, 7), arrival, &a);
			rw[r] = a.n / ((a.t[a.n - 1] - t0) / 1e6);
			free(tok);
		}
		md = pct(rd, RUNS, 0.5);
		mw = pct(rw, RUNS, 0.5);
		if (getenv("BENCH_VERBOSE"))
			for (int r = 0; r < RUNS; r++)
				printf("# stream run %d: direct %.0f worker %.0f events/s\n", r, rd[r], rw[r]);
		printf("stream_direct_events_per_s %.0f\nstream_worker_events_per_s %.0f\n", md, mw);
		printf("stream_ratio %.3f   (target >= 0.80)\n", mw / md);
		printf("added_cost_per_event_us %.2f\n", 1e6 / mw - 1e6 / md);
		free(a.t);
	}

	/* 3. a paced stream: lateness of each event against its schedule */
	{
		enum { EVENTS = 200, RUNS = 3 };
		const double interval = 1e6 / 200.0;  /* engine-sim --tokens-per-second 200 */
		double *ld = calloc(EVENTS * RUNS + 8, sizeof(double));
		double *lw = calloc(EVENTS * RUNS + 8, sizeof(double));
		struct arrivals a = { calloc(MAX_EVENTS, sizeof(double)), 0 };
		int nd = 0, nw = 0;

		for (int r = 0; r < RUNS; r++) {
			char *tok = mint(PACED_MODEL);
			double t0;

			a.n = 0;
			t0 = request(paced, NULL, body_for(PACED_MODEL, EVENTS, r), arrival, &a);
			/* events 1..EVENTS are tokens, paced from the first (event 0 is
			 * the role event, sent with the first token) */
			for (int i = 1; i <= EVENTS && i < a.n; i++)
				ld[nd++] = a.t[i] - t0 - (i - 1) * interval;
			a.n = 0;
			t0 = request(wk, tok, body_for(PACED_MODEL, EVENTS, r), arrival, &a);
			for (int i = 1; i <= EVENTS && i < a.n; i++)
				lw[nw++] = a.t[i] - t0 - (i - 1) * interval;
			free(tok);
		}
		printf("event_lateness_direct_p50_us %.1f\nevent_lateness_worker_p50_us %.1f\n",
		    pct(ld, nd, 0.5), pct(lw, nw, 0.5));
		printf("added_latency_per_event_p50_ms %.3f\n",
		    (pct(lw, nw, 0.5) - pct(ld, nd, 0.5)) / 1000.0);
		free(ld);
		free(lw);
		free(a.t);
	}
	identity_wipe(&key);
	return 0;
}
