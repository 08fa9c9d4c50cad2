-- 0002_trial_pending.sql - trial credits, pending earnings and the facts
-- that make a node established (docs/CREDITS.md, ledger.h "The credit
-- model").  Same dialect rules as 0001: BIGINT, TEXT and DOUBLE PRECISION
-- only, ALTER TABLE ... ADD COLUMN with constant defaults, which SQLite
-- and PostgreSQL both accept.

-- trial: starter credits, spendable but never transferable.
-- trial_debit: trial credits taken by the account's last debit, written
--   and read inside one transaction (an UPDATE cannot return a column's
--   old value on both databases).
-- earn_day, earn_today: trial-paid earnings made spendable to this owner
--   on unix day earn_day (the daily cap).
ALTER TABLE accounts ADD COLUMN trial BIGINT NOT NULL DEFAULT 0 CHECK (trial >= 0);
ALTER TABLE accounts ADD COLUMN trial_debit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN earn_day BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN earn_today BIGINT NOT NULL DEFAULT 0;

-- pending: earnings paid from trial credits, owed to the node's owner and
--   not spendable until the node is established (then released under the
--   owner's daily cap); forfeited when the node fails an audit.
-- payers: distinct accounts that paid this node with ordinary credits.
-- audit_failed: unix time of a failed audit, 0 if none.
-- hw_class: the class of its last verified proof of hardware ("" none).
ALTER TABLE nodes ADD COLUMN pending BIGINT NOT NULL DEFAULT 0 CHECK (pending >= 0);
ALTER TABLE nodes ADD COLUMN payers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN audit_failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN hw_class TEXT NOT NULL DEFAULT '';
CREATE INDEX nodes_owner ON nodes (owner);

-- The part of a reservation taken from trial credits.
ALTER TABLE reservations ADD COLUMN trial_amount BIGINT NOT NULL DEFAULT 0;

-- Two witnesses (docs/PROTOCOL.md "Settlement rule"): a requester that
-- promised a delivery report (report_wanted = 1) has the worker's receipt
-- held as a claim (claim_ms >= 0) until its report (report_ms >= 0)
-- arrives or the claim's deadline passes.  -1: not received.
-- disputed = 1 when the worker claimed more than its client observed.
ALTER TABLE reservations ADD COLUMN report_wanted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN claim_ms BIGINT NOT NULL DEFAULT -1;
ALTER TABLE reservations ADD COLUMN claim_tokens_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN claim_tokens_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN claim_outcome TEXT NOT NULL DEFAULT '';
ALTER TABLE reservations ADD COLUMN claimed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN report_ms BIGINT NOT NULL DEFAULT -1;
ALTER TABLE reservations ADD COLUMN report_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN report_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN report_outcome TEXT NOT NULL DEFAULT '';
ALTER TABLE reservations ADD COLUMN report_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE reservations ADD COLUMN reported_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN disputed BIGINT NOT NULL DEFAULT 0;
-- partial: only held claims are in it, so that settling and reserving
-- (nearly every row never holds a claim) do not maintain it
CREATE INDEX reservations_claims ON reservations (claimed_at)
    WHERE status = 'open' AND claimed_at > 0;

-- disputes: settled jobs where the worker claimed more than its client
-- observed (beyond the tolerance).
ALTER TABLE nodes ADD COLUMN disputes BIGINT NOT NULL DEFAULT 0;

-- One row per (node, account that paid it with ordinary credits).
CREATE TABLE node_payers (
    node_id    TEXT NOT NULL,
    account    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (node_id, account)
);

-- Invite codes (starter policy "invite"): the code's SHA-256, hex.
CREATE TABLE invites (
    code_hash   TEXT PRIMARY KEY,
    credits     BIGINT NOT NULL CHECK (credits > 0),
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    redeemed_by TEXT NOT NULL,
    redeemed_at BIGINT NOT NULL
);
