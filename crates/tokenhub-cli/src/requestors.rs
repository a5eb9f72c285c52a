//! `tokenhub requestors`: token requestors (`/admin/v1/token-requestors`): register or update one
//! (its API key and signing secrets are write-only), list them, read one with its updates by
//! state, enable its endpoint again, and its requestor-API keys (made, shown once; revoked).

use crate::api::{read_json, read_pem, Admin, HubArgs};
use crate::output::{Field, Output};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum RequestorsCommand {
    /// Register or update a token requestor: the body from --file (`-`: stdin; best, it holds
    /// secrets), or from the flags.
    Put {
        requestor_id: String,
        #[command(flatten)]
        body: RequestorFlags,
    },
    /// Token requestors by id, a page at a time, with their backlogs.
    List {
        #[command(flatten)]
        page: crate::api::Page,
    },
    /// A token requestor: its endpoint's state and its updates by state (never a secret).
    Get { requestor_id: String },
    /// Enable the requestor's endpoint again (after it answered 410 Gone).
    Enable { requestor_id: String },
    /// The requestor's keys for the requestor API (`trk_...`).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed once (the hub keeps only its hash).
    Create { requestor_id: String },
    /// Revoke a key: refused from now on.
    Revoke {
        requestor_id: String,
        key_id: String,
    },
    /// The requestor's keys: ids, made, revoked (never a key).
    List { requestor_id: String },
}

const KEYS: &[Field] = &[
    ("keyId", "/keyId"),
    ("createdMs", "/createdMs"),
    ("revokedMs", "/revokedMs"),
];

#[derive(clap::Args)]
pub struct RequestorFlags {
    /// The whole body (`RequestorBody` in /openapi.json), instead of the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["merchant_id", "base_url", "api_key", "signing_secrets", "max_in_flight", "server_ca"], required_unless_present_all = ["merchant_id", "base_url", "api_key", "signing_secrets"])]
    file: Option<PathBuf>,
    #[arg(long)]
    merchant_id: Option<String>,
    /// Updates are POSTed to `{baseUrl}/notify-token-update`.
    #[arg(long)]
    base_url: Option<String>,
    /// The key the hub sends the requestor (`authorization: APIKEY <key>`).
    #[arg(long, env = "TOKENHUB_REQUESTOR_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A signing secret (`whsec_...`); repeat it during a rotation.
    #[arg(long = "signing-secret", value_name = "SECRET")]
    signing_secrets: Vec<String>,
    /// Deliveries under way at once (the hub's default: 16).
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// The CAs (PEM file) the requestor's server certificate is issued from.
    #[arg(long, value_name = "PEM_FILE")]
    server_ca: Option<PathBuf>,
}

impl RequestorFlags {
    fn body(&self) -> anyhow::Result<Value> {
        if let Some(f) = &self.file {
            return read_json(f);
        }
        let mut body = json!({
            "merchantId": self.merchant_id,
            "baseUrl": self.base_url,
            "apiKey": self.api_key,
            "signingSecrets": self.signing_secrets,
        });
        if let Some(n) = self.max_in_flight {
            body["maxInFlight"] = json!(n);
        }
        if let Some(pem) = &self.server_ca {
            body["serverCaPem"] = json!(read_pem(pem)?);
        }
        Ok(body)
    }
}

const REQUESTOR: &[Field] = &[
    ("requestorId", "/requestorId"),
    ("merchantId", "/merchantId"),
    ("baseUrl", "/baseUrl"),
    ("state", "/state"),
    ("disabledReason", "/disabledReason"),
    ("signingSecrets", "/signingSecrets"),
    ("maxInFlight", "/maxInFlight"),
    ("notifications.PENDING", "/notifications/PENDING"),
    ("notifications.DELIVERED", "/notifications/DELIVERED"),
    ("notifications.DEAD", "/notifications/DEAD"),
    ("notifications.SUPERSEDED", "/notifications/SUPERSEDED"),
];

const ROW: &[Field] = &[
    ("requestorId", "/requestorId"),
    ("merchantId", "/merchantId"),
    ("baseUrl", "/baseUrl"),
    ("state", "/state"),
    ("pending", "/pending"),
    ("oldestPendingAgeSeconds", "/oldestPendingAgeSeconds"),
    ("dead", "/dead"),
];

pub async fn run(cmd: RequestorsCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    match cmd {
        RequestorsCommand::Put { requestor_id, body } => {
            let body = body.body()?;
            let url = admin.url(&["token-requestors", &requestor_id]);
            let a = admin.put(url, &body).await?;
            out.object(&a.text, REQUESTOR)
        }
        RequestorsCommand::List { page } => {
            let a = admin.get(page.url(&admin, &["token-requestors"])).await?;
            out.page(&a.text, ROW)
        }
        RequestorsCommand::Get { requestor_id } => {
            let a = admin
                .get(admin.url(&["token-requestors", &requestor_id]))
                .await?;
            out.object(&a.text, REQUESTOR)
        }
        RequestorsCommand::Enable { requestor_id } => enable(&admin, out, &requestor_id).await,
        RequestorsCommand::Keys(KeysCommand::List { requestor_id }) => {
            let url = admin.url(&["token-requestors", &requestor_id, "api-keys"]);
            let a = admin.get(url).await?;
            out.list(&a.text, "", KEYS)
        }
        RequestorsCommand::Keys(KeysCommand::Create { requestor_id }) => {
            let url = admin.url(&["token-requestors", &requestor_id, "api-keys"]);
            let a = admin.post(url, None).await?;
            out.new_key(&a.text, "requestor API key")
        }
        RequestorsCommand::Keys(KeysCommand::Revoke {
            requestor_id,
            key_id,
        }) => {
            let url = admin.url(&["token-requestors", &requestor_id, "api-keys", &key_id]);
            let a = admin.delete(url).await?;
            out.done(
                &a.text,
                &format!("token requestor {requestor_id}: API key {key_id} revoked"),
            );
            Ok(())
        }
    }
}

/// Enables a requestor's endpoint again (also `tokenhub notifications enable`).
pub async fn enable(admin: &Admin, out: Output, requestor_id: &str) -> anyhow::Result<()> {
    let url = admin.url(&["token-requestors", requestor_id, "enable"]);
    let a = admin.post(url, None).await?;
    out.done(
        &a.text,
        &format!("token requestor {requestor_id}: endpoint enabled"),
    );
    Ok(())
}
