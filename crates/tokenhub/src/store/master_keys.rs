//! The master key's versions and a rotation's re-wrapping: the versions' records, the rows still
//! wrapped under an older version (data keys, requestor credentials, shared keys), read in key
//! order from a cursor and written back only if unchanged since they were read, and the job's
//! row (where it stands, which node holds it until when).

use super::{query, query_scalar, Row, Store, StoreError, Tx};
use crate::domain::master_key::{MasterKeyState, MasterKeyVersion, RewrapProgress};
use crate::domain::{StoredKey, Wrapped};

/// What a rotation re-wraps, in order; `Final` checks that nothing is left and retires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapPhase {
    DataKeys,
    Credentials,
    SharedKeys,
    Final,
}

impl RewrapPhase {
    fn as_str(self) -> &'static str {
        match self {
            Self::DataKeys => "DATA_KEYS",
            Self::Credentials => "CREDENTIALS",
            Self::SharedKeys => "SHARED_KEYS",
            Self::Final => "FINAL",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "DATA_KEYS" => Self::DataKeys,
            "CREDENTIALS" => Self::Credentials,
            "SHARED_KEYS" => Self::SharedKeys,
            "FINAL" => Self::Final,
            _ => return Err(StoreError::Corrupt(format!("re-wrap phase {s}"))),
        })
    }
}

/// A rotation's re-wrapping, as claimed by a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrap {
    pub target: i64,
    pub phase: RewrapPhase,
    /// The last key done in this phase ('' before the first).
    pub cursor: String,
    pub rewrapped: i64,
    pub started_ms: i64,
}

fn version_from_row(r: &Row) -> Result<MasterKeyVersion, StoreError> {
    let state: String = r.get("state")?;
    Ok(MasterKeyVersion {
        version: r.get("version")?,
        state: MasterKeyState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("master key state {state}")))?,
        check: r.get("check_value")?,
        fingerprint_key: r.get("fingerprint_key")?,
        created_ms: r.get("created_ms")?,
        retired_ms: r.get("retired_ms")?,
    })
}

const VERSIONS: &str =
    "SELECT version, state, check_value, fingerprint_key, created_ms, retired_ms \
    FROM master_keys ORDER BY version";

/// How many rows are wrapped under a version older than `$1`.
const REMAINING: &str = "SELECT \
    (SELECT COUNT(*) FROM keyring.token_keys WHERE master_version < $1) \
    + (SELECT COUNT(*) FROM token_requestors WHERE credentials_version < $1) \
    + (SELECT COUNT(*) FROM shared_keys WHERE master_version < $1)";

impl Store {
    /// Every master-key version the store records, oldest first.
    pub async fn master_key_versions(&self) -> Result<Vec<MasterKeyVersion>, StoreError> {
        let rows = query(VERSIONS).fetch_all(self.reader()).await?;
        rows.iter().map(version_from_row).collect()
    }

    /// How far the running rotation (to `target`) has come.
    pub async fn rewrap_progress(&self, target: i64) -> Result<RewrapProgress, StoreError> {
        let remaining: i64 = query_scalar(REMAINING)
            .bind(target)
            .fetch_one(self.reader())
            .await?;
        let rewrapped: Option<i64> =
            query_scalar("SELECT rewrapped FROM master_key_rewraps WHERE target = $1")
                .bind(target)
                .fetch_optional(self.reader())
                .await?;
        Ok(RewrapProgress {
            remaining,
            rewrapped: rewrapped.unwrap_or(0),
        })
    }

    /// Up to `limit` data keys after `cursor` (by token id) wrapped under a version older than
    /// `target`.
    pub async fn data_keys_to_rewrap(
        &self,
        cursor: &str,
        target: i64,
        limit: i64,
    ) -> Result<Vec<(String, Wrapped)>, StoreError> {
        let rows = query(
            "SELECT token_id, wrapped, master_version FROM keyring.token_keys \
             WHERE token_id > $1 AND master_version < $2 ORDER BY token_id LIMIT $3",
        )
        .bind(cursor)
        .bind(target)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| keyed_wrap(r, "token_id", "wrapped", "master_version"))
            .collect()
    }

    /// Up to `limit` requestors after `cursor` whose credentials are sealed under a version
    /// older than `target`.
    pub async fn credentials_to_rewrap(
        &self,
        cursor: &str,
        target: i64,
        limit: i64,
    ) -> Result<Vec<(String, Wrapped)>, StoreError> {
        let rows = query(
            "SELECT requestor_id, credentials, credentials_version FROM token_requestors \
             WHERE requestor_id > $1 AND credentials_version < $2 ORDER BY requestor_id LIMIT $3",
        )
        .bind(cursor)
        .bind(target)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| keyed_wrap(r, "requestor_id", "credentials", "credentials_version"))
            .collect()
    }
}

