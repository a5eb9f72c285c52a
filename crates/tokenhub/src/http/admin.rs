//! The admin API (`/admin/v1`): the resources operators manage, put together behind the admin
//! bearer token. Each resource is its own module with its routes and its DTOs.

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(super::tsps::router())
        .merge(super::issuers::router())
        .merge(super::profiles::router())
        .merge(super::campaigns::router())
        .merge(super::tokens::router())
        .merge(super::cards::router())
        .merge(super::requestors::router())
        .merge(super::notifications::router())
        .merge(super::wallet_providers::router())
        .layer(axum::middleware::from_fn_with_state(state, require_admin))
}

/// Checks the bearer token in constant time.
async fn require_admin(State(hub): State<AppState>, req: Request, next: Next) -> Response {
    use subtle::ConstantTimeEq;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(hub.admin_token().as_bytes()).into();
    if !ok || given.is_empty() {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the admin API needs authorization: Bearer <admin token>",
        )
        .into_response();
    }
    next.run(req).await
}
