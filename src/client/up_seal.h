/*
 * up_seal.h - the client's side of a sealed job (seal.h, docs/PROTOCOL.md
 * "Sealed jobs"), for `troop up` (up_job.c, in its relay's transform) and
 * `troop chat` (cli_chat.c, in its blocking stream's data callback).
 *
 * When the /authorize reply carries a sealing key statement, it is checked
 * against the node id the ticket names before anything is sent (a
 * coordinator that substitutes a key is caught there); the app's body is
 * sealed to that key, bound to the ticket's jti and the node id, and sent
 * with an X-Troop-Seal header.  The worker's sealed reply
 * (application/x-troop-sealed, the original type in X-Troop-Sealed-Type)
 * is opened as it streams, in the relay's transform:
 *   - an event stream: each frame's plaintext goes to the app as it opens
 *     (the relay aligns events again);
 *   - anything else: the plaintext is held until the final frame, so the
 *     app never gets part of a reply that then fails to open;
 *   - an error reply of the worker's own (plain JSON, status >= 400) passes
 *     as it is; a 2xx that is not sealed is refused (the request failed).
 * A frame that does not open, a dropped, reordered or extra frame, or a
 * stream without its final frame fails the transform: the app gets the
 * error event (streams) or an error reply, never the altered bytes.
 *
 * Once a worker has answered in a256gcm2 (each reply bound to its own
 * ticket), the thread keeps that job's key for the worker's sealing key
 * and seals the next jobs to it with it, for up to SEAL_KEY_REUSE_S: no
 * X25519 at either end for them.  A reply to such a job in another suite
 * (someone took a256gcm2 out of the offer) is refused, and the key is
 * dropped.
 *
 * Not thread-safe: one per job, on the job's thread (the key pool below
 * excepted).
 */
#ifndef TROOP_CLIENT_UP_SEAL_H
#define TROOP_CLIENT_UP_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api_kind.h"
#include "dynbuf.h"
#include "seal.h"

#define UP_SEAL_TYPE_HEADER "X-Troop-Sealed-Type"
#define UP_SEAL_HEADER_MAX 160       /* "X-Troop-Seal: v1; epk=...; key=..." */
#define UP_SEAL_REPLY_MAX (64u * 1024 * 1024)

typedef struct {
	bool active;           /* this try's request is sealed */
	bool from_pool;        /* ... with fresh keys: the pool makes more at the end */
	bool reused;           /* ... with the job key of earlier jobs (a256gcm2 only) */
	seal_job job;
	dynbuf body;           /* the sealed request body */
	char header[UP_SEAL_HEADER_MAX];  /* the whole request header line */
	/* the reply */
	bool opening;          /* the reply is sealed: the reader runs */
	bool stream;           /* ... and is an event stream */
	bool failed;           /* a sealed reply failed to open */
	int status;
	api_kind api;          /* errors on /v1/messages are converted */
	seal_reader rd;
	dynbuf out;            /* opened bytes handed to the relay */
	bool out_sent;         /* out was handed over: reset before the next */
} up_seal;

/* Start (stop) the thread that keeps job keys ready for the sealing keys
 * used lately, so that a request does not wait for its two X25519
 * operations; without it up_seal_begin makes them itself (troop chat).
 * Start returns 0 or TROOP_ERR; stop wipes the keys kept.  Thread-safe;
 * call each once per process (troop up's start and end). */
int up_seal_pool_start(void);
void up_seal_pool_stop(void);

/* How many jobs are ready for sealing key `pk` (tests, metrics). */
int up_seal_pool_ready(const uint8_t pk[SEAL_PK_LEN]);

/* How many key statements this thread has checked (Ed25519) rather than
 * found among those it checked lately (tests). */
uint64_t up_seal_statement_checks(void);

/* How many of this thread's sealed jobs used a kept job key (tests). */
uint64_t up_seal_reused_jobs(void);

/* Zero state (before the first try). */
void up_seal_init(up_seal *s, api_kind api);

/* Prepare a sealed try: verify `stmt` against `node_id` at `now`, make
 * the job's keys, seal `body` for ticket `jti` and format the header.
 * Returns 0, TROOP_EAUTH (the statement is not signed by the node: a
 * substituted key), TROOP_EGONE (expired), TROOP_EINVAL (malformed),
 * TROOP_ENOMEM; the message says which for the log and the app. */
int up_seal_begin(up_seal *s, const char *stmt, const char *node_id, const char *jti,
    const void *body, size_t len, int64_t now);

/* The worker's reply headers came (status `status`).  Returns 0 and sets
 * *ctype to the Content-Type the app is to get (NULL: leave it), or
 * TROOP_EUPSTREAM when a 2xx reply is not sealed, or a reply to a job
 * under a kept key is not in a256gcm2. */
int up_seal_headers(up_seal *s, int status, const char *const *headers, const char **ctype);

/* relay_cb.transform for a sealed try (see above). */
int up_seal_transform(up_seal *s, const char *data, size_t len, bool end, const char **out,
    size_t *out_len);

/* End a try: wipe its keys and buffers (up_seal_begin may follow). */
void up_seal_reset(up_seal *s);

#endif
