/*
 * registry.h - the coordinator's live state (DESIGN.md section 11): node
 * records with a TTL and a model -> nodes index (by model name and by
 * content hash), signature nonces, rate-limit windows, and a key/value
 * store with TTL for proof-of-hardware challenges and replay caches.
 *
 * Nothing here is durable: a restart forgets it, and nodes re-register
 * with their next heartbeat.  Durable node facts (owner, multiplier,
 * verification, reputation) live in the ledger; each live record carries
 * a copy of them (registry_facts), written at every heartbeat from the
 * ledger row the heartbeat reads anyway and after every proof-of-hardware
 * (registry_set_node_facts), so that choosing a node and listing nodes
 * read the registry alone.  The copy may lag the ledger by one heartbeat
 * when a proof lands while a heartbeat is in flight.
 *
 * One `registry` handle is shared by every server thread: every function
 * is thread-safe.  Backends sit behind struct registry_ops (bottom of this
 * file): the in-process one (registry_memory.c, the embedded default) and
 * Redis (registry_redis.c), shared by several coordinators.  registry.c checks every
 * argument before it reaches a backend.
 *
 * Errors: 0 or a negative troop_err (error.h) with troop_error_set.
 * Common to all:
 *   TROOP_EINVAL     a missing argument, or one out of range
 *   TROOP_ETOOLARGE  a string or value over its REGISTRY_*_MAX
 *   TROOP_ENOMEM     out of memory
 *   TROOP_EUNAVAIL   the backend is unreachable or full of live entries
 * Functions list their other codes.
 *
 * Time: every `now` is unix seconds supplied by the caller.  An entry put
 * with ttl T at time `now` is live while now' < now + T.
 */
#ifndef TROOP_REGISTRY_H
#define TROOP_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits, in bytes without the NUL (strings) or counts. */
#define REGISTRY_ID_MAX 64          /* node ids, owners */
#define REGISTRY_NAME_MAX 128       /* node names */
#define REGISTRY_IP_MAX 63          /* textual IPv4/IPv6 address or host name */
#define REGISTRY_KEY_MAX 64         /* X25519 public key, base64url */
#define REGISTRY_SEAL_KEY_MAX 160   /* signed sealing key statement (seal.h) */
#define REGISTRY_VERSION_MAX 64     /* software version string */
#define REGISTRY_MODEL_MAX 255      /* model names */
#define REGISTRY_HASH_MAX 127       /* content hashes ("sha256:<64 hex>") */
#define REGISTRY_ENGINE_MAX 31      /* engine type ("ollama", "vllm", ...) */
#define REGISTRY_MODELS_MAX 256     /* models per node */
#define REGISTRY_CLASS_MAX 15       /* hardware class ("gpu", "cpu") */
#define REGISTRY_EXTRA_MAX 65536    /* raw heartbeat JSON kept per node */
#define REGISTRY_KV_KEY_MAX 256
#define REGISTRY_KV_VALUE_MAX 65536
#define REGISTRY_NONCE_PART_MAX 256 /* keyid and nonce, each */
#define REGISTRY_RATE_KEY_MAX 256
#define REGISTRY_OWNER_MAX 256      /* quota owners and addresses */
#define REGISTRY_URL_MAX 4096
#define REGISTRY_CONTEXT_MAX ((int64_t)1 << 32)  /* model context length, tokens */
#define REGISTRY_BITS_MAX 0xffu     /* caps, caps_known, endpoints */

/* Seconds a nonce is remembered.  A signature is accepted while its
 * `created` is within HTTPSIG_MAX_SKEW (60 s) of the server's clock, both
 * ends included: first seen at created - 60, it is still valid at
 * created + 60, 120 s later.  An entry recorded at t is live while
 * now < t + window, so the window must be 2 * 60 + 1 for that last second
 * to find it. */
#define REGISTRY_NONCE_WINDOW 121
#define REGISTRY_DEFAULT_TTL 30     /* DESIGN.md 6: node liveness after a heartbeat */

typedef struct registry registry;

typedef enum {
	NODE_IDLE = 0,  /* takes jobs */
	NODE_BUSY,      /* full, or the owner is using the GPU */
	NODE_OFFLINE,   /* shutting down: putting it removes the node */
} node_status;

