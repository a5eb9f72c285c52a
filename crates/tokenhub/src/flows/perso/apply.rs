//! The transaction of a `/data` or `/newData` call: the context read again under the token's
//! lock, the call decided again (no decryption: a recovery's values were fingerprinted before),
//! and the decision applied.

use super::{at_call, call_of, held_after, op_name, Applied, Prepared};
use crate::domain::campaign::Step;
use crate::domain::data_call::{self, DataCall, Decision};
use crate::domain::perso::Operation;
use crate::domain::personalization::Kind;
use crate::domain::{Code, CorrelationId, Rejection, TokenId, TokenState};
use crate::error::Error;
use crate::flows::deliver;
use crate::flows::reperso;
use crate::hub::Hub;
use crate::store::token_data::{CallKey, DataCallContext};
use crate::store::tokens::DataPart;
use crate::store::{StoreError, Tx};
use crate::telemetry::metrics::{self, PersoEvent};
use std::sync::Arc;

/// Runs the call's transaction and, when it queued a delivery, wakes the device's waiters.
pub(super) async fn run(
    hub: &Arc<Hub>,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    prepared: Prepared,
) -> Result<Applied, Error> {
    // Shared with the transaction, so that the writer thread only reads it: it is freed here,
    // once the transaction is done, not by the writer.
    let prepared = Arc::new(prepared);
    let here = prepared.clone();
    let now = hub.now_ms();
    let (token_id, correlation_id, context) =
        (token_id.clone(), correlation_id.clone(), hub.clone());
    let applied = hub
        .store
        .transact(move |conn| {
            Box::pin(async move {
                decide_and_apply(conn, &context, &token_id, &correlation_id, &prepared, now).await
            })
        })
        .await;
    drop(here);
    let applied = applied?;
    if let Applied::Stored {
        delivery: Some(device_id),
        ..
    } = &applied
    {
        metrics::personalizations(PersoEvent::Queued, 1);
        hub.devices.notify(device_id);
    }
    Ok(applied)
}

async fn decide_and_apply(
    conn: &mut Tx,
    hub: &Hub,
    token_id: &TokenId,
    correlation_id: &CorrelationId,
    p: &Prepared,
    now: i64,
) -> Result<Applied, Error> {
    let key = CallKey {
        token_id: token_id.as_str(),
        correlation_id: correlation_id.as_str(),
        names: &p.names,
        operation: op_name(p.op),
    };
    let Some(context) = conn.data_call_context(key).await? else {
        return Err(Rejection::new(Code::UnknownToken, "no such token").into());
    };
    let call = call_of(p.op, &context.token);
    let recovered = p
        .checked
        .fingerprints
        .as_ref()
        .filter(|_| call == DataCall::Recovery);
    match data_call::decide(call, &at_call(&context), recovered, now) {
        Decision::Repeat => Ok(Applied::Repeat),
        Decision::Refuse(refusal) => Err(refusal.into()),
        Decision::RefuseRecovery(name) => {
            let recovery = context
                .token
                .recovery
                .as_ref()
                .map(|r| r.correlation_id.clone());
            let recovery = recovery.unwrap_or_else(|| correlation_id.to_string());
            let refusal =
                reperso::refuse_recovery(conn, &context.token, &recovery, &name, now).await?;
            Ok(Applied::Refused(refusal))
        }
        Decision::Apply => apply(conn, hub, key, p, &context, call, now).await,
    }
}

