/*
 * api_credits.c - accounts, tickets and escrow:
 *   POST /authorize                     signed by the requester
 *   GET  /users/{account}/balance       signed by that account
 *   GET  /users/{account}/transactions  signed by that account
 *   POST /admin/grant                   signed by an admin key
 *   POST /admin/invites                 signed by an admin key: a new invite code
 *   GET  /admin/report                  signed by an admin key: accounts that pay
 *                                       one node or owner only, nodes paid
 *                                       mostly with trial credits
 *   POST /invites/redeem                signed by the redeeming account
 *
 * /authorize picks a live IDLE node serving the model (by reputation and
 * load: the power of two choices, docs/SCHEDULING.md) from one registry
 * read, whose records carry the durable facts choice needs (owner,
 * multiplier, verified, hardware class, reputation),
 * reserves the estimated cost in the one ledger transaction that checks
 * the balance, and signs a ticket for that node.  A client may ask for a
 * hardware class ("class": "gpu" or "cpu", "class_required": true to
 * refuse others); without one the operator's --node-class applies.  A
 * node counts for a class only when its proof of hardware was of that
 * class.
 *
 * When every node that could take it is busy, a request with "wait" is
 * parked in the model's wait queue (queue.h) and tried again from its
 * thread's loop as slots free, in queue order; while anyone waits, a free
 * slot goes to the queue first.  A ticket holds its node's slot only
 * until the job starts or --unused-ticket passes, an account holds at most
 * --max-tickets, and a node's max_jobs counts up to its class's cap and
 * what it has served well (--max-jobs-new).
 *
 * Starter credits are trial credits (docs/CREDITS.md): every new account
 * gets them under --starter-policy open, an account redeeming an
 * admin-issued invite code under invite, nobody under none.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "error.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "queue.h"

#define AUTH_CANDIDATES 64

/* ---- node choice ------------------------------------------------------------- */

/* Pick an eligible node from `nodes`: IDLE, below its slots, not
 * excluded, the requested node if one was named, verified unless the
 * operator allows unverified nodes (the registry record's copy of the
 * ledger facts), of class `want_class` when class_required (else nodes of
 * that class first; "" for any), not suspect after a failed audit unless
 * the request is the auditor's (`by_auditor`: docs/AUDITS.md).  Among
 * those, the power of two choices over a reputation-weighted draw
 * (pick_weighted).  Returns the index, or -1.  skipped[] counts why the
 * others were passed over, for the
 * no_capacity message. */
enum { SKIP_BUSY, SKIP_UNVERIFIED, SKIP_FAILED, SKIP_CLASS, SKIP_DISPUTED, SKIP_SUSPENDED,
	SKIP_SUSPECT, SKIP_N };

/* Whether node facts `f` are past the operator's dispute threshold. */
static bool too_disputed(const coord *c, const registry_facts *f)
{
	if (c->max_dispute_rate <= 0 || f->disputes < COORD_MIN_DISPUTES)
		return false;
	return (double)f->disputes > c->max_dispute_rate * (double)(f->jobs > 0 ? f->jobs : 1);
}

static double uniform01(void)
{
	return (double)randombytes_uniform(1u << 30) / (double)(1u << 30);
}

/* The choice among the k eligible nodes cand[] (docs/SCHEDULING.md): two
 * draws, each with probability proportional to a node's weight
 * (reputation_weight: its reputation, a new node at least the mean of
 * the judged ones), two different nodes when there are two; of the two,
 * the one with the larger weight x free share of its slots wins
 * (free_share[]: (slots - active) / slots, or 1 / (1 + active) for a node
 * reporting no limit), the heavier weight when those are equal.  Among
 * nodes of equal weight (all new, say) the less loaded always wins. */
static int pick_weighted(const registry_node *nodes, const int *cand,
    const double *free_share, size_t k)
{
	double w[AUTH_CANDIDATES], fair = 0;
	size_t judged = 0;
	int a, b;

	for (size_t i = 0; i < k; i++) {
		const registry_facts *f = &nodes[cand[i]].facts;
		if (!reputation_is_new(f)) {
			fair += f->reputation;
			judged++;
		}
	}
	/* nobody judged yet: every node alike */
	fair = judged > 0 ? fair / (double)judged : 1.0;
	for (size_t i = 0; i < k; i++)
		w[i] = reputation_weight(&nodes[cand[i]].facts, fair);
	a = reputation_draw(w, k, uniform01());
	if (k == 1)
		return cand[a];
	{
		/* the second draw among the others */
		double wa = w[a];
		w[a] = 0;
		b = reputation_draw(w, k, uniform01());
		w[a] = wa;
	}
	{
		double sa = w[a] * free_share[a], sb = w[b] * free_share[b];
		if (sb > sa || (sb == sa && w[b] > w[a]))
			a = b;
	}
	return cand[a];
}

