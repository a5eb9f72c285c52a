//! The token requestor simulator: a PSP receiving the hub's token updates with
//! `tokenhub-receiver`, that can misbehave on purpose and reports every notification in-process.
//!
//! Unlike the TSP simulator, it uses a library of the project for the other side of the contract:
//! `tokenhub-receiver` is what PSPs are given, so the simulator plays a PSP that uses it (a
//! misreading in the library would be caught by its own tests against the shared signature
//! vectors, not here).
//!
//! # Routes
//!
//! - `POST /notify-token-update`: the hub's notifications, handled by a
//!   [`tokenhub_receiver::Receiver`] (API key, Standard Webhooks signature and timestamp,
//!   deduplication by `webhook-id`, ordering by `lastUpdateTimestamp`), `204` when applied,
//!   duplicate or obsolete, `401`/`400`/`500` with `{"error", "message"}` otherwise, unless a
//!   misbehaviour answers first.
//! - `POST /sim/misbehaviour` ([`MisbehaviourRequest`]) → the [`MisbehaviourState`] after it;
//!   `GET /sim/misbehaviour` reads it: `failNext` (503, optionally `Retry-After`), `statusNext`
//!   (any status to the next N), `delayMs` (slow answers), `downForMs` (close the listener, come
//!   back on the same port after the time; while down, `/sim/*` is unreachable too: use the
//!   handle).
//! - `GET /sim/status`: `{"stats": RequestorSimStats, "misbehaviour": MisbehaviourState}`.
//! - `GET /sim/tokens`: `{tokenId: stored token}`, the receiver's view.
//! - `/sim/merchant…` (`merchant_api`): the merchant's cards on file: tokenize, pay, replay, its
//!   counters.
//!
//! # The merchant
//!
//! With a [`MerchantConfig`] (at the start, or [`RequestorSim::attach_merchant`] once the hub
//! has issued the requestor's API key) the simulator is also a merchant's PSP with cards on file
//! (`merchant`): it tokenizes cards encrypted to the hub's published key, pays with each token
//! (Create Transaction, then the TSP simulator's authorization), and on an update with new last
//! digits discards the token PAN it kept (`book`), fetching the current one at the next payment.
//!
//! # Events
//!
//! [`RequestorSim::subscribe`] gives a `tokio::sync::broadcast` receiver of [`DeliveryEvent`]s,
//! one per notification (failed on purpose or not), with the `Instant` it arrived: a benchmark in
//! the same process measures the hub's delivery latency with it. A subscriber that falls more
//! than [`RequestorSimConfig::events_capacity`] behind loses the oldest events (`Lagged`).
//!
//! # The command
//!
//! [`run`] is `tokenhub requestor-sim`: it prints the base URL once, serves until Ctrl-C (or
//! SIGTERM), then prints the counters.

mod api;
mod book;
mod events;
mod listener;
mod merchant;
mod merchant_api;
mod misbehaviour;
mod store;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use tokenhub_receiver::{
    MemoryStore, Receiver, SqliteStore, StoredToken, Verifier, DEFAULT_TOLERANCE,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use book::MerchantStats;
pub use events::{DeliveryEvent, DeliveryOutcome, RequestorSimStats};
pub use merchant::{card_pan, MerchantConfig, PaymentRound, Tokenized};
pub use misbehaviour::{MisbehaviourError, MisbehaviourRequest, MisbehaviourState, StatusNext};

use book::Book;
use events::Counters;
use listener::DownRequest;
use merchant::Merchant;
use misbehaviour::Switches;
use store::{SimHooks, SimStore};

/// Where the simulated requestor keeps the tokens' state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RequestorStore {
    /// In memory (lost at the end).
    #[default]
    Memory,
    /// In this SQLite file (created if absent, WAL).
    Sqlite(PathBuf),
}

