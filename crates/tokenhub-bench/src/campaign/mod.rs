//! `tokenhub-bench campaign`: a re-personalization campaign over `--tokens` ACTIVE tokens, end to
//! end over loopback HTTP, with the hub in a process of its own so that its memory and CPU are
//! its own.
//!
//! 1. **Seeding** (not measured): the bench opens a fresh SQLite file (or, with
//!    `--database-url postgres://…`, a fresh database it makes on that server and drops after the
//!    run) through the library (an in-process hub, stopped afterwards), imports a key set, registers the TSP, the issuer and
//!    profile versions v1 (deployed) and v2 through the admin API, and inserts, in batched
//!    transactions, one device and one ACTIVE token per index, each with the data key and element
//!    fingerprints a personalization leaves behind: the fingerprints of the data the TSP
//!    simulator will recover, computed from the same derivation ([`DerivedTokens`]).
//! 2. **The hub** is this binary's hidden `serve` on that file, configured by environment.
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

pub(crate) mod measure;
pub(crate) mod process;
mod report;
pub(crate) mod seed;

use crate::bootstrap::{free_port, random_hex, FreshDatabase, HubProcess};
use anyhow::{ensure, Context};
use measure::measure;
pub(crate) use process::file_mb;
use process::{tail, ProcStats};
use report::report;
use seed::seed_hub;
use std::sync::Arc;
use std::time::Duration;
use tokenhub_sim::device::light::LightDevices;
use tokenhub_sim::tsp::elements::YearMonth;
use tokenhub_sim::{DerivedTokens, TspSimConfig, TspSimHandle};

pub(crate) const ISSUER_ID: &str = "CAMPBANK01";
pub(crate) const PRODUCT_ID: &str = "classic";
pub(crate) const TSP_ID: &str = "bench-tsp";
/// Token ids are this and 10 digits.
pub(crate) const TOKEN_PREFIX: &str = "TKNB";
/// X25519 key pairs the devices share (device i uses pair i % this).
pub(crate) const KEY_PAIRS: usize = 64;
/// Tokens per seeding transaction.
pub(crate) const SEED_BATCH: usize = 1000;
/// The transit record profile v2 adds (`tokenhub_sim::profiles::profile_v2`).
pub(crate) const TRANSIT_DGI: u16 = 0x0202;
/// The goals: 1,000,000 tokens in at most 10 minutes, the hub within 300 MB.
pub(crate) const GOAL_TOKENS_PER_SECOND: f64 = 1_000_000.0 / 600.0;
pub(crate) const GOAL_RSS_MB: f64 = 300.0;
pub(crate) const RATE_TOLERANCE: f64 = 0.03;

#[derive(clap::Args)]
pub struct CampaignArgs {
    /// The hub's database: a fresh SQLite file by default; with `postgres://user@host/db`, a
    /// fresh database made on that server for the run (dropped after it unless `--keep`).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// ACTIVE tokens the campaign re-personalizes (one device each).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) tokens: usize,
    /// The campaign's `ratePerSecond` (tokens started per second); the default does not limit.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) campaign_rate: u32,
    /// The campaign's `maxInFlight`.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_in_flight: u32,
    /// The TSP simulator answers 503 above this many calls per second, and the hub is told to
    /// keep to it (`rateLimitPerSecond`). A token costs two calls (repersoToken, newDataStatus).
    #[arg(long)]
    pub(crate) tsp_rate: Option<u32>,
    /// Devices visited at once (each visit: a poll and a result).
    #[arg(long, default_value_t = 64)]
    pub(crate) device_concurrency: usize,
    /// Open and check one profile in this many (1: every one).
    #[arg(long, default_value_t = 100)]
    pub(crate) check_every: usize,
    /// Keep the folder (database, hub log) instead of deleting it.
    #[arg(long)]
    pub(crate) keep: bool,
    /// `RUST_LOG` of the hub process (its log goes to `hub.log` in the folder).
    #[arg(long, default_value = "warn")]
    pub(crate) hub_log: String,
    /// Give up after this many minutes of campaign.
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout_minutes: u64,
    /// The token requestor every token belongs to (its base URL), registered while seeding;
    /// none in this bench (the chaos run sets it).
    #[arg(skip)]
    pub(crate) requestor_url: Option<String>,
}

pub async fn run(args: CampaignArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-campaign-")
        .tempdir()?;
    let fresh = match &args.database_url {
        Some(server) => Some(FreshDatabase::create(server, "campaign").await?),
        None => None,
    };
    let database_url = match &fresh {
        Some(f) => f.url.clone(),
        None => format!("sqlite://{}", dir.path().join("hub.db").display()),
    };
    let verdict = run_on(&args, &dir, &database_url).await;
    if args.keep {
        println!("kept the folder: {}", dir.keep().display());
    }
    if let Some(f) = fresh {
        if args.keep {
            println!("kept the database {}", f.name());
        } else {
            f.drop_now().await?;
        }
    }
    verdict
}

