//! The requestor API (`/requestor/v1`, on the wallet listener): token requestors (merchants,
//! PSPs) tokenize cards they keep on file, get each transaction's credentials, read and delete
//! their tokens. A requestor is recognised by its API key (`Authorization: Bearer trk_…`) and
//! sees its own tokens only: another's answers `404` like an unknown one.

use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::domain::notification::Requestor;
use crate::domain::requestor_token::{RequestorToken, TRANSACTION_TYPES};
use crate::flows::requestor_tokens::{self, RequestorApiError, Terms, Tokenize};
use crate::flows::requestor_tsp::retry_after_secs;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/encryption-keys", get(encryption_keys))
        .route("/tokens", post(tokenize))
        .route("/tokens/{token_id}", get(get_token).delete(delete_token))
        .route("/tokens/{token_id}/transactions", post(create_transaction))
        .layer(axum::middleware::from_fn_with_state(
            state,
            require_requestor,
        ))
}

/// The requestor a request comes from.
#[derive(Debug, Clone)]
pub struct RequestorCaller(pub Arc<Requestor>);

async fn require_requestor(State(hub): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = super::api_error::bearer(req.headers()).map(str::to_string);
    let found = match presented {
        Some(key) => requestor_tokens::caller_by_key(&hub, &key).await,
        None => Ok(None),
    };
    match found {
        Ok(Some(requestor)) => {
            req.extensions_mut().insert(RequestorCaller(requestor));
            next.run(req).await
        }
        Ok(None) => super::api_error::unauthorized(
            "the requestor API needs authorization: Bearer <token requestor API key>",
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

impl From<RequestorApiError> for ApiError {
    fn from(e: RequestorApiError) -> Self {
        use RequestorApiError as E;
        match e {
            E::Invalid(m) => ApiError::bad_request(m),
            E::InvalidJwe(m) => ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JWE", m),
            E::NotFound => ApiError::new(StatusCode::NOT_FOUND, "TOKEN_NOT_FOUND", "no such token"),
            E::NotActive(state) => ApiError::new(
                StatusCode::CONFLICT,
                "TOKEN_NOT_ACTIVE",
                format!("the token is {}", state.as_str()),
            ),
            E::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for another request",
            ),
            E::TspRefused { code, message } => {
                let (status, machine) = match code {
                    115 => (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_PRODUCT"),
                    163 => (StatusCode::UNPROCESSABLE_ENTITY, "CARD_NOT_ELIGIBLE"),
                    164 => (StatusCode::UNPROCESSABLE_ENTITY, "TOO_MANY_TOKENS_FOR_CARD"),
                    166 => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_CARD"),
                    167 => (StatusCode::CONFLICT, "CARD_ALREADY_ENROLLED"),
                    432 => (StatusCode::CONFLICT, "TOKEN_NOT_ACTIVE"),
                    _ => (StatusCode::BAD_GATEWAY, "TSP_REFUSED"),
                };
                let mut e = ApiError::new(status, machine, message);
                e.tsp_response_code = Some(code);
                e
            }
            E::TspUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TSP_UNAVAILABLE",
                "the TSP is unavailable; try again later",
            ),
            E::TspProtocol(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "TSP_ERROR",
                "the TSP answered outside the contract",
            ),
            E::Internal(e) => ApiError::from(e),
        }
    }
}

/// The error's answer; a `503` says when to come back (the TSP's own wait, when it named one).
fn answer(e: RequestorApiError) -> Response {
    let retry_after = match &e {
        RequestorApiError::TspUnavailable(wait) => Some(retry_after_secs(*wait)),
        _ => None,
    };
    let mut r = ApiError::from(e).into_response();
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// A TSP's card encryption key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKey {
    pub tsp_id: String,
    /// The public JWK (EC P-256 or RSA) to encrypt card data to, as a JWE with `alg`
    /// ECDH-ES+A256KW or RSA-OAEP-256, `enc` A256GCM and this key's `kid`.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeys {
    pub keys: Vec<EncryptionKey>,
}

/// The keys card data is encrypted to, one per TSP that published one.
#[utoipa::path(get, path = "/requestor/v1/encryption-keys", tag = "requestor",
    responses((status = 200, body = EncryptionKeys), (status = 401, body = ApiErrorBody)),
    security(("requestor" = [])))]
