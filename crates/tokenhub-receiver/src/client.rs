//! The client half of the hub's requestor API (`/requestor/v1`): tokenize a card on file (a JWE
//! the caller made to a published key), Create Transaction, read and delete tokens; and
//! [`TokenPans`], the token PANs a requestor keeps, discarded when an update changes a token's
//! `tokenLastDigits` and fetched again with Create Transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::receiver::Hooks;

/// Why a requestor API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub answered with an error: its status, `error` code and TSP response code if any.
    #[error("the hub answered {status} {error}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` code (`TOKEN_NOT_ACTIVE`, `INVALID_CARD`…).
        error: String,
        /// The TSP's response code, when the TSP refused.
        tsp_response_code: Option<u64>,
        /// The hub's message.
        message: String,
    },
    /// The hub could not be reached, or answered something unreadable.
    #[error("the hub could not be reached: {0}")]
    Transport(String),
}

impl ClientError {
    /// Whether trying again later may succeed (`503`, `429`, transport failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refused { status, .. } => matches!(status, 429 | 503),
            Self::Transport(_) => true,
        }
    }
}

/// A card-on-file token as the hub shows it (never a PAN).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CofToken {
    /// The hub's and the TSP's id of the token.
    pub token_id: String,
    /// `ACTIVE`, `SUSPENDED` or `DELETED`.
    pub token_state: String,
    /// The token PAN's last digits: when they change, so did the token PAN.
    pub token_last_digits: Option<String>,
    /// MMYY.
    pub token_expiry_date: Option<String>,
    /// The card's last digits.
    pub card_last_digits: Option<String>,
    /// MMYY.
    pub card_expiry_date: Option<String>,
    /// The card art's reference.
    pub card_art_id: Option<String>,
    /// The requestor's own reference of the card.
    pub requestor_reference: Option<String>,
    /// RFC 3339.
    pub last_update_timestamp: String,
}

/// One payment's credentials. Its `Debug` masks the token PAN and the cryptogram.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The token paid with.
    pub token_id: String,
    /// The token's current PAN.
    pub token_pan: String,
    /// MMYY.
    pub token_expiry_date: String,
    /// Good for this one payment (amount, currency, type, merchant).
    pub cryptogram: String,
    /// The electronic commerce indicator to send with it.
    pub eci: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token_id", &self.token_id)
            .field("token_pan", &"****")
            .field("token_expiry_date", &self.token_expiry_date)
            .field("eci", &self.eci)
            .finish_non_exhaustive()
    }
}

/// What is being paid: amount in minor units, ISO 4217 currency, `CIT_ECOM`, `MIT_RECURRING` or
/// `MIT_UNSCHEDULED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// Minor units, 1 to 12 digits.
    pub amount: String,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    /// `CIT_ECOM`, `MIT_RECURRING` or `MIT_UNSCHEDULED`.
    pub transaction_type: String,
}

/// A requestor's client of the hub's requestor API.
#[derive(Clone)]
pub struct RequestorClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl std::fmt::Debug for RequestorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestorClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RequestorClient {
    /// `hub_url` is the wallet listener's root (`https://hub:8444`); `api_key` the `trk_…` key.
    pub fn new(hub_url: &str, api_key: &str, http: reqwest::Client) -> Self {
        Self {
            http,
            base: format!("{}/requestor/v1", hub_url.trim_end_matches('/')),
            api_key: api_key.to_string(),
        }
    }

