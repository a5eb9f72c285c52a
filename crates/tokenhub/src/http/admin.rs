//! The admin API (`/admin/v1`): TSP connections, issuers, products and their profile versions, and
//! read access to tokens (never their secrets). Every call needs `authorization: Bearer <token>`.

use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::ids::parse_slug;
use crate::domain::{IssuerId, ProfileDefinition, TokenId, TokenState};
use crate::error::Error;
use crate::flows::campaign::{self, CampaignSettings, Command, CommandError};
use crate::store::campaigns::{ReportLine, Step};
use crate::store::catalog::{self, Issuer, PutImmutable, Tsp};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/tsps/{tsp_id}", put(put_tsp))
        .route("/issuers/{issuer_id}", put(put_issuer))
        .route(
            "/issuers/{issuer_id}/products/{product_id}/profiles/{version}",
            put(put_profile_version),
        )
        .route(
            "/issuers/{issuer_id}/products/{product_id}/profiles/{version}/deploy",
            post(deploy),
        )
        .route("/tokens/{token_id}", get(get_token))
        .route("/campaigns/{campaign_id}", get(get_campaign))
        .route("/campaigns/{campaign_id}/pause", post(pause_campaign))
        .route("/campaigns/{campaign_id}/resume", post(resume_campaign))
        .route("/campaigns/{campaign_id}/cancel", post(cancel_campaign))
        .route("/campaigns/{campaign_id}/report", get(campaign_report))
        .merge(super::lifecycle::routes())
        .layer(axum::middleware::from_fn_with_state(state, require_admin))
}

/// Checks the bearer token in constant time.
async fn require_admin(State(hub): State<AppState>, req: Request, next: Next) -> Response {
    use subtle::ConstantTimeEq;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(hub.admin_token().as_bytes()).into();
    if !ok || given.is_empty() {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the admin API needs authorization: Bearer <admin token>",
        )
        .into_response();
    }
    next.run(req).await
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TspBody {
    /// The TSP's base URL for the outgoing API, e.g. `https://tsp.example/tsp/trapi/v2.0`.
    pub base_url: String,
    /// The calls per second the TSP agreed to take from the hub (all calls: repersoToken,
    /// newDataStatus, updateTokenState…); absent: no limit. Campaigns are paced by it.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TspView {
    pub tsp_id: String,
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<i64>,
}

/// Register or update a TSP connection.
#[utoipa::path(put, path = "/admin/v1/tsps/{tspId}", tag = "admin",
    params(("tspId" = String, Path, description = "1..64 of A-Z a-z 0-9 . _ -")),
    request_body = TspBody,
    responses((status = 200, body = TspView), (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn put_tsp(
    State(hub): State<AppState>,
    Path(tsp_id): Path<String>,
    JsonBody(body): JsonBody<TspBody>,
) -> Result<Json<TspView>, ApiError> {
    let tsp_id = parse_slug("tspId", &tsp_id)?;
    let url = reqwest::Url::parse(&body.base_url)
        .map_err(|_| ApiError::bad_request("baseUrl must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::bad_request(
            "baseUrl must be an absolute http(s) URL",
        ));
    }
    let tsp = Tsp {
        tsp_id,
        base_url: body.base_url.trim_end_matches('/').to_string(),
        rate_limit: match body.rate_limit_per_second {
            Some(0) => {
                return Err(ApiError::bad_request(
                    "rateLimitPerSecond must be at least 1",
                ))
            }
            r => r.map(i64::from),
        },
    };
    let now = hub.now_ms();
    let stored = tsp.clone();
    hub.store
        .transact(move |c| {
            Box::pin(async move { catalog::put_tsp(c, &stored, now).await.map_err(Error::from) })
        })
        .await?;
    Ok(Json(TspView {
        tsp_id: tsp.tsp_id,
        base_url: tsp.base_url,
        rate_limit_per_second: tsp.rate_limit,
    }))
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
    responses((status = 200, body = IssuerView), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody, description = "unknown tspId")),
    security(("admin" = [])))]
