//! Admin API: token updates owed to token requestors (`/admin/v1/notifications`, a token's and a
//! requestor's lists): their bodies, attempts, and replay.

use super::admin::{sees, AdminContext};
use super::api_error::ApiErrorBody;
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::admin::IssuerObject;
use crate::domain::notification::{Attempt, Filter, Notification, NotificationState};
use crate::flows::notifications;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens/{token_id}/notifications", get(token_notifications))
        .route(
            "/token-requestors/{requestor_id}/notifications",
            get(requestor_notifications),
        )
        .route("/notifications/{notification_id}", get(get_notification))
        .route(
            "/notifications/{notification_id}/replay",
            post(replay_notification),
        )
}

/// A token update and where its delivery stands (never its API key or signature).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub notification_id: i64,
    pub webhook_id: String,
    pub requestor_id: String,
    pub token_id: String,
    pub correlation_id: String,
    /// `PENDING`, `DELIVERED`, `DEAD` (the dead-letter list) or `SUPERSEDED`.
    pub state: String,
    pub last_update_timestamp: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// On `GET /notifications/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub at: String,
    pub duration_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn notification_view(n: Notification) -> NotificationView {
    NotificationView {
        notification_id: n.id,
        webhook_id: n.webhook_id,
        requestor_id: n.requestor_id,
        token_id: n.token_id,
        correlation_id: n.correlation_id,
        next_attempt_at: (n.state == NotificationState::Pending)
            .then(|| iso8601(n.next_attempt_ms)),
        state: n.state.as_str().to_string(),
        last_update_timestamp: crate::domain::lifecycle::format_timestamp(n.last_update_ms),
        attempts: n.attempts,
        last_status: n.last_status,
        last_error: n.last_error,
        created_at: iso8601(n.created_ms),
        delivered_at: n.delivered_ms.map(iso8601),
        body: None,
        attempt_log: None,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationQuery {
    /// `PENDING`, `DELIVERED`, `DEAD` or `SUPERSEDED`.
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn filter(q: NotificationQuery) -> Result<Filter, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(NotificationState::parse(s).ok_or_else(|| {
            ApiError::bad_request("state must be PENDING, DELIVERED, DEAD or SUPERSEDED")
        })?),
    };
    Ok(Filter {
        state,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        ..Default::default()
    })
}

/// A requestor's token updates, newest first; `?state=DEAD` is its dead-letter list.
#[utoipa::path(get, path = "/admin/v1/token-requestors/{requestorId}/notifications", tag = "token requestors",
    params(("requestorId" = String, Path), NotificationQuery),
    responses((status = 200, body = [NotificationView]), (status = 400, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn requestor_notifications(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
    Query(q): Query<NotificationQuery>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    let f = Filter {
        requestor_id: Some(requestor_id),
        ..filter(q)?
    };
    list_notifications(&hub, &f).await
}

/// A token's updates to its requestor, newest first.
#[utoipa::path(get, path = "/admin/v1/tokens/{tokenId}/notifications", tag = "token requestors",
    params(("tokenId" = String, Path), NotificationQuery),
    responses((status = 200, body = [NotificationView]), (status = 400, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn token_notifications(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(token_id): Path<String>,
    Query(q): Query<NotificationQuery>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    let f = Filter {
        token_id: Some(token_id.clone()),
        ..filter(q)?
    };
    if !sees(&hub, &ctx, IssuerObject::Token, &token_id).await? {
        return Ok(Json(Vec::new()));
    }
    list_notifications(&hub, &f).await
}

async fn list_notifications(
    hub: &AppState,
    f: &Filter,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    let found = notifications::list(hub, f).await?;
    Ok(Json(found.into_iter().map(notification_view).collect()))
}

/// One token update: its body (the token's state, no secrets) and every attempt.
#[utoipa::path(get, path = "/admin/v1/notifications/{notificationId}", tag = "token requestors",
    params(("notificationId" = i64, Path)),
    responses((status = 200, body = NotificationView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_notification(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(id): Path<i64>,
) -> Result<Json<NotificationView>, ApiError> {
    let found = match sees(&hub, &ctx, IssuerObject::Notification, &id.to_string()).await? {
        true => notifications::get(&hub, id).await?,
        false => None,
    };
    let Some((n, attempts)) = found else {
        return Err(ApiError::not_found(format!("no notification {id}")));
    };
    let body = serde_json::from_str(&n.payload).ok();
    let mut view = notification_view(n);
    view.body = body;
    view.attempt_log = Some(
        attempts
            .into_iter()
            .map(|a: Attempt| AttemptView {
                at: iso8601(a.at_ms),
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error,
            })
            .collect(),
    );
    Ok(Json(view))
}

/// Replay a dead update: a new series of attempts, same `webhook-id`.
#[utoipa::path(post, path = "/admin/v1/notifications/{notificationId}/replay", tag = "token requestors",
    params(("notificationId" = i64, Path)),
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody, description = "not dead")),
    security(("admin" = [])))]
async fn replay_notification(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if !sees(&hub, &ctx, IssuerObject::Notification, &id.to_string()).await? {
        return Err(ApiError::not_found(format!("no notification {id}")));
    }
    match notifications::replay(&hub, id).await? {
        None => Err(ApiError::not_found(format!("no notification {id}"))),
        Some(false) => Err(ApiError::conflict(format!(
            "notification {id} is not in the dead-letter list"
        ))),
        Some(true) => Ok(StatusCode::NO_CONTENT),
    }
}
