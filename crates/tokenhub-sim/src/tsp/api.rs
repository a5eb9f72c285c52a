//! The HTTP face of the simulated TSP: the outgoing API the hub calls (`/tsp/trapi/v2.0/...`,
//! the TSP outgoing API v2; `lifecycle` has the calls after createToken) and
//! the simulator's own `/sim/...` routes: status, one token's view, transactions.
//!
//! Requests are validated the way a real TSP would, so that a hub sending something the contract
//! forbids finds out here: bodies are read as raw bytes and checked field by field, to answer
//! with the contract's codes (111 missing, 112 malformed, 113 unknown issuer) rather than the
//! framework's own rejections.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{middleware, Json, Router};
use serde_json::{Map, Value};

use super::cof_api;
use super::delivery::{self, DataJob};
use super::elements::{new_token_id, ClearElements, TokenInfo, YearMonth};
use super::lifecycle;
use super::misbehaviour::{self, Misbehaviour};
use super::reperso;
use super::transactions::{self, TRANSACTIONS_PATH};
use super::vault::{Created, RequestKey, SimToken};
use super::SimState;

pub(crate) const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Headers are ids of 1..64 characters in both TSP API documents.
const MAX_ID_HEADER_LEN: usize = 64;

/// Where the outgoing API is mounted on the simulator's listener.
pub const TSP_API_PREFIX: &str = "/tsp/trapi/v2.0";

pub(crate) fn router(state: Arc<SimState>) -> Router {
    let tsp = Router::new()
        .route("/tokens", post(create_token))
        .route(
            "/tokens/{token_id}/state",
            put(lifecycle::update_token_state),
        )
        .route(
            "/tokens/{token_id}/newDataStatus",
            put(lifecycle::submit_new_data_status),
        )
        .route("/tokens/{token_id}/reperso", post(reperso::reperso_token))
        .route("/tokens/{token_id}/card", put(super::updates::update_token))
        .route("/healthCheck", get(health_check))
        .route("/cardOnFileTokens", post(cof_api::create))
        .route("/cardOnFileTokens/{token_id}", delete(cof_api::delete))
        .route(
            "/cardOnFileTokens/{token_id}/transactionCredentials",
            post(cof_api::credentials),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            misbehaviour::guard,
        ));
    Router::new()
        .nest(TSP_API_PREFIX, tsp)
        .route("/sim/status", get(sim_status))
        .route(
            "/sim/misbehaviour",
            get(get_misbehaviour).put(put_misbehaviour),
        )
        .route("/sim/tokens/{token_id}", get(sim_token))
        .route(TRANSACTIONS_PATH, post(transactions::submit))
        .route("/sim/encryption-key", get(cof_api::encryption_key))
        .route("/sim/authorizations", post(cof_api::authorize))
        .route("/sim/cardOnFile/{token_id}/renewal", post(cof_api::renewal))
        .with_state(state)
}

/// A refusal in the contract's form: `400 {"responseCode", "errorMessage"}`. Messages name the
/// field at fault, never echo its value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn missing(what: &str) -> Self {
        Self {
            code: 111,
            message: format!("{what} is missing"),
        }
    }

    pub(crate) fn format(what: &str) -> Self {
        Self {
            code: 112,
            message: format!("{what} has a bad format"),
        }
    }

    pub(crate) fn unknown_issuer() -> Self {
        Self {
            code: 113,
            message: "issuerId is not an issuer of this TSP, or not the token's".to_string(),
        }
    }

    pub(crate) fn unknown_token() -> Self {
        Self {
            code: 119,
            message: "no such token".to_string(),
        }
    }

    pub(crate) fn state_forbids(why: &str) -> Self {
        Self {
            code: 432,
            message: format!("the token's state does not allow it: {why}"),
        }
    }

    fn unexpected() -> Self {
        Self {
            code: 921,
            message: "unexpected server error".to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "responseCode": self.code, "errorMessage": self.message });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// Echoes the caller's id header on every answer, success or not, as the contract requires.
pub(crate) fn echo(
    mut response: Response,
    name: HeaderName,
    value: Option<HeaderValue>,
) -> Response {
    if let Some(value) = value {
        response.headers_mut().insert(name, value);
    }
    response
}

/// A mandatory id header: absent → 111; not text, empty or over 64 characters → 112.
pub(crate) fn id_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<&'a str, ApiError> {
    let value = headers
        .get(name)
        .ok_or_else(|| ApiError::missing(name.as_str()))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::format(name.as_str()))?;
    if text.is_empty() || text.chars().count() > MAX_ID_HEADER_LEN {
        return Err(ApiError::format(name.as_str()));
    }
    Ok(text)
}

async fn health_check(headers: HeaderMap) -> Response {
    let echoed = headers.get(&X_REQUEST_ID).cloned();
    let response = match id_header(&headers, &X_REQUEST_ID) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    };
    echo(response, X_REQUEST_ID, echoed)
}

