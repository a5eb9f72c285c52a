//! This node's end of the signals between the nodes sharing one PostgreSQL database
//! (`hub/wakeups.rs`), run only there: the sender sends the wakes this node queued, in batches;
//! the listener applies what the other nodes send. A lost connection is made again with backoff.
//! Once listening, every waiter looks again and every cache is read again: signals sent before
//! were lost, whether the connection was lost or not yet made (a node caches rows from its start,
//! before its first subscription listens). Until then nothing is wrong, only slower: the long polls look again every second,
//! the workers every few hundred milliseconds, and the caches keep rows for their time to live.

use crate::hub::Hub;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The first wait before a lost connection is made again; it doubles while connecting fails.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(100);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// A subscription that lived this long before it was lost is made again after the first wait.
const STEADY: Duration = Duration::from_secs(30);
/// The pause after a batch that could not be sent (what is queued meanwhile goes in one batch).
const SEND_RETRY_WAIT: Duration = Duration::from_millis(200);

/// Sends and listens until `stop`.
pub async fn run(hub: Arc<Hub>, stop: watch::Receiver<bool>) {
    tokio::join!(send(hub.clone(), stop.clone()), listen(hub, stop));
}

async fn send(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    loop {
        let sent = tokio::select! {
            sent = hub.send_queued_signals() => sent,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = sent {
            // Those signals are lost: the waiters' polls and the caches' time cover them.
            tracing::warn!(cause = %e.chain(), "signals to the other nodes not sent");
            tokio::select! {
                _ = tokio::time::sleep(SEND_RETRY_WAIT) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

async fn listen(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let mut wait = FIRST_RETRY_WAIT;
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            o = subscribed(&hub) => o,
            _ = stop.wait_for(|s| *s) => return,
        };
        match outcome {
            Ok(()) => tracing::warn!("the signals' connection was lost; connecting again"),
            Err(e) => tracing::warn!(cause = %e.chain(), "signals from the other nodes"),
        }
        if started.elapsed() >= STEADY {
            wait = FIRST_RETRY_WAIT;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        wait = (wait * 2).min(MAX_RETRY_WAIT);
    }
}

/// Subscribes, catches up on what was signalled before it listened, and applies the other nodes'
/// signals until the connection is lost (`Ok`) or fails.
async fn subscribed(hub: &Hub) -> Result<(), crate::error::Error> {
    let Some(mut subscription) = hub.subscribe_signals().await? else {
        // SQLite: nothing to listen to (the worker is not started there).
        return std::future::pending().await;
    };
    hub.signals_missed().await?;
    while let Some(signal) = subscription.next(hub.signals.node()).await? {
        if let Err(e) = hub.apply_signal(&signal).await {
            tracing::warn!(cause = %e.chain(), "a signal from another node not applied");
        }
    }
    Ok(())
}
