//! Configuration: command-line flags, `TOKENHUB_*` environment variables and an optional TOML file,
//! in that order of precedence, over the defaults.

mod keystore;
mod listeners;
mod node;
mod retention;
mod tsp_health;

pub use keystore::{KeystoreArgs, KeystoreSettings};
pub use listeners::{ListenArgs, ListenerConfig, ListenerSecurity, Listeners, ServerLimits};
pub use node::{NodeArgs, NodeSettings};
pub use retention::{RetentionArgs, RetentionSettings};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use tsp_health::{TspHealthArgs, TspHealthSettings};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/tokenhub.db";
pub const DEFAULT_PERSO_TTL_SECS: u64 = 900;
pub const DEFAULT_WALLET_MAX_LONG_POLLS: usize = 1000;

/// Flags and environment variables shared by every command that opens the store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// `sqlite://PATH` (the embedded default) or `postgres://...`.
    #[arg(long, env = "TOKENHUB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A TOML file with any of: listen, database_url, perso_ttl, delivery_window,
    /// delivery_max_tries, delivery_ttl, admin_token, master_key, notify_retry_schedule,
    /// outbound_allow, wallet_max_long_polls, allow_plain_http_endpoints, outbound_proxy,
    /// requestor_tsp_budget, tls_cert, tls_key, tsp_plain_as, client_cert, client_key, and the
    /// tables `[listeners.tsp|wallet|admin]` (address, cert, key, plain), `[limits]`,
    /// `[tsp_health]`, `[retention]`, `[node]` (id, heartbeat_interval, claim_lease) and
    /// `[keystore]` (kind, pkcs11_module, pkcs11_token).
    #[arg(long, env = "TOKENHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the keys live (software, or an HSM through PKCS#11; boxed: every command holds
    /// these flags).
    #[command(flatten)]
    pub keystore: Box<KeystoreArgs>,
}

/// Flags and environment variables of `tokenhub serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Development only: every API on this one plain-HTTP loopback address, when none of the
    /// three listeners below is configured.
    #[arg(long, env = "TOKENHUB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The three listeners, TLS and the hub's client certificate (boxed: the flags are many).
    #[command(flatten)]
    pub tls: Box<ListenArgs>,
    /// Seconds after createToken (repersoToken) during which /data (/newData) is accepted.
    #[arg(long, env = "TOKENHUB_PERSO_TTL")]
    pub perso_ttl: Option<u64>,
    /// Seconds a device has to confirm a personalization before it is offered again.
    #[arg(long, env = "TOKENHUB_DELIVERY_WINDOW")]
    pub delivery_window: Option<u64>,
    /// How many times a personalization is offered before the token is marked failed.
    #[arg(long, env = "TOKENHUB_DELIVERY_MAX_TRIES")]
    pub delivery_max_tries: Option<u32>,
    /// Seconds after which a personalization the device never fetched fails.
    #[arg(long, env = "TOKENHUB_DELIVERY_TTL")]
    pub delivery_ttl: Option<u64>,
    /// Waits between attempts at delivering a token update to a requestor, e.g. `5s,5m,30m`
    /// (each wait is drawn at random up to the given one; a `Retry-After` is honoured).
    #[arg(long, env = "TOKENHUB_NOTIFY_RETRY_SCHEDULE")]
    pub notify_retry_schedule: Option<String>,
    /// Private, loopback or link-local networks (CIDRs, comma-separated) token requestors may be
    /// reached at, e.g. `127.0.0.0/8,10.0.0.0/8`. Public addresses are always allowed.
    #[arg(long, env = "TOKENHUB_OUTBOUND_ALLOW")]
    pub outbound_allow: Option<String>,
    /// Long polls (`waitSeconds` > 0) one wallet provider may hold open at once; more get `503`.
    #[arg(long, env = "TOKENHUB_WALLET_MAX_LONG_POLLS")]
    pub wallet_max_long_polls: Option<usize>,
    /// Accept `http://` TSP and requestor endpoints: for development only (the simulators on
    /// loopback); without it they are refused.
    #[arg(long, env = "TOKENHUB_ALLOW_PLAIN_HTTP_ENDPOINTS")]
    pub allow_plain_http_endpoints: bool,
    /// A proxy every call to TSPs and requestors goes through. Without it `HTTP_PROXY`,
    /// `HTTPS_PROXY` and `ALL_PROXY` are ignored.
    #[arg(long, env = "TOKENHUB_OUTBOUND_PROXY")]
    pub outbound_proxy: Option<String>,
    /// How long a requestor API call may spend on the TSP, retries and waits included, e.g. `3s`
    /// (100ms to 60s); then the requestor gets `503` with `Retry-After`.
    #[arg(long, env = "TOKENHUB_REQUESTOR_TSP_BUDGET")]
    pub requestor_tsp_budget: Option<String>,
    /// How each TSP's health is checked.
    #[command(flatten)]
    pub tsp_health: TspHealthArgs,
    /// What the shred sweep deletes, and when (boxed, as the next: the flags are many).
    #[command(flatten)]
    pub retention: Box<RetentionArgs>,
    /// This node's id among the nodes sharing the database, its heartbeat and claims' lease.
    #[command(flatten)]
    pub node: Box<NodeArgs>,
}

