//! The master-key re-wrap worker: at every tick it reads the store's master-key versions (so a
//! rotation begun on another node reaches this node's new wraps) and, while a rotation runs,
//! takes steps of its re-wrap job ([`crate::flows::rotation::rewrap_step`]); the job's lease lets
//! one node at a time do it, and another take over when that node dies.

use crate::flows::rotation::{rewrap_step, Step};
use crate::hub::Hub;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the versions are read and an idle job is looked for.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a node holds the job after its last step.
const LEASE_MS: i64 = 10_000;
/// How often the job's progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

pub async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    // One holder name per run: a worker started again waits for its former lease to lapse.
    let node = format!("rewrap-{}", uuid::Uuid::new_v4());
    let mut logged = Instant::now();
    let mut done = 0i64;
    loop {
        if let Err(e) = crate::flows::rotation::adopt(&hub.store, &hub.keys, hub.now_ms()).await {
            tracing::error!(cause = %e.chain(), "reading the master-key versions failed");
        }
        let settings = &hub.config.keystore;
        let mut pause = TICK;
        let step = rewrap_step(
            &hub.store,
            &hub.keys,
            &node,
            settings.rewrap_batch,
            LEASE_MS,
            hub.now_ms(),
        )
        .await;
        match step {
            Ok(Step::Progressed(n)) => {
                done += n;
                pause = settings.rewrap_pause;
                if logged.elapsed() >= PROGRESS_EVERY {
                    tracing::info!(rewrapped = done, "master-key rotation: re-wrapping");
                    logged = Instant::now();
                }
            }
            Ok(Step::Finished) => {
                tracing::info!(rewrapped = done, "master-key rotation finished");
                done = 0;
            }
            Ok(Step::Idle | Step::Waiting) => {}
            Err(e) => tracing::error!(cause = %e.chain(), "master-key re-wrap step failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
