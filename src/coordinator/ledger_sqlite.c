/*
 * ledger_sqlite.c - the SQLite 3 driver under the ledger (ledger_driver.h);
 * the embedded default.  The credit rules are in ledger.c.
 *
 * One file, created mode 0600, WAL mode (readers never block the writer),
 * synchronous=FULL (the WAL is fsynced at every commit: a committed
 * reservation or settlement survives a power cut; "?synchronous=normal"
 * in the URL trades that for speed, for benchmarks), busy_timeout 5 s.
 * Automatic checkpoints are off on every connection: a checkpoint run by
 * the committing connection would stall that commit, with the write lock
 * held, for as long as it copies pages and syncs the database file.
 * Instead a background thread of the handle runs a PASSIVE checkpoint
 * (it never takes the write lock, so writers go on while it copies) on a
 * connection of its own, every CKPT_INTERVAL_MS while the WAL has grown.  Every write transaction is BEGIN IMMEDIATE, which
 * takes the write lock up front, so a read-then-write transaction can
 * never fail half-way with SQLITE_BUSY and the check-then-debit of a
 * reservation is serialised across threads and processes.  A transaction
 * that still meets SQLITE_BUSY is reported retryable; ledger.c retries it.
 *
 * Each ledger_conn owns one sqlite3 handle opened NOMUTEX (the caller
 * guarantees one thread at a time) and caches its prepared statements,
 * prepared lazily on first use.  The shared SQL uses $N placeholders,
 * which SQLite reads as named parameters numbered in order of first use:
 * they are bound by name.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "ledger_driver.h"
#include "log.h"
#include "thread.h"

#define BUSY_TIMEOUT_MS 5000
#define CKPT_INTERVAL_MS 200

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
	bool sync_full;         /* synchronous=FULL (the default) or NORMAL */
	/* the checkpoint thread (started by sq_open, joined by sq_close) */
	pthread_t ckpt_th;
	bool ckpt_started, ckpt_stop;
	pthread_mutex_t ckpt_mu;
	pthread_cond_t ckpt_cv;
};

/* Prepared once per connection: the transaction statements, and the
 * savepoint statements group commit runs around every write of a batch
 * (ledger.c's batch_run; through sq_script, which would parse them again
 * each time). */
enum { TX_BEGIN, TX_COMMIT, TX_ROLLBACK, TX_SAVEPOINT, TX_RELEASE, TX_ROLLBACK_TO, TX_COUNT };
static const char *const txn_sql[TX_COUNT] = { "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK",
	"SAVEPOINT troop_item", "RELEASE SAVEPOINT troop_item",
	"ROLLBACK TO SAVEPOINT troop_item" };

struct sq_conn {
	struct ledger_conn base;
	struct sq_ledger *owner;
	sqlite3 *db;
	sqlite3_stmt *st[LS_COUNT];
	sqlite3_stmt *txn[TX_COUNT];
	sqlite3_stmt *cur;  /* the open cursor, if any */
	const char *what;   /* what the cursor is doing, for messages */
	bool locked;        /* holds owner->write_mu */
	bool busy;          /* the last failure was SQLITE_BUSY/LOCKED: worth a retry */
};

static struct sq_conn *sq(ledger_conn *c)
{
	return (struct sq_conn *)c;
}

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

/* Prepare `sql` into *slot unless done before. */
static int prep(sqlite3_stmt **slot, struct sq_conn *c, const char *sql)
{
	if (*slot != NULL)
		return 0;
	int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
	if (rc == SQLITE_OK)
		return 0;
	*slot = NULL;
	return sq_fail(c, rc, "prepare");
}

/* ---- cursor ------------------------------------------------------------------ */

static void sq_finish(ledger_conn *lc)
{
	struct sq_conn *c = sq(lc);
	if (c->cur != NULL) {
		/* drop the bindings: bound strings are not referenced past the call */
		sqlite3_reset(c->cur);
		sqlite3_clear_bindings(c->cur);
		c->cur = NULL;
	}
}

static int bind(sqlite3_stmt *st, int idx, const struct ledger_param *p)
{
	switch (p->type) {
	case LEDGER_P_I64:
		return sqlite3_bind_int64(st, idx, p->i);
	case LEDGER_P_F64:
		return sqlite3_bind_double(st, idx, p->f);
	case LEDGER_P_TEXT:
		return sqlite3_bind_text(st, idx, p->s ? p->s : "", -1, SQLITE_STATIC);
	default:
		return sqlite3_bind_null(st, idx);
	}
}

