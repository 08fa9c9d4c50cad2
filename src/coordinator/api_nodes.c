/*
 * api_nodes.c - node registration and discovery:
 *   POST /heartbeat        signed by the node (node_id must be the signer)
 *   GET  /peers?model=M    live nodes, optionally serving M, a page at a
 *                          time in id order (cursor=, next_cursor)
 *   GET  /v1/models        the models live nodes serve, OpenAI list shape
 *   GET  /nodes/{node_id}  one node: live record and durable facts
 *
 * The live record goes to the registry (TTL); the durable facts (owner,
 * multiplier, verification) to the ledger, written only when they change.
 * The heartbeat copies the node's ledger row into the registry record
 * (registry_facts), so /peers and /v1/models read the registry alone;
 * /nodes/{id} reads the ledger only for a node that is not live.  The
 * heartbeat reads that row only when something durable may have changed
 * (hb_row_get): the node's first heartbeat here, a new owner or name, a
 * change this process made to the row, or every HB_LEDGER_REFRESH_S.
 * /peers writes its reply as text (node_write, no JSON tree) and serves
 * the same reply again for about a second (peers_cache).
 */
#include <pthread.h>
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "encoding.h"
#include "error.h"
#include "json.h"
#include "jsonw.h"
#include "log.h"
#include "proto.h"

/* ---- heartbeat ---------------------------------------------------------------- */

/* The decoder's limits must fit the registry's fields. */
_Static_assert(PROTO_ID_MAX <= REGISTRY_ID_MAX && PROTO_NAME_MAX <= REGISTRY_NAME_MAX &&
    PROTO_IP_MAX <= REGISTRY_IP_MAX && PROTO_KEY_MAX <= REGISTRY_KEY_MAX &&
    PROTO_VERSION_MAX <= REGISTRY_VERSION_MAX && PROTO_MODEL_MAX <= REGISTRY_MODEL_MAX &&
    PROTO_HASH_MAX <= REGISTRY_HASH_MAX && PROTO_ENGINE_MAX <= REGISTRY_ENGINE_MAX &&
    PROTO_MODELS_MAX <= REGISTRY_MODELS_MAX, "proto.h limits exceed registry.h fields");

/* Fill *n from a decoded heartbeat; models and extra_json are allocated
 * (registry_node_clear frees them).  extra_json holds only the decoded
 * hardware and engine fields, so /peers repeats nothing else. */
static int heartbeat_to_node(registry_node *n, const proto_heartbeat *hb)
{
	json_t *extra;

	snprintf(n->node_id, sizeof(n->node_id), "%s", hb->node_id);
	snprintf(n->name, sizeof(n->name), "%s", hb->name);
	snprintf(n->ip, sizeof(n->ip), "%s", hb->tailscale_ip);
	n->port = hb->port;
	if (registry_status_parse(&n->status, proto_status_name(hb->status)) != 0)
		return troop_error_set(TROOP_EINVAL,
		    "field 'status' must be one of IDLE, BUSY, OFFLINE");
	n->active_jobs = hb->active_jobs;
	n->max_jobs = hb->max_jobs;
	snprintf(n->encryption_public_key, sizeof(n->encryption_public_key), "%s",
	    hb->encryption_public_key);
	snprintf(n->seal_key, sizeof(n->seal_key), "%s", hb->seal_key);
	snprintf(n->owner, sizeof(n->owner), "%s", hb->owner[0] ? hb->owner : hb->node_id);
	snprintf(n->version, sizeof(n->version), "%s", hb->version);
	if (hb->n_models) {
		n->models = calloc(hb->n_models, sizeof(*n->models));
		if (!n->models)
			return troop_error_set(TROOP_ENOMEM, "out of memory");
		n->n_models = hb->n_models;
		for (size_t i = 0; i < hb->n_models; i++) {
			registry_model *m = &n->models[i];
			snprintf(m->name, sizeof(m->name), "%s", hb->models[i].name);
			snprintf(m->content_hash, sizeof(m->content_hash), "%s",
			    hb->models[i].content_hash);
			snprintf(m->engine, sizeof(m->engine), "%s", hb->models[i].engine);
			m->size_bytes = hb->models[i].size_bytes;
			m->context_length = hb->models[i].context_length;
			m->caps = hb->models[i].caps;
			m->caps_known = hb->models[i].caps_known;
			m->endpoints = hb->models[i].endpoints;
		}
	}
	if (hb->has_hardware || hb->n_engines) {
		extra = proto_heartbeat_extra_encode(hb);
		n->extra_json = extra ? json_dump_compact(extra, NULL) : NULL;
		json_decref(extra);
		if (!n->extra_json)
			return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	return 0;
}

/* What this process knows of each node from its last heartbeat here, in
 * a table indexed by a hash of the node id (HB_WAYS-way set-associative:
 * a node joining a full set takes the entry used longest ago, and a node
 * whose entry another took is one this process has not seen; striped
 * locks, thread-safe):
 *   - the ledger row that heartbeat read (the part of it the registry's
 *     copy of the facts and the reply need), with the owner and name it
 *     asked for: a heartbeat asking for the same owner and name within
 *     HB_LEDGER_REFRESH_S of that read uses the row again instead of
 *     reading the ledger.  Whatever changes a node's row in this process
 *     says so (api_nodes_facts_forget), so only a change made through
 *     another coordinator sharing the ledger (and `established` turning
 *     true with age) waits for the refresh;
 *   - a hash of what /peers shows of the record it put (its reputation's
 *     availability and its last_seen aside: those move with every
 *     heartbeat, and /peers may show them a second late): a heartbeat
 *     that puts what the last one did leaves the cached /peers replies
 *     standing; any other (a node new here included) ends them;
 *   - the record its body decoded to (hb_body), under a keyed hash of
 *     the body (SipHash-2-4, 128 bits, a random key per process): a
 *     heartbeat whose body is byte-identical to the last one's (a node
 *     heartbeating with nothing new: the usual case) takes that record
 *     instead of parsing and decoding the body again.  The body's checks
 *     (decoding against the signer, the address policy) gave the same
 *     answer then; the address policy is asked again all the same. */
#define HB_SLOTS (1u << 18)
#define HB_WAYS 4
#define HB_SETS (HB_SLOTS / HB_WAYS)
#define HB_LOCKS 64
#define HB_LEDGER_REFRESH_S 30

/* The part of a ledger_node the heartbeat uses. */
typedef struct {
	char owner[LEDGER_ID_MAX + 1];
	char hw_class[LEDGER_CLASS_MAX + 1];
	bool verified;
	double multiplier, reputation;
	int64_t verified_at, jobs_ok, jobs_failed, first_seen, last_seen, pending, payers,
	    audit_failed, disputes, refusals, suspended, audits_passed, audits_failed, suspect;
} hb_row;

/* A heartbeat body's decoded record, shared by reference (atomic count):
 * a request takes a reference under its slot's lock and uses the record
 * after dropping the lock. */
typedef struct {
	int refs;
	size_t len;                                   /* of the body */
	unsigned char hash[crypto_shorthash_siphashx24_BYTES];
	registry_node n;                              /* facts zero; owns models, extra_json */
} hb_body;

typedef struct {
	uint64_t id;          /* hash of the node id, 0: empty */
	uint64_t rec;         /* hash of the record last put, 0: none */
	uint64_t name;        /* hash of the name the row was read for */
	uint64_t epoch;       /* hb_table.epoch when the row was read */
	uint64_t gen;         /* moves on when the node's row changed */
	int64_t used;         /* when the node last used it (s) */
	int64_t ledger_at;    /* when it was read, 0: read it at the next heartbeat */
	hb_body *body;        /* the last body's record (one reference), NULL: none */
	hb_row row;
} hb_entry;

static struct {
	pthread_mutex_t mu[HB_LOCKS];
	uint64_t epoch;       /* moves on when every row must be read again */
	unsigned char body_key[crypto_shorthash_siphashx24_KEYBYTES];
	hb_entry e[HB_SLOTS];
} *hb_table;
static pthread_once_t hb_table_once = PTHREAD_ONCE_INIT;

static void hb_table_init(void)
{
	/* zero pages: memory is used as slots are */
	hb_table = calloc(1, sizeof(*hb_table));
	for (size_t i = 0; hb_table && i < HB_LOCKS; i++)
		pthread_mutex_init(&hb_table->mu[i], NULL);
	if (hb_table)
		randombytes_buf(hb_table->body_key, sizeof(hb_table->body_key));
}

/* Drop a reference to b (NULL is fine); the last one frees it. */
static void hb_body_put(hb_body *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		registry_node_clear(&b->n);
		free(b);
	}
}

