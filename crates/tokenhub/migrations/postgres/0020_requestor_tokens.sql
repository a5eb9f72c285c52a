-- The requestor API: token requestors' API keys, the card encryption key each TSP publishes, and
-- the card-on-file tokens requestors made. No PAN of any kind (card or token) is kept.

-- A key is `trk_<key_id>_<secret>`: found by its id, then its secret's hash compared.
CREATE TABLE requestor_keys (
    key_id        TEXT PRIMARY KEY,
    requestor_id  TEXT NOT NULL REFERENCES token_requestors (requestor_id),
    secret_hash   BYTEA NOT NULL,
    created_ms    BIGINT NOT NULL,
    revoked_ms    BIGINT
);
CREATE INDEX requestor_keys_requestor ON requestor_keys (requestor_id);

-- The TSP's public JWK requestors encrypt card data to (only the TSP opens it).
ALTER TABLE tsps ADD COLUMN card_encryption_jwk TEXT;

CREATE TABLE requestor_tokens (
    token_id             TEXT PRIMARY KEY,
    requestor_id         TEXT NOT NULL REFERENCES token_requestors (requestor_id),
    tsp_id               TEXT NOT NULL REFERENCES tsps (tsp_id),
    issuer_id            TEXT NOT NULL,
    state                TEXT NOT NULL,
    token_last_digits    TEXT,
    token_expiry_date    TEXT,
    card_last_digits     TEXT,
    card_expiry_date     TEXT,
    card_art_id          TEXT,
    requestor_reference  TEXT,
    -- The requestor's idempotency key and the SHA-256 of the request it came with.
    idempotency_key      TEXT NOT NULL,
    request_hash         BYTEA NOT NULL,
    last_update_ms       BIGINT NOT NULL,
    created_ms           BIGINT NOT NULL,
    updated_ms           BIGINT NOT NULL,
    UNIQUE (requestor_id, idempotency_key)
);
