//! A fleet of simulated wallets (devices) in one process, speaking the hub's wallet API over real
//! HTTP and paying at the TSP simulator.
//!
//! Each device has its own X25519 key pair, registers it (`POST /wallet/v1/devices`), and runs one
//! task that long-polls for personalizations (`GET …/personalizations?waitSeconds=N`). For each
//! offer it opens the HPKE-sealed profile (mode base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM; `info` = `tokenhub/profile/v1`, `aad` = the personalization id), checks it
//! ([`profile::check`]), installs a fresh payment application for the token (profile version,
//! keys, **ATC 0**; a later personalization of the same token replaces it) and reports
//! `SUCCESS` — or `FAILURE` with the reason when the profile does not open or fails its checks.
//! An offer of a personalization already installed (the hub did not get the confirmation) is
//! confirmed again without reinstalling, so the ATC is not reset behind the TSP's back.
//!
//! Transactions ([`Fleet::transact`]): the application increments its ATC, computes the ARQC
//! ([`crate::emv`]) and submits it to the TSP simulator's `POST /sim/transactions`.
//!
//! Scale: one task and one long poll per device, one shared HTTP client, polls bounded by
//! [`FleetConfig::max_concurrent_polls`] (each open poll holds a socket). Key material and profile
//! bytes are never logged; failure reasons name DGIs, tags and sizes only.

mod config;
mod life;
pub mod light;
pub mod profile;
mod run;
mod wallet;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures::stream::{self, StreamExt};
use hpke::{Deserializable, Kem as _, Serializable};
use rand::Rng;
use reqwest::Url;
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::emv::{self, TxnData};
use crate::tsp::{TransactionAnswer, TransactionRequest, TRANSACTIONS_PATH, TSP_API_PREFIX};
use profile::PaymentProfile;
use wallet::{CallError, Offer};

pub use config::*;
use life::*;
pub use run::{run, DeviceSimConfig};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm256;

/// HPKE `info` of every profile: binds the ciphertext to this use.
pub const PROFILE_HPKE_INFO: &[u8] = b"tokenhub/profile/v1";
/// The amount every simulated transaction is for: 10.00.
pub const TXN_AMOUNT: &str = "000000001000";
/// Euro.
pub const TXN_CURRENCY: &str = "0978";
/// The longest wait the contract allows a poll.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// One simulated wallet.
struct Device {
    id: String,
    secret: <Kem as hpke::Kem>::PrivateKey,
    /// base64url (no padding) of the public key, as registered.
    public_key: String,
    behaviour: watch::Sender<Behaviour>,
}

/// An installed payment application.
struct App {
    device_id: String,
    personalization_id: String,
    profile_version: String,
    cmk_ac: Zeroizing<[u8; 16]>,
    atc: u16,
    /// Whether the hub acknowledged its SUCCESS, so that a confirmation repeated for a re-offer
    /// is counted apart.
    acknowledged: bool,
    last4: Option<String>,
    psn: Option<u8>,
    par: Option<String>,
}

impl App {
    fn view(&self, token_id: &str) -> AppView {
        AppView {
            token_id: token_id.to_string(),
            device_id: self.device_id.clone(),
            personalization_id: self.personalization_id.clone(),
            profile_version: self.profile_version.clone(),
            atc: self.atc,
            last4: self.last4.clone(),
            psn: self.psn,
            par: self.par.clone(),
        }
    }
}

