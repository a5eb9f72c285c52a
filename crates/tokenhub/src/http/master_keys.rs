//! Admin API: the master key's versions (`/admin/v1/master-keys`), for the key custodian (and
//! admin): the versions and their states, a running rotation's progress (never key material),
//! and a rotation begun (`POST /admin/v1/master-keys/rotate`, audited).

use super::admin::{AdminContext, Audited};
use super::api_error::ApiErrorBody;
use super::{ApiError, AppState};
use crate::flows::rotation::{self, Status};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/master-keys", get(get_status))
        .route("/master-keys/rotate", post(rotate))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MasterKeyVersionView {
    pub version: i64,
    /// `ACTIVE` (new wraps use the newest), `RETIRING` (its wraps are being re-wrapped) or
    /// `RETIRED` (destroyed where the hub could).
    pub state: String,
    pub created_ms: i64,
    pub retired_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationProgressView {
    /// The version everything is being re-wrapped under.
    pub target: i64,
    /// Data keys, requestor credentials and shared keys still under an older version.
    pub remaining: i64,
    pub rewrapped: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MasterKeysView {
    pub versions: Vec<MasterKeyVersionView>,
    /// The version new wraps are made under.
    pub current: Option<i64>,
    /// The running rotation, if any.
    pub rotation: Option<RotationProgressView>,
}

fn view(status: Status) -> MasterKeysView {
    MasterKeysView {
        versions: status
            .versions
            .into_iter()
            .map(|v| MasterKeyVersionView {
                version: v.version,
                state: v.state,
                created_ms: v.created_ms,
                retired_ms: v.retired_ms,
            })
            .collect(),
        current: status.current,
        rotation: status.rotation.map(|r| RotationProgressView {
            target: r.target,
            remaining: r.progress.remaining,
            rewrapped: r.progress.rewrapped,
        }),
    }
}

/// The master key's versions and a running rotation's progress.
#[utoipa::path(get, path = "/admin/v1/master-keys", tag = "admin keys",
    responses((status = 200, body = MasterKeysView), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_status(State(hub): State<AppState>) -> Result<Json<MasterKeysView>, ApiError> {
    Ok(Json(view(rotation::status(&hub.store).await?)))
}

/// Begin a master-key rotation: a new version is made (in the HSM's token, or the key file
/// beside an SQLite store; with `TOKENHUB_MASTER_KEY` it must be added there on every node
/// first), new wraps use it, and a background job re-wraps every data key, requestor credential
/// and shared key under it, then retires and destroys the older versions. `409` while another
/// rotation runs. Audited.
#[utoipa::path(post, path = "/admin/v1/master-keys/rotate", tag = "admin keys",
    responses((status = 202, body = MasterKeysView), (status = 409, body = ApiErrorBody), (status = 403, body = ApiErrorBody), (status = 422, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn rotate(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
) -> Result<(StatusCode, Extension<Audited>, Json<MasterKeysView>), ApiError> {
    let made = rotation::rotate(&hub.store, &hub.keys, ctx.caller.actor(), hub.now_ms()).await;
    let next = match made {
        Err(crate::error::Error::Keys(e)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "NO_NEW_VERSION",
                format!("no new master-key version: {e}"),
            ))
        }
        other => other?,
    };
    tracing::info!(
        by = ctx.caller.actor(),
        version = next.version,
        "master-key rotation begun"
    );
    let status = rotation::status(&hub.store).await?;
    Ok((StatusCode::ACCEPTED, Extension(Audited), Json(view(status))))
}
