//! The TSP simulator: configuration, start-up and the handle a caller keeps to watch and stop it.
//!
//! `api` answers the hub, `lifecycle` handles the hub's calls after createToken (state,
//! newDataStatus), `reperso` recovers a token's data for a re-personalization, `transactions`
//! authorizes payments, `delivery` sends the hub the data preparation (and the recovered data),
//! `elements` generates it, `vault` remembers tokens, `status` counts what happened,
//! `misbehaviour` holds the switches that make the simulator misbehave on purpose, `hub_health`
//! checks the hub's health as the contract asks a TSP to.

mod api;
mod card_key;
mod cof;
mod cof_api;
mod delivery;
mod derived;
pub mod elements;
mod hub_health;
mod lifecycle;
mod misbehaviour;
mod reperso;
mod scan;
mod status;
mod tls;
mod transactions;
mod updates;
mod vault;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokenhub_crypto::KeySet;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use api::TSP_API_PREFIX;
pub use card_key::{seal_card, JWE_ALG, JWE_ENC};
pub use cof::{AuthReason, MAX_TOKENS_PER_CARD};
pub use cof_api::{Authorization, AuthorizationAnswer, TRANSACTION_TYPES};
pub use delivery::RetryPolicy;
pub use derived::{DerivedTokens, DERIVED_INDEX_DIGITS};
pub use elements::{PersoElement, TokenInfo, ELEMENT_NAMES};
pub use hub_health::HubHealth;
pub use misbehaviour::Misbehaviour;
pub use status::TspSimStatus;
pub use tls::SimTls;
pub use transactions::{TransactionAnswer, TransactionRequest, TxnReason, TRANSACTIONS_PATH};
pub use updates::{TokenUpdate, UpdateAnswer};
pub use vault::{SimTokenView, TspTokenState};

use elements::SimKeys;
use misbehaviour::Switches;
use status::Counters;
use vault::Vault;

/// How to run the simulated TSP.
#[derive(Debug, Clone)]
pub struct TspSimConfig {
    /// The hub's base URL, e.g. `http://127.0.0.1:8080`; the simulator appends `/trapi/v2.0`.
    pub hub_url: String,
    /// The keys shared with the hub at the key ceremony: the first `kek` encrypts card master
    /// keys, the first `dek` encrypts track 2.
    pub keys: KeySet,
    /// Over how many `/data` calls each token's elements are spread: 1 sends everything at once;
    /// up to [`ELEMENT_NAMES`]`.len()`, so that no call is empty.
    pub partial_calls: usize,
    /// Wait between answering createToken and the first `/data` call.
    pub data_delay: Duration,
    /// The issuers this TSP serves (createToken for another answers 113); `None` accepts any
    /// 10-character issuerId.
    pub issuer_ids: Option<Vec<String>>,
    /// Retries of the `/data` and `/newData` calls.
    pub retry: RetryPolicy,
    /// How the simulator misbehaves from the start (default: not at all); it can change at run
    /// time with [`TspSimHandle::set_misbehaviour`] or `PUT /sim/misbehaviour`.
    pub misbehaviour: Misbehaviour,
    /// Tokens known from the start, their data derived from their ids rather than kept in
    /// memory ([`DerivedTokens`]): what a benchmark of millions of already active tokens needs.
    /// `None` (the default): only the tokens created through createToken exist.
    pub derived: Option<DerivedTokens>,
    /// When set, the id of every token whose recovered data (`/newData`, every part) the hub
    /// accepted is sent here, as a push notification would wake the wallet that now has a
    /// profile to fetch.
    pub recovered: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Mutual TLS: the certificate presented to the hub and served on the simulator's own API,
    /// and the CA trusted for the hub's. `None`: plain HTTP both ways.
    pub tls: Option<SimTls>,
    /// How often the simulator checks the hub's health (`GET /trapi/v2.0/healthCheck`), the
    /// first time at start; the contract asks every 30 s (the default). `None`: never.
    pub hub_check_every: Option<Duration>,
}

