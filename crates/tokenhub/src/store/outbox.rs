//! The durable outbox: every call the hub owes a TSP is written here in the same transaction as
//! the change that caused it, then made by `workers::outbox` until the TSP acknowledges (or
//! refuses for good). Rows of one token are delivered in order: a row is claimed only when no
//! older row of the same token is still pending.

use super::{query, query_scalar, Row, Store, StoreError, Tx};
use crate::domain::tsp_call::{CallOutcome, NewCall, OutboxState, QueuedCall, TspCall};

impl Tx {
    pub async fn enqueue_tsp_call(
        &mut self,
        call: &NewCall<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO outbox (kind, token_id, tsp_id, correlation_id, payload, state, attempts, \
             next_attempt_ms, locked_until_ms, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 0, $7, $7)",
        )
        .bind(call.call)
        .bind(call.token_id)
        .bind(call.tsp_id)
        .bind(call.correlation_id)
        .bind(call.payload)
        .bind(OutboxState::Pending)
        .bind(now)
        .execute(self)
        .await?;
        Ok(())
    }

    /// Claims up to `limit` due calls to `tsp_id` for node `by` for `lease_ms` (another node may
    /// take them after that, should this one die mid-call), oldest first, at most the oldest
    /// pending call per token (whatever its TSP). A row of a kind this hub does not know is
    /// settled dead at once (nobody could make it).
    pub async fn claim_tsp_calls(
        &mut self,
        tsp_id: &str,
        by: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<QueuedCall>, StoreError> {
        let sql = format!(
            "UPDATE outbox SET locked_until_ms = $2, claimed_by = $5, attempts = attempts + 1, \
             claim_version = claim_version + 1 \
             WHERE id IN (\
               SELECT o.id FROM outbox o WHERE o.state = 'PENDING' AND o.next_attempt_ms <= $1 \
               AND o.locked_until_ms <= $1 AND o.tsp_id = $4 AND NOT EXISTS (SELECT 1 FROM outbox p \
                 WHERE p.token_id = o.token_id AND p.state = 'PENDING' AND p.id < o.id) \
               ORDER BY o.id LIMIT $3{}) \
             RETURNING id, kind, token_id, tsp_id, correlation_id, payload, attempts, claim_version",
            self.dialect().skip_locked()
        );
        let rows = query(&sql)
            .bind(now)
            .bind(now + lease_ms)
            .bind(limit)
            .bind(tsp_id)
            .bind(by)
            .fetch_all(&mut *self)
            .await?;
        let mut calls = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.get("id")?;
            let kind: String = r.get("kind")?;
            match TspCall::parse(&kind) {
                Some(call) => calls.push(queued(r, id, call)?),
                None => {
                    let error = format!("unknown outbox call kind {kind}");
                    let version = r.get("claim_version")?;
                    self.settle_tsp_call(id, version, &CallOutcome::Dead { error }, now)
                        .await?;
                }
            }
        }
        calls.sort_by_key(|c| c.id);
        Ok(calls)
    }

    /// Whether `call` with this correlation id was ever queued for the token.
    pub async fn tsp_call_was_sent(
        &mut self,
        token_id: &str,
        call: TspCall,
        correlation_id: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = query_scalar(
            "SELECT id FROM outbox WHERE token_id = $1 AND kind = $2 AND correlation_id = $3 LIMIT 1",
        )
        .bind(token_id)
        .bind(call)
        .bind(correlation_id)
        .fetch_optional(self)
        .await?;
        Ok(found.is_some())
    }

    /// Gives claimed calls back untried (their TSP's rate was used up): not an attempt. `claims`
    /// are (id, claim version) pairs; a call claimed again since is left to its new claim.
    /// Returns how many were given back.
    pub async fn release_tsp_calls(&mut self, claims: &[(i64, i64)]) -> Result<u64, StoreError> {
        let mut released = 0;
        for chunk in claims.chunks(250) {
            let list: Vec<String> = (0..chunk.len())
                .map(|i| format!("(id = ${} AND claim_version = ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "UPDATE outbox SET locked_until_ms = 0, attempts = attempts - 1 \
                 WHERE state = 'PENDING' AND ({})",
                list.join(" OR ")
            );
            let mut q = query(&sql);
            for (id, version) in chunk {
                q = q.bind(*id).bind(*version);
            }
            released += q.execute(&mut *self).await?.rows_affected();
        }
        Ok(released)
    }

    /// Makes every pending call to `tsp_id` due now: the TSP is back after being down, and the
    /// backoffs its calls grew before it was found down no longer say anything. They go at the
    /// TSP's agreed rate from here. Returns how many were waiting for a later time.
    pub async fn make_tsp_calls_due(&mut self, tsp_id: &str, now: i64) -> Result<u64, StoreError> {
        let done = query(
            "UPDATE outbox SET next_attempt_ms = $2 \
             WHERE tsp_id = $1 AND state = 'PENDING' AND next_attempt_ms > $2",
        )
        .bind(tsp_id)
        .bind(now)
        .execute(self)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records how an attempt at a claimed call ended, if the row still holds the claim's
    /// `version` (pending, not claimed again since). Returns whether it did: `false` is a lost
    /// claim, which changes nothing.
    pub async fn settle_tsp_call(
        &mut self,
        id: i64,
        version: i64,
        outcome: &CallOutcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        let q = match outcome {
            CallOutcome::Done => query(
                "UPDATE outbox SET state = $2, last_error = NULL, updated_ms = $3 \
                 WHERE id = $1 AND state = 'PENDING' AND claim_version = $4",
            )
            .bind(id)
            .bind(OutboxState::Done)
            .bind(now),
            CallOutcome::Retry { at, error } => query(
                "UPDATE outbox SET next_attempt_ms = $2, locked_until_ms = 0, last_error = $3, \
                 updated_ms = $4 WHERE id = $1 AND state = 'PENDING' AND claim_version = $5",
            )
            .bind(id)
            .bind(*at)
            .bind(error.as_str())
            .bind(now),
            CallOutcome::Dead { error } => query(
                "UPDATE outbox SET state = $2, last_error = $3, updated_ms = $4 WHERE id = $1 \
                 AND state = 'PENDING' AND claim_version = $5",
            )
            .bind(id)
            .bind(OutboxState::Dead)
            .bind(error.as_str())
            .bind(now),
        };
        Ok(q.bind(version).execute(self).await?.rows_affected() == 1)
    }
}

fn queued(r: &Row, id: i64, call: TspCall) -> Result<QueuedCall, StoreError> {
    Ok(QueuedCall {
        id,
        call,
        token_id: r.get("token_id")?,
        tsp_id: r.get("tsp_id")?,
        correlation_id: r.get("correlation_id")?,
        payload: r.get("payload")?,
        attempts: r.get("attempts")?,
        claim_version: r.get("claim_version")?,
    })
}

impl Store {
    /// Counts of TSP calls by state (for the admin API, the demo and tests).
    pub async fn outbox_counts(&self) -> Result<Vec<(OutboxState, i64)>, StoreError> {
        let rows = query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state ORDER BY state")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("state")?, r.get("n")?)))
            .collect()
    }
}
