/*
 * coordinator.c - `troop coordinator`: parse the configuration, open the
 * ledger and the registry, load or create the ticket signing key, and
 * serve the API on the HTTP server's threads (one ledger connection per
 * thread).  The periodic work (the sweeper: expired reservations released
 * and expired registry entries dropped every few seconds) runs on a thread
 * of its own with its own ledger connection, so that nothing that can
 * block for seconds (SQLite busy retries, a Redis reconnect) runs on an
 * event loop that serves requests; it stops before the ledger and the
 * registry close.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "commands.h"
#include "config.h"
#include "coordinator.h"
#include "encoding.h"
#include "error.h"
#include "log.h"
#include "thread.h"

#define SWEEP_INTERVAL_S 2
#define KV_TICKET_KEY "ticket_signing_key"

static const config_opt coord_opts[] = {
	{ "listen", 'l', OPT_STRING, "TROOP_COORDINATOR_LISTEN", NULL, "0.0.0.0:8420", "ADDR:PORT",
	  "address to serve the API on", 0, 0 },
	{ "data-dir", 'd', OPT_STRING, "TROOP_DATA_DIR", NULL, NULL, "DIR",
	  "directory for the SQLite ledger and the coordinator key "
	  "(default: $TROOP_HOME/coordinator)", 0, 0 },
	{ "database-url", 0, OPT_STRING, "TROOP_DATABASE_URL", "DATABASE_URL", NULL, "URL",
	  "ledger URL (default: sqlite:DATA_DIR/ledger.db)", 0, 0 },
	{ "registry-url", 0, OPT_STRING, "TROOP_REDIS_URL", "REDIS_URL", NULL, "URL",
	  "live registry URL (default: in-process)", 0, 0 },
	{ "ticket-key", 0, OPT_STRING, "TROOP_TICKET_KEY", NULL, NULL, "FILE",
	  "ticket signing key file (default: DATA_DIR/coordinator.key)", 0, 0 },
	{ "ticket-ttl", 0, OPT_INT, "TROOP_TICKET_TTL", NULL, "300", "SECONDS",
	  "how long a ticket stays valid", 2, 86400 },
	{ "ticket-key-lead", 0, OPT_INT, "TROOP_TICKET_KEY_LEAD", NULL, "120", "SECONDS",
	  "after a rotation (troop admin rotate-ticket-key), how long the new key is "
	  "published before it signs: longer than workers' heartbeat interval", 0, 86400 },
	{ "release-grace", 0, OPT_INT, "TROOP_RELEASE_GRACE", NULL, "60", "SECONDS",
	  "how long after a job's deadline an unpaid reservation is refunded", 0, 86400 },
	{ "node-ttl", 0, OPT_INT, "TROOP_NODE_TTL", NULL, "30", "SECONDS",
	  "how long a node stays live after a heartbeat", 2, 3600 },
	{ "starter-credits", 0, OPT_INT, "TROOP_STARTER_CREDITS", "STARTER_CREDITS", "3600",
	  "CREDITS", "trial credit-seconds granted once to each new account (policy open) "
	  "or per invite code (policy invite)", 0, 1e12 },
	{ "starter-policy", 0, OPT_STRING, "TROOP_STARTER_POLICY", NULL, "open", "POLICY",
	  "who gets starter credits: open (every new account), invite (an admin-issued "
	  "invite code), none", 0, 0 },
	{ "establish-age", 0, OPT_INT, "TROOP_ESTABLISH_AGE", NULL, "604800", "SECONDS",
	  "a node's earnings paid from trial credits stay pending until it is this old ...",
	  0, 1e9 },
	{ "establish-payers", 0, OPT_INT, "TROOP_ESTABLISH_PAYERS", NULL, "3", "N",
	  "... and this many distinct accounts paid it with ordinary credits", 0, 1e6 },
	{ "trial-daily-cap", 0, OPT_INT, "TROOP_TRIAL_DAILY_CAP", NULL, "3600", "CREDITS",
	  "pending earnings released per node owner per UTC day", 0, 1e12 },
	{ "report-wait", 0, OPT_INT, "TROOP_REPORT_WAIT", NULL, "60", "SECONDS",
	  "how long a receipt of a job whose client promised a delivery report waits for "
	  "it before the worker's claim settles alone", 0, 86400 },
	{ "pending-interval", 0, OPT_INT, "TROOP_PENDING_INTERVAL", NULL, "60", "SECONDS",
	  "how often pending earnings of established nodes are released", 1, 86400 },
	{ "max-dispute-rate", 0, OPT_DOUBLE, "TROOP_MAX_DISPUTE_RATE", NULL, "0", "RATE",
	  "/authorize stops picking a node once this share of its settled jobs were "
	  "disputes (it billed more than its client saw), after at least 3 disputes "
	  "(0: never)", 0, 1 },
	{ "max-account-dispute-rate", 0, OPT_DOUBLE, "TROOP_MAX_ACCOUNT_DISPUTE_RATE", NULL, "0",
	  "R", "/authorize refuses (403) an account once this share of its delivery "
	  "reports were disputes (it reported less time than the tokens it received "
	  "need), after at least 3 disputes (0: never)", 0, 1 },
	{ "plausible-tps-gb", 0, OPT_DOUBLE, "TROOP_PLAUSIBLE_TPS_GB", NULL, "1000", "N",
	  "receipts: output tokens/s times model size in GB that a node of multiplier 1.0 "
	  "can reach (more is capped)", 1, 1e9 },
	{ "plausible-min-tps", 0, OPT_DOUBLE, "TROOP_PLAUSIBLE_MIN_TPS", NULL, "20", "N",
	  "receipts: output tokens/s any node may claim whatever its class", 0, 1e9 },
	{ "node-class", 0, OPT_STRING, "TROOP_NODE_CLASS", NULL, "any", "CLASS",
	  "hardware class /authorize prefers when the client names none: any, gpu, cpu",
	  0, 0 },
	{ "node-class-required", 0, OPT_BOOL, "TROOP_NODE_CLASS_REQUIRED", NULL, NULL, NULL,
	  "--node-class is required (a node verified for another class is not picked)",
	  0, 0 },
	{ "reserve-seconds", 0, OPT_INT, "TROOP_RESERVE_SECONDS", NULL, "300", "SECONDS",
	  "time budget an authorization reserves when the client names none", 1, 86400 },
	{ "max-seconds", 0, OPT_INT, "TROOP_MAX_SECONDS", NULL, "3600", "SECONDS",
	  "largest time budget a client may ask for", 1, 86400 },
	{ "admin", 0, OPT_LIST, "TROOP_ADMIN", NULL, NULL, "ACCOUNT",
	  "account id allowed to call the /admin endpoints ('troop admin')", 0, 0 },
	{ "allow-addresses", 0, OPT_LIST, "TROOP_ALLOW_ADDRESSES", NULL, NULL, "CIDR,...",
	  "address ranges nodes may advertise besides the tailnet's (and loopback when "
	  "--listen is loopback)", 0, 0 },
	{ "allow-unverified", 0, OPT_BOOL, "TROOP_ALLOW_UNVERIFIED", NULL, NULL, NULL,
	  "let /authorize pick nodes without a proof-of-hardware", 0, 0 },
	{ "poh-matrix-size", 0, OPT_INT, "TROOP_POH_MATRIX_SIZE", NULL, "8192", "N",
	  "proof-of-hardware: matrix size of a GPU-class challenge", 16, 16384 },
	{ "poh-rounds", 0, OPT_INT, "TROOP_POH_ROUNDS", NULL, "32", "N",
	  "proof-of-hardware: rounds of a GPU-class challenge", 1, 4096 },
	{ "poh-cpu-matrix-size", 0, OPT_INT, "TROOP_POH_CPU_MATRIX_SIZE", NULL, "512", "N",
	  "proof-of-hardware: matrix size of a CPU-class challenge", 16, 16384 },
	{ "poh-cpu-rounds", 0, OPT_INT, "TROOP_POH_CPU_ROUNDS", NULL, "32", "N",
	  "proof-of-hardware: rounds of a CPU-class challenge", 1, 4096 },
	{ "poh-samples", 0, OPT_INT, "TROOP_POH_SAMPLES", NULL, "16", "K",
	  "proof-of-hardware: rows checked per proof (a cheat on half the rows passes "
	  "with odds 2^-K)", 1, 256 },
	{ "poh-reference-ops", 0, OPT_DOUBLE, "TROOP_POH_REFERENCE_OPS", NULL, "5e13", "OPS",
	  "proof-of-hardware: ops/s that earn multiplier 1.0 (the reference GPU)", 1, 1e18 },
	{ "poh-rate-limit", 0, OPT_INT, "TROOP_POH_RATE_LIMIT", NULL, "600", "SECONDS",
	  "proof-of-hardware: one challenge per node per this many seconds (0: no limit)",
	  0, 604800 },
	{ "poh-challenge-ttl", 0, OPT_INT, "TROOP_POH_CHALLENGE_TTL", NULL, "120", "SECONDS",
	  "proof-of-hardware: time allowed from challenge to root, and from root to reveal",
	  1, 3600 },
	{ "max-nonces", 0, OPT_INT, "TROOP_MAX_NONCES", NULL, "0", "N",
	  "signature nonces remembered at once, each for 121 s: the cap / 121 is the signed "
	  "requests per second the troop takes; one signer may hold 1/20 of them and one "
	  "source address 1/4 (0: a quarter of this machine's memory at 256 bytes a nonce, "
	  "at least 1000000; with Redis 1000000)", 0, 1e9 },
	{ "max-nodes", 0, OPT_INT, "TROOP_MAX_NODES", NULL, "0", "N",
	  "live nodes the registry keeps; a heartbeat of a new node beyond them is refused "
	  "(503) (0: a quarter of this machine's memory at 512 bytes a node, at least "
	  "1100000)", 0, 1e9 },
	{ "max-kv", 0, OPT_INT, "TROOP_MAX_KV", NULL, "0", "N",
	  "live key/value entries the registry keeps: nodes' reputation, proof-of-hardware "
	  "challenges, queue entries, reports seen; beyond them such state is not kept "
	  "(0: two per node of --max-nodes, at least 100000)", 0, 1e10 },
	{ "poh-check-workers", 0, OPT_INT, "TROOP_POH_CHECK_WORKERS", NULL, "1", "N",
	  "proof-of-hardware: reveals checked at once, on threads of their own", 1, 64 },
	{ "poh-check-queue", 0, OPT_INT, "TROOP_POH_CHECK_QUEUE", NULL, "8", "N",
	  "proof-of-hardware: reveals waiting for a check; more are answered 429", 1, 4096 },
	{ "poh-min-node-age", 0, OPT_INT, "TROOP_POH_MIN_NODE_AGE", NULL, "30", "SECONDS",
	  "proof-of-hardware: how long a node must have heartbeated before a challenge",
	  0, 86400 },
	{ "poh-owner-limit", 0, OPT_INT, "TROOP_POH_OWNER_LIMIT", NULL, "4", "N",
	  "proof-of-hardware: challenges per owner account per --poh-rate-limit window "
	  "(0: no limit)", 0, 1000000 },
	{ "poh-address-limit", 0, OPT_INT, "TROOP_POH_ADDRESS_LIMIT", NULL, "4", "N",
	  "proof-of-hardware: challenges per source address per --poh-rate-limit window "
	  "(0: no limit)", 0, 1000000 },
	{ "anon-rate-limit", 0, OPT_INT, "TROOP_ANON_RATE_LIMIT", NULL, "50", "N",
	  "anonymous reads (/peers, /v1/models, /nodes/ID, /public-key) per source address "
	  "per second; more get 429 with Retry-After (0: no limit)", 0, 1000000 },
	{ "max-wait", 0, OPT_INT, "TROOP_MAX_WAIT", NULL, "600", "SECONDS",
	  "longest wait in the queue a client may ask for when every node is busy", 0, 600 },
	{ "queue-max", 0, OPT_INT, "TROOP_QUEUE_MAX", NULL, "1000", "N",
	  "requests waiting in the queue at once, all accounts (more: 429)", 1, 1000000 },
	{ "queue-max-account", 0, OPT_INT, "TROOP_QUEUE_MAX_ACCOUNT", NULL, "8", "N",
	  "requests of one account waiting in the queue at once (more: 429)", 1, 100000 },
	{ "queue-boost", 0, OPT_INT, "TROOP_QUEUE_BOOST", NULL, "60", "SECONDS",
	  "queue priority: a contributor's request goes ahead of an ordinary one that "
	  "came this much earlier, an ordinary one ahead of a trial-only one likewise", 0, 86400 },
	{ "contributor-window", 0, OPT_INT, "TROOP_CONTRIBUTOR_WINDOW", NULL, "604800", "SECONDS",
	  "an account that earned credits this recently is a contributor (queue priority)",
	  1, 1e9 },
	{ "queue-poll-ms", 0, OPT_INT, "TROOP_QUEUE_POLL_MS", NULL, "100", "MS",
	  "how often a waiting request looks for a free slot", 10, 5000 },
	{ "unused-ticket", 0, OPT_INT, "TROOP_UNUSED_TICKET", NULL, "5", "SECONDS",
	  "a ticket holds its node's slot this long unless the node reports its job "
	  "started", 1, 3600 },
	{ "max-tickets", 0, OPT_INT, "TROOP_MAX_TICKETS", NULL, "128", "N",
	  "tickets one account may hold in flight (issued, job not over)", 1, 1000000 },
	{ "max-jobs-gpu", 0, OPT_INT, "TROOP_MAX_JOBS_GPU", NULL, "64", "N",
	  "job slots counted at most for a node verified as a GPU, whatever it reports "
	  "(0: no cap)", 0, 1000000 },
	{ "max-jobs-other", 0, OPT_INT, "TROOP_MAX_JOBS_OTHER", NULL, "16", "N",
	  "job slots counted at most for any other node (CPU-class or unverified) "
	  "(0: no cap)", 0, 1000000 },
	{ "max-jobs-new", 0, OPT_INT, "TROOP_MAX_JOBS_NEW", NULL, "16", "N",
	  "job slots counted at most for a node until it has served more jobs at once "
	  "well; it earns twice the most it served well, within --max-jobs-gpu/-other "
	  "(0: not capped by what it served)", 0, 1000000 },
	{ "account-rate-limit", 0, OPT_INT, "TROOP_ACCOUNT_RATE_LIMIT", NULL, "0", "N",
	  "/authorize requests per account per second, shared through the registry; more "
	  "get 429 with Retry-After (0: no limit; 'troop admin rate-limit' sets one "
	  "account's own)", 0, 1000000 },
	{ "authorize-address-limit", 0, OPT_INT, "TROOP_AUTHORIZE_ADDRESS_LIMIT", NULL, "0", "N",
	  "/authorize requests per source address per second, shared through the registry; "
	  "more get 429 with Retry-After (0: no limit)", 0, 1000000 },
	{ "audit-interval", 0, OPT_INT, "TROOP_AUDIT_INTERVAL", NULL, "900", "SECONDS",
	  "audits (docs/AUDITS.md): seconds between spot checks of the nodes serving one "
	  "model's weights; each costs the nodes' time, paid by the auditor's account "
	  "(0: no audits)", 0, 1e9 },
	{ "audit-tokens", 0, OPT_INT, "TROOP_AUDIT_TOKENS", NULL, "32", "N",
	  "audits: tokens of each answer compared", 1, AUDIT_TOKENS_MAX },
	{ "audit-threshold", 0, OPT_DOUBLE, "TROOP_AUDIT_THRESHOLD", NULL, "0.9", "SHARE",
	  "audits: share of the compared tokens two answers must have in common to agree",
	  0, 1 },
	{ "audit-nodes", 0, OPT_INT, "TROOP_AUDIT_NODES", NULL, "3", "N",
	  "audits: nodes asked the same question in one audit", 2, AUDIT_NODES_MAX },
	{ "audit-key", 0, OPT_STRING, "TROOP_AUDIT_KEY", NULL, NULL, "FILE",
	  "audits: the auditor's account key, created if missing; its account pays for "
	  "the audits ('troop admin grant' it credits) (default: DATA_DIR/auditor.key)", 0, 0 },
	{ "ledger-batch", 0, OPT_INT, "TROOP_LEDGER_BATCH", NULL, "64", "N",
	  "group commit: reservations and settlements waiting at once are written in one "
	  "ledger transaction, at most this many (0: each in its own)", 0, 4096 },
	{ "threads", 't', OPT_INT, "TROOP_COORDINATOR_THREADS", NULL, "0", "N",
	  "server threads (0: one per core; on a SQLite ledger with --ledger-batch, 16 per "
	  "core up to 64: a reservation waits for its group commit on its thread, and the "
	  "writer batches what waits)",
	  0, 256 },
	{ "log-level", 0, OPT_STRING, "TROOP_LOG_LEVEL", NULL, "info", "LEVEL",
	  "debug, info, warn or error", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

double coord_plausible_tps(const coord *c, double multiplier, int64_t size_bytes)
{
	double gb = (double)size_bytes / 1e9;
	double tps;

	if (gb < 1.0)
		gb = 1.0;
	tps = c->plausible_tps_gb * multiplier / gb;
	return tps > c->plausible_min_tps ? tps : c->plausible_min_tps;
}

void coord_node_facts(registry_facts *f, const coord *c, const ledger_node *ln, int64_t now)
{
	reputation_stats st;

	/* a registry error leaves the observations out: neutral */
	coord_node_facts_with(f, c, ln, reputation_get(&st, c->reg, ln->node_id, now) == 0 ?
	    &st : NULL, now);
}

