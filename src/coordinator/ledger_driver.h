/*
 * ledger_driver.h - the database driver interface under the ledger, for
 * ledger.c and the driver files only (ledger_sqlite.c, ledger_pg.c).
 *
 * The credit rules live once, in ledger.c; a driver only moves statements
 * and rows (the shape of Redis's ConnectionType or libgit2's
 * git_odb_backend: transport primitives below, logic above).  A driver
 * opens handles, begins / commits / rolls back a write transaction, runs
 * one of the statements of the shared table with typed parameters, steps
 * the rows and reads their columns, counts the rows changed and says
 * whether a failure is worth retrying the whole transaction (SQLite busy,
 * PostgreSQL serialization failure, deadlock or lock timeout).  ledger.c
 * holds the retry loop, the argument checks and every business decision.
 *
 * Statements are written once, in ledger_sql.c, with $1 .. $N placeholders
 * (PostgreSQL's form; SQLite reads "$1" as a named parameter, and its
 * driver binds by name).  A driver overrides a statement only where the
 * SQL really differs (row locks, catalog queries, advisory locks).
 *
 * Threading: a ledger_conn is used by one thread at a time (ledger.h), so
 * a driver keeps at most one open cursor per connection: query() ends the
 * previous one.
 */
#ifndef TROOP_LEDGER_DRIVER_H
#define TROOP_LEDGER_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

/* The shared statement table (ledger_sql.c). */
enum ledger_stmt {
	LS_SCHEMA_EXISTS,   /* one row when schema_version exists (per driver) */
	LS_SCHEMA_CREATE,
	LS_SCHEMA_HAS,
	LS_SCHEMA_INSERT,
	LS_SCHEMA_MAX,
	LS_MIGRATE_LOCK,    /* "" where the begin lock already serialises */
	LS_MIGRATE_UNLOCK,
	LS_NEXT_ID,
	LS_ACCOUNT_EXISTS,
	LS_ACCOUNT_CREATE,
	LS_ACCOUNT_AVAILABLE,
	LS_ACCOUNT_ADD,
	LS_ACCOUNT_DEBIT,
	LS_ACCOUNT_REFUND,
	LS_ACCOUNT_TRIAL_ADD,
	LS_ACCOUNT_EARNED,
	LS_ACCOUNT_MATURE,
	LS_BALANCE,
	LS_TX_INSERT,
	LS_TX_PAGE,
	LS_AUDIT_INSERT,
	LS_RES_INSERT,
	LS_RES_GET,
	LS_RES_LOCK,        /* LS_RES_GET, row-locked where the database can */
	LS_RES_SETTLE,
	LS_RES_EXPIRED,     /* row-locked, skipping rows other sweepers hold */
	LS_RES_RELEASE,
	LS_RES_CLAIM,
	LS_RES_REPORT,
	LS_RES_CLAIMS_DUE,
	LS_TOTALS,
	LS_NODE_GET,
	LS_NODE_CREATE,
	LS_NODE_UPDATE,
	LS_NODE_VERIFY,
	LS_NODE_JOBS,       /* counts a job, adds pending */
	LS_NODE_JOBS_CREATE, /* the same for a node the ledger does not know */
	LS_NODE_MATURE,
	LS_NODES_MATURABLE,
	LS_NODE_PAYER_INSERT,
	LS_NODE_PAYER_COUNT,
	LS_NODE_AUDIT_FAIL, /* returns pending and owner before they change */
	LS_NODE_FORFEIT,
	LS_NODE_AUDIT_PASS,
	LS_NODE_AUDIT_SUSPECT,
	LS_NODE_CLASS,
	LS_INVITE_INSERT,
	LS_INVITE_REDEEM,
	LS_KV_GET,
	LS_KV_INSERT,
	LS_KV_REPLACE,
	LS_ACCOUNT_REPORTED, /* counts a report and a client dispute */
	LS_NODE_REFUSED,
	LS_RES_CLIENT_DISPUTE,
	LS_REPORT_ACCOUNTS, /* the operator report (ledger_admin_report) */
	LS_REPORT_NODES,
	LS_TOP_EARNERS,
	LS_AUDIT_PAGE,      /* the operator's tools (ledger.c "operator") */
	LS_AUDIT_PAGE_TARGET, /* ... of one target: index (target, id) */
	LS_AUDIT_PAGE_ACTION, /* ... of one action: index (action, id) */
	LS_NODE_SUSPEND,
	LS_ACCOUNT_SUSPEND,
	LS_ACCOUNT_RATE,
	LS_ACCOUNT_NAME,
	LS_ACCOUNT_POLICY,
	LS_NODES_LIST,
	LS_ACCOUNTS_LIST,
	LS_COUNT
};

