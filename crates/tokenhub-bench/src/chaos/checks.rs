//! The chaos run's checks, each printed with its figures: the run fails if any does not hold.

use super::front::Front;
use super::load::Ran;
use super::traffic::{mean_rate, peak_rate, window_rates};
use super::{ChaosArgs, World};
use crate::campaign::TOKEN_PREFIX;
use anyhow::ensure;
use sqlx::Row;
use std::collections::HashMap;
use std::path::PathBuf;

/// One check: whether it holds, and what it says with its figures.
struct Check {
    ok: bool,
    what: String,
}

fn check(ok: bool, what: String) -> Check {
    Check { ok, what }
}

/// A token as the hub holds it and as its requestor was told of it.
#[derive(Debug, PartialEq)]
struct View {
    state: String,
    card_art_id: Option<String>,
    last_update_ms: Option<i64>,
}

pub(crate) async fn check_and_report(
    args: &ChaosArgs,
    world: &World,
    ran: &Ran,
    front: &Front,
    logs: &[PathBuf],
) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(&world.database_url).await?;
    let mut checks = vec![campaign_check(args, ran)];
    checks.extend(personalizations(&pool, args, ran).await?);
    checks.push(digitizations(&pool, args, world, ran).await?);
    checks.push(atc_resets(args, world));
    checks.extend(updates(&pool, world, ran).await?);
    checks.extend(rate(args, world, ran));
    checks.extend(deadlocks(&pool, ran, logs).await?);
    checks.push(chaos_happened(args, ran, front));
    pool.close().await;
    println!();
    println!("== checks ==");
    for c in &checks {
        println!("{} {}", if c.ok { "ok    " } else { "FAILED" }, c.what);
    }
    summary(args, world, ran);
    let failed = checks.iter().filter(|c| !c.ok).count();
    ensure!(failed == 0, "{failed} check(s) failed");
    println!("all checks passed");
    Ok(())
}

fn campaign_check(args: &ChaosArgs, ran: &Ran) -> Check {
    let v = &ran.campaign_view;
    let (done, failed) = (v["done"].as_u64(), v["failed"].as_u64());
    check(
        v["state"] == "COMPLETED" && done == Some(args.tokens as u64) && failed == Some(0),
        format!(
            "campaign {}: {} done, {} failed of {} token(s), in {:.1} s (everything settled at \
             {:.1} s)",
            v["state"].as_str().unwrap_or("?"),
            v["done"],
            v["failed"],
            args.tokens,
            ran.campaign.as_secs_f64(),
            ran.settled.as_secs_f64()
        ),
    )
}

/// Exactly one v2 personalization per token, confirmed, at the hub; one offered per device.
async fn personalizations(
    pool: &sqlx::PgPool,
    args: &ChaosArgs,
    ran: &Ran,
) -> anyhow::Result<Vec<Check>> {
    let rows = sqlx::query(
        "SELECT token_id, count(*) AS n, count(*) FILTER (WHERE state = 'CONFIRMED') AS c \
         FROM personalizations WHERE profile_version = 'v2' AND token_id LIKE $1 \
           AND NOT token_id = ANY($2) \
         GROUP BY token_id",
    )
    // The campaign's tokens: a digitized one's id may share their prefix.
    .bind(format!("{TOKEN_PREFIX}%"))
    .bind(&ran.digitized.tokens)
    .fetch_all(pool)
    .await?;
    let mut once = 0usize;
    let mut off = Vec::new();
    for r in &rows {
        let (token, n, c): (String, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if n == 1 && c == 1 {
            once += 1;
        } else if off.len() < 5 {
            off.push(format!("{token}: {n} personalization(s), {c} confirmed"));
        }
    }
    let d = &ran.devices;
    let twice: Vec<&String> = d
        .offered
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(t, _)| t)
        .collect();
    let installs_once = d.offered.values().filter(|p| p.len() == 1).count();
    let digitized = ran.digitized.tokens.len();
    Ok(vec![
        check(
            once == args.tokens && rows.len() == args.tokens,
            format!(
                "hub: {once} of {} token(s) have exactly one v2 personalization, confirmed \
                 ({} with any){}",
                args.tokens,
                rows.len(),
                samples(&off)
            ),
        ),
        check(
            twice.is_empty() && installs_once == args.tokens + digitized && d.refused.is_empty(),
            format!(
                "devices: {installs_once} of {} (campaign and digitized) offered exactly one \
                 profile, {} more than one{}; \
                 {} profile(s) opened and checked, {} failed the check; {} SUCCESS not \
                 acknowledged (a node died under it: {} failed call(s) in all)",
                args.tokens + digitized,
                twice.len(),
                samples(
                    &twice
                        .iter()
                        .take(5)
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                ),
                d.opened,
                d.refused.len(),
                d.unconfirmed.len(),
                d.errors
            ),
        ),
    ])
}