async fn put_issuer(
    State(hub): State<AppState>,
    Path(issuer_id): Path<String>,
    JsonBody(body): JsonBody<IssuerBody>,
) -> Result<Json<IssuerView>, ApiError> {
    let issuer_id = IssuerId::parse(&issuer_id)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::bad_request("name must be 1 to 128 characters"));
    }
    if hub.store.tsp(&body.tsp_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "TSP {} is not registered",
            body.tsp_id
        )));
    }
    let issuer = Issuer {
        issuer_id: issuer_id.to_string(),
        name: name.to_string(),
        tsp_id: body.tsp_id,
    };
    let now = hub.now_ms();
    let stored = issuer.clone();
    hub.store
        .transact(move |c| {
            Box::pin(async move {
                catalog::put_issuer(c, &stored, now)
                    .await
                    .map_err(Error::from)
            })
        })
        .await?;
    Ok(Json(IssuerView {
        issuer_id: issuer.issuer_id,
        name: issuer.name,
        tsp_id: issuer.tsp_id,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileVersionView {
    pub issuer_id: String,
    pub product_id: String,
    pub version: String,
    pub definition: ProfileDefinition,
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
    if hub.store.issuer(issuer_id.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "issuer {issuer_id} is not registered"
        )));
    }
    let json = definition.canonical_json();
    let now = hub.now_ms();
    let (i, p, v) = (issuer_id.to_string(), product_id.clone(), version.clone());
    let outcome = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                catalog::put_profile_version(c, &i, &p, &v, &json, now)
                    .await
                    .map_err(Error::from)
            })
        })
        .await?;
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
    let now = hub.now_ms();
    let (i, p, v) = (issuer_id.to_string(), product_id.clone(), version.clone());
    let settings = body.campaign;
    let deployed = hub
        .store
        .transact(move |c| {
            Box::pin(async move {
                if !catalog::deploy(c, &i, &p, &v, now).await? {
                    return Ok::<_, Error>(None);
                }
                let campaign = match settings {
                    Some(s) => Some(campaign::create(c, &i, &p, &v, s, now).await?),
                    None => None,
                };
                Ok(Some(campaign))
            })
        })
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    pub campaign_id: String,
    pub issuer_id: String,
    pub product_id: String,
    pub profile_version: String,
    /// `RUNNING`, `PAUSED`, `COMPLETED` or `CANCELLED`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub total: i64,
    pub done: i64,
    pub failed: i64,
    pub in_progress: i64,
    /// Tokens per step: QUEUED, RECOVERING, DELIVERING, DONE, FAILED, SKIPPED, CANCELLED.
    pub steps: std::collections::BTreeMap<String, i64>,
    pub rate_per_second: i64,
    pub max_in_flight: i64,
    pub canary_size: i64,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When the campaign should end at the pace it has kept so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_end: Option<String>,
}

/// A campaign's progress.
#[utoipa::path(get, path = "/admin/v1/campaigns/{campaignId}", tag = "admin",
    params(("campaignId" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_campaign(
    State(hub): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = parse_slug("campaignId", &id)?;
    let Some(c) = hub.store.campaign(&id).await? else {
        return Err(ApiError::not_found(format!("campaign {id} does not exist")));
    };
    let steps: std::collections::BTreeMap<String, i64> = Step::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .chain(
            hub.store
                .campaign_steps(&id)
                .await?
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n)),
        )
        .collect();
    let n = |s: Step| steps.get(s.as_str()).copied().unwrap_or(0);
    let settled = n(Step::Done) + n(Step::Failed) + n(Step::Skipped) + n(Step::Cancelled);
    let now = hub.now_ms();
    let elapsed = (now - c.created_ms).max(1);
    let estimated_end = (c.state == "RUNNING" && settled > 0 && settled < c.total)
        .then(|| iso8601(now + (c.total - settled) * elapsed / settled));
    Ok(Json(CampaignView {
        done: n(Step::Done),
        failed: n(Step::Failed),
        in_progress: n(Step::Recovering) + n(Step::Delivering),
        campaign_id: c.campaign_id,
        issuer_id: c.issuer_id,
        product_id: c.product_id,
        profile_version: c.profile_version,
        state: c.state,
        state_reason: c.state_reason,
        total: c.total,
        steps,
        rate_per_second: c.rate_per_second,
        max_in_flight: c.max_in_flight,
        canary_size: c.canary_size,
        started_at: iso8601(c.created_ms),
        finished_at: c.finished_ms.map(iso8601),
        estimated_end,
    }))
}

async fn campaign_command(hub: &AppState, id: &str, cmd: Command) -> Result<StatusCode, ApiError> {
    let id = parse_slug("campaignId", id)?;
    match campaign::command(hub, &id, cmd).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(CommandError::NotFound) => {
            Err(ApiError::not_found(format!("campaign {id} does not exist")))
        }
        Err(e @ CommandError::Finished(_)) => Err(ApiError::conflict(e.to_string())),
        Err(CommandError::Internal(e)) => Err(e.into()),
    }
}

/// Pause a campaign: nothing new starts; tokens under way finish.
#[utoipa::path(post, path = "/admin/v1/campaigns/{campaignId}/pause", tag = "admin",
    params(("campaignId" = String, Path)), responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn pause_campaign(
    State(hub): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    campaign_command(&hub, &id, Command::Pause).await
}

/// Resume a paused campaign.
#[utoipa::path(post, path = "/admin/v1/campaigns/{campaignId}/resume", tag = "admin",
    params(("campaignId" = String, Path)), responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn resume_campaign(
    State(hub): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    campaign_command(&hub, &id, Command::Resume).await
}

