/*
 * ledger_pg.c - the production ledger backend on PostgreSQL (libpq), for
 * several coordinators sharing one database (DESIGN.md section 11).
 *
 * Each ledger_conn owns one PGconn and prepares its statements lazily, once
 * per session.  Every write runs in a READ COMMITTED transaction that takes
 * row locks in one global order, so two writers can wait for each other
 * but never deadlock:
 *
 *     reservation row -> account rows (sorted by account id) -> node row
 *       -> counters 'transactions' -> counters 'audit_log'
 *
 * ledger_reserve debits with one conditional UPDATE (balance >= amount),
 * which locks the account row: concurrent reservations on one account,
 * from any number of coordinators, queue on that lock and each sees the
 * balance the previous one left.  Settlement locks its reservation row
 * FOR UPDATE first; the release sweep takes expired reservations FOR
 * UPDATE SKIP LOCKED, so sweepers on several coordinators share the work.
 * Row ids of the transaction log and audit log come from the counters
 * table (UPDATE ... RETURNING), locked last and held to commit: inserts of
 * transaction rows are serialised, which keeps ids increasing with commit
 * order.  A transaction that fails on a serialization failure, a deadlock
 * or a lock timeout is rolled back and retried (3 attempts) before
 * TROOP_EUNAVAIL.  lock_timeout defaults to 5 s; a URL may set its own
 * with options=-c%20lock_timeout%3DMS.
 *
 * Connection loss: a call that loses the connection after it started
 * writing returns TROOP_EUNAVAIL (a commit whose answer was lost may or
 * may not have happened, so it is never repeated behind the caller's
 * back), and the next call on that ledger_conn reconnects first.  A call
 * that finds the connection already dead before anything was sent that
 * could have changed data (BEGIN, or a read) reconnects and goes on, so
 * the first call after a server restart does not fail.  While the server
 * is down every call tries one reconnect and returns TROOP_EUNAVAIL.
 * Migrations run under a session advisory lock, so coordinators starting
 * together apply each one once.
 */
#ifdef TROOP_HAVE_PQ

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "ledger.h"
#include "log.h"
#include "migrations.h"

#define TXN_ATTEMPTS 3
#define RELEASE_BATCH 256
#define MAX_PARAMS 12
#define MIGRATION_LOCK_KEY "7418237433217165"  /* pg_advisory_lock key */
#define DESC_MAX 300

extern const struct ledger_ops ledger_pg_ops;

struct pg_ledger {
	struct ledger base;
	char *url;                /* full postgresql:// URL (may hold a password) */
	char desc[DESC_MAX];      /* host:port/dbname, for messages */
};

enum stmt_id {
	ST_SCHEMA_HAS,
	ST_SCHEMA_INSERT,
	ST_SCHEMA_MAX,
	ST_NEXT_ID,
	ST_ACCOUNT_EXISTS,
	ST_ACCOUNT_CREATE,
	ST_ACCOUNT_AVAILABLE,
	ST_ACCOUNT_ADD,
	ST_ACCOUNT_DEBIT,
	ST_BALANCE,
	ST_TX_INSERT,
	ST_TX_PAGE,
	ST_AUDIT_INSERT,
	ST_RES_INSERT,
	ST_RES_GET,
	ST_RES_LOCK,
	ST_RES_SETTLE,
	ST_RES_EXPIRED,
	ST_RES_RELEASE,
	ST_TOTALS,
	ST_NODE_GET,
	ST_NODE_UPSERT,
	ST_NODE_VERIFY,
	ST_NODE_JOBS,
	ST_KV_GET,
	ST_KV_INSERT,
	ST_COUNT
};

#define RES_COLS "job_id, requester, node_id, worker, model, amount, max_seconds, " \
	"multiplier, status, created_at, expires_at, closed_at, charged, refunded, duration_ms"
