//! `tokenhub-bench chaos`: several hub nodes on one PostgreSQL database doing a campaign, token
//! updates and their deliveries at once, while nodes are killed, the TSP is flaky and the
//! requestor goes down; then the checks of what the contract says happens once, in order, or
//! within a rate.
//!
//! 1. **Seeding** as the campaign bench seeds ([`crate::campaign::seed`]), in a fresh database
//!    made on the server given, every token belonging to a requestor (the requestor simulator,
//!    verifying every signature).
//! 2. **The nodes**: `--nodes` hub processes (this binary's hidden `serve`) on that database,
//!    each with its node id and port, behind a round-robin TCP front ([`front`]) that the TSP
//!    simulator, the devices and the bench's admin calls go through; a node that refuses
//!    connections is skipped.
//! 3. **The load**, at the same time: v2 deployed with a campaign over every token (the TSP
//!    simulator recovers each token's data, the token's device fetches and confirms its new
//!    profile), `--updates` token updates posted by the TSP at `--update-rate`, two in a row
//!    to each token, so that an update overtaking the one before it shows, and
//!    `--digitizations` new digitizations ([`digitize`]).
//! 4. **The chaos**: every 5–15 s a random node is killed with `SIGKILL` and started again with
//!    the same node id (a restarted pod keeps its identity: its own claims of its earlier life
//!    must still wait for their lease, and fencing must stop anything it had under way), `--kills`
//!    times; the TSP simulator answers 30 % of calls `503`/`429` and stalls 2 s on some; the
//!    requestor stops listening for `--requestor-down-secs`, several of the hub's retry intervals.
//! 5. **The checks** ([`checks`]), once the campaign is COMPLETED, every ATC reset and the
//!    requestor's view settled: exactly one v2 personalization per token, confirmed, and one
//!    profile offered per device; the TSP's ATC resets equal to the tokens; every update received
//!    (or one of the same token newer than it) and the requestor's final view equal to the hub's;
//!    no update applied out of order; the TSP's rate limit never exceeded; no deadlock.

mod checks;
mod cluster;
mod digitize;
mod front;
mod load;
mod traffic;
mod watch;

use crate::bootstrap::{free_port, random_hex, FreshDatabase};
use crate::campaign::CampaignArgs;
use anyhow::{ensure, Context};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenhub_sim::device::light::LightDevices;
use tokenhub_sim::requestor::{RequestorSim, RequestorSimConfig};
use tokenhub_sim::tsp::elements::YearMonth;
use tokenhub_sim::{DerivedTokens, Misbehaviour, TspSimConfig, TspSimHandle};

/// The hub's retry schedule towards the requestor in this run: waits of up to a second, many of
/// them, so that a requestor down for several seconds sees several retries and no update dies.
const NOTIFY_RETRY_SCHEDULE: &str = "1s";
const NOTIFY_RETRIES: usize = 120;

