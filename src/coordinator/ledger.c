/*
 * ledger.c - the ledger: every credit rule, once, over a database driver
 * (ledger_driver.h).  Picks the driver from the URL, checks every argument
 * once (so all databases refuse the same inputs with the same messages),
 * applies the migrations, and runs each operation as statements of the
 * shared table (ledger_sql.c) inside write transactions that take row
 * locks in the one order written down in ledger.h.  The retry loop for
 * busy and serialization failures lives here too.  See ledger.h for the
 * contract.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "ledger.h"
#include "ledger_driver.h"
#include "log.h"
#include "migrations.h"
#include "thread.h"

#define TXN_ATTEMPTS 3
#define RELEASE_BATCH 256

const ledger_policy ledger_policy_default = {
	.establish_age_s = LEDGER_ESTABLISH_AGE_S,
	.establish_payers = LEDGER_ESTABLISH_PAYERS,
	.trial_daily_cap = LEDGER_TRIAL_DAILY_CAP,
};

/* ---- argument checks ----------------------------------------------------- */

/* A required string: non-NULL, non-empty, at most `max` bytes. */
static int check_str(const char *what, const char *s, size_t max)
{
	if (s == NULL || s[0] == '\0')
		return troop_error_set(TROOP_EINVAL, "ledger: %s is required", what);
	size_t n = strnlen(s, max + 1);
	if (n > max)
		return troop_error_set(TROOP_ETOOLARGE, "ledger: %s is longer than %zu bytes",
		    what, max);
	return 0;
}

/* An optional string: NULL or "" are fine. */
static int check_opt_str(const char *what, const char *s, size_t max)
{
	if (s == NULL)
		return 0;
	if (strnlen(s, max + 1) > max)
		return troop_error_set(TROOP_ETOOLARGE, "ledger: %s is longer than %zu bytes",
		    what, max);
	return 0;
}

static int check_range(const char *what, int64_t v, int64_t min, int64_t max)
{
	if (v < min || v > max)
		return troop_error_set(TROOP_EINVAL,
		    "ledger: %s must be between %lld and %lld, got %lld", what,
		    (long long)min, (long long)max, (long long)v);
	return 0;
}

static int check_multiplier(double m)
{
	if (!isfinite(m) || m <= 0.0 || m > LEDGER_MULTIPLIER_MAX)
		return troop_error_set(TROOP_EINVAL,
		    "ledger: multiplier must be in (0, %g], got %g", LEDGER_MULTIPLIER_MAX, m);
	return 0;
}

static int check_conn(const ledger_conn *c)
{
	if (c == NULL || c->drv == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no connection");
	return 0;
}

#define TRY(expr) do { int rc_ = (expr); if (rc_ != 0) return rc_; } while (0)

/* ---- statements and transactions ------------------------------------------ */

/* Statement parameters: ARGS(S("x"), I(5)) expands to an array and its
 * length. */
#define S(x) { .type = LEDGER_P_TEXT, .s = (x) }
#define I(x) { .type = LEDGER_P_I64, .i = (x) }
#define D(x) { .type = LEDGER_P_F64, .f = (x) }
#define ARGS(...) (const struct ledger_param[]){ __VA_ARGS__ }, \
	(int)(sizeof((const struct ledger_param[]){ __VA_ARGS__ }) / sizeof(struct ledger_param))
#define NOARGS NULL, 0

static void fin(ledger_conn *c)
{
	c->drv->finish(c);
}

static int64_t col_i64(ledger_conn *c, int i)
{
	return c->drv->col_i64(c, i);
}

static const char *col_text(ledger_conn *c, int i)
{
	return c->drv->col_text(c, i, NULL);
}

/* Run `id` and step to its first row: 1 (the row is current; read it, then
 * fin), 0 (no row) or a troop_err (the cursor is finished). */
static int row(ledger_conn *c, enum ledger_stmt id, const struct ledger_param *p, int n,
    const char *what)
{
	int r = c->drv->query(c, id, p, n, what);
	if (r == 0)
		r = c->drv->next(c);
	if (r <= 0)
		fin(c);
	return r;
}

/* Run `id` to the end, ignoring rows.  An empty statement does nothing. */
static int exec(ledger_conn *c, enum ledger_stmt id, const struct ledger_param *p, int n,
    const char *what)
{
	if (ledger_stmt_sql(c->drv, id)[0] == '\0')
		return 0;
	int r = c->drv->query(c, id, p, n, what);
	while (r == 0 && (r = c->drv->next(c)) == 1)
		r = 0;
	fin(c);
	return r;
}

/* exec, then *changed = rows changed. */
static int exec_count(int64_t *changed, ledger_conn *c, enum ledger_stmt id,
    const struct ledger_param *p, int n, const char *what)
{
	int err = exec(c, id, p, n, what);
	if (err == 0)
		*changed = c->drv->changes(c);
	return err;
}

static int ready(ledger_conn *c)
{
	return c->drv->ready(c);
}

static bool lost(ledger_conn *c)
{
	return c->drv->lost(c);
}

/* row() for a read outside any transaction: reconnects first when needed,
 * and once more when the connection turns out dead (reads are safe to
 * repeat). */
static int read_row(ledger_conn *c, enum ledger_stmt id, const struct ledger_param *p, int n,
    const char *what)
{
	int r = ready(c);
	if (r == 0)
		r = row(c, id, p, n, what);
	if (r < 0 && lost(c) && (r = ready(c)) == 0)
		r = row(c, id, p, n, what);
	return r;
}

typedef int (*txn_fn)(ledger_conn *c, void *arg);

static void ids_drop(ledger_conn *c);

/* Run fn inside a write transaction: commit on 0, roll back otherwise.
 * The whole transaction is tried again (TXN_ATTEMPTS in all, after a short
 * jittered pause) when it failed on a busy database, a serialization
 * failure, a deadlock or a lock timeout.  When BEGIN finds the connection
 * dead (the server restarted since the last call) nothing was written:
 * reconnect once and start over.  A connection lost after BEGIN fails the
 * call with TROOP_EUNAVAIL: a commit whose answer was lost may or may not
 * have happened, so it is never repeated behind the caller's back.
 * fn must be re-runnable. */
static int with_txn(ledger_conn *c, txn_fn fn, void *arg)
{
	const struct ledger_driver *d = c->drv;
	bool reconnected = false;
	int attempt = 1;
	for (;;) {
		int err = ready(c);
		if (err)
			return err;
		if ((err = d->begin(c)) != 0 && lost(c) && !reconnected) {
			reconnected = true;
			continue;
		}
		c->ids_fresh = false;
		if (err == 0 && (err = fn(c, arg)) == 0 && (err = d->commit(c)) == 0) {
			c->ids_fresh = false;
			return 0;
		}
		/* keep the message of the first failure */
		char msg[512];
		snprintf(msg, sizeof msg, "%s", troop_error_msg());
		fin(c);
		d->rollback(c);
		if (c->ids_fresh)
			ids_drop(c);
		troop_error_set(err, "%s", msg);
		if (!d->retryable(c) || attempt >= TXN_ATTEMPTS)
			return err;
		log_warn("ledger_busy", "attempt=%d of=%d retrying=1", attempt, TXN_ATTEMPTS);
		struct timespec ts = { 0, (1000000L + (long)(rand() % 4000000)) * attempt };
		nanosleep(&ts, NULL);
		attempt++;
	}
}

/* ---- group commit -------------------------------------------------------------- */

/* One transaction body waiting for the writer (on its caller's stack). */
struct batch_item {
	txn_fn fn;
	void *arg;
	int err;
	char msg[512];
	/* posted once err and msg are set, without the writer's mu held: the
	 * caller wakes and goes on without waiting for that lock, and may
	 * destroy the semaphore (with the item) as soon as its wait returns */
	sem_t done;
	struct batch_item *next;
};

struct ledger_batch {
	pthread_mutex_t mu;
	pthread_cond_t work_cv;   /* items queued, or stop */
	struct batch_item *head, *tail;
	bool stop;
	int max_items;
	pthread_t th;
	ledger_conn *conn;        /* the writer's own; only its thread uses it */
	uint64_t batches, items;  /* under mu */
};

/* Record item `it`'s result, with the thread's message when it failed. */
static void item_set(struct batch_item *it, int err)
{
	it->err = err;
	if (err)
		snprintf(it->msg, sizeof it->msg, "%s", troop_error_msg());
}

/* A statement of the savepoint protocol, with no cursor open (SQLite
 * refuses to release a savepoint while a statement is active). */
static int savepoint(ledger_conn *c, const char *sql)
{
	fin(c);
	return c->drv->script(c, sql);
}

/* Run items[0..n-1] in one transaction, each inside a savepoint: a
 * failing item is rolled back to its savepoint and the others go on.
 * One savepoint statement per item, a round trip each on a server: the
 * savepoint after an item that wrote is released and set again in one
 * script, one an item failed back to marks the next item's start as it
 * is, and the last item's is released by the commit.
 * BEGIN is retried as with_txn retries it; when it still fails, every
 * item fails with its error.  When the transaction fails later, before
 * its commit (a busy or serialization failure, a deadlock, a failed
 * commit), nothing of it was written: each item then runs in a
 * transaction of its own (with_txn, which retries).  A connection lost
 * after BEGIN fails every item with TROOP_EUNAVAIL: the commit may or may
 * not have happened, so nothing is repeated (as with_txn does for one). */
static void batch_run(ledger_conn *c, struct batch_item **items, int n)
{
	const struct ledger_driver *d = c->drv;
	int err;

	if (n == 1) {
		item_set(items[0], with_txn(c, items[0]->fn, items[0]->arg));
		return;
	}
	for (int attempt = 1;; attempt++) {
		err = ready(c);
		if (err == 0 && (err = d->begin(c)) != 0 && lost(c) && (err = ready(c)) == 0)
			err = d->begin(c);
		if (err == 0)
			break;
		/* nothing written: another process holds the database, or the
		 * server is gone; retried as with_txn would, then every write
		 * fails alike rather than wait its own turn for the same lock */
		if (!d->retryable(c) || attempt >= TXN_ATTEMPTS) {
			for (int i = 0; i < n; i++)
				item_set(items[i], err);
			return;
		}
		log_warn("ledger_busy", "attempt=%d of=%d retrying=1 batch=%d", attempt,
		    TXN_ATTEMPTS, n);
		struct timespec ts = { 0, (1000000L + (long)(rand() % 4000000)) * attempt };
		nanosleep(&ts, NULL);
	}
	c->ids_fresh = false;
	bool marked = false;   /* troop_item marks the state before items[i] */
	for (int i = 0; err == 0 && i < n; i++) {
		if (!marked && (err = savepoint(c, i == 0 ? "SAVEPOINT troop_item" :
		    LEDGER_SQL_SAVEPOINT_NEXT)) != 0)
			break;
		marked = false;
		bool fresh = c->ids_fresh;   /* a block of ids taken by an earlier item */
		c->ids_fresh = false;
		int e = items[i]->fn(c, items[i]->arg);
		if (e == 0) {
			items[i]->err = 0;
			c->ids_fresh |= fresh;
			continue;
		}
		item_set(items[i], e);
		if (c->ids_fresh)   /* its block goes back with its savepoint */
			ids_drop(c);
		c->ids_fresh = fresh;
		if (d->retryable(c) || lost(c)) {
			err = e;   /* the whole transaction is at stake */
			break;
		}
		/* the savepoint stays, marking where the next item starts */
		err = savepoint(c, "ROLLBACK TO SAVEPOINT troop_item");
		marked = true;
	}
	if (err == 0 && (err = d->commit(c)) == 0) {
		c->ids_fresh = false;
		return;
	}
	char msg[512];
	snprintf(msg, sizeof msg, "%s", troop_error_msg());
	bool gone = lost(c);
	fin(c);
	d->rollback(c);
	if (c->ids_fresh)
		ids_drop(c);
	for (int i = 0; i < n; i++) {
		if (gone) {
			items[i]->err = TROOP_EUNAVAIL;
			snprintf(items[i]->msg, sizeof items[i]->msg, "%s", msg);
		} else {
			item_set(items[i], with_txn(c, items[i]->fn, items[i]->arg));
		}
	}
	if (!gone)
		log_warn("ledger_batch_split", "items=%d", n);
}

static void *batch_main(void *arg)
{
	struct ledger_batch *b = arg;
	struct batch_item **items = calloc((size_t)b->max_items, sizeof *items);

	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (!b->stop && b->head == NULL)
			pthread_cond_wait(&b->work_cv, &b->mu);
		if (b->head == NULL)
			break;   /* stopping, and nothing left to write */
		int n = 0, cap = items ? b->max_items : 1;
		struct batch_item *one = NULL;
		while (b->head != NULL && n < cap) {
			struct batch_item *it = b->head;
			b->head = it->next;
			if (items)
				items[n++] = it;
			else
				one = it, n = 1;
		}
		if (b->head == NULL)
			b->tail = NULL;
		pthread_mutex_unlock(&b->mu);

		batch_run(b->conn, items ? items : &one, n);

		pthread_mutex_lock(&b->mu);
		b->batches++;
		b->items += (uint64_t)n;
		pthread_mutex_unlock(&b->mu);
		/* an item is gone once posted: nothing of it is read after */
		for (int i = 0; i < n; i++)
			sem_post(&(items ? items[i] : one)->done);
		pthread_mutex_lock(&b->mu);
	}
	pthread_mutex_unlock(&b->mu);
	free(items);
	return NULL;
}