typedef struct {
	char name[REGISTRY_MODEL_MAX + 1];
	char content_hash[REGISTRY_HASH_MAX + 1];  /* "" when the engine has none */
	int64_t size_bytes;                        /* >= 0; 0 when unknown */
	char engine[REGISTRY_ENGINE_MAX + 1];
	/* What the engine says about it (proto_model): unknown stays unknown */
	int64_t context_length;                    /* tokens, 0 .. REGISTRY_CONTEXT_MAX; 0 unknown */
	uint32_t caps;                             /* PROTO_CAP_* bits it has */
	uint32_t caps_known;                       /* PROTO_CAP_* bits the engine said
	                                              yes or no to */
	uint32_t endpoints;                        /* PROTO_EP_* served natively; 0 unknown */
} registry_model;

/* The durable facts of a node that node choice needs, copied from its
 * ledger row.  A record put without them (all zero) is an unverified node
 * with multiplier 0: only the coordinator's heartbeat handler puts nodes,
 * and it always fills them. */
typedef struct {
	double multiplier;      /* 0 .. 1000; 1.0 until verified */
	bool verified;
	int64_t verified_at;    /* 0 if never */
	double reputation;      /* 0 .. 1 */
	char hw_class[REGISTRY_CLASS_MAX + 1]; /* class its proof verified, "" none */
	bool established;       /* its trial-paid earnings are spendable (as of
	                           the copy) */
	int64_t pending;        /* pending earnings (as of the copy) */
	int64_t disputes;       /* jobs it claimed more than its client saw */
	int64_t jobs;           /* jobs it settled (as of the copy) */
	bool suspended;         /* an operator suspended it: never chosen */
	bool suspect;           /* failed an audit, not passed one since: chosen
	                           by the auditor only (docs/AUDITS.md) */
	int64_t audits_passed;  /* audits (as of the copy) */
	int64_t audits_failed;
	/* reputation (reputation.h): `reputation` is the product of these */
	double rep_availability;  /* 0 .. 1 */
	double rep_reliability;   /* 0 .. 1 */
	double rep_speed;         /* 0 .. 1 */
	double rep_audits;        /* 0 .. 1 */
	double ttft_ms;           /* smoothed time to first byte, 0 unknown */
	double tokens_per_s;      /* smoothed output rate, 0 unknown */
	int64_t failovers;        /* client reports of a failure before the answer */
	int served_jobs;          /* most jobs at once it served well, 0 none yet */
} registry_facts;

/* A live node as its last heartbeat described it.  `models` and
 * `extra_json` are heap memory owned by the struct: registry functions
 * that fill a registry_node allocate them, and registry_node_clear frees
 * them.  A caller building one for registry_put_node may point them at
 * its own memory (they are only read). */
typedef struct {
	char node_id[REGISTRY_ID_MAX + 1];
	char name[REGISTRY_NAME_MAX + 1];
	char ip[REGISTRY_IP_MAX + 1];
	int port;                       /* 1 .. 65535 */
	node_status status;
	registry_model *models;         /* n_models entries */
	size_t n_models;                /* 0 .. REGISTRY_MODELS_MAX */
	int active_jobs;                /* from the heartbeat, plus jobs handed out since */
	int max_jobs;                   /* >= 0 */
	char encryption_public_key[REGISTRY_KEY_MAX + 1];
	char seal_key[REGISTRY_SEAL_KEY_MAX + 1];   /* "" when the node does not seal */
	char owner[REGISTRY_ID_MAX + 1];
	char version[REGISTRY_VERSION_MAX + 1];
	registry_facts facts;           /* durable facts, from the ledger */
	int64_t last_seen;              /* set by registry_put_node */
	int64_t expires_at;             /* set by registry_put_node: now + ttl */
	char *extra_json;               /* raw heartbeat JSON (hardware, engines, ...)
	                                   or NULL; at most REGISTRY_EXTRA_MAX bytes */
} registry_node;

/* What registry_get_node / registry_find_nodes copy besides the fixed
 * fields (copying models costs ~420 bytes each). */
#define REGISTRY_WITH_MODELS 0x1u
#define REGISTRY_WITH_EXTRA 0x2u
#define REGISTRY_WITH_ALL (REGISTRY_WITH_MODELS | REGISTRY_WITH_EXTRA)

