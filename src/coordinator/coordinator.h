/*
 * coordinator.h - the coordinator's shared state and the pieces its API
 * files (api_*.c) share: one `coord` per process, one `coord_thread` per
 * server thread (its own ledger connection), signature checking, and
 * reply helpers that count responses for /metrics.
 *
 * The coordinator is the control plane (DESIGN.md sections 6 and 7):
 * registration and discovery of nodes, accounts, tickets with escrow.
 * It never sees prompts or completions.
 */
#ifndef TROOP_COORDINATOR_H
#define TROOP_COORDINATOR_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "addr_policy.h"
#include "audit.h"
#include "http_server.h"
#include "identity.h"
#include "ledger.h"
#include "metrics.h"
#include "poh_pool.h"
#include "poh_state.h"
#include "queue.h"
#include "registry.h"
#include "reputation.h"
#include "ticket.h"
#include "ticket_keys.h"

#define COORD_MAX_BODY (1024 * 1024)
#define COORD_MAX_ADMINS 64
#define COORD_MAX_EXCLUDE 64
#define COORD_PEERS_MAX 1000
#define COORD_MIN_DISPUTES 3   /* disputes before --max-dispute-rate applies */
#define COORD_PEERS_REPLY_MAX (512 * 1024) /* bytes of node records in one /peers reply */

/* Who gets starter (trial) credits. */
enum { COORD_STARTER_OPEN, COORD_STARTER_INVITE, COORD_STARTER_NONE };

typedef struct {
	/* configuration, fixed after start */
	int64_t ticket_ttl;        /* seconds a ticket is valid */
	int64_t node_ttl;          /* seconds a node is live after a heartbeat */
	int64_t starter_credits;   /* trial credits for each new account (policy open)
	                              or per invite code (policy invite) */
	int starter_policy;        /* COORD_STARTER_* */
	ledger_policy policy;      /* when pending earnings become spendable */
	int64_t report_wait;       /* seconds a held receipt waits for its client's report */
	double max_dispute_rate;   /* a node past it (after COORD_MIN_DISPUTES) is not picked;
	                              0: no limit */
	double max_account_dispute_rate; /* an account past it (disputes / reports, after
	                              COORD_MIN_DISPUTES) is refused /authorize; 0: no limit */
	int64_t pending_interval;  /* seconds between releases of pending earnings */
	int64_t next_pending_release; /* the sweeper's: when it next releases them */
	double plausible_tps_gb;   /* tokens/s x model GB at multiplier 1.0 */
	double plausible_min_tps;  /* tokens/s any node may claim */
	char node_class[8];        /* class /authorize asks for by default: "" any */
	bool node_class_required;  /* the default class is required, not preferred */
	int64_t reserve_seconds;   /* default time budget an authorization pays for */
	int64_t max_seconds_cap;   /* largest max_seconds a requester may ask */
	int64_t release_grace;     /* seconds past a reservation's deadline before refund */
	bool allow_unverified;     /* may /authorize pick unverified nodes */
	int64_t anon_rate;         /* anonymous reads per source address per second (0: off) */
	int64_t account_rate;      /* /authorize per account per second (0: off) */
	int64_t authorize_addr_rate; /* /authorize per source address per second (0: off) */
	char admins[COORD_MAX_ADMINS][TROOP_ID_LEN + 1];
	size_t n_admins;
	poh_config poh;            /* proof-of-hardware parameters (--poh-*) */
	addr_policy addrs;         /* addresses a node may advertise */
	queue_config queue;        /* wait queue, ticket holds, slot caps (--queue-*,
	                              --unused-ticket, --max-tickets, --max-jobs-*) */
	audit_config audit;        /* spot checks of nodes' output (--audit-*) */
	troop_identity audit_key;  /* the auditor's account: pays for the audits */
	char audit_account[TROOP_ID_LEN + 1]; /* its id; "" when audits are off */
	int max_jobs_new;          /* slots a node is counted before it served more at
	                              once (reputation_slots); 0: no such cap */

	/* the ticket signing keys: the signer, and those published */
	ticket_keys *tkeys;
	int64_t ticket_key_lead;   /* --ticket-key-lead: a new key signs this late */

	ledger *ledger;
	registry *reg;
	poh_pool *poh_pool;        /* proof checks, off the request threads */
	coord_metrics metrics;
	time_t started;
} coord;

typedef struct {
	coord *c;
	ledger_conn *db;
	int index;
	poh_pool_port *poh_port;   /* where this thread's proof checks come back */
} coord_thread;

/* The starter credits a new account gets on first contact: the
 * configured amount under policy open, else 0. */
static inline int64_t coord_starter(const coord *c)
{
	return c->starter_policy == COORD_STARTER_OPEN ? c->starter_credits : 0;
}

/* The most output tokens per second a node of `multiplier` can produce
 * for a model of `size_bytes` (0: unknown, counted as 1 GB):
 * max(plausible_min_tps, plausible_tps_gb * multiplier / GB). */
double coord_plausible_tps(const coord *c, double multiplier, int64_t size_bytes);

/* The registry's copy of a node's durable facts, from its ledger row `ln`
 * (whether it is established is judged under c->policy at `now`), with
 * its reputation from those and the observations the registry keeps
 * (one registry read; reputation.h). */