/* Run fn in the transaction of the next batch and wait until it is
 * committed (or failed); with no writer started, in a transaction of its
 * own on c.  The result and message are fn's, as with_txn gives them. */
static int batch_txn(ledger_conn *c, txn_fn fn, void *arg)
{
	struct ledger_batch *b = c->owner ? c->owner->batch : NULL;
	struct batch_item it = { .fn = fn, .arg = arg };

	if (b == NULL)
		return with_txn(c, fn, arg);
	pthread_mutex_lock(&b->mu);
	if (b->stop) {
		pthread_mutex_unlock(&b->mu);
		return with_txn(c, fn, arg);
	}
	sem_init(&it.done, 0, 0);
	if (b->tail)
		b->tail->next = &it;
	else
		b->head = &it;
	b->tail = &it;
	pthread_cond_signal(&b->work_cv);
	pthread_mutex_unlock(&b->mu);
	while (sem_wait(&it.done) != 0 && errno == EINTR)
		;
	sem_destroy(&it.done);
	if (it.err)
		troop_error_set(it.err, "%s", it.msg);
	return it.err;
}

int ledger_batch_start(ledger *l, int max_items)
{
	struct ledger_batch *b;
	int err;

	if (l == NULL || l->drv == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: not open");
	if (max_items < 1 || max_items > LEDGER_BATCH_MAX)
		return troop_error_set(TROOP_EINVAL, "ledger: a batch holds 1 to %d items, "
		    "not %d", LEDGER_BATCH_MAX, max_items);
	if (l->batch != NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: the writer is already started");
	if ((b = calloc(1, sizeof *b)) == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	b->max_items = max_items;
	if ((err = l->drv->conn_open(&b->conn, l)) != 0) {
		free(b);
		return err;
	}
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->work_cv, NULL);
	/* leave SIGINT/SIGTERM to the threads that handle them */
	err = thread_start(&b->th, batch_main, b);
	if (err != 0) {
		l->drv->conn_close(b->conn);
		pthread_cond_destroy(&b->work_cv);
		pthread_mutex_destroy(&b->mu);
		free(b);
		return troop_error_set(TROOP_ERR, "ledger: cannot start the writer thread");
	}
	l->batch = b;
	return 0;
}

void ledger_batch_stop(ledger *l)
{
	struct ledger_batch *b = l ? l->batch : NULL;

	if (b == NULL)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->work_cv);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->th, NULL);   /* the items queued are written first */
	l->batch = NULL;
	log_info("ledger_batch_stopped", "transactions=%llu writes=%llu",
	    (unsigned long long)b->batches, (unsigned long long)b->items);
	l->drv->conn_close(b->conn);
	pthread_cond_destroy(&b->work_cv);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

void ledger_batch_stats(const ledger *l, uint64_t *batches, uint64_t *items)
{
	struct ledger_batch *b = l ? l->batch : NULL;

	*batches = *items = 0;
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->mu);
	*batches = b->batches;
	*items = b->items;
	pthread_mutex_unlock(&b->mu);
}

/* ---- log row ids ------------------------------------------------------------------ */

/* The transaction and audit logs are numbered from the counters table, a
 * block of ID_BLOCK ids at a time, handed out in memory: no write
 * transaction updates one shared row.  Ids increase in the order this
 * process hands them out; several processes on one database interleave
 * their blocks, and a block not used up when a process stops leaves a
 * gap.
 *   - One writer at a time (SQLite): the block is taken inside the
 *     transaction that needs it (the file's write lock is held anyway).
 *     Should that transaction (or the savepoint around it) roll back, the
 *     counter goes back too, so the block is dropped (ids_drop): no other
 *     transaction of this process can have used it meanwhile.
 *   - Several writers (PostgreSQL): the block is taken in a transaction
 *     of its own, on a connection kept for it, so that the counter row is
 *     locked for one statement only and a block once handed out is never
 *     rolled back. */
#define ID_BLOCK 1000

enum { IDS_TX, IDS_AUDIT, IDS_N };
static const char *const ids_names[IDS_N] = { "transactions", "audit_log" };

struct ledger_ids {
	pthread_mutex_t mu;
	int64_t next[IDS_N], end[IDS_N];   /* [next, end) is ours */
	ledger_conn *conn;                 /* several writers: the refill connection */
};

static int ids_new(ledger *l)
{
	struct ledger_ids *ids = calloc(1, sizeof *ids);
	if (ids == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	pthread_mutex_init(&ids->mu, NULL);
	l->ids = ids;
	return 0;
}

static void ids_free(ledger *l)
{
	struct ledger_ids *ids = l->ids;
	if (ids == NULL)
		return;
	if (ids->conn != NULL)
		l->drv->conn_close(ids->conn);
	pthread_mutex_destroy(&ids->mu);
	free(ids);
	l->ids = NULL;
}

/* The transaction on c rolled back (wholly, or to a savepoint) after it
 * took a block: forget the blocks.  Only for one-writer databases. */
static void ids_drop(ledger_conn *c)
{
	struct ledger_ids *ids = c->owner ? c->owner->ids : NULL;
	c->ids_fresh = false;
	if (ids == NULL)
		return;
	pthread_mutex_lock(&ids->mu);
	for (int k = 0; k < IDS_N; k++)
		ids->next[k] = ids->end[k] = 0;
	pthread_mutex_unlock(&ids->mu);
}

/* Advance counter `name` by `n` on c, in c's transaction; *last gets its
 * new value. */
static int counter_advance(int64_t *last, ledger_conn *c, const char *name, int64_t n)
{
	int r = row(c, LS_NEXT_ID, ARGS(S(name), I(n)), "allocate id");
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ERR, "ledger: counter '%s' is missing", name);
	*last = col_i64(c, 0);
	fin(c);
	return 0;
}

struct refill_arg {
	const char *name;
	int64_t n, last;
};

static int refill_txn(ledger_conn *c, void *arg)
{
	struct refill_arg *a = arg;
	return counter_advance(&a->last, c, a->name, a->n);
}

/* Allocate `n` consecutive ids from counter `name`; *first gets the first. */
static int next_ids(int64_t *first, ledger_conn *c, const char *name, int64_t n)
{
	struct ledger_ids *ids = c->owner ? c->owner->ids : NULL;
	int k = strcmp(name, ids_names[IDS_TX]) == 0 ? IDS_TX : IDS_AUDIT;
	int err = 0;

	if (ids == NULL) {   /* a handle being migrated: straight from the row */
		int64_t last;
		TRY(counter_advance(&last, c, name, n));
		*first = last - n + 1;
		return 0;
	}
	pthread_mutex_lock(&ids->mu);
	if (ids->end[k] - ids->next[k] < n) {
		struct refill_arg a = { ids_names[k], n > ID_BLOCK ? n : ID_BLOCK, 0 };
		if (c->drv->one_writer) {
			err = counter_advance(&a.last, c, a.name, a.n);
			if (err == 0)
				c->ids_fresh = true;
		} else {
			if (ids->conn == NULL)
				err = c->drv->conn_open(&ids->conn, c->owner);
			if (err == 0)
				err = with_txn(ids->conn, refill_txn, &a);
		}
		if (err == 0) {
			ids->next[k] = a.last - a.n + 1;
			ids->end[k] = a.last + 1;
		}
	}
	if (err == 0) {
		*first = ids->next[k];
		ids->next[k] += n;
	}
	pthread_mutex_unlock(&ids->mu);
	return err;
}

struct txrow {
	const char *type, *job_id, *requester, *worker, *model, *note;
	int64_t credits, duration_ms, now;
};

/* Insert `n` transaction rows (n >= 1) with consecutive ids; *first_id
 * (may be NULL) gets the first. */
static int insert_txs(int64_t *first_id, ledger_conn *c, const struct txrow *t, int n)
{
	int64_t id;
	int err = next_ids(&id, c, "transactions", n);
	for (int i = 0; err == 0 && i < n; i++)
		err = exec(c, LS_TX_INSERT, ARGS(I(id + i), S(t[i].type), S(t[i].job_id),
		    S(t[i].requester), S(t[i].worker), I(t[i].credits), I(t[i].duration_ms),
		    S(t[i].model), S(t[i].note), I(t[i].now)), "insert transaction row");
	if (err == 0 && first_id != NULL)
		*first_id = id;
	return err;
}

/* An audit row about `target` ("" none) for `reason` ("" none). */
static int insert_audit_on(ledger_conn *c, const char *actor, const char *action,
    const char *target, const char *reason, const char *detail, int64_t now)
{
	int64_t id;
	int err = next_ids(&id, c, "audit_log", 1);
	if (err)
		return err;
	return exec(c, LS_AUDIT_INSERT, ARGS(I(id), S(actor), S(action), S(detail), I(now),
	    S(target), S(reason)), "insert audit row");
}

static int insert_audit(ledger_conn *c, const char *actor, const char *action,
    const char *detail, int64_t now)
{
	return insert_audit_on(c, actor, action, "", "", detail, now);
}

/* Add `credits` (>= 0) to `account`, creating it with them if missing;
 * locks the account row. */
static int account_add(ledger_conn *c, const char *account, int64_t credits, int64_t now)
{
	return exec(c, LS_ACCOUNT_ADD, ARGS(S(account), I(credits), I(now)), "credit account");
}

/* ---- migrations -------------------------------------------------------------- */

struct migrate_arg {
	const struct troop_migration *m;
	bool applied;
};

static int migrate_one(ledger_conn *c, void *arg)
{
	struct migrate_arg *m = arg;
	int err;
	m->applied = false;
	/* Look before creating: a database user that may not create tables
	 * can still start once the schema is in place. */
	int r = row(c, LS_SCHEMA_EXISTS, NOARGS, "read schema_version");
	if (r < 0)
		return r;
	fin(c);
	if (r == 0 && (err = exec(c, LS_SCHEMA_CREATE, NOARGS, "create schema_version")) != 0)
		return err;
	if ((r = row(c, LS_SCHEMA_HAS, ARGS(I(m->m->version)), "read schema_version")) != 0) {
		fin(c);
		return r < 0 ? r : 0;  /* applied before, maybe by another process just now */
	}
	if ((err = c->drv->script(c, m->m->sql)) != 0) {
		char msg[512];  /* the message buffer cannot be its own argument */
		snprintf(msg, sizeof msg, "%s", troop_error_msg());
		return troop_error_set(err == TROOP_ECONFLICT ? TROOP_ERR : err,
		    "ledger migration %s failed: %s", m->m->name, msg);
	}
	err = exec(c, LS_SCHEMA_INSERT, ARGS(I(m->m->version), S(m->m->name),
	    I((int64_t)time(NULL))), "record migration");
	if (err == 0)
		m->applied = true;
	return err;
}

static int schema_version(int *out, ledger_conn *c)
{
	int r = read_row(c, LS_SCHEMA_MAX, NOARGS, "read schema version");
	if (r < 0)
		return r;
	*out = r == 1 ? (int)col_i64(c, 0) : 0;
	fin(c);
	return 0;
}

/* Apply every missing migration, one transaction each, under the driver's
 * migration lock (if any) so that coordinators starting together take
 * turns. */
static int migrate(ledger_conn *c)
{
	const char *desc = c->drv->describe(c->owner);
	int err = exec(c, LS_MIGRATE_LOCK, NOARGS, "take the migration lock");
	if (err)
		return err;
	int known = 0;
	char msg[512];
	for (int i = 0; i < troop_migrations_count; i++) {
		struct migrate_arg m = { &troop_migrations[i], false };
		if ((err = with_txn(c, migrate_one, &m)) != 0) {
			/* name the migration unless migrate_one already did */
			snprintf(msg, sizeof msg, "%s", troop_error_msg());
			if (strncmp(msg, "ledger migration", 16) != 0)
				troop_error_set(err, "ledger migration %s failed: %s", m.m->name, msg);
			err = err == TROOP_ECONFLICT ? TROOP_ERR : err;
			break;
		}
		if (m.applied)
			log_info("ledger_migrate", "database=%s migration=%s", desc, m.m->name);
		if (m.m->version > known)
			known = m.m->version;
	}
	int have = 0;
	if (err == 0 && (err = schema_version(&have, c)) == 0 && have > known)
		log_warn("ledger_schema_newer", "database=%s version=%d known=%d", desc, have,
		    known);
	/* keep the first error's message */
	snprintf(msg, sizeof msg, "%s", troop_error_msg());
	int uerr = exec(c, LS_MIGRATE_UNLOCK, NOARGS, "release the migration lock");
	if (err != 0)
		troop_error_set(err, "%s", msg);
	return err ? err : uerr;
}

