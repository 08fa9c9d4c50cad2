/*
 * proto.h - the wire protocol as code: one typed struct, one encoder and
 * one decoder for every JSON message that crosses a process boundary
 * (docs/PROTOCOL.md is written against this file).
 *
 *   message                      built by                 read by
 *   heartbeat                    worker (heartbeat.c)     coordinator (api_nodes.c)
 *   heartbeat reply              coordinator              worker
 *   node record (/peers, /nodes) coordinator (api_nodes.c) clients, any program
 *   authorize request            troop up, troop chat     coordinator (api_credits.c)
 *   authorize reply (ticket)     coordinator              troop up, troop chat
 *   receipt                      worker (job.c)           coordinator (api_jobs.c)
 *   settlement reply             coordinator              worker (receipts.c)
 *   public key                   coordinator (api_meta.c) worker (keyring.c)
 *   JWKS                         coordinator              any JOSE library
 *   error body                   every role               every role
 *   PoH challenge request/reply  worker / coordinator     (api_hardware.c,
 *   PoH verify request/reply     worker / coordinator      poh_worker.c)
 *   PoH reveal request/reply     worker / coordinator
 *
 * Both ends use the same code, so the limits (string lengths, list counts,
 * numeric ranges) are written once, here, in the decoders.  A decoder
 * never trusts its input: it checks every field it keeps, copies it into
 * fixed-size storage in the struct (no pointers into the JSON), drops
 * fields it does not know, and on failure returns TROOP_EINVAL (or
 * TROOP_EFORBIDDEN where noted) with troop_error_set naming the bad field
 * ("field 'port' must be between 1 and 65535", "hardware: field 'gpu' is
 * longer than 128 bytes", "exclude[2] must be a string").
 *
 * Encoders return a new jansson reference (NULL when out of memory) that
 * a decoder of the same message accepts.
 *
 * All functions are pure and thread-safe.  Structs are plain values:
 * zero-initialise, fill, encode; or decode into one.  The only heap
 * memory is proto_heartbeat.models and the rows of proto_poh_reveal, freed
 * by proto_heartbeat_clear and proto_poh_reveal_clear.
 */
#ifndef TROOP_PROTO_H
#define TROOP_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "poh.h"
#include "ticket.h"

/* ---- limits (bytes without the NUL, or counts) ---------------------------- */

#define PROTO_ID_MAX TROOP_ID_LEN     /* account and node ids: 43 base64url chars */
#define PROTO_JOB_ID_MAX 64           /* job ids (a ticket's jti) */
#define PROTO_NAME_MAX 128            /* node names */
#define PROTO_IP_MAX 63               /* textual IPv4 or IPv6 address */
#define PROTO_KEY_MAX 64              /* X25519 public key, base64url */
#define PROTO_SEAL_KEY_MAX 160        /* signed sealing key statement (seal.h) */
#define PROTO_VERSION_MAX 64          /* "troop/0.1.0", engine versions */
#define PROTO_MODEL_MAX 255           /* model names */
#define PROTO_HASH_MAX 127            /* "sha256:<64 hex>" */
#define PROTO_ENGINE_MAX 31           /* "ollama", "vllm", ... */
#define PROTO_MODELS_MAX 256          /* models per heartbeat */
#define PROTO_ENGINES_MAX 32          /* engines per heartbeat */
#define PROTO_GPU_NAME_MAX 128        /* hardware.gpu */
#define PROTO_GPU_SOURCE_MAX 15       /* hardware.source: "nvml", "nvidia-smi", "none" */
#define PROTO_GPU_COUNT_MAX 1024
#define PROTO_VRAM_MAX ((int64_t)1 << 40)   /* MiB */
#define PROTO_JOBS_MAX 100000         /* load.active_jobs, load.max_jobs */
#define PROTO_EXCLUDE_MAX 64          /* authorize: exclude */
#define PROTO_MAX_SECONDS_MAX 604800  /* authorize: max_seconds (a week) */
#define PROTO_WAIT_MAX 600            /* authorize: wait (seconds in the queue) */
#define PROTO_TICKET_MAX TICKET_MAX_LEN
#define PROTO_OUTCOME_MAX 31          /* receipt outcome */
#define PROTO_DIGEST_MAX 128          /* response digest of a receipt or report */
#define PROTO_DURATION_MS_MAX ((int64_t)7 * 24 * 3600 * 1000)
#define PROTO_TOKENS_MAX INT32_MAX
#define PROTO_ERR_MESSAGE_MAX 1024    /* error.message as decoded (longer is cut) */
#define PROTO_ERR_CODE_MAX 63
#define PROTO_TTL_MAX 86400           /* heartbeat reply: ttl, next_heartbeat */
#define PROTO_CONTEXT_MAX ((int64_t)1 << 32)  /* models[].context_length, tokens */
#define PROTO_NAMES_MAX 16            /* models[].endpoints: items */
#define PROTO_CAP_NAME_MAX 31         /* a capability or endpoint name */

