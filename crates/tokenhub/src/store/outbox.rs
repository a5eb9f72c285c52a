//! The durable outbox: every call the hub owes another party is written here in the same
//! transaction as the change that caused it, then delivered by `workers::outbox` until the party
//! acknowledges (or refuses for good). Rows of one token are delivered in order: a row is claimed
//! only when no older row of the same token is still pending.

use super::{dialect, StoreError};
use super::{query, query_scalar, Tx};

/// A call waiting to be made.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    pub token_id: String,
    pub tsp_id: String,
    pub correlation_id: String,
    /// The JSON body of the call.
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// `updateTokenState`: `PUT {tsp}/tokens/{tokenId}/state`.
pub const UPDATE_TOKEN_STATE: &str = "updateTokenState";

/// `updateToken`: `PUT {tsp}/tokens/{tokenId}/card`.
pub const UPDATE_TOKEN: &str = "updateToken";

/// `repersoToken`: `POST {tsp}/tokens/{tokenId}/reperso`.
pub const REPERSO_TOKEN: &str = "repersoToken";
/// `submitNewTokenDataStatus`: `PUT {tsp}/tokens/{tokenId}/newDataStatus`.
pub const NEW_DATA_STATUS: &str = "submitNewTokenDataStatus";

/// A new item to enqueue.
pub struct NewItem<'a> {
    pub kind: &'a str,
    pub token_id: &'a str,
    pub tsp_id: &'a str,
    pub correlation_id: &'a str,
    pub payload: &'a str,
}

pub async fn enqueue(conn: &mut Tx, item: &NewItem<'_>, now: i64) -> Result<(), StoreError> {
    query(
        "INSERT INTO outbox (kind, token_id, tsp_id, correlation_id, payload, state, attempts, \
         next_attempt_ms, locked_until_ms, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, $6, 0, $6, $6)",
    )
    .bind(item.kind)
    .bind(item.token_id)
    .bind(item.tsp_id)
    .bind(item.correlation_id)
    .bind(item.payload)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims up to `limit` due items for `lease_ms` (another node may take them after that, should
/// this one die mid-call), oldest first, at most the oldest pending item per token.
pub async fn claim(
    conn: &mut Tx,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxItem>, StoreError> {
    let sql = format!(
        "UPDATE outbox SET locked_until_ms = $2, attempts = attempts + 1 WHERE id IN (\
           SELECT o.id FROM outbox o WHERE o.state = 'PENDING' AND o.next_attempt_ms <= $1 \
           AND o.locked_until_ms <= $1 AND NOT EXISTS (SELECT 1 FROM outbox p \
             WHERE p.token_id = o.token_id AND p.state = 'PENDING' AND p.id < o.id) \
           ORDER BY o.id LIMIT $3{}) \
         RETURNING id, kind, token_id, tsp_id, correlation_id, payload, attempts",
        dialect(conn).skip_locked()
    );
    let rows = query(&sql)
        .bind(now)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    let mut items = rows
        .iter()
        .map(|r| {
            Ok(OutboxItem {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                token_id: r.try_get(2)?,
                tsp_id: r.try_get(3)?,
                correlation_id: r.try_get(4)?,
                payload: r.try_get(5)?,
                attempts: r.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    items.sort_by_key(|i| i.id);
    Ok(items)
}

/// Whether a call of `kind` with this correlation id was ever queued for the token.
pub async fn was_sent(
    conn: &mut Tx,
    token_id: &str,
    kind: &str,
    correlation_id: &str,
) -> Result<bool, StoreError> {
    let found: Option<i64> = query_scalar(
        "SELECT id FROM outbox WHERE token_id = $1 AND kind = $2 AND correlation_id = $3 LIMIT 1",
    )
    .bind(token_id)
    .bind(kind)
    .bind(correlation_id)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Gives claimed items back untried (their TSP's rate was used up): not an attempt.
pub async fn release(conn: &mut Tx, ids: &[i64]) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "UPDATE outbox SET locked_until_ms = 0, attempts = attempts - 1 WHERE id IN ({})",
            list.join(", ")
        );
        let mut q = query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn mark_done(conn: &mut Tx, id: i64, now: i64) -> Result<(), StoreError> {
    query("UPDATE outbox SET state = 'DONE', last_error = NULL, updated_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn mark_retry(
    conn: &mut Tx,
    id: i64,
    next_attempt_ms: i64,
    error: &str,
    now: i64,
) -> Result<(), StoreError> {
    query(
        "UPDATE outbox SET next_attempt_ms = $2, locked_until_ms = 0, last_error = $3, updated_ms = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(next_attempt_ms)
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_dead(conn: &mut Tx, id: i64, error: &str, now: i64) -> Result<(), StoreError> {
    query("UPDATE outbox SET state = 'DEAD', last_error = $2, updated_ms = $3 WHERE id = $1")
        .bind(id)
        .bind(error)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

impl super::Store {
    /// Counts of outbox items by state (for the admin API, the demo and tests).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = query("SELECT state, COUNT(*) FROM outbox GROUP BY state ORDER BY state")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
