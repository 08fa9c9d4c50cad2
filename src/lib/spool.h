/*
 * spool.h - a durable outbox of signed JSON messages about jobs, sent to
 * the coordinator by threads of its own: the worker's receipts
 * (src/worker/receipts.c) and the clients' delivery reports
 * (src/client/report.c) both go through one.
 *
 * spool_submit is cheap and never touches the disk or the network (the
 * callers' event loops call it).  Up to SPOOL_SENDERS sender threads,
 * each with its own connection, send the queue: one while the spool keeps
 * up, more while a backlog waits (different jobs' messages side by side;
 * a job's own in the order queued).  A sender thread then:
 *   1. writes the message to DIR/<job_id>.json (a temporary file renamed
 *      into place, so a file is always whole); the file is fsync'd (with
 *      its directory) once the first send has failed: a message accepted
 *      at once never waits for the disk, one that waits for the
 *      coordinator survives a power loss too;
 *   2. sends POST /jobs/{job_id}/{kind} to the coordinator, signed with
 *      the identity given at start (http_request_signed);
 *   3. on 2xx deletes the file; on a definitive refusal (400, 403, 404,
 *      409, 410, 413, 422: wrong signer, unknown or expired job, bad body)
 *      logs it and deletes it too; on anything else (coordinator down,
 *      5xx, 429, 401 from clock skew) keeps it and retries with
 *      exponential backoff, 1 s doubling to SPOOL_BACKOFF_MAX_S.
 * At start every file already in DIR is loaded and sent again.  Log
 * events are named after the kind: "<kind>_settled", "<kind>_retry",
 * "<kind>_dropped", "<kind>_spool", "<kind>_lost".
 *
 * Thread-safe: submit from any thread; start/stop from one thread.
 */
#ifndef TROOP_LIB_SPOOL_H
#define TROOP_LIB_SPOOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "identity.h"

#define SPOOL_BACKOFF_MAX_S 60
#define SPOOL_SENDERS 4            /* sender threads: messages in flight at most */
#define SPOOL_MAX_PENDING 100000   /* messages held in memory */
#define SPOOL_FILE_MAX 65536       /* bytes of one spool file */
#define SPOOL_ID_MAX 64            /* job id: 1..64 of [A-Za-z0-9_-] */
#define SPOOL_KIND_MAX 15

typedef struct spool spool;

/* Called on a sender thread with the coordinator's 2xx reply (may be
 * NULL when it was not JSON) to a message it accepted. */
typedef void (*spool_accepted_fn)(const json_t *reply);

/* Open the spool directory `dir` (created 0700 with its parents), load the
 * messages already there, and start the sender threads, which post to
 * `coordinator`/jobs/{job_id}/`kind` signing with `id` (copied).  `kind`
 * is a short lowercase word ("receipt", "report"); `on_accepted` may be
 * NULL.  Returns 0, or TROOP_EINVAL, TROOP_EIO (directory), TROOP_ENOMEM,
 * TROOP_ERR (threads), message set. */
int spool_start(spool **out, const char *kind, const char *coordinator,
    const troop_identity *id, const char *dir, spool_accepted_fn on_accepted);

/* Whether `id` can name a spooled job: 1..SPOOL_ID_MAX characters of
 * [A-Za-z0-9_-].  Pure. */
bool spool_id_valid(const char *id);

/* Queue the message `body` (borrowed; serialised here) about job `job_id`.
 * Returns 0, TROOP_EINVAL (unusable job id), TROOP_ETOOLARGE when
 * SPOOL_MAX_PENDING messages already wait (dropped, and logged), or
 * TROOP_ENOMEM.  NULL s: nothing, 0. */
int spool_submit(spool *s, const char *job_id, const json_t *body);

/* Queue a notice about job `job_id`: POST /jobs/{job_id}/`kind` with an
 * empty JSON object, in order with the messages, sent once and never
 * spooled or retried (the worker's "started" notice: worth something only
 * now).  Returns 0, TROOP_EINVAL, TROOP_ETOOLARGE or TROOP_ENOMEM; NULL s:
 * nothing, 0. */
int spool_notice(spool *s, const char *job_id, const char *kind);

/* Messages not yet accepted (queued, spooled or being retried). */
size_t spool_pending(spool *s);

/* Messages the coordinator accepted since start. */
size_t spool_sent(spool *s);

/* Try to send what is pending for up to flush_ms (one attempt each, no
 * backoff waits), then stop the threads.  Messages still unsent stay in
 * the directory for the next start.  Frees s; NULL is fine. */
void spool_stop(spool *s, int flush_ms);

#endif
