/*
 * ledger_sql.c - every SQL statement of the ledger, written once with $N
 * placeholders, for all drivers (ledger_driver.h).  The SQL sticks to what
 * SQLite 3.35+ and PostgreSQL 15 both accept (ON CONFLICT, RETURNING,
 * scalar subqueries); a driver overrides an entry only where the databases
 * really differ, and those entries are NULL here.
 */
#include <stddef.h>

#include "ledger_driver.h"

#define TX_COLS "id, type, job_id, requester, worker, credits, duration_ms, model, note, " \
	"created_at"

const char *const ledger_sql[LS_COUNT] = {
	[LS_SCHEMA_EXISTS] = NULL,
	[LS_SCHEMA_CREATE] = "CREATE TABLE schema_version (version BIGINT PRIMARY KEY, "
	    "name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
	[LS_SCHEMA_HAS] = "SELECT 1 FROM schema_version WHERE version = $1",
	[LS_SCHEMA_INSERT] = "INSERT INTO schema_version (version, name, applied_at) "
	    "VALUES ($1, $2, $3)",
	[LS_SCHEMA_MAX] = "SELECT COALESCE(MAX(version), 0) FROM schema_version",
	[LS_MIGRATE_LOCK] = "",
	[LS_MIGRATE_UNLOCK] = "",
	[LS_NEXT_ID] = "UPDATE counters SET value = value + $2 WHERE name = $1 RETURNING value",
	[LS_ACCOUNT_EXISTS] = "SELECT 1 FROM accounts WHERE account = $1",
	/* starter credits are trial credits */
	[LS_ACCOUNT_CREATE] = "INSERT INTO accounts (account, balance, trial, created_at) "
	    "VALUES ($1, 0, $2, $3) ON CONFLICT (account) DO NOTHING",
	[LS_ACCOUNT_AVAILABLE] = "SELECT balance + trial FROM accounts WHERE account = $1",
	/* credit, creating the account when missing (worker owners) */
	[LS_ACCOUNT_ADD] = "INSERT INTO accounts (account, balance, created_at) "
	    "VALUES ($1, $2, $3) ON CONFLICT (account) DO UPDATE "
	    "SET balance = accounts.balance + excluded.balance",
	/* the check and the debit in one statement, under the row lock:
	 * ordinary credits first, then trial; every right-hand side reads the
	 * row as it was, and trial_debit says how much trial it took */
	[LS_ACCOUNT_DEBIT] = "UPDATE accounts SET "
	    "balance = CASE WHEN balance >= $2 THEN balance - $2 ELSE 0 END, "
	    "trial = CASE WHEN balance >= $2 THEN trial ELSE trial - ($2 - balance) END, "
	    "trial_debit = CASE WHEN balance >= $2 THEN 0 ELSE $2 - balance END "
	    "WHERE account = $1 AND balance + trial >= $2 RETURNING balance + trial, trial_debit",
	[LS_ACCOUNT_REFUND] = "UPDATE accounts SET balance = balance + $2, trial = trial + $3 "
	    "WHERE account = $1",
	[LS_ACCOUNT_TRIAL_ADD] = "INSERT INTO accounts (account, balance, trial, created_at) "
	    "VALUES ($1, 0, $2, $3) ON CONFLICT (account) DO UPDATE "
	    "SET trial = accounts.trial + excluded.trial",
	[LS_ACCOUNT_EARNED] = "SELECT earn_day, earn_today FROM accounts WHERE account = $1",
	[LS_ACCOUNT_MATURE] = "UPDATE accounts SET balance = balance + $2, earn_day = $3, "
	    "earn_today = $4 WHERE account = $1",
	/* one statement: one snapshot */
	[LS_BALANCE] = "SELECT a.balance, (SELECT COALESCE(SUM(r.amount), 0) "
	    "FROM reservations r WHERE r.requester = a.account AND r.status = 'open'), "
	    "a.trial, (SELECT COALESCE(SUM(n.pending), 0) FROM nodes n "
	    "WHERE n.owner = a.account), a.reports, a.disputes "
	    "FROM accounts a WHERE a.account = $1",
	[LS_TX_INSERT] = "INSERT INTO transactions (" TX_COLS ") "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	/* Two index range scans (requester, id) and (worker, id), each cut at
	 * the page size, merged; UNION drops the duplicate when an account
	 * paid itself. */
	[LS_TX_PAGE] = "SELECT " TX_COLS " FROM ("
	    "SELECT " TX_COLS " FROM transactions WHERE requester = $1 AND id < $2 "
	    "ORDER BY id DESC LIMIT $3) AS a "
	    "UNION "
	    "SELECT " TX_COLS " FROM ("
	    "SELECT " TX_COLS " FROM transactions WHERE worker = $1 AND id < $2 "
	    "ORDER BY id DESC LIMIT $3) AS b "
	    "ORDER BY id DESC LIMIT $3",
	[LS_AUDIT_INSERT] = "INSERT INTO audit_log (id, actor, action, detail, created_at, "
	    "target, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	[LS_RES_INSERT] = "INSERT INTO reservations (job_id, requester, node_id, worker, "
	    "model, amount, max_seconds, multiplier, status, created_at, expires_at, "
	    "closed_at, charged, refunded, duration_ms, tokens_in, tokens_out, outcome, "
	    "trial_amount, report_wanted) "
	    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $10, 0, 0, 0, 0, 0, 0, '', $11, "
	    "$12)",
	[LS_RES_GET] = LEDGER_SQL_RES_GET,
	[LS_RES_LOCK] = LEDGER_SQL_RES_LOCK,
	[LS_RES_SETTLE] = "UPDATE reservations SET status = 'settled', closed_at = $2, "
	    "charged = $3, refunded = $4, duration_ms = $5, tokens_in = $6, tokens_out = $7, "
	    "outcome = $8, disputed = $9 WHERE job_id = $1 AND status = 'open'",
	[LS_RES_EXPIRED] = LEDGER_SQL_RES_EXPIRED,
	[LS_RES_CLAIM] = "UPDATE reservations SET claim_ms = $2, claim_tokens_in = $3, "
	    "claim_tokens_out = $4, claim_outcome = $5, claimed_at = $6, claim_digest = $7 "
	    "WHERE job_id = $1 AND status = 'open' AND claim_ms < 0",
	[LS_RES_REPORT] = "UPDATE reservations SET report_ms = $2, report_tokens = $3, "
	    "report_bytes = $4, report_outcome = $5, report_digest = $6, reported_at = $7, "
	    "report_max_tps = $8 "
	    "WHERE job_id = $1 AND report_ms < 0",
	[LS_RES_CLAIMS_DUE] = "SELECT job_id FROM reservations WHERE status = 'open' "
	    "AND claimed_at > 0 AND claimed_at < $1 ORDER BY claimed_at LIMIT $2",
	[LS_RES_RELEASE] = "UPDATE reservations SET status = 'released', closed_at = $2, "
	    "refunded = amount WHERE job_id = $1 AND status = 'open'",
	[LS_TOTALS] = "SELECT "
	    "(SELECT COALESCE(SUM(credits), 0) FROM transactions WHERE type IN ('grant', 'admin')), "
	    "(SELECT COALESCE(SUM(balance), 0) FROM accounts), "
	    "(SELECT COUNT(*) FROM accounts), "
	    "(SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE status = 'open'), "
	    "(SELECT COUNT(*) FROM reservations WHERE status = 'open'), "
	    "(SELECT COALESCE(SUM(trial), 0) FROM accounts), "
	    "(SELECT COALESCE(SUM(pending), 0) FROM nodes), "
	    "(SELECT COALESCE(SUM(credits), 0) FROM transactions WHERE type = 'forfeit')",
	[LS_NODE_GET] = "SELECT owner, name, multiplier, verified, verified_at, jobs_ok, "
	    "jobs_failed, first_seen, last_seen, pending, payers, audit_failed, hw_class, "
	    "disputes, refusals, suspended, suspend_reason, audits_passed, audits_failed, "
	    "suspect FROM nodes WHERE node_id = $1",
	/* concurrent first heartbeats: the second waits for the first's key,
	 * then inserts nothing and updates instead */
	[LS_NODE_CREATE] = "INSERT INTO nodes (node_id, owner, name, multiplier, verified, "
	    "verified_at, jobs_ok, jobs_failed, first_seen, last_seen) "
	    "VALUES ($1, $2, $3, 1.0, 0, 0, 0, 0, $4, $4) ON CONFLICT (node_id) DO NOTHING",
	[LS_NODE_UPDATE] = "UPDATE nodes SET owner = $2, name = $3, last_seen = $4 "
	    "WHERE node_id = $1",
	[LS_NODE_VERIFY] = "UPDATE nodes SET multiplier = $2, verified = $3, verified_at = $4 "
	    "WHERE node_id = $1",
	[LS_NODE_JOBS] = "UPDATE nodes SET jobs_ok = jobs_ok + $2, jobs_failed = jobs_failed + $3, "
	    "pending = pending + $4, disputes = disputes + $5 WHERE node_id = $1",
	/* a node the ledger has not seen is created, owned by the worker */
	[LS_NODE_JOBS_CREATE] = "INSERT INTO nodes (node_id, owner, name, multiplier, verified, "
	    "verified_at, jobs_ok, jobs_failed, first_seen, last_seen, pending, disputes) "
	    "VALUES ($1, $5, '', 1.0, 0, 0, $2, $3, $6, $6, $4, $7) "
	    "ON CONFLICT (node_id) DO UPDATE "
	    "SET jobs_ok = nodes.jobs_ok + excluded.jobs_ok, "
	    "jobs_failed = nodes.jobs_failed + excluded.jobs_failed, "
	    "pending = nodes.pending + excluded.pending, "
	    "disputes = nodes.disputes + excluded.disputes",
	/* a suspended node's pending earnings wait (and are forfeited by a
	 * failed audit) */
	[LS_NODE_MATURE] = "UPDATE nodes SET pending = pending - $2 "
	    "WHERE node_id = $1 AND pending >= $2 AND owner = $3 AND audit_failed = 0 "
	    "AND suspended = 0",
	/* established nodes with pending earnings, in pages by node id */
	[LS_NODES_MATURABLE] = "SELECT node_id, owner FROM nodes WHERE pending > 0 "
	    "AND audit_failed = 0 AND suspended = 0 AND first_seen <= $1 AND payers >= $2 "
	    "AND node_id > $3 "
	    "ORDER BY node_id LIMIT $4",
	[LS_NODE_PAYER_INSERT] = "INSERT INTO node_payers (node_id, account, created_at) "
	    "VALUES ($1, $2, $3) ON CONFLICT (node_id, account) DO NOTHING",
	[LS_NODE_PAYER_COUNT] = "UPDATE nodes SET payers = payers + 1 WHERE node_id = $1",
	[LS_NODE_AUDIT_FAIL] = "UPDATE nodes SET audit_failed = $2 WHERE node_id = $1 "
	    "RETURNING pending, owner",
	[LS_NODE_FORFEIT] = "UPDATE nodes SET pending = 0 WHERE node_id = $1",
	/* an audit's verdict: a pass clears suspect, a failure sets it */
	[LS_NODE_AUDIT_PASS] = "UPDATE nodes SET audits_passed = audits_passed + 1, "
	    "suspect = 0 WHERE node_id = $1",
	[LS_NODE_AUDIT_SUSPECT] = "UPDATE nodes SET audits_failed = audits_failed + 1, "
	    "suspect = $2 WHERE node_id = $1",
	[LS_NODE_CLASS] = "UPDATE nodes SET hw_class = $2 WHERE node_id = $1",
	[LS_INVITE_INSERT] = "INSERT INTO invites (code_hash, credits, created_by, created_at, "
	    "redeemed_by, redeemed_at) VALUES ($1, $2, $3, $4, '', 0)",
	[LS_INVITE_REDEEM] = "UPDATE invites SET redeemed_by = $2, redeemed_at = $3 "
	    "WHERE code_hash = $1 AND redeemed_by = '' RETURNING credits",
	[LS_KV_GET] = "SELECT value FROM kv WHERE name = $1",
	/* the first committed writer wins */
	[LS_KV_INSERT] = "INSERT INTO kv (name, value, created_at) VALUES ($1, $2, $3) "
	    "ON CONFLICT (name) DO NOTHING",
	/* compare and set: only over the value the writer read */
	[LS_KV_REPLACE] = "UPDATE kv SET value = $3 WHERE name = $1 AND value = $2",
	[LS_ACCOUNT_REPORTED] = "UPDATE accounts SET reports = reports + $2, "
	    "disputes = disputes + $3 WHERE account = $1",
	[LS_NODE_REFUSED] = "UPDATE nodes SET disputes = disputes + 1, refusals = refusals + 1 "
	    "WHERE node_id = $1",
	[LS_RES_CLIENT_DISPUTE] = "UPDATE reservations SET client_disputed = 1 WHERE job_id = $1",
	/* accounts whose settled spending all went to one node or one owner */
	[LS_REPORT_ACCOUNTS] = "SELECT requester, COUNT(*), SUM(charged), "
	    "COUNT(DISTINCT node_id), COUNT(DISTINCT worker), MIN(node_id), MIN(worker), "
	    "SUM(trial_amount) FROM reservations WHERE status = 'settled' AND charged > 0 "
	    "GROUP BY requester HAVING COUNT(*) >= $1 AND "
	    "(COUNT(DISTINCT node_id) = 1 OR COUNT(DISTINCT worker) = 1) "
	    "ORDER BY SUM(charged) DESC, requester LIMIT $2",
	/* nodes paid mostly from trial credits: the charge takes ordinary
	 * credits first, so its trial part is what exceeds the ordinary part */
	[LS_REPORT_NODES] = "SELECT node_id, MIN(worker), COUNT(*), SUM(charged), "
	    "SUM(CASE WHEN charged > amount - trial_amount "
	    "THEN charged - (amount - trial_amount) ELSE 0 END), COUNT(DISTINCT requester) "
	    "FROM reservations WHERE status = 'settled' AND charged > 0 "
	    "GROUP BY node_id HAVING COUNT(*) >= $1 AND "
	    "2 * SUM(CASE WHEN charged > amount - trial_amount "
	    "THEN charged - (amount - trial_amount) ELSE 0 END) > SUM(charged) "
	    "ORDER BY SUM(charged) DESC, node_id LIMIT $2",
	/* what other accounts paid: a node owner's own jobs are no donation */
	[LS_TOP_EARNERS] = "SELECT t.worker, SUM(t.credits), COUNT(*), "
	    "COALESCE(MAX(a.display_name), '') FROM transactions t "
	    "LEFT JOIN accounts a ON a.account = t.worker "
	    "WHERE t.type = 'settle' AND t.worker <> '' AND t.worker <> t.requester "
	    "GROUP BY t.worker ORDER BY 2 DESC, 1 LIMIT $1",
	[LS_ACCOUNT_NAME] = "UPDATE accounts SET display_name = $2 WHERE account = $1",
	/* newest first below a cursor; one statement per index, so that a
	 * filter on a long log reads its own rows only */
	[LS_AUDIT_PAGE] = "SELECT id, actor, action, target, reason, detail, created_at "
	    "FROM audit_log WHERE id < $1 AND created_at >= $2 ORDER BY id DESC LIMIT $3",
	[LS_AUDIT_PAGE_TARGET] = "SELECT id, actor, action, target, reason, detail, created_at "
	    "FROM audit_log WHERE target = $4 AND id < $1 AND created_at >= $2 "
	    "AND ($5 = '' OR action = $5) ORDER BY id DESC LIMIT $3",
	[LS_AUDIT_PAGE_ACTION] = "SELECT id, actor, action, target, reason, detail, created_at "
	    "FROM audit_log WHERE action = $4 AND id < $1 AND created_at >= $2 "
	    "ORDER BY id DESC LIMIT $3",
	[LS_NODE_SUSPEND] = "UPDATE nodes SET suspended = $2, suspend_reason = $3 "
	    "WHERE node_id = $1",
	[LS_ACCOUNT_SUSPEND] = "UPDATE accounts SET suspended = $2, suspend_reason = $3 "
	    "WHERE account = $1",
	[LS_ACCOUNT_RATE] = "UPDATE accounts SET rate_limit = $2 WHERE account = $1",
	/* /authorize's one read of the account's standing */
	[LS_ACCOUNT_POLICY] = "SELECT suspended, suspend_reason, rate_limit FROM accounts "
	    "WHERE account = $1",
	[LS_NODES_LIST] = "SELECT owner, name, multiplier, verified, verified_at, jobs_ok, "
	    "jobs_failed, first_seen, last_seen, pending, payers, audit_failed, hw_class, "
	    "disputes, refusals, suspended, suspend_reason, audits_passed, audits_failed, "
	    "suspect, node_id FROM nodes "
	    "WHERE node_id > $1 ORDER BY node_id LIMIT $2",
	[LS_ACCOUNTS_LIST] = "SELECT account, balance, trial, reports, disputes, suspended, "
	    "suspend_reason, rate_limit, created_at FROM accounts WHERE account > $1 "
	    "ORDER BY account LIMIT $2",
};

const char *ledger_stmt_sql(const struct ledger_driver *d, enum ledger_stmt id)
{
	const char *s = (d->sql != NULL) ? d->sql[id] : NULL;
	if (s == NULL)
		s = ledger_sql[id];
	return s != NULL ? s : "";
}
