/*
 * test_ledger.c - the ledger on real SQLite files in a temporary
 * directory: migrations, starter grants (also racing threads), escrow
 * under 100 concurrent reservations, settlement math and idempotence,
 * expiry, pagination, nodes, kv and audit.  After every step that moves
 * credits the invariant granted == balances + reserved is checked.
 *
 * With TROOP_TEST_LEDGER_URL=postgres://... (tests/integration/
 * test_pg_backends.sh sets it) the same tests run on PostgreSQL instead:
 * each test gets a database of its own, created from that URL and dropped
 * afterwards.  The tests of SQLite file names and locks keep using SQLite.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#ifdef TROOP_HAVE_PQ
#include <libpq-fe.h>
#endif

#include "error.h"
#include "ledger.h"
#include "migrations.h"

#define NOW 1764000000
#define STARTER 3600

struct fixture {
	char dir[256];
	char path[300];   /* the SQLite file (also used by the URL tests on PostgreSQL) */
	char url[1200];   /* what the ledger is opened with: path, or a postgres URL */
	char dbname[64];  /* PostgreSQL: this test's own database */
	bool pg;
	ledger *l;
	ledger_conn *c;
};

#include "coordinator/pg_util.h"

static int setup(void **state)
{
	static int seq;
	struct fixture *f = calloc(1, sizeof *f);
	if (f == NULL)
		return -1;
	const char *tmp = getenv("TMPDIR");
	snprintf(f->dir, sizeof f->dir, "%s/troop-ledger-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof f->path, "%s/ledger.db", f->dir);
	snprintf(f->url, sizeof f->url, "%s", f->path);
	const char *base = getenv("TROOP_TEST_LEDGER_URL");
	if (base != NULL && strncmp(base, "postgres", 8) == 0) {
#ifdef TROOP_HAVE_PQ
		char sql[128];
		f->pg = true;
		snprintf(f->dbname, sizeof f->dbname, "troop_t_%d_%d", (int)getpid(), ++seq);
		snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->dbname);
		if (pg_exec(base, sql) != 0)
			return -1;
		pg_url_with_db(f->url, sizeof f->url, base, f->dbname);
#else
		fprintf(stderr, "TROOP_TEST_LEDGER_URL is postgres but libpq is not built in\n");
		return -1;
#endif
	}
	if (ledger_open(&f->l, f->url) != 0 || ledger_conn_open(&f->c, f->l) != 0) {
		fprintf(stderr, "open: %s\n", troop_error_msg());
		return -1;
	}
	*state = f;
	return 0;
}

static void remove_db_files(const char *path)
{
	const char *suffix[] = { "", "-wal", "-shm", "-journal" };
	char p[400];
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, suffix[i]);
		unlink(p);
	}
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	ledger_conn_close(f->c);
	ledger_close(f->l);
	remove_db_files(f->path);
	char p[400];
	snprintf(p, sizeof p, "%s/other.db", f->dir);
	remove_db_files(p);
	snprintf(p, sizeof p, "%s/private.db", f->dir);  /* test_file_mode, if it failed */
	remove_db_files(p);
	rmdir(f->dir);
#ifdef TROOP_HAVE_PQ
	if (f->pg) {
		char sql[128];
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbname);
		pg_exec(getenv("TROOP_TEST_LEDGER_URL"), sql);
	}
#endif
	free(f);
	return 0;
}

/* Reopen the ledger (a restart). */
static void reopen(struct fixture *f)
{
	ledger_conn_close(f->c);
	ledger_close(f->l);
	assert_int_equal(ledger_open(&f->l, f->url), 0);
	assert_int_equal(ledger_conn_open(&f->c, f->l), 0);
}

static void assert_invariant(ledger_conn *c)
{
	ledger_totals t;
	assert_int_equal(ledger_totals_get(&t, c), 0);
	assert_true(ledger_totals_balanced(&t));
}

/* A count from the database, read with a separate plain connection. */
static int64_t count_rows(const struct fixture *f, const char *sql)
{
#ifdef TROOP_HAVE_PQ
	if (f->pg) {
		PGconn *pg = PQconnectdb(f->url);
		assert_int_equal(PQstatus(pg), CONNECTION_OK);
		PGresult *r = PQexec(pg, sql);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		int64_t v = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
		PQclear(r);
		PQfinish(pg);
		return v;
	}
#endif
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Spendable now: ordinary and trial credits. */
static int64_t available(ledger_conn *c, const char *account)
{
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, c, account), 0);
	return b.available + b.trial;
}

static int64_t reserved(ledger_conn *c, const char *account)
{
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, c, account), 0);
	return b.reserved;
}

static ledger_reserve_req req_for(const char *job, const char *requester, int64_t amount,
    double mult, int64_t expires_at)
{
	ledger_reserve_req q = {
		.job_id = job, .requester = requester, .node_id = "node-1", .worker = "owner-1",
		.model = "llama3:8b", .amount = amount, .max_seconds = amount,
		.multiplier = mult, .expires_at = expires_at, .now = NOW,
	};
	return q;
}

static ledger_settle_req settle_for(const char *job, const char *signer, int64_t ms,
    int64_t now)
{
	ledger_settle_req q = {
		.job_id = job, .signer_node_id = signer, .duration_ms = ms, .tokens_in = 10,
		.tokens_out = 20, .outcome = "ok", .grace_s = LEDGER_RELEASE_GRACE, .now = now,
	};
	return q;
}

/* ---- migrations and persistence ----------------------------------------------- */

static void test_migrations_once(void **state)
{
	struct fixture *f = *state;
	int max = 0;
	for (int i = 0; i < troop_migrations_count; i++)
		if (troop_migrations[i].version > max)
			max = troop_migrations[i].version;
	int v = -1;
	assert_int_equal(ledger_schema_version(&v, f->c), 0);
	assert_int_equal(v, max);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM schema_version"),
	    troop_migrations_count);

	/* opening again applies nothing twice and fails nothing */
	reopen(f);
	reopen(f);
	assert_int_equal(ledger_schema_version(&v, f->c), 0);
	assert_int_equal(v, max);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM schema_version"),
	    troop_migrations_count);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM counters"), 2);
	assert_string_equal(ledger_backend_name(f->l), f->pg ? "postgres" : "sqlite");
}

static void test_reopen_keeps_data(void **state)
{
	struct fixture *f = *state;
	bool created = false, inserted = false;
	int64_t avail = 0;
	assert_int_equal(ledger_ensure_account(&created, f->c, "alice", STARTER, NOW), 0);
	assert_true(created);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "alice", 100, "beta tester", "admin-1",
	    NOW), 0);
	ledger_reserve_req q = req_for("job-1", "alice", 500, 1.0, NOW + 600);
	assert_int_equal(ledger_reserve(&avail, f->c, &q), 0);
	assert_int_equal(avail, STARTER + 100 - 500);
	assert_int_equal(ledger_kv_put_if_absent(&inserted, f->c, "signing_key", "k1", NOW), 0);
	assert_true(inserted);

	reopen(f);
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, f->c, "alice"), 0);
	/* starter credits are trial credits; ordinary credits are spent first */
	assert_int_equal(b.available, 0);
	assert_int_equal(b.trial, STARTER + 100 - 500);
	assert_int_equal(b.reserved, 500);
	ledger_tx *rows = NULL;
	size_t n = 0;
	int64_t next = -1;
	assert_int_equal(ledger_transactions(&rows, &n, &next, f->c, "alice", 10, 0), 0);
	assert_int_equal(n, 3);
	assert_string_equal(rows[0].type, "reserve");
	assert_string_equal(rows[1].type, "admin");
	assert_string_equal(rows[1].note, "beta tester");
	assert_string_equal(rows[2].type, "grant");
	assert_int_equal(rows[2].credits, STARTER);
	assert_int_equal(next, 0);
	free(rows);
	char buf[64];
	assert_int_equal(ledger_kv_get(buf, sizeof buf, NULL, f->c, "signing_key"), 0);
	assert_string_equal(buf, "k1");

	/* no second starter grant after a restart */
	assert_int_equal(ledger_ensure_account(&created, f->c, "alice", STARTER, NOW + 5), 0);
	assert_false(created);
	assert_int_equal(available(f->c, "alice"), STARTER + 100 - 500);
	assert_invariant(f->c);
}

static void test_url_forms(void **state)
{
	struct fixture *f = *state;
	ledger *l = NULL;
	char url[400];

	snprintf(url, sizeof url, "sqlite:%s", f->path);
	assert_int_equal(ledger_open(&l, url), 0);
	ledger_close(l);
	/* SQLAlchemy form with an absolute path: four slashes */
	snprintf(url, sizeof url, "sqlite:///%s/other.db", f->dir);
	assert_int_equal(ledger_open(&l, url), 0);
	ledger_close(l);
	char p[400];
	snprintf(p, sizeof p, "%s/other.db", f->dir);
	assert_int_equal(access(p, F_OK), 0);

#ifdef TROOP_HAVE_PQ
	/* built in: a server that is not there is unavailable, and named */
	assert_int_equal(ledger_open(&l, "postgres://troop@127.0.0.1:1/troop"), TROOP_EUNAVAIL);
	assert_null(l);
	assert_non_null(strstr(troop_error_msg(), "127.0.0.1:1/troop"));
	assert_int_equal(ledger_open(&l, "postgresql://127.0.0.1:1/troop?no_such_option=1"),
	    TROOP_EINVAL);
	assert_null(l);
#else
	assert_int_equal(ledger_open(&l, "postgres://localhost/troop"), TROOP_EINVAL);
	assert_null(l);
	assert_non_null(strstr(troop_error_msg(), "postgres"));
#endif
	assert_int_equal(ledger_open(&l, "mysql://x/y"), TROOP_EINVAL);
	assert_int_equal(ledger_open(&l, ":memory:"), TROOP_EINVAL);
	assert_int_equal(ledger_open(&l, "sqlite::memory:"), TROOP_EINVAL);
	assert_int_equal(ledger_open(&l, ""), TROOP_EINVAL);
	assert_int_equal(ledger_open(&l, "sqlite:"), TROOP_EINVAL);
	assert_int_equal(ledger_open(&l, "/nonexistent-dir-troop/x/ledger.db"), TROOP_EUNAVAIL);
	assert_null(l);
}

/* ---- accounts ------------------------------------------------------------- */