/* ---- model capabilities and native endpoints ------------------------------- */

/* What a model takes, as bits of proto_model.caps and .caps_known; on the
 * wire the names "tools", "vision", "embeddings". */
#define PROTO_CAP_TOOLS 0x1u          /* tool (function) calls */
#define PROTO_CAP_VISION 0x2u         /* images in messages */
#define PROTO_CAP_EMBEDDINGS 0x4u     /* an embedding model */
#define PROTO_CAP_ALL 0x7u

/* The API endpoints an engine serves natively, as bits of
 * proto_model.endpoints; on the wire "chat" (/v1/chat/completions),
 * "completions", "embeddings", "responses" (/v1/responses), "messages"
 * (/v1/messages), "tokenize", "count_tokens" (/v1/messages/count_tokens). */
#define PROTO_EP_CHAT 0x1u
#define PROTO_EP_COMPLETIONS 0x2u
#define PROTO_EP_EMBEDDINGS 0x4u
#define PROTO_EP_RESPONSES 0x8u
#define PROTO_EP_MESSAGES 0x10u
#define PROTO_EP_TOKENIZE 0x20u
#define PROTO_EP_COUNT_TOKENS 0x40u
#define PROTO_EP_ALL 0x7fu

/* The wire name of one PROTO_CAP_* / PROTO_EP_* bit; NULL for anything
 * else.  Static strings. */
const char *proto_cap_name(uint32_t bit);
const char *proto_endpoint_name(uint32_t bit);

/* The bit named `s`, or 0 when it names none. */
uint32_t proto_cap_parse(const char *s);
uint32_t proto_endpoint_parse(const char *s);

/* The names of the bits set in `bits`, as a JSON array of strings, in bit
 * order.  New reference (NULL when out of memory). */
json_t *proto_caps_json(uint32_t bits);
json_t *proto_endpoints_json(uint32_t bits);

/* ---- error body: {"error":{"message","type","code"}} ---------------------- */

typedef struct {
	char message[PROTO_ERR_MESSAGE_MAX + 1];  /* "" when absent */
	char type[PROTO_ERR_CODE_MAX + 1];
	char code[PROTO_ERR_CODE_MAX + 1];
} proto_error;

/* The error body for troop_err `err` (type and code from error.h) with
 * `message`.  New reference. */
json_t *proto_error_encode(int err, const char *message);

/* Read an error body as any role writes it, and as engines write theirs:
 * "error" an object (message/type/code strings; a numeric code is
 * printed) or a bare string.  Long messages are cut, not refused.
 * Returns 0, or TROOP_EINVAL when `obj` is no error body. */
int proto_error_decode(proto_error *out, const json_t *obj);

/* ---- heartbeat (POST /heartbeat) ------------------------------------------ */

typedef enum {
	PROTO_IDLE = 0,     /* takes jobs */
	PROTO_BUSY,         /* full, or the owner is using the GPU */
	PROTO_OFFLINE,      /* shutting down: drop me now */
} proto_status;

