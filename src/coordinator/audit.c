/*
 * audit.c - the auditor (audit.h, docs/AUDITS.md): a thread that spot
 * checks that nodes advertising the same weights (content hash) answer a
 * seeded temperature-0 request alike, and marks those that disagree with
 * the majority suspect.
 *
 * Everything an audit sends goes the way a client's request goes: a
 * signed /authorize over HTTP to this coordinator (so the reservation,
 * the ticket, the slot hold and the price are the normal ones, paid from
 * the auditor's account), then the worker's normal endpoint with the
 * ticket.  Only node choice knows the auditor: it may pick a suspect node
 * for it, so that a suspect node can pass again.  The thread blocks on
 * its HTTP calls and its own ledger connection, never on a server loop.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "coordinator.h"
#include "dynbuf.h"
#include "error.h"
#include "http_client.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "seal.h"
#include "thread.h"

#define AUDIT_LIST_MAX 1000        /* live nodes looked at per round */
#define AUDIT_HTTP_TIMEOUT_MS 60000
#define AUDIT_REPLY_MAX (1024 * 1024)

struct auditor {
	coord *c;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;         /* signalled to stop */
	bool stop;
	atomic_int abort;          /* set at stop: HTTP calls in progress end */
	ledger_conn *db;
	http_client *http;
};

/* Ordinary questions: an audit must look like any other request. */
static const char *const prompts[] = {
	"Explain in two sentences why the sky is blue.",
	"Write a short poem about autumn leaves.",
	"What is the difference between a list and a tuple in Python?",
	"Give me three ideas for a quick vegetarian dinner.",
	"Summarize the plot of Romeo and Juliet in one paragraph.",
	"How do I reverse a string in C?",
	"What are the main causes of inflation?",
	"Translate 'good morning, how are you?' into French and Spanish.",
	"Suggest a name for a small bakery by the sea.",
	"Why do cats purr?",
	"Write a haiku about a train at night.",
	"List the planets of the solar system in order from the sun.",
};
#define N_PROMPTS (sizeof(prompts) / sizeof(prompts[0]))

/* ==== comparing answers ===================================================== */

/* The next whitespace-separated word of *s: its start, length in *len,
 * *s moved past it; NULL at the end. */
static const char *next_word(const char **s, size_t *len)
{
	const char *p = *s + strspn(*s, " \t\r\n");

	if (*p == '\0')
		return NULL;
	*len = strcspn(p, " \t\r\n");
	*s = p + *len;
	return p;
}

double audit_agreement(const char *a, const char *b, int n)
{
	int same = 0;

	if (n <= 0)
		return 1.0;
	for (int i = 0; i < n; i++) {
		size_t la = 0, lb = 0;
		const char *wa = a ? next_word(&a, &la) : NULL;
		const char *wb = b ? next_word(&b, &lb) : NULL;
		if (!wa || !wb)
			break;   /* a position one answer lacks disagrees */
		if (la == lb && memcmp(wa, wb, la) == 0)
			same++;
	}
	return (double)same / (double)n;
}

int audit_verdicts(int verdict[], const char *const answers[], size_t k, int n,
    double threshold)
{
	size_t given = 0, best = 0;
	int best_support = 0;

	for (size_t i = 0; i < k; i++) {
		verdict[i] = 0;
		given += answers[i] != NULL;
	}
	if (given < 2)
		return 0;
	for (size_t i = 0; i < k; i++) {
		int support = 0;
		if (!answers[i])
			continue;
		for (size_t j = 0; j < k; j++)
			if (answers[j] && audit_agreement(answers[i], answers[j], n) >= threshold)
				support++;
		if (support > best_support) {
			best_support = support;
			best = i;
		}
	}
	if ((size_t)best_support * 2 <= given)
		return 0;   /* no strict majority: nobody can be told wrong */
	for (size_t i = 0; i < k; i++)
		if (answers[i])
			verdict[i] = audit_agreement(answers[best], answers[i], n) >= threshold ?
			    1 : -1;
	return best_support;
}

/* ==== one audit ============================================================== */

/* A node to ask, and the name it serves the audited weights under. */
struct target {
	const char *node_id;
	const char *model;
	const char *hash;
};

static int target_cmp(const void *x, const void *y)
{
	const struct target *a = x, *b = y;
	int d = strcmp(a->hash, b->hash);

	return d ? d : strcmp(a->node_id, b->node_id);
}