static int choose_node(const coord *c, const registry_node *nodes, size_t n,
    const proto_authorize_req *exclude, const char *want_node, const char *want_class,
    bool class_required, bool by_auditor, int skipped[SKIP_N], int *free_slots)
{
	int cand[AUTH_CANDIDATES], best_match = 0;
	double free_share[AUTH_CANDIDATES];
	size_t k = 0;

	*free_slots = 0;
	if (n > AUTH_CANDIDATES)
		n = AUTH_CANDIDATES;
	for (size_t i = 0; i < n; i++) {
		const registry_node *nd = &nodes[i];
		int slots = coord_node_slots(c, nd);
		if (want_node && strcmp(nd->node_id, want_node) != 0)
			continue;
		if (exclude && proto_authorize_req_excludes(exclude, nd->node_id)) {
			skipped[SKIP_FAILED]++;
			continue;
		}
		/* a ticket fetched ahead is used later: a full node may do */
		if (nd->status != NODE_IDLE ||
		    (slots > 0 && nd->active_jobs >= slots && !(exclude && exclude->ahead))) {
			skipped[SKIP_BUSY]++;
			continue;
		}
		if (!nd->facts.verified && !c->allow_unverified) {
			skipped[SKIP_UNVERIFIED]++;
			continue;
		}
		if (nd->facts.suspended) {
			skipped[SKIP_SUSPENDED]++;
			continue;
		}
		/* a failed audit: only the auditor's next audit may clear it */
		if (nd->facts.suspect && !by_auditor) {
			skipped[SKIP_SUSPECT]++;
			continue;
		}
		if (too_disputed(c, &nd->facts)) {
			skipped[SKIP_DISPUTED]++;
			continue;
		}
		/* a proof verifies a node for its own class only */
		int match = want_class[0] == '\0' ||
		    (nd->facts.verified && strcmp(nd->facts.hw_class, want_class) == 0);
		if (class_required && !match) {
			skipped[SKIP_CLASS]++;
			continue;
		}
		*free_slots += slots > 0 ? slots - nd->active_jobs : 1;
		/* a node of the preferred class beats any other */
		if (k > 0 && match < best_match)
			continue;
		if (k == 0 || match > best_match) {
			k = 0;
			best_match = match;
		}
		cand[k] = (int)i;
		/* the free share of its slots, in (0, 1] */
		free_share[k] = slots > 0 ? (double)(slots - nd->active_jobs) / slots :
		    1.0 / (1.0 + (nd->active_jobs > 0 ? nd->active_jobs : 0));
		k++;
	}
	return k > 0 ? pick_weighted(nodes, cand, free_share, k) : -1;
}

/* Why no node was chosen, in words, from choose_node's counts: which
 * nodes were busy, not verified yet, or had failed this request already,
 * and what to do about each. */
static void capacity_message(char *out, size_t len, const int skipped[SKIP_N])
{
	static const char *const why[SKIP_N] = {
		[SKIP_BUSY] = "busy (every job slot taken, or its owner is using the GPU); "
		    "try again shortly",
		[SKIP_UNVERIFIED] = "not verified yet (a node proves its hardware in its first "
		    "minutes after it starts); try again in a minute",
		[SKIP_FAILED] = "already failed this request (its engine answered with an "
		    "error); the node's owner should look at the worker's log",
		[SKIP_CLASS] = "not verified for the hardware class this request requires "
		    "(fields 'class' and 'class_required', or the coordinator's --node-class)",
		[SKIP_DISPUTED] = "billed more than their clients saw too often "
		    "(--max-dispute-rate)",
		[SKIP_SUSPENDED] = "suspended by the operator",
		[SKIP_SUSPECT] = "suspect: their answers disagreed with other nodes serving the "
		    "same weights in an audit (docs/AUDITS.md)",
	};
	size_t used = 0;

	out[0] = '\0';
	for (int k = 0; k < SKIP_N; k++) {
		int w;
		if (skipped[k] == 0 || used >= len)
			continue;
		w = snprintf(out + used, len - used, "%s%d node%s %s", used ? "; " : "",
		    skipped[k], skipped[k] == 1 ? "" : "s", why[k]);
		if (w > 0)
			used += (size_t)w;
	}
	if (!out[0])
		snprintf(out, len, "every node is busy; try again shortly");
}

/* A request that names its node: that node must be live (404 not_found
 * otherwise, not "every node is busy") and serve the model (404
 * model_not_found).  Its load and verification are choose_node's. */
static int named_node_live(coord *c, const char *node_id, const char *model, int64_t now)
{
	registry_node nd;
	bool serves = false;
	int rc;

	memset(&nd, 0, sizeof(nd));
	rc = registry_get_node(&nd, c->reg, node_id, now, REGISTRY_WITH_MODELS);
	if (rc == TROOP_ENOTFOUND)
		return troop_error_set(TROOP_ENOTFOUND, "no live node with id '%s'; see "
		    "'troop nodes'", node_id);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < nd.n_models; i++)
		serves |= strcmp(nd.models[i].name, model) == 0 ||
		    strcmp(nd.models[i].content_hash, model) == 0;
	registry_node_clear(&nd);
	if (!serves)
		return troop_error_set(TROOP_ENOMODEL, "node '%s' does not serve model '%s'",
		    node_id, model);
	return 0;
}

/* --max-account-dispute-rate: 0, or TROOP_EFORBIDDEN (message set) when
 * `account` has at least COORD_MIN_DISPUTES disputes and more than the
 * rate times its delivery reports.  One ledger read: only with the flag. */
static int account_not_disputed(const coord *c, coord_thread *t, const char *account)
{
	ledger_balance b;

	if (ledger_balance_get(&b, t->db, account) != 0)
		return 0;   /* no account yet: nothing disputed */
	if (b.disputes < COORD_MIN_DISPUTES ||
	    (double)b.disputes <= c->max_account_dispute_rate * (double)b.reports)
		return 0;
	return troop_error_set(TROOP_EFORBIDDEN, "account %.8s is stopped: %lld of its %lld "
	    "delivery reports under-reported the time its jobs took, over the operator's "
	    "limit of %.0f%% (--max-account-dispute-rate)", account, (long long)b.disputes,
	    (long long)b.reports, c->max_account_dispute_rate * 100.0);
}

