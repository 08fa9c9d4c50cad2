-- 0005_audits.sql - the coordinator's audits of nodes (docs/AUDITS.md):
-- how many spot checks each node passed and failed, and whether it is
-- suspect now.  Same dialect rules as 0001.

-- audits_passed, audits_failed: audits the node agreed with the majority
-- of the nodes serving the same weights, and those it disagreed in.
-- suspect: unix time of its last failed audit while it has not passed one
-- since, 0 when not suspect.  A suspect node is not chosen by /authorize
-- (except by the auditor, so that it can pass again); its pending
-- earnings were forfeited when it failed (audit_failed, 0002).
ALTER TABLE nodes ADD COLUMN audits_passed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN audits_failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN suspect BIGINT NOT NULL DEFAULT 0;
