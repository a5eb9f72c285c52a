//! What the shred sweep deletes: the data (and data key) of tokens whose data is no longer
//! awaited, the records of tokens deleted long ago (fingerprints included), and old outbox,
//! notification and event rows. Every claim skips the rows another node holds, so nodes sweep
//! side by side on PostgreSQL.

use super::{query_scalar, Store, StoreError, Tx};

/// Tokens holding a data key whose data no call will complete: a `/data` whose time to live ran
/// out, a renewal (`/newData` with no recovery open) left incomplete for `perso_ttl`, or a key
/// that has sealed no part for `perso_ttl` (made for a call that never committed) outside a
/// token's wait for its data. A personalization being delivered or a recovery open keeps the
/// data.
const LAPSED: &str = "SELECT k.token_id FROM keyring.token_keys k JOIN tokens t ON t.token_id = k.token_id \
    WHERE (t.state = 'PENDING_DATA' AND t.data_deadline_ms < $1) \
       OR (t.state <> 'PENDING_DATA' AND k.created_ms < $2 \
           AND NOT EXISTS (SELECT 1 FROM token_data d WHERE d.token_id = k.token_id)) \
       OR (t.state NOT IN ('PENDING_DATA', 'PERSONALIZING') AND t.recovery_correlation_id IS NULL \
           AND NOT EXISTS (SELECT 1 FROM personalizations p WHERE p.token_id = t.token_id AND p.state = 'PENDING') \
           AND NOT EXISTS (SELECT 1 FROM token_data d WHERE d.token_id = t.token_id AND d.created_ms >= $2)) \
    ORDER BY k.token_id LIMIT $3";

/// Tokens holding parts without a key: none opens. On SQLite the keyring is a file of its own,
/// and a commit is atomic in each file but not across both (the database commits first): a
/// crash between the two leaves a key whose parts were deleted, which [`LAPSED`] finds. Keys are
/// made in a transaction before their data, so parts without a key come only from a keyring
/// lost or restored apart from the database.
const KEYLESS: &str = "SELECT t.token_id FROM tokens t WHERE t.token_id IN \
    (SELECT d.token_id FROM token_data d \
     WHERE NOT EXISTS (SELECT 1 FROM keyring.token_keys k WHERE k.token_id = d.token_id)) \
    ORDER BY t.token_id LIMIT $1";

/// Tokens deleted before a time, whose device acknowledged the removal and that owe no call or
/// update any more.
const DELETED: &str = "SELECT t.token_id FROM tokens t WHERE t.state = 'DELETED' AND t.updated_ms < $1 \
    AND t.removal_pending = 0 \
    AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.token_id = t.token_id AND o.state = 'PENDING') \
    AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.token_id = t.token_id AND n.state = 'PENDING') \
    ORDER BY t.updated_ms LIMIT $2";

/// What a token leaves once purged: nothing (the rows that reference the token go first).
const PURGE_TOKEN: [&str; 7] = [
    "DELETE FROM token_data WHERE token_id = $1",
    "DELETE FROM keyring.token_keys WHERE token_id = $1",
    "DELETE FROM token_fingerprint_sets WHERE token_id = $1",
    "DELETE FROM token_data_calls WHERE token_id = $1",
    "DELETE FROM token_events WHERE token_id = $1",
    "DELETE FROM personalizations WHERE token_id = $1",
    "DELETE FROM tokens WHERE token_id = $1",
];

/// The settled rows among the oldest `$2` of a queue, last changed before `$1`. Reading only the
/// oldest rows keeps a sweep's cost bounded whatever the table's size.
fn settled_among_oldest(table: &str, time: &str, settled: &str) -> String {
    format!(
        "SELECT id FROM (SELECT id, {time} AS at, {settled} AS settled FROM {table} ORDER BY id LIMIT $2) o \
         WHERE o.settled = 1 AND o.at < $1"
    )
}

/// How many rows of each kind a purge deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub outbox: u64,
    pub notifications: u64,
    pub events: u64,
}

