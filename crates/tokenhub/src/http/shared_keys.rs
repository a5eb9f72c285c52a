//! Admin API: the keys shared with TSPs (`/admin/v1/shared-keys`), for the key custodian (and
//! admin): a key ceremony's set imported (each checked against its KCV, wrapped under the master
//! key, audited in the import's transaction) and the keys listed (index, algorithm, KCV; never
//! the key). A rotation imports the new index; the old one stays for the data sealed under it.

use super::admin::{AdminContext, Audited};
use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::domain::catalog::PutImmutable;
use crate::flows::keys;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/shared-keys", get(list_keys).post(import_keys))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedKeyView {
    pub key_index: String,
    pub algorithm: String,
    pub kcv: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportedKeyView {
    pub key_index: String,
    /// `IMPORTED`, `UNCHANGED` (the same key was imported before) or `REFUSED` (another key has
    /// that index).
    pub outcome: String,
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
                key_index: k.key_index,
                algorithm: k.algorithm.to_string(),
                kcv: k.kcv,
            })
            .collect(),
    ))
}

/// Import a key set (`{"keys": [{"keyIndex", "algorithm", "purpose", "hex", "kcv"}]}`, the file
/// `tokenhub keys generate` writes). Each key's outcome is in the answer and the audit log.
#[utoipa::path(post, path = "/admin/v1/shared-keys", tag = "admin keys",
    request_body(content = Object, description = "a key set"),
    responses((status = 200, body = [ImportedKeyView]), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn import_keys(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    JsonBody(set): JsonBody<tokenhub_crypto::KeySet>,
) -> Result<(Extension<Audited>, Json<Vec<ImportedKeyView>>), ApiError> {
    if set.keys.is_empty() || set.keys.len() > 64 {
        return Err(ApiError::bad_request("a key set holds 1 to 64 keys"));
    }
    for k in &set.keys {
        let n = k.key_index.chars().count();
        if n == 0 || n > 32 || k.key_index.chars().any(char::is_control) {
            return Err(ApiError::bad_request("keyIndex must be 1 to 32 characters"));
        }
    }
    let actor = ctx.caller.actor();
    let outcome = match keys::import(&hub.store, &hub.keys, &set.keys, actor, hub.now_ms()).await {
        // Which key failed its check is in the message; never a key's value.
        Err(crate::error::Error::Keys(e)) => {
            return Err(ApiError::bad_request(format!(
                "refused, nothing imported: {e}"
            )))
        }
        other => other?,
    };
    hub.reload_keys().await?;
    tracing::info!(
        by = ctx.caller.actor(),
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