static void test_starter_grant_once(void **state)
{
	struct fixture *f = *state;
	bool created = false;
	assert_int_equal(ledger_ensure_account(&created, f->c, "bob", STARTER, NOW), 0);
	assert_true(created);
	assert_int_equal(ledger_ensure_account(&created, f->c, "bob", STARTER, NOW + 1), 0);
	assert_false(created);
	assert_int_equal(available(f->c, "bob"), STARTER);
	assert_int_equal(reserved(f->c, "bob"), 0);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE type = 'grant' "
	    "AND requester = 'bob'"), 1);

	/* a public network may start accounts at 0: no grant row at all */
	assert_int_equal(ledger_ensure_account(&created, f->c, "carol", 0, NOW), 0);
	assert_true(created);
	assert_int_equal(available(f->c, "carol"), 0);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE requester = "
	    "'carol'"), 0);

	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, f->c, "nobody"), TROOP_ENOTFOUND);
	assert_invariant(f->c);
}

#define ENSURE_THREADS 8
#define ENSURE_ACCOUNTS 20

struct ensure_ctx {
	ledger *l;
	pthread_barrier_t *barrier;
	int created;  /* accounts this thread created */
	int errors;
};

static void *ensure_thread(void *arg)
{
	struct ensure_ctx *x = arg;
	ledger_conn *c = NULL;
	if (ledger_conn_open(&c, x->l) != 0) {
		x->errors++;
		pthread_barrier_wait(x->barrier);
		return NULL;
	}
	pthread_barrier_wait(x->barrier);
	for (int i = 0; i < ENSURE_ACCOUNTS; i++) {
		char account[32];
		bool created = false;
		snprintf(account, sizeof account, "racer-%02d", i);
		if (ledger_ensure_account(&created, c, account, STARTER, NOW) != 0)
			x->errors++;
		else if (created)
			x->created++;
	}
	ledger_conn_close(c);
	return NULL;
}

static void test_starter_grant_concurrent(void **state)
{
	struct fixture *f = *state;
	pthread_t th[ENSURE_THREADS];
	struct ensure_ctx ctx[ENSURE_THREADS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, ENSURE_THREADS);
	for (int i = 0; i < ENSURE_THREADS; i++) {
		ctx[i] = (struct ensure_ctx){ f->l, &barrier, 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, ensure_thread, &ctx[i]), 0);
	}
	int created = 0, errors = 0;
	for (int i = 0; i < ENSURE_THREADS; i++) {
		pthread_join(th[i], NULL);
		created += ctx[i].created;
		errors += ctx[i].errors;
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(errors, 0);
	assert_int_equal(created, ENSURE_ACCOUNTS);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE type = 'grant'"),
	    ENSURE_ACCOUNTS);
	for (int i = 0; i < ENSURE_ACCOUNTS; i++) {
		char account[32];
		snprintf(account, sizeof account, "racer-%02d", i);
		assert_int_equal(available(f->c, account), STARTER);
	}
	ledger_totals t;
	assert_int_equal(ledger_totals_get(&t, f->c), 0);
	assert_int_equal(t.granted, (int64_t)ENSURE_ACCOUNTS * STARTER);
	assert_int_equal(t.accounts, ENSURE_ACCOUNTS);
	assert_invariant(f->c);
}

static void test_admin_grant(void **state)
{
	struct fixture *f = *state;
	int64_t tx = 0;
	assert_int_equal(ledger_admin_grant(&tx, f->c, "dave", 250, "refund", "admin-key", NOW),
	    0);
	assert_true(tx > 0);
	assert_int_equal(available(f->c, "dave"), 250);
	/* an account created by a grant gets no starter credits later */
	bool created = true;
	assert_int_equal(ledger_ensure_account(&created, f->c, "dave", STARTER, NOW), 0);
	assert_false(created);
	assert_int_equal(available(f->c, "dave"), 250);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM audit_log WHERE actor = "
	    "'admin-key' AND action = 'admin_grant'"), 1);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "dave", 0, NULL, "admin-key", NOW),
	    TROOP_EINVAL);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "dave", -5, NULL, "admin-key", NOW),
	    TROOP_EINVAL);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "dave", 5, NULL, NULL, NOW),
	    TROOP_EINVAL);
	assert_invariant(f->c);
}

/* ---- reservations --------------------------------------------------------- */

static void test_reserve_basic(void **state)
{
	struct fixture *f = *state;
	int64_t avail = -1;
	assert_int_equal(ledger_ensure_account(NULL, f->c, "erin", 100, NOW), 0);

	ledger_reserve_req q = req_for("job-a", "erin", 30, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(&avail, f->c, &q), 0);
	assert_int_equal(avail, 70);
	assert_int_equal(available(f->c, "erin"), 70);
	assert_int_equal(reserved(f->c, "erin"), 30);
	assert_invariant(f->c);

	ledger_reservation r;
	assert_int_equal(ledger_reservation_get(&r, f->c, "job-a"), 0);
	assert_int_equal(r.status, LEDGER_RES_OPEN);
	assert_int_equal(r.amount, 30);
	assert_string_equal(r.requester, "erin");
	assert_string_equal(r.node_id, "node-1");
	assert_string_equal(r.worker, "owner-1");
	assert_int_equal(r.expires_at, NOW + 360);

	/* too expensive: 402 with both numbers, nothing moves */
	q = req_for("job-b", "erin", 80, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(&avail, f->c, &q), TROOP_ECREDITS);
	assert_int_equal(troop_err_status(TROOP_ECREDITS), 402);
	assert_non_null(strstr(troop_error_msg(), "available 70"));
	assert_non_null(strstr(troop_error_msg(), "price 80"));
	assert_int_equal(avail, 70);
	assert_int_equal(available(f->c, "erin"), 70);
	assert_int_equal(ledger_reservation_get(&r, f->c, "job-b"), TROOP_ENOTFOUND);

	/* the same job id twice is a conflict, not a second debit */
	q = req_for("job-a", "erin", 10, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), TROOP_ECONFLICT);
	assert_int_equal(available(f->c, "erin"), 70);

	/* exactly the balance is fine */
	q = req_for("job-c", "erin", 70, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(&avail, f->c, &q), 0);
	assert_int_equal(avail, 0);

	/* an unknown account has nothing */
	q = req_for("job-d", "stranger", 1, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(&avail, f->c, &q), TROOP_ECREDITS);
	assert_int_equal(avail, 0);

	/* argument checks */
	q = req_for("job-e", "erin", 0, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), TROOP_EINVAL);
	q = req_for("job-e", "erin", 1, 0.0, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), TROOP_EINVAL);
	q = req_for("", "erin", 1, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), TROOP_EINVAL);
	char longid[LEDGER_ID_MAX + 2];
	memset(longid, 'x', sizeof longid - 1);
	longid[sizeof longid - 1] = '\0';
	q = req_for(longid, "erin", 1, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), TROOP_ETOOLARGE);
	assert_invariant(f->c);
}

#define RESERVE_THREADS 100

struct reserve_ctx {
	ledger *l;
	pthread_barrier_t *barrier;
	int index;
	int rc;
};

static void *reserve_thread(void *arg)
{
	struct reserve_ctx *x = arg;
	ledger_conn *c = NULL;
	x->rc = ledger_conn_open(&c, x->l);
	pthread_barrier_wait(x->barrier);
	if (x->rc != 0)
		return NULL;
	char job[32];
	snprintf(job, sizeof job, "race-%03d", x->index);
	ledger_reserve_req q = req_for(job, "frank", 10, 1.0, NOW + 360);
	x->rc = ledger_reserve(NULL, c, &q);
	ledger_conn_close(c);
	return NULL;
}

static void test_reserve_concurrent(void **state)
{
	struct fixture *f = *state;
	/* affords exactly 10 reservations of 10 */
	assert_int_equal(ledger_ensure_account(NULL, f->c, "frank", 100, NOW), 0);

	pthread_t th[RESERVE_THREADS];
	struct reserve_ctx ctx[RESERVE_THREADS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, RESERVE_THREADS);
	for (int i = 0; i < RESERVE_THREADS; i++) {
		ctx[i] = (struct reserve_ctx){ f->l, &barrier, i, -999 };
		assert_int_equal(pthread_create(&th[i], NULL, reserve_thread, &ctx[i]), 0);
	}
	int ok = 0, poor = 0, other = 0;
	for (int i = 0; i < RESERVE_THREADS; i++) {
		pthread_join(th[i], NULL);
		if (ctx[i].rc == 0)
			ok++;
		else if (ctx[i].rc == TROOP_ECREDITS)
			poor++;
		else
			other++;
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(other, 0);
	assert_int_equal(ok, 10);
	assert_int_equal(poor, 90);
	assert_int_equal(available(f->c, "frank"), 0);
	assert_int_equal(reserved(f->c, "frank"), 100);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM reservations WHERE requester = "
	    "'frank' AND status = 'open'"), 10);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE type = "
	    "'reserve'"), 10);
	assert_invariant(f->c);
}

/* Group commit: the same race through one writer.  Every answer is what
 * one transaction each would give (a failing item never fails the others:
 * insufficient credits, a job id reserved twice, a receipt from the wrong
 * node), and the writes shared transactions. */
struct batch_ctx {
	ledger *l;
	pthread_barrier_t *barrier;
	int index;
	int rc, settle_rc;
	char job[32];
};

static void *batch_thread(void *arg)
{
	struct batch_ctx *x = arg;
	ledger_conn *c = NULL;
	int rc = ledger_conn_open(&c, x->l);
	pthread_barrier_wait(x->barrier);
	if (rc != 0) {
		x->rc = rc;
		return NULL;
	}
	/* five threads try one job id */
	snprintf(x->job, sizeof x->job, x->index < 5 ? "batch-dup" : "batch-%03d", x->index);
	ledger_reserve_req q = req_for(x->job, "gina", 10, 1.0, NOW + 360);
	x->rc = ledger_reserve(NULL, c, &q);
	pthread_barrier_wait(x->barrier);
	/* every thread settles its job: the reserved ones once, as their
	 * node; the others (and odd threads of the duplicate) get an error */
	ledger_settle_result out;
	ledger_settle_req s = settle_for(x->job, x->index % 7 == 6 ? "node-2" : "node-1", 4000,
	    NOW + 10);
	x->settle_rc = x->rc == 0 ? ledger_settle(&out, c, &s) : -999;
	ledger_conn_close(c);
	return NULL;
}