void coord_node_facts_with(registry_facts *f, const coord *c, const ledger_node *ln,
    const reputation_stats *st, int64_t now)
{
	memset(f, 0, sizeof(*f));
	f->multiplier = ln->multiplier;
	f->verified = ln->verified;
	f->verified_at = ln->verified_at;
	f->reputation = ln->reputation;
	snprintf(f->hw_class, sizeof(f->hw_class), "%s", ln->hw_class);
	f->established = ledger_node_established(ln, &c->policy, now);
	f->pending = ln->pending;
	f->disputes = ln->disputes;
	f->jobs = ln->jobs_ok + ln->jobs_failed;
	f->suspended = ln->suspended != 0;
	f->suspect = ln->suspect != 0;
	f->audits_passed = ln->audits_passed;
	f->audits_failed = ln->audits_failed;
	{
		/* the reputation: the ledger's counts and the registry's stats */
		reputation_inputs in = { .jobs_ok = ln->jobs_ok, .jobs_failed = ln->jobs_failed,
			.disputes = ln->disputes, .audits_passed = ln->audits_passed,
			.audits_failed = ln->audits_failed, .stats = st };
		reputation_fill(f, &in);
	}
}

int coord_node_slots(const coord *c, const registry_node *nd)
{
	int cap = nd->facts.verified && strcmp(nd->facts.hw_class, "gpu") == 0 ?
	    c->queue.max_jobs_gpu : c->queue.max_jobs_other;

	return reputation_slots(nd->max_jobs, cap, c->max_jobs_new, nd->facts.served_jobs);
}

