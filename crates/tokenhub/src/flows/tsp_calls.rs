//! Calls owed to TSPs: queued in the transaction of the change that causes them, claimed and
//! settled by the outbox worker.

use crate::domain::catalog::Tsp;
use crate::domain::tsp_call::{CallOutcome, NewCall, QueuedCall, TspCall};
use crate::error::Error;
use crate::hub::Hub;
use crate::store::tokens::TokenRow;
use crate::store::{StoreError, Tx};
use crate::telemetry::metrics::{self, CallOutcome as Measured, ClaimedWork};
use crate::tsp_client::TspCallError;
use std::time::Duration;

/// Counts one call made to `tsp` and its time, by how it ended.
pub fn measured<T>(tsp: &str, call: &'static str, r: &Result<T, TspCallError>, took: Duration) {
    measured_outcome(tsp, call, r.as_ref().err(), took);
}

/// [`measured`] for a call that failed with `error` (`None`: it was done).
pub fn measured_outcome(
    tsp: &str,
    call: &'static str,
    error: Option<&TspCallError>,
    took: Duration,
) {
    let outcome = match error {
        None => Measured::Done,
        Some(TspCallError::Unavailable(_)) => Measured::Unavailable,
        Some(TspCallError::Refused { .. }) => Measured::Refused,
        Some(TspCallError::Protocol(_)) => Measured::Protocol,
    };
    metrics::tsp_call(tsp, call, outcome, took);
}

/// Queues `call` to the token's TSP in the caller's transaction (the outbox makes it).
pub(crate) async fn enqueue(
    tx: &mut Tx,
    token: &TokenRow,
    call: TspCall,
    correlation_id: &str,
    body: &serde_json::Value,
    now: i64,
) -> Result<(), Error> {
    let tsp_id = tx.issuer_tsp(&token.issuer_id).await?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "issuer {} of token {} is gone",
            token.issuer_id, token.token_id
        ))
    })?;
    let new = NewCall {
        call,
        token_id: &token.token_id,
        tsp_id: &tsp_id,
        correlation_id,
        payload: &body.to_string(),
    };
    tx.enqueue_tsp_call(&new, now).await?;
    Ok(())
}

/// The TSP connection calls to `tsp_id` go to.
pub async fn tsp(hub: &Hub, tsp_id: &str) -> Result<Option<Tsp>, Error> {
    Ok(hub.store.tsp(tsp_id).await?)
}

/// Every registered TSP (each has its own lane of calls).
pub async fn tsps(hub: &Hub) -> Result<Vec<Tsp>, Error> {
    Ok(hub.store.tsps().await?)
}

/// Claims up to `limit` due calls to `tsp_id` for `lease_ms`, oldest first.
pub async fn claim(
    hub: &Hub,
    tsp_id: &str,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<QueuedCall>, Error> {
    let now = hub.now_ms();
    let tsp_id = tsp_id.to_string();
    let by = hub.config.node.id.clone();
    hub.store
        .transact(move |tx| {
            Box::pin(async move {
                Ok::<_, Error>(
                    tx.claim_tsp_calls(&tsp_id, &by, now, lease_ms, limit)
                        .await?,
                )
            })
        })
        .await
}

/// Gives claimed calls back untried (not an attempt); `claims` are (id, claim version) pairs.
pub async fn release(hub: &Hub, claims: Vec<(i64, i64)>) -> Result<(), Error> {
    let n = claims.len() as u64;
    let released = hub
        .store
        .transact(move |tx| {
            Box::pin(async move { Ok::<_, Error>(tx.release_tsp_calls(&claims).await?) })
        })
        .await?;
    if released < n {
        // Their lease ran out before they were given back; each is its new claim's now.
        tracing::warn!(
            lost = n - released,
            "claimed calls given back after their lease"
        );
        metrics::lost_claims(ClaimedWork::TspCall, n - released);
    }
    Ok(())
}

/// Records how an attempt at `call` ended, and what the TSP's answer to a `repersoToken` means
/// for the token's recovery; nothing if the call was claimed again since (its lease ran out):
/// the newer claim records its own attempt.
pub async fn settle(hub: &Hub, call: QueuedCall, outcome: CallOutcome) -> Result<(), Error> {
    let now = hub.now_ms();
    let ttl_ms = hub.config.perso_ttl.as_millis() as i64;
    let (id, version) = (call.id, call.claim_version);
    let settled = hub
        .store
        .transact(move |tx| {
            Box::pin(async move {
                if !tx
                    .settle_tsp_call(call.id, call.claim_version, &outcome, now)
                    .await?
                {
                    return Ok::<_, Error>(false);
                }
                if call.call == TspCall::RepersoToken {
                    match &outcome {
                        CallOutcome::Done => {
                            super::reperso::on_reperso_acknowledged(
                                tx,
                                &call.token_id,
                                &call.correlation_id,
                                ttl_ms,
                                now,
                            )
                            .await?
                        }
                        CallOutcome::Dead { error } => {
                            super::reperso::on_reperso_refused(
                                tx,
                                &call.token_id,
                                &call.correlation_id,
                                error,
                                now,
                            )
                            .await?
                        }
                        CallOutcome::Retry { .. } => {}
                    }
                }
                Ok(true)
            })
        })
        .await?;
    if !settled {
        tracing::warn!(
            outbox_id = id,
            claim_version = version,
            "the call was claimed again after its lease ran out: this attempt's outcome is not recorded"
        );
        metrics::lost_claims(ClaimedWork::TspCall, 1);
    }
    Ok(())
}
