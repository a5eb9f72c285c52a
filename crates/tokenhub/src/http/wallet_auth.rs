//! Who calls the wallet API: a registered wallet provider, recognised by its client certificate's
//! pin (when the listener verified one) or by one of its live API keys (`Authorization: Bearer`).
//! Anyone else gets `401` and learns nothing more. Also the cap on a provider's open long polls.

use super::{ApiError, AppState};
use crate::flows::wallet_providers;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The DER of the client's leaf certificate, as the TLS listener verified it; the listener puts
/// it in the request's extensions.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<[u8]>);

/// The wallet provider a request comes from, put in its extensions by [`require_provider`].
#[derive(Debug, Clone)]
pub struct WalletCaller(pub String);

/// Refuses a request that is not a registered provider's; otherwise records who it is.
pub async fn require_provider(
    State(hub): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    // Read before any await: a request is not `Sync`, so no borrow of it may be held across one.
    let certificate = req.extensions().get::<PeerCertificate>().cloned();
    let presented = super::api_error::bearer(req.headers()).map(str::to_string);
    match identify(&hub, certificate, presented).await {
        Ok(Some(provider)) => {
            req.extensions_mut().insert(WalletCaller(provider));
            next.run(req).await
        }
        Ok(None) => super::api_error::unauthorized(
            "the wallet API needs authorization: Bearer <wallet provider API key>",
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The provider of the certificate's pin, else of the API key.
async fn identify(
    hub: &AppState,
    certificate: Option<PeerCertificate>,
    presented: Option<String>,
) -> Result<Option<String>, crate::error::Error> {
    if let Some(cert) = certificate {
        if let Some(p) = wallet_providers::by_certificate(hub, &cert.0).await? {
            return Ok(Some(p));
        }
    }
    match presented {
        Some(key) => wallet_providers::by_api_key(hub, &key).await,
        None => Ok(None),
    }
}

/// Long polls open per provider, capped so that one provider cannot hold every connection.
#[derive(Clone)]
pub struct LongPolls {
    cap: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open long poll; counted until dropped.
pub struct LongPoll {
    provider: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl LongPolls {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Arc::default(),
        }
    }

    /// A place for one more long poll of `provider`; `None` when it holds its cap already.
    pub fn enter(&self, provider: &str) -> Option<LongPoll> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(provider.to_string()).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(LongPoll {
            provider: provider.to_string(),
            open: self.open.clone(),
        })
    }

    /// The answer to a long poll over the cap: `503` with `Retry-After`.
    pub fn refusal() -> Response {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_LONG_POLLS",
            "too many long polls open for this wallet provider; try again later",
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.provider) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.provider);
            }
        }
    }
}