/* One served model aggregated over live nodes. */
typedef struct {
	char name[REGISTRY_MODEL_MAX + 1];
	char content_hash[REGISTRY_HASH_MAX + 1];  /* the hash most nodes report */
	int64_t size_bytes;                        /* of that hash */
	size_t node_count;                         /* live nodes serving the name */
	int64_t context_length;                    /* the largest any live node
	                                              reports; 0 when none does */
	uint32_t caps;                             /* capabilities some live node has */
	uint32_t endpoints;                        /* endpoints some live node serves
	                                              natively */
} registry_model_info;

/* Quotas keep one party from filling a store shared by all: live nonces
 * per signer and per source address, live key/value entries per owner
 * (the node a proof-of-hardware record is for) and per address.  Each
 * defaults to a fraction of the store's cap (0 below): a party over its
 * quota is refused with TROOP_ERATE while others still get in. */
typedef struct {
	size_t max_nodes;           /* live nodes kept; 0: registry_default_max_nodes() */
	size_t max_nonces;          /* nonces remembered; 0: registry_default_max_nonces() */
	size_t max_rate;            /* rate-limit keys; 0: 1,000,000 */
	size_t max_kv;              /* key/value entries; 0: registry_default_max_kv() */
	size_t nonce_quota_signer;  /* 0: max_nonces / 20 */
	size_t nonce_quota_addr;    /* 0: max_nonces / 4 */
	size_t kv_quota_owner;      /* 0: max_kv / 100 */
	size_t kv_quota_addr;       /* 0: max_kv / 4 */
} registry_opts;

/* Bytes a live node costs the in-process registry, rounded up from
 * bench/bench_registry.sh (~470 at 1M nodes with heartbeat-like records:
 * two keys, a seal key statement, one or two models, hardware JSON). */
#define REGISTRY_NODE_BYTES 512
#define REGISTRY_MIN_DEFAULT_NODES 1100000  /* 1M live nodes always fit the default */

/* The default node cap: a quarter of this machine's physical memory over
 * REGISTRY_NODE_BYTES, at least REGISTRY_MIN_DEFAULT_NODES.  Thread-safe. */
size_t registry_default_max_nodes(void);

/* Bytes a remembered nonce costs the in-process registry, rounded up from
 * 177 measured at 1M nonces (an expset entry and its key "<keyid>\x1f<nonce>").
 * Every signed request's nonce is kept REGISTRY_NONCE_WINDOW seconds, so
 * the cap over REGISTRY_NONCE_WINDOW is the signed requests per second the
 * troop can take: 1,000,000 (the old fixed default) is 8,264/s, below
 * 100,000 workers heartbeating every 10 s. */
#define REGISTRY_NONCE_BYTES 256
#define REGISTRY_MIN_DEFAULT_NONCES 1000000

/* The default nonce cap of registry URL `url` (NULL or "memory:": the
 * in-process registry): in process, a quarter of this machine's physical
 * memory over REGISTRY_NONCE_BYTES, at least REGISTRY_MIN_DEFAULT_NONCES;
 * with Redis, whose memory this machine cannot see (about 555 bytes a
 * nonce there), REGISTRY_MIN_DEFAULT_NONCES.  Thread-safe. */
size_t registry_default_max_nonces(const char *url);

/* Key/value entries kept per live node by default: a node's reputation
 * (REP_STATS_TTL_S), and room for the short-lived ones (proof-of-hardware
 * challenges, queue entries, reports seen). */
#define REGISTRY_KV_PER_NODE 2
#define REGISTRY_MIN_DEFAULT_KV 100000

/* The default key/value cap for a registry of `max_nodes` live nodes:
 * REGISTRY_KV_PER_NODE a node, at least REGISTRY_MIN_DEFAULT_KV.  (A fixed
 * 100,000 left every node past the first 100,000 or so without
 * reputation, and its coordinator logging so at each heartbeat.) */
size_t registry_default_max_kv(size_t max_nodes);

/* ---- lifetime ------------------------------------------------------------- */

/* Open the registry named by `url`: NULL, "" or "memory:" for the
 * in-process backend; "redis://..." when that backend is built.  `opts`
 * may be NULL for the defaults.  Returns 0 and *out (free with
 * registry_close), or TROOP_EINVAL (unknown or unsupported URL),
 * TROOP_EUNAVAIL (cannot connect). */
int registry_open(registry **out, const char *url, const registry_opts *opts);

