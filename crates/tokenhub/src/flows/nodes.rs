//! Membership: this node joins the nodes sharing the database at start, beats while it runs and
//! leaves on a clean shutdown; the admin API lists every node with whether it is live and what
//! it holds. Rows of nodes gone longer than their retention are pruned.

use crate::domain::node::{Holdings, NodeRecord};
use crate::error::Error;
use crate::hub::Hub;

/// The hub's version, as each node's row records it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers this node as started now. An id still live says that this node restarted within
/// its lease or that another process runs with the same id: the log says so.
pub async fn join(hub: &Hub) -> Result<(), Error> {
    let now = hub.now_ms();
    let id = hub.config.node.id.clone();
    let before = {
        let id = id.clone();
        hub.store
            .transact(move |tx| {
                Box::pin(async move { Ok::<_, Error>(tx.join_node(&id, VERSION, now).await?) })
            })
            .await?
    };
    let lease = hub.config.node.claim_lease_ms();
    if before.is_some_and(|b| b.live(now, lease)) {
        tracing::warn!(
            node_id = %id,
            "this node id was live until now: a previous run within its lease, or another process with the same id"
        );
    }
    tracing::info!(node_id = %id, "node joined");
    Ok(())
}

/// Notes that this node is alive now.
pub async fn heartbeat(hub: &Hub) -> Result<(), Error> {
    let now = hub.now_ms();
    let id = hub.config.node.id.clone();
    hub.store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.node_heartbeat(&id, VERSION, now).await?) })
        })
        .await
}

/// Notes that this node stopped (its workers have ended: it holds nothing more).
pub async fn leave(hub: &Hub) -> Result<(), Error> {
    let now = hub.now_ms();
    let id = hub.config.node.id.clone();
    hub.store
        .transact(move |tx| Box::pin(async move { Ok::<_, Error>(tx.leave_node(&id, now).await?) }))
        .await
}

/// Deletes the rows of nodes stopped or silent for longer than `retention.nodes`.
pub async fn prune(hub: &Hub) -> Result<u64, Error> {
    let retention = i64::try_from(hub.config.retention.nodes.as_millis()).unwrap_or(i64::MAX);
    let before = hub.now_ms().saturating_sub(retention);
    hub.store
        .transact(move |tx| Box::pin(async move { Ok::<_, Error>(tx.prune_nodes(before).await?) }))
        .await
}

/// A node as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node: NodeRecord,
    pub live: bool,
    /// The node answering.
    pub this_node: bool,
    pub holds: Holdings,
}

/// Every node, by id, with its liveness and holdings now.
pub async fn list(hub: &Hub) -> Result<Vec<NodeStatus>, Error> {
    let now = hub.now_ms();
    let lease = hub.config.node.claim_lease_ms();
    let nodes = hub.store.nodes().await?;
    let mut held = hub.store.node_holdings(now).await?;
    Ok(nodes
        .into_iter()
        .map(|node| NodeStatus {
            live: node.live(now, lease),
            this_node: node.node_id == hub.config.node.id,
            holds: held.remove(&node.node_id).unwrap_or_default(),
            node,
        })
        .collect())
}