/* ---- capabilities ------------------------------------------------------------ */

/* The entry of `model` (a name, else a content hash) in node `nd`'s list
 * as a proto_model's capability fields; false when it lists none. */
static bool node_model_caps(proto_model *pm, const registry_node *nd, const char *model)
{
	const registry_model *m = NULL;

	for (size_t i = 0; !m && i < nd->n_models; i++)
		if (strcmp(nd->models[i].name, model) == 0)
			m = &nd->models[i];
	for (size_t i = 0; !m && i < nd->n_models; i++)
		if (strcmp(nd->models[i].content_hash, model) == 0)
			m = &nd->models[i];
	if (!m)
		return false;
	memset(pm, 0, sizeof(*pm));
	pm->context_length = m->context_length;
	pm->caps = m->caps;
	pm->caps_known = m->caps_known;
	pm->endpoints = m->endpoints;
	return true;
}

/* How node `nd`'s entry for `model` fits `rq` (UNMET when it has none). */
static proto_fit node_fit(const registry_node *nd, const char *model,
    const proto_require *rq)
{
	proto_model pm;

	if (!node_model_caps(&pm, nd, model))
		return PROTO_FIT_UNMET;
	return proto_require_check(rq, &pm, NULL, NULL);
}

/* Whether any of nodes[0..n-1] may meet `rq` for `model`. */
static bool any_fits(const registry_node *nodes, size_t n, const char *model,
    const proto_require *rq)
{
	for (size_t i = 0; i < n; i++)
		if (node_fit(&nodes[i], model, rq) != PROTO_FIT_UNMET)
			return true;
	return false;
}

/* Order nodes[0..n-1] by how they fit the request's requirements
 * (proto_fit): first the *n_met whose engines said yes to everything
 * asked, then those whose engines did not say, *n_fit in all; the nodes
 * whose engine said no come last and are not to be chosen (the array
 * keeps all n records, for registry_nodes_free).  When no node fits:
 * TROOP_EINVAL (400) naming the first requirement no node meets ("no node
 * serving 'm' takes images (vision)"), not a 503: waiting does not help. */
static int keep_capable(registry_node *nodes, size_t n, size_t *n_met, size_t *n_fit,
    const char *model, const proto_require *rq)
{
	static const struct { uint32_t bit; const char *words; } caps[] = {
		{ PROTO_CAP_VISION, "takes images (vision)" },
		{ PROTO_CAP_TOOLS, "takes tools" },
		{ PROTO_CAP_EMBEDDINGS, "is an embedding model" },
	};
	int64_t largest = 0;
	size_t k = 0;
	proto_model pm;

	for (size_t i = 0; i < n; i++)
		if (node_model_caps(&pm, &nodes[i], model) && pm.context_length > largest)
			largest = pm.context_length;
	for (int want = PROTO_FIT_MET; want >= PROTO_FIT_UNKNOWN; want--) {
		for (size_t i = k; i < n; i++) {
			if ((int)node_fit(&nodes[i], model, rq) != want)
				continue;
			if (i != k) {
				registry_node tmp = nodes[k];
				nodes[k] = nodes[i];
				nodes[i] = tmp;
			}
			k++;
		}
		if (want == PROTO_FIT_MET)
			*n_met = k;
	}
	*n_fit = k;
	if (k > 0)
		return 0;
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		proto_require one = { .caps = caps[i].bit };
		if ((rq->caps & caps[i].bit) && !any_fits(nodes, n, model, &one))
			return troop_error_set(TROOP_EINVAL, "no node serving '%s' %s", model,
			    caps[i].words);
	}
	if (rq->endpoints) {
		proto_require one = { .endpoints = rq->endpoints };
		if (!any_fits(nodes, n, model, &one))
			return troop_error_set(TROOP_EINVAL, "no node serving '%s' serves the %s "
			    "API natively", model, proto_endpoint_name(rq->endpoints));
	}
	if (rq->context > 0) {
		proto_require one = { .context = rq->context };
		if (!any_fits(nodes, n, model, &one))
			return troop_error_set(TROOP_EINVAL, "no node serving '%s' has a context "
			    "long enough: the request needs about %lld tokens, the largest "
			    "context is %lld", model, (long long)rq->context, (long long)largest);
	}
	return troop_error_set(TROOP_EINVAL, "no node serving '%s' meets all of the request's "
	    "requirements at once (context, tools, images, endpoint)", model);
}

/* ---- the reply ----------------------------------------------------------------- */

/* A reply being written into a fixed buffer; `over` once it did not fit. */
struct jout {
	char *p;
	size_t len, cap;
	bool over;
};

static void jout_raw(struct jout *o, const char *s, size_t n)
{
	if (o->over || n > o->cap - o->len) {
		o->over = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/* `"name":"value"`, after a comma unless it is the first member, the value
 * escaped as jansson's compact dump escapes it: quote, backslash, control
 * characters as \b \f \n \r \t or \u00XX in capitals; UTF-8 passes as it
 * is. */
static void jout_str(struct jout *o, const char *name, const char *v)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *run = v;

	jout_raw(o, o->len > 1 ? ",\"" : "\"", o->len > 1 ? 2 : 1);
	jout_raw(o, name, strlen(name));
	jout_raw(o, "\":\"", 3);
	for (; *v; v++) {
		unsigned char ch = (unsigned char)*v;
		char esc[6] = { '\\', 0 };
		size_t n = 2;
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		jout_raw(o, run, (size_t)(v - run));
		run = v + 1;
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			n = 6;
		}
		jout_raw(o, esc, n);
	}
	jout_raw(o, run, (size_t)(v - run));
	jout_raw(o, "\"", 1);
}

