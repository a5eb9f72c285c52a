//! The simulator checks the hub's health as the contract asks a TSP to (`GET
//! {hub}/trapi/v2.0/healthCheck` with an `x-request-id`, every 30 s by default), and keeps what it
//! found for `GET /sim/status` (`hubHealth`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SimState;

/// How long one check of the hub may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The hub's health as the simulator's checks found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubHealth {
    /// Checks made so far.
    pub checks: u64,
    /// `UP` (the last check was answered 204), `DOWN` (it was not), or absent before the first.
    pub last_result: Option<String>,
    /// The status the hub answered the last check with; absent when it could not be reached.
    pub last_status: Option<u16>,
    /// When the last check was made (RFC 3339).
    pub last_check_at: Option<String>,
    /// Failed checks in a row.
    pub consecutive_failures: u64,
}

/// The shared, updatable [`HubHealth`].
#[derive(Default)]
pub(crate) struct HubHealthCell(Mutex<HubHealth>);

impl HubHealthCell {
    pub(crate) fn view(&self) -> HubHealth {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, status: Option<u16>) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ok = status == Some(204);
        h.checks += 1;
        h.last_result = Some(if ok { "UP" } else { "DOWN" }.to_string());
        h.last_status = status;
        h.last_check_at =
            Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        h.consecutive_failures = if ok { 0 } else { h.consecutive_failures + 1 };
    }
}

/// Checks the hub every `every`, the first time at once, until the simulator stops.
pub(crate) async fn run(state: Arc<SimState>, every: Duration) {
    let mut stop = state.shutdown.clone();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let answer = state
            .http
            .get(format!("{}/healthCheck", state.hub_api))
            .header("x-request-id", &request_id)
            .timeout(CHECK_TIMEOUT)
            .send()
            .await;
        let status = match answer {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) => {
                tracing::debug!(error = %e, "the hub's healthCheck could not be reached");
                None
            }
        };
        if status != Some(204) {
            tracing::warn!(?status, request_id, "the hub's healthCheck failed");
        }
        state.counters.hub_health.record(status);
    }
}
