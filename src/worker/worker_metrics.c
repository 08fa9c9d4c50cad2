/*
 * worker_metrics.c - the worker's metrics of worker_metrics.h.
 *
 * Label sets are fixed: outcome is one of job_outcome_name's six names,
 * the engine's error status is folded into its class (4xx, 5xx), so no
 * series is ever created from request data.
 */
#include "worker_metrics.h"

#include <stdatomic.h>
#include <stdio.h>

#include "error.h"
#include "prom.h"
#include "proxy.h"
#include "verifier.h"

#define N_OUTCOMES 6

static struct {
	prom_counter jobs[N_OUTCOMES];
	prom_counter tokens;
	prom_counter engine_4xx, engine_5xx, engine_failed;
	prom_counter earned;
	prom_counter receipts_paid;
	prom_histogram first_token;     /* seconds */
	prom_histogram duration;        /* seconds */
	prom_histogram tokens_per_s;
	prom_gauge gpu_util;            /* 0..1 */
	prom_gauge gpu_known;
	prom_gauge owner_busy;          /* 1 while the owner's use keeps it BUSY */
	_Atomic(struct proxy *) px;
	_Atomic(struct verifier *) ver;
	atomic_int max_jobs;
} wm = {
	.first_token = PROM_HISTOGRAM(prom_buckets_latency, PROM_BUCKETS_LATENCY_N),
	.duration = PROM_HISTOGRAM(prom_buckets_latency, PROM_BUCKETS_LATENCY_N),
	.tokens_per_s = PROM_HISTOGRAM(prom_buckets_rate, PROM_BUCKETS_RATE_N),
};

void worker_metrics_bind(struct proxy *px, struct verifier *ver, int max_jobs)
{
	atomic_store(&wm.px, px);
	atomic_store(&wm.ver, ver);
	atomic_store(&wm.max_jobs, max_jobs);
}

void worker_metrics_unbind(void)
{
	atomic_store(&wm.px, NULL);
	atomic_store(&wm.ver, NULL);
}

void worker_metrics_job(const worker_job *rec, const relay_stats *st)
{
	int o = (int)rec->outcome;

	if (o < 0 || o >= N_OUTCOMES)
		o = JOB_ERROR;
	prom_counter_add(&wm.jobs[o], 1);
	if (rec->completion_tokens > 0)
		prom_counter_add(&wm.tokens, (unsigned long long)rec->completion_tokens);
	if (st && st->upstream_status >= 500)
		prom_counter_add(&wm.engine_5xx, 1);
	else if (st && st->upstream_status >= 400)
		prom_counter_add(&wm.engine_4xx, 1);
	else if (rec->outcome == JOB_ENGINE_ERROR || (st && st->end == RELAY_END_UPSTREAM))
		prom_counter_add(&wm.engine_failed, 1);
	if (rec->outcome == JOB_REJECTED)
		return;
	if (rec->duration_ms >= 0)
		prom_histogram_observe(&wm.duration, (double)rec->duration_ms / 1000.0);
	if (st && st->ttfb_us >= 0 && rec->outcome != JOB_ENGINE_ERROR)
		prom_histogram_observe(&wm.first_token, (double)st->ttfb_us / 1e6);
	/* generation speed: tokens after the first, over the time after it */
	if (rec->outcome == JOB_OK && st && st->ttfb_us >= 0 && rec->completion_tokens > 1) {
		double gen_s = (double)rec->duration_ms / 1000.0 - (double)st->ttfb_us / 1e6;
		if (gen_s > 0.001)
			prom_histogram_observe(&wm.tokens_per_s,
			    (double)(rec->completion_tokens - 1) / gen_s);
	}
}

void worker_metrics_earned(int64_t charged)
{
	prom_counter_add(&wm.receipts_paid, 1);
	if (charged > 0)
		prom_counter_add(&wm.earned, (unsigned long long)charged);
}

void worker_metrics_gpu(const gpu_info *g, bool owner_busy)
{
	bool known = g && g->count > 0 && g->util_percent >= 0;

	prom_gauge_set(&wm.gpu_known, known ? 1 : 0);
	prom_gauge_set(&wm.gpu_util, known ? (double)g->util_percent / 100.0 : 0);
	prom_gauge_set(&wm.owner_busy, owner_busy ? 1 : 0);
}

