//! Metrics: every name the hub exports, and one function per thing that happens, called from the
//! site where it happens. The `metrics` facade records; `metrics-exporter-prometheus` renders
//! Prometheus's text format, served at `/metrics` on the admin listener (`http/metrics.rs`).
//!
//! Names follow Prometheus's conventions: the `tokenhub_` prefix, the unit in the name
//! (`_seconds`, `_bytes`), `_total` on counters, durations in seconds. **Labels come from bounded
//! sets only**: operation and call names, response codes, outcomes, and the ids of registered
//! entities (TSPs, requestors, campaigns, listeners). No label ever carries a token id, a
//! correlation id, a device id or any value: they would grow the series without bound and put
//! what the hub keeps private into a monitoring system.
//!
//! Gauges that need the database (backlogs, oldest ages, campaign counts) are set just before a
//! scrape renders (`flows::gauges`); gauges no longer set for [`GAUGE_IDLE`] (a campaign finished
//! long ago) leave the output.

use ::metrics::{counter, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a gauge stays in the output after it was last set.
pub const GAUGE_IDLE: Duration = Duration::from_secs(600);

/// Buckets of the latency histograms (seconds): from a fast `/data` to a TSP call's time-out.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the time from complete data to the device's confirmation (seconds): from a device
/// that polls at once to one that was offline for a day.
const CONFIRMATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];
/// Buckets of the elements carried by one `/data` or `/newData` call (the contract allows 200).
const ELEMENT_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 200.0];

pub const TSP_API_REQUESTS: &str = "tokenhub_tsp_api_requests_total";
pub const TSP_API_DURATION: &str = "tokenhub_tsp_api_request_duration_seconds";
pub const TSP_API_ELEMENTS: &str = "tokenhub_tsp_api_call_elements";
pub const TSP_CALLS: &str = "tokenhub_tsp_calls_total";
pub const TSP_CALL_DURATION: &str = "tokenhub_tsp_call_duration_seconds";
pub const OUTBOX_PENDING: &str = "tokenhub_tsp_outbox_pending_calls";
pub const OUTBOX_OLDEST: &str = "tokenhub_tsp_outbox_oldest_pending_age_seconds";
pub const OUTBOX_DEAD: &str = "tokenhub_tsp_outbox_dead_calls";
pub const PERSONALIZATIONS: &str = "tokenhub_personalizations_total";
pub const PERSO_CONFIRMATION: &str = "tokenhub_personalization_confirmation_seconds";
pub const PERSONALIZATIONS_PENDING: &str = "tokenhub_personalizations_pending";
pub const PERSONALIZATIONS_OLDEST: &str = "tokenhub_personalizations_oldest_pending_age_seconds";
pub const CAMPAIGN_TOKENS: &str = "tokenhub_campaign_tokens";
pub const CAMPAIGN_RUNNING: &str = "tokenhub_campaign_running";
pub const NOTIFICATIONS: &str = "tokenhub_notifications_total";
pub const NOTIFICATIONS_PENDING: &str = "tokenhub_notifications_pending";
pub const NOTIFICATIONS_OLDEST: &str = "tokenhub_notifications_oldest_pending_age_seconds";
pub const NOTIFICATIONS_DEAD: &str = "tokenhub_notifications_dead";
pub const REQUESTOR_DISABLED: &str = "tokenhub_requestor_endpoint_disabled";
pub const STORE_TX_DURATION: &str = "tokenhub_store_transaction_duration_seconds";
pub const STORE_WRITER_QUEUE: &str = "tokenhub_store_writer_queue_depth";
pub const STORE_WRITER_CAPACITY: &str = "tokenhub_store_writer_queue_capacity";
pub const STORE_POOL_CONNECTIONS: &str = "tokenhub_store_pool_connections";
pub const STORE_POOL_IDLE: &str = "tokenhub_store_pool_idle_connections";
pub const TLS_EXPIRY: &str = "tokenhub_tls_certificate_expiry_timestamp_seconds";
pub const TSP_UP: &str = "tokenhub_tsp_up";
pub const TSP_HEALTH_CHECKS: &str = "tokenhub_tsp_health_checks_total";
pub const TSP_HEALTH_CHECK_DURATION: &str = "tokenhub_tsp_health_check_duration_seconds";
pub const LOST_CLAIMS: &str = "tokenhub_lost_claims_total";
pub const TSP_SLOTS_MISSED: &str = "tokenhub_tsp_slots_missed_total";

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Installs the process's recorder once (later calls do nothing). Before it, every metric call
/// is a no-op.
pub fn install() {
    EXPORTER.get_or_init(|| {
        let buckets = [
            (TSP_API_DURATION, SECONDS_BUCKETS),
            (TSP_CALL_DURATION, SECONDS_BUCKETS),
            (TSP_HEALTH_CHECK_DURATION, SECONDS_BUCKETS),
            (STORE_TX_DURATION, SECONDS_BUCKETS),
            (PERSO_CONFIRMATION, CONFIRMATION_BUCKETS),
            (TSP_API_ELEMENTS, ELEMENT_BUCKETS),
        ];
        let recorder = buckets
            .iter()
            .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
                b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
            })
            .expect("the buckets are not empty")
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        let process = metrics_process::Collector::default();
        process.describe();
        describe();
        Exporter { handle, process }
    });
}

