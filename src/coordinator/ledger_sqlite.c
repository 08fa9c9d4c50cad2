/*
 * ledger_sqlite.c - the embedded ledger backend on SQLite 3.
 *
 * One file, WAL mode (readers never block the writer), synchronous=NORMAL
 * (a commit is durable once the WAL is checkpointed; a power cut may lose
 * the last transactions but never corrupts), busy_timeout 5 s.  Every
 * write runs in BEGIN IMMEDIATE, which takes the write lock up front, so a
 * read-then-write transaction can never fail half-way with SQLITE_BUSY and
 * the check-then-debit in ledger_reserve is serialised across threads and
 * processes.  A transaction that still meets SQLITE_BUSY is rolled back
 * and retried a few times before TROOP_EUNAVAIL.
 *
 * Each ledger_conn owns one sqlite3 handle opened NOMUTEX (the caller
 * guarantees one thread at a time) and caches its prepared statements,
 * prepared lazily on first use.  The SQL here sticks to what PostgreSQL
 * also accepts (ON CONFLICT, RETURNING, scalar subqueries) so that the
 * PostgreSQL backend can reuse it with $N placeholders.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "ledger.h"
#include "log.h"
#include "migrations.h"

#define BUSY_TIMEOUT_MS 5000
#define TXN_ATTEMPTS 3
#define RELEASE_BATCH 256

struct sq_ledger {
	struct ledger base;
	char *path;
	int busy_ms;
	/* Serialises this process's write transactions.  SQLite admits one
	 * writer anyway; a thread that loses BEGIN IMMEDIATE falls into
	 * SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms although
	 * the lock frees within a few hundred microseconds, stalling that
	 * thread's whole event loop.  Waiting on a mutex instead wakes the
	 * moment the writer commits.  busy_timeout still covers other
	 * processes sharing the file. */
	pthread_mutex_t write_mu;
};

enum stmt_id {
	ST_BEGIN_IMMEDIATE,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SCHEMA_CREATE,
	ST_SCHEMA_HAS,
	ST_SCHEMA_INSERT,
	ST_SCHEMA_MAX,
	ST_NEXT_ID,
	ST_ACCOUNT_EXISTS,
	ST_ACCOUNT_CREATE,
	ST_ACCOUNT_AVAILABLE,
	ST_ACCOUNT_ADD,
	ST_ACCOUNT_SUB,
	ST_BALANCE,
	ST_TX_INSERT,
	ST_TX_PAGE,
	ST_AUDIT_INSERT,
	ST_RES_INSERT,
	ST_RES_GET,
	ST_RES_SETTLE,
	ST_RES_EXPIRED,
	ST_RES_RELEASE,
	ST_TOTALS,
	ST_NODE_GET,
	ST_NODE_INSERT,
	ST_NODE_UPDATE,
	ST_NODE_VERIFY,
	ST_NODE_JOBS,
	ST_KV_GET,
	ST_KV_INSERT,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
	[ST_BEGIN] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SCHEMA_CREATE] = "CREATE TABLE IF NOT EXISTS schema_version ("
	    "version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
	[ST_SCHEMA_HAS] = "SELECT 1 FROM schema_version WHERE version = ?1",
	[ST_SCHEMA_INSERT] = "INSERT INTO schema_version (version, name, applied_at) "
	    "VALUES (?1, ?2, ?3)",
	[ST_SCHEMA_MAX] = "SELECT COALESCE(MAX(version), 0) FROM schema_version",
	[ST_NEXT_ID] = "UPDATE counters SET value = value + ?2 WHERE name = ?1 RETURNING value",
	[ST_ACCOUNT_EXISTS] = "SELECT 1 FROM accounts WHERE account = ?1",
	[ST_ACCOUNT_CREATE] = "INSERT INTO accounts (account, balance, created_at) "
	    "VALUES (?1, ?2, ?3) ON CONFLICT (account) DO NOTHING",
	[ST_ACCOUNT_AVAILABLE] = "SELECT balance FROM accounts WHERE account = ?1",
	/* credit, creating the account when missing (worker owners) */
	[ST_ACCOUNT_ADD] = "INSERT INTO accounts (account, balance, created_at) "
	    "VALUES (?1, ?2, ?3) ON CONFLICT (account) DO UPDATE "
	    "SET balance = accounts.balance + excluded.balance",
	[ST_ACCOUNT_SUB] = "UPDATE accounts SET balance = balance - ?2 "
	    "WHERE account = ?1 AND balance >= ?2",
	[ST_BALANCE] = "SELECT a.balance, (SELECT COALESCE(SUM(r.amount), 0) "
	    "FROM reservations r WHERE r.requester = a.account AND r.status = 'open') "
	    "FROM accounts a WHERE a.account = ?1",
	[ST_TX_INSERT] = "INSERT INTO transactions (id, type, job_id, requester, worker, "
	    "credits, duration_ms, model, note, created_at) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	/* Two index range scans (requester, id) and (worker, id), each cut at
	 * the page size, merged; UNION drops the duplicate when an account
	 * paid itself. */
	[ST_TX_PAGE] = "SELECT id, type, job_id, requester, worker, credits, duration_ms, "
	    "model, note, created_at FROM ("
	    "SELECT id, type, job_id, requester, worker, credits, duration_ms, model, note, "
	    "created_at FROM transactions WHERE requester = ?1 AND id < ?2 "
	    "ORDER BY id DESC LIMIT ?3) AS a "
	    "UNION "
	    "SELECT id, type, job_id, requester, worker, credits, duration_ms, "
	    "model, note, created_at FROM ("
	    "SELECT id, type, job_id, requester, worker, credits, duration_ms, model, note, "
	    "created_at FROM transactions WHERE worker = ?1 AND id < ?2 "
	    "ORDER BY id DESC LIMIT ?3) AS b "
	    "ORDER BY id DESC LIMIT ?3",
	[ST_AUDIT_INSERT] = "INSERT INTO audit_log (id, actor, action, detail, created_at) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_RES_INSERT] = "INSERT INTO reservations (job_id, requester, node_id, worker, "
	    "model, amount, max_seconds, multiplier, status, created_at, expires_at, "
	    "closed_at, charged, refunded, duration_ms, tokens_in, tokens_out, outcome) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10, 0, 0, 0, 0, 0, 0, '')",
	[ST_RES_GET] = "SELECT job_id, requester, node_id, worker, model, amount, "
	    "max_seconds, multiplier, status, created_at, expires_at, closed_at, charged, "
	    "refunded, duration_ms FROM reservations WHERE job_id = ?1",
	[ST_RES_SETTLE] = "UPDATE reservations SET status = 'settled', closed_at = ?2, "
	    "charged = ?3, refunded = ?4, duration_ms = ?5, tokens_in = ?6, tokens_out = ?7, "
	    "outcome = ?8 WHERE job_id = ?1 AND status = 'open'",
	[ST_RES_EXPIRED] = "SELECT job_id, requester, worker, model, amount FROM reservations "
	    "WHERE status = 'open' AND expires_at < ?1 ORDER BY expires_at LIMIT ?2",
	[ST_RES_RELEASE] = "UPDATE reservations SET status = 'released', closed_at = ?2, "
	    "refunded = amount WHERE job_id = ?1 AND status = 'open'",
	[ST_TOTALS] = "SELECT "
	    "(SELECT COALESCE(SUM(credits), 0) FROM transactions WHERE type IN ('grant', 'admin')), "
	    "(SELECT COALESCE(SUM(balance), 0) FROM accounts), "
	    "(SELECT COUNT(*) FROM accounts), "
	    "(SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE status = 'open'), "
	    "(SELECT COUNT(*) FROM reservations WHERE status = 'open')",
	[ST_NODE_GET] = "SELECT owner, name, multiplier, verified, verified_at, jobs_ok, "
	    "jobs_failed, first_seen, last_seen FROM nodes WHERE node_id = ?1",
	[ST_NODE_INSERT] = "INSERT INTO nodes (node_id, owner, name, multiplier, verified, "
	    "verified_at, jobs_ok, jobs_failed, first_seen, last_seen) "
	    "VALUES (?1, ?2, ?3, 1.0, 0, 0, 0, 0, ?4, ?4)",
	[ST_NODE_UPDATE] = "UPDATE nodes SET owner = ?2, name = ?3, last_seen = ?4 "
	    "WHERE node_id = ?1",
	[ST_NODE_VERIFY] = "UPDATE nodes SET multiplier = ?2, verified = ?3, verified_at = ?4 "
	    "WHERE node_id = ?1",
	[ST_NODE_JOBS] = "UPDATE nodes SET jobs_ok = jobs_ok + ?2, "
	    "jobs_failed = jobs_failed + ?3 WHERE node_id = ?1",
	[ST_KV_GET] = "SELECT value FROM kv WHERE name = ?1",
	[ST_KV_INSERT] = "INSERT INTO kv (name, value, created_at) VALUES (?1, ?2, ?3) "
	    "ON CONFLICT (name) DO NOTHING",
};

