//! Background work, started with the server and stopped with it: the outbox dispatcher (calls owed
//! to TSPs), the requestor notifier (token updates owed to token requestors), the TSP health watcher, the delivery sweeper (personalizations never confirmed), the shred sweeper (data no call will complete, and what is past its retention), the master-key re-wrapper (a rotation's job), the heartbeat (this node alive, for the others to see) and, on PostgreSQL, the signals between nodes (wake-ups and cache drops). Every worker takes its work
//! from the store, so any number of nodes can run them side by side and a node that dies loses
//! nothing (its claimed rows come back when their lease runs out). Each runs under a supervisor
//! that starts it again, with backoff, when it panics; `Hub::health` says which is down.

pub mod heartbeat;
pub mod notifier;
pub mod outbox;
pub mod rewrap;
pub mod shredder;
pub mod signals;
pub mod tsp_health;

use crate::hub::Hub;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Registers this node among the nodes sharing the database, then starts every worker.
pub async fn start(hub: Arc<Hub>, stop: watch::Receiver<bool>) -> JoinSet<()> {
    if let Err(e) = crate::flows::nodes::join(&hub).await {
        // The heartbeat registers it at its first beat.
        tracing::error!(cause = %e.chain(), "node registration failed");
    }
    spawn(hub, stop)
}

/// Waits for every worker to end (after `stop`), then marks this node stopped (the claims it
/// left unsettled run out with their lease).
pub async fn finish(hub: &Hub, mut workers: JoinSet<()>) {
    while workers.join_next().await.is_some() {}
    if let Err(e) = crate::flows::nodes::leave(hub).await {
        tracing::error!(cause = %e.chain(), "could not mark this node stopped");
    }
}

/// Starts every worker; they stop when `stop` turns true.
fn spawn(hub: Arc<Hub>, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(supervise("outbox", hub.clone(), stop.clone(), outbox::run));
    set.spawn(supervise(
        "notifier",
        hub.clone(),
        stop.clone(),
        notifier::run,
    ));
    set.spawn(supervise(
        "sweeper",
        hub.clone(),
        stop.clone(),
        sweep_deliveries,
    ));
    set.spawn(supervise(
        "shredder",
        hub.clone(),
        stop.clone(),
        shredder::run,
    ));
    set.spawn(supervise("rewrap", hub.clone(), stop.clone(), rewrap::run));
    set.spawn(supervise(
        "tsp-health",
        hub.clone(),
        stop.clone(),
        tsp_health::run,
    ));
    set.spawn(supervise(
        "heartbeat",
        hub.clone(),
        stop.clone(),
        heartbeat::run,
    ));
    if hub.signals.shared() {
        set.spawn(supervise(
            "signals",
            hub.clone(),
            stop.clone(),
            signals::run,
        ));
    }
    set.spawn(supervise("campaign-runner", hub, stop, run_campaigns));
    set
}

/// The first wait before a worker that stopped is started again; it doubles while the worker
/// keeps stopping, up to [`MAX_RESTART_WAIT`].
const FIRST_RESTART_WAIT: Duration = Duration::from_millis(100);
const MAX_RESTART_WAIT: Duration = Duration::from_secs(30);
/// A worker that ran this long before it stopped starts again after the first wait.
const STEADY: Duration = Duration::from_secs(60);

/// Runs the worker `name` until `stop`, starting it again (after a backoff) whenever it panics or
/// returns early: a worker's panic must not end its work for the rest of the process's life.
async fn supervise<F, Fut>(
    name: &'static str,
    hub: Arc<Hub>,
    mut stop: watch::Receiver<bool>,
    worker: F,
) where
    F: Fn(Arc<Hub>, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut wait = FIRST_RESTART_WAIT;
    loop {
        hub.health.started(name);
        let started = tokio::time::Instant::now();
        let run = worker(hub.clone(), stop.clone());
        #[cfg(feature = "test-hooks")]
        let run = {
            let hub = hub.clone();
            async move {
                tokio::select! {
                    _ = run => {}
                    _ = hub.health.panic_ordered(name) => panic!("{name}: a panic a test ordered"),
                }
            }
        };
        let ended = tokio::spawn(run).await;
        if *stop.borrow() {
            return;
        }
        hub.health.stopped(name);
        match ended {
            Err(e) if e.is_panic() => {
                tracing::error!(worker = name, "worker panicked; starting it again")
            }
            _ => tracing::error!(worker = name, "worker stopped; starting it again"),
        }
        if started.elapsed() >= STEADY {
            wait = FIRST_RESTART_WAIT;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        wait = (wait * 2).min(MAX_RESTART_WAIT);
    }
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
