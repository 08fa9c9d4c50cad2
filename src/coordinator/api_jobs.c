/*
 * api_jobs.c - settlement of finished jobs (DESIGN.md section 7):
 *   POST /jobs/{job_id}/receipt   signed by the node that served the job
 *   POST /jobs/{job_id}/report    signed by the account that authorized it:
 *                                 the client's delivery report
 *   POST /jobs/{job_id}/started   signed by the ticket's node: the job began,
 *                                 so its slot stays taken (queue.h, holds)
 *
 * The receipt's duration is the worker's word, but the charge is capped at
 * what the requester reserved, and only the node named in the ticket can
 * settle its job: a receipt signed by any other key is refused (403).  A
 * job settles once; repeating the receipt returns the same result and
 * moves nothing.
 *
 * Plausibility (docs/CREDITS.md): the ledger refuses (400) a duration
 * longer than the time since the ticket was issued or than the job's
 * max_seconds.  Output tokens beyond what the node's proven multiplier
 * and the model's size make possible (coord_plausible_tps) are capped:
 * the receipt settles with the capped count and an audit row records the
 * claim.  Earnings paid from trial credits become the node's pending
 * earnings; the sweeper releases them once the node is established
 * (--establish-*, --trial-daily-cap, --pending-interval).
 *
 * Two witnesses: for a job authorized with "delivery_report": true the
 * receipt is held as a claim ("status": "claimed") until the client's
 * delivery report arrives; the job then settles at the worker's duration,
 * or at the client's observed duration when the worker claimed more than
 * that plus the tolerance (ledger_witnessed_ms; a dispute is recorded).
 * Without a report the claim settles alone after --report-wait seconds.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "error.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "queue.h"

#define RECEIPT_MAX_DURATION_MS PROTO_DURATION_MS_MAX
#define PLAUSIBLE_TOKEN_SLACK 16  /* tokens any receipt may claim beyond the rate */

/* The fastest output job `job` could have had, tokens/s
 * (coord_plausible_tps of its node's multiplier and its model's size), in
 * *tps; 0 when it cannot be told (no reservation, or `node` not NULL and
 * not the job's node: the ledger then answers). */
static void plausible_rate(double *tps, coord_thread *t, const char *job, const char *node)
{
	coord *c = t->c;
	ledger_reservation res;
	registry_node nd;
	int64_t size = 0;

	*tps = 0;
	if (ledger_reservation_get(&res, t->db, job) != 0 ||
	    (node && strcmp(res.node_id, node) != 0))
		return;
	memset(&nd, 0, sizeof(nd));
	if (registry_get_node(&nd, c->reg, res.node_id, (int64_t)time(NULL),
	    REGISTRY_WITH_MODELS) == 0) {
		for (size_t i = 0; i < nd.n_models; i++)
			if (strcmp(nd.models[i].name, res.model) == 0)
				size = nd.models[i].size_bytes;
		registry_node_clear(&nd);
	}
	*tps = coord_plausible_tps(c, res.multiplier, size);
}

/* The most output tokens job `job` (of node `signer`) could have produced
 * in duration_ms, in *max; -1 when it cannot be told (no reservation: the
 * ledger then answers the receipt). */
static void plausible_tokens(int64_t *max, coord_thread *t, const char *job,
    const char *signer, int64_t duration_ms)
{
	double tps;

	plausible_rate(&tps, t, job, signer);
	*max = tps > 0 ? (int64_t)(tps * (double)duration_ms / 1000.0) +
	    PLAUSIBLE_TOKEN_SLACK : -1;
}