#[derive(clap::Args)]
pub struct ChaosArgs {
    /// The PostgreSQL server, as `postgres://user@host:port/db`: the run makes a fresh database
    /// on it and drops it afterwards (unless `--keep`).
    #[arg(long, env = "TOKENHUB_TEST_DATABASE_URL")]
    pub(crate) database_url: String,
    /// Hub nodes on that database.
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: usize,
    /// ACTIVE tokens the campaign re-personalizes (the default finishes within ten minutes on a
    /// 2-core machine; BENCHMARKS.md says what 20,000 does there).
    #[arg(long, default_value_t = 5_000)]
    pub(crate) tokens: usize,
    /// Token updates the TSP posts during the campaign.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) updates: usize,
    /// Token updates posted per second.
    #[arg(long, default_value_t = 25)]
    pub(crate) update_rate: u32,
    /// New digitizations (a device registered, a card digitized onto it, its profile confirmed)
    /// during the campaign, one every `--digitize-every-ms`.
    #[arg(long, default_value_t = 100)]
    pub(crate) digitizations: usize,
    #[arg(long, default_value_t = 1000)]
    pub(crate) digitize_every_ms: u64,
    /// Nodes killed (one at a time, each started again).
    #[arg(long, default_value_t = 10)]
    pub(crate) kills: u32,
    /// Least and most seconds between two kills (drawn at random).
    #[arg(long, default_value_t = 5)]
    pub(crate) kill_min_secs: u64,
    #[arg(long, default_value_t = 15)]
    pub(crate) kill_max_secs: u64,
    /// The TSP's agreed rate (calls per second): the hub is told it, the simulator refuses above.
    #[arg(long, default_value_t = 100)]
    pub(crate) tsp_rate: u32,
    /// Share of the TSP's calls answered `503` or `429` at random, percent.
    #[arg(long, default_value_t = 30)]
    pub(crate) tsp_fail_percent: u8,
    /// Share of the TSP's calls held for `--tsp-stall-ms` first, percent.
    #[arg(long, default_value_t = 2)]
    pub(crate) tsp_stall_percent: u8,
    #[arg(long, default_value_t = 2000)]
    pub(crate) tsp_stall_ms: u64,
    /// How long the requestor stops listening (the hub retries it every second at most).
    #[arg(long, default_value_t = 8)]
    pub(crate) requestor_down_secs: u64,
    /// The nodes' claim lease (`TOKENHUB_CLAIM_LEASE`; 15 s at least).
    #[arg(long, default_value = "15s")]
    pub(crate) claim_lease: String,
    /// The campaign's `maxInFlight`.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_in_flight: u32,
    /// Devices visited at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) device_concurrency: usize,
    /// Keep the folder (the nodes' logs) and the database.
    #[arg(long)]
    pub(crate) keep: bool,
    /// `RUST_LOG` of the nodes (their logs go to `node-<i>.log` in the folder).
    #[arg(long, default_value = "warn")]
    pub(crate) hub_log: String,
    /// Give up after this many minutes.
    #[arg(long, default_value_t = 15)]
    pub(crate) timeout_minutes: u64,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-bench-chaos-")
        .tempdir()?;
    let fresh = FreshDatabase::create(&args.database_url, "chaos").await?;
    println!(
        "tokenhub-bench chaos: {} node(s) on PostgreSQL (database {}), {} token(s), {} update(s), \
         {} kill(s); {} CPU(s); folder {}",
        args.nodes,
        fresh.name(),
        args.tokens,
        args.updates,
        args.kills,
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        dir.path().display()
    );
    let verdict = run_on(&args, dir.path(), &fresh.url).await;
    if args.keep {
        println!(
            "kept the folder {} and the database {}",
            dir.keep().display(),
            fresh.name()
        );
    } else {
        fresh.drop_now().await?;
    }
    verdict
}

/// What the run shares between its parts.
pub(crate) struct World {
    pub(crate) front_url: String,
    pub(crate) admin_key: String,
    pub(crate) tsp: Arc<TspSimHandle>,
    pub(crate) derived: DerivedTokens,
    pub(crate) requestor: RequestorSim,
    pub(crate) database_url: String,
    /// The wallet provider's API key (the digitizations).
    pub(crate) wallet_key: String,
}

async fn run_on(args: &ChaosArgs, dir: &std::path::Path, database_url: &str) -> anyhow::Result<()> {
    let front_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let front_url = format!("http://{}", front_listener.local_addr()?);
    let key_set = tokenhub_crypto::KeySet::generate();
    let (master_key, admin_token) = (random_hex(32), random_hex(16));
    let requestor = RequestorSim::start(RequestorSimConfig::new(
        "bench-key",
        vec![crate::notifications::SECRET.to_string()],
    ))
    .await?;
    let cargs = campaign_args(args, &requestor);
    let (tsp, derived, devices, recovered) = simulators(args, &front_url, &key_set).await?;
    let seeding = crate::campaign::seed::seed_hub(
        &cargs,
        database_url,
        &master_key,
        &admin_token,
        &key_set,
        &tsp,
        &derived,
        &devices,
    );
    let (_, wallet_key) = seeding.await.context("seeding the hub's database")?;
    let admin_key = {
        let store = tokenhub::Store::connect(database_url).await?;
        let key = crate::bootstrap::admin_key(&store).await?;
        store.close().await;
        key
    };
    let ports = (0..args.nodes)
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let spec = cluster::Spec {
        exe: std::env::current_exe().context("locating this binary")?,
        database_url: database_url.to_string(),
        keys: (master_key, admin_token),
        log_filter: args.hub_log.clone(),
        dir: dir.to_path_buf(),
        env: node_env(args),
    };
    let mut nodes = cluster::Cluster::start(spec, &ports).await?;
    let front = front::Front::start(front_listener, nodes.addrs());
    let devices = Arc::try_unwrap(devices)
        .map_err(|_| anyhow::anyhow!("the devices are still shared after seeding"))?
        .with_api_key(&wallet_key)?;
    let world = World {
        wallet_key,
        front_url,
        admin_key,
        tsp,
        derived,
        requestor,
        database_url: database_url.to_string(),
    };
    let ran = load::run(args, &world, &mut nodes, Arc::new(devices), recovered).await;
    nodes.stop_all();
    let logs = nodes.logs();
    let outcome = match ran {
        Ok(ran) => checks::check_and_report(args, &world, &ran, &front, &logs).await,
        Err(e) => Err(e),
    };
    world.requestor.shutdown().await.ok();
    outcome
}

