//! What the simulated TSP has done so far, counted for the operator (`GET /sim/status`), the demo
//! and the tests ([`crate::TspSimHandle::status`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::delivery::CallKind;

/// A snapshot of the counters, as `GET /sim/status` serves it (camelCase JSON).
///
/// A *data call* is one part of a token's data preparation (one `PUT …/data` message); its retries
/// are not new calls. So, once [`deliveries_in_flight`](Self::deliveries_in_flight) is 0 and
/// unless the simulator was shut down mid-delivery:
/// `data_calls_sent == data_calls_accepted + Σ data_calls_rejected`, and the same for the
/// `new_data_calls_*` of recoveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TspSimStatus {
    /// createToken calls answered 200 with a new token (replays of a request are not counted).
    pub tokens_created: u64,
    /// Data calls started.
    pub data_calls_sent: u64,
    /// Data calls the hub answered with a 2xx.
    pub data_calls_accepted: u64,
    /// Data calls that ended without success, by reason: the hub's `responseCode` ("431"), or
    /// `http-<status>` when the answer carried none, or `unreachable` when the hub could not be
    /// reached within the retries.
    pub data_calls_rejected: BTreeMap<String, u64>,
    /// Extra attempts made after a retryable answer or a connection error.
    pub data_calls_retried: u64,
    /// Tokens whose data preparation (`/data`) or recovered data (`/newData`) is still being sent.
    #[serde(default)]
    pub deliveries_in_flight: u64,
    /// Transactions (`POST /sim/transactions`) approved.
    #[serde(default)]
    pub transactions_approved: u64,
    /// Transactions declined, by reason (`REPLAY`, `BAD_CRYPTOGRAM`, `UNKNOWN_TOKEN`,
    /// `TOKEN_NOT_ACTIVE`, `FORMAT_ERROR`).
    #[serde(default)]
    pub transactions_declined: BTreeMap<String, u64>,
    /// `updateTokenState` calls that changed a token's state (a repeat of the current state is
    /// answered 204 but not counted).
    #[serde(default)]
    pub state_updates: u64,
    /// `updateToken` calls (a card renewed or replaced).
    #[serde(default)]
    pub card_updates: u64,
    /// `submitNewTokenDataStatus` SUCCESS calls that reset a token's ATC (the hub's retry of the
    /// same call is not counted).
    #[serde(default)]
    pub atc_resets: u64,
    /// `repersoToken` calls answered 204, repeats of a recovery's `x-correlation-id` included.
    #[serde(default)]
    pub reperso_calls: u64,
    /// Recoveries started by `repersoToken` (a repeat of one in progress or done starts none).
    #[serde(default)]
    pub recoveries_started: u64,
    /// `/newData` calls started (one per part of a recovery; retries are not new calls).
    #[serde(default)]
    pub new_data_calls_sent: u64,
    /// `/newData` calls the hub answered with a 2xx.
    #[serde(default)]
    pub new_data_calls_accepted: u64,
    /// `/newData` calls that ended without success, by reason, as for
    /// [`data_calls_rejected`](Self::data_calls_rejected) (`"431"` when the hub refused the
    /// recovered data).
    #[serde(default)]
    pub new_data_calls_rejected: BTreeMap<String, u64>,
    /// Extra `/newData` attempts after a retryable answer or a connection error.
    #[serde(default)]
    pub new_data_calls_retried: u64,
    /// Calls of the outgoing API answered 503 by the rate limit
    /// ([`Misbehaviour::rate_limit`](crate::tsp::Misbehaviour::rate_limit)).
    #[serde(default)]
    pub rate_limited: u64,
    /// Calls of the outgoing API (`healthCheck` included) answered 503 while the simulator was
    /// down on purpose ([`Misbehaviour::down_for`](crate::tsp::Misbehaviour::down_for)).
    #[serde(default)]
    pub down_refused: u64,
    /// Calls of the outgoing API answered `503` or `429` at random
    /// ([`Misbehaviour::fail_percent`](crate::tsp::Misbehaviour::fail_percent)).
    #[serde(default)]
    pub refused_on_purpose: u64,
    /// Calls of the outgoing API answered only after a stall
    /// ([`Misbehaviour::stall_percent`](crate::tsp::Misbehaviour::stall_percent)).
    #[serde(default)]
    pub stalled: u64,
    /// The hub's health as the simulator's own checks of it found it.
    #[serde(default)]
    pub hub_health: super::hub_health::HubHealth,
}

impl TspSimStatus {
    pub fn data_calls_rejected_total(&self) -> u64 {
        self.data_calls_rejected.values().sum()
    }

    pub fn new_data_calls_rejected_total(&self) -> u64 {
        self.new_data_calls_rejected.values().sum()
    }