static int sq_query(ledger_conn *lc, enum ledger_stmt id, const struct ledger_param *p,
    int n, const char *what)
{
	struct sq_conn *c = sq(lc);
	sq_finish(lc);
	int err = prep(&c->st[id], c, ledger_stmt_sql(c->base.drv, id));
	if (err)
		return err;
	sqlite3_stmt *st = c->st[id];
	/* "$k" is parameter k of p, wherever SQLite numbered it */
	int count = sqlite3_bind_parameter_count(st);
	for (int j = 1; j <= count; j++) {
		const char *name = sqlite3_bind_parameter_name(st, j);
		int k = (name != NULL && name[0] == '$') ? atoi(name + 1) : 0;
		if (k < 1 || k > n) {
			sqlite3_clear_bindings(st);
			return troop_error_set(TROOP_ERR, "ledger: %s: parameter %s not given",
			    what, name ? name : "?");
		}
		int rc = bind(st, j, &p[k - 1]);
		if (rc != SQLITE_OK) {
			sqlite3_clear_bindings(st);
			return sq_fail(c, rc, what);
		}
	}
	c->cur = st;
	c->what = what;
	return 0;
}

static int sq_next(ledger_conn *lc)
{
	struct sq_conn *c = sq(lc);
	if (c->cur == NULL)
		return 0;
	int rc = sqlite3_step(c->cur);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sq_fail(c, rc, c->what);
}

static int64_t sq_col_i64(ledger_conn *lc, int col)
{
	return sqlite3_column_int64(sq(lc)->cur, col);
}

static double sq_col_f64(ledger_conn *lc, int col)
{
	return sqlite3_column_double(sq(lc)->cur, col);
}

static const char *sq_col_text(ledger_conn *lc, int col, size_t *len)
{
	const unsigned char *s = sqlite3_column_text(sq(lc)->cur, col);
	if (len != NULL)
		*len = s ? (size_t)sqlite3_column_bytes(sq(lc)->cur, col) : 0;
	return s ? (const char *)s : "";
}

static int64_t sq_changes(ledger_conn *lc)
{
	return sqlite3_changes64(sq(lc)->db);
}

/* ---- transactions ---------------------------------------------------------------- */

static int txn_step(struct sq_conn *c, int which, const char *what)
{
	int err = prep(&c->txn[which], c, txn_sql[which]);
	if (err)
		return err;
	int rc = sqlite3_step(c->txn[which]);
	sqlite3_reset(c->txn[which]);
	return rc == SQLITE_DONE ? 0 : sq_fail(c, rc, what);
}

static void unlock(struct sq_conn *c)
{
	if (c->locked) {
		c->locked = false;
		pthread_mutex_unlock(&c->owner->write_mu);
	}
}

static int sq_begin(ledger_conn *lc)
{
	struct sq_conn *c = sq(lc);
	c->busy = false;
	pthread_mutex_lock(&c->owner->write_mu);
	c->locked = true;
	int err = txn_step(c, TX_BEGIN, "begin transaction");
	if (err)
		unlock(c);
	return err;
}

static int sq_commit(ledger_conn *lc)
{
	struct sq_conn *c = sq(lc);
	sq_finish(lc);
	int err = txn_step(c, TX_COMMIT, "commit");
	if (err == 0)
		unlock(c);
	return err;
}

static void sq_rollback(ledger_conn *lc)
{
	struct sq_conn *c = sq(lc);
	sq_finish(lc);
	if (!sqlite3_get_autocommit(c->db)) {
		bool busy = c->busy;
		txn_step(c, TX_ROLLBACK, "rollback");
		c->busy = busy;
		if (!sqlite3_get_autocommit(c->db))  /* last resort */
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	}
	unlock(c);
}

/* A file has no connection to lose. */
static int sq_ready(ledger_conn *lc)
{
	(void)lc;
	return 0;
}

static bool sq_lost(ledger_conn *lc)
{
	(void)lc;
	return false;
}

static bool sq_retryable(ledger_conn *lc)
{
	return sq(lc)->busy;
}

static int sq_script(ledger_conn *lc, const char *sql)
{
	struct sq_conn *c = sq(lc);
	char *emsg = NULL;

	for (int k = TX_SAVEPOINT; k < TX_COUNT; k++)
		if (strcmp(sql, txn_sql[k]) == 0)
			return txn_step(c, k, "savepoint");
	if (strcmp(sql, LEDGER_SQL_SAVEPOINT_NEXT) == 0) {
		int err = txn_step(c, TX_RELEASE, "savepoint");
		return err ? err : txn_step(c, TX_SAVEPOINT, "savepoint");
	}
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &emsg);
	if (rc == SQLITE_OK)
		return 0;
	int err = sq_fail(c, rc, "migration");
	troop_error_set(err, "%s", emsg ? emsg : sqlite3_errstr(rc));
	sqlite3_free(emsg);
	return err;
}