int worker_metrics_render(dynbuf *b, void *arg)
{
	struct proxy *px = atomic_load(&wm.px);
	struct verifier *ver = atomic_load(&wm.ver);
	double mult = 0;
	bool verified = false;
	int rc = 0;

	(void)arg;
	if (ver)
		verified = verifier_verified(ver, &mult);
	rc |= prom_family_begin(b, "troop_worker_jobs_total", "counter",
	    "Jobs that reached this worker, by how they ended.");
	for (int o = 0; o < N_OUTCOMES; o++) {
		char l[48];
		snprintf(l, sizeof(l), "outcome=\"%s\"", job_outcome_name((job_outcome)o));
		rc |= prom_write_counter(b, "troop_worker_jobs_total", l, &wm.jobs[o]);
	}
	rc |= prom_gauge_family(b, "troop_worker_active_jobs", "Jobs running now.",
	    px ? (double)proxy_active_jobs(px) : 0);
	rc |= prom_gauge_family(b, "troop_worker_max_jobs",
	    "Jobs served at once (--max-jobs); more are refused with 429.",
	    (double)atomic_load(&wm.max_jobs));
	rc |= prom_counter_family(b, "troop_worker_tokens_total",
	    "Completion tokens generated.", &wm.tokens);
	rc |= prom_histogram_family(b, "troop_worker_first_token_seconds",
	    "Time from the job's start to the first byte of the engine's reply.",
	    &wm.first_token);
	rc |= prom_histogram_family(b, "troop_worker_job_duration_seconds",
	    "Whole job time (what is charged for).", &wm.duration);
	rc |= prom_histogram_family(b, "troop_worker_tokens_per_second",
	    "Generation speed of completed jobs, after the first token.", &wm.tokens_per_s);
	rc |= prom_family_begin(b, "troop_worker_engine_errors_total", "counter",
	    "Engine failures: an error status by class, or no reply (status=\"none\").");
	rc |= prom_write_counter(b, "troop_worker_engine_errors_total", "status=\"4xx\"",
	    &wm.engine_4xx);
	rc |= prom_write_counter(b, "troop_worker_engine_errors_total", "status=\"5xx\"",
	    &wm.engine_5xx);
	rc |= prom_write_counter(b, "troop_worker_engine_errors_total", "status=\"none\"",
	    &wm.engine_failed);
	rc |= prom_counter_family(b, "troop_worker_credits_earned_total",
	    "Credit-seconds the coordinator paid for this node's receipts.", &wm.earned);
	rc |= prom_counter_family(b, "troop_worker_receipts_settled_total",
	    "Receipts the coordinator settled.", &wm.receipts_paid);
	rc |= prom_gauge_family(b, "troop_worker_verified",
	    "1 when the coordinator accepted this node's proof of hardware.", verified ? 1 : 0);
	rc |= prom_gauge_family(b, "troop_worker_hardware_multiplier",
	    "Earnings multiplier the proof of hardware recorded (0 until verified).",
	    verified ? mult : 0);
	rc |= prom_gauge_family(b, "troop_worker_gpu_utilization_ratio",
	    "GPU utilisation at the last sample, 0..1 (busiest device).",
	    prom_gauge_get(&wm.gpu_util));
	rc |= prom_gauge_family(b, "troop_worker_gpu_known",
	    "1 when a GPU and its utilisation could be read.", prom_gauge_get(&wm.gpu_known));
	rc |= prom_gauge_family(b, "troop_worker_donating",
	    "1 while the node takes jobs; 0 while the owner's use of the GPU keeps it BUSY.",
	    1 - prom_gauge_get(&wm.owner_busy));
	rc |= prom_family_begin(b, "troop_build_info", "gauge",
	    "Always 1; the role and version in labels.");
	rc |= prom_write_value(b, "troop_build_info",
	    "role=\"worker\",version=\"" TROOP_VERSION "\"", 1);
	return rc != 0 ? TROOP_ENOMEM : 0;
}
