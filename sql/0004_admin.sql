-- 0004_admin.sql - the operator's tools (docs/OPERATING.md): suspended
-- nodes and accounts, per-account rate limits, and an audit log that can
-- be read by target and type.  Same dialect rules as 0001.

-- suspended: unix time of the suspension, 0 when not suspended;
-- suspend_reason: the operator's words.  A suspended node is not chosen
-- by /authorize and its receipts settle at 0 (the requester is refunded);
-- a suspended account cannot authorize.
ALTER TABLE nodes ADD COLUMN suspended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN suspend_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN suspended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN suspend_reason TEXT NOT NULL DEFAULT '';

-- rate_limit: /authorize requests a second this account may make; 0: the
-- coordinator's --account-rate-limit.
ALTER TABLE accounts ADD COLUMN rate_limit BIGINT NOT NULL DEFAULT 0;

-- target: the account or node an action concerns ("" none); reason: the
-- operator's words ("" none).  Read newest first, by target or by action.
ALTER TABLE audit_log ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN reason TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_log_target_id ON audit_log (target, id);
CREATE INDEX audit_log_action_id ON audit_log (action, id);
