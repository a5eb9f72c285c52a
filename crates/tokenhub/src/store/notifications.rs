//! Token updates owed to token requestors (the requestor side of the outbox).
//!
//! One row per update, written in the transaction of the change it reports. Rows of one token and
//! requestor are delivered in order: a row is claimed only when no older row of the pair is still
//! pending; and a newer update **supersedes** an older one that is not being sent (every row
//! carries the token's whole state, so the newest is all a requestor needs).

use super::{query, query_scalar, Row, Store, StoreError, Tx};
use crate::domain::notification::{
    Attempt, Filter, NewNotification, Notification, NotificationState, Settle, Settlement,
};

const COLUMNS: &str = "id, webhook_id, requestor_id, token_id, correlation_id, payload, \
    last_update_ms, state, attempts, next_attempt_ms, last_status, last_error, created_ms, delivered_ms";

fn from_row(r: &Row) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: r.get("id")?,
        webhook_id: r.get("webhook_id")?,
        requestor_id: r.get("requestor_id")?,
        token_id: r.get("token_id")?,
        correlation_id: r.get("correlation_id")?,
        payload: r.get("payload")?,
        last_update_ms: r.get("last_update_ms")?,
        state: r.get("state")?,
        attempts: r.get("attempts")?,
        next_attempt_ms: r.get("next_attempt_ms")?,
        last_status: r.get("last_status")?,
        last_error: r.get("last_error")?,
        created_ms: r.get("created_ms")?,
        delivered_ms: r.get("delivered_ms")?,
    })
}

impl Tx {
    /// Queues an update, superseding the pair's older updates that are not being sent. Returns how
    /// many were superseded.
    pub async fn enqueue_notification(
        &mut self,
        n: &NewNotification<'_>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let superseded = query(
            "UPDATE notifications SET state = 'SUPERSEDED', updated_ms = $3 WHERE token_id = $1 \
         AND requestor_id = $2 AND state = 'PENDING' AND locked_until_ms <= $3",
        )
        .bind(n.token_id)
        .bind(n.requestor_id)
        .bind(now)
        .execute(&mut *self)
        .await?
        .rows_affected();
        query(
        "INSERT INTO notifications (webhook_id, requestor_id, token_id, correlation_id, payload, \
         last_update_ms, state, attempts, next_attempt_ms, locked_until_ms, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 0, $7, 0, $7, $7)",
    )
    .bind(n.webhook_id)
    .bind(n.requestor_id)
    .bind(n.token_id)
    .bind(n.correlation_id)
    .bind(n.payload)
    .bind(n.last_update_ms)
    .bind(now)
    .execute(self)
    .await?;
        Ok(superseded)
    }

    /// Claims up to `limit` due updates of one requestor for `lease_ms`, oldest first, at most the
    /// oldest pending one per token.
    ///
    /// The scan follows `notifications_claim` (requestor, state, id) and stops at `limit` rows, so a
    /// claim costs the same however long the backlog; the unary `+` keeps the planner from the
    /// next-due index (which would read every pending row and sort them).
    pub async fn claim_notifications(
        &mut self,
        requestor_id: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let sql = format!(
            "UPDATE notifications SET locked_until_ms = $3, attempts = attempts + 1 WHERE id IN (\
           SELECT n.id FROM notifications n WHERE n.requestor_id = $1 AND n.state = 'PENDING' \
           AND EXISTS (SELECT 1 FROM token_requestors r WHERE r.requestor_id = n.requestor_id \
             AND r.state = 'ENABLED') \
           AND +n.next_attempt_ms <= $2 AND n.locked_until_ms <= $2 AND NOT EXISTS (\
             SELECT 1 FROM notifications p WHERE p.token_id = n.token_id \
             AND p.requestor_id = n.requestor_id AND p.state = 'PENDING' AND p.id < n.id) \
           ORDER BY n.id LIMIT $4{}) \
         RETURNING {COLUMNS}",
            self.dialect().skip_locked()
        );
        let rows = query(&sql)
            .bind(requestor_id)
            .bind(now)
            .bind(now + lease_ms)
            .bind(limit)
            .fetch_all(self)
            .await?;
        let mut claimed = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|n| n.id);
        Ok(claimed)
    }

    /// Records attempts and their outcomes: one statement for the attempts, one per HTTP status for
    /// the deliveries, one per other outcome (retries, dead letters, holds are the exception).
    pub async fn settle_notifications(&mut self, items: &[Settlement]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        self.insert_attempts(items).await?;

        // Deliveries grouped by HTTP status, stamped with the group's last answer (a batch spans a
        // few milliseconds).
        let mut delivered: std::collections::BTreeMap<Option<i64>, (i64, Vec<i64>)> =
            Default::default();
        for it in items {
            match &it.outcome {
                Settle::Delivered => {
                    let group = delivered
                        .entry(it.status)
                        .or_insert((it.ended_ms, Vec::new()));
                    group.0 = group.0.max(it.ended_ms);
                    group.1.push(it.id);
                }
                other => {
                    let (state, next) = match other {
                        Settle::Retry { next_attempt_ms } => {
                            (NotificationState::Pending, Some(*next_attempt_ms))
                        }
                        Settle::Dead => (NotificationState::Dead, None),
                        _ => (NotificationState::Pending, Some(it.ended_ms)),
                    };
                    query(
                    "UPDATE notifications SET state = $2, next_attempt_ms = COALESCE($3, next_attempt_ms), \
                     locked_until_ms = 0, last_status = $4, last_error = $5, updated_ms = $6 WHERE id = $1",
                )
                .bind(it.id)
                .bind(state)
                .bind(next)
                .bind(it.status)
                .bind(it.error.clone())
                .bind(it.ended_ms)
                .execute(&mut *self)
                .await?;
                }
            }
        }
        for (status, (at, ids)) in delivered {
            let list = (0..ids.len())
                .map(|i| format!("${}", i + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
            "UPDATE notifications SET state = 'DELIVERED', locked_until_ms = 0, last_status = $1, \
             last_error = NULL, delivered_ms = $2, updated_ms = $2 WHERE id IN ({list})"
        );
            let mut q = query(&sql).bind(status).bind(at);
            for id in ids {
                q = q.bind(id);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }

    /// Puts a dead update back in line (a new series of attempts, same `webhook-id`). Returns
    /// whether it was dead.
    pub async fn replay_notification(&mut self, id: i64, now: i64) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE notifications SET state = 'PENDING', attempts = 0, next_attempt_ms = $2, \
         locked_until_ms = 0, updated_ms = $2 WHERE id = $1 AND state = 'DEAD'",
        )
        .bind(id)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replays every dead update of a requestor. Returns how many.
    pub async fn replay_dead_notifications(
        &mut self,
        requestor_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let done = query(
            "UPDATE notifications SET state = 'PENDING', attempts = 0, next_attempt_ms = $2, \
         locked_until_ms = 0, updated_ms = $2 WHERE requestor_id = $1 AND state = 'DEAD'",
        )
        .bind(requestor_id)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected())
    }
}

