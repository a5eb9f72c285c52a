//! The admin API (`/admin/v1`): the resources operators manage, put together behind
//! [`authorize`]: every request names its caller (an admin key, or the bootstrap token), is
//! allowed by the caller's role ([`super::admin_scope`]), and every mutation is audited with its
//! outcome. Each resource is its own module with its routes and its DTOs.

use super::admin_scope::{self, Decision};
use super::{ApiError, AppState};
use crate::domain::admin::AuditRecord;
use crate::domain::admin::IssuerObject;
use crate::flows::admin_keys::{self, Caller};
use crate::flows::audit;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{RequestExt, Router};

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
        .merge(super::admin_keys::router())
        .merge(super::audit::router())
        .merge(super::shared_keys::router())
        .merge(super::master_keys::router())
        .merge(super::health::router())
        .merge(super::nodes::router())
        .merge(super::overview::router())
        .layer(axum::middleware::from_fn_with_state(state, authorize))
}

/// What a handler learns of an admin request: who calls, and the request's correlation id.
#[derive(Debug, Clone)]
pub struct AdminContext {
    pub caller: Caller,
    pub correlation_id: String,
}

/// On a response whose flow wrote its own audit entry (in its transaction): the edge adds none.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// The header a caller may name its request with (else the hub makes an id); echoed back.
const CORRELATION_HEADER: &str = "x-correlation-id";

/// Authenticates, applies the role's table, runs the route, and audits a mutation's outcome.
pub(super) async fn authorize(
    State(hub): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let given = super::api_error::bearer(req.headers()).unwrap_or("");
    let caller =
        match admin_keys::authenticate(&hub.store, hub.bootstrap_token(), given.trim()).await {
            Ok(Some(c)) => c,
            Ok(None) => return unauthorized(),
            Err(e) => return ApiError::from(e).into_response(),
        };
    let Some(route) = req.extensions().get::<MatchedPath>().cloned() else {
        return next.run(req).await;
    };
    let route = route.as_str().to_string();
    let params: Vec<(String, String)> = match req.extract_parts::<RawPathParams>().await {
        Ok(p) => p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let correlation_id = correlation_id(&req);
    let method = req.method().clone();
    let local = route.strip_prefix("/admin/v1").unwrap_or(&route);
    let mut response = match admin_scope::decide(&caller, &method, local, &params) {
        Decision::Allow => {
            req.extensions_mut().insert(AdminContext {
                caller: caller.clone(),
                correlation_id: correlation_id.clone(),
            });
            next.run(req).await
        }
        Decision::Forbidden => ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this admin key's role does not allow this",
        )
        .into_response(),
        Decision::Missing(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, v);
    }
    let audited = response.extensions().get::<Audited>().is_some();
    if method != Method::GET && method != Method::HEAD && !audited {
        let record = AuditRecord {
            at_ms: hub.now_ms(),
            actor: caller.actor().to_string(),
            action: format!("{method} {route}"),
            object_type: admin_scope::object_type(local).to_string(),
            object_id: object_id(&params),
            correlation_id,
            status: i64::from(response.status().as_u16()),
        };
        if let Err(e) = audit::record(&hub.store, record).await {
            tracing::error!(cause = %e.chain(), "an admin mutation could not be audited");
            return ApiError::internal(&"audit").into_response();
        }
    }
    response
}

fn unauthorized() -> Response {
    super::api_error::unauthorized("the admin API needs authorization: Bearer <admin key>")
}

/// The caller's id if it is short and plain, else a new one.
fn correlation_id(req: &Request) -> String {
    req.headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The object's path parameters, `/`-joined (ids only: no path parameter carries a secret).
fn object_id(params: &[(String, String)]) -> String {
    let joined = params
        .iter()
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join("/");
    joined.chars().take(256).collect()
}

/// Whether the caller may see the object: an issuer-admin only its issuers' objects (an object of
/// another issuer, or none, is `false`: the handler answers exactly as for a missing one).
/// Called by each handler where it looks the object up, so its refusals keep their order.
pub(super) async fn sees(
    hub: &AppState,
    ctx: &AdminContext,
    object: IssuerObject,
    id: &str,
) -> Result<bool, ApiError> {
    let Caller::Key(key) = &ctx.caller else {
        return Ok(false);
    };
    if !admin_scope::issuer_scoped(key.role) {
        return Ok(true);
    }
    let issuer = crate::flows::admin_keys::issuer_of(&hub.store, object, id).await?;
    Ok(issuer.is_some_and(|i| key.covers(&i)))
}
