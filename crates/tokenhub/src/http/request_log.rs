//! One span per request and one `info` line when it is answered (`request`, with its status and
//! duration). The span carries the ids an on-call engineer queries by: the caller's correlation id
//! (`x-correlation-id`, else `x-request-id`), the TSP that called, and the ids the matched route
//! names (`token_id`, `issuer_id`, `campaign_id`, `requestor_id`, `tsp_id`); a flow records the
//! one id it learns later (a `/data` call's issuer) with `Span::current().record`. What came of
//! the call (the TSP operation, `outcome`, `token_state`, `elements_held`) is the handler's
//! [`Answered`] on the response, written on the `request` line itself: each field recorded on a
//! span makes a JSON-logging subscriber serialize all of the span's fields again. Ids only, never
//! a value: a header or path segment that is not a short run of visible ASCII is left out rather
//! than logged.

use axum::extract::{MatchedPath, RawPathParams, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::RequestPartsExt;
use tracing::Instrument;

use super::edge::TspCaller;

/// Longest id copied into a span; the contract's ids are all shorter.
const MAX_ID_LEN: usize = 64;

/// What a handler says of its call on the `request` line, put in its response's extensions.
#[derive(Debug, Clone, Default)]
pub struct Answered {
    /// The contract's name of the call (`submitTokenData`, ...).
    pub operation: Option<&'static str>,
    /// What came of it when it was not refused (`accepted`, `applied`, ...).
    pub outcome: Option<&'static str>,
    /// The token's state after accepted data.
    pub token_state: Option<&'static str>,
    /// The data elements the token holds after accepted data.
    pub elements_held: Option<usize>,
    /// The contract's response code of a refusal.
    pub response_code: Option<u16>,
    /// The refusal's message, as the caller was told it.
    pub reason: Option<String>,
}

/// Wraps the request in its span and logs its answer; costs next to nothing when `info` is off
/// for this module. The ids the request names are the span's values from its start.
pub async fn log_request(req: Request, next: Next) -> Response {
    if !tracing::enabled!(tracing::Level::INFO) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let params = parts.extract::<RawPathParams>().await.ok();
    let param = |name: &str| {
        let (_, value) = params.as_ref()?.iter().find(|(n, _)| *n == name)?;
        loggable(value.as_bytes())
    };
    let correlation = (parts.headers.get("x-correlation-id"))
        .or_else(|| parts.headers.get("x-request-id"))
        .and_then(|v| loggable(v.as_bytes()));
    let caller = match parts.extensions.get::<TspCaller>() {
        Some(TspCaller::Tsp(id)) => Some(id.as_str()),
        _ => None,
    };
    let span = tracing::info_span!(
        "request",
        method = %parts.method,
        route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str),
        correlation_id = correlation,
        tsp_id = param("tsp_id").or(caller),
        issuer_id = param("issuer_id"),
        token_id = param("token_id"),
        campaign_id = param("campaign_id"),
        requestor_id = param("requestor_id"),
    );
    let started = std::time::Instant::now();
    let mut response = next
        .run(Request::from_parts(parts, body))
        .instrument(span.clone())
        .await;
    let answered = (response.extensions_mut().remove::<Answered>()).unwrap_or_default();
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            operation = answered.operation,
            outcome = answered.outcome,
            token_state = answered.token_state,
            elements_held = answered.elements_held,
            response_code = answered.response_code,
            reason = answered.reason.as_deref(),
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
