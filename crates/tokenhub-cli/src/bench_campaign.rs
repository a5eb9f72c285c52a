//! `tokenhub bench campaign`: a re-personalization campaign over `--tokens` ACTIVE tokens, end to
//! end over loopback HTTP, with the hub in a process of its own so that its memory and CPU are
//! its own.
//!
//! 1. **Seeding** (not measured): the bench opens a fresh SQLite file through the library (an
//!    in-process hub, stopped afterwards), imports a key set, registers the TSP, the issuer and
//!    profile versions v1 (deployed) and v2 through the admin API, and inserts, in batched
//!    transactions, one device and one ACTIVE token per index, each with the data key and element
//!    fingerprints a personalization leaves behind: the fingerprints of the data the TSP
//!    simulator will recover, computed from the same derivation ([`DerivedTokens`]).
//! 2. **The hub** is `tokenhub serve` (this binary) on that file, configured by environment.
//! 3. **The TSP simulator** runs in this process, in derived mode: it knows every token from the
//!    start and derives a token's data from its id when it recovers it; optionally rate-limited
//!    (`--tsp-rate`, 503 above the rate; the hub is told the same rate).
//! 4. **Devices** ([`LightDevices`]): when the simulator's `/newData` for a token was accepted (the
//!    hub committed the profile in the same transaction), that token's device is visited: it polls
//!    the wallet API and confirms with SUCCESS; one profile in `--check-every` is opened (HPKE)
//!    and checked: profile version v2, the transit DGI v2 adds, the card master key, PSN and PAR
//!    the TSP holds.
//! 5. **The campaign**: v2 is deployed with `{"campaign": {"ratePerSecond", "maxInFlight"}}`;
//!    the bench times each tenth of the tokens confirmed, and ends when the campaign is COMPLETED
//!    and the TSP reset the ATC of every token (`submitNewTokenDataStatus SUCCESS`).

