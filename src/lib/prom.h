/*
 * prom.h - Prometheus metrics shared by every role: counters, gauges and
 * histograms with fixed buckets, and the text exposition format (0.0.4)
 * that GET /metrics answers with.
 *
 * The values are plain structs of relaxed atomics, declared where they are
 * bumped (a role's metrics file), so an update is one atomic add and never
 * takes a lock; rendering reads each atomic once (a scrape may see one
 * series a little ahead of another, as Prometheus allows).  Conventions of
 * the exposition format followed by every caller: counters end in _total,
 * durations are _seconds histograms, base units (seconds, ratios 0..1),
 * label values from small fixed sets only (never ids or free text).
 *
 * Writing: one prom_family_begin per metric name (its # HELP and # TYPE
 * lines), then one prom_write_* per series.  Label text is passed already
 * formatted ("outcome=\"ok\"") or empty; values must not need escaping.
 */
#ifndef TROOP_PROM_H
#define TROOP_PROM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dynbuf.h"

#define PROM_MAX_BUCKETS 16
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Limit of a rendered page (dynbuf_init's max). */
#define PROM_MAX_PAGE (1024u * 1024)

/* A monotonically increasing integer count (events, bytes, credit-seconds). */
typedef struct {
	atomic_ullong v;
} prom_counter;

/* A value that goes up and down, held as the bits of a double. */
typedef struct {
	atomic_ullong bits;
} prom_gauge;

/* A distribution over fixed upper bounds (ascending, +Inf implied). */
typedef struct {
	const double *bounds;            /* static array of n bounds */
	int n;                           /* <= PROM_MAX_BUCKETS */
	atomic_ullong counts[PROM_MAX_BUCKETS + 1];  /* per bucket, not cumulative;
	                                              * the last is +Inf */
	atomic_ullong count;
	atomic_ullong sum_bits;          /* double */
} prom_histogram;

/* Bucket sets for the usual quantities (seconds, tokens per second). */
#define PROM_BUCKETS_LATENCY_N 13
extern const double prom_buckets_latency[PROM_BUCKETS_LATENCY_N];   /* 5 ms .. 60 s */
#define PROM_BUCKETS_OVERHEAD_N 12
extern const double prom_buckets_overhead[PROM_BUCKETS_OVERHEAD_N]; /* 1 ms .. 5 s:
                                                                      * a hop's added latency */
#define PROM_BUCKETS_RATE_N 13
extern const double prom_buckets_rate[PROM_BUCKETS_RATE_N];         /* 1 .. 1000 tokens/s */

/* A static initialiser for a histogram over one of those sets, e.g.
 * static prom_histogram h = PROM_HISTOGRAM(prom_buckets_latency,
 * PROM_BUCKETS_LATENCY_N); ready before any thread runs. */
#define PROM_HISTOGRAM(bounds_, n_) { .bounds = (bounds_), .n = (n_) }

/* All thread-safe and lock-free. */
void prom_counter_add(prom_counter *c, unsigned long long n);
unsigned long long prom_counter_get(const prom_counter *c);
void prom_gauge_set(prom_gauge *g, double v);
void prom_gauge_add(prom_gauge *g, double d);
double prom_gauge_get(const prom_gauge *g);

/* Set the bucket bounds (static storage, ascending; n is clamped to
 * PROM_MAX_BUCKETS) of a zeroed histogram.  Call before any observe. */
void prom_histogram_init(prom_histogram *h, const double *bounds, int n);
/* Count one observation (NaN and negative values are ignored). */
void prom_histogram_observe(prom_histogram *h, double v);

/* ---- the text format --------------------------------------------------- */

/* "# HELP name help\n# TYPE name type\n" (type: counter, gauge, histogram).
 * Returns 0 or TROOP_ETOOLARGE / TROOP_ENOMEM (the dynbuf's). */
int prom_family_begin(dynbuf *b, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value (labels may be "" or NULL). */
int prom_write_value(dynbuf *b, const char *name, const char *labels, double v);
int prom_write_counter(dynbuf *b, const char *name, const char *labels, const prom_counter *c);
int prom_write_gauge(dynbuf *b, const char *name, const char *labels, const prom_gauge *g);
/* name_bucket{labels,le="..."} (cumulative), name_sum, name_count. */
int prom_write_histogram(dynbuf *b, const char *name, const char *labels,
    const prom_histogram *h);

/* Header and one series in one call (the common unlabelled case). */
int prom_counter_family(dynbuf *b, const char *name, const char *help, const prom_counter *c);
int prom_gauge_family(dynbuf *b, const char *name, const char *help, double v);
int prom_histogram_family(dynbuf *b, const char *name, const char *help,
    const prom_histogram *h);

#endif
