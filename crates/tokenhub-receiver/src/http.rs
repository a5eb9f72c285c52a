//! The axum route: `POST /notify-token-update`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::receiver::{Hooks, Outcome, ReceiveError, Receiver};
use crate::signature::X_CORRELATION_ID;
use crate::store::Store;

/// The path the hub posts to, under the requestor's `baseUrl`.
pub const NOTIFY_PATH: &str = "/notify-token-update";

/// The largest body accepted (a token update is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A router serving `POST /notify-token-update` with `receiver`: `204` for an update applied, a
/// duplicate or an obsolete one; `401 {"error": "unauthorized", "message"}`, `400 {"error":
/// "bad_request", "message"}`, or `500 {"error": "internal", ...}` (the hub retries) otherwise.
/// `x-correlation-id` is echoed.
///
/// Each delivery is processed in its own task, so that a client giving up (a timeout) cannot
/// cancel it between storing the update and calling the hooks.
///
/// Merge it into the application's router, or nest it under a prefix (the hub's `baseUrl` is
/// then `http://host/prefix`).
pub fn router<S: Store, H: Hooks>(receiver: Arc<Receiver<S, H>>) -> Router {
    Router::new()
        .route(NOTIFY_PATH, post(notify::<S, H>))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(receiver)
}

async fn notify<S: Store, H: Hooks>(
    State(receiver): State<Arc<Receiver<S, H>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let correlation_id = headers.get(X_CORRELATION_ID).cloned();
    let result = handle_detached(receiver, headers, body).await;
    with_correlation_id(result_response(&result), correlation_id)
}

/// [`Receiver::handle`] in a task of its own: finishes even if the caller's future is dropped.
/// A panic in the task (a hook's) becomes [`ReceiveError::Internal`] (`500`).
pub async fn handle_detached<S: Store, H: Hooks>(
    receiver: Arc<Receiver<S, H>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Outcome, ReceiveError> {
    let task = tokio::spawn(async move { receiver.handle(&headers, &body).await });
    match task.await {
        Ok(result) => result,
        Err(e) => Err(ReceiveError::Internal(format!(
            "the delivery's task failed: {e}"
        ))),
    }
}

/// The answer for a delivery's result: `204`, or the error's status with a JSON body.
pub fn result_response(result: &Result<Outcome, ReceiveError>) -> Response {
    match result {
        Ok(outcome) => outcome.into_response(),
        Err(error) => error.to_response(),
    }
}

fn with_correlation_id(mut response: Response, correlation_id: Option<HeaderValue>) -> Response {
    if let Some(id) = correlation_id {
        response.headers_mut().insert(X_CORRELATION_ID, id);
    }
    response
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

impl ReceiveError {
    /// The error's answer: its status and `{"error": code, "message"}` (a store failure's
    /// details stay in the logs).
    pub fn to_response(&self) -> Response {
        let message = match self {
            ReceiveError::Store(_) | ReceiveError::Internal(_) => {
                "internal error, retry later".to_string()
            }
            other => other.to_string(),
        };
        (
            self.status(),
            Json(json!({"error": self.code(), "message": message})),
        )
            .into_response()
    }
}

impl IntoResponse for ReceiveError {
    fn into_response(self) -> Response {
        self.to_response()
    }
}
