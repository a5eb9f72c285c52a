//! Admin API: issuers (`/admin/v1/issuers`).

use super::admin::AdminContext;
use super::admin_scope;
use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::domain::catalog::Issuer;
use crate::domain::IssuerId;
use crate::flows::admin_keys::Caller;
use crate::flows::catalog;
use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/issuers/{issuer_id}", put(put_issuer))
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
    Ok(Json(IssuerView {
        issuer_id: issuer.issuer_id,
        name: issuer.name,
        tsp_id: issuer.tsp_id,
    }))
}
