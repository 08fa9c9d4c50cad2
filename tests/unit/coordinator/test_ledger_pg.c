/*
 * test_ledger_pg.c - what only the PostgreSQL ledger has to get right:
 * several coordinators (separate ledger handles) reserving on one account
 * at once, coordinators migrating one database at once, settlements and
 * releases crossing the same accounts in both directions without
 * deadlocks, a server-side disconnect, and a PostgreSQL restart mid-run.
 *
 * Needs a server: TROOP_TEST_LEDGER_URL=postgres://... (a database the
 * tests may CREATE DATABASE from), and for the restart test shell commands
 * that stop and start it, TROOP_TEST_PG_STOP and TROOP_TEST_PG_START.
 * tests/integration/test_pg_backends.sh sets all three.  Without the URL
 * (the plain unit run) every test is skipped.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "ledger.h"
#include "migrations.h"

#ifdef TROOP_HAVE_PQ
#include <libpq-fe.h>

#define NOW 1764000000

struct fixture {
	char dbname[64];
	char url[1200];
	ledger *l;
	ledger_conn *c;
};

static const char *base_url(void)
{
	const char *u = getenv("TROOP_TEST_LEDGER_URL");
	return (u != NULL && strncmp(u, "postgres", 8) == 0) ? u : NULL;
}

/* Run one statement on `url`; returns the first column of the first row
 * as a number (0 when there is none), or -1 on failure. */
static int64_t pg_scalar(const char *url, const char *sql)
{
	PGconn *db = PQconnectdb(url);
	int64_t v = -1;
	if (PQstatus(db) == CONNECTION_OK) {
		PGresult *r = PQexec(db, sql);
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK)
			v = PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
		else if (st == PGRES_COMMAND_OK)
			v = 0;
		else
			fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
		PQclear(r);
	} else {
		fprintf(stderr, "connect: %s", PQerrorMessage(db));
	}
	PQfinish(db);
	return v;
}

static void url_with_db(char *out, size_t cap, const char *base, const char *dbname)
{
	const char *host = strstr(base, "://");
	host = host ? host + 3 : base;
	const char *path = strchr(host, '/');
	const char *query = strchr(host, '?');
	if (path == NULL || (query != NULL && path > query))
		path = query ? query : base + strlen(base);
	snprintf(out, cap, "%.*s/%s%s", (int)(path - base), base, dbname, query ? query : "");
}

/* A fresh database; the ledger is opened on it unless `open` is false. */
static int make_fixture(struct fixture **out, bool open)
{
	static int seq;
	const char *base = base_url();
	if (base == NULL)
		return 0;
	struct fixture *f = calloc(1, sizeof *f);
	if (f == NULL)
		return -1;
	char sql[128];
	snprintf(f->dbname, sizeof f->dbname, "troop_pg_%d_%d", (int)getpid(), ++seq);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->dbname);
	if (pg_scalar(base, sql) != 0) {
		free(f);
		return -1;
	}
	url_with_db(f->url, sizeof f->url, base, f->dbname);
	if (open && (ledger_open(&f->l, f->url) != 0 || ledger_conn_open(&f->c, f->l) != 0)) {
		fprintf(stderr, "open: %s\n", troop_error_msg());
		return -1;
	}
	*out = f;
	return 0;
}

static int setup(void **state)
{
	*state = NULL;
	return make_fixture((struct fixture **)state, true);
}

static int setup_bare(void **state)
{
	*state = NULL;
	return make_fixture((struct fixture **)state, false);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f == NULL)
		return 0;
	ledger_conn_close(f->c);
	ledger_close(f->l);
	char sql[128];
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbname);
	pg_scalar(base_url(), sql);
	free(f);
	return 0;
}

/* The fixture, or a skip when no server was given. */
static struct fixture *need(void **state)
{
	if (base_url() == NULL) {
		print_message("TROOP_TEST_LEDGER_URL is not a postgres:// URL: skipped\n");
		skip();
	}
	assert_non_null(*state);
	return *state;
}

static void assert_invariant(ledger_conn *c)
{
	ledger_totals t;
	assert_int_equal(ledger_totals_get(&t, c), 0);
	assert_true(ledger_totals_balanced(&t));
}

