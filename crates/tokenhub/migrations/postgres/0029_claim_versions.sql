-- Each claim of a row bumps its claim version and the claimer keeps it: a settlement counts only
-- while the row still holds that version, so a node that stalled past its lease and whose row was
-- claimed again (by another node, or by itself) cannot write over the newer claim's outcome.
ALTER TABLE outbox ADD COLUMN claim_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN claim_version BIGINT NOT NULL DEFAULT 0;
