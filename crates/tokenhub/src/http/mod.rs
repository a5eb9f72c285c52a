//! The HTTP edge: one module per API (`tsp` for the TSP incoming API v2, `admin`, `wallet`), the
//! OpenAPI document, `/metrics`, and [`router`], which puts them together.

mod admin;
mod admin_keys;
mod admin_scope;
mod api_error;
mod audit;
mod campaigns;
mod cards;
mod console;
mod edge;
mod health;
mod issuers;
mod master_keys;
mod metrics;
mod nodes;
mod notifications;
pub mod openapi;
mod overview;
mod profiles;
mod request_log;
mod requestor_api;
mod requestors;
mod shared_keys;
mod tokens;
mod tsp;
mod tsps;
mod wallet;
mod wallet_auth;
mod wallet_providers;

use crate::hub::Hub;
use axum::Router;
use std::sync::Arc;

pub use api_error::ApiError;
pub use edge::TspCaller;
pub use wallet_auth::PeerCertificate;

/// Largest request body any API accepts; larger ones get `413` (with `112` on the TSP API). Sized
/// for the largest valid `/data` or `/newData` body: The contract
/// bounds the content, not the bytes: 200 elements whose values are at most 100,000 characters
/// together. Written by a JSON encoder that escapes every non-ASCII character, a character outside
/// the BMP takes 12 bytes (`\ud83d\ude00`), so a valid body can reach 1,200,000 bytes of values
/// plus about 90,000 of names, key indexes and syntax; 1.5 MiB holds it with room for whitespace.
pub const MAX_BODY_BYTES: usize = 1536 * 1024;

pub type AppState = Arc<Hub>;

/// The APIs a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apis {
    /// `/trapi/v2.0`.
    Tsp,
    /// `/wallet/v1`, `/requestor/v1`.
    Wallet,
    /// `/admin/v1`, `/openapi.json`, `/metrics`, `/console`.
    Admin,
    /// Every API on one port (development only).
    All,
}

/// Every route of the hub.
pub fn router(state: AppState) -> Router {
    router_for(state, Apis::All)
}

/// The routes of `apis`; a TSP API request must carry a [`TspCaller`] extension.
pub fn router_for(state: AppState, apis: Apis) -> Router {
    let mut r = Router::new();
    if matches!(apis, Apis::Tsp | Apis::All) {
        r = r.nest(
            "/trapi/v2.0",
            tsp::router().layer(axum::middleware::from_fn(edge::require_tsp)),
        );
    }
    if matches!(apis, Apis::Admin | Apis::All) {
        r = r
            .nest("/admin/v1", admin::router(state.clone()))
            .merge(metrics::router(state.clone()))
            .merge(openapi::router())
            .merge(console::router());
    }
    if matches!(apis, Apis::Wallet | Apis::All) {
        r = r
            .nest("/wallet/v1", wallet::router(state.clone()))
            .nest("/requestor/v1", requestor_api::router(state.clone()));
    }
    r.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(request_log::log_request))
        .with_state(state)
}

/// A listener's routes behind its request cap and timeout.
pub fn bounded(router: Router, max_requests: usize, timeout: std::time::Duration) -> Router {
    edge::bounded(router, max_requests, timeout)
}
