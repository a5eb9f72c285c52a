//! The operator console at `/console` on the admin listener: one page, its script and its style,
//! embedded in the binary (no CDN: it works with no internet). The assets hold no data and need
//! no credential; the page asks the operator for an admin key and calls the admin API with it
//! (`authorization: Bearer`), so every action goes through the API's roles and audit, and the
//! console adds no way in of its own. Served under a strict Content-Security-Policy (scripts and
//! styles from these files only, no inline code, no framing).

use super::AppState;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// Everything the page loads comes from the hub itself; nothing inline, no plugin, no frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/assets/{name}", get(asset))
}

async fn index() -> Response {
    served(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => served(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT),
        "app.css" => served(StatusCode::OK, "text/css; charset=utf-8", STYLE),
        _ => served(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such asset\n",
        ),
    }
}

/// A console response with its security headers. `no-store`: a new binary's console is the one
/// loaded, and no copy of the page stays on a shared operator's machine.
fn served(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}
