//! `tokenhub notifications` (also `deliveries`): token updates to token requestors, through the
//! admin API: list them per requestor or per token (`--state DEAD`: the dead-letter list), show
//! one with its attempts, replay dead letters, enable an endpoint that answered 410.

use crate::api::{Admin, HubArgs};
use crate::output::{Field, Output};

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
        /// At most this many (the hub allows 1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One token update: its body and every attempt.
    Show { notification_id: i64 },
    /// Replay a dead update (`--all --requestor R`: every dead update of the requestor).
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        notification_id: Option<i64>,
        #[arg(long, requires = "requestor")]
        all: bool,
        #[arg(long)]
        requestor: Option<String>,
    },
    /// Enable a requestor's endpoint again (after it answered 410 Gone).
    Enable { requestor: String },
}

const ROW: &[Field] = &[
    ("id", "/notificationId"),
    ("state", "/state"),
    ("requestor", "/requestorId"),
    ("token", "/tokenId"),
    ("lastUpdateTimestamp", "/lastUpdateTimestamp"),
    ("attempts", "/attempts"),
    ("lastStatus", "/lastStatus"),
    ("lastError", "/lastError"),
];

const ONE: &[Field] = &[
    ("notificationId", "/notificationId"),
    ("webhookId", "/webhookId"),
    ("state", "/state"),
    ("requestorId", "/requestorId"),
    ("tokenId", "/tokenId"),
    ("correlationId", "/correlationId"),
    ("lastUpdateTimestamp", "/lastUpdateTimestamp"),
    ("attempts", "/attempts"),
    ("nextAttemptAt", "/nextAttemptAt"),
    ("lastStatus", "/lastStatus"),
    ("lastError", "/lastError"),
    ("createdAt", "/createdAt"),
    ("deliveredAt", "/deliveredAt"),
    ("body", "/body"),
];

const ATTEMPT: &[Field] = &[
    ("at", "/at"),
    ("durationMs", "/durationMs"),
    ("status", "/status"),
    ("error", "/error"),
];

pub async fn run(cmd: NotificationsCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    match cmd {
        NotificationsCommand::List {
            requestor,
            token,
            state,
            limit,
        } => {
            let path = match (&requestor, &token) {
                (Some(r), _) => ["token-requestors", r.as_str(), "notifications"],
                (None, Some(t)) => ["tokens", t.as_str(), "notifications"],
                (None, None) => anyhow::bail!("give --requestor or --token"),
            };
            let url = admin.url_with(
                &path,
                &[("state", state), ("limit", Some(limit.to_string()))],
            );
            let a = admin.get(url).await?;
            out.list(&a.text, "", ROW)
        }
        NotificationsCommand::Show { notification_id } => {
            let id = notification_id.to_string();
            let a = admin.get(admin.url(&["notifications", &id])).await?;
            out.object(&a.text, ONE)?;
            if out == Output::Table {
                out.list(&a.text, "/attemptLog", ATTEMPT)?;
            }
            Ok(())
        }
        NotificationsCommand::Replay {
            notification_id,
            all,
            requestor,
        } => {
            let a = match (all, notification_id, requestor) {
                (true, _, Some(r)) => {
                    let url = admin.url(&["token-requestors", &r, "dead-letters", "replay"]);
                    admin.post(url, None).await?
                }
                (false, Some(id), _) => {
                    let url = admin.url(&["notifications", &id.to_string(), "replay"]);
                    admin.post(url, None).await?
                }
                _ => anyhow::bail!("give a notification id, or --all --requestor R"),
            };
            let message = match a.json()?["replayed"].as_u64() {
                Some(n) => format!("{n} dead update(s) replayed"),
                None => "replayed".to_string(),
            };
            out.done(&a.text, &message);
            Ok(())
        }
        NotificationsCommand::Enable { requestor } => {
            crate::requestors::enable(&admin, out, &requestor).await
        }
    }
}