struct sq_conn {
	struct ledger_conn base;
	struct sq_ledger *owner;
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	bool busy;  /* the last failure was SQLITE_BUSY/LOCKED: worth a retry */
};

static struct sq_conn *conn_of(ledger_conn *c)
{
	return (struct sq_conn *)c;
}

/* ---- errors and statements -------------------------------------------------- */

/* Map an SQLite result code to a troop_err with a message naming `what`. */
static int sq_fail(struct sq_conn *c, int rc, const char *what)
{
	const char *msg = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		c->busy = true;
		return troop_error_set(TROOP_EUNAVAIL, "ledger database busy (%s): %s", what, msg);
	case SQLITE_CONSTRAINT:
		return troop_error_set(TROOP_ECONFLICT, "ledger: %s: %s", what, msg);
	case SQLITE_NOMEM:
		return troop_error_set(TROOP_ENOMEM, "ledger: %s: out of memory", what);
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
	case SQLITE_PROTOCOL:
	case SQLITE_PERM:
	case SQLITE_NOLFS:
		return troop_error_set(TROOP_EUNAVAIL, "ledger database unavailable (%s): %s",
		    what, msg);
	default:
		return troop_error_set(TROOP_ERR, "ledger: %s: %s", what, msg);
	}
}

/* The cached statement `id`, reset and ready for binding. */
static int prep(sqlite3_stmt **out, struct sq_conn *c, enum stmt_id id)
{
	if (c->st[id] == NULL) {
		int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		    &c->st[id], NULL);
		if (rc != SQLITE_OK) {
			c->st[id] = NULL;
			return sq_fail(c, rc, "prepare");
		}
	}
	*out = c->st[id];
	return 0;
}

/* Done with a statement: reset it and drop its bindings (so bound strings
 * are not referenced past the call). */
static void done(sqlite3_stmt *st)
{
	if (st != NULL) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* Step a statement expected to return at most one row.  Returns 1 with the
 * row available, 0 at the end, or a troop_err (statement reset). */
static int step(struct sq_conn *c, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	int err = sq_fail(c, rc, what);
	done(st);
	return err;
}

/* Run a statement with no result rows to the end; resets it. */
static int run(struct sq_conn *c, sqlite3_stmt *st, const char *what)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	int err = rc == SQLITE_DONE ? 0 : sq_fail(c, rc, what);
	done(st);
	return err;
}

static int exec_id(struct sq_conn *c, enum stmt_id id, const char *what)
{
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, id);
	if (err == 0)
		err = run(c, st, what);
	return err;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	return s ? (const char *)s : "";
}