#define TX_COLS "id, type, job_id, requester, worker, credits, duration_ms, model, note, " \
	"created_at"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_SCHEMA_HAS] = "SELECT 1 FROM schema_version WHERE version = $1",
	[ST_SCHEMA_INSERT] = "INSERT INTO schema_version (version, name, applied_at) "
	    "VALUES ($1, $2, $3)",
	[ST_SCHEMA_MAX] = "SELECT COALESCE(MAX(version), 0) FROM schema_version",
	[ST_NEXT_ID] = "UPDATE counters SET value = value + $2 WHERE name = $1 RETURNING value",
	[ST_ACCOUNT_EXISTS] = "SELECT 1 FROM accounts WHERE account = $1",
	[ST_ACCOUNT_CREATE] = "INSERT INTO accounts (account, balance, created_at) "
	    "VALUES ($1, $2, $3) ON CONFLICT (account) DO NOTHING",
	[ST_ACCOUNT_AVAILABLE] = "SELECT balance FROM accounts WHERE account = $1",
	[ST_ACCOUNT_ADD] = "INSERT INTO accounts (account, balance, created_at) "
	    "VALUES ($1, $2, $3) ON CONFLICT (account) DO UPDATE "
	    "SET balance = accounts.balance + excluded.balance",
	/* the check and the debit in one statement, under the row lock */
	[ST_ACCOUNT_DEBIT] = "UPDATE accounts SET balance = balance - $2 "
	    "WHERE account = $1 AND balance >= $2 RETURNING balance",
	[ST_BALANCE] = "SELECT a.balance, (SELECT COALESCE(SUM(r.amount), 0) "
	    "FROM reservations r WHERE r.requester = a.account AND r.status = 'open') "
	    "FROM accounts a WHERE a.account = $1",
	[ST_TX_INSERT] = "INSERT INTO transactions (" TX_COLS ") "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	[ST_TX_PAGE] = "SELECT " TX_COLS " FROM ("
	    "SELECT " TX_COLS " FROM transactions WHERE requester = $1 AND id < $2 "
	    "ORDER BY id DESC LIMIT $3) AS a "
	    "UNION "
	    "SELECT " TX_COLS " FROM ("
	    "SELECT " TX_COLS " FROM transactions WHERE worker = $1 AND id < $2 "
	    "ORDER BY id DESC LIMIT $3) AS b "
	    "ORDER BY id DESC LIMIT $3",
	[ST_AUDIT_INSERT] = "INSERT INTO audit_log (id, actor, action, detail, created_at) "
	    "VALUES ($1, $2, $3, $4, $5)",
	[ST_RES_INSERT] = "INSERT INTO reservations (job_id, requester, node_id, worker, "
	    "model, amount, max_seconds, multiplier, status, created_at, expires_at, "
	    "closed_at, charged, refunded, duration_ms, tokens_in, tokens_out, outcome) "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $10, 0, 0, 0, 0, 0, 0, '')",
	[ST_RES_GET] = "SELECT " RES_COLS " FROM reservations WHERE job_id = $1",
	[ST_RES_LOCK] = "SELECT " RES_COLS " FROM reservations WHERE job_id = $1 FOR UPDATE",
	[ST_RES_SETTLE] = "UPDATE reservations SET status = 'settled', closed_at = $2, "
	    "charged = $3, refunded = $4, duration_ms = $5, tokens_in = $6, tokens_out = $7, "
	    "outcome = $8 WHERE job_id = $1 AND status = 'open'",
	[ST_RES_EXPIRED] = "SELECT job_id, requester, worker, model, amount FROM reservations "
	    "WHERE status = 'open' AND expires_at < $1 ORDER BY expires_at LIMIT $2 "
	    "FOR UPDATE SKIP LOCKED",
	[ST_RES_RELEASE] = "UPDATE reservations SET status = 'released', closed_at = $2, "
	    "refunded = amount WHERE job_id = $1 AND status = 'open'",
	[ST_TOTALS] = "SELECT "
	    "(SELECT COALESCE(SUM(credits), 0) FROM transactions WHERE type IN ('grant', 'admin')), "
	    "(SELECT COALESCE(SUM(balance), 0) FROM accounts), "
	    "(SELECT COUNT(*) FROM accounts), "
	    "(SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE status = 'open'), "
	    "(SELECT COUNT(*) FROM reservations WHERE status = 'open')",
	[ST_NODE_GET] = "SELECT owner, name, multiplier, verified, verified_at, jobs_ok, "
	    "jobs_failed, first_seen, last_seen FROM nodes WHERE node_id = $1",
	/* xmax = 0 only on a freshly inserted row: tells insert from update */
	[ST_NODE_UPSERT] = "INSERT INTO nodes (node_id, owner, name, multiplier, verified, "
	    "verified_at, jobs_ok, jobs_failed, first_seen, last_seen) "
	    "VALUES ($1, $2, $3, 1.0, 0, 0, 0, 0, $4, $4) ON CONFLICT (node_id) DO UPDATE "
	    "SET owner = excluded.owner, name = excluded.name, last_seen = excluded.last_seen "
	    "RETURNING (xmax = 0)",
	[ST_NODE_VERIFY] = "UPDATE nodes SET multiplier = $2, verified = $3, verified_at = $4 "
	    "WHERE node_id = $1",
	[ST_NODE_JOBS] = "UPDATE nodes SET jobs_ok = jobs_ok + $2, "
	    "jobs_failed = jobs_failed + $3 WHERE node_id = $1",
	[ST_KV_GET] = "SELECT value FROM kv WHERE name = $1",
	[ST_KV_INSERT] = "INSERT INTO kv (name, value, created_at) VALUES ($1, $2, $3) "
	    "ON CONFLICT (name) DO NOTHING",
};

struct pg_conn {
	struct ledger_conn base;
	PGconn *db;
	bool prepared[ST_COUNT];
	bool retry;   /* the last failure is worth retrying the transaction */
	bool stale;   /* reconnect before the next call (server turned read-only) */
};

static struct pg_conn *conn_of(ledger_conn *c)
{
	return (struct pg_conn *)c;
}

static struct pg_ledger *pgl_of(const struct pg_conn *c)
{
	return (struct pg_ledger *)c->base.owner;
}

/* ---- parameters ------------------------------------------------------------- */

/* Text-format parameters; numbers are printed into the struct itself. */
struct args {
	const char *v[MAX_PARAMS];
	char num[MAX_PARAMS][32];
	int n;
};

static void a_text(struct args *a, const char *s)
{
	a->v[a->n++] = s ? s : "";
}

static void a_i64(struct args *a, int64_t x)
{
	snprintf(a->num[a->n], sizeof a->num[a->n], "%lld", (long long)x);
	a->v[a->n] = a->num[a->n];
	a->n++;
}

static void a_f64(struct args *a, double x)
{
	snprintf(a->num[a->n], sizeof a->num[a->n], "%.17g", x);
	a->v[a->n] = a->num[a->n];
	a->n++;
}

static const char *val(const PGresult *r, int row, int col)
{
	return PQgetvalue(r, row, col);
}

static int64_t val_i64(const PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static double val_f64(const PGresult *r, int row, int col)
{
	return strtod(PQgetvalue(r, row, col), NULL);
}

/* ---- errors and statements -------------------------------------------------- */

/* The connection's last error as one line (libpq ends it with '\n'). */
static void conn_error(char *buf, size_t cap, PGconn *db)
{
	const char *m = db ? PQerrorMessage(db) : "no connection";
	snprintf(buf, cap, "%s", (m && *m) ? m : "unknown error");
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = (p[1] == '\0') ? '\0' : ' ';
}

static bool state_is(const char *state, const char *code)
{
	return state != NULL && strcmp(state, code) == 0;
}

static bool state_class(const char *state, const char *cls)
{
	return state != NULL && strncmp(state, cls, 2) == 0;
}

/* Map a failed result (or a NULL one) to a troop_err with a message naming
 * `what`; marks the connection for a retry when that could help. */
static int pg_fail(struct pg_conn *c, const PGresult *res, const char *what)
{
	char msg[512];
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (primary != NULL && *primary)
		snprintf(msg, sizeof msg, "%s", primary);
	else
		conn_error(msg, sizeof msg, c->db);

	if (c->db == NULL || PQstatus(c->db) != CONNECTION_OK || state == NULL)
		return troop_error_set(TROOP_EUNAVAIL, "ledger database unavailable (%s): %s",
		    what, msg);
	if (state_is(state, "40001") || state_is(state, "40P01") ||
	    state_is(state, "55P03") || state_is(state, "57014")) {
		c->retry = true;
		return troop_error_set(TROOP_EUNAVAIL, "ledger database busy (%s): %s", what, msg);
	}
	if (state_class(state, "23"))
		return troop_error_set(TROOP_ECONFLICT, "ledger: %s: %s", what, msg);
	/* A standby after a failover: reconnect next time, so that a URL with
	 * several hosts and target_session_attrs=read-write finds the primary. */
	if (state_is(state, "25006"))
		c->stale = true;
	/* connection trouble, shutdown, out of disk/memory/connections,
	 * system errors, a read-only (standby) server */
	if (state_class(state, "08") || state_class(state, "53") || state_class(state, "57") ||
	    state_class(state, "58") || state_is(state, "25006"))
		return troop_error_set(TROOP_EUNAVAIL, "ledger database unavailable (%s): %s",
		    what, msg);
	return troop_error_set(TROOP_ERR, "ledger: %s: %s (SQLSTATE %s)", what, msg, state);
}

static void quiet_notices(void *arg, const char *message)
{
	(void)arg;
	log_debug("ledger_pg_notice", "message=%s", message);
}

/* Make sure the connection is up before a call starts (never inside a
 * transaction): reconnect if the last call lost it. */
static int ready(struct pg_conn *c)
{
	if (PQstatus(c->db) == CONNECTION_OK && !c->stale)
		return 0;
	c->stale = false;
	PQreset(c->db);
	memset(c->prepared, 0, sizeof c->prepared);
	if (PQstatus(c->db) != CONNECTION_OK) {
		char msg[512];
		conn_error(msg, sizeof msg, c->db);
		return troop_error_set(TROOP_EUNAVAIL, "ledger database %s unavailable: %s",
		    pgl_of(c)->desc, msg);
	}
	PQsetNoticeProcessor(c->db, quiet_notices, NULL);
	log_info("ledger_reconnect", "database=%s", pgl_of(c)->desc);
	return 0;
}

/* Run statement `id` with `a`; *out (may be NULL: cleared here) gets the
 * result, to be PQclear'ed by the caller. */
static int exec_st(PGresult **out, struct pg_conn *c, enum stmt_id id, const struct args *a,
    const char *what)
{
	PGresult *r;
	if (out != NULL)
		*out = NULL;
	if (!c->prepared[id]) {
		char name[16];
		snprintf(name, sizeof name, "troop_%d", (int)id);
		r = PQprepare(c->db, name, stmt_sql[id], 0, NULL);
		if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
			int err = pg_fail(c, r, "prepare");
			PQclear(r);
			return err;
		}
		PQclear(r);
		c->prepared[id] = true;
	}
	char name[16];
	snprintf(name, sizeof name, "troop_%d", (int)id);
	r = PQexecPrepared(c->db, name, a ? a->n : 0, a ? a->v : NULL, NULL, NULL, 0);
	ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		int err = pg_fail(c, r, what);
		PQclear(r);
		return err;
	}
	if (out != NULL)
		*out = r;
	else
		PQclear(r);
	return 0;
}

