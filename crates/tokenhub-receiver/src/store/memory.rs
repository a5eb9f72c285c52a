//! A store in memory, behind one mutex: for tests, simulators and receivers that can afford to
//! forget on restart (the hub's retries and the next update of each token repair it).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{ApplyResult, Store, StoreError, StoredToken};
use crate::update::TokenUpdate;

/// Tokens and seen delivery ids in a `HashMap` under one `Mutex`: every apply is atomic.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<String, StoredToken>,
    /// `webhook-id` → when it was first seen.
    seen: HashMap<String, DateTime<Utc>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-made change (each change is one
        // insert), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the delivery ids first seen more than `older_than` ago; returns how many. The
    /// hub retries one update for a bounded time, so ids older than that are safe to forget
    /// (a very late duplicate is still caught by the timestamp rule).
    pub fn prune_webhook_ids(&self, older_than: Duration) -> usize {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let mut inner = self.lock();
        let before = inner.seen.len();
        inner.seen.retain(|_, seen_at| *seen_at >= cutoff);
        before - inner.seen.len()
    }

    /// How many delivery ids are remembered.
    pub fn webhook_ids_len(&self) -> usize {
        self.lock().seen.len()
    }
}

impl Store for MemoryStore {
    async fn apply(
        &self,
        webhook_id: &str,
        update: &TokenUpdate,
    ) -> Result<ApplyResult, StoreError> {
        let now = Utc::now();
        let mut inner = self.lock();
        if inner.seen.contains_key(webhook_id) {
            return Ok(ApplyResult::Duplicate);
        }
        inner.seen.insert(webhook_id.to_string(), now);
        if let Some(stored) = inner.tokens.get(&update.token_id) {
            if stored.update.last_update_timestamp >= update.last_update_timestamp {
                return Ok(ApplyResult::Obsolete);
            }
        }
        let previous = inner.tokens.insert(
            update.token_id.clone(),
            StoredToken {
                update: update.clone(),
                webhook_id: webhook_id.to_string(),
                applied_at: now,
            },
        );
        Ok(ApplyResult::Applied {
            previous: previous.map(Box::new),
        })
    }

    async fn token(&self, token_id: &str) -> Result<Option<StoredToken>, StoreError> {
        Ok(self.lock().tokens.get(token_id).cloned())
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        let mut tokens: Vec<StoredToken> = self.lock().tokens.values().cloned().collect();
        tokens.sort_by(|a, b| a.update.token_id.cmp(&b.update.token_id));
        Ok(tokens)
    }
}