static void h_receipt(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *job = http_req_param(r, "job_id");
	const char *node_id, *outcome;
	int64_t duration_ms;
	proto_receipt rc_in;
	proto_settlement out_st;
	ledger_settle_result res;
	json_t *body = NULL, *reply;
	size_t len;
	const char *raw;
	int64_t claimed_out, max_out, tout;
	int rc;

	if (coord_authenticate(r, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = proto_receipt_decode(&rc_in, body))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	node_id = rc_in.node_id[0] ? rc_in.node_id : NULL;
	outcome = rc_in.outcome;
	duration_ms = rc_in.duration_ms;
	if (!job || strcmp(job, rc_in.job_id) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "field 'job_id' must match the job id in the path");
		goto out;
	}
	if (node_id && strcmp(node_id, signer) != 0) {
		coord_reply_error(r, TROOP_EFORBIDDEN,
		    "field 'node_id' must be the signing node: a receipt is signed by the node "
		    "that served the job");
		goto out;
	}
	/* cheap first: a rate no node falls below needs no lookup */
	claimed_out = tout = rc_in.completion_tokens;
	if ((double)tout > c->plausible_min_tps * (double)duration_ms / 1000.0 +
	    PLAUSIBLE_TOKEN_SLACK) {
		plausible_tokens(&max_out, t, job, signer, duration_ms);
		if (max_out >= 0 && tout > max_out)
			tout = max_out;
	}
	{
		ledger_settle_req sr = {
			.job_id = job, .signer_node_id = signer, .duration_ms = duration_ms,
			.tokens_in = rc_in.prompt_tokens, .tokens_out = tout,
			.outcome = outcome, .digest = rc_in.response_digest,
			.grace_s = c->release_grace, .now = (int64_t)time(NULL),
		};
		rc = ledger_settle(&res, t->db, &sr);
		api_nodes_facts_forget(signer);
	}
	if (rc == TROOP_EFORBIDDEN) {
		coord_reply_error(r, TROOP_EFORBIDDEN,
		    "job %s was not assigned to this node; only its node can sign the receipt", job);
		goto out;
	}
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (!res.already && !res.requester[0]) {
		/* a held claim reports no requester: the reservation has it */
		ledger_reservation lr;
		if (ledger_reservation_get(&lr, t->db, job) == 0)
			snprintf(res.requester, sizeof(res.requester), "%s", lr.requester);
	}
	if (res.claimed) {
		if (!res.already && queue_ticket_done(c->reg, res.requester, signer, job))
			registry_add_active_job(c->reg, signer, -1);
		log_info("receipt_held", "job=%s node=%.8s duration_ms=%lld", job, signer,
		    (long long)duration_ms);
		/* expected: what the claim is paid unless its client disputes it */
		coord_reply_json(r, 200, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:I}",
		    "status", "claimed", "job_id", job, "charged", (json_int_t)0,
		    "refunded", (json_int_t)0, "pending", (json_int_t)0,
		    "completion_tokens", (json_int_t)tout, "already_settled", false,
		    "expected", (json_int_t)res.expected));
		goto out;
	}
	if (!res.already && tout < claimed_out) {
		char detail[256];
		snprintf(detail, sizeof(detail), "job=%s claimed_tokens=%lld capped_tokens=%lld "
		    "duration_ms=%lld", job, (long long)claimed_out, (long long)tout,
		    (long long)duration_ms);
		log_warn("implausible_tokens", "node=%.8s %s", signer, detail);
		ledger_audit(t->db, signer, "implausible_tokens", detail, (int64_t)time(NULL));
	}
	if (!res.already) {
		if (queue_ticket_done(c->reg, res.requester, signer, job))
			registry_add_active_job(c->reg, signer, -1);
		METRIC_ADD(&c->metrics, receipts, 1);
		METRIC_ADD(&c->metrics, tokens_out, (unsigned long long)(tout > 0 ? tout : 0));
		METRIC_ADD(&c->metrics, credits_charged, (unsigned long long)res.charged);
		log_info("settled", "job=%s node=%.8s charged=%lld refunded=%lld duration_ms=%lld "
		    "outcome=%s", job, signer, (long long)res.charged, (long long)res.refunded,
		    (long long)duration_ms, outcome);
	}
	memset(&out_st, 0, sizeof(out_st));
	snprintf(out_st.job_id, sizeof(out_st.job_id), "%s", job);
	out_st.charged = res.charged;
	out_st.refunded = res.refunded;
	out_st.already_settled = res.already;
	reply = proto_settlement_encode(&out_st);
	/* additions: what became pending, and the tokens as counted */
	json_object_set_new(reply, "pending", json_integer(res.pending));
	json_object_set_new(reply, "completion_tokens", json_integer(tout));
	coord_reply_json(r, 200, reply);
out:
	json_decref(body);
}

/* The node tells that a job began: the ticket's slot is held by real work
 * now, not only until --unused-ticket runs out. */
static void h_started(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *job = http_req_param(r, "job_id");
	ledger_reservation res;
	int rc;

	if (coord_authenticate(r, signer) != 0)
		return;
	rc = ledger_reservation_get(&res, t->db, job);
	if (rc == TROOP_ENOTFOUND) {
		coord_reply_error(r, TROOP_ENOTFOUND, "no job %s", job);
		return;
	}
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return;
	}
	if (strcmp(res.node_id, signer) != 0) {
		coord_reply_error(r, TROOP_EFORBIDDEN,
		    "job %s was not assigned to this node", job);
		return;
	}
	if (res.status == LEDGER_RES_OPEN)
		(void)queue_ticket_started(&c->queue, c->reg, res.requester, signer, job,
		    res.expires_at, (int64_t)time(NULL));
	coord_reply_json(r, 200, json_pack("{s:s, s:s}", "status", "started", "job_id", job));
}

/* What a delivery report says of the job's node, for its reputation
 * (reputation.h): its speed, or a failover away from it.  Costs a
 * reservation read and a node read; errors only lose the observation. */
