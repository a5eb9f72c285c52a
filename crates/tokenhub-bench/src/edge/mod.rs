//! `tokenhub-bench edge`: what the trusted edge costs the TSP's `/data`, in one run.
//!
//! 1. **TLS's price**: the data bench's max-throughput phase against a hub whose three listeners
//!    are plain HTTP and against one whose listeners are TLS (the TSP's mutual, keep-alive), each on
//!    a fresh database, alternated `--runs` times; the figure is the ratio of their medians.
//! 2. **Hostile neighbours**: against one mutual-TLS hub, the fixed-rate phase quiet, then with
//!    `--idle` idle and `--slow` slowloris connections on the wallet listener (both after a
//!    finished TLS handshake, as a real client's), alternated `--runs` times; the figure is the
//!    ratio of the `/data` p99s.

mod hostile;

use crate::bootstrap::{self, create_tokens};
use crate::data::{self, median, p99, DataArgs, LoadRuntime, Phase, Samples, Target};
use anyhow::Context;
use hostile::Hostile;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokenhub::app::LocalHub;
use tokenhub::config::{ListenerConfig, ListenerSecurity, Listeners};
use tokenhub::domain::TokenState;

#[derive(clap::Args, Clone)]
pub struct EdgeArgs {
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured warm-up before each measured phase.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Workers sending back to back in the max-throughput phases.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests per second of the fixed-rate phases.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Most requests of a fixed-rate phase on the wire at once.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Idle connections on the wallet listener during the hostile phases.
    #[arg(long, default_value_t = 5000)]
    idle: usize,
    /// Slowloris connections (a header byte a second) on the wallet listener.
    #[arg(long, default_value_t = 500)]
    slow: usize,
    /// Niceness of the hostile clients' thread (0: the hub's own priority; the attackers' TLS work
    /// then competes with the hub for these cores, as it would not in the field).
    #[arg(long, default_value_t = 19)]
    attacker_nice: i32,
    /// Alternations of each comparison.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Tokens made for each max-throughput phase, per second of it (more than the hub answers).
    #[arg(long, default_value_t = 12_000)]
    tokens_per_second: usize,
}

/// The goals the verdicts check.
const GOAL_TLS_RATIO: f64 = 0.85;
const GOAL_HOSTILE_P99_RATIO: f64 = 1.2;

#[derive(Clone, Copy, PartialEq)]
enum Edge {
    Plain,
    MutualTls,
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-edge-")
        .tempdir()?;
    let certs = dir.path().join("certs");
    tokenhub_sim::certs::write_dev(&certs)?;
    println!(
        "tokenhub-bench edge: /data (40 elements) over plain HTTP and over mutual TLS; {} s per \
         phase after {} s of warm-up; {} CPU(s)",
        args.duration,
        args.warmup,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let load = LoadRuntime::new()?;
    // The load's runtime is stopped whatever happened: dropped here, it would panic.
    let measured = measure(&args, &load, dir.path(), &certs).await;
    load.stop();
    let m = measured?;
    report(&args, &m);
    Ok(())
}

/// Every phase's samples.
struct Measured {
    plain: Vec<Samples>,
    tls: Vec<Samples>,
    quiet: Vec<Samples>,
    noisy: Vec<Samples>,
    /// Per hostile phase: connections open before it, at its end, and closed by the hub.
    pressure: Vec<(u64, u64, u64)>,
}

async fn measure(
    args: &EdgeArgs,
    load: &LoadRuntime,
    dir: &Path,
    certs: &Path,
) -> anyhow::Result<Measured> {
    let (mut plain, mut tls) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        for edge in [Edge::Plain, Edge::MutualTls] {
            let db = dir.join(format!("max-{run}-{}.db", edge.name()));
            let hub = BenchHub::start(edge, &db, certs).await?;
            let tokens = args.tokens_per_second * (args.duration + args.warmup) as usize;
            let target = hub.target(hub.tokens(tokens).await?);
            let s = load
                .run(Phase::Max, &target, hub.body, &data_args(args))
                .await?;
            hub.stop().await?;
            ensure_all_204(&s)?;
            match edge {
                Edge::Plain => plain.push(s),
                Edge::MutualTls => tls.push(s),
            }
            data::pause().await;
        }
    }

