/*
 * metrics.h - the coordinator's counters, exposed on GET /metrics in the
 * Prometheus text format (version 0.0.4).  Counters are relaxed atomics:
 * any thread may bump them without a lock.
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
	atomic_ullong credits_reserved;   /* credit-seconds put in escrow */
	atomic_ullong credits_charged;    /* credit-seconds moved to workers */
	atomic_ullong released;           /* reservations released on expiry */
	atomic_ullong req_2xx, req_4xx, req_5xx;
} coord_metrics;

#define METRIC_ADD(m, field, n) atomic_fetch_add_explicit(&(m)->field, (n), memory_order_relaxed)

/* Render the counters plus the gauges given (live nodes, models) as
 * Prometheus text into a malloc'd string (caller frees); NULL on ENOMEM. */
char *metrics_render(const coord_metrics *m, size_t live_nodes, size_t models,
    long uptime_s, size_t *len);

#endif