/// Every digitization the hub answered 201 for ended ACTIVE with one personalization, confirmed,
/// and the TSP made one token for each (a digitization sent again after its node was killed
/// carries its idempotency key).
async fn digitizations(
    pool: &sqlx::PgPool,
    args: &ChaosArgs,
    world: &World,
    ran: &Ran,
) -> anyhow::Result<Check> {
    let g = &ran.digitized;
    let rows = sqlx::query(
        "SELECT t.token_id, t.state, count(p.personalization_id) AS n, \
                count(p.personalization_id) FILTER (WHERE p.state = 'CONFIRMED') AS c \
         FROM tokens t LEFT JOIN personalizations p ON p.token_id = t.token_id \
         WHERE t.token_id = ANY($1) GROUP BY t.token_id, t.state",
    )
    .bind(&g.tokens)
    .fetch_all(pool)
    .await?;
    let mut off = Vec::new();
    for r in &rows {
        let (token, state, n, c): (String, String, i64, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        if state != "ACTIVE" || n != 1 || c != 1 {
            off.push(format!(
                "{token}: {state}, {n} personalization(s), {c} confirmed"
            ));
        }
    }
    let created = world.tsp.status().tokens_created;
    Ok(check(
        off.is_empty() && rows.len() == g.tokens.len() && created == g.tokens.len() as u64,
        format!(
            "digitizations: {} of {} made ({} TSP_UNAVAILABLE and {} lost call(s) tried again, \
             {} failed{}); {} ACTIVE with one personalization confirmed, {} not{}; the TSP \
             created {created} token(s)",
            g.tokens.len(),
            args.digitizations,
            g.tsp_unavailable,
            g.lost,
            g.failed.len(),
            samples(&g.failed.iter().take(3).cloned().collect::<Vec<_>>()),
            rows.len() - off.len(),
            off.len(),
            samples(&off.iter().take(5).cloned().collect::<Vec<_>>())
        ),
    ))
}

fn atc_resets(args: &ChaosArgs, world: &World) -> Check {
    let s = world.tsp.status();
    check(
        s.atc_resets == args.tokens as u64,
        format!(
            "TSP: {} ATC reset(s) for {} token(s); {} repersoToken call(s) ({} recoveries \
             started), {} /newData retried",
            s.atc_resets,
            args.tokens,
            s.reperso_calls,
            s.recoveries_started,
            s.new_data_calls_retried
        ),
    )
}

fn samples(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {})", items.join("; "))
    }
}

/// Every update the hub accepted was received (or a newer one of its token, which supersedes
/// it), none out of order, and the requestor's final view is the hub's.
async fn updates(pool: &sqlx::PgPool, world: &World, ran: &Ran) -> anyhow::Result<Vec<Check>> {
    let d = &ran.deliveries;
    let (mut exact, mut newer, mut missing) = (0usize, 0usize, Vec::new());
    for (token, ts) in &ran.updates.accepted {
        let got = d.received.get(token);
        if got.is_some_and(|s| s.contains(ts)) {
            exact += 1;
        } else if got.is_some_and(|s| s.iter().any(|r| r > ts)) {
            newer += 1;
        } else {
            missing.push(format!("{token} at {ts}"));
        }
    }
    let u = &ran.updates;
    let sent = check(
        missing.is_empty() && u.failed.is_empty() && d.lagged == 0,
        format!(
            "updates: {} accepted by the hub ({} lost connection(s) and {} 5xx retried, {} \
             failed{}); {exact} received as sent, {newer} superseded by a newer one received, {} \
             never received{}",
            u.accepted.len(),
            u.lost,
            u.five_xx,
            u.failed.len(),
            samples(&u.failed.iter().take(3).cloned().collect::<Vec<_>>()),
            missing.len(),
            samples(&missing.iter().take(5).cloned().collect::<Vec<_>>())
        ),
    );
    // The hub's own record of its retries: the requestor down shows as attempts.
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE attempts > 1), COALESCE(max(attempts), 0) \
         FROM notifications WHERE state = 'DELIVERED'",
    )
    .fetch_one(pool)
    .await?;
    let (retried, max_attempts): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    let order = check(
        d.obsolete == 0 && d.rejected == 0,
        format!(
            "order: {} applied, {} duplicate(s) (sent again after a node died), {} older than \
             one already received{}, {} refused by the receiver; requestor down {}",
            d.applied,
            d.duplicates,
            d.obsolete,
            samples(&d.obsolete_samples),
            d.rejected,
            ran.requestor_down
                .map_or("never".into(), |(at, len)| format!(
                    "{:.0} s from {:.1} s ({} attempt(s) answered 503 meanwhile): {retried} \
                     update(s) delivered after more than one attempt, {max_attempts} attempts \
                     at most",
                    len.as_secs_f64(),
                    at.as_secs_f64(),
                    d.forced
                ))
        ),
    );
    Ok(vec![sent, order, final_view(pool, world).await?])
}