    let db = dir.join("hostile.db");
    let hub = BenchHub::start(Edge::MutualTls, &db, certs).await?;
    let per_phase = args.rate as usize * (args.duration + args.warmup) as usize + 1;
    // Made in one go: each batch of the bench's tokens is numbered from zero.
    let mut ids = hub.tokens(per_phase * 2 * args.runs).await?;
    let (mut quiet, mut noisy, mut pressure) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let target = hub.target(ids.split_off(ids.len() - per_phase));
        let s = load
            .run(Phase::Fixed, &target, hub.body, &data_args(args))
            .await?;
        ensure_all_204(&s)?;
        quiet.push(s);
        data::pause().await;

        let hostile = Hostile::start(
            hub.local.addresses.wallet,
            args.idle,
            args.slow,
            args.attacker_nice,
            certs,
        )?;
        let open = hostile.settle((args.idle + args.slow) as u64).await;
        let target = hub.target(ids.split_off(ids.len() - per_phase));
        let s = load
            .run(Phase::Fixed, &target, hub.body, &data_args(args))
            .await?;
        ensure_all_204(&s)?;
        noisy.push(s);
        pressure.push((
            open,
            hostile.pressure.open.load(Ordering::Relaxed),
            hostile.pressure.closed.load(Ordering::Relaxed),
        ));
        drop(hostile);
        data::pause().await;
    }
    hub.stop().await?;
    Ok(Measured {
        plain,
        tls,
        quiet,
        noisy,
        pressure,
    })
}

fn data_args(args: &EdgeArgs) -> DataArgs {
    DataArgs {
        database_url: None,
        duration: args.duration,
        rate: args.rate,
        concurrency: args.concurrency,
        max_in_flight: args.max_in_flight,
        warmup: args.warmup,
        breakdown: false,
        fixed_only: false,
        max_only: false,
        no_metrics: false,
        result_file: None,
        nodes: 1,
        keystore: Default::default(),
    }
}

fn ensure_all_204(s: &Samples) -> anyhow::Result<()> {
    anyhow::ensure!(
        s.non_204 == 0,
        "{} request(s) were not answered 204; first: {}",
        s.non_204,
        s.first_failure.as_deref().unwrap_or("?")
    );
    Ok(())
}

impl Edge {
    fn name(self) -> &'static str {
        match self {
            Edge::Plain => "plain HTTP",
            Edge::MutualTls => "mutual TLS",
        }
    }
}

/// A hub on its own database, its three listeners plain or TLS, registered for the data bench.
struct BenchHub {
    local: LocalHub,
    edge: Edge,
    /// The TSP's client: keep-alive, and for TLS the TSP's certificate and the dev CA.
    client: reqwest::Client,
    body: &'static [u8],
}

