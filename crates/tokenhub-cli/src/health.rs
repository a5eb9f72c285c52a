//! `tokenhub health`: the hub's own health (`GET /admin/v1/health`): which background worker or
//! the SQLite writer is down. Exits 6 when something is, so a script or a probe can act on it.

use crate::api::{Admin, HubArgs};
use crate::exit::CliError;
use crate::output::Output;

pub async fn run(hub: &HubArgs, out: Output) -> anyhow::Result<()> {
    let admin = Admin::new(hub)?;
    let a = admin.get(admin.url(&["health"])).await?;
    let v = a.json()?;
    out.list(
        &a.text,
        "/workers",
        &[
            ("worker", "/name"),
            ("state", "/state"),
            ("restarts", "/restarts"),
        ],
    )?;
    if out == Output::Table {
        if let Some(w) = v["sqliteWriter"].as_str() {
            println!("SQLite writer: {w}");
        }
    }
    if v["healthy"].as_bool() == Some(true) {
        return Ok(());
    }
    let down: Vec<&str> = v["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["state"] != "RUNNING")
        .filter_map(|w| w["name"].as_str())
        .chain((v["sqliteWriter"] == "DOWN").then_some("the SQLite writer"))
        .collect();
    Err(CliError::Unhealthy(format!("down: {}", down.join(", "))).into())
}
