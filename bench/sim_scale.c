/*
 * sim_scale.c - the scale simulation of docs/SCALE.md, run by
 * bench/sim_scale.sh: N simulated workers (node identities, each with its
 * own Ed25519 key) heartbeating at their real interval into one or more
 * coordinators that share a PostgreSQL ledger and a Redis registry, while
 * clients authorize at a steady rate and, for each ticket, the node the
 * ticket names sends its signed receipt, so every authorization is settled.
 *
 *   sim_scale --coord HOST:PORT [--coord HOST:PORT ...] [--coord-pid P ...]
 *             [--nodes N] [--interval S] [--auth-rate R] [--peers-rate R]
 *             [--users U] [--duration S] [--report S] [--hb-threads T]
 *             [--auth-threads T] [--no-settle] [--redis-url URL]
 *             [--redis-prefix P] [--database-url URL] [--pg-pid P] [--model M]
 *
 * Open loop: heartbeat k (k = 0, 1, ...) is due at t0 + k * S / N and is
 * node k mod N's; node i talks to coordinator i mod C.  Authorization k is
 * due at t0 + k / R (user k mod U, coordinator k mod C) and its receipt
 * goes to the same coordinator right after the ticket.  Latency is counted
 * from the due time, so a coordinator that falls behind shows as lag and
 * latency, not as a slower schedule.  Requests are signed on the fly
 * (httpsig_sign, a fresh nonce each) by a pool of blocking threads with one
 * keep-alive connection per coordinator each; the simulator's own CPU time
 * is reported next to the coordinators' so the two are not confused.
 *
 * Before the clock starts every node registers with one heartbeat (closed
 * loop, all threads).  --interval 0 sends no heartbeats after that (a
 * calibration run for the cost per job); --auth-rate 0 sends no
 * authorizations (the cost per heartbeat).  Every --report seconds and at
 * the end it prints heartbeats/s achieved vs scheduled, their lag (due to
 * sent) and latency, /authorize p50/p99, receipts sent/answered, /peers
 * p99, the coordinators' and its own CPU (cores), the load average, and
 * with --redis-url / --database-url Redis used_memory and commands/s (INFO)
 * and PostgreSQL transactions/s (pg_stat_database xact_commit), and the
 * CPU of Redis (INFO used_cpu_*) and, with --pg-pid (the postmaster), of
 * PostgreSQL (it and its children, from /proc).  At the end: with
 * --redis-prefix the live nodes and nonces Redis holds and one node's bytes;
 * Redis commands and PostgreSQL transactions and row writes per heartbeat
 * and per job, the coordinators' CPU per request, and with --database-url
 * the ledger check: the settle rows equal the receipts answered, no
 * reservation is left open, and the ledger invariant
 * (ledger_totals_balanced) holds.  Lines "RESULT ..." for bench/run.sh.
 * Exit 0; 1 when it could not run; 2 when something was lost (the ledger
 * check failed) or a timed request got no good reply at all.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "httpsig.h"
#include "identity.h"
#include "ledger.h"
#include "bench_proc.h"

#define MAX_COORDS 8
#define NBUCKET 1024            /* latency histogram: bucket b holds ~1.02^b us */
#define RESP_MAX (1u << 20)

/* ---- options ---------------------------------------------------------------------- */

