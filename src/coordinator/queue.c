/*
 * queue.c - the wait queue of /authorize and the ticket holds (queue.h).
 *
 * Registry sets (registry.h, ordered sets with expiring members):
 *   q:<model>     waiting entries of one model, score = priority (below)
 *   qa:<account>  the account's waiting entries (its bound)
 *   qall          every waiting entry (the total bound)
 *   tf:<account>  the account's tickets in flight, until their job's end
 *   holds         "<node>|<account>|<jti>" until the ticket's unused time
 *   hn:<node>     the same holds by node: jti (a heartbeat counts them)
 * Entries expire a few seconds after their deadline, so a coordinator
 * that dies leaves nothing behind for long.  A parked request polls its
 * rank; polling the shared set (rather than a wake-up message) is what
 * lets a request waiting on one coordinator take a slot that a receipt
 * freed on another one: the slot counts live in the shared registry.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "encoding.h"
#include "error.h"
#include "log.h"
#include "queue.h"

#define QUEUE_GRACE_S 5            /* entries outlive their deadline by this */
#define QUEUE_RETRY_AFTER_S 10     /* Retry-After of a full queue */
#define QUEUE_HOLDS "holds"
#define QUEUE_AHEAD "ahead"   /* tickets fetched ahead whose job has not started */
#define QUEUE_ALL "qall"
#define QUEUE_SET_BIG ((size_t)1 << 30)
#define QUEUE_TX_SCAN 100          /* transactions read to find recent earnings */
#define QUEUE_STATS_MAX 64         /* models with wait statistics */

/* ---- priority ------------------------------------------------------------------ */

int queue_priority_class(ledger_conn *db, const char *account, int64_t window_s,
    int64_t now)
{
	ledger_balance b;
	ledger_tx *rows = NULL;
	size_t n = 0;
	int64_t next = 0;
	int pclass = QUEUE_ORDINARY;

	if (ledger_transactions(&rows, &n, &next, db, account, QUEUE_TX_SCAN, 0) == 0) {
		for (size_t i = 0; i < n; i++) {
			bool earned = (strcmp(rows[i].type, "settle") == 0 ||
			    strcmp(rows[i].type, "mature") == 0) &&
			    strcmp(rows[i].worker, account) == 0 && rows[i].credits > 0;
			if (earned && rows[i].timestamp >= now - window_s) {
				pclass = QUEUE_CONTRIBUTOR;
				break;
			}
		}
		free(rows);
	}
	if (pclass == QUEUE_CONTRIBUTOR)
		return pclass;
	/* only trial credits to spend: a newcomer, or someone who never earned */
	if (ledger_balance_get(&b, db, account) == 0 && b.available <= 0 && b.trial > 0)
		return QUEUE_TRIAL;
	return QUEUE_ORDINARY;
}

/* ---- per-model wait statistics (this process) ----------------------------------- */

struct wait_stat {
	char model[REGISTRY_MODEL_MAX + 1];
	unsigned long long served, timed_out, wait_ms;
};

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wait_stat stats[QUEUE_STATS_MAX];
static size_t n_stats;

static void stat_add(const char *model, bool served, int64_t wait_ms)
{
	pthread_mutex_lock(&stats_mu);
	size_t i;
	for (i = 0; i < n_stats; i++)
		if (strcmp(stats[i].model, model) == 0)
			break;
	if (i == n_stats && n_stats < QUEUE_STATS_MAX)
		snprintf(stats[n_stats++].model, sizeof(stats[0].model), "%s", model);
	if (i < n_stats) {
		if (served)
			stats[i].served++;
		else
			stats[i].timed_out++;
		stats[i].wait_ms += (unsigned long long)(wait_ms > 0 ? wait_ms : 0);
	}
	pthread_mutex_unlock(&stats_mu);
}

/* ---- parked requests ------------------------------------------------------------ */

static atomic_bool stopping;

void queue_shutdown(void *unused)
{
	(void)unused;
	atomic_store(&stopping, true);
}

