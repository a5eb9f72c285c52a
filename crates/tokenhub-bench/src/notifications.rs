//! `tokenhub-bench notifications`: token updates from the TSP to a token requestor, over real
//! loopback HTTP, everything in this process: the hub (SQLite by default, or `--database-url`), a
//! load generator playing the TSP (`POST /trapi/v2.0/tokens/{tokenId}/updates`) and the requestor
//! simulator (built on `tokenhub-receiver`, which verifies every signature).
//!
//! 1. **fixed rate**: one update every `1/--rate` s (open loop, each to another token so none is
//!    superseded); the latency counted is from the moment the hub answered 204 (the update is
//!    durable) to the moment the requestor received it;
//! 2. **max throughput**: `--burst` updates sent as fast as the hub takes them; notifications per
//!    second = updates received / time from the first sent to the last received.
//!
//! With `--nodes N` (PostgreSQL), N hubs in this process share the database: each update goes to
//! the next node in turn and every node delivers what it claims, so the aggregate set beside one
//! node's shows what the nodes' coordination costs.

use crate::bootstrap::{self, create_tokens, in_process, Admin, ISSUER_ID};
use anyhow::ensure;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenhub::app::LocalHub;
use tokenhub::domain::TokenState;
use tokenhub_sim::requestor::{DeliveryEvent, RequestorSim, RequestorSimConfig, RequestorSimStats};

pub(crate) const REQUESTOR: &str = "bench-psp";
pub(crate) const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const GOAL_P99_MS: f64 = 50.0;

#[derive(clap::Args)]
pub struct NotificationsArgs {
    /// The hub's database: a fresh SQLite file by default; `postgres://...` (an empty database).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Updates per second of the fixed-rate phase.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u32,
    /// Seconds of the fixed-rate phase.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Updates of the max-throughput phase.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) burst: usize,
    /// Deliveries under way at once to the requestor (its maxInFlight).
    #[arg(long, default_value_t = 64)]
    pub(crate) max_in_flight: u32,
    /// Updates the load generator keeps on the wire at once in the max-throughput phase.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Hub nodes on the one database (PostgreSQL only), in this process: the updates go to each
    /// in turn, and every node delivers what it claims.
    #[arg(long, default_value_t = 1)]
    pub(crate) nodes: usize,
}

pub(crate) type Accepted = Arc<Mutex<HashMap<(String, String), Instant>>>;

type Received = HashMap<(String, String), Instant>;

