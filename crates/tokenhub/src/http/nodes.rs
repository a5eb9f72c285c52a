//! Admin API: the hub nodes sharing the database (`GET /admin/v1/nodes`): each one's start, last
//! heartbeat, whether it is live, its version and what it holds now. For the roles that read
//! global objects (admin, read-only).

use super::api_error::ApiErrorBody;
use super::{ApiError, AppState};
use crate::clock::iso8601;
use crate::flows::nodes::{self, NodeStatus};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/nodes", get(list_nodes))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodesView {
    /// How long a claim holds (ms): a node whose last heartbeat is older is not live, and the
    /// rows it holds are taken over by the others when their lease runs out.
    pub claim_lease_ms: i64,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// `--node-id`, or the host name and a random suffix.
    pub node_id: String,
    /// The hub's version it runs.
    pub version: String,
    pub started_at: String,
    pub last_heartbeat_at: String,
    /// When it stopped on a clean shutdown; absent while it runs or after a crash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// Running, and heard from within the claim lease.
    pub live: bool,
    /// The node that answers this request.
    pub this_node: bool,
    pub holds: HoldingsView,
}

/// Rows the node claimed whose lease still runs, by kind of work.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldingsView {
    /// Calls owed to TSPs (the outbox).
    pub tsp_calls: u64,
    /// Token updates owed to token requestors.
    pub notifications: u64,
}

fn view(s: NodeStatus) -> NodeView {
    NodeView {
        node_id: s.node.node_id,
        version: s.node.version,
        started_at: iso8601(s.node.started_ms),
        last_heartbeat_at: iso8601(s.node.heartbeat_ms),
        stopped_at: s.node.stopped_ms.map(iso8601),
        live: s.live,
        this_node: s.this_node,
        holds: HoldingsView {
            tsp_calls: s.holds.tsp_calls,
            notifications: s.holds.notifications,
        },
    }
}

/// The hub nodes sharing the database (those gone longer than `retention.nodes` are pruned).
#[utoipa::path(get, path = "/admin/v1/nodes", tag = "admin",
    responses((status = 200, body = NodesView), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody)),
    security(("admin" = [])))]
pub async fn list_nodes(State(hub): State<AppState>) -> Result<Json<NodesView>, ApiError> {
    let list = nodes::list(&hub).await?;
    Ok(Json(NodesView {
        claim_lease_ms: hub.config.node.claim_lease_ms(),
        nodes: list.into_iter().map(view).collect(),
    }))
}