static void test_reserve_batched(void **state)
{
	struct fixture *f = *state;
	uint64_t batches = 0, items = 0;

	assert_int_equal(ledger_batch_start(f->l, 0), TROOP_EINVAL);
	assert_int_equal(ledger_batch_start(f->l, 64), 0);
	assert_int_equal(ledger_batch_start(f->l, 64), TROOP_EINVAL);
	/* affords exactly 10 reservations of 10 */
	assert_int_equal(ledger_ensure_account(NULL, f->c, "gina", 100, NOW), 0);

	pthread_t th[RESERVE_THREADS];
	struct batch_ctx ctx[RESERVE_THREADS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, RESERVE_THREADS);
	for (int i = 0; i < RESERVE_THREADS; i++) {
		ctx[i] = (struct batch_ctx){ f->l, &barrier, i, -999, -999, "" };
		assert_int_equal(pthread_create(&th[i], NULL, batch_thread, &ctx[i]), 0);
	}
	int ok = 0, poor = 0, dup = 0, other = 0, settled = 0, refused = 0;
	int64_t paid = 0;
	for (int i = 0; i < RESERVE_THREADS; i++) {
		pthread_join(th[i], NULL);
		if (ctx[i].rc == 0)
			ok++;
		else if (ctx[i].rc == TROOP_ECREDITS)
			poor++;
		else if (ctx[i].rc == TROOP_ECONFLICT && i < 5)
			dup++;
		else
			other++;
		if (ctx[i].rc != 0)
			continue;
		if (ctx[i].settle_rc == 0) {
			settled++;
			paid += 4;  /* 4000 ms at 1.0 */
		} else {
			assert_int_equal(ctx[i].settle_rc, TROOP_EFORBIDDEN);
			refused++;
		}
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(other, 0);
	assert_int_equal(ok, 10);
	assert_int_equal(ok + poor + dup, RESERVE_THREADS);
	assert_true(dup <= 4);
	assert_int_equal(settled + refused, 10);
	assert_int_equal(available(f->c, "gina"), 100 - 10 * ok + (10 - 4) * settled);
	/* trial credits: the charge is the node's pending earnings */
	assert_int_equal(count_rows(f, "SELECT pending FROM nodes WHERE node_id = 'node-1'"),
	    paid);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM reservations WHERE requester = "
	    "'gina'"), 10);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE type = "
	    "'reserve'"), 10);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE type = "
	    "'settle'"), settled);
	assert_invariant(f->c);
	ledger_batch_stats(f->l, &batches, &items);
	assert_int_equal(items, RESERVE_THREADS + 10);
	print_message("group commit: %llu writes in %llu transactions\n",
	    (unsigned long long)items, (unsigned long long)batches);
	assert_true(batches < items);
	ledger_batch_stop(f->l);
	ledger_batch_stop(f->l);
	ledger_batch_stats(f->l, &batches, &items);
	assert_int_equal(items, 0);
}

/* Log row ids come from the counters table a block at a time: the counter
 * row is written once per block, not by every write; ids keep increasing
 * on one handle, two handles on one database never share one, and a
 * restart goes on after the last block (a gap, never a reuse). */
static void test_ids_in_blocks(void **state)
{
	struct fixture *f = *state;
	ledger *l2 = NULL;
	ledger_conn *c2 = NULL;

	assert_int_equal(ledger_ensure_account(NULL, f->c, "ivan", 1000, NOW), 0);
	int64_t base = count_rows(f, "SELECT value FROM counters WHERE name = 'transactions'");
	assert_true(base >= 1000);
	for (int i = 0; i < 5; i++) {
		char job[32];
		snprintf(job, sizeof job, "job-ids-%d", i);
		ledger_reserve_req q = req_for(job, "ivan", 5, 1.0, NOW + 600);
		assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	}
	/* the counter did not move: the ids came from the block in memory */
	assert_int_equal(count_rows(f, "SELECT value FROM counters WHERE name = "
	    "'transactions'"), base);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions"), 6);
	assert_int_equal(count_rows(f, "SELECT MAX(id) - MIN(id) FROM transactions"), 5);

	/* a second handle takes the next block */
	assert_int_equal(ledger_open(&l2, f->url), 0);
	assert_int_equal(ledger_conn_open(&c2, l2), 0);
	ledger_reserve_req q = req_for("job-ids-other", "ivan", 5, 1.0, NOW + 600);
	assert_int_equal(ledger_reserve(NULL, c2, &q), 0);
	assert_int_equal(count_rows(f, "SELECT MAX(id) FROM transactions"), base + 1);
	q = req_for("job-ids-5", "ivan", 5, 1.0, NOW + 600);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	assert_int_equal(count_rows(f, "SELECT id FROM transactions WHERE job_id = "
	    "'job-ids-5'"), count_rows(f, "SELECT MIN(id) FROM transactions") + 6);
	ledger_conn_close(c2);
	ledger_close(l2);

	/* a restart: after the blocks taken, never a reuse */
	reopen(f);
	q = req_for("job-ids-6", "ivan", 5, 1.0, NOW + 600);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	assert_int_equal(count_rows(f, "SELECT id FROM transactions WHERE job_id = "
	    "'job-ids-6'"), base + 1001);
	assert_int_equal(count_rows(f, "SELECT COUNT(DISTINCT id) FROM transactions"), 9);
	assert_invariant(f->c);
}

/* Group commit while another process holds the write lock: the writes
 * waiting together fail with 503 after the writer's retries (none waits
 * out the lock on its own), and the next ones go through once it is
 * free. */
struct busy_ctx {
	ledger *l;
	pthread_barrier_t *barrier;
	int index;
	int rc;
};

static void *busy_thread(void *arg)
{
	struct busy_ctx *x = arg;
	ledger_conn *c = NULL;
	char job[32];
	x->rc = ledger_conn_open(&c, x->l);
	pthread_barrier_wait(x->barrier);
	if (x->rc != 0)
		return NULL;
	snprintf(job, sizeof job, "busy-%d", x->index);
	ledger_reserve_req q = req_for(job, "hank", 5, 1.0, NOW + 360);
	x->rc = ledger_reserve(NULL, c, &q);
	ledger_conn_close(c);
	return NULL;
}

static void test_batch_busy(void **state)
{
	struct fixture *f = *state;
	char url[400];
	ledger *l = NULL;
	enum { N = 8 };

	if (f->pg)
		skip();
	assert_int_equal(ledger_ensure_account(NULL, f->c, "hank", 100, NOW), 0);
	snprintf(url, sizeof url, "sqlite:%s?busy_timeout=20", f->path);
	assert_int_equal(ledger_open(&l, url), 0);
	assert_int_equal(ledger_batch_start(l, 64), 0);

	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int round = 0; round < 2; round++) {
		pthread_t th[N];
		struct busy_ctx ctx[N];
		pthread_barrier_t barrier;
		pthread_barrier_init(&barrier, NULL, N);
		for (int i = 0; i < N; i++) {
			ctx[i] = (struct busy_ctx){ l, &barrier, round * N + i, -999 };
			assert_int_equal(pthread_create(&th[i], NULL, busy_thread, &ctx[i]), 0);
		}
		for (int i = 0; i < N; i++) {
			pthread_join(th[i], NULL);
			assert_int_equal(ctx[i].rc, round == 0 ? TROOP_EUNAVAIL : 0);
		}
		pthread_barrier_destroy(&barrier);
		if (round == 0) {
			assert_int_equal(available(f->c, "hank"), 100);
			assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
		}
	}
	sqlite3_close(db);
	assert_int_equal(available(f->c, "hank"), 100 - 5 * N);
	assert_invariant(f->c);
	ledger_close(l);   /* stops the writer */
}

/* ---- settlement ------------------------------------------------------------ */

static void test_charge_math(void **state)
{
	(void)state;
	assert_int_equal(ledger_charge(1500, 1.0, 100), 2);     /* ceil(1.5) */
	assert_int_equal(ledger_charge(10000, 2.5, 100), 25);
	assert_int_equal(ledger_charge(1000, 1.0, 100), 1);     /* exact: no rounding up */
	assert_int_equal(ledger_charge(1001, 1.0, 100), 2);
	assert_int_equal(ledger_charge(1, 1.0, 100), 1);
	assert_int_equal(ledger_charge(0, 1.0, 100), 0);
	assert_int_equal(ledger_charge(-5, 1.0, 100), 0);
	assert_int_equal(ledger_charge(2000, 1.5, 100), 3);
	assert_int_equal(ledger_charge(3000, 0.1, 100), 1);     /* 0.3 -> 1 */
	assert_int_equal(ledger_charge(10000, 0.1, 100), 1);    /* exactly 1.0 */
	assert_int_equal(ledger_charge(100000, 1.0, 30), 30);   /* capped */
	assert_int_equal(ledger_charge(INT64_MAX / 2, 20.0, 77), 77);
	assert_int_equal(ledger_charge(500, 1.0, 0), 0);
}

