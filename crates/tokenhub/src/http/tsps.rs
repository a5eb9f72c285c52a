//! Admin API: TSP connections (`/admin/v1/tsps`).

use super::api_error::{ApiErrorBody, JsonBody};
use super::{ApiError, AppState};
use crate::domain::catalog::Tsp;
use crate::domain::ids::parse_slug;
use crate::flows::catalog;
use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/tsps/{tsp_id}", put(put_tsp))
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
    /// The TSP is known to send parameters the TSP API does not define: `/data` and `/newData`
    /// ignore them instead of refusing the call with `112`. Default `false`.
    #[serde(default)]
    pub accepts_extra_parameters: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TspView {
    pub tsp_id: String,
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<i64>,
    pub accepts_extra_parameters: bool,
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
    if url.scheme() == "http" && !hub.config.outbound.allow_plain_http {
        return Err(ApiError::bad_request(
            "baseUrl must be https:// (http:// is accepted only with allow_plain_http_endpoints, for development)",
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
        accepts_extra_parameters: body.accepts_extra_parameters,
    };
    catalog::put_tsp(&hub, tsp.clone()).await?;
    Ok(Json(TspView {
        tsp_id: tsp.tsp_id,
        base_url: tsp.base_url,
        rate_limit_per_second: tsp.rate_limit,
        accepts_extra_parameters: tsp.accepts_extra_parameters,
    }))
}