struct waiter {
	http_req *r;
	registry *reg;
	struct event *ev;
	queue_callbacks cb;
	char entry[32];
	char model[REGISTRY_MODEL_MAX + 1];
	char account[REGISTRY_ID_MAX + 1];
	int64_t started_ms, deadline_ms;
	int64_t last_rank;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_name(char *out, size_t len, const char *prefix, const char *name)
{
	snprintf(out, len, "%s%s", prefix, name);
}

static void waiter_leave(struct waiter *w)
{
	char set[REGISTRY_SET_NAME_MAX + 1];

	set_name(set, sizeof(set), "q:", w->model);
	(void)registry_set_remove(w->reg, set, w->entry);
	set_name(set, sizeof(set), "qa:", w->account);
	(void)registry_set_remove(w->reg, set, w->entry);
	(void)registry_set_remove(w->reg, QUEUE_ALL, w->entry);
}

static void waiter_free(struct waiter *w)
{
	if (w->ev)
		event_free(w->ev);
	if (w->cb.release)
		w->cb.release(w->cb.arg);
	free(w);
}

/* The client went away while waiting. */
static void waiter_closed(http_req *r, void *arg)
{
	struct waiter *w = arg;

	(void)r;
	waiter_leave(w);
	log_debug("queue", "left entry=%s model=%s (client gone)", w->entry, w->model);
	waiter_free(w);
}

static void waiter_tick(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;
	char set[REGISTRY_SET_NAME_MAX + 1];
	int64_t rank = -1, t = now_ms();
	size_t count = 0;
	int rc;

	(void)fd;
	(void)what;
	if (atomic_load(&stopping)) {
		http_req_on_close(w->r, NULL, NULL);
		waiter_leave(w);
		stat_add(w->model, false, t - w->started_ms);
		http_reply_error(w->r, TROOP_EUNAVAIL, "this coordinator is shutting down; try "
		    "again (another coordinator of the network may take the request)");
		waiter_free(w);
		return;
	}
	set_name(set, sizeof(set), "q:", w->model);
	rc = registry_set_rank(&rank, &count, w->reg, set, w->entry, t / 1000);
	if (rc == 0)
		w->last_rank = rank;
	/* an entry the registry lost (a Redis restart) waits at the back */
	if (rc == TROOP_ENOTFOUND)
		rank = w->last_rank >= 0 ? w->last_rank : 0;
	if (rc == 0 || rc == TROOP_ENOTFOUND) {
		/* a reply ends the request: no close callback after it */
		http_req_on_close(w->r, NULL, NULL);
		if (w->cb.try(w->cb.arg, w->r, rank)) {
			waiter_leave(w);
			stat_add(w->model, true, t - w->started_ms);
			waiter_free(w);
			return;
		}
		http_req_on_close(w->r, waiter_closed, w);
	}
	if (t >= w->deadline_ms) {
		http_req_on_close(w->r, NULL, NULL);
		waiter_leave(w);
		stat_add(w->model, false, t - w->started_ms);
		w->cb.expired(w->cb.arg, w->r, (t - w->started_ms + 500) / 1000, w->last_rank);
		waiter_free(w);
	}
}

bool queue_has_waiters(registry *reg, const char *model, int64_t now)
{
	char set[REGISTRY_SET_NAME_MAX + 1];
	size_t n = 0;

	set_name(set, sizeof(set), "q:", model);
	return registry_set_count(&n, reg, set, now) == 0 && n > 0;
}

int queue_park(const queue_config *qc, registry *reg, http_req *r, const char *model,
    const char *account, int pclass, int64_t wait_s, const queue_callbacks *cb)
{
	char set[REGISTRY_SET_NAME_MAX + 1], retry[16];
	unsigned char rnd[12];
	struct waiter *w = calloc(1, sizeof(*w));
	int64_t now, score, until;
	struct timeval tv;
	int rc;

	if (!w) {
		cb->release(cb->arg);
		return troop_error_set(TROOP_ENOMEM, "out of memory queueing a request");
	}
	w->r = r;
	w->reg = reg;
	w->cb = *cb;
	w->last_rank = -1;
	snprintf(w->model, sizeof(w->model), "%s", model);
	snprintf(w->account, sizeof(w->account), "%s", account);
	randombytes_buf(rnd, sizeof(rnd));
	b64url_encode(w->entry, sizeof(w->entry), rnd, sizeof(rnd));
	w->started_ms = now_ms();
	w->deadline_ms = w->started_ms + wait_s * 1000;
	now = w->started_ms / 1000;
	until = now + wait_s + QUEUE_GRACE_S;
	/* priority grows with the wait: the class only moves the start */
	score = w->started_ms - (int64_t)(1 - pclass) * qc->boost_s * 1000;

	set_name(set, sizeof(set), "qa:", account);
	rc = registry_set_add(reg, set, w->entry, 0, until, qc->max_account, now);
	if (rc == TROOP_ERATE) {
		snprintf(retry, sizeof(retry), "%d", QUEUE_RETRY_AFTER_S);
		http_reply_header(r, "Retry-After", retry);
		http_reply_error(r, TROOP_ERATE, "this account already has %zu requests waiting "
		    "in the queue (the most one account may have); try again later",
		    qc->max_account);
		waiter_free(w);
		return rc;
	}
	if (rc == 0) {
		rc = registry_set_add(reg, QUEUE_ALL, w->entry, 0, until, qc->max_total, now);
		if (rc == TROOP_ERATE) {
			set_name(set, sizeof(set), "qa:", account);
			(void)registry_set_remove(reg, set, w->entry);
			snprintf(retry, sizeof(retry), "%d", QUEUE_RETRY_AFTER_S);
			http_reply_header(r, "Retry-After", retry);
			http_reply_error(r, TROOP_ERATE, "the queue is full (%zu requests waiting); "
			    "try again later", qc->max_total);
			waiter_free(w);
			return rc;
		}
	}
	if (rc == 0) {
		set_name(set, sizeof(set), "q:", model);
		rc = registry_set_add(reg, set, w->entry, score, until, QUEUE_SET_BIG, now);
	}
	if (rc == 0 && !(w->ev = event_new(http_req_base(r), -1, EV_PERSIST, waiter_tick, w)))
		rc = troop_error_set(TROOP_ENOMEM, "out of memory queueing a request");
	if (rc != 0) {
		waiter_leave(w);
		waiter_free(w);
		return rc;
	}
	tv.tv_sec = qc->poll_ms / 1000;
	tv.tv_usec = (qc->poll_ms % 1000) * 1000;
	event_add(w->ev, &tv);
	http_req_on_close(r, waiter_closed, w);
	/* where GET /queue finds the account's latest request */
	{
		char key[REGISTRY_KV_KEY_MAX + 1];
		snprintf(key, sizeof(key), "qpos:%s:%.180s", account, model);
		(void)registry_kv_put(reg, key, w->entry, strlen(w->entry), wait_s + QUEUE_GRACE_S,
		    0, now);
	}
	log_debug("queue", "joined entry=%s model=%s account=%.8s class=%d wait=%lld", w->entry,
	    model, account, pclass, (long long)wait_s);
	return 0;
}

int queue_position(int64_t *position, size_t *waiting, registry *reg, const char *account,
    const char *model, int64_t now)
{
	char set[REGISTRY_SET_NAME_MAX + 1], key[REGISTRY_KV_KEY_MAX + 1], entry[32];
	size_t len = 0;
	int64_t rank = -1;
	int rc;

	*position = 0;
	*waiting = 0;
	set_name(set, sizeof(set), "q:", model);
	if ((rc = registry_set_count(waiting, reg, set, now)) != 0)
		return rc;
	snprintf(key, sizeof(key), "qpos:%s:%.180s", account, model);
	rc = registry_kv_get(entry, sizeof(entry) - 1, &len, reg, key, now);
	if (rc == TROOP_ENOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	entry[len] = '\0';
	rc = registry_set_rank(&rank, NULL, reg, set, entry, now);
	if (rc == 0)
		*position = rank + 1;
	return rc == TROOP_ENOTFOUND ? 0 : rc;
}

/* ---- ticket holds --------------------------------------------------------------- */

static void hold_member(char *out, size_t len, const char *node_id, const char *account,
    const char *jti)
{
	snprintf(out, len, "%s|%s|%s", node_id, account, jti);
}

/* Count ticket `jti` in flight for `account` (its set name into set):
 * 0, or TROOP_ERATE past --max-tickets. */
static int in_flight_add(char set[REGISTRY_SET_NAME_MAX + 1], const queue_config *qc,
    registry *reg, const char *account, const char *jti, int64_t until, int64_t now)
{
	int rc;

	set_name(set, REGISTRY_SET_NAME_MAX + 1, "tf:", account);
	rc = registry_set_add(reg, set, jti, 0, until, qc->max_tickets_account, now);
	if (rc == TROOP_ERATE)
		return troop_error_set(TROOP_ERATE, "this account has %zu tickets in flight "
		    "already (the most one account may hold); use or let them expire first",
		    qc->max_tickets_account);
	return rc;
}

int queue_ticket_hold(const queue_config *qc, registry *reg, const char *account,
    const char *node_id, const char *jti, int64_t until, int64_t now)
{
	char set[REGISTRY_SET_NAME_MAX + 1], m[REGISTRY_SET_MEMBER_MAX + 1];
	int rc;

	if ((rc = in_flight_add(set, qc, reg, account, jti, until, now)) != 0)
		return rc;
	hold_member(m, sizeof(m), node_id, account, jti);
	rc = registry_set_add(reg, QUEUE_HOLDS, m, 0, now + qc->unused_ticket_s, QUEUE_SET_BIG,
	    now);
	if (rc == 0) {
		char hn[REGISTRY_SET_NAME_MAX + 1];
		set_name(hn, sizeof(hn), "hn:", node_id);
		/* outlives the hold by a sweep or two: a heartbeat between the
		 * hold's expiry and the sweep that gives its slot back must still
		 * count it (the sweeper removes it) */
		rc = registry_set_add(reg, hn, jti, 0, now + qc->unused_ticket_s + QUEUE_GRACE_S,
		    QUEUE_SET_BIG, now);
		if (rc != 0)
			(void)registry_set_remove(reg, QUEUE_HOLDS, m);
	}
	if (rc != 0)
		(void)registry_set_remove(reg, set, jti);
	return rc;
}

int queue_ticket_ahead(const queue_config *qc, registry *reg, const char *account,
    const char *jti, int64_t until, int64_t now)
{
	char set[REGISTRY_SET_NAME_MAX + 1];
	int rc = in_flight_add(set, qc, reg, account, jti, until, now);

	/* marked, so that its start takes a slot and an end before any start
	 * gives none back */
	if (rc == 0 && (rc = registry_set_add(reg, QUEUE_AHEAD, jti, 0, until, QUEUE_SET_BIG,
	    now)) != 0)
		(void)registry_set_remove(reg, set, jti);
	return rc;
}

void queue_ticket_unhold(registry *reg, const char *account, const char *node_id,
    const char *jti)
{
	char set[REGISTRY_SET_NAME_MAX + 1], m[REGISTRY_SET_MEMBER_MAX + 1];

	set_name(set, sizeof(set), "tf:", account);
	(void)registry_set_remove(reg, set, jti);
	(void)registry_set_remove(reg, QUEUE_AHEAD, jti);
	hold_member(m, sizeof(m), node_id, account, jti);
	(void)registry_set_remove(reg, QUEUE_HOLDS, m);
	set_name(set, sizeof(set), "hn:", node_id);
	(void)registry_set_remove(reg, set, jti);
}

int queue_ticket_started(const queue_config *qc, registry *reg, const char *account,
    const char *node_id, const char *jti, int64_t until, int64_t now)
{
	char set[REGISTRY_SET_NAME_MAX + 1], m[REGISTRY_SET_MEMBER_MAX + 1];

	/* a ticket fetched ahead: its slot is taken now */
	if (registry_set_remove(reg, QUEUE_AHEAD, jti) == 0) {
		(void)registry_add_active_job(reg, node_id, 1);
		(void)qc;
		(void)until;
		(void)now;
		return 0;
	}
	set_name(set, sizeof(set), "hn:", node_id);
	(void)registry_set_remove(reg, set, jti);
	hold_member(m, sizeof(m), node_id, account, jti);
	if (registry_set_remove(reg, QUEUE_HOLDS, m) == TROOP_ENOTFOUND) {
		/* its slot was given back: the job runs after all, take it again */
		(void)registry_add_active_job(reg, node_id, 1);
		set_name(set, sizeof(set), "tf:", account);
		(void)registry_set_add(reg, set, jti, 0, until, QUEUE_SET_BIG, now);
	}
	(void)qc;
	return 0;
}

bool queue_ticket_done(registry *reg, const char *account, const char *node_id,
    const char *jti)
{
	char set[REGISTRY_SET_NAME_MAX + 1], m[REGISTRY_SET_MEMBER_MAX + 1];
	int rm_tf, rm_hold;

	if (!account[0])
		return true;
	set_name(set, sizeof(set), "tf:", account);
	/* a ticket fetched ahead that ended before its job started (refused
	 * by a busy worker): it never took a slot */
	if (registry_set_remove(reg, QUEUE_AHEAD, jti) == 0) {
		(void)registry_set_remove(reg, set, jti);
		return false;
	}
	rm_tf = registry_set_remove(reg, set, jti);
	hold_member(m, sizeof(m), node_id, account, jti);
	rm_hold = registry_set_remove(reg, QUEUE_HOLDS, m);
	set_name(set, sizeof(set), "hn:", node_id);
	(void)registry_set_remove(reg, set, jti);
	/* only when both are surely gone did the sweeper give the slot back */
	return !(rm_tf == TROOP_ENOTFOUND && rm_hold == TROOP_ENOTFOUND);
}

size_t queue_node_holds(registry *reg, const char *node_id, int64_t now)
{
	char set[REGISTRY_SET_NAME_MAX + 1];
	size_t n = 0;

	set_name(set, sizeof(set), "hn:", node_id);
	return registry_set_count(&n, reg, set, now) == 0 ? n : 0;
}

int queue_sweep_holds(size_t *released, registry *reg, int64_t now)
{
	char **members = NULL;
	size_t n = 0, total = 0;
	int rc;

	do {
		rc = registry_set_take_expired(&members, &n, reg, QUEUE_HOLDS, now, 256);
		for (size_t i = 0; i < n; i++) {
			char *node = members[i], *acct = strchr(node, '|'), *jti;
			if (acct && (jti = strchr(acct + 1, '|')) != NULL) {
				char set[REGISTRY_SET_NAME_MAX + 1];
				*acct++ = '\0';
				*jti++ = '\0';
				(void)registry_add_active_job(reg, node, -1);
				set_name(set, sizeof(set), "tf:", acct);
				(void)registry_set_remove(reg, set, jti);
				set_name(set, sizeof(set), "hn:", node);
				(void)registry_set_remove(reg, set, jti);
				total++;
			}
			free(members[i]);
		}
		free(members);
		members = NULL;
	} while (rc == 0 && n == 256);
	if (released)
		*released = total;
	return rc;
}

/* ---- metrics -------------------------------------------------------------------- */

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return TROOP_ENOMEM;
		if ((size_t)n < *cap - *len)
			break;
		char *nb = realloc(*buf, *cap * 2 + (size_t)n);
		if (!nb)
			return TROOP_ENOMEM;
		*buf = nb;
		*cap = *cap * 2 + (size_t)n;
	}
	*len += (size_t)n;
	return 0;
}

