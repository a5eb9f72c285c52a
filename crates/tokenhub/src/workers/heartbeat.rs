//! The heartbeat: notes every `node.heartbeat_interval` that this node is alive, so that the other
//! nodes and the admin API see it live, and prunes, every `retention.sweep_interval`, the rows of
//! nodes gone for longer than `retention.nodes`. Joining and leaving are the application's (once
//! per run, around the workers).

use crate::flows::nodes;
use crate::hub::Hub;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

pub async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let mut next_prune = Instant::now();
    loop {
        if let Err(e) = nodes::heartbeat(&hub).await {
            tracing::error!(cause = %e.chain(), "heartbeat failed");
        }
        if Instant::now() >= next_prune {
            match nodes::prune(&hub).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "rows of nodes gone long ago pruned"),
                Err(e) => tracing::error!(cause = %e.chain(), "node prune failed"),
            }
            next_prune = Instant::now() + hub.config.retention.sweep_interval;
        }
        tokio::select! {
            _ = tokio::time::sleep(hub.config.node.heartbeat_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
