//! Sending a token's data preparation to the hub (`PUT {hub}/trapi/v2.0/tokens/{tokenId}/data`),
//! split over the configured number of partial calls, with retries where the contract allows them.
//! [`send_part`] also sends the recovered data of a re-personalization (`…/newData`, see
//! `reperso`), with the same retry rules.
//!
//! The parts go one after the other: the hub merges them, and a part racing the previous one would
//! only earn a 321 ("operation on token already on-going"). A part the hub refuses for good ends
//! the delivery: the remaining parts could not make the token whole anyway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::watch;

use super::elements::PersoElement;
use super::status::InFlight;
use super::vault::PersonalizationState;
use super::SimState;

/// How the simulator retries a data call, like a TSP's outbound client would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry; it doubles each time.
    pub initial_backoff: Duration,
    /// Upper bound of the doubling.
    pub max_backoff: Duration,
    /// Attempts per data call, the first included.
    pub max_attempts: u32,
    /// How long after createToken's answer a 119 ("no such token") is retried rather than taken
    /// as final: the hub records a token only once it has read createToken's answer, so a fast
    /// first `/data` can reach it before that.
    pub unknown_token_grace: Duration,
    /// Time allowed for one attempt (connect, send, answer).
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
            unknown_token_grace: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// One token's data preparation, ready to send.
pub(crate) struct DataJob {
    pub(crate) token_id: String,
    pub(crate) issuer_id: String,
    pub(crate) elements: Vec<PersoElement>,
    pub(crate) answered_at: Instant,
}

/// What one answer from the hub means for the call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    /// Try again; the reason is what gets counted if the attempts run out.
    Retry(String),
    Rejected(String),
}

/// How a delivery ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Delivered,
    Rejected,
    ShutDown,
}

/// Splits `elements` into `parts` non-empty runs of as equal sizes as possible, keeping the order.
/// `parts` is clamped to 1..=len so that no call is ever empty.
pub(crate) fn split(elements: Vec<PersoElement>, parts: usize) -> Vec<Vec<PersoElement>> {
    let len = elements.len();
    let parts = parts.clamp(1, len.max(1));
    let (base, extra) = (len / parts, len % parts);
    let mut rest = elements.into_iter();
    (0..parts)
        .map(|i| rest.by_ref().take(base + usize::from(i < extra)).collect())
        .collect()
}

/// Reads an answer to a data call.
///
/// 119 needs care: the hub records a token only once it has read createToken's answer, and this
/// simulator (like a fast real TSP) starts sending data as soon as it has answered, so the first
/// `/data` can reach the hub before the hub has stored the token. For `unknown_token_grace` after
/// the answer a 119 is therefore that race, retried; after it, the token really is unknown.
pub(crate) fn classify(status: StatusCode, body: &[u8], within_grace: bool) -> Verdict {
    if status.is_success() {
        return Verdict::Accepted;
    }
    let code = response_code(body);
    let reason = code
        .map(|c| c.to_string())
        .unwrap_or_else(|| format!("http-{}", status.as_u16()));
    if status.is_server_error() {
        // 500 and 503 mean "retry" in the contract, whatever the body says.
        return Verdict::Retry(reason);
    }
    match code {
        Some(921) => Verdict::Retry(reason),
        Some(119) if within_grace => Verdict::Retry(reason),
        _ => Verdict::Rejected(reason),
    }
}

/// The `responseCode` of an error body, if it has one (a JSON number, possibly written `119.0`).
fn response_code(body: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("responseCode")?;
    code.as_u64().or_else(|| {
        code.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 1e9)
            .map(|f| f as u64)
    })
}

/// Sends the job's data, waiting `data_delay` first. Stops early if the simulator shuts down.
/// `in_flight` is taken by the caller before it answers createToken, so that whoever reads the
/// answer and then waits for idleness cannot see "idle" before this delivery has even started.
pub(crate) async fn deliver(
    state: Arc<SimState>,
    job: DataJob,
    in_flight: InFlight,
    mut shutdown: watch::Receiver<bool>,
) {
    let ended = tokio::select! {
        ended = send_all(&state, &job) => ended,
        _ = shutdown.wait_for(|stop| *stop) => Ended::ShutDown,
    };
    let next = match ended {
        Ended::Delivered => PersonalizationState::Delivered,
        Ended::Rejected | Ended::ShutDown => PersonalizationState::Failed,
    };
    state.vault.set_delivery(&job.token_id, next);
    tracing::info!(token_id = %job.token_id, outcome = ?ended, "data preparation delivery ended");
    drop(in_flight);
}

async fn send_all(state: &SimState, job: &DataJob) -> Ended {
    tokio::time::sleep(state.config.data_delay).await;
    let parts = split(job.elements.clone(), state.config.partial_calls);
    let count = parts.len();
    let grace_until = job.answered_at + state.config.retry.unknown_token_grace;
    for (i, part) in parts.into_iter().enumerate() {
        // Retries of one message keep its x-correlation-id, so the hub can tell them apart from
        // new messages; each part is a message of its own.
        let message = Message {
            kind: CallKind::Data,
            token_id: &job.token_id,
            issuer_id: &job.issuer_id,
            correlation_id: &uuid::Uuid::new_v4().to_string(),
            grace_until: Some(grace_until),
        };
        if !send_part(state, &message, part, i + 1, count).await {
            return Ended::Rejected;
        }
    }
    Ended::Delivered
}

