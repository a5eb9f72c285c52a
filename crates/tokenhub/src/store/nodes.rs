//! The hub nodes sharing this database (`nodes`: one row per node id) and what each holds: the
//! outbox calls and token updates whose claim it made (`claimed_by`) while their lease runs.

use super::{query, Row, Store, StoreError, Tx};
use crate::domain::node::{Holdings, NodeRecord};
use std::collections::HashMap;

const COLUMNS: &str = "SELECT node_id, version, started_ms, heartbeat_ms, stopped_ms FROM nodes";

fn record(r: &Row) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        node_id: r.get("node_id")?,
        version: r.get("version")?,
        started_ms: r.get("started_ms")?,
        heartbeat_ms: r.get("heartbeat_ms")?,
        stopped_ms: r.get("stopped_ms")?,
    })
}

impl Tx {
    /// Registers `node_id` as started at `now`, running `version`; returns the row it had (a
    /// previous run of this id, or another process using it).
    pub async fn join_node(
        &mut self,
        node_id: &str,
        version: &str,
        now: i64,
    ) -> Result<Option<NodeRecord>, StoreError> {
        let sql = format!(
            "{COLUMNS} WHERE node_id = $1{}",
            self.dialect().for_update()
        );
        let before = query(&sql).bind(node_id).fetch_optional(&mut *self).await?;
        let before = before.as_ref().map(record).transpose()?;
        query(
            "INSERT INTO nodes (node_id, version, started_ms, heartbeat_ms, stopped_ms) \
             VALUES ($1, $2, $3, $3, NULL) ON CONFLICT (node_id) DO UPDATE SET \
             version = excluded.version, started_ms = excluded.started_ms, \
             heartbeat_ms = excluded.heartbeat_ms, stopped_ms = NULL",
        )
        .bind(node_id)
        .bind(version)
        .bind(now)
        .execute(self)
        .await?;
        Ok(before)
    }

    /// Notes that `node_id` is alive at `now` (registering it again, started now, if its row was
    /// pruned while it was silent).
    pub async fn node_heartbeat(
        &mut self,
        node_id: &str,
        version: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO nodes (node_id, version, started_ms, heartbeat_ms, stopped_ms) \
             VALUES ($1, $2, $3, $3, NULL) ON CONFLICT (node_id) DO UPDATE SET \
             heartbeat_ms = excluded.heartbeat_ms, stopped_ms = NULL",
        )
        .bind(node_id)
        .bind(version)
        .bind(now)
        .execute(self)
        .await?;
        Ok(())
    }

    /// Notes that `node_id` stopped at `now` (a clean shutdown).
    pub async fn leave_node(&mut self, node_id: &str, now: i64) -> Result<(), StoreError> {
        query("UPDATE nodes SET stopped_ms = $2 WHERE node_id = $1")
            .bind(node_id)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Deletes the rows of nodes that stopped, or last beat, before `before`; returns how many.
    pub async fn prune_nodes(&mut self, before: i64) -> Result<u64, StoreError> {
        let done = query("DELETE FROM nodes WHERE COALESCE(stopped_ms, heartbeat_ms) < $1")
            .bind(before)
            .execute(self)
            .await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// Every node's row, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = query(&format!("{COLUMNS} ORDER BY node_id"))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(record).collect()
    }

    /// What each node holds at `now`, by node id (nodes holding nothing are absent).
    pub async fn node_holdings(&self, now: i64) -> Result<HashMap<String, Holdings>, StoreError> {
        let mut held: HashMap<String, Holdings> = HashMap::new();
        for (node, n) in self.claimed_per_node("outbox", now).await? {
            held.entry(node).or_default().tsp_calls = n;
        }
        for (node, n) in self.claimed_per_node("notifications", now).await? {
            held.entry(node).or_default().notifications = n;
        }
        Ok(held)
    }

    /// The pending rows of `table` whose lease runs at `now`, counted by the node that claimed
    /// them. Reads the pending rows only (both queues index them by state).
    async fn claimed_per_node(
        &self,
        table: &str,
        now: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = query(&format!(
            "SELECT claimed_by, COUNT(*) AS n FROM {table} WHERE state = 'PENDING' \
             AND locked_until_ms > $1 AND claimed_by IS NOT NULL GROUP BY claimed_by"
        ))
        .bind(now)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.get("n")?;
                Ok((r.get("claimed_by")?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}