/* Rows changed by a command result. */
static long changed(const PGresult *r)
{
	return strtol(PQcmdTuples((PGresult *)r), NULL, 10);
}

/* Run statement `id` and say how many rows it changed in *n. */
static int exec_count(long *n, struct pg_conn *c, enum stmt_id id, const struct args *a,
    const char *what)
{
	PGresult *r = NULL;
	int err = exec_st(&r, c, id, a, what);
	if (err == 0)
		*n = changed(r);
	PQclear(r);
	return err;
}

/* Plain SQL (transaction control, migrations). */
static int exec_sql(struct pg_conn *c, const char *sql, const char *what)
{
	PGresult *r = PQexec(c->db, sql);
	ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	int err = 0;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		err = pg_fail(c, r, what);
	PQclear(r);
	return err;
}

/* ---- transactions ---------------------------------------------------------------- */

typedef int (*txn_fn)(struct pg_conn *c, void *arg);

static void rollback(struct pg_conn *c)
{
	if (PQstatus(c->db) != CONNECTION_OK)
		return;
	if (PQtransactionStatus(c->db) == PQTRANS_IDLE)
		return;
	PGresult *r = PQexec(c->db, "ROLLBACK");
	PQclear(r);
}

/* The connection is gone (the server closed it, or it was never up). */
static bool lost(const struct pg_conn *c)
{
	return PQstatus(c->db) != CONNECTION_OK;
}

/* Run fn inside BEGIN .. COMMIT; roll back on failure; retry the whole
 * transaction when it failed on a serialization failure, a deadlock or a
 * lock timeout.  When BEGIN itself finds the connection dead (the server
 * restarted since the last call) nothing was written: reconnect once and
 * start over.  A connection lost after BEGIN fails the call with
 * TROOP_EUNAVAIL.  fn must be re-runnable. */
static int with_txn(struct pg_conn *c, txn_fn fn, void *arg)
{
	bool reconnected = false;
	int attempt = 1;
	for (;;) {
		c->retry = false;
		int err = ready(c);
		if (err)
			return err;
		if ((err = exec_sql(c, "BEGIN", "begin transaction")) != 0) {
			if (lost(c) && !reconnected) {
				reconnected = true;
				continue;
			}
			return err;
		}
		err = fn(c, arg);
		if (err == 0)
			err = exec_sql(c, "COMMIT", "commit");
		if (err == 0)
			return 0;
		char msg[512];
		snprintf(msg, sizeof msg, "%s", troop_error_msg());
		rollback(c);
		troop_error_set(err, "%s", msg);
		if (!c->retry || attempt >= TXN_ATTEMPTS)
			return err;
		log_warn("ledger_busy", "attempt=%d of=%d retrying=1", attempt, TXN_ATTEMPTS);
		struct timespec ts = { 0, (1000000L + (long)(rand() % 4000000)) * attempt };
		nanosleep(&ts, NULL);
		attempt++;
	}
}

/* A read outside any transaction: reconnects first when needed, and once
 * more when the connection turns out dead (reads are safe to repeat). */
static int exec_read(PGresult **out, struct pg_conn *c, enum stmt_id id, const struct args *a,
    const char *what)
{
	int err = ready(c);
	if (err == 0)
		err = exec_st(out, c, id, a, what);
	if (err != 0 && lost(c)) {
		if ((err = ready(c)) == 0)
			err = exec_st(out, c, id, a, what);
	}
	return err;
}

/* Allocate `n` consecutive ids from counter `name`; *first gets the first.
 * Takes the counter row's lock until commit: callers do this last. */
static int next_ids(int64_t *first, struct pg_conn *c, const char *name, int64_t n)
{
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	a_text(&a, name);
	a_i64(&a, n);
	int err = exec_st(&r, c, ST_NEXT_ID, &a, "allocate id");
	if (err)
		return err;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return troop_error_set(TROOP_ERR, "ledger: counter '%s' is missing", name);
	}
	*first = val_i64(r, 0, 0) - n + 1;
	PQclear(r);
	return 0;
}

struct txrow {
	const char *type, *job_id, *requester, *worker, *model, *note;
	int64_t credits, duration_ms, now;
};

