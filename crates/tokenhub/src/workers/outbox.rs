//! The outbox dispatcher: a lane per TSP claims its due calls, makes them, and records the
//! outcome. A call the TSP
//! acknowledges is done; one it may retry (connection error, time-out, 5xx, 429, 408, 921) comes
//! back after an exponential backoff with jitter, never before the TSP's `Retry-After`, under the
//! same `x-correlation-id`; a final refusal is kept as dead, with the TSP's answer, for the
//! operator. A TSP that the health watcher finds `DOWN` gets no call until it is back `UP`.

use crate::domain::tsp_call::{CallOutcome, QueuedCall};
use crate::error::Error;
use crate::flows::tsp_calls;
use crate::hub::Hub;
use crate::pacer::Slots;
use crate::tsp_client::{TspCallError, Unsent};
use rand::Rng;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Calls claimed at once (with a rate, a fifth of a second's worth at most).
const BATCH: i64 = 64;
/// Calls a lane has under way at most (waiting for their slot, or made and not yet recorded);
/// it claims more only while no more than half are.
const MAX_UNDER_WAY: usize = 256;
/// How long a lane keeps calls it claimed waiting for slots of the TSP's rate before giving
/// them back: a third of the claim's lease (`--claim-lease`), so that with the call's own
/// time-out no other node takes them while this one may still make them.
fn max_hold(hub: &Hub) -> Duration {
    Duration::from_millis(hub.config.node.claim_lease_ms().max(0) as u64 / 3)
}
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How long an idle lane waits for a wake-up before looking again.
const IDLE: Duration = Duration::from_millis(250);

/// How often the dispatcher looks for TSPs registered since (each gets its lane).
const TSP_REFRESH: Duration = Duration::from_secs(1);

/// Runs one lane per registered TSP: each claims and makes its own TSP's calls, so a TSP that
/// answers slowly (or not at all, up to the client's time-out) holds back only its own calls.
/// Returns when `stop` turns true and every lane has recorded the calls it was making.
pub async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let mut lanes: HashMap<String, Arc<Notify>> = HashMap::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut by_task: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut refreshed: Option<tokio::time::Instant> = None;
    let stopping = stop.clone();
    loop {
        if refreshed.is_none_or(|at| at.elapsed() >= TSP_REFRESH) {
            refreshed = Some(tokio::time::Instant::now());
            match tsp_calls::tsps(&hub).await {
                Ok(tsps) => {
                    for tsp in tsps {
                        if lanes.contains_key(&tsp.tsp_id) {
                            continue;
                        }
                        let wake = Arc::new(Notify::new());
                        let id = tasks
                            .spawn(lane(
                                hub.clone(),
                                tsp.tsp_id.clone(),
                                wake.clone(),
                                stop.clone(),
                            ))
                            .id();
                        by_task.insert(id, tsp.tsp_id.clone());
                        lanes.insert(tsp.tsp_id, wake);
                    }
                }
                Err(e) => tracing::error!(cause = %e.chain(), "outbox: reading the TSPs failed"),
            }
        }
        tokio::select! {
            _ = hub.outbox_wake.notified() => {
                for wake in lanes.values() {
                    wake.notify_one();
                }
            }
            Some(ended) = tasks.join_next_with_id() => {
                // A lane ends only by panicking (or at stop): it is started again at the next
                // look for TSPs (a second at most, so one that keeps failing does not spin), its
                // claimed calls back when their lease runs out.
                if *stopping.borrow() {
                    break; // the lanes are stopping with the hub
                }
                let id = match &ended {
                    Ok((id, ())) => *id,
                    Err(e) => e.id(),
                };
                if let Some(tsp_id) = by_task.remove(&id) {
                    tracing::error!(tsp_id, "outbox lane stopped; starting it again");
                    lanes.remove(&tsp_id);
                }
            }
            _ = tokio::time::sleep(TSP_REFRESH) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// One TSP's calls: claimed, given slots of the TSP's agreed rate, then made and recorded each
/// on its own task, so that a slow answer holds back neither the next slot nor another call.
/// While the TSP's health checks find it `DOWN` the lane claims nothing (no attempt is spent,
/// none dies) and waits for a change of health. At stop, the calls under way are recorded before
/// it returns.
async fn lane(hub: Arc<Hub>, tsp_id: String, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut held = Held::default();
    let mut under_way: JoinSet<()> = JoinSet::new();
    loop {
        while let Some(done) = under_way.try_join_next() {
            reap(&tsp_id, done);
        }
        if *stop.borrow() {
            break;
        }
        if hub.tsp_health.is_down(&tsp_id) {
            held.give_back(&hub).await;
            // Subscribed before looking again, so a change in between is not missed.
            let mut changes = hub.tsp_health.changes();
            if hub.tsp_health.is_down(&tsp_id) {
                let watch_gone = tokio::select! {
                    changed = changes.changed() => changed.is_err(),
                    _ = stop.wait_for(|s| *s) => break,
                };
                if watch_gone {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            continue;
        }
        let d = if under_way.len() > MAX_UNDER_WAY / 2 {
            Dispatched::default()
        } else {
            match dispatch_once(&hub, &tsp_id, &mut held, &mut under_way).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(tsp_id, cause = %e.chain(), "outbox dispatch failed");
                    Dispatched::default()
                }
            }
        };
        if d.more {
            continue;
        }
        // Held back by the TSP's rate: look again when a slot is near. Idle: also once the
        // calls under way are recorded (they may free their tokens' next calls), all of them so
        // that the next claim takes those together; full: once one is.
        let nap = d.held_for.unwrap_or(IDLE);
        let full = under_way.len() > MAX_UNDER_WAY / 2;
        let watch_calls = d.held_for.is_none() && !under_way.is_empty();
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
            _ = recorded(&mut under_way, &tsp_id, full), if watch_calls => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    held.give_back(&hub).await;
    while let Some(done) = under_way.join_next().await {
        reap(&tsp_id, done);
    }
}

/// Waits for the calls under way to be recorded: all of them, or one when `one`.
async fn recorded(under_way: &mut JoinSet<()>, tsp_id: &str, one: bool) {
    while let Some(done) = under_way.join_next().await {
        reap(tsp_id, done);
        if one {
            return;
        }
    }
}

/// A call's task that ended: one that panicked left its call claimed, made again after its lease.
fn reap(tsp_id: &str, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(tsp_id, cause = %e, "an outbox call's task failed");
    }
}

/// Calls a lane claimed that the TSP's rate has not let go yet, oldest first.
#[derive(Default)]
pub struct Held {
    calls: std::collections::VecDeque<QueuedCall>,
    /// When they were claimed.
    since: Option<std::time::Instant>,
}

impl Held {
    /// Gives the calls back untried (the next claim, on any node, takes them).
    async fn give_back(&mut self, hub: &Hub) {
        self.since = None;
        let claims: Vec<(i64, i64)> = self
            .calls
            .drain(..)
            .map(|c| (c.id, c.claim_version))
            .collect();
        if claims.is_empty() {
            return;
        }
        if let Err(e) = tsp_calls::release(hub, claims).await {
            // Their lease runs out: they are made after it.
            tracing::error!(cause = %e.chain(), "giving back held calls failed");
        }
    }
}

/// What one dispatch round did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dispatched {
    /// More calls may be due now: look again at once.
    pub more: bool,
    /// Calls may be waiting that the TSP's rate held back: look again after this.
    pub held_for: Option<Duration>,
}

/// Calls let go in a round, and when each leaves.
struct Round {
    calls: Vec<QueuedCall>,
    /// More may be due now (a claim got all it asked for; calls are held for slots).
    more: bool,
    /// The slots of a paced TSP, counted from the instant they were reserved; none: at once.
    slots: Option<(tokio::time::Instant, Slots)>,
    held_for: Option<Duration>,
}

/// Starts due calls to `tsp_id` on `under_way`, as many as the TSP's agreed rate gives slots
/// for: the calls `held` first, then newly claimed ones. Each call's task waits for its slot,
/// makes the call and records the outcome.
pub async fn dispatch_once(
    hub: &Arc<Hub>,
    tsp_id: &str,
    held: &mut Held,
    under_way: &mut JoinSet<()>,
) -> Result<Dispatched, Error> {
    let rate = hub.tsp(tsp_id).await?.and_then(|t| t.rate_limit);
    let room = MAX_UNDER_WAY.saturating_sub(under_way.len()) as i64;
    let round = match rate {
        None => {
            held.since = None;
            let mut calls: Vec<QueuedCall> = held.calls.drain(..).collect();
            let want = BATCH.min(room) - calls.len() as i64;
            let mut more = false;
            if want > 0 {
                let claimed =
                    tsp_calls::claim(hub, tsp_id, hub.config.node.claim_lease_ms(), want).await?;
                more = claimed.len() as i64 == want;
                calls.extend(claimed);
            }
            Round {
                calls,
                more,
                slots: None,
                held_for: None,
            }
        }
        Some(rate) => paced(hub, tsp_id, rate, held, room).await?,
    };
    for (i, item) in round.calls.into_iter().enumerate() {
        let leaves = round.slots.map(|(at, slots)| at + slots.nth(i as i64));
        let hub = hub.clone();
        under_way.spawn(async move {
            let outcome = match (leaves, rate) {
                (Some(at), Some(rate)) => hub
                    .tsp_pacer
                    .leave_at(&hub.store, &item.tsp_id, rate, at)
                    .await
                    .map_err(|e| TspCallError::Unavailable(format!("reading the TSP's rate: {e}"))),
                _ => Ok(()),
            };
            let started = std::time::Instant::now();
            let outcome = match outcome {
                Ok(()) => send(&hub, &item).await,
                Err(e) => Err(e.into()),
            };
            tsp_calls::measured_outcome(
                &item.tsp_id,
                item.call.as_str(),
                outcome.as_ref().err().map(|u| &u.error),
                started.elapsed(),
            );
            let tsp_id = item.tsp_id.clone();
            if let Err(e) = record(&hub, item, outcome).await {
                // Its lease runs out: the call is made again after it.
                tracing::error!(tsp_id, cause = %e.chain(), "recording an outbox call failed");
            }
        });
    }
    Ok(Dispatched {
        more: round.more,
        held_for: round.held_for,
    })
}

/// Claims a few calls (a fifth of a second's worth) when none is held, then reserves slots of
/// the rate for the held ones and lets go as many: a slot is reserved at most [`crate::pacer::HORIZON`]
/// ahead (not before a claim's round trips), so the calls reach the TSP spaced as the slots
/// are. When none was reserved, also returns when to ask again.
async fn paced(
    hub: &Hub,
    tsp_id: &str,
    rate: i64,
    held: &mut Held,
    room: i64,
) -> Result<Round, Error> {
    let idle = || Round {
        calls: Vec::new(),
        more: false,
        slots: None,
        held_for: None,
    };
    if held.since.is_some_and(|at| at.elapsed() >= max_hold(hub)) {
        held.give_back(hub).await;
    }
    if held.calls.is_empty() {
        let batch = crate::hub::TspPacer::batch(rate).min(BATCH).min(room);
        let claimed_at = std::time::Instant::now();
        held.calls = tsp_calls::claim(hub, tsp_id, hub.config.node.claim_lease_ms(), batch)
            .await?
            .into();
        if held.calls.is_empty() {
            return Ok(idle());
        }
        held.since = Some(claimed_at);
    }
    let want = (held.calls.len() as i64).min(room);
    let slots = hub
        .tsp_pacer
        .reserve(&hub.store, tsp_id, rate, want)
        .await?;
    let at = tokio::time::Instant::now();
    if slots.n == 0 {
        return Ok(Round {
            held_for: Some(slots.first_in),
            ..idle()
        });
    }
    let calls = held.calls.drain(..slots.n as usize).collect();
    if held.calls.is_empty() {
        held.since = None;
    }
    Ok(Round {
        calls,
        more: true,
        slots: Some((at, slots)),
        held_for: None,
    })
}

async fn send(hub: &Hub, item: &QueuedCall) -> Result<(), Unsent> {
    let Some(tsp) = tsp_calls::tsp(hub, &item.tsp_id)
        .await
        .map_err(|e| TspCallError::Unavailable(format!("reading the TSP connection: {e}")))?
    else {
        return Err(TspCallError::Protocol(format!(
            "TSP connection {} is not registered",
            item.tsp_id
        ))
        .into());
    };
    let (put, path) = item.call.route(&item.token_id);
    let method = if put { Method::PUT } else { Method::POST };
    hub.tsp
        .send_once(
            method,
            &tsp.base_url,
            &path,
            &item.correlation_id,
            &item.payload,
        )
        .await
}

async fn record(hub: &Hub, item: QueuedCall, outcome: Result<(), Unsent>) -> Result<(), Error> {
    let span = tracing::info_span!("outbox", kind = %item.call, tsp_id = %item.tsp_id, token_id = %item.token_id, correlation_id = %item.correlation_id);
    let _g = span.enter();
    match &outcome {
        Ok(()) => tracing::info!(attempts = item.attempts, "delivered"),
        Err(Unsent {
            error: TspCallError::Unavailable(why),
            retry_after,
        }) => {
            tracing::warn!(attempts = item.attempts, reason = %why, ?retry_after, "will retry")
        }
        Err(Unsent { error, .. }) => {
            tracing::error!(attempts = item.attempts, reason = %error, "refused for good")
        }
    }
    drop(_g);
    let outcome = match outcome {
        Ok(()) => CallOutcome::Done,
        Err(Unsent {
            error: TspCallError::Unavailable(error),
            retry_after,
        }) => {
            let delay = backoff(hub.config.outbox_backoff, item.attempts)
                .max(retry_after.unwrap_or_default());
            CallOutcome::Retry {
                at: hub.now_ms() + delay.as_millis() as i64,
                error,
            }
        }
        Err(Unsent { error, .. }) => CallOutcome::Dead {
            error: error.to_string(),
        },
    };
    tsp_calls::settle(hub, item, outcome).await
}

/// `base × 2^(attempts-1)`, capped, with "equal jitter" (half fixed, half random) so that retries
/// of many calls spread out without ever coming back at once.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    let full = base.saturating_mul(1u32 << exp.min(16)).min(MAX_BACKOFF);
    let half = full / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_jitter_and_is_capped() {
        let base = Duration::from_secs(1);
        for attempts in 1..=12 {
            let full = base.saturating_mul(1 << (attempts - 1)).min(MAX_BACKOFF);
            let d = backoff(base, attempts);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempts}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        assert!(backoff(base, 1_000) <= MAX_BACKOFF);
    }
}
