//! The hub's shared context: the store, the keys, the clock, the TSP client and the caches every
//! request handler and worker uses. Built once at start by [`Hub::open`].

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::notification::Requestor;
use crate::domain::ProfileDefinition;
use crate::error::Error;
use crate::keys::{KeyError, Keys};
use crate::store::{Store, StoreError};
use crate::tsp_client::TspClient;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

mod tsp_health;
mod tsp_pacer;
mod ttl_cache;
mod wakeups;
pub use tsp_health::TspHealthBoard;
pub use tsp_pacer::TspPacer;
pub use ttl_cache::TtlCache;
pub use wakeups::{DeviceSignals, Signal, SignalQueue, Subscription, Wake};

pub struct Hub {
    pub store: Store,
    pub keys: Keys,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
    pub tsp: TspClient,
    /// Delivers token updates to token requestors.
    pub requestor_client: crate::requestor_client::RequestorClient,
    /// The bootstrap token: it may only manage admin keys (`None`: no bootstrap).
    bootstrap: Option<SecretString>,
    /// Wakes a device's long poll when a personalization for it is committed.
    pub devices: DeviceSignals,
    /// Wakes the outbox worker when a call is enqueued (here and on every node).
    pub outbox_wake: Wake,
    /// The background workers' states (the health check and the admin API read them).
    pub health: crate::health::Health,
    /// Wakes the requestor notifier when a token update is queued or a delivery ends (here and
    /// on every node).
    pub notify_wake: Wake,
    /// The signals this node sends the other nodes sharing the database (`hub/wakeups.rs`).
    pub signals: Arc<SignalQueue>,
    /// Paces campaigns between runner ticks.
    pub campaign_pacer: crate::pacer::Pacer,
    /// Keeps the calls to each TSP (the outbox's and inline ones) to its agreed rate, on
    /// PostgreSQL across every node.
    pub tsp_pacer: TspPacer,
    /// Each TSP's health as this node's checks find it (a `DOWN` TSP's calls are held).
    pub tsp_health: TspHealthBoard,
    /// Profile versions are immutable, so a version read once is good forever, on every node.
    profiles: RwLock<HashMap<(String, String, String), Arc<ProfileDefinition>>>,
    /// Issuers known to exist (an issuer is never removed, so a hit is good forever).
    known_issuers: RwLock<std::collections::HashSet<String>>,
    /// The TSP each issuer is bound to, as read lately (an issuer may be moved to another TSP:
    /// dropped when a node moves it, re-read after [`REQUESTOR_CACHE_TTL`] at the latest).
    issuer_tsps: RwLock<HashMap<String, (std::time::Instant, String)>>,
    /// Which client certificates the TSP listener accepts, and as which TSP.
    pub tsp_trust: Arc<crate::tls::TspTrust>,
    /// Token requestors as read lately (they change rarely; a change on another node is seen
    /// when its signal arrives, within [`REQUESTOR_CACHE_TTL`] if it is lost).
    #[allow(clippy::type_complexity)]
    requestor_cache: RwLock<Option<(std::time::Instant, Arc<HashMap<String, Arc<Requestor>>>)>>,
    /// Requestors' API keys verified lately, by key id (a key revoked on another node stops
    /// working when its signal arrives, within [`REQUESTOR_KEY_CACHE_TTL`] if it is lost; on
    /// this node at once).
    pub requestor_keys: TtlCache<Arc<VerifiedKey>>,
    /// TSPs as read lately, by id (a change on another node is seen when its signal arrives,
    /// within [`TSP_CACHE_TTL`] if it is lost; on this node at once).
    tsps: TtlCache<Arc<crate::domain::catalog::Tsp>>,
    /// When an unknown `keyIndex` may next make this node re-read the shared keys (ms).
    next_key_reload_ms: std::sync::atomic::AtomicI64,
    /// Held while the shared keys are re-read for an unknown `keyIndex`: a call that finds a
    /// re-read under way waits for it instead of deciding on the keys as they were.
    key_reload: tokio::sync::Mutex<()>,
    /// When this node last read the shared keys (ms): their states (a retirement made on another
    /// node or on the store) are read again once [`KEY_REFRESH_INTERVAL`] has passed.
    keys_read_ms: std::sync::atomic::AtomicI64,
}