typedef struct {
	char name[PROTO_MODEL_MAX + 1];           /* required, non-empty */
	char content_hash[PROTO_HASH_MAX + 1];    /* "" when the engine has none */
	int64_t size_bytes;                       /* >= 0 */
	char engine[PROTO_ENGINE_MAX + 1];
	/* What the engine says about the model; unknown stays unknown (the
	 * field is left out on the wire), never guessed. */
	int64_t context_length;                   /* tokens, 0 .. PROTO_CONTEXT_MAX; 0 unknown */
	uint32_t caps;                            /* PROTO_CAP_* it has (within caps_known) */
	uint32_t caps_known;                      /* PROTO_CAP_* the engine said yes or no to */
	uint32_t endpoints;                       /* PROTO_EP_* served natively; 0 unknown */
} proto_model;

/* The documented hardware fields (DESIGN.md section 6) and the worker's
 * "source"; any other key is dropped by the decoder.  Numbers are -1 when
 * unknown (a GPU that does not report them). */
typedef struct {
	char gpu[PROTO_GPU_NAME_MAX + 1];         /* "" for none */
	int64_t gpu_count;                        /* 0 .. PROTO_GPU_COUNT_MAX */
	int64_t vram_total;                       /* MiB, -1 .. PROTO_VRAM_MAX */
	int64_t vram_free;                        /* MiB, -1 .. PROTO_VRAM_MAX */
	int64_t gpu_util;                         /* percent, -1 .. 100 */
	char source[PROTO_GPU_SOURCE_MAX + 1];    /* "" when absent */
	bool has_vram;                            /* vram_total/vram_free were sent */
	bool has_util;                            /* gpu_util was sent */
} proto_hardware;

typedef struct {
	char type[PROTO_ENGINE_MAX + 1];
	char version[PROTO_VERSION_MAX + 1];
	int port;                                 /* 0 .. 65535 */
} proto_engine;

typedef struct {
	char node_id[PROTO_ID_MAX + 1];           /* required: the signer */
	char name[PROTO_NAME_MAX + 1];
	char tailscale_ip[PROTO_IP_MAX + 1];      /* required: IPv4 or IPv6 */
	int port;                                 /* required: 1 .. 65535 */
	proto_status status;                      /* required */
	proto_model *models;                      /* heap, n_models entries */
	size_t n_models;                          /* 0 .. PROTO_MODELS_MAX */
	bool has_hardware;
	proto_hardware hardware;
	proto_engine engines[PROTO_ENGINES_MAX];
	size_t n_engines;
	char encryption_public_key[PROTO_KEY_MAX + 1];
	char seal_key[PROTO_SEAL_KEY_MAX + 1];   /* "" when the node does not seal */
	int active_jobs;                          /* load.active_jobs, 0 .. PROTO_JOBS_MAX */
	int max_jobs;                             /* load.max_jobs, 0 .. PROTO_JOBS_MAX */
	char owner[PROTO_ID_MAX + 1];             /* "" when absent: the node itself */
	char version[PROTO_VERSION_MAX + 1];
} proto_heartbeat;

/* "IDLE", "BUSY", "OFFLINE" ("UNKNOWN" for other values). */
const char *proto_status_name(proto_status s);

/* Decode a heartbeat body.  `signer` (may be NULL) is the account that
 * signed it: node_id must equal it (TROOP_EFORBIDDEN otherwise).
 * *out is overwritten; on success out->models is heap memory
 * (proto_heartbeat_clear).  On failure *out holds nothing to free. */
int proto_heartbeat_decode(proto_heartbeat *out, const json_t *obj, const char *signer);

/* The models list [{"name","content_hash","size_bytes","engine",
 * "context_length"?, "capabilities"?: {"tools": bool, "vision": bool,
 * "embeddings": bool} (each key optional), "endpoints"?: ["chat", ...]}]
 * alone,
 * with the heartbeat's limits: *out is a heap array of *n (NULL when 0),
 * freed with free().  Used by the worker to turn its catalog into a
 * heartbeat. */
int proto_models_decode(proto_model **out, size_t *n, const json_t *arr);