/* A model name as a Prometheus label value: quotes, backslashes and line
 * breaks escaped. */
static void label_escape(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 3 < len; s++) {
		if (*s == '"' || *s == '\\') {
			out[o++] = '\\';
			out[o++] = *s;
		} else if (*s == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

int queue_metrics_append(char **buf, size_t *len, registry *reg,
    const registry_model_info *models, size_t n, int64_t now)
{
	size_t cap = *len + 1;
	char label[2 * REGISTRY_MODEL_MAX + 2];
	int rc = 0;

	/* a family is written only with samples (an empty one says nothing
	 * and strict exposition checkers refuse it) */
	if (n > 0)
		rc |= append(buf, len, &cap, "# HELP troop_queue_waiting Requests waiting in "
		    "the queue for a free slot, per model.\n# TYPE troop_queue_waiting gauge\n");
	for (size_t i = 0; i < n; i++) {
		char set[REGISTRY_SET_NAME_MAX + 1];
		size_t k = 0;
		set_name(set, sizeof(set), "q:", models[i].name);
		(void)registry_set_count(&k, reg, set, now);
		label_escape(label, sizeof(label), models[i].name);
		rc |= append(buf, len, &cap, "troop_queue_waiting{model=\"%s\"} %zu\n", label, k);
	}
	pthread_mutex_lock(&stats_mu);
	if (n_stats > 0)
		rc |= append(buf, len, &cap, "# HELP troop_queue_wait_seconds_total Seconds "
		    "requests waited in this coordinator's queue, per model.\n"
		    "# TYPE troop_queue_wait_seconds_total counter\n");
	for (size_t i = 0; i < n_stats; i++) {
		label_escape(label, sizeof(label), stats[i].model);
		rc |= append(buf, len, &cap, "troop_queue_wait_seconds_total{model=\"%s\"} %.3f\n",
		    label, (double)stats[i].wait_ms / 1000.0);
	}
	if (n_stats > 0)
		rc |= append(buf, len, &cap, "# HELP troop_queue_requests_total Requests that "
		    "left this coordinator's queue, per model and outcome.\n"
		    "# TYPE troop_queue_requests_total counter\n");
	for (size_t i = 0; i < n_stats; i++) {
		label_escape(label, sizeof(label), stats[i].model);
		rc |= append(buf, len, &cap, "troop_queue_requests_total{model=\"%s\","
		    "outcome=\"served\"} %llu\n", label, stats[i].served);
		rc |= append(buf, len, &cap, "troop_queue_requests_total{model=\"%s\","
		    "outcome=\"timed_out\"} %llu\n", label, stats[i].timed_out);
	}
	pthread_mutex_unlock(&stats_mu);
	return rc ? TROOP_ENOMEM : 0;
}

size_t queue_waiting_total(registry *reg, int64_t now)
{
	size_t n = 0;

	if (registry_set_count(&n, reg, QUEUE_ALL, now) != 0)
		n = 0;
	return n;
}
