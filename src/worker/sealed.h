/*
 * sealed.h - the worker's side of a sealed job (seal.h, docs/PROTOCOL.md
 * "Sealed jobs"): opening the request body sent with an X-Troop-Seal
 * header, and sealing the reply as it streams.
 *
 * The request is opened after the ticket is verified, with the sealing key
 * the header names (current or previous, seal_keys.h) and the ticket's jti
 * and this node's id as associated data; everything after that (the model
 * binding, translation, token counting) works on the plaintext.  The reply
 * becomes one sealed stream (relay_set_wrap) in the best suite the client
 * offered (a256gcm2, a256gcm, else secretstream): its header before the first
 * frame, one frame per write of the relay (what one loop iteration
 * queued, whole events for a stream; split at SEALED_CHUNK_MAX), the final
 * frame at the end.
 *
 * A client that offers a256gcm2 may seal many jobs with one ephemeral key:
 * the job keys agreed for it are kept a while (per thread), so that X25519
 * runs once per client key, not once per job.
 *
 * Not thread-safe: one per job, on the job's thread.
 */
#ifndef TROOP_WORKER_SEALED_H
#define TROOP_WORKER_SEALED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dynbuf.h"
#include "seal.h"
#include "seal_keys.h"

/* The reply header naming the Content-Type the sealed body had. */
#define SEALED_TYPE_HEADER "X-Troop-Sealed-Type"
/* plaintext per frame at most */
#define SEALED_CHUNK_MAX (64u * 1024)

/* Open a sealed request: `header` is the X-Troop-Seal value, `body` the
 * sealed bytes.  On success the plaintext is appended to `plain` and the
 * job's keys are in *sj (wipe with seal_job_wipe).  Returns 0 or a
 * troop_err with the message set for the requester: TROOP_EINVAL (a bad
 * header, a key this node does not hold, a body that does not open for
 * this ticket and node), TROOP_ENOMEM, TROOP_ETOOLARGE. */
int sealed_request_open(dynbuf *plain, seal_job *sj, seal_keys *keys, const char *header,
    const char *jti, const char *node_id, const void *body, size_t len, int64_t now);

typedef struct {
	seal_writer w;
	dynbuf out;        /* the sealed bytes of one call */
	seal_job keys;
} sealed_reply;

/* Start sealing a reply for job `sj`.  Returns 0 or TROOP_ENOMEM. */
int sealed_reply_init(sealed_reply *s, const seal_job *sj);

/* Seal `len` bytes of plaintext (nothing for len 0 unless `end`); `end`
 * pushes the final frame.  *out / *out_len: the sealed bytes, valid until
 * the next call.  Returns 0 or a troop_err. */
int sealed_reply_push(sealed_reply *s, const char *data, size_t len, bool end,
    const char **out, size_t *out_len);

/* Wipes the keys.  Safe on a zeroed struct. */
void sealed_reply_free(sealed_reply *s);

#endif