/* ---- transactions ---------------------------------------------------------------- */

typedef int (*txn_fn)(struct sq_conn *c, void *arg);

static void rollback(struct sq_conn *c)
{
	if (sqlite3_get_autocommit(c->db))
		return;  /* no transaction open */
	sqlite3_stmt *st = NULL;
	if (prep(&st, c, ST_ROLLBACK) == 0) {
		sqlite3_step(st);
		done(st);
	}
	if (!sqlite3_get_autocommit(c->db))  /* last resort */
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Run fn inside BEGIN IMMEDIATE (write) or BEGIN (read snapshot), commit
 * on 0, roll back otherwise; retry the whole transaction when it failed
 * only because the database was busy.  fn must be re-runnable. */
static int with_txn(struct sq_conn *c, bool write, txn_fn fn, void *arg)
{
	int err = 0;
	for (int attempt = 1; attempt <= TXN_ATTEMPTS; attempt++) {
		c->busy = false;
		if (write)
			pthread_mutex_lock(&c->owner->write_mu);
		err = exec_id(c, write ? ST_BEGIN_IMMEDIATE : ST_BEGIN, "begin transaction");
		if (err == 0) {
			err = fn(c, arg);
			if (err == 0)
				err = exec_id(c, ST_COMMIT, "commit");
		}
		if (err != 0) {
			/* keep the message of the first failure */
			char msg[512];
			snprintf(msg, sizeof msg, "%s", troop_error_msg());
			rollback(c);
			troop_error_set(err, "%s", msg);
		}
		if (write)
			pthread_mutex_unlock(&c->owner->write_mu);
		if (err == 0 || !c->busy || attempt == TXN_ATTEMPTS)
			return err;
		log_warn("ledger_busy", "attempt=%d of=%d retrying=1", attempt, TXN_ATTEMPTS);
		struct timespec ts = { 0, 2000000L * attempt };
		nanosleep(&ts, NULL);
	}
	return err;
}

/* Allocate `n` consecutive ids from counter `name`; *first gets the first.
 * Inside a write transaction. */
static int next_ids(int64_t *first, struct sq_conn *c, const char *name, int n)
{
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_NEXT_ID);
	if (err)
		return err;
	bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, n);
	int r = step(c, st, "allocate id");
	if (r < 0)
		return r;
	if (r == 0) {
		done(st);
		return troop_error_set(TROOP_ERR, "ledger: counter '%s' is missing", name);
	}
	int64_t last = sqlite3_column_int64(st, 0);
	*first = last - n + 1;
	return run(c, st, "allocate id");
}

struct txrow {
	const char *type, *job_id, *requester, *worker, *model, *note;
	int64_t credits, duration_ms, now;
};

static int insert_tx(int64_t *id_out, struct sq_conn *c, const struct txrow *t)
{
	int64_t id;
	sqlite3_stmt *st = NULL;
	int err = next_ids(&id, c, "transactions", 1);
	if (err == 0)
		err = prep(&st, c, ST_TX_INSERT);
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, t->type);
	bind_text(st, 3, t->job_id);
	bind_text(st, 4, t->requester);
	bind_text(st, 5, t->worker);
	sqlite3_bind_int64(st, 6, t->credits);
	sqlite3_bind_int64(st, 7, t->duration_ms);
	bind_text(st, 8, t->model);
	bind_text(st, 9, t->note);
	sqlite3_bind_int64(st, 10, t->now);
	err = run(c, st, "insert transaction row");
	if (err == 0 && id_out != NULL)
		*id_out = id;
	return err;
}

static int insert_audit(struct sq_conn *c, const char *actor, const char *action,
    const char *detail, int64_t now)
{
	int64_t id;
	sqlite3_stmt *st = NULL;
	int err = next_ids(&id, c, "audit_log", 1);
	if (err == 0)
		err = prep(&st, c, ST_AUDIT_INSERT);
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, actor);
	bind_text(st, 3, action);
	bind_text(st, 4, detail);
	sqlite3_bind_int64(st, 5, now);
	return run(c, st, "insert audit row");
}

/* Add `credits` (>= 0) to `account`, creating it with them if missing. */
static int account_add(struct sq_conn *c, const char *account, int64_t credits, int64_t now)
{
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_ACCOUNT_ADD);
	if (err)
		return err;
	bind_text(st, 1, account);
	sqlite3_bind_int64(st, 2, credits);
	sqlite3_bind_int64(st, 3, now);
	return run(c, st, "credit account");
}

/* ---- opening and migrations --------------------------------------------------- */

static void conn_free(struct sq_conn *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close_v2(c->db);
	free(c);
}

static int journal_cb(void *arg, int ncol, char **vals, char **names)
{
	(void)names;
	if (ncol > 0 && vals[0] != NULL)
		snprintf((char *)arg, 16, "%s", vals[0]);
	return 0;
}

