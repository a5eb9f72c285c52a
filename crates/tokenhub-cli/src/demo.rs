//! `tokenhub demo` and `tokenhub tsp-sim`: the whole story on one machine, over real HTTP on
//! loopback. The demo starts the hub on a fresh embedded SQLite database, a TSP simulator and the
//! wallets' side, provisions tokens the way the parties would, and checks the outcome; it exits
//! non-zero unless every check holds.

use crate::demo_updates;
use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokenhub::Config;

#[derive(clap::Args)]
pub struct TspSimArgs {
    /// Address the simulator listens on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// The hub's base URL (the simulator calls `{hub-url}/trapi/v2.0/...`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    hub_url: String,
    /// The key-set file written by `tokenhub keys generate`.
    #[arg(long)]
    keys: PathBuf,
    /// Over how many /data calls each token's elements are spread.
    #[arg(long, default_value_t = 1)]
    partial_calls: usize,
}

pub async fn tsp_sim(args: TspSimArgs) -> anyhow::Result<()> {
    let keys = tokenhub_sim::load_key_set(&args.keys)?;
    let mut config = tokenhub_sim::TspSimConfig::new(args.hub_url, keys);
    config.partial_calls = args.partial_calls;
    tokenhub_sim::run(args.listen, config).await
}

#[derive(clap::Args)]
pub struct DeviceSimArgs {
    /// The hub's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    hub_url: String,
    /// How many devices.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Device ids are this prefix and a number.
    #[arg(long, default_value = "device-")]
    id_prefix: String,
    /// The TSP simulator's root URL (where /sim/transactions is): devices pay when it is given.
    #[arg(long)]
    tsp_sim_url: Option<String>,
    /// Seconds between two rounds of transactions.
    #[arg(long, default_value_t = 10)]
    transactions_every: u64,
}

