//! Importing the keys of a key ceremony into the store (`tokenhub keys import`).

use crate::domain::admin::AuditRecord;
use crate::domain::catalog::PutImmutable;
use crate::error::Error;
use crate::keys::Keys;
use crate::store::Store;
use tokenhub_crypto::SharedKey;

/// Checks each key against its KCV, wraps it under the master key and stores it. A key index that
/// exists already with the same KCV is left as it is; with another KCV it is refused. Each key's
/// outcome is audited (its index, never the key) in the import's transaction, as done by `actor`.
pub async fn import(
    store: &Store,
    keys: &Keys,
    shared: &[SharedKey],
    actor: &str,
    now: i64,
) -> Result<Vec<(String, PutImmutable)>, Error> {
    let mut wrapped = Vec::with_capacity(shared.len());
    for k in shared {
        wrapped.push(keys.wrap_shared_key(k)?);
    }
    let actor = actor.to_string();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    store
        .transact(move |conn| {
            Box::pin(async move {
                let mut out = Vec::new();
                for k in &wrapped {
                    let outcome = conn.insert_shared_key(k, now).await?;
                    let status = match outcome {
                        PutImmutable::Created => 201,
                        PutImmutable::Unchanged => 200,
                        PutImmutable::Conflict => 409,
                    };
                    let record = AuditRecord {
                        at_ms: now,
                        actor: actor.clone(),
                        action: "shared-key.import".into(),
                        object_type: "shared-key".into(),
                        object_id: k.key_index.clone(),
                        correlation_id: correlation_id.clone(),
                        status,
                    };
                    conn.append_audit(record).await?;
                    out.push((k.key_index.clone(), outcome));
                }
                Ok::<_, Error>(out)
            })
        })
        .await
}

/// The shared keys (index, algorithm, KCV; wrapped, as stored).
pub async fn list(store: &Store) -> Result<Vec<crate::domain::StoredKey>, Error> {
    Ok(store.shared_keys().await?)
}