static int insert_tx_id(struct pg_conn *c, int64_t id, const struct txrow *t)
{
	struct args a = { .n = 0 };
	a_i64(&a, id);
	a_text(&a, t->type);
	a_text(&a, t->job_id);
	a_text(&a, t->requester);
	a_text(&a, t->worker);
	a_i64(&a, t->credits);
	a_i64(&a, t->duration_ms);
	a_text(&a, t->model);
	a_text(&a, t->note);
	a_i64(&a, t->now);
	return exec_st(NULL, c, ST_TX_INSERT, &a, "insert transaction row");
}

/* Insert `n` transaction rows (n >= 1) with consecutive ids. */
static int insert_txs(int64_t *first_id, struct pg_conn *c, const struct txrow *t, int n)
{
	int64_t id;
	int err = next_ids(&id, c, "transactions", n);
	for (int i = 0; err == 0 && i < n; i++)
		err = insert_tx_id(c, id + i, &t[i]);
	if (err == 0 && first_id != NULL)
		*first_id = id;
	return err;
}

static int insert_audit(struct pg_conn *c, const char *actor, const char *action,
    const char *detail, int64_t now)
{
	int64_t id;
	int err = next_ids(&id, c, "audit_log", 1);
	if (err)
		return err;
	struct args a = { .n = 0 };
	a_i64(&a, id);
	a_text(&a, actor);
	a_text(&a, action);
	a_text(&a, detail);
	a_i64(&a, now);
	return exec_st(NULL, c, ST_AUDIT_INSERT, &a, "insert audit row");
}

/* Add `credits` (>= 0) to `account`, creating it with them if missing;
 * locks the account row. */
static int account_add(struct pg_conn *c, const char *account, int64_t credits, int64_t now)
{
	struct args a = { .n = 0 };
	a_text(&a, account);
	a_i64(&a, credits);
	a_i64(&a, now);
	return exec_st(NULL, c, ST_ACCOUNT_ADD, &a, "credit account");
}

/* ---- opening and migrations --------------------------------------------------- */

static void conn_free(struct pg_conn *c)
{
	if (c == NULL)
		return;
	PQfinish(c->db);
	free(c);
}

static int conn_new(struct pg_conn **out, struct pg_ledger *l)
{
	/* Our defaults first: values in the URL (expanded from dbname) win. */
	const char *const keys[] = { "connect_timeout", "options", "application_name",
		"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
		"dbname", NULL };
	const char *const vals[] = { "5", "-c lock_timeout=5000", "troop-coordinator",
		"1", "30", "10", "3", l->url, NULL };
	struct pg_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	c->base.ops = &ledger_pg_ops;
	c->base.owner = &l->base;
	c->db = PQconnectdbParams(keys, vals, 1);
	if (c->db == NULL) {
		free(c);
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	}
	if (PQstatus(c->db) != CONNECTION_OK) {
		char msg[512];
		conn_error(msg, sizeof msg, c->db);
		conn_free(c);
		return troop_error_set(TROOP_EUNAVAIL, "cannot connect to ledger database %s: %s",
		    l->desc, msg);
	}
	PQsetNoticeProcessor(c->db, quiet_notices, NULL);
	*out = c;
	return 0;
}

struct migrate_arg {
	const struct troop_migration *m;
	bool applied;
};

static int migrate_one(struct pg_conn *c, void *arg)
{
	struct migrate_arg *m = arg;
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	m->applied = false;
	/* Look before creating: a coordinator whose database user may not
	 * create tables can still start once the schema is in place. */
	r = PQexec(c->db, "SELECT to_regclass('schema_version') IS NOT NULL");
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		int e = pg_fail(c, r, "read schema_version");
		PQclear(r);
		return e;
	}
	bool have_table = PQntuples(r) == 1 && val(r, 0, 0)[0] == 't';
	PQclear(r);
	int err = 0;
	if (!have_table && (err = exec_sql(c, "CREATE TABLE schema_version ("
	    "version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
	    "create schema_version")) != 0)
		return err;
	a_i64(&a, m->m->version);
	if ((err = exec_st(&r, c, ST_SCHEMA_HAS, &a, "read schema_version")) != 0)
		return err;
	int have = PQntuples(r);
	PQclear(r);
	if (have > 0)
		return 0;  /* applied before */

	r = PQexec(c->db, m->m->sql);
	ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		err = pg_fail(c, r, "migration");
		PQclear(r);
		char msg[512];  /* the message buffer cannot be its own argument */
		snprintf(msg, sizeof msg, "%s", troop_error_msg());
		return troop_error_set(err == TROOP_ECONFLICT ? TROOP_ERR : err,
		    "ledger migration %s failed: %s", m->m->name, msg);
	}
	PQclear(r);
	a.n = 0;
	a_i64(&a, m->m->version);
	a_text(&a, m->m->name);
	a_i64(&a, (int64_t)time(NULL));
	if ((err = exec_st(NULL, c, ST_SCHEMA_INSERT, &a, "record migration")) == 0)
		m->applied = true;
	return err;
}

static int pg_schema_version(int *out, ledger_conn *lc)
{
	struct pg_conn *c = conn_of(lc);
	PGresult *r = NULL;
	int err = exec_read(&r, c, ST_SCHEMA_MAX, NULL, "read schema version");
	if (err)
		return err;
	*out = PQntuples(r) == 1 ? (int)val_i64(r, 0, 0) : 0;
	PQclear(r);
	return 0;
}

/* Apply every missing migration, one transaction each, holding a session
 * advisory lock so that coordinators starting together take turns. */
static int migrate(struct pg_conn *c, const char *desc)
{
	int err = exec_sql(c, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")",
	    "take the migration lock");
	if (err)
		return err;
	int known = 0;
	for (int i = 0; i < troop_migrations_count; i++) {
		struct migrate_arg m = { &troop_migrations[i], false };
		if ((err = with_txn(c, migrate_one, &m)) != 0) {
			if (strncmp(troop_error_msg(), "ledger migration", 16) != 0)
				troop_error_set(err, "ledger migration %s failed: %s", m.m->name,
				    troop_error_msg());
			err = err == TROOP_ECONFLICT ? TROOP_ERR : err;
			break;
		}
		if (m.applied)
			log_info("ledger_migrate", "database=%s migration=%s", desc, m.m->name);
		if (m.m->version > known)
			known = m.m->version;
	}
	if (err == 0) {
		int have = 0;
		err = pg_schema_version(&have, &c->base);
		if (err == 0 && have > known)
			log_warn("ledger_schema_newer", "database=%s version=%d known=%d", desc, have,
			    known);
	}
	/* keep the first error's message */
	char msg[512];
	snprintf(msg, sizeof msg, "%s", troop_error_msg());
	int uerr = exec_sql(c, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")",
	    "release the migration lock");
	if (err != 0)
		troop_error_set(err, "%s", msg);
	return err ? err : uerr;
}

