//! Each token's data key, wrapped under the master key: a row of its own, held only while the
//! token holds data. It is made when data arrives for a token that holds none, and deleted in the
//! transaction that deletes the data it sealed ([`Tx::delete_token_data`]), so the sealed parts
//! left in free pages, the log or a backup of the store no longer open (crypto-shredding).

use super::{query, Row, Store, StoreError, Tx};

/// A data key as stored: wrapped under the master key, with the master key's version.
pub use crate::domain::Wrapped as DataKey;

const SELECT: &str = "SELECT wrapped, master_version FROM keyring.token_keys WHERE token_id = $1";

fn key_from_row(r: &Row) -> Result<DataKey, StoreError> {
    Ok(DataKey {
        bytes: r.get("wrapped")?,
        master_version: r.get("master_version")?,
    })
}

impl Store {
    /// The token's data key, as last committed; `None` while the token holds no data.
    pub async fn data_key(&self, token_id: &str) -> Result<Option<DataKey>, StoreError> {
        let row = query(SELECT)
            .bind(token_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// How many data keys the store holds.
    pub async fn data_key_count(&self) -> Result<i64, StoreError> {
        super::query_scalar("SELECT COUNT(*) FROM keyring.token_keys")
            .fetch_one(self.reader())
            .await
    }
}

impl Tx {
    /// The token's data key, as this transaction sees it.
    pub async fn data_key(&mut self, token_id: &str) -> Result<Option<DataKey>, StoreError> {
        let row = query(SELECT).bind(token_id).fetch_optional(self).await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Makes `key` (a new one) the token's data key when the token has none. Returns whether it
    /// did (`false`: another call gave the token a key first).
    pub async fn keep_data_key(
        &mut self,
        token_id: &str,
        key: &DataKey,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.check_master_version(key.master_version).await?;
        let done = query(
            "INSERT INTO keyring.token_keys (token_id, wrapped, master_version, created_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(token_id)
        .bind(key.bytes.as_slice())
        .bind(key.master_version)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `key` is still the token's data key (it is destroyed with the data it sealed).
    pub async fn holds_data_key(
        &mut self,
        token_id: &str,
        key: &DataKey,
    ) -> Result<bool, StoreError> {
        let held = query("SELECT 1 FROM keyring.token_keys WHERE token_id = $1 AND wrapped = $2")
            .bind(token_id)
            .bind(key.bytes.as_slice())
            .fetch_optional(self)
            .await?;
        Ok(held.is_some())
    }

    /// Destroys the token's data key: what it sealed no longer opens.
    pub(super) async fn shred_data_key(&mut self, token_id: &str) -> Result<(), StoreError> {
        query("DELETE FROM keyring.token_keys WHERE token_id = $1")
            .bind(token_id)
            .execute(self)
            .await?;
        Ok(())
    }
}
