-- The master key's versions: each wrap names the version it was made under, and a rotation adds a
-- version, re-wraps what the older ones wrapped (resumable, one job across the nodes), then
-- retires them. Version 1's record is written at the first start after this migration.
CREATE TABLE master_keys (
    version          BIGINT PRIMARY KEY,
    state            TEXT NOT NULL,
    check_value      BYTEA NOT NULL,
    fingerprint_key  BYTEA,
    created_ms       BIGINT NOT NULL,
    retired_ms       BIGINT
);

-- The re-wrapping of a rotation to `target`: where it stands (the kind of row and the last key
-- done, so a restart resumes there), how many it re-wrapped, and the node that holds it.
CREATE TABLE master_key_rewraps (
    target          BIGINT PRIMARY KEY,
    phase           TEXT NOT NULL,
    cursor          TEXT NOT NULL,
    rewrapped       BIGINT NOT NULL,
    started_ms      BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  BIGINT
);

ALTER TABLE token_requestors ADD COLUMN credentials_version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE shared_keys ADD COLUMN master_version BIGINT NOT NULL DEFAULT 1;