/* Make entry e (its lock held) the empty entry of node hash id, unless it
 * is already that node's. */
static void hb_entry_claim(hb_entry *e, uint64_t id)
{
	if (e->id == id)
		return;
	hb_body_put(e->body);
	memset(e, 0, sizeof(*e));
	e->id = id;
	e->used = (int64_t)time(NULL);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return fnv(h, s, strlen(s) + 1);
}

/* The hash of what /peers shows of node n, availability and last_seen
 * aside. */
static uint64_t node_record_hash(const registry_node *n)
{
	const registry_facts *f = &n->facts;
	uint64_t h = 0xcbf29ce484222325ull;
	int64_t ints[] = { n->port, n->status, n->active_jobs, n->max_jobs, f->verified,
		f->verified_at, f->established, f->pending, f->disputes, f->jobs, f->suspended,
		f->suspect, f->audits_passed, f->audits_failed, f->failovers, f->served_jobs };
	double reals[] = { f->multiplier, f->rep_reliability, f->rep_speed, f->rep_audits,
		f->ttft_ms, f->tokens_per_s };

	h = fnv_str(h, n->name);
	h = fnv_str(h, n->ip);
	h = fnv_str(h, n->encryption_public_key);
	h = fnv_str(h, n->seal_key);
	h = fnv_str(h, n->owner);
	h = fnv_str(h, n->version);
	h = fnv_str(h, f->hw_class);
	h = fnv_str(h, n->extra_json ? n->extra_json : "");
	h = fnv(h, ints, sizeof(ints));
	h = fnv(h, reals, sizeof(reals));
	for (size_t i = 0; i < n->n_models; i++) {
		const registry_model *m = &n->models[i];
		int64_t mi[] = { m->size_bytes, m->context_length, m->caps, m->caps_known,
			m->endpoints };
		h = fnv_str(h, m->name);
		h = fnv_str(h, m->content_hash);
		h = fnv_str(h, m->engine);
		h = fnv(h, mi, sizeof(mi));
	}
	return fnv(h, &n->n_models, sizeof(n->n_models));
}

static uint64_t id_hash(const char *node_id)
{
	uint64_t h = fnv_str(0xcbf29ce484222325ull, node_id);

	return h ? h : 1;
}

/* The entry for `id` with its set's lock held: the node's own, else the
 * one it would take (an empty one, else the one used longest ago: its
 * e->id is another's or 0, and the caller claims it with hb_entry_claim
 * or leaves it); NULL: no table (out of memory).  Unlock with hb_unlock. */
static hb_entry *hb_lock(uint64_t id)
{
	size_t set = (size_t)(id % HB_SETS);
	hb_entry *e, *victim = NULL;

	pthread_once(&hb_table_once, hb_table_init);
	if (!hb_table)
		return NULL;
	pthread_mutex_lock(&hb_table->mu[set % HB_LOCKS]);
	e = &hb_table->e[set * HB_WAYS];
	for (size_t i = 0; i < HB_WAYS; i++) {
		if (e[i].id == id) {
			e[i].used = (int64_t)time(NULL);
			return &e[i];
		}
		if (!victim || (victim->id != 0 && (e[i].id == 0 || e[i].used < victim->used)))
			victim = &e[i];
	}
	return victim;
}

static void hb_unlock(uint64_t id)
{
	pthread_mutex_unlock(&hb_table->mu[(size_t)(id % HB_SETS) % HB_LOCKS]);
}

void api_nodes_facts_forget(const char *node_id)
{
	uint64_t id;
	hb_entry *e;

	if (!node_id) {
		pthread_once(&hb_table_once, hb_table_init);
		if (hb_table)
			__atomic_add_fetch(&hb_table->epoch, 1, __ATOMIC_SEQ_CST);
		return;
	}
	id = id_hash(node_id);
	if ((e = hb_lock(id)) != NULL) {
		/* claimed even when absent: a heartbeat reading the ledger now
		 * must not keep what it read */
		hb_entry_claim(e, id);
		e->gen++;
		e->ledger_at = 0;
		hb_unlock(id);
	}
}

/* The ledger row of node `node_id` as its last heartbeat here read it,
 * into *ln, when the heartbeat asks for the same owner and name and the
 * row is still good (see above); false when the ledger must be read, with
 * *seen set for hb_row_put. */
static bool hb_row_get(ledger_node *ln, uint64_t *seen, const char *node_id,
    const char *owner, const char *name, int64_t now)
{
	uint64_t id = id_hash(node_id), nh = fnv_str(0xcbf29ce484222325ull, name);
	hb_entry *e = hb_lock(id);
	hb_row r;
	bool hit;

	*seen = UINT64_MAX;
	if (!e)
		return false;
	*seen = e->id == id ? e->gen + 1 : 0;
	hit = e->id == id && e->ledger_at > 0 && now >= e->ledger_at &&
	    now - e->ledger_at < HB_LEDGER_REFRESH_S && e->name == nh &&
	    e->epoch == __atomic_load_n(&hb_table->epoch, __ATOMIC_SEQ_CST) &&
	    strcmp(e->row.owner, owner) == 0;
	if (hit)
		r = e->row;
	hb_unlock(id);
	if (!hit)
		return false;
	memset(ln, 0, sizeof(*ln));
	snprintf(ln->node_id, sizeof(ln->node_id), "%s", node_id);
	snprintf(ln->owner, sizeof(ln->owner), "%s", r.owner);
	snprintf(ln->name, sizeof(ln->name), "%s", name);
	snprintf(ln->hw_class, sizeof(ln->hw_class), "%s", r.hw_class);
	ln->verified = r.verified;
	ln->multiplier = r.multiplier;
	ln->reputation = r.reputation;
	ln->verified_at = r.verified_at;
	ln->jobs_ok = r.jobs_ok;
	ln->jobs_failed = r.jobs_failed;
	ln->first_seen = r.first_seen;
	ln->last_seen = r.last_seen;
	ln->pending = r.pending;
	ln->payers = r.payers;
	ln->audit_failed = r.audit_failed;
	ln->disputes = r.disputes;
	ln->refusals = r.refusals;
	ln->suspended = r.suspended;
	ln->audits_passed = r.audits_passed;
	ln->audits_failed = r.audits_failed;
	ln->suspect = r.suspect;
	return true;
}

