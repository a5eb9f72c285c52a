//! What the hub tells the TSP about a token after its creation (outgoing API):
//!
//! - `updateTokenState`: `PUT /tsp/trapi/v2.0/tokens/{tokenId}/state` `{"issuerId", "state":
//!   "ACTIVE"|"SUSPENDED"|"DELETED", "reason"?}` → 204. `DELETED` is terminal: any other state
//!   after it is 432. The same state again is 204 (the hub retries).
//! - `submitNewTokenDataStatus`: `PUT /tsp/trapi/v2.0/tokens/{tokenId}/newDataStatus`
//!   `{"issuerId", "status": "SUCCESS"|"FAILURE", "errorCode"?}` → 204. SUCCESS means the device
//!   now runs a freshly personalized application whose ATC restarted at 0, so the TSP forgets the
//!   last ATC it accepted: the next accepted ATC is any ≥ 1. A retry of the same call (same
//!   `x-correlation-id`) does not reset it again.
//!
//! Both answer 111 (missing), 112 (malformed), 119 (unknown token), 113 (issuer not this TSP's
//! or not the token's), in the contract's `400 {"responseCode", "errorMessage"}` form, and echo
//! `x-correlation-id`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::api::{echo, id_header, optional_text, required_text, ApiError, X_CORRELATION_ID};
use super::vault::{SimToken, TspTokenState};
use super::SimState;

/// updateTokenStateReq, validated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StateUpdate {
    pub(crate) issuer_id: String,
    pub(crate) state: TspTokenState,
}

/// newDataStatusReq, validated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NewDataStatus {
    pub(crate) issuer_id: String,
    pub(crate) success: bool,
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(ApiError::format("the body")),
    }
}

pub(crate) fn parse_state_update(body: &[u8]) -> Result<StateUpdate, ApiError> {
    let obj = object(body)?;
    let issuer_id = required_text(&obj, "issuerId", 10, 10)?.to_string();
    let state = match required_text(&obj, "state", 1, 32)? {
        "ACTIVE" => TspTokenState::Active,
        "SUSPENDED" => TspTokenState::Suspended,
        "DELETED" => TspTokenState::Deleted,
        _ => return Err(ApiError::format("state")),
    };
    optional_text(&obj, "reason", 0, 64)?;
    Ok(StateUpdate { issuer_id, state })
}

pub(crate) fn parse_new_data_status(body: &[u8]) -> Result<NewDataStatus, ApiError> {
    let obj = object(body)?;
    let issuer_id = required_text(&obj, "issuerId", 10, 10)?.to_string();
    let success = match required_text(&obj, "status", 1, 32)? {
        "SUCCESS" => true,
        "FAILURE" => false,
        _ => return Err(ApiError::format("status")),
    };
    match obj.get("errorCode") {
        None | Some(Value::Null) | Some(Value::Number(_)) => {}
        Some(_) => return Err(ApiError::format("errorCode")),
    }
    Ok(NewDataStatus { issuer_id, success })
}

/// Moves the token to `to`. `Ok(true)` when the state changed, `Ok(false)` for a repeat.
pub(crate) fn apply_state(token: &mut SimToken, to: TspTokenState) -> Result<bool, ApiError> {
    if token.state == to {
        return Ok(false);
    }
    if token.state == TspTokenState::Deleted {
        return Err(ApiError::state_forbids("the token is DELETED"));
    }
    token.state = to;
    Ok(true)
}

/// Forgets the token's last ATC, unless this very call (`correlation_id`) already did.
/// `true` when it reset.
pub(crate) fn reset_atc(token: &mut SimToken, correlation_id: &str) -> bool {
    if token.last_reset_by.as_deref() == Some(correlation_id) {
        return false;
    }
    token.last_atc = None;
    token.last_reset_by = Some(correlation_id.to_string());
    true
}

/// The checks the operations on a token share (these two and `repersoToken`), in order: header,
/// path, body, then the issuer and the token.
pub(crate) fn checked<T>(
    state: &SimState,
    headers: &HeaderMap,
    token_id: &str,
    body: Result<Bytes, BytesRejection>,
    parse: impl FnOnce(&[u8]) -> Result<T, ApiError>,
    issuer_of: impl Fn(&T) -> &str,
) -> Result<(String, T), ApiError> {
    let correlation_id = id_header(headers, &X_CORRELATION_ID)?.to_string();
    if token_id.is_empty() || token_id.chars().count() > 48 {
        return Err(ApiError::format("tokenId"));
    }
    let body = body.map_err(|_| ApiError::format("the body"))?;
    let req = parse(&body)?;
    let issuer_id = issuer_of(&req);
    if let Some(accepted) = &state.config.issuer_ids {
        if !accepted.iter().any(|i| i == issuer_id) {
            return Err(ApiError::unknown_issuer());
        }
    }
    match state
        .vault
        .with_token(token_id, |t| t.issuer_id == issuer_id)
    {
        None => Err(ApiError::unknown_token()),
        Some(false) => Err(ApiError::unknown_issuer()),
        Some(true) => Ok((correlation_id, req)),
    }
}

