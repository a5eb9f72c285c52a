//! Token updates owed to token requestors (the requestor side of the outbox).
//!
//! One row per update, written in the transaction of the change it reports. Rows of one token and
//! requestor are delivered in order: a row is claimed only when no older row of the pair is still
//! pending; and a newer update **supersedes** an older one that is not being sent (every row
//! carries the token's whole state, so the newest is all a requestor needs).

use super::{query, query_scalar, Dialect, Row, Store, StoreError, Tx};
use crate::domain::notification::{
    Attempt, Filter, NewNotification, Notification, NotificationState, Settle, Settlement,
};

const COLUMNS: &str = "id, webhook_id, requestor_id, token_id, correlation_id, payload, \
    last_update_ms, state, attempts, next_attempt_ms, last_status, last_error, created_ms, delivered_ms, claim_version";

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
        claim_version: r.get("claim_version")?,
    })
}

impl Tx {
    /// Queues an update, superseding the pair's older updates that are not being sent. Returns how
    /// many were superseded. (`|| ''`: the look-up goes by token, see `claim_notifications`.)
    pub async fn enqueue_notification(
        &mut self,
        n: &NewNotification<'_>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let superseded = query(
            "UPDATE notifications SET state = 'SUPERSEDED', updated_ms = $3 WHERE token_id = $1 \
         AND requestor_id || '' = $2 AND state = 'PENDING' AND locked_until_ms <= $3",
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

    /// Claims up to `limit` due updates of one requestor for node `by` for `lease_ms`, earliest due
    /// first, at most the oldest pending one per token.
    ///
    /// The scan follows `notifications_pending` (pending rows by requestor and due time) and stops
    /// at `limit` rows or the first row not yet due. A claimed row's due time moves to the end of
    /// its lease (when it is tried again if its outcome is never recorded), so the rows being sent
    /// sort past "now" and a claim reads only the rows it takes. "The oldest pending one of its
    /// token" is a per-row look-up (`notifications_pending_by_token`'s first entry), never an
    /// anti-join; the `|| ''` keeps the planner from looking a token up in `notifications_pending`
    /// (by requestor: every pending row of the requestor), which looks as cheap when the table's
    /// statistics were taken with few rows pending.
    pub async fn claim_notifications(
        &mut self,
        requestor_id: &str,
        by: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let limit = limit.min(self.free_slots(requestor_id, now).await?);
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE notifications SET locked_until_ms = $3, next_attempt_ms = $3, \
             claimed_by = $5, attempts = attempts + 1, claim_version = claim_version + 1 \
             WHERE id IN (\
               SELECT n.id FROM notifications n WHERE n.requestor_id = $1 AND n.state = 'PENDING' \
               AND n.next_attempt_ms <= $2 AND n.locked_until_ms <= $2 \
               AND EXISTS (SELECT 1 FROM token_requestors r WHERE r.requestor_id = n.requestor_id \
                 AND r.state = 'ENABLED') \
               AND n.id = (SELECT MIN(p.id) FROM notifications p WHERE p.token_id = n.token_id \
                 AND p.requestor_id || '' = n.requestor_id AND p.state = 'PENDING') \
               ORDER BY n.next_attempt_ms, n.id LIMIT $4{}) \
             RETURNING {COLUMNS}",
            self.dialect().skip_locked()
        );
        let rows = query(&sql)
            .bind(requestor_id)
            .bind(now)
            .bind(now + lease_ms)
            .bind(limit)
            .bind(by)
            .fetch_all(self)
            .await?;
        let mut claimed = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|n| n.id);
        Ok(claimed)
    }

    /// How many more updates the requestor may be sent now, on every node together: its
    /// `maxInFlight` less its updates in flight (claimed, lease running, whichever node holds
    /// them). The requestor's row stays locked until the claim commits, so claims of one
    /// requestor are counted one after the other; one that another node holds is skipped (zero
    /// now, its updates go with that node's claim) rather than waited for, so a claim never
    /// waits for a lock.
    async fn free_slots(&mut self, requestor_id: &str, now: i64) -> Result<i64, StoreError> {
        let max = query_scalar::<i64>(&format!(
            "SELECT max_in_flight FROM token_requestors WHERE requestor_id = $1 \
             AND state = 'ENABLED'{}",
            self.dialect().skip_locked()
        ))
        .bind(requestor_id)
        .fetch_optional(&mut *self)
        .await?;
        let Some(max) = max else {
            return Ok(0);
        };
        // A statement of its own, after the lock: its snapshot then holds every claim committed
        // by the lock's previous holders (one statement would count with a snapshot taken before
        // it got the lock). `locked_until_ms > 0` lets the planner use `notifications_in_flight`.
        let busy = query_scalar::<i64>(
            "SELECT COUNT(*) FROM notifications WHERE requestor_id = $1 AND state = 'PENDING' \
             AND locked_until_ms > 0 AND locked_until_ms > $2",
        )
        .bind(requestor_id)
        .bind(now)
        .fetch_one(&mut *self)
        .await?;
        Ok(max - busy)
    }

    /// Records outcomes and their attempts: one statement for the outcomes, one for the attempts,
    /// whatever the batch's size (the batch travels as one JSON array, so the statements' text
    /// never changes and stays prepared). An outcome counts only while its row is pending under
    /// the settlement's claim version; the others (claimed again after their lease ran out, or
    /// superseded) change nothing, and are returned as (id, claim version).
    pub async fn settle_notifications(
        &mut self,
        items: &[Settlement],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let batch = serde_json::Value::Array(items.iter().map(outcome_json).collect()).to_string();
        let dialect = self.dialect();
        let outcomes = json_rows(
            dialect,
            &[
                ("id", "BIGINT"),
                ("claim_version", "BIGINT"),
                ("state", "TEXT"),
                ("next_attempt_ms", "BIGINT"),
                ("status", "BIGINT"),
                ("error", "TEXT"),
                ("ended_ms", "BIGINT"),
            ],
        );
        let rows = query(&format!(
            "UPDATE notifications SET state = x.state, \
             next_attempt_ms = COALESCE(x.next_attempt_ms, notifications.next_attempt_ms), \
             locked_until_ms = 0, last_status = x.status, last_error = x.error, \
             delivered_ms = CASE WHEN x.state = 'DELIVERED' THEN x.ended_ms \
               ELSE notifications.delivered_ms END, \
             updated_ms = x.ended_ms FROM {outcomes} WHERE notifications.id = x.id \
             AND notifications.claim_version = x.claim_version \
             AND notifications.state = 'PENDING' \
             RETURNING notifications.id AS id, notifications.claim_version AS claim_version"
        ))
        .bind(batch.as_str())
        .fetch_all(&mut *self)
        .await?;
        let settled = rows
            .iter()
            .map(|r| Ok((r.get("id")?, r.get("claim_version")?)))
            .collect::<Result<std::collections::HashSet<(i64, i64)>, StoreError>>()?;
        let (kept, lost): (Vec<&Settlement>, Vec<&Settlement>) = items
            .iter()
            .partition(|it| settled.contains(&(it.id, it.claim_version)));
        // Usually every outcome counted: the batch already bound is the attempts' batch.
        let kept_batch = if lost.is_empty() {
            batch
        } else if kept.is_empty() {
            return Ok(lost.iter().map(|it| (it.id, it.claim_version)).collect());
        } else {
            serde_json::Value::Array(kept.iter().map(|it| outcome_json(it)).collect()).to_string()
        };
        self.record_attempts(&kept_batch).await?;
        Ok(lost.iter().map(|it| (it.id, it.claim_version)).collect())
    }

    /// Records the attempts of the outcomes in `batch` (as [`outcome_json`] writes them).
    async fn record_attempts(&mut self, batch: &str) -> Result<(), StoreError> {
        let attempts = json_rows(
            self.dialect(),
            &[
                ("id", "BIGINT"),
                ("started_ms", "BIGINT"),
                ("duration_ms", "BIGINT"),
                ("status", "BIGINT"),
                ("error", "TEXT"),
            ],
        );
        query(&format!(
            "INSERT INTO notification_attempts (notification_id, at_ms, duration_ms, status, error) \
             SELECT x.id, x.started_ms, x.duration_ms, x.status, x.error FROM {attempts}"
        ))
        .bind(batch)
        .execute(self)
        .await?;
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

/// One attempt's outcome as the settling statements read it.
fn outcome_json(it: &Settlement) -> serde_json::Value {
    let (state, next_attempt_ms, error) = match &it.outcome {
        Settle::Delivered => (NotificationState::Delivered, None, None),
        Settle::Retry { next_attempt_ms } => (
            NotificationState::Pending,
            Some(*next_attempt_ms),
            it.error.clone(),
        ),
        Settle::Dead => (NotificationState::Dead, None, it.error.clone()),
        // Held until the endpoint is enabled again, then due at once.
        Settle::Hold => (
            NotificationState::Pending,
            Some(it.ended_ms),
            it.error.clone(),
        ),
    };
    serde_json::json!({
        "id": it.id,
        "claim_version": it.claim_version,
        "state": state.as_str(),
        "next_attempt_ms": next_attempt_ms,
        "status": it.status,
        "error": error,
        "started_ms": it.started_ms,
        "duration_ms": (it.ended_ms - it.started_ms).max(0),
        "ended_ms": it.ended_ms,
    })
}

/// A `FROM` item named `x` with the rows of the JSON array of objects bound as `$1`; `columns` are
/// the keys read and their SQL types.
fn json_rows(dialect: Dialect, columns: &[(&str, &str)]) -> String {
    let list = |f: &dyn Fn(&str, &str) -> String| {
        columns
            .iter()
            .map(|(name, ty)| f(name, ty))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match dialect {
        Dialect::Postgres => format!(
            "json_to_recordset($1::json) AS x({})",
            list(&|name, ty| format!("{name} {ty}"))
        ),
        Dialect::Sqlite => format!(
            "(SELECT {} FROM json_each($1)) AS x",
            list(&|name, _| format!("value ->> '{name}' AS {name}"))
        ),
    }
}

/// A requestor's updates by state, from the indexes alone: the pending ones counted in
/// `notifications_pending`, the others in `notifications_settled_by_requestor`.
pub(super) const COUNTS_OF_REQUESTOR: &str = "SELECT state, COUNT(*) AS n FROM notifications \
     WHERE requestor_id = $1 AND state = 'PENDING' GROUP BY state \
     UNION ALL SELECT state, COUNT(*) AS n FROM notifications \
     WHERE requestor_id = $1 AND state <> 'PENDING' GROUP BY state ORDER BY state";

/// The list's SQL for the filter (a requestor's or a token's updates, in one state or all),
/// newest first, `$1` the limit and `$2` the requestor or the token. Each part reads one index in
/// its order: pending rows by `notifications_pending` or `notifications_pending_by_token`, the
/// others by `notifications_settled_by_requestor` or `notifications_settled_by_token` (the
/// states are written as literals, so the planner can match the partial indexes); the parts, a
/// page each at most, are merged.
pub(super) fn list_sql(f: &Filter) -> String {
    let owner = if f.token_id.is_some() {
        "token_id"
    } else {
        "requestor_id"
    };
    let part = |state: &str| {
        let settled = if state == "PENDING" {
            ""
        } else {
            " AND state <> 'PENDING'"
        };
        format!(
            "SELECT {COLUMNS} FROM notifications WHERE {owner} = $2 AND state = '{state}'{settled} \
             ORDER BY id DESC LIMIT $1"
        )
    };
    let parts: Vec<String> = match (f.state, f.token_id.is_some()) {
        (Some(state), _) => vec![part(state.as_str())],
        (None, false) => NotificationState::ALL
            .iter()
            .map(|s| part(s.as_str()))
            .collect(),
        (None, true) => vec![
            part("PENDING"),
            format!(
                "SELECT {COLUMNS} FROM notifications WHERE token_id = $2 \
                 AND state <> 'PENDING' ORDER BY id DESC LIMIT $1"
            ),
        ],
    };
    let merged: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| format!("SELECT * FROM ({p}) AS p{i}"))
        .collect();
    format!(
        "SELECT * FROM ({}) AS a ORDER BY id DESC LIMIT $1",
        merged.join(" UNION ALL ")
    )
}

impl Store {
    /// A token's updates when the filter names one, else a requestor's; newest first.
    pub async fn notifications(&self, f: &Filter) -> Result<Vec<Notification>, StoreError> {
        let owner = f.token_id.as_ref().or(f.requestor_id.as_ref());
        let Some(owner) = owner else {
            return Ok(Vec::new());
        };
        let rows = query(&list_sql(f))
            .bind(f.limit)
            .bind(owner)
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
        let rows = match requestor_id {
            Some(id) => query(COUNTS_OF_REQUESTOR).bind(id),
            None => query(
                "SELECT state, COUNT(*) AS n FROM notifications GROUP BY state ORDER BY state",
            ),
        }
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
    /// if any (per requestor, the first entry of `notifications_pending` not being sent).
    pub async fn next_notification_due(&self, now: i64) -> Result<Option<i64>, StoreError> {
        query_scalar(
            "SELECT MIN((SELECT n.next_attempt_ms FROM notifications n \
               WHERE n.requestor_id = r.requestor_id AND n.state = 'PENDING' \
               AND n.locked_until_ms <= $1 ORDER BY n.next_attempt_ms LIMIT 1)) \
             FROM token_requestors r WHERE r.state = 'ENABLED'",
        )
        .bind(now)
        .fetch_one(self.reader())
        .await
    }
}
