//! The card-on-file calls of the outgoing API and the simulator's routes around them:
//!
//! - `POST /tsp/trapi/v2.0/cardOnFileTokens` (createToken for a card on file) `{"tokenRequestorId",
//!   "cipheredCardInfo": JWE to the TSP's card key, "cipheredCardInfoKeyId"?,
//!   "requestorCardRefId"?}` → `200 {"tokenId", "issuerId", "tokenState": "ACTIVE", "tokenInfo":
//!   {"exp", "last4"}, "cardInfo": {"exp", "last4"}, "cardArtId"}`; a repeat of the same
//!   `x-correlation-id` gets the same token. Refusals: 111/112 (a JWE that does not open is 112),
//!   115, 163, 164, 166, 167 ([`CardRefusal`]).
//! - `POST /tsp/trapi/v2.0/cardOnFileTokens/{tokenId}/transactionCredentials` `{"tokenRequestorId",
//!   "amount", "currency", "transactionType", "merchantId"}` → `200 {"tokenPan",
//!   "tokenExpiryDate", "cryptogram", "eci", "atc"}`; 119 another requestor's or unknown token,
//!   432 a token that is not ACTIVE (its state in the message).
//! - `DELETE /tsp/trapi/v2.0/cardOnFileTokens/{tokenId}` `{"tokenRequestorId"}` → 204; 119.
//! - `GET /sim/encryption-key`: the public JWK card data is encrypted to.
//! - `POST /sim/authorizations` `{"tokenPan", "tokenExpiryDate", "cryptogram", "amount",
//!   "currency", "transactionType", "merchantId"}` → `200 {"approved", "reason"}` ([`AuthReason`]);
//!   `400` `FORMAT_ERROR` for a body that does not parse.
//! - `POST /sim/cardOnFile/{tokenId}/renewal`: a new token PAN; the hub is sent the token update
//!   (new last digits and expiry) → `200 {"hubStatus"}`, 404 for an unknown token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::api::{echo, id_header, optional_text, required_text, ApiError, X_CORRELATION_ID};
use super::cof::{AuthReason, Card, TxnTerms};
use super::elements::YearMonth;
use super::updates::{TokenUpdate, UpdateAnswer};
use super::{SimState, TspSimHandle};

/// Transaction types a token requestor may ask credentials for.
pub const TRANSACTION_TYPES: [&str; 3] = ["CIT_ECOM", "MIT_RECURRING", "MIT_UNSCHEDULED"];

/// An authorization as a merchant's acquirer sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub token_pan: String,
    /// MMYY.
    pub token_expiry_date: String,
    pub cryptogram: String,
    pub amount: String,
    pub currency: String,
    pub transaction_type: String,
    pub merchant_id: String,
}

/// The TSP's answer to an authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationAnswer {
    pub approved: bool,
    pub reason: String,
}

fn mmyy(text: &str) -> Option<YearMonth> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u8 = text[..2].parse().ok()?;
    let year: u16 = text[2..].parse().ok()?;
    (1..=12).contains(&month).then_some(YearMonth {
        year: 2000 + year,
        month,
    })
}

/// The card inside the JWE: `{"fpan", "exp": MMYY, "cvv"?, "cardholderName"?, "billingAddress"?}`.
fn parse_card(payload: &[u8]) -> Option<Card> {
    let value: Zeroizing<Vec<u8>> = Zeroizing::new(payload.to_vec());
    let obj: Map<String, Value> = serde_json::from_slice(&value).ok()?;
    let fpan = Zeroizing::new(obj.get("fpan")?.as_str()?.to_string());
    let expiry = mmyy(obj.get("exp")?.as_str()?)?;
    Some(Card { fpan, expiry })
}

fn object(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|_| ApiError::format("the body"))?;
    match serde_json::from_slice(&body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(ApiError::format("the body")),
    }
}

fn refused(call: &str, e: ApiError) -> Response {
    tracing::info!(code = e.code, reason = %e.message, "{call} refused");
    e.into_response()
}

pub(crate) async fn create(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let response = match create_inner(&state, &headers, body) {
        Ok(res) => (StatusCode::OK, Json(res)).into_response(),
        Err(e) => refused("createToken (card on file)", e),
    };
    echo(response, X_CORRELATION_ID, echoed)
}