/* Whether node choice could give anyone this node: live, taking jobs,
 * not suspended, verified unless the operator allows unverified nodes.
 * A suspect node is audited (it may pass again). */
static bool auditable(const coord *c, const registry_node *nd)
{
	return nd->status == NODE_IDLE && !nd->facts.suspended &&
	    (nd->facts.verified || c->allow_unverified);
}

/* A sealed job (seal.h) as troop up makes one whenever the node offers a
 * sealing key: an audit must not be the one plain request a node sees. */
struct sealing {
	bool active;
	seal_job job;
	dynbuf body;                 /* the sealed request */
	char header[200];            /* "X-Troop-Seal: ..." */
};

/* Seal `body` for ticket `rep` when its node offers a sealing key.
 * Returns 0 (sealed, or nothing to seal), or a troop_err: the node's
 * statement does not check out, and nothing is sent. */
static int seal_begin(struct sealing *s, const proto_authorize_reply *rep, const char *body,
    size_t blen)
{
	uint8_t pk[SEAL_PK_LEN];
	char v[160];
	int rc;

	memset(s, 0, sizeof(*s));
	dynbuf_init(&s->body, blen + SEAL_REQUEST_OVERHEAD + 1);
	if (!rep->seal_key[0])
		return 0;
	if ((rc = seal_statement_verify(pk, NULL, rep->seal_key, rep->node_id,
	    (int64_t)time(NULL))) != 0 ||
	    (rc = seal_client_begin(&s->job, pk)) != 0 ||
	    (rc = seal_request_seal(&s->body, &s->job, rep->job_id, rep->node_id, body,
	    blen)) != 0 ||
	    (rc = seal_header_format(v, sizeof(v), &s->job)) != 0)
		return rc;
	snprintf(s->header, sizeof(s->header), "%s: %s", SEAL_HEADER, v);
	s->active = true;
	return 0;
}

static int on_plain(void *arg, const uint8_t *data, size_t len)
{
	return dynbuf_add(arg, data, len);
}

/* The plaintext of a sealed reply[0..len) into out. */
static int seal_open_reply(dynbuf *out, const struct sealing *s, const char *reply,
    size_t len)
{
	seal_reader rd;
	int rc;

	seal_reader_init(&rd, &s->job, on_plain, out);
	rc = seal_reader_feed(&rd, reply, len);
	if (rc == 0)
		rc = seal_reader_finish(&rd);
	seal_reader_free(&rd);
	return rc;
}

static void seal_end(struct sealing *s)
{
	seal_job_wipe(&s->job);
	dynbuf_free(&s->body);
}

/* The text of a chat completion reply[0..len): choices[0].message.content
 * of one JSON object, or (stream) the choices[0].delta.content of each
 * "data:" event in order.  Malloc'd; NULL when there is none.  *tokens
 * gets the completion tokens as a client counts them: the usage the
 * engine reported, else one per content event. */
static char *answer_text(const char *reply, size_t len, bool stream, int64_t *tokens)
{
	dynbuf text;
	json_t *o = NULL;
	const char *p = reply, *end = reply + len, *s;
	char *out = NULL;
	bool any = false;

	*tokens = 0;
	if (!stream) {
		if (json_parse_object(&o, reply, len) != 0)
			return NULL;
		s = json_string_value(json_object_get(json_object_get(json_array_get(
		    json_object_get(o, "choices"), 0), "message"), "content"));
		out = s ? strdup(s) : NULL;
		*tokens = (int64_t)json_integer_value(json_object_get(json_object_get(o, "usage"),
		    "completion_tokens"));
		json_decref(o);
		return out;
	}
	dynbuf_init(&text, AUDIT_REPLY_MAX);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 6 && memcmp(p, "data: ", 6) == 0 && json_parse_object(&o, p + 6, n - 6) == 0) {
			s = json_string_value(json_object_get(json_object_get(json_array_get(
			    json_object_get(o, "choices"), 0), "delta"), "content"));
			if (s) {
				any = true;
				*tokens += s[0] != '\0';
				(void)dynbuf_add(&text, s, strlen(s));
			}
			json_decref(o);
			o = NULL;
		}
		p += n + 1;
	}
	if (any)
		out = dynbuf_take(&text, NULL);
	dynbuf_free(&text);
	return out;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The signed delivery report troop up sends for every job it authorized
 * (docs/PROTOCOL.md "Two witnesses"): what the auditor observed of job
 * `job_id`.  `resp` NULL: nothing came back.  A failure is logged only: the
 * worker's claim then settles alone after --report-wait. */
