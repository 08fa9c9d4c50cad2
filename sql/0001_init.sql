-- 0001_init.sql - the ledger schema (DESIGN.md sections 7 and 11).
--
-- One schema for SQLite and PostgreSQL 15: only BIGINT, TEXT and DOUBLE
-- PRECISION columns, standard constraints, no engine-specific functions or
-- AUTOINCREMENT.  Row ids of the append-only tables are assigned by the
-- application inside the writing transaction from the `counters` table
-- (UPDATE ... RETURNING), so they increase with time on both engines.
-- Credits are integer credit-seconds; times are unix seconds.
-- The migration runner creates and fills schema_version itself.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('transactions', 0);
INSERT INTO counters (name, value) VALUES ('audit_log', 0);

-- balance is the AVAILABLE balance; escrow lives in open reservations.
CREATE TABLE accounts (
    account    TEXT PRIMARY KEY,
    balance    BIGINT NOT NULL CHECK (balance >= 0),
    created_at BIGINT NOT NULL
);

-- The durable part of a node; the live part is in the registry.
CREATE TABLE nodes (
    node_id     TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    multiplier  DOUBLE PRECISION NOT NULL,
    verified    BIGINT NOT NULL,
    verified_at BIGINT NOT NULL,
    jobs_ok     BIGINT NOT NULL,
    jobs_failed BIGINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);

-- status: 'open' (credits escrowed), 'settled', 'released'.
CREATE TABLE reservations (
    job_id      TEXT PRIMARY KEY,
    requester   TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    worker      TEXT NOT NULL,
    model       TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    max_seconds BIGINT NOT NULL,
    multiplier  DOUBLE PRECISION NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    closed_at   BIGINT NOT NULL,
    charged     BIGINT NOT NULL,
    refunded    BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    tokens_in   BIGINT NOT NULL,
    tokens_out  BIGINT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE INDEX reservations_status_expires ON reservations (status, expires_at);
CREATE INDEX reservations_requester_status ON reservations (requester, status);

-- Every credit movement.  type: grant, admin, reserve, settle, release.
-- For grant and admin rows the receiving account is in requester.
CREATE TABLE transactions (
    id          BIGINT PRIMARY KEY,
    type        TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    requester   TEXT NOT NULL,
    worker      TEXT NOT NULL,
    credits     BIGINT NOT NULL CHECK (credits >= 0),
    duration_ms BIGINT NOT NULL,
    model       TEXT NOT NULL,
    note        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX transactions_requester_id ON transactions (requester, id);
CREATE INDEX transactions_worker_id ON transactions (worker, id);
CREATE INDEX transactions_type_credits ON transactions (type, credits);

CREATE TABLE audit_log (
    id         BIGINT PRIMARY KEY,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Small shared settings, first writer wins (e.g. the ticket signing key).
CREATE TABLE kv (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
