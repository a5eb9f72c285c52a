//! The keys shared with TSPs: a key ceremony's keys imported into the store for their owning TSP
//! (`tokenhub keys import`, `POST /admin/v1/shared-keys`), listed, and retired
//! (`tokenhub keys retire`, `POST /admin/v1/shared-keys/{tspId}/{keyIndex}/retire`).

use crate::domain::admin::AuditRecord;
use crate::domain::catalog::PutImmutable;
use crate::domain::{KeyPurpose, StoredKey};
use crate::error::Error;
use crate::keys::Keys;
pub use crate::store::shared_keys::Retired;
use crate::store::Store;
use tokenhub_crypto::SharedKey;

/// Checks each key against its KCV, wraps it under the master key for `tsp_id` and its purpose
/// (`kek` or `dek`, from the key set) and stores it. A key index the TSP has already with the
/// same KCV and purpose is left as it is; with another it is refused. Each key's outcome is
/// audited (its TSP and index, never the key) in the import's transaction, as done by `actor`.
pub async fn import(
    store: &Store,
    keys: &Keys,
    tsp_id: &str,
    shared: &[SharedKey],
    actor: &str,
    now: i64,
) -> Result<Vec<(String, PutImmutable)>, Error> {
    if tsp_id.is_empty() || tsp_id.chars().count() > 64 || tsp_id.chars().any(char::is_control) {
        return Err(Error::invalid("tspId must be 1 to 64 characters"));
    }
    let mut wrapped = Vec::with_capacity(shared.len());
    for k in shared {
        let purpose = KeyPurpose::parse(&k.purpose).ok_or_else(|| {
            Error::invalid(format!(
                "key {}: purpose must be kek or dek, not {:?}",
                k.key_index, k.purpose
            ))
        })?;
        wrapped.push(keys.wrap_shared_key(tsp_id, purpose, k)?);
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
                        object_id: object_id(&k.tsp_id, &k.key_index),
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

/// Retires `tsp_id`'s key `key_index`: from then on an element under it is refused as one under
/// an unknown key. Audited in the same transaction, whatever the outcome.
pub async fn retire(
    store: &Store,
    tsp_id: &str,
    key_index: &str,
    actor: &str,
    now: i64,
) -> Result<Retired, Error> {
    let (tsp_id, key_index, actor) = (tsp_id.to_string(), key_index.to_string(), actor.to_string());
    let correlation_id = uuid::Uuid::new_v4().to_string();
    store
        .transact(move |conn| {
            Box::pin(async move {
                let outcome = conn.retire_shared_key(&tsp_id, &key_index, now).await?;
                let status = match outcome {
                    Retired::Retired => 200,
                    Retired::Already => 200,
                    Retired::Missing => 404,
                };
                let record = AuditRecord {
                    at_ms: now,
                    actor,
                    action: "shared-key.retire".into(),
                    object_type: "shared-key".into(),
                    object_id: object_id(&tsp_id, &key_index),
                    correlation_id,
                    status,
                };
                conn.append_audit(record).await?;
                Ok::<_, Error>(outcome)
            })
        })
        .await
}

/// The audit log's name of a shared key: its TSP and index.
fn object_id(tsp_id: &str, key_index: &str) -> String {
    format!("{tsp_id}/{key_index}")
}

/// The shared keys (owner, index, algorithm, purpose, state, KCV; wrapped, as stored).
pub async fn list(store: &Store) -> Result<Vec<StoredKey>, Error> {
    Ok(store.shared_keys().await?)
}
