//! The run itself: the campaign deployed, the updates posted, the devices visited, the requestor
//! taken down for a while, the nodes killed, all at once; then waiting until everything owed
//! has arrived.

use super::cluster::{killer, Cluster, Kill};
use super::digitize::{digitize, Digitized};
use super::traffic::{post_updates, sample_calls, UpdatesSent};
use super::watch::{collect_deliveries, drive_devices, Deliveries, DevicesSeen, SharedDevices};
use super::{deadline, flaky_tsp, ChaosArgs, World};
use crate::campaign::{ISSUER_ID, PRODUCT_ID};
use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenhub_sim::device::light::LightDevices;
use tokio::task::JoinHandle;

/// When the requestor goes down, after the run started.
const REQUESTOR_DOWN_AFTER: Duration = Duration::from_secs(10);

/// What the run did and saw, for the checks.
pub(crate) struct Ran {
    pub(crate) campaign_view: Value,
    /// From the deploy to the campaign COMPLETED, and to everything settled.
    pub(crate) campaign: Duration,
    pub(crate) settled: Duration,
    pub(crate) kills: Vec<Kill>,
    /// Nodes found exited at the end though not killed by the run.
    pub(crate) exited: Vec<String>,
    pub(crate) updates: UpdatesSent,
    pub(crate) digitized: Digitized,
    pub(crate) devices: DevicesSeen,
    pub(crate) deliveries: Deliveries,
    pub(crate) call_samples: Vec<(Instant, u64)>,
    pub(crate) requestor_down: Option<(Duration, Duration)>,
}

pub(crate) async fn run(
    args: &ChaosArgs,
    world: &World,
    nodes: &mut Cluster,
    devices: Arc<LightDevices>,
    recovered: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<Ran> {
    let start = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (stop_deliveries, stopped) = tokio::sync::oneshot::channel();
    let collector = collect_deliveries(&world.requestor, stopped);
    let (stop_samples, stopped) = tokio::sync::oneshot::channel();
    let sampler = tokio::spawn(sample_calls(world.tsp.clone(), stopped));
    world.tsp.set_misbehaviour(flaky_tsp(args));
    let seen: SharedDevices = Arc::new(Mutex::new(DevicesSeen::default()));
    let driver = tokio::spawn(drive_devices(
        seen.clone(),
        recovered,
        devices.clone(),
        world.derived.clone(),
        args.device_concurrency,
    ));
    let campaign_url = deploy(&http, world, args).await?;
    let (updates, digitized) = traffic(args, world, devices, &seen);
    let down = requestor_down(world, args, start);
    let kills = killer(
        nodes,
        args.kills,
        (args.kill_min_secs, args.kill_max_secs),
        start,
    );
    let followed = follow(&http, world, &campaign_url, args, start);
    let (down, kills, view) = tokio::join!(down, kills, followed);
    let (kills, view) = (kills?, view?);
    let campaign = start.elapsed();
    let state = view["state"].as_str().unwrap_or("?");
    ensure!(state == "COMPLETED", "the campaign ended {state}: {view}");
    let updates = updates.await.context("the updates' task")?;
    let digitized = digitized.await.context("the digitizations' task")?;
    settle(world, args, start).await?;
    let settled = start.elapsed();
    let exited = nodes.exited();
    let _ = stop_samples.send(());
    let _ = stop_deliveries.send(());
    driver.abort();
    let _ = driver.await;
    let devices = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Ran {
        campaign_view: view,
        campaign,
        settled,
        kills,
        exited,
        updates,
        digitized,
        devices,
        deliveries: collector.await.context("the deliveries' collector")?,
        call_samples: sampler.await.context("the calls' sampler")?,
        requestor_down: down,
    })
}

/// The TSP's updates and the wallets' digitizations, under way in tasks of their own.
fn traffic(
    args: &ChaosArgs,
    world: &World,
    devices: Arc<LightDevices>,
    seen: &SharedDevices,
) -> (JoinHandle<UpdatesSent>, JoinHandle<Digitized>) {
    let token_ids: Vec<String> = (0..args.tokens)
        .map(|i| world.derived.token_id(i))
        .collect();
    let updates = tokio::spawn(post_updates(
        world.front_url.clone(),
        token_ids,
        args.updates,
        args.update_rate,
    ));
    let digitized = tokio::spawn(digitize(
        world.front_url.clone(),
        world.wallet_key.clone(),
        devices,
        seen.clone(),
        (args.tokens, args.digitizations),
        Duration::from_millis(args.digitize_every_ms.max(1)),
    ));
    (updates, digitized)
}

