/*
 * queue.h - the coordinator's wait queue for /authorize and the ticket
 * holds that keep a node's slot only while its ticket is in real use
 * (docs/ARCHITECTURE.md, "The wait queue").
 *
 * Queue: when every node serving a model is busy, a request that asked
 * to wait ("wait": seconds) joins the model's queue, an ordered set in
 * the registry (so several coordinators on one Redis share it), and is
 * parked on its server thread's event loop: no thread is held.  A timer
 * on that loop asks the registry for the entry's rank every poll
 * interval and calls the caller's `try` when the rank is below the free
 * slots the caller counts; `try` replies (a ticket, or an error) or says
 * the slot went to someone else.  Order: score = arrival (ms) minus a
 * bonus of the account's priority class (contributor +boost, ordinary 0,
 * trial-only -boost): a request's priority grows with its wait, so a
 * trial request is served before a contributor's that arrived more than
 * 2 x boost later, and nothing starves.  Bounds: entries per account and
 * in total, over them 429 with Retry-After.
 *
 * Holds: a ticket takes a slot on its node (registry active_jobs + 1) and
 * a hold that lasts --unused-ticket seconds.  The node's "started" notice
 * (POST /jobs/{id}/started) or its receipt removes the hold; a hold that
 * expires gives the slot back (active_jobs - 1), without waiting for a
 * heartbeat (a heartbeat's job count is what the node runs plus the holds
 * still live).  Tickets in flight per account are an ordered set too.
 *
 * Thread-safety: every function may be called from any server thread;
 * a parked request is only touched on its own thread's loop.
 */
#ifndef TROOP_COORD_QUEUE_H
#define TROOP_COORD_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_server.h"
#include "ledger.h"
#include "registry.h"

/* Priority classes, best first. */
enum { QUEUE_CONTRIBUTOR = 0, QUEUE_ORDINARY = 1, QUEUE_TRIAL = 2 };

typedef struct {
	int64_t max_wait;          /* largest wait a client may ask (s) */
	size_t max_total;          /* entries waiting over all models */
	size_t max_account;        /* entries waiting per account */
	int64_t boost_s;           /* priority bonus per class step (s) */
	int64_t contrib_window;    /* earnings this recent make a contributor (s) */
	int poll_ms;               /* how often a parked request looks at its rank */
	int64_t unused_ticket_s;   /* a ticket's slot comes back after this unless
	                              its job started */
	size_t max_tickets_account;/* tickets in flight per account */
	int max_jobs_gpu;          /* job slots a node verified as a GPU is given at most */
	int max_jobs_other;        /* ... any other node (CPU, unverified) */
} queue_config;

/* What a parked request calls: `try` runs on the request's loop with its
 * rank in the queue (0 = head); it returns true when it replied (the
 * request is then gone), false to keep waiting.  `expired` replies at the
 * deadline; `release` frees arg (after either, or a client gone). */
typedef struct {
	bool (*try)(void *arg, http_req *r, int64_t rank);
	void (*expired)(void *arg, http_req *r, int64_t waited_s, int64_t rank);
	void (*release)(void *arg);
	void *arg;
} queue_callbacks;

/* The priority class of `account` (ledger reads: its balance and its
 * recent transactions).  Ledger errors count as QUEUE_ORDINARY. */
int queue_priority_class(ledger_conn *db, const char *account, int64_t window_s,
    int64_t now);

/* Whether anyone waits for `model` (registry errors: no). */
bool queue_has_waiters(registry *reg, const char *model, int64_t now);

/* Park request `r` in `model`'s queue for `wait_s` seconds on behalf of
 * `account` in class `pclass`.  Returns 0 (parked: cb runs later), or
 * TROOP_ERATE with the 429 (Retry-After) already sent and cb.release
 * called, or another troop_err with nothing sent (cb.release called). */
int queue_park(const queue_config *qc, registry *reg, http_req *r, const char *model,
    const char *account, int pclass, int64_t wait_s, const queue_callbacks *cb);

/* The coordinator is stopping: every parked request of this process is
 * answered 503 unavailable at its next poll, instead of holding the
 * shutdown for its drain time.  Async-signal-safe (an atomic store). */
void queue_shutdown(void *unused);

/* Requests waiting for `model` into *waiting, and the 1-based position of
 * `account`'s latest waiting request into *position (0: none waiting).
 * Returns 0 or a registry error. */
int queue_position(int64_t *position, size_t *waiting, registry *reg, const char *account,
    const char *model, int64_t now);

/* ---- ticket holds -------------------------------------------------------- */

/* Count a new ticket: one more in flight for `account` (TROOP_ERATE past
 * max_tickets_account: nothing counted) and a hold on `node_id`'s slot
 * until now + unused_ticket_s.  `until` is when the ticket's job must be
 * over (exp + max_seconds). */
int queue_ticket_hold(const queue_config *qc, registry *reg, const char *account,
    const char *node_id, const char *jti, int64_t until, int64_t now);

/* As queue_ticket_hold for a ticket fetched ahead ("ahead" in the
 * authorize request): counted in flight for `account`, but holding no
 * slot: the node's slot is taken when the job starts
 * (queue_ticket_started finds no hold).  queue_ticket_unhold undoes it. */
int queue_ticket_ahead(const queue_config *qc, registry *reg, const char *account,
    const char *jti, int64_t until, int64_t now);

/* Undo queue_ticket_hold for a ticket never handed out. */
void queue_ticket_unhold(registry *reg, const char *account, const char *node_id,
    const char *jti);

/* The node reports job `jti` started: its hold is removed (the slot stays
 * taken).  When the hold had expired already (the slot was given back)
 * the slot is taken again.  Returns 0. */
int queue_ticket_started(const queue_config *qc, registry *reg, const char *account,
    const char *node_id, const char *jti, int64_t until, int64_t now);

/* The job's receipt arrived: no longer in flight, no hold.  Returns
 * whether its slot is still taken (give it back: active_jobs - 1); false
 * when an expired hold gave it back already.  `account` "" (unknown):
 * true. */
bool queue_ticket_done(registry *reg, const char *account, const char *node_id,
    const char *jti);

/* Tickets of `node_id` that hold a slot and have not started (0 on a
 * registry error): a heartbeat adds them to the jobs the node reports. */
size_t queue_node_holds(registry *reg, const char *node_id, int64_t now);

/* Give back the slots of holds that expired by `now` (the sweeper).
 * *released (may be NULL) gets how many. */
int queue_sweep_holds(size_t *released, registry *reg, int64_t now);

/* ---- metrics ------------------------------------------------------------- */

/* Append the queue's Prometheus lines to the malloc'd text *buf of *len
 * bytes: waiting entries per model (`models`, the n models live nodes
 * serve) and this process's waits per model.  0 or TROOP_ENOMEM. */
int queue_metrics_append(char **buf, size_t *len, registry *reg,
    const registry_model_info *models, size_t n, int64_t now);

/* Requests waiting in the shared queue now, every model (0 when the
 * registry cannot say).  For the public page's /stats. */
size_t queue_waiting_total(registry *reg, int64_t now);

#endif
