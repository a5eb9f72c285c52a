//! The devices and the requestor of a chaos run: each device visited when the TSP recovered its
//! token's data (visited again while its visit failed: a node may die under it), and every
//! delivery the requestor received, as it received it.

use crate::campaign::seed::device_id;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenhub_sim::device::light::{LightDevices, OpenedProfile, Visit};
use tokenhub_sim::requestor::{DeliveryEvent, DeliveryOutcome, RequestorSim};
use tokenhub_sim::DerivedTokens;

/// Visits of one device before the driver gives up on it.
const VISITS: u32 = 10;

/// What the devices saw.
#[derive(Debug, Default)]
pub(crate) struct DevicesSeen {
    /// The personalizations offered to each token's device (a second one is a second install).
    pub(crate) offered: HashMap<String, HashSet<String>>,
    /// `SUCCESS` acknowledged by the hub, per token.
    pub(crate) confirmed: HashMap<String, u32>,
    /// Profiles opened and checked, and those that failed their check.
    pub(crate) opened: usize,
    pub(crate) refused: Vec<(String, String)>,
    /// Failed calls (a node killed under them), and the tokens whose device never got its
    /// `SUCCESS` acknowledged.
    pub(crate) errors: u64,
    pub(crate) unconfirmed: Vec<(String, String)>,
}

pub(crate) type SharedDevices = Arc<Mutex<DevicesSeen>>;

/// Visits the device of every token the TSP recovered, `concurrency` at a time.
pub(crate) async fn drive_devices(
    seen: SharedDevices,
    mut recovered: tokio::sync::mpsc::UnboundedReceiver<String>,
    devices: Arc<LightDevices>,
    derived: DerivedTokens,
    concurrency: usize,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let check: crate::campaign::measure::SharedCheck = {
        let derived = derived.clone();
        Arc::new(move |p: &OpenedProfile| crate::campaign::measure::check_profile(&derived, p))
    };
    while let Some(token_id) = recovered.recv().await {
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(index) = derived.index_of(&token_id) else {
            continue;
        };
        let (seen, devices, check) = (seen.clone(), devices.clone(), check.clone());
        tasks.spawn(async move {
            visit_until_done(&seen, &devices, &token_id, index, Some(&check)).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Visits a device until it confirmed (or refused) its offer, or gave up; one in 100 opens and
/// checks its profile with `check`.
pub(crate) async fn visit_until_done(
    seen: &Mutex<DevicesSeen>,
    devices: &LightDevices,
    token_id: &str,
    index: usize,
    check: Option<&crate::campaign::measure::SharedCheck>,
) {
    let check = check.filter(|_| index % 100 == 0).map(|c| c.as_ref());
    let mut last_error = String::new();
    for attempt in 1..=VISITS {
        let visit = devices.visit(&device_id(index), index, 2, 2, check).await;
        if record(seen, visit, &mut last_error) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
    }
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .unconfirmed
        .push((token_id.to_string(), last_error));
}

/// Records one visit; whether the device is done (its offer confirmed or refused).
fn record(seen: &Mutex<DevicesSeen>, visit: Visit, last_error: &mut String) -> bool {
    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
    for (token, personalization) in visit.offered {
        s.offered.entry(token).or_default().insert(personalization);
    }
    for token in &visit.confirmed {
        *s.confirmed.entry(token.clone()).or_default() += 1;
    }
    s.opened += visit.opened;
    s.errors += visit.errors.len() as u64;
    let done = !visit.confirmed.is_empty() || !visit.refused.is_empty();
    s.refused.extend(visit.refused);
    if let Some(e) = visit.errors.last() {
        *last_error = e.clone();
    }
    done
}

/// What the requestor received.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Every `lastUpdateTimestamp` (ms) received with a 2xx answer, per token.
    pub(crate) received: HashMap<String, HashSet<i64>>,
    pub(crate) applied: u64,
    pub(crate) duplicates: u64,
    /// Deliveries older than one the requestor already had (received out of order), a few kept.
    pub(crate) obsolete: u64,
    pub(crate) obsolete_samples: Vec<String>,
    /// Answered on purpose or refused by the receiver (a bad signature).
    pub(crate) forced: u64,
    pub(crate) rejected: u64,
    /// Events the collector missed (it fell behind).
    pub(crate) lagged: u64,
}

/// Collects the requestor's deliveries until `stop`.
pub(crate) fn collect_deliveries(
    requestor: &RequestorSim,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Deliveries> {
    let mut events = requestor.subscribe();
    tokio::spawn(async move {
        let mut d = Deliveries::default();
        loop {
            let next = tokio::select! {
                e = events.recv() => e,
                _ = &mut stop => {
                    while let Ok(e) = events.try_recv() {
                        keep(&mut d, e);
                    }
                    return d;
                }
            };
            match next {
                Ok(e) => keep(&mut d, e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => d.lagged += n,
                Err(_) => return d,
            }
        }
    })
}

fn keep(d: &mut Deliveries, e: DeliveryEvent) {
    match e.outcome {
        DeliveryOutcome::Applied => d.applied += 1,
        DeliveryOutcome::Duplicate => d.duplicates += 1,
        DeliveryOutcome::Obsolete => {
            d.obsolete += 1;
            if d.obsolete_samples.len() < 10 {
                d.obsolete_samples.push(format!(
                    "{} at {} (webhook {})",
                    e.token_id.as_deref().unwrap_or("?"),
                    e.last_update_timestamp.as_deref().unwrap_or("?"),
                    e.webhook_id.as_deref().unwrap_or("?")
                ));
            }
        }
        DeliveryOutcome::Forced => d.forced += 1,
        DeliveryOutcome::Rejected | DeliveryOutcome::Failed => d.rejected += 1,
    }
    if !(200..300).contains(&e.status) {
        return;
    }
    let ms = e
        .last_update_timestamp
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    if let (Some(token), Some(ms)) = (e.token_id, ms) {
        d.received.entry(token).or_default().insert(ms);
    }
}