/// The current metrics in Prometheus's text format (`None` before [`install`]). Gauges kept in
/// the database are set by the caller first.
pub fn render() -> Option<String> {
    let e = EXPORTER.get()?;
    e.process.collect();
    e.handle.run_upkeep();
    Some(e.handle.render())
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric's kind, unit and help text.
const DESCRIPTIONS: &[(&str, Kind, Unit, &str)] = &[
    (
        TSP_API_REQUESTS,
        Kind::Counter,
        Unit::Count,
        "TSP API requests answered, by calling TSP, operation and response code (ok: 204)",
    ),
    (
        TSP_API_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        "time to answer a TSP API request",
    ),
    (
        TSP_API_ELEMENTS,
        Kind::Histogram,
        Unit::Count,
        "data elements in one /data or /newData call",
    ),
    (
        TSP_CALLS,
        Kind::Counter,
        Unit::Count,
        "the hub's calls to TSPs, by TSP, call and outcome (done, unavailable, refused, protocol)",
    ),
    (
        TSP_CALL_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        "time of one call to a TSP",
    ),
    (
        OUTBOX_PENDING,
        Kind::Gauge,
        Unit::Count,
        "calls owed to a TSP, not yet made",
    ),
    (
        OUTBOX_OLDEST,
        Kind::Gauge,
        Unit::Seconds,
        "age of the oldest call owed to a TSP",
    ),
    (
        OUTBOX_DEAD,
        Kind::Gauge,
        Unit::Count,
        "calls a TSP refused for good, kept as dead",
    ),
    (
        PERSONALIZATIONS,
        Kind::Counter,
        Unit::Count,
        "personalization events: queued, offered, reoffered, confirmed, failed",
    ),
    (
        PERSO_CONFIRMATION,
        Kind::Histogram,
        Unit::Seconds,
        "time from a personalization's complete data to the device's confirmation",
    ),
    (
        PERSONALIZATIONS_PENDING,
        Kind::Gauge,
        Unit::Count,
        "personalizations not yet confirmed or failed",
    ),
    (
        PERSONALIZATIONS_OLDEST,
        Kind::Gauge,
        Unit::Seconds,
        "age of the oldest pending personalization",
    ),
    (
        CAMPAIGN_TOKENS,
        Kind::Gauge,
        Unit::Count,
        "a running, paused or recently finished campaign's tokens, by step",
    ),
    (
        CAMPAIGN_RUNNING,
        Kind::Gauge,
        Unit::Count,
        "1 while a campaign runs, 0 otherwise",
    ),
    (
        NOTIFICATIONS,
        Kind::Counter,
        Unit::Count,
        "notifications to requestors: queued, delivered, retried, dead",
    ),
    (
        NOTIFICATIONS_PENDING,
        Kind::Gauge,
        Unit::Count,
        "notifications not yet delivered",
    ),
    (
        NOTIFICATIONS_OLDEST,
        Kind::Gauge,
        Unit::Seconds,
        "age of the oldest undelivered notification",
    ),
    (
        NOTIFICATIONS_DEAD,
        Kind::Gauge,
        Unit::Count,
        "notifications given up (dead letters)",
    ),
    (
        REQUESTOR_DISABLED,
        Kind::Gauge,
        Unit::Count,
        "1 when a requestor's endpoint is disabled",
    ),
    (
        STORE_TX_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        "time of one store transaction, commit included",
    ),
    (
        STORE_WRITER_QUEUE,
        Kind::Gauge,
        Unit::Count,
        "transactions waiting for the SQLite writer",
    ),
    (
        STORE_WRITER_CAPACITY,
        Kind::Gauge,
        Unit::Count,
        "transactions the SQLite writer's queue holds",
    ),
    (
        STORE_POOL_CONNECTIONS,
        Kind::Gauge,
        Unit::Count,
        "open connections of the read pool",
    ),
    (
        STORE_POOL_IDLE,
        Kind::Gauge,
        Unit::Count,
        "idle connections of the read pool",
    ),
    (
        TLS_EXPIRY,
        Kind::Gauge,
        Unit::Seconds,
        "when a listener's certificate expires (Unix time)",
    ),
    (
        TSP_UP,
        Kind::Gauge,
        Unit::Count,
        "1 while a TSP's health checks find it UP, 0 while DOWN (its calls are held); absent until checked",
    ),
    (
        TSP_HEALTH_CHECKS,
        Kind::Counter,
        Unit::Count,
        "the hub's health checks of TSPs, by TSP and outcome (ok, failed)",
    ),
    (
        TSP_HEALTH_CHECK_DURATION,
        Kind::Histogram,
        Unit::Seconds,
        "time of one health check of a TSP, failed ones included",
    ),
    (
        LOST_CLAIMS,
        Kind::Counter,
        Unit::Count,
        "outcomes not recorded because the row was claimed again after the lease ran out, by work (tsp_call, notification)",
    ),
    (
        TSP_SLOTS_MISSED,
        Kind::Counter,
        Unit::Count,
        "calls to a TSP that woke too late for their slot of its rate and waited for another, by TSP",
    ),
];

/// The name of every metric the hub exports (the process's own `process_*` aside).
pub fn names() -> impl Iterator<Item = &'static str> {
    DESCRIPTIONS.iter().map(|d| d.0)
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    for &(name, kind, unit, help) in DESCRIPTIONS {
        match kind {
            Kind::Counter => describe_counter!(name, unit, help),
            Kind::Gauge => describe_gauge!(name, unit, help),
            Kind::Histogram => describe_histogram!(name, unit, help),
        }
    }
}