/* One entry of that list; the capability fields only when known.  New
 * reference. */
json_t *proto_model_encode(const proto_model *m);

/* The heartbeat body; `owner` is left out when empty.  New reference. */
json_t *proto_heartbeat_encode(const proto_heartbeat *hb);

/* The stored and republished part of a heartbeat:
 * {"hardware":{...},"engines":[...]} with only the decoded fields.
 * New reference. */
json_t *proto_heartbeat_extra_encode(const proto_heartbeat *hb);

/* Free hb->models and zero the struct.  NULL is fine. */
void proto_heartbeat_clear(proto_heartbeat *hb);

/* Fill hb->hardware / hb->engines from a stored {"hardware","engines"}
 * object (what proto_heartbeat_extra_encode wrote), with the heartbeat's
 * limits.  Fields absent there stay as they are. */
int proto_heartbeat_extra_decode(proto_heartbeat *hb, const json_t *extra);

/* ---- node record (GET /peers, GET /nodes/{node_id}) -------------------------- */

/* A node as discovery shows it: the fields of its last heartbeat (status
 * OFFLINE, tailscale_ip "" and port 0 when it is not live) and the
 * coordinator's facts about it. */
typedef struct {
	proto_heartbeat hb;           /* hb.models is heap memory (proto_node_clear) */
	int64_t last_seen;            /* unix seconds, 0 when never */
	double multiplier;            /* 0 .. 1000 */
	bool verified;
	int64_t verified_at;          /* unix seconds, 0 when never */
	double reputation;            /* 0 .. 1 */
	bool live;
} proto_node;

json_t *proto_node_encode(const proto_node *n);
/* Decode a record as /peers and /nodes/{id} write it.  On success free
 * with proto_node_clear. */
int proto_node_decode(proto_node *out, const json_t *obj);
void proto_node_clear(proto_node *n);

/* ---- heartbeat reply ------------------------------------------------------- */

/* {"status":"seen","ttl","next_heartbeat","verified","multiplier",
 * "ticket_kid"?}, or to an OFFLINE heartbeat
 * {"status":"removed","ttl":0,"next_heartbeat":0}.  ticket_kid names the
 * newest ticket key the coordinator publishes: a worker that does not know
 * it fetches the key set (GET /.well-known/jwks.json), so that it knows a
 * new key before the key signs. */
typedef struct {
	bool removed;                 /* status "removed" (else "seen"); decoding
	                                 "removed" zeroes the other fields */
	int64_t ttl;                  /* 0 .. PROTO_TTL_MAX */
	int64_t next_heartbeat;       /* 0 .. PROTO_TTL_MAX */
	bool verified;                /* absent in "removed" */
	double multiplier;            /* absent in "removed"; 0 there */
	char ticket_kid[TICKET_KID_LEN + 1]; /* "": absent */
} proto_heartbeat_reply;

json_t *proto_heartbeat_reply_encode(const proto_heartbeat_reply *r);
int proto_heartbeat_reply_decode(proto_heartbeat_reply *out, const json_t *obj);

/* ---- authorize (POST /authorize) ------------------------------------------ */

/* What a request needs of the node's model ("require" in the authorize
 * request; all zero: nothing).  On the wire {"context": N, "tools": true,
 * "vision": true, "embeddings": true, "endpoint": "responses"}, every key
 * optional; a false capability is the same as an absent one.  Unknown
 * keys and endpoint names are refused (a requirement the coordinator
 * cannot check must not be dropped). */
typedef struct {
	int64_t context;                          /* tokens, 0 .. PROTO_CONTEXT_MAX; 0 none */
	uint32_t caps;                            /* PROTO_CAP_* */
	uint32_t endpoints;                       /* PROTO_EP_* (one, from "endpoint") */
} proto_require;

