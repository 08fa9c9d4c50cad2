/*
 * test_credits_property.c - a randomized property test of the credit
 * ledger: several threads, each on its own connection to one database,
 * run random account creations (trial starter credits), reservations,
 * settlements (honest, replayed, forged and implausibly long; held as
 * claims for jobs whose client promised a delivery report), delivery
 * reports (honest, under-reporting and forged; receipts and reports carry
 * response digests that match or not, so that clients are disputed for
 * under-reporting too, and some reports say the node refused the
 * ticket), deadline settlement of
 * claims that got no report, that pay
 * nodes with ordinary credits or into pending earnings, releases of
 * pending earnings under a daily cap, failed audits that forfeit them,
 * invite codes, expiry sweeps and admin grants concurrently.  After every
 * step the thread checks, in one snapshot, that
 *   sum(balances) + sum(trial) + sum(open reservations) + sum(pending)
 *     == all credits ever granted - all credits forfeited
 * and that no balance it can see is negative.  At the end every job is
 * closed and the books must balance to the credit, and the accounts'
 * dispute counts add up to the jobs settled as client disputes.
 *
 * The database is one SQLite file, or with TROOP_TEST_LEDGER_URL=
 * postgres://... (tests/integration/test_pg_backends.sh sets it) a
 * PostgreSQL database of its own, created from that URL and dropped
 * afterwards.
 *
 * The seed is printed; TROOP_PROPERTY_SEED reproduces a run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef TROOP_HAVE_PQ
#include <libpq-fe.h>
#endif

#include "error.h"
#include "ledger.h"

#define THREADS 4
#define STEPS 250
#define ACCOUNTS 8
#define NODES 3
#define MAX_JOBS (THREADS * STEPS)

struct job {
	char id[32];
	int requester, node;
	int64_t amount;
	int64_t created;
	int closed;   /* 0 open, 1 settled, 2 released/gone */
};

/* Nodes are established after one ordinary payer; a small cap so that it
 * is often reached. */
static const ledger_policy POLICY = { .establish_age_s = 20, .establish_payers = 1,
	.trial_daily_cap = 200 };

static struct {
	ledger *l;
	pthread_mutex_t mu;
	struct job jobs[MAX_JOBS];
	int njobs;
	int failures;
	int64_t now;  /* shared fake clock */
	char accounts[ACCOUNTS][32];
	char nodes[NODES][32];
	char dir[256];
	char url[1200];
	char dbname[64];  /* PostgreSQL: this run's own database */
} P;

#include "coordinator/pg_util.h"

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void check(ledger_conn *c, const char *step)
{
	ledger_totals t;
	int rc = ledger_totals_get(&t, c);

	if (rc == TROOP_EUNAVAIL)
		return; /* busy past the timeout: not a violation */
	if (rc != 0 || !ledger_totals_balanced(&t)) {
		fprintf(stderr, "invariant broken after %s: rc=%d granted=%lld forfeited=%lld "
		    "balances=%lld trial=%lld reserved=%lld pending=%lld\n", step, rc,
		    (long long)t.granted, (long long)t.forfeited, (long long)t.balances,
		    (long long)t.trial, (long long)t.reserved, (long long)t.pending);
		__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
	}
	for (int i = 0; i < ACCOUNTS; i++) {
		ledger_balance b;
		if (ledger_balance_get(&b, c, P.accounts[i]) == 0 &&
		    (b.available < 0 || b.reserved < 0 || b.trial < 0 || b.pending < 0)) {
			fprintf(stderr, "negative balance for %s after %s\n", P.accounts[i], step);
			__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
		}
	}
}

