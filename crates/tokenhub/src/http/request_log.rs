//! One span per request and one `info` line when it is answered (`request`, with its status and
//! duration). The span carries the ids an on-call engineer queries by: the caller's correlation id
//! (`x-correlation-id`, else `x-request-id`), the TSP that called, and the ids the matched route
//! names (`token_id`, `issuer_id`, `campaign_id`, `requestor_id`, `tsp_id`); handlers and flows
//! fill in what they learn later (the token's issuer, the TSP operation, what came of a TSP call:
//! `outcome`, `token_state`, `elements_held`) with `Span::current().record`. Ids only, never a value: a header or path segment that is not a
//! short run of visible ASCII is left out rather than logged.

use axum::extract::{MatchedPath, RawPathParams, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::RequestPartsExt;
use tracing::field::Empty;
use tracing::Instrument;

use super::edge::TspCaller;

/// Longest id copied into a span; the contract's ids are all shorter.
const MAX_ID_LEN: usize = 64;

/// The route parameters that are ids worth a field, by the span field they fill.
const ID_PARAMS: [(&str, &str); 5] = [
    ("token_id", "token_id"),
    ("issuer_id", "issuer_id"),
    ("campaign_id", "campaign_id"),
    ("requestor_id", "requestor_id"),
    ("tsp_id", "tsp_id"),
];

/// Wraps the request in its span and logs its answer; costs next to nothing when `info` is off
/// for this module.
pub async fn log_request(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = Empty,
        correlation_id = Empty,
        operation = Empty,
        tsp_id = Empty,
        issuer_id = Empty,
        token_id = Empty,
        campaign_id = Empty,
        requestor_id = Empty,
        outcome = Empty,
        token_state = Empty,
        elements_held = Empty,
    );
    if span.is_disabled() {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    if let Some(route) = parts.extensions.get::<MatchedPath>() {
        span.record("route", route.as_str());
    }
    let correlation = parts
        .headers
        .get("x-correlation-id")
        .or_else(|| parts.headers.get("x-request-id"))
        .and_then(|v| loggable(v.as_bytes()));
    if let Some(id) = correlation {
        span.record("correlation_id", id);
    }
    if let Some(TspCaller::Tsp(id)) = parts.extensions.get::<TspCaller>() {
        span.record("tsp_id", id.as_str());
    }
    if let Ok(params) = parts.extract::<RawPathParams>().await {
        for (name, value) in &params {
            let field = ID_PARAMS.iter().find(|(p, _)| *p == name).map(|(_, f)| *f);
            if let (Some(field), Some(value)) = (field, loggable(value.as_bytes())) {
                span.record(field, value);
            }
        }
    }
    let started = std::time::Instant::now();
    let response = next
        .run(Request::from_parts(parts, body))
        .instrument(span.clone())
        .await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        )
    });
    response
}

/// `bytes` as a string fit for a log field: short, visible ASCII only.
fn loggable(bytes: &[u8]) -> Option<&str> {
    (!bytes.is_empty() && bytes.len() <= MAX_ID_LEN && bytes.iter().all(|b| b.is_ascii_graphic()))
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn only_short_visible_ascii_is_loggable() {
        assert_eq!(loggable(b"abc-123_X"), Some("abc-123_X"));
        assert_eq!(loggable(b""), None);
        assert_eq!(loggable(b"has space"), None);
        assert_eq!(loggable(b"line\nbreak"), None);
        assert_eq!(loggable("caf\u{e9}".as_bytes()), None);
        assert_eq!(loggable(&[b'a'; 65]), None);
        assert!(loggable(&[b'a'; 64]).is_some());
    }
}