async fn encryption_keys(State(hub): State<AppState>) -> Result<Json<EncryptionKeys>, ApiError> {
    let keys = requestor_tokens::encryption_keys(&hub).await?;
    Ok(Json(EncryptionKeys {
        keys: keys
            .into_iter()
            .map(|(tsp_id, jwk)| EncryptionKey { tsp_id, jwk })
            .collect(),
    }))
}

/// A card on file to tokenize.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenizeBody {
    /// The card (`{"fpan", "exp": MMYY, "cvv"?, "cardholderName"?, "billingAddress"?}`) as a
    /// compact JWE to a key of `GET /requestor/v1/encryption-keys`; the hub forwards it
    /// untouched to that key's TSP.
    pub encrypted_card: String,
    /// The requestor's own reference of the card (1..64).
    #[serde(default)]
    pub requestor_reference: Option<String>,
}

/// A card-on-file token as its requestor sees it: never a PAN.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub token_id: String,
    /// `ACTIVE`, `SUSPENDED` or `DELETED`.
    pub token_state: String,
    pub token_last_digits: Option<String>,
    /// MMYY.
    pub token_expiry_date: Option<String>,
    pub card_last_digits: Option<String>,
    /// MMYY.
    pub card_expiry_date: Option<String>,
    pub card_art_id: Option<String>,
    pub requestor_reference: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    pub last_update_timestamp: String,
}

fn view(t: RequestorToken) -> TokenView {
    TokenView {
        token_id: t.token_id,
        token_state: t.state.as_str().to_string(),
        token_last_digits: t.token_last_digits,
        token_expiry_date: t.token_expiry_date,
        card_last_digits: t.card_last_digits,
        card_expiry_date: t.card_expiry_date,
        card_art_id: t.card_art_id,
        requestor_reference: t.requestor_reference,
        last_update_timestamp: crate::domain::lifecycle::format_timestamp(t.last_update_ms),
    }
}

/// Tokenize a card on file. The `Idempotency-Key` header (1..64 characters) is required: the
/// same key with the same body gets the same token (`200`) without a second TSP call; with
/// another body, `422`.
#[utoipa::path(post, path = "/requestor/v1/tokens", tag = "requestor",
    params(("Idempotency-Key" = String, Header)),
    request_body = TokenizeBody,
    responses((status = 201, body = TokenView), (status = 200, body = TokenView, description = "a repeat"),
        (status = 400, body = ApiErrorBody, description = "INVALID_REQUEST, INVALID_JWE"),
        (status = 401, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody, description = "CARD_ALREADY_ENROLLED (167)"),
        (status = 422, body = ApiErrorBody, description = "UNKNOWN_PRODUCT (115), CARD_NOT_ELIGIBLE (163), TOO_MANY_TOKENS_FOR_CARD (164), INVALID_CARD (166), IDEMPOTENCY_KEY_REUSED"),
        (status = 502, body = ApiErrorBody), (status = 503, body = ApiErrorBody, description = "the TSP is unavailable: retry")),
    security(("requestor" = [])))]
async fn tokenize(
    State(hub): State<AppState>,
    Extension(RequestorCaller(requestor)): Extension<RequestorCaller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let idempotency_key = match super::wallet::idempotency_key(&headers) {
        Ok(Some(key)) => key,
        Ok(None) => {
            return ApiError::bad_request("the Idempotency-Key header is required").into_response()
        }
        Err(e) => return e.into_response(),
    };
    let parsed: TokenizeBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => {
            return ApiError::bad_request(
                "the body must be {\"encryptedCard\": JWE, \"requestorReference\"?}",
            )
            .into_response()
        }
    };
    if parsed
        .requestor_reference
        .as_deref()
        .is_some_and(|r| r.is_empty() || r.chars().count() > 64)
    {
        return ApiError::bad_request("requestorReference must be 1 to 64 characters")
            .into_response();
    }
    let request = Tokenize {
        encrypted_card: parsed.encrypted_card,
        requestor_reference: parsed.requestor_reference,
        idempotency_key,
        body: body.to_vec(),
    };
    match requestor_tokens::tokenize(&hub, &requestor, request).await {
        Ok((token, made)) => {
            let status = if made {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(view(token))).into_response()
        }
        Err(e) => answer(e),
    }
}

