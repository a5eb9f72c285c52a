//! Admin API: the hub's health (`GET /admin/v1/health`): which background worker or the SQLite
//! writer is down, for the operator (the TSP's health check only says `503`).

use super::api_error::ApiErrorBody;
use super::AppState;
use crate::flows::tokens;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(get_health))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    /// Nothing is down.
    pub healthy: bool,
    pub workers: Vec<WorkerView>,
    /// `RUNNING` or `DOWN` on SQLite (its one writer thread); absent on PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_writer: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    /// `outbox`, `notifier`, `sweeper`, `shredder`, `tsp-health`, `heartbeat`, `campaign-runner`.
    pub name: &'static str,
    /// `RUNNING`, or `DOWN` between a panic and its restart.
    pub state: &'static str,
    /// Times it stopped and was started again since the hub started.
    pub restarts: u64,
}

fn state(running: bool) -> &'static str {
    if running {
        "RUNNING"
    } else {
        "DOWN"
    }
}

#[utoipa::path(get, path = "/admin/v1/health", tag = "admin",
    responses((status = 200, body = HealthView), (status = 401, body = ApiErrorBody)),
    security(("admin" = [])))]
pub async fn get_health(State(hub): State<AppState>) -> Json<HealthView> {
    let down = tokens::down(&hub);
    let (workers, sqlite) = tokens::workers(&hub);
    Json(HealthView {
        healthy: down.is_empty(),
        workers: workers
            .into_iter()
            .map(|(name, w)| WorkerView {
                name,
                state: state(w.running),
                restarts: w.restarts,
            })
            .collect(),
        sqlite_writer: sqlite.then(|| state(!down.sqlite_writer)),
    })
}