static void pg_close(ledger *l)
{
	struct pg_ledger *p = (struct pg_ledger *)l;
	if (p == NULL)
		return;
	if (p->url != NULL) {
		memset(p->url, 0, strlen(p->url));  /* may hold a password */
		free(p->url);
	}
	free(p);
}

/* Parse the URL (refusing what libpq would refuse) and describe it as
 * host:port/dbname for messages, without user or password. */
static int parse_url(struct pg_ledger *p, const char *target)
{
	size_t n = strlen("postgresql://") + strlen(target) + 1;
	if ((p->url = malloc(n)) == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	snprintf(p->url, n, "postgresql://%s", target);

	char *emsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(p->url, &emsg);
	if (opts == NULL) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", emsg ? emsg : "out of memory");
		PQfreemem(emsg);
		for (char *q = msg; *q; q++)
			if (*q == '\n')
				*q = ' ';
		return troop_error_set(emsg ? TROOP_EINVAL : TROOP_ENOMEM,
		    "database URL: not a valid PostgreSQL URL: %s", msg);
	}
	const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0 && host == NULL)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
		else if (strcmp(o->keyword, "user") == 0)
			user = o->val;
	}
	snprintf(p->desc, sizeof p->desc, "%.100s:%.16s/%.100s", host ? host : "localhost",
	    port ? port : "5432", db ? db : (user ? user : "(default)"));
	PQconninfoFree(opts);
	return 0;
}

static int pg_open(ledger **out, const char *target)
{
	int err;
	struct pg_conn *c = NULL;
	struct pg_ledger *p = calloc(1, sizeof *p);
	if (p == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	p->base.ops = &ledger_pg_ops;
	if ((err = parse_url(p, target)) != 0)
		goto fail;
	if ((err = conn_new(&c, p)) != 0)
		goto fail;
	if ((err = migrate(c, p->desc)) != 0)
		goto fail;
	conn_free(c);
	*out = &p->base;
	return 0;
fail:
	conn_free(c);
	pg_close(&p->base);
	return err;
}

static int pg_conn_open(ledger_conn **out, ledger *l)
{
	struct pg_conn *c;
	int err = conn_new(&c, (struct pg_ledger *)l);
	if (err)
		return err;
	*out = &c->base;
	return 0;
}

static void pg_conn_close(ledger_conn *lc)
{
	conn_free(conn_of(lc));
}

/* ---- accounts ------------------------------------------------------------- */

struct ensure_arg {
	const char *account;
	int64_t starter, now;
	bool created;
};

static int ensure_txn(struct pg_conn *c, void *arg)
{
	struct ensure_arg *e = arg;
	struct args a = { .n = 0 };
	long n = 0;
	e->created = false;
	a_text(&a, e->account);
	a_i64(&a, e->starter);
	a_i64(&a, e->now);
	/* a concurrent creator holds the key: this waits, then does nothing */
	int err = exec_count(&n, c, ST_ACCOUNT_CREATE, &a, "create account");
	if (err || n != 1)
		return err;
	e->created = true;
	if (e->starter == 0)
		return 0;
	struct txrow t = { .type = "grant", .requester = e->account,
		.credits = e->starter, .now = e->now };
	return insert_txs(NULL, c, &t, 1);
}

static int pg_ensure_account(bool *created, ledger_conn *lc, const char *account,
    int64_t starter, int64_t now)
{
	struct pg_conn *c = conn_of(lc);
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	*created = false;
	/* fast path without a transaction: nearly every call finds it */
	a_text(&a, account);
	int err = exec_read(&r, c, ST_ACCOUNT_EXISTS, &a, "read account");
	if (err)
		return err;
	int exists = PQntuples(r);
	PQclear(r);
	if (exists)
		return 0;
	struct ensure_arg e = { account, starter, now, false };
	err = with_txn(c, ensure_txn, &e);
	if (err == 0)
		*created = e.created;
	return err;
}

static int pg_balance_get(ledger_balance *out, ledger_conn *lc, const char *account)
{
	struct pg_conn *c = conn_of(lc);
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	a_text(&a, account);
	/* one statement: one snapshot */
	int err = exec_read(&r, c, ST_BALANCE, &a, "read balance");
	if (err)
		return err;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return troop_error_set(TROOP_ENOTFOUND, "no account %s", account);
	}
	out->available = val_i64(r, 0, 0);
	out->reserved = val_i64(r, 0, 1);
	PQclear(r);
	return 0;
}

struct grant_arg {
	const char *account, *reason, *admin_id;
	int64_t credits, now, tx_id;
};

static int grant_txn(struct pg_conn *c, void *arg)
{
	struct grant_arg *g = arg;
	int err = account_add(c, g->account, g->credits, g->now);
	if (err)
		return err;
	struct txrow t = { .type = "admin", .requester = g->account, .note = g->reason,
		.credits = g->credits, .now = g->now };
	if ((err = insert_txs(&g->tx_id, c, &t, 1)) != 0)
		return err;
	char detail[LEDGER_ID_MAX + LEDGER_NOTE_MAX + 96];
	snprintf(detail, sizeof detail, "account=%s credits=%lld tx=%lld reason=%s",
	    g->account, (long long)g->credits, (long long)g->tx_id, g->reason);
	return insert_audit(c, g->admin_id, "admin_grant", detail, g->now);
}

static int pg_admin_grant(int64_t *tx_id, ledger_conn *lc, const char *account,
    int64_t credits, const char *reason, const char *admin_id, int64_t now)
{
	struct grant_arg g = { account, reason, admin_id, credits, now, 0 };
	int err = with_txn(conn_of(lc), grant_txn, &g);
	if (err == 0)
		*tx_id = g.tx_id;
	return err;
}

/* ---- reservations and settlement -------------------------------------------- */

struct reserve_arg {
	const ledger_reserve_req *req;
	int64_t available;
};

