/*
 * up_seal.c - sealing a request and opening its reply in `troop up`
 * (up_seal.h).
 */
#include "up_seal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "error.h"
#include "json.h"

static void pool_refill(void);

void up_seal_init(up_seal *s, api_kind api)
{
	memset(s, 0, sizeof(*s));
	s->api = api;
	dynbuf_init(&s->body, 1);
	dynbuf_init(&s->out, UP_SEAL_REPLY_MAX);
}

void up_seal_reset(up_seal *s)
{
	api_kind api = s->api;

	if (s->active && s->from_pool)
		pool_refill();
	seal_job_wipe(&s->job);
	if (s->opening)
		seal_reader_free(&s->rd);
	dynbuf_free(&s->body);
	sodium_memzero((void *)dynbuf_ptr(&s->out), dynbuf_len(&s->out));
	dynbuf_free(&s->out);
	sodium_memzero(s, sizeof(*s));
	up_seal_init(s, api);
}

/* The statements this thread verified lately: a node's statement stays
 * the same for hours, and its Ed25519 check (50-100 us) would otherwise be
 * most of what sealing adds to a request's first byte.  troop up's
 * requests go to whichever node the coordinator picks, so one entry per
 * node of a small fleet (STMT_CACHE; the oldest entry gives way).  An
 * entry matches only the same statement for the same node id, within its
 * validity.  Per thread, so no lock. */
#define STMT_CACHE 16

static __thread struct stmt_entry {
	char stmt[SEAL_STMT_MAX];
	char node_id[64];
	uint8_t pk[SEAL_PK_LEN];
	int64_t not_after;
} verified[STMT_CACHE];
static __thread unsigned verified_next;     /* the entry to replace next */
static __thread uint64_t verified_checks;   /* Ed25519 checks made */

uint64_t up_seal_statement_checks(void)
{
	return verified_checks;
}

/* seal_statement_verify, remembering the last successes. */
static int statement_verify(uint8_t pk[SEAL_PK_LEN], const char *stmt, const char *node_id,
    int64_t now)
{
	struct stmt_entry *e;
	int64_t na = 0;
	int rc;

	for (int i = 0; i < STMT_CACHE; i++) {
		e = &verified[i];
		if (e->stmt[0] && strcmp(e->stmt, stmt) == 0 && strcmp(e->node_id, node_id) == 0 &&
		    now <= e->not_after + 60) {
			memcpy(pk, e->pk, SEAL_PK_LEN);
			return 0;
		}
	}
	verified_checks++;
	rc = seal_statement_verify(pk, &na, stmt, node_id, now);
	if (rc == 0 && strlen(stmt) < sizeof(e->stmt) && strlen(node_id) < sizeof(e->node_id)) {
		e = &verified[verified_next++ % STMT_CACHE];
		snprintf(e->stmt, sizeof(e->stmt), "%s", stmt);
		snprintf(e->node_id, sizeof(e->node_id), "%s", node_id);
		memcpy(e->pk, pk, SEAL_PK_LEN);
		e->not_after = na;
	}
	return rc;
}

/* ---- precomputed job keys ------------------------------------------------------- */

/* A job's keys cost two X25519 operations (the ephemeral key pair, then
 * the agreement with the worker's key), about 70 us here: most of what
 * sealing adds to a request's first byte.  Neither depends on the request,
 * so a thread keeps a few jobs ready for each sealing key used lately (up
 * to POOL_KEYS keys: a small fleet's nodes, which the coordinator picks in
 * turn), and makes new ones when a job ends (not when one is taken: the
 * request is then on its way, and on a small machine the worker needs the
 * CPU). */
#define POOL_KEYS 16
#define POOL_JOBS 8

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	bool on, stop;
	uint64_t clock;            /* for least recently used */
	struct pool_key {
		uint8_t pk[SEAL_PK_LEN];
		bool used;
		uint64_t last;
		int n;
		seal_job jobs[POOL_JOBS];
	} keys[POOL_KEYS];
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* The slot of key `pk`, or NULL.  Locked. */
static struct pool_key *pool_find(const uint8_t pk[SEAL_PK_LEN])
{
	for (int i = 0; i < POOL_KEYS; i++)
		if (pool.keys[i].used && sodium_memcmp(pool.keys[i].pk, pk, SEAL_PK_LEN) == 0)
			return &pool.keys[i];
	return NULL;
}

/* A slot with jobs to make, the most recently used first, or NULL.  Locked. */
static struct pool_key *pool_wanting(void)
{
	struct pool_key *best = NULL;