/// Before when each kind of row is old enough to purge (ms since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct PurgeBefore {
    pub outbox: i64,
    pub notifications: i64,
    pub events: i64,
}

impl Tx {
    /// Claims up to `limit` tokens whose data lapsed (see [`LAPSED`]) and up to `limit` holding
    /// parts without a key ([`KEYLESS`]), locked until the transaction ends: `renewed_before` is
    /// when a renewal's newest part must be older than.
    pub async fn claim_lapsed_data(
        &mut self,
        now: i64,
        renewed_before: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!("{LAPSED}{}", self.dialect().skip_locked());
        let mut ids: Vec<String> = query_scalar(&sql)
            .bind(now)
            .bind(renewed_before)
            .bind(limit)
            .fetch_all(&mut *self)
            .await?;
        let sql = format!("{KEYLESS}{}", self.dialect().skip_locked());
        let keyless: Vec<String> = query_scalar(&sql).bind(limit).fetch_all(self).await?;
        ids.extend(keyless);
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Claims up to `limit` tokens deleted before `before` that can be purged, locked.
    pub async fn claim_deleted_tokens(
        &mut self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!("{DELETED}{}", self.dialect().skip_locked());
        query_scalar(&sql)
            .bind(before)
            .bind(limit)
            .fetch_all(self)
            .await
    }

    /// Deletes every row of a token (a claimed, deleted one): its id becomes unknown.
    pub async fn purge_token(&mut self, token_id: &str) -> Result<(), StoreError> {
        for sql in PURGE_TOKEN {
            super::query(sql).bind(token_id).execute(&mut *self).await?;
        }
        Ok(())
    }

    /// Deletes settled outbox calls, settled notifications (and their attempts) and token
    /// events older than their retention, up to `limit` of each.
    pub async fn purge_old_rows(
        &mut self,
        before: PurgeBefore,
        limit: i64,
    ) -> Result<Purged, StoreError> {
        let settled = "CASE WHEN state = 'PENDING' THEN 0 ELSE 1 END";
        let outbox = settled_among_oldest("outbox", "updated_ms", settled);
        let notifications = settled_among_oldest("notifications", "updated_ms", settled);
        let events = settled_among_oldest("token_events", "at_ms", "1");
        run(
            self,
            format!("DELETE FROM notification_attempts WHERE notification_id IN ({notifications})"),
            before.notifications,
            limit,
        )
        .await?;
        Ok(Purged {
            notifications: run(
                self,
                format!("DELETE FROM notifications WHERE id IN ({notifications})"),
                before.notifications,
                limit,
            )
            .await?,
            outbox: run(
                self,
                format!("DELETE FROM outbox WHERE id IN ({outbox})"),
                before.outbox,
                limit,
            )
            .await?,
            events: run(
                self,
                format!("DELETE FROM token_events WHERE id IN ({events})"),
                before.events,
                limit,
            )
            .await?,
        })
    }
}

async fn run(tx: &mut Tx, sql: String, before: i64, limit: i64) -> Result<u64, StoreError> {
    Ok(super::query(&sql)
        .bind(before)
        .bind(limit)
        .execute(tx)
        .await?
        .rows_affected())
}

impl Store {
    /// On SQLite, copies the write-ahead log into the database and truncates it, so that what a
    /// deletion overwrote (with `secure_delete`, zeroes) no longer lingers in old log frames.
    /// Waits for the writer's transaction in progress (the busy timeout). Returns whether the
    /// whole log was copied and truncated; `true` on PostgreSQL, which has no such file here.
    pub async fn truncate_log(&self) -> Result<bool, StoreError> {
        let super::Reader::Lite(pool) = self.reader() else {
            return Ok(true);
        };
        let path = pool.path().to_string();
        tokio::task::spawn_blocking(move || super::sqlite::truncate_log(&path))
            .await
            .map_err(|_| StoreError::Panicked)?
    }
}