static int reserve_txn(struct pg_conn *c, void *arg)
{
	struct reserve_arg *ra = arg;
	const ledger_reserve_req *q = ra->req;
	struct args a = { .n = 0 };
	PGresult *r = NULL;

	/* check and debit in one statement: it waits for the account row's lock
	 * and then sees the balance the previous holder committed */
	a_text(&a, q->requester);
	a_i64(&a, q->amount);
	int err = exec_st(&r, c, ST_ACCOUNT_DEBIT, &a, "debit account");
	if (err)
		return err;
	bool debited = PQntuples(r) == 1;
	if (debited)
		ra->available = val_i64(r, 0, 0);
	PQclear(r);
	if (!debited) {
		a.n = 0;
		a_text(&a, q->requester);
		if ((err = exec_st(&r, c, ST_ACCOUNT_AVAILABLE, &a, "read balance")) != 0)
			return err;
		ra->available = PQntuples(r) == 1 ? val_i64(r, 0, 0) : 0;
		PQclear(r);
		return troop_error_set(TROOP_ECREDITS, "insufficient credits: available %lld, "
		    "price %lld", (long long)ra->available, (long long)q->amount);
	}

	a.n = 0;
	a_text(&a, q->job_id);
	if ((err = exec_st(&r, c, ST_RES_GET, &a, "read reservation")) != 0)
		return err;
	int dup = PQntuples(r);
	PQclear(r);
	if (dup)
		return troop_error_set(TROOP_ECONFLICT, "job id %s is already reserved", q->job_id);

	a.n = 0;
	a_text(&a, q->job_id);
	a_text(&a, q->requester);
	a_text(&a, q->node_id);
	a_text(&a, q->worker);
	a_text(&a, q->model);
	a_i64(&a, q->amount);
	a_i64(&a, q->max_seconds);
	a_f64(&a, q->multiplier);
	a_i64(&a, q->now);
	a_i64(&a, q->expires_at);
	if ((err = exec_st(NULL, c, ST_RES_INSERT, &a, "insert reservation")) != 0) {
		if (err == TROOP_ECONFLICT)  /* inserted concurrently by another caller */
			troop_error_set(err, "job id %s is already reserved", q->job_id);
		return err;
	}

	struct txrow t = { .type = "reserve", .job_id = q->job_id, .requester = q->requester,
		.worker = q->worker, .model = q->model, .credits = q->amount, .now = q->now };
	return insert_txs(NULL, c, &t, 1);
}

static int pg_reserve(int64_t *available, ledger_conn *lc, const ledger_reserve_req *req)
{
	struct reserve_arg ra = { req, 0 };
	int err = with_txn(conn_of(lc), reserve_txn, &ra);
	if (err == 0 || err == TROOP_ECREDITS)
		*available = ra.available;
	return err;
}

/* Read reservation `job_id` (locked FOR UPDATE when `lock`); 1 found,
 * 0 not, or a troop_err. */
static int res_read(ledger_reservation *out, struct pg_conn *c, const char *job_id, bool lock)
{
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	a_text(&a, job_id);
	int err = lock ? exec_st(&r, c, ST_RES_LOCK, &a, "read reservation") :
	    exec_read(&r, c, ST_RES_GET, &a, "read reservation");
	if (err)
		return err;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return 0;
	}
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->job_id, sizeof out->job_id, val(r, 0, 0));
	ledger_copy_str(out->requester, sizeof out->requester, val(r, 0, 1));
	ledger_copy_str(out->node_id, sizeof out->node_id, val(r, 0, 2));
	ledger_copy_str(out->worker, sizeof out->worker, val(r, 0, 3));
	ledger_copy_str(out->model, sizeof out->model, val(r, 0, 4));
	out->amount = val_i64(r, 0, 5);
	out->max_seconds = val_i64(r, 0, 6);
	out->multiplier = val_f64(r, 0, 7);
	err = ledger_res_status_parse(&out->status, val(r, 0, 8));
	out->created_at = val_i64(r, 0, 9);
	out->expires_at = val_i64(r, 0, 10);
	out->closed_at = val_i64(r, 0, 11);
	out->charged = val_i64(r, 0, 12);
	out->refunded = val_i64(r, 0, 13);
	out->duration_ms = val_i64(r, 0, 14);
	PQclear(r);
	return err ? err : 1;
}

struct settle_arg {
	const ledger_settle_req *req;
	ledger_settle_result *out;
};

static int settle_txn(struct pg_conn *c, void *arg)
{
	struct settle_arg *sa = arg;
	const ledger_settle_req *q = sa->req;
	ledger_settle_result *o = sa->out;
	ledger_reservation res;
	struct args a = { .n = 0 };

	int r = res_read(&res, c, q->job_id, true);
	if (r < 0)
		return r;
	int64_t charge, refund;
	int d = ledger_settle_decide(o, &charge, &refund, q, r == 0 ? NULL : &res);
	if (d != 0)
		return d < 0 ? d : 0;  /* an error, or settled before */
	const char *outcome = (q->outcome && q->outcome[0]) ? q->outcome : "ok";
	long n = 0;

	a_text(&a, q->job_id);
	a_i64(&a, q->now);
	a_i64(&a, charge);
	a_i64(&a, refund);
	a_i64(&a, q->duration_ms);
	a_i64(&a, q->tokens_in);
	a_i64(&a, q->tokens_out);
	a_text(&a, outcome);
	int err = exec_count(&n, c, ST_RES_SETTLE, &a, "settle reservation");
	if (err)
		return err;
	if (n != 1)
		return troop_error_set(TROOP_ECONFLICT, "reservation for job %s changed "
		    "during settlement", q->job_id);

	/* Both accounts in id order (the lock order).  The worker account is
	 * created if needed, with no starter grant. */
	bool requester_first = refund > 0 && strcmp(res.requester, res.worker) < 0;
	if (requester_first && (err = account_add(c, res.requester, refund, q->now)) != 0)
		return err;
	if ((err = account_add(c, res.worker, charge, q->now)) != 0)
		return err;
	if (!requester_first && refund > 0 &&
	    (err = account_add(c, res.requester, refund, q->now)) != 0)
		return err;

	bool ok = strcmp(outcome, "ok") == 0;
	a.n = 0;
	a_text(&a, res.node_id);
	a_i64(&a, ok ? 1 : 0);
	a_i64(&a, ok ? 0 : 1);
	if ((err = exec_st(NULL, c, ST_NODE_JOBS, &a, "count node job")) != 0)
		return err;

	struct txrow t[2] = {
		{ .type = "settle", .job_id = q->job_id, .requester = res.requester,
		  .worker = res.worker, .model = res.model, .credits = charge,
		  .duration_ms = q->duration_ms, .now = q->now },
		{ .type = "release", .job_id = q->job_id, .requester = res.requester,
		  .worker = res.worker, .model = res.model, .credits = refund, .now = q->now },
	};
	if ((err = insert_txs(NULL, c, t, refund > 0 ? 2 : 1)) != 0)
		return err;
	o->charged = charge;
	o->refunded = refund;
	o->already = false;
	return 0;
}

static int pg_settle(ledger_settle_result *out, ledger_conn *lc, const ledger_settle_req *req)
{
	struct settle_arg sa = { req, out };
	return with_txn(conn_of(lc), settle_txn, &sa);
}