/// The `tsp` label of a TSP API request from the development port bound to no TSP: no
/// registered TSP's id can take it (ids are of `A-Z a-z 0-9 . _ -`).
pub const UNBOUND_TSP: &str = "(unbound)";

/// A TSP API request answered: `tsp` is the calling TSP's registered id (`None`: the development
/// port bound to none), `code` the contract's response code, `None` for `204`. The latency is the
/// hub's own, so its histogram stays by operation alone, keeping its series few.
pub fn tsp_api_request(
    tsp: Option<&str>,
    operation: &'static str,
    code: Option<u16>,
    elapsed: Duration,
) {
    let code = code.map_or_else(|| "ok".to_string(), |c| c.to_string());
    let tsp = tsp.unwrap_or(UNBOUND_TSP).to_string();
    counter!(TSP_API_REQUESTS, "tsp" => tsp, "operation" => operation, "response_code" => code)
        .increment(1);
    histogram!(TSP_API_DURATION, "operation" => operation).record(elapsed.as_secs_f64());
}

/// The data elements one `/data` or `/newData` call carried.
pub fn tsp_api_elements(operation: &'static str, elements: usize) {
    histogram!(TSP_API_ELEMENTS, "operation" => operation).record(elements as f64);
}

/// How one call to a TSP ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Done,
    /// Not reached, timed out, `5xx` or `921`: tried again.
    Unavailable,
    /// Refused for good by the TSP (an outbox call is then dead).
    Refused,
    /// An answer outside the contract, or no call made (an endpoint the hub may not call).
    Protocol,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Done => "done",
            CallOutcome::Unavailable => "unavailable",
            CallOutcome::Refused => "refused",
            CallOutcome::Protocol => "protocol",
        }
    }
}

