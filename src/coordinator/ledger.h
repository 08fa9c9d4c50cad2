/*
 * ledger.h - the coordinator's durable store: accounts and credits,
 * reservations (escrow), the transaction log, the durable part of node
 * records (owner, multiplier, verification), a small key/value table and
 * the audit log (DESIGN.md sections 7, 9 and 11).
 *
 * Two handles:
 *   ledger       one per process, shared by every thread; made from a URL
 *                by ledger_open, which also applies the SQL migrations.
 *                Immutable after ledger_open: thread-safe.
 *   ledger_conn  one database connection, for ONE thread at a time (a
 *                server thread keeps its own).  Not thread-safe: never use
 *                one ledger_conn from two threads at once.  Close every
 *                connection before ledger_close.
 *
 * The credit rules are written once, in ledger.c, over a small database
 * driver (ledger_driver.h): SQLite (ledger_sqlite.c, the embedded default)
 * and PostgreSQL (ledger_pg.c, for several coordinators sharing one
 * database).  ledger.c checks every argument once, so both databases
 * refuse the same inputs with the same messages and error codes.
 *
 * Lock order.  Every write is one transaction (retried a few times on a
 * busy or serialization failure before TROOP_EUNAVAIL) that takes row
 * locks in this one order, on both databases, so that two writers can
 * wait for each other but never deadlock:
 *
 *     reservation rows (the settled one FOR UPDATE; expired ones FOR
 *       UPDATE SKIP LOCKED, in expiry order), or the invite row redeemed
 *     -> account rows, in ascending account id
 *     -> node row -> its node_payers row
 *     -> counters 'transactions' -> counters 'audit_log' (SQLite only,
 *        once per block of 1000 ids: ledger.c "log row ids")
 *
 *   ledger_reserve debits the account with one conditional UPDATE and then
 *   inserts its new reservation row: no other transaction can hold a row
 *   that does not exist yet, so the insert waits at most for a concurrent
 *   insert of the same job id.  The counters rows, which number the
 *   transaction and audit logs, are advanced a block of ids at a time and
 *   the ids handed out in memory: on SQLite inside the transaction that
 *   needs a new block (the last lock it takes), on PostgreSQL in a
 *   transaction of its own, so that no writer holds them to its commit.
 *   Log rows are numbered in the order one process hands the ids out;
 *   several processes interleave their blocks.  SQLite takes the whole
 *   file with BEGIN IMMEDIATE, so the order holds there trivially.
 *   Releasing a node's pending earnings (ledger_release_pending) locks its
 *   owner's account row, then the node row.
 *
 *   Group commit (ledger_batch_start): one transaction holds the locks of
 *   every write of its batch, each write taking its own in the order
 *   above, one write after the other; between two writes of a batch the
 *   order can go back (the second write's reservation row after the first
 *   one's account rows).  On SQLite nothing else writes meanwhile.  On
 *   PostgreSQL a transaction of another process can then meet the batch
 *   in a deadlock; the server breaks it, and the batch is written again
 *   one transaction per write.
 *
 * The credit model (docs/CREDITS.md).  Credits are integer credit-seconds.
 *   - accounts.balance is the AVAILABLE balance: ordinary credits (admin
 *     grants, earnings), spendable and transferable;
 *   - accounts.trial holds TRIAL credits (starter grants, invites):
 *     spendable, never transferable.  A reservation takes ordinary credits
 *     first, then trial credits, and remembers the trial part;
 *   - credits escrowed for a job live in its open reservation;
 *   - a settlement charge is taken from the reservation's ordinary part
 *     first.  The ordinary part goes to the worker's balance; the trial
 *     part becomes the node's PENDING earnings (nodes.pending), owed to
 *     its owner and not spendable until the node is ESTABLISHED (ledger_
 *     policy: an age, a number of distinct accounts that paid it with
 *     ordinary credits, no failed audit).  Once it is,
 *     ledger_release_pending (run periodically) moves pending earnings to
 *     its owner's balance, at most policy.trial_daily_cap per owner per
 *     UTC day.  A node that fails an audit forfeits its pending earnings;
 *   - invariant: sum(balances) + sum(trial) + sum(open reservations)
 *                + sum(pending) == sum(grants) + sum(admin) - sum(forfeit).
 *   Every movement is one row in the transaction log:
 *     grant    trial credits to `requester` (starter grant; note "invite"
 *              for an invite code)
 *     admin    an operator grant to `requester`; `note` holds the reason
 *     reserve  `credits` moved from requester's balance/trial into escrow
 *     settle   `credits` (the charge) moved from escrow to `worker`; note
 *              "pending=N" when N of them became pending earnings, and
 *              "disputed: worker claimed W ms, client observed C ms" when
 *              the two witnesses disagreed
 *     release  `credits` moved from escrow back to requester
 *     mature   `credits` moved from a node's pending earnings to `worker`'s
 *              balance; note "node=ID"
 *     forfeit  `credits` of pending earnings removed from node's books
 *              (failed audit); `worker` is its owner, note "node=ID"
 *   `credits` is never negative; the type says which way it went.
 *
 * Errors: every function returns 0 or a negative troop_err (error.h) and
 * sets the thread's message with troop_error_set.  Common to all:
 *   TROOP_EINVAL     a missing/empty argument or one out of range
 *   TROOP_ETOOLARGE  a string longer than its LEDGER_*_MAX
 *   TROOP_EUNAVAIL   the database is busy (after retries), unreachable,
 *                    full, read-only or failing I/O: retry later (503)
 *   TROOP_ENOMEM     out of memory
 *   TROOP_ERR        anything else the database reported
 * Functions list their other codes.  On error, out parameters are left in
 * an unspecified state unless said otherwise.
 *
 * Time: every `now` is unix seconds supplied by the caller (tests pass
 * their own clock).
 */
