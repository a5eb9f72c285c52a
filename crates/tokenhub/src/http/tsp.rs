//! The TSP incoming API v2 (`crates/tokenhub/spec/tsp-incoming-api-v2.json`), mounted at `/trapi/v2.0`.
//!
//! Every answer echoes `x-correlation-id` (`x-request-id` on the health check). Success is `204`;
//! a refusal is `400 {"responseCode", "errorMessage"}` with the code `docs/tsp-api.md` gives; an
//! unexpected fault is logged with its cause and answered `921` (retryable), revealing nothing.
//! Bodies are read as bytes and parsed by the domain, so that a body that does not parse is our
//! `112`, never the framework's text.

use super::request_log::Answered;
use super::{AppState, TspCaller, MAX_BODY_BYTES};
use crate::domain::perso::Operation;
use crate::domain::{Code, CorrelationId, Rejection, TokenId};
use crate::error::Error;
use crate::flows::lifecycle::{self, TspUpdateOutcome};
use crate::flows::perso::{self, Applied};
use crate::telemetry::metrics;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Serialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens/{token_id}/data", put(submit_token_data))
        .route("/tokens/{token_id}/newData", put(submit_new_token_data))
        .route("/tokens/{token_id}/updates", post(submit_token_update))
        .route("/healthCheck", get(health_check))
}

const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `errorRes`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRes {
    pub response_code: u16,
    pub error_message: String,
}

/// An answer of this API: `204`, or `400` with `errorRes`, with the id header echoed; what came
/// of it, refusal included, goes to the request's one log line.
struct Reply {
    echo: Option<(HeaderName, HeaderValue)>,
    outcome: Result<(), Rejection>,
    answered: Answered,
    status_on_error: StatusCode,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut answered = self.answered;
        let mut response = match self.outcome {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(r) => {
                answered.response_code = Some(r.code.number());
                answered.reason = Some(r.message.clone());
                let body = ErrorRes {
                    response_code: r.code.number(),
                    error_message: r.message,
                };
                (self.status_on_error, Json(body)).into_response()
            }
        };
        if let Some((name, value)) = self.echo {
            response.headers_mut().insert(name, value);
        }
        response.extensions_mut().insert(answered);
        if self.status_on_error == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read, so the server closes the connection after this
            // answer; saying so keeps the client from sending its next call on a dead connection.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

async fn submit_token_data(
    State(hub): State<AppState>,
    Extension(caller): Extension<TspCaller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    submit(
        hub,
        caller,
        path,
        headers,
        body,
        Call::Perso(Operation::Data),
    )
    .await
}

async fn submit_new_token_data(
    State(hub): State<AppState>,
    Extension(caller): Extension<TspCaller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    submit(
        hub,
        caller,
        path,
        headers,
        body,
        Call::Perso(Operation::NewData),
    )
    .await
}

/// `POST /tokens/{tokenId}/updates`: a token update from the TSP (`docs/tsp-api.md`).
async fn submit_token_update(
    State(hub): State<AppState>,
    Extension(caller): Extension<TspCaller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    submit(hub, caller, path, headers, body, Call::Update).await
}

/// The calls of this API that carry a body.
#[derive(Debug, Clone, Copy)]
enum Call {
    Perso(Operation),
    Update,
}

/// One call with a body: read and check the request, hand it to its flow, log the outcome and
/// answer it as the contract says.
async fn submit(
    hub: AppState,
    caller: TspCaller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    call: Call,
) -> Response {
    let echo = headers
        .get(&X_CORRELATION_ID)
        .map(|v| (X_CORRELATION_ID, v.clone()));
    // The request's span (`request_log`) already carries the correlation and token ids.
    let started = std::time::Instant::now();
    let mut status_on_error = StatusCode::BAD_REQUEST;
    let outcome = async {
        let (correlation_id, token_id, body) =
            read_request(path, &headers, body, &mut status_on_error)?;
        match call {
            Call::Perso(op) => {
                apply_perso(&hub, caller.scope(), &token_id, &correlation_id, &body, op).await
            }
            Call::Update => {
                apply_update(&hub, caller.scope(), &token_id, &correlation_id, &body).await
            }
        }
    }
    .await;
    let code = outcome.as_ref().err().map(|r| r.code.number());
    metrics::tsp_api_request(
        caller.scope(),
        operation_name(call),
        code,
        started.elapsed(),
    );
    let (outcome, answered) = match outcome {
        Ok(done) => (Ok(()), done),
        Err(r) => (Err(r), Answered::default()),
    };
    Reply {
        echo,
        outcome,
        answered: Answered {
            operation: Some(operation_name(call)),
            ..answered
        },
        status_on_error,
    }
    .into_response()
}

/// The contract's name of the call, for the logs.
fn operation_name(call: Call) -> &'static str {
    match call {
        Call::Perso(Operation::Data) => "submitTokenData",
        Call::Perso(Operation::NewData) => "submitNewTokenData",
        Call::Update => "submitTokenUpdate",
    }
}