use crate::bench::{random_hex, Admin};
use anyhow::{bail, ensure, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenhub::domain::perso::{self, Operation};
use tokenhub::domain::{ProfileDefinition, TokenState};
use tokenhub::keys::TokenData;
use tokenhub::store::tokens::TokenRow;
use tokenhub::store::{catalog, personalizations};
use tokenhub::Config;
use tokenhub_sim::device::light::{LightDevices, OpenedProfile};
use tokenhub_sim::tsp::elements::{SimKeys, YearMonth};
use tokenhub_sim::{DerivedTokens, TspSimConfig, TspSimHandle};

const ISSUER_ID: &str = "CAMPBANK01";
const PRODUCT_ID: &str = "classic";
const TSP_ID: &str = "bench-tsp";
/// Token ids are this and 10 digits.
const TOKEN_PREFIX: &str = "TKNB";
/// X25519 key pairs the devices share (device i uses pair i % this).
const KEY_PAIRS: usize = 64;
/// Tokens per seeding transaction.
const SEED_BATCH: usize = 1000;
/// The transit record profile v2 adds (`tokenhub_sim::profiles::profile_v2`).
const TRANSIT_DGI: u16 = 0x0202;
/// The issue's goals: 1,000,000 tokens in at most 10 minutes, the hub within 300 MB.
const GOAL_TOKENS_PER_SECOND: f64 = 1_000_000.0 / 600.0;
const GOAL_RSS_MB: f64 = 300.0;
const RATE_TOLERANCE: f64 = 0.03;

#[derive(clap::Args)]
pub struct CampaignArgs {
    /// ACTIVE tokens the campaign re-personalizes (one device each).
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// The campaign's `ratePerSecond` (tokens started per second); the default does not limit.
    #[arg(long, default_value_t = 100_000)]
    campaign_rate: u32,
    /// The campaign's `maxInFlight`.
    #[arg(long, default_value_t = 256)]
    max_in_flight: u32,
    /// The TSP simulator answers 503 above this many calls per second, and the hub is told to
    /// keep to it (`rateLimitPerSecond`). A token costs two calls (repersoToken, newDataStatus).
    #[arg(long)]
    tsp_rate: Option<u32>,
    /// Devices visited at once (each visit: a poll and a result).
    #[arg(long, default_value_t = 64)]
    device_concurrency: usize,
    /// Open and check one profile in this many (1: every one).
    #[arg(long, default_value_t = 100)]
    check_every: usize,
    /// Keep the folder (database, hub log) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// `RUST_LOG` of the hub process (its log goes to `hub.log` in the folder).
    #[arg(long, default_value = "warn")]
    hub_log: String,
    /// Give up after this many minutes of campaign.
    #[arg(long, default_value_t = 30)]
    timeout_minutes: u64,
}

pub async fn run(args: CampaignArgs) -> anyhow::Result<()> {
    ensure!(args.tokens > 0, "--tokens must be at least 1");
    ensure!(
        args.campaign_rate > 0 && args.max_in_flight > 0,
        "--campaign-rate and --max-in-flight must be at least 1"
    );
    ensure!(
        args.device_concurrency > 0 && args.check_every > 0,
        "--device-concurrency and --check-every must be at least 1"
    );
    ensure!(args.tsp_rate != Some(0), "--tsp-rate must be at least 1");
    let n = args.tokens;
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-campaign-")
        .tempdir()?;
    let db_path = dir.path().join("hub.db");
    let database_url = format!("sqlite://{}", db_path.display());
    let master_key = random_hex(32);
    let admin_token = random_hex(16);
    let key_set = tokenhub_crypto::KeySet::generate();
    let hub_port = free_port()?;
    let hub_url = format!("http://127.0.0.1:{hub_port}");

    // The simulators: the TSP knows every token from the start (derived data); the devices share
    // a few key pairs.
    let mut seed = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let derived = DerivedTokens::new(seed, ISSUER_ID, TOKEN_PREFIX, n, YearMonth::now());
    let (recovered_tx, recovered_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sim_config = TspSimConfig::new(hub_url.clone(), key_set.clone());
    sim_config.derived = Some(derived.clone());
    sim_config.recovered = Some(recovered_tx);
    sim_config.issuer_ids = Some(vec![ISSUER_ID.to_string()]);
    sim_config.misbehaviour.rate_limit = args.tsp_rate;
    let sim = Arc::new(
        tokenhub_sim::spawn(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            sim_config,
        )
        .await?,
    );
    let devices = Arc::new(LightDevices::new(&hub_url, KEY_PAIRS, &seed)?);

    println!(
        "tokenhub bench campaign: {n} ACTIVE token(s), profile v1 -> v2, hub in its own process \
         (SQLite), simulators in this one, loopback HTTP; {} CPU(s)",
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    println!(
        "campaign ratePerSecond {} maxInFlight {}; TSP rate limit {}; devices {} at once, 1 \
         profile in {} opened and checked",
        args.campaign_rate,
        args.max_in_flight,
        args.tsp_rate
            .map_or("none".to_string(), |r| format!("{r} calls/s")),
        args.device_concurrency,
        args.check_every
    );
    println!("folder {}", dir.path().display());

    let seeding = Instant::now();
    seed_hub(
        &args,
        &database_url,
        &master_key,
        &admin_token,
        &key_set,
        &sim,
        &derived,
        &devices,
    )
    .await
    .context("seeding the hub's database")?;
    let db_mb = file_mb(&db_path);
    println!(
        "seeded {n} token(s) in {:.1} s (database {db_mb:.0} MB)",
        seeding.elapsed().as_secs_f64()
    );

    let exe = std::env::current_exe().context("locating this binary")?;
    let mut hub = HubProcess::spawn(
        &exe,
        &database_url,
        hub_port,
        &master_key,
        &admin_token,
        &args.hub_log,
        &dir.path().join("hub.log"),
    )?;
    hub.wait_ready(&hub_url).await?;
    let pid = hub.pid();
    println!("hub started: pid {pid}, {hub_url}");
    let outcome = measure(
        &args,
        &hub,
        &hub_url,
        &admin_token,
        &sim,
        &derived,
        devices,
        recovered_rx,
    )
    .await;
    // The hub's figures at the end, before it goes.
    let proc_end = ProcStats::read(pid);
    hub.kill();
    let log_tail = tail(&dir.path().join("hub.log"), 20);
    let status = sim.status();
    // The device tasks hold the simulator (for its counters) until they are gone.
    let mut sim = sim;
    for _ in 0..100 {
        match Arc::try_unwrap(sim) {
            Ok(only) => {
                only.shutdown().await?;
                break;
            }
            Err(shared) => {
                sim = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let measured = match outcome {
        Ok(m) => m,
        Err(e) => {
            if !log_tail.is_empty() {
                eprintln!("hub.log (last lines):\n{log_tail}");
            }
            if args.keep {
                println!("kept the folder: {}", dir.keep().display());
            }
            return Err(e);
        }
    };
    let verdict = report(&args, &measured, &proc_end, &status, db_mb);
    if args.keep {
        println!("kept the folder: {}", dir.keep().display());
    }
    if let Err(e) = verdict {
        if !log_tail.is_empty() {
            eprintln!("hub.log (last lines):\n{log_tail}");
        }
        return Err(e);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seeding.

#[allow(clippy::too_many_arguments)]
async fn seed_hub(
    args: &CampaignArgs,
    database_url: &str,
    master_key: &str,
    admin_token: &str,
    key_set: &tokenhub_crypto::KeySet,
    sim: &TspSimHandle,
    derived: &DerivedTokens,
    devices: &Arc<LightDevices>,
) -> anyhow::Result<()> {
    let mut config = Config::for_database(database_url);
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_token = Some(admin_token.to_string());
    config.master_key = Some(master_key.to_string());
    let local = crate::local_hub::LocalHub::start(config).await?;
    let (addr, hub) = (local.addr, local.hub.clone());
    let seeded = async {
        crate::bench::import_key_set(&hub, key_set).await?;
        let admin = Admin {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            token: admin_token.to_string(),
        };
        use reqwest::Method;
        admin
            .send(
                Method::PUT,
                &format!("/admin/v1/tsps/{TSP_ID}"),
                json!({"baseUrl": sim.base_url(), "rateLimitPerSecond": args.tsp_rate}),
            )
            .await?;
        admin
            .send(
                Method::PUT,
                &format!("/admin/v1/issuers/{ISSUER_ID}"),
                json!({"name": "Campaign Bench Bank", "tspId": TSP_ID}),
            )
            .await?;
        let product = format!("/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles");
        admin
            .send(
                Method::PUT,
                &format!("{product}/v1"),
                tokenhub_sim::profiles::profile_v1(),
            )
            .await?;
        admin
            .send(Method::POST, &format!("{product}/v1/deploy"), json!({}))
            .await?;
        admin
            .send(
                Method::PUT,
                &format!("{product}/v2"),
                tokenhub_sim::profiles::profile_v2(),
            )
            .await?;
        let def = hub
            .profile(ISSUER_ID, PRODUCT_ID, "v1")
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?
            .context("profile v1 is not defined")?;
        let sim_keys = Arc::new(SimKeys::from_key_set(key_set)?);
        let now = hub.now_ms();
        let batches: Vec<std::ops::Range<usize>> = (0..args.tokens)
            .step_by(SEED_BATCH)
            .map(|s| s..(s + SEED_BATCH).min(args.tokens))
            .collect();
        stream::iter(batches)
            .map(|range| {
                let (hub, derived, sim_keys, def, devices) = (
                    hub.clone(),
                    derived.clone(),
                    sim_keys.clone(),
                    def.clone(),
                    devices.clone(),
                );
                async move {
                    // The crypto on a blocking thread, so that two batches use both cores while
                    // the writer stores a third.
                    let h = hub.clone();
                    let rows = tokio::task::spawn_blocking(move || {
                        range
                            .map(|i| seed_row(&h, &derived, &sim_keys, &def, &devices, i, now))
                            .collect::<anyhow::Result<Vec<SeedRow>>>()
                    })
                    .await??;
                    hub.store
                        .transact(move |c| {
                            Box::pin(async move {
                                for r in &rows {
                                    catalog::put_device(c, &r.token.device_id, &r.public_key, now)
                                        .await?;
                                    c.insert_token(&r.token).await?;
                                    personalizations::replace_fingerprints(
                                        c,
                                        &r.token.token_id,
                                        &r.fingerprints,
                                    )
                                    .await?;
                                }
                                Ok::<_, tokenhub::store::StoreError>(())
                            })
                        })
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(3)
            .try_collect::<()>()
            .await?;
        let states = hub.store.token_states().await?;
        let active = states
            .iter()
            .find(|(s, _)| s == TokenState::Active.as_str())
            .map_or(0, |(_, c)| *c);
        ensure!(
            active as usize == args.tokens,
            "{active} ACTIVE token(s) after seeding, not {}",
            args.tokens
        );
        anyhow::Ok(())
    }
    .await;
    local.stop().await?;
    drop(hub);
    seeded
}

struct SeedRow {
    token: TokenRow,
    public_key: String,
    fingerprints: Vec<(String, Vec<u8>)>,
}

/// One token as a personalization leaves it: ACTIVE on v1, no data held, the fingerprints of the
/// elements the TSP sent (computed by the hub's own code from the `/data` body the TSP simulator
/// would send).
fn seed_row(
    hub: &tokenhub::Hub,
    derived: &DerivedTokens,
    sim_keys: &SimKeys,
    def: &ProfileDefinition,
    devices: &LightDevices,
    index: usize,
    now: i64,
) -> anyhow::Result<SeedRow> {
    let token_id = derived.token_id(index);
    let clear = derived.clear(&token_id);
    let info = clear.token_info();
    let wire = clear.to_wire(sim_keys)?;
    let body = serde_json::to_vec(&json!({"issuerId": ISSUER_ID, "tokenPersoInfo": wire}))?;
    let submission = perso::parse_submission(&body, Operation::Data)
        .map_err(|r| anyhow::anyhow!("the TSP simulator's data does not parse: {r}"))?;
    if index % SEED_BATCH == 0 {
        hub.keys
            .check_elements(def, &submission.elements)
            .map_err(|r| anyhow::anyhow!("the TSP simulator's data is refused: {r}"))?;
    }
    let held = perso::encode_part(&submission.elements);
    let data_key = hub.keys.new_data_key(&token_id)?;
    let sealed = hub.keys.seal_for_token(&token_id, &data_key, &held)?;
    let fingerprints: Vec<(String, Vec<u8>)> = hub
        .keys
        .fingerprints(
            TokenData {
                token_id: &token_id,
                wrapped_data_key: &data_key,
                sealed: std::slice::from_ref(&sealed),
                incoming: &[],
            },
            def,
        )
        .map_err(|e| anyhow::anyhow!("fingerprints of {token_id}: {e}"))?
        .into_iter()
        .map(|(name, fp)| (name, fp.to_vec()))
        .collect();
    ensure!(
        fingerprints.len() == tokenhub_sim::ELEMENT_NAMES.len(),
        "{} fingerprint(s) for {token_id}",
        fingerprints.len()
    );
    Ok(SeedRow {
        token: TokenRow {
            token_id: token_id.clone(),
            issuer_id: ISSUER_ID.into(),
            product_id: PRODUCT_ID.into(),
            profile_version: "v1".into(),
            device_id: device_id(index),
            wallet_card_ref_id: format!("card-{index}"),
            token_requestor_id: None,
            state: TokenState::Active,
            token_exp: Some(info.exp),
            token_last4: Some(info.last4),
            data_key,
            data_deadline_ms: now,
            received_elements: Vec::new(),
            correlation_id: format!("seed-{index}"),
            created_ms: now,
            updated_ms: now,
            failure_reason: None,
            recovery: None,
            card: Default::default(),
            last_update_ms: None,
        },
        public_key: devices.public_key(index).to_string(),
        fingerprints,
    })
}

fn device_id(index: usize) -> String {
    format!("bdev-{index:010}")
}

// ---------------------------------------------------------------------------------------------
// The hub process.

struct HubProcess {
    child: Option<Child>,
    pid: u32,
}

impl HubProcess {
    fn spawn(
        exe: &Path,
        database_url: &str,
        port: u16,
        master_key: &str,
        admin_token: &str,
        log_filter: &str,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(exe)
            .arg("serve")
            .env("TOKENHUB_DATABASE_URL", database_url)
            .env("TOKENHUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOKENHUB_MASTER_KEY", master_key)
            .env("TOKENHUB_ADMIN_TOKEN", admin_token)
            .env("RUST_LOG", log_filter)
            .env_remove("TOKENHUB_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let pid = child.id();
        Ok(Self {
            child: Some(child),
            pid,
        })
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait_ready(&mut self, url: &str) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("the hub exited at start: {status}");
                }
            }
            let r = http
                .get(format!("{url}/trapi/v2.0/healthCheck"))
                .header("x-request-id", "bench")
                .send()
                .await;
            if matches!(r, Ok(ref r) if r.status() == 204) {
                return Ok(());
            }
            ensure!(Instant::now() < until, "the hub did not start within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// ---------------------------------------------------------------------------------------------
// /proc.

/// A process's memory and CPU, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStats {
    /// Peak resident set (VmHWM), kB.
    hwm_kb: u64,
    rss_kb: u64,
    rss_anon_kb: u64,
    rss_file_kb: u64,
    /// User + system CPU, in clock ticks (USER_HZ, 100 per second).
    cpu_ticks: u64,
}

impl ProcStats {
    fn read(pid: u32) -> Self {
        Self::read_path(&PathBuf::from(format!("/proc/{pid}"))).unwrap_or_default()
    }

    fn own() -> Self {
        Self::read_path(Path::new("/proc/self")).unwrap_or_default()
    }

    fn read_path(dir: &Path) -> Option<Self> {
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let kb = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let cpu_ticks =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Self {
            hwm_kb: kb("VmHWM:"),
            rss_kb: kb("VmRSS:"),
            rss_anon_kb: kb("RssAnon:"),
            rss_file_kb: kb("RssFile:"),
            cpu_ticks,
        })
    }
}

/// The machine's busy CPU ticks (all but idle and iowait).
fn machine_busy_ticks() -> u64 {
    let Ok(all) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let cpu: Vec<u64> = all
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if cpu.len() < 5 {
        return 0;
    }
    cpu.iter().take(8).sum::<u64>() - cpu[3] - cpu[4]
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn file_mb(db: &Path) -> f64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len() as f64 / 1_048_576.0)
        .sum()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The campaign, measured.

/// The state of things when a tenth of the tokens was confirmed (and at the start).
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    confirmed: usize,
    hub: ProcStats,
    /// TSP calls admitted and refused (503) by then.
    tsp_calls: (u64, u64),
}

/// What the device driver shares with the bench.
struct Driven {
    confirmed: AtomicUsize,
    opened: AtomicUsize,
    refused: Mutex<Vec<(String, String)>>,
    errors: Mutex<Vec<String>>,
    marks: Mutex<Vec<Mark>>,
}

struct Measured {
    tokens: usize,
    deploy: Duration,
    /// From the deploy sent to the campaign seen COMPLETED, and to the last ATC reset.
    campaign: Duration,
    end_to_end: Duration,
    campaign_view: Value,
    marks: Vec<Mark>,
    start: Mark,
    end: Mark,
    opened: usize,
    refused: Vec<(String, String)>,
    errors: Vec<String>,
    bench: (ProcStats, ProcStats),
    machine_busy: (u64, u64),
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &CampaignArgs,
    hub: &HubProcess,
    hub_url: &str,
    admin_token: &str,
    sim: &Arc<TspSimHandle>,
    derived: &DerivedTokens,
    devices: Arc<LightDevices>,
    recovered: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<Measured> {
    let n = args.tokens;
    let pid = hub.pid();
    let driven = Arc::new(Driven {
        confirmed: AtomicUsize::new(0),
        opened: AtomicUsize::new(0),
        refused: Mutex::default(),
        errors: Mutex::default(),
        marks: Mutex::default(),
    });
    let sample = {
        let sim = sim.clone();
        move |confirmed: usize| Mark {
            at: Instant::now(),
            confirmed,
            hub: ProcStats::read(pid),
            tsp_calls: sim.outgoing_calls(),
        }
    };
    let driver = tokio::spawn(drive(
        driven.clone(),
        recovered,
        devices,
        derived.clone(),
        args.device_concurrency,
        args.check_every,
        n,
        sample.clone(),
    ));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let start = sample(0);
    let bench_start = ProcStats::own();
    let busy_start = machine_busy_ticks();
    let deployed = http
        .post(format!(
            "{hub_url}/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles/v2/deploy"
        ))
        .bearer_auth(admin_token)
        .json(&json!({"campaign": {"ratePerSecond": args.campaign_rate,
                                    "maxInFlight": args.max_in_flight}}))
        .send()
        .await
        .context("deploying v2 with a campaign")?;
    let status = deployed.status();
    let text = deployed.text().await?;
    ensure!(status.is_success(), "deploy: HTTP {status}: {text}");
    let deploy = start.at.elapsed();
    let answer: Value = serde_json::from_str(&text)?;
    let campaign_id = answer["campaignId"]
        .as_str()
        .context("the deploy's answer has no campaignId")?
        .to_string();
    println!(
        "campaign {campaign_id}: {} token(s); deploy answered in {:.2} s",
        answer["total"],
        deploy.as_secs_f64()
    );
    ensure!(
        answer["total"].as_u64() == Some(n as u64),
        "the campaign covers {} token(s), not {n}",
        answer["total"]
    );

    let url = format!("{hub_url}/admin/v1/campaigns/{campaign_id}");
    let until = start.at + Duration::from_secs(args.timeout_minutes * 60);
    let mut last_print = Instant::now();
    let view = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v = crate::campaign::get(&http, &url, admin_token).await?;
        let state = v["state"].as_str().unwrap_or("?").to_string();
        if state != "RUNNING" {
            break v;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            let p = ProcStats::read(pid);
            println!(
                "  {:>6.0} s  done {:>8}  failed {}  in progress {:>4}  hub RSS {:.0} MB",
                start.at.elapsed().as_secs_f64(),
                v["done"],
                v["failed"],
                v["inProgress"],
                mb(p.rss_kb)
            );
        }
        if Instant::now() > until {
            bail!(
                "the campaign did not end within {} minute(s): {v}",
                args.timeout_minutes
            );
        }
    };
    let campaign = start.at.elapsed();
    let state = view["state"].as_str().unwrap_or("?");
    ensure!(state == "COMPLETED", "the campaign ended {state}: {view}");
    // The last tokens' SUCCESS still goes to the TSP through the outbox.
    let resets_until = Instant::now() + Duration::from_secs(120);
    while (sim.status().atc_resets as usize) < n && Instant::now() < resets_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end_to_end = start.at.elapsed();
    let end = sample(driven.confirmed.load(Ordering::Relaxed));
    let bench_end = ProcStats::own();
    let busy_end = machine_busy_ticks();
    driver.abort();
    let _ = driver.await;
    let marks = driven
        .marks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let refused = std::mem::take(&mut *driven.refused.lock().unwrap_or_else(|p| p.into_inner()));
    let errors = std::mem::take(&mut *driven.errors.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Measured {
        tokens: n,
        deploy,
        campaign,
        end_to_end,
        campaign_view: view,
        marks,
        start,
        end,
        opened: driven.opened.load(Ordering::Relaxed),
        refused,
        errors,
        bench: (bench_start, bench_end),
        machine_busy: (busy_start, busy_end),
    })
}

/// Visits the device of every token whose data the TSP recovered, `concurrency` at a time;
/// records a [`Mark`] each time another tenth of the tokens is confirmed.
#[allow(clippy::too_many_arguments)]
async fn drive(
    driven: Arc<Driven>,
    mut recovered: tokio::sync::mpsc::UnboundedReceiver<String>,
    devices: Arc<LightDevices>,
    derived: DerivedTokens,
    concurrency: usize,
    check_every: usize,
    total: usize,
    sample: impl Fn(usize) -> Mark + Clone + Send + Sync + 'static,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let check: SharedCheck = {
        let derived = derived.clone();
        Arc::new(move |p: &OpenedProfile| check_profile(&derived, p))
    };
    while let Some(token_id) = recovered.recv().await {
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(index) = derived.index_of(&token_id) else {
            driven
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("recovered data for an unknown token {token_id}"));
            continue;
        };
        let (driven, devices, check, sample) = (
            driven.clone(),
            devices.clone(),
            check.clone(),
            sample.clone(),
        );
        tasks.spawn(async move {
            let opens = index % check_every == 0;
            let visit = devices
                .visit(
                    &device_id(index),
                    index,
                    5,
                    3,
                    opens.then_some(check.as_ref()),
                )
                .await;
            drop(permit);
            driven.opened.fetch_add(visit.opened, Ordering::Relaxed);
            if !visit.refused.is_empty() {
                driven
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(visit.refused);
            }
            if !visit.errors.is_empty() {
                driven
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(visit.errors);
            }
            let k = visit.confirmed.len();
            if k > 0 {
                let after = driven.confirmed.fetch_add(k, Ordering::Relaxed) + k;
                let before = after - k;
                // Crossed one (or more) tenth(s) of the total.
                let tenth = |c: usize| c * 10 / total;
                if tenth(after) > tenth(before) {
                    let mark = sample(after);
                    let mut marks = driven.marks.lock().unwrap_or_else(|p| p.into_inner());
                    for _ in tenth(before)..tenth(after) {
                        marks.push(mark);
                    }
                }
            }
        });
    }
}

type SharedCheck = Arc<dyn Fn(&OpenedProfile) -> Result<(), String> + Send + Sync>;

/// What a sampled device checks in its new profile: the version, the transit record v2 adds,
/// and the data the TSP holds for the token (card master key, PSN, PAR).
fn check_profile(derived: &DerivedTokens, p: &OpenedProfile) -> Result<(), String> {
    if p.profile_version != "v2" {
        return Err(format!("profile version {}, not v2", p.profile_version));
    }
    if !p.profile.dgis.contains(&TRANSIT_DGI) {
        return Err("no transit record (DGI 0202): not profile v2".into());
    }
    let clear = derived.clear(&p.token_id);
    if p.profile.cmk_ac[..] != clear.cmk_ac[..] {
        return Err("the card master key is not the token's".into());
    }
    if p.profile.psn != clear.psn.parse::<u8>().ok() || p.profile.par.as_deref() != Some(&clear.par)
    {
        return Err("the PSN or PAR is not the token's".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report.

fn report(
    args: &CampaignArgs,
    m: &Measured,
    hub_end: &ProcStats,
    tsp: &tokenhub_sim::TspSimStatus,
    db_mb: f64,
) -> anyhow::Result<()> {
    let n = m.tokens;
    let secs = m.end_to_end.as_secs_f64();
    let tps = n as f64 / secs;
    let hub_cpu = (m.end.hub.cpu_ticks.saturating_sub(m.start.hub.cpu_ticks)) as f64 / 100.0;
    let bench_cpu = (m.bench.1.cpu_ticks.saturating_sub(m.bench.0.cpu_ticks)) as f64 / 100.0;
    let busy = (m.machine_busy.1.saturating_sub(m.machine_busy.0)) as f64 / 100.0;
    let others = (busy - hub_cpu - bench_cpu).max(0.0);
    let done = m.campaign_view["done"].as_u64().unwrap_or(0) as usize;
    let failed = m.campaign_view["failed"].as_u64().unwrap_or(u64::MAX);
    let confirmed = m.end.confirmed;

    println!();
    println!("== campaign: {n} tokens, v1 -> v2 ==");
    println!(
        "deploy (campaign created over every ACTIVE token)   {:.2} s",
        m.deploy.as_secs_f64()
    );
    println!(
        "deploy sent -> campaign COMPLETED                    {:.1} s",
        m.campaign.as_secs_f64()
    );
    println!(
        "deploy sent -> last ATC reset at the TSP             {secs:.1} s = {tps:.0} tokens/s \
         (1,000,000 tokens at this pace: {:.1} min)",
        1_000_000.0 / tps / 60.0
    );
    println!();
    println!("tenth  tokens confirmed   at (s)   tokens/s   hub CPU ms/token   hub RSS MB (anon)   TSP calls/s");
    let mut prev = m.start;
    let mut tenths = Vec::new();
    for (i, mark) in m.marks.iter().enumerate() {
        let dt = mark.at.saturating_duration_since(prev.at).as_secs_f64();
        let dn = mark.confirmed.saturating_sub(prev.confirmed);
        let rate = if dt > 0.0 { dn as f64 / dt } else { f64::NAN };
        let cpu_ms =
            mark.hub.cpu_ticks.saturating_sub(prev.hub.cpu_ticks) as f64 * 10.0 / dn.max(1) as f64;
        let calls = (mark.tsp_calls.0 - prev.tsp_calls.0) as f64 / dt.max(1e-9);
        println!(
            "{:>5}  {:>15}  {:>7.1}  {:>9.0}  {:>17.2}  {:>7.0} ({:>4.0})      {:>9.1}",
            i + 1,
            mark.confirmed,
            mark.at.saturating_duration_since(m.start.at).as_secs_f64(),
            rate,
            cpu_ms,
            mb(mark.hub.rss_kb),
            mb(mark.hub.rss_anon_kb),
            calls
        );
        tenths.push(rate);
        prev = *mark;
    }
    let steady: Vec<f64> = tenths.iter().skip(1).copied().collect();
    let (slowest, fastest) = steady
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!();
    println!(
        "hub process: peak RSS {:.0} MB (VmHWM); at the end {:.0} MB = {:.0} MB anonymous + {:.0} MB \
         file-backed (SQLite's mmap of the database, shared page cache)",
        mb(hub_end.hwm_kb),
        mb(hub_end.rss_kb),
        mb(hub_end.rss_anon_kb),
        mb(hub_end.rss_file_kb)
    );
    println!(
        "CPU during the campaign: hub {:.2} cores ({:.2} ms/token), bench (TSP sim + devices) {:.2} \
         cores, other processes {:.2} cores; database {db_mb:.0} MB at the start",
        hub_cpu / secs,
        hub_cpu * 1000.0 / n as f64,
        bench_cpu / secs,
        others / secs
    );
    // The TSP's rate: calls admitted between the first and the last tenth (steady state).
    let (first, last) = (
        m.marks.first(),
        m.marks.get(m.marks.len().saturating_sub(2)),
    );
    let achieved = match (first, last) {
        (Some(a), Some(b)) if b.at > a.at => {
            (b.tsp_calls.0 - a.tsp_calls.0) as f64 / b.at.duration_since(a.at).as_secs_f64()
        }
        _ => f64::NAN,
    };
    let overall_calls = (m.end.tsp_calls.0 - m.start.tsp_calls.0) as f64 / secs;
    println!(
        "TSP: {} repersoToken, {} newData call(s) accepted, {} ATC reset(s), {} call(s) refused \
         with 503; calls/s overall {overall_calls:.1}, from the 1st to the 9th tenth {achieved:.1}{}",
        tsp.reperso_calls,
        tsp.new_data_calls_accepted,
        tsp.atc_resets,
        tsp.rate_limited,
        args.tsp_rate
            .map(|r| format!(
                " (R = {r}: {:+.2} %)",
                (achieved - f64::from(r)) * 100.0 / f64::from(r)
            ))
            .unwrap_or_default()
    );
    println!(
        "devices: {confirmed} confirmed, {} profile(s) opened and checked (v2, transit record, \
         card master key, PSN, PAR), {} refused, {} error(s)",
        m.opened,
        m.refused.len(),
        m.errors.len()
    );
    println!(
        "campaign: done {done}, failed {failed}, steps {}",
        m.campaign_view["steps"]
    );

    let mut checks: Vec<(bool, String)> = vec![
        (done == n, format!("the campaign did {done} of {n}")),
        (failed == 0, format!("{failed} token(s) failed")),
        (
            confirmed == n,
            format!("{confirmed} of {n} devices confirmed"),
        ),
        (
            tsp.atc_resets as usize == n,
            format!("the TSP reset {} ATC(s), not {n}", tsp.atc_resets),
        ),
        (
            tsp.new_data_calls_rejected_total() == 0,
            format!(
                "the hub refused recovered data: {:?}",
                tsp.new_data_calls_rejected
            ),
        ),
        (
            m.refused.is_empty(),
            format!(
                "profiles refused by devices: {:?}",
                m.refused.iter().take(3).collect::<Vec<_>>()
            ),
        ),
        (
            m.errors.is_empty(),
            format!(
                "device errors: {:?}",
                m.errors.iter().take(3).collect::<Vec<_>>()
            ),
        ),
        (
            m.opened >= n.div_ceil(args.check_every),
            format!("only {} profile(s) opened", m.opened),
        ),
    ];
    if let Some(r) = args.tsp_rate {
        checks.push((
            tsp.rate_limited == 0,
            format!(
                "{} call(s) refused with 503 by the TSP's rate",
                tsp.rate_limited
            ),
        ));
        if m.marks.len() >= 3 {
            checks.push((
                (achieved - f64::from(r)).abs() <= RATE_TOLERANCE * f64::from(r),
                format!("the TSP saw {achieved:.1} calls/s, not within 3 % of {r}"),
            ));
        }
    }
    let rss_mb = mb(hub_end.hwm_kb);
    println!();
    println!(
        "goals (issue 4): 1M tokens in <= 10 min ({:.0} tokens/s): {}; hub RSS <= {GOAL_RSS_MB:.0} MB: {} \
         ({rss_mb:.0} MB); time per token flat: slowest / fastest tenth after the first = {:.2}",
        GOAL_TOKENS_PER_SECOND,
        if tps >= GOAL_TOKENS_PER_SECOND { "met at this size" } else { "NOT met" },
        if rss_mb <= GOAL_RSS_MB { "met at this size" } else { "NOT met" },
        if fastest > 0.0 { slowest / fastest } else { f64::NAN },
    );
    let tenths_text: Vec<String> = tenths.iter().map(|r| format!("{r:.0}")).collect();
    println!();
    println!(
        "summary tokens={n} seconds={secs:.1} tokens_per_s={tps:.1} campaign_s={:.1} deploy_s={:.2} \
         tenths_tokens_per_s={} hub_rss_peak_mb={rss_mb:.0} hub_rss_anon_mb={:.0} hub_rss_file_mb={:.0} \
         hub_cpu_cores={:.2} hub_cpu_ms_per_token={:.2} bench_cpu_cores={:.2} others_cores={:.2} \
         campaign_rate={} max_in_flight={} tsp_rate={} tsp_calls_per_s={achieved:.1} rate_limited={} \
         done={done} failed={failed} atc_resets={} opened={} db_mb={db_mb:.0}",
        m.campaign.as_secs_f64(),
        m.deploy.as_secs_f64(),
        tenths_text.join("/"),
        mb(hub_end.rss_anon_kb),
        mb(hub_end.rss_file_kb),
        hub_cpu / secs,
        hub_cpu * 1000.0 / n as f64,
        bench_cpu / secs,
        others / secs,
        args.campaign_rate,
        args.max_in_flight,
        args.tsp_rate.map_or("none".to_string(), |r| r.to_string()),
        tsp.rate_limited,
        tsp.atc_resets,
        m.opened,
    );
    let failed_checks: Vec<&String> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, w)| w)
        .collect();
    for why in &failed_checks {
        println!("CHECK FAILED: {why}");
    }
    ensure!(
        failed_checks.is_empty(),
        "{} check(s) failed",
        failed_checks.len()
    );
    println!("all checks passed");
    Ok(())
}
