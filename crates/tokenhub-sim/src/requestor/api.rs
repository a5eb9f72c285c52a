//! The requestor's routes: the hub's `POST /notify-token-update`, and the simulator's own
//! `/sim/misbehaviour`, `/sim/status` and `/sim/tokens`; the merchant's `/sim/merchant…` are in
//! `merchant_api`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokenhub_receiver::{
    handle_detached, result_response, Outcome, ReceiveError, StoredToken, MAX_BODY_BYTES,
    NOTIFY_PATH, WEBHOOK_ID, X_CORRELATION_ID,
};

use super::events::{Counters, DeliveryEvent, DeliveryOutcome};
use super::misbehaviour::MisbehaviourRequest;
use super::SimState;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(NOTIFY_PATH, post(notify))
        .route(
            "/sim/misbehaviour",
            post(set_misbehaviour).get(get_misbehaviour),
        )
        .route("/sim/status", get(status))
        .route("/sim/tokens", get(tokens))
        .merge(super::merchant_api::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn notify(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    let received_at = Instant::now();
    Counters::bump(&state.counters.received);
    let (forced, delay) = state.switches.take();
    let (mut response, outcome) = match forced {
        Some(forced) => {
            Counters::bump(&state.counters.failed_on_purpose);
            let mut response = forced.status.into_response();
            if let Some(seconds) = forced.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(seconds));
            }
            (response, DeliveryOutcome::Forced)
        }
        None => {
            let result =
                handle_detached(state.receiver.clone(), headers.clone(), body.clone()).await;
            let outcome = match &result {
                Ok(Outcome::Applied) => DeliveryOutcome::Applied,
                Ok(Outcome::Duplicate) => DeliveryOutcome::Duplicate,
                Ok(Outcome::Obsolete) => DeliveryOutcome::Obsolete,
                Err(ReceiveError::Unauthorized(_) | ReceiveError::BadRequest(_)) => {
                    DeliveryOutcome::Rejected
                }
                Err(_) => DeliveryOutcome::Failed,
            };
            (result_response(&result), outcome)
        }
    };
    if let Some(id) = headers.get(X_CORRELATION_ID) {
        response.headers_mut().insert(X_CORRELATION_ID, id.clone());
    }
    let status = response.status();
    if status.is_success() {
        Counters::bump(&state.counters.answered_2xx);
    }

    // Best effort: the body may not even be JSON.
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let event = DeliveryEvent {
        webhook_id: headers
            .get(WEBHOOK_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        token_id: field("tokenId"),
        last_update_timestamp: field("lastUpdateTimestamp"),
        received_at,
        status: status.as_u16(),
        outcome,
        headers,
    };
    tracing::debug!(
        webhook_id = event.webhook_id.as_deref().unwrap_or(""),
        token_id = event.token_id.as_deref().unwrap_or(""),
        status = event.status,
        ?outcome,
        "requestor simulator: notification"
    );
    // No subscriber is fine.
    let _ = state.events.send(event);

    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
}

async fn set_misbehaviour(
    State(state): State<Arc<SimState>>,
    Json(request): Json<MisbehaviourRequest>,
) -> Response {
    match state.misbehave(&request).await {
        Ok(current) => Json(current).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "bad_request", "message": error.to_string()})),
        )
            .into_response(),
    }
}

async fn get_misbehaviour(State(state): State<Arc<SimState>>) -> Response {
    Json(state.misbehaviour()).into_response()
}

async fn status(State(state): State<Arc<SimState>>) -> Response {
    Json(json!({
        "stats": state.stats(),
        "misbehaviour": state.misbehaviour(),
        "merchant": state.book.stats(),
    }))
    .into_response()
}

async fn tokens(State(state): State<Arc<SimState>>) -> Response {
    match state.receiver.tokens().await {
        Ok(tokens) => {
            let by_id: BTreeMap<String, StoredToken> = tokens
                .into_iter()
                .map(|t| (t.update.token_id.clone(), t))
                .collect();
            Json(by_id).into_response()
        }
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal", "message": error.to_string()})),
        )
            .into_response(),
    }
}