    /// A client with a 10-second timeout and no TLS trust beyond the defaults.
    pub fn with_defaults(hub_url: &str, api_key: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self::new(hub_url, api_key, http))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.api_key);
        if let Some(key) = idempotency_key {
            r = r.header("idempotency-key", key);
        }
        if let Some(body) = body {
            r = r.json(&body);
        }
        let answer = r
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
        let status = answer.status().as_u16();
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(json);
        }
        Err(ClientError::Refused {
            status,
            error: json["error"].as_str().unwrap_or_default().to_string(),
            tsp_response_code: json["tspResponseCode"].as_u64(),
            message: json["message"].as_str().unwrap_or_default().to_string(),
        })
    }

    fn read<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ClientError> {
        serde_json::from_value(v).map_err(|e| ClientError::Transport(format!("the answer: {e}")))
    }

    /// The published card encryption keys: `(tspId, public JWK)`.
    pub async fn encryption_keys(&self) -> Result<Vec<(String, Value)>, ClientError> {
        let v = self
            .call(reqwest::Method::GET, "/encryption-keys", None, None)
            .await?;
        Ok(v["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| Some((k["tspId"].as_str()?.to_string(), k["jwk"].clone())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Tokenizes a card: `encrypted_card` is the card's JWE; the same `idempotency_key` gets the
    /// same token back.
    pub async fn tokenize(
        &self,
        encrypted_card: &str,
        idempotency_key: &str,
        requestor_reference: Option<&str>,
    ) -> Result<CofToken, ClientError> {
        let mut body = json!({ "encryptedCard": encrypted_card });
        if let Some(r) = requestor_reference {
            body["requestorReference"] = json!(r);
        }
        let v = self
            .call(
                reqwest::Method::POST,
                "/tokens",
                Some(idempotency_key),
                Some(body),
            )
            .await?;
        Self::read(v)
    }

    /// Create Transaction: the current token PAN and a one-time cryptogram for `payment`.
    pub async fn create_transaction(
        &self,
        token_id: &str,
        payment: &Payment,
    ) -> Result<Credentials, ClientError> {
        let body = serde_json::to_value(payment).expect("a payment serializes");
        let path = format!("/tokens/{token_id}/transactions");
        let v = self
            .call(reqwest::Method::POST, &path, None, Some(body))
            .await?;
        Self::read(v)
    }

    /// One of the requestor's tokens.
    pub async fn token(&self, token_id: &str) -> Result<CofToken, ClientError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/tokens/{token_id}"),
                None,
                None,
            )
            .await?;
        Self::read(v)
    }

    /// Deletes the token (the TSP is told; the update comes like any other).
    pub async fn delete(&self, token_id: &str) -> Result<(), ClientError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/tokens/{token_id}"),
            None,
            None,
        )
        .await
        .map(|_| ())
    }
}

/// The token PANs a requestor keeps, by token id. As [`Hooks`], it discards a token's PAN when
/// an update changes its `tokenLastDigits` (or names digits the kept PAN does not end with); [`TokenPans::pay`] then gets the current one with
/// Create Transaction (it needs a cryptogram for each payment anyway).
#[derive(Default)]
pub struct TokenPans {
    pans: Mutex<HashMap<String, String>>,
    discarded: AtomicU64,
}

impl std::fmt::Debug for TokenPans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPans")
            .field("tokens", &self.lock().len())
            .field("discarded", &self.discarded())
            .finish_non_exhaustive()
    }
}

impl TokenPans {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.pans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many kept token PANs were discarded so far (an update changed their last digits).
    pub fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }

    fn discard(pans: &mut HashMap<String, String>, counter: &AtomicU64, token_id: &str) {
        if pans.remove(token_id).is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The token PAN kept for `token_id`, if any.
    pub fn get(&self, token_id: &str) -> Option<String> {
        self.lock().get(token_id).cloned()
    }

    /// Pays with the token: Create Transaction, and the token PAN it gives is kept (replacing a
    /// discarded or older one).
    pub async fn pay(
        &self,
        client: &RequestorClient,
        token_id: &str,
        payment: &Payment,
    ) -> Result<Credentials, ClientError> {
        let credentials = client.create_transaction(token_id, payment).await?;
        self.lock()
            .insert(token_id.to_string(), credentials.token_pan.clone());
        Ok(credentials)
    }
}

impl Hooks for TokenPans {
    fn discard_token_pan(&self, token_id: &str) {
        Self::discard(&mut self.lock(), &self.discarded, token_id);
    }

    /// Also the first update the receiver sees of a token (which it has no digits to compare
    /// with): a kept PAN that does not end with the update's `tokenLastDigits` is discarded.
    fn on_update(&self, update: &crate::update::TokenUpdate) {
        let Some(digits) = update.token_last_digits.as_deref() else {
            return;
        };
        let mut pans = self.lock();
        if pans
            .get(&update.token_id)
            .is_some_and(|pan| !pan.ends_with(digits))
        {
            Self::discard(&mut pans, &self.discarded, &update.token_id);
        }
    }
}

impl<T: Hooks> Hooks for std::sync::Arc<T> {
    fn discard_token_pan(&self, token_id: &str) {
        (**self).discard_token_pan(token_id)
    }

    fn on_update(&self, update: &crate::update::TokenUpdate) {
        (**self).on_update(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::TokenUpdate;

    fn update(digits: &str) -> TokenUpdate {
        TokenUpdate::from_json(
            format!(
                r#"{{"tokenId":"T1","merchantId":"M","tokenLastDigits":"{digits}",
                    "lastUpdateTimestamp":"2026-01-01T00:00:00.000Z"}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_kept_pan_is_discarded_once_when_the_last_digits_change() {
        let pans = TokenPans::default();
        pans.lock().insert("T1".into(), "4895370000001234".into());
        pans.on_update(&update("1234"));
        assert!(pans.get("T1").is_some(), "the same digits keep the PAN");
        pans.on_update(&update("9876"));
        assert!(pans.get("T1").is_none());
        pans.discard_token_pan("T1");
        pans.on_update(&update("5555"));
        assert_eq!(pans.discarded(), 1, "only a PAN actually kept counts");
    }
}
