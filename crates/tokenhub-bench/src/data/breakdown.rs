//! The breakdown: the steps of one call, timed in-process one call at a time, then many at a time,
//! and the bound the CPU measured puts on a hub's throughput.

use super::measure::{Histogram, Samples};
use super::{ISSUER_ID, PRODUCT_ID, VERSION};
use anyhow::{ensure, Context};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokenhub::domain::data_call::CallNames;
use tokenhub::domain::perso::{self, Operation};
use tokenhub::domain::{CorrelationId, TokenId, TokenState};
use tokenhub::keys::TokenData;
use tokenhub::store::token_data::CallKey;
use tokenhub::store::{tokens, StoreError};

pub(crate) const BREAKDOWN_CALLS: usize = 2000;
pub(crate) const CONCURRENT_CALLS: usize = 20_000;
/// The steps of a call the bound adds to the parse-only server's work and the SQL.
pub(crate) const STEP_TOKEN_READ: &str = "read the token (store.token)";
pub(crate) const STEP_CHECKS: &str = "check 40 elements, decrypt 8 (check_elements)";
pub(crate) const STEP_SEAL: &str = "serialize and seal the part (seal_for_token)";
/// Tokens the breakdown uses.
pub(crate) const BREAKDOWN_TOKENS: usize = BREAKDOWN_CALLS + 3 * CONCURRENT_CALLS;

pub(crate) struct Breakdown {
    pub(crate) rows: Vec<(&'static str, Histogram)>,
    pub(crate) empty_commit_ms: f64,
    pub(crate) concurrency: usize,
    /// The flow alone, `concurrency` calls at a time: calls per second.
    pub(crate) flow_rate: f64,
    /// The flow's SQL alone (no crypto), `concurrency` at a time: transactions per second; only
    /// the statements that store the data part, then every statement.
    pub(crate) store_data_rate: f64,
    pub(crate) store_full_rate: f64,
    /// This process's CPU per call of the concurrent runs above, in µs (`None` without
    /// `/proc/self/task`): the flow, the part's statements, all statements.
    pub(crate) flow_cpu_us: Option<f64>,
    pub(crate) store_data_cpu_us: Option<f64>,
    pub(crate) store_full_cpu_us: Option<f64>,
    pub(crate) statements_data: usize,
    pub(crate) statements_full: usize,
    /// The delivery sweep (every 500 ms, a write transaction) with this many personalizations
    /// pending: its median time.
    pub(crate) sweep_ms: f64,
    pub(crate) pending: usize,
}

impl Breakdown {
    /// `parse_only`: the parse-only server's max phase, for the bound its CPU per request puts
    /// on the hub's throughput; `sql_in_process`: whether the SQL runs in this process (SQLite),
    /// so that this process's CPU is all of it.
    pub(crate) fn print(&self, parse_only: &Samples, sql_in_process: bool) {
        println!();
        println!(
            "== breakdown: the steps of one call, one call at a time, in-process, no HTTP \
             ({BREAKDOWN_CALLS} calls) =="
        );
        println!("{:<58} {:>8} {:>8}", "step", "p50 ms", "p99 ms");
        for (name, h) in &self.rows {
            println!("{name:<58} {:>8.3} {:>8.3}", h.ms(50.0), h.ms(99.0));
        }
        println!(
            "{:<58} {:>8.3} (mean)",
            "an empty store.transact (no write: no fsync)", self.empty_commit_ms
        );
        println!(
            "{:<58} {:>8.3} (median of 9)",
            format!("the delivery sweep, {} deliveries pending", self.pending),
            self.sweep_ms
        );
        println!();
        println!(
            "== the same, {} at a time, in-process, no HTTP ({CONCURRENT_CALLS} calls each) ==",
            self.concurrency
        );
        let cpu = |us: Option<f64>| us.map_or("-".into(), |us| format!("{:.1}", us));
        println!("{:<58} {:>8} {:>8}", "", "per s", "CPU µs");
        println!(
            "{:<58} {:>8.0} {:>8}",
            "the whole flow (flows::perso::submit), calls",
            self.flow_rate,
            cpu(self.flow_cpu_us)
        );
        println!(
            "{:<58} {:>8.0} {:>8}",
            format!(
                "its SQL alone, no crypto: the {} statements storing the part",
                self.statements_data
            ),
            self.store_data_rate,
            cpu(self.store_data_cpu_us)
        );
        println!(
            "{:<58} {:>8.0} {:>8}",
            format!(
                "its SQL alone, no crypto: all {} statements of the call",
                self.statements_full
            ),
            self.store_full_rate,
            cpu(self.store_full_cpu_us)
        );
        if sql_in_process {
            self.print_bound(parse_only);
        } else {
            println!(
                "(CPU µs: this process only; the database server's share is not counted, so no \
                 bound is drawn from them)"
            );
        }
    }