#ifndef TROOP_LEDGER_H
#define TROOP_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on strings, in bytes without the NUL. */
#define LEDGER_ID_MAX 64         /* account ids, node ids, job ids, admin ids */
#define LEDGER_NAME_MAX 128      /* node names */
#define LEDGER_MODEL_MAX 255     /* model names */
#define LEDGER_TYPE_MAX 15       /* transaction types */
#define LEDGER_NOTE_MAX 255      /* admin grant reason */
#define LEDGER_DISPLAY_NAME_MAX 32 /* an account's display name, bytes */
#define LEDGER_OUTCOME_MAX 31    /* receipt outcome ("ok", "error", ...) */
#define LEDGER_ACTION_MAX 64     /* audit action */
#define LEDGER_DETAIL_MAX 4096   /* audit detail */
#define LEDGER_KV_KEY_MAX 128
#define LEDGER_KV_VALUE_MAX 8192
#define LEDGER_URL_MAX 4096

#define LEDGER_TX_LIMIT_MAX 500  /* most rows one ledger_transactions call returns */
#define LEDGER_CREDITS_MAX ((int64_t)1 << 50) /* largest single amount accepted */
#define LEDGER_MULTIPLIER_MAX 1000.0 /* multipliers accepted: (0, 1000] */
#define LEDGER_RELEASE_GRACE 60  /* DESIGN.md 7.4: seconds after expiry before release */
#define LEDGER_CLOCK_SLACK_MS 2000 /* receipt durations: allowance for clocks and rounding */
#define LEDGER_CLASS_MAX 15      /* hardware class ("gpu", "cpu") */
#define LEDGER_DIGEST_MAX 128    /* delivery report's response digest */
/* Two witnesses: a worker's claim is believed up to its client's observed
 * duration plus LEDGER_REPORT_TOLERANCE_MS plus LEDGER_REPORT_TOLERANCE_PCT
 * percent of it (see ledger_witnessed_ms). */
#define LEDGER_REPORT_TOLERANCE_MS 1000
#define LEDGER_REPORT_TOLERANCE_PCT 5
/* Under-reporting: a client whose report's digest matches the worker's yet
 * whose duration is shorter than the tokens received allow (more than
 * max_tps * duration + LEDGER_UNDERREPORT_SLACK tokens) is disputed. */
#define LEDGER_UNDERREPORT_SLACK 16

/* When a node's pending earnings become spendable (docs/CREDITS.md). */
typedef struct {
	int64_t establish_age_s;   /* node age (since first seen), >= 0 */
	int64_t establish_payers;  /* distinct accounts that paid it with
	                              ordinary credits, >= 0 */
	int64_t trial_daily_cap;   /* pending credits released per owner per UTC
	                              day, >= 0 */
} ledger_policy;

#define LEDGER_ESTABLISH_AGE_S ((int64_t)7 * 86400)
#define LEDGER_ESTABLISH_PAYERS 3
#define LEDGER_TRIAL_DAILY_CAP 3600

/* The defaults above. */
extern const ledger_policy ledger_policy_default;

typedef struct ledger ledger;
typedef struct ledger_conn ledger_conn;

/* ---- opening -------------------------------------------------------------- */

/* Open the ledger named by `url`:
 *   "PATH" or "sqlite:PATH"     SQLite file PATH (created if missing)
 *   "sqlite:///rel/path"        SQLAlchemy style: relative path rel/path
 *   "sqlite:////abs/path"       SQLAlchemy style: absolute /abs/path
 *   "postgres://..."            PostgreSQL (when that backend is built)
 * A SQLite URL may end in "?busy_timeout=MS" (default 5000): how long one
 * attempt waits for another writer's lock; a write is attempted 3 times
 * before TROOP_EUNAVAIL.  A SQLite file that does not exist yet is created
 * with mode 0600 (its -wal and -shm files follow the database's mode): the
 * ledger holds the ticket signing key.
 * Then apply every migration in troop_migrations[] not yet recorded in the
 * schema_version table, each in its own transaction (safe when several
 * processes open the same database at once).  In-memory SQLite databases
 * are refused (each connection would see a different database).
 * Returns 0 and *out (free with ledger_close), or TROOP_EINVAL (bad or
 * unsupported URL), TROOP_EUNAVAIL (cannot open or migrate; the message
 * names the file and the migration).  Thread-safe. */