static void jout_int(struct jout *o, const char *name, int64_t v)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%lld", (long long)v);

	jout_raw(o, o->len > 1 ? ",\"" : "\"", o->len > 1 ? 2 : 1);
	jout_raw(o, name, strlen(name));
	jout_raw(o, "\":", 2);
	jout_raw(o, num, (size_t)n);
}

/* Send `rep` as the 200 reply, written straight into a buffer: the same
 * members and bytes proto_authorize_reply_encode's object dumps to
 * (test_credits' test_authorize_reply_bytes compares the two), without
 * building and freeing a jansson tree per ticket.  A reply that does not
 * fit the buffer goes the jansson way. */
static void reply_ticket(http_req *r, coord *c, const proto_authorize_reply *rep)
{
	char buf[8192];
	struct jout o = { buf, 0, sizeof(buf), false };

	jout_raw(&o, "{", 1);
	jout_str(&o, "job_id", rep->job_id);
	jout_str(&o, "token", rep->token);
	jout_str(&o, "node_id", rep->node_id);
	jout_str(&o, "target_ip", rep->target_ip);
	jout_int(&o, "target_port", rep->target_port);
	jout_int(&o, "estimated_cost", rep->estimated_cost);
	jout_int(&o, "expires_at", rep->expires_at);
	jout_int(&o, "max_seconds", rep->max_seconds);
	jout_str(&o, "encryption_public_key", rep->encryption_public_key);
	if (rep->seal_key[0])
		jout_str(&o, "seal_key", rep->seal_key);
	jout_raw(&o, "}", 1);
	if (o.over) {
		coord_reply_json(r, 200, proto_authorize_reply_encode(rep));
		return;
	}
	METRIC_ADD(&c->metrics, req_2xx, 1);
	http_reply(r, 200, "application/json", buf, o.len);
	sodium_memzero(buf, o.len);
}

/* One /authorize request, parsed: what a first try and every try from the
 * wait queue need (the request body is gone by then). */
struct auth_ctx {
	coord *c;
	char requester[TROOP_ID_LEN + 1];
	proto_authorize_req req;
	char want_class[8];
	bool class_required, report_wanted;
	int64_t max_seconds;
	char why[600];               /* the last no_capacity reason */
};

enum auth_result { AUTH_REPLIED, AUTH_BUSY };

/* Try to give request `a` a ticket.  `rank`: its place in the wait queue
 * (0 = head), or -1 for a request not (yet) queued, which must leave the
 * free slots to those waiting.  Replies (a ticket or an error) and returns
 * AUTH_REPLIED, or returns AUTH_BUSY with nothing sent when every node
 * that could take it is busy (a->why says so). */
static enum auth_result authorize_try(struct auth_ctx *a, http_req *r, int64_t rank)
{
	coord *c = a->c;
	coord_thread *t = coord_thread_of(r);
	int64_t now = (int64_t)time(NULL), cost, available = 0;
	const char *model = a->req.model;
	const char *want_node = a->req.node_id[0] ? a->req.node_id : NULL;
	const char *requester = a->requester;
	int64_t max_seconds = a->max_seconds;
	proto_authorize_reply rep;
	registry_node *nodes = NULL;
	size_t n = 0, n_met, n_fit;
	const registry_node *nd;
	double multiplier;
	ticket_claims cl;
	troop_identity signer;
	char *token = NULL;
	int idx, rc, free_slots = 0, skipped[SKIP_N] = { 0 };
	bool held = false, by_auditor = c->audit_account[0] &&
	    strcmp(requester, c->audit_account) == 0;