	for (int i = 0; i < POOL_KEYS; i++) {
		struct pool_key *k = &pool.keys[i];
		if (k->used && k->n < POOL_JOBS && (!best || k->last > best->last))
			best = k;
	}
	return best;
}

static void *pool_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pool.mu);
	while (!pool.stop) {
		struct pool_key *k = pool_wanting();
		uint8_t pk[SEAL_PK_LEN];
		seal_job j;

		if (!k) {
			pthread_cond_wait(&pool.cv, &pool.mu);
			continue;
		}
		memcpy(pk, k->pk, SEAL_PK_LEN);
		pthread_mutex_unlock(&pool.mu);
		int rc = seal_client_begin(&j, pk);
		pthread_mutex_lock(&pool.mu);
		/* the slot may have gone to another key meanwhile */
		k = rc == 0 ? pool_find(pk) : NULL;
		if (k && k->n < POOL_JOBS)
			k->jobs[k->n++] = j;
		else if (rc != 0 && (k = pool_find(pk)) != NULL)
			k->used = false;   /* an unusable key: stop trying */
		seal_job_wipe(&j);
	}
	pthread_mutex_unlock(&pool.mu);
	return NULL;
}

int up_seal_pool_start(void)
{
	int rc = 0;

	pthread_mutex_lock(&pool.mu);
	if (!pool.on) {
		pool.stop = false;
		if (pthread_create(&pool.th, NULL, pool_main, NULL) == 0)
			pool.on = true;
		else
			rc = troop_error_set(TROOP_ERR, "cannot start the sealing key thread");
	}
	pthread_mutex_unlock(&pool.mu);
	return rc;
}

void up_seal_pool_stop(void)
{
	pthread_mutex_lock(&pool.mu);
	if (!pool.on) {
		pthread_mutex_unlock(&pool.mu);
		return;
	}
	pool.stop = true;
	pthread_cond_signal(&pool.cv);
	pthread_mutex_unlock(&pool.mu);
	pthread_join(pool.th, NULL);
	pthread_mutex_lock(&pool.mu);
	pool.on = false;
	sodium_memzero(pool.keys, sizeof(pool.keys));
	pthread_mutex_unlock(&pool.mu);
}

int up_seal_pool_ready(const uint8_t pk[SEAL_PK_LEN])
{
	struct pool_key *k;
	int n;

	pthread_mutex_lock(&pool.mu);
	k = pool_find(pk);
	n = k ? k->n : 0;
	pthread_mutex_unlock(&pool.mu);
	return n;
}

/* A ready job for sealing key `pk` into *j: true when the pool had one.
 * A key not seen before gets a slot (the least recently used one's), to be
 * filled after this job. */
static bool pool_take(seal_job *j, const uint8_t pk[SEAL_PK_LEN])
{
	struct pool_key *k;
	bool got = false;

	pthread_mutex_lock(&pool.mu);
	if (!pool.on)
		goto out;
	k = pool_find(pk);
	if (!k) {
		k = &pool.keys[0];
		for (int i = 1; i < POOL_KEYS && k->used; i++)
			if (!pool.keys[i].used || pool.keys[i].last < k->last)
				k = &pool.keys[i];
		sodium_memzero(k, sizeof(*k));
		memcpy(k->pk, pk, SEAL_PK_LEN);
		k->used = true;
	}
	k->last = ++pool.clock;
	if (k->n > 0) {
		*j = k->jobs[--k->n];
		seal_job_wipe(&k->jobs[k->n]);
		got = true;
	}
out:
	pthread_mutex_unlock(&pool.mu);
	return got;
}

/* A job ended: time to make its replacement. */
static void pool_refill(void)
{
	pthread_mutex_lock(&pool.mu);
	if (pool.on)
		pthread_cond_signal(&pool.cv);
	pthread_mutex_unlock(&pool.mu);
}

/* ---- job keys kept for a worker ------------------------------------------------- */

/* Per sealing key (a worker's), the job key of a job this thread sent it:
 * `confirmed` once the worker answered that job in a256gcm2, after which
 * the next jobs reuse it (for SEAL_KEY_REUSE_S, SEAL_KEY_REUSE_JOBS jobs at
 * most).  Per thread, so no lock; STMT_CACHE entries, like the statements. */
static __thread struct kept_key {
	seal_job keys;         /* epk, seal_pk, request and response keys */
	bool used, confirmed;
	int64_t born;
	uint64_t jobs, last;
} kept[STMT_CACHE];
static __thread uint64_t kept_clock, kept_reused;