static int conn_new(struct sq_conn **out, struct sq_ledger *l)
{
	int err = 0;
	struct sq_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	c->base.ops = &ledger_sqlite_ops;
	c->base.owner = &l->base;
	c->owner = l;
	int rc = sqlite3_open_v2(l->path, &c->db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err = troop_error_set(TROOP_EUNAVAIL, "cannot open ledger database %s: %s",
		    l->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, l->busy_ms);

	char mode[16] = "";
	char *emsg = NULL;
	rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", journal_cb, mode, &emsg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, &emsg);
	if (rc != SQLITE_OK) {
		err = troop_error_set(TROOP_EUNAVAIL, "cannot set up ledger database %s: %s",
		    l->path, emsg ? emsg : sqlite3_errstr(rc));
		sqlite3_free(emsg);
		goto fail;
	}
	if (strcmp(mode, "wal") != 0)
		log_warn("ledger_journal", "path=%s mode=%s expected=wal", l->path, mode);
	*out = c;
	return 0;
fail:
	conn_free(c);
	return err;
}

struct migrate_arg {
	const struct troop_migration *m;
	bool applied;
};

static int migrate_one(struct sq_conn *c, void *arg)
{
	struct migrate_arg *a = arg;
	sqlite3_stmt *st = NULL;
	a->applied = false;
	int err = exec_id(c, ST_SCHEMA_CREATE, "create schema_version");
	if (err == 0)
		err = prep(&st, c, ST_SCHEMA_HAS);
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, a->m->version);
	int r = step(c, st, "read schema_version");
	if (r < 0)
		return r;
	done(st);
	if (r == 1)
		return 0;  /* applied before, maybe by another process just now */

	char *emsg = NULL;
	int rc = sqlite3_exec(c->db, a->m->sql, NULL, NULL, &emsg);
	if (rc != SQLITE_OK) {
		err = sq_fail(c, rc, "migration");
		err = troop_error_set(err == TROOP_ECONFLICT ? TROOP_ERR : err,
		    "ledger migration %s failed: %s", a->m->name,
		    emsg ? emsg : sqlite3_errstr(rc));
		sqlite3_free(emsg);
		return err;
	}
	err = prep(&st, c, ST_SCHEMA_INSERT);
	if (err)
		return err;
	sqlite3_bind_int64(st, 1, a->m->version);
	bind_text(st, 2, a->m->name);
	sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
	err = run(c, st, "record migration");
	if (err == 0)
		a->applied = true;
	return err;
}

static int sq_schema_version(int *out, ledger_conn *lc)
{
	struct sq_conn *c = conn_of(lc);
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_SCHEMA_MAX);
	if (err)
		return err;
	int r = step(c, st, "read schema version");
	if (r < 0)
		return r;
	*out = r == 1 ? sqlite3_column_int(st, 0) : 0;
	done(st);
	return 0;
}

static int migrate(struct sq_conn *c, const char *path)
{
	int known = 0;
	for (int i = 0; i < troop_migrations_count; i++) {
		struct migrate_arg a = { &troop_migrations[i], false };
		int err = with_txn(c, true, migrate_one, &a);
		if (err) {
			/* name the migration unless migrate_one already did */
			if (strncmp(troop_error_msg(), "ledger migration", 16) != 0)
				troop_error_set(err, "ledger migration %s failed: %s",
				    a.m->name, troop_error_msg());
			return err == TROOP_ECONFLICT ? TROOP_ERR : err;
		}
		if (a.applied)
			log_info("ledger_migrate", "path=%s migration=%s", path, a.m->name);
		if (a.m->version > known)
			known = a.m->version;
	}
	int have = 0;
	int err = sq_schema_version(&have, &c->base);
	if (err)
		return err;
	if (have > known)
		log_warn("ledger_schema_newer", "path=%s version=%d known=%d", path, have, known);
	return 0;
}

static void sq_close(ledger *l)
{
	struct sq_ledger *s = (struct sq_ledger *)l;
	if (s == NULL)
		return;
	pthread_mutex_destroy(&s->write_mu);
	free(s->path);
	free(s);
}

/* Split "PATH[?busy_timeout=MS]" into s->path and s->busy_ms. */
static int parse_target(struct sq_ledger *s, const char *target)
{
	const char *q = strchr(target, '?');
	size_t plen = q ? (size_t)(q - target) : strlen(target);
	s->busy_ms = BUSY_TIMEOUT_MS;
	if (q != NULL) {
		char *end = NULL;
		const char *key = "busy_timeout=";
		if (strncmp(q + 1, key, strlen(key)) != 0)
			return troop_error_set(TROOP_EINVAL, "ledger: unknown option '%s' (known: "
			    "busy_timeout=MS)", q + 1);
		const char *v = q + 1 + strlen(key);
		long ms = strtol(v, &end, 10);
		if (end == v || *end != '\0' || ms < 0 || ms > 600000)
			return troop_error_set(TROOP_EINVAL, "ledger: busy_timeout must be 0..600000 "
			    "milliseconds, got '%s'", v);
		s->busy_ms = (int)ms;
	}
	if (plen == 0)
		return troop_error_set(TROOP_EINVAL, "ledger: no database file named");
	if ((plen == 8 && strncmp(target, ":memory:", 8) == 0) ||
	    strncmp(target, "file:", 5) == 0)
		return troop_error_set(TROOP_EINVAL, "ledger: '%.*s': give a file path "
		    "(in-memory and URI databases are not supported)", (int)plen, target);
	if ((s->path = strndup(target, plen)) == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	return 0;
}

/* SQLite's global memory statistics take a global mutex on every
 * allocation; nothing here reads them.  Must precede sqlite3_initialize
 * (a no-op error if SQLite is already initialised). */
static void sq_global_init(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int sq_open(ledger **out, const char *target)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, sq_global_init);

	int err;
	struct sq_conn *c = NULL;
	struct sq_ledger *s = calloc(1, sizeof *s);
	if (s == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	s->base.ops = &ledger_sqlite_ops;
	pthread_mutex_init(&s->write_mu, NULL);
	if ((err = parse_target(s, target)) != 0)
		goto fail;
	if ((err = conn_new(&c, s)) != 0)
		goto fail;
	if ((err = migrate(c, s->path)) != 0)
		goto fail;
	conn_free(c);
	*out = &s->base;
	return 0;
fail:
	conn_free(c);
	sq_close(&s->base);
	return err;
}

static int sq_conn_open(ledger_conn **out, ledger *l)
{
	struct sq_conn *c;
	int err = conn_new(&c, (struct sq_ledger *)l);
	if (err)
		return err;
	*out = &c->base;
	return 0;
}

static void sq_conn_close(ledger_conn *lc)
{
	conn_free(conn_of(lc));
}

/* ---- accounts ------------------------------------------------------------- */

static int account_exists(bool *exists, struct sq_conn *c, const char *account)
{
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_ACCOUNT_EXISTS);
	if (err)
		return err;
	bind_text(st, 1, account);
	int r = step(c, st, "read account");
	if (r < 0)
		return r;
	done(st);
	*exists = r == 1;
	return 0;
}

