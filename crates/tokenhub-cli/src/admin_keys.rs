//! `tokenhub admin-keys`: on the store directly by default (like `keys import`), so the first keys
//! need no running hub and no bootstrap token, audited as done by `cli`; with `--api`, through a
//! running hub's admin API (an `admin` key or the bootstrap token), audited as the caller.

use crate::api::{Admin, HubArgs};
use crate::exit::CliError;
use crate::output::{Field, Output};
use anyhow::Context;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokenhub::clock::iso8601;
use tokenhub::config::{Config, ServeArgs, StoreArgs};
use tokenhub::domain::admin::{AdminKey, Role};
use tokenhub::flows::admin_keys;

#[derive(clap::Subcommand)]
pub enum AdminKeysCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        /// read-only, issuer-admin, key-custodian or admin.
        #[arg(long)]
        role: String,
        /// An issuer an issuer-admin acts for (repeat it for several).
        #[arg(long = "issuer")]
        issuers: Vec<String>,
        /// Whose key it is.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        via: Via,
    },
    /// Every key (never a secret), revoked ones too.
    List {
        #[command(flatten)]
        via: Via,
    },
    /// Revoke a key: refused from the next request on.
    Revoke {
        key_id: String,
        #[command(flatten)]
        via: Via,
    },
}

/// On the store, or through the hub.
#[derive(clap::Args)]
pub struct Via {
    /// Through the running hub's admin API (--hub-url, --admin-key: an admin key or the
    /// bootstrap token) instead of on the store.
    #[arg(long)]
    api: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub const FIELDS: &[Field] = &[
    ("keyId", "/keyId"),
    ("role", "/role"),
    ("issuers", "/issuers"),
    ("label", "/label"),
    ("createdBy", "/createdBy"),
    ("createdAt", "/createdAt"),
    ("revokedAt", "/revokedAt"),
];

/// Opens the store the hub would (`--database-url`, `--config`, the environment).
pub async fn open(store: StoreArgs) -> anyhow::Result<tokenhub::Store> {
    let config = Config::load(&ServeArgs {
        store,
        ..ServeArgs::default()
    })?;
    tokenhub::Store::connect(&config.database_url)
        .await
        .context("opening the store")
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A key as the admin API shows it, so both ways print the same JSON.
fn view(k: &AdminKey) -> Value {
    let mut v = json!({
        "keyId": k.key_id,
        "role": k.role.to_string(),
        "issuers": k.issuers,
        "label": k.label,
        "createdAt": iso8601(k.created_ms),
        "createdBy": k.created_by,
    });
    if let Some(ms) = k.revoked_ms {
        v["revokedAt"] = json!(iso8601(ms));
    }
    v
}

pub async fn run(cmd: AdminKeysCommand, hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let api = match &cmd {
        AdminKeysCommand::Create { via, .. }
        | AdminKeysCommand::List { via }
        | AdminKeysCommand::Revoke { via, .. } => via.api,
    };
    if api {
        return over_api(cmd, &Admin::new(hub)?, out).await;
    }
    let correlation_id = uuid::Uuid::new_v4().to_string();
    match cmd {
        AdminKeysCommand::Create {
            role,
            issuers,
            label,
            via,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                CliError::Usage(format!(
                    "{role}: the role is read-only, issuer-admin, key-custodian or admin"
                ))
            })?;
            let store = open(via.store).await?;
            let new = admin_keys::NewKey {
                role,
                issuers,
                label,
            };
            let created = admin_keys::create(&store, new, "cli", &correlation_id, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))?;
            let mut v = view(&created.key);
            v["apiKey"] = json!(created.presented.expose_secret());
            out.new_key(&v.to_string(), "admin key")
        }
        AdminKeysCommand::List { via } => {
            let store = open(via.store).await?;
            let keys = admin_keys::list(&store)
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))?;
            let all: Vec<Value> = keys.iter().map(view).collect();
            out.list(&Value::Array(all).to_string(), "", FIELDS)
        }
        AdminKeysCommand::Revoke { key_id, via } => {
            let store = open(via.store).await?;
            let revoked = admin_keys::revoke(&store, &key_id, "cli", &correlation_id, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))?;
            if !revoked {
                return Err(CliError::NotFound(format!("no live admin key {key_id}")).into());
            }
            out.done("", &format!("admin key {key_id} revoked"));
            Ok(())
        }
    }
}

async fn over_api(cmd: AdminKeysCommand, admin: &Admin, out: Output) -> anyhow::Result<()> {
    match cmd {
        AdminKeysCommand::Create {
            role,
            issuers,
            label,
            ..
        } => {
            let body = json!({"role": role, "issuers": issuers, "label": label});
            let a = admin.post(admin.url(&["admin-keys"]), Some(&body)).await?;
            out.new_key(&a.text, "admin key")
        }
        AdminKeysCommand::List { .. } => {
            let a = admin.get(admin.url(&["admin-keys"])).await?;
            out.list(&a.text, "", FIELDS)
        }
        AdminKeysCommand::Revoke { key_id, .. } => {
            let a = admin.delete(admin.url(&["admin-keys", &key_id])).await?;
            out.done(&a.text, &format!("admin key {key_id} revoked"));
            Ok(())
        }
    }
}

/// Creates an admin-role key through the admin API with the bootstrap token (the path an
/// operator takes for the first key of a running hub); returns the key.
pub async fn create_over_api(
    http: &reqwest::Client,
    hub_url: &str,
    bootstrap: &str,
    label: &str,
) -> anyhow::Result<String> {
    let r = http
        .post(format!("{hub_url}/admin/v1/admin-keys"))
        .bearer_auth(bootstrap)
        .json(&json!({"role": "admin", "label": label}))
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    anyhow::ensure!(status.is_success(), "HTTP {status}: {text}");
    let v: Value = serde_json::from_str(&text)?;
    v["apiKey"]
        .as_str()
        .map(str::to_string)
        .context("the answer has no apiKey")
}