static void send_report(struct auditor *au, const char *job_id, const char *outcome,
    int64_t ms, const http_response *resp, int64_t tokens)
{
	char path[128];
	json_t *b, *reply = NULL;
	int status = 0;

	b = json_pack("{s:s, s:I, s:I, s:I, s:s}", "job_id", job_id, "duration_ms",
	    (json_int_t)(ms > 0 ? ms : 0), "bytes", (json_int_t)(resp ? resp->len : 0),
	    "completion_tokens", (json_int_t)tokens, "outcome", outcome);
	if (!b)
		return;
	if (resp && resp->len > 0) {
		unsigned char h[crypto_hash_sha256_BYTES];
		char hex[2 * crypto_hash_sha256_BYTES + 1];
		crypto_hash_sha256(h, (const unsigned char *)resp->body, resp->len);
		sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
		json_object_set_new(b, "response_digest", json_string(hex));
	}
	snprintf(path, sizeof(path), "/jobs/%s/report", job_id);
	if (http_request_signed(au->http, &status, &reply, &au->c->audit_key, "POST",
	    au->c->audit.url, path, b) != 0 || status != 200)
		log_warn("audit", "job=%s report_status=%d", job_id, status);
	json_decref(reply);
	json_decref(b);
}

/* The worker's answer to the audit request `body` through a ticket for
 * `t`: the message's text (malloc'd), or NULL (logged) when there is
 * none: the coordinator refused, the worker failed.  *no_credits is set
 * when the auditor's account cannot pay. */
static char *ask(struct auditor *au, const struct target *t, const char *body,
    size_t blen, bool stream, bool *no_credits)
{
	coord *c = au->c;
	proto_authorize_reply rep;
	http_response resp;
	json_t *req = NULL, *reply = NULL;
	char url[PROTO_IP_MAX + 64], authz[PROTO_TICKET_MAX + 32];
	const char *headers[5];
	char *answer = NULL;
	struct sealing sl;
	dynbuf plain;
	const char *outcome = NULL;   /* set once the worker was asked */
	int64_t t0, ms = 0, tokens = 0;
	int status = 0, rc = 0;

	memset(&rep, 0, sizeof(rep));
	memset(&resp, 0, sizeof(resp));
	memset(&sl, 0, sizeof(sl));
	dynbuf_init(&sl.body, 1);
	dynbuf_init(&plain, AUDIT_REPLY_MAX);
	/* a delivery report is promised (and sent), as troop up does */
	req = json_pack("{s:s, s:s, s:b}", "model", t->model, "node_id", t->node_id,
	    "delivery_report", 1);
	if (!req)
		goto out;
	rc = http_request_signed(au->http, &status, &reply, &c->audit_key, "POST",
	    c->audit.url, "/authorize", req);
	if (rc != 0 || status != 200 || proto_authorize_reply_decode(&rep, reply) != 0) {
		proto_error e;
		memset(&e, 0, sizeof(e));
		if (reply)
			(void)proto_error_decode(&e, reply);
		*no_credits |= status == 402;
		log_warn("audit", "node=%.8s authorize_status=%d error=\"%s\"", t->node_id, status,
		    rc != 0 ? troop_error_msg() : e.message);
		goto out;
	}
	snprintf(url, sizeof(url), strchr(rep.target_ip, ':') ?
	    "http://[%s]:%d/v1/chat/completions" : "http://%s:%d/v1/chat/completions",
	    rep.target_ip, rep.target_port);
	if ((rc = seal_begin(&sl, &rep, body, blen)) != 0) {
		outcome = "unreachable";   /* nothing was sent */
		log_warn("audit", "node=%.8s job=%s error=\"cannot seal: %s\"", t->node_id,
		    rep.job_id, troop_error_msg());
		goto out;
	}
	snprintf(authz, sizeof(authz), "Authorization: Bearer %s", rep.token);
	headers[0] = authz;
	headers[1] = sl.active ? "Content-Type: " SEAL_CONTENT_TYPE :
	    "Content-Type: application/json";
	headers[2] = stream ? "Accept: text/event-stream" : "Accept: application/json";
	headers[3] = sl.active ? sl.header : NULL;
	headers[4] = NULL;
	t0 = mono_ms();
	rc = http_request(au->http, &resp, "POST", url, headers,
	    sl.active ? dynbuf_ptr(&sl.body) : body, sl.active ? dynbuf_len(&sl.body) : blen);
	ms = mono_ms() - t0;
	sodium_memzero(authz, sizeof(authz));
	outcome = rc != 0 ? "unreachable" : resp.status == 401 ? "refused" :
	    resp.status != 200 ? "engine_error" : "complete";
	if (rc != 0 || resp.status != 200) {
		log_warn("audit", "node=%.8s job=%s worker_status=%d error=\"%s\"", t->node_id,
		    rep.job_id, resp.status, rc != 0 ? troop_error_msg() : "");
		goto out;
	}
	if (sl.active) {
		/* a sealed request gets a sealed reply, or it failed */
		if (seal_reply_take(&sl.job, resp.content_type) != 0 ||
		    seal_open_reply(&plain, &sl, resp.body, resp.len) != 0) {
			log_warn("audit", "node=%.8s job=%s error=\"the sealed reply did not open\"",
			    t->node_id, rep.job_id);
			goto out;
		}
		answer = answer_text(dynbuf_ptr(&plain), dynbuf_len(&plain), stream, &tokens);
	} else {
		answer = answer_text(resp.body, resp.len, stream, &tokens);
	}
	if (!answer)
		log_warn("audit", "node=%.8s job=%s error=\"the answer has no message text\"",
		    t->node_id, rep.job_id);
out:
	if (outcome)
		send_report(au, rep.job_id, outcome, ms, rc == 0 ? &resp : NULL, tokens);
	seal_end(&sl);
	sodium_memzero((void *)dynbuf_ptr(&plain), dynbuf_len(&plain));
	dynbuf_free(&plain);
	sodium_memzero(rep.token, sizeof(rep.token));
	http_response_free(&resp);
	json_decref(reply);
	json_decref(req);
	return answer;
}