/* ---- handles ------------------------------------------------------------------ */

static void sq_conn_close(ledger_conn *lc)
{
	struct sq_conn *c = sq(lc);
	if (c == NULL)
		return;
	for (int i = 0; i < LS_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	for (int i = 0; i < TX_COUNT; i++)
		sqlite3_finalize(c->txn[i]);
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

static int sq_conn_open(ledger_conn **out, ledger *l)
{
	struct sq_ledger *s = (struct sq_ledger *)l;
	int err = 0;
	struct sq_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	c->base.drv = &ledger_sqlite_driver;
	c->base.owner = l;
	c->owner = s;
	int rc = sqlite3_open_v2(s->path, &c->db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err = troop_error_set(TROOP_EUNAVAIL, "cannot open ledger database %s: %s",
		    s->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, s->busy_ms);

	char mode[16] = "";
	char *emsg = NULL;
	rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", journal_cb, mode, &emsg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, s->sync_full ? "PRAGMA synchronous=FULL" :
		    "PRAGMA synchronous=NORMAL", NULL, NULL, &emsg);
	/* checkpoints are the background thread's (sq_checkpoint_main) */
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, &emsg);
	if (rc != SQLITE_OK) {
		err = troop_error_set(TROOP_EUNAVAIL, "cannot set up ledger database %s: %s",
		    s->path, emsg ? emsg : sqlite3_errstr(rc));
		sqlite3_free(emsg);
		goto fail;
	}
	if (strcmp(mode, "wal") != 0)
		log_warn("ledger_journal", "path=%s mode=%s expected=wal", s->path, mode);
	*out = &c->base;
	return 0;
fail:
	sq_conn_close(&c->base);
	return err;
}

/* ---- the checkpoint thread ------------------------------------------------------ */

/* Every CKPT_INTERVAL_MS: a PASSIVE checkpoint on a connection of its own.
 * PASSIVE copies what no reader still needs and never waits for a lock,
 * so a commit never waits for it.  (A checkpoint that finds the whole WAL
 * copied lets the next writer start the WAL over from its beginning.) */
static void *sq_checkpoint_main(void *arg)
{
	struct sq_ledger *s = arg;
	sqlite3 *db = NULL;
	int64_t last_log = -1;
	bool wal = false;

	if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	    NULL) != SQLITE_OK) {
		log_warn("ledger_checkpoint", "path=%s open=failed", s->path);
		sqlite3_close_v2(db);
		db = NULL;
	} else {
		sqlite3_busy_timeout(db, 0);
		sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
	}
	pthread_mutex_lock(&s->ckpt_mu);
	while (!s->ckpt_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += CKPT_INTERVAL_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (pthread_cond_timedwait(&s->ckpt_cv, &s->ckpt_mu, &ts) != ETIMEDOUT ||
		    db == NULL)
			continue;
		pthread_mutex_unlock(&s->ckpt_mu);
		/* the file may still be empty or not yet in WAL mode (the
		 * migrations run after the handle is made): reading the mode
		 * makes this connection see the WAL once it is there */
		char mode[16] = "";
		if (!wal)
			sqlite3_exec(db, "PRAGMA journal_mode", journal_cb, mode, NULL);
		wal = wal || strcmp(mode, "wal") == 0;
		int n_log = 0, n_done = 0;
		int rc = wal ? sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE,
		    &n_log, &n_done) : SQLITE_OK;
		if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY && n_log != last_log)
			log_warn("ledger_checkpoint", "path=%s error=\"%s\"", s->path,
			    sqlite3_errmsg(db));
		last_log = n_log;
		pthread_mutex_lock(&s->ckpt_mu);
	}
	pthread_mutex_unlock(&s->ckpt_mu);
	if (db != NULL) {
		/* a last one, so that a clean stop leaves a short WAL */
		sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		sqlite3_close_v2(db);
	}
	return NULL;
}