pub async fn run(args: NotificationsArgs) -> anyhow::Result<()> {
    ensure!(
        args.rate > 0 && args.duration > 0,
        "--rate and --duration must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-")
        .tempdir()?;
    let (url, backend) = bootstrap::database(args.database_url.as_deref(), dir.path());
    ensure!(
        args.nodes >= 1 && (args.nodes == 1 || backend == "PostgreSQL"),
        "--nodes: at least 1, and more only on PostgreSQL (SQLite is single-node)"
    );
    let mut config = bootstrap::hub_config(&url)?;
    config.notify.outbound_allow =
        tokenhub::config::parse_cidrs("127.0.0.0/8").map_err(|e| anyhow::anyhow!(e))?;
    let local = in_process(config.clone()).await?;
    let hub = local.hub.clone();

    let requestor = RequestorSim::start(RequestorSimConfig::new(
        "bench-key",
        vec![SECRET.to_string()],
    ))
    .await?;
    register(&local, &requestor, &args).await?;
    // The other nodes start with everything registered.
    let mut nodes = vec![local];
    for _ in 1..args.nodes {
        nodes.push(in_process(config.clone()).await?);
    }
    let fixed_n = (args.rate as u64 * args.duration) as usize;
    let ids = create_tokens(
        &hub,
        fixed_n + args.burst,
        TokenState::Active,
        Some(REQUESTOR),
    )
    .await?;
    let (fixed_ids, burst_ids) = ids.split_at(fixed_n);

    println!(
        "tokenhub-bench notifications: token updates TSP -> hub -> requestor (signed, verified), loopback"
    );
    println!(
        "database: {backend}; {} hub node(s); requestor maxInFlight {}; {} CPU(s)",
        args.nodes,
        args.max_in_flight,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Every update the requestor receives, matched afterwards to when the hub accepted it (a
    // notification may reach the requestor before the 204 reaches the TSP).
    let collector = Collector::start(&requestor);
    let sender = Sender {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?,
        hub_urls: nodes.iter().map(LocalHub::url).collect(),
        next: Arc::default(),
        accepted: Accepted::default(),
    };
    let fixed = fixed_rate(&sender, &hub, fixed_ids, &args).await?;
    let burst = max_throughput(&sender, &hub, &requestor, burst_ids, &args).await?;

    drop(sender);
    let collected = collector.stop();
    let stats = requestor.stats();
    requestor.shutdown().await?;
    let received = collected.await?;
    report(&args, &fixed, &burst, &received, &stats);
    for node in nodes {
        node.stop().await?;
    }
    let refused = fixed.refused + burst.refused;
    ensure!(
        refused == 0,
        "{refused} update(s) were not accepted with 204"
    );
    ensure!(
        stats.rejected == 0,
        "the requestor rejected {} notification(s)",
        stats.rejected
    );
    Ok(())
}

/// The TSP, the issuer, and the requestor with its endpoint and signing secret.
async fn register(
    local: &LocalHub,
    requestor: &RequestorSim,
    args: &NotificationsArgs,
) -> anyhow::Result<()> {
    let admin = Admin {
        http: reqwest::Client::new(),
        base: local.url(),
        token: crate::bootstrap::admin_key(&local.hub.store).await?,
    };
    admin
        .send(
            reqwest::Method::PUT,
            "/admin/v1/tsps/bench-tsp",
            json!({"baseUrl": "http://127.0.0.1:9/tsp/trapi/v2.0"}),
        )
        .await?;
    admin
        .send(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{ISSUER_ID}"),
            json!({"name": "Bench Bank", "tspId": "bench-tsp"}),
        )
        .await?;
    admin
        .send(
            reqwest::Method::PUT,
            &format!("/admin/v1/token-requestors/{REQUESTOR}"),
            json!({"merchantId": "BENCH-MERCHANT", "baseUrl": requestor.base_url(),
                   "apiKey": "bench-key", "signingSecrets": [SECRET],
                   "maxInFlight": args.max_in_flight}),
        )
        .await
}

/// When the requestor received each update (by token and timestamp), from its events.
struct Collector {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Received>,
}

impl Collector {
    fn start(requestor: &RequestorSim) -> Self {
        let mut events = requestor.subscribe();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut received = Received::new();
            let mut keep = |e: DeliveryEvent| {
                if let (true, Some(t), Some(ts)) = (
                    (200..300).contains(&e.status),
                    e.token_id,
                    e.last_update_timestamp,
                ) {
                    received.entry((t, ts)).or_insert(e.received_at);
                }
            };
            loop {
                let next = tokio::select! {
                    e = events.recv() => e,
                    _ = &mut stopped => {
                        // Everything delivered was broadcast before the hub recorded it: drain.
                        while let Ok(e) = events.try_recv() {
                            keep(e);
                        }
                        break;
                    }
                };
                match next {
                    Ok(e) => keep(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("the event collector lagged by {n} events");
                    }
                    Err(_) => break,
                }
            }
            received
        });
        Self { stop, task }
    }

    /// Tells it to drain what is left and stop; its task gives what it collected.
    fn stop(self) -> tokio::task::JoinHandle<Received> {
        let _ = self.stop.send(());
        self.task
    }
}

/// What the fixed-rate phase sent.
struct Fixed {
    /// When the hub accepted each update.
    accepted: Received,
    window: Duration,
    refused: usize,
}

/// Phase 1: one update every `1/rate` s, each to another token.
async fn fixed_rate(
    sender: &Sender,
    hub: &tokenhub::Hub,
    ids: &[String],
    args: &NotificationsArgs,
) -> anyhow::Result<Fixed> {
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let at = started + period * i as u32;
        tokio::time::sleep_until(at.into()).await;
        let s = sender.clone();
        let id = id.clone();
        tasks.spawn(async move { s.send(&id).await });
    }
    let mut refused = 0usize;
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            refused += 1;
        }
    }
    let window = started.elapsed();
    crate::bootstrap::drain_notifications(hub, Duration::from_secs(120)).await?;
    let accepted = std::mem::take(&mut *sender.accepted.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Fixed {
        accepted,
        window,
        refused,
    })
}