    /// What the CPU measured puts within reach: a hub call does all the parse-only server does
    /// (HTTP, parsing, and its share of the load generator, all on the same cores) and, at
    /// least, its SQL; with the contract's checks, also the token read, the element checks and
    /// the seal (their one-at-a-time p50s). Throughput is at most the machine's cores over the
    /// CPU per call, whatever the code around them.
    pub(crate) fn print_bound(&self, parse_only: &Samples) {
        let (Some(cpu), Some(sql_us)) = (parse_only.cpu, self.store_full_cpu_us) else {
            return;
        };
        let rps = parse_only.completed_per_sec();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if rps <= 0.0 {
            return;
        }
        let parse_us = cpu.process * 1e6 / rps;
        let p50_us = |step: &str| {
            self.rows
                .iter()
                .find(|(name, _)| *name == step)
                .map_or(0.0, |(_, h)| h.ms(50.0) * 1000.0)
        };
        let checks_us = p50_us(STEP_TOKEN_READ) + p50_us(STEP_CHECKS) + p50_us(STEP_SEAL);
        println!();
        println!("== the most a hub can answer here: {cores} cores over its CPU per call ==");
        println!(
            "{:<58} {:>8.1}",
            "the parse-only server, CPU µs per request (max phase)", parse_us
        );
        for (what, us) in [
            (
                "+ the call's SQL alone (all statements, group commit)",
                parse_us + sql_us,
            ),
            (
                "+ token read, element checks, seal (one-at-a-time p50s)",
                parse_us + sql_us + checks_us,
            ),
        ] {
            let most = cores * 1e6 / us;
            println!(
                "{what:<58} {us:>8.1} µs: at most {most:>6.0} calls/s, {:.2} of the parse-only server",
                most / rps
            );
        }
    }
}

pub(crate) async fn breakdown(
    hub: &Arc<tokenhub::Hub>,
    body: &'static [u8],
    ids: &[String],
    concurrency: usize,
    pending: usize,
) -> anyhow::Result<Breakdown> {
    let (ids, rest) = ids.split_at(BREAKDOWN_CALLS);
    let (flow_ids, rest) = rest.split_at(CONCURRENT_CALLS);
    let (data_ids, full_ids) = rest.split_at(CONCURRENT_CALLS);
    let sweep_ms = sweep_ms(hub).await?;
    let (rows, part_size) = one_at_a_time(hub, body, ids).await?;
    let t = Instant::now();
    for _ in 0..BREAKDOWN_CALLS {
        hub.store
            .transact(|_| Box::pin(async { Ok::<_, tokenhub::store::StoreError>(()) }))
            .await?;
    }
    let per = t.elapsed() / BREAKDOWN_CALLS as u32;

    // The flow alone, many calls at a time.
    let cpu = own_cpu_ns();
    let t = Instant::now();
    flow_concurrently(hub, body, flow_ids, concurrency).await?;
    let flow_rate = CONCURRENT_CALLS as f64 / t.elapsed().as_secs_f64();
    let flow_cpu_us = cpu_us_per_call(cpu, CONCURRENT_CALLS);

    // Its SQL alone: the statements the call runs, with values of the same sizes, no crypto.
    let submission =
        perso::parse_submission(body, Operation::Data).map_err(|r| anyhow::anyhow!("{r}"))?;
    // Joined once, outside the transactions, as the flow's HTTP worker joins them.
    let names = Arc::new((
        tokens::ElementNames::of(submission.elements.iter().map(|e| e.name.as_str())),
        CallNames::of(submission.elements.iter().map(|e| e.name.as_str())),
    ));
    let part = Arc::new(vec![0x5A; part_size]);
    let cpu = own_cpu_ns();
    let (store_data_rate, statements_data) =
        sql_alone(hub, data_ids, concurrency, false, &names, &part).await?;
    let store_data_cpu_us = cpu_us_per_call(cpu, data_ids.len());
    let cpu = own_cpu_ns();
    let (store_full_rate, statements_full) =
        sql_alone(hub, full_ids, concurrency, true, &names, &part).await?;
    let store_full_cpu_us = cpu_us_per_call(cpu, full_ids.len());

    Ok(Breakdown {
        rows,
        empty_commit_ms: per.as_secs_f64() * 1000.0,
        concurrency,
        flow_rate,
        store_data_rate,
        store_full_rate,
        flow_cpu_us,
        store_data_cpu_us,
        store_full_cpu_us,
        statements_data,
        statements_full,
        sweep_ms,
        pending,
    })
}

/// The delivery sweep's median time over 9 runs: every accepted call left a personalization
/// pending (no device fetches them here).
async fn sweep_ms(hub: &Arc<tokenhub::Hub>) -> anyhow::Result<f64> {
    let mut sweeps = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        tokenhub::flows::deliver::sweep(hub)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        sweeps.push(t.elapsed().as_micros() as u64);
    }
    Ok(Histogram::new(&sweeps).ms(50.0))
}