#[derive(Default)]
struct Counters {
    registered: AtomicU64,
    received: AtomicU64,
    confirmed: AtomicU64,
    reconfirmed: AtomicU64,
    failures_reported: AtomicU64,
    decrypt_errors: AtomicU64,
    check_errors: AtomicU64,
    unusable_offers: AtomicU64,
    poll_errors: AtomicU64,
    result_errors: AtomicU64,
    removals: AtomicU64,
    installs: AtomicU64,
    approved: AtomicU64,
    declined: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What every device task shares.
struct Inner {
    config: FleetConfig,
    hub: Url,
    http: reqwest::Client,
    devices: Vec<Arc<Device>>,
    by_id: HashMap<String, usize>,
    /// Payment applications by token id.
    apps: Mutex<HashMap<String, App>>,
    counters: Counters,
    /// Bumped on every change a waiter may care about, so that waits need no polling.
    changes: watch::Sender<u64>,
    polls: Semaphore,
}

impl Inner {
    fn apps(&self) -> MutexGuard<'_, HashMap<String, App>> {
        // Every update is a single insert or field write: a poisoned map is still consistent.
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn count(&self, counter: &AtomicU64) {
        bump(counter);
        self.changed();
    }
}

/// Stops the device tasks when the last [`Fleet`] clone goes away.
struct Guard {
    stop: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A running fleet. Clones share it; it stops when [`Fleet::shutdown`] is called or the last
/// clone is dropped.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
    guard: Arc<Guard>,
}

impl Fleet {
    /// Generates the devices' keys, registers every device, then starts their poll loops.
    /// Fails if the configuration is unusable or a device cannot be registered (after retries
    /// of connection errors and 5xx, for a hub still starting).
    pub async fn start(config: FleetConfig) -> anyhow::Result<Fleet> {
        if config.devices == 0 {
            bail!("a fleet needs at least one device");
        }
        if !(1..=MAX_WAIT_SECONDS).contains(&config.wait_seconds) {
            bail!(
                "wait_seconds must be between 1 and {MAX_WAIT_SECONDS}, not {}",
                config.wait_seconds
            );
        }
        if config.max_concurrent_polls == 0 || config.register_concurrency == 0 {
            bail!("max_concurrent_polls and register_concurrency must be at least 1");
        }
        let hub = hub_url(&config.hub_url)?;
        crate::tsp::ensure_crypto_provider();
        let http = wallet::client(
            config.request_timeout,
            config.api_key.as_ref().map(|k| k.0.as_str()),
            config.ca_pem.as_deref(),
        )
        .context("building the HTTP client")?;

        let ids = device_ids(&config.id_prefix, config.devices);
        let devices: Vec<Arc<Device>> = tokio::task::spawn_blocking(move || {
            let mut rng = rand::rngs::OsRng;
            ids.into_iter()
                .map(|id| {
                    let (secret, public) = Kem::gen_keypair(&mut rng);
                    let (behaviour, _) = watch::channel(Behaviour::Normal);
                    Arc::new(Device {
                        id,
                        secret,
                        public_key: URL_SAFE_NO_PAD.encode(public.to_bytes()),
                        behaviour,
                    })
                })
                .collect()
        })
        .await
        .context("generating the devices' keys")?;

        let registered = AtomicU64::new(0);
        // Owned items (not `devices.iter()`): see `transact_all`.
        let failures: Vec<anyhow::Error> = stream::iter(devices.clone())
            .map(|device| {
                let (http, hub, registered) = (&http, &hub, &registered);
                async move {
                    register_with_retries(http, hub, &device, config.request_timeout).await?;
                    bump(registered);
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(config.register_concurrency)
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        if let Some(first) = failures.into_iter().next() {
            return Err(first);
        }

        let by_id = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            polls: Semaphore::new(config.max_concurrent_polls),
            config,
            hub,
            http,
            devices,
            by_id,
            apps: Mutex::new(HashMap::new()),
            counters: Counters {
                registered,
                ..Counters::default()
            },
            changes: watch::Sender::new(0),
        });
        let mut tasks = JoinSet::new();
        let n = inner.devices.len() as u32;
        for (i, device) in inner.devices.iter().enumerate() {
            let delay = inner.config.start_spread.saturating_mul(i as u32) / n;
            tasks.spawn(device_loop(
                inner.clone(),
                device.clone(),
                stop_rx.clone(),
                delay,
            ));
        }
        tracing::info!(devices = n, hub = %inner.hub, "device fleet started");
        Ok(Fleet {
            inner,
            guard: Arc::new(Guard {
                stop,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Every device id, in creation order.
    pub fn device_ids(&self) -> Vec<String> {
        self.inner.devices.iter().map(|d| d.id.clone()).collect()
    }

    /// Switches a device's behaviour; `false` for an unknown device.
    pub fn set_behaviour(&self, device_id: &str, behaviour: Behaviour) -> bool {
        match self.inner.by_id.get(device_id) {
            Some(&i) => {
                self.inner.devices[i].behaviour.send_replace(behaviour);
                true
            }
            None => false,
        }
    }

    /// The payment application installed for `token_id`, if any.
    pub fn app(&self, token_id: &str) -> Option<AppView> {
        self.inner.apps().get(token_id).map(|a| a.view(token_id))
    }

    /// Every installed application, by token id.
    pub fn apps(&self) -> Vec<AppView> {
        let mut apps: Vec<AppView> = self
            .inner
            .apps()
            .iter()
            .map(|(token, app)| app.view(token))
            .collect();
        apps.sort_by(|a, b| a.token_id.cmp(&b.token_id));
        apps
    }

    pub fn status(&self) -> FleetStatus {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FleetStatus {
            registered: get(&c.registered),
            personalizations_received: get(&c.received),
            confirmed: get(&c.confirmed),
            reconfirmed: get(&c.reconfirmed),
            failures_reported: get(&c.failures_reported),
            decrypt_errors: get(&c.decrypt_errors),
            check_errors: get(&c.check_errors),
            unusable_offers: get(&c.unusable_offers),
            poll_errors: get(&c.poll_errors),
            result_errors: get(&c.result_errors),
            removals: get(&c.removals),
            apps_installed: self.inner.apps().len() as u64,
            installs: get(&c.installs),
            transactions_approved: get(&c.approved),
            transactions_declined: get(&c.declined),
        }
    }

    /// Waits until `done(status)` holds; `false` if `timeout` passed first.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&FleetStatus) -> bool) -> bool {
        let mut changes = self.inner.changes.subscribe();
        tokio::time::timeout(timeout, async {
            while !done(&self.status()) {
                // The sender lives in `inner`, which `self` holds: this cannot fail.
                let _ = changes.changed().await;
            }
        })
        .await
        .is_ok()
    }

    /// Waits until at least `n` applications are installed; `false` on timeout.
    pub async fn wait_for_apps(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.apps_installed >= n as u64)
            .await
    }

    /// Waits until `token_id` has an application satisfying `done` (e.g. a given profile
    /// version after a re-personalization); `None` on timeout.
    pub async fn wait_for_app(
        &self,
        token_id: &str,
        timeout: Duration,
        done: impl Fn(&AppView) -> bool,
    ) -> Option<AppView> {
        let mut changes = self.inner.changes.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(app) = self.app(token_id).filter(|a| done(a)) {
                    return app;
                }
                let _ = changes.changed().await;
            }
        })
        .await
        .ok()
    }

    /// One transaction on `token_id`'s application: ATC + 1, ARQC, `POST
    /// {tsp_sim_base}/sim/transactions`. `tsp_sim_base` is the TSP simulator's root
    /// ([`crate::TspSimHandle::sim_url`]), e.g. `http://127.0.0.1:9000`; its TSP API base URL
    /// (`…/tsp/trapi/v2.0`) is accepted as well.
    pub async fn transact(&self, token_id: &str, tsp_sim_base: &str) -> TxnOutcome {
        self.send_transaction(token_id, tsp_sim_base, true).await
    }

    /// Sends a transaction with the ATC of the last one again (fresh unpredictable number, valid
    /// cryptogram): what a cloned or replayed application would do. The TSP must decline it.
    pub async fn replay_last(&self, token_id: &str, tsp_sim_base: &str) -> TxnOutcome {
        self.send_transaction(token_id, tsp_sim_base, false).await
    }

    /// `per_token` transactions on every installed application, one after the other per token
    /// (so their ATCs arrive in order), up to `concurrency` tokens at once.
    pub async fn transact_all(
        &self,
        tsp_sim_base: &str,
        per_token: usize,
        concurrency: usize,
    ) -> TxnSummary {
        let mut tokens: Vec<String> = self.inner.apps().keys().cloned().collect();
        tokens.sort();
        let count = tokens.len();
        // Owned ids: a stream over borrowed ones trips the compiler's higher-ranked lifetime
        // check once the future is spawned.
        let outcomes: Vec<Vec<TxnOutcome>> = stream::iter(tokens)
            .map(|token_id| async move {
                let mut outcomes = Vec::with_capacity(per_token);
                for _ in 0..per_token {
                    outcomes.push(self.transact(&token_id, tsp_sim_base).await);
                }
                outcomes
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let mut summary = TxnSummary {
            tokens: count,
            ..TxnSummary::default()
        };
        for outcome in outcomes.into_iter().flatten() {
            if outcome.approved {
                summary.approved += 1;
            } else {
                *summary.declined.entry(outcome.reason).or_insert(0) += 1;
            }
        }
        summary
    }

    async fn send_transaction(
        &self,
        token_id: &str,
        tsp_sim_base: &str,
        next_atc: bool,
    ) -> TxnOutcome {
        let outcome = |atc, approved, reason: &str| TxnOutcome {
            token_id: token_id.to_string(),
            atc,
            approved,
            reason: reason.to_string(),
        };
        let request = {
            let mut apps = self.inner.apps();
            let Some(app) = apps.get_mut(token_id) else {
                return outcome(None, false, "NO_APP");
            };
            if next_atc {
                let Some(atc) = app.atc.checked_add(1) else {
                    return outcome(None, false, "ATC_EXHAUSTED");
                };
                app.atc = atc;
            }
            let unpredictable_number: [u8; 4] = rand::random();
            let txn = TxnData {
                amount: [0, 0, 0, 0, 0x10, 0x00],
                currency: [0x09, 0x78],
                unpredictable_number,
                atc: app.atc,
            };
            TransactionRequest {
                token_id: token_id.to_string(),
                atc: app.atc,
                amount: TXN_AMOUNT.to_string(),
                currency: TXN_CURRENCY.to_string(),
                unpredictable_number: hex::encode_upper(unpredictable_number),
                cryptogram: hex::encode_upper(emv::application_cryptogram(&app.cmk_ac, &txn)),
            }
        };
        let atc = Some(request.atc);
        // The TSP's baseUrl as registered at the hub (`…/tsp/trapi/v2.0`) is taken too.
        let root = tsp_sim_base.trim_end_matches('/');
        let root = root.strip_suffix(TSP_API_PREFIX).unwrap_or(root);
        let target = format!("{root}{TRANSACTIONS_PATH}");
        let sent = self
            .inner
            .http
            .post(target)
            .timeout(self.inner.config.request_timeout)
            .json(&request)
            .send()
            .await;
        let result = match sent {
            Err(e) => {
                tracing::warn!(%token_id, error = %e.without_url(), "transaction not sent");
                outcome(atc, false, "TSP_UNREACHABLE")
            }
            Ok(response) => match response.json::<TransactionAnswer>().await {
                Ok(answer) => outcome(atc, answer.approved, &answer.reason),
                Err(_) => outcome(atc, false, "BAD_ANSWER"),
            },
        };
        if result.approved {
            bump(&self.inner.counters.approved);
        } else {
            bump(&self.inner.counters.declined);
        }
        tracing::debug!(%token_id, atc = request.atc, reason = %result.reason, "transaction");
        result
    }

    /// Stops every device (polls under way are abandoned) and waits for their tasks. Other
    /// clones of the fleet keep their views of the applications but no longer poll.
    pub async fn shutdown(&self) {
        self.guard.stop.send_replace(true);
        let mut tasks =
            std::mem::take(&mut *self.guard.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        while tasks.join_next().await.is_some() {}
        tracing::info!(status = ?self.status(), "device fleet stopped");
    }
}

/// `hub_url` parsed, after checking it is http(s) with a host.
fn hub_url(hub_url: &str) -> anyhow::Result<Url> {
    let url = Url::parse(hub_url).with_context(|| format!("hub URL {hub_url:?}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("hub URL {hub_url:?} must be an http:// or https:// URL with a host");
    }
    Ok(url)
}

/// `prefix` + index, zero-padded to at least five digits so that ids sort in creation order.
fn device_ids(prefix: &str, n: usize) -> Vec<String> {
    let width = n.saturating_sub(1).to_string().len().max(5);
    (0..n).map(|i| format!("{prefix}{i:0width$}")).collect()
}

/// Backoff for retries: doubles from 200 ms up to 10 s, with ±25 % jitter so that a fleet that
/// failed together does not retry together.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1u32 << attempt.min(6));
    let base = base.min(Duration::from_secs(10));
    base.mul_f64(rand::thread_rng().gen_range(0.75..1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_futures_can_be_spawned() {
        fn is_send<T: Send>(_: &T) {}
        let fleet = Fleet::start(FleetConfig::new("http://127.0.0.1:1", 1));
        is_send(&fleet);
        let run = run(DeviceSimConfig::new(FleetConfig::new(
            "http://127.0.0.1:1",
            1,
        )));
        is_send(&run);
    }

    #[test]
    fn device_ids_are_zero_padded_and_unique() {
        assert_eq!(device_ids("d-", 2), vec!["d-00000", "d-00001"]);
        let many = device_ids("", 123_456);
        assert_eq!(many[0], "000000");
        assert_eq!(many[123_455], "123455");
        let unique: std::collections::HashSet<_> = many.iter().collect();
        assert_eq!(unique.len(), many.len());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(250));
        assert!(backoff(3) >= Duration::from_millis(1200));
        assert!(backoff(40) <= Duration::from_millis(12_500));
    }

    #[test]
    fn the_default_start_spread_grows_with_the_fleet_up_to_two_seconds() {
        assert_eq!(
            FleetConfig::new("http://h", 10).start_spread,
            Duration::from_millis(2)
        );
        assert_eq!(
            FleetConfig::new("http://h", 100_000).start_spread,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn hub_urls_must_be_http() {
        assert!(hub_url("http://127.0.0.1:1").is_ok());
        assert!(hub_url("https://hub.example/").is_ok());
        assert!(hub_url("127.0.0.1:1").is_err());
        assert!(hub_url("ftp://x").is_err());
    }

    #[test]
    fn the_demo_amount_and_currency_are_the_bcd_the_cryptogram_signs() {
        let parsed = TxnData::parse(1, TXN_AMOUNT, TXN_CURRENCY, "00000000").unwrap();
        assert_eq!(parsed.amount, [0, 0, 0, 0, 0x10, 0x00]);
        assert_eq!(parsed.currency, [0x09, 0x78]);
    }
}
