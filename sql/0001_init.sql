-- placeholder replaced by the ledger schema
SELECT 1;
