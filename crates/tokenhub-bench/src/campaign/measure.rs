//! The campaign, measured: deployed with v2, followed to its end, while the devices of the
//! tokens whose data the TSP recovered are visited.

use super::process::{machine_busy_ticks, mb, ProcStats};
use super::seed::device_id;
use super::{CampaignArgs, ISSUER_ID, PRODUCT_ID, TRANSIT_DGI};
use crate::bootstrap::HubProcess;
use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenhub_sim::device::light::{LightDevices, OpenedProfile};
use tokenhub_sim::{DerivedTokens, TspSimHandle};

/// The state of things when a tenth of the tokens was confirmed (and at the start).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    pub(crate) at: Instant,
    pub(crate) confirmed: usize,
    pub(crate) hub: ProcStats,
    /// TSP calls admitted and refused (503) by then.
    pub(crate) tsp_calls: (u64, u64),
}

/// What the device driver shares with the bench.
#[derive(Default)]
pub(crate) struct Driven {
    pub(crate) confirmed: AtomicUsize,
    pub(crate) opened: AtomicUsize,
    pub(crate) refused: Mutex<Vec<(String, String)>>,
    pub(crate) errors: Mutex<Vec<String>>,
    pub(crate) marks: Mutex<Vec<Mark>>,
}

pub(crate) struct Measured {
    pub(crate) tokens: usize,
    pub(crate) deploy: Duration,
    /// From the deploy sent to the campaign seen COMPLETED, and to the last ATC reset.
    pub(crate) campaign: Duration,
    pub(crate) end_to_end: Duration,
    pub(crate) campaign_view: Value,
    pub(crate) marks: Vec<Mark>,
    pub(crate) start: Mark,
    pub(crate) end: Mark,
    pub(crate) opened: usize,
    pub(crate) refused: Vec<(String, String)>,
    pub(crate) errors: Vec<String>,
    pub(crate) bench: (ProcStats, ProcStats),
    pub(crate) machine_busy: (u64, u64),
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn measure(
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
    let driven = Arc::new(Driven::default());
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
    let (campaign_id, deploy) = deploy(&http, hub_url, admin_token, args, start.at).await?;
    let url = format!("{hub_url}/admin/v1/campaigns/{campaign_id}");
    let view = follow(&http, &url, admin_token, args, pid, start.at).await?;
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

/// Deploys v2 with a campaign over every ACTIVE token; its id and how long the deploy took.
async fn deploy(
    http: &reqwest::Client,
    hub_url: &str,
    admin_token: &str,
    args: &CampaignArgs,
    start: Instant,
) -> anyhow::Result<(String, Duration)> {
    let n = args.tokens;
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
    let deploy = start.elapsed();
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
    Ok((campaign_id, deploy))
}

/// Follows the campaign until it is no longer RUNNING (a line every 10 s); its last view.
async fn follow(
    http: &reqwest::Client,
    url: &str,
    admin_token: &str,
    args: &CampaignArgs,
    pid: u32,
    start: Instant,
) -> anyhow::Result<Value> {
    let until = start + Duration::from_secs(args.timeout_minutes * 60);
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v = crate::bootstrap::get_json(http, url, admin_token).await?;
        let state = v["state"].as_str().unwrap_or("?").to_string();
        if state != "RUNNING" {
            return Ok(v);
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            let p = ProcStats::read(pid);
            println!(
                "  {:>6.0} s  done {:>8}  failed {}  in progress {:>4}  hub RSS {:.0} MB",
                start.elapsed().as_secs_f64(),
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
    }
}

/// Visits the device of every token whose data the TSP recovered, `concurrency` at a time;
/// records a [`Mark`] each time another tenth of the tokens is confirmed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive(
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

pub(crate) type SharedCheck = Arc<dyn Fn(&OpenedProfile) -> Result<(), String> + Send + Sync>;

/// What a sampled device checks in its new profile: the version, the transit record v2 adds,
/// and the data the TSP holds for the token (card master key, PSN, PAR).
pub(crate) fn check_profile(derived: &DerivedTokens, p: &OpenedProfile) -> Result<(), String> {
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