/// How to run the simulated requestor.
#[derive(Debug, Clone)]
pub struct RequestorSimConfig {
    /// Where to listen; `127.0.0.1:0` (a free port) by default.
    pub listen: SocketAddr,
    /// The API key the hub must send (`authorization: APIKEY <key>`).
    pub api_key: String,
    /// The signing secrets (`whsec_...`) a notification may be signed with: one, or two
    /// during a rotation.
    pub signing_secrets: Vec<String>,
    /// Memory or SQLite.
    pub store: RequestorStore,
    /// How far `webhook-timestamp` may be from the clock.
    pub tolerance: Duration,
    /// How many events a slow subscriber may fall behind before losing some.
    pub events_capacity: usize,
    /// Serve over TLS with this certificate, asking the hub for a client certificate of its CA
    /// (`SimTls::from_dir_as(dir, "requestor")`); plain HTTP when `None`.
    pub tls: Option<crate::tsp::SimTls>,
    /// A merchant with cards on file too; `None`: only receiving (one can be attached later).
    pub merchant: Option<MerchantConfig>,
}

impl RequestorSimConfig {
    /// Listening on `127.0.0.1:0`, in memory, the default tolerance (5 minutes).
    pub fn new(api_key: impl Into<String>, signing_secrets: Vec<String>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: api_key.into(),
            signing_secrets,
            store: RequestorStore::Memory,
            tolerance: DEFAULT_TOLERANCE,
            events_capacity: 16 * 1024,
            tls: None,
            merchant: None,
        }
    }
}

/// What the routes and the handle share.
pub(crate) struct SimState {
    pub(crate) receiver: Arc<Receiver<SimStore, SimHooks>>,
    pub(crate) switches: Switches,
    pub(crate) counters: Counters,
    pub(crate) events: broadcast::Sender<DeliveryEvent>,
    down_requests: mpsc::UnboundedSender<DownRequest>,
    down: Arc<AtomicBool>,
    /// The merchant's book (the receiver's hooks feed it), and the merchant once attached.
    pub(crate) book: Arc<Book>,
    pub(crate) merchant: OnceLock<Arc<Merchant>>,
}

impl SimState {
    pub(crate) fn stats(&self) -> RequestorSimStats {
        self.counters.snapshot(self.receiver.stats())
    }

    pub(crate) fn misbehaviour(&self) -> MisbehaviourState {
        self.switches.state(self.down.load(Ordering::SeqCst))
    }

    pub(crate) async fn misbehave(
        &self,
        request: &MisbehaviourRequest,
    ) -> Result<MisbehaviourState, MisbehaviourError> {
        self.switches.apply(request)?;
        tracing::info!(?request, "requestor simulator: misbehaviour");
        if let Some(ms) = request.down_for_ms.filter(|ms| *ms > 0) {
            self.go_down(Duration::from_millis(ms)).await?;
        }
        Ok(self.misbehaviour())
    }

    async fn go_down(&self, down_for: Duration) -> Result<(), MisbehaviourError> {
        let (ack, acked) = oneshot::channel();
        self.down_requests
            .send(DownRequest { down_for, ack })
            .map_err(|_| MisbehaviourError::Stopped)?;
        acked.await.map_err(|_| MisbehaviourError::Stopped)
    }
}