static void note_report(coord_thread *t, const char *job, const char *outcome,
    int64_t duration_ms, int64_t ttfb_ms, int64_t tokens)
{
	coord *c = t->c;
	int64_t now = (int64_t)time(NULL);
	ledger_reservation res;
	registry_node nd;
	reputation_report rr = { .outcome = outcome, .duration_ms = duration_ms,
		.ttfb_ms = ttfb_ms, .tokens = tokens, .running = 1 };

	if (ledger_reservation_get(&res, t->db, job) != 0) {
		api_nodes_facts_forget(NULL);
		return;
	}
	api_nodes_facts_forget(res.node_id);
	/* the jobs it still runs as this one ended: the concurrency served */
	memset(&nd, 0, sizeof(nd));
	if (registry_get_node(&nd, c->reg, res.node_id, now, 0) == 0) {
		rr.running = nd.active_jobs > 1 ? nd.active_jobs : 1;
		registry_node_clear(&nd);
	}
	/* a repeat is told apart until the reservation closes: the ledger
	 * answers later ones as settled (not counted) or gone */
	if (reputation_note_report(c->reg, res.node_id, job, &rr,
	    res.expires_at + c->release_grace + 60 - now, now) != 0)
		log_warn("reputation", "job=%s error=\"%s\"", job, troop_error_msg());
}

/* The outcomes a client may report (docs/PROTOCOL.md). */
static const char *const report_outcomes[] = { "complete", "cut", "engine_error", "aborted",
	"unreachable", "refused" };

static void h_report(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *job = http_req_param(r, "job_id");
	const char *body_job, *outcome, *digest = NULL, *raw;
	int64_t duration_ms, bytes = 0, tokens = 0, ttfb_ms = -1;
	ledger_settle_result res;
	json_t *body = NULL;
	bool known = false;
	size_t len;
	int rc;

	if (coord_authenticate(r, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_strn(&body_job, body, "job_id", true, LEDGER_ID_MAX)) ||
	    (rc = json_get_int(&duration_ms, body, "duration_ms", true, 0,
	    RECEIPT_MAX_DURATION_MS)) ||
	    (rc = json_get_int(&bytes, body, "bytes", false, 0, INT64_MAX / 4)) ||
	    (rc = json_get_int(&tokens, body, "completion_tokens", false, 0, INT32_MAX)) ||
	    (rc = json_get_strn(&outcome, body, "outcome", true, LEDGER_OUTCOME_MAX)) ||
	    (rc = json_get_strn(&digest, body, "response_digest", false, LEDGER_DIGEST_MAX)) ||
	    (rc = json_get_int(&ttfb_ms, body, "ttfb_ms", false, 0, RECEIPT_MAX_DURATION_MS))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (!job || strcmp(job, body_job) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "field 'job_id' must match the job id in the path");
		goto out;
	}
	for (size_t i = 0; i < sizeof(report_outcomes) / sizeof(report_outcomes[0]); i++)
		known |= strcmp(outcome, report_outcomes[i]) == 0;
	if (!known) {
		coord_reply_error(r, TROOP_EINVAL, "field 'outcome' must be one of complete, cut, "
		    "engine_error, aborted, unreachable, refused");
		goto out;
	}
	{
		ledger_report_req q = {
			.job_id = job, .requester = signer, .duration_ms = duration_ms,
			.bytes = bytes, .tokens = tokens, .outcome = outcome, .digest = digest,
			.now = (int64_t)time(NULL),
		};
		/* the rate an under-report is told by (the ledger checks it when
		 * both witnesses are in); only reports pay for this lookup */
		plausible_rate(&q.max_tps, t, job, NULL);
		rc = ledger_report(&res, t->db, &q);
	}
	if (rc == TROOP_EFORBIDDEN) {
		coord_reply_error(r, TROOP_EFORBIDDEN, "job %s was not authorized by this account; "
		    "only its requester can report its delivery", job);
		goto out;
	}
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (!res.claimed && !res.already) {
		/* this report settled the held receipt */
		METRIC_ADD(&c->metrics, receipts, 1);
		METRIC_ADD(&c->metrics, tokens_out,
		    (unsigned long long)(res.tokens_out > 0 ? res.tokens_out : 0));
		METRIC_ADD(&c->metrics, credits_charged, (unsigned long long)res.charged);
		log_info("settled", "job=%s by=report charged=%lld refunded=%lld disputed=%d "
		    "client_disputed=%d", job, (long long)res.charged, (long long)res.refunded,
		    res.disputed, res.client_disputed);
	}
	if (res.client_disputed && !res.already)
		log_warn("client_dispute", "job=%s requester=%.8s", job, signer);
	if (!res.already)
		note_report(t, job, outcome, duration_ms, ttfb_ms, tokens);
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:I, s:I, s:b, s:b}",
	    "status", res.claimed ? "recorded" : "settled", "job_id", job,
	    "charged", (json_int_t)res.charged, "refunded", (json_int_t)res.refunded,
	    "disputed", res.disputed, "client_disputed", res.client_disputed));
out:
	json_decref(body);
}

void api_jobs_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/jobs/{job_id}/receipt", h_receipt, c);
	http_server_route(s, "POST", "/jobs/{job_id}/report", h_report, c);
	http_server_route(s, "POST", "/jobs/{job_id}/started", h_started, c);
}