/// One of the requestor's tokens.
#[utoipa::path(get, path = "/requestor/v1/tokens/{tokenId}", tag = "requestor",
    params(("tokenId" = String, Path)),
    responses((status = 200, body = TokenView), (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("requestor" = [])))]
async fn get_token(
    State(hub): State<AppState>,
    Extension(RequestorCaller(requestor)): Extension<RequestorCaller>,
    Path(token_id): Path<String>,
) -> Response {
    match requestor_tokens::get(&hub, &requestor.requestor_id, &token_id).await {
        Ok(t) => Json(view(t)).into_response(),
        Err(e) => answer(e),
    }
}

/// Delete one of the requestor's tokens: the TSP is told, and the update (`DELETED`) reaches the
/// requestor's endpoint like any other. Deleting a deleted token is `204` too.
#[utoipa::path(delete, path = "/requestor/v1/tokens/{tokenId}", tag = "requestor",
    params(("tokenId" = String, Path)),
    responses((status = 204), (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)),
    security(("requestor" = [])))]
async fn delete_token(
    State(hub): State<AppState>,
    Extension(RequestorCaller(requestor)): Extension<RequestorCaller>,
    Path(token_id): Path<String>,
) -> Response {
    match requestor_tokens::delete(&hub, &requestor, &token_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => answer(e),
    }
}

/// What the requestor is about to pay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransactionBody {
    /// Minor units, 1 to 12 digits.
    pub amount: String,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    /// `CIT_ECOM` (customer-initiated e-commerce), `MIT_RECURRING` or `MIT_UNSCHEDULED`
    /// (merchant-initiated).
    pub transaction_type: String,
}

/// A transaction's credentials: the token's current PAN (passed through from the TSP, never
/// stored or logged by the hub), its expiry, the cryptogram for this transaction and the ECI.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub token_id: String,
    pub token_pan: String,
    /// MMYY.
    pub token_expiry_date: String,
    pub cryptogram: String,
    pub eci: String,
    pub token_last_digits: Option<String>,
}

/// Create Transaction: the credentials of one payment with an ACTIVE token. A token that is not
/// ACTIVE: `409 TOKEN_NOT_ACTIVE` naming its state.
#[utoipa::path(post, path = "/requestor/v1/tokens/{tokenId}/transactions", tag = "requestor",
    params(("tokenId" = String, Path)),
    request_body = TransactionBody,
    responses((status = 201, body = TransactionView), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody, description = "TOKEN_NOT_ACTIVE"),
        (status = 502, body = ApiErrorBody), (status = 503, body = ApiErrorBody, description = "the TSP is unavailable: retry")),
    security(("requestor" = [])))]
async fn create_transaction(
    State(hub): State<AppState>,
    Extension(RequestorCaller(requestor)): Extension<RequestorCaller>,
    Path(token_id): Path<String>,
    JsonBody(body): JsonBody<TransactionBody>,
) -> Response {
    let amount_ok =
        (1..=12).contains(&body.amount.len()) && body.amount.bytes().all(|b| b.is_ascii_digit());
    let currency_ok =
        body.currency.len() == 3 && body.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !amount_ok || !currency_ok || !TRANSACTION_TYPES.contains(&body.transaction_type.as_str()) {
        return ApiError::bad_request(
            "amount is 1 to 12 digits (minor units), currency an ISO 4217 code, transactionType \
             CIT_ECOM, MIT_RECURRING or MIT_UNSCHEDULED",
        )
        .into_response();
    }
    let terms = Terms {
        amount: body.amount,
        currency: body.currency,
        transaction_type: body.transaction_type,
    };
    match requestor_tokens::transact(&hub, &requestor, &token_id, &terms).await {
        Ok(c) => {
            let last4 = c.token_pan[c.token_pan.len() - 4..].to_string();
            let v = TransactionView {
                token_id,
                token_pan: c.token_pan,
                token_expiry_date: c.token_expiry_date,
                cryptogram: c.cryptogram,
                eci: c.eci,
                token_last_digits: Some(last4),
            };
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Err(e) => answer(e),
    }
}