uint64_t up_seal_reused_jobs(void)
{
	return kept_reused;
}

static void kept_drop(struct kept_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

/* The entry of sealing key `pk`, or NULL; entries past their time are
 * wiped on the way (now < 0: none is). */
static struct kept_key *kept_find(const uint8_t pk[SEAL_PK_LEN], int64_t now)
{
	struct kept_key *found = NULL;

	for (int i = 0; i < STMT_CACHE; i++) {
		struct kept_key *k = &kept[i];
		if (!k->used)
			continue;
		if (now >= 0 && (now < k->born || now - k->born >= SEAL_KEY_REUSE_S)) {
			kept_drop(k);
			continue;
		}
		if (memcmp(k->keys.seal_pk, pk, SEAL_PK_LEN) == 0)
			found = k;
	}
	return found;
}

/* A confirmed key for `pk` still in its time into *j, or false. */
static bool kept_take(seal_job *j, const uint8_t pk[SEAL_PK_LEN], int64_t now)
{
	struct kept_key *k = kept_find(pk, now);

	if (!k || !k->confirmed)
		return false;
	if (k->jobs >= SEAL_KEY_REUSE_JOBS) {
		kept_drop(k);
		return false;
	}
	*j = k->keys;
	j->reply = SEAL_REPLY_GCM2;
	j->jti[0] = '\0';
	k->jobs++;
	k->last = ++kept_clock;
	kept_reused++;
	return true;
}

/* A fresh job key sent to `pk`: the candidate to keep once its reply
 * confirms (a confirmed key in its time stays). */
static void kept_offer(const seal_job *j, int64_t now)
{
	struct kept_key *k = kept_find(j->seal_pk, now);

	if (k && k->confirmed)
		return;
	if (!k) {
		k = &kept[0];
		for (int i = 1; i < STMT_CACHE && k->used; i++)
			if (!kept[i].used || kept[i].last < k->last)
				k = &kept[i];
	}
	kept_drop(k);
	k->keys = *j;
	k->keys.jti[0] = '\0';
	k->used = true;
	k->born = now;
	k->last = ++kept_clock;
}

/* Stop using job key j (its reply was refused). */
static void kept_forget(const seal_job *j)
{
	struct kept_key *k = kept_find(j->seal_pk, -1);

	if (k && memcmp(k->keys.epk, j->epk, SEAL_PK_LEN) == 0)
		kept_drop(k);
}

/* The worker answered the job with key j in a256gcm2. */
static void kept_confirm(const seal_job *j)
{
	struct kept_key *k = kept_find(j->seal_pk, -1);

	if (k && !k->confirmed && memcmp(k->keys.epk, j->epk, SEAL_PK_LEN) == 0)
		k->confirmed = true;
}

/* ---- a sealed try -------------------------------------------------------------- */

int up_seal_begin(up_seal *s, const char *stmt, const char *node_id, const char *jti,
    const void *body, size_t len, int64_t now)
{
	uint8_t pk[SEAL_PK_LEN];
	char v[UP_SEAL_HEADER_MAX - 16];
	int rc;

	up_seal_reset(s);
	rc = statement_verify(pk, stmt, node_id, now);
	if (rc == TROOP_EAUTH)
		return troop_error_set(rc, "the sealing key the coordinator gave for node %.8s is "
		    "not signed by that node (a substituted key?): the request was not sent",
		    node_id);
	if (rc == TROOP_EGONE)
		return troop_error_set(rc, "the sealing key of node %.8s is outside its validity: "
		    "the request was not sent", node_id);
	if (rc)
		return troop_error_set(TROOP_EINVAL, "the sealing key statement of node %.8s is "
		    "malformed: the request was not sent", node_id);
	dynbuf_init(&s->body, len + SEAL_REQUEST_OVERHEAD + 1);
	rc = 0;
	if (kept_take(&s->job, pk, now)) {
		s->reused = true;
	} else {
		s->from_pool = true;   /* the pool makes this key's next ones after the try */
		if (!pool_take(&s->job, pk))
			rc = seal_client_begin(&s->job, pk);
		if (rc == 0)
			kept_offer(&s->job, now);
	}
	if (rc != 0 ||
	    (rc = seal_request_seal(&s->body, &s->job, jti, node_id, body, len)) != 0 ||
	    (rc = seal_header_format(v, sizeof(v), &s->job)) != 0) {
		up_seal_reset(s);
		return troop_error_set(rc ? rc : TROOP_ERR, "cannot seal the request: %s",
		    troop_error_msg());
	}
	snprintf(s->header, sizeof(s->header), "%s: %s", SEAL_HEADER, v);
	s->active = true;
	return 0;
}

/* The value of header `name` ("Name:"), or NULL. */
static const char *header_value(const char *const *headers, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; headers && headers[i]; i++) {
		if (strncasecmp(headers[i], name, n) == 0) {
			const char *v = headers[i] + n;
			while (*v == ' ' || *v == '\t')
				v++;
			return v;
		}
	}
	return NULL;
}