/* ---- the sweeper thread ------------------------------------------------------- */

struct sweeper {
	coord *c;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;     /* signalled to stop */
	bool stop;
	bool running;
};

static void sweep_once(coord *c, ledger_conn *db)
{
	int64_t now = (int64_t)time(NULL), released = 0, settled = 0;
	size_t removed = 0;

	/* a rotation made by another coordinator sharing the ledger */
	if (ticket_keys_reload(c->tkeys, db) != 0)
		log_warn("sweep", "ticket keys error=\"%s\"", troop_error_msg());

	if (ledger_release_expired(&released, db, now, c->release_grace) != 0)
		log_warn("sweep", "error=\"%s\"", troop_error_msg());
	else if (released > 0) {
		METRIC_ADD(&c->metrics, released, (unsigned long long)released);
		log_info("sweep", "released=%lld", (long long)released);
	}
	/* held receipts whose client never reported: the worker's claim */
	if (ledger_settle_claims(&settled, db, now, c->report_wait) != 0)
		log_warn("sweep", "claims error=\"%s\"", troop_error_msg());
	else if (settled > 0) {
		log_info("sweep", "claims_settled=%lld", (long long)settled);
		api_nodes_facts_forget(NULL);
	}
	/* pending earnings of established nodes: a scan, so less often */
	if (now >= c->next_pending_release) {
		int64_t credits = 0;
		c->next_pending_release = now + c->pending_interval;
		if (ledger_release_pending(&credits, db, now, &c->policy) != 0)
			log_warn("sweep", "pending error=\"%s\"", troop_error_msg());
		else if (credits > 0) {
			log_info("sweep", "pending_released=%lld", (long long)credits);
			api_nodes_facts_forget(NULL);
		}
	}
	/* tickets unused past --unused-ticket: their slots come back */
	{
		size_t holds = 0;
		if (queue_sweep_holds(&holds, c->reg, now) != 0)
			log_warn("sweep", "holds error=\"%s\"", troop_error_msg());
		else if (holds > 0)
			log_info("sweep", "unused_tickets=%zu", holds);
	}
	if (registry_sweep(&removed, c->reg, now) != 0)
		log_warn("sweep", "registry error=\"%s\"", troop_error_msg());
	/* /v1/models' list, for a registry where reading it is long */
	api_nodes_models_refresh(c->reg, now);
}