int ledger_open(ledger **out, const char *url);

/* Close the ledger.  NULL is fine.  All its connections must be closed
 * first.  Not thread-safe with respect to other uses of `l`. */
void ledger_close(ledger *l);

/* Group commit.  Start one writer thread with a connection of its own:
 * from then on ledger_reserve and ledger_settle, on every connection of
 * `l`, hand their transaction to it and wait.  The writer takes every
 * transaction waiting at that moment (at most `max_items`, 1 ..
 * LEDGER_BATCH_MAX) and commits them as ONE database transaction, each
 * inside a savepoint, so that one failing (insufficient credits, a job id
 * reserved twice) is rolled back alone and the others commit.  A caller
 * returns only once the commit that holds its write is durable (SQLite
 * synchronous=FULL; PostgreSQL synchronous_commit as the server has it,
 * on by default).  When the shared transaction fails as a whole (busy,
 * serialization failure, deadlock) each of its items is run again in a
 * transaction of its own.  Results and messages are the same as without
 * the writer.  Returns 0, TROOP_EINVAL (started twice, bad max_items),
 * TROOP_EUNAVAIL (no connection) or TROOP_ERR.  Call before the ledger is
 * shared between threads; ledger_close stops it. */
#define LEDGER_BATCH_MAX 4096
int ledger_batch_start(ledger *l, int max_items);

/* Stop the writer, after it wrote what was queued; later writes run in
 * transactions of their own again.  No caller may be inside
 * ledger_reserve or ledger_settle.  NULL or not started is fine. */
void ledger_batch_stop(ledger *l);

/* Transactions the writer committed (batches) and the writes they held
 * (items), since the start; 0 and 0 without a writer.  Thread-safe. */
void ledger_batch_stats(const ledger *l, uint64_t *batches, uint64_t *items);

/* The backend's name ("sqlite", ...).  Never NULL.  Thread-safe. */
const char *ledger_backend_name(const ledger *l);

/* Open a new connection to `l`, for use by one thread at a time.
 * Returns 0 and *out (free with ledger_conn_close), or TROOP_EUNAVAIL.
 * Thread-safe (any thread may open connections concurrently). */
int ledger_conn_open(ledger_conn **out, ledger *l);

/* Close a connection.  NULL is fine. */
void ledger_conn_close(ledger_conn *c);

/* The highest migration version recorded in schema_version, in *out. */
int ledger_schema_version(int *out, ledger_conn *c);

/* ---- accounts ------------------------------------------------------------- */

/* Make sure `account` exists.  The first call for an account creates it
 * with `starter_credits` (>= 0) TRIAL credits and records one 'grant' row
 * (none when 0);
 * later calls change nothing.  Atomic: concurrent callers, in any number of
 * threads or processes, grant at most once.  *created (may be NULL) says
 * whether this call created it.  An account created any other way (admin
 * grant, settlement credit to a worker owner) never gets starter credits. */
int ledger_ensure_account(bool *created, ledger_conn *c, const char *account,
    int64_t starter_credits, int64_t now);

typedef struct {
	int64_t available;  /* ordinary credits spendable now (accounts.balance) */
	int64_t reserved;   /* held in this account's open reservations */
	int64_t trial;      /* trial credits, spendable now, not transferable */
	int64_t pending;    /* pending earnings of the nodes it owns */
	int64_t reports;    /* delivery reports it sent */
	int64_t disputes;   /* of those, found to under-report */
} ledger_balance;

/* Balance of `account`, read in one consistent snapshot.
 * The API's balance_seconds is available + trial + reserved.
 * TROOP_ENOTFOUND if the account does not exist. */
int ledger_balance_get(ledger_balance *out, ledger_conn *c, const char *account);

/* Add `credits` (1 .. LEDGER_CREDITS_MAX) to `account`, creating it if
 * needed (without starter credits), with an 'admin' transaction row whose
 * note is `reason` (may be NULL or "") and an audit_log row naming
 * `admin_id`, in one transaction.  *tx_id (may be NULL) gets the
 * transaction row's id. */
int ledger_admin_grant(int64_t *tx_id, ledger_conn *c, const char *account,
    int64_t credits, const char *reason, const char *admin_id, int64_t now);

/* Store an invite code (its SHA-256 in hex, `code_hash`) worth `credits`
 * (1 .. LEDGER_CREDITS_MAX) trial credits, with an audit_log row naming
 * `admin_id`.  TROOP_ECONFLICT when the code exists. */
int ledger_invite_create(ledger_conn *c, const char *code_hash, int64_t credits,
    const char *admin_id, int64_t now);

/* Redeem invite `code_hash` for `account` (created if needed): its credits
 * become trial credits with a 'grant' row noted "invite", once.
 * *credits (may be NULL) gets them.  TROOP_ENOTFOUND when the code is
 * unknown or was redeemed already. */
int ledger_invite_redeem(int64_t *credits, ledger_conn *c, const char *code_hash,
    const char *account, int64_t now);

/* ---- reservations and settlement -------------------------------------------- */