fn create_inner(
    state: &SimState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let correlation_id = id_header(headers, &X_CORRELATION_ID)?;
    let obj = object(body)?;
    let requestor = required_text(&obj, "tokenRequestorId", 1, 32)?;
    let jwe = required_text(&obj, "cipheredCardInfo", 1, 8196)?;
    optional_text(&obj, "cipheredCardInfoKeyId", 1, 64)?;
    optional_text(&obj, "requestorCardRefId", 1, 64)?;
    let card = state
        .card_key
        .open(jwe)
        .and_then(|clear| parse_card(&clear))
        .ok_or_else(|| ApiError::format("cipheredCardInfo"))?;
    let issuer = state
        .config
        .issuer_ids
        .as_ref()
        .and_then(|ids| ids.first().cloned())
        .unwrap_or_else(|| "ISSUER0001".to_string());
    let made = state
        .cof
        .create(requestor, &issuer, correlation_id, card, YearMonth::now())
        .map_err(|r| ApiError {
            code: r.code(),
            message: r.message().to_string(),
        })?;
    if !made.replay {
        state.counters.token_created();
    }
    tracing::info!(token_id = %made.token_id, correlation_id, replay = made.replay, "card-on-file token created");
    Ok(serde_json::json!({
        "tokenId": made.token_id,
        "issuerId": made.issuer_id,
        "tokenState": "ACTIVE",
        "tokenInfo": {"exp": made.token_expiry, "last4": made.token_last4},
        "cardInfo": {"exp": made.card_expiry, "last4": made.card_last4},
        "cardArtId": "ART-DEFAULT",
    }))
}

fn parse_terms(obj: &Map<String, Value>) -> Result<TxnTerms, ApiError> {
    let amount = required_text(obj, "amount", 1, 12)?;
    if !amount.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::format("amount"));
    }
    let currency = required_text(obj, "currency", 3, 3)?;
    if !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::format("currency"));
    }
    let kind = required_text(obj, "transactionType", 1, 32)?;
    if !TRANSACTION_TYPES.contains(&kind) {
        return Err(ApiError::format("transactionType"));
    }
    Ok(TxnTerms {
        amount: amount.to_string(),
        currency: currency.to_string(),
        kind: kind.to_string(),
        merchant_id: required_text(obj, "merchantId", 1, 64)?.to_string(),
    })
}

