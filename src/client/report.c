/*
 * report.c - delivery reports of troop up and troop chat (report.h): the
 * observation of one job, and the outbox (a spool of kind "report").
 */
#include "report.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "spool.h"
#include "worker/job.h"

struct client_reports {
	spool *sp;
};

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int client_reports_default_dir(char *buf, size_t len)
{
	char home[PATH_MAX];
	int rc = config_troop_home(home, sizeof(home));

	if (rc)
		return rc;
	if ((size_t)snprintf(buf, len, "%s/client/reports", home) >= len)
		return troop_error_set(TROOP_EINVAL, "report spool path is too long");
	return 0;
}

int client_reports_start(client_reports **out, const char *coordinator,
    const troop_identity *id, const char *dir)
{
	char def[PATH_MAX];
	client_reports *r;
	int rc;

	*out = NULL;
	if (!dir) {
		if ((rc = client_reports_default_dir(def, sizeof(def))) != 0)
			return rc;
		dir = def;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return troop_error_set(TROOP_ENOMEM, "out of memory for delivery reports");
	if ((rc = spool_start(&r->sp, "report", coordinator, id, dir, NULL)) != 0) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void client_reports_stop(client_reports *r, int flush_ms)
{
	if (!r)
		return;
	spool_stop(r->sp, flush_ms);
	free(r);
}

void client_delivery_begin(client_delivery *d, const char *job_id)
{
	client_delivery_clear(d);
	snprintf(d->job_id, sizeof(d->job_id), "%s", job_id);
	d->t0_us = mono_us();
	sha256_init(&d->sha);
}

void client_delivery_headers(client_delivery *d, bool event_stream)
{
	d->stream = event_stream;
	if (!d->usage && usage_counter_new(&d->usage, event_stream) != 0)
		d->usage = NULL;   /* no token count; the report still goes */
}

void client_delivery_body(client_delivery *d, const char *data, size_t len)
{
	if (!d->job_id[0])
		return;
	d->bytes += len;
	d->fed = true;
	sha256_update(&d->sha, data, len);
	if (d->usage)
		usage_counter_feed(d->usage, data, len);
	if (d->stream && d->usage && d->first_us == 0) {
		/* the first token event (not a comment, not the role chunk) */
		int64_t prompt, completion;
		bool reported;
		usage_counter_result(d->usage, &prompt, &completion, &reported);
		if (completion > 0)
			d->first_us = mono_us();
	}
}

json_t *client_delivery_body_json(const client_delivery *d, const char *outcome,
    int64_t now_us)
{
	int64_t prompt = 0, completion = 0, ms = (now_us - d->t0_us) / 1000;
	bool reported = false;
	json_t *b;

	if (ms < 0)
		ms = 0;
	if (d->usage)
		usage_counter_result(d->usage, &prompt, &completion, &reported);
	b = json_pack("{s:s, s:I, s:I, s:I, s:s}", "job_id", d->job_id,
	    "duration_ms", (json_int_t)ms, "bytes", (json_int_t)d->bytes,
	    "completion_tokens", (json_int_t)completion, "outcome", outcome);
	if (b && d->fed) {
		sha256_ctx st = d->sha;   /* final consumes the state */
		unsigned char h[crypto_hash_sha256_BYTES];
		char hex[2 * crypto_hash_sha256_BYTES + 1];

		sha256_final(&st, h);
		sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
		json_object_set_new(b, "response_digest", json_string(hex));
		/* time to the first token: the node's speed (docs/SCHEDULING.md) */
		if (d->stream && d->first_us > 0)
			json_object_set_new(b, "ttfb_ms", json_integer(d->first_us > d->t0_us ?
			    (d->first_us - d->t0_us) / 1000 : 0));
	}
	return b;
}

int client_delivery_finish(client_delivery *d, client_reports *r, const char *outcome)
{
	json_t *b;
	int rc = 0;

	if (!d->job_id[0])
		return 0;
	if (r) {
		b = client_delivery_body_json(d, outcome, mono_us());
		rc = b ? spool_submit(r->sp, d->job_id, b) :
		    troop_error_set(TROOP_ENOMEM, "out of memory for a delivery report");
		json_decref(b);
		if (rc)
			log_warn("report_lost", "job=%s error=\"%s\"", d->job_id, troop_error_msg());
	}
	client_delivery_clear(d);
	return rc;
}

void client_delivery_clear(client_delivery *d)
{
	usage_counter_free(d->usage);
	memset(d, 0, sizeof(*d));
}
