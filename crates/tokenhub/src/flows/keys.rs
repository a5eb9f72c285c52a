//! Importing the keys of a key ceremony into the store (`tokenhub keys import`).

use crate::domain::catalog::PutImmutable;
use crate::error::Error;
use crate::keys::Keys;
use crate::store::Store;
use tokenhub_crypto::SharedKey;

/// Checks each key against its KCV, wraps it under the master key and stores it. A key index that
/// exists already with the same KCV is left as it is; with another KCV it is refused.
pub async fn import(
    store: &Store,
    keys: &Keys,
    shared: &[SharedKey],
    now: i64,
) -> Result<Vec<(String, PutImmutable)>, Error> {
    let mut wrapped = Vec::with_capacity(shared.len());
    for k in shared {
        wrapped.push(keys.wrap_shared_key(k)?);
    }
    store
        .transact(move |conn| {
            Box::pin(async move {
                let mut out = Vec::new();
                for k in &wrapped {
                    out.push((k.key_index.clone(), conn.insert_shared_key(k, now).await?));
                }
                Ok::<_, Error>(out)
            })
        })
        .await
}