async fn sim_status(State(state): State<Arc<SimState>>) -> Response {
    Json(state.counters.snapshot()).into_response()
}

async fn get_misbehaviour(State(state): State<Arc<SimState>>) -> Response {
    Json(state.switches.get()).into_response()
}

/// `PUT /sim/misbehaviour` with the JSON of [`Misbehaviour`] (absent fields off) → 204; 400 for a
/// body that is not one.
async fn put_misbehaviour(
    State(state): State<Arc<SimState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body
        .ok()
        .and_then(|b| serde_json::from_slice::<Misbehaviour>(&b).ok());
    match parsed {
        Some(next) => {
            tracing::info!(misbehaviour = ?next, "TSP simulator misbehaviour set");
            state.switches.set(next);
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn sim_token(State(state): State<Arc<SimState>>, Path(token_id): Path<String>) -> Response {
    match state.vault.view(&token_id) {
        Some(view) => Json(view).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// createTokenReq, after validation: what the simulator uses of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CreateTokenReq {
    pub(crate) issuer_id: String,
    pub(crate) wallet_card_ref_id: String,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateTokenRes {
    token_id: String,
    token_info: TokenInfo,
}

async fn create_token(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let response = match create_token_inner(&state, &headers, body) {
        Ok(res) => (StatusCode::OK, Json(res)).into_response(),
        Err(e) => {
            tracing::info!(code = e.code, reason = %e.message, "createToken refused");
            e.into_response()
        }
    };
    echo(response, X_CORRELATION_ID, echoed)
}

fn create_token_inner(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<CreateTokenRes, ApiError> {
    let correlation_id = id_header(headers, &X_CORRELATION_ID)?.to_string();
    let body = body.map_err(|_| ApiError::format("the body"))?;
    let req = parse_create_token(&body)?;
    if let Some(accepted) = &state.config.issuer_ids {
        if !accepted.contains(&req.issuer_id) {
            return Err(ApiError::unknown_issuer());
        }
    }

    // Generate outside the vault's lock; a replay simply drops what was generated.
    let clear = ClearElements::generate(&mut rand::thread_rng(), YearMonth::now());
    let wire = clear.to_wire(&state.keys).map_err(|e| {
        // Keys were checked at start-up, so this is a bug, not bad input.
        tracing::error!(error = %e, "encrypting the data preparation failed");
        ApiError::unexpected()
    })?;
    let key = RequestKey {
        correlation_id: correlation_id.clone(),
        issuer_id: req.issuer_id.clone(),
        wallet_card_ref_id: req.wallet_card_ref_id,
    };
    let token_id = new_token_id(&mut rand::thread_rng());
    let answered_at = Instant::now();
    let created = state.vault.create_or_replay(key, || {
        SimToken::new(token_id.clone(), req.issuer_id.clone(), clear, answered_at)
    });

    let (token_id, token_info, elements) = match created {
        Created::New { token_id, info } => {
            state.counters.token_created();
            tracing::info!(%token_id, %correlation_id, "token created");
            (token_id, info, Some((req.issuer_id, wire)))
        }
        Created::Replay {
            token_id,
            info,
            resend,
        } => {
            tracing::info!(%token_id, %correlation_id, resend, "createToken replayed");
            // The stored clear data, not the fresh one, is what the token carries.
            let wire = if resend {
                let stored = state.vault.with_token(&token_id, |t| {
                    t.clear
                        .to_wire(&state.keys)
                        .map(|wire| (t.issuer_id.clone(), wire))
                });
                match stored {
                    Some(Ok(stored)) => Some(stored),
                    _ => return Err(ApiError::unexpected()),
                }
            } else {
                None
            };
            (token_id, info, wire)
        }
    };

    if let Some((issuer_id, elements)) = elements {
        let job = DataJob {
            token_id: token_id.clone(),
            issuer_id,
            elements,
            answered_at,
        };
        // Counted in flight before the answer leaves, see `delivery::deliver`.
        let in_flight = state.counters.delivery_started();
        let shutdown = state.shutdown.clone();
        tokio::spawn(delivery::deliver(state.clone(), job, in_flight, shutdown));
    }
    Ok(CreateTokenRes {
        token_id,
        token_info,
    })
}

/// Validates createTokenReq against the outgoing spec. `null` counts as absent.
pub(crate) fn parse_create_token(body: &[u8]) -> Result<CreateTokenReq, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ApiError::format("the body"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::format("the body"))?;
    let issuer_id = required_text(obj, "issuerId", 10, 10)?;
    let wallet_card_ref_id = required_text(obj, "walletCardRefId", 1, 64)?;
    optional_text(obj, "issuerCardRefId", 1, 64)?;
    optional_text(obj, "tokenRequestorId", 1, 32)?;
    optional_text(obj, "cipheredCardInfo", 1, 8196)?;
    optional_text(obj, "cipheredCardInfoKeyId", 1, 64)?;
    match obj.get("deviceInfo") {
        None | Some(Value::Null) => {}
        Some(Value::Object(device)) => {
            optional_text(device, "deviceId", 1, 64)?;
            if let Some(kind) = optional_text(device, "deviceType", 1, 32)? {
                if !["PHONE", "TABLET", "WATCH", "WEARABLE_DEVICE"].contains(&kind) {
                    return Err(ApiError::format("deviceType"));
                }
            }
        }
        Some(_) => return Err(ApiError::format("deviceInfo")),
    }
    Ok(CreateTokenReq {
        issuer_id: issuer_id.to_string(),
        wallet_card_ref_id: wallet_card_ref_id.to_string(),
    })
}

pub(crate) fn required_text<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<&'a str, ApiError> {
    optional_text(obj, field, min, max)?.ok_or_else(|| ApiError::missing(field))
}

/// A string field of `min..=max` characters (not bytes), if present.
pub(crate) fn optional_text<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let len = s.chars().count();
            if len < min || len > max {
                Err(ApiError::format(field))
            } else {
                Ok(Some(s))
            }
        }
        Some(_) => Err(ApiError::format(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> u16 {
        parse_create_token(body.as_bytes()).unwrap_err().code
    }

    #[test]
    fn a_minimal_create_token_request_is_accepted() {
        let req =
            parse_create_token(br#"{"issuerId": "ISSUER0001", "walletCardRefId": "w-1"}"#).unwrap();
        assert_eq!(req.issuer_id, "ISSUER0001");
        assert_eq!(req.wallet_card_ref_id, "w-1");
    }

    #[test]
    fn a_full_create_token_request_is_accepted() {
        let body = r#"{"issuerId": "ÉMETTEUR01", "walletCardRefId": "w-1",
            "issuerCardRefId": "c-1", "tokenRequestorId": "50110030273",
            "deviceInfo": {"deviceId": "d-1", "deviceType": "WATCH"},
            "cipheredCardInfo": "AABB", "cipheredCardInfoKeyId": "k1"}"#;
        assert!(
            parse_create_token(body.as_bytes()).is_ok(),
            "ten characters, not bytes"
        );
    }

    #[test]
    fn missing_fields_are_111_and_malformed_ones_112() {
        assert_eq!(code(r#"{"walletCardRefId": "w"}"#), 111);
        assert_eq!(code(r#"{"issuerId": null, "walletCardRefId": "w"}"#), 111);
        assert_eq!(code(r#"{"issuerId": "ISSUER0001"}"#), 111);
        assert_eq!(
            code(r#"{"issuerId": "ISSUER001", "walletCardRefId": "w"}"#),
            112
        );
        assert_eq!(
            code(r#"{"issuerId": "ISSUER00011", "walletCardRefId": "w"}"#),
            112
        );
        assert_eq!(
            code(r#"{"issuerId": 1234567890, "walletCardRefId": "w"}"#),
            112
        );
        assert_eq!(
            code(r#"{"issuerId": "ISSUER0001", "walletCardRefId": ""}"#),
            112
        );
        let long = "w".repeat(65);
        assert_eq!(
            code(&format!(
                r#"{{"issuerId": "ISSUER0001", "walletCardRefId": "{long}"}}"#
            )),
            112
        );
        let base = r#""issuerId": "ISSUER0001", "walletCardRefId": "w""#;
        assert_eq!(
            code(&format!(
                r#"{{{base}, "deviceInfo": {{"deviceType": "TOASTER"}}}}"#
            )),
            112
        );
        assert_eq!(code(&format!(r#"{{{base}, "deviceInfo": "PHONE"}}"#)), 112);
        assert_eq!(
            code(&format!(
                r#"{{{base}, "tokenRequestorId": "{}"}}"#,
                "1".repeat(33)
            )),
            112
        );
        assert_eq!(code(&format!(r#"{{{base}, "cipheredCardInfo": ""}}"#)), 112);
        assert_eq!(code("not json"), 112);
        assert_eq!(code("[]"), 112);
        assert_eq!(code(""), 112);
    }

    #[test]
    fn id_headers_are_checked_for_presence_then_format() {
        let mut headers = HeaderMap::new();
        assert_eq!(id_header(&headers, &X_REQUEST_ID).unwrap_err().code, 111);
        headers.insert(X_REQUEST_ID, HeaderValue::from_static(""));
        assert_eq!(id_header(&headers, &X_REQUEST_ID).unwrap_err().code, 112);
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(65)).unwrap(),
        );
        assert_eq!(id_header(&headers, &X_REQUEST_ID).unwrap_err().code, 112);
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(id_header(&headers, &X_REQUEST_ID).unwrap_err().code, 112);
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(64)).unwrap(),
        );
        assert_eq!(id_header(&headers, &X_REQUEST_ID).unwrap(), "a".repeat(64));
    }
}