/* Make the driver's handle, then migrate over a connection of its own. */
static int open_with(ledger **out, const struct ledger_driver *drv, const char *target)
{
	ledger *l = NULL;
	ledger_conn *c = NULL;
	int err = drv->open(&l, target);
	if (err == 0)
		err = drv->conn_open(&c, l);
	if (err == 0)
		err = migrate(c);
	if (c != NULL)
		drv->conn_close(c);
	if (err == 0)
		err = ids_new(l);
	if (err != 0) {
		if (l != NULL)
			drv->close(l);
		return err;
	}
	*out = l;
	return 0;
}

/* ---- opening -------------------------------------------------------------- */

struct backend {
	const char *prefix;               /* URL prefix, removed before open */
	const struct ledger_driver *drv;  /* NULL: known scheme, not built in */
};

#ifdef TROOP_HAVE_PQ
#define PG_DRIVER (&ledger_pg_driver)
#else
#define PG_DRIVER NULL
#endif

/* Longer prefixes first: "sqlite://" before "sqlite:". */
static const struct backend backends[] = {
	{ "sqlite://", &ledger_sqlite_driver },
	{ "sqlite:", &ledger_sqlite_driver },
	{ "postgresql://", PG_DRIVER },
	{ "postgres://", PG_DRIVER },
};

int ledger_open(ledger **out, const char *url)
{
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output handle");
	*out = NULL;
	TRY(check_str("database URL", url, LEDGER_URL_MAX));

	const struct ledger_driver *drv = NULL;
	const char *target = NULL;
	for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
		size_t n = strlen(backends[i].prefix);
		if (strncmp(url, backends[i].prefix, n) != 0)
			continue;
		if (backends[i].drv == NULL)
			return troop_error_set(TROOP_EINVAL,
			    "database URL: the %.*s backend is not built into this program",
			    (int)(n - 3), backends[i].prefix);
		drv = backends[i].drv;
		target = url + n;
		/* SQLAlchemy style: sqlite:///rel.db is relative, sqlite:////abs.db
		 * absolute; after "sqlite://" one more '/' separates the (empty)
		 * host from the path. */
		if (strcmp(backends[i].prefix, "sqlite://") == 0) {
			if (*target != '/')
				return troop_error_set(TROOP_EINVAL,
				    "database URL '%s': expected sqlite:///relative/path or "
				    "sqlite:////absolute/path", url);
			target++;
		}
		break;
	}
	if (drv == NULL) {
		if (strstr(url, "://") != NULL)
			return troop_error_set(TROOP_EINVAL,
			    "database URL '%s': unknown scheme (expected a file path, "
			    "sqlite:PATH or postgres://...)", url);
		drv = &ledger_sqlite_driver;
		target = url;
	}
	if (*target == '\0')
		return troop_error_set(TROOP_EINVAL, "database URL '%s' names no database", url);
	return open_with(out, drv, target);
}

void ledger_close(ledger *l)
{
	if (l != NULL && l->drv != NULL) {
		ledger_batch_stop(l);
		ids_free(l);
		l->drv->close(l);
	}
}

const char *ledger_backend_name(const ledger *l)
{
	return (l != NULL && l->drv != NULL) ? l->drv->name : "none";
}

int ledger_conn_open(ledger_conn **out, ledger *l)
{
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output handle");
	*out = NULL;
	if (l == NULL || l->drv == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: not open");
	return l->drv->conn_open(out, l);
}

void ledger_conn_close(ledger_conn *c)
{
	if (c != NULL && c->drv != NULL)
		c->drv->conn_close(c);
}

int ledger_schema_version(int *out, ledger_conn *c)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the schema version");
	return schema_version(out, c);
}

/* ---- accounts ------------------------------------------------------------- */

struct ensure_arg {
	const char *account;
	int64_t starter, now;
	bool created;
};

static int ensure_txn(ledger_conn *c, void *arg)
{
	struct ensure_arg *e = arg;
	int64_t n = 0;
	e->created = false;
	/* a concurrent creator holds the key: this waits, then does nothing */
	int err = exec_count(&n, c, LS_ACCOUNT_CREATE, ARGS(S(e->account), I(e->starter),
	    I(e->now)), "create account");
	if (err || n != 1)
		return err;
	e->created = true;
	if (e->starter == 0)
		return 0;
	struct txrow t = { .type = "grant", .requester = e->account,
		.credits = e->starter, .now = e->now };
	return insert_txs(NULL, c, &t, 1);
}

int ledger_ensure_account(bool *created, ledger_conn *c, const char *account,
    int64_t starter_credits, int64_t now)
{
	bool dummy;
	TRY(check_conn(c));
	TRY(check_str("account", account, LEDGER_ID_MAX));
	TRY(check_range("starter credits", starter_credits, 0, LEDGER_CREDITS_MAX));
	if (created == NULL)
		created = &dummy;
	*created = false;
	/* fast path without a transaction: nearly every call finds it */
	int r = read_row(c, LS_ACCOUNT_EXISTS, ARGS(S(account)), "read account");
	fin(c);
	if (r != 0)
		return r < 0 ? r : 0;
	struct ensure_arg e = { account, starter_credits, now, false };
	int err = with_txn(c, ensure_txn, &e);
	if (err == 0)
		*created = e.created;
	return err;
}

int ledger_balance_get(ledger_balance *out, ledger_conn *c, const char *account)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the balance");
	TRY(check_str("account", account, LEDGER_ID_MAX));
	int r = read_row(c, LS_BALANCE, ARGS(S(account)), "read balance");
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no account %s", account);
	out->available = col_i64(c, 0);
	out->reserved = col_i64(c, 1);
	out->trial = col_i64(c, 2);
	out->pending = col_i64(c, 3);
	out->reports = col_i64(c, 4);
	out->disputes = col_i64(c, 5);
	fin(c);
	return 0;
}

struct grant_arg {
	const char *account, *reason, *admin_id;
	int64_t credits, now, tx_id;
};

static int grant_txn(ledger_conn *c, void *arg)
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
	return insert_audit_on(c, g->admin_id, "admin_grant", g->account, g->reason, detail,
	    g->now);
}

int ledger_admin_grant(int64_t *tx_id, ledger_conn *c, const char *account,
    int64_t credits, const char *reason, const char *admin_id, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("account", account, LEDGER_ID_MAX));
	TRY(check_range("credits", credits, 1, LEDGER_CREDITS_MAX));
	TRY(check_opt_str("reason", reason, LEDGER_NOTE_MAX));
	TRY(check_str("admin id", admin_id, LEDGER_ID_MAX));
	struct grant_arg g = { account, reason ? reason : "", admin_id, credits, now, 0 };
	int err = with_txn(c, grant_txn, &g);
	if (err == 0 && tx_id != NULL)
		*tx_id = g.tx_id;
	return err;
}

struct invite_arg {
	const char *code_hash, *account, *admin_id;
	int64_t credits, now;
};

static int invite_create_txn(ledger_conn *c, void *arg)
{
	struct invite_arg *a = arg;
	char detail[160];
	int err = exec(c, LS_INVITE_INSERT, ARGS(S(a->code_hash), I(a->credits), S(a->admin_id),
	    I(a->now)), "insert invite");
	if (err == TROOP_ECONFLICT)
		return troop_error_set(err, "this invite code exists already");
	if (err)
		return err;
	snprintf(detail, sizeof detail, "code=%.16s credits=%lld", a->code_hash,
	    (long long)a->credits);
	return insert_audit(c, a->admin_id, "invite_create", detail, a->now);
}

int ledger_invite_create(ledger_conn *c, const char *code_hash, int64_t credits,
    const char *admin_id, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("invite code", code_hash, LEDGER_ID_MAX));
	TRY(check_range("credits", credits, 1, LEDGER_CREDITS_MAX));
	TRY(check_str("admin id", admin_id, LEDGER_ID_MAX));
	struct invite_arg a = { code_hash, NULL, admin_id, credits, now };
	return with_txn(c, invite_create_txn, &a);
}

static int invite_redeem_txn(ledger_conn *c, void *arg)
{
	struct invite_arg *a = arg;
	int r = row(c, LS_INVITE_REDEEM, ARGS(S(a->code_hash), S(a->account), I(a->now)),
	    "redeem invite");
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "this invite code is unknown or was "
		    "redeemed already");
	a->credits = col_i64(c, 0);
	fin(c);
	int err = exec(c, LS_ACCOUNT_TRIAL_ADD, ARGS(S(a->account), I(a->credits), I(a->now)),
	    "grant trial credits");
	if (err)
		return err;
	struct txrow t = { .type = "grant", .requester = a->account, .note = "invite",
		.credits = a->credits, .now = a->now };
	return insert_txs(NULL, c, &t, 1);
}

int ledger_invite_redeem(int64_t *credits, ledger_conn *c, const char *code_hash,
    const char *account, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("invite code", code_hash, LEDGER_ID_MAX));
	TRY(check_str("account", account, LEDGER_ID_MAX));
	struct invite_arg a = { code_hash, account, NULL, 0, now };
	int err = with_txn(c, invite_redeem_txn, &a);
	if (err == 0 && credits != NULL)
		*credits = a.credits;
	return err;
}

/* ---- reservations and settlement -------------------------------------------- */

struct reserve_arg {
	const ledger_reserve_req *req;
	int64_t available;
};

/* Refund `credits` and `trial` credits to an existing account. */
static int account_refund(ledger_conn *c, const char *account, int64_t credits, int64_t trial)
{
	return exec(c, LS_ACCOUNT_REFUND, ARGS(S(account), I(credits), I(trial)),
	    "refund account");
}

static int reserve_txn(ledger_conn *c, void *arg)
{
	struct reserve_arg *ra = arg;
	const ledger_reserve_req *q = ra->req;

	/* check and debit in one statement: it waits for the account row's lock
	 * and then sees the balance the previous holder committed */
	int r = row(c, LS_ACCOUNT_DEBIT, ARGS(S(q->requester), I(q->amount)), "debit account");
	if (r < 0)
		return r;
	if (r == 0) {
		r = row(c, LS_ACCOUNT_AVAILABLE, ARGS(S(q->requester)), "read balance");
		if (r < 0)
			return r;
		ra->available = r == 1 ? col_i64(c, 0) : 0;
		fin(c);
		return troop_error_set(TROOP_ECREDITS, "insufficient credits: available %lld, "
		    "price %lld", (long long)ra->available, (long long)q->amount);
	}
	ra->available = col_i64(c, 0);
	int64_t trial_part = col_i64(c, 1);
	fin(c);
	if (trial_part < 0 || trial_part > q->amount)
		return troop_error_set(TROOP_ERR, "ledger: debit of %s took %lld trial credits of "
		    "%lld", q->requester, (long long)trial_part, (long long)q->amount);

	/* a job id reserved before fails the insert (the primary key), which
	 * rolls the debit back with the transaction (or its savepoint) */
	int err = exec(c, LS_RES_INSERT, ARGS(S(q->job_id), S(q->requester), S(q->node_id),
	    S(q->worker), S(q->model), I(q->amount), I(q->max_seconds), D(q->multiplier),
	    I(q->now), I(q->expires_at), I(trial_part), I(q->report_wanted ? 1 : 0)),
	    "insert reservation");
	if (err == TROOP_ECONFLICT)
		troop_error_set(err, "job id %s is already reserved", q->job_id);
	if (err)
		return err;
	struct txrow t = { .type = "reserve", .job_id = q->job_id, .requester = q->requester,
		.worker = q->worker, .model = q->model, .credits = q->amount, .now = q->now };
	return insert_txs(NULL, c, &t, 1);
}

