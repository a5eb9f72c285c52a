//! Admin API: wallet providers (`/admin/v1/wallet-providers`), the callers of the wallet API, and
//! their API keys: a new key is shown once, in the answer that makes it; the hub keeps only its
//! secret's hash, and a key is revoked by its id.

use super::api_error::{ApiErrorBody, JsonBody};
use super::overview::{limit, PageQuery};
use super::{ApiError, AppState};
use crate::domain::ids::parse_slug;
use crate::domain::wallet_provider::{parse_spki_pin, WalletProvider};
use crate::flows::wallet_providers;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/wallet-providers", get(list_providers))
        .route(
            "/wallet-providers/{provider_id}",
            put(put_provider).get(get_provider),
        )
        .route("/wallet-providers/{provider_id}/api-keys", post(create_key))
        .route(
            "/wallet-providers/{provider_id}/api-keys/{key_id}",
            delete(revoke_key),
        )
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderBody {
    pub name: String,
    /// Hex SHA-256 of the SubjectPublicKeyInfo of the client certificate the provider may
    /// present instead of an API key.
    #[serde(default)]
    pub client_cert_spki_sha256: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    pub provider_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_spki_sha256: Option<String>,
    /// Its API keys, by id (never a key itself).
    pub api_keys: Vec<KeyView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub key_id: String,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewKeyView {
    pub key_id: String,
    /// `Authorization: Bearer <apiKey>` on the wallet API. Shown this once: the hub keeps only
    /// its hash.
    pub api_key: String,
}

/// A wallet provider as a list shows it (its keys: `GET /wallet-providers/{providerId}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSummaryView {
    pub provider_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_spki_sha256: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderPage {
    pub items: Vec<ProviderSummaryView>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Wallet providers by id, a page at a time.
#[utoipa::path(get, path = "/admin/v1/wallet-providers", tag = "wallet providers", params(PageQuery),
    responses((status = 200, body = ProviderPage), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_providers(
    State(hub): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<ProviderPage>, ApiError> {
    let (page, next) = wallet_providers::page(&hub, limit(&q), q.cursor.as_deref()).await?;
    Ok(Json(ProviderPage {
        items: page
            .into_iter()
            .map(|p| ProviderSummaryView {
                provider_id: p.provider_id,
                name: p.name,
                client_cert_spki_sha256: p.spki_sha256,
            })
            .collect(),
        next,
    }))
}

/// Register or update a wallet provider.
#[utoipa::path(put, path = "/admin/v1/wallet-providers/{providerId}", tag = "wallet providers",
    params(("providerId" = String, Path, description = "1..64 of A-Z a-z 0-9 . _ -")),
    request_body = ProviderBody,
    responses((status = 200, body = ProviderView), (status = 400, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody, description = "another provider has this certificate pin")),
    security(("admin" = [])))]
async fn put_provider(
    State(hub): State<AppState>,
    Path(provider_id): Path<String>,
    JsonBody(body): JsonBody<ProviderBody>,
) -> Result<Json<ProviderView>, ApiError> {
    let provider_id = parse_slug("providerId", &provider_id)?;
    if body.name.trim().is_empty() || body.name.chars().count() > 128 {
        return Err(ApiError::bad_request("name must be 1 to 128 characters"));
    }
    let spki_sha256 = body
        .client_cert_spki_sha256
        .as_deref()
        .map(|p| parse_spki_pin("clientCertSpkiSha256", p))
        .transpose()?;
    wallet_providers::put(
        &hub,
        WalletProvider {
            provider_id: provider_id.clone(),
            name: body.name,
            spki_sha256,
        },
    )
    .await?;
    view(&hub, &provider_id).await
}

/// Read a wallet provider and its API keys' ids.
#[utoipa::path(get, path = "/admin/v1/wallet-providers/{providerId}", tag = "wallet providers",
    params(("providerId" = String, Path)),
    responses((status = 200, body = ProviderView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_provider(
    State(hub): State<AppState>,
    Path(provider_id): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    view(&hub, &provider_id).await
}

async fn view(hub: &AppState, provider_id: &str) -> Result<Json<ProviderView>, ApiError> {
    let Some((p, keys)) = wallet_providers::get(hub, provider_id).await? else {
        return Err(ApiError::not_found(format!(
            "no wallet provider {provider_id}"
        )));
    };
    Ok(Json(ProviderView {
        provider_id: p.provider_id,
        name: p.name,
        client_cert_spki_sha256: p.spki_sha256,
        api_keys: keys
            .into_iter()
            .map(|k| KeyView {
                key_id: k.key_id,
                created_ms: k.created_ms,
                revoked_ms: k.revoked_ms,
            })
            .collect(),
    }))
}

/// Make a new API key for the provider (its other keys stay valid until revoked, so a key can be
/// rotated without a gap). The key is in this answer only.
#[utoipa::path(post, path = "/admin/v1/wallet-providers/{providerId}/api-keys", tag = "wallet providers",
    params(("providerId" = String, Path)),
    responses((status = 201, body = NewKeyView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn create_key(
    State(hub): State<AppState>,
    Path(provider_id): Path<String>,
) -> Result<(StatusCode, Json<NewKeyView>), ApiError> {
    let Some(key) = wallet_providers::create_key(&hub, &provider_id).await? else {
        return Err(ApiError::not_found(format!(
            "no wallet provider {provider_id}"
        )));
    };
    Ok((
        StatusCode::CREATED,
        Json(NewKeyView {
            key_id: key.key_id,
            api_key: key.api_key.expose_secret().to_string(),
        }),
    ))
}

/// Revoke one of the provider's API keys: it is refused from now on.
#[utoipa::path(delete, path = "/admin/v1/wallet-providers/{providerId}/api-keys/{keyId}", tag = "wallet providers",
    params(("providerId" = String, Path), ("keyId" = String, Path)),
    responses((status = 204), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn revoke_key(
    State(hub): State<AppState>,
    Path((provider_id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if wallet_providers::revoke_key(&hub, &provider_id, &key_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "wallet provider {provider_id} has no API key {key_id}"
        )))
    }
}
