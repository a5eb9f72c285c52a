//! `tokenhub-bench rotation`: a master-key rotation over N wrapped data keys (1,000,000 by
//! default, seeded straight into the store as tokens awaiting data) while `/data` runs at a fixed
//! rate: how long the re-wrapping takes, keys/s, and `/data`'s p99 before and during it.

use crate::bootstrap::{self, create_tokens};
use crate::data::{p99, register, DataArgs, LoadRuntime, Phase, Target};
use anyhow::Context;
use std::time::{Duration, Instant};
use tokenhub::domain::TokenState;

#[derive(clap::Args, Clone)]
pub struct RotationArgs {
    /// The hub's database: by default a fresh SQLite file; `postgres://...` for PostgreSQL (an
    /// empty database made for the bench).
    #[arg(long)]
    database_url: Option<String>,
    /// Data keys wrapped under version 1 before the rotation.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Keys re-wrapped per step (`TOKENHUB_REWRAP_BATCH`).
    #[arg(long, default_value_t = 500)]
    batch: i64,
    /// Pause between steps, ms (`TOKENHUB_REWRAP_PAUSE_MS`).
    #[arg(long, default_value_t = 10)]
    pause_ms: u64,
    /// `/data` calls per second, before and during the rotation.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of each measured `/data` phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

fn data_args(args: &RotationArgs) -> DataArgs {
    DataArgs {
        database_url: None,
        duration: args.duration,
        rate: args.rate,
        concurrency: 64,
        max_in_flight: 1024,
        warmup: 2,
        breakdown: false,
        fixed_only: true,
        max_only: false,
        no_metrics: false,
        result_file: None,
        nodes: 1,
        keystore: Default::default(),
    }
}

pub async fn run(args: RotationArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-rotation-")
        .tempdir()?;
    let (url, backend) = bootstrap::database(args.database_url.as_deref(), dir.path());
    let mut config = bootstrap::hub_config(&url)?;
    let (v1, v2) = (bootstrap::random_hex(32), bootstrap::random_hex(32));
    config.master_key = Some(format!("1:{v1},2:{v2}"));
    config.keystore.rewrap_batch = args.batch;
    config.keystore.rewrap_pause = Duration::from_millis(args.pause_ms);
    let local = bootstrap::in_process(config).await?;
    let hub = local.hub.clone();
    let body = register(
        &local,
        reqwest::Client::new(),
        serde_json::json!({"baseUrl": "http://127.0.0.1:9/tsp/trapi/v2.0"}),
    )
    .await?;
    let data = data_args(&args);
    let per_phase = args.rate as usize * (args.duration + data.warmup) as usize + 1;
    println!(
        "tokenhub-bench rotation: {} data keys under version 1 on {backend}; /data at {} req/s, {} s per phase; batch {}, pause {} ms; {} CPU(s)",
        args.keys,
        args.rate,
        args.duration,
        args.batch,
        args.pause_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let seeded = Instant::now();
    let mut ids = create_tokens(
        &hub,
        args.keys + 2 * per_phase,
        TokenState::PendingData,
        None,
    )
    .await?;
    println!(
        "seeded {} tokens with their data keys in {:.1} s",
        ids.len(),
        seeded.elapsed().as_secs_f64()
    );
    let during_ids = ids.split_off(ids.len() - per_phase);
    let before_ids = ids.split_off(ids.len() - per_phase);
    let base = format!("http://{}/trapi/v2.0/tokens/", local.addr);
    let load = LoadRuntime::new()?;

    let before = load
        .run(
            Phase::Fixed,
            &Target::new("hub", base.clone(), Some(before_ids)),
            body,
            &data,
        )
        .await?;
    let began = Instant::now();
    tokenhub::flows::rotation::rotate(&hub.store, &hub.keys, "bench", hub.now_ms())
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    let during = load
        .run(
            Phase::Fixed,
            &Target::new("hub", base, Some(during_ids)),
            body,
            &data,
        )
        .await?;
    let during_ended = began.elapsed();
    loop {
        let status = tokenhub::flows::rotation::status(&hub.store)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
        match &status.rotation {
            None => break,
            Some(r) if began.elapsed().as_secs() % 10 == 0 => {
                eprintln!(
                    "{:.0} s: {} re-wrapped, {} left",
                    began.elapsed().as_secs_f64(),
                    r.progress.rewrapped,
                    r.progress.remaining
                )
            }
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let took = began.elapsed();
    let remaining = hub
        .store
        .rewrap_progress(2)
        .await
        .context("the keys left")?
        .remaining;
    local.stop().await?;
    load.stop();
    println!();
    println!("| data keys | rotation (s) | keys/s | /data p99 before (ms) | /data p99 during (ms) | /data answered/s during |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} | {:.0} | {:.2} | {:.2} | {:.0} |",
        args.keys,
        took.as_secs_f64(),
        (args.keys + 2 * per_phase) as f64 / took.as_secs_f64(),
        p99(&before),
        p99(&during),
        during.completed_per_sec()
    );
    println!(
        "the /data phase during the rotation ended {:.1} s after it began; keys still under version 1 afterwards: {remaining}",
        during_ended.as_secs_f64()
    );
    anyhow::ensure!(remaining == 0, "{remaining} keys were not re-wrapped");
    Ok(())
}
