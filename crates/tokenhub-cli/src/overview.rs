//! `tokenhub overview`: the hub at a glance (`GET /admin/v1/overview`): each TSP's outbox, the
//! requestors' backlogs, pending personalizations, live campaigns, the store's load.

use crate::api::{Admin, HubArgs};
use crate::output::Output;

pub async fn run(hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    let a = admin.get(admin.url(&["overview"])).await?;
    if out == Output::Json {
        out.done(&a.text, "");
        return Ok(());
    }
    out.list(
        &a.text,
        "/tsps",
        &[
            ("tsp", "/tspId"),
            ("baseUrl", "/baseUrl"),
            ("outbox pending", "/outbox/pending"),
            ("oldest (s)", "/outbox/oldestPendingAgeSeconds"),
            ("dead calls", "/outbox/dead"),
        ],
    )?;
    out.object(
        &a.text,
        &[
            ("at", "/at"),
            ("requestors", "/notifications/requestors"),
            ("endpoints disabled", "/notifications/endpointsDisabled"),
            ("notifications pending", "/notifications/pending"),
            (
                "notifications oldest (s)",
                "/notifications/oldestPendingAgeSeconds",
            ),
            ("dead letters", "/notifications/dead"),
            ("personalizations pending", "/personalizations/pending"),
            (
                "personalizations oldest (s)",
                "/personalizations/oldestPendingAgeSeconds",
            ),
            ("personalizations dead", "/personalizations/dead"),
            ("writer queue", "/store/writerQueueDepth"),
            ("pool connections", "/store/poolConnections"),
        ],
    )?;
    out.list(
        &a.text,
        "/campaigns",
        &[
            ("campaign", "/campaignId"),
            ("state", "/state"),
            ("done", "/steps/DONE"),
            ("failed", "/steps/FAILED"),
            ("queued", "/steps/QUEUED"),
        ],
    )
}
