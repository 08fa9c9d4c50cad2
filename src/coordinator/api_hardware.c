/*
 * api_hardware.c - proof-of-hardware (DESIGN.md section 9,
 * docs/PROTOCOL-POH.md), all three calls signed by the node:
 *   POST /hardware/challenge  {"class"?}            -> seed, n, rounds
 *   POST /hardware/verify     {"challenge_id","merkle_root"}
 *                             stops the clock       -> sampled row indexes
 *   POST /hardware/reveal     {"challenge_id","rows":[{"index","row","path"}]}
 *                             recomputes those rows -> multiplier, or rejection
 *
 * The clock is the coordinator's own (poh_state.h): nothing the worker
 * says about time is read.  Each challenge is one-shot at each step
 * (registry_kv_take) and expires; a used one is remembered by a tombstone
 * so that a replay gets "already used" rather than "unknown".
 *
 * The reveal's cheap checks (shape, Merkle paths) run on the request's
 * server thread; recomputing the k sampled rows (k/n of the worker's work:
 * a few ms for CPU-class challenges, seconds for the default GPU class)
 * runs on the check pool (poh_pool.h), and the reply is sent from the
 * request's thread when the check comes back.  A full pool answers 429
 * with Retry-After before the challenge is consumed.  Since node keys are
 * free, challenges are limited per node, per owner account and per source
 * address, and only given to nodes that have heartbeated for a while
 * (--poh-min-node-age), so that a swarm of fresh keys cannot queue
 * unbounded work.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "encoding.h"
#include "error.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "poh.h"
#include "poh_state.h"

#define KEY_MAX 96
#define TOMBSTONE_EXTRA_S 600
#define POH_BUSY_RETRY_S 5   /* Retry-After when the check queue is full */

static void key_of(char out[KEY_MAX], const char *prefix, const char *id)
{
	snprintf(out, KEY_MAX, "poh:%s:%s", prefix, id);
}

static int64_t record_ttl(const coord *c)
{
	/* kept a minute past the deadline so that a late call hears "expired" */
	return c->poh.challenge_ttl_s + 60;
}

/* The record counts against the node's and the caller's address's quotas
 * of the shared store (registry_kv_put_owned). */
static int put_record(coord *c, const char *prefix, const poh_challenge *ch, const char *addr,
    int64_t now)
{
	char key[KEY_MAX], *text = NULL;
	size_t len = 0;
	int rc;

	if ((rc = poh_challenge_encode(&text, &len, ch)) != 0)
		return rc;
	key_of(key, prefix, ch->id);
	rc = registry_kv_put_owned(c->reg, key, text, len, record_ttl(c), 0, ch->node, addr, now);
	sodium_memzero(text, len);
	free(text);
	return rc;
}

/* Find the record under poh:<prefix>:<id> for `signer` and take it (one
 * shot).  On failure the reply has been sent. */