impl BenchHub {
    async fn start(edge: Edge, db: &Path, certs: &Path) -> anyhow::Result<Self> {
        let mut config = bootstrap::hub_config(&format!("sqlite://{}", db.display()))?;
        let listener = |addr: &str| -> anyhow::Result<ListenerConfig> {
            Ok(ListenerConfig {
                addr: addr.parse()?,
                security: match edge {
                    Edge::Plain => ListenerSecurity::Plain,
                    Edge::MutualTls => ListenerSecurity::Tls {
                        cert: certs.join("hub.crt"),
                        key: certs.join("hub.key"),
                    },
                },
            })
        };
        config.listeners = Some(Listeners {
            tsp: listener("127.0.0.1:0")?,
            wallet: listener("127.0.0.1:0")?,
            admin: listener("127.0.0.1:0")?,
        });
        if edge == Edge::Plain {
            config.tsp_plain_as = Some(data::BENCH_TSP.into());
        }
        let local = bootstrap::in_process(config).await?;
        let ca = std::fs::read(certs.join("ca.crt"))?;
        let mut builder = data::client_builder();
        let mut admin_http = reqwest::Client::builder();
        if edge == Edge::MutualTls {
            let mut identity = std::fs::read(certs.join("tsp.crt"))?;
            identity.extend(std::fs::read(certs.join("tsp.key"))?);
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
                .identity(reqwest::Identity::from_pem(&identity)?);
            admin_http = admin_http
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&ca)?);
        }
        let ca = String::from_utf8(ca)?;
        let tsp = match edge {
            Edge::Plain => json!({"baseUrl": "http://127.0.0.1:9/tsp/trapi/v2.0"}),
            Edge::MutualTls => json!({
                "baseUrl": "http://127.0.0.1:9/tsp/trapi/v2.0",
                "clientCertificates": {"caPem": ca, "subject": tokenhub_sim::certs::TSP_SUBJECT},
            }),
        };
        let body = data::register(&local, admin_http.build()?, tsp)
            .await
            .context("registering the bench's TSP, issuer and profile")?;
        Ok(Self {
            local,
            edge,
            client: builder.build()?,
            body,
        })
    }

    /// `n` new tokens waiting for their data.
    async fn tokens(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let ids = create_tokens(&self.local.hub, n, TokenState::PendingData, None).await?;
        data::pause().await;
        Ok(ids)
    }

    /// Sends each of `ids` its `/data`.
    fn target(&self, ids: Vec<String>) -> Arc<Target> {
        Target::with_client(
            self.edge.name(),
            vec![format!("{}/trapi/v2.0/tokens/", self.local.tsp_url())],
            Some(ids),
            self.client.clone(),
        )
    }

    async fn stop(self) -> anyhow::Result<()> {
        Ok(self.local.stop().await?)
    }
}

fn report(args: &EdgeArgs, m: &Measured) {
    let (plain, tls, quiet, noisy) = (&m.plain, &m.tls, &m.quiet, &m.noisy);
    let rps = |v: &[Samples]| v.iter().map(Samples::completed_per_sec).collect::<Vec<_>>();
    let list = |v: &[f64], unit: &str| {
        v.iter()
            .map(|x| format!("{x:.0}{unit}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let list_ms = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (p, t) = (rps(plain), rps(tls));
    let tls_ratio = median(t.clone()) / median(p.clone());
    println!();
    println!(
        "== TLS's price: max throughput, {} workers, {} s, alternated ==",
        args.concurrency, args.duration
    );
    println!("plain HTTP : {} (calls/s)", list(&p, ""));
    println!("mutual TLS : {} (calls/s)", list(&t, ""));
    for (name, v) in [("plain HTTP", plain), ("mutual TLS", tls)] {
        let cpu: Vec<String> = v.iter().map(Samples::cpu_ms_per_request).collect();
        println!("{name} CPU ms per call: {}", cpu.join(", "));
    }
    println!(
        "median ratio mutual TLS / plain: {tls_ratio:.3} (goal: at least {GOAL_TLS_RATIO}) {}",
        data::verdict(tls_ratio >= GOAL_TLS_RATIO)
    );

    let (q, n): (Vec<f64>, Vec<f64>) = (
        quiet.iter().map(p99).collect(),
        noisy.iter().map(p99).collect(),
    );
    let hostile_ratio = median(n.clone()) / median(q.clone());
    println!();
    println!(
        "== hostile neighbours: /data at {} req/s over mutual TLS; {} idle + {} slowloris \
         connections on the wallet listener, their thread at niceness {} ==",
        args.rate, args.idle, args.slow, args.attacker_nice
    );
    println!("quiet p99   : {}", list_ms(&q));
    println!("hostile p99 : {}", list_ms(&n));
    for (i, (settled, open, closed)) in m.pressure.iter().enumerate() {
        println!(
            "hostile run {}: {settled} connections open before the phase, {open} at its end, {closed} \
             closed by the hub and opened again",
            i + 1
        );
    }
    println!(
        "median p99 ratio hostile / quiet: {hostile_ratio:.3} (goal: at most {GOAL_HOSTILE_P99_RATIO}) {}",
        data::verdict(hostile_ratio <= GOAL_HOSTILE_P99_RATIO)
    );
    println!();
    println!(
        "summary plain_rps={:.0} tls_rps={:.0} tls_ratio={tls_ratio:.3} quiet_p99={:.2} \
         hostile_p99={:.2} hostile_ratio={hostile_ratio:.3}",
        median(p),
        median(t),
        median(q),
        median(n)
    );
}
