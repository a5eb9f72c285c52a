//! The demo's last act: token updates to a token requestor. The TSP changes tokens (expiry
//! extensions, new last digits, suspensions, resumptions, deletions), some updates sent twice
//! and some out of order; the requestor (built on `tokenhub-receiver`) answers 503 in bursts and
//! refuses a few updates (400, dead-lettered, replayed once newer ones were delivered, so that
//! it drops them as obsolete); in the end its view of every token must equal the hub's.

use anyhow::Context;
use chrono::{Duration as ChronoDuration, Utc};
use futures::stream::{self, StreamExt};
use std::time::{Duration, Instant};
use tokenhub_sim::requestor::RequestorSim;
use tokenhub_sim::{TokenUpdate, TspSimHandle};

/// The requestor every demo token is digitized for.
pub const REQUESTOR_ID: &str = "demo-psp";
pub const MERCHANT_ID: &str = "MERCHANT-0001";
pub const API_KEY: &str = "demo-psp-api-key";
pub const SIGNING_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// What the phase did and saw.
#[derive(Debug, Default)]
pub struct Report {
    pub updates_sent: usize,
    pub duplicates_sent: usize,
    pub out_of_order_sent: usize,
    pub refused_by_hub: usize,
    pub deliveries: i64,
    pub attempts: i64,
    pub dead_replayed: u64,
    pub receiver_applied: u64,
    pub receiver_duplicates: u64,
    pub receiver_obsolete: u64,
    pub failed_on_purpose: u64,
    pub pan_discards: u64,
    pub views_equal: usize,
    pub view_mismatches: Vec<String>,
    pub left_pending: i64,
    pub left_dead: i64,
    pub deleted: usize,
    pub time: Duration,
}

