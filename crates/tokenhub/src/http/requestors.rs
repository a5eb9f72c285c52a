//! Admin API: token requestors (`/admin/v1/token-requestors`): registration, their endpoint's
//! state, re-enabling it, replaying their dead letters. Secrets (API keys, signing secrets) are
//! write-only: no answer carries them.

use super::api_error::{ApiErrorBody, JsonBody};
use super::wallet_providers::KeyView;
use super::{ApiError, AppState};
use crate::domain::ids::parse_slug;
use crate::domain::notification::{Requestor, RequestorState};
use crate::flows::requestors;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/token-requestors/{requestor_id}",
            put(put_requestor).get(get_requestor),
        )
        .route(
            "/token-requestors/{requestor_id}/enable",
            post(enable_requestor),
        )
        .route(
            "/token-requestors/{requestor_id}/api-keys",
            post(create_requestor_key).get(list_requestor_keys),
        )
        .route(
            "/token-requestors/{requestor_id}/api-keys/{key_id}",
            axum::routing::delete(revoke_requestor_key),
        )
        .route(
            "/token-requestors/{requestor_id}/dead-letters/replay",
            post(replay_dead_letters),
        )
}

/// A token requestor: where its token updates go and how they are authenticated.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestorBody {
    pub merchant_id: String,
    /// Updates are `POST`ed to `{baseUrl}/notify-token-update`.
    pub base_url: String,
    /// Sent as `authorization: APIKEY <apiKey>`.
    pub api_key: String,
    /// `whsec_…` secrets; every delivery carries one signature per secret, so a secret can be
    /// rotated without a gap (add the new one, then remove the old one).
    pub signing_secrets: Vec<String>,
    /// Deliveries under way at once to this requestor (default 16).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// The CA certificates (PEM) the requestor's server certificate is issued from, trusted for
    /// the hub's deliveries to it besides the public roots. The hub presents its client
    /// certificate to a requestor that asks for one.
    #[serde(default)]
    pub server_ca_pem: Option<String>,
}

/// A token requestor as the admin API shows it: never its API key or secrets.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestorView {
    pub requestor_id: String,
    pub merchant_id: String,
    pub base_url: String,
    pub signing_secrets: i64,
    pub max_in_flight: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_ca_pem: Option<String>,
    /// `ENABLED`, or `DISABLED` (the endpoint answered 410 Gone).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Updates by state (`PENDING`, `DELIVERED`, `DEAD`, `SUPERSEDED`).
    pub notifications: std::collections::BTreeMap<String, i64>,
}

async fn requestor_view(hub: &AppState, r: Requestor) -> Result<RequestorView, ApiError> {
    let notifications = requestors::notifications_by_state(hub, &r.requestor_id)
        .await?
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect();
    Ok(RequestorView {
        requestor_id: r.requestor_id,
        merchant_id: r.merchant_id,
        base_url: r.base_url,
        signing_secrets: r.secret_count,
        max_in_flight: r.max_in_flight,
        server_ca_pem: r.server_ca_pem,
        state: r.state.as_str().to_string(),
        disabled_reason: r.disabled_reason,
        notifications,
    })
}

/// Register or update a token requestor. Tokens digitized with this `tokenRequestorId` have their
/// updates delivered to it.
#[utoipa::path(put, path = "/admin/v1/token-requestors/{requestorId}", tag = "token requestors",
    params(("requestorId" = String, Path, description = "1..32 of A-Z a-z 0-9 . _ -")),
    request_body = RequestorBody,
    responses((status = 200, body = RequestorView), (status = 400, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn put_requestor(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
    JsonBody(body): JsonBody<RequestorBody>,
) -> Result<Json<RequestorView>, ApiError> {
    let requestor_id = parse_slug("requestorId", &requestor_id)?;
    if requestor_id.len() > 32 {
        return Err(ApiError::bad_request(
            "requestorId must be at most 32 characters",
        ));
    }
    if body.merchant_id.is_empty() || body.merchant_id.chars().count() > 64 {
        return Err(ApiError::bad_request(
            "merchantId must be 1 to 64 characters",
        ));
    }
    hub.requestor_client
        .check_url(&body.base_url)
        .map_err(ApiError::bad_request)?;
    if body.api_key.is_empty()
        || body.api_key.len() > 256
        || !body.api_key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(
            "apiKey must be 1 to 256 printable ASCII characters",
        ));
    }
    if body.signing_secrets.is_empty() || body.signing_secrets.len() > 8 {
        return Err(ApiError::bad_request("signingSecrets holds 1 to 8 secrets"));
    }
    let max_in_flight = body.max_in_flight.unwrap_or(16);
    if !(1..=1024).contains(&max_in_flight) {
        return Err(ApiError::bad_request("maxInFlight must be 1 to 1024"));
    }
    if let Some(pem) = &body.server_ca_pem {
        crate::tls::parse_certificates(pem)
            .map_err(|e| ApiError::bad_request(format!("serverCaPem: {e}")))?;
    }
    let credentials = hub
        .keys
        .seal_requestor_credentials(&requestor_id, &body.api_key, &body.signing_secrets)
        .map_err(ApiError::bad_request)?;
    let row = Requestor {
        requestor_id: requestor_id.clone(),
        merchant_id: body.merchant_id,
        base_url: body.base_url,
        credentials,
        secret_count: body.signing_secrets.len() as i64,
        max_in_flight: i64::from(max_in_flight),
        server_ca_pem: body.server_ca_pem,
        state: RequestorState::Enabled,
        disabled_reason: None,
        created_ms: 0,
        updated_ms: 0,
    };
    let r = requestors::put(&hub, row).await?;
    Ok(Json(requestor_view(&hub, r).await?))
}

