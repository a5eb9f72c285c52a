//! TSP health, watched both ways: the hub checks each TSP (`GET {baseUrl}/healthCheck`, made by
//! `workers::tsp_health` on a schedule) and notes when each TSP checks the hub. What a check finds
//! goes to this node's board (which the outbox's lanes read), the metrics, and the store when due;
//! a TSP back `UP` has the calls it owes made due at once, at its agreed rate from there.

use crate::domain::catalog::Tsp;
use crate::domain::tsp_health::{Thresholds, TspHealth, TspHealthState};
use crate::error::Error;
use crate::hub::Hub;
use crate::telemetry::metrics;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Checks `tsp` once and records what it found. Returns its health after the check.
pub async fn check(hub: &Hub, tsp: &Tsp) -> Result<TspHealth, Error> {
    let settings = hub.config.tsp_health;
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let result = hub
        .tsp
        .health_check(&tsp.base_url, &request_id, settings.timeout)
        .await;
    let took = started.elapsed();
    let tsp_id = tsp.tsp_id.as_str();
    if let Err(why) = &result {
        tracing::warn!(tsp_id, request_id, reason = %why, "TSP health check failed");
    }
    let answered = result
        .as_ref()
        .ok()
        .map(|()| i64::try_from(took.as_millis()).unwrap_or(i64::MAX));
    let thresholds = Thresholds {
        down_after: settings.down_after,
        up_after: settings.up_after,
    };
    let (health, changed) = hub
        .tsp_health
        .observe(tsp_id, answered, hub.now_ms(), thresholds);
    let up = match health.state {
        TspHealthState::Up => Some(true),
        TspHealthState::Down => Some(false),
        TspHealthState::Unknown => None,
    };
    metrics::tsp_health_check(tsp_id, result.is_ok(), took, up);
    if changed {
        match health.state {
            TspHealthState::Down => tracing::error!(
                tsp_id,
                failures = health.consecutive_failures,
                "TSP is DOWN: its calls are held until it is back"
            ),
            _ => tracing::info!(tsp_id, state = %health.state, "TSP health changed"),
        }
    }
    if changed && health.state == TspHealthState::Up {
        release_held_calls(hub, tsp_id).await?;
    }
    Ok(health)
}

/// The TSP is back: the calls it owes are due now (their backoffs grew while it failed), and
/// the outbox is woken to make them.
async fn release_held_calls(hub: &Hub, tsp_id: &str) -> Result<(), Error> {
    let now = hub.now_ms();
    let id = tsp_id.to_string();
    let released = hub
        .store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.make_tsp_calls_due(&id, now).await?) })
        })
        .await?;
    if released > 0 {
        tracing::info!(
            tsp_id,
            released,
            "calls held for a TSP that was down are due again"
        );
    }
    hub.outbox_wake.notify_one();
    Ok(())
}

/// An identified TSP called the hub's `healthCheck` now.
pub fn hub_checked(hub: &Hub, tsp_id: &str) {
    hub.tsp_health.hub_checked(tsp_id, hub.now_ms());
}

/// Writes to the store the health of the `registered` TSPs whose stored copy is due (its state
/// or failure count changed, or it is stale), in one transaction.
pub async fn store_due(hub: &Hub, registered: &HashSet<String>) -> Result<(), Error> {
    let due: Vec<(String, TspHealth)> = hub
        .tsp_health
        .to_store()
        .into_iter()
        .filter(|(id, _)| registered.contains(id))
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let now = hub.now_ms();
    let written = due.clone();
    hub.store
        .transact(move |tx| {
            Box::pin(async move {
                for (id, health) in &due {
                    tx.put_tsp_health(id, health, now).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .await?;
    for (id, health) in written {
        hub.tsp_health.stored(&id, health);
    }
    Ok(())
}

/// The health the admin API shows for `tsp_id`: this node's live view or the stored one,
/// whichever was checked last (another node may have checked since), `UNKNOWN` when neither.
pub async fn view(hub: &Hub, tsp_id: &str) -> Result<TspHealth, Error> {
    let stored = hub.store.tsp_health(tsp_id).await?;
    Ok(pick(hub.tsp_health.get(tsp_id), stored))
}

/// [`view`] of every TSP that has one, by TSP.
pub async fn views(hub: &Hub) -> Result<HashMap<String, TspHealth>, Error> {
    let mut stored = hub.store.tsp_healths().await?;
    let mut out = HashMap::new();
    for tsp in hub.store.tsps().await? {
        let s = stored.remove(&tsp.tsp_id);
        out.insert(tsp.tsp_id.clone(), pick(hub.tsp_health.get(&tsp.tsp_id), s));
    }
    Ok(out)
}

fn pick(live: Option<TspHealth>, stored: Option<TspHealth>) -> TspHealth {
    match (live, stored) {
        (Some(l), Some(s)) => l.newest(s),
        (Some(h), None) | (None, Some(h)) => h,
        (None, None) => TspHealth::default(),
    }
}
