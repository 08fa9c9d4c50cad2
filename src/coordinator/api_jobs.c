/*
 * api_jobs.c - settlement of finished jobs (DESIGN.md section 7):
 *   POST /jobs/{job_id}/receipt   signed by the node that served the job
 *
 * The receipt's duration is the worker's word, but the charge is capped at
 * what the requester reserved, and only the node named in the ticket can
 * settle its job: a receipt signed by any other key is refused (403).  A
 * job settles once; repeating the receipt returns the same result and
 * moves nothing.
 */
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "error.h"
#include "json.h"
#include "log.h"

#define RECEIPT_MAX_DURATION_MS ((int64_t)7 * 24 * 3600 * 1000)

static void h_receipt(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *job = http_req_param(r, "job_id");
	const char *body_job, *node_id = NULL, *outcome = "ok";
	int64_t duration_ms, tin = 0, tout = 0;
	ledger_settle_result res;
	json_t *body = NULL;
	size_t len;
	const char *raw;
	int rc;

	if (coord_authenticate(r, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_strn(&body_job, body, "job_id", true, LEDGER_ID_MAX)) ||
	    (rc = json_get_strn(&node_id, body, "node_id", false, TROOP_ID_LEN)) ||
	    (rc = json_get_int(&duration_ms, body, "duration_ms", true, 0,
	    RECEIPT_MAX_DURATION_MS)) ||
	    (rc = json_get_int(&tin, body, "prompt_tokens", false, 0, INT32_MAX)) ||
	    (rc = json_get_int(&tout, body, "completion_tokens", false, 0, INT32_MAX)) ||
	    (rc = json_get_strn(&outcome, body, "outcome", false, LEDGER_OUTCOME_MAX))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (!job || strcmp(job, body_job) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "field 'job_id' must match the job id in the path");
		goto out;
	}
	if (node_id && strcmp(node_id, signer) != 0) {
		coord_reply_error(r, TROOP_EFORBIDDEN,
		    "field 'node_id' must be the signing node: a receipt is signed by the node "
		    "that served the job");
		goto out;
	}
	{
		ledger_settle_req sr = {
			.job_id = job, .signer_node_id = signer, .duration_ms = duration_ms,
			.tokens_in = tin, .tokens_out = tout, .outcome = outcome,
			.grace_s = c->release_grace, .now = (int64_t)time(NULL),
		};
		rc = ledger_settle(&res, t->db, &sr);
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
	if (!res.already) {
		registry_add_active_job(c->reg, signer, -1);
		METRIC_ADD(&c->metrics, receipts, 1);
		METRIC_ADD(&c->metrics, credits_charged, (unsigned long long)res.charged);
		log_info("settled", "job=%s node=%.8s charged=%lld refunded=%lld duration_ms=%lld "
		    "outcome=%s", job, signer, (long long)res.charged, (long long)res.refunded,
		    (long long)duration_ms, outcome);
	}
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:I, s:I, s:b}", "status", "settled",
	    "job_id", job, "charged", (json_int_t)res.charged,
	    "refunded", (json_int_t)res.refunded, "already_settled", res.already));
out:
	json_decref(body);
}

void api_jobs_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/jobs/{job_id}/receipt", h_receipt, c);
}
