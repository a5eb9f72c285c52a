//! Token requestors (merchants, PSPs keeping tokens on file) and where their updates go.

use super::{query, Row, Store, StoreError, Tx};
use crate::domain::notification::{Requestor, RequestorState};

pub(super) const COLUMNS: &str = "requestor_id, merchant_id, base_url, credentials, \
    credentials_version, secret_count, \
    max_in_flight, server_ca_pem, state, disabled_reason, created_ms, updated_ms";

pub(super) fn from_row(r: &Row) -> Result<Requestor, StoreError> {
    Ok(Requestor {
        requestor_id: r.get("requestor_id")?,
        merchant_id: r.get("merchant_id")?,
        base_url: r.get("base_url")?,
        credentials: crate::domain::Wrapped {
            bytes: r.get("credentials")?,
            master_version: r.get("credentials_version")?,
        },
        secret_count: r.get("secret_count")?,
        max_in_flight: r.get("max_in_flight")?,
        server_ca_pem: r.get("server_ca_pem")?,
        state: r.get("state")?,
        disabled_reason: r.get("disabled_reason")?,
        created_ms: r.get("created_ms")?,
        updated_ms: r.get("updated_ms")?,
    })
}

impl Tx {
    /// Creates or replaces a requestor. Replacing keeps its state: a disabled endpoint stays
    /// disabled until it is enabled again.
    pub async fn put_requestor(&mut self, r: &Requestor, now: i64) -> Result<(), StoreError> {
        self.check_master_version(r.credentials.master_version)
            .await?;
        query(
            "INSERT INTO token_requestors (requestor_id, merchant_id, base_url, credentials, secret_count, \
             max_in_flight, server_ca_pem, state, created_ms, updated_ms, credentials_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $9, $8, $7, $7, $10) \
             ON CONFLICT (requestor_id) DO UPDATE SET merchant_id = excluded.merchant_id, \
             base_url = excluded.base_url, credentials = excluded.credentials, \
             credentials_version = excluded.credentials_version, \
             secret_count = excluded.secret_count, max_in_flight = excluded.max_in_flight, \
             server_ca_pem = excluded.server_ca_pem, updated_ms = excluded.updated_ms",
        )
        .bind(&r.requestor_id)
        .bind(&r.merchant_id)
        .bind(&r.base_url)
        .bind(&r.credentials.bytes)
        .bind(r.secret_count)
        .bind(r.max_in_flight)
        .bind(now)
        .bind(RequestorState::Enabled)
        .bind(&r.server_ca_pem)
        .bind(r.credentials.master_version)
        .execute(self)
        .await?;
        Ok(())
    }

    pub async fn requestor(&mut self, requestor_id: &str) -> Result<Option<Requestor>, StoreError> {
        let row = query(&format!(
            "SELECT {COLUMNS} FROM token_requestors WHERE requestor_id = $1"
        ))
        .bind(requestor_id)
        .fetch_optional(self)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Enables or disables the requestor's endpoint. Returns whether the requestor exists.
    pub async fn set_requestor_state(
        &mut self,
        requestor_id: &str,
        state: RequestorState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE token_requestors SET state = $2, disabled_reason = $3, updated_ms = $4 \
             WHERE requestor_id = $1",
        )
        .bind(requestor_id)
        .bind(state)
        .bind(reason)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl Store {
    pub async fn requestor(&self, requestor_id: &str) -> Result<Option<Requestor>, StoreError> {
        let row = query(&format!(
            "SELECT {COLUMNS} FROM token_requestors WHERE requestor_id = $1"
        ))
        .bind(requestor_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every requestor.
    pub async fn all_requestors(&self) -> Result<Vec<Requestor>, StoreError> {
        let rows = query(&format!("SELECT {COLUMNS} FROM token_requestors"))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Every requestor whose endpoint is enabled.
    pub async fn enabled_requestors(&self) -> Result<Vec<Requestor>, StoreError> {
        let rows = query(&format!(
            "SELECT {COLUMNS} FROM token_requestors WHERE state = 'ENABLED' ORDER BY requestor_id"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }
}