/// Cancel a campaign: queued tokens stay on their version; tokens under way finish.
#[utoipa::path(post, path = "/admin/v1/campaigns/{campaignId}/cancel", tag = "admin",
    params(("campaignId" = String, Path)), responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn cancel_campaign(
    State(hub): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    campaign_command(&hub, &id, Command::Cancel).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReportParams {
    /// `json` (the default) or `csv`.
    pub format: Option<String>,
}

/// Every token the campaign failed or skipped, with the reason.
#[utoipa::path(get, path = "/admin/v1/campaigns/{campaignId}/report", tag = "admin",
    params(("campaignId" = String, Path), ReportParams),
    responses((status = 200, body = [ReportLine]), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn campaign_report(
    State(hub): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<ReportParams>,
) -> Result<axum::response::Response, ApiError> {
    let id = parse_slug("campaignId", &id)?;
    if hub.store.campaign(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("campaign {id} does not exist")));
    }
    let lines = hub.store.campaign_report(&id).await?;
    match params.format.as_deref() {
        None | Some("json") => Ok(Json(lines).into_response()),
        Some("csv") => {
            let mut csv = String::from("tokenId,step,reason\n");
            for l in lines {
                csv.push_str(&format!(
                    "{},{},\"{}\"\n",
                    l.token_id,
                    l.step,
                    l.reason.replace('"', "\"\"")
                ));
            }
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
        }
        Some(_) => Err(ApiError::bad_request("format must be json or csv")),
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfoView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalizationView {
    pub personalization_id: String,
    pub profile_version: String,
    /// `PERSO` or `REPERSO`.
    pub kind: String,
    /// `PENDING`, `CONFIRMED` or `FAILED`.
    pub state: String,
    /// How many times it was offered to the device.
    pub tries: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenEventView {
    pub at: String,
    pub event: String,
    pub correlation_id: String,
}

/// A token as the admin API shows it: never a data element's value, only the names of the
/// elements the hub holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub token_id: String,
    pub issuer_id: String,
    pub product_id: String,
    pub profile_version: String,
    pub state: TokenState,
    pub device_id: String,
    pub wallet_card_ref_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_requestor_id: Option<String>,
    pub token_info: TokenInfoView,
    /// Names of the data elements the hub holds (sealed) for this token: until the device confirms
    /// its profile, then none.
    pub elements_held: Vec<String>,
    /// Names of the elements the hub keeps a keyed fingerprint of (never a value).
    pub elements_fingerprinted: Vec<String>,
    /// Why the token's personalization failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The token's personalizations, newest first.
    pub personalizations: Vec<PersonalizationView>,
    /// Until when `/data` is accepted.
    pub data_deadline: String,
    pub created_at: String,
    pub updated_at: String,
    pub history: Vec<TokenEventView>,
}

/// Read a token.
#[utoipa::path(get, path = "/admin/v1/tokens/{tokenId}", tag = "admin",
    params(("tokenId" = String, Path)),
    responses((status = 200, body = TokenView), (status = 404, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_token(
    State(hub): State<AppState>,
    Path(token_id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let token_id = TokenId::parse(&token_id)?;
    let Some(t) = hub.store.token(token_id.as_str()).await? else {
        return Err(ApiError::not_found(format!(
            "token {token_id} does not exist"
        )));
    };
    let history = hub
        .store
        .token_events(token_id.as_str())
        .await?
        .into_iter()
        .map(|e| TokenEventView {
            at: iso8601(e.at_ms),
            event: e.event,
            correlation_id: e.correlation_id,
        })
        .collect();
    Ok(Json(TokenView {
        token_id: t.token_id,
        issuer_id: t.issuer_id,
        product_id: t.product_id,
        profile_version: t.profile_version,
        state: t.state,
        device_id: t.device_id,
        wallet_card_ref_id: t.wallet_card_ref_id,
        token_requestor_id: t.token_requestor_id,
        token_info: TokenInfoView {
            exp: t.token_exp,
            last4: t.token_last4,
        },
        elements_held: t.received_elements,
        elements_fingerprinted: hub.store.fingerprint_names(token_id.as_str()).await?,
        failure_reason: t.failure_reason,
        personalizations: hub
            .store
            .personalizations_of(token_id.as_str())
            .await?
            .into_iter()
            .map(|p| PersonalizationView {
                personalization_id: p.personalization_id,
                profile_version: p.profile_version,
                kind: p.kind.as_str().to_string(),
                state: p.state.as_str().to_string(),
                tries: p.tries,
                reason: p.result_reason,
                created_at: iso8601(p.created_ms),
            })
            .collect(),
        data_deadline: iso8601(t.data_deadline_ms),
        created_at: iso8601(t.created_ms),
        updated_at: iso8601(t.updated_ms),
        history,
    }))
}
