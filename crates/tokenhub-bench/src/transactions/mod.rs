//! `tokenhub-bench transactions`: Create Transaction through the hub (`POST
//! /requestor/v1/tokens/{tokenId}/transactions`, a requestor's API key, the hub's call to the TSP)
//! against the TSP simulator's transaction-credentials call made directly (`POST
//! /cardOnFileTokens/{tokenId}/transactionCredentials`), in the same run, in the same process,
//! over real loopback HTTP.
//!
//! The hub (SQLite by default, `--database-url` for PostgreSQL) and the TSP simulator run in this
//! process; a requestor with an API key tokenizes `--tokens` cards on file through the hub before
//! anything is measured. Then, `--runs` times, alternating the direct calls and the hub's:
//! 1. **max throughput**: `--concurrency` workers back to back (closed loop) for `--duration`;
//! 2. **fixed rate**: a request every `1/--rate` s (open loop), its latency counted from its
//!    scheduled start (no coordinated omission).
//!
//! The figures are the medians over the runs: the hub's throughput against the simulator's
//! (goal: at least half), and the p99 the hub adds at the fixed rate (goal: at most 2 ms).

mod load;
mod report;

use crate::bootstrap::{self, Admin};
use crate::data;
use anyhow::{ensure, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use load::{Load, Route};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tokenhub::app::LocalHub;
use tokenhub_sim::{TspSimConfig, TspSimHandle};

const TSP: &str = "bench-tsp";
const REQUESTOR: &str = "bench-psp";
const MERCHANT: &str = "BENCH-MERCHANT";
/// The goals the verdicts check.
const GOAL_RATIO: f64 = 0.5;
const GOAL_ADDED_P99_MS: f64 = 2.0;

#[derive(clap::Args, Clone)]
pub struct TransactionsArgs {
    /// The hub's database: a fresh SQLite file by default; `postgres://...` (an empty database).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Card-on-file tokens tokenized before the measurement (the requests go round them).
    #[arg(long, default_value_t = 1000)]
    pub(crate) tokens: usize,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Seconds of unmeasured warm-up before each measured phase.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// Transactions per second of the fixed-rate phases.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u32,
    /// Workers sending back to back in the max-throughput phases.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Most requests of a fixed-rate phase on the wire at once; a request scheduled while all
    /// are busy waits for one, and that wait counts in its latency.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_in_flight: usize,
    /// Alternations of the four phases; the figures are the medians.
    #[arg(long, default_value_t = 2)]
    pub(crate) runs: usize,
}

pub async fn run(args: TransactionsArgs) -> anyhow::Result<()> {
    ensure!(
        args.tokens > 0 && args.duration > 0 && args.rate > 0 && args.runs > 0,
        "--tokens, --duration, --rate and --runs must be at least 1"
    );
    ensure!(
        args.concurrency > 0 && args.max_in_flight > 0,
        "--concurrency and --max-in-flight must be at least 1"
    );
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-")
        .tempdir()?;
    let (url, backend) = bootstrap::database(args.database_url.as_deref(), dir.path());
    let mut config = bootstrap::hub_config(&url)?;
    // The requestor's endpoint is registered on loopback (no update is sent to it here).
    config.notify.outbound_allow =
        tokenhub::config::parse_cidrs("127.0.0.0/8").map_err(|e| anyhow::anyhow!(e))?;
    let local = bootstrap::in_process(config).await?;
    let sim_config = TspSimConfig::new(local.tsp_url(), tokenhub_crypto::KeySet::generate());
    let sim = tokenhub_sim::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        sim_config,
    )
    .await?;
    let measured = measure(&args, &local, &sim, backend).await;
    sim.shutdown().await?;
    local.stop().await?;
    let runs = measured?;
    report::report(&args, backend, &runs);
    let failed: u64 = runs.iter().flat_map(|r| r.all()).map(|s| s.non_204).sum();
    if failed > 0 {
        for s in runs.iter().flat_map(|r| r.all()) {
            if let Some(e) = &s.first_failure {
                eprintln!("{} {}: first failure: {e}", s.server, s.phase);
            }
        }
        anyhow::bail!("{failed} request(s) failed");
    }
    Ok(())
}

/// One run's four phases.
pub(crate) struct Run {
    pub(crate) direct_max: data::Samples,
    pub(crate) hub_max: data::Samples,
    pub(crate) direct_fixed: data::Samples,
    pub(crate) hub_fixed: data::Samples,
}

impl Run {
    fn all(&self) -> [&data::Samples; 4] {
        [
            &self.direct_max,
            &self.hub_max,
            &self.direct_fixed,
            &self.hub_fixed,
        ]
    }
}

