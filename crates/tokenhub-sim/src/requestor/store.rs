//! The receiver's store, in memory or in a SQLite file, and the hooks that remember PAN
//! discards and keep the merchant's book.

use std::sync::{Arc, Mutex};

use super::book::Book;
use tokenhub_receiver::{
    ApplyResult, Hooks, MemoryStore, SqliteStore, Store, StoreError, StoredToken, TokenUpdate,
};

/// Either store of `tokenhub-receiver`.
#[derive(Debug)]
pub(crate) enum SimStore {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
}

impl Store for SimStore {
    async fn apply(
        &self,
        webhook_id: &str,
        update: &TokenUpdate,
    ) -> Result<ApplyResult, StoreError> {
        match self {
            SimStore::Memory(s) => s.apply(webhook_id, update).await,
            SimStore::Sqlite(s) => s.apply(webhook_id, update).await,
        }
    }

    async fn token(&self, token_id: &str) -> Result<Option<StoredToken>, StoreError> {
        match self {
            SimStore::Memory(s) => s.token(token_id).await,
            SimStore::Sqlite(s) => s.token(token_id).await,
        }
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        match self {
            SimStore::Memory(s) => s.tokens().await,
            SimStore::Sqlite(s) => s.tokens().await,
        }
    }
}

impl SimStore {
    pub(crate) async fn close(&self) {
        if let SimStore::Sqlite(s) = self {
            s.close().await;
        }
    }
}

/// Remembers which tokens' PANs were discarded, in order, and tells the merchant's book.
#[derive(Debug, Default)]
pub(crate) struct SimHooks {
    discarded: Mutex<Vec<String>>,
    pub(crate) book: Arc<Book>,
}

impl SimHooks {
    pub(crate) fn discarded(&self) -> Vec<String> {
        self.discarded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Hooks for SimHooks {
    fn discard_token_pan(&self, token_id: &str) {
        self.discarded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token_id.to_string());
        self.book.discard_token_pan(token_id);
    }

    fn on_update(&self, update: &TokenUpdate) {
        self.book.on_update(update);
    }
}