int up_seal_headers(up_seal *s, int status, const char *const *headers, const char **ctype)
{
	const char *ct = header_value(headers, "Content-Type:");
	const char *orig = header_value(headers, UP_SEAL_TYPE_HEADER ":");

	*ctype = NULL;
	s->status = status;
	if (seal_reply_take(&s->job, ct) == 0) {   /* the suite the worker chose */
		if (s->reused && s->job.reply != SEAL_REPLY_GCM2) {
			/* the worker chose a256gcm2 before: the offer was altered
			 * on the way, and a reply not bound to its ticket could be
			 * another job's under the same key */
			kept_forget(&s->job);
			return troop_error_set(TROOP_EUPSTREAM, "the worker answered a job sealed "
			    "with a kept key in a suite not bound to the ticket (the offer was "
			    "altered on the way?): refused");
		}
		if (s->job.reply == SEAL_REPLY_GCM2)
			kept_confirm(&s->job);
		s->opening = true;
		s->stream = orig && strncasecmp(orig, "text/event-stream", 17) == 0 &&
		    status < 400;
		/* opened straight into what goes to the app (up_seal_transform
		 * empties it before each piece) */
		seal_reader_init_sink(&s->rd, &s->job, &s->out);
		*ctype = orig && *orig && !strpbrk(orig, "\r\n") ? orig : "application/json";
		if (status >= 400)
			*ctype = "application/json";
		return 0;
	}
	if (status >= 400)
		return 0;  /* the worker's own error: plain */
	return troop_error_set(TROOP_EUPSTREAM, "the worker answered a sealed request with an "
	    "unsealed reply");
}

/* An error reply whole, in the shape of the app's API. */
static int error_finish(up_seal *s)
{
	json_t *e = NULL;
	char *text;

	if (s->api != API_MESSAGES)
		return 0;
	if (api_error_convert(s->api, s->status, dynbuf_ptr(&s->out), dynbuf_len(&s->out),
	    &e) != 0)
		return TROOP_ENOMEM;
	text = json_dump_compact(e, NULL);
	json_decref(e);
	if (!text)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	dynbuf_reset(&s->out);
	if (dynbuf_add(&s->out, text, strlen(text)) != 0) {
		free(text);
		return TROOP_ENOMEM;
	}
	free(text);
	return 0;
}

int up_seal_transform(up_seal *s, const char *data, size_t len, bool end, const char **out,
    size_t *out_len)
{
	int rc;

	*out = NULL;
	*out_len = 0;
	if (s->out_sent) {
		dynbuf_reset(&s->out);
		s->out_sent = false;
	}
	if (!s->opening) {
		/* a plain error reply of the worker's */
		if (s->api != API_MESSAGES) {
			*out = data;
			*out_len = len;
			return 0;
		}
		if (len && dynbuf_add(&s->out, data, len) != 0)
			return troop_error_set(TROOP_ETOOLARGE, "the error reply is too large");
		if (!end || (rc = error_finish(s)) != 0)
			return end ? rc : 0;
		*out = dynbuf_ptr(&s->out);
		*out_len = dynbuf_len(&s->out);
		s->out_sent = true;
		return 0;
	}
	if (len && (rc = seal_reader_feed(&s->rd, data, len)) != 0) {
		s->failed = true;
		kept_forget(&s->job);
		return troop_error_set(rc, "the sealed reply did not open: altered, reordered or "
		    "not this job's");
	}
	if (end && seal_reader_finish(&s->rd) != 0) {
		s->failed = true;
		kept_forget(&s->job);
		return troop_error_set(TROOP_EUPSTREAM, "the sealed reply was cut short");
	}
	/* an event stream goes on as it opens; anything else only whole */
	if (!s->stream && !end)
		return 0;
	if (end && s->status >= 400 && (rc = error_finish(s)) != 0)
		return rc;
	*out = dynbuf_ptr(&s->out);
	*out_len = dynbuf_len(&s->out);
	s->out_sent = true;
	return 0;
}
