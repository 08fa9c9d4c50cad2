/*
 * report.h - the clients' delivery reports (issue 14, "Two witnesses";
 * docs/PROTOCOL.md): what `troop up` and `troop chat` saw of each job
 * they authorized, signed by the requester's key and sent to
 * POST /jobs/{job_id}/report.
 *
 *   client_delivery  one job's observation, fed from the relay's
 *                    callbacks on the request's thread: the time from
 *                    sending the request to the worker to the last byte,
 *                    the body bytes and completion tokens received (the
 *                    worker's token counter, job.h), and the SHA-256 of
 *                    the body received (the worker's receipt carries its
 *                    own, of what it sent).
 *   client_reports   the process's outbox: a spool of kind "report"
 *                    (src/lib/spool.h) in $TROOP_HOME/client/reports
 *                    (0700), sent by its own thread with backoff, so a
 *                    report never delays the app's reply and one that
 *                    could not be sent survives a crash and goes at the
 *                    next start.
 *
 * Outcomes: "complete" (the reply reached its end), "cut" (the worker's
 * stream ended early: cut at the time budget or failed mid-stream),
 * "engine_error" (an error the engine answered), "aborted" (the app hung
 * up), "unreachable" (the worker failed before answering) and "refused"
 * (the worker answered 401: not its ticket).
 *
 * A client_delivery is owned by one request (not thread-safe);
 * client_reports_submit is thread-safe.
 */
#ifndef TROOP_CLIENT_REPORT_H
#define TROOP_CLIENT_REPORT_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "proto.h"
#include "sha256.h"

typedef struct client_reports client_reports;
struct usage_counter;

typedef struct {
	char job_id[PROTO_JOB_ID_MAX + 1];  /* "" before client_delivery_begin */
	int64_t t0_us;                      /* monotonic: request sent to the worker */
	uint64_t bytes;                     /* body bytes received */
	sha256_ctx sha;
	bool fed;                           /* a body byte came */
	int64_t first_us;                   /* monotonic: the first token event
	                                       of a stream; 0 before */
	bool stream;                        /* the body is an event stream */
	struct usage_counter *usage;        /* from the headers on; NULL before */
} client_delivery;

/* $TROOP_HOME/client/reports into buf.  Returns 0 or TROOP_EINVAL. */
int client_reports_default_dir(char *buf, size_t len);

/* Start the outbox for `coordinator`, signing with `id` (copied), spooled
 * in `dir` (NULL: client_reports_default_dir); the reports left there by
 * an earlier run are sent again.  Returns 0 or a troop_err, message set. */
int client_reports_start(client_reports **out, const char *coordinator,
    const troop_identity *id, const char *dir);

/* Send what is pending for up to flush_ms, stop, free.  NULL is fine. */
void client_reports_stop(client_reports *r, int flush_ms);

/* Start observing job `job_id`: the request is being sent now. */
void client_delivery_begin(client_delivery *d, const char *job_id);

/* The worker's headers came: its body is an event stream or not. */
void client_delivery_headers(client_delivery *d, bool event_stream);

/* Body bytes received (as relayed to the app). */
void client_delivery_body(client_delivery *d, const char *data, size_t len);

/* The job is over with `outcome`: queue its report on `r` (NULL: none is
 * sent) and clear d.  Cheap: no disk, no network.  Returns 0 or a
 * troop_err (logged; the report is lost). */
int client_delivery_finish(client_delivery *d, client_reports *r, const char *outcome);

/* Forget d without a report (frees the counter). */
void client_delivery_clear(client_delivery *d);

/* The report body for the observation (exposed for tests): {"job_id",
 * "duration_ms","bytes","completion_tokens","outcome","response_digest"?,
 * "ttfb_ms"?} (the digest when a body byte came; ttfb_ms, the time to
 * the first token event, for an event stream that had one).
 * New reference or NULL (out of memory). */
json_t *client_delivery_body_json(const client_delivery *d, const char *outcome,
    int64_t now_us);

#endif
