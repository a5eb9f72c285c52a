//! `repersoToken` (outgoing API): `POST /tsp/trapi/v2.0/tokens/{tokenId}/reperso`
//! `{"issuerId", "reason"?: "PROFILE_UPDATE"}` with `x-correlation-id: C` → `204` at once; then
//! the token's EXISTING data (never new data) goes to the hub with
//! `PUT {hub}/trapi/v2.0/tokens/{tokenId}/newData`, `x-correlation-id: C`, body `{"issuerId",
//! "tokenPersoInfo"}`: the same elements, with the same wire values, as the token's `/data`
//! (encryption is deterministic), spread over `partial_calls` calls like `/data`, every part and
//! every retry carrying C. Each call is retried on connection errors, 5xx and 921, up to the
//! retry policy; anything else (431 the hub refuses the data, 432 too late or the state refuses, 321, 119, …) is
//! final and ends the recovery.
//!
//! Refusals: 111/112 (`x-correlation-id` 1..64, `issuerId` 10 characters, `reason` if present
//! `PROFILE_UPDATE`, `tokenId` 1..48), 119 unknown token, 113 issuer not this TSP's or not the
//! token's, 432 when the token is `DELETED`. Any other state (INACTIVE, ACTIVE, SUSPENDED) can
//! be recovered; which tokens to re-personalize is the hub's decision.
//!
//! A repeated `repersoToken` with the same C while its recovery is in flight, done or dropped is
//! answered 204 and starts nothing; after a recovery that failed (refused for good, out of
//! retries, simulator stopped), the same C starts it over.
//!
//! `submitNewTokenDataStatus` SUCCESS, afterwards, resets the token's ATC (`lifecycle`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::Value;
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::api::{echo, optional_text, required_text, ApiError, X_CORRELATION_ID};
use super::delivery::{self, CallKind, Message};
use super::elements::{ClearElements, PersoElement};
use super::lifecycle::checked;
use super::status::InFlight;
use super::vault::{RecoveryStart, RecoveryState, TspTokenState};
use super::SimState;

/// repersoTokenReq, validated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RepersoReq {
    pub(crate) issuer_id: String,
}

pub(crate) fn parse_reperso(body: &[u8]) -> Result<RepersoReq, ApiError> {
    let obj = match serde_json::from_slice(body) {
        Ok(Value::Object(obj)) => obj,
        _ => return Err(ApiError::format("the body")),
    };
    let issuer_id = required_text(&obj, "issuerId", 10, 10)?.to_string();
    if let Some(reason) = optional_text(&obj, "reason", 1, 32)? {
        if reason != "PROFILE_UPDATE" {
            return Err(ApiError::format("reason"));
        }
    }
    Ok(RepersoReq { issuer_id })
}

/// One recovery, ready to send.
struct RecoveryJob {
    token_id: String,
    issuer_id: String,
    correlation_id: String,
    elements: Vec<PersoElement>,
}

pub(crate) async fn reperso_token(
    State(state): State<Arc<SimState>>,
    Path(token_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let echoed = headers.get(&X_CORRELATION_ID).cloned();
    let response = match start(&state, &token_id, &headers, body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::info!(%token_id, code = e.code, reason = %e.message, "repersoToken refused");
            e.into_response()
        }
    };
    echo(response, X_CORRELATION_ID, echoed)
}

fn start(
    state: &Arc<SimState>,
    token_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), ApiError> {
    let (correlation_id, req) = checked(state, headers, token_id, body, parse_reperso, |r| {
        &r.issuer_id
    })?;
    let misbehaviour = state.switches.get();
    let decided = state
        .vault
        .with_token(token_id, |t| {
            if t.state == TspTokenState::Deleted {
                return Err(ApiError::state_forbids("the token is DELETED"));
            }
            Ok(t.begin_recovery(&correlation_id, misbehaviour.drop_reperso))
        })
        .ok_or_else(ApiError::unknown_token)??;
    state.counters.reperso_call();
    let clear = match decided {
        RecoveryStart::Repeat(was) => {
            tracing::info!(%token_id, %correlation_id, state = ?was, "repersoToken repeated: nothing to do");
            return Ok(());
        }
        RecoveryStart::Start(clear) => clear,
    };
    state.counters.recovery_started();
    if misbehaviour.drop_reperso {
        tracing::warn!(%token_id, %correlation_id, "misbehaving: repersoToken dropped, no newData will be sent");
        return Ok(());
    }
    let elements = recovered_wire(state, &clear, misbehaviour.new_data_on_recovery)?;
    let job = RecoveryJob {
        token_id: token_id.to_string(),
        issuer_id: req.issuer_id,
        correlation_id,
        elements,
    };
    tracing::info!(%token_id, correlation_id = %job.correlation_id, new_data = misbehaviour.new_data_on_recovery, "repersoToken: recovery started");
    // Counted in flight before the answer leaves, like createToken's delivery.
    let in_flight = state.counters.delivery_started();
    let shutdown = state.shutdown.clone();
    tokio::spawn(recover(state.clone(), job, in_flight, shutdown));
    Ok(())
}

