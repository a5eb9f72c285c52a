//! The hub's wallet API as a device calls it: register, long-poll for personalizations, report
//! the result. Only transport and wire forms here; what to do with an answer is the fleet's.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No answer: connection refused or reset, timeout. Worth retrying.
    #[error("hub unreachable: {0}")]
    Transport(String),
    #[error("hub answered HTTP {0}")]
    Status(StatusCode),
    #[error("hub answered something that is not the contract's form")]
    BadBody,
}

impl CallError {
    /// Whether the same call may succeed later: no answer, 5xx, 429.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status(s) => s.is_server_error() || *s == StatusCode::TOO_MANY_REQUESTS,
            Self::BadBody => false,
        }
    }
}

fn transport(e: reqwest::Error) -> CallError {
    // The causes too ("connection refused", "too many open files"): reqwest's own text alone
    // says only "error sending request". None of them carries a body.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    CallError::Transport(text)
}

/// The wallet API's HTTP client: every request carries the wallet provider's API key
/// (`Authorization: Bearer`), when one is given, marked sensitive so that no log shows it.
pub(crate) fn client(
    connect_timeout: Duration,
    api_key: Option<&str>,
    ca_pem: Option<&str>,
) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = api_key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow::anyhow!("the wallet API key is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(ca) = ca_pem {
        // The hub's wallet listener is trusted through this CA only, not the public roots.
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?);
    }
    Ok(builder.build()?)
}

/// `base` + path segments, each percent-encoded as needed.
pub(crate) fn url(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// `POST /wallet/v1/devices` → 201 (new) or 200 (same key again).
pub(crate) async fn register(
    http: &reqwest::Client,
    hub: &Url,
    device_id: &str,
    public_key: &str,
    timeout: Duration,
) -> Result<(), CallError> {
    let response = http
        .post(url(hub, &["wallet", "v1", "devices"]))
        .timeout(timeout)
        .json(&serde_json::json!({"deviceId": device_id, "publicKey": public_key}))
        .send()
        .await
        .map_err(transport)?;
    match response.status() {
        StatusCode::CREATED | StatusCode::OK => Ok(()),
        status => Err(CallError::Status(status)),
    }
}

/// `GET /wallet/v1/devices/{deviceId}/personalizations?waitSeconds=N`: the offers, each still as
/// JSON so that one malformed item does not hide the others.
pub(crate) async fn poll(
    http: &reqwest::Client,
    hub: &Url,
    device_id: &str,
    wait_seconds: u64,
    timeout: Duration,
) -> Result<Vec<Value>, CallError> {
    let mut target = url(
        hub,
        &["wallet", "v1", "devices", device_id, "personalizations"],
    );
    target
        .query_pairs_mut()
        .append_pair("waitSeconds", &wait_seconds.to_string());
    let response = http
        .get(target)
        .timeout(timeout)
        .send()
        .await
        .map_err(transport)?;
    if response.status() != StatusCode::OK {
        return Err(CallError::Status(response.status()));
    }
    let bytes = response.bytes().await.map_err(transport)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Array(items)) => Ok(items),
        _ => Err(CallError::BadBody),
    }
}

/// `POST /wallet/v1/personalizations/{personalizationId}/result` → 204 (any 2xx is taken).
pub(crate) async fn post_result(
    http: &reqwest::Client,
    hub: &Url,
    personalization_id: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(), CallError> {
    let response = http
        .post(url(
            hub,
            &[
                "wallet",
                "v1",
                "personalizations",
                personalization_id,
                "result",
            ],
        ))
        .timeout(timeout)
        .json(body)
        .send()
        .await
        .map_err(transport)?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(CallError::Status(response.status()))
    }
}

/// `POST /wallet/v1/devices/{deviceId}/tokens/{tokenId}/removed` → 204.
pub(crate) async fn confirm_removal(
    http: &reqwest::Client,
    hub: &Url,
    device_id: &str,
    token_id: &str,
    timeout: Duration,
) -> Result<(), CallError> {
    let response = http
        .post(url(
            hub,
            &[
                "wallet", "v1", "devices", device_id, "tokens", token_id, "removed",
            ],
        ))
        .timeout(timeout)
        .send()
        .await
        .map_err(transport)?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(CallError::Status(response.status()))
    }
}

/// One offer of the poll's answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Offer {
    pub(crate) personalization_id: String,
    pub(crate) token_id: String,
    /// A string or a number: the device keeps it as text.
    pub(crate) profile_version: Value,
    pub(crate) profile: SealedProfile,
}

/// The HPKE-sealed profile: `enc` (the encapsulated key) and `ciphertext`, base64url without
/// padding.
#[derive(Deserialize)]
pub(crate) struct SealedProfile {
    pub(crate) enc: String,
    pub(crate) ciphertext: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_appended_and_escaped() {
        let base = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            url(
                &base,
                &["wallet", "v1", "devices", "a b/c", "personalizations"]
            )
            .as_str(),
            "http://127.0.0.1:8080/wallet/v1/devices/a%20b%2Fc/personalizations"
        );
        let prefixed = Url::parse("http://hub.example/api/").unwrap();
        assert_eq!(
            url(&prefixed, &["wallet"]).as_str(),
            "http://hub.example/api/wallet"
        );
    }

    #[test]
    fn only_transport_errors_5xx_and_429_are_retried() {
        assert!(CallError::Transport("x".into()).retryable());
        assert!(CallError::Status(StatusCode::SERVICE_UNAVAILABLE).retryable());
        assert!(CallError::Status(StatusCode::TOO_MANY_REQUESTS).retryable());
        assert!(!CallError::Status(StatusCode::NOT_FOUND).retryable());
        assert!(!CallError::Status(StatusCode::CONFLICT).retryable());
        assert!(!CallError::BadBody.retryable());
    }
}