/// What the max-throughput phase sent and the requestor received.
struct Burst {
    started: Instant,
    /// From the first update sent to the last accepted.
    accepted: Duration,
    received: u64,
    refused: usize,
}

/// Phase 2: `--burst` updates, `--concurrency` on the wire at once.
async fn max_throughput(
    sender: &Sender,
    hub: &tokenhub::Hub,
    requestor: &RequestorSim,
    ids: &[String],
    args: &NotificationsArgs,
) -> anyhow::Result<Burst> {
    use futures::stream::{self, StreamExt};
    // The collector holds every latency so far; phase 2 starts from a clean count.
    let before = requestor.stats().answered_2xx;
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = stream::iter(ids.iter())
        .map(|id| {
            let s = sender.clone();
            async move { s.send(id).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let refused = results.iter().filter(|r| r.is_err()).count();
    let accepted = started.elapsed();
    crate::bootstrap::drain_notifications(hub, Duration::from_secs(300)).await?;
    Ok(Burst {
        started,
        accepted,
        received: requestor.stats().answered_2xx - before,
        refused,
    })
}

fn report(
    args: &NotificationsArgs,
    fixed: &Fixed,
    burst: &Burst,
    received: &Received,
    stats: &RequestorSimStats,
) {
    let last = received.values().max().copied();
    let burst_window = last.map_or(burst.accepted, |l| {
        l.saturating_duration_since(burst.started)
    });
    let mut latencies: Vec<u64> = fixed
        .accepted
        .iter()
        .filter_map(|(k, at)| {
            received
                .get(k)
                .map(|r| r.saturating_duration_since(*at).as_micros() as u64)
        })
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        let v = &latencies;
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0
    };
    println!();
    println!(
        "fixed rate {} updates/s for {} s: {} sent in {:.2} s, {} received",
        args.rate,
        args.duration,
        (args.rate as u64 * args.duration) as usize,
        fixed.window.as_secs_f64(),
        latencies.len()
    );
    println!(
        "  accepted -> received (ms): p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}   goal p99 <= {GOAL_P99_MS} ms: {}",
        pct(0.50), pct(0.90), pct(0.99), pct(1.0),
        if pct(0.99) <= GOAL_P99_MS { "met" } else { "NOT met" }
    );
    println!(
        "max throughput: {} updates accepted in {:.2} s ({:.0}/s), {} delivered in {:.2} s = {:.0} notifications/s",
        args.burst,
        burst.accepted.as_secs_f64(),
        args.burst as f64 / burst.accepted.as_secs_f64(),
        burst.received,
        burst_window.as_secs_f64(),
        burst.received as f64 / burst_window.as_secs_f64()
    );
    println!(
        "requestor: received {}, applied {}, duplicates {}, obsolete {}, rejected {}",
        stats.received, stats.applied, stats.duplicates, stats.obsolete, stats.rejected
    );
}

/// The load generator, playing the TSP: each update to the next node in turn.
#[derive(Clone)]
pub(crate) struct Sender {
    pub(crate) http: reqwest::Client,
    pub(crate) hub_urls: Vec<String>,
    pub(crate) next: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) accepted: Accepted,
}

impl Sender {
    /// Suspends the token (an update stamped now) and records when the hub accepted it.
    pub(crate) async fn send(&self, token_id: &str) -> anyhow::Result<()> {
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body =
            json!({"issuerId": ISSUER_ID, "lastUpdateTimestamp": ts, "tokenState": "SUSPENDED"});
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hub_url = &self.hub_urls[n % self.hub_urls.len()];
        let r = self
            .http
            .post(format!("{hub_url}/trapi/v2.0/tokens/{token_id}/updates"))
            .header("x-correlation-id", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await?;
        let done = Instant::now();
        ensure!(r.status().as_u16() == 204, "HTTP {}", r.status());
        // The requestor receives the hub's timestamp form of the same instant.
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((token_id.to_string(), ts), done);
        Ok(())
    }
}