/// The steps of a call, timed one call at a time on `ids`; the sealed part's size.
async fn one_at_a_time(
    hub: &Arc<tokenhub::Hub>,
    body: &'static [u8],
    ids: &[String],
) -> anyhow::Result<(Vec<(&'static str, Histogram)>, usize)> {
    use tokenhub::flows::perso::{submit, Applied};
    let mut steps: BTreeMap<usize, (&'static str, Vec<u64>)> = BTreeMap::new();
    let mut time = |i: usize, name: &'static str, t: Instant| {
        steps
            .entry(i)
            .or_insert_with(|| (name, Vec::new()))
            .1
            .push(t.elapsed().as_micros() as u64);
    };
    let profile = hub
        .profile(ISSUER_ID, PRODUCT_ID, VERSION)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?
        .context("the bench profile is not defined")?;
    let mut part_size = 0;
    for (n, id) in ids.iter().enumerate() {
        let t = Instant::now();
        let submission =
            perso::parse_submission(body, Operation::Data).map_err(|r| anyhow::anyhow!("{r}"))?;
        time(0, "parse the body (parse_submission)", t);
        let t = Instant::now();
        hub.store.issuer(ISSUER_ID).await?;
        time(1, "read the issuer (store.issuer)", t);
        let t = Instant::now();
        let token = hub.store.token(id).await?.context("no such token")?;
        time(2, STEP_TOKEN_READ, t);
        let t = Instant::now();
        hub.keys
            .check_elements(super::BENCH_TSP, &profile, &submission.elements)?
            .map_err(|r| anyhow::anyhow!("{r}"))?;
        time(3, STEP_CHECKS, t);
        let t = Instant::now();
        let clear = tokenhub::domain::data_part::encode_part(&submission.elements);
        // The token's first data: its data key is made with it.
        let data_key = hub.keys.new_data_key(&token.token_id)?;
        let sealed = hub.keys.seal_for_token(id, &data_key, &clear)?;
        time(4, STEP_SEAL, t);
        let t = Instant::now();
        hub.keys
            .personalize(
                TokenData {
                    tsp_id: super::BENCH_TSP,
                    token_id: id,
                    data_key: &data_key,
                    sealed: std::slice::from_ref(&sealed),
                    incoming: &[],
                },
                &profile,
                &[9u8; 32],
                "prs_bench",
            )
            .map_err(|e| anyhow::anyhow!("the profile could not be built: {e}"))?;
        time(
            5,
            "(at the device's poll) build the profile, seal it to the device",
            t,
        );
        part_size = sealed.len();
        let t = Instant::now();
        let token_id = TokenId::parse(id).map_err(|r| anyhow::anyhow!("{r}"))?;
        let correlation =
            CorrelationId::parse("x-correlation-id", Some(format!("bd-{n}").as_bytes()))
                .map_err(|r| anyhow::anyhow!("{r}"))?;
        let applied = submit(hub, None, &token_id, &correlation, body, Operation::Data)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        time(6, "the whole flow, alone (flows::perso::submit)", t);
        ensure!(
            matches!(applied, Applied::Stored { .. }),
            "the breakdown's call was not stored"
        );
    }
    let rows = steps
        .into_values()
        .map(|(name, v)| (name, Histogram::new(&v)))
        .collect();
    Ok((rows, part_size))
}

/// The whole flow on `ids`, `concurrency` calls at a time.
async fn flow_concurrently(
    hub: &Arc<tokenhub::Hub>,
    body: &'static [u8],
    ids: &[String],
    concurrency: usize,
) -> anyhow::Result<()> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    use tokenhub::flows::perso::submit;
    stream::iter(ids.iter().enumerate())
        .map(|(n, id)| async move {
            let token_id = TokenId::parse(id).map_err(|r| anyhow::anyhow!("{r}"))?;
            let correlation =
                CorrelationId::parse("x-correlation-id", Some(format!("cf-{n}").as_bytes()))
                    .map_err(|r| anyhow::anyhow!("{r}"))?;
            submit(hub, None, &token_id, &correlation, body, Operation::Data)
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Runs, for each token, the statements `flows::perso::apply` runs for a call that completes the
/// token's data (`full`), or only those that store the data part; returns transactions per
/// second and the number of statements in each.
pub(crate) async fn sql_alone(
    hub: &Arc<tokenhub::Hub>,
    ids: &[String],
    concurrency: usize,
    full: bool,
    names: &Arc<(tokens::ElementNames, CallNames)>,
    part: &Arc<Vec<u8>>,
) -> anyhow::Result<(f64, usize)> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    use tokenhub::domain::personalization::{Kind, Personalization, PersonalizationState};
    let now = hub.now_ms();
    let t = Instant::now();
    let counts = stream::iter(ids.iter().enumerate())
        .map(|(n, id)| {
            let (id, names, part) = (id.clone(), names.clone(), part.clone());
            hub.store.transact(move |c| {
                Box::pin(async move {
                    let correlation = format!("sql-{n}");
                    let key = CallKey {
                        token_id: &id,
                        correlation_id: &correlation,
                        names: &names.1,
                        operation: "data",
                    };
                    // The token and the calls recorded under the id, as the flow reads them.
                    let context = c.data_call_context(key).await?;
                    let token = context
                        .ok_or_else(|| StoreError::Corrupt("no token".into()))?
                        .token;
                    let part = tokens::DataPart {
                        operation: "data",
                        correlation_id: &correlation,
                        element_names: &names.0,
                        sealed: &part,
                    };
                    c.append_token_data(&id, &part, now).await?;
                    c.set_token_state_and_elements(
                        &id,
                        TokenState::Personalizing,
                        part.element_names,
                        now,
                    )
                    .await?;
                    let mut statements = 4;
                    if full {
                        c.insert_personalization(
                            &Personalization {
                                personalization_id: format!("prs_sql_{n}_{id}"),
                                token_id: id.clone(),
                                device_id: token.device_id.clone(),
                                profile_version: token.profile_version.clone(),
                                kind: Kind::Perso,
                                state: PersonalizationState::Pending,
                                enc: None,
                                ciphertext: None,
                                tries: 0,
                                next_offer_ms: now,
                                expires_ms: now + 3_600_000,
                                result_reason: None,
                                correlation_id: correlation.clone(),
                                created_ms: now,
                            },
                            now,
                        )
                        .await?;
                        statements += 1;
                    }
                    c.record_data_call(key, true, full, now).await?;
                    c.add_token_event(
                        &id,
                        "data received: 40 element(s); state PERSONALIZING",
                        &correlation,
                        now,
                    )
                    .await?;
                    Ok::<_, tokenhub::store::StoreError>(statements + 2)
                })
            })
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<usize>>()
        .await?;
    let rate = ids.len() as f64 / t.elapsed().as_secs_f64();
    Ok((rate, counts.first().copied().unwrap_or(0)))
}

/// CPU time of this process's threads so far, in ns (`/proc/self/task/*/schedstat`, whose first
/// field is the thread's time on a CPU): nanosecond grain where `/proc/self/stat` counts ticks of
/// 10 ms. A thread that ended in between is not counted (the hub's threads live as long as it).
pub(crate) fn own_cpu_ns() -> Option<u64> {
    let mut sum = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue; // the thread ended since the listing
        };
        sum += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// µs of this process's CPU per call since `before` (from [`own_cpu_ns`]).
pub(crate) fn cpu_us_per_call(before: Option<u64>, calls: usize) -> Option<f64> {
    let spent = own_cpu_ns()?.checked_sub(before?)?;
    (calls > 0).then(|| spent as f64 / 1000.0 / calls as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The breakdown's CPU per call counts this process's threads, at a grain fine enough to see
    /// a few milliseconds of work.
    #[test]
    fn own_cpu_counts_the_work_done_since() {
        let before = own_cpu_ns();
        assert!(before.is_some(), "/proc/self/task is readable on Linux");
        // Spin until the reading has counted 20 ms of work: on a loaded machine the thread gets
        // less than its wall time, so wall time alone proves nothing either way.
        let start = Instant::now();
        let mut x = 0u64;
        let mut counted = 0.0;
        while start.elapsed() < Duration::from_secs(20) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            counted = cpu_us_per_call(before, 10).expect("a later reading");
            if counted >= 2_000.0 {
                break;
            }
        }
        assert!(
            counted >= 2_000.0,
            "20 s of spinning counted {counted} µs per call"
        );
        assert_eq!(cpu_us_per_call(before, 0), None);
    }
}
