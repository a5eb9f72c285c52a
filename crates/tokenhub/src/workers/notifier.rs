//! The requestor notifier: delivers the token updates `flows::notifications` queued, as a pipeline (a
//! delivery starts as soon as a slot of its requestor is free, not when a batch ends), at most
//! `maxInFlight` at once per requestor, in order per token.
//!
//! Outcomes: 2xx delivered; 408/429/5xx, time-outs and connection errors retried after a wait
//! drawn at random up to the schedule's entry for that attempt ("full jitter"), never before the
//! requestor's `Retry-After`; after the last entry, dead. 400/401/404 and other refusals: dead at
//! once (the dead-letter list, replayable). 410: the requestor's endpoint is disabled and its
//! updates wait, untried, until an operator enables it again.

use crate::domain::notification::{Notification, Requestor, Settle, Settlement};
use crate::error::Error;
use crate::flows::notifications;
use crate::hub::Hub;
use crate::requestor_client::{Attempt, Delivery};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The longest the notifier sleeps when idle (another node may queue updates).
const IDLE: Duration = Duration::from_millis(500);

/// Waits this long after a wake-up before claiming, so that one claim serves the updates and the
/// freed slots of that moment together (the serial SQLite writer pays per statement).
const COALESCE: Duration = Duration::from_millis(5);
/// Most outcomes recorded in one transaction.
const SETTLE_BATCH: usize = 256;

pub async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let in_flight: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let (settled_tx, settled_rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let settler = tokio::spawn(settle_outcomes(hub.clone(), settled_rx));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let mut busy = false;
        let round = std::time::Instant::now();
        match claim_round(&hub, &in_flight).await {
            Ok(claimed) => {
                busy = !claimed.is_empty();
                tracing::debug!(
                    claimed = claimed.len(),
                    took_us = round.elapsed().as_micros() as u64,
                    "claim round"
                );
                for (requestor, item) in claimed {
                    let hub = hub.clone();
                    let in_flight = in_flight.clone();
                    let settled = settled_tx.clone();
                    tasks.spawn(async move {
                        let outcome = deliver(&hub, &requestor, item).await;
                        let id = &requestor.requestor_id;
                        if let Some(n) = in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_mut(id)
                        {
                            *n -= 1;
                        }
                        // The settler wakes the claimer once the outcome is recorded.
                        let _ = settled.send(outcome);
                    });
                }
            }
            Err(e) => tracing::error!(cause = %e.chain(), "claiming token updates failed"),
        }
        // Busy: the deliveries just started wake the loop when they end. Idle: sleep until the
        // next retry falls due (or an update is queued).
        let nap = if busy {
            IDLE
        } else {
            match notifications::next_due(&hub).await {
                Ok(Some(due)) => Duration::from_millis((due - hub.now_ms()).clamp(1, 500) as u64),
                _ => IDLE,
            }
        };
        tokio::select! {
            _ = hub.notify_wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        tokio::time::sleep(COALESCE).await;
    }
    // Let deliveries under way finish and record their outcome.
    while tasks.join_next().await.is_some() {}
    drop(settled_tx);
    let _ = settler.await;
}

/// Records delivery outcomes, as many as are waiting (up to [`SETTLE_BATCH`]) per transaction.
async fn settle_outcomes(hub: Arc<Hub>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Outcome>) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let outcomes = std::mem::take(&mut batch);
        let round = std::time::Instant::now();
        let n = outcomes.len();
        let gone = outcomes
            .iter()
            .filter(|o| o.gone)
            .map(|o| (o.requestor_id.clone(), o.settlement.ended_ms))
            .collect();
        let settlements = outcomes.into_iter().map(|o| o.settlement).collect();
        let recorded = notifications::settle(&hub, settlements, gone).await;
        tracing::debug!(
            settled = n,
            took_us = round.elapsed().as_micros() as u64,
            "settle round"
        );
        if let Err(e) = recorded {
            // The rows keep their lease: they are tried again when it runs out.
            tracing::error!(cause = %e.chain(), "recording delivery outcomes failed");
        }
        hub.notify_wake.notify_one();
    }
}

/// One attempt's outcome, waiting to be recorded.
struct Outcome {
    requestor_id: String,
    settlement: Settlement,
    /// The endpoint answered 410: disable the requestor.
    gone: bool,
}