struct expired_row {
	char job_id[LEDGER_ID_MAX + 1];
	char requester[LEDGER_ID_MAX + 1];
	char worker[LEDGER_ID_MAX + 1];
	char model[LEDGER_MODEL_MAX + 1];
	int64_t amount;
};

struct release_arg {
	int64_t cutoff, now;
	struct expired_row *rows;
	struct txrow *tx;
	int n;
};

static int cmp_requester(const void *x, const void *y)
{
	const struct expired_row *a = x, *b = y;
	int d = strcmp(a->requester, b->requester);
	return d ? d : strcmp(a->job_id, b->job_id);
}

static int release_txn(struct pg_conn *c, void *arg)
{
	struct release_arg *ra = arg;
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	ra->n = 0;
	a_i64(&a, ra->cutoff);
	a_i64(&a, RELEASE_BATCH);
	/* rows another sweeper holds are skipped, not waited for */
	int err = exec_st(&r, c, ST_RES_EXPIRED, &a, "find expired reservations");
	if (err)
		return err;
	int rows = PQntuples(r);
	for (int i = 0; i < rows && ra->n < RELEASE_BATCH; i++) {
		struct expired_row *e = &ra->rows[ra->n++];
		ledger_copy_str(e->job_id, sizeof e->job_id, val(r, i, 0));
		ledger_copy_str(e->requester, sizeof e->requester, val(r, i, 1));
		ledger_copy_str(e->worker, sizeof e->worker, val(r, i, 2));
		ledger_copy_str(e->model, sizeof e->model, val(r, i, 3));
		e->amount = val_i64(r, i, 4);
	}
	PQclear(r);
	if (ra->n == 0)
		return 0;

	/* refunds in account order (the lock order), then the log rows */
	qsort(ra->rows, (size_t)ra->n, sizeof *ra->rows, cmp_requester);
	for (int i = 0; i < ra->n; i++) {
		struct expired_row *e = &ra->rows[i];
		long n = 0;
		a.n = 0;
		a_text(&a, e->job_id);
		a_i64(&a, ra->now);
		if ((err = exec_count(&n, c, ST_RES_RELEASE, &a, "release reservation")) != 0)
			return err;
		if (n != 1)
			return troop_error_set(TROOP_ECONFLICT, "reservation for job %s changed "
			    "during release", e->job_id);
		if ((err = account_add(c, e->requester, e->amount, ra->now)) != 0)
			return err;
		ra->tx[i] = (struct txrow){ .type = "release", .job_id = e->job_id,
			.requester = e->requester, .worker = e->worker, .model = e->model,
			.credits = e->amount, .now = ra->now };
	}
	return insert_txs(NULL, c, ra->tx, ra->n);
}

static int pg_release_expired(int64_t *count, ledger_conn *lc, int64_t now, int64_t grace_s)
{
	struct pg_conn *c = conn_of(lc);
	struct release_arg ra = { now - grace_s, now, NULL, NULL, 0 };
	ra.rows = malloc(RELEASE_BATCH * sizeof *ra.rows);
	ra.tx = malloc(RELEASE_BATCH * sizeof *ra.tx);
	int err = 0;
	if (ra.rows == NULL || ra.tx == NULL)
		err = troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	while (err == 0) {
		err = with_txn(c, release_txn, &ra);
		if (err != 0)
			break;
		*count += ra.n;
		if (ra.n > 0)
			log_info("ledger_release", "released=%d", ra.n);
		if (ra.n < RELEASE_BATCH)
			break;
	}
	free(ra.rows);
	free(ra.tx);
	return err;
}

static int pg_reservation_get(ledger_reservation *out, ledger_conn *lc, const char *job_id)
{
	struct pg_conn *c = conn_of(lc);
	int r = res_read(out, c, job_id, false);
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no reservation for job %s", job_id);
	return 0;
}

/* ---- transaction log ------------------------------------------------------- */

static int pg_transactions(ledger_tx **out, size_t *n, int64_t *next, ledger_conn *lc,
    const char *account, int limit, int64_t before_id)
{
	struct pg_conn *c = conn_of(lc);
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	/* one row more than asked, to know whether there is a next page */
	a_text(&a, account);
	a_i64(&a, before_id);
	a_i64(&a, (int64_t)limit + 1);
	int err = exec_read(&r, c, ST_TX_PAGE, &a, "read transactions");
	if (err)
		return err;
	size_t k = (size_t)PQntuples(r);
	if (k > (size_t)limit + 1)
		k = (size_t)limit + 1;
	ledger_tx *rows = NULL;
	if (k > 0 && (rows = calloc(k, sizeof *rows)) == NULL) {
		PQclear(r);
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	}
	for (size_t i = 0; i < k; i++) {
		ledger_tx *t = &rows[i];
		int row = (int)i;
		t->id = val_i64(r, row, 0);
		ledger_copy_str(t->type, sizeof t->type, val(r, row, 1));
		ledger_copy_str(t->job_id, sizeof t->job_id, val(r, row, 2));
		ledger_copy_str(t->requester, sizeof t->requester, val(r, row, 3));
		ledger_copy_str(t->worker, sizeof t->worker, val(r, row, 4));
		t->credits = val_i64(r, row, 5);
		t->duration_ms = val_i64(r, row, 6);
		ledger_copy_str(t->model, sizeof t->model, val(r, row, 7));
		ledger_copy_str(t->note, sizeof t->note, val(r, row, 8));
		t->timestamp = val_i64(r, row, 9);
	}
	PQclear(r);
	if (k > (size_t)limit) {
		k = (size_t)limit;
		*next = rows[k - 1].id;
	}
	*out = rows;
	*n = k;
	return 0;
}

static int pg_totals_get(ledger_totals *out, ledger_conn *lc)
{
	struct pg_conn *c = conn_of(lc);
	PGresult *r = NULL;
	int err = exec_read(&r, c, ST_TOTALS, NULL, "read totals");
	if (err)
		return err;
	if (PQntuples(r) == 1) {
		out->granted = val_i64(r, 0, 0);
		out->balances = val_i64(r, 0, 1);
		out->accounts = val_i64(r, 0, 2);
		out->reserved = val_i64(r, 0, 3);
		out->open_reservations = val_i64(r, 0, 4);
	}
	PQclear(r);
	return 0;
}

/* ---- nodes ------------------------------------------------------------------ */