pub(crate) async fn update_token_state(
    State(state): State<Arc<SimState>>,
    Path(token_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let outcome = checked(
        &state,
        &headers,
        &token_id,
        body,
        parse_state_update,
        |r| &r.issuer_id,
    )
    .and_then(|(correlation_id, req)| {
        let changed = state
            .vault
            .with_token(&token_id, |t| apply_state(t, req.state))
            .ok_or_else(ApiError::unknown_token)??;
        if changed {
            state.counters.state_updated();
        }
        tracing::info!(%token_id, %correlation_id, state = req.state.as_str(), changed, "updateTokenState");
        Ok(())
    });
    let response = match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::info!(%token_id, code = e.code, reason = %e.message, "updateTokenState refused");
            e.into_response()
        }
    };
    echo(response, X_CORRELATION_ID, echoed)
}

pub(crate) async fn submit_new_data_status(
    State(state): State<Arc<SimState>>,
    Path(token_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let outcome = checked(
        &state,
        &headers,
        &token_id,
        body,
        parse_new_data_status,
        |r| &r.issuer_id,
    )
    .and_then(|(correlation_id, req)| {
        let reset = req.success
            && state
                .vault
                .with_token(&token_id, |t| reset_atc(t, &correlation_id))
                .ok_or_else(ApiError::unknown_token)?;
        if reset {
            state.counters.atc_reset();
        }
        tracing::info!(%token_id, %correlation_id, success = req.success, reset, "submitNewTokenDataStatus");
        Ok(())
    });
    let response = match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::info!(%token_id, code = e.code, reason = %e.message, "submitNewTokenDataStatus refused");
            e.into_response()
        }
    };
    echo(response, X_CORRELATION_ID, echoed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsp::elements::{ClearElements, YearMonth};
    use std::time::Instant;

    fn token() -> SimToken {
        let clear = ClearElements::generate(
            &mut rand::thread_rng(),
            YearMonth {
                year: 2025,
                month: 6,
            },
        );
        SimToken::new("T1".into(), "ISSUER0001".into(), clear, Instant::now())
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> u16 {
        r.unwrap_err().code
    }

    #[test]
    fn state_updates_parse_the_three_states_and_refuse_anything_else() {
        let ok = |s: &str| parse_state_update(s.as_bytes()).unwrap().state;
        assert_eq!(
            ok(r#"{"issuerId":"ISSUER0001","state":"ACTIVE"}"#),
            TspTokenState::Active
        );
        assert_eq!(
            ok(r#"{"issuerId":"ISSUER0001","state":"SUSPENDED","reason":"lost phone"}"#),
            TspTokenState::Suspended
        );
        assert_eq!(
            ok(r#"{"issuerId":"ISSUER0001","state":"DELETED","reason":null}"#),
            TspTokenState::Deleted
        );
        let c = |s: &str| code(parse_state_update(s.as_bytes()));
        assert_eq!(c(r#"{"state":"ACTIVE"}"#), 111);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001"}"#), 111);
        assert_eq!(c(r#"{"issuerId":"ISSUER001","state":"ACTIVE"}"#), 112);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001","state":"INACTIVE"}"#), 112);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001","state":"active"}"#), 112);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001","state":1}"#), 112);
        let long = "r".repeat(65);
        assert_eq!(
            c(&format!(
                r#"{{"issuerId":"ISSUER0001","state":"ACTIVE","reason":"{long}"}}"#
            )),
            112
        );
        assert_eq!(c("nope"), 112);
        assert_eq!(c("[]"), 112);
    }

    #[test]
    fn new_data_statuses_parse_success_and_failure_only() {
        let ok = |s: &str| parse_new_data_status(s.as_bytes()).unwrap().success;
        assert!(ok(r#"{"issuerId":"ISSUER0001","status":"SUCCESS"}"#));
        assert!(!ok(
            r#"{"issuerId":"ISSUER0001","status":"FAILURE","errorCode":431}"#
        ));
        let c = |s: &str| code(parse_new_data_status(s.as_bytes()));
        assert_eq!(c(r#"{"status":"SUCCESS"}"#), 111);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001"}"#), 111);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001","status":"OK"}"#), 112);
        assert_eq!(
            c(r#"{"issuerId":"ISSUER0001","status":"FAILURE","errorCode":"431"}"#),
            112
        );
    }

    #[test]
    fn deleted_is_terminal_and_repeats_change_nothing() {
        let mut t = token();
        assert_eq!(t.state, TspTokenState::Inactive);
        assert!(apply_state(&mut t, TspTokenState::Active).unwrap());
        assert!(!apply_state(&mut t, TspTokenState::Active).unwrap());
        assert!(apply_state(&mut t, TspTokenState::Suspended).unwrap());
        assert!(apply_state(&mut t, TspTokenState::Active).unwrap());
        assert!(apply_state(&mut t, TspTokenState::Deleted).unwrap());
        assert!(!apply_state(&mut t, TspTokenState::Deleted).unwrap());
        for to in [TspTokenState::Active, TspTokenState::Suspended] {
            assert_eq!(code(apply_state(&mut t, to)), 432);
        }
        assert_eq!(t.state, TspTokenState::Deleted);
    }

    #[test]
    fn an_atc_reset_happens_once_per_call() {
        let mut t = token();
        t.last_atc = Some(7);
        assert!(reset_atc(&mut t, "corr-1"));
        assert_eq!(t.last_atc, None);
        t.last_atc = Some(2);
        assert!(!reset_atc(&mut t, "corr-1"), "the hub's retry");
        assert_eq!(t.last_atc, Some(2));
        assert!(reset_atc(&mut t, "corr-2"), "a later re-personalization");
        assert_eq!(t.last_atc, None);
    }
}