static int take_record(poh_challenge *out, http_req *r, coord *c, const char *prefix,
    const char *used_prefix, const char *id, const char *signer, int64_t now)
{
	char key[KEY_MAX], buf[8192];
	size_t len = 0;
	int rc;

	key_of(key, prefix, id);
	rc = registry_kv_get(buf, sizeof(buf) - 1, &len, c->reg, key, now);
	if (rc == TROOP_ENOTFOUND) {
		char ukey[KEY_MAX];
		key_of(ukey, used_prefix, id);
		if (registry_kv_get(NULL, 0, &len, c->reg, ukey, now) != TROOP_ENOTFOUND) {
			coord_reply_error(r, TROOP_ECONFLICT, "challenge '%s' was already used at "
			    "this step: a challenge is good for one %s", id,
			    strcmp(prefix, "c") == 0 ? "verify" : "reveal");
			return TROOP_ECONFLICT;
		}
		coord_reply_error(r, TROOP_ENOTFOUND, "no challenge '%s' is waiting for this call%s",
		    id, strcmp(prefix, "r") == 0 ? " (send /hardware/verify first)" : "");
		return TROOP_ENOTFOUND;
	}
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return rc;
	}
	buf[len] = '\0';
	rc = poh_challenge_decode(out, buf, len);
	sodium_memzero(buf, sizeof(buf));
	if (rc != 0) {
		coord_reply_error(r, TROOP_ERR, "challenge record is corrupt");
		return TROOP_ERR;
	}
	if (strcmp(out->node, signer) != 0) {
		coord_reply_error(r, TROOP_EFORBIDDEN, "challenge '%s' was issued to another node",
		    id);
		return TROOP_EFORBIDDEN;
	}
	/* only the taker goes on: a concurrent replay finds nothing */
	rc = registry_kv_take(buf, sizeof(buf) - 1, &len, c->reg, key, now);
	sodium_memzero(buf, sizeof(buf));
	if (rc != 0) {
		coord_reply_error(r, TROOP_ECONFLICT, "challenge '%s' was already used", id);
		return TROOP_ECONFLICT;
	}
	key_of(key, used_prefix, id);
	registry_kv_put_owned(c->reg, key, "1", 1, record_ttl(c) + TOMBSTONE_EXTRA_S,
	    REGISTRY_KV_NX, signer, http_req_peer(r), now);
	return 0;
}

/* Parse the body (may be empty: {}).  On failure the reply has been sent. */
static int parse_body(json_t **out, http_req *r)
{
	size_t len;
	const char *raw = http_req_body(r, &len);
	int rc;

	*out = NULL;
	if (len == 0) {
		*out = json_object();
		return 0;
	}
	if ((rc = json_parse_object(out, raw, len)) != 0)
		coord_reply_last_error(r, rc);
	return rc;
}

/* ---- POST /hardware/challenge --------------------------------------------------- */

static void reply_retry(http_req *r, long long wait)
{
	char retry[32];

	snprintf(retry, sizeof(retry), "%lld", wait < 1 ? 1 : wait);
	http_reply_header(r, "Retry-After", retry);
}

/* Count one challenge in the window "poh:<kind>:<who>" (at most `limit` a
 * --poh-rate-limit window).  Returns 0, or a troop_err with the reply
 * (429 with Retry-After, saying `whose`) sent. */
static int challenge_window(http_req *r, coord *c, const char *kind, const char *who,
    int64_t limit, const char *whose, int64_t now)
{
	char key[KEY_MAX + 64];
	int rc;

	snprintf(key, sizeof(key), "poh:%s:%s", kind, who);
	rc = registry_rate_check(c->reg, key, c->poh.rate_limit_s, limit, now);
	if (rc == TROOP_ERATE) {
		reply_retry(r, c->poh.rate_limit_s);
		coord_reply_error(r, rc, "at most %lld proof-of-hardware challenges per %lld s %s",
		    (long long)limit, (long long)c->poh.rate_limit_s, whose);
	} else if (rc != 0) {
		coord_reply_last_error(r, rc);
	}
	return rc;
}

/* The limits a node's key alone does not bound: the node must have
 * heartbeated for min_node_age_s and be live now; its source address and
 * its owner account get owner_limit / address_limit challenges per
 * rate-limit window.  Returns 0, or a troop_err with the reply sent. */
static int challenge_allowed(http_req *r, coord *c, const char *signer,
    const ledger_node *ln, int64_t now)
{
	registry_node rn;
	int rc;

	if (c->poh.min_node_age_s > 0) {
		int64_t age = now - ln->first_seen;
		bool live;

		memset(&rn, 0, sizeof(rn));
		live = registry_get_node(&rn, c->reg, signer, now, 0) == 0;
		registry_node_clear(&rn);
		if (age < c->poh.min_node_age_s || !live) {
			long long wait = age < c->poh.min_node_age_s ?
			    (long long)(c->poh.min_node_age_s - age) : (long long)c->node_ttl;
			reply_retry(r, wait);
			coord_reply_error(r, TROOP_ERATE, "a node must heartbeat for %lld s before "
			    "it is given a proof-of-hardware challenge: try again in %lld s",
			    (long long)c->poh.min_node_age_s, wait < 1 ? 1 : wait);
			return TROOP_ERATE;
		}
	}
	if (c->poh.rate_limit_s <= 0)
		return 0;
	if (c->poh.address_limit > 0 &&
	    (rc = challenge_window(r, c, "ra", http_req_peer(r), c->poh.address_limit,
	    "from one address", now)) != 0)
		return rc;
	if (c->poh.owner_limit > 0 && ln->owner[0] && strcmp(ln->owner, signer) != 0 &&
	    (rc = challenge_window(r, c, "ro", ln->owner, c->poh.owner_limit,
	    "for the nodes of one owner", now)) != 0)
		return rc;
	return 0;
}