/// How often at most an unknown `keyIndex` makes a node re-read the shared keys. A key imported
/// by `tokenhub keys import` while the hub runs (another process, writing the store) becomes
/// usable within this time, and a caller sending unknown indexes cannot make each call read and
/// unwrap every key.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// How long a node uses the shared keys it read before a call that names one reads them again:
/// a key retired on another node, or on the store by `tokenhub keys retire`, takes no new data
/// here after at most this (the node that retires it reads the keys at once, and on PostgreSQL
/// its signal makes every node read them at once; this covers a signal lost).
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How long a token requestor read from the store is reused.
pub const REQUESTOR_CACHE_TTL: Duration = Duration::from_secs(1);

/// How long a requestor's API key, once verified against the store, is trusted without reading it
/// again: a key revoked on another node whose signal was lost may work this long here.
pub const REQUESTOR_KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// How long a TSP read from the store is reused.
pub const TSP_CACHE_TTL: Duration = Duration::from_secs(1);

/// The most entries a [`TtlCache`] keeps.
const CACHE_CAPACITY: usize = 100_000;

/// A live requestor key as the store had it: whose it is and its secret's hash (the secret is
/// compared with it in constant time at each use).
pub struct VerifiedKey {
    pub requestor_id: String,
    pub secret_hash: Vec<u8>,
}

/// What start-up did that the operator must be told about.
#[derive(Debug, Default, Clone)]
pub struct StartupNotes {
    /// The file the bootstrap token was read from or written to (mode 0600), when it was not
    /// configured.
    pub bootstrap_token_file: Option<std::path::PathBuf>,
    /// That file was created at this start.
    pub created_bootstrap_token_file: bool,
    /// The master key file that was created, if one was.
    pub created_master_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("TOKENHUB_MASTER_KEY is required with PostgreSQL (64 hex digits); it wraps every key and data element the database holds")]
    MasterKeyRequired,
    #[error("TOKENHUB_ADMIN_TOKEN (the bootstrap token, which creates the first admin keys) is required with PostgreSQL")]
    BootstrapTokenRequired,
    #[error("TOKENHUB_ADMIN_TOKEN (the bootstrap token) must be at least {MIN_BOOTSTRAP_CHARS} characters")]
    BootstrapTokenTooShort,
    #[error("the bootstrap token file {0}: {1}")]
    BootstrapTokenFile(std::path::PathBuf, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// The hub's client certificate chain then key (PEM), read from `config.client_identity`.
fn client_identity_pem(config: &Config) -> Result<Option<Vec<u8>>, StartError> {
    let Some((cert, key)) = &config.client_identity else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| StartError::Config(format!("cannot read {}: {e}", p.display())))
    };
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(key)?);
    Ok(Some(pem))
}