void coord_node_facts(registry_facts *f, const coord *c, const ledger_node *ln, int64_t now);

/* The same with the observations `st` already read (NULL: none). */
void coord_node_facts_with(registry_facts *f, const coord *c, const ledger_node *ln,
    const reputation_stats *st, int64_t now);

/* The job slots node `nd` is counted by /authorize: what it reports,
 * capped by its proof of hardware's class (--max-jobs-gpu for a node
 * verified as a GPU, --max-jobs-other for any other) and, within that
 * cap, by what it has served well (--max-jobs-new; reputation_slots).  0:
 * no limit reported (one slot counted).  Thread-safe. */
int coord_node_slots(const coord *c, const registry_node *nd);

static inline coord_thread *coord_thread_of(http_req *r)
{
	return (coord_thread *)http_req_thread_ctx(r);
}

/* Check the request's RFC 9421 signature (DESIGN.md section 4), with the
 * registry as nonce store.  On success writes the signer's account id into
 * `account` and returns 0; otherwise the 401 has been sent and a troop_err
 * is returned: the handler must return without touching the request. */
int coord_authenticate(http_req *r, char account[TROOP_ID_LEN + 1]);

/* Count one anonymous read (/peers, /v1/models, /nodes/{id}, the public
 * key) against the request's source address: at most anon_rate a second.
 * Returns 0, or TROOP_ERATE with a 429 and Retry-After already sent. */
int coord_anon_allowed(http_req *r);

/* The request must be signed by one of the coordinator's --admin keys:
 * 0 (signer filled), or -1 with the 401/403 already sent. */
int coord_admin_signer(http_req *r, coord *c, char signer[TROOP_ID_LEN + 1]);

/* /authorize's check of the signed `account`'s standing (api_admin.c):
 * the source address's rate (--authorize-address-limit), one ledger read,
 * then the account's rate limit (its own, else --account-rate-limit), the
 * rates counted in the registry, shared by every coordinator.  Returns 0, or a troop_err
 * with the reply sent (403 for a suspended account, 429 with Retry-After
 * past its rate). */
int coord_account_allowed(http_req *r, const char *account);

/* Send `body` (stolen) / an error, counting the status class for /metrics. */
void coord_reply_json(http_req *r, int status, json_t *body);
/* Send `len` bytes of `body` (the caller keeps it) as `content_type`,
 * counted as coord_reply_json counts. */
void coord_reply_text(http_req *r, int status, const char *content_type, const char *body,
    size_t len);
void coord_reply_error(http_req *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Reply with the thread's last troop error (troop_error_last/msg). */
void coord_reply_last_error(http_req *r, int err);

/* Start the auditor of `c` (audit.h) on a thread of its own, with its own
 * ledger connection, auditing as c->audit_key; with c->audit.interval_s 0
 * nothing starts and *out is NULL.  Returns 0 or TROOP_ERR (no thread).
 * `c` must outlive it. */
int auditor_start(auditor **out, coord *c);

/* Stop the auditor (a round in progress ends within about a second: its
 * HTTP calls are aborted) and free it.  NULL is fine. */
void auditor_stop(auditor *a);

/* Route tables of each API file. */
void api_meta_routes(http_server *s, coord *c);
/* Drop the cached /leaderboard answer (a display name changed): the next
 * read goes to the ledger.  Thread-safe. */
void api_meta_board_forget(void);
/* Stop serving cached /peers replies (api_nodes.c): this process changed
 * what they list (a node's facts, a node gone).  Thread-safe. */
void api_nodes_peers_forget(void);
/* Node `node_id`'s ledger row changed (NULL: the rows of any nodes): its
 * next heartbeat reads it again (api_nodes.c keeps the row a heartbeat
 * read for the next ones).  Call it after the change is committed.
 * Thread-safe. */
void api_nodes_facts_forget(const char *node_id);
/* registry_models for /v1/models and /metrics: read afresh while the
 * registry holds fewer than API_MODELS_CACHE_NODES live nodes; above that
 * (where it is a pass over every node: 85 ms at 1M nodes, which would hold
 * up every connection of the event loop that ran it) the list the sweeper
 * thread read (api_nodes_models_refresh, every few seconds), at most
 * API_MODELS_CACHE_S old, else read here once.  *out: free() it.
 * Thread-safe. */
#define API_MODELS_CACHE_NODES 10000
#define API_MODELS_CACHE_S 5
int api_nodes_models(registry_model_info **out, size_t *n, registry *reg, int64_t now);
/* Read the model list for api_nodes_models when the registry is that
 * large and the list was asked for in the last API_MODELS_WANTED_S (the
 * sweeper thread, off the request threads).  Thread-safe. */
#define API_MODELS_WANTED_S 60
void api_nodes_models_refresh(registry *reg, int64_t now);
void api_nodes_routes(http_server *s, coord *c);
void api_credits_routes(http_server *s, coord *c);
void api_jobs_routes(http_server *s, coord *c);
void api_hardware_routes(http_server *s, coord *c);
void api_queue_routes(http_server *s, coord *c);
void api_admin_routes(http_server *s, coord *c);

#endif