    pub fn transactions_declined_total(&self) -> u64 {
        self.transactions_declined.values().sum()
    }
}

/// The live counters behind [`TspSimStatus`].
pub(crate) struct Counters {
    tokens_created: AtomicU64,
    data_calls_sent: AtomicU64,
    data_calls_accepted: AtomicU64,
    data_calls_retried: AtomicU64,
    data_calls_rejected: Mutex<BTreeMap<String, u64>>,
    transactions_approved: AtomicU64,
    transactions_declined: Mutex<BTreeMap<String, u64>>,
    state_updates: AtomicU64,
    card_updates: AtomicU64,
    atc_resets: AtomicU64,
    reperso_calls: AtomicU64,
    recoveries_started: AtomicU64,
    new_data_calls_sent: AtomicU64,
    new_data_calls_accepted: AtomicU64,
    new_data_calls_retried: AtomicU64,
    new_data_calls_rejected: Mutex<BTreeMap<String, u64>>,
    rate_limited: AtomicU64,
    down_refused: AtomicU64,
    refused_on_purpose: AtomicU64,
    stalled: AtomicU64,
    /// What the simulator's checks of the hub found.
    pub(crate) hub_health: super::hub_health::HubHealthCell,
    /// Calls of the outgoing API the rate limit admitted (healthCheck aside): not part of
    /// [`TspSimStatus`], read by [`crate::TspSimHandle::outgoing_calls`].
    outgoing_admitted: AtomicU64,
    /// A watch rather than an atomic so that callers can await "no delivery left" without polling.
    in_flight: watch::Sender<u64>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            tokens_created: AtomicU64::new(0),
            data_calls_sent: AtomicU64::new(0),
            data_calls_accepted: AtomicU64::new(0),
            data_calls_retried: AtomicU64::new(0),
            data_calls_rejected: Mutex::new(BTreeMap::new()),
            transactions_approved: AtomicU64::new(0),
            transactions_declined: Mutex::new(BTreeMap::new()),
            state_updates: AtomicU64::new(0),
            card_updates: AtomicU64::new(0),
            atc_resets: AtomicU64::new(0),
            reperso_calls: AtomicU64::new(0),
            recoveries_started: AtomicU64::new(0),
            new_data_calls_sent: AtomicU64::new(0),
            new_data_calls_accepted: AtomicU64::new(0),
            new_data_calls_retried: AtomicU64::new(0),
            new_data_calls_rejected: Mutex::new(BTreeMap::new()),
            rate_limited: AtomicU64::new(0),
            down_refused: AtomicU64::new(0),
            refused_on_purpose: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            hub_health: Default::default(),
            outgoing_admitted: AtomicU64::new(0),
            in_flight: watch::Sender::new(0),
        }
    }

    pub(crate) fn token_created(&self) {
        self.tokens_created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_sent(&self, kind: CallKind) {
        match kind {
            CallKind::Data => &self.data_calls_sent,
            CallKind::NewData => &self.new_data_calls_sent,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_accepted(&self, kind: CallKind) {
        match kind {
            CallKind::Data => &self.data_calls_accepted,
            CallKind::NewData => &self.new_data_calls_accepted,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_retried(&self, kind: CallKind) {
        match kind {
            CallKind::Data => &self.data_calls_retried,
            CallKind::NewData => &self.new_data_calls_retried,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_rejected(&self, kind: CallKind, reason: &str) {
        match kind {
            CallKind::Data => bump(&self.data_calls_rejected, reason),
            CallKind::NewData => bump(&self.new_data_calls_rejected, reason),
        }
    }

    pub(crate) fn reperso_call(&self) {
        self.reperso_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn recovery_started(&self) {
        self.recoveries_started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn down_refused(&self) {
        self.down_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused_on_purpose(&self) {
        self.refused_on_purpose.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stalled(&self) {
        self.stalled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn outgoing_admitted(&self) {
        self.outgoing_admitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of the outgoing API admitted and refused (503) by the rate limit so far.
    pub(crate) fn outgoing_calls(&self) -> (u64, u64) {
        (
            self.outgoing_admitted.load(Ordering::Relaxed),
            self.rate_limited.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn transaction_approved(&self) {
        self.transactions_approved.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn transaction_declined(&self, reason: &str) {
        bump(&self.transactions_declined, reason);
    }

    pub(crate) fn card_updated(&self) {
        self.card_updates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn state_updated(&self) {
        self.state_updates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn atc_reset(&self) {
        self.atc_resets.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a delivery as started; it ends when the guard drops, however the task ends.
    pub(crate) fn delivery_started(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight {
            counters: self.clone(),
        }
    }

    /// Resolves once no delivery is in flight.
    pub(crate) async fn idle(&self) {
        let mut rx = self.in_flight.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we hold `&self`.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    pub(crate) fn snapshot(&self) -> TspSimStatus {
        TspSimStatus {
            tokens_created: self.tokens_created.load(Ordering::Relaxed),
            data_calls_sent: self.data_calls_sent.load(Ordering::Relaxed),
            data_calls_accepted: self.data_calls_accepted.load(Ordering::Relaxed),
            data_calls_rejected: read(&self.data_calls_rejected),
            data_calls_retried: self.data_calls_retried.load(Ordering::Relaxed),
            deliveries_in_flight: *self.in_flight.borrow(),
            transactions_approved: self.transactions_approved.load(Ordering::Relaxed),
            transactions_declined: read(&self.transactions_declined),
            state_updates: self.state_updates.load(Ordering::Relaxed),
            card_updates: self.card_updates.load(Ordering::Relaxed),
            atc_resets: self.atc_resets.load(Ordering::Relaxed),
            reperso_calls: self.reperso_calls.load(Ordering::Relaxed),
            recoveries_started: self.recoveries_started.load(Ordering::Relaxed),
            new_data_calls_sent: self.new_data_calls_sent.load(Ordering::Relaxed),
            new_data_calls_accepted: self.new_data_calls_accepted.load(Ordering::Relaxed),
            new_data_calls_rejected: read(&self.new_data_calls_rejected),
            new_data_calls_retried: self.new_data_calls_retried.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            down_refused: self.down_refused.load(Ordering::Relaxed),
            refused_on_purpose: self.refused_on_purpose.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
            hub_health: self.hub_health.view(),
        }
    }
}

// A panic while holding one of these locks leaves the map consistent (every update is one
// increment), so a poisoned lock is still usable.
fn bump(map: &Mutex<BTreeMap<String, u64>>, reason: &str) {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *map.entry(reason.to_string()).or_insert(0) += 1;
}

fn read(map: &Mutex<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    map.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// One delivery in flight; dropping it (task finished, cancelled or panicked) counts it out.
pub(crate) struct InFlight {
    counters: std::sync::Arc<Counters>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_status_serializes_with_the_documented_camel_case_names() {
        let counters = Arc::new(Counters::new());
        counters.token_created();
        counters.call_sent(CallKind::Data);
        counters.call_sent(CallKind::Data);
        counters.call_accepted(CallKind::Data);
        counters.call_retried(CallKind::Data);
        counters.call_rejected(CallKind::Data, "431");
        counters.reperso_call();
        counters.reperso_call();
        counters.recovery_started();
        counters.call_sent(CallKind::NewData);
        counters.call_sent(CallKind::NewData);
        counters.call_sent(CallKind::NewData);
        counters.call_accepted(CallKind::NewData);
        counters.call_retried(CallKind::NewData);
        counters.call_rejected(CallKind::NewData, "431");
        counters.call_rejected(CallKind::NewData, "unreachable");
        counters.rate_limited();
        counters.transaction_approved();
        counters.transaction_declined("REPLAY");
        counters.transaction_declined("REPLAY");
        counters.state_updated();
        counters.atc_reset();
        let _guard = counters.delivery_started();
        let json = serde_json::to_value(counters.snapshot()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "tokensCreated": 1,
                "dataCallsSent": 2,
                "dataCallsAccepted": 1,
                "dataCallsRejected": {"431": 1},
                "dataCallsRetried": 1,
                "deliveriesInFlight": 1,
                "transactionsApproved": 1,
                "transactionsDeclined": {"REPLAY": 2},
                "stateUpdates": 1,
                "cardUpdates": 0,
                "atcResets": 1,
                "repersoCalls": 2,
                "recoveriesStarted": 1,
                "newDataCallsSent": 3,
                "newDataCallsAccepted": 1,
                "newDataCallsRejected": {"431": 1, "unreachable": 1},
                "newDataCallsRetried": 1,
                "rateLimited": 1,
                "downRefused": 0,
                "refusedOnPurpose": 0,
                "stalled": 0,
                "hubHealth": {"checks": 0, "lastResult": null, "lastStatus": null,
                    "lastCheckAt": null, "consecutiveFailures": 0}
            })
        );
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_delivery_guard_drops() {
        let counters = Arc::new(Counters::new());
        let a = counters.delivery_started();
        let b = counters.delivery_started();
        drop(a);
        assert_eq!(counters.snapshot().deliveries_in_flight, 1);
        let waiter = {
            let counters = counters.clone();
            tokio::spawn(async move { counters.idle().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle after the last guard")
            .unwrap();
    }
}