static struct {
	struct sockaddr_in addr[MAX_COORDS];
	char hostport[MAX_COORDS][64];
	int ncoord;
	int pid[MAX_COORDS];
	int npid;
	int pg_pid;               /* the postmaster, for PostgreSQL's CPU time */
	int nodes, users, hb_threads, auth_threads;
	double interval, auth_rate, peers_rate, duration, report;
	bool settle;
	const char *redis_url, *database_url, *model;
	const char *redis_prefix;  /* the registry's key prefix, for key counts */
} opt = {
	.nodes = 10000, .users = 50, .hb_threads = 48, .auth_threads = 8, .interval = 10,
	.auth_rate = 100, .duration = 60, .report = 60, .settle = true, .model = "bench",
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "sim_scale: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t at)
{
	struct timespec ts = { .tv_sec = at / 1000000000, .tv_nsec = at % 1000000000 };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static double coords_cpu_s(void)
{
	double s = 0;

	for (int i = 0; i < opt.npid; i++)
		s += bench_proc_cpu_s(opt.pid[i]);
	return s;
}

/* ---- latency histograms ------------------------------------------------------------- */

struct hist {
	_Atomic uint64_t b[NBUCKET];
};

static void hist_add(struct hist *h, int64_t ns)
{
	double us = (double)ns / 1e3;
	int k = us <= 1 ? 0 : (int)(log(us) / log(1.02));

	atomic_fetch_add_explicit(&h->b[k < NBUCKET ? k : NBUCKET - 1], 1, memory_order_relaxed);
}

/* Snapshot of h into out[], the counts since prev[] (which it updates). */
static uint64_t hist_delta(struct hist *h, uint64_t *prev, uint64_t *out)
{
	uint64_t n = 0;

	for (int k = 0; k < NBUCKET; k++) {
		uint64_t v = atomic_load_explicit(&h->b[k], memory_order_relaxed);
		out[k] = v - prev[k];
		prev[k] = v;
		n += out[k];
	}
	return n;
}

/* The q-quantile of counts c[] in ms (the bucket's upper edge); NAN if empty. */
static double hist_q(const uint64_t *c, uint64_t n, double q)
{
	uint64_t want = (uint64_t)ceil(q * (double)n), s = 0;

	if (n == 0)
		return NAN;
	if (want == 0)
		want = 1;
	for (int k = 0; k < NBUCKET; k++) {
		s += c[k];
		if (s >= want)
			return pow(1.02, k + 1) / 1e3;
	}
	return pow(1.02, NBUCKET) / 1e3;
}

/* ---- counters ------------------------------------------------------------------------ */

static struct {
	_Atomic uint64_t hb_ok, hb_err, auth_ok, auth_err, rc_sent, rc_ok, rc_err;
	_Atomic uint64_t peers_ok, peers_err;
	struct hist hb_lat, hb_lag, auth_lat, peers_lat;
} st;

static _Atomic uint64_t hb_next, auth_next, peers_next, reg_next;
static int64_t t0, t_end;
static troop_identity *nodes, *users;
static char (*node_ids)[TROOP_ID_LEN + 1];   /* sorted copy, for the lookup */
static int *node_by_sorted;
static char first_err[256];
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;

static void note_err(const char *what, int status, const char *body)
{
	pthread_mutex_lock(&err_mu);
	if (!first_err[0])
		snprintf(first_err, sizeof(first_err), "%s: status %d %.150s", what, status,
		    body ? body : "");
	pthread_mutex_unlock(&err_mu);
}

/* ---- a blocking HTTP/1.1 client, one keep-alive connection per coordinator ---------- */

struct client {
	int fd[MAX_COORDS];
	char *buf;
	size_t cap;
};

static void client_init(struct client *c)
{
	for (int i = 0; i < MAX_COORDS; i++)
		c->fd[i] = -1;
	c->cap = RESP_MAX + 4096;
	c->buf = malloc(c->cap);
	if (!c->buf)
		die("out of memory");
}

static void client_close(struct client *c, int ci)
{
	if (c->fd[ci] >= 0)
		close(c->fd[ci]);
	c->fd[ci] = -1;
}

static int client_connect(struct client *c, int ci)
{
	int one = 1, fd;

	if (c->fd[ci] >= 0)
		return 0;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&opt.addr[ci], sizeof(opt.addr[ci])) != 0) {
		close(fd);
		return -1;
	}
	c->fd[ci] = fd;
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Send one request to coordinator ci, signed by `id` unless NULL, and read
 * the reply: returns its status (0 when the connection failed) and points
 * *body at its body in c->buf (NUL-terminated). */
static int client_do(struct client *c, int ci, const troop_identity *id, const char *method,
    const char *path, const char *query, const char *body, char **rbody)
{
	char head[1024];
	size_t blen = body ? strlen(body) : 0, got = 0, hlen = 0, clen = 0;
	int n, status = 0;
	bool closing = false;

	*rbody = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (client_connect(c, ci) != 0)
			return 0;
		if (id) {
			httpsig_headers h;
			if (httpsig_sign(&h, id, method, path, query, body, blen, (int64_t)time(NULL)))
				return 0;
			n = snprintf(head, sizeof(head), "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n"
			    "%s%s%s%sContent-Length: %zu\r\nSignature-Input: %s\r\nSignature: %s\r\n\r\n",
			    method, path, query ? "?" : "", query ? query : "", opt.hostport[ci],
			    body ? "Content-Type: application/json\r\nContent-Digest: " : "",
			    body ? h.content_digest : "", body ? "\r\n" : "", "", blen,
			    h.signature_input, h.signature);
		} else {
			n = snprintf(head, sizeof(head), "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n"
			    "Content-Length: %zu\r\n\r\n", method, path, query ? "?" : "",
			    query ? query : "", opt.hostport[ci], blen);
		}
		if (n < 0 || (size_t)n >= sizeof(head))
			die("request head too long");
		if (write_all(c->fd[ci], head, (size_t)n) != 0 ||
		    (blen && write_all(c->fd[ci], body, blen) != 0)) {
			client_close(c, ci);   /* a kept-alive connection the server closed */
			continue;
		}
		got = hlen = 0;
		for (;;) {
			ssize_t k = read(c->fd[ci], c->buf + got, c->cap - 1 - got);
			char *e;
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			got += (size_t)k;
			c->buf[got] = '\0';
			if (!hlen && (e = strstr(c->buf, "\r\n\r\n")) != NULL) {
				char *cl = strcasestr(c->buf, "\r\nContent-Length:");
				hlen = (size_t)(e - c->buf) + 4;
				clen = cl && cl < e ? strtoul(cl + 17, NULL, 10) : 0;
				closing = strcasestr(c->buf, "\r\nConnection: close") != NULL &&
				    strcasestr(c->buf, "\r\nConnection: close") < e;
				if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1 ||
				    hlen + clen >= c->cap)
					break;
			}
			if (hlen && got >= hlen + clen)
				break;
		}
		if (!hlen || got < hlen + clen) {
			client_close(c, ci);
			if (got == 0 && attempt == 0)
				continue;   /* closed before answering: once more, fresh */
			return 0;
		}
		c->buf[hlen + clen] = '\0';
		*rbody = c->buf + hlen;
		if (closing)
			client_close(c, ci);
		return status;
	}
	return 0;
}

/* ---- the simulated workers and clients ------------------------------------------------ */

