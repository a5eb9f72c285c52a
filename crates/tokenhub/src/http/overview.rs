//! Admin API reads behind the operator console's pages that no resource's own read gives:
//! `GET /overview` (the hub at a glance), and the lists it pages through, `GET /campaigns` and
//! `GET /token-requestors`. Global reads: an `admin` or `read-only` key (an issuer-admin's are
//! refused, since they span every issuer). Every read is bounded (`flows::overview`).

use super::api_error::ApiErrorBody;
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::domain::campaign::Step;
use crate::flows::overview::{self, Backlog, CounterSample};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/overview", get(get_overview))
        .route("/campaigns", get(list_campaigns))
        .route("/token-requestors", get(list_requestors))
}

/// What is owed to a TSP or a requestor.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BacklogView {
    /// Not yet made (TSP calls) or delivered (notifications).
    pub pending: i64,
    /// Age of the oldest pending one, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending_age_seconds: Option<i64>,
    /// Given up: dead calls, or the dead-letter list.
    pub dead: i64,
}

fn backlog(b: &Backlog, now_ms: i64) -> BacklogView {
    BacklogView {
        pending: b.pending,
        oldest_pending_age_seconds: b.oldest_ms.map(|t| (now_ms - t).max(0) / 1000),
        dead: b.dead,
    }
}

/// One counter series: its labels, and its count since the hub started (the console turns two
/// readings into a rate).
#[derive(Debug, Serialize, ToSchema)]
pub struct CountView {
    #[serde(flatten)]
    pub labels: BTreeMap<String, String>,
    pub count: f64,
}