typedef struct {
	const char *job_id;     /* the ticket's jti; unique */
	const char *requester;  /* account paying */
	const char *node_id;    /* node that will serve and must sign the receipt */
	const char *worker;     /* account credited at settlement (node owner) */
	const char *model;
	int64_t amount;         /* credits escrowed, 1 .. LEDGER_CREDITS_MAX */
	int64_t max_seconds;    /* time budget paid for, >= 0 (informational) */
	double multiplier;      /* node multiplier at authorization, (0, 1000] */
	int64_t expires_at;     /* after expires_at + grace an unsettled
	                           reservation is released; should cover the
	                           ticket's exp plus max_seconds */
	bool report_wanted;     /* the requester will send a delivery report:
	                           the receipt is held until it comes */
	int64_t now;
} ledger_reserve_req;

/* Escrow req->amount from the requester in ONE write transaction: check
 * available + trial, take the amount (ordinary credits first, then
 * trial), insert the open reservation and a 'reserve' row.  Concurrent reservations can never overspend an account.
 * *available (may be NULL) gets the available balance after the call
 * (on TROOP_ECREDITS: the balance that was too low).
 * Errors: TROOP_ECREDITS when available < amount (message: "insufficient
 * credits: available N, price M"; an unknown account has 0 available),
 * TROOP_ECONFLICT when job_id was already reserved. */
int ledger_reserve(int64_t *available, ledger_conn *c, const ledger_reserve_req *req);

typedef struct {
	const char *job_id;
	const char *signer_node_id;  /* the node whose key signed the receipt */
	int64_t duration_ms;         /* >= 0 */
	int64_t tokens_in;           /* >= 0 */
	int64_t tokens_out;          /* >= 0 */
	const char *outcome;         /* "ok" counts toward the node's reputation,
	                                anything else against it; NULL = "ok" */
	const char *digest;          /* the worker's response digest; NULL or "" */
	int64_t grace_s;             /* usually LEDGER_RELEASE_GRACE, >= 0 */
	int64_t now;
} ledger_settle_req;

typedef struct {
	int64_t charged;    /* credits moved to the worker */
	int64_t refunded;   /* credits returned to the requester */
	int64_t pending;    /* part of charged that became pending earnings */
	bool claimed;       /* nothing moved: the receipt is held as a claim
	                       until the client's delivery report (or the
	                       deadline) settles it (with .already: it was
	                       held before, by an earlier receipt) */
	bool disputed;      /* settled at the client's observed duration: the
	                       worker claimed more */
	bool client_disputed; /* the client under-reported: the worker was paid
	                       its claim and the account's dispute counted */
	int64_t expected;   /* with .claimed: the charge of the held claim if it
	                       settles undisputed */
	int64_t tokens_out; /* settled now: the output tokens settled */
	bool already;       /* true: settled before; the stored result is returned */
	char requester[LEDGER_ID_MAX + 1];
	char worker[LEDGER_ID_MAX + 1];
	char model[LEDGER_MODEL_MAX + 1];
} ledger_settle_result;

/* Settle a job once, in one write transaction: charge =
 * min(ceil(duration_ms * multiplier / 1000), reserved amount) (see
 * ledger_charge); its ordinary part is credited to the worker account
 * (created with 0 if missing), its trial part to the node's pending
 * earnings; the rest is refunded to the requester (ordinary and trial
 * credits each back where they came from); the reservation becomes
 * settled; a 'settle' row (credits = charge) and, when the refund is not
 * 0, a 'release' row are written; the node's job counters are updated
 * (its row is created, owned by the worker, if missing).
 * Plausibility: a duration longer than the time since the reservation
 * was made, or than its max_seconds (each plus LEDGER_CLOCK_SLACK_MS), is
 * refused with TROOP_EINVAL and settles nothing.
 * Idempotent: settling a settled job changes nothing and returns the
 * stored result with already = true.
 * Errors: TROOP_ENOTFOUND no reservation with that job id;
 * TROOP_EFORBIDDEN the signer is not the reservation's node (checked
 * before anything else, also for settled jobs); TROOP_EGONE the
 * reservation was released, or is open but past expires_at + grace_s (the
 * next ledger_release_expired releases it). */
int ledger_settle(ledger_settle_result *out, ledger_conn *c, const ledger_settle_req *req);

/* Two witnesses (docs/PROTOCOL.md "Settlement rule").  For a reservation
 * made with report_wanted, ledger_settle holds the worker's receipt as a
 * claim (result .claimed, nothing moves) until the requester's delivery
 * report comes (ledger_report) or the claim's deadline passes
 * (ledger_settle_claims).  With both, the duration paid is
 * ledger_witnessed_ms(claim, report). */
typedef struct {
	const char *job_id;
	const char *requester;     /* the report's signer: must be the job's requester */
	int64_t duration_ms;       /* observed: request sent to last byte, >= 0 */
	int64_t bytes;             /* response bytes received, >= 0 */
	int64_t tokens;            /* tokens received, >= 0 */
	const char *outcome;       /* "complete", "cut", "engine_error", "aborted",
	                              "unreachable" (not checked here) */
	const char *digest;        /* digest of the response body; NULL or "" */
	double max_tps;            /* the node's plausible output rate for the
	                              job, tokens/s; 0: no under-report check */
	int64_t now;
} ledger_report_req;

