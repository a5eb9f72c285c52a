//! `tokenhub campaigns` (also `campaign`): an operator's view of re-personalization campaigns,
//! through the admin API: the list, progress (live with --watch), pause, resume, cancel, the
//! report.

use crate::api::{Admin, HubArgs};
use crate::output::{Field, Output};
use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum CampaignCommand {
    /// A campaign's progress; with --watch, a live progress bar until it ends.
    #[command(alias = "get")]
    Status {
        campaign_id: String,
        #[arg(long)]
        watch: bool,
    },
    /// Campaigns, newest first, a page at a time.
    List {
        #[command(flatten)]
        page: crate::api::Page,
    },
    /// Pause a running campaign (tokens under way finish).
    Pause { campaign_id: String },
    /// Resume a paused campaign.
    Resume { campaign_id: String },
    /// Cancel a campaign (tokens under way finish; queued ones stay on their version).
    Cancel { campaign_id: String },
    /// The tokens the campaign failed or skipped, with the reason; `--format csv` prints the
    /// hub's CSV as it is.
    Report {
        campaign_id: String,
        #[arg(long, value_parser = ["json", "csv"])]
        format: Option<String>,
    },
}

const CAMPAIGN: &[Field] = &[
    ("campaignId", "/campaignId"),
    ("state", "/state"),
    ("stateReason", "/stateReason"),
    ("issuerId", "/issuerId"),
    ("productId", "/productId"),
    ("profileVersion", "/profileVersion"),
    ("total", "/total"),
    ("done", "/done"),
    ("failed", "/failed"),
    ("inProgress", "/inProgress"),
    ("steps", "/steps"),
    ("ratePerSecond", "/ratePerSecond"),
    ("maxInFlight", "/maxInFlight"),
    ("canarySize", "/canarySize"),
    ("startedAt", "/startedAt"),
    ("finishedAt", "/finishedAt"),
    ("estimatedEnd", "/estimatedEnd"),
];

const ROW: &[Field] = &[
    ("campaignId", "/campaignId"),
    ("state", "/state"),
    ("issuerId", "/issuerId"),
    ("productId", "/productId"),
    ("profileVersion", "/profileVersion"),
    ("total", "/total"),
    ("done", "/steps/DONE"),
    ("failed", "/steps/FAILED"),
    ("startedAt", "/startedAt"),
    ("finishedAt", "/finishedAt"),
];

const REPORT: &[Field] = &[
    ("tokenId", "/tokenId"),
    ("step", "/step"),
    ("reason", "/reason"),
];

pub async fn run(cmd: CampaignCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    match cmd {
        CampaignCommand::Status { campaign_id, watch } => {
            if watch {
                return self::watch(&admin, &campaign_id).await;
            }
            let a = admin.get(admin.url(&["campaigns", &campaign_id])).await?;
            out.object(&a.text, CAMPAIGN)
        }
        CampaignCommand::List { page } => {
            let a = admin.get(page.url(&admin, &["campaigns"])).await?;
            out.page(&a.text, ROW)
        }
        CampaignCommand::Pause { campaign_id } => command(&admin, out, &campaign_id, "pause").await,
        CampaignCommand::Resume { campaign_id } => {
            command(&admin, out, &campaign_id, "resume").await
        }
        CampaignCommand::Cancel { campaign_id } => {
            command(&admin, out, &campaign_id, "cancel").await
        }
        CampaignCommand::Report {
            campaign_id,
            format,
        } => {
            let url = admin.url_with(
                &["campaigns", &campaign_id, "report"],
                &[("format", format.clone())],
            );
            let a = admin.get(url).await?;
            if format.as_deref() == Some("csv") {
                print!("{}", a.text);
                return Ok(());
            }
            out.list(&a.text, "", REPORT)
        }
    }
}

async fn command(admin: &Admin, out: Output, id: &str, action: &str) -> anyhow::Result<()> {
    let a = admin
        .post(admin.url(&["campaigns", id, action]), None)
        .await?;
    out.done(&a.text, &format!("campaign {id}: {action} done"));
    Ok(())
}

/// Follows a campaign with a progress bar until it ends.
pub async fn watch(admin: &Admin, id: &str) -> anyhow::Result<()> {
    let url = admin.url(&["campaigns", id]);
    follow(|| async { admin.get(url.clone()).await?.json() }).await
}

/// [`watch`] with a plain client (the demo's).
pub async fn watch_campaign(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    follow(|| get(http, url, token)).await
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let r = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(status.is_success(), "HTTP {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// A live progress bar: settled tokens over the total, the state, the estimated end.
async fn follow<F, Fut>(mut fetch: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    let first = fetch().await?;
    let bar = ProgressBar::new(first["total"].as_u64().unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut v = first;
    loop {
        let steps = &v["steps"];
        let settled = ["DONE", "FAILED", "SKIPPED", "CANCELLED"]
            .iter()
            .map(|s| steps[*s].as_u64().unwrap_or(0))
            .sum::<u64>();
        bar.set_position(settled);
        let state = v["state"].as_str().unwrap_or("?").to_string();
        bar.set_message(state.clone());
        if state != "RUNNING" {
            bar.finish();
            println!(
                "{state}: done {}, failed {}, skipped {}{}",
                steps["DONE"],
                steps["FAILED"],
                steps["SKIPPED"],
                v["stateReason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        v = fetch().await?;
    }
}