/* Every SWEEP_INTERVAL_S until told to stop.  The ledger connection is
 * opened here (and again after a failure to open it), used by this
 * thread alone. */
static void *sweeper_main(void *arg)
{
	struct sweeper *sw = arg;
	ledger_conn *db = NULL;
	struct timespec next;

	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&sw->mu);
	while (!sw->stop) {
		next.tv_sec += SWEEP_INTERVAL_S;
		while (!sw->stop && pthread_cond_timedwait(&sw->cv, &sw->mu, &next) != ETIMEDOUT)
			;
		if (sw->stop)
			break;
		pthread_mutex_unlock(&sw->mu);
		if (db == NULL && ledger_conn_open(&db, sw->c->ledger) != 0) {
			log_warn("sweep", "ledger error=\"%s\"", troop_error_msg());
			db = NULL;
		}
		if (db != NULL)
			sweep_once(sw->c, db);
		clock_gettime(CLOCK_MONOTONIC, &next);
		pthread_mutex_lock(&sw->mu);
	}
	pthread_mutex_unlock(&sw->mu);
	ledger_conn_close(db);
	return NULL;
}

/* Start the sweeper.  Returns 0 or TROOP_ENOMEM / TROOP_ERR (no thread). */
static int sweeper_start(struct sweeper *sw, coord *c)
{
	pthread_condattr_t ca;
	int rc;

	memset(sw, 0, sizeof(*sw));
	sw->c = c;
	pthread_mutex_init(&sw->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sw->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* like the server's threads, leave SIGINT/SIGTERM to http_server_run */
	rc = thread_start(&sw->th, sweeper_main, sw);
	if (rc != 0)
		return troop_error_set(TROOP_ERR, "cannot start the sweeper thread");
	sw->running = true;
	return 0;
}

/* Stop the sweeper (waiting for a sweep in progress) and free it.  Safe
 * on one that never started. */
static void sweeper_stop(struct sweeper *sw)
{
	if (!sw->running)
		return;
	pthread_mutex_lock(&sw->mu);
	sw->stop = true;
	pthread_cond_signal(&sw->cv);
	pthread_mutex_unlock(&sw->mu);
	pthread_join(sw->th, NULL);
	pthread_cond_destroy(&sw->cv);
	pthread_mutex_destroy(&sw->mu);
	sw->running = false;
}

/* ---- server threads --------------------------------------------------------------- */

static int thread_init(void *arg, int index, struct event_base *base, void **tctx)
{
	coord *c = arg;
	coord_thread *t = calloc(1, sizeof(*t));

	(void)base;
	if (!t)
		return TROOP_ENOMEM;
	t->c = c;
	t->index = index;
	if (poh_pool_port_new(&t->poh_port, c->poh_pool, base) != 0) {
		free(t);
		return TROOP_ENOMEM;
	}
	if (ledger_conn_open(&t->db, c->ledger) != 0) {
		log_error("ledger", "error=\"%s\"", troop_error_msg());
		poh_pool_port_free(t->poh_port);
		free(t);
		return TROOP_EUNAVAIL;
	}
	*tctx = t;
	return 0;
}

static void thread_fini(void *arg, void *tctx)
{
	coord_thread *t = tctx;

	(void)arg;
	if (!t)
		return;
	poh_pool_port_free(t->poh_port);  /* before the base goes */
	ledger_conn_close(t->db);
	free(t);
}

/* ---- the signing key ------------------------------------------------------------ */

/* Shared ledgers (PostgreSQL) keep the key in the ledger so that every
 * coordinator of a network signs with it (first one to start creates it);
 * the embedded default keeps it as a key file in the data directory. */
static int load_key_from_ledger(troop_identity *key, coord *c)
{
	ledger_conn *db = NULL;
	char text[256];
	unsigned char sk[TROOP_SK_LEN];
	size_t sklen = 0;
	int rc;

	if ((rc = ledger_conn_open(&db, c->ledger)) != 0)
		return rc;
	if ((rc = identity_generate(key)) != 0)
		goto out;
	b64_encode(text, sizeof(text), key->sk, sizeof(key->sk));
	rc = ledger_kv_put_if_absent(NULL, db, KV_TICKET_KEY, text, (int64_t)time(NULL));
	sodium_memzero(text, sizeof(text));
	if (rc != 0)
		goto out;
	if ((rc = ledger_kv_get(text, sizeof(text), NULL, db, KV_TICKET_KEY)) != 0)
		goto out;
	if (b64_decode(sk, sizeof(sk), &sklen, text, strlen(text)) != 0 || sklen != TROOP_SK_LEN) {
		rc = troop_error_set(TROOP_EINVAL, "the ticket key stored in the ledger is corrupt");
		goto out;
	}
	memcpy(key->sk, sk, sizeof(sk));
	memcpy(key->pk, sk + 32, TROOP_PK_LEN);
	account_id_encode(key->id, key->pk);
out:
	sodium_memzero(text, sizeof(text));
	sodium_memzero(sk, sizeof(sk));
	ledger_conn_close(db);
	return rc;
}

/* The URL the auditor reaches this coordinator at: the --listen host
 * (loopback for a wildcard) and the port bound. */
static void audit_self_url(char *out, size_t len, const char *listen, int port)
{
	const char *colon = strrchr(listen, ':');
	size_t hl = colon ? (size_t)(colon - listen) : 0;
	char host[256];

	snprintf(host, sizeof(host), "%.*s", (int)(hl < sizeof(host) ? hl : 0), listen);
	if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "[::]") == 0 || strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "[::1]");
	snprintf(out, len, "http://%s:%d", host, port);
}

