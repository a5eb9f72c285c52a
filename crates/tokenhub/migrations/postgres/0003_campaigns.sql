-- Re-personalization: a token's open recovery, campaigns and their tokens.
ALTER TABLE tokens ADD COLUMN recovery_correlation_id TEXT;
ALTER TABLE tokens ADD COLUMN recovery_version TEXT;
ALTER TABLE tokens ADD COLUMN recovery_deadline_ms BIGINT;
ALTER TABLE tokens ADD COLUMN recovery_campaign_id TEXT;

CREATE TABLE campaigns (
    campaign_id       TEXT PRIMARY KEY,
    issuer_id         TEXT NOT NULL,
    product_id        TEXT NOT NULL,
    profile_version   TEXT NOT NULL,
    state             TEXT NOT NULL,
    state_reason      TEXT,
    rate_per_second   BIGINT NOT NULL,
    max_in_flight     BIGINT NOT NULL,
    canary_percent    BIGINT NOT NULL,
    canary_size       BIGINT NOT NULL,
    canary_max_failure_percent BIGINT NOT NULL,
    total             BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    finished_ms       BIGINT
);

CREATE TABLE campaign_tokens (
    campaign_id     TEXT NOT NULL REFERENCES campaigns (campaign_id),
    seq             BIGINT NOT NULL,
    token_id        TEXT NOT NULL,
    step            TEXT NOT NULL,
    reason          TEXT,
    started_ms      BIGINT,
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, seq)
);
CREATE UNIQUE INDEX campaign_tokens_by_token ON campaign_tokens (campaign_id, token_id);
CREATE INDEX campaign_tokens_by_step ON campaign_tokens (campaign_id, step, seq);
