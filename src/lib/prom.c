/*
 * prom.c - the counters, gauges, histograms and text writer of prom.h.
 *
 * Doubles live in atomic 64-bit words (their bits): a gauge set is a
 * store, an add or a histogram sum a compare-and-swap loop, so no metric
 * update ever takes a lock on a request path.
 */
#include "prom.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

const double prom_buckets_latency[PROM_BUCKETS_LATENCY_N] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
const double prom_buckets_overhead[PROM_BUCKETS_OVERHEAD_N] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};
const double prom_buckets_rate[PROM_BUCKETS_RATE_N] = {
	1, 2.5, 5, 10, 20, 40, 60, 80, 100, 150, 250, 500, 1000,
};
_Static_assert(PROM_BUCKETS_LATENCY_N <= PROM_MAX_BUCKETS &&
    PROM_BUCKETS_OVERHEAD_N <= PROM_MAX_BUCKETS && PROM_BUCKETS_RATE_N <= PROM_MAX_BUCKETS,
    "a bucket set larger than a histogram holds");

static unsigned long long d2u(double d)
{
	unsigned long long u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static double u2d(unsigned long long u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* Add to a double held in an atomic word. */
static void atomic_double_add(atomic_ullong *w, double d)
{
	unsigned long long old = atomic_load_explicit(w, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(w, &old, d2u(u2d(old) + d),
	    memory_order_relaxed, memory_order_relaxed))
		;
}

void prom_counter_add(prom_counter *c, unsigned long long n)
{
	atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

unsigned long long prom_counter_get(const prom_counter *c)
{
	return atomic_load_explicit(&((prom_counter *)c)->v, memory_order_relaxed);
}

void prom_gauge_set(prom_gauge *g, double v)
{
	atomic_store_explicit(&g->bits, d2u(v), memory_order_relaxed);
}

void prom_gauge_add(prom_gauge *g, double d)
{
	atomic_double_add(&g->bits, d);
}

double prom_gauge_get(const prom_gauge *g)
{
	return u2d(atomic_load_explicit(&((prom_gauge *)g)->bits, memory_order_relaxed));
}

void prom_histogram_init(prom_histogram *h, const double *bounds, int n)
{
	h->bounds = bounds;
	h->n = n < 0 ? 0 : n > PROM_MAX_BUCKETS ? PROM_MAX_BUCKETS : n;
}

void prom_histogram_observe(prom_histogram *h, double v)
{
	int i = 0;

	if (isnan(v) || v < 0)
		return;
	while (i < h->n && v > h->bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_double_add(&h->sum_bits, v);
}

/* ---- the text format --------------------------------------------------- */

/* A sample value: integers without a fraction, +Inf/-Inf/NaN spelled as
 * the format wants. */
static void fmt_value(char *out, size_t len, double v)
{
	if (isnan(v))
		snprintf(out, len, "NaN");
	else if (isinf(v))
		snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		snprintf(out, len, "%.0f", v);
	else
		snprintf(out, len, "%.9g", v);
}

int prom_family_begin(dynbuf *b, const char *name, const char *type, const char *help)
{
	return dynbuf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int write_sample(dynbuf *b, const char *name, const char *suffix, const char *labels,
    const char *extra, double v)
{
	char val[64];
	bool has = labels && labels[0];
	bool more = extra && extra[0];

	fmt_value(val, sizeof(val), v);
	if (!has && !more)
		return dynbuf_addf(b, "%s%s %s\n", name, suffix, val);
	return dynbuf_addf(b, "%s%s{%s%s%s} %s\n", name, suffix, has ? labels : "",
	    has && more ? "," : "", more ? extra : "", val);
}

int prom_write_value(dynbuf *b, const char *name, const char *labels, double v)
{
	return write_sample(b, name, "", labels, NULL, v);
}

int prom_write_counter(dynbuf *b, const char *name, const char *labels, const prom_counter *c)
{
	return write_sample(b, name, "", labels, NULL, (double)prom_counter_get(c));
}

int prom_write_gauge(dynbuf *b, const char *name, const char *labels, const prom_gauge *g)
{
	return write_sample(b, name, "", labels, NULL, prom_gauge_get(g));
}

int prom_write_histogram(dynbuf *b, const char *name, const char *labels,
    const prom_histogram *h)
{
	prom_histogram *m = (prom_histogram *)h;
	unsigned long long cum = 0;
	char le[64], val[48];
	int rc;

	for (int i = 0; i <= h->n; i++) {
		cum += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
		if (i < h->n)
			fmt_value(val, sizeof(val), h->bounds[i]);
		else
			snprintf(val, sizeof(val), "+Inf");
		snprintf(le, sizeof(le), "le=\"%s\"", val);
		if ((rc = write_sample(b, name, "_bucket", labels, le, (double)cum)) != 0)
			return rc;
	}
	if ((rc = write_sample(b, name, "_sum", labels, NULL,
	    u2d(atomic_load_explicit(&m->sum_bits, memory_order_relaxed)))) != 0)
		return rc;
	/* the +Inf bucket and _count must agree: use the cumulative count */
	return write_sample(b, name, "_count", labels, NULL, (double)cum);
}

int prom_counter_family(dynbuf *b, const char *name, const char *help, const prom_counter *c)
{
	int rc = prom_family_begin(b, name, "counter", help);

	return rc != 0 ? rc : prom_write_counter(b, name, NULL, c);
}

int prom_gauge_family(dynbuf *b, const char *name, const char *help, double v)
{
	int rc = prom_family_begin(b, name, "gauge", help);

	return rc != 0 ? rc : prom_write_value(b, name, NULL, v);
}

int prom_histogram_family(dynbuf *b, const char *name, const char *help,
    const prom_histogram *h)
{
	int rc = prom_family_begin(b, name, "histogram", help);

	return rc != 0 ? rc : prom_write_histogram(b, name, NULL, h);
}