/* Record node t's verdict in the ledger and in the registry's copy of its
 * facts (so that node choice sees it before the next heartbeat). */
static void record(struct auditor *au, const struct target *t, bool passed,
    const char *detail, int64_t now)
{
	coord *c = au->c;
	int64_t forfeited = 0;
	ledger_node ln;
	registry_facts f;

	if (ledger_node_audit(&forfeited, au->db, t->node_id, passed, c->audit_account,
	    detail, now) != 0) {
		log_warn("audit", "node=%.8s ledger error=\"%s\"", t->node_id, troop_error_msg());
		return;
	}
	api_nodes_facts_forget(t->node_id);
	if (passed)
		METRIC_ADD(&c->metrics, audit_pass, 1);
	else
		METRIC_ADD(&c->metrics, audit_fail, 1);
	log_info("audit", "node=%.8s result=%s forfeited=%lld %s", t->node_id,
	    passed ? "pass" : "fail", (long long)forfeited, detail);
	if (ledger_node_get(&ln, au->db, t->node_id) != 0)
		return;
	coord_node_facts(&f, c, &ln, now);
	if (registry_set_node_facts(c->reg, t->node_id, &f, now) != 0 &&
	    troop_error_last() != TROOP_ENOTFOUND)
		log_warn("audit", "node=%.8s registry error=\"%s\"", t->node_id,
		    troop_error_msg());
}

/* Ask group[0..k-1] (nodes serving the same weights) the same question
 * and judge them. */