static ledger_reserve_req req_for(const char *job, const char *requester, const char *worker,
    int64_t amount, int64_t expires_at)
{
	ledger_reserve_req q = {
		.job_id = job, .requester = requester, .node_id = "node-x", .worker = worker,
		.model = "llama3:8b", .amount = amount, .max_seconds = amount,
		.multiplier = 1.0, .expires_at = expires_at, .now = NOW,
	};
	return q;
}

/* ---- two coordinators, one account -------------------------------------------- */

#define RACERS 100

struct race_ctx {
	ledger *l;
	pthread_barrier_t *barrier;
	int index;
	int rc;
};

static void *race_thread(void *arg)
{
	struct race_ctx *x = arg;
	ledger_conn *c = NULL;
	x->rc = ledger_conn_open(&c, x->l);
	pthread_barrier_wait(x->barrier);
	if (x->rc != 0)
		return NULL;
	char job[32];
	snprintf(job, sizeof job, "race-%03d", x->index);
	ledger_reserve_req q = req_for(job, "frank", "owner-1", 10, NOW + 360);
	x->rc = ledger_reserve(NULL, c, &q);
	ledger_conn_close(c);
	return NULL;
}

static void test_two_coordinators_reserve(void **state)
{
	struct fixture *f = need(state);
	ledger *second = NULL;
	assert_int_equal(ledger_open(&second, f->url), 0);  /* another coordinator */
	assert_string_equal(ledger_backend_name(second), "postgres");
	assert_int_equal(ledger_ensure_account(NULL, f->c, "frank", 100, NOW), 0);

	pthread_t th[RACERS];
	struct race_ctx ctx[RACERS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, RACERS);
	for (int i = 0; i < RACERS; i++) {
		ctx[i] = (struct race_ctx){ i % 2 ? f->l : second, &barrier, i, -999 };
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &ctx[i]), 0);
	}
	int ok = 0, poor = 0, other = 0, ok_second = 0;
	for (int i = 0; i < RACERS; i++) {
		pthread_join(th[i], NULL);
		if (ctx[i].rc == 0) {
			ok++;
			ok_second += i % 2 == 0;
		} else if (ctx[i].rc == TROOP_ECREDITS) {
			poor++;
		} else {
			other++;
		}
	}
	pthread_barrier_destroy(&barrier);
	ledger_close(second);
	assert_int_equal(other, 0);
	assert_int_equal(ok, 10);
	assert_int_equal(poor, 90);
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, f->c, "frank"), 0);
	assert_int_equal(b.available, 0);
	assert_int_equal(b.reserved, 100);
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM reservations WHERE status = "
	    "'open'"), 10);
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM transactions WHERE type = "
	    "'reserve'"), 10);
	/* ids stay unique under concurrency (each handle numbers its rows from
	 * blocks of its own: not dense across the two) */
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(DISTINCT id) FROM transactions"),
	    pg_scalar(f->url, "SELECT COUNT(*) FROM transactions"));
	assert_invariant(f->c);
	print_message("reservations won through the second handle: %d of 10\n", ok_second);
}

/* ---- coordinators starting together --------------------------------------------- */

#define OPENERS 6

struct open_ctx {
	const char *url;
	pthread_barrier_t *barrier;
	int rc;
};

static void *open_thread(void *arg)
{
	struct open_ctx *x = arg;
	ledger *l = NULL;
	pthread_barrier_wait(x->barrier);
	x->rc = ledger_open(&l, x->url);
	if (x->rc != 0)
		fprintf(stderr, "ledger_open: %s\n", troop_error_msg());
	ledger_close(l);
	return NULL;
}

static void test_concurrent_migrations(void **state)
{
	struct fixture *f = need(state);
	pthread_t th[OPENERS];
	struct open_ctx ctx[OPENERS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, OPENERS);
	for (int i = 0; i < OPENERS; i++) {
		ctx[i] = (struct open_ctx){ f->url, &barrier, -999 };
		assert_int_equal(pthread_create(&th[i], NULL, open_thread, &ctx[i]), 0);
	}
	for (int i = 0; i < OPENERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ctx[i].rc, 0);
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM schema_version"),
	    troop_migrations_count);
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM counters"), 2);
	/* the migration lock is not left behind */
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM pg_locks WHERE locktype = "
	    "'advisory'"), 0);
}

/* ---- crossing settlements: lock order --------------------------------------------- */

#define CROSS_JOBS 240
#define CROSS_THREADS 8