/// Which of the hub's two data operations a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// `PUT …/data` (submitTokenData): the data preparation after createToken.
    Data,
    /// `PUT …/newData` (submitNewTokenData): the recovered data of a repersoToken.
    NewData,
}

impl CallKind {
    fn operation(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::NewData => "newData",
        }
    }
}

/// What every part of one delivery shares.
pub(crate) struct Message<'a> {
    pub(crate) kind: CallKind,
    pub(crate) token_id: &'a str,
    pub(crate) issuer_id: &'a str,
    pub(crate) correlation_id: &'a str,
    /// Until when a 119 is the hub not knowing the token *yet* (retried); `None`: 119 is final.
    pub(crate) grace_until: Option<Instant>,
}

/// Sends one part until it is accepted, refused for good, or out of attempts. True if accepted.
/// Counts the call (sent, then accepted, retried or rejected) under its kind.
pub(crate) async fn send_part(
    state: &SimState,
    message: &Message<'_>,
    elements: Vec<PersoElement>,
    part: usize,
    parts: usize,
) -> bool {
    let policy = &state.config.retry;
    let kind = message.kind;
    let token_id = message.token_id;
    let correlation_id = message.correlation_id;
    let operation = kind.operation();
    state.counters.call_sent(kind);
    let url = format!("{}/tokens/{token_id}/{operation}", state.hub_api);
    let body = serde_json::json!({ "issuerId": message.issuer_id, "tokenPersoInfo": elements });
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        let sent = state
            .http
            .put(&url)
            .header("x-correlation-id", correlation_id)
            .json(&body)
            .send()
            .await;
        let within_grace = message
            .grace_until
            .is_some_and(|until| Instant::now() < until);
        let verdict = match sent {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(bytes) => classify(status, &bytes, within_grace),
                    Err(_) => Verdict::Retry("unreachable".to_string()),
                }
            }
            Err(_) => Verdict::Retry("unreachable".to_string()),
        };
        tracing::debug!(%token_id, %correlation_id, operation, part, parts, attempt, ?verdict, "data call answered");
        match verdict {
            Verdict::Accepted => {
                state.counters.call_accepted(kind);
                return true;
            }
            Verdict::Retry(reason) if attempt < policy.max_attempts => {
                state.counters.call_retried(kind);
                tracing::info!(%token_id, %correlation_id, operation, part, attempt, %reason, "retrying data call");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(policy.max_backoff);
                attempt += 1;
            }
            Verdict::Retry(reason) | Verdict::Rejected(reason) => {
                state.counters.call_rejected(kind, &reason);
                tracing::warn!(%token_id, %correlation_id, operation, part, parts, attempt, %reason, "data call refused");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(n: usize) -> Vec<PersoElement> {
        (0..n)
            .map(|i| PersoElement {
                name: format!("e{i}"),
                value: "00".into(),
                key_index: None,
            })
            .collect()
    }

    #[test]
    fn splitting_gives_non_empty_parts_in_order_covering_everything_once() {
        for len in 1..8 {
            for parts in 1..=len {
                let split = split(elements(len), parts);
                assert_eq!(split.len(), parts);
                assert!(split.iter().all(|p| !p.is_empty()));
                let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{sizes:?}");
                let flat: Vec<PersoElement> = split.into_iter().flatten().collect();
                assert_eq!(flat, elements(len));
            }
        }
    }

    #[test]
    fn more_parts_than_elements_never_makes_an_empty_call() {
        let split = split(elements(2), 5);
        assert_eq!(split.len(), 2);
        assert!(split.iter().all(|p| p.len() == 1));
        assert_eq!(super::split(elements(3), 0).len(), 1);
    }

    fn err(code: &str) -> Vec<u8> {
        format!(r#"{{"responseCode": {code}, "errorMessage": "x"}}"#).into_bytes()
    }

    #[test]
    fn answers_are_classified_as_the_contract_says() {
        let bad = StatusCode::BAD_REQUEST;
        assert_eq!(
            classify(StatusCode::NO_CONTENT, b"", false),
            Verdict::Accepted
        );
        assert_eq!(classify(StatusCode::OK, b"", false), Verdict::Accepted);
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b"", false),
            Verdict::Retry("http-503".into())
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &err("921"), false),
            Verdict::Retry("921".into())
        );
        assert_eq!(
            classify(bad, &err("921"), false),
            Verdict::Retry("921".into())
        );
        assert_eq!(
            classify(bad, &err("119"), true),
            Verdict::Retry("119".into())
        );
        assert_eq!(
            classify(bad, &err("119.0"), true),
            Verdict::Retry("119".into())
        );
        assert_eq!(
            classify(bad, &err("119"), false),
            Verdict::Rejected("119".into())
        );
        for code in ["111", "112", "113", "321", "322", "431", "432", "911"] {
            assert_eq!(
                classify(bad, &err(code), true),
                Verdict::Rejected(code.into())
            );
        }
        assert_eq!(
            classify(StatusCode::NOT_FOUND, b"not json", true),
            Verdict::Rejected("http-404".into())
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, b"", true),
            Verdict::Rejected("http-429".into())
        );
        assert_eq!(
            classify(StatusCode::PERMANENT_REDIRECT, b"", true),
            Verdict::Rejected("http-308".into())
        );
        assert_eq!(
            classify(bad, br#"{"responseCode": -1}"#, true),
            Verdict::Rejected("http-400".into())
        );
    }
}
