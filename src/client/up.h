/*
 * up.h - the pieces of `troop up`, the local OpenAI-compatible proxy
 * (DESIGN.md section 10), shared by its files:
 *   up.c         the command: options, listen-address policy, API key,
 *                server threads, /health, the start-up message
 *   up_job.c     POST /v1/chat/completions, /v1/completions, /v1/embeddings:
 *                signed /authorize, relay to the worker, failover
 *   up_models.c  GET /v1/models (cached 10 s) and /v1/models/{model}
 *   up_self.c    refusing a worker address that is this proxy itself
 *   up_ui.c      your own page at /ui and the JSON it reads
 *   up_metrics.c the Prometheus metrics on --metrics-listen
 *
 * One up_server per process, read-only once the server runs (except the
 * models cache, which has its own lock).  One up_thread per server
 * thread, holding that thread's http_async (keep-alive connections to the
 * coordinator and the workers); everything about one request happens on
 * its thread's event loop, nothing blocks it.
 */
#ifndef TROOP_CLIENT_UP_H
#define TROOP_CLIENT_UP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_client.h"
#include "http_server.h"
#include "identity.h"

#define UP_TRIES 3                    /* authorizations per request */
#define UP_MODEL_MAX 255
#define UP_COORD_REPLY_MAX (256 * 1024)
#define UP_MODELS_TTL_MS 10000
#define UP_COORD_TIMEOUT_MS 15000L
/* A stream's headers came, no byte since: the worker counts as failed
 * after this long at least (it sends a keep-alive every 5 s while its
 * engine reads the prompt), plus 1 s per KiB of request body. */
#define UP_FIRST_TOKEN_MIN_MS 15000L

typedef struct up_server {
	char coordinator[512];          /* base URL, no trailing '/' */
	troop_identity id;              /* signs /authorize */
	bool require_key;               /* apps must send Bearer <api key> */
	unsigned char key_hash[32];     /* BLAKE2b of the API key */
	long first_byte_timeout_ms;     /* worker, for streamed replies */
	int64_t max_seconds;            /* per job; 0: the coordinator's default */
	int64_t wait_s;                 /* seconds a job may wait in the coordinator's
	                                   queue when every node is busy */
	bool require_sealed;            /* refuse nodes that offer no sealing key */
	int listen_port;                /* the port this proxy serves on */
	struct client_reports *reports; /* delivery reports (report.h); NULL: none */
	struct up_prefetch *prefetch;   /* tickets fetched ahead (up_prefetch.h); NULL: off */
	/* models cache: the OpenAI list as JSON text */
	pthread_mutex_t models_mu;
	char *models_json;
	size_t models_len;
	int64_t models_at_ms;           /* monotonic ms when fetched; 0: never */
	/* counters for the shutdown line */
	atomic_ullong jobs, failovers, failed;
} up_server;

typedef struct up_thread {
	up_server *srv;
	struct event_base *base;
	http_async *async;
} up_thread;

/* The thread context of a request. */
up_thread *up_thread_of(http_req *r);

/* Whether the request may go on: true, or false after answering 401
 * (wrong or missing API key).  Constant-time comparison. */
bool up_check_key(http_req *r, const up_server *s);

/* Answer with the OpenAI error shape {"error":{"message","type","code"}}
 * and, when job_id is not NULL, an X-Troop-Job header.  Ends the request. */
void up_reply_error(http_req *r, int status, const char *type, const char *code,
    const char *job_id, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Monotonic clock in ms / us. */
int64_t up_now_ms(void);
int64_t up_now_us(void);

/* Route handlers; arg is the up_server. */
void up_handle_inference(http_req *r, void *arg);
void up_handle_models(http_req *r, void *arg);
void up_handle_model(http_req *r, void *arg);
/* GET /v1/models/{org}/{name}: the same for an id with a slash. */
void up_handle_model_org(http_req *r, void *arg);

/* GET /ui (your own page) and GET /ui/api/{what} (its JSON: account,
 * balance, transactions, nodes), up_ui.c; arg is the up_server. */
void up_handle_ui(http_req *r, void *arg);
void up_handle_ui_api(http_req *r, void *arg);
/* A worker's reply was relayed: remember the job for GET /ui/api/jobs
 * (the last 200).  Thread-safe. */
void up_ui_job_done(const char *job_id, const char *node_id, const char *model, int status,
    int64_t duration_us);

/* Whether a worker address the coordinator named is this proxy itself
 * (its port on loopback, the unspecified address or an address of one of
 * this machine's interfaces): a node advertising that would make each
 * request authorize again through us (up_self.c).  Thread-safe. */
bool up_target_is_self(const up_server *s, const char *ip, long long port);

/* Free the models cache (at exit). */
void up_models_clear(up_server *s);

#endif