struct cross_ctx {
	ledger *l;
	pthread_barrier_t *barrier;
	int index;
	int errors;
	int64_t released;
};

static void *cross_thread(void *arg)
{
	struct cross_ctx *x = arg;
	ledger_conn *c = NULL;
	int rc = ledger_conn_open(&c, x->l);
	pthread_barrier_wait(x->barrier);
	if (rc != 0) {
		x->errors++;
		return NULL;
	}
	/* half the threads walk the jobs forwards, half backwards */
	for (int k = 0; k < CROSS_JOBS / CROSS_THREADS; k++) {
		int per = CROSS_JOBS / CROSS_THREADS;
		int i = (x->index % 2 ? k : per - 1 - k) * CROSS_THREADS + x->index;
		char job[32];
		snprintf(job, sizeof job, "x-%03d", i);
		ledger_settle_req s = { .job_id = job, .signer_node_id = "node-x",
			.duration_ms = 3000 + i, .tokens_in = 1, .tokens_out = 2, .outcome = "ok",
			.grace_s = LEDGER_RELEASE_GRACE, .now = NOW + 100 };
		ledger_settle_result res;
		rc = ledger_settle(&res, c, &s);
		/* every 5th job expired: the sweeper may get there first */
		if (rc != 0 && !(i % 5 == 0 && rc == TROOP_EGONE)) {
			fprintf(stderr, "settle %s: %s\n", job, troop_error_msg());
			x->errors++;
		}
		if (x->index == 0 && k % 10 == 0) {
			int64_t n = 0;
			if (ledger_release_expired(&n, c, NOW + 100, LEDGER_RELEASE_GRACE) != 0)
				x->errors++;
			x->released += n;
		}
	}
	ledger_conn_close(c);
	return NULL;
}

static void test_crossing_settlements(void **state)
{
	struct fixture *f = need(state);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "acct-a", 100000, NOW), 0);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "acct-b", 100000, NOW), 0);
	assert_int_equal(ledger_node_upsert(NULL, f->c, "node-x", "acct-a", "box", NOW), 0);
	/* a pays b and b pays a; every 5th reservation has expired by settle time */
	for (int i = 0; i < CROSS_JOBS; i++) {
		char job[32];
		snprintf(job, sizeof job, "x-%03d", i);
		ledger_reserve_req q = req_for(job, i % 2 ? "acct-a" : "acct-b",
		    i % 2 ? "acct-b" : "acct-a", 50, i % 5 == 0 ? NOW : NOW + 1000);
		assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	}
	int64_t deadlocks_before = pg_scalar(f->url, "SELECT deadlocks FROM pg_stat_database "
	    "WHERE datname = current_database()");

	pthread_t th[CROSS_THREADS];
	struct cross_ctx ctx[CROSS_THREADS];
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, CROSS_THREADS);
	for (int i = 0; i < CROSS_THREADS; i++) {
		ctx[i] = (struct cross_ctx){ f->l, &barrier, i, 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, cross_thread, &ctx[i]), 0);
	}
	int errors = 0;
	for (int i = 0; i < CROSS_THREADS; i++) {
		pthread_join(th[i], NULL);
		errors += ctx[i].errors;
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(errors, 0);
	int64_t n = 0;
	assert_int_equal(ledger_release_expired(&n, f->c, NOW + 100, LEDGER_RELEASE_GRACE), 0);
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM reservations WHERE status = "
	    "'open'"), 0);
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM reservations WHERE status = "
	    "'released'"), CROSS_JOBS / 5);
	ledger_node nd;
	assert_int_equal(ledger_node_get(&nd, f->c, "node-x"), 0);
	assert_int_equal(nd.jobs_ok, CROSS_JOBS - CROSS_JOBS / 5);
	assert_invariant(f->c);
	/* the server saw no deadlock (statistics arrive when sessions end) */
	int64_t deadlocks = -1;
	for (int i = 0; i < 50; i++) {
		if (pg_scalar(f->url, "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = "
		    "current_database() AND pid <> pg_backend_pid()") <= 1)
			break;
		struct timespec ts = { 0, 20000000L };
		nanosleep(&ts, NULL);
	}
	deadlocks = pg_scalar(f->url, "SELECT deadlocks FROM pg_stat_database WHERE datname = "
	    "current_database()");
	assert_int_equal(deadlocks, deadlocks_before);
}