static int sq_checkpoint_start(struct sq_ledger *s)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->ckpt_cv, &ca);
	pthread_condattr_destroy(&ca);
	/* leave SIGINT/SIGTERM to the threads that handle them */
	int rc = thread_start(&s->ckpt_th, sq_checkpoint_main, s);
	if (rc != 0)
		return troop_error_set(TROOP_ERR, "ledger: cannot start the checkpoint thread");
	s->ckpt_started = true;
	return 0;
}

static void sq_close(ledger *l)
{
	struct sq_ledger *s = (struct sq_ledger *)l;
	if (s == NULL)
		return;
	if (s->ckpt_started) {
		pthread_mutex_lock(&s->ckpt_mu);
		s->ckpt_stop = true;
		pthread_cond_signal(&s->ckpt_cv);
		pthread_mutex_unlock(&s->ckpt_mu);
		pthread_join(s->ckpt_th, NULL);
		pthread_cond_destroy(&s->ckpt_cv);
	}
	pthread_mutex_destroy(&s->ckpt_mu);
	pthread_mutex_destroy(&s->write_mu);
	free(s->path);
	free(s);
}

static const char *sq_describe(const ledger *l)
{
	return ((const struct sq_ledger *)l)->path;
}

/* One "key=value" option of the URL (len bytes at opt) into s. */
static int parse_option(struct sq_ledger *s, const char *opt, size_t len)
{
	static const char busy[] = "busy_timeout=", sync[] = "synchronous=";
	char v[32];

	if (len > strlen(busy) && strncmp(opt, busy, strlen(busy)) == 0) {
		char *end = NULL;
		snprintf(v, sizeof v, "%.*s", (int)(len - strlen(busy)), opt + strlen(busy));
		long ms = strtol(v, &end, 10);
		if (end == v || *end != '\0' || ms < 0 || ms > 600000)
			return troop_error_set(TROOP_EINVAL, "ledger: busy_timeout must be 0..600000 "
			    "milliseconds, got '%s'", v);
		s->busy_ms = (int)ms;
		return 0;
	}
	if (len >= strlen(sync) && strncmp(opt, sync, strlen(sync)) == 0) {
		snprintf(v, sizeof v, "%.*s", (int)(len - strlen(sync)), opt + strlen(sync));
		if (strcmp(v, "full") != 0 && strcmp(v, "normal") != 0)
			return troop_error_set(TROOP_EINVAL, "ledger: synchronous must be full or "
			    "normal, got '%s'", v);
		s->sync_full = strcmp(v, "full") == 0;
		return 0;
	}
	return troop_error_set(TROOP_EINVAL, "ledger: unknown option '%.*s' (known: "
	    "busy_timeout=MS, synchronous=full|normal)", (int)len, opt);
}

/* Split "PATH[?OPTION[&OPTION]]" into s->path, s->busy_ms and s->sync_full. */
static int parse_target(struct sq_ledger *s, const char *target)
{
	const char *q = strchr(target, '?');
	size_t plen = q ? (size_t)(q - target) : strlen(target);
	s->busy_ms = BUSY_TIMEOUT_MS;
	s->sync_full = true;
	for (const char *o = q ? q + 1 : NULL; o != NULL; ) {
		const char *amp = strchr(o, '&');
		size_t len = amp ? (size_t)(amp - o) : strlen(o);
		int err = parse_option(s, o, len);
		if (err)
			return err;
		o = amp ? amp + 1 : NULL;
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
	struct sq_ledger *s = calloc(1, sizeof *s);
	if (s == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	s->base.drv = &ledger_sqlite_driver;
	pthread_mutex_init(&s->write_mu, NULL);
	pthread_mutex_init(&s->ckpt_mu, NULL);
	int err = parse_target(s, target);
	/* The ledger holds the ticket signing key: owner only.  SQLite gives
	 * the -wal and -shm files the database file's mode. */
	int fd = err ? -1 : open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (err == 0 && fd < 0)
		err = troop_error_set(TROOP_EUNAVAIL, "cannot open ledger database %s: %s",
		    s->path, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (err == 0)
		err = sq_checkpoint_start(s);
	if (err) {
		sq_close(&s->base);
		return err;
	}
	*out = &s->base;
	return 0;
}

/* Where SQLite's SQL differs from the shared table. */
static const char *const sq_sql[LS_COUNT] = {
	[LS_SCHEMA_EXISTS] = "SELECT 1 FROM sqlite_master "
	    "WHERE type = 'table' AND name = 'schema_version'",
};

const struct ledger_driver ledger_sqlite_driver = {
	.name = "sqlite",
	.one_writer = true,
	.sql = sq_sql,
	LEDGER_DRIVER_FUNCS(sq),
};