static void test_settle_flow(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	/* ordinary credits: the worker's earnings are spendable at once */
	assert_int_equal(ledger_admin_grant(NULL, f->c, "gina", 1000, "test", "admin", NOW), 0);
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-1", "owner-1", "box", NOW), 0);

	/* 10 s at 2.5 = 25 of 100 reserved */
	ledger_reserve_req q = req_for("job-1", "gina", 100, 2.5, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	ledger_settle_req s = settle_for("job-1", "node-1", 10000, NOW + 20);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_int_equal(res.charged, 25);
	assert_int_equal(res.refunded, 75);
	assert_false(res.already);
	assert_string_equal(res.requester, "gina");
	assert_string_equal(res.worker, "owner-1");
	assert_int_equal(available(f->c, "gina"), 975);
	assert_int_equal(reserved(f->c, "gina"), 0);
	assert_int_equal(available(f->c, "owner-1"), 25);  /* created by the settlement */
	assert_invariant(f->c);

	ledger_reservation r;
	assert_int_equal(ledger_reservation_get(&r, f->c, "job-1"), 0);
	assert_int_equal(r.status, LEDGER_RES_SETTLED);
	assert_int_equal(r.charged, 25);
	assert_int_equal(r.duration_ms, 10000);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE job_id = 'job-1' "
	    "AND type = 'settle' AND credits = 25 AND duration_ms = 10000"), 1);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE job_id = 'job-1' "
	    "AND type = 'release' AND credits = 75"), 1);

	/* a second receipt changes nothing and reports the first result */
	s = settle_for("job-1", "node-1", 99000, NOW + 30);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_true(res.already);
	assert_int_equal(res.charged, 25);
	assert_int_equal(res.refunded, 75);
	assert_int_equal(available(f->c, "gina"), 975);
	assert_int_equal(available(f->c, "owner-1"), 25);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE job_id = 'job-1'"),
	    3);
	assert_invariant(f->c);

	/* 1500 ms at 1.0 = 2 */
	q = req_for("job-2", "gina", 10, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	s = settle_for("job-2", "node-1", 1500, NOW + 40);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_int_equal(res.charged, 2);
	assert_int_equal(res.refunded, 8);
	assert_int_equal(available(f->c, "owner-1"), 27);
	assert_invariant(f->c);

	/* longer than paid for: capped at the reservation, no release row */
	q = req_for("job-3", "gina", 10, 1.0, NOW + 360);
	q.max_seconds = 60;
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	s = settle_for("job-3", "node-1", 60000, NOW + 70);
	s.outcome = "timeout";
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_int_equal(res.charged, 10);
	assert_int_equal(res.refunded, 0);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE job_id = 'job-3' "
	    "AND type = 'release'"), 0);
	assert_int_equal(available(f->c, "gina"), 1000 - 25 - 2 - 10);
	assert_invariant(f->c);

	/* the node's record counts the jobs */
	ledger_node nd;
	assert_int_equal(ledger_node_get(&nd, f->c, "node-1"), 0);
	assert_int_equal(nd.jobs_ok, 2);
	assert_int_equal(nd.jobs_failed, 1);
	assert_true(nd.reputation > 0.5 && nd.reputation < 1.0);

	ledger_totals t;
	assert_int_equal(ledger_totals_get(&t, f->c), 0);
	assert_int_equal(t.open_reservations, 0);
	assert_int_equal(t.reserved, 0);
	assert_int_equal(t.granted, 1000);
}

/* ---- trial credits and pending earnings ------------------------------------ */

static int64_t pending_of(ledger_conn *c, const char *account)
{
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, c, account), 0);
	return b.pending;
}

/* Reserve `amount` from `who` on node-1 (owner-1) at `now` and settle it
 * when the `ms` it took have passed; then release pending earnings under
 * `pol` (*released, may be NULL, gets what was released). */
static void run_job(struct fixture *f, const char *job, const char *who, int64_t amount,
    int64_t ms, int64_t now, const ledger_policy *pol, ledger_settle_result *res,
    int64_t *released)
{
	int64_t dummy;
	ledger_reserve_req q = req_for(job, who, amount, 1.0, now + 600);
	q.now = now;
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	ledger_settle_req s = settle_for(job, "node-1", ms, now + ms / 1000 + 1);
	assert_int_equal(ledger_settle(res, f->c, &s), 0);
	assert_invariant(f->c);
	assert_int_equal(ledger_release_pending(released ? released : &dummy, f->c,
	    now + ms / 1000 + 2, pol), 0);
	assert_invariant(f->c);
}

/* Audit verdicts (ledger_node_audit): a pass counts and clears suspect; a
 * failure counts, sets suspect, forfeits the pending earnings and leaves
 * the node unestablished, with audit_log rows; a later pass clears suspect
 * but not the failure's record. */
static void test_node_audit(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	ledger_policy pol = { .establish_age_s = 3600, .establish_payers = 2,
		.trial_daily_cap = 30 };
	ledger_node nd;
	int64_t lost = -1;

	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-1", "owner-1", "box", NOW), 0);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "t1", 100, NOW), 0);
	assert_int_equal(ledger_node_audit(&lost, f->c, "node-1", true, "auditor", "a=1.00",
	    NOW), 0);
	assert_int_equal(lost, 0);
	run_job(f, "aj-1", "t1", 50, 20000, NOW, &pol, &res, NULL);
	assert_int_equal(pending_of(f->c, "owner-1"), 20);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-1"), 0);
	assert_int_equal(nd.audits_passed, 1);
	assert_int_equal(nd.audits_failed, 0);
	assert_int_equal(nd.suspect, 0);

	assert_int_equal(ledger_node_audit(&lost, f->c, "node-1", false, "auditor", "a=0.03",
	    NOW + 100), 0);
	assert_int_equal(lost, 20);
	assert_int_equal(pending_of(f->c, "owner-1"), 0);
	assert_invariant(f->c);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-1"), 0);
	assert_int_equal(nd.audits_failed, 1);
	assert_int_equal(nd.suspect, NOW + 100);
	assert_int_equal(nd.audit_failed, NOW + 100);
	assert_false(ledger_node_established(&nd, &pol, NOW + 100000));
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM audit_log WHERE action = 'audit_fail' "
	    "AND target = 'node-1'"), 1);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM audit_log WHERE action = "
	    "'node_forfeit' AND target = 'node-1'"), 1);

	/* passing again clears suspect; the failure stays on record */
	assert_int_equal(ledger_node_audit(NULL, f->c, "node-1", true, "auditor", NULL,
	    NOW + 200), 0);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-1"), 0);
	assert_int_equal(nd.suspect, 0);
	assert_int_equal(nd.audits_passed, 2);
	assert_int_equal(nd.audits_failed, 1);
	assert_true(nd.audit_failed > 0);
	assert_int_equal(ledger_node_audit(NULL, f->c, "nope", false, "auditor", "", NOW),
	    TROOP_ENOTFOUND);
	assert_int_equal(ledger_node_audit(NULL, f->c, "nope", true, "auditor", "", NOW),
	    TROOP_ENOTFOUND);
}

/* The donors' leaderboard: what other accounts paid each node owner, most
 * first; an owner's jobs on its own node do not count. */
static void test_top_earners(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	ledger_earner *e = NULL;
	size_t n = 99;

	assert_int_equal(ledger_top_earners(&e, &n, f->c, 10), 0);
	assert_int_equal(n, 0);
	assert_null(e);
	assert_int_equal(ledger_top_earners(&e, &n, f->c, 0), TROOP_EINVAL);
	assert_int_equal(ledger_top_earners(&e, &n, f->c, LEDGER_EARNERS_MAX + 1), TROOP_EINVAL);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "gina", 1000, "test", "admin", NOW), 0);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "owner-2", 1000, "test", "admin", NOW), 0);
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-1", "owner-1", "box", NOW), 0);
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-2", "owner-2", "rig", NOW), 0);

	/* gina pays owner-1 10 + 5, owner-2 7; owner-2 pays itself 50 */
	struct { const char *job, *req, *node, *worker; int64_t ms; } jobs[] = {
		{ "j1", "gina", "node-1", "owner-1", 10000 },
		{ "j2", "gina", "node-1", "owner-1", 5000 },
		{ "j3", "gina", "node-2", "owner-2", 7000 },
		{ "j4", "owner-2", "node-2", "owner-2", 50000 },
	};
	for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
		ledger_reserve_req q = req_for(jobs[i].job, jobs[i].req, 100, 1.0, NOW + 360);
		q.node_id = jobs[i].node;
		q.worker = jobs[i].worker;
		assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
		ledger_settle_req s = settle_for(jobs[i].job, jobs[i].node, jobs[i].ms, NOW + 60);
		assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	}
	assert_int_equal(ledger_top_earners(&e, &n, f->c, 10), 0);
	assert_int_equal(n, 2);
	assert_string_equal(e[0].account, "owner-1");
	assert_int_equal(e[0].earned, 15);
	assert_int_equal(e[0].jobs, 2);
	assert_string_equal(e[1].account, "owner-2");
	assert_int_equal(e[1].earned, 7);
	assert_int_equal(e[1].jobs, 1);
	free(e);
	assert_int_equal(ledger_top_earners(&e, &n, f->c, 1), 0);
	assert_int_equal(n, 1);
	assert_string_equal(e[0].account, "owner-1");
	free(e);
	assert_invariant(f->c);
}

static void test_trial_pending(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	ledger_policy pol = { .establish_age_s = 3600, .establish_payers = 2,
		.trial_daily_cap = 30 };
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-1", "owner-1", "box", NOW), 0);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "t1", 100, NOW), 0);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "t2", 100, NOW), 0);

	/* trial-paid work is pending, not spendable */
	int64_t rel = -1;
	run_job(f, "tj-1", "t1", 50, 40000, NOW, &pol, &res, &rel);
	assert_int_equal(res.charged, 40);
	assert_int_equal(res.pending, 40);
	assert_int_equal(rel, 0);
	assert_int_equal(available(f->c, "owner-1"), 0);
	assert_int_equal(pending_of(f->c, "owner-1"), 40);
	assert_int_equal(available(f->c, "t1"), 60);
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, f->c, "t1"), 0);
	assert_int_equal(b.trial, 60);
	assert_int_equal(b.available, 0);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE job_id = 'tj-1' "
	    "AND type = 'settle' AND note = 'pending=40'"), 1);

	/* old enough but paid by no ordinary account: still pending */
	run_job(f, "tj-2", "t2", 50, 20000, NOW + 7200, &pol, &res, NULL);
	assert_int_equal(pending_of(f->c, "owner-1"), 60);
	assert_int_equal(available(f->c, "owner-1"), 0);

	/* ordinary credits pay the worker at once and countersign the node;
	 * the same payer twice counts once */
	assert_int_equal(ledger_admin_grant(NULL, f->c, "p1", 100, "", "admin", NOW), 0);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "p2", 100, "", "admin", NOW), 0);
	run_job(f, "pj-1", "p1", 10, 5000, NOW + 7300, &pol, &res, NULL);
	run_job(f, "pj-2", "p1", 10, 5000, NOW + 7400, &pol, &res, &rel);
	assert_int_equal(res.pending, 0);
	assert_int_equal(rel, 0);
	assert_int_equal(available(f->c, "owner-1"), 10);
	ledger_node nd;
	assert_int_equal(ledger_node_get(&nd, f->c, "node-1"), 0);
	assert_int_equal(nd.payers, 1);
	assert_int_equal(nd.pending, 60);
	assert_false(ledger_node_established(&nd, &pol, NOW + 7400));

	/* the second payer establishes it: pending is released, at most the
	 * daily cap per UTC day */
	run_job(f, "pj-3", "p2", 10, 5000, NOW + 7500, &pol, &res, &rel);
	assert_int_equal(rel, 30);
	assert_int_equal(available(f->c, "owner-1"), 15 + 30);
	assert_int_equal(pending_of(f->c, "owner-1"), 30);
	run_job(f, "tj-3", "t2", 20, 10000, NOW + 7600, &pol, &res, &rel);
	assert_int_equal(res.pending, 10);
	assert_int_equal(rel, 0);  /* today's cap is spent */
	assert_int_equal(pending_of(f->c, "owner-1"), 40);
	int64_t next_day = (NOW / 86400 + 1) * 86400 + 10;
	run_job(f, "tj-4", "t2", 5, 1000, next_day, &pol, &res, &rel);
	assert_int_equal(rel, 30);
	assert_int_equal(pending_of(f->c, "owner-1"), 11);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE type = 'mature' "
	    "AND worker = 'owner-1'"), 2);

	/* a failed audit forfeits what is pending, and the node stays
	 * unestablished */
	int64_t lost = 0;
	assert_int_equal(ledger_node_forfeit(&lost, f->c, "node-1", "admin", "audit", next_day), 0);
	assert_int_equal(lost, 11);
	assert_int_equal(pending_of(f->c, "owner-1"), 0);
	assert_invariant(f->c);
	run_job(f, "tj-5", "t1", 10, 5000, next_day + 100, &pol, &res, &rel);
	assert_int_equal(res.pending, 5);
	assert_int_equal(rel, 0);
	assert_int_equal(ledger_node_forfeit(NULL, f->c, "nope", "admin", "", NOW),
	    TROOP_ENOTFOUND);

	/* a refund goes back where it came from: ordinary first, then trial */
	assert_int_equal(ledger_admin_grant(NULL, f->c, "t1", 5, "", "admin", NOW), 0);
	ledger_reserve_req q = req_for("mix-1", "t1", 20, 1.0, next_day + 900);
	q.now = next_day + 200;
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	ledger_reservation r;
	assert_int_equal(ledger_reservation_get(&r, f->c, "mix-1"), 0);
	assert_int_equal(r.trial_amount, 15);
	assert_int_equal(ledger_release_expired(NULL, f->c, next_day + 2000, 60), 0);
	assert_int_equal(ledger_balance_get(&b, f->c, "t1"), 0);
	assert_int_equal(b.available, 5);
	assert_int_equal(b.trial, 55);
	assert_invariant(f->c);
}

