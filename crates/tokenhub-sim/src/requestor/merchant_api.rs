//! The merchant's routes on the requestor simulator (`/sim/merchant…`), to drive it from another
//! process. Each answers `409 {"error": "no_merchant"}` when the simulator has no merchant
//! ([`super::MerchantConfig`]). No answer carries a PAN, a token PAN or a cryptogram.
//!
//! - `GET /sim/merchant` → `{"stats": MerchantStats, "tokenIds": [...]}`.
//! - `POST /sim/merchant/cards` `{"count": 1..=10000}` → `200 Tokenized` (`{"tokenIds",
//!   "failed"}`); `502` when the hub's card encryption keys cannot be read.
//! - `POST /sim/merchant/payments` `{"tokenIds"?: [...]}` → `200 PaymentRound` (`{"approved",
//!   "declined", "errors"}`): one payment with each token (every token on file by default).
//! - `POST /sim/merchant/replay` `{"tokenId"?}` → `200 {"tokenId", "approved", "reason"}`: a
//!   token's last authorization sent again as it was; `404` when there is none.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::SimState;

/// The most cards one request tokenizes.
const MAX_CARDS: u64 = 10_000;

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/sim/merchant", get(view))
        .route("/sim/merchant/cards", post(cards))
        .route("/sim/merchant/payments", post(payments))
        .route("/sim/merchant/replay", post(replay))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

fn no_merchant() -> Response {
    error(
        StatusCode::CONFLICT,
        "no_merchant",
        "this requestor simulator has no merchant configured",
    )
}

async fn view(State(state): State<Arc<SimState>>) -> Response {
    Json(json!({"stats": state.book.stats(), "tokenIds": state.book.token_ids()})).into_response()
}

#[derive(Deserialize)]
struct CardsRequest {
    count: u64,
}

async fn cards(
    State(state): State<Arc<SimState>>,
    body: Result<Json<CardsRequest>, JsonRejection>,
) -> Response {
    let Some(merchant) = state.merchant.get().cloned() else {
        return no_merchant();
    };
    let count = match body {
        Ok(Json(r)) if (1..=MAX_CARDS).contains(&r.count) => r.count,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be {\"count\": 1..=10000}",
            )
        }
    };
    match merchant.tokenize(count).await {
        Ok(made) => Json(made).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, "hub_unavailable", &e.to_string()),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PaymentsRequest {
    token_ids: Option<Vec<String>>,
}

async fn payments(
    State(state): State<Arc<SimState>>,
    body: Result<Json<PaymentsRequest>, JsonRejection>,
) -> Response {
    let Some(merchant) = state.merchant.get().cloned() else {
        return no_merchant();
    };
    let request = match body {
        Ok(Json(r)) => r,
        // No body: every token on file.
        Err(JsonRejection::MissingJsonContentType(_)) => PaymentsRequest::default(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be {\"tokenIds\"?: [...]}",
            )
        }
    };
    Json(merchant.pay(request.token_ids).await).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReplayRequest {
    token_id: Option<String>,
}

async fn replay(
    State(state): State<Arc<SimState>>,
    body: Result<Json<ReplayRequest>, JsonRejection>,
) -> Response {
    let Some(merchant) = state.merchant.get().cloned() else {
        return no_merchant();
    };
    let request = match body {
        Ok(Json(r)) => r,
        Err(JsonRejection::MissingJsonContentType(_)) => ReplayRequest::default(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be {\"tokenId\"?}",
            )
        }
    };
    match merchant.replay(request.token_id.as_deref()).await {
        Ok(Some((token_id, answer))) => {
            Json(json!({"tokenId": token_id, "approved": answer.approved,
                                                     "reason": answer.reason}))
            .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no_payment", "no payment to replay"),
        Err(e) => error(StatusCode::BAD_GATEWAY, "tsp_unavailable", &e.to_string()),
    }
}
