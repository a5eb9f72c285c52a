//! What the metrics' gauges read: backlogs per TSP and per requestor, pending personalizations,
//! live campaigns' counts per step, and the store's own load. Each is one grouped read over rows
//! that are still in flight (pending or dead, found through the `state` indexes), never a scan of
//! what is done.

use super::sql::query;
use super::{Reader, Row, Store, StoreError, Writer};
use crate::domain::campaign::{CampaignState, Step};

/// What is owed to one TSP or requestor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// The TSP's or requestor's id.
    pub owner: String,
    /// Not yet made or delivered.
    pub pending: i64,
    /// When the oldest pending one was queued (ms).
    pub oldest_ms: Option<i64>,
    /// Given up.
    pub dead: i64,
}

/// A campaign's counts per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignCounts {
    pub campaign_id: String,
    pub state: CampaignState,
    pub steps: Vec<(Step, i64)>,
}

/// The store's load right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLoad {
    /// SQLite: transactions waiting for the writer, and the queue's capacity.
    pub writer_queue: Option<(usize, usize)>,
    /// Read pool connections: open, idle.
    pub pool: (usize, usize),
}

/// Pending and dead updates per requestor: the pending rows through `notifications_pending`, the
/// dead ones through `notifications_settled_by_requestor`, the requestors first (one index range
/// each, never a pass over the delivered rows).
pub(super) const NOTIFICATION_BACKLOGS: &str =
    "SELECT requestor_id AS owner, state, COUNT(*) AS n, MIN(created_ms) AS oldest \
     FROM notifications WHERE state = 'PENDING' GROUP BY requestor_id, state \
     UNION ALL \
     SELECT r.requestor_id AS owner, n.state, COUNT(*) AS n, CAST(NULL AS BIGINT) AS oldest \
     FROM token_requestors r CROSS JOIN notifications n \
     WHERE n.requestor_id = r.requestor_id AND n.state = 'DEAD' AND n.state <> 'PENDING' \
     GROUP BY r.requestor_id, n.state";

impl Store {
    /// Every registered TSP's outbox backlog (zero when nothing is owed).
    pub async fn outbox_backlogs(&self) -> Result<Vec<Backlog>, StoreError> {
        let owners = self.ids("SELECT tsp_id AS id FROM tsps").await?;
        let rows = self
            .grouped("outbox", "tsp_id", "state IN ('PENDING', 'DEAD')")
            .await?;
        Ok(merge(owners, rows))
    }

    /// Every requestor's notification backlog, and whether its endpoint is disabled.
    pub async fn notification_backlogs(&self) -> Result<Vec<(Backlog, bool)>, StoreError> {
        let disabled = query("SELECT requestor_id, state FROM token_requestors")
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(|r| Ok((r.get::<String>("requestor_id")?, r.get::<String>("state")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows = query(NOTIFICATION_BACKLOGS)
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(grouped_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let owners = disabled.iter().map(|(id, _)| id.clone()).collect();
        Ok(merge(owners, rows)
            .into_iter()
            .zip(disabled)
            .map(|(b, (_, state))| (b, state == "DISABLED"))
            .collect())
    }

    /// Personalizations not yet settled, and when the oldest was queued (ms).
    pub async fn pending_personalizations(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = query(
            "SELECT COUNT(*) AS n, MIN(created_ms) AS oldest FROM personalizations \
             WHERE state = 'PENDING'",
        )
        .fetch_one(self.reader())
        .await?;
        Ok((row.get("n")?, row.get("oldest")?))
    }

    /// Counts per step of the campaigns that run or are paused, or finished at or after
    /// `finished_since_ms`.
    pub async fn live_campaign_counts(
        &self,
        finished_since_ms: i64,
    ) -> Result<Vec<CampaignCounts>, StoreError> {
        let rows = query(
            "SELECT c.campaign_id, c.state, s.step, CAST(SUM(s.n) AS BIGINT) AS n \
             FROM campaigns c JOIN ( \
                 SELECT campaign_id, step, n FROM campaign_step_counts \
                 UNION ALL \
                 SELECT campaign_id, step, delta FROM campaign_step_changes \
             ) s ON s.campaign_id = c.campaign_id \
             WHERE c.state IN ('RUNNING', 'PAUSED') OR c.finished_ms >= $1 \
             GROUP BY c.campaign_id, c.state, s.step ORDER BY c.campaign_id",
        )
        .bind(finished_since_ms)
        .fetch_all(self.reader())
        .await?;
        let mut out: Vec<CampaignCounts> = Vec::new();
        for r in &rows {
            let id: String = r.get("campaign_id")?;
            let step = (r.get("step")?, r.get("n")?);
            match out.last_mut() {
                Some(c) if c.campaign_id == id => c.steps.push(step),
                _ => out.push(CampaignCounts {
                    campaign_id: id,
                    state: r.get("state")?,
                    steps: vec![step],
                }),
            }
        }
        Ok(out)
    }

    /// The writer's queue and the read pool, read without a query.
    pub fn load(&self) -> StoreLoad {
        let writer_queue = match &self.writer {
            Writer::Thread(queue, _) => Some((
                queue.max_capacity() - queue.capacity(),
                queue.max_capacity(),
            )),
            Writer::Pool(_) => None,
        };
        let pool = match &*self.read {
            Reader::Pool(p) => (p.size() as usize, p.num_idle()),
            Reader::Lite(p) => p.connections(),
        };
        StoreLoad { writer_queue, pool }
    }

    async fn ids(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        query(sql)
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(|r| r.get("id"))
            .collect()
    }

    /// Pending and dead rows of `table` per `owner` column, with the oldest pending's time.
    async fn grouped(
        &self,
        table: &str,
        owner: &str,
        filter: &str,
    ) -> Result<Vec<(String, String, i64, Option<i64>)>, StoreError> {
        query(&format!(
            "SELECT {owner} AS owner, state, COUNT(*) AS n, MIN(created_ms) AS oldest \
             FROM {table} WHERE {filter} GROUP BY {owner}, state"
        ))
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(grouped_row)
        .collect()
    }
}

/// Owner, state, count and oldest pending time of one group.
fn grouped_row(r: &Row) -> Result<(String, String, i64, Option<i64>), StoreError> {
    Ok((
        r.get("owner")?,
        r.get("state")?,
        r.get("n")?,
        r.get("oldest")?,
    ))
}

/// One backlog per owner, in the owners' order, from the grouped rows.
fn merge(owners: Vec<String>, rows: Vec<(String, String, i64, Option<i64>)>) -> Vec<Backlog> {
    owners
        .into_iter()
        .map(|owner| {
            let mut b = Backlog {
                owner,
                ..Backlog::default()
            };
            for (o, state, n, oldest) in &rows {
                if *o != b.owner {
                    continue;
                }
                if state == "PENDING" {
                    b.pending = *n;
                    b.oldest_ms = *oldest;
                } else {
                    b.dead = *n;
                }
            }
            b
        })
        .collect()
}
