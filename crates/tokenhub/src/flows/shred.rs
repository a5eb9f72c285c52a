//! The shred sweep: deletes the data, and destroys the data key, of tokens whose data no call will
//! complete (a `/data` whose time to live ran out, a renewal left incomplete); purges the records
//! of tokens deleted longer ago than their retention (fingerprints included) and settled outbox
//! calls, notifications and token events past theirs; then, on SQLite, truncates the write-ahead
//! log so that no old frame keeps a destroyed key.

use crate::error::Error;
use crate::hub::Hub;
use crate::store::shred::{PurgeBefore, Purged};
use std::time::Duration;

/// Tokens (or rows of each kind) one transaction of the sweep handles.
const BATCH: i64 = 128;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Tokens whose lapsed data was deleted and key destroyed.
    pub data: usize,
    /// Deleted tokens purged.
    pub tokens: usize,
    pub rows: Purged,
    /// Whether the SQLite log was copied and truncated (always on PostgreSQL).
    pub log_truncated: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One sweep, in batches until nothing is left.
pub async fn sweep(hub: &Hub) -> Result<Swept, Error> {
    let mut swept = Swept::default();
    loop {
        let n = shred_lapsed(hub).await?;
        swept.data += n;
        if n < BATCH as usize {
            break;
        }
    }
    loop {
        let n = purge_deleted(hub).await?;
        swept.tokens += n;
        if n < BATCH as usize {
            break;
        }
    }
    let retention = hub.config.retention;
    loop {
        let now = hub.now_ms();
        let before = PurgeBefore {
            outbox: now.saturating_sub(ms(retention.outbox)),
            notifications: now.saturating_sub(ms(retention.notifications)),
            events: now.saturating_sub(ms(retention.events)),
        };
        let rows = hub
            .store
            .transact(move |c| Box::pin(async move { c.purge_old_rows(before, BATCH).await }))
            .await?;
        swept.rows.outbox += rows.outbox;
        swept.rows.notifications += rows.notifications;
        swept.rows.events += rows.events;
        if rows == Purged::default() {
            break;
        }
    }
    swept.log_truncated = hub.store.truncate_log().await?;
    Ok(swept)
}

/// One batch of tokens whose data lapsed: their parts and key deleted in one transaction.
async fn shred_lapsed(hub: &Hub) -> Result<usize, Error> {
    let now = hub.now_ms();
    let renewed_before = now.saturating_sub(ms(hub.config.perso_ttl));
    hub.store
        .transact(move |c| {
            Box::pin(async move {
                // Claimed (locked) in the order of their ids, as every path that locks several.
                let ids = c.claim_lapsed_data(now, renewed_before, BATCH).await?;
                for id in &ids {
                    c.delete_token_data(id, now).await?;
                    c.add_token_event(
                        id,
                        "data deleted and its key destroyed: no call completed it in time",
                        "",
                        now,
                    )
                    .await?;
                }
                Ok::<_, Error>(ids.len())
            })
        })
        .await
}

/// One batch of tokens deleted longer ago than their retention: every row of theirs deleted.
async fn purge_deleted(hub: &Hub) -> Result<usize, Error> {
    let before = hub
        .now_ms()
        .saturating_sub(ms(hub.config.retention.deleted_tokens));
    hub.store
        .transact(move |c| {
            Box::pin(async move {
                let ids = c.claim_deleted_tokens(before, BATCH).await?;
                for id in &ids {
                    c.purge_token(id).await?;
                }
                Ok::<_, Error>(ids.len())
            })
        })
        .await
}