impl Tx {
    /// One statement for every attempt of the batch.
    async fn insert_attempts(&mut self, items: &[Settlement]) -> Result<(), StoreError> {
        let mut sql = String::from(
        "INSERT INTO notification_attempts (notification_id, at_ms, duration_ms, status, error) VALUES ",
    );
        for i in 0..items.len() {
            let p = i * 5;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            ));
        }
        let mut insert = query(&sql);
        for it in items {
            insert = insert
                .bind(it.id)
                .bind(it.started_ms)
                .bind((it.ended_ms - it.started_ms).max(0))
                .bind(it.status)
                .bind(it.error.clone());
        }
        insert.execute(&mut *self).await?;
        Ok(())
    }
}

impl Store {
    pub async fn notifications(&self, f: &Filter) -> Result<Vec<Notification>, StoreError> {
        let rows = query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE ($1 IS NULL OR requestor_id = $1) \
             AND ($2 IS NULL OR token_id = $2) AND ($3 IS NULL OR state = $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(&f.requestor_id)
        .bind(&f.token_id)
        .bind(f.state)
        .bind(f.limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn notification(&self, id: i64) -> Result<Option<Notification>, StoreError> {
        let row = query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn notification_attempts(&self, id: i64) -> Result<Vec<Attempt>, StoreError> {
        let rows = query(
            "SELECT at_ms, duration_ms, status, error FROM notification_attempts \
             WHERE notification_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    at_ms: r.get("at_ms")?,
                    duration_ms: r.get("duration_ms")?,
                    status: r.get("status")?,
                    error: r.get("error")?,
                })
            })
            .collect()
    }

    /// Updates by state, for one requestor or all.
    pub async fn notification_counts(
        &self,
        requestor_id: Option<&str>,
    ) -> Result<Vec<(NotificationState, i64)>, StoreError> {
        let rows = query(
            "SELECT state, COUNT(*) AS n FROM notifications WHERE ($1 IS NULL OR requestor_id = $1) \
             GROUP BY state ORDER BY state",
        )
        .bind(requestor_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.get("state")?, r.get("n")?)))
            .collect()
    }

    /// Attempts made in all (for the demo and benchmarks).
    pub async fn notification_attempt_count(&self) -> Result<i64, StoreError> {
        query_scalar("SELECT COUNT(*) FROM notification_attempts")
            .fetch_one(self.reader())
            .await
    }

    /// When the next pending update of an enabled requestor that nobody is sending falls due,
    /// if any.
    pub async fn next_notification_due(&self, now: i64) -> Result<Option<i64>, StoreError> {
        query_scalar(
            "SELECT MIN(n.next_attempt_ms) FROM notifications n JOIN token_requestors r \
             ON r.requestor_id = n.requestor_id WHERE n.state = 'PENDING' AND r.state = 'ENABLED' \
             AND n.locked_until_ms <= $1",
        )
        .bind(now)
        .fetch_one(self.reader())
        .await
    }
}
