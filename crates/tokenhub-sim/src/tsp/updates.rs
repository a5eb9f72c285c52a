//! Token changes both ways after creation:
//!
//! - `updateToken` (hub → TSP): `PUT /tsp/trapi/v2.0/tokens/{tokenId}/card` `{"issuerId",
//!   "issuerCardRefId"?, "newCipheredCardInfo"?, "cipheredCardInfoKeyId"?}` → 204: the issuer
//!   renewed or replaced the card. The simulator counts it (it holds no card to change).
//! - token updates (TSP → hub): `POST {hub}/trapi/v2.0/tokens/{tokenId}/updates` with
//!   `{"issuerId", "lastUpdateTimestamp", "tokenState"?, "tokenExpiryDate"?, "tokenLastDigits"?,
//!   "cardLastDigits"?, "cardExpiryDate"?, "cardArtId"?}`, sent by [`TspSimHandle::send_update`]
//!   (an expiry extension, new last digits, a suspension…). The simulator applies a state it
//!   sends to its own view of the token first, as a TSP would.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::api::{echo, optional_text, required_text, ApiError, X_CORRELATION_ID};
use super::lifecycle::checked;
use super::vault::TspTokenState;
use super::{SimState, TspSimHandle};

struct CardUpdate {
    issuer_id: String,
}

fn parse_card_update(body: &[u8]) -> Result<CardUpdate, ApiError> {
    let obj = match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(obj)) => obj,
        _ => return Err(ApiError::format("the body")),
    };
    let issuer_id = required_text(&obj, "issuerId", 10, 10)?.to_string();
    optional_text(&obj, "issuerCardRefId", 1, 64)?;
    optional_text(&obj, "newCipheredCardInfo", 1, 8196)?;
    optional_text(&obj, "cipheredCardInfoKeyId", 1, 64)?;
    Ok(CardUpdate { issuer_id })
}

pub(crate) async fn update_token(
    State(state): State<Arc<SimState>>,
    Path(token_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let outcome = checked(&state, &headers, &token_id, body, parse_card_update, |r| {
        &r.issuer_id
    })
    .map(|(correlation_id, _)| {
        state.counters.card_updated();
        tracing::info!(%token_id, %correlation_id, "updateToken");
    });
    let response = match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    };
    echo(response, X_CORRELATION_ID, echoed)
}

/// A token update the simulator sends to the hub.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUpdate {
    #[serde(skip)]
    pub token_id: String,
    pub issuer_id: String,
    /// RFC 3339 with milliseconds.
    pub last_update_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expiry_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_last_digits: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_last_digits: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_expiry_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_art_id: Option<String>,
}

impl TokenUpdate {
    /// An update of `token_id` stamped `at`.
    pub fn new(token_id: &str, issuer_id: &str, at: DateTime<Utc>) -> Self {
        Self {
            token_id: token_id.to_string(),
            issuer_id: issuer_id.to_string(),
            last_update_timestamp: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ..Default::default()
        }
    }
}

/// The hub's answer to a token update: its HTTP status and, on a refusal, its response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateAnswer {
    pub status: u16,
    pub response_code: Option<u64>,
}

impl TspSimHandle {
    /// Sends a token update to the hub (`POST …/tokens/{tokenId}/updates`) under a fresh
    /// `x-correlation-id` and returns its answer. A state it carries is applied to the
    /// simulator's own view of the token first (a TSP decides, then tells the hub).
    pub async fn send_update(&self, update: &TokenUpdate) -> anyhow::Result<UpdateAnswer> {
        self.send_update_as(update, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// [`Self::send_update`] under a given `x-correlation-id` (a retry of the same update).
    pub async fn send_update_as(
        &self,
        update: &TokenUpdate,
        correlation_id: &str,
    ) -> anyhow::Result<UpdateAnswer> {
        send(&self.state, update, correlation_id).await
    }
}

/// Sends `update` to the hub under `correlation_id`, after applying a state it carries to the
/// simulator's own view of the token.
pub(crate) async fn send(
    state: &SimState,
    update: &TokenUpdate,
    correlation_id: &str,
) -> anyhow::Result<UpdateAnswer> {
    let to = match update.token_state.as_deref() {
        Some("ACTIVE") => Some(TspTokenState::Active),
        Some("SUSPENDED") => Some(TspTokenState::Suspended),
        Some("DELETED") => Some(TspTokenState::Deleted),
        _ => None,
    };
    if let Some(to) = to {
        state.vault.with_token(&update.token_id, |t| {
            if t.state != TspTokenState::Deleted {
                t.state = to;
            }
        });
        state.cof.with_token(&update.token_id, None, |t| {
            if t.state != TspTokenState::Deleted {
                t.state = to;
            }
        });
    }
    let url = format!("{}/tokens/{}/updates", state.hub_api, update.token_id);
    let response = state
        .http
        .post(url)
        .header("x-correlation-id", correlation_id)
        .json(update)
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    Ok(UpdateAnswer {
        status,
        response_code: body.get("responseCode").and_then(|c| c.as_u64()),
    })
}
