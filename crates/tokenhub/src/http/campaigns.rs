//! Admin API: re-personalization campaigns (`/admin/v1/campaigns`): progress, operator
//! commands, the report.

use super::admin::{sees, AdminContext};
use super::api_error::ApiErrorBody;
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::admin::IssuerObject;
use crate::domain::campaign::{CampaignState, Step};
use crate::domain::ids::parse_slug;
use crate::flows::campaign::{self, Command, CommandError};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns/{campaign_id}", get(get_campaign))
        .route("/campaigns/{campaign_id}/pause", post(pause_campaign))
        .route("/campaigns/{campaign_id}/resume", post(resume_campaign))
        .route("/campaigns/{campaign_id}/cancel", post(cancel_campaign))
        .route("/campaigns/{campaign_id}/report", get(campaign_report))
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
    Extension(ctx): Extension<AdminContext>,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = parse_slug("campaignId", &id)?;
    let found = match sees(&hub, &ctx, IssuerObject::Campaign, &id).await? {
        true => campaign::get(&hub, &id).await?,
        false => None,
    };
    let Some((c, counts)) = found else {
        return Err(ApiError::not_found(format!("campaign {id} does not exist")));
    };
    let steps: std::collections::BTreeMap<String, i64> = Step::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .chain(counts.into_iter().map(|(s, n)| (s.as_str().to_string(), n)))
        .collect();
    let n = |s: Step| steps.get(s.as_str()).copied().unwrap_or(0);
    let settled = n(Step::Done) + n(Step::Failed) + n(Step::Skipped) + n(Step::Cancelled);
    let now = hub.now_ms();
    let elapsed = (now - c.created_ms).max(1);
    let estimated_end = (c.state == CampaignState::Running && settled > 0 && settled < c.total)
        .then(|| iso8601(now + (c.total - settled) * elapsed / settled));
    Ok(Json(CampaignView {
        done: n(Step::Done),
        failed: n(Step::Failed),
        in_progress: n(Step::Recovering) + n(Step::Delivering),
        campaign_id: c.campaign_id,
        issuer_id: c.issuer_id,
        product_id: c.product_id,
        profile_version: c.profile_version,
        state: c.state.as_str().to_string(),
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

async fn campaign_command(
    hub: &AppState,
    ctx: &AdminContext,
    id: &str,
    cmd: Command,
) -> Result<StatusCode, ApiError> {
    let id = parse_slug("campaignId", id)?;
    if !sees(hub, ctx, IssuerObject::Campaign, &id).await? {
        return Err(ApiError::not_found(format!("campaign {id} does not exist")));
    }
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
    Extension(ctx): Extension<AdminContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    campaign_command(&hub, &ctx, &id, Command::Pause).await
}

/// Resume a paused campaign.
#[utoipa::path(post, path = "/admin/v1/campaigns/{campaignId}/resume", tag = "admin",
    params(("campaignId" = String, Path)), responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn resume_campaign(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    campaign_command(&hub, &ctx, &id, Command::Resume).await
}

/// Cancel a campaign: queued tokens stay on their version; tokens under way finish.
#[utoipa::path(post, path = "/admin/v1/campaigns/{campaignId}/cancel", tag = "admin",
    params(("campaignId" = String, Path)), responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn cancel_campaign(
    State(hub): State<AppState>,
    Extension(ctx): Extension<AdminContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    campaign_command(&hub, &ctx, &id, Command::Cancel).await
}

/// One failed (or skipped) token of a campaign.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportLine {
    pub token_id: String,
    /// `FAILED` or `SKIPPED`.
    pub step: String,
    pub reason: String,
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
    Extension(ctx): Extension<AdminContext>,
    Path(id): Path<String>,
    Query(params): Query<ReportParams>,
) -> Result<axum::response::Response, ApiError> {
    let id = parse_slug("campaignId", &id)?;
    let found = match sees(&hub, &ctx, IssuerObject::Campaign, &id).await? {
        true => campaign::report(&hub, &id).await?,
        false => None,
    };
    let Some(report) = found else {
        return Err(ApiError::not_found(format!("campaign {id} does not exist")));
    };
    let lines: Vec<ReportLine> = report
        .into_iter()
        .map(|l| ReportLine {
            token_id: l.token_id,
            step: l.step.as_str().to_string(),
            reason: l.reason,
        })
        .collect();
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
