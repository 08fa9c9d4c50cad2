-- 0003_client_reports.sql - the second witness's side of a dispute
-- (docs/PROTOCOL.md "Two witnesses"): the worker's digest of the body it
-- sent, the plausible rate a report is checked against, and the dispute
-- counts per account.  Same dialect rules as 0001.

-- claim_digest: the worker receipt's response_digest ("" none).
-- report_max_tps: the node's plausible output rate for the job's model,
--   tokens/s, computed when the report came (0: not checked).
-- client_disputed = 1 when the client under-reported: its digest matched
--   the worker's but its duration was shorter than the tokens allow.
ALTER TABLE reservations ADD COLUMN claim_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE reservations ADD COLUMN report_max_tps DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN client_disputed BIGINT NOT NULL DEFAULT 0;

-- reports: delivery reports the account sent; disputes: those found to
-- under-report (the account's dispute rate is disputes / reports).
ALTER TABLE accounts ADD COLUMN reports BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN disputes BIGINT NOT NULL DEFAULT 0;

-- refusals: reports of outcome "refused" (the node answered 401, not its
-- ticket); each also counts as one of the node's disputes.
ALTER TABLE nodes ADD COLUMN refusals BIGINT NOT NULL DEFAULT 0;
