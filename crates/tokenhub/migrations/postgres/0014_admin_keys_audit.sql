-- Admin API keys: a role, the issuers an issuer-admin acts for (comma-separated), the secret only
-- as its SHA-256. A revoked key stays, so the audit log's actors keep their names.
CREATE TABLE admin_keys (
    key_id       TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    issuers      TEXT NOT NULL DEFAULT '',
    label        TEXT NOT NULL DEFAULT '',
    secret_hash  BYTEA NOT NULL,
    created_ms   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    revoked_ms   BIGINT
);

-- The audit log: append-only, each entry's hash covers the previous hash and its own content.
CREATE TABLE audit_log (
    seq             BIGINT PRIMARY KEY,
    at_ms           BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    object_type     TEXT NOT NULL,
    object_id       TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    status          BIGINT NOT NULL,
    prev_hash       BYTEA NOT NULL,
    hash            BYTEA NOT NULL
);

-- The chain's head: the last seq and hash, updated with every append (a removed last entry is
-- found against it; appends serialise on its row lock, `SELECT ... FOR UPDATE`).
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- The hub never changes or removes an entry; the chain finds whoever does it outside the hub.
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
