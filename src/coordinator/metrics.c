/*
 * metrics.c - Prometheus text rendering of the coordinator's counters
 * (prom.h writes the format).  Names keep the troop_ prefix they always
 * had, so dashboards built on them go on working.
 */
#include "metrics.h"

#include <stdlib.h>

#include "prom.h"

static int write_counter(dynbuf *b, const char *name, const char *labels,
    const atomic_ullong *v)
{
	return prom_write_value(b, name, labels,
	    (double)atomic_load_explicit((atomic_ullong *)v, memory_order_relaxed));
}

static int family(dynbuf *b, const char *name, const char *help, const atomic_ullong *v)
{
	int rc = prom_family_begin(b, name, "counter", help);

	return rc != 0 ? rc : write_counter(b, name, NULL, v);
}

char *metrics_render(const coord_metrics *m, const coord_gauges *g, size_t *len)
{
	dynbuf b;
	int rc = 0;

	dynbuf_init(&b, PROM_MAX_PAGE);
	rc |= family(&b, "troop_heartbeats_total", "Heartbeats accepted.", &m->heartbeats);
	rc |= prom_family_begin(&b, "troop_authorizations_total", "counter",
	    "Authorization attempts by result.");
	rc |= write_counter(&b, "troop_authorizations_total", "result=\"ok\"", &m->auth_ok);
	rc |= write_counter(&b, "troop_authorizations_total", "result=\"insufficient_credits\"",
	    &m->auth_no_credits);
	rc |= write_counter(&b, "troop_authorizations_total", "result=\"model_not_found\"",
	    &m->auth_no_model);
	rc |= write_counter(&b, "troop_authorizations_total", "result=\"no_capacity\"",
	    &m->auth_no_capacity);
	rc |= write_counter(&b, "troop_authorizations_total", "result=\"rate_limited\"",
	    &m->auth_rate_limited);
	rc |= write_counter(&b, "troop_authorizations_total", "result=\"suspended\"",
	    &m->auth_suspended);
	rc |= family(&b, "troop_bad_signatures_total", "Signed requests rejected with 401.",
	    &m->bad_signatures);
	rc |= family(&b, "troop_receipts_total", "Job receipts settled.", &m->receipts);
	rc |= family(&b, "troop_tokens_total",
	    "Completion tokens of settled jobs (capped at what their duration allows).",
	    &m->tokens_out);
	rc |= family(&b, "troop_credits_reserved_total", "Credit-seconds put in escrow.",
	    &m->credits_reserved);
	rc |= family(&b, "troop_credits_charged_total", "Credit-seconds paid to workers.",
	    &m->credits_charged);
	rc |= family(&b, "troop_reservations_released_total",
	    "Reservations released unpaid at expiry.", &m->released);
	rc |= prom_family_begin(&b, "troop_audits_total", "counter",
	    "Audit verdicts on nodes by result (inconclusive: no majority).");
	rc |= write_counter(&b, "troop_audits_total", "result=\"pass\"", &m->audit_pass);
	rc |= write_counter(&b, "troop_audits_total", "result=\"fail\"", &m->audit_fail);
	rc |= write_counter(&b, "troop_audits_total", "result=\"inconclusive\"",
	    &m->audit_inconclusive);
	rc |= prom_family_begin(&b, "troop_http_responses_total", "counter",
	    "HTTP responses by status class.");
	rc |= write_counter(&b, "troop_http_responses_total", "class=\"2xx\"", &m->req_2xx);
	rc |= write_counter(&b, "troop_http_responses_total", "class=\"4xx\"", &m->req_4xx);
	rc |= write_counter(&b, "troop_http_responses_total", "class=\"5xx\"", &m->req_5xx);
	rc |= prom_gauge_family(&b, "troop_live_nodes", "Nodes with a heartbeat within their TTL.",
	    (double)g->live_nodes);
	rc |= prom_family_begin(&b, "troop_nodes", "gauge", "Live nodes by status.");
	rc |= prom_write_value(&b, "troop_nodes", "status=\"idle\"", (double)g->idle_nodes);
	rc |= prom_write_value(&b, "troop_nodes", "status=\"busy\"", (double)g->busy_nodes);
	rc |= prom_gauge_family(&b, "troop_models", "Distinct models served by live nodes.",
	    (double)g->models);
	rc |= prom_gauge_family(&b, "troop_uptime_seconds", "Seconds since the coordinator started.",
	    (double)(g->uptime_s > 0 ? g->uptime_s : 0));
	rc |= prom_family_begin(&b, "troop_build_info", "gauge",
	    "Always 1; the version of the coordinator in a label.");
	rc |= prom_write_value(&b, "troop_build_info", "role=\"coordinator\",version=\"" TROOP_VERSION "\"", 1);
	if (rc != 0) {
		dynbuf_free(&b);
		return NULL;
	}
	return dynbuf_take(&b, len);
}