static void test_implausible_duration(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	assert_int_equal(ledger_admin_grant(NULL, f->c, "hal", 1000, "", "admin", NOW), 0);
	ledger_reserve_req q = req_for("pl-1", "hal", 300, 1.0, NOW + 900);
	q.max_seconds = 300;
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	/* 300 s of work claimed 2 s after the ticket was issued */
	ledger_settle_req s = settle_for("pl-1", "node-1", 300000, NOW + 2);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "implausible"));
	/* longer than max_seconds, however late */
	s = settle_for("pl-1", "node-1", 400000, NOW + 500);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_EINVAL);
	/* nothing moved; the honest claim still settles */
	assert_int_equal(reserved(f->c, "hal"), 300);
	s = settle_for("pl-1", "node-1", 3000, NOW + 4);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_int_equal(res.charged, 3);
	assert_invariant(f->c);
}

static void test_two_witnesses(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	ledger_reservation r;
	int64_t n = 0;
	bool disputed = true;

	assert_int_equal(ledger_witnessed_ms(3000, -1, &disputed), 3000);
	assert_false(disputed);
	assert_int_equal(ledger_witnessed_ms(4150, 3000, &disputed), 4150);  /* tolerance */
	assert_false(disputed);
	assert_int_equal(ledger_witnessed_ms(4151, 3000, &disputed), 3000);
	assert_true(disputed);

	assert_int_equal(ledger_admin_grant(NULL, f->c, "wit", 1000, "", "admin", NOW), 0);
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-1", "owner-1", "box", NOW), 0);
	/* the worker claims 5 s, the client saw 1 s: paid what the client saw */
	ledger_reserve_req q = req_for("w-1", "wit", 100, 1.0, NOW + 600);
	q.report_wanted = true;
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	ledger_settle_req s = settle_for("w-1", "node-1", 5000, NOW + 10);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_true(res.claimed);
	assert_false(res.already);
	assert_int_equal(res.charged, 0);
	assert_int_equal(reserved(f->c, "wit"), 100);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);  /* a retried receipt */
	assert_true(res.claimed);
	assert_true(res.already);
	ledger_report_req rep = { .job_id = "w-1", .requester = "wit", .duration_ms = 1000,
		.tokens = 20, .outcome = "complete", .digest = "sha256:x", .now = NOW + 11 };
	rep.requester = "owner-1";
	assert_int_equal(ledger_report(&res, f->c, &rep), TROOP_EFORBIDDEN);
	rep.requester = "wit";
	assert_int_equal(ledger_report(&res, f->c, &rep), 0);
	assert_false(res.claimed);
	assert_true(res.disputed);
	assert_int_equal(res.charged, 1);
	assert_int_equal(res.refunded, 99);
	assert_int_equal(available(f->c, "owner-1"), 1);
	assert_int_equal(ledger_reservation_get(&r, f->c, "w-1"), 0);
	assert_true(r.disputed);
	assert_int_equal(r.claim_ms, 5000);
	assert_int_equal(r.report_ms, 1000);
	ledger_node nd;
	assert_int_equal(ledger_node_get(&nd, f->c, "node-1"), 0);
	assert_int_equal(nd.disputes, 1);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM audit_log WHERE action = 'dispute'"),
	    1);
	assert_int_equal(ledger_report(&res, f->c, &rep), 0);  /* once */
	assert_true(res.already);
	assert_invariant(f->c);

	/* the report first, an honest receipt within the tolerance after it */
	q = req_for("w-2", "wit", 100, 1.0, NOW + 600);
	q.report_wanted = true;
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	rep.job_id = "w-2";
	rep.duration_ms = 3000;
	assert_int_equal(ledger_report(&res, f->c, &rep), 0);
	assert_true(res.claimed);
	assert_int_equal(reserved(f->c, "wit"), 100);
	s = settle_for("w-2", "node-1", 3500, NOW + 12);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_false(res.claimed);
	assert_false(res.disputed);
	assert_int_equal(res.charged, 4);
	assert_invariant(f->c);

	/* no report: the claim settles alone after the wait, not before */
	q = req_for("w-3", "wit", 100, 1.0, NOW + 20);
	q.report_wanted = true;
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	s = settle_for("w-3", "node-1", 2000, NOW + 13);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_true(res.claimed);
	assert_int_equal(ledger_settle_claims(&n, f->c, NOW + 20, 10), 0);
	assert_int_equal(n, 0);
	/* past its expiry the held claim is not refunded ... */
	assert_int_equal(ledger_release_expired(&n, f->c, NOW + 200, 0), 0);
	assert_int_equal(n, 0);
	/* ... it is settled */
	assert_int_equal(ledger_settle_claims(&n, f->c, NOW + 200, 10), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ledger_reservation_get(&r, f->c, "w-3"), 0);
	assert_int_equal(r.status, LEDGER_RES_SETTLED);
	assert_int_equal(r.charged, 2);
	assert_false(r.disputed);
	assert_int_equal(reserved(f->c, "wit"), 0);
	assert_int_equal(available(f->c, "wit"), 1000 - 1 - 4 - 2);
	assert_invariant(f->c);
}

static void test_invites(void **state)
{
	struct fixture *f = *state;
	int64_t got = 0;
	assert_int_equal(ledger_invite_create(f->c, "hash-1", 500, "admin", NOW), 0);
	assert_int_equal(ledger_invite_create(f->c, "hash-1", 500, "admin", NOW), TROOP_ECONFLICT);
	assert_int_equal(ledger_invite_redeem(&got, f->c, "hash-1", "ike", NOW), 0);
	assert_int_equal(got, 500);
	assert_int_equal(ledger_invite_redeem(&got, f->c, "hash-1", "jon", NOW), TROOP_ENOTFOUND);
	assert_int_equal(ledger_invite_redeem(&got, f->c, "hash-2", "jon", NOW), TROOP_ENOTFOUND);
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, f->c, "ike"), 0);
	assert_int_equal(b.trial, 500);
	assert_int_equal(b.available, 0);
	assert_int_equal(ledger_balance_get(&b, f->c, "jon"), TROOP_ENOTFOUND);
	assert_invariant(f->c);
}

static void test_settle_errors(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	assert_int_equal(ledger_ensure_account(NULL, f->c, "hank", 1000, NOW), 0);
	ledger_reserve_req q = req_for("job-x", "hank", 100, 1.0, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);

	ledger_settle_req s = settle_for("no-such-job", "node-1", 1000, NOW + 10);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_ENOTFOUND);
	assert_int_equal(troop_err_status(TROOP_ENOTFOUND), 404);

	s = settle_for("job-x", "node-2", 1000, NOW + 10);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_EFORBIDDEN);
	assert_int_equal(troop_err_status(TROOP_EFORBIDDEN), 403);
	assert_int_equal(reserved(f->c, "hank"), 100);

	/* settled jobs still refuse another signer */
	s = settle_for("job-x", "node-1", 1000, NOW + 10);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	s = settle_for("job-x", "node-2", 1000, NOW + 10);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_EFORBIDDEN);

	/* past expires_at + grace: gone, even before the sweep ran */
	q = req_for("job-y", "hank", 50, 1.0, NOW + 100);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	s = settle_for("job-y", "node-1", 1000, NOW + 100 + LEDGER_RELEASE_GRACE + 1);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_EGONE);
	assert_int_equal(troop_err_status(TROOP_EGONE), 410);
	assert_int_equal(reserved(f->c, "hank"), 50);
	/* at the edge of the grace it still settles */
	q = req_for("job-z", "hank", 50, 1.0, NOW + 100);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	s = settle_for("job-z", "node-1", 1000, NOW + 100 + LEDGER_RELEASE_GRACE);
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	assert_int_equal(res.charged, 1);

	/* after the sweep released it: still gone */
	int64_t count = -1;
	assert_int_equal(ledger_release_expired(&count, f->c, NOW + 200, LEDGER_RELEASE_GRACE), 0);
	assert_int_equal(count, 1);
	s = settle_for("job-y", "node-1", 1000, NOW + 201);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_EGONE);
	ledger_reservation r;
	assert_int_equal(ledger_reservation_get(&r, f->c, "job-y"), 0);
	assert_int_equal(r.status, LEDGER_RES_RELEASED);
	assert_int_equal(r.refunded, 50);

	s = settle_for("job-x", "node-1", -1, NOW + 10);
	assert_int_equal(ledger_settle(&res, f->c, &s), TROOP_EINVAL);
	assert_invariant(f->c);
}