/* How a model with `m`'s capabilities fits `req`:
 *   PROTO_FIT_MET      the engine said yes to every requirement (an
 *                      unknown context length counts as yes: nearly
 *                      every request needs some context, and nodes that
 *                      do not report one must not lose their work to
 *                      those that do);
 *   PROTO_FIT_UNKNOWN  no requirement is known to fail, but the engine
 *                      did not say about some (a capability, or the
 *                      endpoints it did not report);
 *   PROTO_FIT_UNMET    the engine said no to one: a context shorter than
 *                      asked, a capability it lacks, endpoints that do
 *                      not include the one asked.
 * Node choice takes MET nodes, else UNKNOWN ones (the engine answers for
 * itself), never UNMET ones.  For UNMET, *kind (may be NULL) gets 'x' for
 * the context, 'c' for a capability, 'e' for an endpoint, and *why (may
 * be NULL) that PROTO_CAP_* or PROTO_EP_* bit (0 for the context). */
typedef enum {
	PROTO_FIT_UNMET = 0,
	PROTO_FIT_UNKNOWN,
	PROTO_FIT_MET,
} proto_fit;

proto_fit proto_require_check(const proto_require *req, const proto_model *m, char *kind,
    uint32_t *why);

/* Whether `req` asks for anything. */
bool proto_require_any(const proto_require *req);

#define PROTO_DISPLAY_NAME_MAX 32

/* Check a display name an account chooses for the public leaderboard:
 * "" (no name), or 1 .. PROTO_DISPLAY_NAME_MAX bytes of UTF-8 with no
 * control characters, no leading or trailing space and none of the
 * invisible or direction-changing characters (U+200B..U+200F,
 * U+202A..U+202E, U+2066..U+2069, U+FEFF) that would let a name pass for
 * another.  0, or TROOP_EINVAL with a message that says why. */
int proto_display_name_check(const char *name);

typedef struct {
	char model[PROTO_MODEL_MAX + 1];          /* required, non-empty */
	char node_id[PROTO_ID_MAX + 1];           /* "": any node */
	proto_require require;                    /* "require": all zero when absent */
	char exclude[PROTO_EXCLUDE_MAX][PROTO_ID_MAX + 1];
	size_t n_exclude;
	int64_t max_seconds;                      /* 0: absent (the coordinator's default) */
	int64_t wait;                             /* seconds to wait in the coordinator's
	                                             queue when every node is busy, 0 ..
	                                             PROTO_WAIT_MAX; 0: answer 503 at once */
	bool ahead;                               /* "ahead": a ticket fetched ahead of the
	                                             request that will use it: it holds no
	                                             slot until its job starts, and never
	                                             waits in the queue */
} proto_authorize_req;

int proto_authorize_req_decode(proto_authorize_req *out, const json_t *obj);
json_t *proto_authorize_req_encode(const proto_authorize_req *req);

/* Whether `node_id` is in req->exclude. */
bool proto_authorize_req_excludes(const proto_authorize_req *req, const char *node_id);

/* Add `node_id` to req->exclude (no duplicates).  0, or TROOP_ETOOLARGE
 * when the list is full, TROOP_EINVAL when the id is empty or too long. */
int proto_authorize_req_exclude(proto_authorize_req *req, const char *node_id);

typedef struct {
	char job_id[PROTO_JOB_ID_MAX + 1];        /* [A-Za-z0-9_-]+ */
	char token[PROTO_TICKET_MAX + 1];         /* [A-Za-z0-9_.-]+ */
	char node_id[PROTO_ID_MAX + 1];
	char target_ip[PROTO_IP_MAX + 1];         /* IPv4 or IPv6 */
	int target_port;                          /* 1 .. 65535 */
	int64_t estimated_cost;                   /* >= 0 */
	int64_t expires_at;                       /* unix seconds */
	int64_t max_seconds;                      /* 1 .. PROTO_MAX_SECONDS_MAX; 300 when absent */
	char encryption_public_key[PROTO_KEY_MAX + 1];
	/* the node's signed sealing key statement (seal.h); "" when it does
	 * not seal.  Sent only when set. */
	char seal_key[PROTO_SEAL_KEY_MAX + 1];
} proto_authorize_reply;

