-- Personalization delivery to devices, element fingerprints, the durable outbox.
ALTER TABLE tokens ADD COLUMN failure_reason TEXT;

CREATE TABLE personalizations (
    personalization_id  TEXT PRIMARY KEY,
    token_id            TEXT NOT NULL REFERENCES tokens (token_id),
    device_id           TEXT NOT NULL,
    profile_version     TEXT NOT NULL,
    kind                TEXT NOT NULL,
    state               TEXT NOT NULL,
    enc                 BLOB,
    ciphertext          BLOB,
    tries               INTEGER NOT NULL DEFAULT 0,
    next_offer_ms       INTEGER NOT NULL,
    expires_ms          INTEGER NOT NULL,
    result_reason       TEXT,
    correlation_id      TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL
);
CREATE INDEX personalizations_by_device ON personalizations (device_id, state, next_offer_ms);
CREATE INDEX personalizations_by_state ON personalizations (state, next_offer_ms);
CREATE INDEX personalizations_by_token ON personalizations (token_id);

CREATE TABLE token_fingerprints (
    token_id     TEXT NOT NULL REFERENCES tokens (token_id),
    name         TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,
    PRIMARY KEY (token_id, name)
);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL,
    token_id         TEXT NOT NULL,
    tsp_id           TEXT NOT NULL,
    correlation_id   TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    locked_until_ms  INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);
CREATE INDEX outbox_by_token ON outbox (token_id, state, id);