static char *heartbeat_body(int i)
{
	static const char *hash = "sha256:0000000000000000000000000000000000000000000000000000"
	    "000000000000";
	char enc[64], *s = malloc(1024);
	unsigned char raw[32];

	if (!s)
		die("out of memory");
	/* the node's encryption key: stable per node, like a real worker's */
	memcpy(raw, nodes[i].pk, 32);
	raw[0] ^= 0x5a;
	sodium_bin2base64(enc, sizeof(enc), raw, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(s, 1024,
	    "{\"node_id\":\"%s\",\"name\":\"sim-%06d\",\"tailscale_ip\":\"100.%d.%d.%d\","
	    "\"port\":8421,\"status\":\"IDLE\",\"models\":[{\"name\":\"%s\","
	    "\"content_hash\":\"%s\",\"size_bytes\":4661224676,\"engine\":\"ollama\"}],"
	    "\"hardware\":{\"gpu\":\"NVIDIA GeForce RTX 4090\",\"gpu_count\":1,"
	    "\"vram_total\":24564,\"vram_free\":20480,\"gpu_util\":3},"
	    "\"engines\":[{\"type\":\"ollama\",\"version\":\"0.6.2\",\"port\":11434}],"
	    "\"encryption_public_key\":\"%s\",\"load\":{\"active_jobs\":0,\"max_jobs\":1000},"
	    "\"version\":\"troop/0.1.0\"}",
	    nodes[i].id, i, 64 + (i >> 16) % 64, (i >> 8) & 255, i & 255, opt.model, hash, enc);
	return s;
}

static int heartbeat(struct client *c, int i)
{
	char *b = heartbeat_body(i), *rb;
	int s = client_do(c, i % opt.ncoord, &nodes[i], "POST", "/heartbeat", NULL, b, &rb);

	free(b);
	if (s != 200)
		note_err("heartbeat", s, rb);
	return s == 200 ? 0 : -1;
}

static void *register_main(void *arg)
{
	struct client c;
	uint64_t k;

	(void)arg;
	client_init(&c);
	while ((k = atomic_fetch_add(&reg_next, 1)) < (uint64_t)opt.nodes)
		if (heartbeat(&c, (int)k) != 0)
			atomic_fetch_add(&st.hb_err, 1);
	for (int i = 0; i < opt.ncoord; i++)
		client_close(&c, i);
	free(c.buf);
	return NULL;
}

static void *heartbeat_main(void *arg)
{
	struct client c;
	double gap = opt.interval * 1e9 / opt.nodes;

	(void)arg;
	client_init(&c);
	for (;;) {
		uint64_t k = atomic_fetch_add(&hb_next, 1);
		int64_t due = t0 + (int64_t)((double)k * gap), sent;
		if (due >= t_end || mono_ns() >= t_end)
			break;   /* the end, even when behind the schedule */
		sleep_until(due);
		sent = mono_ns();
		hist_add(&st.hb_lag, sent - due);
		if (heartbeat(&c, (int)(k % (uint64_t)opt.nodes)) == 0) {
			atomic_fetch_add(&st.hb_ok, 1);
			hist_add(&st.hb_lat, mono_ns() - due);
		} else {
			atomic_fetch_add(&st.hb_err, 1);
		}
	}
	for (int i = 0; i < opt.ncoord; i++)
		client_close(&c, i);
	free(c.buf);
	return NULL;
}

static int node_cmp(const void *a, const void *b)
{
	return strcmp(node_ids[*(const int *)a], node_ids[*(const int *)b]);
}

static int node_find(const char *id)
{
	int lo = 0, hi = opt.nodes - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2, r = strcmp(nodes[node_by_sorted[mid]].id, id);
		if (r == 0)
			return node_by_sorted[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static void *auth_main(void *arg)
{
	struct client c;
	double gap = 1e9 / opt.auth_rate;
	char body[128];

	(void)arg;
	client_init(&c);
	snprintf(body, sizeof(body), "{\"model\":\"%s\",\"max_seconds\":60}", opt.model);
	for (;;) {
		uint64_t k = atomic_fetch_add(&auth_next, 1);
		int64_t due = t0 + (int64_t)((double)k * gap);
		int ci = (int)(k % (uint64_t)opt.ncoord), s, node;
		char *rb, job[80], path[128], rcpt[512];
		json_t *j;
		const char *jid, *nid;

		if (due >= t_end || mono_ns() >= t_end)
			break;
		sleep_until(due);
		s = client_do(&c, ci, &users[k % (uint64_t)opt.users], "POST", "/authorize", NULL,
		    body, &rb);
		j = s == 200 && rb ? json_loads(rb, 0, NULL) : NULL;
		jid = json_string_value(json_object_get(j, "job_id"));
		nid = json_string_value(json_object_get(j, "node_id"));
		node = nid ? node_find(nid) : -1;
		if (!jid || node < 0 || strlen(jid) >= sizeof(job)) {
			atomic_fetch_add(&st.auth_err, 1);
			note_err("authorize", s, rb);
			json_decref(j);
			continue;
		}
		atomic_fetch_add(&st.auth_ok, 1);
		hist_add(&st.auth_lat, mono_ns() - due);
		snprintf(job, sizeof(job), "%s", jid);
		json_decref(j);
		if (!opt.settle)
			continue;
		/* the worker's receipt, as settle_load.c sends it */
		snprintf(path, sizeof(path), "/jobs/%s/receipt", job);
		snprintf(rcpt, sizeof(rcpt), "{\"job_id\":\"%s\",\"node_id\":\"%s\","
		    "\"duration_ms\":300,\"prompt_tokens\":10,\"completion_tokens\":20,"
		    "\"outcome\":\"ok\",\"response_digest\":\"0123456789abcdef\"}", job,
		    nodes[node].id);
		atomic_fetch_add(&st.rc_sent, 1);
		s = client_do(&c, ci, &nodes[node], "POST", path, NULL, rcpt, &rb);
		if (s == 200) {
			atomic_fetch_add(&st.rc_ok, 1);
		} else {
			atomic_fetch_add(&st.rc_err, 1);
			note_err("receipt", s, rb);
		}
	}
	for (int i = 0; i < opt.ncoord; i++)
		client_close(&c, i);
	free(c.buf);
	return NULL;
}

static void *peers_main(void *arg)
{
	struct client c;
	double gap = 1e9 / opt.peers_rate;
	char q[256];

	(void)arg;
	client_init(&c);
	for (;;) {
		uint64_t k = atomic_fetch_add(&peers_next, 1);
		int64_t due = t0 + (int64_t)((double)k * gap);
		char *rb;
		int s;

		if (due >= t_end || mono_ns() >= t_end)
			break;
		/* every other page starts after a node chosen at random, as a
		 * client paging through the model does */
		snprintf(q, sizeof(q), "model=%s&limit=50", opt.model);
		if (k % 2) {
			const char *id = nodes[randombytes_uniform((uint32_t)opt.nodes)].id;
			char cur[2 * TROOP_ID_LEN];

			sodium_bin2base64(cur, sizeof(cur), (const unsigned char *)id, strlen(id),
			    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
			snprintf(q + strlen(q), sizeof(q) - strlen(q), "&cursor=%s", cur);
		}
		sleep_until(due);
		s = client_do(&c, (int)(k % (uint64_t)opt.ncoord), NULL, "GET", "/peers", q, NULL, &rb);
		if (s == 200) {
			atomic_fetch_add(&st.peers_ok, 1);
			hist_add(&st.peers_lat, mono_ns() - due);
		} else {
			atomic_fetch_add(&st.peers_err, 1);
			note_err("peers", s, rb);
		}
	}
	for (int i = 0; i < opt.ncoord; i++)
		client_close(&c, i);
	free(c.buf);
	return NULL;
}

/* ---- Redis and PostgreSQL figures (their command-line clients) -------------------------- */

/* CPU seconds of the postmaster and its children (the backends serving
 * the coordinators stay connected, so their time is counted). */
static double pg_cpu_s(void)
{
	double t = bench_proc_cpu_s(opt.pg_pid);
	DIR *d = opendir("/proc");
	struct dirent *e;

	while (d && (e = readdir(d)) != NULL) {
		char path[300], buf[512], *p;
		int pid = atoi(e->d_name), ppid = 0;
		FILE *f;
		size_t n;
		if (pid <= 0 || pid == opt.pg_pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if (!(f = fopen(path, "r")))
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		if ((p = strrchr(buf, ')')) && sscanf(p + 2, "%*c %d", &ppid) == 1 &&
		    ppid == opt.pg_pid)
			t += bench_proc_cpu_s(pid);
	}
	if (d)
		closedir(d);
	return t;
}

struct servers {
	double redis_mem, redis_cmds;       /* used_memory bytes, total_commands_processed */
	double pg_xact, pg_ins, pg_upd, pg_del;
	double redis_cpu, pg_cpu;           /* CPU seconds (INFO; /proc) */
	char cmdstats[4096];                /* "name calls\n" lines */
};

static void servers_read(struct servers *s)
{
	char cmd[1200], line[512];
	FILE *f;

	memset(s, 0, sizeof(*s));
	if (opt.redis_url) {
		size_t used = 0;
		snprintf(cmd, sizeof(cmd), "redis-cli -u '%s' info all 2>/dev/null", opt.redis_url);
		if ((f = popen(cmd, "r")) != NULL) {
			while (fgets(line, sizeof(line), f)) {
				char name[128];
				unsigned long long calls;
				sscanf(line, "used_memory:%lf", &s->redis_mem);
				double x;
				sscanf(line, "total_commands_processed:%lf", &s->redis_cmds);
				if (sscanf(line, "used_cpu_sys:%lf", &x) == 1 ||
				    sscanf(line, "used_cpu_user:%lf", &x) == 1)
					s->redis_cpu += x;
				if (sscanf(line, "cmdstat_%127[^:]:calls=%llu", name, &calls) == 2 &&
				    used + 160 < sizeof(s->cmdstats))
					used += (size_t)snprintf(s->cmdstats + used,
					    sizeof(s->cmdstats) - used, "%s %llu\n", name, calls);
			}
			pclose(f);
		}
	}
	if (opt.database_url) {
		snprintf(cmd, sizeof(cmd), "psql -qtA -F ' ' '%s' -c \"SELECT xact_commit, "
		    "tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = "
		    "current_database()\" 2>/dev/null", opt.database_url);
		if ((f = popen(cmd, "r")) != NULL) {
			if (fgets(line, sizeof(line), f))
				sscanf(line, "%lf %lf %lf %lf", &s->pg_xact, &s->pg_ins, &s->pg_upd,
				    &s->pg_del);
			pclose(f);
		}
	}
	if (opt.pg_pid > 0)
		s->pg_cpu = pg_cpu_s();
}

/* The calls of Redis command `name` in s, 0 if absent. */
static double cmdstat(const struct servers *s, const char *name)
{
	const char *p = s->cmdstats;
	size_t n = strlen(name);

	while (p && *p) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

/* A number Redis answers to `args` (redis-cli words), -1 on failure. */
static double redis_num(const char *args)
{
	char cmd[1200], line[128];
	double v = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "redis-cli -u '%s' %s 2>/dev/null", opt.redis_url, args);
	if ((f = popen(cmd, "r")) != NULL) {
		if (fgets(line, sizeof(line), f))
			v = strtod(line, NULL);
		pclose(f);
	}
	return v;
}

/* What the registry holds at the end: live nodes and remembered nonces,
 * and the bytes of one node's hash (MEMORY USAGE). */
static void redis_keys(double used)
{
	char a[400];
	double nodes_n, nonces, node_b;

	snprintf(a, sizeof(a), "zcard '%snodes'", opt.redis_prefix);
	nodes_n = redis_num(a);
	snprintf(a, sizeof(a), "zcard '%sz:nonce'", opt.redis_prefix);
	nonces = redis_num(a);
	snprintf(a, sizeof(a), "memory usage '%snode:%s'", opt.redis_prefix, nodes[0].id);
	node_b = redis_num(a);
	printf("RESULT sim Redis holds: %.0f nodes (%.0f bytes in one node's hash), %.0f "
	    "nonces; used_memory %.1f MiB\n", nodes_n, node_b, nonces, used / 1048576);
}

static double loadavg1(void)
{
	double l = 0;

	getloadavg(&l, 1);
	return l;
}

/* ---- reporting ------------------------------------------------------------------------- */

struct snap {
	int64_t t;
	uint64_t hb_ok, hb_err, auth_ok, auth_err, rc_sent, rc_ok, peers_ok;
	double coord_cpu, self_cpu;
	struct servers sv;
};

static void snap_take(struct snap *s)
{
	s->t = mono_ns();
	s->hb_ok = atomic_load(&st.hb_ok);
	s->hb_err = atomic_load(&st.hb_err);
	s->auth_ok = atomic_load(&st.auth_ok);
	s->auth_err = atomic_load(&st.auth_err);
	s->rc_sent = atomic_load(&st.rc_sent);
	s->rc_ok = atomic_load(&st.rc_ok);
	s->peers_ok = atomic_load(&st.peers_ok);
	s->coord_cpu = coords_cpu_s();
	s->self_cpu = bench_self_cpu_s();
	servers_read(&s->sv);
}

static uint64_t prev_hb_lat[NBUCKET], prev_hb_lag[NBUCKET], prev_auth[NBUCKET],
    prev_peers[NBUCKET];

/* One report line for the span a..b; `label` names it. */
static void report(const char *label, const struct snap *a, const struct snap *b,
    uint64_t *p_hb_lat, uint64_t *p_hb_lag, uint64_t *p_auth, uint64_t *p_peers)
{
	uint64_t c_lat[NBUCKET], c_lag[NBUCKET], c_auth[NBUCKET], c_peers[NBUCKET];
	uint64_t n_lat = hist_delta(&st.hb_lat, p_hb_lat, c_lat);
	uint64_t n_lag = hist_delta(&st.hb_lag, p_hb_lag, c_lag);
	uint64_t n_auth = hist_delta(&st.auth_lat, p_auth, c_auth);
	uint64_t n_peers = hist_delta(&st.peers_lat, p_peers, c_peers);
	double dt = (double)(b->t - a->t) / 1e9;
	double sched = opt.interval > 0 ? opt.nodes / opt.interval : 0;

	if (dt <= 0)
		dt = 1e-9;
	printf("[%s] heartbeats %.0f/s of %.0f/s scheduled (%llu err), lag p50 %.1f p99 %.1f ms,"
	    " latency p50 %.1f p99 %.1f ms\n", label, (double)(b->hb_ok - a->hb_ok) / dt, sched,
	    (unsigned long long)(b->hb_err - a->hb_err), hist_q(c_lag, n_lag, 0.5),
	    hist_q(c_lag, n_lag, 0.99), hist_q(c_lat, n_lat, 0.5), hist_q(c_lat, n_lat, 0.99));
	printf("[%s] authorize %.1f/s of %.1f/s (%llu err), p50 %.1f p99 %.1f ms; receipts "
	    "sent %llu answered %llu",
	    label, (double)(b->auth_ok - a->auth_ok) / dt, opt.auth_rate,
	    (unsigned long long)(b->auth_err - a->auth_err), hist_q(c_auth, n_auth, 0.5),
	    hist_q(c_auth, n_auth, 0.99), (unsigned long long)(b->rc_sent - a->rc_sent),
	    (unsigned long long)(b->rc_ok - a->rc_ok));
	if (opt.peers_rate > 0)
		printf("; /peers %.1f/s p99 %.1f ms", (double)(b->peers_ok - a->peers_ok) / dt,
		    hist_q(c_peers, n_peers, 0.99));
	printf("\n[%s] CPU cores: coordinators %.2f, simulator %.2f; load average %.2f", label,
	    (b->coord_cpu - a->coord_cpu) / dt, (b->self_cpu - a->self_cpu) / dt, loadavg1());
	if (opt.redis_url)
		printf("; Redis used_memory %.1f MiB, %.0f commands/s, %.2f cores",
		    b->sv.redis_mem / 1048576, (b->sv.redis_cmds - a->sv.redis_cmds) / dt,
		    (b->sv.redis_cpu - a->sv.redis_cpu) / dt);
	if (opt.database_url)
		printf("; PostgreSQL %.1f transactions/s", (b->sv.pg_xact - a->sv.pg_xact) / dt);
	if (opt.pg_pid > 0)
		printf(", %.2f cores", (b->sv.pg_cpu - a->sv.pg_cpu) / dt);
	printf("\n");
	fflush(stdout);
}

/* Redis commands per unit, the busiest first (at most 8). */
static void print_cmdstats(const struct servers *a, const struct servers *b, double per,
    const char *unit)
{
	char names[64][64];
	double d[64];
	int n = 0;
	const char *p = b->cmdstats;

	while (p && *p && n < 64) {
		double calls;
		if (sscanf(p, "%63s %lf", names[n], &calls) == 2) {
			d[n] = calls - cmdstat(a, names[n]);
			if (d[n] > 0 && strcmp(names[n], "info") != 0)
				n++;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	printf("  Redis commands per %s:", unit);
	for (int k = 0; k < 8 && k < n; k++) {
		int best = k;
		for (int m = k + 1; m < n; m++)
			if (d[m] > d[best])
				best = m;
		if (best != k) {
			char t[64];
			double x = d[k];
			memcpy(t, names[k], 64);
			memcpy(names[k], names[best], 64);
			memcpy(names[best], t, 64);
			d[k] = d[best];
			d[best] = x;
		}
		printf(" %s %.2f", names[k], d[k] / per);
	}
	printf("\n");
}

/* ---- the ledger check -------------------------------------------------------------------- */

static long long psql_count(const char *sql)
{
	char cmd[1200], line[64];
	long long v = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "psql -qtA '%s' -c \"%s\" 2>/dev/null", opt.database_url, sql);
	if ((f = popen(cmd, "r")) != NULL) {
		if (fgets(line, sizeof(line), f))
			v = strtoll(line, NULL, 10);
		pclose(f);
	}
	return v;
}

/* Every answered receipt is a settle row, nothing is left reserved, the
 * invariant holds.  0 when all three hold. */
static int ledger_check(uint64_t answered)
{
	ledger *l = NULL;
	ledger_conn *c = NULL;
	ledger_totals t;
	long long settled = psql_count("SELECT count(*) FROM transactions WHERE type = 'settle'");
	long long open = psql_count("SELECT count(*) FROM reservations WHERE status = 'open'");
	bool balanced = false;

	if (ledger_open(&l, opt.database_url) == 0 && ledger_conn_open(&c, l) == 0 &&
	    ledger_totals_get(&t, c) == 0) {
		balanced = ledger_totals_balanced(&t);
		printf("ledger: balances %lld + trial %lld + reserved %lld + pending %lld, "
		    "granted %lld, forfeited %lld: %s\n", (long long)t.balances, (long long)t.trial,
		    (long long)t.reserved, (long long)t.pending, (long long)t.granted,
		    (long long)t.forfeited, balanced ? "balanced" : "NOT BALANCED");
	} else {
		printf("ledger: could not read the totals\n");
	}
	ledger_conn_close(c);
	ledger_close(l);
	printf("ledger: %lld settle rows for %llu receipts answered; %lld reservations open\n",
	    settled, (unsigned long long)answered, open);
	printf("RESULT sim nothing lost: %s (settle rows %lld = receipts answered %llu, open "
	    "reservations %lld, invariant %s)\n",
	    settled == (long long)answered && open == 0 && balanced ? "yes" : "NO", settled,
	    (unsigned long long)answered, open, balanced ? "holds" : "BROKEN");
	return settled == (long long)answered && open == 0 && balanced ? 0 : -1;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: sim_scale --coord HOST:PORT [--coord ...] [--coord-pid P ...] "
	    "[--nodes N] [--interval S] [--auth-rate R] [--peers-rate R] [--users U] "
	    "[--duration S] [--report S] [--hb-threads T] [--auth-threads T] [--no-settle] "
	    "[--redis-url URL] [--redis-prefix P] [--database-url URL] [--pg-pid P] "
	    "[--model M]\n");
	exit(1);
}

static void parse_coord(const char *v)
{
	char host[64];
	int port;

	if (opt.ncoord >= MAX_COORDS || sscanf(v, "%63[^:]:%d", host, &port) != 2 ||
	    port <= 0 || port > 65535)
		usage();
	opt.addr[opt.ncoord].sin_family = AF_INET;
	opt.addr[opt.ncoord].sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &opt.addr[opt.ncoord].sin_addr) != 1)
		die("--coord %s: HOST must be an IPv4 address", v);
	snprintf(opt.hostport[opt.ncoord++], 64, "%s", v);
}

int main(int argc, char **argv)
{
	pthread_t *th;
	int nth = 0;
	struct snap s0, prev, cur;
	int64_t reg0;
	double reg_s;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--no-settle") == 0) {
			opt.settle = false;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--coord") == 0)
			parse_coord(v);
		else if (strcmp(a, "--coord-pid") == 0 && opt.npid < MAX_COORDS)
			opt.pid[opt.npid++] = atoi(v);
		else if (strcmp(a, "--pg-pid") == 0)
			opt.pg_pid = atoi(v);
		else if (strcmp(a, "--nodes") == 0)
			opt.nodes = atoi(v);
		else if (strcmp(a, "--users") == 0)
			opt.users = atoi(v);
		else if (strcmp(a, "--interval") == 0)
			opt.interval = atof(v);
		else if (strcmp(a, "--auth-rate") == 0)
			opt.auth_rate = atof(v);
		else if (strcmp(a, "--peers-rate") == 0)
			opt.peers_rate = atof(v);
		else if (strcmp(a, "--duration") == 0)
			opt.duration = atof(v);
		else if (strcmp(a, "--report") == 0)
			opt.report = atof(v);
		else if (strcmp(a, "--hb-threads") == 0)
			opt.hb_threads = atoi(v);
		else if (strcmp(a, "--auth-threads") == 0)
			opt.auth_threads = atoi(v);
		else if (strcmp(a, "--redis-url") == 0)
			opt.redis_url = v;
		else if (strcmp(a, "--redis-prefix") == 0)
			opt.redis_prefix = v;
		else if (strcmp(a, "--database-url") == 0)
			opt.database_url = v;
		else if (strcmp(a, "--model") == 0)
			opt.model = v;
		else
			usage();
	}
	if (opt.ncoord == 0 || opt.nodes < 1 || opt.users < 1 || opt.hb_threads < 1 ||
	    opt.auth_threads < 1 || opt.duration <= 0 || opt.report <= 0 || opt.interval < 0 ||
	    opt.auth_rate < 0 || opt.peers_rate < 0 || sodium_init() < 0)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);

	nodes = calloc((size_t)opt.nodes, sizeof(*nodes));
	users = calloc((size_t)opt.users, sizeof(*users));
	node_ids = calloc((size_t)opt.nodes, sizeof(*node_ids));
	node_by_sorted = calloc((size_t)opt.nodes, sizeof(int));
	th = calloc((size_t)(opt.hb_threads + opt.auth_threads + 8), sizeof(*th));
	if (!nodes || !users || !node_ids || !node_by_sorted || !th)
		die("out of memory");
	for (int i = 0; i < opt.nodes; i++) {
		identity_generate(&nodes[i]);
		memcpy(node_ids[i], nodes[i].id, sizeof(node_ids[i]));
		node_by_sorted[i] = i;
	}
	qsort(node_by_sorted, (size_t)opt.nodes, sizeof(int), node_cmp);
	for (int i = 0; i < opt.users; i++)
		identity_generate(&users[i]);
	printf("sim_scale: %d nodes heartbeating every %.0f s (%.0f/s) into %d coordinator(s); "
	    "%.1f authorizations/s%s from %d users; /peers %.1f/s; %.0f s\n", opt.nodes,
	    opt.interval, opt.interval > 0 ? opt.nodes / opt.interval : 0, opt.ncoord,
	    opt.auth_rate, opt.settle ? " each settled by its node's receipt" : "", opt.users,
	    opt.peers_rate, opt.duration);

	/* registration: every node heartbeats once, closed loop */
	reg0 = mono_ns();
	for (int i = 0; i < opt.hb_threads; i++)
		pthread_create(&th[i], NULL, register_main, NULL);
	for (int i = 0; i < opt.hb_threads; i++)
		pthread_join(th[i], NULL);
	reg_s = (double)(mono_ns() - reg0) / 1e9;
	printf("registered %d nodes in %.1f s (%.0f heartbeats/s closed loop, %llu errors%s%s)\n",
	    opt.nodes, reg_s, opt.nodes / reg_s, (unsigned long long)atomic_load(&st.hb_err),
	    first_err[0] ? "; first: " : "", first_err);
	if (atomic_load(&st.hb_err) > (uint64_t)opt.nodes / 100)
		die("too many registrations failed");
	atomic_store(&st.hb_err, 0);
	first_err[0] = '\0';

	snap_take(&s0);
	prev = s0;
	t0 = mono_ns() + 100000000;
	t_end = t0 + (int64_t)(opt.duration * 1e9);
	if (opt.interval > 0)
		for (int i = 0; i < opt.hb_threads; i++)
			pthread_create(&th[nth++], NULL, heartbeat_main, NULL);
	if (opt.auth_rate > 0)
		for (int i = 0; i < opt.auth_threads; i++)
			pthread_create(&th[nth++], NULL, auth_main, NULL);
	if (opt.peers_rate > 0)
		for (int i = 0; i < 4; i++)
			pthread_create(&th[nth++], NULL, peers_main, NULL);
	for (int m = 1; t0 + (int64_t)(m * opt.report * 1e9) < t_end; m++) {
		char label[32];
		sleep_until(t0 + (int64_t)(m * opt.report * 1e9));
		snap_take(&cur);
		snprintf(label, sizeof(label), "%4.0f s", m * opt.report);
		report(label, &prev, &cur, prev_hb_lat, prev_hb_lag, prev_auth, prev_peers);
		prev = cur;
	}
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	snap_take(&cur);
	report("last", &prev, &cur, prev_hb_lat, prev_hb_lag, prev_auth, prev_peers);
	{
		static uint64_t z1[NBUCKET], z2[NBUCKET], z3[NBUCKET], z4[NBUCKET];
		static uint64_t y1[NBUCKET], y2[NBUCKET], y3[NBUCKET];
		double dt = (double)(cur.t - s0.t) / 1e9;
		uint64_t hb = cur.hb_ok - s0.hb_ok, jobs = cur.rc_ok - s0.rc_ok;
		uint64_t auth = cur.auth_ok - s0.auth_ok, peers = cur.peers_ok - s0.peers_ok;
		uint64_t reqs = hb + auth + jobs + peers + (cur.hb_err - s0.hb_err) +
		    (cur.auth_err - s0.auth_err);
		uint64_t c_lat[NBUCKET], c_lag[NBUCKET], c_auth[NBUCKET];
		uint64_t n_lat = hist_delta(&st.hb_lat, y1, c_lat);
		uint64_t n_lag = hist_delta(&st.hb_lag, y2, c_lag);
		uint64_t n_auth = hist_delta(&st.auth_lat, y3, c_auth);
		double sched = opt.interval > 0 ? opt.nodes / opt.interval : 0;

		printf("=== whole run (%.0f s) ===\n", dt);
		report("all", &s0, &cur, z1, z2, z3, z4);   /* from zero: the whole run */
		if (first_err[0])
			printf("first error: %s\n", first_err);
		printf("RESULT sim heartbeats/s: %.0f of %.0f scheduled (%d nodes every %.0f s), "
		    "lag p99 %.1f ms, latency p99 %.1f ms; %.0f of the %.0f scheduled not sent by "
		    "the end\n", (double)hb / dt, sched, opt.nodes, opt.interval,
		    hist_q(c_lag, n_lag, 0.99), hist_q(c_lat, n_lat, 0.99),
		    fmax(0, sched * opt.duration - (double)(hb + cur.hb_err - s0.hb_err)),
		    sched * opt.duration);
		printf("RESULT sim /authorize: %.1f/s of %.1f, p50 %.1f ms, p99 %.1f ms, %llu errors;"
		    " receipts sent %llu, answered %llu\n", (double)auth / dt, opt.auth_rate,
		    hist_q(c_auth, n_auth, 0.5), hist_q(c_auth, n_auth, 0.99),
		    (unsigned long long)(cur.auth_err - s0.auth_err),
		    (unsigned long long)(cur.rc_sent - s0.rc_sent), (unsigned long long)jobs);
		printf("RESULT sim CPU: coordinators %.2f cores (%.0f us per request), simulator "
		    "%.2f cores, load average %.2f\n", (cur.coord_cpu - s0.coord_cpu) / dt,
		    reqs ? (cur.coord_cpu - s0.coord_cpu) * 1e6 / (double)reqs : 0,
		    (cur.self_cpu - s0.self_cpu) / dt, loadavg1());
		if (opt.redis_url)
			printf("RESULT sim Redis: used_memory %.1f MiB (%.0f bytes per node), %.0f "
			    "commands/s, %.2f cores\n", cur.sv.redis_mem / 1048576,
			    cur.sv.redis_mem / opt.nodes, (cur.sv.redis_cmds - s0.sv.redis_cmds) / dt,
			    (cur.sv.redis_cpu - s0.sv.redis_cpu) / dt);
		if (opt.database_url)
			printf("RESULT sim PostgreSQL: %.1f transactions/s, %.1f rows written/s, %.2f "
			    "cores\n", (cur.sv.pg_xact - s0.sv.pg_xact) / dt, (cur.sv.pg_ins +
			    cur.sv.pg_upd + cur.sv.pg_del - s0.sv.pg_ins - s0.sv.pg_upd - s0.sv.pg_del) /
			    dt, (cur.sv.pg_cpu - s0.sv.pg_cpu) / dt);
		/* the cost of each kind of request, when only one kind ran */
		if (hb && !auth && !peers) {
			printf("RESULT sim per heartbeat: coordinators %.1f us CPU, Redis %.2f "
			    "commands and %.1f us CPU, PostgreSQL %.3f transactions and %.1f us CPU\n",
			    (cur.coord_cpu - s0.coord_cpu) * 1e6 / (double)hb,
			    (cur.sv.redis_cmds - s0.sv.redis_cmds) / (double)hb,
			    (cur.sv.redis_cpu - s0.sv.redis_cpu) * 1e6 / (double)hb,
			    (cur.sv.pg_xact - s0.sv.pg_xact) / (double)hb,
			    (cur.sv.pg_cpu - s0.sv.pg_cpu) * 1e6 / (double)hb);
			if (opt.redis_url)
				print_cmdstats(&s0.sv, &cur.sv, (double)hb, "heartbeat");
		}
		if (auth && !hb && !peers) {
			double per = opt.settle ? (double)jobs : (double)auth;
			const char *unit = opt.settle ? "job (authorize + receipt)" : "authorization";
			printf("RESULT sim per %s: coordinators %.1f us CPU, Redis %.2f commands and "
			    "%.1f us CPU, PostgreSQL %.1f us CPU, %.2f transactions, %.2f rows written\n",
			    unit, (cur.coord_cpu - s0.coord_cpu) * 1e6 / per,
			    (cur.sv.redis_cmds - s0.sv.redis_cmds) / per,
			    (cur.sv.redis_cpu - s0.sv.redis_cpu) * 1e6 / per,
			    (cur.sv.pg_cpu - s0.sv.pg_cpu) * 1e6 / per,
			    (cur.sv.pg_xact - s0.sv.pg_xact) / per, (cur.sv.pg_ins + cur.sv.pg_upd +
			    cur.sv.pg_del - s0.sv.pg_ins - s0.sv.pg_upd - s0.sv.pg_del) / per);
			if (opt.redis_url)
				print_cmdstats(&s0.sv, &cur.sv, per, opt.settle ? "job" : "authorization");
		}
		if (peers && !hb && !auth)
			printf("RESULT sim per /peers: coordinators %.1f us CPU, Redis %.2f commands "
			    "and %.1f us CPU\n", (cur.coord_cpu - s0.coord_cpu) * 1e6 / (double)peers,
			    (cur.sv.redis_cmds - s0.sv.redis_cmds) / (double)peers,
			    (cur.sv.redis_cpu - s0.sv.redis_cpu) * 1e6 / (double)peers);
		if ((opt.interval > 0 && hb == 0) || (opt.auth_rate > 0 && auth == 0))
			rc = 2;
	}
	if (opt.redis_url && opt.redis_prefix)
		redis_keys(cur.sv.redis_mem);
	if (opt.database_url && opt.settle && ledger_check(atomic_load(&st.rc_ok)) != 0)
		rc = 2;
	return rc;
}
