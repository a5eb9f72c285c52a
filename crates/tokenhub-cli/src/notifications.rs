//! `tokenhub notifications` (also `deliveries`): token updates to token requestors, through the
//! admin API — list them per requestor or per token, show one with its attempts, replay dead
//! letters, enable an endpoint that answered 410.

use crate::campaign::{get, HubArgs};
use anyhow::{ensure, Context};
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum NotificationsCommand {
    /// List token updates, newest first: a requestor's (`--requestor`) or a token's (`--token`).
    List {
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        requestor: Option<String>,
        #[arg(long)]
        token: Option<String>,
        /// PENDING, DELIVERED, DEAD (the dead-letter list) or SUPERSEDED.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// One token update: its body and every attempt.
    Show {
        notification_id: i64,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Replay a dead update (`--all --requestor R`: every dead update of the requestor).
    Replay {
        #[arg(required_unless_present = "all")]
        notification_id: Option<i64>,
        #[arg(long, requires = "requestor")]
        all: bool,
        #[arg(long)]
        requestor: Option<String>,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Enable a requestor's endpoint again (after it answered 410 Gone).
    Enable {
        requestor: String,
        #[command(flatten)]
        hub: HubArgs,
    },
}

pub async fn run(cmd: NotificationsCommand) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    match cmd {
        NotificationsCommand::List {
            requestor,
            token,
            state,
            limit,
            hub,
        } => list(&http, requestor, token, state, limit, &hub).await,
        NotificationsCommand::Show {
            notification_id,
            hub,
        } => {
            let url = format!("{}/admin/v1/notifications/{notification_id}", hub.hub_url);
            let v = get(&http, &url, &hub.admin_key).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        NotificationsCommand::Replay {
            notification_id,
            all,
            requestor,
            hub,
        } => {
            let url = match (all, notification_id, requestor) {
                (true, _, Some(r)) => format!(
                    "{}/admin/v1/token-requestors/{r}/dead-letters/replay",
                    hub.hub_url
                ),
                (_, Some(id), _) => format!("{}/admin/v1/notifications/{id}/replay", hub.hub_url),
                _ => anyhow::bail!("give a notification id, or --all --requestor R"),
            };
            let text = post(&http, &url, &hub.admin_key).await?;
            println!("{}", if text.is_empty() { "replayed" } else { &text });
            Ok(())
        }
        NotificationsCommand::Enable { requestor, hub } => {
            let url = format!(
                "{}/admin/v1/token-requestors/{requestor}/enable",
                hub.hub_url
            );
            post(&http, &url, &hub.admin_key).await?;
            println!("token requestor {requestor}: endpoint enabled");
            Ok(())
        }
    }
}

/// A requestor's or a token's updates, newest first, as a table.
async fn list(
    http: &reqwest::Client,
    requestor: Option<String>,
    token: Option<String>,
    state: Option<String>,
    limit: u32,
    hub: &HubArgs,
) -> anyhow::Result<()> {
    let base = match (&requestor, &token) {
        (Some(r), _) => format!(
            "{}/admin/v1/token-requestors/{r}/notifications",
            hub.hub_url
        ),
        (None, Some(t)) => format!("{}/admin/v1/tokens/{t}/notifications", hub.hub_url),
        (None, None) => anyhow::bail!("give --requestor or --token"),
    };
    let mut url = reqwest::Url::parse(&base).context("the hub URL")?;
    url.query_pairs_mut()
        .append_pair("limit", &limit.to_string());
    if let Some(s) = &state {
        url.query_pairs_mut().append_pair("state", s);
    }
    let v = get(http, url.as_str(), &hub.admin_key).await?;
    let rows = v.as_array().cloned().unwrap_or_default();
    println!(
        "{:>8}  {:<10}  {:<24}  {:<25}  {:>8}  last",
        "id", "state", "token", "lastUpdateTimestamp", "attempts"
    );
    for r in &rows {
        println!(
            "{:>8}  {:<10}  {:<24}  {:<25}  {:>8}  {}",
            r["notificationId"],
            r["state"].as_str().unwrap_or(""),
            r["tokenId"].as_str().unwrap_or(""),
            r["lastUpdateTimestamp"].as_str().unwrap_or(""),
            r["attempts"],
            r["lastError"]
                .as_str()
                .map(str::to_string)
                .or_else(|| r["lastStatus"].as_i64().map(|s| format!("HTTP {s}")))
                .unwrap_or_default()
        );
    }
    println!("{} update(s)", rows.len());
    Ok(())
}

async fn post(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<String> {
    let r = http
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    ensure!(status.is_success(), "HTTP {status}: {text}");
    Ok(text)
}