/* Close and free.  NULL is fine.  No other thread may be using it. */
void registry_close(registry *r);

/* The backend's name ("memory", ...).  Never NULL. */
const char *registry_backend_name(const registry *r);

/* ---- nodes ---------------------------------------------------------------- */

/* Insert or replace the record of rec->node_id, live for `ttl` seconds
 * (>= 1) from `now`; last_seen and expires_at in `rec` are ignored and set
 * from now and ttl.  The model index follows the new model list (a model
 * the node no longer lists stops finding it).  Model names repeated in
 * the list are indexed once; hashes likewise.  A record with status
 * NODE_OFFLINE removes the node instead.  `rec` is copied; the caller
 * keeps ownership.  Also drops a few expired nodes (lazy sweep).
 * Errors: TROOP_EINVAL (empty node_id or ip, port out of range, unknown
 * status, negative counts), TROOP_ETOOLARGE (a string, the model list or
 * extra_json over its limit), TROOP_EUNAVAIL (max_nodes live nodes). */
int registry_put_node(registry *r, const registry_node *rec, int64_t ttl, int64_t now);

/* Remove node `node_id` now.  TROOP_ENOTFOUND if it was not there. */
int registry_remove_node(registry *r, const char *node_id);

/* Copy the live record of `node_id` into *out (fields in `with` are
 * allocated; free with registry_node_clear; models/extra_json are NULL
 * when not asked for).  TROOP_ENOTFOUND if absent or expired. */
int registry_get_node(registry_node *out, registry *r, const char *node_id, int64_t now,
    unsigned with);

/* Live nodes serving `model`, matched against model names first and, if
 * no node lists that name, against content hashes; model NULL or "" for
 * all live nodes.  Uses the index: cost grows with the nodes listed under
 * that model, not with all nodes.  At most `max` (>= 1) records, in no
 * particular order (a random window when more are live).  *out is a
 * malloc'd array of *n records (NULL when *n is 0); free with
 * registry_nodes_free.  Finding nothing is not an error (*n = 0). */
int registry_find_nodes(registry_node **out, size_t *n, registry *r, const char *model,
    int64_t now, size_t max, unsigned with);

/* A page of the live nodes in node-id order, for listing every node:
 * those whose id sorts after `after` (NULL or "" for the first page), at
 * most `max` (>= 1), `model` matched as registry_find_nodes (NULL or ""
 * for all).  Pass the last id of a page as `after` to get the next one: a
 * node live during the whole walk is returned exactly once, whatever
 * heartbeats, joins and expiries happen between pages.  The order is
 * byte order (strcmp) in the memory backend and the server's string order
 * in Redis; only "after" needs to be consistent, and it is within one
 * backend.  Cost: a pass over the live nodes (serving `model`), not a
 * walk of all nodes per node returned.  *out and errors as
 * registry_find_nodes. */
int registry_list_nodes(registry_node **out, size_t *n, registry *r, const char *model,
    const char *after, int64_t now, size_t max, unsigned with);

/* The models served by live nodes, one entry per name, sorted by name.
 * *out is a malloc'd array of *n (NULL when 0), freed with free(). */
int registry_models(registry_model_info **out, size_t *n, registry *r, int64_t now);

/* Add `delta` to the node's active_jobs (clamped at 0): jobs handed out
 * since its last heartbeat, so that authorize spreads load.  The next
 * heartbeat replaces the count.  TROOP_ENOTFOUND if the node is absent. */
int registry_add_active_job(registry *r, const char *node_id, int delta);

/* Replace the durable facts of live node `node_id` (after a proof of
 * hardware changed them in the ledger); the rest of the record is kept.
 * TROOP_ENOTFOUND if the node is absent or expired (its next heartbeat
 * reads the ledger anyway), TROOP_EINVAL for facts out of range. */
int registry_set_node_facts(registry *r, const char *node_id, const registry_facts *f,
    int64_t now);

/* Number of live nodes, in *out. */
int registry_count_nodes(size_t *out, registry *r, int64_t now);

/* Drop every expired entry (nodes, nonces, rate windows, kv).  *removed
 * (may be NULL) gets how many.  Call it every few seconds. */
int registry_sweep(size_t *removed, registry *r, int64_t now);

/* Free what a registry function allocated in `n` (models, extra_json)
 * and zero it.  NULL is fine. */
