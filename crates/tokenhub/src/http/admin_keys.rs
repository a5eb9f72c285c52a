//! Admin API: admin keys (`/admin/v1/admin-keys`), for the admin role and the bootstrap token.
//! A key's secret is in the creation's answer only.

use super::admin::{AdminContext, Audited};
use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::admin::{AdminKey, Role};
use crate::flows::admin_keys::{self, NewKey};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin-keys", get(list_keys).post(create_key))
        .route("/admin-keys/{key_id}", delete(revoke_key))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminKeyBody {
    /// `read-only`, `issuer-admin`, `key-custodian` or `admin`.
    pub role: String,
    /// The issuers an `issuer-admin` acts for (registered ones); no other role takes any.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Whose key it is.
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminKeyView {
    pub key_id: String,
    pub role: String,
    pub issuers: Vec<String>,
    pub label: String,
    pub created_at: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: AdminKeyView,
    /// `thk_<keyId>_<secret>`: shown here once, stored only as a hash.
    pub api_key: String,
}

pub fn view(k: AdminKey) -> AdminKeyView {
    AdminKeyView {
        key_id: k.key_id,
        role: k.role.to_string(),
        issuers: k.issuers,
        label: k.label,
        created_at: iso8601(k.created_ms),
        created_by: k.created_by,
        revoked_at: k.revoked_ms.map(iso8601),
    }
}

/// Create an admin key; its secret is in this answer only.
#[utoipa::path(post, path = "/admin/v1/admin-keys", tag = "admin keys",
    request_body = AdminKeyBody,
    responses((status = 201, body = CreatedKeyView), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody, description = "an issuer is not registered")),
    security(("admin" = [])))]
async fn create_key(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    JsonBody(body): JsonBody<AdminKeyBody>,
) -> Result<(StatusCode, Extension<Audited>, Json<CreatedKeyView>), ApiError> {
    let Some(role) = Role::parse(&body.role) else {
        return Err(ApiError::bad_request(
            "role must be read-only, issuer-admin, key-custodian or admin",
        ));
    };
    let new = NewKey {
        role,
        issuers: body.issuers,
        label: body.label,
    };
    let created = admin_keys::create(
        &hub.store,
        new,
        ctx.caller.actor(),
        &ctx.correlation_id,
        hub.now_ms(),
    )
    .await?;
    tracing::info!(key_id = %created.key.key_id, role = %role, by = ctx.caller.actor(), "admin key created");
    Ok((
        StatusCode::CREATED,
        Extension(Audited),
        Json(CreatedKeyView {
            api_key: created.presented.expose_secret().to_string(),
            key: view(created.key),
        }),
    ))
}

/// Every admin key, revoked ones too (never a secret).
#[utoipa::path(get, path = "/admin/v1/admin-keys", tag = "admin keys",
    responses((status = 200, body = [AdminKeyView]), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_keys(State(hub): State<AppState>) -> Result<Json<Vec<AdminKeyView>>, ApiError> {
    let keys = admin_keys::list(&hub.store).await?;
    Ok(Json(keys.into_iter().map(view).collect()))
}

/// Revoke an admin key: refused from the next request on.
#[utoipa::path(delete, path = "/admin/v1/admin-keys/{keyId}", tag = "admin keys",
    params(("keyId" = String, Path)),
    responses((status = 204), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody, description = "no such key, or revoked already")),
    security(("admin" = [])))]
async fn revoke_key(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(key_id): Path<String>,
) -> Result<(Extension<Audited>, StatusCode), (Extension<Audited>, ApiError)> {
    let key_id: String = key_id.chars().take(64).collect();
    let revoked = admin_keys::revoke(
        &hub.store,
        &key_id,
        ctx.caller.actor(),
        &ctx.correlation_id,
        hub.now_ms(),
    )
    .await
    .map_err(|e| (Extension(Audited), ApiError::from(e)))?;
    if !revoked {
        let missing = ApiError::not_found(format!("no live admin key {key_id}"));
        return Err((Extension(Audited), missing));
    }
    tracing::info!(key_id, by = ctx.caller.actor(), "admin key revoked");
    Ok((Extension(Audited), StatusCode::NO_CONTENT))
}