impl TspSimConfig {
    /// The defaults: one `/data` call, 20 ms after the answer, any issuer, default retries.
    pub fn new(hub_url: impl Into<String>, keys: KeySet) -> Self {
        Self {
            hub_url: hub_url.into(),
            keys,
            partial_calls: 1,
            data_delay: Duration::from_millis(20),
            issuer_ids: None,
            retry: RetryPolicy::default(),
            misbehaviour: Misbehaviour::default(),
            derived: None,
            recovered: None,
            tls: None,
            hub_check_every: Some(Duration::from_secs(30)),
        }
    }
}

/// Reads a key-set file (the JSON of [`KeySet`], as `tokenhub keys dev-generate` writes it).
pub fn load_key_set(path: &Path) -> anyhow::Result<KeySet> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key set {}", path.display()))?;
    // serde_json's messages give a position, never the text, so no key leaks into the error.
    serde_json::from_str(&text).with_context(|| format!("parsing the key set {}", path.display()))
}

/// What every request handler and delivery task shares.
pub(crate) struct SimState {
    pub(crate) config: TspSimConfig,
    pub(crate) keys: SimKeys,
    /// `{hub_url}/trapi/v2.0`, without a trailing slash.
    pub(crate) hub_api: String,
    pub(crate) http: reqwest::Client,
    pub(crate) vault: Vault,
    /// Card-on-file tokens.
    pub(crate) cof: cof::CofVault,
    /// The key requestors encrypt card data to.
    pub(crate) card_key: card_key::CardKey,
    pub(crate) counters: Arc<Counters>,
    /// The misbehaviour switches and the rate limit's state.
    pub(crate) switches: Switches,
    /// Turns true when the simulator stops; delivery tasks watch it to stop too.
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// A running simulator. Dropping it stops the simulator too (without waiting); prefer
/// [`TspSimHandle::shutdown`].
pub struct TspSimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl TspSimHandle {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to register as the TSP's `baseUrl` at the hub: `http://ADDR/tsp/trapi/v2.0`. An
    /// unspecified listen address (0.0.0.0, ::) becomes the loopback one, which a client can
    /// actually connect to.
    pub fn base_url(&self) -> String {
        format!("{}{TSP_API_PREFIX}", self.sim_url())
    }

    /// The simulator's own root, `http://ADDR` (loopback for an unspecified listen address):
    /// where `/sim/status`, `/sim/tokens/{tokenId}` and `/sim/transactions` live. This is the
    /// `tsp_sim_base` the device fleet takes.
    pub fn sim_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let scheme = if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The counters, as `GET /sim/status` serves them.
    pub fn status(&self) -> TspSimStatus {
        self.state.counters.snapshot()
    }

    /// One token as the simulator sees it (state, last ATC, transaction counts), as
    /// `GET /sim/tokens/{tokenId}` serves it; `None` for a token it never created.
    pub fn token(&self, token_id: &str) -> Option<SimTokenView> {
        self.state.vault.view(token_id)
    }

    /// Calls of the outgoing API (healthCheck aside) admitted and refused with 503 by the rate
    /// limit so far (with no rate limit, every call is admitted): a benchmark samples it to
    /// measure the rate the hub keeps.
    pub fn outgoing_calls(&self) -> (u64, u64) {
        self.state.counters.outgoing_calls()
    }

    /// Switches misbehaviours on or off, at once (calls already waiting out a `slow` delay keep
    /// theirs). Setting it refills the rate limit's bucket.
    pub fn set_misbehaviour(&self, misbehaviour: Misbehaviour) {
        tracing::info!(?misbehaviour, "TSP simulator misbehaviour set");
        self.state.switches.set(misbehaviour);
    }

    /// How the simulator misbehaves now.
    pub fn misbehaviour(&self) -> Misbehaviour {
        self.state.switches.get()
    }

    /// Resolves once no token's data preparation or recovered data is being sent any more.
    /// Right after a createToken or repersoToken answer this waits for that token's delivery
    /// (it is counted before the answer).
    pub async fn deliveries_idle(&self) {
        self.state.counters.idle().await
    }

    /// Stops accepting requests, cancels deliveries under way, and waits for both.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // send_replace, not send: it succeeds even when no receiver is left.
        self.stop.send_replace(true);
        self.state.counters.idle().await;
        self.server
            .await
            .context("the simulator's server task failed")?
            .context("the simulator's server stopped with an error")
    }
}