/* ---- losing the connection ---------------------------------------------------------- */

static void run_cmd(const char *var)
{
	const char *cmd = getenv(var);
	if (cmd == NULL || *cmd == '\0')
		fail_msg("%s is not set: cannot restart the server", var);
	int rc = system(cmd);
	if (rc != 0)
		fail_msg("%s (%s) failed: %d", var, cmd, rc);
}

static void test_disconnect_and_restart(void **state)
{
	struct fixture *f = need(state);
	ledger_conn *idle = NULL;
	ledger_settle_result res;
	char buf[64];
	assert_int_equal(ledger_conn_open(&idle, f->l), 0);
	assert_int_equal(ledger_ensure_account(NULL, f->c, "alice", 1000, NOW), 0);
	ledger_reserve_req q = req_for("job-1", "alice", "owner-1", 100, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	ledger_settle_req s = { .job_id = "job-1", .signer_node_id = "node-x",
		.duration_ms = 5000, .outcome = "ok", .grace_s = 60, .now = NOW + 10 };
	assert_int_equal(ledger_settle(&res, f->c, &s), 0);
	q = req_for("job-2", "alice", "owner-1", 200, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	assert_int_equal(ledger_kv_put_if_absent(NULL, f->c, "signing_key", "k1", NOW), 0);

	/* the server drops every session: the next call reconnects by itself */
	char sql[256];
	snprintf(sql, sizeof sql, "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
	    "WHERE datname = '%s' AND pid <> pg_backend_pid()", f->dbname);
	assert_true(pg_scalar(base_url(), sql) >= 2);
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, f->c, "alice"), 0);
	assert_int_equal(b.available + b.trial, 1000 - 100 + 95 - 200);
	q = req_for("job-3", "alice", "owner-1", 10, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, idle, &q), 0);

	/* the server goes away: every call says 503, nothing crashes */
	run_cmd("TROOP_TEST_PG_STOP");
	for (int round = 0; round < 3; round++) {
		assert_int_equal(ledger_balance_get(&b, f->c, "alice"), TROOP_EUNAVAIL);
		assert_non_null(strstr(troop_error_msg(), "unavailable"));
		q = req_for("job-4", "alice", "owner-1", 10, NOW + 360);
		assert_int_equal(ledger_reserve(NULL, f->c, &q), TROOP_EUNAVAIL);
		assert_int_equal(ledger_ensure_account(NULL, idle, "bob", 50, NOW), TROOP_EUNAVAIL);
		s.job_id = "job-2";
		assert_int_equal(ledger_settle(&res, idle, &s), TROOP_EUNAVAIL);
		ledger_totals t;
		assert_int_equal(ledger_totals_get(&t, f->c), TROOP_EUNAVAIL);
		assert_int_equal(ledger_kv_get(buf, sizeof buf, NULL, idle, "signing_key"),
		    TROOP_EUNAVAIL);
	}
	ledger_conn *c3 = NULL;
	ledger *l3 = NULL;
	assert_int_equal(ledger_conn_open(&c3, f->l), TROOP_EUNAVAIL);
	assert_null(c3);
	assert_int_equal(ledger_open(&l3, f->url), TROOP_EUNAVAIL);
	assert_null(l3);

	/* back: the same connections work again and nothing committed is lost */
	run_cmd("TROOP_TEST_PG_START");
	assert_int_equal(ledger_balance_get(&b, f->c, "alice"), 0);
	assert_int_equal(b.available + b.trial, 1000 - 100 + 95 - 200 - 10);
	assert_int_equal(b.reserved, 210);
	assert_int_equal(ledger_kv_get(buf, sizeof buf, NULL, idle, "signing_key"), 0);
	assert_string_equal(buf, "k1");
	ledger_reservation r;
	assert_int_equal(ledger_reservation_get(&r, idle, "job-1"), 0);
	assert_int_equal(r.status, LEDGER_RES_SETTLED);
	assert_int_equal(r.charged, 5);
	assert_int_equal(ledger_reservation_get(&r, f->c, "job-4"), TROOP_ENOTFOUND);
	q = req_for("job-4", "alice", "owner-1", 10, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	assert_int_equal(ledger_settle(&res, idle, &s), 0);
	assert_int_equal(res.charged, 5);
	assert_int_equal(ledger_ensure_account(NULL, idle, "bob", 50, NOW), 0);
	/* grant, job-1 reserve/settle/release, job-2, job-3, job-4 reserves, job-2
	 * settle/release, bob's grant */
	assert_int_equal(pg_scalar(f->url, "SELECT COUNT(*) FROM transactions"),
	    1 + 3 + 1 + 1 + 1 + 2 + 1);
	assert_invariant(f->c);
	ledger_conn_close(idle);
}