/// The optional TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    perso_ttl: Option<u64>,
    delivery_window: Option<u64>,
    delivery_max_tries: Option<u32>,
    delivery_ttl: Option<u64>,
    admin_token: Option<String>,
    master_key: Option<String>,
    notify_retry_schedule: Option<String>,
    outbound_allow: Option<String>,
    wallet_max_long_polls: Option<usize>,
    allow_plain_http_endpoints: Option<bool>,
    outbound_proxy: Option<String>,
    requestor_tsp_budget: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tsp_plain_as: Option<String>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(default)]
    listeners: listeners::FileListeners,
    #[serde(default)]
    limits: listeners::FileLimits,
    #[serde(default)]
    tsp_health: tsp_health::FileTspHealth,
    #[serde(default)]
    keystore: keystore::FileKeystore,
    #[serde(default)]
    retention: retention::FileRetention,
    #[serde(default)]
    node: node::FileNode,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("the configuration file {0} is not valid: {1}")]
    Parse(String, toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Everything the hub needs to start.
#[derive(Clone)]
pub struct Config {
    /// Development only, used when `listeners` is `None`: every API on this one plain-HTTP
    /// loopback address.
    pub listen: SocketAddr,
    /// The TSP, wallet and admin listeners, each on its own address.
    pub listeners: Option<Listeners>,
    /// The TSP a plain TSP API (no client certificate to tell) acts for; without it the single
    /// development port's TSP API is bound to no TSP and acts on every token.
    pub tsp_plain_as: Option<String>,
    pub limits: ServerLimits,
    /// The certificate chain and key (PEM) the hub presents to the TSPs.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    pub database_url: String,
    pub perso_ttl: Duration,
    pub delivery: DeliverySettings,
    /// First delay before an outbox call is retried (doubling, with jitter, up to 5 minutes).
    pub outbox_backoff: Duration,
    /// `TOKENHUB_ADMIN_TOKEN`; generated at start when unset.
    pub admin_token: Option<String>,
    /// `TOKENHUB_MASTER_KEY` (64 hex digits); on SQLite a key file beside the database when unset.
    pub master_key: Option<String>,
    /// How token updates reach token requestors.
    pub notify: NotifySettings,
    /// How far ahead of the hub's clock a TSP's `lastUpdateTimestamp` may be (5 minutes).
    pub max_update_skew: Duration,
    /// Long polls one wallet provider may hold open at once.
    pub wallet_max_long_polls: usize,
    /// How the hub's calls to TSPs and requestors leave it.
    pub outbound: OutboundSettings,
    /// The time a requestor API call may spend on the TSP (its attempts and the waits between).
    pub requestor_tsp_budget: Duration,
    /// How each TSP's health is checked.
    pub tsp_health: TspHealthSettings,
    /// Which keystore holds the keys (software: the master key below).
    pub keystore: KeystoreSettings,
    /// What the shred sweep deletes, and when.
    pub retention: RetentionSettings,
    /// This node's id, heartbeat and claims' lease.
    pub node: NodeSettings,
}

pub const DEFAULT_REQUESTOR_TSP_BUDGET: Duration = Duration::from_secs(3);

/// `3s`, `500ms` → the requestor API's TSP budget: from 100 ms (room for a retry) to a minute (a
/// caller is waiting).
pub fn parse_budget(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if (Duration::from_millis(100)..=Duration::from_secs(60)).contains(&d) => Ok(d),
        _ => Err(format!(
            "requestor_tsp_budget: {s:?} is not a duration from 100ms to 60s, such as 3s"
        )),
    }
}

/// How the hub's calls to TSPs and requestors leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundSettings {
    /// `http://` endpoints are accepted (development only); refused by default.
    pub allow_plain_http: bool,
    /// The one proxy outbound calls go through; `None`: none, whatever the environment says,
    /// so that no proxy resolves a requestor's name behind the address guard's back.
    pub proxy: Option<String>,
}

