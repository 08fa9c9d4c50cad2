/*
 * receipts.c - the worker's job receipts (receipts.h): the receipt body
 * of each finished job, handed to a spool (src/lib/spool.h) of kind
 * "receipt", which writes, sends, retries and reloads it.
 */
#include "receipts.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "spool.h"
#include "worker_metrics.h"

struct receipts {
	spool *sp;
	char node_id[TROOP_ID_LEN + 1];
};

int receipts_default_dir(char *buf, size_t len)
{
	char home[PATH_MAX];
	int rc = config_troop_home(home, sizeof(home));

	if (rc)
		return rc;
	if ((size_t)snprintf(buf, len, "%s/worker/receipts", home) >= len)
		return troop_error_set(TROOP_EINVAL, "receipt spool path is too long");
	return 0;
}

/* What a receipt earned, for the worker's metrics: its charge, or for a
 * claim held until the client's delivery report (docs/PROTOCOL.md "Two
 * witnesses") the charge it settles at undisputed. */
static void receipt_accepted(const json_t *reply)
{
	const char *st = json_string_value(json_object_get(reply, "status"));
	const char *field = st && strcmp(st, "claimed") == 0 ? "expected" : "charged";

	worker_metrics_earned((int64_t)json_integer_value(json_object_get(reply, field)));
}

int receipts_start(receipts **out, const char *coordinator, const troop_identity *id,
    const char *spool_dir)
{
	receipts *r;
	int rc;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return troop_error_set(TROOP_ENOMEM, "out of memory for receipts");
	snprintf(r->node_id, sizeof(r->node_id), "%s", id->id);
	rc = spool_start(&r->sp, "receipt", coordinator, id, spool_dir, receipt_accepted);
	if (rc) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int receipts_submit(receipts *r, const worker_job *job)
{
	json_t *body;
	int rc;

	if (!r)
		return 0;
	if (!job_id_valid(job->job_id))
		return troop_error_set(TROOP_EINVAL, "job id is not usable in a receipt");
	body = job_receipt_body(job, r->node_id);
	if (!body) {
		log_error("receipt_dropped", "job=%s error=\"out of memory\"", job->job_id);
		return troop_error_set(TROOP_ENOMEM, "out of memory queueing a receipt");
	}
	rc = spool_submit(r->sp, job->job_id, body);
	json_decref(body);
	return rc;
}

int receipts_started(receipts *r, const char *job_id)
{
	return r ? spool_notice(r->sp, job_id, "started") : 0;
}

size_t receipts_pending(receipts *r)
{
	return spool_pending(r->sp);
}

size_t receipts_sent(receipts *r)
{
	return spool_sent(r->sp);
}

void receipts_stop(receipts *r, int flush_ms)
{
	if (!r)
		return;
	spool_stop(r->sp, flush_ms);
	free(r);
}