static void test_release_expired(void **state)
{
	struct fixture *f = *state;
	const int n = 300;  /* more than one batch */
	assert_int_equal(ledger_ensure_account(NULL, f->c, "ivy", 10 * n + 100, NOW), 0);
	for (int i = 0; i < n; i++) {
		char job[32];
		snprintf(job, sizeof job, "old-%03d", i);
		ledger_reserve_req q = req_for(job, "ivy", 10, 1.0, NOW + 100);
		assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	}
	ledger_reserve_req q = req_for("fresh", "ivy", 10, 1.0, NOW + 1000);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	assert_int_equal(available(f->c, "ivy"), 100 - 10);
	assert_invariant(f->c);

	int64_t count = -1;
	/* expires_at + grace == now: not yet */
	assert_int_equal(ledger_release_expired(&count, f->c, NOW + 160, 60), 0);
	assert_int_equal(count, 0);
	assert_int_equal(ledger_release_expired(&count, f->c, NOW + 161, 60), 0);
	assert_int_equal(count, n);
	assert_int_equal(available(f->c, "ivy"), 10 * n + 100 - 10);
	assert_int_equal(reserved(f->c, "ivy"), 10);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE type = "
	    "'release'"), n);
	assert_invariant(f->c);

	assert_int_equal(ledger_release_expired(&count, f->c, NOW + 161, 60), 0);
	assert_int_equal(count, 0);
	assert_int_equal(ledger_release_expired(NULL, f->c, NOW + 2000, 60), 0);
	assert_int_equal(reserved(f->c, "ivy"), 0);
	assert_int_equal(available(f->c, "ivy"), 10 * n + 100);
	assert_invariant(f->c);
}

/* ---- transaction log ------------------------------------------------------- */

static void test_transactions_pages(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(ledger_ensure_account(NULL, f->c, "jack", 10000, NOW), 0);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "kate", 10000, NOW), 0);
	int jobs = 0;
	/* jack pays owner-1 (worker rows for owner-1), kate pays jack (jack as worker),
	 * and jack pays himself once (one row per movement, listed once) */
	for (int i = 0; i < 12; i++) {
		char job[32];
		snprintf(job, sizeof job, "p-%02d", i);
		ledger_reserve_req q = req_for(job, i % 3 == 0 ? "kate" : "jack", 20, 1.0,
		    NOW + 360);
		q.worker = i % 3 == 0 ? "jack" : "owner-1";
		if (i == 5)
			q.worker = "jack";
		assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
		ledger_settle_req s = settle_for(job, "node-1", 5000, NOW + 10);
		ledger_settle_result res;
		assert_int_equal(ledger_settle(&res, f->c, &s), 0);
		jobs++;
	}
	int64_t expect = count_rows(f, "SELECT COUNT(*) FROM transactions WHERE requester = "
	    "'jack' OR worker = 'jack'");
	assert_true(expect > 30);

	int64_t before = 0, last_id = INT64_MAX, total = 0;
	int pages = 0;
	do {
		ledger_tx *rows = NULL;
		size_t n = 0;
		int64_t next = -1;
		assert_int_equal(ledger_transactions(&rows, &n, &next, f->c, "jack", 7, before), 0);
		assert_true(n <= 7);
		for (size_t i = 0; i < n; i++) {
			assert_true(rows[i].id < last_id);  /* newest first, no repeats */
			last_id = rows[i].id;
			assert_true(strcmp(rows[i].requester, "jack") == 0 ||
			    strcmp(rows[i].worker, "jack") == 0);
			assert_true(rows[i].timestamp >= NOW);
		}
		total += (int64_t)n;
		if (next != 0) {
			assert_int_equal(n, 7);
			assert_int_equal(next, rows[n - 1].id);
		}
		before = next;
		free(rows);
		pages++;
	} while (before != 0 && pages < 100);
	assert_int_equal(total, expect);
	assert_int_equal(pages, (int)((expect + 6) / 7));

	/* one page of everything, and the argument limits */
	ledger_tx *rows = NULL;
	size_t n = 0;
	int64_t next = -1;
	assert_int_equal(ledger_transactions(&rows, &n, &next, f->c, "jack", LEDGER_TX_LIMIT_MAX,
	    0), 0);
	assert_int_equal((int64_t)n, expect);
	assert_int_equal(next, 0);
	free(rows);
	assert_int_equal(ledger_transactions(&rows, &n, &next, f->c, "jack", 0, 0),
	    TROOP_EINVAL);
	assert_int_equal(ledger_transactions(&rows, &n, &next, f->c, "jack",
	    LEDGER_TX_LIMIT_MAX + 1, 0), TROOP_EINVAL);
	assert_int_equal(ledger_transactions(&rows, &n, &next, f->c, "jack", 10, -1),
	    TROOP_EINVAL);
	/* nobody: empty, no error */
	assert_int_equal(ledger_transactions(&rows, &n, &next, f->c, "nobody", 10, 0), 0);
	assert_int_equal(n, 0);
	assert_null(rows);
	assert_int_equal(next, 0);
	assert_true(jobs == 12);
	assert_invariant(f->c);
}

/* ---- nodes, kv, audit --------------------------------------------------------- */

static void test_nodes(void **state)
{
	struct fixture *f = *state;
	bool created = false;
	ledger_node nd;
	assert_int_equal(ledger_node_get(&nd, f->c, "node-9"), TROOP_ENOTFOUND);
	assert_int_equal(ledger_node_upsert(&created, f->c, "node-9", "owner-9", "gpu-box", NOW),
	    0);
	assert_true(created);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-9"), 0);
	assert_string_equal(nd.owner, "owner-9");
	assert_string_equal(nd.name, "gpu-box");
	assert_true(nd.multiplier == 1.0);
	assert_false(nd.verified);
	assert_int_equal(nd.verified_at, 0);
	assert_int_equal(nd.first_seen, NOW);
	assert_true(nd.reputation == 0.5);

	assert_int_equal(ledger_node_upsert(&created, f->c, "node-9", "owner-9", "gpu-box",
	    NOW + 10), 0);
	assert_false(created);
	assert_int_equal(ledger_node_upsert(&created, f->c, "node-9", "owner-10", "renamed",
	    NOW + 20), 0);
	assert_false(created);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-9"), 0);
	assert_string_equal(nd.owner, "owner-10");
	assert_string_equal(nd.name, "renamed");
	assert_int_equal(nd.first_seen, NOW);
	assert_int_equal(nd.last_seen, NOW + 20);
	/* a touch before the node's interval leaves last_seen; one at it
	 * refreshes it */
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-9", "owner-10", "renamed",
	    NOW + 19 + ledger_node_touch_interval("node-9")), 0);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-9"), 0);
	assert_int_equal(nd.last_seen, NOW + 20);
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-9", "owner-10", "renamed",
	    NOW + 20 + ledger_node_touch_interval("node-9")), 0);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-9"), 0);
	assert_int_equal(nd.last_seen, NOW + 20 + ledger_node_touch_interval("node-9"));

	assert_int_equal(ledger_node_set_verification(f->c, "node-9", 2.5, true, NOW + 30), 0);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-9"), 0);
	assert_true(nd.multiplier == 2.5);
	assert_true(nd.verified);
	assert_int_equal(nd.verified_at, NOW + 30);
	assert_int_equal(ledger_node_set_verification(f->c, "node-404", 2.5, true, NOW),
	    TROOP_ENOTFOUND);
	assert_int_equal(ledger_node_set_verification(f->c, "node-9", -1.0, true, NOW),
	    TROOP_EINVAL);
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-9", "", "x", NOW), TROOP_EINVAL);
}

/* A new SQLite ledger file, and the -wal and -shm files SQLite makes next
 * to it, are readable by their owner only: the ledger holds the ticket
 * signing key.  Checked under the usual umask 022. */
static void test_file_mode(void **state)
{
	struct fixture *f = *state;
	char path[400], url[420];
	ledger *l = NULL;
	ledger_conn *c = NULL;
	struct stat sb;
	const char *suffix[] = { "", "-wal", "-shm" };

	snprintf(path, sizeof path, "%s/private.db", f->dir);
	snprintf(url, sizeof url, "sqlite:%s", path);
	mode_t old = umask(022);
	int rc = ledger_open(&l, url);
	umask(old);
	assert_int_equal(rc, 0);
	assert_int_equal(ledger_conn_open(&c, l), 0);
	assert_int_equal(ledger_ensure_account(NULL, c, "alice", STARTER, NOW), 0);
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		char p[420];
		snprintf(p, sizeof p, "%s%s", path, suffix[i]);
		assert_int_equal(stat(p, &sb), 0);
		if ((sb.st_mode & 0777) != 0600)
			fail_msg("%s has mode %03o, want 600", p, (unsigned)(sb.st_mode & 0777));
	}
	ledger_conn_close(c);
	ledger_close(l);
	remove_db_files(path);

	/* a directory that does not exist: 503, as before */
	snprintf(url, sizeof url, "sqlite:%s/missing/ledger.db", f->dir);
	assert_int_equal(ledger_open(&l, url), TROOP_EUNAVAIL);
	assert_null(l);
}

#define NODE_THREADS 8

struct node_ctx {
	ledger *l;
	pthread_barrier_t *barrier;
	int created;
	int errors;
};

static void *node_thread(void *arg)
{
	struct node_ctx *x = arg;
	ledger_conn *c = NULL;
	int rc = ledger_conn_open(&c, x->l);
	pthread_barrier_wait(x->barrier);
	for (int i = 0; rc == 0 && i < 20; i++) {
		char node[32];
		bool created = false;
		snprintf(node, sizeof node, "racing-node-%02d", i);
		if (ledger_node_upsert(&created, c, node, "owner-r", "box", NOW) != 0) {
			fprintf(stderr, "node_upsert %s: %s\n", node, troop_error_msg());
			x->errors++;
		} else if (created) {
			x->created++;
		}
	}
	if (rc != 0)
		x->errors++;
	ledger_conn_close(c);
	return NULL;
}

/* Many first heartbeats of the same nodes at once, each thread on its own
 * connection: every call succeeds and each node is created exactly once. */