struct ensure_arg {
	const char *account;
	int64_t starter, now;
	bool created;
};

static int ensure_txn(struct sq_conn *c, void *arg)
{
	struct ensure_arg *a = arg;
	sqlite3_stmt *st = NULL;
	a->created = false;
	int err = prep(&st, c, ST_ACCOUNT_CREATE);
	if (err)
		return err;
	bind_text(st, 1, a->account);
	sqlite3_bind_int64(st, 2, a->starter);
	sqlite3_bind_int64(st, 3, a->now);
	if ((err = run(c, st, "create account")) != 0)
		return err;
	if (sqlite3_changes(c->db) != 1)
		return 0;  /* someone else created it first */
	a->created = true;
	if (a->starter == 0)
		return 0;
	struct txrow t = { .type = "grant", .requester = a->account,
		.credits = a->starter, .now = a->now };
	return insert_tx(NULL, c, &t);
}

static int sq_ensure_account(bool *created, ledger_conn *lc, const char *account,
    int64_t starter, int64_t now)
{
	struct sq_conn *c = conn_of(lc);
	bool exists = false;
	*created = false;
	/* fast path without the write lock: nearly every call finds it */
	int err = account_exists(&exists, c, account);
	if (err || exists)
		return err;
	struct ensure_arg a = { account, starter, now, false };
	err = with_txn(c, true, ensure_txn, &a);
	if (err == 0)
		*created = a.created;
	return err;
}

static int sq_balance_get(ledger_balance *out, ledger_conn *lc, const char *account)
{
	struct sq_conn *c = conn_of(lc);
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_BALANCE);
	if (err)
		return err;
	bind_text(st, 1, account);
	int r = step(c, st, "read balance");
	if (r < 0)
		return r;
	if (r == 0) {
		done(st);
		return troop_error_set(TROOP_ENOTFOUND, "no account %s", account);
	}
	out->available = sqlite3_column_int64(st, 0);
	out->reserved = sqlite3_column_int64(st, 1);
	done(st);
	return 0;
}

struct grant_arg {
	const char *account, *reason, *admin_id;
	int64_t credits, now, tx_id;
};

static int grant_txn(struct sq_conn *c, void *arg)
{
	struct grant_arg *a = arg;
	int err = account_add(c, a->account, a->credits, a->now);
	if (err)
		return err;
	struct txrow t = { .type = "admin", .requester = a->account, .note = a->reason,
		.credits = a->credits, .now = a->now };
	if ((err = insert_tx(&a->tx_id, c, &t)) != 0)
		return err;
	char detail[LEDGER_ID_MAX + LEDGER_NOTE_MAX + 96];
	snprintf(detail, sizeof detail, "account=%s credits=%lld tx=%lld reason=%s",
	    a->account, (long long)a->credits, (long long)a->tx_id, a->reason);
	return insert_audit(c, a->admin_id, "admin_grant", detail, a->now);
}

static int sq_admin_grant(int64_t *tx_id, ledger_conn *lc, const char *account,
    int64_t credits, const char *reason, const char *admin_id, int64_t now)
{
	struct grant_arg a = { account, reason, admin_id, credits, now, 0 };
	int err = with_txn(conn_of(lc), true, grant_txn, &a);
	if (err == 0)
		*tx_id = a.tx_id;
	return err;
}

/* ---- reservations and settlement -------------------------------------------- */

struct reserve_arg {
	const ledger_reserve_req *req;
	int64_t available;
};

static int reserve_txn(struct sq_conn *c, void *arg)
{
	struct reserve_arg *a = arg;
	const ledger_reserve_req *q = a->req;
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_ACCOUNT_AVAILABLE);
	if (err)
		return err;
	bind_text(st, 1, q->requester);
	int r = step(c, st, "read balance");
	if (r < 0)
		return r;
	a->available = r == 1 ? sqlite3_column_int64(st, 0) : 0;
	done(st);
	if (a->available < q->amount)
		return troop_error_set(TROOP_ECREDITS, "insufficient credits: available %lld, "
		    "price %lld", (long long)a->available, (long long)q->amount);

	if ((err = prep(&st, c, ST_RES_GET)) != 0)
		return err;
	bind_text(st, 1, q->job_id);
	r = step(c, st, "read reservation");
	if (r < 0)
		return r;
	done(st);
	if (r == 1)
		return troop_error_set(TROOP_ECONFLICT, "job id %s is already reserved", q->job_id);

	if ((err = prep(&st, c, ST_ACCOUNT_SUB)) != 0)
		return err;
	bind_text(st, 1, q->requester);
	sqlite3_bind_int64(st, 2, q->amount);
	if ((err = run(c, st, "debit account")) != 0)
		return err;
	if (sqlite3_changes(c->db) != 1)  /* cannot happen under the write lock */
		return troop_error_set(TROOP_ECREDITS, "insufficient credits: available %lld, "
		    "price %lld", (long long)a->available, (long long)q->amount);

	if ((err = prep(&st, c, ST_RES_INSERT)) != 0)
		return err;
	bind_text(st, 1, q->job_id);
	bind_text(st, 2, q->requester);
	bind_text(st, 3, q->node_id);
	bind_text(st, 4, q->worker);
	bind_text(st, 5, q->model);
	sqlite3_bind_int64(st, 6, q->amount);
	sqlite3_bind_int64(st, 7, q->max_seconds);
	sqlite3_bind_double(st, 8, q->multiplier);
	sqlite3_bind_int64(st, 9, q->now);
	sqlite3_bind_int64(st, 10, q->expires_at);
	if ((err = run(c, st, "insert reservation")) != 0)
		return err;

	struct txrow t = { .type = "reserve", .job_id = q->job_id, .requester = q->requester,
		.worker = q->worker, .model = q->model, .credits = q->amount, .now = q->now };
	if ((err = insert_tx(NULL, c, &t)) != 0)
		return err;
	a->available -= q->amount;
	return 0;
}