int ledger_reserve(int64_t *available, ledger_conn *c, const ledger_reserve_req *req)
{
	TRY(check_conn(c));
	if (req == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no reservation request");
	TRY(check_str("job id", req->job_id, LEDGER_ID_MAX));
	TRY(check_str("requester", req->requester, LEDGER_ID_MAX));
	TRY(check_str("node id", req->node_id, LEDGER_ID_MAX));
	TRY(check_str("worker account", req->worker, LEDGER_ID_MAX));
	TRY(check_str("model", req->model, LEDGER_MODEL_MAX));
	TRY(check_range("amount", req->amount, 1, LEDGER_CREDITS_MAX));
	TRY(check_range("max_seconds", req->max_seconds, 0, LEDGER_CREDITS_MAX));
	TRY(check_multiplier(req->multiplier));
	struct reserve_arg ra = { req, 0 };
	int err = batch_txn(c, reserve_txn, &ra);
	if ((err == 0 || err == TROOP_ECREDITS) && available != NULL)
		*available = ra.available;
	return err;
}

static int status_parse(ledger_res_status *out, const char *s);
static int node_read(ledger_node *out, ledger_conn *c, const char *node_id);

/* Read reservation `job_id` (row-locked when `id` is LS_RES_LOCK) into
 * *out; 1 found, 0 not, or a troop_err. */
static int res_read(ledger_reservation *out, ledger_conn *c, enum ledger_stmt id,
    const char *job_id)
{
	int r = id == LS_RES_LOCK ? row(c, id, ARGS(S(job_id)), "read reservation") :
	    read_row(c, id, ARGS(S(job_id)), "read reservation");
	if (r <= 0)
		return r;
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->job_id, sizeof out->job_id, col_text(c, 0));
	ledger_copy_str(out->requester, sizeof out->requester, col_text(c, 1));
	ledger_copy_str(out->node_id, sizeof out->node_id, col_text(c, 2));
	ledger_copy_str(out->worker, sizeof out->worker, col_text(c, 3));
	ledger_copy_str(out->model, sizeof out->model, col_text(c, 4));
	out->amount = col_i64(c, 5);
	out->max_seconds = col_i64(c, 6);
	out->multiplier = c->drv->col_f64(c, 7);
	int err = status_parse(&out->status, col_text(c, 8));
	out->created_at = col_i64(c, 9);
	out->expires_at = col_i64(c, 10);
	out->closed_at = col_i64(c, 11);
	out->charged = col_i64(c, 12);
	out->refunded = col_i64(c, 13);
	out->duration_ms = col_i64(c, 14);
	out->trial_amount = col_i64(c, 15);
	out->report_wanted = col_i64(c, 16) != 0;
	out->claim_ms = col_i64(c, 17);
	out->claim_tokens_in = col_i64(c, 18);
	out->claim_tokens_out = col_i64(c, 19);
	ledger_copy_str(out->claim_outcome, sizeof out->claim_outcome, col_text(c, 20));
	out->claimed_at = col_i64(c, 21);
	out->report_ms = col_i64(c, 22);
	out->report_tokens = col_i64(c, 23);
	ledger_copy_str(out->report_outcome, sizeof out->report_outcome, col_text(c, 24));
	out->reported_at = col_i64(c, 25);
	out->disputed = col_i64(c, 26) != 0;
	ledger_copy_str(out->claim_digest, sizeof out->claim_digest, col_text(c, 27));
	ledger_copy_str(out->report_digest, sizeof out->report_digest, col_text(c, 28));
	out->report_max_tps = c->drv->col_f64(c, 29);
	out->client_disputed = col_i64(c, 30) != 0;
	out->node_suspended = col_i64(c, 31);
	fin(c);
	return err ? err : 1;
}

/* The settlement decision, once the reservation of q->job_id has been read
 * and locked (`res`, or NULL when there is none): checks the signer and the
 * reservation's state and fills the result's names.  Returns a troop_err
 * to fail; 1 when the job was settled before (*out holds the stored
 * result); 0 when *charge must now go to the worker and *refund back to
 * the requester. */
static int settle_decide(ledger_settle_result *out, int64_t *charge, int64_t *refund,
    const ledger_settle_req *q, const ledger_reservation *res)
{
	if (res == NULL)
		return troop_error_set(TROOP_ENOTFOUND, "no reservation for job %s", q->job_id);
	/* checked first, also for settled jobs: only the job's node learns
	 * anything about it */
	if (strcmp(res->node_id, q->signer_node_id) != 0)
		return troop_error_set(TROOP_EFORBIDDEN, "receipt for job %s is not signed by "
		    "the node that was given the job", q->job_id);
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->requester, sizeof out->requester, res->requester);
	ledger_copy_str(out->worker, sizeof out->worker, res->worker);
	ledger_copy_str(out->model, sizeof out->model, res->model);
	if (res->status == LEDGER_RES_SETTLED) {
		out->charged = res->charged;
		out->refunded = res->refunded;
		out->already = true;
		return 1;
	}
	if (res->status == LEDGER_RES_RELEASED)
		return troop_error_set(TROOP_EGONE, "reservation for job %s expired and was "
		    "released", q->job_id);
	if (res->expires_at < q->now - q->grace_s)
		return troop_error_set(TROOP_EGONE, "reservation for job %s expired at %lld",
		    q->job_id, (long long)res->expires_at);
	/* physics: a job cannot run longer than it has existed, nor past the
	 * budget its node enforces */
	int64_t since_ms = (q->now - res->created_at) * 1000;
	if (q->duration_ms > since_ms + LEDGER_CLOCK_SLACK_MS)
		return troop_error_set(TROOP_EINVAL, "implausible receipt for job %s: duration "
		    "%lld ms is longer than the %lld s since it was authorized", q->job_id,
		    (long long)q->duration_ms, (long long)(q->now - res->created_at));
	if (res->max_seconds > 0 &&
	    q->duration_ms > res->max_seconds * 1000 + LEDGER_CLOCK_SLACK_MS)
		return troop_error_set(TROOP_EINVAL, "implausible receipt for job %s: duration "
		    "%lld ms is longer than its max_seconds %lld", q->job_id,
		    (long long)q->duration_ms, (long long)res->max_seconds);
	*charge = ledger_charge(q->duration_ms, res->multiplier, res->amount);
	*refund = res->amount - *charge;
	return 0;
}

struct settle_arg {
	const ledger_settle_req *req;
	ledger_settle_result *out;
};

/* The node's facts after its job was counted (LS_NODE_JOBS). */
struct node_facts {
	int64_t first_seen, payers, audit_failed, pending;
};

static bool established(const struct node_facts *f, const ledger_policy *p, int64_t now)
{
	return f->audit_failed == 0 && now - f->first_seen >= p->establish_age_s &&
	    f->payers >= p->establish_payers;
}

/* What one settlement pays: the duration believed and the job's facts. */
struct settle_what {
	int64_t duration_ms, tokens_in, tokens_out;
	const char *outcome;
	bool disputed;           /* the worker claimed more than its client saw */
	int64_t claimed_ms;      /* when disputed: the worker's claim */
	bool client_disputed;    /* the client under-reported (ledger_report) */
	int64_t reported_ms;     /* when client_disputed: the client's report */
	int64_t tokens_seen;     /* ... and the tokens it received */
	double max_tps;          /* ... and the rate they were checked against */
};

/* Settle the open reservation `res` (locked by this transaction) for w:
 * charge, refund, pending earnings, payers, release of pending earnings,
 * the log rows.  Fills o's amounts. */
static int settle_apply(ledger_settle_result *o, ledger_conn *c, const ledger_reservation *res,
    const struct settle_what *w, int64_t now)
{
	int64_t n = 0;
	/* a suspended node earns nothing: its requester gets everything back */
	int64_t charge = res->node_suspended ? 0 :
	    ledger_charge(w->duration_ms, res->multiplier, res->amount);
	int64_t refund = res->amount - charge;
	const char *outcome = (w->outcome && w->outcome[0]) ? w->outcome : "ok";

	/* the charge takes the ordinary part first; each part's remainder goes
	 * back where it came from */
	int64_t ordinary = res->amount - res->trial_amount;
	int64_t charge_ord = charge < ordinary ? charge : ordinary;
	int64_t charge_trial = charge - charge_ord;
	int64_t refund_ord = ordinary - charge_ord, refund_trial = res->trial_amount - charge_trial;

	int err = exec_count(&n, c, LS_RES_SETTLE, ARGS(S(res->job_id), I(now), I(charge),
	    I(refund), I(w->duration_ms), I(w->tokens_in), I(w->tokens_out), S(outcome),
	    I(w->disputed ? 1 : 0)), "settle reservation");
	if (err)
		return err;
	if (n != 1)
		return troop_error_set(TROOP_ECONFLICT, "reservation for job %s changed "
		    "during settlement", res->job_id);

	/* Both accounts in id order (the lock order).  The worker account is
	 * created if needed, with no starter grant, and always locked (also to
	 * add 0): released earnings are credited to it after the node row. */
	bool requester_first = refund > 0 && strcmp(res->requester, res->worker) < 0;
	if (requester_first &&
	    (err = account_refund(c, res->requester, refund_ord, refund_trial)) != 0)
		return err;
	if ((err = account_add(c, res->worker, charge_ord, now)) != 0)
		return err;
	if (!requester_first && refund > 0 &&
	    (err = account_refund(c, res->requester, refund_ord, refund_trial)) != 0)
		return err;

	/* pending earnings become spendable later, by ledger_release_pending:
	 * reading the node's facts back here would cost every settlement */
	bool ok = strcmp(outcome, "ok") == 0;
	if ((err = exec_count(&n, c, LS_NODE_JOBS, ARGS(S(res->node_id), I(ok ? 1 : 0),
	    I(ok ? 0 : 1), I(charge_trial), I(w->disputed ? 1 : 0)), "count node job")) != 0)
		return err;
	if (n == 0 && (err = exec(c, LS_NODE_JOBS_CREATE, ARGS(S(res->node_id), I(ok ? 1 : 0),
	    I(ok ? 0 : 1), I(charge_trial), S(res->worker), I(now), I(w->disputed ? 1 : 0)),
	    "count node job")) != 0)  /* a node the ledger has not seen */
		return err;

	/* a job paid wholly with ordinary credits by another account
	 * countersigns the node */
	if (res->trial_amount == 0 && charge > 0 && strcmp(res->requester, res->worker) != 0) {
		if ((err = exec_count(&n, c, LS_NODE_PAYER_INSERT, ARGS(S(res->node_id),
		    S(res->requester), I(now)), "record payer")) != 0)
			return err;
		if (n == 1 && (err = exec(c, LS_NODE_PAYER_COUNT, ARGS(S(res->node_id)),
		    "count payer")) != 0)
			return err;
	}

	char note[LEDGER_NOTE_MAX + 1] = "", part[64] = "";
	if (charge_trial > 0)
		snprintf(part, sizeof part, "pending=%lld", (long long)charge_trial);
	if (w->client_disputed)
		snprintf(note, sizeof note, "%s%sclient dispute: reported %lld ms for %lld tokens "
		    "(at most %.1f tokens/s); worker paid its claim", part, part[0] ? " " : "",
		    (long long)w->reported_ms, (long long)w->tokens_seen, w->max_tps);
	else if (w->disputed)
		snprintf(note, sizeof note, "%s%sdisputed: worker claimed %lld ms, client "
		    "observed %lld ms", part, part[0] ? " " : "", (long long)w->claimed_ms,
		    (long long)w->duration_ms);
	else if (res->node_suspended)
		snprintf(note, sizeof note, "node suspended: settled at 0");
	else
		snprintf(note, sizeof note, "%s", part);
	struct txrow t[2] = {
		{ .type = "settle", .job_id = res->job_id, .requester = res->requester,
		  .worker = res->worker, .model = res->model, .note = note, .credits = charge,
		  .duration_ms = w->duration_ms, .now = now },
	};
	int nt = 1;
	if (refund > 0)
		t[nt++] = (struct txrow){ .type = "release", .job_id = res->job_id,
			.requester = res->requester, .worker = res->worker, .model = res->model,
			.credits = refund, .now = now };
	if ((err = insert_txs(NULL, c, t, nt)) != 0)
		return err;
	if (w->disputed) {
		char detail[LEDGER_ID_MAX * 3 + 128];
		snprintf(detail, sizeof detail, "job=%s node=%s requester=%s claimed_ms=%lld "
		    "observed_ms=%lld", res->job_id, res->node_id, res->requester,
		    (long long)w->claimed_ms, (long long)w->duration_ms);
		if ((err = insert_audit_on(c, res->node_id, "dispute", res->node_id, "", detail,
		    now)) != 0)
			return err;
	}
	if (w->client_disputed) {
		char detail[LEDGER_ID_MAX * 3 + 160];
		snprintf(detail, sizeof detail, "job=%s node=%s requester=%s reported_ms=%lld "
		    "tokens=%lld max_tps=%.1f claimed_ms=%lld", res->job_id, res->node_id,
		    res->requester, (long long)w->reported_ms, (long long)w->tokens_seen,
		    w->max_tps, (long long)w->duration_ms);
		if ((err = exec(c, LS_ACCOUNT_REPORTED, ARGS(S(res->requester), I(0), I(1)),
		    "count client dispute")) != 0 ||
		    (err = exec(c, LS_RES_CLIENT_DISPUTE, ARGS(S(res->job_id)),
		    "mark client dispute")) != 0 ||
		    (err = insert_audit_on(c, res->requester, "client_dispute", res->requester, "",
		    detail, now)) != 0)
			return err;
	}
	o->client_disputed = w->client_disputed;
	o->tokens_out = w->tokens_out;
	o->charged = charge;
	o->refunded = refund;
	o->pending = charge_trial;
	o->disputed = w->disputed;
	o->already = false;
	o->claimed = false;
	return 0;
}

int64_t ledger_witnessed_ms(int64_t worker_ms, int64_t client_ms, bool *disputed)
{
	bool dummy;
	if (disputed == NULL)
		disputed = &dummy;
	*disputed = false;
	if (worker_ms < 0)
		worker_ms = 0;
	if (client_ms < 0)
		return worker_ms;
	int64_t allowed = client_ms + LEDGER_REPORT_TOLERANCE_MS +
	    client_ms / (100 / LEDGER_REPORT_TOLERANCE_PCT);
	if (worker_ms <= allowed)
		return worker_ms;
	*disputed = true;
	return client_ms;
}