/// Starts the simulator on `listener` (bind port 0 to let the system choose) and returns at once.
///
/// Checks the configuration first: a usable `kek` and `dek` in the key set, an http(s) hub URL,
/// `partial_calls` within 1..=[`ELEMENT_NAMES`]`.len()`.
pub async fn spawn(listener: TcpListener, config: TspSimConfig) -> anyhow::Result<TspSimHandle> {
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    if config.partial_calls == 0 || config.partial_calls > ELEMENT_NAMES.len() {
        bail!(
            "partial_calls must be between 1 and {} (the number of data elements), not {}",
            ELEMENT_NAMES.len(),
            config.partial_calls
        );
    }
    if config.retry.max_attempts == 0 {
        bail!("retry.max_attempts must be at least 1");
    }
    let keys = SimKeys::from_key_set(&config.keys).context("the TSP simulator's key set")?;
    let hub_api = hub_api_url(&config.hub_url)?;

    ensure_crypto_provider();
    let mut http = reqwest::Client::builder()
        .timeout(config.retry.request_timeout)
        .connect_timeout(config.retry.request_timeout)
        // A redirect on a PUT carrying keys is not something to follow blindly: the answer is
        // counted as a refusal instead.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(tls) = &config.tls {
        http = tls.client(http)?;
    }
    let http = http.build().context("building the HTTP client")?;

    let (stop, shutdown) = watch::channel(false);
    let config_misbehaviour = config.misbehaviour.clone();
    let vault = Vault::with_derived(config.derived.clone());
    let state = Arc::new(SimState {
        config,
        keys,
        hub_api,
        http,
        vault,
        cof: cof::CofVault::default(),
        card_key: card_key::CardKey::generate(&format!(
            "tsp-sim-{}",
            uuid::Uuid::new_v4().simple()
        ))
        .context("generating the card encryption key")?,
        counters: Arc::new(Counters::new()),
        switches: Switches::new(config_misbehaviour),
        shutdown: shutdown.clone(),
    });
    if let Some(every) = state.config.hub_check_every.filter(|d| !d.is_zero()) {
        tokio::spawn(hub_health::run(state.clone(), every));
    }
    let app = api::router(state.clone());
    let mut server_stop = shutdown;
    let tls = state.config.tls.clone();
    let server = tokio::spawn(async move {
        if let Some(tls) = tls {
            return tls::serve(listener, app, &tls, server_stop).await;
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // Err means the handle was dropped: stop as well.
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%addr, hub = %state.hub_api, partial_calls = state.config.partial_calls, "TSP simulator started");
    Ok(TspSimHandle {
        addr,
        state,
        stop,
        server,
    })
}

/// Binds `listen`, runs the simulator until Ctrl-C (or SIGTERM on Unix), then stops it cleanly.
/// What `tokenhub tsp-sim` runs.
pub async fn run(listen: SocketAddr, config: TspSimConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let handle = spawn(listener, config).await?;
    tracing::info!(base_url = %handle.base_url(), "register this URL as the TSP's baseUrl at the hub");
    stop_signal().await;
    tracing::info!(status = ?handle.status(), "TSP simulator stopping");
    handle.shutdown().await
}

pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `{hub_url}/trapi/v2.0`, after checking that `hub_url` is an http(s) URL.
fn hub_api_url(hub_url: &str) -> anyhow::Result<String> {
    let trimmed = hub_url.trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed).with_context(|| format!("hub URL {hub_url:?}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("hub URL {hub_url:?} must be an http:// or https:// URL with a host");
    }
    Ok(format!("{trimmed}/trapi/v2.0"))
}

/// reqwest is built without a TLS crypto provider (the workspace picks aws-lc-rs once for all
/// crates) and panics on building a client if none is installed. A binary normally installs it
/// first thing; installing it here when nobody has keeps the simulator usable from any test or
/// embedding. Losing a race against another installer is fine: any provider will do.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_api_url_gets_the_incoming_api_prefix() {
        assert_eq!(
            hub_api_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/trapi/v2.0"
        );
        assert_eq!(
            hub_api_url("https://hub.example/").unwrap(),
            "https://hub.example/trapi/v2.0"
        );
        assert!(hub_api_url("127.0.0.1:8080").is_err());
        assert!(hub_api_url("ftp://hub.example").is_err());
        assert!(hub_api_url("").is_err());
    }
}
