//! `tokenhub nodes`: the hub nodes sharing the database (`GET /admin/v1/nodes`): each one's id,
//! whether it is live, its version, start, last heartbeat and what it holds.

use crate::api::{Admin, HubArgs};
use crate::output::Output;

pub async fn run(hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    let a = admin.get(admin.url(&["nodes"])).await?;
    out.list(
        &a.text,
        "/nodes",
        &[
            ("node", "/nodeId"),
            ("live", "/live"),
            ("this one", "/thisNode"),
            ("version", "/version"),
            ("started", "/startedAt"),
            ("last heartbeat", "/lastHeartbeatAt"),
            ("stopped", "/stoppedAt"),
            ("TSP calls held", "/holds/tspCalls"),
            ("updates held", "/holds/notifications"),
        ],
    )
}