/* Keep the row a heartbeat just read (asked with `owner`, `name`), read
 * under `epoch` (the table's epoch before the read) with the entry as
 * hb_row_get saw it (`seen`): unless the node's row changed since. */
static void hb_row_put(const ledger_node *ln, uint64_t seen, const char *owner,
    const char *name, uint64_t epoch, int64_t now)
{
	uint64_t id = id_hash(ln->node_id);
	hb_entry *e = hb_lock(id);
	hb_row *r;

	if (!e)
		return;
	if ((e->id == id ? e->gen + 1 : 0) != seen) {
		hb_unlock(id);
		return;
	}
	hb_entry_claim(e, id);
	/* the owner the heartbeat asked for: what the ledger holds after it */
	r = &e->row;
	snprintf(r->owner, sizeof(r->owner), "%s", strcmp(ln->owner, owner) == 0 ? owner : "");
	snprintf(r->hw_class, sizeof(r->hw_class), "%s", ln->hw_class);
	r->verified = ln->verified;
	r->multiplier = ln->multiplier;
	r->reputation = ln->reputation;
	r->verified_at = ln->verified_at;
	r->jobs_ok = ln->jobs_ok;
	r->jobs_failed = ln->jobs_failed;
	r->first_seen = ln->first_seen;
	r->last_seen = ln->last_seen;
	r->pending = ln->pending;
	r->payers = ln->payers;
	r->audit_failed = ln->audit_failed;
	r->disputes = ln->disputes;
	r->refusals = ln->refusals;
	r->suspended = ln->suspended;
	r->audits_passed = ln->audits_passed;
	r->audits_failed = ln->audits_failed;
	r->suspect = ln->suspect;
	e->name = fnv_str(0xcbf29ce484222325ull, name);
	e->epoch = epoch;
	e->ledger_at = r->owner[0] ? now : 0;
	hb_unlock(id);
}

static uint64_t hb_epoch(void)
{
	pthread_once(&hb_table_once, hb_table_init);
	return hb_table ? __atomic_load_n(&hb_table->epoch, __ATOMIC_SEQ_CST) : 0;
}

/* A heartbeat put node n: end the cached /peers replies unless it put
 * what the node's last heartbeat here did. */
static void hb_note_put(const registry_node *n)
{
	uint64_t id = id_hash(n->node_id), rec = node_record_hash(n);
	hb_entry *e = hb_lock(id);
	bool same = false;

	if (e) {
		same = e->id == id && e->rec == rec;
		hb_entry_claim(e, id);
		e->rec = rec;
		hb_unlock(id);
	}
	if (!same)
		api_nodes_peers_forget();
}

/* The keyed hash of a heartbeat body, into hash. */
static void hb_body_hash(unsigned char hash[crypto_shorthash_siphashx24_BYTES],
    const char *body, size_t len)
{
	pthread_once(&hb_table_once, hb_table_init);
	if (!hb_table) {
		memset(hash, 0, crypto_shorthash_siphashx24_BYTES);
		return;
	}
	crypto_shorthash_siphashx24(hash, (const unsigned char *)body, len, hb_table->body_key);
}

/* The record node `node_id`'s last heartbeat body decoded to, when that
 * body has `len` bytes and hash `hash` (a reference: drop it with
 * hb_body_put), or NULL: decode this one. */
static hb_body *hb_body_get(const char *node_id, const unsigned char *hash, size_t len)
{
	uint64_t id = id_hash(node_id);
	hb_entry *e = hb_lock(id);
	hb_body *b = NULL;

	if (!e)
		return NULL;
	if (e->id == id && e->body && e->body->len == len &&
	    memcmp(e->body->hash, hash, sizeof(e->body->hash)) == 0 &&
	    strcmp(e->body->n.node_id, node_id) == 0) {
		b = e->body;
		__atomic_add_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
	}
	hb_unlock(id);
	return b;
}

/* Keep a copy of n (as heartbeat_to_node filled it from a body of `len`
 * bytes and hash `hash`) as its node's last body.  Out of memory: nothing
 * kept, the next heartbeat decodes its body. */
static void hb_body_keep(const registry_node *n, const unsigned char *hash, size_t len)
{
	uint64_t id = id_hash(n->node_id);
	hb_body *b = calloc(1, sizeof(*b)), *old = NULL;
	hb_entry *e;

	if (!b)
		return;
	b->refs = 1;
	b->len = len;
	memcpy(b->hash, hash, sizeof(b->hash));
	b->n = *n;
	b->n.models = NULL;
	b->n.extra_json = NULL;
	if ((n->n_models && !(b->n.models = malloc(n->n_models * sizeof(*n->models)))) ||
	    (n->extra_json && !(b->n.extra_json = strdup(n->extra_json)))) {
		hb_body_put(b);
		return;
	}
	if (n->n_models)
		memcpy(b->n.models, n->models, n->n_models * sizeof(*n->models));
	if ((e = hb_lock(id)) == NULL) {
		hb_body_put(b);
		return;
	}
	hb_entry_claim(e, id);
	old = e->body;
	e->body = b;
	hb_unlock(id);
	hb_body_put(old);
}

/* The reply to a heartbeat that was kept: proto_heartbeat_reply_encode's
 * object, written as text (no tree for a reply of six fixed fields). */
static void heartbeat_reply(http_req *r, const proto_heartbeat_reply *rep)
{
	dynbuf b;
	jsonw w;

	dynbuf_init(&b, 512);
	jsonw_init(&w, &b);
	jsonw_obj_begin(&w);
	jsonw_key(&w, "status");
	jsonw_str(&w, "seen");
	jsonw_key(&w, "ttl");
	jsonw_int(&w, rep->ttl);
	jsonw_key(&w, "next_heartbeat");
	jsonw_int(&w, rep->next_heartbeat);
	jsonw_key(&w, "verified");
	jsonw_bool(&w, rep->verified);
	jsonw_key(&w, "multiplier");
	jsonw_real(&w, rep->multiplier);
	if (rep->ticket_kid[0]) {
		jsonw_key(&w, "ticket_kid");
		jsonw_str(&w, rep->ticket_kid);
	}
	jsonw_obj_end(&w);
	if (jsonw_error(&w) == 0)
		coord_reply_text(r, 200, "application/json", dynbuf_ptr(&b), dynbuf_len(&b));
	else
		coord_reply_json(r, 200, proto_heartbeat_reply_encode(rep));
	dynbuf_free(&b);
}

