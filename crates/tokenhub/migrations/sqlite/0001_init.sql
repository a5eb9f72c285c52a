-- tokenhub schema, SQLite dialect. Times are milliseconds since the Unix epoch.
CREATE TABLE tsps (
    tsp_id      TEXT PRIMARY KEY,
    base_url    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE issuers (
    issuer_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    tsp_id      TEXT NOT NULL REFERENCES tsps (tsp_id),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE profile_versions (
    issuer_id   TEXT NOT NULL REFERENCES issuers (issuer_id),
    product_id  TEXT NOT NULL,
    version     TEXT NOT NULL,
    definition  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, product_id, version)
);

CREATE TABLE products (
    issuer_id        TEXT NOT NULL,
    product_id       TEXT NOT NULL,
    current_version  TEXT NOT NULL,
    deployed_ms      INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, product_id),
    FOREIGN KEY (issuer_id, product_id, current_version)
        REFERENCES profile_versions (issuer_id, product_id, version)
);

CREATE TABLE shared_keys (
    key_index   TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    kcv         TEXT NOT NULL,
    wrapped     BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE tokens (
    token_id            TEXT PRIMARY KEY,
    issuer_id           TEXT NOT NULL REFERENCES issuers (issuer_id),
    product_id          TEXT NOT NULL,
    profile_version     TEXT NOT NULL,
    device_id           TEXT NOT NULL REFERENCES devices (device_id),
    wallet_card_ref_id  TEXT NOT NULL,
    token_requestor_id  TEXT,
    state               TEXT NOT NULL,
    token_exp           TEXT,
    token_last4         TEXT,
    data_key            BLOB NOT NULL,
    data_deadline_ms    INTEGER NOT NULL,
    received_elements   TEXT NOT NULL DEFAULT '',
    correlation_id      TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL
);
CREATE INDEX tokens_by_card ON tokens (issuer_id, wallet_card_ref_id);
CREATE INDEX tokens_by_product_state ON tokens (issuer_id, product_id, state);

CREATE TABLE token_data (
    token_id        TEXT NOT NULL REFERENCES tokens (token_id),
    seq             INTEGER NOT NULL,
    operation       TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    element_names   TEXT NOT NULL,
    sealed          BLOB NOT NULL,
    created_ms      INTEGER NOT NULL,
    PRIMARY KEY (token_id, seq)
);
CREATE INDEX token_data_by_correlation ON token_data (token_id, correlation_id);

CREATE TABLE token_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id        TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    event           TEXT NOT NULL,
    correlation_id  TEXT NOT NULL
);
CREATE INDEX token_events_by_token ON token_events (token_id, id);