async fn run_on(
    args: &CampaignArgs,
    dir: &tempfile::TempDir,
    database_url: &str,
) -> anyhow::Result<()> {
    let database_url = database_url.to_string();
    let master_key = random_hex(32);
    let admin_token = random_hex(16);
    let key_set = tokenhub_crypto::KeySet::generate();
    let hub_port = free_port()?;
    let hub_url = format!("http://127.0.0.1:{hub_port}");
    let sims = Simulators::start(args, &hub_url, &key_set).await?;
    print_header(args, dir.path());

    let (db_mb, wallet_key) = seed_hub(
        args,
        &database_url,
        &master_key,
        &admin_token,
        &key_set,
        &sims.tsp,
        &sims.derived,
        &sims.devices,
    )
    .await
    .context("seeding the hub's database")?;
    // The admin key the measure's calls go with (the bootstrap token may only manage keys).
    let admin_key = {
        let store = tokenhub::Store::connect(&database_url).await?;
        let key = crate::bootstrap::admin_key(&store).await?;
        store.close().await;
        key
    };

    let mut hub = start_hub(
        args,
        dir.path(),
        &database_url,
        hub_port,
        &master_key,
        &admin_token,
    )
    .await?;
    let pid = hub.pid();
    let sim = sims.tsp;
    // The devices call the wallet API with the provider's key, made while seeding.
    let devices = Arc::try_unwrap(sims.devices)
        .map_err(|_| anyhow::anyhow!("the devices are still shared after seeding"))?
        .with_api_key(&wallet_key)?;
    let outcome = measure(
        args,
        &hub,
        &hub_url,
        &admin_key,
        &sim,
        &sims.derived,
        Arc::new(devices),
        sims.recovered,
    )
    .await;
    // The hub's figures at the end, before it goes.
    let proc_end = ProcStats::read(pid);
    hub.kill();
    let log_tail = tail(&dir.path().join("hub.log"), 20);
    let status = sim.status();
    shut_down(sim).await?;
    let print_tail = || {
        if !log_tail.is_empty() {
            eprintln!("hub.log (last lines):\n{log_tail}");
        }
    };
    let measured = match outcome {
        Ok(m) => m,
        Err(e) => {
            print_tail();
            return Err(e);
        }
    };
    let verdict = report(args, &measured, &proc_end, &status, db_mb);
    if verdict.is_err() {
        print_tail();
    }
    verdict
}

/// The hub as a process of its own on the seeded database, ready to serve.
async fn start_hub(
    args: &CampaignArgs,
    dir: &std::path::Path,
    database_url: &str,
    port: u16,
    master_key: &str,
    admin_token: &str,
) -> anyhow::Result<HubProcess> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut hub = HubProcess::spawn(
        &exe,
        database_url,
        port,
        master_key,
        admin_token,
        &args.hub_log,
        &dir.join("hub.log"),
    )?;
    let url = format!("http://127.0.0.1:{port}");
    hub.wait_ready(&url).await?;
    println!("hub started: pid {}, {url}", hub.pid());
    Ok(hub)
}

fn check_args(args: &CampaignArgs) -> anyhow::Result<()> {
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
    Ok(())
}

fn print_header(args: &CampaignArgs, dir: &std::path::Path) {
    println!(
        "tokenhub-bench campaign: {} ACTIVE token(s), profile v1 -> v2, hub in its own process \
         ({}), simulators in this one, loopback HTTP; {} CPU(s)",
        args.tokens,
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
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
    println!("folder {}", dir.display());
}

/// The simulators: the TSP knows every token from the start (derived data); the devices share
/// a few key pairs.
struct Simulators {
    tsp: Arc<TspSimHandle>,
    derived: DerivedTokens,
    devices: Arc<LightDevices>,
    /// The tokens whose data the TSP recovered, as it recovers them.
    recovered: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Simulators {
    async fn start(
        args: &CampaignArgs,
        hub_url: &str,
        key_set: &tokenhub_crypto::KeySet,
    ) -> anyhow::Result<Self> {
        let mut seed = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let derived =
            DerivedTokens::new(seed, ISSUER_ID, TOKEN_PREFIX, args.tokens, YearMonth::now());
        let (recovered_tx, recovered) = tokio::sync::mpsc::unbounded_channel();
        let mut sim_config = TspSimConfig::new(hub_url.to_string(), key_set.clone());
        sim_config.derived = Some(derived.clone());
        sim_config.recovered = Some(recovered_tx);
        sim_config.issuer_ids = Some(vec![ISSUER_ID.to_string()]);
        sim_config.misbehaviour.rate_limit = args.tsp_rate;
        let tsp = Arc::new(
            tokenhub_sim::spawn(
                tokio::net::TcpListener::bind("127.0.0.1:0").await?,
                sim_config,
            )
            .await?,
        );
        let devices = Arc::new(LightDevices::new(hub_url, KEY_PAIRS, &seed)?);
        Ok(Self {
            tsp,
            derived,
            devices,
            recovered,
        })
    }
}

/// Shuts the TSP simulator down once the device tasks, which hold it for its counters, are gone.
async fn shut_down(mut sim: Arc<TspSimHandle>) -> anyhow::Result<()> {
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
    Ok(())
}