	memset(&cl, 0, sizeof(cl));
	memset(&signer, 0, sizeof(signer));
	if ((rc = registry_find_nodes(&nodes, &n, c->reg, model, now, AUTH_CANDIDATES,
	    proto_require_any(&a->req.require) ? REGISTRY_WITH_MODELS : 0))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (n == 0) {
		METRIC_ADD(&c->metrics, auth_no_model, 1);
		coord_reply_error(r, TROOP_ENOMODEL,
		    "no live node serves model '%s'; see 'troop models' for what the troop serves",
		    model);
		goto out;
	}
	n_met = n_fit = n;
	if (proto_require_any(&a->req.require) &&
	    (rc = keep_capable(nodes, n, &n_met, &n_fit, model, &a->req.require)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	/* the nodes known to fit first; the ones whose engines did not say
	 * when none of those can take it */
	idx = n_met > 0 ? choose_node(c, nodes, n_met, &a->req, want_node, a->want_class,
	    a->class_required, by_auditor, skipped, &free_slots) : -1;
	if (idx < 0 && n_fit > n_met) {
		memset(skipped, 0, sizeof(skipped));
		free_slots = 0;
		idx = choose_node(c, nodes, n_fit, &a->req, want_node, a->want_class,
		    a->class_required, by_auditor, skipped, &free_slots);
	}
	/* a free slot goes to those waiting first, in their order */
	if (idx >= 0 && (rank >= free_slots ||
	    (rank < 0 && queue_has_waiters(c->reg, model, now)))) {
		snprintf(a->why, sizeof(a->why), "every free slot is promised to requests "
		    "waiting in the queue");
		registry_nodes_free(nodes, n);
		return AUTH_BUSY;
	}
	if (idx < 0) {
		capacity_message(a->why, sizeof(a->why), skipped);
		if (skipped[SKIP_BUSY] > 0) {
			registry_nodes_free(nodes, n);
			return AUTH_BUSY;
		}
		/* nothing a wait would change */
		METRIC_ADD(&c->metrics, auth_no_capacity, 1);
		coord_reply_error(r, TROOP_ECAPACITY, "no node can take a request for '%s' now: %s",
		    model, a->why);
		goto out;
	}
	nd = &nodes[idx];
	/* a record put without facts has multiplier 0: price it at the base rate */
	multiplier = nd->facts.multiplier > 0 ? nd->facts.multiplier : 1.0;

	memset(&cl, 0, sizeof(cl));
	ticket_keys_signer(c->tkeys, &signer, now);
	snprintf(cl.iss, sizeof(cl.iss), "%s", signer.id);
	snprintf(cl.sub, sizeof(cl.sub), "%s", requester);
	snprintf(cl.aud, sizeof(cl.aud), "%s", TICKET_AUD);
	snprintf(cl.target_node, sizeof(cl.target_node), "%.43s", nd->node_id);
	snprintf(cl.model, sizeof(cl.model), "%s", model);
	ticket_new_jti(cl.jti);
	cl.iat = now;
	cl.exp = now + c->ticket_ttl;
	cl.max_seconds = max_seconds;
	cost = ledger_charge(max_seconds * 1000, multiplier, INT64_MAX);
	if (cost < 1)
		cost = 1;

	/* tickets in flight per account, and the slot held only while used
	 * (a ticket fetched ahead: only once its job starts) */
	rc = a->req.ahead ?
	    queue_ticket_ahead(&c->queue, c->reg, requester, cl.jti, cl.exp + max_seconds, now) :
	    queue_ticket_hold(&c->queue, c->reg, requester, cl.target_node, cl.jti,
	    cl.exp + max_seconds, now);
	if (rc != 0) {
		if (rc == TROOP_ERATE)
			http_reply_header(r, "Retry-After", "5");
		coord_reply_last_error(r, rc);
		goto out;
	}
	held = true;
	{
		ledger_reserve_req rq = {
			.job_id = cl.jti, .requester = requester, .node_id = cl.target_node,
			.worker = nd->owner, .model = model, .amount = cost,
			.max_seconds = max_seconds, .multiplier = multiplier,
			/* the ticket may be used until exp and then run max_seconds */
			.expires_at = cl.exp + max_seconds, .report_wanted = a->report_wanted,
			.now = now,
		};
		rc = ledger_reserve(&available, t->db, &rq);
		if (rc == TROOP_ECREDITS && available == 0) {
			/* perhaps a first request: the account does not exist yet
			 * (only this path pays for the second transaction) */
			bool created = false;
			int erc = ledger_ensure_account(&created, t->db, requester,
			    coord_starter(c), now);
			/* again also when another request created it a moment
			 * before: its starter credits are there now */
			if (erc != 0)
				rc = erc;
			else
				rc = ledger_reserve(&available, t->db, &rq);
		}
	}
	if (rc == TROOP_ECREDITS) {
		METRIC_ADD(&c->metrics, auth_no_credits, 1);
		coord_reply_error(r, TROOP_ECREDITS,
		    "insufficient credits: available %lld, price %lld credit-seconds "
		    "(%lld s at multiplier %.2f); earn credits by running a worker",
		    (long long)available, (long long)cost, (long long)max_seconds, multiplier);
		goto out;
	}
	if (rc != 0 || (rc = ticket_sign(&token, &cl, &signer)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	held = false;
	if (!a->req.ahead)
		registry_add_active_job(c->reg, cl.target_node, 1);
	METRIC_ADD(&c->metrics, auth_ok, 1);
	METRIC_ADD(&c->metrics, credits_reserved, (unsigned long long)cost);
	log_debug("authorize", "job=%s node=%.8s model=%s cost=%lld rank=%lld", cl.jti,
	    cl.target_node, model, (long long)cost, (long long)rank);
	memset(&rep, 0, sizeof(rep));
	snprintf(rep.job_id, sizeof(rep.job_id), "%s", cl.jti);
	snprintf(rep.token, sizeof(rep.token), "%s", token);
	snprintf(rep.node_id, sizeof(rep.node_id), "%s", cl.target_node);
	snprintf(rep.target_ip, sizeof(rep.target_ip), "%s", nd->ip);
	rep.target_port = nd->port;
	rep.estimated_cost = cost;
	rep.expires_at = cl.exp;
	rep.max_seconds = max_seconds;
	snprintf(rep.encryption_public_key, sizeof(rep.encryption_public_key), "%s",
	    nd->encryption_public_key);
	snprintf(rep.seal_key, sizeof(rep.seal_key), "%s", nd->seal_key);
	reply_ticket(r, c, &rep);
	sodium_memzero(rep.token, sizeof(rep.token));
out:
	if (held)
		queue_ticket_unhold(c->reg, requester, cl.target_node, cl.jti);
	if (token) {
		sodium_memzero(token, strlen(token));
		free(token);
	}
	registry_nodes_free(nodes, n);
	identity_wipe(&signer);
	return AUTH_REPLIED;
}

/* ---- the wait queue's callbacks (queue.h) ---- */

static bool queued_try(void *arg, http_req *r, int64_t rank)
{
	return authorize_try(arg, r, rank) == AUTH_REPLIED;
}

static void queued_expired(void *arg, http_req *r, int64_t waited_s, int64_t rank)
{
	struct auth_ctx *a = arg;

	METRIC_ADD(&a->c->metrics, auth_no_capacity, 1);
	coord_reply_error(r, TROOP_ECAPACITY, "no node took the request for '%s' within its "
	    "wait of %lld s (it was number %lld in the queue): %s", a->req.model,
	    (long long)waited_s, (long long)(rank >= 0 ? rank + 1 : 1), a->why);
}

static void queued_release(void *arg)
{
	free(arg);
}

static void h_authorize(http_req *r, void *arg)
{
	coord *c = arg;
	struct auth_ctx *a = calloc(1, sizeof(*a));
	const char *want_class = c->node_class;
	json_t *body = NULL, *creq;
	size_t len;
	const char *raw;
	int rc;

	if (!a) {
		coord_reply_error(r, TROOP_ENOMEM, "out of memory");
		return;
	}
	a->c = c;
	a->class_required = c->node_class_required;
	if (coord_authenticate(r, a->requester) != 0)
		goto out;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = proto_authorize_req_decode(&a->req, body)) ||
	    (rc = json_get_strn(&want_class, body, "class", false, LEDGER_CLASS_MAX))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	a->max_seconds = a->req.max_seconds ? a->req.max_seconds : c->reserve_seconds;
	if (a->max_seconds > c->max_seconds_cap) {
		coord_reply_error(r, TROOP_EINVAL, "field 'max_seconds' must be between 1 and %lld",
		    (long long)c->max_seconds_cap);
		goto out;
	}
	if (a->req.wait > c->queue.max_wait) {
		coord_reply_error(r, TROOP_EINVAL, "field 'wait' must be between 0 and %lld "
		    "seconds (this coordinator's --max-wait)", (long long)c->queue.max_wait);
		goto out;
	}
	if (a->req.node_id[0] &&
	    (rc = named_node_live(c, a->req.node_id, a->req.model, (int64_t)time(NULL))) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (strcmp(want_class, "any") == 0)
		want_class = "";
	if (want_class[0] && strcmp(want_class, "gpu") != 0 && strcmp(want_class, "cpu") != 0) {
		coord_reply_error(r, TROOP_EINVAL, "field 'class' must be \"gpu\", \"cpu\" or "
		    "\"any\"");
		goto out;
	}
	snprintf(a->want_class, sizeof(a->want_class), "%s", want_class);
	if ((creq = json_object_get(body, "delivery_report")) != NULL) {
		if (!json_is_boolean(creq)) {
			coord_reply_error(r, TROOP_EINVAL, "field 'delivery_report' must be a boolean");
			goto out;
		}
		a->report_wanted = json_is_true(creq);
	}
	if ((creq = json_object_get(body, "class_required")) != NULL) {
		if (!json_is_boolean(creq)) {
			coord_reply_error(r, TROOP_EINVAL, "field 'class_required' must be a boolean");
			goto out;
		}
		a->class_required = json_is_true(creq);
	}
	if (coord_account_allowed(r, a->requester) != 0)
		goto out;
	if (c->max_account_dispute_rate > 0 &&
	    (rc = account_not_disputed(c, coord_thread_of(r), a->requester)) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (authorize_try(a, r, -1) == AUTH_REPLIED)
		goto out;
	/* a ticket fetched ahead is only worth having now */
	if (a->req.wait > 0 && !a->req.ahead) {
		queue_callbacks cb = { queued_try, queued_expired, queued_release, a };
		int64_t now = (int64_t)time(NULL);
		int pclass = queue_priority_class(coord_thread_of(r)->db, a->requester,
		    c->queue.contrib_window, now);
		struct auth_ctx *parked = a;
		a = NULL;  /* the queue owns it now */
		rc = queue_park(&c->queue, c->reg, r, parked->req.model, parked->requester,
		    pclass, parked->req.wait, &cb);
		if (rc == TROOP_ERATE)
			METRIC_ADD(&c->metrics, req_4xx, 1);
		else if (rc != 0)
			coord_reply_last_error(r, rc);
		goto out;
	}
	METRIC_ADD(&c->metrics, auth_no_capacity, 1);
	coord_reply_error(r, TROOP_ECAPACITY, "no node can take a request for '%s' now: %s "
	    "(ask to wait with field 'wait')", a->req.model, a->why);
out:
	free(a);
	json_decref(body);
}

/* ---- accounts ------------------------------------------------------------------ */

/* The signer must be the account in the path. */
static int own_account(http_req *r, char signer[TROOP_ID_LEN + 1], const char **account)
{
	if (coord_authenticate(r, signer) != 0)
		return -1;
	*account = http_req_param(r, "account");
	if (!*account || strcmp(*account, signer) != 0) {
		coord_reply_error(r, TROOP_EFORBIDDEN,
		    "an account's balance and transactions are readable only with its own key");
		return -1;
	}
	return 0;
}

static void h_balance(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *account;
	ledger_balance b;
	int rc;

	if (own_account(r, signer, &account) != 0)
		return;
	if ((rc = ledger_ensure_account(NULL, t->db, account, coord_starter(c),
	    (int64_t)time(NULL))) || (rc = ledger_balance_get(&b, t->db, account))) {
		coord_reply_last_error(r, rc);
		return;
	}
	/* available_seconds: spendable now, trial credits included (as
	 * before they existed); trial_seconds: the part of it that is trial;
	 * pending_seconds: earnings not spendable yet */
	/* reports, disputes, dispute_rate: its delivery reports and those
	 * found to under-report (--max-account-dispute-rate) */
	coord_reply_json(r, 200, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:f}",
	    "public_key", account,
	    "balance_seconds", (json_int_t)(b.available + b.trial + b.reserved),
	    "reserved_seconds", (json_int_t)b.reserved,
	    "available_seconds", (json_int_t)(b.available + b.trial),
	    "trial_seconds", (json_int_t)b.trial,
	    "pending_seconds", (json_int_t)b.pending,
	    "balance_hours", (double)(b.available + b.trial + b.reserved) / 3600.0,
	    "reports", (json_int_t)b.reports, "disputes", (json_int_t)b.disputes,
	    "dispute_rate", b.reports > 0 ? (double)b.disputes / (double)b.reports : 0.0));
}

static int query_int(http_req *r, const char *name, int64_t def, int64_t min, int64_t max,
    int64_t *out)
{
	return http_req_query_int(r, name, def, min, max, out);
}

static void h_transactions(http_req *r, void *arg)
{
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *account;
	int64_t limit, before, next = 0;
	ledger_tx *rows = NULL;
	size_t n = 0;
	json_t *arr;
	int rc;

	(void)arg;
	if (own_account(r, signer, &account) != 0)
		return;
	if ((rc = query_int(r, "limit", 50, 1, LEDGER_TX_LIMIT_MAX, &limit)) ||
	    (rc = query_int(r, "before", 0, 0, INT64_MAX, &before)) ||
	    (rc = ledger_transactions(&rows, &n, &next, t->db, account, (int)limit, before))) {
		coord_reply_last_error(r, rc);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:I}",
		    "id", (json_int_t)rows[i].id, "type", rows[i].type, "job_id", rows[i].job_id,
		    "requester", rows[i].requester, "worker", rows[i].worker,
		    "credits", (json_int_t)rows[i].credits,
		    "duration_ms", (json_int_t)rows[i].duration_ms, "model", rows[i].model,
		    "timestamp", (json_int_t)rows[i].timestamp);
		if (rows[i].note[0])
			json_object_set_new(o, "note", json_string(rows[i].note));
		json_array_append_new(arr, o);
	}
	free(rows);
	coord_reply_json(r, 200, json_pack("{s:o, s:o}", "transactions", arr,
	    "next", next ? json_integer(next) : json_null()));
}

int coord_admin_signer(http_req *r, coord *c, char signer[TROOP_ID_LEN + 1])
{
	bool admin = false;

	if (coord_authenticate(r, signer) != 0)
		return -1;
	for (size_t i = 0; i < c->n_admins; i++)
		admin |= strcmp(c->admins[i], signer) == 0;
	if (!admin) {
		coord_reply_error(r, TROOP_EFORBIDDEN,
		    "this key is not an admin of this coordinator (see --admin)");
		return -1;
	}
	return 0;
}

/* GET /admin/report?min_jobs=N&limit=N (ledger_admin_report). */
static void h_admin_report(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	ledger_report_account *acc = NULL;
	ledger_report_node *nodes = NULL;
	size_t na = 0, nn = 0;
	int64_t min_jobs, limit;
	json_t *ja, *jn;
	int rc;

	if (coord_admin_signer(r, c, signer) != 0)
		return;
	if ((rc = query_int(r, "min_jobs", 3, 1, 1000000, &min_jobs)) ||
	    (rc = query_int(r, "limit", 100, 1, LEDGER_TX_LIMIT_MAX, &limit)) ||
	    (rc = ledger_admin_report(&acc, &na, &nodes, &nn, t->db, min_jobs, (int)limit))) {
		coord_reply_last_error(r, rc);
		return;
	}
	ja = json_array();
	jn = json_array();
	for (size_t i = 0; i < na; i++)
		json_array_append_new(ja, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s?, s:s?, s:I}",
		    "account", acc[i].account, "jobs", (json_int_t)acc[i].jobs,
		    "spent", (json_int_t)acc[i].spent, "nodes", (json_int_t)acc[i].nodes,
		    "owners", (json_int_t)acc[i].owners,
		    "node_id", acc[i].nodes == 1 ? acc[i].node_id : NULL,
		    "owner", acc[i].owners == 1 ? acc[i].owner : NULL,
		    "trial_reserved", (json_int_t)acc[i].trial_reserved));
	for (size_t i = 0; i < nn; i++)
		json_array_append_new(jn, json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:I}",
		    "node_id", nodes[i].node_id, "owner", nodes[i].owner,
		    "jobs", (json_int_t)nodes[i].jobs, "earned", (json_int_t)nodes[i].earned,
		    "trial_paid", (json_int_t)nodes[i].trial_paid,
		    "trial_share", nodes[i].earned > 0 ?
		    (double)nodes[i].trial_paid / (double)nodes[i].earned : 0.0,
		    "payers", (json_int_t)nodes[i].payers));
	free(acc);
	free(nodes);
	log_info("admin_report", "admin=%.8s accounts=%zu nodes=%zu", signer, na, nn);
	coord_reply_json(r, 200, json_pack("{s:o, s:o, s:I}", "single_payee_accounts", ja,
	    "trial_funded_nodes", jn, "min_jobs", (json_int_t)min_jobs));
}