fn counts(samples: Vec<CounterSample>, drop: &str) -> Vec<CountView> {
    samples
        .into_iter()
        .map(|mut s| {
            s.labels.remove(drop);
            CountView {
                labels: s.labels,
                count: s.value,
            }
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TspOverviewView {
    pub tsp_id: String,
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<i64>,
    /// What the outbox owes the TSP.
    pub outbox: BacklogView,
    /// The hub's calls to the TSP since start, by `call` and `outcome` (`done`, `unavailable`,
    /// `refused`, `protocol`).
    pub calls: Vec<CountView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestorBacklogView {
    pub requestor_id: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    #[serde(flatten)]
    pub backlog: BacklogView,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsOverviewView {
    pub requestors: usize,
    pub endpoints_disabled: usize,
    #[serde(flatten)]
    pub backlog: BacklogView,
    /// The requestors with the most waiting (disabled endpoints first), at most 20.
    pub busiest: Vec<RequestorBacklogView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveCampaignView {
    pub campaign_id: String,
    pub state: String,
    pub steps: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreLoadView {
    /// SQLite: transactions waiting for the writer, and the queue's capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_queue_depth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_queue_capacity: Option<usize>,
    pub pool_connections: usize,
    pub pool_idle_connections: usize,
}

/// The hub at a glance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverviewView {
    pub at: String,
    pub tsps: Vec<TspOverviewView>,
    /// TSP API requests answered since start, by calling `tsp` (`(unbound)`: the development
    /// port bound to no TSP), `operation` and `responseCode` (`ok` for 204).
    pub tsp_api: Vec<CountView>,
    pub notifications: NotificationsOverviewView,
    pub personalizations: BacklogView,
    /// Running and paused campaigns, and those finished in the last hour.
    pub campaigns: Vec<LiveCampaignView>,
    pub store: StoreLoadView,
}

/// The hub at a glance: each TSP's outbox and the hub's calls to it, the TSP API's answers by
/// code, the requestors' backlogs, pending personalizations, live campaigns, the store's load.
#[utoipa::path(get, path = "/admin/v1/overview", tag = "admin",
    responses((status = 200, body = OverviewView), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn get_overview(State(hub): State<AppState>) -> Result<Json<OverviewView>, ApiError> {
    let o = overview::overview(&hub).await?;
    let now = o.now_ms;
    let r = &o.requestors;
    Ok(Json(OverviewView {
        at: iso8601(now),
        tsps: o
            .tsps
            .into_iter()
            .map(|t| TspOverviewView {
                outbox: backlog(&t.outbox, now),
                calls: counts(t.calls, "tsp"),
                tsp_id: t.tsp_id,
                base_url: t.base_url,
                rate_limit_per_second: t.rate_limit,
            })
            .collect(),
        tsp_api: counts(o.tsp_api, "")
            .into_iter()
            .map(|mut c| {
                if let Some(code) = c.labels.remove("response_code") {
                    c.labels.insert("responseCode".into(), code);
                }
                c
            })
            .collect(),
        notifications: NotificationsOverviewView {
            requestors: r.count,
            endpoints_disabled: r.disabled,
            backlog: backlog(
                &Backlog {
                    owner: String::new(),
                    pending: r.pending,
                    oldest_ms: r.oldest_pending_ms,
                    dead: r.dead,
                },
                now,
            ),
            busiest: r
                .busiest
                .iter()
                .map(|(b, disabled)| RequestorBacklogView {
                    requestor_id: b.owner.clone(),
                    state: if *disabled { "DISABLED" } else { "ENABLED" }.into(),
                    backlog: backlog(b, now),
                })
                .collect(),
        },
        personalizations: backlog(
            &Backlog {
                owner: String::new(),
                pending: o.personalizations.0,
                oldest_ms: o.personalizations.1,
                dead: 0,
            },
            now,
        ),
        campaigns: o
            .campaigns
            .into_iter()
            .map(|c| LiveCampaignView {
                campaign_id: c.campaign_id,
                state: c.state.as_str().to_string(),
                steps: steps(c.steps),
            })
            .collect(),
        store: StoreLoadView {
            writer_queue_depth: o.store.writer_queue.map(|q| q.0),
            writer_queue_capacity: o.store.writer_queue.map(|q| q.1),
            pool_connections: o.store.pool.0,
            pool_idle_connections: o.store.pool.1,
        },
    }))
}

/// Every step named, zero where no token is.
fn steps(counts: Vec<(Step, i64)>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = Step::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for (s, n) in counts {
        *out.entry(s.as_str().to_string()).or_default() += n;
    }
    out
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageQuery {
    /// At most this many (default 50, at most 200).
    pub limit: Option<i64>,
    /// Where the page starts: the `next` of the previous page.
    pub cursor: Option<String>,
}

pub(super) fn limit(q: &PageQuery) -> i64 {
    q.limit.unwrap_or(50).clamp(1, 200)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignSummaryView {
    pub campaign_id: String,
    pub issuer_id: String,
    pub product_id: String,
    pub profile_version: String,
    /// `RUNNING`, `PAUSED`, `COMPLETED` or `CANCELLED`.
    pub state: String,
    pub total: i64,
    /// Tokens per step.
    pub steps: BTreeMap<String, i64>,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPage {
    pub items: Vec<CampaignSummaryView>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Campaigns, newest first, a page at a time.
#[utoipa::path(get, path = "/admin/v1/campaigns", tag = "admin", params(PageQuery),
    responses((status = 200, body = CampaignPage), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_campaigns(
    State(hub): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<CampaignPage>, ApiError> {
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id)))
                .ok_or_else(|| ApiError::bad_request("cursor is not one this API gave"))?,
        ),
    };
    let (page, next) = overview::campaigns(&hub, limit(&q), before).await?;
    Ok(Json(CampaignPage {
        items: page
            .into_iter()
            .map(|(c, s)| CampaignSummaryView {
                campaign_id: c.campaign_id,
                issuer_id: c.issuer_id,
                product_id: c.product_id,
                profile_version: c.profile_version,
                state: c.state.as_str().to_string(),
                total: c.total,
                steps: steps(s),
                started_at: iso8601(c.created_ms),
                finished_at: c.finished_ms.map(iso8601),
            })
            .collect(),
        next: next.map(|(ms, id)| format!("{ms}.{id}")),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestorSummaryView {
    pub requestor_id: String,
    pub merchant_id: String,
    pub base_url: String,
    /// `ENABLED`, or `DISABLED` (the endpoint answered 410 Gone).
    pub state: String,
    #[serde(flatten)]
    pub backlog: BacklogView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestorPage {
    pub items: Vec<RequestorSummaryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Token requestors by id, a page at a time, with their backlogs (never a secret).
#[utoipa::path(get, path = "/admin/v1/token-requestors", tag = "token requestors", params(PageQuery),
    responses((status = 200, body = RequestorPage), (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
async fn list_requestors(
    State(hub): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<RequestorPage>, ApiError> {
    let now = hub.now_ms();
    let (page, next) = overview::requestors(&hub, limit(&q), q.cursor.as_deref()).await?;
    Ok(Json(RequestorPage {
        items: page
            .into_iter()
            .map(|(r, b)| RequestorSummaryView {
                backlog: backlog(&b, now),
                requestor_id: r.requestor_id,
                merchant_id: r.merchant_id,
                base_url: r.base_url,
                state: r.state.as_str().to_string(),
            })
            .collect(),
        next,
    }))
}
