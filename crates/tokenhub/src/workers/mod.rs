//! Background work, started with the server and stopped with it: the outbox dispatcher (calls owed
//! to TSPs), the requestor notifier (token updates owed to token requestors) and the delivery sweeper (personalizations never confirmed). Every worker takes its work
//! from the store, so any number of nodes can run them side by side and a node that dies loses
//! nothing (its claimed rows come back when their lease runs out).

pub mod notifier;
pub mod outbox;

use crate::hub::Hub;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Starts every worker; they stop when `stop` turns true.
pub fn spawn(hub: Arc<Hub>, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(outbox::run(hub.clone(), stop.clone()));
    set.spawn(notifier::run(hub.clone(), stop.clone()));
    set.spawn(sweep_deliveries(hub.clone(), stop.clone()));
    set.spawn(run_campaigns(hub, stop));
    set
}

/// Steps the running campaigns every 20 ms (a token that finished frees its slot for the next
/// at once: at 256 in flight, 100 ms between steps held a campaign to ~1,570 tokens/s where 20 ms
/// lets it run at ~2,000), and looks for one every 100 ms when none runs.
async fn run_campaigns(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    loop {
        let running = match crate::flows::campaign::tick(&hub).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!(cause = %e.chain(), "campaign runner failed");
                false
            }
        };
        let pause = if running { 20 } else { 100 };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn sweep_deliveries(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = crate::flows::deliver::sweep(&hub).await {
            tracing::error!(cause = %e.chain(), "delivery sweep failed");
        }
        if let Err(e) = crate::flows::reperso::expire(&hub).await {
            tracing::error!(cause = %e.chain(), "recovery sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