impl Hub {
    pub async fn open(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, StartupNotes), StartError> {
        let mut notes = StartupNotes::default();
        let keys = open_keys(&config, &mut notes)?;
        let store = Store::connect(&config.database_url).await?;
        adopt_master_keys(&store, &keys, clock.now_ms())
            .await
            .map_err(|e| StartError::Config(format!("the master key: {}", e.chain())))?;
        let shared = store.shared_keys().await?;
        keys.load_shared_keys(&shared)?;
        warn_unowned(&shared);
        let keys_read_ms = clock.now_ms();
        let bootstrap = bootstrap_token(&config, &mut notes)?;
        let identity = client_identity_pem(&config)?;
        let signals = SignalQueue::new(store.signals_shared());
        let tsp_pacer = TspPacer::for_store(&store);
        Ok((
            Self {
                store,
                keys,
                clock,
                requestor_client: crate::requestor_client::RequestorClient::with_identity(
                    crate::requestor_client::OutboundPolicy::new(
                        config.notify.outbound_allow.clone(),
                    ),
                    config.notify.timeout,
                    identity.as_deref(),
                    &config.outbound,
                )
                .map_err(StartError::Config)?,
                tsp: TspClient::with_identity(Duration::from_secs(10), identity, &config.outbound)
                    .map_err(StartError::Config)?,
                bootstrap: bootstrap.map(SecretString::from),
                devices: DeviceSignals::new(signals.clone()),
                outbox_wake: Wake::new(Signal::Outbox, signals.clone()),
                health: Default::default(),
                notify_wake: Wake::new(Signal::Notifier, signals.clone()),
                signals,
                campaign_pacer: Default::default(),
                tsp_pacer,
                tsp_health: Default::default(),
                profiles: RwLock::new(HashMap::new()),
                known_issuers: RwLock::default(),
                issuer_tsps: RwLock::default(),
                tsp_trust: Arc::default(),
                requestor_cache: RwLock::default(),
                requestor_keys: TtlCache::new(REQUESTOR_KEY_CACHE_TTL, CACHE_CAPACITY),
                tsps: TtlCache::new(TSP_CACHE_TTL, CACHE_CAPACITY),
                next_key_reload_ms: Default::default(),
                key_reload: tokio::sync::Mutex::new(()),
                keys_read_ms: std::sync::atomic::AtomicI64::new(keys_read_ms),
                config,
            },
            notes,
        ))
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The bootstrap token, if there is one: it may only manage admin keys.
    pub fn bootstrap_token(&self) -> Option<&str> {
        self.bootstrap.as_ref().map(|t| t.expose_secret())
    }

    /// Whether the issuer is registered (positive answers cached).
    pub async fn issuer_exists(&self, issuer_id: &str) -> Result<bool, StoreError> {
        if self
            .known_issuers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(issuer_id)
        {
            return Ok(true);
        }
        let exists = self.store.issuer(issuer_id).await?.is_some();
        if exists {
            self.known_issuers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(issuer_id.to_string());
        }
        Ok(exists)
    }

    /// Whether the issuer is registered and, when the caller is bound to a TSP, bound to that TSP:
    /// another TSP's issuer is as unknown to a TSP as an unregistered one.
    pub async fn issuer_of(
        &self,
        caller_tsp: Option<&str>,
        issuer_id: &str,
    ) -> Result<bool, StoreError> {
        match caller_tsp {
            None => self.issuer_exists(issuer_id).await,
            Some(tsp) => Ok(self.issuer_tsp(issuer_id).await?.as_deref() == Some(tsp)),
        }
    }

    /// The TSP the issuer is bound to; `None`: no such issuer.
    pub async fn issuer_tsp(&self, issuer_id: &str) -> Result<Option<String>, StoreError> {
        if let Some((at, tsp)) = self
            .issuer_tsps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer_id)
        {
            if at.elapsed() < REQUESTOR_CACHE_TTL {
                return Ok(Some(tsp.clone()));
            }
        }
        let tsp = self.store.issuer(issuer_id).await?.map(|i| i.tsp_id);
        let mut cache = self.issuer_tsps.write().unwrap_or_else(|p| p.into_inner());
        match &tsp {
            Some(t) => cache.insert(
                issuer_id.to_string(),
                (std::time::Instant::now(), t.clone()),
            ),
            None => cache.remove(issuer_id),
        };
        Ok(tsp)
    }

    /// Drops the cached binding of an issuer (it was just changed).
    pub fn forget_issuer(&self, issuer_id: &str) {
        self.issuer_tsps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(issuer_id);
    }

    /// Reads the registered TSPs' client CAs and identities again into [`Hub::tsp_trust`].
    /// The hub's calls to each TSP trust its registered server CA likewise.
    pub async fn refresh_tsp_trust(&self) -> Result<(), StoreError> {
        let mut servers = Vec::new();
        let identities = self
            .store
            .tsps()
            .await?
            .into_iter()
            .filter_map(|t| {
                if let Some(ca) = &t.server_ca_pem {
                    servers.push((t.base_url.clone(), ca.clone()));
                }
                let auth = t.client_auth?;
                Some(crate::tls::TspIdentity {
                    tsp_id: t.tsp_id,
                    ca_pem: auth.ca_pem,
                    subject: auth.subject,
                    spki_sha256: auth.spki_sha256,
                })
            })
            .collect();
        self.tsp_trust.replace(identities);
        self.tsp.trust_servers(servers);
        Ok(())
    }

