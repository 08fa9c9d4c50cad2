/*
 * ledger_pg.c - the PostgreSQL driver under the ledger (ledger_driver.h,
 * libpq), for several coordinators sharing one database (DESIGN.md
 * section 11).  The credit rules and the lock order are in ledger.c and
 * ledger.h.
 *
 * Each ledger_conn owns one PGconn and prepares its statements lazily, once
 * per session; parameters travel as text.  Write transactions are READ
 * COMMITTED and lock rows explicitly (FOR UPDATE, FOR UPDATE SKIP LOCKED
 * for the release sweep, so sweepers on several coordinators share the
 * work).  Serialization failures, deadlocks, lock timeouts and cancelled
 * statements are reported retryable; ledger.c retries the transaction.
 * lock_timeout defaults to 5 s; a URL may set its own with
 * options=-c%20lock_timeout%3DMS.
 *
 * Connection loss: `lost` tells ledger.c the connection is gone, and
 * `ready` reconnects before the next call (also after a failover to a
 * standby, so that a URL with several hosts and
 * target_session_attrs=read-write finds the primary).  Migrations run
 * under a session advisory lock, so coordinators starting together apply
 * each one once.
 */
#ifdef TROOP_HAVE_PQ

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ledger_driver.h"
#include "log.h"

#define MAX_PARAMS 12
#define MIGRATION_LOCK_KEY "7418237433217165"  /* pg_advisory_lock key */
#define DESC_MAX 300

struct pg_ledger {
	struct ledger base;
	char *url;                /* full postgresql:// URL (may hold a password) */
	char desc[DESC_MAX];      /* host:port/dbname, for messages */
};

struct pg_conn {
	struct ledger_conn base;
	PGconn *db;
	bool prepared[LS_COUNT];
	bool retry;       /* the last failure is worth retrying the transaction */
	bool stale;       /* reconnect before the next call (server turned read-only) */
	PGresult *cur;    /* the open cursor's result, if any */
	int row;          /* its current row */
	int64_t changed;  /* rows changed by the last statement */
};

static struct pg_conn *pgc(ledger_conn *c)
{
	return (struct pg_conn *)c;
}

static struct pg_ledger *pgl_of(const struct pg_conn *c)
{
	return (struct pg_ledger *)c->base.owner;
}

/* ---- errors ------------------------------------------------------------------ */

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

/* ---- connection state -------------------------------------------------------- */

static bool pg_lost(ledger_conn *lc)
{
	return PQstatus(pgc(lc)->db) != CONNECTION_OK;
}

static void pg_finish(ledger_conn *lc)
{
	struct pg_conn *c = pgc(lc);
	PQclear(c->cur);
	c->cur = NULL;
}

/* Before a call (never inside a transaction): reconnect if the last call
 * lost the connection, or found a standby. */
static int pg_ready(ledger_conn *lc)
{
	struct pg_conn *c = pgc(lc);
	if (PQstatus(c->db) == CONNECTION_OK && !c->stale)
		return 0;
	pg_finish(lc);
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

/* Keep r as the cursor if it succeeded; else fail with `what`. */
static int take(struct pg_conn *c, PGresult *r, const char *what)
{
	ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		int err = pg_fail(c, r, what);
		PQclear(r);
		return err;
	}
	c->cur = r;
	c->row = -1;
	c->changed = strtoll(PQcmdTuples(r), NULL, 10);
	return 0;
}

/* Plain SQL, no parameters (transaction control, migrations). */
static int exec_sql(struct pg_conn *c, const char *sql, const char *what)
{
	pg_finish(&c->base);
	int err = take(c, PQexec(c->db, sql), what);
	pg_finish(&c->base);
	return err;
}

/* ---- cursor ------------------------------------------------------------------ */

static int pg_query(ledger_conn *lc, enum ledger_stmt id, const struct ledger_param *p,
    int n, const char *what)
{
	struct pg_conn *c = pgc(lc);
	char name[16], num[MAX_PARAMS][32];
	const char *v[MAX_PARAMS];
	pg_finish(lc);
	if (n > MAX_PARAMS)
		return troop_error_set(TROOP_ERR, "ledger: %s: too many parameters", what);
	snprintf(name, sizeof name, "troop_%d", (int)id);
	if (!c->prepared[id]) {
		PGresult *r = PQprepare(c->db, name, ledger_stmt_sql(lc->drv, id), 0, NULL);
		int err = take(c, r, "prepare");
		pg_finish(lc);
		if (err)
			return err;
		c->prepared[id] = true;
	}
	for (int i = 0; i < n; i++) {
		v[i] = num[i];
		if (p[i].type == LEDGER_P_I64)
			snprintf(num[i], sizeof num[i], "%lld", (long long)p[i].i);
		else if (p[i].type == LEDGER_P_F64)
			snprintf(num[i], sizeof num[i], "%.17g", p[i].f);
		else
			v[i] = p[i].type == LEDGER_P_TEXT ? (p[i].s ? p[i].s : "") : NULL;
	}
	return take(c, PQexecPrepared(c->db, name, n, v, NULL, NULL, 0), what);
}

static int pg_next(ledger_conn *lc)
{
	struct pg_conn *c = pgc(lc);
	if (c->cur == NULL || c->row + 1 >= PQntuples(c->cur))
		return 0;
	c->row++;
	return 1;
}

