/*
 * metrics.h - the coordinator's counters, exposed on GET /metrics in the
 * Prometheus text format (version 0.0.4, written by prom.h; every metric
 * is listed in docs/METRICS.md).  Counters are relaxed atomics: any thread
 * may bump them without a lock.
 */
#ifndef TROOP_COORD_METRICS_H
#define TROOP_COORD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct {
	atomic_ullong heartbeats;         /* accepted heartbeats */
	atomic_ullong auth_ok;            /* tickets issued */
	atomic_ullong auth_no_credits;    /* 402 */
	atomic_ullong auth_no_model;      /* 404 */
	atomic_ullong auth_no_capacity;   /* 503 */
	atomic_ullong auth_rate_limited;  /* 429: the account's or address's rate */
	atomic_ullong auth_suspended;     /* 403: the account is suspended */
	atomic_ullong bad_signatures;     /* 401 on signed routes */
	atomic_ullong receipts;           /* settled receipts */
	atomic_ullong tokens_out;         /* completion tokens of settled receipts */
	atomic_ullong credits_reserved;   /* credit-seconds put in escrow */
	atomic_ullong credits_charged;    /* credit-seconds moved to workers */
	atomic_ullong released;           /* reservations released on expiry */
	atomic_ullong audit_pass, audit_fail; /* audit verdicts (audit.c) */
	atomic_ullong audit_inconclusive; /* audits with answers and no majority */
	atomic_ullong req_2xx, req_4xx, req_5xx;
} coord_metrics;

#define METRIC_ADD(m, field, n) atomic_fetch_add_explicit(&(m)->field, (n), memory_order_relaxed)

/* What /metrics reports besides the counters: read from the registry at
 * scrape time. */
typedef struct {
	size_t live_nodes;                /* heartbeat within TTL */
	size_t idle_nodes, busy_nodes;    /* of those, by status */
	size_t models;                    /* distinct models of live nodes */
	long uptime_s;
} coord_gauges;

/* Render the counters plus the gauges as Prometheus text into a malloc'd
 * string (caller frees; *len its length); NULL on ENOMEM.  Thread-safe. */
char *metrics_render(const coord_metrics *m, const coord_gauges *g, size_t *len);

#endif
