//! This node's live view of every TSP's health: what its checks found, and when each TSP last
//! called the hub's `healthCheck`. The outbox's lanes read it (a `DOWN` TSP's calls are held) and
//! wait on [`TspHealthBoard::changes`] rather than polling; the store keeps a copy
//! (`flows::tsp_health`), written when the state or the failure count changes and now and then
//! otherwise, so any node answers the admin API.

use crate::domain::tsp_health::{Thresholds, TspHealth, TspHealthState};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How stale the stored copy of a TSP's health may grow when only times and latencies changed.
pub const STORED_AT_MOST_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Entry {
    live: TspHealth,
    /// What was last written to the store, and when.
    stored: Option<(TspHealth, Instant)>,
}

/// Every TSP's health as this node sees it.
pub struct TspHealthBoard {
    entries: Mutex<HashMap<String, Entry>>,
    /// Bumped at every change of a TSP's state.
    changed: watch::Sender<u64>,
}

impl Default for TspHealthBoard {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl TspHealthBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every update is complete under the lock: a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one check of `tsp_id`; returns its health after it and whether the state changed
    /// (then every lane waiting on [`Self::changes`] wakes).
    pub fn observe(
        &self,
        tsp_id: &str,
        answered_in_ms: Option<i64>,
        now_ms: i64,
        thresholds: Thresholds,
    ) -> (TspHealth, bool) {
        let (health, changed) = {
            let mut entries = self.lock();
            let entry = entries.entry(tsp_id.to_string()).or_default();
            let changed = entry.live.observe(answered_in_ms, now_ms, thresholds);
            (entry.live.clone(), changed)
        };
        if changed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        (health, changed)
    }

    /// The TSP called the hub's `healthCheck` at `now_ms`.
    pub fn hub_checked(&self, tsp_id: &str, now_ms: i64) {
        let mut entries = self.lock();
        let entry = entries.entry(tsp_id.to_string()).or_default();
        entry.live.last_hub_check_ms = Some(now_ms);
    }

    /// This node's view of `tsp_id` (`None`: neither checked nor heard from here).
    pub fn get(&self, tsp_id: &str) -> Option<TspHealth> {
        self.lock().get(tsp_id).map(|e| e.live.clone())
    }

    /// Whether this node found `tsp_id` down: its calls wait.
    pub fn is_down(&self, tsp_id: &str) -> bool {
        self.lock()
            .get(tsp_id)
            .is_some_and(|e| e.live.state == TspHealthState::Down)
    }

    /// A receiver that sees every later change of any TSP's state.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The TSPs whose live health the store should now get: it differs much from the stored
    /// copy, or differs at all and the copy is older than [`STORED_AT_MOST_EVERY`].
    pub fn to_store(&self) -> Vec<(String, TspHealth)> {
        self.lock()
            .iter()
            .filter(|(_, e)| match &e.stored {
                None => true,
                Some((stored, at)) => {
                    e.live.differs_much_from(stored)
                        || (e.live != *stored && at.elapsed() >= STORED_AT_MOST_EVERY)
                }
            })
            .map(|(id, e)| (id.clone(), e.live.clone()))
            .collect()
    }

    /// `health` of `tsp_id` was written to the store.
    pub fn stored(&self, tsp_id: &str, health: TspHealth) {
        if let Some(e) = self.lock().get_mut(tsp_id) {
            e.stored = Some((health, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        down_after: 2,
        up_after: 1,
    };

    #[tokio::test]
    async fn a_change_of_state_wakes_the_waiters_and_is_stored_at_once() {
        let board = TspHealthBoard::default();
        let mut changes = board.changes();
        assert!(!board.is_down("t"));
        board.observe("t", Some(5), 1, T);
        assert_eq!(board.to_store().len(), 1, "never stored");
        board.stored("t", board.get("t").unwrap());
        assert!(board.to_store().is_empty());
        board.observe("t", Some(7), 2, T);
        assert!(
            board.to_store().is_empty(),
            "only its time and latency changed"
        );
        board.observe("t", None, 3, T);
        assert_eq!(board.to_store().len(), 1, "the failure count changed");
        changes.borrow_and_update();
        let (h, changed) = board.observe("t", None, 4, T);
        assert!(changed && board.is_down("t") && h.state == TspHealthState::Down);
        assert!(changes.has_changed().unwrap());
    }
}
