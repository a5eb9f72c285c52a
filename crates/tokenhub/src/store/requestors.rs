//! Token requestors (merchants, PSPs keeping tokens on file) and where their updates go.

use super::{query, Row, Tx};
use super::{Store, StoreError};

/// A requestor's endpoint is enabled until it answers `410 Gone` (or an operator disables it).
pub const ENABLED: &str = "ENABLED";
pub const DISABLED: &str = "DISABLED";

/// A token requestor as the store holds it. `credentials` (the API key and the signing secrets)
/// are sealed under the master key; only `keys` opens them.
#[derive(Clone)]
pub struct Requestor {
    pub requestor_id: String,
    pub merchant_id: String,
    pub base_url: String,
    pub credentials: Vec<u8>,
    pub secret_count: i64,
    pub max_in_flight: i64,
    pub state: String,
    pub disabled_reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl std::fmt::Debug for Requestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requestor")
            .field("requestor_id", &self.requestor_id)
            .field("base_url", &self.base_url)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "requestor_id, merchant_id, base_url, credentials, secret_count, \
    max_in_flight, state, disabled_reason, created_ms, updated_ms";

fn from_row(r: &Row) -> Result<Requestor, StoreError> {
    Ok(Requestor {
        requestor_id: r.try_get(0)?,
        merchant_id: r.try_get(1)?,
        base_url: r.try_get(2)?,
        credentials: r.try_get(3)?,
        secret_count: r.try_get(4)?,
        max_in_flight: r.try_get(5)?,
        state: r.try_get(6)?,
        disabled_reason: r.try_get(7)?,
        created_ms: r.try_get(8)?,
        updated_ms: r.try_get(9)?,
    })
}

/// Creates or replaces a requestor. Replacing keeps its state: a disabled endpoint stays disabled
/// until it is enabled again.
pub async fn put(conn: &mut Tx, r: &Requestor, now: i64) -> Result<(), StoreError> {
    query(
        "INSERT INTO token_requestors (requestor_id, merchant_id, base_url, credentials, secret_count, \
         max_in_flight, state, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, 'ENABLED', $7, $7) \
         ON CONFLICT (requestor_id) DO UPDATE SET merchant_id = excluded.merchant_id, \
         base_url = excluded.base_url, credentials = excluded.credentials, \
         secret_count = excluded.secret_count, max_in_flight = excluded.max_in_flight, \
         updated_ms = excluded.updated_ms",
    )
    .bind(&r.requestor_id)
    .bind(&r.merchant_id)
    .bind(&r.base_url)
    .bind(&r.credentials)
    .bind(r.secret_count)
    .bind(r.max_in_flight)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Tx, requestor_id: &str) -> Result<Option<Requestor>, StoreError> {
    let row = query(&format!(
        "SELECT {COLUMNS} FROM token_requestors WHERE requestor_id = $1"
    ))
    .bind(requestor_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Enables or disables the requestor's endpoint. Returns whether the requestor exists.
pub async fn set_state(
    conn: &mut Tx,
    requestor_id: &str,
    state: &str,
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
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
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