/* Settle `res` from its two witnesses: the worker's claim and the
 * client's report, both stored. */
static int settle_both(ledger_settle_result *o, ledger_conn *c, const ledger_reservation *res,
    int64_t now)
{
	struct settle_what w = { .tokens_in = res->claim_tokens_in,
		.tokens_out = res->claim_tokens_out, .outcome = res->claim_outcome,
		.claimed_ms = res->claim_ms };
	/* the worker's tokens, already capped on arrival to what its duration
	 * makes possible: a node faster than its class does not make its
	 * client a liar */
	int64_t tokens = res->claim_tokens_out;
	bool disagree = false;

	(void)ledger_witnessed_ms(res->claim_ms, res->report_ms, &disagree);
	/* under-reporting: the client got what the worker sent (equal
	 * digests), and its duration, shorter than the worker's beyond the
	 * tolerance, is shorter than those tokens need */
	if (disagree && res->claim_digest[0] &&
	    strcmp(res->claim_digest, res->report_digest) == 0 &&
	    res->report_max_tps > 0 && (double)tokens > res->report_max_tps *
	    (double)res->report_ms / 1000.0 + LEDGER_UNDERREPORT_SLACK) {
		w.duration_ms = res->claim_ms;
		w.client_disputed = true;
		w.reported_ms = res->report_ms;
		w.tokens_seen = tokens;
		w.max_tps = res->report_max_tps;
		return settle_apply(o, c, res, &w, now);
	}
	w.duration_ms = ledger_witnessed_ms(res->claim_ms, res->report_ms, &w.disputed);
	return settle_apply(o, c, res, &w, now);
}

static int settle_txn(ledger_conn *c, void *arg)
{
	struct settle_arg *sa = arg;
	const ledger_settle_req *q = sa->req;
	ledger_settle_result *o = sa->out;
	ledger_reservation res;

	int r = res_read(&res, c, LS_RES_LOCK, q->job_id);
	if (r < 0)
		return r;
	int64_t charge = 0, refund = 0;
	int d = settle_decide(o, &charge, &refund, q, r == 0 ? NULL : &res);
	if (d != 0)
		return d < 0 ? d : 0;  /* an error, or settled before */
	const char *outcome = (q->outcome && q->outcome[0]) ? q->outcome : "ok";
	if (res.report_wanted && res.claim_ms >= 0) {
		/* the first claim stands; the report or the deadline settles it */
		o->claimed = true;
		o->already = true;
		o->expected = ledger_charge(res.claim_ms, res.multiplier, res.amount);
		return 0;
	}
	if (res.report_wanted) {
		/* keep the claim: the client's report settles it, or the deadline */
		res.claim_ms = q->duration_ms;
		res.claim_tokens_in = q->tokens_in;
		res.claim_tokens_out = q->tokens_out;
		ledger_copy_str(res.claim_outcome, sizeof res.claim_outcome, outcome);
		ledger_copy_str(res.claim_digest, sizeof res.claim_digest,
		    q->digest ? q->digest : "");
		/* stored also when the report is in: both witnesses stay on record */
		int64_t n = 0;
		int err = exec_count(&n, c, LS_RES_CLAIM, ARGS(S(q->job_id), I(q->duration_ms),
		    I(q->tokens_in), I(q->tokens_out), S(outcome), I(q->now),
		    S(q->digest ? q->digest : "")), "store claim");
		if (err == 0 && n != 1)
			err = troop_error_set(TROOP_ECONFLICT, "reservation for job %s changed "
			    "during settlement", q->job_id);
		if (err == 0 && res.report_ms >= 0)
			return settle_both(o, c, &res, q->now);
		if (err == 0) {
			o->claimed = true;
			o->expected = ledger_charge(q->duration_ms, res.multiplier, res.amount);
		}
		return err;
	}
	struct settle_what w = { .duration_ms = q->duration_ms, .tokens_in = q->tokens_in,
		.tokens_out = q->tokens_out, .outcome = outcome };
	return settle_apply(o, c, &res, &w, q->now);
}