/* A coordinator whose database user may read and write rows but not
 * create tables starts once the schema is there, and works. */
static void test_user_without_ddl(void **state)
{
	struct fixture *f = need(state);
	char role[64], sql[512], url[1400];
	snprintf(role, sizeof role, "troop_app_%d", (int)getpid());
	snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN", role);
	assert_int_equal(pg_scalar(base_url(), sql), 0);
	snprintf(sql, sizeof sql, "REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
	    "GRANT USAGE ON SCHEMA public TO %s; "
	    "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO %s", role, role);
	assert_int_equal(pg_scalar(f->url, sql), 0);

	/* the same server and database, as that user */
	const char *host = strstr(f->url, "://") + 3;
	const char *at = strchr(host, '@');
	snprintf(url, sizeof url, "postgresql://%s@%s", role, at ? at + 1 : host);
	ledger *l = NULL;
	ledger_conn *c = NULL;
	int rc = ledger_open(&l, url);
	if (rc != 0)
		fprintf(stderr, "ledger_open as %s: %s\n", role, troop_error_msg());
	assert_int_equal(rc, 0);
	assert_int_equal(ledger_conn_open(&c, l), 0);
	assert_int_equal(ledger_ensure_account(NULL, c, "alice", 100, NOW), 0);
	ledger_reserve_req q = req_for("job-1", "alice", "owner-1", 10, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, c, &q), 0);
	assert_int_equal(ledger_audit(c, "admin-1", "note", NULL, NOW), 0);
	assert_invariant(c);
	ledger_conn_close(c);
	ledger_close(l);

	snprintf(sql, sizeof sql, "DROP OWNED BY %s", role);
	assert_int_equal(pg_scalar(f->url, sql), 0);
	snprintf(sql, sizeof sql, "DROP ROLE %s", role);
	assert_int_equal(pg_scalar(base_url(), sql), 0);
}

/* A failover leaves the connection on a server that refuses writes (a
 * standby): 503, and the next call connects anew instead of staying. */
static void test_read_only_server(void **state)
{
	struct fixture *f = need(state);
	char sql[256];
	assert_int_equal(ledger_ensure_account(NULL, f->c, "alice", 100, NOW), 0);
	snprintf(sql, sizeof sql, "ALTER DATABASE %s SET default_transaction_read_only = on",
	    f->dbname);
	assert_int_equal(pg_scalar(base_url(), sql), 0);
	snprintf(sql, sizeof sql, "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
	    "WHERE datname = '%s' AND pid <> pg_backend_pid()", f->dbname);
	assert_true(pg_scalar(base_url(), sql) >= 1);

	/* reconnects, lands on a read-only session: writes are unavailable */
	ledger_reserve_req q = req_for("job-ro", "alice", "owner-1", 10, NOW + 360);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), TROOP_EUNAVAIL);
	assert_non_null(strstr(troop_error_msg(), "read-only"));

	/* writable again: the next call connects anew rather than staying on
	 * the read-only session */
	snprintf(sql, sizeof sql, "ALTER DATABASE %s RESET default_transaction_read_only",
	    f->dbname);
	assert_int_equal(pg_scalar(base_url(), sql), 0);
	assert_int_equal(ledger_reserve(NULL, f->c, &q), 0);
	ledger_balance b;
	assert_int_equal(ledger_balance_get(&b, f->c, "alice"), 0);
	assert_int_equal(b.available + b.trial, 90);
	assert_invariant(f->c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_two_coordinators_reserve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_migrations, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_crossing_settlements, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_and_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_without_ddl, setup, teardown),
	};
	if (base_url() == NULL) {
		/* 77: ctest reports the program as skipped, not as passed */
		printf("TROOP_TEST_LEDGER_URL is not a postgres:// URL: every test skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no libpq: nothing to test */

int main(void)
{
	printf("the backend is not built in: skipped\n");
	return 77;   /* skipped */
}

#endif
