//! What the requestor saw: one event per notification, and the counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::HeaderMap;
use serde::Serialize;
use tokenhub_receiver::Stats;

/// What became of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryOutcome {
    /// Applied: the token's state now.
    Applied,
    /// A `webhook-id` seen before.
    Duplicate,
    /// Not newer than the stored state.
    Obsolete,
    /// Refused by the receiver (401, 400).
    Rejected,
    /// The store failed (500).
    Failed,
    /// Answered by a misbehaviour (`failNext`, `statusNext`) without being looked at.
    Forced,
}

/// One notification as the requestor received it, sent to every [`super::RequestorSim::subscribe`]r
/// once its answer is decided (before any `delayMs`).
#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    /// `webhook-id`, if present.
    pub webhook_id: Option<String>,
    /// The body's `tokenId`, if it has one.
    pub token_id: Option<String>,
    /// The body's `lastUpdateTimestamp` as sent, if it has one.
    pub last_update_timestamp: Option<String>,
    /// When the request reached the handler.
    pub received_at: Instant,
    /// The status answered.
    pub status: u16,
    /// What became of it.
    pub outcome: DeliveryOutcome,
    /// The attempt's headers (`webhook-timestamp`, `x-correlation-id`, ...).
    pub headers: HeaderMap,
}

impl DeliveryEvent {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The requestor simulator's counters: its own, and the receiver's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestorSimStats {
    /// Notifications received, including those failed on purpose.
    pub received: u64,
    /// Answered with a 2xx status.
    pub answered_2xx: u64,
    /// Answered by a misbehaviour without being looked at.
    pub failed_on_purpose: u64,
    /// Updates applied.
    pub applied: u64,
    /// Duplicates (`webhook-id` seen before).
    pub duplicates: u64,
    /// Obsolete updates.
    pub obsolete: u64,
    /// Refused by the receiver (401, 400).
    pub rejected: u64,
    /// Store failures (500).
    pub failed: u64,
    /// Token PANs discarded (`tokenLastDigits` changed).
    pub pan_discards: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) answered_2xx: AtomicU64,
    pub(crate) failed_on_purpose: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, receiver: Stats) -> RequestorSimStats {
        RequestorSimStats {
            received: self.received.load(Ordering::Relaxed),
            answered_2xx: self.answered_2xx.load(Ordering::Relaxed),
            failed_on_purpose: self.failed_on_purpose.load(Ordering::Relaxed),
            applied: receiver.applied,
            duplicates: receiver.duplicates,
            obsolete: receiver.obsolete,
            rejected: receiver.rejected,
            failed: receiver.failed,
            pan_discards: receiver.pan_discards,
        }
    }
}
