//! Time in the lifecycle tests: waiting until something holds, the timestamps of token updates,
//! moving the hub's clock, and the calls the hub makes to the TSP on its own.

use super::{profile_definition, TestApp, TspCall, ISSUER, PRODUCT};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// How long [`eventually`] waits.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Polls `probe` every 20 ms until it gives `Some`; fails the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `lastUpdateTimestamp` values: `ms` milliseconds after 2035-01-01T00:00:00Z, later than
/// anything the hub stamps itself (its clock starts at the system time).
pub fn at(ms: i64) -> String {
    timestamp(BASE_MS + ms)
}

/// The hub's own rendering of a timestamp: RFC 3339, UTC, milliseconds.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 2035-01-01T00:00:00Z.
pub const BASE_MS: i64 = 2_051_222_400_000;

/// `{"issuerId": ISSUER, "lastUpdateTimestamp": ts}`.
pub fn update(ts: &str) -> Value {
    json!({"issuerId": ISSUER, "lastUpdateTimestamp": ts})
}

/// An update that sets `tokenState`.
pub fn update_state(ts: &str, state: &str) -> Value {
    let mut u = update(ts);
    u["tokenState"] = json!(state);
    u
}

impl TestApp {
    /// Deploys a new profile version `version` (the same dictionary) with a re-personalization
    /// campaign over the ACTIVE tokens, and waits until the hub asked the TSP to recover `token_id`
    /// (`repersoToken`) and took its answer in (the recovery's time to live runs from there).
    /// Returns the `x-correlation-id` of that call, which the TSP's `/newData` carries.
    pub async fn start_recovery(&self, token_id: &str, version: &str) -> String {
        let r = self
            .put_profile_version(ISSUER, PRODUCT, version, &profile_definition())
            .await;
        assert_eq!(r.status(), 201, "define {version}");
        let r = self
            .admin(
                reqwest::Method::POST,
                &format!("/admin/v1/issuers/{ISSUER}/products/{PRODUCT}/profiles/{version}/deploy"),
            )
            .json(&json!({"campaign": {}}))
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(r.status(), 202, "deploy with a campaign");
        let path = format!("/tsp/trapi/v2.0/tokens/{token_id}/reperso");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let call = self
                .tsp
                .other_calls()
                .into_iter()
                .find(|c| c.method == "POST" && c.path == path);
            // The recovery's time to live starts when the hub has taken the TSP's answer in, a
            // moment after the TSP saw the call: a test that moves the clock must wait for it.
            let clock_started = self
                .hub
                .store
                .token(token_id)
                .await
                .expect("read the token")
                .and_then(|t| t.recovery)
                .is_some_and(|r| r.deadline_ms.is_some());
            if let (Some(call), true) = (call, clock_started) {
                return call
                    .correlation_id
                    .expect("repersoToken carries x-correlation-id");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hub did not call repersoToken for {token_id}: {:?}",
                self.tsp.other_calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moves the hub's clock past any retry wait and wakes its notifier.
    pub fn skip_retry_wait(&self) {
        self.clock.advance(Duration::from_secs(1));
        self.hub.notify_wake.notify_one();
    }

    /// Waits until the TSP received `n` calls matching `method` and `path`; returns them all.
    pub async fn tsp_calls_to(&self, method: &str, path: &str, n: usize) -> Vec<TspCall> {
        eventually(&format!("{n} calls {method} {path}"), || async move {
            let calls: Vec<TspCall> = self
                .tsp
                .other_calls()
                .into_iter()
                .filter(|c| c.method == method && c.path == path)
                .collect();
            (calls.len() >= n).then_some(calls)
        })
        .await
    }
}

/// The TSP path of `updateTokenState` for the token.
pub fn state_path(token: &str) -> String {
    format!("/tsp/trapi/v2.0/tokens/{token}/state")
}

/// The TSP path of `updateToken` (a card's new details) for the token.
pub fn card_path(token: &str) -> String {
    format!("/tsp/trapi/v2.0/tokens/{token}/card")
}

/// The admin path of an action (`renew`, `replace`) on a card of the issuer.
pub fn card_url(card_ref: &str, what: &str) -> String {
    format!("/admin/v1/issuers/{ISSUER}/cards/{card_ref}/{what}")
}

/// The newest history event of the token: (event, correlationId).
pub async fn last_event(app: &TestApp, token: &str) -> (String, String) {
    let view = app.get_token(token).await;
    let e = view["history"].as_array().unwrap().last().unwrap().clone();
    (
        e["event"].as_str().unwrap().to_string(),
        e["correlationId"].as_str().unwrap().to_string(),
    )
}

/// A fresh `walletCardRefId`, and the digitization fields that use it.
pub fn new_card() -> (String, Value) {
    let card_ref = format!("card-{}", uuid::Uuid::new_v4().simple());
    let extra = json!({"walletCardRefId": card_ref});
    (card_ref, extra)
}

/// A card the requestor is told of.
pub fn card() -> Value {
    json!({"lastDigits": "1234", "expiryDate": "0930", "artId": "art-1"})
}

/// How many updates the token's history records as applied.
pub async fn applied_count(app: &TestApp, token: &str) -> usize {
    app.history_of(token)
        .await
        .iter()
        .filter(|e| e.starts_with("TSP update applied"))
        .count()
}