/* What group commit runs between two items of a batch (ledger.c's
 * batch_run): the last item's savepoint released and the next one's set,
 * one script (one round trip on a server).  A driver's script() takes it. */
#define LEDGER_SQL_SAVEPOINT_NEXT "RELEASE SAVEPOINT troop_item; SAVEPOINT troop_item"

/* Column lists a driver's override may reuse. */
#define LEDGER_SQL_RES_GET "SELECT job_id, requester, node_id, worker, model, amount, " \
	"max_seconds, multiplier, status, created_at, expires_at, closed_at, charged, " \
	"refunded, duration_ms, trial_amount, report_wanted, claim_ms, claim_tokens_in, " \
	"claim_tokens_out, claim_outcome, claimed_at, report_ms, report_tokens, " \
	"report_outcome, reported_at, disputed, claim_digest, report_digest, " \
	"report_max_tps, client_disputed, 0 FROM reservations WHERE job_id = $1"
/* the same, for settling: also its node's suspension (settles at 0).  Only
 * here, so that /authorize's duplicate check never reads the nodes table */
#define LEDGER_SQL_RES_LOCK "SELECT job_id, requester, node_id, worker, model, amount, " \
	"max_seconds, multiplier, status, created_at, expires_at, closed_at, charged, " \
	"refunded, duration_ms, trial_amount, report_wanted, claim_ms, claim_tokens_in, " \
	"claim_tokens_out, claim_outcome, claimed_at, report_ms, report_tokens, " \
	"report_outcome, reported_at, disputed, claim_digest, report_digest, " \
	"report_max_tps, client_disputed, " \
	"COALESCE((SELECT n.suspended FROM nodes n WHERE n.node_id = reservations.node_id), 0) " \
	"FROM reservations WHERE job_id = $1"
/* a held claim is settled by ledger_settle_claims, never released */
#define LEDGER_SQL_RES_EXPIRED "SELECT job_id, requester, worker, model, amount, " \
	"trial_amount " \
	"FROM reservations WHERE status = 'open' AND expires_at < $1 AND claimed_at = 0 " \
	"ORDER BY expires_at LIMIT $2"

/* The portable SQL of each statement; NULL where every driver must give
 * its own.  "" (here or in an override) means: nothing to run. */
extern const char *const ledger_sql[LS_COUNT];

/* A typed statement parameter ($1 is the first of an array). */
enum ledger_param_type { LEDGER_P_NULL, LEDGER_P_I64, LEDGER_P_F64, LEDGER_P_TEXT };

struct ledger_param {
	enum ledger_param_type type;
	int64_t i;
	double f;
	const char *s;  /* borrowed for the duration of query() */
};

struct ledger_driver;

struct ledger_batch;
struct ledger_ids;

/* A driver's handles embed these as their FIRST member.  A driver makes
 * its handle zeroed (calloc): the members after drv are ledger.c's. */
struct ledger {
	const struct ledger_driver *drv;
	struct ledger_batch *batch;  /* the group commit writer, when started */
	struct ledger_ids *ids;      /* log row ids handed out in blocks */
};

struct ledger_conn {
	const struct ledger_driver *drv;
	ledger *owner;
	bool ids_fresh;  /* this transaction took a new block of ids (ledger.c) */
};

/* Every function returns 0 or a negative troop_err with the thread's
 * message set (naming `what`), unless it says otherwise. */