/// One call the hub made to a TSP (`tsp` is a registered TSP's id, `call` the contract's name).
pub fn tsp_call(tsp: &str, call: &'static str, outcome: CallOutcome, elapsed: Duration) {
    let tsp = tsp.to_string();
    counter!(TSP_CALLS, "tsp" => tsp.clone(), "call" => call, "outcome" => outcome.as_str())
        .increment(1);
    histogram!(TSP_CALL_DURATION, "tsp" => tsp, "call" => call).record(elapsed.as_secs_f64());
}

/// What happened to personalizations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersoEvent {
    Queued,
    /// Offered to the device for the first time.
    Offered,
    /// Offered again (the device did not confirm within its window).
    Reoffered,
    Confirmed,
    Failed,
}

/// A device confirmed a personalization `waited` after its data was complete (queued).
pub fn personalization_confirmed(waited: Duration) {
    histogram!(PERSO_CONFIRMATION).record(waited.as_secs_f64());
}

pub fn personalizations(event: PersoEvent, n: u64) {
    if n == 0 {
        return;
    }
    let event = match event {
        PersoEvent::Queued => "queued",
        PersoEvent::Offered => "offered",
        PersoEvent::Reoffered => "reoffered",
        PersoEvent::Confirmed => "confirmed",
        PersoEvent::Failed => "failed",
    };
    counter!(PERSONALIZATIONS, "event" => event).increment(n);
}

/// What happened to a requestor's notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationEvent {
    Queued,
    Delivered,
    /// An attempt failed; it is tried again.
    Retried,
    /// Given up after the last retry, or refused for good.
    Dead,
}

pub fn notifications(requestor: &str, event: NotificationEvent, n: u64) {
    if n == 0 {
        return;
    }
    let event = match event {
        NotificationEvent::Queued => "queued",
        NotificationEvent::Delivered => "delivered",
        NotificationEvent::Retried => "retried",
        NotificationEvent::Dead => "dead",
    };
    counter!(NOTIFICATIONS, "requestor" => requestor.to_string(), "event" => event).increment(n);
}

/// One store transaction, from its submission to its commit (or rollback).
pub fn store_transaction(elapsed: Duration) {
    histogram!(STORE_TX_DURATION).record(elapsed.as_secs_f64());
}

/// A backlog owed to one TSP: calls not yet made, the oldest's age, and the dead ones.
pub fn outbox(tsp: &str, pending: u64, oldest_age: Duration, dead: u64) {
    gauge!(OUTBOX_PENDING, "tsp" => tsp.to_string()).set(pending as f64);
    gauge!(OUTBOX_OLDEST, "tsp" => tsp.to_string()).set(oldest_age.as_secs_f64());
    gauge!(OUTBOX_DEAD, "tsp" => tsp.to_string()).set(dead as f64);
}

