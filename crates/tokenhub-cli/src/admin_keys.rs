//! `tokenhub admin-keys` and `tokenhub audit`: run on the store directly (like `keys import`),
//! so the first keys need no running hub and no bootstrap token; audited as done by `cli`.

use anyhow::{ensure, Context};
use secrecy::ExposeSecret;
use tokenhub::config::{Config, ServeArgs, StoreArgs};
use tokenhub::domain::admin::Role;
use tokenhub::flows::{admin_keys, audit};

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
        store: StoreArgs,
    },
    /// Every key (never a secret), revoked ones too.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key: refused from the next request on.
    Revoke {
        key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Check every entry's link and hash; exits non-zero naming the first entry that breaks it.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
}

async fn open(store: StoreArgs) -> anyhow::Result<tokenhub::Store> {
    let config = Config::load(&ServeArgs {
        store,
        ..ServeArgs::default()
    })?;
    tokenhub::Store::connect(&config.database_url)
        .await
        .context("opening the store")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub async fn run(cmd: AdminKeysCommand) -> anyhow::Result<()> {
    let correlation_id = uuid::Uuid::new_v4().to_string();
    match cmd {
        AdminKeysCommand::Create {
            role,
            issuers,
            label,
            store,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("{role}: the role is read-only, issuer-admin, key-custodian or admin")
            })?;
            let store = open(store).await?;
            let new = admin_keys::NewKey {
                role,
                issuers,
                label,
            };
            let created = admin_keys::create(&store, new, "cli", &correlation_id, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))?;
            eprintln!(
                "admin key {} ({}) created; it is shown once, below:",
                created.key.key_id, created.key.role
            );
            println!("{}", created.presented.expose_secret());
            Ok(())
        }
        AdminKeysCommand::List { store } => {
            let store = open(store).await?;
            let keys = admin_keys::list(&store)
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))?;
            for k in keys {
                let state = match k.revoked_ms {
                    Some(_) => "revoked",
                    None => "live",
                };
                println!(
                    "{}  {:<13}  {:<7}  issuers [{}]  by {}  {}",
                    k.key_id,
                    k.role,
                    state,
                    k.issuers.join(","),
                    k.created_by,
                    k.label
                );
            }
            Ok(())
        }
        AdminKeysCommand::Revoke { key_id, store } => {
            let store = open(store).await?;
            let revoked = admin_keys::revoke(&store, &key_id, "cli", &correlation_id, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!(e.chain()))?;
            ensure!(revoked, "no live admin key {key_id}");
            println!("admin key {key_id} revoked");
            Ok(())
        }
    }
}

pub async fn audit(cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { store } = cmd;
    let store = open(store).await?;
    let verified = audit::verify(&store)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    match verified {
        Ok(v) => {
            println!(
                "audit log intact: {} entries, head {}",
                v.entries,
                hex::encode(&v.head_hash)
            );
            Ok(())
        }
        Err(b) => anyhow::bail!("audit log BROKEN at entry {}: {}", b.seq, b.why),
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
        .json(&serde_json::json!({"role": "admin", "label": label}))
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(status.is_success(), "HTTP {status}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["apiKey"]
        .as_str()
        .map(str::to_string)
        .context("the answer has no apiKey")
}