static int sq_reserve(int64_t *available, ledger_conn *lc, const ledger_reserve_req *req)
{
	struct reserve_arg a = { req, 0 };
	int err = with_txn(conn_of(lc), true, reserve_txn, &a);
	if (err == 0 || err == TROOP_ECREDITS)
		*available = a.available;
	return err;
}

/* Read reservation `job_id` into *out; 1 found, 0 not, or a troop_err. */
static int res_read(ledger_reservation *out, struct sq_conn *c, const char *job_id)
{
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_RES_GET);
	if (err)
		return err;
	bind_text(st, 1, job_id);
	int r = step(c, st, "read reservation");
	if (r <= 0) {
		if (r == 0)
			done(st);
		return r;
	}
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->job_id, sizeof out->job_id, col_text(st, 0));
	ledger_copy_str(out->requester, sizeof out->requester, col_text(st, 1));
	ledger_copy_str(out->node_id, sizeof out->node_id, col_text(st, 2));
	ledger_copy_str(out->worker, sizeof out->worker, col_text(st, 3));
	ledger_copy_str(out->model, sizeof out->model, col_text(st, 4));
	out->amount = sqlite3_column_int64(st, 5);
	out->max_seconds = sqlite3_column_int64(st, 6);
	out->multiplier = sqlite3_column_double(st, 7);
	err = ledger_res_status_parse(&out->status, col_text(st, 8));
	out->created_at = sqlite3_column_int64(st, 9);
	out->expires_at = sqlite3_column_int64(st, 10);
	out->closed_at = sqlite3_column_int64(st, 11);
	out->charged = sqlite3_column_int64(st, 12);
	out->refunded = sqlite3_column_int64(st, 13);
	out->duration_ms = sqlite3_column_int64(st, 14);
	done(st);
	return err ? err : 1;
}

struct settle_arg {
	const ledger_settle_req *req;
	ledger_settle_result *out;
};

static int settle_txn(struct sq_conn *c, void *arg)
{
	struct settle_arg *a = arg;
	const ledger_settle_req *q = a->req;
	ledger_settle_result *o = a->out;
	ledger_reservation res;
	sqlite3_stmt *st = NULL;

	int r = res_read(&res, c, q->job_id);
	if (r < 0)
		return r;
	int64_t charge, refund;
	int d = ledger_settle_decide(o, &charge, &refund, q, r == 0 ? NULL : &res);
	if (d != 0)
		return d < 0 ? d : 0;  /* an error, or settled before */
	const char *outcome = (q->outcome && q->outcome[0]) ? q->outcome : "ok";
	int err = 0;

	if ((err = prep(&st, c, ST_RES_SETTLE)) != 0)
		return err;
	bind_text(st, 1, q->job_id);
	sqlite3_bind_int64(st, 2, q->now);
	sqlite3_bind_int64(st, 3, charge);
	sqlite3_bind_int64(st, 4, refund);
	sqlite3_bind_int64(st, 5, q->duration_ms);
	sqlite3_bind_int64(st, 6, q->tokens_in);
	sqlite3_bind_int64(st, 7, q->tokens_out);
	bind_text(st, 8, outcome);
	if ((err = run(c, st, "settle reservation")) != 0)
		return err;
	if (sqlite3_changes(c->db) != 1)
		return troop_error_set(TROOP_ECONFLICT, "reservation for job %s changed "
		    "during settlement", q->job_id);

	/* The worker account is created if needed, with no starter grant. */
	if ((err = account_add(c, res.worker, charge, q->now)) != 0)
		return err;
	if (refund > 0 && (err = account_add(c, res.requester, refund, q->now)) != 0)
		return err;

	struct txrow t = { .type = "settle", .job_id = q->job_id, .requester = res.requester,
		.worker = res.worker, .model = res.model, .credits = charge,
		.duration_ms = q->duration_ms, .now = q->now };
	if ((err = insert_tx(NULL, c, &t)) != 0)
		return err;
	if (refund > 0) {
		t.type = "release";
		t.credits = refund;
		t.duration_ms = 0;
		if ((err = insert_tx(NULL, c, &t)) != 0)
			return err;
	}

	bool ok = strcmp(outcome, "ok") == 0;
	if ((err = prep(&st, c, ST_NODE_JOBS)) != 0)
		return err;
	bind_text(st, 1, res.node_id);
	sqlite3_bind_int64(st, 2, ok ? 1 : 0);
	sqlite3_bind_int64(st, 3, ok ? 0 : 1);
	if ((err = run(c, st, "count node job")) != 0)
		return err;

	o->charged = charge;
	o->refunded = refund;
	o->already = false;
	return 0;
}

static int sq_settle(ledger_settle_result *out, ledger_conn *lc, const ledger_settle_req *req)
{
	struct settle_arg a = { req, out };
	return with_txn(conn_of(lc), true, settle_txn, &a);
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
	int n;
};

