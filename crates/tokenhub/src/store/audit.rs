//! The audit log: appends (each linked to the chain's head, which they move) and reads in order.

use super::{query, Row, Store, StoreError, Tx};
use crate::domain::admin::{chain_hash, AuditEntry, AuditRecord};

const COLUMNS: &str = "seq, at_ms, actor, action, object_type, object_id, correlation_id, status, \
    prev_hash, hash";

fn from_row(r: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: r.get("seq")?,
        record: AuditRecord {
            at_ms: r.get("at_ms")?,
            actor: r.get("actor")?,
            action: r.get("action")?,
            object_type: r.get("object_type")?,
            object_id: r.get("object_id")?,
            correlation_id: r.get("correlation_id")?,
            status: r.get("status")?,
        },
        prev_hash: r.get("prev_hash")?,
        hash: r.get("hash")?,
    })
}

impl Tx {
    /// Appends after the chain's head, read locked (`FOR UPDATE` on PostgreSQL, so concurrent
    /// appends take turns; SQLite's one writer already serialises them), and moves the head.
    pub async fn append_audit(&mut self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        let sql = format!(
            "SELECT seq, hash FROM audit_head WHERE id = 1{}",
            self.dialect().for_update()
        );
        let head = query(&sql).fetch_one(&mut *self).await?;
        let seq = head.get::<i64>("seq")? + 1;
        let prev_hash: Vec<u8> = head.get("hash")?;
        let hash = chain_hash(&prev_hash, seq, &record);
        let r = &record;
        query(&format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(seq)
        .bind(r.at_ms)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.object_type)
        .bind(&r.object_id)
        .bind(&r.correlation_id)
        .bind(r.status)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *self)
        .await?;
        query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&hash)
            .execute(&mut *self)
            .await?;
        Ok(AuditEntry {
            seq,
            record,
            prev_hash,
            hash,
        })
    }
}

impl Store {
    /// Up to `limit` entries after `after_seq`, in order.
    pub async fn audit_entries(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The chain's head: the last seq and its hash.
    pub async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        let row = query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.reader())
            .await?;
        Ok((row.get("seq")?, row.get("hash")?))
    }
}
