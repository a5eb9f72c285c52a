//! How a fleet is run (its configuration and the devices' behaviours), and what a test or the
//! demo may see of it: installed applications, the fleet's status, transactions' outcomes.

use super::*;

/// How to run a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The hub's base URL, e.g. `http://127.0.0.1:8080` (the wallet API is under `/wallet/v1`).
    pub hub_url: String,
    /// How many devices to simulate.
    pub devices: usize,
    /// Device ids are this prefix and a zero-padded index: `device-00000`, `device-00001`…
    pub id_prefix: String,
    /// `waitSeconds` of each long poll, 1..=30.
    pub wait_seconds: u64,
    /// How many polls (with the handling of their answers: results posted) may be under way at
    /// once across the fleet. Each holds a socket (two when the hub runs in the same process), so
    /// this keeps a large fleet within the open-files limit; devices beyond it wait their turn.
    pub max_concurrent_polls: usize,
    /// How many registrations run at once during [`Fleet::start`].
    pub register_concurrency: usize,
    /// Devices start polling spread evenly over this time, so that a large fleet does not hit
    /// the hub with every poll in the same instant.
    pub start_spread: Duration,
    /// Time allowed for a registration, a result or a transaction (a poll gets `wait_seconds`
    /// more).
    pub request_timeout: Duration,
    /// The CA (PEM) the hub's wallet listener certificate is issued from, trusted instead of the
    /// public roots; `None`: the public roots (or plain HTTP).
    pub ca_pem: Option<String>,
    /// The wallet provider's API key every wallet call carries (the hub refuses calls without).
    pub api_key: Option<ApiKey>,
}

/// A wallet provider's API key; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FleetConfig {
    /// Defaults: ids `device-NNNNN`, 20 s polls, at most 4,096 open polls, 32 registrations at
    /// once, start spread of 0.2 ms per device up to 2 s, 10 s requests.
    pub fn new(hub_url: impl Into<String>, devices: usize) -> Self {
        Self {
            hub_url: hub_url.into(),
            devices,
            id_prefix: "device-".to_string(),
            wait_seconds: 20,
            max_concurrent_polls: 4096,
            register_concurrency: 32,
            start_spread: Duration::from_micros(200)
                .saturating_mul(devices.try_into().unwrap_or(u32::MAX))
                .min(Duration::from_secs(2)),
            request_timeout: Duration::from_secs(10),
            api_key: None,
            ca_pem: None,
        }
    }
}

/// How a device behaves, switchable at run time ([`Fleet::set_behaviour`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Polls, installs and confirms.
    Normal,
    /// Does not poll until switched back (a poll under way is abandoned).
    Offline,
    /// Receives and checks, then reports FAILURE instead of installing.
    ReportFailure,
    /// Receives and checks, then neither installs nor reports anything (the hub offers it again
    /// later).
    NeverConfirm,
}

/// The reason a [`Behaviour::ReportFailure`] device reports.
pub const SIMULATED_FAILURE_REASON: &str = "simulated failure: the device refused the profile";

/// What a test or the demo may see of an installed payment application: never its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppView {
    pub token_id: String,
    pub device_id: String,
    /// The personalization that installed it.
    pub personalization_id: String,
    /// As the hub sent it (a number is kept as its decimal text).
    pub profile_version: String,
    /// The last ATC used; 0 right after installation.
    pub atc: u16,
    /// From the profile's record: the token PAN's last four digits, PSN and PAR, when present.
    pub last4: Option<String>,
    pub psn: Option<u8>,
    pub par: Option<String>,
}

/// The fleet's counters ([`Fleet::status`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetStatus {
    pub registered: u64,
    /// Offers received; an offer made again (not confirmed yet) counts again.
    pub personalizations_received: u64,
    /// Installations whose SUCCESS the hub acknowledged (once each: `installs == confirmed`
    /// when every confirmation got through).
    pub confirmed: u64,
    /// SUCCESS acknowledged again for an application already confirmed: the hub offered the
    /// same personalization again (it had not recorded the first confirmation).
    pub reconfirmed: u64,
    /// FAILURE results the hub acknowledged (broken profiles and simulated failures).
    pub failures_reported: u64,
    /// Profiles that did not open (base64, encapsulated key, AEAD).
    pub decrypt_errors: u64,
    /// Offers that were malformed or whose profile failed its checks.
    pub check_errors: u64,
    /// Offers without a usable `personalizationId`: nothing can be reported for them.
    pub unusable_offers: u64,
    /// Polls that failed (no answer, non-200, not a JSON list).
    pub poll_errors: u64,
    /// Results the hub never acknowledged, after retries.
    pub result_errors: u64,
    /// Deleted tokens the hub told a device to remove, and that it removed.
    pub removals: u64,
    /// Payment applications held now (one per token).
    pub apps_installed: u64,
    /// Installations so far, replacements included.
    pub installs: u64,
    /// Transactions sent and approved, and sent and not approved (declined by the TSP, or no
    /// usable answer). `NO_APP` and `ATC_EXHAUSTED` send nothing and are not counted.
    pub transactions_approved: u64,
    pub transactions_declined: u64,
}

/// The outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    pub token_id: String,
    /// The ATC sent; `None` when nothing was sent.
    pub atc: Option<u16>,
    pub approved: bool,
    /// The TSP's reason (`APPROVED`, `REPLAY`, `BAD_CRYPTOGRAM`, `UNKNOWN_TOKEN`,
    /// `TOKEN_NOT_ACTIVE`, …), or the device's own when the TSP did not decide: `NO_APP` (no
    /// application for that token), `ATC_EXHAUSTED`, `TSP_UNREACHABLE`, `BAD_ANSWER`.
    pub reason: String,
}

/// The outcomes of [`Fleet::transact_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnSummary {
    /// Tokens that transacted.
    pub tokens: usize,
    pub approved: u64,
    /// By reason.
    pub declined: BTreeMap<String, u64>,
}

impl TxnSummary {
    pub fn declined_total(&self) -> u64 {
        self.declined.values().sum()
    }
}