fn keyed_wrap(
    r: &Row,
    id: &str,
    bytes: &str,
    version: &str,
) -> Result<(String, Wrapped), StoreError> {
    Ok((
        r.get(id)?,
        Wrapped {
            bytes: r.get(bytes)?,
            master_version: r.get(version)?,
        },
    ))
}

impl Tx {
    /// Records version 1 when the store records none (two nodes starting together: the first
    /// one's record stays). Returns the versions as committed.
    pub async fn record_first_master_key(
        &mut self,
        first: &MasterKeyVersion,
    ) -> Result<Vec<MasterKeyVersion>, StoreError> {
        let any: Option<i64> = query_scalar("SELECT version FROM master_keys LIMIT 1")
            .fetch_optional(&mut *self)
            .await?;
        if any.is_none() {
            insert_version(self, first).await?;
        }
        let rows = query(VERSIONS).fetch_all(&mut *self).await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Starts a rotation to `next`: the active versions become RETIRING, `next` is recorded
    /// ACTIVE and its re-wrapping queued. `false` (nothing done) while another rotation runs.
    pub async fn begin_rotation(
        &mut self,
        next: &MasterKeyVersion,
        now: i64,
    ) -> Result<bool, StoreError> {
        let running: Option<i64> = query_scalar("SELECT target FROM master_key_rewraps LIMIT 1")
            .fetch_optional(&mut *self)
            .await?;
        if running.is_some() {
            return Ok(false);
        }
        query("UPDATE master_keys SET state = 'RETIRING' WHERE state = 'ACTIVE'")
            .execute(&mut *self)
            .await?;
        insert_version(self, next).await?;
        query(
            "INSERT INTO master_key_rewraps (target, phase, cursor, rewrapped, started_ms) \
             VALUES ($1, $2, '', 0, $3)",
        )
        .bind(next.version)
        .bind(RewrapPhase::DataKeys.as_str())
        .bind(now)
        .execute(&mut *self)
        .await?;
        Ok(true)
    }

    /// Takes the running re-wrapping for `node` until `until` when no other node holds it.
    pub async fn claim_rewrap(
        &mut self,
        node: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<Rewrap>, StoreError> {
        let claimed = query(
            "UPDATE master_key_rewraps SET lease_owner = $1, lease_until_ms = $2 \
             WHERE lease_owner IS NULL OR lease_owner = $1 OR lease_until_ms < $3",
        )
        .bind(node)
        .bind(until)
        .bind(now)
        .execute(&mut *self)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        let row = query(
            "SELECT target, phase, cursor, rewrapped, started_ms FROM master_key_rewraps \
             WHERE lease_owner = $1",
        )
        .bind(node)
        .fetch_optional(&mut *self)
        .await?;
        row.map(|r| {
            let phase: String = r.get("phase")?;
            Ok(Rewrap {
                target: r.get("target")?,
                phase: RewrapPhase::parse(&phase)?,
                cursor: r.get("cursor")?,
                rewrapped: r.get("rewrapped")?,
                started_ms: r.get("started_ms")?,
            })
        })
        .transpose()
    }

    /// Moves `node`'s re-wrapping on (a node whose lease was taken over changes nothing:
    /// `false`, and its transaction is rolled back by the caller).
    pub async fn advance_rewrap(
        &mut self,
        node: &str,
        to: &Rewrap,
        done: i64,
    ) -> Result<bool, StoreError> {
        let moved = query(
            "UPDATE master_key_rewraps SET phase = $1, cursor = $2, rewrapped = rewrapped + $3 \
             WHERE target = $4 AND lease_owner = $5",
        )
        .bind(to.phase.as_str())
        .bind(&to.cursor)
        .bind(done)
        .bind(to.target)
        .bind(node)
        .execute(self)
        .await?;
        Ok(moved.rows_affected() == 1)
    }

    /// Writes a re-wrapped data key if the row still holds what was read.
    pub async fn rewrap_data_key(
        &mut self,
        token_id: &str,
        from: &Wrapped,
        to: &Wrapped,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE keyring.token_keys SET wrapped = $1, master_version = $2 \
             WHERE token_id = $3 AND master_version = $4 AND wrapped = $5",
        )
        .bind(to.bytes.as_slice())
        .bind(to.master_version)
        .bind(token_id)
        .bind(from.master_version)
        .bind(from.bytes.as_slice())
        .execute(self)
        .await?;
        Ok(())
    }

    /// Writes re-sealed credentials if the row still holds what was read.
    pub async fn rewrap_credentials(
        &mut self,
        requestor_id: &str,
        from: &Wrapped,
        to: &Wrapped,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE token_requestors SET credentials = $1, credentials_version = $2 \
             WHERE requestor_id = $3 AND credentials_version = $4 AND credentials = $5",
        )
        .bind(to.bytes.as_slice())
        .bind(to.master_version)
        .bind(requestor_id)
        .bind(from.master_version)
        .bind(from.bytes.as_slice())
        .execute(self)
        .await?;
        Ok(())
    }

