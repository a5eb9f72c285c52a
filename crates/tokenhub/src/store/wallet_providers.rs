//! Wallet providers, their API keys (the secret's hash only) and the devices they registered.

use super::{query, query_scalar, Row, Store, StoreError, Tx};
use crate::domain::wallet_provider::{ProviderKey, WalletProvider};

pub(super) fn from_row(r: &Row) -> Result<WalletProvider, StoreError> {
    Ok(WalletProvider {
        provider_id: r.get("provider_id")?,
        name: r.get("name")?,
        spki_sha256: r.get("spki_sha256")?,
    })
}

impl Tx {
    /// Creates or replaces a provider. `false` (nothing written) when another provider holds the
    /// same certificate pin.
    pub async fn put_wallet_provider(
        &mut self,
        p: &WalletProvider,
        now: i64,
    ) -> Result<bool, StoreError> {
        if let Some(pin) = &p.spki_sha256 {
            let holder: Option<String> =
                query_scalar("SELECT provider_id FROM wallet_providers WHERE spki_sha256 = $1")
                    .bind(pin)
                    .fetch_optional(&mut *self)
                    .await?;
            if holder.is_some_and(|h| h != p.provider_id) {
                return Ok(false);
            }
        }
        query(
            "INSERT INTO wallet_providers (provider_id, name, spki_sha256, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (provider_id) DO UPDATE SET name = excluded.name, \
             spki_sha256 = excluded.spki_sha256, updated_ms = excluded.updated_ms",
        )
        .bind(&p.provider_id)
        .bind(&p.name)
        .bind(&p.spki_sha256)
        .bind(now)
        .execute(self)
        .await?;
        Ok(true)
    }

    /// Records a new API key of a provider. `false` when the provider does not exist.
    pub async fn insert_provider_key(
        &mut self,
        provider_id: &str,
        key_id: &str,
        secret_hash: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "INSERT INTO wallet_provider_keys (key_id, provider_id, secret_hash, created_ms) \
             SELECT $1, provider_id, $3, $4 FROM wallet_providers WHERE provider_id = $2",
        )
        .bind(key_id)
        .bind(provider_id)
        .bind(secret_hash)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes a provider's key (a revoked key stays revoked, at its first revocation's time).
    /// `false` when the provider has no such key.
    pub async fn revoke_provider_key(
        &mut self,
        provider_id: &str,
        key_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE wallet_provider_keys SET revoked_ms = COALESCE(revoked_ms, $3) \
             WHERE provider_id = $1 AND key_id = $2",
        )
        .bind(provider_id)
        .bind(key_id)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The provider that registered a device (`None`: unknown device, or registered by none).
    pub async fn device_provider(&mut self, device_id: &str) -> Result<Option<String>, StoreError> {
        let owner: Option<Option<String>> =
            query_scalar("SELECT provider_id FROM devices WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(self)
                .await?;
        Ok(owner.flatten())
    }
}

impl Store {
    pub async fn wallet_provider(
        &self,
        provider_id: &str,
    ) -> Result<Option<WalletProvider>, StoreError> {
        let row = query(
            "SELECT provider_id, name, spki_sha256 FROM wallet_providers WHERE provider_id = $1",
        )
        .bind(provider_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The provider whose client certificate has this pin.
    pub async fn wallet_provider_by_pin(&self, pin: &str) -> Result<Option<String>, StoreError> {
        query_scalar("SELECT provider_id FROM wallet_providers WHERE spki_sha256 = $1")
            .bind(pin)
            .fetch_optional(self.reader())
            .await
    }

    /// A provider's keys, oldest first.
    pub async fn provider_keys(&self, provider_id: &str) -> Result<Vec<ProviderKey>, StoreError> {
        let rows = query(
            "SELECT key_id, created_ms, revoked_ms FROM wallet_provider_keys \
             WHERE provider_id = $1 ORDER BY created_ms, key_id",
        )
        .bind(provider_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderKey {
                    key_id: r.get("key_id")?,
                    created_ms: r.get("created_ms")?,
                    revoked_ms: r.get("revoked_ms")?,
                })
            })
            .collect()
    }

    /// A key that is not revoked: its provider and its secret's hash.
    pub async fn live_provider_key(
        &self,
        key_id: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = query(
            "SELECT provider_id, secret_hash FROM wallet_provider_keys \
             WHERE key_id = $1 AND revoked_ms IS NULL",
        )
        .bind(key_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| Ok((r.get("provider_id")?, r.get("secret_hash")?)))
            .transpose()
    }

    /// The provider that registered a device (`None`: unknown device, or registered by none).
    pub async fn device_provider(&self, device_id: &str) -> Result<Option<String>, StoreError> {
        let owner: Option<Option<String>> =
            query_scalar("SELECT provider_id FROM devices WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(self.reader())
                .await?;
        Ok(owner.flatten())
    }
}