    /// Every token requestor by id, read at most once per [`REQUESTOR_CACHE_TTL`] (and again at
    /// once after this node changed one: see [`Hub::forget_requestors`]).
    pub async fn requestors(&self) -> Result<Arc<HashMap<String, Arc<Requestor>>>, StoreError> {
        if let Some((at, map)) = &*self
            .requestor_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
        {
            if at.elapsed() < REQUESTOR_CACHE_TTL {
                return Ok(map.clone());
            }
        }
        let map: HashMap<String, Arc<Requestor>> = self
            .store
            .all_requestors()
            .await?
            .into_iter()
            .map(|r| (r.requestor_id.clone(), Arc::new(r)))
            .collect();
        let map = Arc::new(map);
        *self
            .requestor_cache
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), map.clone()));
        Ok(map)
    }

    /// Drops the cached requestors (one was just changed).
    pub fn forget_requestors(&self) {
        *self
            .requestor_cache
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// One requestor, from [`Hub::requestors`]; one the cached set does not hold yet (made on
    /// another node since) is read from the store.
    pub async fn requestor(
        &self,
        requestor_id: &str,
    ) -> Result<Option<Arc<Requestor>>, StoreError> {
        if let Some(r) = self.requestors().await?.get(requestor_id) {
            return Ok(Some(r.clone()));
        }
        Ok(self.store.requestor(requestor_id).await?.map(Arc::new))
    }

    /// A TSP, read at most once per [`TSP_CACHE_TTL`] (and again at once after this node changed
    /// one: see [`Hub::forget_tsps`]).
    pub async fn tsp(
        &self,
        tsp_id: &str,
    ) -> Result<Option<Arc<crate::domain::catalog::Tsp>>, StoreError> {
        let now = self.now_ms();
        if let Some(t) = self.tsps.get(tsp_id, now) {
            return Ok(Some(t));
        }
        let ticket = self.tsps.ticket();
        let Some(tsp) = self.store.tsp(tsp_id).await?.map(Arc::new) else {
            return Ok(None);
        };
        self.tsps.insert(ticket, tsp_id, tsp.clone(), now);
        Ok(Some(tsp))
    }

    /// Drops the cached TSPs (one was just changed).
    pub fn forget_tsps(&self) {
        self.tsps.forget_all();
    }

    /// A profile version's definition, cached.
    pub async fn profile(
        &self,
        issuer_id: &str,
        product_id: &str,
        version: &str,
    ) -> Result<Option<Arc<ProfileDefinition>>, Error> {
        let key = (
            issuer_id.to_string(),
            product_id.to_string(),
            version.to_string(),
        );
        if let Some(p) = self
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Some(p.clone()));
        }
        let Some(json) = self
            .store
            .profile_version(issuer_id, product_id, version)
            .await?
        else {
            return Ok(None);
        };
        let def: ProfileDefinition = serde_json::from_str(&json).map_err(|e| {
            StoreError::Corrupt(format!(
                "profile version {issuer_id}/{product_id}/{version}: {e}"
            ))
        })?;
        let def = Arc::new(def);
        self.profiles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, def.clone());
        Ok(Some(def))
    }

    /// Re-reads the shared keys for a call that names a key this node does not hold, unless they
    /// were re-read so within [`KEY_RELOAD_INTERVAL`]. Concurrent calls: one of them reads, the
    /// others wait for its keys (a key imported just before them is in; deciding on the keys as
    /// they were would refuse their elements with 431).
    pub async fn reload_keys_if_due(&self) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        let _reloading = self.key_reload.lock().await;
        let now = self.now_ms();
        if now < self.next_key_reload_ms.load(Ordering::Acquire) {
            return Ok(());
        }
        self.next_key_reload_ms.store(
            now.saturating_add(KEY_RELOAD_INTERVAL.as_millis() as i64),
            Ordering::Release,
        );
        self.reload_keys().await
    }

    /// Re-reads the shared keys from the store (keys imported or retired while the hub runs).
    pub async fn reload_keys(&self) -> Result<(), Error> {
        let now = self.now_ms();
        self.keys
            .load_shared_keys(&self.store.shared_keys().await?)?;
        self.keys_read_ms
            .store(now, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether the shared keys were read longer than [`KEY_REFRESH_INTERVAL`] ago.
    pub fn keys_stale(&self) -> bool {
        let read = self.keys_read_ms.load(std::sync::atomic::Ordering::Acquire);
        self.now_ms().saturating_sub(read) >= KEY_REFRESH_INTERVAL.as_millis() as i64
    }
}

/// Records master-key version 1 on a store's first start, then takes the store's versions (each
/// checked against the keystore): new wraps use the newest active one.
pub async fn adopt_master_keys(store: &Store, keys: &Keys, now: i64) -> Result<(), Error> {
    let mut versions = store.master_key_versions().await?;
    if versions.is_empty() {
        let first = keys.blocking(|k| k.first_version(now))?;
        versions = store
            .transact(move |c| Box::pin(async move { c.record_first_master_key(&first).await }))
            .await?;
    }
    keys.blocking(|k| k.adopt_versions(&versions))?;
    Ok(())
}

/// Names the shared keys that have no owning TSP (imported before keys had owners, when the
/// owner could not be told): they decrypt nothing until imported again for their TSP.
fn warn_unowned(shared: &[crate::domain::StoredKey]) {
    let unowned: Vec<&str> = shared
        .iter()
        .filter(|k| !k.owned())
        .map(|k| k.key_index.as_str())
        .collect();
    if !unowned.is_empty() {
        tracing::warn!(
            keys = %unowned.join(","),
            "shared keys without an owning TSP decrypt nothing: import each again for its TSP \
             (tokenhub keys import --tsp TSP_ID --purpose kek|dek …)"
        );
    }
}

fn open_keys(config: &Config, notes: &mut StartupNotes) -> Result<Keys, StartError> {
    if let Some(pkcs11) = &config.keystore.pkcs11 {
        return Ok(Keys::pkcs11(pkcs11.clone())?);
    }
    if let Some(hex) = &config.master_key {
        return Ok(Keys::from_master_hex(hex)?);
    }
    let Some(path) = config.master_key_file() else {
        return Err(StartError::MasterKeyRequired);
    };
    let (keys, created) = Keys::from_key_file(&path)?;
    if created {
        notes.created_master_key_file = Some(path);
    }
    Ok(keys)
}

/// The shortest bootstrap token accepted: it must not be guessed by trying.
pub const MIN_BOOTSTRAP_CHARS: usize = 32;

/// The configured bootstrap token; else, beside an SQLite file, the one in `admin.token` (made
/// on first start, mode 0600; never printed); else (PostgreSQL) none.
fn bootstrap_token(
    config: &Config,
    notes: &mut StartupNotes,
) -> Result<Option<String>, StartError> {
    if let Some(t) = &config.admin_token {
        if t.chars().count() < MIN_BOOTSTRAP_CHARS {
            return Err(StartError::BootstrapTokenTooShort);
        }
        return Ok(Some(t.clone()));
    }
    let Some(path) = config
        .master_key_file()
        .map(|p| p.with_file_name("admin.token"))
    else {
        return Ok(None);
    };
    let fail = |e| StartError::BootstrapTokenFile(path.clone(), e);
    notes.bootstrap_token_file = Some(path.clone());
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_string())),
        Ok(_) => return Err(fail(std::io::Error::other("it is empty"))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        Err(_) => {}
    }
    use rand::RngCore;
    use std::io::Write;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let token = format!("thb_{}", hex::encode(b));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).map_err(fail)?;
    file.write_all(token.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    notes.created_bootstrap_token_file = true;
    Ok(Some(token))
}
