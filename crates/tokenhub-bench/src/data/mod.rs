//! `tokenhub-bench data`: the throughput and latency of `submitTokenData` (`PUT
//! /trapi/v2.0/tokens/{tokenId}/data`) with 40 elements (~9.5 KB), validated, sealed and committed
//! before the `204`, against a parse-only handler measured in the same run, in the same process,
//! over real loopback HTTP.
//!
//! Both servers run in this process beside the load generator (reqwest, keep-alive), so they are
//! measured under the same conditions. Two phases per server:
//! 1. **max throughput**: `--concurrency` workers send back to back (closed loop) for `--duration`;
//! 2. **fixed rate**: a request is scheduled every `1/--rate` s (open loop) and its latency is
//!    counted from its *scheduled* start, so a stalled server cannot hide its queue (no
//!    coordinated omission).
//!
//! On PostgreSQL a third server is measured in the same run, between the two: the
//! [`baseline`], one `INSERT` of the body and its commit per request through the hub's driver.
//!
//! Every hub token accepts its complete data once (the next `/data` answers 321), so the bench
//! pre-creates one `PENDING_DATA` token per request it will send, through the library.

mod baseline;
mod body;
mod breakdown;
mod load;
mod measure;
mod report;

use crate::bootstrap::{self, create_tokens, import_key_set, Admin};
pub(crate) use crate::bootstrap::{ISSUER_ID, PRODUCT_ID, VERSION};
use anyhow::{bail, ensure, Context};
use axum::http::HeaderName;
use body::{parse_only_router, profile_and_body};
use breakdown::{breakdown, BREAKDOWN_TOKENS};
pub(crate) use load::{client_builder, Answer, LoadRuntime, Phase, Target};
pub(crate) use measure::{cpu_during, median, p99, Histogram, Samples};
pub(crate) use report::verdict;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub::app::LocalHub;
use tokenhub::domain::perso::{self, Operation};
use tokenhub::domain::TokenState;
use tokenhub_crypto::KeySet;

/// Tokens a full run creates for its max phase on these machines (~50,000 parse-only req/s).
pub(crate) const FIXED_ONLY_TOKENS: usize = 600_000;

#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// The hub's database: by default a fresh SQLite file in a temporary folder; `postgres://...`
    /// to measure PostgreSQL (give an empty database made for the bench: it fills it).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 2000)]
    pub(crate) rate: u32,
    /// Workers sending back to back in the max-throughput phase.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Most requests of the fixed-rate phase on the wire at once (one connection each); a
    /// request scheduled while all are busy waits for one, and that wait counts in its latency.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_in_flight: usize,
    /// Seconds of unmeasured warm-up before each measured phase.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// Also time the steps of one call in-process, one at a time (no HTTP), to see where the
    /// time goes; then their CPU many at a time, and the most a hub can answer on this machine
    /// (its cores over the CPU a call cannot avoid).
    #[arg(long)]
    pub(crate) breakdown: bool,
    /// Only the fixed-rate phases (parse-only, then the hub): a shorter run to compare latencies.
    #[arg(long, conflicts_with = "breakdown")]
    pub(crate) fixed_only: bool,
    /// Only the max-throughput phases (parse-only, then the hub): a shorter run to compare
    /// throughputs over several runs.
    #[arg(long, conflicts_with_all = ["breakdown", "fixed_only"])]
    pub(crate) max_only: bool,
    /// Record metrics nowhere (a recorder that drops them): the `observability` bench's baseline.
    #[arg(long, hide = true)]
    pub(crate) no_metrics: bool,
    /// Also write the max phases' rates to this file, as JSON (`{"parseMax", "hubMax"}`): how
    /// the `observability` bench reads its runs.
    #[arg(long, hide = true)]
    pub(crate) result_file: Option<std::path::PathBuf>,
    /// Hub nodes on the one database (PostgreSQL only), in this process: the hub's requests go
    /// to each in turn.
    #[arg(long, default_value_t = 1)]
    pub(crate) nodes: usize,
    /// Where the hub's keys live (software, or `pkcs11` with a module, a token and the PIN in
    /// `TOKENHUB_PKCS11_PIN`): the `keystore` bench's two sides.
    #[command(flatten)]
    pub(crate) keystore: tokenhub::config::KeystoreArgs,
}

