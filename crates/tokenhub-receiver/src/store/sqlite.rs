//! A store in a SQLite file (WAL), which survives restarts.
//!
//! Tables (created if absent):
//! - `tokenhub_tokens`: one row per token, the columns of the last update applied, the
//!   `lastUpdateTimestamp` as sent, the `webhook-id` that brought it, when it was applied;
//! - `tokenhub_webhook_ids`: every delivery id seen, with when (unix milliseconds), for
//!   deduplication; [`SqliteStore::prune_webhook_ids`] forgets old ones.
//!
//! Each apply is one `BEGIN IMMEDIATE` transaction (the write lock is taken at the start, so no
//! other connection or process can interleave between the checks and the write), and in this
//! process applies also queue on a mutex rather than spin on SQLite's busy handler.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

use super::{ApplyResult, Store, StoreError, StoredToken};
use crate::update::{parse_timestamp, TokenState, TokenUpdate};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS tokenhub_tokens (
        token_id TEXT PRIMARY KEY NOT NULL,
        merchant_id TEXT NOT NULL,
        token_state TEXT,
        token_last_digits TEXT,
        token_expiry_date TEXT,
        card_last_digits TEXT,
        card_expiry_date TEXT,
        card_art_id TEXT,
        last_update_timestamp TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        applied_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS tokenhub_webhook_ids (
        webhook_id TEXT PRIMARY KEY NOT NULL,
        seen_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS tokenhub_webhook_ids_seen_at ON tokenhub_webhook_ids (seen_at)",
];

const COLUMNS: &str = "token_id, merchant_id, token_state, token_last_digits, token_expiry_date, \
    card_last_digits, card_expiry_date, card_art_id, last_update_timestamp, webhook_id, applied_at";

/// Tokens and seen delivery ids in a SQLite database (the `sqlite` driver of sqlx).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path`, in WAL mode, and creates the
    /// tables.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool (e.g. the application's own database), creating the tables.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(Self {
            pool,
            write: Default::default(),
        })
    }

    /// The pool, to query the tables directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Forgets the delivery ids first seen more than `older_than` ago; returns how many. The
    /// hub retries one update for a bounded time, so ids older than that are safe to forget
    /// (a very late duplicate is still caught by the timestamp rule).
    pub async fn prune_webhook_ids(&self, older_than: Duration) -> Result<u64, StoreError> {
        let older = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Utc::now().timestamp_millis().saturating_sub(older);
        let done = sqlx::query("DELETE FROM tokenhub_webhook_ids WHERE seen_at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Closes the pool, waiting for the connections to finish.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

impl Store for SqliteStore {
    async fn apply(
        &self,
        webhook_id: &str,
        update: &TokenUpdate,
    ) -> Result<ApplyResult, StoreError> {
        let _write = self.write.lock().await;
        let now = Utc::now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;

        let seen = sqlx::query(
            "INSERT INTO tokenhub_webhook_ids (webhook_id, seen_at) VALUES (?, ?) \
             ON CONFLICT (webhook_id) DO NOTHING",
        )
        .bind(webhook_id)
        .bind(now.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        if seen.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(ApplyResult::Duplicate);
        }

        let previous = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tokenhub_tokens WHERE token_id = ?"
        ))
        .bind(&update.token_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| stored_token(&row))
        .transpose()?;
        if let Some(previous) = &previous {
            if previous.update.last_update_timestamp >= update.last_update_timestamp {
                tx.commit().await?;
                return Ok(ApplyResult::Obsolete);
            }
        }

        sqlx::query(&format!(
            "INSERT INTO tokenhub_tokens ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (token_id) DO UPDATE SET merchant_id = excluded.merchant_id, \
             token_state = excluded.token_state, token_last_digits = excluded.token_last_digits, \
             token_expiry_date = excluded.token_expiry_date, \
             card_last_digits = excluded.card_last_digits, \
             card_expiry_date = excluded.card_expiry_date, card_art_id = excluded.card_art_id, \
             last_update_timestamp = excluded.last_update_timestamp, \
             webhook_id = excluded.webhook_id, applied_at = excluded.applied_at"
        ))
        .bind(&update.token_id)
        .bind(&update.merchant_id)
        .bind(update.token_state.map(TokenState::as_str))
        .bind(&update.token_last_digits)
        .bind(&update.token_expiry_date)
        .bind(&update.card_last_digits)
        .bind(&update.card_expiry_date)
        .bind(&update.card_art_id)
        .bind(&update.last_update_timestamp_text)
        .bind(webhook_id)
        .bind(now.to_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ApplyResult::Applied {
            previous: previous.map(Box::new),
        })
    }

    async fn token(&self, token_id: &str) -> Result<Option<StoredToken>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tokenhub_tokens WHERE token_id = ?"
        ))
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| stored_token(&row))
        .transpose()
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tokenhub_tokens ORDER BY token_id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(stored_token)
        .collect()
    }
}

fn stored_token(row: &SqliteRow) -> Result<StoredToken, StoreError> {
    let token_state = row
        .try_get::<Option<String>, _>("token_state")?
        .map(|s| TokenState::from_str(&s))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let last_update_timestamp_text: String = row.try_get("last_update_timestamp")?;
    let last_update_timestamp = parse_timestamp(&last_update_timestamp_text)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let applied_at: String = row.try_get("applied_at")?;
    let applied_at = DateTime::parse_from_rfc3339(&applied_at)
        .map_err(|e| StoreError::Corrupt(format!("applied_at: {e}")))?
        .with_timezone(&Utc);
    Ok(StoredToken {
        update: TokenUpdate {
            token_id: row.try_get("token_id")?,
            merchant_id: row.try_get("merchant_id")?,
            token_state,
            token_last_digits: row.try_get("token_last_digits")?,
            token_expiry_date: row.try_get("token_expiry_date")?,
            card_last_digits: row.try_get("card_last_digits")?,
            card_expiry_date: row.try_get("card_expiry_date")?,
            card_art_id: row.try_get("card_art_id")?,
            last_update_timestamp,
            last_update_timestamp_text,
        },
        webhook_id: row.try_get("webhook_id")?,
        applied_at,
    })
}
