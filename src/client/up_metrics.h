/*
 * up_metrics.h - `troop up`'s Prometheus metrics (docs/METRICS.md): the
 * app's requests by the class of the answer they got, the latency each
 * hop adds (the signed /authorize, the worker's first byte), failovers
 * and the credits reserved for this account.
 *
 * One set per process; every call is one relaxed atomic update (prom.h),
 * thread-safe and lock-free, made where the thing happens in up_job.c.
 * GET /metrics is served on its own listener (--metrics-listen, loopback
 * only unless allowed: metrics_server.h), never on the proxy's port.
 */
#ifndef TROOP_CLIENT_UP_METRICS_H
#define TROOP_CLIENT_UP_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "dynbuf.h"
#include "relay.h"

/* troop up answered a request itself with `status` (an error). */
void up_metrics_reply(int status);
/* A worker's reply was relayed to the app (st: the relay's numbers). */
void up_metrics_relayed(const relay_stats *st);
/* One /authorize round trip took `us` microseconds. */
void up_metrics_authorize_us(int64_t us);
/* A ticket reserved `credits` credit-seconds. */
void up_metrics_reserved(int64_t credits);

/* A ticket fetched ahead came back (`ok`, reserving `credits`) or not. */
void up_metrics_prefetch(bool ok, int64_t credits);
/* A request went to its worker with a ticket fetched ahead. */
void up_metrics_prefetch_used(void);

/* Append the page (arg: the up_server, for its request counters). */
int up_metrics_render(dynbuf *b, void *arg);

#endif