static const char *pg_col_text(ledger_conn *lc, int col, size_t *len)
{
	struct pg_conn *c = pgc(lc);
	if (len != NULL)
		*len = (size_t)PQgetlength(c->cur, c->row, col);
	return PQgetvalue(c->cur, c->row, col);
}

static int64_t pg_col_i64(ledger_conn *lc, int col)
{
	return strtoll(pg_col_text(lc, col, NULL), NULL, 10);
}

static double pg_col_f64(ledger_conn *lc, int col)
{
	return strtod(pg_col_text(lc, col, NULL), NULL);
}

static int64_t pg_changes(ledger_conn *lc)
{
	return pgc(lc)->changed;
}

/* ---- transactions ---------------------------------------------------------------- */

static int pg_begin(ledger_conn *lc)
{
	pgc(lc)->retry = false;
	return exec_sql(pgc(lc), "BEGIN", "begin transaction");
}

static int pg_commit(ledger_conn *lc)
{
	return exec_sql(pgc(lc), "COMMIT", "commit");
}

static void pg_rollback(ledger_conn *lc)
{
	struct pg_conn *c = pgc(lc);
	pg_finish(lc);
	if (PQstatus(c->db) == CONNECTION_OK && PQtransactionStatus(c->db) != PQTRANS_IDLE)
		PQclear(PQexec(c->db, "ROLLBACK"));
}

static bool pg_retryable(ledger_conn *lc)
{
	return pgc(lc)->retry;
}

static int pg_script(ledger_conn *lc, const char *sql)
{
	return exec_sql(pgc(lc), sql, "migration");
}

/* ---- handles ------------------------------------------------------------------ */

static void pg_conn_close(ledger_conn *lc)
{
	struct pg_conn *c = pgc(lc);
	if (c == NULL)
		return;
	pg_finish(lc);
	PQfinish(c->db);
	free(c);
}

static int pg_conn_open(ledger_conn **out, ledger *l)
{
	struct pg_ledger *p = (struct pg_ledger *)l;
	/* Our defaults first: values in the URL (expanded from dbname) win. */
	const char *const keys[] = { "connect_timeout", "options", "application_name",
		"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
		"dbname", NULL };
	const char *const vals[] = { "5", "-c lock_timeout=5000", "troop-coordinator",
		"1", "30", "10", "3", p->url, NULL };
	struct pg_conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	c->base.drv = &ledger_pg_driver;
	c->base.owner = l;
	c->db = PQconnectdbParams(keys, vals, 1);
	if (c->db == NULL) {
		free(c);
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	}
	if (PQstatus(c->db) != CONNECTION_OK) {
		char msg[512];
		conn_error(msg, sizeof msg, c->db);
		pg_conn_close(&c->base);
		return troop_error_set(TROOP_EUNAVAIL, "cannot connect to ledger database %s: %s",
		    p->desc, msg);
	}
	PQsetNoticeProcessor(c->db, quiet_notices, NULL);
	*out = &c->base;
	return 0;
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

static const char *pg_describe(const ledger *l)
{
	return ((const struct pg_ledger *)l)->desc;
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
	/* the description goes into logs: a part that could hold credentials
	 * (a mistyped URL such as postgresql://postgresql://u:pw@h makes
	 * "/u:pw@h" the database name) is not shown */
	if (db && strpbrk(db, ":@/"))
		db = "(database)";
	if (user && strpbrk(user, ":@/"))
		user = NULL;
	if (host && strpbrk(host, "@"))
		host = "(host)";
	if (port && strpbrk(port, ":@/"))
		port = "(port)";
	snprintf(p->desc, sizeof p->desc, "%.100s:%.16s/%.100s", host ? host : "localhost",
	    port ? port : "5432", db ? db : (user ? user : "(default)"));
	PQconninfoFree(opts);
	return 0;
}

int ledger_pg_url_check(const char *target, char *desc, size_t desc_len)
{
	struct pg_ledger *p = calloc(1, sizeof *p);
	int err;

	if (p == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	err = parse_url(p, target);
	if (err == 0 && desc && desc_len)
		snprintf(desc, desc_len, "%s", p->desc);
	if (p->url != NULL) {
		memset(p->url, 0, strlen(p->url));  /* may hold a password */
		free(p->url);
	}
	free(p);
	return err;
}

static int pg_open(ledger **out, const char *target)
{
	struct pg_ledger *p = calloc(1, sizeof *p);
	if (p == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	p->base.drv = &ledger_pg_driver;
	int err = parse_url(p, target);
	if (err) {
		pg_close(&p->base);
		return err;
	}
	*out = &p->base;
	return 0;
}

/* Where PostgreSQL's SQL differs from the shared table. */
static const char *const pg_sql[LS_COUNT] = {
	[LS_SCHEMA_EXISTS] = "SELECT 1 WHERE to_regclass('schema_version') IS NOT NULL",
	[LS_MIGRATE_LOCK] = "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")",
	[LS_MIGRATE_UNLOCK] = "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")",
	[LS_RES_LOCK] = LEDGER_SQL_RES_LOCK " FOR UPDATE",
	[LS_RES_EXPIRED] = LEDGER_SQL_RES_EXPIRED " FOR UPDATE SKIP LOCKED",
};

const struct ledger_driver ledger_pg_driver = {
	.name = "postgres",
	.sql = pg_sql,
	LEDGER_DRIVER_FUNCS(pg),
};

#endif /* TROOP_HAVE_PQ */
