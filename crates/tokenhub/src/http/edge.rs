//! What every listener puts in front of its APIs: who the TSP caller is (set per connection by
//! the listener), the cap on requests in progress (load shed above it), and the request timeout.

use super::tsp::ErrorRes;
use super::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The TSP a TSP API request comes from, put in the request's extensions by the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TspCaller {
    /// Identified by its client certificate (or the plain listener's configured TSP): it acts on
    /// the tokens of its issuers only.
    Tsp(String),
    /// The single development port without a configured TSP: acts on every token.
    Unbound,
    /// A client certificate that matches no registered TSP: refused.
    Unknown,
}

impl TspCaller {
    /// The TSP the caller is bound to; `None`: any (development only).
    pub fn scope(&self) -> Option<&str> {
        match self {
            TspCaller::Tsp(id) => Some(id),
            _ => None,
        }
    }
}

/// How long a client is asked to wait after a request was shed.
const RETRY_AFTER_SECONDS: &str = "1";

/// Wraps a listener's router: requests over `max_requests` in progress are shed at once (`503`
/// with `Retry-After`; on the TSP API the contract's `921`), and each request must complete
/// within `request_timeout` (`408`).
pub fn bounded(router: Router, max_requests: usize, request_timeout: Duration) -> Router {
    let permits = Arc::new(Semaphore::new(max_requests));
    router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(permits, shed))
}

async fn shed(State(permits): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = permits.try_acquire() else {
        tracing::warn!(path = req.uri().path(), "over the request cap; shed");
        let mut response = if req.uri().path().starts_with("/trapi/") {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(ErrorRes {
                    response_code: 921,
                    error_message: "the hub is busy; retry later".into(),
                }),
            )
                .into_response();
            if let Some(c) = req.headers().get("x-correlation-id") {
                r.headers_mut().insert("x-correlation-id", c.clone());
            }
            r
        } else {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BUSY",
                "the hub is busy; retry later",
            )
            .into_response()
        };
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
        return response;
    };
    next.run(req).await
}

/// The TSP API answers nothing to a connection whose certificate is no registered TSP's, or that
/// the listener did not identify: `403` with the contract's error shape, the same for all.
pub async fn require_tsp(req: Request, next: Next) -> Response {
    match req.extensions().get::<TspCaller>() {
        Some(TspCaller::Tsp(_)) | Some(TspCaller::Unbound) => next.run(req).await,
        Some(TspCaller::Unknown) | None => (
            StatusCode::FORBIDDEN,
            [(header::CONNECTION, HeaderValue::from_static("close"))],
            Json(ErrorRes {
                response_code: 911,
                error_message: "forbidden".into(),
            }),
        )
            .into_response(),
    }
}
