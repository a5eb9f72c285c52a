//! Admin API: a product's profile versions (defined, read, listed a page at a time), and deploying
//! one (`/admin/v1/issuers/{issuerId}/products/{productId}/profiles`).

use super::api_error::{ApiErrorBody, JsonBody};
use super::overview::{limit, PageQuery};
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::catalog::PutImmutable;
use crate::domain::ids::parse_slug;
use crate::domain::{IssuerId, ProfileDefinition};
use crate::flows::campaign::CampaignSettings;
use crate::flows::catalog;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/issuers/{issuer_id}/products/{product_id}/profiles",
            get(list_profile_versions),
        )
        .route(
            "/issuers/{issuer_id}/products/{product_id}/profiles/{version}",
            put(put_profile_version).get(get_profile_version),
        )
        .route(
            "/issuers/{issuer_id}/products/{product_id}/profiles/{version}/deploy",
            post(deploy),
        )
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileVersionView {
    pub issuer_id: String,
    pub product_id: String,
    pub version: String,
    pub definition: ProfileDefinition,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileVersionSummaryView {
    pub version: String,
    pub created_at: String,
    /// Whether it is the deployed version, which new tokens are created with.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileVersionPage {
    pub items: Vec<ProfileVersionSummaryView>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A product's profile versions by version, a page at a time (none for a product without one;
/// an issuer-admin's key: its issuers' only, another answering as an unknown issuer).
#[utoipa::path(get, path = "/admin/v1/issuers/{issuerId}/products/{productId}/profiles", tag = "admin",
    params(("issuerId" = String, Path), ("productId" = String, Path), PageQuery),
    responses((status = 200, body = ProfileVersionPage), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_profile_versions(
    State(hub): State<AppState>,
    Path((issuer_id, product_id)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Json<ProfileVersionPage>, ApiError> {
    let found = catalog::profile_versions(
        &hub,
        &issuer_id,
        &product_id,
        limit(&q),
        q.cursor.as_deref(),
    )
    .await?;
    let Some(page) = found else {
        return Err(ApiError::not_found(format!(
            "issuer {issuer_id} is not registered"
        )));
    };
    Ok(Json(ProfileVersionPage {
        items: page
            .versions
            .into_iter()
            .map(|(version, created_ms)| ProfileVersionSummaryView {
                current: page.current.as_deref() == Some(version.as_str()),
                version,
                created_at: iso8601(created_ms),
            })
            .collect(),
        next: page.next,
    }))
}

/// Read a profile version's definition.
#[utoipa::path(get, path = "/admin/v1/issuers/{issuerId}/products/{productId}/profiles/{version}", tag = "admin",
    params(("issuerId" = String, Path), ("productId" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ProfileVersionView), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_profile_version(
    State(hub): State<AppState>,
    Path((issuer_id, product_id, version)): Path<(String, String, String)>,
) -> Result<Json<ProfileVersionView>, ApiError> {
    // An unknown issuer answers as the role check answers an issuer-admin for another's.
    if catalog::issuer(&hub, &issuer_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "issuer {issuer_id} is not registered"
        )));
    }
    let stored = catalog::profile_version(&hub, &issuer_id, &product_id, &version).await?;
    let Some(stored) = stored else {
        return Err(ApiError::not_found(format!(
            "profile version {version} of {issuer_id}/{product_id} is not defined"
        )));
    };
    let definition: ProfileDefinition = serde_json::from_str(&stored)
        .map_err(|e| ApiError::internal(&format!("a stored profile does not parse: {e}")))?;
    Ok(Json(ProfileVersionView {
        issuer_id,
        product_id,
        version,
        definition,
    }))
}

/// Define a profile version of a product. Versions are immutable: the same body again is `200`,
/// a different body for an existing version is `409`.
#[utoipa::path(put, path = "/admin/v1/issuers/{issuerId}/products/{productId}/profiles/{version}", tag = "admin",
    params(("issuerId" = String, Path), ("productId" = String, Path), ("version" = String, Path)),
    request_body = ProfileDefinition,
    responses((status = 201, body = ProfileVersionView), (status = 200, body = ProfileVersionView, description = "identical version already defined"),
        (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn put_profile_version(
    State(hub): State<AppState>,
    Path((issuer_id, product_id, version)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<ProfileDefinition>,
) -> Result<(StatusCode, Json<ProfileVersionView>), ApiError> {
    let issuer_id = IssuerId::parse(&issuer_id)?;
    let product_id = parse_slug("productId", &product_id)?;
    let version = parse_slug("version", &version)?;
    let definition = body.validate()?;
    if let Some(k) = catalog::unknown_default_key(&hub, issuer_id.as_str(), &definition).await? {
        return Err(ApiError::bad_request(format!(
            "defaultKeyIndex {k} is not a key the hub holds for the issuer's TSP: import it first"
        )));
    }
    let json = definition.canonical_json();
    let outcome =
        catalog::put_profile_version(&hub, issuer_id.as_str(), &product_id, &version, json).await?;
    let status = match outcome {
        PutImmutable::Created => StatusCode::CREATED,
        PutImmutable::Unchanged => StatusCode::OK,
        PutImmutable::Conflict => {
            return Err(ApiError::conflict(format!(
                "profile version {version} of {issuer_id}/{product_id} exists with a different definition; versions are immutable, define a new version"
            )));
        }
    };
    Ok((
        status,
        Json(ProfileVersionView {
            issuer_id: issuer_id.to_string(),
            product_id,
            version,
            definition,
        }),
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployBody {
    /// Start a re-personalization campaign over every token ACTIVE on the product (`{}` for the
    /// defaults).
    #[serde(default)]
    pub campaign: Option<CampaignSettings>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployView {
    pub issuer_id: String,
    pub product_id: String,
    pub current_version: String,
    /// The campaign started, if one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// Make a profile version the product's current one: tokens digitized from now on use it. With
/// `campaign`, also re-personalize every token ACTIVE on the product (`202`).
#[utoipa::path(post, path = "/admin/v1/issuers/{issuerId}/products/{productId}/profiles/{version}/deploy", tag = "admin",
    params(("issuerId" = String, Path), ("productId" = String, Path), ("version" = String, Path)),
    request_body = DeployBody,
    responses((status = 200, body = DeployView), (status = 202, body = DeployView, description = "deployed, campaign started"),
        (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn deploy(
    State(hub): State<AppState>,
    Path((issuer_id, product_id, version)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<DeployView>), ApiError> {
    let body: DeployBody = if body.iter().all(u8::is_ascii_whitespace) {
        DeployBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body is not a valid deploy request: {e}"))
        })?
    };
    let issuer_id = IssuerId::parse(&issuer_id)?;
    let product_id = parse_slug("productId", &product_id)?;
    let version = parse_slug("version", &version)?;
    if let Some(c) = &body.campaign {
        c.check().map_err(ApiError::bad_request)?;
    }
    let deployed = catalog::deploy(
        &hub,
        issuer_id.as_str(),
        &product_id,
        &version,
        body.campaign,
    )
    .await?;
    let Some(campaign) = deployed else {
        return Err(ApiError::not_found(format!(
            "profile version {version} of {issuer_id}/{product_id} is not defined"
        )));
    };
    tracing::info!(issuer_id = %issuer_id, product_id, version, campaign = ?campaign.as_ref().map(|c| &c.campaign_id), "profile version deployed");
    let status = if campaign.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DeployView {
            issuer_id: issuer_id.to_string(),
            product_id,
            current_version: version,
            total: campaign.as_ref().map(|c| c.total),
            campaign_id: campaign.map(|c| c.campaign_id),
        }),
    ))
}