static void h_admin_grant(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *account, *reason = "";
	unsigned char pk[TROOP_PK_LEN];
	int64_t credits, tx = 0;
	json_t *body = NULL;
	size_t len;
	const char *raw;
	int rc;

	if (coord_admin_signer(r, c, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_str(&account, body, "account", true)) ||
	    (rc = json_get_int(&credits, body, "credits", true, 1, LEDGER_CREDITS_MAX)) ||
	    (rc = json_get_strn(&reason, body, "reason", false, LEDGER_NOTE_MAX))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (account_id_decode(pk, account) != 0) {
		coord_reply_error(r, TROOP_EINVAL,
		    "field 'account' must be an account id (43 base64url characters)");
		goto out;
	}
	rc = ledger_admin_grant(&tx, t->db, account, credits, reason, signer, (int64_t)time(NULL));
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	log_info("admin_grant", "admin=%.8s account=%.8s credits=%lld", signer, account,
	    (long long)credits);
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:I, s:I}", "status", "granted",
	    "account", account, "credits", (json_int_t)credits, "transaction_id", (json_int_t)tx));
out:
	json_decref(body);
}

/* The invite code's ledger key: SHA-256 of the code, hex (the ledger never
 * holds a code that could be redeemed). */
static void invite_hash(char out[65], const char *code)
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const unsigned char *)code, strlen(code));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