pub async fn device_sim(args: DeviceSimArgs) -> anyhow::Result<()> {
    let mut fleet = tokenhub_sim::device::FleetConfig::new(args.hub_url, args.devices);
    fleet.id_prefix = args.id_prefix;
    let mut config = tokenhub_sim::device::DeviceSimConfig::new(fleet);
    config.tsp_sim_url = args.tsp_sim_url;
    config.transactions_every = Duration::from_secs(args.transactions_every.max(1));
    tokenhub_sim::device::run(config).await
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many cards to digitize.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Over how many /data calls the TSP spreads each token's elements.
    #[arg(long, default_value_t = 2)]
    partial_calls: usize,
    /// Digitizations under way at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The campaign's pace, tokens per second.
    #[arg(long, default_value_t = 500)]
    campaign_rate: u32,
    /// The calls per second the TSP takes (it answers 503 above): the hub is told to keep to it.
    #[arg(long)]
    tsp_rate: Option<u32>,
    /// Transactions each device makes.
    #[arg(long, default_value_t = 3)]
    transactions: usize,
    /// Keep the demo's folder (database, keys) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    ensure!(args.tokens > 0, "--tokens must be at least 1");
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("tokenhub-demo-")
        .tempdir()?;
    let db_path = dir.path().join("tokenhub.db");
    println!(
        "tokenhub demo: {} token(s), database {}",
        args.tokens,
        db_path.display()
    );

    // The hub, on a fresh embedded database.
    let mut config = Config::for_database(&format!("sqlite://{}", db_path.display()));
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_token = Some(format!("demo-{}", uuid::Uuid::new_v4().simple()));
    config.outbox_backoff = Duration::from_millis(200);
    // The token requestor runs on loopback; its retries are quick in a demo.
    config.notify.outbound_allow =
        tokenhub::config::parse_cidrs("127.0.0.0/8").map_err(|e| anyhow::anyhow!(e))?;
    config.notify.retry_schedule = tokenhub::config::parse_schedule("100ms,200ms,500ms,1s,2s,5s")
        .map_err(|e| anyhow::anyhow!(e))?;
    let local = crate::local_hub::LocalHub::start(config).await?;
    let (hub_addr, hub) = (local.addr, local.hub.clone());
    let admin_token = hub.admin_token().to_string();

    // The key ceremony: one key set, imported by the hub, handed to the TSP.
    let key_set = tokenhub_crypto::KeySet::generate();
    tokenhub::flows::keys::import(&hub.store, &hub.keys, &key_set.keys, hub.now_ms())
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;

    // The TSP simulator and the wallets, real HTTP peers on loopback.
    let hub_url = format!("http://{hub_addr}");
    let mut sim_config = tokenhub_sim::TspSimConfig::new(hub_url.clone(), key_set);
    sim_config.partial_calls = args.partial_calls;
    // The TSP enforces the rate it agreed with the hub (503 above it); the hub keeps to it.
    sim_config.misbehaviour.rate_limit = args.tsp_rate;
    let sim = tokenhub_sim::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        sim_config,
    )
    .await?;
    let mut fleet_config = tokenhub_sim::device::FleetConfig::new(hub_url.clone(), args.tokens);
    fleet_config.wait_seconds = 5;
    let fleet = tokenhub_sim::device::Fleet::start(fleet_config).await?;

    // A PSP keeping the tokens on file, receiving their updates.
    let requestor = tokenhub_sim::requestor::RequestorSim::start(
        tokenhub_sim::requestor::RequestorSimConfig::new(
            demo_updates::API_KEY,
            vec![demo_updates::SIGNING_SECRET.to_string()],
        ),
    )
    .await?;

    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: hub_url,
        admin_token,
    };
    let issuer_id = "DEMOISSUER";
    client
        .admin_put(
            "/admin/v1/tsps/demo-tsp",
            json!({"baseUrl": sim.base_url(), "rateLimitPerSecond": args.tsp_rate}),
        )
        .await?;
    client
        .admin_put(
            &format!("/admin/v1/issuers/{issuer_id}"),
            json!({"name": "Demo Bank", "tspId": "demo-tsp"}),
        )
        .await?;
    client
        .admin_put(
            &format!("/admin/v1/issuers/{issuer_id}/products/classic/profiles/v1"),
            tokenhub_sim::profiles::profile_v1(),
        )
        .await?;
    client
        .admin_post(
            &format!("/admin/v1/issuers/{issuer_id}/products/classic/profiles/v1/deploy"),
            json!({}),
        )
        .await?;
    client
        .admin_put(
            &format!("/admin/v1/token-requestors/{}", demo_updates::REQUESTOR_ID),
            json!({"merchantId": demo_updates::MERCHANT_ID, "baseUrl": requestor.base_url(),
                   "apiKey": demo_updates::API_KEY, "signingSecrets": [demo_updates::SIGNING_SECRET]}),
        )
        .await?;

    // Every wallet digitizes a card; the TSP sends the data; the hub builds and delivers the
    // profile; the device installs it and confirms; the hub tells the TSP the token is ACTIVE.
    let bar = progress(args.tokens as u64, "digitizing");
    let provision_started = Instant::now();
    let token_ids = digitize_all(
        &client,
        issuer_id,
        &fleet.device_ids(),
        args.concurrency,
        &bar,
    )
    .await?;
    bar.finish();
    let bar = progress(args.tokens as u64, "installing");
    let installed = loop {
        let n = fleet.status().apps_installed;
        bar.set_position(n);
        if n as usize >= args.tokens || provision_started.elapsed() > Duration::from_secs(120) {
            break n as usize;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bar.finish();
    let outbox_drained = wait_outbox_drained(&hub, Duration::from_secs(60)).await?;
    let provision_time = provision_started.elapsed();

    // Every device pays; then one replays its last transaction, which the TSP must decline.
    let bar = progress(args.tokens as u64, "paying");
    bar.set_position(0);
    let txns = fleet
        .transact_all(&sim.sim_url(), args.transactions, 64)
        .await;
    bar.set_position(txns.tokens as u64);
    bar.finish();
    let replay = match token_ids.first() {
        Some(t) => fleet.replay_last(t, &sim.sim_url()).await,
        None => anyhow::bail!("no token was digitized"),
    };

    // The issuer enables transit: a new profile version, deployed with a campaign that
    // re-personalizes every ACTIVE token; the TSP recovers each token's data, the device installs
    // the new profile (ATC back to 0) and the TSP, told SUCCESS, resets its ATC too.
    let campaign_started = Instant::now();
    client
        .admin_put(
            &format!("/admin/v1/issuers/{issuer_id}/products/classic/profiles/v2"),
            tokenhub_sim::profiles::profile_v2(),
        )
        .await?;
    let deployed = client
        .admin_post(
            &format!("/admin/v1/issuers/{issuer_id}/products/classic/profiles/v2/deploy"),
            json!({"campaign": {"ratePerSecond": args.campaign_rate, "maxInFlight": 256}}),
        )
        .await?;
    let campaign_id = deployed["campaignId"]
        .as_str()
        .context("no campaignId")?
        .to_string();
    println!(
        "campaign {campaign_id}: profile v2 (transit) to {} token(s)",
        deployed["total"]
    );
    let campaign_url = format!("{}/admin/v1/campaigns/{campaign_id}", client.base);
    crate::campaign::watch_campaign(&client.http, &campaign_url, &client.admin_token).await?;
    let campaign = client
        .get_admin(&format!("/admin/v1/campaigns/{campaign_id}"))
        .await?;
    let status_drained = wait_outbox_drained(&hub, Duration::from_secs(60)).await?;
    let campaign_time = campaign_started.elapsed();
    let bar = progress(args.tokens as u64, "paying");
    let txns_after = fleet
        .transact_all(&sim.sim_url(), args.transactions, 64)
        .await;
    bar.set_position(txns_after.tokens as u64);
    bar.finish();
    let mut on_v2 = 0;
    let mut atc_in_sync = 0;
    for t in &token_ids {
        let app = fleet.app(t);
        if app.as_ref().is_some_and(|a| a.profile_version == "v2") {
            on_v2 += 1;
        }
        let tsp_atc = sim.token(t).and_then(|s| s.last_atc);
        if app.is_some_and(|a| Some(a.atc) == tsp_atc) {
            atc_in_sync += 1;
        }
    }
    let done = campaign["done"].as_u64().unwrap_or(0) as usize;
    let failed = campaign["failed"].as_u64().unwrap_or(0);

    // The TSP changes tokens; the requestor keeps up.
    println!(
        "token updates: the TSP extends expiries, changes last digits, suspends, resumes, deletes"
    );
    let updates = demo_updates::run(&hub, &sim, &requestor, issuer_id, &token_ids).await?;
    let removals_wanted = updates.deleted as u64;
    let removals_until = Instant::now() + Duration::from_secs(30);
    while fleet.status().removals < removals_wanted && Instant::now() < removals_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    requestor.shutdown().await?;

    let states = hub.store.token_states().await?;
    // Tokens ACTIVE before the TSP's updates suspended and deleted some.
    let active = states
        .iter()
        .filter(|(s, _)| s != "PENDING_DATA" && s != "PERSONALIZING")
        .map(|(_, n)| *n)
        .sum::<i64>() as usize;
    let (parts, sealed_profiles) = hub.store.retained_data().await?;
    let status = sim.status();
    let fleet_status = fleet.status();
    fleet.shutdown().await;
    sim.shutdown().await?;
    local.stop().await?;

    println!();
    println!("tokens digitized (createToken)      {}", token_ids.len());
    println!(
        "data calls sent / accepted          {} / {}",
        status.data_calls_sent, status.data_calls_accepted
    );
    println!("profiles installed on devices       {installed}");
    println!("tokens personalized at the hub      {active}");
    println!(
        "TSP told ACTIVE (outbox drained)    {}",
        if outbox_drained { "yes" } else { "NO" }
    );
    println!(
        "transactions approved / declined    {} / {}",
        txns.approved,
        txns.declined_total()
    );
    println!(
        "replayed ATC declined by the TSP    {} ({})",
        if replay.approved { "NO" } else { "yes" },
        replay.reason
    );
    println!(
        "data elements retained by the hub   {parts} part(s), {sealed_profiles} sealed profile(s)"
    );
    println!(
        "provisioning                        {:.1} s, {:.0} tokens/s (digitization to ACTIVE)",
        provision_time.as_secs_f64(),
        token_ids.len() as f64 / provision_time.as_secs_f64()
    );
    println!(
        "tokens re-personalized (campaign)    {done} of {} ({failed} failed)",
        token_ids.len()
    );
    println!("devices on profile v2               {on_v2}");
    println!("recovered data that differed        {failed}");
    println!(
        "TSP calls refused by its rate (503)  {}",
        status.rate_limited
    );
    println!(
        "transactions after the campaign     {} approved / {} declined",
        txns_after.approved,
        txns_after.declined_total()
    );
    println!(
        "ATC in sync (device = TSP)          {atc_in_sync} of {}",
        token_ids.len()
    );
    println!(
        "campaign                            {:.1} s, {:.0} tokens/s",
        campaign_time.as_secs_f64(),
        done as f64 / campaign_time.as_secs_f64()
    );
    println!(
        "token updates sent by the TSP       {} ({} sent twice, {} out of order, {} refused)",
        updates.updates_sent,
        updates.duplicates_sent,
        updates.out_of_order_sent,
        updates.refused_by_hub
    );
    println!(
        "updates delivered to the requestor  {} in {} attempts ({} answered 503/400 on purpose, {} dead letters replayed)",
        updates.deliveries, updates.attempts, updates.failed_on_purpose, updates.dead_replayed
    );
    println!(
        "receiver: applied / duplicates / obsolete dropped   {} / {} / {}",
        updates.receiver_applied, updates.receiver_duplicates, updates.receiver_obsolete
    );
    println!(
        "token PANs discarded (new last digits) {}",
        updates.pan_discards
    );
    println!(
        "requestor's view = hub's view       {} of {}",
        updates.views_equal,
        token_ids.len()
    );
    println!(
        "deleted tokens removed from devices {} of {}",
        fleet_status.removals, updates.deleted
    );
    println!(
        "token updates phase                 {:.1} s",
        updates.time.as_secs_f64()
    );
    println!(
        "demo wall time                      {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if args.keep {
        let kept = dir.keep();
        println!("kept the demo folder: {}", kept.display());
    }
    let expected_txns = (args.tokens * args.transactions) as u64;
    let checks = [
        (
            done == args.tokens && on_v2 == args.tokens && status_drained,
            format!("campaign: {campaign}"),
        ),
        (
            status.rate_limited == 0,
            format!(
                "the hub went over the TSP's rate: {} call(s) refused",
                status.rate_limited
            ),
        ),
        (
            txns_after.approved == expected_txns && txns_after.declined_total() == 0,
            format!("transactions after the campaign: {txns_after:?}"),
        ),
        (
            atc_in_sync == args.tokens,
            format!("ATC in sync on {atc_in_sync} token(s) only"),
        ),
        (
            status.data_calls_rejected_total() == 0,
            format!(
                "the hub refused data calls: {:?}",
                status.data_calls_rejected
            ),
        ),
        (
            installed == args.tokens,
            format!(
                "{} device(s) did not install their profile",
                args.tokens - installed
            ),
        ),
        (
            active == args.tokens,
            format!(
                "{} token(s) are not ACTIVE: {states:?}",
                args.tokens - active
            ),
        ),
        (
            outbox_drained,
            "the TSP was not told of every activation".to_string(),
        ),
        (
            txns.approved == expected_txns && txns.declined_total() == 0,
            format!("transactions: {txns:?}"),
        ),
        (
            !replay.approved && replay.reason == "REPLAY",
            format!("the replay was not declined as such: {replay:?}"),
        ),
        (
            parts == 0 && sealed_profiles == 0,
            "the hub still holds token data".to_string(),
        ),
        (
            fleet_status.decrypt_errors == 0 && fleet_status.check_errors == 0,
            format!("devices: {fleet_status:?}"),
        ),
        (
            updates.views_equal == args.tokens,
            format!(
                "the requestor's view differs from the hub's: {:?}",
                updates.view_mismatches.iter().take(5).collect::<Vec<_>>()
            ),
        ),
        (
            updates.left_pending == 0 && updates.left_dead == 0 && updates.refused_by_hub == 0,
            format!(
                "token updates: {} pending, {} dead, {} refused by the hub",
                updates.left_pending, updates.left_dead, updates.refused_by_hub
            ),
        ),
        (
            fleet_status.removals >= removals_wanted,
            format!(
                "{} of {removals_wanted} deleted tokens removed from their devices",
                fleet_status.removals
            ),
        ),
    ];
    let failed: Vec<&String> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, why)| why)
        .collect();
    for why in &failed {
        println!("CHECK FAILED: {why}");
    }
    ensure!(failed.is_empty(), "{} check(s) failed", failed.len());
    println!("all checks passed");
    Ok(())
}