/// Read a token requestor: its endpoint's state and its updates by state.
#[utoipa::path(get, path = "/admin/v1/token-requestors/{requestorId}", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 200, body = RequestorView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_requestor(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    let Some(r) = requestors::get(&hub, &requestor_id).await? else {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    };
    Ok(Json(requestor_view(&hub, r).await?))
}

/// Enable a requestor's endpoint again (after it answered 410 Gone): its waiting updates go out.
#[utoipa::path(post, path = "/admin/v1/token-requestors/{requestorId}/enable", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 204), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn enable_requestor(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let found = requestors::enable(&hub, &requestor_id).await?;
    if !found {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayView {
    pub replayed: u64,
}

/// Replay every dead update of a requestor.
#[utoipa::path(post, path = "/admin/v1/token-requestors/{requestorId}/dead-letters/replay", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 200, body = ReplayView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn replay_dead_letters(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<Json<ReplayView>, ApiError> {
    let Some(replayed) = requestors::replay_dead(&hub, &requestor_id).await? else {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    };
    Ok(Json(ReplayView { replayed }))
}

/// A requestor API key, shown once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestorKeyView {
    pub key_id: String,
    /// `trk_…`: the requestor API's `Authorization: Bearer` credential. The hub keeps only its
    /// hash; it is never shown again.
    pub api_key: String,
}

/// Issue an API key for the requestor API (`/requestor/v1`).
#[utoipa::path(post, path = "/admin/v1/token-requestors/{requestorId}/api-keys", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 201, body = RequestorKeyView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn create_requestor_key(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<(StatusCode, Json<RequestorKeyView>), ApiError> {
    use secrecy::ExposeSecret;
    let Some(key) = crate::flows::requestor_tokens::issue_key(&hub, &requestor_id).await? else {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    };
    Ok((
        StatusCode::CREATED,
        Json(RequestorKeyView {
            key_id: key.key_id,
            api_key: key.api_key.expose_secret().to_string(),
        }),
    ))
}

/// The requestor's API keys for the requestor API, oldest first: ids and times, never a key.
#[utoipa::path(get, path = "/admin/v1/token-requestors/{requestorId}/api-keys", tag = "token requestors",
    params(("requestorId" = String, Path)),
    responses((status = 200, body = [KeyView]), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_requestor_keys(
    State(hub): State<AppState>,
    Path(requestor_id): Path<String>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let Some(keys) = crate::flows::requestor_tokens::keys(&hub, &requestor_id).await? else {
        return Err(ApiError::not_found(format!(
            "no token requestor {requestor_id}"
        )));
    };
    Ok(Json(
        keys.into_iter()
            .map(|k| KeyView {
                key_id: k.key_id,
                created_ms: k.created_ms,
                revoked_ms: k.revoked_ms,
            })
            .collect(),
    ))
}

/// Revoke one of the requestor's API keys: the requestor API refuses it from now on.
#[utoipa::path(delete, path = "/admin/v1/token-requestors/{requestorId}/api-keys/{keyId}", tag = "token requestors",
    params(("requestorId" = String, Path), ("keyId" = String, Path)),
    responses((status = 204), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn revoke_requestor_key(
    State(hub): State<AppState>,
    Path((requestor_id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if crate::flows::requestor_tokens::revoke_key(&hub, &requestor_id, &key_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "token requestor {requestor_id} has no API key {key_id}"
        )))
    }
}
