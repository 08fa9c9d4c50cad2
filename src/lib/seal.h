/*
 * seal.h - sealed prompts: end-to-end encryption of a job from the app's
 * machine (`troop up`) to the worker, bound to the node's identity, the
 * ticket and the job (docs/PROTOCOL.md, "Sealed jobs", has the exact
 * construction and test vectors).
 *
 *   key statement  each worker has an X25519 sealing key pair, separate
 *                  from its Ed25519 identity; it signs a statement
 *                  "TSK1" || seal_pk || not_before || not_after with its
 *                  node key.  The heartbeat carries it, /authorize returns
 *                  it, and the client checks it against the node_id the
 *                  ticket names: a coordinator that substitutes a key is
 *                  caught before anything is sent.
 *   request        the client makes an ephemeral X25519 key pair per job;
 *                  crypto_kx gives a request key and a response key; the
 *                  body is one XChaCha20-Poly1305 message whose associated
 *                  data binds the ticket id (jti) and the node id.
 *   response       one message per chunk the engine sent (each SSE event
 *                  as it comes), framed by a 4-byte length, in one of
 *                  three suites: AES-256-GCM frames under a per-stream key
 *                  with a counter nonce, that key bound to the ticket's id
 *                  ("a256gcm2", what current clients offer and workers
 *                  choose) or not ("a256gcm", the previous version); or a
 *                  crypto_secretstream_xchacha20poly1305 stream under the
 *                  response key (v1, for peers that offer neither).
 *                  Either way the last frame is marked final, so a
 *                  dropped, reordered, altered or cut chunk is an error.
 *   job keys again a client may keep one ephemeral key for many jobs to
 *                  the same worker key once that worker has answered in
 *                  a256gcm2 (each reply is then bound to its own ticket),
 *                  so that neither end runs X25519 per job.
 *
 * Everything here is pure computation over buffers (no I/O, no clock:
 * times are passed in).  Thread-safe given distinct objects.
 */
#ifndef TROOP_SEAL_H
#define TROOP_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "dynbuf.h"
#include "identity.h"

#define SEAL_PK_LEN 32
#define SEAL_SK_LEN 32
#define SEAL_KEY_LEN 32
/* "TSK1" + pk + two int64 + Ed25519 signature, base64url without padding */
#define SEAL_STMT_BIN_LEN (4 + SEAL_PK_LEN + 8 + 8 + 64)
#define SEAL_STMT_MAX 160                 /* chars of the encoded statement */
#define SEAL_B64_PK_MAX 44                /* 43 chars + NUL */
#define SEAL_REQUEST_OVERHEAD (24 + 16)   /* nonce + tag */
#define SEAL_FRAME_OVERHEAD (4 + crypto_secretstream_xchacha20poly1305_ABYTES)
#define SEAL_STREAM_HEADER_LEN crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define SEAL_GCM_SALT_LEN 16              /* the a256gcm stream's header */
#define SEAL_GCM_TAG_LEN 16
#define SEAL_GCM_FINAL 0x80000000u        /* the final bit of an a256gcm frame's length */
#define SEAL_FRAME_MAX (1u << 20)         /* largest sealed chunk accepted */
#define SEAL_CONTENT_TYPE "application/x-troop-sealed"
#define SEAL_HEADER "X-Troop-Seal"
#define SEAL_GCM_NAME "a256gcm"
#define SEAL_GCM2_NAME "a256gcm2"
/* the reply's Content-Type when its stream is a256gcm, a256gcm2 */
#define SEAL_CONTENT_TYPE_GCM SEAL_CONTENT_TYPE "; reply=" SEAL_GCM_NAME
#define SEAL_CONTENT_TYPE_GCM2 SEAL_CONTENT_TYPE "; reply=" SEAL_GCM2_NAME
#define SEAL_JTI_MAX 128                  /* chars of a ticket id a sealed job takes */
/* A client keeps one job key for a worker's sealing key this long at most
 * (a256gcm2 replies only; docs/PROTOCOL.md "Sealed jobs"): the window that
 * one key's compromise at either end opens. */
#define SEAL_KEY_REUSE_S 600
#define SEAL_KEY_REUSE_JOBS 100000

/* How a reply stream is sealed. */
typedef enum {
	SEAL_REPLY_SS = 0,   /* crypto_secretstream_xchacha20poly1305 (v1) */
	SEAL_REPLY_GCM = 1,  /* AES-256-GCM frames, counter nonces ("a256gcm") */
	SEAL_REPLY_GCM2 = 2, /* the same, the stream key bound to the jti ("a256gcm2") */
} seal_reply_suite;