void registry_node_clear(registry_node *n);

/* Free an array from registry_find_nodes.  NULL is fine. */
void registry_nodes_free(registry_node *nodes, size_t n);

/* "IDLE", "BUSY", "OFFLINE" (never NULL; "UNKNOWN" for bad values). */
const char *registry_status_name(node_status s);

/* Parse the heartbeat's status (exact, upper case).  0 or TROOP_EINVAL. */
int registry_status_parse(node_status *out, const char *s);

/* ---- nonces and rate limits -------------------------------------------------- */

/* Check and record a signature nonce: 0 if (keyid, nonce) was not seen in
 * the last REGISTRY_NONCE_WINDOW seconds (now recorded), TROOP_EAUTH if it
 * was ("nonce already used"), TROOP_ERATE if max_nonces live nonces are
 * remembered already (fail closed rather than forget live ones).
 * `reg` is a registry *: the signature matches httpsig_nonce_fn, so pass
 * (registry_nonce_check, reg) to httpsig_verify. */
int registry_nonce_check(void *reg, const char *keyid, const char *nonce, int64_t now);

/* As registry_nonce_check, counting the nonce against the signer's quota
 * (nonce_quota_signer) and, when `addr` is neither NULL nor "", against
 * that source address's (nonce_quota_addr): TROOP_ERATE ("too many live
 * nonces for one owner") when either is used up. */
int registry_nonce_check_from(registry *r, const char *keyid, const char *nonce,
    const char *addr, int64_t now);

/* Count one event against `key` in a fixed window of `window_s` (>= 1)
 * seconds: 0 while at most `max` (>= 1) events fell in the current
 * window, TROOP_ERATE beyond ("rate limit: N per W s").  Refused events
 * count too.  TROOP_ERATE also when max_rate keys are live. */
int registry_rate_check(registry *r, const char *key, int64_t window_s, int64_t max,
    int64_t now);

/* ---- key/value with TTL ------------------------------------------------------ */

#define REGISTRY_KV_NX 0x1u  /* put only if the key is absent (or expired) */

/* Store `len` bytes (0 .. REGISTRY_KV_VALUE_MAX) under `key`, live for
 * `ttl_s` (>= 1) seconds.  With REGISTRY_KV_NX an existing live key is
 * left alone and TROOP_ECONFLICT returned (a replay cache: "seen").
 * TROOP_EUNAVAIL when max_kv live entries exist. */
int registry_kv_put(registry *r, const char *key, const void *value, size_t len,
    int64_t ttl_s, unsigned flags, int64_t now);

/* As registry_kv_put, counting the entry against `owner`'s quota
 * (kv_quota_owner) and `addr`'s (kv_quota_addr); either may be NULL or ""
 * for none.  TROOP_ERATE ("too many live key/value entries for one
 * owner") when a quota is used up.  Replacing a key moves its share to
 * the new owners. */
int registry_kv_put_owned(registry *r, const char *key, const void *value, size_t len,
    int64_t ttl_s, unsigned flags, const char *owner, const char *addr, int64_t now);

/* Copy the live value of `key` into buf (cap bytes); *len gets its length
 * (also when it does not fit).  TROOP_ENOTFOUND if absent or expired,
 * TROOP_ETOOLARGE if len > cap (nothing copied).  buf may be NULL when cap
 * is 0 (to ask the length). */
int registry_kv_get(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now);

/* As registry_kv_get, and delete the key in the same atomic step: of two
 * concurrent takers only one gets the value (one-shot challenges).  When
 * the value does not fit (TROOP_ETOOLARGE) the key is kept. */
int registry_kv_take(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now);

/* ---- ordered sets with expiring members --------------------------------------- */
/*
 * Small shared sets for the wait queue and the ticket holds (queue.h):
 * each member has an integer score (order: score, then member bytes) and
 * an expiry (live while now < expires).  Expired members are dropped on
 * every call that reads the set.  Set names are at most
 * REGISTRY_SET_NAME_MAX bytes, members REGISTRY_SET_MEMBER_MAX.
 */
#define REGISTRY_SET_NAME_MAX 300
#define REGISTRY_SET_MEMBER_MAX 300

/* Add `member` (or update its score and expiry) to `set`.  A new member
 * is refused with TROOP_ERATE when `max` (>= 1) live members are there
 * already. */
