//! `tokenhub tokens`: an issuer's tokens a page at a time; one token as the admin API shows it
//! (never a value), its history, and the issuer's lifecycle actions (suspend, resume, delete),
//! which the hub sends to the TSP and tells the token's requestor.

use crate::api::{Admin, HubArgs, Page};
use crate::output::{Field, Output};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// An issuer's tokens by card (walletCardRefId) then token id, a page at a time.
    List {
        #[arg(long)]
        issuer: String,
        #[command(flatten)]
        page: Page,
    },
    /// A token: its state, product and profile version, the elements held (names only), its
    /// latest personalization.
    Get { token_id: String },
    /// A token's history, oldest first (with --output json: the `history` array of the token).
    History { token_id: String },
    /// A token's personalizations, newest first.
    Personalizations { token_id: String },
    /// Suspend a token (the issuer blocked the card).
    Suspend {
        token_id: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Resume a SUSPENDED token.
    Resume {
        token_id: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Delete a token (card destroyed, account closed). Final.
    Delete {
        token_id: String,
        #[command(flatten)]
        reason: Reason,
    },
}

#[derive(clap::Args)]
pub struct Reason {
    /// Why (sent to the TSP, at most 64 characters).
    #[arg(long)]
    reason: Option<String>,
}

const TOKEN: &[Field] = &[
    ("tokenId", "/tokenId"),
    ("state", "/state"),
    ("issuerId", "/issuerId"),
    ("productId", "/productId"),
    ("profileVersion", "/profileVersion"),
    ("deviceId", "/deviceId"),
    ("walletCardRefId", "/walletCardRefId"),
    ("tokenRequestorId", "/tokenRequestorId"),
    ("tokenInfo.exp", "/tokenInfo/exp"),
    ("tokenInfo.last4", "/tokenInfo/last4"),
    ("elementsHeld", "/elementsHeld"),
    ("elementsFingerprinted", "/elementsFingerprinted"),
    ("failureReason", "/failureReason"),
    ("personalization.kind", "/personalizations/0/kind"),
    ("personalization.state", "/personalizations/0/state"),
    (
        "personalization.version",
        "/personalizations/0/profileVersion",
    ),
    ("dataDeadline", "/dataDeadline"),
    ("createdAt", "/createdAt"),
    ("updatedAt", "/updatedAt"),
];

const SUMMARY: &[Field] = &[
    ("tokenId", "/tokenId"),
    ("state", "/state"),
    ("productId", "/productId"),
    ("profileVersion", "/profileVersion"),
    ("walletCardRefId", "/walletCardRefId"),
    ("tokenRequestorId", "/tokenRequestorId"),
    ("createdAt", "/createdAt"),
];

const HISTORY: &[Field] = &[
    ("at", "/at"),
    ("event", "/event"),
    ("correlationId", "/correlationId"),
];

const PERSONALIZATIONS: &[Field] = &[
    ("personalizationId", "/personalizationId"),
    ("profileVersion", "/profileVersion"),
    ("kind", "/kind"),
    ("state", "/state"),
    ("tries", "/tries"),
    ("reason", "/reason"),
    ("createdAt", "/createdAt"),
];

const STATE: &[Field] = &[
    ("tokenId", "/tokenId"),
    ("state", "/state"),
    ("lastUpdateTimestamp", "/lastUpdateTimestamp"),
];

pub async fn run(cmd: TokensCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    let (token_id, action, reason) = match cmd {
        TokensCommand::List { issuer, page } => {
            let a = admin
                .get(page.url(&admin, &["issuers", &issuer, "tokens"]))
                .await?;
            return out.page(&a.text, SUMMARY);
        }
        TokensCommand::Get { token_id } => {
            let a = admin.get(admin.url(&["tokens", &token_id])).await?;
            return out.object(&a.text, TOKEN);
        }
        TokensCommand::History { token_id } => {
            let a = admin.get(admin.url(&["tokens", &token_id])).await?;
            return part(out, &a.text, "history", HISTORY);
        }
        TokensCommand::Personalizations { token_id } => {
            let a = admin.get(admin.url(&["tokens", &token_id])).await?;
            return part(out, &a.text, "personalizations", PERSONALIZATIONS);
        }
        TokensCommand::Suspend { token_id, reason } => (token_id, "suspend", reason),
        TokensCommand::Resume { token_id, reason } => (token_id, "resume", reason),
        TokensCommand::Delete { token_id, reason } => (token_id, "delete", reason),
    };
    let body = match reason.reason {
        Some(r) => json!({"reason": r}),
        None => json!({}),
    };
    let a = admin
        .post(admin.url(&["tokens", &token_id, action]), Some(&body))
        .await?;
    out.object(&a.text, STATE)
}

/// One array of the token's answer: its rows, or (JSON) the array itself.
fn part(out: Output, json: &str, name: &str, columns: &[Field]) -> anyhow::Result<()> {
    match out {
        Output::Table => out.list(json, &format!("/{name}"), columns),
        Output::Json => {
            let v: serde_json::Value = serde_json::from_str(json)?;
            println!("{}", serde_json::to_string_pretty(&v[name])?);
            Ok(())
        }
    }
}