int proto_authorize_reply_decode(proto_authorize_reply *out, const json_t *obj);
json_t *proto_authorize_reply_encode(const proto_authorize_reply *rep);

/* ---- receipt (POST /jobs/{job_id}/receipt) ----------------------------------- */

typedef struct {
	char job_id[PROTO_JOB_ID_MAX + 1];        /* required */
	char node_id[PROTO_ID_MAX + 1];           /* "" when absent */
	char requester[PROTO_ID_MAX + 1];
	char model[PROTO_MODEL_MAX + 1];
	int64_t duration_ms;                      /* required, 0 .. PROTO_DURATION_MS_MAX */
	int64_t prompt_tokens;                    /* 0 .. PROTO_TOKENS_MAX */
	int64_t completion_tokens;
	char outcome[PROTO_OUTCOME_MAX + 1];      /* "ok" when absent */
	int64_t started_at;                       /* unix seconds, 0 when absent */
	int64_t ended_at;
	/* the worker's SHA-256 (lowercase hex) of the response body it sent;
	 * "" when absent (docs/PROTOCOL.md "Two witnesses") */
	char response_digest[PROTO_DIGEST_MAX + 1];
} proto_receipt;

int proto_receipt_decode(proto_receipt *out, const json_t *obj);
json_t *proto_receipt_encode(const proto_receipt *rc);

/* {"status":"settled","job_id","charged","refunded","already_settled"} */
typedef struct {
	char job_id[PROTO_JOB_ID_MAX + 1];
	int64_t charged;                          /* >= 0 */
	int64_t refunded;                         /* >= 0 */
	bool already_settled;
} proto_settlement;

int proto_settlement_decode(proto_settlement *out, const json_t *obj);
json_t *proto_settlement_encode(const proto_settlement *s);

/* ---- the coordinator's key (GET /public-key, GET /.well-known/jwks.json) ---- */

typedef struct {
	char public_key[PROTO_ID_MAX + 1];        /* base64url Ed25519 key: 43 chars */
	char kid[TICKET_KID_LEN + 1];
	char alg[16];                             /* "EdDSA" */
} proto_public_key;

/* Decoding checks that public_key is a valid key, kid its ticket_kid and
 * alg "EdDSA": a key that does not match its kid is refused. */
int proto_public_key_decode(proto_public_key *out, const json_t *obj);
json_t *proto_public_key_encode(const proto_public_key *k);
/* {"keys":[{"kty":"OKP","crv":"Ed25519","x","kid","alg":"EdDSA","use":"sig"}, ...]}:
 * the n keys of k, in order. */
json_t *proto_jwks_encode(const proto_public_key *k, size_t n);

#define PROTO_JWKS_MAX 8

/* The keys of a JWKS document: the Ed25519 signing keys among its "keys"
 * (others, such as keys for other algorithms, are skipped), each checked
 * as proto_public_key_decode checks one; at most PROTO_JWKS_MAX into out,
 * *n how many.  TROOP_EINVAL for a document without a "keys" array, with
 * more than PROTO_JWKS_MAX entries, or with an Ed25519 key that does not
 * match its kid. */
int proto_jwks_decode(proto_public_key *out, size_t *n, const json_t *obj);

/* ---- proof-of-hardware (DESIGN.md section 9) --------------------------------- */

#define PROTO_POH_ID_MAX 64           /* challenge ids */
#define PROTO_POH_CLASS_MAX 7         /* "gpu", "cpu" */

/* POST /hardware/challenge body: {"class"?: "gpu" | "cpu"}. */
typedef struct {
	char class_[PROTO_POH_CLASS_MAX + 1];     /* "" when absent (the coordinator: "gpu") */
} proto_poh_challenge_req;

int proto_poh_challenge_req_decode(proto_poh_challenge_req *out, const json_t *obj);
json_t *proto_poh_challenge_req_encode(const proto_poh_challenge_req *req);

/* Its reply.  Decoding checks the algorithm is POH_ALGORITHM, the seed is
 * POH_SEED_LEN bytes of base64url and (n, rounds) pass poh_params_check. */