int ledger_settle(ledger_settle_result *out, ledger_conn *c, const ledger_settle_req *req)
{
	TRY(check_conn(c));
	if (out == NULL || req == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no settlement request or output");
	TRY(check_str("job id", req->job_id, LEDGER_ID_MAX));
	TRY(check_str("signer node id", req->signer_node_id, LEDGER_ID_MAX));
	TRY(check_range("duration_ms", req->duration_ms, 0, INT64_MAX / 2));
	TRY(check_range("tokens_in", req->tokens_in, 0, INT64_MAX / 2));
	TRY(check_range("tokens_out", req->tokens_out, 0, INT64_MAX / 2));
	TRY(check_opt_str("outcome", req->outcome, LEDGER_OUTCOME_MAX));
	TRY(check_opt_str("digest", req->digest, LEDGER_DIGEST_MAX));
	TRY(check_range("grace", req->grace_s, 0, INT64_MAX / 4));
	memset(out, 0, sizeof *out);
	struct settle_arg sa = { req, out };
	return batch_txn(c, settle_txn, &sa);
}

struct report_arg {
	const ledger_report_req *req;
	ledger_settle_result *out;
};

static int report_txn(ledger_conn *c, void *arg)
{
	struct report_arg *ra = arg;
	const ledger_report_req *q = ra->req;
	ledger_settle_result *o = ra->out;
	ledger_reservation res;
	int64_t n = 0;

	int r = res_read(&res, c, LS_RES_LOCK, q->job_id);
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no reservation for job %s", q->job_id);
	if (strcmp(res.requester, q->requester) != 0)
		return troop_error_set(TROOP_EFORBIDDEN, "the delivery report for job %s is not "
		    "signed by the account that authorized it", q->job_id);
	memset(o, 0, sizeof *o);
	ledger_copy_str(o->requester, sizeof o->requester, res.requester);
	ledger_copy_str(o->worker, sizeof o->worker, res.worker);
	ledger_copy_str(o->model, sizeof o->model, res.model);
	if (res.status == LEDGER_RES_RELEASED)
		return troop_error_set(TROOP_EGONE, "reservation for job %s expired and was "
		    "released", q->job_id);
	if (res.report_ms >= 0 || res.status == LEDGER_RES_SETTLED) {
		/* accepted once; a report after settlement changes nothing */
		o->already = res.status == LEDGER_RES_SETTLED;
		o->claimed = !o->already;
		o->charged = res.charged;
		o->refunded = res.refunded;
		o->disputed = res.disputed;
		return 0;
	}
	double max_tps = q->max_tps > 0 ? q->max_tps : 0;
	int err = exec_count(&n, c, LS_RES_REPORT, ARGS(S(q->job_id), I(q->duration_ms),
	    I(q->tokens), I(q->bytes), S(q->outcome ? q->outcome : ""),
	    S(q->digest ? q->digest : ""), I(q->now), D(max_tps)), "store delivery report");
	if (err == 0 && n != 1)
		err = troop_error_set(TROOP_ECONFLICT, "reservation for job %s changed", q->job_id);
	if (err == 0)
		err = exec(c, LS_ACCOUNT_REPORTED, ARGS(S(res.requester), I(1), I(0)),
		    "count report");
	/* the node answered 401 to its own ticket: against the node */
	if (err == 0 && q->outcome && strcmp(q->outcome, "refused") == 0)
		err = exec(c, LS_NODE_REFUSED, ARGS(S(res.node_id)), "count refusal");
	if (err)
		return err;
	res.report_ms = q->duration_ms;
	res.report_tokens = q->tokens;
	res.report_max_tps = max_tps;
	ledger_copy_str(res.report_digest, sizeof res.report_digest, q->digest ? q->digest : "");
	if (res.status == LEDGER_RES_OPEN && res.claim_ms >= 0)
		return settle_both(o, c, &res, q->now);
	o->claimed = true;  /* waits for the worker's receipt */
	return 0;
}

int ledger_report(ledger_settle_result *out, ledger_conn *c, const ledger_report_req *req)
{
	TRY(check_conn(c));
	if (out == NULL || req == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no report or output");
	TRY(check_str("job id", req->job_id, LEDGER_ID_MAX));
	TRY(check_str("requester", req->requester, LEDGER_ID_MAX));
	TRY(check_range("duration_ms", req->duration_ms, 0, INT64_MAX / 4));
	TRY(check_range("bytes", req->bytes, 0, INT64_MAX / 2));
	TRY(check_range("tokens", req->tokens, 0, INT64_MAX / 2));
	TRY(check_opt_str("outcome", req->outcome, LEDGER_OUTCOME_MAX));
	TRY(check_opt_str("digest", req->digest, LEDGER_DIGEST_MAX));
	memset(out, 0, sizeof *out);
	struct report_arg ra = { req, out };
	return with_txn(c, report_txn, &ra);
}

struct claim_arg {
	const char *job_id;
	int64_t cutoff, now;
	bool settled;
};

static int claim_settle_txn(ledger_conn *c, void *arg)
{
	struct claim_arg *ca = arg;
	ledger_reservation res;
	ledger_settle_result o;

	ca->settled = false;
	int r = res_read(&res, c, LS_RES_LOCK, ca->job_id);
	if (r <= 0)
		return r;
	/* settled or reported meanwhile: nothing to do */
	if (res.status != LEDGER_RES_OPEN || res.claim_ms < 0 || res.claimed_at >= ca->cutoff)
		return 0;
	struct settle_what w = { .duration_ms = res.claim_ms, .tokens_in = res.claim_tokens_in,
		.tokens_out = res.claim_tokens_out, .outcome = res.claim_outcome };
	memset(&o, 0, sizeof o);
	int err = settle_apply(&o, c, &res, &w, ca->now);
	if (err == 0)
		ca->settled = true;
	return err;
}

int ledger_settle_claims(int64_t *count, ledger_conn *c, int64_t now, int64_t wait_s)
{
	int64_t dummy;
	TRY(check_conn(c));
	TRY(check_range("wait", wait_s, 0, INT64_MAX / 4));
	if (count == NULL)
		count = &dummy;
	*count = 0;
	struct claim_arg ca = { NULL, now - wait_s, now, false };
	char (*ids)[LEDGER_ID_MAX + 1] = malloc(RELEASE_BATCH * sizeof *ids);
	if (ids == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	int err = 0;
	for (;;) {
		int k = 0;
		int r = read_row(c, LS_RES_CLAIMS_DUE, ARGS(I(ca.cutoff), I(RELEASE_BATCH)),
		    "find due claims");
		while (r == 1) {
			ledger_copy_str(ids[k++], sizeof ids[0], col_text(c, 0));
			r = k < RELEASE_BATCH ? c->drv->next(c) : 0;
		}
		fin(c);
		if (r < 0) {
			err = r;
			break;
		}
		int64_t done = 0;
		for (int i = 0; i < k && err == 0; i++) {
			ca.job_id = ids[i];
			if ((err = with_txn(c, claim_settle_txn, &ca)) == 0 && ca.settled)
				done++;
		}
		*count += done;
		if (err != 0 || k < RELEASE_BATCH || done == 0)
			break;
	}
	free(ids);
	if (*count > 0)
		log_info("ledger_claims_settled", "settled=%lld", (long long)*count);
	return err;
}

struct pending_arg {
	const char *node_id, *owner;
	const ledger_policy *pol;
	int64_t now, released;
};

/* Release node_id's pending earnings to its owner, up to the owner's daily
 * cap: the owner's account row (created if missing), then the node row. */
static int pending_txn(ledger_conn *c, void *arg)
{
	struct pending_arg *pa = arg;
	char note[LEDGER_ID_MAX + 8];
	int64_t n = 0;

	pa->released = 0;
	int err = account_add(c, pa->owner, 0, pa->now);
	if (err)
		return err;
	int r = row(c, LS_ACCOUNT_EARNED, ARGS(S(pa->owner)), "read earnings");
	if (r <= 0)
		return r < 0 ? r : troop_error_set(TROOP_ERR, "ledger: account %s vanished",
		    pa->owner);
	int64_t day = pa->now / 86400, used = col_i64(c, 0) == day ? col_i64(c, 1) : 0;
	fin(c);
	ledger_node nd;
	if ((r = node_read(&nd, c, pa->node_id)) <= 0)
		return r;
	struct node_facts f = { nd.first_seen, nd.payers, nd.audit_failed, nd.pending };
	if (strcmp(nd.owner, pa->owner) != 0 || !established(&f, pa->pol, pa->now))
		return 0;  /* changed since it was listed */
	int64_t m = pa->pol->trial_daily_cap - used;
	if (m > nd.pending)
		m = nd.pending;
	if (m <= 0)
		return 0;
	if ((err = exec_count(&n, c, LS_NODE_MATURE, ARGS(S(pa->node_id), I(m), S(pa->owner)),
	    "release pending")) != 0)
		return err;
	if (n != 1)
		return 0;  /* forfeited or released meanwhile */
	if ((err = exec(c, LS_ACCOUNT_MATURE, ARGS(S(pa->owner), I(m), I(day), I(used + m)),
	    "credit released earnings")) != 0)
		return err;
	snprintf(note, sizeof note, "node=%s", pa->node_id);
	struct txrow t = { .type = "mature", .requester = "", .worker = pa->owner,
		.note = note, .credits = m, .now = pa->now };
	if ((err = insert_txs(NULL, c, &t, 1)) == 0)
		pa->released = m;
	return err;
}

int ledger_release_pending(int64_t *released, ledger_conn *c, int64_t now,
    const ledger_policy *policy)
{
	int64_t dummy;
	const ledger_policy *pol = policy ? policy : &ledger_policy_default;
	TRY(check_conn(c));
	TRY(check_range("establish age", pol->establish_age_s, 0, INT64_MAX / 4));
	TRY(check_range("establish payers", pol->establish_payers, 0, INT64_MAX));
	TRY(check_range("trial daily cap", pol->trial_daily_cap, 0, LEDGER_CREDITS_MAX));
	if (released == NULL)
		released = &dummy;
	*released = 0;
	struct pnode {
		char id[LEDGER_ID_MAX + 1], owner[LEDGER_ID_MAX + 1];
	} *rows = malloc(RELEASE_BATCH * sizeof *rows);
	if (rows == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	char after[LEDGER_ID_MAX + 1] = "";
	int err = 0;
	for (;;) {
		int k = 0;
		int r = read_row(c, LS_NODES_MATURABLE, ARGS(I(now - pol->establish_age_s),
		    I(pol->establish_payers), S(after), I(RELEASE_BATCH)), "find pending earnings");
		while (r == 1) {
			ledger_copy_str(rows[k].id, sizeof rows[k].id, col_text(c, 0));
			ledger_copy_str(rows[k].owner, sizeof rows[k].owner, col_text(c, 1));
			k++;
			r = k < RELEASE_BATCH ? c->drv->next(c) : 0;
		}
		fin(c);
		if (r < 0) {
			err = r;
			break;
		}
		for (int i = 0; i < k && err == 0; i++) {
			struct pending_arg pa = { rows[i].id, rows[i].owner, pol, now, 0 };
			if ((err = with_txn(c, pending_txn, &pa)) == 0)
				*released += pa.released;
		}
		if (err != 0 || k < RELEASE_BATCH)
			break;
		ledger_copy_str(after, sizeof after, rows[k - 1].id);
	}
	free(rows);
	if (*released > 0)
		log_info("ledger_pending_released", "credits=%lld", (long long)*released);
	return err;
}

struct expired_row {
	char job_id[LEDGER_ID_MAX + 1];
	char requester[LEDGER_ID_MAX + 1];
	char worker[LEDGER_ID_MAX + 1];
	char model[LEDGER_MODEL_MAX + 1];
	int64_t amount, trial_amount;
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

static int release_txn(ledger_conn *c, void *arg)
{
	struct release_arg *ra = arg;
	ra->n = 0;
	/* Read the batch first (rows another sweeper holds are skipped, not
	 * waited for); update after the scan is finished. */
	int r = row(c, LS_RES_EXPIRED, ARGS(I(ra->cutoff), I(RELEASE_BATCH)),
	    "find expired reservations");
	while (r == 1) {
		struct expired_row *e = &ra->rows[ra->n++];
		ledger_copy_str(e->job_id, sizeof e->job_id, col_text(c, 0));
		ledger_copy_str(e->requester, sizeof e->requester, col_text(c, 1));
		ledger_copy_str(e->worker, sizeof e->worker, col_text(c, 2));
		ledger_copy_str(e->model, sizeof e->model, col_text(c, 3));
		e->amount = col_i64(c, 4);
		e->trial_amount = col_i64(c, 5);
		r = ra->n < RELEASE_BATCH ? c->drv->next(c) : 0;
	}
	fin(c);
	if (r < 0)
		return r;
	if (ra->n == 0)
		return 0;

	/* refunds in account order (the lock order), then the log rows */
	qsort(ra->rows, (size_t)ra->n, sizeof *ra->rows, cmp_requester);
	for (int i = 0; i < ra->n; i++) {
		struct expired_row *e = &ra->rows[i];
		int64_t n = 0;
		int err = exec_count(&n, c, LS_RES_RELEASE, ARGS(S(e->job_id), I(ra->now)),
		    "release reservation");
		if (err)
			return err;
		if (n != 1)
			return troop_error_set(TROOP_ECONFLICT, "reservation for job %s changed "
			    "during release", e->job_id);
		if ((err = account_refund(c, e->requester, e->amount - e->trial_amount,
		    e->trial_amount)) != 0)
			return err;
		ra->tx[i] = (struct txrow){ .type = "release", .job_id = e->job_id,
			.requester = e->requester, .worker = e->worker, .model = e->model,
			.credits = e->amount, .now = ra->now };
	}
	return insert_txs(NULL, c, ra->tx, ra->n);
}

int ledger_release_expired(int64_t *count, ledger_conn *c, int64_t now, int64_t grace_s)
{
	int64_t dummy;
	TRY(check_conn(c));
	TRY(check_range("grace", grace_s, 0, INT64_MAX / 4));
	if (count == NULL)
		count = &dummy;
	*count = 0;
	struct release_arg ra = { now - grace_s, now, NULL, NULL, 0 };
	ra.rows = malloc(RELEASE_BATCH * sizeof *ra.rows);
	ra.tx = malloc(RELEASE_BATCH * sizeof *ra.tx);
	int err = 0;
	if (ra.rows == NULL || ra.tx == NULL)
		err = troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	while (err == 0) {
		if ((err = with_txn(c, release_txn, &ra)) != 0)
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

int ledger_reservation_get(ledger_reservation *out, ledger_conn *c, const char *job_id)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the reservation");
	TRY(check_str("job id", job_id, LEDGER_ID_MAX));
	memset(out, 0, sizeof *out);
	int r = res_read(out, c, LS_RES_GET, job_id);
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no reservation for job %s", job_id);
	return 0;
}

int64_t ledger_charge(int64_t duration_ms, double multiplier, int64_t reserved)
{
	if (reserved <= 0)
		return 0;
	if (duration_ms <= 0 || !isfinite(multiplier) || multiplier <= 0.0)
		return 0;
	if (multiplier > LEDGER_MULTIPLIER_MAX)
		multiplier = LEDGER_MULTIPLIER_MAX;
	/* Multiplier in millionths: 2.5 -> 2500000, exact for the values the
	 * proof of hardware produces to 6 decimals. */
	int64_t micro = llround(multiplier * 1e6);
	if (micro <= 0)
		micro = 1;
	/* ceil(duration_ms * micro / 1e9) without overflow: split duration. */
	const int64_t den = 1000000000;
	if (duration_ms > INT64_MAX / micro)
		return reserved;  /* astronomically long: the cap applies */
	int64_t prod = duration_ms * micro;
	int64_t charge = prod / den + (prod % den != 0);
	return charge < reserved ? charge : reserved;
}

/* ---- transaction log ------------------------------------------------------- */

int ledger_transactions(ledger_tx **out, size_t *n, int64_t *next, ledger_conn *c,
    const char *account, int limit, int64_t before_id)
{
	TRY(check_conn(c));
	if (out == NULL || n == NULL || next == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for transactions");
	*out = NULL;
	*n = 0;
	*next = 0;
	TRY(check_str("account", account, LEDGER_ID_MAX));
	TRY(check_range("limit", limit, 1, LEDGER_TX_LIMIT_MAX));
	TRY(check_range("before", before_id, 0, INT64_MAX));
	/* one row more than asked, to know whether there is a next page */
	ledger_tx *rows = calloc((size_t)limit + 1, sizeof *rows);
	if (rows == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	size_t k = 0;
	int r = read_row(c, LS_TX_PAGE, ARGS(S(account), I(before_id == 0 ? INT64_MAX : before_id),
	    I((int64_t)limit + 1)), "read transactions");
	while (r == 1) {
		ledger_tx *t = &rows[k++];
		t->id = col_i64(c, 0);
		ledger_copy_str(t->type, sizeof t->type, col_text(c, 1));
		ledger_copy_str(t->job_id, sizeof t->job_id, col_text(c, 2));
		ledger_copy_str(t->requester, sizeof t->requester, col_text(c, 3));
		ledger_copy_str(t->worker, sizeof t->worker, col_text(c, 4));
		t->credits = col_i64(c, 5);
		t->duration_ms = col_i64(c, 6);
		ledger_copy_str(t->model, sizeof t->model, col_text(c, 7));
		ledger_copy_str(t->note, sizeof t->note, col_text(c, 8));
		t->timestamp = col_i64(c, 9);
		r = k < (size_t)limit + 1 ? c->drv->next(c) : 0;
	}
	fin(c);
	if (r < 0) {
		free(rows);
		return r;
	}
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

int ledger_totals_get(ledger_totals *out, ledger_conn *c)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for totals");
	memset(out, 0, sizeof *out);
	int r = read_row(c, LS_TOTALS, NOARGS, "read totals");
	if (r < 0)
		return r;
	if (r == 1) {
		out->granted = col_i64(c, 0);
		out->balances = col_i64(c, 1);
		out->accounts = col_i64(c, 2);
		out->reserved = col_i64(c, 3);
		out->open_reservations = col_i64(c, 4);
		out->trial = col_i64(c, 5);
		out->pending = col_i64(c, 6);
		out->forfeited = col_i64(c, 7);
	}
	fin(c);
	return 0;
}

int ledger_top_earners(ledger_earner **out, size_t *n, ledger_conn *c, int limit)
{
	TRY(check_conn(c));
	if (out == NULL || n == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for earners");
	*out = NULL;
	*n = 0;
	TRY(check_range("limit", limit, 1, LEDGER_EARNERS_MAX));
	ledger_earner *rows = calloc((size_t)limit, sizeof *rows);
	if (rows == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	size_t k = 0;
	int r = read_row(c, LS_TOP_EARNERS, ARGS(I(limit)), "read earners");
	while (r == 1) {
		ledger_earner *e = &rows[k++];
		ledger_copy_str(e->account, sizeof e->account, col_text(c, 0));
		e->earned = col_i64(c, 1);
		e->jobs = col_i64(c, 2);
		ledger_copy_str(e->name, sizeof e->name, col_text(c, 3));
		r = k < (size_t)limit ? c->drv->next(c) : 0;
	}
	fin(c);
	if (r < 0) {
		free(rows);
		return r;
	}
	if (k == 0) {
		free(rows);
		rows = NULL;
	}
	*out = rows;
	*n = k;
	return 0;
}

bool ledger_totals_balanced(const ledger_totals *t)
{
	return t != NULL && t->balances + t->trial + t->reserved + t->pending ==
	    t->granted - t->forfeited && t->balances >= 0 && t->trial >= 0 &&
	    t->reserved >= 0 && t->pending >= 0;
}

/* ---- nodes ------------------------------------------------------------------ */

/* Reputation from job counters: (ok + 1) / (ok + failed + 2). */
static double reputation(int64_t jobs_ok, int64_t jobs_failed)
{
	if (jobs_ok < 0)
		jobs_ok = 0;
	if (jobs_failed < 0)
		jobs_failed = 0;
	return ((double)jobs_ok + 1.0) / ((double)jobs_ok + (double)jobs_failed + 2.0);
}

/* The current row's LS_NODE_GET columns into *out (node_id not set). */
static void node_cols(ledger_node *out, ledger_conn *c)
{
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->owner, sizeof out->owner, col_text(c, 0));
	ledger_copy_str(out->name, sizeof out->name, col_text(c, 1));
	out->multiplier = c->drv->col_f64(c, 2);
	out->verified = col_i64(c, 3) != 0;
	out->verified_at = col_i64(c, 4);
	out->jobs_ok = col_i64(c, 5);
	out->jobs_failed = col_i64(c, 6);
	out->first_seen = col_i64(c, 7);
	out->last_seen = col_i64(c, 8);
	out->pending = col_i64(c, 9);
	out->payers = col_i64(c, 10);
	out->audit_failed = col_i64(c, 11);
	ledger_copy_str(out->hw_class, sizeof out->hw_class, col_text(c, 12));
	out->disputes = col_i64(c, 13);
	out->refusals = col_i64(c, 14);
	out->suspended = col_i64(c, 15);
	ledger_copy_str(out->suspend_reason, sizeof out->suspend_reason, col_text(c, 16));
	out->audits_passed = col_i64(c, 17);
	out->audits_failed = col_i64(c, 18);
	out->suspect = col_i64(c, 19);
	out->reputation = reputation(out->jobs_ok, out->jobs_failed);
}

/* 1 found (row in *out), 0 not, or a troop_err. */
static int node_read(ledger_node *out, ledger_conn *c, const char *node_id)
{
	int r = read_row(c, LS_NODE_GET, ARGS(S(node_id)), "read node");
	if (r <= 0)
		return r;
	node_cols(out, c);
	ledger_copy_str(out->node_id, sizeof out->node_id, node_id);
	fin(c);
	return 1;
}

int64_t ledger_node_touch_interval(const char *node_id)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; node_id && *node_id; node_id++)
		h = (h ^ (unsigned char)*node_id) * 0x100000001b3ull;
	/* the high bits: FNV-1a's low bits mix poorly for short keys */
	return LEDGER_NODE_TOUCH_S + (int64_t)((h >> 32) % LEDGER_NODE_TOUCH_S);
}

/* Nothing to write: same owner and name, last_seen fresh. */
static bool node_fresh(const ledger_node *n, const char *owner, const char *name, int64_t now)
{
	return strcmp(n->owner, owner) == 0 && strcmp(n->name, name) == 0 &&
	    now - n->last_seen < ledger_node_touch_interval(n->node_id) && now >= n->last_seen;
}

struct upsert_arg {
	const char *node_id, *owner, *name;
	int64_t now;
	bool created;
};

static int upsert_txn(ledger_conn *c, void *arg)
{
	struct upsert_arg *u = arg;
	int64_t n = 0;
	int err = exec_count(&n, c, LS_NODE_CREATE, ARGS(S(u->node_id), S(u->owner),
	    S(u->name), I(u->now)), "insert node");
	if (err)
		return err;
	u->created = n == 1;
	if (u->created)
		return 0;
	return exec(c, LS_NODE_UPDATE, ARGS(S(u->node_id), S(u->owner), S(u->name), I(u->now)),
	    "update node");
}

int ledger_node_upsert(bool *created, ledger_conn *c, const char *node_id,
    const char *owner, const char *name, int64_t now)
{
	bool dummy;
	ledger_node cur;
	TRY(check_conn(c));
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	TRY(check_str("owner", owner, LEDGER_ID_MAX));
	TRY(check_opt_str("node name", name, LEDGER_NAME_MAX));
	if (created == NULL)
		created = &dummy;
	*created = false;
	if (name == NULL)
		name = "";
	int r = node_read(&cur, c, node_id);
	if (r < 0)
		return r;
	if (r == 1 && node_fresh(&cur, owner, name, now))
		return 0;
	struct upsert_arg u = { node_id, owner, name, now, false };
	int err = with_txn(c, upsert_txn, &u);
	if (err == 0)
		*created = u.created;
	return err;
}

int ledger_node_get(ledger_node *out, ledger_conn *c, const char *node_id)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the node");
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	memset(out, 0, sizeof *out);
	int r = node_read(out, c, node_id);
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	return 0;
}

int ledger_node_touch(ledger_node *out, bool *created, ledger_conn *c, const char *node_id,
    const char *owner, const char *name, int64_t now)
{
	int rc;

	if (created)
		*created = false;
	TRY(check_str("owner", owner, LEDGER_ID_MAX));
	TRY(check_opt_str("node name", name, LEDGER_NAME_MAX));
	rc = ledger_node_get(out, c, node_id);
	if (rc != 0 && rc != TROOP_ENOTFOUND)
		return rc;
	if (rc == 0 && node_fresh(out, owner, name ? name : "", now))
		return 0;
	TRY(ledger_node_upsert(created, c, node_id, owner, name, now));
	return ledger_node_get(out, c, node_id);
}

struct verify_arg {
	const char *node_id;
	double multiplier;
	bool verified;
	int64_t now;
};

static int verify_txn(ledger_conn *c, void *arg)
{
	struct verify_arg *v = arg;
	int64_t n = 0;
	int err = exec_count(&n, c, LS_NODE_VERIFY, ARGS(S(v->node_id), D(v->multiplier),
	    I(v->verified ? 1 : 0), I(v->now)), "update node verification");
	if (err)
		return err;
	if (n != 1)
		return troop_error_set(TROOP_ENOTFOUND, "no node %s", v->node_id);
	return 0;
}

int ledger_node_set_verification(ledger_conn *c, const char *node_id, double multiplier,
    bool verified, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	TRY(check_multiplier(multiplier));
	struct verify_arg v = { node_id, multiplier, verified, now };
	return with_txn(c, verify_txn, &v);
}

bool ledger_node_established(const ledger_node *n, const ledger_policy *p, int64_t now)
{
	if (n == NULL)
		return false;
	struct node_facts f = { n->first_seen, n->payers, n->audit_failed, n->pending };
	return established(&f, p ? p : &ledger_policy_default, now);
}

struct class_arg {
	const char *node_id, *hw_class;
};

static int class_txn(ledger_conn *c, void *arg)
{
	struct class_arg *a = arg;
	int64_t n = 0;
	int err = exec_count(&n, c, LS_NODE_CLASS, ARGS(S(a->node_id), S(a->hw_class)),
	    "update node class");
	if (err == 0 && n != 1)
		err = troop_error_set(TROOP_ENOTFOUND, "no node %s", a->node_id);
	return err;
}

int ledger_node_set_class(ledger_conn *c, const char *node_id, const char *hw_class)
{
	TRY(check_conn(c));
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	TRY(check_opt_str("hardware class", hw_class, LEDGER_CLASS_MAX));
	struct class_arg a = { node_id, hw_class ? hw_class : "" };
	return with_txn(c, class_txn, &a);
}

struct forfeit_arg {
	const char *node_id, *actor, *reason;
	int64_t now, forfeited;
};

static int forfeit_txn(ledger_conn *c, void *arg)
{
	struct forfeit_arg *a = arg;
	char owner[LEDGER_ID_MAX + 1], note[LEDGER_ID_MAX + 8], detail[LEDGER_NOTE_MAX + 160];
	int r = row(c, LS_NODE_AUDIT_FAIL, ARGS(S(a->node_id), I(a->now)), "fail node audit");
	if (r <= 0)
		return r < 0 ? r : troop_error_set(TROOP_ENOTFOUND, "no node %s", a->node_id);
	a->forfeited = col_i64(c, 0);
	ledger_copy_str(owner, sizeof owner, col_text(c, 1));
	fin(c);
	int err = 0;
	snprintf(note, sizeof note, "node=%s", a->node_id);
	if (a->forfeited > 0) {
		struct txrow t = { .type = "forfeit", .requester = "", .worker = owner,
			.note = note, .credits = a->forfeited, .now = a->now };
		if ((err = exec(c, LS_NODE_FORFEIT, ARGS(S(a->node_id)), "forfeit pending")) != 0 ||
		    (err = insert_txs(NULL, c, &t, 1)) != 0)
			return err;
	}
	snprintf(detail, sizeof detail, "node=%s forfeited=%lld reason=%s", a->node_id,
	    (long long)a->forfeited, a->reason);
	return insert_audit_on(c, a->actor, "node_forfeit", a->node_id, "", detail, a->now);
}

int ledger_node_forfeit(int64_t *forfeited, ledger_conn *c, const char *node_id,
    const char *actor, const char *reason, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	TRY(check_str("actor", actor, LEDGER_ID_MAX));
	TRY(check_opt_str("reason", reason, LEDGER_NOTE_MAX));
	struct forfeit_arg a = { node_id, actor, reason ? reason : "", now, 0 };
	int err = with_txn(c, forfeit_txn, &a);
	if (err == 0 && forfeited != NULL)
		*forfeited = a.forfeited;
	return err;
}

struct node_audit_arg {
	const char *node_id, *actor, *detail;
	bool passed;
	int64_t now, forfeited;
};

/* One audit verdict: the counts and suspect flag, and for a failure the
 * forfeit of forfeit_txn (with its audit row), in the caller's
 * transaction. */
static int node_audit_txn(ledger_conn *c, void *arg)
{
	struct node_audit_arg *a = arg;
	char detail[LEDGER_NOTE_MAX + 64];
	int64_t changed = 0;
	int err;

	if (a->passed) {
		if ((err = exec_count(&changed, c, LS_NODE_AUDIT_PASS, ARGS(S(a->node_id)),
		    "pass node audit")) != 0)
			return err;
		if (changed == 0)
			return troop_error_set(TROOP_ENOTFOUND, "no node %s", a->node_id);
		snprintf(detail, sizeof detail, "node=%s %s", a->node_id, a->detail);
		return insert_audit_on(c, a->actor, "audit_pass", a->node_id, "", detail, a->now);
	}
	if ((err = exec_count(&changed, c, LS_NODE_AUDIT_SUSPECT, ARGS(S(a->node_id),
	    I(a->now)), "fail node audit")) != 0)
		return err;
	if (changed == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no node %s", a->node_id);
	snprintf(detail, sizeof detail, "node=%s %s", a->node_id, a->detail);
	if ((err = insert_audit_on(c, a->actor, "audit_fail", a->node_id, "", detail,
	    a->now)) != 0)
		return err;
	struct forfeit_arg f = { a->node_id, a->actor, "failed an audit", a->now, 0 };
	err = forfeit_txn(c, &f);
	a->forfeited = f.forfeited;
	return err;
}

int ledger_node_audit(int64_t *forfeited, ledger_conn *c, const char *node_id, bool passed,
    const char *actor, const char *detail, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	TRY(check_str("actor", actor, LEDGER_ID_MAX));
	TRY(check_opt_str("detail", detail, LEDGER_NOTE_MAX));
	struct node_audit_arg a = { node_id, actor, detail ? detail : "", passed, now, 0 };
	int err = with_txn(c, node_audit_txn, &a);
	if (err == 0 && forfeited != NULL)
		*forfeited = a.forfeited;
	return err;
}

/* ---- key/value and audit -------------------------------------------------- */

int ledger_kv_get(char *buf, size_t cap, size_t *len, ledger_conn *c, const char *key)
{
	size_t dummy;
	TRY(check_conn(c));
	if (buf == NULL || cap == 0)
		return troop_error_set(TROOP_EINVAL, "ledger: no buffer for the value");
	buf[0] = '\0';
	TRY(check_str("key", key, LEDGER_KV_KEY_MAX));
	if (len == NULL)
		len = &dummy;
	int r = read_row(c, LS_KV_GET, ARGS(S(key)), "read kv");
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no value stored under '%s'", key);
	size_t n = 0;
	const char *v = c->drv->col_text(c, 0, &n);
	*len = n;
	if (n + 1 > cap) {
		fin(c);
		return troop_error_set(TROOP_ETOOLARGE, "value of '%s' is %zu bytes, buffer %zu",
		    key, n, cap);
	}
	memcpy(buf, v, n);
	buf[n] = '\0';
	fin(c);
	return 0;
}

struct kv_arg {
	const char *key, *value;
	int64_t now;
	bool inserted;
};

static int kv_put_txn(ledger_conn *c, void *arg)
{
	struct kv_arg *k = arg;
	int64_t n = 0;
	int err = exec_count(&n, c, LS_KV_INSERT, ARGS(S(k->key), S(k->value), I(k->now)),
	    "insert kv");
	if (err == 0)
		k->inserted = n == 1;
	return err;
}

int ledger_kv_put_if_absent(bool *inserted, ledger_conn *c, const char *key,
    const char *value, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("key", key, LEDGER_KV_KEY_MAX));
	if (value == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: value is required");
	TRY(check_opt_str("value", value, LEDGER_KV_VALUE_MAX));
	struct kv_arg k = { key, value, now, false };
	int err = with_txn(c, kv_put_txn, &k);
	if (err == 0 && inserted != NULL)
		*inserted = k.inserted;
	return err;
}

struct kv_cas_arg {
	const char *key, *expected, *value;
};

static int kv_replace_txn(ledger_conn *c, void *arg)
{
	struct kv_cas_arg *k = arg;
	int64_t n = 0;
	int err = exec_count(&n, c, LS_KV_REPLACE, ARGS(S(k->key), S(k->expected),
	    S(k->value)), "replace kv");

	if (err == 0 && n != 1)
		err = troop_error_set(TROOP_ECONFLICT, "'%s' was changed by another writer",
		    k->key);
	return err;
}

int ledger_kv_replace(ledger_conn *c, const char *key, const char *expected,
    const char *value)
{
	TRY(check_conn(c));
	TRY(check_str("key", key, LEDGER_KV_KEY_MAX));
	if (value == NULL || expected == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: value is required");
	TRY(check_opt_str("value", value, LEDGER_KV_VALUE_MAX));
	struct kv_cas_arg k = { key, expected, value };
	return with_txn(c, kv_replace_txn, &k);
}

struct audit_arg {
	const char *actor, *action, *detail;
	int64_t now;
};

static int audit_txn(ledger_conn *c, void *arg)
{
	struct audit_arg *a = arg;
	/* these rows are about their actor (a node's proof, a worker's receipt) */
	return insert_audit_on(c, a->actor, a->action, a->actor, "", a->detail, a->now);
}

int ledger_audit(ledger_conn *c, const char *actor, const char *action,
    const char *detail, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("actor", actor, LEDGER_ID_MAX));
	TRY(check_str("action", action, LEDGER_ACTION_MAX));
	TRY(check_opt_str("detail", detail, LEDGER_DETAIL_MAX));
	struct audit_arg a = { actor, action, detail ? detail : "", now };
	return with_txn(c, audit_txn, &a);
}

/* ---- helpers ------------------------------------------------------------------ */

void ledger_copy_str(char *dst, size_t cap, const char *src)
{
	if (cap == 0)
		return;
	if (src == NULL)
		src = "";
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static const char *const res_status_names[] = { "open", "settled", "released" };

/* A reservation status from its name in the database: 0 or TROOP_EINVAL. */
static int status_parse(ledger_res_status *out, const char *s)
{
	for (size_t i = 0; s != NULL && i < sizeof res_status_names / sizeof res_status_names[0]; i++) {
		if (strcmp(s, res_status_names[i]) == 0) {
			*out = (ledger_res_status)i;
			return 0;
		}
	}
	return troop_error_set(TROOP_EINVAL, "ledger: unknown reservation status '%s'",
	    s ? s : "(null)");
}

/* ---- the operator report ------------------------------------------------- */

int ledger_admin_report(ledger_report_account **accounts, size_t *n_accounts,
    ledger_report_node **nodes, size_t *n_nodes, ledger_conn *c, int64_t min_jobs,
    int limit)
{
	TRY(check_conn(c));
	if (accounts == NULL || n_accounts == NULL || nodes == NULL || n_nodes == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the report");
	TRY(check_range("limit", limit, 1, LEDGER_TX_LIMIT_MAX));
	TRY(check_range("min_jobs", min_jobs, 1, INT64_MAX / 2));
	*accounts = NULL;
	*nodes = NULL;
	*n_accounts = *n_nodes = 0;
	ledger_report_account *a = calloc((size_t)limit, sizeof *a);
	ledger_report_node *n = calloc((size_t)limit, sizeof *n);
	if (a == NULL || n == NULL) {
		free(a);
		free(n);
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory for the report");
	}
	size_t na = 0, nn = 0;
	int r = read_row(c, LS_REPORT_ACCOUNTS, ARGS(I(min_jobs), I(limit)), "report accounts");
	while (r == 1 && na < (size_t)limit) {
		ledger_report_account *x = &a[na++];
		ledger_copy_str(x->account, sizeof x->account, col_text(c, 0));
		x->jobs = col_i64(c, 1);
		x->spent = col_i64(c, 2);
		x->nodes = col_i64(c, 3);
		x->owners = col_i64(c, 4);
		ledger_copy_str(x->node_id, sizeof x->node_id, col_text(c, 5));
		ledger_copy_str(x->owner, sizeof x->owner, col_text(c, 6));
		x->trial_reserved = col_i64(c, 7);
		r = c->drv->next(c);
	}
	fin(c);
	if (r >= 0) {
		r = read_row(c, LS_REPORT_NODES, ARGS(I(min_jobs), I(limit)), "report nodes");
		while (r == 1 && nn < (size_t)limit) {
			ledger_report_node *x = &n[nn++];
			ledger_copy_str(x->node_id, sizeof x->node_id, col_text(c, 0));
			ledger_copy_str(x->owner, sizeof x->owner, col_text(c, 1));
			x->jobs = col_i64(c, 2);
			x->earned = col_i64(c, 3);
			x->trial_paid = col_i64(c, 4);
			x->payers = col_i64(c, 5);
			r = c->drv->next(c);
		}
		fin(c);
	}
	if (r < 0) {
		free(a);
		free(n);
		return r;
	}
	if (na == 0) {
		free(a);
		a = NULL;
	}
	if (nn == 0) {
		free(n);
		n = NULL;
	}
	*accounts = a;
	*nodes = n;
	*n_accounts = na;
	*n_nodes = nn;
	return 0;
}

/* ---- the operator's tools ------------------------------------------------------ */

int ledger_account_policy_get(ledger_account_policy *out, ledger_conn *c, const char *account)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the account policy");
	memset(out, 0, sizeof *out);
	TRY(check_str("account", account, LEDGER_ID_MAX));
	int r = read_row(c, LS_ACCOUNT_POLICY, ARGS(S(account)), "read account policy");
	if (r < 0)
		return r;
	if (r == 0)
		return troop_error_set(TROOP_ENOTFOUND, "no account %s", account);
	out->suspended = col_i64(c, 0);
	ledger_copy_str(out->suspend_reason, sizeof out->suspend_reason, col_text(c, 1));
	out->rate_limit = col_i64(c, 2);
	fin(c);
	return 0;
}

struct admin_set_arg {
	enum ledger_stmt stmt;
	const char *kind, *id, *action, *reason, *admin_id;
	int64_t value, now;
	bool with_reason;    /* the statement takes the reason as $3 */
};

static int admin_set_txn(ledger_conn *c, void *arg)
{
	struct admin_set_arg *a = arg;
	char detail[LEDGER_ID_MAX + LEDGER_NOTE_MAX + 64];
	int64_t n = 0;
	int err = a->with_reason ?
	    exec_count(&n, c, a->stmt, ARGS(S(a->id), I(a->value), S(a->reason)), a->action) :
	    exec_count(&n, c, a->stmt, ARGS(S(a->id), I(a->value)), a->action);
	if (err)
		return err;
	if (n == 0)
		return troop_error_set(TROOP_ENOTFOUND, "the ledger has no %s %s", a->kind, a->id);
	snprintf(detail, sizeof detail, "%s=%s value=%lld", a->kind, a->id, (long long)a->value);
	return insert_audit_on(c, a->admin_id, a->action, a->id, a->reason, detail, a->now);
}

int ledger_admin_suspend(ledger_conn *c, ledger_target kind, const char *id, bool on,
    const char *reason, const char *admin_id, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str(kind == LEDGER_TARGET_NODE ? "node id" : "account", id, LEDGER_ID_MAX));
	TRY(check_opt_str("reason", reason, LEDGER_NOTE_MAX));
	TRY(check_str("admin id", admin_id, LEDGER_ID_MAX));
	struct admin_set_arg a = {
		.stmt = kind == LEDGER_TARGET_NODE ? LS_NODE_SUSPEND : LS_ACCOUNT_SUSPEND,
		.kind = kind == LEDGER_TARGET_NODE ? "node" : "account", .id = id,
		.action = on ? "suspend" : "unsuspend", .reason = reason ? reason : "",
		.admin_id = admin_id, .value = on ? (now > 0 ? now : 1) : 0, .now = now,
		.with_reason = true,
	};
	return with_txn(c, admin_set_txn, &a);
}

int ledger_admin_rate_limit(ledger_conn *c, const char *account, int64_t per_second,
    const char *reason, const char *admin_id, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("account", account, LEDGER_ID_MAX));
	TRY(check_range("rate limit", per_second, 0, 1000000));
	TRY(check_opt_str("reason", reason, LEDGER_NOTE_MAX));
	TRY(check_str("admin id", admin_id, LEDGER_ID_MAX));
	struct admin_set_arg a = {
		.stmt = LS_ACCOUNT_RATE, .kind = "account", .id = account, .action = "rate_limit",
		.reason = reason ? reason : "", .admin_id = admin_id, .value = per_second,
		.now = now, .with_reason = false,
	};
	return with_txn(c, admin_set_txn, &a);
}

static int set_name_txn(ledger_conn *c, void *arg)
{
	const char *const *a = arg;
	int64_t n = 0;
	int err = exec_count(&n, c, LS_ACCOUNT_NAME, ARGS(S(a[0]), S(a[1])), "set display name");

	if (err)
		return err;
	if (n == 0)
		return troop_error_set(TROOP_ENOTFOUND, "the ledger has no account %s yet: "
		    "a name can be set once the account has earned or spent", a[0]);
	return 0;
}

int ledger_account_set_name(ledger_conn *c, const char *account, const char *name)
{
	TRY(check_conn(c));
	TRY(check_str("account", account, LEDGER_ID_MAX));
	if (name == NULL || strlen(name) > LEDGER_DISPLAY_NAME_MAX)
		return troop_error_set(TROOP_EINVAL, "ledger: a display name is at most %d bytes",
		    LEDGER_DISPLAY_NAME_MAX);
	const char *a[2] = { account, name };
	return with_txn(c, set_name_txn, (void *)a);
}

/* Check a page's outputs and limit, and allocate limit + 1 rows (one more
 * than asked, to know whether there is a next page). */
static int page_start(void **rows, size_t size, size_t *n, int limit)
{
	*rows = NULL;
	*n = 0;
	TRY(check_range("limit", limit, 1, LEDGER_TX_LIMIT_MAX));
	if ((*rows = calloc((size_t)limit + 1, size)) == NULL)
		return troop_error_set(TROOP_ENOMEM, "ledger: out of memory");
	return 0;
}

int ledger_audit_page(ledger_audit_row **out, size_t *n, int64_t *next, ledger_conn *c,
    const char *target, const char *action, int64_t since, int limit, int64_t before_id)
{
	TRY(check_conn(c));
	if (out == NULL || n == NULL || next == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the audit log");
	*next = 0;
	TRY(check_opt_str("target", target, LEDGER_ID_MAX));
	TRY(check_opt_str("action", action, LEDGER_ACTION_MAX));
	TRY(check_range("before", before_id, 0, INT64_MAX));
	TRY(check_range("since", since, 0, INT64_MAX));
	ledger_audit_row *rows;
	TRY(page_start((void **)&rows, sizeof *rows, n, limit));
	size_t k = 0;
	int64_t below = before_id == 0 ? INT64_MAX : before_id;
	int r;
	if (target && target[0])
		r = read_row(c, LS_AUDIT_PAGE_TARGET, ARGS(I(below), I(since), I((int64_t)limit + 1),
		    S(target), S(action ? action : "")), "read audit log");
	else if (action && action[0])
		r = read_row(c, LS_AUDIT_PAGE_ACTION, ARGS(I(below), I(since), I((int64_t)limit + 1),
		    S(action)), "read audit log");
	else
		r = read_row(c, LS_AUDIT_PAGE, ARGS(I(below), I(since), I((int64_t)limit + 1)),
		    "read audit log");
	while (r == 1) {
		ledger_audit_row *a = &rows[k++];
		a->id = col_i64(c, 0);
		ledger_copy_str(a->actor, sizeof a->actor, col_text(c, 1));
		ledger_copy_str(a->action, sizeof a->action, col_text(c, 2));
		ledger_copy_str(a->target, sizeof a->target, col_text(c, 3));
		ledger_copy_str(a->reason, sizeof a->reason, col_text(c, 4));
		ledger_copy_str(a->detail, sizeof a->detail, col_text(c, 5));
		a->created_at = col_i64(c, 6);
		r = k < (size_t)limit + 1 ? c->drv->next(c) : 0;
	}
	fin(c);
	if (r < 0) {
		free(rows);
		return r;
	}
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

int ledger_nodes_list(ledger_node **out, size_t *n, ledger_conn *c, const char *after,
    int limit)
{
	TRY(check_conn(c));
	if (out == NULL || n == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the node list");
	TRY(check_opt_str("after", after, LEDGER_ID_MAX));
	ledger_node *rows;
	TRY(page_start((void **)&rows, sizeof *rows, n, limit));
	size_t k = 0;
	int r = read_row(c, LS_NODES_LIST, ARGS(S(after ? after : ""), I(limit)), "list nodes");
	while (r == 1) {
		ledger_node *nd = &rows[k++];
		node_cols(nd, c);
		ledger_copy_str(nd->node_id, sizeof nd->node_id, col_text(c, 20));
		r = k < (size_t)limit ? c->drv->next(c) : 0;
	}
	fin(c);
	if (r < 0 || k == 0) {
		free(rows);
		rows = NULL;
	}
	if (r < 0)
		return r;
	*out = rows;
	*n = k;
	return 0;
}

int ledger_accounts_list(ledger_account_row **out, size_t *n, ledger_conn *c,
    const char *after, int limit)
{
	TRY(check_conn(c));
	if (out == NULL || n == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the account list");
	TRY(check_opt_str("after", after, LEDGER_ID_MAX));
	ledger_account_row *rows;
	TRY(page_start((void **)&rows, sizeof *rows, n, limit));
	size_t k = 0;
	int r = read_row(c, LS_ACCOUNTS_LIST, ARGS(S(after ? after : ""), I(limit)),
	    "list accounts");
	while (r == 1) {
		ledger_account_row *a = &rows[k++];
		ledger_copy_str(a->account, sizeof a->account, col_text(c, 0));
		a->balance = col_i64(c, 1);
		a->trial = col_i64(c, 2);
		a->reports = col_i64(c, 3);
		a->disputes = col_i64(c, 4);
		a->suspended = col_i64(c, 5);
		ledger_copy_str(a->suspend_reason, sizeof a->suspend_reason, col_text(c, 6));
		a->rate_limit = col_i64(c, 7);
		a->created_at = col_i64(c, 8);
		r = k < (size_t)limit ? c->drv->next(c) : 0;
	}
	fin(c);
	if (r < 0 || k == 0) {
		free(rows);
		rows = NULL;
	}
	if (r < 0)
		return r;
	*out = rows;
	*n = k;
	return 0;
}