/* ---- the worker's sealing key and its signed statement ------------------------- */

typedef struct {
	uint8_t pk[SEAL_PK_LEN];
	uint8_t sk[SEAL_SK_LEN];
	int64_t not_before;   /* unix seconds */
	int64_t not_after;
} seal_keypair;

/* A fresh key pair valid over [now, now + lifetime_s]. */
int seal_keypair_generate(seal_keypair *kp, int64_t now, int64_t lifetime_s);

/* The statement for `kp`, signed by the node's identity, base64url into
 * out (at least SEAL_STMT_MAX bytes).  Returns 0 or TROOP_EINVAL. */
int seal_statement_make(char *out, size_t len, const troop_identity *node,
    const seal_keypair *kp);

/* Check statement `stmt` against `node_id` (the node's account id, i.e.
 * its Ed25519 public key) at time `now` (60 s of clock skew allowed at
 * either end).  On success the sealing public key goes to pk and its end
 * of validity to *not_after (may be NULL).  Returns 0, TROOP_EINVAL
 * (malformed), TROOP_EAUTH (the signature is not the node's: a
 * substituted key) or TROOP_EGONE (outside its validity). */
int seal_statement_verify(uint8_t pk[SEAL_PK_LEN], int64_t *not_after, const char *stmt,
    const char *node_id, int64_t now);

/* ---- the request ------------------------------------------------------------------ */

/* One job's keys, either side. */
typedef struct {
	uint8_t req_key[SEAL_KEY_LEN];    /* client -> worker */
	uint8_t resp_key[SEAL_KEY_LEN];   /* worker -> client */
	uint8_t epk[SEAL_PK_LEN];         /* the client's ephemeral public key */
	uint8_t seal_pk[SEAL_PK_LEN];     /* the worker's sealing key used */
	uint8_t reply;                    /* seal_reply_suite: the client's offer
	                                   * (the best it reads), then what the
	                                   * reply uses */
	char jti[SEAL_JTI_MAX + 1];       /* the ticket's id: set when the request
	                                   * is sealed or opened */
} seal_job;

/* Client: a fresh ephemeral key pair against the worker's sealing key;
 * the job offers the a256gcm2 reply (and a256gcm). */
int seal_client_begin(seal_job *j, const uint8_t seal_pk[SEAL_PK_LEN]);

/* As seal_client_begin with the ephemeral key pair made from `seed`
 * (crypto_kx_seed_keypair; NULL: random): for test vectors only. */
int seal_client_begin_seed(seal_job *j, const uint8_t seal_pk[SEAL_PK_LEN],
    const uint8_t seed[32]);

/* The value of the X-Troop-Seal request header for `j`:
 * "v1; epk=<base64url>; key=<base64url of the worker's sealing key>", then
 * the reply suites the job offers besides secretstream: "; reply=a256gcm2,
 * a256gcm" (j->reply SEAL_REPLY_GCM2) or "; reply=a256gcm" (SEAL_REPLY_GCM). */
int seal_header_format(char *out, size_t len, const seal_job *j);

/* Parse a request's X-Troop-Seal header into epk and the sealing key it
 * names, and into *reply the reply suite to use: the best the client
 * offers (reply=, a comma-separated list): SEAL_REPLY_GCM2, SEAL_REPLY_GCM,
 * else SEAL_REPLY_SS (reply may be NULL).  Returns 0 or TROOP_EINVAL. */
int seal_header_parse(uint8_t epk[SEAL_PK_LEN], uint8_t seal_pk[SEAL_PK_LEN], int *reply,
    const char *value);

/* Client: a reply's Content-Type.  When it is SEAL_CONTENT_TYPE, the
 * suite it names (its reply= parameter: a256gcm2, a256gcm, else
 * secretstream) goes to j->reply, for the reader, and 0 is returned; -1
 * (j unchanged) when the reply is not sealed. */
int seal_reply_take(seal_job *j, const char *ctype);

/* Worker: the Content-Type of j's sealed reply (the suite it uses). */
const char *seal_reply_content_type(const seal_job *j);

/* Worker: the job's keys from its sealing key pair and the client's epk. */
int seal_server_begin(seal_job *j, const seal_keypair *kp, const uint8_t epk[SEAL_PK_LEN]);

/* Seal request `body` for ticket `jti` on node `node_id`, appended to out
 * (nonce || ciphertext); the jti goes to j->jti, for the reply.  Returns
 * 0, TROOP_EINVAL, TROOP_ENOMEM or TROOP_ETOOLARGE. */