/* Record the delivery report of a job, once; when the worker's claim is
 * already held, settle the job in the same transaction (*out as for
 * ledger_settle; .claimed when it still waits for the receipt).  Counts
 * the report on the requester's account; an outcome "refused" (the node
 * answered 401) counts as a dispute against the node.
 * Under-reporting: when the worker claimed more than the client observed
 * beyond the tolerance (ledger_witnessed_ms), the worker's digest and the
 * report's are equal and not empty, and the worker's completion tokens
 * (capped on arrival to its duration) exceed max_tps * report duration +
 * LEDGER_UNDERREPORT_SLACK, the client is disputed instead of the worker: the job settles at the worker's claim,
 * the account's dispute count grows, an audit row 'client_dispute' is
 * written and the settle row's note says so.  A second
 * report changes nothing (.already when settled).  Errors: TROOP_ENOTFOUND
 * no reservation; TROOP_EFORBIDDEN the signer is not its requester;
 * TROOP_EGONE released. */
int ledger_report(ledger_settle_result *out, ledger_conn *c, const ledger_report_req *req);

/* The duration believed from a worker's claim and its client's observed
 * duration (client_ms < 0: no report): the claim, unless it exceeds
 * client_ms + LEDGER_REPORT_TOLERANCE_MS + LEDGER_REPORT_TOLERANCE_PCT %
 * of client_ms, in which case client_ms and *disputed (may be NULL) =
 * true.  Pure function. */
int64_t ledger_witnessed_ms(int64_t worker_ms, int64_t client_ms, bool *disputed);

/* Settle every held claim made before now - wait_s whose report never
 * came, at the worker's (plausible, checked on arrival) duration, one job
 * per transaction.  *count (may be NULL) gets the number settled. */
int ledger_settle_claims(int64_t *count, ledger_conn *c, int64_t now, int64_t wait_s);

/* Release pending earnings of every node established under `policy`
 * (NULL: ledger_policy_default) at `now` to its current owner's balance,
 * at most policy->trial_daily_cap per owner per UTC day ('mature' rows),
 * one node per transaction.  Scans the nodes that have pending earnings:
 * run it every minute or so, not per request.  *released (may be NULL)
 * gets the credits released. */
int ledger_release_pending(int64_t *released, ledger_conn *c, int64_t now,
    const ledger_policy *policy);

/* Release every open reservation with expires_at + grace_s < now: refund
 * it to the requester with a 'release' row.  Works in batches of short
 * transactions.  *count (may be NULL) gets the number released. */
int ledger_release_expired(int64_t *count, ledger_conn *c, int64_t now, int64_t grace_s);

typedef enum {
	LEDGER_RES_OPEN = 0,
	LEDGER_RES_SETTLED,
	LEDGER_RES_RELEASED,
} ledger_res_status;

typedef struct {
	char job_id[LEDGER_ID_MAX + 1];
	char requester[LEDGER_ID_MAX + 1];
	char node_id[LEDGER_ID_MAX + 1];
	char worker[LEDGER_ID_MAX + 1];
	char model[LEDGER_MODEL_MAX + 1];
	int64_t amount;
	int64_t max_seconds;
	double multiplier;
	ledger_res_status status;
	int64_t created_at;
	int64_t expires_at;
	int64_t closed_at;    /* 0 while open */
	int64_t charged;      /* 0 while open */
	int64_t refunded;     /* 0 while open */
	int64_t duration_ms;  /* 0 unless settled */
	int64_t trial_amount; /* part of amount taken from trial credits */
	bool report_wanted;
	int64_t claim_ms;     /* the worker's held claim; -1 none */
	int64_t claim_tokens_in, claim_tokens_out;
	char claim_outcome[LEDGER_OUTCOME_MAX + 1];
	int64_t claimed_at;   /* 0 none */
	int64_t report_ms;    /* the client's observed duration; -1 none */
	int64_t report_tokens;
	char report_outcome[LEDGER_OUTCOME_MAX + 1];
	int64_t reported_at;  /* 0 none */
	bool disputed;
	char claim_digest[LEDGER_DIGEST_MAX + 1];  /* "" none */
	char report_digest[LEDGER_DIGEST_MAX + 1]; /* "" none */
	double report_max_tps;                     /* 0: not checked */
	bool client_disputed;
	int64_t node_suspended;  /* its node's suspension (unix time), 0 none:
	                            its receipt settles at 0 (read when
	                            settling; 0 from ledger_reservation_get) */
} ledger_reservation;

/* Read one reservation.  TROOP_ENOTFOUND if there is none. */
int ledger_reservation_get(ledger_reservation *out, ledger_conn *c, const char *job_id);

/* The charge for `duration_ms` at `multiplier`, capped at `reserved`:
 * min(ceil(duration_ms * multiplier / 1000), reserved), in integer
 * arithmetic on the multiplier rounded to millionths (1500 ms at 1.0 -> 2,
 * 10000 ms at 2.5 -> 25).  Negative durations count as 0.  Pure function,
 * thread-safe; exposed for the API's estimates and for tests. */