/// Deploys v2 with a campaign over every token (before any node is killed: a deploy is not
/// repeated blindly); the campaign's admin URL through the front.
async fn deploy(http: &reqwest::Client, world: &World, args: &ChaosArgs) -> anyhow::Result<String> {
    let r = http
        .post(format!(
            "{}/admin/v1/issuers/{ISSUER_ID}/products/{PRODUCT_ID}/profiles/v2/deploy",
            world.front_url
        ))
        .bearer_auth(&world.admin_key)
        .json(&json!({"campaign": {"ratePerSecond": 100_000,
                                    "maxInFlight": args.max_in_flight}}))
        .send()
        .await
        .context("deploying v2 with a campaign")?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(status.is_success(), "deploy: HTTP {status}: {text}");
    let answer: Value = serde_json::from_str(&text)?;
    ensure!(
        answer["total"].as_u64() == Some(args.tokens as u64),
        "the campaign covers {} token(s), not {}",
        answer["total"],
        args.tokens
    );
    let id = answer["campaignId"]
        .as_str()
        .context("the deploy's answer has no campaignId")?;
    println!("campaign {id} deployed over {} token(s)", args.tokens);
    Ok(format!("{}/admin/v1/campaigns/{id}", world.front_url))
}

/// Takes the requestor down for `--requestor-down-secs` once the run is under way (no connection
/// taken, `503` on those open); when and for how long it was down.
async fn requestor_down(
    world: &World,
    args: &ChaosArgs,
    start: Instant,
) -> Option<(Duration, Duration)> {
    if args.requestor_down_secs == 0 {
        return None;
    }
    tokio::time::sleep(REQUESTOR_DOWN_AFTER).await;
    let at = start.elapsed();
    let down_for = Duration::from_secs(args.requestor_down_secs);
    // Its listener closed (no new connection) and a 503 on the connections the hub keeps open,
    // which closing the listener leaves alone while they are busy.
    world.requestor.fail_next(u32::MAX, None);
    world.requestor.go_down(down_for).await.ok()?;
    println!(
        "  {:>6.1} s  requestor down for {} s",
        at.as_secs_f64(),
        args.requestor_down_secs
    );
    tokio::time::sleep(down_for).await;
    world.requestor.fail_next(0, None);
    Some((at, down_for))
}

/// Follows the campaign (through the front; a call lost with its node is made again) until it
/// is no longer RUNNING; its last view.
async fn follow(
    http: &reqwest::Client,
    world: &World,
    url: &str,
    args: &ChaosArgs,
    start: Instant,
) -> anyhow::Result<Value> {
    let until = deadline(args, start);
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if Instant::now() > until {
            bail!(
                "the campaign did not end within {} minute(s)",
                args.timeout_minutes
            );
        }
        let Ok(v) = crate::bootstrap::get_json(http, url, &world.admin_key).await else {
            continue;
        };
        if v["state"].as_str() != Some("RUNNING") {
            return Ok(v);
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            let tsp = world.tsp.status();
            println!(
                "  {:>6.1} s  campaign done {:>6}  failed {}  in progress {:>4}  ATC resets {:>6}  \
                 TSP refused on purpose {:>6}",
                start.elapsed().as_secs_f64(),
                v["done"],
                v["failed"],
                v["inProgress"],
                tsp.atc_resets,
                tsp.refused_on_purpose
            );
        }
    }
}

/// Waits until the TSP reset every token's ATC and no token update is pending at the hub.
async fn settle(world: &World, args: &ChaosArgs, start: Instant) -> anyhow::Result<()> {
    let until = deadline(args, start);
    let pool = sqlx::PgPool::connect(&world.database_url).await?;
    loop {
        let resets = world.tsp.status().atc_resets as usize;
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM notifications WHERE state = 'PENDING'")
                .fetch_one(&pool)
                .await?;
        if resets >= args.tokens && pending == 0 {
            pool.close().await;
            return Ok(());
        }
        if Instant::now() > until {
            bail!("not settled in time: {resets} ATC reset(s), {pending} update(s) pending");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
