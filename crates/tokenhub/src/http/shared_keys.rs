//! Admin API: the keys shared with TSPs (`/admin/v1/shared-keys`), for the key custodian (and
//! admin): a key ceremony's keys imported for their owning TSP (each checked against its KCV,
//! wrapped under the master key, audited in the import's transaction), the keys listed (owner,
//! index, algorithm, purpose, state, KCV; never the key), and a key retired (audited in its
//! transaction). A rotation imports a new index and retires the old one.

use super::admin::{AdminContext, Audited};
use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::domain::catalog::PutImmutable;
use crate::flows::keys::{self, Retired};
use crate::hub::Signal;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/shared-keys", get(list_keys).post(import_keys))
        .route("/shared-keys/{tsp_id}/{key_index}/retire", post(retire_key))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedKeyView {
    /// The TSP that owns the key; empty for a key imported before keys had owners whose owner
    /// could not be told (it decrypts nothing).
    pub tsp_id: String,
    pub key_index: String,
    pub algorithm: String,
    /// `KEK` (encrypts keys) or `DEK` (encrypts data).
    pub purpose: String,
    /// `ACTIVE` or `RETIRED` (takes no new data).
    pub state: String,
    pub kcv: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportedKeyView {
    pub key_index: String,
    /// `IMPORTED`, `UNCHANGED` (the same key was imported before) or `REFUSED` (another key has
    /// that index at the TSP).
    pub outcome: String,
}

/// A key ceremony's keys for one TSP.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportBody {
    /// The TSP that owns the keys: only its elements decrypt under them.
    pub tsp_id: String,
    /// `{"keyIndex", "algorithm", "purpose" (kek|dek), "hex", "kcv"}` each.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<tokenhub_crypto::SharedKey>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredKeyView {
    pub tsp_id: String,
    pub key_index: String,
    pub state: String,
}

/// The keys shared with TSPs (never the key itself).
#[utoipa::path(get, path = "/admin/v1/shared-keys", tag = "admin keys",
    responses((status = 200, body = [SharedKeyView]), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_keys(State(hub): State<AppState>) -> Result<Json<Vec<SharedKeyView>>, ApiError> {
    let listed = keys::list(&hub.store).await?;
    Ok(Json(
        listed
            .into_iter()
            .map(|k| SharedKeyView {
                tsp_id: k.tsp_id,
                key_index: k.key_index,
                algorithm: k.algorithm.to_string(),
                purpose: k.purpose.to_string(),
                state: k.state.to_string(),
                kcv: k.kcv,
            })
            .collect(),
    ))
}

/// Import a TSP's keys (`{"tspId", "keys": [{"keyIndex", "algorithm", "purpose", "hex",
/// "kcv"}]}`; `tokenhub keys import --api` sends it once the ceremony made each key). Each key's
/// outcome is in the answer and the audit log.
#[utoipa::path(post, path = "/admin/v1/shared-keys", tag = "admin keys",
    request_body = ImportBody,
    responses((status = 200, body = [ImportedKeyView]), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody), (status = 422, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn import_keys(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    JsonBody(body): JsonBody<ImportBody>,
) -> Result<(Extension<Audited>, Json<Vec<ImportedKeyView>>), ApiError> {
    if body.keys.is_empty() || body.keys.len() > 64 {
        return Err(ApiError::bad_request("a key set holds 1 to 64 keys"));
    }
    for k in &body.keys {
        let n = k.key_index.chars().count();
        if n == 0 || n > 32 || k.key_index.chars().any(char::is_control) {
            return Err(ApiError::bad_request("keyIndex must be 1 to 32 characters"));
        }
    }
    let actor = ctx.caller.actor();
    let imported = keys::import(
        &hub.store,
        &hub.keys,
        &body.tsp_id,
        &body.keys,
        actor,
        hub.now_ms(),
    )
    .await;
    let outcome = match imported {
        // Which key failed its check is in the message; never a key's value.
        Err(crate::error::Error::Keys(e)) => {
            return Err(ApiError::bad_request(format!(
                "refused, nothing imported: {e}"
            )))
        }
        other => other?,
    };
    hub.tell_nodes(Signal::SharedKeys).await?;
    tracing::info!(
        by = ctx.caller.actor(),
        tsp_id = %body.tsp_id,
        keys = outcome.len(),
        "shared keys imported"
    );
    let view = outcome
        .into_iter()
        .map(|(key_index, o)| ImportedKeyView {
            key_index,
            outcome: match o {
                PutImmutable::Created => "IMPORTED",
                PutImmutable::Unchanged => "UNCHANGED",
                PutImmutable::Conflict => "REFUSED",
            }
            .to_string(),
        })
        .collect();
    Ok((Extension(Audited), Json(view)))
}

/// Retire a TSP's key: from then on an element under it is refused as one under an unknown key
/// (`431`). Retiring a retired key changes nothing. Audited.
#[utoipa::path(post, path = "/admin/v1/shared-keys/{tspId}/{keyIndex}/retire", tag = "admin keys",
    params(("tspId" = String, Path), ("keyIndex" = String, Path)),
    responses((status = 200, body = RetiredKeyView), (status = 404, body = ApiErrorBody), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn retire_key(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path((tsp_id, key_index)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let outcome = keys::retire(
        &hub.store,
        &tsp_id,
        &key_index,
        ctx.caller.actor(),
        hub.now_ms(),
    )
    .await?;
    if outcome == Retired::Missing {
        let mut answer =
            ApiError::not_found(format!("TSP {tsp_id} has no key {key_index}")).into_response();
        answer.extensions_mut().insert(Audited);
        return Ok(answer);
    }
    hub.tell_nodes(Signal::SharedKeys).await?;
    tracing::info!(by = ctx.caller.actor(), %tsp_id, %key_index, "shared key retired");
    let view = RetiredKeyView {
        tsp_id,
        key_index,
        state: crate::domain::KeyState::Retired.to_string(),
    };
    Ok((Extension(Audited), Json(view)).into_response())
}
