/*
 * receipts.h - the worker's signed job receipts (DESIGN.md section 7) and
 * their spool.
 *
 * After every job the proxy hands its record here (receipts_submit, cheap
 * and non-blocking: the proxy's event loops never touch the disk or the
 * network for this).  The receipt goes to a spool of kind "receipt"
 * (src/lib/spool.h, shared with the clients' delivery reports), whose
 * sender thread then:
 *   1. writes the receipt to the spool, $TROOP_HOME/worker/receipts/
 *      <job_id>.json (a temporary file renamed into place, so a file is
 *      always whole), so a crash or restart does not lose unpaid work.
 *      The file is fsync'd (with its directory) once the first send has
 *      failed: a receipt accepted at once never waits for the disk, one
 *      that waits for the coordinator survives a power loss too;
 *   2. sends POST /jobs/{job_id}/receipt to the coordinator, signed with
 *      the node key (http_request_signed);
 *   3. on 2xx deletes the spool file; on a definitive refusal (400, 403,
 *      404, 409, 410, 413, 422: wrong signer, unknown or expired job, bad
 *      body) logs it and deletes it too; on anything else (coordinator
 *      down, 5xx, 429, 401 from clock skew) keeps it and retries with
 *      exponential backoff, 1 s doubling to RECEIPTS_BACKOFF_MAX_S.
 * At start every file already in the spool is loaded and sent again.
 *
 * Thread-safe: submit from any thread; start/stop from the main thread.
 */
#ifndef TROOP_WORKER_RECEIPTS_H
#define TROOP_WORKER_RECEIPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "identity.h"
#include "job.h"

/* the spool's (spool.h SPOOL_BACKOFF_MAX_S, SPOOL_MAX_PENDING, SPOOL_FILE_MAX) */
#define RECEIPTS_BACKOFF_MAX_S 60
#define RECEIPTS_MAX_PENDING 100000   /* receipts held in memory */
#define RECEIPTS_FILE_MAX 65536       /* bytes of one spool file */

typedef struct receipts receipts;

/* Open the spool directory `spool_dir` (created 0700 with its parents),
 * load the receipts already there, and start the sender thread, which
 * talks to `coordinator` signing with `id` (copied).  Returns 0, or
 * TROOP_EIO (directory), TROOP_ENOMEM, TROOP_ERR (thread), message set. */
int receipts_start(receipts **out, const char *coordinator, const troop_identity *id,
    const char *spool_dir);

/* Queue the receipt of a finished job.  Returns 0, or TROOP_ETOOLARGE when
 * RECEIPTS_MAX_PENDING receipts are already waiting (the receipt is then
 * dropped, and logged), or TROOP_ENOMEM. */
int receipts_submit(receipts *r, const worker_job *job);

/* Queue a "job started" notice for `job_id` (POST /jobs/{id}/started):
 * the coordinator then keeps the ticket's slot taken until the receipt
 * instead of giving it back after its unused-ticket time.  Sent once, in
 * order with the receipts, never spooled.  0, TROOP_ETOOLARGE (queue
 * full), TROOP_ENOMEM; NULL r: 0. */
int receipts_started(receipts *r, const char *job_id);

/* Receipts not yet accepted (queued, spooled or being retried). */
size_t receipts_pending(receipts *r);

/* Receipts the coordinator accepted since start. */
size_t receipts_sent(receipts *r);

/* Try to send what is pending for up to flush_ms (one attempt each, no
 * backoff waits), then stop the thread.  Receipts still unsent stay in the
 * spool for the next start.  Frees r; NULL is fine. */
void receipts_stop(receipts *r, int flush_ms);

/* $TROOP_HOME/worker/receipts into buf.  Returns 0 or TROOP_EINVAL. */
int receipts_default_dir(char *buf, size_t len);

#endif