static int release_txn(struct sq_conn *c, void *arg)
{
	struct release_arg *a = arg;
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_RES_EXPIRED);
	if (err)
		return err;
	/* Read the batch first; update after the scan is finished. */
	a->n = 0;
	sqlite3_bind_int64(st, 1, a->cutoff);
	sqlite3_bind_int64(st, 2, RELEASE_BATCH);
	int r = 0;
	while (a->n < RELEASE_BATCH && (r = step(c, st, "find expired reservations")) == 1) {
		struct expired_row *e = &a->rows[a->n++];
		ledger_copy_str(e->job_id, sizeof e->job_id, col_text(st, 0));
		ledger_copy_str(e->requester, sizeof e->requester, col_text(st, 1));
		ledger_copy_str(e->worker, sizeof e->worker, col_text(st, 2));
		ledger_copy_str(e->model, sizeof e->model, col_text(st, 3));
		e->amount = sqlite3_column_int64(st, 4);
	}
	if (r < 0)
		return r;
	done(st);

	for (int i = 0; i < a->n; i++) {
		struct expired_row *e = &a->rows[i];
		if ((err = prep(&st, c, ST_RES_RELEASE)) != 0)
			return err;
		bind_text(st, 1, e->job_id);
		sqlite3_bind_int64(st, 2, a->now);
		if ((err = run(c, st, "release reservation")) != 0)
			return err;
		if ((err = account_add(c, e->requester, e->amount, a->now)) != 0)
			return err;
		struct txrow t = { .type = "release", .job_id = e->job_id,
			.requester = e->requester, .worker = e->worker, .model = e->model,
			.credits = e->amount, .now = a->now };
		if ((err = insert_tx(NULL, c, &t)) != 0)
			return err;
	}
	return 0;
}

static int sq_release_expired(int64_t *count, ledger_conn *lc, int64_t now, int64_t grace_s)
{
	struct sq_conn *c = conn_of(lc);
	struct release_arg a = { now - grace_s, now, NULL, 0 };
	a.rows = malloc(RELEASE_BATCH * sizeof *a.rows);
	if (a.rows == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	int err;
	do {
		err = with_txn(c, true, release_txn, &a);
		if (err == 0) {
			*count += a.n;
			if (a.n > 0)
				log_info("ledger_release", "released=%d", a.n);
		}
	} while (err == 0 && a.n == RELEASE_BATCH);
	free(a.rows);
	return err;
}

static int sq_reservation_get(ledger_reservation *out, ledger_conn *lc, const char *job_id)
{
	int r = res_read(out, conn_of(lc), job_id);
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no reservation for job %s", job_id);
	return 0;
}

/* ---- transaction log ------------------------------------------------------- */

static int sq_transactions(ledger_tx **out, size_t *n, int64_t *next, ledger_conn *lc,
    const char *account, int limit, int64_t before_id)
{
	struct sq_conn *c = conn_of(lc);
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_TX_PAGE);
	if (err)
		return err;
	/* one row more than asked, to know whether there is a next page */
	ledger_tx *rows = calloc((size_t)limit + 1, sizeof *rows);
	if (rows == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	bind_text(st, 1, account);
	sqlite3_bind_int64(st, 2, before_id);
	sqlite3_bind_int64(st, 3, limit + 1);
	size_t k = 0;
	int r = 0;
	while (k < (size_t)limit + 1 && (r = step(c, st, "read transactions")) == 1) {
		ledger_tx *t = &rows[k++];
		t->id = sqlite3_column_int64(st, 0);
		ledger_copy_str(t->type, sizeof t->type, col_text(st, 1));
		ledger_copy_str(t->job_id, sizeof t->job_id, col_text(st, 2));
		ledger_copy_str(t->requester, sizeof t->requester, col_text(st, 3));
		ledger_copy_str(t->worker, sizeof t->worker, col_text(st, 4));
		t->credits = sqlite3_column_int64(st, 5);
		t->duration_ms = sqlite3_column_int64(st, 6);
		ledger_copy_str(t->model, sizeof t->model, col_text(st, 7));
		ledger_copy_str(t->note, sizeof t->note, col_text(st, 8));
		t->timestamp = sqlite3_column_int64(st, 9);
	}
	if (r < 0) {
		free(rows);
		return r;
	}
	done(st);
	if (k > (size_t)limit) {
		k = (size_t)limit;
		*next = rows[k - 1].id;
	}
	if (k == 0) {
		free(rows);
		rows = NULL;
	}
	*out = rows;
	*n = k;
	return 0;
}

static int sq_totals_get(ledger_totals *out, ledger_conn *lc)
{
	struct sq_conn *c = conn_of(lc);
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_TOTALS);
	if (err)
		return err;
	int r = step(c, st, "read totals");
	if (r < 0)
		return r;
	if (r == 1) {
		out->granted = sqlite3_column_int64(st, 0);
		out->balances = sqlite3_column_int64(st, 1);
		out->accounts = sqlite3_column_int64(st, 2);
		out->reserved = sqlite3_column_int64(st, 3);
		out->open_reservations = sqlite3_column_int64(st, 4);
	}
	done(st);
	return 0;
}

/* ---- nodes ------------------------------------------------------------------ */

/* 1 found (row in *out), 0 not, or a troop_err. */
static int node_read(ledger_node *out, struct sq_conn *c, const char *node_id)
{
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_NODE_GET);
	if (err)
		return err;
	bind_text(st, 1, node_id);
	int r = step(c, st, "read node");
	if (r <= 0) {
		if (r == 0)
			done(st);
		return r;
	}
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->node_id, sizeof out->node_id, node_id);
	ledger_copy_str(out->owner, sizeof out->owner, col_text(st, 0));
	ledger_copy_str(out->name, sizeof out->name, col_text(st, 1));
	out->multiplier = sqlite3_column_double(st, 2);
	out->verified = sqlite3_column_int64(st, 3) != 0;
	out->verified_at = sqlite3_column_int64(st, 4);
	out->jobs_ok = sqlite3_column_int64(st, 5);
	out->jobs_failed = sqlite3_column_int64(st, 6);
	out->first_seen = sqlite3_column_int64(st, 7);
	out->last_seen = sqlite3_column_int64(st, 8);
	out->reputation = ledger_reputation(out->jobs_ok, out->jobs_failed);
	done(st);
	return 1;
}

