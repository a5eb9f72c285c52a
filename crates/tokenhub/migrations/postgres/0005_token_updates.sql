-- Token lifecycle and token updates to token requestors.
-- What the token's requestor is told besides its state; the change the hub holds as the newest
-- (lastUpdateTimestamp, ms since the epoch); whether the device still has to remove the token.
ALTER TABLE tokens ADD COLUMN card_last_digits TEXT;
ALTER TABLE tokens ADD COLUMN card_expiry_date TEXT;
ALTER TABLE tokens ADD COLUMN card_art_id TEXT;
ALTER TABLE tokens ADD COLUMN last_update_ms BIGINT;
ALTER TABLE tokens ADD COLUMN removal_pending BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tokens_removals ON tokens (device_id, removal_pending);

CREATE TABLE token_requestors (
    requestor_id     TEXT PRIMARY KEY,
    merchant_id      TEXT NOT NULL,
    base_url         TEXT NOT NULL,
    -- The API key and the signing secrets, sealed under the master key.
    credentials      BYTEA NOT NULL,
    secret_count     BIGINT NOT NULL,
    max_in_flight    BIGINT NOT NULL,
    state            TEXT NOT NULL,
    disabled_reason  TEXT,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);

-- Token updates owed to requestors: one row per update, delivered in order per token and
-- requestor; a newer one supersedes an older one that was not sent yet.
CREATE TABLE notifications (
    id               BIGSERIAL PRIMARY KEY,
    webhook_id       TEXT NOT NULL UNIQUE,
    requestor_id     TEXT NOT NULL REFERENCES token_requestors (requestor_id),
    token_id         TEXT NOT NULL,
    correlation_id   TEXT NOT NULL,
    payload          TEXT NOT NULL,
    last_update_ms   BIGINT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    locked_until_ms  BIGINT NOT NULL DEFAULT 0,
    last_status      BIGINT,
    last_error       TEXT,
    created_ms       BIGINT NOT NULL,
    delivered_ms     BIGINT,
    updated_ms       BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (requestor_id, state, next_attempt_ms, id);
CREATE INDEX notifications_by_token ON notifications (token_id, requestor_id, state, id);

CREATE TABLE notification_attempts (
    id               BIGSERIAL PRIMARY KEY,
    notification_id  BIGINT NOT NULL REFERENCES notifications (id),
    at_ms            BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    status           BIGINT,
    error            TEXT
);
CREATE INDEX notification_attempts_by_notification ON notification_attempts (notification_id, id);