static void h_challenge(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1], key[KEY_MAX];
	int64_t now = (int64_t)time(NULL);
	const char *cls = "gpu";
	json_t *body = NULL;
	proto_poh_challenge_req req;
	proto_poh_challenge out_ch;
	poh_challenge ch;
	ledger_node ln;
	size_t n;
	unsigned rounds;
	int rc;

	if (coord_authenticate(r, signer) != 0)
		return;
	if (parse_body(&body, r) != 0)
		return;
	if ((rc = proto_poh_challenge_req_decode(&req, body)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (strcmp(req.class_, "cpu") == 0) {
		cls = "cpu";
		n = c->poh.cpu_n;
		rounds = c->poh.cpu_rounds;
	} else {
		n = c->poh.gpu_n;
		rounds = c->poh.gpu_rounds;
	}
	rc = ledger_node_get(&ln, t->db, signer);
	if (rc == TROOP_ENOTFOUND) {
		coord_reply_error(r, TROOP_ENOTFOUND, "node '%s' is not registered: a node must "
		    "heartbeat before it asks for a proof-of-hardware challenge", signer);
		goto out;
	}
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (challenge_allowed(r, c, signer, &ln, now) != 0)
		goto out;
	if (c->poh.rate_limit_s > 0) {
		char since[32];
		snprintf(since, sizeof(since), "%lld", (long long)now);
		key_of(key, "rl", signer);
		rc = registry_kv_put_owned(c->reg, key, since, strlen(since), c->poh.rate_limit_s,
		    REGISTRY_KV_NX, signer, http_req_peer(r), now);
		if (rc == TROOP_ECONFLICT) {
			char buf[32], retry[32];
			size_t len = 0;
			long long wait = c->poh.rate_limit_s;
			if (registry_kv_get(buf, sizeof(buf) - 1, &len, c->reg, key, now) == 0) {
				buf[len] = '\0';
				wait = atoll(buf) + c->poh.rate_limit_s - now;
				if (wait < 1)
					wait = 1;
			}
			snprintf(retry, sizeof(retry), "%lld", wait);
			http_reply_header(r, "Retry-After", retry);
			coord_reply_error(r, TROOP_ERATE, "one proof-of-hardware challenge per %lld s "
			    "per node: try again in %lld s", (long long)c->poh.rate_limit_s, wait);
			goto out;
		}
		if (rc != 0) {
			coord_reply_last_error(r, rc);
			goto out;
		}
	}
	poh_challenge_init(&ch, signer, n, rounds, c->poh.samples);
	if ((rc = put_record(c, "c", &ch, http_req_peer(r), now)) != 0) {
		coord_reply_last_error(r, rc);
		goto wipe;
	}
	log_info("poh_challenge", "node=%.8s class=%s n=%zu rounds=%u", signer, cls, n, rounds);
	memset(&out_ch, 0, sizeof(out_ch));
	snprintf(out_ch.challenge_id, sizeof(out_ch.challenge_id), "%s", ch.id);
	memcpy(out_ch.seed, ch.seed, sizeof(out_ch.seed));
	out_ch.matrix_size = (int64_t)n;
	out_ch.rounds = rounds;
	out_ch.expires_at = ch.issued_ms / 1000 + c->poh.challenge_ttl_s;
	out_ch.samples = (int64_t)c->poh.samples;
	snprintf(out_ch.class_, sizeof(out_ch.class_), "%s", cls);
	coord_reply_json(r, 200, proto_poh_challenge_encode(&out_ch));
	sodium_memzero(&out_ch, sizeof(out_ch));
wipe:
	sodium_memzero(&ch, sizeof(ch));
out:
	json_decref(body);
}

/* ---- POST /hardware/verify ------------------------------------------------------ */

static void h_verify(http_req *r, void *arg)
{
	coord *c = arg;
	/* the clock stops as the root arrives, before any other work */
	int64_t now_ms = poh_wall_ms(), now_mono = poh_mono_ms();
	int64_t now = now_ms / 1000;
	char signer[TROOP_ID_LEN + 1];
	const char *id;
	json_t *body = NULL;
	proto_poh_verify_req req;
	proto_poh_verify_reply rep;
	poh_challenge ch;
	int rc;

	memset(&ch, 0, sizeof(ch));
	if (coord_authenticate(r, signer) != 0)
		return;
	if (parse_body(&body, r) != 0)
		return;
	/* any duration or timing field the worker sends is ignored */
	if ((rc = proto_poh_verify_req_decode(&req, body)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	id = req.challenge_id;
	memcpy(ch.root, req.merkle_root, sizeof(ch.root));
	{
		uint8_t given[POH_HASH_LEN];
		memcpy(given, ch.root, sizeof(given));
		if (take_record(&ch, r, c, "c", "u", id, signer, now) != 0)
			goto out;
		memcpy(ch.root, given, sizeof(given));
	}
	if (now_ms > ch.issued_ms + c->poh.challenge_ttl_s * 1000) {
		coord_reply_error(r, TROOP_EGONE, "challenge '%s' expired: the root came %lld ms "
		    "after the challenge, the limit is %lld s", id,
		    (long long)(now_ms - ch.issued_ms), (long long)c->poh.challenge_ttl_s);
		goto out;
	}
	ch.has_root = true;
	ch.elapsed_ms = poh_elapsed_ms(&ch, now_ms, now_mono);
	ch.deadline_ms = now_ms + c->poh.challenge_ttl_s * 1000;
	poh_sample_rows(&ch);
	if ((rc = put_record(c, "r", &ch, http_req_peer(r), now)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	log_info("poh_verify", "node=%.8s elapsed_ms=%lld samples=%zu", signer,
	    (long long)ch.elapsed_ms, ch.n_rows);
	memset(&rep, 0, sizeof(rep));
	snprintf(rep.challenge_id, sizeof(rep.challenge_id), "%s", ch.id);
	for (size_t i = 0; i < ch.n_rows && i < POH_K_MAX; i++)
		rep.indices[rep.n_indices++] = ch.rows[i];
	rep.expires_at = ch.deadline_ms / 1000;
	coord_reply_json(r, 200, proto_poh_verify_reply_encode(&rep));
out:
	sodium_memzero(&ch, sizeof(ch));
	json_decref(body);
}

/* ---- POST /hardware/reveal ------------------------------------------------------ */

struct revealed {
	int8_t *rows;          /* n_rows * n, in the order of ch.rows */
	bool seen[POH_K_MAX];
};

/* Place each decoded row; check the Merkle paths.  Returns 0,
 * TROOP_EINVAL (a row that was not asked for, given twice, or missing) or
 * TROOP_EFORBIDDEN (a path does not lead to the root). */
static int check_rows(struct revealed *rv, const poh_challenge *ch,
    const proto_poh_reveal *given)
{
	size_t i, n = ch->n;
	uint8_t path[POH_PATH_MAX * POH_HASH_LEN], leaf[POH_HASH_LEN];

	for (i = 0; i < given->n_rows; i++) {
		const proto_poh_row *gr = &given->rows[i];
		int64_t index = gr->index;
		size_t slot = ch->n_rows, plen = gr->path_len;
		int rc;

		for (size_t s = 0; s < ch->n_rows; s++)
			if (ch->rows[s] == (uint32_t)index)
				slot = s;
		if (slot == ch->n_rows)
			return troop_error_set(TROOP_EINVAL, "row %lld was not asked for: the reveal "
			    "must hold exactly the rows /hardware/verify named", (long long)index);
		if (rv->seen[slot])
			return troop_error_set(TROOP_EINVAL, "row %lld is given twice", (long long)index);
		rv->seen[slot] = true;
		memcpy(rv->rows + slot * n, gr->row, n);
		memcpy(path, gr->path, plen * POH_HASH_LEN);
		poh_leaf_hash(leaf, (uint32_t)index, rv->rows + slot * n, n);
		if ((rc = poh_path_verify(ch->root, n, (size_t)index, leaf, path, plen)) != 0)
			return rc;
	}
	for (size_t s = 0; s < ch->n_rows; s++)
		if (!rv->seen[s])
			return troop_error_set(TROOP_EINVAL, "row %u is missing from the reveal",
			    ch->rows[s]);
	return 0;
}

/* Recompute the sampled rows from the seed and compare.  0 or
 * TROOP_EFORBIDDEN naming the first wrong row; TROOP_ENOMEM. */
static int recompute(const poh_challenge *ch, const int8_t *given, int threads)
{
	poh_ctx *ctx = NULL;
	int8_t *mine = malloc(ch->n_rows * ch->n);
	int rc;

	if (!mine)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	if ((rc = poh_ctx_new(&ctx, ch->seed, ch->n, ch->rounds, threads)) != 0 ||
	    (rc = poh_compute_rows(mine, ctx, ch->rows, ch->n_rows, threads, NULL, NULL)) != 0)
		goto out;
	for (size_t s = 0; s < ch->n_rows; s++)
		if (memcmp(mine + s * ch->n, given + s * ch->n, ch->n) != 0) {
			rc = troop_error_set(TROOP_EFORBIDDEN, "row %u is not the product of the "
			    "challenge's matrices: proof rejected", ch->rows[s]);
			break;
		}
out:
	poh_ctx_free(ctx);
	free(mine);
	return rc;
}

/* Store a proof's outcome in the ledger, then copy the node's new facts
 * into its live registry record (a node that is not live gets them at its
 * next heartbeat).  Returns 0, or the ledger's error (the message set)
 * when it could not be stored. */
static int record_result(coord_thread *t, const char *node, bool ok, double m,
    const char *detail, int64_t now)
{
	ledger_node ln;
	int rc;

	if (!ok) {
		/* a failed proof leaves the node unverified; its multiplier stays */
		if ((rc = ledger_node_get(&ln, t->db, node)) != 0)
			return rc;
		m = ln.multiplier;
	}
	if ((rc = ledger_node_set_verification(t->db, node, m, ok, now)) != 0) {
		log_warn("poh_record", "node=%.8s error=\"%s\"", node, troop_error_msg());
		return rc;
	}
	api_nodes_facts_forget(node);
	ledger_audit(t->db, node, ok ? "poh_verified" : "poh_rejected", detail, now);
	/* the live record carries a copy of these facts for node choice: bring
	 * it up to date now rather than at the node's next heartbeat */
	if (ledger_node_get(&ln, t->db, node) == 0) {
		registry_facts f;
		coord_node_facts(&f, t->c, &ln, now);
		rc = registry_set_node_facts(t->c->reg, node, &f, now);
		api_nodes_peers_forget();
		if (rc != 0 && rc != TROOP_ENOTFOUND)
			log_warn("poh_record", "node=%.8s registry error=\"%s\"", node,
			    troop_error_msg());
	}
	return 0;
}

/* A reveal on its way through the check pool.  Everything but `ch`,
 * `given` and the result fields stays on the request's thread. */
struct reveal_job {
	poh_job job;               /* first: the pool's part */
	coord *c;
	coord_thread *t;
	http_req *r;               /* NULL once the client went away */
	poh_challenge ch;
	int8_t *given;             /* the revealed rows, in the order of ch.rows */
	int threads;
	char signer[TROOP_ID_LEN + 1];
	int64_t now;
	double t0;
	int rc;                    /* the check's outcome */
	char msg[512];             /* its message when rc != 0 */
};

static void reveal_job_free(struct reveal_job *j)
{
	sodium_memzero(&j->ch, sizeof(j->ch));
	free(j->given);
	free(j);
}

/* On a pool thread. */
static void reveal_work(poh_job *job)
{
	struct reveal_job *j = (struct reveal_job *)job;

	j->rc = recompute(&j->ch, j->given, j->threads);
	if (j->rc != 0)
		snprintf(j->msg, sizeof(j->msg), "%s", troop_error_msg());
}

static void reveal_closed(http_req *r, void *arg)
{
	struct reveal_job *j = arg;

	(void)r;
	j->r = NULL;
}

/* Back on the request's thread: record the outcome, answer. */
static void reveal_done(poh_job *job)
{
	struct reveal_job *j = (struct reveal_job *)job;
	const poh_challenge *ch = &j->ch;
	char detail[256];
	const char *cls;
	double ops, m;
	int rc = j->rc;

	if (j->job.cancelled) {
		reveal_job_free(j);
		return;
	}
	if (j->r)
		http_req_on_close(j->r, NULL, NULL);
	if (rc == TROOP_EFORBIDDEN) {
		snprintf(detail, sizeof(detail), "challenge=%s reason=\"%.160s\"", ch->id, j->msg);
		log_warn("poh_rejected", "node=%.8s %s check_ms=%.0f", j->signer, detail,
		    (double)poh_mono_ms() - j->t0);
		if (record_result(j->t, j->signer, false, 0, detail, j->now) != 0)
			/* the rejection stands either way: answer with its reason */
			snprintf(j->msg, sizeof(j->msg), "proof rejected (%s); the ledger could not "
			    "record it", detail);
	}
	if (rc != 0) {
		if (j->r)
			coord_reply_error(j->r, rc, "%s", j->msg);
		reveal_job_free(j);
		return;
	}
	ops = poh_ops(ch->n, ch->rounds);
	m = poh_multiplier(ops, ch->elapsed_ms, j->c->poh.reference_ops);
	snprintf(detail, sizeof(detail), "challenge=%s n=%zu rounds=%u elapsed_ms=%lld "
	    "multiplier=%.4f", ch->id, ch->n, ch->rounds, (long long)ch->elapsed_ms, m);
	/* a proof verifies the node for its own class only; the challenge's
	 * size says which (the GPU class when both are configured alike).
	 * Stored first, so that the registry's copy of the facts has it. */
	cls = (ch->n == j->c->poh.gpu_n && ch->rounds == j->c->poh.gpu_rounds) ? "gpu" : "cpu";
	if (ledger_node_set_class(j->t->db, j->signer, cls) != 0)
		log_warn("poh_class", "node=%.8s error=\"%s\"", j->signer, troop_error_msg());
	api_nodes_facts_forget(j->signer);
	if ((rc = record_result(j->t, j->signer, true, m, detail, j->now)) != 0) {
		/* never answer "verified" for a result the ledger does not hold */
		if (j->r)
			coord_reply_last_error(j->r, rc);
		reveal_job_free(j);
		return;
	}
	log_info("poh_verified", "node=%.8s n=%zu rounds=%u elapsed_ms=%lld multiplier=%.4f "
	    "check_ms=%.0f", j->signer, ch->n, ch->rounds, (long long)ch->elapsed_ms, m,
	    (double)poh_mono_ms() - j->t0);
	if (j->r) {
		proto_poh_result res;

		memset(&res, 0, sizeof(res));
		res.verified = true;
		res.multiplier = m;
		res.ops = ops;
		res.ops_per_s = ops / ((double)ch->elapsed_ms / 1000.0);
		res.elapsed_ms = ch->elapsed_ms;
		res.matrix_size = (int64_t)ch->n;
		res.rounds = ch->rounds;
		res.samples = (int64_t)ch->n_rows;
		res.verified_at = j->now;
		json_t *reply = proto_poh_result_encode(&res);
		/* the class the proof verified the node for */
		if (reply)
			json_object_set_new(reply, "class", json_string(cls));
		coord_reply_json(j->r, 200, reply);
	}
	reveal_job_free(j);
}

static void h_reveal(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	int64_t now_ms = poh_wall_ms(), now = now_ms / 1000;
	char signer[TROOP_ID_LEN + 1], detail[256], id[PROTO_POH_ID_MAX + 1];
	json_t *body = NULL;
	proto_poh_reveal given;
	struct revealed rv;
	struct reveal_job *j = NULL;
	bool reserved = false;
	poh_challenge ch;
	int rc;

	memset(&ch, 0, sizeof(ch));
	memset(&rv, 0, sizeof(rv));
	memset(&given, 0, sizeof(given));
	if (coord_authenticate(r, signer) != 0)
		return;
	if (parse_body(&body, r) != 0)
		return;
	if ((rc = proto_poh_reveal_id(id, body)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	/* a place in the check queue first: a busy coordinator does not use up
	 * the challenge */
	if (poh_pool_reserve(t->poh_port) != 0) {
		reply_retry(r, POH_BUSY_RETRY_S);
		coord_reply_last_error(r, TROOP_ERATE);
		goto out;
	}
	reserved = true;
	if (take_record(&ch, r, c, "r", "v", id, signer, now) != 0)
		goto out;
	if (!ch.has_root) {
		coord_reply_error(r, TROOP_ERR, "challenge record is corrupt");
		goto out;
	}
	if (now_ms > ch.deadline_ms) {
		coord_reply_error(r, TROOP_EGONE, "challenge '%s' expired: the reveal came %lld ms "
		    "after the verify deadline", id, (long long)(now_ms - ch.deadline_ms));
		goto out;
	}
	/* the rows' length is the challenge's n: decoded once it is known */
	if ((rc = proto_poh_reveal_decode(&given, body, ch.n)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	rv.rows = malloc(ch.n_rows * ch.n);
	j = calloc(1, sizeof(*j));
	if (!rv.rows || !j) {
		coord_reply_error(r, TROOP_ENOMEM, "out of memory");
		goto out;
	}
	rc = check_rows(&rv, &ch, &given);
	if (rc == TROOP_EFORBIDDEN) {
		snprintf(detail, sizeof(detail), "challenge=%s reason=\"%s\"", id, troop_error_msg());
		log_warn("poh_rejected", "node=%.8s %s", signer, detail);
		if (record_result(t, signer, false, 0, detail, now) != 0)
			troop_error_set(rc, "proof rejected (%s); the ledger could not record it",
			    detail);
	}
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	/* the rows are well formed and lead to the root: recompute them off
	 * this thread */
	j->job.work = reveal_work;
	j->job.done = reveal_done;
	j->c = c;
	j->t = t;
	j->r = r;
	j->ch = ch;
	j->given = (int8_t *)rv.rows;
	rv.rows = NULL;
	j->threads = c->poh.verify_threads;
	memcpy(j->signer, signer, sizeof(signer));
	j->now = now;
	j->t0 = (double)poh_mono_ms();
	http_req_on_close(r, reveal_closed, j);
	poh_pool_submit(t->poh_port, &j->job);
	j = NULL;
	reserved = false;
out:
	if (reserved)
		poh_pool_unreserve(t->poh_port);
	free(j);
	proto_poh_reveal_clear(&given);
	sodium_memzero(&ch, sizeof(ch));
	free(rv.rows);
	json_decref(body);
}

void api_hardware_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/hardware/challenge", h_challenge, c);
	http_server_route(s, "POST", "/hardware/verify", h_verify, c);
	http_server_route(s, "POST", "/hardware/reveal", h_reveal, c);
}