    /// Writes a re-wrapped shared key if the row still holds what was read.
    pub async fn rewrap_shared_key(
        &mut self,
        from: &StoredKey,
        to: &StoredKey,
    ) -> Result<(), StoreError> {
        query(
            "UPDATE shared_keys SET wrapped = $1, master_version = $2 \
             WHERE tsp_id = $3 AND key_index = $4 AND master_version = $5 AND wrapped = $6",
        )
        .bind(to.wrapped.as_slice())
        .bind(to.master_version)
        .bind(&from.tsp_id)
        .bind(&from.key_index)
        .bind(from.master_version)
        .bind(from.wrapped.as_slice())
        .execute(self)
        .await?;
        Ok(())
    }

    /// Ends `node`'s rotation to `target` when nothing is wrapped under an older version any
    /// more: the older versions are RETIRED (returned, to be destroyed) and the job removed.
    /// The versions are locked first, so that a data key written under one of them either
    /// committed before the count (and is counted) or sees it retired and is refused.
    pub async fn finish_rotation(
        &mut self,
        node: &str,
        target: i64,
        now: i64,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let held: Option<i64> = query_scalar(
            "SELECT target FROM master_key_rewraps WHERE target = $1 AND lease_owner = $2",
        )
        .bind(target)
        .bind(node)
        .fetch_optional(&mut *self)
        .await?;
        if held.is_none() {
            return Ok(None);
        }
        let retiring: Vec<i64> = query_scalar(
            "UPDATE master_keys SET state = 'RETIRED', retired_ms = $1 \
             WHERE state = 'RETIRING' AND version < $2 RETURNING version",
        )
        .bind(now)
        .bind(target)
        .fetch_all(&mut *self)
        .await?;
        let remaining: i64 = query_scalar(REMAINING)
            .bind(target)
            .fetch_one(&mut *self)
            .await?;
        if remaining > 0 {
            return Err(StoreError::RewrapIncomplete(remaining));
        }
        query("DELETE FROM master_key_rewraps WHERE target = $1")
            .bind(target)
            .execute(self)
            .await?;
        Ok(Some(retiring))
    }

    /// Refuses a new wrap under a version that is retired (or unknown): the node that made it
    /// has not seen the rotation end yet. Locks the version's row against a rotation ending.
    pub async fn check_master_version(&mut self, version: i64) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT state FROM master_keys WHERE version = $1{}",
            match self.dialect() {
                super::Dialect::Sqlite => "",
                super::Dialect::Postgres => " FOR SHARE",
            }
        );
        let state: Option<String> = query_scalar(&sql)
            .bind(version)
            .fetch_optional(&mut *self)
            .await?;
        match state.as_deref() {
            Some("ACTIVE" | "RETIRING") => Ok(()),
            Some(_) => Err(StoreError::MasterKeyRetired(version)),
            // A store whose versions are not recorded yet (before its first start) takes any.
            None => {
                let any: Option<i64> = query_scalar("SELECT version FROM master_keys LIMIT 1")
                    .fetch_optional(&mut *self)
                    .await?;
                any.map_or(Ok(()), |_| Err(StoreError::MasterKeyRetired(version)))
            }
        }
    }
}

async fn insert_version(tx: &mut Tx, v: &MasterKeyVersion) -> Result<(), StoreError> {
    query(
        "INSERT INTO master_keys (version, state, check_value, fingerprint_key, created_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(v.version)
    .bind(v.state.as_str())
    .bind(v.check.as_slice())
    .bind(v.fingerprint_key.as_deref())
    .bind(v.created_ms)
    .execute(tx)
    .await?;
    Ok(())
}
