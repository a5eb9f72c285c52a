//! The hub's use cases. Each flow takes the [`Hub`](crate::hub::Hub) and parsed inputs, asks the
//! domain for decisions, applies them in store transactions, and returns the outcome to the edge
//! (an HTTP handler, a worker or the CLI) that called it.

pub mod campaign;
pub mod deliver;
pub mod digitize;
pub mod keys;
pub mod lifecycle;
pub mod notifications;
pub mod perso;
pub mod reperso;

use crate::error::Error;
use crate::store::outbox::{self, NewItem};
use crate::store::tokens::TokenRow;
use crate::store::Tx;
use crate::store::{catalog, StoreError};

/// Queues a call to the token's TSP in the caller's transaction (the outbox makes it).
pub(crate) async fn enqueue_tsp_call(
    conn: &mut Tx,
    token: &TokenRow,
    kind: &str,
    correlation_id: &str,
    body: &serde_json::Value,
    now: i64,
) -> Result<(), Error> {
    let tsp_id = catalog::issuer_tsp(conn, &token.issuer_id)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "issuer {} of token {} is gone",
                token.issuer_id, token.token_id
            ))
        })?;
    let item = NewItem {
        kind,
        token_id: &token.token_id,
        tsp_id: &tsp_id,
        correlation_id,
        payload: &body.to_string(),
    };
    outbox::enqueue(conn, &item, now).await?;
    Ok(())
}
