//! The audit log: what the admin API and the key commands did, appended to a hash chain, read
//! in pages, and verified end to end (`tokenhub audit verify`).

use crate::domain::admin::{AuditEntry, AuditRecord, ChainBreak, ChainCheck};
use crate::error::Error;
use crate::store::Store;

/// Appends one record in its own transaction (for an action whose flow has none to share).
pub async fn record(store: &Store, record: AuditRecord) -> Result<AuditEntry, Error> {
    store
        .transact(move |tx| Box::pin(async move { Ok::<_, Error>(tx.append_audit(record).await?) }))
        .await
}

/// Most entries one page holds.
pub const MAX_PAGE: i64 = 500;

/// Up to `limit` entries after `after_seq`, in order.
pub async fn page(store: &Store, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, Error> {
    Ok(store
        .audit_entries(after_seq.max(0), limit.clamp(1, MAX_PAGE))
        .await?)
}

/// A chain that verified: how many entries, and the head's hash (to note elsewhere: a chain
/// rewritten whole from some entry on would end on another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: i64,
    pub head_hash: Vec<u8>,
}

/// Reads the whole log in order and checks every link, then the head. `Ok(Err(_))` names the
/// first entry that does not follow.
pub async fn verify(store: &Store) -> Result<Result<Verified, ChainBreak>, Error> {
    // The head first: entries appended while the log is read come after it.
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut check = ChainCheck::default();
    let mut after = 0;
    loop {
        let entries = store.audit_entries(after, MAX_PAGE).await?;
        let Some(last) = entries.last() else { break };
        after = last.seq;
        for e in entries.iter().take_while(|e| e.seq <= head_seq) {
            if let Err(b) = check.next(e) {
                return Ok(Err(b));
            }
        }
        if after >= head_seq {
            break;
        }
    }
    Ok(check
        .finish(head_seq, &head_hash)
        .map(|entries| Verified { entries, head_hash }))
}