int seal_request_seal(dynbuf *out, seal_job *j, const char *jti, const char *node_id,
    const void *body, size_t len);

/* Open a sealed request, appending the plaintext to out; the jti goes to
 * j->jti, for the reply.  Returns 0, TROOP_EAUTH (altered, another job's,
 * or sealed for another ticket or node), TROOP_EINVAL (too short),
 * TROOP_ENOMEM or TROOP_ETOOLARGE. */
int seal_request_open(dynbuf *out, seal_job *j, const char *jti, const char *node_id,
    const void *sealed, size_t len);

/* As seal_request_seal with the nonce given: for test vectors only. */
int seal_request_seal_nonce(dynbuf *out, seal_job *j, const char *jti,
    const char *node_id, const void *body, size_t len, const uint8_t nonce[24]);

/* ---- the response stream ------------------------------------------------------------ */

/* The state of one direction of a reply stream, either suite. */
typedef struct {
	int suite;                                      /* seal_reply_suite */
	crypto_secretstream_xchacha20poly1305_state st; /* SEAL_REPLY_SS */
	struct evp_cipher_ctx_st *gcm;                  /* SEAL_REPLY_GCM: OpenSSL's, keyed */
	uint64_t counter;                               /* ... the next frame's */
} seal_stream;

typedef struct {
	seal_stream s;
	bool started, finished;
} seal_writer;

/* Worker: start the response stream in the suite j->reply names (for
 * a256gcm2, bound to j->jti); appends its header to out (24 bytes for
 * secretstream, the 16-byte salt for a256gcm and a256gcm2).  Release with seal_writer_free.  Returns 0, TROOP_ENOMEM or
 * TROOP_ERR (the cipher would not start). */
int seal_writer_begin(seal_writer *w, dynbuf *out, const seal_job *j);

/* As seal_writer_begin with the a256gcm(2) salt given: for test vectors. */
int seal_writer_begin_salt(seal_writer *w, dynbuf *out, const seal_job *j,
    const uint8_t salt[SEAL_GCM_SALT_LEN]);

void seal_writer_free(seal_writer *w);

/* Seal one chunk (len may be 0 only when final) as a frame appended to
 * out; `final` ends the stream (nothing may follow). */
int seal_writer_push(seal_writer *w, dynbuf *out, const void *data, size_t len, bool final);

/* Client: called with each chunk of plaintext, in order.  Non-zero stops. */
typedef int (*seal_chunk_fn)(void *arg, const uint8_t *data, size_t len);

typedef struct {
	seal_stream s;
	uint8_t key[SEAL_KEY_LEN];
	char jti[SEAL_JTI_MAX + 1];   /* a256gcm2: the ticket the stream is bound to */
	dynbuf in;           /* bytes not yet a whole frame */
	dynbuf plain;        /* a frame opened for on_chunk (reused) */
	dynbuf *sink;        /* seal_reader_init_sink: frames opened here */
	bool started, finished, failed;
	seal_chunk_fn on_chunk;
	void *arg;
} seal_reader;

/* Start reading a response stream sealed for `j`, in the suite j->reply
 * names (the reply's Content-Type says which: seal_reply_take); a256gcm2
 * opens only for the ticket j->jti names. */
void seal_reader_init(seal_reader *r, const seal_job *j, seal_chunk_fn on_chunk, void *arg);

/* As seal_reader_init, but each chunk's plaintext is appended to `sink`
 * (bounded by its own limit; the caller empties it as it likes) instead of
 * going to a callback: no copy.  The sink must outlive the reader. */
void seal_reader_init_sink(seal_reader *r, const seal_job *j, dynbuf *sink);

/* Feed bytes as they arrive (whole frames in `data` are opened where they
 * lie; pieces are gathered first).  Returns 0, TROOP_EAUTH (a frame
 * altered, dropped, reordered or from another job; the reader is then
 * failed),
 * TROOP_EINVAL (bytes after the final frame, a frame over SEAL_FRAME_MAX),
 * TROOP_ENOMEM, or on_chunk's non-zero return. */
int seal_reader_feed(seal_reader *r, const void *data, size_t len);

/* The stream ended: 0 when it ended with its final frame, else
 * TROOP_EUPSTREAM (cut short). */
int seal_reader_finish(seal_reader *r);

void seal_reader_free(seal_reader *r);

/* Wipe a job's keys. */
void seal_job_wipe(seal_job *j);

#endif
