//! The keys shared with TSPs: stored wrapped, one per owning TSP and `keyIndex`, with their
//! purpose and state.

use super::{query, query_scalar, Tx};
use super::{Store, StoreError};
use crate::domain::catalog::PutImmutable;
use crate::domain::{KeyPurpose, KeyState, StoredKey};
use tokenhub_crypto::Algorithm;

/// What retiring a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// It was active and is retired now.
    Retired,
    /// It was retired already.
    Already,
    /// The TSP has no key of that index.
    Missing,
}

impl Tx {
    /// Stores a shared key once for its TSP; a second put of the same key (same KCV and purpose)
    /// changes nothing, another key under the same TSP and index is a conflict.
    pub async fn insert_shared_key(
        &mut self,
        key: &StoredKey,
        now: i64,
    ) -> Result<PutImmutable, StoreError> {
        self.check_master_version(key.master_version).await?;
        let existing =
            query("SELECT kcv, purpose FROM shared_keys WHERE tsp_id = $1 AND key_index = $2")
                .bind(&key.tsp_id)
                .bind(&key.key_index)
                .fetch_optional(&mut *self)
                .await?;
        if let Some(row) = existing {
            let kcv: String = row.get("kcv")?;
            let purpose: String = row.get("purpose")?;
            let same = kcv.eq_ignore_ascii_case(&key.kcv) && purpose == key.purpose.as_str();
            return Ok(if same {
                PutImmutable::Unchanged
            } else {
                PutImmutable::Conflict
            });
        }
        query(
            "INSERT INTO shared_keys (tsp_id, key_index, algorithm, purpose, state, kcv, wrapped, \
             bound, created_ms, master_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&key.tsp_id)
        .bind(&key.key_index)
        .bind(key.algorithm.as_str())
        .bind(key.purpose.as_str())
        .bind(key.state.as_str())
        .bind(&key.kcv)
        .bind(&key.wrapped)
        .bind(key.bound)
        .bind(now)
        .bind(key.master_version)
        .execute(self)
        .await?;
        Ok(PutImmutable::Created)
    }

    /// Retires a TSP's key: it takes no new data from then on (kept for the record).
    pub async fn retire_shared_key(
        &mut self,
        tsp_id: &str,
        key_index: &str,
        now: i64,
    ) -> Result<Retired, StoreError> {
        let state: Option<String> =
            query_scalar("SELECT state FROM shared_keys WHERE tsp_id = $1 AND key_index = $2")
                .bind(tsp_id)
                .bind(key_index)
                .fetch_optional(&mut *self)
                .await?;
        match state.as_deref().map(KeyState::parse) {
            None => Ok(Retired::Missing),
            Some(Some(KeyState::Retired)) => Ok(Retired::Already),
            Some(_) => {
                query(
                    "UPDATE shared_keys SET state = $1, retired_ms = $2 \
                     WHERE tsp_id = $3 AND key_index = $4",
                )
                .bind(KeyState::Retired.as_str())
                .bind(now)
                .bind(tsp_id)
                .bind(key_index)
                .execute(self)
                .await?;
                Ok(Retired::Retired)
            }
        }
    }
}

impl Store {
    /// Every shared key, by owner then index.
    pub async fn shared_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = query(
            "SELECT tsp_id, key_index, algorithm, purpose, state, kcv, wrapped, bound, master_version \
             FROM shared_keys ORDER BY tsp_id, key_index",
        )
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|r| {
                let alg: String = r.get("algorithm")?;
                let purpose: String = r.get("purpose")?;
                let state: String = r.get("state")?;
                Ok(StoredKey {
                    tsp_id: r.get("tsp_id")?,
                    key_index: r.get("key_index")?,
                    algorithm: Algorithm::parse(&alg)
                        .map_err(|_| StoreError::Corrupt(format!("shared key algorithm {alg}")))?,
                    purpose: KeyPurpose::parse(&purpose).ok_or_else(|| {
                        StoreError::Corrupt(format!("shared key purpose {purpose}"))
                    })?,
                    state: KeyState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("shared key state {state}")))?,
                    kcv: r.get("kcv")?,
                    wrapped: r.get("wrapped")?,
                    bound: r.get("bound")?,
                    master_version: r.get("master_version")?,
                })
            })
            .collect()
    }
}
