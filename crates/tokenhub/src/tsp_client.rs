//! Calls the hub makes on a TSP (the TSP outgoing API v2). Every call carries an
//! `x-correlation-id`; `5xx`, `429`, `408`, timeouts, connection errors and response code 921 are
//! retried with backoff, never before the TSP's `Retry-After`, under the same correlation id (so
//! the TSP can recognise a repeat); other `4xx` are final.
//!
//! Redirects are not followed (a `3xx` is a final refusal: the hub talks to the endpoint it was
//! given), no proxy is used unless one is configured, an answer is read up to
//! [`MAX_ANSWER_BYTES`] only, and an `http://` endpoint is refused unless plain HTTP was allowed
//! for development.

use crate::config::OutboundSettings;
use crate::domain::{retry_after, CorrelationId};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The longest a call made while its caller waits (`createToken`) waits for a TSP's `Retry-After`;
/// a TSP that asks for more is unavailable to that caller now.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);

/// The most of a TSP's answer the hub reads: the contract's answers are small JSON documents, and
/// a TSP that sends more is not following it.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct TspClient {
    /// Trusts the public roots; presents the hub's client certificate when it has one.
    http: reqwest::Client,
    allow_plain_http: bool,
    /// The one proxy calls go through; `None`: none, whatever the environment says.
    proxy: Option<String>,
    /// Clients that also trust a TSP's registered server CA, by the TSP's base URL.
    by_base: Arc<RwLock<Vec<(String, reqwest::Client)>>>,
    /// The hub's client certificate and key (PEM), presented to every TSP.
    identity_pem: Option<Arc<Vec<u8>>>,
    timeout: Duration,
    /// Attempts per call, the first included.
    attempts: u32,
    first_backoff: Duration,
}

/// The TSP's error body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TspErrorBody {
    pub response_code: Option<serde_json::Number>,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TspCallError {
    /// The TSP answered with a final refusal.
    #[error("the TSP refused the call with response code {code}")]
    Refused { code: u32, message: Option<String> },
    /// The TSP could not be reached or kept failing.
    #[error("the TSP is unavailable: {0}")]
    Unavailable(String),
    /// The TSP answered something that does not follow the contract.
    #[error("the TSP answered outside the contract: {0}")]
    Protocol(String),
}

/// An attempt that failed: why, and how long the TSP asked the hub to wait (`Retry-After` on a
/// `429`, a `503` or any other answer that may be retried).
#[derive(Debug)]
pub struct Unsent {
    pub error: TspCallError,
    pub retry_after: Option<Duration>,
}

impl From<TspCallError> for Unsent {
    fn from(error: TspCallError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenRequest {
    pub issuer_id: String,
    pub wallet_card_ref_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_requestor_id: Option<String>,
    pub device_info: DeviceInfo,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub device_id: String,
    pub device_type: &'static str,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenResponse {
    pub token_id: String,
    #[serde(default)]
    pub token_info: Option<TokenInfoWire>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenInfoWire {
    pub exp: Option<String>,
    pub last4: Option<String>,
}

impl TspClient {
    pub fn new(timeout: Duration, outbound: &OutboundSettings) -> Self {
        Self::with_identity(timeout, None, outbound).expect("no identity to load")
    }

    /// A client that presents `identity_pem` (certificate chain then private key, PEM) to the
    /// TSPs.
    pub fn with_identity(
        timeout: Duration,
        identity_pem: Option<Vec<u8>>,
        outbound: &OutboundSettings,
    ) -> Result<Self, String> {
        crate::telemetry::install_crypto_provider();
        let identity_pem = identity_pem.map(Arc::new);
        let proxy = outbound.proxy.clone();
        let http = Self::build(timeout, identity_pem.as_deref(), None, proxy.as_deref())?;
        Ok(Self {
            http,
            allow_plain_http: outbound.allow_plain_http,
            proxy,
            by_base: Arc::default(),
            identity_pem,
            timeout,
            attempts: 3,
            first_backoff: Duration::from_millis(200),
        })
    }

    fn build(
        timeout: Duration,
        identity_pem: Option<&Vec<u8>>,
        server_ca_pem: Option<&str>,
        proxy: Option<&str>,
    ) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64);
        b = match proxy {
            Some(p) => {
                b.proxy(reqwest::Proxy::all(p).map_err(|_| "the outbound proxy is not valid")?)
            }
            None => b.no_proxy(),
        };
        if let Some(pem) = identity_pem {
            let id = reqwest::Identity::from_pem(pem)
                .map_err(|_| "the hub's client certificate or key does not load".to_string())?;
            b = b.identity(id);
        }
        if let Some(pem) = server_ca_pem {
            for ca in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|_| "a TSP's server CA does not load".to_string())?
            {
                b = b.add_root_certificate(ca);
            }
        }
        b.build().map_err(|e| e.to_string())
    }

