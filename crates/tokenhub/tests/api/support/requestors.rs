//! Token requestors: a hub configured to reach them on 127.0.0.0/8, their registration and
//! secrets, and the deliveries of token updates to them.

use super::{
    card, eventually, random_bytes, Answer, Received, Receiver, TestApp, TSP_EXP, TSP_LAST4,
};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;
use tokenhub::Config;

/// Two retries, then dead.
pub const RETRY_SCHEDULE: &str = "100ms,200ms";

/// For `hub_tests!(config = requestors_allowed; …)`: requestors may live on 127.0.0.0/8 (where
/// [`Receiver`] listens), the retry schedule is [`RETRY_SCHEDULE`], a delivery times out after 3 s.
pub fn requestors_allowed(config: &mut Config) {
    config.notify.retry_schedule = tokenhub::config::parse_schedule(RETRY_SCHEDULE).unwrap();
    config.notify.outbound_allow = tokenhub::config::parse_cidrs("127.0.0.0/8").unwrap();
    config.notify.timeout = Duration::from_secs(3);
}

/// A signing secret: `whsec_` + base64 of `n` random bytes.
pub fn signing_secret(n: usize) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes(n))
    )
}

/// The Standard Webhooks signature (`v1,<base64>`) of a delivery under `secret`, computed here
/// independently of the hub.
pub fn expected_signature(secret: &str, webhook_id: &str, timestamp: &str, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{webhook_id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The API key and signing secrets a requestor was registered with.
#[derive(Debug, Clone)]
pub struct RequestorSecrets {
    pub api_key: String,
    pub signing_secrets: Vec<String>,
}

impl TestApp {
    /// `PUT /admin/v1/token-requestors/{id}` with `body`.
    pub async fn put_requestor_body(&self, requestor_id: &str, body: &Value) -> Answer {
        self.admin_send(
            reqwest::Method::PUT,
            &format!("/admin/v1/token-requestors/{requestor_id}"),
            Some(body),
        )
        .await
    }

    /// Registers a requestor at `base_url` with a fresh API key and `secrets` fresh secrets.
    pub async fn register_requestor(
        &self,
        requestor_id: &str,
        base_url: &str,
        secrets: usize,
    ) -> RequestorSecrets {
        let creds = RequestorSecrets {
            api_key: format!("key-{}", uuid::Uuid::new_v4().simple()),
            signing_secrets: (0..secrets).map(|_| signing_secret(32)).collect(),
        };
        self.put_requestor_body(
            requestor_id,
            &json!({
                "merchantId": merchant_of(requestor_id),
                "baseUrl": base_url,
                "apiKey": creds.api_key,
                "signingSecrets": creds.signing_secrets,
            }),
        )
        .await
        .expect(200);
        creds
    }

    /// `GET /admin/v1/token-requestors/{id}/notifications` with a query (`""` or `?state=…`).
    pub async fn requestor_notifications(&self, requestor_id: &str, query: &str) -> Answer {
        self.admin_get(&format!(
            "/admin/v1/token-requestors/{requestor_id}/notifications{query}"
        ))
        .await
    }

    /// Waits until delivery `id` is in `state`; returns it (`GET /notifications/{id}`).
    pub async fn notification_in_state(&self, id: i64, state: &str) -> Value {
        eventually(&format!("delivery {id} to be {state}"), || async move {
            let d = self.delivery(id).await;
            (d["state"] == state).then_some(d)
        })
        .await
    }

    /// The newest delivery of the token (waits until there is one).
    pub async fn newest_notification_of(&self, token_id: &str) -> Value {
        eventually(&format!("a delivery for {token_id}"), || async move {
            self.token_notifications(token_id).await.into_iter().next()
        })
        .await
    }

    /// Waits until `receiver` got `n` requests, moving the hub's clock past each retry wait
    /// meanwhile; returns every request received.
    pub async fn wait_for_attempts(&self, receiver: &Receiver, n: usize) -> Vec<Received> {
        eventually(&format!("{n} attempts at the requestor"), || async move {
            let r = receiver.received();
            if r.len() >= n {
                Some(r)
            } else {
                self.skip_retry_wait();
                None
            }
        })
        .await
    }
}

/// The merchant id a test registers requestor `id` with.
pub fn merchant_of(requestor_id: &str) -> String {
    format!("MERCHANT-{requestor_id}")
}

/// The body a requestor receives for a token in `state` with the fake TSP's token info.
pub fn expected_body(token_id: &str, requestor_id: &str, state: &str, card: &Value) -> Value {
    json!({
        "tokenId": token_id,
        "merchantId": merchant_of(requestor_id),
        "tokenState": state,
        "tokenLastDigits": TSP_LAST4,
        "tokenExpiryDate": TSP_EXP,
        "cardLastDigits": card.get("lastDigits").cloned().unwrap_or(Value::Null),
        "cardExpiryDate": card.get("expiryDate").cloned().unwrap_or(Value::Null),
        "cardArtId": card.get("artId").cloned().unwrap_or(Value::Null),
    })
}

/// The requestor most tests register.
pub const REQUESTOR: &str = "shop-1";

/// A valid requestor body.
pub fn requestor_body() -> Value {
    json!({
        "merchantId": "MERCHANT-1",
        "baseUrl": "https://psp.example.com/hooks",
        "apiKey": "api-key-1",
        "signingSecrets": [signing_secret(32)],
    })
}

/// Registers [`REQUESTOR`] at a fresh [`Receiver`] and activates a token for it (with
/// [`card`]). Returns the receiver, the requestor's secrets and the token.
pub async fn token_of_a_requestor(
    app: &TestApp,
    script: &[u16],
) -> (Receiver, RequestorSecrets, String) {
    let receiver = Receiver::start().await;
    receiver.answer_next(script);
    let creds = app
        .register_requestor(REQUESTOR, &receiver.base_url(), 1)
        .await;
    let token = app
        .active_token_from(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
        .await;
    (receiver, creds, token)
}

/// The id of a delivery as the admin API shows it.
pub fn notification_id(d: &Value) -> i64 {
    d["notificationId"].as_i64().unwrap()
}