/// Claims, for every enabled requestor with a free slot, its due updates (one transaction).
async fn claim_round(
    hub: &Hub,
    in_flight: &Mutex<HashMap<String, i64>>,
) -> Result<Vec<(Arc<Requestor>, Notification)>, Error> {
    let requestors = notifications::enabled_requestors(hub).await?;
    let wanted: Vec<(Arc<Requestor>, i64)> = {
        let busy = in_flight.lock().unwrap_or_else(|p| p.into_inner());
        requestors
            .into_iter()
            .filter_map(|r| {
                let free = r.max_in_flight - busy.get(&r.requestor_id).copied().unwrap_or(0);
                (free > 0).then(|| (Arc::new(r), free))
            })
            .collect()
    };
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let claimed = notifications::claim(hub, wanted, hub.config.node.claim_lease_ms()).await?;
    let mut busy = in_flight.lock().unwrap_or_else(|p| p.into_inner());
    for (r, _) in &claimed {
        *busy.entry(r.requestor_id.clone()).or_insert(0) += 1;
    }
    Ok(claimed)
}

/// Makes one attempt and says how it went.
async fn deliver(hub: &Hub, requestor: &Requestor, n: Notification) -> Outcome {
    let started = hub.now_ms();
    let timestamp = started / 1000;
    let attempt = send(hub, requestor, &n, timestamp).await;
    let now = hub.now_ms();
    let schedule = &hub.config.notify.retry_schedule;
    let (settle, status, error, gone) = match attempt {
        Attempt::Delivered { status } => (Settle::Delivered, Some(status), None, false),
        Attempt::Retry {
            status,
            retry_after,
            error,
        } => match schedule.get((n.attempts - 1).max(0) as usize) {
            Some(ceiling) => {
                let wait = full_jitter(*ceiling).max(retry_after.unwrap_or_default());
                let next_attempt_ms = now + wait.as_millis() as i64;
                (
                    Settle::Retry { next_attempt_ms },
                    status,
                    Some(error),
                    false,
                )
            }
            None => (
                Settle::Dead,
                status,
                Some(format!("{error}; gave up after {} attempts", n.attempts)),
                false,
            ),
        },
        Attempt::Refused { status, error } => (Settle::Dead, status, Some(error), false),
        Attempt::Gone => (
            Settle::Hold,
            Some(410),
            Some("HTTP 410: the endpoint is gone; disabled".to_string()),
            true,
        ),
    };
    notifications::attempted(&requestor.requestor_id, &settle);
    let span = tracing::info_span!("notify", requestor_id = %requestor.requestor_id, token_id = %n.token_id, webhook_id = %n.webhook_id, correlation_id = %n.correlation_id);
    span.in_scope(|| match &settle {
        Settle::Delivered => tracing::debug!(attempts = n.attempts, "delivered"),
        Settle::Retry { .. } => {
            tracing::info!(attempts = n.attempts, status, reason = ?error, "will retry")
        }
        Settle::Dead => {
            tracing::warn!(attempts = n.attempts, status, reason = ?error, "dead letter")
        }
        Settle::Hold => tracing::error!("the requestor's endpoint answered 410 Gone: disabled"),
    });
    Outcome {
        requestor_id: requestor.requestor_id.clone(),
        settlement: Settlement {
            id: n.id,
            claim_version: n.claim_version,
            outcome: settle,
            status: status.map(i64::from),
            error,
            started_ms: started,
            ended_ms: now,
        },
        gone,
    }
}

/// Signs the update and sends it to the requestor's endpoint.
async fn send(hub: &Hub, requestor: &Requestor, n: &Notification, timestamp: i64) -> Attempt {
    match hub.keys.authenticate_delivery(
        &requestor.requestor_id,
        &requestor.credentials,
        &n.webhook_id,
        timestamp,
        n.payload.as_bytes(),
    ) {
        Err(e) => Attempt::Refused {
            status: None,
            error: format!("the requestor's credentials: {e}"),
        },
        Ok(auth) => {
            let url = format!(
                "{}/notify-token-update",
                requestor.base_url.trim_end_matches('/')
            );
            hub.requestor_client
                .send(&Delivery {
                    url: &url,
                    authorization: &auth.authorization,
                    correlation_id: &n.correlation_id,
                    webhook_id: &n.webhook_id,
                    timestamp,
                    signature: &auth.signature,
                    body: &n.payload,
                    server_ca_pem: requestor.server_ca_pem.as_deref(),
                })
                .await
        }
    }
}

/// A wait drawn uniformly between zero and `ceiling`.
fn full_jitter(ceiling: Duration) -> Duration {
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}
