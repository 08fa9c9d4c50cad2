/*
 * worker_metrics.h - the worker's Prometheus metrics (docs/METRICS.md):
 * jobs by outcome, time to first token and tokens per second, engine
 * errors by status class, credits earned, the proof-of-hardware state,
 * GPU utilisation and whether the node donates right now.
 *
 * One set per process.  The proxy, the receipt sender and the heartbeat
 * thread each report with one call where the thing happens; the values
 * are relaxed atomics (prom.h), so every call is thread-safe and takes no
 * lock.  GET /metrics is served on its own loopback listener
 * (--metrics-listen, metrics_server.h), never on the proxy's public port:
 * the numbers reveal the owner's usage.
 */
#ifndef TROOP_WORKER_METRICS_H
#define TROOP_WORKER_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "dynbuf.h"
#include "gpu.h"
#include "job.h"
#include "relay.h"

struct proxy;
struct verifier;

/* Where the gauges read at scrape time come from (both may be NULL, and
 * must outlive any scrape: unbind before freeing them). */
void worker_metrics_bind(struct proxy *px, struct verifier *ver, int max_jobs);
void worker_metrics_unbind(void);

/* A job ended (proxy.c): its record and the relay's numbers (st may be
 * NULL). */
void worker_metrics_job(const worker_job *rec, const relay_stats *st);
/* The coordinator settled a receipt and paid `charged` credit-seconds. */
void worker_metrics_earned(int64_t charged);
/* A GPU sample (heartbeat.c): utilisation, and whether the owner's use
 * has made the node BUSY (not donating). */
void worker_metrics_gpu(const gpu_info *g, bool owner_busy);

/* Append the whole page to b.  Returns 0 or the dynbuf's error. */
int worker_metrics_render(dynbuf *b, void *arg);

#endif