/// A requestor's backlog: not yet delivered, the oldest's age, dead letters, endpoint disabled.
pub fn requestor(id: &str, pending: u64, oldest_age: Duration, dead: u64, disabled: bool) {
    gauge!(NOTIFICATIONS_PENDING, "requestor" => id.to_string()).set(pending as f64);
    gauge!(NOTIFICATIONS_OLDEST, "requestor" => id.to_string()).set(oldest_age.as_secs_f64());
    gauge!(NOTIFICATIONS_DEAD, "requestor" => id.to_string()).set(dead as f64);
    gauge!(REQUESTOR_DISABLED, "requestor" => id.to_string()).set(f64::from(u8::from(disabled)));
}

/// Personalizations still pending, and the oldest's age.
pub fn pending_personalizations(pending: u64, oldest_age: Duration) {
    gauge!(PERSONALIZATIONS_PENDING).set(pending as f64);
    gauge!(PERSONALIZATIONS_OLDEST).set(oldest_age.as_secs_f64());
}

/// A campaign's tokens in one step (`step` is one of the domain's step names).
pub fn campaign_tokens(campaign: &str, step: &'static str, n: u64) {
    gauge!(CAMPAIGN_TOKENS, "campaign" => campaign.to_string(), "step" => step).set(n as f64);
}

pub fn campaign_running(campaign: &str, running: bool) {
    gauge!(CAMPAIGN_RUNNING, "campaign" => campaign.to_string()).set(f64::from(u8::from(running)));
}

/// The store's load: the SQLite writer's queue (depth, capacity) and the read pool's connections
/// (open, idle).
pub fn store_load(writer: Option<(usize, usize)>, pool: (usize, usize)) {
    if let Some((depth, capacity)) = writer {
        gauge!(STORE_WRITER_QUEUE).set(depth as f64);
        gauge!(STORE_WRITER_CAPACITY).set(capacity as f64);
    }
    gauge!(STORE_POOL_CONNECTIONS).set(pool.0 as f64);
    gauge!(STORE_POOL_IDLE).set(pool.1 as f64);
}

/// When the certificate of `listener` (tsp, wallet, admin) expires, in Unix seconds.
pub fn tls_expiry(listener: &'static str, not_after_unix: i64) {
    gauge!(TLS_EXPIRY, "listener" => listener).set(not_after_unix as f64);
}

/// One health check of TSP `tsp` (a registered TSP's id): whether it answered `2xx`, how long it
/// took, and the TSP's state after it (`Some(true)` UP, `Some(false)` DOWN, `None` not known yet).
pub fn tsp_health_check(tsp: &str, ok: bool, elapsed: Duration, up: Option<bool>) {
    let tsp = tsp.to_string();
    let outcome = if ok { "ok" } else { "failed" };
    counter!(TSP_HEALTH_CHECKS, "tsp" => tsp.clone(), "outcome" => outcome).increment(1);
    histogram!(TSP_HEALTH_CHECK_DURATION, "tsp" => tsp.clone()).record(elapsed.as_secs_f64());
    if let Some(up) = up {
        gauge!(TSP_UP, "tsp" => tsp).set(f64::from(u8::from(up)));
    }
}

/// The work a claim covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimedWork {
    TspCall,
    Notification,
}

/// `n` outcomes of `work` that found their row claimed again (their lease had run out): not
/// recorded.
pub fn lost_claims(work: ClaimedWork, n: u64) {
    if n == 0 {
        return;
    }
    let work = match work {
        ClaimedWork::TspCall => "tsp_call",
        ClaimedWork::Notification => "notification",
    };
    counter!(LOST_CLAIMS, "work" => work).increment(n);
}

/// A call to `tsp_id` woke too late for its slot of the TSP's rate.
pub fn tsp_slot_missed(tsp_id: &str) {
    counter!(TSP_SLOTS_MISSED, "tsp" => tsp_id.to_string()).increment(1);
}