/// A running requestor simulator. Dropping it stops the simulator too (without waiting);
/// prefer [`RequestorSim::shutdown`].
pub struct RequestorSim {
    addr: SocketAddr,
    /// `https` over TLS, else `http`.
    scheme: &'static str,
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for RequestorSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestorSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RequestorSim {
    /// Binds `config.listen` and starts serving; returns at once.
    pub async fn start(config: RequestorSimConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Self::start_on(listener, config).await
    }

    /// Starts serving on `listener` (`config.listen` is ignored); returns at once.
    pub async fn start_on(
        listener: TcpListener,
        config: RequestorSimConfig,
    ) -> anyhow::Result<Self> {
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        if config.api_key.is_empty() {
            bail!("the requestor's API key must not be empty");
        }
        if config.signing_secrets.is_empty() {
            bail!("the requestor needs at least one signing secret");
        }
        let verifier = Verifier::new(config.api_key.clone(), &config.signing_secrets)
            .context("the requestor's signing secrets")?
            .with_tolerance(config.tolerance);
        let store = match &config.store {
            RequestorStore::Memory => SimStore::Memory(MemoryStore::new()),
            RequestorStore::Sqlite(path) => SimStore::Sqlite(
                SqliteStore::open(path)
                    .await
                    .with_context(|| format!("opening the SQLite store {}", path.display()))?,
            ),
        };
        let hooks = SimHooks::default();
        let book = hooks.book.clone();
        let receiver = Arc::new(Receiver::with_hooks(verifier, store, hooks));
        let (events, _) = broadcast::channel(config.events_capacity.max(1));
        let (down_requests, down_rx) = mpsc::unbounded_channel();
        let down = Arc::new(AtomicBool::new(false));
        let state = Arc::new(SimState {
            receiver,
            switches: Switches::default(),
            counters: Counters::default(),
            events,
            down_requests,
            down: down.clone(),
            book,
            merchant: OnceLock::new(),
        });
        if let Some(merchant) = config.merchant.clone() {
            attach(&state, merchant)?;
        }
        let app = api::router(state.clone());
        let tls = config.tls.as_ref().map(|t| t.server(true)).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(listener::supervise(
            listener, app, tls, stopped, down_rx, down,
        ));
        tracing::info!(%addr, "requestor simulator started");
        Ok(Self {
            addr,
            scheme,
            state,
            stop,
            server,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to register as the requestor's `baseUrl` at the hub, `http(s)://ADDR` (loopback
    /// for an unspecified listen address); the hub appends `/notify-token-update`.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!(
            "{}://{}",
            self.scheme,
            SocketAddr::new(ip, self.addr.port())
        )
    }

    /// The counters (as `GET /sim/status` serves them).
    pub fn stats(&self) -> RequestorSimStats {
        self.state.stats()
    }

    /// The receiver's view: every token's stored state by `tokenId`.
    pub async fn tokens(&self) -> anyhow::Result<BTreeMap<String, StoredToken>> {
        let tokens = self.state.receiver.tokens().await?;
        Ok(tokens
            .into_iter()
            .map(|t| (t.update.token_id.clone(), t))
            .collect())
    }

    /// One token's stored state.
    pub async fn token(&self, token_id: &str) -> anyhow::Result<Option<StoredToken>> {
        Ok(self.state.receiver.token(token_id).await?)
    }

    /// The tokens whose PAN was discarded (their `tokenLastDigits` changed), in order, once per
    /// change.
    pub fn pan_discards(&self) -> Vec<String> {
        self.state.receiver.hooks().discarded()
    }

    /// Every notification from now on, as it is answered.
    pub fn subscribe(&self) -> broadcast::Receiver<DeliveryEvent> {
        self.state.events.subscribe()
    }

    /// Changes the misbehaviour like `POST /sim/misbehaviour`; with `down_for_ms`, returns
    /// once the listener is closed.
    pub async fn misbehave(
        &self,
        request: MisbehaviourRequest,
    ) -> Result<MisbehaviourState, MisbehaviourError> {
        self.state.misbehave(&request).await
    }

    /// How it misbehaves now.
    pub fn misbehaviour(&self) -> MisbehaviourState {
        self.state.misbehaviour()
    }

    /// Answers `503` (with `Retry-After: retry_after` seconds, if given) to the next `n`
    /// notifications without applying them.
    pub fn fail_next(&self, n: u32, retry_after: Option<u64>) {
        self.apply(MisbehaviourRequest {
            fail_next: Some(n),
            retry_after,
            ..Default::default()
        });
    }

    /// Answers `code` (with `Retry-After`, if given) to the next `count` notifications without
    /// applying them.
    pub fn status_next(
        &self,
        code: u16,
        count: u32,
        retry_after: Option<u64>,
    ) -> Result<(), MisbehaviourError> {
        self.state.switches.apply(&MisbehaviourRequest {
            status_next: Some(StatusNext {
                code,
                count,
                retry_after,
            }),
            ..Default::default()
        })
    }

    /// Waits this long before every answer (`None`: answers at once).
    pub fn set_delay(&self, delay: Option<Duration>) {
        let ms = delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.apply(MisbehaviourRequest {
            delay_ms: Some(ms),
            ..Default::default()
        });
    }

    /// Clears every misbehaviour (a listener that is down still comes back at its time).
    pub fn reset_misbehaviour(&self) {
        self.apply(MisbehaviourRequest {
            reset: true,
            ..Default::default()
        });
    }

    /// Closes the listener now and listens again on the same port after `down_for`; returns
    /// once it is closed (connections are refused from then on).
    pub async fn go_down(&self, down_for: Duration) -> Result<(), MisbehaviourError> {
        self.state.go_down(down_for).await
    }

    /// Whether the listener is closed right now.
    pub fn is_down(&self) -> bool {
        self.state.down.load(Ordering::SeqCst)
    }

    fn apply(&self, request: MisbehaviourRequest) {
        // Only `statusNext` can be refused, and these requests have none.
        let _ = self.state.switches.apply(&request);
        tracing::info!(?request, "requestor simulator: misbehaviour");
    }

    /// Makes the simulator a merchant with cards on file too (once).
    pub fn attach_merchant(&self, config: MerchantConfig) -> anyhow::Result<()> {
        attach(&self.state, config)
    }

    fn merchant(&self) -> anyhow::Result<Arc<Merchant>> {
        self.state
            .merchant
            .get()
            .cloned()
            .context("no merchant is attached to the requestor simulator")
    }

    /// Tokenizes `count` new cards (as `POST /sim/merchant/cards`).
    pub async fn tokenize_cards(&self, count: u64) -> anyhow::Result<Tokenized> {
        self.merchant()?.tokenize(count).await
    }

    /// Pays once with each of `token_ids`, every token on file when `None` (as `POST
    /// /sim/merchant/payments`).
    pub async fn pay(&self, token_ids: Option<Vec<String>>) -> anyhow::Result<PaymentRound> {
        Ok(self.merchant()?.pay(token_ids).await)
    }

    /// Sends a token's last authorization again (the first token's when `None`): the TSP's
    /// answer, `None` when there was no payment to replay.
    pub async fn replay_payment(
        &self,
        token_id: Option<&str>,
    ) -> anyhow::Result<Option<(String, crate::tsp::AuthorizationAnswer)>> {
        self.merchant()?.replay(token_id).await
    }

    /// The merchant's counters (zero without a merchant).
    pub fn merchant_stats(&self) -> MerchantStats {
        self.state.book.stats()
    }

    /// The merchant's tokens on file, in the order they were tokenized.
    pub fn merchant_tokens(&self) -> Vec<String> {
        self.state.book.token_ids()
    }

    /// Stops listening, lets the requests under way finish, closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        self.server
            .await
            .context("the requestor simulator's server task failed")?;
        self.state.receiver.store().close().await;
        Ok(())
    }
}

fn attach(state: &SimState, config: MerchantConfig) -> anyhow::Result<()> {
    tracing::info!(?config, "requestor simulator: merchant attached");
    let merchant = Merchant::new(config, state.book.clone())?;
    state
        .merchant
        .set(Arc::new(merchant))
        .map_err(|_| anyhow::anyhow!("a merchant is attached already"))
}

/// Runs the requestor simulator until Ctrl-C (or SIGTERM): `tokenhub requestor-sim`. Prints
/// the base URL to register at the hub once at the start, and the counters at the end.
pub async fn run(config: RequestorSimConfig) -> anyhow::Result<()> {
    let sim = RequestorSim::start(config).await?;
    println!("requestor simulator: baseUrl {}", sim.base_url());
    crate::tsp::stop_signal().await;
    let stats = sim.stats();
    let merchant = sim.merchant_stats();
    sim.shutdown().await?;
    println!(
        "requestor simulator stopped: {} merchant {}",
        serde_json::to_string(&stats).unwrap_or_default(),
        serde_json::to_string(&merchant).unwrap_or_default()
    );
    Ok(())
}