int64_t ledger_charge(int64_t duration_ms, double multiplier, int64_t reserved);

/* ---- transaction log ------------------------------------------------------- */

typedef struct {
	int64_t id;                          /* increasing as one coordinator writes */
	char type[LEDGER_TYPE_MAX + 1];      /* grant admin reserve settle release */
	char job_id[LEDGER_ID_MAX + 1];      /* "" for grant/admin */
	char requester[LEDGER_ID_MAX + 1];   /* payer, or receiver of a grant */
	char worker[LEDGER_ID_MAX + 1];      /* "" for grant/admin */
	int64_t credits;                     /* >= 0 */
	int64_t duration_ms;                 /* settle rows; else 0 */
	char model[LEDGER_MODEL_MAX + 1];    /* "" for grant/admin */
	char note[LEDGER_NOTE_MAX + 1];      /* admin reason; else "" */
	int64_t timestamp;                   /* unix seconds */
} ledger_tx;

/* The rows where `account` is the requester or the worker, newest first:
 * at most `limit` (1 .. LEDGER_TX_LIMIT_MAX) rows with id < before_id
 * (before_id 0: from the newest).  *out is a malloc'd array of *n rows
 * (NULL when *n is 0), freed by the caller with free().  *next is the
 * before_id for the next page, or 0 when there are no more rows.  Rows of
 * an account that is both requester and worker appear once. */
int ledger_transactions(ledger_tx **out, size_t *n, int64_t *next, ledger_conn *c,
    const char *account, int limit, int64_t before_id);

typedef struct {
	int64_t granted;   /* sum of grant and admin rows */
	int64_t balances;  /* sum of accounts.balance */
	int64_t reserved;  /* sum of open reservations */
	int64_t accounts;  /* number of accounts */
	int64_t open_reservations;
	int64_t trial;     /* sum of accounts.trial */
	int64_t pending;   /* sum of nodes.pending */
	int64_t forfeited; /* sum of forfeit rows */
} ledger_totals;

/* Totals for the invariant and metrics, read in one snapshot.  Scans the
 * tables: not for every request. */
int ledger_totals_get(ledger_totals *out, ledger_conn *c);

/* A node owner on the donors' leaderboard. */
typedef struct {
	char account[LEDGER_ID_MAX + 1];
	int64_t earned;     /* credits of settlements paid by other accounts */
	int64_t jobs;       /* those settlements */
	char name[LEDGER_DISPLAY_NAME_MAX + 1]; /* the owner's display name, "" none */
} ledger_earner;

#define LEDGER_EARNERS_MAX 1000

/* The accounts whose nodes earned most from other accounts' jobs (the
 * settle rows where worker != requester; forfeits and pending periods are
 * not subtracted), most first, ties by account: at most `limit` (1 ..
 * LEDGER_EARNERS_MAX).  *out is a malloc'd array of *n (NULL when 0),
 * freed with free().  Scans the settle rows: cache the answer. */
int ledger_top_earners(ledger_earner **out, size_t *n, ledger_conn *c, int limit);

/* Set `account`'s display name on the leaderboard: `name` of at most
 * LEDGER_DISPLAY_NAME_MAX bytes, "" to show the account by its id only (the
 * default).  The caller checks what a name may contain
 * (proto_display_name_check).  TROOP_ENOTFOUND when the ledger has no such
 * account yet. */
int ledger_account_set_name(ledger_conn *c, const char *account, const char *name);

/* The invariant: balances + trial + reserved + pending == granted -
 * forfeited.  Pure function. */
bool ledger_totals_balanced(const ledger_totals *t);

/* ---- the operator report ------------------------------------------------- */

/* An account whose settled spending all went to one node or one owner. */
typedef struct {
	char account[LEDGER_ID_MAX + 1];
	int64_t jobs;          /* settled jobs with a charge */
	int64_t spent;         /* credits charged */
	int64_t nodes;         /* distinct nodes paid */
	int64_t owners;        /* distinct owners paid */
	char node_id[LEDGER_ID_MAX + 1]; /* the one node (nodes == 1), else the first */
	char owner[LEDGER_ID_MAX + 1];   /* the one owner (owners == 1), else the first */
	int64_t trial_reserved; /* trial credits its reservations took */
} ledger_report_account;

/* A node paid mostly (more than half of its charges) with trial credits. */
typedef struct {
	char node_id[LEDGER_ID_MAX + 1];
	char owner[LEDGER_ID_MAX + 1];
	int64_t jobs;          /* settled jobs with a charge */
	int64_t earned;        /* credits charged */
	int64_t trial_paid;    /* of those, paid from trial credits */
	int64_t payers;        /* distinct accounts that paid */
} ledger_report_node;

/* The operator report (GET /admin/report): accounts with at least
 * min_jobs settled jobs whose charges all went to one node or one owner,
 * and nodes with at least min_jobs settled jobs whose charges were more
 * than half trial credits, biggest first, at most `limit` (1 ..
 * LEDGER_TX_LIMIT_MAX) of each.  *accounts and *nodes are malloc'd arrays
 * (NULL when empty) the caller frees.  Scans the settled reservations:
 * for an operator now and then, not per request. */