static void h_heartbeat(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	int64_t now = (int64_t)time(NULL);
	registry_node n;
	ledger_node ln;
	reputation_stats st;
	proto_heartbeat hb;
	proto_heartbeat_reply rep;
	uint64_t seen = 0;
	json_t *body = NULL;
	hb_body *same = NULL;
	unsigned char hash[crypto_shorthash_siphashx24_BYTES];
	size_t len;
	const char *raw;
	int rc;

	memset(&n, 0, sizeof(n));
	memset(&hb, 0, sizeof(hb));
	memset(&rep, 0, sizeof(rep));
	if (coord_authenticate(r, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	/* the body the node sent last time: its record, borrowed (models and
	 * extra_json stay the cache's), else the body decoded */
	hb_body_hash(hash, raw, len);
	if ((same = hb_body_get(signer, hash, len)) != NULL) {
		n = same->n;
	} else if ((rc = json_parse_object(&body, raw, len)) != 0 ||
	    (rc = proto_heartbeat_decode(&hb, body, signer)) != 0 ||
	    (rc = heartbeat_to_node(&n, &hb)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if ((rc = addr_policy_check(&c->addrs, n.ip)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (!same && n.status != NODE_OFFLINE)
		hb_body_keep(&n, hash, len);
	if (n.status == NODE_OFFLINE) {
		registry_remove_node(c->reg, n.node_id);
		api_nodes_peers_forget();
		log_info("node_offline", "node=%.8s", n.node_id);
		rep.removed = true;
		coord_reply_json(r, 200, proto_heartbeat_reply_encode(&rep));
		goto out;
	}
	/* the ledger row: as this process last read it while nothing durable
	 * changed (hb_row_get), else read (and written when owner or name
	 * changed, or last_seen is due) */
	if (!hb_row_get(&ln, &seen, n.node_id, n.owner, n.name, now)) {
		uint64_t epoch = hb_epoch();

		if ((rc = ledger_node_touch(&ln, NULL, t->db, n.node_id, n.owner, n.name,
		    now)) != 0) {
			coord_reply_last_error(r, rc);
			goto out;
		}
		hb_row_put(&ln, seen, n.owner, n.name, epoch, now);
	}
	snprintf(n.owner, sizeof(n.owner), "%s", ln.owner);
	/* availability counts heartbeats kept; a registry error only costs that */
	if (reputation_note_heartbeat(&st, c->reg, n.node_id, c->node_ttl, now) != 0) {
		log_warn("reputation", "node=%.8s error=\"%s\"", n.node_id, troop_error_msg());
		coord_node_facts_with(&n.facts, c, &ln, NULL, now);
	} else {
		coord_node_facts_with(&n.facts, c, &ln, &st, now);
	}
	/* the node counts the jobs it runs; tickets not started yet are ours */
	n.active_jobs += (int)queue_node_holds(c->reg, n.node_id, now);
	if ((rc = registry_put_node(c->reg, &n, c->node_ttl, now)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (strcmp(registry_backend_name(c->reg), "memory") == 0)
		hb_note_put(&n);
	METRIC_ADD(&c->metrics, heartbeats, 1);
	rep.ttl = c->node_ttl;
	rep.next_heartbeat = c->node_ttl / 3 > 0 ? c->node_ttl / 3 : 1;
	rep.verified = ln.verified;
	rep.multiplier = ln.multiplier;
	{
		/* the newest key, so that the worker knows it before it signs */
		ticket_keys_pub pub[TICKET_KEYS_MAX];
		size_t np = ticket_keys_published(c->tkeys, pub, TICKET_KEYS_MAX, now);
		if (np > 0)
			snprintf(rep.ticket_kid, sizeof(rep.ticket_kid), "%s", pub[np - 1].pub.kid);
	}
	heartbeat_reply(r, &rep);
out:
	if (same) {
		n.models = NULL;
		n.extra_json = NULL;
		hb_body_put(same);
	}
	proto_heartbeat_clear(&hb);
	registry_node_clear(&n);
	json_decref(body);
}

/* ---- discovery --------------------------------------------------------------- */

/* The public view of a node (proto_node): its heartbeat fields plus the
 * durable facts, from the live record's copy (live) or from the ledger
 * row `ln` (not live; NULL when the ledger does not know the node), plus
 * the economy's facts (docs/CREDITS.md).  NULL when out of memory. */
/* A node's disputes per settled job (0 with none): from the registry's
 * copy `f` when not NULL, else from its ledger row (may be NULL). */
static double node_dispute_rate(const registry_facts *f, const ledger_node *ln)
{
	int64_t d = f ? f->disputes : ln ? ln->disputes : 0;
	int64_t jobs = f ? f->jobs : ln ? ln->jobs_ok + ln->jobs_failed : 0;

	return d > 0 ? (double)d / (double)(jobs > 0 ? jobs : 1) : 0.0;
}

/* A node's reputation components (reputation.h) and what the choice
 * counts of it: its job slots (live only) and whether it is still new. */
static json_t *reputation_json(const coord *c, const registry_node *n,
    const registry_facts *f, bool live)
{
	json_t *o = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:i, s:b}",
	    "availability", f->rep_availability, "reliability", f->rep_reliability,
	    "speed", f->rep_speed, "audits", f->rep_audits, "ttft_ms", f->ttft_ms,
	    "tokens_per_s", f->tokens_per_s, "failovers", (json_int_t)f->failovers,
	    "served_jobs", f->served_jobs, "new", reputation_is_new(f));

	if (o && live)
		json_object_set_new(o, "slots", json_integer(coord_node_slots(c, n)));
	return o;
}

static json_t *node_json(const coord *c, const registry_node *n, const ledger_node *ln,
    bool live)
{
	const registry_facts *f = &n->facts, *rf = live ? f : NULL;
	registry_facts gone;
	proto_node pn;
	proto_heartbeat *hb = &pn.hb;
	json_t *o = NULL;

	memset(&pn, 0, sizeof(pn));
	snprintf(hb->node_id, sizeof(hb->node_id), "%.43s", n->node_id);
	snprintf(hb->name, sizeof(hb->name), "%s", n->name);
	snprintf(hb->tailscale_ip, sizeof(hb->tailscale_ip), "%s", n->ip);
	hb->port = n->port;
	hb->status = n->status == NODE_BUSY ? PROTO_BUSY : n->status == NODE_OFFLINE ?
	    PROTO_OFFLINE : PROTO_IDLE;
	if (n->n_models) {
		hb->models = calloc(n->n_models, sizeof(*hb->models));
		if (!hb->models)
			return NULL;
		hb->n_models = n->n_models;
		for (size_t i = 0; i < n->n_models; i++) {
			proto_model *m = &hb->models[i];
			snprintf(m->name, sizeof(m->name), "%s", n->models[i].name);
			snprintf(m->content_hash, sizeof(m->content_hash), "%s",
			    n->models[i].content_hash);
			snprintf(m->engine, sizeof(m->engine), "%s", n->models[i].engine);
			m->size_bytes = n->models[i].size_bytes;
			m->context_length = n->models[i].context_length;
			m->caps = n->models[i].caps;
			m->caps_known = n->models[i].caps_known;
			m->endpoints = n->models[i].endpoints;
		}
	}
	if (n->extra_json) {
		json_t *extra = json_loads(n->extra_json, 0, NULL);
		/* written by proto_heartbeat_extra_encode: a failure is a record
		 * from an older version, shown without hardware */
		if (extra && proto_heartbeat_extra_decode(hb, extra) != 0) {
			hb->has_hardware = false;
			hb->n_engines = 0;
		}
		json_decref(extra);
	}
	snprintf(hb->encryption_public_key, sizeof(hb->encryption_public_key), "%s",
	    n->encryption_public_key);
	snprintf(hb->seal_key, sizeof(hb->seal_key), "%s", n->seal_key);
	hb->active_jobs = n->active_jobs < 0 ? 0 : n->active_jobs;
	hb->max_jobs = n->max_jobs < 0 ? 0 : n->max_jobs;
	snprintf(hb->owner, sizeof(hb->owner), "%.43s", live ? n->owner : ln ? ln->owner : "");
	snprintf(hb->version, sizeof(hb->version), "%s", n->version);
	pn.last_seen = live ? n->last_seen : (ln ? ln->last_seen : 0);
	pn.multiplier = live ? f->multiplier : ln ? ln->multiplier : 1.0;
	pn.verified = live ? f->verified : ln && ln->verified;
	pn.verified_at = live ? f->verified_at : ln ? ln->verified_at : 0;
	if (!live && ln) {
		/* not live: the reputation from the ledger and what is kept */
		coord_node_facts(&gone, c, ln, (int64_t)time(NULL));
		rf = &gone;
	}
	pn.reputation = rf ? rf->reputation : 0.5;
	pn.live = live;
	o = proto_node_encode(&pn);
	proto_node_clear(&pn);
	if (o) {
		/* the class its proof verified, whether its trial-paid earnings
		 * are spendable yet, what is pending, and the settled jobs where
		 * it claimed more than its client saw */
		json_object_set_new(o, "hardware_class", json_string(live ? f->hw_class :
		    ln ? ln->hw_class : ""));
		json_object_set_new(o, "established", json_boolean(live ? f->established :
		    ln && ledger_node_established(ln, &c->policy, (int64_t)time(NULL))));
		json_object_set_new(o, "pending_credits", json_integer(live ? f->pending :
		    ln ? ln->pending : 0));
		json_object_set_new(o, "disputes", json_integer(live ? f->disputes :
		    ln ? ln->disputes : 0));
		json_object_set_new(o, "dispute_rate", json_real(node_dispute_rate(live ? f : NULL,
		    ln)));
		/* spot checks of its output (docs/AUDITS.md) */
		json_object_set_new(o, "audits_passed", json_integer(live ? f->audits_passed :
		    ln ? ln->audits_passed : 0));
		json_object_set_new(o, "audits_failed", json_integer(live ? f->audits_failed :
		    ln ? ln->audits_failed : 0));
		json_object_set_new(o, "suspect", json_boolean(live ? f->suspect :
		    ln && ln->suspect));
		if (rf)
			json_object_set_new(o, "reputation_detail", reputation_json(c, n, rf, live));
	}
	return o;
}

/* What a node's record may add to a /peers reply, in bytes, without
 * encoding it: the fixed fields, the heartbeat extras and the model list
 * (an upper bound; JSON escaping aside). */
static size_t node_json_estimate(const registry_node *n)
{
	size_t z = 1024 + (n->extra_json ? strlen(n->extra_json) : 0);

	for (size_t i = 0; i < n->n_models; i++)
		/* 64 for the fixed keys, 200 for the capability fields at their
		 * longest (context_length, capabilities, endpoints) */
		z += 64 + 200 + strlen(n->models[i].name) + strlen(n->models[i].content_hash) +
		    strlen(n->models[i].engine);
	return z;
}

/* The cursor of /peers: base64url (no padding) of the last node id a page
 * listed, opaque to callers.  Decode it into after[REGISTRY_ID_MAX + 1]:
 * 0, or TROOP_EINVAL for anything else (too long, not base64url, empty,
 * or bytes no node id has). */
static int peers_cursor_decode(char *after, const char *cursor)
{
	size_t len = strlen(cursor), n = 0;

	if (len == 0 || len > b64url_len(REGISTRY_ID_MAX) ||
	    b64url_decode(after, REGISTRY_ID_MAX, &n, cursor, len) != 0 || n == 0)
		return TROOP_EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)after[i] <= 0x20 || (unsigned char)after[i] >= 0x7f)
			return TROOP_EINVAL;
	after[n] = '\0';
	return 0;
}

/* ---- /peers: the reply written as text, cached for about a second ------------- */

/* A node's record as node_json(c, n, NULL, true) has it (same keys and
 * values; the order differs only where node_json replaces a key), written
 * straight into `w`.  Its heartbeat extras (hardware, engines) are the
 * text proto_heartbeat_extra_encode made when the heartbeat came in,
 * spliced in as they are: the coordinator wrote them, so only their shape
 * is checked (an object whose first member is "hardware" or "engines");
 * a record of another shape is shown without them, as node_json does
 * with extras it cannot read. */
static void node_write(jsonw *w, const coord *c, const registry_node *n)
{
	const registry_facts *f = &n->facts;

	jsonw_obj_begin(w);
	jsonw_key(w, "node_id");
	jsonw_strn(w, n->node_id, strnlen(n->node_id, 43));
	jsonw_key(w, "name");
	jsonw_str(w, n->name);
	jsonw_key(w, "tailscale_ip");
	jsonw_str(w, n->ip);
	jsonw_key(w, "port");
	jsonw_int(w, n->port);
	jsonw_key(w, "status");
	jsonw_str(w, n->status == NODE_BUSY ? "BUSY" : n->status == NODE_OFFLINE ? "OFFLINE" :
	    "IDLE");
	jsonw_key(w, "models");
	jsonw_arr_begin(w);
	for (size_t i = 0; i < n->n_models; i++) {
		const registry_model *m = &n->models[i];

		jsonw_obj_begin(w);
		jsonw_key(w, "name");
		jsonw_str(w, m->name);
		jsonw_key(w, "content_hash");
		jsonw_str(w, m->content_hash);
		jsonw_key(w, "size_bytes");
		jsonw_int(w, m->size_bytes);
		jsonw_key(w, "engine");
		jsonw_str(w, m->engine);
		if (m->context_length > 0) {
			jsonw_key(w, "context_length");
			jsonw_int(w, m->context_length);
		}
		if (m->caps_known) {
			jsonw_key(w, "capabilities");
			jsonw_obj_begin(w);
			for (unsigned b = 0; b < 32; b++) {
				const char *name = proto_cap_name(1u << b);
				if (name && (m->caps_known & (1u << b))) {
					jsonw_key(w, name);
					jsonw_bool(w, (m->caps & (1u << b)) != 0);
				}
			}
			jsonw_obj_end(w);
		}
		if (m->endpoints) {
			jsonw_key(w, "endpoints");
			jsonw_arr_begin(w);
			for (unsigned b = 0; b < 32; b++) {
				const char *name = proto_endpoint_name(1u << b);
				if (name && (m->endpoints & (1u << b)))
					jsonw_str(w, name);
			}
			jsonw_arr_end(w);
		}
		jsonw_obj_end(w);
	}
	jsonw_arr_end(w);
	if (n->extra_json) {
		size_t len = strlen(n->extra_json);

		if (len > 2 && n->extra_json[0] == '{' && n->extra_json[len - 1] == '}' &&
		    (strncmp(n->extra_json, "{\"hardware\":{", 13) == 0 ||
		    strncmp(n->extra_json, "{\"engines\":[", 12) == 0))
			jsonw_raw_members(w, n->extra_json + 1, len - 2);
	}
	jsonw_key(w, "encryption_public_key");
	jsonw_str(w, n->encryption_public_key);
	if (n->seal_key[0]) {
		jsonw_key(w, "seal_key");
		jsonw_str(w, n->seal_key);
	}
	jsonw_key(w, "load");
	jsonw_obj_begin(w);
	jsonw_key(w, "active_jobs");
	jsonw_int(w, n->active_jobs < 0 ? 0 : n->active_jobs);
	jsonw_key(w, "max_jobs");
	jsonw_int(w, n->max_jobs < 0 ? 0 : n->max_jobs);
	jsonw_obj_end(w);
	jsonw_key(w, "owner");
	jsonw_strn(w, n->owner, strnlen(n->owner, 43));
	jsonw_key(w, "version");
	jsonw_str(w, n->version);
	jsonw_key(w, "last_seen");
	jsonw_int(w, n->last_seen);
	jsonw_key(w, "multiplier");
	jsonw_real(w, f->multiplier);
	jsonw_key(w, "verified");
	jsonw_bool(w, f->verified);
	jsonw_key(w, "verified_at");
	jsonw_int(w, f->verified_at);
	jsonw_key(w, "reputation");
	jsonw_real(w, f->reputation);
	jsonw_key(w, "live");
	jsonw_bool(w, true);
	jsonw_key(w, "hardware_class");
	jsonw_str(w, f->hw_class);
	jsonw_key(w, "established");
	jsonw_bool(w, f->established);
	jsonw_key(w, "pending_credits");
	jsonw_int(w, f->pending);
	jsonw_key(w, "disputes");
	jsonw_int(w, f->disputes);
	jsonw_key(w, "dispute_rate");
	jsonw_real(w, node_dispute_rate(f, NULL));
	jsonw_key(w, "audits_passed");
	jsonw_int(w, f->audits_passed);
	jsonw_key(w, "audits_failed");
	jsonw_int(w, f->audits_failed);
	jsonw_key(w, "suspect");
	jsonw_bool(w, f->suspect);
	jsonw_key(w, "reputation_detail");
	jsonw_obj_begin(w);
	jsonw_key(w, "availability");
	jsonw_real(w, f->rep_availability);
	jsonw_key(w, "reliability");
	jsonw_real(w, f->rep_reliability);
	jsonw_key(w, "speed");
	jsonw_real(w, f->rep_speed);
	jsonw_key(w, "audits");
	jsonw_real(w, f->rep_audits);
	jsonw_key(w, "ttft_ms");
	jsonw_real(w, f->ttft_ms);
	jsonw_key(w, "tokens_per_s");
	jsonw_real(w, f->tokens_per_s);
	jsonw_key(w, "failovers");
	jsonw_int(w, f->failovers);
	jsonw_key(w, "served_jobs");
	jsonw_int(w, f->served_jobs);
	jsonw_key(w, "new");
	jsonw_bool(w, reputation_is_new(f));
	jsonw_key(w, "slots");
	jsonw_int(w, coord_node_slots(c, n));
	jsonw_obj_end(w);
	jsonw_obj_end(w);
}

/* A built /peers reply, shared by the cache and the requests sending it:
 * freed by whoever drops the last reference (under peers_cache.mu). */
typedef struct {
	int refs;
	size_t len;
	char text[];
} peers_reply;

#define PEERS_CACHE_ENTRIES 32
#define PEERS_CACHE_BYTES (16u << 20)   /* all entries together */
#define PEERS_CACHE_ONE_MAX (2u << 20)  /* a bigger reply is not kept */
#define PEERS_CACHE_MS 1000             /* how long a reply is served again */
#define PEERS_CACHE_WAIT_MS 2000        /* the longest wait for another's build */

/* One cached reply: the request it answers (model "" for all, the page
 * size, the id after which it starts), when it was built and under which
 * generation; `building` while a thread builds it (others wait). */
typedef struct {
	bool used, building;
	char model[REGISTRY_MODEL_MAX + 1];
	char after[REGISTRY_ID_MAX + 1];
	size_t max;
	int64_t built_ms;
	uint64_t gen;
	peers_reply *reply;
} peers_entry;

/* The process's /peers cache (mutex and condition variable: thread-safe).
 * `gen` moves on whenever this process changes what /peers would list
 * beyond what may be a second stale (api_nodes_peers_forget): a reply of
 * an older generation is not served again. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t gen;
	size_t bytes;
	peers_entry e[PEERS_CACHE_ENTRIES];
} peers_cache = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, { { 0 } } };

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drop a reference; the caller holds peers_cache.mu. */
static void peers_reply_put(peers_reply *p)
{
	if (p && --p->refs == 0)
		free(p);
}

static void peers_entry_drop(peers_entry *e)
{
	if (e->reply) {
		peers_cache.bytes -= e->reply->len;
		peers_reply_put(e->reply);
	}
	memset(e, 0, sizeof(*e));
}

void api_nodes_peers_forget(void)
{
	pthread_mutex_lock(&peers_cache.mu);
	peers_cache.gen++;
	pthread_mutex_unlock(&peers_cache.mu);
}

static bool peers_entry_is(const peers_entry *e, const char *model, const char *after,
    size_t max)
{
	return e->used && e->max == max && strcmp(e->model, model) == 0 &&
	    strcmp(e->after, after) == 0;
}

/* Find the reply to (model, after, max): a fresh one (a reference in
 * *out, true), or, when none, claim its building (false; *out NULL;
 * *slot the entry claimed, -1 when all are being built: build without
 * caching).  Waits while another thread builds the same reply. */
static bool peers_cache_get(peers_reply **out, int *slot, const char *model,
    const char *after, size_t max)
{
	int64_t deadline = mono_ms() + PEERS_CACHE_WAIT_MS;
	bool hit = false;

	*out = NULL;
	*slot = -1;
	pthread_mutex_lock(&peers_cache.mu);
	for (;;) {
		int64_t now = mono_ms();
		peers_entry *e = NULL, *victim = NULL;

		for (int i = 0; i < PEERS_CACHE_ENTRIES; i++) {
			peers_entry *x = &peers_cache.e[i];
			if (peers_entry_is(x, model, after, max))
				e = x;
			else if (!x->building && (!victim || !x->used ||
			    (victim->used && x->built_ms < victim->built_ms)))
				victim = x;
		}
		if (e && e->building && now < deadline) {
			/* another thread is building this very reply */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&peers_cache.cv, &peers_cache.mu, &ts);
			continue;
		}
		if (e && !e->building && e->reply && e->gen == peers_cache.gen &&
		    now - e->built_ms < PEERS_CACHE_MS) {
			e->reply->refs++;
			*out = e->reply;
			hit = true;
			break;
		}
		if (e && e->building)
			break;  /* waited long enough: build it without the cache */
		if (e)
			victim = e;
		if (victim) {
			peers_entry_drop(victim);
			victim->used = victim->building = true;
			snprintf(victim->model, sizeof(victim->model), "%s", model);
			snprintf(victim->after, sizeof(victim->after), "%s", after);
			victim->max = max;
			victim->gen = peers_cache.gen;
			*slot = (int)(victim - peers_cache.e);
		}
		break;
	}
	pthread_mutex_unlock(&peers_cache.mu);
	return hit;
}

/* Finish the build claimed in `slot` with `p` (NULL: it failed, nothing
 * kept); wakes the waiting threads.  A reference to p stays the caller's. */
static void peers_cache_done(int slot, peers_reply *p)
{
	peers_entry *e;

	if (slot < 0)
		return;
	pthread_mutex_lock(&peers_cache.mu);
	e = &peers_cache.e[slot];
	e->building = false;
	if (p && p->len <= PEERS_CACHE_ONE_MAX) {
		/* room for it: the oldest others go */
		while (peers_cache.bytes + p->len > PEERS_CACHE_BYTES) {
			peers_entry *old = NULL;
			for (int i = 0; i < PEERS_CACHE_ENTRIES; i++) {
				peers_entry *x = &peers_cache.e[i];
				if (x != e && x->reply && (!old || x->built_ms < old->built_ms))
					old = x;
			}
			if (!old)
				break;
			peers_entry_drop(old);
		}
		p->refs++;
		e->reply = p;
		e->built_ms = mono_ms();
		peers_cache.bytes += p->len;
	} else {
		memset(e, 0, sizeof(*e));
	}
	pthread_cond_broadcast(&peers_cache.cv);
	pthread_mutex_unlock(&peers_cache.mu);
}

static void peers_reply_release(peers_reply *p)
{
	pthread_mutex_lock(&peers_cache.mu);
	peers_reply_put(p);
	pthread_mutex_unlock(&peers_cache.mu);
}

/* Each server thread writes its pages in a buffer of its own, kept
 * between requests (up to PEERS_SCRATCH_KEEP bytes), and copies the
 * text into the reply: a fresh buffer of a page's size (100-500 KB, past
 * malloc's mmap threshold) cost its page faults and unmapping on every
 * build. */
#define PEERS_SCRATCH_KEEP (2u << 20)

static pthread_key_t peers_scratch_key;
static pthread_once_t peers_scratch_once = PTHREAD_ONCE_INIT;

static void peers_scratch_free(void *p)
{
	dynbuf_free(p);
	free(p);
}

static void peers_scratch_init(void)
{
	(void)pthread_key_create(&peers_scratch_key, peers_scratch_free);
}

/* This thread's buffer (freed when the thread ends), or NULL. */
static dynbuf *peers_scratch(void)
{
	dynbuf *b;

	pthread_once(&peers_scratch_once, peers_scratch_init);
	if ((b = pthread_getspecific(peers_scratch_key)) == NULL &&
	    (b = malloc(sizeof(*b))) != NULL) {
		dynbuf_init(b, 64u << 20);
		if (pthread_setspecific(peers_scratch_key, b) != 0) {
			free(b);
			b = NULL;
		}
	}
	return b;
}

/* Build the reply to a /peers page: *out a new reply (one reference), or
 * a troop_err with the error message set. */
static int peers_build(peers_reply **out, const coord *c, const char *model,
    const char *after, size_t max, int64_t now)
{
	registry_node *nodes = NULL;
	size_t n = 0, bytes = 0, listed = 0;
	char next[REGISTRY_ID_MAX * 2];
	bool more;
	dynbuf *b = peers_scratch();
	jsonw w;
	int rc;

	*out = NULL;
	if (!b)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	/* one more than the page, to know whether another page follows */
	rc = registry_list_nodes(&nodes, &n, c->reg, model[0] ? model : NULL, after, now,
	    max + 1, REGISTRY_WITH_ALL);
	if (rc != 0)
		return rc;
	more = n > max;
	/* a bounded reply whatever the nodes put in their records: an
	 * anonymous request must not be an amplifier; the rest is on the
	 * next page */
	for (size_t i = 0; i < n && i < max; i++) {
		size_t z = node_json_estimate(&nodes[i]);
		if (bytes + z > COORD_PEERS_REPLY_MAX && i > 0) {
			more = true;
			break;
		}
		bytes += z;
		listed = i + 1;
	}
	/* room for the whole page at once: the writer then never moves it */
	dynbuf_reset(b);
	rc = dynbuf_reserve(b, 256 + bytes);
	jsonw_init(&w, b);
	jsonw_obj_begin(&w);
	jsonw_key(&w, "nodes");
	jsonw_arr_begin(&w);
	for (size_t i = 0; rc == 0 && i < listed; i++)
		node_write(&w, c, &nodes[i]);
	jsonw_arr_end(&w);
	next[0] = '\0';
	if (more && listed > 0)
		b64url_encode(next, sizeof(next), nodes[listed - 1].node_id,
		    strlen(nodes[listed - 1].node_id));
	registry_nodes_free(nodes, n);
	jsonw_key(&w, "count");
	jsonw_int(&w, (int64_t)listed);
	jsonw_key(&w, "truncated");
	jsonw_bool(&w, next[0] != '\0');
	jsonw_key(&w, "next_cursor");
	if (next[0])
		jsonw_str(&w, next);
	else
		jsonw_null(&w);
	jsonw_obj_end(&w);
	if (rc == 0)
		rc = jsonw_error(&w);
	if (rc == 0) {
		size_t len = dynbuf_len(b);
		peers_reply *p = malloc(offsetof(peers_reply, text) + len + 1);

		if (!p)
			rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		else {
			memcpy(p->text, dynbuf_ptr(b), len + 1);
			p->refs = 1;
			p->len = len;
			*out = p;
		}
	}
	if (b->cap > PEERS_SCRATCH_KEEP)
		dynbuf_free(b);
	else
		dynbuf_reset(b);
	return rc;
}

/* GET /peers[?model=M][&limit=N][&cursor=C]: a page of the live nodes in
 * id order, at most `limit` (100 by default, COORD_PEERS_MAX at most) and
 * about COORD_PEERS_REPLY_MAX bytes of records.  "next_cursor" (null on
 * the last page) asks for the page after; "truncated" says there is one.
 * With the in-process registry a reply is served again for about a second
 * (PEERS_CACHE_MS) to the same request, and a burst of the same request
 * builds it once; a change this process makes to the listing
 * (api_nodes_peers_forget) ends that at once. */
static void h_peers(http_req *r, void *arg)
{
	coord *c = arg;
	const char *model = http_req_query_param(r, "model");
	const char *lim = http_req_query_param(r, "limit");
	const char *cursor = http_req_query_param(r, "cursor");
	int64_t now = (int64_t)time(NULL);
	size_t max = 100;
	char after[REGISTRY_ID_MAX + 1];
	peers_reply *p = NULL;
	int rc, slot = -1;

	if (coord_anon_allowed(r) != 0)
		return;

	if (lim) {
		int64_t v;

		if (http_req_query_int(r, "limit", 100, 1, COORD_PEERS_MAX, &v) != 0) {
			coord_reply_error(r, TROOP_EINVAL,
			    "query parameter 'limit' must be an integer between 1 and %d",
			    COORD_PEERS_MAX);
			return;
		}
		max = (size_t)v;
	}
	if (model && strlen(model) > REGISTRY_MODEL_MAX) {
		coord_reply_error(r, TROOP_EINVAL, "query parameter 'model' is too long");
		return;
	}
	if (!model)
		model = "";
	after[0] = '\0';
	if (cursor && peers_cursor_decode(after, cursor) != 0) {
		coord_reply_error(r, TROOP_EINVAL, "query parameter 'cursor' is not valid "
		    "(use the next_cursor of a /peers reply)");
		return;
	}
	if (strcmp(registry_backend_name(c->reg), "memory") != 0 ||
	    !peers_cache_get(&p, &slot, model, after, max)) {
		rc = peers_build(&p, c, model, after, max, now);
		peers_cache_done(slot, p);
		if (rc != 0) {
			coord_reply_last_error(r, rc);
			return;
		}
	}
	coord_reply_text(r, 200, "application/json", p->text, p->len);
	peers_reply_release(p);
}

static struct {
	pthread_mutex_t mu;
	bool valid;
	int64_t at;                  /* the second it was read */
	int64_t asked;               /* the last request for it */
	registry_model_info *arr;
	size_t n;
} models_cache = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Read the list into the cache (the pass outside the cache's mutex). */
static int models_cache_fill(registry *reg, int64_t now)
{
	registry_model_info *arr = NULL;
	size_t k = 0;
	int rc = registry_models(&arr, &k, reg, now);

	if (rc != 0)
		return rc;
	pthread_mutex_lock(&models_cache.mu);
	free(models_cache.arr);
	models_cache.arr = arr;
	models_cache.n = k;
	models_cache.at = now;
	models_cache.valid = true;
	pthread_mutex_unlock(&models_cache.mu);
	return 0;
}

void api_nodes_models_refresh(registry *reg, int64_t now)
{
	size_t live = 0;
	bool wanted;

	/* only while someone asks for it: on Redis the pass is Redis's work */
	pthread_mutex_lock(&models_cache.mu);
	wanted = models_cache.asked > 0 && now - models_cache.asked <= API_MODELS_WANTED_S;
	pthread_mutex_unlock(&models_cache.mu);
	if (wanted && registry_count_nodes(&live, reg, now) == 0 &&
	    live >= API_MODELS_CACHE_NODES && models_cache_fill(reg, now) != 0)
		log_warn("models", "error=\"%s\"", troop_error_msg());
}

int api_nodes_models(registry_model_info **out, size_t *n, registry *reg, int64_t now)
{
	size_t live = 0;
	bool fresh;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (registry_count_nodes(&live, reg, now) != 0 || live < API_MODELS_CACHE_NODES)
		return registry_models(out, n, reg, now);
	pthread_mutex_lock(&models_cache.mu);
	fresh = models_cache.valid && now >= models_cache.at &&
	    now - models_cache.at <= API_MODELS_CACHE_S;
	models_cache.asked = now;
	pthread_mutex_unlock(&models_cache.mu);
	/* not kept fresh by the sweeper (yet): read here, once */
	if (!fresh && (rc = models_cache_fill(reg, now)) != 0)
		return rc;
	pthread_mutex_lock(&models_cache.mu);
	if (models_cache.n > 0) {
		*out = malloc(models_cache.n * sizeof(**out));
		if (*out) {
			memcpy(*out, models_cache.arr, models_cache.n * sizeof(**out));
			*n = models_cache.n;
		} else {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory");
		}
	}
	pthread_mutex_unlock(&models_cache.mu);
	return rc;
}

static void h_models(http_req *r, void *arg)
{
	coord *c = arg;
	registry_model_info *models = NULL;
	size_t n = 0;
	json_t *data;
	int rc;

	if (coord_anon_allowed(r) != 0)
		return;
	rc = api_nodes_models(&models, &n, c->reg, (int64_t)time(NULL));
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return;
	}
	data = json_array();
	for (size_t i = 0; i < n; i++) {
		const registry_model_info *mi = &models[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}",
		    "id", mi->name, "object", "model", "owned_by", "monkey-troop",
		    "content_hash", mi->content_hash, "size_bytes", (json_int_t)mi->size_bytes,
		    "nodes", (json_int_t)mi->node_count);

		/* what some live node reports; a field nobody reports is left out */
		if (o && mi->context_length > 0)
			json_object_set_new(o, "context_length", json_integer(mi->context_length));
		if (o && mi->caps)
			json_object_set_new(o, "capabilities", proto_caps_json(mi->caps));
		if (o && mi->endpoints)
			json_object_set_new(o, "endpoints", proto_endpoints_json(mi->endpoints));
		json_array_append_new(data, o);
	}
	free(models);
	coord_reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void reply_node(http_req *r, json_t *o)
{
	if (o)
		coord_reply_json(r, 200, o);
	else
		coord_reply_error(r, TROOP_ENOMEM, "out of memory");
}

static void h_node(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	const char *id = http_req_param(r, "node_id");
	registry_node n;
	ledger_node ln;
	bool live, known;
	int rc;

	if (coord_anon_allowed(r) != 0)
		return;
	memset(&n, 0, sizeof(n));
	if (!id || !id[0] || strlen(id) > REGISTRY_ID_MAX) {
		coord_reply_error(r, TROOP_EINVAL, "node id is not valid");
		return;
	}
	rc = registry_get_node(&n, c->reg, id, (int64_t)time(NULL), REGISTRY_WITH_ALL);
	if (rc != 0 && rc != TROOP_ENOTFOUND) {
		coord_reply_last_error(r, rc);
		return;
	}
	live = rc == 0;
	if (live) {
		reply_node(r, node_json(c, &n, NULL, true));
		registry_node_clear(&n);
		return;
	}
	rc = ledger_node_get(&ln, t->db, id);
	if (rc != 0 && rc != TROOP_ENOTFOUND) {
		coord_reply_last_error(r, rc);
		return;
	}
	known = rc == 0;
	if (!known) {
		coord_reply_error(r, TROOP_ENOTFOUND, "no node with id '%s'", id);
		return;
	}
	snprintf(n.node_id, sizeof(n.node_id), "%s", ln.node_id);
	snprintf(n.name, sizeof(n.name), "%s", ln.name);
	reply_node(r, node_json(c, &n, &ln, false));
}

void api_nodes_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/heartbeat", h_heartbeat, c);
	http_server_route(s, "GET", "/peers", h_peers, c);
	http_server_route(s, "GET", "/v1/models", h_models, c);
	http_server_route(s, "GET", "/nodes/{node_id}", h_node, c);
}
