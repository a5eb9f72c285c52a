//! The TSP health watcher: checks every registered TSP every `tsp_health.interval` (each TSP on
//! its own schedule, one check of it at a time, a new TSP within a second of its registration),
//! and writes what is due of the board to the store. A TSP that answers slowly delays only its
//! own next check.

use crate::flows::{tsp_calls, tsp_health};
use crate::hub::Hub;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often the watcher looks for due checks, new TSPs and what to store (at most).
const TICK: Duration = Duration::from_secs(1);

pub async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let interval = hub.config.tsp_health.interval;
    let tick = interval.min(TICK);
    let mut next_check: HashMap<String, Instant> = HashMap::new();
    let mut checking: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut checks: JoinSet<()> = JoinSet::new();
    let mut registered: HashSet<String> = HashSet::new();
    loop {
        match tsp_calls::tsps(&hub).await {
            Ok(tsps) => {
                registered = tsps.iter().map(|t| t.tsp_id.clone()).collect();
                let now = Instant::now();
                for tsp in tsps {
                    let busy = checking.values().any(|id| *id == tsp.tsp_id);
                    if busy || next_check.get(&tsp.tsp_id).is_some_and(|at| *at > now) {
                        continue;
                    }
                    next_check.insert(tsp.tsp_id.clone(), now + interval);
                    let id = tsp.tsp_id.clone();
                    let hub = hub.clone();
                    let task = checks.spawn(async move {
                        if let Err(e) = tsp_health::check(&hub, &tsp).await {
                            tracing::error!(tsp_id = tsp.tsp_id, cause = %e.chain(), "recording a TSP health check failed");
                        }
                    });
                    checking.insert(task.id(), id);
                }
            }
            Err(e) => tracing::error!(cause = %e.chain(), "TSP health: reading the TSPs failed"),
        }
        if let Err(e) = tsp_health::store_due(&hub, &registered).await {
            tracing::error!(cause = %e.chain(), "TSP health: storing it failed");
        }
        tokio::select! {
            Some(done) = checks.join_next_with_id() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => e.id(),
                };
                checking.remove(&id);
            }
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    checks.abort_all();
}
