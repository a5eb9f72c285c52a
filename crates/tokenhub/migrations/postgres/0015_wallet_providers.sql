-- Wallet providers: the callers of the wallet API. A provider is recognised by one of its API keys
-- (only the SHA-256 of the key's secret is kept) or by the SPKI pin of its client certificate.
CREATE TABLE wallet_providers (
    provider_id  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    -- Lower-case hex of the SHA-256 of the client certificate's SubjectPublicKeyInfo.
    spki_sha256  TEXT UNIQUE,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);

-- A key is `twk_<key_id>_<secret>`: found by its id, then its secret's hash compared.
CREATE TABLE wallet_provider_keys (
    key_id       TEXT PRIMARY KEY,
    provider_id  TEXT NOT NULL REFERENCES wallet_providers (provider_id),
    secret_hash  BYTEA NOT NULL,
    created_ms   BIGINT NOT NULL,
    revoked_ms   BIGINT
);
CREATE INDEX wallet_provider_keys_provider ON wallet_provider_keys (provider_id);

-- The provider that registered the device; devices registered before providers existed have none,
-- so no provider may act on them.
ALTER TABLE devices ADD COLUMN provider_id TEXT REFERENCES wallet_providers (provider_id);