    /// Trusts each TSP's server CA (base URL, PEM) for the calls under its base URL, from now on.
    pub fn trust_servers(&self, tsps: Vec<(String, String)>) {
        let mut clients = Vec::new();
        for (base, ca) in tsps {
            let proxy = self.proxy.as_deref();
            match Self::build(self.timeout, self.identity_pem.as_deref(), Some(&ca), proxy) {
                Ok(c) => clients.push((base, c)),
                Err(e) => tracing::error!(base_url = %base, error = %e, "TSP server CA ignored"),
            }
        }
        *self.by_base.write().unwrap_or_else(|p| p.into_inner()) = clients;
    }

    fn client_for(&self, url: &str) -> reqwest::Client {
        self.by_base
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(base, _)| url.starts_with(base.as_str()))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| self.http.clone())
    }

    /// `createToken`: `POST {base}/tokens`, each attempt once `pace` lets it go (the TSP's rate).
    pub async fn create_token<P: Future<Output = Result<(), TspCallError>>>(
        &self,
        base_url: &str,
        correlation_id: &CorrelationId,
        request: &CreateTokenRequest,
        pace: impl Fn() -> P,
    ) -> Result<CreateTokenResponse, TspCallError> {
        let url = format!("{}/tokens", base_url.trim_end_matches('/'));
        let body = self
            .call(reqwest::Method::POST, &url, correlation_id, request, pace)
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| TspCallError::Protocol(format!("createToken answer: {e}")))
    }

    /// The calls the outbox makes (`updateTokenState`, `repersoToken`, …): one attempt at
    /// `{base}{path}` with the stored JSON body; the outbox decides about retries, with the
    /// TSP's `Retry-After`.
    pub async fn send_once(
        &self,
        method: reqwest::Method,
        base_url: &str,
        path: &str,
        correlation_id: &str,
        json_body: &str,
    ) -> Result<(), Unsent> {
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        self.attempt(method, &url, correlation_id, json_body.to_string())
            .await
            .map(|_| ())
    }

    /// Sends one call, retrying what the contract says is retryable, each attempt once `pace`
    /// lets it go. Returns the 2xx body.
    async fn call<P: Future<Output = Result<(), TspCallError>>>(
        &self,
        method: reqwest::Method,
        url: &str,
        correlation_id: &CorrelationId,
        body: &impl Serialize,
        pace: impl Fn() -> P,
    ) -> Result<Vec<u8>, TspCallError> {
        let body = serde_json::to_string(body).expect("request bodies always serialize");
        let mut backoff = self.first_backoff;
        let mut last = TspCallError::Unavailable(String::new());
        for attempt in 1..=self.attempts {
            pace().await?;
            let retry_after = match self
                .attempt(method.clone(), url, correlation_id.as_str(), body.clone())
                .await
            {
                Err(Unsent {
                    error: TspCallError::Unavailable(why),
                    retry_after,
                }) => {
                    tracing::warn!(attempt, url, reason = %why, "TSP call failed; retrying");
                    last = TspCallError::Unavailable(why);
                    retry_after
                }
                Err(Unsent { error, .. }) => return Err(error),
                Ok(body) => return Ok(body),
            };
            if attempt < self.attempts {
                let wait = backoff.max(retry_after.unwrap_or_default());
                if wait > MAX_INLINE_WAIT {
                    break;
                }
                tokio::time::sleep(wait).await;
                backoff *= 2;
            }
        }
        Err(last)
    }

    /// One attempt. `Unavailable` is what may be retried: connection errors, time-outs, `5xx`,
    /// `429` (too many requests), `408` (request timeout) and response code 921.
    async fn attempt(
        &self,
        method: reqwest::Method,
        url: &str,
        correlation_id: &str,
        body: String,
    ) -> Result<Vec<u8>, Unsent> {
        if !self.allow_plain_http && !url.starts_with("https://") {
            return Err(TspCallError::Protocol(
                "the TSP's endpoint is not https:// (plain HTTP is allowed only for development)"
                    .into(),
            )
            .into());
        }
        let sent = self
            .client_for(url)
            .request(method, url)
            .header("x-correlation-id", correlation_id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = sent.map_err(|e| TspCallError::Unavailable(e.to_string()))?;
        let status = resp.status();
        // The TSP's clock is the real one, whatever clock the hub runs on.
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after::parse(v, chrono::Utc::now().timestamp_millis()));
        let bytes = read_capped(resp).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let parsed: Option<TspErrorBody> = serde_json::from_slice(&bytes).ok();
        let code = parsed
            .as_ref()
            .and_then(|b| b.response_code.as_ref())
            .and_then(|n| n.as_u64())
            .map(|n| n as u32);
        let busy = matches!(
            status,
            reqwest::StatusCode::TOO_MANY_REQUESTS | reqwest::StatusCode::REQUEST_TIMEOUT
        );
        if status.is_server_error() || busy || code == Some(921) {
            return Err(Unsent {
                error: TspCallError::Unavailable(format!("HTTP {status}, response code {code:?}")),
                retry_after,
            });
        }
        Err(TspCallError::Refused {
            code: code.unwrap_or(status.as_u16() as u32),
            message: parsed.and_then(|b| b.error_message),
        }
        .into())
    }
}

