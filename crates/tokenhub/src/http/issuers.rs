//! Admin API: issuers (`/admin/v1/issuers`): registered, read, listed a page at a time. An
//! issuer-admin's key reads and lists only the issuers it covers.

use super::admin::AdminContext;
use super::admin_scope;
use super::api_error::{ApiErrorBody, JsonBody};
use super::overview::{limit, PageQuery};
use super::{ApiError, AppState};
use crate::domain::catalog::Issuer;
use crate::domain::IssuerId;
use crate::flows::admin_keys::Caller;
use crate::flows::catalog;
use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/issuers", get(list_issuers))
        .route("/issuers/{issuer_id}", put(put_issuer).get(get_issuer))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerBody {
    pub name: String,
    /// The TSP connection this issuer's tokens are created with.
    pub tsp_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerView {
    pub issuer_id: String,
    pub name: String,
    pub tsp_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerPage {
    pub items: Vec<IssuerView>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

fn view(issuer: Issuer) -> IssuerView {
    IssuerView {
        issuer_id: issuer.issuer_id,
        name: issuer.name,
        tsp_id: issuer.tsp_id,
    }
}

/// Issuers by id, a page at a time; an issuer-admin's key lists only the issuers it covers.
#[utoipa::path(get, path = "/admin/v1/issuers", tag = "admin", params(PageQuery),
    responses((status = 200, body = IssuerPage), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_issuers(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Query(q): Query<PageQuery>,
) -> Result<Json<IssuerPage>, ApiError> {
    let only = match &ctx.caller {
        Caller::Key(key) if admin_scope::issuer_scoped(key.role) => Some(key.issuers.as_slice()),
        Caller::Key(_) => None,
        // The bootstrap token is refused every route but the admin keys' before it gets here.
        Caller::Bootstrap => Some(&[][..]),
    };
    let (page, next) = catalog::issuers(&hub, limit(&q), q.cursor.as_deref(), only).await?;
    Ok(Json(IssuerPage {
        items: page.into_iter().map(view).collect(),
        next,
    }))
}

/// Read an issuer (an issuer-admin's key: one it covers; another answers as an unknown one).
#[utoipa::path(get, path = "/admin/v1/issuers/{issuerId}", tag = "admin",
    params(("issuerId" = String, Path)),
    responses((status = 200, body = IssuerView), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_issuer(
    State(hub): State<AppState>,
    Path(issuer_id): Path<String>,
) -> Result<Json<IssuerView>, ApiError> {
    match catalog::issuer(&hub, &issuer_id).await? {
        Some(issuer) => Ok(Json(view(issuer))),
        None => Err(ApiError::not_found(format!(
            "issuer {issuer_id} is not registered"
        ))),
    }
}

/// Register or update an issuer.
#[utoipa::path(put, path = "/admin/v1/issuers/{issuerId}", tag = "admin",
    params(("issuerId" = String, Path, description = "exactly 10 characters")),
    request_body = IssuerBody,
    responses((status = 200, body = IssuerView), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody, description = "an issuer administrator changing the issuer's TSP"), (status = 404, body = ApiErrorBody, description = "unknown tspId")),
    security(("admin" = [])))]
async fn put_issuer(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(issuer_id): Path<String>,
    JsonBody(body): JsonBody<IssuerBody>,
) -> Result<Json<IssuerView>, ApiError> {
    let issuer_id = IssuerId::parse(&issuer_id)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::bad_request("name must be 1 to 128 characters"));
    }
    let issuer = Issuer {
        issuer_id: issuer_id.to_string(),
        name: name.to_string(),
        tsp_id: body.tsp_id,
    };
    let may_bind_tsp = match &ctx.caller {
        Caller::Key(key) => !admin_scope::issuer_scoped(key.role),
        Caller::Bootstrap => false,
    };
    catalog::put_issuer(&hub, issuer.clone(), may_bind_tsp).await?;
    Ok(Json(view(issuer)))
}