pub(crate) const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// The goals the report's verdicts check.
pub(crate) const GOAL_RATIO: f64 = 0.5;
pub(crate) const GOAL_P99_MS: f64 = 5.0;

pub async fn run(args: DataArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    if args.no_metrics {
        // Installed before the hub's: its recorder then finds the place taken.
        ::metrics::set_global_recorder(::metrics::NoopRecorder)
            .map_err(|_| anyhow::anyhow!("a metrics recorder was already installed"))?;
    }
    // The hub, on its database, with a random master key and admin token.
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-")
        .tempdir()?;
    let (url, backend) = bootstrap::database(args.database_url.as_deref(), dir.path());
    let mut config = bootstrap::hub_config(&url)?;
    config.keystore = tokenhub::config::KeystoreSettings::from_args(&args.keystore)?;
    ensure!(
        args.nodes == 1 || backend == "PostgreSQL",
        "--nodes: more than one only on PostgreSQL (SQLite is single-node)"
    );
    let local = bootstrap::in_process(config.clone()).await?;
    let hub = local.hub.clone();
    let parse_only = ParseOnly::start().await?;
    let tsp = json!({"baseUrl": "http://127.0.0.1:9/tsp/trapi/v2.0"});
    let body = register(&local, reqwest::Client::new(), tsp).await?;
    // The other nodes start with the keys and the catalog in place.
    let mut nodes = vec![local];
    for _ in 1..args.nodes {
        nodes.push(bootstrap::in_process(config.clone()).await?);
    }

    println!(
        "tokenhub-bench data: submitTokenData, 40 elements, {} bytes per body",
        body.len()
    );
    println!(
        "database: {backend}{}; {} hub node(s); {} s per phase after {} s of warm-up; {} CPU(s)",
        if args.database_url.is_none() {
            format!(" (fresh file in {})", dir.path().display())
        } else {
            String::new()
        },
        args.nodes,
        args.duration,
        args.warmup,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    let baseline = match &args.database_url {
        Some(url) if backend == "PostgreSQL" => Some(baseline::Baseline::start(url).await?),
        _ => None,
    };
    let servers = Servers {
        hubs: nodes.iter().map(|n| n.addr).collect(),
        parse_only: parse_only.addr,
        baseline,
    };
    let phases = measure_phases(&hub, servers, body, &args).await?;
    let breakdown = if args.breakdown {
        let pending = phases.hub_used;
        Some(breakdown(&hub, body, &phases.breakdown_ids, args.concurrency, pending).await?)
    } else {
        None
    };

    for node in nodes {
        node.stop().await?;
    }
    parse_only.stop().await?;

    let Phases {
        parse_max,
        parse_fixed,
        hub_max,
        hub_fixed,
        baseline,
        ..
    } = &phases;
    report::report(
        &args,
        backend,
        [parse_max, hub_max],
        [parse_fixed, hub_fixed],
        baseline.as_ref().map(|b| (b, [None, None])),
    );
    if let Some(b) = breakdown {
        b.print(parse_max, backend == "SQLite");
    }
    if let Some(path) = &args.result_file {
        let figures = json!({
            "parseMax": parse_max.completed_per_sec(),
            "hubMax": hub_max.completed_per_sec(),
            // The whole process (hub and load generator) per call, for a cost apart from the
            // throughput a noisy host moves.
            "hubMaxCpuMsPerCall": hub_max.cpu.map(|c| c.process * 1e3 / hub_max.completed_per_sec()),
            "hubFixedP99Ms": p99(hub_fixed),
            "hubFixedPerSec": hub_fixed.completed_per_sec(),
        });
        std::fs::write(path, figures.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut all = vec![parse_max, hub_max, parse_fixed, hub_fixed];
    all.extend(baseline.iter().flatten());
    let non_204: u64 = all.iter().map(|s| s.non_204).sum();
    if non_204 > 0 {
        for s in all {
            if let Some(e) = &s.first_failure {
                eprintln!("{} {}: first failure: {e}", s.server, s.phase);
            }
        }
        bail!("{non_204} request(s) were not answered 204");
    }
    Ok(())
}

fn check_args(args: &DataArgs) -> anyhow::Result<()> {
    ensure!(args.duration > 0, "--duration must be at least 1 second");
    ensure!(args.rate > 0, "--rate must be at least 1");
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(args.max_in_flight > 0, "--max-in-flight must be at least 1");
    if let Some(limit) = open_files_limit() {
        // Each request in flight holds a socket on both sides, all in this process.
        ensure!(
            2 * args.max_in_flight.max(args.concurrency) + 256 <= limit,
            "the open-files limit ({limit}) is too low for --max-in-flight {} and --concurrency \
             {}: raise it (ulimit -n) or lower them",
            args.max_in_flight,
            args.concurrency
        );
    }
    Ok(())
}

/// The parse-only server, in this process beside the hub.
struct ParseOnly {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ParseOnly {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, parse_only_router())
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self { addr, stop, server })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}

/// The TSP every data bench registers.
pub(crate) const BENCH_TSP: &str = "bench-tsp";

/// Keys, the TSP (`tsp`: its registration), the issuer, a 40-element profile version, deployed,
/// through the admin API with `http`; returns the `/data` body.
pub(crate) async fn register(
    local: &LocalHub,
    http: reqwest::Client,
    tsp: serde_json::Value,
) -> anyhow::Result<&'static [u8]> {
    let hub = &local.hub;
    let key_set = KeySet::generate();
    import_key_set(hub, BENCH_TSP, &key_set).await?;
    let admin = Admin {
        http,
        base: local.admin_url(),
        token: crate::bootstrap::admin_key(&hub.store).await?,
    };
    admin
        .send(
            reqwest::Method::PUT,
            &format!("/admin/v1/tsps/{BENCH_TSP}"),
            tsp,
        )
        .await?;
    admin
        .send(
            reqwest::Method::PUT,
            &format!("/admin/v1/issuers/{ISSUER_ID}"),
            json!({"name": "Bench Bank", "tspId": BENCH_TSP}),
        )
        .await?;
    let (profile, body) = profile_and_body(&key_set)?;
    let version = format!("/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles/{VERSION}");
    admin.send(reqwest::Method::PUT, &version, profile).await?;
    admin
        .send(
            reqwest::Method::POST,
            &format!("{version}/deploy"),
            json!({}),
        )
        .await?;
    // The body is the same for every call (only the path names another token): built once, kept
    // for the whole run.
    let body: &'static [u8] = Vec::leak(body);
    // A body the hub accepts and the parse-only server parses the same way.
    perso::parse_submission(body, Operation::Data)
        .map_err(|r| anyhow::anyhow!("the bench body does not parse: {r}"))?;
    Ok(body)
}

/// Where the measured servers listen.
struct Servers {
    /// The hub's nodes.
    hubs: Vec<SocketAddr>,
    parse_only: SocketAddr,
    /// On PostgreSQL: the baseline, stopped once measured.
    baseline: Option<baseline::Baseline>,
}

/// The measured phases, and the tokens left for the breakdown.
struct Phases {
    parse_max: Samples,
    parse_fixed: Samples,
    hub_max: Samples,
    hub_fixed: Samples,
    /// On PostgreSQL: the baseline's max and fixed-rate phases.
    baseline: Option<[Samples; 2]>,
    /// Tokens the hub's phases sent data for.
    hub_used: usize,
    breakdown_ids: Vec<String>,
}

async fn measure_phases(
    hub: &Arc<tokenhub::Hub>,
    servers: Servers,
    body: &'static [u8],
    args: &DataArgs,
) -> anyhow::Result<Phases> {
    let parse_target = Target::new(
        "parse-only",
        format!("http://{}/trapi/v2.0/tokens/", servers.parse_only),
        None,
    );
    let hub_bases: Vec<String> = (servers.hubs.iter())
        .map(|a| format!("http://{a}/trapi/v2.0/tokens/"))
        .collect();

    // The load generator runs on threads of its own, as clients in other processes would: on the
    // servers' runtime its tasks would queue behind the hub's work and count that wait as the
    // hub's latency.
    let load = LoadRuntime::new()?;
    // Parse-only first: its throughput bounds the hub's, so it tells how many tokens to create.
    let parse_max = load
        .run_unless(args.fixed_only, Phase::Max, &parse_target, body, args)
        .await?;
    let parse_fixed = load
        .run_unless(args.max_only, Phase::Fixed, &parse_target, body, args)
        .await?;
    let baseline = match servers.baseline {
        Some(server) => {
            let target = Target::new(
                "baseline",
                format!("http://{}/trapi/v2.0/tokens/", server.addr),
                None,
            );
            let max = load
                .run_unless(args.fixed_only, Phase::Max, &target, body, args)
                .await?;
            let fixed = load
                .run_unless(args.max_only, Phase::Fixed, &target, body, args)
                .await?;
            server.stop().await?;
            Some([max, fixed])
        }
        None => None,
    };

    // The hub answers less than the parse-only server; on PostgreSQL, less than a few times the
    // baseline: that bounds the tokens to make (fewer to make on PostgreSQL, where it is slow).
    let most_per_sec = match &baseline {
        Some([max, _]) if !args.fixed_only => BASELINE_MULTIPLE * max.completed_per_sec(),
        _ => parse_max.completed_per_sec(),
    };
    let (fixed_ids, max_ids, breakdown_ids) = hub_tokens(hub, most_per_sec, args).await?;
    let hub_fixed_target = Target::across("hub", hub_bases.clone(), Some(fixed_ids));
    let hub_fixed = if args.max_only {
        Samples::default()
    } else {
        load.run(Phase::Fixed, &hub_fixed_target, body, args)
            .await?
    };
    let hub_max_target = Target::across("hub", hub_bases, Some(max_ids));
    let hub_max = if args.fixed_only {
        Samples::default()
    } else {
        pause().await;
        load.run(Phase::Max, &hub_max_target, body, args).await?
    };
    load.stop();

    check_accepted(hub, &hub_fixed_target, &hub_max_target, args).await?;
    Ok(Phases {
        parse_max,
        parse_fixed,
        hub_max,
        hub_fixed,
        baseline,
        hub_used: hub_fixed_target.used() + hub_max_target.used(),
        breakdown_ids,
    })
}

/// The most the hub can answer on PostgreSQL, in multiples of the baseline (a bound on the
/// tokens made for its max phase; the report says if they ran out).
const BASELINE_MULTIPLE: f64 = 3.0;

/// Creates the tokens the hub's phases (and the breakdown) use: for the fixed rate, for the max
/// phase (`most_per_sec` over the phase), for the breakdown.
async fn hub_tokens(
    hub: &tokenhub::Hub,
    most_per_sec: f64,
    args: &DataArgs,
) -> anyhow::Result<(Vec<String>, Vec<String>, Vec<String>)> {
    // Without the max phase, as many tokens as a full run creates here, unused: the database
    // (and its indexes) has the same size. (Without the fixed-rate phase, its tokens are made and
    // left unused likewise.)
    let max_tokens = if args.fixed_only {
        FIXED_ONLY_TOKENS
    } else {
        ((most_per_sec * (args.duration + args.warmup) as f64) * 1.1) as usize + args.concurrency
    };
    let fixed_tokens = args.rate as usize * (args.duration + args.warmup) as usize + 1;
    let breakdown_tokens = if args.breakdown { BREAKDOWN_TOKENS } else { 0 };
    let total = max_tokens + fixed_tokens + breakdown_tokens;
    print!("creating {total} tokens in PENDING_DATA ... ");
    let created = Instant::now();
    let mut ids = create_tokens(hub, total, TokenState::PendingData, None).await?;
    println!("{:.1} s", created.elapsed().as_secs_f64());
    let breakdown_ids = ids.split_off(fixed_tokens + max_tokens);
    let max_ids = ids.split_off(fixed_tokens);
    pause().await;
    Ok((ids, max_ids, breakdown_ids))
}

/// What the hub holds for the first and last token it accepted: the data sealed, the token
/// personalizing.
async fn check_accepted(
    hub: &tokenhub::Hub,
    fixed: &Target,
    max: &Target,
    args: &DataArgs,
) -> anyhow::Result<()> {
    let first_fixed = fixed.token(0).filter(|_| !args.max_only);
    let last_max = max.used().checked_sub(1).and_then(|last| max.token(last));
    for id in [first_fixed, last_max].into_iter().flatten() {
        let token = hub
            .store
            .token(id)
            .await?
            .with_context(|| format!("token {id} is gone"))?;
        let parts = hub.store.data_part_count(id).await?;
        ensure!(
            token.state == TokenState::Personalizing && parts == 1,
            "token {id}: state {} with {parts} sealed part(s) after its data was accepted",
            token.state.as_str()
        );
    }
    Ok(())
}

/// The soft limit on open files (Linux).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub(crate) async fn pause() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