/// How token updates are delivered to token requestors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The longest wait before each retry; an update is dead after `len() + 1` attempts.
    pub retry_schedule: Vec<Duration>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Non-public networks requestors may be reached at.
    pub outbound_allow: Vec<ipnet::IpNet>,
}

/// Close to the well-known day of retries: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_NOTIFY_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            retry_schedule: parse_schedule(DEFAULT_NOTIFY_RETRY_SCHEDULE)
                .expect("the default schedule parses"),
            timeout: Duration::from_secs(10),
            outbound_allow: Vec::new(),
        }
    }
}

/// `5s,5m,30m` → the durations; every entry must be a positive duration.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match humantime::parse_duration(p) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(format!(
                "notify retry schedule: {p:?} is not a duration such as 500ms, 5s, 5m or 2h"
            )),
        })
        .collect()
}

/// `127.0.0.0/8, 10.0.0.0/8` → the networks.
pub fn parse_cidrs(s: &str) -> Result<Vec<ipnet::IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("outbound allow list: {p:?} is not a CIDR such as 127.0.0.0/8")
                })
        })
        .collect()
}

/// How personalizations are offered to devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// The time a device has to confirm before the profile is offered again.
    pub window: Duration,
    /// Offers before the token is marked failed.
    pub max_tries: u32,
    /// A personalization never fetched fails after this long.
    pub ttl: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(DEFAULT_DELIVERY_WINDOW_SECS),
            max_tries: DEFAULT_DELIVERY_MAX_TRIES,
            ttl: Duration::from_secs(DEFAULT_DELIVERY_TTL_SECS),
        }
    }
}

pub const DEFAULT_DELIVERY_WINDOW_SECS: u64 = 300;
pub const DEFAULT_DELIVERY_MAX_TRIES: u32 = 5;
pub const DEFAULT_DELIVERY_TTL_SECS: u64 = 7 * 24 * 3600;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("listeners", &self.listeners)
            .field("database_url", &redact_url(&self.database_url))
            .field("perso_ttl", &self.perso_ttl)
            .field("delivery", &self.delivery)
            .field("wallet_max_long_polls", &self.wallet_max_long_polls)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("master_key", &self.master_key.as_ref().map(|_| "<set>"))
            .field("keystore", &self.keystore)
            .field("node", &self.node)
            .field("allow_plain_http", &self.outbound.allow_plain_http)
            .field(
                "outbound_proxy",
                &self.outbound.proxy.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl Config {
    /// A configuration for `database_url` with every other setting at its default.
    pub fn for_database(database_url: &str) -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            listeners: None,
            tsp_plain_as: None,
            limits: ServerLimits::default(),
            client_identity: None,
            database_url: database_url.to_string(),
            perso_ttl: Duration::from_secs(DEFAULT_PERSO_TTL_SECS),
            delivery: DeliverySettings::default(),
            outbox_backoff: Duration::from_secs(1),
            admin_token: None,
            master_key: None,
            notify: NotifySettings::default(),
            max_update_skew: Duration::from_secs(300),
            wallet_max_long_polls: DEFAULT_WALLET_MAX_LONG_POLLS,
            outbound: OutboundSettings::default(),
            requestor_tsp_budget: DEFAULT_REQUESTOR_TSP_BUDGET,
            tsp_health: TspHealthSettings::default(),
            keystore: KeystoreSettings::default(),
            retention: RetentionSettings::default(),
            node: NodeSettings::default(),
        }
    }

    pub fn load(args: &ServeArgs) -> Result<Self, ConfigError> {
        Self::load_with_env(args, |k| std::env::var(k).ok())
    }

    /// `env` reads the environment (injected for tests).
    pub fn load_with_env(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = match &args.store.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let (listeners, client_identity) = listening(&args.tls, &file)?;
        let delivery = delivery_settings(args, &file);
        let notify = notify_settings(args, &file)?;
        let config = Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            listeners,
            tsp_plain_as: non_empty(args.tls.tsp_plain_as.clone()).or(file.tsp_plain_as),
            limits: file.limits.apply().map_err(ConfigError::Invalid)?,
            client_identity,
            database_url: args
                .store
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
            perso_ttl: Duration::from_secs(
                args.perso_ttl
                    .or(file.perso_ttl)
                    .unwrap_or(DEFAULT_PERSO_TTL_SECS),
            ),
            delivery,
            outbox_backoff: Duration::from_secs(1),
            admin_token: non_empty(env("TOKENHUB_ADMIN_TOKEN")).or(file.admin_token),
            master_key: non_empty(env("TOKENHUB_MASTER_KEY")).or(file.master_key),
            notify,
            max_update_skew: Duration::from_secs(300),
            wallet_max_long_polls: args
                .wallet_max_long_polls
                .or(file.wallet_max_long_polls)
                .unwrap_or(DEFAULT_WALLET_MAX_LONG_POLLS),
            outbound: OutboundSettings {
                allow_plain_http: args.allow_plain_http_endpoints
                    || file.allow_plain_http_endpoints.unwrap_or(false),
                proxy: non_empty(args.outbound_proxy.clone()).or(file.outbound_proxy),
            },
            requestor_tsp_budget: (args.requestor_tsp_budget.clone())
                .or(file.requestor_tsp_budget)
                .map_or(Ok(DEFAULT_REQUESTOR_TSP_BUDGET), |s| parse_budget(&s))
                .map_err(ConfigError::Invalid)?,
            tsp_health: tsp_health::resolve(&args.tsp_health, &file.tsp_health)
                .map_err(ConfigError::Invalid)?,
            keystore: keystore::resolve(&args.store.keystore, &file.keystore, &env)?,
            retention: retention::resolve(&args.retention, &file.retention)
                .map_err(ConfigError::Invalid)?,
            node: node::resolve(&args.node, &file.node).map_err(ConfigError::Invalid)?,
        };
        if let Some(proxy) = &config.outbound.proxy {
            if reqwest::Proxy::all(proxy.as_str()).is_err() {
                return Err(ConfigError::Invalid(
                    "outbound_proxy is not a proxy URL".into(),
                ));
            }
        }
        if config.perso_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "perso_ttl must be at least 1 second".into(),
            ));
        }
        Ok(config)
    }

    /// Where the master key file lives when `TOKENHUB_MASTER_KEY` is unset on SQLite.
    pub fn master_key_file(&self) -> Option<PathBuf> {
        let path = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = Path::new(path.split('?').next().unwrap_or(path));
        Some(path.parent().unwrap_or(Path::new(".")).join("master.key"))
    }
}