/// What the campaign bench's seeding reads of its arguments.
fn campaign_args(args: &ChaosArgs, requestor: &RequestorSim) -> CampaignArgs {
    CampaignArgs {
        database_url: None,
        tokens: args.tokens,
        campaign_rate: 100_000,
        max_in_flight: args.max_in_flight,
        tsp_rate: Some(args.tsp_rate),
        device_concurrency: args.device_concurrency,
        check_every: 100,
        keep: args.keep,
        hub_log: args.hub_log.clone(),
        timeout_minutes: args.timeout_minutes,
        requestor_url: Some(requestor.base_url()),
    }
}

/// The environment every node gets besides the campaign bench's.
fn node_env(args: &ChaosArgs) -> Vec<(String, String)> {
    let schedule = vec![NOTIFY_RETRY_SCHEDULE; NOTIFY_RETRIES].join(",");
    vec![
        ("TOKENHUB_CLAIM_LEASE".into(), args.claim_lease.clone()),
        ("TOKENHUB_HEARTBEAT_INTERVAL".into(), "1s".into()),
        ("TOKENHUB_NOTIFY_RETRY_SCHEDULE".into(), schedule),
        ("TOKENHUB_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into()),
        // A device whose SUCCESS was lost with its node gets its profile again soon, and often
        // enough not to fail the token.
        ("TOKENHUB_DELIVERY_WINDOW".into(), "5".into()),
        ("TOKENHUB_DELIVERY_MAX_TRIES".into(), "50".into()),
    ]
}

/// The TSP simulator (derived tokens; retrying its own calls as a TSP does), and the devices.
async fn simulators(
    args: &ChaosArgs,
    front_url: &str,
    key_set: &tokenhub_crypto::KeySet,
) -> anyhow::Result<(
    Arc<TspSimHandle>,
    DerivedTokens,
    Arc<LightDevices>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
)> {
    use crate::campaign::{ISSUER_ID, KEY_PAIRS, TOKEN_PREFIX};
    let mut seed = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let derived = DerivedTokens::new(seed, ISSUER_ID, TOKEN_PREFIX, args.tokens, YearMonth::now());
    let (recovered_tx, recovered) = tokio::sync::mpsc::unbounded_channel();
    let mut config = TspSimConfig::new(front_url.to_string(), key_set.clone());
    config.derived = Some(derived.clone());
    config.recovered = Some(recovered_tx);
    config.issuer_ids = Some(vec![ISSUER_ID.to_string()]);
    config.hub_check_every = None;
    // A node may die under a call: the TSP tries again (through the front, on a live node)
    // for longer than a node takes to come back.
    config.retry.max_attempts = 40;
    config.retry.max_backoff = Duration::from_secs(2);
    config.misbehaviour = Misbehaviour {
        rate_limit: Some(args.tsp_rate),
        ..Misbehaviour::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tsp = Arc::new(tokenhub_sim::spawn(listener, config).await?);
    let devices = Arc::new(LightDevices::new(front_url, KEY_PAIRS, &seed)?);
    Ok((tsp, derived, devices, recovered))
}

/// The TSP's flakiness, switched on once the nodes serve (seeding registers the TSP untouched).
pub(crate) fn flaky_tsp(args: &ChaosArgs) -> Misbehaviour {
    Misbehaviour {
        rate_limit: Some(args.tsp_rate),
        fail_percent: Some(args.tsp_fail_percent),
        stall_percent: Some(args.tsp_stall_percent),
        stall: Some(Duration::from_millis(args.tsp_stall_ms)),
        ..Misbehaviour::default()
    }
}

fn check_args(args: &ChaosArgs) -> anyhow::Result<()> {
    ensure!(
        args.database_url.starts_with("postgres"),
        "--database-url must name a PostgreSQL server (several nodes share one database)"
    );
    ensure!(
        args.nodes >= 1 && args.tokens >= 2,
        "--nodes and --tokens too small"
    );
    ensure!(
        args.update_rate > 0 && args.tsp_rate > 0,
        "--update-rate and --tsp-rate must be at least 1"
    );
    ensure!(
        args.kill_min_secs <= args.kill_max_secs,
        "--kill-min-secs is above --kill-max-secs"
    );
    ensure!(
        args.tsp_fail_percent < 100 && args.tsp_stall_percent <= 100,
        "--tsp-fail-percent must be below 100"
    );
    Ok(())
}

/// When the run gives up.
pub(crate) fn deadline(args: &ChaosArgs, start: Instant) -> Instant {
    start + Duration::from_secs(args.timeout_minutes * 60)
}