int registry_set_add(registry *r, const char *set, const char *member, int64_t score,
    int64_t expires, size_t max, int64_t now);

/* The 0-based rank of live `member` in `set` into *rank and the number of
 * live members into *count (may be NULL).  TROOP_ENOTFOUND if absent. */
int registry_set_rank(int64_t *rank, size_t *count, registry *r, const char *set,
    const char *member, int64_t now);

/* Remove `member`: 0, or TROOP_ENOTFOUND if it was not there (of two
 * concurrent removers exactly one gets 0). */
int registry_set_remove(registry *r, const char *set, const char *member);

/* Live members of `set`, in *count. */
int registry_set_count(size_t *count, registry *r, const char *set, int64_t now);

/* Remove and return at most `max` (>= 1) members of `set` that expired
 * by `now` (each returned to exactly one caller): *out a malloc'd array
 * of *n malloc'd strings (NULL when none); free each and the array. */
int registry_set_take_expired(char ***out, size_t *n, registry *r, const char *set,
    int64_t now, size_t max);

/* ---- backend interface ---------------------------------------------------- */
/*
 * For backend files only.  A backend's handle struct starts with
 * `struct registry`; registry.c validates arguments as documented above
 * before calling, zeroes outputs, and never passes NULL for an output
 * pointer it documents as optional (it supplies a dummy).
 */
struct registry_ops;

struct registry {
	const struct registry_ops *ops;
};

struct registry_ops {
	const char *name;
	/* `target` is the URL (NULL for the memory backend); opts complete. */
	int (*open)(registry **out, const char *target, const registry_opts *opts);
	void (*close)(registry *r);
	int (*put_node)(registry *r, const registry_node *rec, int64_t ttl, int64_t now);
	int (*remove_node)(registry *r, const char *node_id);
	int (*get_node)(registry_node *out, registry *r, const char *node_id, int64_t now,
	    unsigned with);
	int (*find_nodes)(registry_node **out, size_t *n, registry *r, const char *model,
	    int64_t now, size_t max, unsigned with);
	/* model, after: NULL when not given */
	int (*list_nodes)(registry_node **out, size_t *n, registry *r, const char *model,
	    const char *after, int64_t now, size_t max, unsigned with);
	int (*models)(registry_model_info **out, size_t *n, registry *r, int64_t now);
	int (*add_active_job)(registry *r, const char *node_id, int delta);
	int (*set_facts)(registry *r, const char *node_id, const registry_facts *f, int64_t now);
	int (*count_nodes)(size_t *out, registry *r, int64_t now);
	int (*sweep)(size_t *removed, registry *r, int64_t now);
	/* addr: NULL when not given */
	int (*nonce_check)(registry *r, const char *keyid, const char *nonce, const char *addr,
	    int64_t now);
	int (*rate_check)(registry *r, const char *key, int64_t window_s, int64_t max,
	    int64_t now);
	/* owner, addr: NULL when not given */
	int (*kv_put)(registry *r, const char *key, const void *value, size_t len,
	    int64_t ttl_s, unsigned flags, const char *owner, const char *addr, int64_t now);
	/* take: delete after a successful copy */
	int (*kv_get)(void *buf, size_t cap, size_t *len, registry *r, const char *key,
	    int64_t now, bool take);
	int (*set_add)(registry *r, const char *set, const char *member, int64_t score,
	    int64_t expires, size_t max, int64_t now);
	/* count: never NULL */
	int (*set_rank)(int64_t *rank, size_t *count, registry *r, const char *set,
	    const char *member, int64_t now);
	int (*set_remove)(registry *r, const char *set, const char *member);
	int (*set_count)(size_t *count, registry *r, const char *set, int64_t now);
	int (*set_take_expired)(char ***out, size_t *n, registry *r, const char *set,
	    int64_t now, size_t max);
};

extern const struct registry_ops registry_memory_ops;

#ifdef TROOP_HAVE_HIREDIS
/* Parse a Redis registry URL as registry_open would, without connecting:
 * 0 and its description (host:port/db, no credentials) in desc, or
 * TROOP_EINVAL / TROOP_ETOOLARGE naming what is wrong.  For the fuzz
 * harness and for checking a configuration.  Thread-safe. */
int registry_redis_url_check(const char *url, char *desc, size_t desc_len);
#endif

#endif