static void h_admin_invite(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1], code[40], hash[65];
	unsigned char raw_code[18];
	int64_t credits = c->starter_credits;
	json_t *body = NULL;
	const char *raw;
	size_t len;
	int rc;

	if (coord_admin_signer(r, c, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_int(&credits, body, "credits", false, 1, LEDGER_CREDITS_MAX))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	if (credits < 1) {
		coord_reply_error(r, TROOP_EINVAL, "field 'credits' is required when "
		    "--starter-credits is 0");
		goto out;
	}
	randombytes_buf(raw_code, sizeof(raw_code));
	sodium_bin2base64(code, sizeof(code), raw_code, sizeof(raw_code),
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	invite_hash(hash, code);
	if ((rc = ledger_invite_create(t->db, hash, credits, signer, (int64_t)time(NULL))) != 0) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	log_info("invite_created", "admin=%.8s credits=%lld", signer, (long long)credits);
	coord_reply_json(r, 200, json_pack("{s:s, s:I}", "code", code,
	    "credits", (json_int_t)credits));
out:
	sodium_memzero(code, sizeof(code));
	json_decref(body);
}

/* POST /accounts/name {"display_name": "..."}: the signer's name on the
 * public leaderboard; "" takes it off (the account shows by its id). */
static void h_account_name(http_req *r, void *arg)
{
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1];
	const char *raw, *name;
	json_t *body = NULL;
	size_t len;
	int rc;

	(void)arg;
	if (coord_authenticate(r, signer) != 0)
		return;
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_str(&name, body, "display_name", true)) ||
	    (rc = proto_display_name_check(name)) ||
	    (rc = ledger_account_set_name(t->db, signer, name))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	api_meta_board_forget();
	log_info("display_name_set", "account=%.8s shown=%d", signer, name[0] != '\0');
	coord_reply_json(r, 200, json_pack("{s:s, s:o}", "account", signer, "display_name",
	    name[0] ? json_string(name) : json_null()));