static void audit_group(struct auditor *au, struct target *group, size_t k)
{
	coord *c = au->c;
	const char *answers[AUDIT_NODES_MAX] = { 0 };
	char *owned[AUDIT_NODES_MAX] = { 0 };
	int verdict[AUDIT_NODES_MAX];
	char detail[200];
	json_t *body;
	char *text = NULL;
	size_t blen = 0, given = 0;
	bool no_credits = false, stream;
	int majority;
	int64_t now;

	/* streamed or not, and a few more tokens than compared, as apps ask */
	stream = randombytes_uniform(2) == 0;
	body = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:I, s:i, s:b}", "model", "",
	    "messages", "role", "user", "content", prompts[randombytes_uniform(N_PROMPTS)],
	    "temperature", 0, "seed", (json_int_t)randombytes_uniform(1u << 30),
	    "max_tokens", c->audit.tokens + (int)randombytes_uniform(
	    (uint32_t)c->audit.tokens / 2 + 1), "stream", stream);
	if (!body)
		return;
	for (size_t i = 0; i < k && !atomic_load(&au->abort); i++) {
		/* each node gets the model under the name it serves it by */
		json_object_set_new(body, "model", json_string(group[i].model));
		free(text);
		text = json_dump_compact(body, &blen);
		if (!text)
			break;
		owned[i] = ask(au, &group[i], text, blen, stream, &no_credits);
		answers[i] = owned[i];
		given += owned[i] != NULL;
	}
	if (no_credits)
		log_warn("audit", "the auditor's account %s cannot pay for audits: grant it "
		    "credits ('troop admin grant')", c->audit_account);
	now = (int64_t)time(NULL);
	majority = audit_verdicts(verdict, answers, k, c->audit.tokens, c->audit.threshold);
	if (majority == 0) {
		snprintf(detail, sizeof(detail), "hash=%.80s answers=%zu of %zu: no majority",
		    group[0].hash, given, k);
		if (given >= 2) {
			METRIC_ADD(&c->metrics, audit_inconclusive, 1);
			if (ledger_audit(au->db, c->audit_account, "audit_inconclusive", detail,
			    now) != 0)
				log_warn("audit", "ledger error=\"%s\"", troop_error_msg());
		}
		log_info("audit", "result=inconclusive %s", detail);
		goto out;
	}
	for (size_t i = 0; i < k; i++) {
		double agree;
		size_t best = 0;
		if (verdict[i] == 0)
			continue;
		/* the agreement with a node of the majority, for the record */
		for (size_t j = 0; j < k; j++)
			if (verdict[j] == 1 && j != i) {
				best = j;
				break;
			}
		agree = audit_agreement(answers[i], answers[best], c->audit.tokens);
		snprintf(detail, sizeof(detail), "hash=%.80s agreement=%.2f majority=%d/%zu "
		    "compared=%d threshold=%.2f", group[i].hash, agree, majority, given,
		    c->audit.tokens, c->audit.threshold);
		record(au, &group[i], verdict[i] > 0, detail, now);
	}
out:
	for (size_t i = 0; i < k; i++)
		free(owned[i]);
	free(text);
	json_decref(body);
}

int audit_window(registry_node **out, size_t *n, registry *reg, const char *start,
    int64_t now, size_t max, unsigned with)
{
	registry_node *a = NULL, *b = NULL, *all;
	size_t na = 0, nb = 0, keep = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = registry_list_nodes(&a, &na, reg, NULL, start, now, max, with)) != 0)
		return rc;
	if (na < max && start[0] &&
	    (rc = registry_list_nodes(&b, &nb, reg, NULL, "", now, max - na, with)) != 0) {
		registry_nodes_free(a, na);
		return rc;
	}
	/* the wrapped part ends where the first part began */
	while (keep < nb && strcmp(b[keep].node_id, start) <= 0)
		keep++;
	for (size_t i = keep; i < nb; i++)
		registry_node_clear(&b[i]);
	if (keep == 0) {
		free(b);
		*out = a;
		*n = na;
		return 0;
	}
	if ((all = realloc(a, (na + keep) * sizeof(*all))) == NULL) {
		for (size_t i = 0; i < keep; i++)
			registry_node_clear(&b[i]);
		free(b);
		registry_nodes_free(a, na);
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	memcpy(all + na, b, keep * sizeof(*all));
	free(b);
	*out = all;
	*n = na + keep;
	return 0;
}

/* One round: the live nodes, grouped by content hash; one group of two
 * or more at random, at most --audit-nodes of its nodes at random. */
