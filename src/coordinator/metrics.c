/*
 * metrics.c - Prometheus text rendering of the coordinator's counters.
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>

struct metric_row {
	const char *name;
	const char *type;
	const char *help;
	const char *labels;
	unsigned long long value;
};

char *metrics_render(const coord_metrics *m, size_t live_nodes, size_t models,
    long uptime_s, size_t *len)
{
#define V(f) atomic_load_explicit(&m->f, memory_order_relaxed)
	const struct metric_row rows[] = {
		{ "troop_heartbeats_total", "counter", "Heartbeats accepted.", "", V(heartbeats) },
		{ "troop_authorizations_total", "counter", "Authorization attempts by result.",
		  "result=\"ok\"", V(auth_ok) },
		{ "troop_authorizations_total", NULL, NULL, "result=\"insufficient_credits\"", V(auth_no_credits) },
		{ "troop_authorizations_total", NULL, NULL, "result=\"model_not_found\"", V(auth_no_model) },
		{ "troop_authorizations_total", NULL, NULL, "result=\"no_capacity\"", V(auth_no_capacity) },
		{ "troop_authorizations_total", NULL, NULL, "result=\"rate_limited\"", V(auth_rate_limited) },
		{ "troop_authorizations_total", NULL, NULL, "result=\"suspended\"", V(auth_suspended) },
		{ "troop_bad_signatures_total", "counter", "Signed requests rejected with 401.", "", V(bad_signatures) },
		{ "troop_receipts_total", "counter", "Job receipts settled.", "", V(receipts) },
		{ "troop_credits_reserved_total", "counter", "Credit-seconds put in escrow.", "", V(credits_reserved) },
		{ "troop_credits_charged_total", "counter", "Credit-seconds paid to workers.", "", V(credits_charged) },
		{ "troop_reservations_released_total", "counter", "Reservations released unpaid at expiry.", "", V(released) },
		{ "troop_http_responses_total", "counter", "HTTP responses by status class.", "class=\"2xx\"", V(req_2xx) },
		{ "troop_http_responses_total", NULL, NULL, "class=\"4xx\"", V(req_4xx) },
		{ "troop_http_responses_total", NULL, NULL, "class=\"5xx\"", V(req_5xx) },
		{ "troop_live_nodes", "gauge", "Nodes with a heartbeat within their TTL.", "", live_nodes },
		{ "troop_models", "gauge", "Distinct models served by live nodes.", "", models },
		{ "troop_uptime_seconds", "gauge", "Seconds since the coordinator started.", "",
		  (unsigned long long)(uptime_s > 0 ? uptime_s : 0) },
	};
#undef V
	size_t cap = 4096, off = 0;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct metric_row *r = &rows[i];
		int n;
		if (r->help)
			n = snprintf(buf + off, cap - off, "# HELP %s %s\n# TYPE %s %s\n",
			    r->name, r->help, r->name, r->type);
		else
			n = 0;
		if (n < 0 || (size_t)n >= cap - off)
			goto toolong;
		off += (size_t)n;
		n = snprintf(buf + off, cap - off, "%s%s%s%s %llu\n", r->name,
		    r->labels[0] ? "{" : "", r->labels, r->labels[0] ? "}" : "", r->value);
		if (n < 0 || (size_t)n >= cap - off)
			goto toolong;
		off += (size_t)n;
	}
	if (len)
		*len = off;
	return buf;
toolong:
	free(buf);
	return NULL;
}
