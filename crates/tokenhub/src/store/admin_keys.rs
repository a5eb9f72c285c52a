//! Admin API keys (hashed secrets, roles, revocation) and the issuer an admin-scoped object
//! belongs to.

use super::{query, query_scalar, Row, Store, StoreError, Tx};
use crate::domain::admin::{AdminKey, IssuerObject};

const COLUMNS: &str =
    "key_id, role, issuers, label, secret_hash, created_ms, created_by, revoked_ms";

fn from_row(r: &Row) -> Result<AdminKey, StoreError> {
    let issuers: String = r.get("issuers")?;
    Ok(AdminKey {
        key_id: r.get("key_id")?,
        role: r.get("role")?,
        issuers: issuers
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        label: r.get("label")?,
        secret_hash: r.get("secret_hash")?,
        created_ms: r.get("created_ms")?,
        created_by: r.get("created_by")?,
        revoked_ms: r.get("revoked_ms")?,
    })
}

impl Tx {
    pub async fn insert_admin_key(&mut self, k: &AdminKey) -> Result<(), StoreError> {
        query(&format!(
            "INSERT INTO admin_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&k.key_id)
        .bind(k.role)
        .bind(k.issuers.join(","))
        .bind(&k.label)
        .bind(&k.secret_hash)
        .bind(k.created_ms)
        .bind(&k.created_by)
        .bind(k.revoked_ms)
        .execute(self)
        .await?;
        Ok(())
    }

    /// Revokes a key not yet revoked; whether there was one.
    pub async fn revoke_admin_key(&mut self, key_id: &str, now: i64) -> Result<bool, StoreError> {
        let done =
            query("UPDATE admin_keys SET revoked_ms = $2 WHERE key_id = $1 AND revoked_ms IS NULL")
                .bind(key_id)
                .bind(now)
                .execute(self)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl Store {
    pub async fn admin_key(&self, key_id: &str) -> Result<Option<AdminKey>, StoreError> {
        let row = query(&format!(
            "SELECT {COLUMNS} FROM admin_keys WHERE key_id = $1"
        ))
        .bind(key_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every key, revoked ones too, oldest first.
    pub async fn admin_keys(&self) -> Result<Vec<AdminKey>, StoreError> {
        let rows = query(&format!(
            "SELECT {COLUMNS} FROM admin_keys ORDER BY created_ms, key_id"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The issuer the object belongs to; `None` if there is no such object.
    pub async fn issuer_of(
        &self,
        object: IssuerObject,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = match object {
            IssuerObject::Token => "SELECT issuer_id FROM tokens WHERE token_id = $1",
            IssuerObject::Campaign => "SELECT issuer_id FROM campaigns WHERE campaign_id = $1",
            IssuerObject::Notification => {
                "SELECT t.issuer_id FROM notifications n JOIN tokens t ON t.token_id = n.token_id \
                 WHERE n.id = $1"
            }
        };
        if object == IssuerObject::Notification {
            let Ok(n) = id.parse::<i64>() else {
                return Ok(None);
            };
            return query_scalar(sql)
                .bind(n)
                .fetch_optional(self.reader())
                .await;
        }
        query_scalar(sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await
    }
}
