//! Each TSP's health as last stored by a node's watcher (`flows::tsp_health`): one row per TSP.

use super::{query, Row, Store, StoreError, Tx};
use crate::domain::tsp_health::TspHealth;
use std::collections::HashMap;

const COLUMNS: &str =
    "SELECT tsp_id, state, consecutive_failures, consecutive_successes, latency_ms, \
     last_check_ms, last_change_ms, last_hub_check_ms FROM tsp_health";

impl Tx {
    /// Writes `health` as the TSP's stored health, keeping the later of the two times the TSP
    /// last checked the hub (another node may have heard from it since).
    pub async fn put_tsp_health(
        &mut self,
        tsp_id: &str,
        health: &TspHealth,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO tsp_health (tsp_id, state, consecutive_failures, consecutive_successes, \
             latency_ms, last_check_ms, last_change_ms, last_hub_check_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tsp_id) DO UPDATE SET state = excluded.state, \
             consecutive_failures = excluded.consecutive_failures, \
             consecutive_successes = excluded.consecutive_successes, \
             latency_ms = excluded.latency_ms, last_check_ms = excluded.last_check_ms, \
             last_change_ms = excluded.last_change_ms, \
             last_hub_check_ms = CASE WHEN tsp_health.last_hub_check_ms IS NULL \
               OR excluded.last_hub_check_ms > tsp_health.last_hub_check_ms \
               THEN excluded.last_hub_check_ms ELSE tsp_health.last_hub_check_ms END, \
             updated_ms = excluded.updated_ms",
        )
        .bind(tsp_id)
        .bind(health.state)
        .bind(health.consecutive_failures)
        .bind(health.consecutive_successes)
        .bind(health.latency_ms)
        .bind(health.last_check_ms)
        .bind(health.last_change_ms)
        .bind(health.last_hub_check_ms)
        .bind(now)
        .execute(self)
        .await?;
        Ok(())
    }
}

fn health_of(r: &Row) -> Result<TspHealth, StoreError> {
    let count = |name: &str| -> Result<u32, StoreError> {
        let n: i64 = r.get(name)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(TspHealth {
        state: r.get("state")?,
        consecutive_failures: count("consecutive_failures")?,
        consecutive_successes: count("consecutive_successes")?,
        latency_ms: r.get("latency_ms")?,
        last_check_ms: r.get("last_check_ms")?,
        last_change_ms: r.get("last_change_ms")?,
        last_hub_check_ms: r.get("last_hub_check_ms")?,
    })
}

impl Store {
    /// The stored health of `tsp_id`; `None`: never stored.
    pub async fn tsp_health(&self, tsp_id: &str) -> Result<Option<TspHealth>, StoreError> {
        let row = query(&format!("{COLUMNS} WHERE tsp_id = $1"))
            .bind(tsp_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(health_of).transpose()
    }

    /// Every TSP's stored health, by TSP.
    pub async fn tsp_healths(&self) -> Result<HashMap<String, TspHealth>, StoreError> {
        let rows = query(COLUMNS).fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| Ok((r.get("tsp_id")?, health_of(r)?)))
            .collect()
    }
}