/// Waits until no outbox call is pending (every call owed to the TSP made).
async fn wait_outbox_drained(hub: &tokenhub::Hub, timeout: Duration) -> anyhow::Result<bool> {
    let until = Instant::now() + timeout;
    loop {
        let counts = hub.store.outbox_counts().await?;
        let pending = counts
            .iter()
            .find(|(s, _)| s.as_str() == "PENDING")
            .map_or(0, |(_, n)| *n);
        let dead = counts
            .iter()
            .find(|(s, _)| s.as_str() == "DEAD")
            .map_or(0, |(_, n)| *n);
        if pending == 0 {
            return Ok(dead == 0);
        }
        if Instant::now() > until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn digitize_all(
    client: &Client,
    issuer_id: &str,
    device_ids: &[String],
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<String>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    stream::iter(device_ids.iter().enumerate())
        .map(|(i, device_id)| async move {
            let answer = client
                .post(
                    "/wallet/v1/digitizations",
                    json!({"issuerId": issuer_id, "productId": "classic", "deviceId": device_id,
                           "walletCardRefId": format!("card-{i:06}"),
                           "tokenRequestorId": demo_updates::REQUESTOR_ID,
                           "card": {"lastDigits": format!("{:04}", i % 10_000), "expiryDate": "0928",
                                    "artId": "art-classic"}}),
                )
                .await?;
            bar.inc(1);
            answer["tokenId"]
                .as_str()
                .map(str::to_string)
                .context("the digitization answer has no tokenId")
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// A small client of the hub's own APIs, as an operator's script would use them.
struct Client {
    http: reqwest::Client,
    base: String,
    admin_token: String,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status.is_success(), "HTTP {status}: {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
    async fn admin_put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .put(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_token)
                .json(&body),
        )
        .await
        .with_context(|| format!("PUT {path}"))
    }
    async fn admin_post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_token)
                .json(&body),
        )
        .await
        .with_context(|| format!("POST {path}"))
    }
    async fn get_admin(&self, path: &str) -> anyhow::Result<Value> {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.admin_token),
        )
        .await
        .with_context(|| format!("GET {path}"))
    }
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
            .with_context(|| format!("POST {path}"))
    }
}
