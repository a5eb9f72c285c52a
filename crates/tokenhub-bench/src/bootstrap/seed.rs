//! Tokens written straight into the hub's store: the benches need more of them, faster, than the
//! public API makes them.

use futures::stream::{self, StreamExt, TryStreamExt};
use tokenhub::domain::TokenState;
use tokenhub::store::token_keys::DataKey;
use tokenhub::store::tokens::TokenRow;

/// The issuer, product and profile version the data and notifications benches register.
pub(crate) const ISSUER_ID: &str = "BENCHBANK1";
pub(crate) const PRODUCT_ID: &str = "bench";
pub(crate) const VERSION: &str = "v1";

/// 32 random bytes, base64url: a valid X25519 public key.
pub(crate) fn random_public_key() -> String {
    use base64::Engine;
    let mut k = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
}

/// Inserts `n` tokens of the bench issuer in `state`, each on a device of its own (with a random
/// X25519 public key: the hub seals the profile to it once the token's data is complete), 1000 per
/// transaction.
pub(crate) async fn create_tokens(
    hub: &tokenhub::Hub,
    n: usize,
    state: TokenState,
    token_requestor_id: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    const BATCH: usize = 1000;
    let now = hub.now_ms();
    let ids: Vec<String> = (0..n).map(|i| format!("bench-{i:09}")).collect();
    let batches: Vec<Vec<(TokenRow, DataKey)>> = ids
        .chunks(BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(
                    |id| -> Result<(TokenRow, DataKey), tokenhub::keys::KeyError> {
                        let key: DataKey = hub.keys.new_data_key(id)?;
                        let row = TokenRow {
                            token_id: id.clone(),
                            issuer_id: ISSUER_ID.into(),
                            product_id: PRODUCT_ID.into(),
                            profile_version: VERSION.into(),
                            device_id: format!("device-{id}"),
                            wallet_card_ref_id: format!("card-{id}"),
                            token_requestor_id: token_requestor_id.map(str::to_string),
                            state,
                            token_exp: None,
                            token_last4: None,
                            data_deadline_ms: now + 24 * 3600 * 1000,
                            received_elements: Vec::new(),
                            correlation_id: format!("create-{id}"),
                            created_ms: now,
                            updated_ms: now,
                            failure_reason: None,
                            recovery: None,
                            card: Default::default(),
                            last_update_ms: None,
                        };
                        Ok((row, key))
                    },
                )
                .collect()
        })
        .collect::<Result<_, _>>()?;
    stream::iter(batches)
        .map(|rows| {
            hub.store.transact(move |c| {
                Box::pin(async move {
                    for (row, key) in &rows {
                        c.put_device(&row.device_id, &random_public_key(), None, now)
                            .await?;
                        c.insert_token(row).await?;
                        c.keep_data_key(&row.token_id, key, now).await?;
                    }
                    Ok::<_, tokenhub::store::StoreError>(())
                })
            })
        })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await?;
    Ok(ids)
}
