/*
 * up_metrics.c - the metrics of up_metrics.h.  Status codes are folded
 * into their class so that the label set stays fixed.
 */
#include "up_metrics.h"

#include <stdatomic.h>
#include <stdio.h>

#include "error.h"
#include "prom.h"
#include "up.h"
#include "up_prefetch.h"

enum { C_2XX, C_4XX, C_5XX, C_NONE, N_CLASSES };

static struct {
	prom_counter replies[N_CLASSES];
	prom_counter relayed;
	prom_counter reserved;
	prom_counter tickets;
	prom_counter prefetch[3];       /* fetched, none, used */
	prom_histogram authorize;       /* seconds */
	prom_histogram first_byte;      /* seconds */
} um = {
	.authorize = PROM_HISTOGRAM(prom_buckets_overhead, PROM_BUCKETS_OVERHEAD_N),
	.first_byte = PROM_HISTOGRAM(prom_buckets_latency, PROM_BUCKETS_LATENCY_N),
};

static int class_of(int status)
{
	return status >= 200 && status < 400 ? C_2XX : status >= 400 && status < 500 ? C_4XX :
	    status >= 500 ? C_5XX : C_NONE;
}

void up_metrics_reply(int status)
{
	prom_counter_add(&um.replies[class_of(status)], 1);
}

void up_metrics_relayed(const relay_stats *st)
{
	prom_counter_add(&um.replies[class_of(st->status)], 1);
	prom_counter_add(&um.relayed, 1);
	if (st->ttfb_us >= 0)
		prom_histogram_observe(&um.first_byte, (double)st->ttfb_us / 1e6);
}

void up_metrics_authorize_us(int64_t us)
{
	if (us >= 0)
		prom_histogram_observe(&um.authorize, (double)us / 1e6);
}

void up_metrics_reserved(int64_t credits)
{
	prom_counter_add(&um.tickets, 1);
	if (credits > 0)
		prom_counter_add(&um.reserved, (unsigned long long)credits);
}

void up_metrics_prefetch(bool ok, int64_t credits)
{
	prom_counter_add(&um.prefetch[ok ? 0 : 1], 1);
	if (ok)
		up_metrics_reserved(credits);
}

void up_metrics_prefetch_used(void)
{
	prom_counter_add(&um.prefetch[2], 1);
}

int up_metrics_render(dynbuf *b, void *arg)
{
	static const char *const cls[N_CLASSES] = { "2xx", "4xx", "5xx", "none" };
	up_server *s = arg;
	int rc = 0;

	rc |= prom_family_begin(b, "troop_up_requests_total", "counter",
	    "Inference requests answered, by the class of the status the app got "
	    "(none: the app went away first).");
	for (int i = 0; i < N_CLASSES; i++) {
		char l[32];
		snprintf(l, sizeof(l), "class=\"%s\"", cls[i]);
		rc |= prom_write_counter(b, "troop_up_requests_total", l, &um.replies[i]);
	}
	rc |= prom_counter_family(b, "troop_up_relayed_total",
	    "Requests a worker answered (its reply relayed to the app).", &um.relayed);
	rc |= prom_family_begin(b, "troop_up_failovers_total", "counter",
	    "Times a worker failed before answering and another was tried.");
	rc |= prom_write_value(b, "troop_up_failovers_total", NULL,
	    s ? (double)atomic_load(&s->failovers) : 0);
	rc |= prom_counter_family(b, "troop_up_tickets_total",
	    "Tickets the coordinator issued (one per authorization that found a node).",
	    &um.tickets);
	rc |= prom_counter_family(b, "troop_up_credits_reserved_total",
	    "Credit-seconds reserved for this account's jobs (the most each may cost; "
	    "the unused part is refunded when it settles).", &um.reserved);
	rc |= prom_family_begin(b, "troop_up_prefetch_total", "counter",
	    "Tickets fetched ahead of a session's next request: fetched, none (the "
	    "coordinator had none to give), used (a request went without waiting for "
	    "/authorize).");
	{
		static const char *const res[3] = { "fetched", "none", "used" };
		for (int i = 0; i < 3; i++) {
			char l[32];
			snprintf(l, sizeof(l), "result=\"%s\"", res[i]);
			rc |= prom_write_counter(b, "troop_up_prefetch_total", l, &um.prefetch[i]);
		}
	}
	{
		int64_t held = 0, credits = 0;
		if (s && s->prefetch)
			up_prefetch_held(s->prefetch, &held, &credits);
		rc |= prom_family_begin(b, "troop_up_prefetch_held_credits", "gauge",
		    "Credit-seconds reserved by tickets fetched ahead and not used yet.");
		rc |= prom_write_value(b, "troop_up_prefetch_held_credits", NULL, (double)credits);
	}
	rc |= prom_histogram_family(b, "troop_up_authorize_seconds",
	    "Latency the signed /authorize round trip adds to a request.", &um.authorize);
	rc |= prom_histogram_family(b, "troop_up_worker_first_byte_seconds",
	    "From sending the request to a worker to its first reply byte relayed.",
	    &um.first_byte);
	rc |= prom_family_begin(b, "troop_build_info", "gauge",
	    "Always 1; the role and version in labels.");
	rc |= prom_write_value(b, "troop_build_info",
	    "role=\"client\",version=\"" TROOP_VERSION "\"", 1);
	return rc != 0 ? TROOP_ENOMEM : 0;
}