typedef struct {
	char challenge_id[PROTO_POH_ID_MAX + 1];
	uint8_t seed[POH_SEED_LEN];
	int64_t matrix_size;                      /* n */
	int64_t rounds;
	int64_t expires_at;                       /* unix seconds, 0 when absent */
	int64_t samples;                          /* rows the coordinator will ask, 0 .. POH_K_MAX */
	char class_[PROTO_POH_CLASS_MAX + 1];
} proto_poh_challenge;

int proto_poh_challenge_decode(proto_poh_challenge *out, const json_t *obj);
json_t *proto_poh_challenge_encode(const proto_poh_challenge *ch);

/* POST /hardware/verify body: {"challenge_id","merkle_root": base64 of 32 bytes}.
 * Any timing field the worker adds is ignored. */
typedef struct {
	char challenge_id[PROTO_POH_ID_MAX + 1];
	uint8_t merkle_root[POH_HASH_LEN];
} proto_poh_verify_req;

int proto_poh_verify_req_decode(proto_poh_verify_req *out, const json_t *obj);
json_t *proto_poh_verify_req_encode(const proto_poh_verify_req *req);

/* Its reply: {"challenge_id","indices":[row, ...],"expires_at"}.  The
 * decoder takes the challenge's n: every index must be below it. */
typedef struct {
	char challenge_id[PROTO_POH_ID_MAX + 1];
	uint32_t indices[POH_K_MAX];
	size_t n_indices;                         /* 0 .. POH_K_MAX */
	int64_t expires_at;
} proto_poh_verify_reply;

int proto_poh_verify_reply_decode(proto_poh_verify_reply *out, const json_t *obj, size_t n);
json_t *proto_poh_verify_reply_encode(const proto_poh_verify_reply *rep);

/* POST /hardware/reveal body:
 * {"challenge_id","rows":[{"index","row": base64 of n bytes,
 *   "path":[base64 of 32 bytes, ...]}, ...]} */
typedef struct {
	uint32_t index;                           /* < n */
	const int8_t *row;                        /* n bytes inside proto_poh_reveal.data */
	uint8_t path[POH_PATH_MAX][POH_HASH_LEN];
	size_t path_len;                          /* 0 .. POH_PATH_MAX */
} proto_poh_row;

typedef struct {
	char challenge_id[PROTO_POH_ID_MAX + 1];
	size_t n;                                 /* bytes per row */
	proto_poh_row *rows;                      /* heap, n_rows entries */
	size_t n_rows;                            /* 0 .. POH_K_MAX */
	int8_t *data;                             /* heap, n_rows * n bytes */
} proto_poh_reveal;

/* Only the challenge id (and that "rows" is a list of at most POH_K_MAX),
 * before the challenge, and so n, is known. */
int proto_poh_reveal_id(char id[PROTO_POH_ID_MAX + 1], const json_t *obj);
/* The whole reveal, rows of exactly `n` bytes (POH_N_MIN .. POH_N_MAX).
 * Which rows were asked for, and the paths, are the verifier's to check.
 * On success free with proto_poh_reveal_clear. */
int proto_poh_reveal_decode(proto_poh_reveal *out, const json_t *obj, size_t n);
json_t *proto_poh_reveal_encode(const proto_poh_reveal *rv);
void proto_poh_reveal_clear(proto_poh_reveal *rv);

/* The reveal's reply:
 * {"status":"verified","verified","multiplier","ops","ops_per_s","elapsed_ms",
 *  "matrix_size","rounds","samples","verified_at"} */
typedef struct {
	bool verified;
	double multiplier;                        /* 0 .. 1000 */
	double ops;
	double ops_per_s;
	int64_t elapsed_ms;
	int64_t matrix_size;
	int64_t rounds;
	int64_t samples;
	int64_t verified_at;
} proto_poh_result;

int proto_poh_result_decode(proto_poh_result *out, const json_t *obj);
json_t *proto_poh_result_encode(const proto_poh_result *res);

#endif