/// The listeners, and the hub's client certificate and key files.
#[allow(clippy::type_complexity)]
fn listening(
    args: &ListenArgs,
    file: &FileConfig,
) -> Result<(Option<Listeners>, Option<(PathBuf, PathBuf)>), ConfigError> {
    let listeners = listeners::resolve(
        listeners::ListenerArgs {
            tsp: args.tsp_listen,
            wallet: args.wallet_listen,
            admin: args.admin_listen,
            cert: args.tls_cert.as_ref(),
            key: args.tls_key.as_ref(),
            plain: args.plain_listeners.as_deref(),
        },
        &file.listeners,
        file.tls_cert.as_ref(),
        file.tls_key.as_ref(),
    )
    .map_err(ConfigError::Invalid)?;
    let client_identity = match (
        args.client_cert.clone().or(file.client_cert.clone()),
        args.client_key.clone().or(file.client_key.clone()),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid(
                "the hub's client certificate needs both client_cert and client_key".into(),
            ))
        }
    };
    Ok((listeners, client_identity))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse(path.display().to_string(), e))
}

/// A database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn delivery_settings(args: &ServeArgs, file: &FileConfig) -> DeliverySettings {
    DeliverySettings {
        window: Duration::from_secs(
            args.delivery_window
                .or(file.delivery_window)
                .unwrap_or(DEFAULT_DELIVERY_WINDOW_SECS),
        ),
        max_tries: args
            .delivery_max_tries
            .or(file.delivery_max_tries)
            .unwrap_or(DEFAULT_DELIVERY_MAX_TRIES),
        ttl: Duration::from_secs(
            args.delivery_ttl
                .or(file.delivery_ttl)
                .unwrap_or(DEFAULT_DELIVERY_TTL_SECS),
        ),
    }
}

fn notify_settings(args: &ServeArgs, file: &FileConfig) -> Result<NotifySettings, ConfigError> {
    Ok(NotifySettings {
        retry_schedule: match args
            .notify_retry_schedule
            .clone()
            .or(file.notify_retry_schedule.clone())
        {
            Some(s) => parse_schedule(&s).map_err(ConfigError::Invalid)?,
            None => NotifySettings::default().retry_schedule,
        },
        outbound_allow: match args.outbound_allow.clone().or(file.outbound_allow.clone()) {
            Some(s) => parse_cidrs(&s).map_err(ConfigError::Invalid)?,
            None => Vec::new(),
        },
        ..NotifySettings::default()
    })
}

#[cfg(test)]
mod tests;