static void *worker(void *arg)
{
	uint32_t seed = (uint32_t)(uintptr_t)arg;
	ledger_conn *c = NULL;

	if (ledger_conn_open(&c, P.l) != 0) {
		__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
		return NULL;
	}
	for (int step = 0; step < STEPS; step++) {
		int64_t now = __atomic_add_fetch(&P.now, 1, __ATOMIC_SEQ_CST);
		uint32_t op = rnd(&seed) % 100;
		const char *what;

		if (op < 15) {
			what = "ensure_account";
			ledger_ensure_account(NULL, c, P.accounts[rnd(&seed) % ACCOUNTS], 1000, now);
		} else if (op < 50) {
			struct job j = { .requester = (int)(rnd(&seed) % ACCOUNTS),
					 .node = (int)(rnd(&seed) % NODES),
					 .amount = 1 + rnd(&seed) % 300, .created = now };
			unsigned char raw[12];
			what = "reserve";
			randombytes_buf(raw, sizeof(raw));
			sodium_bin2base64(j.id, sizeof(j.id), raw, sizeof(raw),
			    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
			ledger_reserve_req rq = {
				.job_id = j.id, .requester = P.accounts[j.requester],
				.node_id = P.nodes[j.node], .worker = P.nodes[j.node], .model = "m",
				.amount = j.amount, .max_seconds = j.amount, .multiplier = 1.0,
				/* some reservations are already near their deadline */
				.expires_at = now + (int64_t)(rnd(&seed) % 40),
				.report_wanted = rnd(&seed) % 3 == 0, .now = now,
			};
			if (ledger_reserve(NULL, c, &rq) == 0) {
				pthread_mutex_lock(&P.mu);
				if (P.njobs < MAX_JOBS)
					P.jobs[P.njobs++] = j;
				pthread_mutex_unlock(&P.mu);
			}
		} else if (op < 80) {
			struct job j;
			int have = 0, forged = rnd(&seed) % 5 == 0;
			pthread_mutex_lock(&P.mu);
			if (P.njobs > 0) {
				j = P.jobs[rnd(&seed) % (uint32_t)P.njobs];
				have = 1;
			}
			pthread_mutex_unlock(&P.mu);
			what = forged ? "forged settle" : "settle";
			if (have) {
				ledger_settle_result res;
				/* mostly within the time since the reservation, sometimes
				 * (implausibly) longer */
				int64_t span = (now - j.created) * 1000 + 1;
				ledger_settle_req sr = {
					.job_id = j.id,
					.signer_node_id = P.nodes[(j.node + (forged ? 1 : 0)) % NODES],
					.duration_ms = (int64_t)(rnd(&seed) % (uint32_t)(span +
					    (rnd(&seed) % 10 == 0 ? 400000 : 0))),
					.outcome = "ok", .grace_s = 5, .now = now,
					/* sometimes the body the report will name */
					.digest = rnd(&seed) % 2 ? "digest-a" : "digest-b",
					.tokens_out = (int64_t)(rnd(&seed) % 4000),
				};
				int rc = ledger_settle(&res, c, &sr);
				if (forged && rc == 0) {
					fprintf(stderr, "a forged receipt settled job %s\n", j.id);
					__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
				}
				if (rc == 0 && res.claimed && !res.already && rnd(&seed) % 2) {
					/* its client reports at once: as often too fast for
					 * the tokens of the body it names as not */
					ledger_report_req rq = { .job_id = j.id,
						.requester = P.accounts[j.requester],
						.duration_ms = (int64_t)(rnd(&seed) % 3000),
						.tokens = (int64_t)(rnd(&seed) % 100),
						.outcome = "complete", .digest = sr.digest,
						.max_tps = 20, .now = now };
					ledger_settle_result rr;
					int rrc = ledger_report(&rr, c, &rq);
					if (rrc == 0 && rr.disputed && rr.client_disputed) {
						fprintf(stderr, "job %s: disputed against both\n", j.id);
						__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
					}
				}
				if (rc == 0 && !res.claimed && res.charged + res.refunded != j.amount) {
					fprintf(stderr, "job %s: charged %lld + refunded %lld != %lld\n", j.id,
					    (long long)res.charged, (long long)res.refunded,
					    (long long)j.amount);
					__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
				}
			}
		} else if (op < 86) {
			struct job j;
			int have = 0, forged = rnd(&seed) % 6 == 0;
			pthread_mutex_lock(&P.mu);
			if (P.njobs > 0) {
				j = P.jobs[rnd(&seed) % (uint32_t)P.njobs];
				have = 1;
			}
			pthread_mutex_unlock(&P.mu);
			what = forged ? "forged report" : "report";
			if (have) {
				ledger_settle_result res;
				ledger_report_req rq = {
					.job_id = j.id,
					.requester = P.accounts[(j.requester + (forged ? 1 : 0)) %
					    ACCOUNTS],
					/* a third of them far too short for their tokens */
					.duration_ms = (int64_t)(rnd(&seed) % (rnd(&seed) % 3 ? 60000 : 200)),
					.outcome = rnd(&seed) % 8 == 0 ? "refused" : "complete",
					.tokens = (int64_t)(rnd(&seed) % 4000),
					.digest = rnd(&seed) % 2 ? "digest-a" : "digest-b",
					.max_tps = rnd(&seed) % 4 == 0 ? 0 : 5, .now = now,
				};
				int rc = ledger_report(&res, c, &rq);
				if (rc == 0 && res.disputed && res.client_disputed) {
					fprintf(stderr, "job %s: disputed against both witnesses\n", j.id);
					__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
				}
				if (forged && rc == 0) {
					fprintf(stderr, "a forged report was accepted for job %s\n", j.id);
					__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
				}
				if (rc == 0 && !res.claimed && res.charged + res.refunded != j.amount) {
					fprintf(stderr, "job %s: charged %lld + refunded %lld != %lld\n",
					    j.id, (long long)res.charged, (long long)res.refunded,
					    (long long)j.amount);
					__atomic_add_fetch(&P.failures, 1, __ATOMIC_SEQ_CST);
				}
			}
		} else if (op < 92) {
			what = "release_expired";
			uint32_t which = rnd(&seed) % 3;
			if (which == 0)
				ledger_release_expired(NULL, c, now, 5);
			else if (which == 1)
				ledger_settle_claims(NULL, c, now, 10);
			else
				ledger_release_pending(NULL, c, now, &POLICY);
		} else if (op < 93) {
			what = "forfeit";
			ledger_node_forfeit(NULL, c, P.nodes[rnd(&seed) % NODES], "admin", "property",
			    now);
		} else if (op < 95) {
			char code[32];
			what = "invite";
			snprintf(code, sizeof(code), "code-%u", rnd(&seed) % 64);
			if (rnd(&seed) % 2)
				ledger_invite_create(c, code, 1 + rnd(&seed) % 300, "admin", now);
			else
				ledger_invite_redeem(NULL, c, code, P.accounts[rnd(&seed) % ACCOUNTS],
				    now);
		} else {
			what = "admin_grant";
			ledger_admin_grant(NULL, c, P.accounts[rnd(&seed) % ACCOUNTS],
			    1 + rnd(&seed) % 500, "property", "admin", now);
		}
		check(c, what);
	}
	ledger_conn_close(c);
	return NULL;
}

static void test_random_concurrent(void **state)
{
	pthread_t th[THREADS];
	uint32_t seed;
	const char *env = getenv("TROOP_PROPERTY_SEED");
	char path[300];
	ledger_conn *c;
	ledger_totals t;

	(void)state;
	seed = env ? (uint32_t)strtoul(env, NULL, 10) : randombytes_random() | 1;
	printf("property seed %u (set TROOP_PROPERTY_SEED to repeat)\n", seed);
	snprintf(P.dir, sizeof(P.dir), "/tmp/troop-prop-XXXXXX");
	assert_non_null(mkdtemp(P.dir));
	snprintf(path, sizeof(path), "sqlite:%s/ledger.db", P.dir);
	snprintf(P.url, sizeof(P.url), "%s", path);
	const char *base = getenv("TROOP_TEST_LEDGER_URL");
	if (base != NULL && strncmp(base, "postgres", 8) == 0) {
#ifdef TROOP_HAVE_PQ
		char sql[128];
		snprintf(P.dbname, sizeof(P.dbname), "troop_prop_%d", (int)getpid());
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s", P.dbname);
		assert_int_equal(pg_exec(base, sql), 0);
		pg_url_with_db(P.url, sizeof(P.url), base, P.dbname);
		printf("on PostgreSQL database %s\n", P.dbname);
#else
		fail_msg("TROOP_TEST_LEDGER_URL is postgres but libpq is not built in");
#endif
	}
	assert_int_equal(ledger_open(&P.l, P.url), 0);
	pthread_mutex_init(&P.mu, NULL);
	P.now = 1000000;
	for (int i = 0; i < ACCOUNTS; i++)
		snprintf(P.accounts[i], sizeof(P.accounts[i]), "account-%d", i);
	for (int i = 0; i < NODES; i++)
		snprintf(P.nodes[i], sizeof(P.nodes[i]), "node-%d", i);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(seed * (i + 1) | 1));
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(P.failures, 0);

	/* close every job: the books balance to the credit and nothing is held */
	assert_int_equal(ledger_conn_open(&c, P.l), 0);
	assert_int_equal(ledger_release_expired(NULL, c, P.now + 1000, 5), 0);
	assert_int_equal(ledger_settle_claims(NULL, c, P.now + 1000, 10), 0);
	assert_int_equal(ledger_release_pending(NULL, c, P.now + 1000, &POLICY), 0);
	assert_int_equal(ledger_totals_get(&t, c), 0);
	assert_int_equal(t.reserved, 0);
	assert_int_equal(t.open_reservations, 0);
	assert_int_equal(t.granted - t.forfeited, t.balances + t.trial + t.pending);
	assert_true(ledger_totals_balanced(&t));
	{
		/* each client dispute counted once, on its requester */
		int64_t disputes = 0, client_disputed = 0;
		for (int i = 0; i < ACCOUNTS; i++) {
			ledger_balance b;
			if (ledger_balance_get(&b, c, P.accounts[i]) == 0)
				disputes += b.disputes;
		}
		for (int i = 0; i < P.njobs; i++) {
			ledger_reservation r;
			assert_int_equal(ledger_reservation_get(&r, c, P.jobs[i].id), 0);
			client_disputed += r.client_disputed;
			assert_false(r.client_disputed && r.disputed);
		}
		assert_int_equal(disputes, client_disputed);
		printf("%lld client disputes\n", (long long)client_disputed);
	}
	printf("%d jobs, %lld credits granted, %lld forfeited, %lld trial, %lld pending, "
	    "%lld accounts\n", P.njobs, (long long)t.granted, (long long)t.forfeited,
	    (long long)t.trial, (long long)t.pending, (long long)t.accounts);
	assert_true(P.njobs > 0);
	ledger_conn_close(c);
	ledger_close(P.l);
#ifdef TROOP_HAVE_PQ
	if (P.dbname[0]) {
		char sql[128];
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", P.dbname);
		pg_exec(base, sql);
	}
#endif
	{
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", P.dir);
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_concurrent),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