async fn measure(
    args: &TransactionsArgs,
    local: &LocalHub,
    sim: &TspSimHandle,
    backend: &str,
) -> anyhow::Result<Vec<Run>> {
    println!(
        "tokenhub-bench transactions: Create Transaction through the hub against the TSP \
         simulator's transactionCredentials called directly; {backend}; {} tokens; {} s per \
         phase after {} s of warm-up; {} run(s); {} CPU(s)",
        args.tokens,
        args.duration,
        args.warmup,
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let key = register(local, sim).await?;
    print!(
        "tokenizing {} cards on file through the hub ... ",
        args.tokens
    );
    let started = Instant::now();
    let tokens = Arc::new(tokenize(local, sim, &key, args.tokens).await?);
    println!("{:.1} s", started.elapsed().as_secs_f64());
    let direct = Route::direct(&sim.base_url(), REQUESTOR, MERCHANT, tokens.clone())?;
    let hub = Route::hub(&local.url(), &key, tokens)?;
    // The load generator runs on threads of its own, as clients in other processes would.
    let load = Load::new()?;
    let measured = async {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            let direct_max = load.max(&direct, args).await?;
            let hub_max = load.max(&hub, args).await?;
            let direct_fixed = load.fixed(&direct, args).await?;
            let hub_fixed = load.fixed(&hub, args).await?;
            runs.push(Run {
                direct_max,
                hub_max,
                direct_fixed,
                hub_fixed,
            });
        }
        Ok::<_, anyhow::Error>(runs)
    }
    .await;
    // Stopped whatever happened: dropped inside this runtime, it would panic.
    load.stop();
    measured
}

/// The TSP (the simulator, its card key published) and the requestor; the requestor's API key.
async fn register(local: &LocalHub, sim: &TspSimHandle) -> anyhow::Result<String> {
    let admin = Admin {
        http: reqwest::Client::new(),
        base: local.admin_url(),
        token: bootstrap::admin_key(&local.hub.store).await?,
    };
    let tsp = format!("/admin/v1/tsps/{TSP}");
    admin
        .send(
            reqwest::Method::PUT,
            &tsp,
            json!({"baseUrl": sim.base_url()}),
        )
        .await?;
    admin
        .send(
            reqwest::Method::PUT,
            &format!("{tsp}/card-encryption-key"),
            sim.encryption_jwk(),
        )
        .await?;
    let requestor = format!("/admin/v1/token-requestors/{REQUESTOR}");
    admin
        .send(
            reqwest::Method::PUT,
            &requestor,
            json!({"merchantId": MERCHANT, "baseUrl": "http://127.0.0.1:9",
                   "apiKey": "bench-key", "signingSecrets": [crate::notifications::SECRET]}),
        )
        .await?;
    let made = admin
        .send_json(
            reqwest::Method::POST,
            &format!("{requestor}/api-keys"),
            json!({}),
        )
        .await?;
    made["apiKey"]
        .as_str()
        .map(str::to_string)
        .context("no apiKey in the answer")
}

/// Tokenizes `n` Visa cards (distinct, Luhn-valid PANs) through the requestor API; their ids.
async fn tokenize(
    local: &LocalHub,
    sim: &TspSimHandle,
    key: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let jwk = sim.encryption_jwk();
    let url = format!("{}/requestor/v1/tokens", local.url());
    stream::iter(0..n)
        .map(|i| {
            let pan = luhn_complete(&format!("4{:014}", 100_000_000 + i));
            let card = json!({"fpan": pan, "exp": "1240", "cardholderName": "A Holder"});
            let (http, url, jwk) = (&http, &url, &jwk);
            async move {
                let jwe = tokenhub_sim::seal_card(jwk, card.to_string().as_bytes())?;
                let r = http
                    .post(url)
                    .bearer_auth(key)
                    .header("idempotency-key", format!("bench-card-{i}"))
                    .json(&json!({"encryptedCard": jwe}))
                    .send()
                    .await?;
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                ensure!(status.as_u16() == 201, "tokenizing: HTTP {status}");
                body["tokenId"]
                    .as_str()
                    .map(str::to_string)
                    .context("no tokenId in the answer")
            }
        })
        .buffered(16)
        .try_collect()
        .await
}

/// `digits` with its Luhn check digit appended.
fn luhn_complete(digits: &str) -> String {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn luhn_check_digits() {
        assert_eq!(super::luhn_complete("411111111111111"), "4111111111111111");
        assert_eq!(super::luhn_complete("555555555555444"), "5555555555554444");
    }
}
