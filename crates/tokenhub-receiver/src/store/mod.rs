//! Where a receiver keeps the tokens' last state and the delivery ids it has seen.
//!
//! The one write, [`Store::apply`], is a check-and-set that must be atomic: the duplicate check
//! (the `webhook-id` already seen), the order check (the update not newer than the stored state)
//! and the write happen under one lock or in one transaction, so that concurrent deliveries for
//! the same token can never let an older state overwrite a newer one.

mod memory;
mod sqlite;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::update::TokenUpdate;

/// A token as the store holds it: the last update applied, and which delivery brought it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredToken {
    /// The token's state: the body of the newest update applied.
    #[serde(flatten)]
    pub update: TokenUpdate,
    /// The `webhook-id` of the delivery that brought it.
    pub webhook_id: String,
    /// When the receiver applied it.
    pub applied_at: DateTime<Utc>,
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyResult {
    /// The update is now the token's state; `previous` is the state it replaced, if any.
    Applied {
        /// The token as it was stored before, `None` for a token seen for the first time.
        previous: Option<Box<StoredToken>>,
    },
    /// This `webhook-id` was seen before: nothing changed.
    Duplicate,
    /// The stored state is as new as this update or newer: nothing changed but the
    /// `webhook-id` is remembered.
    Obsolete,
}

/// A store failure (I/O, database). The hub will retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Stored data could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// The storage a [`crate::Receiver`] needs.
///
/// `apply` must be atomic, see the module documentation. The futures are `Send` so that a
/// receiver can serve from a multi-threaded runtime; implementations may use `async fn`.
pub trait Store: Send + Sync + 'static {
    /// Applies `update`, delivered as `webhook_id`, in one atomic step:
    /// - `webhook_id` already seen → [`ApplyResult::Duplicate`];
    /// - else the stored state's `lastUpdateTimestamp` ≥ the update's → remember `webhook_id`,
    ///   [`ApplyResult::Obsolete`];
    /// - else store the update as the token's state, remember `webhook_id`,
    ///   [`ApplyResult::Applied`] with the replaced state.
    fn apply(
        &self,
        webhook_id: &str,
        update: &TokenUpdate,
    ) -> impl Future<Output = Result<ApplyResult, StoreError>> + Send;

    /// One token's stored state.
    fn token(
        &self,
        token_id: &str,
    ) -> impl Future<Output = Result<Option<StoredToken>, StoreError>> + Send;

    /// Every token's stored state, by `tokenId`.
    fn tokens(&self) -> impl Future<Output = Result<Vec<StoredToken>, StoreError>> + Send;
}