/* 1 found (row in *out), 0 not, or a troop_err. */
static int node_read(ledger_node *out, struct pg_conn *c, const char *node_id)
{
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	a_text(&a, node_id);
	int err = exec_read(&r, c, ST_NODE_GET, &a, "read node");
	if (err)
		return err;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return 0;
	}
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->node_id, sizeof out->node_id, node_id);
	ledger_copy_str(out->owner, sizeof out->owner, val(r, 0, 0));
	ledger_copy_str(out->name, sizeof out->name, val(r, 0, 1));
	out->multiplier = val_f64(r, 0, 2);
	out->verified = val_i64(r, 0, 3) != 0;
	out->verified_at = val_i64(r, 0, 4);
	out->jobs_ok = val_i64(r, 0, 5);
	out->jobs_failed = val_i64(r, 0, 6);
	out->first_seen = val_i64(r, 0, 7);
	out->last_seen = val_i64(r, 0, 8);
	out->reputation = ledger_reputation(out->jobs_ok, out->jobs_failed);
	PQclear(r);
	return 1;
}

struct upsert_arg {
	const char *node_id, *owner, *name;
	int64_t now;
	bool created;
};

static int upsert_txn(struct pg_conn *c, void *arg)
{
	struct upsert_arg *u = arg;
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	a_text(&a, u->node_id);
	a_text(&a, u->owner);
	a_text(&a, u->name);
	a_i64(&a, u->now);
	/* one statement: concurrent first heartbeats cannot both insert */
	int err = exec_st(&r, c, ST_NODE_UPSERT, &a, "upsert node");
	if (err)
		return err;
	u->created = PQntuples(r) == 1 && val(r, 0, 0)[0] == 't';
	PQclear(r);
	return 0;
}

static int pg_node_upsert(bool *created, ledger_conn *lc, const char *node_id,
    const char *owner, const char *name, int64_t now)
{
	struct pg_conn *c = conn_of(lc);
	ledger_node cur;
	*created = false;
	int r = node_read(&cur, c, node_id);
	if (r < 0)
		return r;
	if (r == 1 && strcmp(cur.owner, owner) == 0 && strcmp(cur.name, name) == 0 &&
	    now - cur.last_seen < LEDGER_NODE_TOUCH_S && now >= cur.last_seen)
		return 0;
	struct upsert_arg u = { node_id, owner, name, now, false };
	int err = with_txn(c, upsert_txn, &u);
	if (err == 0)
		*created = u.created;
	return err;
}

static int pg_node_get(ledger_node *out, ledger_conn *lc, const char *node_id)
{
	struct pg_conn *c = conn_of(lc);
	int r = node_read(out, c, node_id);
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	return 0;
}

struct verify_arg {
	const char *node_id;
	double multiplier;
	bool verified;
	int64_t now;
};

static int verify_txn(struct pg_conn *c, void *arg)
{
	struct verify_arg *v = arg;
	struct args a = { .n = 0 };
	long n = 0;
	a_text(&a, v->node_id);
	a_f64(&a, v->multiplier);
	a_i64(&a, v->verified ? 1 : 0);
	a_i64(&a, v->now);
	int err = exec_count(&n, c, ST_NODE_VERIFY, &a, "update node verification");
	if (err)
		return err;
	if (n != 1)
		return troop_error_set(TROOP_ENOTFOUND, "no node %s", v->node_id);
	return 0;
}

static int pg_node_set_verification(ledger_conn *lc, const char *node_id, double multiplier,
    bool verified, int64_t now)
{
	struct verify_arg v = { node_id, multiplier, verified, now };
	return with_txn(conn_of(lc), verify_txn, &v);
}

/* ---- key/value and audit -------------------------------------------------- */

static int pg_kv_get(char *buf, size_t cap, size_t *len, ledger_conn *lc, const char *key)
{
	struct pg_conn *c = conn_of(lc);
	struct args a = { .n = 0 };
	PGresult *r = NULL;
	a_text(&a, key);
	int err = exec_read(&r, c, ST_KV_GET, &a, "read kv");
	if (err)
		return err;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return troop_error_set(TROOP_ENOTFOUND, "no value stored under '%s'", key);
	}
	size_t n = (size_t)PQgetlength(r, 0, 0);
	*len = n;
	if (n + 1 > cap) {
		PQclear(r);
		return troop_error_set(TROOP_ETOOLARGE, "value of '%s' is %zu bytes, buffer %zu",
		    key, n, cap);
	}
	memcpy(buf, val(r, 0, 0), n);
	buf[n] = '\0';
	PQclear(r);
	return 0;
}

struct kv_arg {
	const char *key, *value;
	int64_t now;
	bool inserted;
};

static int kv_put_txn(struct pg_conn *c, void *arg)
{
	struct kv_arg *k = arg;
	struct args a = { .n = 0 };
	long n = 0;
	a_text(&a, k->key);
	a_text(&a, k->value);
	a_i64(&a, k->now);
	/* ON CONFLICT DO NOTHING: the first committed writer wins */
	int err = exec_count(&n, c, ST_KV_INSERT, &a, "insert kv");
	if (err == 0)
		k->inserted = n == 1;
	return err;
}

static int pg_kv_put_if_absent(bool *inserted, ledger_conn *lc, const char *key,
    const char *value, int64_t now)
{
	struct kv_arg k = { key, value, now, false };
	int err = with_txn(conn_of(lc), kv_put_txn, &k);
	if (err == 0)
		*inserted = k.inserted;
	return err;
}

struct audit_arg {
	const char *actor, *action, *detail;
	int64_t now;
};

static int audit_txn(struct pg_conn *c, void *arg)
{
	struct audit_arg *au = arg;
	return insert_audit(c, au->actor, au->action, au->detail, au->now);
}

static int pg_audit(ledger_conn *lc, const char *actor, const char *action,
    const char *detail, int64_t now)
{
	struct audit_arg au = { actor, action, detail, now };
	return with_txn(conn_of(lc), audit_txn, &au);
}

const struct ledger_ops ledger_pg_ops = {
	.name = "postgres",
	.open = pg_open,
	.close = pg_close,
	.conn_open = pg_conn_open,
	.conn_close = pg_conn_close,
	.schema_version = pg_schema_version,
	.ensure_account = pg_ensure_account,
	.balance_get = pg_balance_get,
	.admin_grant = pg_admin_grant,
	.reserve = pg_reserve,
	.settle = pg_settle,
	.release_expired = pg_release_expired,
	.reservation_get = pg_reservation_get,
	.transactions = pg_transactions,
	.totals_get = pg_totals_get,
	.node_upsert = pg_node_upsert,
	.node_get = pg_node_get,
	.node_set_verification = pg_node_set_verification,
	.kv_get = pg_kv_get,
	.kv_put_if_absent = pg_kv_put_if_absent,
	.audit = pg_audit,
};

#endif /* TROOP_HAVE_PQ */
