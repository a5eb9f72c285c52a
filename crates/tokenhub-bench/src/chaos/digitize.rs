//! New digitizations during a chaos run, as a wallet makes them through the front: a device
//! registered, a card digitized onto it (the hub's createToken to the flaky TSP, the TSP's data
//! preparation back through the front), the device visited until it confirms its profile. Each
//! digitization carries an `Idempotency-Key`, so that one sent again after its node was killed
//! makes one token at the TSP.

use super::watch::{visit_until_done, SharedDevices};
use crate::campaign::seed::device_id;
use crate::campaign::{ISSUER_ID, PRODUCT_ID};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokenhub_sim::device::light::LightDevices;

/// Attempts of one call while the TSP or the node is unavailable.
const ATTEMPTS: u32 = 20;

/// What the digitizations came to.
#[derive(Debug, Default)]
pub(crate) struct Digitized {
    /// The tokens the hub answered 201 for.
    pub(crate) tokens: Vec<String>,
    /// `503 TSP_UNAVAILABLE` answers (the TSP refused createToken), tried again.
    pub(crate) tsp_unavailable: u64,
    /// Calls lost with their node, tried again.
    pub(crate) lost: u64,
    /// Digitizations that did not happen, with why (another `5xx`, a refusal, out of attempts).
    pub(crate) failed: Vec<String>,
}

/// Makes `n` digitizations, one every `every`, on devices `first..first + n`.
pub(crate) async fn digitize(
    front_url: String,
    wallet_key: String,
    devices: Arc<LightDevices>,
    seen: SharedDevices,
    (first, n): (usize, usize),
    every: Duration,
) -> Digitized {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let mut out = Digitized::default();
    let mut visits = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(every);
    for index in first..first + n {
        tick.tick().await;
        let device = device_id(index);
        let calls = Calls {
            http: &http,
            base: &front_url,
            key: &wallet_key,
        };
        let key = devices.public_key(index).to_string();
        let registered = calls
            .post(
                "devices",
                json!({"deviceId": device, "publicKey": key}),
                None,
                &mut out,
            )
            .await;
        let body = json!({"issuerId": ISSUER_ID, "productId": PRODUCT_ID, "deviceId": device,
                          "walletCardRefId": format!("chaos-card-{index}"),
                          "tokenRequestorId": crate::notifications::REQUESTOR});
        let answer = match registered {
            Some(_) => {
                let key = format!("chaos-digitization-{index}");
                calls
                    .post("digitizations", body, Some(&key), &mut out)
                    .await
            }
            None => None,
        };
        let Some(token) = answer.and_then(|a| a["tokenId"].as_str().map(str::to_string)) else {
            continue;
        };
        out.tokens.push(token.clone());
        let (seen, devices) = (seen.clone(), devices.clone());
        visits.spawn(async move { visit_until_done(&seen, &devices, &token, index, None).await });
    }
    while visits.join_next().await.is_some() {}
    out
}

struct Calls<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    key: &'a str,
}

impl Calls<'_> {
    /// `POST /wallet/v1/{path}` (with `Idempotency-Key: key`), tried again while the node or
    /// the TSP is unavailable; the answer's JSON, or `None` (recorded in `out`).
    async fn post(
        &self,
        path: &str,
        body: Value,
        key: Option<&str>,
        out: &mut Digitized,
    ) -> Option<Value> {
        let url = format!("{}/wallet/v1/{path}", self.base);
        for attempt in 1..=ATTEMPTS {
            let mut request = self.http.post(&url).bearer_auth(self.key).json(&body);
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    return Some(r.json().await.unwrap_or_default())
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    if status.as_u16() == 503 && text.contains("TSP_UNAVAILABLE") {
                        out.tsp_unavailable += 1;
                    } else {
                        out.failed
                            .push(format!("{path} {body}: HTTP {status}: {text}"));
                        return None;
                    }
                }
                Err(_) => out.lost += 1,
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
        }
        out.failed
            .push(format!("{path} {body}: out of {ATTEMPTS} attempts"));
        None
    }
}