async fn final_view(pool: &sqlx::PgPool, world: &World) -> anyhow::Result<Check> {
    let rows = sqlx::query(
        "SELECT token_id, state, card_art_id, last_update_ms FROM tokens \
         WHERE last_update_ms IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let told: HashMap<String, View> = world
        .requestor
        .tokens()
        .await?
        .into_iter()
        .map(|(id, t)| {
            let view = View {
                state: t.update.token_state.map_or("?", |s| s.as_str()).to_string(),
                card_art_id: t.update.card_art_id,
                last_update_ms: Some(t.update.last_update_timestamp.timestamp_millis()),
            };
            (id, view)
        })
        .collect();
    let mut differ = Vec::new();
    for r in &rows {
        let token: String = r.try_get(0)?;
        let hub = View {
            state: r.try_get(1)?,
            card_art_id: r.try_get(2)?,
            last_update_ms: r.try_get(3)?,
        };
        let same = told.get(&token).is_some_and(|t| {
            t.state == hub.state
                && t.card_art_id == hub.card_art_id
                && t.last_update_ms == hub.last_update_ms
        });
        if !same {
            differ.push(format!(
                "{token}: hub {hub:?}, requestor {:?}",
                told.get(&token)
            ));
        }
    }
    Ok(check(
        differ.is_empty(),
        format!(
            "final view: {} token(s) updated at the hub, the requestor's view of {} equal to it, \
             {} different{}",
            rows.len(),
            rows.len() - differ.len(),
            differ.len(),
            samples(&differ.iter().take(3).cloned().collect::<Vec<_>>())
        ),
    ))
}

/// The TSP's call rate never above its limit: by its own limiter (a bucket of one second's
/// calls, refilled at the rate), and over every window of one second the TSP simulator's
/// counters were sampled in.
fn rate(args: &ChaosArgs, world: &World, ran: &Ran) -> Vec<Check> {
    let s = world.tsp.status();
    let limit = f64::from(args.tsp_rate);
    let windows = window_rates(&ran.call_samples);
    let peak = windows.iter().copied().fold(0.0, f64::max);
    let above = windows.iter().filter(|r| **r > limit).count();
    let calls = ran.call_samples.last().map_or(0, |(_, c)| *c);
    vec![
        check(
            s.rate_limited == 0,
            format!(
                "TSP limiter: limit {} calls/s; {calls} call(s), {} refused by its limiter; {} \
                 answered 503/429 on purpose, {} stalled {} ms",
                args.tsp_rate, s.rate_limited, s.refused_on_purpose, s.stalled, args.tsp_stall_ms
            ),
        ),
        check(
            peak <= limit,
            format!(
                "TSP rate per second: limit {} calls/s; {:.0} calls/s from the first call to the \
                 last, busiest one-second window {peak:.0} calls/s, {above} of {} windows above \
                 the limit",
                args.tsp_rate,
                mean_rate(&ran.call_samples),
                windows.len()
            ),
        ),
    ]
}

/// No deadlock: PostgreSQL counted none in the run's database, no node logged one; and the
/// 5xx answers the callers got.
async fn deadlocks(pool: &sqlx::PgPool, ran: &Ran, logs: &[PathBuf]) -> anyhow::Result<Vec<Check>> {
    let counted: i64 = sqlx::query_scalar(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?;
    let mut lines = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        lines.extend(
            text.lines()
                .filter(|l| l.to_ascii_lowercase().contains("deadlock"))
                .map(str::to_string),
        );
    }
    Ok(vec![check(
        counted == 0 && lines.is_empty(),
        format!(
            "deadlocks: {counted} counted by PostgreSQL, {} log line(s) mention one{}; 5xx \
             answers to the TSP's updates: {}{}",
            lines.len(),
            samples(&lines.iter().take(3).cloned().collect::<Vec<_>>()),
            ran.updates.five_xx,
            samples(&ran.updates.five_xx_bodies)
        ),
    )])
}

fn chaos_happened(args: &ChaosArgs, ran: &Ran, front: &Front) -> Check {
    let (per_node, refused) = front.connections();
    check(
        ran.kills.len() == args.kills as usize && ran.exited.is_empty(),
        format!(
            "chaos: {} node(s) killed with SIGKILL and restarted (of {}), {} exited by \
             themselves{}; connections per node {per_node:?}, {refused} found no node",
            ran.kills.len(),
            args.kills,
            ran.exited.len(),
            samples(&ran.exited)
        ),
    )
}

/// One line of `key=value` figures, for scripts and the test.
fn summary(args: &ChaosArgs, world: &World, ran: &Ran) {
    let s = world.tsp.status();
    println!(
        "summary nodes={} tokens={} updates={} kills={} done={} failed={} atc_resets={} \
         accepted={} digitized={} obsolete={} rate_limited={} refused_on_purpose={} peak_calls_per_s={:.0} \
         campaign_s={:.1} settled_s={:.1}",
        args.nodes,
        args.tokens,
        args.updates,
        ran.kills.len(),
        ran.campaign_view["done"],
        ran.campaign_view["failed"],
        s.atc_resets,
        ran.updates.accepted.len(),
        ran.digitized.tokens.len(),
        ran.deliveries.obsolete,
        s.rate_limited,
        s.refused_on_purpose,
        peak_rate(&ran.call_samples),
        ran.campaign.as_secs_f64(),
        ran.settled.as_secs_f64()
    );
}