int ledger_admin_report(ledger_report_account **accounts, size_t *n_accounts,
    ledger_report_node **nodes, size_t *n_nodes, ledger_conn *c, int64_t min_jobs,
    int limit);

/* ---- nodes (durable part) ------------------------------------------------- */

typedef struct {
	char node_id[LEDGER_ID_MAX + 1];
	char owner[LEDGER_ID_MAX + 1];
	char name[LEDGER_NAME_MAX + 1];
	double multiplier;      /* 1.0 until verified */
	bool verified;
	int64_t verified_at;    /* 0 if never */
	double reputation;      /* (jobs_ok + 1) / (jobs_ok + jobs_failed + 2), in (0, 1) */
	int64_t jobs_ok;
	int64_t jobs_failed;
	int64_t first_seen;
	int64_t last_seen;      /* coarse: refreshed every ledger_node_touch_interval */
	int64_t pending;        /* pending earnings owed to its owner */
	int64_t payers;         /* distinct accounts that paid it with ordinary credits */
	int64_t audit_failed;   /* unix time of a failed audit, 0 if none */
	char hw_class[LEDGER_CLASS_MAX + 1]; /* class of its verified proof, "" none */
	int64_t disputes;       /* settled jobs where it claimed more than its
	                           client observed, and refusals */
	int64_t refusals;       /* reports "refused": it answered 401 */
	int64_t suspended;      /* unix time an operator suspended it, 0 none */
	char suspend_reason[LEDGER_NOTE_MAX + 1];
	int64_t audits_passed;  /* audits it agreed with the majority in */
	int64_t audits_failed;  /* audits it disagreed with the majority in */
	int64_t suspect;        /* unix time of a failed audit not passed since, 0 none */
} ledger_node;

/* Whether node `n` is established under policy `p` (NULL: defaults) at
 * `now`: old enough, enough distinct paying accounts, no failed audit.
 * Pure function. */
bool ledger_node_established(const ledger_node *n, const ledger_policy *p, int64_t now);

#define LEDGER_NODE_TOUCH_S 300

/* How old node `node_id`'s last_seen may grow before a heartbeat writes
 * it again: LEDGER_NODE_TOUCH_S plus up to as much again, by a hash of
 * the id, so that a fleet that registered together (a coordinator restart,
 * a Redis flush) does not come due in the same second five minutes later.
 * Pure. */
int64_t ledger_node_touch_interval(const char *node_id);

/* Create node `node_id` (multiplier 1.0, unverified) or update its owner
 * and name.  Cheap when nothing changed: no write unless owner or name
 * differ or last_seen is older than ledger_node_touch_interval.  `name` may be
 * NULL or "".  *created (may be NULL) says whether it was new. */
int ledger_node_upsert(bool *created, ledger_conn *c, const char *node_id,
    const char *owner, const char *name, int64_t now);

/* Read node `node_id`.  TROOP_ENOTFOUND if unknown. */
int ledger_node_get(ledger_node *out, ledger_conn *c, const char *node_id);

/* ledger_node_upsert followed by ledger_node_get, for a heartbeat: the
 * node as it stands afterwards in *out.  In the common case (the node is
 * known, owner and name unchanged, last_seen fresh) this is one read and
 * no write; otherwise the upsert runs as ledger_node_upsert does and the
 * row is read again.  *created (may be NULL) as for ledger_node_upsert.
 * Errors as for both. */
int ledger_node_touch(ledger_node *out, bool *created, ledger_conn *c, const char *node_id,
    const char *owner, const char *name, int64_t now);

/* Record a proof-of-hardware result: multiplier in (0, 1000], verified
 * flag, verified_at = now.  TROOP_ENOTFOUND if the node is unknown. */
int ledger_node_set_verification(ledger_conn *c, const char *node_id, double multiplier,
    bool verified, int64_t now);

/* Record the hardware class ("gpu", "cpu", or "" for none) of the node's
 * last proof.  TROOP_ENOTFOUND if the node is unknown. */
int ledger_node_set_class(ledger_conn *c, const char *node_id, const char *hw_class);

/* A failed audit of `node_id`: audit_failed = now (the node is never
 * established again) and its pending earnings are forfeited ('forfeit'
 * row) with an audit_log row naming `actor` and `reason`, in one
 * transaction.  *forfeited (may be NULL) gets the credits forfeited.
 * TROOP_ENOTFOUND if the node is unknown. */
int ledger_node_forfeit(int64_t *forfeited, ledger_conn *c, const char *node_id,
    const char *actor, const char *reason, int64_t now);

