//! `GET /metrics` on the admin listener: the hub's metrics in Prometheus's text format, for a
//! scraper holding an admin key whose role reads everything (`admin` or `read-only`), behind the
//! same [`super::admin`] authorization as the admin API. The store-backed gauges are read first.

use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Prometheus's text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/metrics", get(scrape))
        .layer(axum::middleware::from_fn_with_state(
            state,
            super::admin::authorize,
        ))
}

async fn scrape(State(hub): State<AppState>) -> Response {
    crate::telemetry::metrics::install();
    if let Err(e) = crate::flows::gauges::refresh(&hub).await {
        // The counters are still worth a scrape; the gauges keep their last values.
        tracing::warn!(cause = %e.chain(), "metrics: the store's gauges could not be read");
    }
    match crate::telemetry::metrics::render() {
        Some(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        None => ApiError::internal(&"metrics").into_response(),
    }
}