static void audit_round(struct auditor *au)
{
	coord *c = au->c;
	int64_t now = (int64_t)time(NULL);
	registry_node *nodes = NULL;
	struct target *t = NULL, group[AUDIT_NODES_MAX];
	size_t n = 0, nt = 0, groups = 0, pick, start = 0, len = 0;

	/* from a random point of the id space (node ids are base64url) */
	static const char b64url[] =
	    "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
	char from[9];
	for (size_t i = 0; i < sizeof(from) - 1; i++)
		from[i] = b64url[randombytes_uniform(64)];
	from[sizeof(from) - 1] = '\0';
	if (audit_window(&nodes, &n, c->reg, from, now, AUDIT_LIST_MAX,
	    REGISTRY_WITH_MODELS) != 0) {
		log_warn("audit", "registry error=\"%s\"", troop_error_msg());
		return;
	}
	for (size_t i = 0; i < n; i++)
		nt += nodes[i].n_models;
	t = nt ? calloc(nt, sizeof(*t)) : NULL;
	nt = 0;
	for (size_t i = 0; t && i < n; i++) {
		if (!auditable(c, &nodes[i]))
			continue;
		for (size_t m = 0; m < nodes[i].n_models; m++) {
			const registry_model *rm = &nodes[i].models[m];
			/* one entry per node and hash: a node serving the weights
			 * under two names is asked once */
			bool dup = false;
			if (!rm->content_hash[0])
				continue;
			for (size_t p = 0; p < m && !dup; p++)
				dup = strcmp(nodes[i].models[p].content_hash, rm->content_hash) == 0;
			if (dup)
				continue;
			t[nt++] = (struct target){ nodes[i].node_id, rm->name, rm->content_hash };
		}
	}
	if (nt == 0)
		goto out;
	qsort(t, nt, sizeof(*t), target_cmp);
	/* groups of 2+ nodes with one hash; choose one, each equally likely */
	for (size_t i = 0; i < nt; ) {
		size_t j = i + 1;
		while (j < nt && strcmp(t[j].hash, t[i].hash) == 0)
			j++;
		if (j - i >= 2 && randombytes_uniform((uint32_t)++groups) == 0) {
			start = i;
			len = j - i;
		}
		i = j;
	}
	if (groups == 0)
		goto out;
	/* a random subset of the group: a partial Fisher-Yates shuffle */
	for (pick = 0; pick < len && pick < (size_t)c->audit.max_nodes; pick++) {
		size_t r = pick + randombytes_uniform((uint32_t)(len - pick));
		struct target tmp = t[start + pick];
		t[start + pick] = t[start + r];
		t[start + r] = tmp;
		group[pick] = t[start + pick];
	}
	audit_group(au, group, pick);
out:
	free(t);
	registry_nodes_free(nodes, n);
}

/* ==== the thread ============================================================ */

static void *auditor_main(void *arg)
{
	struct auditor *au = arg;
	struct timespec next;

	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&au->mu);
	while (!au->stop) {
		next.tv_sec += au->c->audit.interval_s;
		while (!au->stop && pthread_cond_timedwait(&au->cv, &au->mu, &next) != ETIMEDOUT)
			;
		if (au->stop)
			break;
		pthread_mutex_unlock(&au->mu);
		if (au->db == NULL && ledger_conn_open(&au->db, au->c->ledger) != 0) {
			log_warn("audit", "ledger error=\"%s\"", troop_error_msg());
			au->db = NULL;
		}
		if (au->db != NULL)
			audit_round(au);
		clock_gettime(CLOCK_MONOTONIC, &next);
		pthread_mutex_lock(&au->mu);
	}
	pthread_mutex_unlock(&au->mu);
	return NULL;
}

int auditor_start(auditor **out, coord *c)
{
	struct auditor *au;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (c->audit.interval_s <= 0)
		return 0;
	au = calloc(1, sizeof(*au));
	if (!au || http_client_new(&au->http) != 0) {
		free(au);
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	au->c = c;
	http_client_set_limits(au->http, AUDIT_HTTP_TIMEOUT_MS, AUDIT_REPLY_MAX);
	http_client_set_abort(au->http, &au->abort);
	pthread_mutex_init(&au->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&au->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* leave SIGINT/SIGTERM to http_server_run, as the sweeper does */
	rc = thread_start(&au->th, auditor_main, au);
	if (rc != 0) {
		pthread_cond_destroy(&au->cv);
		pthread_mutex_destroy(&au->mu);
		http_client_free(au->http);
		free(au);
		return troop_error_set(TROOP_ERR, "cannot start the auditor thread");
	}
	*out = au;
	return 0;
}

void auditor_stop(auditor *au)
{
	if (!au)
		return;
	atomic_store(&au->abort, 1);
	pthread_mutex_lock(&au->mu);
	au->stop = true;
	pthread_cond_signal(&au->cv);
	pthread_mutex_unlock(&au->mu);
	pthread_join(au->th, NULL);
	pthread_cond_destroy(&au->cv);
	pthread_mutex_destroy(&au->mu);
	ledger_conn_close(au->db);
	http_client_free(au->http);
	free(au);
}