struct upsert_arg {
	const char *node_id, *owner, *name;
	int64_t now;
	bool created;
};

static int upsert_txn(struct sq_conn *c, void *arg)
{
	struct upsert_arg *a = arg;
	ledger_node cur;
	sqlite3_stmt *st = NULL;
	int r = node_read(&cur, c, a->node_id);
	if (r < 0)
		return r;
	a->created = r == 0;
	int err = prep(&st, c, a->created ? ST_NODE_INSERT : ST_NODE_UPDATE);
	if (err)
		return err;
	bind_text(st, 1, a->node_id);
	bind_text(st, 2, a->owner);
	bind_text(st, 3, a->name);
	sqlite3_bind_int64(st, 4, a->now);
	return run(c, st, a->created ? "insert node" : "update node");
}

static int sq_node_upsert(bool *created, ledger_conn *lc, const char *node_id,
    const char *owner, const char *name, int64_t now)
{
	struct sq_conn *c = conn_of(lc);
	ledger_node cur;
	*created = false;
	int r = node_read(&cur, c, node_id);
	if (r < 0)
		return r;
	if (r == 1 && strcmp(cur.owner, owner) == 0 && strcmp(cur.name, name) == 0 &&
	    now - cur.last_seen < LEDGER_NODE_TOUCH_S && now >= cur.last_seen)
		return 0;
	struct upsert_arg a = { node_id, owner, name, now, false };
	int err = with_txn(c, true, upsert_txn, &a);
	if (err == 0)
		*created = a.created;
	return err;
}

static int sq_node_get(ledger_node *out, ledger_conn *lc, const char *node_id)
{
	int r = node_read(out, conn_of(lc), node_id);
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

static int verify_txn(struct sq_conn *c, void *arg)
{
	struct verify_arg *a = arg;
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_NODE_VERIFY);
	if (err)
		return err;
	bind_text(st, 1, a->node_id);
	sqlite3_bind_double(st, 2, a->multiplier);
	sqlite3_bind_int64(st, 3, a->verified ? 1 : 0);
	sqlite3_bind_int64(st, 4, a->now);
	if ((err = run(c, st, "update node verification")) != 0)
		return err;
	if (sqlite3_changes(c->db) != 1)
		return troop_error_set(TROOP_ENOTFOUND, "no node %s", a->node_id);
	return 0;
}

static int sq_node_set_verification(ledger_conn *lc, const char *node_id, double multiplier,
    bool verified, int64_t now)
{
	struct verify_arg a = { node_id, multiplier, verified, now };
	return with_txn(conn_of(lc), true, verify_txn, &a);
}

/* ---- key/value and audit -------------------------------------------------- */

static int sq_kv_get(char *buf, size_t cap, size_t *len, ledger_conn *lc, const char *key)
{
	struct sq_conn *c = conn_of(lc);
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_KV_GET);
	if (err)
		return err;
	bind_text(st, 1, key);
	int r = step(c, st, "read kv");
	if (r < 0)
		return r;
	if (r == 0) {
		done(st);
		return troop_error_set(TROOP_ENOTFOUND, "no value stored under '%s'", key);
	}
	const char *v = col_text(st, 0);
	size_t n = (size_t)sqlite3_column_bytes(st, 0);
	*len = n;
	if (n + 1 > cap) {
		done(st);
		return troop_error_set(TROOP_ETOOLARGE, "value of '%s' is %zu bytes, buffer %zu",
		    key, n, cap);
	}
	memcpy(buf, v, n);
	buf[n] = '\0';
	done(st);
	return 0;
}

struct kv_arg {
	const char *key, *value;
	int64_t now;
	bool inserted;
};

static int kv_put_txn(struct sq_conn *c, void *arg)
{
	struct kv_arg *a = arg;
	sqlite3_stmt *st = NULL;
	int err = prep(&st, c, ST_KV_INSERT);
	if (err)
		return err;
	bind_text(st, 1, a->key);
	bind_text(st, 2, a->value);
	sqlite3_bind_int64(st, 3, a->now);
	if ((err = run(c, st, "insert kv")) != 0)
		return err;
	a->inserted = sqlite3_changes(c->db) == 1;
	return 0;
}

static int sq_kv_put_if_absent(bool *inserted, ledger_conn *lc, const char *key,
    const char *value, int64_t now)
{
	struct kv_arg a = { key, value, now, false };
	int err = with_txn(conn_of(lc), true, kv_put_txn, &a);
	if (err == 0)
		*inserted = a.inserted;
	return err;
}

struct audit_arg {
	const char *actor, *action, *detail;
	int64_t now;
};

static int audit_txn(struct sq_conn *c, void *arg)
{
	struct audit_arg *a = arg;
	return insert_audit(c, a->actor, a->action, a->detail, a->now);
}

static int sq_audit(ledger_conn *lc, const char *actor, const char *action,
    const char *detail, int64_t now)
{
	struct audit_arg a = { actor, action, detail, now };
	return with_txn(conn_of(lc), true, audit_txn, &a);
}

const struct ledger_ops ledger_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.conn_open = sq_conn_open,
	.conn_close = sq_conn_close,
	.schema_version = sq_schema_version,
	.ensure_account = sq_ensure_account,
	.balance_get = sq_balance_get,
	.admin_grant = sq_admin_grant,
	.reserve = sq_reserve,
	.settle = sq_settle,
	.release_expired = sq_release_expired,
	.reservation_get = sq_reservation_get,
	.transactions = sq_transactions,
	.totals_get = sq_totals_get,
	.node_upsert = sq_node_upsert,
	.node_get = sq_node_get,
	.node_set_verification = sq_node_set_verification,
	.kv_get = sq_kv_get,
	.kv_put_if_absent = sq_kv_put_if_absent,
	.audit = sq_audit,
};