/// The request's correlation id, token id and body, checked in the contract's order; a body too
/// large to read turns the answer's status into `413`.
fn read_request(
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    status_on_error: &mut StatusCode,
) -> Result<(CorrelationId, TokenId, Bytes), Rejection> {
    let correlation_id = CorrelationId::parse(
        "x-correlation-id",
        headers.get(&X_CORRELATION_ID).map(|v| v.as_bytes()),
    )?;
    let Path(raw) = path.map_err(|_| Rejection::format("tokenId is not a valid path segment"))?;
    let token_id = TokenId::parse(&raw)?;
    check_content_type(headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            *status_on_error = StatusCode::PAYLOAD_TOO_LARGE;
            Rejection::format(format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        } else {
            Rejection::format("the body could not be read")
        }
    })?;
    Ok((correlation_id, token_id, body))
}

/// A token update from the TSP through its flow; one not newer than the one held is
/// acknowledged all the same.
async fn apply_update(
    hub: &AppState,
    caller_tsp: Option<&str>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    body: &Bytes,
) -> Result<Answered, Rejection> {
    let outcome = match lifecycle::tsp_update(hub, caller_tsp, token_id, correlation_id, body).await
    {
        Ok(TspUpdateOutcome::Applied) => "applied",
        Ok(TspUpdateOutcome::Ignored) => "not newer: acknowledged, not applied",
        Err(e) => return Err(refusal(e)),
    };
    Ok(Answered {
        outcome: Some(outcome),
        ..Answered::default()
    })
}

/// Personalization data through its flow; a repeat of a call already applied is acknowledged
/// again.
async fn apply_perso(
    hub: &AppState,
    caller_tsp: Option<&str>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    body: &Bytes,
    op: Operation,
) -> Result<Answered, Rejection> {
    match perso::submit(hub, caller_tsp, token_id, correlation_id, body, op).await {
        Ok(Applied::Stored { state, held, .. }) => Ok(Answered {
            outcome: Some("accepted"),
            token_state: Some(state.as_str()),
            elements_held: Some(held),
            ..Answered::default()
        }),
        Ok(Applied::Repeat) => Ok(Answered {
            outcome: Some("repeat: acknowledged again"),
            ..Answered::default()
        }),
        Ok(Applied::Refused(r)) => Err(r),
        Err(e) => Err(refusal(e)),
    }
}

/// A flow's error as the contract's refusal: its own code, or 921 (retryable) for an
/// unexpected fault, which is logged with its cause and revealed to nobody.
fn refusal(e: Error) -> Rejection {
    match e {
        Error::Rejected(r) => r,
        e => {
            tracing::error!(cause = %e.chain(), "unexpected error");
            Rejection::new(Code::Unexpected, "unexpected server error; retry later")
        }
    }
}

/// A body sent with a content type must say JSON; a missing content type is read as JSON.
fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(Rejection::format("content-type must be application/json"))
    }
}

async fn health_check(
    State(hub): State<AppState>,
    Extension(caller): Extension<TspCaller>,
    headers: HeaderMap,
) -> Response {
    let started = std::time::Instant::now();
    // The TSP checked the hub, whatever the answer (the admin API shows when it last did).
    if let TspCaller::Tsp(tsp_id) = &caller {
        crate::flows::tsp_health::hub_checked(&hub, tsp_id);
    }
    let echo = headers
        .get(&X_REQUEST_ID)
        .map(|v| (X_REQUEST_ID, v.clone()));
    let mut status_on_error = StatusCode::BAD_REQUEST;
    let outcome = match CorrelationId::parse(
        "x-request-id",
        headers.get(&X_REQUEST_ID).map(|v| v.as_bytes()),
    ) {
        Err(r) => Err(r),
        Ok(_) => match crate::flows::tokens::store_answers(&hub).await {
            Ok(()) => {
                let down = crate::flows::tokens::down(&hub);
                if down.is_empty() {
                    Ok(())
                } else {
                    // Which part is down is the operator's to know (the admin API's health).
                    tracing::error!(workers = ?down.workers, sqlite_writer_down = down.sqlite_writer, "health check: part of the hub is down");
                    status_on_error = StatusCode::SERVICE_UNAVAILABLE;
                    Err(Rejection::new(
                        Code::Unexpected,
                        "the hub is not fully available",
                    ))
                }
            }
            Err(e) => {
                tracing::error!(cause = %e, "health check: the store does not answer");
                status_on_error = StatusCode::SERVICE_UNAVAILABLE;
                Err(Rejection::new(
                    Code::Unexpected,
                    "the hub's store is not available",
                ))
            }
        },
    };
    let code = outcome.as_ref().err().map(|r| r.code.number());
    metrics::tsp_api_request(caller.scope(), "healthCheck", code, started.elapsed());
    Reply {
        echo,
        outcome,
        answered: Answered {
            operation: Some("healthCheck"),
            ..Answered::default()
        },
        status_on_error,
    }
    .into_response()
}