pub(crate) async fn credentials(
    State(state): State<Arc<SimState>>,
    Path(token_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let outcome = (|| {
        id_header(&headers, &X_CORRELATION_ID)?;
        let obj = object(body)?;
        let requestor = required_text(&obj, "tokenRequestorId", 1, 32)?;
        let terms = parse_terms(&obj)?;
        match state.cof.credentials(&token_id, requestor, &terms) {
            None => Err(ApiError::unknown_token()),
            Some(Err(s)) => Err(ApiError::state_forbids(&format!(
                "the token is {}",
                s.as_str()
            ))),
            Some(Ok(c)) => Ok(c),
        }
    })();
    let response = match outcome {
        Ok(c) => (StatusCode::OK, Json(c)).into_response(),
        Err(e) => refused("transactionCredentials", e),
    };
    echo(response, X_CORRELATION_ID, echoed)
}

pub(crate) async fn delete(
    State(state): State<Arc<SimState>>,
    Path(token_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let outcome = (|| {
        id_header(&headers, &X_CORRELATION_ID)?;
        let obj = object(body)?;
        let requestor = required_text(&obj, "tokenRequestorId", 1, 32)?;
        state
            .cof
            .delete(&token_id, requestor)
            .ok_or_else(ApiError::unknown_token)
    })();
    let response = match outcome {
        Ok(changed) => {
            if changed {
                state.counters.state_updated();
            }
            tracing::info!(%token_id, "card-on-file token deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => refused("delete (card on file)", e),
    };
    echo(response, X_CORRELATION_ID, echoed)
}

pub(crate) async fn encryption_key(State(state): State<Arc<SimState>>) -> Response {
    Json(state.card_key.public_jwk()).into_response()
}

pub(crate) async fn authorize(
    State(state): State<Arc<SimState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = object(body).ok().and_then(|obj| {
        let terms = parse_terms(&obj).ok()?;
        let text = |f: &str| obj.get(f).and_then(Value::as_str).map(str::to_string);
        Some((
            text("tokenPan")?,
            text("tokenExpiryDate")?,
            text("cryptogram")?,
            terms,
        ))
    });
    let Some((pan, expiry, cryptogram, terms)) = parsed else {
        state.counters.transaction_declined("FORMAT_ERROR");
        let answer = AuthorizationAnswer {
            approved: false,
            reason: "FORMAT_ERROR".into(),
        };
        return (StatusCode::BAD_REQUEST, Json(answer)).into_response();
    };
    let reason = state.cof.authorize(&pan, &expiry, &cryptogram, &terms);
    if reason == AuthReason::Approved {
        state.counters.transaction_approved();
    } else {
        state.counters.transaction_declined(reason.as_str());
    }
    Json(AuthorizationAnswer {
        approved: reason == AuthReason::Approved,
        reason: reason.as_str().to_string(),
    })
    .into_response()
}

pub(crate) async fn renewal(
    State(state): State<Arc<SimState>>,
    Path(token_id): Path<String>,
) -> Response {
    match renew(&state, &token_id).await {
        Ok(Some(answer)) => Json(serde_json::json!({"hubStatus": answer.status})).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!(%token_id, error = %e, "the renewal's update did not reach the hub");
            StatusCode::BAD_GATEWAY.into_response()
        }
    }
}

/// Renews the token at the TSP and returns the update the hub is owed; `None` for an unknown or
/// deleted token.
fn renewed_update(state: &SimState, token_id: &str) -> Option<TokenUpdate> {
    let renewed = state.cof.renew(token_id, YearMonth::now())?;
    let mut update = TokenUpdate::new(token_id, &renewed.issuer_id, chrono::Utc::now());
    update.token_last_digits = Some(renewed.token_last4);
    update.token_expiry_date = Some(renewed.token_expiry);
    tracing::info!(%token_id, "card-on-file token renewed");
    Some(update)
}

async fn renew(state: &Arc<SimState>, token_id: &str) -> anyhow::Result<Option<UpdateAnswer>> {
    let Some(update) = renewed_update(state, token_id) else {
        return Ok(None);
    };
    let correlation_id = uuid::Uuid::new_v4().to_string();
    Ok(Some(
        super::updates::send(state, &update, &correlation_id).await?,
    ))
}

impl TspSimHandle {
    /// The public JWK requestors encrypt card data to (`GET /sim/encryption-key`).
    pub fn encryption_jwk(&self) -> serde_json::Value {
        self.state.card_key.public_jwk()
    }

    /// Renews a card-on-file token (new token PAN, last digits and expiry) and sends the hub
    /// the update; `None` for an unknown or deleted token.
    pub async fn renew_card_on_file(&self, token_id: &str) -> anyhow::Result<Option<UpdateAnswer>> {
        renew(&self.state, token_id).await
    }

    /// Renews a card-on-file token like [`Self::renew_card_on_file`] but returns the update
    /// instead of sending it (a caller that reaches the hub its own way sends it).
    pub fn renew_card_on_file_unsent(&self, token_id: &str) -> Option<TokenUpdate> {
        renewed_update(&self.state, token_id)
    }

    /// Authorizes a payment with a card-on-file token's credentials, as `POST
    /// /sim/authorizations` does.
    pub fn authorize(&self, auth: &Authorization) -> AuthorizationAnswer {
        let terms = TxnTerms {
            amount: auth.amount.clone(),
            currency: auth.currency.clone(),
            kind: auth.transaction_type.clone(),
            merchant_id: auth.merchant_id.clone(),
        };
        let reason = self.state.cof.authorize(
            &auth.token_pan,
            &auth.token_expiry_date,
            &auth.cryptogram,
            &terms,
        );
        AuthorizationAnswer {
            approved: reason == AuthReason::Approved,
            reason: reason.as_str().to_string(),
        }
    }

    /// Every card PAN and token PAN of the card-on-file tokens, those renewals replaced too: for
    /// tests that scan a database or logs for them.
    pub fn card_on_file_pans(&self) -> Vec<String> {
        self.state.cof.pans_used()
    }

    /// Whether a card-on-file token is in the state given, at the TSP.
    pub fn card_on_file_state(&self, token_id: &str) -> Option<super::TspTokenState> {
        self.state.cof.with_token(token_id, None, |t| t.state)
    }
}
