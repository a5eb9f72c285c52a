//! One way to start a hub for a bench: in this process ([`in_process`]), or as a process of its
//! own ([`HubProcess`], this binary's hidden `serve`); and what every bench does to it through the
//! admin API or, where the API has no way, the store.

mod postgres;
mod process;
mod seed;

pub(crate) use postgres::{database_mb, FreshDatabase};
pub(crate) use process::{free_port, serve, HubProcess};
pub(crate) use seed::{create_tokens, ISSUER_ID, PRODUCT_ID, VERSION};

use anyhow::{ensure, Context};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokenhub::app::LocalHub;
use tokenhub::domain::notification::NotificationState;
use tokenhub::Config;
use tokenhub_crypto::KeySet;

/// The hub's admin and wallet APIs, as an operator's script would call them.
pub(crate) struct Admin {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Admin {
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<()> {
        self.send_json(method, path, body).await.map(|_| ())
    }

    /// [`Self::send`], and the answer's JSON (`Null` when empty).
    pub(crate) async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let resp = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        ensure!(
            status.is_success(),
            "{method} {path}: HTTP {status}: {text}"
        );
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// `bytes` random bytes, hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Imports a key set for `tsp_id` into the hub's store and loads it (as `tokenhub keys import`
/// would).
pub(crate) async fn import_key_set(
    hub: &tokenhub::Hub,
    tsp_id: &str,
    key_set: &KeySet,
) -> anyhow::Result<()> {
    tokenhub::flows::keys::import(
        &hub.store,
        &hub.keys,
        tsp_id,
        &key_set.keys,
        "cli",
        hub.now_ms(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.chain()))?;
    hub.reload_keys()
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))
}

/// An admin-role key made on the hub's store (as `tokenhub admin-keys create` makes one).
pub(crate) async fn admin_key(store: &tokenhub::Store) -> anyhow::Result<String> {
    let new = tokenhub::flows::admin_keys::NewKey {
        role: tokenhub::domain::admin::Role::Admin,
        issuers: Vec::new(),
        label: "bench".into(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let created = tokenhub::flows::admin_keys::create(store, new, "cli", "bench", now)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    Ok(secrecy::ExposeSecret::expose_secret(&created.presented).to_string())
}

/// A fresh hub's configuration on `database_url`: a loopback port of its own, a random admin
/// token and master key.
pub(crate) fn hub_config(database_url: &str) -> anyhow::Result<Config> {
    let mut config = Config::for_database(database_url);
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_token = Some(random_hex(16));
    config.master_key = Some(random_hex(32));
    // The simulators listen on http:// loopback.
    config.outbound.allow_plain_http = true;
    Ok(config)
}

/// The hub served in this process: its database migrated, its workers started.
pub(crate) async fn in_process(config: Config) -> anyhow::Result<LocalHub> {
    LocalHub::start(config).await.context("starting the hub")
}

/// The database a bench's hub uses: `url` if given, else a fresh SQLite file in `dir`; and the
/// backend's name for the report.
pub(crate) fn database(url: Option<&str>, dir: &std::path::Path) -> (String, &'static str) {
    let url = match url {
        Some(u) => u.to_string(),
        None => format!("sqlite://{}", dir.join("tokenhub.db").display()),
    };
    let backend = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    (url, backend)
}

/// Waits until no token update is pending at the hub.
pub(crate) async fn drain_notifications(
    hub: &tokenhub::Hub,
    timeout: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + timeout;
    loop {
        let counts = hub.store.notification_counts(None).await?;
        if !counts
            .iter()
            .any(|(s, n)| *s == NotificationState::Pending && *n > 0)
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < until,
            "token updates still pending after {timeout:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url` on the admin API, its JSON answer.
pub(crate) async fn get_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<Value> {
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