struct ledger_driver {
	const char *name;
	/* The database admits one writer at a time, whole-file (SQLite): a
	 * block of ids is taken inside the transaction that needs it. */
	bool one_writer;
	/* Overrides of ledger_sql, indexed by enum ledger_stmt; NULL entries
	 * take the shared SQL. */
	const char *const *sql;
	/* Make the handle for `target` (the URL without its scheme): parse it,
	 * create what must exist before a connection (the SQLite file, mode
	 * 0600).  Migrations are ledger.c's. */
	int (*open)(ledger **out, const char *target);
	void (*close)(ledger *l);
	/* host:port/db or a path, for log lines; never holds a password. */
	const char *(*describe)(const ledger *l);
	int (*conn_open)(ledger_conn **out, ledger *l);
	void (*conn_close)(ledger_conn *c);
	/* Before a call, outside any transaction: reconnect when the last call
	 * lost the connection. */
	int (*ready)(ledger_conn *c);
	/* Whether the connection is gone. */
	bool (*lost)(ledger_conn *c);
	/* A write transaction: serialised against other writers of the same
	 * rows (SQLite: BEGIN IMMEDIATE, the whole file).  begin clears the
	 * retry flag first; rollback is safe without an open transaction. */
	int (*begin)(ledger_conn *c);
	int (*commit)(ledger_conn *c);
	void (*rollback)(ledger_conn *c);
	/* Whether the last failure (from begin, next, commit) is a busy or
	 * serialization failure that a new attempt of the transaction may not
	 * meet. */
	bool (*retryable)(ledger_conn *c);
	/* Run statement `id` with params p[0..n-1] ($1..$n); its rows are then
	 * read with next and the col_ functions, until finish. */
	int (*query)(ledger_conn *c, enum ledger_stmt id, const struct ledger_param *p,
	    int n, const char *what);
	/* 1: a row is current; 0: no more rows; or a troop_err. */
	int (*next)(ledger_conn *c);
	/* Columns of the current row, from 0.  col_text never returns NULL
	 * (NULL reads as ""); the pointer lives until next or finish; *len
	 * (may be NULL) gets its length in bytes. */
	int64_t (*col_i64)(ledger_conn *c, int col);
	double (*col_f64)(ledger_conn *c, int col);
	const char *(*col_text)(ledger_conn *c, int col, size_t *len);
	/* End the cursor (no-op without one). */
	void (*finish)(ledger_conn *c);
	/* Rows changed by the last finished INSERT / UPDATE. */
	int64_t (*changes)(ledger_conn *c);
	/* Run a migration script (several statements, no parameters) inside
	 * the open transaction. */
	int (*script)(ledger_conn *c, const char *sql);
};

/* Every member but name and sql, for a driver whose functions are named
 * PREFIX_open, PREFIX_close, ... : a driver that lacks one does not
 * compile. */
#define LEDGER_DRIVER_FUNCS(p) \
	.open = p##_open, .close = p##_close, .describe = p##_describe, \
	.conn_open = p##_conn_open, .conn_close = p##_conn_close, \
	.ready = p##_ready, .lost = p##_lost, .begin = p##_begin, .commit = p##_commit, \
	.rollback = p##_rollback, .retryable = p##_retryable, \
	.query = p##_query, .next = p##_next, .col_i64 = p##_col_i64, \
	.col_f64 = p##_col_f64, .col_text = p##_col_text, .finish = p##_finish, \
	.changes = p##_changes, .script = p##_script

extern const struct ledger_driver ledger_sqlite_driver;
#ifdef TROOP_HAVE_PQ
extern const struct ledger_driver ledger_pg_driver;

/* Parse a PostgreSQL URL (what follows "postgresql://") as the driver
 * would, without connecting: 0 and host:port/dbname (no credentials) in
 * desc, or TROOP_EINVAL naming what libpq refused.  For the fuzz harness.
 * Thread-safe. */
int ledger_pg_url_check(const char *target, char *desc, size_t desc_len);
#endif

/* The SQL driver `d` runs for statement `id` (its override, else the
 * shared one); "" when there is nothing to run.  Never NULL. */
const char *ledger_stmt_sql(const struct ledger_driver *d, enum ledger_stmt id);

/* Copy NUL-terminated `src` (NULL reads as "") into dst[cap], truncating
 * to cap - 1 bytes.  Column values were validated on the way in, so
 * truncation only happens on a tampered database. */
void ledger_copy_str(char *dst, size_t cap, const char *src);

#endif
