//! `tokenhub campaign`: an operator's view of a re-personalization campaign, through the admin API.

use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum CampaignCommand {
    /// Show a campaign's progress; with --watch, a live progress bar until it ends.
    Status {
        campaign_id: String,
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Pause a running campaign.
    Pause {
        campaign_id: String,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Resume a paused campaign.
    Resume {
        campaign_id: String,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Cancel a campaign (tokens under way finish; queued ones stay on their version).
    Cancel {
        campaign_id: String,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// The tokens the campaign failed or skipped, with the reason (JSON or CSV).
    Report {
        campaign_id: String,
        #[arg(long, default_value = "json")]
        format: String,
        #[command(flatten)]
        hub: HubArgs,
    },
}

#[derive(clap::Args)]
pub struct HubArgs {
    /// The hub's base URL.
    #[arg(long, env = "TOKENHUB_URL", default_value = "http://127.0.0.1:8080")]
    pub hub_url: String,
    /// An admin key (`thk_...`, from `tokenhub admin-keys create`). Prefer the environment: a
    /// key on the command line is visible to other local users.
    #[arg(long, env = "TOKENHUB_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: String,
}

pub async fn run(cmd: CampaignCommand) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    match cmd {
        CampaignCommand::Status {
            campaign_id,
            watch,
            hub,
        } => {
            let url = format!("{}/admin/v1/campaigns/{campaign_id}", hub.hub_url);
            if !watch {
                let v = get(&http, &url, &hub.admin_key).await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            watch_campaign(&http, &url, &hub.admin_key).await
        }
        CampaignCommand::Pause { campaign_id, hub } => {
            post(&http, &hub, &campaign_id, "pause").await
        }
        CampaignCommand::Resume { campaign_id, hub } => {
            post(&http, &hub, &campaign_id, "resume").await
        }
        CampaignCommand::Cancel { campaign_id, hub } => {
            post(&http, &hub, &campaign_id, "cancel").await
        }
        CampaignCommand::Report {
            campaign_id,
            format,
            hub,
        } => {
            let url = format!(
                "{}/admin/v1/campaigns/{campaign_id}/report?format={format}",
                hub.hub_url
            );
            let r = http.get(&url).bearer_auth(&hub.admin_key).send().await?;
            let status = r.status();
            let text = r.text().await?;
            ensure!(status.is_success(), "HTTP {status}: {text}");
            println!("{text}");
            Ok(())
        }
    }
}

pub async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
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

async fn post(http: &reqwest::Client, hub: &HubArgs, id: &str, action: &str) -> anyhow::Result<()> {
    let url = format!("{}/admin/v1/campaigns/{id}/{action}", hub.hub_url);
    let r = http.post(&url).bearer_auth(&hub.admin_key).send().await?;
    let status = r.status();
    ensure!(
        status.is_success(),
        "HTTP {status}: {}",
        r.text().await.unwrap_or_default()
    );
    println!("campaign {id}: {action} done");
    Ok(())
}

/// A live progress bar: settled tokens over the total, the state, the estimated end.
pub async fn watch_campaign(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let first = get(http, url, token).await?;
    let bar = ProgressBar::new(first["total"].as_u64().unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    loop {
        let v = get(http, url, token).await?;
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
    }
}
