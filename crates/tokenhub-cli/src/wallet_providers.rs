//! `tokenhub wallet-providers`: the callers of the wallet API (`/admin/v1/wallet-providers`):
//! register or update one, read it with its keys' ids, list them, make a key (shown once), revoke
//! one.

use crate::api::{read_json, Admin, HubArgs, Page};
use crate::output::{Field, Output};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum WalletProvidersCommand {
    /// Register or update a wallet provider.
    Put {
        provider_id: String,
        /// The whole body (`ProviderBody` in /openapi.json), instead of the flags.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "client_cert_spki_sha256"], required_unless_present = "name")]
        file: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        /// The SHA-256 pin (hex) of the public key of a client certificate the provider may
        /// present instead of an API key.
        #[arg(long, value_name = "PIN")]
        client_cert_spki_sha256: Option<String>,
    },
    /// A wallet provider and its API keys' ids (never a key).
    Get { provider_id: String },
    /// Wallet providers by id, a page at a time.
    List {
        #[command(flatten)]
        page: Page,
    },
    /// The provider's keys for the wallet API (`twk_...`).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed once (the hub keeps only its hash). The provider's other keys
    /// stay valid until revoked, so a key rotates without a gap.
    Create { provider_id: String },
    /// Revoke a key: refused from now on.
    Revoke { provider_id: String, key_id: String },
    /// The provider's keys: ids, made, revoked.
    List { provider_id: String },
}

const PROVIDER: &[Field] = &[
    ("providerId", "/providerId"),
    ("name", "/name"),
    ("clientCertSpkiSha256", "/clientCertSpkiSha256"),
];

const KEYS: &[Field] = &[
    ("keyId", "/keyId"),
    ("createdMs", "/createdMs"),
    ("revokedMs", "/revokedMs"),
];

pub async fn run(cmd: WalletProvidersCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    match cmd {
        WalletProvidersCommand::Put {
            provider_id,
            file,
            name,
            client_cert_spki_sha256,
        } => {
            let body = match file {
                Some(f) => read_json(&f)?,
                None => {
                    let mut b = json!({"name": name});
                    if let Some(pin) = client_cert_spki_sha256 {
                        b["clientCertSpkiSha256"] = json!(pin);
                    }
                    b
                }
            };
            let url = admin.url(&["wallet-providers", &provider_id]);
            let a = admin.put(url, &body).await?;
            show(out, &a.text)
        }
        WalletProvidersCommand::Get { provider_id } => {
            let a = admin
                .get(admin.url(&["wallet-providers", &provider_id]))
                .await?;
            show(out, &a.text)
        }
        WalletProvidersCommand::List { page } => {
            let a = admin.get(page.url(&admin, &["wallet-providers"])).await?;
            out.page(&a.text, PROVIDER)
        }
        WalletProvidersCommand::Keys(KeysCommand::List { provider_id }) => {
            let a = admin
                .get(admin.url(&["wallet-providers", &provider_id]))
                .await?;
            out.list(&a.text, "/apiKeys", KEYS)
        }
        WalletProvidersCommand::Keys(KeysCommand::Create { provider_id }) => {
            let url = admin.url(&["wallet-providers", &provider_id, "api-keys"]);
            let a = admin.post(url, None).await?;
            out.new_key(&a.text, "wallet API key")
        }
        WalletProvidersCommand::Keys(KeysCommand::Revoke {
            provider_id,
            key_id,
        }) => {
            let url = admin.url(&["wallet-providers", &provider_id, "api-keys", &key_id]);
            let a = admin.delete(url).await?;
            out.done(
                &a.text,
                &format!("wallet provider {provider_id}: API key {key_id} revoked"),
            );
            Ok(())
        }
    }
}

/// A provider, then (in a table) its keys.
fn show(out: Output, json: &str) -> anyhow::Result<()> {
    out.object(json, PROVIDER)?;
    if out == Output::Table {
        out.list(json, "/apiKeys", KEYS)?;
    }
    Ok(())
}
