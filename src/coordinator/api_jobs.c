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
#include "proto.h"


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
	json_t *body = NULL;
	size_t len;
	const char *raw;
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
	{
		ledger_settle_req sr = {
			.job_id = job, .signer_node_id = signer, .duration_ms = duration_ms,
			.tokens_in = rc_in.prompt_tokens, .tokens_out = rc_in.completion_tokens,
			.outcome = outcome,
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
	memset(&out_st, 0, sizeof(out_st));
	snprintf(out_st.job_id, sizeof(out_st.job_id), "%s", job);
	out_st.charged = res.charged;
	out_st.refunded = res.refunded;
	out_st.already_settled = res.already;
	coord_reply_json(r, 200, proto_settlement_encode(&out_st));
out:
	json_decref(body);
}

void api_jobs_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/jobs/{job_id}/receipt", h_receipt, c);
}