/// Drives the TSP's updates and checks the requestor's final view.
pub async fn run(
    hub: &tokenhub::Hub,
    sim: &TspSimHandle,
    requestor: &RequestorSim,
    issuer_id: &str,
    token_ids: &[String],
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::default();
    // Activations were delivered already: wait for them first.
    drain(hub, Duration::from_secs(60)).await?;

    // A few refusals (400: dead letters) and bursts of 503 (retried).
    requestor
        .status_next(400, 5, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    requestor.fail_next((token_ids.len() / 10) as u32, None);
    first_wave(sim, issuer_id, token_ids, &mut report).await?;
    drain(hub, Duration::from_secs(120)).await?;

    // A second wave, newer: every token still alive gets a new card art; then the dead letters
    // of the first wave are replayed: older than what the requestor holds, it drops them.
    second_wave(sim, issuer_id, token_ids, &mut report).await?;
    drain(hub, Duration::from_secs(120)).await?;
    let replayed = replay_dead(hub).await?;
    report.dead_replayed = replayed;
    drain(hub, Duration::from_secs(60)).await?;

    // The requestor's view against the hub's.
    compare_views(hub, requestor, token_ids, &mut report).await?;
    count_outcomes(hub, requestor, &mut report).await?;
    report.time = started.elapsed();
    Ok(report)
}

/// Expiry extensions, new last digits, suspensions, resumptions (out of order), deletions; some
/// sent twice.
async fn first_wave(
    sim: &TspSimHandle,
    issuer_id: &str,
    token_ids: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
    let base = Utc::now();
    let mut wave: Vec<(TokenUpdate, usize)> = Vec::new(); // (update, times to send)
    for (i, id) in token_ids.iter().enumerate() {
        let at = |ms: i64| base + ChronoDuration::milliseconds(ms);
        let mut u = TokenUpdate::new(id, issuer_id, at(10));
        match i % 5 {
            0 => u.token_expiry_date = Some("1231".into()),
            1 => u.token_last_digits = Some(format!("{:04}", 9000 + i % 1000)),
            2 => u.token_state = Some("SUSPENDED".into()),
            3 => {
                // Resumed after a suspension, but the resumption arrives first.
                let mut resume = TokenUpdate::new(id, issuer_id, at(20));
                resume.token_state = Some("ACTIVE".into());
                wave.push((resume, 1));
                u.token_state = Some("SUSPENDED".into());
                report.out_of_order_sent += 1;
            }
            _ => u.token_state = Some("DELETED".into()),
        }
        // Every seventh update is sent twice (a TSP retrying after a lost answer).
        let times = if i % 7 == 0 { 2 } else { 1 };
        wave.push((u, times));
    }
    let answers: Vec<anyhow::Result<Vec<u16>>> = stream::iter(wave)
        .map(|(u, times)| async move {
            let correlation = uuid::Uuid::new_v4().to_string();
            let mut statuses = Vec::new();
            for _ in 0..times {
                statuses.push(sim.send_update_as(&u, &correlation).await?.status);
            }
            Ok(statuses)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for a in answers {
        let statuses = a?;
        report.updates_sent += 1;
        report.duplicates_sent += statuses.len() - 1;
        report.refused_by_hub += statuses.iter().filter(|s| **s != 204).count();
    }
    Ok(())
}

/// A new card art for every token still alive.
async fn second_wave(
    sim: &TspSimHandle,
    issuer_id: &str,
    token_ids: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
    let later = Utc::now();
    let alive: Vec<&String> = token_ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 4)
        .map(|(_, id)| id)
        .collect();
    let answers: Vec<anyhow::Result<u16>> = stream::iter(alive)
        .map(|id| async move {
            let mut u = TokenUpdate::new(id, issuer_id, later);
            u.card_art_id = Some("art-transit-2026".into());
            Ok(sim.send_update(&u).await?.status)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for a in answers {
        report.updates_sent += 1;
        report.refused_by_hub += usize::from(a? != 204);
    }
    Ok(())
}

/// Every token as the requestor holds it against the hub's.
async fn compare_views(
    hub: &tokenhub::Hub,
    requestor: &RequestorSim,
    token_ids: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
    let view = requestor.tokens().await?;
    for id in token_ids {
        let hub_token = hub.store.token(id).await?.context("a demo token is gone")?;
        let Some(theirs) = view.get(id) else {
            report.view_mismatches.push(format!("{id}: never received"));
            continue;
        };
        let u = &theirs.update;
        let same = u.token_state.map(|s| s.as_str()) == Some(hub_token.state.as_str())
            && u.token_last_digits == hub_token.token_last4
            && u.token_expiry_date == hub_token.token_exp
            && u.card_art_id == hub_token.card.art_id
            && Some(u.last_update_timestamp.timestamp_millis()) == hub_token.last_update_ms;
        if same {
            report.views_equal += 1;
        } else {
            report.view_mismatches.push(format!(
                "{id}: hub {} / requestor {:?}",
                hub_token.state.as_str(),
                u.token_state
            ));
        }
        if hub_token.state == tokenhub::domain::TokenState::Deleted {
            report.deleted += 1;
        }
    }
    Ok(())
}

/// What the hub delivered and the requestor did with it.
async fn count_outcomes(
    hub: &tokenhub::Hub,
    requestor: &RequestorSim,
    report: &mut Report,
) -> anyhow::Result<()> {
    let counts = hub.store.notification_counts(Some(REQUESTOR_ID)).await?;
    let count = |s: &str| {
        counts
            .iter()
            .find(|(k, _)| k.as_str() == s)
            .map_or(0, |(_, n)| *n)
    };
    report.deliveries = count("DELIVERED");
    report.left_pending = count("PENDING");
    report.left_dead = count("DEAD");
    report.attempts = hub.store.notification_attempt_count().await?;
    let stats = requestor.stats();
    report.receiver_applied = stats.applied;
    report.receiver_duplicates = stats.duplicates;
    report.receiver_obsolete = stats.obsolete;
    report.failed_on_purpose = stats.failed_on_purpose;
    report.pan_discards = stats.pan_discards;
    Ok(())
}

/// Replays the requestor's dead letters, as an operator would.
async fn replay_dead(hub: &tokenhub::Hub) -> anyhow::Result<u64> {
    let now = hub.now_ms();
    let replayed = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                Ok::<_, tokenhub::error::Error>(
                    c.replay_dead_notifications(REQUESTOR_ID, now).await?,
                )
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    hub.notify_wake.notify_one();
    Ok(replayed)
}

/// Waits until no token update is pending at the hub.
pub async fn drain(hub: &tokenhub::Hub, timeout: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + timeout;
    loop {
        let counts = hub.store.notification_counts(None).await?;
        if !counts
            .iter()
            .any(|(s, n)| s.as_str() == "PENDING" && *n > 0)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "token updates still pending after {timeout:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
