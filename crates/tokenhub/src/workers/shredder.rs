//! The shred sweeper: runs [`crate::flows::shred::sweep`] every `retention.sweep_interval`. Its
//! claims skip what another node holds, so every node may run it.

use crate::hub::Hub;
use std::sync::Arc;
use tokio::sync::watch;

pub async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    loop {
        match crate::flows::shred::sweep(&hub).await {
            Ok(swept) if swept.data + swept.tokens > 0 => {
                tracing::info!(
                    data = swept.data,
                    tokens = swept.tokens,
                    log_truncated = swept.log_truncated,
                    "shred sweep"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(cause = %e.chain(), "shred sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(hub.config.retention.sweep_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