/* The verdict of one audit of `node_id` (docs/AUDITS.md), in one
 * transaction.  Passed: audits_passed + 1, suspect cleared, an
 * "audit_pass" audit_log row.  Failed: audits_failed + 1, suspect = now,
 * an "audit_fail" row, then what ledger_node_forfeit does (audit_failed,
 * pending earnings forfeited, its "node_forfeit" row).  `actor`: the
 * auditor's account; `detail` (may be NULL; at most LEDGER_NOTE_MAX
 * bytes): the agreement measured.  *forfeited (may be NULL) gets the
 * credits forfeited.  TROOP_ENOTFOUND if the node is unknown.
 * Thread-safety: per connection. */
int ledger_node_audit(int64_t *forfeited, ledger_conn *c, const char *node_id, bool passed,
    const char *actor, const char *detail, int64_t now);

/* ---- key/value and audit -------------------------------------------------- */

/* Copy the value stored under `key` into buf (cap bytes, NUL-terminated);
 * *len (may be NULL) gets its length.  TROOP_ENOTFOUND if absent;
 * TROOP_ETOOLARGE if it does not fit (nothing copied, *len still set). */
int ledger_kv_get(char *buf, size_t cap, size_t *len, ledger_conn *c, const char *key);

/* Store `value` (text, at most LEDGER_KV_VALUE_MAX bytes) under `key`
 * unless the key exists; the first writer wins, across processes.
 * *inserted (may be NULL) says whether this call stored it.  To share a
 * value such as the ticket signing key: put_if_absent, then kv_get. */
int ledger_kv_put_if_absent(bool *inserted, ledger_conn *c, const char *key,
    const char *value, int64_t now);

/* Replace the value under `key` with `value` only if it is still
 * `expected` (compare and set, across processes); TROOP_ECONFLICT when
 * another writer changed it first or the key is absent: read it again. */
int ledger_kv_replace(ledger_conn *c, const char *key, const char *expected,
    const char *value);

/* Append an audit_log row.  `detail` may be NULL or "". */
int ledger_audit(ledger_conn *c, const char *actor, const char *action,
    const char *detail, int64_t now);

/* ---- the operator's tools (docs/OPERATING.md) ------------------------------ */

/* An account's standing, read by /authorize (one indexed read). */
typedef struct {
	int64_t suspended;                       /* unix time, 0 none */
	char suspend_reason[LEDGER_NOTE_MAX + 1];
	int64_t rate_limit;                      /* requests/s, 0: the default */
} ledger_account_policy;

/* Read `account`'s standing: 0, or TROOP_ENOTFOUND (no such account yet:
 * *out all zero), or another troop_err.  Thread-safety: per connection. */
int ledger_account_policy_get(ledger_account_policy *out, ledger_conn *c,
    const char *account);

typedef enum { LEDGER_TARGET_NODE, LEDGER_TARGET_ACCOUNT } ledger_target;

/* Suspend (`on`) or unsuspend `id` of kind `kind`, with the audit row
 * (actor `admin_id`, action "suspend" or "unsuspend", `reason`) in the same
 * transaction.  TROOP_ENOTFOUND when the ledger has no such node or
 * account. */
int ledger_admin_suspend(ledger_conn *c, ledger_target kind, const char *id, bool on,
    const char *reason, const char *admin_id, int64_t now);

/* Set `account`'s /authorize rate limit (requests a second, 0: the
 * coordinator's default), with its audit row ("rate_limit").
 * TROOP_ENOTFOUND when there is no such account. */
int ledger_admin_rate_limit(ledger_conn *c, const char *account, int64_t per_second,
    const char *reason, const char *admin_id, int64_t now);

typedef struct {
	int64_t id;                               /* increasing with time */
	char actor[LEDGER_ID_MAX + 1];            /* admin, node or account */
	char action[LEDGER_ACTION_MAX + 1];
	char target[LEDGER_ID_MAX + 1];           /* "" none */
	char reason[LEDGER_NOTE_MAX + 1];         /* "" none */
	char detail[LEDGER_DETAIL_MAX + 1];
	int64_t created_at;
} ledger_audit_row;

/* The audit log newest first: rows with id < before_id (0: from the
 * newest), target `target` and action `action` when not "", created at or
 * after `since`; at most `limit` (1 .. LEDGER_TX_LIMIT_MAX).  *out is a
 * malloc'd array (NULL when empty) the caller frees; *next is the cursor
 * of the next page, 0 when this is the last. */
int ledger_audit_page(ledger_audit_row **out, size_t *n, int64_t *next, ledger_conn *c,
    const char *target, const char *action, int64_t since, int limit, int64_t before_id);

/* Nodes in id order after `after` ("" from the first), at most `limit`;
 * *out malloc'd (NULL when empty), the caller frees. */
int ledger_nodes_list(ledger_node **out, size_t *n, ledger_conn *c, const char *after,
    int limit);

typedef struct {
	char account[LEDGER_ID_MAX + 1];
	int64_t balance, trial, reports, disputes, rate_limit, created_at;
	int64_t suspended;
	char suspend_reason[LEDGER_NOTE_MAX + 1];
} ledger_account_row;

/* Accounts in id order after `after` ("" from the first), at most `limit`;
 * *out malloc'd (NULL when empty), the caller frees. */
int ledger_accounts_list(ledger_account_row **out, size_t *n, ledger_conn *c,
    const char *after, int limit);

#endif