/// The wire form of the token's data: exactly the original one, or, misbehaving, with a fresh
/// random `cmk_ac` in place of the existing one (the vault keeps the existing one).
fn recovered_wire(
    state: &SimState,
    clear: &ClearElements,
    new_cmk_ac: bool,
) -> Result<Vec<PersoElement>, ApiError> {
    let wire = if new_cmk_ac {
        let mut fresh = clear.clone();
        let mut key = Zeroizing::new([0u8; 16]);
        loop {
            rand::thread_rng().fill(&mut key[..]);
            if key[..] != clear.cmk_ac[..] {
                break;
            }
        }
        fresh.cmk_ac = key;
        fresh.to_wire(&state.keys)
    } else {
        clear.to_wire(&state.keys)
    };
    wire.map_err(|e| {
        // Keys were checked at start-up, so this is a bug, not bad input.
        tracing::error!(error = %e, "encrypting the recovered data failed");
        ApiError {
            code: 921,
            message: "unexpected server error".to_string(),
        }
    })
}

async fn recover(
    state: Arc<SimState>,
    job: RecoveryJob,
    in_flight: InFlight,
    mut shutdown: watch::Receiver<bool>,
) {
    let ended = tokio::select! {
        delivered = send_all(&state, &job) => if delivered { RecoveryState::Delivered } else { RecoveryState::Failed },
        _ = shutdown.wait_for(|stop| *stop) => RecoveryState::Failed,
    };
    state.vault.with_token(&job.token_id, |t| {
        t.end_recovery(&job.correlation_id, ended)
    });
    if ended == RecoveryState::Delivered {
        if let Some(recovered) = &state.config.recovered {
            // The receiver may be gone (the benchmark stopped): nobody to tell.
            let _ = recovered.send(job.token_id.clone());
        }
    }
    tracing::info!(token_id = %job.token_id, correlation_id = %job.correlation_id, outcome = ?ended, "recovery ended");
    drop(in_flight);
}

async fn send_all(state: &SimState, job: &RecoveryJob) -> bool {
    tokio::time::sleep(state.config.data_delay).await;
    let parts = delivery::split(job.elements.clone(), state.config.partial_calls);
    let count = parts.len();
    let message = Message {
        kind: CallKind::NewData,
        token_id: &job.token_id,
        issuer_id: &job.issuer_id,
        correlation_id: &job.correlation_id,
        // The hub has known the token since its creation: 119 is final.
        grace_until: None,
    };
    for (i, part) in parts.into_iter().enumerate() {
        if !delivery::send_part(state, &message, part, i + 1, count).await {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reperso_requests_need_an_issuer_and_at_most_the_one_reason() {
        let ok = |s: &str| parse_reperso(s.as_bytes()).unwrap().issuer_id;
        assert_eq!(ok(r#"{"issuerId":"ISSUER0001"}"#), "ISSUER0001");
        assert_eq!(
            ok(r#"{"issuerId":"ISSUER0001","reason":"PROFILE_UPDATE"}"#),
            "ISSUER0001"
        );
        assert_eq!(
            ok(r#"{"issuerId":"ISSUER0001","reason":null}"#),
            "ISSUER0001"
        );
        let c = |s: &str| parse_reperso(s.as_bytes()).unwrap_err().code;
        assert_eq!(c(r#"{}"#), 111);
        assert_eq!(c(r#"{"reason":"PROFILE_UPDATE"}"#), 111);
        assert_eq!(c(r#"{"issuerId":"ISSUER001"}"#), 112);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001","reason":"OTHER"}"#), 112);
        assert_eq!(c(r#"{"issuerId":"ISSUER0001","reason":7}"#), 112);
        assert_eq!(c("[]"), 112);
        assert_eq!(c(""), 112);
    }
}
