-- The recovery sweep finds the recoveries whose time to live ran out by this index (only tokens
-- with a recovery open are in it), not by a scan of every token.
CREATE INDEX tokens_recovery_deadline ON tokens (recovery_deadline_ms) WHERE recovery_deadline_ms IS NOT NULL;