/// Stores the call's part, moves the token, and queues the delivery when the data is complete.
async fn apply(
    conn: &mut Tx,
    hub: &Hub,
    key: CallKey<'_>,
    p: &Prepared,
    context: &DataCallContext,
    call: DataCall,
    now: i64,
) -> Result<Applied, Error> {
    let token = &context.token;
    // What the first look found holds unless another call changed the token's elements since.
    let recomputed;
    let (held, complete) = if token.received_elements == p.received_before {
        (&p.held, p.completes)
    } else {
        let (held, complete) = held_after(&token.received_elements, &p.submission, &p.profile);
        recomputed = held;
        (&recomputed, complete)
    };
    if let Some(sealed) = &p.checked.sealed {
        if complete {
            let parts = if token.received_elements.is_empty() {
                Vec::new()
            } else {
                conn.data_parts(key.token_id).await?
            };
            if p.parts.as_ref() != Some(&parts) {
                deliver::check_builds(
                    hub,
                    &p.tsp_id,
                    token,
                    &p.data_key,
                    &p.profile,
                    &parts,
                    &p.checked.sizes,
                )?;
            }
        }
        keep_data_key(conn, key.token_id, p).await?;
        let part = DataPart {
            operation: key.operation,
            correlation_id: key.correlation_id,
            element_names: &p.listed,
            sealed,
        };
        conn.append_token_data(key.token_id, &part, now).await?;
    }
    let state = match p.op {
        Operation::Data if complete => TokenState::Personalizing,
        _ => token.state,
    };
    // A recovery is complete when every element the token was personalized with is back.
    let complete = complete
        && (call != DataCall::Recovery || context.fingerprints.keys().all(|n| held.contains(n)));
    conn.set_token_state_and_elements(key.token_id, state, held, now)
        .await?;
    let delivery = if complete && (state == TokenState::Personalizing || p.op == Operation::NewData)
    {
        queue_delivery(conn, hub, key, p, context, now).await?;
        Some(token.device_id.clone())
    } else {
        None
    };
    conn.record_data_call(key, p.checked.sealed.is_some(), delivery.is_some(), now)
        .await?;
    set_token_info(conn, key, p, context, now).await?;
    let moved = (state != token.state).then_some(state);
    conn.add_token_event(key.token_id, &event(key, p, moved), key.correlation_id, now)
        .await?;
    Ok(Applied::Stored {
        state,
        held: held.len(),
        delivery,
    })
}

/// The token's history line of an applied call.
fn event(key: CallKey<'_>, p: &Prepared, moved: Option<TokenState>) -> String {
    let moved = moved.map_or(String::new(), |s| format!("; state {}", s.as_str()));
    format!(
        "{} received: {} element(s){moved}",
        key.operation,
        p.submission.elements.len()
    )
}

/// The part was sealed under `p.data_key`: it must still be the token's key (the token's data
/// may have been deleted, and its key destroyed, since: a destroyed key is never stored again).
async fn keep_data_key(conn: &mut Tx, token_id: &str, p: &Prepared) -> Result<(), Error> {
    if conn.holds_data_key(token_id, &p.data_key).await? {
        Ok(())
    } else {
        Err(StoreError::DataKeyChanged(token_id.to_string()).into())
    }
}

/// The data is complete: a personalization is queued for the device (its profile is built when
/// the device asks for it), and a recovery's campaign moves on.
async fn queue_delivery(
    conn: &mut Tx,
    hub: &Hub,
    key: CallKey<'_>,
    p: &Prepared,
    context: &DataCallContext,
    now: i64,
) -> Result<(), Error> {
    let token = &context.token;
    let kind = match p.op {
        Operation::Data => Kind::Perso,
        Operation::NewData => Kind::Reperso,
    };
    deliver::queue_personalization(conn, hub, token, &p.version, kind, key.correlation_id, now)
        .await?;
    if let Some(campaign) = token
        .recovery
        .as_ref()
        .and_then(|r| r.campaign_id.as_deref())
    {
        conn.set_campaign_step(campaign, key.token_id, Step::Delivering, None, now)
            .await?;
    }
    Ok(())
}

/// A renewal's new expiry or last digits: kept, and news for the token's requestor when they
/// changed.
async fn set_token_info(
    conn: &mut Tx,
    key: CallKey<'_>,
    p: &Prepared,
    context: &DataCallContext,
    now: i64,
) -> Result<(), Error> {
    let Some(info) = &p.submission.token_info else {
        return Ok(());
    };
    let token = &context.token;
    let exp = info.exp.as_ref().map(|e| e.as_str());
    let last4 = info.last4.as_ref().map(|l| l.as_str());
    conn.set_token_info(key.token_id, exp, last4, now).await?;
    let changed = (exp.is_some() && exp != token.token_exp.as_deref())
        || (last4.is_some() && last4 != token.token_last4.as_deref());
    if changed {
        crate::flows::notifications::token_changed(
            conn,
            key.token_id,
            None,
            key.correlation_id,
            now,
        )
        .await?;
    }
    Ok(())
}