out:
	json_decref(body);
}

static void h_invite_redeem(http_req *r, void *arg)
{
	coord *c = arg;
	coord_thread *t = coord_thread_of(r);
	char signer[TROOP_ID_LEN + 1], hash[65];
	const char *code, *raw;
	int64_t credits = 0;
	json_t *body = NULL;
	size_t len;
	int rc;

	if (coord_authenticate(r, signer) != 0)
		return;
	if (c->starter_policy == COORD_STARTER_NONE) {
		coord_reply_error(r, TROOP_EFORBIDDEN,
		    "this coordinator grants no starter credits (--starter-policy none)");
		return;
	}
	raw = http_req_body(r, &len);
	if ((rc = json_parse_object(&body, raw, len)) ||
	    (rc = json_get_strn(&code, body, "code", true, 64))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	invite_hash(hash, code);
	if ((rc = ledger_invite_redeem(&credits, t->db, hash, signer, (int64_t)time(NULL)))) {
		coord_reply_last_error(r, rc);
		goto out;
	}
	log_info("invite_redeemed", "account=%.8s credits=%lld", signer, (long long)credits);
	coord_reply_json(r, 200, json_pack("{s:s, s:s, s:I}", "status", "redeemed",
	    "account", signer, "trial_credits", (json_int_t)credits));
out:
	json_decref(body);
}

void api_credits_routes(http_server *s, coord *c)
{
	http_server_route(s, "POST", "/authorize", h_authorize, c);
	http_server_route(s, "GET", "/users/{account}/balance", h_balance, c);
	http_server_route(s, "GET", "/users/{account}/transactions", h_transactions, c);
	http_server_route(s, "POST", "/admin/grant", h_admin_grant, c);
	http_server_route(s, "POST", "/admin/invites", h_admin_invite, c);
	http_server_route(s, "GET", "/admin/report", h_admin_report, c);
	http_server_route(s, "POST", "/invites/redeem", h_invite_redeem, c);
	http_server_route(s, "POST", "/accounts/name", h_account_name, c);
}