static void fatal_config(const char *what)
{
	fprintf(stderr, "troop coordinator: %s: %s\n", what, troop_error_msg());
}

int cmd_coordinator(int argc, char **argv)
{
	config *cfg = NULL;
	coord *c = NULL;
	http_server *srv = NULL;
	struct sweeper sweeper = { 0 };
	auditor *aud = NULL;
	char data_dir[1024], db_url[1200], key_path[1200];
	char signer_kid[TICKET_KID_LEN + 1] = "";
	troop_identity first_key;
	const char *const *admins;
	log_level lvl;
	bool shared_ledger;
	int rc, ret = 1;

	rc = config_parse(&cfg, coord_opts, argc, argv);
	if (rc == CONFIG_HELP) {
		config_usage(stdout, "coordinator", "[options]",
		    "Run a coordinator: node registry, tickets and the credit ledger.", coord_opts);
		return 0;
	}
	if (rc != 0) {
		fprintf(stderr, "troop coordinator: %s\n(see 'troop coordinator --help')\n",
		    troop_error_msg());
		return EXIT_USAGE;
	}
	if (log_parse_level(&lvl, config_str(cfg, "log-level")) != 0) {
		fprintf(stderr, "troop coordinator: --log-level: %s\n", troop_error_msg());
		ret = EXIT_USAGE;
		goto out;
	}
	log_set_level(lvl);

	c = sodium_malloc(sizeof(*c));
	if (!c)
		goto out;
	memset(c, 0, sizeof(*c));
	c->ticket_ttl = config_int(cfg, "ticket-ttl");
	c->ticket_key_lead = config_int(cfg, "ticket-key-lead");
	c->node_ttl = config_int(cfg, "node-ttl");
	c->starter_credits = config_int(cfg, "starter-credits");
	c->reserve_seconds = config_int(cfg, "reserve-seconds");
	c->release_grace = config_int(cfg, "release-grace");
	c->max_seconds_cap = config_int(cfg, "max-seconds");
	c->allow_unverified = config_bool(cfg, "allow-unverified");
	c->policy.establish_age_s = config_int(cfg, "establish-age");
	c->policy.establish_payers = config_int(cfg, "establish-payers");
	c->policy.trial_daily_cap = config_int(cfg, "trial-daily-cap");
	c->report_wait = config_int(cfg, "report-wait");
	c->max_dispute_rate = config_double(cfg, "max-dispute-rate");
	c->max_account_dispute_rate = config_double(cfg, "max-account-dispute-rate");
	c->pending_interval = config_int(cfg, "pending-interval");
	c->plausible_tps_gb = config_double(cfg, "plausible-tps-gb");
	c->plausible_min_tps = config_double(cfg, "plausible-min-tps");
	c->node_class_required = config_bool(cfg, "node-class-required");
	{
		const char *sp = config_str(cfg, "starter-policy");
		const char *nc = config_str(cfg, "node-class");
		if (strcmp(sp, "open") == 0) {
			c->starter_policy = COORD_STARTER_OPEN;
		} else if (strcmp(sp, "invite") == 0) {
			c->starter_policy = COORD_STARTER_INVITE;
		} else if (strcmp(sp, "none") == 0) {
			c->starter_policy = COORD_STARTER_NONE;
		} else {
			fprintf(stderr, "troop coordinator: --starter-policy: expected open, invite "
			    "or none, got '%s'\n", sp);
			ret = EXIT_USAGE;
			goto out;
		}
		if (strcmp(nc, "gpu") != 0 && strcmp(nc, "cpu") != 0 && strcmp(nc, "any") != 0) {
			fprintf(stderr, "troop coordinator: --node-class: expected any, gpu or cpu, "
			    "got '%s'\n", nc);
			ret = EXIT_USAGE;
			goto out;
		}
		snprintf(c->node_class, sizeof(c->node_class), "%s",
		    strcmp(nc, "any") == 0 ? "" : nc);
	}
	c->anon_rate = config_int(cfg, "anon-rate-limit");
	c->queue.max_wait = config_int(cfg, "max-wait");
	c->queue.max_total = (size_t)config_int(cfg, "queue-max");
	c->queue.max_account = (size_t)config_int(cfg, "queue-max-account");
	c->queue.boost_s = config_int(cfg, "queue-boost");
	c->queue.contrib_window = config_int(cfg, "contributor-window");
	c->queue.poll_ms = (int)config_int(cfg, "queue-poll-ms");
	c->queue.unused_ticket_s = config_int(cfg, "unused-ticket");
	c->queue.max_tickets_account = (size_t)config_int(cfg, "max-tickets");
	c->queue.max_jobs_gpu = (int)config_int(cfg, "max-jobs-gpu");
	c->queue.max_jobs_other = (int)config_int(cfg, "max-jobs-other");
	c->audit.interval_s = config_int(cfg, "audit-interval");
	c->audit.tokens = (int)config_int(cfg, "audit-tokens");
	c->audit.threshold = config_double(cfg, "audit-threshold");
	c->audit.max_nodes = (int)config_int(cfg, "audit-nodes");
	c->max_jobs_new = (int)config_int(cfg, "max-jobs-new");
	c->account_rate = config_int(cfg, "account-rate-limit");
	c->authorize_addr_rate = config_int(cfg, "authorize-address-limit");
	c->started = time(NULL);
	if (c->reserve_seconds > c->max_seconds_cap)
		c->reserve_seconds = c->max_seconds_cap;
	c->n_admins = config_list(cfg, "admin", &admins);
	if (c->n_admins > COORD_MAX_ADMINS) {
		fprintf(stderr, "troop coordinator: --admin: at most %d admins\n", COORD_MAX_ADMINS);
		ret = EXIT_USAGE;
		goto out;
	}
	for (size_t i = 0; i < c->n_admins; i++) {
		unsigned char pk[TROOP_PK_LEN];
		if (account_id_decode(pk, admins[i]) != 0) {
			fprintf(stderr, "troop coordinator: --admin: '%s' is not an account id "
			    "(43 base64url characters; see 'troop id')\n", admins[i]);
			ret = EXIT_USAGE;
			goto out;
		}
		snprintf(c->admins[i], sizeof(c->admins[i]), "%s", admins[i]);
	}

	{
		const char *const *ranges;
		size_t n = config_list(cfg, "allow-addresses", &ranges);
		if (addr_policy_init(&c->addrs, config_str(cfg, "listen"), ranges, n) != 0) {
			fprintf(stderr, "troop coordinator: %s\n", troop_error_msg());
			ret = EXIT_USAGE;
			goto out;
		}
	}
	if (poh_config_load(&c->poh, cfg, COORD_MAX_BODY) != 0) {
		fprintf(stderr, "troop coordinator: %s\n", troop_error_msg());
		ret = EXIT_USAGE;
		goto out;
	}

	if (config_str(cfg, "data-dir")) {
		snprintf(data_dir, sizeof(data_dir), "%s", config_str(cfg, "data-dir"));
	} else {
		char home[900];
		if (config_troop_home(home, sizeof(home)) != 0) {
			fatal_config("--data-dir");
			goto out;
		}
		snprintf(data_dir, sizeof(data_dir), "%s/coordinator", home);
	}
	if (config_private_dir(data_dir) != 0) {
		fatal_config("--data-dir");
		goto out;
	}
	if (config_str(cfg, "database-url"))
		snprintf(db_url, sizeof(db_url), "%s", config_str(cfg, "database-url"));
	else
		snprintf(db_url, sizeof(db_url), "sqlite:%s/ledger.db", data_dir);
	shared_ledger = strncmp(db_url, "postgres", 8) == 0;

	if (ledger_open(&c->ledger, db_url) != 0) {
		fatal_config("cannot open the ledger");
		goto out;
	}
	if (config_int(cfg, "ledger-batch") > 0 &&
	    ledger_batch_start(c->ledger, (int)config_int(cfg, "ledger-batch")) != 0) {
		fatal_config("cannot start the ledger writer");
		goto out;
	}
	{
		registry_opts ro = { .max_nonces = (size_t)config_int(cfg, "max-nonces"),
			.max_nodes = (size_t)config_int(cfg, "max-nodes"),
			.max_kv = (size_t)config_int(cfg, "max-kv") };
		if (ro.max_nodes == 0)
			ro.max_nodes = registry_default_max_nodes();
		if (ro.max_nonces == 0)
			ro.max_nonces = registry_default_max_nonces(config_str(cfg, "registry-url"));
		if (ro.max_kv == 0)
			ro.max_kv = registry_default_max_kv(ro.max_nodes);
		rc = registry_open(&c->reg, config_str(cfg, "registry-url"), &ro);
		if (rc == 0)
			log_info("registry_opened", "backend=%s max_nodes=%zu max_nonces=%zu "
			    "signed_per_s=%zu max_kv=%zu", registry_backend_name(c->reg), ro.max_nodes,
			    ro.max_nonces, ro.max_nonces / REGISTRY_NONCE_WINDOW, ro.max_kv);
	}
	if (rc != 0) {
		fatal_config("cannot open the registry");
		goto out;
	}
	if (config_str(cfg, "ticket-key") || !shared_ledger) {
		if (config_str(cfg, "ticket-key"))
			snprintf(key_path, sizeof(key_path), "%s", config_str(cfg, "ticket-key"));
		else
			snprintf(key_path, sizeof(key_path), "%s/coordinator.key", data_dir);
		rc = identity_load_or_create(&first_key, key_path, NULL);
	} else {
		rc = load_key_from_ledger(&first_key, c);
	}
	if (rc != 0) {
		fatal_config("cannot load the ticket signing key");
		goto out;
	}
	/* the ring: that key, unless a rotation stored one in the ledger */
	rc = ticket_keys_new(&c->tkeys, &first_key);
	identity_wipe(&first_key);
	if (rc == 0) {
		ledger_conn *db = NULL;
		if ((rc = ledger_conn_open(&db, c->ledger)) == 0)
			rc = ticket_keys_reload(c->tkeys, db);
		ledger_conn_close(db);
	}
	if (rc != 0) {
		fatal_config("cannot load the ticket signing keys");
		goto out;
	}
	if (c->audit.interval_s > 0) {
		if (config_str(cfg, "audit-key"))
			snprintf(key_path, sizeof(key_path), "%s", config_str(cfg, "audit-key"));
		else
			snprintf(key_path, sizeof(key_path), "%s/auditor.key", data_dir);
		if (identity_load_or_create(&c->audit_key, key_path, NULL) != 0) {
			fatal_config("cannot load the auditor's key");
			goto out;
		}
		snprintf(c->audit_account, sizeof(c->audit_account), "%s", c->audit_key.id);
	}

	{
		/* an embedded ledger's writes wait for their group commit on
		 * their server thread: more threads, bigger batches.  (Each
		 * thread holds a ledger connection: on PostgreSQL the operator
		 * sizes --threads against max_connections.) */
		int threads = (int)config_int(cfg, "threads");
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (threads == 0 && !shared_ledger && config_int(cfg, "ledger-batch") > 0)
			threads = ncpu < 1 ? 16 : ncpu >= 4 ? 64 : (int)ncpu * 16;
		http_server_opts o = {
			.listen = config_str(cfg, "listen"),
			.threads = threads,
			.max_body = COORD_MAX_BODY,
			.name = "coordinator",
		};
		if (http_server_new(&srv, &o) != 0) {
			fatal_config("cannot create the server");
			goto out;
		}
	}
	if (poh_pool_new(&c->poh_pool, c->poh.pool_workers, c->poh.pool_queue) != 0) {
		fatal_config("cannot start the proof-of-hardware check pool");
		goto out;
	}
	http_server_on_thread(srv, thread_init, thread_fini, c);
	/* waiting requests are answered at once rather than held to the drain */
	http_server_on_shutdown(srv, queue_shutdown, NULL);
	api_meta_routes(srv, c);
	api_nodes_routes(srv, c);
	api_credits_routes(srv, c);
	api_jobs_routes(srv, c);
	api_hardware_routes(srv, c);
	api_queue_routes(srv, c);
	api_admin_routes(srv, c);
	if (http_server_catch_signals(srv) != 0 || http_server_start(srv) != 0) {
		fatal_config("cannot start");
		goto out;
	}
	if (sweeper_start(&sweeper, c) != 0) {
		fatal_config("cannot start");
		goto out;
	}
	{
		troop_identity signer;

		ticket_keys_signer(c->tkeys, &signer, (int64_t)time(NULL));
		ticket_kid(signer_kid, signer.pk);
		identity_wipe(&signer);
	}
	if (c->audit.interval_s > 0) {
		audit_self_url(c->audit.url, sizeof(c->audit.url), config_str(cfg, "listen"),
		    http_server_port(srv));
		if (auditor_start(&aud, c) != 0) {
			fatal_config("cannot start");
			goto out;
		}
		log_info("auditor_started", "account=%s interval=%lld compared=%d threshold=%.2f "
		    "nodes=%d url=%s", c->audit_account, (long long)c->audit.interval_s,
		    c->audit.tokens, c->audit.threshold, c->audit.max_nodes, c->audit.url);
	}
	log_info("coordinator_started", "listen=%s port=%d ledger=%s registry=%s kid=%s "
	    "starter_credits=%lld starter_policy=%s allow_unverified=%d",
	    config_str(cfg, "listen"),
	    http_server_port(srv), ledger_backend_name(c->ledger), registry_backend_name(c->reg),
	    signer_kid, (long long)c->starter_credits, config_str(cfg, "starter-policy"),
	    c->allow_unverified);
	ret = http_server_run(srv, 5000) == 0 ? 0 : 1;
	log_info("coordinator_stopped", NULL);
out:
	auditor_stop(aud);
	sweeper_stop(&sweeper);
	http_server_free(srv);
	if (c) {
		poh_pool_free(c->poh_pool);
		registry_close(c->reg);
		ledger_close(c->ledger);
		ticket_keys_free(c->tkeys);
		identity_wipe(&c->audit_key);
		sodium_free(c);
	}
	config_free(cfg);
	return ret;
}