static void test_node_upsert_concurrent(void **state)
{
	struct fixture *f = *state;
	pthread_t th[NODE_THREADS];
	struct node_ctx ctx[NODE_THREADS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, NODE_THREADS);
	for (int i = 0; i < NODE_THREADS; i++) {
		ctx[i] = (struct node_ctx){ f->l, &barrier, 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, node_thread, &ctx[i]), 0);
	}
	int created = 0, errors = 0;
	for (int i = 0; i < NODE_THREADS; i++) {
		pthread_join(th[i], NULL);
		created += ctx[i].created;
		errors += ctx[i].errors;
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(errors, 0);
	assert_int_equal(created, 20);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM nodes"), 20);
	ledger_node nd;
	assert_int_equal(ledger_node_get(&nd, f->c, "racing-node-07"), 0);
	assert_string_equal(nd.owner, "owner-r");
	assert_int_equal(nd.first_seen, NOW);
}

/* ledger_node_touch: upsert + get in one call, same results as the two */
static void test_node_touch(void **state)
{
	struct fixture *f = *state;
	bool created = false;
	ledger_node nd, again;

	assert_int_equal(ledger_node_touch(&nd, &created, f->c, "node-7", "owner-7", "box", NOW),
	    0);
	assert_true(created);
	assert_string_equal(nd.node_id, "node-7");
	assert_string_equal(nd.owner, "owner-7");
	assert_string_equal(nd.name, "box");
	assert_int_equal(nd.first_seen, NOW);
	assert_int_equal(nd.last_seen, NOW);
	assert_true(nd.multiplier == 1.0);
	/* unchanged and fresh: the stored row, nothing written */
	assert_int_equal(ledger_node_set_verification(f->c, "node-7", 3.0, true, NOW + 1), 0);
	assert_int_equal(ledger_node_touch(&nd, &created, f->c, "node-7", "owner-7", "box",
	    NOW + 5), 0);
	assert_false(created);
	assert_int_equal(nd.last_seen, NOW);
	assert_true(nd.multiplier == 3.0);
	assert_true(nd.verified);
	assert_int_equal(ledger_node_get(&again, f->c, "node-7"), 0);
	assert_memory_equal(&nd, &again, sizeof(nd));
	/* a new owner or name is written, and returned */
	assert_int_equal(ledger_node_touch(&nd, &created, f->c, "node-7", "owner-8", NULL,
	    NOW + 6), 0);
	assert_false(created);
	assert_string_equal(nd.owner, "owner-8");
	assert_string_equal(nd.name, "");
	assert_int_equal(nd.last_seen, NOW + 6);
	assert_true(nd.multiplier == 3.0);
	/* stale last_seen is refreshed */
	assert_int_equal(ledger_node_touch(&nd, NULL, f->c, "node-7", "owner-8", "",
	    NOW + 6 + ledger_node_touch_interval("node-7")), 0);
	assert_int_equal(nd.last_seen, NOW + 6 + ledger_node_touch_interval("node-7"));
	assert_int_equal(ledger_node_get(&again, f->c, "node-7"), 0);
	assert_int_equal(again.last_seen, NOW + 6 + ledger_node_touch_interval("node-7"));
	/* the same checks as the upsert */
	assert_int_equal(ledger_node_touch(&nd, NULL, f->c, "node-7", "", "x", NOW), TROOP_EINVAL);
	assert_int_equal(ledger_node_touch(&nd, NULL, f->c, "", "o", "x", NOW), TROOP_EINVAL);
	assert_int_equal(ledger_node_touch(NULL, NULL, f->c, "node-7", "o", "x", NOW),
	    TROOP_EINVAL);
}

/* A fleet that registered in one second and heartbeats every 10 s: the
 * heartbeats' last_seen writes are spread over the touch intervals, not
 * all in the one 10-s round LEDGER_NODE_TOUCH_S later (every one of the
 * 1,000 nodes wrote in the same round before, and this failed). */
static void test_node_touch_spread(void **state)
{
	enum { NODES = 1000, STEP = 10, ROUNDS = 2 * LEDGER_NODE_TOUCH_S / STEP + 1 };
	struct fixture *f = *state;
	static int64_t seen[NODES];
	int writes[ROUNDS] = { 0 }, most = 0, total = 0;
	char id[32];

	for (int i = 0; i < NODES; i++) {
		snprintf(id, sizeof(id), "fleet-%04d", i);
		int64_t iv = ledger_node_touch_interval(id);
		assert_true(iv >= LEDGER_NODE_TOUCH_S && iv < 2 * LEDGER_NODE_TOUCH_S);
		assert_int_equal(iv, ledger_node_touch_interval(id));   /* a node's own, always */
	}
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < NODES; i++) {
			ledger_node nd;
			snprintf(id, sizeof(id), "fleet-%04d", i);
			assert_int_equal(ledger_node_touch(&nd, NULL, f->c, id, "owner", "box",
			    NOW + (int64_t)r * STEP), 0);
			if (r > 0 && nd.last_seen != seen[i]) {
				writes[r]++;
				total++;
			}
			seen[i] = nd.last_seen;
		}
		if (writes[r] > most)
			most = writes[r];
	}
	fprintf(stderr, "%d nodes, heartbeats every %d s: %d last_seen writes, at most %d in "
	    "one round\n", NODES, STEP, total, most);
	/* a 10-s round: 1000 x 10 / 300 = 33 on average */
	if (most > 100)
		fail_msg("%d of %d nodes wrote last_seen in one 10-s round", most, NODES);
	/* every node wrote once in its first interval (300 to 600 s) */
	assert_int_equal(total, NODES);
}

static void test_kv_and_audit(void **state)
{
	struct fixture *f = *state;
	ledger_conn *c2 = NULL;
	bool inserted = false;
	char buf[16];
	size_t len = 0;
	assert_int_equal(ledger_conn_open(&c2, f->l), 0);

	assert_int_equal(ledger_kv_get(buf, sizeof buf, &len, f->c, "coordinator_key"),
	    TROOP_ENOTFOUND);
	assert_int_equal(ledger_kv_put_if_absent(&inserted, f->c, "coordinator_key", "first",
	    NOW), 0);
	assert_true(inserted);
	assert_int_equal(ledger_kv_put_if_absent(&inserted, c2, "coordinator_key", "second",
	    NOW), 0);
	assert_false(inserted);
	assert_int_equal(ledger_kv_get(buf, sizeof buf, &len, c2, "coordinator_key"), 0);
	assert_string_equal(buf, "first");
	assert_int_equal(len, 5);
	assert_int_equal(ledger_kv_get(buf, 5, &len, c2, "coordinator_key"), TROOP_ETOOLARGE);
	assert_int_equal(len, 5);

	char big[LEDGER_KV_VALUE_MAX + 2];
	memset(big, 'v', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(ledger_kv_put_if_absent(NULL, f->c, "big", big, NOW), TROOP_ETOOLARGE);

	assert_int_equal(ledger_audit(f->c, "admin-1", "ban", "node=node-9 reason=spam", NOW), 0);
	assert_int_equal(ledger_audit(c2, "admin-1", "unban", NULL, NOW + 1), 0);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM audit_log WHERE actor = 'admin-1'"),
	    2);
	assert_int_equal(count_rows(f, "SELECT MAX(id) - MIN(id) FROM audit_log"), 1);
	assert_int_equal(ledger_audit(f->c, "admin-1", "", NULL, NOW), TROOP_EINVAL);
	ledger_conn_close(c2);
}


#ifdef TROOP_HAVE_PQ
/* The PostgreSQL form of the test below: another session holds a lock on
 * the accounts table; with a short lock_timeout writes fail with 503 after
 * their retries, reads go on, and everything works once the lock is gone. */
/* ---- the operator's tools ------------------------------------------------------ */