/// An answer's body, read as it arrives and given up at [`MAX_ANSWER_BYTES`] (a body announced or
/// found larger is refused without reading the rest).
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, TspCallError> {
    let too_big = || TspCallError::Protocol(format!("an answer over {MAX_ANSWER_BYTES} bytes"));
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| TspCallError::Unavailable(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

// The card-on-file calls of the requestor API: one attempt each, its failure with the TSP's
// `Retry-After`; `flows::requestor_tsp` paces and retries them within the requestor's budget.

/// createToken for a card on file (`POST {base}/cardOnFileTokens`). The card is the requestor's
/// JWE, forwarded as it came.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardOnFileRequest<'a> {
    pub token_requestor_id: &'a str,
    pub ciphered_card_info: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requestor_card_ref_id: Option<&'a str>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardOnFileResponse {
    pub token_id: String,
    pub issuer_id: String,
    #[serde(default)]
    pub token_info: Option<TokenInfoWire>,
    #[serde(default)]
    pub card_info: Option<TokenInfoWire>,
    #[serde(default)]
    pub card_art_id: Option<String>,
}

/// `POST {base}/cardOnFileTokens/{tokenId}/transactionCredentials`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequest<'a> {
    pub token_requestor_id: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    pub transaction_type: &'a str,
    pub merchant_id: &'a str,
}

/// One transaction's credentials. The token PAN is passed through to the requestor: never
/// stored, never logged (its `Debug` masks it).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionCredentials {
    pub token_pan: String,
    pub token_expiry_date: String,
    pub cryptogram: String,
    pub eci: String,
}

impl std::fmt::Debug for TransactionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCredentials")
            .field("token_pan", &"****")
            .field("token_expiry_date", &self.token_expiry_date)
            .field("eci", &self.eci)
            .finish_non_exhaustive()
    }
}

impl TspClient {
    pub async fn create_card_on_file_token(
        &self,
        base_url: &str,
        correlation_id: &str,
        request: &CardOnFileRequest<'_>,
    ) -> Result<CardOnFileResponse, Unsent> {
        let url = format!("{}/cardOnFileTokens", base_url.trim_end_matches('/'));
        self.post_once(&url, correlation_id, request, "createToken (card on file)")
            .await
    }

    /// One `POST` of `request`, its JSON answer read as `T`. serde_json's messages give a
    /// position, never the text: no PAN reaches the error.
    async fn post_once<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        correlation_id: &str,
        request: &impl Serialize,
        call: &str,
    ) -> Result<T, Unsent> {
        let body = serde_json::to_string(request).expect("request bodies always serialize");
        let answer = self
            .attempt(reqwest::Method::POST, url, correlation_id, body)
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| TspCallError::Protocol(format!("{call} answer: {e}")).into())
    }

    pub async fn transaction_credentials(
        &self,
        base_url: &str,
        token_id: &str,
        correlation_id: &str,
        request: &CredentialsRequest<'_>,
    ) -> Result<TransactionCredentials, Unsent> {
        let url = format!(
            "{}/cardOnFileTokens/{token_id}/transactionCredentials",
            base_url.trim_end_matches('/')
        );
        self.post_once(&url, correlation_id, request, "transactionCredentials")
            .await
    }

    pub async fn delete_card_on_file_token(
        &self,
        base_url: &str,
        token_id: &str,
        correlation_id: &str,
        requestor_id: &str,
    ) -> Result<(), Unsent> {
        let url = format!(
            "{}/cardOnFileTokens/{token_id}",
            base_url.trim_end_matches('/')
        );
        let body = serde_json::json!({ "tokenRequestorId": requestor_id }).to_string();
        self.attempt(reqwest::Method::DELETE, &url, correlation_id, body)
            .await
            .map(|_| ())
    }
}

// The health check the hub's TSP watcher makes (`workers::tsp_health`): one GET under the
// watcher's own timeout, through the same per-TSP client (its server CA, the hub's client
// certificate), never retried here: the watcher counts failures in a row.

impl TspClient {
    /// `GET {base}/healthCheck` with `x-request-id`: `Ok` on a `2xx`, else why not (no body
    /// text: the status, or the kind of connection failure).
    pub async fn health_check(
        &self,
        base_url: &str,
        request_id: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let url = format!("{}/healthCheck", base_url.trim_end_matches('/'));
        if !self.allow_plain_http && !url.starts_with("https://") {
            return Err("the TSP's endpoint is not https://".into());
        }
        let resp = self
            .client_for(&url)
            .get(&url)
            .header("x-request-id", request_id)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {timeout:?}")
                } else if e.is_connect() {
                    "connection failed".to_string()
                } else {
                    format!("request failed: {e}")
                }
            })?;
        let status = resp.status();
        // Read (and drop) the small answer so the connection is kept for the next check.
        let _ = read_capped(resp).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}
