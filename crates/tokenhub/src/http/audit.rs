//! Admin API: the audit log (`/admin/v1/audit`), in order, a page at a time.

use super::api_error::ApiErrorBody;
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::flows::audit;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list_audit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    /// Entries after this seq (default 0: from the first).
    pub after: Option<i64>,
    /// At most this many (default and most 500).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub seq: i64,
    pub at: String,
    /// The admin key's id, `bootstrap` or `cli`.
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub correlation_id: String,
    pub status: i64,
    /// Hex SHA-256 of the previous entry's hash and this entry's content.
    pub hash: String,
    pub prev_hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Give it as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

/// The audit log, oldest first.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin keys", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_audit(
    State(hub): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(audit::MAX_PAGE);
    if !(1..=audit::MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {}",
            audit::MAX_PAGE
        )));
    }
    let entries = audit::page(&hub.store, q.after.unwrap_or(0), limit).await?;
    let next_after = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries: entries
            .into_iter()
            .map(|e| AuditEntryView {
                seq: e.seq,
                at: iso8601(e.record.at_ms),
                actor: e.record.actor,
                action: e.record.action,
                object_type: e.record.object_type,
                object_id: e.record.object_id,
                correlation_id: e.record.correlation_id,
                status: e.record.status,
                hash: hex::encode(e.hash),
                prev_hash: hex::encode(e.prev_hash),
            })
            .collect(),
        next_after,
    }))
}