static void test_admin_tools(void **state)
{
	struct fixture *f = *state;
	ledger_settle_result res;
	ledger_account_policy p;
	ledger_node nd;
	ledger_audit_row *rows = NULL;
	size_t n = 0;
	int64_t next = 0, rel = 0;
	ledger_policy never = { .establish_age_s = 0, .establish_payers = 99,
		.trial_daily_cap = 1000000 };
	ledger_policy easy = { .establish_age_s = 0, .establish_payers = 0,
		.trial_daily_cap = 1000000 };

	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-1", "owner-1", "box", NOW), 0);
	assert_int_equal(ledger_admin_grant(NULL, f->c, "p1", 100, "", "admin", NOW), 0);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "t1", 100, NOW), 0);
	assert_int_equal(ledger_account_policy_get(&p, f->c, "nobody"), TROOP_ENOTFOUND);
	assert_int_equal(ledger_account_policy_get(&p, f->c, "p1"), 0);
	assert_int_equal(p.suspended, 0);
	assert_int_equal(p.rate_limit, 0);
	assert_int_equal(ledger_admin_suspend(f->c, LEDGER_TARGET_NODE, "nope", true, "x",
	    "admin", NOW), TROOP_ENOTFOUND);
	assert_int_equal(ledger_admin_suspend(f->c, LEDGER_TARGET_ACCOUNT, "nope", true, "x",
	    "admin", NOW), TROOP_ENOTFOUND);

	/* trial-paid earnings pending before the suspension wait while it lasts */
	run_job(f, "tj-1", "t1", 50, 40000, NOW, &never, &res, &rel);
	assert_int_equal(res.pending, 40);
	assert_int_equal(ledger_admin_suspend(f->c, LEDGER_TARGET_NODE, "node-1", true,
	    "inflated receipts", "admin", NOW + 100), 0);
	assert_int_equal(ledger_node_get(&nd, f->c, "node-1"), 0);
	assert_int_equal(nd.suspended, NOW + 100);
	assert_string_equal(nd.suspend_reason, "inflated receipts");
	assert_int_equal(ledger_release_pending(&rel, f->c, NOW + 200, &easy), 0);
	assert_int_equal(rel, 0);
	assert_int_equal(pending_of(f->c, "owner-1"), 40);

	/* a suspended node's receipt settles at 0: everything back */
	run_job(f, "sj-1", "p1", 10, 5000, NOW + 300, &never, &res, NULL);
	assert_int_equal(res.charged, 0);
	assert_int_equal(res.refunded, 10);
	assert_int_equal(available(f->c, "p1"), 100);
	assert_int_equal(available(f->c, "owner-1"), 0);
	assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM transactions WHERE job_id = 'sj-1' "
	    "AND type = 'settle' AND credits = 0 AND note = 'node suspended: settled at 0'"), 1);
	assert_invariant(f->c);

	/* unsuspended: paid again, and its pending earnings mature */
	assert_int_equal(ledger_admin_suspend(f->c, LEDGER_TARGET_NODE, "node-1", false,
	    "fixed", "admin", NOW + 400), 0);
	run_job(f, "sj-2", "p1", 10, 5000, NOW + 500, &never, &res, NULL);
	assert_int_equal(res.charged, 5);
	assert_int_equal(ledger_release_pending(&rel, f->c, NOW + 600, &easy), 0);
	assert_int_equal(rel, 40);
	assert_invariant(f->c);

	/* accounts: suspension and rate limit are the account's standing */
	assert_int_equal(ledger_admin_suspend(f->c, LEDGER_TARGET_ACCOUNT, "p1", true, "spam",
	    "admin", NOW + 700), 0);
	assert_int_equal(ledger_admin_rate_limit(f->c, "p1", 7, "scraping", "admin", NOW + 800),
	    0);
	assert_int_equal(ledger_admin_rate_limit(f->c, "p1", -1, "", "admin", NOW), TROOP_EINVAL);
	assert_int_equal(ledger_admin_rate_limit(f->c, "nope", 1, "", "admin", NOW),
	    TROOP_ENOTFOUND);
	assert_int_equal(ledger_account_policy_get(&p, f->c, "p1"), 0);
	assert_int_equal(p.suspended, NOW + 700);
	assert_string_equal(p.suspend_reason, "spam");
	assert_int_equal(p.rate_limit, 7);

	/* the audit log: by target, by type, since, in pages */
	assert_int_equal(ledger_audit_page(&rows, &n, &next, f->c, "p1", "", 0, 10, 0), 0);
	assert_int_equal(n, 3);   /* rate_limit, suspend, admin_grant: newest first */
	assert_string_equal(rows[0].action, "rate_limit");
	assert_string_equal(rows[0].reason, "scraping");
	assert_string_equal(rows[0].actor, "admin");
	assert_int_equal(rows[0].created_at, NOW + 800);
	assert_string_equal(rows[1].action, "suspend");
	assert_string_equal(rows[2].action, "admin_grant");
	assert_int_equal(next, 0);
	free(rows);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, f->c, "p1", "", 0, 2, 0), 0);
	assert_int_equal(n, 2);
	assert_true(next > 0);
	free(rows);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, f->c, "p1", "", 0, 2, next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].action, "admin_grant");
	assert_int_equal(next, 0);
	free(rows);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, f->c, "", "suspend", 0, 10, 0), 0);
	assert_int_equal(n, 2);   /* node-1 and p1 */
	free(rows);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, f->c, "node-1", "", NOW + 350, 10,
	    0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].action, "unsuspend");
	free(rows);
	assert_int_equal(ledger_audit_page(&rows, &n, &next, f->c, "", "", 0, 0, 0),
	    TROOP_EINVAL);

	/* the lists, in id order and pages */
	ledger_node *nodes = NULL;
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-2", "owner-2", "box2", NOW), 0);
	assert_int_equal(ledger_nodes_list(&nodes, &n, f->c, "", 1), 0);
	assert_int_equal(n, 1);
	assert_string_equal(nodes[0].node_id, "node-1");
	assert_string_equal(nodes[0].owner, "owner-1");
	assert_int_equal(nodes[0].jobs_ok, 3);
	free(nodes);
	assert_int_equal(ledger_nodes_list(&nodes, &n, f->c, "node-1", 10), 0);
	assert_int_equal(n, 1);
	assert_string_equal(nodes[0].node_id, "node-2");
	free(nodes);
	ledger_account_row *accs = NULL;
	assert_int_equal(ledger_accounts_list(&accs, &n, f->c, "", 100), 0);
	assert_true(n >= 3);
	bool seen = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(accs[i].account, "p1") == 0) {
			seen = true;
			assert_int_equal(accs[i].rate_limit, 7);
			assert_true(accs[i].suspended > 0);
			assert_string_equal(accs[i].suspend_reason, "spam");
		}
	assert_true(seen);
	free(accs);
	assert_int_equal(ledger_accounts_list(&accs, &n, f->c, "zzz", 100), 0);
	assert_int_equal(n, 0);
	assert_null(accs);
}

static void busy_unavailable_pg(struct fixture *f)
{
	char url[1400];
	ledger *l = NULL;
	ledger_conn *c = NULL;
	assert_int_equal(ledger_ensure_account(NULL, f->c, "lena", 50, NOW), 0);
	snprintf(url, sizeof url, "%s%coptions=-c%%20lock_timeout%%3D20", f->url,
	    strchr(f->url, '?') ? '&' : '?');
	assert_int_equal(ledger_open(&l, url), 0);
	assert_int_equal(ledger_conn_open(&c, l), 0);

	PGconn *db = PQconnectdb(f->url);
	assert_int_equal(PQstatus(db), CONNECTION_OK);
	PGresult *r = PQexec(db, "BEGIN; LOCK TABLE accounts IN EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	assert_int_equal(ledger_ensure_account(NULL, c, "mike", 50, NOW), TROOP_EUNAVAIL);
	assert_int_equal(troop_err_status(TROOP_EUNAVAIL), 503);
	assert_non_null(strstr(troop_error_msg(), "busy"));
	ledger_reserve_req q = req_for("job-busy", "lena", 5, 1.0, NOW + 60);
	assert_int_equal(ledger_reserve(NULL, c, &q), TROOP_EUNAVAIL);
	assert_int_equal(available(c, "lena"), 50);
	r = PQexec(db, "COMMIT");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(db);

	assert_int_equal(ledger_ensure_account(NULL, c, "mike", 50, NOW), 0);
	assert_int_equal(ledger_reserve(NULL, c, &q), 0);
	assert_int_equal(available(f->c, "lena"), 45);
	assert_invariant(f->c);
	ledger_conn_close(c);
	ledger_close(l);

	/* options libpq does not know are refused up front */
	snprintf(url, sizeof url, "%s%ccache=shared", f->url, strchr(f->url, '?') ? '&' : '?');
	assert_int_equal(ledger_open(&l, url), TROOP_EINVAL);
	snprintf(url, sizeof url, "%s%cbusy_timeout=-1", f->url, strchr(f->url, '?') ? '&' : '?');
	assert_int_equal(ledger_open(&l, url), TROOP_EINVAL);
	assert_null(l);
}
#endif

/* Another writer holds the lock: writes fail with 503 after their retries,
 * reads go on (WAL), and everything works once the lock is gone. */
static void test_busy_unavailable(void **state)
{
	struct fixture *f = *state;
#ifdef TROOP_HAVE_PQ
	if (f->pg) {
		busy_unavailable_pg(f);
		return;
	}
#endif
	char url[400];
	ledger *l = NULL;
	ledger_conn *c = NULL;
	assert_int_equal(ledger_ensure_account(NULL, f->c, "lena", 50, NOW), 0);
	snprintf(url, sizeof url, "sqlite:%s?busy_timeout=20", f->path);
	assert_int_equal(ledger_open(&l, url), 0);
	assert_int_equal(ledger_conn_open(&c, l), 0);

	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(ledger_ensure_account(NULL, c, "mike", 50, NOW), TROOP_EUNAVAIL);
	assert_int_equal(troop_err_status(TROOP_EUNAVAIL), 503);
	assert_non_null(strstr(troop_error_msg(), "busy"));
	ledger_reserve_req q = req_for("job-busy", "lena", 5, 1.0, NOW + 60);
	assert_int_equal(ledger_reserve(NULL, c, &q), TROOP_EUNAVAIL);
	assert_int_equal(available(c, "lena"), 50);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(ledger_ensure_account(NULL, c, "mike", 50, NOW), 0);
	assert_int_equal(ledger_reserve(NULL, c, &q), 0);
	assert_int_equal(available(f->c, "lena"), 45);
	assert_invariant(f->c);
	ledger_conn_close(c);
	ledger_close(l);

	snprintf(url, sizeof url, "sqlite:%s?cache=shared", f->path);
	assert_int_equal(ledger_open(&l, url), TROOP_EINVAL);
	snprintf(url, sizeof url, "sqlite:%s?busy_timeout=-1", f->path);
	assert_int_equal(ledger_open(&l, url), TROOP_EINVAL);
	assert_null(l);
}

/* SQLite: the URL's options (synchronous=full is the default), and
 * checkpoints on the handle's own thread: a commit leaves its pages in the
 * WAL, and the database file itself is written shortly afterwards without
 * any further write. */
static void test_sqlite_checkpoints(void **state)
{
	struct fixture *f = *state;
	char url[400];
	ledger *l = NULL;
	struct stat st;
	ledger_reserve_req q;

	if (f->pg)
		skip();
	snprintf(url, sizeof url, "sqlite:%s?synchronous=off", f->path);
	assert_int_equal(ledger_open(&l, url), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "synchronous"));
	snprintf(url, sizeof url, "sqlite:%s?synchronous=normal&busy_timeout=20", f->path);
	assert_int_equal(ledger_open(&l, url), 0);
	ledger_close(l);

	assert_int_equal(ledger_ensure_account(NULL, f->c, "walt", 100000, NOW), 0);
	for (int i = 0; i < 20; i++) {
		char job[32];
		snprintf(job, sizeof job, "job-ckpt-%d", i);
		q = req_for(job, "walt", 5, 1.0, NOW + 600);
		assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	}
	/* the checkpoint thread may have run meanwhile: let it finish */
	usleep(400000);
	assert_int_equal(stat(f->path, &st), 0);
	struct timespec before = st.st_mtim;
	q = req_for("job-ckpt-last", "walt", 5, 1.0, NOW + 600);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	/* one small commit: SQLite's own checkpoint (every 1000 pages) would
	 * not copy it to the database file; the thread does */
	bool grown = false;
	for (int i = 0; i < 50 && !grown; i++) {
		usleep(20000);
		assert_int_equal(stat(f->path, &st), 0);
		grown = st.st_mtim.tv_sec != before.tv_sec || st.st_mtim.tv_nsec != before.tv_nsec;
	}
	assert_true(grown);
	assert_invariant(f->c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrations_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_url_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starter_grant_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starter_grant_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_admin_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_batched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ids_in_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_busy, setup, teardown),
		cmocka_unit_test(test_charge_math),
		cmocka_unit_test_setup_teardown(test_settle_flow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_settle_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trial_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_audit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_top_earners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_implausible_duration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invites, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_witnesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_expired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transactions_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_upsert_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_touch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_touch_spread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kv_and_audit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_admin_tools, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_unavailable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_checkpoints, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
